//! `exec:COMMAND` and `rpicam:N` — frames from a child process's stdout.
//!
//! `exec:` runs COMMAND with `sh -c`, so quoting, pipes and redirections
//! work as in a shell (the command comes from the config, which is trusted
//! like a systemd `ExecStart=`). Its stdout holds either MJPEG (JPEGs found
//! by their markers, as for `mjpeg:` files; `source.format = "auto"` or
//! `"mjpeg"`) or raw frames of `source.width` x `source.height` in
//! `source.format` (i420, nv12, yuyv, rgb24, bgr24, grey).
//!
//! `rpicam:N` runs `rpicam-vid -t 0 -n --codec yuv420 --width W --height H
//! [--framerate F] --camera N -o -` directly (no shell). Its I420 rows are
//! padded: the Raspberry Pi ISP aligns the YUV420 luma stride to 64 bytes
//! (raspberrypi/linux PR #4419, "isp: Set the YUV420/YVU420 format stride
//! to 64 bytes"), the chroma stride is half of it, and rpicam-vid's yuv420
//! output writes the buffers as they are, plane after plane
//! ([`rpicam_strides`]).
//!
//! `rtsp://` runs `ffmpeg` directly with the arguments of
//! [`super::rtsp::ffmpeg_args`]: unpadded I420 frames of the configured size.
//!
//! The child runs in its own process group and is killed, the whole group
//! with SIGKILL, when the source closes (stop, reload, reconnect, drop), so
//! nothing it started outlives it. When it exits, or writes nothing usable
//! for `stall_timeout`, the read fails and [`super::Resilient`] starts it
//! again with backoff. The kernel kills it when the daemon dies, even by
//! SIGKILL (`PR_SET_PDEATHSIG`). Its stderr goes to the log, at most
//! [`STDERR_LINES_PER_WINDOW`] lines per [`STDERR_WINDOW`]. Reads poll the
//! pipe in steps of [`READ_STEP`], so a stop request is seen within it.

use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::convert;
use super::http::redact;
use super::mjpeg::{next_jpeg, ByteReader};
use super::rtsp::{self, RtspUrl};
use super::util::{cancelled, JpegFrames};
use super::{CaptureError, Frame, PixelFormatPref, Source, SourceOptions};

/// Longest single wait on the pipe.
pub const READ_STEP: Duration = Duration::from_millis(200);
/// Stderr lines logged per window; the rest are counted.
pub const STDERR_LINES_PER_WINDOW: u32 = 20;
pub const STDERR_WINDOW: Duration = Duration::from_secs(10);
/// With no `stall_timeout`, the longest wait for a frame anyway: a command
/// that never writes one must not hold the source forever.
const DEFAULT_STALL: Duration = Duration::from_secs(10);
/// `rtsp://`: the least time given for the first frame after starting ffmpeg.
const RTSP_FIRST_FRAME: Duration = Duration::from_secs(8);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `sh -c COMMAND`.
    Shell(String),
    /// `rpicam-vid` for camera N.
    Rpicam(u32),
    /// `ffmpeg` reading an RTSP camera ([`super::rtsp`]).
    Rtsp(RtspUrl),
}

impl Program {
    /// For logs: URLs in the command have their credentials redacted.
    pub fn describe(&self) -> String {
        match self {
            Self::Shell(c) => format!("exec:{}", redact_words(c)),
            Self::Rpicam(n) => format!("rpicam:{n}"),
            Self::Rtsp(u) => u.to_string(),
        }
    }

    /// The executable that must be found: `rpicam-vid`, or the command's
    /// first word unless that is shell syntax (then `None`: not checkable).
    pub fn executable(&self) -> Option<String> {
        match self {
            Self::Rpicam(_) => Some("rpicam-vid".into()),
            Self::Rtsp(_) => Some("ffmpeg".into()),
            Self::Shell(c) => {
                let first = c.split_whitespace().next()?;
                let shell_word = first.contains([
                    '=', '$', '`', '(', ')', '{', '}', ';', '|', '&', '<', '>', '"', '\'',
                ]) || matches!(
                    first,
                    "exec"
                        | "while"
                        | "until"
                        | "for"
                        | "if"
                        | "case"
                        | "!"
                        | "."
                        | "eval"
                        | "command"
                        | "cd"
                );
                (!shell_word).then(|| first.to_string())
            }
        }
    }
}

