//! The playground in a real browser (issue: playground): headless Chromium opens `/graphiql` on a
//! dev-mode server, walks the enrolment flow the way a person would (SetupTotp, read the code the
//! TOTP helper computes, "Use in variables", EnableTotp), and the server then reports two-factor
//! on. The `/docs` page is checked against `/openapi.json`, and every network request any target
//! of the browser makes (the page and its Monaco web workers) must stay on the test server's
//! origin.
//!
//! Needs Chromium (`apt-get install -y chromium`). Without it the test prints `SKIPPED` and passes,
//! unless `TWOFOLD_REQUIRE_BROWSER=1` (CI), when it fails. Screenshots go to `target/browser/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::types::{EventMessage, Message, MethodId};
use chromiumoxide::{Browser, BrowserConfig, Connection, Page};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::common::*;
use axum::http::{Method, StatusCode};
use twofold::clock::SystemClock;
use twofold::crypto::Keyring;
use twofold::service::{ServiceSettings, TwoFactor};
use twofold::{AppState, HttpOptions};

const USER: &str = "browser-user";
/// How long any one thing may take to show up in the page.
const WAIT: Duration = Duration::from_secs(20);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_enrols_totp_in_a_real_browser() {
    let started = Instant::now();
    let Some(chromium) = chromium() else {
        if std::env::var("TWOFOLD_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!(
                "TWOFOLD_REQUIRE_BROWSER=1 but Chromium was not found at /usr/bin/chromium or on PATH \
                 (apt-get install -y chromium)"
            );
        }
        report("\n*** SKIPPED: chromium not installed (apt-get install -y chromium) ***\n");
        return;
    };

    // A dev-mode server (the page opens with the Authorization header filled) on a real socket,
    // with the wall clock: the browser computes codes from real time.
    let base = TestApp::spawn().await; // a fresh database
    let store = twofold::connect_and_migrate(&base.db_url, 8).await.expect("database");
    let service = TwoFactor::new(
        store,
        Arc::new(Keyring::new(&ENCRYPTION_KEY, &[])),
        ServiceSettings::default(),
        Arc::new(SystemClock),
    );
    let bearer = token(USER);
    let options = HttpOptions { playground_authorization: Some(format!("Bearer {bearer}")), ..Default::default() };
    let state = AppState::new(service, authenticator(), options);
    let app = TestApp { router: twofold::app(state.clone()), state: state.clone(), ..base };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(twofold::run(listener, state, async {
        let _ = stopped.await;
    }));

    // The browser, and a second CDP client on it that records every request of every target.
    let profile = tempfile::tempdir().expect("temp dir");
    let config = BrowserConfig::builder()
        .chrome_executable(&chromium)
        .user_data_dir(profile.path())
        .no_sandbox()
        .args([
            "disable-gpu",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "no-first-run",
            "disable-quic",
        ])
        .window_size(1400, 900)
        .viewport(chromiumoxide::handler::viewport::Viewport { width: 1400, height: 900, ..Default::default() })
        .build()
        .expect("browser config");
    let (mut browser, mut handler) = Browser::launch(config).await.expect("launch Chromium");
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let recorder = RequestRecorder::start(browser.websocket_address()).await;

    let page = browser.new_page("about:blank").await.expect("new page");
    // Records when the TOTP helper first has a layout box, in ms since navigation start.
    page.evaluate_on_new_document(HELPER_SHOWN_AT).await.expect("init script");
    page.goto(format!("{origin}/graphiql")).await.expect("open /graphiql");

    // The page is up: the helper panel and the query editor's first line.
    wait_for(&page, "the TOTP helper", &present("[data-testid=totp-helper]")).await;
    wait_for(&page, "the query editor", &present(".graphiql-query-editor .view-line")).await;
    let load_ms = wait_for(&page, "the helper's first paint time", "window.__twofoldHelperShownAt ?? null")
        .await
        .as_f64()
        .unwrap();
    report(&format!("page load (navigation start -> TOTP helper visible): {load_ms:.0} ms"));

    // SetupTotp: the helper shows the QR code, the secret and the current code.
    open_tab(&page, "SetupTotp").await;
    click(&page, "button.graphiql-execute-button").await;
    let qr = wait_for(
        &page,
        "the QR code to load",
        "(() => { const i = document.querySelector('[data-testid=totp-qr]'); \
         return i && i.complete && i.naturalWidth > 0 ? { src: i.src, width: i.naturalWidth } : null })()",
    )
    .await;
    assert_eq!(qr["width"], 300, "the QR PNG is 300 px wide");
    let code = wait_for(
        &page,
        "a six-digit code",
        "(() => { const t = document.querySelector('[data-testid=totp-code]')?.textContent ?? ''; \
         return /^\\d{6}$/.test(t) ? t : null })()",
    )
    .await
    .as_str()
    .unwrap()
    .to_owned();
    let secret = text_of(&page, "[data-testid=totp-secret]").await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    // The page's code, against an independent RFC 6238 implementation (one step either way, in
    // case a 30 s boundary fell between the page's computation and ours).
    let expected: Vec<String> = [now - 30, now, now + 30].iter().map(|t| totp(&secret, *t, 6, 30)).collect();
    assert!(expected.contains(&code), "the page shows {code} for {secret}; an independent TOTP gives {expected:?}");
    // The QR code the page shows encodes that same secret.
    let (_, _, _, _, otpauth, _) = decode_qr(qr["src"].as_str().unwrap());
    assert!(otpauth.starts_with("otpauth://totp/") && otpauth.contains(&format!("secret={secret}")), "{otpauth}");

    // EnableTotp with the helper's "Use in variables".
    open_tab(&page, "EnableTotp").await;
    click(&page, "[data-testid=totp-use-code]").await;
    wait_for(
        &page,
        "the code in the variables editor",
        "(() => { const v = [...document.querySelectorAll('.graphiql-editor-tool .view-lines')]\
         .map(e => e.textContent).join(' '); return /\"code\":\\s*\"\\d{6}\"/.test(v.replace(/\\u00a0/g, ' ')) || null })()",
    )
    .await;
    click(&page, "button.graphiql-execute-button").await;
    let result = wait_for(
        &page,
        "the EnableTotp result",
        "(() => { const t = document.querySelector('[data-testid=last-result]')?.textContent ?? ''; \
         return t.includes('enableTotp:') ? t : null })()",
    )
    .await;
    assert!(result.as_str().unwrap().contains("enableTotp: TotpEnabled"), "{result}");
    let shot = screenshot(&page, "playground.png").await;
    report(&format!("screenshot: {}", shot.display()));

    // The server agrees: two-factor is on for the token's user.
    let status = app.graphql(Some(&bearer), "{ twoFactor { enabled } }", json!({})).await;
    assert_eq!(status["data"]["twoFactor"]["enabled"], true, "server side: {status}");

    // /docs lists every path of /openapi.json.
    let (http_status, spec) = app.json(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(http_status, StatusCode::OK);
    let paths: Vec<String> = spec["paths"].as_object().expect("paths").keys().cloned().collect();
    assert!(!paths.is_empty());
    page.goto(format!("{origin}/docs")).await.expect("open /docs");
    let check = format!(
        "(() => {{ const shown = new Set([...document.querySelectorAll('[data-testid=docs-path]')]\
         .map(e => e.textContent)); const text = document.body.innerText; \
         const missing = {}.filter(p => !shown.has(p) || !text.includes(p)); \
         return missing.length === 0 ? true : (window.__missing = missing, null) }})()",
        serde_json::to_string(&paths).unwrap()
    );
    if !try_wait_for(&page, &check).await {
        let missing =
            page.evaluate_expression("window.__missing ?? null").await.ok().and_then(|r| r.into_value::<Value>().ok());
        screenshot(&page, "failure.png").await;
        panic!("/docs does not show these paths of /openapi.json: {missing:?}");
    }
    let shot = screenshot(&page, "docs.png").await;
    report(&format!("screenshot: {}", shot.display()));

    // Close the browser (kill it if that hangs); the recorder's connection ends with it.
    let page_target = page.target_id().inner().clone();
    drop(page);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        browser.close().await.ok();
        browser.wait().await.ok();
    })
    .await;
    if closed.is_err() {
        report("Chromium did not close within 10 s: killing it");
        browser.kill().await;
    }
    driver.abort();
    let (requests, targets) = recorder.finish(&page_target).await;
    let _ = stop_server.send(());
    server.await.unwrap().expect("server");

    // Every request of every target went to the test server (or was a data:/blob: URL).
    let foreign: Vec<&Recorded> = requests
        .iter()
        .filter(|r| {
            !(r.url.starts_with(&format!("{origin}/")) || r.url.starts_with("data:") || r.url.starts_with("blob:"))
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "requests off the test server's origin {origin}:\n{}",
        foreign.iter().map(|r| format!("  [{}] {}", r.target, r.url)).collect::<Vec<_>>().join("\n")
    );
    // The recording saw the flow and followed the page into its workers (Monaco's), so an empty
    // or page-only record cannot pass by accident.
    assert!(targets.iter().any(|kind| kind == "worker"), "no worker target followed: {targets:?}");
    for path in ["/graphiql", "/playground/config.json", "/graphql", "/docs", "/openapi.json"] {
        assert!(requests.iter().any(|r| r.url == format!("{origin}{path}")), "no request for {path} recorded");
    }
    let mut by_target: HashMap<&str, usize> = HashMap::new();
    for r in &requests {
        *by_target.entry(r.target.as_str()).or_default() += 1;
    }
    report(&format!(
        "{} requests recorded, all same-origin or data:/blob: (by target: {by_target:?}; targets followed: {targets:?})",
        requests.len()
    ));
    report(&format!("test duration: {} ms", started.elapsed().as_millis()));
}

