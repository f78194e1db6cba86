//! Persistence: the connection, the entities and every query Twofold runs.
//!
//! Every state change that a race could abuse is one conditional statement (or a transaction
//! whose first statement is one) whose affected-row count decides the outcome: the database, not
//! process memory, is the single source of truth, so any number of Twofold instances may share it.
//!
//! Each statement is written once ([`sql`]) and each operation once ([`ops`], over [`exec::Exec`]);
//! two engines run them: [`postgres`] (sea-orm's sqlx pool) and [`sqlite`] (rusqlite, called in
//! place, with one writer thread doing group commit). The schema and its migrations are
//! sea-orm's (the `migration` crate). The store speaks its own types: rows ([`Credential`],
//! [`Event`]) and errors ([`Error`]); the sea-orm [`entities`] are for tests and tools only.

pub mod entities;
mod error;
mod exec;
mod ops;
mod postgres;
mod sql;
mod sqlite;

pub use postgres::REMEMBERED_CREDENTIALS;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

pub use error::Error;
use postgres::PgStore;
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
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(4))
        // A connection used within the last second is handed out as it is; one idle for longer
        // is pinged first (the server may have restarted or a firewall dropped it). Pinging on
        // every checkout would cost each operation a round trip.
        .test_before_acquire_if_idle_for(Duration::from_secs(1));
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

/// Creates the SQLite database file with mode 0600 (it holds ciphertexts and hashes) before
/// SQLite opens it, and narrows an existing one and its `-wal` and `-shm` files to 0600 (files of
/// older versions were 0644). SQLite creates `-wal` and `-shm` with the mode of the database
/// file, so they follow.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            match std::fs::metadata(&file) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
                }
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    Ok(())
}

/// A user's TOTP credential (pending or enabled), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub user_id: String,
    /// The sealed secret (nonce ‖ ciphertext ‖ tag), see [`crate::crypto::Keyring::seal`].
    pub secret: Vec<u8>,
    /// The encryption key that sealed it.
    pub key_id: String,
    pub algorithm: String,
    pub digits: i32,
    pub period: i32,
    pub enabled: bool,
    /// While pending: when the pending secret expires (ms since the epoch).
    pub pending_expires_at: Option<i64>,
    pub enabled_at: Option<i64>,
    /// The last time step accepted (replay protection).
    pub last_used_step: Option<i64>,
    /// Consecutive failed checks since the last success or lockout.
    pub failed_attempts: i32,
    pub locked_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub user_id: String,
    pub kind: String,
    pub at: i64,
    pub correlation_id: Option<String>,
    /// Who did it, for admin actions (an admin's `sub`, or `cli`).
    pub actor: Option<String>,
    /// An admin's reason (never shown to the user).
    pub reason: Option<String>,
}

/// An event claimed for webhook delivery ([`Store::claim_deliveries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    /// The Standard Webhooks message id (the same on every attempt).
    pub webhook_id: String,
    pub user_id: String,
    pub kind: String,
    pub at: i64,
    pub correlation_id: Option<String>,
    pub actor: Option<String>,
    /// Attempts made before this one.
    pub attempts: i32,
    /// The start of its delivery window (the event's time, or the last `retry`).
    pub window_from: i64,
}

/// What one delivery attempt ended in ([`Store::deliveries_attempted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at the given time (ms).
    RetryAt {
        at: i64,
        error: String,
    },
    /// The window ended: kept as failed (`attempted`: after an attempt now, else without one).
    Failed {
        error: String,
        attempted: bool,
    },
}

/// A pending or failed webhook delivery, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    pub id: i64,
    pub webhook_id: String,
    pub user_id: String,
    pub kind: String,
    pub at: i64,
    /// `pending` or `failed`.
    pub delivery: String,
    pub attempts: i32,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Which credentials the admin listing returns: `ALL` (pending, enabled or locked), or one
/// state (`PENDING`, `ENABLED`, `LOCKED`), as the SQL of [`sql::LIST_CREDENTIALS`] spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    All,
    Pending,
    Enabled,
    Locked,
}

