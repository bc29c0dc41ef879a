//! Service-level tests of the ledger: one test binary, the public API only, real SQLite on a
//! temporary file, time moved by hand with a [`ManualClock`].
//!
//! - [`scenarios`]: short data-driven cases per area (accounts, tenancy, transfers, batches,
//!   holds, reversals, history, idempotency, group commit, trial balance, restart).
//! - [`properties`]: random operation sequences checked step by step against an in-test model.
//! - [`vault_kms`]: the card vault over AWS KMS, against moto's KMS server (the vault over the
//!   local keyring is tested beside its code, `ledger/src/vault`).
//! - [`audit_log`]: the audit log on both stores, and its tampering caught.
//! - [`audit_kms`]: checkpoints signed with an AWS KMS key, against moto's KMS server.
//!
//! The harness below starts a ledger with the hold sweeper off, so that tests decide when
//! expired holds are voided (`Ledger::sweep_expired_holds`).

#![allow(clippy::unwrap_used)]

mod audit_kms;
mod audit_log;
mod properties;
mod scenarios;
mod vault_kms;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ledger::store::Store;
use ledger::store::sqlite::{SqliteOptions, SqliteStore};
use ledger::{
    Account, AccountId, Amount, BalanceConstraint, BalancedLegs, Balances, BatchFailure,
    CommitConfig, Committed, Currency, Entry, Error, IdempotencyKey, Ledger, LedgerConfig, Leg,
    Listing, ManualClock, Metadata, NewAccount, NewTransfer, PageRequest, Rejection, Result, Side,
    TenantId, Timestamp, Transfer, TransferId,
};

/// Where the manual clock starts: 2023-11-14T22:13:20Z.
pub const START_US: i64 = 1_700_000_000_000_000;

/// Write units an account head keeps its newest entries within (`StoreLimits::write_unit_bytes`):
/// none (every transaction writes entry pages) and DynamoDB's 1 KB. Tests of history run on both.
pub const WRITE_UNITS: [usize; 2] = [0, 1024];

/// A ledger on a fresh SQLite file, its clock, and a source of unique idempotency keys.
#[derive(Debug)]
pub struct Harness {
    /// The running ledger.
    pub ledger: Ledger,
    /// The clock the ledger reads.
    pub clock: ManualClock,
    /// The database file.
    pub path: PathBuf,
    keys: AtomicU64,
    // Dropped last: removes the database file.
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts a ledger on a new database file.
    pub fn start() -> Harness {
        Harness::start_with(CommitConfig::default())
    }

    /// Starts a ledger on a new database file with these group commit bounds.
    pub fn start_with(commit: CommitConfig) -> Harness {
        Harness::start_on(commit, |store| Arc::new(store))
    }

    /// Starts a ledger on a new database file whose account heads keep their newest entries
    /// within `write_unit_bytes` (zero: none).
    pub fn start_with_write_unit(write_unit_bytes: usize) -> Harness {
        let options = SqliteOptions {
            write_unit_bytes,
            ..SqliteOptions::default()
        };
        Harness::open_on(CommitConfig::default(), options, |store| Arc::new(store))
    }

    /// Starts a ledger on a new database file, whose store `wrap` may wrap (to watch the calls).
    pub fn start_on(
        commit: CommitConfig,
        wrap: impl FnOnce(SqliteStore) -> Arc<dyn Store>,
    ) -> Harness {
        Harness::open_on(commit, SqliteOptions::default(), wrap)
    }

    fn open_on(
        commit: CommitConfig,
        options: SqliteOptions,
        wrap: impl FnOnce(SqliteStore) -> Arc<dyn Store>,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let clock = ManualClock::new(Timestamp::from_micros(START_US));
        let config = LedgerConfig {
            commit,
            hold_sweep_interval: None,
            ..LedgerConfig::default()
        };
        let store = wrap(SqliteStore::open_with(&path, options).unwrap());
        let ledger = Ledger::start(store, Arc::new(clock.clone()), config);
        Harness {
            ledger,
            clock,
            path,
            keys: AtomicU64::new(0),
            _dir: dir,
        }
    }

    /// A key no earlier call of this harness handed out.
    pub fn key(&self) -> IdempotencyKey {
        let n = self.keys.fetch_add(1, Ordering::Relaxed);
        key(&format!("k-{n}"))
    }

