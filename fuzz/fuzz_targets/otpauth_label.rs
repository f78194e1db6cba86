//! The otpauth URI (input: issuer 0xFF account): one literal colon in the label, only unreserved
//! characters and escapes, the account percent-decodes to at most 128 bytes (a prefix of the
//! name without colons, cut at a character boundary), and with an issuer of at most 64
//! characters the URI fits a QR code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twofold::totp::{Secret, TotpParams, otpauth_uri, qr_data_uri};

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let parts = twofold_fuzz::split(data, 2);
    let issuer: String = String::from_utf8_lossy(parts[0]).chars().take(64).collect();
    let account = String::from_utf8_lossy(parts[1]).into_owned();
    let uri = otpauth_uri(&issuer, &account, &Secret::from_bytes(vec![1; 20]), TotpParams::default());
    let label = uri.strip_prefix("otpauth://totp/").unwrap().split('?').next().unwrap();
    let (enc_issuer, enc_account) = label.split_once(':').unwrap();
    assert!(!enc_account.contains(':'));
    assert!(label.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%:".contains(&b)), "{label}");
    assert_eq!(percent_decode(enc_issuer), issuer.replace(':', "").into_bytes());
    let decoded = String::from_utf8(percent_decode(enc_account)).expect("cut at a character boundary");
    assert!(decoded.len() <= 128);
    let without_colons = account.replace(':', "");
    assert!(without_colons.starts_with(&decoded));
    if decoded.len() < without_colons.len() {
        let next = without_colons[decoded.len()..].chars().next().unwrap();
        assert!(decoded.len() + next.len_utf8() > 128, "cut shorter than needed");
    }
    assert!(qr_data_uri(&uri).is_ok(), "{} bytes do not fit a QR code", uri.len());
});