/// `s` with each whitespace-separated word that looks like a URL redacted.
pub fn redact_words(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            if w.contains("://") {
                redact(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where `exe` is found: a path with a `/` as it is, else the first
/// executable file of that name on `PATH`.
pub fn find_executable(exe: &str) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if exe.contains('/') {
        let p = PathBuf::from(exe);
        return is_exec(&p).then_some(p);
    }
    std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(exe))
                .find(|p| is_exec(p))
        })
        .unwrap_or(None)
}

fn align64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// rpicam-vid's yuv420 row strides for a frame `width` pixels wide: luma
/// aligned to 64 bytes, chroma half of that.
pub fn rpicam_strides(width: u32) -> (usize, usize) {
    let y = align64(width as usize);
    (y, y / 2)
}

/// How the command's stdout is cut into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Mjpeg,
    Raw {
        format: PixelFormatPref,
        width: u32,
        height: u32,
        /// Row strides (I420: luma and chroma; others: the one plane).
        stride: usize,
        c_stride: usize,
    },
}

impl Layout {
    fn frame_len(&self) -> usize {
        let Layout::Raw {
            format,
            width,
            height,
            stride,
            c_stride,
        } = *self
        else {
            return 0;
        };
        let (w, h) = (width as usize, height as usize);
        match format {
            PixelFormatPref::I420 => convert::i420_frame_len(width, height, stride, c_stride),
            PixelFormatPref::Nv12 => stride * h + stride * h.div_ceil(2),
            _ => stride.max(w) * h,
        }
    }
}

/// The layout `program` writes with these options, or why it cannot work.
fn layout_for(program: &Program, opts: &SourceOptions) -> Result<Layout, String> {
    let (w, h) = (opts.width, opts.height);
    let need_size = |what: &str| {
        if w == 0 || h == 0 {
            Err(format!(
                "{what} needs source.width and source.height (the frame size)"
            ))
        } else {
            Ok(())
        }
    };
    match program {
        Program::Rtsp(_) => {
            need_size("rtsp://")?;
            if w % 2 == 1 || h % 2 == 1 {
                return Err(format!("rtsp:// needs an even width and height, not {w}x{h}"));
            }
            let wu = w as usize;
            Ok(Layout::Raw {
                format: PixelFormatPref::I420,
                width: w,
                height: h,
                stride: wu,
                c_stride: wu / 2,
            })
        }
        Program::Rpicam(_) => {
            need_size("rpicam:")?;
            if w % 2 == 1 || h % 2 == 1 {
                return Err(format!("rpicam: needs an even width and height, not {w}x{h}"));
            }
            let (stride, c_stride) = rpicam_strides(w);
            Ok(Layout::Raw {
                format: PixelFormatPref::I420,
                width: w,
                height: h,
                stride,
                c_stride,
            })
        }
        Program::Shell(_) => {
            let f = opts.format;
            let wu = w as usize;
            let (stride, c_stride) = match f {
                PixelFormatPref::Auto | PixelFormatPref::Mjpeg => return Ok(Layout::Mjpeg),
                PixelFormatPref::I420 => (wu, wu.div_ceil(2)),
                PixelFormatPref::Nv12 | PixelFormatPref::Grey => (wu, 0),
                PixelFormatPref::Yuyv => (wu.div_ceil(2) * 4, 0),
                PixelFormatPref::Rgb24 | PixelFormatPref::Bgr24 => (wu * 3, 0),
            };
            need_size(&format!("exec: with format = \"{f}\""))?;
            Ok(Layout::Raw {
                format: f,
                width: w,
                height: h,
                stride,
                c_stride,
            })
        }
    }
}

/// Whether the frame size and format can work for `program`.
pub fn layout_check(program: &Program, opts: &SourceOptions) -> Result<(), String> {
    layout_for(program, opts).map(|_| ())
}

/// Checks what can be checked before running: the frame layout and that
/// the executable exists. For `check-config` and the start of `run`.
pub fn check(program: &Program, opts: &SourceOptions) -> Result<(), String> {
    layout_for(program, opts)?;
    if let Some(exe) = program.executable() {
        if find_executable(&exe).is_none() {
            let hint = match program {
                Program::Rpicam(_) => " (install rpicam-apps: sudo apt install rpicam-apps)",
                Program::Rtsp(_) => " (rtsp:// sources need it: sudo apt install ffmpeg)",
                Program::Shell(_) => "",
            };
            return Err(format!("{exe}: command not found on PATH{hint}"));
        }
    }
    Ok(())
}

