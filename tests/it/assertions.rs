//! Signed verification assertions and the JWK Set (SPEC §7), checked with an independent JWT
//! library (`jsonwebtoken`'s EdDSA verification against the served JWK Set).

use axum::http::{Method, StatusCode};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};
use twofold::crypto::Keyring;
use twofold::service::ServiceSettings;

use crate::common::*;

const VERIFY: &str = "mutation($code: String!, $nonce: String) { verifyTotp(code: $code, nonce: $nonce) { \
                      __typename ... on TotpVerified { assertion verifiedAt } ... on InvalidCode { attemptsRemaining } } }";
const RECOVER: &str = "mutation($code: String!, $nonce: String) { useRecoveryCode(code: $code, nonce: $nonce) { \
                       __typename ... on TotpVerified { assertion } } }";

async fn jwks(app: &TestApp) -> JwkSet {
    let (status, headers, body) = app.send(Method::GET, "/.well-known/jwks.json", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let cache = headers["cache-control"].to_str().unwrap();
    assert!(cache.starts_with("public, max-age=") && cache[16..].parse::<u32>().unwrap() <= 300, "{cache}");
    let set: Value = serde_json::from_slice(&body).unwrap();
    for key in set["keys"].as_array().unwrap() {
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none(), "never a private part: {key}");
    }
    serde_json::from_value(set).unwrap()
}

/// Checks `assertion` against the served set; returns its claims.
async fn check(app: &TestApp, assertion: &str) -> Value {
    let header = decode_header(assertion).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("twofold-verification+jwt"));
    let set = jwks(app).await;
    let jwk = set.find(header.kid.as_deref().unwrap()).expect("the kid is in the JWK Set");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["http://127.0.0.1:8080"]);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    // The manual test clock is not the wall clock: check `exp` against the claims themselves.
    validation.validate_exp = false;
    decode::<Value>(assertion, &DecodingKey::from_jwk(jwk).unwrap(), &validation).expect("signature verifies").claims
}

#[tokio::test]
async fn a_verification_carries_an_assertion_that_verifies_against_the_jwk_set() {
    let app = TestApp::spawn().await;
    let (secret, codes) = enable_user(&app, "alice", -1).await;
    let t = token("alice");
    let res = app.graphql(Some(&t), VERIFY, json!({ "code": app.code(&secret, 0), "nonce": "n-0123456789" })).await;
    let verified = &res["data"]["verifyTotp"];
    assert_eq!(verified["__typename"], "TotpVerified", "{res}");
    let claims = check(&app, verified["assertion"].as_str().unwrap()).await;
    let now = START_MS / 1000;
    assert_eq!(claims["iss"], "http://127.0.0.1:8080");
    assert_eq!(claims["sub"], "alice");
    assert!(claims.get("aud").is_none());
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + 300);
    assert_eq!(claims["auth_time"], now);
    assert_eq!(claims["amr"], json!(["otp"]));
    assert_eq!(claims["nonce"], "n-0123456789");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));

    // A recovery code: `amr` says so; without a nonce there is no `nonce` claim.
    let res = app.graphql(Some(&t), RECOVER, json!({ "code": codes[0] })).await;
    let claims = check(&app, res["data"]["useRecoveryCode"]["assertion"].as_str().unwrap()).await;
    assert_eq!(claims["amr"], json!(["recovery_code"]));
    assert!(claims.get("nonce").is_none());

    // Storno: `{"verified":true,"assertion":…}`.
    let body = json!({ "code": app.code(&secret, 1), "type": "totp", "nonce": "storno-nonce" }).to_string();
    let (status, res) = app.json(Method::POST, "/api/v1/me/mfa/verify", Some(&t), Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["verified"], true);
    let claims = check(&app, res["assertion"].as_str().unwrap()).await;
    assert_eq!(claims["nonce"], "storno-nonce");
}

#[tokio::test]
async fn an_invalid_nonce_is_refused_before_the_code_is_checked() {
    let app = TestApp::spawn().await;
    let secret = enable_user(&app, "nina", -1).await.0;
    let t = token("nina");
    for nonce in [json!(""), json!("a b"), json!("é"), json!("x".repeat(256))] {
        let res = app.graphql(Some(&t), VERIFY, json!({ "code": "000000", "nonce": nonce })).await;
        assert_eq!(res["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{res}");
        let body = json!({ "code": "000000", "nonce": nonce }).to_string();
        let (status, res) = app.json(Method::POST, "/api/v1/me/mfa/verify", Some(&t), Some(&body)).await;
        assert_eq!((status, res), (StatusCode::BAD_REQUEST, json!({ "error": "Invalid nonce." })));
    }
    let body = json!({ "code": "000000", "nonce": 42 }).to_string();
    let (status, res) = app.json(Method::POST, "/api/v1/me/mfa/verify", Some(&t), Some(&body)).await;
    assert_eq!((status, res), (StatusCode::BAD_REQUEST, json!({ "error": "Invalid JSON body." })));
    // Nothing was counted: a wrong code now still has 4 attempts left.
    let wrong = if app.code(&secret, 0) == "000001" { "000002" } else { "000001" };
    let res = app.graphql(Some(&t), VERIFY, json!({ "code": wrong })).await;
    assert_eq!(res["data"]["verifyTotp"]["attemptsRemaining"], 4, "{res}");
}

#[tokio::test]
async fn every_assertion_has_its_own_jti() {
    let app = TestApp::spawn().await;
    let secret = enable_user(&app, "jay", -1).await.0;
    let t = token("jay");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        app.clock.advance_secs(30);
        let res = app.graphql(Some(&t), VERIFY, json!({ "code": app.code(&secret, 0) })).await;
        let assertion = res["data"]["verifyTotp"]["assertion"].as_str().unwrap_or_else(|| panic!("{res}")).to_owned();
        let claims = assertion.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&data_encoding::BASE64URL_NOPAD.decode(claims.as_bytes()).unwrap()).unwrap();
        assert!(seen.insert(claims["jti"].as_str().unwrap().to_owned()), "jti repeated");
    }
}

