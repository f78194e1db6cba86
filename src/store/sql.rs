//! Every SQL statement Twofold runs, each written once.
//!
//! Both engines execute this very text: PostgreSQL through sea-orm's sqlx pool, SQLite through
//! rusqlite (see [`super::exec`]). Parameters are `$1`, `$2`, …: PostgreSQL's positional form,
//! which SQLite reads as named parameters (`$1` is the parameter named "1"), bound by name. The
//! text sticks to what both dialects share (`TRUE`/`FALSE`, `ON CONFLICT … DO UPDATE … WHERE`,
//! `RETURNING`, subqueries with `LIMIT`); the one difference, row locking, is
//! [`Query::locking`]: `FOR UPDATE` on PostgreSQL, nothing on SQLite, whose single writer holds
//! the database lock for the whole unit anyway. Two statements exist only for PostgreSQL
//! (`…_WITH_EVENT`: a change and its event in one statement through a data-modifying `WITH`, so
//! the hot paths take one round trip and no transaction); they are built from the same pieces as
//! the statements they fuse.
//!
//! A query declares the types of its columns, so each engine decodes them the same way
//! ([`Kind`]).

/// The type of a result column (`Option` of it when the column is nullable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `integer` (PostgreSQL `int4`).
    I32,
    /// `bigint` (PostgreSQL `int8`).
    I64,
    Bool,
    Text,
    Blob,
}

/// A statement that returns rows, with the types of its columns.
#[derive(Debug, Clone, Copy)]
pub(super) struct Query {
    pub sql: &'static str,
    /// The same statement with `FOR UPDATE` (PostgreSQL: lock the rows read until the
    /// transaction ends), or `None` when it is not meant to lock.
    pub locking: Option<&'static str>,
    pub columns: &'static [Kind],
}

/// The credential columns, in the order of [`super::Credential`]'s fields.
macro_rules! credential_columns {
    () => {
        "user_id, secret, key_id, algorithm, digits, period, enabled, pending_expires_at, enabled_at, \
         last_used_step, failed_attempts, locked_until, created_at, updated_at"
    };
}

/// "Not locked at `$now`", for the parameter number given.
macro_rules! not_locked {
    ($now:literal) => {
        concat!("(locked_until IS NULL OR locked_until <= $", $now, ")")
    };
}

macro_rules! insert_event_into {
    () => {
        "INSERT INTO audit_events (user_id, kind, at, correlation_id, actor, reason, webhook_id, delivery, attempts, \
         next_attempt_at, window_from)"
    };
}

/// The values of a new event row: the user (an expression) and the parameter numbers of its kind,
/// time, correlation id, actor, reason and webhook id. With a webhook id the event is queued for
/// delivery.
macro_rules! event_values {
    ($user:literal, $kind:literal, $at:literal, $corr:literal, $actor:literal, $reason:literal, $hook:literal) => {
        concat!(
            $user,
            ", $",
            $kind,
            ", $",
            $at,
            ", $",
            $corr,
            ", $",
            $actor,
            ", $",
            $reason,
            ", $",
            $hook,
            ", CASE WHEN $",
            $hook,
            " IS NULL THEN NULL ELSE 'pending' END, 0, CASE WHEN $",
            $hook,
            " IS NULL THEN NULL ELSE $",
            $at,
            " END, $",
            $at
        )
    };
}

/// A change to one credential (the statement's pieces, in brackets) and, in the same statement,
/// the event of the user it changed, its kind, time, correlation id, actor, reason and webhook id
/// in the parameters numbered. Nothing is inserted when the change matched no row. PostgreSQL
/// only (a data-modifying `WITH`).
macro_rules! with_event {
    ([$($change:tt)*], $kind:literal, $at:literal, $corr:literal, $actor:literal, $reason:literal, $hook:literal) => {
        concat!(
            "WITH changed AS (",
            $($change)*,
            " RETURNING user_id) ",
            insert_event_into!(),
            " SELECT ",
            event_values!("user_id", $kind, $at, $corr, $actor, $reason, $hook),
            " FROM changed"
        )
    };
}

