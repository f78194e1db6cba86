//! The operator command line (SPEC §8) as a black box: the built `twofold` binary run on the
//! test's database, next to an in-process instance (same database, same encryption key) that
//! shows through GraphQL what the commands did. The instance's clock is set to the real time,
//! so it and the binary agree on who is pending or locked.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use crate::common::*;
use serde_json::{Value, json};
use twofold::clock::{Clock, ManualClock};
use twofold::crypto::Keyring;
use twofold::service::ServiceSettings;

const STATUS: &str = "{ twoFactor { userId state enabled enabledAt pendingSetupExpiresAt lockedUntil \
                      recoveryCodesRemaining algorithm digits period events(first: 100) { kind at correlationId \
                      actor } } }";
const VERIFY: &str = "mutation($code: String!) { verifyTotp(code: $code) { __typename } }";
const REGENERATE: &str = "mutation($code: String!) { regenerateRecoveryCodes(code: $code) { __typename ... on \
                          RecoveryCodes { recoveryCodes } } }";
const RECOVER: &str = "mutation($code: String!) { useRecoveryCode(code: $code) { __typename } }";
const SETUP: &str = "mutation { setupTotp { __typename ... on TotpSetup { secret } } }";

/// What a run of the binary gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The standard output as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `twofold <args>` on `app`'s database with the test's encryption key and JWT secret (none
/// of the caller's `TWOFOLD_*` variables), feeding it `stdin`.
async fn twofold(app: &TestApp, args: &[&str], stdin: Option<&[u8]>) -> Run {
    twofold_on(&app.db_url, args, stdin).await
}

async fn twofold_on(db_url: &str, args: &[&str], stdin: Option<&[u8]>) -> Run {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_twofold"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TWOFOLD_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args)
        .env("TWOFOLD_DATABASE_URL", db_url)
        .env("TWOFOLD_ENCRYPTION_KEY", data_encoding::BASE64.encode(&ENCRYPTION_KEY))
        .env("TWOFOLD_JWT_SECRET", JWT_SECRET)
        .env("TWOFOLD_LOG", "warn")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run the twofold binary");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).await.expect("write to the binary's stdin");
        drop(pipe);
    }
    let out = child.wait_with_output().await.expect("the twofold binary");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An instance on a fresh database whose manual clock starts at the real time (the binary uses
/// the system clock).
async fn app_at_real_time() -> TestApp {
    let (db_url, guard) = fresh_database().await;
    let clock = ManualClock::new(chrono::Utc::now().timestamp_millis());
    let keys = Keyring::new(&ENCRYPTION_KEY, &[]);
    TestApp::build(db_url, Arc::new(guard), clock, ServiceSettings::default(), keys).await
}

async fn my_status(app: &TestApp, sub: &str) -> Value {
    let res = app.graphql(Some(&token(sub)), STATUS, json!({})).await;
    assert!(res.get("errors").is_none(), "{res}");
    res["data"]["twoFactor"].clone()
}

/// `admin…` reads through GraphQL, with an admin token.
async fn admin_status(app: &TestApp, user: &str) -> Value {
    let admin = sign(json!({ "sub": "root", "scope": "twofold:admin", "iat": unix_now(), "exp": unix_now() + 600 }));
    let query = "query($u: String!) { adminTwoFactor(userId: $u) { userId state enabled enabledAt \
                 pendingSetupExpiresAt lockedUntil recoveryCodesRemaining algorithm digits period events(first: 20) \
                 { kind at correlationId actor } } }";
    let res = app.graphql(Some(&admin), query, json!({ "u": user })).await;
    assert!(res.get("errors").is_none(), "{res}");
    res["data"]["adminTwoFactor"].clone()
}

async fn verify(app: &TestApp, sub: &str, code: &str) -> String {
    let res = app.graphql(Some(&token(sub)), VERIFY, json!({ "code": code })).await;
    res["data"]["verifyTotp"]["__typename"].as_str().unwrap_or_else(|| panic!("{res}")).to_owned()
}

/// (kind, actor) of the newest event of `status`.
fn newest_event(status: &Value) -> (Option<&str>, Option<&str>) {
    (status["events"][0]["kind"].as_str(), status["events"][0]["actor"].as_str())
}

/// A wrong 6-digit code for `secret`: none of the codes of the steps around now.
fn wrong_code(app: &TestApp, secret: &str, n: u32) -> String {
    let valid: Vec<String> = (-3..=3).map(|s| app.code(secret, s)).collect();
    (n..).map(|k| format!("{:06}", (k * 7919 + 13) % 1_000_000)).find(|c| !valid.contains(c)).unwrap()
}

/// Locks `sub` out with the default 5 wrong codes.
async fn lock(app: &TestApp, sub: &str, secret: &str) {
    for i in 0..5 {
        assert_eq!(verify(app, sub, &wrong_code(app, secret, i)).await, "InvalidCode");
    }
}

async fn start_setup(app: &TestApp, sub: &str) -> String {
    let res = app.graphql(Some(&token(sub)), SETUP, json!({})).await;
    res["data"]["setupTotp"]["secret"].as_str().unwrap_or_else(|| panic!("{res}")).to_owned()
}

/// alice enabled, bob pending, carol locked; returns the secrets of alice and carol.
async fn three_users(app: &TestApp) -> (String, String) {
    let (alice, _) = enable_user(app, "alice", 0).await;
    start_setup(app, "bob").await;
    let (carol, _) = enable_user(app, "carol", 0).await;
    lock(app, "carol", &carol).await;
    (alice, carol)
}

/// The (userId, state) pairs of a `admin list --json` answer.
fn listed(list: &Value) -> Vec<(String, String)> {
    list["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users in {list}"))
        .iter()
        .map(|u| (u["userId"].as_str().unwrap().to_owned(), u["state"].as_str().unwrap().to_owned()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(u, s)| ((*u).to_owned(), (*s).to_owned())).collect()
}

/// The table row of `user` in a table (the line that starts with it).
fn row<'a>(table: &'a str, user: &str) -> &'a str {
    table.lines().find(|l| l.split_whitespace().next() == Some(user)).unwrap_or_else(|| panic!("no {user} in {table}"))
}

