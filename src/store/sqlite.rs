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
//! * prepared statements are cached per connection. The statements and the operations are the
//!   PostgreSQL engine's ([`super::sql`], [`super::ops`]); [`SqliteExec`] runs them here.
//!
//! Only another process writing the same file (a second instance, `twofold migrate`) can make a
//! statement wait, for at most [`BUSY_TIMEOUT`]; that is SQLite's single-writer limit, and the
//! reason several instances should share PostgreSQL instead.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc as std_mpsc};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::exec::{Exec, Param, Row, Value, run_ready};
use super::sql::{Kind, Query};
use super::{
    AssertionKey, AttemptLimits, Checked, Credential, Delivery, DeliveryOutcome, Error, Event, ImportRow, NewEvent,
    NewPending, Reseal, Sealed, StateFilter, Undelivered, Verdict, ops,
};

/// How long a statement waits for another process's write lock before failing.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the WAL is checkpointed (see [`start_checkpointer`]).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// How long a checkpoint that restarts or truncates the WAL waits for the writer and readers.
const RESTART_WAIT: Duration = Duration::from_millis(50);
/// WAL content beyond which the checkpoint thread makes the writer start the WAL over (see
/// [`start_checkpointer`]).
const WAL_RESTART_BYTES: i64 = 16 * 1024 * 1024;
/// The size a WAL file is cut back to when the writer starts it over: under a steady load the file
/// is written over in place (no blocks to allocate); once writes stop the checkpoint thread
/// truncates it to zero (SPEC §10: at most 16 MiB within 10 s).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// Idle reader connections kept (each holds its own page cache).
const MAX_IDLE_READERS: usize = 4;
/// Prepared statements cached per connection (Twofold runs about twenty distinct ones).
const STATEMENT_CACHE: usize = 48;

pub(super) struct SqliteStore {
    path: PathBuf,
    /// The queue of the writer thread (see [`writer_loop`]); dropping it stops the thread.
    writer: mpsc::Sender<Box<dyn Job>>,
    readers: Mutex<Vec<Connection>>,
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

/// [`Exec`] on a rusqlite connection: statements from the connection's cache, parameters bound
/// by name (`$1`, `$2`, …), columns decoded by their declared kinds. Synchronous: its futures
/// are ready at once ([`run_ready`]).
pub(super) struct SqliteExec<'a>(pub &'a Connection);

/// Parameter names `$1`…`$16` (no statement has more).
const PARAM_NAMES: [&str; 16] =
    ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16"];

fn bind(stmt: &mut rusqlite::CachedStatement<'_>, params: &[Param<'_>]) -> Result<(), Error> {
    if params.len() > PARAM_NAMES.len() {
        return Err(Error::decode(format!("{} parameters: at most {} are supported", params.len(), PARAM_NAMES.len())));
    }
    for (name, param) in PARAM_NAMES.iter().zip(params) {
        let Some(index) = stmt.parameter_index(name)? else { continue };
        match *param {
            Param::I32(v) => stmt.raw_bind_parameter(index, v)?,
            Param::I64(v) => stmt.raw_bind_parameter(index, v)?,
            Param::Text(v) => stmt.raw_bind_parameter(index, v)?,
            Param::Blob(v) => stmt.raw_bind_parameter(index, v)?,
            Param::Null(_) => stmt.raw_bind_parameter(index, rusqlite::types::Null)?,
        }
    }
    Ok(())
}

fn decode(row: &rusqlite::Row<'_>, columns: &[Kind]) -> Result<Row, Error> {
    let mut values = Vec::with_capacity(columns.len());
    for (i, kind) in columns.iter().enumerate() {
        values.push(match (row.get_ref(i)?, kind) {
            (ValueRef::Null, _) => Value::Null,
            (ValueRef::Integer(v), Kind::Bool) => Value::Bool(v != 0),
            (ValueRef::Integer(v), _) => Value::Int(v),
            (ValueRef::Text(t), _) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            (ValueRef::Blob(b), _) => Value::Blob(b.to_vec()),
            (ValueRef::Real(_), _) => return Err(Error::decode(format!("column {i}: unexpected REAL"))),
        });
    }
    Ok(Row(values))
}

