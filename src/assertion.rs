//! Signed verification assertions (SPEC §7): every successful verification hands back a compact
//! JWS (Ed25519, `typ` `twofold-verification+jwt`) that the host application's backend checks
//! against the JWK Set Twofold publishes at `/.well-known/jwks.json`.
//!
//! One key set for the whole deployment, in the database: the private keys sealed under the
//! encryption key (so the database alone reveals nothing), the public keys in the clear. The first
//! instance to start creates the first key; `twofold assertion-key rotate` makes a new current
//! key. Every instance re-reads the set when its copy is older than [`REFRESH`], so all sign with
//! a rotated key within that time, and a retired key stays published for the assertions' lifetime
//! plus that time, so every assertion signed with it still verifies until it expires.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::crypto::Keyring;
use crate::store::{self, AssertionKey, Store};

/// Why signing keys could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("assertion key: {0}")]
    Crypto(#[from] CryptoError),
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("assertion keys: {0}")]
    Malformed(String),
}

/// How old an instance's copy of the key set may get before it is read again.
pub const REFRESH: Duration = Duration::from_secs(30);
/// The JWS `typ` of an assertion.
pub const TYP: &str = "twofold-verification+jwt";

/// What assertions say besides the verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionSettings {
    /// `iss`: `TWOFOLD_PUBLIC_URL`, by default `http://<TWOFOLD_BIND>`.
    pub issuer: String,
    /// `aud`: `TWOFOLD_ASSERTION_AUDIENCE`, when set.
    pub audience: Option<String>,
    /// `exp - iat`: `TWOFOLD_ASSERTION_TTL` (10 s – 1 h, default 5 min).
    pub ttl: Duration,
}

impl Default for AssertionSettings {
    fn default() -> Self {
        AssertionSettings { issuer: "http://127.0.0.1:8080".into(), audience: None, ttl: Duration::from_secs(300) }
    }
}

/// How a verification was made (the `amr` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `["otp"]`
    Otp,
    /// `["recovery_code"]`
    RecoveryCode,
}

/// The associated data an assertion key is sealed with (binds the ciphertext to its `kid`).
pub fn sealing_context(kid: &str) -> String {
    format!("twofold assertion key {kid}")
}

/// `kid`: the RFC 7638 JWK thumbprint of the public key.
fn thumbprint(public_key: &[u8]) -> String {
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(public_key));
    b64(&Sha256::digest(jwk.as_bytes()))
}

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

/// The Ed25519 key pair of a 32-byte seed (RFC 8032's private key).
fn signing_key(seed: &[u8; 32]) -> Result<Ed25519KeyPair, Error> {
    Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| Error::Malformed(format!("assertion key: {e}")))
}

/// A new key, sealed for storage.
fn generate(keys: &Keyring, now: i64) -> Result<AssertionKey, Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|_| Error::Random)?;
    let public_key = signing_key(&seed)?.public_key().as_ref().to_vec();
    let kid = thumbprint(&public_key);
    let (secret, key_id) = keys.seal(&sealing_context(&kid), &seed)?;
    Ok(AssertionKey { kid, secret, key_id, public_key, current: true, created_at: now, retired_at: None })
}

/// Makes a new current key, retiring the current one (`twofold assertion-key rotate`). Returns
/// the new `kid`.
pub async fn rotate(store: &Store, keys: &Keyring, now: i64) -> Result<String, Error> {
    let key = generate(keys, now)?;
    let kid = key.kid.clone();
    store.insert_assertion_key(key, true, now).await?;
    Ok(kid)
}

/// The signing side of one loaded key set.
struct KeySet {
    kid: String,
    signing: Ed25519KeyPair,
    /// `base64url(header)`, the same for every assertion of this key.
    header: String,
    /// The JWK Set document.
    jwks: Arc<str>,
    loaded_at: i64,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    iat: i64,
    exp: i64,
    jti: String,
    auth_time: i64,
    amr: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// Signs assertions and serves the JWK Set, from the key set in the database. Cheap to share.
pub struct Assertions {
    store: Store,
    keys: Arc<Keyring>,
    settings: AssertionSettings,
    clock: Arc<dyn Clock>,
    cached: RwLock<Option<Arc<KeySet>>>,
    reload: tokio::sync::Mutex<()>,
}

impl Assertions {
    pub fn new(store: Store, keys: Arc<Keyring>, settings: AssertionSettings, clock: Arc<dyn Clock>) -> Self {
        Assertions { store, keys, settings, clock, cached: RwLock::new(None), reload: tokio::sync::Mutex::new(()) }
    }

    fn fresh(&self, now: i64) -> Option<Arc<KeySet>> {
        let cached = self.cached.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let refresh_ms = i64::try_from(REFRESH.as_millis()).unwrap_or(i64::MAX);
        cached.as_ref().filter(|set| now.saturating_sub(set.loaded_at) < refresh_ms).cloned()
    }

    /// The key set, read again from the database when the copy is older than [`REFRESH`] (one
    /// reader at a time; the first start creates the first key).
    async fn key_set(&self) -> Result<Arc<KeySet>, Error> {
        let now = self.clock.now_ms();
        if let Some(set) = self.fresh(now) {
            return Ok(set);
        }
        let _one_at_a_time = self.reload.lock().await;
        if let Some(set) = self.fresh(now) {
            return Ok(set);
        }
        let set = Arc::new(self.load(now).await?);
        *self.cached.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(set.clone());
        Ok(set)
    }

