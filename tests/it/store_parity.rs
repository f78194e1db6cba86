//! Store parity: every store operation runs on SQLite and on PostgreSQL and gives the same
//! answers. PostgreSQL comes from `TWOFOLD_TEST_DATABASE_URL`, else the local server
//! (`postgres://postgres@127.0.0.1:5432/postgres`); when it cannot be reached the PostgreSQL half
//! is skipped with a message, unless `TWOFOLD_REQUIRE_POSTGRES=1` (CI), which makes it a failure.

use sea_orm::ConnectionTrait;
use twofold::store::{
    AssertionKey, AttemptLimits, Change, Checked, DeliveryOutcome, FailureOutcome, ImportRow, NewEvent, NewPending,
    Reseal, Sealed, StateFilter, Store, Verdict,
};

const NOW: i64 = 1_795_564_815_000;
const LIMITS: AttemptLimits = AttemptLimits { max_attempts: 3, lockout_ms: 60_000 };

fn pending(user: &str, secret: &[u8], now: i64) -> NewPending {
    NewPending {
        user_id: user.to_owned(),
        secret: secret.to_vec(),
        key_id: "k1".to_owned(),
        algorithm: "SHA1".to_owned(),
        digits: 6,
        period: 30,
        expires_at: now + 600_000,
        now,
    }
}

fn event(user: &str, kind: &'static str, at: i64) -> NewEvent {
    NewEvent { user_id: user.to_owned(), kind, at, correlation_id: Some(format!("cid-{at}")), ..NewEvent::default() }
}

/// An event queued for webhook delivery.
fn hook(user: &str, kind: &'static str, at: i64) -> NewEvent {
    NewEvent { webhook_id: Some(format!("msg_{user}_{at}")), ..event(user, kind, at) }
}

fn setup(user: &str, secret: &[u8], now: i64) -> (NewPending, NewEvent) {
    (pending(user, secret, now), event(user, "SETUP_STARTED", now))
}

type Check = Checked<&'static str, &'static str>;

async fn try_check(
    store: &Store,
    user: &str,
    now: i64,
    verdict: Verdict<&'static str, &'static str>,
) -> Result<Check, twofold::store::Error> {
    let who = user.to_owned();
    let record = move |c: &Check| match c {
        Checked::Accepted => vec![event(&who, "VERIFIED", now)],
        Checked::Failed(_, FailureOutcome::LockedOut { .. }) => {
            vec![event(&who, "VERIFY_FAILED", now), hook(&who, "LOCKED_OUT", now)]
        }
        Checked::Failed(..) => vec![event(&who, "VERIFY_FAILED", now)],
        Checked::Refused(_) => vec![],
    };
    store.check_code(user, now, LIMITS, move |_| verdict.clone(), record).await
}

async fn check(store: &Store, user: &str, now: i64, verdict: Verdict<&'static str, &'static str>) -> Check {
    try_check(store, user, now, verdict).await.unwrap()
}

