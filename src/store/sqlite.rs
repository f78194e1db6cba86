//! The store on SQLite through rusqlite.
//!
//! A statement on a local SQLite file takes a few microseconds; sqlx runs each one on a worker
//! thread per connection and hands the result back, which cost 75–95 µs of wall time per
//! statement here and, under load, most of the CPU of a verify request (the wake-ups of those
//! threads). So, like better-sqlite3 in Node, Twofold calls SQLite directly:
//!
//! * **one writer thread** owns the only writing connection (SQLite admits one writer at a time
//!   anyway) and commits whatever is queued as one transaction (group commit, see
//!   [`writer_loop`]). The credential lookup of every code check runs there too, on its warm
//!   page cache ([`SqliteStore::read_on_writer`]).
//! * **readers**: a small pool of connections, used in place on the calling thread for the rarer
//!   reads (events, recovery-code counts, readiness); in WAL mode they never wait for the writer.
//! * a checkpoint thread folds the WAL into the database file, so no commit pays for it.
//! * prepared statements are cached per connection; the SQL is the same as the sea-orm engine's.
//!
//! Only another process writing the same file (a second instance, `twofold migrate`) can make a
//! statement wait, for at most [`BUSY_TIMEOUT`]; that is SQLite's single-writer limit, and the
//! reason several instances should share PostgreSQL instead.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc as std_mpsc};

use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use sea_orm::{DbErr, RuntimeErr};

use super::{
    AttemptLimits, Change, Checked, FailureOutcome, NewEvent, NewPending, Reseal, Verdict, audit_event, credential,
};

/// How long a statement waits for another process's write lock before failing.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the WAL is checkpointed (see [`start_checkpointer`]).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// The size a WAL file is truncated to once it is reset (SPEC §10: at most 16 MiB when idle).
const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;
/// Idle reader connections kept (each holds its own page cache).
const MAX_IDLE_READERS: usize = 4;
/// Prepared statements cached per connection (Twofold runs about twenty distinct ones).
const STATEMENT_CACHE: usize = 48;

/// The condition "not locked at `:now`" (SQL text, for `concat!`).
macro_rules! not_locked {
    () => {
        "(locked_until IS NULL OR locked_until <= :now)"
    };
}

fn db_err(e: rusqlite::Error) -> DbErr {
    DbErr::Query(RuntimeErr::Internal(format!("sqlite: {e}")))
}

fn writer_stopped() -> DbErr {
    DbErr::Custom("the SQLite writer thread stopped".into())
}

pub(super) struct SqliteStore {
    path: PathBuf,
    /// The queue of the writer thread (see [`writer_loop`]); dropping it stops the thread.
    writer: mpsc::Sender<Box<dyn Job>>,
    readers: Mutex<Vec<Connection>>,
    /// Audit events waiting for the writer's next batch.
    events: EventBuffer,
    /// Dropping it stops the checkpoint thread (after one last checkpoint).
    _checkpointer: std_mpsc::Sender<()>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A WAL that grew under a burst of writes is cut back to this size when it is next reset.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A poisoned lock only means a panic elsewhere while it was held; the connection itself is
/// still consistent (an unfinished transaction rolls back when dropped).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn credential_row(row: &Row<'_>) -> rusqlite::Result<credential::Model> {
    Ok(credential::Model {
        user_id: row.get(0)?,
        secret: row.get(1)?,
        key_id: row.get(2)?,
        algorithm: row.get(3)?,
        digits: row.get(4)?,
        period: row.get(5)?,
        enabled: row.get(6)?,
        pending_expires_at: row.get(7)?,
        enabled_at: row.get(8)?,
        last_used_step: row.get(9)?,
        failed_attempts: row.get(10)?,
        locked_until: row.get(11)?,
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
    })
}

impl SqliteStore {
    pub(super) fn open(path: PathBuf) -> Result<Self, DbErr> {
        let writer = open_connection(&path).map_err(db_err)?;
        // The writer never checkpoints: a checkpoint copies the WAL into the database file and
        // fsyncs both, milliseconds that would land on whichever request's commit crossed the
        // threshold. A thread of its own does it instead.
        let checkpointer = start_checkpointer(open_connection(&path).map_err(db_err)?)
            .map_err(|e| DbErr::Custom(format!("could not start the SQLite checkpoint thread: {e}")))?;
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(db_err)?;
        let (queue, jobs) = mpsc::channel(WRITE_QUEUE);
        let events = EventBuffer::default();
        let buffered = events.clone();
        std::thread::Builder::new()
            .name("twofold-writer".into())
            .spawn(move || writer_loop(&writer, jobs, &buffered))
            .map_err(|e| DbErr::Custom(format!("could not start the SQLite writer thread: {e}")))?;
        Ok(SqliteStore { path, writer: queue, readers: Mutex::new(Vec::new()), events, _checkpointer: checkpointer })
    }