/// A child's stdout, read in [`READ_STEP`] polls; reads fail with
/// `TimedOut` once `deadline` has passed and when stopping is asked for.
struct Pipe {
    out: ChildStdout,
    deadline: Instant,
    /// Bytes read since the last frame.
    bytes: u64,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if cancelled() {
                return Err(io::Error::other("stopping"));
            }
            let now = Instant::now();
            if now >= self.deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no frame"));
            }
            let wait = READ_STEP.min(self.deadline - now);
            let mut pfd = libc::pollfd {
                fd: self.out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for a file descriptor we own.
            let r = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as libc::c_int) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r > 0 {
                // Readable, or hung up (then read returns 0).
                let n = self.out.read(buf)?;
                self.bytes += n as u64;
                return Ok(n);
            }
        }
    }
}

struct Running {
    child: Child,
    reader: ByteReader<Pipe>,
}

/// Kills `child`'s whole process group and reaps it.
fn kill_group(child: &mut Child) {
    // SAFETY: signalling the process group our child leads. The leader is
    // reaped only below, so its id (the group's) cannot have been reused;
    // members still alive after the leader exited get the signal too.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    let _ = child.wait();
}

/// Makes the kernel kill the child (SIGKILL) when the daemon dies, even by
/// SIGKILL, so a direct child such as ffmpeg is never orphaned. (Members a
/// shell started in turn are not covered: closing kills the whole group.)
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid, kill, getpid).
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl: then nobody is left to signal.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// Logs a child's stderr lines, rate-limited, until the pipe closes.
fn log_stderr(name: String, err: impl Read + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("exec-stderr".into())
        .spawn(move || {
            let mut window = Instant::now();
            let mut logged = 0u32;
            let mut dropped = 0u64;
            for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
                if window.elapsed() >= STDERR_WINDOW {
                    if dropped > 0 {
                        tracing::warn!(source = %name, "{dropped} more stderr lines not logged");
                    }
                    window = Instant::now();
                    logged = 0;
                    dropped = 0;
                }
                if logged < STDERR_LINES_PER_WINDOW {
                    logged += 1;
                    let text = String::from_utf8_lossy(&line);
                    let text: String = text.trim_end().chars().take(500).collect();
                    tracing::warn!(source = %name, "stderr: {}", redact_words(&text));
                } else {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                tracing::warn!(source = %name, "{dropped} more stderr lines not logged");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("{e}: the command's stderr is not logged");
    }
}

/// The `exec:` / `rpicam:` source.
pub struct ExecSource {
    program: Program,
    opts: SourceOptions,
    running: Option<Running>,
    buf: Vec<u8>,
    frames: JpegFrames,
}

impl ExecSource {
    pub fn new(program: Program, opts: SourceOptions) -> Self {
        Self {
            program,
            opts,
            running: None,
            buf: Vec::new(),
            frames: JpegFrames::default(),
        }
    }

    fn stall(&self) -> Duration {
        if self.opts.stall_timeout.is_zero() {
            DEFAULT_STALL
        } else {
            self.opts.stall_timeout
        }
    }

    fn command(&self) -> Command {
        match &self.program {
            Program::Shell(c) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(c);
                cmd
            }
            Program::Rpicam(n) => {
                let mut cmd = Command::new("rpicam-vid");
                cmd.args(["-t", "0", "-n", "--codec", "yuv420"])
                    .args(["--width", &self.opts.width.to_string()])
                    .args(["--height", &self.opts.height.to_string()]);
                if self.opts.fps > 0.0 && self.opts.fps.is_finite() {
                    cmd.args(["--framerate", &self.opts.fps.to_string()]);
                }
                cmd.args(["--camera", &n.to_string(), "-o", "-"]);
                cmd
            }
            Program::Rtsp(url) => {
                let mut cmd = Command::new("ffmpeg");
                cmd.args(rtsp::ffmpeg_args(url, &self.opts));
                cmd
            }
        }
    }

    /// The wait for the first frame: ffmpeg first connects, then probes
    /// the stream (about a second) before it decodes anything.
    fn first_frame_wait(&self) -> Duration {
        match self.program {
            Program::Rtsp(_) => self.stall().max(RTSP_FIRST_FRAME),
            _ => self.stall(),
        }
    }

    /// The error for a failed read: the child's exit, a stall, or garbage.
    fn read_error(&mut self, e: Option<io::Error>) -> CaptureError {
        let name = self.describe();
        let Some(mut run) = self.running.take() else {
            return CaptureError::Unavailable(format!("{name}: not running"));
        };
        let bytes = run.reader.get_ref().bytes;
        let err = match e {
            Some(e) if e.kind() == io::ErrorKind::TimedOut => {
                if bytes > 0 {
                    CaptureError::Unavailable(format!(
                        "{name}: no complete frame in {bytes} bytes of output for {:?}: is it writing {}?",
                        self.stall(),
                        self.expects()
                    ))
                } else {
                    CaptureError::Stalled(self.stall())
                }
            }
            Some(e) => CaptureError::Unavailable(format!("{name}: reading its output: {e}")),
            None => {
                // End of output: the command exited (or closed stdout).
                let deadline = Instant::now() + Duration::from_millis(500);
                let status = loop {
                    match run.child.try_wait() {
                        Ok(Some(s)) => break Some(s),
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        _ => break None,
                    }
                };
                let how = match status {
                    Some(s) if s.code() == Some(127) => format!("{s} (command not found)"),
                    Some(s) => s.to_string(),
                    None => "closed its output".into(),
                };
                CaptureError::Unavailable(format!("{name}: the command ended: {how}"))
            }
        };
        kill_group(&mut run.child);
        err
    }

    fn expects(&self) -> String {
        match layout_for(&self.program, &self.opts) {
            Ok(Layout::Raw {
                format,
                width,
                height,
                ..
            }) => format!("{width}x{height} {format} frames"),
            _ => "MJPEG (set source.format for raw frames)".into(),
        }
    }
}

impl Source for ExecSource {
    fn describe(&self) -> String {
        self.program.describe()
    }

    fn open(&mut self) -> Result<(), CaptureError> {
        self.close();
        layout_for(&self.program, &self.opts).map_err(CaptureError::Fatal)?;
        let name = self.describe();
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            let exe = self.program.executable().unwrap_or_else(|| "sh".into());
            CaptureError::Unavailable(format!("{name}: cannot start {exe}: {e}"))
        })?;
        if let Some(err) = child.stderr.take() {
            log_stderr(name.clone(), err);
        }
        let out = child.stdout.take().expect("stdout is piped");
        tracing::info!(source = %name, "started process {}", child.id());
        self.running = Some(Running {
            child,
            reader: ByteReader::new(Pipe {
                out,
                deadline: Instant::now() + self.first_frame_wait(),
                bytes: 0,
            }),
        });
        Ok(())
    }

    fn read(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let layout = layout_for(&self.program, &self.opts).map_err(CaptureError::Fatal)?;
        let stall = self.stall();
        let Some(run) = self.running.as_mut() else {
            return Err(CaptureError::Unavailable(format!(
                "{} is not running",
                self.describe()
            )));
        };
        let got = match layout {
            Layout::Mjpeg => next_jpeg(&mut run.reader, &mut self.buf),
            Layout::Raw { .. } => {
                self.buf.resize(layout.frame_len(), 0);
                match run.reader.read_exact_into(&mut self.buf) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
                    Err(e) => Err(e),
                }
            }
        };
        match got {
            Ok(true) => {
                let pipe = run.reader.get_mut();
                pipe.deadline = Instant::now() + stall;
                pipe.bytes = 0;
            }
            Ok(false) => return Err(self.read_error(None)),
            Err(e) => return Err(self.read_error(Some(e))),
        }
        let start = Instant::now();
        match layout {
            Layout::Mjpeg => {
                self.frames.decode(&self.buf, frame, &self.opts)?;
            }
            Layout::Raw {
                format,
                width,
                height,
                stride,
                c_stride,
            } => {
                frame.jpeg.clear();
                frame.reshape(width, height);
                let (src, dst) = (&self.buf[..], &mut frame.rgb[..]);
                let r = match format {
                    PixelFormatPref::I420 => convert::i420_to_rgb(src, width, height, stride, c_stride, dst),
                    PixelFormatPref::Nv12 => convert::nv12_to_rgb(src, width, height, stride, dst),
                    PixelFormatPref::Yuyv => convert::yuyv_to_rgb(src, width, height, stride, dst),
                    PixelFormatPref::Rgb24 => convert::rgb24_to_rgb(src, width, height, stride, dst),
                    PixelFormatPref::Bgr24 => convert::bgr24_to_rgb(src, width, height, stride, dst),
                    PixelFormatPref::Grey => convert::grey_to_rgb(src, width, height, stride, dst),
                    PixelFormatPref::Auto | PixelFormatPref::Mjpeg => {
                        Err(convert::ConvertError("not a raw pixel format".into()))
                    }
                };
                r.map_err(|e| CaptureError::Corrupt(e.to_string()))?;
            }
        }
        frame.decode_time = start.elapsed();
        frame.captured_at = Instant::now();
        Ok(())
    }

    fn close(&mut self) {
        if let Some(mut run) = self.running.take() {
            kill_group(&mut run.child);
        }
    }
}

