//! `images:DIR` — the JPEG and PNG photos of a directory as a video source.
//!
//! Files (`.jpg`, `.jpeg`, `.png`, any case) are shown in name order; the
//! directory is listed again at every wrap-around, so files can be added or
//! fixed while it runs. Each photo is decoded and scaled once per visit and
//! kept in an in-memory cache (up to [`CACHE_LIMIT_BYTES`]; beyond that
//! photos are decoded on each visit). Frames are exactly the requested size
//! (the first photo's size where a dimension is 0): photos are scaled to fit
//! and letterboxed with black.
//!
//! Without `pan`, a photo is one frame, or `seconds_per_image * fps` frames
//! when both are set (a slideshow). With `pan`, each photo is shown for
//! `seconds_per_image` as a slow zoom (1.0 -> 1.25) drifting towards one side
//! (alternating), so the stream has motion; progress is counted in frames
//! when `fps` > 0, in wall-clock time otherwise.
//!
//! An unreadable file is skipped with a warning. A missing or empty
//! directory, or one where no file can be read, is
//! [`CaptureError::Unavailable`], so a reconnect loop recovers once photos
//! appear.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use fast_image_resize::{FilterType, Resizer};

use super::util::{clear_outside, fit_rect, letterbox_rgb, resize_rgb_into, Crop, Pacer};
use super::{CaptureError, Frame, Source, SourceOptions};

/// Decoded, scaled photos are cached up to this many bytes in total.
pub const CACHE_LIMIT_BYTES: usize = 64 << 20;
/// The zoom a pan ends at.
const PAN_ZOOM: f64 = 1.25;
/// Used with `pan` when `seconds_per_image` is not positive.
const DEFAULT_PAN_SECONDS: f32 = 4.0;

/// What a file looked like when it was read; a change invalidates it.
type Stamp = (Option<SystemTime>, u64);

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    stamp: Stamp,
    /// Failed to decode with this stamp; skipped until the file changes.
    bad: bool,
}

/// A photo made ready for output.
#[derive(Debug)]
struct Prepared {
    stamp: Stamp,
    /// Without pan: the whole letterboxed output frame. With pan: the photo
    /// scaled to `PAN_ZOOM` times the size it is shown at.
    width: u32,
    height: u32,
    rgb: Vec<u8>,
    /// Where the photo goes in the output frame (x, y, w, h).
    rect: (u32, u32, u32, u32),
}

#[derive(Debug)]
struct Visit {
    image: Arc<Prepared>,
    /// Frames of this photo handed out so far.
    shown: u64,
    started: Instant,
    /// Pan direction alternates from photo to photo.
    reverse: bool,
}

/// The image-directory source.
pub struct ImageDirSource {
    dir: PathBuf,
    opts: SourceOptions,
    entries: Vec<Entry>,
    cache: HashMap<PathBuf, Arc<Prepared>>,
    cache_bytes: usize,
    out_size: Option<(u32, u32)>,
    next_index: usize,
    good_this_pass: bool,
    visit: Option<Visit>,
    visits: u64,
    is_open: bool,
    pacer: Pacer,
    resizer: Resizer,
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        .unwrap_or(false)
}

fn stamp_of(meta: &fs::Metadata) -> Stamp {
    (meta.modified().ok(), meta.len())
}

/// The image files of `dir`, sorted by name.
fn list_images(dir: &Path) -> Result<Vec<(PathBuf, Stamp)>, CaptureError> {
    if let Ok(meta) = fs::metadata(dir) {
        if !meta.is_dir() {
            let kind = crate::tflite::model_file::file_kind(&meta).unwrap_or("a regular file");
            return Err(CaptureError::Unavailable(format!(
                "{} is {kind}, not a directory",
                dir.display()
            )));
        }
    }
    let rd = fs::read_dir(dir)
        .map_err(|e| CaptureError::Unavailable(format!("cannot read directory {}: {e}", dir.display())))?;
    let mut files = Vec::new();
    for entry in rd.flatten() {
        let path = entry.path();
        if !is_image_name(&path) {
            continue;
        }
        // Follows symlinks; skips directories named like images.
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => files.push((path, stamp_of(&meta))),
            _ => {}
        }
    }
    files.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    if files.is_empty() {
        return Err(CaptureError::Unavailable(format!(
            "no .jpg, .jpeg or .png files in {}",
            dir.display()
        )));
    }
    Ok(files)
}

