//! The store on sea-orm: PostgreSQL (and any database sea-orm speaks). Every query is built with
//! sea-query, so it runs unchanged on each backend; SQLite has a faster engine of its own
//! ([`super::sqlite`]), and the test suite runs both.

use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::{
    AttemptLimits, Change, Checked, FailureOutcome, NewEvent, NewPending, Reseal, Verdict, audit_event, credential,
    recovery_code,
};

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

    pub async fn check_code<R, F>(
        &self,
        user_id: &str,
        now: i64,
        limits: AttemptLimits,
        decide: impl FnOnce(Option<&credential::Model>) -> Verdict<R, F>,
    ) -> Result<Checked<R, F>, DbErr> {
        let txn = self.writer.begin().await?;
        // The row lock serialises every check on this user, from any instance, until commit.
        let cred = credential::Entity::find_by_id(user_id.to_owned()).lock_exclusive().one(&txn).await?;
        let outcome = match decide(cred.as_ref()) {
            Verdict::Refuse(answer) => {
                txn.rollback().await?;
                return Ok(Checked::Refused(answer));
            }
            Verdict::Fail(failure) => Checked::Failed(failure, record_failure_on(&txn, user_id, now, limits).await?),
            Verdict::Accept(change) => {
                apply_on(&txn, user_id, now, change).await?;
                Checked::Accepted
            }
            Verdict::RecoveryCode { hashes, disable, failure } => {
                if use_recovery_code_on(&txn, user_id, hashes, now, disable).await? {
                    Checked::Accepted
                } else {
                    Checked::Failed(failure, record_failure_on(&txn, user_id, now, limits).await?)
                }
            }
        };
        txn.commit().await?;
        Ok(outcome)
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

/// Counts one failed check (see `Store::check_code`).
async fn record_failure_on<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    now: i64,
    limits: AttemptLimits,
) -> Result<FailureOutcome, DbErr> {
    use credential::Column as C;
    let reaches_limit = Expr::col(C::FailedAttempts).add(1).gte(limits.max_attempts);
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
                .case(reaches_limit, Expr::val(now.saturating_add(limits.lockout_ms)))
                .finally(Expr::col(C::LockedUntil))
                .into(),
        )
        .col_expr(C::UpdatedAt, Expr::val(now))
        .filter(C::UserId.eq(user_id))
        .filter(not_locked(now))
        .exec_with_returning(conn)
        .await?;
    Ok(match rows.first() {
        None => FailureOutcome::NotCounted,
        Some(row) => match row.locked_until {
            Some(until) if until > now => FailureOutcome::LockedOut { locked_until: until },
            _ => FailureOutcome::Counted { failed_attempts: row.failed_attempts },
        },
    })
}

/// The row a conditional statement of a check expected was not there, although the check holds
/// the row lock: fail (the transaction rolls back) rather than write half of a change.
fn changed_underneath() -> DbErr {
    DbErr::Custom("the credential changed during a code check".into())
}

/// Applies a successful check's change; each statement keeps its conditions.
async fn apply_on<C: ConnectionTrait>(conn: &C, user_id: &str, now: i64, change: Change) -> Result<(), DbErr> {
    use credential::Column as C;
    let applied = match change {
        Change::ConsumeStep { step, reseal } => consume_step_on(conn, user_id, step, now, reseal).await?,
        Change::Regenerate { step, code_hashes, key_id } => {
            let consumed = consume_step_on(conn, user_id, step, now, None).await?;
            if consumed {
                replace_codes_on(conn, user_id, code_hashes, &key_id, now).await?;
            }
            consumed
        }
        Change::Disable => {
            let deleted = credential::Entity::delete_many()
                .filter(C::UserId.eq(user_id))
                .filter(C::Enabled.eq(true))
                .filter(not_locked(now))
                .exec(conn)
                .await?;
            recovery_code::Entity::delete_many().filter(recovery_code::Column::UserId.eq(user_id)).exec(conn).await?;
            deleted.rows_affected == 1
        }
        Change::Enable { step, code_hashes, key_id } => {
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
                .filter(not_locked(now))
                .exec(conn)
                .await?;
            let enabled = updated.rows_affected == 1;
            if enabled {
                replace_codes_on(conn, user_id, code_hashes, &key_id, now).await?;
            }
            enabled
        }
    };
    if applied { Ok(()) } else { Err(changed_underneath()) }
}

/// Consumes one recovery code among `hashes` and resets the failure counter (or, with
/// `disable`, deletes the credential and the rest of the set). `false` when no code matched.
async fn use_recovery_code_on<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    hashes: Vec<Vec<u8>>,
    now: i64,
    disable: bool,
) -> Result<bool, DbErr> {
    use credential::Column as C;
    let used = recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user_id))
        .filter(recovery_code::Column::CodeHash.is_in(hashes))
        .exec(conn)
        .await?;
    if used.rows_affected != 1 {
        return Ok(false);
    }
    if disable {
        apply_on(conn, user_id, now, Change::Disable).await?;
    } else {
        let reset = credential::Entity::update_many()
            .col_expr(C::FailedAttempts, Expr::val(0))
            .col_expr(C::LockedUntil, Expr::val(Option::<i64>::None))
            .col_expr(C::UpdatedAt, Expr::val(now))
            .filter(C::UserId.eq(user_id))
            .filter(C::Enabled.eq(true))
            .filter(not_locked(now))
            .exec(conn)
            .await?;
        if reset.rows_affected != 1 {
            return Err(changed_underneath());
        }
    }
    Ok(true)
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
    key_id: &str,
    now: i64,
) -> Result<(), DbErr> {
    recovery_code::Entity::delete_many().filter(recovery_code::Column::UserId.eq(user_id)).exec(conn).await?;
    let rows = code_hashes.into_iter().map(|hash| recovery_code::ActiveModel {
        user_id: Set(user_id.to_owned()),
        code_hash: Set(hash),
        key_id: Set(Some(key_id.to_owned())),
        created_at: Set(now),
        ..Default::default()
    });
    recovery_code::Entity::insert_many(rows).exec_without_returning(conn).await?;
    Ok(())
}