impl StateFilter {
    fn as_sql(self) -> &'static str {
        match self {
            StateFilter::All => "ALL",
            StateFilter::Pending => "PENDING",
            StateFilter::Enabled => "ENABLED",
            StateFilter::Locked => "LOCKED",
        }
    }
}

/// One imported credential ([`Store::import`]): the secret already sealed.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub user_id: String,
    pub secret: Vec<u8>,
    pub key_id: String,
    pub algorithm: String,
    pub digits: i32,
    pub period: i32,
    /// Its `IMPORTED` event.
    pub event: NewEvent,
}

/// An Ed25519 key that signs verification assertions (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionKey {
    /// The key's `kid` in JWS headers and the JWK Set.
    pub kid: String,
    /// The private key (32-byte seed), sealed under the encryption key `key_id`.
    pub secret: Vec<u8>,
    pub key_id: String,
    /// The 32-byte public key.
    pub public_key: Vec<u8>,
    /// Whether it is the key new assertions are signed with.
    pub current: bool,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// A sealed value that [`Store::reseal_secrets`] offers for re-sealing.
#[derive(Debug, Clone, Copy)]
pub enum Sealed<'a> {
    /// A user's TOTP secret (pending or enabled).
    TotpSecret { user_id: &'a str, key_id: &'a str, secret: &'a [u8] },
    /// An assertion signing key.
    AssertionKey { kid: &'a str, key_id: &'a str, secret: &'a [u8] },
}

impl Sealed<'_> {
    pub fn key_id(&self) -> &str {
        match self {
            Sealed::TotpSecret { key_id, .. } | Sealed::AssertionKey { key_id, .. } => key_id,
        }
    }
}

/// Rows [`Store::reseal_secrets`] reads at a time.
pub const RESEAL_PAGE: u64 = 1_000;

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

/// An audit event to store (in the unit of the change it reports).
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub user_id: String,
    pub kind: &'static str,
    pub at: i64,
    pub correlation_id: Option<String>,
    pub actor: Option<String>,
    pub reason: Option<String>,
    /// Set when the event is to be sent to the webhook receiver: its message id. The event is
    /// then queued for delivery in the same transaction (the outbox).
    pub webhook_id: Option<String>,
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

/// How many failed checks a credential takes before it locks, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    pub max_attempts: i32,
    pub lockout_ms: i64,
}

/// What a code check decided from the credential it read ([`Store::check_code`]).
#[derive(Debug, Clone)]
pub enum Verdict<R, F> {
    /// The code is right: apply this change and reset the failure counter.
    Accept(Change),
    /// Consume one unused recovery code whose hash is among `hashes` (one per key that may have
    /// produced it); with `disable`, delete the credential and its codes too. When no such code
    /// exists, it counts as the failure `failure`.
    RecoveryCode { hashes: Vec<Vec<u8>>, disable: bool, failure: F },
    /// The code is wrong (or replayed): count one failure.
    Fail(F),
    /// No code is checked (not enabled, locked, …): nothing is written.
    Refuse(R),
}

/// The change a successful code check makes.
#[derive(Debug, Clone)]
pub enum Change {
    /// Records `step` as the last used one (verify); optionally stores the secret re-sealed
    /// under the current key.
    ConsumeStep { step: i64, reseal: Option<Reseal> },
    /// Records `step` and replaces the whole recovery-code set.
    Regenerate { step: i64, code_hashes: Vec<Vec<u8>>, key_id: String },
    /// Deletes the credential and its recovery codes.
    Disable,
    /// Turns the pending secret into the enabled credential, records `step` and stores a new
    /// recovery-code set.
    Enable { step: i64, code_hashes: Vec<Vec<u8>>, key_id: String },
}

/// The outcome of [`Store::check_code`].
#[derive(Debug, PartialEq, Eq)]
pub enum Checked<R, F> {
    Accepted,
    Failed(F, FailureOutcome),
    Refused(R),
}

