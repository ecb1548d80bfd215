//! `v4l2:/dev/videoN` — a V4L2 capture device through the `v4l` crate, with
//! memory-mapped streaming (4 buffers).
//!
//! Opening negotiates, in order:
//! * capabilities: single-planar video capture with streaming I/O, else
//!   [`CaptureError::Fatal`];
//! * the pixel format ([`choose_format`]): the one asked for if offered,
//!   else the first offered of MJPEG, YUYV, RGB24, BGR24, NV12, GREY;
//! * the frame size closest to the requested one ([`choose_size`]; 0 keeps
//!   the device's current size);
//! * the frame interval ([`choose_interval`]): the fastest not faster than
//!   `fps` (fps 0: the fastest). This matters: without it a driver may keep
//!   whatever slow rate it was left at.
//!
//! Frames come out at the negotiated size; MJPEG is decoded with libjpeg-turbo
//! (a JPEG of another size is letterboxed into it), the raw formats go
//! through [`super::convert`].
//! A buffer flagged `V4L2_BUF_FLAG_ERROR` or a JPEG that does not decode is
//! [`CaptureError::Corrupt`]; I/O errors (ENODEV on unplug, EIO, ...) are
//! [`CaptureError::Unavailable`]; no frame within `stall_timeout` is
//! [`CaptureError::Stalled`]. `close` releases the buffers and closes the
//! device node, which some faults (vivid's "Disconnect") need before the
//! device can come back.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fast_image_resize::Resizer;
use v4l::buffer::{Flags as BufFlags, Metadata, Type as BufType};
use v4l::capability::Flags as CapFlags;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::{CaptureStream, Stream as _};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC, Fraction};

use super::jpeg::JpegDecoder;
use super::util::decode_jpeg_frame;
use super::{convert, CaptureError, Frame, PixelFormatPref, Source, SourceOptions};

const MJPG: FourCC = FourCC { repr: *b"MJPG" };
const JPEG: FourCC = FourCC { repr: *b"JPEG" };
const YUYV: FourCC = FourCC { repr: *b"YUYV" };
const RGB3: FourCC = FourCC { repr: *b"RGB3" };
const BGR3: FourCC = FourCC { repr: *b"BGR3" };
const NV12: FourCC = FourCC { repr: *b"NV12" };
const GREY: FourCC = FourCC { repr: *b"GREY" };

/// Formats tried when the asked-for one is not offered, best first.
pub const FALLBACK_ORDER: [FourCC; 7] = [MJPG, JPEG, YUYV, RGB3, BGR3, NV12, GREY];

const BUFFER_COUNT: u32 = 4;
/// How long one poll for a frame waits before the stop flag is checked.
const POLL_STEP: Duration = Duration::from_millis(200);
/// `v4l`'s poll timeout is an i32 of milliseconds.
const MAX_STALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// How a pixel format becomes RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PixelKind {
    Jpeg,
    Yuyv,
    Rgb24,
    Bgr24,
    Nv12,
    Grey,
}

fn kind_of(fourcc: FourCC) -> Option<PixelKind> {
    Some(match &fourcc.repr {
        b"MJPG" | b"JPEG" => PixelKind::Jpeg,
        b"YUYV" => PixelKind::Yuyv,
        b"RGB3" => PixelKind::Rgb24,
        b"BGR3" => PixelKind::Bgr24,
        b"NV12" => PixelKind::Nv12,
        b"GREY" => PixelKind::Grey,
        _ => return None,
    })
}

/// The FourCCs that satisfy a preference (none for `Auto`).
fn wanted(pref: PixelFormatPref) -> &'static [FourCC] {
    match pref {
        PixelFormatPref::Auto => &[],
        PixelFormatPref::Mjpeg => &[MJPG, JPEG],
        PixelFormatPref::Yuyv => &[YUYV],
        PixelFormatPref::Rgb24 => &[RGB3],
        PixelFormatPref::Bgr24 => &[BGR3],
        PixelFormatPref::Nv12 => &[NV12],
        PixelFormatPref::Grey => &[GREY],
        // Not converted from V4L2 (YU12): the fallback order applies.
        PixelFormatPref::I420 => &[],
    }
}

/// The format to use from those a device offers: the preferred one if
/// offered, else the first offered in [`FALLBACK_ORDER`]; `None` if the
/// device offers nothing we can convert.
pub fn choose_format(offered: &[FourCC], pref: PixelFormatPref) -> Option<FourCC> {
    wanted(pref)
        .iter()
        .chain(FALLBACK_ORDER.iter())
        .find(|f| offered.contains(f))
        .copied()
}

/// Frame sizes as a device lists them for one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRange {
    Discrete {
        width: u32,
        height: u32,
    },
    /// Also continuous ranges (step 1).
    Stepwise {
        min_width: u32,
        max_width: u32,
        step_width: u32,
        min_height: u32,
        max_height: u32,
        step_height: u32,
    },
}

