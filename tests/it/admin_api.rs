//! The admin API (SPEC §8) through GraphQL: who may call it (`FORBIDDEN`, `UNAUTHENTICATED`),
//! reset and unlock with their audit events, and the paged listing of every user with a
//! credential, also while users come and go between pages.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::common::*;
use serde_json::{Value, json};

const ADMIN_STATUS: &str = "query($u: String!) { adminTwoFactor(userId: $u) { userId state lockedUntil enabled \
                            recoveryCodesRemaining events(first: 100) { kind at correlationId actor } } }";
const ADMIN_LIST: &str = "query($first: Int!, $after: String, $state: TwoFactorState) { adminTwoFactors(first: \
                          $first, after: $after, state: $state) { edges { cursor node { userId state } } pageInfo \
                          { hasNextPage endCursor } totalCount } }";
const ADMIN_RESET: &str = "mutation($u: String!, $reason: String) { adminResetTwoFactor(userId: $u, reason: $reason) \
                           { __typename ... on TwoFactorReset { resetAt status { userId state enabled } } ... on \
                           UserError { code message } } }";
const ADMIN_UNLOCK: &str = "mutation($u: String!) { adminUnlockTwoFactor(userId: $u) { __typename ... on \
                            TwoFactorUnlocked { status { userId state lockedUntil } } ... on UserError { code } } }";
/// Everything the user can read about themselves.
const MY_STATUS: &str = "{ twoFactor { id userId state enabled enabledAt pendingSetupExpiresAt lockedUntil \
                         recoveryCodesRemaining algorithm digits period events(first: 100) { kind at correlationId \
                         actor } } }";
const SETUP: &str = "mutation { setupTotp { __typename ... on TotpSetup { secret } } }";
const ENABLE: &str = "mutation($code: String!) { enableTotp(code: $code) { __typename ... on TotpEnabled { \
                      recoveryCodes } } }";
const VERIFY: &str = "mutation($code: String!) { verifyTotp(code: $code) { __typename ... on InvalidCode { \
                      attemptsRemaining } } }";
const RECOVER: &str = "mutation($code: String!) { useRecoveryCode(code: $code) { __typename } }";

/// A valid token for `sub` whose `scope` claim grants `twofold:admin` among other scopes.
fn admin_token(sub: &str) -> String {
    admin_token_with(sub, "scope", json!("openid twofold:admin profile"))
}

/// A valid token for `sub` with `claim` (`scope` or `scp`) set to `value`.
fn admin_token_with(sub: &str, claim: &str, value: Value) -> String {
    let mut claims = json!({ "sub": sub, "iat": unix_now(), "exp": unix_now() + 3600 });
    claims[claim] = value;
    sign(claims)
}

/// The `extensions.code` of the first top-level error (`None` without errors).
fn error_code(res: &Value) -> Option<&str> {
    res["errors"][0]["extensions"]["code"].as_str()
}

/// The event kinds and actors of `status`, newest first.
fn events(status: &Value) -> Vec<(String, Option<String>)> {
    status["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {status}"))
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["actor"].as_str().map(str::to_owned)))
        .collect()
}

fn event(kind: &str, actor: Option<&str>) -> (String, Option<String>) {
    (kind.to_owned(), actor.map(str::to_owned))
}

async fn my_status(app: &TestApp, sub: &str) -> Value {
    let res = app.graphql(Some(&token(sub)), MY_STATUS, json!({})).await;
    assert!(res.get("errors").is_none(), "{res}");
    res["data"]["twoFactor"].clone()
}

async fn admin_status(app: &TestApp, admin: &str, user: &str) -> Value {
    let res = app.graphql(Some(admin), ADMIN_STATUS, json!({ "u": user })).await;
    assert!(res.get("errors").is_none(), "{res}");
    res["data"]["adminTwoFactor"].clone()
}

/// A wrong 6-digit code for `secret`: none of the codes of the steps around now.
fn wrong_code(app: &TestApp, secret: &str, n: u32) -> String {
    let valid: Vec<String> = (-3..=3).map(|s| app.code(secret, s)).collect();
    (n..).map(|k| format!("{:06}", (k * 7919 + 13) % 1_000_000)).find(|c| !valid.contains(c)).unwrap()
}

