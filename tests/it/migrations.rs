//! Migrations: every one rolls back and applies again, and the service works on the result.

use crate::common::*;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

/// On PostgreSQL, `totp_credentials` keeps room on its pages for HOT updates.
async fn credentials_fillfactor(db: &sea_orm::DatabaseConnection) -> Option<String> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT reloptions::text AS options FROM pg_class WHERE relname = 'totp_credentials'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<Option<String>>("", "options").unwrap()
}

#[tokio::test]
async fn migrations_roll_back_and_apply_again() {
    let (url, guard) = fresh_database().await;
    let store = twofold::connect_and_migrate(&url, 2).await.unwrap();
    let db = store.connection();
    if is_postgres() {
        assert_eq!(credentials_fillfactor(db).await.as_deref(), Some("{fillfactor=80}"));
    }
    let applied = Migrator::get_applied_migrations(db).await.unwrap().len();
    assert_eq!(applied, Migrator::migrations().len());

    // Down one at a time to nothing, then up again.
    for left in (0..applied).rev() {
        Migrator::down(db, Some(1)).await.unwrap();
        assert_eq!(Migrator::get_applied_migrations(db).await.unwrap().len(), left);
        // `left` migrations remain: the fillfactor one (the second) was just rolled back.
        if is_postgres() && left == 1 {
            assert_eq!(credentials_fillfactor(db).await, None);
        }
    }
    Migrator::up(db, None).await.unwrap();
    if is_postgres() {
        assert_eq!(credentials_fillfactor(db).await.as_deref(), Some("{fillfactor=80}"));
    }
    drop(store);

    // The service runs on the re-created schema.
    let app = TestApp::build(
        url,
        std::sync::Arc::new(guard),
        twofold::clock::ManualClock::new(START_MS),
        Default::default(),
        twofold::crypto::Keyring::new(&ENCRYPTION_KEY, &[]),
    )
    .await;
    let (_, codes) = enable_user(&app, "after-migrations", 0).await;
    assert_eq!(codes.len(), 10);
    let res = app.graphql(Some(&token("after-migrations")), "{ twoFactor { enabled } }", json!({})).await;
    assert_eq!(res["data"]["twoFactor"]["enabled"], true);
}