impl From<&FrameSizeEnum> for SizeRange {
    fn from(s: &FrameSizeEnum) -> Self {
        match s {
            FrameSizeEnum::Discrete(d) => Self::Discrete {
                width: d.width,
                height: d.height,
            },
            FrameSizeEnum::Stepwise(s) => Self::Stepwise {
                min_width: s.min_width,
                max_width: s.max_width,
                step_width: s.step_width,
                min_height: s.min_height,
                max_height: s.max_height,
                step_height: s.step_height,
            },
        }
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Discrete { width, height } => write!(f, "{width}x{height}"),
            Self::Stepwise {
                min_width,
                max_width,
                step_width,
                min_height,
                max_height,
                step_height,
            } => write!(
                f,
                "{min_width}x{min_height} to {max_width}x{max_height} (steps {step_width}x{step_height})"
            ),
        }
    }
}

/// The value of `min..=max` in steps of `step` nearest to `want`.
fn snap(want: u32, min: u32, max: u32, step: u32) -> u32 {
    let step = step.max(1) as u64;
    let (min, max) = (min as u64, (max as u64).max(min as u64));
    let top = min + (max - min) / step * step;
    let w = (want as u64).clamp(min, top);
    let k = (w - min + step / 2) / step;
    (min + k * step).min(top) as u32
}

/// How far a size is from the wanted one: symmetric in scale, so 2x too big
/// and 2x too small count the same.
fn size_distance(w: u32, h: u32, want_w: u32, want_h: u32) -> f64 {
    let r = |a: u32, b: u32| ((a.max(1) as f64) / (b.max(1) as f64)).ln().abs();
    r(w, want_w) + r(h, want_h)
}

/// The offered frame size closest to `want_w` x `want_h` (ties: the larger).
pub fn choose_size(offered: &[SizeRange], want_w: u32, want_h: u32) -> Option<(u32, u32)> {
    let candidates = offered.iter().map(|s| match *s {
        SizeRange::Discrete { width, height } => (width, height),
        SizeRange::Stepwise {
            min_width,
            max_width,
            step_width,
            min_height,
            max_height,
            step_height,
        } => (
            snap(want_w, min_width, max_width, step_width),
            snap(want_h, min_height, max_height, step_height),
        ),
    });
    candidates.filter(|&(w, h)| w > 0 && h > 0).min_by(|a, b| {
        let (da, db) = (
            size_distance(a.0, a.1, want_w, want_h),
            size_distance(b.0, b.1, want_w, want_h),
        );
        da.total_cmp(&db)
            .then_with(|| (b.0 as u64 * b.1 as u64).cmp(&(a.0 as u64 * a.1 as u64)))
    })
}

/// A frame interval in seconds per frame, `num / den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub num: u32,
    pub den: u32,
}

impl Interval {
    pub fn seconds(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    pub fn fps(self) -> f64 {
        self.den as f64 / self.num as f64
    }

    fn valid(self) -> bool {
        self.num > 0 && self.den > 0
    }

    /// A fraction for `secs` seconds per frame (1/n when that is exact enough).
    fn from_seconds(secs: f64) -> Self {
        let rate = 1.0 / secs;
        if (rate - rate.round()).abs() < 1e-3 && rate.round() >= 1.0 && rate.round() <= u32::MAX as f64 {
            return Self {
                num: 1,
                den: rate.round() as u32,
            };
        }
        let (mut num, mut den) = ((secs * 10_000.0).round().max(1.0) as u64, 10_000u64);
        let g = gcd(num, den);
        num /= g;
        den /= g;
        Self {
            num: num.min(u32::MAX as u64) as u32,
            den: den as u32,
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} s ({:.3} fps)", self.num, self.den, self.fps())
    }
}

impl From<Fraction> for Interval {
    fn from(f: Fraction) -> Self {
        Self {
            num: f.numerator,
            den: f.denominator,
        }
    }
}

/// Frame intervals as a device lists them for one format and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalRange {
    Discrete(Interval),
    /// `min` is the shortest interval (fastest rate). Also continuous ranges.
    Stepwise {
        min: Interval,
        max: Interval,
        step: Interval,
    },
}

impl From<&FrameIntervalEnum> for IntervalRange {
    fn from(i: &FrameIntervalEnum) -> Self {
        match i {
            FrameIntervalEnum::Discrete(f) => Self::Discrete((*f).into()),
            FrameIntervalEnum::Stepwise(s) => Self::Stepwise {
                min: s.min.into(),
                max: s.max.into(),
                step: s.step.into(),
            },
        }
    }
}

