//! Basic (argon2 PHC hashes) and bearer-token authentication.
//!
//! Argon2 is deliberately slow (tens to hundreds of milliseconds on a Pi),
//! and browsers send the same `Authorization` header with every request, so
//! a verified header is remembered for five minutes. The cache keeps no
//! plaintext: its key is a fast Argon2id digest of the header value, salted
//! with a random per-process salt. Full verifications run on the blocking
//! pool, two at a time, so a flood of wrong passwords cannot starve the
//! runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::Auth;

const BASIC_CHALLENGE: &str = "Basic realm=\"edgevision\", charset=\"UTF-8\"";
const BEARER_CHALLENGE: &str = "Bearer realm=\"edgevision\"";
const CACHE_TTL: Duration = Duration::from_secs(300);
const CACHE_MAX: usize = 64;
const CONCURRENT_VERIFICATIONS: usize = 2;

pub(crate) fn validate(auth: &Auth) -> Result<(), String> {
    match auth {
        Auth::None => Ok(()),
        Auth::Basic(users) if users.is_empty() => Err("basic auth with no users".into()),
        Auth::Basic(users) => users.iter().try_for_each(|(user, phc)| {
            if user.is_empty() || user.contains(':') {
                return Err(format!("user name {user:?}: must be non-empty and without ':'"));
            }
            PasswordHash::new(phc)
                .map(|_| ())
                .map_err(|e| format!("password hash of user {user:?}: {e}"))
        }),
        Auth::Bearer(token) if token.is_empty() => Err("empty bearer token".into()),
        Auth::Bearer(_) => Ok(()),
    }
}

pub(crate) struct Authenticator {
    mode: Mode,
}

enum Mode {
    Open,
    Basic(Arc<BasicUsers>),
    Bearer(Vec<u8>),
}

struct BasicUsers {
    /// (user, PHC string); an unparsable hash never verifies.
    users: Vec<(String, String)>,
    /// Digest of a verified header value -> when it stops counting.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    salt: [u8; 16],
    digest: Argon2<'static>,
    verifications: Semaphore,
}

impl Authenticator {
    pub(crate) fn new(auth: &Auth) -> Self {
        let mode = match auth {
            Auth::None => Mode::Open,
            Auth::Basic(users) => {
                let mut salt = [0u8; 16];
                OsRng.fill_bytes(&mut salt);
                let params = Params::new(Params::MIN_M_COST, 1, 1, Some(32)).expect("valid argon2 params");
                Mode::Basic(Arc::new(BasicUsers {
                    users: users.clone(),
                    verified: Mutex::new(HashMap::new()),
                    salt,
                    digest: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
                    verifications: Semaphore::new(CONCURRENT_VERIFICATIONS),
                }))
            }
            Auth::Bearer(token) => Mode::Bearer(token.as_bytes().to_vec()),
        };
        Authenticator { mode }
    }
}

pub(crate) async fn require(State(auth): State<Arc<Authenticator>>, req: Request, next: Next) -> Response {
    let allowed = match &auth.mode {
        Mode::Open => true,
        Mode::Basic(users) => match req.headers().get(header::AUTHORIZATION) {
            Some(value) => users.check(value).await,
            None => false,
        },
        Mode::Bearer(token) => bearer_ok(&req, token),
    };
    if allowed {
        return next.run(req).await;
    }
    let challenge = match auth.mode {
        Mode::Bearer(_) => BEARER_CHALLENGE,
        _ => BASIC_CHALLENGE,
    };
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, challenge),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "unauthorized\n",
    )
        .into_response()
}

impl BasicUsers {
    async fn check(self: &Arc<Self>, value: &HeaderValue) -> bool {
        let key = self.digest_of(value.as_bytes());
        let now = Instant::now();
        if self
            .verified
            .lock()
            .unwrap()
            .get(&key)
            .is_some_and(|until| *until > now)
        {
            return true;
        }
        let Some(credentials) = decode_basic(value.as_bytes()) else {
            return false;
        };
        let Ok(_slot) = self.verifications.acquire().await else {
            return false;
        };
        let users = self.clone();
        let ok = tokio::task::spawn_blocking(move || users.verify(credentials))
            .await
            .unwrap_or(false);
        if ok {
            let mut verified = self.verified.lock().unwrap();
            let now = Instant::now();
            verified.retain(|_, until| *until > now);
            if verified.len() >= CACHE_MAX {
                verified.clear();
            }
            verified.insert(key, now + CACHE_TTL);
        }
        ok
    }

    fn digest_of(&self, value: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.digest
            .hash_password_into(value, &self.salt, &mut out)
            .expect("argon2 digest with fixed valid parameters");
        out
    }

    /// Checks one (user, password); an unknown user still costs one
    /// verification so timing does not tell which users exist.
    fn verify(&self, (user, password): (String, String)) -> bool {
        let entry = self.users.iter().find(|(u, _)| *u == user);
        let Some((_, phc)) = entry.or(self.users.first()) else {
            return false;
        };
        let Ok(hash) = PasswordHash::new(phc) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        ok && entry.is_some()
    }
}

/// `Basic <base64(user:password)>` (scheme case-insensitive).
fn decode_basic(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// `Authorization: Bearer <token>`, or `?token=<token>` for `<img>` and
/// `EventSource`, which cannot set headers.
fn bearer_ok(req: &Request, token: &[u8]) -> bool {
    if token.is_empty() {
        return false;
    }
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .is_some_and(|(_, given)| constant_time_eq(given.trim().as_bytes(), token));
    if from_header {
        return true;
    }
    Query::<TokenQuery>::try_from_uri(req.uri())
        .ok()
        .and_then(|q| q.0.token)
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token))
}

/// Compares without an early exit; only the length can leak.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_decodes() {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ann:pa:ss")
        );
        assert_eq!(
            decode_basic(value.as_bytes()),
            Some(("ann".to_owned(), "pa:ss".to_owned()))
        );
        assert_eq!(decode_basic(b"Bearer abc"), None);
        assert_eq!(decode_basic(b"Basic !!!"), None);
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