/// Writes a line to the process's stderr, past the test harness's output capture, so the skip
/// notice, timings and screenshot paths show in a plain `cargo test`.
fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "browser: {line}");
}

/// Chromium: `/usr/bin/chromium`, else `chromium` on `PATH`.
fn chromium() -> Option<PathBuf> {
    let default = PathBuf::from("/usr/bin/chromium");
    if default.is_file() {
        return Some(default);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join("chromium")).find(|p| p.is_file())
}

/// Runs in every new document before its scripts: notes `performance.now()` (ms since navigation
/// start) when `[data-testid=totp-helper]` first has a layout box.
const HELPER_SHOWN_AT: &str = r#"(() => {
  const observer = new MutationObserver(() => {
    const helper = document.querySelector('[data-testid=totp-helper]');
    if (helper && helper.getClientRects().length > 0) {
      window.__twofoldHelperShownAt = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document, { childList: true, subtree: true });
})()"#;

/// A JS expression: `true` when `selector` matches an element with a layout box, else `null`.
fn present(selector: &str) -> String {
    format!(
        "(() => {{ const e = document.querySelector({}); return e && e.getClientRects().length > 0 ? true : null }})()",
        serde_json::to_string(selector).unwrap()
    )
}

/// Evaluates `expression` every [`POLL`] until it gives something other than `null`/`false`
/// (returned), for at most [`WAIT`]. Errors while evaluating (e.g. mid-navigation) count as "not
/// yet".
async fn poll(page: &Page, expression: &str) -> Option<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = page.evaluate_expression(expression).await.ok().and_then(|r| r.into_value::<Value>().ok());
        match value {
            Some(Value::Null | Value::Bool(false)) | None => {}
            Some(v) => return Some(v),
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`poll`]: whether `expression` became true within [`WAIT`].
async fn try_wait_for(page: &Page, expression: &str) -> bool {
    poll(page, expression).await.is_some()
}

