//! Caller keys from the host application's JWK Set (SPEC §7, `TWOFOLD_JWT_JWKS_URL`): a JWK Set
//! server inside the test (127.0.0.1, a set that can change at runtime, fetches counted) and fixed
//! test keys (RSA, EC P-256/P-384, Ed25519; generated once with `openssl genpkey`). Most tests run
//! the router in process; the binary runs for the startup wiring (a provider down at startup),
//! the startup refusals and `--help`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{DbGuard, ENCRYPTION_KEY, START_MS, fresh_database, unix_now};
use clap::Parser;
use twofold::auth::{Authenticator, ClaimRules};
use twofold::caller_keys::CallerKeys;
use twofold::clock::ManualClock;
use twofold::config::Cli;
use twofold::crypto::Keyring;
use twofold::service::{ServiceSettings, TwoFactor};
use twofold::{AppState, HttpOptions};

/// Test-only RSA 2048 private key (PKCS#8).
const RSA_1: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC//kcNb4f5D9Q2
lXYVxl09WVGApkY/Ym5pW4JIDZ6tVOl/gp9TuzmNiXJ9QzcwkRZF4Q0Vkwku6zdF
DvWny82Uni2YaJuMGa/hC579YDwncIK0+IgGi/Y9XEsTzvI3uyPxBxwGH4rh63yN
E9Rp+JM1TkY4YjD+cVgvmkFAdjX0pg1TA4XzKO58VftbAn+tORZrng34g7kOvFC2
bapwy7E2HuM3VMNiIcCx7lwC8DILhlsfQ/z9yQfYDxgZmomHfobNvRA+WdDuVQDE
6gqi1woURWSrdKX49cWLWwHiwHtveYmIeY2/sLFS9IjdwFcztplVOLdSIaoYmHDS
0LoDtwsjAgMBAAECggEAG6xExSt+ZPLtSrbNRUMzskGFrVjfXDMi/fLvetTiZP0N
sNAniIk+Y5JcRbDNViXmGMlg5OtYvKyw6TZy8wNoTNO7IlzFkB0ttsQW36d3ftRz
39jIu8TVsloeBNYPHzhNQb2dbPEunUn0yF2DgDNmKHNGoh7eYqD8rdPP3uuK8wmc
33VhuJrhWcvOqrLB1cpBErwJdwTREsinpWkNusICf8Y+73ftPL27q3ecD3Om5JVw
7s9MpiC4inmeb66EfnD5pqan9go6RiZFrJUu4Kz1j0T4v8zkpiaECyw6K5Tk1pCA
mL/Y4ONCGBd+Yz0ZoeybFkjUGBDjq/F23gM+YeLfIQKBgQDioaC1FYfiPBpiIgV4
Q3jV6rleSfHpgfnSBhou0kDlLJAcL1ZukV2oUY/cBehBdHHPr1+qKX6zOMNWvO53
R/N1eDkUgQ6EAZPH3hUsJJ8O4+0ziJ6dGPhSuDt0CezRNV68zcNkG2a3kLqIWvh+
HzAgU9S35UxZryDoCZCh5XwtgwKBgQDY34zRRcnvcmWZ+g2T47iKevbY9tOb/NIK
BsgfHYfbz7jh0t/2saMI1CC0XSOE67dqlqT7EcEZseoZd9HLqRDr2HMv0Ca6cWvx
5Yn/05YntaFuhXh5fLp2mszXfWwyG5IdxJPtGv3tJbPkv6nKwI0Tcpfxy9TfwgZM
VWZeO9XZ4QKBgHPIc1xQda2lWy1LiFPa1L8lPjLnwEm197XPHE1TaYgr7iwYGyY9
6gV2NfMIqZHXNdYPGObMcEiL9XA48fPKtJ0NIMxS6uGSFLgFw/dbdk+bLrInWDGW
cjeAnA86ityPUalPzkU0opOhw0qqf02gDWxWp9STtyASktM5H8U2guyVAoGAH9It
R0eGKawPXFhkRZ7UJP2F2q/cvLaL2wzDsE0U8hu4dOoMEpZd5Z26brx7ybUMZIdW
DcC9JJgGUVZTYh6cbP6FaC6SgCjEPeoAJZlWHt13ok/TLYAvm9d61uOATJnfBp8h
VVjwiStPCfFVaHp4OLJHuSK/SVWetvSQ4KLG7gECgYAE81E4ZmKfn9gEcecZrEci
n68sOMgkjft5sdsoBbqmnjRWqj8JGtM2VQB0w+96E7W64Ll4b/kd0/tdDb1S2nW7
vuypB/J66OGM5kXqx2wx2fYocJV22Mo0v5KIIrYn1wdagRKyIcWKqEKPTbYqNGx9
TPDkhoxVnlvmR8cUhidjDw==
-----END PRIVATE KEY-----
";

