//! The two-factor service: the operations of SPEC §2. GraphQL resolvers and both REST dialects
//! call these functions and only map their results; nothing here knows about HTTP or GraphQL.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DbErr;

use crate::audit::AuditLog;
use crate::auth::Viewer;
use crate::clock::Clock;
use crate::crypto::{CryptoError, Keyring};
use crate::store::{FailureOutcome, NewEvent, NewPending, Reseal, Store, credential};
use crate::totp::{self, Algorithm, Secret, TotpParams};

/// Expected failures (returned to callers as typed errors) and unexpected ones.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("Two-factor authentication is already enabled.")]
    TotpAlreadyEnabled,
    #[error("There is no pending two-factor setup; start one first (it may have expired).")]
    NoPendingSetup,
    #[error("The code is not valid.")]
    InvalidCode { attempts_remaining: u32 },
    #[error("This code has already been used; wait for the next one.")]
    CodeAlreadyUsed { attempts_remaining: u32 },
    #[error("Too many failed attempts; try again in {retry_after_seconds} seconds.")]
    TooManyAttempts { retry_after_seconds: u64 },
    #[error("Two-factor authentication is not enabled.")]
    TotpNotEnabled,
    #[error("database error")]
    Database(#[from] DbErr),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<CryptoError> for DomainError {
    fn from(e: CryptoError) -> Self {
        DomainError::Internal(e.to_string())
    }
}

/// Audit event kinds (the strings stored in the database and shown through GraphQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SetupStarted,
    Enabled,
    Verified,
    VerifyFailed,
    CodeReplayed,
    RecoveryCodeUsed,
    RecoveryCodesRegenerated,
    Disabled,
    LockedOut,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::SetupStarted,
        EventKind::Enabled,
        EventKind::Verified,
        EventKind::VerifyFailed,
        EventKind::CodeReplayed,
        EventKind::RecoveryCodeUsed,
        EventKind::RecoveryCodesRegenerated,
        EventKind::Disabled,
        EventKind::LockedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SetupStarted => "SETUP_STARTED",
            EventKind::Enabled => "ENABLED",
            EventKind::Verified => "VERIFIED",
            EventKind::VerifyFailed => "VERIFY_FAILED",
            EventKind::CodeReplayed => "CODE_REPLAYED",
            EventKind::RecoveryCodeUsed => "RECOVERY_CODE_USED",
            EventKind::RecoveryCodesRegenerated => "RECOVERY_CODES_REGENERATED",
            EventKind::Disabled => "DISABLED",
            EventKind::LockedOut => "LOCKED_OUT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Settings of the service (a subset of the configuration).
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub issuer: String,
    pub pending_ttl: Duration,
    pub skew: u16,
    pub params: TotpParams,
    pub max_failed_attempts: u32,
    pub lockout: Duration,
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
        }
    }
}

/// A started enrolment: the Base32 secret, its otpauth URI and when the pending secret expires.
/// The QR code is rendered from `otpauth_uri` by callers that show one.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub expires_at: i64,
}

/// What `twoFactor` and the status routes report.
#[derive(Debug, Clone)]
pub struct Status {
    pub user_id: String,
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
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub at: i64,
    pub correlation_id: Option<String>,
}

/// What a matched TOTP step is used for.
enum StepUse {
    Verify,
    Regenerate(Vec<Vec<u8>>),
    Disable,
}

enum Failure {
    WrongCode,
    Replayed,
}

/// Why a TOTP check stops before consuming a step: an answer as it is, or a failure to count.
enum Refusal {
    Answer(DomainError),
    Count(Failure),
}

