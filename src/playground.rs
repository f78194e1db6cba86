//! The browser side: the landing page, the GraphiQL playground (`/graphiql`, `/playground`) and
//! the REST reference (`/docs`), served from `playground/dist/` compiled into the binary, under a
//! Content-Security-Policy that allows only same-origin scripts and styles. Nothing the pages load
//! comes from another origin.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::web::AppState;

/// `playground/dist/`, built by `playground/build.sh` and committed.
#[derive(rust_embed::Embed)]
#[folder = "playground/dist/"]
struct Assets;

/// Only same-origin scripts and styles; images may be data URIs (the QR code).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

const TOKEN_HINT: &str = "This server verifies tokens with a configured key. Mint one with: \
twofold token --sub alice --email alice@example.com  (then set the Authorization header to \"Bearer <token>\")";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(landing))
        .route("/landing.css", get(landing_css))
        .route("/graphiql", get(graphiql))
        .route("/playground", get(graphiql))
        .route("/docs", get(docs))
        .route("/playground/config.json", get(config))
        .route("/playground/assets/{*path}", get(asset))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "ttf" => "font/ttf",
        "woff2" => "font/woff2",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

fn with_security_headers(mut response: Response, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn embedded(path: &str, cache: &'static str) -> Response {
    match Assets::get(path) {
        Some(file) => with_security_headers(
            ([(header::CONTENT_TYPE, content_type(path))], file.data.into_owned()).into_response(),
            cache,
        ),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "Not found." }))).into_response(),
    }
}

async fn graphiql() -> Response {
    embedded("index.html", "no-cache")
}

async fn docs() -> Response {
    embedded("docs.html", "no-cache")
}

/// Built assets carry a content hash in their names, so they may be cached for good.
async fn asset(Path(path): Path<String>) -> Response {
    let cache = if path.ends_with(".html") { "no-cache" } else { "public, max-age=31536000, immutable" };
    embedded(&path, cache)
}

/// What the playground opens with: in dev mode the demo token's `Authorization` header; with a
/// configured key no token at all (it is never put in the page), and a hint on minting one.
async fn config(State(state): State<AppState>) -> Response {
    let body = match &state.options.playground_authorization {
        Some(authorization) => json!({ "endpoint": "/graphql", "authorization": authorization }),
        None => json!({ "endpoint": "/graphql", "authorization": null, "hint": TOKEN_HINT }),
    };
    with_security_headers(Json(body).into_response(), "no-store")
}

const LANDING: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Twofold</title>
<link rel="stylesheet" href="/landing.css">
</head>
<body>
<main>
<h1>Twofold</h1>
<p>A TOTP two-factor service: a GraphQL API with REST compatibility for the Cloudreve v4 and Storno dialects.</p>
<ul>
<li><a href="/graphiql">GraphiQL playground</a>: walk the whole two-factor flow in the browser</li>
<li><a href="/docs">REST API reference</a> (<a href="/openapi.json">openapi.json</a>)</li>
<li><a href="/schema.graphql">GraphQL schema (SDL)</a>; endpoint: <code>POST /graphql</code></li>
<li><a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a> · <a href="/metrics">/metrics</a></li>
</ul>
</main>
</body>
</html>
"#;

const LANDING_CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
main{max-width:44rem;margin:4rem auto;padding:0 1.5rem}h1{font-size:2.2rem;margin-bottom:.3rem}\
li{margin:.5rem 0}a{color:#1f5fd1}code{background:#e8ebf0;padding:.1rem .3rem;border-radius:3px}\n";

async fn landing() -> Response {
    with_security_headers(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], LANDING).into_response(), "no-cache")
}

async fn landing_css() -> Response {
    with_security_headers(
        ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], LANDING_CSS).into_response(),
        "public, max-age=3600",
    )
}