/// Reads a photo as RGB8: JPEGs through libjpeg-turbo (as the camera
/// sources decode them, so a photo and a frame of it give the same
/// detections), other formats through `image`.
pub fn read_rgb(path: &Path) -> Result<image::RgbImage, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    if data.starts_with(&[0xFF, 0xD8]) {
        let mut dec = super::jpeg::JpegDecoder::new()?;
        let mut rgb = Vec::new();
        let d = dec.decode(&data, &mut rgb, |_, _| (0, 0))?;
        return image::RgbImage::from_raw(d.width, d.height, rgb)
            .ok_or_else(|| "decoded JPEG has the wrong size".to_string());
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(data));
    let reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
    let img = reader.decode().map_err(|e| e.to_string())?;
    if img.width() == 0 || img.height() == 0 {
        return Err("empty image".into());
    }
    Ok(img.to_rgb8())
}

impl ImageDirSource {
    pub fn new(dir: PathBuf, opts: SourceOptions) -> Self {
        let pacer = Pacer::new(opts.fps);
        Self {
            dir,
            opts,
            entries: Vec::new(),
            cache: HashMap::new(),
            cache_bytes: 0,
            out_size: None,
            next_index: 0,
            good_this_pass: false,
            visit: None,
            visits: 0,
            is_open: false,
            pacer,
            resizer: Resizer::new(),
        }
    }

    /// Lists the directory again, keeping what is known about unchanged files.
    fn rescan(&mut self) -> Result<(), CaptureError> {
        let files = list_images(&self.dir)?;
        let old: HashMap<PathBuf, (Stamp, bool)> = self
            .entries
            .drain(..)
            .map(|e| (e.path, (e.stamp, e.bad)))
            .collect();
        self.entries = files
            .into_iter()
            .map(|(path, stamp)| {
                let bad = matches!(old.get(&path), Some((s, true)) if *s == stamp);
                Entry { path, stamp, bad }
            })
            .collect();
        // Forget cached photos whose files are gone.
        let present: std::collections::HashSet<&PathBuf> = self.entries.iter().map(|e| &e.path).collect();
        let mut freed = 0;
        self.cache.retain(|p, v| {
            let keep = present.contains(p);
            if !keep {
                freed += v.rgb.len();
            }
            keep
        });
        self.cache_bytes -= freed;
        Ok(())
    }

    fn pan_seconds(&self) -> f32 {
        if self.opts.seconds_per_image > 0.0 && self.opts.seconds_per_image.is_finite() {
            self.opts.seconds_per_image
        } else {
            DEFAULT_PAN_SECONDS
        }
    }

    /// Frames per photo, or `None` when a pan is timed by the clock.
    fn frames_per_visit(&self) -> Option<u64> {
        let fps = self.opts.fps;
        let paced = fps.is_finite() && fps > 0.0;
        if self.opts.pan {
            paced.then(|| ((self.pan_seconds() * fps).round() as u64).max(2))
        } else if paced && self.opts.seconds_per_image > 0.0 && self.opts.seconds_per_image.is_finite() {
            Some(((self.opts.seconds_per_image * fps).round() as u64).max(1))
        } else {
            Some(1)
        }
    }

    /// Decodes and scales the photo of entry `i` (or takes it from the cache).
    fn load(&mut self, i: usize) -> Result<Arc<Prepared>, String> {
        let path = self.entries[i].path.clone();
        let stamp = self.entries[i].stamp;
        if let Some(p) = self.cache.get(&path) {
            if p.stamp == stamp {
                return Ok(p.clone());
            }
        }
        let img = read_rgb(&path)?;
        let (sw, sh) = img.dimensions();
        let (ow, oh) = *self.out_size.get_or_insert((
            if self.opts.width == 0 { sw } else { self.opts.width },
            if self.opts.height == 0 {
                sh
            } else {
                self.opts.height
            },
        ));
        let rect = fit_rect(sw, sh, ow, oh);
        let prepared = if self.opts.pan {
            let pw = ((rect.2 as f64 * PAN_ZOOM).round() as u32).max(1);
            let ph = ((rect.3 as f64 * PAN_ZOOM).round() as u32).max(1);
            let mut rgb = vec![0u8; pw as usize * ph as usize * 3];
            resize_rgb_into(
                &mut self.resizer,
                img.as_raw(),
                sw,
                sh,
                None,
                &mut rgb,
                pw,
                ph,
                (0, 0, pw, ph),
                FilterType::Lanczos3,
            )?;
            Prepared {
                stamp,
                width: pw,
                height: ph,
                rgb,
                rect,
            }
        } else {
            let mut rgb = vec![0u8; ow as usize * oh as usize * 3];
            letterbox_rgb(
                &mut self.resizer,
                img.as_raw(),
                sw,
                sh,
                &mut rgb,
                ow,
                oh,
                FilterType::Lanczos3,
            )?;
            Prepared {
                stamp,
                width: ow,
                height: oh,
                rgb,
                rect,
            }
        };
        let prepared = Arc::new(prepared);
        if let Some(old) = self.cache.remove(&path) {
            self.cache_bytes -= old.rgb.len();
        }
        if self.cache_bytes + prepared.rgb.len() <= CACHE_LIMIT_BYTES {
            self.cache_bytes += prepared.rgb.len();
            self.cache.insert(path, prepared.clone());
        }
        Ok(prepared)
    }