/// [`poll`], failing the test (with a screenshot of the page) on timeout.
async fn wait_for(page: &Page, what: &str, expression: &str) -> Value {
    match poll(page, expression).await {
        Some(v) => v,
        None => {
            let shot = screenshot(page, "failure.png").await;
            panic!("timed out after {WAIT:?} waiting for {what} ({expression}); page: {}", shot.display());
        }
    }
}

/// Waits for `selector` to be shown, then clicks its centre with the mouse.
async fn click(page: &Page, selector: &str) {
    wait_for(page, selector, &present(selector)).await;
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

/// Clicks the example tab `name` and waits until the query editor shows its operation.
async fn open_tab(page: &Page, name: &str) {
    click(page, &format!("button.graphiql-tab-button[title=\"{name}\"]")).await;
    let shown = format!(
        "(() => (document.querySelector('.graphiql-query-editor .view-lines')?.textContent ?? '')\
         .replace(/\\u00a0/g, ' ').includes({}) || null)()",
        serde_json::to_string(&format!(" {name}")).unwrap()
    );
    wait_for(page, &format!("the {name} operation in the editor"), &shown).await;
}

/// The rendered text of the element `selector` matches.
async fn text_of(page: &Page, selector: &str) -> String {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .inner_text()
        .await
        .unwrap_or_else(|e| panic!("text of {selector}: {e}"))
        .unwrap_or_default()
}

/// Saves a full-page PNG to `target/browser/<name>` and returns its path.
async fn screenshot(page: &Page, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&dir).expect("create target/browser");
    let path = dir.join(name);
    let params = ScreenshotParams::builder().format(CaptureScreenshotFormat::Png).full_page(true).build();
    if let Err(e) = page.save_screenshot(params, &path).await {
        report(&format!("screenshot {} failed: {e}", path.display()));
    }
    path
}

/// One `Network.requestWillBeSent` (or `Network.webSocketCreated`): the kind of target that made
/// it (`page`, `worker`, …), the top-level target it belongs to (a page's workers belong to the
/// page), and the URL.
#[derive(Debug)]
struct Recorded {
    target: String,
    root: String,
    url: String,
}

/// A target this client is attached to: its kind and the top-level target it belongs to.
#[derive(Debug, Clone)]
struct Attached {
    kind: String,
    root: String,
}