impl Exec for SqliteExec<'_> {
    const LOCKS_ROWS: bool = false;
    const FUSES_WRITES: bool = false;

    async fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, Error> {
        let mut stmt = self.0.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        Ok(stmt.raw_execute()? as u64)
    }

    async fn query(&mut self, query: Query, params: &[Param<'_>]) -> Result<Vec<Row>, Error> {
        let mut stmt = self.0.prepare_cached(query.sql)?;
        bind(&mut stmt, params)?;
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(decode(row, query.columns)?);
        }
        Ok(out)
    }
}

/// Runs one operation of [`ops`] on `c`.
macro_rules! op {
    ($c:expr, $op:ident ( $($arg:expr),* )) => {
        run_ready(ops::$op(&mut SqliteExec($c) $(, $arg)*))
    };
}

impl SqliteStore {
    pub(super) fn open(path: PathBuf) -> Result<Self, Error> {
        let writer = open_connection(&path)?;
        // The writer never checkpoints: a checkpoint copies the WAL into the database file and
        // fsyncs both, milliseconds that would land on whichever request's commit crossed the
        // threshold. A thread of its own does it instead.
        let checkpointer = start_checkpointer(open_connection(&path)?, WAL_RESTART_BYTES)
            .map_err(|e| Error::Unavailable(std::sync::Arc::new(e)))?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (queue, jobs) = mpsc::channel(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("twofold-writer".into())
            .spawn(move || writer_loop(&writer, jobs))
            .map_err(|e| Error::Unavailable(std::sync::Arc::new(e)))?;
        Ok(SqliteStore { path, writer: queue, readers: Mutex::new(Vec::new()), _checkpointer: checkpointer })
    }

    /// Runs `f` on an idle reader connection (opening one when none is idle).
    fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R, Error>) -> Result<R, Error> {
        let idle = lock(&self.readers).pop();
        let conn = match idle {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let result = f(&conn);
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
        f: impl FnOnce(&Connection) -> Result<(R, bool), Error> + Send + 'static,
    ) -> Result<R, Error> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Call { savepoint, f: Some(f), out: None, reply });
        self.writer.send(job).await.map_err(|_| Error::writer_stopped())?;
        answer.await.map_err(|_| Error::writer_stopped())?
    }

    /// Runs the read `f` on the writer thread's connection, in the order of the write queue.
    ///
    /// The credential lookup runs here rather than on a reader: in WAL mode a connection drops
    /// its whole page cache whenever another connection has committed, so under a write load a
    /// reader re-reads every B-tree page it needs (`pread` system calls; measured 12 µs of CPU
    /// per lookup during the verify load), while the writer's own cache stays warm (about 2 µs).
    /// It runs before the writes of the batch it joins and outside their transaction, so it sees
    /// committed data only (never a write that is then rolled back) and its answer does not
    /// depend on their commit: a commit that fails (a full disk) fails the writes alone.
    async fn read_on_writer<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        self.write_job(false, move |c| f(c).map(|r| (r, true))).await
    }

    /// Runs `f` on the writer thread; its changes stay unless it fails.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        self.write_job(true, move |c| f(c).map(|r| (r, true))).await
    }

    /// Readiness: a read, and a writer thread that still runs.
    pub(super) async fn ping(&self) -> Result<(), Error> {
        if self.writer.is_closed() {
            return Err(Error::writer_stopped());
        }
        self.read(|c| op!(c, ping()))
    }

    /// The user's credential, read on the writer thread (see [`SqliteStore::read_on_writer`]).
    pub(super) async fn credential(&self, user_id: &str) -> Result<Option<Credential>, Error> {
        let user_id = user_id.to_owned();
        self.read_on_writer(move |c| op!(c, credential(&user_id, false))).await
    }

    /// One code check as one writer job (see `Store::check_code`).
    pub(super) async fn check_code<R: Send + 'static, F: Send + 'static>(
        &self,
        user_id: &str,
        now: i64,
        limits: AttemptLimits,
        decide: impl Fn(Option<&Credential>) -> Verdict<R, F> + Send + 'static,
        record: impl Fn(&Checked<R, F>) -> Vec<NewEvent> + Send + 'static,
    ) -> Result<Checked<R, F>, Error> {
        let user_id = user_id.to_owned();
        self.write(move |c| op!(c, check_code(&user_id, now, limits, decide, record))).await
    }

    pub(super) async fn upsert_pending(&self, p: NewPending, event: NewEvent) -> Result<bool, Error> {
        self.write(move |c| op!(c, upsert_pending(&p, &event))).await
    }

    pub(super) async fn admin_reset(&self, user_id: &str, event: NewEvent) -> Result<bool, Error> {
        let user_id = user_id.to_owned();
        self.write(move |c| op!(c, admin_reset(&user_id, &event))).await
    }

    pub(super) async fn admin_unlock(&self, user_id: &str, now: i64, event: NewEvent) -> Result<bool, Error> {
        let user_id = user_id.to_owned();
        self.write(move |c| op!(c, admin_unlock(&user_id, now, &event))).await
    }

    pub(super) async fn list_credentials(
        &self,
        after: &str,
        limit: u64,
        filter: StateFilter,
        now: i64,
    ) -> Result<Vec<Credential>, Error> {
        self.read(|c| op!(c, list_credentials(after, limit, filter, now)))
    }

    pub(super) async fn count_credentials(&self, filter: StateFilter, now: i64) -> Result<u64, Error> {
        self.read(|c| op!(c, count_credentials(filter, now)))
    }

    /// One writer job: the whole import is one transaction, rolled back on a conflict.
    pub(super) async fn import(
        &self,
        rows: Vec<ImportRow>,
        replace: bool,
        now: i64,
    ) -> Result<Result<u64, usize>, Error> {
        self.write_job(true, move |c| {
            let outcome = op!(c, import(&rows, replace, now))?;
            let keep = outcome.is_ok();
            Ok((outcome, keep))
        })
        .await
    }

    pub(super) async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u64,
    ) -> Result<Vec<Delivery>, Error> {
        self.write(move |c| op!(c, claim_deliveries(now, lease_until, limit))).await
    }

    pub(super) async fn deliveries_attempted(
        &self,
        outcomes: Vec<(i64, DeliveryOutcome)>,
        now: i64,
    ) -> Result<(), Error> {
        self.write(move |c| op!(c, deliveries_attempted(&outcomes, now))).await
    }

    pub(super) async fn release_deliveries(&self, ids: Vec<i64>) -> Result<(), Error> {
        self.write(move |c| op!(c, release_deliveries(&ids))).await
    }

    pub(super) async fn retry_failed_deliveries(&self, now: i64) -> Result<u64, Error> {
        self.write(move |c| op!(c, retry_failed_deliveries(now))).await
    }

    pub(super) async fn pending_deliveries(&self) -> Result<u64, Error> {
        self.read(|c| op!(c, pending_deliveries()))
    }

    pub(super) async fn undelivered(&self, limit: u64) -> Result<Vec<Undelivered>, Error> {
        self.read(|c| op!(c, undelivered(limit)))
    }

    pub(super) async fn remaining_recovery_codes(&self, user_id: &str) -> Result<u64, Error> {
        self.read(|c| op!(c, remaining_recovery_codes(user_id)))
    }

    pub(super) async fn events(&self, user_id: &str, limit: u64) -> Result<Vec<Event>, Error> {
        self.read(|c| op!(c, events(user_id, limit)))
    }

    pub(super) async fn prune(&self, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), Error> {
        self.write(move |c| op!(c, prune(now, events_before, batch))).await
    }

    pub(super) async fn secrets_per_key(&self) -> Result<Vec<(String, u64)>, Error> {
        self.read(|c| op!(c, secrets_per_key()))
    }

    /// One writer job: the whole reseal is one transaction, as on PostgreSQL; rolled back when
    /// `reseal` refuses a row.
    pub(super) async fn reseal_secrets<X: Send + 'static>(
        &self,
        reseal: impl FnMut(Sealed<'_>) -> Result<Option<Reseal>, X> + Send + 'static,
    ) -> Result<Result<u64, X>, Error> {
        self.write_job(true, move |c| {
            let outcome = op!(c, reseal_secrets(reseal))?;
            let keep = outcome.is_ok();
            Ok((outcome, keep))
        })
        .await
    }

    pub(super) async fn assertion_keys(&self, retired_after: i64) -> Result<Vec<AssertionKey>, Error> {
        self.read(|c| op!(c, assertion_keys(retired_after)))
    }

    pub(super) async fn insert_assertion_key(&self, key: AssertionKey, rotate: bool, now: i64) -> Result<bool, Error> {
        self.write(move |c| op!(c, insert_assertion_key(&key, rotate, now))).await
    }

    pub(super) async fn users_with_recovery_codes_not_under(&self, key_id: &str) -> Result<u64, Error> {
        self.read(|c| op!(c, users_with_recovery_codes_not_under(key_id)))
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
    fn finish(self: Box<Self>, batch: Result<(), &Error>);
    /// Whether the job writes, and so needs a savepoint of its own to be rolled back alone; a
    /// read does not, and runs before the batch's writes (see [`writer_loop`]).
    fn needs_savepoint(&self) -> bool {
        true
    }
}

