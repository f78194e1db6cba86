//! Operator tasks run from the command line against the configured database (no token: the
//! operator has the database).

use std::sync::Arc;

use crate::crypto::{CryptoError, Keyring};
use crate::store::{Reseal, Sealed, Store};

/// What `twofold admin reseal` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResealReport {
    /// Secrets (pending or enabled) now sealed under the current key that were not before.
    pub resealed: u64,
    /// The current key's id.
    pub key_id: String,
    /// Users whose recovery codes (some of them) are hashed under another key: those codes match
    /// only while that key stays configured as an old key.
    pub users_with_old_recovery_codes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    /// Secrets sealed under keys that are not configured: nothing was changed.
    #[error(
        "{} stored secret(s) are sealed under keys that are not configured ({}); nothing was changed: add those keys \
         to TWOFOLD_ENCRYPTION_KEYS_OLD and run it again",
        .0.iter().map(|(_, n)| n).sum::<u64>(),
        .0.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
    )]
    UnknownKeys(Vec<(String, u64)>),
    #[error("the secret of a stored row could not be opened ({0}); nothing was changed")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Database(#[from] crate::store::Error),
}

/// Re-encrypts every stored TOTP secret and assertion signing key under the current key in one
/// transaction (SPEC §10),
/// so an old key can be retired without waiting for each user to log in. Refuses, changing
/// nothing, when any secret is sealed under a key the keyring does not have.
pub async fn reseal(store: &Store, keys: Arc<Keyring>) -> Result<ResealReport, ResealError> {
    let unknown: Vec<(String, u64)> =
        store.secrets_per_key().await?.into_iter().filter(|(key, _)| !keys.has_key(key)).collect();
    if !unknown.is_empty() {
        return Err(ResealError::UnknownKeys(unknown));
    }
    let ring = keys.clone();
    let resealed = store
        .reseal_secrets(move |sealed| {
            let keys = &ring;
            if !keys.is_stale(sealed.key_id()) {
                return Ok(None);
            }
            let (aad, key_id, secret) = match sealed {
                Sealed::TotpSecret { user_id, key_id, secret } => (user_id.to_owned(), key_id, secret),
                Sealed::AssertionKey { kid, key_id, secret } => {
                    (crate::assertion::sealing_context(kid), key_id, secret)
                }
            };
            let plain = keys.open(&aad, key_id, secret)?;
            let (secret, key_id) = keys.seal(&aad, &plain)?;
            Ok::<_, CryptoError>(Some(Reseal { secret, key_id }))
        })
        .await??;
    let key_id = keys.current_key_id().to_owned();
    let users_with_old_recovery_codes = store.users_with_recovery_codes_not_under(&key_id).await?;
    Ok(ResealReport { resealed, key_id, users_with_old_recovery_codes })
}

/// One line of an import file that cannot be imported, by line number (1 is the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The shortest secret accepted for import, in bytes (RFC 4226 asks for at least 128 bits).
pub const MIN_IMPORT_SECRET: usize = 16;

/// The columns of an import file.
const IMPORT_COLUMNS: [&str; 5] = ["user_id", "secret", "algorithm", "digits", "period"];

/// Reads an import file (SPEC §8): CSV with a header line naming `user_id`, `secret` and, if
/// wanted, `algorithm`, `digits`, `period`. Secrets are Base32 in any case with optional padding
/// (spaces ignored), at least [`MIN_IMPORT_SECRET`] bytes; missing parameters are SHA1/6/30. Each
/// entry comes with its line number. Every bad line is reported (nothing is imported then).
pub fn parse_import(
    mut input: impl std::io::Read,
) -> Result<Vec<(u64, crate::service::ImportEntry)>, Vec<ImportProblem>> {
    let mut text = Vec::new();
    input
        .read_to_end(&mut text)
        .map_err(|e| vec![ImportProblem { line: 0, reason: format!("cannot read the input: {e}") }])?;
    // The line of a byte offset (the csv reader's own line count skips blank lines), counted on
    // from the previous record's (records come in order: linear in the file's size).
    let mut counted = (0_usize, 1_u64);
    let mut line_at = |p: Option<&csv::Position>| {
        let Some(p) = p else { return 0 };
        let mut end = usize::try_from(p.byte()).unwrap_or(usize::MAX).min(text.len());
        // A record's position is where the reader stood, before the blank lines it skips.
        while end < text.len() && matches!(text[end], b'\n' | b'\r') {
            end += 1;
        }
        let (from, line) = if end >= counted.0 { counted } else { (0, 1) };
        counted = (end, line + text[from..end].iter().filter(|&&b| b == b'\n').count() as u64);
        counted.1
    };
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).flexible(true).from_reader(text.as_slice());
    let header_problem = |reason: String| vec![ImportProblem { line: 1, reason }];
    let headers = reader.headers().map_err(|e| header_problem(format!("cannot read the header: {e}")))?.clone();
    let mut index = [None; 5];
    for (i, name) in headers.iter().enumerate() {
        let name = name.trim_start_matches('\u{feff}').to_ascii_lowercase();
        let Some(col) = IMPORT_COLUMNS.iter().position(|c| *c == name) else {
            return Err(header_problem(format!(
                "unknown column {name:?} (the header is user_id,secret[,algorithm,digits,period])"
            )));
        };
        if index[col].replace(i).is_some() {
            return Err(header_problem(format!("column {name:?} appears twice")));
        }
    }
    if index[0].is_none() || index[1].is_none() {
        return Err(header_problem(
            "the header must name user_id and secret (user_id,secret[,algorithm,digits,period])".into(),
        ));
    }
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = line_at(e.position());
                problems.push(ImportProblem { line, reason: format!("not valid CSV: {e}") });
                continue;
            }
        };
        let line = line_at(record.position());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let field = |col: usize| index[col].and_then(|i| record.get(i)).unwrap_or("");
        match import_entry(field(0), field(1), field(2), field(3), field(4)) {
            Ok(entry) => match seen.insert(entry.user_id.clone(), line) {
                Some(first) => problems
                    .push(ImportProblem { line, reason: format!("user {:?} is also on line {first}", entry.user_id) }),
                None => entries.push((line, entry)),
            },
            Err(reason) => problems.push(ImportProblem { line, reason }),
        }
    }
    if problems.is_empty() { Ok(entries) } else { Err(problems) }
}

