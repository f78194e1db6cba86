//! The store's operations, each written once over [`Exec`]: the same statements ([`super::sql`])
//! in the same order on SQLite and PostgreSQL. The engines decide only where an operation runs
//! (SQLite: the writer thread or a reader; PostgreSQL: the pool or a transaction).

use super::exec::{Exec, Param, Row};
use super::sql;
use super::sql::Kind;
use super::{
    AssertionKey, AttemptLimits, Change, Checked, Credential, Delivery, DeliveryOutcome, Error, Event, FailureOutcome,
    ImportRow, NewEvent, NewPending, Reseal, Sealed, StateFilter, Undelivered, Verdict,
};

fn credential_of(row: &Row) -> Result<Credential, Error> {
    Ok(Credential {
        user_id: row.text(0)?,
        secret: row.blob(1)?,
        key_id: row.text(2)?,
        algorithm: row.text(3)?,
        digits: row.i32(4)?,
        period: row.i32(5)?,
        enabled: row.bool(6)?,
        pending_expires_at: row.opt_i64(7)?,
        enabled_at: row.opt_i64(8)?,
        last_used_step: row.opt_i64(9)?,
        failed_attempts: row.i32(10)?,
        locked_until: row.opt_i64(11)?,
        created_at: row.i64(12)?,
        updated_at: row.i64(13)?,
    })
}

/// The user's credential; with `lock`, locked until the end of the transaction where the
/// engine locks rows.
pub(super) async fn credential<E: Exec>(e: &mut E, user_id: &str, lock: bool) -> Result<Option<Credential>, Error> {
    let mut query = sql::CREDENTIAL;
    if lock && E::LOCKS_ROWS {
        query.sql = query.locking.unwrap_or(query.sql);
    }
    e.query_opt(query, &[user_id.into()]).await?.as_ref().map(credential_of).transpose()
}

/// Stores a pending secret with its event, written only when the secret is: in one statement
/// where the engine fuses writes, else two in the caller's transaction.
pub(super) async fn upsert_pending<E: Exec>(e: &mut E, p: &NewPending, event: &NewEvent) -> Result<bool, Error> {
    let pending = [
        p.user_id.as_str().into(),
        p.secret.as_slice().into(),
        p.key_id.as_str().into(),
        p.algorithm.as_str().into(),
        p.digits.into(),
        p.period.into(),
        p.expires_at.into(),
        p.now.into(),
    ];
    if E::FUSES_WRITES {
        let params: Vec<Param<'_>> = pending.into_iter().chain(event_fields(event)).collect();
        return Ok(e.execute(sql::UPSERT_PENDING_WITH_EVENT, &params).await? == 1);
    }
    let stored = e.execute(sql::UPSERT_PENDING, &pending).await? == 1;
    if stored {
        add_events(e, std::slice::from_ref(event)).await?;
    }
    Ok(stored)
}