/// `admin show` prints a user's state as a table (exit 0) and, with `--json`, the same fields
/// as GraphQL's `adminTwoFactor` with the same values (camelCase: `userId`, `state`,
/// `lockedUntil`, …, and the events); a user without a credential exits 1 (state NONE).
/// `admin list` prints every user with a credential in user order with their state and a count,
/// filters by `--state`, stops at `--limit` (with `totalCount` the whole filtered set).
#[tokio::test]
async fn show_and_list_print_tables_and_the_graphql_fields_as_json() {
    let app = app_at_real_time().await;
    three_users(&app).await;

    let run = twofold(&app, &["admin", "show", "carol"], None).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.starts_with("USER "), "{run}");
    assert!(row(&run.stdout, "carol").contains("LOCKED"), "{run}");
    assert!(run.stdout.contains("LOCKED_OUT"), "the events are listed: {run}");
    for user in ["alice", "bob", "carol"] {
        let run = twofold(&app, &["admin", "show", user, "--json"], None).await;
        assert_eq!(run.code, Some(0), "{run}");
        let shown = run.json();
        let graphql = admin_status(&app, user).await;
        for field in [
            "userId",
            "state",
            "enabled",
            "enabledAt",
            "pendingSetupExpiresAt",
            "lockedUntil",
            "recoveryCodesRemaining",
            "algorithm",
            "digits",
            "period",
        ] {
            assert_eq!(shown[field], graphql[field], "{user}: {field} in {shown}");
        }
        let events: Vec<Value> = shown["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let (kind, at, actor) = (&e["kind"], &e["at"], &e["actor"]);
                json!({ "kind": kind, "at": at, "correlationId": e["correlationId"], "actor": actor })
            })
            .collect();
        assert_eq!(Value::from(events), graphql["events"], "{user}");
    }
    let run = twofold(&app, &["admin", "show", "alice", "--json"], None).await;
    let alice = run.json();
    assert_eq!((alice["state"].as_str(), alice["recoveryCodesRemaining"].as_u64()), (Some("ENABLED"), Some(10)));

    let run = twofold(&app, &["admin", "show", "nobody"], None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(row(&run.stdout, "nobody").contains("NONE"), "{run}");
    let run = twofold(&app, &["admin", "show", "nobody", "--json"], None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!((run.json()["userId"].as_str(), run.json()["state"].as_str()), (Some("nobody"), Some("NONE")));

    let run = twofold(&app, &["admin", "list"], None).await;
    assert_eq!(run.code, Some(0), "{run}");
    let table: Vec<&str> = run.stdout.lines().collect();
    assert!(table[0].starts_with("USER") && table[0].contains("STATE"), "{run}");
    for (user, state) in [("alice", "ENABLED"), ("bob", "PENDING"), ("carol", "LOCKED")] {
        assert!(row(&run.stdout, user).split_whitespace().nth(1) == Some(state), "{user}: {run}");
    }
    assert_eq!(table.last(), Some(&"3 of 3 user(s)"), "{run}");

    let list = |args: &'static [&'static str]| {
        let app = &app;
        async move {
            let run = twofold(app, args, None).await;
            assert_eq!(run.code, Some(0), "{args:?}: {run}");
            let list = run.json();
            (listed(&list), list["totalCount"].as_u64().unwrap())
        }
    };
    let all = pairs(&[("alice", "ENABLED"), ("bob", "PENDING"), ("carol", "LOCKED")]);
    assert_eq!(list(&["admin", "list", "--json"]).await, (all.clone(), 3));
    assert_eq!(list(&["admin", "list", "--state", "pending", "--json"]).await, (pairs(&[("bob", "PENDING")]), 1));
    assert_eq!(list(&["admin", "list", "--state", "enabled", "--json"]).await, (pairs(&[("alice", "ENABLED")]), 1));
    assert_eq!(list(&["admin", "list", "--state", "locked", "--json"]).await, (pairs(&[("carol", "LOCKED")]), 1));
    assert_eq!(list(&["admin", "list", "--limit", "2", "--json"]).await, (all[..2].to_vec(), 3));
    let run = twofold(&app, &["admin", "list", "--limit", "1"], None).await;
    assert_eq!(run.stdout.lines().last(), Some("1 of 3 user(s)"), "{run}");
}

