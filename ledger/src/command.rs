//! Commands the committer executes, and what they produce.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::Metadata;
use crate::account::{Account, NewAccount, StatusAction};
use crate::card::{Card, CardRecord};
use crate::codec;
use crate::error::{Error, Rejection};
use crate::ids::{AccountId, CardId, IdempotencyKey, TenantId, TransferId};
use crate::layout;
use crate::limits::ENTRY_PAGE_LEN_MAX;
use crate::money::Amount;
use crate::store::{Item, Key, KeyHasher};
use crate::time::Timestamp;
use crate::transfer::{Leg, NewTransfer, Transfer, TransferV1};
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
    /// Stores a tokenized card, sealed before it reached the committer.
    CreateCard {
        /// A keyed digest of the request (number, expiry, name: `Ledger::tokenize_card`), which
        /// is the op's fingerprint: the record itself is sealed under a fresh nonce each time,
        /// so a retry of the same request would otherwise look like another request.
        request: [u8; 32],
        record: Box<CardRecord>,
    },
    /// Destroys a card's sealed number.
    DeleteCard {
        card: CardId,
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
                // The card, and the tenant's row in the registry when it is new.
                Op::CreateCard { .. } => 2,
                Op::DeleteCard { .. } => 1,
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
        match self {
            Op::CreateCard { request, .. } => {
                hasher.update(b"create-card\0");
                hasher.update(request);
            }
            _ => hasher.update(crate::codec::encode(self)),
        }
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
    // Variants are stored by position (postcard): new ones go at the end.
    /// A card was tokenized or deleted (its shown part only; never the number).
    Card(Card),
}

/// An idempotency record as builds before cards stored it (format 1): transfers without an
/// instrument, and no card outcome.
#[derive(Deserialize)]
struct IdempotencyRecordV1 {
    fingerprint: [u8; 32],
    outcome: OutcomeV1,
    at: Timestamp,
}

#[derive(Deserialize)]
enum OutcomeV1 {
    Account(Account),
    Transfer(TransferV1),
    Batch(Vec<Result<TransferV1, Rejection>>),
    Nothing,
}

impl From<IdempotencyRecordV1> for IdempotencyRecord {
    fn from(r: IdempotencyRecordV1) -> IdempotencyRecord {
        let outcome = match r.outcome {
            OutcomeV1::Account(a) => Outcome::Account(a),
            OutcomeV1::Transfer(t) => Outcome::Transfer(t.into()),
            OutcomeV1::Batch(results) => {
                Outcome::Batch(results.into_iter().map(|r| r.map(Transfer::from)).collect())
            }
            OutcomeV1::Nothing => Outcome::Nothing,
        };
        IdempotencyRecord {
            fingerprint: r.fingerprint,
            outcome,
            at: r.at,
        }
    }
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

/// How the record of a batch is stored when its transfers are in the packs its transaction
/// writes, as the batch made them: their ids instead of the transfers, which would repeat what
/// the packs hold (a pack keeps a transfer as created; a later change goes to the transfer's own
/// item). A replay reads the packs back ([`BatchRecord::transfers`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BatchRecord {
    pub fingerprint: [u8; 32],
    pub results: Vec<Result<TransferId, Rejection>>,
    pub at: Timestamp,
}

impl BatchRecord {
    /// The pack keys a replay reads.
    pub fn pack_keys(&self, tenant: &TenantId) -> Vec<Key> {
        self.results
            .iter()
            .flatten()
            .map(|id| layout::transfer_pack(tenant, id))
            .collect()
    }
}

/// The stored idempotency record in `item`, a batch's read back from the packs `pack` finds by
/// key.
pub(crate) fn decode_record<'a>(
    item: &Item,
    tenant: &TenantId,
    pack: impl Fn(&Key) -> Option<&'a Item>,
) -> Result<IdempotencyRecord, Error> {
    match item.body.first() {
        Some(&codec::FORMAT_BATCH_RECORD_V1) => {}
        Some(&codec::FORMAT_POSTCARD_V1) => {
            return codec::decode::<IdempotencyRecordV1>(item).map(IdempotencyRecord::from);
        }
        _ => return codec::decode_as(codec::FORMAT_RECORD_V2, item),
    }
    let record: BatchRecord = codec::decode_as(codec::FORMAT_BATCH_RECORD_V1, item)?;
    let mut results = Vec::with_capacity(record.results.len());
    for result in record.results {
        results.push(match result {
            Err(rejection) => Err(rejection),
            Ok(id) => {
                let key = layout::transfer_pack(tenant, &id);
                let held = pack(&key).ok_or_else(|| {
                    Error::Corrupt(format!(
                        "record {:?} names {id}, whose pack is missing",
                        item.key
                    ))
                })?;
                let transfer = transfer_pack::expand(held)?
                    .into_iter()
                    .find(|t| t.id == id)
                    .ok_or_else(|| {
                        Error::Corrupt(format!("record {:?} names {id}, not in its pack", item.key))
                    })?;
                Ok(transfer)
            }
        });
    }
    Ok(IdempotencyRecord {
        fingerprint: record.fingerprint,
        outcome: Outcome::Batch(results),
        at: record.at,
    })
}

