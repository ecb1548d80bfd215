//! Keeps a source going: opens it lazily, and when it becomes unavailable or
//! stalls, closes it and reopens it with exponential backoff, without ever
//! blocking the caller for long.
//!
//! ```text
//!        open ok / frame                 Unavailable | Stalled
//! (idle) ───────────────▶ up ─────────────────────────────────▶ down ──┐
//!                         ▲   Event::Lost (once), source closed        │ retry every
//!                         │                                            │ 0.25 s, 0.5 s, ...
//!                         └──────── Event::Reconnected ◀───────────────┘ up to max_backoff
//!                                   (open succeeded)        (Event::Waiting meanwhile)
//! ```
//!
//! While down, each [`Resilient::next`] call waits at most [`MAX_WAIT`]
//! before returning [`Event::Waiting`], so the caller can keep serving a
//! no-signal frame (the pipeline draws it) and honour shutdown. The backoff
//! resets once a frame has been read after a reconnect (a device that opens
//! but fails at once keeps backing off).

use std::time::{Duration, Instant};

use super::{CaptureError, Frame, Source};

/// The first retry delay; it doubles up to the configured maximum.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// The longest [`Resilient::next`] sleeps while the source is down.
pub const MAX_WAIT: Duration = Duration::from_millis(450);

/// What one [`Resilient::next`] call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new frame is in the caller's buffer.
    Frame,
    /// One frame was bad and skipped; the source is still up.
    Corrupt,
    /// The source has just gone away (the message says why): show a
    /// no-signal frame and mark the stream not ready. Reconnecting follows.
    Lost(String),
    /// The source is open again (the frame buffer was not touched): the
    /// next call reads a frame.
    Reconnected,
    /// Still down; render no-signal and call again.
    Waiting,
    /// A file source without looping has ended; every later call says so too.
    End,
    /// Unrecoverable (bad configuration, unsupported device); stop.
    Fatal(String),
}

#[derive(Debug)]
enum State {
    /// Not opened yet.
    Idle,
    /// Open. `fresh`: reconnected, no frame read since.
    Up {
        fresh: bool,
    },
    Down {
        retry_at: Instant,
    },
    Ended,
    Failed(String),
}

/// A [`Source`] wrapped with reconnect logic.
pub struct Resilient {
    inner: Box<dyn Source>,
    state: State,
    backoff: Duration,
    max_backoff: Duration,
    reconnects: u64,
    last_error: Option<String>,
}

impl Resilient {
    /// Wraps `inner` (not opened yet); retries back off up to `max_backoff`
    /// (at least [`INITIAL_BACKOFF`]).
    pub fn new(inner: Box<dyn Source>, max_backoff: Duration) -> Self {
        Self {
            inner,
            state: State::Idle,
            backoff: INITIAL_BACKOFF,
            max_backoff: max_backoff.max(INITIAL_BACKOFF),
            reconnects: 0,
            last_error: None,
        }
    }

    /// The source for `uri` (see [`super::open_source`]), backing off up
    /// to `opts.max_backoff`.
    pub fn for_uri(uri: &super::SourceUri, opts: &super::SourceOptions) -> Self {
        Self::new(super::open_source(uri, opts), opts.max_backoff)
    }

    /// The wrapped source's description.
    pub fn describe(&self) -> String {
        self.inner.describe()
    }

    /// Successful reopens after the source was lost.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The most recent error (unavailable, stalled, corrupt, fatal), if any.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Whether the source is open and delivering.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// The delay before the next retry after the current one fails.
    pub fn current_backoff(&self) -> Duration {
        self.backoff
    }

    /// Closes the source; the next call to [`Self::next`] opens it again.
    pub fn close(&mut self) {
        self.inner.close();
        self.state = State::Idle;
    }

    /// Reads the next frame into `frame`, or reports what happened instead.
    pub fn next(&mut self, frame: &mut Frame) -> Event {
        match &self.state {
            State::Ended => Event::End,
            State::Failed(m) => Event::Fatal(m.clone()),
            State::Idle => match self.inner.open() {
                Ok(()) => {
                    self.state = State::Up { fresh: false };
                    self.read(frame)
                }
                Err(e) => self.failed(e, true),
            },
            State::Up { .. } => self.read(frame),
            State::Down { retry_at } => {
                let retry_at = *retry_at;
                let now = Instant::now();
                if retry_at > now {
                    let wait = retry_at - now;
                    if wait > MAX_WAIT {
                        super::util::sleep(MAX_WAIT);
                        return Event::Waiting;
                    }
                    super::util::sleep(wait);
                }
                if super::util::cancelled() {
                    // Stopping: no point opening the device again.
                    return Event::Waiting;
                }
                match self.inner.open() {
                    Ok(()) => {
                        self.reconnects += 1;
                        self.state = State::Up { fresh: true };
                        tracing::info!(
                            "{}: reconnected (reconnect #{})",
                            self.inner.describe(),
                            self.reconnects
                        );
                        Event::Reconnected
                    }
                    Err(e) => self.failed(e, false),
                }
            }
        }
    }

