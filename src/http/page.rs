//! `/`: the live page. One self-contained document: no external resources,
//! only relative URLs (works under a reverse-proxy sub-path), readable on a
//! phone. With bearer auth, open it as `/?token=...`; the script passes the
//! token on to the stream, snapshot and event URLs.
//!
//! Once the first report arrives the page reads `/stream.mjpg` itself
//! (fetch, multipart parsing) and paints each picture on a canvas with the
//! figures and list of the report with the same frame number (the part's
//! `X-Frame` header), waiting briefly for a report that is late. When the
//! reports say `"annotate": "client"` the stream carries the camera's own
//! JPEGs and the page draws the boxes, their tags placed so that they do
//! not cover other tags or boxes' corners.

use axum::http::header;
use axum::response::{IntoResponse, Response};

pub(crate) async fn index() -> Response {
    html(PAGE)
}

/// `/cameras/{camera}/`: the same page for one camera (its URLs are
/// relative, so they read that camera's stream and reports).
pub(crate) async fn camera_page(_camera: super::camera::Cam) -> Response {
    html(PAGE)
}

/// `/` with several cameras: a grid of their streams, each a link to its
/// own page.
pub(crate) fn grid() -> Response {
    html(GRID)
}

fn html(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; img-src 'self'; connect-src 'self'; \
                 script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        body,
    )
        .into_response()
}