/// Test-only a second RSA 2048 private key (PKCS#8).
const RSA_2: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDb30o04z/yOSQo
yZEk7KpIA7D8RzoqEWlTkHcGxXWtTyoIq4mUkvZajv1roO5/2rg1JFmkBIRU8VG8
SGk09oBK5zIFpM1HY6wAt6GhyLyTIqJQYQeQbcZ2x2TjZ5qoJzYchFN/9alN5o2F
/SUc69hj2K9tXbWMYLgRuVquH56FEYhmP1Gswn2b0mwPpLvj6PQA17qGYvwvjh+P
jI2bG3/8nHmLJgW+l/k8zDRVomkBltNhuxzbOKg9XJGWb1qJ0ezUeCoJyI454W7w
GKpXPn9ej+vpJGkY7wSxWAcj2fmnNTX77noY6o44YEYM5cVsEnNqgBDeHZpvnztI
EqlQX9RBAgMBAAECggEAAUY5hrXxzG8YA7krWK9Fy2C4xArg+OvHPv89hAddR7xc
44D5rVKZZUFNPF70kul1xi+9lJhGxhFB+9k1luN+LzDzgW8zlgrWAokN7ENJaIGR
DEM2XoLBsuAz+FIaO4hCpYaqJI82xHymFv/hGQT66OqRaw0EfNmgp3r6CLv72Lc/
DAba2x+1d9BVRArWJyhssFJr5VnV2KqNzw2prFzOFrjJnew+fhuPl6nWpdP+H8K0
qJ2T2hQlGcXhnfQZeEEshsWvZKL+8Nrxwo5Ne6jZ34cwyQpIx0D/MrndssUEXlrD
bbSQcPVYMPiCUliuIWGoKh2QBlq1ihytxufMccnKYQKBgQDzn1wTYE/TSaj9EiSA
JgQJRGf6eIgk770R1cd0JJ+BzcIgy5vOBC6Oh+fOCZrvqWhL0LgypyWJ8kahZhCC
AxurlhSw8xS5XZls8wcThi1uRaqoXarxbcDk8kMGXuz0SnALQ9Q50qF9v1YN9z7a
oXBCkXV/SyzHBbGQxCZe1inOyQKBgQDnCwaYEIhId11jgRUp4pLoNgP9w6xti7Tg
KOInCaa2DJA0jGk/6nP0DBtYB/mTy8WOM7sLr02Fd7FdX2c1vwE21VRr9C3+hd1U
NsObHFPEy1hNnIBxILdsbgyEVB0eDJcIesZ3adBSMrLanHJcw8/9jdoPU8QT5j4r
TQ4XTwe9uQKBgDPN/1ZfdJoJX9XwtbJKYzFVSocIemrgT+QrAW7BGuoPRuiSY187
pGrKm5BEmp27+GGm0IR05pae3kYT3g7HemrSTzQRfKauMKHqS+bq8V4xkkibIm6U
WCBXI8mHBfwsmAbNNaPWFmEW/sWZfdQf4C9HnySiZ7Mqksel7kLcZ6eBAoGBAIsE
NlZ+9BFuSPHbNGm8W5p/Dc29090iB5Ys406L3xSA4K/NoHKF1nkMY9OHEOOd42OZ
urzgIOvixgShp89N+yQMHjzKcnZIA5FtVirZU4oAtEQWm631+oeye7OPjOmMt7+x
aANn1qHuwXEKW0F3zIkKth8szrkOe2/AcG8T7Vt5AoGAXiC6f2BGhxjs05jLkN1q
O6FQrrnoDYnT1GdeA7oO4XId10D9JykBZ47n88Lbgvp9Oq5+wEeO2C5Z1KfjJGoe
Dx0JrhIQN5lwPXIT59wJeeNsLFlD0qLuyC7Qlym/TIxv9VOQfB3Wmbkw6lwNPpsq
tGnPyhlTmBI3Xm/zrPvbHSI=
-----END PRIVATE KEY-----
";

/// Test-only EC P-256 private key (PKCS#8).
const EC_P256: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVX0LdQYe+zeMX+td
b037zd1oylK2WwxZ+axVWYgCuL2hRANCAAT9OPT7v1JITn9NCFbTherLsQOvFzSb
j281GUKgD/u4TPrP/4j8rssFQGDuyCdE+YVY7qWuaAFp7NFMhx21xxn9
-----END PRIVATE KEY-----
";

