//! The pure part of every code check: what a credential and a code decide, with no I/O. The
//! store runs these between reading the row and writing the outcome, in one unit per user
//! (`Store::check_code`); on SQLite that is the writer thread, so they must stay quick.

use crate::crypto::Keyring;
use crate::store::{Change, Credential, Reseal, Verdict};
use crate::totp::{self, Algorithm, Secret, TotpParams};

use super::error::{CheckError, EnableError, Internal};

/// A failed check that counts against the lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    WrongCode,
    Replayed,
}

/// The TOTP parameters a credential was enrolled with.
pub(super) fn params_of(c: &Credential) -> Result<TotpParams, Internal> {
    let algorithm: Algorithm = c.algorithm.parse().map_err(Internal::Malformed)?;
    Ok(TotpParams {
        algorithm,
        digits: u8::try_from(c.digits).map_err(|_| Internal::Malformed(format!("digits {}", c.digits)))?,
        period: u32::try_from(c.period).map_err(|_| Internal::Malformed(format!("period {}", c.period)))?,
    })
}

/// Whole seconds until `locked_until`, at least 1.
pub(super) fn retry_after(locked_until: i64, now: i64) -> u64 {
    u64::try_from(locked_until.saturating_sub(now).saturating_add(999) / 1000).unwrap_or(0).max(1)
}

/// The seconds a locked credential must wait, or `None` when it is not locked.
pub(super) fn locked(c: &Credential, now: i64) -> Option<u64> {
    c.locked_until.filter(|&until| until > now).map(|until| retry_after(until, now))
}

pub(super) fn pending_is_live(c: &Credential, now: i64) -> bool {
    !c.enabled && c.pending_expires_at.is_some_and(|t| t > now)
}

/// The time step within `skew` steps of `now` whose code is `code`.
fn match_step(secret: &Secret, params: TotpParams, code: &str, now: i64, skew: u16) -> Option<i64> {
    let code = totp::normalize_totp_code(code, params.digits)?;
    let seconds = u64::try_from(now.div_euclid(1000)).ok()?;
    secret.matching_step(params, &code, seconds, skew).and_then(|s| i64::try_from(s).ok())
}

/// What a code check needs to judge a code.
pub(super) struct Judge {
    pub keys: std::sync::Arc<Keyring>,
    pub skew: u16,
    pub user_id: String,
    pub code: String,
    pub now: i64,
}

/// An enabled credential that is not locked, or why no code may be checked on it.
pub(super) fn checkable(cred: Option<&Credential>, now: i64) -> Result<&Credential, CheckError> {
    match cred {
        Some(c) if c.enabled => match locked(c, now) {
            Some(retry_after_seconds) => Err(CheckError::TooManyAttempts { retry_after_seconds }),
            None => Ok(c),
        },
        _ => Err(CheckError::TotpNotEnabled),
    }
}

impl Judge {
    fn secret(&self, cred: &Credential) -> Result<(Secret, TotpParams), Internal> {
        let params = params_of(cred)?;
        let raw = self.keys.open(&self.user_id, &cred.key_id, &cred.secret)?;
        Ok((Secret::from_bytes(raw), params))
    }

    /// A TOTP check on an enabled credential (SPEC §2): not locked, the code matches a step in
    /// the window, and that step is newer than the last used one. The accepted step becomes
    /// `change(step, reseal)`; with `reseal`, a secret under an old key is re-sealed under the
    /// current one on the way.
    pub fn step(
        &self,
        cred: Option<&Credential>,
        reseal: bool,
        change: impl FnOnce(i64, Option<Reseal>) -> Change,
    ) -> Verdict<CheckError, Failure> {
        let cred = match checkable(cred, self.now) {
            Ok(c) => c,
            Err(e) => return Verdict::Refuse(e),
        };
        let (secret, params) = match self.secret(cred) {
            Ok(s) => s,
            Err(e) => return Verdict::Refuse(e.into()),
        };
        let Some(step) = match_step(&secret, params, &self.code, self.now, self.skew) else {
            return Verdict::Fail(Failure::WrongCode);
        };
        if cred.last_used_step.is_some_and(|last| step <= last) {
            return Verdict::Fail(Failure::Replayed);
        }
        let resealed = match reseal && self.keys.is_stale(&cred.key_id) {
            true => match self.keys.seal(&self.user_id, secret.as_bytes()) {
                Ok((secret, key_id)) => Some(Reseal { secret, key_id }),
                Err(e) => return Verdict::Refuse(CheckError::from(e)),
            },
            false => None,
        };
        Verdict::Accept(change(step, resealed))
    }

    /// The enabling check: a live pending secret, not locked, and a code of it.
    pub fn enable(
        &self,
        cred: Option<&Credential>,
        change: impl FnOnce(i64) -> Change,
    ) -> Verdict<EnableError, Failure> {
        let cred = match cred {
            Some(c) if c.enabled => return Verdict::Refuse(EnableError::TotpAlreadyEnabled),
            Some(c) if pending_is_live(c, self.now) => c,
            _ => return Verdict::Refuse(EnableError::NoPendingSetup),
        };
        if let Some(retry_after_seconds) = locked(cred, self.now) {
            return Verdict::Refuse(EnableError::TooManyAttempts { retry_after_seconds });
        }
        match self.secret(cred) {
            Ok((secret, params)) => match match_step(&secret, params, &self.code, self.now, self.skew) {
                Some(step) => Verdict::Accept(change(step)),
                None => Verdict::Fail(Failure::WrongCode),
            },
            Err(e) => Verdict::Refuse(e.into()),
        }
    }
}

/// A recovery-code check on an enabled, unlocked credential: consume one of `hashes` (none: the
/// input is not shaped like a recovery code, which counts as a wrong code).
pub(super) fn recovery(
    cred: Option<&Credential>,
    now: i64,
    hashes: Vec<Vec<u8>>,
    disable: bool,
) -> Verdict<CheckError, Failure> {
    match checkable(cred, now) {
        Err(e) => Verdict::Refuse(e),
        Ok(_) if hashes.is_empty() => Verdict::Fail(Failure::WrongCode),
        Ok(_) => Verdict::RecoveryCode { hashes, disable, failure: Failure::WrongCode },
    }
}