/// The frame interval to ask for: the fastest that is not faster than `fps`
/// needs (so a camera is not run faster than the pipeline wants), or, if
/// every offered rate is faster, the slowest. `fps` <= 0: the fastest
/// offered. `None` if nothing valid is offered.
pub fn choose_interval(offered: &[IntervalRange], fps: f32) -> Option<Interval> {
    let target = (fps.is_finite() && fps > 0.0).then(|| 1.0 / fps as f64);
    let mut candidates: Vec<Interval> = Vec::new();
    for r in offered {
        match *r {
            IntervalRange::Discrete(i) if i.valid() => candidates.push(i),
            IntervalRange::Discrete(_) => {}
            IntervalRange::Stepwise { min, max, step } => {
                if !min.valid() || !max.valid() {
                    continue;
                }
                candidates.push(min);
                candidates.push(max);
                if let Some(t) = target {
                    let (lo, hi) = (min.seconds(), max.seconds().max(min.seconds()));
                    let st = if step.valid() { step.seconds() } else { 0.0 };
                    let mut s = t.clamp(lo, hi);
                    if st > 0.0 {
                        // Round up onto the step grid: not faster than asked.
                        s = (lo + ((s - lo) / st - 1e-9).ceil() * st).min(hi);
                    }
                    candidates.push(Interval::from_seconds(s));
                }
            }
        }
    }
    let fastest = |c: &[Interval]| {
        c.iter()
            .copied()
            .min_by(|a, b| a.seconds().total_cmp(&b.seconds()))
    };
    let Some(t) = target else {
        return fastest(&candidates);
    };
    let slow_enough: Vec<Interval> = candidates
        .iter()
        .copied()
        .filter(|i| i.seconds() >= t * (1.0 - 1e-4))
        .collect();
    fastest(&slow_enough).or_else(|| {
        candidates
            .iter()
            .copied()
            .max_by(|a, b| a.seconds().total_cmp(&b.seconds()))
    })
}

fn io_unavailable(path: &Path, what: &str, e: io::Error) -> CaptureError {
    CaptureError::Unavailable(format!("{}: {what}: {e}", path.display()))
}

fn fourcc_list(list: &[FourCC]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ")
}

/// An open, configured device.
struct Opened {
    // Declared (and so dropped) before the device.
    stream: MmapStream<'static>,
    device: Device,
    kind: PixelKind,
    fourcc: FourCC,
    width: u32,
    height: u32,
    stride: usize,
    /// CLOCK_MONOTONIC when the device was configured, in microseconds.
    opened_us: Option<i64>,
    /// STREAMON was done (with buffers 1.. queued): frames may be polled
    /// for. Any error closes the device, and a reopened one starts over.
    streaming: bool,
}

/// The V4L2 capture source.
pub struct V4l2Source {
    path: PathBuf,
    opts: SourceOptions,
    opened: Option<Opened>,
    decoded: Vec<u8>,
    decoder: Option<JpegDecoder>,
    resizer: Resizer,
    /// Whether the JPEG-size mismatch was logged (once per source).
    size_warned: bool,
}

impl V4l2Source {
    pub fn new(path: PathBuf, opts: SourceOptions) -> Self {
        Self {
            path,
            opts,
            opened: None,
            decoded: Vec::new(),
            decoder: None,
            resizer: Resizer::new(),
            size_warned: false,
        }
    }

    fn configure(&self) -> Result<Opened, CaptureError> {
        let path = &self.path;
        let device = Device::with_path(path).map_err(|e| {
            // File permissions give EACCES; EPERM on open comes from a
            // device policy (systemd's DeviceAllow=, a container's).
            let what = if e.raw_os_error() == Some(libc::EPERM) {
                "cannot open (refused by a device policy: under systemd, DeviceAllow=char-video4linux is \
                 resolved when the service starts, so a camera driver loaded later needs \
                 `systemctl restart edgevision`)"
            } else {
                "cannot open"
            };
            io_unavailable(path, what, e)
        })?;
        let caps = device
            .query_caps()
            .map_err(|e| io_unavailable(path, "cannot query capabilities", e))?;
        let flags = caps.capabilities;
        if !flags.contains(CapFlags::VIDEO_CAPTURE) {
            let why = if flags.contains(CapFlags::VIDEO_CAPTURE_MPLANE) {
                "multi-planar capture devices are not supported"
            } else {
                "not a video capture device"
            };
            return Err(CaptureError::Fatal(format!(
                "{}: {why} (driver {}, card {:?}, capabilities {flags})",
                path.display(),
                caps.driver,
                caps.card
            )));
        }
        if !flags.contains(CapFlags::STREAMING) {
            return Err(CaptureError::Fatal(format!(
                "{}: device does not support streaming I/O (driver {}, card {:?})",
                path.display(),
                caps.driver,
                caps.card
            )));
        }

        let formats = device
            .enum_formats()
            .map_err(|e| io_unavailable(path, "cannot list formats", e))?;
        let offered: Vec<FourCC> = formats.iter().map(|f| f.fourcc).collect();
        let pref = self.opts.format;
        let fourcc = choose_format(&offered, pref).ok_or_else(|| {
            CaptureError::Fatal(format!(
                "{}: offers no format we can convert (it offers: {}; we take MJPG, YUYV, RGB3, BGR3, NV12, GREY)",
                path.display(),
                fourcc_list(&offered)
            ))
        })?;
        if pref != PixelFormatPref::Auto && !wanted(pref).contains(&fourcc) {
            tracing::info!(
                "{}: format {pref} not offered (offers {}); using {fourcc}",
                path.display(),
                fourcc_list(&offered)
            );
        }

        let current = device
            .format()
            .map_err(|e| io_unavailable(path, "cannot read the current format", e))?;
        let want_w = if self.opts.width == 0 {
            current.width
        } else {
            self.opts.width
        };
        let want_h = if self.opts.height == 0 {
            current.height
        } else {
            self.opts.height
        };
        let sizes: Vec<SizeRange> = device
            .enum_framesizes(fourcc)
            .map(|v| v.iter().map(|s| SizeRange::from(&s.size)).collect())
            .unwrap_or_default();
        let (w, h) = choose_size(&sizes, want_w, want_h).unwrap_or((want_w, want_h));
        let fmt = device
            .set_format(&Format::new(w, h, fourcc))
            .map_err(|e| io_unavailable(path, &format!("cannot set format {fourcc} {w}x{h}"), e))?;
        let kind = kind_of(fmt.fourcc).ok_or_else(|| {
            CaptureError::Fatal(format!(
                "{}: asked for {fourcc}, the driver chose {} which we cannot convert",
                path.display(),
                fmt.fourcc
            ))
        })?;
        if (fmt.width, fmt.height) != (w, h) {
            tracing::info!(
                "{}: asked for {w}x{h}, the driver chose {}x{}",
                path.display(),
                fmt.width,
                fmt.height
            );
        }

        self.set_frame_rate(&device, fmt.fourcc, fmt.width, fmt.height);

        let mut stream = MmapStream::with_buffers(&device, BufType::VideoCapture, BUFFER_COUNT)
            .map_err(|e| io_unavailable(path, "cannot map capture buffers", e))?;
        if !self.opts.stall_timeout.is_zero() {
            stream.set_timeout(self.opts.stall_timeout.min(MAX_STALL_TIMEOUT));
        }
        let min_stride = match kind {
            PixelKind::Yuyv => fmt.width as usize * 2,
            PixelKind::Rgb24 | PixelKind::Bgr24 => fmt.width as usize * 3,
            PixelKind::Nv12 | PixelKind::Grey | PixelKind::Jpeg => fmt.width as usize,
        };
        let stride = (fmt.stride as usize).max(min_stride);
        tracing::info!(
            "{}: {} ({}), {} {}x{} stride {stride}",
            path.display(),
            caps.card,
            caps.driver,
            fmt.fourcc,
            fmt.width,
            fmt.height
        );
        Ok(Opened {
            stream,
            device,
            kind,
            fourcc: fmt.fourcc,
            width: fmt.width,
            height: fmt.height,
            stride,
            opened_us: monotonic_us(),
            streaming: false,
        })
    }