    async fn load(&self, now: i64) -> Result<KeySet, Error> {
        let ttl = i64::try_from(self.settings.ttl.as_millis()).unwrap_or(i64::MAX);
        let published_after =
            now.saturating_sub(ttl.saturating_add(2 * i64::try_from(REFRESH.as_millis()).unwrap_or(0)));
        let mut keys = self.store.assertion_keys(published_after).await?;
        if !keys.iter().any(|k| k.current) {
            // First start of the deployment (or of several instances at once: one insert wins).
            self.store.insert_assertion_key(generate(&self.keys, now)?, false, now).await?;
            keys = self.store.assertion_keys(published_after).await?;
        }
        let current = keys
            .iter()
            .find(|k| k.current)
            .ok_or_else(|| Error::Malformed("no current assertion key after creating one".into()))?;
        let seed: [u8; 32] = self
            .keys
            .open(&sealing_context(&current.kid), &current.key_id, &current.secret)?
            .try_into()
            .map_err(|_| Error::Malformed("assertion key of the wrong length".into()))?;
        let header = serde_json::json!({ "alg": "EdDSA", "typ": TYP, "kid": current.kid });
        let jwks = serde_json::json!({
            "keys": keys.iter().map(|k| serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64(&k.public_key), "kid": k.kid, "alg": "EdDSA", "use": "sig",
            })).collect::<Vec<_>>(),
        });
        Ok(KeySet {
            kid: current.kid.clone(),
            signing: signing_key(&seed)?,
            header: b64(header.to_string().as_bytes()),
            jwks: jwks.to_string().into(),
            loaded_at: now,
        })
    }

    /// The JWK Set document (`/.well-known/jwks.json`): public keys only.
    pub async fn jwks(&self) -> Result<Arc<str>, Error> {
        Ok(self.key_set().await?.jwks.clone())
    }

    /// The `kid` new assertions are signed with.
    pub async fn current_kid(&self) -> Result<String, Error> {
        Ok(self.key_set().await?.kid.clone())
    }

    /// A signer with the current key, loaded before a verification so that a verification
    /// which succeeds always gets its assertion.
    pub async fn signer(&self) -> Result<Signer<'_>, Error> {
        Ok(Signer { set: self.key_set().await?, settings: &self.settings, clock: &*self.clock })
    }
}

/// Signs assertions with one loaded key (see [`Assertions::signer`]).
pub struct Signer<'a> {
    set: Arc<KeySet>,
    settings: &'a AssertionSettings,
    clock: &'a dyn Clock,
}

impl Signer<'_> {
    /// An assertion that `sub` verified with `method` at `auth_time_ms`, echoing `nonce`.
    pub fn sign(&self, sub: &str, method: Method, auth_time_ms: i64, nonce: Option<&Nonce>) -> Result<String, Error> {
        let set = &self.set;
        let iat = self.clock.now_ms().div_euclid(1000);
        let claims = Claims {
            iss: &self.settings.issuer,
            sub,
            aud: self.settings.audience.as_deref(),
            iat,
            exp: iat.saturating_add(i64::try_from(self.settings.ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            auth_time: auth_time_ms.div_euclid(1000),
            amr: [match method {
                Method::Otp => "otp",
                Method::RecoveryCode => "recovery_code",
            }],
            nonce: nonce.map(|n| n.0.as_str()),
        };
        let claims = serde_json::to_vec(&claims).map_err(|e| Error::Malformed(e.to_string()))?;
        let mut jws = String::with_capacity(set.header.len() + claims.len() * 4 / 3 + 90);
        jws.push_str(&set.header);
        jws.push('.');
        data_encoding::BASE64URL_NOPAD.encode_append(&claims, &mut jws);
        let signature = set.signing.sign(jws.as_bytes());
        jws.push('.');
        data_encoding::BASE64URL_NOPAD.encode_append(signature.as_ref(), &mut jws);
        Ok(jws)
    }
}

/// A caller's nonce, echoed in the assertion: 1–255 bytes of visible ASCII (`!` to `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

/// What a nonce must be, for error messages.
pub const NONCE_RULE: &str = "`nonce` must be 1 to 255 characters of visible ASCII (`!` to `~`).";

impl Nonce {
    /// The nonce, if `text` is acceptable (SPEC §7).
    pub fn parse(text: &str) -> Option<Nonce> {
        valid_nonce(text).then(|| Nonce(text.to_owned()))
    }
}

fn valid_nonce(nonce: &str) -> bool {
    (1..=255).contains(&nonce.len()) && nonce.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_visible_ascii_of_1_to_255_bytes() {
        assert!(valid_nonce("a"));
        assert!(valid_nonce(&"~".repeat(255)));
        assert!(!valid_nonce(""));
        assert!(!valid_nonce(&"a".repeat(256)));
        assert!(!valid_nonce("a b"));
        assert!(!valid_nonce("é"));
        assert!(!valid_nonce("a\n"));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let x = data_encoding::BASE64URL_NOPAD.decode(b"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        assert_eq!(thumbprint(&x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }
}
