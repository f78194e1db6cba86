//! Test harness: the real router over a real database (a fresh SQLite file per test, or a fresh
//! PostgreSQL database per test when `TWOFOLD_TEST_DATABASE_URL` is set), a manual clock, and an
//! independent TOTP implementation.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

use twofold::auth::{Authenticator, ClaimRules};
use twofold::clock::ManualClock;
use twofold::crypto::Keyring;
use twofold::service::{ServiceSettings, TwoFactor};
use twofold::{AppState, HttpOptions};

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";
pub const ENCRYPTION_KEY: [u8; 32] = [42; 32];
/// A fixed start time in the middle of a 30 s step: 2026-11-25T00:00:15Z.
pub const START_MS: i64 = 1795564815000;

/// Where the test's database lives; dropped (and a PostgreSQL database removed) with the test.
pub enum DbGuard {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let DbGuard::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // A fresh runtime on its own thread: Drop may run inside a test's runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(async {
                    use sea_orm::ConnectionTrait;
                    let admin = sea_orm::Database::connect(&admin_url).await.ok()?;
                    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.ok()?;
                    admin.close().await.ok()
                })
            })
            .join();
        }
    }
}

pub fn is_postgres() -> bool {
    std::env::var("TWOFOLD_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty())
}

/// Creates a fresh database and returns its URL.
pub async fn fresh_database() -> (String, DbGuard) {
    match std::env::var("TWOFOLD_TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            use sea_orm::ConnectionTrait;
            let name = format!("twofold_test_{}", uuid::Uuid::new_v4().simple());
            let admin = sea_orm::Database::connect(&admin_url).await.expect("connect to TWOFOLD_TEST_DATABASE_URL");
            admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.expect("create test database");
            admin.close().await.ok();
            let (base, _) = admin_url.rsplit_once('/').expect("database URL with a path");
            (format!("{base}/{name}"), DbGuard::Postgres { admin_url, name })
        }
        _ => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("twofold.db").display());
            (url, DbGuard::Sqlite(dir))
        }
    }
}

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub clock: ManualClock,
    pub db_url: String,
    /// The instance's store (for tests that look at rows directly).
    pub store: twofold::store::Store,
    pub guard: Arc<DbGuard>,
}

pub fn authenticator() -> Authenticator {
    Authenticator::new(
        jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        vec![Algorithm::HS256],
        &ClaimRules { leeway_seconds: 30, ..Default::default() },
    )
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(ServiceSettings::default()).await
    }

    pub async fn spawn_with(settings: ServiceSettings) -> Self {
        let (db_url, guard) = fresh_database().await;
        let clock = ManualClock::new(START_MS);
        let keys = Keyring::new(&ENCRYPTION_KEY, &[]);
        Self::build(db_url, Arc::new(guard), clock, settings, keys).await
    }

    pub async fn build(
        db_url: String,
        guard: Arc<DbGuard>,
        clock: ManualClock,
        settings: ServiceSettings,
        keys: Keyring,
    ) -> Self {
        let store = twofold::connect_and_migrate(&db_url, 8).await.expect("database");
        let service = TwoFactor::new(store.clone(), Arc::new(keys), settings, Arc::new(clock.clone()));
        let state = AppState::new(service, authenticator(), HttpOptions::default());
        TestApp { router: twofold::app(state.clone()), state, clock, db_url, store, guard }
    }

    /// A second Twofold instance (its own pool and router) on the same database and clock.
    pub async fn another_instance(&self, keys: Keyring, settings: ServiceSettings) -> Self {
        Self::build(self.db_url.clone(), self.guard.clone(), self.clock.clone(), settings, keys).await
    }

    pub fn now_secs(&self) -> u64 {
        use twofold::clock::Clock;
        (self.clock.now_ms() / 1000) as u64
    }

    /// The TOTP code for `secret` at the clock's time plus `steps` periods of 30 s.
    pub fn code(&self, secret: &str, steps: i64) -> String {
        totp(secret, (self.now_secs() as i64 + steps * 30) as u64, 6, 30)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.map(|b| Body::from(b.to_owned())).unwrap_or_else(Body::empty)).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, headers, bytes)
    }

    /// Sends a request and parses the answer as JSON.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self.send(method, path, token, body, &[]).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)));
        (status, value)
    }

    /// Runs a GraphQL operation; asserts HTTP 200 and returns the whole response.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let (status, value) = self.json(Method::POST, "/graphql", token, Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{value}");
        value
    }
}

