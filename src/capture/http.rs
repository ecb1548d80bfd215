//! `http://HOST[:PORT]/PATH` — a `multipart/x-mixed-replace` MJPEG stream
//! (IP cameras, mjpg-streamer, another edgevision's `/stream.mjpg`), read
//! with a small HTTP/1.1 client over a std `TcpStream`, with rustls for
//! `https://` (webpki roots plus `source.ca_file`): no ffmpeg.
//!
//! `user:pass@` in the URL is sent as basic auth; a `?token=...` query is
//! sent as it is (edgevision's bearer token in the query). Credentials never
//! leave this module unredacted: [`HttpUrl`]'s `Display` (used by `describe`
//! and logs) hides them; only [`HttpUrl::full`] gives the URL back.
//!
//! The boundary comes from the response's Content-Type. Parts with a
//! Content-Length are read by length; parts without one are read up to the
//! next delimiter. Both are capped at [`MAX_PART_BYTES`], headers and the
//! garbage skipped between parts too, so a hostile or broken server cannot
//! make memory grow. JPEG bytes go to the decoder untouched (and through
//! `pass_jpeg` to the stream as they are).
//!
//! Connection refused, a non-200 status, a non-multipart reply, garbage and
//! the end of the stream are [`CaptureError::Unavailable`]; no byte for
//! `stall_timeout` is [`CaptureError::Stalled`]: [`super::Resilient`]
//! reconnects with backoff, as for a camera. Socket reads wait in steps of
//! at most [`READ_STEP`] so a stop request ([`super::cancelled`]) is seen
//! quickly. Frames are not paced: the camera sets the rate.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use base64::Engine;

use super::util::{cancelled, JpegFrames};
use super::{CaptureError, Frame, Source, SourceOptions};

/// One part (a JPEG) larger than this is taken to be garbage.
pub const MAX_PART_BYTES: usize = 16 << 20;
/// Longest header or boundary line accepted.
const MAX_LINE_BYTES: usize = 8 << 10;
/// Most header lines in a response or a part.
const MAX_HEADERS: usize = 64;
/// Bytes skipped looking for a boundary line before giving up.
const MAX_SKIP_BYTES: usize = 1 << 20;
/// Longest single wait on the socket, so stopping is noticed.
pub const READ_STEP: Duration = Duration::from_millis(250);
/// Longest wait for a TCP connection (keeps shutdown within 2 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Query keys whose values are secrets, hidden by [`redact`].
const SECRET_KEYS: &[&str] = &[
    "token",
    "access_token",
    "auth",
    "key",
    "api_key",
    "apikey",
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "signature",
    "sig",
];

/// A parsed `http://` source URL.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https://`: the connection is TLS.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
    /// Basic-auth user and password from `user:pass@` (percent-decoded).
    pub credentials: Option<(String, String)>,
    /// The URL as given, for [`Self::full`].
    raw: String,
}

impl HttpUrl {
    /// Parses `http://[user[:pass]@]host[:port][/path][?query]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (tls, rest) = match (s.strip_prefix("http://"), s.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err("an HTTP URL must start with http:// or https://".into()),
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_string()
        };
        if target.contains('#') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("the path may not contain spaces, control characters or '#'".into());
        }
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let credentials = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                Some((percent_decode(user)?, percent_decode(pass)?))
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| "an IPv6 address needs a closing ']'".to_string())?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err("the host is missing".into());
        }
        if host
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b"-._:%".contains(&b)))
        {
            return Err(format!("{host:?} is not a host name or IP address"));
        }
        let port = match port {
            None | Some("") if tls => 443,
            None | Some("") => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("{p:?} is not a port number"))?,
        };
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
            target,
            credentials,
            raw: s.to_string(),
        })
    }

    /// The URL as given, credentials included: only for connecting and for
    /// writing the config back, never for logs.
    pub fn full(&self) -> &str {
        &self.raw
    }

    /// `Host:` header value.
    pub(crate) fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Shows the URL with `user:pass@` and secret query values replaced by `***`.
impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({})", redact(&self.raw))
    }
}

/// `s` with the user info of a `scheme://user:pass@host` URL and the values
/// of secret-looking query parameters (`token=`, `password=`, ...) replaced
/// by `***`. Anything else is returned unchanged, so any source string can
/// go through it before it is logged or shown.
pub fn redact(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return s.to_string();
    };
    let (scheme, rest) = (&s[..scheme_end + 3], &s[scheme_end + 3..]);
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rfind('@') {
        Some(i) => format!("***@{}", &authority[i + 1..]),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        None => tail.to_string(),
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()) => {
                        format!("{k}=***")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            let mut t = format!("{path}?{}", params.join("&"));
            if let Some(f) = fragment {
                t.push('#');
                t.push_str(f);
            }
            t
        }
    };
    format!("{scheme}{authority}{tail}")
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a bad %-escape in the user name or password".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the user name or password is not UTF-8".to_string())
}

// ---------------------------------------------------------------------------
// Reading: a socket that notices stalls and stop requests, chunked transfer
// decoding, and the multipart splitter.

/// Marker put in the io errors that mean "stop requested".
const STOPPING: &str = "stopping";

/// The connection: plain TCP, or TLS over it (`https://`).
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// The TLS settings of `https://` sources: the webpki (Mozilla) roots, plus
/// the certificates of `ca_file` (PEM) for cameras with their own CA or a
/// self-signed certificate.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(p) = ca_file {
        let shown = p.display();
        let certs = CertificateDer::pem_file_iter(p)
            .map_err(|e| format!("source.ca_file {shown}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("source.ca_file {shown}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("source.ca_file {shown}: no PEM certificate in it"));
        }
        for c in certs {
            roots.add(c).map_err(|e| format!("source.ca_file {shown}: {e}"))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}

/// Runs the TLS handshake on a socket with a read timeout, until done,
/// `deadline`, or a stop request.
fn tls_handshake(
    conn: &mut rustls::ClientConnection,
    sock: &mut TcpStream,
    deadline: Instant,
) -> io::Result<()> {
    while conn.is_handshaking() {
        match conn.complete_io(sock) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                if cancelled() {
                    return Err(io::Error::other(STOPPING));
                }
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A `TcpStream` whose reads wait in [`READ_STEP`]s, fail with `TimedOut`
/// after `stall` without a byte (zero: never), and give up when the
/// capture thread is asked to stop.
struct Socket {
    inner: Transport,
    stall: Duration,
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = Instant::now();
        loop {
            match self.inner.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if cancelled() {
                        return Err(io::Error::other(STOPPING));
                    }
                    if !self.stall.is_zero() && start.elapsed() >= self.stall {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "no data"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The response body: as it comes, or de-chunked (`Transfer-Encoding: chunked`).
struct Body<R: BufRead> {
    inner: R,
    chunked: bool,
    /// Bytes left in the current chunk.
    left: usize,
    /// A chunk-size line was read (later ones follow a chunk's CR LF).
    started: bool,
    done: bool,
}

impl<R: BufRead> Body<R> {
    fn new(inner: R, chunked: bool) -> Self {
        Self {
            inner,
            chunked,
            left: 0,
            started: false,
            done: false,
        }
    }

    /// Reads the next chunk-size line (after the CRLF ending the previous chunk).
    fn next_chunk(&mut self, first: bool) -> io::Result<()> {
        let mut line = Vec::new();
        if !first {
            read_line(&mut self.inner, &mut line)?;
            if !line.is_empty() {
                return Err(bad_data("chunked body: no CRLF after a chunk"));
            }
        }
        read_line(&mut self.inner, &mut line)?;
        let text = std::str::from_utf8(&line).map_err(|_| bad_data("chunked body: bad chunk size"))?;
        let size = text.split(';').next().unwrap_or("").trim();
        self.left = usize::from_str_radix(size, 16).map_err(|_| bad_data("chunked body: bad chunk size"))?;
        if self.left == 0 {
            self.done = true;
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(buf.len());
            buf[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Body<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if !self.chunked {
            return self.inner.fill_buf();
        }
        if self.done {
            return Ok(&[]);
        }
        if self.left == 0 {
            self.next_chunk(!self.started)?;
            self.started = true;
            if self.done {
                return Ok(&[]);
            }
        }
        let left = self.left;
        let avail = self.inner.fill_buf()?;
        if avail.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunked body cut short",
            ));
        }
        Ok(&avail[..avail.len().min(left)])
    }

    fn consume(&mut self, n: usize) {
        if self.chunked {
            self.left -= n.min(self.left);
        }
        self.inner.consume(n);
    }
}

fn bad_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one line (without its CR LF) into `out`, at most
/// [`MAX_LINE_BYTES`]. End of stream before the newline is an error.
fn read_line<R: BufRead>(r: &mut R, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    loop {
        let (done, used) = {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended"));
            }
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&avail[..i]);
                    (true, i + 1)
                }
                None => {
                    out.extend_from_slice(avail);
                    (false, avail.len())
                }
            }
        };
        r.consume(used);
        if out.len() > MAX_LINE_BYTES {
            return Err(bad_data("a header line longer than 8 KiB"));
        }
        if done {
            if out.last() == Some(&b'\r') {
                out.pop();
            }
            return Ok(());
        }
    }
}

