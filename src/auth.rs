//! Bearer JWT authentication: `Authorization: Bearer <jwt>` → [`Viewer`].
//!
//! The failure reason is logged at debug level and never returned in detail to callers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::caller_keys::{CallerKey, CallerKeys};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// `sub`: the host application's user id.
    pub user_id: String,
    /// Shown in the authenticator app: the first present of `email`, `preferred_username`, `sub`.
    pub account_name: String,
    /// Whether the token carries the [`ADMIN_SCOPE`] (in `scope` or `scp`, SPEC §8).
    pub admin: bool,
}

/// Whether `id` can be a user's id: a token's `sub`, 1–255 bytes (SPEC §1). Admin arguments and
/// import rows that name a user are held to the same rule.
pub fn is_user_id(id: &str) -> bool {
    (1..=255).contains(&id.len())
}

/// The scope that makes a caller an admin (SPEC §8).
pub const ADMIN_SCOPE: &str = "twofold:admin";

/// Whether a `scope` (space-separated string) or `scp` (array of strings, or a space-separated
/// string) claim grants [`ADMIN_SCOPE`].
fn grants_admin(claim: Option<&Value>) -> bool {
    match claim {
        Some(Value::String(s)) => s.split_ascii_whitespace().any(|x| x == ADMIN_SCOPE),
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(ADMIN_SCOPE)),
        _ => false,
    }
}

/// Why a request is not authenticated. Each dialect maps these to its own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("expired token")]
    Expired,
    /// A valid token whose `token_type` is not `access` (e.g. a refresh token).
    #[error("token type is not access")]
    WrongTokenType,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<Value>,
    email: Option<Value>,
    preferred_username: Option<Value>,
    /// Present, `null` included: a token carrying `"token_type": null` carries a type other than
    /// `access` (serde would read the `null` as absent).
    #[serde(default, deserialize_with = "present")]
    token_type: Option<Value>,
    scope: Option<Value>,
    scp: Option<Value>,
}

/// `Some` for a member that is present, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Verifies bearer tokens against an explicit algorithm allow-list, with keys from one of three
/// sources: an HMAC secret, one public key, or the host application's JWK Set. The claim checks
/// are the same for all three.
#[derive(Clone)]
pub struct Authenticator {
    keys: KeySource,
    /// Signature and claim checks with the whole allow-list (one key: all of its family).
    validation: Validation,
}

/// Where the key that checks a token comes from.
#[derive(Clone)]
enum KeySource {
    /// One key (a secret or a public key) for every token.
    Single(DecodingKey),
    /// The key the token's `kid` names in the host application's JWK Set. jsonwebtoken wants
    /// every allowed algorithm to be of the key's family, and a set mixes families, so each
    /// allowed algorithm has its own copy of the checks.
    Set { keys: CallerKeys, validations: Vec<(Algorithm, Validation)> },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("Authenticator");
        f.field("algorithms", &self.validation.algorithms);
        if let KeySource::Set { keys, .. } = &self.keys {
            f.field("jwk_set", keys);
        }
        f.finish_non_exhaustive()
    }
}

/// The largest clock leeway for `exp`/`nbf` (`TWOFOLD_JWT_LEEWAY_SECONDS` is 0–300; larger values
/// given to [`Authenticator::new`] directly are clamped to it, so `now ± leeway` never wraps).
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// The longest JOSE header segment (base64url) looked at; real headers are well under 1 KiB.
const MAX_HEADER_SEGMENT: usize = 8 * 1024;

/// Claim checks besides the signature.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
}

/// The checks for tokens of `algorithms` under `rules`.
fn validation(algorithms: Vec<Algorithm>, rules: &ClaimRules) -> Validation {
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms;
    validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = rules.leeway_seconds.min(MAX_LEEWAY_SECONDS);
    match &rules.issuer {
        Some(iss) => {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        None => validation.iss = None,
    }
    match &rules.audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        None => validation.validate_aud = false,
    }
    validation
}

impl Authenticator {
    /// One key for every token. `algorithms` must be non-empty and of the key's family (checked
    /// by the configuration).
    pub fn new(key: DecodingKey, algorithms: Vec<Algorithm>, rules: &ClaimRules) -> Self {
        Authenticator { keys: KeySource::Single(key), validation: validation(algorithms, rules) }
    }

    /// Keys from the host application's JWK Set, chosen by the token's `kid`. `algorithms` must
    /// be non-empty and asymmetric (checked by the configuration); a token's `alg` must be one of
    /// them and fit the key's type (and the key's own `alg`, when the set names one).
    pub fn with_jwk_set(keys: CallerKeys, algorithms: Vec<Algorithm>, rules: &ClaimRules) -> Self {
        let validations = algorithms.iter().map(|a| (*a, validation(vec![*a], rules))).collect();
        Authenticator { keys: KeySource::Set { keys, validations }, validation: validation(algorithms, rules) }
    }

    /// The JWK Set, when the keys come from one.
    pub fn caller_keys(&self) -> Option<&CallerKeys> {
        match &self.keys {
            KeySource::Single(_) => None,
            KeySource::Set { keys, .. } => Some(keys),
        }
    }

