//! GraphQL output types. These are the public API: every type and field is documented, and none
//! is derived from a database model.

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputValueError, InputValueResult, Interface, Scalar, ScalarType, SimpleObject,
    Union, Value,
};

use super::RequestData;
use crate::service::{self, CheckError, EnableError, EnrolError, EventKind, State, Status};

/// A point in time (Unix milliseconds inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub i64);

/// RFC 3339 timestamp in UTC with a `Z`, at most millisecond precision, e.g. `2026-11-25T01:02:03Z`.
#[Scalar(name = "DateTime", specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| DateTime(t.timestamp_millis()))
                .map_err(|_| InputValueError::custom("expected an RFC 3339 timestamp")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(format_timestamp(self.0))
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC with `Z` (fraction only when non-zero).
pub fn format_timestamp(ms: i64) -> String {
    crate::clock::rfc3339(ms)
}

/// Machine-readable code of a `UserError`.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoFactorErrorCode {
    /// Two-factor authentication is already enabled; disable it first (with a code) to re-enrol.
    TotpAlreadyEnabled,
    /// No pending setup: call `setupTotp` (or `prepareTwoFactor`) first, or the pending one expired.
    NoPendingSetup,
    /// The code is wrong (or malformed).
    InvalidCode,
    /// The code is right but its time step was already used; wait for the next code.
    CodeAlreadyUsed,
    /// Too many consecutive failures: the credential is locked for a while.
    TooManyAttempts,
    /// Two-factor authentication is not enabled for this user.
    TotpNotEnabled,
}

impl From<&TwoFactorErrorCode> for TwoFactorErrorCode {
    fn from(code: &TwoFactorErrorCode) -> Self {
        *code
    }
}

/// An expected failure, returned as data inside a mutation's result union.
#[derive(Interface)]
#[graphql(
    field(name = "code", ty = "TwoFactorErrorCode", desc = "Machine-readable error code."),
    field(name = "message", ty = "String", desc = "Human-readable explanation (English).")
)]
pub enum UserError {
    TotpAlreadyEnabled(TotpAlreadyEnabled),
    NoPendingSetup(NoPendingSetup),
    InvalidCode(InvalidCode),
    CodeAlreadyUsed(CodeAlreadyUsed),
    TooManyAttempts(TooManyAttempts),
    TotpNotEnabled(TotpNotEnabled),
}

/// Two-factor authentication is already enabled for this user.
#[derive(SimpleObject, Debug, Clone)]
pub struct TotpAlreadyEnabled {
    /// Always `TOTP_ALREADY_ENABLED`.
    pub code: TwoFactorErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// There is no live pending setup to enable (never started, or expired).
#[derive(SimpleObject, Debug, Clone)]
pub struct NoPendingSetup {
    /// Always `NO_PENDING_SETUP`.
    pub code: TwoFactorErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// The code is wrong. Counts as a failed attempt.
#[derive(SimpleObject, Debug, Clone)]
pub struct InvalidCode {
    /// Always `INVALID_CODE`.
    pub code: TwoFactorErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Failed attempts left before the credential is locked (0: this attempt locked it).
    pub attempts_remaining: i32,
}

/// The code was correct but its time step was already used (replay). Counts as a failed attempt.
#[derive(SimpleObject, Debug, Clone)]
pub struct CodeAlreadyUsed {
    /// Always `CODE_ALREADY_USED`.
    pub code: TwoFactorErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Failed attempts left before the credential is locked.
    pub attempts_remaining: i32,
}

/// Too many consecutive failures: every code check is refused until the lockout ends.
#[derive(SimpleObject, Debug, Clone)]
pub struct TooManyAttempts {
    /// Always `TOO_MANY_ATTEMPTS`.
    pub code: TwoFactorErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds until codes are checked again.
    pub retry_after_seconds: i32,
}

/// Two-factor authentication is not enabled for this user.
#[derive(SimpleObject, Debug, Clone)]
pub struct TotpNotEnabled {
    /// Always `TOTP_NOT_ENABLED`.
    pub code: TwoFactorErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// A fresh pending secret (no QR code; see `setupTotp` for one).
#[derive(SimpleObject, Debug, Clone)]
pub struct TwoFactorSecret {
    /// Base32 secret (RFC 4648, upper case, no padding) for manual entry.
    pub secret: String,
    /// When the pending secret expires if not enabled.
    pub expires_at: DateTime,
}

/// A fresh pending secret with its otpauth URI and QR code.
#[derive(SimpleObject, Debug, Clone)]
pub struct TotpSetup {
    /// Base32 secret (RFC 4648, upper case, no padding) for manual entry.
    pub secret: String,
    /// `data:image/png;base64,…`: a 300×300 greyscale PNG QR code of `otpauthUri`.
    pub qr_code: String,
    /// `otpauth://totp/Issuer:account?secret=…&issuer=…&algorithm=…&digits=…&period=…`
    pub otpauth_uri: String,
    /// When the pending secret expires if not enabled.
    pub expires_at: DateTime,
}

/// Two-factor authentication is now enabled.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct TotpEnabled {
    /// The 10 recovery codes. Shown only this once: ask the user to store them.
    pub recovery_codes: Vec<String>,
    /// When two-factor was enabled.
    pub enabled_at: DateTime,
    #[graphql(skip)]
    pub user_id: String,
}

/// How a verification succeeded.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationMethod {
    /// A TOTP code from the authenticator app.
    Totp,
    /// A single-use recovery code.
    RecoveryCode,
}

/// The code was accepted.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct TotpVerified {
    /// When the code was accepted.
    pub verified_at: DateTime,
    /// Whether a TOTP code or a recovery code was used.
    pub method: VerificationMethod,
    /// Proof of this verification for the host application's backend: a compact JWS (EdDSA,
    /// `typ` `twofold-verification+jwt`) with `iss`, `sub`, `aud` (when configured), `iat`, `exp`,
    /// `jti`, `auth_time`, `amr` and the `nonce` given. Check it against
    /// `/.well-known/jwks.json`; it is never accepted as a bearer token.
    pub assertion: String,
    #[graphql(skip)]
    pub user_id: String,
}