/// Runs every operation and writes down what each answered.
async fn transcript(store: Store) -> Vec<String> {
    let mut t: Vec<String> = Vec::new();
    let mut log = |what: &str, value: String| t.push(format!("{what}: {value}"));
    store.ping().await.unwrap();
    log("credential of nobody", format!("{:?}", store.credential("nobody").await.unwrap()));
    log(
        "upsert",
        format!(
            "{:?}",
            {
                let (p, e) = setup("alice", b"s1", NOW);
                store.upsert_pending(p, e)
            }
            .await
            .unwrap()
        ),
    );
    log(
        "upsert again",
        format!(
            "{:?}",
            {
                let (p, e) = setup("alice", b"s2", NOW + 1);
                store.upsert_pending(p, e)
            }
            .await
            .unwrap()
        ),
    );
    log("pending", format!("{:?}", store.credential("alice").await.unwrap()));

    // Enable with recovery codes, then the lifecycle of checks.
    let hashes = vec![b"h1".to_vec(), b"h2".to_vec(), b"h3".to_vec()];
    let enable = Change::Enable { step: 100, code_hashes: hashes, key_id: "k1".into() };
    log("enable", format!("{:?}", check(&store, "alice", NOW + 2, Verdict::Accept(enable)).await));
    log(
        "upsert while enabled",
        format!(
            "{:?}",
            {
                let (p, e) = setup("alice", b"s3", NOW + 3);
                store.upsert_pending(p, e)
            }
            .await
            .unwrap()
        ),
    );
    log("codes", format!("{:?}", store.remaining_recovery_codes("alice").await.unwrap()));
    let step =
        Change::ConsumeStep { step: 101, reseal: Some(Reseal { secret: b"s2-new".to_vec(), key_id: "k2".into() }) };
    log("verify", format!("{:?}", check(&store, "alice", NOW + 4, Verdict::Accept(step)).await));
    log("after verify", format!("{:?}", store.credential("alice").await.unwrap()));
    // A unit that accepts a step that is not newer breaks its own assumption: it fails whole.
    let replay = try_check(&store, "alice", NOW + 5, Verdict::Accept(Change::ConsumeStep { step: 101, reseal: None }));
    let replay = match replay.await {
        Ok(c) => format!("{c:?}"),
        Err(twofold::store::Error::Conflict(_)) => "conflict".to_owned(),
        Err(e) => format!("other error: {e}"),
    };
    log("replayed step inside a unit", replay);
    for i in 0..2 {
        log("fail", format!("{:?}", check(&store, "alice", NOW + 6 + i, Verdict::Fail("wrong")).await));
    }
    log("refuse", format!("{:?}", check(&store, "alice", NOW + 8, Verdict::Refuse("no")).await));
    let recovery = |h: &[u8], disable| Verdict::RecoveryCode {
        hashes: vec![b"zz".to_vec(), h.to_vec()],
        disable,
        failure: "bad code",
    };
    log("recovery code", format!("{:?}", check(&store, "alice", NOW + 9, recovery(b"h2", false)).await));
    log("recovery code reused", format!("{:?}", check(&store, "alice", NOW + 10, recovery(b"h2", false)).await));
    log("codes left", format!("{:?}", store.remaining_recovery_codes("alice").await.unwrap()));
    for i in 0..3 {
        log("fail to lockout", format!("{:?}", check(&store, "alice", NOW + 11 + i, Verdict::Fail("wrong")).await));
    }
    log("locked", format!("{:?}", store.credential("alice").await.unwrap()));
    let regenerate = Change::Regenerate { step: 200, code_hashes: vec![b"n1".to_vec()], key_id: "k2".into() };
    log(
        "regenerate after the lockout",
        format!("{:?}", check(&store, "alice", NOW + 70_000, Verdict::Accept(regenerate)).await),
    );
    log("codes after regenerate", format!("{:?}", store.remaining_recovery_codes("alice").await.unwrap()));
    log(
        "users with codes not under k2",
        format!("{:?}", store.users_with_recovery_codes_not_under("k2").await.unwrap()),
    );
    log(
        "users with codes not under k1",
        format!("{:?}", store.users_with_recovery_codes_not_under("k1").await.unwrap()),
    );
    log(
        "disable with a recovery code",
        format!("{:?}", check(&store, "alice", NOW + 70_001, recovery(b"n1", true)).await),
    );
    log("after disable", format!("{:?}", store.credential("alice").await.unwrap()));
    log("codes after disable", format!("{:?}", store.remaining_recovery_codes("alice").await.unwrap()));

    // Disable with a step.
    {
        let (p, e) = setup("bob", b"b1", NOW);
        store.upsert_pending(p, e)
    }
    .await
    .unwrap();
    let enable = Change::Enable { step: 5, code_hashes: vec![], key_id: "k1".into() };
    check(&store, "bob", NOW, Verdict::Accept(enable)).await;
    log("disable", format!("{:?}", check(&store, "bob", NOW + 1, Verdict::Accept(Change::Disable)).await));
    log("bob", format!("{:?}", store.credential("bob").await.unwrap()));

    // Events, written in the unit of each change (a refusal writes none).
    let events = store.events("alice", 100).await.unwrap();
    log("events", format!("{:?}", events.iter().map(|e| (&e.kind, e.at, &e.correlation_id)).collect::<Vec<_>>()));

    // Admin: listing by state, counts, unlock, reset, import.
    for (user, secret) in [("u1", b"1"), ("u2", b"2"), ("u3", b"3"), ("u4", b"4")] {
        let (p, e) = setup(user, secret, NOW);
        store.upsert_pending(p, e).await.unwrap();
    }
    for user in ["u2", "u3"] {
        let enable = Change::Enable { step: 1, code_hashes: vec![b"c".to_vec()], key_id: "k1".into() };
        check(&store, user, NOW, Verdict::Accept(enable)).await;
    }
    for i in 0..3 {
        check(&store, "u3", NOW + 1 + i, Verdict::Fail("wrong")).await;
    }
    let at = NOW + 10;
    for filter in [StateFilter::All, StateFilter::Pending, StateFilter::Enabled, StateFilter::Locked] {
        let page = store.list_credentials("", 3, filter, at).await.unwrap();
        let users: Vec<_> = page.iter().map(|c| c.user_id.clone()).collect();
        let count = store.count_credentials(filter, at).await.unwrap();
        log(&format!("list {filter:?}"), format!("{users:?} of {count}"));
    }
    log("list after u2", format!("{:?}", store.list_credentials("u2", 10, StateFilter::All, at).await.unwrap().len()));
    log("unlock", format!("{:?}", store.admin_unlock("u3", at, hook("u3", "ADMIN_UNLOCKED", at)).await.unwrap()));
    log(
        "unlock nobody",
        format!("{:?}", store.admin_unlock("zz", at, hook("zz", "ADMIN_UNLOCKED", at)).await.unwrap()),
    );
    log("after unlock", format!("{:?}", store.credential("u3").await.unwrap()));
    log("reset", format!("{:?}", store.admin_reset("u2", hook("u2", "ADMIN_RESET", at)).await.unwrap()));
    log("reset again", format!("{:?}", store.admin_reset("u2", hook("u2", "ADMIN_RESET", at)).await.unwrap()));
    log("codes after reset", format!("{:?}", store.remaining_recovery_codes("u2").await.unwrap()));
    let row = |user: &str| ImportRow {
        user_id: user.to_owned(),
        secret: b"imported".to_vec(),
        key_id: "k1".into(),
        algorithm: "SHA256".into(),
        digits: 8,
        period: 60,
        event: hook(user, "IMPORTED", at),
    };
    log("import conflict", format!("{:?}", store.import(vec![row("i1"), row("u3"), row("i2")], false, at).await));
    log("i1 after refused import", format!("{:?}", store.credential("i1").await.unwrap()));
    log("import", format!("{:?}", store.import(vec![row("i1"), row("u3")], true, at).await));
    log("imported", format!("{:?}", store.credential("u3").await.unwrap()));
    log("codes after import", format!("{:?}", store.remaining_recovery_codes("u3").await.unwrap()));
    let admin_events = store.events("u3", 3).await.unwrap();
    log("u3 events", format!("{:?}", admin_events.iter().map(|e| (&e.kind, &e.actor)).collect::<Vec<_>>()));

    // The webhook outbox: claims, leases, outcomes, retries.
    log("pending deliveries", format!("{:?}", store.pending_deliveries().await.unwrap()));
    let claimed = store.claim_deliveries(at, at + 30_000, 100).await.unwrap();
    let ids =
        |d: &[twofold::store::Delivery]| d.iter().map(|d| (d.webhook_id.clone(), d.kind.clone())).collect::<Vec<_>>();
    log("claimed", format!("{:?}", ids(&claimed)));
    log("claimed while leased", format!("{:?}", ids(&store.claim_deliveries(at + 1, at + 30_000, 10).await.unwrap())));
    let mut outcomes = vec![(claimed[0].id, DeliveryOutcome::Delivered)];
    let retry = DeliveryOutcome::RetryAt { at: at + 1_000, error: "receiver answered 500".into() };
    outcomes.push((claimed[1].id, retry));
    let failed = DeliveryOutcome::Failed { error: "gone".into(), attempted: true };
    outcomes.push((claimed[2].id, failed));
    store.deliveries_attempted(outcomes, at + 2).await.unwrap();
    store.release_deliveries(claimed[3..].iter().map(|d| d.id).collect()).await.unwrap();
    let rest = store.claim_deliveries(at + 3, at + 30_000, 100).await.unwrap();
    log("claimed the released", format!("{:?}", ids(&rest)));
    store.release_deliveries(rest.iter().map(|d| d.id).collect()).await.unwrap();
    log("retry due", format!("{:?}", ids(&store.claim_deliveries(at + 1_000, at + 40_000, 1).await.unwrap())));
    log("lease taken over", format!("{:?}", ids(&store.claim_deliveries(at + 40_001, at + 70_000, 1).await.unwrap())));
    let undelivered = store.undelivered(100).await.unwrap();
    let summary: Vec<_> = undelivered.iter().map(|u| (&u.webhook_id, &u.delivery, u.attempts, &u.last_error)).collect();
    log("undelivered", format!("{summary:?}"));
    log("retry failed", format!("{:?}", store.retry_failed_deliveries(at + 5).await.unwrap()));
    log("pending after retry", format!("{:?}", store.pending_deliveries().await.unwrap()));

    // Assertion keys: the first insert wins, a rotation retires the current key.
    let key = |kid: &str, at: i64| AssertionKey {
        kid: kid.to_owned(),
        secret: format!("sealed-{kid}").into_bytes(),
        key_id: "k1".to_owned(),
        public_key: vec![7; 32],
        current: true,
        created_at: at,
        retired_at: None,
    };
    log("first assertion key", format!("{:?}", store.insert_assertion_key(key("a1", NOW), false, NOW).await.unwrap()));
    log("second first key", format!("{:?}", store.insert_assertion_key(key("a2", NOW), false, NOW).await.unwrap()));
    log("rotate", format!("{:?}", store.insert_assertion_key(key("a3", NOW + 5), true, NOW + 5).await.unwrap()));
    let kids = |keys: Vec<AssertionKey>| keys.into_iter().map(|k| (k.kid, k.current, k.retired_at)).collect::<Vec<_>>();
    log("published", format!("{:?}", kids(store.assertion_keys(NOW).await.unwrap())));
    log("published later", format!("{:?}", kids(store.assertion_keys(NOW + 5).await.unwrap())));

    // Reseal, key counts, prune.
    {
        let (p, e) = setup("dave", b"d1", NOW);
        store.upsert_pending(p, e)
    }
    .await
    .unwrap();
    {
        let (p, e) = setup("erin", b"e1", NOW);
        store.upsert_pending(p, e)
    }
    .await
    .unwrap();
    log("per key", format!("{:?}", store.secrets_per_key().await.unwrap()));
    let refused = store.reseal_secrets(|sealed| match sealed {
        Sealed::TotpSecret { user_id: "erin", .. } => Err("corrupt"),
        _ => Ok(Some(Reseal { secret: b"x".to_vec(), key_id: "k9".into() })),
    });
    log("reseal refused", format!("{:?}", refused.await.unwrap()));
    log("per key after refused reseal", format!("{:?}", store.secrets_per_key().await.unwrap()));
    let resealed = store.reseal_secrets(|sealed| {
        Ok::<_, ()>((sealed.key_id() == "k1").then(|| Reseal { secret: b"x".to_vec(), key_id: "k9".into() }))
    });
    log("reseal", format!("{:?}", resealed.await.unwrap()));
    log("per key after reseal", format!("{:?}", store.secrets_per_key().await.unwrap()));
    log("prune", format!("{:?}", store.prune(NOW + 700_000, NOW + 2, 1).await.unwrap()));
    log("prune again", format!("{:?}", store.prune(NOW + 700_000, NOW + 2, 10).await.unwrap()));
    log("events after prune", format!("{:?}", store.events("carol", 10).await.unwrap().len()));
    t
}

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("parity.db").display());
    (twofold::connect_and_migrate(&url, 2).await.unwrap(), dir)
}