    /// Moves on to the next readable photo.
    fn advance(&mut self) -> Result<(), CaptureError> {
        self.visit = None;
        let mut skipped = 0usize;
        loop {
            if self.next_index >= self.entries.len() {
                if !self.good_this_pass {
                    return Err(CaptureError::Unavailable(format!(
                        "none of the image files in {} can be read",
                        self.dir.display()
                    )));
                }
                if !self.opts.looping {
                    return Err(CaptureError::EndOfStream);
                }
                self.rescan()?;
                self.next_index = 0;
                self.good_this_pass = false;
            }
            let i = self.next_index;
            self.next_index += 1;
            if self.entries[i].bad {
                skipped += 1;
                // Every entry is bad and nothing changed: no need to spin.
                if skipped > self.entries.len() {
                    return Err(CaptureError::Unavailable(format!(
                        "none of the image files in {} can be read",
                        self.dir.display()
                    )));
                }
                continue;
            }
            match self.load(i) {
                Ok(image) => {
                    self.good_this_pass = true;
                    self.visit = Some(Visit {
                        image,
                        shown: 0,
                        started: Instant::now(),
                        reverse: self.visits % 2 == 1,
                    });
                    self.visits += 1;
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(
                        "skipping unreadable image {}: {e}",
                        self.entries[i].path.display()
                    );
                    self.entries[i].bad = true;
                }
            }
        }
    }

    /// Whether the current photo has been shown long enough.
    fn visit_done(&self) -> bool {
        let Some(v) = &self.visit else { return true };
        match self.frames_per_visit() {
            Some(n) => v.shown >= n,
            None => v.started.elapsed().as_secs_f32() >= self.pan_seconds(),
        }
    }

    /// Draws the current photo at its place in the pan into `frame`.
    fn render_pan(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let (ow, oh) = self.out_size.unwrap_or((0, 0));
        let Some(v) = &self.visit else { return Ok(()) };
        let t = match self.frames_per_visit() {
            Some(n) => v.shown as f64 / (n - 1).max(1) as f64,
            None => v.started.elapsed().as_secs_f64() / self.pan_seconds() as f64,
        }
        .clamp(0.0, 1.0);
        let s = t * t * (3.0 - 2.0 * t); // smoothstep: ease in and out
        let zoom = 1.0 + (PAN_ZOOM - 1.0) * s;
        let img = &v.image;
        let (pw, ph) = (img.width as f64, img.height as f64);
        let (cw, ch) = (pw / zoom, ph / zoom);
        let fx = if v.reverse { 1.0 - s } else { s };
        let fy = 0.5 + if v.reverse { -0.3 } else { 0.3 } * (s - 0.5);
        let crop = Crop {
            left: (pw - cw) * fx,
            top: (ph - ch) * fy,
            width: cw,
            height: ch,
        };
        frame.reshape(ow, oh);
        clear_outside(&mut frame.rgb, ow, oh, img.rect);
        resize_rgb_into(
            &mut self.resizer,
            &img.rgb,
            img.width,
            img.height,
            Some(crop),
            &mut frame.rgb,
            ow,
            oh,
            img.rect,
            FilterType::Bilinear,
        )
        .map_err(CaptureError::Corrupt)
    }
}

impl Source for ImageDirSource {
    fn describe(&self) -> String {
        format!("images:{}", self.dir.display())
    }

    fn open(&mut self) -> Result<(), CaptureError> {
        self.is_open = false;
        self.entries.clear();
        self.rescan()?;
        self.next_index = 0;
        self.good_this_pass = false;
        self.visits = 0;
        // Reading the first photo now tells a missing or unreadable
        // directory apart from a working one, and fixes the frame size.
        self.advance()?;
        self.pacer.reset();
        self.is_open = true;
        Ok(())
    }

