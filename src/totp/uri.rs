use super::{Secret, TotpParams};

/// Percent-encodes per RFC 3986: unreserved characters stay, everything else (space included,
/// which becomes `%20`, never `+`) is encoded byte by byte. Colons are removed first because the
/// label uses a literal `:` between issuer and account.
fn encode_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes().filter(|&b| b != b':') {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The longest account name in a label, in bytes before percent-encoding (SPEC §10): with it
/// and an issuer of at most 64 characters the URI always fits a QR code.
pub const MAX_ACCOUNT_BYTES: usize = 128;

/// `account` without colons, shortened to at most [`MAX_ACCOUNT_BYTES`] at a character boundary.
fn account_label(account: &str) -> String {
    let mut label = String::with_capacity(account.len().min(MAX_ACCOUNT_BYTES));
    for c in account.chars().filter(|&c| c != ':') {
        if label.len() + c.len_utf8() > MAX_ACCOUNT_BYTES {
            break;
        }
        label.push(c);
    }
    label
}

/// `otpauth://totp/{Issuer}:{account}?secret=…&issuer=…&algorithm=…&digits=…&period=…`; a long
/// account name is shortened ([`MAX_ACCOUNT_BYTES`]).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &Secret, params: TotpParams) -> String {
    let issuer = encode_component(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm={alg}&digits={digits}&period={period}",
        account = encode_component(&account_label(account)),
        secret = secret.to_base32(),
        alg = params.algorithm,
        digits = params.digits,
        period = params.period,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_label_and_parameters() {
        let secret =
            Secret::from_bytes(data_encoding::BASE32_NOPAD.decode(b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap());
        assert_eq!(
            otpauth_uri("Twofold", "alice@example.com", &secret, TotpParams::default()),
            "otpauth://totp/Twofold:alice%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Twofold&algorithm=SHA1&digits=6&period=30"
        );
        let uri = otpauth_uri("Acme: Corp", "bob:smith jr+1/é", &secret, TotpParams::default());
        assert!(uri.starts_with("otpauth://totp/Acme%20Corp:bobsmith%20jr%2B1%2F%C3%A9?secret="), "{uri}");
        assert!(uri.contains("&issuer=Acme%20Corp&"));
        assert!(!uri.contains('+'));
    }

    #[test]
    fn long_account_names_are_shortened_at_a_character_boundary() {
        assert_eq!(account_label(&"a".repeat(3000)), "a".repeat(128));
        // 'é' is two bytes: 64 of them fill the 128 bytes exactly, a 65th does not fit.
        assert_eq!(account_label(&"é".repeat(100)), "é".repeat(64));
        assert_eq!(account_label(&format!("a{}", "é".repeat(100))), format!("a{}", "é".repeat(63)));
        assert_eq!(account_label(&format!("{}x", ":".repeat(500))), "x");
    }
}
