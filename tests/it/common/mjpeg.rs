//! The one `multipart/x-mixed-replace` (MJPEG) reader of the tests, for
//! streams read by raw sockets (`http_server`) and by reqwest (the daemon
//! tests). It checks the framing byte by byte, as `src/http/mjpeg.rs`
//! documents it: the body opens with `--BOUNDARY\r\n`, then per part
//! `Content-Type: image/jpeg\r\nContent-Length: N\r\nX-Frame: SEQ\r\n\r\n<N bytes>\r\n--BOUNDARY\r\n`,
//! SEQ rising from part to part.

use std::io::{self, BufRead, Read};
use std::time::{Duration, Instant};

/// Parses `multipart/x-mixed-replace` byte by byte.
pub struct Mjpeg {
    body: Box<dyn BufRead + Send>,
    delimiter: String,
    /// The last part's `X-Frame` number.
    pub seq: Option<u64>,
}

impl Mjpeg {
    /// The body of a response of type `content_type`, checked to open with
    /// the boundary.
    pub fn new(content_type: &str, mut body: Box<dyn BufRead + Send>) -> Mjpeg {
        let boundary = content_type
            .strip_prefix("multipart/x-mixed-replace; boundary=")
            .unwrap_or_else(|| panic!("content type {content_type:?}"));
        assert!(!boundary.is_empty() && boundary.len() <= 70);
        let delimiter = format!("--{boundary}\r\n");
        assert_eq!(
            read_line(&mut body).unwrap(),
            delimiter,
            "stream opens with the boundary"
        );
        Mjpeg {
            body,
            delimiter,
            seq: None,
        }
    }

    /// The next part's JPEG bytes, checking its headers and framing; an
    /// error when the stream ends or fails.
    pub fn next_part(&mut self) -> io::Result<Vec<u8>> {
        let mut length = None;
        let mut content_type = None;
        let mut seq = None;
        loop {
            let line = read_line(&mut self.body)?;
            if line == "\r\n" {
                break;
            }
            let (name, value) = line.split_once(':').expect("part header");
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.trim().parse::<usize>().unwrap()),
                "content-type" => content_type = Some(value.trim().to_owned()),
                "x-frame" => seq = Some(value.trim().parse::<u64>().expect("X-Frame number")),
                _ => {}
            }
        }
        assert_eq!(content_type.as_deref(), Some("image/jpeg"));
        let seq = seq.expect("part X-Frame");
        if let Some(prev) = self.seq {
            assert!(seq > prev, "X-Frame {seq} after {prev}");
        }
        self.seq = Some(seq);
        let mut jpeg = vec![0; length.expect("part Content-Length")];
        self.body.read_exact(&mut jpeg)?;
        assert_eq!(read_line(&mut self.body)?, "\r\n", "CRLF after the part's bytes");
        assert_eq!(
            read_line(&mut self.body)?,
            self.delimiter,
            "boundary after the part"
        );
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG SOI");
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9], "JPEG EOI");
        Ok(jpeg)
    }

    /// Parts received within `window`; every tenth is decoded.
    pub fn count_for(&mut self, window: Duration) -> usize {
        let start = Instant::now();
        let mut count = 0;
        while start.elapsed() < window {
            let jpeg = self.next_part().unwrap();
            if count % 10 == 0 {
                image::load_from_memory(&jpeg).unwrap();
            }
            count += 1;
        }
        count
    }
}

/// One CRLF-terminated line; `UnexpectedEof` at the end of the stream.
pub fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    assert!(line.ends_with("\r\n"), "line not CRLF-terminated: {line:?}");
    Ok(line)
}