    fn read(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        if !self.is_open {
            return Err(CaptureError::Unavailable(format!(
                "{} is not open",
                self.describe()
            )));
        }
        self.pacer.wait();
        let start = Instant::now();
        if self.visit_done() {
            self.advance()?;
        }
        if self.opts.pan {
            self.render_pan(frame)?;
        } else if let Some(v) = &self.visit {
            let img = &v.image;
            frame.reshape(img.width, img.height);
            frame.rgb.copy_from_slice(&img.rgb);
        }
        if let Some(v) = &mut self.visit {
            v.shown += 1;
        }
        frame.decode_time = start.elapsed();
        frame.captured_at = Instant::now();
        Ok(())
    }

    fn close(&mut self) {
        // The cache is kept, so a reopen does not decode everything again.
        self.is_open = false;
        self.visit = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn photos_dir() -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/photos");
        let n = fs::read_dir(&dir).map(|rd| rd.count()).unwrap_or(0);
        assert!(
            n >= 3,
            "the test photos are missing from {}: run scripts/setup first",
            dir.display()
        );
        dir
    }

    fn opts() -> SourceOptions {
        SourceOptions {
            width: 640,
            height: 480,
            fps: 0.0,
            looping: true,
            pan: false,
            seconds_per_image: 0.0,
            ..SourceOptions::default()
        }
    }

