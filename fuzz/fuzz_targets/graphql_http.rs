//! Any bytes as a GraphQL request, POSTed as the body and sent as the `query` of a GET: never a
//! 5xx and never a crash (a document nested past the limit must be refused before the recursive
//! parser sees it: a stack overflow would abort this process).
#![no_main]

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;

fn query_string(data: &[u8]) -> String {
    data.iter().map(|b| format!("%{b:02X}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let token = format!("Bearer {}", twofold_fuzz::token("fuzz-graphql"));
    let post = Request::post("/graphql")
        .header("authorization", &token)
        .header("content-type", "application/json")
        .body(Body::from(data.to_vec()))
        .unwrap();
    let (status, _, bytes) = twofold_fuzz::send(post);
    assert!(status < 500, "POST: {status} {}", String::from_utf8_lossy(&bytes));
    // The same bytes as a document, in a JSON body and in a GET.
    let document = String::from_utf8_lossy(data);
    let body = serde_json::json!({ "query": document }).to_string();
    let post = Request::post("/graphql")
        .header("authorization", &token)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let (status, _, bytes) = twofold_fuzz::send(post);
    assert!(status < 500, "POST document: {status} {}", String::from_utf8_lossy(&bytes));
    if data.len() < 4000 {
        let get = Request::get(format!("/graphql?query={}", query_string(data))).body(Body::empty()).unwrap();
        let (status, _, bytes) = twofold_fuzz::send(get);
        assert!(status < 500, "GET: {status} {}", String::from_utf8_lossy(&bytes));
    }
});
