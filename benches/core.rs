//! Micro-benchmarks of the hot paths (criterion): secret generation, otpauth URI, QR data URI, code
//! check, JWT verification, assertion signing, and one whole `setupTotp` / Storno verify request through the router
//! in-process on SQLite. `cargo bench`; numbers are recorded in bench/README.md.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::json;
use tower::ServiceExt;
use twofold::auth::{Authenticator, ClaimRules};
use twofold::clock::SystemClock;
use twofold::crypto::Keyring;
use twofold::service::{ServiceSettings, TwoFactor};
use twofold::totp::{Secret, TotpParams};
use twofold::{AppState, HttpOptions};

const JWT_SECRET: &[u8] = b"bench-secret-0123456789abcdef0123456789abcdef";
const URI: &str = "otpauth://totp/Twofold:alice%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Twofold&algorithm=SHA1&digits=6&period=30";

fn token(sub: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    let claims = json!({ "sub": sub, "email": format!("{sub}@example.com"), "exp": exp });
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(JWT_SECRET)).unwrap()
}

fn authenticator() -> Authenticator {
    Authenticator::new(DecodingKey::from_secret(JWT_SECRET), vec![Algorithm::HS256], &ClaimRules::default())
}

fn core(c: &mut Criterion) {
    let secret = Secret::generate().unwrap();
    let params = TotpParams::default();
    c.bench_function("secret_generate", |b| b.iter(|| Secret::generate().unwrap()));
    c.bench_function("otpauth_uri", |b| {
        b.iter(|| twofold::totp::otpauth_uri("Twofold", "alice@example.com", &secret, params))
    });
    c.bench_function("qr_data_uri", |b| b.iter(|| twofold::totp::qr_data_uri(URI).unwrap()));
    c.bench_function("qr_reference_qrcode_crate", |b| {
        b.iter(|| qrcode::QrCode::with_error_correction_level(URI.as_bytes(), qrcode::EcLevel::M).unwrap())
    });
    let now = chrono::Utc::now().timestamp() as u64;
    let code = secret.code_at(params, now);
    c.bench_function("code_check_window_3", |b| b.iter(|| secret.matching_step(params, "000000", now, 1)));
    c.bench_function("code_check_hit", |b| b.iter(|| secret.matching_step(params, &code, now, 1)));
    let auth = authenticator();
    let header = format!("Bearer {}", token("alice"));
    c.bench_function("jwt_verify_hs256", |b| b.iter(|| auth.authenticate(Some(header.as_bytes())).unwrap()));
}

fn requests(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let (router, service) = rt.block_on(async {
        let store = twofold::connect_and_migrate(&url, 4).await.unwrap();
        let keys = Arc::new(Keyring::new(&[1; 32], &[]));
        let service = TwoFactor::new(store, keys, ServiceSettings::default(), Arc::new(SystemClock));
        (twofold::app(AppState::new(service.clone(), authenticator(), HttpOptions::default())), service)
    });
    // 1000 users with two-factor enabled, for the verify benchmark.
    rt.block_on(async {
        for i in 0..1000 {
            let viewer =
                twofold::auth::Viewer { user_id: format!("enabled{i}"), account_name: "x".into(), admin: false };
            let enrolment = service.begin_enrolment(&viewer, true, "bench").await.unwrap();
            let raw = data_encoding::BASE32_NOPAD.decode(enrolment.secret.as_bytes()).unwrap();
            let now = chrono::Utc::now().timestamp() as u64;
            let code = Secret::from_bytes(raw).code_at(TotpParams::default(), now);
            service.enable(&viewer, &code, "bench").await.unwrap();
        }
    });
    // The signed assertion every successful verification carries (SPEC §7): one Ed25519
    // signature over a JWS of about 300 bytes.
    let assertions = twofold::assertion::Assertions::new(
        rt.block_on(twofold::connect_and_migrate(&url, 2)).unwrap(),
        Arc::new(Keyring::new(&[1; 32], &[])),
        Default::default(),
        Arc::new(SystemClock),
    );
    let signer = rt.block_on(assertions.signer()).unwrap();
    let nonce = twofold::assertion::Nonce::parse("login-7f3a9c2b").unwrap();
    c.bench_function("assertion_sign", |b| {
        b.iter(|| signer.sign("enabled1", twofold::assertion::Method::Otp, 1_795_564_815_000, Some(&nonce)).unwrap())
    });
    let enabled_tokens: Vec<String> = (0..1000).map(|i| token(&format!("enabled{i}"))).collect();
    let tokens: Vec<String> = (0..1000).map(|i| token(&format!("user{i}"))).collect();
    let body =
        json!({ "query": "mutation { setupTotp { __typename ... on TotpSetup { secret qrCode otpauthUri } } }" })
            .to_string();
    let mut i = 0;
    c.bench_function("graphql_setupTotp_request_sqlite", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % tokens.len();
            let req = Request::post("/graphql")
                .header("authorization", format!("Bearer {}", tokens[i]))
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .unwrap();
            let router = router.clone();
            async move {
                let res = router.oneshot(req).await.unwrap();
                assert!(res.status().is_success());
            }
        })
    });
    let mut j = 0;
    c.bench_function("storno_setup_request_sqlite", |b| {
        b.to_async(&rt).iter(|| {
            j = (j + 1) % tokens.len();
            let req = Request::post("/api/v1/me/mfa/totp/setup")
                .header("authorization", format!("Bearer {}", tokens[j]))
                .body(Body::empty())
                .unwrap();
            let router = router.clone();
            async move {
                let res = router.oneshot(req).await.unwrap();
                assert!(res.status().is_success());
            }
        })
    });
    // The attacker's path: a wrong code for an enabled user (each user locks after 5 failures, then
    // every answer is a 429 without checking the code; both paths are measured together).
    let verify = json!({ "code": "000000", "type": "totp" }).to_string();
    let mut k = 0;
    c.bench_function("storno_verify_wrong_code_request_sqlite", |b| {
        b.to_async(&rt).iter(|| {
            k = (k + 1) % tokens.len();
            let req = Request::post("/api/v1/me/mfa/verify")
                .header("authorization", format!("Bearer {}", enabled_tokens[k]))
                .body(Body::from(verify.clone()))
                .unwrap();
            let router = router.clone();
            async move {
                router.oneshot(req).await.unwrap();
            }
        })
    });
}

criterion_group!(benches, core, requests);
criterion_main!(benches);