    /// Creates an account with no name, reference or metadata.
    pub async fn account(
        &self,
        tenant: &TenantId,
        currency: Currency,
        normal_side: Side,
        constraint: BalanceConstraint,
    ) -> Account {
        let new = NewAccount::new(
            currency,
            normal_side,
            constraint,
            None,
            None,
            Metadata::default(),
        )
        .unwrap();
        let created = self.ledger.create_account(tenant, self.key(), new).await;
        created.unwrap().value
    }

    /// A debit-normal account without constraint: where money comes from.
    pub async fn cash(&self, tenant: &TenantId, currency: Currency) -> AccountId {
        let account = self
            .account(tenant, currency, Side::Debit, BalanceConstraint::None)
            .await;
        account.id
    }

    /// `n` accounts as [`Harness::cash`] makes them.
    pub async fn cash_accounts(&self, tenant: &TenantId, n: usize) -> Vec<AccountId> {
        let mut accounts = Vec::with_capacity(n);
        for _ in 0..n {
            accounts.push(self.cash(tenant, usd()).await);
        }
        accounts
    }

    /// A credit-normal account that cannot overdraw.
    pub async fn wallet(&self, tenant: &TenantId, currency: Currency) -> AccountId {
        let constraint = BalanceConstraint::DebitsMustNotExceedCredits;
        let account = self
            .account(tenant, currency, Side::Credit, constraint)
            .await;
        account.id
    }

    /// A credit-normal account without constraint.
    pub async fn merchant(&self, tenant: &TenantId, currency: Currency) -> AccountId {
        let account = self
            .account(tenant, currency, Side::Credit, BalanceConstraint::None)
            .await;
        account.id
    }

    /// Posts a plain transfer under a fresh key.
    pub async fn transfer(
        &self,
        tenant: &TenantId,
        debit: AccountId,
        credit: AccountId,
        amount_minor: u64,
        currency: Currency,
    ) -> Result<Transfer> {
        let new = plain(debit, credit, amount_minor, currency);
        let committed = self.ledger.create_transfer(tenant, self.key(), new).await?;
        Ok(committed.value)
    }

    /// Places a hold under a fresh key.
    pub async fn hold(
        &self,
        tenant: &TenantId,
        debit: AccountId,
        credit: AccountId,
        amount_minor: u64,
        currency: Currency,
        timeout_s: u64,
    ) -> Result<Transfer> {
        let new = pending(debit, credit, amount_minor, currency, timeout_s);
        let committed = self.ledger.create_transfer(tenant, self.key(), new).await?;
        Ok(committed.value)
    }

    /// An account as stored now.
    pub async fn get(&self, tenant: &TenantId, account: AccountId) -> Account {
        self.ledger.get_account(tenant, &account).await.unwrap()
    }

    /// The first page (of the default length) of an account's history, oldest first.
    pub async fn history(&self, tenant: &TenantId, account: AccountId) -> Listing<Entry> {
        let page = PageRequest::default();
        self.ledger.entries(tenant, &account, page).await.unwrap()
    }

    /// An account's balances now.
    pub async fn balances(&self, tenant: &TenantId, account: AccountId) -> Balances {
        self.get(tenant, account).await.balances
    }

    /// Every transfer of a tenant, oldest first.
    pub async fn all_transfers(&self, tenant: &TenantId) -> Vec<Transfer> {
        self.transfers_paged(tenant, ledger::limits::PAGE_LEN_MAX, false)
            .await
    }

    /// Every transfer of a tenant, through every page of `limit` (each checked to hold at
    /// most that many), oldest or newest first.
    pub async fn transfers_paged(
        &self,
        tenant: &TenantId,
        limit: usize,
        descending: bool,
    ) -> Vec<Transfer> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = PageRequest {
                limit: Some(limit),
                cursor,
                descending,
            };
            let listing = self.ledger.list_transfers(tenant, page).await.unwrap();
            assert!(listing.items.len() <= limit);
            out.extend(listing.items);
            match listing.next_cursor {
                Some(next) => cursor = Some(next),
                None => return out,
            }
        }
    }

    /// The clock's current time.
    pub fn now(&self) -> Timestamp {
        use ledger::Clock;
        self.clock.now()
    }
}

/// Starts a ledger with the sweeper off on the database at `path`.
pub fn open(path: &Path, clock: &ManualClock) -> Ledger {
    open_with(path, clock, CommitConfig::default())
}

