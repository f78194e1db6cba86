use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use migration::{Migrator, MigratorTrait};
use tracing_subscriber::EnvFilter;

use twofold::auth::{MintClaims, mint};
use twofold::clock::{Clock, SystemClock};
use twofold::config::{
    AdminCommand, AssertionKeyCommand, Cli, Command, ConfigError, LogFormat, MigrateDirection, Settings, TokenArgs,
};
use twofold::service::TwoFactor;
use twofold::{AppState, HttpOptions, graphql};

fn init_logging(settings: &Settings) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(&settings.log).map_err(|e| ConfigError(format!("TWOFOLD_LOG: {e}")))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.settings) {
        eprintln!("twofold: {e}");
        return ExitCode::from(2);
    }
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Schema = command {
        print!("{}", graphql::sdl());
        return ExitCode::SUCCESS;
    }
    if let Command::Token(args) = &command {
        return match token(&cli.settings, args) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("twofold: {e}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twofold: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Admin { command } = command {
        return match command {
            AdminCommand::Reseal => runtime.block_on(reseal(&cli.settings)),
            other => runtime.block_on(admin(&cli.settings, other)),
        };
    }
    if let Command::AssertionKey { command: AssertionKeyCommand::Rotate } = command {
        return runtime.block_on(rotate_assertion_key(&cli.settings));
    }
    let result = runtime.block_on(async {
        match command {
            Command::Migrate { direction } => migrate(&cli.settings, direction).await,
            _ => serve(&cli.settings).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twofold: {e}");
            ExitCode::from(2)
        }
    }
}

async fn migrate(settings: &Settings, direction: MigrateDirection) -> Result<(), ConfigError> {
    settings.validate()?;
    let db = twofold::store::connect(&settings.database_url, &twofold::store::PoolSettings { max_connections: 2 })
        .await
        .map_err(|e| ConfigError(format!("cannot open the database: {e}")))?;
    let result = match direction {
        MigrateDirection::Up => Migrator::up(&db, None).await,
        MigrateDirection::Down => Migrator::down(&db, Some(1)).await,
    };
    result.map_err(|e| ConfigError(format!("migration failed: {e}")))?;
    tracing::info!(?direction, "migrations done");
    Ok(())
}

/// The configured database (migrated) and encryption keys, for the operator commands.
async fn operator_store(settings: &Settings) -> Result<(twofold::store::Store, twofold::crypto::Keyring), ConfigError> {
    settings.validate()?;
    let keys = settings.keyring()?;
    let store = twofold::connect_and_migrate(&settings.database_url, 2)
        .await
        .map_err(|e| ConfigError(format!("cannot open and migrate the database: {e}")))?;
    Ok((store, keys))
}

/// The service on the configured database, for the operator commands (actor `cli`).
async fn operator_service(settings: &Settings) -> Result<TwoFactor, ConfigError> {
    let (store, keys) = operator_store(settings).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(TwoFactor::new(store, Arc::new(keys), settings.service_settings()?, clock))
}

/// The actor recorded for operator commands.
const CLI_ACTOR: &str = "cli";

/// `twofold admin show|list|reset|unlock|import|webhooks`: exit 0 on success, 1 when the user has
/// no credential (show, reset, unlock) or an import is refused, 2 on bad settings, usage or an
/// unreachable database.
async fn admin(settings: &Settings, command: AdminCommand) -> ExitCode {
    let service = match operator_service(settings).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("twofold: {e}");
            return ExitCode::from(2);
        }
    };
    match run_admin(&service, command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("twofold: {e}");
            ExitCode::from(2)
        }
    }
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Operator changes write their events like requests do; they are queued for the webhook
/// receiver only when the command runs with the server's webhook settings.
fn warn_without_webhooks(service: &TwoFactor, command: &AdminCommand) {
    let writes =
        matches!(command, AdminCommand::Reset { .. } | AdminCommand::Unlock { .. } | AdminCommand::Import { .. });
    if writes && service.settings().webhook_kinds.is_empty() {
        eprintln!(
            "twofold: note: TWOFOLD_WEBHOOK_URL is not set for this command, so its event is recorded but not sent to \
             a webhook receiver (run operator commands with the server's settings)"
        );
    }
}