/// `admin reset` removes the credential (exit 0) so the user can enrol again, and records
/// `ADMIN_RESET` with actor `cli`; the reason is shown to operators (`admin show`) but not to the
/// user; a second reset exits 1. `admin unlock` clears a lockout (exit 0, `--json` state
/// ENABLED) so the right code verifies at once, recording `ADMIN_UNLOCKED` by `cli`; a user without
/// a credential exits 1 (`--json`: `TOTP_NOT_ENABLED`).
#[tokio::test]
async fn reset_and_unlock_act_as_the_cli_and_exit_1_without_a_credential() {
    let app = app_at_real_time().await;
    let (_, carol) = three_users(&app).await;
    let reason = "phone lost, ticket 1234 (marker-cli-77)";

    let run = twofold(&app, &["admin", "reset", "alice", "--reason", reason], None).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("alice"), "{run}");
    let mine = my_status(&app, "alice").await;
    assert_eq!(mine["state"], "NONE");
    assert_eq!(newest_event(&mine), (Some("ADMIN_RESET"), Some("cli")));
    assert!(!mine.to_string().contains("marker-cli"), "the user sees the reason: {mine}");
    let shown = twofold(&app, &["admin", "show", "alice", "--json"], None).await;
    assert_eq!(shown.code, Some(1), "no credential now: {shown}");
    assert_eq!(shown.json()["events"][0]["reason"], reason, "operators see the reason");
    assert_eq!(shown.json()["events"][0]["actor"], "cli");
    assert_eq!(start_setup(&app, "alice").await.len(), 32, "alice can enrol again");

    let run = twofold(&app, &["admin", "reset", "nobody"], None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("nobody"), "{run}");
    let run = twofold(&app, &["admin", "reset", "nobody", "--json"], None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.json(), json!({ "error": "TOTP_NOT_ENABLED", "userId": "nobody" }));
    let run = twofold(&app, &["admin", "reset", "bob", "--json"], None).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!((run.json()["userId"].as_str(), run.json()["state"].as_str()), (Some("bob"), Some("NONE")));
    assert!(run.json()["resetAt"].is_string(), "{run}");

    let run = twofold(&app, &["admin", "unlock", "carol", "--json"], None).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!((run.json()["state"].as_str(), &run.json()["lockedUntil"]), (Some("ENABLED"), &Value::Null));
    assert_eq!(verify(&app, "carol", &app.code(&carol, 1)).await, "TotpVerified");
    let mine = my_status(&app, "carol").await;
    assert_eq!(mine["events"][1]["kind"], "ADMIN_UNLOCKED");
    assert_eq!(mine["events"][1]["actor"], "cli");
    let run = twofold(&app, &["admin", "unlock", "carol"], None).await;
    assert_eq!(run.code, Some(0), "unlocking an unlocked user is harmless: {run}");
    assert!(run.stdout.contains("ENABLED"), "{run}");

    let run = twofold(&app, &["admin", "unlock", "nobody"], None).await;
    assert_eq!(run.code, Some(1), "{run}");
    let run = twofold(&app, &["admin", "unlock", "nobody", "--json"], None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.json()["error"], "TOTP_NOT_ENABLED");
    assert_eq!(my_status(&app, "nobody").await["events"], json!([]), "no event for nothing");
}

