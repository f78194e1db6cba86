//! The HTTP accept loop: hyper-util's HTTP/1 + HTTP/2 server with the time limits `axum::serve`
//! lacks (SPEC §10 "Slow and idle clients": headers must arrive within 10 s and idle keep-alive
//! connections are closed after 60 s), and graceful shutdown ("SIGTERM/SIGINT: stop accepting,
//! finish in-flight requests, exit 0").
//!
//! Both limits are enforced by a watchdog per connection, not by hyper:
//!
//! - **Why not hyper's `header_read_timeout`**: hyper 1.x starts that timer as soon as it *waits*
//!   for a request head, which on a kept-alive connection is right after the previous response
//!   (`proto/h1/conn.rs`: `State::idle` sets `notify_read`, so `poll_read_head` arms the timer
//!   before any byte of the next request has arrived). With it, an idle HTTP/1 keep-alive
//!   connection was closed after the header timeout (10 s), not the idle timeout (60 s), and a
//!   client sending its next request 30 s later found the connection closed. So it is disabled
//!   (`header_read_timeout(None)`; hyper's default is 30 s once a timer is set), and HTTP/1 has no
//!   timer in hyper at all.
//! - **What the watchdog sees**: the connection counts its requests in flight, from the moment
//!   hyper has parsed a request head and calls the service (synchronously, in the same poll that
//!   parsed it) until the response body is dropped, and remembers when the last one ended. The
//!   socket is wrapped ([`WatchedIo`]) so that every read that returns bytes while no request is
//!   in flight records the arrival of the *first byte of the next request* ("pending since");
//!   the next request start clears it. A slow request body therefore never counts as slow
//!   headers: once the head is parsed, a request is in flight.
//! - **HTTP/1 rules**, checked whenever no request is in flight:
//!   - a new connection whose first request has not started within `header_timeout` of the
//!     accept is closed (whether it sent nothing or half a head);
//!   - after a request, a connection with bytes of a new request pending for `header_timeout`
//!     (counted from their first byte) is closed: slowloris on a kept-alive connection;
//!   - after a request, a connection with no bytes received since the last response finished is
//!     idle and is closed `idle_timeout` after that response; a request whose first byte arrives
//!     before then gets its full `header_timeout`.
//! - **Pipelining**: bytes read while a request is in flight belong to the next request only once
//!   the request body is complete (the request body is watched for its end; a request without a
//!   body is complete at once). For such bytes the header clock starts when the request in
//!   flight ends, since hyper cannot parse the next head before that; a complete pipelined head
//!   is served right away. Bytes that hyper already buffered together with the previous request
//!   (the same read as the previous head or the end of its body), or that arrive while the
//!   handler has not read the body to its end, cannot be told apart from that request: if such
//!   a partial head is followed by nothing, the idle timeout applies, so the connection is held
//!   no longer than an idle one (any further byte starts the header clock). When in doubt, the
//!   connection gets the idle timeout, never the shorter one.
//! - **HTTP/2** (recognised by its connection preface, as hyper-util does): frames such as PINGs,
//!   SETTINGS and WINDOW_UPDATEs arrive at any time, so received bytes are ignored; a connection
//!   with no stream open is closed `idle_timeout` after the last stream ended, or
//!   `header_timeout` after the accept if none ever started. The server also PINGs every
//!   `header_timeout` and closes the connection if a PING is not acknowledged within
//!   `header_timeout`, so dead peers are noticed even while a stream is open.
//! - **Protocol sniffing**: hyper-util's `auto` reads up to 24 bytes before choosing HTTP/1 or
//!   HTTP/2, with no time limit of its own; the new-connection rule above covers it.
//! - **Closing**: the watchdog asks the connection to close (`graceful_shutdown`; hyper closes an
//!   HTTP/1 connection between requests at once, even with a partial head buffered). One that
//!   was asked to close (idle, slow, or server shutdown) and has no request in flight is dropped
//!   if it has not finished closing within [`CLOSE_GRACE`], e.g. an HTTP/2 peer that never
//!   acknowledges the GOAWAY's PING, or an HTTP/1 client halfway through its first request head.
//!   Requests in flight always run to completion (the router's own request timeout bounds them,
//!   including slow request bodies).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tower::ServiceExt;

