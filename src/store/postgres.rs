//! The store on PostgreSQL: the operations of [`super::ops`] on sqlx's connection pool (the one
//! sea-orm opened). An operation checks out one connection and runs its statements on it as
//! prepared statements (sqlx caches them per connection): plain operations without a
//! transaction, code checks first without one (see `Store::check_code`), the rest in one.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use sea_orm::sqlx::postgres::{PgArguments, PgRow};
use sea_orm::sqlx::{self, Connection as _, PgConnection, PgPool, Postgres, Row as _};

use super::exec::{Exec, Param, Row, Value};
use super::sql::{Kind, Query};
use super::{
    AssertionKey, AttemptLimits, Checked, Credential, Delivery, DeliveryOutcome, Error, Event, ImportRow, NewEvent,
    NewPending, Reseal, Sealed, StateFilter, Undelivered, Verdict, ops,
};

/// [`Exec`] on one PostgreSQL connection (or a transaction on it).
struct PgExec<'c>(&'c mut PgConnection);

fn bind<'q>(sql: &'static str, params: &[Param<'q>]) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    let mut query = sqlx::query(sql);
    for p in params {
        query = match *p {
            Param::I32(v) => query.bind(v),
            Param::I64(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
            Param::Blob(v) => query.bind(v),
            Param::Null(Kind::I32) => query.bind(None::<i32>),
            Param::Null(Kind::I64) => query.bind(None::<i64>),
            Param::Null(Kind::Bool) => query.bind(None::<bool>),
            Param::Null(Kind::Text) => query.bind(None::<&str>),
            Param::Null(Kind::Blob) => query.bind(None::<&[u8]>),
        };
    }
    query
}

fn decode(row: &PgRow, columns: &[Kind]) -> Result<Row, Error> {
    let mut values = Vec::with_capacity(columns.len());
    for (i, kind) in columns.iter().enumerate() {
        let value = match kind {
            Kind::I32 => row.try_get::<Option<i32>, _>(i)?.map(|v| Value::Int(i64::from(v))),
            Kind::I64 => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
            Kind::Bool => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
            Kind::Text => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
            Kind::Blob => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Blob),
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl Exec for PgExec<'_> {
    const LOCKS_ROWS: bool = true;
    const FUSES_WRITES: bool = true;

    async fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, Error> {
        Ok(bind(sql, params).execute(&mut *self.0).await?.rows_affected())
    }

    async fn query(&mut self, query: Query, params: &[Param<'_>]) -> Result<Vec<Row>, Error> {
        let rows = bind(query.sql, params).fetch_all(&mut *self.0).await?;
        rows.iter().map(|r| decode(r, query.columns)).collect()
    }
}

/// How many users' credentials an instance remembers for the one-round-trip verify (the most
/// recently used, forgotten when the instance goes idle; at most a few MB).
pub const REMEMBERED_CREDENTIALS: usize = 8192;

/// The store on one connection pool.
#[derive(Debug, Clone)]
pub(super) struct PgStore {
    pool: PgPool,
    /// Credentials read by recent code checks that were accepted, by user: a later verify judges
    /// the remembered copy and needs no read (see `check_code`). Never trusted for anything
    /// else: the row in the database stays the only state.
    remembered: Arc<quick_cache::sync::Cache<String, Arc<Credential>>>,
}

/// Runs `$op` (an [`ops`] function, without its first argument) on one pooled connection.
macro_rules! on_connection {
    ($self:ident, $op:ident ( $($arg:expr),* )) => {{
        let mut conn = $self.pool.acquire().await?;
        ops::$op(&mut PgExec(&mut conn), $($arg),*).await
    }};
}

/// Runs `$op` in one transaction on one pooled connection, committed when it returns `Ok`
/// (with [`Outcome::commit`] deciding for operations that return an inner `Result`).
macro_rules! in_transaction {
    ($self:ident, $op:ident ( $($arg:expr),* )) => {{
        let mut txn = $self.pool.begin().await?;
        let out = ops::$op(&mut PgExec(&mut txn), $($arg),*).await?;
        if Outcome::commit(&out) {
            txn.commit().await?;
        } else {
            txn.rollback().await?;
        }
        Ok(out)
    }};
}

/// Whether a transaction's result is to be committed: always, except an inner `Err` (an import
/// or reseal that found a bad row changes nothing).
trait Outcome {
    fn commit(&self) -> bool {
        true
    }
}

impl<T, X> Outcome for Result<T, X> {
    fn commit(&self) -> bool {
        self.is_ok()
    }
}

impl Outcome for bool {}
impl Outcome for () {}

/// The methods mirror [`super::Store`]'s, which documents them.
impl PgStore {
    /// The store on `db`'s pool. `db` must be a PostgreSQL connection.
    pub(super) fn new(db: &DatabaseConnection) -> Self {
        PgStore {
            pool: db.get_postgres_connection_pool().clone(),
            remembered: Arc::new(quick_cache::sync::Cache::new(REMEMBERED_CREDENTIALS)),
        }
    }

    pub(super) async fn ping(&self) -> Result<(), Error> {
        on_connection!(self, ping())
    }

    pub(super) async fn credential(&self, user_id: &str) -> Result<Option<Credential>, Error> {
        on_connection!(self, credential(user_id, false))
    }

    pub(super) async fn upsert_pending(&self, p: NewPending, event: NewEvent) -> Result<bool, Error> {
        on_connection!(self, upsert_pending(&p, &event))
    }

    pub(super) async fn check_code<R: Send + 'static, F: Send + 'static>(
        &self,
        user_id: &str,
        now: i64,
        limits: AttemptLimits,
        decide: impl Fn(Option<&Credential>) -> Verdict<R, F> + Send + 'static,
        record: impl Fn(&Checked<R, F>) -> Vec<NewEvent> + Send + 'static,
    ) -> Result<Checked<R, F>, Error> {
        let mut conn = self.pool.acquire().await?;
        // One round trip: the step's compare-and-set judged on the copy an earlier check read.
        // The copy may be stale in any way (a later step used, a lockout, a reset, a new or
        // re-sealed secret, even another instance's changes); each of those makes the statement
        // change nothing, and the check goes on as if nothing had been remembered.
        if let Some(copy) = self.remembered.get(user_id) {
            let judged = (Some(&*copy), false);
            let unlocked =
                ops::check_code_unlocked(&mut PgExec(&mut conn), user_id, now, judged, &decide, &record).await?;
            if let Some(checked) = unlocked {
                return Ok(checked);
            }
            self.remembered.remove(user_id);
        }
        let cred = ops::credential(&mut PgExec(&mut conn), user_id, false).await?;
        let judged = (cred.as_ref(), true);
        let unlocked = ops::check_code_unlocked(&mut PgExec(&mut conn), user_id, now, judged, &decide, &record).await?;
        if let Some(checked) = unlocked {
            if let (Checked::Accepted, Some(cred)) = (&checked, cred) {
                self.remembered.insert(user_id.to_owned(), Arc::new(cred));
            }
            return Ok(checked);
        }
        let mut txn = conn.begin().await?;
        let checked = ops::check_code(&mut PgExec(&mut txn), user_id, now, limits, decide, record).await?;
        txn.commit().await?;
        Ok(checked)
    }

    pub(super) fn forget_copies(&self) {
        self.remembered.clear();
    }

    pub(super) async fn admin_reset(&self, user_id: &str, event: NewEvent) -> Result<bool, Error> {
        in_transaction!(self, admin_reset(user_id, &event))
    }

    pub(super) async fn admin_unlock(&self, user_id: &str, now: i64, event: NewEvent) -> Result<bool, Error> {
        in_transaction!(self, admin_unlock(user_id, now, &event))
    }

    pub(super) async fn list_credentials(
        &self,
        after: &str,
        limit: u64,
        filter: StateFilter,
        now: i64,
    ) -> Result<Vec<Credential>, Error> {
        on_connection!(self, list_credentials(after, limit, filter, now))
    }

    pub(super) async fn count_credentials(&self, filter: StateFilter, now: i64) -> Result<u64, Error> {
        on_connection!(self, count_credentials(filter, now))
    }

    pub(super) async fn import(
        &self,
        rows: Vec<ImportRow>,
        replace: bool,
        now: i64,
    ) -> Result<Result<u64, usize>, Error> {
        in_transaction!(self, import(&rows, replace, now))
    }

    pub(super) async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u64,
    ) -> Result<Vec<Delivery>, Error> {
        on_connection!(self, claim_deliveries(now, lease_until, limit))
    }

    pub(super) async fn deliveries_attempted(
        &self,
        outcomes: Vec<(i64, DeliveryOutcome)>,
        now: i64,
    ) -> Result<(), Error> {
        in_transaction!(self, deliveries_attempted(&outcomes, now))
    }

    pub(super) async fn release_deliveries(&self, ids: Vec<i64>) -> Result<(), Error> {
        in_transaction!(self, release_deliveries(&ids))
    }

    pub(super) async fn retry_failed_deliveries(&self, now: i64) -> Result<u64, Error> {
        on_connection!(self, retry_failed_deliveries(now))
    }

    pub(super) async fn pending_deliveries(&self) -> Result<u64, Error> {
        on_connection!(self, pending_deliveries())
    }

    pub(super) async fn undelivered(&self, limit: u64) -> Result<Vec<Undelivered>, Error> {
        on_connection!(self, undelivered(limit))
    }

    pub(super) async fn remaining_recovery_codes(&self, user_id: &str) -> Result<u64, Error> {
        on_connection!(self, remaining_recovery_codes(user_id))
    }

    pub(super) async fn events(&self, user_id: &str, limit: u64) -> Result<Vec<Event>, Error> {
        on_connection!(self, events(user_id, limit))
    }

    pub(super) async fn prune(&self, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), Error> {
        on_connection!(self, prune(now, events_before, batch))
    }

    pub(super) async fn secrets_per_key(&self) -> Result<Vec<(String, u64)>, Error> {
        on_connection!(self, secrets_per_key())
    }

    pub(super) async fn reseal_secrets<X: Send + 'static>(
        &self,
        reseal: impl FnMut(Sealed<'_>) -> Result<Option<Reseal>, X> + Send + 'static,
    ) -> Result<Result<u64, X>, Error> {
        in_transaction!(self, reseal_secrets(reseal))
    }

    pub(super) async fn assertion_keys(&self, retired_after: i64) -> Result<Vec<AssertionKey>, Error> {
        on_connection!(self, assertion_keys(retired_after))
    }

    pub(super) async fn insert_assertion_key(&self, key: AssertionKey, rotate: bool, now: i64) -> Result<bool, Error> {
        in_transaction!(self, insert_assertion_key(&key, rotate, now))
    }

    pub(super) async fn users_with_recovery_codes_not_under(&self, key_id: &str) -> Result<u64, Error> {
        on_connection!(self, users_with_recovery_codes_not_under(key_id))
    }
}
