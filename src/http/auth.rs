//! Basic (argon2 PHC hashes) and bearer-token authentication.
//!
//! Argon2 is deliberately slow (tens to hundreds of milliseconds on a Pi)
//! and memory-hard (19 MiB per check with the usual parameters), and
//! browsers send the same `Authorization` header with every request, so a
//! verified header is remembered for five minutes. The cache keeps no
//! plaintext: its key is a fast Argon2id digest of the header value, salted
//! with a random per-process salt.
//!
//! Full verifications run on the blocking pool, at most
//! [`CONCURRENT_VERIFICATIONS`] at a time, each in one of as many memory
//! blocks that live as long as the server: a flood of wrong passwords costs
//! a fixed amount of memory (freshly allocated blocks, one per check, were
//! kept by glibc's per-thread arenas and grew the process without bound).
//! Hash parameters are bounded ([`check_argon2_cost`]) so one check cannot
//! take the machine, and a client address that keeps failing waits (429,
//! see [`super::limiter`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::conn::ConnInfo;
use super::limiter::{Failure, FailureLimiter};
use super::Auth;

const BASIC_CHALLENGE: &str = "Basic realm=\"edgevision\", charset=\"UTF-8\"";
const BEARER_CHALLENGE: &str = "Bearer realm=\"edgevision\"";
const CACHE_TTL: Duration = Duration::from_secs(300);
const CACHE_MAX: usize = 64;
/// Password checks at once; each holds one memory block.
const CONCURRENT_VERIFICATIONS: usize = 2;
/// Logins that may wait for a check slot; more get 503 at once, so a flood
/// of wrong passwords cannot tie up every connection waiting.
const MAX_WAITING: usize = 32;

/// Shortest accepted bearer token: guessing 16 random characters is out of
/// reach even without the failure limiter.
pub const MIN_TOKEN_LEN: usize = 16;
/// Most argon2 memory (`m`, KiB) a password hash may ask for: 64 MiB.
pub const MAX_ARGON2_M_KIB: u32 = 64 * 1024;
/// Most argon2 work (`m` × `t`, KiB passes): four passes over 64 MiB, about
/// a second on a Raspberry Pi 4 (0.2 s on a desktop).
pub const MAX_ARGON2_WORK: u64 = 4 * 64 * 1024;

/// Refuses argon2 parameters that would make one login attempt cost more
/// than the daemon can spend (memory `m` or work `m` × `t`); the message
/// names the bound.
pub fn check_argon2_cost(params: &Params) -> Result<(), String> {
    let (m, t) = (params.m_cost(), params.t_cost());
    if m > MAX_ARGON2_M_KIB {
        return Err(format!(
            "argon2 memory m={m} KiB is above the limit of m={MAX_ARGON2_M_KIB} KiB (64 MiB) per check; \
             make a hash with less memory (e.g. m=19456,t=2,p=1)"
        ));
    }
    let work = u64::from(m) * u64::from(t);
    if work > MAX_ARGON2_WORK {
        return Err(format!(
            "argon2 work m*t = {m}*{t} = {work} is above the limit of {MAX_ARGON2_WORK} (about 1 s per check); \
             make a hash with fewer passes or less memory (e.g. m=19456,t=2,p=1)"
        ));
    }
    Ok(())
}

pub(crate) fn validate(auth: &Auth) -> Result<(), String> {
    match auth {
        Auth::None => Ok(()),
        Auth::Basic(users) if users.is_empty() => Err("basic auth with no users".into()),
        Auth::Basic(users) => users.iter().try_for_each(|(user, phc)| {
            if user.is_empty() || user.contains(':') {
                return Err(format!("user name {user:?}: must be non-empty and without ':'"));
            }
            Verifier::new(phc)
                .map(|_| ())
                .map_err(|e| format!("password hash of user {user:?}: {e}"))
        }),
        Auth::Bearer(token) if token.len() < MIN_TOKEN_LEN => Err(format!(
            "bearer token of {} characters; at least {MIN_TOKEN_LEN} are needed",
            token.len()
        )),
        Auth::Bearer(_) => Ok(()),
    }
}

