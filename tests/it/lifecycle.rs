//! The whole lifecycle through GraphQL and both REST dialects (SPEC §2–§5), with codes from an
//! independent TOTP implementation and an injectable clock.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use twofold::service::ServiceSettings;
use twofold::totp::{Algorithm, TotpParams};

const SETUP: &str = "mutation { setupTotp { __typename ... on TotpSetup { secret otpauthUri } } }";
const ENABLE: &str = "mutation($code: String!) { enableTotp(code: $code) { __typename ... on TotpEnabled { recoveryCodes enabledAt status { id enabled recoveryCodesRemaining } } ... on UserError { code message } ... on InvalidCode { attemptsRemaining } ... on TooManyAttempts { retryAfterSeconds } } }";
const VERIFY: &str = "mutation($code: String!) { verifyTotp(code: $code) { __typename ... on TotpVerified { verifiedAt method recoveryCodesRemaining status { id enabled } } ... on UserError { code message } ... on InvalidCode { attemptsRemaining } ... on CodeAlreadyUsed { attemptsRemaining } ... on TooManyAttempts { retryAfterSeconds } } }";
const RECOVER: &str = "mutation($code: String!) { useRecoveryCode(code: $code) { __typename ... on TotpVerified { method recoveryCodesRemaining } ... on UserError { code } ... on InvalidCode { attemptsRemaining } } }";
const REGENERATE: &str = "mutation($code: String!) { regenerateRecoveryCodes(code: $code) { __typename ... on RecoveryCodes { recoveryCodes } ... on UserError { code } } }";
const DISABLE: &str = "mutation($code: String!) { disableTotp(code: $code) { __typename ... on TotpDisabled { disabledAt status { id enabled recoveryCodesRemaining } } ... on UserError { code } } }";
const STATUS: &str = "{ twoFactor { id enabled enabledAt pendingSetupExpiresAt recoveryCodesRemaining algorithm digits period events(first: 50) { kind at correlationId } } }";

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect()
}

async fn run(app: &TestApp, t: &str, query: &str, code: &str, field: &str) -> Value {
    let res = app.graphql(Some(t), query, json!({ "code": code })).await;
    assert!(res.get("errors").is_none(), "{res}");
    res["data"][field].clone()
}