macro_rules! credential_by_user {
    () => {
        concat!("SELECT ", credential_columns!(), " FROM totp_credentials WHERE user_id = $1")
    };
}

/// `$1` user → the credential row.
pub(super) const CREDENTIAL: Query = Query {
    sql: credential_by_user!(),
    locking: Some(concat!(credential_by_user!(), " FOR UPDATE")),
    columns: &[
        Kind::Text,
        Kind::Blob,
        Kind::Text,
        Kind::Text,
        Kind::I32,
        Kind::I32,
        Kind::Bool,
        Kind::I64,
        Kind::I64,
        Kind::I64,
        Kind::I32,
        Kind::I64,
        Kind::I64,
        Kind::I64,
    ],
};

macro_rules! upsert_pending {
    () => {
        "INSERT INTO totp_credentials (user_id, secret, key_id, algorithm, digits, \
         period, enabled, pending_expires_at, enabled_at, last_used_step, failed_attempts, locked_until, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, NULL, NULL, 0, NULL, $8, $8) \
         ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, key_id = excluded.key_id, \
         algorithm = excluded.algorithm, digits = excluded.digits, period = excluded.period, \
         pending_expires_at = excluded.pending_expires_at, last_used_step = excluded.last_used_step, \
         updated_at = excluded.updated_at WHERE totp_credentials.enabled = FALSE"
    };
}

/// Inserts or overwrites a pending secret; changes nothing while the credential is enabled. The
/// failure counter and lockout are kept, so starting over never clears a lockout.
/// `$1` user, `$2` secret, `$3` key id, `$4` algorithm, `$5` digits, `$6` period, `$7` expiry,
/// `$8` now.
pub(super) const UPSERT_PENDING: &str = upsert_pending!();

/// [`UPSERT_PENDING`] with its event (`$9`–`$14` as `$2`–`$7` of [`INSERT_EVENT`]), written only
/// when the pending secret is: one statement, no transaction. PostgreSQL only.
pub(super) const UPSERT_PENDING_WITH_EVENT: &str = with_event!([upsert_pending!()], 9, 10, 11, 12, 13, 14);

/// Counts one failed check; the failure that reaches the limit locks and restarts the count.
/// `$1` user, `$2` now, `$3` limit, `$4` locked until → (failed attempts, locked until).
pub(super) const RECORD_FAILURE: Query = Query {
    sql: concat!(
        "UPDATE totp_credentials SET \
         failed_attempts = CASE WHEN failed_attempts + 1 >= $3 THEN 0 ELSE failed_attempts + 1 END, \
         locked_until = CASE WHEN failed_attempts + 1 >= $3 THEN $4 ELSE locked_until END, \
         updated_at = $2 WHERE user_id = $1 AND ",
        not_locked!(2),
        " RETURNING failed_attempts, locked_until"
    ),
    locking: None,
    columns: &[Kind::I32, Kind::I64],
};

macro_rules! consume_step {
    () => {
        concat!(
            "UPDATE totp_credentials SET last_used_step = $2, failed_attempts = 0, updated_at = $3, \
             secret = COALESCE($4, secret), key_id = COALESCE($5, key_id) \
             WHERE user_id = $1 AND enabled = TRUE AND (last_used_step IS NULL OR last_used_step < $2) AND ",
            not_locked!(3)
        )
    };
}

/// Records a used time step (compare-and-set: only a newer step, on an enabled, unlocked
/// credential), resets the failure counter and, when `$4`/`$5` are not NULL, stores the secret
/// re-sealed under another key. `$1` user, `$2` step, `$3` now, `$4` secret, `$5` key id.
///
/// It leaves `locked_until` alone: the credential is unlocked, so the column is NULL or a lockout
/// that is over, which every reader already treats as no lockout (`locked_until > now` is the
/// test). Naming it in `SET` would make SQLite rewrite its `idx_totp_credentials_state` entry on
/// every verify: one more page in the WAL per code accepted.
pub(super) const CONSUME_STEP: &str = consume_step!();

