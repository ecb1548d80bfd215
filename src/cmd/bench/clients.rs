//! Real HTTP stream clients for `bench`: each reads `/stream.mjpg` over its
//! own TCP connection, as a browser would, and counts the frames it gets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::http::mjpeg::BOUNDARY;

/// Counts multipart boundaries in a byte stream read in arbitrary pieces.
#[derive(Debug)]
pub struct PartCounter {
    marker: Vec<u8>,
    /// The tail of the previous piece, in case a marker straddles two reads.
    carry: Vec<u8>,
    pub parts: u64,
}

impl PartCounter {
    pub fn new(boundary: &str) -> Self {
        PartCounter {
            marker: format!("\r\n--{boundary}\r\n").into_bytes(),
            carry: Vec::new(),
            parts: 0,
        }
    }

    pub fn feed(&mut self, piece: &[u8]) {
        let m = self.marker.len();
        self.carry.extend_from_slice(piece);
        let mut i = 0;
        while i + m <= self.carry.len() {
            if self.carry[i..i + m] == self.marker[..] {
                self.parts += 1;
                i += m;
            } else {
                i += 1;
            }
        }
        // Every start before `i` is decided; later ones may still complete.
        let start = i.max(self.carry.len().saturating_sub(m - 1));
        self.carry.drain(..start);
    }
}

/// A group of clients reading the stream until dropped.
pub struct Clients {
    stop: Arc<AtomicBool>,
    frames: Vec<Arc<AtomicU64>>,
    threads: Vec<JoinHandle<Result<(), String>>>,
}

impl Clients {
    /// Connects `n` clients to `addr`; each sends a plain HTTP/1.1 request.
    pub fn connect(addr: SocketAddr, n: usize) -> anyhow::Result<Clients> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut frames = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let mut sock = TcpStream::connect(addr)?;
            sock.set_read_timeout(Some(Duration::from_millis(200)))?;
            sock.write_all(
                format!("GET /stream.mjpg HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: edgevision-bench\r\n\r\n")
                    .as_bytes(),
            )?;
            let count = Arc::new(AtomicU64::new(0));
            frames.push(count.clone());
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("client-{i}"))
                    .spawn(move || read_stream(sock, &count, &stop))?,
            );
        }
        Ok(Clients {
            stop,
            frames,
            threads,
        })
    }

    /// Frames received by each client so far.
    pub fn frames(&self) -> Vec<u64> {
        self.frames.iter().map(|f| f.load(Ordering::Relaxed)).collect()
    }

    /// Waits until every client has received a frame.
    pub fn wait_for_first_frames(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        while self.frames().contains(&0) {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "stream clients got no frame within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Disconnects every client; fails if one of them saw a broken stream.
    pub fn close(mut self) -> anyhow::Result<Vec<u64>> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => anyhow::bail!("stream client failed: {e}"),
                Err(_) => anyhow::bail!("stream client thread panicked"),
            }
        }
        Ok(self.frames())
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn read_stream(mut sock: TcpStream, count: &AtomicU64, stop: &AtomicBool) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut counter = PartCounter::new(BOUNDARY);
    let mut head = Vec::new();
    let mut in_body = false;
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.read(&mut buf) {
            Ok(0) => return Err("server closed the stream".into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e.to_string()),
        };
        if in_body {
            counter.feed(&buf[..n]);
        } else {
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                if !head.starts_with(b"HTTP/1.1 200") {
                    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                    return Err(format!("answer {:?}", String::from_utf8_lossy(line)));
                }
                in_body = true;
                counter.feed(&head[end + 4..]);
                head = Vec::new();
            }
        }
        count.store(counter.parts, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_markers_split_across_pieces() {
        let body = "--b\r\nX\r\n--b\r\nYY\r\n--b\r\nZ\r\n--b\r\n".as_bytes();
        for piece in 1..body.len() {
            let mut c = PartCounter::new("b");
            for chunk in body.chunks(piece) {
                c.feed(chunk);
            }
            assert_eq!(c.parts, 3, "piece size {piece}");
        }
    }
}
