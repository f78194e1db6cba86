//! How the store's operations ([`super::ops`]) reach a database: [`Exec`] runs one statement of
//! [`super::sql`] with its parameters. Two implementations: [`super::sqlite`]'s, on a rusqlite
//! connection (synchronous: its futures are ready when first polled, see [`run_ready`]), and
//! [`super::postgres`]'s, on a sea-orm connection or transaction.

use std::future::Future;

use super::Error;
use super::sql::{Kind, Query};

/// A statement parameter (`$1`, `$2`, … in the order given).
#[derive(Debug, Clone, Copy)]
pub(super) enum Param<'a> {
    I32(i32),
    I64(i64),
    Text(&'a str),
    Blob(&'a [u8]),
    /// NULL of the given type (PostgreSQL wants one).
    Null(Kind),
}

impl From<i32> for Param<'_> {
    fn from(v: i32) -> Self {
        Param::I32(v)
    }
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::I64(v)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Blob(v)
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Param::Null(Kind::Text), Param::Text)
    }
}

impl<'a> From<Option<&'a [u8]>> for Param<'a> {
    fn from(v: Option<&'a [u8]>) -> Self {
        v.map_or(Param::Null(Kind::Blob), Param::Blob)
    }
}

/// A decoded column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Blob(Vec<u8>),
}

/// One result row, decoded by the column kinds its [`Query`] declares.
#[derive(Debug, Clone, Default)]
pub(super) struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, Error> {
        self.0.get(i).ok_or_else(|| Error::decode(format!("no column {i}")))
    }

    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>, Error> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(Error::decode(format!("column {i}: expected an integer, got {other:?}"))),
        }
    }

    pub fn i64(&self, i: usize) -> Result<i64, Error> {
        self.opt_i64(i)?.ok_or_else(|| Error::decode(format!("column {i} is NULL")))
    }

    pub fn i32(&self, i: usize) -> Result<i32, Error> {
        i32::try_from(self.i64(i)?).map_err(|_| Error::decode(format!("column {i} overflows i32")))
    }

    pub fn bool(&self, i: usize) -> Result<bool, Error> {
        match self.at(i)? {
            Value::Bool(v) => Ok(*v),
            Value::Int(v) => Ok(*v != 0),
            other => Err(Error::decode(format!("column {i}: expected a boolean, got {other:?}"))),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, Error> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => Err(Error::decode(format!("column {i}: expected text, got {other:?}"))),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, Error> {
        self.opt_text(i)?.ok_or_else(|| Error::decode(format!("column {i} is NULL")))
    }

    pub fn blob(&self, i: usize) -> Result<Vec<u8>, Error> {
        match self.at(i)? {
            Value::Blob(v) => Ok(v.clone()),
            other => Err(Error::decode(format!("column {i}: expected a blob, got {other:?}"))),
        }
    }
}

/// Runs the statements of [`super::sql`] on one connection or transaction.
pub(super) trait Exec {
    /// Whether [`Query::locking`] statements lock rows here (PostgreSQL; SQLite's writer holds
    /// the whole database).
    const LOCKS_ROWS: bool;

    /// Whether a change and its event can be one statement (`sql::…_WITH_EVENT`: PostgreSQL's
    /// data-modifying `WITH`). Where not, they are two statements in the caller's unit.
    const FUSES_WRITES: bool;

    /// Runs a statement; returns the rows it changed.
    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> impl Future<Output = Result<u64, Error>>;

    /// Runs a query; returns its rows, decoded by [`Query::columns`].
    fn query(&mut self, query: Query, params: &[Param<'_>]) -> impl Future<Output = Result<Vec<Row>, Error>>;

    /// The first row of a query, if any.
    fn query_opt(&mut self, query: Query, params: &[Param<'_>]) -> impl Future<Output = Result<Option<Row>, Error>> {
        async move { Ok(self.query(query, params).await?.into_iter().next()) }
    }
}

/// Runs a future that completes on its first poll: the operations of [`super::ops`] on an
/// [`Exec`] that never waits (rusqlite on the SQLite writer thread). A future that is not ready
/// is a bug, reported as an error rather than blocking the thread.
pub(super) fn run_ready<T>(future: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => Err(Error::decode("a synchronous store operation did not complete".to_owned())),
    }
}