/// [`CONSUME_STEP`] on the credential whose secret is still `$6` (the one the code was checked
/// against), with its event (`$7`–`$12` as `$2`–`$7` of [`INSERT_EVENT`]) in the same statement:
/// one round trip that needs no transaction. PostgreSQL only (a data-modifying `WITH`).
pub(super) const CONSUME_STEP_WITH_EVENT: &str =
    with_event!([consume_step!(), " AND secret = $6"], 7, 8, 9, 10, 11, 12);

/// Turns a live pending secret into the enabled credential. `$1` user, `$2` step, `$3` now.
pub(super) const ENABLE: &str = concat!(
    "UPDATE totp_credentials SET enabled = TRUE, enabled_at = $3, pending_expires_at = NULL, last_used_step = $2, \
     failed_attempts = 0, locked_until = NULL, updated_at = $3 \
     WHERE user_id = $1 AND enabled = FALSE AND pending_expires_at > $3 AND ",
    not_locked!(3)
);

/// Deletes an enabled, unlocked credential. `$1` user, `$2` now.
pub(super) const DELETE_ENABLED: &str =
    concat!("DELETE FROM totp_credentials WHERE user_id = $1 AND enabled = TRUE AND ", not_locked!(2));

/// Resets the failure counter of an enabled, unlocked credential. `$1` user, `$2` now.
pub(super) const RESET_FAILURES: &str = concat!(
    "UPDATE totp_credentials SET failed_attempts = 0, locked_until = NULL, updated_at = $2 \
     WHERE user_id = $1 AND enabled = TRUE AND ",
    not_locked!(2)
);

/// `$1` user.
pub(super) const DELETE_RECOVERY_CODES: &str = "DELETE FROM recovery_codes WHERE user_id = $1";

/// `$1` user, `$2` hash, `$3` key id, `$4` now.
pub(super) const INSERT_RECOVERY_CODE: &str =
    "INSERT INTO recovery_codes (user_id, code_hash, key_id, created_at) VALUES ($1, $2, $3, $4)";

/// Consumes one recovery code (each candidate hash in turn: one per key that may have made it).
/// `$1` user, `$2` hash.
pub(super) const DELETE_RECOVERY_CODE: &str = "DELETE FROM recovery_codes WHERE user_id = $1 AND code_hash = $2";

/// `$1` user → the number of unused recovery codes.
pub(super) const COUNT_RECOVERY_CODES: Query =
    Query { sql: "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1", locking: None, columns: &[Kind::I64] };

/// Inserts an audit event; with a webhook id (`$7`) it is also queued for delivery (the outbox,
/// SPEC §9: the row is written in the transaction of the change it reports). `$1` user, `$2`
/// kind, `$3` at, `$4` correlation id, `$5` actor, `$6` reason, `$7` webhook id.
pub(super) const INSERT_EVENT: &str =
    concat!(insert_event_into!(), " VALUES (", event_values!("$1", 2, 3, 4, 5, 6, 7), ")");

/// The event columns, in the order of [`super::Event`]'s fields.
macro_rules! event_columns {
    () => {
        "id, user_id, kind, at, correlation_id, actor, reason"
    };
}

const EVENT_KINDS: &[Kind] = &[Kind::I64, Kind::Text, Kind::Text, Kind::I64, Kind::Text, Kind::Text, Kind::Text];

/// `$1` user, `$2` limit → the newest events first.
pub(super) const EVENTS: Query = Query {
    sql: concat!("SELECT ", event_columns!(), " FROM audit_events WHERE user_id = $1 ORDER BY id DESC LIMIT $2"),
    locking: None,
    columns: EVENT_KINDS,
};