    /// Runs `f` on an idle reader connection (opening one when none is idle).
    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, DbErr> {
        let idle = lock(&self.readers).pop();
        let conn = match idle {
            Some(c) => c,
            None => open_connection(&self.path).map_err(db_err)?,
        };
        let result = f(&conn).map_err(db_err);
        let mut readers = lock(&self.readers);
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        result
    }

    /// Runs `f` on the writer thread, in the transaction of the batch it joins; `keep` in its
    /// answer decides whether its changes stay (they are rolled back alone otherwise, as on an
    /// error: with `savepoint`, which a job that writes needs). Answers once the batch is
    /// committed.
    async fn write_job<R: Send + 'static>(
        &self,
        savepoint: bool,
        f: impl FnOnce(&Connection) -> rusqlite::Result<(R, bool)> + Send + 'static,
    ) -> Result<R, DbErr> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Call { savepoint, f: Some(f), out: None, reply });
        self.writer.send(job).await.map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    /// Runs the read `f` on the writer thread's connection, in the order of the write queue.
    ///
    /// The credential lookup on every code check runs here rather than on a reader: in WAL mode
    /// a connection drops its whole page cache whenever another connection has committed, so
    /// under a write load a reader re-reads every B-tree page it needs (`pread` system calls;
    /// measured 12 µs of CPU per lookup during the verify load), while the writer's own cache
    /// stays warm (about 2 µs). The answer comes after the batch it joined is committed, so it
    /// never reflects a write that is then rolled back.
    async fn read_on_writer<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, DbErr> {
        self.write_job(false, move |c| f(c).map(|r| (r, true))).await
    }

    /// Runs `f` on the writer thread; its changes stay unless it fails.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, DbErr> {
        self.write_job(true, move |c| f(c).map(|r| (r, true))).await
    }

    /// Runs `f` on the writer thread as one atomic unit: its changes stay when it returns
    /// `Ok(true)` and are rolled back otherwise.
    async fn write_txn(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<bool> + Send + 'static,
    ) -> Result<bool, DbErr> {
        self.write_job(true, move |c| f(c).map(|keep| (keep, keep))).await
    }

    /// Readiness: a read, and a writer thread that still runs.
    pub(super) async fn ping(&self) -> Result<(), DbErr> {
        if self.writer.is_closed() {
            return Err(writer_stopped());
        }
        self.read(|c| c.prepare_cached("SELECT 1")?.query_row([], |_| Ok(())))
    }

    /// The user's credential, read on the writer thread (see [`SqliteStore::read_on_writer`]).
    pub(super) async fn credential(&self, user_id: &str) -> Result<Option<credential::Model>, DbErr> {
        let user_id = user_id.to_owned();
        self.read_on_writer(move |c| credential_on(c, &user_id)).await
    }

    /// One code check as one writer job (see `Store::check_code`).
    pub(super) async fn check_code<R: Send + 'static, F: Send + 'static>(
        &self,
        user_id: &str,
        now: i64,
        limits: AttemptLimits,
        decide: impl FnOnce(Option<&credential::Model>) -> Verdict<R, F> + Send + 'static,
    ) -> Result<Checked<R, F>, DbErr> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            let user = user_id.as_str();
            Ok(match decide(credential_on(c, user)?.as_ref()) {
                Verdict::Refuse(answer) => Checked::Refused(answer),
                Verdict::Fail(failure) => Checked::Failed(failure, record_failure_on(c, user, now, limits)?),
                Verdict::Accept(change) => {
                    apply_on(c, user, now, change)?;
                    Checked::Accepted
                }
                Verdict::RecoveryCode { hashes, disable, failure } => {
                    if use_recovery_code_on(c, user, &hashes, now, disable)? {
                        Checked::Accepted
                    } else {
                        Checked::Failed(failure, record_failure_on(c, user, now, limits)?)
                    }
                }
            })
        })
        .await
    }

    pub(super) async fn upsert_pending(&self, p: NewPending) -> Result<bool, DbErr> {
        self.write(move |c| {
            let changed = c
                .prepare_cached(
                    "INSERT INTO totp_credentials (user_id, secret, key_id, algorithm, digits, period, enabled, \
                     pending_expires_at, enabled_at, last_used_step, failed_attempts, locked_until, created_at, \
                     updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, NULL, NULL, 0, NULL, ?8, ?8) \
                     ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, key_id = excluded.key_id, \
                     algorithm = excluded.algorithm, digits = excluded.digits, period = excluded.period, \
                     pending_expires_at = excluded.pending_expires_at, last_used_step = excluded.last_used_step, \
                     updated_at = excluded.updated_at WHERE totp_credentials.enabled = 0",
                )?
                .execute(params![
                    p.user_id,
                    p.secret,
                    p.key_id,
                    p.algorithm,
                    p.digits,
                    p.period,
                    p.expires_at,
                    p.now
                ])?;
            Ok(changed == 1)
        })
        .await
    }

    pub(super) async fn remaining_recovery_codes(&self, user_id: &str) -> Result<u64, DbErr> {
        self.read(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1")?
                .query_row([user_id], |r| r.get::<_, i64>(0))
        })
        .map(|n| u64::try_from(n).unwrap_or(0))
    }

    pub(super) async fn add_events(&self, events: Vec<NewEvent>) -> Result<(), DbErr> {
        self.write_txn(move |t| insert_events_on(t, &events).map(|()| true)).await.map(drop)
    }

    /// The buffer of audit events that the writer thread adds to its next batch.
    pub(super) fn event_buffer(&self) -> &EventBuffer {
        &self.events
    }

    /// Waits until every write queued before this call, and every buffered audit event, is
    /// committed (or has failed).
    pub(super) async fn settle(&self) -> Result<(), DbErr> {
        self.write(|_| Ok(())).await
    }

    pub(super) async fn events(&self, user_id: &str, limit: u64) -> Result<Vec<audit_event::Model>, DbErr> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, user_id, kind, at, correlation_id FROM audit_events WHERE user_id = ?1 \
                 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![user_id, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(audit_event::Model {
                    id: r.get(0)?,
                    user_id: r.get(1)?,
                    kind: r.get(2)?,
                    at: r.get(3)?,
                    correlation_id: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    pub(super) async fn prune(&self, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), DbErr> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let pending = self
            .write(move |c| {
                c.prepare_cached(concat!(
                    "DELETE FROM totp_credentials WHERE user_id IN (SELECT user_id FROM totp_credentials \
                 WHERE enabled = 0 AND pending_expires_at < :now AND ",
                    not_locked!(),
                    " LIMIT :batch)"
                ))?
                .execute(rusqlite::named_params! { ":now": now, ":batch": batch })
            })
            .await?;
        let events = self
            .write(move |c| {
                c.prepare_cached(
                    "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < ?1 LIMIT ?2)",
                )?
                .execute(params![events_before, batch])
            })
            .await?;
        Ok((pending as u64, events as u64))
    }
}

/// Writes waiting for the writer thread at most; beyond that, requests wait to queue.
const WRITE_QUEUE: usize = 4096;
/// Jobs committed together at most.
const MAX_BATCH: usize = 256;

/// A unit of work for the writer thread.
trait Job: Send {
    /// Runs inside the batch's transaction; `false` means "roll my changes back".
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch is committed (or failed as a whole).
    fn finish(self: Box<Self>, batch: Result<(), &str>);
    /// Whether the job needs a savepoint of its own to be rolled back alone (a read does not).
    fn needs_savepoint(&self) -> bool {
        true
    }
}

struct Call<F, R> {
    savepoint: bool,
    f: Option<F>,
    out: Option<rusqlite::Result<R>>,
    reply: oneshot::Sender<Result<R, DbErr>>,
}

impl<F, R> Job for Call<F, R>
where
    F: FnOnce(&Connection) -> rusqlite::Result<(R, bool)> + Send,
    R: Send,
{
    fn needs_savepoint(&self) -> bool {
        self.savepoint
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else { return false };
        let (out, keep) = match f(conn) {
            Ok((r, keep)) => (Ok(r), keep),
            Err(e) => (Err(e), false),
        };
        self.out = Some(out);
        keep
    }

    fn finish(self: Box<Self>, batch: Result<(), &str>) {
        let result = match (batch, self.out) {
            (Ok(()), Some(Ok(r))) => Ok(r),
            (Ok(()), Some(Err(e))) => Err(db_err(e)),
            (Err(e), _) => Err(DbErr::Query(RuntimeErr::Internal(format!("sqlite: {e}")))),
            (Ok(()), None) => Err(DbErr::Custom("write job did not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

/// Audit events on their way to the database: requests add them without waking the writer
/// thread, which inserts whatever is buffered in the transaction of each batch it commits. Under
/// load a batch comes every few hundred microseconds anyway, so an event costs its insert and no
/// thread wake-up or commit of its own; when the writer is idle, the audit log asks for an empty
/// batch ([`crate::audit`]). Cheap to clone (one shared buffer). Unbounded, but every request
/// that adds an event also waits for a write of its own, so it holds at most a few events per
/// request in flight.
#[derive(Debug, Clone, Default)]
pub struct EventBuffer(std::sync::Arc<Mutex<Vec<NewEvent>>>);

impl EventBuffer {
    /// Adds one event; `true` when the buffer was empty, i.e. no batch is yet due to write it.
    pub fn push(&self, event: NewEvent) -> bool {
        let mut events = lock(&self.0);
        events.push(event);
        events.len() == 1
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }

    fn take(&self) -> Vec<NewEvent> {
        std::mem::take(&mut *lock(&self.0))
    }
}

/// The writer thread: takes every job waiting (up to [`MAX_BATCH`]), runs them one after the
/// other in one `BEGIN IMMEDIATE … COMMIT` (each write in a savepoint of its own, so one job's
/// rollback or error leaves the others), inserts the buffered audit events, commits once, then
/// answers them all. Under load this is group commit: one commit for many requests. Jobs run in
/// arrival order, so a compare-and-set decides exactly as it would alone. Ends when the store is
/// dropped.
fn writer_loop(conn: &Connection, mut queue: mpsc::Receiver<Box<dyn Job>>, buffer: &EventBuffer) {
    let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let events = buffer.take();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_batch(conn, &mut jobs, &events)));
        let outcome = match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(error = %e, jobs = jobs.len(), events = events.len(), "SQLite write batch failed");
                Err(e.to_string())
            }
            Err(_) => {
                tracing::error!(jobs = jobs.len(), events = events.len(), "SQLite write batch panicked");
                Err("write batch panicked".to_owned())
            }
        };
        for job in jobs.drain(..) {
            job.finish(outcome.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
}

fn run_batch(conn: &Connection, jobs: &mut [Box<dyn Job>], events: &[NewEvent]) -> rusqlite::Result<()> {
    // Dropped without commit (an error below, or a panic), the transaction rolls back.
    let txn = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    if let ([job], []) = (&mut *jobs, events) {
        return if job.run(&txn) { txn.commit() } else { txn.rollback() };
    }
    for job in jobs.iter_mut() {
        if !job.needs_savepoint() {
            job.run(&txn);
            continue;
        }
        txn.prepare_cached("SAVEPOINT job")?.execute([])?;
        if !job.run(&txn) {
            txn.prepare_cached("ROLLBACK TO job")?.execute([])?;
        }
        txn.prepare_cached("RELEASE job")?.execute([])?;
    }
    if !events.is_empty()
        && let Err(error) = insert_events_on(&txn, events)
    {
        // A failed INSERT undoes itself; the batch's other changes stand.
        tracing::error!(%error, count = events.len(), "audit events could not be written");
    }
    txn.commit()
}

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] (`PASSIVE`: it never blocks the writer or
/// readers, and copies what no reader still needs) on its own connection and thread, until the
/// returned sender is dropped. Once writes stop (the WAL did not grow since the last tick and is
/// fully copied), one `TRUNCATE` checkpoint empties the file, so a WAL that grew under a burst
/// does not keep its size on disk.
fn start_checkpointer(conn: Connection) -> std::io::Result<std_mpsc::Sender<()>> {
    let (stop, stopped) = std_mpsc::channel::<()>();
    // WAL frames seen at the last tick (-1: not known).
    let mut last_frames = -1_i64;
    let mut checkpoint = move || {
        let passive =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
        match passive {
            Ok((frames, copied)) if frames > 0 && frames == copied && frames == last_frames => {
                if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                    tracing::warn!(%error, "SQLite truncating checkpoint failed; will retry");
                }
                last_frames = -1;
            }
            Ok((frames, _)) => last_frames = frames,
            Err(error) => tracing::warn!(%error, "SQLite checkpoint failed; will retry"),
        }
    };
    std::thread::Builder::new().name("twofold-checkpoint".into()).spawn(move || {
        while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
            checkpoint();
        }
        checkpoint();
    })?;
    Ok(stop)
}

fn credential_on(c: &Connection, user_id: &str) -> rusqlite::Result<Option<credential::Model>> {
    c.prepare_cached(
        "SELECT user_id, secret, key_id, algorithm, digits, period, enabled, pending_expires_at, enabled_at, \
         last_used_step, failed_attempts, locked_until, created_at, updated_at \
         FROM totp_credentials WHERE user_id = ?1",
    )?
    .query_row([user_id], credential_row)
    .optional()
}

/// Counts one failed check (see `Store::check_code`).
fn record_failure_on(
    c: &Connection,
    user_id: &str,
    now: i64,
    limits: AttemptLimits,
) -> rusqlite::Result<FailureOutcome> {
    let row = c
        .prepare_cached(concat!(
            "UPDATE totp_credentials SET \
             failed_attempts = CASE WHEN failed_attempts + 1 >= :max THEN 0 ELSE failed_attempts + 1 END, \
             locked_until = CASE WHEN failed_attempts + 1 >= :max THEN :until ELSE locked_until END, \
             updated_at = :now WHERE user_id = :user AND ",
            not_locked!(),
            " RETURNING failed_attempts, locked_until"
        ))?
        .query_row(
            rusqlite::named_params! {
                ":max": limits.max_attempts,
                ":until": now.saturating_add(limits.lockout_ms),
                ":now": now,
                ":user": user_id,
            },
            |r| Ok((r.get::<_, i32>(0)?, r.get::<_, Option<i64>>(1)?)),
        )
        .optional()?;
    Ok(match row {
        None => FailureOutcome::NotCounted,
        Some((_, Some(until))) if until > now => FailureOutcome::LockedOut { locked_until: until },
        Some((failed_attempts, _)) => FailureOutcome::Counted { failed_attempts },
    })
}

/// The row a conditional statement of a check expected was not there: the check read one state
/// and found another, which the serial writer thread rules out. Rolls the job back.
fn changed_underneath() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some("the credential changed during a code check".into()),
    )
}