/// The body of `record`: a batch's names its transfers when `in_pack` says the packs hold each
/// of them as the batch made it; every other record is stored whole.
pub(crate) fn encode_record(
    record: &IdempotencyRecord,
    in_pack: impl Fn(&Transfer) -> bool,
) -> Vec<u8> {
    if let Outcome::Batch(results) = &record.outcome
        && results.iter().flatten().all(in_pack)
    {
        let compact = BatchRecord {
            fingerprint: record.fingerprint,
            results: results
                .iter()
                .map(|r| r.as_ref().map(|t| t.id).map_err(Clone::clone))
                .collect(),
            at: record.at,
        };
        return codec::encode_as(codec::FORMAT_BATCH_RECORD_V1, &compact);
    }
    codec::encode_as(codec::FORMAT_RECORD_V2, record)
}

/// A command on its way to the committer.
#[derive(Debug)]
pub(crate) struct Command {
    pub tenant: TenantId,
    pub key: Option<IdempotencyKey>,
    pub op: Op,
    /// The request's audit context, if it came from one (`audit_log::scope`).
    pub scope: Option<crate::audit_log::AuditScope>,
    /// Its record's known part, encoded on the request's task (`audit_log::prepare`); `None`
    /// with the audit log off.
    pub prepared: Option<Box<audit::PreparedRecord>>,
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
    /// Audit records of the batch: how many, an upper bound on their bytes, and on the largest.
    audit_records: usize,
    audit_bytes: usize,
    audit_largest: usize,
}

/// The audit items a transaction of one command writes at most: its block, and its stream's
/// registry row in a stream's first transaction.
pub(crate) const AUDIT_ITEMS_ALONE: usize = 2;

/// What one command adds to an [`ItemBudget`].
pub(crate) struct ItemCost<'a> {
    others: usize,
    /// `None` for an audit append, which writes no ledger item.
    tenant: Option<&'a TenantId>,
    /// An upper bound on the bytes of its audit record; zero with the audit log off.
    audit_bytes: usize,
    /// The tenant's pack after the command's transfers.
    fill: PackFill,
    new_accounts: HashSet<AccountId, KeyHasher>,
    legs: usize,
}

impl ItemBudget {
    fn bound(&self, others: usize, accounts: usize, legs: usize, audit_bytes: usize) -> usize {
        let pages_beyond_one = (self.legs + legs) / ENTRY_PAGE_LEN_MAX;
        let (records, bytes, largest) = if audit_bytes > 0 {
            (
                self.audit_records + 1,
                self.audit_bytes + audit_bytes,
                self.audit_largest.max(audit_bytes),
            )
        } else {
            (self.audit_records, self.audit_bytes, self.audit_largest)
        };
        // The blocks of the records, and the stream's registry row in its first batch.
        let audit = match records {
            0 => 0,
            _ => crate::audit_log::block::blocks_needed(bytes, records, largest) + 1,
        };
        (self.others + others) + 2 * (self.account_count + accounts) + pages_beyond_one + audit
    }

