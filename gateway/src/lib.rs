//! Strongroom's gateway: the process that partners talk to.
//!
//! It terminates TLS ([`tls`]), verifies bearer tokens ([`auth`]), limits request rates per
//! client address and per tenant ([`ratelimit`]), checks and converts every request ([`api`]), and calls the ledger in the same process. It owns the wire format (the
//! ledger has no idea what HTTP is), the configuration ([`config`]) and the `strongroom` command
//! ([`cli`]).

#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod server;
pub mod tls;
