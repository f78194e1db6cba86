//! REST compatibility shims. Each dialect is one file: request/response shapes and the mapping of
//! domain results to that dialect's answers. They call the same service functions as GraphQL.

// Handlers return `Result<_, Response>` to short-circuit with the dialect's answer; the size of
// `Response` does not matter on these paths.
#![allow(clippy::result_large_err)]

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

/// [`openapi`] as pretty JSON, computed once.
pub fn openapi_json() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = openapi().to_pretty_json().unwrap_or_default();
        text.push('\n');
        text
    })
}

/// The OpenAPI 3.1 document of every REST route of both dialects (served at `/openapi.json`,
/// snapshot in `openapi.json`). Cloudreve routes are listed at both of their paths.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

    #[derive(OpenApi)]
    #[openapi(
        info(
            title = "Twofold REST compatibility API",
            description = "TOTP two-factor REST shims for the Cloudreve v4 and Storno dialects. The primary API is GraphQL at `/graphql` (SDL at `/schema.graphql`, playground at `/graphiql`). Every route needs `Authorization: Bearer <JWT>` issued by the host application.",
            license(name = "MIT OR Apache-2.0")
        ),
        paths(
            cloudreve::prepare,
            cloudreve::update_settings,
            storno::setup,
            storno::enable,
            storno::disable,
            storno::regenerate,
            storno::status,
            storno::verify,
        ),
        tags(
            (name = "Cloudreve", description = "Cloudreve v4 dialect: HTTP 200 always, outcome in the envelope's `code`."),
            (name = "Storno", description = "Storno dialect: real HTTP statuses; errors `{\"error\":\"…\"}`, auth failures `{\"code\":401,\"message\":\"…\"}`."),
        )
    )]
    struct Doc;

    let mut doc = Doc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT from the host application (HS256 by default): `sub` is the user; `exp` required.",
                ))
                .build(),
        ),
    );
    for path in ["/user/setting/2fa", "/user/setting"] {
        if let Some(item) = doc.paths.paths.get(path).cloned() {
            doc.paths.paths.insert(format!("/api/v4{path}"), item);
        }
    }
    doc
}