/// Two-factor authentication is now disabled; the secret and recovery codes are deleted.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct TotpDisabled {
    /// When two-factor was disabled.
    pub disabled_at: DateTime,
    #[graphql(skip)]
    pub user_id: String,
}

async fn load_status(ctx: &Context<'_>, user_id: &str) -> async_graphql::Result<TwoFactorStatus> {
    let data = ctx.data::<RequestData>()?;
    data.service.status(user_id).await.map(TwoFactorStatus).map_err(|e| super::internal_error(&data.correlation_id, &e))
}

#[ComplexObject]
impl TotpEnabled {
    /// The user's two-factor status after this change (for normalized caches).
    async fn status(&self, ctx: &Context<'_>) -> async_graphql::Result<TwoFactorStatus> {
        load_status(ctx, &self.user_id).await
    }
}

#[ComplexObject]
impl TotpVerified {
    /// Unused recovery codes left.
    async fn recovery_codes_remaining(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        let data = ctx.data::<RequestData>()?;
        let n = data
            .service
            .recovery_codes_remaining(&self.user_id)
            .await
            .map_err(|e| super::internal_error(&data.correlation_id, &e))?;
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }

    /// The user's two-factor status after this verification (for normalized caches).
    async fn status(&self, ctx: &Context<'_>) -> async_graphql::Result<TwoFactorStatus> {
        load_status(ctx, &self.user_id).await
    }
}

#[ComplexObject]
impl TotpDisabled {
    /// The user's two-factor status after this change (for normalized caches).
    async fn status(&self, ctx: &Context<'_>) -> async_graphql::Result<TwoFactorStatus> {
        load_status(ctx, &self.user_id).await
    }
}

/// A new set of recovery codes; the previous set no longer works.
#[derive(SimpleObject, Debug, Clone)]
pub struct RecoveryCodes {
    /// The 10 new recovery codes. Shown only this once.
    pub recovery_codes: Vec<String>,
}

/// Kind of an audit event.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoFactorEventKind {
    /// A setup (pending secret) was started.
    SetupStarted,
    /// Two-factor was enabled.
    Enabled,
    /// A TOTP code was verified.
    Verified,
    /// A code check failed (wrong code).
    VerifyFailed,
    /// A correct code was replayed (its time step was already used).
    CodeReplayed,
    /// A recovery code was used.
    RecoveryCodeUsed,
    /// The recovery codes were regenerated.
    RecoveryCodesRegenerated,
    /// Two-factor was disabled.
    Disabled,
    /// Too many failures locked the credential.
    LockedOut,
    /// An admin removed the credential (`actor` says who).
    AdminReset,
    /// An admin cleared the failure counter and lockout (`actor` says who).
    AdminUnlocked,
    /// The credential was imported from another system (`actor` says who).
    Imported,
}