/// A code check without a lock, for an engine that fuses writes (PostgreSQL's hot path: one
/// round trip when the credential is remembered, two when it is read first, no transaction).
/// `cred` was read without a lock: just now (`fresh`), or by an earlier check and remembered
/// since. It is judged; an accepted verify then consumes its step together with its event in
/// one statement whose conditions are the ones the decision relied on (the same sealed secret,
/// still enabled and unlocked, a newer step), and a refusal on a fresh read writes nothing.
/// `None` when the outcome needs a fresh read or the locked check ([`check_code`]): a failure,
/// any other change, a refusal judged on a remembered copy, or a condition that no longer held
/// (a concurrent check took the step, a lockout, a reset, a new secret), which is then judged
/// afresh. A remembered copy can only ever be older than the row, and every difference that
/// matters to an acceptance makes that statement change nothing.
pub(super) async fn check_code_unlocked<E: Exec, R, F>(
    e: &mut E,
    user_id: &str,
    now: i64,
    (cred, fresh): (Option<&Credential>, bool),
    decide: &impl Fn(Option<&Credential>) -> Verdict<R, F>,
    record: &impl Fn(&Checked<R, F>) -> Vec<NewEvent>,
) -> Result<Option<Checked<R, F>>, Error> {
    match (decide(cred), cred) {
        (Verdict::Refuse(answer), _) if fresh => {
            let refused = Checked::Refused(answer);
            Ok(record(&refused).is_empty().then_some(refused))
        }
        (Verdict::Accept(Change::ConsumeStep { step, reseal }), Some(cred)) => {
            let events = record(&Checked::Accepted);
            let [event] = events.as_slice() else { return Ok(None) };
            let params: Vec<Param<'_>> = [
                user_id.into(),
                step.into(),
                now.into(),
                reseal.as_ref().map(|r| r.secret.as_slice()).into(),
                reseal.as_ref().map(|r| r.key_id.as_str()).into(),
                cred.secret.as_slice().into(),
            ]
            .into_iter()
            .chain(event_fields(event))
            .collect();
            let applied = e.execute(sql::CONSUME_STEP_WITH_EVENT, &params).await? == 1;
            Ok(applied.then_some(Checked::Accepted))
        }
        _ => Ok(None),
    }
}

/// One code check (see `Store::check_code`). Must run inside one unit that no other check on
/// the user can interleave with: a transaction holding the row lock, or the SQLite writer.
pub(super) async fn check_code<E: Exec, R, F>(
    e: &mut E,
    user_id: &str,
    now: i64,
    limits: AttemptLimits,
    decide: impl Fn(Option<&Credential>) -> Verdict<R, F>,
    record: impl Fn(&Checked<R, F>) -> Vec<NewEvent>,
) -> Result<Checked<R, F>, Error> {
    let cred = credential(e, user_id, true).await?;
    let checked = match decide(cred.as_ref()) {
        Verdict::Refuse(answer) => Checked::Refused(answer),
        Verdict::Fail(failure) => Checked::Failed(failure, record_failure(e, user_id, now, limits).await?),
        Verdict::Accept(change) => {
            apply(e, user_id, now, change).await?;
            Checked::Accepted
        }
        Verdict::RecoveryCode { hashes, disable, failure } => {
            if use_recovery_code(e, user_id, &hashes, now, disable).await? {
                Checked::Accepted
            } else {
                Checked::Failed(failure, record_failure(e, user_id, now, limits).await?)
            }
        }
    };
    add_events(e, &record(&checked)).await?;
    Ok(checked)
}

async fn record_failure<E: Exec>(
    e: &mut E,
    user_id: &str,
    now: i64,
    limits: AttemptLimits,
) -> Result<FailureOutcome, Error> {
    let params = [user_id.into(), now.into(), limits.max_attempts.into(), now.saturating_add(limits.lockout_ms).into()];
    let Some(row) = e.query_opt(sql::RECORD_FAILURE, &params).await? else {
        return Ok(FailureOutcome::NotCounted);
    };
    Ok(match row.opt_i64(1)? {
        Some(until) if until > now => FailureOutcome::LockedOut { locked_until: until },
        _ => FailureOutcome::Counted { failed_attempts: row.i32(0)? },
    })
}

/// Applies a successful check's change. Each statement keeps its conditions (enabled, not
/// locked, newer step), so a broken assumption fails the unit instead of writing half of it.
async fn apply<E: Exec>(e: &mut E, user_id: &str, now: i64, change: Change) -> Result<(), Error> {
    let applied = match change {
        Change::ConsumeStep { step, reseal } => consume_step(e, user_id, step, now, reseal.as_ref()).await?,
        Change::Regenerate { step, code_hashes, key_id } => {
            consume_step(e, user_id, step, now, None).await?
                && replace_codes(e, user_id, &code_hashes, &key_id, now).await.map(|()| true)?
        }
        Change::Disable => {
            let deleted = e.execute(sql::DELETE_ENABLED, &[user_id.into(), now.into()]).await?;
            e.execute(sql::DELETE_RECOVERY_CODES, &[user_id.into()]).await?;
            deleted == 1
        }
        Change::Enable { step, code_hashes, key_id } => {
            e.execute(sql::ENABLE, &[user_id.into(), step.into(), now.into()]).await? == 1
                && replace_codes(e, user_id, &code_hashes, &key_id, now).await.map(|()| true)?
        }
    };
    if applied { Ok(()) } else { Err(Error::changed_underneath()) }
}

