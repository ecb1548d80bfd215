//! The `Host` header check against DNS rebinding: a web page on
//! `evil.example` whose name is made to resolve to 127.0.0.1 can make the
//! visitor's browser talk to a daemon without auth, but the browser still
//! sends `Host: evil.example`. So when auth is off, only `localhost`, IP
//! addresses (a rebinding page never has one as its name) and the names in
//! `http.allowed_hosts` are served.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The names accepted besides `localhost` and IP addresses (lower case).
pub(crate) struct HostCheck {
    names: Vec<String>,
}

impl HostCheck {
    pub(crate) fn new(names: &[String]) -> Self {
        HostCheck {
            names: names.iter().map(|n| normalize(n).to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request with this `Host` value is served.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let Some(name) = host_part(host) else {
            return false;
        };
        let name = name.as_str();
        name == "localhost"
            || name.ends_with(".localhost")
            || is_ip_literal(name)
            || self.names.iter().any(|n| n == name)
    }
}

/// `http.allowed_hosts` entries: a DNS name or an IP address, no port.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !name.starts_with(['.', '-']);
    if ok || is_ip_literal(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a host name (letters, digits, `-` and `.`, without scheme or port, e.g. camera.lan)"
        ))
    }
}

/// The name of a `Host` value, lower case, without port and final dot;
/// `None` when it is not a plausible host.
fn host_part(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return Some(format!("[{}]", v6.to_ascii_lowercase()));
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let name = normalize(name);
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

fn normalize(name: &str) -> &str {
    name.trim().trim_end_matches('.')
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// `127.0.0.1`, `192.168.1.5`, `[::1]`, `::1`.
fn is_ip_literal(name: &str) -> bool {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse::<IpAddr>().is_ok()
}

/// Middleware: 421 for a `Host` not served. A request without `Host` (only
/// HTTP/1.0 clients, never a browser) passes.
pub(crate) async fn check(State(check): State<Arc<HostCheck>>, req: Request, next: Next) -> Response {
    if let Some(value) = req.headers().get(header::HOST) {
        let host = String::from_utf8_lossy(value.as_bytes());
        if !check.allows(&host) {
            let shown: String = host.chars().take(100).collect();
            return (
                StatusCode::MISDIRECTED_REQUEST,
                [(header::CACHE_CONTROL, "no-store")],
                format!(
                    "Host `{shown}` is not served here: without [http.auth] only localhost, IP addresses \
                     and the names in http.allowed_hosts are (this keeps DNS-rebinding pages out)\n"
                ),
            )
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_ip_addresses_pass() {
        let c = HostCheck::new(&[]);
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "127.0.0.1",
            "127.0.0.1:38211",
            "[::1]",
            "[::1]:8080",
            "192.168.1.5:80",
            "app.localhost:3000",
        ] {
            assert!(c.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
            "localhost:http",
            "[::1]x",
            "camera.lan",
        ] {
            assert!(!c.allows(bad), "{bad}");
        }
    }

    #[test]
    fn configured_names_pass_case_insensitively() {
        let c = HostCheck::new(&["Camera.LAN".to_owned()]);
        assert!(c.allows("camera.lan"));
        assert!(c.allows("CAMERA.lan:8080"));
        assert!(!c.allows("other.lan"));
    }

    #[test]
    fn config_names_are_checked() {
        assert!(check_host_name("camera.lan").is_ok());
        assert!(check_host_name("10.0.0.2").is_ok());
        assert!(check_host_name("::1").is_ok());
        for bad in ["", "http://camera.lan", "camera.lan:8080", "two words", ".lan"] {
            let e = check_host_name(bad).unwrap_err();
            assert!(e.contains("not a host name"), "{bad}: {e}");
        }
    }
}
