//! The integration tests, linked as one test binary (`tests/it`) instead of one per file: the
//! crate and its dependencies are linked once, and one process runs every test. Each former
//! binary is a module here, so a filter on the module path runs one of them, e.g.
//! `cargo test --test it races::`; to rewrite both snapshots (`schema.graphql`, `openapi.json`):
//! `TWOFOLD_UPDATE_SNAPSHOTS=1 cargo test --test it -- schema:: openapi::`.
//!
//! The tests share one process, so process-wide state (the metrics recorder, environment
//! variables, the current directory) is shared by all of them: a test may read it, but must not
//! change it or expect values that other tests' activity would change.

mod common;

mod admin_api;
mod admin_cli;
mod assertions;
mod at_rest;
mod auth;
mod browser;
mod enrolment;
mod faults;
mod jwks_url;
mod layering;
mod lifecycle;
mod limits;
mod migrations;
mod openapi;
mod parse_bounds;
mod playground;
mod props;
mod prune;
mod races;
mod schema;
mod settings;
mod slow_clients;
mod store_parity;
mod webhooks;