/// The state filter of the admin listing (SPEC §8), for `$state` = `ALL`, `NONE` (never
/// matches), `PENDING`, `ENABLED` or `LOCKED`, at time `$now`: a credential is LOCKED while
/// locked (enabled or pending), else ENABLED or PENDING (a pending one only until it expires).
macro_rules! in_state {
    ($state:literal, $now:literal) => {
        concat!(
            "(",
            state_of!($now),
            " = $",
            $state,
            " OR ($",
            $state,
            " = 'ALL' AND ",
            state_of!($now),
            " <> 'NONE'))"
        )
    };
}

/// A credential's state at `$now` (SPEC §8 `TwoFactorState`).
macro_rules! state_of {
    ($now:literal) => {
        concat!(
            "(CASE WHEN locked_until > $",
            $now,
            " THEN 'LOCKED' WHEN enabled = TRUE THEN 'ENABLED' \
             WHEN pending_expires_at > $",
            $now,
            " THEN 'PENDING' ELSE 'NONE' END)"
        )
    };
}

/// A page of the admin listing: credentials after user `$1` in user order, at most `$2`, in state
/// `$3` (see [`in_state`]) at `$4`.
pub(super) const LIST_CREDENTIALS: Query = Query {
    sql: concat!(
        "SELECT ",
        credential_columns!(),
        " FROM totp_credentials WHERE user_id > $1 AND ",
        in_state!(3, 4),
        " ORDER BY user_id LIMIT $2"
    ),
    locking: None,
    columns: CREDENTIAL.columns,
};

/// How many credentials are in state `$1` at `$2` (read from `idx_totp_credentials_state` alone).
pub(super) const COUNT_CREDENTIALS: Query = Query {
    sql: concat!("SELECT COUNT(*) FROM totp_credentials WHERE ", in_state!(1, 2)),
    locking: None,
    columns: &[Kind::I64],
};

/// "The user has a credential at `$now`": enabled, a live pending setup, or locked (a setup that
/// expired unlocked is none: state NONE, awaiting the pruner).
macro_rules! has_credential {
    ($now:literal) => {
        concat!("(enabled = TRUE OR pending_expires_at > $", $now, " OR locked_until > $", $now, ")")
    };
}

/// Deletes a credential in any state (an admin reset). `$1` user, `$2` now.
pub(super) const DELETE_CREDENTIAL: &str =
    concat!("DELETE FROM totp_credentials WHERE user_id = $1 AND ", has_credential!(2));

/// Clears the failure counter and any lockout (an admin unlock). `$1` user, `$2` now.
pub(super) const UNLOCK: &str = concat!(
    "UPDATE totp_credentials SET failed_attempts = 0, locked_until = NULL, updated_at = $2 WHERE user_id = $1 AND ",
    has_credential!(2)
);

/// Inserts an imported, enabled credential, replacing a setup that expired unlocked (no
/// credential), or with `$8` = 1 whatever the user had.
/// `$1` user, `$2` secret, `$3` key id, `$4` algorithm, `$5` digits, `$6` period, `$7` now.
pub(super) const INSERT_IMPORTED: &str = "INSERT INTO totp_credentials (user_id, secret, key_id, algorithm, digits, \
     period, enabled, pending_expires_at, enabled_at, last_used_step, failed_attempts, locked_until, created_at, \
     updated_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, NULL, $7, NULL, 0, NULL, $7, $7) \
     ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, key_id = excluded.key_id, \
     algorithm = excluded.algorithm, digits = excluded.digits, period = excluded.period, enabled = TRUE, \
     pending_expires_at = NULL, enabled_at = excluded.enabled_at, last_used_step = NULL, failed_attempts = 0, \
     locked_until = NULL, updated_at = excluded.updated_at \
     WHERE $8 = 1 OR NOT (totp_credentials.enabled = TRUE OR COALESCE(totp_credentials.pending_expires_at, 0) > $7 \
     OR COALESCE(totp_credentials.locked_until, 0) > $7)";

macro_rules! due_deliveries {
    () => {
        "SELECT id FROM audit_events WHERE delivery = 'pending' AND next_attempt_at <= $1 AND \
         (claimed_until IS NULL OR claimed_until <= $1) ORDER BY next_attempt_at, id LIMIT $3"
    };
}

