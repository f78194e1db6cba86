//! Property tests (proptest) of every parser that takes outside input, through public functions
//! and the router: TOTP and recovery-code normalisation, the otpauth label, bearer JWTs, the
//! Cloudreve and Storno JSON bodies and the GraphQL body, correlation-id headers, durations, the
//! nesting scanners, the import CSV and the webhook settings. Each never panics, and where a
//! parser promises a result the property checks it against an independent oracle (a round
//! trip, or a value the test built itself).
//!
//! Case counts are modest so the module runs in seconds ([`CASES`], [`ROUTER_CASES`]); the
//! cargo-fuzz targets in `fuzz/` search the same inputs for longer. Failures are not persisted
//! to files (the shrunk input is in the panic message).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt;

use twofold::config::parse_duration;
use twofold::nesting::{graphql_too_deep, json_too_deep};
use twofold::totp::{Secret, TotpParams, normalize_recovery_code, normalize_totp_code, otpauth_uri, qr_data_uri};

use crate::common::{JWT_SECRET, TestApp, authenticator, token, unix_now};

/// Cases per property for the pure parsers.
const CASES: u32 = 512;
/// Cases per property that go through the router (and the database).
const ROUTER_CASES: u32 = 256;

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

// ---------------------------------------------------------------------------------------------
// TOTP and recovery codes
// ---------------------------------------------------------------------------------------------

/// Whitespace a person may type between characters.
fn gaps(n: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(vec!["", "", " ", "  ", "\t", "\u{a0}"]).prop_map(str::to_owned), n)
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Any input normalises to exactly `digits` ASCII digits (the input without its whitespace)
    /// or to nothing.
    #[test]
    fn totp_codes_normalise_to_digits_or_nothing(input in any::<String>(), digits in prop::sample::select(vec![6u8, 8])) {
        if let Some(code) = normalize_totp_code(&input, digits) {
            prop_assert_eq!(code.len(), usize::from(digits));
            prop_assert!(code.bytes().all(|b| b.is_ascii_digit()));
            let stripped: String = input.chars().filter(|c| !c.is_whitespace()).collect();
            prop_assert_eq!(code, stripped);
        }
    }

    /// A code typed with spaces (`123 456`) is accepted as its digits.
    #[test]
    fn totp_codes_with_spaces_are_accepted(code in "[0-9]{6}", gaps in gaps(7)) {
        let typed: String = gaps.iter().zip(code.chars().map(String::from).chain([String::new()]))
            .map(|(g, c)| format!("{g}{c}")).collect();
        prop_assert_eq!(normalize_totp_code(&typed, 6), Some(code));
    }

    /// Any input normalises to 12 symbols of the unambiguous alphabet or to nothing, and
    /// normalising again changes nothing.
    #[test]
    fn recovery_codes_normalise_to_the_alphabet_or_nothing(input in any::<String>()) {
        if let Some(code) = normalize_recovery_code(&input) {
            prop_assert_eq!(code.len(), 12);
            prop_assert!(code.bytes().all(|b| b"23456789ABCDEFGHJKMNPQRSTUVWXYZ".contains(&b)), "{}", code);
            prop_assert_eq!(normalize_recovery_code(&code), Some(code.clone()));
        }
    }

    /// A shown code typed in any case, with or without separators and spaces, is accepted; one
    /// with a confusable symbol (0, O, 1, I, L) is not.
    #[test]
    fn recovery_codes_are_accepted_as_typed(
        code in "[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{12}",
        lower in prop::collection::vec(any::<bool>(), 12),
        seps in prop::collection::vec(prop::sample::select(vec!["", "-", " ", " - ", "\t"]), 13),
        confusable in prop::sample::select(vec!['0', 'O', '1', 'I', 'L', 'o', 'l', 'i']),
        at in 0usize..12,
    ) {
        let typed: String = code.chars().enumerate()
            .map(|(i, c)| format!("{}{}", seps[i], if lower[i] { c.to_ascii_lowercase() } else { c }))
            .chain([seps[12].to_owned()]).collect();
        prop_assert_eq!(normalize_recovery_code(&typed), Some(code.clone()));
        let mut broken: Vec<char> = code.chars().collect();
        broken[at] = confusable;
        prop_assert_eq!(normalize_recovery_code(&broken.into_iter().collect::<String>()), None);
    }
}

