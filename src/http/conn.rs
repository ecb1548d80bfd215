//! Accepted connections: `TCP_NODELAY` (a frame should leave at once), a
//! write timeout, read deadlines, and a cap on how many are open.
//!
//! The write timeout has to live at the socket: once the client stops
//! reading, hyper's write buffer fills and it stops polling the response
//! body, so nothing in the body could notice. Here, a write that stays
//! pending for `write_timeout` fails with `TimedOut`; hyper then drops the
//! connection, the body with it, and the stream's client guard.
//!
//! Read deadlines live here too, since axum's server sets none: a client
//! must send a whole request head within `header_timeout` (of connecting,
//! or of the first byte of a later request), and a kept-alive connection
//! with nothing going on is closed after `idle_timeout`. The request
//! middleware ([`track`]) tells the connection when a request is being
//! answered and when the answer is an endless stream, which is never idle.
//!
//! At `max_connections`, a new connection closes the oldest idle one (a
//! flood of silent sockets thus cannot lock out a health check), or, when
//! every connection is busy, gets a short 503 and is closed.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Open files kept free for everything else (model, images, /proc, logs).
pub(crate) const FD_RESERVE: usize = 64;
/// Sockets beyond the cap that may still be open while evicted ones close;
/// past this, accepting waits for them (up to [`CLOSING_WAIT`]).
const CLOSING_SLACK: usize = 32;
/// How long an accept waits for evicted connections to close.
const CLOSING_WAIT: Duration = Duration::from_millis(200);
/// How often a refusal is logged at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\nRetry-After: 5\r\n\r\ntoo many connections\n";

/// The connection-level limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) write_timeout: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// `wanted`, lowered so that the connections and [`FD_RESERVE`] fit in the
/// open-file limit `nofile`.
pub(crate) fn connection_cap(wanted: usize, nofile: Option<usize>) -> usize {
    match nofile {
        Some(n) => wanted.min(n.saturating_sub(FD_RESERVE)).max(1),
        None => wanted,
    }
}

/// The soft `RLIMIT_NOFILE`, if it is finite.
pub(crate) fn open_file_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY)
        .then(|| usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
}

/// What every connection shares: the open ones, oldest first.
#[derive(Default)]
struct Registry {
    conns: Mutex<VecDeque<Weak<ConnState>>>,
    /// Open sockets, evicted ones that have not closed yet included.
    live: AtomicUsize,
    /// Open sockets not evicted: what the cap is about.
    active: AtomicUsize,
}

enum Admission {
    Admit,
    /// Every connection is busy.
    Refuse,
    /// Too many evicted sockets are still closing; try again shortly.
    Wait,
}

impl Registry {
    /// Whether a new connection may be served; at the cap, evicts the oldest
    /// idle one to make room.
    fn admit(&self, cap: usize) -> Admission {
        if self.live.load(Ordering::Acquire) >= cap + CLOSING_SLACK {
            return Admission::Wait;
        }
        if self.active.load(Ordering::Acquire) < cap {
            return Admission::Admit;
        }
        let mut conns = self.conns.lock().unwrap();
        conns.retain(|w| w.strong_count() > 0);
        for c in conns.iter().filter_map(Weak::upgrade) {
            if c.evictable() && c.close() {
                self.active.fetch_sub(1, Ordering::AcqRel);
                c.wake_reader();
                return Admission::Admit;
            }
        }
        Admission::Refuse
    }

    fn add(&self, state: &Arc<ConnState>, cap: usize) {
        self.live.fetch_add(1, Ordering::AcqRel);
        self.active.fetch_add(1, Ordering::AcqRel);
        let mut conns = self.conns.lock().unwrap();
        if conns.len() > 2 * cap + CLOSING_SLACK {
            conns.retain(|w| w.strong_count() > 0);
        }
        conns.push_back(Arc::downgrade(state));
    }
}

/// One connection's state, shared by its socket and its requests.
pub(crate) struct ConnState {
    activity: Mutex<Activity>,
    /// The task last waiting to read, woken to be evicted.
    reader: Mutex<Option<Waker>>,
    evicted: AtomicBool,
}

struct Activity {
    accepted: Instant,
    /// First byte read while no request was being answered.
    request_started: Option<Instant>,
    last_write: Option<Instant>,
    /// A request was handed to the application and not yet answered.
    answering: bool,
    /// An endless response (MJPEG, SSE) runs on this connection.
    streaming: bool,
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            activity: Mutex::new(Activity {
                accepted: Instant::now(),
                request_started: None,
                last_write: None,
                answering: false,
                streaming: false,
            }),
            reader: Mutex::new(None),
            evicted: AtomicBool::new(false),
        }
    }

    fn evictable(&self) -> bool {
        let a = self.activity.lock().unwrap();
        !a.answering && !a.streaming && !self.evicted.load(Ordering::Acquire)
    }

    /// Marks the connection closed (evicted, or its socket dropped); `true`
    /// for the one call that did, so it alone takes it off the count.
    fn close(&self) -> bool {
        !self.evicted.swap(true, Ordering::AcqRel)
    }

    fn wake_reader(&self) {
        if let Some(w) = self.reader.lock().unwrap().take() {
            w.wake();
        }
    }

    fn read_some(&self) {
        let mut a = self.activity.lock().unwrap();
        if !a.answering && a.request_started.is_none() {
            a.request_started = Some(Instant::now());
        }
    }

    fn wrote_some(&self) {
        let mut a = self.activity.lock().unwrap();
        a.answering = false;
        a.request_started = None;
        a.last_write = Some(Instant::now());
    }

    /// When a pending read should give up, if ever.
    fn read_deadline(&self, limits: &Limits) -> Option<Instant> {
        let a = self.activity.lock().unwrap();
        if a.answering || a.streaming {
            return None;
        }
        Some(match (a.request_started, a.last_write) {
            (Some(t), _) => t + limits.header_timeout,
            (None, Some(t)) => t + limits.idle_timeout,
            (None, None) => a.accepted + limits.header_timeout,
        })
    }

    fn set_reader(&self, waker: &Waker) {
        let mut r = self.reader.lock().unwrap();
        if !r.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *r = Some(waker.clone());
        }
    }
}

