//! Enrolment through GraphQL and both REST dialects (SPEC §2 "Begin enrolment", §3, §4, §5).

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

const SETUP: &str = "mutation { setupTotp { __typename ... on TotpSetup { secret qrCode otpauthUri expiresAt } ... on UserError { code message } } }";
const ENABLE: &str = "mutation($code: String!) { enableTotp(code: $code) { __typename ... on TotpEnabled { recoveryCodes enabledAt status { enabled } } ... on UserError { code message } ... on InvalidCode { attemptsRemaining } } }";

#[test]
fn totp_helper_matches_rfc6238() {
    // RFC 6238 Appendix B, SHA1, 8 digits: the independent helper used by every test.
    let secret = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
    for (t, code) in [(59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"), (20000000000, "65353130")] {
        assert_eq!(totp(&secret, t, 8, 30), code);
    }
}

fn assert_secret(secret: &str) {
    assert_eq!(secret.len(), 32, "{secret}");
    assert!(secret.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)), "{secret}");
    assert_eq!(data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).unwrap().len(), 20);
}

fn assert_qr_matches(qr: &str, uri: &str) {
    let (w, h, color, depth, text, pixels) = decode_qr(qr);
    assert_eq!((w, h), (300, 300));
    assert_eq!(color, png::ColorType::Grayscale, "greyscale, not RGBA");
    assert!(matches!(depth, png::BitDepth::One | png::BitDepth::Eight));
    assert_eq!(text, uri, "the QR code encodes the URI byte for byte");
    // Every module is the same whole number of pixels, centred, with a ≥ 4-module quiet zone:
    // find the symbol's bounding box and the width of the top-left finder's dark border.
    let dark = |x: usize, y: usize| pixels[y * 300 + x] < 128;
    let top = (0..300).find(|&y| (0..300).any(|x| dark(x, y))).unwrap();
    let left = (0..300).find(|&x| (0..300).any(|y| dark(x, y))).unwrap();
    let bottom = (0..300).rev().find(|&y| (0..300).any(|x| dark(x, y))).unwrap();
    let right = (0..300).rev().find(|&x| (0..300).any(|y| dark(x, y))).unwrap();
    let size = right - left + 1;
    assert_eq!(size, bottom - top + 1, "square symbol");
    let finder = (left..).take_while(|&x| dark(x, top)).count();
    assert_eq!(finder % 7, 0, "the finder pattern is 7 modules wide");
    let module = finder / 7;
    assert_eq!(size % module, 0, "whole modules");
    assert!(
        left >= 4 * module && top >= 4 * module && 299 - right >= 4 * module && 299 - bottom >= 4 * module,
        "quiet zone"
    );
    assert!(left.abs_diff(299 - right) <= 1 && top.abs_diff(299 - bottom) <= 1, "centred");
    assert!(pixels.iter().all(|&p| p == 0 || p == 255), "pure black and white");
}

#[tokio::test]
async fn graphql_setup_returns_secret_uri_and_a_qr_that_decodes_to_the_uri() {
    let app = TestApp::spawn().await;
    let alice = token("alice");
    let res = app.graphql(Some(&alice), SETUP, json!({})).await;
    let setup = &res["data"]["setupTotp"];
    assert_eq!(setup["__typename"], "TotpSetup", "{res}");
    let secret = setup["secret"].as_str().unwrap();
    assert_secret(secret);
    let uri = setup["otpauthUri"].as_str().unwrap();
    assert_eq!(
        uri,
        format!(
            "otpauth://totp/Twofold:alice%40example.com?secret={secret}&issuer=Twofold&algorithm=SHA1&digits=6&period=30"
        )
    );
    assert_qr_matches(setup["qrCode"].as_str().unwrap(), uri);
    assert_eq!(setup["expiresAt"], "2026-11-25T00:10:15Z", "start + 10 minutes, RFC 3339 with Z");

    // A code computed independently from the returned secret enables two-factor.
    let res = app.graphql(Some(&alice), ENABLE, json!({ "code": app.code(secret, 0) })).await;
    assert_eq!(res["data"]["enableTotp"]["__typename"], "TotpEnabled", "{res}");
    assert_eq!(res["data"]["enableTotp"]["status"]["enabled"], true);
}