macro_rules! delivery_returning {
    () => {
        " RETURNING id, webhook_id, user_id, kind, at, correlation_id, actor, attempts, window_from"
    };
}

/// The webhook deliveries an instance takes: up to `$3` pending events due at `$1` that no live
/// claim holds, leased until `$2`. On PostgreSQL rows another instance is claiming are skipped
/// (`FOR UPDATE SKIP LOCKED`) in a materialized CTE, which runs once (a locking subquery under
/// `IN` may run again per row and claim more than `$3`); SQLite's single writer serialises claims
/// anyway.
pub(super) const CLAIM_DELIVERIES: Query = Query {
    sql: concat!(
        "UPDATE audit_events SET claimed_until = $2 WHERE delivery = 'pending' AND id IN (",
        due_deliveries!(),
        ")",
        delivery_returning!()
    ),
    locking: Some(concat!(
        "WITH due AS MATERIALIZED (",
        due_deliveries!(),
        " FOR UPDATE SKIP LOCKED) UPDATE audit_events SET claimed_until = $2 WHERE delivery = 'pending' AND id IN \
         (SELECT id FROM due)",
        delivery_returning!()
    )),
    columns: DELIVERY_KINDS,
};

const DELIVERY_KINDS: &[Kind] =
    &[Kind::I64, Kind::Text, Kind::Text, Kind::Text, Kind::I64, Kind::Text, Kind::Text, Kind::I32, Kind::I64];

/// Records what became of a claimed event and lets go of the claim. `$1` id, `$2` new delivery
/// state, `$3` next attempt, `$4` last error, `$5` delivered at, `$6` attempts made (0 or 1).
pub(super) const DELIVERY_ATTEMPTED: &str = "UPDATE audit_events SET delivery = $2, attempts = attempts + $6, \
     next_attempt_at = $3, last_error = $4, delivered_at = $5, claimed_until = NULL \
     WHERE id = $1 AND delivery = 'pending'";

/// Lets go of a claim without an attempt (shutdown). `$1` id.
pub(super) const RELEASE_DELIVERY: &str =
    "UPDATE audit_events SET claimed_until = NULL WHERE id = $1 AND delivery = 'pending'";

/// Puts every failed event back in the queue with a fresh window from `$1` (and the backoff
/// schedule from its start).
pub(super) const RETRY_FAILED_DELIVERIES: &str = "UPDATE audit_events SET delivery = 'pending', window_from = $1, \
     next_attempt_at = $1, attempts = 0, claimed_until = NULL WHERE delivery = 'failed'";

/// How many events wait for delivery.
pub(super) const COUNT_PENDING_DELIVERIES: Query =
    Query { sql: "SELECT COUNT(*) FROM audit_events WHERE delivery = 'pending'", locking: None, columns: &[Kind::I64] };

/// Pending and failed deliveries, oldest first, at most `$1`.
pub(super) const UNDELIVERED: Query = Query {
    sql: "SELECT id, webhook_id, user_id, kind, at, delivery, attempts, next_attempt_at, last_error \
          FROM audit_events WHERE delivery IN ('pending', 'failed') ORDER BY id LIMIT $1",
    locking: None,
    columns: &[Kind::I64, Kind::Text, Kind::Text, Kind::Text, Kind::I64, Kind::Text, Kind::I32, Kind::I64, Kind::Text],
};

/// Deletes up to `$2` expired, unlocked pending enrolments. `$1` now, `$2` batch.
pub(super) const PRUNE_PENDING: &str = concat!(
    "DELETE FROM totp_credentials WHERE user_id IN (SELECT user_id FROM totp_credentials \
     WHERE enabled = FALSE AND pending_expires_at < $1 AND ",
    not_locked!(1),
    " LIMIT $2)"
);

/// Deletes up to `$2` audit events older than `$1`.
/// Events still waiting for webhook delivery are kept.
pub(super) const PRUNE_EVENTS: &str = "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events \
     WHERE at < $1 AND (delivery IS NULL OR delivery <> 'pending') LIMIT $2)";