/// Locks `sub` out with the default 5 wrong codes.
async fn lock(app: &TestApp, sub: &str, secret: &str) {
    for i in 0..5 {
        let res = app.graphql(Some(&token(sub)), VERIFY, json!({ "code": wrong_code(app, secret, i) })).await;
        assert_eq!(res["data"]["verifyTotp"]["__typename"], "InvalidCode", "{res}");
        assert_eq!(res["data"]["verifyTotp"]["attemptsRemaining"], 4 - i, "{res}");
    }
}

/// Starts a setup for `sub` (state PENDING); returns the pending secret.
async fn start_setup(app: &TestApp, sub: &str) -> String {
    let res = app.graphql(Some(&token(sub)), SETUP, json!({})).await;
    res["data"]["setupTotp"]["secret"].as_str().unwrap_or_else(|| panic!("{res}")).to_owned()
}

/// Every admin field, as (name, query, variables): both reads and both writes, aimed at `user`.
fn admin_fields(user: &str) -> [(&'static str, &'static str, Value); 4] {
    [
        ("adminTwoFactor", ADMIN_STATUS, json!({ "u": user })),
        ("adminTwoFactors", ADMIN_LIST, json!({ "first": 20 })),
        ("adminResetTwoFactor", ADMIN_RESET, json!({ "u": user, "reason": "not allowed" })),
        ("adminUnlockTwoFactor", ADMIN_UNLOCK, json!({ "u": user })),
    ]
}

/// A valid token without the `twofold:admin` scope (none at all, other scopes, look-alikes in
/// `scope` and in `scp`) gets a top-level `FORBIDDEN` error from each admin field, with no data;
/// without a valid token (none, or an admin-scoped one with a bad signature) the answer is
/// `UNAUTHENTICATED`. None of these calls changes anything: the locked victim stays locked with
/// the same status and events, and the correct code is still refused.
#[tokio::test]
async fn only_admins_may_call_the_admin_fields_and_refusals_change_nothing() {
    let app = TestApp::spawn().await;
    let (secret, _) = enable_user(&app, "vic", 0).await;
    lock(&app, "vic", &secret).await;
    let before = my_status(&app, "vic").await;
    assert_eq!(before["state"], "LOCKED");

    let not_admins = [
        ("no scope", token("mallory")),
        ("other scopes", admin_token_with("mallory", "scope", json!("openid profile twofold"))),
        ("look-alike scope", admin_token_with("mallory", "scope", json!("twofold:administrator twofold:admin2"))),
        ("scp array without it", admin_token_with("mallory", "scp", json!(["openid", "twofold:read"]))),
        ("scp string without it", admin_token_with("mallory", "scp", json!("openid twofold:adminx"))),
        // The victim's own token is no admin token either.
        ("the victim", token("vic")),
    ];
    for (what, t) in &not_admins {
        for (field, query, vars) in admin_fields("vic") {
            let res = app.graphql(Some(t), query, vars).await;
            assert_eq!(error_code(&res), Some("FORBIDDEN"), "{what}, {field}: {res}");
            assert_eq!(res["data"], Value::Null, "{what}, {field}: {res}");
        }
    }
    let forged = {
        let claims = json!({ "sub": "mallory", "scope": "twofold:admin", "iat": unix_now(), "exp": unix_now() + 60 });
        let key = jsonwebtoken::EncodingKey::from_secret(b"not-the-secret-0123456789abcdef0123456789");
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
    };
    for (field, query, vars) in admin_fields("vic") {
        let res = app.graphql(None, query, vars.clone()).await;
        assert_eq!(error_code(&res), Some("UNAUTHENTICATED"), "no token, {field}: {res}");
        let res = app.graphql(Some(&forged), query, vars).await;
        assert_eq!(error_code(&res), Some("UNAUTHENTICATED"), "forged admin token, {field}: {res}");
    }

    assert_eq!(my_status(&app, "vic").await, before, "a refused admin call changed the victim's status");
    let res = app.graphql(Some(&token("vic")), VERIFY, json!({ "code": app.code(&secret, 1) })).await;
    assert_eq!(res["data"]["verifyTotp"]["__typename"], "TooManyAttempts", "still locked: {res}");
}

