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

/// `otpauth://totp/{Issuer}:{account}?secret=…&issuer=…&algorithm=…&digits=…&period=…`
pub fn otpauth_uri(issuer: &str, account: &str, secret: &Secret, params: TotpParams) -> String {
    let issuer = encode_component(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm={alg}&digits={digits}&period={period}",
        account = encode_component(account),
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
}
