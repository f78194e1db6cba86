//! Bad input gets a clear error and changes nothing: malformed JSON, oversized bodies, absurd
//! GraphQL queries, mutations over GET (SPEC §3 limits, §4 40001, §5 400).

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

/// graphql-js's `TypeRef` fragment: nine levels of `ofType`.
fn type_ref() -> String {
    format!("fragment TypeRef on __Type {{ kind name {}{} }}", "ofType { kind name ".repeat(9), " }".repeat(9))
}

/// graphql-js `getIntrospectionQuery` with every option on (what GraphiQL and Python `gql` with
/// `input_value_deprecation=True` send), and the older form Apollo tooling sends.
fn introspection_queries() -> Vec<String> {
    let full = format!(
        "query IntrospectionQuery {{ __schema {{ description queryType {{ name kind }} mutationType {{ name kind }} subscriptionType {{ name kind }} \
         types {{ ...FullType }} directives {{ name description isRepeatable locations args(includeDeprecated: true) {{ ...InputValue }} }} }} }} \
         fragment FullType on __Type {{ kind name description specifiedByURL \
         fields(includeDeprecated: true) {{ name description args(includeDeprecated: true) {{ ...InputValue }} type {{ ...TypeRef }} isDeprecated deprecationReason }} \
         inputFields(includeDeprecated: true) {{ ...InputValue }} interfaces {{ ...TypeRef }} \
         enumValues(includeDeprecated: true) {{ name description isDeprecated deprecationReason }} possibleTypes {{ ...TypeRef }} }} \
         fragment InputValue on __InputValue {{ name description type {{ ...TypeRef }} defaultValue isDeprecated deprecationReason }} {}",
        type_ref()
    );
    let apollo = format!(
        "query IntrospectionQuery {{ __schema {{ queryType {{ name }} mutationType {{ name }} subscriptionType {{ name }} types {{ ...FullType }} \
         directives {{ name description locations args {{ ...InputValue }} }} }} }} \
         fragment FullType on __Type {{ kind name description fields(includeDeprecated: true) {{ name description args {{ ...InputValue }} type {{ ...TypeRef }} isDeprecated deprecationReason }} \
         inputFields {{ ...InputValue }} interfaces {{ ...TypeRef }} enumValues(includeDeprecated: true) {{ name description isDeprecated deprecationReason }} possibleTypes {{ ...TypeRef }} }} \
         fragment InputValue on __InputValue {{ name description type {{ ...TypeRef }} defaultValue }} {}",
        type_ref()
    );
    vec![full, apollo]
}

#[tokio::test]
async fn standard_introspection_queries_pass_the_limits() {
    let app = TestApp::spawn().await;
    for query in introspection_queries() {
        let res = app.graphql(None, &query, json!({})).await;
        assert!(res.get("errors").is_none(), "{}", res["errors"]);
        let types = res["data"]["__schema"]["types"].as_array().unwrap();
        assert!(types.iter().any(|t| t["name"] == "SetupTotpResult"));
    }
}

#[tokio::test]
async fn too_deep_and_too_complex_queries_are_refused_with_an_error() {
    let app = TestApp::spawn().await;
    let deep = format!("{{ __schema {{ types {{ {}name{} }} }} }}", "ofType { ".repeat(25), " }".repeat(25));
    let res = app.graphql(None, &deep, json!({})).await;
    assert!(res["errors"][0]["message"].as_str().unwrap().contains("nested too deep"), "{res}");
    assert_eq!(res["data"], Value::Null);

    let wide: String = (0..1100).map(|i| format!("a{i}: enabled ")).collect();
    let res = app.graphql(None, &format!("{{ twoFactor {{ {wide} }} }}"), json!({})).await;
    assert!(res["errors"][0]["message"].as_str().unwrap().contains("too complex"), "{res}");
    assert_eq!(res["data"], Value::Null);
}

#[tokio::test]
async fn batches_are_limited_to_ten_operations() {
    let app = TestApp::spawn().await;
    let op = json!({ "query": "{ __typename }" });
    let ten = Value::Array(vec![op.clone(); 10]).to_string();
    let (status, body) = app.json(Method::POST, "/graphql", None, Some(&ten)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 10);
    let eleven = Value::Array(vec![op; 11]).to_string();
    let (status, body) = app.json(Method::POST, "/graphql", None, Some(&eleven)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("at most 10"));
}