/// One PHC hash, parsed once: the hasher with its parameters, the salt and
/// the expected output.
struct Verifier {
    hasher: Argon2<'static>,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl Verifier {
    fn new(phc: &str) -> Result<Verifier, String> {
        let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
        let algorithm = Algorithm::try_from(hash.algorithm).map_err(|e| format!("{e}"))?;
        let version = match hash.version {
            Some(v) => Version::try_from(v).map_err(|e| format!("{e}"))?,
            None => Version::default(),
        };
        let params = Params::try_from(&hash).map_err(|e| format!("{e}"))?;
        check_argon2_cost(&params)?;
        let mut buf = [0u8; 64];
        let salt = hash
            .salt
            .ok_or("no salt")?
            .decode_b64(&mut buf)
            .map_err(|e| format!("salt: {e}"))?
            .to_vec();
        let expected = hash.hash.ok_or("no hash part")?.as_bytes().to_vec();
        Ok(Verifier {
            hasher: Argon2::new(algorithm, version, params),
            salt,
            expected,
        })
    }

    fn blocks(&self) -> usize {
        self.hasher.params().block_count()
    }

    /// Hashes `password` in `memory` (at least [`Verifier::blocks`] long).
    fn matches(&self, password: &[u8], memory: &mut [Block]) -> bool {
        let mut out = vec![0u8; self.expected.len()];
        self.hasher
            .hash_password_into_with_memory(password, &self.salt, &mut out, memory)
            .is_ok()
            && constant_time_eq(&out, &self.expected)
    }
}

pub(crate) struct Authenticator {
    mode: Mode,
    failures: FailureLimiter,
}

enum Mode {
    Open,
    Basic(Arc<BasicUsers>),
    Bearer(Vec<u8>),
}

struct BasicUsers {
    /// (user, verifier); a hash that does not parse or costs too much never
    /// verifies (the config check refuses it before).
    users: Vec<(String, Option<Verifier>)>,
    /// Memory blocks every verifier fits in.
    blocks: usize,
    /// Digest of a verified header value -> when it stops counting.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    salt: [u8; 16],
    digest: Argon2<'static>,
    /// Held by a check until its blocking task ends, even if the client
    /// has gone: abandoned checks still count.
    verifications: Arc<Semaphore>,
    /// Logins waiting for a slot.
    waiting: AtomicUsize,
    /// Argon2 working memory, one per verification slot, kept for reuse.
    memory: Mutex<Vec<Vec<Block>>>,
}

impl Authenticator {
    pub(crate) fn new(auth: &Auth) -> Self {
        let mode = match auth {
            Auth::None => Mode::Open,
            Auth::Basic(users) => {
                let mut salt = [0u8; 16];
                OsRng.fill_bytes(&mut salt);
                let params = Params::new(Params::MIN_M_COST, 1, 1, Some(32)).expect("valid argon2 params");
                let users: Vec<(String, Option<Verifier>)> = users
                    .iter()
                    .map(|(name, phc)| (name.clone(), Verifier::new(phc).ok()))
                    .collect();
                let blocks = users
                    .iter()
                    .filter_map(|(_, v)| v.as_ref().map(Verifier::blocks))
                    .max()
                    .unwrap_or(0);
                Mode::Basic(Arc::new(BasicUsers {
                    users,
                    blocks,
                    verified: Mutex::new(HashMap::new()),
                    salt,
                    digest: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
                    verifications: Arc::new(Semaphore::new(CONCURRENT_VERIFICATIONS)),
                    waiting: AtomicUsize::new(0),
                    memory: Mutex::new(Vec::new()),
                }))
            }
            // Too short a token (refused by the config check) opens nothing.
            Auth::Bearer(token) if token.len() < MIN_TOKEN_LEN => Mode::Bearer(Vec::new()),
            Auth::Bearer(token) => Mode::Bearer(token.as_bytes().to_vec()),
        };
        Authenticator {
            mode,
            failures: FailureLimiter::default(),
        }
    }
}

/// The client's address; unknown (0.0.0.0) when the router runs outside
/// [`super::serve`].
fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<ConnInfo>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.addr.ip())
}

