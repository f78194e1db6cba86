//! Seeds a Twofold database with N users (default 1,000,000) who have two-factor **enabled** and
//! 10 recovery codes each, written the way Twofold writes them (AES-256-GCM secrets under the
//! configured key, HMAC'd recovery codes), for measuring cost at scale.
//!
//!   TWOFOLD_DATABASE_URL=sqlite://big.db cargo run --release --example seed -- 1000000
//!   TWOFOLD_DATABASE_URL=postgres://postgres@127.0.0.1/big TWOFOLD_ENCRYPTION_KEY=… cargo run --release --example seed -- 1000000
//!
//! User `seed{i}`'s secret is the first 20 bytes of SHA-256("twofold-seed:{i}"), so a load script
//! can compute valid codes for any seeded user without a file (see bench/README.md).
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use sea_orm::{ActiveValue::Set, EntityTrait};
use sha2::{Digest, Sha256};
use twofold::config::Cli;
use twofold::store::entities::{credential, recovery_code};

fn secret_of(i: usize) -> Vec<u8> {
    Sha256::digest(format!("twofold-seed:{i}").as_bytes())[..20].to_vec()
}

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let users: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    args.truncate(1);
    // Database URL and encryption key come from the same flags/variables as `twofold serve`.
    let settings = Cli::parse_from(args).settings;
    let keys = Arc::new(settings.keyring().unwrap_or_else(|e| panic!("{e}")));
    let store = twofold::connect_and_migrate(&settings.database_url, 4).await.expect("database");
    let db = store.connection();
    let now = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    let batch = 1000;
    for first in (0..users).step_by(batch) {
        let range = first..(first + batch).min(users);
        let mut credentials = Vec::with_capacity(batch);
        let mut codes = Vec::with_capacity(batch * 10);
        for i in range {
            let user = format!("seed{i}");
            let (sealed, key_id) = keys.seal(&user, &secret_of(i)).expect("seal");
            credentials.push(credential::ActiveModel {
                user_id: Set(user.clone()),
                secret: Set(sealed),
                key_id: Set(key_id),
                algorithm: Set("SHA1".into()),
                digits: Set(6),
                period: Set(30),
                enabled: Set(true),
                pending_expires_at: Set(None),
                enabled_at: Set(Some(now)),
                last_used_step: Set(None),
                failed_attempts: Set(0),
                locked_until: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            });
            for k in 0..10 {
                let code = format!("SEED{:08}", i * 10 + k); // never valid input: only fills the table
                codes.push(recovery_code::ActiveModel {
                    user_id: Set(user.clone()),
                    code_hash: Set(keys.recovery_hash(&user, &code)),
                    created_at: Set(now),
                    ..Default::default()
                });
            }
        }
        credential::Entity::insert_many(credentials).exec_without_returning(db).await.expect("insert credentials");
        for chunk in codes.chunks(5000) {
            recovery_code::Entity::insert_many(chunk.to_vec()).exec_without_returning(db).await.expect("insert codes");
        }
        if (first / batch) % 100 == 99 {
            eprintln!("{} users in {:.1} s", first + batch, started.elapsed().as_secs_f64());
        }
    }
    println!("seeded {users} enabled users with 10 recovery codes each in {:.1} s", started.elapsed().as_secs_f64());
}