// ---------------------------------------------------------------------------------------------
// The otpauth URI
// ---------------------------------------------------------------------------------------------

/// RFC 3986 percent-decoding (`None` on a malformed escape or a non-UTF-8 result).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The account label SPEC §10 asks for: colons removed, the longest prefix of at most 128 bytes
/// that ends at a character boundary.
fn expected_account(account: &str) -> String {
    let mut label = String::new();
    for c in account.chars().filter(|&c| c != ':') {
        if label.len() + c.len_utf8() > 128 {
            break;
        }
        label.push(c);
    }
    label
}

fn long_string(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![4 => any::<char>(), 3 => prop::sample::select(vec![':', ' ', '@', '+', '%', '/', '?', '&', '#', 'é', '😀']), 3 => prop::char::range('a', 'z')],
        0..max_chars,
    )
    .prop_map(|c| c.into_iter().collect())
}

fn uri_parts(uri: &str) -> Result<(String, String, String), TestCaseError> {
    let rest = uri.strip_prefix("otpauth://totp/").ok_or_else(|| TestCaseError::fail("prefix"))?;
    let (label, query) = rest.split_once('?').ok_or_else(|| TestCaseError::fail("no query"))?;
    let (issuer, account) = label.split_once(':').ok_or_else(|| TestCaseError::fail("no colon in the label"))?;
    prop_assert!(!account.contains(':'), "one literal colon in the label: {}", label);
    for part in [issuer, account] {
        prop_assert!(
            part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "only unreserved characters and escapes: {}",
            part
        );
    }
    Ok((issuer.to_owned(), account.to_owned(), query.to_owned()))
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Any issuer and account name: the label percent-decodes to the issuer without colons and
    /// the account shortened to at most 128 bytes at a character boundary, with one literal
    /// colon between them, no `+` and no space anywhere; the query repeats the encoded issuer
    /// and carries the secret and parameters.
    #[test]
    fn otpauth_labels_round_trip_through_percent_decoding(
        issuer in long_string(70),
        account in long_string(400),
        secret in prop::collection::vec(any::<u8>(), 20),
    ) {
        let secret = Secret::from_bytes(secret);
        let uri = otpauth_uri(&issuer, &account, &secret, TotpParams::default());
        prop_assert!(!uri.contains('+') && !uri.contains(' '), "{}", uri);
        let (enc_issuer, enc_account, query) = uri_parts(&uri)?;
        let decoded = percent_decode(&enc_account).ok_or_else(|| TestCaseError::fail("account escapes"))?;
        prop_assert!(decoded.len() <= 128);
        prop_assert_eq!(decoded, expected_account(&account));
        prop_assert_eq!(percent_decode(&enc_issuer), Some(issuer.replace(':', "")));
        prop_assert_eq!(
            query,
            format!("secret={}&issuer={enc_issuer}&algorithm=SHA1&digits=6&period=30", secret.to_base32())
        );
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// With an issuer of at most 64 characters (the configuration's bound), any account name's
    /// URI fits a QR code: setup never fails because of a claim's length.
    #[test]
    fn any_account_name_fits_the_qr_code(issuer in long_string(65), account in long_string(600)) {
        let issuer: String = issuer.chars().take(64).collect();
        let secret = Secret::from_bytes(vec![7; 20]);
        let uri = otpauth_uri(&issuer, &account, &secret, TotpParams::default());
        prop_assert!(qr_data_uri(&uri).is_ok(), "{} bytes: {}", uri.len(), uri);
    }
}

// ---------------------------------------------------------------------------------------------
// Bearer JWTs
// ---------------------------------------------------------------------------------------------

fn b64url(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

/// `header.claims.signature`, signed HS256 with the test secret whatever the header says.
fn signed(header: &Value, claims: &Value) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64url(&mac.finalize().into_bytes()))
}

/// A JSON value of some kind, for a claim or header member of the wrong type.
fn json_scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,8}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!(["access"])),
    ]
    .boxed()
}

fn maybe(strategy: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![1 => Just(None), 9 => strategy.prop_map(Some)]
}