#[tokio::test]
async fn oversized_bodies_get_413_or_the_dialects_parameter_error() {
    let app = TestApp::spawn().await;
    let t = token("ivan");
    let big = format!(r#"{{"query":"{{ __typename }}","pad":"{}"}}"#, "x".repeat(70 * 1024));
    let (status, body) = app.json(Method::POST, "/graphql", Some(&t), Some(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["errors"][0]["message"].is_string());
    let big_code = format!(r#"{{"code":"{}"}}"#, "1".repeat(70 * 1024));
    let (status, body) = app.json(Method::POST, "/api/v1/me/mfa/verify", Some(&t), Some(&big_code)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].is_string());
    let big_patch = format!(r#"{{"two_fa_enabled":true,"two_fa_code":"{}"}}"#, "1".repeat(70 * 1024));
    let (status, body) = app.json(Method::PATCH, "/user/setting", Some(&t), Some(&big_patch)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], 40001);
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors_not_crashes() {
    let app = TestApp::spawn().await;
    let t = token("judy");
    for body in ["", "{", "not json", "[]", "42", r#"{"code":123456}"#, r#"{"code":["1"]}"#] {
        for path in [
            "/api/v1/me/mfa/totp/enable",
            "/api/v1/me/mfa/totp/disable",
            "/api/v1/me/mfa/backup-codes/regenerate",
            "/api/v1/me/mfa/verify",
        ] {
            let (status, res) = app.json(Method::POST, path, Some(&t), Some(body)).await;
            assert_eq!(
                (status, res),
                (StatusCode::BAD_REQUEST, json!({ "error": "Invalid JSON body." })),
                "{path} {body:?}"
            );
        }
    }
    let (status, res) =
        app.json(Method::POST, "/api/v1/me/mfa/verify", Some(&t), Some(r#"{"code":"123456","type":"sms"}"#)).await;
    assert_eq!((status, res), (StatusCode::BAD_REQUEST, json!({ "error": "Invalid JSON body." })));
    for body in ["{}", r#"{"code":""}"#, r#"{"code":null}"#] {
        let (status, res) = app.json(Method::POST, "/api/v1/me/mfa/totp/enable", Some(&t), Some(body)).await;
        assert_eq!((status, res), (StatusCode::BAD_REQUEST, json!({ "error": "Missing code." })), "{body}");
    }
    // A wrong Content-Type is not a 415: the body is what counts.
    let (status, _, bytes) =
        app.send(Method::POST, "/api/v1/me/mfa/verify", Some(&t), Some("x=1"), &[("content-type", "text/plain")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), json!({ "error": "Invalid JSON body." }));

    for body in [
        "",
        "{",
        "not json",
        "[]",
        r#"{"two_fa_enabled":"yes","two_fa_code":"1"}"#,
        r#"{"two_fa_enabled":true}"#,
        r#"{"two_fa_enabled":true,"two_fa_code":123456}"#,
    ] {
        for path in ["/user/setting", "/api/v4/user/setting"] {
            let (status, res) = app.json(Method::PATCH, path, Some(&t), Some(body)).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(res["code"], 40001, "{path} {body:?}: {res}");
            assert_eq!(res["msg"], "Parameter error");
            assert!(res["correlation_id"].is_string() && res.get("error").is_none());
        }
    }
    // A PATCH carrying only other settings succeeds and changes nothing.
    let (_, res) = app.json(Method::PATCH, "/user/setting", Some(&t), Some(r#"{"nick":"Judy","language":"en"}"#)).await;
    assert_eq!(res, json!({ "code": 0, "msg": "" }));

    for body in ["", "{", "[]", r#"{"variables":{}}"#, r#"{"query":42}"#] {
        let (status, res) = app.json(Method::POST, "/graphql", Some(&t), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(res["errors"][0]["message"].is_string());
    }
    let res = app.graphql(Some(&t), "mutation { setupTotp { ", json!({})).await;
    assert!(res["errors"][0]["message"].is_string(), "syntax errors are GraphQL errors: {res}");
    let (_, status) = app.json(Method::GET, "/api/v1/me/mfa/status", Some(&t), None).await;
    assert_eq!(status, json!({ "totpEnabled": false, "backupCodesRemaining": 0, "passkeysCount": 0 }));
}

#[tokio::test]
async fn a_mutation_over_get_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = token("kim");
    let (status, headers, _) = app
        .send(
            Method::GET,
            "/graphql?query=mutation%20%7B%20setupTotp%20%7B%20__typename%20%7D%20%7D",
            Some(&t),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    let (status, res) = app
        .json(
            Method::GET,
            "/graphql?query=%7B%20twoFactor%20%7B%20enabled%20pendingSetupExpiresAt%20%7D%20%7D",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(res["data"]["twoFactor"], json!({ "enabled": false, "pendingSetupExpiresAt": null }));
}

#[tokio::test]
async fn graphql_answers_json_or_graphql_response_json_as_asked() {
    let app = TestApp::spawn().await;
    let body = r#"{"query":"{ __typename }"}"#;
    let (_, headers, _) = app.send(Method::POST, "/graphql", None, Some(body), &[]).await;
    assert_eq!(headers["content-type"], "application/json");
    let (_, headers, _) = app
        .send(
            Method::POST,
            "/graphql",
            None,
            Some(body),
            &[("accept", "application/graphql-response+json, application/json;q=0.9")],
        )
        .await;
    assert_eq!(headers["content-type"], "application/graphql-response+json");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    assert_eq!(app.json(Method::GET, "/healthz", None, None).await, (StatusCode::OK, json!({ "status": "ok" })));
    assert_eq!(app.json(Method::GET, "/readyz", None, None).await, (StatusCode::OK, json!({ "status": "ok" })));
    let (status, headers, _) = app.send(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(uuid::Uuid::parse_str(headers["x-correlation-id"].to_str().unwrap()).is_ok());
    let (status, _) = app.json(Method::GET, "/no/such/route", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_count_requests_and_domain_events() {
    let app = TestApp::spawn().await;
    let t = token("metrics-user");
    app.graphql(Some(&t), "mutation SetupForMetrics { setupTotp { __typename } }", json!({})).await;
    app.json(Method::POST, "/api/v1/me/mfa/verify", Some(&t), Some(r#"{"code":"123456"}"#)).await;
    let (status, headers, body) = app.send(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = String::from_utf8(body).unwrap();
    for needle in [
        "twofold_enrolments_total",
        "twofold_http_requests_total{method=\"POST\",route=\"/graphql\",operation=\"setupTotp\",status=\"200\"}",
        "twofold_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/me/mfa/verify\"",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

/// A method is any token to HTTP: invented ones get 405 and are counted under `method="other"`,
/// so a client cannot add series to `/metrics` (each one a counter and 14 histogram buckets, for
/// good) by inventing methods.
#[tokio::test]
async fn invented_methods_add_no_metrics_series() {
    let app = TestApp::spawn().await;
    for i in 0..200 {
        let method = Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        for path in ["/healthz", "/api/v1/me/mfa/verify"] {
            let (status, _, _) = app.send(method.clone(), path, None, None, &[]).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    let (_, _, body) = app.send(Method::GET, "/metrics", None, None, &[]).await;
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("INVENTED"), "an invented method became a label");
    for route in ["/healthz", "/api/v1/me/mfa/verify"] {
        let line =
            format!(r#"twofold_http_requests_total{{method="other",route="{route}",operation="",status="405"}}"#);
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
}

/// The caller's pending-setup expiry and event count: what a refused request must not change.
async fn state_of(app: &TestApp, t: &str) -> Value {
    let res =
        app.graphql(Some(t), "{ twoFactor { pendingSetupExpiresAt events(first: 100) { kind } } }", json!({})).await;
    res["data"]["twoFactor"].clone()
}

#[tokio::test]
async fn only_post_runs_a_mutation_head_included() {
    let app = TestApp::spawn().await;
    let t = token("hal");
    let before = state_of(&app, &t).await;
    let path = "/graphql?query=mutation%20%7B%20setupTotp%20%7B%20__typename%20%7D%20%7D";
    for method in [Method::HEAD, Method::GET] {
        let (status, _, _) = app.send(method.clone(), path, Some(&t), None, &[]).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    // A mutation inside a named-operation document picked by `operationName`, too.
    let path = "/graphql?query=query%20Q%7B__typename%7D%20mutation%20M%7BsetupTotp%7B__typename%7D%7D&operationName=M";
    let (status, _, _) = app.send(Method::HEAD, path, Some(&t), None, &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(state_of(&app, &t).await, before);
}

fn aliased(field: &str, n: usize) -> String {
    (0..n).map(|i| format!("a{i}: {field} ")).collect()
}

#[tokio::test]
async fn a_request_cannot_multiply_mutations() {
    let app = TestApp::spawn().await;
    let t = token("max");
    let before = state_of(&app, &t).await;
    let prepare = "prepareTwoFactor { __typename }";
    // Eleven aliased mutation fields: refused whole, nothing runs.
    let res = app.graphql(Some(&t), &format!("mutation {{ {} }}", aliased(prepare, 11)), json!({})).await;
    assert_eq!(res["errors"][0]["extensions"]["code"], "TOO_MANY_ROOT_FIELDS", "{res}");
    assert!(res.get("data").is_none_or(Value::is_null), "{res}");
    // Fields through a fragment spread count too.
    let fragment = format!("mutation {{ ...F }} fragment F on Mutation {{ {} }}", aliased(prepare, 11));
    let res = app.graphql(Some(&t), &fragment, json!({})).await;
    assert_eq!(res["errors"][0]["extensions"]["code"], "TOO_MANY_ROOT_FIELDS", "{res}");
    // Across a batch: 6 + 5 mutation fields.
    let batch = json!([
        { "query": format!("mutation {{ {} }}", aliased(prepare, 6)) },
        { "query": format!("mutation {{ {} }}", aliased(prepare, 5)) },
    ]);
    let (status, res) = app.json(Method::POST, "/graphql", Some(&t), Some(&batch.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(res["errors"][0]["extensions"]["code"], "TOO_MANY_ROOT_FIELDS", "{res}");
    assert_eq!(state_of(&app, &t).await, before);
    // Ten run (and write one event each).
    let res = app.graphql(Some(&t), &format!("mutation {{ {} }}", aliased(prepare, 10)), json!({})).await;
    assert!(res.get("errors").is_none(), "{res}");
    assert_eq!(state_of(&app, &t).await["events"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn a_request_cannot_multiply_reads() {
    let app = TestApp::spawn().await;
    let t = token("rea");
    let res = app.graphql(Some(&t), &format!("{{ {} }}", aliased("twoFactor { enabled }", 21)), json!({})).await;
    assert_eq!(res["errors"][0]["extensions"]["code"], "TOO_MANY_ROOT_FIELDS", "{res}");
    let batch = json!([
        { "query": format!("{{ {} }}", aliased("twoFactor { enabled }", 15)) },
        { "query": format!("{{ {} }}", aliased("twoFactor { enabled }", 6)) },
    ]);
    let (_, res) = app.json(Method::POST, "/graphql", Some(&t), Some(&batch.to_string())).await;
    assert_eq!(res["errors"][0]["extensions"]["code"], "TOO_MANY_ROOT_FIELDS", "{res}");
    // Twenty run; introspection fields do not count.
    let query =
        format!("{{ {} __typename __schema {{ queryType {{ name }} }} }}", aliased("twoFactor { enabled }", 20));
    let res = app.graphql(Some(&t), &query, json!({})).await;
    assert!(res.get("errors").is_none(), "{res}");
    assert_eq!(res["data"]["a19"]["enabled"], false);
}

/// A page size far outside 32 bits (as a literal or a variable) is clamped like any other, not a
/// resolver error that nulls a non-null field; a number no integer type holds is refused before
/// anything runs.
#[tokio::test]
async fn huge_page_sizes_are_clamped() {
    let app = TestApp::spawn().await;
    let t = token("big");
    let res = app.graphql(Some(&t), "{ twoFactor { events(first: 23020664465487824) { kind } } }", json!({})).await;
    assert!(res.get("errors").is_none(), "{res}");
    assert!(res["data"]["twoFactor"]["events"].is_array(), "{res}");
    let query = "query($n: Int!) { twoFactor { events(first: $n) { kind } } }";
    let res = app.graphql(Some(&t), query, json!({ "n": -4798759388_i64 })).await;
    assert!(res.get("errors").is_none(), "{res}");
    let res =
        app.graphql(Some(&t), "{ twoFactor { events(first: 100000000000000000000000) { kind } } }", json!({})).await;
    eprintln!("{res}");
    assert!(res["errors"].is_array(), "{res}");
    assert!(res.get("data").is_none_or(Value::is_null), "nothing runs: {res}");
}