/// The admin scope is found in each form SPEC §8 names (a space-separated `scope`, an `scp`
/// array, a space-separated `scp` string), and an admin token still works as a user token for
/// its own `sub`: `twoFactor` reads the admin's own status and `setupTotp` enrols the admin.
#[tokio::test]
async fn every_form_of_the_admin_scope_works_and_an_admin_is_still_a_user() {
    let app = TestApp::spawn().await;
    enable_user(&app, "ann", 0).await;
    let forms = [
        admin_token_with("root", "scope", json!("twofold:admin")),
        admin_token_with("root", "scope", json!("openid twofold:admin email")),
        admin_token_with("root", "scp", json!(["openid", "twofold:admin"])),
        admin_token_with("root", "scp", json!("openid twofold:admin")),
    ];
    for t in &forms {
        let status = admin_status(&app, t, "ann").await;
        assert_eq!((status["userId"].as_str(), status["state"].as_str()), (Some("ann"), Some("ENABLED")));
    }

    let root = admin_token("root");
    let mine = app.graphql(Some(&root), MY_STATUS, json!({})).await;
    assert_eq!(mine["data"]["twoFactor"]["userId"], "root", "{mine}");
    assert_eq!(mine["data"]["twoFactor"]["state"], "NONE", "{mine}");
    let setup = app.graphql(Some(&root), SETUP, json!({})).await;
    assert_eq!(setup["data"]["setupTotp"]["__typename"], "TotpSetup", "{setup}");
    let secret = setup["data"]["setupTotp"]["secret"].as_str().unwrap();
    let enable = app.graphql(Some(&root), ENABLE, json!({ "code": app.code(secret, 0) })).await;
    assert_eq!(enable["data"]["enableTotp"]["__typename"], "TotpEnabled", "{enable}");
    // The admin's enrolment is the admin's own, not anyone else's.
    assert_eq!(admin_status(&app, &root, "root").await["state"], "ENABLED");
    assert_eq!(admin_status(&app, &root, "ann").await["state"], "ENABLED");
}