/// A JOSE header: mostly `HS256`, sometimes another or no `alg`, `crit`, `typ`, `kid`, junk.
fn jose_header() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        16 => Just(json!("HS256")),
        1 => prop::sample::select(vec!["HS512", "none", "RS256", "EdDSA", "hs256", ""]).prop_map(Value::from),
        1 => json_scalar(),
    ];
    let typ =
        prop::sample::select(vec!["JWT", "JWT", "JWT", "twofold-verification+jwt", "at+jwt"]).prop_map(Value::from);
    (
        maybe(alg),
        prop::option::weighted(0.5, typ),
        prop::option::weighted(0.1, json_scalar()),
        prop::option::weighted(0.3, json_scalar()),
    )
        .prop_map(|(alg, typ, crit, kid)| {
            let mut h = serde_json::Map::new();
            for (k, v) in [("alg", alg), ("typ", typ), ("crit", crit), ("kid", kid)] {
                if let Some(v) = v {
                    h.insert(k.into(), v);
                }
            }
            Value::Object(h)
        })
}

/// Claims: `sub`, `exp`, `nbf`, `token_type`, `email`, `scope` of any kind or absent.
fn claims() -> impl Strategy<Value = Value> {
    let now = unix_now();
    let time = prop_oneof![
        Just(json!(now + 3600)),
        Just(json!(now + 3600)),
        Just(json!(now + 3600)),
        Just(json!(now + 3600)),
        Just(json!(now - 3600)),
        Just(json!(now + 10)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        json_scalar(),
    ]
    .boxed();
    let sub = prop_oneof![
        16 => "[a-z0-9@.]{1,12}".prop_map(Value::from),
        1 => Just(Value::from("")),
        1 => Just(Value::from("s".repeat(256))),
        1 => Just(Value::from("s".repeat(255))),
        1 => json_scalar(),
    ];
    let token_type = prop_oneof![3 => Just(json!("access")), 1 => Just(json!("refresh")), 1 => json_scalar()];
    (
        maybe(sub),
        maybe(time.clone()),
        prop::option::weighted(0.2, time),
        maybe(token_type),
        maybe(json_scalar()),
        maybe(json_scalar()),
    )
        .prop_map(|(sub, exp, nbf, token_type, email, scope)| {
            let mut c = serde_json::Map::new();
            for (k, v) in [
                ("sub", sub),
                ("exp", exp),
                ("nbf", nbf),
                ("token_type", token_type),
                ("email", email),
                ("scope", scope),
            ] {
                if let Some(v) = v {
                    c.insert(k.into(), v);
                }
            }
            Value::Object(c)
        })
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Any bytes as the `Authorization` header are refused (an `AuthError`), never a panic.
    #[test]
    fn random_authorization_headers_are_refused(header in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(authenticator().authenticate(Some(&header)).is_err());
    }

    /// Three base64url segments of random bytes are refused.
    #[test]
    fn random_token_segments_are_refused(
        segments in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..5),
        scheme in prop::sample::select(vec!["Bearer ", "bearer ", "BEARER  ", "Bearer\t", "Basic "]),
    ) {
        let token: Vec<String> = segments.iter().map(|s| b64url(s)).collect();
        let header = format!("{scheme}{}", token.join("."));
        prop_assert!(authenticator().authenticate(Some(header.as_bytes())).is_err());
    }

    /// Correctly signed tokens with any header and claims: never a panic; accepted only when
    /// the header is plain `HS256` without `crit` (and not an assertion's `typ`), `exp` is in the
    /// future, `nbf` (if any) is not, `sub` is a string of 1–255 bytes and `token_type` is absent
    /// or `access`; the viewer is that `sub`.
    #[test]
    fn signed_tokens_are_accepted_only_when_every_rule_holds(header in jose_header(), claims in claims()) {
        let token = signed(&header, &claims);
        let bearer = format!("Bearer {token}");
        let result = authenticator().authenticate(Some(bearer.as_bytes()));
        if let Ok(viewer) = result {
            let now = unix_now();
            prop_assert_eq!(&header["alg"], &json!("HS256"));
            prop_assert!(header.get("crit").is_none());
            prop_assert_ne!(&header["typ"], &json!("twofold-verification+jwt"));
            prop_assert!(claims["exp"].as_f64().is_some_and(|e| e > (now - 31) as f64), "{}", claims);
            if let Some(nbf) = claims.get("nbf") {
                prop_assert!(nbf.as_f64().is_some_and(|n| n <= (now + 31) as f64), "{}", claims);
            }
            let sub = claims["sub"].as_str().unwrap_or_default();
            prop_assert!((1..=255).contains(&sub.len()));
            prop_assert_eq!(viewer.user_id, sub);
            prop_assert!(claims.get("token_type").is_none_or(|t| t == "access"), "{}", claims);
        }
    }
}