/// Bad usage exits 2 and changes nothing: `--limit 0`, an unknown flag or subcommand, a state
/// that is not listed, a missing or empty USER, a reason over 500 bytes, a missing import file,
/// and a database that cannot be opened.
#[tokio::test]
async fn bad_usage_exits_2_and_changes_nothing() {
    let app = app_at_real_time().await;
    enable_user(&app, "alice", 0).await;
    let before = my_status(&app, "alice").await;
    let long_reason = "é".repeat(250) + "x";
    let cases: [&[&str]; 12] = [
        &["admin", "list", "--limit", "0"],
        &["admin", "list", "--limit", "-3"],
        &["admin", "list", "--frobnicate"],
        &["admin", "list", "--state", "none"],
        &["admin", "frobnicate"],
        &["admin", "show"],
        &["admin", "show", ""],
        &["admin", "reset", "alice", "--reason", &long_reason],
        &["admin", "reset", "alice", "--force"],
        &["admin", "unlock"],
        &["admin", "import"],
        &["admin", "import", "/nonexistent/users.csv"],
    ];
    for args in cases {
        let run = twofold(&app, args, None).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run}");
        assert!(!run.stderr.is_empty(), "{args:?}: says why");
    }
    let dir = tempfile::tempdir().unwrap();
    let unreachable = format!("sqlite://{}/missing/dir/t.db", dir.path().display());
    let run = twofold_on(&unreachable, &["admin", "show", "alice"], None).await;
    assert_eq!(run.code, Some(2), "{run}");
    assert_eq!(my_status(&app, "alice").await, before);
}