/// The pure part of a TOTP check (SPEC §2): the credential must be enabled and not locked, the
/// code must match a step in the window, and that step must be newer than the last used one.
/// Returns the step to consume and, when `reseal` asks for it and the secret is under an old
/// key, its re-encryption under the current one. No I/O: the store may run it on its writer
/// thread between reading the row and the compare-and-set.
fn decide_step(
    keys: &Keyring,
    skew: u16,
    user_id: &str,
    cred: Option<&credential::Model>,
    code: &str,
    now: i64,
    reseal: bool,
) -> Result<(i64, Option<Reseal>), Refusal> {
    let cred = match cred {
        Some(c) if c.enabled => c,
        _ => return Err(Refusal::Answer(DomainError::TotpNotEnabled)),
    };
    if let Some(e) = locked(cred, now) {
        return Err(Refusal::Answer(e));
    }
    let params = params_of(cred).map_err(Refusal::Answer)?;
    let raw = keys.open(user_id, &cred.key_id, &cred.secret).map_err(|e| Refusal::Answer(e.into()))?;
    let secret = Secret::from_bytes(raw);
    let step = match_step(&secret, params, code, now, skew).ok_or(Refusal::Count(Failure::WrongCode))?;
    if cred.last_used_step.is_some_and(|last| step <= last) {
        return Err(Refusal::Count(Failure::Replayed));
    }
    let reseal = if reseal && keys.is_stale(&cred.key_id) {
        let (secret, key_id) = keys.seal(user_id, secret.as_bytes()).map_err(|e| Refusal::Answer(e.into()))?;
        Some(Reseal { secret, key_id })
    } else {
        None
    };
    Ok((step, reseal))
}

/// The time step within `skew` steps of `now` whose code is `code`.
fn match_step(secret: &Secret, params: TotpParams, code: &str, now: i64, skew: u16) -> Option<i64> {
    let code = totp::normalize_totp_code(code, params.digits)?;
    let seconds = u64::try_from(now.div_euclid(1000)).ok()?;
    secret.matching_step(params, &code, seconds, skew).and_then(|s| i64::try_from(s).ok())
}

/// The two-factor service. Cheap to clone.
#[derive(Clone)]
pub struct TwoFactor {
    store: Store,
    keys: Arc<Keyring>,
    settings: Arc<ServiceSettings>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

/// The Prometheus counter behind each audit event kind.
fn count(kind: EventKind) {
    use metrics::counter;
    match kind {
        EventKind::SetupStarted => counter!("twofold_enrolments_total").increment(1),
        EventKind::Enabled => counter!("twofold_enables_total").increment(1),
        EventKind::Disabled => counter!("twofold_disables_total").increment(1),
        EventKind::RecoveryCodesRegenerated => counter!("twofold_recovery_codes_regenerated_total").increment(1),
        EventKind::LockedOut => counter!("twofold_lockouts_total").increment(1),
        EventKind::Verified => {
            counter!("twofold_verifications_total", "method" => "totp", "result" => "success").increment(1)
        }
        EventKind::RecoveryCodeUsed => {
            counter!("twofold_verifications_total", "method" => "recovery_code", "result" => "success").increment(1)
        }
        EventKind::VerifyFailed => counter!("twofold_verifications_total", "result" => "failure").increment(1),
        EventKind::CodeReplayed => {
            counter!("twofold_verifications_total", "result" => "failure").increment(1);
            counter!("twofold_replays_refused_total").increment(1);
        }
    }
}

fn params_of(c: &credential::Model) -> Result<TotpParams, DomainError> {
    let algorithm: Algorithm = c.algorithm.parse().map_err(DomainError::Internal)?;
    Ok(TotpParams {
        algorithm,
        digits: u8::try_from(c.digits).map_err(|_| DomainError::Internal("bad digits".into()))?,
        period: u32::try_from(c.period).map_err(|_| DomainError::Internal("bad period".into()))?,
    })
}

fn retry_after(locked_until: i64, now: i64) -> u64 {
    u64::try_from((locked_until - now + 999) / 1000).unwrap_or(0).max(1)
}

fn locked(c: &credential::Model, now: i64) -> Option<DomainError> {
    c.locked_until
        .filter(|&until| until > now)
        .map(|until| DomainError::TooManyAttempts { retry_after_seconds: retry_after(until, now) })
}

fn pending_is_live(c: &credential::Model, now: i64) -> bool {
    !c.enabled && c.pending_expires_at.is_some_and(|t| t > now)
}

impl TwoFactor {
    /// Builds the service and starts its audit writer (needs a Tokio runtime).
    pub fn new(store: Store, keys: Arc<Keyring>, settings: ServiceSettings, clock: Arc<dyn Clock>) -> Self {
        let audit = AuditLog::start(store.clone());
        TwoFactor { store, keys, settings: Arc::new(settings), clock, audit }
    }

