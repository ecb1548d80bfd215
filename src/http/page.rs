//! `/`: the live page. One self-contained document: no external resources,
//! only relative URLs (works under a reverse-proxy sub-path), readable on a
//! phone. With bearer auth, open it as `/?token=...`; the script passes the
//! token on to the stream, snapshot and event URLs.
//!
//! When the reports say `"annotate": "client"` the stream carries the
//! camera's own JPEGs without boxes: the page then reads `/stream.mjpg`
//! itself (fetch, multipart parsing), paints each picture on a canvas and
//! draws the boxes of the report with the same frame number (the part's
//! `X-Frame` header), waiting briefly for a report that is late.

use axum::http::header;
use axum::response::{IntoResponse, Response};

pub(crate) async fn index() -> Response {
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
        PAGE,
    )
        .into_response()
}

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
  .view canvas, .view.client img { display: none; }
  .view.client canvas { display: block; }
  .panel { background: var(--panel); border-radius: .4em; padding: .6em .8em; }
  .stats { display: grid; grid-template-columns: repeat(3, 1fr); gap: .4em; margin-bottom: .6em; }
  .stat b { display: block; font-size: 1.3em; font-variant-numeric: tabular-nums; }
  .stat span { color: var(--dim); font-size: .8em; }
  ul { list-style: none; margin: 0; padding: 0; }
  li { display: flex; justify-content: space-between; gap: .5em; padding: .3em 0; border-top: 1px solid #2a313b; }
  li .score { color: var(--dim); font-variant-numeric: tabular-nums; }
  .empty { color: var(--dim); }
  a { color: #7cb7ff; }
  footer { color: var(--dim); font-size: .8em; padding: 0 .8em .8em; }
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
  function fixed(v, d) { return typeof v === "number" && isFinite(v) ? v.toFixed(d) : "–"; }

  var img = $("live"), retry = null, client = false;
  function startStream() {
    retry = null;
    if (!client) img.src = url("stream.mjpg") + (token ? "&" : "?") + "t=" + Date.now();
  }
  img.addEventListener("error", function () { if (!retry && !client) retry = setTimeout(startStream, 3000); });
  startStream();

  // --- "client" mode: pictures from the stream, boxes from the reports ---
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
  function paint(pic) {
    if (canvas.width !== pic.bitmap.width || canvas.height !== pic.bitmap.height) {
      canvas.width = pic.bitmap.width; canvas.height = pic.bitmap.height;
    }
    ctx.drawImage(pic.bitmap, 0, 0);
    pic.bitmap.close();
    if (client && $("view").className !== "view client") {
      // The canvas has a picture: now swap it in and close the <img> stream.
      $("view").className = "view client";
      img.removeAttribute("src");
    }
    var r = reportFor(pic.frame);
    if (!r || !r.signal || !r.width || !r.height) return;
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
        var text = (d.label != null ? d.label : "class " + d.class_id) + " " + Math.round(d.score * 100) + "%";
        ctx.fillStyle = "rgba(0,0,0,.6)"; ctx.fillRect(8, 8 + i * (px + 6), ctx.measureText(text).width + 8, px + 6);
        ctx.fillStyle = "#fff"; ctx.fillText(text, 12, 11 + i * (px + 6));
      });
      return;
    }
    dets.forEach(function (d) {
      if (!d.box) return;
      var x = Math.round(d.box[0] * sx), y = Math.round(d.box[1] * sy);
      var w = Math.round(d.box[2] * sx) - x, h = Math.round(d.box[3] * sy) - y;
      var c = d.color || "#4cc38a";
      ctx.strokeStyle = c; ctx.strokeRect(x, y, w, h);
      var text = (d.label != null ? d.label : "class " + d.class_id) + " " + Math.round(d.score * 100) + "%";
      var tw = ctx.measureText(text).width + 8, th = px + 6, ty = y - th >= 0 ? y - th : y;
      ctx.fillStyle = c; ctx.fillRect(x, ty, tw, th);
      ctx.fillStyle = ink(c); ctx.fillText(text, x + 4, ty + 3);
    });
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
  function indexOf2(buf) {
    for (var i = 0; i + 3 < buf.length; i++) {
      if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
    }
    return -1;
  }
  function readStream() {
    if (!client) return;
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
              var end = indexOf2(buf);
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
    }).catch(function () { if (client) setTimeout(readStream, 3000); });
  }
  function setClient(on) {
    if (on === client) return;
    client = on;
    // Into client mode: the <img> stays until the canvas has a picture.
    if (on) readStream();
    else { if (abort) abort.abort(); $("view").className = "view"; startStream(); }
  }
  $("snap").href = url("snapshot.jpg");

  var pending = null, scheduled = false;
  function render() {
    scheduled = false;
    var r = pending;
    if (!r) return;
    $("fps").textContent = fixed(r.fps, 1);
    $("latency").textContent = fixed(r.latency_ms, 0);
    $("infer").textContent = fixed(r.inference_ms, 1);
    $("frame").textContent = r.frame;
    var s = $("signal");
    s.textContent = r.signal ? "signal" : "no signal";
    s.className = "badge " + (r.signal ? "ok" : "bad");
    var list = $("dets"), dets = r.detections || [];
    list.replaceChildren();
    if (!dets.length) {
      var none = document.createElement("li");
      none.className = "empty";
      none.textContent = "nothing detected";
      list.appendChild(none);
    }
    dets.forEach(function (d) {
      var li = document.createElement("li"), name = document.createElement("span"), score = document.createElement("span");
      name.textContent = d.label != null ? d.label : ("class " + d.class_id);
      score.className = "score";
      score.textContent = typeof d.score === "number" ? Math.round(d.score * 100) + "%" : "";
      li.appendChild(name); li.appendChild(score);
      list.appendChild(li);
    });
  }

  var conn = $("conn");
  var events = new EventSource(url("api/events"));
  events.onopen = function () { conn.textContent = "live"; conn.className = "badge ok"; };
  events.onerror = function () { conn.textContent = "reconnecting"; conn.className = "badge bad"; };
  events.onmessage = function (e) {
    try { pending = JSON.parse(e.data); } catch (err) { return; }
    setClient(pending.annotate === "client");
    if (client) remember(pending);
    if (!scheduled) { scheduled = true; requestAnimationFrame(render); }
  };
})();
</script>
</body>
</html>
"##;