/// A client must send a complete request head within this time (SPEC §10).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in flight for this long is closed (SPEC §10).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection that was asked to close, and has no request in flight, may take to
/// finish closing before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Pause after an accept error such as EMFILE before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The HTTP/2 connection preface, as hyper-util's protocol sniffing compares it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Time limits for client connections; [`Default`] is [`HEADER_TIMEOUT`] and [`IDLE_TIMEOUT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Time for a complete request head (HTTP/1), counted from its first byte; on a new
    /// connection, time from the accept until the first request head is complete (HTTP/1) or
    /// the first stream starts (HTTP/2). Also the HTTP/2 PING interval and PING acknowledgement
    /// timeout.
    pub header_timeout: Duration,
    /// A connection that received nothing since its last request ended (HTTP/1), or has no stream
    /// open (HTTP/2), is closed after this long.
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
    // No HTTP/1 header timer in hyper (see the module docs): the watchdog enforces both limits.
    // `None` also keeps hyper's 30 s default off, and needs no timer.
    builder.http1().header_read_timeout(None);
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

/// Drives one connection: hyper, the watchdog, and the server's shutdown signal.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    builder: Arc<Builder<TokioExecutor>>,
    options: ServeOptions,
    mut close: watch::Receiver<()>,
) {
    let activity = Arc::new(Activity::new());
    let io = WatchedIo { stream, activity: activity.clone(), protocol: Protocol::Sniffing(0) };
    let service = Tracked { router, activity: activity.clone() };
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
    // When the connection was asked to close (idle, slow, or server shutdown).
    let mut closing: Option<Instant> = None;
    loop {
        // Requests starting or ending, and the first byte of a request arriving, only ever move
        // the deadline to at least `now + period`, so looking again after `period` at the latest
        // never oversleeps (and covers requests in flight, which have no deadline).
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
                        tracing::debug!("closing an idle or slow connection");
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `pending_ms` when no byte of a next request has arrived.
const NOT_PENDING: u64 = u64::MAX;

/// What the watchdog knows about one connection.
///
/// Everything but `in_flight` and `last_ms` is only written for HTTP/1, where hyper reads the
/// socket, calls the service and drops response bodies all within the connection's own task, and
/// serves one request at a time.
struct Activity {
    epoch: Instant,
    /// Requests whose response body has not been dropped yet.
    in_flight: AtomicUsize,
    /// Whether any request has started on this connection.
    served: AtomicBool,
    /// Milliseconds after `epoch` of the last request start, response frame or request end.
    last_ms: AtomicU64,
    /// Milliseconds after `epoch` when the first byte of a request that has not started yet
    /// arrived, or [`NOT_PENDING`].
    pending_ms: AtomicU64,
    /// Requests started so far; tells a request body whether its request is still the current one.
    requests: AtomicU64,
    /// Whether the current request's body may still be arriving (its end not seen yet).
    body_open: AtomicBool,
    /// Whether bytes arrived after the current request's body was complete: a pipelined request.
    pipelined: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last_ms: AtomicU64::new(0),
            pending_ms: AtomicU64::new(NOT_PENDING),
            requests: AtomicU64::new(0),
            body_open: AtomicBool::new(false),
            pipelined: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NOT_PENDING - 1)
    }

    fn touch(&self) {
        self.last_ms.fetch_max(self.now_ms(), Ordering::Relaxed);
    }

    /// HTTP/1 bytes were read from the socket.
    fn received(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            // Only the first byte starts the clock.
            let _ = self.pending_ms.compare_exchange(NOT_PENDING, self.now_ms(), Ordering::Relaxed, Ordering::Relaxed);
        } else if !self.body_open.load(Ordering::Relaxed) {
            self.pipelined.store(true, Ordering::Relaxed);
        }
    }

    /// When the connection should be asked to close (or, if `closing`, be dropped); `None` while
    /// a request is in flight.
    fn deadline(&self, closing: Option<Instant>, options: &ServeOptions) -> Option<Instant> {
        // Acquire pairs with the Release decrement in `InFlight::drop`, which follows its `touch`
        // and its `pending_ms` store.
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let at = |ms: u64| self.epoch + Duration::from_millis(ms);
        let last = at(self.last_ms.load(Ordering::Relaxed));
        Some(match closing {
            Some(since) => since.max(last) + CLOSE_GRACE,
            None if !self.served.load(Ordering::Relaxed) => self.epoch + options.header_timeout,
            None => match self.pending_ms.load(Ordering::Relaxed) {
                NOT_PENDING => last + options.idle_timeout,
                first_byte => at(first_byte) + options.header_timeout,
            },
        })
    }
}

