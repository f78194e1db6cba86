//! The store on PostgreSQL: the operations of [`super::ops`] on sea-orm's sqlx pool. Plain
//! operations take a pooled connection per statement; a code check and a reseal run in one
//! transaction.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryResult, Statement, TransactionTrait};

use super::exec::{Exec, Param, Row, Value};
use super::sql::{Kind, Query};
use super::{
    AssertionKey, AttemptLimits, Checked, Credential, Delivery, DeliveryOutcome, Error, Event, ImportRow, NewEvent,
    NewPending, Reseal, Sealed, StateFilter, Undelivered, Verdict, ops,
};

/// [`Exec`] on a sea-orm connection or transaction.
struct PgExec<'a, C>(&'a C);

fn value_of(p: &Param<'_>) -> sea_orm::Value {
    use sea_orm::Value as V;
    match *p {
        Param::I32(v) => V::Int(Some(v)),
        Param::I64(v) => V::BigInt(Some(v)),
        Param::Text(v) => V::String(Some(v.to_owned())),
        Param::Blob(v) => V::Bytes(Some(v.to_vec())),
        Param::Null(Kind::I32) => V::Int(None),
        Param::Null(Kind::I64) => V::BigInt(None),
        Param::Null(Kind::Bool) => V::Bool(None),
        Param::Null(Kind::Text) => V::String(None),
        Param::Null(Kind::Blob) => V::Bytes(None),
    }
}