#[tokio::test]
async fn prepare_two_factor_returns_only_the_secret() {
    let app = TestApp::spawn().await;
    let q = "mutation { prepareTwoFactor { __typename ... on TwoFactorSecret { secret expiresAt } } }";
    let res = app.graphql(Some(&token("bob")), q, json!({})).await;
    assert_eq!(res["data"]["prepareTwoFactor"]["__typename"], "TwoFactorSecret");
    assert_secret(res["data"]["prepareTwoFactor"]["secret"].as_str().unwrap());
}

#[tokio::test]
async fn storno_setup_has_the_exact_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = app.json(Method::POST, "/api/v1/me/mfa/totp/setup", Some(&token("carol")), None).await;
    assert_eq!(status, StatusCode::OK);
    let obj = body.as_object().unwrap();
    let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["otpauthUri", "qrCode", "secret"]);
    let secret = body["secret"].as_str().unwrap();
    assert_secret(secret);
    let uri = body["otpauthUri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Twofold:carol%40example.com?secret="));
    assert_qr_matches(body["qrCode"].as_str().unwrap(), uri);
}

#[tokio::test]
async fn cloudreve_prepare_has_the_exact_envelope_on_both_paths() {
    let app = TestApp::spawn().await;
    for path in ["/user/setting/2fa", "/api/v4/user/setting/2fa"] {
        let (status, body) = app.json(Method::GET, path, Some(&token("dave")), None).await;
        assert_eq!(status, StatusCode::OK);
        let secret = body["data"].as_str().unwrap().to_owned();
        assert_secret(&secret);
        assert_eq!(body, json!({ "code": 0, "data": secret, "msg": "" }), "exactly these keys");
    }
}

#[tokio::test]
async fn the_secret_seen_through_rest_is_the_pending_one_graphql_sees() {
    let app = TestApp::spawn().await;
    let erin = token("erin");
    let (_, body) = app.json(Method::GET, "/user/setting/2fa", Some(&erin), None).await;
    let secret = body["data"].as_str().unwrap().to_owned();
    let status = app.graphql(Some(&erin), "{ twoFactor { enabled pendingSetupExpiresAt } }", json!({})).await;
    assert_eq!(
        status["data"]["twoFactor"],
        json!({ "enabled": false, "pendingSetupExpiresAt": "2026-11-25T00:10:15Z" })
    );
    let res = app.graphql(Some(&erin), ENABLE, json!({ "code": app.code(&secret, 0) })).await;
    assert_eq!(res["data"]["enableTotp"]["__typename"], "TotpEnabled", "{res}");
}

#[tokio::test]
async fn re_enrolment_overwrites_the_pending_secret() {
    let app = TestApp::spawn().await;
    let frank = token("frank");
    let first =
        app.graphql(Some(&frank), SETUP, json!({})).await["data"]["setupTotp"]["secret"].as_str().unwrap().to_owned();
    let (_, storno) = app.json(Method::POST, "/api/v1/me/mfa/totp/setup", Some(&frank), None).await;
    let second = storno["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let old = app.graphql(Some(&frank), ENABLE, json!({ "code": app.code(&first, 0) })).await;
    assert_eq!(old["data"]["enableTotp"]["__typename"], "InvalidCode", "the old QR stopped working: {old}");
    let new = app.graphql(Some(&frank), ENABLE, json!({ "code": app.code(&second, 0) })).await;
    assert_eq!(new["data"]["enableTotp"]["__typename"], "TotpEnabled", "{new}");
}

#[tokio::test]
async fn pending_secrets_expire() {
    let app = TestApp::spawn().await;
    let gina = token("gina");
    let secret =
        app.graphql(Some(&gina), SETUP, json!({})).await["data"]["setupTotp"]["secret"].as_str().unwrap().to_owned();
    app.clock.advance_secs(601);
    let res = app.graphql(Some(&gina), ENABLE, json!({ "code": app.code(&secret, 0) })).await;
    assert_eq!(res["data"]["enableTotp"]["__typename"], "NoPendingSetup", "{res}");
    let status = app.graphql(Some(&gina), "{ twoFactor { pendingSetupExpiresAt } }", json!({})).await;
    assert_eq!(status["data"]["twoFactor"]["pendingSetupExpiresAt"], Value::Null);
}

#[tokio::test]
async fn already_enabled_gives_each_dialects_conflict() {
    let app = TestApp::spawn().await;
    enable_user(&app, "henry", 0).await;
    let henry = token("henry");

    let res = app.graphql(Some(&henry), SETUP, json!({})).await;
    assert_eq!(res["data"]["setupTotp"]["__typename"], "TotpAlreadyEnabled");
    assert_eq!(res["data"]["setupTotp"]["code"], "TOTP_ALREADY_ENABLED");
    let res = app.graphql(Some(&henry), "mutation { prepareTwoFactor { __typename } }", json!({})).await;
    assert_eq!(res["data"]["prepareTwoFactor"]["__typename"], "TotpAlreadyEnabled");

    let (status, body) = app.json(Method::POST, "/api/v1/me/mfa/totp/setup", Some(&henry), None).await;
    assert_eq!((status, body), (StatusCode::CONFLICT, json!({ "error": "TOTP is already enabled." })));

    for path in ["/user/setting/2fa", "/api/v4/user/setting/2fa"] {
        let (status, body) = app.json(Method::GET, path, Some(&henry), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["code"], 409);
        assert_eq!(body["msg"], "Two-factor authentication is already enabled");
        assert!(body["correlation_id"].as_str().is_some_and(|c| uuid::Uuid::parse_str(c).is_ok()));
        assert!(body.get("data").is_none() && body.get("error").is_none(), "absent keys are omitted: {body}");
    }
}

#[tokio::test]
async fn cloudreve_echoes_the_client_correlation_id() {
    let app = TestApp::spawn().await;
    let (_, headers, bytes) =
        app.send(Method::GET, "/user/setting/2fa", None, None, &[("X-Cr-Correlation-Id", "client-id-123")]).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body, json!({ "code": 401, "msg": "Login required", "correlation_id": "client-id-123" }));
    assert_eq!(headers["x-cr-correlation-id"], "client-id-123");
}

