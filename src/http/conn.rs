//! Accepted connections: `TCP_NODELAY` (a frame should leave at once) and a
//! write timeout, so a client that stops reading is really disconnected.
//!
//! The timeout has to live at the socket: once the client stops reading,
//! hyper's write buffer fills and it stops polling the response body, so
//! nothing in the body could notice. Here, a write that stays pending for
//! `timeout` fails with `TimedOut`; hyper then drops the connection, the
//! body with it, and the stream's client guard.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

pub(crate) struct TimeoutListener {
    inner: TcpListener,
    timeout: Duration,
}

impl TimeoutListener {
    pub(crate) fn new(inner: TcpListener, timeout: Duration) -> Self {
        TimeoutListener { inner, timeout }
    }
}

impl axum::serve::Listener for TimeoutListener {
    type Io = TimeoutIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's impl logs and retries accept errors (EMFILE and the like).
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("http: TCP_NODELAY on {addr}: {e}");
        }
        (TimeoutIo::new(stream, self.timeout), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

pub(crate) struct TimeoutIo {
    inner: TcpStream,
    timeout: Duration,
    /// Set while a write is pending: when it fires, the peer is cut.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl TimeoutIo {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        TimeoutIo {
            inner,
            timeout,
            stalled: None,
        }
    }

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
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
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