struct Call<F, R> {
    savepoint: bool,
    f: Option<F>,
    out: Option<Result<R, Error>>,
    reply: oneshot::Sender<Result<R, Error>>,
}

impl<F, R> Job for Call<F, R>
where
    F: FnOnce(&Connection) -> Result<(R, bool), Error> + Send,
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

    fn finish(self: Box<Self>, batch: Result<(), &Error>) {
        let result = match (batch, self.out) {
            (Ok(()), Some(result)) => result,
            (Err(e), _) => Err(e.clone()),
            (Ok(()), None) => Err(Error::decode("write job did not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

/// The writer thread: takes every job waiting (up to [`MAX_BATCH`]), answers its reads, then
/// runs its writes one after the other in one `BEGIN IMMEDIATE … COMMIT` (each write in a
/// savepoint of its own, so one job's rollback or error leaves the others; a job's audit events
/// are part of the job), commits once, then answers them all. Under load this is group commit:
/// one commit for many requests. Writes run in arrival order, so a compare-and-set decides
/// exactly as it would alone. Ends when the store is dropped.
///
/// The reads ([`SqliteStore::read_on_writer`]) run first, each on its own, outside the writes'
/// transaction: none of the batch's writes is answered yet, so a read may come before them, and
/// a commit that fails (SQLITE_FULL on a full disk) fails only the writes — reads keep working
/// (SPEC §10).
fn writer_loop(conn: &Connection, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut reads: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        reads.extend(jobs.extract_if(.., |job| !job.needs_savepoint()));
        if !reads.is_empty() {
            run_and_answer(&mut reads, "read", |reads| {
                for job in reads.iter_mut() {
                    job.run(conn);
                }
                Ok(())
            });
        }
        if !jobs.is_empty() {
            run_and_answer(&mut jobs, "write", |jobs| run_batch(conn, jobs));
        }
    }
}

/// Runs `jobs` with `run` (a panic fails them all), logs a failure once, and answers every job.
fn run_and_answer(
    jobs: &mut Vec<Box<dyn Job>>,
    what: &str,
    run: impl FnOnce(&mut [Box<dyn Job>]) -> rusqlite::Result<()>,
) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(jobs)));
    let outcome = match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            let e = Error::from(e);
            tracing::error!(error = %e, jobs = jobs.len(), "SQLite {what} batch failed");
            Err(e)
        }
        Err(_) => {
            tracing::error!(jobs = jobs.len(), "SQLite {what} batch panicked");
            Err(Error::decode(format!("{what} batch panicked")))
        }
    };
    for job in jobs.drain(..) {
        job.finish(outcome.as_ref().map(|_| ()));
    }
}