#[tokio::test]
async fn graphql_lifecycle_end_to_end() {
    let app = TestApp::spawn().await;
    let t = token("alice");
    let secret =
        app.graphql(Some(&t), SETUP, json!({})).await["data"]["setupTotp"]["secret"].as_str().unwrap().to_owned();

    // Enable → 10 recovery codes, shown once.
    let enabled = run(&app, &t, ENABLE, &app.code(&secret, 0), "enableTotp").await;
    assert_eq!(enabled["__typename"], "TotpEnabled", "{enabled}");
    let codes = strings(&enabled["recoveryCodes"]);
    assert_eq!(codes.len(), 10);
    assert_eq!(enabled["status"]["recoveryCodesRemaining"], 10);
    let status_id = enabled["status"]["id"].clone();

    // The enabling code's step is used: verifying it again is a replay.
    let replay = run(&app, &t, VERIFY, &app.code(&secret, 0), "verifyTotp").await;
    assert_eq!(replay["__typename"], "CodeAlreadyUsed", "{replay}");
    assert_eq!(replay["attemptsRemaining"], 4);

    // The next step verifies (within the ±1 window), once.
    let next = app.code(&secret, 1);
    let ok = run(&app, &t, VERIFY, &next, "verifyTotp").await;
    assert_eq!(ok["__typename"], "TotpVerified", "{ok}");
    assert_eq!(ok["method"], "TOTP");
    assert_eq!(ok["status"], json!({ "id": status_id, "enabled": true }));
    let again = run(&app, &t, VERIFY, &next, "verifyTotp").await;
    assert_eq!(again["__typename"], "CodeAlreadyUsed");

    // Half a minute later the following code is accepted, typed with a space.
    app.clock.advance_secs(30);
    let spaced = app.code(&secret, 1);
    let spaced = format!("{} {}", &spaced[..3], &spaced[3..]);
    assert_eq!(run(&app, &t, VERIFY, &spaced, "verifyTotp").await["__typename"], "TotpVerified");

    // A wrong code is InvalidCode with the attempts left.
    let wrong = run(&app, &t, VERIFY, "000000", "verifyTotp").await;
    if wrong["__typename"] == "InvalidCode" {
        assert_eq!(wrong["code"], "INVALID_CODE");
        assert_eq!(wrong["attemptsRemaining"], 4, "a success reset the counter");
    }

    // A recovery code works once (any case, without dashes), not twice.
    let rc = codes[0].to_lowercase().replace('-', "");
    let used = run(&app, &t, RECOVER, &rc, "useRecoveryCode").await;
    assert_eq!(used, json!({ "__typename": "TotpVerified", "method": "RECOVERY_CODE", "recoveryCodesRemaining": 9 }));
    let twice = run(&app, &t, RECOVER, &codes[0], "useRecoveryCode").await;
    assert_eq!(twice["__typename"], "InvalidCode");

    // Regenerate (needs a current TOTP code) replaces the set.
    app.clock.advance_secs(30);
    let regenerated = run(&app, &t, REGENERATE, &app.code(&secret, 1), "regenerateRecoveryCodes").await;
    assert_eq!(regenerated["__typename"], "RecoveryCodes", "{regenerated}");
    let new_codes = strings(&regenerated["recoveryCodes"]);
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|c| !codes.contains(c)));
    assert_eq!(
        run(&app, &t, RECOVER, &codes[1], "useRecoveryCode").await["__typename"],
        "InvalidCode",
        "old set is gone"
    );

    // Disable with a recovery code; everything is deleted.
    let disabled = run(&app, &t, DISABLE, &new_codes[3], "disableTotp").await;
    assert_eq!(disabled["__typename"], "TotpDisabled", "{disabled}");
    assert_eq!(disabled["status"], json!({ "id": status_id, "enabled": false, "recoveryCodesRemaining": 0 }));
    assert_eq!(run(&app, &t, VERIFY, &app.code(&secret, 1), "verifyTotp").await["__typename"], "TotpNotEnabled");
    assert_eq!(run(&app, &t, RECOVER, &new_codes[4], "useRecoveryCode").await["__typename"], "TotpNotEnabled");

    // Setup works again, with a new secret.
    let again = app.graphql(Some(&t), SETUP, json!({})).await;
    assert_eq!(again["data"]["setupTotp"]["__typename"], "TotpSetup");
    assert_ne!(again["data"]["setupTotp"]["secret"], secret.as_str());

    // The audit trail, newest first, outlives disable and holds no code or secret.
    let status = app.graphql(Some(&t), STATUS, json!({})).await;
    let events = status["data"]["twoFactor"]["events"].as_array().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let mut expected = vec![
        "SETUP_STARTED",
        "ENABLED",
        "CODE_REPLAYED",
        "VERIFIED",
        "CODE_REPLAYED",
        "VERIFIED",
        "VERIFY_FAILED",
        "RECOVERY_CODE_USED",
        "VERIFY_FAILED",
        "RECOVERY_CODES_REGENERATED",
        "VERIFY_FAILED",
        "RECOVERY_CODE_USED",
        "DISABLED",
        "SETUP_STARTED",
    ];
    if wrong["__typename"] != "InvalidCode" {
        expected.remove(6);
    }
    expected.reverse();
    assert_eq!(kinds, expected);
    let text = status.to_string();
    assert!(!text.contains(&secret) && !codes.iter().chain(&new_codes).any(|c| text.contains(c.as_str())));
    assert!(events.iter().all(|e| e["correlationId"].as_str().is_some_and(|c| !c.is_empty())));
}

