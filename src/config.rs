//! Configuration: every setting is a flag and a `TWOFOLD_*` environment variable (flags win),
//! parsed once and validated at start-up. Invalid settings stop start-up with a one-line reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey};

use crate::auth::{Authenticator, ClaimRules};
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
    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// A `token_type` claim (Twofold accepts only `access`; use `refresh` to test rejection).
    #[arg(long)]
    pub token_type: Option<String>,
    /// PEM private key for RS*/ES*/EdDSA tokens (when Twofold verifies with a public key).
    #[arg(long)]
    pub private_key: Option<PathBuf>,
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

    /// HMAC key for HS256/HS384/HS512 bearer tokens. Without any JWT key Twofold runs in dev
    /// mode with a random per-run key and prints a demo token.
    #[arg(long, env = "TWOFOLD_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,

    /// Path to a PEM public key for RS*/PS*/ES*/EdDSA bearer tokens (needs TWOFOLD_JWT_ALGORITHMS).
    #[arg(long, env = "TWOFOLD_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,

    /// Comma-separated allow-list of JWT algorithms, e.g. `HS256,HS512` or `RS256`
    /// [default: HS256 with a secret; required with a public key].
    #[arg(long, env = "TWOFOLD_JWT_ALGORITHMS", global = true)]
    pub jwt_algorithms: Option<String>,

    /// Required `iss` claim, if set.
    #[arg(long, env = "TWOFOLD_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, if set.
    #[arg(long, env = "TWOFOLD_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,

    /// Clock leeway for `exp` and `nbf`, in seconds.
    #[arg(long, env = "TWOFOLD_JWT_LEEWAY_SECONDS", default_value_t = 30, global = true)]
    pub jwt_leeway_seconds: u64,

    /// Issuer shown in authenticator apps and written into otpauth URIs.
    #[arg(long, env = "TWOFOLD_ISSUER", default_value = "Twofold", global = true)]
    pub issuer: String,

    /// How long a pending (not yet enabled) secret stays valid.
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

    /// Consecutive failed code checks before the credential is locked.
    #[arg(long, env = "TWOFOLD_MAX_FAILED_ATTEMPTS", default_value_t = 5, global = true)]
    pub max_failed_attempts: u32,

    /// How long a lockout lasts, in seconds.
    #[arg(long, env = "TWOFOLD_LOCKOUT_SECONDS", default_value_t = 300, global = true)]
    pub lockout_seconds: u64,

    /// 32-byte base64 key encrypting TOTP secrets at rest (AES-256-GCM). Without it, SQLite
    /// deployments generate `twofold.key` beside the database; PostgreSQL refuses to start.
    #[arg(long, env = "TWOFOLD_ENCRYPTION_KEY", hide_env_values = true, global = true)]
    pub encryption_key: Option<String>,

    /// Comma-separated older base64 keys, used only to decrypt rows written before a rotation.
    #[arg(long, env = "TWOFOLD_ENCRYPTION_KEYS_OLD", hide_env_values = true, global = true)]
    pub encryption_keys_old: Option<String>,

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
        self.service_settings().map(|_| ())
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
        let secret = self.jwt_secret.as_deref().filter(|s| !s.is_empty());
        let rules = self.claim_rules();
        match (secret, &self.jwt_public_key) {
            (Some(_), Some(_)) => err("set either TWOFOLD_JWT_SECRET or TWOFOLD_JWT_PUBLIC_KEY, not both"),
            (Some(secret), None) => {
                let algorithms = parse_algorithms(self.jwt_algorithms.as_deref().unwrap_or("HS256"))?;
                if let Some(bad) = algorithms.iter().find(|a| !is_hmac(**a)) {
                    return err(format!(
                        "TWOFOLD_JWT_ALGORITHMS lists {bad:?}, which needs TWOFOLD_JWT_PUBLIC_KEY, not a secret"
                    ));
                }
                if secret.len() < 32 {
                    tracing::warn!("TWOFOLD_JWT_SECRET is shorter than 32 bytes; use a longer random secret");
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
                    return err("TWOFOLD_JWT_ALGORITHMS is set but no TWOFOLD_JWT_SECRET or TWOFOLD_JWT_PUBLIC_KEY");
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
        if self.issuer.trim().is_empty() || self.issuer.len() > 100 {
            return err("TWOFOLD_ISSUER must be 1–100 bytes");
        }
        if self.totp_skew > 10 {
            return err("TWOFOLD_TOTP_SKEW must be between 0 and 10");
        }
        if self.max_failed_attempts == 0 || self.max_failed_attempts > 1000 {
            return err("TWOFOLD_MAX_FAILED_ATTEMPTS must be between 1 and 1000");
        }
        if self.lockout_seconds == 0 {
            return err("TWOFOLD_LOCKOUT_SECONDS must be at least 1");
        }
        if self.pending_ttl < Duration::from_secs(30) {
            return err("TWOFOLD_PENDING_TTL must be at least 30s");
        }
        Ok(ServiceSettings {
            issuer: self.issuer.clone(),
            pending_ttl: self.pending_ttl,
            skew: self.totp_skew,
            params: self.totp_params()?,
            max_failed_attempts: self.max_failed_attempts,
            lockout: Duration::from_secs(self.lockout_seconds),
        })
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

fn load_or_create_key_file(path: &Path) -> Result<[u8; 32], ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => crypto::decode_key(&text).map_err(|e| ConfigError(format!("{}: the key {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = crypto::generate_key().map_err(|e| ConfigError(e.to_string()))?;
            write_private_file(path, &key)
                .map_err(|e| ConfigError(format!("cannot create {}: {e}", path.display())))?;
            tracing::warn!(
                path = %path.display(),
                "no TWOFOLD_ENCRYPTION_KEY: generated an encryption key file for this SQLite database; \
                 back it up with the database, or set TWOFOLD_ENCRYPTION_KEY in production"
            );
            crypto::decode_key(&key).map_err(ConfigError)
        }
        Err(e) => err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
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
}
