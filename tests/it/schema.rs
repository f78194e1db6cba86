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
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql` (or TWOFOLD_UPDATE_SNAPSHOTS=1 cargo test --test it schema::)"
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
        "useRecoveryCode(code: String!, nonce: String): VerifyTotpResult!",
        "verifyTotp(code: String!, nonce: String): VerifyTotpResult!",
        "assertion: String!",
        "regenerateRecoveryCodes(code: String!): RegenerateRecoveryCodesResult!",
    ] {
        assert!(sdl.contains(needle), "missing: {needle}");
    }
}

/// SPEC §3: descriptions on every type and field (and every argument), read the way GraphiQL
/// reads them, through introspection.
#[tokio::test]
async fn every_type_field_and_argument_has_a_description() {
    let query = "{ __schema { types { name description fields { name description args { name description } } \
                 enumValues { name description } } } }";
    let res = twofold::graphql::build_schema().execute(query).await.into_result().unwrap();
    let value = res.data.into_json().unwrap();
    let builtin = ["String", "Int", "Float", "Boolean", "ID"];
    let described = |v: &serde_json::Value| v["description"].as_str().is_some_and(|d| !d.trim().is_empty());
    let mut missing = Vec::new();
    for ty in value["__schema"]["types"].as_array().unwrap() {
        let name = ty["name"].as_str().unwrap();
        if name.starts_with("__") || builtin.contains(&name) {
            continue;
        }
        if !described(ty) {
            missing.push(name.to_owned());
        }
        for field in ty["fields"].as_array().into_iter().flatten() {
            let field_name = format!("{name}.{}", field["name"].as_str().unwrap());
            if !described(field) {
                missing.push(field_name.clone());
            }
            for arg in field["args"].as_array().into_iter().flatten() {
                if !described(arg) {
                    missing.push(format!("{field_name}({})", arg["name"].as_str().unwrap()));
                }
            }
        }
        for value in ty["enumValues"].as_array().into_iter().flatten() {
            if !described(value) {
                missing.push(format!("{name}.{}", value["name"].as_str().unwrap()));
            }
        }
    }
    assert!(missing.is_empty(), "without a description: {missing:?}");
}