#[tokio::test]
async fn disable_with_a_totp_code_and_the_not_enabled_errors() {
    let app = TestApp::spawn().await;
    let t = token("bob");
    assert_eq!(run(&app, &t, VERIFY, "123456", "verifyTotp").await["__typename"], "TotpNotEnabled");
    assert_eq!(run(&app, &t, DISABLE, "123456", "disableTotp").await["__typename"], "TotpNotEnabled");
    assert_eq!(run(&app, &t, REGENERATE, "123456", "regenerateRecoveryCodes").await["__typename"], "TotpNotEnabled");
    assert_eq!(run(&app, &t, ENABLE, "123456", "enableTotp").await["__typename"], "NoPendingSetup");
    let secret =
        app.graphql(Some(&t), SETUP, json!({})).await["data"]["setupTotp"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(run(&app, &t, ENABLE, &app.code(&secret, -1), "enableTotp").await["__typename"], "TotpEnabled");
    assert_eq!(run(&app, &t, ENABLE, &app.code(&secret, 0), "enableTotp").await["__typename"], "TotpAlreadyEnabled");
    // The code of the step after the enabling one disables.
    let disabled = run(&app, &t, DISABLE, &app.code(&secret, 0), "disableTotp").await;
    assert_eq!(disabled["__typename"], "TotpDisabled", "{disabled}");
}

#[tokio::test]
async fn lockout_refuses_even_the_correct_code_until_it_expires() {
    let app = TestApp::spawn().await;
    let t = token("carol");
    let secret =
        app.graphql(Some(&t), SETUP, json!({})).await["data"]["setupTotp"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(run(&app, &t, ENABLE, &app.code(&secret, 0), "enableTotp").await["__typename"], "TotpEnabled");
    for remaining in (0..5).rev() {
        let res = run(&app, &t, VERIFY, "999999", "verifyTotp").await;
        assert_eq!(res["__typename"], "InvalidCode", "{res}");
        assert_eq!(res["attemptsRemaining"], remaining);
    }
    // Locked: every code-checking operation refuses without checking the code.
    let good = app.code(&secret, 1);
    let locked = run(&app, &t, VERIFY, &good, "verifyTotp").await;
    assert_eq!(locked["__typename"], "TooManyAttempts", "{locked}");
    assert_eq!(locked["retryAfterSeconds"], 300);
    assert_eq!(run(&app, &t, REGENERATE, &good, "regenerateRecoveryCodes").await["__typename"], "TooManyAttempts");
    assert_eq!(run(&app, &t, DISABLE, &good, "disableTotp").await["__typename"], "TooManyAttempts");
    let (status, headers, body) = app
        .send(Method::POST, "/api/v1/me/mfa/verify", Some(&t), Some(&json!({ "code": good }).to_string()), &[])
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "300");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({ "error": "Too many attempts. Try again in 300 seconds." })
    );
    let (_, cloudreve) = app
        .json(
            Method::PATCH,
            "/user/setting",
            Some(&t),
            Some(&json!({ "two_fa_enabled": false, "two_fa_code": good }).to_string()),
        )
        .await;
    assert_eq!(cloudreve["code"], 429);
    assert_eq!(cloudreve["msg"], "Too many attempts, retry in 300 seconds");

    app.clock.advance_secs(299);
    let res = run(&app, &t, VERIFY, &app.code(&secret, 0), "verifyTotp").await;
    assert_eq!(
        res,
        json!({ "__typename": "TooManyAttempts", "code": "TOO_MANY_ATTEMPTS", "message": res["message"], "retryAfterSeconds": 1 })
    );
    app.clock.advance_secs(1);
    let res = run(&app, &t, VERIFY, &app.code(&secret, 0), "verifyTotp").await;
    assert_eq!(res["__typename"], "TotpVerified", "{res}");
    let wrong = run(&app, &t, VERIFY, "999999", "verifyTotp").await;
    assert_eq!(wrong["attemptsRemaining"], 4, "the counter starts over");

    let events = app.graphql(Some(&t), STATUS, json!({})).await["data"]["twoFactor"]["events"].clone();
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(&kinds[..4], ["VERIFY_FAILED", "VERIFIED", "LOCKED_OUT", "VERIFY_FAILED"]);
    assert_eq!(kinds.iter().filter(|k| **k == "LOCKED_OUT").count(), 1);
}

