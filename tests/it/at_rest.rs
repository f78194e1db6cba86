//! Secrets at rest: no plaintext secret or recovery code in the database, key rotation keeps old
//! users working, and the key-file / PostgreSQL start-up rules (SPEC §2).

use crate::common::*;
use clap::Parser;
use sea_orm::EntityTrait;
use serde_json::json;
use twofold::config::Cli;
use twofold::crypto::Keyring;
use twofold::service::ServiceSettings;
use twofold::store::entities::{credential, recovery_code};

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
    let db = app.store.connection();
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
    let db = rotated.store.connection();
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

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn sqlite_file(app: &TestApp) -> std::path::PathBuf {
    twofold::store::sqlite_path(&app.db_url).expect("a SQLite URL")
}

fn with_suffix(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

/// The database files hold ciphertexts and hashes: 0600, also when an older version left 0644.
#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_private() {
    if is_postgres() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.db");
    std::fs::write(&old, b"").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = format!("sqlite://{}", old.display());
    let _store = twofold::connect_and_migrate(&url, 2).await.unwrap();
    assert_eq!(mode_of(&old), 0o600);

    let app = TestApp::spawn().await;
    enable_user(&app, "alice", 0).await;
    let db = sqlite_file(&app);
    for file in [db.clone(), with_suffix(&db, "-wal"), with_suffix(&db, "-shm")] {
        assert_eq!(mode_of(&file), 0o600, "{}", file.display());
    }
}

/// A WAL that grew while a reader held an old snapshot (so no checkpoint could finish) is cut
/// back to at most 16 MiB once writes stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_shrinks_when_writes_stop() {
    if is_postgres() {
        return;
    }
    let app = TestApp::spawn().await;
    let db = sqlite_file(&app);
    let wal = with_suffix(&db, "-wal");
    let reader = rusqlite::Connection::open(&db).unwrap();
    reader.execute_batch("BEGIN; SELECT COUNT(*) FROM totp_credentials;").unwrap();
    let writer = rusqlite::Connection::open(&db).unwrap();
    writer.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    writer.execute_batch("CREATE TABLE scratch (b BLOB)").unwrap();
    let blob = vec![7u8; 64 * 1024];
    for _ in 0..400 {
        writer.execute("INSERT INTO scratch VALUES (?1)", [&blob]).unwrap();
    }
    let grown = std::fs::metadata(&wal).unwrap().len();
    assert!(grown > 20 * 1024 * 1024, "the WAL grew to {grown} bytes");
    reader.execute_batch("COMMIT").unwrap();
    drop((reader, writer));
    // Also the service's own writes go on working meanwhile.
    enable_user(&app, "bob", 0).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size <= 16 * 1024 * 1024 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the WAL is still {size} bytes");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `twofold admin reseal` (SPEC §10): every secret, pending or enabled, moves to the current key
