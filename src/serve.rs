//! The HTTP accept loop: hyper-util's HTTP/1 + HTTP/2 server with the time limits `axum::serve`
//! lacks (SPEC §10 "Slow and idle clients"), and graceful shutdown ("SIGTERM/SIGINT: stop
//! accepting, finish in-flight requests, exit 0").
//!
//! Time limits on a connection:
//!
//! - **Headers** (HTTP/1): hyper's `header_read_timeout` with a [`TokioTimer`] (`axum::serve` set
//!   no timer, so hyper never enforced it). In hyper 1.x the timer starts as soon as hyper waits
//!   for a request head: on a fresh connection and again right after each response on a kept-alive
//!   one (`proto/h1/conn.rs`: `State::idle` sets `notify_read`, so `poll_read_head` arms the timer
//!   before any byte of the next request has arrived). So an idle HTTP/1 keep-alive connection is
//!   already closed by hyper after `header_timeout`, which is shorter than `idle_timeout` by
//!   default.
//! - **Idle watchdog** (every connection, whatever the protocol): the connection counts its
//!   requests in flight (from the service call until the response body is dropped). When none is
//!   in flight and none has been for `idle_timeout` since the last one ended, or no request at all
//!   has started within `header_timeout` of the accept, the connection is asked to close
//!   (`graceful_shutdown`). This covers what hyper does not: the protocol sniffing before the first
//!   byte (hyper-util's `auto` reads up to 24 bytes with no time limit), idle HTTP/2 connections
//!   (HTTP/2 has no header timeout; client PINGs and SETTINGS do not count as activity), and
//!   HTTP/1 idle connections should a hyper version start the header timer only on the first byte.
//! - **Closing**: a connection asked to close (idle, or server shutdown) that has no request in
//!   flight is dropped if it has not finished closing within [`CLOSE_GRACE`], e.g. an HTTP/2 peer
//!   that never acknowledges the GOAWAY's PING, or an HTTP/1 client halfway through its first
//!   request head. Requests in flight always run to completion (the router's own request timeout
//!   bounds them).
//! - **HTTP/2 keep-alive**: the server PINGs every `header_timeout` and closes the connection if
//!   a PING is not acknowledged within `header_timeout`, so dead peers are noticed even while a
//!   stream is open.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tower::Service;

/// A client must send a complete request head within this time (SPEC §10).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in flight for this long is closed (SPEC §10).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection that was asked to close, and has no request in flight, may take to
/// finish closing before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Pause after an accept error such as EMFILE before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Time limits for client connections; [`Default`] is [`HEADER_TIMEOUT`] and [`IDLE_TIMEOUT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Time for a complete request head (HTTP/1), counted from the accept or from the end of the
    /// previous response; also the time for the first request to start on a new connection, and
    /// the HTTP/2 PING interval and PING acknowledgement timeout.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { header_timeout: HEADER_TIMEOUT, idle_timeout: IDLE_TIMEOUT }
    }
}

/// Serves `router` over HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on `listener` until
/// `shutdown` resolves; then stops accepting, lets requests in flight finish, closes idle
/// connections and returns once every connection is gone.
///
/// Accept errors (e.g. EMFILE) are logged and retried after a short pause; they never end the
/// loop.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let builder = Arc::new(builder(&options));
    let (close_tx, _) = watch::channel(());
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        while let Some(done) = connections.try_join_next() {
            log_join(done);
        }
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    tracing::error!(%error, "accept failed; retrying shortly");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        connections.spawn(serve_connection(stream, router.clone(), builder.clone(), options, close_tx.subscribe()));
    }
    drop(listener);
    tracing::debug!(connections = connections.len(), "stopped accepting; closing connections");
    close_tx.send_replace(());
    while let Some(done) = connections.join_next().await {
        log_join(done);
    }
    Ok(())
}

fn builder(options: &ServeOptions) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(options.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(options.header_timeout)
        .keep_alive_timeout(options.header_timeout);
    builder
}

fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset)
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        tracing::error!(%error, "connection task failed");
    }
}

/// Drives one connection: hyper, the idle watchdog, and the server's shutdown signal.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    builder: Arc<Builder<TokioExecutor>>,
    options: ServeOptions,
    mut close: watch::Receiver<()>,
) {
    let activity = Arc::new(Activity::new());
    let service = TowerToHyperService::new(Tracked { router, activity: activity.clone() });
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    // When the connection was asked to close (idle or server shutdown).
    let mut closing: Option<Instant> = None;
    loop {
        // Requests starting or ending only ever move the deadline to at least `now + period`, so
        // looking again after `period` at the latest never oversleeps (and covers requests in
        // flight, which have no deadline).
        let period = if closing.is_some() { CLOSE_GRACE } else { options.header_timeout.min(options.idle_timeout) };
        let recheck = Instant::now() + period;
        let wake = activity.deadline(closing, &options).map_or(recheck, |deadline| deadline.min(recheck));
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection closed with an error");
                }
                return;
            }
            _ = close.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = sleep_until(wake) => {
                let now = Instant::now();
                match activity.deadline(closing, &options) {
                    Some(deadline) if deadline <= now => {
                        if closing.is_some() {
                            tracing::debug!("dropping a connection that did not close in time");
                            return;
                        }
                        tracing::debug!("closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// What the idle watchdog knows about one connection's requests.
struct Activity {
    epoch: Instant,
    /// Requests whose response body has not been dropped yet.
    in_flight: AtomicUsize,
    /// Whether any request has started on this connection.
    served: AtomicBool,
    /// Milliseconds after `epoch` of the last request start, response frame or request end.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When the connection should be asked to close (or, if `closing`, be dropped); `None` while
    /// a request is in flight.
    fn deadline(&self, closing: Option<Instant>, options: &ServeOptions) -> Option<Instant> {
        // Acquire pairs with the Release decrement in `InFlight::drop`, which follows its `touch`.
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(match closing {
            Some(since) => since.max(last) + CLOSE_GRACE,
            None if !self.served.load(Ordering::Relaxed) => last + options.header_timeout,
            None => last + options.idle_timeout,
        })
    }
}

/// One request in flight; dropped with the response body (or with the handler future if the
/// connection goes away first).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.served.store(true, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// The router, counting requests in flight for the idle watchdog.
#[derive(Clone)]
struct Tracked {
    router: Router,
    activity: Arc<Activity>,
}

impl Service<axum::http::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<axum::http::Request<Incoming>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: axum::http::Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::begin(&self.activity);
        let response = self.router.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    in_flight.0.touch();
                    frame
                }))
            }))
        })
    }
}