#[tokio::test]
async fn recovery_codes_and_enable_failures_count_towards_the_lockout() {
    let app = TestApp::spawn().await;
    let t = token("dan");
    let secret =
        app.graphql(Some(&t), SETUP, json!({})).await["data"]["setupTotp"]["secret"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        assert_eq!(run(&app, &t, ENABLE, "000000", "enableTotp").await["__typename"], "InvalidCode");
    }
    let res = run(&app, &t, ENABLE, &app.code(&secret, 0), "enableTotp").await;
    assert_eq!(res["__typename"], "TooManyAttempts", "{res}");
    app.clock.advance_secs(300);
    let enabled = run(&app, &t, ENABLE, &app.code(&secret, 0), "enableTotp").await;
    assert_eq!(enabled["__typename"], "TotpEnabled");
    for _ in 0..5 {
        assert_eq!(run(&app, &t, RECOVER, "AAAA-BBBB-CCCC", "useRecoveryCode").await["__typename"], "InvalidCode");
    }
    let code = strings(&enabled["recoveryCodes"])[0].clone();
    assert_eq!(run(&app, &t, RECOVER, &code, "useRecoveryCode").await["__typename"], "TooManyAttempts");
}

#[tokio::test]
async fn storno_lifecycle_end_to_end() {
    let app = TestApp::spawn().await;
    let t = token("erin");
    let post = |path: &'static str, body: Value| {
        let app = &app;
        let t = t.clone();
        async move { app.json(Method::POST, path, Some(&t), Some(&body.to_string())).await }
    };
    let (_, setup) = app.json(Method::POST, "/api/v1/me/mfa/totp/setup", Some(&t), None).await;
    let secret = setup["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        post("/api/v1/me/mfa/totp/enable", json!({ "code": "000000" })).await,
        (StatusCode::UNPROCESSABLE_ENTITY, json!({ "error": "Invalid code. Please try again." }))
    );
    let (status, enabled) = post("/api/v1/me/mfa/totp/enable", json!({ "code": app.code(&secret, 0) })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(enabled["enabled"], true);
    let backup = strings(&enabled["backupCodes"]);
    assert_eq!(backup.len(), 10);
    assert_eq!(enabled.as_object().unwrap().len(), 2);
    assert_eq!(
        post("/api/v1/me/mfa/totp/enable", json!({ "code": app.code(&secret, 1) })).await,
        (StatusCode::CONFLICT, json!({ "error": "TOTP is already enabled." }))
    );
    assert_eq!(
        app.json(Method::GET, "/api/v1/me/mfa/status", Some(&t), None).await,
        (StatusCode::OK, json!({ "totpEnabled": true, "backupCodesRemaining": 10, "passkeysCount": 0 }))
    );

    let code = app.code(&secret, 1);
    let verified = |(status, body): (StatusCode, Value)| {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["verified"], true);
        let fields: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["assertion", "verified"], "an added field only");
        assert_eq!(body["assertion"].as_str().unwrap().split('.').count(), 3, "a compact JWS");
    };
    verified(post("/api/v1/me/mfa/verify", json!({ "code": code, "type": "totp" })).await);
    assert_eq!(
        post("/api/v1/me/mfa/verify", json!({ "code": code })).await,
        (StatusCode::UNAUTHORIZED, json!({ "error": "Invalid code." })),
        "replay"
    );
    verified(post("/api/v1/me/mfa/verify", json!({ "code": backup[0], "type": "backup" })).await);
    assert_eq!(
        post("/api/v1/me/mfa/verify", json!({ "code": backup[0], "type": "backup" })).await,
        (StatusCode::UNAUTHORIZED, json!({ "error": "Invalid code." }))
    );
    assert_eq!(app.json(Method::GET, "/api/v1/me/mfa/status", Some(&t), None).await.1["backupCodesRemaining"], 9);

    app.clock.advance_secs(30);
    assert_eq!(
        post("/api/v1/me/mfa/backup-codes/regenerate", json!({ "code": "000000" })).await,
        (StatusCode::UNPROCESSABLE_ENTITY, json!({ "error": "Invalid code. Please try again." }))
    );
    let (status, regenerated) =
        post("/api/v1/me/mfa/backup-codes/regenerate", json!({ "code": app.code(&secret, 1) })).await;
    assert_eq!(status, StatusCode::OK);
    let new_backup = strings(&regenerated["backupCodes"]);
    assert_eq!(new_backup.len(), 10);

    assert_eq!(
        post("/api/v1/me/mfa/totp/disable", json!({ "code": backup[1] })).await,
        (StatusCode::UNPROCESSABLE_ENTITY, json!({ "error": "Invalid code. Please try again." })),
        "old set"
    );
    app.clock.advance_secs(30);
    assert_eq!(
        post("/api/v1/me/mfa/totp/disable", json!({ "code": app.code(&secret, 1) })).await,
        (StatusCode::OK, json!({ "disabled": true }))
    );
    assert_eq!(
        app.json(Method::GET, "/api/v1/me/mfa/status", Some(&t), None).await.1,
        json!({ "totpEnabled": false, "backupCodesRemaining": 0, "passkeysCount": 0 })
    );
    for path in ["/api/v1/me/mfa/totp/disable", "/api/v1/me/mfa/backup-codes/regenerate", "/api/v1/me/mfa/verify"] {
        assert_eq!(
            post(path, json!({ "code": "123456" })).await,
            (StatusCode::BAD_REQUEST, json!({ "error": "MFA is not enabled." })),
            "{path}"
        );
    }
    let (status, _) = app.json(Method::POST, "/api/v1/me/mfa/totp/setup", Some(&t), None).await;
    assert_eq!(status, StatusCode::OK, "setup works again");
}