/// The shrunk counterexample the property above found: `"token_type": null` is carried, and it is
/// not `access` (serde used to read the `null` as an absent member, so such a token was accepted).
#[test]
fn a_null_token_type_is_not_access() {
    let claims = json!({ "sub": "nully", "exp": unix_now() + 3600, "token_type": null });
    let bearer = format!("Bearer {}", signed(&json!({ "alg": "HS256" }), &claims));
    assert_eq!(authenticator().authenticate(Some(bearer.as_bytes())), Err(twofold::auth::AuthError::WrongTokenType));
}

// ---------------------------------------------------------------------------------------------
// Request bodies and headers through the router
// ---------------------------------------------------------------------------------------------

/// A JSON value of any shape, with keys the routes look for.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[0-9 ]{0,8}".prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        let key = prop::sample::select(vec![
            "code",
            "type",
            "nonce",
            "two_fa_enabled",
            "two_fa_code",
            "query",
            "variables",
            "operationName",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key.prop_map(str::to_owned), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body: random bytes, any JSON, or the right keys with values of any type.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        any_json().prop_map(|v| v.to_string().into_bytes()),
        (any_json(), any_json(), any_json()).prop_map(|(a, b, c)| {
            json!({ "code": a, "type": b, "two_fa_enabled": c, "two_fa_code": a, "nonce": b, "query": c })
                .to_string()
                .into_bytes()
        }),
        Just(b"{\"code\":\"123456\"}".to_vec()),
        Just(b"{\"two_fa_enabled\":true,\"two_fa_code\":\"123456\"}".to_vec()),
    ]
}

const BODY_ROUTES: [(&str, &str); 9] = [
    ("POST", "/api/v1/me/mfa/totp/setup"),
    ("POST", "/api/v1/me/mfa/totp/enable"),
    ("POST", "/api/v1/me/mfa/totp/disable"),
    ("POST", "/api/v1/me/mfa/backup-codes/regenerate"),
    ("POST", "/api/v1/me/mfa/verify"),
    ("PATCH", "/user/setting"),
    ("PATCH", "/api/v4/user/setting"),
    ("POST", "/graphql"),
    ("GET", "/user/setting/2fa"),
];

/// Runs `cases` of `strategy` against a fresh in-process app (SQLite, or PostgreSQL when the
/// suite runs there) with `check`.
fn run_router_cases<S: Strategy>(
    cases: u32,
    strategy: S,
    check: impl Fn(axum::Router, S::Value) -> Pin<Box<dyn Future<Output = Result<(), TestCaseError>> + Send>>,
) where
    S::Value: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = runtime.block_on(async {
        let app = TestApp::spawn().await;
        // Users in each state: none, pending, enabled.
        let t = token("props-pending");
        app.graphql(Some(&t), "mutation { setupTotp { __typename } }", json!({})).await;
        crate::common::enable_user(&app, "props-enabled", -1).await;
        app
    });
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |value| runtime.block_on(check(app.router.clone(), value)));
    drop(app);
    runtime.shutdown_timeout(Duration::from_secs(5));
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn send(router: axum::Router, request: Request<Body>) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// Random bytes, any JSON, and the expected keys with values of any type, as the body of every
/// REST route of both dialects and of `POST /graphql`, from users with no credential, a pending
/// one or an enabled one: never a 5xx, always a JSON answer (Cloudreve: HTTP 200 with an integer
/// `code`; Storno: a 2xx or an `{"error":…}`/`{"code":401,…}` body).
#[test]
fn random_json_bodies_never_get_a_server_error() {
    let users = prop::sample::select(vec!["props-none", "props-pending", "props-enabled"]);
    let content_type = prop::sample::select(vec![
        Some("application/json"),
        Some("text/plain"),
        None,
        Some("application/json; charset=utf-8"),
    ]);
    let strategy = (prop::sample::select(BODY_ROUTES.to_vec()), body(), users, content_type);
    run_router_cases(ROUTER_CASES, strategy, |app, ((method, path), body, user, content_type)| {
        Box::pin(async move {
            let mut request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(path)
                .header("authorization", format!("Bearer {}", token(user)));
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            let (status, _, bytes) = send(app, request.body(Body::from(body.clone())).unwrap()).await;
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(
                status < 500,
                "{method} {path} as {user} with {:?}: {status} {text}",
                String::from_utf8_lossy(&body)
            );
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|_| TestCaseError::fail(format!("{method} {path}: not JSON ({status}): {text}")))?;
            if path.contains("user/setting") {
                prop_assert_eq!(status, 200);
                prop_assert!(v["code"].is_i64(), "{}", v);
            } else if path.starts_with("/api/v1") && status >= 400 {
                prop_assert!(v["error"].is_string() || v["code"] == 401, "{}", v);
            }
            Ok(())
        })
    });
}