/// Applies a successful check's change. Each statement keeps its conditions (enabled, not
/// locked, newer step), so a broken assumption fails loudly instead of writing.
fn apply_on(c: &Connection, user_id: &str, now: i64, change: Change) -> rusqlite::Result<()> {
    let applied = match change {
        Change::ConsumeStep { step, reseal } => consume_step_on(c, user_id, step, now, reseal)?,
        Change::Regenerate { step, code_hashes, key_id } => {
            consume_step_on(c, user_id, step, now, None)? && {
                replace_codes_on(c, user_id, &code_hashes, &key_id, now)?;
                true
            }
        }
        Change::Disable => {
            let deleted = c
                .prepare_cached(concat!(
                    "DELETE FROM totp_credentials WHERE user_id = :user AND enabled = 1 AND ",
                    not_locked!(),
                    ""
                ))?
                .execute(rusqlite::named_params! { ":user": user_id, ":now": now })?;
            delete_codes_on(c, user_id)?;
            deleted == 1
        }
        Change::Enable { step, code_hashes, key_id } => {
            let updated = c
                .prepare_cached(concat!(
                    "UPDATE totp_credentials SET enabled = 1, enabled_at = :now, pending_expires_at = NULL, \
                     last_used_step = :step, failed_attempts = 0, locked_until = NULL, updated_at = :now \
                     WHERE user_id = :user AND enabled = 0 AND pending_expires_at > :now AND ",
                    not_locked!(),
                    ""
                ))?
                .execute(rusqlite::named_params! { ":now": now, ":step": step, ":user": user_id })?;
            updated == 1 && {
                replace_codes_on(c, user_id, &code_hashes, &key_id, now)?;
                true
            }
        }
    };
    if applied { Ok(()) } else { Err(changed_underneath()) }
}