/// One request in flight; dropped with the response body (or with the handler future if the
/// connection goes away first).
struct InFlight(Arc<Activity>);

impl InFlight {
    /// A request head was parsed; `body_complete` if the request has no body. Returns the
    /// request's number for its [`RequestBody`].
    fn begin(activity: &Arc<Activity>, body_complete: bool) -> (Self, u64) {
        let number = activity.requests.fetch_add(1, Ordering::Relaxed) + 1;
        activity.pending_ms.store(NOT_PENDING, Ordering::Relaxed);
        activity.pipelined.store(false, Ordering::Relaxed);
        activity.body_open.store(!body_complete, Ordering::Relaxed);
        activity.served.store(true, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        (InFlight(activity.clone()), number)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.touch();
        // Bytes of the next request arrived while this one was in flight: its header clock
        // starts now, when hyper can first parse it.
        if activity.pipelined.swap(false, Ordering::Relaxed) {
            activity.pending_ms.store(activity.now_ms(), Ordering::Relaxed);
        }
        activity.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// The router, counting requests in flight for the watchdog. A hyper service (not a tower one
/// behind `TowerToHyperService`, whose `oneshot` would call the router only when first polled) so
/// that a request counts as in flight the moment hyper has parsed its head.
#[derive(Clone)]
struct Tracked {
    router: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        crate::memory::request_started();
        let (in_flight, number) = InFlight::begin(&self.activity, request.body().is_end_stream());
        let activity = self.activity.clone();
        let request = request.map(|inner| RequestBody { inner, activity, number, open: true });
        let response = self.router.clone().oneshot(request);
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

/// A request body that tells the watchdog when it is complete, so that later bytes are known to
/// belong to the next (pipelined) request.
struct RequestBody {
    inner: Incoming,
    activity: Arc<Activity>,
    /// The request's number (`Activity::requests`).
    number: u64,
    /// Whether the end has not been reported yet.
    open: bool,
}

impl HttpBody for RequestBody {
    type Data = <Incoming as HttpBody>::Data;
    type Error = <Incoming as HttpBody>::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if this.open && (frame.is_none() || this.inner.is_end_stream()) {
            this.open = false;
            if this.activity.requests.load(Ordering::Relaxed) == this.number {
                this.activity.body_open.store(false, Ordering::Relaxed);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What [`WatchedIo`] knows of the connection's protocol.
#[derive(Clone, Copy)]
enum Protocol {
    /// This many bytes received so far, all matching the HTTP/2 preface.
    Sniffing(usize),
    Http1,
    Http2,
}

/// The connection's socket, telling the watchdog when bytes arrive on an HTTP/1 connection.
struct WatchedIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    protocol: Protocol,
}

impl WatchedIo {
    fn received(&mut self, bytes: &[u8]) {
        if let Protocol::Sniffing(matched) = self.protocol {
            // The same decision as hyper-util's: HTTP/2 if and only if the first 24 bytes are the
            // preface.
            let n = bytes.len().min(H2_PREFACE.len() - matched);
            self.protocol = if bytes[..n] != H2_PREFACE[matched..matched + n] {
                Protocol::Http1
            } else if matched + n == H2_PREFACE.len() {
                Protocol::Http2
            } else {
                Protocol::Sniffing(matched + n)
            };
        }
        if !matches!(self.protocol, Protocol::Http2) {
            self.activity.received();
        }
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        let bytes = &buf.filled()[before..];
        if !bytes.is_empty() {
            this.received(bytes);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