    /// Whether tokens can be checked at all: false while a JWK Set was never loaded.
    pub fn is_ready(&self) -> bool {
        self.caller_keys().is_none_or(CallerKeys::is_loaded)
    }

    /// Authenticates the value of an `Authorization` header. Never waits: with a JWK Set, a token
    /// whose `kid` is not in the current set is refused now (and asks for an early fetch).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Viewer, AuthError> {
        let token = bearer_token(authorization).ok_or(AuthError::Missing)?;
        let header = read_header(token).map_err(|reason| {
            tracing::debug!(reason, "bearer token rejected");
            AuthError::Invalid
        })?;
        let decoded = match &self.keys {
            KeySource::Single(key) => jsonwebtoken::decode::<Claims>(token, key, &self.validation),
            KeySource::Set { keys, validations } => {
                let (key, validation) = set_key(keys, validations, &header).map_err(|reason| {
                    tracing::debug!(reason, "bearer token rejected");
                    AuthError::Invalid
                })?;
                jsonwebtoken::decode::<Claims>(token, &key.key, validation)
            }
        };
        let data = decoded.map_err(|e| {
            let reason = match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            };
            tracing::debug!(error = %e, "bearer token rejected");
            reason
        })?;
        viewer(data.claims)
    }
}

/// The JWK Set key for a token with this header, and the checks for its algorithm: the `alg` must
/// be allowed, the `kid` in the set, and the key of a type (and declared `alg`) that fits.
fn set_key<'v>(
    keys: &CallerKeys,
    validations: &'v [(Algorithm, Validation)],
    header: &serde_json::Map<String, Value>,
) -> Result<(Arc<CallerKey>, &'v Validation), &'static str> {
    let alg = header.get("alg").and_then(Value::as_str).ok_or("header has no `alg`")?;
    let algorithm: Algorithm = alg.parse().map_err(|_| "header `alg` is not a known algorithm")?;
    let validation =
        validations.iter().find(|(a, _)| *a == algorithm).map(|(_, v)| v).ok_or("header `alg` is not allowed")?;
    let kid = header.get("kid").and_then(Value::as_str).filter(|k| !k.is_empty()).ok_or("header has no `kid`")?;
    let key = keys.key(kid).ok_or("no key with this `kid` in the JWK Set (yet)")?;
    if !key.accepts(algorithm) {
        return Err("header `alg` does not fit the type (or `alg`) of the key its `kid` names");
    }
    Ok((key, validation))
}

/// The caller, from claims whose signature and time checks passed.
fn viewer(claims: Claims) -> Result<Viewer, AuthError> {
    let sub = match claims.sub {
        Some(Value::String(s)) if is_user_id(&s) => s,
        _ => {
            tracing::debug!("bearer token rejected: sub missing, empty, not a string or over 255 bytes");
            return Err(AuthError::Invalid);
        }
    };
    match claims.token_type {
        None => {}
        Some(Value::String(t)) if t == "access" => {}
        Some(_) => {
            tracing::debug!("bearer token rejected: token_type is not access");
            return Err(AuthError::WrongTokenType);
        }
    }
    let non_empty = |v: Option<Value>| match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        _ => None,
    };
    let account_name =
        non_empty(claims.email).or_else(|| non_empty(claims.preferred_username)).unwrap_or_else(|| sub.clone());
    let admin = grants_admin(claims.scope.as_ref()) || grants_admin(claims.scp.as_ref());
    Ok(Viewer { user_id: sub, account_name, admin })
}

fn bearer_token(header: Option<&[u8]>) -> Option<&str> {
    let value = std::str::from_utf8(header?).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads the JOSE header and refuses a token whose header has a `crit` member (RFC 7515
/// §4.1.11): its recipient must understand every extension listed there, and Twofold understands
/// none, so `crit` in any form (a list, an empty list, `null`, anything) is refused. jsonwebtoken
/// parses `crit` but does not enforce it (and reads `"crit": null` as absent), so the header
/// segment is read here: at most [`MAX_HEADER_SEGMENT`] bytes, base64url without padding, a JSON
/// object. A header that cannot be read is refused too (jsonwebtoken would refuse it as well).
/// Key-locating members (`jku`, `jwk`, `x5u`, `x5c`) are never used: keys come from the
/// configuration only.
fn read_header(token: &str) -> Result<serde_json::Map<String, Value>, &'static str> {
    let segment = token.split('.').next().unwrap_or_default();
    if segment.len() > MAX_HEADER_SEGMENT {
        return Err("header too long");
    }
    let json = data_encoding::BASE64URL_NOPAD.decode(segment.as_bytes()).map_err(|_| "header is not base64url")?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&json).map_err(|_| "header is not a JSON object")?;
    if header.contains_key("crit") {
        return Err("header has `crit` (no JWS extension is understood)");
    }
    // Twofold's own verification assertions prove a second factor to the host application; they
    // are never bearer tokens, whatever key would check them.
    if header.get("typ").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case(crate::assertion::TYP)) {
        return Err("header `typ` is a Twofold verification assertion, not an access token");
    }
    Ok(header)
}