    /// Reads one buffer into `frame`: `Ok(false)` if it was a stale frame
    /// (captured before this stream was opened) and was skipped.
    fn read_one(&mut self, frame: &mut Frame) -> Result<bool, CaptureError> {
        let Self {
            path,
            opts,
            opened,
            decoded,
            decoder,
            resizer,
            size_warned,
        } = self;
        let o = opened
            .as_mut()
            .ok_or_else(|| CaptureError::Unavailable(format!("{} is not open", path.display())))?;
        if !o.streaming {
            // Start the stream here rather than in v4l's first `next`, so
            // that the first frame too is waited for in short polls: every
            // buffer but 0 is queued, then STREAMON; `next` queues "the
            // previous" buffer, index 0 at first, before it dequeues.
            for i in 1..BUFFER_COUNT as usize {
                if let Err(e) = CaptureStream::queue(&mut o.stream, i) {
                    // A driver that gave fewer buffers: run with those.
                    if i >= 2 {
                        break;
                    }
                    return Err(io_unavailable(path, "cannot queue capture buffers", e));
                }
            }
            o.stream
                .start()
                .map_err(|e| io_unavailable(path, "cannot start streaming", e))?;
            o.streaming = true;
        }
        {
            // Wait in short polls, so that a stop is seen while the camera
            // sends nothing. (`v4l` queues the previous buffer again on
            // each `next`, so its own poll timing out cannot be retried.)
            let waiting_since = Instant::now();
            let stall = opts.stall_timeout.min(MAX_STALL_TIMEOUT);
            loop {
                let step = if stall.is_zero() {
                    POLL_STEP
                } else {
                    POLL_STEP.min(stall.saturating_sub(waiting_since.elapsed()))
                };
                // At least 1 ms: a 0 ms poll near the deadline would spin.
                let ms = (step.as_millis() as i32).max(1);
                let ready = match o.stream.handle().poll(libc::POLLIN, ms) {
                    Ok(n) => n,
                    // A signal (SIGHUP for a reload) is no capture failure.
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                    Err(e) => return Err(io_unavailable(path, "capture failed", e)),
                };
                if ready > 0 {
                    break;
                }
                if super::util::cancelled() {
                    return Err(CaptureError::EndOfStream);
                }
                if !stall.is_zero() && waiting_since.elapsed() >= stall {
                    return Err(CaptureError::Stalled(opts.stall_timeout));
                }
            }
        }
        let (buf, meta) = match CaptureStream::next(&mut o.stream) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(CaptureError::Stalled(opts.stall_timeout));
            }
            Err(e) => return Err(io_unavailable(path, "capture failed", e)),
        };
        let start = Instant::now();
        if is_stale(meta, o.opened_us) {
            // v4l2loopback hands a new reader the last frame written, however
            // old: after a stall that would pass for a live frame.
            tracing::debug!("{}: skipping a frame older than the stream", path.display());
            return Ok(false);
        }
        if meta.flags.contains(BufFlags::ERROR) {
            return Err(CaptureError::Corrupt(format!(
                "buffer {} flagged as bad by the driver",
                meta.sequence
            )));
        }
        let used = meta.bytesused as usize;
        let data = if used == 0 || used > buf.len() {
            buf
        } else {
            &buf[..used]
        };
        let (w, h, stride) = (o.width, o.height, o.stride);
        let converted = match o.kind {
            PixelKind::Jpeg => {
                // A zero-padded buffer is fine: decoding stops at EOI.
                // MJPEG frames need not match the negotiated size (a
                // loopback writer, some cameras): downstream gets one size
                // per stream, the picture letterboxed into it (unless the
                // JPEGs are passed through as they came).
                let dec = super::jpeg::get_or_create(decoder)?;
                let (jw, jh) =
                    decode_jpeg_frame(dec, resizer, data, decoded, frame, opts.pass_jpeg, |_, _| (w, h))
                        .map_err(CaptureError::Corrupt)?;
                if (jw, jh) != (w, h) && opts.pass_jpeg.is_none() && !*size_warned {
                    *size_warned = true;
                    tracing::info!(
                        "{}: JPEG frames of {jw}x{jh} in a {w}x{h} stream; scaling them",
                        path.display()
                    );
                }
                Ok(())
            }
            kind => {
                frame.reshape(w, h);
                let dst = &mut frame.rgb;
                match kind {
                    PixelKind::Yuyv => convert::yuyv_to_rgb(data, w, h, stride, dst),
                    PixelKind::Nv12 => convert::nv12_to_rgb(data, w, h, stride, dst),
                    PixelKind::Grey => convert::grey_to_rgb(data, w, h, stride, dst),
                    PixelKind::Rgb24 => convert::rgb24_to_rgb(data, w, h, stride, dst),
                    PixelKind::Bgr24 => convert::bgr24_to_rgb(data, w, h, stride, dst),
                    PixelKind::Jpeg => unreachable!(),
                }
            }
        };
        converted.map_err(|e| CaptureError::Corrupt(e.to_string()))?;
        frame.decode_time = start.elapsed();
        frame.captured_at = Instant::now();
        Ok(true)
    }

    /// Asks for the frame interval [`choose_interval`] picks. Failure is
    /// logged, not fatal: some drivers have a fixed rate.
    fn set_frame_rate(&self, device: &Device, fourcc: FourCC, width: u32, height: u32) {
        let path = self.path.display();
        let fps = self.opts.fps;
        let offered: Vec<IntervalRange> = device
            .enum_frameintervals(fourcc, width, height)
            .map(|v| v.iter().map(|i| IntervalRange::from(&i.interval)).collect())
            .unwrap_or_default();
        let interval = match choose_interval(&offered, fps) {
            Some(i) => i,
            // Not enumerable: ask directly (the driver picks the nearest);
            // for "fastest" ask for an absurd rate.
            None if fps.is_finite() && fps > 0.0 => Interval::from_seconds(1.0 / fps as f64),
            None => Interval { num: 1, den: 1000 },
        };
        match device.params() {
            Ok(p)
                if !p
                    .capabilities
                    .contains(v4l::parameters::Capabilities::TIME_PER_FRAME) =>
            {
                tracing::info!("{path}: the driver does not support setting the frame rate");
                return;
            }
            _ => {}
        }
        match device.set_params(&Parameters::new(Fraction::new(interval.num, interval.den))) {
            Ok(actual) => {
                let got = Interval::from(actual.interval);
                if got.valid() {
                    tracing::info!("{path}: frame interval {got} (asked {interval})");
                }
            }
            Err(e) => tracing::warn!("{path}: cannot set frame interval {interval}: {e}"),
        }
    }
}