async fn run_admin(service: &TwoFactor, command: AdminCommand) -> Result<ExitCode, String> {
    warn_without_webhooks(service, &command);
    use twofold::admin::{STATUS_HEADER, state_name, status_json, status_rows, table};
    use twofold::clock::rfc3339;
    use twofold::service::{AdminError, State};
    let user_arg = |user: &str| {
        if twofold::auth::is_user_id(user) { Ok(()) } else { Err("USER must be 1–255 bytes".to_owned()) }
    };
    let admin_error = |e: AdminError, user: &str, json: bool| match e {
        AdminError::TotpNotEnabled => {
            if json {
                print_json(&serde_json::json!({ "error": "TOTP_NOT_ENABLED", "userId": user }));
            } else {
                eprintln!("twofold: user {user:?} has no two-factor credential");
            }
            Ok(ExitCode::from(1))
        }
        AdminError::Internal(e) => Err(e.to_string()),
    };
    match command {
        AdminCommand::Reseal => unreachable!("handled before"),
        AdminCommand::Show { user, json } => {
            user_arg(&user)?;
            let status = service.status(&user).await.map_err(|e| e.to_string())?;
            let events = service.events(&user, 20).await.map_err(|e| e.to_string())?;
            if json {
                print_json(&status_json(&status, Some(&events)));
            } else {
                print!("{}", table(&STATUS_HEADER, &status_rows(std::slice::from_ref(&status))));
                if !events.is_empty() {
                    let rows: Vec<Vec<String>> = events
                        .iter()
                        .map(|e| {
                            vec![
                                rfc3339(e.at),
                                e.kind.as_str().to_owned(),
                                e.actor.clone().unwrap_or_else(|| "-".into()),
                                e.correlation_id.clone().unwrap_or_else(|| "-".into()),
                                e.reason.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    println!();
                    print!("{}", table(&["AT", "EVENT", "ACTOR", "CORRELATION ID", "REASON"], &rows));
                }
            }
            Ok(if status.state == State::None { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        AdminCommand::List { state, limit, json } => {
            use twofold::config::ListState;
            use twofold::service::StateFilter;
            let filter = match state {
                None => StateFilter::All,
                Some(ListState::Pending) => StateFilter::Pending,
                Some(ListState::Enabled) => StateFilter::Enabled,
                Some(ListState::Locked) => StateFilter::Locked,
            };
            let (mut all, mut after) = (Vec::new(), None::<String>);
            while (all.len() as u64) < limit {
                let want = i64::try_from((limit - all.len() as u64).min(100)).unwrap_or(100);
                let (page, more) =
                    service.admin_list(want, after.as_deref(), filter).await.map_err(|e| e.to_string())?;
                after = page.last().map(|s| s.user_id.clone());
                all.extend(page);
                if !more {
                    break;
                }
            }
            let total = service.admin_count(filter).await.map_err(|e| e.to_string())?;
            if json {
                let users: Vec<serde_json::Value> = all.iter().map(|s| status_json(s, None)).collect();
                print_json(&serde_json::json!({ "users": users, "totalCount": total }));
            } else {
                print!("{}", table(&STATUS_HEADER, &status_rows(&all)));
                println!("{} of {total} user(s)", all.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Reset { user, reason, json } => {
            user_arg(&user)?;
            if reason.as_ref().is_some_and(|r| r.len() > twofold::service::MAX_REASON_BYTES) {
                return Err("--reason must be at most 500 bytes".into());
            }
            match service.admin_reset(&user, CLI_ACTOR, reason.as_deref(), None).await {
                Ok(at) => {
                    if json {
                        print_json(&serde_json::json!({ "userId": user, "resetAt": rfc3339(at), "state": "NONE" }));
                    } else {
                        println!("Reset two-factor of {user:?}: they can enrol again now.");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => admin_error(e, &user, json),
            }
        }
        AdminCommand::Unlock { user, json } => {
            user_arg(&user)?;
            match service.admin_unlock(&user, CLI_ACTOR, None).await {
                Ok(()) => {
                    let status = service.status(&user).await.map_err(|e| e.to_string())?;
                    if json {
                        print_json(&status_json(&status, None));
                    } else {
                        println!("Unlocked {user:?} (state {}).", state_name(status.state));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => admin_error(e, &user, json),
            }
        }
        AdminCommand::Import { file, replace, json } => {
            let parsed = if file == "-" {
                twofold::admin::parse_import(std::io::stdin().lock())
            } else {
                let f = std::fs::File::open(&file).map_err(|e| format!("cannot open {file}: {e}"))?;
                twofold::admin::parse_import(std::io::BufReader::new(f))
            };
            let refuse = |problems: Vec<String>| {
                if json {
                    print_json(&serde_json::json!({ "imported": 0, "errors": problems }));
                } else {
                    for p in &problems {
                        eprintln!("twofold: {p}");
                    }
                    eprintln!("twofold: nothing was imported");
                }
                Ok(ExitCode::from(1))
            };
            let entries = match parsed {
                Ok(entries) => entries,
                Err(problems) => return refuse(problems.iter().map(ToString::to_string).collect()),
            };
            let (lines, entries): (Vec<u64>, Vec<_>) = entries.into_iter().unzip();
            match service.import(&entries, replace, CLI_ACTOR).await.map_err(|e| e.to_string())? {
                Ok(n) => {
                    if json {
                        print_json(&serde_json::json!({ "imported": n }));
                    } else {
                        println!("Imported {n} user(s).");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(i) => refuse(vec![format!(
                    "line {}: user {:?} already has a two-factor credential (use --replace to overwrite it)",
                    lines.get(i).copied().unwrap_or(0),
                    entries.get(i).map_or("", |e| e.user_id.as_str())
                )]),
            }
        }
        AdminCommand::Webhooks { command, json } => {
            let store = service.store();
            if let Some(twofold::config::WebhooksCommand::Retry) = command {
                let n = store.retry_failed_deliveries(service.now_ms()).await.map_err(|e| e.to_string())?;
                if json {
                    print_json(&serde_json::json!({ "retried": n }));
                } else {
                    println!("{n} failed webhook event(s) queued again (same webhook-id).");
                }
                return Ok(ExitCode::SUCCESS);
            }
            const SHOWN: usize = 1000;
            let mut list = store.undelivered(SHOWN as u64 + 1).await.map_err(|e| e.to_string())?;
            let more = list.len() > SHOWN;
            list.truncate(SHOWN);
            if json {
                let items: Vec<serde_json::Value> = list
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "webhookId": u.webhook_id, "userId": u.user_id, "kind": u.kind, "at": rfc3339(u.at),
                            "status": u.delivery, "attempts": u.attempts,
                            "nextAttemptAt": u.next_attempt_at.filter(|_| u.delivery == "pending").map(rfc3339),
                            "lastError": u.last_error,
                        })
                    })
                    .collect();
                print_json(&serde_json::json!({ "events": items, "truncated": more }));
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|u| {
                        vec![
                            u.webhook_id.clone(),
                            u.delivery.to_uppercase(),
                            u.kind.clone(),
                            u.user_id.clone(),
                            rfc3339(u.at),
                            u.attempts.to_string(),
                            u.next_attempt_at.filter(|_| u.delivery == "pending").map_or_else(|| "-".into(), rfc3339),
                            u.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                let header = ["WEBHOOK ID", "STATUS", "EVENT", "USER", "AT", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"];
                print!("{}", table(&header, &rows));
                match more {
                    true => println!("the {SHOWN} oldest pending or failed events shown; more are queued"),
                    false => println!("{} pending or failed event(s)", list.len()),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `twofold assertion-key rotate`: a new current signing key; prints its `kid`.
async fn rotate_assertion_key(settings: &Settings) -> ExitCode {
    let run = async {
        let (store, keys) = operator_store(settings).await?;
        let now = SystemClock.now_ms();
        twofold::assertion::rotate(&store, &keys, now).await.map_err(|e| ConfigError(format!("rotation failed: {e}")))
    };
    match run.await {
        Ok(kid) => {
            println!("New assertion signing key: {kid}");
            println!(
                "The previous key stays in /.well-known/jwks.json for the assertions' lifetime; running instances \
                 sign with the new one within 60 s."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("twofold: {e}");
            ExitCode::from(2)
        }
    }
}

/// `twofold admin reseal`: 0 when done, 1 when a secret is under an unknown key (nothing
/// changed), 2 on bad settings or an unreachable database.
async fn reseal(settings: &Settings) -> ExitCode {
    let run = async {
        let (store, keys) = operator_store(settings).await?;
        Ok::<_, ConfigError>(twofold::admin::reseal(&store, Arc::new(keys)).await)
    };
    match run.await {
        Ok(Ok(report)) => {
            println!("Re-sealed {} secret(s) under the current key {}.", report.resealed, report.key_id);
            println!(
                "{} user(s) still hold recovery codes hashed under an older key: they work only while that key stays \
                 in TWOFOLD_ENCRYPTION_KEYS_OLD (regenerating replaces them).",
                report.users_with_old_recovery_codes
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e @ twofold::admin::ResealError::Database(_))) => {
            eprintln!("twofold: {e}");
            ExitCode::from(2)
        }
        Ok(Err(e)) => {
            eprintln!("twofold: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("twofold: {e}");
            ExitCode::from(2)
        }
    }
}

fn token(settings: &Settings, args: &TokenArgs) -> Result<String, ConfigError> {
    let jwt = settings.jwt()?;
    if jwt.dev_secret.is_some() {
        return Err(ConfigError(
            "no JWT key is configured: set TWOFOLD_JWT_SECRET (in dev mode `twofold serve` prints a demo token)".into(),
        ));
    }
    let algorithm = jwt.algorithms[0];
    let key = match (&settings.jwt_secret, &args.private_key) {
        (Some(secret), _) => jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        (None, Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
            let key = match format!("{algorithm:?}").as_str() {
                a if a.starts_with("RS") || a.starts_with("PS") => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
                a if a.starts_with("ES") => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
                _ => jsonwebtoken::EncodingKey::from_ed_pem(&pem),
            };
            key.map_err(|e| ConfigError(format!("--private-key is not a usable PEM private key: {e}")))?
        }
        (None, None) => {
            return Err(ConfigError("tokens for a public-key or JWK Set setup need --private-key".into()));
        }
    };
    let now = chrono::Utc::now().timestamp();
    let claims = MintClaims {
        sub: args.sub.clone(),
        email: args.email.clone(),
        preferred_username: args.username.clone(),
        iss: settings.jwt_issuer.clone(),
        aud: settings.jwt_audience.clone(),
        token_type: args.token_type.clone(),
        scope: args.scope.clone(),
        iat: now,
        exp: now + i64::try_from(args.ttl.as_secs()).unwrap_or(i64::MAX / 2),
    };
    if settings.jwt_jwks_url.is_some() && args.kid.is_none() {
        return Err(ConfigError("tokens for a JWK Set setup need --kid (the `kid` of the key in the set)".into()));
    }
    mint(algorithm, args.kid.as_deref(), &key, &claims).map_err(|e| ConfigError(format!("cannot sign the token: {e}")))
}

async fn serve(settings: &Settings) -> Result<(), ConfigError> {
    settings.validate()?;
    let jwt = settings.jwt()?;
    let keys = settings.keyring()?;
    let service_settings = settings.service_settings()?;
    let store = twofold::connect_and_migrate(&settings.database_url, settings.database_max_connections)
        .await
        .map_err(|e| ConfigError(format!("cannot open and migrate the database: {e}")))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let service = TwoFactor::new(store, Arc::new(keys), service_settings, clock.clone());
    // The deployment's assertion signing key: created by the first instance to start.
    service.jwks().await.map_err(|e| ConfigError(format!("cannot load the assertion signing keys: {e}")))?;

    let mut options = HttpOptions { debug: settings.debug, playground_authorization: None };
    let demo_tokens = match &jwt.dev_secret {
        Some(secret) => {
            let now = chrono::Utc::now().timestamp();
            let demo = |sub: &str, scope: Option<&str>| {
                let claims = MintClaims {
                    sub: sub.into(),
                    email: Some(format!("{sub}@example.com")),
                    preferred_username: None,
                    iss: settings.jwt_issuer.clone(),
                    aud: settings.jwt_audience.clone(),
                    token_type: None,
                    scope: scope.map(str::to_owned),
                    iat: now,
                    exp: now + 24 * 3600,
                };
                let key = jsonwebtoken::EncodingKey::from_secret(secret);
                mint(jsonwebtoken::Algorithm::HS256, None, &key, &claims)
                    .map_err(|e| ConfigError(format!("cannot mint the demo token: {e}")))
            };
            let token = demo("demo", None)?;
            let admin_token = demo("demo-admin", Some(twofold::auth::ADMIN_SCOPE))?;
            options.playground_authorization = Some(format!("Bearer {token}"));
            Some((token, admin_token))
        }
        None => None,
    };
    // Caller keys from a JWK Set: fetched once now (at most 10 s), then kept fresh in the
    // background. Twofold starts even when the first fetch fails (every token is refused and
    // /readyz answers 503 until one succeeds).
    let caller_keys = jwt.authenticator.caller_keys().cloned();
    if let Some(keys) = &caller_keys {
        if keys.is_plain_http_off_loopback() {
            tracing::warn!(
                url = %keys.url(),
                "TWOFOLD_JWT_JWKS_URL is plain http: anyone on the network path can swap the keys; use https"
            );
        }
        keys.start().await;
    }
    let state = AppState::new(service.clone(), jwt.authenticator, options);
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .map_err(|e| ConfigError(format!("cannot listen on {}: {e}", settings.bind)))?;
    let addr = listener.local_addr().map_err(|e| ConfigError(e.to_string()))?;
    tracing::info!(%addr, "Twofold is listening");
    println!("Twofold is listening on http://{addr}");
    println!("  GraphQL:    http://{addr}/graphql");
    println!("  Playground: http://{addr}/graphiql");
    if let Some(keys) = &caller_keys {
        match keys.kids().len() {
            0 => println!(
                "  Caller keys: {} could not be fetched yet; tokens are refused and /readyz is 503 until it is",
                keys.url()
            ),
            n => println!("  Caller keys: {n} from {}", keys.url()),
        }
    }
    if let Some((token, admin_token)) = demo_tokens {
        tracing::warn!(
            "DEV MODE: no TWOFOLD_JWT_SECRET, TWOFOLD_JWT_PUBLIC_KEY or TWOFOLD_JWT_JWKS_URL is set; tokens are \
             signed with a random key that lives only as long as this process. Configure a key for anything but \
             local experiments."
        );
        println!();
        println!("  Dev mode demo token (user `demo`, valid 24 h, this run only):");
        println!("  Authorization: Bearer {token}");
        println!();
        println!("  curl -s -X POST http://{addr}/api/v1/me/mfa/totp/setup -H 'Authorization: Bearer {token}'");
        println!();
        println!("  Dev mode admin token (user `demo-admin`, scope twofold:admin, for the admin… fields):");
        println!("  Authorization: Bearer {admin_token}");
    }
    twofold::spawn_pruner(service.clone(), settings.audit_retention, Duration::from_secs(60));
    twofold::metrics::spawn_upkeep(Duration::from_secs(5));
    let deliverer = match settings.webhook()? {
        Some(webhook) => {
            tracing::info!(url = %webhook.url, kinds = ?webhook.kinds, "sending webhooks");
            let deliverer = twofold::webhook::Deliverer::new(service.store().clone(), webhook, clock.clone())
                .map_err(ConfigError)?;
            Some(deliverer.start(service.outbox_notify()))
        }
        None => None,
    };
    let store = service.store().clone();
    twofold::memory::spawn_idle_trim(Duration::from_millis(500), move || store.forget_copies());
    twofold::run(listener, state, twofold::shutdown_signal())
        .await
        .map_err(|e| ConfigError(format!("server error: {e}")))?;
    if let Some(deliverer) = deliverer {
        deliverer.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}