/// What requests learn about their connection (`ConnectInfo<ConnInfo>`).
#[derive(Clone)]
pub(crate) struct ConnInfo {
    pub(crate) addr: SocketAddr,
    state: Arc<ConnState>,
}

impl Connected<IncomingStream<'_, TimeoutListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, TimeoutListener>) -> Self {
        ConnInfo {
            addr: *stream.remote_addr(),
            state: stream.io().state.clone(),
        }
    }
}

/// Middleware: marks the connection busy while a request is answered, and
/// for good once the answer is a stream.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let state = req
        .extensions()
        .get::<ConnectInfo<ConnInfo>>()
        .map(|c| c.0.state.clone());
    if let Some(s) = &state {
        s.activity.lock().unwrap().answering = true;
    }
    let response = next.run(req).await;
    if let Some(s) = &state {
        let streaming = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.starts_with("multipart/x-mixed-replace") || t.starts_with("text/event-stream")
            });
        if streaming {
            s.activity.lock().unwrap().streaming = true;
        }
    }
    response
}

pub(crate) struct TimeoutListener {
    inner: TcpListener,
    limits: Limits,
    registry: Arc<Registry>,
    refused: u64,
    refusal_logged: Option<Instant>,
}

impl TimeoutListener {
    pub(crate) fn new(inner: TcpListener, limits: Limits) -> Self {
        TimeoutListener {
            inner,
            limits,
            registry: Arc::default(),
            refused: 0,
            refusal_logged: None,
        }
    }

    /// Answers 503 if the socket takes it at once, and closes.
    fn refuse(&mut self, stream: TcpStream, addr: SocketAddr) {
        let _ = stream.try_write(REFUSAL);
        drop(stream);
        self.refused += 1;
        let now = Instant::now();
        if self.refusal_logged.is_none_or(|t| now >= t + REFUSAL_LOG_EVERY) {
            tracing::warn!(
                "http: {} connection(s) refused (the latest from {addr}): all {} connections are busy or closing",
                self.refused,
                self.limits.max_connections
            );
            self.refused = 0;
            self.refusal_logged = Some(now);
        }
    }
}

impl axum::serve::Listener for TimeoutListener {
    type Io = TimeoutIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // axum's impl logs and retries accept errors (EMFILE and the like).
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let waited = Instant::now();
            let admitted = loop {
                match self.registry.admit(self.limits.max_connections) {
                    Admission::Admit => break true,
                    Admission::Refuse => break false,
                    Admission::Wait if waited.elapsed() >= CLOSING_WAIT => break false,
                    Admission::Wait => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            };
            if !admitted {
                self.refuse(stream, addr);
                continue;
            }
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("http: TCP_NODELAY on {addr}: {e}");
            }
            let state = Arc::new(ConnState::new());
            self.registry.add(&state, self.limits.max_connections);
            let io = TimeoutIo {
                inner: stream,
                limits: self.limits,
                state,
                registry: self.registry.clone(),
                stalled: None,
                read_deadline: None,
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

pub(crate) struct TimeoutIo {
    inner: TcpStream,
    limits: Limits,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
    /// Set while a write is pending: when it fires, the peer is cut.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Set while a read is pending and a deadline applies.
    read_deadline: Option<Pin<Box<Sleep>>>,
}

impl Drop for TimeoutIo {
    fn drop(&mut self) {
        if self.state.close() {
            self.registry.active.fetch_sub(1, Ordering::AcqRel);
        }
        self.registry.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl TimeoutIo {
    /// Passes a ready result through (a write that made progress clears the
    /// deadline); a pending one starts or checks the deadline.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        progress: bool,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                if progress {
                    self.stalled = None;
                    self.state.wrote_some();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.limits.write_timeout;
                let deadline = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("client accepted no data for {timeout:?}"),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for TimeoutIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.state.evicted.load(Ordering::Acquire) {
            return Poll::Ready(Err(evicted()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.state.read_some();
                }
                self.read_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.state.set_reader(cx.waker());
                // Evicted between the check above and now: nobody will wake us.
                if self.state.evicted.load(Ordering::Acquire) {
                    return Poll::Ready(Err(evicted()));
                }
                let Some(deadline) = self.state.read_deadline(&self.limits) else {
                    self.read_deadline = None;
                    return Poll::Pending;
                };
                let timer = self
                    .read_deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no complete request in time (http.header_timeout / http.idle_timeout)",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for TimeoutIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, poll, true)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, poll, true)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, poll, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.guard(cx, poll, false)
    }
}

fn evicted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "idle connection closed to make room (http.max_connections)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_in_the_open_file_limit() {
        assert_eq!(connection_cap(512, None), 512);
        assert_eq!(connection_cap(512, Some(1024)), 512);
        assert_eq!(connection_cap(512, Some(256)), 256 - FD_RESERVE);
        assert_eq!(connection_cap(512, Some(10)), 1);
    }
}