/// Stale frames skipped in a row before a read gives up (as corrupt).
const MAX_STALE_SKIPS: usize = 8;
/// A frame timestamped this long before its stream was opened is stale.
const STALE_AGE_US: i64 = 500_000;

/// CLOCK_MONOTONIC in microseconds, the clock V4L2 timestamps use.
fn monotonic_us() -> Option<i64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (rc == 0).then(|| ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000)
}

/// Whether a buffer was captured well before the stream was opened: a
/// non-zero timestamp more than [`STALE_AGE_US`] older. Timestamps of type
/// "unknown" count too: v4l2loopback 0.12 stamps with the monotonic clock
/// without saying so, and a wall-clock stamp is far in the future of the
/// monotonic one, so it never looks stale. Copied (user) stamps are ignored.
fn is_stale(meta: &Metadata, opened_us: Option<i64>) -> bool {
    let Some(opened) = opened_us else { return false };
    let kind = meta.flags.bits() & BufFlags::TIMESTAMP_MASK.bits();
    if kind != BufFlags::TIMESTAMP_MONOTONIC.bits() && kind != BufFlags::TIMESTAMP_UNKNOWN.bits() {
        return false;
    }
    let ts = meta.timestamp.sec * 1_000_000 + meta.timestamp.usec;
    ts > 0 && ts < opened - STALE_AGE_US
}

