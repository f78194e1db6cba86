//! Persistence: the connection, the entities and every query Twofold runs.
//!
//! Every state change that a race could abuse is one conditional statement (or a transaction
//! whose first statement is one) whose affected-row count decides the outcome: the database, not
//! process memory, is the single source of truth, so any number of Twofold instances may share it.
//!
//! Two engines run the same queries: [`orm`] (sea-orm over sqlx: PostgreSQL) and [`sqlite`]
//! (rusqlite, called in place: the embedded default). The schema, its migrations and the
//! entities are sea-orm's for both.

pub mod entities;
mod orm;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

pub use entities::{audit_event, credential, recovery_code};
use orm::OrmStore;
pub use sqlite::EventBuffer;
use sqlite::SqliteStore;

/// Pool and driver tuning.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
}

/// Opens a sea-orm pool on the database named by `url` (`sqlite://file.db` or `postgres://…`).
/// SQLite files are created if missing and run in WAL mode with `synchronous=NORMAL` and a 5 s
/// busy timeout.
pub async fn connect(url: &str, pool: &PoolSettings) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    // Statement logging would print bound values (ciphertexts, hashes): keep it off.
    opts.sqlx_logging(false)
        .max_connections(pool.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10));
    if is_sqlite_url(url) {
        opts.map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(sqlite::BUSY_TIMEOUT)
                .foreign_keys(true)
        });
    }
    Database::connect(opts).await
}

pub fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The database file of a `sqlite:` URL (`sqlite://twofold.db`, `sqlite:///var/lib/t.db?mode=rwc`,
/// `sqlite:t.db`); `None` for other URLs and for in-memory databases, which Twofold does not
/// support (each connection would see a database of its own).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let file = rest.split('?').next().unwrap_or("");
    if file.is_empty() || file == ":memory:" || rest.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(file))
}

/// A new pending enrolment.
#[derive(Debug, Clone)]
pub struct NewPending {
    pub user_id: String,
    pub secret: Vec<u8>,
    pub key_id: String,
    pub algorithm: String,
    pub digits: i32,
    pub period: i32,
    pub expires_at: i64,
    pub now: i64,
}

/// An audit event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub user_id: String,
    pub kind: &'static str,
    pub at: i64,
    pub correlation_id: Option<String>,
}

/// What a failed code check did to the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Counted; this many failures are now on record.
    Counted { failed_attempts: i32 },
    /// This failure reached the limit: the credential is locked until the given time.
    LockedOut { locked_until: i64 },
    /// The credential was already locked (or is gone): nothing was counted.
    NotCounted,
}

/// A pending secret replaced by a newer key (rotation): the new ciphertext and its key id.
#[derive(Debug, Clone)]
pub struct Reseal {
    pub secret: Vec<u8>,
    pub key_id: String,
}

#[derive(Debug, Clone)]
enum Engine {
    Orm(OrmStore),
    Sqlite(Arc<SqliteStore>),
}

/// The data layer. Cheap to clone.
///
/// On PostgreSQL every query goes through sea-orm's async pool. On SQLite the queries run in
/// place through rusqlite: a statement on a local file takes microseconds, less than handing it
/// to a driver thread and back (measured: through sqlx each statement cost 75–95 µs of wall time
/// and most of the CPU of a verify request went to waking those threads). Writes are serialised
/// on one connection (SQLite admits one writer anyway), reads use a small pool (WAL readers
/// never wait for the writer).
#[derive(Debug, Clone)]
pub struct Store {
    /// sea-orm's pool: migrations, tools and tests (on SQLite one connection, used by nothing
    /// on the request path).
    db: DatabaseConnection,
    engine: Engine,
}

