//! Authentication of the HTTP server (`[http] users`, `tokens`): every
//! route but `/health/*` (unless `auth_health`) asks for HTTP Basic with a
//! user whose argon2id hash is configured, or a bearer token whose SHA-256
//! is.
//!
//! - Hashes and tokens are compared in constant time (`subtle`); an unknown
//!   user is verified against a dummy hash so it takes as long as a known one.
//! - argon2 runs on blocking threads, at most [`MAX_VERIFYING`] at a time, so
//!   a flood of guesses cannot take the async runtime or every core.
//! - A successful Basic header is remembered for [`CACHE_TTL`] (at most
//!   [`CACHE_MAX`] entries) under the SHA-256 of the header, never the
//!   password, so a page's many requests cost one verification.
//! - A wrong credential is answered 401 after [`FAIL_DELAY`]; an address
//!   with [`MAX_FAILURES`] failures within [`FAIL_WINDOW`] gets 429 until the
//!   window ends (at most [`FAIL_ADDRS`] addresses are tracked).

use crate::config::HttpSection;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// argon2 verifications running at once.
pub const MAX_VERIFYING: usize = 2;
/// How long a verified Basic header is trusted without verifying again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most verified headers remembered.
pub const CACHE_MAX: usize = 1024;
/// Delay before a 401 for a wrong credential.
pub const FAIL_DELAY: Duration = Duration::from_millis(500);
/// Failures from one address within [`FAIL_WINDOW`] after which it gets 429.
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted over.
pub const FAIL_WINDOW: Duration = Duration::from_secs(60);
/// Most addresses whose failures are counted.
pub const FAIL_ADDRS: usize = 4096;

/// A valid argon2id hash no password is known for: unknown users are
/// verified against it, so their answer takes as long as a known user's.
const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$bG9nY29sbGVjdGR1bW15$0Lk8kH5XkGt6l6m1W7o6gY8rYQ2l2g9kQ8lKq5y1h1Q";

/// The server's authentication; [`Auth::check`] per request.
pub struct Auth {
    /// User name to PHC string.
    users: HashMap<String, String>,
    /// SHA-256 of the accepted bearer tokens.
    tokens: Vec<[u8; 32]>,
    /// `/health/*` asks for credentials too.
    auth_health: bool,
    verifying: Arc<Semaphore>,
    /// SHA-256 of a verified `Authorization` header → when it was verified.
    cache: Mutex<HashMap<[u8; 32], Instant>>,
    /// Address → (start of its window, failures in it).
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Auth {
    /// `None` when `[http]` configures no credential (every request passes).
    pub fn new(cfg: &HttpSection) -> Option<Auth> {
        cfg.has_auth().then(|| Auth {
            users: cfg.users.iter().cloned().collect(),
            tokens: cfg.tokens.clone(),
            auth_health: cfg.auth_health,
            verifying: Arc::new(Semaphore::new(MAX_VERIFYING)),
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// `Ok` when the request may go on, else the answer to send.
    pub async fn check(&self, peer: IpAddr, path: &str, headers: &HeaderMap) -> Result<(), Response> {
        if path.starts_with("/health/") && !self.auth_health {
            return Ok(());
        }
        if self.locked_out(peer) {
            return Err((StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "60")], "too many failed logins\n")
                .into_response());
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            // Not a failed attempt: a browser asks first without credentials.
            return Err(unauthorized());
        };
        if self.verify(value).await {
            return Ok(());
        }
        self.failed(peer);
        tokio::time::sleep(FAIL_DELAY).await;
        Err(unauthorized())
    }

    async fn verify(&self, value: &HeaderValue) -> bool {
        let raw = value.as_bytes();
        if let Some(token) = strip_scheme(raw, b"bearer ") {
            let digest: [u8; 32] = Sha256::digest(token.trim_ascii()).into();
            // Every token is compared, so the time says nothing of which matched.
            return self.tokens.iter().fold(0u8, |ok, t| ok | t.ct_eq(&digest).unwrap_u8()) == 1;
        }
        let Some(b64) = strip_scheme(raw, b"basic ") else { return false };
        let key: [u8; 32] = Sha256::digest(raw).into();
        if self.cached(&key) {
            return true;
        }
        let Some(decoded) = base64_decode(b64.trim_ascii()) else { return false };
        let Ok(text) = String::from_utf8(decoded) else { return false };
        let Some((user, password)) = text.split_once(':') else { return false };
        let phc = self.users.get(user).cloned();
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY_PHC.to_string());
        let password = crate::config::Secret::new(password);
        let Ok(_permit) = self.verifying.clone().acquire_owned().await else { return false };
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .is_ok_and(|h| Argon2::default().verify_password(password.expose().as_bytes(), &h).is_ok())
        })
        .await
        .unwrap_or(false);
        if ok && known {
            self.remember(key);
        }
        ok && known
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // A lookup by hash of the whole header: equal hashes mean equal headers.
        cache.get(key).is_some_and(|at| at.elapsed() < CACHE_TTL)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, at| at.elapsed() < CACHE_TTL);
        }
        if cache.len() >= CACHE_MAX {
            // All fresh: forget them all rather than grow; they verify again.
            cache.clear();
        }
        cache.insert(key, Instant::now());
    }

    fn locked_out(&self, peer: IpAddr) -> bool {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.get(&peer).is_some_and(|(start, n)| start.elapsed() < FAIL_WINDOW && *n >= MAX_FAILURES)
    }

    fn failed(&self, peer: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() >= FAIL_ADDRS && !f.contains_key(&peer) {
            f.retain(|_, (start, _)| start.elapsed() < FAIL_WINDOW);
            if f.len() >= FAIL_ADDRS {
                // Full of live windows: this address is not counted (it
                // still waits FAIL_DELAY per failure).
                return;
            }
        }
        let e = f.entry(peer).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= FAIL_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"logcollect\"")], "authentication required\n")
        .into_response()
}