/// Test-only EC P-384 private key (PKCS#8).
const EC_P384: &str = "\
-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDAypmHlLO0IDTTVi2Lj
95VHYn+pk8RqNtszqD4+yntaFloi8gvtmLoSwtQ1URpW1gihZANiAAReG6JVV/m1
2iL6mLXQuG0fdzB+OggJpK+dtdiv9vzkzefp3N88AmPIgHdEHHpM/ESTAfnsG5R8
lCXgoM3D2z//ED1NHg/mKI3x7iFSfNkbLVdktj+ZCopEQsOdLBcqk5I=
-----END PRIVATE KEY-----
";

/// Test-only Ed25519 private key (PKCS#8).
const ED25519: &str = "\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICIEmbgA3kOs6FfXfIPEnBzFeWVRNhZAjhGl0DvJhrG7
-----END PRIVATE KEY-----
";
const ISSUER: &str = "https://idp.example/realms/acme";
const AUDIENCE: &str = "twofold";

// ---------------------------------------------------------------------------------------------
// Test keys and tokens

struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
}

impl TestKey {
    fn rsa_1() -> Self {
        TestKey { kid: "rsa-1", alg: Algorithm::RS256, key: EncodingKey::from_rsa_pem(RSA_1.as_bytes()).unwrap() }
    }
    fn rsa_2() -> Self {
        TestKey { kid: "rsa-2", alg: Algorithm::RS256, key: EncodingKey::from_rsa_pem(RSA_2.as_bytes()).unwrap() }
    }
    fn p256() -> Self {
        TestKey { kid: "ec-p256", alg: Algorithm::ES256, key: EncodingKey::from_ec_pem(EC_P256.as_bytes()).unwrap() }
    }
    fn p384() -> Self {
        TestKey { kid: "ec-p384", alg: Algorithm::ES384, key: EncodingKey::from_ec_pem(EC_P384.as_bytes()).unwrap() }
    }
    fn ed25519() -> Self {
        TestKey { kid: "ed", alg: Algorithm::EdDSA, key: EncodingKey::from_ed_pem(ED25519.as_bytes()).unwrap() }
    }

    /// The public JWK, as identity providers publish it: `kid`, `alg`, `use: sig`.
    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.into());
        let mut value = serde_json::to_value(jwk).unwrap();
        value["use"] = json!("sig");
        value
    }

    /// The public JWK under another `kid`, without `alg` (any algorithm of its type fits).
    fn jwk_without_alg(&self, kid: &str) -> Value {
        let mut value = self.jwk();
        value.as_object_mut().unwrap().remove("alg");
        value["kid"] = json!(kid);
        value
    }

    /// A token signed with this key: `alg` and `kid` as given.
    fn sign(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// A valid access token for `sub`: this key's `alg` and `kid`, issuer and audience.
    fn token(&self, sub: &str) -> String {
        self.sign(self.alg, Some(self.kid), &claims(sub))
    }
}

