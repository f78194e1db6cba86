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
    if let Command::Admin { command: AdminCommand::Reseal } = command {
        return runtime.block_on(reseal(&cli.settings));
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
    let service = TwoFactor::new(store, Arc::new(keys), service_settings, clock);
    // The deployment's assertion signing key: created by the first instance to start.
    service.jwks().await.map_err(|e| ConfigError(format!("cannot load the assertion signing keys: {e}")))?;

    let mut options = HttpOptions { debug: settings.debug, playground_authorization: None };
    let demo_token = match &jwt.dev_secret {
        Some(secret) => {
            let now = chrono::Utc::now().timestamp();
            let claims = MintClaims {
                sub: "demo".into(),
                email: Some("demo@example.com".into()),
                preferred_username: None,
                iss: settings.jwt_issuer.clone(),
                aud: settings.jwt_audience.clone(),
                token_type: None,
                iat: now,
                exp: now + 24 * 3600,
            };
            let key = jsonwebtoken::EncodingKey::from_secret(secret);
            let token = mint(jsonwebtoken::Algorithm::HS256, None, &key, &claims)
                .map_err(|e| ConfigError(format!("cannot mint the demo token: {e}")))?;
            options.playground_authorization = Some(format!("Bearer {token}"));
            Some(token)
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
    if let Some(token) = demo_token {
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
    }
    twofold::spawn_pruner(service.clone(), settings.audit_retention, Duration::from_secs(60));
    twofold::metrics::spawn_upkeep(Duration::from_secs(5));
    twofold::run(listener, state, twofold::shutdown_signal())
        .await
        .map_err(|e| ConfigError(format!("server error: {e}")))?;
    service.flush_audit().await;
    tracing::info!("stopped");
    Ok(())
}