/// `adminResetTwoFactor` on an enabled user answers `TwoFactorReset` (state NONE), removes the
/// secret and the recovery codes, and the user can enrol again at once. `ADMIN_RESET` with the
/// admin's `sub` as actor is in the user's own events and in `adminTwoFactor`'s (the same
/// list), while the reason appears nowhere in what the user can read. A pending user can be reset
/// too.
#[tokio::test]
async fn reset_lets_the_user_enrol_again_and_hides_the_reason_from_them() {
    let app = TestApp::spawn().await;
    let root = admin_token("root");
    let (old_secret, old_codes) = enable_user(&app, "ann", 0).await;
    let reason = "lost phone and recovery codes; ticket #4711 (reason-marker-91c2)";

    let res = app.graphql(Some(&root), ADMIN_RESET, json!({ "u": "ann", "reason": reason })).await;
    let reset = &res["data"]["adminResetTwoFactor"];
    assert_eq!(reset["__typename"], "TwoFactorReset", "{res}");
    assert_eq!(reset["resetAt"], "2026-11-25T00:00:15Z");
    assert_eq!(reset["status"], json!({ "userId": "ann", "state": "NONE", "enabled": false }));

    let mine = my_status(&app, "ann").await;
    assert_eq!((mine["state"].as_str(), mine["recoveryCodesRemaining"].as_u64()), (Some("NONE"), Some(0)));
    assert_eq!(events(&mine)[0], event("ADMIN_RESET", Some("root")));
    assert_eq!(mine["events"][0]["at"], "2026-11-25T00:00:15Z");
    assert!(mine["events"][0]["correlationId"].is_string(), "{mine}");
    // No other event has an actor: only admin actions do.
    assert!(events(&mine)[1..].iter().all(|(_, actor)| actor.is_none()), "{mine}");
    assert_eq!(admin_status(&app, &root, "ann").await["events"], mine["events"], "one list for both");
    assert!(!mine.to_string().contains("reason-marker"), "the user sees the reason: {mine}");
    assert!(!res.to_string().contains("reason-marker"), "the reset answer shows the reason: {res}");

    // The old secret and recovery codes are gone; a new enrolment works at once.
    let res = app.graphql(Some(&token("ann")), VERIFY, json!({ "code": app.code(&old_secret, 1) })).await;
    assert_eq!(res["data"]["verifyTotp"]["__typename"], "TotpNotEnabled", "{res}");
    let (new_secret, _) = enable_user(&app, "ann", 0).await;
    assert_ne!(new_secret, old_secret);
    let res = app.graphql(Some(&token("ann")), RECOVER, json!({ "code": old_codes[0] })).await;
    assert_eq!(res["data"]["useRecoveryCode"]["__typename"], "InvalidCode", "old recovery code: {res}");
    let res = app.graphql(Some(&token("ann")), VERIFY, json!({ "code": app.code(&new_secret, 1) })).await;
    assert_eq!(res["data"]["verifyTotp"]["__typename"], "TotpVerified", "{res}");

    // A pending setup is a credential too.
    start_setup(&app, "pat").await;
    let res = app.graphql(Some(&root), ADMIN_RESET, json!({ "u": "pat" })).await;
    assert_eq!(res["data"]["adminResetTwoFactor"]["__typename"], "TwoFactorReset", "{res}");
    let mine = my_status(&app, "pat").await;
    assert_eq!(mine["state"], "NONE");
    assert_eq!(events(&mine), [event("ADMIN_RESET", Some("root")), event("SETUP_STARTED", None)]);
}

/// Reset refusals change nothing: a user without a credential gets `TotpNotEnabled` (and no
/// event), a reason of 501 bytes (250 two-byte characters and one more byte) is a top-level
/// `BAD_USER_INPUT` error that leaves the credential and its events as they were, while exactly
/// 500 bytes are accepted.
#[tokio::test]
async fn reset_refusals_change_nothing() {
    let app = TestApp::spawn().await;
    let root = admin_token("root");

    let res = app.graphql(Some(&root), ADMIN_RESET, json!({ "u": "nobody", "reason": "why not" })).await;
    let answer = &res["data"]["adminResetTwoFactor"];
    assert_eq!(
        (answer["__typename"].as_str(), answer["code"].as_str()),
        (Some("TotpNotEnabled"), Some("TOTP_NOT_ENABLED"))
    );
    assert_eq!(my_status(&app, "nobody").await["events"], json!([]), "no event for a reset of nothing");

    let (secret, _) = enable_user(&app, "ann", 0).await;
    let before = my_status(&app, "ann").await;
    let too_long = "é".repeat(250) + "x";
    assert_eq!(too_long.len(), 501);
    let res = app.graphql(Some(&root), ADMIN_RESET, json!({ "u": "ann", "reason": too_long })).await;
    assert_eq!(error_code(&res), Some("BAD_USER_INPUT"), "{res}");
    assert_eq!(res["data"], Value::Null);
    assert_eq!(my_status(&app, "ann").await, before, "a refused reset changed something");
    let res = app.graphql(Some(&token("ann")), VERIFY, json!({ "code": app.code(&secret, 1) })).await;
    assert_eq!(res["data"]["verifyTotp"]["__typename"], "TotpVerified", "{res}");

    let res = app.graphql(Some(&root), ADMIN_RESET, json!({ "u": "ann", "reason": "é".repeat(250) })).await;
    assert_eq!(res["data"]["adminResetTwoFactor"]["__typename"], "TwoFactorReset", "500 bytes: {res}");
    // A bad user id is bad input too.
    let res = app.graphql(Some(&root), ADMIN_RESET, json!({ "u": "" })).await;
    assert_eq!(error_code(&res), Some("BAD_USER_INPUT"), "{res}");
}