impl From<EventKind> for TwoFactorEventKind {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::SetupStarted => Self::SetupStarted,
            EventKind::Enabled => Self::Enabled,
            EventKind::Verified => Self::Verified,
            EventKind::VerifyFailed => Self::VerifyFailed,
            EventKind::CodeReplayed => Self::CodeReplayed,
            EventKind::RecoveryCodeUsed => Self::RecoveryCodeUsed,
            EventKind::RecoveryCodesRegenerated => Self::RecoveryCodesRegenerated,
            EventKind::Disabled => Self::Disabled,
            EventKind::LockedOut => Self::LockedOut,
            EventKind::AdminReset => Self::AdminReset,
            EventKind::AdminUnlocked => Self::AdminUnlocked,
            EventKind::Imported => Self::Imported,
        }
    }
}

/// One audit event. Never contains a code or secret.
#[derive(SimpleObject, Debug, Clone)]
pub struct TwoFactorEvent {
    /// What happened.
    pub kind: TwoFactorEventKind,
    /// When it happened.
    pub at: DateTime,
    /// The correlation id of the request that caused it.
    pub correlation_id: Option<String>,
    /// Who did it, for admin actions: the admin's `sub`, or `cli` for the command line; null
    /// otherwise.
    pub actor: Option<String>,
}

/// Where a user's two-factor credential stands.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoFactorState {
    /// No credential: never enrolled, disabled, reset, or a setup that expired.
    None,
    /// A setup was started and not yet enabled (and has not expired).
    Pending,
    /// Two-factor is enabled.
    Enabled,
    /// Enabled or pending, and locked now by failed attempts (see `lockedUntil`).
    Locked,
}

impl From<State> for TwoFactorState {
    fn from(s: State) -> Self {
        match s {
            State::None => Self::None,
            State::Pending => Self::Pending,
            State::Enabled => Self::Enabled,
            State::Locked => Self::Locked,
        }
    }
}

/// One user in `adminTwoFactors`.
#[derive(SimpleObject)]
pub struct TwoFactorStatusEdge {
    /// Opaque; pass it as `after` to continue after this user.
    pub cursor: String,
    /// The user's two-factor status.
    pub node: TwoFactorStatus,
}

/// Where a page of a connection ends.
#[derive(SimpleObject, Debug, Clone)]
pub struct PageInfo {
    /// Whether more users follow this page.
    pub has_next_page: bool,
    /// The cursor of the page's last user (pass it as `after`); null on an empty page.
    pub end_cursor: Option<String>,
}

/// A page of users with a two-factor credential, in a stable order.
#[derive(SimpleObject)]
pub struct TwoFactorStatusConnection {
    /// The users of this page, in user order.
    pub edges: Vec<TwoFactorStatusEdge>,
    /// Whether more follow, and the cursor to continue from.
    pub page_info: PageInfo,
    /// How many users match the filter (all pages).
    pub total_count: i32,
}

/// The answer of `adminResetTwoFactor`: the credential is gone; the user can enrol again.
#[derive(SimpleObject)]
pub struct TwoFactorReset {
    /// When it was reset.
    pub reset_at: DateTime,
    /// The user's status after the reset.
    pub status: TwoFactorStatus,
}

/// The answer of `adminUnlockTwoFactor`: failures cleared, codes are checked again.
#[derive(SimpleObject)]
pub struct TwoFactorUnlocked {
    /// The user's status after the unlock.
    pub status: TwoFactorStatus,
}

/// Result of `adminResetTwoFactor`.
#[derive(Union)]
pub enum AdminResetTwoFactorResult {
    TwoFactorReset(TwoFactorReset),
    TotpNotEnabled(TotpNotEnabled),
}

/// Result of `adminUnlockTwoFactor`.
#[derive(Union)]
pub enum AdminUnlockTwoFactorResult {
    TwoFactorUnlocked(TwoFactorUnlocked),
    TotpNotEnabled(TotpNotEnabled),
}

/// A user without a credential, as a union member of the admin actions.
pub fn no_credential(message: String) -> TotpNotEnabled {
    TotpNotEnabled { code: TwoFactorErrorCode::TotpNotEnabled, message }
}

/// The caller's two-factor state.
pub struct TwoFactorStatus(pub Status);

