//! `mjpeg:FILE` — a file of concatenated JPEGs, as `ffmpeg -f mjpeg` writes.
//!
//! The file is streamed through a 64 KiB buffer; only the JPEG being
//! decoded is held in memory (its buffer is reused), so files of any size
//! work. Frames are split by following the JPEG marker structure (segment
//! lengths up to the scan, then the entropy-coded data up to EOI), so an
//! EOI inside an embedded EXIF thumbnail does not end a frame early.
//! Garbage between frames is skipped by scanning for the next SOI; a
//! truncated frame followed by a new SOI is dropped, as is a truncated last
//! frame.
//!
//! Frames are decoded with libjpeg-turbo into the caller's buffer, scaled
//! (in the DCT domain as far as it goes, then letterboxed) to the requested size when it differs from the JPEG's (0 =
//! native; one 0 keeps the aspect ratio), and paced at `fps`. A JPEG that
//! does not decode is [`CaptureError::Corrupt`]; the next read goes on with
//! the following frame. A missing file (also one deleted while playing) is
//! [`CaptureError::Unavailable`], so a reconnect loop picks it up again when
//! it is restored.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Instant;

use super::util::{JpegFrames, Pacer};
use super::{CaptureError, Frame, Source, SourceOptions};

/// A frame larger than this without an EOI is taken to be garbage.
const MAX_JPEG_BYTES: usize = 64 << 20;
const READ_BUFFER_BYTES: usize = 64 << 10;

/// Reads bytes from a stream through a fixed buffer.
pub(crate) struct ByteReader<R: Read> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
}

