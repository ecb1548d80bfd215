//! `rtsp://` and `rtsps://` cameras, decoded by an `ffmpeg` child process.
//!
//! RTSP, RTP and H.264/H.265 are ffmpeg's job: it writes raw I420 frames of
//! `source.width` x `source.height` (letterboxed) on its stdout, and
//! [`super::exec::ExecSource`] reads them like any `exec:` command's raw
//! frames, with the same process-group handling, stall timeout, restart
//! with backoff and rate-limited stderr. I420 keeps the pipe at 1.5 bytes a
//! pixel. ffmpeg is run directly (no shell), so the URL is one argument
//! and needs no quoting.
//!
//! The URL's `user:pass@` is what ffmpeg authenticates with; it is redacted
//! wherever the URL is shown ([`RtspUrl`]'s `Display` and `Debug`).

use std::fmt;

use super::http::{redact, HttpUrl};
use super::SourceOptions;

/// How RTP travels: interleaved in the RTSP TCP connection (default: works
/// through NAT and firewalls, no loss) or as UDP datagrams (less latency
/// on a clean LAN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

impl RtspTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// A parsed `rtsp://` or `rtsps://` URL. Its credentials are shown only by
/// [`Self::full`].
#[derive(Clone, PartialEq, Eq)]
pub struct RtspUrl {
    raw: String,
}

impl RtspUrl {
    /// Parses `rtsp[s]://[user[:pass]@]host[:port][/path][?query]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("rtsp://")
            .or_else(|| s.strip_prefix("rtsps://"))
            .ok_or_else(|| "an RTSP URL starts with rtsp:// or rtsps://".to_string())?;
        // The authority and path rules are HTTP's: check them with its parser.
        HttpUrl::parse(&format!("http://{rest}"))?;
        Ok(Self { raw: s.to_string() })
    }

    /// The URL with its credentials: only for ffmpeg, never for logs.
    pub fn full(&self) -> &str {
        &self.raw
    }

    /// Whether the URL carries `user[:pass]@`.
    pub fn has_credentials(&self) -> bool {
        let rest = &self.raw[self.raw.find("://").map_or(0, |i| i + 3)..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        authority.contains('@')
    }

    /// This URL with `user:pass@` set (percent-encoded), replacing any.
    pub fn with_credentials(&self, user: &str, pass: &str) -> Self {
        Self {
            raw: with_userinfo(&self.raw, user, pass),
        }
    }
}

impl fmt::Display for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

impl fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RtspUrl({})", redact(&self.raw))
    }
}

/// `url` (`scheme://...`) with its user info replaced by `user:pass`,
/// percent-encoded so that `@`, `:` and `/` in a password stay in it.
pub fn with_userinfo(url: &str, user: &str, pass: &str) -> String {
    let Some(i) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = (&url[..i + 3], &url[i + 3..]);
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let host = authority.rfind('@').map_or(authority, |j| &authority[j + 1..]);
    format!(
        "{scheme}{}:{}@{host}{tail}",
        percent_encode(user),
        percent_encode(pass)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// ffmpeg's arguments (after the program name) for reading `url` into raw
/// I420 frames of `opts.width` x `opts.height` on stdout, letterboxed like
/// the other sources' frames, in the limited (TV) range that
/// [`super::convert::i420_to_rgb`] expects. `opts.ffmpeg_args`
/// go before `-i`: input and decoder options such as `-c:v h264_v4l2m2m`.
pub fn ffmpeg_args(url: &RtspUrl, opts: &SourceOptions) -> Vec<String> {
    let (w, h) = (opts.width, opts.height);
    let mut args: Vec<String> = [
        "-nostdin",
        "-hide_banner",
        // Errors only: full-range (JPEG-style) streams make swscale warn
        // on every frame; `out_range=tv` below converts them correctly.
        "-loglevel",
        "error",
        "-rtsp_transport",
        opts.rtsp_transport.as_str(),
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.extend(opts.ffmpeg_args.iter().cloned());
    args.extend(
        [
            "-i",
            url.full(),
            "-map",
            "0:v:0",
            "-an",
            "-sn",
            "-dn",
            "-vf",
            &format!(
                "scale={w}:{h}:force_original_aspect_ratio=decrease:out_range=tv,\
                 pad={w}:{h}:(ow-iw)/2:(oh-ih)/2"
            ),
            "-pix_fmt",
            "yuv420p",
            // One output frame per decoded frame: no duplicates, no drops.
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "pipe:1",
        ]
        .into_iter()
        .map(String::from),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let u = RtspUrl::parse("rtsp://admin:pw@cam:8554/live?token=abc").unwrap();
        assert_eq!(u.to_string(), "rtsp://***@cam:8554/live?token=***");
        assert!(!format!("{u:?}").contains("pw"));
        assert!(u.has_credentials());
        assert_eq!(u.full(), "rtsp://admin:pw@cam:8554/live?token=abc");
        assert!(RtspUrl::parse("rtsps://cam/x").is_ok());
        assert!(!RtspUrl::parse("rtsp://cam").unwrap().has_credentials());
        for bad in ["rtsp://", "rtsp://cam:99999/x", "rtsp://ca m/x", "http://cam/x"] {
            assert!(RtspUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_percent_encoded_into_the_url() {
        let u = RtspUrl::parse("rtsp://old:x@cam/s").unwrap();
        let u = u.with_credentials("ad min", "p@ss:w/rd");
        assert_eq!(u.full(), "rtsp://ad%20min:p%40ss%3Aw%2Frd@cam/s");
        assert_eq!(u.to_string(), "rtsp://***@cam/s");
        assert_eq!(
            with_userinfo("http://cam:81?x=1", "u", "p"),
            "http://u:p@cam:81?x=1"
        );
    }

    #[test]
    fn ffmpeg_arguments() {
        let url = RtspUrl::parse("rtsp://u:p@cam/s").unwrap();
        let opts = SourceOptions {
            width: 320,
            height: 240,
            rtsp_transport: RtspTransport::Udp,
            ffmpeg_args: vec!["-c:v".into(), "h264_v4l2m2m".into()],
            ..SourceOptions::default()
        };
        let a = ffmpeg_args(&url, &opts).join(" ");
        assert!(
            a.contains("-rtsp_transport udp -c:v h264_v4l2m2m -i rtsp://u:p@cam/s"),
            "{a}"
        );
        assert!(a.contains("scale=320:240:") && a.contains("pad=320:240:"), "{a}");
        assert!(
            a.ends_with("-pix_fmt yuv420p -fps_mode passthrough -f rawvideo pipe:1"),
            "{a}"
        );
        let a = ffmpeg_args(&url, &SourceOptions::default()).join(" ");
        assert!(a.contains("-rtsp_transport tcp -i "), "{a}");
    }
}
