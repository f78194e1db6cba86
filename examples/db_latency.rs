//! Wall-clock latency of single statements through the store (sequential, one task): what one
//! request waits for on each database round trip. On SQLite a read runs in place and each write
//! goes through the writer thread alone (no batching, as at low load).
//! `cargo run --release --example db_latency [postgres://…]`.
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::temp_dir().join(format!("twofold-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = std::env::args().nth(1).unwrap_or_else(|| format!("sqlite://{}/l.db", dir.display()));
    let store = twofold::connect_and_migrate(&url, 4).await.unwrap();
    let n = 2000;
    let now = chrono::Utc::now().timestamp_millis();
    let pending = |user_id: String| twofold::store::NewPending {
        user_id,
        secret: vec![1; 48],
        key_id: "k".into(),
        algorithm: "SHA1".into(),
        digits: 6,
        period: 30,
        expires_at: now + 600_000,
        now,
    };
    for i in 0..n {
        store
            .upsert_pending(
                pending(format!("u{i}")),
                twofold::store::NewEvent { user_id: "x".into(), kind: "SETUP_STARTED", ..Default::default() },
            )
            .await
            .unwrap();
    }
    let t = Instant::now();
    for i in 0..n {
        store.credential(&format!("u{i}")).await.unwrap();
    }
    println!("read:   {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let t = Instant::now();
    for i in 0..n {
        let limits = twofold::store::AttemptLimits { max_attempts: 1_000_000, lockout_ms: 1000 };
        let counted = store
            .check_code(&format!("u{i}"), now, limits, |_| twofold::store::Verdict::<(), ()>::Fail(()), |_| Vec::new())
            .await
            .unwrap();
        assert!(matches!(counted, twofold::store::Checked::Failed((), _)));
    }
    println!("failed check (read, count): {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let t = Instant::now();
    for i in 0..n {
        store
            .upsert_pending(
                pending(format!("v{i}")),
                twofold::store::NewEvent { user_id: "x".into(), kind: "SETUP_STARTED", ..Default::default() },
            )
            .await
            .unwrap();
    }
    println!("upsert: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    std::fs::remove_dir_all(&dir).ok();
}