/// Calls the same method on whichever engine the store runs.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.engine {
            Engine::Orm(s) => s.$method($($arg),*).await,
            Engine::Sqlite(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens the database: on SQLite the in-place engine (plus one sea-orm connection for
    /// migrations and tools), on PostgreSQL one pool of `max_connections`.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        if is_sqlite_url(url) {
            let path = sqlite_path(url)
                .ok_or_else(|| DbErr::Custom("in-memory SQLite is not supported: name a database file".into()))?;
            // Opened first: it creates the file and switches it to WAL.
            let db = connect(url, &PoolSettings { max_connections: 1 }).await?;
            let engine = Engine::Sqlite(Arc::new(SqliteStore::open(path)?));
            Ok(Store { db, engine })
        } else {
            let db = connect(url, &PoolSettings { max_connections }).await?;
            Ok(Store { engine: Engine::Orm(OrmStore::new(db.clone())), db })
        }
    }

    /// sea-orm's connection (migrations, tests, tools).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// `SELECT 1`, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbErr> {
        match &self.engine {
            Engine::Orm(_) => self.db.ping().await,
            Engine::Sqlite(s) => s.ping().await,
        }
    }

    pub async fn credential(&self, user_id: &str) -> Result<Option<credential::Model>, DbErr> {
        dispatch!(self.credential(user_id))
    }

    /// Inserts or overwrites the user's pending secret in one statement. Returns `false` (and
    /// changes nothing) when the user's credential is enabled. The failure counter is kept, so
    /// starting over never clears a lockout.
    pub async fn upsert_pending(&self, p: NewPending) -> Result<bool, DbErr> {
        dispatch!(self.upsert_pending(p))
    }

    /// Counts one failed check atomically; the failure that reaches `max_attempts` locks the
    /// credential until `now + lockout_ms` and restarts the counter. A locked credential is not
    /// counted again, so concurrent failures can never slip past the limit.
    pub async fn record_failure(
        &self,
        user_id: &str,
        now: i64,
        max_attempts: i32,
        lockout_ms: i64,
    ) -> Result<FailureOutcome, DbErr> {
        dispatch!(self.record_failure(user_id, now, max_attempts, lockout_ms))
    }

    /// Reads the user's credential, lets `decide` choose the step to consume (and, optionally, a
    /// re-encryption of the secret), and records that step as used if it is newer than the last
    /// used step and the credential is enabled and not locked (compare-and-set; resets the
    /// failure counter; stores the re-encrypted secret). Returns `Err(refusal)` untouched when
    /// `decide` refuses (nothing is written), else whether the compare-and-set recorded the step.
    /// On SQLite all of it is one job of the writer thread, so a login costs one hand-off instead
    /// of two: `decide` must be quick and do no I/O.
    pub async fn consume_checked_step<E: Send + 'static>(
        &self,
        user_id: &str,
        now: i64,
        decide: impl FnOnce(Option<&credential::Model>) -> Result<(i64, Option<Reseal>), E> + Send + 'static,
    ) -> Result<Result<bool, E>, DbErr> {
        match &self.engine {
            Engine::Orm(s) => match decide(s.credential(user_id).await?.as_ref()) {
                Ok((step, reseal)) => s.consume_step(user_id, step, now, reseal).await.map(Ok),
                Err(refusal) => Ok(Err(refusal)),
            },
            Engine::Sqlite(s) => s.consume_checked_step(user_id, now, decide).await,
        }
    }

    /// Turns the pending secret `expected_secret` into the enabled credential, records `step` as
    /// used and stores a new recovery-code set, in one transaction. Returns `false` when the
    /// pending secret changed, expired, was enabled meanwhile, or the credential got locked.
    pub async fn enable(
        &self,
        user_id: &str,
        expected_secret: &[u8],
        step: i64,
        now: i64,
        code_hashes: Vec<Vec<u8>>,
    ) -> Result<bool, DbErr> {
        dispatch!(self.enable(user_id, expected_secret, step, now, code_hashes))
    }

    /// Consumes `step` (compare-and-set, as [`Store::consume_checked_step`]) and replaces the whole
    /// recovery-code set, in one transaction.
    pub async fn regenerate_codes(
        &self,
        user_id: &str,
        step: i64,
        now: i64,
        code_hashes: Vec<Vec<u8>>,
    ) -> Result<bool, DbErr> {
        dispatch!(self.regenerate_codes(user_id, step, now, code_hashes))
    }

    /// Deletes the enabled credential and its recovery codes if `step` is newer than the last
    /// used step and the credential is not locked.
    pub async fn disable_with_step(&self, user_id: &str, step: i64, now: i64) -> Result<bool, DbErr> {
        dispatch!(self.disable_with_step(user_id, step, now))
    }

    /// Consumes one unused recovery code whose hash is among `hashes` (one hash per key that may
    /// have produced it) and resets the failure counter; with `disable`, also deletes the
    /// credential and the rest of the set. All in one transaction; `false` when no such code
    /// exists or the credential is locked or gone.
    pub async fn consume_recovery_code(
        &self,
        user_id: &str,
        hashes: Vec<Vec<u8>>,
        now: i64,
        disable: bool,
    ) -> Result<bool, DbErr> {
        dispatch!(self.consume_recovery_code(user_id, hashes, now, disable))
    }

    pub async fn remaining_recovery_codes(&self, user_id: &str) -> Result<u64, DbErr> {
        dispatch!(self.remaining_recovery_codes(user_id))
    }

    /// Inserts audit events (one transaction).
    pub async fn add_events(&self, events: Vec<NewEvent>) -> Result<(), DbErr> {
        if events.is_empty() {
            return Ok(());
        }
        dispatch!(self.add_events(events))
    }

    /// On SQLite, the buffer of audit events its writer thread inserts with each batch (see
    /// [`EventBuffer`]); `None` on engines without a writer thread.
    pub fn event_buffer(&self) -> Option<&EventBuffer> {
        match &self.engine {
            Engine::Orm(_) => None,
            Engine::Sqlite(s) => Some(s.event_buffer()),
        }
    }

    /// Waits until every write queued so far, buffered audit events included, is committed (a
    /// no-op on engines without a writer thread).
    pub async fn settle(&self) -> Result<(), DbErr> {
        match &self.engine {
            Engine::Orm(_) => Ok(()),
            Engine::Sqlite(s) => s.settle().await,
        }
    }

    /// The user's most recent events, newest first.
    pub async fn events(&self, user_id: &str, limit: u64) -> Result<Vec<audit_event::Model>, DbErr> {
        dispatch!(self.events(user_id, limit))
    }

    /// Deletes up to `batch` pending enrolments that expired before `now` (and are not locked)
    /// and up to `batch` audit events older than `events_before`. Bounded, so a large backlog is
    /// worked off over several runs without long write locks. Returns (pending, events) deleted.
    pub async fn prune(&self, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), DbErr> {
        dispatch!(self.prune(now, events_before, batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_of_urls() {
        assert_eq!(sqlite_path("sqlite://twofold.db"), Some(PathBuf::from("twofold.db")));
        assert_eq!(sqlite_path("sqlite:///var/lib/t.db?mode=rwc"), Some(PathBuf::from("/var/lib/t.db")));
        assert_eq!(sqlite_path("sqlite:t.db"), Some(PathBuf::from("t.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://file:x?mode=memory"), None);
        assert_eq!(sqlite_path("postgres://localhost/db"), None);
    }
}