/// A user locked by five wrong codes reads as LOCKED with `lockedUntil` (the lockout's end);
/// `adminUnlockTwoFactor` answers `TwoFactorUnlocked` with state ENABLED, clears the failure
/// counter (the next wrong code leaves 4 attempts) and the lockout (the right code verifies at
/// once), and writes `ADMIN_UNLOCKED` with the admin as actor, in both event lists.
#[tokio::test]
async fn unlock_clears_the_lockout_and_the_counter_at_once() {
    let app = TestApp::spawn().await;
    let root = admin_token("root");
    let (secret, _) = enable_user(&app, "lou", 0).await;
    lock(&app, "lou", &secret).await;
    let locked = admin_status(&app, &root, "lou").await;
    assert_eq!(locked["state"], "LOCKED");
    assert_eq!(locked["lockedUntil"], "2026-11-25T00:05:15Z", "five minutes after the last failure");
    assert_eq!(locked["enabled"], true);
    let res = app.graphql(Some(&token("lou")), VERIFY, json!({ "code": app.code(&secret, 1) })).await;
    assert_eq!(res["data"]["verifyTotp"]["__typename"], "TooManyAttempts", "{res}");

    let res = app.graphql(Some(&root), ADMIN_UNLOCK, json!({ "u": "lou" })).await;
    assert_eq!(
        res["data"]["adminUnlockTwoFactor"],
        json!({
            "__typename": "TwoFactorUnlocked",
            "status": { "userId": "lou", "state": "ENABLED", "lockedUntil": null }
        }),
        "{res}"
    );
    let res = app.graphql(Some(&token("lou")), VERIFY, json!({ "code": wrong_code(&app, &secret, 9) })).await;
    assert_eq!(res["data"]["verifyTotp"]["attemptsRemaining"], 4, "the counter starts over: {res}");
    let res = app.graphql(Some(&token("lou")), VERIFY, json!({ "code": app.code(&secret, 1) })).await;
    assert_eq!(res["data"]["verifyTotp"]["__typename"], "TotpVerified", "{res}");

    let mine = my_status(&app, "lou").await;
    assert_eq!(mine["state"], "ENABLED");
    assert_eq!(
        events(&mine)[..4],
        [
            event("VERIFIED", None),
            event("VERIFY_FAILED", None),
            event("ADMIN_UNLOCKED", Some("root")),
            event("LOCKED_OUT", None)
        ]
    );
    assert_eq!(admin_status(&app, &root, "lou").await["events"], mine["events"]);
}

/// Unlocking a user without a credential answers `TotpNotEnabled` and writes no event; unlocking
/// an enabled user who is not locked is harmless (`TwoFactorUnlocked`, state ENABLED).
#[tokio::test]
async fn unlock_without_a_credential_is_totp_not_enabled() {
    let app = TestApp::spawn().await;
    let root = admin_token("root");
    let res = app.graphql(Some(&root), ADMIN_UNLOCK, json!({ "u": "nobody" })).await;
    assert_eq!(
        res["data"]["adminUnlockTwoFactor"],
        json!({ "__typename": "TotpNotEnabled", "code": "TOTP_NOT_ENABLED" })
    );
    assert_eq!(my_status(&app, "nobody").await["events"], json!([]));

    enable_user(&app, "ann", 0).await;
    let res = app.graphql(Some(&root), ADMIN_UNLOCK, json!({ "u": "ann" })).await;
    assert_eq!(res["data"]["adminUnlockTwoFactor"]["status"]["state"], "ENABLED", "{res}");
}

/// `adminTwoFactor` of a user who never enrolled is no error: state NONE, not enabled, no lockout,
/// no recovery codes, no events.
#[tokio::test]
async fn a_user_never_enrolled_reads_as_state_none() {
    let app = TestApp::spawn().await;
    let status = admin_status(&app, &admin_token("root"), "never-seen").await;
    assert_eq!(
        status,
        json!({
            "userId": "never-seen", "state": "NONE", "lockedUntil": null, "enabled": false,
            "recoveryCodesRemaining": 0, "events": []
        })
    );
}