fn statement(sql: &str, params: &[Param<'_>]) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, params.iter().map(value_of))
}

fn decode(row: &QueryResult, columns: &[Kind]) -> Result<Row, Error> {
    let mut values = Vec::with_capacity(columns.len());
    for (i, kind) in columns.iter().enumerate() {
        let value = match kind {
            Kind::I32 => row.try_get_by_index::<Option<i32>>(i)?.map(|v| Value::Int(i64::from(v))),
            Kind::I64 => row.try_get_by_index::<Option<i64>>(i)?.map(Value::Int),
            Kind::Bool => row.try_get_by_index::<Option<bool>>(i)?.map(Value::Bool),
            Kind::Text => row.try_get_by_index::<Option<String>>(i)?.map(Value::Text),
            Kind::Blob => row.try_get_by_index::<Option<Vec<u8>>>(i)?.map(Value::Blob),
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl<C: ConnectionTrait> Exec for PgExec<'_, C> {
    const LOCKS_ROWS: bool = true;

    async fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, Error> {
        Ok(self.0.execute_raw(statement(sql, params)).await?.rows_affected())
    }

    async fn query(&mut self, query: Query, params: &[Param<'_>]) -> Result<Vec<Row>, Error> {
        let rows = self.0.query_all_raw(statement(query.sql, params)).await?;
        rows.iter().map(|r| decode(r, query.columns)).collect()
    }
}

/// The store on one sea-orm connection pool.
#[derive(Debug, Clone)]
pub(super) struct PgStore {
    db: DatabaseConnection,
}

/// The methods mirror [`super::Store`]'s, which documents them.
impl PgStore {
    pub(super) fn new(db: DatabaseConnection) -> Self {
        PgStore { db }
    }

    fn exec(&self) -> PgExec<'_, DatabaseConnection> {
        PgExec(&self.db)
    }

    pub(super) async fn ping(&self) -> Result<(), Error> {
        ops::ping(&mut self.exec()).await
    }

    pub(super) async fn credential(&self, user_id: &str) -> Result<Option<Credential>, Error> {
        ops::credential(&mut self.exec(), user_id, false).await
    }

    /// Runs `f` in one transaction, committed when it succeeds.
    async fn in_txn<T>(
        &self,
        f: impl AsyncFnOnce(&mut PgExec<'_, sea_orm::DatabaseTransaction>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let txn = self.db.begin().await?;
        let out = f(&mut PgExec(&txn)).await?;
        txn.commit().await?;
        Ok(out)
    }

    pub(super) async fn upsert_pending(&self, p: NewPending, event: NewEvent) -> Result<bool, Error> {
        self.in_txn(async |e| ops::upsert_pending(e, &p, &event).await).await
    }

    pub(super) async fn check_code<R: Send + 'static, F: Send + 'static>(
        &self,
        user_id: &str,
        now: i64,
        limits: AttemptLimits,
        decide: impl FnOnce(Option<&Credential>) -> Verdict<R, F> + Send + 'static,
        record: impl FnOnce(&Checked<R, F>) -> Vec<NewEvent> + Send + 'static,
    ) -> Result<Checked<R, F>, Error> {
        self.in_txn(async |e| ops::check_code(e, user_id, now, limits, decide, record).await).await
    }

    pub(super) async fn admin_reset(&self, user_id: &str, event: NewEvent) -> Result<bool, Error> {
        self.in_txn(async |e| ops::admin_reset(e, user_id, &event).await).await
    }

    pub(super) async fn admin_unlock(&self, user_id: &str, now: i64, event: NewEvent) -> Result<bool, Error> {
        self.in_txn(async |e| ops::admin_unlock(e, user_id, now, &event).await).await
    }

    pub(super) async fn list_credentials(
        &self,
        after: &str,
        limit: u64,
        filter: StateFilter,
        now: i64,
    ) -> Result<Vec<Credential>, Error> {
        ops::list_credentials(&mut self.exec(), after, limit, filter, now).await
    }

    pub(super) async fn count_credentials(&self, filter: StateFilter, now: i64) -> Result<u64, Error> {
        ops::count_credentials(&mut self.exec(), filter, now).await
    }

    pub(super) async fn import(
        &self,
        rows: Vec<ImportRow>,
        replace: bool,
        now: i64,
    ) -> Result<Result<u64, usize>, Error> {
        let txn = self.db.begin().await?;
        let outcome = ops::import(&mut PgExec(&txn), &rows, replace, now).await?;
        match outcome {
            Ok(_) => txn.commit().await?,
            Err(_) => txn.rollback().await?,
        }
        Ok(outcome)
    }

    pub(super) async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u64,
    ) -> Result<Vec<Delivery>, Error> {
        ops::claim_deliveries(&mut self.exec(), now, lease_until, limit).await
    }

    pub(super) async fn deliveries_attempted(
        &self,
        outcomes: Vec<(i64, DeliveryOutcome)>,
        now: i64,
    ) -> Result<(), Error> {
        self.in_txn(async |e| ops::deliveries_attempted(e, &outcomes, now).await).await
    }

    pub(super) async fn release_deliveries(&self, ids: Vec<i64>) -> Result<(), Error> {
        self.in_txn(async |e| ops::release_deliveries(e, &ids).await).await
    }

    pub(super) async fn retry_failed_deliveries(&self, now: i64) -> Result<u64, Error> {
        ops::retry_failed_deliveries(&mut self.exec(), now).await
    }

    pub(super) async fn pending_deliveries(&self) -> Result<u64, Error> {
        ops::pending_deliveries(&mut self.exec()).await
    }

    pub(super) async fn undelivered(&self, limit: u64) -> Result<Vec<Undelivered>, Error> {
        ops::undelivered(&mut self.exec(), limit).await
    }

    pub(super) async fn remaining_recovery_codes(&self, user_id: &str) -> Result<u64, Error> {
        ops::remaining_recovery_codes(&mut self.exec(), user_id).await
    }

    pub(super) async fn events(&self, user_id: &str, limit: u64) -> Result<Vec<Event>, Error> {
        ops::events(&mut self.exec(), user_id, limit).await
    }

    pub(super) async fn prune(&self, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), Error> {
        ops::prune(&mut self.exec(), now, events_before, batch).await
    }

    pub(super) async fn secrets_per_key(&self) -> Result<Vec<(String, u64)>, Error> {
        ops::secrets_per_key(&mut self.exec()).await
    }

    pub(super) async fn reseal_secrets<X: Send + 'static>(
        &self,
        reseal: impl FnMut(Sealed<'_>) -> Result<Option<Reseal>, X> + Send + 'static,
    ) -> Result<Result<u64, X>, Error> {
        let txn = self.db.begin().await?;
        let outcome = ops::reseal_secrets(&mut PgExec(&txn), reseal).await?;
        match outcome {
            Ok(_) => txn.commit().await?,
            Err(_) => txn.rollback().await?,
        }
        Ok(outcome)
    }

    pub(super) async fn assertion_keys(&self, retired_after: i64) -> Result<Vec<AssertionKey>, Error> {
        ops::assertion_keys(&mut self.exec(), retired_after).await
    }

    pub(super) async fn insert_assertion_key(&self, key: AssertionKey, rotate: bool, now: i64) -> Result<bool, Error> {
        let txn = self.db.begin().await?;
        let inserted = ops::insert_assertion_key(&mut PgExec(&txn), &key, rotate, now).await?;
        txn.commit().await?;
        Ok(inserted)
    }

    pub(super) async fn users_with_recovery_codes_not_under(&self, key_id: &str) -> Result<u64, Error> {
        ops::users_with_recovery_codes_not_under(&mut self.exec(), key_id).await
    }
}
