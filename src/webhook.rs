//! Outgoing events (SPEC §9): Standard Webhooks requests from a transactional outbox.
//!
//! The outbox is the audit table itself: an event of a kind the receiver wants is stored with a
//! message id and `delivery = 'pending'` in the same transaction as the change it reports (see
//! [`crate::service`]), so a change is never without its event, also across a `SIGKILL`. The
//! [`Deliverer`] of each instance then sends what is due:
//!
//! * **claims**: it keeps up to [`BATCH`] attempts in flight, taking due events by setting a lease (`claimed_until`, now +
//!   [`LEASE`]) in one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so several instances
//!   never send one event at the same time, and a killed instance's claims are taken over once
//!   their lease ends;
//! * **attempts**: each event is one `POST`, signed as the Standard Webhooks specification says,
//!   with a 10 s timeout and no redirects; any 2xx completes it;
//! * **backoff**: otherwise the next attempt is [`BACKOFF`] after this one (1 s, 5 s, 30 s, 2 min,
//!   10 min, 1 h, then hourly) until the event is `TWOFOLD_WEBHOOK_MAX_AGE` old (counted from the
//!   event, or from a `twofold admin webhooks retry`); then it is kept as `failed`;
//! * **shutdown**: in-flight attempts get [`SHUTDOWN_GRACE`] to finish; the claims of those that
//!   do not are released for the next instance.
//!
//! Delivery never holds up a request: a request only inserts its event row and wakes the
//! deliverer.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{Notify, watch};

use crate::clock::{Clock, rfc3339};
use crate::service::EventKind;
use crate::store::{Delivery, DeliveryOutcome, Store};

/// Attempts in flight at most (claimed and sent concurrently).
pub const BATCH: u64 = 32;
/// How long a claim holds: a killed instance's events are taken over after this.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often the outbox is looked at when nothing wakes the deliverer (retries, other
/// instances' events).
pub const POLL: Duration = Duration::from_secs(1);
/// The timeout of one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the outcomes of attempts that finish together are gathered into one write.
pub const OUTCOME_GATHER: Duration = Duration::from_millis(20);
/// How long in-flight attempts may run on after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// The wait before each retry: after the 1st attempt 1 s, after the 2nd 5 s, …; hourly after the
/// last.
pub const BACKOFF: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

/// The webhook receiver and what it is sent.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: reqwest::Url,
    /// The HMAC key: the base64-decoded part of `whsec_…`.
    key: Arc<[u8]>,
    pub kinds: Vec<EventKind>,
    pub max_age: Duration,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url.as_str())
            .field("kinds", &self.kinds)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// The secret's prefix (Standard Webhooks).
const SECRET_PREFIX: &str = "whsec_";
/// The shortest key accepted, in bytes.
const MIN_KEY_BYTES: usize = 24;

impl WebhookSettings {
    /// Checks the settings; the error is one line naming the setting. `events` is the
    /// comma-separated `TWOFOLD_WEBHOOK_EVENTS` (all webhook kinds when `None`).
    pub fn parse(url: &str, secret: Option<&str>, events: Option<&str>, max_age: Duration) -> Result<Self, String> {
        let url = reqwest::Url::parse(url.trim()).map_err(|e| format!("TWOFOLD_WEBHOOK_URL is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err("TWOFOLD_WEBHOOK_URL must be an http:// or https:// URL with a host".into());
        }
        let secret = secret.map(str::trim).filter(|s| !s.is_empty()).ok_or(
            "TWOFOLD_WEBHOOK_SECRET is required with TWOFOLD_WEBHOOK_URL (whsec_ followed by base64 of at least 24 \
             random bytes)",
        )?;
        let key = secret
            .strip_prefix(SECRET_PREFIX)
            .and_then(|b64| data_encoding::BASE64.decode(b64.as_bytes()).ok())
            .filter(|k| k.len() >= MIN_KEY_BYTES)
            .ok_or("TWOFOLD_WEBHOOK_SECRET must be whsec_ followed by base64 of at least 24 random bytes")?;
        let kinds = match events.map(str::trim).filter(|e| !e.is_empty()) {
            None => EventKind::WEBHOOK.to_vec(),
            Some(list) => {
                let mut kinds = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let kind = EventKind::parse(&name.to_ascii_uppercase())
                        .filter(|k| EventKind::WEBHOOK.contains(k))
                        .ok_or_else(|| {
                            let known: Vec<&str> = EventKind::WEBHOOK.iter().map(|k| k.as_str()).collect();
                            format!("TWOFOLD_WEBHOOK_EVENTS: {name:?} is not one of {}", known.join(", "))
                        })?;
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
                kinds
            }
        };
        if !(Duration::from_secs(1)..=Duration::from_secs(30 * 86_400)).contains(&max_age) {
            return Err(format!(
                "TWOFOLD_WEBHOOK_MAX_AGE must be between 1s and 30d (got {} seconds)",
                max_age.as_secs()
            ));
        }
        Ok(WebhookSettings { url, key: key.into(), kinds, max_age })
    }
}

/// The `webhook-signature` header of a message: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under `key`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", data_encoding::BASE64.encode(&mac.finalize().into_bytes()))
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    timestamp: &'a str,
    data: Data<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    user_id: &'a str,
    kind: &'a str,
    at: &'a str,
    correlation_id: Option<&'a str>,
    actor: Option<&'a str>,
}

