//! Secrets at rest: no plaintext secret or recovery code in the database, key rotation keeps old
//! users working, and the key-file / PostgreSQL start-up rules (SPEC §2).

mod common;

use clap::Parser;
use common::*;
use sea_orm::EntityTrait;
use serde_json::json;
use twofold::config::Cli;
use twofold::crypto::Keyring;
use twofold::service::ServiceSettings;
use twofold::store::{credential, recovery_code};

const OLD_KEY: [u8; 32] = ENCRYPTION_KEY;
const NEW_KEY: [u8; 32] = [7; 32];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_secret_or_recovery_code_is_stored_in_plaintext() {
    let app = TestApp::spawn().await;
    let (secret, codes) = enable_user(&app, "alice", 0).await;
    let raw = data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).unwrap();
    let mut needles: Vec<Vec<u8>> = vec![secret.as_bytes().to_vec(), secret.to_lowercase().into_bytes(), raw.clone()];
    for c in &codes {
        needles.push(c.as_bytes().to_vec());
        needles.push(c.replace('-', "").into_bytes());
    }

    // Every row, through the database connection (SQLite or PostgreSQL).
    let db = app.state.service.store().connection();
    let mut stored: Vec<u8> = Vec::new();
    for row in credential::Entity::find().all(db).await.unwrap() {
        stored.extend_from_slice(&row.secret);
        stored.extend_from_slice(format!("{row:?}").as_bytes());
    }
    let hashes = recovery_code::Entity::find().all(db).await.unwrap();
    assert_eq!(hashes.len(), 10);
    for row in hashes {
        assert_eq!(row.code_hash.len(), 32, "HMAC-SHA-256");
        stored.extend_from_slice(&row.code_hash);
    }
    for n in &needles {
        assert!(!contains(&stored, n), "plaintext found in rows");
    }

    // And the raw database files, WAL included, when on SQLite.
    if let DbGuard::Sqlite(dir) = &*app.guard {
        let mut files = 0;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            files += 1;
            for n in &needles {
                assert!(!contains(&bytes, n), "plaintext found in a database file");
            }
        }
        assert!(files >= 1);
    }
}

#[tokio::test]
async fn rotating_the_encryption_key_keeps_old_users_working() {
    let app = TestApp::spawn().await;
    let (secret, codes) = enable_user(&app, "bob", 0).await;
    let old_id = Keyring::new(&OLD_KEY, &[]).current_key_id().to_owned();
    let new_ring = Keyring::new(&NEW_KEY, &[OLD_KEY]);
    let new_id = new_ring.current_key_id().to_owned();
    assert_ne!(old_id, new_id);
    let rotated = app.another_instance(new_ring, ServiceSettings::default()).await;
    let t = token("bob");
    let verify = "mutation($code: String!) { verifyTotp(code: $code) { __typename } }";
    let res = rotated.graphql(Some(&t), verify, json!({ "code": rotated.code(&secret, 1) })).await;
    assert_eq!(res["data"]["verifyTotp"]["__typename"], "TotpVerified", "{res}");
    // The row was re-encrypted under the new key when written.
    let db = rotated.state.service.store().connection();
    let row = credential::Entity::find_by_id("bob".to_owned()).one(db).await.unwrap().unwrap();
    assert_eq!(row.key_id, new_id);
    // Recovery codes hashed under the old key still work.
    let res = rotated
        .graphql(
            Some(&t),
            "mutation($code: String!) { useRecoveryCode(code: $code) { __typename } }",
            json!({ "code": codes[0] }),
        )
        .await;
    assert_eq!(res["data"]["useRecoveryCode"]["__typename"], "TotpVerified");

    // Without the right key the answer is an opaque internal error with a correlation id.
    let (_, _) = enable_user(&rotated, "carol", 0).await;
    let wrong = app.another_instance(Keyring::new(&[9; 32], &[]), ServiceSettings::default()).await;
    let res = wrong.graphql(Some(&token("carol")), verify, json!({ "code": wrong.code(&secret, 1) })).await;
    assert_eq!(res["errors"][0]["message"], "Internal server error");
    assert_eq!(res["errors"][0]["extensions"]["code"], "INTERNAL_SERVER_ERROR");
    assert!(res["errors"][0]["extensions"]["correlationId"].is_string());
    let (status, body) = wrong
        .json(axum::http::Method::POST, "/api/v1/me/mfa/verify", Some(&token("carol")), Some(r#"{"code":"123456"}"#))
        .await;
    assert_eq!((status.as_u16(), body), (500, json!({ "error": "Internal server error." })));
}

#[test]
fn postgres_without_an_encryption_key_refuses_to_start() {
    let cli = Cli::try_parse_from(["twofold", "--database-url", "postgres://postgres@127.0.0.1/twofold"]).unwrap();
    let error = cli.settings.keyring().unwrap_err().to_string();
    assert!(error.contains("TWOFOLD_ENCRYPTION_KEY is required with PostgreSQL"), "{error}");
    let cli =
        Cli::try_parse_from(["twofold", "--database-url", "postgres://x/y", "--encryption-key", "c2hvcnQ="]).unwrap();
    assert!(cli.settings.keyring().unwrap_err().to_string().contains("32 bytes"));
}

#[test]
fn sqlite_without_a_key_creates_a_private_key_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/twofold.db", dir.path().display());
    let cli = Cli::try_parse_from(["twofold", "--database-url", url.as_str()]).unwrap();
    let first = cli.settings.keyring().unwrap();
    let path = dir.path().join("twofold.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let second = cli.settings.keyring().unwrap();
    assert_eq!(first.current_key_id(), second.current_key_id(), "the file is reused");
}

#[test]
fn invalid_settings_are_refused_with_a_reason() {
    let parse = |args: &[&str]| Cli::try_parse_from([&["twofold"], args].concat());
    assert!(parse(&["--bind", "nowhere"]).is_err());
    assert!(parse(&["--pending-ttl", "10 minutes"]).is_err());
    let s = parse(&["--totp-digits", "7"]).unwrap().settings;
    assert!(s.validate().unwrap_err().to_string().contains("TWOFOLD_TOTP_DIGITS"));
    let s = parse(&["--database-url", "sqlite::memory:"]).unwrap().settings;
    assert!(s.validate().unwrap_err().to_string().contains("in-memory SQLite is not supported"));
    let s = parse(&["--jwt-secret", "x".repeat(40).as_str(), "--jwt-algorithms", "HS256,none"]).unwrap().settings;
    assert!(s.jwt().err().unwrap().to_string().contains("none"));
    let s = parse(&["--jwt-secret", "x".repeat(40).as_str(), "--jwt-algorithms", "RS256"]).unwrap().settings;
    assert!(s.jwt().is_err());
    let s = parse(&["--jwt-public-key", "/nonexistent.pem"]).unwrap().settings;
    assert!(s.jwt().err().unwrap().to_string().contains("explicit TWOFOLD_JWT_ALGORITHMS"));
    let s = parse(&["--jwt-public-key", "/nonexistent.pem", "--jwt-algorithms", "RS256,HS256"]).unwrap().settings;
    assert!(s.jwt().err().unwrap().to_string().contains("HS algorithm"));
    let s = parse(&["--database-url", "mysql://x"]).unwrap().settings;
    assert!(s.validate().is_err());
    let s = parse(&[]).unwrap().settings;
    assert!(s.jwt().unwrap().dev_secret.is_some(), "no key: dev mode");
}
