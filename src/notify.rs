//! The systemd notification protocol (`sd_notify`), written out because it is
//! one datagram of `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET`:
//! no crate or libsystemd needed.
//!
//! The daemon sends `READY=1` once it serves, `STATUS=...` with its frame
//! rate, `WATCHDOG=1` while its pipeline makes progress, `RELOADING=1` /
//! `READY=1` around a SIGHUP reload and `STOPPING=1` on shutdown. Outside
//! systemd (`$NOTIFY_SOCKET` unset) every call is a no-op.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use thiserror::Error;

/// Environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("${NOTIFY_SOCKET}={0}: only absolute paths and abstract (@name) sockets are supported")]
    UnsupportedAddress(String),
    #[error("${NOTIFY_SOCKET}={addr}: {error}")]
    Socket { addr: String, error: io::Error },
    #[error("WATCHDOG_USEC={0}: not a positive number of microseconds")]
    BadWatchdogUsec(String),
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    name: String,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names; `Ok(None)` when it is unset or
    /// empty (not started by systemd, or not `Type=notify`).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var(NOTIFY_SOCKET) {
            Ok(v) if !v.is_empty() => Notifier::connect(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for `addr`: an absolute path, or `@name` for a socket in
    /// the abstract namespace (what systemd itself uses).
    pub fn connect(addr: &str) -> Result<Notifier, NotifyError> {
        let sock_err = |error| NotifyError::Socket {
            addr: addr.to_string(),
            error,
        };
        let sockaddr = if let Some(name) = addr.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(sock_err)?
        } else if addr.starts_with('/') {
            SocketAddr::from_pathname(addr).map_err(sock_err)?
        } else {
            return Err(NotifyError::UnsupportedAddress(addr.to_string()));
        };
        let socket = UnixDatagram::unbound().map_err(sock_err)?;
        Ok(Notifier {
            socket,
            addr: sockaddr,
            name: addr.to_string(),
        })
    }

    /// Sends one message of newline-separated `KEY=VALUE` assignments.
    pub fn send(&self, message: &str) -> io::Result<()> {
        let sent = self.socket.send_to_addr(message.as_bytes(), &self.addr)?;
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short notification datagram",
            ));
        }
        Ok(())
    }

    /// [`Notifier::send`], logging a failure instead of returning it: a lost
    /// notification must never stop the daemon.
    pub fn notify(&self, message: &str) {
        if let Err(e) = self.send(message) {
            tracing::warn!("cannot notify systemd at {}: {e}", self.name);
        }
    }
}

/// `STATUS=` text: one line, no control characters (they would end the
/// assignment or be rejected by the manager).
pub fn status_line(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("STATUS={clean}")
}

/// The watchdog interval systemd asks for (`WatchdogSec=` in the unit), from
/// `WATCHDOG_USEC`; `None` when it is unset or meant for another process
/// (`WATCHDOG_PID` names a different pid).
pub fn watchdog_from_env() -> Result<Option<Duration>, NotifyError> {
    watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_from_env`] on given values, for tests.
pub fn watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Some(pid) = pid.filter(|s| !s.is_empty()) {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return Ok(None);
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(Duration::from_micros(n))),
        _ => Err(NotifyError::BadWatchdogUsec(usec.to_string())),
    }
}

/// Decides when to send `WATCHDOG=1`: on each tick (half the interval) only
/// if the progress counter moved since the last tick, so a pipeline that
/// stops producing frames is noticed and restarted by systemd.
#[derive(Debug, Default)]
pub struct WatchdogGate {
    last: Option<u64>,
}

impl WatchdogGate {
    /// True when `counter` differs from the value seen at the previous call
    /// (the first call only records it).
    pub fn should_ping(&mut self, counter: u64) -> bool {
        let moved = self.last.is_some_and(|last| last != counter);
        self.last = Some(counter);
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::connect(path.to_str().unwrap()).unwrap();
        n.send("READY=1\nSTATUS=12.5 fps").unwrap();
        assert_eq!(recv(&server), "READY=1\nSTATUS=12.5 fps");
        n.send("WATCHDOG=1").unwrap();
        assert_eq!(recv(&server), "WATCHDOG=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("edgevision-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::connect(&format!("@{name}")).unwrap();
        n.send("STOPPING=1").unwrap();
        assert_eq!(recv(&server), "STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_on_send_not_on_connect() {
        let n = Notifier::connect("/nonexistent/edgevision/notify.sock").unwrap();
        let e = n.send("READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        n.notify("READY=1"); // logged, not fatal
    }

    #[test]
    fn unsupported_addresses_are_refused() {
        for addr in ["vsock:2:1234", "relative/notify.sock"] {
            let e = Notifier::connect(addr).unwrap_err();
            assert!(e.to_string().contains(addr), "{e}");
        }
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(status_line("7.5 fps\nnext"), "STATUS=7.5 fps next");
    }

    #[test]
    fn watchdog_interval_follows_usec_and_pid() {
        let me = 4242;
        assert_eq!(watchdog_interval(None, None, me).unwrap(), None);
        assert_eq!(watchdog_interval(Some(""), None, me).unwrap(), None);
        assert_eq!(
            watchdog_interval(Some("30000000"), None, me).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval(Some("500000"), Some("4242"), me).unwrap(),
            Some(Duration::from_millis(500))
        );
        // Meant for another process (e.g. our parent): not ours to feed.
        assert_eq!(watchdog_interval(Some("500000"), Some("1"), me).unwrap(), None);
        for bad in ["0", "-5", "soon"] {
            assert!(watchdog_interval(Some(bad), None, me).is_err(), "{bad}");
        }
    }

    #[test]
    fn watchdog_gate_pings_only_on_progress() {
        let mut g = WatchdogGate::default();
        assert!(!g.should_ping(10), "first tick only records");
        assert!(!g.should_ping(10), "no progress, no ping");
        assert!(g.should_ping(11));
        assert!(!g.should_ping(11));
        assert!(g.should_ping(3), "a counter that restarted still moved");
    }
}