pub(crate) async fn require(State(auth): State<Arc<Authenticator>>, req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    let verdict = match &auth.mode {
        Mode::Open => return next.run(req).await,
        Mode::Basic(users) => match req.headers().get(header::AUTHORIZATION) {
            // A header verified lately passes without a check, even from an
            // address that others' failures have blocked.
            Some(value) if users.cached(value) => Some((true, String::new())),
            Some(value) => match auth.failures.check(ip, Instant::now()) {
                Err(wait) => return too_many(wait),
                Ok(()) => {
                    // Counted before the check, so checks that are waiting
                    // or abandoned count too; a success clears it.
                    let failure = auth.failures.failed(ip, Instant::now());
                    match users.check(value).await {
                        Checked::Busy => return busy(),
                        Checked::Valid => Some((true, String::new())),
                        Checked::Invalid(user) => {
                            log_failure(failure, ip, &user);
                            Some((false, user))
                        }
                    }
                }
            },
            None => None,
        },
        Mode::Bearer(token) => match bearer_given(&req) {
            Some(given) => match auth.failures.check(ip, Instant::now()) {
                Err(wait) => return too_many(wait),
                Ok(()) => {
                    let ok = !token.is_empty() && constant_time_eq(given.as_bytes(), token);
                    if !ok {
                        log_failure(auth.failures.failed(ip, Instant::now()), ip, "");
                    }
                    Some((ok, String::new()))
                }
            },
            None => None,
        },
    };
    if let Some((true, _)) = verdict {
        auth.failures.succeeded(ip);
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

/// Too many logins already wait for a check.
fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1"), (header::CACHE_CONTROL, "no-store")],
        "too many logins being checked; retry in 1 s\n",
    )
        .into_response()
}

/// Logs a counted failure: the first of a series and each block, not
/// every attempt (a flood would otherwise flood the journal too).
fn log_failure(failure: Failure, ip: IpAddr, user: &str) {
    let who = if user.is_empty() {
        String::new()
    } else {
        format!(" (user {user:?})")
    };
    match failure {
        Failure::First => tracing::warn!("http: failed login from {ip}{who}"),
        Failure::Counted => {}
        Failure::Blocked { failures, wait } => tracing::warn!(
            "http: {failures} failed logins from {ip}{who}; its login attempts get 429 for {} s",
            wait.as_secs()
        ),
    }
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::RETRY_AFTER, secs.to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        format!("too many failed logins from this address; retry in {secs} s\n"),
    )
        .into_response()
}

/// One login waiting for a check slot; leaves the count when dropped,
/// also when the client hangs up while waiting.
struct Waiter<'a>(&'a AtomicUsize);