/// Consumes one recovery code among `hashes` and resets the failure counter (or, with
/// `disable`, deletes the credential and the rest of the set). `false` when no code matched.
fn use_recovery_code_on(
    c: &Connection,
    user_id: &str,
    hashes: &[Vec<u8>],
    now: i64,
    disable: bool,
) -> rusqlite::Result<bool> {
    let mut delete = c.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1 AND code_hash = ?2")?;
    let mut used = 0;
    for hash in hashes {
        used += delete.execute(params![user_id, hash])?;
        if used > 0 {
            break;
        }
    }
    if used != 1 {
        return Ok(false);
    }
    if disable {
        apply_on(c, user_id, now, Change::Disable)?;
    } else {
        let reset = c
            .prepare_cached(concat!(
                "UPDATE totp_credentials SET failed_attempts = 0, locked_until = NULL, updated_at = :now \
                 WHERE user_id = :user AND enabled = 1 AND ",
                not_locked!(),
                ""
            ))?
            .execute(rusqlite::named_params! { ":user": user_id, ":now": now })?;
        if reset != 1 {
            return Err(changed_underneath());
        }
    }
    Ok(true)
}

fn consume_step_on(
    c: &Connection,
    user_id: &str,
    step: i64,
    now: i64,
    reseal: Option<Reseal>,
) -> rusqlite::Result<bool> {
    let (secret, key_id) = match reseal {
        Some(r) => (Some(r.secret), Some(r.key_id)),
        None => (None, None),
    };
    let changed = c
        .prepare_cached(concat!(
            "UPDATE totp_credentials SET last_used_step = :step, failed_attempts = 0, locked_until = NULL, \
             updated_at = :now, secret = COALESCE(:secret, secret), key_id = COALESCE(:key_id, key_id) \
             WHERE user_id = :user AND enabled = 1 AND (last_used_step IS NULL OR last_used_step < :step) \
             AND ",
            not_locked!(),
            ""
        ))?
        .execute(rusqlite::named_params! {
            ":step": step, ":now": now, ":secret": secret, ":key_id": key_id, ":user": user_id,
        })?;
    Ok(changed == 1)
}