/// The JSON body of an event's message (SPEC §9).
pub fn body(d: &Delivery) -> Vec<u8> {
    let at = rfc3339(d.at);
    let body = Body {
        kind: format!("two_factor.{}", d.kind.to_ascii_lowercase()),
        timestamp: &at,
        data: Data {
            user_id: &d.user_id,
            kind: &d.kind,
            at: &at,
            correlation_id: d.correlation_id.as_deref(),
            actor: d.actor.as_deref(),
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// When the attempt after `attempts` failed ones is due, counted from `now`.
pub fn next_attempt(attempts: i32, now: i64) -> i64 {
    let wait = usize::try_from(attempts.saturating_sub(1))
        .ok()
        .and_then(|i| BACKOFF.get(i))
        .copied()
        .unwrap_or(BACKOFF[BACKOFF.len() - 1]);
    now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
}

/// Sends the outbox's events; one per instance ([`Deliverer::start`]).
pub struct Deliverer {
    store: Store,
    settings: WebhookSettings,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
}

/// The running deliverer: [`DelivererHandle::shutdown`] stops it. Dropping the handle stops it
/// too, without waiting (in-flight attempts get the same grace, then their claims are released).
pub struct DelivererHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DelivererHandle {
    /// Stops claiming, lets in-flight attempts finish for up to [`SHUTDOWN_GRACE`] and releases
    /// the claims of the rest.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Builds the HTTP client of the deliverer: rustls, no redirects, [`ATTEMPT_TIMEOUT`].
fn client() -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = || {
        reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("twofold/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
    };
    builder()
        .build()
        // No CA certificates on this system: plain http still works.
        .or_else(|_| builder().tls_certs_only(std::iter::empty()).build())
        .map_err(|e| format!("TWOFOLD_WEBHOOK_URL: the HTTP client cannot be set up ({e})"))
}

/// Whether the deliverer is to stop: [`DelivererHandle::shutdown`] was called, or the handle
/// was dropped (then `changed` fails at once, every time: waiting on it alone would spin).
fn stop_asked(stopped: &watch::Receiver<bool>) -> bool {
    *stopped.borrow() || stopped.has_changed().is_err()
}

/// Resolves once the deliverer is to stop ([`stop_asked`]).
async fn until_stop(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

impl Deliverer {
    pub fn new(store: Store, settings: WebhookSettings, clock: Arc<dyn Clock>) -> Result<Self, String> {
        Ok(Deliverer { store, settings, client: client()?, clock })
    }

    /// Starts delivering in the background; `wake` is notified when a request queued an event.
    pub fn start(self, wake: Arc<Notify>) -> DelivererHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(wake, stopped));
        DelivererHandle { stop, task }
    }

    /// Keeps up to [`BATCH`] attempts in flight: claims what is due whenever there is room (at
    /// once after a full claim or a wake-up, [`POLL`] after an empty one), so one receiver that is
    /// slow to answer one event does not hold up the others. On stop, in-flight attempts get
    /// [`SHUTDOWN_GRACE`]; the claims of the rest are released.
    async fn run(self, wake: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
        use std::collections::HashSet;
        use tokio::time::Instant;
        let this = Arc::new(self);
        let mut in_flight: tokio::task::JoinSet<(i64, DeliveryOutcome)> = tokio::task::JoinSet::new();
        let mut ids: HashSet<i64> = HashSet::new();
        let mut next_look = Instant::now();
        let room = |n: usize| BATCH.saturating_sub(n as u64);
        while !stop_asked(&stopped) {
            if room(in_flight.len()) > 0 && Instant::now() >= next_look {
                let wanted = room(in_flight.len());
                let claimed = this.claim(wanted).await;
                let got = claimed.len() as u64;
                for delivery in claimed {
                    ids.insert(delivery.id);
                    let this = this.clone();
                    in_flight.spawn(async move { this.attempt(delivery).await });
                }
                next_look = match got {
                    0 => {
                        this.update_gauge().await;
                        Instant::now() + POLL
                    }
                    // More may be due: look again as soon as there is room.
                    n if n == wanted => Instant::now(),
                    // A few were due; others may follow right behind them.
                    _ => Instant::now() + Duration::from_millis(50),
                };
            }
            let has_room = room(in_flight.len()) > 0;
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    // Gather what finishes within a moment, and store it in one write.
                    let mut outcomes: Vec<(i64, DeliveryOutcome)> = done.into_iter().collect();
                    let gather = tokio::time::sleep(OUTCOME_GATHER);
                    tokio::pin!(gather);
                    while !in_flight.is_empty() {
                        tokio::select! {
                            Some(done) = in_flight.join_next() => outcomes.extend(done),
                            () = &mut gather => break,
                        }
                    }
                    for (id, _) in &outcomes {
                        ids.remove(id);
                    }
                    this.record(outcomes).await;
                }
                () = wake.notified() => next_look = Instant::now(),
                () = tokio::time::sleep_until(next_look), if has_room => {}
                () = until_stop(&mut stopped) => break,
            }
        }
        if !in_flight.is_empty() {
            let mut outcomes = Vec::new();
            let finish = async {
                while let Some(done) = in_flight.join_next().await {
                    outcomes.extend(done);
                }
            };
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, finish).await;
            in_flight.abort_all();
            for (id, _) in &outcomes {
                ids.remove(id);
            }
            this.record(outcomes).await;
            if !ids.is_empty()
                && let Err(error) = this.store.release_deliveries(ids.into_iter().collect()).await
            {
                tracing::warn!(%error, "webhook claims could not be released; they expire on their own");
            }
        }
        this.update_gauge().await;
    }

    async fn claim(&self, limit: u64) -> Vec<Delivery> {
        let now = self.clock.now_ms();
        let lease_until = now.saturating_add(i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX));
        match self.store.claim_deliveries(now, lease_until, limit).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "webhook outbox cannot be read; will retry");
                Vec::new()
            }
        }
    }

    async fn update_gauge(&self) {
        if let Ok(pending) = self.store.pending_deliveries().await {
            metrics::gauge!("twofold_webhook_outbox_pending").set(pending as f64);
        }
    }

    /// One attempt at one claimed event: its id and outcome (stored by [`Deliverer::record`]).
    async fn attempt(&self, d: Delivery) -> (i64, DeliveryOutcome) {
        let now = self.clock.now_ms();
        let max_age = i64::try_from(self.settings.max_age.as_millis()).unwrap_or(i64::MAX);
        let window_end = d.window_from.saturating_add(max_age);
        let outcome = if now > window_end {
            DeliveryOutcome::Failed { error: "older than TWOFOLD_WEBHOOK_MAX_AGE".into(), attempted: false }
        } else {
            match self.send(&d, now).await {
                Ok(()) => DeliveryOutcome::Delivered,
                Err(error) => {
                    let attempts = d.attempts.saturating_add(1);
                    let at = next_attempt(attempts, self.clock.now_ms());
                    if at > window_end {
                        DeliveryOutcome::Failed { error, attempted: true }
                    } else {
                        DeliveryOutcome::RetryAt { at, error }
                    }
                }
            }
        };
        let result = match &outcome {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::RetryAt { .. } => "retry",
            DeliveryOutcome::Failed { .. } => "failed",
        };
        metrics::counter!("twofold_webhook_deliveries_total", "result" => result).increment(1);
        if let DeliveryOutcome::Failed { error, .. } = &outcome {
            tracing::warn!(webhook_id = %d.webhook_id, kind = %d.kind, %error, "webhook event failed for good");
        }
        (d.id, outcome)
    }

    /// Stores the outcomes of finished attempts in one write.
    async fn record(&self, outcomes: Vec<(i64, DeliveryOutcome)>) {
        let count = outcomes.len();
        if let Err(error) = self.store.deliveries_attempted(outcomes, self.clock.now_ms()).await {
            // The claims run out and the events are sent again: at least once.
            tracing::warn!(%error, count, "webhook outcomes could not be stored");
        }
    }

    async fn send(&self, d: &Delivery, now: i64) -> Result<(), String> {
        let body = body(d);
        let timestamp = now / 1000;
        let signature = signature(&self.settings.key, &d.webhook_id, timestamp, &body);
        let response = self
            .client
            .post(self.settings.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &d.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "failed"
                };
                format!("request {kind}")
            })?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(format!("receiver answered {}", status.as_u16())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and its reference libraries).
    #[test]
    fn signature_matches_the_specification_example() {
        let key = data_encoding::BASE64.decode(b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn backoff_schedule() {
        let s = |n| (next_attempt(n, 0) / 1000) as u64;
        assert_eq!([s(1), s(2), s(3), s(4), s(5), s(6), s(7), s(20)], [1, 5, 30, 120, 600, 3600, 3600, 3600]);
    }

    #[test]
    fn settings_are_checked() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let day = Duration::from_secs(86_400);
        assert!(WebhookSettings::parse("http://127.0.0.1:9/hook", Some(secret), None, day).is_ok());
        assert!(WebhookSettings::parse("http://127.0.0.1:9/hook", None, None, day).is_err());
        assert!(WebhookSettings::parse("http://127.0.0.1:9/hook", Some("MfKQ9r8GKYqrTwjU"), None, day).is_err());
        assert!(WebhookSettings::parse("http://127.0.0.1:9/hook", Some("whsec_c2hvcnQ="), None, day).is_err());
        assert!(WebhookSettings::parse("ftp://x/hook", Some(secret), None, day).is_err());
        let narrowed =
            WebhookSettings::parse("https://x.test/h", Some(secret), Some("ENABLED, disabled"), day).unwrap();
        assert_eq!(narrowed.kinds, [EventKind::Enabled, EventKind::Disabled]);
        assert!(WebhookSettings::parse("https://x.test/h", Some(secret), Some("VERIFIED"), day).is_err());
        assert!(WebhookSettings::parse("https://x.test/h", Some(secret), Some("NOPE"), day).is_err());
    }
}
