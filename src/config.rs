//! Configuration: every setting is a flag and a `TWOFOLD_*` environment variable (flags win),
//! parsed once and validated at start-up. Invalid settings stop start-up with a one-line reason.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey};

use crate::assertion::AssertionSettings;
use crate::auth::{Authenticator, ClaimRules};
use crate::caller_keys::CallerKeys;
use crate::crypto::{self, Keyring};
use crate::service::ServiceSettings;
use crate::totp::{Algorithm, TotpParams};

const ABOUT: &str = "Twofold: a TOTP two-factor service with a GraphQL API (and GraphiQL playground) and \
REST compatibility with the Cloudreve v4 and Storno dialects.";

const AFTER_HELP: &str = "\
Quick start:
  twofold                      serve on 127.0.0.1:8080 with ./twofold.db (dev mode: prints a demo token)
  twofold token --sub alice --email alice@example.com
                               mint a bearer token with TWOFOLD_JWT_SECRET
  twofold schema > schema.graphql
  twofold admin reseal         re-encrypt stored secrets under the current TWOFOLD_ENCRYPTION_KEY
  twofold assertion-key rotate new key for signing verification assertions
  TWOFOLD_DATABASE_URL=postgres://postgres@127.0.0.1/twofold TWOFOLD_ENCRYPTION_KEY=... twofold migrate

Durations are integer seconds or a number with a unit: 600, 600s, 10m, 1h, 7d.";

