//! The playground, REST docs and landing page are served offline from the binary under a strict
//! Content-Security-Policy (issue: playground). The real-browser walk-through is
//! `tests/it/browser.rs`.

use std::sync::Arc;

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::json;
use twofold::crypto::Keyring;
use twofold::service::{ServiceSettings, TwoFactor};
use twofold::{AppState, HttpOptions};

/// Every `src="…"` / `href="…"` in an HTML page.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            out.push(part.split('"').next().unwrap().to_owned());
        }
    }
    out
}

#[tokio::test]
async fn pages_and_assets_are_same_origin_and_under_the_csp() {
    let app = TestApp::spawn().await;
    for page in ["/graphiql", "/playground", "/docs", "/"] {
        let (status, headers, body) = app.send(Method::GET, page, None, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("style-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        let html = String::from_utf8(body).unwrap();
        assert!(!html.contains("<script>") && !html.contains("<style"), "{page}: no inline script or style");
        for reference in references(&html).into_iter().filter(|r| r != "data:,") {
            assert!(reference.starts_with('/') && !reference.starts_with("//"), "{page} references {reference}");
            let (status, headers, _) = app.send(Method::GET, &reference, None, None, &[]).await;
            assert_eq!(status, StatusCode::OK, "{page} → {reference}");
            if reference.ends_with(".js") {
                assert!(headers["content-type"].to_str().unwrap().starts_with("text/javascript"));
            }
        }
    }
    let (status, _, _) = app.send(Method::GET, "/playground/assets/no-such-file.js", None, None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, landing) = app.send(Method::GET, "/", None, None, &[]).await;
    let landing = String::from_utf8(landing).unwrap();
    for link in ["/graphiql", "/docs", "/healthz", "/schema.graphql", "/openapi.json"] {
        assert!(landing.contains(&format!("href=\"{link}\"")), "landing links {link}");
    }
}

#[tokio::test]
async fn the_page_config_carries_the_demo_token_only_in_dev_mode() {
    let app = TestApp::spawn().await;
    let (status, config) = app.json(Method::GET, "/playground/config.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["authorization"], serde_json::Value::Null, "configured key: no token in the page");
    assert!(config["hint"].as_str().unwrap().contains("twofold token"));

    let store = twofold::connect_and_migrate(&app.db_url, 2).await.unwrap();
    let service = TwoFactor::new(
        store,
        Arc::new(Keyring::new(&ENCRYPTION_KEY, &[])),
        ServiceSettings::default(),
        Arc::new(app.clock.clone()),
    );
    let demo = format!("Bearer {}", token("demo"));
    let options = HttpOptions { playground_authorization: Some(demo.clone()), ..Default::default() };
    let router = twofold::app(AppState::new(service, authenticator(), options));
    let dev = TestApp { router, ..app };
    let (_, config) = dev.json(Method::GET, "/playground/config.json", None, None).await;
    assert_eq!(config, json!({ "endpoint": "/graphql", "authorization": demo }));
}
