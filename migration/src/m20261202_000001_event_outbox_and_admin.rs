//! Admin actions (SPEC §8) and the webhook outbox (SPEC §9) on `audit_events`, and an index for
//! listing credentials by state.
//!
//! * `actor` (the admin's `sub`, or `cli`) and `reason` (kept, never shown to the user) of admin
//!   events;
//! * the outbox: an event that is to be sent to the webhook receiver carries its delivery state
//!   beside it (`delivery` = `pending` | `delivered` | `failed`, NULL for events that are not
//!   sent), written in the same transaction as the state change it reports. `webhook_id` is the
//!   Standard Webhooks message id, `window_from` the start of its delivery window (the event's
//!   time, or a `retry`), `claimed_until` the lease of the instance sending it;
//! * partial indexes keep the deliverer's queue and the failed list cheap however many delivered
//!   events accumulate, and `idx_totp_credentials_state` covers the state filter, so counting
//!   users by state reads only the index.
//!
//! SQLite alters one column per statement, so each column is its own `ALTER TABLE`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvents {
    Table,
    Actor,
    Reason,
    WebhookId,
    Delivery,
    Attempts,
    NextAttemptAt,
    WindowFrom,
    ClaimedUntil,
    LastError,
    DeliveredAt,
}

const INDEXES_UP: [&str; 3] = [
    "CREATE INDEX idx_audit_events_outbox ON audit_events (next_attempt_at) WHERE delivery = 'pending'",
    "CREATE INDEX idx_audit_events_failed ON audit_events (id) WHERE delivery = 'failed'",
    "CREATE INDEX idx_totp_credentials_state ON totp_credentials (enabled, locked_until, pending_expires_at)",
];

const INDEXES_DOWN: [&str; 3] = [
    "DROP INDEX idx_audit_events_outbox",
    "DROP INDEX idx_audit_events_failed",
    "DROP INDEX idx_totp_credentials_state",
];

fn columns() -> Vec<(AuditEvents, ColumnDef)> {
    use AuditEvents as A;
    vec![
        (A::Actor, ColumnDef::new(A::Actor).string_len(255).null().to_owned()),
        (A::Reason, ColumnDef::new(A::Reason).string_len(500).null().to_owned()),
        (A::WebhookId, ColumnDef::new(A::WebhookId).string_len(64).null().to_owned()),
        (A::Delivery, ColumnDef::new(A::Delivery).string_len(16).null().to_owned()),
        (A::Attempts, ColumnDef::new(A::Attempts).integer().not_null().default(0).to_owned()),
        (A::NextAttemptAt, ColumnDef::new(A::NextAttemptAt).big_integer().null().to_owned()),
        (A::WindowFrom, ColumnDef::new(A::WindowFrom).big_integer().null().to_owned()),
        (A::ClaimedUntil, ColumnDef::new(A::ClaimedUntil).big_integer().null().to_owned()),
        (A::LastError, ColumnDef::new(A::LastError).string_len(500).null().to_owned()),
        (A::DeliveredAt, ColumnDef::new(A::DeliveredAt).big_integer().null().to_owned()),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (_, mut column) in columns() {
            manager.alter_table(Table::alter().table(AuditEvents::Table).add_column(&mut column).to_owned()).await?;
        }
        for sql in INDEXES_UP {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in INDEXES_DOWN {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        for (name, _) in columns().into_iter().rev() {
            manager.alter_table(Table::alter().table(AuditEvents::Table).drop_column(name).to_owned()).await?;
        }
        Ok(())
    }
}
