//! What the fuzz targets share: the real router over a SQLite database in a temporary directory
//! (made once per fuzzing process), tokens for it, and a way to send it a request.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use http_body_util::BodyExt;
use tower::ServiceExt;

use twofold::auth::{Authenticator, ClaimRules, MintClaims, mint};
use twofold::clock::SystemClock;
use twofold::crypto::Keyring;
use twofold::service::{ServiceSettings, TwoFactor};
use twofold::{AppState, HttpOptions};

pub const JWT_SECRET: &str = "fuzz-secret-0123456789abcdef0123456789abcdef";

pub struct App {
    pub runtime: tokio::runtime::Runtime,
    pub router: Router,
    _dir: tempfile::TempDir,
}

/// The application, built on first use.
pub fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
        let router = runtime.block_on(async {
            let store = twofold::connect_and_migrate(&url, 2).await.expect("database");
            let service = TwoFactor::new(
                store,
                Arc::new(Keyring::new(&[42; 32], &[])),
                ServiceSettings::default(),
                Arc::new(SystemClock),
            );
            let auth = Authenticator::new(
                jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
                vec![jsonwebtoken::Algorithm::HS256],
                &ClaimRules { leeway_seconds: 30, ..Default::default() },
            );
            twofold::app(AppState::new(service, auth, HttpOptions::default()))
        });
        App { runtime, router, _dir: dir }
    })
}

/// A valid access token for `sub`.
pub fn token(sub: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = MintClaims {
        sub: sub.into(),
        email: Some(format!("{sub}@example.com")),
        preferred_username: None,
        iss: None,
        aud: None,
        token_type: None,
        scope: None,
        iat: now,
        exp: now + 3600,
    };
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    mint(jsonwebtoken::Algorithm::HS256, None, &key, &claims).unwrap()
}

/// Sends `request` through the router: (status, headers, body).
pub fn send(request: Request<Body>) -> (u16, HeaderMap, Vec<u8>) {
    let app = app();
    app.runtime.block_on(async {
        let response = app.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.into_body().collect().await.unwrap().to_bytes().to_vec())
    })
}

/// Splits fuzz input into `n` parts at 0xFF bytes (missing parts are empty).
pub fn split(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = data.splitn(n, |&b| b == 0xff).collect();
    parts.resize(n, &[]);
    parts
}