/// A fresh PostgreSQL database, or `None` (with a message) when no server is reachable.
async fn postgres_store() -> Option<(Store, String, String)> {
    let admin_url = std::env::var("TWOFOLD_TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let required = std::env::var("TWOFOLD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let admin = match sea_orm::Database::connect(&admin_url).await {
        Ok(a) => a,
        Err(e) if !required => {
            eprintln!("SKIPPED: the PostgreSQL half of the store parity suite ({admin_url} unreachable: {e})");
            return None;
        }
        Err(e) => panic!("TWOFOLD_REQUIRE_POSTGRES=1 but {admin_url} is unreachable: {e}"),
    };
    let name = format!("twofold_parity_{}", uuid::Uuid::new_v4().simple());
    admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let store = twofold::connect_and_migrate(&format!("{base}/{name}"), 4).await.unwrap();
    Some((store, admin_url, name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_operation_answers_the_same_on_sqlite_and_postgresql() {
    let (sqlite, _dir) = sqlite_store().await;
    let on_sqlite = transcript(sqlite).await;
    // What the operations must answer, whatever the engine.
    let expect = |what: &str| on_sqlite.iter().find(|l| l.starts_with(&format!("{what}: "))).unwrap().clone();
    assert_eq!(expect("upsert while enabled"), "upsert while enabled: false");
    assert_eq!(expect("replayed step inside a unit"), "replayed step inside a unit: conflict");
    assert_eq!(expect("refuse"), "refuse: Refused(\"no\")");
    assert_eq!(
        expect("recovery code reused"),
        format!(
            "recovery code reused: {:?}",
            Check::Failed("bad code", FailureOutcome::Counted { failed_attempts: 1 })
        )
    );
    assert_eq!(expect("codes after disable"), "codes after disable: 0");
    assert_eq!(expect("reseal refused"), "reseal refused: Err(\"corrupt\")");
    assert_eq!(expect("reseal"), "reseal: Ok(8)", "six secrets and two assertion keys");
    assert_eq!(expect("list All"), "list All: [\"u1\", \"u2\", \"u3\"] of 4");
    assert_eq!(expect("list Locked"), "list Locked: [\"u3\"] of 1");
    assert_eq!(expect("unlock nobody"), "unlock nobody: false");
    assert_eq!(expect("reset again"), "reset again: false");
    assert_eq!(expect("import conflict"), "import conflict: Ok(Err(1))");
    assert_eq!(expect("i1 after refused import"), "i1 after refused import: None");
    assert_eq!(expect("import"), "import: Ok(Ok(2))");
    assert_eq!(expect("claimed while leased"), "claimed while leased: []");
    assert!(expect("claimed").contains("LOCKED_OUT") && expect("claimed").contains("ADMIN_RESET"));
    assert!(!expect("claimed").contains("VERIFIED"), "only events with a webhook id are queued");

    let Some((postgres, admin_url, name)) = postgres_store().await else { return };
    let on_postgres = transcript(postgres).await;
    let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.ok();
    for (s, p) in on_sqlite.iter().zip(&on_postgres) {
        assert_eq!(s, p, "SQLite and PostgreSQL differ");
    }
    assert_eq!(on_sqlite.len(), on_postgres.len());
}
