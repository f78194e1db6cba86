//! Caller keys from the host application's JWK Set (`TWOFOLD_JWT_JWKS_URL`, SPEC §7).
//!
//! [`CallerKeys`] holds the current set of signature keys, by `kid`, behind a lock that the
//! request path only reads ([`CallerKeys::key`] never waits on the network). A background task
//! ([`CallerKeys::start`]) fetches the set at startup and every `TWOFOLD_JWT_JWKS_REFRESH`; while
//! no set was ever loaded it retries every few seconds. A token naming a `kid` the set does not
//! have asks for an early fetch, at most once per [`UNKNOWN_KID_REFETCH_INTERVAL`], so forged
//! `kid`s cannot make Twofold hammer the provider; that token is refused, and a later one with a
//! `kid` rotated in meanwhile is accepted. A failed fetch keeps the last good set.
//!
//! Only signature keys that fit a JWS algorithm Twofold verifies are kept: RSA (RS*/PS*, at least
//! 2048 bits), EC P-256 (ES256), EC P-384 (ES384) and OKP Ed25519 (EdDSA), each with a `kid`.
//! Symmetric (`oct`) keys, encryption keys (`use` other than `sig`, `key_ops` without `verify`),
//! other curves and key types, and keys that do not parse are ignored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The shortest time between two fetches asked for by tokens with an unknown `kid`.
pub const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Each fetch (connecting, redirects and reading the body) gives up after this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JWK Set document read (identity providers publish a few KiB).
pub const MAX_SET_BYTES: usize = 1024 * 1024;
/// The most redirects followed, each to an http(s) URL (never from https down to http).
const MAX_REDIRECTS: usize = 5;
/// While no set was ever loaded, retries come after 1, 2, 4 s, then every 5 s (or the refresh
/// interval, when shorter), so Twofold becomes ready soon after the provider comes up.
const MAX_UNLOADED_RETRY: Duration = Duration::from_secs(5);
/// The shortest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// After the first failure of a run of failures, at most one warning per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What kind of public key a JWK is, which decides the algorithms it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `kty` `RSA`: RS256/384/512 and PS256/384/512.
    Rsa,
    /// `kty` `EC`, `crv` `P-256`: ES256.
    P256,
    /// `kty` `EC`, `crv` `P-384`: ES384.
    P384,
    /// `kty` `OKP`, `crv` `Ed25519`: EdDSA.
    Ed25519,
}

impl KeyKind {
    /// Whether a token signed with `algorithm` can be checked with a key of this kind.
    pub fn fits(self, algorithm: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(algorithm, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => algorithm == ES256,
            KeyKind::P384 => algorithm == ES384,
            KeyKind::Ed25519 => algorithm == EdDSA,
        }
    }
}

/// One usable key of the set.
pub struct CallerKey {
    pub key: DecodingKey,
    pub kind: KeyKind,
    /// The key's own `alg`, when the set names one: then only tokens of that algorithm use it.
    pub algorithm: Option<Algorithm>,
}

impl CallerKey {
    /// Whether a token whose header says `algorithm` may be checked with this key.
    pub fn accepts(&self, algorithm: Algorithm) -> bool {
        self.kind.fits(algorithm) && self.algorithm.is_none_or(|a| a == algorithm)
    }
}

impl std::fmt::Debug for CallerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerKey").field("kind", &self.kind).field("algorithm", &self.algorithm).finish()
    }
}

/// The usable keys of one fetched set, by `kid`.
pub type KeyMap = HashMap<String, Arc<CallerKey>>;

/// Why a fetch failed (the last good set stays in use).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("the JWK Set is larger than {MAX_SET_BYTES} bytes")]
    TooLarge,
    #[error("not a JWK Set: {0}")]
    Malformed(String),
    #[error(
        "the JWK Set has no usable signature key ({0} keys ignored: symmetric, encryption, unsupported or without `kid`)"
    )]
    NoUsableKey(usize),
}

/// The host application's JWK Set: the current keys and what keeps them fresh. Cheap to clone
/// (clones share the set).
#[derive(Clone)]
pub struct CallerKeys(Arc<Inner>);

