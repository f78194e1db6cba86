//! Any body on any REST route of both dialects (input: route selector byte, user selector byte,
//! body): never a 5xx, always JSON; Cloudreve answers HTTP 200 with an integer `code`.
#![no_main]

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;

const ROUTES: [(&str, &str); 8] = [
    ("POST", "/api/v1/me/mfa/totp/setup"),
    ("POST", "/api/v1/me/mfa/totp/enable"),
    ("POST", "/api/v1/me/mfa/totp/disable"),
    ("POST", "/api/v1/me/mfa/backup-codes/regenerate"),
    ("POST", "/api/v1/me/mfa/verify"),
    ("PATCH", "/user/setting"),
    ("PATCH", "/api/v4/user/setting"),
    ("GET", "/api/v1/me/mfa/status"),
];

fuzz_target!(|data: &[u8]| {
    let [route, user, body @ ..] = data else { return };
    let (method, path) = ROUTES[usize::from(*route) % ROUTES.len()];
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", twofold_fuzz::token(&format!("fuzz-{}", user % 4))))
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let (status, _, bytes) = twofold_fuzz::send(request);
    assert!(status < 500, "{method} {path}: {status} {}", String::from_utf8_lossy(&bytes));
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON answer");
    if path.contains("user/setting") {
        assert_eq!(status, 200);
        assert!(v["code"].is_i64(), "{v}");
    }
});
