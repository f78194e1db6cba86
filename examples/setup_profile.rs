//! A fixed workload for `valgrind --tool=callgrind`: N Storno setup requests (default 200, each a
//! different user) through the real router in-process on a fresh SQLite database. Instructions per
//! request = total / N (minus the start-up run with N=0). See bench/README.md.
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use tower::ServiceExt;
use twofold::auth::{Authenticator, ClaimRules};
use twofold::clock::SystemClock;
use twofold::crypto::Keyring;
use twofold::service::{ServiceSettings, TwoFactor};
use twofold::{AppState, HttpOptions};

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let path = std::env::args().nth(2).unwrap_or_else(|| "/api/v1/me/mfa/totp/setup".into());
    let secret = b"profile-secret-0123456789abcdef0123456789";
    let dir = std::env::temp_dir().join(format!("twofold-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/profile.db", dir.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = twofold::connect_and_migrate(&url, 4).await.unwrap();
        let keys = Arc::new(Keyring::new(&[1; 32], &[]));
        let service = TwoFactor::new(store, keys, ServiceSettings::default(), Arc::new(SystemClock));
        let auth = Authenticator::new(DecodingKey::from_secret(secret), vec![Algorithm::HS256], &ClaimRules::default());
        let router = twofold::app(AppState::new(service, auth, HttpOptions::default()));
        let exp = chrono::Utc::now().timestamp() + 3600;
        let tokens: Vec<String> = (0..n)
            .map(|i| {
                let claims = serde_json::json!({ "sub": format!("user{i}"), "email": format!("user{i}@example.com"), "exp": exp });
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).unwrap()
            })
            .collect();
        for t in &tokens {
            // Cloudreve's prepare is a GET; the Storno and GraphQL routes are POSTs.
            let method = if path.ends_with("/2fa") { "GET" } else { "POST" };
            let req = Request::builder()
                .method(method)
                .uri(path.as_str())
                .header("authorization", format!("Bearer {t}"))
                .body(Body::empty())
                .unwrap();
            let res = router.clone().oneshot(req).await.unwrap();
            assert!(res.status().is_success(), "{}", res.status());
        }
    });
    std::fs::remove_dir_all(&dir).ok();
    println!("{n} requests to {path}");
}