fn header_value_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        6 => prop::sample::select(b"abcXYZ0189-_.:".to_vec()),
        2 => 0x21u8..=0x7e,
        1 => Just(b' '),
        1 => Just(b'\t'),
        1 => 0x80u8..=0xff,
    ];
    prop_oneof![prop::collection::vec(byte.clone(), 0..40), prop::collection::vec(byte, 120..140),]
}

/// The rule the router applies to a client's correlation id (SPEC §4: echoed; otherwise a fresh
/// UUID v4): trimmed, 1–128 characters of `[A-Za-z0-9-_.:]` — anything else (which would carry
/// spaces, quotes or control characters into logs and headers) is replaced.
fn acceptable_correlation_id(value: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(value).ok()?.trim();
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
        .then(|| s.to_owned())
}

/// Any `X-Cr-Correlation-Id` value (any bytes a header can carry): the answer is never a 5xx,
/// and its `correlation_id` (and `X-Correlation-Id` header) is the client's id, trimmed, when
/// that is a safe token, or else a fresh UUID v4 — never the raw value.
#[test]
fn correlation_ids_are_echoed_or_replaced() {
    let strategy = (header_value_bytes(), prop::sample::select(vec![true, false]));
    run_router_cases(ROUTER_CASES, strategy, |app, (value, authenticated)| {
        Box::pin(async move {
            let Ok(header) = axum::http::HeaderValue::from_bytes(&value) else { return Ok(()) };
            let mut request = Request::builder().uri("/user/setting/2fa").header("x-cr-correlation-id", header);
            if authenticated {
                request = request.header("authorization", format!("Bearer {}", token("props-enabled")));
            }
            let (status, headers, bytes) = send(app, request.body(Body::empty()).unwrap()).await;
            prop_assert_eq!(status, 200);
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let cid = v["correlation_id"].as_str().unwrap_or_default().to_owned();
            prop_assert_eq!(headers.get("x-correlation-id").and_then(|h| h.to_str().ok()), Some(cid.as_str()));
            match acceptable_correlation_id(&value) {
                Some(echo) => {
                    prop_assert_eq!(&cid, &echo);
                    prop_assert_eq!(
                        headers.get("x-cr-correlation-id").and_then(|h| h.to_str().ok()),
                        Some(echo.as_str())
                    );
                }
                None => {
                    let uuid =
                        uuid::Uuid::parse_str(&cid).map_err(|_| TestCaseError::fail(format!("not a UUID: {cid}")))?;
                    prop_assert_eq!(uuid.get_version_num(), 4);
                    prop_assert!(headers.get("x-cr-correlation-id").is_none());
                }
            }
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

const UNITS: [(&str, u64); 5] = [("", 1), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)];

proptest! {
    #![proptest_config(config(CASES))]

    /// Any text: never a panic.
    #[test]
    fn durations_never_panic(text in any::<String>()) {
        let _ = parse_duration(&text);
    }

    /// `<n><unit>` is `n × unit` seconds when that fits in a u64, refused otherwise; spaces
    /// around it are allowed; a sign, a fraction, an unknown or upper-case unit, a doubled unit
    /// or a space inside is refused.
    #[test]
    fn durations_are_a_number_and_a_unit(
        n in prop_oneof![0u64..100_000, any::<u64>()],
        unit in 0usize..5,
        pad in prop::sample::select(vec!["", " ", "\t", "  "]),
    ) {
        let (suffix, factor) = UNITS[unit];
        let text = format!("{pad}{n}{suffix}{pad}");
        prop_assert_eq!(parse_duration(&text).ok(), n.checked_mul(factor).map(Duration::from_secs), "{}", text);
        let mut refused = vec![format!("-{n}{suffix}"), format!("+{n}{suffix}"), format!("{n}.5{suffix}"), format!("{n}ms"), format!("{n}x")];
        if !suffix.is_empty() {
            refused.extend([format!("{n} {suffix}"), format!("{n}{}", suffix.to_uppercase()), format!("{n}{suffix}{suffix}")]);
        }
        for text in &refused {
            prop_assert!(parse_duration(text).is_err(), "{} was accepted", text);
        }
    }

    /// Round trip: the seconds of a duration, written in seconds or in the largest exact unit,
    /// parse back to it.
    #[test]
    fn durations_round_trip(secs in any::<u64>()) {
        let d = Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&secs.to_string()), Ok(d));
        prop_assert_eq!(parse_duration(&format!("{secs}s")), Ok(d));
        let (suffix, factor) = UNITS.iter().rev().find(|(_, f)| secs % f == 0).copied().unwrap();
        prop_assert_eq!(parse_duration(&format!("{}{}", secs / factor, if suffix.is_empty() { "s" } else { suffix })), Ok(d));
    }
}

// ---------------------------------------------------------------------------------------------
// The nesting scanners
// ---------------------------------------------------------------------------------------------

/// Nesting depth of a JSON value: scalars 0, `[]`/`{}` 1, `[[]]` 2.
fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// JSON whose strings are full of brackets, quotes and backslashes.
fn bracket_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        "[\\[\\]{}\"\\\\a ]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(12, 64, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[\\[{\"\\\\k]{0,4}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A GraphQL-ish document whose structure (selection sets, argument lists, lists) the test knows,
/// with brackets hidden in strings, block strings and comments; returns it and its depth.
fn graphql_document() -> impl Strategy<Value = (String, usize)> {
    let junk = prop_oneof![
        "[a-z{}()\\[\\] ]{0,10}".prop_map(|s| format!("\"{s}\"")),
        "[a-z{}()\\[\\] ]{0,6}".prop_map(|s| format!("\"esc \\\" {s} \\\\\"")),
        "[a-z{}()\\[\\]\"\n ]{0,12}".prop_map(|mut s| {
            while s.contains("\"\"\"") {
                s = s.replace("\"\"\"", "\"");
            }
            format!("\"\"\"{s} \\\"\"\" \"\"\"")
        }),
        "[a-z{}()\\[\\]\" ]{0,12}".prop_map(|s| format!("# {s}\n")),
        Just(" field ".to_owned()),
    ];
    // A walk of opens (0, 1, 2 = `{`, `(`, `[`), closes (3) and junk (4).
    prop::collection::vec((0u8..5, junk), 0..160).prop_map(|steps| {
        let (mut doc, mut stack, mut deepest) = (String::new(), Vec::new(), 0);
        for (step, junk) in steps {
            match step {
                0..=2 => {
                    let (open, close) = [("{", "}"), ("(", ")"), ("[", "]")][usize::from(step)];
                    doc.push_str(open);
                    stack.push(close);
                    deepest = deepest.max(stack.len());
                }
                3 => {
                    if let Some(close) = stack.pop() {
                        doc.push_str(close);
                    }
                }
                _ => {
                    // Apart, so that `""` and `"x"` never read as a block string's `"""`.
                    doc.push(' ');
                    doc.push_str(&junk);
                }
            }
        }
        while let Some(close) = stack.pop() {
            doc.push_str(close);
        }
        (doc, deepest)
    })
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Any bytes and any text: the scanners never panic.
    #[test]
    fn nesting_scanners_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), max in 0usize..80) {
        let _ = json_too_deep(&bytes, max);
        let _ = graphql_too_deep(&String::from_utf8_lossy(&bytes), max);
    }

    /// On any JSON value (strings full of brackets, quotes and backslashes), the JSON scanner says
    /// "too deep" exactly when the value nests deeper than the limit.
    #[test]
    fn the_json_scanner_measures_nesting(value in bracket_json(), max in 0usize..14) {
        let text = value.to_string();
        prop_assert_eq!(json_too_deep(text.as_bytes(), max), json_depth(&value) > max, "{}", text);
    }

    /// Brackets in strings, block strings and comments do not count; every `{`, `(` and `[` of
    /// the document's structure does.
    #[test]
    fn the_graphql_scanner_measures_nesting((doc, depth) in graphql_document(), max in 0usize..20) {
        prop_assert_eq!(graphql_too_deep(&doc, max), depth > max, "depth {} in {:?}", depth, doc);
    }

    /// Plain nesting just past the limit is refused, at the limit accepted (both scanners).
    #[test]
    fn nesting_at_and_past_the_limit(depth in 0usize..200) {
        let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        prop_assert_eq!(json_too_deep(json.as_bytes(), twofold::nesting::MAX_NESTING), depth > 64);
        let doc = format!("{}{}", "{ a ".repeat(depth), "}".repeat(depth));
        prop_assert_eq!(graphql_too_deep(&doc, twofold::nesting::MAX_NESTING), depth > 64);
    }
}