/// The camera grid: one tile per camera from `api/cameras`, each its
/// latest snapshot (refreshed once a second, so that a dozen cameras stay
/// within a browser's six connections to a host and take no stream slots)
/// and its state; a tile opens the camera's own page with the live stream.
pub(crate) const GRID: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark">
<title>edgevision: cameras</title>
<style>
  :root { --bg: #111418; --panel: #1b2027; --fg: #e6e9ee; --dim: #8a94a3; --ok: #4cc38a; --bad: #e5534b; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--fg);
         font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  header { display: flex; align-items: center; gap: .6em; padding: .6em .8em; }
  h1 { font-size: 1.1em; margin: 0; font-weight: 600; }
  main { display: grid; gap: .8em; padding: 0 .8em .8em; grid-template-columns: repeat(auto-fill, minmax(20em, 1fr)); }
  .tile { background: var(--panel); border-radius: .4em; overflow: hidden; color: inherit; text-decoration: none; display: block; }
  .tile img { display: block; width: 100%; aspect-ratio: 4 / 3; object-fit: contain; background: #000; }
  .tile p { margin: 0; padding: .4em .6em; display: flex; justify-content: space-between; gap: .5em; }
  .tile b { font-weight: 600; }
  .tile span { color: var(--dim); font-size: .85em; font-variant-numeric: tabular-nums; }
  .tile span.bad { color: var(--bad); } .tile span.ok { color: var(--ok); }
</style>
</head>
<body>
<header><h1>edgevision</h1><span id="count"></span></header>
<main id="grid"></main>
<script>
"use strict";
(function () {
  var token = new URLSearchParams(location.search).get("token");
  function url(path) { return token ? path + "?token=" + encodeURIComponent(token) : path; }
  var grid = document.getElementById("grid"), tiles = {};
  function tile(c) {
    var a = document.createElement("a"), img = document.createElement("img"), p = document.createElement("p");
    var name = document.createElement("b"), state = document.createElement("span");
    a.className = "tile"; a.href = url(c.path);
    img.alt = c.name;
    name.textContent = c.name;
    p.appendChild(name); p.appendChild(state); a.appendChild(img); a.appendChild(p);
    grid.appendChild(a);
    var t = { el: a, img: img, state: state, path: c.path, busy: false };
    img.onload = img.onerror = function () { t.busy = false; };
    return t;
  }
  // The next snapshot once the last has come (or failed): no pile-up on a
  // slow link.
  function pictures() {
    Object.keys(tiles).forEach(function (n) {
      var t = tiles[n];
      if (t.busy) return;
      t.busy = true;
      t.img.src = url(t.path + "snapshot.jpg") + (token ? "&" : "?") + "t=" + Date.now();
    });
  }
  function refresh() {
    fetch(url("api/cameras"), { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (j) {
      var seen = {};
      j.cameras.forEach(function (c) {
        seen[c.name] = true;
        var t = tiles[c.name] || (tiles[c.name] = tile(c));
        grid.appendChild(t.el);
        if (c.failed) { t.state.textContent = "failed: " + c.failed; t.state.className = "bad"; }
        else if (!c.signal) { t.state.textContent = "no signal"; t.state.className = "bad"; }
        else {
          t.state.textContent = c.fps.toFixed(1) + " fps · " + Math.round(c.inference_share * 100) + "% of inference · " + c.objects + " objects";
          t.state.className = "ok";
        }
      });
      Object.keys(tiles).forEach(function (n) {
        if (!seen[n]) { tiles[n].img.src = ""; grid.removeChild(tiles[n].el); delete tiles[n]; }
      });
      document.getElementById("count").textContent = j.cameras.length + " cameras";
      pictures();
    }).catch(function () {});
  }
  refresh();
  setInterval(refresh, 2000);
  setInterval(pictures, 1000);
})();
</script>
</body>
</html>
"##;

pub(crate) const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark">
<title>edgevision</title>
<style>
  :root { --bg: #111418; --panel: #1b2027; --fg: #e6e9ee; --dim: #8a94a3; --ok: #4cc38a; --bad: #e5534b; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--fg);
         font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  header { display: flex; align-items: center; gap: .6em; padding: .6em .8em; flex-wrap: wrap; }
  h1 { font-size: 1.1em; margin: 0; font-weight: 600; }
  .badge { padding: .1em .55em; border-radius: 1em; font-size: .8em; background: var(--panel); color: var(--dim); }
  .badge.ok { color: var(--ok); } .badge.bad { color: var(--bad); }
  main { display: grid; gap: .8em; padding: 0 .8em .8em; grid-template-columns: minmax(0, 3fr) minmax(14em, 1fr); }
  @media (max-width: 800px) { main { grid-template-columns: minmax(0, 1fr); } }
  .view { background: #000; border-radius: .4em; overflow: hidden; min-height: 6em; }
  .view img, .view canvas { display: block; width: 100%; height: auto; }
  .view canvas, .view.reading img { display: none; }
  .view.reading canvas { display: block; }
  .panel { background: var(--panel); border-radius: .4em; padding: .6em .8em; }
  .stats { display: grid; grid-template-columns: repeat(3, 1fr); gap: .4em; margin-bottom: .6em; }
  .stat b { display: block; font-size: 1.3em; font-variant-numeric: tabular-nums; }
  .stat span { color: var(--dim); font-size: .8em; }
  ul { list-style: none; margin: 0; padding: 0; }
  li { display: flex; justify-content: space-between; gap: .5em; padding: .3em 0; border-top: 1px solid #2a313b; }
  li .score { color: var(--dim); font-variant-numeric: tabular-nums; }
  .swatch { display: inline-block; width: .8em; height: .8em; border-radius: .2em; margin-right: .45em;
            vertical-align: -.05em; background: var(--dim); }
  .empty { color: var(--dim); }
  a { color: #7cb7ff; }
  footer { color: var(--dim); font-size: .8em; padding: 0 .8em .8em; }
  h2 { font-size: .9em; font-weight: 600; color: var(--dim); margin: .9em 0 .3em; }
  #events li { justify-content: flex-start; align-items: center; }
  #events img { width: 4.5em; height: 3.4em; object-fit: cover; border-radius: .2em; background: #000; flex: none; }
  #events .what { display: flex; flex-direction: column; }
  #events .when { color: var(--dim); font-size: .8em; }
</style>
</head>
<body>
<header>
  <h1>edgevision</h1>
  <span id="conn" class="badge">connecting</span>
  <span id="signal" class="badge">signal ?</span>
</header>
<main>
  <div class="view" id="view"><img id="live" alt="live stream"><canvas id="canvas"></canvas></div>
  <div class="panel">
    <div class="stats">
      <div class="stat"><b id="fps">–</b><span>fps</span></div>
      <div class="stat"><b id="latency">–</b><span>latency ms</span></div>
      <div class="stat"><b id="infer">–</b><span>inference ms</span></div>
    </div>
    <ul id="dets"><li class="empty">no detections yet</li></ul>
    <h2>objects</h2>
    <ul id="events"><li class="empty">no objects yet</li></ul>
  </div>
</main>
<footer>frame <span id="frame">–</span> · <a id="snap" href="snapshot.jpg" target="_blank">snapshot</a></footer>
<noscript><p>The live stream: <a href="stream.mjpg">stream.mjpg</a></p></noscript>
<script>
"use strict";
(function () {
  var token = new URLSearchParams(location.search).get("token");
  function url(path) { return token ? path + "?token=" + encodeURIComponent(token) : path; }
  function $(id) { return document.getElementById(id); }
  function fixed(v, d) { return typeof v === "number" && isFinite(v) ? v.toFixed(d) : "\u2013"; }

  // Until the first report arrives the stream plays in an <img>. Then the
  // page reads /stream.mjpg itself: each part's X-Frame header names its
  // report, so the picture, the list and the figures always belong to the
  // same frame, and in "client" mode the boxes are drawn here.
  var img = $("live"), retry = null, reading = false;
  function startImg() {
    retry = null;
    if (!reading) img.src = url("stream.mjpg") + (token ? "&" : "?") + "t=" + Date.now();
  }
  img.addEventListener("error", function () { if (!retry && !reading) retry = setTimeout(startImg, 3000); });
  startImg();
  $("snap").href = url("snapshot.jpg");

  function label(d) {
    return (d.label != null ? d.label : ("class " + d.class_id)) + (d.id != null ? " #" + d.id : "");
  }
  function percent(d) { return typeof d.score === "number" ? Math.round(d.score * 100) + "%" : ""; }

  var shownFrame = -1;
  function render(r) {
    // Never step back to an older frame, unless the numbers started over
    // (the daemon or its pipeline restarted).
    if (!r || (r.frame < shownFrame && shownFrame - r.frame < 1000)) return;
    shownFrame = r.frame;
    $("fps").textContent = r.signal ? fixed(r.fps, 1) : "\u2013";
    $("latency").textContent = r.signal ? fixed(r.latency_ms, 0) : "\u2013";
    $("infer").textContent = r.signal ? fixed(r.inference_ms, 1) : "\u2013";
    $("frame").textContent = r.frame;
    var s = $("signal");
    s.textContent = r.signal ? "signal" : "no signal";
    s.className = "badge " + (r.signal ? "ok" : "bad");
    var list = $("dets"), dets = r.signal ? (r.detections || []) : [];
    list.replaceChildren();
    if (!dets.length) {
      var none = document.createElement("li");
      none.className = "empty";
      none.textContent = r.signal ? "nothing detected" : "no signal: is the camera connected?";
      list.appendChild(none);
    }
    dets.forEach(function (d) {
      var li = document.createElement("li"), name = document.createElement("span"), score = document.createElement("span");
      var sw = document.createElement("i");
      sw.className = "swatch";
      if (d.color) sw.style.background = d.color;
      name.appendChild(sw);
      name.appendChild(document.createTextNode(label(d)));
      score.className = "score";
      score.textContent = percent(d);
      li.appendChild(name); li.appendChild(score);
      list.appendChild(li);
    });
  }

  var canvas = $("canvas"), ctx = canvas.getContext("2d");
  var reports = new Map(), waiting = null, decoding = false, nextPic = null, abort = null;
  function reportFor(frame) {
    if (reports.has(frame)) return reports.get(frame);
    var best = null;
    reports.forEach(function (r, f) { if (f <= frame && (!best || f > best.frame)) best = r; });
    return best;
  }
  function remember(r) {
    reports.set(r.frame, r);
    while (reports.size > 120) reports.delete(reports.keys().next().value);
    if (waiting && waiting.frame <= r.frame) { var w = waiting; waiting = null; paint(w); }
  }
  function ink(hex) {
    var n = parseInt(String(hex).slice(1), 16);
    return ((n >> 16) * 299 + ((n >> 8) & 255) * 587 + (n & 255) * 114) / 1000 > 140 ? "#000" : "#fff";
  }
  function overlaps(a, b) { return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h; }
  // Zones and lines (from /api/objects), in fractions of the frame.
  var geometry = { zones: [], lines: [] };
  function drawPlaces() {
    var w = canvas.width, h = canvas.height;
    ctx.lineWidth = Math.max(1, Math.round(Math.min(w, h) / 320));
    ctx.font = Math.max(11, Math.round(h / 40)) + "px system-ui, sans-serif";
    ctx.textBaseline = "top";
    geometry.zones.forEach(function (z) {
      ctx.beginPath();
      z.polygon.forEach(function (p, i) { if (i) ctx.lineTo(p[0] * w, p[1] * h); else ctx.moveTo(p[0] * w, p[1] * h); });
      ctx.closePath();
      ctx.fillStyle = "rgba(124,183,255,.12)"; ctx.fill();
      ctx.strokeStyle = "rgba(124,183,255,.8)"; ctx.stroke();
      ctx.fillStyle = "#7cb7ff"; ctx.fillText(z.name, z.polygon[0][0] * w + 4, z.polygon[0][1] * h + 4);
    });
    geometry.lines.forEach(function (l) {
      var a = l.points[0], b = l.points[1];
      ctx.strokeStyle = "#ffd166"; ctx.beginPath(); ctx.moveTo(a[0] * w, a[1] * h); ctx.lineTo(b[0] * w, b[1] * h); ctx.stroke();
      ctx.fillStyle = "#ffd166"; ctx.fillText(l.name, (a[0] + b[0]) / 2 * w + 4, (a[1] + b[1]) / 2 * h + 4);
    });
  }
  function drawBoxes(r) {
    drawPlaces();
    var sx = canvas.width / r.width, sy = canvas.height / r.height;
    var px = Math.max(12, Math.round(canvas.height / 32));
    // An even width on whole pixels: crisp lines that survive the page
    // scaling the canvas down.
    ctx.lineWidth = 2 * Math.max(1, Math.round(Math.min(canvas.width, canvas.height) / 320));
    ctx.font = px + "px system-ui, sans-serif";
    ctx.textBaseline = "top";
    var dets = r.detections || [];
    if (r.model_kind === "classifier") {
      dets.forEach(function (d, i) {
        var text = label(d) + " " + percent(d);
        ctx.fillStyle = "rgba(0,0,0,.6)"; ctx.fillRect(8, 8 + i * (px + 6), ctx.measureText(text).width + 8, px + 6);
        ctx.fillStyle = "#fff"; ctx.fillText(text, 12, 11 + i * (px + 6));
      });
      return;
    }
    var boxes = [], tags = [];
    dets.forEach(function (d) {
      if (!d.box) return;
      var x = Math.round(d.box[0] * sx), y = Math.round(d.box[1] * sy);
      var b = { x: x, y: y, w: Math.round(d.box[2] * sx) - x, h: Math.round(d.box[3] * sy) - y, d: d };
      boxes.push(b);
      var c = d.color || "#4cc38a";
      ctx.strokeStyle = c; ctx.strokeRect(b.x, b.y, b.w, b.h);
    });
    // Tags go above their box, else inside its top, else inside its
    // bottom: the first place that covers no other tag and no other box's
    // corner region.
    boxes.forEach(function (b) {
      var text = label(b.d) + " " + percent(b.d);
      var tw = Math.ceil(ctx.measureText(text).width) + 8, th = px + 6;
      var spots = [b.y - th, b.y, b.y + b.h - th].filter(function (y) { return y >= 0 && y + th <= canvas.height; });
      var pick = null;
      for (var i = 0; i < spots.length && !pick; i++) {
        var t = { x: Math.min(b.x, canvas.width - tw), y: spots[i], w: tw, h: th };
        var clear = tags.every(function (o) { return !overlaps(t, o); }) && boxes.every(function (o) {
          return o === b || !overlaps(t, { x: o.x, y: o.y, w: Math.min(o.w, tw), h: Math.min(o.h, th) });
        });
        if (clear) pick = t;
      }
      if (!pick) pick = { x: Math.min(b.x, canvas.width - tw), y: spots.length ? spots[0] : 0, w: tw, h: th };
      tags.push(pick);
      var c = b.d.color || "#4cc38a";
      ctx.fillStyle = c; ctx.fillRect(pick.x, pick.y, pick.w, pick.h);
      ctx.fillStyle = ink(c); ctx.fillText(text, pick.x + 4, pick.y + 3);
    });
  }
  function paint(pic) {
    if (canvas.width !== pic.bitmap.width || canvas.height !== pic.bitmap.height) {
      canvas.width = pic.bitmap.width; canvas.height = pic.bitmap.height;
    }
    ctx.drawImage(pic.bitmap, 0, 0);
    pic.bitmap.close();
    var r = reportFor(pic.frame);
    if (r && r.signal && r.annotate === "client" && r.width && r.height) drawBoxes(r);
    render(r);
    if (reading && r && $("view").className !== "view reading") {
      // The canvas has a picture and a report (its own, or the newest
      // before it when the events skipped it): now swap it in and close the
      // <img> stream.
      $("view").className = "view reading";
      img.removeAttribute("src");
    }
  }
  function decodeNext() {
    if (decoding || !nextPic) return;
    var p = nextPic; nextPic = null; decoding = true;
    createImageBitmap(new Blob([p.jpeg], { type: "image/jpeg" })).then(function (bitmap) {
      decoding = false;
      var pic = { bitmap: bitmap, frame: p.frame };
      if (waiting) { var old = waiting; waiting = null; paint(old); }
      var r = reportFor(pic.frame);
      if (r && r.frame === pic.frame) paint(pic);
      else {
        // Its report has not arrived yet: wait a little for it.
        waiting = pic;
        setTimeout(function () { if (waiting === pic) { waiting = null; paint(pic); } }, 300);
      }
      decodeNext();
    }, function () { decoding = false; decodeNext(); });
  }
  function headerEnd(buf) {
    for (var i = 0; i + 3 < buf.length; i++) {
      if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
    }
    return -1;
  }
  function readStream() {
    abort = new AbortController();
    fetch(url("stream.mjpg"), { cache: "no-store", signal: abort.signal }).then(function (resp) {
      if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
      var reader = resp.body.getReader(), buf = new Uint8Array(0), need = -1, frame = 0, text = new TextDecoder();
      function pump() {
        return reader.read().then(function (res) {
          if (res.done) throw new Error("stream ended");
          var b = new Uint8Array(buf.length + res.value.length);
          b.set(buf); b.set(res.value, buf.length); buf = b;
          for (;;) {
            if (need < 0) {
              var end = headerEnd(buf);
              if (end < 0) break;
              var head = text.decode(buf.subarray(0, end));
              buf = buf.subarray(end + 4);
              var len = /content-length:\s*(\d+)/i.exec(head), num = /x-frame:\s*(\d+)/i.exec(head);
              if (!len) continue;
              need = +len[1]; frame = num ? +num[1] : 0;
            }
            if (buf.length < need) break;
            nextPic = { jpeg: buf.slice(0, need), frame: frame };
            buf = buf.subarray(need); need = -1;
            decodeNext();
          }
          return pump();
        });
      }
      return pump();
    }).catch(function () { setTimeout(readStream, 3000); });
  }

  // Objects: the newest ten, each with its picture when one was taken.
  var shown = new Map();
  function when(ms) { return new Date(ms).toLocaleTimeString(); }
  function story(o, type) {
    var parts = [type === "end" ? "left" : type === "new" ? "seen" : "updated"];
    if (o.entered_zones && o.entered_zones.length) parts.push("in " + o.entered_zones.join(", "));
    if (o.crossings && o.crossings.length) parts.push("crossed " + o.crossings.map(function (c) { return c.line + " (" + c.direction + ")"; }).join(", "));
    if (o.stationary) parts.push("stationary");
    return parts.join(" \u00b7 ");
  }
  function showObject(ev) {
    var o = ev.object, list = $("events"), li = shown.get(o.id);
    if (!li) {
      li = document.createElement("li");
      shown.set(o.id, li);
      var empty = list.querySelector(".empty");
      if (empty) empty.remove();
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 10) { var last = list.lastChild; shown.forEach(function (v, k) { if (v === last) shown.delete(k); }); last.remove(); }
    }
    li.replaceChildren();
    if (o.snapshot) {
      var pic = document.createElement("img");
      pic.alt = o.label; pic.loading = "lazy";
      pic.src = url(o.snapshot.replace(/^\//, "")) + (token ? "&" : "?") + "s=" + Math.round(o.score * 1e4);
      // The picture is written a moment after the event: try again once.
      pic.onerror = function () { pic.onerror = null; setTimeout(function () { pic.src = pic.src + "&r=1"; }, 1500); };
      li.appendChild(pic);
    }
    var what = document.createElement("span"), title = document.createElement("span"), sub = document.createElement("span");
    what.className = "what"; sub.className = "when";
    title.textContent = o.label + " #" + o.id + " " + Math.round(o.score * 100) + "%";
    sub.textContent = when(o.start_ms) + " \u00b7 " + story(o, ev.type);
    what.appendChild(title); what.appendChild(sub); li.appendChild(what);
  }
  function loadObjects() {
    fetch(url("api/objects"), { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (j) {
      geometry = { zones: j.zones || [], lines: j.lines || [] };
    }).catch(function () {});
  }
  if (window.fetch) {
    loadObjects();
    fetch(url("api/events/recent") + (token ? "&" : "?") + "limit=10", { cache: "no-store" }).then(function (r) { return r.json(); })
      .then(function (j) { (j.events || []).slice().reverse().forEach(showObject); }).catch(function () {});
  }

  var conn = $("conn");
  var events = new EventSource(url("api/events"));
  events.addEventListener("object", function (e) {
    var ev;
    try { ev = JSON.parse(e.data); } catch (err) { return; }
    showObject(ev);
  });
  events.onopen = function () { loadObjects(); };
  events.addEventListener("open", function () { conn.textContent = "connected"; conn.className = "badge"; });
  events.onerror = function () { conn.textContent = "reconnecting"; conn.className = "badge bad"; };
  events.onmessage = function (e) {
    var r;
    try { r = JSON.parse(e.data); } catch (err) { return; }
    remember(r);
    if (!reading) {
      // Still on the <img>: show the newest report as it comes.
      render(r);
      if (window.fetch && window.createImageBitmap && window.TextDecoder) { reading = true; readStream(); }
    }
  };
})();
</script>
</body>
</html>
"##;