/// Releases the stream and closes the device. `v4l`'s destructors panic
/// on unexpected ioctl errors; a camera failing must not take the daemon
/// down, so the stream is stopped first (its error examined) and the drops
/// run under `catch_unwind`.
fn release(path: &Path, opened: Opened) {
    let Opened {
        mut stream, device, ..
    } = opened;
    match stream.stop() {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
        Err(e) => {
            // Dropping the stream now would panic, possibly twice (abort).
            // Leak it (and with it the file descriptor) instead.
            tracing::error!(
                "{}: cannot stop streaming ({e}); leaking the device handle",
                path.display()
            );
            std::mem::forget(stream);
            drop(device);
            return;
        }
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        drop(stream);
        drop(device);
    }));
    if result.is_err() {
        tracing::error!("{}: error while releasing the device", path.display());
    }
}

impl Source for V4l2Source {
    fn describe(&self) -> String {
        match &self.opened {
            Some(o) => format!(
                "v4l2:{} ({} {}x{})",
                self.path.display(),
                o.fourcc,
                o.width,
                o.height
            ),
            None => format!("v4l2:{}", self.path.display()),
        }
    }

    fn open(&mut self) -> Result<(), CaptureError> {
        self.close();
        self.opened = Some(self.configure()?);
        Ok(())
    }

    fn read(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        for _ in 0..MAX_STALE_SKIPS {
            if self.read_one(frame)? {
                return Ok(());
            }
        }
        Err(CaptureError::Corrupt(format!(
            "{}: only frames older than the stream",
            self.path.display()
        )))
    }

    fn close(&mut self) {
        if let Some(o) = self.opened.take() {
            release(&self.path, o);
        }
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        self.close();
    }
}

// ---------------------------------------------------------------------------
// Device listing

/// Frame sizes of one format, with the frame rates of discrete sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeInfo {
    pub size: SizeRange,
    /// Discrete rates in frames per second (empty when not enumerable or a
    /// range; see `fps_range`).
    pub fps: Vec<f64>,
    /// (slowest, fastest) for a stepwise interval range.
    pub fps_range: Option<(f64, f64)>,
}

/// One pixel format a device offers.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatInfo {
    pub fourcc: String,
    pub description: String,
    /// Whether edgevision can convert it.
    pub supported: bool,
    pub sizes: Vec<SizeInfo>,
}

/// What `edgevision devices` shows for one `/dev/video*` node.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub path: PathBuf,
    pub driver: String,
    pub card: String,
    pub bus: String,
    /// Single-planar video capture with streaming: usable as a source.
    pub capture: bool,
    pub formats: Vec<FormatInfo>,
    /// Why the device could not be queried (busy, permissions, ...).
    pub error: Option<String>,
}

/// Lists `/dev/video*` nodes (in numeric order) with their names and, for
/// capture devices, formats, sizes and frame rates. Never fails: a node
/// that cannot be opened is listed with its error.
pub fn list_devices() -> Vec<DeviceInfo> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name();
                    let n = name.to_str()?.strip_prefix("video")?.parse::<u32>().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| describe_device(&p)).collect()
}

fn describe_device(path: &Path) -> DeviceInfo {
    let mut info = DeviceInfo {
        path: path.to_path_buf(),
        driver: String::new(),
        card: String::new(),
        bus: String::new(),
        capture: false,
        formats: Vec::new(),
        error: None,
    };
    let device = match Device::with_path(path) {
        Ok(d) => d,
        Err(e) => {
            info.error = Some(format!("cannot open: {e}"));
            return info;
        }
    };
    let caps = match device.query_caps() {
        Ok(c) => c,
        Err(e) => {
            info.error = Some(format!("cannot query capabilities: {e}"));
            return info;
        }
    };
    info.driver = caps.driver.clone();
    info.card = caps.card.clone();
    info.bus = caps.bus.clone();
    info.capture = caps
        .capabilities
        .contains(CapFlags::VIDEO_CAPTURE | CapFlags::STREAMING);
    if !info.capture {
        return info;
    }
    for f in device.enum_formats().unwrap_or_default() {
        let mut sizes = Vec::new();
        for s in device.enum_framesizes(f.fourcc).unwrap_or_default() {
            let size = SizeRange::from(&s.size);
            let (mut fps, mut fps_range) = (Vec::new(), None);
            if let SizeRange::Discrete { width, height } = size {
                for i in device
                    .enum_frameintervals(f.fourcc, width, height)
                    .unwrap_or_default()
                {
                    match IntervalRange::from(&i.interval) {
                        IntervalRange::Discrete(iv) if iv.valid() => fps.push(iv.fps()),
                        IntervalRange::Stepwise { min, max, .. } if min.valid() && max.valid() => {
                            fps_range = Some((max.fps(), min.fps()))
                        }
                        _ => {}
                    }
                }
            }
            sizes.push(SizeInfo { size, fps, fps_range });
        }
        info.formats.push(FormatInfo {
            fourcc: f.fourcc.to_string(),
            description: f.description.clone(),
            supported: kind_of(f.fourcc).is_some(),
            sizes,
        });
    }
    info
}