/// A random secret of `len` bytes and its Base32 text as an export might hold it: upper, lower
/// or mixed case by `i`, with the `=` padding where the length needs it on every other row.
fn secret_for(i: usize, len: usize) -> (Vec<u8>, String) {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).unwrap();
    let padded = data_encoding::BASE32.encode(&bytes);
    let text = if i.is_multiple_of(2) { padded } else { padded.trim_end_matches('=').to_owned() };
    let text = match i % 3 {
        0 => text,
        1 => text.to_lowercase(),
        _ => text.chars().enumerate().map(|(k, c)| if k % 2 == 0 { c.to_ascii_lowercase() } else { c }).collect(),
    };
    (bytes, text)
}

/// `n` users `<prefix>-0000`… with random secrets: mostly 20 bytes, some 16–19 and 32 bytes (a
/// 20-byte secret needs no padding; those lengths do); returns the CSV and (user, secret bytes).
fn import_file(prefix: &str, n: usize) -> (String, Vec<(String, Vec<u8>)>) {
    let lengths = [20, 20, 20, 16, 17, 18, 19, 32];
    let mut csv = String::from("user_id,secret\n");
    let mut users = Vec::new();
    for i in 0..n {
        let user = format!("{prefix}-{i:04}");
        let (bytes, text) = secret_for(i, lengths[i % lengths.len()]);
        csv += &format!("{user},{text}\n");
        users.push((user, bytes));
    }
    assert!(csv.contains("==") && csv.contains('a') && csv.contains('A'), "padding and both cases");
    (csv, users)
}

/// The current code of a SHA1/6/30 secret, by the test's own TOTP implementation.
fn code_of(app: &TestApp, secret: &[u8], steps: i64) -> String {
    totp(&data_encoding::BASE32_NOPAD.encode(secret), (app.now_secs() as i64 + steps * 30) as u64, 6, 30)
}