async fn consume_step<E: Exec>(
    e: &mut E,
    user_id: &str,
    step: i64,
    now: i64,
    reseal: Option<&Reseal>,
) -> Result<bool, Error> {
    let params = [
        user_id.into(),
        step.into(),
        now.into(),
        reseal.map(|r| r.secret.as_slice()).into(),
        reseal.map(|r| r.key_id.as_str()).into(),
    ];
    Ok(e.execute(sql::CONSUME_STEP, &params).await? == 1)
}

async fn replace_codes<E: Exec>(
    e: &mut E,
    user_id: &str,
    code_hashes: &[Vec<u8>],
    key_id: &str,
    now: i64,
) -> Result<(), Error> {
    e.execute(sql::DELETE_RECOVERY_CODES, &[user_id.into()]).await?;
    for hash in code_hashes {
        e.execute(sql::INSERT_RECOVERY_CODE, &[user_id.into(), hash.as_slice().into(), key_id.into(), now.into()])
            .await?;
    }
    Ok(())
}

/// Consumes one recovery code among `hashes` (the first that matches) and resets the failure
/// counter, or with `disable` deletes the credential and the rest of the set. `false` when no
/// code matched.
async fn use_recovery_code<E: Exec>(
    e: &mut E,
    user_id: &str,
    hashes: &[Vec<u8>],
    now: i64,
    disable: bool,
) -> Result<bool, Error> {
    let mut used = 0;
    for hash in hashes {
        used = e.execute(sql::DELETE_RECOVERY_CODE, &[user_id.into(), hash.as_slice().into()]).await?;
        if used > 0 {
            break;
        }
    }
    if used != 1 {
        return Ok(false);
    }
    if disable {
        apply(e, user_id, now, Change::Disable).await?;
    } else if e.execute(sql::RESET_FAILURES, &[user_id.into(), now.into()]).await? != 1 {
        return Err(Error::changed_underneath());
    }
    Ok(true)
}

