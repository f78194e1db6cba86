//! Concurrency: replay protection and the lockout hold under concurrent requests, also across
//! two Twofold instances (two routers with their own pools) sharing one database.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use common::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use twofold::crypto::Keyring;
use twofold::service::ServiceSettings;

const VERIFY: &str = "mutation($code: String!) { verifyTotp(code: $code) { __typename } }";

async fn graphql(router: Router, token: String, query: &'static str, variables: Value) -> Value {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let req = Request::post("/graphql")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let res = router.oneshot(req).await.unwrap();
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

/// Fires 50 concurrent `verifyTotp(code)` calls, alternating between the given routers, and
/// counts the result types.
async fn fire(
    routers: &[Router],
    sub: &str,
    codes: impl Fn(usize) -> String,
) -> std::collections::BTreeMap<String, usize> {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let router = routers[i % routers.len()].clone();
        tasks.push(tokio::spawn(graphql(router, token(sub), VERIFY, json!({ "code": codes(i) }))));
    }
    let mut counts = std::collections::BTreeMap::new();
    for task in tasks {
        let res = task.await.unwrap();
        let kind = res["data"]["verifyTotp"]["__typename"].as_str().unwrap_or_else(|| panic!("{res}")).to_owned();
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

fn count(counts: &std::collections::BTreeMap<String, usize>, kind: &str) -> usize {
    counts.get(kind).copied().unwrap_or(0)
}

async fn two_instances() -> (TestApp, TestApp) {
    let a = TestApp::spawn().await;
    let b = a.another_instance(Keyring::new(&ENCRYPTION_KEY, &[]), ServiceSettings::default()).await;
    (a, b)
}

async fn one_valid_code_succeeds_once(routers: &[Router], app: &TestApp) {
    let secret = enable_user(app, "racer", -1).await.0;
    let code = app.code(&secret, 0);
    let counts = fire(routers, "racer", |_| code.clone()).await;
    assert_eq!(count(&counts, "TotpVerified"), 1, "{counts:?}");
    assert_eq!(count(&counts, "CodeAlreadyUsed") + count(&counts, "TooManyAttempts"), 49, "{counts:?}");
    assert!(count(&counts, "CodeAlreadyUsed") <= 5, "replays count as failures: {counts:?}");
}

async fn wrong_codes_stop_at_the_limit(routers: &[Router], app: &TestApp) {
    let secret = enable_user(app, "guesser", -1).await.0;
    let good = app.code(&secret, 0);
    let counts =
        fire(routers, "guesser", |i| format!("{:06}", (good.parse::<u32>().unwrap() + 1 + i as u32) % 1_000_000)).await;
    assert_eq!(count(&counts, "InvalidCode"), 5, "{counts:?}");
    assert_eq!(count(&counts, "TooManyAttempts"), 45, "{counts:?}");
    // Still locked: the correct code is refused.
    let res = graphql(routers[0].clone(), token("guesser"), VERIFY, json!({ "code": good })).await;
    assert_eq!(res["data"]["verifyTotp"]["__typename"], "TooManyAttempts");
    let events = app.graphql(Some(&token("guesser")), "{ twoFactor { events(first: 100) { kind } } }", json!({})).await;
    let kinds: Vec<Value> =
        events["data"]["twoFactor"]["events"].as_array().unwrap().iter().map(|e| e["kind"].clone()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "LOCKED_OUT").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "VERIFY_FAILED").count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_verifies_of_one_code_succeed_once() {
    let app = TestApp::spawn().await;
    one_valid_code_succeeds_once(std::slice::from_ref(&app.router), &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_wrong_codes_cannot_pass_the_lockout() {
    let app = TestApp::spawn().await;
    wrong_codes_stop_at_the_limit(std::slice::from_ref(&app.router), &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_sharing_the_database_accept_a_code_once() {
    let (a, b) = two_instances().await;
    one_valid_code_succeeds_once(&[a.router.clone(), b.router.clone()], &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_sharing_the_database_hold_the_lockout() {
    let (a, b) = two_instances().await;
    wrong_codes_stop_at_the_limit(&[a.router.clone(), b.router.clone()], &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_recovery_code_use_consumes_it_once() {
    let app = Arc::new(TestApp::spawn().await);
    let t = token("rc");
    let setup = app.graphql(Some(&t), "mutation { setupTotp { ... on TotpSetup { secret } } }", json!({})).await;
    let secret = setup["data"]["setupTotp"]["secret"].as_str().unwrap().to_owned();
    let res = app
        .graphql(
            Some(&t),
            "mutation($code: String!) { enableTotp(code: $code) { ... on TotpEnabled { recoveryCodes } } }",
            json!({ "code": app.code(&secret, 0) }),
        )
        .await;
    let code = res["data"]["enableTotp"]["recoveryCodes"][0].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(tokio::spawn(graphql(
            app.router.clone(),
            t.clone(),
            "mutation($code: String!) { useRecoveryCode(code: $code) { __typename } }",
            json!({ "code": code }),
        )));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap()["data"]["useRecoveryCode"]["__typename"] == "TotpVerified" {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}
