//! The store's errors: what went wrong, in the few kinds callers act on, with the driver's error
//! kept as the source (for logs, never for clients).

use std::sync::Arc;

/// The driver error behind a store error.
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A uniqueness rule was broken, or a row changed under a unit that expected it unchanged.
    #[error("conflicting change: {0}")]
    Conflict(#[source] Source),
    /// The database is locked by another writer for longer than the busy timeout, or a
    /// transaction had to be abandoned (deadlock, serialization failure).
    #[error("database busy: {0}")]
    Busy(#[source] Source),
    /// The database cannot be reached (connection refused or lost, pool exhausted, file not
    /// openable).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Source),
    /// The database or its disk is full.
    #[error("database full: {0}")]
    Full(#[source] Source),
    /// Anything else (a bug, a corrupt row, an unexpected answer).
    #[error("database error: {0}")]
    Other(#[source] Source),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl Error {
    /// A row that could not be decoded, or another internal inconsistency.
    pub(super) fn decode(message: String) -> Self {
        Error::Other(Arc::new(Message(message)))
    }

    /// A unit's conditional statement found the row changed although the unit holds it.
    pub(super) fn changed_underneath() -> Self {
        Error::Conflict(Arc::new(Message("the credential changed during a code check".into())))
    }

    /// A PostgreSQL operation did not finish within its deadline (the server or the network is
    /// gone).
    pub(super) fn deadline() -> Self {
        Error::Unavailable(Arc::new(Message("the database did not answer in time".into())))
    }

    /// The SQLite writer thread is gone.
    pub(super) fn writer_stopped() -> Self {
        Error::Unavailable(Arc::new(Message("the SQLite writer thread stopped".into())))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let code = match &e {
            rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
            _ => None,
        };
        let source: Source = Arc::new(e);
        match code {
            Some(C::DatabaseBusy | C::DatabaseLocked) => Error::Busy(source),
            Some(C::DiskFull) => Error::Full(source),
            Some(C::ConstraintViolation) => Error::Conflict(source),
            Some(C::CannotOpen | C::NotADatabase | C::SystemIoFailure | C::ReadOnly | C::PermissionDenied) => {
                Error::Unavailable(source)
            }
            _ => Error::Other(source),
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        use sea_orm::{DbErr, RuntimeErr};
        let sqlx = match &e {
            DbErr::Conn(RuntimeErr::SqlxError(s))
            | DbErr::Exec(RuntimeErr::SqlxError(s))
            | DbErr::Query(RuntimeErr::SqlxError(s)) => Some(s.clone()),
            _ => None,
        };
        let unavailable = matches!(e, DbErr::ConnectionAcquire(_) | DbErr::Conn(_));
        let source: Source = Arc::new(e);
        if unavailable {
            return Error::Unavailable(source);
        }
        match sqlx {
            Some(sqlx) => classify(&sqlx, source),
            None => Error::Other(source),
        }
    }
}

impl From<sea_orm::sqlx::Error> for Error {
    fn from(e: sea_orm::sqlx::Error) -> Self {
        let e = Arc::new(e);
        classify(&e.clone(), e)
    }
}

/// The kind of a driver error, with `source` kept for the logs.
fn classify(sqlx: &sea_orm::sqlx::Error, source: Source) -> Error {
    use sea_orm::sqlx::Error as S;
    match sqlx {
        S::Io(_) | S::Tls(_) | S::PoolTimedOut | S::PoolClosed | S::WorkerCrashed | S::Protocol(_) => {
            Error::Unavailable(source)
        }
        S::Database(db) => match db.code().as_deref() {
            // unique_violation, exclusion_violation
            Some("23505" | "23P01") => Error::Conflict(source),
            // disk_full, insufficient_resources, out_of_memory
            Some("53100" | "53000" | "53200") => Error::Full(source),
            // serialization_failure, deadlock_detected, lock_not_available
            Some("40001" | "40P01" | "55P03") => Error::Busy(source),
            // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
            Some("57P01" | "57P02" | "57P03" | "53300") => Error::Unavailable(source),
            _ => Error::Other(source),
        },
        _ => Error::Other(source),
    }
}
