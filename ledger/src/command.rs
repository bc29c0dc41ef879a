//! Commands the committer executes, and what they produce.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::Metadata;
use crate::account::{Account, NewAccount, StatusAction};
use crate::error::Rejection;
use crate::ids::{AccountId, IdempotencyKey, TenantId, TransferId};
use crate::layout;
use crate::limits::ENTRY_PAGE_LEN_MAX;
use crate::money::Amount;
use crate::store::{Key, KeyHasher};
use crate::time::Timestamp;
use crate::transfer::{Leg, NewTransfer, Transfer};
use crate::transfer_pack::{self, PackFill};

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
    /// An upper bound on the store items the op writes apart from account heads and entry
    /// pages of the accounts its legs name, and the packs of the transfers it creates, which
    /// [`ItemBudget`] counts once per batch. For ops
    /// whose accounts are known only once their transfer is read (post, void, expiry, reversal),
    /// their heads and pages are in here. `store_max` is the store's transaction limit: a
    /// reversal writes as many items as the transfer it reverses did (a head and an entry page
    /// per account, the new transfer and the original), and that transfer was written within
    /// the same limit, so its bound is the limit at most.
    fn items_besides_legs(&self, store_max: usize) -> usize {
        const IDEMPOTENCY: usize = 1;
        // For a hold, its hold-expiry row (the transfer goes in a pack).
        let transfer = |t: &NewTransfer| usize::from(t.hold_timeout_s.is_some());
        let items = IDEMPOTENCY
            + match self {
                // Head, list row, external reference, tenant registry.
                Op::CreateAccount(_) => 4,
                Op::SetStatus { .. } => 1,
                Op::Transfer(t) => transfer(t),
                Op::Batch { transfers, .. } => transfers.iter().map(transfer).sum(),
                // Two heads, two entry pages, the transfer's own item, its expiry row.
                Op::Post { .. } | Op::Void { .. } | Op::ExpireHold { .. } => 6,
                // Up to LEGS_MAX heads and entry pages, the new transfer's pack and the
                // original's own item.
                Op::Reverse { .. } => 2 * crate::limits::LEGS_MAX + 2,
            };
        match self {
            Op::Reverse { .. } => items.min(store_max),
            _ => items,
        }
    }

    /// The legs whose accounts the op writes (head and entries), where the op names them.
    fn legs(&self) -> impl Iterator<Item = &Leg> {
        self.new_transfers().flat_map(|t| t.legs().iter())
    }

    /// The transfers the op creates from a request (not a reversal's, made from its original).
    fn new_transfers(&self) -> impl Iterator<Item = &NewTransfer> {
        let (one, many): (Option<&NewTransfer>, &[NewTransfer]) = match self {
            Op::Transfer(t) => (Some(t), &[]),
            Op::Batch { transfers, .. } => (None, transfers),
            _ => (None, &[]),
        };
        one.into_iter().chain(many)
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

/// An upper bound on the store items a batch of commands writes, kept as commands join it, so
/// that the batch stays within the store's transaction limit. The planner writes an account's
/// head once per batch, and its entries in pages of up to [`ENTRY_PAGE_LEN_MAX`], so each
/// account the batch's legs name counts two items (head and page) however many legs name it,
/// plus a page for every [`ENTRY_PAGE_LEN_MAX`] legs. New transfers count by the packs they
/// fill (`transfer_pack`); everything else counts per command.
#[derive(Debug, Default)]
pub(crate) struct ItemBudget {
    others: usize,
    accounts: HashMap<TenantId, HashSet<AccountId, KeyHasher>>,
    account_count: usize,
    legs: usize,
    /// Each tenant's transfer pack as the planner will fill it (the same rule, in the same
    /// order: a command the planner refuses or replays only leaves packs emptier).
    packs: HashMap<TenantId, PackFill>,
}

/// What one command adds to an [`ItemBudget`].
pub(crate) struct ItemCost<'a> {
    others: usize,
    tenant: &'a TenantId,
    /// The tenant's pack after the command's transfers.
    fill: PackFill,
    new_accounts: HashSet<AccountId, KeyHasher>,
    legs: usize,
}

impl ItemBudget {
    fn bound(&self, others: usize, accounts: usize, legs: usize) -> usize {
        let pages_beyond_one = (self.legs + legs) / ENTRY_PAGE_LEN_MAX;
        (self.others + others) + 2 * (self.account_count + accounts) + pages_beyond_one
    }

    /// What `command` would add, on a store with transactions of at most `store_max` items.
    pub fn cost<'a>(&self, command: &'a Command, store_max: usize) -> ItemCost<'a> {
        let known = self.accounts.get(&command.tenant);
        let mut new_accounts: HashSet<AccountId, KeyHasher> = HashSet::default();
        let mut legs = 0;
        for leg in command.op.legs() {
            legs += 1;
            if !known.is_some_and(|k| k.contains(&leg.account)) {
                new_accounts.insert(leg.account);
            }
        }
        let mut fill = self.packs.get(&command.tenant).copied().unwrap_or_default();
        let mut packs = 0;
        for new in command.op.new_transfers() {
            packs += usize::from(fill.add(transfer_pack::record_bytes(new)));
        }
        if matches!(command.op, Op::Reverse { .. }) {
            // Its pack is counted in its own bound; its size is unknown here, so the next
            // transfer is counted in a pack of its own.
            fill = PackFill::full();
        }
        ItemCost {
            others: command.op.items_besides_legs(store_max) + packs,
            tenant: &command.tenant,
            fill,
            new_accounts,
            legs,
        }
    }

    /// The bound on the items of the batch with `cost` added.
    pub fn with(&self, cost: &ItemCost<'_>) -> usize {
        self.bound(cost.others, cost.new_accounts.len(), cost.legs)
    }

    /// Adds a command's cost.
    pub fn add(&mut self, cost: ItemCost<'_>) {
        self.others += cost.others;
        self.packs.insert(cost.tenant.clone(), cost.fill);
        self.legs += cost.legs;
        self.account_count += cost.new_accounts.len();
        self.accounts
            .entry(cost.tenant.clone())
            .or_default()
            .extend(cost.new_accounts);
    }
}
