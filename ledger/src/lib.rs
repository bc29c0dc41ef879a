//! Strongroom's ledger: a double-entry ledger over a narrow, DynamoDB-shaped store.
//!
//! - [`Ledger`] is the typed service interface: accounts, transfers, journal entries, batches,
//!   holds, reversals, balances, history, trial balance. It knows nothing of HTTP.
//! - Writes go through group commit ([`commit`]): concurrent requests share one conditional
//!   storage transaction. The decisions are made by a pure planner ([`plan`]) over a snapshot.
//! - [`store::Store`] is the storage interface; [`store::sqlite::SqliteStore`] is the embedded
//!   backend. Every record's place in the store is in [`layout`].
//! - [`audit_log`] writes each process's stream of audit records in the same transactions as
//!   the changes they record, signs checkpoints of it, and reads, proves and verifies it.
//! - [`vault`] encrypts card data (envelope encryption under a local keyring or AWS KMS); the
//!   ledger itself does not use it.
//!
//! Invariants: money is integers (no floats anywhere); every transfer balances per currency
//! (checked when built, [`BalancedLegs`], and again on the whole batch before writing); nothing
//! is acknowledged before its transaction returned; a replayed `Idempotency-Key` returns the
//! stored outcome; a refused request writes nothing.

#![warn(missing_docs)]

pub mod account;
pub mod audit_log;
mod aws;
pub mod card;
pub mod codec;
pub mod command;
mod commit;
pub mod cursor;
pub mod error;
mod history;
pub mod ids;
pub mod layout;
pub mod limits;
pub mod metrics;
pub mod money;
mod plan;
mod service;
pub mod store;
pub mod time;
pub mod transfer;
mod transfer_pack;
pub mod trial;
pub mod vault;

pub use account::{
    Account, AccountStatus, BalanceConstraint, Balances, Metadata, NewAccount, Side, StatusAction,
};
pub use command::{BatchMode, Committed};
pub use commit::{BARRIER_PAUSE_MAX, CommitConfig, CommitStats};
pub use error::{BatchFailure, Error, Rejection, Result};
pub use ids::{AccountId, CardId, IdempotencyKey, TenantId, TransferId};
pub use money::{Amount, Currency};
pub use service::{BalanceAt, Ledger, LedgerConfig, Listing, PageRequest};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use transfer::{
    BalancedLegs, Entry, EntryKind, Hold, Leg, NewTransfer, Transfer, TransferState, VoidReason,
};
pub use trial::{CurrencyTotals, TrialBalance};