/// A pending secret replaced by a newer key (rotation): the new ciphertext and its key id.
#[derive(Debug, Clone)]
pub struct Reseal {
    pub secret: Vec<u8>,
    pub key_id: String,
}

#[derive(Debug, Clone)]
enum Engine {
    Postgres(PgStore),
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
/// On PostgreSQL every operation has [`PG_DEADLINE`]: when the server or the network is gone,
/// the caller gets [`Error::Unavailable`] in time instead of waiting on a dead connection (SPEC
/// §10: answered within 6 s). A transaction cut short is rolled back by the server.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.engine {
            // Boxed: sqlx's futures are kilobytes, and every future that awaits a `Store` call
            // (up to the HTTP handler's) would otherwise carry that size, on SQLite too, and be
            // copied whole each time it is moved.
            Engine::Postgres(s) => match tokio::time::timeout(PG_DEADLINE, Box::pin(s.$method($($arg),*))).await {
                Ok(result) => result,
                Err(_) => Err(Error::deadline()),
            },
            Engine::Sqlite(s) => s.$method($($arg),*).await,
        }
    };
}

/// [`dispatch!`] without the deadline, for the operator's bulk operations (import, reseal),
/// which may take minutes.
macro_rules! dispatch_unbounded {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.engine {
            Engine::Postgres(s) => Box::pin(s.$method($($arg),*)).await,
            Engine::Sqlite(s) => s.$method($($arg),*).await,
        }
    };
}

/// How long one PostgreSQL operation may take, connection included.
pub const PG_DEADLINE: Duration = Duration::from_secs(5);

