//! PostgreSQL: leave a fifth of every `totp_credentials` page free.
//!
//! Each verification updates its user's row (the last used step, the failure counter). With full
//! pages (the default fill factor, 100, and what a bulk load leaves) PostgreSQL writes the new row
//! version to another page and adds an entry for it to every index of the table; with room on the
//! page it makes a heap-only-tuple update instead: same page, no index writes, and a page less to
//! dirty and log. No indexed column changes on these updates, so every one can be HOT. New pages
//! are filled to 80 %; existing ones as they are rewritten. SQLite has no such setting: nothing
//! to do there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared("ALTER TABLE totp_credentials SET (fillfactor = 80)").await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared("ALTER TABLE totp_credentials RESET (fillfactor)").await?;
        }
        Ok(())
    }
}
