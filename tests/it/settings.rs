//! Start-up refusals of the real binary (SPEC §10): settings outside their bounds, a key file that
//! others can write, and the accepted boundary values. Each run gets its own directory, a
//! `sqlite://<dir>/t.db` database and `127.0.0.1:0`, and none of the caller's `TWOFOLD_*` variables.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// 37 bytes: above the 32-byte minimum.
const SECRET: &str = "settings-test-secret-0123456789abcdef";
/// Base64 of 32 bytes.
const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// `twofold <args>` in `dir` with valid settings, overridden by `env` (a `None` value removes one).
fn twofold(dir: &Path, args: &[&str], env: &[(&str, Option<&str>)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twofold"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TWOFOLD_") {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(dir)
        .args(args)
        .env("TWOFOLD_DATABASE_URL", format!("sqlite://{}/t.db", dir.display()))
        .env("TWOFOLD_BIND", "127.0.0.1:0")
        .env("TWOFOLD_JWT_SECRET", SECRET)
        .env("TWOFOLD_ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("TWOFOLD_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd
}

/// A child process killed when dropped (also when an assertion fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs to completion, failing the test after 30 s (a `serve` that was not refused would run on).
fn run(mut cmd: Command) -> Output {
    let mut child = Running(cmd.spawn().expect("start twofold"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "twofold did not exit: a setting that should stop start-up was accepted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child.0.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    child.0.stderr.take().unwrap().read_to_end(&mut stderr).unwrap();
    Output { status: child.0.wait().unwrap(), stdout, stderr }
}

/// Asserts a refused start: a non-zero exit and one line of reason naming `needle`.
fn assert_refused(output: &Output, needle: &str, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{what}: expected a refusal, got {:?}; stderr: {stderr}", output.status);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "{what}: one line of reason naming {needle}; stderr: {stderr}");
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert_eq!(lines[0], last, "{what}: the reason is the last line; stderr: {stderr}");
    stderr
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: expected success, got {:?}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn out_of_bounds_settings_stop_serve_with_a_one_line_reason() {
    let long_issuer = "I".repeat(65);
    let cases: &[(&str, &str)] = &[
        ("TWOFOLD_LOCKOUT_SECONDS", "9223372036854775"),
        ("TWOFOLD_LOCKOUT_SECONDS", "0"),
        ("TWOFOLD_LOCKOUT_SECONDS", "86401"),
        ("TWOFOLD_MAX_FAILED_ATTEMPTS", "0"),
        ("TWOFOLD_MAX_FAILED_ATTEMPTS", "101"),
        ("TWOFOLD_PENDING_TTL", "59s"),
        ("TWOFOLD_PENDING_TTL", "25h"),
        ("TWOFOLD_JWT_LEEWAY_SECONDS", "301"),
        ("TWOFOLD_JWT_LEEWAY_SECONDS", "18446744073709551615"),
        ("TWOFOLD_TOTP_SKEW", "11"),
        ("TWOFOLD_JWT_SECRET", "short"),
        ("TWOFOLD_JWT_SECRET", "0123456789abcdef0123456789abcde"), // 31 bytes
        ("TWOFOLD_ISSUER", &long_issuer),
        ("TWOFOLD_ISSUER", ""),
    ];
    for (variable, value) in cases {
        let dir = tempfile::tempdir().unwrap();
        let output = run(twofold(dir.path(), &["serve"], &[(variable, Some(value))]));
        let what = format!("{variable}={value:.20}");
        let stderr = assert_refused(&output, variable, &what);
        if *variable == "TWOFOLD_JWT_SECRET" {
            assert!(!stderr.contains(value), "{what}: the secret is not echoed: {stderr}");
        }
        assert!(!dir.path().join("t.db").exists(), "{what}: refused before the database is touched");
    }
}

#[test]
fn boundary_values_are_accepted() {
    // `migrate` validates every setting but the JWT key, then exits.
    let lowest = [
        ("TWOFOLD_LOCKOUT_SECONDS", "1"),
        ("TWOFOLD_MAX_FAILED_ATTEMPTS", "1"),
        ("TWOFOLD_PENDING_TTL", "1m"),
        ("TWOFOLD_JWT_LEEWAY_SECONDS", "0"),
        ("TWOFOLD_TOTP_SKEW", "0"),
        ("TWOFOLD_ISSUER", "I"),
    ];
    let long_issuer = "é".repeat(64); // 64 characters, 128 bytes
    let highest = [
        ("TWOFOLD_LOCKOUT_SECONDS", "86400"),
        ("TWOFOLD_MAX_FAILED_ATTEMPTS", "100"),
        ("TWOFOLD_PENDING_TTL", "24h"),
        ("TWOFOLD_JWT_LEEWAY_SECONDS", "300"),
        ("TWOFOLD_TOTP_SKEW", "10"),
        ("TWOFOLD_ISSUER", long_issuer.as_str()),
    ];
    for values in [&lowest, &highest] {
        let dir = tempfile::tempdir().unwrap();
        let env: Vec<_> = values.iter().map(|(k, v)| (*k, Some(*v))).collect();
        assert_success(&run(twofold(dir.path(), &["migrate"], &env)), &format!("migrate with {values:?}"));
    }
    // `token` builds the verifier: a secret of exactly 32 bytes is enough.
    let dir = tempfile::tempdir().unwrap();
    let secret = "0123456789abcdef0123456789abcdef";
    let output = run(twofold(
        dir.path(),
        &["token", "--sub", "alice", "--ttl", "36500d"],
        &[("TWOFOLD_JWT_SECRET", Some(secret))],
    ));
    assert_success(&output, "token with a 32-byte secret");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim().split('.').count(), 3);
    let output = run(twofold(dir.path(), &["token", "--sub", "alice"], &[("TWOFOLD_JWT_SECRET", Some(&secret[1..]))]));
    assert_refused(&output, "TWOFOLD_JWT_SECRET", "token with a 31-byte secret");
}

/// A started `serve`: the child and the address it listens on.
fn serve(dir: &Path, env: &[(&str, Option<&str>)]) -> (Running, SocketAddr) {
    let mut child = Running(twofold(dir, &["serve"], env).spawn().expect("start twofold"));
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let Some(addr) = line.trim().strip_prefix("Twofold is listening on http://") else {
        let mut stderr = String::new();
        let _ = child.0.kill();
        child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        panic!("serve did not start: stdout {line:?}, stderr {stderr}");
    };
    let addr = addr.parse().unwrap();
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (child, addr)
}

/// `GET path` over HTTP/1.1; the status code.
fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad response {response:?}"))
}

/// An HS256 token signed with [`SECRET`] under exactly this header JSON.
fn token(header: &str) -> String {
    let b64 = |s: &str| data_encoding::BASE64URL_NOPAD.encode(s.as_bytes());
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let message = format!("{}.{}", b64(header), b64(&format!(r#"{{"sub":"alice","exp":{exp}}}"#)));
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
    format!("Bearer {message}.{signature}")
}

#[test]
fn the_highest_bounds_serve_and_a_crit_header_is_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve(
        dir.path(),
        &[
            ("TWOFOLD_LOCKOUT_SECONDS", Some("86400")),
            ("TWOFOLD_MAX_FAILED_ATTEMPTS", Some("100")),
            ("TWOFOLD_PENDING_TTL", Some("24h")),
            ("TWOFOLD_JWT_LEEWAY_SECONDS", Some("300")),
            ("TWOFOLD_TOTP_SKEW", Some("10")),
        ],
    );
    assert_eq!(get(addr, "/healthz", None), 200);
    let plain = token(r#"{"alg":"HS256","typ":"JWT"}"#);
    assert_eq!(get(addr, "/api/v1/me/mfa/status", Some(&plain)), 200);
    for header in [r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#, r#"{"alg":"HS256","typ":"JWT","crit":[]}"#] {
        assert_eq!(get(addr, "/api/v1/me/mfa/status", Some(&token(header))), 401, "{header}");
    }
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_write_stops_serve() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("twofold.key");
    std::fs::write(&key_file, format!("{ENCRYPTION_KEY}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let output = run(twofold(dir.path(), &["serve"], &[("TWOFOLD_ENCRYPTION_KEY", None)]));
    let stderr = assert_refused(&output, "twofold.key", "a 0666 key file");
    assert!(stderr.contains("chmod 600"), "says how to fix it: {stderr}");

    // Fixed as told, it starts.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_server, addr) = serve(dir.path(), &[("TWOFOLD_ENCRYPTION_KEY", None)]);
    assert_eq!(get(addr, "/healthz", None), 200);
}

#[cfg(unix)]
#[test]
fn a_fresh_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("twofold.key");
    let (_server, addr) = serve(dir.path(), &[("TWOFOLD_ENCRYPTION_KEY", None)]);
    assert_eq!(get(addr, "/healthz", None), 200);
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim().len(), 44, "a whole base64 key");
}
