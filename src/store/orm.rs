//! The store on sea-orm: PostgreSQL (and any database sea-orm speaks). Every query is built with
//! sea-query, so it runs unchanged on each backend; SQLite has a faster engine of its own
//! ([`super::sqlite`]), and the test suite runs both.

use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::{FailureOutcome, NewEvent, NewPending, Reseal, audit_event, credential, recovery_code};

/// The store on one sea-orm connection pool (reads and writes alike).
#[derive(Debug, Clone)]
pub struct OrmStore {
    reader: DatabaseConnection,
    writer: DatabaseConnection,
}

/// The methods mirror [`super::Store`]'s, which documents them.
impl OrmStore {
    pub fn new(db: DatabaseConnection) -> Self {
        OrmStore { reader: db.clone(), writer: db }
    }
}

fn not_locked(now: i64) -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(credential::Column::LockedUntil.is_null())
        .add(credential::Column::LockedUntil.lte(now))
}

impl OrmStore {
    pub async fn credential(&self, user_id: &str) -> Result<Option<credential::Model>, DbErr> {
        credential::Entity::find_by_id(user_id.to_owned()).one(&self.reader).await
    }

    pub async fn upsert_pending(&self, p: NewPending) -> Result<bool, DbErr> {
        use credential::Column as C;
        let row = credential::ActiveModel {
            user_id: Set(p.user_id),
            secret: Set(p.secret),
            key_id: Set(p.key_id),
            algorithm: Set(p.algorithm),
            digits: Set(p.digits),
            period: Set(p.period),
            enabled: Set(false),
            pending_expires_at: Set(Some(p.expires_at)),
            enabled_at: Set(None),
            last_used_step: Set(None),
            failed_attempts: Set(0),
            locked_until: Set(None),
            created_at: Set(p.now),
            updated_at: Set(p.now),
        };
        let on_conflict = OnConflict::column(C::UserId)
            .update_columns([
                C::Secret,
                C::KeyId,
                C::Algorithm,
                C::Digits,
                C::Period,
                C::PendingExpiresAt,
                C::LastUsedStep,
                C::UpdatedAt,
            ])
            .action_and_where(Expr::col((credential::Entity, C::Enabled)).eq(false))
            .to_owned();
        let affected =
            credential::Entity::insert(row).on_conflict(on_conflict).exec_without_returning(&self.writer).await?;
        Ok(affected == 1)
    }

    pub async fn record_failure(
        &self,
        user_id: &str,
        now: i64,
        max_attempts: i32,
        lockout_ms: i64,
    ) -> Result<FailureOutcome, DbErr> {
        use credential::Column as C;
        let reaches_limit = Expr::col(C::FailedAttempts).add(1).gte(max_attempts);
        let rows = credential::Entity::update_many()
            .col_expr(
                C::FailedAttempts,
                CaseStatement::new()
                    .case(reaches_limit.clone(), Expr::val(0))
                    .finally(Expr::col(C::FailedAttempts).add(1))
                    .into(),
            )
            .col_expr(
                C::LockedUntil,
                CaseStatement::new()
                    .case(reaches_limit, Expr::val(now + lockout_ms))
                    .finally(Expr::col(C::LockedUntil))
                    .into(),
            )
            .col_expr(C::UpdatedAt, Expr::val(now))
            .filter(C::UserId.eq(user_id))
            .filter(not_locked(now))
            .exec_with_returning(&self.writer)
            .await?;
        Ok(match rows.first() {
            None => FailureOutcome::NotCounted,
            Some(row) => match row.locked_until {
                Some(until) if until > now => FailureOutcome::LockedOut { locked_until: until },
                _ => FailureOutcome::Counted { failed_attempts: row.failed_attempts },
            },
        })
    }

    pub async fn consume_step(
        &self,
        user_id: &str,
        step: i64,
        now: i64,
        reseal: Option<Reseal>,
    ) -> Result<bool, DbErr> {
        consume_step_on(&self.writer, user_id, step, now, reseal).await
    }

    pub async fn enable(
        &self,
        user_id: &str,
        expected_secret: &[u8],
        step: i64,
        now: i64,
        code_hashes: Vec<Vec<u8>>,
    ) -> Result<bool, DbErr> {
        use credential::Column as C;
        let txn = self.writer.begin().await?;
        let updated = credential::Entity::update_many()
            .col_expr(C::Enabled, Expr::val(true))
            .col_expr(C::EnabledAt, Expr::val(now))
            .col_expr(C::PendingExpiresAt, Expr::val(Option::<i64>::None))
            .col_expr(C::LastUsedStep, Expr::val(step))
            .col_expr(C::FailedAttempts, Expr::val(0))
            .col_expr(C::LockedUntil, Expr::val(Option::<i64>::None))
            .col_expr(C::UpdatedAt, Expr::val(now))
            .filter(C::UserId.eq(user_id))
            .filter(C::Enabled.eq(false))
            .filter(C::PendingExpiresAt.gt(now))
            .filter(C::Secret.eq(expected_secret.to_vec()))
            .filter(not_locked(now))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        replace_codes_on(&txn, user_id, code_hashes, now).await?;
        txn.commit().await?;
        Ok(true)
    }

    pub async fn regenerate_codes(
        &self,
        user_id: &str,
        step: i64,
        now: i64,
        code_hashes: Vec<Vec<u8>>,
    ) -> Result<bool, DbErr> {
        let txn = self.writer.begin().await?;
        if !consume_step_on(&txn, user_id, step, now, None).await? {
            txn.rollback().await?;
            return Ok(false);
        }
        replace_codes_on(&txn, user_id, code_hashes, now).await?;
        txn.commit().await?;
        Ok(true)
    }

