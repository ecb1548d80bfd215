//! `edgevision bench-source URI`: what a source costs, without inference:
//! CPU time (user + sys) per frame of this process and the processes it
//! started (ffmpeg for `rtsp://`, the command of `exec:`), read from /proc
//! around N frames, after a warm-up.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::capture::{self, Frame, PixelFormatPref, SourceOptions, SourceUri};

#[derive(Debug, Args)]
pub struct BenchSourceArgs {
    /// The source, as `run --source` takes it.
    #[arg(value_name = "URI")]
    pub uri: String,
    /// Frames measured.
    #[arg(long, default_value_t = 300)]
    pub frames: usize,
    /// Frames read before measuring (connecting, probing, first decode).
    #[arg(long, default_value_t = 15)]
    pub warmup: usize,
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    #[arg(long, default_value_t = 480)]
    pub height: u32,
    /// `exec:` sources: what the command writes (auto = MJPEG, or a raw format).
    #[arg(long, default_value = "auto")]
    pub format: String,
}

/// (utime + stime + cutime + cstime) in clock ticks, and the parent, of
/// every process, from /proc.
fn proc_times() -> HashMap<u32, (u32, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else { continue };
        // After "pid (comm) ": state ppid ... utime(11) stime(12) cutime(13) cstime(14).
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.insert(pid, (num(1) as u32, num(11) + num(12) + num(13) + num(14)));
    }
    out
}

/// CPU time of this process and all its descendants (their reaped
/// children included).
fn tree_cpu() -> Duration {
    let all = proc_times();
    let me = std::process::id();
    let mut total = 0u64;
    for (&pid, &(_, ticks)) in &all {
        let mut p = pid;
        // Walk up to init: is `me` an ancestor (or the process itself)?
        for _ in 0..64 {
            if p == me {
                total += ticks;
                break;
            }
            match all.get(&p) {
                Some(&(pp, _)) if pp != 0 && pp != p => p = pp,
                _ => break,
            }
        }
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(total as f64 / hz)
}

pub fn run(args: BenchSourceArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.frames >= 1, "--frames must be 1 or more");
    let uri: SourceUri = args.uri.parse()?;
    let format: PixelFormatPref = args.format.parse().map_err(anyhow::Error::msg)?;
    let opts = SourceOptions {
        width: args.width,
        height: args.height,
        fps: 0.0,
        format,
        stall_timeout: Duration::from_secs(10),
        ..SourceOptions::default()
    };
    let mut src = capture::open_source(&uri, &opts);
    let name = src.describe();
    src.open().with_context(|| format!("cannot open {name}"))?;
    let mut frame = Frame::default();
    let mut read = |n: usize, src: &mut Box<dyn capture::Source>| -> anyhow::Result<()> {
        for _ in 0..n {
            src.read(&mut frame).with_context(|| format!("reading {name}"))?;
        }
        Ok(())
    };
    read(args.warmup, &mut src)?;
    let (cpu0, t0) = (tree_cpu(), Instant::now());
    read(args.frames, &mut src)?;
    let (cpu1, secs) = (tree_cpu(), t0.elapsed().as_secs_f64());
    src.close();
    let cpu_ms = (cpu1.saturating_sub(cpu0)).as_secs_f64() * 1e3;
    let out = json!({
        "source": uri.to_string(),
        "width": frame.width,
        "height": frame.height,
        "frames": args.frames,
        "seconds": (secs * 1e3).round() / 1e3,
        "fps": (args.frames as f64 / secs * 10.0).round() / 10.0,
        "cpu_ms_per_frame": (cpu_ms / args.frames as f64 * 100.0).round() / 100.0,
        "cpu": super::bench::cpu_info(),
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
