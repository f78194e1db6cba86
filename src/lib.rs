//! Twofold: a TOTP two-factor service with a GraphQL API and REST compatibility shims for the
//! Cloudreve v4 and Storno dialects.
//!
//! Data flows one way: transport ([`graphql`], [`rest`]) → [`service`] → [`store`] / [`totp`].

pub mod admin;
pub mod assertion;
pub mod auth;
pub mod caller_keys;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod graphql;
pub mod graphql_http;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod nesting;
pub mod playground;
pub mod rest;
pub mod serve;
pub mod service;
pub mod store;
pub mod totp;
pub mod web;
pub mod webhook;

use std::future::Future;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use tokio::net::TcpListener;

pub use http::{AppState, HttpOptions, app};

use crate::service::TwoFactor;

/// Connects to the database and applies pending migrations.
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> Result<store::Store, store::Error> {
    let store = store::Store::open(url, max_connections).await?;
    Migrator::up(store.connection(), None).await?;
    Ok(store)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then finishes in-flight
/// requests and returns.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve::serve(listener, app(state), serve::ServeOptions::default(), shutdown).await
}

/// [`run`] with other connection time limits (tests use short ones).
pub async fn run_with(
    listener: TcpListener,
    state: AppState,
    options: serve::ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve::serve(listener, app(state), options, shutdown).await
}

/// Rows the pruner deletes per table and statement.
pub const PRUNE_BATCH: u64 = 10_000;

/// Deletes expired pending enrolments and audit events older than `retention`, every `every`, in
/// bounded batches (a backlog is worked off batch after batch).
pub fn spawn_pruner(service: TwoFactor, retention: Duration, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            loop {
                let now = service.now_ms();
                let before = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
                match service.prune(now, before, PRUNE_BATCH).await {
                    Ok((0, 0)) => break,
                    Ok((pending, events)) => {
                        tracing::info!(pending, events, "pruned expired pending setups and old audit events");
                        if pending < PRUNE_BATCH && events < PRUNE_BATCH {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "pruning failed; will retry");
                        break;
                    }
                }
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received: finishing in-flight requests");
}