impl Drop for ExecSource {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(format: PixelFormatPref, w: u32, h: u32) -> SourceOptions {
        SourceOptions {
            width: w,
            height: h,
            format,
            stall_timeout: Duration::from_secs(5),
            ..SourceOptions::default()
        }
    }

    /// Process ids whose process group is `pgid`, from /proc.
    pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // Fields after the ")" closing the command name: state ppid pgrp ...
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            if f[2].parse::<u32>() == Ok(pgid) && f[0] != "Z" {
                out.push(pid);
            }
        }
        out
    }

    #[test]
    fn rpicam_strides_pad_rows_to_64_bytes() {
        assert_eq!(rpicam_strides(600), (640, 320));
        assert_eq!(rpicam_strides(640), (640, 320));
        assert_eq!(rpicam_strides(1920), (1920, 960));
        assert_eq!(rpicam_strides(2028), (2048, 1024));
        let l = layout_for(&Program::Rpicam(0), &opts(PixelFormatPref::Auto, 600, 450)).unwrap();
        assert_eq!(l.frame_len(), 640 * 450 + 2 * 320 * 225);
        let e = layout_for(&Program::Rpicam(0), &opts(PixelFormatPref::Auto, 0, 0)).unwrap_err();
        assert!(e.contains("source.width"), "{e}");
        let e = layout_for(&Program::Shell("x".into()), &opts(PixelFormatPref::I420, 0, 0)).unwrap_err();
        assert!(e.contains("format = \"i420\""), "{e}");
        assert_eq!(
            layout_for(&Program::Shell("x".into()), &opts(PixelFormatPref::Auto, 0, 0)),
            Ok(Layout::Mjpeg)
        );
    }

    #[test]
    fn padded_i420_converts_like_packed() {
        let (w, h) = (10u32, 6u32);
        let (cw, ch) = (5usize, 3usize);
        let y: Vec<u8> = (0..w * h).map(|i| (16 + i * 3) as u8).collect();
        let u: Vec<u8> = (0..cw * ch).map(|i| (100 + i * 5) as u8).collect();
        let v: Vec<u8> = (0..cw * ch).map(|i| (200 - i * 7) as u8).collect();
        let packed: Vec<u8> = [&y[..], &u[..], &v[..]].concat();
        let (ys, cs) = rpicam_strides(w);
        let mut padded = vec![0xEEu8; convert::i420_frame_len(w, h, ys, cs)];
        for r in 0..h as usize {
            padded[r * ys..r * ys + w as usize].copy_from_slice(&y[r * w as usize..(r + 1) * w as usize]);
        }
        let (u0, v0) = (ys * h as usize, ys * h as usize + cs * ch);
        for r in 0..ch {
            padded[u0 + r * cs..u0 + r * cs + cw].copy_from_slice(&u[r * cw..(r + 1) * cw]);
            padded[v0 + r * cs..v0 + r * cs + cw].copy_from_slice(&v[r * cw..(r + 1) * cw]);
        }
        let mut a = vec![0u8; (w * h * 3) as usize];
        let mut b = a.clone();
        convert::i420_to_rgb(&packed, w, h, 0, 0, &mut a).unwrap();
        convert::i420_to_rgb(&padded, w, h, ys, cs, &mut b).unwrap();
        assert_eq!(a, b);
        for (i, px) in a.chunks(3).enumerate() {
            let (x, r) = (i % w as usize, i / w as usize);
            let c = (r / 2) * cw + x / 2;
            assert_eq!(px, convert::yuv_to_rgb_pixel(y[i], u[c], v[c]), "pixel {x},{r}");
        }
        // An odd width: the last column has a chroma pair of its own.
        let odd: Vec<u8> = (0..7 * 3 + 2 * 4 * 2).map(|i| (i * 11 % 256) as u8).collect();
        let mut o = vec![0u8; 7 * 3 * 3];
        convert::i420_to_rgb(&odd, 7, 3, 0, 0, &mut o).unwrap();
        let (oy, ou, ov) = (&odd[..21], &odd[21..29], &odd[29..]);
        for (i, px) in o.chunks(3).enumerate() {
            let (x, r) = (i % 7, i / 7);
            let c = (r / 2) * 4 + x / 2;
            assert_eq!(
                px,
                convert::yuv_to_rgb_pixel(oy[i], ou[c], ov[c]),
                "pixel {x},{r}"
            );
        }
        // Read as if packed, the padded frame is sheared: the test can fail.
        convert::i420_to_rgb(&padded, w, h, 0, 0, &mut b).unwrap();
        assert_ne!(a, b);
        // Short frames are errors, not panics.
        assert!(convert::i420_to_rgb(&padded[..100], w, h, ys, cs, &mut b).is_err());
        assert!(convert::i420_to_rgb(&padded, w, h, 4, cs, &mut b).is_err());
    }

    #[test]
    fn command_words_with_urls_are_redacted() {
        let p = Program::Shell("ffmpeg -i rtsp://admin:pw@cam/s?token=t -f mjpeg -".into());
        assert_eq!(
            p.describe(),
            "exec:ffmpeg -i rtsp://***@cam/s?token=*** -f mjpeg -"
        );
        assert_eq!(p.executable().as_deref(), Some("ffmpeg"));
        assert_eq!(Program::Shell("X=1 cmd".into()).executable(), None);
        assert_eq!(Program::Rpicam(1).executable().as_deref(), Some("rpicam-vid"));
        assert!(find_executable("sh").is_some());
        assert!(find_executable("edgevision-no-such-command").is_none());
        let e = check(
            &Program::Shell("edgevision-no-such-command -x".into()),
            &opts(PixelFormatPref::Auto, 0, 0),
        );
        assert!(e
            .unwrap_err()
            .contains("edgevision-no-such-command: command not found"));
    }

    #[test]
    fn raw_frames_then_the_exit_is_reported() {
        // Two 4x2 RGB24 frames, then the command exits.
        let mut src = ExecSource::new(
            Program::Shell("head -c 48 /dev/zero; exit 3".into()),
            opts(PixelFormatPref::Rgb24, 4, 2),
        );
        src.open().unwrap();
        let mut frame = Frame::default();
        for _ in 0..2 {
            src.read(&mut frame).unwrap();
            assert_eq!((frame.width, frame.height, frame.rgb.len()), (4, 2, 24));
        }
        let e = src.read(&mut frame).unwrap_err().to_string();
        assert!(e.contains("the command ended: exit status: 3"), "{e}");
        // A missing command: sh says 127.
        let mut src = ExecSource::new(
            Program::Shell("edgevision-no-such-command".into()),
            opts(PixelFormatPref::Auto, 0, 0),
        );
        src.open().unwrap();
        let e = src.read(&mut frame).unwrap_err().to_string();
        assert!(e.contains("(command not found)"), "{e}");
    }

    #[test]
    fn garbage_is_reported_and_the_group_is_killed_on_close() {
        let mut o = opts(PixelFormatPref::Auto, 0, 0);
        o.stall_timeout = Duration::from_millis(600);
        // A background child (same group) and garbage on stdout.
        let mut src = ExecSource::new(
            Program::Shell("sleep 600 & while :; do echo garbage; sleep 0.05; done".into()),
            o,
        );
        src.open().unwrap();
        let pgid = src.running.as_ref().unwrap().child.id();
        let mut frame = Frame::default();
        let e = src.read(&mut frame).unwrap_err().to_string();
        assert!(e.contains("no complete frame in") && e.contains("MJPEG"), "{e}");
        // The failed read killed the group already (SIGKILL lands a moment
        // later in members other than the reaped leader); open again, close.
        assert_eq!(group_gone(pgid), Vec::<u32>::new());
        src.open().unwrap();
        let pgid = src.running.as_ref().unwrap().child.id();
        // Wait (bounded) for sh to have started its background sleep.
        for _ in 0..100 {
            if group_members(pgid).len() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(group_members(pgid).len() >= 2, "{:?}", group_members(pgid));
        drop(src);
        assert_eq!(group_gone(pgid), Vec::<u32>::new());
    }

    /// The group's members once they are gone, or those left after 2 s.
    fn group_gone(pgid: u32) -> Vec<u32> {
        for _ in 0..100 {
            if group_members(pgid).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        group_members(pgid)
    }
}
