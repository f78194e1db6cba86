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
use crate::audit::AuditLog;
use crate::auth::Viewer;
use crate::clock::Clock;
use crate::crypto::Keyring;
use crate::store::{AttemptLimits, Change, Checked, Credential, FailureOutcome, NewEvent, NewPending, Store, Verdict};
use crate::totp::{self, Secret, TotpParams};

use decide::{Failure, Judge};
pub use error::{CheckError, EnableError, EnrolError, Internal, Rejection};
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
    /// The signed assertion of this verification (SPEC §7).
    pub assertion: String,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub at: i64,
    pub correlation_id: Option<String>,
}

/// The two-factor service. Cheap to clone.
#[derive(Clone)]
pub struct TwoFactor {
    store: Store,
    keys: Arc<Keyring>,
    settings: Arc<ServiceSettings>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    assertions: Arc<Assertions>,
}

/// A fresh recovery-code set: the codes shown once, their hashes, and the key that hashed them.
struct NewCodes {
    codes: Vec<String>,
    hashes: Vec<Vec<u8>>,
    key_id: String,
}

impl TwoFactor {
    /// Builds the service and starts its audit writer (needs a Tokio runtime).
    pub fn new(store: Store, keys: Arc<Keyring>, settings: ServiceSettings, clock: Arc<dyn Clock>) -> Self {
        let audit = AuditLog::start(store.clone());
        let assertions =
            Arc::new(Assertions::new(store.clone(), keys.clone(), settings.assertion.clone(), clock.clone()));
        TwoFactor { store, keys, settings: Arc::new(settings), clock, audit, assertions }
    }

    /// Waits until every audit event recorded so far is written (reads and shutdown call this).
    pub async fn flush_audit(&self) {
        self.audit.flush().await;
    }

    /// Readiness: the database answers (and, on SQLite, the writer thread runs).
    pub async fn ready(&self) -> Result<(), Internal> {
        Ok(self.store.ping().await?)
    }

    /// Deletes up to `batch` expired pending enrolments and up to `batch` audit events older than
    /// `events_before` (after writing the buffered ones). Returns (pending, events) deleted.
    pub async fn prune(&self, now: i64, events_before: i64, batch: u64) -> Result<(u64, u64), Internal> {
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
        events::count(kind);
        self.audit
            .record(NewEvent {
                user_id: user_id.to_owned(),
                kind: kind.as_str(),
                at,
                correlation_id: Some(correlation_id.to_owned()),
            })
            .await;
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
        let stored = self
            .store
            .upsert_pending(NewPending {
                user_id: viewer.user_id.clone(),
                secret: sealed,
                key_id,
                algorithm: params.algorithm.as_str().to_owned(),
                digits: i32::from(params.digits),
                period: i32::try_from(params.period).unwrap_or(i32::MAX),
                expires_at,
                now,
            })
            .await?;
        if !stored {
            return Err(EnrolError::TotpAlreadyEnabled);
        }
        self.audit(&viewer.user_id, EventKind::SetupStarted, now, correlation_id).await;
        Ok(Enrolment { otpauth_uri, qr_code, secret: secret.to_base32(), expires_at })
    }

    /// Enable: the code must match the pending secret. Returns the new recovery codes (once).
    pub async fn enable(&self, viewer: &Viewer, code: &str, correlation_id: &str) -> Result<Enabled, EnableError> {
        let user = viewer.user_id.as_str();
        let now = self.now_ms();
        let NewCodes { codes, hashes: code_hashes, key_id } = self.new_recovery_codes(user)?;
        let judge = self.judge(user, code, now);
        self.check(user, now, correlation_id, move |cred| {
            judge.enable(cred, |step| Change::Enable { step, code_hashes, key_id })
        })
        .await?;
        self.audit(user, EventKind::Enabled, now, correlation_id).await;
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
            decide::recovery(cred, now, hashes, false)
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
        decide: impl FnOnce(Option<&Credential>) -> Verdict<CheckError, Failure> + Send + 'static,
    ) -> Result<Verified, CheckError> {
        let user = viewer.user_id.as_str();
        let signer = self.assertions.signer().await.map_err(Internal::from)?;
        self.check(user, now, correlation_id, decide).await?;
        let (kind, amr) = match method {
            VerificationMethod::Totp => (EventKind::Verified, assertion::Method::Otp),
            VerificationMethod::RecoveryCode => (EventKind::RecoveryCodeUsed, assertion::Method::RecoveryCode),
        };
        self.audit(user, kind, now, correlation_id).await;
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
        self.check(user, now, correlation_id, move |cred| {
            judge.step(cred, false, |step, _| Change::Regenerate { step, code_hashes, key_id })
        })
        .await?;
        self.audit(user, EventKind::RecoveryCodesRegenerated, now, correlation_id).await;
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
        self.check(user, now, correlation_id, move |cred| match with_recovery_code {
            true => decide::recovery(cred, now, hashes, true),
            false => judge.step(cred, false, |_, _| Change::Disable),
        })
        .await?;
        if with_recovery_code {
            self.audit(user, EventKind::RecoveryCodeUsed, now, correlation_id).await;
        }
        self.audit(user, EventKind::Disabled, now, correlation_id).await;
        Ok(now)
    }

    /// The user's current state.
    pub async fn status(&self, user_id: &str) -> Result<Status, Internal> {
        let now = self.now_ms();
        let cred = self.store.credential(user_id).await?;
        let live = cred.filter(|c| c.enabled || decide::pending_is_live(c, now));
        let enabled = live.as_ref().is_some_and(|c| c.enabled);
        Ok(Status {
            user_id: user_id.to_owned(),
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
    /// unit) and turns a counted failure into its audit events and the caller's error.
    async fn check<E>(
        &self,
        user_id: &str,
        now: i64,
        correlation_id: &str,
        decide: impl FnOnce(Option<&Credential>) -> Verdict<E, Failure> + Send + 'static,
    ) -> Result<(), E>
    where
        E: From<Rejection> + From<crate::store::Error> + Send + 'static,
    {
        let limits = self.limits();
        let (failure, outcome) = match self.store.check_code(user_id, now, limits, decide).await? {
            Checked::Accepted => return Ok(()),
            Checked::Refused(answer) => return Err(answer),
            Checked::Failed(failure, outcome) => (failure, outcome),
        };
        let (kind, rejection): (EventKind, fn(u32) -> Rejection) = match failure {
            Failure::WrongCode => (EventKind::VerifyFailed, |n| Rejection::InvalidCode { attempts_remaining: n }),
            Failure::Replayed => (EventKind::CodeReplayed, |n| Rejection::CodeAlreadyUsed { attempts_remaining: n }),
        };
        Err(E::from(match outcome {
            FailureOutcome::Counted { failed_attempts } => {
                self.audit(user_id, kind, now, correlation_id).await;
                rejection(u32::try_from(limits.max_attempts.saturating_sub(failed_attempts)).unwrap_or(0))
            }
            FailureOutcome::LockedOut { .. } => {
                self.audit(user_id, kind, now, correlation_id).await;
                self.audit(user_id, EventKind::LockedOut, now, correlation_id).await;
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
