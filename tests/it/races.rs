//! Concurrency: replay protection and the lockout hold under concurrent requests, also across
//! two Twofold instances (two routers with their own pools) sharing one database.

use std::sync::Arc;

use crate::common::*;
use axum::Router;
use axum::body::Body;
use axum::http::Request;
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

/// Every instance's events are in the database as soon as its answer is (they are written in
/// the unit of the check), so the events read right after show all of them.
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

/// A wrong 6-digit code for `secret`: none of the codes of the steps around now.
fn wrong_code(app: &TestApp, secret: &str, n: u32) -> String {
    let valid: Vec<String> = (-3..=3).map(|s| app.code(secret, s)).collect();
    (n..).map(|k| format!("{:06}", (k * 7919 + 13) % 1_000_000)).find(|c| !valid.contains(c)).unwrap()
}

/// Verify `n` wrong codes one after another, leaving `5 - n` attempts.
async fn spend_attempts(app: &TestApp, sub: &str, secret: &str, n: u32) {
    for i in 0..n {
        let res = graphql(app.router.clone(), token(sub), VERIFY, json!({ "code": wrong_code(app, secret, i) })).await;
        assert_eq!(res["data"]["verifyTotp"]["__typename"], "InvalidCode", "{res}");
    }
}

fn typenames(res: &Value) -> Vec<String> {
    res.as_array()
        .unwrap_or_else(|| panic!("{res}"))
        .iter()
        .map(|r| r["data"]["verifyTotp"]["__typename"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned())
        .collect()
}

/// One batched request of 10 `verifyTotp` operations, the right code last: the operations run in
/// order and each is counted before the next is judged, so the right code comes after the lockout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_guesses_is_counted_in_order() {
    let app = TestApp::spawn().await;
    let secret = enable_user(&app, "batcher", -1).await.0;
    let mut ops: Vec<Value> =
        (0..9).map(|i| json!({ "query": VERIFY, "variables": { "code": wrong_code(&app, &secret, i) } })).collect();
    ops.push(json!({ "query": VERIFY, "variables": { "code": app.code(&secret, 0) } }));
    let (status, res) = app
        .json(axum::http::Method::POST, "/graphql", Some(&token("batcher")), Some(&Value::Array(ops).to_string()))
        .await;
    assert_eq!(status, 200);
    let expected: Vec<&str> = [["InvalidCode"; 5], ["TooManyAttempts"; 5]].concat();
    assert_eq!(typenames(&res), expected);
}

/// The same with ten aliased fields in one mutation (GraphQL runs mutation fields serially).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aliased_guesses_are_counted_in_order() {
    let app = TestApp::spawn().await;
    let secret = enable_user(&app, "aliaser", -1).await.0;
    let fields: String = (0..10)
        .map(|i| {
            let code = if i == 9 { app.code(&secret, 0) } else { wrong_code(&app, &secret, i) };
            format!("a{i}: verifyTotp(code: \"{code}\") {{ __typename }} ")
        })
        .collect();
    let res = app.graphql(Some(&token("aliaser")), &format!("mutation {{ {fields} }}"), json!({})).await;
    let got: Vec<&str> = (0..10).map(|i| res["data"][format!("a{i}")]["__typename"].as_str().unwrap()).collect();
    let expected: Vec<&str> = [["InvalidCode"; 5], ["TooManyAttempts"; 5]].concat();
    assert_eq!(got, expected, "{res}");
}