#[tokio::test]
async fn cloudreve_enable_and_disable() {
    let app = TestApp::spawn().await;
    let t = token("fay");
    let patch = |path: &'static str, body: Value| {
        let app = &app;
        let t = t.clone();
        async move { app.json(Method::PATCH, path, Some(&t), Some(&body.to_string())).await.1 }
    };
    let (_, prepared) = app.json(Method::GET, "/api/v4/user/setting/2fa", Some(&t), None).await;
    let secret = prepared["data"].as_str().unwrap().to_owned();
    let wrong = patch("/api/v4/user/setting", json!({ "two_fa_enabled": true, "two_fa_code": "000000" })).await;
    assert_eq!((wrong["code"].clone(), wrong["msg"].clone()), (json!(40022), json!("Incorrect 2FA code")));
    let ok =
        patch("/api/v4/user/setting", json!({ "two_fa_enabled": true, "two_fa_code": app.code(&secret, 0) })).await;
    assert_eq!(ok, json!({ "code": 0, "msg": "" }));
    let again = patch("/user/setting", json!({ "two_fa_enabled": true, "two_fa_code": app.code(&secret, 1) })).await;
    assert_eq!(again["code"], 409);
    let prepare = app.json(Method::GET, "/user/setting/2fa", Some(&t), None).await.1;
    assert_eq!(prepare["code"], 409);
    let replay = patch("/user/setting", json!({ "two_fa_enabled": false, "two_fa_code": app.code(&secret, 0) })).await;
    assert_eq!(replay["code"], 40022, "the enabling code cannot disable");
    let off =
        patch("/user/setting", json!({ "two_fa_enabled": false, "two_fa_code": app.code(&secret, 1), "nick": "Fay" }))
            .await;
    assert_eq!(off, json!({ "code": 0, "msg": "" }));
    let not_enabled =
        patch("/user/setting", json!({ "two_fa_enabled": false, "two_fa_code": app.code(&secret, 1) })).await;
    assert_eq!(not_enabled["code"], 40022);
    let no_session = patch("/user/setting", json!({ "two_fa_enabled": true, "two_fa_code": "123456" })).await;
    assert_eq!(
        (no_session["code"].clone(), no_session["msg"].clone()),
        (json!(50005), json!("You have not initiated 2FA session"))
    );
    let status = app.graphql(Some(&t), STATUS, json!({})).await;
    assert_eq!(status["data"]["twoFactor"]["enabled"], false);
}

