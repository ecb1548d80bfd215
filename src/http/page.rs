//! `/`: the live page. One self-contained document: no external resources,
//! only relative URLs (works under a reverse-proxy sub-path), readable on a
//! phone. With bearer auth, open it as `/?token=...`; the script passes the
//! token on to the stream, snapshot and event URLs.

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
  .view img { display: block; width: 100%; height: auto; }
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
  <div class="view"><img id="live" alt="live stream"></div>
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

  var img = $("live"), retry = null;
  function startStream() { retry = null; img.src = url("stream.mjpg") + (token ? "&" : "?") + "t=" + Date.now(); }
  img.addEventListener("error", function () { if (!retry) retry = setTimeout(startStream, 3000); });
  startStream();
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
    if (!scheduled) { scheduled = true; requestAnimationFrame(render); }
  };
})();
</script>
</body>
</html>
"##;
