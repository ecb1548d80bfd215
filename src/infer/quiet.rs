//! LiteRT prints its own INFO and WARNING lines to stderr while it sets up
//! (accelerator registry, XNNPACK). We capture stderr around those calls and
//! pass the text on through `tracing` (debug level), so a user sees only
//! edgevision's messages, yet a failing call can quote LiteRT's reason.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::sync::Mutex;

static CAPTURE: Mutex<()> = Mutex::new(());

/// A writer for the log on a copy of file descriptor 2, made before any
/// capture: while [`capture_stderr`] points fd 2 at a file (during a model
/// load, or each inference after a failure), other threads' log lines
/// still reach the real stderr instead of the capture.
pub fn log_writer() -> tracing_subscriber::fmt::writer::BoxMakeWriter {
    use std::os::fd::FromRawFd;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    // SAFETY: dup returns a new descriptor we own (or -1).
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return BoxMakeWriter::new(std::io::stderr);
    }
    // SAFETY: `fd` is a fresh descriptor owned by nothing else.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    BoxMakeWriter::new(Mutex::new(file))
}

/// Runs `f` with file descriptor 2 redirected to a temporary file; returns
/// its result and what was written. If redirection is impossible, `f` runs
/// with stderr untouched and the text is empty.
pub fn capture_stderr<R>(f: impl FnOnce() -> R) -> (R, String) {
    let _guard = CAPTURE.lock().unwrap_or_else(|e| e.into_inner());
    let Ok(mut file) = tempfile::tempfile() else {
        return (f(), String::new());
    };
    // SAFETY: plain descriptor juggling; fd 2 is restored before returning.
    let saved = unsafe { libc::dup(2) };
    if saved < 0 || unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        if saved >= 0 {
            unsafe { libc::close(saved) };
        }
        return (f(), String::new());
    }
    let result = f();
    // SAFETY: restores the original stderr and closes our copy of it.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    let mut text = String::new();
    if file.seek(SeekFrom::Start(0)).is_ok() {
        let _ = file.read_to_string(&mut text);
    }
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        tracing::debug!(target: "litert", "{line}");
    }
    (result, text)
}

/// The lines of captured LiteRT output that report errors, for messages.
pub fn error_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("ERROR") || l.contains("rror"))
        .collect::<Vec<_>>()
        .join("; ")
}
