//! Slow and idle clients cannot hold the server's connections (SPEC §10), and graceful shutdown
//! finishes requests in flight without waiting on idle or stalled connections. Raw TCP against the
//! real accept loop (`twofold::serve`) with short time limits.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use twofold::serve::{HEADER_TIMEOUT, IDLE_TIMEOUT, ServeOptions};

const SHORT: ServeOptions =
    ServeOptions { header_timeout: Duration::from_secs(1), idle_timeout: Duration::from_secs(2) };

/// A running server on 127.0.0.1; `stop` triggers graceful shutdown.
struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
    _app: Option<crate::common::TestApp>,
}

impl Server {
    /// The real application (`twofold::run_with`) with `options`.
    async fn app(options: ServeOptions) -> Self {
        let app = crate::common::TestApp::spawn().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(twofold::run_with(listener, app.state.clone(), options, async {
            let _ = stopped.await;
        }));
        Server { addr, stop: Some(stop), handle, _app: Some(app) }
    }

    /// Any router through `twofold::serve::serve`.
    async fn router(router: Router, options: ServeOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(twofold::serve::serve(listener, router, options, async {
            let _ = stopped.await;
        }));
        Server { addr, stop: Some(stop), handle, _app: None }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }

    fn shutdown(&mut self) {
        let _ = self.stop.take().expect("shutdown once").send(());
    }
}

/// Reads (and discards) until the server closes the connection; panics if it is still open
/// after `bound`. Returns how long that took.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open for more than {bound:?}");
    start.elapsed()
}

/// Reads one HTTP/1.1 response with a Content-Length body: (status, body). Reads no further than
/// its end, so pipelined responses can be read one after the other.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let read = async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = stream.read_u8().await.expect("read head (connection closed before a response?)");
            head.push(byte);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            })
            .expect("a Content-Length header");
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.expect("read body (connection closed in the middle?)");
        let status = head[9..12].parse().expect("status code");
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    timeout(Duration::from_secs(10), read).await.expect("a response within 10 s")
}

async fn http_get(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write request");
    read_response(stream).await
}

