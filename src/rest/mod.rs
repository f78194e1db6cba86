//! REST compatibility shims. Each dialect is one file: request/response shapes and the mapping of
//! domain results to that dialect's answers. They call the same service functions as GraphQL.

pub mod cloudreve;
pub mod storno;

use axum::body::Body;
use axum::http::HeaderMap;
use serde_json::Value;

use crate::http::{BodyError, read_body};

/// Why a JSON body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonBodyError {
    TooLarge,
    Malformed,
}

/// Reads a body (≤ 64 KiB) and parses it as JSON, whatever the `Content-Type` says: legacy
/// clients are not always careful with headers, and a wrong one must not cause a 415.
pub async fn read_json(headers: &HeaderMap, body: Body) -> Result<Value, JsonBodyError> {
    let bytes = read_body(headers, body).await.map_err(|e| match e {
        BodyError::TooLarge => JsonBodyError::TooLarge,
        BodyError::Unreadable => JsonBodyError::Malformed,
    })?;
    serde_json::from_slice(&bytes).map_err(|_| JsonBodyError::Malformed)
}