/// Stable opaque id of a user's two-factor status, derived from `sub` alone.
pub fn status_id(user_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest([b"twofold:TwoFactorStatus:".as_slice(), user_id.as_bytes()].concat());
    format!("TwoFactorStatus:{}", data_encoding::BASE64URL_NOPAD.encode(&digest[..18]))
}

/// The caller's two-factor state: whether it is enabled or a setup is pending, the credential's
/// TOTP parameters, the recovery codes left and the recent audit events. Its `id` is stable per
/// user, so normalized client caches update it from any mutation's `status`.
#[async_graphql::Object]
impl TwoFactorStatus {
    /// Stable opaque id for this user's status (the cache key for normalized clients).
    async fn id(&self) -> ID {
        ID(status_id(&self.0.user_id))
    }

    /// The user's id (the token's `sub`).
    async fn user_id(&self) -> &str {
        &self.0.user_id
    }

    /// Where the credential stands: none, pending, enabled, or locked by failed attempts.
    async fn state(&self) -> TwoFactorState {
        self.0.state.into()
    }

    /// While locked: when codes are checked again.
    async fn locked_until(&self) -> Option<DateTime> {
        self.0.locked_until.map(DateTime)
    }

    /// Whether two-factor authentication is enabled.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// When the pending (not yet enabled) setup expires, if one is live.
    async fn pending_setup_expires_at(&self) -> Option<DateTime> {
        self.0.pending_expires_at.map(DateTime)
    }

    /// When two-factor was enabled, if it is.
    async fn enabled_at(&self) -> Option<DateTime> {
        self.0.enabled_at.map(DateTime)
    }

    /// Unused recovery codes left (0 when two-factor is not enabled).
    async fn recovery_codes_remaining(&self) -> i32 {
        i32::try_from(self.0.recovery_codes_remaining).unwrap_or(i32::MAX)
    }

    /// HMAC algorithm of the credential (or of new enrolments when there is none): SHA1, SHA256 or SHA512.
    async fn algorithm(&self) -> String {
        self.0.params.algorithm.as_str().to_owned()
    }

    /// Code length of the credential (or of new enrolments): 6 or 8.
    async fn digits(&self) -> i32 {
        i32::from(self.0.params.digits)
    }

    /// Time step of the credential (or of new enrolments), in seconds.
    async fn period(&self) -> i32 {
        i32::try_from(self.0.params.period).unwrap_or(30)
    }

    /// The user's most recent audit events, newest first (`first` is clamped to 1–100).
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "How many events, newest first (clamped to 1–100).")] first: i64,
    ) -> async_graphql::Result<Vec<TwoFactorEvent>> {
        let data = ctx.data::<RequestData>()?;
        let events = data
            .service
            .events(&self.0.user_id, first)
            .await
            .map_err(|e| super::internal_error(&data.correlation_id, &e))?;
        Ok(events
            .into_iter()
            .map(|e| TwoFactorEvent {
                kind: e.kind.into(),
                at: DateTime(e.at),
                correlation_id: e.correlation_id,
                actor: e.actor,
            })
            .collect())
    }
}

/// Result of `prepareTwoFactor`.
#[derive(Union)]
pub enum PrepareTwoFactorResult {
    TwoFactorSecret(TwoFactorSecret),
    TotpAlreadyEnabled(TotpAlreadyEnabled),
}

/// Result of `setupTotp`.
#[derive(Union)]
pub enum SetupTotpResult {
    TotpSetup(TotpSetup),
    TotpAlreadyEnabled(TotpAlreadyEnabled),
}

/// Result of `enableTotp`.
#[derive(Union)]
pub enum EnableTotpResult {
    TotpEnabled(TotpEnabled),
    NoPendingSetup(NoPendingSetup),
    InvalidCode(InvalidCode),
    TooManyAttempts(TooManyAttempts),
    TotpAlreadyEnabled(TotpAlreadyEnabled),
}

/// Result of `verifyTotp` and `useRecoveryCode`.
#[derive(Union)]
pub enum VerifyTotpResult {
    TotpVerified(TotpVerified),
    InvalidCode(InvalidCode),
    CodeAlreadyUsed(CodeAlreadyUsed),
    TooManyAttempts(TooManyAttempts),
    TotpNotEnabled(TotpNotEnabled),
}

/// Result of `disableTotp`.
#[derive(Union)]
pub enum DisableTotpResult {
    TotpDisabled(TotpDisabled),
    InvalidCode(InvalidCode),
    CodeAlreadyUsed(CodeAlreadyUsed),
    TooManyAttempts(TooManyAttempts),
    TotpNotEnabled(TotpNotEnabled),
}