/// The rest of `raw` after the auth `scheme` (lower case, with its space),
/// matched case-insensitively.
fn strip_scheme<'a>(raw: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    (raw.len() >= scheme.len() && raw[..scheme.len()].eq_ignore_ascii_case(scheme)).then(|| &raw[scheme.len()..])
}

/// Standard base64 with optional padding; `None` when malformed.
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let s = s.strip_suffix(b"==").or_else(|| s.strip_suffix(b"=")).unwrap_or(s);
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The PHC string (argon2id, the crate's default cost) of `password`, with
/// a random salt: what `logcollect hash-password` prints.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?, &mut salt)
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_table() {
        for (enc, dec) in [("", ""), ("YQ==", "a"), ("YWI=", "ab"), ("YWJj", "abc"), ("dTpwYXNz", "u:pass")] {
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), dec.as_bytes(), "{enc}");
        }
        assert!(base64_decode(b"a*b").is_none());
    }

    #[test]
    fn dummy_hash_parses_and_hash_password_verifies() {
        assert!(PasswordHash::new(DUMMY_PHC).is_ok());
        let phc = hash_password("pw").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        let h = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &h).is_ok());
        assert!(Argon2::default().verify_password(b"no", &h).is_err());
    }

    #[tokio::test]
    async fn basic_bearer_and_lockout() {
        let token_hash: [u8; 32] = Sha256::digest(b"tok").into();
        let cfg = HttpSection {
            users: vec![("u".into(), hash_password("pass").unwrap())],
            tokens: vec![token_hash],
            ..HttpSection::default()
        };
        let auth = Auth::new(&cfg).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(auth.check(ip, "/health/live", &HeaderMap::new()).await.is_ok());
        assert_eq!(auth.check(ip, "/", &HeaderMap::new()).await.unwrap_err().status(), 401);
        assert!(auth.check(ip, "/", &with("Basic dTpwYXNz")).await.is_ok());
        assert!(auth.check(ip, "/", &with("Bearer tok")).await.is_ok());
        for _ in 0..MAX_FAILURES {
            assert_eq!(auth.check(ip, "/", &with("Bearer nope")).await.unwrap_err().status(), 401);
        }
        assert_eq!(auth.check(ip, "/", &with("Bearer tok")).await.unwrap_err().status(), 429);
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(auth.check(other, "/", &with("Bearer tok")).await.is_ok());
    }
}
