//! Every authentication failure gets each dialect's unauthenticated answer (SPEC §1, §3, §4, §5).

use crate::common::*;
use axum::http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn base64url(v: &Value) -> String {
    data_encoding::BASE64URL_NOPAD.encode(v.to_string().as_bytes())
}

/// (name, Authorization token or None, Storno message, Cloudreve code)
fn bad_tokens() -> Vec<(&'static str, Option<String>, &'static str, i64)> {
    let now = unix_now();
    let claims = json!({ "sub": "mallory", "exp": now + 3600 });
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
    )
    .unwrap();
    let hs512 =
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &EncodingKey::from_secret(JWT_SECRET.as_bytes()))
            .unwrap();
    let alg_none = format!("{}.{}.", base64url(&json!({ "alg": "none", "typ": "JWT" })), base64url(&claims));
    let genuine = sign(claims.clone());
    let (head_payload, _) = genuine.rsplit_once('.').unwrap();
    let tampered = format!(
        "{}.{}",
        head_payload.rsplit_once('.').unwrap().0,
        base64url(&json!({ "sub": "admin", "exp": now + 3600 }))
    ) + "."
        + genuine.rsplit('.').next().unwrap();
    vec![
        ("missing", None, "JWT Token not found", 401),
        ("malformed", Some("not-a-jwt".into()), "Invalid JWT Token", 401),
        ("expired", Some(sign(json!({ "sub": "mallory", "exp": now - 3600 }))), "Expired JWT Token", 401),
        ("no exp", Some(sign(json!({ "sub": "mallory" }))), "Invalid JWT Token", 401),
        (
            "not yet valid",
            Some(sign(json!({ "sub": "mallory", "exp": now + 3600, "nbf": now + 600 }))),
            "Invalid JWT Token",
            401,
        ),
        ("empty sub", Some(sign(json!({ "sub": "", "exp": now + 3600 }))), "Invalid JWT Token", 401),
        ("numeric sub", Some(sign(json!({ "sub": 42, "exp": now + 3600 }))), "Invalid JWT Token", 401),
        (
            "sub over 255 bytes",
            Some(sign(json!({ "sub": "x".repeat(256), "exp": now + 3600 }))),
            "Invalid JWT Token",
            401,
        ),
        ("wrong key", Some(wrong_key), "Invalid JWT Token", 401),
        ("alg none", Some(alg_none), "Invalid JWT Token", 401),
        ("algorithm not allowed", Some(hs512), "Invalid JWT Token", 401),
        ("tampered payload", Some(tampered), "Invalid JWT Token", 401),
        (
            "refresh token",
            Some(sign(json!({ "sub": "mallory", "exp": now + 3600, "token_type": "refresh" }))),
            "Invalid JWT Token",
            40020,
        ),
    ]
}

#[tokio::test]
async fn every_auth_failure_gets_each_dialects_unauthenticated_answer() {
    let app = TestApp::spawn().await;
    for (name, token, storno_message, cloudreve_code) in bad_tokens() {
        let t = token.as_deref();
        // Storno
        for (method, path, body) in [
            (Method::POST, "/api/v1/me/mfa/totp/setup", None),
            (Method::POST, "/api/v1/me/mfa/verify", Some(r#"{"code":"123456"}"#)),
            (Method::GET, "/api/v1/me/mfa/status", None),
        ] {
            let (status, body) = app.json(method, path, t, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} {path}");
            assert_eq!(body, json!({ "code": 401, "message": storno_message }), "{name} {path}");
        }
        // Cloudreve
        for path in ["/user/setting/2fa", "/api/v4/user/setting/2fa"] {
            let (status, body) = app.json(Method::GET, path, t, None).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert_eq!(body["code"], cloudreve_code, "{name}: {body}");
            let msg = if cloudreve_code == 401 { "Login required" } else { "Invalid token type" };
            assert_eq!(body["msg"], msg, "{name}");
            assert!(body["correlation_id"].is_string());
        }
        let (_, body) = app
            .json(Method::PATCH, "/user/setting", t, Some(r#"{"two_fa_enabled":true,"two_fa_code":"123456"}"#))
            .await;
        assert_eq!(body["code"], cloudreve_code, "{name}");
        // GraphQL: HTTP 200 with a top-level UNAUTHENTICATED error.
        let res = app.graphql(t, "mutation { setupTotp { __typename } }", json!({})).await;
        assert_eq!(res["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{name}: {res}");
        assert_eq!(res["data"], Value::Null, "{name}");
        let res = app.graphql(t, "{ twoFactor { enabled } }", json!({})).await;
        assert_eq!(res["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{name}: {res}");
    }
    // Nothing was created for anyone.
    let res = app
        .graphql(Some(&token("mallory")), "{ twoFactor { enabled pendingSetupExpiresAt events { kind } } }", json!({}))
        .await;
    assert_eq!(res["data"]["twoFactor"], json!({ "enabled": false, "pendingSetupExpiresAt": null, "events": [] }));
}

#[tokio::test]
async fn an_access_token_type_is_accepted_and_introspection_needs_no_token() {
    let app = TestApp::spawn().await;
    let t = sign(json!({ "sub": "oscar", "exp": unix_now() + 60, "token_type": "access" }));
    let (status, _) = app.json(Method::POST, "/api/v1/me/mfa/totp/setup", Some(&t), None).await;
    assert_eq!(status, StatusCode::OK);
    let res = app.graphql(None, "{ __typename __schema { queryType { name } } }", json!({})).await;
    assert_eq!(res["data"], json!({ "__typename": "Query", "__schema": { "queryType": { "name": "Query" } } }));
    let res = app.graphql(Some("garbage"), "{ __type(name: \"UserError\") { kind } }", json!({})).await;
    assert_eq!(res["data"]["__type"]["kind"], "INTERFACE");
}

#[tokio::test]
async fn issuer_audience_and_leeway_are_enforced() {
    use twofold::auth::{AuthError, Authenticator, ClaimRules};
    let auth = Authenticator::new(
        jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        vec![Algorithm::HS256],
        &ClaimRules { issuer: Some("https://idp".into()), audience: Some("twofold".into()), leeway_seconds: 30 },
    );
    let now = unix_now();
    let check = |claims: Value| auth.authenticate(Some(format!("Bearer {}", sign(claims)).as_bytes()));
    assert!(check(json!({ "sub": "a", "exp": now + 60, "iss": "https://idp", "aud": "twofold" })).is_ok());
    assert_eq!(
        check(json!({ "sub": "a", "exp": now + 60, "iss": "https://evil", "aud": "twofold" })),
        Err(AuthError::Invalid)
    );
    assert_eq!(
        check(json!({ "sub": "a", "exp": now + 60, "iss": "https://idp", "aud": "other" })),
        Err(AuthError::Invalid)
    );
    assert_eq!(check(json!({ "sub": "a", "exp": now + 60, "aud": "twofold" })), Err(AuthError::Invalid));
    // Within the 30 s leeway an expired token still passes; beyond it, it does not.
    assert!(check(json!({ "sub": "a", "exp": now - 10, "iss": "https://idp", "aud": "twofold" })).is_ok());
    assert_eq!(
        check(json!({ "sub": "a", "exp": now - 120, "iss": "https://idp", "aud": "twofold" })),
        Err(AuthError::Expired)
    );
}
