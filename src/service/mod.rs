//! The two-factor service: the operations of SPEC §2. GraphQL resolvers and both REST dialects
//! call these functions and only map their results; nothing here knows about HTTP or GraphQL.
//!
//! * [`error`]: what each operation family can fail with;
//! * [`decide`]: the pure judgement of a code against a credential;
//! * [`events`]: audit event kinds and their metrics.

mod decide;
mod error;
mod events;

use std::sync::Arc;
use std::time::Duration;

use crate::assertion::{self, AssertionSettings, Assertions, Nonce};
use crate::auth::Viewer;
use crate::clock::Clock;
use crate::crypto::Keyring;
use crate::store::{
    AttemptLimits, Change, Checked, Credential, FailureOutcome, ImportRow, NewEvent, NewPending, Store, Verdict,
};
use crate::totp::{self, Secret, TotpParams};
use tokio::sync::Notify;

/// Which users the admin listing returns (the store's filter, named for the transports).
pub use crate::store::StateFilter;
use decide::{Failure, Judge};
pub use error::{AdminError, CheckError, EnableError, EnrolError, Internal, Rejection};
pub use events::EventKind;

/// Settings of the service (a subset of the configuration).
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub issuer: String,
    pub pending_ttl: Duration,
    pub skew: u16,
    pub params: TotpParams,
    pub max_failed_attempts: u32,
    pub lockout: Duration,
    /// What verification assertions say (SPEC §7).
    pub assertion: AssertionSettings,
    /// The event kinds sent to the webhook receiver (SPEC §9); empty when none is configured.
    pub webhook_kinds: Vec<EventKind>,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            issuer: "Twofold".into(),
            pending_ttl: Duration::from_secs(600),
            skew: 1,
            params: TotpParams::default(),
            max_failed_attempts: 5,
            lockout: Duration::from_secs(300),
            assertion: AssertionSettings::default(),
            webhook_kinds: Vec::new(),
        }
    }
}

/// The longest `reason` an admin reset keeps, in bytes (SPEC §8).
pub const MAX_REASON_BYTES: usize = 500;

/// One authenticator to import: the user, the raw secret and its parameters.
#[derive(Debug, Clone)]
pub struct ImportEntry {
    pub user_id: String,
    pub secret: Secret,
    pub params: TotpParams,
}

/// A started enrolment: the Base32 secret, its otpauth URI, its QR code (when asked for) and
/// when the pending secret expires.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    /// `data:image/png;base64,…` of the URI (SPEC §2).
    pub qr_code: Option<String>,
    pub expires_at: i64,
}

/// Where a user's credential stands (SPEC §8 `TwoFactorState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No credential (never enrolled, disabled, reset, or a pending setup that expired).
    None,
    Pending,
    Enabled,
    /// Enabled or pending, and locked by failed attempts now.
    Locked,
}

/// What `twoFactor` and the status routes report.
#[derive(Debug, Clone)]
pub struct Status {
    pub user_id: String,
    pub state: State,
    /// While locked: until when.
    pub locked_until: Option<i64>,
    pub enabled: bool,
    pub pending_expires_at: Option<i64>,
    pub enabled_at: Option<i64>,
    pub recovery_codes_remaining: u64,
    pub params: TotpParams,
}

#[derive(Debug, Clone)]
pub struct Enabled {
    pub recovery_codes: Vec<String>,
    pub enabled_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationMethod {
    Totp,
    RecoveryCode,
}

/// A successful verification. The recovery codes left are not counted here (the login path does
/// not need them): ask [`TwoFactor::recovery_codes_remaining`] when showing them.
#[derive(Debug, Clone)]
pub struct Verified {
    pub at: i64,
    pub method: VerificationMethod,
    /// The signed assertion of this verification (SPEC §7).
    pub assertion: String,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub at: i64,
    pub correlation_id: Option<String>,
    /// Who did it, for admin actions (an admin's `sub`, or `cli`).
    pub actor: Option<String>,
    /// An admin's reason (for operators; never shown to the user).
    pub reason: Option<String>,
}

/// Makes the audit events of one request, in the unit of the change they report. An event of a
/// kind the webhook receiver wants gets a message id, which queues it in the outbox.
#[derive(Debug, Clone)]
struct Events {
    user_id: String,
    at: i64,
    correlation_id: Option<String>,
    actor: Option<String>,
    webhook_kinds: Arc<[EventKind]>,
}

impl Events {
    fn make(&self, kind: EventKind) -> NewEvent {
        NewEvent {
            user_id: self.user_id.clone(),
            kind: kind.as_str(),
            at: self.at,
            correlation_id: self.correlation_id.clone(),
            actor: self.actor.clone(),
            reason: None,
            webhook_id: self.webhook_kinds.contains(&kind).then(|| format!("msg_{}", uuid::Uuid::new_v4().simple())),
        }
    }