fn insert_events_on(c: &Connection, events: &[NewEvent]) -> rusqlite::Result<()> {
    let mut insert =
        c.prepare_cached("INSERT INTO audit_events (user_id, kind, at, correlation_id) VALUES (?1, ?2, ?3, ?4)")?;
    for e in events {
        insert.execute(params![e.user_id, e.kind, e.at, e.correlation_id])?;
    }
    Ok(())
}

fn delete_codes_on(c: &Connection, user_id: &str) -> rusqlite::Result<usize> {
    c.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")?.execute([user_id])
}

fn replace_codes_on(
    c: &Connection,
    user_id: &str,
    code_hashes: &[Vec<u8>],
    key_id: &str,
    now: i64,
) -> rusqlite::Result<()> {
    delete_codes_on(c, user_id)?;
    let mut insert = c.prepare_cached(
        "INSERT INTO recovery_codes (user_id, code_hash, key_id, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for hash in code_hashes {
        insert.execute(params![user_id, hash, key_id, now])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs that share a batch keep or lose their changes independently: a job that returns
    /// `keep = false` or fails is rolled back alone, the others commit, and every caller gets
    /// its own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_in_one_batch_commit_or_roll_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(dir.path().join("t.db")).unwrap());
        store.write(|c| c.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")).await.unwrap();
        // Hold the writer thread until all 300 jobs are queued, so they run as batches.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel::<()>();
        let gate = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(move |_| {
                        let _ = started.send(());
                        Ok(held.recv().is_ok())
                    })
                    .await
            }
        });
        running.await.unwrap();
        let mut tasks = Vec::new();
        for n in 0..300_i64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                match n % 3 {
                    // kept
                    0 => store.write_txn(move |c| Ok(c.execute("INSERT INTO t VALUES (?1)", [n])? == 1)).await,
                    // inserts, then asks for a rollback
                    1 => store
                        .write_txn(move |c| {
                            c.execute("INSERT INTO t VALUES (?1)", [n])?;
                            Ok(false)
                        })
                        .await
                        .map(|kept| !kept),
                    // inserts, then fails
                    _ => store
                        .write(move |c| {
                            c.execute("INSERT INTO t VALUES (?1)", [n])?;
                            c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                            Ok(true)
                        })
                        .await
                        .map(|_| false)
                        .or(Ok(true)),
                }
            }));
        }
        while WRITE_QUEUE - store.writer.capacity() < 300 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        assert!(gate.await.unwrap().unwrap());
        for task in tasks {
            assert!(task.await.unwrap().unwrap());
        }
        let kept: Vec<i64> =
            store.read(|c| c.prepare("SELECT n FROM t ORDER BY n")?.query_map([], |r| r.get(0))?.collect()).unwrap();
        assert_eq!(kept, (0..300).step_by(3).collect::<Vec<i64>>());
    }
}