/// Sends `requests` over raw sockets as one burst: every connection is opened first, then all
/// requests are written at once. Returns each answer's status line and body, in order.
async fn burst(addr: std::net::SocketAddr, requests: Vec<String>) -> Vec<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut streams = Vec::new();
    for _ in &requests {
        streams.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let go = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let mut tasks = Vec::new();
    for (mut stream, request) in streams.into_iter().zip(requests) {
        let go = go.clone();
        tasks.push(tokio::spawn(async move {
            go.wait().await;
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            let text = String::from_utf8_lossy(&answer).into_owned();
            let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
            (status, body)
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn http_post(path: &str, token: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: twofold\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[derive(Clone, Copy, Debug)]
enum Dialect {
    GraphQl,
    Storno,
}

/// What one answer of the burst was: "ok", "wrong" or "locked".
fn outcome(dialect: Dialect, status: u16, body: &str) -> &'static str {
    match dialect {
        Dialect::GraphQl => {
            let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{status}: {body}"));
            match v["data"]["verifyTotp"]["__typename"].as_str() {
                Some("TotpVerified") => "ok",
                Some("InvalidCode") => "wrong",
                Some("TooManyAttempts") => "locked",
                _ => panic!("{body}"),
            }
        }
        Dialect::Storno => match status {
            200 => "ok",
            401 => "wrong",
            429 => "locked",
            _ => panic!("{status}: {body}"),
        },
    }
}

/// With one attempt left, a burst of 150 concurrent verifies with the right code at a random place
/// gets it through only when it happens to be judged first (about 1 in 150): at most 2 rounds in 8.
async fn burst_with_one_attempt_left(dialect: Dialect) {
    let app = TestApp::spawn().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(twofold::run(listener, app.state.clone(), async {
        let _ = stopped.await;
    }));
    let mut got_through = 0;
    for round in 0..8_u32 {
        let sub = format!("burst-{round}");
        let secret = enable_user(&app, &sub, -1).await.0;
        spend_attempts(&app, &sub, &secret, 4).await;
        let right_at = (round as usize * 37 + 11) % 150;
        let t = token(&sub);
        let requests = (0..150)
            .map(|i| {
                let code = if i == right_at { app.code(&secret, 0) } else { wrong_code(&app, &secret, 100 + i as u32) };
                match dialect {
                    Dialect::GraphQl => http_post(
                        "/graphql",
                        &t,
                        &json!({ "query": VERIFY, "variables": { "code": code } }).to_string(),
                    ),
                    Dialect::Storno => {
                        http_post("/api/v1/me/mfa/verify", &t, &json!({ "code": code, "type": "totp" }).to_string())
                    }
                }
            })
            .collect();
        let answers = burst(addr, requests).await;
        let outcomes: Vec<&str> = answers.iter().map(|(s, b)| outcome(dialect, *s, b)).collect();
        let judged_wrong = outcomes.iter().filter(|o| **o == "wrong").count();
        if outcomes[right_at] == "ok" {
            got_through += 1;
            // A success resets the counter: at most five more wrong guesses are judged.
            assert!(judged_wrong <= 5, "round {round}: {outcomes:?}");
        } else {
            // The one attempt left was spent by exactly one guess; every other answer is a lockout.
            assert_eq!(judged_wrong, 1, "round {round}: {outcomes:?}");
        }
    }
    assert!(got_through <= 2, "the right code got through in {got_through} of 8 rounds");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graphql_burst_with_one_attempt_left_judges_one_guess() {
    burst_with_one_attempt_left(Dialect::GraphQl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storno_burst_with_one_attempt_left_judges_one_guess() {
    burst_with_one_attempt_left(Dialect::Storno).await;
}

/// On PostgreSQL an instance remembers the credential of a user whose verify it accepted and
/// judges their next code on that copy, in one round trip. Whatever another instance changes in
/// between — a used step, a new secret, a lockout — the answers stay the ones the database gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_never_answers_from_a_stale_copy_of_a_credential() {
    let (a, b) = two_instances().await;
    let t = token("returning");
    let verify = |app: &TestApp, code: String| {
        let (router, t) = (app.router.clone(), t.clone());
        async move {
            let res = graphql(router, t, VERIFY, json!({ "code": code })).await;
            res["data"]["verifyTotp"]["__typename"].as_str().unwrap_or_else(|| panic!("{res}")).to_owned()
        }
    };
    let (old_secret, recovery) = enable_user(&a, "returning", -1).await;
    assert_eq!(verify(&a, a.code(&old_secret, 0)).await, "TotpVerified");
    assert_eq!(verify(&a, a.code(&old_secret, 0)).await, "CodeAlreadyUsed");
    a.clock.advance_secs(30);
    assert_eq!(verify(&a, a.code(&old_secret, 0)).await, "TotpVerified");

    // `b` disables two-factor and enrols a new secret: the old one's codes stop working on `a`.
    let disable = "mutation($code: String!) { disableTotp(code: $code) { __typename } }";
    let res = b.graphql(Some(&t), disable, json!({ "code": recovery[0] })).await;
    assert_eq!(res["data"]["disableTotp"]["__typename"], "TotpDisabled", "{res}");
    let new_secret = enable_user(&b, "returning", -1).await.0;
    assert_eq!(verify(&a, a.code(&old_secret, 1)).await, "InvalidCode");
    assert_eq!(verify(&a, a.code(&new_secret, 0)).await, "TotpVerified");

    // `b` counts five wrong codes: `a` refuses the right one.
    let good = a.code(&new_secret, 1);
    for i in 1..=5 {
        let wrong = format!("{:06}", (good.parse::<u32>().unwrap() + i) % 1_000_000);
        assert_eq!(verify(&b, wrong).await, "InvalidCode", "guess {i}");
    }
    assert_eq!(verify(&a, good.clone()).await, "TooManyAttempts");
    a.clock.advance_secs(301);
    assert_eq!(verify(&a, a.code(&new_secret, 0)).await, "TotpVerified");
}