/// `SELECT 1`, for readiness.
pub(super) const PING: Query = Query { sql: "SELECT 1", locking: None, columns: &[Kind::I32] };

/// How many stored secrets (TOTP secrets and assertion signing keys) each key id seals.
pub(super) const SECRETS_PER_KEY: Query = Query {
    sql: "SELECT key_id, COUNT(*) FROM (SELECT key_id FROM totp_credentials \
          UNION ALL SELECT key_id FROM assertion_keys) AS sealed GROUP BY key_id",
    locking: None,
    columns: &[Kind::Text, Kind::I64],
};

/// A page of credentials after user `$1`, at most `$2` rows, in user order.
pub(super) const CREDENTIALS_AFTER: Query = Query {
    sql: concat!(
        "SELECT ",
        credential_columns!(),
        " FROM totp_credentials WHERE user_id > $1 ORDER BY user_id LIMIT $2"
    ),
    locking: None,
    columns: CREDENTIAL.columns,
};

/// Replaces a secret if it is still the one read (compare-and-set). `$1` user, `$2` old secret,
/// `$3` new secret, `$4` new key id.
pub(super) const RESEAL_SECRET: &str =
    "UPDATE totp_credentials SET secret = $3, key_id = $4 WHERE user_id = $1 AND secret = $2";

/// Users holding a recovery code not hashed under key `$1` (or of unknown key).
pub(super) const USERS_WITH_CODES_NOT_UNDER: Query = Query {
    sql: "SELECT COUNT(DISTINCT user_id) FROM recovery_codes WHERE key_id IS NULL OR key_id <> $1",
    locking: None,
    columns: &[Kind::I64],
};

/// A write that changes nothing, to take SQLite's write lock at the start of a transaction
/// (instead of failing later when a read transaction tries to become a write one).
pub(super) const TAKE_WRITE_LOCK: &str = "UPDATE totp_credentials SET updated_at = updated_at WHERE user_id = ''";

/// Assertion signing keys: the current one (`slot = 1`) and those retired after `$1`, newest
/// first.
pub(super) const ASSERTION_KEYS: Query = Query {
    sql: "SELECT kid, secret, key_id, public_key, slot, created_at, retired_at FROM assertion_keys \
          WHERE slot IS NOT NULL OR retired_at > $1 ORDER BY created_at DESC, kid",
    locking: None,
    columns: &[Kind::Text, Kind::Blob, Kind::Text, Kind::Blob, Kind::I32, Kind::I64, Kind::I64],
};

/// Every assertion key (for reseal).
pub(super) const ALL_ASSERTION_KEYS: Query = Query {
    sql: "SELECT kid, secret, key_id, public_key, slot, created_at, retired_at FROM assertion_keys ORDER BY kid",
    locking: None,
    columns: ASSERTION_KEYS.columns,
};

/// Inserts the current assertion key unless there is one (the unique `slot` decides between
/// instances starting together). `$1` kid, `$2` sealed private key, `$3` key id, `$4` public key,
/// `$5` now.
pub(super) const INSERT_CURRENT_ASSERTION_KEY: &str = "INSERT INTO assertion_keys (kid, secret, key_id, public_key, \
     slot, created_at, retired_at) VALUES ($1, $2, $3, $4, 1, $5, NULL) ON CONFLICT (slot) DO NOTHING";

/// Retires the current assertion key at `$1`.
pub(super) const RETIRE_CURRENT_ASSERTION_KEY: &str =
    "UPDATE assertion_keys SET slot = NULL, retired_at = $1 WHERE slot = 1";

/// Replaces a sealed assertion key if it is still the one read. `$1` kid, `$2` old, `$3` new,
/// `$4` key id.
pub(super) const RESEAL_ASSERTION_KEY: &str =
    "UPDATE assertion_keys SET secret = $3, key_id = $4 WHERE kid = $1 AND secret = $2";