impl<R: Read> ByteReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0u8; READ_BUFFER_BYTES].into_boxed_slice(),
            pos: 0,
            len: 0,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Fills `out` completely; `UnexpectedEof` if the stream ends first.
    pub fn read_exact_into(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < out.len() {
            if !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame",
                ));
            }
            let take = (out.len() - done).min(self.len - self.pos);
            out[done..done + take].copy_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            done += take;
        }
        Ok(())
    }

    /// Refills an empty buffer; false at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos < self.len {
            return Ok(true);
        }
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    #[inline]
    fn byte(&mut self) -> io::Result<Option<u8>> {
        if self.pos >= self.len && !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(Some(b))
    }

    /// Appends `n` bytes to `out`; false if the stream ended first.
    fn copy_n(&mut self, mut n: usize, out: &mut Vec<u8>) -> io::Result<bool> {
        while n > 0 {
            if !self.fill()? {
                return Ok(false);
            }
            let take = n.min(self.len - self.pos);
            out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            n -= take;
        }
        Ok(true)
    }

    /// Appends bytes up to (not including) the next 0xFF; false at the end.
    fn copy_until_ff(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            if !self.fill()? {
                return Ok(false);
            }
            let avail = &self.buf[self.pos..self.len];
            match avail.iter().position(|&b| b == 0xFF) {
                Some(i) => {
                    out.extend_from_slice(&avail[..i]);
                    self.pos += i;
                    return Ok(true);
                }
                None => {
                    out.extend_from_slice(avail);
                    self.pos = self.len;
                }
            }
        }
    }

    /// Skips to just past the next SOI (FF D8); false at the end.
    fn find_soi(&mut self) -> io::Result<bool> {
        let mut prev_ff = false;
        loop {
            if !self.fill()? {
                return Ok(false);
            }
            let avail = &self.buf[self.pos..self.len];
            if prev_ff && avail[0] == 0xD8 {
                self.pos += 1;
                return Ok(true);
            }
            match avail.windows(2).position(|w| w == [0xFF, 0xD8]) {
                Some(i) => {
                    self.pos += i + 2;
                    return Ok(true);
                }
                None => {
                    prev_ff = avail[avail.len() - 1] == 0xFF;
                    self.pos = self.len;
                }
            }
        }
    }

    /// The next marker code after an 0xFF already consumed (fill bytes
    /// skipped); `None` at the end.
    fn marker_code(&mut self) -> io::Result<Option<u8>> {
        loop {
            match self.byte()? {
                Some(0xFF) => continue,
                other => return Ok(other),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between segments: a marker must follow.
    Markers,
    /// Inside a scan's entropy-coded data.
    Entropy,
    /// The structure made no sense: only SOI and EOI are looked for.
    Scan,
}

/// Reads the next complete JPEG (SOI to EOI) into `out`. `Ok(false)` at the
/// end of the stream (a trailing incomplete frame is dropped).
pub(crate) fn next_jpeg<R: Read>(r: &mut ByteReader<R>, out: &mut Vec<u8>) -> io::Result<bool> {
    if !r.find_soi()? {
        return Ok(false);
    }
    'candidate: loop {
        out.clear();
        out.extend_from_slice(&[0xFF, 0xD8]);
        let mut mode = Mode::Markers;
        loop {
            if out.len() > MAX_JPEG_BYTES {
                tracing::debug!("no EOI within {MAX_JPEG_BYTES} bytes: resynchronising");
                if !r.find_soi()? {
                    return Ok(false);
                }
                continue 'candidate;
            }
            if mode != Mode::Markers && !r.copy_until_ff(out)? {
                return Ok(false);
            }
            let Some(b) = r.byte()? else { return Ok(false) };
            if b != 0xFF {
                // Only possible in Markers mode: a marker was expected.
                out.push(b);
                mode = Mode::Scan;
                continue;
            }
            let Some(m) = r.marker_code()? else {
                return Ok(false);
            };
            out.extend_from_slice(&[0xFF, m]);
            match m {
                0xD9 => return Ok(true),
                // A new image starts: the current one was truncated.
                0xD8 => continue 'candidate,
                // Byte stuffing, restart markers, TEM: no length.
                0x00 | 0x01 | 0xD0..=0xD7 => {
                    if mode == Mode::Markers && m == 0x00 {
                        mode = Mode::Scan;
                    }
                }
                _ if mode == Mode::Scan => {}
                _ => {
                    // A marker segment: its length covers the payload,
                    // which may hold anything (thumbnails included).
                    let (Some(hi), Some(lo)) = (r.byte()?, r.byte()?) else {
                        return Ok(false);
                    };
                    out.extend_from_slice(&[hi, lo]);
                    let len = u16::from_be_bytes([hi, lo]) as usize;
                    if len < 2 {
                        mode = Mode::Scan;
                        continue;
                    }
                    if !r.copy_n(len - 2, out)? {
                        return Ok(false);
                    }
                    mode = if m == 0xDA { Mode::Entropy } else { Mode::Markers };
                }
            }
        }
    }
}

/// The MJPEG-file source.
pub struct MjpegFileSource {
    path: PathBuf,
    opts: SourceOptions,
    reader: Option<ByteReader<File>>,
    jpeg: Vec<u8>,
    frames: JpegFrames,
    pacer: Pacer,
    /// JPEGs found since the file was last (re)opened from the start.
    frames_this_pass: u64,
}

impl MjpegFileSource {
    pub fn new(path: PathBuf, opts: SourceOptions) -> Self {
        let pacer = Pacer::new(opts.fps);
        Self {
            path,
            opts,
            reader: None,
            jpeg: Vec::new(),
            frames: JpegFrames::default(),
            pacer,
            frames_this_pass: 0,
        }
    }

    fn open_file(&self) -> Result<ByteReader<File>, CaptureError> {
        // A device or FIFO would block or never end: say what it is.
        if let Some(kind) = std::fs::metadata(&self.path)
            .ok()
            .as_ref()
            .and_then(crate::tflite::model_file::file_kind)
        {
            return Err(CaptureError::Unavailable(format!(
                "{} is {kind}, not a regular file",
                self.path.display()
            )));
        }
        File::open(&self.path)
            .map(ByteReader::new)
            .map_err(|e| CaptureError::Unavailable(format!("cannot open {}: {e}", self.path.display())))
    }

    /// Reads the next JPEG into `self.jpeg`, looping or ending at the end.
    fn next_frame_data(&mut self) -> Result<(), CaptureError> {
        // At most one wrap per call: a file without any frame is not spun on.
        for _ in 0..2 {
            let reader = self
                .reader
                .as_mut()
                .ok_or_else(|| CaptureError::Unavailable(format!("{} is not open", self.path.display())))?;
            match next_jpeg(reader, &mut self.jpeg) {
                Ok(true) => {
                    self.frames_this_pass += 1;
                    return Ok(());
                }
                Ok(false) => {
                    if self.frames_this_pass == 0 {
                        return Err(CaptureError::Unavailable(format!(
                            "no JPEG frames in {}",
                            self.path.display()
                        )));
                    }
                    if !self.opts.looping {
                        return Err(CaptureError::EndOfStream);
                    }
                    // Reopen by path rather than seek: a replaced file is
                    // picked up, a deleted one noticed.
                    self.reader = Some(self.open_file()?);
                    self.frames_this_pass = 0;
                }
                Err(e) => {
                    return Err(CaptureError::Unavailable(format!(
                        "error reading {}: {e}",
                        self.path.display()
                    )))
                }
            }
        }
        Err(CaptureError::Unavailable(format!(
            "no JPEG frames in {}",
            self.path.display()
        )))
    }
}

impl Source for MjpegFileSource {
    fn describe(&self) -> String {
        format!("mjpeg:{}", self.path.display())
    }

    fn open(&mut self) -> Result<(), CaptureError> {
        self.reader = Some(self.open_file()?);
        self.frames_this_pass = 0;
        self.pacer.reset();
        Ok(())
    }

    fn read(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        if self.reader.is_none() {
            return Err(CaptureError::Unavailable(format!(
                "{} is not open",
                self.describe()
            )));
        }
        // An open handle keeps a deleted file readable; notice the deletion
        // like a camera being unplugged.
        if let Err(e) = std::fs::metadata(&self.path) {
            return Err(CaptureError::Unavailable(format!("{}: {e}", self.path.display())));
        }
        self.pacer.wait();
        self.next_frame_data()?;
        let start = Instant::now();
        self.frames.decode(&self.jpeg, frame, &self.opts)?;
        frame.decode_time = start.elapsed();
        frame.captured_at = Instant::now();
        Ok(())
    }

    fn close(&mut self) {
        self.reader = None;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;
    use std::time::Duration;

    /// JPEG-encodes the first `n` test photos (scaled to a width of 320).
    pub(crate) fn test_jpegs(n: usize) -> Vec<(Vec<u8>, u32, u32)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/photos");
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}: run scripts/setup first", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        assert!(
            names.len() >= n,
            "need {n} photos in {}: run scripts/setup first",
            dir.display()
        );
        names
            .iter()
            .take(n)
            .map(|p| {
                let img = image::open(p).unwrap().to_rgb8();
                let w = 320;
                let h = (img.height() * w / img.width()).max(1);
                let img = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
                let mut out = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
                    .encode_image(&img)
                    .unwrap();
                (out, w, h)
            })
            .collect()
    }

    fn write_mjpeg(path: &Path, parts: &[&[u8]]) {
        let mut data = Vec::new();
        for p in parts {
            data.extend_from_slice(p);
        }
        fs::write(path, data).unwrap();
    }

    fn native_opts() -> SourceOptions {
        SourceOptions {
            width: 0,
            height: 0,
            fps: 0.0,
            looping: false,
            ..SourceOptions::default()
        }
    }

    #[test]
    fn splits_concatenated_jpegs_with_garbage_between() {
        let jpegs = test_jpegs(3);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.mjpeg");
        // Garbage includes a lone FF D8 followed by junk, and stray FFs.
        let junk1: &[u8] = b"leading garbage \xFF\xFF\x00";
        let junk2: &[u8] = b"\x00\x00\xFF\xD8not a jpeg at all\xFF";
        write_mjpeg(
            &path,
            &[
                junk1,
                &jpegs[0].0,
                junk2,
                &jpegs[1].0,
                b"xx",
                &jpegs[2].0,
                b"\xFF\xD8\xFF\xE0",
            ],
        );
        let mut src = MjpegFileSource::new(path, native_opts());
        src.open().unwrap();
        let mut frame = Frame::default();
        let mut sizes = Vec::new();
        loop {
            match src.read(&mut frame) {
                Ok(()) => sizes.push((frame.width, frame.height)),
                Err(CaptureError::EndOfStream) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let want: Vec<(u32, u32)> = jpegs.iter().map(|j| (j.1, j.2)).collect();
        assert_eq!(sizes, want);
        assert!(matches!(src.read(&mut frame), Err(CaptureError::EndOfStream)));
    }

    #[test]
    fn splitter_keeps_thumbnails_and_drops_truncated_frames() {
        let jpegs = test_jpegs(2);
        // An APP1 segment holding a complete JPEG (SOI..EOI) as a thumbnail.
        let thumb = &jpegs[1].0;
        let mut with_thumb = vec![0xFF, 0xD8, 0xFF, 0xE1];
        with_thumb.extend_from_slice(&((thumb.len() + 2) as u16).to_be_bytes());
        with_thumb.extend_from_slice(thumb);
        with_thumb.extend_from_slice(&jpegs[0].0[2..]);
        let truncated = &jpegs[1].0[..jpegs[1].0.len() / 2];
        let mut data = Vec::new();
        for p in [&with_thumb[..], truncated, &jpegs[0].0[..], truncated] {
            data.extend_from_slice(p);
        }
        let mut r = ByteReader::new(io::Cursor::new(data));
        let mut out = Vec::new();
        assert!(next_jpeg(&mut r, &mut out).unwrap());
        assert_eq!(out, with_thumb);
        assert!(next_jpeg(&mut r, &mut out).unwrap());
        assert_eq!(out, jpegs[0].0);
        assert!(!next_jpeg(&mut r, &mut out).unwrap());
    }

    #[test]
    fn scales_to_the_requested_size() {
        let jpegs = test_jpegs(1);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.mjpeg");
        write_mjpeg(&path, &[&jpegs[0].0]);
        let mut src = MjpegFileSource::new(
            path,
            SourceOptions {
                width: 640,
                height: 480,
                ..native_opts()
            },
        );
        src.open().unwrap();
        let mut frame = Frame::default();
        src.read(&mut frame).unwrap();
        assert_eq!(
            (frame.width, frame.height, frame.rgb.len()),
            (640, 480, 640 * 480 * 3)
        );
    }

    #[test]
    fn corrupt_frame_is_skipped() {
        let jpegs = test_jpegs(3);
        let mut bad = jpegs[1].0.clone();
        // Zero the quantisation and Huffman tables and the frame header,
        // keeping the SOI/segment/EOI structure intact.
        let sos = bad.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let mut i = 2;
        while i < sos {
            let len = u16::from_be_bytes([bad[i + 2], bad[i + 3]]) as usize;
            if matches!(bad[i + 1], 0xDB | 0xC4 | 0xC0) {
                bad[i + 4..i + 2 + len].fill(0);
            }
            i += 2 + len;
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.mjpeg");
        write_mjpeg(&path, &[&jpegs[0].0, &bad, &jpegs[2].0]);
        let mut src = MjpegFileSource::new(path, native_opts());
        src.open().unwrap();
        let mut frame = Frame::default();
        src.read(&mut frame).unwrap();
        assert_eq!((frame.width, frame.height), (jpegs[0].1, jpegs[0].2));
        match src.read(&mut frame) {
            Err(CaptureError::Corrupt(m)) => assert!(m.contains("JPEG"), "{m}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        src.read(&mut frame).unwrap();
        assert_eq!((frame.width, frame.height), (jpegs[2].1, jpegs[2].2));
        assert!(matches!(src.read(&mut frame), Err(CaptureError::EndOfStream)));
    }

    #[test]
    fn devices_fifos_and_directories_say_what_they_are() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("pipe.mjpeg");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (path, kind) in [
            (
                PathBuf::from("/dev/zero"),
                "/dev/zero is a character device, not a regular file",
            ),
            (fifo, "is a FIFO (named pipe), not a regular file"),
            (tmp.path().to_path_buf(), "is a directory, not a regular file"),
        ] {
            // Opening a FIFO without a writer would block here.
            match MjpegFileSource::new(path, native_opts()).open() {
                Err(CaptureError::Unavailable(m)) => assert!(m.ends_with(kind), "{m}"),
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
    }

    #[test]
    fn loops_and_notices_deletion() {
        let jpegs = test_jpegs(2);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.mjpeg");
        let mut src = MjpegFileSource::new(
            path.clone(),
            SourceOptions {
                looping: true,
                fps: 200.0,
                ..native_opts()
            },
        );
        assert!(
            matches!(src.open(), Err(CaptureError::Unavailable(_))),
            "missing file"
        );
        write_mjpeg(&path, &[&jpegs[0].0, &jpegs[1].0]);
        src.open().unwrap();
        let mut frame = Frame::default();
        let t = Instant::now();
        let mut heights = Vec::new();
        for _ in 0..5 {
            src.read(&mut frame).unwrap();
            heights.push(frame.height);
        }
        assert!(t.elapsed() >= Duration::from_millis(19), "paced at 200 fps");
        assert_eq!(
            heights,
            [jpegs[0].2, jpegs[1].2, jpegs[0].2, jpegs[1].2, jpegs[0].2]
        );
        fs::remove_file(&path).unwrap();
        assert!(matches!(src.read(&mut frame), Err(CaptureError::Unavailable(_))));
        src.close();
        assert!(matches!(src.open(), Err(CaptureError::Unavailable(_))));
        // A file without any JPEG in it is unavailable too, not a busy loop.
        fs::write(&path, b"nothing here").unwrap();
        src.open().unwrap();
        assert!(matches!(src.read(&mut frame), Err(CaptureError::Unavailable(_))));
    }

    #[test]
    fn grayscale_jpeg_decodes_to_rgb() {
        let img = image::GrayImage::from_fn(32, 16, |x, _| image::Luma([(x * 8) as u8]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&img)
            .unwrap();
        let mut out = Vec::new();
        let mut dec = crate::capture::jpeg::JpegDecoder::new().unwrap();
        let full = |_, _| (0, 0);
        assert_eq!(dec.decode(&jpeg, &mut out, full).unwrap().width, 32);
        assert_eq!(out.len(), 32 * 16 * 3);
        let px = &out[(8 * 32 + 20) * 3..][..3];
        assert!(
            px[0] == px[1] && px[1] == px[2] && (px[0] as i32 - 160).abs() < 8,
            "{px:?}"
        );
        // Zero padding after EOI (as from a V4L2 buffer) is ignored.
        let mut padded = jpeg.clone();
        padded.resize(jpeg.len() + 4096, 0);
        let d = dec.decode(&padded, &mut out, full).unwrap();
        assert_eq!((d.width, d.height), (32, 16));
    }
}
