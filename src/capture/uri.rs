//! Source URIs: `v4l2:/dev/video0` (or a bare `/dev/videoN`, `/dev/v4l/...`
//! path), `images:DIR`, `mjpeg:FILE`, `http://HOST[:PORT]/PATH`,
//! `rtsp[s]://HOST[:PORT]/PATH`, `exec:COMMAND`, `rpicam:N`, `test:`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::http::{redact, HttpUrl};
use super::rtsp::RtspUrl;

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUri {
    /// A V4L2 capture device node.
    V4l2(PathBuf),
    /// A directory of JPEG/PNG photos, shown in name order.
    Images(PathBuf),
    /// A file of concatenated JPEGs (`ffmpeg -f mjpeg` output).
    Mjpeg(PathBuf),
    /// A multipart MJPEG stream over HTTP (IP cameras, another edgevision).
    Http(HttpUrl),
    /// An RTSP camera, decoded by an ffmpeg child process.
    Rtsp(RtspUrl),
    /// A command whose stdout carries MJPEG or raw frames (`sh -c`).
    Exec(String),
    /// A Raspberry Pi camera module, through `rpicam-vid`.
    Rpicam(u32),
    /// A synthetic moving test pattern.
    Test,
}

/// The forms [`SourceUri::from_str`] accepts, for error messages and help.
pub const ACCEPTED_FORMS: &str = "v4l2:/dev/videoN (or a bare /dev/videoN or /dev/v4l/... path), \
                                  images:DIR, mjpeg:FILE, \
                                  http://[user:pass@]HOST[:PORT]/PATH[?token=...] (an MJPEG stream), \
                                  rtsp[s]://[user:pass@]HOST[:PORT]/PATH (through ffmpeg), \
                                  exec:COMMAND (MJPEG or raw frames on its stdout), rpicam:N (Raspberry Pi camera N), test:";

/// A string that is not a source URI. `input` has its credentials redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid source {input:?}: {reason}; accepted forms: {ACCEPTED_FORMS}")]
pub struct UriError {
    pub input: String,
    pub reason: String,
}

impl FromStr for SourceUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| UriError {
            input: redact(s),
            reason: reason.to_string(),
        };
        let s_trim = s.trim();
        let path_of = |rest: &str, what: &str| -> Result<PathBuf, UriError> {
            if rest.is_empty() {
                Err(err(&format!("{what} is missing")))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        if let Some(rest) = s_trim.strip_prefix("v4l2:") {
            // `v4l2:0` is shorthand for /dev/video0.
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(Self::V4l2(PathBuf::from(format!("/dev/video{rest}"))));
            }
            return path_of(rest, "the device path").map(Self::V4l2);
        }
        if let Some(rest) = s_trim.strip_prefix("images:") {
            return path_of(rest, "the directory").map(Self::Images);
        }
        if let Some(rest) = s_trim.strip_prefix("mjpeg:") {
            return path_of(rest, "the file").map(Self::Mjpeg);
        }
        if s_trim.starts_with("http://") || s_trim.starts_with("https://") {
            return HttpUrl::parse(s_trim).map(Self::Http).map_err(|e| err(&e));
        }
        if s_trim.starts_with("rtsp://") || s_trim.starts_with("rtsps://") {
            return RtspUrl::parse(s_trim).map(Self::Rtsp).map_err(|e| err(&e));
        }
        if let Some(rest) = s_trim.strip_prefix("exec:") {
            let cmd = rest.trim();
            if cmd.is_empty() {
                return Err(err("the command is missing"));
            }
            return Ok(Self::Exec(cmd.to_string()));
        }
        if let Some(rest) = s_trim.strip_prefix("rpicam:") {
            return rest
                .parse::<u32>()
                .map(Self::Rpicam)
                .map_err(|_| err("rpicam: takes a camera number, e.g. rpicam:0"));
        }
        if s_trim == "test:" || s_trim == "test" {
            return Ok(Self::Test);
        }
        if s_trim.starts_with("test:") {
            return Err(err("test: takes no argument"));
        }
        if s_trim.starts_with("/dev/video") || s_trim.starts_with("/dev/v4l/") {
            return Ok(Self::V4l2(PathBuf::from(s_trim)));
        }
        if s_trim.is_empty() {
            return Err(err("it is empty"));
        }
        Err(err("unknown kind of source"))
    }
}

impl SourceUri {
    /// A camera that delivers at its own rate (not read on demand): frames
    /// not taken in time are dropped rather than backed up.
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            Self::V4l2(_) | Self::Http(_) | Self::Rtsp(_) | Self::Exec(_) | Self::Rpicam(_)
        )
    }
}