pub(super) async fn remaining_recovery_codes<E: Exec>(e: &mut E, user_id: &str) -> Result<u64, Error> {
    let row = e.query_opt(sql::COUNT_RECOVERY_CODES, &[user_id.into()]).await?;
    Ok(row.map(|r| r.i64(0)).transpose()?.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// An event's fields after its user, in the order of [`sql::INSERT_EVENT`]'s `$2`–`$7`.
fn event_fields(ev: &NewEvent) -> [Param<'_>; 6] {
    [
        ev.kind.into(),
        ev.at.into(),
        ev.correlation_id.as_deref().into(),
        ev.actor.as_deref().into(),
        ev.reason.as_deref().into(),
        ev.webhook_id.as_deref().into(),
    ]
}

async fn add_events<E: Exec>(e: &mut E, events: &[NewEvent]) -> Result<(), Error> {
    for ev in events {
        let params: Vec<Param<'_>> = std::iter::once(ev.user_id.as_str().into()).chain(event_fields(ev)).collect();
        e.execute(sql::INSERT_EVENT, &params).await?;
    }
    Ok(())
}

/// See `Store::admin_reset`; runs inside one transaction. "Now" is the event's time.
pub(super) async fn admin_reset<E: Exec>(e: &mut E, user_id: &str, event: &NewEvent) -> Result<bool, Error> {
    let deleted = e.execute(sql::DELETE_CREDENTIAL, &[user_id.into(), event.at.into()]).await? == 1;
    if deleted {
        e.execute(sql::DELETE_RECOVERY_CODES, &[user_id.into()]).await?;
        add_events(e, std::slice::from_ref(event)).await?;
    }
    Ok(deleted)
}

/// See `Store::admin_unlock`; runs inside one transaction.
pub(super) async fn admin_unlock<E: Exec>(e: &mut E, user_id: &str, now: i64, event: &NewEvent) -> Result<bool, Error> {
    let unlocked = e.execute(sql::UNLOCK, &[user_id.into(), now.into()]).await? == 1;
    if unlocked {
        add_events(e, std::slice::from_ref(event)).await?;
    }
    Ok(unlocked)
}

fn count_of(row: Option<Row>) -> Result<u64, Error> {
    Ok(row.map(|r| r.i64(0)).transpose()?.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

fn limit_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) async fn list_credentials<E: Exec>(
    e: &mut E,
    after: &str,
    limit: u64,
    filter: StateFilter,
    now: i64,
) -> Result<Vec<Credential>, Error> {
    let params = [after.into(), limit_of(limit).into(), filter.as_sql().into(), now.into()];
    e.query(sql::LIST_CREDENTIALS, &params).await?.iter().map(credential_of).collect()
}

pub(super) async fn count_credentials<E: Exec>(e: &mut E, filter: StateFilter, now: i64) -> Result<u64, Error> {
    count_of(e.query_opt(sql::COUNT_CREDENTIALS, &[filter.as_sql().into(), now.into()]).await?)
}

/// See `Store::import`; runs inside one transaction, which the caller rolls back on `Err`.
pub(super) async fn import<E: Exec>(
    e: &mut E,
    rows: &[ImportRow],
    replace: bool,
    now: i64,
) -> Result<Result<u64, usize>, Error> {
    e.execute(sql::TAKE_WRITE_LOCK, &[]).await?;
    for (index, row) in rows.iter().enumerate() {
        let params = [
            row.user_id.as_str().into(),
            row.secret.as_slice().into(),
            row.key_id.as_str().into(),
            row.algorithm.as_str().into(),
            row.digits.into(),
            row.period.into(),
            now.into(),
            i32::from(replace).into(),
        ];
        if e.execute(sql::INSERT_IMPORTED, &params).await? != 1 {
            return Ok(Err(index));
        }
        if replace {
            e.execute(sql::DELETE_RECOVERY_CODES, &[row.user_id.as_str().into()]).await?;
        }
        add_events(e, std::slice::from_ref(&row.event)).await?;
    }
    Ok(Ok(rows.len() as u64))
}

pub(super) async fn claim_deliveries<E: Exec>(
    e: &mut E,
    now: i64,
    lease_until: i64,
    limit: u64,
) -> Result<Vec<Delivery>, Error> {
    let mut query = sql::CLAIM_DELIVERIES;
    if E::LOCKS_ROWS {
        query.sql = query.locking.unwrap_or(query.sql);
    }
    // `RETURNING` keeps no order: oldest first.
    let mut claimed = e
        .query(query, &[now.into(), lease_until.into(), limit_of(limit).into()])
        .await?
        .iter()
        .map(|r| {
            Ok(Delivery {
                id: r.i64(0)?,
                webhook_id: r.text(1)?,
                user_id: r.text(2)?,
                kind: r.text(3)?,
                at: r.i64(4)?,
                correlation_id: r.opt_text(5)?,
                actor: r.opt_text(6)?,
                attempts: r.i32(7)?,
                window_from: r.i64(8)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    claimed.sort_by_key(|d| d.id);
    Ok(claimed)
}

/// Runs inside one transaction.
pub(super) async fn deliveries_attempted<E: Exec>(
    e: &mut E,
    outcomes: &[(i64, DeliveryOutcome)],
    now: i64,
) -> Result<(), Error> {
    for (id, outcome) in outcomes {
        delivery_attempted(e, *id, outcome, now).await?;
    }
    Ok(())
}

async fn delivery_attempted<E: Exec>(e: &mut E, id: i64, outcome: &DeliveryOutcome, now: i64) -> Result<(), Error> {
    let none = Option::<&str>::None;
    let never = Param::Null(Kind::I64);
    let params = match outcome {
        DeliveryOutcome::Delivered => [id.into(), "delivered".into(), never, none.into(), now.into(), 1_i32.into()],
        DeliveryOutcome::RetryAt { at, error } => {
            [id.into(), "pending".into(), (*at).into(), error.as_str().into(), never, 1_i32.into()]
        }
        DeliveryOutcome::Failed { error, attempted } => {
            [id.into(), "failed".into(), never, error.as_str().into(), never, i32::from(*attempted).into()]
        }
    };
    e.execute(sql::DELIVERY_ATTEMPTED, &params).await.map(drop)
}

/// Runs inside one transaction.
pub(super) async fn release_deliveries<E: Exec>(e: &mut E, ids: &[i64]) -> Result<(), Error> {
    for id in ids {
        e.execute(sql::RELEASE_DELIVERY, &[(*id).into()]).await?;
    }
    Ok(())
}

pub(super) async fn retry_failed_deliveries<E: Exec>(e: &mut E, now: i64) -> Result<u64, Error> {
    e.execute(sql::RETRY_FAILED_DELIVERIES, &[now.into()]).await
}

pub(super) async fn pending_deliveries<E: Exec>(e: &mut E) -> Result<u64, Error> {
    count_of(e.query_opt(sql::COUNT_PENDING_DELIVERIES, &[]).await?)
}

pub(super) async fn undelivered<E: Exec>(e: &mut E, limit: u64) -> Result<Vec<Undelivered>, Error> {
    e.query(sql::UNDELIVERED, &[limit_of(limit).into()])
        .await?
        .iter()
        .map(|r| {
            Ok(Undelivered {
                id: r.i64(0)?,
                webhook_id: r.text(1)?,
                user_id: r.text(2)?,
                kind: r.text(3)?,
                at: r.i64(4)?,
                delivery: r.text(5)?,
                attempts: r.i32(6)?,
                next_attempt_at: r.opt_i64(7)?,
                last_error: r.opt_text(8)?,
            })
        })
        .collect()
}

pub(super) async fn events<E: Exec>(e: &mut E, user_id: &str, limit: u64) -> Result<Vec<Event>, Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    e.query(sql::EVENTS, &[user_id.into(), limit.into()])
        .await?
        .iter()
        .map(|r| {
            Ok(Event {
                id: r.i64(0)?,
                user_id: r.text(1)?,
                kind: r.text(2)?,
                at: r.i64(3)?,
                correlation_id: r.opt_text(4)?,
                actor: r.opt_text(5)?,
                reason: r.opt_text(6)?,
            })
        })
        .collect()
}

pub(super) async fn prune<E: Exec>(e: &mut E, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), Error> {
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let pending = e.execute(sql::PRUNE_PENDING, &[now.into(), batch.into()]).await?;
    let events = e.execute(sql::PRUNE_EVENTS, &[events_before.into(), batch.into()]).await?;
    Ok((pending, events))
}

pub(super) async fn ping<E: Exec>(e: &mut E) -> Result<(), Error> {
    e.query(sql::PING, &[]).await.map(drop)
}

pub(super) async fn secrets_per_key<E: Exec>(e: &mut E) -> Result<Vec<(String, u64)>, Error> {
    e.query(sql::SECRETS_PER_KEY, &[])
        .await?
        .iter()
        .map(|r| Ok((r.text(0)?, u64::try_from(r.i64(1)?).unwrap_or(0))))
        .collect()
}

/// See `Store::reseal_secrets`; runs inside one transaction.
pub(super) async fn reseal_secrets<E: Exec, X>(
    e: &mut E,
    mut reseal: impl FnMut(Sealed<'_>) -> Result<Option<Reseal>, X>,
) -> Result<Result<u64, X>, Error> {
    e.execute(sql::TAKE_WRITE_LOCK, &[]).await?;
    let page = i64::try_from(super::RESEAL_PAGE).unwrap_or(i64::MAX);
    let (mut after, mut changed) = (String::new(), 0_u64);
    loop {
        let rows = e.query(sql::CREDENTIALS_AFTER, &[after.as_str().into(), page.into()]).await?;
        let Some(last) = rows.last() else { break };
        after = last.text(0)?;
        for row in &rows {
            let cred = credential_of(row)?;
            let sealed = Sealed::TotpSecret { user_id: &cred.user_id, key_id: &cred.key_id, secret: &cred.secret };
            let new = match reseal(sealed) {
                Ok(Some(new)) => new,
                Ok(None) => continue,
                Err(x) => return Ok(Err(x)),
            };
            let params = [
                cred.user_id.as_str().into(),
                cred.secret.as_slice().into(),
                new.secret.as_slice().into(),
                new.key_id.as_str().into(),
            ];
            changed += e.execute(sql::RESEAL_SECRET, &params).await?;
        }
    }
    for key in e.query(sql::ALL_ASSERTION_KEYS, &[]).await?.iter().map(assertion_key_of) {
        let key = key?;
        let sealed = Sealed::AssertionKey { kid: &key.kid, key_id: &key.key_id, secret: &key.secret };
        let new = match reseal(sealed) {
            Ok(Some(new)) => new,
            Ok(None) => continue,
            Err(x) => return Ok(Err(x)),
        };
        let params = [
            key.kid.as_str().into(),
            key.secret.as_slice().into(),
            new.secret.as_slice().into(),
            new.key_id.as_str().into(),
        ];
        changed += e.execute(sql::RESEAL_ASSERTION_KEY, &params).await?;
    }
    Ok(Ok(changed))
}

fn assertion_key_of(row: &Row) -> Result<AssertionKey, Error> {
    Ok(AssertionKey {
        kid: row.text(0)?,
        secret: row.blob(1)?,
        key_id: row.text(2)?,
        public_key: row.blob(3)?,
        current: row.opt_i64(4)?.is_some(),
        created_at: row.i64(5)?,
        retired_at: row.opt_i64(6)?,
    })
}

pub(super) async fn assertion_keys<E: Exec>(e: &mut E, retired_after: i64) -> Result<Vec<AssertionKey>, Error> {
    e.query(sql::ASSERTION_KEYS, &[retired_after.into()]).await?.iter().map(assertion_key_of).collect()
}

/// See `Store::insert_assertion_key`; with `rotate`, runs inside one transaction.
pub(super) async fn insert_assertion_key<E: Exec>(
    e: &mut E,
    key: &AssertionKey,
    rotate: bool,
    now: i64,
) -> Result<bool, Error> {
    if rotate {
        e.execute(sql::RETIRE_CURRENT_ASSERTION_KEY, &[now.into()]).await?;
    }
    let params = [
        key.kid.as_str().into(),
        key.secret.as_slice().into(),
        key.key_id.as_str().into(),
        key.public_key.as_slice().into(),
        key.created_at.into(),
    ];
    Ok(e.execute(sql::INSERT_CURRENT_ASSERTION_KEY, &params).await? == 1)
}

pub(super) async fn users_with_recovery_codes_not_under<E: Exec>(e: &mut E, key_id: &str) -> Result<u64, Error> {
    let row = e.query_opt(sql::USERS_WITH_CODES_NOT_UNDER, &[key_id.into()]).await?;
    Ok(row.map(|r| r.i64(0)).transpose()?.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}