#[derive(Debug, Parser)]
#[command(name = "twofold", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default): applies pending migrations, then serves.
    Serve,
    /// Apply pending migrations (`up`, the default) or roll back the last one (`down`), then exit.
    Migrate {
        #[arg(value_enum, default_value_t = MigrateDirection::Up)]
        direction: MigrateDirection,
    },
    /// Print the GraphQL schema (SDL) to standard output; needs no database or key.
    Schema,
    /// Mint a bearer token signed with the configured JWT key (for operators and tests).
    Token(TokenArgs),
    /// The keys that sign verification assertions (SPEC §7).
    AssertionKey {
        #[command(subcommand)]
        command: AssertionKeyCommand,
    },
    /// Operator tasks on the configured database (no token needed).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AssertionKeyCommand {
    /// Make a new current signing key. The previous key stays in the JWK Set for at least
    /// TWOFOLD_ASSERTION_TTL (so assertions signed just before still verify); every running
    /// instance signs with the new key within 60 s.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Re-encrypt every stored TOTP secret (pending or enabled) under the current encryption key,
    /// in one transaction, so a key in TWOFOLD_ENCRYPTION_KEYS_OLD can be retired. Prints how many
    /// secrets changed and how many users still hold recovery codes hashed under an older key
    /// (those work only while that key stays configured; regenerating replaces them). Changes
    /// nothing and exits 1 when a secret is sealed under a key that is not configured.
    Reseal,
    /// Show one user's two-factor state and recent events. Exit 1 when the user has no
    /// credential (state NONE).
    Show {
        /// The user's id (their token's `sub`).
        user: String,
        /// Print JSON (the GraphQL field names) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the users who have a credential (pending, enabled or locked), in user order.
    List {
        /// Only users in this state.
        #[arg(long, value_enum)]
        state: Option<ListState>,
        /// At most this many users.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user's credential and recovery codes (they lost their phone and their recovery
    /// codes) so they can enrol again; writes ADMIN_RESET with actor `cli`. Exit 1 when the user
    /// has no credential.
    Reset {
        /// The user's id (their token's `sub`).
        user: String,
        /// Why (kept with the event, never shown to the user; at most 500 bytes).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Clear a user's failed attempts and lockout; writes ADMIN_UNLOCKED with actor `cli`. Exit 1
    /// when the user has no credential.
    Unlock {
        /// The user's id (their token's `sub`).
        user: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Import existing authenticators from a CSV file (`-` for standard input) with the header
    /// `user_id,secret[,algorithm,digits,period]`: Base32 secrets of at least 16 bytes (any case,
    /// padding optional), SHA1/6/30 when not given. Each row becomes an enabled credential with
    /// no recovery codes yet and an IMPORTED event. All or nothing: any bad row (its line number
    /// is printed) or a user who already has a credential (without --replace) imports nothing
    /// and exits 1.
    Import {
        /// The CSV file, or `-` for standard input.
        file: String,
        /// Replace the credentials of users who already have one.
        #[arg(long)]
        replace: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List webhook events that are pending or failed (attempts, next attempt, last error);
    /// `retry` puts the failed ones back in the queue with a fresh window.
    Webhooks {
        #[command(subcommand)]
        command: Option<WebhooksCommand>,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Give every failed webhook event a fresh delivery window and send it again (same
    /// `webhook-id`); prints how many.
    Retry,
}

/// The states `twofold admin list --state` filters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListState {
    Pending,
    Enabled,
    Locked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MigrateDirection {
    Up,
    Down,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (`sub` claim).
    #[arg(long)]
    pub sub: String,
    /// The `email` claim (shown as the account name in authenticator apps).
    #[arg(long)]
    pub email: Option<String>,
    /// The `preferred_username` claim.
    #[arg(long)]
    pub username: Option<String>,
    /// Lifetime of the token (at most 36500d, about 100 years).
    #[arg(long, default_value = "1h", value_parser = parse_token_ttl)]
    pub ttl: Duration,
    /// A `token_type` claim (Twofold accepts only `access`; use `refresh` to test rejection).
    #[arg(long)]
    pub token_type: Option<String>,
    /// PEM private key for RS*/ES*/EdDSA tokens (when Twofold verifies with a public key or a
    /// JWK Set).
    #[arg(long)]
    pub private_key: Option<PathBuf>,
    /// Space-separated scopes for the `scope` claim, e.g. `twofold:admin` for the admin API.
    #[arg(long)]
    pub scope: Option<String>,
    /// The `kid` header: the JWK Set key that checks the token (with TWOFOLD_JWT_JWKS_URL).
    #[arg(long)]
    pub kid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Every setting, as given on the command line or in the environment.
#[derive(Debug, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "TWOFOLD_BIND", default_value = "127.0.0.1:8080", global = true)]
    pub bind: SocketAddr,

    /// Database URL: `sqlite://path.db` (created if missing) or `postgres://user@host/db`.
    #[arg(long, env = "TWOFOLD_DATABASE_URL", default_value = "sqlite://twofold.db", global = true)]
    pub database_url: String,

    /// Maximum database connections in the pool (PostgreSQL; SQLite uses one writer thread and at
    /// most 4 idle readers).
    #[arg(long, env = "TWOFOLD_DATABASE_MAX_CONNECTIONS", default_value_t = 16, global = true)]
    pub database_max_connections: u32,

    /// HMAC key for HS256/HS384/HS512 bearer tokens: at least 32 bytes (of the value as given).
    /// Without any JWT key Twofold runs in dev mode with a random per-run key and prints a demo
    /// token.
    #[arg(long, env = "TWOFOLD_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,

    /// Path to a PEM public key for RS*/PS*/ES*/EdDSA bearer tokens (needs TWOFOLD_JWT_ALGORITHMS).
    /// For keys that rotate, use TWOFOLD_JWT_JWKS_URL instead.
    #[arg(long, env = "TWOFOLD_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,

    /// URL of the host application's JWK Set, e.g. an identity provider's
    /// `https://<host>/.well-known/jwks.json` or Keycloak's
    /// `https://<host>/realms/<realm>/protocol/openid-connect/certs`. A token is checked with the
    /// key its `kid` names (needs TWOFOLD_JWT_ALGORITHMS, asymmetric only; `oct` keys are
    /// ignored). Set one of TWOFOLD_JWT_SECRET, TWOFOLD_JWT_PUBLIC_KEY and TWOFOLD_JWT_JWKS_URL.
    #[arg(long, env = "TWOFOLD_JWT_JWKS_URL", global = true)]
    pub jwt_jwks_url: Option<String>,

    /// How often the JWK Set of TWOFOLD_JWT_JWKS_URL is fetched again (1s–24h). A token with an
    /// unknown `kid` also triggers a fetch, at most once per 30 s; a failed fetch keeps the last
    /// good set.
    #[arg(long, env = "TWOFOLD_JWT_JWKS_REFRESH", default_value = "10m", value_parser = parse_duration, global = true)]
    pub jwt_jwks_refresh: Duration,

    /// Comma-separated allow-list of JWT algorithms, e.g. `HS256,HS512`, `RS256` or `RS256,ES256`
    /// [default: HS256 with a secret; required with a public key or a JWK Set].
    #[arg(long, env = "TWOFOLD_JWT_ALGORITHMS", global = true)]
    pub jwt_algorithms: Option<String>,

    /// Required `iss` claim, if set.
    #[arg(long, env = "TWOFOLD_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, if set.
    #[arg(long, env = "TWOFOLD_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,

    /// Clock leeway for `exp` and `nbf`, in seconds (0–300).
    #[arg(long, env = "TWOFOLD_JWT_LEEWAY_SECONDS", default_value_t = 30, global = true)]
    pub jwt_leeway_seconds: u64,

    /// Issuer shown in authenticator apps and written into otpauth URIs (1–64 characters).
    #[arg(long, env = "TWOFOLD_ISSUER", default_value = "Twofold", global = true)]
    pub issuer: String,

    /// How long a pending (not yet enabled) secret stays valid (1m–24h).
    #[arg(long, env = "TWOFOLD_PENDING_TTL", default_value = "10m", value_parser = parse_duration, global = true)]
    pub pending_ttl: Duration,

    /// Accepted clock drift, in time steps either side of now (0–10).
    #[arg(long, env = "TWOFOLD_TOTP_SKEW", default_value_t = 1, global = true)]
    pub totp_skew: u16,

    /// HMAC algorithm for new enrolments: SHA1, SHA256 or SHA512.
    #[arg(long, env = "TWOFOLD_TOTP_ALGORITHM", default_value = "SHA1", global = true)]
    pub totp_algorithm: String,

    /// Code length for new enrolments: 6 or 8.
    #[arg(long, env = "TWOFOLD_TOTP_DIGITS", default_value_t = 6, global = true)]
    pub totp_digits: u8,

    /// Time step for new enrolments, in seconds (15–120).
    #[arg(long, env = "TWOFOLD_TOTP_PERIOD", default_value_t = 30, global = true)]
    pub totp_period: u32,

    /// Consecutive failed code checks before the credential is locked (1–100).
    #[arg(long, env = "TWOFOLD_MAX_FAILED_ATTEMPTS", default_value_t = 5, global = true)]
    pub max_failed_attempts: u32,

    /// How long a lockout lasts, in seconds (1–86400).
    #[arg(long, env = "TWOFOLD_LOCKOUT_SECONDS", default_value_t = 300, global = true)]
    pub lockout_seconds: u64,

    /// The URL the host application reaches Twofold at: the `iss` of verification assertions
    /// [default: http://<TWOFOLD_BIND>].
    #[arg(long, env = "TWOFOLD_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// The `aud` claim of verification assertions (e.g. the host application's id); none if unset.
    #[arg(long, env = "TWOFOLD_ASSERTION_AUDIENCE", global = true)]
    pub assertion_audience: Option<String>,

    /// Lifetime of a verification assertion (10s–1h).
    #[arg(long, env = "TWOFOLD_ASSERTION_TTL", default_value = "5m", value_parser = parse_duration, global = true)]
    pub assertion_ttl: Duration,

    /// 32-byte base64 key encrypting TOTP secrets at rest (AES-256-GCM). Without it, SQLite
    /// deployments generate `twofold.key` beside the database; PostgreSQL refuses to start.
    #[arg(long, env = "TWOFOLD_ENCRYPTION_KEY", hide_env_values = true, global = true)]
    pub encryption_key: Option<String>,

    /// Comma-separated older base64 keys, used only to decrypt rows written before a rotation.
    #[arg(long, env = "TWOFOLD_ENCRYPTION_KEYS_OLD", hide_env_values = true, global = true)]
    pub encryption_keys_old: Option<String>,

    /// Where to send event webhooks (http or https URL; Standard Webhooks). Needs
    /// TWOFOLD_WEBHOOK_SECRET. Without it, no webhooks are sent.
    #[arg(long, env = "TWOFOLD_WEBHOOK_URL", global = true)]
    pub webhook_url: Option<String>,

    /// The webhook signing secret: `whsec_` followed by base64 of at least 24 random bytes
    /// (e.g. `echo whsec_$(openssl rand -base64 32)`).
    #[arg(long, env = "TWOFOLD_WEBHOOK_SECRET", hide_env_values = true, global = true)]
    pub webhook_secret: Option<String>,

    /// Comma-separated event kinds to send (default: ENABLED, DISABLED, LOCKED_OUT,
    /// CODE_REPLAYED, RECOVERY_CODE_USED, RECOVERY_CODES_REGENERATED, ADMIN_RESET,
    /// ADMIN_UNLOCKED, IMPORTED).
    #[arg(long, env = "TWOFOLD_WEBHOOK_EVENTS", global = true)]
    pub webhook_events: Option<String>,

    /// How long an event is retried (from the event, or from `admin webhooks retry`) before it
    /// is marked failed (1s–30d).
    #[arg(long, env = "TWOFOLD_WEBHOOK_MAX_AGE", default_value = "24h", value_parser = parse_duration, global = true)]
    pub webhook_max_age: Duration,

    /// How long audit events are kept before the background pruner deletes them.
    #[arg(long, env = "TWOFOLD_AUDIT_RETENTION", default_value = "90d", value_parser = parse_duration, global = true)]
    pub audit_retention: Duration,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `twofold=debug`.
    #[arg(long, env = "TWOFOLD_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log format.
    #[arg(long, env = "TWOFOLD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    /// Add internal error detail to Cloudreve `error` fields (never enable in production).
    #[arg(long, env = "TWOFOLD_DEBUG", default_value_t = false, global = true)]
    pub debug: bool,
}

/// A configuration error: one line, shown before exiting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Parses `600`, `600s`, `10m`, `1h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration (e.g. 600, 600s, 10m, 1h)"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}` has an unknown unit (use s, m, h or d)")),
    };
    n.checked_mul(factor).map(Duration::from_secs).ok_or_else(|| format!("`{text}` is too long"))
}

// The bounds of SPEC §10 ("Settings have sane bounds"). Outside them start-up stops with a
// one-line reason naming the variable and the range. They also keep every time sum (`now +
// lockout`, `now + pending TTL`, `now ± leeway`) far from overflowing.

/// `TWOFOLD_MAX_FAILED_ATTEMPTS`.
pub const MAX_FAILED_ATTEMPTS_RANGE: RangeInclusive<u32> = 1..=100;
/// `TWOFOLD_LOCKOUT_SECONDS`.
pub const LOCKOUT_SECONDS_RANGE: RangeInclusive<u64> = 1..=86_400;
/// `TWOFOLD_PENDING_TTL`, in seconds: 1 min–24 h.
pub const PENDING_TTL_SECONDS_RANGE: RangeInclusive<u64> = 60..=86_400;
/// `TWOFOLD_JWT_LEEWAY_SECONDS`.
pub const JWT_LEEWAY_SECONDS_RANGE: RangeInclusive<u64> = 0..=crate::auth::MAX_LEEWAY_SECONDS;
/// `TWOFOLD_TOTP_SKEW`, in time steps either side of now.
pub const TOTP_SKEW_RANGE: RangeInclusive<u16> = 0..=10;
/// `TWOFOLD_JWT_JWKS_REFRESH`, in seconds: 1 s–24 h.
pub const JWKS_REFRESH_SECONDS_RANGE: RangeInclusive<u64> = 1..=86_400;
/// `TWOFOLD_JWT_SECRET`, in bytes of the value as given (not decoded, not trimmed).
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// `TWOFOLD_ISSUER`, in characters (Unicode scalar values).
pub const MAX_ISSUER_CHARS: usize = 64;
/// `twofold token --ttl`: a wide range for operators, but `now + ttl` stays far from `i64::MAX`.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(36_500 * 86_400);

/// `--ttl` of `twofold token`: a duration of at most [`MAX_TOKEN_TTL`] (100 years).
pub fn parse_token_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text)?;
    if ttl > MAX_TOKEN_TTL {
        return Err(format!("`{}` is longer than 36500d (the longest token lifetime)", text.trim()));
    }
    Ok(ttl)
}

fn check_range<T>(variable: &str, value: T, range: &RangeInclusive<T>, unit: &str) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        return Ok(());
    }
    err(format!("{variable} must be between {} and {}{unit} (got {value})", range.start(), range.end()))
}