/// Safe to log and show: an `http://` URL's credentials are redacted, so
/// that form does not parse back to the same credentials.
impl fmt::Display for SourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4l2(p) => write!(f, "v4l2:{}", p.display()),
            Self::Images(p) => write!(f, "images:{}", p.display()),
            Self::Mjpeg(p) => write!(f, "mjpeg:{}", p.display()),
            Self::Http(u) => write!(f, "{u}"),
            Self::Rtsp(u) => write!(f, "{u}"),
            Self::Exec(c) => write!(f, "exec:{}", super::exec::redact_words(c)),
            Self::Rpicam(n) => write!(f, "rpicam:{n}"),
            Self::Test => f.write_str("test:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SourceUri, UriError> {
        s.parse()
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            parse("v4l2:/dev/video0").unwrap(),
            SourceUri::V4l2("/dev/video0".into())
        );
        assert_eq!(parse("v4l2:2").unwrap(), SourceUri::V4l2("/dev/video2".into()));
        assert_eq!(
            parse("/dev/video10").unwrap(),
            SourceUri::V4l2("/dev/video10".into())
        );
        assert_eq!(
            parse("/dev/v4l/by-id/usb-cam-video-index0").unwrap(),
            SourceUri::V4l2("/dev/v4l/by-id/usb-cam-video-index0".into())
        );
        assert_eq!(
            parse("images:tests/photos").unwrap(),
            SourceUri::Images("tests/photos".into())
        );
        assert_eq!(
            parse("images:/a dir/x").unwrap(),
            SourceUri::Images("/a dir/x".into())
        );
        assert_eq!(
            parse("mjpeg:/tmp/a.mjpeg").unwrap(),
            SourceUri::Mjpeg("/tmp/a.mjpeg".into())
        );
        assert_eq!(parse("test:").unwrap(), SourceUri::Test);
        assert_eq!(parse(" test: ").unwrap(), SourceUri::Test);
        match parse("http://u:p@cam:8080/stream.mjpg?token=abcdef").unwrap() {
            SourceUri::Http(u) => {
                assert_eq!((u.host.as_str(), u.port), ("cam", 8080));
                assert_eq!(u.full(), "http://u:p@cam:8080/stream.mjpg?token=abcdef");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn http_credentials_are_redacted_in_display_and_errors() {
        let uri = parse("http://admin:hunter2@cam/video?token=abcdef").unwrap();
        assert_eq!(uri.to_string(), "http://***@cam/video?token=***");
        let e = parse("http://admin:hunter2@cam:nope/?token=abcdef").unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("hunter2") && !msg.contains("abcdef"), "{msg}");
        assert!(msg.contains("not a port number"), "{msg}");
        let uri = parse("rtsp://admin:hunter2@cam:8554/live").unwrap();
        assert!(matches!(uri, SourceUri::Rtsp(_)) && uri.is_live());
        assert_eq!(uri.to_string(), "rtsp://***@cam:8554/live");
        let e = parse("rtsp://admin:hunter2@cam:x/live").unwrap_err().to_string();
        assert!(!e.contains("hunter2") && e.contains("not a port number"), "{e}");
        match parse("https://u:p@cam/video").unwrap() {
            SourceUri::Http(u) => assert!(u.tls && u.port == 443 && u.host_header() == "cam"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejected_forms_list_the_accepted_ones() {
        for bad in [
            "",
            "rtsp://",
            "rtsp://cam:port/x",
            "images:",
            "mjpeg:",
            "v4l2:",
            "test:x",
            "exec:",
            "rpicam:",
            "rpicam:cam",
            "photos/",
            "/tmp/x.mjpeg",
        ] {
            let e = parse(bad).expect_err(bad);
            let msg = e.to_string();
            assert!(
                msg.contains("images:DIR") && msg.contains("v4l2:/dev/videoN"),
                "{msg}"
            );
            assert!(msg.contains("test:") && msg.contains("mjpeg:FILE"), "{msg}");
            assert!(msg.contains("http://"), "{msg}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "v4l2:/dev/video0",
            "images:tests/photos",
            "mjpeg:a.mjpeg",
            "http://cam:8080/stream.mjpg?fps=5",
            "rtsp://cam:8554/live",
            "rtsps://cam/live",
            "exec:ffmpeg -i x.mp4 -f mjpeg -",
            "rpicam:1",
            "test:",
        ] {
            assert_eq!(parse(s).unwrap().to_string(), s);
            assert_eq!(parse(&parse(s).unwrap().to_string()).unwrap(), parse(s).unwrap());
        }
    }
}
