//! Commands the committer executes, and what they produce.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::Metadata;
use crate::account::{Account, NewAccount, StatusAction};
use crate::error::Rejection;
use crate::ids::{AccountId, IdempotencyKey, TenantId, TransferId};
use crate::layout;
use crate::money::Amount;
use crate::store::Key;
use crate::time::Timestamp;
use crate::transfer::{NewTransfer, Transfer};

/// How a batch treats a failing transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// All transfers post or none does.
    Atomic,
    /// Each transfer posts or fails on its own.
    Independent,
}

/// A state change, as the committer sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Op {
    CreateAccount(NewAccount),
    SetStatus {
        account: AccountId,
        action: StatusAction,
    },
    Transfer(NewTransfer),
    Batch {
        mode: BatchMode,
        transfers: Vec<NewTransfer>,
    },
    Post {
        transfer: TransferId,
        amount: Option<Amount>,
    },
    Void {
        transfer: TransferId,
    },
    Reverse {
        transfer: TransferId,
        description: Option<String>,
        metadata: Metadata,
    },
    /// The ledger's own void of an expired hold; carries no idempotency key.
    ExpireHold {
        transfer: TransferId,
    },
}

impl Op {
    /// An upper bound on the store items the op writes, so that a batch stays within the
    /// store's transaction limit. Account heads count once per leg although a batch merges them.
    pub(crate) fn items_max(&self) -> usize {
        const IDEMPOTENCY: usize = 1;
        // Head and entry per leg, the transfer, its hold-expiry row.
        let transfer = |t: &NewTransfer| 2 * t.legs().len() + 2;
        IDEMPOTENCY
            + match self {
                // Head, list row, external reference, tenant registry.
                Op::CreateAccount(_) => 4,
                Op::SetStatus { .. } => 1,
                Op::Transfer(t) => transfer(t),
                Op::Batch { transfers, .. } => transfers.iter().map(transfer).sum(),
                // Two heads, two entries, the transfer, its expiry row.
                Op::Post { .. } | Op::Void { .. } | Op::ExpireHold { .. } => 6,
                // Up to LEGS_MAX heads and entries, the new transfer and the original.
                Op::Reverse { .. } => 2 * crate::limits::LEGS_MAX + 2,
            }
    }

    /// [`Op::items_max`] for a store whose transactions hold at most `store_max` items. A
    /// reversal writes as many items as the transfer it reverses did (a head and an entry per
    /// leg, the new transfer and the original, where the original wrote its hold-expiry row),
    /// and that transfer was written within the same limit, so its bound is the limit at most.
    pub(crate) fn items_max_within(&self, store_max: usize) -> usize {
        match self {
            Op::Reverse { .. } => self.items_max().min(store_max),
            _ => self.items_max(),
        }
    }

    /// A digest of the op: the same key with another op is refused. SHA-256 over a domain
    /// label and the op's binary encoding.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"strongroom/op/v1\0");
        hasher.update(crate::codec::encode(self));
        hasher.finalize().into()
    }
}

/// What a command produced. Stored with its idempotency key, so that a replay returns it as it
/// was, whatever happened to the records since.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// An account was created or changed.
    Account(Account),
    /// A transfer was created or changed.
    Transfer(Transfer),
    /// A batch ran: one result per transfer, in order.
    Batch(Vec<Result<Transfer, Rejection>>),
    /// The command had nothing to do (the ledger's own hold expiry found the hold resolved).
    Nothing,
}

/// A command's result, and whether it was replayed from an earlier request with the same key.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed<T> {
    /// The result.
    pub value: T,
    /// True when an earlier request with the same `Idempotency-Key` produced it.
    pub replayed: bool,
}

/// The stored record of an idempotency key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct IdempotencyRecord {
    pub fingerprint: [u8; 32],
    pub outcome: Outcome,
    pub at: Timestamp,
}

/// A command on its way to the committer.
#[derive(Debug)]
pub(crate) struct Command {
    pub tenant: TenantId,
    pub key: Option<IdempotencyKey>,
    pub op: Op,
}

impl Command {
    /// The key of its idempotency record.
    pub fn idempotency_key(&self) -> Option<Key> {
        self.key
            .as_ref()
            .map(|k| layout::idempotency(&self.tenant, k))
    }
}