    fn all(&self, kinds: &[EventKind]) -> Vec<NewEvent> {
        kinds.iter().map(|&k| self.make(k)).collect()
    }
}

/// The two-factor service. Cheap to clone.
#[derive(Clone)]
pub struct TwoFactor {
    store: Store,
    keys: Arc<Keyring>,
    settings: Arc<ServiceSettings>,
    clock: Arc<dyn Clock>,
    assertions: Arc<Assertions>,
    webhook_kinds: Arc<[EventKind]>,
    /// Woken after a change that queued a webhook event (the deliverer waits on it).
    outbox: Arc<Notify>,
}

/// A fresh recovery-code set: the codes shown once, their hashes, and the key that hashed them.
struct NewCodes {
    codes: Vec<String>,
    hashes: Vec<Vec<u8>>,
    key_id: String,
}

impl TwoFactor {
    /// Builds the service.
    pub fn new(store: Store, keys: Arc<Keyring>, settings: ServiceSettings, clock: Arc<dyn Clock>) -> Self {
        let assertions =
            Arc::new(Assertions::new(store.clone(), keys.clone(), settings.assertion.clone(), clock.clone()));
        let webhook_kinds = settings.webhook_kinds.clone().into();
        TwoFactor {
            store,
            keys,
            settings: Arc::new(settings),
            clock,
            assertions,
            webhook_kinds,
            outbox: Arc::new(Notify::new()),
        }
    }

    /// The store (the webhook deliverer and the operator tools work on it directly).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Notified after a change that queued a webhook event.
    pub fn outbox_notify(&self) -> Arc<Notify> {
        self.outbox.clone()
    }

    /// Readiness: the database answers (and, on SQLite, the writer thread runs).
    pub async fn ready(&self) -> Result<(), Internal> {
        Ok(self.store.ping().await?)
    }