    /// Waits until every audit event recorded so far is written (reads and shutdown call this).
    pub async fn flush_audit(&self) {
        self.audit.flush().await;
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Records an audit event and counts it in the metrics (one place for both).
    async fn audit(&self, user_id: &str, kind: EventKind, at: i64, correlation_id: &str) {
        count(kind);
        self.audit
            .record(NewEvent {
                user_id: user_id.to_owned(),
                kind: kind.as_str(),
                at,
                correlation_id: Some(correlation_id.to_owned()),
            })
            .await;
    }

    /// Begin enrolment: a fresh 160-bit secret stored as the user's pending secret (replacing any
    /// earlier pending one). Fails with `TotpAlreadyEnabled` while two-factor is enabled.
    pub async fn begin_enrolment(&self, viewer: &Viewer, correlation_id: &str) -> Result<Enrolment, DomainError> {
        let now = self.now_ms();
        let params = self.settings.params;
        let secret = Secret::generate().map_err(|_| DomainError::Internal("CSPRNG failure".into()))?;
        let (sealed, key_id) = self.keys.seal(&viewer.user_id, secret.as_bytes())?;
        let ttl_ms = i64::try_from(self.settings.pending_ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let expires_at = now + ttl_ms;
        let stored = self
            .store
            .upsert_pending(NewPending {
                user_id: viewer.user_id.clone(),
                secret: sealed,
                key_id,
                algorithm: params.algorithm.as_str().to_owned(),
                digits: i32::from(params.digits),
                period: params.period as i32,
                expires_at,
                now,
            })
            .await?;
        if !stored {
            return Err(DomainError::TotpAlreadyEnabled);
        }
        self.audit(&viewer.user_id, EventKind::SetupStarted, now, correlation_id).await;
        Ok(Enrolment {
            otpauth_uri: totp::otpauth_uri(&self.settings.issuer, &viewer.account_name, &secret, params),
            secret: secret.to_base32(),
            expires_at,
        })
    }

    /// Enable: the code must match the pending secret. Returns the new recovery codes (once).
    pub async fn enable(&self, viewer: &Viewer, code: &str, correlation_id: &str) -> Result<Enabled, DomainError> {
        let user = viewer.user_id.as_str();
        let now = self.now_ms();
        let cred = match self.store.credential(user).await? {
            Some(c) if c.enabled => return Err(DomainError::TotpAlreadyEnabled),
            Some(c) if pending_is_live(&c, now) => c,
            _ => return Err(DomainError::NoPendingSetup),
        };
        if let Some(e) = locked(&cred, now) {
            return Err(e);
        }
        let params = params_of(&cred)?;
        let secret = Secret::from_bytes(self.keys.open(user, &cred.key_id, &cred.secret)?);
        let Some(step) = match_step(&secret, params, code, now, self.settings.skew) else {
            return Err(self.fail(user, now, Failure::WrongCode, correlation_id).await);
        };
        let (codes, hashes) = self.new_recovery_codes(user)?;
        if self.store.enable(user, &cred.secret, step, now, hashes).await? {
            self.audit(user, EventKind::Enabled, now, correlation_id).await;
            return Ok(Enabled { recovery_codes: codes, enabled_at: now });
        }
        // Lost a race: decide from the current row.
        match self.store.credential(user).await? {
            Some(c) if c.enabled => Err(DomainError::TotpAlreadyEnabled),
            Some(c) if locked(&c, now).is_some() => Err(locked(&c, now).unwrap_or(DomainError::NoPendingSetup)),
            Some(c) if pending_is_live(&c, now) => Err(self.fail(user, now, Failure::WrongCode, correlation_id).await),
            _ => Err(DomainError::NoPendingSetup),
        }
    }

    /// Verify a TOTP code at login. Each time step is accepted once.
    pub async fn verify(&self, viewer: &Viewer, code: &str, correlation_id: &str) -> Result<Verified, DomainError> {
        let now = self.check_totp(&viewer.user_id, code, correlation_id, StepUse::Verify).await?;
        self.audit(&viewer.user_id, EventKind::Verified, now, correlation_id).await;
        Ok(Verified { at: now, method: VerificationMethod::Totp })
    }

    /// Verify with a single-use recovery code instead of a TOTP code.
    pub async fn use_recovery_code(
        &self,
        viewer: &Viewer,
        code: &str,
        correlation_id: &str,
    ) -> Result<Verified, DomainError> {
        let now = self.consume_recovery_code(&viewer.user_id, code, correlation_id, false).await?;
        Ok(Verified { at: now, method: VerificationMethod::RecoveryCode })
    }

    /// How many unused recovery codes the user has.
    pub async fn recovery_codes_remaining(&self, user_id: &str) -> Result<u64, DomainError> {
        Ok(self.store.remaining_recovery_codes(user_id).await?)
    }

    /// Replace the recovery-code set; needs a current TOTP code.
    pub async fn regenerate_recovery_codes(
        &self,
        viewer: &Viewer,
        code: &str,
        correlation_id: &str,
    ) -> Result<Vec<String>, DomainError> {
        let (codes, hashes) = self.new_recovery_codes(&viewer.user_id)?;
        let now = self.check_totp(&viewer.user_id, code, correlation_id, StepUse::Regenerate(hashes)).await?;
        self.audit(&viewer.user_id, EventKind::RecoveryCodesRegenerated, now, correlation_id).await;
        Ok(codes)
    }

    /// Disable two-factor with a current TOTP code or an unused recovery code. Returns when it
    /// happened.
    pub async fn disable(&self, viewer: &Viewer, code: &str, correlation_id: &str) -> Result<i64, DomainError> {
        let user = viewer.user_id.as_str();
        let digits = match self.store.credential(user).await? {
            Some(c) if c.enabled => params_of(&c)?.digits,
            _ => return Err(DomainError::TotpNotEnabled),
        };
        let now = if totp::normalize_totp_code(code, digits).is_some() {
            self.check_totp(user, code, correlation_id, StepUse::Disable).await?
        } else {
            self.consume_recovery_code(user, code, correlation_id, true).await?
        };
        self.audit(user, EventKind::Disabled, now, correlation_id).await;
        Ok(now)
    }

    /// The user's current state.
    pub async fn status(&self, user_id: &str) -> Result<Status, DomainError> {
        let now = self.now_ms();
        let cred = self.store.credential(user_id).await?;
        let live = cred.filter(|c| c.enabled || pending_is_live(c, now));
        let enabled = live.as_ref().is_some_and(|c| c.enabled);
        Ok(Status {
            user_id: user_id.to_owned(),
            enabled,
            pending_expires_at: live.as_ref().filter(|c| !c.enabled).and_then(|c| c.pending_expires_at),
            enabled_at: live.as_ref().and_then(|c| c.enabled_at),
            recovery_codes_remaining: if enabled { self.store.remaining_recovery_codes(user_id).await? } else { 0 },
            params: match &live {
                Some(c) => params_of(c)?,
                None => self.settings.params,
            },
        })
    }

    /// The user's most recent audit events, newest first; `first` is clamped to 1–100.
    pub async fn events(&self, user_id: &str, first: i64) -> Result<Vec<Event>, DomainError> {
        let limit = first.clamp(1, 100) as u64;
        self.audit.flush().await;
        Ok(self
            .store
            .events(user_id, limit)
            .await?
            .into_iter()
            .filter_map(|e| {
                Some(Event { kind: EventKind::parse(&e.kind)?, at: e.at, correlation_id: e.correlation_id })
            })
            .collect())
    }

    fn new_recovery_codes(&self, user_id: &str) -> Result<(Vec<String>, Vec<Vec<u8>>), DomainError> {
        let codes = totp::generate_recovery_codes().map_err(|_| DomainError::Internal("CSPRNG failure".into()))?;
        let hashes = codes
            .iter()
            .filter_map(|c| totp::normalize_recovery_code(c))
            .map(|c| self.keys.recovery_hash(user_id, &c))
            .collect();
        Ok((codes, hashes))
    }

    /// Counts a failed check and turns it into the error the caller sees.
    async fn fail(&self, user_id: &str, now: i64, failure: Failure, correlation_id: &str) -> DomainError {
        let max = i32::try_from(self.settings.max_failed_attempts).unwrap_or(i32::MAX);
        let lockout_ms = i64::try_from(self.settings.lockout.as_millis()).unwrap_or(i64::MAX / 4);
        let outcome = match self.store.record_failure(user_id, now, max, lockout_ms).await {
            Ok(o) => o,
            Err(e) => return e.into(),
        };
        let (kind, make): (EventKind, fn(u32) -> DomainError) = match failure {
            Failure::WrongCode => (EventKind::VerifyFailed, |n| DomainError::InvalidCode { attempts_remaining: n }),
            Failure::Replayed => (EventKind::CodeReplayed, |n| DomainError::CodeAlreadyUsed { attempts_remaining: n }),
        };
        match outcome {
            FailureOutcome::Counted { failed_attempts } => {
                self.audit(user_id, kind, now, correlation_id).await;
                make(u32::try_from(max - failed_attempts).unwrap_or(0))
            }
            FailureOutcome::LockedOut { .. } => {
                self.audit(user_id, kind, now, correlation_id).await;
                self.audit(user_id, EventKind::LockedOut, now, correlation_id).await;
                tracing::warn!("two-factor lockout after repeated failures");
                make(0)
            }
            FailureOutcome::NotCounted => match self.store.credential(user_id).await {
                Ok(Some(c)) => locked(&c, now).unwrap_or(DomainError::TotpNotEnabled),
                Ok(None) => DomainError::TotpNotEnabled,
                Err(e) => e.into(),
            },
        }
    }

    /// The user's enabled credential, or why no code may be checked: `TotpNotEnabled` or
    /// `TooManyAttempts`. Also decides the answer after a lost compare-and-set.
    async fn enabled_unlocked(&self, user_id: &str, now: i64) -> Result<credential::Model, DomainError> {
        match self.store.credential(user_id).await? {
            Some(c) if c.enabled => match locked(&c, now) {
                Some(e) => Err(e),
                None => Ok(c),
            },
            _ => Err(DomainError::TotpNotEnabled),
        }
    }

    /// Reads the credential and decides which step `code` may consume ([`decide_step`]).
    async fn matched_step(&self, user_id: &str, code: &str, now: i64) -> Result<Result<i64, Refusal>, DomainError> {
        let cred = self.store.credential(user_id).await?;
        Ok(decide_step(&self.keys, self.settings.skew, user_id, cred.as_ref(), code, now, false).map(|(step, _)| step))
    }

    /// The shared TOTP check of verify, regenerate and disable: state, lockout, code, replay
    /// ([`decide_step`]), then an atomic compare-and-set that consumes the matched step. Returns
    /// the time used.
    async fn check_totp(
        &self,
        user_id: &str,
        code: &str,
        correlation_id: &str,
        used_for: StepUse,
    ) -> Result<i64, DomainError> {
        let now = self.now_ms();
        let skew = self.settings.skew;
        let consumed = match used_for {
            // The login path: read, check and compare-and-set in one store call (on SQLite one
            // job of the writer thread).
            StepUse::Verify => {
                let (keys, user, code) = (self.keys.clone(), user_id.to_owned(), code.to_owned());
                self.store
                    .consume_checked_step(user_id, now, move |cred| {
                        decide_step(&keys, skew, &user, cred, &code, now, true)
                    })
                    .await?
            }
            StepUse::Regenerate(hashes) => match self.matched_step(user_id, code, now).await? {
                Ok(step) => Ok(self.store.regenerate_codes(user_id, step, now, hashes).await?),
                Err(refusal) => Err(refusal),
            },
            StepUse::Disable => match self.matched_step(user_id, code, now).await? {
                Ok(step) => Ok(self.store.disable_with_step(user_id, step, now).await?),
                Err(refusal) => Err(refusal),
            },
        };
        match consumed {
            Ok(true) => Ok(now),
            // Lost a race: another request consumed this step, locked the credential or
            // disabled it.
            Ok(false) => Err(match self.enabled_unlocked(user_id, now).await {
                Ok(_) => self.fail(user_id, now, Failure::Replayed, correlation_id).await,
                Err(e) => e,
            }),
            Err(Refusal::Answer(e)) => Err(e),
            Err(Refusal::Count(failure)) => Err(self.fail(user_id, now, failure, correlation_id).await),
        }
    }

    /// Consumes a recovery code (optionally disabling two-factor in the same transaction).
    async fn consume_recovery_code(
        &self,
        user_id: &str,
        code: &str,
        correlation_id: &str,
        disable: bool,
    ) -> Result<i64, DomainError> {
        let now = self.now_ms();
        self.enabled_unlocked(user_id, now).await?;
        let Some(normalized) = totp::normalize_recovery_code(code) else {
            return Err(self.fail(user_id, now, Failure::WrongCode, correlation_id).await);
        };
        let hashes = self.keys.recovery_hash_candidates(user_id, &normalized);
        if self.store.consume_recovery_code(user_id, hashes, now, disable).await? {
            self.audit(user_id, EventKind::RecoveryCodeUsed, now, correlation_id).await;
            return Ok(now);
        }
        Err(match self.enabled_unlocked(user_id, now).await {
            Ok(_) => self.fail(user_id, now, Failure::WrongCode, correlation_id).await,
            Err(e) => e,
        })
    }
}