/// The user ids of `n` users `user-0000`… in a mix of states (by index modulo 5: 0–1 pending,
/// 2–3 enabled, 4 locked), created through GraphQL ten at a time.
async fn population(app: &Arc<TestApp>, n: usize) -> BTreeMap<String, &'static str> {
    let state_of = |i: usize| match i % 5 {
        0 | 1 => "PENDING",
        2 | 3 => "ENABLED",
        _ => "LOCKED",
    };
    let users: BTreeMap<String, &'static str> = (0..n).map(|i| (format!("user-{i:04}"), state_of(i))).collect();
    let all: Vec<(String, &'static str)> = users.iter().map(|(u, s)| (u.clone(), *s)).collect();
    for chunk in all.chunks(10) {
        let mut tasks = tokio::task::JoinSet::new();
        for (user, state) in chunk.iter().cloned() {
            let app = app.clone();
            tasks.spawn(async move {
                match state {
                    "PENDING" => {
                        start_setup(&app, &user).await;
                    }
                    "ENABLED" => {
                        enable_user(&app, &user, 0).await;
                    }
                    _ => {
                        let (secret, _) = enable_user(&app, &user, 0).await;
                        lock(&app, &user, &secret).await;
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
    users
}

/// One page of `adminTwoFactors` (no top-level errors).
async fn page(app: &TestApp, admin: &str, first: i64, after: Option<&str>, state: Option<&str>) -> Value {
    let res = app.graphql(Some(admin), ADMIN_LIST, json!({ "first": first, "after": after, "state": state })).await;
    assert!(res.get("errors").is_none(), "{res}");
    res["data"]["adminTwoFactors"].clone()
}

/// Every user of the list with `state` (all when `None`), walking pages of `first`, as
/// (user, state); checks each page's cursors and page info on the way.
async fn walk(app: &TestApp, admin: &str, first: i64, state: Option<&str>) -> (Vec<(String, String)>, i64) {
    let (mut users, mut after) = (Vec::new(), None::<String>);
    loop {
        let page = page(app, admin, first, after.as_deref(), state).await;
        let edges = page["edges"].as_array().unwrap();
        assert!(edges.len() as i64 <= first, "{page}");
        for edge in edges {
            let node = &edge["node"];
            users.push((node["userId"].as_str().unwrap().to_owned(), node["state"].as_str().unwrap().to_owned()));
        }
        assert_eq!(page["pageInfo"]["endCursor"], edges.last().map_or(Value::Null, |e| e["cursor"].clone()));
        if page["pageInfo"]["hasNextPage"] != true {
            return (users, page["totalCount"].as_i64().unwrap());
        }
        after = Some(page["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
    }
}

/// What the churn task of the paging test did.
#[derive(Default)]
struct Churn {
    /// Original users it reset (they did not exist throughout the walk).
    reset_originals: BTreeSet<String>,
    /// Users it added that still have a credential at the end.
    added_alive: BTreeSet<String>,
    /// Every user it added.
    added: BTreeSet<String>,
}

/// Walking 250 users (pending, enabled and locked) in pages of 20, following `endCursor`, while
/// a spawned task adds users between the existing ones (each batch right before and right after
/// an original id), resets some of its own new users and some original ones: every original user
/// that was not reset is listed exactly once, no user is listed twice, nothing unknown is listed,
/// and at the end `totalCount` and a full walk match exactly the users that hold a credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_skip_and_repeat_no_one_while_users_come_and_go() {
    let app = Arc::new(TestApp::spawn().await);
    let root = admin_token("root");
    let originals = population(&app, 250).await;

    // The churn waits for the walker after each batch (a channel of one), so batches land
    // between pages as well as during them.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let churn = tokio::spawn({
        let (app, root) = (app.clone(), root.clone());
        async move {
            let mut churn = Churn::default();
            let mut previous: Option<String> = None;
            for k in 0..20usize {
                let near = (k * 37 + 11) % 250;
                // `user-0048-late` sorts right after `user-0048`, `user-0048+` right before `user-0049`.
                let pending = format!("user-{near:04}-late");
                let enabled = format!("user-{:04}+", (near + 1) % 250);
                start_setup(&app, &pending).await;
                enable_user(&app, &enabled, 0).await;
                churn.added.extend([pending.clone(), enabled.clone()]);
                churn.added_alive.extend([pending.clone(), enabled]);
                if let Some(prev) = previous.replace(pending) {
                    let res = app.graphql(Some(&root), ADMIN_RESET, json!({ "u": prev })).await;
                    assert_eq!(res["data"]["adminResetTwoFactor"]["__typename"], "TwoFactorReset", "{res}");
                    churn.added_alive.remove(&prev);
                }
                if k % 2 == 1 {
                    let victim = format!("user-{:04}", (k * 53 + 3) % 250);
                    let res = app.graphql(Some(&root), ADMIN_RESET, json!({ "u": victim })).await;
                    assert_eq!(res["data"]["adminResetTwoFactor"]["__typename"], "TwoFactorReset", "{res}");
                    churn.reset_originals.insert(victim);
                }
                let _ = tx.send(()).await;
            }
            churn
        }
    });

    let (mut listed, mut after, mut pages) = (Vec::<String>::new(), None::<String>, 0);
    loop {
        let page = page(&app, &root, 20, after.as_deref(), None).await;
        pages += 1;
        let edges = page["edges"].as_array().unwrap();
        assert!(edges.len() <= 20, "{page}");
        listed.extend(edges.iter().map(|e| e["node"]["userId"].as_str().unwrap().to_owned()));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = Some(page["pageInfo"]["endCursor"].as_str().expect("endCursor on a full page").to_owned());
        rx.recv().await;
    }
    drop(rx);
    let churn = churn.await.unwrap();
    assert!(pages >= 13, "{pages} pages");

    let count = listed.len();
    let listed: BTreeSet<String> = listed.into_iter().collect();
    assert_eq!(listed.len(), count, "a user was listed twice");
    for user in originals.keys().filter(|u| !churn.reset_originals.contains(*u)) {
        assert!(listed.contains(user), "{user} existed throughout but was skipped");
    }
    for user in &listed {
        assert!(originals.contains_key(user) || churn.added.contains(user), "unknown user {user} listed");
    }

    let alive: BTreeSet<String> =
        originals.keys().filter(|u| !churn.reset_originals.contains(*u)).chain(&churn.added_alive).cloned().collect();
    assert_eq!(churn.reset_originals.len(), 10);
    assert_eq!(alive.len(), 250 - 10 + 20 + 1);
    let (now_listed, total) = walk(&app, &root, 100, None).await;
    assert_eq!(total, alive.len() as i64, "totalCount");
    assert_eq!(now_listed.into_iter().map(|(u, _)| u).collect::<BTreeSet<_>>(), alive);
}

/// Each state filter lists exactly the users in that state, with a `totalCount` of that set
/// (`NONE` matches nobody); without a filter all 250 users are listed; `first` is clamped to
/// 1–100; an `after` that is not a cursor of the list is a `BAD_USER_INPUT` error; when the
/// pending setups expire and the lockouts end, the pending users drop out and the locked ones
/// read as enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_filters_clamping_and_bad_cursors() {
    let app = Arc::new(TestApp::spawn().await);
    let root = admin_token("root");
    let users = population(&app, 250).await;

    let (all, total) = walk(&app, &root, 20, None).await;
    assert_eq!(total, 250);
    let expected: Vec<(String, String)> = users.iter().map(|(u, s)| (u.clone(), (*s).to_owned())).collect();
    assert_eq!(all, expected, "every user once, in user order, with their state");
    for state in ["PENDING", "ENABLED", "LOCKED"] {
        let want: Vec<(String, String)> = expected.iter().filter(|(_, s)| s == state).cloned().collect();
        let (got, total) = walk(&app, &root, 20, Some(state)).await;
        assert_eq!(got, want, "{state}");
        assert_eq!(total, want.len() as i64, "{state}");
    }
    assert_eq!(walk(&app, &root, 20, Some("NONE")).await, (vec![], 0));

    let clamped = page(&app, &root, 1000, None, None).await;
    assert_eq!(clamped["edges"].as_array().unwrap().len(), 100);
    assert_eq!(clamped["pageInfo"]["hasNextPage"], true);
    for first in [0, -5] {
        let one = page(&app, &root, first, None, None).await;
        assert_eq!(one["edges"].as_array().unwrap().len(), 1, "first: {first}");
        assert_eq!(one["edges"][0]["node"]["userId"], "user-0000");
    }
    let last = page(&app, &root, 20, clamped["pageInfo"]["endCursor"].as_str(), None).await;
    assert_eq!(last["edges"][0]["node"]["userId"], "user-0100", "continues after the clamped page");

    let b64 = |s: &str| data_encoding::BASE64URL_NOPAD.encode(s.as_bytes());
    let bad = ["", "garbage", "c1.!!!!", &format!("c2.{}", b64("user-0001")), &b64("user-0001"), "c1.__8"];
    for after in bad {
        let res = app.graphql(Some(&root), ADMIN_LIST, json!({ "first": 20, "after": after })).await;
        assert_eq!(error_code(&res), Some("BAD_USER_INPUT"), "after {after:?}: {res}");
    }

    app.clock.advance_secs(11 * 60);
    let (later, total) = walk(&app, &root, 100, None).await;
    let want: Vec<(String, String)> =
        expected.iter().filter(|(_, s)| s != "PENDING").map(|(u, _)| (u.clone(), "ENABLED".to_owned())).collect();
    assert_eq!(later, want);
    assert_eq!(total, 150);
    assert_eq!(walk(&app, &root, 100, Some("PENDING")).await, (vec![], 0));
    assert_eq!(walk(&app, &root, 100, Some("LOCKED")).await, (vec![], 0));
}

/// A setup that expired reads as state NONE, and the admin actions agree that it is no
/// credential: reset and unlock answer `TotpNotEnabled` and write no event. A setup that expired
/// while locked is still LOCKED, and that one can be unlocked and reset.
#[tokio::test]
async fn an_expired_setup_is_no_credential_for_reset_or_unlock() {
    let app = TestApp::spawn().await;
    let root = admin_token("root");
    start_setup(&app, "gone").await;
    let secret = start_setup(&app, "stuck").await;
    app.clock.advance_secs(9 * 60);
    for i in 0..5 {
        let res = app.graphql(Some(&token("stuck")), ENABLE, json!({ "code": wrong_code(&app, &secret, i) })).await;
        assert_eq!(res["data"]["enableTotp"]["__typename"], "InvalidCode", "{res}");
    }
    app.clock.advance_secs(2 * 60);
    let before = admin_status(&app, &root, "gone").await;
    assert_eq!(before["state"], "NONE");
    let res = app.graphql(Some(&root), ADMIN_UNLOCK, json!({ "u": "gone" })).await;
    assert_eq!(res["data"]["adminUnlockTwoFactor"]["__typename"], "TotpNotEnabled", "{res}");
    let res = app.graphql(Some(&root), ADMIN_RESET, json!({ "u": "gone" })).await;
    assert_eq!(res["data"]["adminResetTwoFactor"]["__typename"], "TotpNotEnabled", "{res}");
    assert_eq!(admin_status(&app, &root, "gone").await, before, "nothing written");

    // The setup expired (10 minutes after it started), its lockout (5 minutes from minute 9) not yet.
    assert_eq!(admin_status(&app, &root, "stuck").await["state"], "LOCKED");
    let res = app.graphql(Some(&root), ADMIN_UNLOCK, json!({ "u": "stuck" })).await;
    assert_eq!(res["data"]["adminUnlockTwoFactor"]["status"]["state"], "NONE", "{res}");
    start_setup(&app, "stuck").await;
    let res = app.graphql(Some(&root), ADMIN_RESET, json!({ "u": "stuck" })).await;
    assert_eq!(res["data"]["adminResetTwoFactor"]["__typename"], "TwoFactorReset", "{res}");
}