#[test]
fn default_limits_are_ten_and_sixty_seconds() {
    assert_eq!(HEADER_TIMEOUT, Duration::from_secs(10));
    assert_eq!(IDLE_TIMEOUT, Duration::from_secs(60));
    let options = ServeOptions::default();
    assert_eq!(options.header_timeout, HEADER_TIMEOUT);
    assert_eq!(options.idle_timeout, IDLE_TIMEOUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_closed_after_the_header_timeout() {
    let server = Server::app(SHORT).await;
    let mut stream = server.connect().await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc").await.unwrap();
    let took = closed_within(&mut stream, SHORT.header_timeout * 10).await;
    assert!(took >= SHORT.header_timeout / 2, "closed after {took:?}, before the header timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_a_byte_is_closed() {
    let server = Server::app(SHORT).await;
    let mut stream = server.connect().await;
    closed_within(&mut stream, SHORT.header_timeout * 10).await;
    // Half an HTTP/2 preface: hyper-util is still sniffing the protocol, with no timer of its own.
    let mut stream = server.connect().await;
    stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    closed_within(&mut stream, SHORT.header_timeout * 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Server::app(SHORT).await;
    let mut stream = server.connect().await;
    let (status, body) = http_get(&mut stream, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    closed_within(&mut stream, SHORT.idle_timeout * 10).await;
}

/// An idle keep-alive connection is kept for the idle timeout, not the (shorter) header timeout:
/// a client that sends its next request after a pause longer than the header timeout is served
/// (hyper's own header timer, armed as soon as it waits for the next head, used to close it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout() {
    let options = ServeOptions { header_timeout: Duration::from_secs(1), idle_timeout: Duration::from_secs(4) };
    let server = Server::app(options).await;
    let mut stream = server.connect().await;
    assert_eq!(http_get(&mut stream, "/healthz").await.0, 200);
    sleep(Duration::from_secs(2)).await;
    let (status, body) = http_get(&mut stream, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#), "the kept-alive connection is still served");
    // And it is still closed once idle for the idle timeout.
    closed_within(&mut stream, options.idle_timeout * 5).await;
}

/// Slowloris on a kept-alive connection: after one answered request, half a request head. The
/// header timeout counts from its first byte, so the connection is closed long before the idle
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_on_a_kept_alive_connection_are_closed_after_the_header_timeout() {
    let options = ServeOptions { header_timeout: Duration::from_secs(1), idle_timeout: Duration::from_secs(30) };
    let server = Server::app(options).await;
    let mut stream = server.connect().await;
    assert_eq!(http_get(&mut stream, "/healthz").await.0, 200);
    // Idle for a while first: the clock starts at the first byte, not at the previous response.
    sleep(Duration::from_millis(1500)).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc").await.unwrap();
    let took = closed_within(&mut stream, Duration::from_secs(10)).await;
    assert!(took >= options.header_timeout / 2, "closed after {took:?}, before the header timeout");
}

/// With a header timeout longer than the idle timeout, the idle timeout closes the kept-alive
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_applies_even_when_the_header_timeout_is_longer() {
    let options = ServeOptions { header_timeout: Duration::from_secs(30), idle_timeout: Duration::from_secs(1) };
    let server = Server::app(options).await;
    let mut stream = server.connect().await;
    assert_eq!(http_get(&mut stream, "/healthz").await.0, 200);
    let took = closed_within(&mut stream, Duration::from_secs(10)).await;
    assert!(took < options.header_timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_sending_requests_stays_connected() {
    // Requests every 0.5 s for longer than both limits: each one resets them.
    let options = ServeOptions { header_timeout: Duration::from_secs(2), idle_timeout: Duration::from_secs(3) };
    let server = Server::app(options).await;
    let mut stream = server.connect().await;
    let start = Instant::now();
    let mut answered = 0;
    while start.elapsed() < Duration::from_secs(4) {
        let (status, _) = http_get(&mut stream, "/healthz").await;
        assert_eq!(status, 200, "request {answered} on the kept-alive connection");
        answered += 1;
        sleep(Duration::from_millis(500)).await;
    }
    assert!(answered >= 6, "only {answered} requests answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_slow_clients_are_closed_and_the_server_keeps_answering() {
    let server = Server::app(SHORT).await;
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut stream = server.connect().await;
        stream.write_all(format!("GET /healthz?{i} HTTP/1.1\r\nHost: localhost\r\nX-Slow:").as_bytes()).await.unwrap();
        slow.push(stream);
    }
    // While they hang, others are served.
    let mut fresh = server.connect().await;
    assert_eq!(http_get(&mut fresh, "/healthz").await.0, 200);
    drop(fresh);

    let bound = SHORT.header_timeout * 10;
    let waits: Vec<_> = slow
        .into_iter()
        .map(|mut stream| tokio::spawn(async move { closed_within(&mut stream, bound).await }))
        .collect();
    for wait in waits {
        wait.await.expect("every slow connection is closed");
    }

    let mut fresh = server.connect().await;
    assert_eq!(http_get(&mut fresh, "/healthz").await.0, 200);
}

// HTTP/2 (cleartext, prior knowledge), spoken by hand: there is no header timeout in HTTP/2, so
// the idle watchdog closes the connection.

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Reads one frame: (type, flags, stream, payload), or `None` once the server closed.
async fn h2_read_frame(stream: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], id, payload))
}

/// Closed after the idle timeout, not after the header timeout: the client's PING and SETTINGS
/// acknowledgements are not the start of a slow request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_with_goaway() {
    let options = ServeOptions { header_timeout: Duration::from_secs(1), idle_timeout: Duration::from_secs(4) };
    let server = Server::app(options).await;
    let mut stream = server.connect().await;
    // GET /healthz: indexed :method GET and :scheme http, literal :path and :authority.
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(h2_frame(0x4, 0, 0, &[]));
    hello.extend(h2_frame(0x1, 0x5, 1, &block)); // END_STREAM | END_HEADERS
    stream.write_all(&hello).await.unwrap();

    let start = Instant::now();
    let (mut status_200, mut goaway) = (false, None);
    let talk = async {
        // Acknowledge SETTINGS and PINGs like a live client, so only idleness can end this.
        while let Some((kind, flags, id, payload)) = h2_read_frame(&mut stream).await {
            match kind {
                0x1 if id == 1 => status_200 = payload.first() == Some(&0x88),
                0x4 if flags & 0x1 == 0 => stream.write_all(&h2_frame(0x4, 0x1, 0, &[])).await.unwrap(),
                0x6 if flags & 0x1 == 0 => stream.write_all(&h2_frame(0x6, 0x1, 0, &payload)).await.unwrap(),
                0x7 => goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap())),
                _ => {}
            }
        }
    };
    timeout(options.idle_timeout * 5, talk).await.expect("the server closes an idle HTTP/2 connection");
    assert!(status_200, "GET /healthz over HTTP/2 was answered with 200");
    assert_eq!(goaway, Some(0), "GOAWAY with NO_ERROR");
    assert!(start.elapsed() >= options.idle_timeout / 2, "closed after {:?}, before the idle timeout", start.elapsed());
}

fn slow_router() -> Router {
    Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            get(|| async {
                sleep(Duration::from_millis(1500)).await;
                "slow done"
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
}

/// A slow request body after a complete head is not slow headers (the request is in flight once
/// its head is parsed), and the body's bytes do not make the connection look busy afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_not_slow_headers() {
    let options = ServeOptions { header_timeout: Duration::from_secs(1), idle_timeout: Duration::from_secs(30) };
    let server = Server::router(slow_router(), options).await;
    let mut stream = server.connect().await;
    stream.write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n").await.unwrap();
    for byte in b"hello" {
        sleep(Duration::from_millis(600)).await;
        stream.write_all(&[*byte]).await.unwrap();
    }
    assert_eq!(read_response(&mut stream).await, (200, "hello".into()));
    // Idle for longer than the header timeout: still open.
    sleep(Duration::from_secs(2)).await;
    assert_eq!(http_get(&mut stream, "/fast").await, (200, "fast".into()));
}

/// Pipelining: requests sent while the previous one is in flight are answered even when it takes
/// longer than the header timeout, and a pipelined half head is closed after the header timeout
/// (counted from the end of the request before it), long before the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_and_pipelined_half_heads_closed() {
    let options = ServeOptions { header_timeout: Duration::from_secs(1), idle_timeout: Duration::from_secs(30) };
    let server = Server::router(slow_router(), options).await;
    let mut stream = server.connect().await;
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    sleep(Duration::from_millis(300)).await;
    stream.write_all(b"GET /fast HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut stream).await, (200, "slow done".into()));
    assert_eq!(read_response(&mut stream).await, (200, "fast".into()));

    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    sleep(Duration::from_millis(300)).await;
    stream.write_all(b"GET /fast HTTP/1.1\r\nHost: loc").await.unwrap();
    assert_eq!(read_response(&mut stream).await, (200, "slow done".into()));
    closed_within(&mut stream, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_and_closes_idle_connections() {
    let options = ServeOptions { header_timeout: Duration::from_secs(30), idle_timeout: Duration::from_secs(60) };
    let mut server = Server::router(slow_router(), options).await;
    let mut idle = server.connect().await;
    assert_eq!(http_get(&mut idle, "/fast").await, (200, "fast".into()));

    let mut busy = server.connect().await;
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    server.shutdown();

    // The idle connection is closed right away, long before its time limits.
    closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(!server.handle.is_finished(), "serve returned with a request in flight");
    // The request in flight is answered in full.
    assert_eq!(read_response(&mut busy).await, (200, "slow done".into()));
    closed_within(&mut busy, Duration::from_secs(5)).await;

    let result = timeout(Duration::from_secs(10), &mut server.handle).await.expect("serve returns after shutdown");
    result.expect("serve task").expect("serve result");
    assert!(start.elapsed() < Duration::from_secs(10));
    // No longer accepting.
    assert!(TcpStream::connect(server.addr).await.is_err(), "the listener is closed");
}

/// A client halfway through its request head (or one that never sent a byte) does not hold up
/// shutdown until its header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_slow_clients() {
    let options = ServeOptions { header_timeout: Duration::from_secs(30), idle_timeout: Duration::from_secs(60) };
    let mut server = Server::router(slow_router(), options).await;
    let mut half = server.connect().await;
    half.write_all(b"GET /fast HTTP/1.1\r\nHost: loc").await.unwrap();
    let mut silent = server.connect().await;
    let mut h2 = server.connect().await;
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(h2_frame(0x4, 0, 0, &[]));
    h2.write_all(&hello).await.unwrap();
    sleep(Duration::from_millis(300)).await;

    server.shutdown();
    let result = timeout(Duration::from_secs(10), &mut server.handle).await.expect("serve returns after shutdown");
    result.expect("serve task").expect("serve result");
    for stream in [&mut half, &mut silent, &mut h2] {
        closed_within(stream, Duration::from_secs(5)).await;
    }
}