fn fmt_fps(v: f64) -> String {
    if (v - v.round()).abs() < 0.01 {
        format!("{}", v.round())
    } else {
        format!("{v:.2}")
    }
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(e) = &self.error {
            return writeln!(f, ": {e}");
        }
        write!(f, ": {} (driver {}", self.card, self.driver)?;
        if !self.bus.is_empty() {
            write!(f, ", {}", self.bus)?;
        }
        writeln!(f, ")")?;
        if !self.capture {
            return writeln!(f, "  not a video capture device");
        }
        if self.formats.is_empty() {
            writeln!(f, "  no formats listed")?;
        }
        for fmt_info in &self.formats {
            write!(f, "  {} ({})", fmt_info.fourcc, fmt_info.description)?;
            if !fmt_info.supported {
                write!(f, " [not supported by edgevision]")?;
            }
            writeln!(f)?;
            for s in &fmt_info.sizes {
                write!(f, "    {}", s.size)?;
                if !s.fps.is_empty() {
                    let list: Vec<String> = s.fps.iter().map(|&v| fmt_fps(v)).collect();
                    write!(f, " @ {} fps", list.join(", "))?;
                } else if let Some((lo, hi)) = s.fps_range {
                    write!(f, " @ {} to {} fps", fmt_fps(lo), fmt_fps(hi))?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(s: &[u8; 4]) -> FourCC {
        FourCC::new(s)
    }

    fn meta(flags: u32, sec: i64, usec: i64) -> Metadata {
        Metadata {
            flags: BufFlags::from(flags),
            timestamp: v4l::Timestamp::new(sec as libc::time_t, usec as libc::time_t),
            ..Metadata::default()
        }
    }

    #[test]
    fn frames_older_than_the_stream_are_stale() {
        let opened = Some(100_000_000); // 100 s of monotonic time
        let mono = BufFlags::TIMESTAMP_MONOTONIC.bits();
        // Captured after the open, or just before it: live.
        assert!(!is_stale(&meta(mono, 100, 200_000), opened));
        assert!(!is_stale(&meta(mono, 99, 800_000), opened));
        // Seconds before the open (a loopback writer that stopped): stale,
        // whether the driver says "monotonic" or nothing.
        assert!(is_stale(&meta(mono, 97, 0), opened));
        assert!(is_stale(&meta(0, 97, 0), opened));
        // Copied stamps, no stamp at all, no clock: never stale.
        assert!(!is_stale(&meta(BufFlags::TIMESTAMP_COPY.bits(), 97, 0), opened));
        assert!(!is_stale(&meta(mono, 0, 0), opened));
        assert!(!is_stale(&meta(mono, 97, 0), None));
        // A wall-clock stamp is far ahead of the monotonic clock.
        assert!(!is_stale(&meta(0, 1_790_000_000, 0), opened));
    }

    #[test]
    fn format_preference_and_fallback() {
        let uvc = [fc(b"YUYV"), fc(b"MJPG")];
        assert_eq!(choose_format(&uvc, PixelFormatPref::Auto), Some(fc(b"MJPG")));
        assert_eq!(choose_format(&uvc, PixelFormatPref::Yuyv), Some(fc(b"YUYV")));
        assert_eq!(choose_format(&uvc, PixelFormatPref::Mjpeg), Some(fc(b"MJPG")));
        // Not offered: fall back in order.
        assert_eq!(choose_format(&uvc, PixelFormatPref::Nv12), Some(fc(b"MJPG")));
        let vivid = [
            fc(b"YUYV"),
            fc(b"UYVY"),
            fc(b"NV12"),
            fc(b"RGB3"),
            fc(b"BGR3"),
            fc(b"GREY"),
        ];
        assert_eq!(choose_format(&vivid, PixelFormatPref::Auto), Some(fc(b"YUYV")));
        assert_eq!(choose_format(&vivid, PixelFormatPref::Grey), Some(fc(b"GREY")));
        assert_eq!(choose_format(&vivid, PixelFormatPref::Bgr24), Some(fc(b"BGR3")));
        assert_eq!(
            choose_format(&[fc(b"NV12"), fc(b"GREY")], PixelFormatPref::Rgb24),
            Some(fc(b"NV12"))
        );
        assert_eq!(
            choose_format(&[fc(b"JPEG")], PixelFormatPref::Mjpeg),
            Some(fc(b"JPEG"))
        );
        assert_eq!(
            choose_format(&[fc(b"H264"), fc(b"UYVY")], PixelFormatPref::Auto),
            None
        );
        assert_eq!(choose_format(&[], PixelFormatPref::Yuyv), None);
    }

    #[test]
    fn size_closest_to_the_request() {
        let d = |width, height| SizeRange::Discrete { width, height };
        let cam = [d(320, 240), d(640, 480), d(1280, 720), d(1920, 1080)];
        assert_eq!(choose_size(&cam, 640, 480), Some((640, 480)));
        assert_eq!(choose_size(&cam, 1280, 800), Some((1280, 720)));
        assert_eq!(choose_size(&cam, 100, 100), Some((320, 240)));
        assert_eq!(choose_size(&cam, 4000, 3000), Some((1920, 1080)));
        // Equally far (2x either way): the larger wins.
        assert_eq!(
            choose_size(&[d(320, 240), d(1280, 960)], 640, 480),
            Some((1280, 960))
        );
        let step = [SizeRange::Stepwise {
            min_width: 16,
            max_width: 1920,
            step_width: 8,
            min_height: 16,
            max_height: 1080,
            step_height: 2,
        }];
        assert_eq!(choose_size(&step, 640, 480), Some((640, 480)));
        assert_eq!(choose_size(&step, 643, 479), Some((640, 480)));
        assert_eq!(choose_size(&step, 5000, 5000), Some((1920, 1080)));
        assert_eq!(choose_size(&step, 1, 1), Some((16, 16)));
        let cont = [SizeRange::Stepwise {
            min_width: 1,
            max_width: 4096,
            step_width: 0,
            min_height: 1,
            max_height: 4096,
            step_height: 1,
        }];
        assert_eq!(choose_size(&cont, 333, 222), Some((333, 222)));
        assert_eq!(choose_size(&[], 640, 480), None);
    }

    fn iv(num: u32, den: u32) -> Interval {
        Interval { num, den }
    }

    #[test]
    fn interval_not_faster_than_needed() {
        let disc = |n, d| IntervalRange::Discrete(iv(n, d));
        let cam = [disc(1, 30), disc(1, 15), disc(1, 5)];
        assert_eq!(choose_interval(&cam, 0.0), Some(iv(1, 30)));
        assert_eq!(choose_interval(&cam, 30.0), Some(iv(1, 30)));
        assert_eq!(choose_interval(&cam, 15.0), Some(iv(1, 15)));
        assert_eq!(choose_interval(&cam, 20.0), Some(iv(1, 15)));
        assert_eq!(choose_interval(&cam, 10.0), Some(iv(1, 5)));
        // Everything offered is faster than asked: the slowest.
        assert_eq!(choose_interval(&cam, 2.0), Some(iv(1, 5)));
        // vivid-like 1001-based rates.
        let ntsc = [disc(1001, 30000), disc(1001, 15000)];
        assert_eq!(choose_interval(&ntsc, 15.0), Some(iv(1001, 15000)));
        assert_eq!(choose_interval(&ntsc, 29.97), Some(iv(1001, 30000)));
        // Invalid entries are ignored.
        assert_eq!(choose_interval(&[disc(0, 30), disc(1, 0)], 0.0), None);
        assert_eq!(choose_interval(&[], 10.0), None);
    }

    #[test]
    fn interval_from_a_range() {
        let range = [IntervalRange::Stepwise {
            min: iv(1, 60),
            max: iv(1, 1),
            step: iv(1, 1_000_000),
        }];
        assert_eq!(choose_interval(&range, 0.0), Some(iv(1, 60)));
        assert_eq!(choose_interval(&range, 25.0), Some(iv(1, 25)));
        assert_eq!(choose_interval(&range, 120.0), Some(iv(1, 60)));
        assert_eq!(choose_interval(&range, 0.5), Some(iv(1, 1)));
        let coarse = [IntervalRange::Stepwise {
            min: iv(1, 10),
            max: iv(1, 1),
            step: iv(1, 10),
        }];
        // 1/7 s rounds up to the grid: 0.2 s (5 fps), not faster than 7.
        assert_eq!(choose_interval(&coarse, 7.0), Some(iv(1, 5)));
    }

    #[test]
    fn device_info_display() {
        let info = DeviceInfo {
            path: "/dev/video0".into(),
            driver: "vivid".into(),
            card: "vivid".into(),
            bus: "platform:vivid-000".into(),
            capture: true,
            formats: vec![FormatInfo {
                fourcc: "YUYV".into(),
                description: "YUYV 4:2:2".into(),
                supported: true,
                sizes: vec![SizeInfo {
                    size: SizeRange::Discrete {
                        width: 640,
                        height: 480,
                    },
                    fps: vec![30.0, 29.97],
                    fps_range: None,
                }],
            }],
            error: None,
        };
        let s = info.to_string();
        assert!(
            s.contains("/dev/video0: vivid (driver vivid, platform:vivid-000)"),
            "{s}"
        );
        assert!(
            s.contains("YUYV (YUYV 4:2:2)") && s.contains("640x480 @ 30, 29.97 fps"),
            "{s}"
        );
        // Works (returns an empty or partial list) without any device.
        let _ = list_devices();
    }

    #[test]
    fn missing_device_is_unavailable() {
        let mut src = V4l2Source::new("/dev/video-edgevision-none".into(), SourceOptions::default());
        assert!(matches!(src.open(), Err(CaptureError::Unavailable(_))));
        let mut frame = Frame::default();
        assert!(matches!(src.read(&mut frame), Err(CaptureError::Unavailable(_))));
        src.close();
        assert_eq!(src.describe(), "v4l2:/dev/video-edgevision-none");
    }
}