/// Reads header lines up to the empty line; `(lowercase name, value)` pairs.
fn read_headers<R: BufRead>(r: &mut R) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    let mut line = Vec::new();
    loop {
        read_line(r, &mut line)?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(bad_data("more than 64 header lines"));
        }
        let text = String::from_utf8_lossy(&line);
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| bad_data(&format!("not a header line: {:?}", truncate(&text, 60))))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The `boundary` parameter of a multipart Content-Type, if it is one.
pub(crate) fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim().to_ascii_lowercase();
    if !kind.starts_with("multipart/") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 200).then(|| v.to_string())
    })
}

/// Why the next part could not be had.
#[derive(Debug)]
pub(crate) enum PartError {
    /// Reading failed (the stream ended, stalled, or was cut).
    Io(io::Error),
    /// The bytes are not a multipart stream as announced: resynchronising
    /// is not safe, reconnect.
    Garbage(String),
    /// The closing delimiter (`--BOUNDARY--`) was reached.
    End,
}

impl From<io::Error> for PartError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::InvalidData {
            PartError::Garbage(e.to_string())
        } else {
            PartError::Io(e)
        }
    }
}

/// Splits a multipart body into its parts' bodies.
pub(crate) struct Multipart {
    /// `--BOUNDARY`.
    dash_boundary: Vec<u8>,
    /// `\n--BOUNDARY`: ends a part without Content-Length.
    delimiter: Vec<u8>,
    /// The reader is just past a `--BOUNDARY` (rest of its line unread).
    at_delimiter: bool,
    line: Vec<u8>,
}

impl Multipart {
    pub fn new(boundary: &str) -> Self {
        let dash_boundary = format!("--{boundary}").into_bytes();
        let mut delimiter = b"\n".to_vec();
        delimiter.extend_from_slice(&dash_boundary);
        Self {
            dash_boundary,
            delimiter,
            at_delimiter: false,
            line: Vec::new(),
        }
    }