/// in one go, after which the old key can be dropped; a secret under a key that is not
/// configured makes it change nothing.
#[tokio::test]
async fn reseal_moves_every_secret_to_the_current_key() {
    let app = TestApp::spawn().await;
    let (secret, codes) = enable_user(&app, "enabled-user", 0).await;
    let setup = app
        .graphql(Some(&token("pending-user")), "mutation { setupTotp { ... on TotpSetup { secret } } }", json!({}))
        .await;
    let pending = setup["data"]["setupTotp"]["secret"].as_str().unwrap().to_owned();
    let store = &app.store;

    // Without the old key configured: refused, nothing changed.
    let error = twofold::admin::reseal(store, std::sync::Arc::new(Keyring::new(&NEW_KEY, &[]))).await.unwrap_err();
    assert!(matches!(&error, twofold::admin::ResealError::UnknownKeys(k) if k[0].1 == 2), "{error}");
    let old_id = Keyring::new(&OLD_KEY, &[]).current_key_id().to_owned();
    let key_ids = |rows: Vec<credential::Model>| rows.into_iter().map(|r| r.key_id).collect::<Vec<_>>();
    assert_eq!(key_ids(credential::Entity::find().all(store.connection()).await.unwrap()), [old_id.clone(), old_id]);

    let rotated = std::sync::Arc::new(Keyring::new(&NEW_KEY, &[OLD_KEY]));
    let report = twofold::admin::reseal(store, rotated.clone()).await.unwrap();
    assert_eq!(report.resealed, 2);
    assert_eq!(report.key_id, rotated.current_key_id());
    assert_eq!(report.users_with_old_recovery_codes, 1, "the enabled user's codes are hashed under the old key");
    assert_eq!(twofold::admin::reseal(store, rotated.clone()).await.unwrap().resealed, 0, "nothing left to do");

    // The old key retired: both users go on working with the new key alone.
    let new_only = app.another_instance(Keyring::new(&NEW_KEY, &[]), ServiceSettings::default()).await;
    let verify = "mutation($code: String!) { verifyTotp(code: $code) { __typename } }";
    let res =
        new_only.graphql(Some(&token("enabled-user")), verify, json!({ "code": new_only.code(&secret, 1) })).await;
    assert_eq!(res["data"]["verifyTotp"]["__typename"], "TotpVerified", "{res}");
    let enable = "mutation($code: String!) { enableTotp(code: $code) { __typename } }";
    let res =
        new_only.graphql(Some(&token("pending-user")), enable, json!({ "code": new_only.code(&pending, 0) })).await;
    assert_eq!(res["data"]["enableTotp"]["__typename"], "TotpEnabled", "{res}");
    // As the report said, recovery codes hashed under the retired key no longer match.
    let use_code = "mutation($code: String!) { useRecoveryCode(code: $code) { __typename } }";
    let res = new_only.graphql(Some(&token("enabled-user")), use_code, json!({ "code": codes[0] })).await;
    assert_eq!(res["data"]["useRecoveryCode"]["__typename"], "InvalidCode", "{res}");
    let report = twofold::admin::reseal(store, std::sync::Arc::new(Keyring::new(&NEW_KEY, &[]))).await.unwrap();
    assert_eq!(report.users_with_old_recovery_codes, 1);
}

/// The command itself: exit 0 with a count, exit 1 (and no change) for an unknown key.
#[test]
fn the_reseal_command_reports_and_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let b64 = |k: &[u8; 32]| data_encoding::BASE64.encode(k);
    let run = |key: &[u8; 32], old: Option<&[u8; 32]>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_twofold"));
        cmd.args(["admin", "reseal"])
            .env_clear()
            .env("TWOFOLD_DATABASE_URL", &url)
            .env("TWOFOLD_ENCRYPTION_KEY", b64(key))
            .env("TWOFOLD_LOG", "error");
        if let Some(old) = old {
            cmd.env("TWOFOLD_ENCRYPTION_KEYS_OLD", b64(old));
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&OLD_KEY, None);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("Re-sealed 0 secret(s)"), "{stdout}");
    // A pending secret under OLD_KEY, written through the library on the same file.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sea_orm::{ActiveValue::Set, EntityTrait};
        let store = twofold::connect_and_migrate(&url, 1).await.unwrap();
        let (secret, key_id) = Keyring::new(&OLD_KEY, &[]).seal("u", &[1; 20]).unwrap();
        let row = credential::ActiveModel {
            user_id: Set("u".into()),
            secret: Set(secret),
            key_id: Set(key_id),
            algorithm: Set("SHA1".into()),
            digits: Set(6),
            period: Set(30),
            enabled: Set(false),
            pending_expires_at: Set(Some(i64::MAX / 2)),
            enabled_at: Set(None),
            last_used_step: Set(None),
            failed_attempts: Set(0),
            locked_until: Set(None),
            created_at: Set(0),
            updated_at: Set(0),
        };
        credential::Entity::insert(row).exec_without_returning(store.connection()).await.unwrap();
    });
    let (code, _, stderr) = run(&NEW_KEY, None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not configured") && stderr.contains("nothing was changed"), "{stderr}");
    let (code, stdout, stderr) = run(&NEW_KEY, Some(&OLD_KEY));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("Re-sealed 1 secret(s)"), "{stdout}");
}