    /// What an audit append adds: its record.
    pub fn cost_append(draft: &audit::Draft) -> ItemCost<'static> {
        ItemCost {
            others: 0,
            tenant: None,
            audit_bytes: audit::record::record_bytes_max(draft.resources.len() + 1),
            fill: PackFill::default(),
            new_accounts: HashSet::default(),
            legs: 0,
        }
    }

    /// What `command` would add, on a store with transactions of at most `store_max` items,
    /// with its audit record when `audit`.
    pub fn cost<'a>(&self, command: &'a Command, store_max: usize, audit: bool) -> ItemCost<'a> {
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
        let audit_bytes = if audit {
            audit::record::record_bytes_max(crate::audit_log::resources_max(&command.op))
        } else {
            0
        };
        // A transfer was written with its own audit block and room for a registry row, so a
        // reversal of it needs that much less than the limit for the ledger's items.
        let ledger_max = if audit {
            store_max.saturating_sub(AUDIT_ITEMS_ALONE)
        } else {
            store_max
        };
        ItemCost {
            others: command.op.items_besides_legs(ledger_max) + packs,
            tenant: Some(&command.tenant),
            audit_bytes,
            fill,
            new_accounts,
            legs,
        }
    }

    /// The bound on the items of the batch with `cost` added.
    pub fn with(&self, cost: &ItemCost<'_>) -> usize {
        self.bound(
            cost.others,
            cost.new_accounts.len(),
            cost.legs,
            cost.audit_bytes,
        )
    }

    /// Adds a command's cost.
    pub fn add(&mut self, cost: ItemCost<'_>) {
        if cost.audit_bytes > 0 {
            self.audit_records += 1;
            self.audit_bytes += cost.audit_bytes;
            self.audit_largest = self.audit_largest.max(cost.audit_bytes);
        }
        let Some(tenant) = cost.tenant else {
            return;
        };
        self.others += cost.others;
        self.packs.insert(tenant.clone(), cost.fill);
        self.legs += cost.legs;
        self.account_count += cost.new_accounts.len();
        self.accounts
            .entry(tenant.clone())
            .or_default()
            .extend(cost.new_accounts);
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use crate::account::Side;
    use crate::ids::IdGen;
    use crate::money::{Amount, Currency};
    use crate::transfer::TransferState;

    fn transfer(ids: &IdGen, id: TransferId) -> Transfer {
        let at = Timestamp::from_micros(5);
        let usd = Currency::from_code("USD").expect("USD");
        let leg = |side| Leg {
            account: ids.account(at),
            side,
            amount: Amount::new(7).expect("amount"),
            currency: usd,
        };
        Transfer {
            id,
            legs: vec![leg(Side::Debit), leg(Side::Credit)],
            description: None,
            metadata: Metadata::default(),
            state: TransferState::Posted,
            hold: None,
            reverses: None,
            reversed_by: None,
            created_at: at,
            updated_at: at,
            instrument: None,
        }
    }

    #[test]
    fn a_batch_record_reads_its_transfers_from_their_pack_and_nothing_else() {
        let ids = IdGen::new();
        let tenant = TenantId::new("acme").expect("tenant");
        let first = ids.transfer(Timestamp::from_micros(5));
        let made: Vec<Transfer> = (0..3)
            .map(|i| transfer(&ids, TransferId::in_pack(first, i)))
            .collect();
        let refused = Rejection::UnknownAccount {
            account: ids.account(Timestamp::from_micros(5)),
        };
        let record = IdempotencyRecord {
            fingerprint: [7; 32],
            outcome: Outcome::Batch(vec![Ok(made[0].clone()), Err(refused), Ok(made[2].clone())]),
            at: Timestamp::from_micros(9),
        };
        let item = |key: Key, body: Vec<u8>| Item {
            key,
            version: 1,
            body,
        };
        let key = layout::idempotency(&tenant, &IdempotencyKey::new("k").expect("key"));
        let stored = item(key.clone(), encode_record(&record, |_| true));
        assert_eq!(stored.body[0], codec::FORMAT_BATCH_RECORD_V1);
        let pack_key = layout::transfer_pack(&tenant, &first);
        let pack = item(pack_key.clone(), transfer_pack::encode_pack(&made));
        let found = |k: &Key| (k == &pack_key).then_some(&pack);
        assert_eq!(
            decode_record(&stored, &tenant, found).expect("read"),
            record
        );
        // Without its pack, or with a pack that lacks a transfer: corrupt, not a guess.
        assert!(matches!(
            decode_record(&stored, &tenant, |_| None),
            Err(Error::Corrupt(_))
        ));
        let short = item(pack_key.clone(), transfer_pack::encode_pack(&made[..2]));
        let found = |k: &Key| (k == &pack_key).then_some(&short);
        assert!(matches!(
            decode_record(&stored, &tenant, found),
            Err(Error::Corrupt(_))
        ));
        // A transfer the packs do not hold as the batch made it: the record is stored whole.
        let whole = item(key, encode_record(&record, |t| t.id != made[2].id));
        assert_eq!(whole.body[0], codec::FORMAT_RECORD_V2);
        assert_eq!(
            decode_record(&whole, &tenant, |_| None).expect("read"),
            record
        );
    }
}
