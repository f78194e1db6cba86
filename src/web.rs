//! What every transport shares, and nothing else: the application state handed to handlers,
//! the request's correlation id, and bounded reading of request bodies. A leaf of the web layer:
//! `http` (the router), `graphql_http`, `rest::*` and `playground` import it; it imports
//! none of them.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::auth::{AuthError, Authenticator, Viewer};
use crate::graphql::TwofoldSchema;
use crate::service::TwoFactor;

/// Largest request body accepted (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");
pub const CLOUDREVE_CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-cr-correlation-id");

/// Everything handlers need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub service: TwoFactor,
    pub auth: Arc<Authenticator>,
    pub schema: TwofoldSchema,
    pub options: Arc<HttpOptions>,
}

/// Transport options.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// `TWOFOLD_DEBUG`: Cloudreve errors carry internal detail in `error`.
    pub debug: bool,
    /// Dev mode only: the `Authorization` value the playground opens with.
    pub playground_authorization: Option<String>,
}

impl AppState {
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Viewer, AuthError> {
        self.auth.authenticate(headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
    }
}

/// The request's correlation id (a client's `X-Cr-Correlation-Id`, or a fresh UUID v4).
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// Set by the GraphQL handler so the request log line names the operation.
#[derive(Debug, Clone)]
pub struct OperationName(pub String);

impl AppState {
    /// Assembles the application state (builds the GraphQL schema).
    pub fn new(service: TwoFactor, auth: Authenticator, options: HttpOptions) -> Self {
        crate::metrics::handle();
        AppState { service, auth: Arc::new(auth), schema: crate::graphql::build_schema(), options: Arc::new(options) }
    }
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Unreadable,
}

/// Reads a request body of at most [`MAX_BODY_BYTES`].
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, BodyError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    match http_body_util::Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}

/// Why a JSON body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonBodyError {
    TooLarge,
    Malformed,
}

/// Reads a body (≤ 64 KiB, nested at most 64 levels) and parses it as JSON, whatever the `Content-Type` says: legacy
/// clients are not always careful with headers, and a wrong one must not cause a 415.
pub async fn read_json(headers: &HeaderMap, body: Body) -> Result<Value, JsonBodyError> {
    let bytes = read_body(headers, body).await.map_err(|e| match e {
        BodyError::TooLarge => JsonBodyError::TooLarge,
        BodyError::Unreadable => JsonBodyError::Malformed,
    })?;
    // serde_json's own recursion limit (128) stays on; this stricter bound runs first.
    if crate::nesting::json_too_deep(&bytes, crate::nesting::MAX_NESTING) {
        return Err(JsonBodyError::Malformed);
    }
    serde_json::from_slice(&bytes).map_err(|_| JsonBodyError::Malformed)
}

/// How a REST dialect answers a request without a valid bearer token.
pub trait AuthRejection {
    /// The dialect's answer to `error` (the request's correlation id is in `parts.extensions`).
    fn reject(error: AuthError, parts: &axum::http::request::Parts, state: &AppState) -> axum::response::Response;
}

/// The authenticated caller of a REST route, in the dialect `D`: an extractor that answers
/// `D`'s "unauthenticated" before the handler runs (and before its body is read).
pub struct Caller<D>(pub Viewer, pub std::marker::PhantomData<D>);

impl<D: AuthRejection> axum::extract::FromRequestParts<AppState> for Caller<D> {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match state.authenticate(&parts.headers) {
            Ok(viewer) => Ok(Caller(viewer, std::marker::PhantomData)),
            Err(e) => Err(D::reject(e, parts, state)),
        }
    }
}