/// Result of `regenerateRecoveryCodes`.
#[derive(Union)]
pub enum RegenerateRecoveryCodesResult {
    RecoveryCodes(RecoveryCodes),
    InvalidCode(InvalidCode),
    CodeAlreadyUsed(CodeAlreadyUsed),
    TooManyAttempts(TooManyAttempts),
    TotpNotEnabled(TotpNotEnabled),
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn seconds(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn already_enabled(message: String) -> TotpAlreadyEnabled {
    TotpAlreadyEnabled { code: TwoFactorErrorCode::TotpAlreadyEnabled, message }
}

fn invalid_code(message: String, attempts_remaining: u32) -> InvalidCode {
    InvalidCode { code: TwoFactorErrorCode::InvalidCode, message, attempts_remaining: count(attempts_remaining) }
}

fn too_many_attempts(message: String, retry_after_seconds: u64) -> TooManyAttempts {
    TooManyAttempts {
        code: TwoFactorErrorCode::TooManyAttempts,
        message,
        retry_after_seconds: seconds(retry_after_seconds),
    }
}

/// The failures of beginning an enrolment, as members of `PrepareTwoFactorResult` and
/// `SetupTotpResult`.
macro_rules! enrol_union {
    ($union:ident) => {
        impl $union {
            pub fn from_error(e: EnrolError, correlation_id: &str) -> async_graphql::Result<Self> {
                let message = e.to_string();
                match e {
                    EnrolError::TotpAlreadyEnabled => Ok($union::TotpAlreadyEnabled(already_enabled(message))),
                    EnrolError::Internal(e) => Err(super::internal_error(correlation_id, &e)),
                }
            }
        }
    };
}

enrol_union!(PrepareTwoFactorResult);
enrol_union!(SetupTotpResult);

impl EnableTotpResult {
    pub fn from_error(e: EnableError, correlation_id: &str) -> async_graphql::Result<Self> {
        let message = e.to_string();
        Ok(match e {
            EnableError::TotpAlreadyEnabled => EnableTotpResult::TotpAlreadyEnabled(already_enabled(message)),
            EnableError::NoPendingSetup => {
                EnableTotpResult::NoPendingSetup(NoPendingSetup { code: TwoFactorErrorCode::NoPendingSetup, message })
            }
            EnableError::InvalidCode { attempts_remaining } => {
                EnableTotpResult::InvalidCode(invalid_code(message, attempts_remaining))
            }
            EnableError::TooManyAttempts { retry_after_seconds } => {
                EnableTotpResult::TooManyAttempts(too_many_attempts(message, retry_after_seconds))
            }
            EnableError::Internal(e) => return Err(super::internal_error(correlation_id, &e)),
        })
    }
}

/// The failures of a code check on an enabled credential, as members of the unions of verify,
/// disable and regenerate (which have the same members).
macro_rules! check_union {
    ($union:ident) => {
        impl $union {
            pub fn from_error(e: CheckError, correlation_id: &str) -> async_graphql::Result<Self> {
                let message = e.to_string();
                Ok(match e {
                    CheckError::TotpNotEnabled => {
                        $union::TotpNotEnabled(TotpNotEnabled { code: TwoFactorErrorCode::TotpNotEnabled, message })
                    }
                    CheckError::InvalidCode { attempts_remaining } => {
                        $union::InvalidCode(invalid_code(message, attempts_remaining))
                    }
                    CheckError::CodeAlreadyUsed { attempts_remaining } => $union::CodeAlreadyUsed(CodeAlreadyUsed {
                        code: TwoFactorErrorCode::CodeAlreadyUsed,
                        message,
                        attempts_remaining: count(attempts_remaining),
                    }),
                    CheckError::TooManyAttempts { retry_after_seconds } => {
                        $union::TooManyAttempts(too_many_attempts(message, retry_after_seconds))
                    }
                    CheckError::Internal(e) => return Err(super::internal_error(correlation_id, &e)),
                })
            }
        }
    };
}

check_union!(VerifyTotpResult);
check_union!(DisableTotpResult);
check_union!(RegenerateRecoveryCodesResult);

impl From<service::VerificationMethod> for VerificationMethod {
    fn from(m: service::VerificationMethod) -> Self {
        match m {
            service::VerificationMethod::Totp => VerificationMethod::Totp,
            service::VerificationMethod::RecoveryCode => VerificationMethod::RecoveryCode,
        }
    }
}
