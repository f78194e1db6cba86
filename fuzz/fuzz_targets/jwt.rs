//! Bearer tokens: any `Authorization` value is refused without a panic; a correctly signed token
//! with any header and claims (input: header JSON 0xFF claims JSON) is accepted only when every
//! rule of SPEC §1 holds.
#![no_main]

use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use twofold::auth::{Authenticator, ClaimRules};

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

fuzz_target!(|data: &[u8]| {
    let auth = Authenticator::new(
        jsonwebtoken::DecodingKey::from_secret(twofold_fuzz::JWT_SECRET.as_bytes()),
        vec![jsonwebtoken::Algorithm::HS256],
        &ClaimRules { leeway_seconds: 30, ..Default::default() },
    );
    assert!(auth.authenticate(Some(data)).is_err());
    let parts = twofold_fuzz::split(data, 2);
    let input = format!("{}.{}", b64(parts[0]), b64(parts[1]));
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(twofold_fuzz::JWT_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let bearer = format!("Bearer {input}.{}", b64(&mac.finalize().into_bytes()));
    if let Ok(viewer) = auth.authenticate(Some(bearer.as_bytes())) {
        let header: Value = serde_json::from_slice(parts[0]).expect("a JSON header");
        let claims: Value = serde_json::from_slice(parts[1]).expect("JSON claims");
        assert_eq!(header["alg"], "HS256", "{header}");
        assert!(header.get("crit").is_none(), "{header}");
        let sub = claims["sub"].as_str().expect("a string sub");
        assert!((1..=255).contains(&sub.len()));
        assert_eq!(viewer.user_id, sub);
        assert!(claims.get("exp").is_some(), "{claims}");
        assert!(claims.get("token_type").is_none_or(|t| t == "access"), "{claims}");
    }
});