impl<'a> Waiter<'a> {
    fn join(waiting: &'a AtomicUsize) -> Option<Self> {
        if waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Waiter(waiting))
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a full password check found.
enum Checked {
    Valid,
    /// Wrong password, unknown user or a malformed header (the user name
    /// given, if any).
    Invalid(String),
    /// Not checked: too many logins wait already.
    Busy,
}

impl BasicUsers {
    /// Whether `value` was verified within [`CACHE_TTL`].
    fn cached(&self, value: &HeaderValue) -> bool {
        let key = self.digest_of(value.as_bytes());
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Checks the credentials in `value` on the bounded pool.
    async fn check(self: &Arc<Self>, value: &HeaderValue) -> Checked {
        let Some((user, password)) = decode_basic(value.as_bytes()) else {
            return Checked::Invalid(String::new());
        };
        let Some(waiter) = Waiter::join(&self.waiting) else {
            return Checked::Busy;
        };
        let slot = self.verifications.clone().acquire_owned().await;
        drop(waiter);
        let Ok(slot) = slot else {
            return Checked::Invalid(user);
        };
        let users = self.clone();
        let name = user.clone();
        // The slot moves into the task: a client that hangs up does not
        // free it while its check still runs.
        let ok = tokio::task::spawn_blocking(move || {
            let ok = users.verify(&name, &password);
            drop(slot);
            ok
        })
        .await
        .unwrap_or(false);
        if !ok {
            return Checked::Invalid(user);
        }
        let key = self.digest_of(value.as_bytes());
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        verified.retain(|_, until| *until > now);
        if verified.len() >= CACHE_MAX {
            verified.clear();
        }
        verified.insert(key, now + CACHE_TTL);
        Checked::Valid
    }

    fn digest_of(&self, value: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.digest
            .hash_password_into(value, &self.salt, &mut out)
            .expect("argon2 digest with fixed valid parameters");
        out
    }

    /// Checks one (user, password) in a pooled memory block; an unknown user
    /// still costs one verification so timing does not tell which users
    /// exist.
    fn verify(&self, user: &str, password: &str) -> bool {
        let entry = self.users.iter().find(|(u, _)| u == user);
        let Some((_, Some(verifier))) = entry.or(self.users.first()) else {
            return false;
        };
        // The semaphore admits at most as many checks as there are blocks,
        // so a block is free unless one was lost to a panic: then make one.
        let mut memory = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        if memory.len() < self.blocks {
            memory.resize(self.blocks, Block::default());
        }
        let ok = verifier.matches(password.as_bytes(), &mut memory);
        let mut pool = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < CONCURRENT_VERIFICATIONS {
            pool.push(memory);
        }
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

/// The token from `Authorization: Bearer <token>`, or from `?token=<token>`
/// for `<img>` and `EventSource`, which cannot set headers; `None` when the
/// request carries none.
fn bearer_given(req: &Request) -> Option<String> {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, given)| given.trim().to_owned());
    from_header.or_else(|| {
        Query::<TokenQuery>::try_from_uri(req.uri())
            .ok()
            .and_then(|q| q.0.token)
    })
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

    /// A PHC hash of `password` with cheap parameters.
    fn phc(password: &str, params: Params) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn verifier_matches_only_the_password_in_reused_memory() {
        let hash = phc("right", Params::new(64, 2, 1, None).unwrap());
        let v = Verifier::new(&hash).unwrap();
        let mut memory = vec![Block::default(); v.blocks()];
        assert!(v.matches(b"right", &mut memory));
        assert!(!v.matches(b"wrong", &mut memory));
        assert!(v.matches(b"right", &mut memory), "the memory is reusable");
        // Also in a larger block than needed (the pool sizes for all users).
        let mut larger = vec![Block::default(); v.blocks() * 4];
        assert!(v.matches(b"right", &mut larger));
        // An argon2i hash verifies too.
        let i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(32, 1, 1, None).unwrap(),
        );
        let salt = argon2::password_hash::SaltString::encode_b64(b"saltsaltsalt").unwrap();
        let hash = argon2::password_hash::PasswordHasher::hash_password(&i, b"pw", &salt)
            .unwrap()
            .to_string();
        let v = Verifier::new(&hash).unwrap();
        assert!(v.matches(b"pw", &mut memory));
        assert!(!v.matches(b"pW", &mut memory));
    }

    #[test]
    fn argon2_cost_bounds() {
        let p = |m, t| Params::new(m, t, 1, None).unwrap();
        assert!(check_argon2_cost(&p(19456, 2)).is_ok());
        assert!(check_argon2_cost(&p(MAX_ARGON2_M_KIB, 4)).is_ok());
        let e = check_argon2_cost(&p(MAX_ARGON2_M_KIB + 1, 1)).unwrap_err();
        assert!(e.contains("m=65537 KiB") && e.contains("limit of m=65536"), "{e}");
        let e = check_argon2_cost(&p(8, u32::MAX)).unwrap_err();
        assert!(e.contains("work m*t") && e.contains("limit of 262144"), "{e}");
        let hash = phc("x", p(MAX_ARGON2_M_KIB + 8, 1));
        assert!(Verifier::new(&hash).is_err(), "too costly a hash never verifies");
    }

    #[test]
    fn short_tokens_are_invalid() {
        assert!(validate(&Auth::Bearer("x".into())).is_err());
        assert!(validate(&Auth::Bearer("0123456789abcde".into())).is_err());
        assert!(validate(&Auth::Bearer("0123456789abcdef".into())).is_ok());
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
