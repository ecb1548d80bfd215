//! A few frames from any source, for one-shot commands: `detect URI` and
//! `convert --calibration URI` take their pictures from a camera, a stream
//! or a command as the daemon would.

use std::path::Path;
use std::time::Duration;

use image::RgbImage;

use super::{open_source, CaptureError, Frame, SourceOptions, SourceUri};

/// Corrupt frames skipped, per frame asked for, before giving up.
const CORRUPT_PER_FRAME: usize = 10;

/// A command-line argument that names a source rather than an image file or
/// directory: anything [`SourceUri`] accepts that is not an existing file
/// or directory (so `photo.jpg` and `photos/` stay files).
pub fn source_arg(arg: &Path) -> Option<SourceUri> {
    if arg.is_file() || arg.is_dir() {
        return None;
    }
    arg.to_str()?.parse().ok()
}

/// The options a one-shot grab reads with: `width` x `height` frames, file
/// sources unpaced and not looped, `stall` without a frame is an error.
pub fn grab_options(width: u32, height: u32, stall: Duration) -> SourceOptions {
    SourceOptions {
        width,
        height,
        fps: 0.0,
        looping: false,
        seconds_per_image: 0.0,
        stall_timeout: stall,
        ..SourceOptions::default()
    }
}

/// Up to `n` frames from `uri` (fewer when a file source ends first).
/// Corrupt frames are skipped; a source that cannot be opened or stops
/// delivering is an error naming it (credentials redacted).
pub fn grab_frames(uri: &SourceUri, opts: &SourceOptions, n: usize) -> Result<Vec<RgbImage>, String> {
    let mut src = open_source(uri, opts);
    let name = src.describe();
    src.open().map_err(|e| format!("{name}: {e}"))?;
    let mut frame = Frame::default();
    let mut out = Vec::with_capacity(n);
    let mut corrupt = 0usize;
    while out.len() < n {
        match src.read(&mut frame) {
            Ok(()) => {
                let img = RgbImage::from_raw(frame.width, frame.height, frame.rgb.clone())
                    .ok_or_else(|| format!("{name}: a frame of the wrong size"))?;
                out.push(img);
            }
            Err(CaptureError::Corrupt(m)) => {
                corrupt += 1;
                if corrupt > CORRUPT_PER_FRAME * n.max(1) {
                    src.close();
                    return Err(format!("{name}: {corrupt} corrupt frames, the last: {m}"));
                }
            }
            Err(CaptureError::EndOfStream) => break,
            Err(e) => {
                src.close();
                return Err(format!("{name}: {e}"));
            }
        }
    }
    src.close();
    if out.is_empty() {
        return Err(format!("{name}: no frame"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_stay_files_and_uris_are_sources() {
        assert_eq!(source_arg(Path::new("Cargo.toml")), None);
        assert_eq!(source_arg(Path::new("src")), None);
        assert_eq!(source_arg(Path::new("test:")), Some(SourceUri::Test));
        assert!(matches!(
            source_arg(Path::new("rtsp://cam/live")),
            Some(SourceUri::Rtsp(_))
        ));
        assert_eq!(source_arg(Path::new("no-such-photo.jpg")), None);
    }

    #[test]
    fn grabs_n_frames_and_reports_a_failing_source() {
        let opts = grab_options(64, 48, Duration::from_secs(5));
        let frames = grab_frames(&SourceUri::Test, &opts, 3).unwrap();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.dimensions() == (64, 48)));
        let bad = SourceUri::Exec("echo oops >&2; exit 3".into());
        let e = grab_frames(&bad, &opts, 2).unwrap_err();
        assert!(e.contains("exit status: 3"), "{e}");
    }
}