/// The JWT setup: how tokens are verified, and whether this is dev mode.
pub struct JwtSetup {
    pub authenticator: Authenticator,
    pub algorithms: Vec<JwtAlgorithm>,
    /// `Some(secret)` in dev mode: the random per-run HMAC secret, used to mint the demo token.
    pub dev_secret: Option<Vec<u8>>,
}

fn parse_algorithms(list: &str) -> Result<Vec<JwtAlgorithm>, ConfigError> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name.eq_ignore_ascii_case("none") {
            return err("TWOFOLD_JWT_ALGORITHMS must not contain `none`");
        }
        let alg: JwtAlgorithm =
            name.parse().map_err(|_| ConfigError(format!("TWOFOLD_JWT_ALGORITHMS: unknown algorithm `{name}`")))?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    if out.is_empty() {
        return err("TWOFOLD_JWT_ALGORITHMS is empty");
    }
    Ok(out)
}

fn is_hmac(alg: JwtAlgorithm) -> bool {
    matches!(alg, JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512)
}

impl Settings {
    /// Validates the settings every subcommand that touches data needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(crate::store::is_sqlite_url(&self.database_url) || crate::store::is_postgres_url(&self.database_url)) {
            return err("TWOFOLD_DATABASE_URL must start with sqlite:// or postgres://");
        }
        if crate::store::is_sqlite_url(&self.database_url) && crate::store::sqlite_path(&self.database_url).is_none() {
            return err(
                "TWOFOLD_DATABASE_URL: in-memory SQLite is not supported; name a file, e.g. sqlite://twofold.db",
            );
        }
        if self.database_max_connections == 0 {
            return err("TWOFOLD_DATABASE_MAX_CONNECTIONS must be at least 1");
        }
        self.check_jwt_leeway()?;
        self.service_settings().map(|_| ())
    }

    fn check_jwt_leeway(&self) -> Result<(), ConfigError> {
        check_range("TWOFOLD_JWT_LEEWAY_SECONDS", self.jwt_leeway_seconds, &JWT_LEEWAY_SECONDS_RANGE, " seconds")
    }

    pub fn claim_rules(&self) -> ClaimRules {
        ClaimRules {
            issuer: self.jwt_issuer.clone().filter(|s| !s.is_empty()),
            audience: self.jwt_audience.clone().filter(|s| !s.is_empty()),
            leeway_seconds: self.jwt_leeway_seconds,
        }
    }

    /// Builds the token verifier. With no key configured, returns a dev-mode setup with a fresh
    /// random HMAC secret.
    pub fn jwt(&self) -> Result<JwtSetup, ConfigError> {
        self.check_jwt_leeway()?;
        // A secret given as an empty value is a secret of 0 bytes (refused below), not dev mode:
        // dev mode is for a key that is not configured at all.
        let secret = self.jwt_secret.as_deref();
        let rules = self.claim_rules();
        let refresh = self.jwt_jwks_refresh;
        let refresh_range = Duration::from_secs(*JWKS_REFRESH_SECONDS_RANGE.start())
            ..=Duration::from_secs(*JWKS_REFRESH_SECONDS_RANGE.end());
        if !refresh_range.contains(&refresh) {
            return err(format!(
                "TWOFOLD_JWT_JWKS_REFRESH must be between 1s and 24h (got {} seconds)",
                refresh.as_secs()
            ));
        }
        let sources: Vec<&str> = [
            (secret.is_some(), "TWOFOLD_JWT_SECRET"),
            (self.jwt_public_key.is_some(), "TWOFOLD_JWT_PUBLIC_KEY"),
            (self.jwt_jwks_url.is_some(), "TWOFOLD_JWT_JWKS_URL"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if sources.len() > 1 {
            return err(format!(
                "set only one of TWOFOLD_JWT_SECRET, TWOFOLD_JWT_PUBLIC_KEY and TWOFOLD_JWT_JWKS_URL (got {})",
                sources.join(" and ")
            ));
        }
        if let Some(url) = self.jwt_jwks_url.as_deref() {
            return self.jwks_setup(url, refresh, &rules);
        }
        match (secret, &self.jwt_public_key) {
            // (A secret together with a public key was refused above.)
            (Some(secret), _) => {
                let algorithms = parse_algorithms(self.jwt_algorithms.as_deref().unwrap_or("HS256"))?;
                if let Some(bad) = algorithms.iter().find(|a| !is_hmac(**a)) {
                    return err(format!(
                        "TWOFOLD_JWT_ALGORITHMS lists {bad:?}, which needs TWOFOLD_JWT_PUBLIC_KEY, not a secret"
                    ));
                }
                if secret.len() < MIN_JWT_SECRET_BYTES {
                    return err(format!(
                        "TWOFOLD_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes (got {}); \
                         use a long random secret, e.g. `openssl rand -base64 32`",
                        secret.len()
                    ));
                }
                let authenticator =
                    Authenticator::new(DecodingKey::from_secret(secret.as_bytes()), algorithms.clone(), &rules);
                Ok(JwtSetup { authenticator, algorithms, dev_secret: None })
            }
            (None, Some(path)) => {
                let Some(list) = self.jwt_algorithms.as_deref() else {
                    return err("TWOFOLD_JWT_PUBLIC_KEY needs an explicit TWOFOLD_JWT_ALGORITHMS (e.g. RS256)");
                };
                let algorithms = parse_algorithms(list)?;
                if algorithms.iter().any(|a| is_hmac(*a)) {
                    return err("TWOFOLD_JWT_ALGORITHMS lists an HS algorithm together with a public key");
                }
                let pem = std::fs::read(path)
                    .map_err(|e| ConfigError(format!("cannot read TWOFOLD_JWT_PUBLIC_KEY {}: {e}", path.display())))?;
                let family = |a: &JwtAlgorithm| match a {
                    JwtAlgorithm::RS256
                    | JwtAlgorithm::RS384
                    | JwtAlgorithm::RS512
                    | JwtAlgorithm::PS256
                    | JwtAlgorithm::PS384
                    | JwtAlgorithm::PS512 => 0,
                    JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => 1,
                    _ => 2,
                };
                let first = family(&algorithms[0]);
                if algorithms.iter().any(|a| family(a) != first) {
                    return err(
                        "TWOFOLD_JWT_ALGORITHMS mixes key types (RSA, EC, EdDSA); one public key fits one type",
                    );
                }
                let key = match first {
                    0 => DecodingKey::from_rsa_pem(&pem),
                    1 => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_ed_pem(&pem),
                }
                .map_err(|e| {
                    ConfigError(format!(
                        "TWOFOLD_JWT_PUBLIC_KEY is not a usable PEM public key for {:?}: {e}",
                        algorithms[0]
                    ))
                })?;
                Ok(JwtSetup {
                    authenticator: Authenticator::new(key, algorithms.clone(), &rules),
                    algorithms,
                    dev_secret: None,
                })
            }
            (None, None) => {
                if self.jwt_algorithms.is_some() {
                    return err("TWOFOLD_JWT_ALGORITHMS is set but no TWOFOLD_JWT_SECRET, TWOFOLD_JWT_PUBLIC_KEY or \
                         TWOFOLD_JWT_JWKS_URL");
                }
                let mut secret = vec![0u8; 32];
                getrandom::fill(&mut secret)
                    .map_err(|_| ConfigError("the OS random number generator failed".into()))?;
                let algorithms = vec![JwtAlgorithm::HS256];
                let authenticator = Authenticator::new(DecodingKey::from_secret(&secret), algorithms.clone(), &rules);
                Ok(JwtSetup { authenticator, algorithms, dev_secret: Some(secret) })
            }
        }
    }

    /// `TWOFOLD_JWT_JWKS_URL`: keys from the host application's JWK Set (SPEC §7). Nothing is
    /// fetched here; `serve` starts the fetching.
    fn jwks_setup(&self, url: &str, refresh: Duration, rules: &ClaimRules) -> Result<JwtSetup, ConfigError> {
        let Some(list) = self.jwt_algorithms.as_deref() else {
            return err("TWOFOLD_JWT_JWKS_URL needs an explicit TWOFOLD_JWT_ALGORITHMS (e.g. RS256, or RS256,ES256)");
        };
        let algorithms = parse_algorithms(list)?;
        if let Some(bad) = algorithms.iter().find(|a| is_hmac(**a)) {
            return err(format!(
                "TWOFOLD_JWT_ALGORITHMS lists {bad:?}, a symmetric algorithm; a JWK Set gives public keys only \
                 (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"
            ));
        }
        let keys = CallerKeys::new(url, refresh).map_err(|e| ConfigError(format!("TWOFOLD_JWT_JWKS_URL {e}")))?;
        Ok(JwtSetup {
            authenticator: Authenticator::with_jwk_set(keys, algorithms.clone(), rules),
            algorithms,
            dev_secret: None,
        })
    }

    pub fn totp_params(&self) -> Result<TotpParams, ConfigError> {
        let algorithm: Algorithm =
            self.totp_algorithm.parse().map_err(|e| ConfigError(format!("TWOFOLD_TOTP_ALGORITHM: {e}")))?;
        if !matches!(self.totp_digits, 6 | 8) {
            return err("TWOFOLD_TOTP_DIGITS must be 6 or 8");
        }
        if !(15..=120).contains(&self.totp_period) {
            return err("TWOFOLD_TOTP_PERIOD must be between 15 and 120 seconds");
        }
        Ok(TotpParams { algorithm, digits: self.totp_digits, period: self.totp_period })
    }

    pub fn service_settings(&self) -> Result<ServiceSettings, ConfigError> {
        let issuer_chars = self.issuer.chars().count();
        // Colons are removed from the issuer in otpauth URIs, so one of only colons is blank too.
        let blank = self.issuer.chars().all(|c| c == ':' || c.is_whitespace());
        if blank || issuer_chars > MAX_ISSUER_CHARS {
            return err(format!(
                "TWOFOLD_ISSUER must be 1 to {MAX_ISSUER_CHARS} characters and not blank (got {issuer_chars} characters)"
            ));
        }
        check_range("TWOFOLD_TOTP_SKEW", self.totp_skew, &TOTP_SKEW_RANGE, " time steps")?;
        check_range("TWOFOLD_MAX_FAILED_ATTEMPTS", self.max_failed_attempts, &MAX_FAILED_ATTEMPTS_RANGE, "")?;
        check_range("TWOFOLD_LOCKOUT_SECONDS", self.lockout_seconds, &LOCKOUT_SECONDS_RANGE, " seconds")?;
        let ttl_range = Duration::from_secs(*PENDING_TTL_SECONDS_RANGE.start())
            ..=Duration::from_secs(*PENDING_TTL_SECONDS_RANGE.end());
        if !ttl_range.contains(&self.pending_ttl) {
            return err(format!(
                "TWOFOLD_PENDING_TTL must be between 1m and 24h (60 to 86400 seconds; got {} seconds)",
                self.pending_ttl.as_secs()
            ));
        }
        if !(Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&self.assertion_ttl) {
            return err(format!(
                "TWOFOLD_ASSERTION_TTL must be between 10s and 1h (got {} seconds)",
                self.assertion_ttl.as_secs()
            ));
        }
        let public_url = self.public_url.clone().filter(|u| !u.trim().is_empty());
        if public_url.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return err("TWOFOLD_PUBLIC_URL must be an http:// or https:// URL");
        }
        let webhook_kinds = self.webhook()?.map(|w| w.kinds).unwrap_or_default();
        Ok(ServiceSettings {
            webhook_kinds,
            issuer: self.issuer.clone(),
            pending_ttl: self.pending_ttl,
            skew: self.totp_skew,
            params: self.totp_params()?,
            max_failed_attempts: self.max_failed_attempts,
            lockout: Duration::from_secs(self.lockout_seconds),
            assertion: AssertionSettings {
                issuer: public_url.unwrap_or_else(|| format!("http://{}", self.bind)),
                audience: self.assertion_audience.clone().filter(|a| !a.is_empty()),
                ttl: self.assertion_ttl,
            },
        })
    }

    /// The webhook receiver, when `TWOFOLD_WEBHOOK_URL` is set (SPEC §9).
    pub fn webhook(&self) -> Result<Option<crate::webhook::WebhookSettings>, ConfigError> {
        let Some(url) = self.webhook_url.as_deref().filter(|u| !u.trim().is_empty()) else {
            if self.webhook_secret.as_deref().is_some_and(|s| !s.trim().is_empty()) {
                return err("TWOFOLD_WEBHOOK_SECRET is set but TWOFOLD_WEBHOOK_URL is not");
            }
            return Ok(None);
        };
        crate::webhook::WebhookSettings::parse(
            url,
            self.webhook_secret.as_deref(),
            self.webhook_events.as_deref(),
            self.webhook_max_age,
        )
        .map(Some)
        .map_err(ConfigError)
    }

    /// The encryption keys. With no key and SQLite, reads or creates `twofold.key` (mode 0600)
    /// beside the database file; with PostgreSQL and no key, fails.
    pub fn keyring(&self) -> Result<Keyring, ConfigError> {
        let old = self
            .encryption_keys_old
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|k| crypto::decode_key(k).map_err(|e| ConfigError(format!("TWOFOLD_ENCRYPTION_KEYS_OLD: a key {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(key) = self.encryption_key.as_deref().filter(|k| !k.trim().is_empty()) {
            let current = crypto::decode_key(key).map_err(|e| ConfigError(format!("TWOFOLD_ENCRYPTION_KEY {e}")))?;
            return Ok(Keyring::new(&current, &old));
        }
        if !crate::store::is_sqlite_url(&self.database_url) {
            return err(
                "TWOFOLD_ENCRYPTION_KEY is required with PostgreSQL (32 random bytes, base64: `openssl rand -base64 32`)",
            );
        }
        let path = key_file_path(&self.database_url);
        let current = load_or_create_key_file(&path)?;
        Ok(Keyring::new(&current, &old))
    }
}

/// `twofold.key` beside the SQLite database file.
pub fn key_file_path(database_url: &str) -> PathBuf {
    let file = crate::store::sqlite_path(database_url).unwrap_or_default();
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.join("twofold.key")
}

/// The longest key file read: a base64 key is 44 characters, so anything much longer is not one.
const MAX_KEY_FILE_BYTES: u64 = 1024;

/// Reads the key file, or creates it (mode 0600) when there is none. An existing key file that
/// group or others can write is refused (Unix), so a key swapped in by another account is never
/// used to seal secrets.
fn load_or_create_key_file(path: &Path) -> Result<[u8; 32], ConfigError> {
    match std::fs::File::open(path) {
        Ok(file) => read_key_file(path, file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = crypto::generate_key().map_err(|e| ConfigError(e.to_string()))?;
            match create_private_file(path, &key) {
                Ok(()) => tracing::warn!(
                    path = %path.display(),
                    "no TWOFOLD_ENCRYPTION_KEY: generated an encryption key file for this SQLite database; \
                     back it up with the database, or set TWOFOLD_ENCRYPTION_KEY in production"
                ),
                // Another instance starting beside this one published its key first: use that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return err(format!("cannot create {}: {e}", path.display())),
            }
            // Read back what is on disk, through the same checks as an existing file (a file
            // system that ignores modes is caught here, not at the next start).
            let file =
                std::fs::File::open(path).map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
            read_key_file(path, file)
        }
        Err(e) => err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Checks the opened key file's mode (of the open file, so it is the file that is then read) and
/// decodes its key.
fn read_key_file(path: &Path, file: std::fs::File) -> Result<[u8; 32], ConfigError> {
    use std::io::Read;
    let metadata = file.metadata().map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    if !metadata.is_file() {
        return err(format!("{} is not a regular file", path.display()));
    }
    check_key_file_mode(path, &metadata)?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    crypto::decode_key(&text).map_err(|e| ConfigError(format!("{}: the key {e}", path.display())))
}

#[cfg(unix)]
fn check_key_file_mode(path: &Path, metadata: &std::fs::Metadata) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return err(format!(
            "{} is writable by group or others (mode {mode:04o}); refusing to use it as the encryption key: \
             check its contents and run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    if mode & 0o044 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            "the encryption key file is readable by group or others; restrict it with `chmod 600`"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_file_mode(_path: &Path, _metadata: &std::fs::Metadata) -> Result<(), ConfigError> {
    Ok(())
}

/// Creates `path` holding `contents` and a newline, readable and writable by the owner only: the
/// file is created with mode 0600 (never widened, then narrowed), written and synced under a
/// temporary name in the same directory, and published with a hard link, so the file appears
/// whole or not at all, and never replaces an existing one (`AlreadyExists`).
fn create_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", data_encoding::HEXLOWER.encode(&nonce)));
    write_new_private_file(&temp, contents)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
        // A file system without hard links: create the file in place (still exclusively, 0600).
        Err(_) => write_new_private_file(path, contents)?,
    }
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        // The new directory entry survives a crash; best effort.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Creates a new file (failing if it exists) with mode 0600 from the start, writes and syncs it.
fn write_new_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let written =
        file.write_all(contents.as_bytes()).and_then(|()| file.write_all(b"\n")).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("600s").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn key_file_sits_beside_the_database() {
        assert_eq!(key_file_path("sqlite://twofold.db"), PathBuf::from("./twofold.key"));
        assert_eq!(
            key_file_path("sqlite:///var/lib/twofold/t.db?mode=rwc"),
            PathBuf::from("/var/lib/twofold/twofold.key")
        );
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef"; // 32 bytes

    fn settings(args: &[&str]) -> Settings {
        let base = ["twofold", "--database-url", "sqlite:///nonexistent/t.db", "--jwt-secret", SECRET];
        Cli::try_parse_from(base.iter().chain(args)).expect("parses").settings
    }

    fn refusal(args: &[&str]) -> String {
        let message = settings(args).validate().expect_err(&format!("{args:?} must be refused")).to_string();
        assert!(!message.contains('\n'), "one line: {message}");
        message
    }

    #[test]
    fn defaults_are_within_bounds() {
        let s = settings(&[]);
        s.validate().unwrap();
        s.jwt().unwrap();
    }

    #[test]
    fn numeric_settings_are_bounded() {
        let cases: &[(&str, &str, &[&str], &[&str])] = &[
            ("--max-failed-attempts", "TWOFOLD_MAX_FAILED_ATTEMPTS", &["0", "101", "4294967295"], &["1", "100"]),
            (
                "--lockout-seconds",
                "TWOFOLD_LOCKOUT_SECONDS",
                &["0", "86401", "9223372036854775", "18446744073709551615"],
                &["1", "86400"],
            ),
            (
                "--pending-ttl",
                "TWOFOLD_PENDING_TTL",
                &["0", "59", "59s", "86401", "25h", "2d", "213503982334601d"],
                &["60", "1m", "24h", "86400s", "1d"],
            ),
            ("--jwt-leeway-seconds", "TWOFOLD_JWT_LEEWAY_SECONDS", &["301", "18446744073709551615"], &["0", "300"]),
            ("--totp-skew", "TWOFOLD_TOTP_SKEW", &["11", "65535"], &["0", "10"]),
        ];
        for (flag, variable, bad, good) in cases {
            for value in *bad {
                let message = refusal(&[flag, value]);
                assert!(message.contains(variable), "{flag} {value}: {message}");
            }
            for value in *good {
                settings(&[flag, value]).validate().unwrap_or_else(|e| panic!("{flag} {value}: {e}"));
            }
        }
        assert_eq!(
            refusal(&["--lockout-seconds", "9223372036854775"]),
            "TWOFOLD_LOCKOUT_SECONDS must be between 1 and 86400 seconds (got 9223372036854775)"
        );
        assert!(refusal(&["--pending-ttl", "25h"]).contains("between 1m and 24h"));
        // service_settings() alone applies the same bounds (serve calls it after validate()).
        assert!(settings(&["--max-failed-attempts", "101"]).service_settings().is_err());
        // The leeway is checked by jwt() too (`twofold token` does not call validate()).
        assert!(settings(&["--jwt-leeway-seconds", "301"]).jwt().err().unwrap().to_string().contains("0 and 300"));
    }

    #[test]
    fn the_issuer_is_1_to_64_characters() {
        for bad in ["", "   ", " : ", &"x".repeat(65), &"é".repeat(65)] {
            let message = refusal(&["--issuer", bad]);
            assert!(message.contains("TWOFOLD_ISSUER") && message.contains("64"), "{message}");
        }
        for good in ["A", &"x".repeat(64), &"é".repeat(64)] {
            settings(&["--issuer", good]).validate().unwrap();
        }
    }

    #[test]
    fn the_jwt_secret_is_at_least_32_bytes_as_given() {
        for bad in ["", "short", &"x".repeat(31)] {
            let s = Cli::try_parse_from(["twofold", "--jwt-secret", bad]).unwrap().settings;
            let message = s.jwt().err().expect("refused").to_string();
            assert!(message.contains("TWOFOLD_JWT_SECRET") && message.contains("32 bytes"), "{message}");
            assert!(!message.contains('\n'));
            if !bad.trim().is_empty() {
                assert!(!message.contains(bad.trim()), "the secret is never echoed: {message}");
            }
        }
        // Bytes, not characters: 11 three-byte characters are 33 bytes.
        for good in [SECRET, &"€".repeat(11), "  0123456789abcdef0123456789ab  ", &"x".repeat(200)] {
            let s = Cli::try_parse_from(["twofold", "--jwt-secret", good]).unwrap().settings;
            assert!(s.jwt().unwrap().dev_secret.is_none());
        }
    }

    #[test]
    fn token_lifetimes_are_wide_but_bounded() {
        assert_eq!(parse_token_ttl("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_token_ttl("36500d").unwrap(), MAX_TOKEN_TTL);
        assert!(parse_token_ttl("36501d").is_err());
        assert!(parse_token_ttl("18446744073709551615").is_err());
        let now = chrono::Utc::now().timestamp();
        assert!(now.checked_add(MAX_TOKEN_TTL.as_secs() as i64).is_some());
        let cli = Cli::try_parse_from(["twofold", "token", "--sub", "a", "--ttl", "9223372036854775807"]);
        assert!(cli.is_err(), "--ttl beyond 36500d is refused by the parser");
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    #[test]
    fn a_new_key_file_is_private_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.key");
        let key = load_or_create_key_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load_or_create_key_file(&path).unwrap(), key, "reused");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("twofold.key")], "no temporary file is left behind");
    }

    #[cfg(unix)]
    #[test]
    fn instances_starting_together_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.key");
        let keys: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| load_or_create_key_file(&path).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(mode(&path), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.key");
        std::fs::write(&path, format!("{}\n", crypto::generate_key().unwrap())).unwrap();
        for bad in [0o666, 0o620, 0o602, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
            let message = load_or_create_key_file(&path).unwrap_err().to_string();
            assert!(message.contains("chmod 600") && message.contains("twofold.key"), "{message}");
            assert!(!message.contains('\n'));
        }
        for good in [0o600, 0o400, 0o640, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(good)).unwrap();
            load_or_create_key_file(&path).unwrap_or_else(|e| panic!("{good:o}: {e}"));
        }
        // Through a symlink, the mode of the file it points to counts.
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(load_or_create_key_file(&link).is_err());
    }
}
