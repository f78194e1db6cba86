//! The router and everything around the handlers: correlation ids, one log line per request,
//! panics, timeouts, health checks and metrics. The endpoints themselves live with their
//! transport (`graphql_http`, `rest::*`, `playground`).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tracing::Instrument;

pub use crate::web::{AppState, CorrelationId, HttpOptions};
use crate::web::{CLOUDREVE_CORRELATION_HEADER, CORRELATION_HEADER, OperationName};

/// Requests taking longer than this are answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/schema.graphql", get(schema_sdl))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .merge(crate::graphql_http::routes())
        .merge(crate::rest::cloudreve::routes())
        .merge(crate::rest::storno::routes())
        .merge(crate::playground::routes())
        .route_layer(middleware::from_fn(observe))
        .fallback(not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .with_state(state)
}

fn valid_client_correlation_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?.trim();
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_owned())
}

/// Correlation id, one log line per request (method, route, status, latency; never the query
/// string, a body or a header value).
async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let client_cid = req.headers().get(&CLOUDREVE_CORRELATION_HEADER).and_then(valid_client_correlation_id);
    let cid = client_cid.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(CorrelationId(cid.clone()));
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map_or("", |p| p.as_str()).to_owned();
    let span = tracing::info_span!("request", correlation_id = %cid);
    let mut response = next.run(req).instrument(span.clone()).await;
    let latency = started.elapsed();
    if let Ok(v) = HeaderValue::from_str(&cid) {
        response.headers_mut().insert(CORRELATION_HEADER, v.clone());
        if client_cid.is_some() {
            response.headers_mut().insert(CLOUDREVE_CORRELATION_HEADER, v);
        }
    }
    let operation = response.extensions().get::<OperationName>().map(|o| o.0.clone());
    let status = response.status().as_u16();
    let labels =
        [("method", method.to_owned()), ("route", route.clone()), ("operation", operation.clone().unwrap_or_default())];
    metrics::histogram!("twofold_http_request_duration_seconds", &labels).record(latency.as_secs_f64());
    let mut labels = labels.to_vec();
    labels.push(("status", status.to_string()));
    metrics::counter!("twofold_http_requests_total", &labels).increment(1);
    tracing::info!(
        parent: &span,
        method = %method,
        route = %route,
        operation = operation.as_deref().unwrap_or(""),
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// The `method` of logs and metrics: a method of HTTP itself, or `other`. A client may send any
/// token as a method (and gets 405); as a label each new one would add a series to `/metrics`
/// for good.
fn method_label(method: &Method) -> &'static str {
    static KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    KNOWN.iter().find(|known| *known == method).map_or("other", Method::as_str)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "Internal server error."}))).into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "Not found."}))).into_response()
}

async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::rest::openapi_json()).into_response()
}

async fn schema_sdl() -> Response {
    static SDL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sdl = SDL.get_or_init(crate::graphql::sdl).as_str();
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], sdl).into_response()
}

async fn metrics_text() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::render()).into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The JWK Set that verification assertions are checked against (SPEC §7): public keys only,
/// cacheable for 5 minutes (a rotated-out key stays listed longer than that).
async fn jwks(State(state): State<AppState>) -> Response {
    match state.service.jwks().await {
        Ok(set) => (
            [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=300")],
            set.to_string(),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "the assertion keys could not be loaded");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "Service unavailable."}))).into_response()
        }
    }
}

/// Ready when the database is reachable and tokens can be checked (with `TWOFOLD_JWT_JWKS_URL`:
/// once the JWK Set was fetched).
async fn readyz(State(state): State<AppState>) -> Response {
    let unavailable = || (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable"}))).into_response();
    if !state.auth.is_ready() {
        tracing::warn!("readiness check failed: the JWK Set of TWOFOLD_JWT_JWKS_URL was not fetched yet");
        return unavailable();
    }
    match state.service.ready().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed: database unreachable");
            unavailable()
        }
    }
}
