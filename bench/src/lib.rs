//! What Strongroom's load generators share: the `strongroom serve` child process ([`server`])
//! and a lean HTTPS client ([`http`]). The binaries: `ledger-load` (`src/main.rs`) and
//! `vault-load` (`src/vault/main.rs`).

pub mod http;
pub mod server;
