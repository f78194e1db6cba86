//! The two-factor service: the operations of SPEC §2. GraphQL resolvers and both REST dialects
//! call these functions and only map their results; nothing here knows about HTTP or GraphQL.

use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditLog;
use crate::auth::Viewer;
use crate::clock::Clock;
use crate::crypto::{CryptoError, Keyring};
use crate::store::{
    AttemptLimits, Change, Checked, Credential, FailureOutcome, NewEvent, NewPending, Reseal, Store, Verdict,
};
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
    #[error("{0}")]
    Database(#[from] crate::store::Error),
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

/// A failed check that counts against the lockout.
#[derive(Debug, Clone, Copy)]
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
    cred: Option<&Credential>,
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

/// A [`decide_step`] result as the store's verdict: a step to consume becomes `change(step,
/// reseal)`, a refusal an answer or a counted failure.
fn step_verdict(
    decided: Result<(i64, Option<Reseal>), Refusal>,
    change: impl FnOnce(i64, Option<Reseal>) -> Change,
) -> Verdict<DomainError, Failure> {
    match decided {
        Ok((step, reseal)) => Verdict::Accept(change(step, reseal)),
        Err(Refusal::Answer(e)) => Verdict::Refuse(e),
        Err(Refusal::Count(failure)) => Verdict::Fail(failure),
    }
}

/// The answer for a credential that is not enabled, or enabled but locked; `None` when a code
/// may be checked.
fn unavailable(cred: Option<&Credential>, now: i64) -> Option<DomainError> {
    match cred {
        Some(c) if c.enabled => locked(c, now),
        _ => Some(DomainError::TotpNotEnabled),
    }
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

fn params_of(c: &Credential) -> Result<TotpParams, DomainError> {
    let algorithm: Algorithm = c.algorithm.parse().map_err(DomainError::Internal)?;
    Ok(TotpParams {
        algorithm,
        digits: u8::try_from(c.digits).map_err(|_| DomainError::Internal("bad digits".into()))?,
        period: u32::try_from(c.period).map_err(|_| DomainError::Internal("bad period".into()))?,
    })
}

fn retry_after(locked_until: i64, now: i64) -> u64 {
    u64::try_from(locked_until.saturating_sub(now).saturating_add(999) / 1000).unwrap_or(0).max(1)
}

fn locked(c: &Credential, now: i64) -> Option<DomainError> {
    c.locked_until
        .filter(|&until| until > now)
        .map(|until| DomainError::TooManyAttempts { retry_after_seconds: retry_after(until, now) })
}

fn pending_is_live(c: &Credential, now: i64) -> bool {
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

    /// Readiness: the database answers (and, on SQLite, the writer thread runs).
    pub async fn ready(&self) -> Result<(), DomainError> {
        Ok(self.store.ping().await?)
    }

    /// Deletes up to `batch` expired pending enrolments and up to `batch` audit events older than
    /// `events_before` (after writing the buffered ones). Returns (pending, events) deleted.
    pub async fn prune(&self, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), DomainError> {
        self.audit.flush().await;
        Ok(self.store.prune(now, events_before, batch).await?)
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
    /// earlier pending one), its otpauth URI and, `with_qr`, its QR code. Everything the caller
    /// is shown is built before the secret is stored, so a stored secret is always returned.
    /// Fails with `TotpAlreadyEnabled` while two-factor is enabled.
    pub async fn begin_enrolment(
        &self,
        viewer: &Viewer,
        with_qr: bool,
        correlation_id: &str,
    ) -> Result<Enrolment, DomainError> {
        let now = self.now_ms();
        let params = self.settings.params;
        let secret = Secret::generate().map_err(|_| DomainError::Internal("CSPRNG failure".into()))?;
        let otpauth_uri = totp::otpauth_uri(&self.settings.issuer, &viewer.account_name, &secret, params);
        let qr_code = match with_qr {
            true => Some(totp::qr_data_uri(&otpauth_uri).map_err(|e| DomainError::Internal(e.to_string()))?),
            false => None,
        };
        let (sealed, key_id) = self.keys.seal(&viewer.user_id, secret.as_bytes())?;
        let ttl_ms = i64::try_from(self.settings.pending_ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(ttl_ms);
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
        Ok(Enrolment { otpauth_uri, qr_code, secret: secret.to_base32(), expires_at })
    }

    /// Enable: the code must match the pending secret. Returns the new recovery codes (once).
    pub async fn enable(&self, viewer: &Viewer, code: &str, correlation_id: &str) -> Result<Enabled, DomainError> {
        let user = viewer.user_id.as_str();
        let now = self.now_ms();
        let NewCodes { codes, hashes: code_hashes, key_id } = self.new_recovery_codes(user)?;
        let (keys, skew, user_id, code) = (self.keys.clone(), self.settings.skew, user.to_owned(), code.to_owned());
        self.check(user, now, correlation_id, move |cred| {
            let cred = match cred {
                Some(c) if c.enabled => return Verdict::Refuse(DomainError::TotpAlreadyEnabled),
                Some(c) if pending_is_live(c, now) => c,
                _ => return Verdict::Refuse(DomainError::NoPendingSetup),
            };
            if let Some(e) = locked(cred, now) {
                return Verdict::Refuse(e);
            }
            let secret = match params_of(cred).and_then(|params| {
                let raw = keys.open(&user_id, &cred.key_id, &cred.secret)?;
                Ok((Secret::from_bytes(raw), params))
            }) {
                Ok(s) => s,
                Err(e) => return Verdict::Refuse(e),
            };
            match match_step(&secret.0, secret.1, &code, now, skew) {
                Some(step) => Verdict::Accept(Change::Enable { step, code_hashes, key_id }),
                None => Verdict::Fail(Failure::WrongCode),
            }
        })
        .await?;
        self.audit(user, EventKind::Enabled, now, correlation_id).await;
        Ok(Enabled { recovery_codes: codes, enabled_at: now })
    }

    /// Verify a TOTP code at login. Each time step is accepted once.
    pub async fn verify(&self, viewer: &Viewer, code: &str, correlation_id: &str) -> Result<Verified, DomainError> {
        let user = viewer.user_id.as_str();
        let now = self.now_ms();
        let (keys, skew, user_id, code) = (self.keys.clone(), self.settings.skew, user.to_owned(), code.to_owned());
        self.check(user, now, correlation_id, move |cred| {
            step_verdict(decide_step(&keys, skew, &user_id, cred, &code, now, true), |step, reseal| {
                Change::ConsumeStep { step, reseal }
            })
        })
        .await?;
        self.audit(user, EventKind::Verified, now, correlation_id).await;
        Ok(Verified { at: now, method: VerificationMethod::Totp })
    }

    /// Verify with a single-use recovery code instead of a TOTP code.
    pub async fn use_recovery_code(
        &self,
        viewer: &Viewer,
        code: &str,
        correlation_id: &str,
    ) -> Result<Verified, DomainError> {
        let user = viewer.user_id.as_str();
        let now = self.now_ms();
        let hashes = self.recovery_hashes(user, code);
        self.check(user, now, correlation_id, move |cred| match unavailable(cred, now) {
            Some(e) => Verdict::Refuse(e),
            None => recovery_verdict(hashes, false),
        })
        .await?;
        self.audit(user, EventKind::RecoveryCodeUsed, now, correlation_id).await;
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
        let user = viewer.user_id.as_str();
        let now = self.now_ms();
        let NewCodes { codes, hashes: code_hashes, key_id } = self.new_recovery_codes(user)?;
        let (keys, skew, user_id, code) = (self.keys.clone(), self.settings.skew, user.to_owned(), code.to_owned());
        self.check(user, now, correlation_id, move |cred| {
            step_verdict(decide_step(&keys, skew, &user_id, cred, &code, now, false), |step, _| Change::Regenerate {
                step,
                code_hashes,
                key_id,
            })
        })
        .await?;
        self.audit(user, EventKind::RecoveryCodesRegenerated, now, correlation_id).await;
        Ok(codes)
    }

    /// Disable two-factor with a current TOTP code or an unused recovery code (told apart by
    /// shape: a recovery code has 10 characters, a TOTP code 6 or 8 digits). Returns when it
    /// happened.
    pub async fn disable(&self, viewer: &Viewer, code: &str, correlation_id: &str) -> Result<i64, DomainError> {
        let user = viewer.user_id.as_str();
        let now = self.now_ms();
        let hashes = self.recovery_hashes(user, code);
        let with_recovery_code = !hashes.is_empty();
        let (keys, skew, user_id, code) = (self.keys.clone(), self.settings.skew, user.to_owned(), code.to_owned());
        self.check(user, now, correlation_id, move |cred| match unavailable(cred, now) {
            Some(e) => Verdict::Refuse(e),
            None if with_recovery_code => recovery_verdict(hashes, true),
            None => step_verdict(decide_step(&keys, skew, &user_id, cred, &code, now, false), |_, _| Change::Disable),
        })
        .await?;
        if with_recovery_code {
            self.audit(user, EventKind::RecoveryCodeUsed, now, correlation_id).await;
        }
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

    /// Ten fresh recovery codes with their hashes under the current key.
    fn new_recovery_codes(&self, user_id: &str) -> Result<NewCodes, DomainError> {
        let codes = totp::generate_recovery_codes().map_err(|_| DomainError::Internal("CSPRNG failure".into()))?;
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
    /// unit) and turns a counted failure into its audit events and the caller's error.
    async fn check(
        &self,
        user_id: &str,
        now: i64,
        correlation_id: &str,
        decide: impl FnOnce(Option<&Credential>) -> Verdict<DomainError, Failure> + Send + 'static,
    ) -> Result<(), DomainError> {
        let limits = self.limits();
        let (failure, outcome) = match self.store.check_code(user_id, now, limits, decide).await? {
            Checked::Accepted => return Ok(()),
            Checked::Refused(answer) => return Err(answer),
            Checked::Failed(failure, outcome) => (failure, outcome),
        };
        let (kind, make): (EventKind, fn(u32) -> DomainError) = match failure {
            Failure::WrongCode => (EventKind::VerifyFailed, |n| DomainError::InvalidCode { attempts_remaining: n }),
            Failure::Replayed => (EventKind::CodeReplayed, |n| DomainError::CodeAlreadyUsed { attempts_remaining: n }),
        };
        Err(match outcome {
            FailureOutcome::Counted { failed_attempts } => {
                self.audit(user_id, kind, now, correlation_id).await;
                make(u32::try_from(limits.max_attempts.saturating_sub(failed_attempts)).unwrap_or(0))
            }
            FailureOutcome::LockedOut { .. } => {
                self.audit(user_id, kind, now, correlation_id).await;
                self.audit(user_id, EventKind::LockedOut, now, correlation_id).await;
                tracing::warn!("two-factor lockout after repeated failures");
                make(0)
            }
            // The check ran under the row's lock and found it unlocked, so this cannot happen;
            // answer as a lockout rather than let a guess through.
            FailureOutcome::NotCounted => DomainError::TooManyAttempts {
                retry_after_seconds: u64::try_from(limits.lockout_ms / 1000).unwrap_or(1).max(1),
            },
        })
    }
}

/// A fresh recovery-code set: the codes shown once, their hashes, and the key that hashed them.
struct NewCodes {
    codes: Vec<String>,
    hashes: Vec<Vec<u8>>,
    key_id: String,
}

/// A recovery-code check: consume one of `hashes` (none: counts as a wrong code).
fn recovery_verdict(hashes: Vec<Vec<u8>>, disable: bool) -> Verdict<DomainError, Failure> {
    if hashes.is_empty() {
        Verdict::Fail(Failure::WrongCode)
    } else {
        Verdict::RecoveryCode { hashes, disable, failure: Failure::WrongCode }
    }
}
