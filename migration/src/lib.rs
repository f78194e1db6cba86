//! Database migrations for Twofold (sea-orm-migration). Each migration has an `up` and a `down`.
//!
//! Timestamps are stored as integer milliseconds since the Unix epoch (UTC) so that the same
//! conditional `UPDATE … WHERE locked_until <= now` statements work identically on SQLite and
//! PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_two_factor_tables;
mod m20261129_000001_credentials_fillfactor;
mod m20261201_000001_recovery_code_key_id;
mod m20261201_000002_assertion_keys;
mod m20261202_000001_event_outbox_and_admin;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_two_factor_tables::Migration),
            Box::new(m20261129_000001_credentials_fillfactor::Migration),
            Box::new(m20261201_000001_recovery_code_key_id::Migration),
            Box::new(m20261201_000002_assertion_keys::Migration),
            Box::new(m20261202_000001_event_outbox_and_admin::Migration),
        ]
    }
}
