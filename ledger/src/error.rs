//! The ledger's errors.
//!
//! [`Rejection`] is a domain refusal: the request was understood and the ledger said no (an
//! overdraft, a frozen account). Rejections are data: stable, serializable, stored inside an
//! independent batch's outcome so that a replay returns them unchanged. [`Error`] is everything a
//! ledger call can fail with, rejections included.

use serde::{Deserialize, Serialize};

use crate::account::{AccountStatus, StatusAction};
use crate::ids::{AccountId, CardId, TransferId};
use crate::money::Currency;
use crate::store::StoreError;
use crate::transfer::TransferState;

/// A domain refusal. Nothing was written. Its serialized form is for storage (inside a batch's
/// outcome); the gateway builds the wire form explicitly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// A field is out of its bounds.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A journal entry has too few or too many legs.
    #[error("a journal entry has {min} to {max} legs")]
    LegCount {
        /// Fewest legs.
        min: usize,
        /// Most legs.
        max: usize,
    },
    /// An account appears on more than one leg.
    #[error("account {account} appears on more than one leg")]
    DuplicateAccount {
        /// The account.
        account: AccountId,
    },
    /// A transfer debits and credits the same account.
    #[error("a transfer cannot debit and credit the same account {account}")]
    SameAccount {
        /// The account.
        account: AccountId,
    },
    /// Debits and credits differ in a currency.
    #[error("debits and credits in {currency} do not balance")]
    Unbalanced {
        /// The currency.
        currency: Currency,
    },
    /// A hold must be a plain two-leg transfer.
    #[error("only a plain two-leg transfer can be pending")]
    HoldNeedsTwoLegs,
    /// A transfer names an account that does not exist (for this tenant).
    #[error("account {account} does not exist")]
    UnknownAccount {
        /// The account.
        account: AccountId,
    },
    /// The account is frozen.
    #[error("account {account} is frozen")]
    AccountFrozen {
        /// The account.
        account: AccountId,
    },
    /// The account is closed.
    #[error("account {account} is closed")]
    AccountClosed {
        /// The account.
        account: AccountId,
    },
    /// A leg's currency is not its account's.
    #[error("account {account} holds {account_currency}, not {currency}")]
    CurrencyMismatch {
        /// The account.
        account: AccountId,
        /// The account's currency.
        account_currency: Currency,
        /// The leg's currency.
        currency: Currency,
    },
    /// The transfer would break the account's balance constraint.
    #[error("account {account} has insufficient funds")]
    InsufficientFunds {
        /// The account.
        account: AccountId,
    },
    /// A running total would overflow.
    #[error("a balance of account {account} would overflow")]
    BalanceOverflow {
        /// The account.
        account: AccountId,
    },
    /// Post or void of a transfer that is not pending.
    #[error("transfer {transfer} is {state:?}, not pending")]
    NotPending {
        /// The transfer.
        transfer: TransferId,
        /// Its state.
        state: TransferState,
    },
    /// Post of a hold whose timeout has passed.
    #[error("hold {transfer} has expired")]
    HoldExpired {
        /// The transfer.
        transfer: TransferId,
    },
    /// Post of more than the hold reserved.
    #[error("cannot post {requested} of a hold of {held}")]
    PostExceedsHold {
        /// The transfer.
        transfer: TransferId,
        /// The held amount.
        held: u64,
        /// The amount asked for.
        requested: u64,
    },
    /// Reversal of a transfer that is not posted.
    #[error("transfer {transfer} is {state:?}; only posted transfers can be reversed")]
    NotPosted {
        /// The transfer.
        transfer: TransferId,
        /// Its state.
        state: TransferState,
    },
    /// Second reversal of a transfer.
    #[error("transfer {transfer} was already reversed by {reversed_by}")]
    AlreadyReversed {
        /// The transfer.
        transfer: TransferId,
        /// The reversal.
        reversed_by: TransferId,
    },
    /// Another account of the tenant has this external reference.
    #[error("external reference {external_ref:?} is taken")]
    ExternalRefTaken {
        /// The reference.
        external_ref: String,
    },
    /// A status change that the account's status does not allow.
    #[error("cannot {action:?} an account that is {status:?}")]
    InvalidTransition {
        /// The account.
        account: AccountId,
        /// Its status.
        status: AccountStatus,
        /// The change asked for.
        action: StatusAction,
    },
    /// Close of an account with a balance or a pending hold.
    #[error("account {account} still has a balance or pending holds")]
    AccountNotEmpty {
        /// The account.
        account: AccountId,
    },
    /// A batch is empty or too large.
    #[error("a batch holds 1 to {max} transfers")]
    BatchSize {
        /// Most transfers.
        max: usize,
    },
    /// The request needs more items than one storage transaction can hold.
    #[error("the request needs {items} store items; one transaction holds at most {max}")]
    TooLarge {
        /// Items needed.
        items: usize,
        /// Items allowed.
        max: usize,
    },
    // Variants are stored by position (postcard): new ones go at the end.
    /// A transfer names a card the tenant does not hold (never tokenized, or deleted).
    #[error("card {card} does not exist")]
    UnknownCard {
        /// The card.
        card: CardId,
    },
    /// A transfer names a card whose expiry has passed.
    #[error("card {card} has expired")]
    CardExpired {
        /// The card.
        card: CardId,
    },
}

/// One failed item of an atomic batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchFailure {
    /// Its position in the batch, from zero.
    pub index: usize,
    /// Why it failed.
    pub rejection: Rejection,
}

/// Everything a ledger call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ledger refused; nothing was written.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// An atomic batch had failing items; nothing was written.
    #[error("{} transfers of the batch failed; nothing was posted", .0.len())]
    BatchRejected(Vec<BatchFailure>),
    /// The resource does not exist for this tenant.
    #[error("not found")]
    NotFound,
    /// The `Idempotency-Key` was used before with a different request.
    #[error("the idempotency key was used for a different request")]
    IdempotencyKeyReused,
    /// A pagination cursor that this listing did not hand out.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The commit queue is full; retry later.
    #[error("the ledger is overloaded")]
    Overloaded,
    /// Concurrent writers kept winning; retry later.
    #[error("too much contention; retry")]
    Contention,
    /// The ledger is stopping.
    #[error("the ledger is shutting down")]
    ShuttingDown,
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vault could not seal or open a card: the key service failed or refused, or a
    /// sealed value did not decrypt (altered, or moved from another record or tenant).
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    /// A stored item broke an invariant when read back.
    #[error("invariant broken: {0}")]
    Corrupt(String),
    /// An audit log query that cannot be answered as asked (a proof over a tree that does not
    /// hold the record, a tree too large to prove from the store).
    #[error("{0}")]
    AuditQuery(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