fn run_batch(conn: &Connection, jobs: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    // Dropped without commit (an error below, or a panic), the transaction rolls back.
    let txn = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    if let [job] = jobs {
        return if job.run(&txn) { txn.commit() } else { txn.rollback() };
    }
    for job in jobs.iter_mut() {
        txn.prepare_cached("SAVEPOINT job")?.execute([])?;
        if !job.run(&txn) {
            txn.prepare_cached("ROLLBACK TO job")?.execute([])?;
        }
        txn.prepare_cached("RELEASE job")?.execute([])?;
    }
    txn.commit()
}

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] (`PASSIVE`: it never blocks the writer or
/// readers, and copies what no reader still needs) on its own connection and thread, until the
/// returned sender is dropped.
///
/// * Under a steady write load a passive checkpoint never catches up with the writer, and SQLite
///   starts a WAL over only after a checkpoint that did: the file grew without bound (1 GB in 15 s
///   of seeding, every frame a newly allocated block, every page lookup searching a longer
///   wal-index). So once the WAL holds more than [`WAL_RESTART_BYTES`], a `RESTART` checkpoint
///   follows the passive one: it waits for the writer's current batch, copies the few frames
///   written since, and the writer's next batch starts the WAL from its beginning. It waits for
///   locks at most [`RESTART_WAIT`] (a long reader, say an operator's shell, makes it give up
///   until the next tick rather than hold the writer up).
/// * Once writes stop (the WAL did not grow since the last tick and is fully copied), one
///   `TRUNCATE` checkpoint empties the file, so a WAL that grew under a burst does not keep its
///   size on disk.
fn start_checkpointer(conn: Connection, restart_bytes: i64) -> std::io::Result<std_mpsc::Sender<()>> {
    let (stop, stopped) = std_mpsc::channel::<()>();
    conn.busy_timeout(RESTART_WAIT).map_err(std::io::Error::other)?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(std::io::Error::other)?;
    let restart_frames = restart_bytes / page_size.max(512);
    // WAL frames seen at the last tick (-1: not known).
    let mut last_frames = -1_i64;
    let mut checkpoint = move || {
        let passive =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
        let then = match passive {
            Ok((frames, copied)) => {
                let idle = frames > 0 && frames == copied && frames == last_frames;
                last_frames = if idle { -1 } else { frames };
                if idle {
                    Some("TRUNCATE")
                } else if frames > restart_frames {
                    Some("RESTART")
                } else {
                    None
                }
            }
            Err(error) => {
                tracing::warn!(%error, "SQLite checkpoint failed; will retry");
                None
            }
        };
        if let Some(mode) = then
            && let Err(error) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
        {
            tracing::warn!(%error, mode, "SQLite checkpoint failed; will retry");
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

#[cfg(test)]
mod tests {
    use super::*;

    impl SqliteStore {
        /// A job whose changes stay when it returns `Ok(true)` and are rolled back otherwise.
        async fn write_txn(
            &self,
            f: impl FnOnce(&Connection) -> Result<bool, Error> + Send + 'static,
        ) -> Result<bool, Error> {
            self.write_job(true, move |c| f(c).map(|keep| (keep, keep))).await
        }
    }

    /// A writer that never pauses still gets its WAL started over: with a restart threshold of
    /// 1 MiB, 96 MiB written in 64 KiB transactions (a pace no passive checkpoint catches up
    /// with) leave the WAL file far below what was written. Without the restart, the file held
    /// every frame ever written.
    #[test]
    fn the_wal_starts_over_under_a_steady_write_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open_connection(&path).unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        let _checkpointer = start_checkpointer(open_connection(&path).unwrap(), 1024 * 1024).unwrap();
        let wal = dir.path().join("t.db-wal");
        let blob = vec![7u8; 64 * 1024];
        let mut largest = 0;
        for i in 0..1536 {
            writer.execute("INSERT INTO t VALUES (?1)", [&blob]).unwrap();
            if i % 64 == 0 {
                // Old rows go, so the database itself stays small too.
                writer.execute("DELETE FROM t WHERE rowid < (SELECT MAX(rowid) - 64 FROM t)", []).unwrap();
            }
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(largest < 48 * 1024 * 1024, "the WAL grew to {largest} bytes");
    }

    /// Jobs that share a batch keep or lose their changes independently: a job that returns
    /// `keep = false` or fails is rolled back alone, the others commit, and every caller gets
    /// its own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_in_one_batch_commit_or_roll_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(dir.path().join("t.db")).unwrap());
        store.write(|c| Ok(c.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")?)).await.unwrap();
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
        let kept: Vec<i64> = store
            .read(|c| {
                Ok(c.prepare("SELECT n FROM t ORDER BY n")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
            })
            .unwrap();
        assert_eq!(kept, (0..300).step_by(3).collect::<Vec<i64>>());
    }
}
