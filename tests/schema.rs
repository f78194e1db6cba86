//! `schema.graphql` at the repository root is the exported SDL; this test fails when the code's
//! schema differs. Regenerate with `cargo run -- schema > schema.graphql` or by running this test
//! with `TWOFOLD_UPDATE_SNAPSHOTS=1`.

#[test]
fn schema_graphql_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let sdl = twofold::graphql::sdl();
    if std::env::var("TWOFOLD_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(path, &sdl).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == sdl,
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql` (or TWOFOLD_UPDATE_SNAPSHOTS=1 cargo test --test schema)"
    );
}

#[test]
fn schema_has_the_spec_names() {
    // Drop descriptions and collapse whitespace, so multi-line argument lists compare as one line.
    let sdl = twofold::graphql::sdl();
    let mut bare = String::new();
    for (i, part) in sdl.split("\"\"\"").enumerate() {
        if i % 2 == 0 {
            bare.push_str(part);
        }
    }
    let sdl = bare.split_whitespace().collect::<Vec<_>>().join(" ").replace("( ", "(").replace(" )", ")");
    for needle in [
        "scalar DateTime @specifiedBy(url: \"https://datatracker.ietf.org/doc/html/rfc3339\")",
        "interface UserError",
        "union PrepareTwoFactorResult = TwoFactorSecret | TotpAlreadyEnabled",
        "union SetupTotpResult = TotpSetup | TotpAlreadyEnabled",
        "union EnableTotpResult = TotpEnabled | NoPendingSetup | InvalidCode | TooManyAttempts | TotpAlreadyEnabled",
        "union VerifyTotpResult = TotpVerified | InvalidCode | CodeAlreadyUsed | TooManyAttempts | TotpNotEnabled",
        "union DisableTotpResult = TotpDisabled | InvalidCode | CodeAlreadyUsed | TooManyAttempts | TotpNotEnabled",
        "union RegenerateRecoveryCodesResult = RecoveryCodes | InvalidCode | CodeAlreadyUsed | TooManyAttempts | TotpNotEnabled",
        "type TooManyAttempts implements UserError",
        "events(first: Int! = 20): [TwoFactorEvent!]!",
        "enableTotp(code: String!): EnableTotpResult!",
        "useRecoveryCode(code: String!): VerifyTotpResult!",
        "regenerateRecoveryCodes(code: String!): RegenerateRecoveryCodesResult!",
    ] {
        assert!(sdl.contains(needle), "missing: {needle}");
    }
}