#[tokio::test]
async fn each_credential_keeps_its_own_parameters() {
    let settings = ServiceSettings {
        params: TotpParams { algorithm: Algorithm::Sha256, digits: 8, period: 60 },
        ..Default::default()
    };
    let app = TestApp::spawn_with(settings).await;
    let t = token("gus");
    let setup = app.graphql(Some(&t), SETUP, json!({})).await["data"]["setupTotp"].clone();
    let uri = setup["otpauthUri"].as_str().unwrap();
    assert!(uri.ends_with("&algorithm=SHA256&digits=8&period=60"), "{uri}");
    let secret = setup["secret"].as_str().unwrap();
    let key = data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).unwrap();
    let sha256 = |key: &[u8], msg: &[u8]| {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(msg);
        mac.finalize().into_bytes().to_vec()
    };
    let code = totp_raw(&key, app.now_secs(), 8, 60, sha256);
    assert_eq!(run(&app, &t, ENABLE, &code, "enableTotp").await["__typename"], "TotpEnabled");

    // The operator goes back to the defaults: the enrolled credential keeps SHA256/8/60.
    let defaults =
        app.another_instance(twofold::crypto::Keyring::new(&ENCRYPTION_KEY, &[]), ServiceSettings::default()).await;
    let status = defaults.graphql(Some(&t), STATUS, json!({})).await["data"]["twoFactor"].clone();
    assert_eq!(
        (status["algorithm"].clone(), status["digits"].clone(), status["period"].clone()),
        (json!("SHA256"), json!(8), json!(60))
    );
    defaults.clock.advance_secs(60);
    let next = totp_raw(&key, defaults.now_secs(), 8, 60, sha256);
    assert_eq!(run(&defaults, &t, VERIFY, &next, "verifyTotp").await["__typename"], "TotpVerified");
    let fresh = defaults.graphql(Some(&token("hal")), STATUS, json!({})).await["data"]["twoFactor"].clone();
    assert_eq!(
        (fresh["algorithm"].clone(), fresh["digits"].clone(), fresh["period"].clone()),
        (json!("SHA1"), json!(6), json!(30))
    );
}

#[tokio::test]
async fn events_first_is_clamped() {
    let app = TestApp::spawn().await;
    let t = token("ida");
    for _ in 0..3 {
        app.graphql(Some(&t), SETUP, json!({})).await;
    }
    let q = |n: i32| format!("{{ twoFactor {{ events(first: {n}) {{ kind }} }} }}");
    assert_eq!(
        app.graphql(Some(&t), &q(0), json!({})).await["data"]["twoFactor"]["events"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        app.graphql(Some(&t), &q(2), json!({})).await["data"]["twoFactor"]["events"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        app.graphql(Some(&t), &q(1000), json!({})).await["data"]["twoFactor"]["events"].as_array().unwrap().len(),
        3
    );
    // Another user sees none of them.
    assert_eq!(app.graphql(Some(&token("jon")), &q(10), json!({})).await["data"]["twoFactor"]["events"], json!([]));
}
