//! `[http]` and `[http.auth]`: where the server listens and who may use it.

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

/// `[http]`: the HTTP server (stream, API, metrics).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// IP address and port to listen on. `0.0.0.0:8080` exposes the server
    /// to the whole network: set `[http.auth]` then. Default
    /// `127.0.0.1:8080` (this machine only).
    pub listen: String,
    /// Seconds a client has to send a complete request head, counted from
    /// the connection (or from the request's first byte on a kept-alive
    /// one). Slow or silent clients are closed then. Default 10.
    pub header_timeout: f32,
    /// Seconds a kept-alive connection may sit between requests before it is
    /// closed (streams are never idle). Default 60.
    pub idle_timeout: f32,
    /// Open connections at most. At the cap a new connection closes the
    /// oldest idle one, or is refused with 503 when none is idle. Also held
    /// below the open-file limit. Default 512.
    pub max_connections: usize,
    /// Host names (besides localhost and IP addresses) accepted in the
    /// `Host` header when `[http.auth]` is off. The check runs for loopback
    /// `listen` addresses, or for any once names are listed here; it keeps
    /// DNS-rebinding web pages out. Default none.
    pub allowed_hosts: Vec<String>,
    /// `[http.auth]`: who may connect.
    pub auth: AuthConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            header_timeout: 10.0,
            idle_timeout: 60.0,
            max_connections: 512,
            allowed_hosts: Vec::new(),
            auth: AuthConfig::default(),
        }
    }
}

/// `http.header_timeout` bounds, seconds.
pub const HEADER_TIMEOUT_RANGE: (f32, f32) = (1.0, 300.0);
/// `http.idle_timeout` bounds, seconds.
pub const IDLE_TIMEOUT_RANGE: (f32, f32) = (1.0, 3600.0);
/// `http.max_connections` bounds.
pub const MAX_CONNECTIONS_RANGE: (usize, usize) = (8, 65536);

impl HttpConfig {
    /// `listen`, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|_| {
            format!(
                "`{}` is not an IP address and port (e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::]:8080)",
                self.listen
            )
        })
    }
}

/// How clients authenticate (`[http.auth] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who can reach the port.
    #[default]
    None,
    /// HTTP basic auth against `users`.
    Basic,
    /// `Authorization: Bearer TOKEN` with `token`.
    Bearer,
}

impl AuthMode {
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Basic => "basic",
            AuthMode::Bearer => "bearer",
        }
    }
}

/// `[http.auth]`. `Debug` does not show the token.
#[derive(Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `none`, `basic` (needs `users`) or `bearer` (needs `token`).
    /// Default `none`.
    pub mode: AuthMode,
    /// `basic`: the accounts, `{ name = "...", password_hash = "$argon2id$..." }`.
    /// Default none.
    pub users: Vec<UserConfig>,
    /// `bearer`: the token clients send. Default empty.
    pub token: String,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("mode", &self.mode)
            .field("users", &self.users)
            .field("token", &if self.token.is_empty() { "" } else { "<hidden>" })
            .finish()
    }
}

/// One basic-auth account.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserConfig {
    /// User name (no `:`).
    pub name: String,
    /// Argon2 hash of the password in PHC format (`$argon2id$v=19$...`).
    pub password_hash: String,
}

impl HttpConfig {
    /// Value checks; the key is relative to the top level.
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: &str, msg: String| Err((key.to_string(), msg));
        if let Err(e) = self.listen_addr() {
            return err("http.listen", e);
        }
        for (key, v, (lo, hi)) in [
            ("http.header_timeout", self.header_timeout, HEADER_TIMEOUT_RANGE),
            ("http.idle_timeout", self.idle_timeout, IDLE_TIMEOUT_RANGE),
        ] {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return err(key, format!("must be between {lo} and {hi} seconds, not {v}"));
            }
        }
        let (lo, hi) = MAX_CONNECTIONS_RANGE;
        if !(lo..=hi).contains(&self.max_connections) {
            return err(
                "http.max_connections",
                format!("must be between {lo} and {hi}, not {}", self.max_connections),
            );
        }
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            if let Err(e) = crate::http::check_host_name(host) {
                return Err((format!("http.allowed_hosts[{i}]"), e));
            }
        }
        let auth = &self.auth;
        match auth.mode {
            AuthMode::None => {}
            AuthMode::Basic if auth.users.is_empty() => {
                return err(
                    "http.auth.mode",
                    "\"basic\" needs at least one entry in http.auth.users".into(),
                );
            }
            AuthMode::Basic => {}
            AuthMode::Bearer => {
                if auth.token.is_empty() {
                    return err(
                        "http.auth.token",
                        "must be set when http.auth.mode = \"bearer\"".into(),
                    );
                }
                if !auth.token.bytes().all(|b| b.is_ascii_graphic()) {
                    return err(
                        "http.auth.token",
                        "must be printable ASCII without spaces (it is sent in an HTTP header)".into(),
                    );
                }
                if auth.token.len() < crate::http::MIN_TOKEN_LEN {
                    return err(
                        "http.auth.token",
                        format!(
                            "is {} characters; at least {} are needed (make one with: openssl rand -hex 32)",
                            auth.token.len(),
                            crate::http::MIN_TOKEN_LEN
                        ),
                    );
                }
            }
        }
        for (i, user) in auth.users.iter().enumerate() {
            let key = |field: &str| format!("http.auth.users[{i}].{field}");
            if user.name.is_empty() {
                return Err((key("name"), "must not be empty".into()));
            }
            if user.name.contains(':') || user.name.chars().any(char::is_control) {
                return Err((
                    key("name"),
                    format!("`{}`: may not contain `:` or control characters", user.name),
                ));
            }
            if auth.users[..i].iter().any(|u| u.name == user.name) {
                return Err((key("name"), format!("`{}` is listed twice", user.name)));
            }
            if user.password_hash.is_empty() {
                return Err((
                    key("password_hash"),
                    "must be set (an argon2 hash in PHC format)".into(),
                ));
            }
            match argon2::PasswordHash::new(&user.password_hash) {
                Err(e) => {
                    return Err((
                        key("password_hash"),
                        format!(
                        "not a PHC-format hash ({e}); expected `$argon2id$v=19$m=...,t=...,p=...$SALT$HASH`"
                    ),
                    ))
                }
                Ok(h) if argon2::Algorithm::try_from(h.algorithm).is_err() => {
                    return Err((
                        key("password_hash"),
                        format!(
                            "is a `{}` hash; only argon2 (argon2id, argon2i, argon2d) is supported",
                            h.algorithm
                        ),
                    ))
                }
                Ok(h) if h.hash.is_none() => {
                    return Err((key("password_hash"), "has no hash part".into()));
                }
                Ok(h) => match argon2::Params::try_from(&h) {
                    Err(e) => return Err((key("password_hash"), format!("bad argon2 parameters: {e}"))),
                    Ok(params) => {
                        if let Err(e) = crate::http::check_argon2_cost(&params) {
                            return Err((key("password_hash"), e));
                        }
                    }
                },
            }
        }
        Ok(())
    }
}