    /// Reads the next part's body into `out`.
    pub fn next_part<R: BufRead>(&mut self, r: &mut R, out: &mut Vec<u8>) -> Result<(), PartError> {
        out.clear();
        if self.at_delimiter {
            // The rest of the delimiter line: `--` closes the stream.
            read_line(r, &mut self.line)?;
            self.at_delimiter = false;
            if self.line.starts_with(b"--") {
                return Err(PartError::End);
            }
        } else {
            self.skip_to_boundary(r)?;
        }
        let headers = read_headers(r)?;
        match header(&headers, "content-length") {
            Some(v) => {
                let n: usize = v
                    .parse()
                    .map_err(|_| PartError::Garbage(format!("part Content-Length {v:?} is not a number")))?;
                if n > MAX_PART_BYTES {
                    return Err(PartError::Garbage(format!(
                        "a part of {n} bytes (more than {} MiB)",
                        MAX_PART_BYTES >> 20
                    )));
                }
                out.resize(n, 0);
                r.read_exact(out)?;
                Ok(())
            }
            None => self.read_to_delimiter(r, out),
        }
    }

    /// Skips (bounded) to just past the next `--BOUNDARY` line; a closing
    /// `--BOUNDARY--` is [`PartError::End`].
    fn skip_to_boundary<R: BufRead>(&mut self, r: &mut R) -> Result<(), PartError> {
        let mut skipped = 0;
        loop {
            read_line(r, &mut self.line)?;
            let line = trim_end(&self.line);
            if let Some(rest) = line.strip_prefix(&self.dash_boundary[..]) {
                if rest.is_empty() {
                    return Ok(());
                }
                if rest == b"--" {
                    return Err(PartError::End);
                }
            }
            skipped += self.line.len() + 1;
            if skipped > MAX_SKIP_BYTES {
                return Err(PartError::Garbage(format!(
                    "no multipart boundary in {} KiB",
                    MAX_SKIP_BYTES >> 10
                )));
            }
        }
    }

    /// Reads up to the next delimiter (which is consumed), at most
    /// [`MAX_PART_BYTES`]. The CR LF before the delimiter is not part of
    /// the body.
    fn read_to_delimiter<R: BufRead>(&mut self, r: &mut R, out: &mut Vec<u8>) -> Result<(), PartError> {
        let d = &self.delimiter;
        loop {
            let search_from = out.len().saturating_sub(d.len() - 1);
            let old = out.len();
            let found = {
                let avail = r.fill_buf()?;
                if avail.is_empty() {
                    return Err(PartError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a part",
                    )));
                }
                out.extend_from_slice(avail);
                let found = out[search_from..]
                    .windows(d.len())
                    .position(|w| w == &d[..])
                    .map(|i| search_from + i);
                let used = match found {
                    Some(at) => at + d.len() - old,
                    None => avail.len(),
                };
                (found, used)
            };
            r.consume(found.1);
            if let Some(at) = found.0 {
                out.truncate(at);
                if out.last() == Some(&b'\r') {
                    out.pop();
                }
                self.at_delimiter = true;
                return Ok(());
            }
            if out.len() > MAX_PART_BYTES {
                return Err(PartError::Garbage(format!(
                    "no multipart boundary within {} MiB",
                    MAX_PART_BYTES >> 20
                )));
            }
        }
    }
}

fn trim_end(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &b[..end]
}

// ---------------------------------------------------------------------------
// The source.

struct Connection {
    body: Body<BufReader<Socket>>,
    parts: Multipart,
}

/// The `http://` MJPEG source.
pub struct HttpMjpegSource {
    url: HttpUrl,
    opts: SourceOptions,
    conn: Option<Connection>,
    /// `https://`: the TLS settings, made at the first successful connect.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    jpeg: Vec<u8>,
    frames: JpegFrames,
}

impl HttpMjpegSource {
    pub fn new(url: HttpUrl, opts: SourceOptions) -> Self {
        Self {
            url,
            opts,
            conn: None,
            tls: None,
            jpeg: Vec::new(),
            frames: JpegFrames::default(),
        }
    }

    /// The error for an io failure while talking to the camera.
    fn io_error(&self, what: &str, e: io::Error) -> CaptureError {
        if e.kind() == io::ErrorKind::TimedOut {
            return CaptureError::Stalled(self.opts.stall_timeout);
        }
        CaptureError::Unavailable(format!("{}: {what}: {e}", self.url))
    }

