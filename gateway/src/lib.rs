//! Strongroom's gateway: the process that partners talk to.
//!
//! It terminates TLS ([`tls`]; client certificates: [`mtls`]), verifies bearer tokens
//! ([`auth`]; keys from a file or the identity provider's URL: [`jwks`]), limits request rates
//! per client address and per tenant ([`ratelimit`]), checks and converts every request
//! ([`api`]), and calls the ledger in the same process, or forwards to a ledger run alone
//! ([`proxy`], [`internal`]). It owns the wire format (the ledger has no idea what HTTP is),
//! the configuration ([`config`]) and the `strongroom` command ([`cli`]).

#![warn(missing_docs)]

pub mod api;
pub mod audit_forward;
pub mod auditlog;
pub mod auth;
pub mod cli;
pub mod config;
pub mod internal;
pub mod jwks;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod mtls;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod tls;
