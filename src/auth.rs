//! Bearer JWT authentication: `Authorization: Bearer <jwt>` → [`Viewer`].
//!
//! The failure reason is logged at debug level and never returned in detail to callers.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// `sub`: the host application's user id.
    pub user_id: String,
    /// Shown in the authenticator app: the first present of `email`, `preferred_username`, `sub`.
    pub account_name: String,
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
    token_type: Option<Value>,
}

/// Verifies bearer tokens with one key and an explicit algorithm allow-list.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("algorithms", &self.validation.algorithms).finish_non_exhaustive()
    }
}

/// Claim checks besides the signature.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
}

impl Authenticator {
    /// `algorithms` must be non-empty and of the key's family (checked by the configuration).
    pub fn new(key: DecodingKey, algorithms: Vec<Algorithm>, rules: &ClaimRules) -> Self {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = rules.leeway_seconds;
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
        Authenticator { key, validation }
    }

    /// Authenticates the value of an `Authorization` header.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Viewer, AuthError> {
        let token = bearer_token(authorization).ok_or(AuthError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            let reason = match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            };
            tracing::debug!(error = %e, "bearer token rejected");
            reason
        })?;
        let claims = data.claims;
        let sub = match claims.sub {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s,
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
        Ok(Viewer { user_id: sub, account_name })
    }
}

fn bearer_token(header: Option<&[u8]>) -> Option<&str> {
    let value = std::str::from_utf8(header?).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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
    pub iat: i64,
    pub exp: i64,
}

/// Signs `claims` with `key` using `algorithm`.
pub fn mint(
    algorithm: Algorithm,
    key: &EncodingKey,
    claims: &MintClaims,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key)
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
}