impl Store {
    /// Opens the database: on SQLite the in-place engine (plus one sea-orm connection for
    /// migrations and tools), on PostgreSQL one pool of `max_connections`.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, Error> {
        if is_sqlite_url(url) {
            let path = sqlite_path(url).ok_or_else(|| {
                Error::from(DbErr::Custom("in-memory SQLite is not supported: name a database file".into()))
            })?;
            create_private(&path).map_err(|e| Error::Unavailable(Arc::new(e)))?;
            // Opened first: it switches the file to WAL.
            let db = connect(url, &PoolSettings { max_connections: 1 }).await?;
            let engine = Engine::Sqlite(Arc::new(SqliteStore::open(path)?));
            Ok(Store { db, engine })
        } else {
            let db = connect(url, &PoolSettings { max_connections }).await?;
            Ok(Store { engine: Engine::Postgres(PgStore::new(&db)), db })
        }
    }

    /// sea-orm's connection (migrations, tests, tools).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// `SELECT 1`, for readiness checks.
    pub async fn ping(&self) -> Result<(), Error> {
        dispatch!(self.ping())
    }

    pub async fn credential(&self, user_id: &str) -> Result<Option<Credential>, Error> {
        dispatch!(self.credential(user_id))
    }

    /// Inserts or overwrites the user's pending secret, and stores `event` with it in the same
    /// transaction. Returns `false` (and changes nothing) when the user's credential is enabled.
    /// The failure counter is kept, so starting over never clears a lockout.
    pub async fn upsert_pending(&self, p: NewPending, event: NewEvent) -> Result<bool, Error> {
        dispatch!(self.upsert_pending(p, event))
    }

    /// Runs one code check as a single atomic unit per user: reads the credential, lets
    /// `decide` judge the code against it, and in the same unit applies what it decided: the
    /// success's change (which resets the failure counter) or one counted failure (the failure
    /// that reaches `limits.max_attempts` locks the credential until `now + limits.lockout_ms`).
    ///
    /// Because the count of earlier failures that `decide` sees is the one on record, and the
    /// unit ends only after its own outcome is written, no code is ever judged against a stale
    /// count: concurrent guesses, guesses from other instances and the operations of one batched
    /// request are counted one after another (SPEC §10, "guesses are counted before they are
    /// judged"). On SQLite the unit is one job of the writer thread (which runs jobs one at a
    /// time, inside `BEGIN IMMEDIATE`, so also other processes wait); on PostgreSQL it is one
    /// transaction that reads the row with `SELECT … FOR UPDATE`, so any other check on the same
    /// user, from any instance, waits for it. The events `record` returns for the outcome are
    /// stored in the same unit, so no outcome is ever without its events (and no event without
    /// its outcome). `decide` and `record` must be quick and do no I/O (on SQLite they run on the
    /// writer thread).
    ///
    /// On PostgreSQL the common outcomes first take a shorter way with the same result
    /// (`ops::check_code_unlocked`): the row is read without a lock and judged; a refusal writes
    /// nothing, and an accepted verify is one statement that consumes the step and stores its
    /// event only if the credential is still the one judged, enabled, unlocked and below the
    /// step. A user whose verify was accepted that way is remembered by the instance (its last
    /// [`REMEMBERED_CREDENTIALS`] users, until it goes idle: [`Store::forget_copies`]), so their
    /// next verify skips the read: the remembered copy is judged and only an acceptance is taken
    /// from it, through that same statement, whose conditions fail on any copy that has gone
    /// stale. Whatever a concurrent change could
    /// have made different (that statement finding the conditions gone, a failure to count, any
    /// other change) goes the locked way above, which judges afresh — so `decide` and `record`
    /// may be called up to three times, and only the locked way counts failures or judges
    /// against a count.
    pub async fn check_code<R: Send + 'static, F: Send + 'static>(
        &self,
        user_id: &str,
        now: i64,
        limits: AttemptLimits,
        decide: impl Fn(Option<&Credential>) -> Verdict<R, F> + Send + 'static,
        record: impl Fn(&Checked<R, F>) -> Vec<NewEvent> + Send + 'static,
    ) -> Result<Checked<R, F>, Error> {
        dispatch!(self.check_code(user_id, now, limits, decide, record))
    }

    /// Forgets the credentials remembered for the one-round-trip verify (see [`Store::check_code`];
    /// PostgreSQL only), so that their memory can be handed back while the instance is idle.
    pub fn forget_copies(&self) {
        if let Engine::Postgres(s) = &self.engine {
            s.forget_copies();
        }
    }

    /// Deletes the user's credential (enabled, pending or locked at the event's time) and their
    /// recovery codes, with `event`, in one transaction. `false` (and no event) when there was
    /// none (a setup that expired unlocked counts as none).
    pub async fn admin_reset(&self, user_id: &str, event: NewEvent) -> Result<bool, Error> {
        dispatch!(self.admin_reset(user_id, event))
    }

    /// Clears the user's failure counter and lockout, with `event`, in one transaction. `false`
    /// (and no event) when the user has no credential at `now` (as [`Store::admin_reset`]).
    pub async fn admin_unlock(&self, user_id: &str, now: i64, event: NewEvent) -> Result<bool, Error> {
        dispatch!(self.admin_unlock(user_id, now, event))
    }

    /// Up to `limit` credentials in state `filter` at `now`, after user `after`, in user order
    /// (keyset pagination over the primary key: a page costs the same at any depth).
    pub async fn list_credentials(
        &self,
        after: &str,
        limit: u64,
        filter: StateFilter,
        now: i64,
    ) -> Result<Vec<Credential>, Error> {
        dispatch!(self.list_credentials(after, limit, filter, now))
    }

    /// How many credentials are in state `filter` at `now`.
    pub async fn count_credentials(&self, filter: StateFilter, now: i64) -> Result<u64, Error> {
        dispatch!(self.count_credentials(filter, now))
    }

    /// Imports enabled credentials with their events, all in one transaction. Without `replace`,
    /// a user who already has a credential stops the import: nothing is written and the answer
    /// is `Err(index)` of that row.
    pub async fn import(&self, rows: Vec<ImportRow>, replace: bool, now: i64) -> Result<Result<u64, usize>, Error> {
        dispatch_unbounded!(self.import(rows, replace, now))
    }

    /// Claims up to `limit` webhook deliveries due at `now` until `lease_until` (a claim another
    /// instance left behind is taken over once its lease ends).
    pub async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: u64) -> Result<Vec<Delivery>, Error> {
        dispatch!(self.claim_deliveries(now, lease_until, limit))
    }

    /// Records what became of claimed deliveries (one transaction for all of them, so a busy
    /// deliverer costs one write per round, not one per event).
    pub async fn deliveries_attempted(&self, outcomes: Vec<(i64, DeliveryOutcome)>, now: i64) -> Result<(), Error> {
        if outcomes.is_empty() {
            return Ok(());
        }
        dispatch!(self.deliveries_attempted(outcomes, now))
    }

    /// Lets go of claimed deliveries without an attempt.
    pub async fn release_deliveries(&self, ids: Vec<i64>) -> Result<(), Error> {
        dispatch!(self.release_deliveries(ids))
    }

    /// Gives every failed delivery a fresh window from `now`; returns how many.
    pub async fn retry_failed_deliveries(&self, now: i64) -> Result<u64, Error> {
        dispatch!(self.retry_failed_deliveries(now))
    }

    /// How many events wait for delivery.
    pub async fn pending_deliveries(&self) -> Result<u64, Error> {
        dispatch!(self.pending_deliveries())
    }

    /// Pending and failed deliveries, oldest first.
    pub async fn undelivered(&self, limit: u64) -> Result<Vec<Undelivered>, Error> {
        dispatch!(self.undelivered(limit))
    }

    /// How many stored secrets (pending or enabled) are sealed under each key id.
    pub async fn secrets_per_key(&self) -> Result<Vec<(String, u64)>, Error> {
        dispatch!(self.secrets_per_key())
    }

    /// Re-seals, in one transaction, every stored secret for which `reseal` returns a new
    /// ciphertext (visited in pages of [`RESEAL_PAGE`] rows, so memory stays flat). Each row is
    /// replaced only if it still holds the ciphertext `reseal` saw (compare-and-set: a row that a
    /// login re-sealed or a new enrolment replaced meanwhile is already under the current key).
    /// The first error of `reseal` rolls everything back. Returns the rows changed.
    pub async fn reseal_secrets<X: Send + 'static>(
        &self,
        reseal: impl FnMut(Sealed<'_>) -> Result<Option<Reseal>, X> + Send + 'static,
    ) -> Result<Result<u64, X>, Error> {
        dispatch_unbounded!(self.reseal_secrets(reseal))
    }

    /// The assertion keys to publish: the current one and those retired after `retired_after`,
    /// newest first.
    pub async fn assertion_keys(&self, retired_after: i64) -> Result<Vec<AssertionKey>, Error> {
        dispatch!(self.assertion_keys(retired_after))
    }

    /// Stores `key` as the current assertion key. Without `rotate`, only when there is none yet
    /// (`false` otherwise: another instance was first); with `rotate`, the current key is retired
    /// at `now` in the same transaction.
    pub async fn insert_assertion_key(&self, key: AssertionKey, rotate: bool, now: i64) -> Result<bool, Error> {
        dispatch!(self.insert_assertion_key(key, rotate, now))
    }

    /// Users holding at least one recovery code not hashed under `key_id` (codes written before
    /// key ids were recorded included).
    pub async fn users_with_recovery_codes_not_under(&self, key_id: &str) -> Result<u64, Error> {
        dispatch!(self.users_with_recovery_codes_not_under(key_id))
    }

    pub async fn remaining_recovery_codes(&self, user_id: &str) -> Result<u64, Error> {
        dispatch!(self.remaining_recovery_codes(user_id))
    }

    /// The user's most recent events, newest first.
    pub async fn events(&self, user_id: &str, limit: u64) -> Result<Vec<Event>, Error> {
        dispatch!(self.events(user_id, limit))
    }

    /// Deletes up to `batch` pending enrolments that expired before `now` (and are not locked)
    /// and up to `batch` audit events older than `events_before`. Bounded, so a large backlog is
    /// worked off over several runs without long write locks. Returns (pending, events) deleted.
    pub async fn prune(&self, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), Error> {
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
