//! Housekeeping: expired pending setups and old audit events are deleted in bounded batches;
//! enabled credentials, live setups and recent events are kept.

use crate::common::*;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use twofold::clock::Clock;
use twofold::store::entities::{audit_event, credential};

#[tokio::test]
async fn prune_removes_expired_setups_and_old_events_only() {
    let app = TestApp::spawn().await;
    let setup = "mutation { setupTotp { ... on TotpSetup { secret } } }";
    // Three users start a setup; one enables it.
    for sub in ["p1", "p2", "p3"] {
        app.graphql(Some(&token(sub)), setup, json!({})).await;
    }
    let secret = app.graphql(Some(&token("kept")), setup, json!({})).await["data"]["setupTotp"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .graphql(
            Some(&token("kept")),
            "mutation($c: String!) { enableTotp(code: $c) { __typename } }",
            json!({ "c": app.code(&secret, 0) }),
        )
        .await;
    assert_eq!(res["data"]["enableTotp"]["__typename"], "TotpEnabled");
    // Eleven minutes later the pending setups have expired; a fresh one is live.
    app.clock.advance_secs(11 * 60);
    app.graphql(Some(&token("fresh")), setup, json!({})).await;
    let store = &app.store;
    let db = store.connection();
    let now = app.clock.now_ms();
    let before_fresh_events = now - 60_000;

    // Batches of 2: the backlog of 3 expired setups takes two runs.
    assert_eq!(store.prune(now, before_fresh_events, 2).await.unwrap(), (2, 2));
    assert_eq!(store.prune(now, before_fresh_events, 2).await.unwrap(), (1, 2));
    assert_eq!(store.prune(now, before_fresh_events, 2).await.unwrap(), (0, 1));
    assert_eq!(store.prune(now, before_fresh_events, 2).await.unwrap(), (0, 0));

    let left: Vec<String> = credential::Entity::find().all(db).await.unwrap().into_iter().map(|c| c.user_id).collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["fresh", "kept"]);
    assert_eq!(audit_event::Entity::find().count(db).await.unwrap(), 1, "only the fresh SETUP_STARTED is recent");
    // The enabled user still verifies.
    let res = app
        .graphql(
            Some(&token("kept")),
            "mutation($c: String!) { verifyTotp(code: $c) { __typename } }",
            json!({ "c": app.code(&secret, 0) }),
        )
        .await;
    assert_eq!(res["data"]["verifyTotp"]["__typename"], "TotpVerified");
}

/// An audit event reaches the database on its own: nothing flushes and no other write comes
/// along (on SQLite the writer only picks buffered events up with a batch, so the audit log
/// must ask for one).
#[tokio::test]
async fn audit_events_are_written_without_a_flush() {
    let app = TestApp::spawn().await;
    let res = app.graphql(Some(&token("lone")), "mutation { setupTotp { __typename } }", json!({})).await;
    assert_eq!(res["data"]["setupTotp"]["__typename"], "TotpSetup");
    let db = app.store.connection();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events = audit_event::Entity::find().count(db).await.unwrap();
        if events == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the SETUP_STARTED event was never written");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