#[tokio::test]
async fn a_rotated_key_signs_new_assertions_while_the_old_one_stays_published() {
    let app = TestApp::spawn().await;
    let second = app.another_instance(Keyring::new(&ENCRYPTION_KEY, &[]), ServiceSettings::default()).await;
    let secret = enable_user(&app, "rory", -1).await.0;
    let t = token("rory");
    let res = app.graphql(Some(&t), VERIFY, json!({ "code": app.code(&secret, 0) })).await;
    let old = res["data"]["verifyTotp"]["assertion"].as_str().unwrap().to_owned();
    let old_kid = decode_header(&old).unwrap().kid.unwrap();
    // Two instances on one database publish the same set.
    assert_eq!(jwks(&app).await.keys.len(), 1);
    assert_eq!(serde_json::to_value(jwks(&app).await).unwrap(), serde_json::to_value(jwks(&second).await).unwrap());

    use twofold::clock::Clock;
    let new_kid =
        twofold::assertion::rotate(&app.store, &Keyring::new(&ENCRYPTION_KEY, &[]), app.clock.now_ms()).await.unwrap();
    assert_ne!(new_kid, old_kid);
    // Within 60 s every instance signs with the new key; the old key is still published.
    app.clock.advance_secs(31);
    let res = second.graphql(Some(&t), VERIFY, json!({ "code": app.code(&secret, 0) })).await;
    let new = res["data"]["verifyTotp"]["assertion"].as_str().unwrap_or_else(|| panic!("{res}")).to_owned();
    assert_eq!(decode_header(&new).unwrap().kid.unwrap(), new_kid);
    check(&app, &old).await;
    check(&second, &new).await;
    assert_eq!(jwks(&app).await.keys.len(), 2);
    // Long after the assertions' lifetime, only the new key is left.
    app.clock.advance_secs(3600);
    let set = jwks(&app).await;
    assert_eq!(set.keys.iter().map(|k| k.common.key_id.clone().unwrap()).collect::<Vec<_>>(), [new_kid]);
}

/// The signing key is stored sealed: its private part appears nowhere in the database.
#[tokio::test]
async fn the_private_key_is_sealed_at_rest() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    jwks(&app).await;
    let db = app.store.connection();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT kid, secret, key_id FROM assertion_keys",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let kid: String = rows[0].try_get("", "kid").unwrap();
    let sealed: Vec<u8> = rows[0].try_get("", "secret").unwrap();
    let key_id: String = rows[0].try_get("", "key_id").unwrap();
    let seed = Keyring::new(&ENCRYPTION_KEY, &[])
        .open(&twofold::assertion::sealing_context(&kid), &key_id, &sealed)
        .expect("sealed under the encryption key");
    assert_eq!(seed.len(), 32);
    assert!(!sealed.windows(32).any(|w| w == seed.as_slice()));
    if let Some(path) = twofold::store::sqlite_path(&app.db_url) {
        for file in [path.clone(), format!("{}-wal", path.display()).into()] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(!bytes.windows(32).any(|w| w == seed.as_slice()), "{} holds the private key", file.display());
        }
    }
}

/// An assertion is never a bearer token, even for a Twofold configured with a key that checks it.
#[tokio::test]
async fn an_assertion_is_not_a_bearer_token() {
    let app = TestApp::spawn().await;
    let secret = enable_user(&app, "bea", -1).await.0;
    let res = app.graphql(Some(&token("bea")), VERIFY, json!({ "code": app.code(&secret, 0) })).await;
    let assertion = res["data"]["verifyTotp"]["assertion"].as_str().unwrap().to_owned();
    let (status, body) = app.json(Method::GET, "/api/v1/me/mfa/status", Some(&assertion), None).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::UNAUTHORIZED, json!(401)));
    let set = jwks(&app).await;
    let key = DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let auth = twofold::auth::Authenticator::new(key, vec![Algorithm::EdDSA], &Default::default());
    let bearer = format!("Bearer {assertion}");
    assert!(auth.authenticate(Some(bearer.as_bytes())).is_err());
}