fn import_entry(
    user_id: &str,
    secret: &str,
    algorithm: &str,
    digits: &str,
    period: &str,
) -> Result<crate::service::ImportEntry, String> {
    use crate::totp::{Secret, TotpParams};
    if !crate::auth::is_user_id(user_id) {
        return Err("user_id must be 1–255 bytes".into());
    }
    let base32: String =
        secret.chars().filter(|c| !c.is_whitespace() && *c != '=').map(|c| c.to_ascii_uppercase()).collect();
    let mut spec = data_encoding::BASE32_NOPAD.specification();
    spec.check_trailing_bits = false;
    let lenient = spec.encoding().map_err(|e| e.to_string())?;
    let bytes = lenient.decode(base32.as_bytes()).map_err(|_| "secret is not Base32 (RFC 4648)".to_owned())?;
    if bytes.len() < MIN_IMPORT_SECRET {
        return Err(format!("secret is {} bytes; at least {MIN_IMPORT_SECRET} are needed", bytes.len()));
    }
    let defaults = TotpParams::default();
    let params = TotpParams {
        algorithm: if algorithm.is_empty() { defaults.algorithm } else { algorithm.parse()? },
        digits: match digits {
            "" => defaults.digits,
            "6" => 6,
            "8" => 8,
            other => return Err(format!("digits must be 6 or 8 (got {other:?})")),
        },
        period: match period {
            "" => defaults.period,
            p => p
                .parse()
                .ok()
                .filter(|p| (15..=120).contains(p))
                .ok_or_else(|| format!("period must be a number of seconds from 15 to 120 (got {p:?})"))?,
        },
    };
    Ok(crate::service::ImportEntry { user_id: user_id.to_owned(), secret: Secret::from_bytes(bytes), params })
}

/// How the operator commands print a user's state: the GraphQL field names (camelCase), with
/// `events` when they were read.
pub fn status_json(status: &crate::service::Status, events: Option<&[crate::service::Event]>) -> serde_json::Value {
    use crate::clock::rfc3339;
    let mut json = serde_json::json!({
        "userId": status.user_id,
        "state": state_name(status.state),
        "enabled": status.enabled,
        "pendingSetupExpiresAt": status.pending_expires_at.map(rfc3339),
        "enabledAt": status.enabled_at.map(rfc3339),
        "lockedUntil": status.locked_until.map(rfc3339),
        "recoveryCodesRemaining": status.recovery_codes_remaining,
        "algorithm": status.params.algorithm.as_str(),
        "digits": status.params.digits,
        "period": status.params.period,
    });
    if let Some(events) = events {
        json["events"] = events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "kind": e.kind.as_str(),
                    "at": rfc3339(e.at),
                    "correlationId": e.correlation_id,
                    "actor": e.actor,
                    "reason": e.reason,
                })
            })
            .collect();
    }
    json
}

/// `NONE`, `PENDING`, `ENABLED` or `LOCKED`, as in GraphQL.
pub fn state_name(state: crate::service::State) -> &'static str {
    use crate::service::State;
    match state {
        State::None => "NONE",
        State::Pending => "PENDING",
        State::Enabled => "ENABLED",
        State::Locked => "LOCKED",
    }
}

/// A plain text table: a header row, then the rows, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// The rows of `twofold admin list`.
pub fn status_rows(statuses: &[crate::service::Status]) -> Vec<Vec<String>> {
    use crate::clock::rfc3339;
    let or_dash = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), rfc3339);
    statuses
        .iter()
        .map(|s| {
            vec![
                s.user_id.clone(),
                state_name(s.state).to_owned(),
                or_dash(s.enabled_at),
                or_dash(s.pending_expires_at),
                or_dash(s.locked_until),
                s.recovery_codes_remaining.to_string(),
            ]
        })
        .collect()
}

/// The header of [`status_rows`].
pub const STATUS_HEADER: [&str; 6] = ["USER", "STATE", "ENABLED AT", "PENDING UNTIL", "LOCKED UNTIL", "RECOVERY CODES"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_files_are_read_with_line_numbers() {
        let ok = "user_id,secret,digits\n7,jbswy3dpehpk3pxpjbswy3dpehpk3pxp,8\n\n9, JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP==== ,\n";
        let entries = parse_import(ok.as_bytes()).unwrap();
        assert_eq!(
            entries.iter().map(|(l, e)| (*l, e.user_id.as_str(), e.params.digits)).collect::<Vec<_>>(),
            [(2, "7", 8), (4, "9", 6)]
        );
        let bad =
            "user_id,secret\na,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\nb,short\nc,!!!\na,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n";
        let lines: Vec<u64> = parse_import(bad.as_bytes()).unwrap_err().iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert_eq!(parse_import("id,secret\n".as_bytes()).unwrap_err()[0].line, 1);
        assert_eq!(parse_import("secret\nX\n".as_bytes()).unwrap_err()[0].line, 1);
    }
}