    fn count_images(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| is_image_name(&e.as_ref().unwrap().path()))
            .count()
    }

    #[test]
    fn frames_are_640x480_and_loop() {
        let dir = photos_dir();
        let n = count_images(&dir);
        let mut src = ImageDirSource::new(dir, opts());
        src.open().unwrap();
        let mut frame = Frame::default();
        let mut firsts = Vec::new();
        for i in 0..n + 2 {
            src.read(&mut frame).unwrap();
            assert_eq!(
                (frame.width, frame.height, frame.rgb.len()),
                (640, 480, 640 * 480 * 3)
            );
            if i == 0 || i == n {
                firsts.push(frame.rgb.clone());
            }
        }
        // The frame after the last photo is the first photo again.
        assert_eq!(firsts[0], firsts[1]);
        assert!(src.cache.len() == n && src.cache_bytes == n * 640 * 480 * 3);
    }

    #[test]
    fn letterboxes_and_keeps_native_size_when_zero() {
        let tmp = tempfile::tempdir().unwrap();
        // 200x100: letterboxed into 100x100 -> 50 rows of picture, 25 black each side.
        image::RgbImage::from_pixel(200, 100, image::Rgb([250, 10, 10]))
            .save(tmp.path().join("a.png"))
            .unwrap();
        let mut src = ImageDirSource::new(
            tmp.path().into(),
            SourceOptions {
                width: 100,
                height: 100,
                ..opts()
            },
        );
        src.open().unwrap();
        let mut frame = Frame::default();
        src.read(&mut frame).unwrap();
        let px = |x: usize, y: usize| &frame.rgb[(y * 100 + x) * 3..][..3];
        assert_eq!(px(50, 5), &[0, 0, 0]);
        assert_eq!(px(50, 95), &[0, 0, 0]);
        assert_eq!(px(50, 50), &[250, 10, 10]);

        let mut src = ImageDirSource::new(
            tmp.path().into(),
            SourceOptions {
                width: 0,
                height: 0,
                ..opts()
            },
        );
        src.open().unwrap();
        src.read(&mut frame).unwrap();
        assert_eq!((frame.width, frame.height), (200, 100));
    }

    #[test]
    fn skips_unreadable_files_and_ends_without_loop() {
        let dir = photos_dir();
        let tmp = tempfile::tempdir().unwrap();
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| is_image_name(p))
            .collect();
        names.sort();
        for p in &names {
            fs::copy(p, tmp.path().join(p.file_name().unwrap())).unwrap();
        }
        // Not images at all: one sorting first, one in the middle, and a
        // truncated copy of a real photo.
        fs::write(tmp.path().join("0000-broken.JPG"), b"this is not a jpeg").unwrap();
        fs::write(tmp.path().join("d-broken.png"), b"\x89PNG\r\n\x1a\n").unwrap();
        let real = fs::read(&names[0]).unwrap();
        fs::write(tmp.path().join("e-truncated.jpg"), &real[..real.len() / 3]).unwrap();
        fs::write(tmp.path().join("notes.txt"), b"ignored").unwrap();
        let mut src = ImageDirSource::new(
            tmp.path().into(),
            SourceOptions {
                looping: false,
                ..opts()
            },
        );
        src.open().unwrap();
        let mut frame = Frame::default();
        for _ in 0..names.len() {
            src.read(&mut frame).unwrap();
            assert_eq!((frame.width, frame.height), (640, 480));
        }
        assert!(matches!(src.read(&mut frame), Err(CaptureError::EndOfStream)));
        assert!(matches!(src.read(&mut frame), Err(CaptureError::EndOfStream)));
        assert!(src.entries[0].bad);
    }

    #[test]
    fn a_path_that_is_no_directory_says_what_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.jpg");
        fs::write(&file, b"x").unwrap();
        for (path, want) in [
            (
                PathBuf::from("/dev/zero"),
                "/dev/zero is a character device, not a directory",
            ),
            (file, "a.jpg is a regular file, not a directory"),
        ] {
            match ImageDirSource::new(path, opts()).open() {
                Err(CaptureError::Unavailable(m)) => assert!(m.ends_with(want), "{m}"),
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
    }

    #[test]
    fn missing_empty_or_unreadable_dir_is_unavailable() {
        let tmp = tempfile::tempdir().unwrap();
        let mut src = ImageDirSource::new(tmp.path().join("nope"), opts());
        assert!(matches!(src.open(), Err(CaptureError::Unavailable(_))));
        let mut src = ImageDirSource::new(tmp.path().into(), opts());
        assert!(matches!(src.open(), Err(CaptureError::Unavailable(_))));
        fs::write(tmp.path().join("a.jpg"), b"garbage").unwrap();
        fs::write(tmp.path().join("b.png"), b"").unwrap();
        let err = src.open().unwrap_err();
        assert!(
            matches!(err, CaptureError::Unavailable(ref m) if m.contains("can be read")),
            "{err}"
        );
        // Recovers when a readable photo appears.
        image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
            .save(tmp.path().join("c.png"))
            .unwrap();
        src.open().unwrap();
        let mut frame = Frame::default();
        src.read(&mut frame).unwrap();
        src.read(&mut frame).unwrap();
    }

    #[test]
    fn directory_vanishing_while_looping_is_unavailable() {
        let tmp = tempfile::tempdir().unwrap();
        let sub = tmp.path().join("photos");
        fs::create_dir(&sub).unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
            .save(sub.join("a.png"))
            .unwrap();
        let mut src = ImageDirSource::new(sub.clone(), opts());
        src.open().unwrap();
        let mut frame = Frame::default();
        src.read(&mut frame).unwrap();
        fs::remove_dir_all(&sub).unwrap();
        assert!(matches!(src.read(&mut frame), Err(CaptureError::Unavailable(_))));
    }

    #[test]
    fn pan_moves_and_paces() {
        let dir = photos_dir();
        let mut src = ImageDirSource::new(
            dir,
            SourceOptions {
                pan: true,
                fps: 25.0,
                seconds_per_image: 0.4,
                ..opts()
            },
        );
        src.open().unwrap();
        let mut frame = Frame::default();
        let t = Instant::now();
        let mut frames = Vec::new();
        for _ in 0..10 {
            src.read(&mut frame).unwrap();
            assert_eq!((frame.width, frame.height), (640, 480));
            frames.push(frame.rgb.clone());
        }
        let el = t.elapsed();
        assert!(
            el >= Duration::from_millis(330),
            "10 frames at 25 fps took {el:?}"
        );
        for w in frames.windows(2) {
            let changed = w[0].iter().zip(&w[1]).filter(|(a, b)| a != b).count();
            assert!(
                changed > 1000,
                "consecutive pan frames differ in only {changed} bytes"
            );
        }
        // 0.4 s at 25 fps is 10 frames: the 11th frame shows the next photo.
        assert_eq!(src.visits, 1);
        src.read(&mut frame).unwrap();
        assert_eq!(src.visits, 2);
    }

    #[test]
    fn slideshow_holds_each_photo() {
        let dir = photos_dir();
        let mut src = ImageDirSource::new(
            dir,
            SourceOptions {
                fps: 100.0,
                seconds_per_image: 0.03,
                ..opts()
            },
        );
        src.open().unwrap();
        let mut frame = Frame::default();
        let mut seq = Vec::new();
        for _ in 0..6 {
            src.read(&mut frame).unwrap();
            seq.push(frame.rgb.clone());
        }
        assert!(seq[0] == seq[1] && seq[1] == seq[2]);
        assert!(seq[2] != seq[3] && seq[3] == seq[4] && seq[4] == seq[5]);
    }
}