    /// Deletes up to `batch` expired pending enrolments and up to `batch` audit events older than
    /// `events_before` (after writing the buffered ones). Returns (pending, events) deleted.
    pub async fn prune(&self, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), Internal> {
        Ok(self.store.prune(now, events_before, batch).await?)
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The event maker of one request (`actor`: an admin action's).
    fn events_for(&self, user_id: &str, at: i64, correlation_id: Option<&str>, actor: Option<&str>) -> Events {
        Events {
            user_id: user_id.to_owned(),
            at,
            correlation_id: correlation_id.map(str::to_owned),
            actor: actor.map(str::to_owned),
            webhook_kinds: self.webhook_kinds.clone(),
        }
    }

    /// After the events of `kinds` were stored: counts them in the metrics and wakes the
    /// deliverer when one of them is for the webhook receiver.
    fn stored(&self, kinds: &[EventKind]) {
        for &kind in kinds {
            events::count(kind);
        }
        if kinds.iter().any(|k| self.webhook_kinds.contains(k)) {
            self.outbox.notify_one();
        }
    }

    /// What judging `code` for `viewer` now needs.
    fn judge(&self, user_id: &str, code: &str, now: i64) -> Judge {
        Judge {
            keys: self.keys.clone(),
            skew: self.settings.skew,
            user_id: user_id.to_owned(),
            code: code.to_owned(),
            now,
        }
    }

    /// Begin enrolment: a fresh 160-bit secret stored as the user's pending secret (replacing any
    /// earlier pending one), its otpauth URI and, `with_qr`, its QR code. Everything the caller
    /// is shown is built before the secret is stored, so a stored secret is always returned.
    /// Fails with `TotpAlreadyEnabled` while two-factor is enabled.
    pub async fn begin_enrolment(
        &self,
        viewer: &Viewer,
        with_qr: bool,
        correlation_id: &str,
    ) -> Result<Enrolment, EnrolError> {
        let now = self.now_ms();
        let params = self.settings.params;
        let secret = Secret::generate().map_err(|_| Internal::Random)?;
        let otpauth_uri = totp::otpauth_uri(&self.settings.issuer, &viewer.account_name, &secret, params);
        let qr_code = if with_qr { Some(totp::qr_data_uri(&otpauth_uri)?) } else { None };
        let (sealed, key_id) = self.keys.seal(&viewer.user_id, secret.as_bytes())?;
        let ttl_ms = i64::try_from(self.settings.pending_ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(ttl_ms);
        let event = self.events_for(&viewer.user_id, now, Some(correlation_id), None).make(EventKind::SetupStarted);
        let stored = self
            .store
            .upsert_pending(
                NewPending {
                    user_id: viewer.user_id.clone(),
                    secret: sealed,
                    key_id,
                    algorithm: params.algorithm.as_str().to_owned(),
                    digits: i32::from(params.digits),
                    period: i32::try_from(params.period).unwrap_or(i32::MAX),
                    expires_at,
                    now,
                },
                event,
            )
            .await?;
        if !stored {
            return Err(EnrolError::TotpAlreadyEnabled);
        }
        self.stored(&[EventKind::SetupStarted]);
        Ok(Enrolment { otpauth_uri, qr_code, secret: secret.to_base32(), expires_at })
    }

    /// Enable: the code must match the pending secret. Returns the new recovery codes (once).
    pub async fn enable(&self, viewer: &Viewer, code: &str, correlation_id: &str) -> Result<Enabled, EnableError> {
        let user = viewer.user_id.as_str();
        let now = self.now_ms();
        let NewCodes { codes, hashes: code_hashes, key_id } = self.new_recovery_codes(user)?;
        let judge = self.judge(user, code, now);
        self.check(user, now, correlation_id, &[EventKind::Enabled], move |cred| {
            judge.enable(cred, |step| Change::Enable { step, code_hashes: code_hashes.clone(), key_id: key_id.clone() })
        })
        .await?;
        Ok(Enabled { recovery_codes: codes, enabled_at: now })
    }

    /// The JWK Set that verification assertions are checked against (`/.well-known/jwks.json`).
    pub async fn jwks(&self) -> Result<Arc<str>, Internal> {
        Ok(self.assertions.jwks().await?)
    }

    /// Verify a TOTP code at login. Each time step is accepted once; a secret under an old key
    /// is re-sealed under the current one on the way. The answer carries a signed assertion
    /// (echoing `nonce`).
    pub async fn verify(
        &self,
        viewer: &Viewer,
        code: &str,
        nonce: Option<&Nonce>,
        correlation_id: &str,
    ) -> Result<Verified, CheckError> {
        let now = self.now_ms();
        let judge = self.judge(&viewer.user_id, code, now);
        self.verification(viewer, now, VerificationMethod::Totp, nonce, correlation_id, move |cred| {
            judge.step(cred, true, |step, reseal| Change::ConsumeStep { step, reseal })
        })
        .await
    }

    /// Verify with a single-use recovery code instead of a TOTP code (with an assertion, as
    /// [`TwoFactor::verify`]).
    pub async fn use_recovery_code(
        &self,
        viewer: &Viewer,
        code: &str,
        nonce: Option<&Nonce>,
        correlation_id: &str,
    ) -> Result<Verified, CheckError> {
        let (hashes, now) = (self.recovery_hashes(&viewer.user_id, code), self.now_ms());
        self.verification(viewer, now, VerificationMethod::RecoveryCode, nonce, correlation_id, move |cred| {
            decide::recovery(cred, now, hashes.clone(), false)
        })
        .await
    }

    /// A login-step check: the signing key is loaded first (so a verification that succeeds
    /// always gets its assertion), then the check, its audit event and the assertion.
    async fn verification(
        &self,
        viewer: &Viewer,
        now: i64,
        method: VerificationMethod,
        nonce: Option<&Nonce>,
        correlation_id: &str,
        decide: impl Fn(Option<&Credential>) -> Verdict<CheckError, Failure> + Send + 'static,
    ) -> Result<Verified, CheckError> {
        let user = viewer.user_id.as_str();
        let signer = self.assertions.signer().await.map_err(Internal::from)?;
        let (kinds, amr): (&'static [EventKind], _) = match method {
            VerificationMethod::Totp => (&[EventKind::Verified], assertion::Method::Otp),
            VerificationMethod::RecoveryCode => (&[EventKind::RecoveryCodeUsed], assertion::Method::RecoveryCode),
        };
        self.check(user, now, correlation_id, kinds, decide).await?;
        let assertion = signer.sign(user, amr, now, nonce).map_err(Internal::from)?;
        Ok(Verified { at: now, method, assertion })
    }

    /// How many unused recovery codes the user has.
    pub async fn recovery_codes_remaining(&self, user_id: &str) -> Result<u64, Internal> {
        Ok(self.store.remaining_recovery_codes(user_id).await?)
    }

    /// Replace the recovery-code set; needs a current TOTP code.
    pub async fn regenerate_recovery_codes(
        &self,
        viewer: &Viewer,
        code: &str,
        correlation_id: &str,
    ) -> Result<Vec<String>, CheckError> {
        let user = viewer.user_id.as_str();
        let now = self.now_ms();
        let NewCodes { codes, hashes: code_hashes, key_id } = self.new_recovery_codes(user)?;
        let judge = self.judge(user, code, now);
        self.check(user, now, correlation_id, &[EventKind::RecoveryCodesRegenerated], move |cred| {
            judge.step(cred, false, |step, _| Change::Regenerate {
                step,
                code_hashes: code_hashes.clone(),
                key_id: key_id.clone(),
            })
        })
        .await?;
        Ok(codes)
    }

    /// Disable two-factor with a current TOTP code or an unused recovery code (told apart by
    /// shape: a recovery code has 10 characters, a TOTP code 6 or 8 digits). Returns when it
    /// happened.
    pub async fn disable(&self, viewer: &Viewer, code: &str, correlation_id: &str) -> Result<i64, CheckError> {
        let user = viewer.user_id.as_str();
        let now = self.now_ms();
        let hashes = self.recovery_hashes(user, code);
        let with_recovery_code = !hashes.is_empty();
        let judge = self.judge(user, code, now);
        let accepted: &[EventKind] = match with_recovery_code {
            true => &[EventKind::RecoveryCodeUsed, EventKind::Disabled],
            false => &[EventKind::Disabled],
        };
        self.check(user, now, correlation_id, accepted, move |cred| match with_recovery_code {
            true => decide::recovery(cred, now, hashes.clone(), true),
            false => judge.step(cred, false, |_, _| Change::Disable),
        })
        .await?;
        Ok(now)
    }

    /// The user's current state.
    pub async fn status(&self, user_id: &str) -> Result<Status, Internal> {
        let cred = self.store.credential(user_id).await?;
        self.status_of(user_id, cred, self.now_ms()).await
    }

    /// The state a credential (or none) is in at `now`, with the recovery codes left.
    async fn status_of(&self, user_id: &str, cred: Option<Credential>, now: i64) -> Result<Status, Internal> {
        let locked_until = cred.as_ref().and_then(|c| c.locked_until).filter(|&t| t > now);
        let live = cred.filter(|c| c.enabled || decide::pending_is_live(c, now));
        let enabled = live.as_ref().is_some_and(|c| c.enabled);
        let state = match (&live, locked_until) {
            (_, Some(_)) => State::Locked,
            (Some(c), None) if c.enabled => State::Enabled,
            (Some(_), None) => State::Pending,
            (None, None) => State::None,
        };
        Ok(Status {
            user_id: user_id.to_owned(),
            state,
            locked_until,
            enabled,
            pending_expires_at: live.as_ref().filter(|c| !c.enabled).and_then(|c| c.pending_expires_at),
            enabled_at: live.as_ref().and_then(|c| c.enabled_at),
            recovery_codes_remaining: if enabled { self.store.remaining_recovery_codes(user_id).await? } else { 0 },
            params: match &live {
                Some(c) => decide::params_of(c)?,
                None => self.settings.params,
            },
        })
    }

    /// The user's most recent audit events, newest first; `first` is clamped to 1–100.
    pub async fn events(&self, user_id: &str, first: i64) -> Result<Vec<Event>, Internal> {
        let limit = u64::try_from(first.clamp(1, 100)).unwrap_or(1);
        Ok(self
            .store
            .events(user_id, limit)
            .await?
            .into_iter()
            .filter_map(|e| {
                Some(Event {
                    kind: EventKind::parse(&e.kind)?,
                    at: e.at,
                    correlation_id: e.correlation_id,
                    actor: e.actor,
                    reason: e.reason,
                })
            })
            .collect())
    }

    /// Admin listing (SPEC §8): up to `first` (clamped to 1–100) users with a credential in
    /// state `filter`, after user `after`, in user order; and whether more follow.
    pub async fn admin_list(
        &self,
        first: i64,
        after: Option<&str>,
        filter: StateFilter,
    ) -> Result<(Vec<Status>, bool), Internal> {
        let limit = u64::try_from(first.clamp(1, 100)).unwrap_or(1);
        let now = self.now_ms();
        let mut rows = self.store.list_credentials(after.unwrap_or(""), limit + 1, filter, now).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut page = Vec::with_capacity(rows.len());
        for cred in rows {
            let user_id = cred.user_id.clone();
            page.push(self.status_of(&user_id, Some(cred), now).await?);
        }
        Ok((page, more))
    }

    /// How many users have a credential in state `filter`.
    pub async fn admin_count(&self, filter: StateFilter) -> Result<u64, Internal> {
        Ok(self.store.count_credentials(filter, self.now_ms()).await?)
    }

    /// Removes the user's credential (enabled or pending), used steps and recovery codes without
    /// a code, writing `ADMIN_RESET` with `actor` and the `reason` (kept for operators, never
    /// shown to the user). Returns when it happened.
    pub async fn admin_reset(
        &self,
        user_id: &str,
        actor: &str,
        reason: Option<&str>,
        correlation_id: Option<&str>,
    ) -> Result<i64, AdminError> {
        let now = self.now_ms();
        let mut event = self.events_for(user_id, now, correlation_id, Some(actor)).make(EventKind::AdminReset);
        event.reason = reason.map(str::to_owned);
        if !self.store.admin_reset(user_id, event).await? {
            return Err(AdminError::TotpNotEnabled);
        }
        tracing::info!(actor, "two-factor reset by an admin");
        self.stored(&[EventKind::AdminReset]);
        Ok(now)
    }

    /// Clears the user's failure counter and any lockout, writing `ADMIN_UNLOCKED` with `actor`.
    pub async fn admin_unlock(
        &self,
        user_id: &str,
        actor: &str,
        correlation_id: Option<&str>,
    ) -> Result<(), AdminError> {
        let now = self.now_ms();
        let event = self.events_for(user_id, now, correlation_id, Some(actor)).make(EventKind::AdminUnlocked);
        if !self.store.admin_unlock(user_id, now, event).await? {
            return Err(AdminError::TotpNotEnabled);
        }
        tracing::info!(actor, "two-factor unlocked by an admin");
        self.stored(&[EventKind::AdminUnlocked]);
        Ok(())
    }

    /// Imports existing authenticators as enabled credentials (sealed as enrolment seals them,
    /// no recovery codes yet), each with an `IMPORTED` event by `actor`, all in one transaction.
    /// Without `replace`, a user who already has a credential stops it: nothing is imported and
    /// the answer is `Err(index)` of that entry.
    pub async fn import(
        &self,
        entries: &[ImportEntry],
        replace: bool,
        actor: &str,
    ) -> Result<Result<u64, usize>, Internal> {
        let now = self.now_ms();
        let mut rows = Vec::with_capacity(entries.len());
        for entry in entries {
            let (secret, key_id) = self.keys.seal(&entry.user_id, entry.secret.as_bytes())?;
            let event = self.events_for(&entry.user_id, now, None, Some(actor)).make(EventKind::Imported);
            rows.push(ImportRow {
                user_id: entry.user_id.clone(),
                secret,
                key_id,
                algorithm: entry.params.algorithm.as_str().to_owned(),
                digits: i32::from(entry.params.digits),
                period: i32::try_from(entry.params.period).unwrap_or(30),
                event,
            });
        }
        let outcome = self.store.import(rows, replace, now).await?;
        if let Ok(n) = outcome {
            self.stored(&vec![EventKind::Imported; usize::try_from(n).unwrap_or(0)]);
        }
        Ok(outcome)
    }

    /// Ten fresh recovery codes with their hashes under the current key.
    fn new_recovery_codes(&self, user_id: &str) -> Result<NewCodes, Internal> {
        let codes = totp::generate_recovery_codes().map_err(|_| Internal::Random)?;
        let hashes = codes
            .iter()
            .filter_map(|c| totp::normalize_recovery_code(c))
            .map(|c| self.keys.recovery_hash(user_id, &c))
            .collect();
        Ok(NewCodes { codes, hashes, key_id: self.keys.current_key_id().to_owned() })
    }

    /// The hashes `code` may be stored under (one per configured key); none when it is not
    /// shaped like a recovery code.
    fn recovery_hashes(&self, user_id: &str, code: &str) -> Vec<Vec<u8>> {
        totp::normalize_recovery_code(code).map(|c| self.keys.recovery_hash_candidates(user_id, &c)).unwrap_or_default()
    }

    fn limits(&self) -> AttemptLimits {
        AttemptLimits {
            max_attempts: i32::try_from(self.settings.max_failed_attempts).unwrap_or(i32::MAX),
            lockout_ms: i64::try_from(self.settings.lockout.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Runs one code check through [`Store::check_code`] (judged and counted in one atomic
    /// unit, with its audit events: `accepted` on success, the failure's own otherwise) and
    /// turns a counted failure into the caller's error.
    async fn check<E>(
        &self,
        user_id: &str,
        now: i64,
        correlation_id: &str,
        accepted: &'static [EventKind],
        decide: impl Fn(Option<&Credential>) -> Verdict<E, Failure> + Send + 'static,
    ) -> Result<(), E>
    where
        E: From<Rejection> + From<crate::store::Error> + Send + 'static,
    {
        let limits = self.limits();
        let events = self.events_for(user_id, now, Some(correlation_id), None);
        let record = move |checked: &Checked<E, Failure>| events.all(&kinds_of(checked, accepted));
        let checked = self.store.check_code(user_id, now, limits, decide, record).await?;
        self.stored(&kinds_of(&checked, accepted));
        let (failure, outcome) = match checked {
            Checked::Accepted => return Ok(()),
            Checked::Refused(answer) => return Err(answer),
            Checked::Failed(failure, outcome) => (failure, outcome),
        };
        let rejection: fn(u32) -> Rejection = match failure {
            Failure::WrongCode => |n| Rejection::InvalidCode { attempts_remaining: n },
            Failure::Replayed => |n| Rejection::CodeAlreadyUsed { attempts_remaining: n },
        };
        Err(E::from(match outcome {
            FailureOutcome::Counted { failed_attempts } => {
                rejection(u32::try_from(limits.max_attempts.saturating_sub(failed_attempts)).unwrap_or(0))
            }
            FailureOutcome::LockedOut { .. } => {
                tracing::warn!("two-factor lockout after repeated failures");
                rejection(0)
            }
            // The check ran in its user's unit and found the credential unlocked, so this cannot
            // happen; answer as a lockout rather than let a guess through.
            FailureOutcome::NotCounted => Rejection::TooManyAttempts {
                retry_after_seconds: u64::try_from(limits.lockout_ms / 1000).unwrap_or(1).max(1),
            },
        }))
    }
}

/// The audit events of a code check's outcome: `accepted` on success; a wrong code's
/// `VERIFY_FAILED` or a replay's `CODE_REPLAYED` (and `LOCKED_OUT` when it tripped the lockout);
/// none for a refusal (nothing was checked).
fn kinds_of<E>(checked: &Checked<E, Failure>, accepted: &[EventKind]) -> Vec<EventKind> {
    match checked {
        Checked::Accepted => accepted.to_vec(),
        Checked::Refused(_) | Checked::Failed(_, FailureOutcome::NotCounted) => Vec::new(),
        Checked::Failed(failure, outcome) => {
            let kind = match failure {
                Failure::WrongCode => EventKind::VerifyFailed,
                Failure::Replayed => EventKind::CodeReplayed,
            };
            match outcome {
                FailureOutcome::LockedOut { .. } => vec![kind, EventKind::LockedOut],
                _ => vec![kind],
            }
        }
    }
}