    fn read(&mut self, frame: &mut Frame) -> Event {
        match self.inner.read(frame) {
            Ok(()) => {
                if let State::Up { fresh: true } = self.state {
                    self.backoff = INITIAL_BACKOFF;
                    self.state = State::Up { fresh: false };
                }
                Event::Frame
            }
            Err(CaptureError::Corrupt(m)) => {
                tracing::debug!("{}: corrupt frame: {m}", self.inner.describe());
                self.last_error = Some(format!("corrupt frame: {m}"));
                Event::Corrupt
            }
            Err(_) if super::util::cancelled() => {
                // Stopping cut the read short (a pipe or socket source):
                // no loss to report. Down (not Idle): no reopen while stopping.
                self.inner.close();
                self.state = State::Down {
                    retry_at: Instant::now(),
                };
                Event::Waiting
            }
            Err(e) => {
                self.inner.close();
                self.failed(e, true)
            }
        }
    }

    /// Handles an error from `open` or `read`; `was_up`: it ends a period
    /// in which the source was (or was about to be) up, so it is a loss.
    fn failed(&mut self, e: CaptureError, was_up: bool) -> Event {
        let msg = e.to_string();
        self.last_error = Some(msg.clone());
        match e {
            CaptureError::EndOfStream => {
                self.inner.close();
                self.state = State::Ended;
                Event::End
            }
            CaptureError::Fatal(m) => {
                // The capture loop logs it as an error with the source;
                // a second error line here would say the same again.
                tracing::debug!("{}: cannot work: {m}", self.inner.describe());
                self.inner.close();
                self.state = State::Failed(m.clone());
                Event::Fatal(m)
            }
            CaptureError::Unavailable(_) | CaptureError::Stalled(_) | CaptureError::Corrupt(_) => {
                let delay = self.backoff;
                self.state = State::Down {
                    retry_at: Instant::now() + delay,
                };
                self.backoff = (self.backoff * 2).min(self.max_backoff);
                if was_up {
                    tracing::warn!(
                        "{}: lost ({msg}); retrying in {:.2} s",
                        self.inner.describe(),
                        delay.as_secs_f32()
                    );
                    Event::Lost(msg)
                } else {
                    tracing::debug!(
                        "{}: still unavailable ({msg}); next retry in {:.2} s",
                        self.inner.describe(),
                        delay.as_secs_f32()
                    );
                    Event::Waiting
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::mjpeg::tests::test_jpegs;
    use crate::capture::mjpeg::MjpegFileSource;
    use crate::capture::SourceOptions;
    use std::fs;

    /// Waits for `want` by calling next() repeatedly, checking that no call
    /// blocks for long.
    fn until(r: &mut Resilient, frame: &mut Frame, limit: Duration, want: impl Fn(&Event) -> bool) -> Event {
        let t = Instant::now();
        loop {
            let c = Instant::now();
            let ev = r.next(frame);
            assert!(
                c.elapsed() < Duration::from_millis(600),
                "next() blocked {:?}",
                c.elapsed()
            );
            if want(&ev) {
                return ev;
            }
            assert!(t.elapsed() < limit, "gave up waiting; last event {ev:?}");
        }
    }

    #[test]
    fn a_read_cut_short_by_stopping_is_not_a_loss() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cam.mjpeg");
        fs::write(&path, &test_jpegs(1)[0].0).unwrap();
        let mut r = Resilient::for_uri(
            &crate::capture::SourceUri::Mjpeg(path.clone()),
            &SourceOptions {
                fps: 0.0,
                ..SourceOptions::default()
            },
        );
        let mut frame = Frame::default();
        assert_eq!(r.next(&mut frame), Event::Frame);
        fs::remove_file(&path).unwrap();
        // This test's own thread: the flag is thread-local.
        crate::capture::set_cancel(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)));
        assert_eq!(r.next(&mut frame), Event::Waiting);
        assert!(!r.is_up());
        assert_eq!(r.last_error(), None);
        // Nor is the source reopened while stopping.
        fs::write(&path, &test_jpegs(1)[0].0).unwrap();
        assert_eq!(r.next(&mut frame), Event::Waiting);
        assert!(!r.is_up());
    }

    #[test]
    fn reconnects_after_the_file_comes_back() {
        let jpegs = test_jpegs(2);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cam.mjpeg");
        let mut data = jpegs[0].0.clone();
        data.extend_from_slice(&jpegs[1].0);
        fs::write(&path, &data).unwrap();
        let opts = SourceOptions {
            width: 320,
            height: 240,
            fps: 0.0,
            looping: true,
            ..SourceOptions::default()
        };
        let mut r = Resilient::for_uri(
            &crate::capture::SourceUri::Mjpeg(path.clone()),
            &SourceOptions {
                max_backoff: Duration::from_secs(2),
                ..opts
            },
        );
        let mut frame = Frame::default();
        for _ in 0..3 {
            assert_eq!(r.next(&mut frame), Event::Frame);
            assert_eq!((frame.width, frame.height), (320, 240));
        }
        assert!(r.is_up());

        fs::remove_file(&path).unwrap();
        match r.next(&mut frame) {
            Event::Lost(m) => assert!(m.contains("cam.mjpeg"), "{m}"),
            other => panic!("expected Lost, got {other:?}"),
        }
        assert!(!r.is_up());
        // Down: every call returns quickly with Waiting; backoff grows.
        let t = Instant::now();
        let mut waits = 0;
        while t.elapsed() < Duration::from_millis(1500) {
            let c = Instant::now();
            assert_eq!(r.next(&mut frame), Event::Waiting);
            assert!(
                c.elapsed() < Duration::from_millis(600),
                "next() blocked {:?}",
                c.elapsed()
            );
            waits += 1;
        }
        assert!(waits >= 3, "{waits}");
        assert!(r.current_backoff() > INITIAL_BACKOFF);
        assert!(r.last_error().unwrap().contains("cam.mjpeg"));
        assert_eq!(r.reconnects(), 0);

        fs::write(&path, &data).unwrap();
        until(&mut r, &mut frame, Duration::from_secs(5), |e| {
            *e == Event::Reconnected
        });
        assert_eq!(r.reconnects(), 1);
        for _ in 0..3 {
            assert_eq!(r.next(&mut frame), Event::Frame);
            assert_eq!((frame.width, frame.height), (320, 240));
        }
        assert_eq!(r.current_backoff(), INITIAL_BACKOFF, "reset after a good frame");
    }

    #[test]
    fn missing_at_start_then_appears() {
        let jpegs = test_jpegs(1);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("late.mjpeg");
        let opts = SourceOptions {
            width: 0,
            height: 0,
            fps: 0.0,
            looping: false,
            ..SourceOptions::default()
        };
        let mut r = Resilient::new(
            Box::new(MjpegFileSource::new(path.clone(), opts)),
            Duration::from_secs(1),
        );
        let mut frame = Frame::default();
        assert!(matches!(r.next(&mut frame), Event::Lost(_)));
        assert_eq!(r.next(&mut frame), Event::Waiting);
        fs::write(&path, &jpegs[0].0).unwrap();
        until(&mut r, &mut frame, Duration::from_secs(3), |e| {
            *e == Event::Reconnected
        });
        assert_eq!(r.next(&mut frame), Event::Frame);
        assert_eq!((frame.width, frame.height), (jpegs[0].1, jpegs[0].2));
        assert_eq!(r.next(&mut frame), Event::End);
        assert_eq!(r.next(&mut frame), Event::End);
    }

    struct FatalSource;
    impl Source for FatalSource {
        fn describe(&self) -> String {
            "fatal".into()
        }
        fn open(&mut self) -> Result<(), CaptureError> {
            Err(CaptureError::Fatal("unsupported".into()))
        }
        fn read(&mut self, _: &mut Frame) -> Result<(), CaptureError> {
            unreachable!()
        }
        fn close(&mut self) {}
    }

    #[test]
    fn fatal_is_final() {
        let mut r = Resilient::new(Box::new(FatalSource), Duration::from_secs(1));
        let mut frame = Frame::default();
        assert_eq!(r.next(&mut frame), Event::Fatal("unsupported".into()));
        assert_eq!(r.next(&mut frame), Event::Fatal("unsupported".into()));
        assert_eq!(r.last_error(), Some("unsupported"));
    }
}
