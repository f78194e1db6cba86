//! REST compatibility shims. Each dialect is one file: request/response shapes and the mapping of
//! domain results to that dialect's answers. They call the same service functions as GraphQL.

// Handlers return `Result<_, Response>` to short-circuit with the dialect's answer; the size of
// `Response` does not matter on these paths.
#![allow(clippy::result_large_err)]

pub mod cloudreve;
pub mod storno;

pub use crate::web::{JsonBodyError, read_json};

/// A request body (as [`read_json`] returns it) deserialized into a dialect's request type, or
/// `None` when it does not fit. Only a JSON object is taken: serde would also fill a struct from
/// an array, by position.
pub(crate) fn from_object<'a, T: serde::Deserialize<'a>>(json: &'a serde_json::Value) -> Option<T> {
    if json.is_object() { T::deserialize(json).ok() } else { None }
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
    // Cloudreve's routes are served at two paths; each copy needs operation ids of its own
    // (OpenAPI requires them unique, and client generators refuse duplicates).
    for path in ["/user/setting/2fa", "/user/setting"] {
        if let Some(mut item) = doc.paths.paths.get(path).cloned() {
            for op in
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
            {
                op.operation_id = op.operation_id.take().map(|id| format!("{id}_api_v4"));
            }
            doc.paths.paths.insert(format!("/api/v4{path}"), item);
        }
    }
    doc
}