/// `now + ttl` in Unix seconds for a token's `exp`, saturating instead of overflowing.
pub fn expires_at(now: i64, ttl: Duration) -> i64 {
    now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

/// Claims of a token minted by `twofold token` (and by the dev-mode demo token).
#[derive(Debug, Serialize)]
pub struct MintClaims {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Space-separated scopes (e.g. `twofold:admin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub iat: i64,
    pub exp: i64,
}

/// Signs `claims` with `key` using `algorithm`, with a `kid` header when one is given (needed when
/// Twofold checks tokens against a JWK Set).
pub fn mint(
    algorithm: Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
    claims: &MintClaims,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_parsed() {
        assert_eq!(bearer_token(Some(b"Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some(b"bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some(b"Basic abc")), None);
        assert_eq!(bearer_token(Some(b"Bearer ")), None);
        assert_eq!(bearer_token(None), None);
    }

    const SECRET: &[u8] = b"unit-test-secret-0123456789abcdef0123456789";

    fn authenticator() -> Authenticator {
        Authenticator::new(
            DecodingKey::from_secret(SECRET),
            vec![Algorithm::HS256],
            &ClaimRules { leeway_seconds: 30, ..Default::default() },
        )
    }

    fn claims() -> String {
        let exp = jsonwebtoken::get_current_timestamp() + 600;
        format!(r#"{{"sub":"alice","exp":{exp}}}"#)
    }

    /// A correctly signed HS256 token with exactly this header JSON.
    fn signed(header: &str, claims: &str) -> String {
        let b64 = |s: &str| data_encoding::BASE64URL_NOPAD.encode(s.as_bytes());
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(SECRET), Algorithm::HS256)
                .unwrap();
        format!("Bearer {message}.{signature}")
    }

    #[test]
    fn a_plain_token_passes() {
        let token = signed(r#"{"alg":"HS256","typ":"JWT"}"#, &claims());
        assert_eq!(authenticator().authenticate(Some(token.as_bytes())).unwrap().user_id, "alice");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let token = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "bob", "exp": 4_000_000_000u64}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(authenticator().authenticate(Some(format!("Bearer {token}").as_bytes())).unwrap().user_id, "bob");
    }

    #[test]
    fn any_crit_header_is_refused() {
        let auth = authenticator();
        for header in [
            r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#,
            r#"{"alg":"HS256","typ":"JWT","crit":["b64"],"b64":false}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":null}"#,
            r#"{"alg":"HS256","crit":"exp"}"#,
            r#"{"alg":"HS256","crit":{}}"#,
            r#"{"alg":"HS256","\u0063rit":["exp"]}"#,
        ] {
            let token = signed(header, &claims());
            assert_eq!(auth.authenticate(Some(token.as_bytes())), Err(AuthError::Invalid), "{header}");
        }
        // Through jsonwebtoken's own header type too.
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".into()]);
        let token = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "bob", "exp": 4_000_000_000u64}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(auth.authenticate(Some(format!("Bearer {token}").as_bytes())), Err(AuthError::Invalid));
    }

    #[test]
    fn garbage_headers_are_refused_without_panicking() {
        let auth = authenticator();
        let long = "A".repeat(MAX_HEADER_SEGMENT + 4);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep = data_encoding::BASE64URL_NOPAD.encode(deep.as_bytes());
        for token in
            ["Bearer .", "Bearer ..", "Bearer !!!.e30.x", "Bearer e30", "Bearer W10.e30.x", "Bearer bnVsbA.e30.x"]
                .into_iter()
                .map(String::from)
                .chain([format!("Bearer {long}.e30.x"), format!("Bearer {deep}.e30.x"), "Bearer \u{e9}.e30.x".into()])
        {
            assert_eq!(auth.authenticate(Some(token.as_bytes())), Err(AuthError::Invalid), "{token:.40}");
        }
    }

    #[test]
    fn leeway_is_clamped_and_expiry_saturates() {
        let auth = Authenticator::new(
            DecodingKey::from_secret(SECRET),
            vec![Algorithm::HS256],
            &ClaimRules { leeway_seconds: u64::MAX, ..Default::default() },
        );
        assert_eq!(auth.validation.leeway, MAX_LEEWAY_SECONDS);
        // A token expired well beyond the clamped leeway is refused, not waved through or a panic.
        let exp = jsonwebtoken::get_current_timestamp() - 3600;
        let token = signed(r#"{"alg":"HS256","typ":"JWT"}"#, &format!(r#"{{"sub":"alice","exp":{exp}}}"#));
        assert_eq!(auth.authenticate(Some(token.as_bytes())), Err(AuthError::Expired));

        assert_eq!(expires_at(1_000, Duration::from_secs(60)), 1_060);
        assert_eq!(expires_at(1_000, Duration::from_secs(u64::MAX)), i64::MAX);
        assert_eq!(expires_at(i64::MAX - 1, Duration::from_secs(5)), i64::MAX);
    }
}