/// Checks that each user's code from their original secret verifies (all of them on SQLite, every
/// tenth on PostgreSQL), eight requests at a time.
async fn codes_verify(app: &Arc<TestApp>, users: &[(String, Vec<u8>)]) {
    let step = if is_postgres() { 10 } else { 1 };
    let sample: Vec<&(String, Vec<u8>)> = users.iter().step_by(step).collect();
    for chunk in sample.chunks(8) {
        let mut tasks = tokio::task::JoinSet::new();
        for (user, secret) in chunk {
            let (app, user, secret) = (app.clone(), user.clone(), secret.clone());
            tasks.spawn(async move {
                let outcome = verify(&app, &user, &code_of(&app, &secret, 0)).await;
                assert_eq!(outcome, "TotpVerified", "{user}");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
}

/// Importing 1,000 users from a file and 1,000 more from standard input (`-`), with random
/// secrets in upper, lower and mixed case, with and without padding: each run exits 0 and says
/// how many it imported; a code computed by the test's own TOTP implementation from each original
/// secret verifies (every user on SQLite, a tenth on PostgreSQL); an imported user is ENABLED with
/// no recovery codes and one `IMPORTED` event by `cli`, and regenerates recovery codes with a
/// code; `admin list` pages through all 2,000. Prints the import rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_secrets_keep_working() {
    let app = Arc::new(app_at_real_time().await);
    let dir = tempfile::tempdir().unwrap();
    let (csv, from_file) = import_file("file", 1000);
    let path = dir.path().join("users.csv");
    std::fs::write(&path, csv).unwrap();

    let started = Instant::now();
    let run = twofold(&app, &["admin", "import", path.to_str().unwrap()], None).await;
    let elapsed = started.elapsed();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(run.stdout.trim(), "Imported 1000 user(s).");
    let db = if is_postgres() { "PostgreSQL" } else { "SQLite" };
    eprintln!(
        "admin import ({db}): 1,000 rows from a file in {elapsed:.2?} (whole process) = {:.0} rows/s",
        1000.0 / elapsed.as_secs_f64()
    );

    let (csv, from_stdin) = import_file("stdin", 1000);
    let started = Instant::now();
    let run = twofold(&app, &["admin", "import", "-", "--json"], Some(csv.as_bytes())).await;
    let elapsed = started.elapsed();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(run.json(), json!({ "imported": 1000 }));
    eprintln!(
        "admin import ({db}): 1,000 rows from stdin in {elapsed:.2?} (whole process) = {:.0} rows/s",
        1000.0 / elapsed.as_secs_f64()
    );

    codes_verify(&app, &from_file).await;
    codes_verify(&app, &from_stdin).await;

    for (user, secret) in [&from_file[3], &from_stdin[998]] {
        let status = admin_status(&app, user).await;
        assert_eq!((status["state"].as_str(), status["recoveryCodesRemaining"].as_u64()), (Some("ENABLED"), Some(0)));
        let kinds: Vec<(&str, Option<&str>)> = status["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str()))
            .collect();
        // Newest first: the verification above, then the import.
        assert_eq!(kinds.last(), Some(&("IMPORTED", Some("cli"))), "{user}: {status}");
        assert_eq!(kinds.iter().filter(|(k, _)| *k == "IMPORTED").count(), 1);
        let res = app.graphql(Some(&token(user)), REGENERATE, json!({ "code": code_of(&app, secret, 1) })).await;
        assert_eq!(res["data"]["regenerateRecoveryCodes"]["__typename"], "RecoveryCodes", "{user}: {res}");
    }

    let run = twofold(&app, &["admin", "list", "--json"], None).await;
    let list = run.json();
    assert_eq!((listed(&list).len(), list["totalCount"].as_u64()), (100, Some(2000)), "100 by default");
    let run = twofold(&app, &["admin", "list", "--state", "enabled", "--limit", "2500", "--json"], None).await;
    let users: Vec<String> = listed(&run.json()).into_iter().map(|(u, _)| u).collect();
    let want: Vec<String> = from_file.iter().chain(&from_stdin).map(|(u, _)| u.clone()).collect();
    assert_eq!(users, want, "all 2,000, in user order, over several pages");
}

/// One bad row among 1,000 (line 500 holds a 10-byte secret) imports nothing: exit 1, and the
/// problem is named by line number and reason (also in `--json`'s `errors`); no user has a
/// credential afterwards. Other bad rows are each named by their line.
#[tokio::test]
async fn one_bad_row_imports_nothing() {
    let app = app_at_real_time().await;
    let dir = tempfile::tempdir().unwrap();
    let (csv, users) = import_file("bulk", 1000);
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    // Line 1 is the header, so line 500 is the 499th user.
    let short = data_encoding::BASE32_NOPAD.encode(&[7u8; 10]);
    lines[499] = format!("{},{short}", users[498].0);
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let run = twofold(&app, &["admin", "import", path.to_str().unwrap()], None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("line 500") && run.stderr.contains("10 bytes"), "{run}");
    assert!(!run.stderr.contains("line 499") && !run.stderr.contains("line 501"), "{run}");
    assert!(!run.stdout.contains("Imported"), "{run}");
    let run = twofold(&app, &["admin", "import", path.to_str().unwrap(), "--json"], None).await;
    assert_eq!(run.code, Some(1), "{run}");
    let answer = run.json();
    assert_eq!(answer["imported"], 0);
    assert_eq!(answer["errors"].as_array().map(Vec::len), Some(1), "{answer}");
    assert!(answer["errors"][0].as_str().unwrap().starts_with("line 500:"), "{answer}");

    let list = twofold(&app, &["admin", "list", "--json"], None).await.json();
    assert_eq!(list["totalCount"], 0, "nothing imported");
    assert_eq!(admin_status(&app, &users[0].0).await["state"], "NONE");

    // Several bad rows: each is named (not Base32, bad digits, a duplicate user, bad period).
    let csv = "user_id,secret,algorithm,digits,period\n\
               ok-1,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,,,\n\
               bad-2,not*base32*at*all*0189,,,\n\
               bad-3,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,SHA1,7,\n\
               ok-1,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,,,\n\
               bad-5,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,MD5,6,30\n\
               bad-6,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,SHA1,6,5\n";
    let run = twofold(&app, &["admin", "import", "-"], Some(csv.as_bytes())).await;
    assert_eq!(run.code, Some(1), "{run}");
    for line in 3..=7 {
        assert!(run.stderr.contains(&format!("line {line}:")), "line {line}: {run}");
    }
    assert!(!run.stderr.contains("line 2:"), "{run}");
    assert_eq!(twofold(&app, &["admin", "list", "--json"], None).await.json()["totalCount"], 0);
}

/// A row naming a user who already has a credential (enabled, or a pending setup) refuses the
/// whole import (exit 1, the user and line named, `--replace` suggested) and changes nothing:
/// the new users get nothing and the enrolled user keeps their secret and recovery codes. With
/// `--replace` the import succeeds: the replaced user's old secret and recovery codes stop
/// working, the imported secret works, and the event is `IMPORTED` by `cli`.
#[tokio::test]
async fn an_existing_credential_refuses_the_import_unless_replace() {
    let app = app_at_real_time().await;
    let (old_secret, recovery) = enable_user(&app, "alice", 0).await;
    start_setup(&app, "bob").await;
    let (new_alice, alice_text) = secret_for(1, 20);
    let (new_bob, bob_text) = secret_for(2, 20);
    let (new_one, one_text) = secret_for(3, 20);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, rows: &[(&str, &str)]| {
        let mut csv = String::from("user_id,secret\n");
        for (user, secret) in rows {
            csv += &format!("{user},{secret}\n");
        }
        let path = dir.path().join(name);
        std::fs::write(&path, csv).unwrap();
        path.to_str().unwrap().to_owned()
    };

    let with_alice = write("alice.csv", &[("new-1", &one_text), ("alice", &alice_text), ("new-2", &bob_text)]);
    let run = twofold(&app, &["admin", "import", &with_alice], None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("line 3") && run.stderr.contains("alice") && run.stderr.contains("--replace"), "{run}");
    let with_bob = write("bob.csv", &[("new-1", &one_text), ("bob", &bob_text)]);
    let run = twofold(&app, &["admin", "import", &with_bob, "--json"], None).await;
    assert_eq!(run.code, Some(1), "a pending setup is a credential too: {run}");
    assert_eq!(run.json()["imported"], 0);
    assert!(run.json()["errors"][0].as_str().unwrap().contains("bob"), "{run}");

    for user in ["new-1", "new-2"] {
        assert_eq!(admin_status(&app, user).await["state"], "NONE", "{user}");
    }
    let alice = my_status(&app, "alice").await;
    assert_eq!((alice["state"].as_str(), alice["recoveryCodesRemaining"].as_u64()), (Some("ENABLED"), Some(10)));
    assert_eq!(my_status(&app, "bob").await["state"], "PENDING");
    assert_eq!(verify(&app, "alice", &app.code(&old_secret, 1)).await, "TotpVerified", "alice keeps her secret");

    let everyone =
        write("all.csv", &[("new-1", &one_text), ("alice", &alice_text), ("bob", &bob_text), ("new-2", &one_text)]);
    let run = twofold(&app, &["admin", "import", &everyone, "--replace"], None).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(run.stdout.trim(), "Imported 4 user(s).");
    app.clock.advance_secs(30);
    assert_eq!(verify(&app, "alice", &app.code(&old_secret, 0)).await, "InvalidCode", "the old secret is gone");
    let res = app.graphql(Some(&token("alice")), RECOVER, json!({ "code": recovery[0] })).await;
    assert_eq!(res["data"]["useRecoveryCode"]["__typename"], "InvalidCode", "old recovery codes are gone: {res}");
    for (user, secret) in [("alice", &new_alice), ("bob", &new_bob), ("new-1", &new_one), ("new-2", &new_one)] {
        assert_eq!(verify(&app, user, &code_of(&app, secret, 0)).await, "TotpVerified", "{user}");
    }
    let alice = my_status(&app, "alice").await;
    assert_eq!(alice["recoveryCodesRemaining"], 0);
    let kinds: BTreeSet<(&str, Option<&str>)> = alice["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str()))
        .collect();
    assert!(kinds.contains(&("IMPORTED", Some("cli"))), "{alice}");
}

/// The optional columns are honoured per row: SHA256 with 8 digits and a 60 s period is reported
/// by `twoFactor` and a code computed with those parameters verifies (a SHA1/6/30 one does not);
/// SHA512 likewise; empty cells mean SHA1/6/30; the column names are case-insensitive.
#[tokio::test]
async fn import_honours_algorithm_digits_and_period() {
    let app = app_at_real_time().await;
    let (s256, t256) = secret_for(0, 20);
    let (s512, t512) = secret_for(1, 64);
    let (s1, t1) = secret_for(2, 20);
    let csv = format!(
        "User_Id,Secret,Algorithm,Digits,Period\nsha256,{t256},SHA256,8,60\nsha512,{t512},SHA512,6,15\nplain,{t1},,,\n"
    );
    let run = twofold(&app, &["admin", "import", "-"], Some(csv.as_bytes())).await;
    assert_eq!(run.code, Some(0), "{run}");

    let hmac = |algorithm: &'static str| {
        move |key: &[u8], msg: &[u8]| {
            use hmac::{Hmac, KeyInit, Mac};
            match algorithm {
                "SHA256" => {
                    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
                    mac.update(msg);
                    mac.finalize().into_bytes().to_vec()
                }
                _ => {
                    let mut mac = <Hmac<sha2::Sha512> as KeyInit>::new_from_slice(key).unwrap();
                    mac.update(msg);
                    mac.finalize().into_bytes().to_vec()
                }
            }
        }
    };
    let now = app.now_secs();
    for (user, secret, algorithm, digits, period) in
        [("sha256", &s256, "SHA256", 8u32, 60u64), ("sha512", &s512, "SHA512", 6, 15)]
    {
        let status = my_status(&app, user).await;
        assert_eq!(
            (status["algorithm"].as_str(), status["digits"].as_u64(), status["period"].as_u64()),
            (Some(algorithm), Some(u64::from(digits)), Some(period)),
            "{user}"
        );
        assert_eq!(verify(&app, user, &code_of(&app, secret, 0)).await, "InvalidCode", "{user}: a SHA1/6/30 code");
        let code = totp_raw(secret, now, digits, period, hmac(algorithm));
        assert_eq!(code.len(), digits as usize);
        assert_eq!(verify(&app, user, &code).await, "TotpVerified", "{user}");
    }
    let plain = my_status(&app, "plain").await;
    assert_eq!(
        (plain["algorithm"].as_str(), plain["digits"].as_u64(), plain["period"].as_u64()),
        (Some("SHA1"), Some(6), Some(30))
    );
    assert_eq!(verify(&app, "plain", &code_of(&app, &s1, 0)).await, "TotpVerified");
}

/// A setup that expired unlocked is no credential (state NONE), so an import without `--replace`
/// takes its place, and the imported secret verifies.
#[tokio::test]
async fn an_expired_setup_does_not_block_an_import() {
    let app = app_at_real_time().await;
    let now = app.clock.now_ms();
    app.clock.set_ms(now - 11 * 60 * 1000);
    start_setup(&app, "stale").await;
    app.clock.set_ms(now);
    assert_eq!(admin_status(&app, "stale").await["state"], "NONE");
    let (secret, text) = secret_for(7, 20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.csv");
    std::fs::write(&path, format!("user_id,secret\nstale,{text}\n")).unwrap();
    let run = twofold(&app, &["admin", "import", path.to_str().unwrap()], None).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(admin_status(&app, "stale").await["state"], "ENABLED");
    assert_eq!(verify(&app, "stale", &code_of(&app, &secret, 0)).await, "TotpVerified");
}
