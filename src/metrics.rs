//! Prometheus metrics (`GET /metrics`): request counts and latency by route and GraphQL
//! operation, and the domain counters (enrolments, enables, verifications, replays, lockouts).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds (0.25 ms … 5 s).
const LATENCY_BUCKETS: &[f64] =
    &[0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The process-wide recorder, installed on first use (several apps in one test process share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(
        "twofold_http_requests_total",
        "HTTP requests by method, route, GraphQL operation and status."
    );
    metrics::describe_histogram!(
        "twofold_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route and GraphQL operation."
    );
    metrics::describe_counter!("twofold_enrolments_total", "Enrolments started (pending secrets issued).");
    metrics::describe_counter!(
        "twofold_webhook_deliveries_total",
        "Webhook delivery attempts by result: delivered (2xx), retry (scheduled again), failed (window over)."
    );
    metrics::describe_gauge!("twofold_webhook_outbox_pending", "Events waiting for webhook delivery.");
    metrics::describe_counter!("twofold_admin_actions_total", "Admin resets and unlocks, by action.");
    metrics::describe_counter!("twofold_imports_total", "Credentials imported with `twofold admin import`.");
    metrics::describe_counter!("twofold_enables_total", "Two-factor enabled.");
    metrics::describe_counter!("twofold_disables_total", "Two-factor disabled.");
    metrics::describe_counter!(
        "twofold_verifications_total",
        "Code checks by method (totp, recovery_code) and result (success, failure)."
    );
    metrics::describe_counter!(
        "twofold_replays_refused_total",
        "Correct TOTP codes refused because their time step was already used."
    );
    metrics::describe_counter!("twofold_lockouts_total", "Credentials locked after too many consecutive failures.");
    metrics::describe_counter!("twofold_recovery_codes_regenerated_total", "Recovery-code sets regenerated.");
}

/// Folds recorded latencies into their histogram buckets every `every`, for as long as the
/// runtime runs. The recorder keeps each sample until then (or until a scrape of `/metrics`), so
/// without it memory would grow with every request while nobody scrapes.
pub fn spawn_upkeep(every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle().run_upkeep();
        }
    })
}

/// Renders the Prometheus text format.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}