struct Inner {
    url: reqwest::Url,
    client: reqwest::Client,
    refresh: Duration,
    /// `None` until a fetch succeeds.
    current: RwLock<Option<Arc<KeyMap>>>,
    /// Wakes the refresher early (a token with an unknown `kid`).
    wake: tokio::sync::Notify,
    /// When a token with an unknown `kid` last woke the refresher.
    last_kid_refetch: Mutex<Option<Instant>>,
    /// Serialises fetches (so an older answer never replaces a newer one) and tracks failures.
    fetching: tokio::sync::Mutex<FetchHistory>,
}

#[derive(Default)]
struct FetchHistory {
    /// Failures since the last success.
    failures: u32,
    last_warning: Option<Instant>,
}

impl std::fmt::Debug for CallerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerKeys")
            .field("url", &redacted(&self.0.url))
            .field("refresh", &self.0.refresh)
            .field("loaded", &self.is_loaded())
            .finish_non_exhaustive()
    }
}

/// The URL without user info or query, for logs.
fn redacted(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// An error and its sources on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

impl CallerKeys {
    /// Checks `url` (an absolute http:// or https:// URL) and prepares the HTTP client. Nothing
    /// is fetched yet: see [`CallerKeys::start`] and [`CallerKeys::refresh`]. The error is one
    /// line.
    pub fn new(url: &str, refresh: Duration) -> Result<Self, String> {
        let url = reqwest::Url::parse(url.trim()).map_err(|e| format!("is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err("must be an http:// or https:// URL with a host".into());
        }
        // rustls with its `ring` provider (no aws-lc-rs); installed once for the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .connect_timeout(FETCH_TIMEOUT)
                .user_agent(concat!("twofold/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    let from_https = attempt.previous().iter().any(|u| u.scheme() == "https");
                    if attempt.previous().len() > MAX_REDIRECTS {
                        attempt.error("too many redirects")
                    } else {
                        match attempt.url().scheme() {
                            "https" => attempt.follow(),
                            "http" if !from_https => attempt.follow(),
                            _ => attempt.error("redirect to a URL that is not http(s), or from https to http"),
                        }
                    }
                }))
        };
        let client = match builder().build() {
            Ok(client) => client,
            // No CA certificates on this system: plain http still works; https cannot.
            Err(_) if url.scheme() == "http" => builder()
                .tls_certs_only(std::iter::empty())
                .build()
                .map_err(|e| format!("cannot be fetched: the HTTP client cannot be set up ({})", chain(&e)))?,
            Err(e) => {
                return Err(format!(
                    "needs HTTPS, which cannot be set up here ({}); install the system's CA certificates \
                     (e.g. the ca-certificates package)",
                    chain(&e)
                ));
            }
        };
        Ok(CallerKeys(Arc::new(Inner {
            url,
            client,
            refresh,
            current: RwLock::new(None),
            wake: tokio::sync::Notify::new(),
            last_kid_refetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(FetchHistory::default()),
        })))
    }

    /// The URL the set is fetched from (user info and query removed).
    pub fn url(&self) -> String {
        redacted(&self.0.url)
    }

    /// Whether the set is fetched over plain http from a host other than this machine (anyone on
    /// the network path could swap the keys).
    pub fn is_plain_http_off_loopback(&self) -> bool {
        let host = self.0.url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let loopback =
            host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        self.0.url.scheme() == "http" && !loopback
    }

    /// Whether a set was ever loaded (until then every token is refused and `/readyz` is 503).
    pub fn is_loaded(&self) -> bool {
        self.0.current.read().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// The key named `kid`, without waiting. When there is none (or no set yet), asks the
    /// refresher for an early fetch, at most once per [`UNKNOWN_KID_REFETCH_INTERVAL`].
    pub fn key(&self, kid: &str) -> Option<Arc<CallerKey>> {
        let found =
            self.0.current.read().unwrap_or_else(PoisonError::into_inner).as_ref().and_then(|m| m.get(kid).cloned());
        if found.is_none() {
            self.request_refetch();
        }
        found
    }

    /// The `kid`s of the current set, sorted (empty before the first successful fetch).
    pub fn kids(&self) -> Vec<String> {
        let current = self.0.current.read().unwrap_or_else(PoisonError::into_inner).clone();
        let mut kids: Vec<String> = current.map(|m| m.keys().cloned().collect()).unwrap_or_default();
        kids.sort();
        kids
    }

    fn request_refetch(&self) {
        let now = Instant::now();
        {
            let mut last = self.0.last_kid_refetch.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| now.duration_since(t) < UNKNOWN_KID_REFETCH_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        tracing::debug!("a token names a `kid` the JWK Set does not have: fetching the set again");
        self.0.wake.notify_one();
    }

    /// Fetches the set once and, when it holds a usable key, makes it current; a failure keeps
    /// the last good set. Returns the number of usable keys.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let mut history = self.0.fetching.lock().await;
        match self.fetch().await {
            Ok(keys) => {
                let count = keys.len();
                let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
                kids.sort_unstable();
                let kids = kids.join(",");
                let changed = kids != self.kids().join(",");
                *self.0.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keys));
                metrics::counter!("twofold_jwt_jwks_fetches_total", "result" => "ok").increment(1);
                if history.failures > 0 || changed {
                    tracing::info!(url = %self.url(), keys = count, %kids, "loaded the JWK Set of caller keys");
                } else {
                    tracing::debug!(url = %self.url(), keys = count, "the JWK Set of caller keys is unchanged");
                }
                *history = FetchHistory::default();
                Ok(count)
            }
            Err(error) => {
                metrics::counter!("twofold_jwt_jwks_fetches_total", "result" => "error").increment(1);
                history.failures = history.failures.saturating_add(1);
                let now = Instant::now();
                let failures = history.failures;
                if failures == 1 || history.last_warning.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                    history.last_warning = Some(now);
                    let consequence = if self.is_loaded() {
                        "keeping the last good set"
                    } else {
                        "every token is refused and /readyz answers 503 until a fetch succeeds"
                    };
                    tracing::warn!(url = %self.url(), %error, failures, "cannot fetch the JWK Set of caller keys; {consequence}");
                } else {
                    tracing::debug!(url = %self.url(), %error, failures, "cannot fetch the JWK Set of caller keys");
                }
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<KeyMap, FetchError> {
        let request = self
            .0
            .client
            .get(self.0.url.clone())
            .header(reqwest::header::ACCEPT, "application/jwk-set+json, application/json");
        let mut response = request.send().await.map_err(|e| FetchError::Request(chain(&e.without_url())))?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if response.content_length().is_some_and(|n| n > MAX_SET_BYTES as u64) {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Request(chain(&e.without_url())))? {
            if body.len() + chunk.len() > MAX_SET_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        parse_set(&body)
    }

    /// Fetches the set once (waiting at most [`FETCH_TIMEOUT`]), then spawns the refresher:
    /// every `TWOFOLD_JWT_JWKS_REFRESH`, early when a token names an unknown `kid` (at most once
    /// per [`UNKNOWN_KID_REFETCH_INTERVAL`]), and every few seconds while no set was ever loaded.
    /// The task runs until aborted (or its runtime stops).
    pub async fn start(&self) -> tokio::task::JoinHandle<()> {
        let first = self.refresh().await;
        let keys = self.clone();
        tokio::spawn(async move {
            let mut failures: u32 = u32::from(first.is_err());
            loop {
                let wait = if keys.is_loaded() {
                    keys.0.refresh
                } else {
                    // 1, 2, 4, 5, 5, … seconds.
                    let backoff = Duration::from_secs(1u64 << failures.saturating_sub(1).min(3));
                    backoff.min(MAX_UNLOADED_RETRY).min(keys.0.refresh)
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = keys.0.wake.notified() => {}
                }
                failures = match keys.refresh().await {
                    Ok(_) => 0,
                    Err(_) => failures.saturating_add(1),
                };
            }
        })
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// The usable keys of a JWK Set document. A key that does not parse or does not fit is skipped
/// (logged at debug level); a document with no usable key is an error, so a provider answering an
/// empty or broken set for a moment does not replace the last good one.
pub fn parse_set(body: &[u8]) -> Result<KeyMap, FetchError> {
    let raw: RawSet = serde_json::from_slice(body).map_err(|e| FetchError::Malformed(e.to_string()))?;
    let total = raw.keys.len();
    let set = JwkSet {
        keys: raw
            .keys
            .into_iter()
            .filter_map(|value| match serde_json::from_value::<Jwk>(value) {
                Ok(jwk) => Some(jwk),
                Err(error) => {
                    tracing::debug!(%error, "JWK Set: a key that does not parse is ignored");
                    None
                }
            })
            .collect(),
    };
    let mut keys = KeyMap::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        match usable_key(jwk) {
            Ok(key) if !keys.contains_key(&kid) => {
                keys.insert(kid, Arc::new(key));
            }
            Ok(_) => tracing::debug!(kid, "JWK Set: a second key with the same `kid` is ignored"),
            Err(reason) => tracing::debug!(kid, reason, "JWK Set: key ignored"),
        }
    }
    if keys.is_empty() {
        return Err(FetchError::NoUsableKey(total));
    }
    Ok(keys)
}

/// Base64url (padding tolerated) decoded length, or `None` when it is not base64url.
fn decoded_len(text: &str) -> Option<usize> {
    data_encoding::BASE64URL_NOPAD.decode(text.trim_end_matches('=').as_bytes()).ok().map(|b| b.len())
}

/// The key, when it is a signature key Twofold can check tokens with.
fn usable_key(jwk: &Jwk) -> Result<CallerKey, &'static str> {
    if jwk.common.key_id.as_deref().is_none_or(str::is_empty) {
        return Err("no `kid`");
    }
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return Err("`use` is not `sig`");
    }
    if jwk.common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return Err("`key_ops` does not include `verify`");
    }
    let algorithm = match jwk.common.key_algorithm {
        None => None,
        Some(alg) => Some(Algorithm::try_from(alg).map_err(|_| "`alg` is not a JWS signature algorithm")?),
    };
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let modulus = data_encoding::BASE64URL_NOPAD
                .decode(rsa.n.trim_end_matches('=').as_bytes())
                .map_err(|_| "`n` is not base64url")?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err("RSA key shorter than 2048 bits");
            }
            if decoded_len(&rsa.e).is_none_or(|n| n == 0 || n > 8) {
                return Err("`e` is not a usable RSA exponent");
            }
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (kind, size) = match ec.curve {
                EllipticCurve::P256 => (KeyKind::P256, 32),
                EllipticCurve::P384 => (KeyKind::P384, 48),
                _ => return Err("EC curve not supported (P-256 and P-384 are)"),
            };
            if decoded_len(&ec.x) != Some(size) || decoded_len(&ec.y) != Some(size) {
                return Err("EC coordinates do not fit the curve");
            }
            kind
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if okp.curve != EllipticCurve::Ed25519 {
                return Err("OKP curve not supported (Ed25519 is)");
            }
            if decoded_len(&okp.x) != Some(32) {
                return Err("Ed25519 key is not 32 bytes");
            }
            KeyKind::Ed25519
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric (`oct`) keys are ignored"),
        _ => return Err("key type not supported"),
    };
    if algorithm.is_some_and(|a| !kind.fits(a)) {
        return Err("`alg` does not fit the key type");
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "key parameters do not parse")?;
    Ok(CallerKey { key, kind, algorithm })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(n: usize, byte: u8) -> String {
        data_encoding::BASE64URL_NOPAD.encode(&vec![byte; n])
    }

    fn set(keys: serde_json::Value) -> Vec<u8> {
        serde_json::json!({ "keys": keys }).to_string().into_bytes()
    }

    #[test]
    fn only_signature_keys_that_fit_are_kept() {
        let n = b64(256, 0xc5);
        let short_n = b64(128, 0xc5);
        let body = set(serde_json::json!([
            {"kty": "RSA", "kid": "rsa", "n": n, "e": "AQAB", "use": "sig"},
            {"kty": "RSA", "kid": "rsa-rs256", "n": n, "e": "AQAB", "alg": "RS256"},
            {"kty": "RSA", "kid": "rsa-enc", "n": n, "e": "AQAB", "use": "enc", "alg": "RSA-OAEP"},
            {"kty": "RSA", "kid": "rsa-oaep", "n": n, "e": "AQAB", "alg": "RSA-OAEP"},
            {"kty": "RSA", "kid": "rsa-short", "n": short_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-es256", "n": n, "e": "AQAB", "alg": "ES256"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            {"kty": "EC", "kid": "p256", "crv": "P-256", "x": b64(32, 1), "y": b64(32, 2)},
            {"kty": "EC", "kid": "p256-short", "crv": "P-256", "x": b64(31, 1), "y": b64(32, 2)},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": b64(48, 1), "y": b64(48, 2), "key_ops": ["verify"]},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": b64(66, 1), "y": b64(66, 2)},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(32, 3)},
            {"kty": "OKP", "kid": "ed-sign-only", "crv": "Ed25519", "x": b64(32, 3), "key_ops": ["sign"]},
            {"kty": "oct", "kid": "hmac", "k": b64(32, 4)},
            {"kty": "RSA", "kid": 5, "n": n},
            {"kty": "ML-DSA", "kid": "pq", "pub": "AAAA"},
            "not an object",
            {"kty": "RSA", "kid": "rsa", "n": b64(256, 0xd1), "e": "AQAB"},
        ]));
        let keys = parse_set(&body).unwrap();
        let mut kids: Vec<_> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["ed", "p256", "p384", "rsa", "rsa-rs256"]);
        assert_eq!(keys["rsa"].kind, KeyKind::Rsa);
        assert!(keys["rsa"].accepts(Algorithm::RS256) && keys["rsa"].accepts(Algorithm::PS512));
        assert!(!keys["rsa"].accepts(Algorithm::ES256) && !keys["rsa"].accepts(Algorithm::HS256));
        assert!(keys["rsa-rs256"].accepts(Algorithm::RS256) && !keys["rsa-rs256"].accepts(Algorithm::PS256));
        assert!(keys["p256"].accepts(Algorithm::ES256) && !keys["p256"].accepts(Algorithm::ES384));
        assert!(keys["p384"].accepts(Algorithm::ES384) && !keys["p384"].accepts(Algorithm::ES256));
        assert!(keys["ed"].accepts(Algorithm::EdDSA) && !keys["ed"].accepts(Algorithm::ES256));
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error() {
        for body in [
            &b"not json"[..],
            br#"{"keys": {}}"#,
            br#"{"no": []}"#,
            br#"{"keys": []}"#,
            br#"{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}"#,
        ] {
            assert!(parse_set(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        assert!(matches!(
            parse_set(br#"{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}"#),
            Err(FetchError::NoUsableKey(1))
        ));
    }

    #[test]
    fn urls_are_checked() {
        for bad in ["", "not a url", "ftp://idp.example/jwks.json", "file:///etc/jwks.json", "/jwks.json", "https://"] {
            assert!(CallerKeys::new(bad, Duration::from_secs(600)).is_err(), "{bad}");
        }
        let keys = CallerKeys::new("https://user:pw@idp.example/certs?token=x", Duration::from_secs(600)).unwrap();
        assert_eq!(keys.url(), "https://idp.example/certs");
        assert!(!keys.is_loaded());
        assert!(keys.key("anything").is_none());
    }

    #[test]
    fn unknown_kids_wake_the_refresher_at_most_once_per_interval() {
        let keys = CallerKeys::new("http://127.0.0.1:9/jwks.json", Duration::from_secs(600)).unwrap();
        for kid in 0..100 {
            assert!(keys.key(&kid.to_string()).is_none());
        }
        let first = keys.0.last_kid_refetch.lock().unwrap().expect("woken once");
        assert!(keys.key("another").is_none());
        assert_eq!(*keys.0.last_kid_refetch.lock().unwrap(), Some(first), "not again within 30 s");
    }
}
