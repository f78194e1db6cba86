//! Any `X-Cr-Correlation-Id` and `Authorization` values (input: correlation id 0xFF
//! authorization): never a 5xx; the correlation id is echoed (trimmed) when it is a safe token of
//! 1–128 characters `[A-Za-z0-9-_.:]`, otherwise replaced by a fresh UUID v4.
#![no_main]

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts = twofold_fuzz::split(data, 2);
    let mut request = Request::get("/user/setting/2fa");
    let cid = HeaderValue::from_bytes(parts[0]).ok();
    if let Some(v) = &cid {
        request = request.header("x-cr-correlation-id", v.clone());
    }
    if let Ok(v) = HeaderValue::from_bytes(parts[1]) {
        request = request.header("authorization", v);
    }
    let (status, headers, bytes) = twofold_fuzz::send(request.body(Body::empty()).unwrap());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let Some(answered) = v["correlation_id"].as_str() else { return };
    let safe = cid.as_ref().and_then(|c| c.to_str().ok()).map(str::trim).filter(|s| {
        !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    });
    match safe {
        Some(echo) => assert_eq!(answered, echo),
        None => assert_eq!(uuid::Uuid::parse_str(answered).expect("a UUID").get_version_num(), 4),
    }
    assert_eq!(headers.get("x-correlation-id").and_then(|h| h.to_str().ok()), Some(answered));
});