    pub async fn disable_with_step(&self, user_id: &str, step: i64, now: i64) -> Result<bool, DbErr> {
        use credential::Column as C;
        let txn = self.writer.begin().await?;
        let deleted = credential::Entity::delete_many()
            .filter(C::UserId.eq(user_id))
            .filter(C::Enabled.eq(true))
            .filter(sea_orm::Condition::any().add(C::LastUsedStep.is_null()).add(C::LastUsedStep.lt(step)))
            .filter(not_locked(now))
            .exec(&txn)
            .await?;
        if deleted.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        recovery_code::Entity::delete_many().filter(recovery_code::Column::UserId.eq(user_id)).exec(&txn).await?;
        txn.commit().await?;
        Ok(true)
    }

    pub async fn consume_recovery_code(
        &self,
        user_id: &str,
        hashes: Vec<Vec<u8>>,
        now: i64,
        disable: bool,
    ) -> Result<bool, DbErr> {
        use credential::Column as C;
        let txn = self.writer.begin().await?;
        let used = recovery_code::Entity::delete_many()
            .filter(recovery_code::Column::UserId.eq(user_id))
            .filter(recovery_code::Column::CodeHash.is_in(hashes))
            .exec(&txn)
            .await?;
        if used.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        let credential_rows = if disable {
            credential::Entity::delete_many()
                .filter(C::UserId.eq(user_id))
                .filter(C::Enabled.eq(true))
                .filter(not_locked(now))
                .exec(&txn)
                .await?
                .rows_affected
        } else {
            credential::Entity::update_many()
                .col_expr(C::FailedAttempts, Expr::val(0))
                .col_expr(C::LockedUntil, Expr::val(Option::<i64>::None))
                .col_expr(C::UpdatedAt, Expr::val(now))
                .filter(C::UserId.eq(user_id))
                .filter(C::Enabled.eq(true))
                .filter(not_locked(now))
                .exec(&txn)
                .await?
                .rows_affected
        };
        if credential_rows != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        if disable {
            recovery_code::Entity::delete_many().filter(recovery_code::Column::UserId.eq(user_id)).exec(&txn).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    pub async fn remaining_recovery_codes(&self, user_id: &str) -> Result<u64, DbErr> {
        recovery_code::Entity::find().filter(recovery_code::Column::UserId.eq(user_id)).count(&self.reader).await
    }

    pub async fn add_events(&self, events: Vec<NewEvent>) -> Result<(), DbErr> {
        let rows = events.into_iter().map(|e| audit_event::ActiveModel {
            user_id: Set(e.user_id),
            kind: Set(e.kind.to_owned()),
            at: Set(e.at),
            correlation_id: Set(e.correlation_id),
            ..Default::default()
        });
        audit_event::Entity::insert_many(rows).exec_without_returning(&self.writer).await?;
        Ok(())
    }

    pub async fn events(&self, user_id: &str, limit: u64) -> Result<Vec<audit_event::Model>, DbErr> {
        audit_event::Entity::find()
            .filter(audit_event::Column::UserId.eq(user_id))
            .order_by_desc(audit_event::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await
    }

    pub async fn prune(&self, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), DbErr> {
        use credential::Column as C;
        use sea_orm::sea_query::Query;
        let expired = Query::select()
            .column(C::UserId)
            .from(credential::Entity)
            .and_where(C::Enabled.eq(false))
            .and_where(C::PendingExpiresAt.lt(now))
            .cond_where(not_locked(now))
            .limit(batch)
            .to_owned();
        let pending = credential::Entity::delete_many()
            .filter(C::UserId.in_subquery(expired))
            .exec(&self.writer)
            .await?
            .rows_affected;
        let old = Query::select()
            .column(audit_event::Column::Id)
            .from(audit_event::Entity)
            .and_where(audit_event::Column::At.lt(events_before))
            .limit(batch)
            .to_owned();
        let events = audit_event::Entity::delete_many()
            .filter(audit_event::Column::Id.in_subquery(old))
            .exec(&self.writer)
            .await?
            .rows_affected;
        Ok((pending, events))
    }
}

async fn consume_step_on<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    step: i64,
    now: i64,
    reseal: Option<Reseal>,
) -> Result<bool, DbErr> {
    use credential::Column as C;
    let mut update = credential::Entity::update_many()
        .col_expr(C::LastUsedStep, Expr::val(step))
        .col_expr(C::FailedAttempts, Expr::val(0))
        .col_expr(C::LockedUntil, Expr::val(Option::<i64>::None))
        .col_expr(C::UpdatedAt, Expr::val(now));
    if let Some(reseal) = reseal {
        update = update.col_expr(C::Secret, Expr::val(reseal.secret)).col_expr(C::KeyId, Expr::val(reseal.key_id));
    }
    let result = update
        .filter(C::UserId.eq(user_id))
        .filter(C::Enabled.eq(true))
        .filter(sea_orm::Condition::any().add(C::LastUsedStep.is_null()).add(C::LastUsedStep.lt(step)))
        .filter(not_locked(now))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

async fn replace_codes_on<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    code_hashes: Vec<Vec<u8>>,
    now: i64,
) -> Result<(), DbErr> {
    recovery_code::Entity::delete_many().filter(recovery_code::Column::UserId.eq(user_id)).exec(conn).await?;
    let rows = code_hashes.into_iter().map(|hash| recovery_code::ActiveModel {
        user_id: Set(user_id.to_owned()),
        code_hash: Set(hash),
        created_at: Set(now),
        ..Default::default()
    });
    recovery_code::Entity::insert_many(rows).exec_without_returning(conn).await?;
    Ok(())
}
