//! End-to-end tests of Strongroom: one test binary, one module per area.
//!
//! Every test starts its own instance on a fresh temporary data directory and `127.0.0.1:0`,
//! and talks HTTPS to it with a client that trusts only the instance's generated certificate.
//! Most tests run the server in this process ([`harness::Instance`]); the ones about crashes,
//! signals and output spawn the real program ([`harness::Process`]).
//!
//! - [`walkthrough`]: the quickstart, over HTTP/1.1 and HTTP/2.
//! - [`bad_input`]: a table of bad requests, each with its exact status and problem type, and
//!   proof that none of them changed anything.
//! - [`robustness`]: random and mutated bodies on every POST route; never a 5xx.
//! - [`tenancy`]: one tenant cannot see or touch another's data.
//! - [`cards`]: the card vault through the API with the local keyring and with KMS (moto):
//!   tokenize, read masked, reveal (own scope, reason, rate), delete, pay with a card; refused
//!   card data and verification codes; no number at rest.
//! - [`idempotency`]: replays, and concurrent requests with one key.
//! - [`auth`]: every kind of bad token is refused.
//! - [`jwks`]: keys from the identity provider's URL over real HTTPS: rotation, a bounded
//!   refetch rate under unknown `kid`s, an unreachable or misbehaving provider.
//! - [`policy`]: the route policy file: a route it leaves out stops the start; a stricter rule
//!   and the roles it defines are enforced.
//! - [`mtls`]: client certificates (`required` and `optional`), certificate-bound tokens
//!   (RFC 8705), a certificate's tenant against the token's.
//! - [`ratelimit`]: per-tenant limits and tiers, the per-address limit before authentication
//!   (bad-token floods, `X-Forwarded-For` from trusted proxies only), the `RateLimit` fields,
//!   and refused requests that change nothing.
//! - [`tls`]: protocol versions per mode, RSA and ECDSA certificates, a certificate replaced
//!   while the server runs.
//! - [`hostile`]: security headers on every answer; header floods, slow clients and more
//!   requests than the server serves at once, each refused cheaply while others are served.
//! - [`ledger_rules`]: hold expiry, no overdraft under concurrency, batch modes, paging,
//!   retry after a timeout.
//! - [`cli`]: `dev-token`, `trial-balance`, and exit status 64 for bad configuration.
//! - [`openapi`]: the served document, the `openapi` command and the routes agree.
//! - [`crash`]: SIGKILL under load loses nothing acknowledged and duplicates nothing.
//! - [`shutdown`]: SIGTERM drains in-flight requests and exits 0.
//! - [`split`]: the gateway alone in front of the ledger alone: what it forwards and strips,
//!   what the ledger refuses straight, retries and the circuit breaker.
//! - [`logs`]: no token ever reaches the output; log lines are JSON with request ids.
//! - [`masking`]: card numbers in every shape, through every text field, header, path and
//!   query, are in no answer, no output line and no file of the data directory; masked, they
//!   are kept.
//! - [`metrics`]: the counters on the metrics listener follow the writes; not on the API's.
//! - [`dynamodb`]: two stateless processes share one DynamoDB table (moto, through the real
//!   SDK) with concurrent postings to the same accounts and keys sent to both, also behind a
//!   faulty proxy; a batch fits one transaction by the accounts it names, or is refused whole.
//! - With `E2E_STORE=dynamodb` (a second pass of `tests/run.sh`), the walkthrough, ledger rules,
//!   idempotency, tenancy and metrics suites run with every instance on DynamoDB.
//! - [`architecture`]: the crate dependency invariants, from `cargo metadata`.

#![allow(clippy::unwrap_used)]

mod architecture;
mod audit_log;
mod auth;
mod bad_input;
mod cards;
mod cli;
mod crash;
mod dynamodb;
mod harness;
mod hostile;
mod idempotency;
mod jwks;
mod ledger_rules;
mod logs;
mod masking;
mod metrics;
mod mtls;
mod openapi;
mod policy;
mod ratelimit;
mod robustness;
mod shutdown;
mod split;
mod tenancy;
mod tls;
mod walkthrough;
