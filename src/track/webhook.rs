//! `[[webhook]]`: each object event POSTed as JSON to a URL. Every webhook
//! has its own bounded queue and sender thread: a receiver that is down or
//! slow only fills its queue (the oldest events are dropped and counted),
//! the pipeline never waits. Failed posts are retried with exponential
//! back-off, in order.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::IntCounter;

use super::{EventType, ObjectEvent};
use crate::capture::http::HttpUrl;
use crate::metrics::CameraMetrics as Metrics;

/// One webhook, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub url: HttpUrl,
    /// The event types sent; all when empty.
    pub events: Vec<EventType>,
    /// Sent as `Authorization: Bearer ...`.
    pub token: Option<String>,
    /// Events waiting at most; beyond, the oldest is dropped.
    pub queue: usize,
    /// Connect, write and read timeout of one POST.
    pub timeout: Duration,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Inner {
    settings: WebhookSettings,
    queue: Mutex<VecDeque<Arc<ObjectEvent>>>,
    wake: Condvar,
    stop: AtomicBool,
    sent: IntCounter,
    failed: IntCounter,
    dropped: IntCounter,
}

/// A running webhook sender; dropping it stops the thread (events still
/// queued are lost, and said so).
pub struct Webhook {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
    /// Closed when the thread ends: stop waits for it a little, not for a
    /// POST stuck on an unreachable receiver.
    done: std::sync::mpsc::Receiver<()>,
}

/// How long a stop waits for a POST in flight.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The metrics label of a webhook: scheme, host and port only (a path may
/// be the secret, as in Home Assistant's webhook URLs).
fn label(url: &HttpUrl) -> String {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    format!("http://{host}:{}", url.port)
}

impl Webhook {
    pub fn start(settings: WebhookSettings, metrics: &Metrics) -> std::io::Result<Webhook> {
        let label = label(&settings.url);
        let (sent, failed, dropped) = metrics.webhook(&label);
        let inner = Arc::new(Inner {
            queue: Mutex::new(VecDeque::with_capacity(settings.queue.min(1024))),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            sent,
            failed,
            dropped,
            settings,
        });
        let i = inner.clone();
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("webhook".into())
            .spawn(move || {
                send_loop(&i);
                drop(done_tx);
            })?;
        Ok(Webhook {
            inner,
            thread: Some(thread),
            done,
        })
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.inner.settings
    }

    /// Queues an event if this webhook wants its type; never blocks.
    pub fn push(&self, event: &Arc<ObjectEvent>) {
        let s = &self.inner.settings;
        if !s.events.is_empty() && !s.events.contains(&event.kind) {
            return;
        }
        let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        while q.len() >= s.queue.max(1) {
            q.pop_front();
            self.inner.dropped.inc();
        }
        q.push_back(event.clone());
        drop(q);
        self.inner.wake.notify_one();
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.wake.notify_all();
        match self.done.recv_timeout(STOP_GRACE) {
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            // Still posting: left to finish (or time out) on its own.
            _ => drop(self.thread.take()),
        }
        let left = self.inner.queue.lock().map(|q| q.len()).unwrap_or(0);
        if left > 0 {
            tracing::warn!(
                "webhook {}: {left} events not delivered at stop",
                self.inner.settings.url
            );
        }
    }
}

fn send_loop(inner: &Inner) {
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    loop {
        let event = {
            let mut q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if inner.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(ev) = q.front() {
                    break ev.clone();
                }
                q = inner.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let body = match serde_json::to_vec(&*event) {
            Ok(b) => b,
            Err(_) => {
                pop_if_front(inner, &event);
                continue;
            }
        };
        match post(&inner.settings, &body) {
            Ok(()) => {
                pop_if_front(inner, &event);
                inner.sent.inc();
                if failing {
                    tracing::info!("webhook {}: delivering again", inner.settings.url);
                }
                failing = false;
                backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                inner.failed.inc();
                if !failing {
                    tracing::warn!(
                        "webhook {}: {e}; retrying with back-off (up to {} s), queueing up to {} events",
                        inner.settings.url,
                        MAX_BACKOFF.as_secs(),
                        inner.settings.queue
                    );
                }
                failing = true;
                let q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
                let _ = inner
                    .wake
                    .wait_timeout_while(q, backoff, |_| !inner.stop.load(Ordering::SeqCst));
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Removes the delivered event unless the queue dropped it meanwhile.
fn pop_if_front(inner: &Inner, event: &Arc<ObjectEvent>) {
    let mut q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
    if q.front().is_some_and(|f| Arc::ptr_eq(f, event)) {
        q.pop_front();
    }
}

/// One POST; `Ok` on a 2xx answer.
fn post(s: &WebhookSettings, body: &[u8]) -> Result<(), String> {
    let u = &s.url;
    let addr = (u.host.as_str(), u.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", u.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", u.host))?;
    let stream = TcpStream::connect_timeout(&addr, s.timeout).map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(s.timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(s.timeout))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: edgevision/{}\r\n",
        u.target,
        u.host_header(),
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = &s.token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    } else if let Some((user, pass)) = &u.credentials {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        head.push_str(&format!("Authorization: Basic {b64}\r\n"));
    }
    head.push_str("\r\n");
    let mut w = &stream;
    w.write_all(head.as_bytes())
        .and_then(|()| w.write_all(body))
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut status = String::new();
    BufReader::new(&stream)
        .take_line(&mut status)
        .map_err(|e| format!("no answer: {e}"))?;
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", status.trim()))?;
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!("answered {code}"))
    }
}

/// Reads one line of at most 1 KiB.
trait TakeLine {
    fn take_line(self, out: &mut String) -> std::io::Result<()>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(self, out: &mut String) -> std::io::Result<()> {
        let n = self.take(1024).read_line(out)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(())
    }
}