#[tokio::test]
async fn the_account_name_comes_from_email_then_username_then_sub() {
    let app = TestApp::spawn().await;
    let now = unix_now();
    let cases = [
        (
            json!({ "sub": "u1", "email": "a b@example.com", "preferred_username": "x", "exp": now + 60 }),
            "a%20b%40example.com",
        ),
        (json!({ "sub": "u2", "preferred_username": "Zoë", "exp": now + 60 }), "Zo%C3%AB"),
        (json!({ "sub": "u3:x", "exp": now + 60 }), "u3x"),
    ];
    for (claims, account) in cases {
        let (_, body) = app.json(Method::POST, "/api/v1/me/mfa/totp/setup", Some(&sign(claims)), None).await;
        let uri = body["otpauthUri"].as_str().unwrap();
        assert!(uri.starts_with(&format!("otpauth://totp/Twofold:{account}?secret=")), "{uri}");
    }
}

/// A 3,000-character e-mail claim: setup works in both dialects, the label's account part is
/// shortened to 128 bytes at a character boundary, and the QR code still decodes to the URI.
#[tokio::test]
async fn any_account_name_enrols() {
    let app = TestApp::spawn().await;
    let email = format!("{}é@example.com", "a".repeat(127));
    let t =
        sign(json!({ "sub": "longname", "email": format!("{email}{}", "x".repeat(3000)), "exp": unix_now() + 600 }));
    let res = app.graphql(Some(&t), SETUP, json!({})).await;
    let setup = &res["data"]["setupTotp"];
    assert_eq!(setup["__typename"], "TotpSetup", "{res}");
    let uri = setup["otpauthUri"].as_str().unwrap();
    // 127 'a' fill 127 bytes; 'é' (2 bytes) would make 129: the account stops before it.
    assert!(uri.starts_with(&format!("otpauth://totp/Twofold:{}?secret=", "a".repeat(127))), "{uri}");
    assert_qr_matches(setup["qrCode"].as_str().unwrap(), uri);
    let (status, body) = app.json(Method::POST, "/api/v1/me/mfa/totp/setup", Some(&t), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_qr_matches(body["qrCode"].as_str().unwrap(), body["otpauthUri"].as_str().unwrap());
    // The secret returned last is the pending one: it enables.
    let secret = body["secret"].as_str().unwrap();
    let res = app.graphql(Some(&t), ENABLE, json!({ "code": app.code(secret, 0) })).await;
    assert_eq!(res["data"]["enableTotp"]["__typename"], "TotpEnabled", "{res}");
}