/// A CDP event as JSON, keeping the `sessionId` it arrived on (flattened sessions).
#[derive(Debug, Deserialize)]
struct RawEvent {
    method: String,
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
    #[serde(default)]
    params: Value,
}

impl chromiumoxide::Method for RawEvent {
    fn identifier(&self) -> MethodId {
        self.method.clone().into()
    }
}

impl EventMessage for RawEvent {
    fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }
}

/// A second CDP connection to the browser that only listens. It auto-attaches to every target
/// (pages at the browser level; workers through each page) with the target paused at start, turns
/// on the Network domain in that target, then lets it run, so no request escapes the record.
struct RequestRecorder {
    task: JoinHandle<(Vec<Recorded>, Vec<Attached>)>,
}

impl RequestRecorder {
    /// Connects and returns once auto-attach is on (so every page opened afterwards is recorded
    /// from its first request).
    async fn start(ws_url: &str) -> Self {
        let mut conn = Connection::<RawEvent>::connect(ws_url).await.expect("second CDP connection");
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let task = tokio::spawn(async move {
            let attach = auto_attach();
            let attach_id = conn.submit_command("Target.setAutoAttach".into(), None, attach.clone()).unwrap();
            let mut ready_tx = Some(ready_tx);
            let mut targets: HashMap<String, Attached> = HashMap::new();
            let mut recorded = Vec::new();
            let mut followed = Vec::new();
            while let Some(message) = conn.next().await {
                match message {
                    Ok(Message::Response(response)) if response.id == attach_id => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(match response.error {
                                None => Ok(()),
                                Some(e) => Err(format!("{e:?}")),
                            });
                        }
                    }
                    Ok(Message::Response(_)) => {}
                    Ok(Message::Event(event)) => match event.method.as_str() {
                        "Target.attachedToTarget" => {
                            let session = event.params["sessionId"].as_str().unwrap().to_owned();
                            let info = &event.params["targetInfo"];
                            let kind = info["type"].as_str().unwrap_or("?").to_owned();
                            // Attached through a parent session: part of the parent's page;
                            // a top-level target (or a popup) belongs to itself (its opener).
                            let root = match event.session_id.as_ref().and_then(|s| targets.get(s)) {
                                Some(parent) => parent.root.clone(),
                                None => {
                                    info["openerId"].as_str().or(info["targetId"].as_str()).unwrap_or("?").to_owned()
                                }
                            };
                            let attached = Attached { kind, root };
                            followed.push(attached.clone());
                            targets.insert(session.clone(), attached);
                            // In order on the new session: record, follow its workers, run.
                            for (method, params) in [
                                ("Network.enable", json!({})),
                                ("Target.setAutoAttach", attach.clone()),
                                ("Runtime.runIfWaitingForDebugger", json!({})),
                            ] {
                                let _ = conn.submit_command(method.into(), Some(session.clone().into()), params);
                            }
                        }
                        "Network.requestWillBeSent" | "Network.webSocketCreated" => {
                            let url = event.params["request"]["url"]
                                .as_str()
                                .or(event.params["url"].as_str())
                                .unwrap_or("")
                                .to_owned();
                            let (target, root) = match event.session_id.as_ref().and_then(|s| targets.get(s)) {
                                Some(a) => (a.kind.clone(), a.root.clone()),
                                None => ("browser".into(), String::new()),
                            };
                            recorded.push(Recorded { target, root, url });
                        }
                        _ => {}
                    },
                    // A message this client does not understand: not a request, keep listening.
                    Err(chromiumoxide::error::CdpError::InvalidMessage(..)) => {}
                    Err(_) => break,
                }
            }
            (recorded, followed)
        });
        match tokio::time::timeout(WAIT, ready_rx).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("Target.setAutoAttach on the recording connection: {other:?}"),
        }
        RequestRecorder { task }
    }

    /// Once the browser has closed the connection: everything `page` and its workers (and any
    /// popup it opened) requested, and the kinds of the targets followed (the page, its workers).
    /// Other top-level targets are left out: the browser's own UI (`browser_ui`, loading
    /// `chrome://` resources) and the tab Chromium starts with are not the page's.
    async fn finish(self, page: &str) -> (Vec<Recorded>, Vec<String>) {
        let (requests, targets) = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the recording connection ends when the browser closes")
            .expect("recorder task");
        (
            requests.into_iter().filter(|r| r.root == page).collect(),
            targets.into_iter().filter(|t| t.root == page).map(|t| t.kind).collect(),
        )
    }
}

/// `Target.setAutoAttach` parameters: attach to new related targets (flat sessions), paused until
/// `Runtime.runIfWaitingForDebugger`.
fn auto_attach() -> Value {
    json!({ "autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true })
}
