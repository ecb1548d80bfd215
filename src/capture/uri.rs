//! Source URIs: `v4l2:/dev/video0` (or a bare `/dev/videoN`, `/dev/v4l/...`
//! path), `images:DIR`, `mjpeg:FILE`, `test:`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUri {
    /// A V4L2 capture device node.
    V4l2(PathBuf),
    /// A directory of JPEG/PNG photos, shown in name order.
    Images(PathBuf),
    /// A file of concatenated JPEGs (`ffmpeg -f mjpeg` output).
    Mjpeg(PathBuf),
    /// A synthetic moving test pattern.
    Test,
}

/// The forms [`SourceUri::from_str`] accepts, for error messages and help.
pub const ACCEPTED_FORMS: &str = "v4l2:/dev/videoN (or a bare /dev/videoN or /dev/v4l/... path), \
                                  images:DIR, mjpeg:FILE, test:";

/// A string that is not a source URI.
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
            input: s.to_string(),
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

impl fmt::Display for SourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4l2(p) => write!(f, "v4l2:{}", p.display()),
            Self::Images(p) => write!(f, "images:{}", p.display()),
            Self::Mjpeg(p) => write!(f, "mjpeg:{}", p.display()),
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
    }

    #[test]
    fn rejected_forms_list_the_accepted_ones() {
        for bad in [
            "",
            "rtsp://cam/stream",
            "images:",
            "mjpeg:",
            "v4l2:",
            "test:x",
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
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "v4l2:/dev/video0",
            "images:tests/photos",
            "mjpeg:a.mjpeg",
            "test:",
        ] {
            assert_eq!(parse(s).unwrap().to_string(), s);
            assert_eq!(parse(&parse(s).unwrap().to_string()).unwrap(), parse(s).unwrap());
        }
    }
}