/// Signs claims with the test secret (HS256).
pub fn sign(claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(JWT_SECRET.as_bytes()))
        .unwrap()
}

pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A valid access token for `sub` with `email` `<sub>@example.com`.
pub fn token(sub: &str) -> String {
    sign(json!({ "sub": sub, "email": format!("{sub}@example.com"), "iat": unix_now(), "exp": unix_now() + 3600 }))
}

/// An independent RFC 6238 implementation (HMAC-SHA1 via the `hmac`/`sha1` crates, dynamic
/// truncation by hand), pinned by the RFC's own test vectors in `totp_helper_matches_rfc6238`.
pub fn totp(secret_base32: &str, unix_seconds: u64, digits: u32, period: u64) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let key = data_encoding::BASE32_NOPAD.decode(secret_base32.as_bytes()).expect("Base32 secret");
    totp_raw(&key, unix_seconds, digits, period, |key, msg| {
        let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(msg);
        mac.finalize().into_bytes().to_vec()
    })
}

pub fn totp_raw(
    key: &[u8],
    unix_seconds: u64,
    digits: u32,
    period: u64,
    hmac: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> String {
    let counter = unix_seconds / period;
    let hash = hmac(key, &counter.to_be_bytes());
    let offset = (hash[hash.len() - 1] & 0x0f) as usize;
    let binary = u32::from_be_bytes([hash[offset] & 0x7f, hash[offset + 1], hash[offset + 2], hash[offset + 3]]);
    format!("{:0width$}", binary % 10u32.pow(digits), width = digits as usize)
}

/// Decodes a `data:image/png;base64,…` QR code: returns (width, height, color type, bit depth,
/// decoded text).
pub fn decode_qr(data_uri: &str) -> (u32, u32, png::ColorType, png::BitDepth, String, Vec<u8>) {
    let b64 = data_uri.strip_prefix("data:image/png;base64,").expect("PNG data URI");
    let bytes = data_encoding::BASE64.decode(b64.as_bytes()).expect("base64");
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().expect("PNG header");
    let (color, depth) = (reader.info().color_type, reader.info().bit_depth);
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!(info.color_type, png::ColorType::Grayscale, "expanded to 8-bit grey");
    let (w, h) = (info.width, info.height);
    let pixels = buf[..(w * h) as usize].to_vec();
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| pixels[y * w as usize + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR symbol");
    let (_, text) = grids[0].decode().expect("QR decodes");
    (w, h, color, depth, text, pixels)
}

/// Starts and enables two-factor for `sub` through GraphQL, with the code of the time step
/// `step` periods from now; returns (secret, recovery codes).
pub async fn enable_user(app: &TestApp, sub: &str, step: i64) -> (String, Vec<String>) {
    let t = token(sub);
    let setup = app.graphql(Some(&t), "mutation { setupTotp { ... on TotpSetup { secret } } }", json!({})).await;
    let secret = setup["data"]["setupTotp"]["secret"].as_str().expect("TotpSetup").to_owned();
    let enable =
        "mutation($code: String!) { enableTotp(code: $code) { __typename ... on TotpEnabled { recoveryCodes } } }";
    let res = app.graphql(Some(&t), enable, json!({ "code": app.code(&secret, step) })).await;
    assert_eq!(res["data"]["enableTotp"]["__typename"], "TotpEnabled", "{res}");
    let codes = res["data"]["enableTotp"]["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes)
}