    fn connect(&self) -> Result<Connection, CaptureError> {
        let unavailable = |m: String| CaptureError::Unavailable(format!("{}: {m}", self.url));
        let addrs: Vec<_> = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(|e| unavailable(format!("cannot resolve {}: {e}", self.url.host)))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = stream.ok_or_else(|| {
            unavailable(format!(
                "cannot connect: {}",
                last.map_or("no address".to_string(), |e| e.to_string())
            ))
        })?;
        let step = if self.opts.stall_timeout.is_zero() {
            READ_STEP
        } else {
            READ_STEP.min(self.opts.stall_timeout)
        };
        stream
            .set_read_timeout(Some(step))
            .and_then(|()| stream.set_write_timeout(Some(CONNECT_TIMEOUT)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| unavailable(format!("socket: {e}")))?;
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: edgevision/{}\r\nAccept: multipart/x-mixed-replace, */*\r\nConnection: close\r\n",
            self.url.target,
            self.url.host_header(),
            env!("CARGO_PKG_VERSION")
        );
        if let Some((user, pass)) = &self.url.credentials {
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            request.push_str(&format!("Authorization: Basic {b64}\r\n"));
        }
        request.push_str("\r\n");
        let mut transport = if self.url.tls {
            let cfg = match &self.tls {
                Some(c) => c.clone(),
                None => tls_config(self.opts.ca_file.as_deref()).map_err(unavailable)?,
            };
            let name = rustls_pki_types::ServerName::try_from(self.url.host.clone())
                .map_err(|e| unavailable(format!("TLS server name {}: {e}", self.url.host)))?;
            let mut conn =
                rustls::ClientConnection::new(cfg, name).map_err(|e| unavailable(format!("TLS: {e}")))?;
            let mut sock = stream;
            tls_handshake(&mut conn, &mut sock, Instant::now() + HANDSHAKE_TIMEOUT)
                .map_err(|e| self.io_error("TLS handshake", e))?;
            Transport::Tls(Box::new(rustls::StreamOwned::new(conn, sock)))
        } else {
            Transport::Plain(stream)
        };
        transport
            .write_all(request.as_bytes())
            .and_then(|()| transport.flush())
            .map_err(|e| self.io_error("sending the request", e))?;
        let mut reader = BufReader::with_capacity(
            64 << 10,
            Socket {
                inner: transport,
                stall: self.opts.stall_timeout,
            },
        );
        let mut line = Vec::new();
        read_line(&mut reader, &mut line).map_err(|e| self.io_error("reading the response", e))?;
        let status_line = String::from_utf8_lossy(&line).to_string();
        let mut words = status_line.split_whitespace();
        let code = match (words.next(), words.next()) {
            (Some(v), Some(c)) if v.starts_with("HTTP/") => c.parse::<u16>().ok(),
            _ => None,
        }
        .ok_or_else(|| unavailable(format!("not an HTTP response: {:?}", truncate(&status_line, 60))))?;
        let headers =
            read_headers(&mut reader).map_err(|e| self.io_error("reading the response headers", e))?;
        if code != 200 {
            let reason: Vec<&str> = words.collect();
            let hint = match code {
                401 | 403 => " (check the user:pass@ or ?token= in source.uri)",
                404 => " (check the path in source.uri)",
                _ => "",
            };
            return Err(unavailable(format!("HTTP {code} {}{hint}", reason.join(" "))));
        }
        let ctype = header(&headers, "content-type").unwrap_or("");
        let boundary = multipart_boundary(ctype).ok_or_else(|| {
            unavailable(format!(
                "not a multipart MJPEG stream (Content-Type {:?})",
                truncate(ctype, 80)
            ))
        })?;
        let chunked =
            header(&headers, "transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        Ok(Connection {
            body: Body::new(reader, chunked),
            parts: Multipart::new(&boundary),
        })
    }
}

impl Source for HttpMjpegSource {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    fn open(&mut self) -> Result<(), CaptureError> {
        self.conn = None;
        if self.url.tls && self.tls.is_none() {
            let cfg = tls_config(self.opts.ca_file.as_deref())
                .map_err(|m| CaptureError::Unavailable(format!("{}: {m}", self.url)))?;
            self.tls = Some(cfg);
        }
        self.conn = Some(self.connect()?);
        Ok(())
    }

    fn read(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(CaptureError::Unavailable(format!("{} is not open", self.url)));
        };
        match conn.parts.next_part(&mut conn.body, &mut self.jpeg) {
            Ok(()) => {}
            Err(PartError::End) => {
                return Err(CaptureError::Unavailable(format!(
                    "{}: the server ended the stream",
                    self.url
                )))
            }
            Err(PartError::Garbage(m)) => {
                return Err(CaptureError::Unavailable(format!(
                    "{}: not an MJPEG stream: {m}",
                    self.url
                )))
            }
            Err(PartError::Io(e)) => return Err(self.io_error("reading", e)),
        }
        let start = Instant::now();
        self.frames.decode(&self.jpeg, frame, &self.opts)?;
        frame.decode_time = start.elapsed();
        frame.captured_at = Instant::now();
        Ok(())
    }

    fn close(&mut self) {
        self.conn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::TcpListener;

    fn parts(body: &[u8], boundary: &str) -> (Vec<Vec<u8>>, PartError) {
        let mut r = BufReader::with_capacity(7, Cursor::new(body.to_vec()));
        let mut m = Multipart::new(boundary);
        let mut out = Vec::new();
        let mut got = Vec::new();
        loop {
            match m.next_part(&mut r, &mut out) {
                Ok(()) => got.push(out.clone()),
                Err(e) => return (got, e),
            }
        }
    }

    #[test]
    fn parses_urls_and_hides_credentials() {
        let u = HttpUrl::parse("http://admin:p%40ss@cam.local:8081/video?token=abc&fps=5").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("cam.local", 8081));
        assert_eq!(u.target, "/video?token=abc&fps=5");
        assert_eq!(u.credentials, Some(("admin".into(), "p@ss".into())));
        assert_eq!(u.host_header(), "cam.local:8081");
        assert_eq!(u.to_string(), "http://***@cam.local:8081/video?token=***&fps=5");
        assert!(!format!("{u:?}").contains("p%40ss") && !format!("{u:?}").contains("abc"));
        assert_eq!(
            u.full(),
            "http://admin:p%40ss@cam.local:8081/video?token=abc&fps=5"
        );

        let u = HttpUrl::parse("http://10.0.0.2").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.credentials.clone()),
            (80, "/", None)
        );
        let u = HttpUrl::parse("http://[::1]:8080?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("::1", 8080, "/?x=1")
        );
        assert_eq!(u.host_header(), "[::1]:8080");

        for bad in [
            "http://",
            "http://:80/x",
            "http://cam:0/",
            "http://cam:99999/",
            "http://cam:http/",
            "http://[::1/",
            "http://cam/a b",
            "http://u:%zz@cam/",
            "http://ca<m/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redaction_leaves_other_strings_alone() {
        assert_eq!(redact("images:photos"), "images:photos");
        assert_eq!(redact("http://cam/x?a=1"), "http://cam/x?a=1");
        assert_eq!(redact("http://u@cam/"), "http://***@cam/");
        assert_eq!(
            redact("rtsp://u:p@cam:554/s?Token=t1&PassWord=p2&q"),
            "rtsp://***@cam:554/s?Token=***&PassWord=***&q"
        );
        // An `@` in the path is not user info.
        assert_eq!(redact("http://cam/a@b?token=z"), "http://cam/a@b?token=***");
    }

    #[test]
    fn boundary_from_content_type() {
        let b = multipart_boundary("multipart/x-mixed-replace; boundary=frame");
        assert_eq!(b.as_deref(), Some("frame"));
        let b = multipart_boundary("Multipart/X-Mixed-Replace;charset=x; Boundary=\"a b\"");
        assert_eq!(b.as_deref(), Some("a b"));
        assert_eq!(multipart_boundary("image/jpeg"), None);
        assert_eq!(multipart_boundary("multipart/x-mixed-replace"), None);
        assert_eq!(multipart_boundary("multipart/x-mixed-replace; boundary="), None);
    }

    #[test]
    fn splits_parts_with_and_without_content_length() {
        // edgevision's own layout (Content-Length, boundary right after the
        // bytes), then a part without length that holds "--" and CR LF, a
        // preamble, extra blank lines and a closing delimiter.
        let body = b"preamble\r\n--fb\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\n\r\nAB\r\nC\r\n\
--fb\r\nContent-Type: image/jpeg\r\n\r\nxx--f\r\nb\r\n--f\r\n--fb\r\n\r\n\r\n--fb\r\n\
Content-Length: 0\r\n\r\n\r\n--fb--\r\n";
        let (got, end) = parts(body, "fb");
        assert_eq!(
            got,
            vec![b"AB\r\nC".to_vec(), b"xx--f\r\nb\r\n--f".to_vec(), vec![], vec![]]
        );
        assert!(matches!(end, PartError::End), "{end:?}");
    }

    #[test]
    fn garbage_and_oversized_parts_are_errors_not_memory() {
        // No boundary at all: bounded skipping, then an error.
        let junk = vec![b'x'; 3 * MAX_SKIP_BYTES];
        let (got, e) = parts(&junk, "fb");
        assert!(got.is_empty());
        assert!(matches!(e, PartError::Garbage(_)), "{e:?}");
        // A line of junk with no newline is cut at the line limit.
        let mut long = b"--fb\r\nX-Junk: ".to_vec();
        long.extend(vec![b'y'; 2 * MAX_LINE_BYTES]);
        assert!(matches!(parts(&long, "fb").1, PartError::Garbage(_)));
        // A huge Content-Length is refused before anything is allocated.
        let big = format!("--fb\r\nContent-Length: {}\r\n\r\n", MAX_PART_BYTES + 1);
        assert!(matches!(parts(big.as_bytes(), "fb").1, PartError::Garbage(m) if m.contains("MiB")));
        let bad = b"--fb\r\nContent-Length: lots\r\n\r\n";
        assert!(matches!(parts(bad, "fb").1, PartError::Garbage(_)));
        // A part without length that never ends is cut at the part limit.
        let mut endless = b"--fb\r\n\r\n".to_vec();
        endless.extend(vec![b'z'; MAX_PART_BYTES + 100_000]);
        assert!(matches!(parts(&endless, "fb").1, PartError::Garbage(_)));
        // A stream cut inside a part is an io error (reconnect).
        let (got, e) = parts(b"--fb\r\nContent-Length: 10\r\n\r\nabc", "fb");
        assert!(got.is_empty());
        assert!(matches!(e, PartError::Io(_)), "{e:?}");
    }

    #[test]
    fn dechunks_bodies() {
        let body = b"4\r\n--fb\r\n6;ext=1\r\n\r\n\r\nAB\r\n3\r\nCD\n\r\n0\r\n\r\n";
        let mut r = Body::new(BufReader::with_capacity(3, Cursor::new(body.to_vec())), true);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"--fb\r\n\r\nABCD\n");
        let mut r = Body::new(BufReader::new(Cursor::new(b"zz\r\n".to_vec())), true);
        assert_eq!(
            r.read_to_end(&mut all).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    /// Serves `reply` to the first connection and returns the request it got.
    fn serve_once(reply: Vec<u8>) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(&reply).unwrap();
            // Keep the connection open a moment (a stall, for the reader).
            std::thread::sleep(Duration::from_millis(1500));
            String::from_utf8(req).unwrap()
        });
        (port, h)
    }

    fn opts() -> SourceOptions {
        SourceOptions {
            width: 0,
            height: 0,
            stall_timeout: Duration::from_millis(500),
            ..SourceOptions::default()
        }
    }

    #[test]
    fn reads_a_chunked_stream_with_basic_auth_and_then_stalls() {
        let jpeg = &crate::capture::mjpeg::tests::test_jpegs(1)[0];
        let mut part = b"--b\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
        part.extend_from_slice(&jpeg.0);
        part.extend_from_slice(b"\r\n--b\r\n");
        let mut reply = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for c in part.chunks(1000) {
            reply.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            reply.extend_from_slice(c);
            reply.extend_from_slice(b"\r\n");
        }
        let (port, server) = serve_once(reply);
        let url = HttpUrl::parse(&format!("http://me:secret@127.0.0.1:{port}/s.mjpg?token=t")).unwrap();
        let mut src = HttpMjpegSource::new(url, opts());
        assert_eq!(
            src.describe(),
            format!("http://***@127.0.0.1:{port}/s.mjpg?token=***")
        );
        src.open().unwrap();
        let mut frame = Frame::default();
        src.read(&mut frame).unwrap();
        assert_eq!((frame.width, frame.height), (jpeg.1, jpeg.2));
        // The server sends nothing more: stalled after stall_timeout.
        match src.read(&mut frame) {
            Err(CaptureError::Stalled(_)) => {}
            other => panic!("expected Stalled, got {other:?}"),
        }
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /s.mjpg?token=t HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("Host: 127.0.0.1:{port}\r\n")), "{req}");
        // base64("me:secret")
        assert!(req.contains("Authorization: Basic bWU6c2VjcmV0\r\n"), "{req}");
    }

    #[test]
    fn refused_denied_and_wrong_content_are_unavailable() {
        // Nothing listens on a port just freed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let e = HttpMjpegSource::new(url, opts()).open().unwrap_err();
        assert!(
            matches!(&e, CaptureError::Unavailable(m) if m.contains("cannot connect")),
            "{e}"
        );

        for (reply, want) in [
            (
                &b"HTTP/1.1 401 Unauthorized\r\n\r\n"[..],
                "HTTP 401 Unauthorized (check the user:pass@",
            ),
            (b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n", "HTTP 404"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n",
                "not a multipart MJPEG stream",
            ),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP response"),
        ] {
            let (port, server) = serve_once(reply.to_vec());
            let url = HttpUrl::parse(&format!("http://u:pw@127.0.0.1:{port}/?token=tk")).unwrap();
            let e = HttpMjpegSource::new(url, opts()).open().unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(e, CaptureError::Unavailable(_)) && msg.contains(want),
                "{msg}"
            );
            assert!(!msg.contains("pw") && !msg.contains("tk"), "{msg}");
            server.join().unwrap();
        }
    }

    #[test]
    fn a_part_that_is_not_a_jpeg_is_corrupt_and_reading_goes_on() {
        let jpeg = &crate::capture::mjpeg::tests::test_jpegs(1)[0];
        let mut reply =
            b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=\"x\"\r\n\r\n--x\r\nContent-Length: 4\r\n\r\nnope\r\n--x\r\n"
                .to_vec();
        reply.extend_from_slice(format!("Content-Length: {}\r\n\r\n", jpeg.0.len()).as_bytes());
        reply.extend_from_slice(&jpeg.0);
        reply.extend_from_slice(b"\r\n--x--\r\n");
        let (port, server) = serve_once(reply);
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let mut src = HttpMjpegSource::new(url, opts());
        src.open().unwrap();
        let mut frame = Frame::default();
        assert!(matches!(src.read(&mut frame), Err(CaptureError::Corrupt(_))));
        src.read(&mut frame).unwrap();
        assert_eq!(frame.width, jpeg.1);
        let e = src.read(&mut frame).unwrap_err();
        assert!(e.to_string().contains("ended the stream"), "{e}");
        server.join().unwrap();
    }
}