fn claims(sub: &str) -> Value {
    let now = unix_now();
    json!({ "sub": sub, "email": format!("{sub}@example.com"), "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600 })
}

fn rules() -> ClaimRules {
    ClaimRules { issuer: Some(ISSUER.into()), audience: Some(AUDIENCE.into()), leeway_seconds: 30 }
}

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

/// A symmetric key in the set: ignored.
fn oct_jwk() -> Value {
    json!({ "kty": "oct", "kid": "shared", "k": b64(b"shared-secret-shared-secret-0123"), "alg": "HS256" })
}

/// A token with a forged `kid` (and a signature nobody checks: the key is not found first).
fn forged_kid_token() -> String {
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": uuid::Uuid::new_v4().to_string() });
    format!("{}.{}.{}", b64(header.to_string().as_bytes()), b64(claims("mallory").to_string().as_bytes()), b64(b"sig"))
}

// ---------------------------------------------------------------------------------------------
// The JWK Set server

#[derive(Clone)]
enum Answer {
    Keys(Vec<Value>),
    Raw(u16, String),
    Redirect(String),
}

struct ServerState {
    answer: Mutex<Answer>,
    /// Served at `/moved.json` (a redirect target).
    moved: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
}

#[derive(Clone)]
struct JwksServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
}

async fn serve_set(State(state): State<Arc<ServerState>>, request: Request<Body>) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    let json = |keys: Vec<Value>| {
        ([(header::CONTENT_TYPE, "application/json")], json!({ "keys": keys }).to_string()).into_response()
    };
    if request.uri().path() == "/moved.json" {
        return json(state.moved.lock().unwrap().clone());
    }
    match state.answer.lock().unwrap().clone() {
        Answer::Keys(keys) => json(keys),
        Answer::Raw(status, body) => (StatusCode::from_u16(status).unwrap(), body).into_response(),
        Answer::Redirect(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
    }
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), keys).await
    }

    async fn start_on(addr: SocketAddr, keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the JWK Set server");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState {
            answer: Mutex::new(Answer::Keys(keys)),
            moved: Mutex::new(Vec::new()),
            fetches: AtomicUsize::new(0),
        });
        let router = Router::new().fallback(serve_set).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        JwksServer { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    fn answer(&self, answer: Answer) {
        *self.state.answer.lock().unwrap() = answer;
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

/// An address nothing listens on (yet): a free port on a loopback address other than 127.0.0.1,
/// so that no other test's `127.0.0.1:0` listener takes it meanwhile.
fn free_address() -> SocketAddr {
    let host = 2 + uuid::Uuid::new_v4().as_bytes()[0] % 250;
    std::net::TcpListener::bind(("127.0.0.1".replace(".1", &format!(".{host}")).as_str(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Twofold in process

struct App {
    router: Router,
    keys: CallerKeys,
    _db: DbGuard,
}

const ALGORITHMS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

impl App {
    /// The router with keys from `server`, fetched once now and then kept fresh.
    async fn start(server: &JwksServer, refresh: Duration) -> Self {
        let keys = CallerKeys::new(&server.url(), refresh).unwrap();
        keys.start().await;
        let (db_url, guard) = fresh_database().await;
        let store = twofold::connect_and_migrate(&db_url, 4).await.expect("database");
        let clock = ManualClock::new(START_MS);
        let keyring = Arc::new(Keyring::new(&ENCRYPTION_KEY, &[]));
        let service = TwoFactor::new(store, keyring, ServiceSettings::default(), Arc::new(clock));
        let auth = Authenticator::with_jwk_set(keys.clone(), ALGORITHMS.to_vec(), &rules());
        let state = AppState::new(service, auth, HttpOptions::default());
        App { router: twofold::app(state), keys, _db: guard }
    }

    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(body.map(|b| Body::from(b.to_owned())).unwrap_or_else(Body::empty)).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Storno's `GET /api/v1/me/mfa/status`.
    async fn status(&self, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, "/api/v1/me/mfa/status", Some(token), None).await
    }

    async fn accepted(&self, token: &str) -> bool {
        self.status(token).await.0 == StatusCode::OK
    }

    async fn ready(&self) -> StatusCode {
        self.call(Method::GET, "/readyz", None, None).await.0
    }

    /// Each dialect's ordinary unauthenticated answer.
    async fn assert_unauthenticated(&self, token: &str, what: &str) {
        let (status, body) = self.status(token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body, json!({ "code": 401, "message": "Invalid JWT Token" }), "{what}");
        let (status, body) = self.call(Method::GET, "/user/setting/2fa", Some(token), None).await;
        assert_eq!((status, &body["code"]), (StatusCode::OK, &json!(401)), "{what}: Cloudreve {body}");
        let query = json!({ "query": "{ twoFactor { enabled } }" }).to_string();
        let (status, body) = self.call(Method::POST, "/graphql", Some(token), Some(&query)).await;
        assert_eq!(status, StatusCode::OK, "{what}: GraphQL {body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{what}: GraphQL {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Keys, algorithms and key types

#[tokio::test]
async fn rsa_ec_and_ed25519_tokens_are_accepted_when_alg_fits_the_key() {
    let (rsa, rsa_2, p256, p384, ed) =
        (TestKey::rsa_1(), TestKey::rsa_2(), TestKey::p256(), TestKey::p384(), TestKey::ed25519());
    let server = JwksServer::start(vec![
        rsa.jwk(),
        rsa_2.jwk_without_alg("rsa-any"),
        p256.jwk(),
        p384.jwk(),
        ed.jwk(),
        oct_jwk(),
        // What else providers publish, or a broken entry: ignored, the rest of the set still loads.
        json!({ "kty": "RSA", "kid": "rsa-enc", "use": "enc", "alg": "RSA-OAEP", "n": rsa.jwk()["n"], "e": "AQAB" }),
        json!({ "kty": "RSA", "kid": 7 }),
        json!({ "kty": "AKP", "kid": "post-quantum", "alg": "ML-DSA-44", "pub": "AAAA" }),
    ])
    .await;
    let app = App::start(&server, Duration::from_secs(600)).await;
    assert_eq!(app.keys.kids(), ["ec-p256", "ec-p384", "ed", "rsa-1", "rsa-any"], "oct, enc and broken keys ignored");
    assert_eq!(app.ready().await, StatusCode::OK);

    for (what, token) in [
        ("RS256 with an RSA key", rsa.token("alice")),
        ("ES256 with a P-256 key", p256.token("alice")),
        ("ES384 with a P-384 key", p384.token("alice")),
        ("EdDSA with an Ed25519 key", ed.token("alice")),
        ("PS256 with an RSA key that names no alg", rsa_2.sign(Algorithm::PS256, Some("rsa-any"), &claims("alice"))),
        ("RS256 with an RSA key that names no alg", rsa_2.sign(Algorithm::RS256, Some("rsa-any"), &claims("alice"))),
    ] {
        let (status, body) = app.status(&token).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
    }
    assert_eq!(server.fetches(), 1, "known kids never cause a fetch");

    let claims = claims("mallory");
    let refused = [
        // The alg does not fit the type of the key the kid names (signed with a key of that alg).
        ("ES256 naming an RSA key", p256.sign(Algorithm::ES256, Some("rsa-1"), &claims)),
        ("RS256 naming an EC key", rsa.sign(Algorithm::RS256, Some("ec-p256"), &claims)),
        ("ES384 naming a P-256 key", p384.sign(Algorithm::ES384, Some("ec-p256"), &claims)),
        ("ES256 naming a P-384 key", p256.sign(Algorithm::ES256, Some("ec-p384"), &claims)),
        ("EdDSA naming an RSA key", ed.sign(Algorithm::EdDSA, Some("rsa-1"), &claims)),
        ("RS256 naming an Ed25519 key", rsa.sign(Algorithm::RS256, Some("ed"), &claims)),
        // The key names its alg (RS256): a PS256 signature by the same key is refused.
        ("PS256 naming an RS256 key", rsa.sign(Algorithm::PS256, Some("rsa-1"), &claims)),
        // Allowed by the key, not by TWOFOLD_JWT_ALGORITHMS.
        ("RS512, not allowed", rsa_2.sign(Algorithm::RS512, Some("rsa-any"), &claims)),
        // The oct key is not in the set; HS256 is not allowed either.
        (
            "HS256 with the set's oct key",
            jsonwebtoken::encode(
                &Header { kid: Some("shared".into()), ..Header::new(Algorithm::HS256) },
                &claims,
                &EncodingKey::from_secret(b"shared-secret-shared-secret-0123"),
            )
            .unwrap(),
        ),
        // Another key's signature under a known kid.
        ("signed by another RSA key", rsa_2.sign(Algorithm::RS256, Some("rsa-1"), &claims)),
        ("no kid", rsa.sign(Algorithm::RS256, None, &claims)),
        ("an encryption key's kid", rsa.sign(Algorithm::RS256, Some("rsa-enc"), &claims)),
    ];
    for (what, token) in &refused {
        app.assert_unauthenticated(token, what).await;
    }

    // The claim checks are the same as with a secret or a public key.
    let now = unix_now();
    let base = json!({ "sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600 });
    let with = |change: Value| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        rsa.sign(Algorithm::RS256, Some("rsa-1"), &c)
    };
    let without = |claim: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(claim);
        rsa.sign(Algorithm::RS256, Some("rsa-1"), &c)
    };
    assert!(app.accepted(&with(json!({}))).await);
    for (what, token) in [
        ("wrong issuer", with(json!({ "iss": "https://evil.example" }))),
        ("no issuer", without("iss")),
        ("wrong audience", with(json!({ "aud": "someone-else" }))),
        ("no audience", without("aud")),
        ("no exp", without("exp")),
        ("not yet valid", with(json!({ "nbf": now + 600 }))),
        ("empty sub", with(json!({ "sub": "" }))),
    ] {
        app.assert_unauthenticated(&token, what).await;
    }
    let (status, body) = app.status(&with(json!({ "exp": now - 3600 }))).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, json!({ "code": 401, "message": "Expired JWT Token" })));
    let (_, body) =
        app.call(Method::GET, "/user/setting/2fa", Some(&with(json!({ "token_type": "refresh" }))), None).await;
    assert_eq!(body["code"], 40020, "a refresh token is refused as such: {body}");
    // A crit header is refused whatever key checks the token.
    let crit = jsonwebtoken::encode(
        &Header { kid: Some("rsa-1".into()), crit: Some(vec!["exp".into()]), ..Header::new(Algorithm::RS256) },
        &base,
        &rsa.key,
    )
    .unwrap();
    app.assert_unauthenticated(&crit, "crit header").await;
}

// ---------------------------------------------------------------------------------------------
// Rotation and refetching

#[tokio::test]
async fn a_key_rotated_in_is_accepted_without_a_restart() {
    let (old, new) = (TestKey::rsa_1(), TestKey::rsa_2());
    let server = JwksServer::start(vec![old.jwk()]).await;
    let app = App::start(&server, Duration::from_secs(600)).await;
    assert!(app.accepted(&old.token("alice")).await);
    assert_eq!(server.fetches(), 1);

    // The provider rotates a new key in; a token signed with it names a kid Twofold does not know.
    server.answer(Answer::Keys(vec![old.jwk(), new.jwk()]));
    let token = new.token("bob");
    // The first such token asks for a fetch in the background; soon after, the key is known.
    wait_until("the rotated-in key is accepted", Duration::from_secs(10), async || app.accepted(&token).await).await;
    assert_eq!(server.fetches(), 2, "one refetch");
    assert!(app.accepted(&old.token("alice")).await, "the old key still works while it is in the set");

    // The provider drops the old key: after the next fetch, its tokens are refused.
    server.answer(Answer::Keys(vec![new.jwk()]));
    assert_eq!(app.keys.refresh().await.unwrap(), 1);
    app.assert_unauthenticated(&old.token("alice"), "a key removed from the set").await;
    assert!(app.accepted(&new.token("bob")).await);
}

#[tokio::test]
async fn forged_kids_cause_at_most_one_refetch_per_30_seconds() {
    let key = TestKey::p256();
    let server = JwksServer::start(vec![key.jwk()]).await;
    let app = App::start(&server, Duration::from_secs(600)).await;
    assert_eq!(server.fetches(), 1);
    for _ in 0..100 {
        let token = forged_kid_token();
        let (status, _) = app.status(&token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // The first unknown kid asked for one refetch; the other 99 did not.
    wait_until("the refetch", Duration::from_secs(10), async || server.fetches() >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.fetches() <= 2, "100 forged kids: {} fetches (startup + at most one)", server.fetches());
    // Twofold keeps answering genuine tokens, and more forged kids within 30 s fetch nothing.
    assert!(app.accepted(&key.token("alice")).await);
    for _ in 0..20 {
        app.status(&forged_kid_token()).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_set() {
    let (key, other) = (TestKey::rsa_1(), TestKey::ed25519());
    let server = JwksServer::start(vec![key.jwk()]).await;
    let app = App::start(&server, Duration::from_secs(1)).await;
    let token = key.token("alice");
    assert!(app.accepted(&token).await);

    // Scheduled refreshes (every second here) fail: the last good set stays.
    server.answer(Answer::Raw(500, "oops".into()));
    let before = server.fetches();
    wait_until("two failed refreshes", Duration::from_secs(10), async || server.fetches() >= before + 2).await;
    assert!(app.accepted(&token).await, "kept after failed refreshes");
    assert_eq!(app.ready().await, StatusCode::OK, "still ready");

    // Whatever the failure, nothing changes.
    let big = json!({ "keys": [], "padding": "x".repeat(2 * 1024 * 1024) }).to_string();
    for (what, answer) in [
        ("503", Answer::Raw(503, String::new())),
        ("not JSON", Answer::Raw(200, "<html>maintenance</html>".into())),
        ("not a set", Answer::Raw(200, r#"{"keys": {}}"#.into())),
        ("an empty set", Answer::Keys(vec![])),
        ("only a symmetric key", Answer::Keys(vec![oct_jwk()])),
        ("over 1 MiB", Answer::Raw(200, big)),
        ("a redirect to a file URL", Answer::Redirect("file:///etc/passwd".into())),
        ("a redirect to ftp", Answer::Redirect("ftp://127.0.0.1/jwks.json".into())),
    ] {
        server.answer(answer);
        assert!(app.keys.refresh().await.is_err(), "{what}: the fetch fails");
        assert!(app.accepted(&token).await, "{what}: the last good set stays");
    }
    assert_eq!(app.keys.kids(), ["rsa-1"]);

    // A redirect to another http(s) URL is followed; a good set replaces the old one.
    *server.state.moved.lock().unwrap() = vec![other.jwk()];
    server.answer(Answer::Redirect(format!("http://{}/moved.json", server.addr)));
    assert_eq!(app.keys.refresh().await.unwrap(), 1);
    assert_eq!(app.keys.kids(), ["ed"]);
    assert!(app.accepted(&other.token("bob")).await);
    app.assert_unauthenticated(&token, "a key no longer in the set").await;
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// Base64 of 32 bytes.
const ENCRYPTION_KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// `twofold <args>` in `dir`, with none of the caller's `TWOFOLD_*` variables but `env`.
fn twofold(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twofold"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TWOFOLD_") {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(dir)
        .args(args)
        .env("TWOFOLD_DATABASE_URL", format!("sqlite://{}/t.db", dir.display()))
        .env("TWOFOLD_BIND", "127.0.0.1:0")
        .env("TWOFOLD_ENCRYPTION_KEY", ENCRYPTION_KEY_B64)
        .env("TWOFOLD_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd
}

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs to completion (at most 30 s): exit status, stdout, stderr.
fn run(mut cmd: Command) -> (std::process::ExitStatus, String, String) {
    let mut child = Running(cmd.spawn().expect("start twofold"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "twofold did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (child.0.wait().unwrap(), stdout, stderr)
}

/// One HTTP/1.1 request: the status and the body as JSON.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = body.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{response:?}"));
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn a_provider_down_at_startup_gives_503_until_it_comes_up() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let key = TestKey::rsa_1();
    let jwks_addr = free_address();
    let url = format!("http://{jwks_addr}/jwks.json");
    let dir = tempfile::tempdir().unwrap();
    let env = [("TWOFOLD_JWT_JWKS_URL", url.as_str()), ("TWOFOLD_JWT_ALGORITHMS", "RS256,ES256")];

    // Twofold starts although the provider is down.
    let mut child = Running(twofold(dir.path(), &["serve"], &env).spawn().unwrap());
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("Twofold is listening on http://")
        .unwrap_or_else(|| panic!("serve did not start: {line:?}"))
        .parse()
        .unwrap();
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));

    let token = key.sign(Algorithm::RS256, Some(key.kid), &json!({ "sub": "alice", "exp": unix_now() + 600 }));
    assert_eq!(http(addr, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(addr, "GET", "/readyz", None, None).0, 503);
    // Every authenticated request gets its dialect's unauthenticated answer.
    assert_eq!(
        http(addr, "GET", "/api/v1/me/mfa/status", Some(&token), None),
        (401, json!({ "code": 401, "message": "Invalid JWT Token" }))
    );
    let (status, body) = http(addr, "GET", "/user/setting/2fa", Some(&token), None);
    assert_eq!((status, &body["code"]), (200, &json!(401)), "{body}");
    let query = json!({ "query": "{ twoFactor { enabled } }" }).to_string();
    let (status, body) = http(addr, "POST", "/graphql", Some(&token), Some(&query));
    assert_eq!((status, &body["errors"][0]["extensions"]["code"]), (200, &json!("UNAUTHENTICATED")), "{body}");

    // The provider comes up: within a few seconds Twofold is ready and accepts the token.
    let server = runtime.block_on(JwksServer::start_on(jwks_addr, vec![key.jwk()]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(addr, "GET", "/readyz", None, None).0 != 200 {
        assert!(Instant::now() < deadline, "not ready 20 s after the provider came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = http(addr, "GET", "/api/v1/me/mfa/status", Some(&token), None);
    assert_eq!(status, 200, "{body}");
    assert!(server.fetches() >= 1);

    // `twofold token --kid` mints a token the running instance accepts.
    let pem = dir.path().join("rsa-1.pem");
    std::fs::write(&pem, RSA_1).unwrap();
    let pem = pem.to_str().unwrap();
    let (exit, minted, stderr) =
        run(twofold(dir.path(), &["token", "--sub", "carol", "--private-key", pem, "--kid", "rsa-1"], &env));
    assert!(exit.success(), "{stderr}");
    assert_eq!(http(addr, "GET", "/api/v1/me/mfa/status", Some(minted.trim()), None).0, 200);
    let (exit, _, stderr) = run(twofold(dir.path(), &["token", "--sub", "carol", "--private-key", pem], &env));
    assert!(!exit.success() && stderr.contains("--kid"), "{stderr}");
    drop(child);
}

/// Asserts a refused start: a non-zero exit and, as the last line, one line of reason naming
/// `needle`; the database was never touched.
fn assert_refused(dir: &Path, env: &[(&str, &str)], needle: &str) {
    let (exit, _, stderr) = run(twofold(dir, &["serve"], env));
    assert!(!exit.success(), "{env:?}: expected a refusal; stderr: {stderr}");
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.contains(needle), "{env:?}: the last line names {needle}: {stderr}");
    assert_eq!(stderr.lines().filter(|l| l.contains(needle)).count(), 1, "{env:?}: one line: {stderr}");
    assert!(!dir.join("t.db").exists(), "{env:?}: refused before the database is touched");
}

#[test]
fn more_than_one_key_source_or_a_symmetric_algorithm_stops_startup() {
    let url = "https://idp.example/realms/acme/protocol/openid-connect/certs";
    let secret = "jwks-test-secret-0123456789abcdef0123";
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("public.pem");
    std::fs::write(&pem, "not used").unwrap();
    let pem = pem.to_str().unwrap();
    let jwks = ("TWOFOLD_JWT_JWKS_URL", url);
    let rs256 = ("TWOFOLD_JWT_ALGORITHMS", "RS256");
    for env in [
        vec![jwks, rs256, ("TWOFOLD_JWT_SECRET", secret)],
        vec![jwks, rs256, ("TWOFOLD_JWT_PUBLIC_KEY", pem)],
        vec![jwks, rs256, ("TWOFOLD_JWT_SECRET", secret), ("TWOFOLD_JWT_PUBLIC_KEY", pem)],
    ] {
        let dir = tempfile::tempdir().unwrap();
        assert_refused(
            dir.path(),
            &env,
            "set only one of TWOFOLD_JWT_SECRET, TWOFOLD_JWT_PUBLIC_KEY and TWOFOLD_JWT_JWKS_URL",
        );
    }
    for algorithms in ["HS256", "RS256,HS512", "ES256, HS384"] {
        let dir = tempfile::tempdir().unwrap();
        assert_refused(dir.path(), &[jwks, ("TWOFOLD_JWT_ALGORITHMS", algorithms)], "symmetric algorithm");
    }
}

#[test]
fn jwks_settings_are_checked() {
    let parse = |args: &[&str]| Cli::try_parse_from([&["twofold"], args].concat()).unwrap().settings;
    let refusal = |args: &[&str]| {
        let message = match parse(args).jwt() {
            Ok(_) => panic!("{args:?} must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(!message.contains('\n'), "one line: {message}");
        message
    };
    let url = "https://idp.example/.well-known/jwks.json";
    assert!(refusal(&["--jwt-jwks-url", url]).contains("explicit TWOFOLD_JWT_ALGORITHMS"));
    assert!(refusal(&["--jwt-jwks-url", url, "--jwt-algorithms", "HS256"]).contains("symmetric"));
    assert!(refusal(&["--jwt-jwks-url", url, "--jwt-algorithms", "RS256,none"]).contains("none"));
    for bad in ["", "idp.example/jwks.json", "ftp://idp.example/jwks.json", "file:///etc/jwks.json"] {
        let message = refusal(&["--jwt-jwks-url", bad, "--jwt-algorithms", "RS256"]);
        assert!(message.starts_with("TWOFOLD_JWT_JWKS_URL"), "{bad}: {message}");
    }
    for bad in ["0", "0s", "25h", "2d"] {
        let message = refusal(&["--jwt-jwks-url", url, "--jwt-algorithms", "RS256", "--jwt-jwks-refresh", bad]);
        assert!(message.contains("TWOFOLD_JWT_JWKS_REFRESH must be between 1s and 24h"), "{bad}: {message}");
    }
    for good in ["1s", "1", "10m", "24h", "86400"] {
        let args =
            ["--jwt-jwks-url", url, "--jwt-algorithms", "RS256,PS256,ES256,ES384,EdDSA", "--jwt-jwks-refresh", good];
        let setup = parse(&args).jwt().unwrap_or_else(|e| panic!("{good}: {e}"));
        assert!(setup.dev_secret.is_none());
        let keys = setup.authenticator.caller_keys().expect("keys from the JWK Set");
        assert!(!keys.is_loaded() && !setup.authenticator.is_ready(), "nothing fetched before serve starts it");
    }
    // The default refresh interval is 10 minutes.
    assert_eq!(parse(&[]).jwt_jwks_refresh, Duration::from_secs(600));
}

#[test]
fn help_documents_the_jwks_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (exit, help, _) = run(twofold(dir.path(), &["--help"], &[]));
    assert!(exit.success());
    for needle in ["TWOFOLD_JWT_JWKS_URL", "TWOFOLD_JWT_JWKS_REFRESH", "[default: 10m]"] {
        assert!(help.contains(needle), "--help names {needle}:\n{help}");
    }
}