// ---------------------------------------------------------------------------------------------
// The import CSV
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Row {
    user: String,
    secret: Vec<u8>,
    algorithm: &'static str,
    digits: &'static str,
    period: String,
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    let row = (
        "[a-zA-Z0-9_@. ,\"-]{1,24}",
        prop::collection::vec(any::<u8>(), 16..40),
        prop::sample::select(vec!["", "SHA1", "sha256", "Sha512"]),
        prop::sample::select(vec!["", "6", "8"]),
        prop_oneof![Just(String::new()), (15u32..=120).prop_map(|p| p.to_string())],
    )
        .prop_map(|(user, secret, algorithm, digits, period)| Row { user, secret, algorithm, digits, period });
    prop::collection::vec(row, 0..12).prop_map(|mut rows| {
        // Distinct users (after the CSV reader's trimming).
        let mut seen = HashSet::new();
        rows.retain(|r| !r.user.trim().is_empty() && seen.insert(r.user.trim().to_owned()));
        rows
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) || s != s.trim() { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// A secret as an operator may paste it: any case, spaces, padding.
fn pasted(secret: &[u8], lower: bool, spaced: bool) -> String {
    let mut s = data_encoding::BASE32.encode(secret);
    if lower {
        s = s.to_lowercase();
    }
    if spaced {
        s = s.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ");
    }
    s
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Any bytes: never a panic (a list of entries or of problems).
    #[test]
    fn import_files_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = twofold::admin::parse_import(bytes.as_slice());
    }

    /// CSV-shaped junk after a valid header: never a panic, and every problem names a line of
    /// the file.
    #[test]
    fn import_junk_rows_name_their_line(lines in prop::collection::vec("[a-zA-Z0-9=, \"\\t]{0,40}", 0..10)) {
        let text = format!("user_id,secret,algorithm,digits,period\n{}", lines.join("\n"));
        if let Err(problems) = twofold::admin::parse_import(text.as_bytes()) {
            let total = text.lines().count() as u64 + 1;
            for p in problems {
                prop_assert!(p.line >= 1 && p.line <= total, "{} (of {} lines)", p, total);
            }
        }
    }

    /// Well-formed rows (quoted fields, secrets in any case with spaces and padding, missing
    /// parameters) read back exactly: users, secret bytes, and parameters with the SHA1/6/30
    /// defaults.
    #[test]
    fn import_rows_round_trip(rows in rows(), lower in any::<bool>(), spaced in any::<bool>(), crlf in any::<bool>()) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = format!("user_id,secret,algorithm,digits,period{eol}");
        for r in &rows {
            text.push_str(&format!(
                "{},{},{},{},{}{eol}",
                csv_field(&r.user), pasted(&r.secret, lower, spaced), r.algorithm, r.digits, r.period
            ));
        }
        let entries = twofold::admin::parse_import(text.as_bytes())
            .map_err(|p| TestCaseError::fail(format!("{p:?} in {text:?}")))?;
        prop_assert_eq!(entries.len(), rows.len());
        for (i, ((line, entry), row)) in entries.iter().zip(&rows).enumerate() {
            prop_assert_eq!(*line, i as u64 + 2);
            prop_assert_eq!(&entry.user_id, row.user.trim());
            prop_assert_eq!(entry.secret.as_bytes(), row.secret.as_slice());
            let algorithm = if row.algorithm.is_empty() { "SHA1".to_owned() } else { row.algorithm.to_uppercase() };
            prop_assert_eq!(entry.params.algorithm.as_str(), algorithm);
            prop_assert_eq!(entry.params.digits, row.digits.parse().unwrap_or(6));
            prop_assert_eq!(entry.params.period, row.period.parse().unwrap_or(30));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook settings
// ---------------------------------------------------------------------------------------------

fn webhook_kind_names() -> Vec<&'static str> {
    twofold::service::EventKind::WEBHOOK.iter().map(|k| k.as_str()).collect()
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Any URL, secret, event list and age: never a panic.
    #[test]
    fn webhook_settings_never_panic(
        url in any::<String>(),
        secret in prop::option::of(any::<String>()),
        events in prop::option::of(any::<String>()),
        secs in any::<u64>(),
    ) {
        let _ = twofold::webhook::WebhookSettings::parse(&url, secret.as_deref(), events.as_deref(), Duration::from_secs(secs));
    }

    /// Valid settings are accepted with the kinds named (any case, spaces, repeats: each once,
    /// in the order first named; none named: all of them); a key under 24 bytes, a kind that
    /// is not a webhook kind or an age outside 1 s–30 d is refused.
    #[test]
    fn webhook_settings_accept_exactly_the_valid_ones(
        scheme in prop::sample::select(vec!["http", "https", "HTTPS", "ftp"]),
        host in "[a-z0-9]{1,10}(\\.[a-z]{2,5})?",
        port in prop::option::of(1u16..),
        key_len in 8usize..64,
        picks in prop::collection::vec((0usize..9, any::<bool>(), prop::sample::select(vec!["", " ", "  "])), 0..6),
        bad_kind in prop::option::weighted(0.2, prop::sample::select(vec!["VERIFIED", "SETUP_STARTED", "nope", "VERIFY_FAILED"])),
        secs in prop_oneof![1u64..=2_592_000, Just(0u64), 2_592_001u64..],
    ) {
        let names = webhook_kind_names();
        let url = format!("{scheme}://{host}{}/hook", port.map(|p| format!(":{p}")).unwrap_or_default());
        let secret = format!("whsec_{}", data_encoding::BASE64.encode(&vec![7u8; key_len]));
        let mut list: Vec<String> = picks.iter()
            .map(|(i, lower, pad)| {
                let name = names[*i % names.len()];
                format!("{pad}{}{pad}", if *lower { name.to_lowercase() } else { name.to_owned() })
            })
            .collect();
        if let Some(bad) = bad_kind {
            list.push(bad.to_owned());
        }
        let events = (!list.is_empty()).then(|| list.join(","));
        let result = twofold::webhook::WebhookSettings::parse(&url, Some(&secret), events.as_deref(), Duration::from_secs(secs));
        let valid = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
        let should = valid && key_len >= 24 && bad_kind.is_none() && (1..=2_592_000).contains(&secs);
        prop_assert_eq!(result.is_ok(), should, "{} {:?} {} → {:?}", url, events, secs, result.as_ref().err());
        if let Ok(settings) = result {
            let mut expected = Vec::new();
            for (i, _, _) in &picks {
                let name = names[*i % names.len()];
                if !expected.contains(&name) {
                    expected.push(name);
                }
            }
            if expected.is_empty() {
                expected = names.clone();
            }
            let got: Vec<&str> = settings.kinds.iter().map(|k| k.as_str()).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