fn open_with(path: &Path, clock: &ManualClock, commit: CommitConfig) -> Ledger {
    let store = SqliteStore::open(path).unwrap();
    let config = LedgerConfig {
        commit,
        hold_sweep_interval: None,
        ..LedgerConfig::default()
    };
    Ledger::start(Arc::new(store), Arc::new(clock.clone()), config)
}

/// What a call failed with, comparable with `==` (`Error` itself is not `PartialEq`).
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// `Error::Rejected`.
    Rejected(Rejection),
    /// `Error::BatchRejected`.
    BatchRejected(Vec<BatchFailure>),
    /// `Error::NotFound`.
    NotFound,
    /// `Error::IdempotencyKeyReused`.
    IdempotencyKeyReused,
    /// `Error::InvalidCursor`.
    InvalidCursor,
    /// `Error::ShuttingDown`.
    ShuttingDown,
    /// Anything else, as text; no test expects it.
    Other(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        match error {
            Error::Rejected(r) => Failure::Rejected(r),
            Error::BatchRejected(failures) => Failure::BatchRejected(failures),
            Error::NotFound => Failure::NotFound,
            Error::IdempotencyKeyReused => Failure::IdempotencyKeyReused,
            Error::InvalidCursor => Failure::InvalidCursor,
            Error::ShuttingDown => Failure::ShuttingDown,
            other => Failure::Other(format!("{other:?}")),
        }
    }
}

/// The failure of a call that must fail.
pub fn failure<T: Debug>(result: Result<T>) -> Failure {
    match result {
        Ok(value) => panic!("expected a failure, got {value:?}"),
        Err(error) => error.into(),
    }
}

/// The rejection of a call that must be rejected.
pub fn rejection<T: Debug>(result: Result<T>) -> Rejection {
    match failure(result) {
        Failure::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A valid tenant id.
pub fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

/// A valid idempotency key.
pub fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::new(text).unwrap()
}

/// A known currency.
pub fn currency(code: &str) -> Currency {
    Currency::from_code(code).unwrap()
}

/// US dollars.
pub fn usd() -> Currency {
    currency("USD")
}

/// Euros.
pub fn eur() -> Currency {
    currency("EUR")
}

/// Japanese yen (no minor unit).
pub fn jpy() -> Currency {
    currency("JPY")
}

/// A valid amount.
pub fn amount(minor: u64) -> Amount {
    Amount::new(minor).unwrap()
}

/// Metadata from pairs.
pub fn metadata(pairs: &[(&str, &str)]) -> Metadata {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Metadata::new(map).unwrap()
}

/// An id that no ledger handed out.
pub fn unknown_account() -> AccountId {
    "acct_01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap()
}

/// An id that no ledger handed out.
pub fn unknown_transfer() -> TransferId {
    "xfer_01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap()
}

/// A plain posted transfer request.
pub fn plain(debit: AccountId, credit: AccountId, minor: u64, currency: Currency) -> NewTransfer {
    let legs = BalancedLegs::transfer(debit, credit, amount(minor), currency).unwrap();
    NewTransfer::new(legs, None, Metadata::default(), None).unwrap()
}

/// A hold request.
pub fn pending(
    debit: AccountId,
    credit: AccountId,
    minor: u64,
    currency: Currency,
    timeout_s: u64,
) -> NewTransfer {
    let legs = BalancedLegs::transfer(debit, credit, amount(minor), currency).unwrap();
    NewTransfer::new(legs, None, Metadata::default(), Some(timeout_s)).unwrap()
}

/// One leg of a journal entry.
pub fn leg(account: AccountId, side: Side, minor: u64, currency: Currency) -> Leg {
    Leg {
        account,
        side,
        amount: amount(minor),
        currency,
    }
}

/// A journal entry request.
pub fn journal(legs: Vec<Leg>) -> NewTransfer {
    let legs = BalancedLegs::new(legs).unwrap();
    NewTransfer::new(legs, None, Metadata::default(), None).unwrap()
}

/// Balances from the four columns: posted debits, posted credits, pending debits, pending
/// credits.
pub fn bal(
    debits_posted: u128,
    credits_posted: u128,
    debits_pending: u128,
    credits_pending: u128,
) -> Balances {
    Balances {
        debits_posted,
        credits_posted,
        debits_pending,
        credits_pending,
    }
}

/// The value of a call that must succeed without being a replay.
pub fn fresh<T: Debug>(result: Result<Committed<T>>) -> T {
    let committed = result.unwrap();
    assert!(!committed.replayed, "a first request is not a replay");
    committed.value
}
