//! The pure core: decide what a batch of commands does, and return the writes.
//!
//! The committer reads every item a batch needs into a snapshot, then a [`Planner`] executes the
//! commands one by one against it, in memory, with no I/O. Each command runs in a staging
//! layer: if it is refused, its layer is dropped and the next command sees the state as if it
//! never ran (so an overdraft fails alone and its neighbours commit). What survives becomes one
//! list of conditional writes: account and transfer heads are conditioned on the version that
//! was read, new items on not existing yet. If another writer changed anything in between, the
//! store refuses the whole transaction and the committer plans again from a fresh read.
//!
//! Before handing the writes over, the planner checks the double-entry invariant once more on
//! the result: across every account it changed, posted and pending debits and credits moved by
//! the same amount in each currency. A batch that breaks it is not written.

use std::collections::{BTreeMap, HashSet};

use crate::account::Metadata;
use crate::account::{Account, AccountStatus, Balances, NewAccount, Side, StatusAction};
use crate::card::{Card, CardRecord};
use crate::codec::{FORMAT_BATCH_RECORD_V1, decode_as, encode};
use crate::command::{BatchMode, BatchRecord, Command, Committed, IdempotencyRecord, Op, Outcome};
use crate::error::{BatchFailure, Error, Rejection};
use crate::history;
use crate::ids::{AccountId, CardId, IdGen, TenantId, TransferId};
use crate::layout;
use crate::limits::BATCH_TRANSFERS_MAX;
use crate::money::{Amount, Currency};
use crate::store::{Condition, Item, Key, KeyHasher, WriteOp};
use crate::time::Timestamp;
use crate::transfer::{
    Entry, EntryKind, Hold, Leg, NewTransfer, Transfer, TransferState, VoidReason,
};
use crate::transfer_pack::{self, Home};

/// The items read for a batch: `None` for keys that do not exist.
pub(crate) type Snapshot = Map<Key, Option<Item>>;

/// Hash maps of the planner (see [`KeyHasher`]).
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, KeyHasher>;

/// Why a command did not complete.
enum Fail {
    Reject(Rejection),
    NotFound,
    Batch(Vec<BatchFailure>),
    /// A broken invariant or an unreadable item: the command fails (its layer is dropped like
    /// any refused command's), is logged as corruption, and the rest of the batch goes on.
    Fatal(String),
}

impl From<Rejection> for Fail {
    fn from(r: Rejection) -> Fail {
        Fail::Reject(r)
    }
}

/// A write not yet turned into a store op.
#[derive(Clone, Debug)]
enum Pending {
    /// Create; must not exist.
    Insert(Vec<u8>),
    /// Create or replace.
    Upsert(Vec<u8>),
    /// Remove.
    Delete,
    /// Replace an item read at `read_version` (a card's deletion), under that version.
    Replace { body: Vec<u8>, read_version: u64 },
}

/// A record read from the snapshot, and what the batch did to it.
#[derive(Debug)]
struct Slot<T> {
    value: Option<T>,
    read_version: Option<u64>,
    dirty: bool,
}

impl<T> Slot<T> {
    /// A record this batch creates: nothing was read, the write needs the key to be free.
    fn new_record() -> Slot<T> {
        Slot {
            value: None,
            read_version: None,
            dirty: false,
        }
    }
}

/// The changes of one command (or one item of a batch) until it completes.
#[derive(Default)]
struct Layer {
    accounts: Map<Key, Account>,
    transfers: Map<Key, Transfer>,
    writes: Vec<(Key, Pending)>,
    entries: Vec<(TenantId, Entry)>,
}

/// Executes commands against a snapshot; see the module docs.
pub(crate) struct Planner<'a> {
    now: Timestamp,
    ids: &'a IdGen,
    reads: &'a Snapshot,
    /// The store's write unit: how far an account head may keep its newest entries
    /// ([`history::settle`]).
    write_unit_bytes: usize,
    accounts: Map<Key, Slot<Account>>,
    /// The entries each account head kept, as read.
    tails: Map<Key, history::Tail<'a>>,
    /// Keyed by each transfer's own item (`layout::transfer_state`).
    transfers: Map<Key, Slot<Transfer>>,
    /// Transfers this batch creates (written in packs, not to their own items), by that key.
    created: Map<Key, TenantId>,
    /// Transfers an earlier build stored one per item, by that key: changed in place.
    singles: Map<Key, Key>,
    /// Each tenant's pack being filled: its base id, the next index, how full it is.
    packs: Map<TenantId, (TransferId, u32, transfer_pack::PackFill)>,
    idempotency: Map<Key, IdempotencyRecord>,
    /// The keys of the records this batch writes, with their tenants.
    records: Vec<(Key, TenantId)>,
    /// Balances of the account heads as read, for the final balance check.
    read_balances: Map<Key, Balances>,
    writes: BTreeMap<Key, Pending>,
    /// Entries made by completed commands, in order; written to heads and pages
    /// ([`history::settle`]).
    entries: Vec<(TenantId, Entry)>,
    layers: Vec<Layer>,
}

/// The keys a batch reads before planning: idempotency records, accounts, transfers, external
/// references. Accounts named only by a referenced transfer come in [`second_reads`].
pub(crate) fn first_reads(commands: &[Command]) -> Vec<Key> {
    let mut keys = Vec::new();
    for cmd in commands {
        keys.extend(cmd.idempotency_key());
        let t = &cmd.tenant;
        match &cmd.op {
            Op::CreateAccount(new) => keys.extend(
                new.external_ref
                    .as_deref()
                    .map(|r| layout::external_ref(t, r)),
            ),
            Op::SetStatus { account, .. } => keys.push(layout::account(t, account)),
            Op::Transfer(new) => {
                keys.extend(new.legs().iter().map(|l| layout::account(t, &l.account)));
                keys.extend(new.instrument().map(|c| layout::card(t, &c)));
            }
            Op::Batch { transfers, .. } => {
                keys.extend(
                    transfers
                        .iter()
                        .flat_map(|n| n.legs().iter().map(|l| layout::account(t, &l.account))),
                );
                keys.extend(
                    transfers
                        .iter()
                        .filter_map(|n| n.instrument().map(|c| layout::card(t, &c))),
                );
            }
            Op::CreateCard { .. } => keys.push(layout::tenant(t)),
            Op::DeleteCard { card } => keys.push(layout::card(t, card)),
            Op::Post { transfer, .. }
            | Op::Void { transfer }
            | Op::Reverse { transfer, .. }
            | Op::ExpireHold { transfer } => keys.extend(transfer_pack::keys(t, transfer)),
        }
    }
    dedup(keys)
}

/// The stored transfer `id` among the items read (see [`transfer_pack::find`]).
fn stored_transfer(
    reads: &Snapshot,
    tenant: &TenantId,
    id: &TransferId,
) -> Result<Option<(Transfer, Home)>, Error> {
    let [a, b, c] =
        transfer_pack::keys(tenant, id).map(|key| reads.get(&key).and_then(Option::as_ref));
    transfer_pack::find(id, [a, b, c])
}

/// The accounts of the transfers that post, void, reverse and expire commands name.
pub(crate) fn second_reads(commands: &[Command], reads: &Snapshot) -> Result<Vec<Key>, Error> {
    let mut keys = Vec::new();
    for cmd in commands {
        // A replayed batch's record names its transfers in their packs.
        let record = cmd
            .idempotency_key()
            .and_then(|k| reads.get(&k).cloned().flatten());
        if let Some(item) = record.filter(|i| i.body.first() == Some(&FORMAT_BATCH_RECORD_V1)) {
            let record: BatchRecord = decode_as(FORMAT_BATCH_RECORD_V1, &item)?;
            keys.extend(record.pack_keys(&cmd.tenant));
        }
        let transfer = match &cmd.op {
            Op::Post { transfer, .. }
            | Op::Void { transfer }
            | Op::Reverse { transfer, .. }
            | Op::ExpireHold { transfer } => transfer,
            _ => continue,
        };
        if let Some((t, _)) = stored_transfer(reads, &cmd.tenant, transfer)? {
            keys.extend(
                t.legs
                    .iter()
                    .map(|l| layout::account(&cmd.tenant, &l.account)),
            );
        }
    }
    Ok(dedup(
        keys.into_iter()
            .filter(|k| !reads.contains_key(k))
            .collect(),
    ))
}

fn dedup(keys: Vec<Key>) -> Vec<Key> {
    let first: Vec<bool> = {
        let mut seen: HashSet<&Key, KeyHasher> =
            HashSet::with_capacity_and_hasher(keys.len(), Default::default());
        keys.iter().map(|k| seen.insert(k)).collect()
    };
    keys.into_iter()
        .zip(first)
        .filter_map(|(key, first)| first.then_some(key))
        .collect()
}

impl<'a> Planner<'a> {
    /// A planner over a snapshot, at one instant.
    pub(crate) fn new(
        now: Timestamp,
        ids: &'a IdGen,
        reads: &'a Snapshot,
        write_unit_bytes: usize,
    ) -> Planner<'a> {
        Planner {
            now,
            ids,
            reads,
            write_unit_bytes,
            accounts: Map::default(),
            tails: Map::default(),
            transfers: Map::default(),
            created: Map::default(),
            singles: Map::default(),
            packs: Map::default(),
            idempotency: Map::default(),
            records: Vec::new(),
            read_balances: Map::default(),
            writes: BTreeMap::new(),
            entries: Vec::new(),
            layers: Vec::new(),
        }
    }

    /// Executes one command. Its effects join the batch only if it succeeds.
    pub(crate) fn execute(&mut self, cmd: &Command) -> Result<Committed<Outcome>, Error> {
        let idempotency = cmd.idempotency_key().map(|key| (key, cmd.op.fingerprint()));
        if let Some((key, fingerprint)) = &idempotency {
            match self.idempotency_record(&cmd.tenant, key) {
                Err(Fail::Fatal(why)) => return Err(corrupt(why)),
                Err(_) => {}
                Ok(Some(record)) if &record.fingerprint == fingerprint => {
                    return Ok(Committed {
                        value: record.outcome,
                        replayed: true,
                    });
                }
                Ok(Some(_)) => return Err(Error::IdempotencyKeyReused),
                Ok(None) => {}
            }
        }
        self.layers.push(Layer::default());
        let outcome = match self.run(&cmd.tenant, &cmd.op) {
            Ok(outcome) => outcome,
            Err(fail) => {
                self.layers.pop();
                return Err(match fail {
                    Fail::Reject(r) => Error::Rejected(r),
                    Fail::NotFound => Error::NotFound,
                    Fail::Batch(failures) => Error::BatchRejected(failures),
                    Fail::Fatal(why) => corrupt(why),
                });
            }
        };
        self.commit_layer();
        if let Some((key, fingerprint)) = idempotency {
            let record = IdempotencyRecord {
                fingerprint,
                outcome: outcome.clone(),
                at: self.now,
            };
            // Encoded with the other writes (`into_ops`), when the batch's packs are final.
            self.records.push((key.clone(), cmd.tenant.clone()));
            self.idempotency.insert(key, record);
        }
        Ok(Committed {
            value: outcome,
            replayed: false,
        })
    }

    /// The writes of everything that succeeded, after checking that they balance.
    pub(crate) fn into_ops(mut self) -> Result<Vec<WriteOp>, Error> {
        self.check_balanced()?;
        // Idempotency records: a batch's names its transfers when their packs, written in this
        // same transaction, hold them as the batch made them.
        for (key, tenant) in std::mem::take(&mut self.records) {
            let Some(record) = self.idempotency.get(&key) else {
                continue;
            };
            let in_pack = |t: &Transfer| {
                let own = layout::transfer_state(&tenant, &t.id);
                self.created.contains_key(&own)
                    && self
                        .transfers
                        .get(&own)
                        .and_then(|slot| slot.value.as_ref())
                        == Some(t)
            };
            let body = crate::command::encode_record(record, in_pack);
            merge(&mut self.writes, key, Pending::Insert(body));
        }
        let mut ops =
            Vec::with_capacity(self.writes.len() + self.accounts.len() + self.transfers.len());
        // `created`: the condition of an item the batch creates (it read no version).
        let head = |key: Key, value: Option<&[u8]>, read_version: Option<u64>, created| {
            value.map(|body| WriteOp::Put {
                item: Item {
                    key,
                    version: read_version.map_or(1, |v| v + 1),
                    body: body.to_vec(),
                },
                condition: read_version.map_or(created, Condition::Version),
            })
        };
        // Each account's new entries, in sequence order, by its head's key.
        let mut entries = self.entries;
        entries.sort_by(|(ta, a), (tb, b)| (ta, a.account, a.seq).cmp(&(tb, b.account, b.seq)));
        let mut runs: Map<Key, Vec<Entry>> = Map::default();
        let mut run: Vec<Entry> = Vec::new();
        let mut entries = entries.into_iter().peekable();
        while let Some((tenant, entry)) = entries.next() {
            let account = entry.account;
            run.push(entry);
            let same = |(t, e): &(TenantId, Entry)| *t == tenant && e.account == account;
            if !entries.peek().is_some_and(same) {
                runs.insert(layout::account(&tenant, &account), std::mem::take(&mut run));
            }
        }
        // An account's head, with its new entries kept in it or moved to pages; a page's key
        // holds a sequence number of the account, whose head this same transaction writes under
        // a version condition: that condition already rules out a second writer of the key, so
        // a page is written without a condition of its own, and the store does not look it up.
        for (key, slot) in self.accounts.into_iter().filter(|(_, s)| s.dirty) {
            let Some(account) = &slot.value else { continue };
            let new = runs.remove(&key).unwrap_or_default();
            let version = slot.read_version.map_or(1, |v| v + 1);
            let (body, pages) = history::settle(
                &key,
                account,
                version,
                self.tails.get(&key),
                &new,
                self.write_unit_bytes,
            )?;
            ops.push(WriteOp::Put {
                item: Item { key, version, body },
                condition: slot
                    .read_version
                    .map_or(Condition::NotExists, Condition::Version),
            });
            ops.extend(pages.into_iter().map(|(key, body)| WriteOp::Put {
                item: Item {
                    key,
                    version: 1,
                    body,
                },
                condition: Condition::None,
            }));
        }
        if let Some(key) = runs.keys().next() {
            return Err(corrupt(format!(
                "entries for {key:?}, whose head is not written"
            )));
        }
        // Transfers created here go in packs (`transfer_pack`), one per tenant and pack base.
        let mut packs: BTreeMap<Key, Vec<Transfer>> = BTreeMap::new();
        for (key, slot) in self.transfers.into_iter().filter(|(_, s)| s.dirty) {
            match (self.created.get(&key), slot.value) {
                (Some(tenant), Some(transfer)) => packs
                    .entry(layout::transfer_pack(tenant, &transfer.id))
                    .or_default()
                    .push(transfer),
                // A transfer changed after its batch: its own item, new (the first change) or
                // at the version read; an earlier build's single item in place.
                (None, value) => ops.extend(head(
                    self.singles.get(&key).cloned().unwrap_or(key),
                    value
                        .as_ref()
                        .map(transfer_pack::encode_transfer)
                        .as_deref(),
                    slot.read_version,
                    Condition::NotExists,
                )),
                (Some(_), None) => {}
            }
        }
        // A pack has a fresh base id, and its transfers' legs change account heads under version
        // conditions in this same transaction: those already rule out a second application, so
        // the store need not look the new key up first.
        for (key, mut transfers) in packs {
            transfers.sort_by_key(|t| t.id);
            ops.push(WriteOp::Put {
                item: Item {
                    key,
                    version: 1,
                    body: transfer_pack::encode_pack(&transfers),
                },
                condition: Condition::None,
            });
        }
        for (key, pending) in self.writes {
            ops.push(match pending {
                Pending::Insert(body) => WriteOp::Put {
                    item: Item {
                        key,
                        version: 1,
                        body,
                    },
                    condition: Condition::NotExists,
                },
                Pending::Upsert(body) => WriteOp::Put {
                    item: Item {
                        key,
                        version: 1,
                        body,
                    },
                    condition: Condition::None,
                },
                Pending::Delete => WriteOp::Delete {
                    key,
                    condition: Condition::None,
                },
                Pending::Replace { body, read_version } => WriteOp::Put {
                    item: Item {
                        key,
                        version: read_version + 1,
                        body,
                    },
                    condition: Condition::Version(read_version),
                },
            });
        }
        Ok(ops)
    }

    /// Per currency, the changes to all debit columns equal the changes to all credit columns.
    fn check_balanced(&self) -> Result<(), Error> {
        let mut net: BTreeMap<Currency, [i128; 2]> = BTreeMap::new();
        for (key, slot) in self.accounts.iter().filter(|(_, s)| s.dirty) {
            let Some(after) = &slot.value else { continue };
            let before = self.read_balances.get(key).copied().unwrap_or_default();
            let delta = |a: u128, b: u128| {
                i128::try_from(a).unwrap_or(i128::MAX) - i128::try_from(b).unwrap_or(i128::MAX)
            };
            let n = net.entry(after.currency).or_default();
            let b = after.balances;
            n[0] += delta(b.debits_posted, before.debits_posted)
                - delta(b.credits_posted, before.credits_posted);
            n[1] += delta(b.debits_pending, before.debits_pending)
                - delta(b.credits_pending, before.credits_pending);
        }
        match net.iter().find(|(_, n)| **n != [0, 0]) {
            Some((currency, n)) => Err(Error::Corrupt(format!(
                "batch does not balance in {currency}: posted {}, pending {}",
                n[0], n[1]
            ))),
            None => Ok(()),
        }
    }

    fn run(&mut self, tenant: &TenantId, op: &Op) -> Result<Outcome, Fail> {
        match op {
            Op::CreateAccount(new) => self.create_account(tenant, new).map(Outcome::Account),
            Op::SetStatus { account, action } => self
                .set_status(tenant, account, *action)
                .map(Outcome::Account),
            Op::Transfer(new) => self.new_transfer(tenant, new, None).map(Outcome::Transfer),
            Op::Batch { mode, transfers } => self.batch(tenant, *mode, transfers),
            Op::Post { transfer, amount } => {
                self.post(tenant, transfer, *amount).map(Outcome::Transfer)
            }
            Op::Void { transfer } => self
                .void(tenant, transfer, VoidReason::Requested)
                .map(Outcome::Transfer),
            Op::Reverse {
                transfer,
                description,
                metadata,
            } => self
                .reverse(tenant, transfer, description, metadata)
                .map(Outcome::Transfer),
            Op::ExpireHold { transfer } => self.expire(tenant, transfer),
            Op::CreateCard { record, .. } => self.create_card(tenant, record).map(Outcome::Card),
            Op::DeleteCard { card } => self.delete_card(tenant, card).map(Outcome::Card),
        }
    }

    // ---- cards --------------------------------------------------------------------------------

    fn create_card(&mut self, tenant: &TenantId, record: &CardRecord) -> Result<Card, Fail> {
        let key = layout::card(tenant, &record.card.id);
        // A fresh id (`Ledger::tokenize_card`); the write is conditioned on it being free.
        self.insert(key, encode(record));
        // The registry lists every tenant with data, so that `keys rewrap` finds their cards;
        // written only when missing, so that tokenizing does not rewrite one hot item.
        let registry = layout::tenant(tenant);
        if !self.exists(&registry)? {
            self.top()
                .writes
                .push((registry, Pending::Upsert(encode(tenant))));
        }
        Ok(record.card.clone())
    }

    fn delete_card(&mut self, tenant: &TenantId, id: &CardId) -> Result<Card, Fail> {
        let key = layout::card(tenant, id);
        let (mut record, read_version) = match self.card(tenant, id)? {
            Some((record, _)) if record.sealed.is_none() => return Err(Fail::NotFound),
            Some(found) => found,
            None => return Err(Fail::NotFound),
        };
        record.sealed = None;
        record.deleted_at = Some(self.now);
        let body = encode(&record);
        let pending = match read_version {
            Some(read_version) => Pending::Replace { body, read_version },
            None => Pending::Insert(body),
        };
        self.top().writes.push((key, pending));
        Ok(record.card)
    }

    /// A card as the batch sees it: staged by an earlier command of the batch, or as read
    /// (with the version it was read at).
    fn card(
        &self,
        tenant: &TenantId,
        id: &CardId,
    ) -> Result<Option<(CardRecord, Option<u64>)>, Fail> {
        let key = layout::card(tenant, id);
        let staged = self
            .layers
            .iter()
            .rev()
            .flat_map(|l| l.writes.iter().rev())
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p)
            .or_else(|| self.writes.get(&key));
        let decode_card = |body: &[u8]| {
            crate::codec::decode::<CardRecord>(&Item {
                key: key.clone(),
                version: 0,
                body: body.to_vec(),
            })
            .map_err(|e| Fail::Fatal(e.to_string()))
        };
        let found = match staged {
            Some(Pending::Delete) => return Ok(None),
            Some(Pending::Insert(body) | Pending::Upsert(body)) => (decode_card(body)?, None),
            Some(Pending::Replace { body, read_version }) => {
                (decode_card(body)?, Some(*read_version))
            }
            None => match self.read(&key)? {
                None => return Ok(None),
                Some(item) => (decode_card(&item.body)?, Some(item.version)),
            },
        };
        if found.0.card.id != *id {
            return Err(Fail::Fatal(format!(
                "item {key:?} holds card {}",
                found.0.card.id
            )));
        }
        Ok(Some(found))
    }

    /// A transfer's card: held by the tenant, not deleted, not expired.
    fn check_instrument(&self, tenant: &TenantId, card: &CardId) -> Result<(), Fail> {
        match self.card(tenant, card)? {
            Some((record, _)) if record.sealed.is_some() => {
                if record.card.expiry.expired_at(self.now) {
                    return Err(Rejection::CardExpired { card: *card }.into());
                }
                Ok(())
            }
            _ => Err(Rejection::UnknownCard { card: *card }.into()),
        }
    }

    // ---- commands -----------------------------------------------------------------------------

    fn create_account(&mut self, tenant: &TenantId, new: &NewAccount) -> Result<Account, Fail> {
        if let Some(external_ref) = &new.external_ref {
            let key = layout::external_ref(tenant, external_ref);
            if self.exists(&key)? {
                return Err(Rejection::ExternalRefTaken {
                    external_ref: external_ref.clone(),
                }
                .into());
            }
        }
        let account = Account {
            id: self.ids.account(self.now),
            tenant: tenant.clone(),
            currency: new.currency,
            normal_side: new.normal_side,
            constraint: new.constraint,
            status: AccountStatus::Open,
            name: new.name.clone(),
            external_ref: new.external_ref.clone(),
            metadata: new.metadata.clone(),
            balances: Balances::default(),
            entry_seq: 0,
            created_at: self.now,
            updated_at: self.now,
        };
        if let Some(external_ref) = &new.external_ref {
            self.insert(
                layout::external_ref(tenant, external_ref),
                encode(&account.id),
            );
        }
        self.insert(
            layout::account_list_item(tenant, &account.id),
            encode(&account.id),
        );
        self.top()
            .writes
            .push((layout::tenant(tenant), Pending::Upsert(encode(tenant))));
        let key = layout::account(tenant, &account.id);
        // A new id: nothing to read; the write is conditioned on the head not existing.
        self.accounts
            .entry(key.clone())
            .or_insert(Slot::new_record());
        self.top().accounts.insert(key, account.clone());
        Ok(account)
    }

    fn set_status(
        &mut self,
        tenant: &TenantId,
        id: &AccountId,
        action: StatusAction,
    ) -> Result<Account, Fail> {
        let mut account = match self.account(tenant, id) {
            Err(Fail::Reject(Rejection::UnknownAccount { .. })) => return Err(Fail::NotFound),
            other => other?,
        };
        let next = match (account.status, action) {
            (AccountStatus::Open, StatusAction::Freeze) => AccountStatus::Frozen,
            (AccountStatus::Frozen, StatusAction::Unfreeze) => AccountStatus::Open,
            (AccountStatus::Open | AccountStatus::Frozen, StatusAction::Close) => {
                if !is_empty(&account.balances) {
                    return Err(Rejection::AccountNotEmpty { account: *id }.into());
                }
                AccountStatus::Closed
            }
            (status, action) => {
                return Err(Rejection::InvalidTransition {
                    account: *id,
                    status,
                    action,
                }
                .into());
            }
        };
        account.status = next;
        account.updated_at = self.now.max(account.updated_at);
        self.put_account(tenant, account.clone());
        Ok(account)
    }

    fn batch(
        &mut self,
        tenant: &TenantId,
        mode: BatchMode,
        transfers: &[NewTransfer],
    ) -> Result<Outcome, Fail> {
        if transfers.is_empty() || transfers.len() > BATCH_TRANSFERS_MAX {
            return Err(Rejection::BatchSize {
                max: BATCH_TRANSFERS_MAX,
            }
            .into());
        }
        let mut results = Vec::with_capacity(transfers.len());
        let mut failures = Vec::new();
        for (index, new) in transfers.iter().enumerate() {
            self.layers.push(Layer::default());
            match self.new_transfer(tenant, new, None) {
                Ok(transfer) => {
                    self.commit_layer();
                    results.push(Ok(transfer));
                }
                Err(Fail::Reject(rejection)) => {
                    self.layers.pop();
                    failures.push(BatchFailure {
                        index,
                        rejection: rejection.clone(),
                    });
                    results.push(Err(rejection));
                }
                Err(other) => {
                    self.layers.pop();
                    return Err(other);
                }
            }
        }
        match mode {
            BatchMode::Atomic if !failures.is_empty() => Err(Fail::Batch(failures)),
            _ => Ok(Outcome::Batch(results)),
        }
    }

    /// Posts a new transfer or places a hold; `reverses` links a reversal to its original.
    fn new_transfer(
        &mut self,
        tenant: &TenantId,
        new: &NewTransfer,
        reverses: Option<TransferId>,
    ) -> Result<Transfer, Fail> {
        if let Some(card) = &new.instrument {
            self.check_instrument(tenant, card)?;
        }
        let mut accounts = Vec::with_capacity(new.legs().len());
        for leg in new.legs() {
            let account = self.account(tenant, &leg.account)?;
            check_open(&account)?;
            if account.currency != leg.currency {
                return Err(Rejection::CurrencyMismatch {
                    account: leg.account,
                    account_currency: account.currency,
                    currency: leg.currency,
                }
                .into());
            }
            accounts.push(account);
        }
        let id = self.new_transfer_id(tenant, new);
        let hold = new.hold_timeout_s.map(|s| Hold {
            expires_at: self.now.plus(std::time::Duration::from_secs(s)),
            posted_amount: None,
            void_reason: None,
            resolved_at: None,
        });
        for (leg, mut account) in new.legs().iter().zip(accounts) {
            let amount = leg.amount.minor();
            let (added, kind) = if hold.is_some() {
                (
                    account.balances.add_pending(leg.side, amount),
                    EntryKind::Held,
                )
            } else {
                (
                    account.balances.add_posted(leg.side, amount),
                    EntryKind::Posted,
                )
            };
            added.ok_or(Rejection::BalanceOverflow {
                account: account.id,
            })?;
            if !account.balances.satisfies(account.constraint) {
                return Err(Rejection::InsufficientFunds {
                    account: account.id,
                }
                .into());
            }
            self.entry(tenant, &mut account, id, kind, leg.side, amount, 0);
            self.put_account(tenant, account);
        }
        let transfer = Transfer {
            id,
            legs: new.legs().to_vec(),
            description: new.description.clone(),
            metadata: new.metadata.clone(),
            state: if hold.is_some() {
                TransferState::Pending
            } else {
                TransferState::Posted
            },
            hold,
            reverses,
            reversed_by: None,
            created_at: self.now,
            updated_at: self.now,
            instrument: new.instrument,
        };
        if let Some(hold) = &transfer.hold {
            self.insert(
                layout::hold_expiry(tenant, &id, hold.expires_at),
                encode(&id),
            );
        }
        let key = layout::transfer_state(tenant, &id);
        self.transfers
            .entry(key.clone())
            .or_insert(Slot::new_record());
        self.created.insert(key.clone(), tenant.clone());
        self.top().transfers.insert(key, transfer.clone());
        Ok(transfer)
    }

    /// The id of a transfer this batch creates for `tenant`: the next in the tenant's pack, or
    /// the first of a new pack when that one is full by count or bytes. An id a refused command
    /// took is not reused: its pack just has a gap.
    fn new_transfer_id(&mut self, tenant: &TenantId, new: &NewTransfer) -> TransferId {
        let bytes = transfer_pack::record_bytes(new);
        if let Some((base, next, fill)) = self.packs.get_mut(tenant)
            && !fill.add(bytes)
        {
            let id = TransferId::in_pack(*base, *next);
            *next += 1;
            return id;
        }
        let base = self.ids.transfer_pack(self.now);
        let mut fill = transfer_pack::PackFill::default();
        fill.add(bytes);
        self.packs.insert(tenant.clone(), (base, 1, fill));
        TransferId::in_pack(base, 0)
    }

    fn post(
        &mut self,
        tenant: &TenantId,
        id: &TransferId,
        amount: Option<Amount>,
    ) -> Result<Transfer, Fail> {
        let transfer = self.pending_transfer(tenant, id)?;
        let (held, expires_at) = match (transfer.legs.first(), &transfer.hold) {
            (Some(leg), Some(hold)) => (leg.amount, hold.expires_at),
            _ => return Err(Fail::Fatal(format!("pending transfer {id} without a hold"))),
        };
        if self.now >= expires_at {
            return Err(Rejection::HoldExpired { transfer: *id }.into());
        }
        let posted = amount.unwrap_or(held);
        if posted > held {
            return Err(Rejection::PostExceedsHold {
                transfer: *id,
                held: held.minor(),
                requested: posted.minor(),
            }
            .into());
        }
        self.resolve(tenant, transfer, Some(posted), None)
    }

    fn void(
        &mut self,
        tenant: &TenantId,
        id: &TransferId,
        reason: VoidReason,
    ) -> Result<Transfer, Fail> {
        let transfer = self.pending_transfer(tenant, id)?;
        self.resolve(tenant, transfer, None, Some(reason))
    }

    fn expire(&mut self, tenant: &TenantId, id: &TransferId) -> Result<Outcome, Fail> {
        match self.transfer(tenant, id)? {
            Some(t) if t.state == TransferState::Pending => {
                let due = t.hold.as_ref().is_some_and(|h| h.expires_at <= self.now);
                if !due {
                    return Ok(Outcome::Nothing);
                }
                self.void(tenant, id, VoidReason::Expired)
                    .map(Outcome::Transfer)
            }
            // Resolved since the sweeper looked (its expiry row went with it), or never existed.
            _ => Ok(Outcome::Nothing),
        }
    }

    /// Posts (`posted` set) or voids a hold: releases the pending amount on every leg.
    fn resolve(
        &mut self,
        tenant: &TenantId,
        mut transfer: Transfer,
        posted: Option<Amount>,
        void_reason: Option<VoidReason>,
    ) -> Result<Transfer, Fail> {
        for leg in &transfer.legs {
            let mut account = self.account(tenant, &leg.account).map_err(|f| match f {
                Fail::Reject(Rejection::UnknownAccount { account }) => Fail::Fatal(format!(
                    "transfer {} names missing account {account}",
                    transfer.id
                )),
                other => other,
            })?;
            let held = leg.amount.minor();
            account
                .balances
                .release_pending(leg.side, held)
                .ok_or_else(|| {
                    Fail::Fatal(format!(
                        "account {} holds less than transfer {}",
                        account.id, transfer.id
                    ))
                })?;
            let kind = match posted {
                Some(amount) => {
                    // Posting moves money: the account must take postings. Voiding only releases.
                    check_open(&account)?;
                    account
                        .balances
                        .add_posted(leg.side, amount.minor())
                        .ok_or(Rejection::BalanceOverflow {
                            account: account.id,
                        })?;
                    if !account.balances.satisfies(account.constraint) {
                        return Err(Rejection::InsufficientFunds {
                            account: account.id,
                        }
                        .into());
                    }
                    EntryKind::HoldPosted
                }
                None => EntryKind::HoldVoided,
            };
            let amount = posted.map_or(0, Amount::minor);
            self.entry(
                tenant,
                &mut account,
                transfer.id,
                kind,
                leg.side,
                amount,
                held,
            );
            self.put_account(tenant, account);
        }
        let Some(hold) = transfer.hold.as_mut() else {
            return Err(Fail::Fatal(format!(
                "pending transfer {} without a hold",
                transfer.id
            )));
        };
        let expiry = layout::hold_expiry(tenant, &transfer.id, hold.expires_at);
        hold.posted_amount = posted;
        hold.void_reason = void_reason;
        hold.resolved_at = Some(self.now);
        transfer.state = if posted.is_some() {
            TransferState::Posted
        } else {
            TransferState::Voided
        };
        transfer.updated_at = self.now.max(transfer.updated_at);
        self.top().writes.push((expiry, Pending::Delete));
        self.put_transfer(tenant, transfer.clone());
        Ok(transfer)
    }

    fn reverse(
        &mut self,
        tenant: &TenantId,
        id: &TransferId,
        description: &Option<String>,
        metadata: &Metadata,
    ) -> Result<Transfer, Fail> {
        let mut original = self.transfer(tenant, id)?.ok_or(Fail::NotFound)?;
        if original.state != TransferState::Posted {
            return Err(Rejection::NotPosted {
                transfer: *id,
                state: original.state,
            }
            .into());
        }
        if let Some(reversed_by) = original.reversed_by {
            return Err(Rejection::AlreadyReversed {
                transfer: *id,
                reversed_by,
            }
            .into());
        }
        let legs = original
            .legs
            .iter()
            .filter_map(|leg| {
                original.moved(leg).map(|amount| Leg {
                    account: leg.account,
                    side: leg.side.opposite(),
                    amount,
                    currency: leg.currency,
                })
            })
            .collect();
        let legs = crate::transfer::BalancedLegs::new(legs)
            .map_err(|r| Fail::Fatal(format!("reversal of {id} does not balance: {r}")))?;
        let description = description
            .clone()
            .or_else(|| Some(format!("reversal of {id}")));
        let new = NewTransfer::new(legs, description, metadata.clone(), None)?;
        let reversal = self.new_transfer(tenant, &new, Some(*id))?;
        original.reversed_by = Some(reversal.id);
        original.updated_at = self.now.max(original.updated_at);
        self.put_transfer(tenant, original);
        Ok(reversal)
    }

    // ---- state access -------------------------------------------------------------------------

    fn pending_transfer(&mut self, tenant: &TenantId, id: &TransferId) -> Result<Transfer, Fail> {
        let transfer = self.transfer(tenant, id)?.ok_or(Fail::NotFound)?;
        if transfer.state != TransferState::Pending {
            return Err(Rejection::NotPending {
                transfer: *id,
                state: transfer.state,
            }
            .into());
        }
        Ok(transfer)
    }

    fn read(&self, key: &Key) -> Result<Option<&'a Item>, Fail> {
        match self.reads.get(key) {
            Some(item) => Ok(item.as_ref()),
            None => Err(Fail::Fatal(format!(
                "planner needs {key:?}, which was not read"
            ))),
        }
    }

    fn account(&mut self, tenant: &TenantId, id: &AccountId) -> Result<Account, Fail> {
        let key = layout::account(tenant, id);
        for layer in self.layers.iter().rev() {
            if let Some(account) = layer.accounts.get(&key) {
                return Ok(account.clone());
            }
        }
        if !self.accounts.contains_key(&key) {
            let item = self.read(&key)?;
            let value = match item {
                Some(item) => {
                    let (account, tail) =
                        history::decode_head(item).map_err(|e| Fail::Fatal(e.to_string()))?;
                    if account.id != *id || account.tenant != *tenant {
                        return Err(Fail::Fatal(format!(
                            "item {key:?} holds account {}",
                            account.id
                        )));
                    }
                    if tail.len() > 0 {
                        self.tails.insert(key.clone(), tail);
                    }
                    self.read_balances.insert(key.clone(), account.balances);
                    Some(account)
                }
                None => None,
            };
            let slot = Slot {
                value,
                read_version: item.map(|i| i.version),
                dirty: false,
            };
            self.accounts.insert(key.clone(), slot);
        }
        match self.accounts.get(&key).and_then(|s| s.value.clone()) {
            Some(account) => Ok(account),
            None => Err(Rejection::UnknownAccount { account: *id }.into()),
        }
    }

    fn transfer(&mut self, tenant: &TenantId, id: &TransferId) -> Result<Option<Transfer>, Fail> {
        let key = layout::transfer_state(tenant, id);
        for layer in self.layers.iter().rev() {
            if let Some(transfer) = layer.transfers.get(&key) {
                return Ok(Some(transfer.clone()));
            }
        }
        if !self.transfers.contains_key(&key) {
            let [a, b, c] = transfer_pack::keys(tenant, id);
            let items = [self.read(&a)?, self.read(&b)?, self.read(&c)?];
            let found = transfer_pack::find(id, items).map_err(|e| Fail::Fatal(e.to_string()))?;
            let (value, read_version) = match found {
                Some((transfer, Home::Own(version))) => (Some(transfer), Some(version)),
                Some((transfer, Home::Pack)) => (Some(transfer), None),
                Some((transfer, Home::Single(version))) => {
                    self.singles.insert(key.clone(), c);
                    (Some(transfer), Some(version))
                }
                None => (None, None),
            };
            let slot = Slot {
                value,
                read_version,
                dirty: false,
            };
            self.transfers.insert(key.clone(), slot);
        }
        Ok(self.transfers.get(&key).and_then(|s| s.value.clone()))
    }

    fn idempotency_record(
        &mut self,
        tenant: &TenantId,
        key: &Key,
    ) -> Result<Option<IdempotencyRecord>, Fail> {
        if let Some(record) = self.idempotency.get(key) {
            return Ok(Some(record.clone()));
        }
        match self.read(key)? {
            Some(item) => {
                let reads = self.reads;
                let pack = |k: &Key| reads.get(k).and_then(Option::as_ref);
                crate::command::decode_record(item, tenant, pack)
                    .map(Some)
                    .map_err(|e| Fail::Fatal(e.to_string()))
            }
            None => Ok(None),
        }
    }

    /// Whether an item exists, counting this batch's writes.
    fn exists(&self, key: &Key) -> Result<bool, Fail> {
        let staged = self
            .layers
            .iter()
            .rev()
            .flat_map(|l| l.writes.iter().rev())
            .find(|(k, _)| k == key)
            .map(|(_, p)| p)
            .or_else(|| self.writes.get(key));
        match staged {
            Some(Pending::Delete) => Ok(false),
            Some(_) => Ok(true),
            None => Ok(self.read(key)?.is_some()),
        }
    }

    fn top(&mut self) -> &mut Layer {
        if self.layers.is_empty() {
            self.layers.push(Layer::default());
        }
        let last = self.layers.len() - 1;
        &mut self.layers[last]
    }

    fn insert(&mut self, key: Key, body: Vec<u8>) {
        self.top().writes.push((key, Pending::Insert(body)));
    }

    fn put_account(&mut self, tenant: &TenantId, account: Account) {
        let key = layout::account(tenant, &account.id);
        self.top().accounts.insert(key, account);
    }

    fn put_transfer(&mut self, tenant: &TenantId, transfer: Transfer) {
        let key = layout::transfer_state(tenant, &transfer.id);
        self.top().transfers.insert(key, transfer);
    }

    /// Appends an entry to an account's history; the caller stores the account.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        tenant: &TenantId,
        account: &mut Account,
        transfer: TransferId,
        kind: EntryKind,
        side: Side,
        amount: u64,
        released: u64,
    ) {
        account.entry_seq += 1;
        // Entries of one account never go back in time, whatever the clocks of other writers.
        let at = self.now.max(account.updated_at);
        account.updated_at = at;
        let entry = Entry {
            account: account.id,
            seq: account.entry_seq,
            transfer,
            kind,
            side,
            amount,
            released,
            balances: account.balances,
            at,
        };
        self.top().entries.push((tenant.clone(), entry));
    }

    /// Folds the top layer into the one below, or into the batch when it is the last.
    fn commit_layer(&mut self) {
        let Some(layer) = self.layers.pop() else {
            return;
        };
        if let Some(below) = self.layers.last_mut() {
            below.accounts.extend(layer.accounts);
            below.transfers.extend(layer.transfers);
            below.writes.extend(layer.writes);
            below.entries.extend(layer.entries);
            return;
        }
        for (key, account) in layer.accounts {
            let slot = self.accounts.entry(key).or_insert(Slot::new_record());
            slot.value = Some(account);
            slot.dirty = true;
        }
        for (key, transfer) in layer.transfers {
            let slot = self.transfers.entry(key).or_insert(Slot::new_record());
            slot.value = Some(transfer);
            slot.dirty = true;
        }
        for (key, pending) in layer.writes {
            merge(&mut self.writes, key, pending);
        }
        self.entries.extend(layer.entries);
    }
}

fn corrupt(why: String) -> Error {
    tracing::error!(%why, "stored data breaks an invariant; the command is refused");
    Error::Corrupt(why)
}

/// Merges a write into the batch: an item created and deleted within one batch is never
/// written, and no key gets two actions (DynamoDB refuses that in one transaction).
fn merge(writes: &mut BTreeMap<Key, Pending>, key: Key, pending: Pending) {
    use std::collections::btree_map::Entry as E;
    match (writes.entry(key), pending) {
        (E::Vacant(v), p) => {
            v.insert(p);
        }
        (E::Occupied(o), Pending::Delete) if matches!(o.get(), Pending::Insert(_)) => {
            o.remove();
        }
        (E::Occupied(mut o), Pending::Upsert(body) | Pending::Replace { body, .. })
            if matches!(o.get(), Pending::Insert(_)) =>
        {
            o.insert(Pending::Insert(body));
        }
        // Replaced twice in one batch: conditioned on the version first read.
        (E::Occupied(mut o), Pending::Replace { body, .. })
            if matches!(o.get(), Pending::Replace { .. }) =>
        {
            if let Pending::Replace { read_version, .. } = *o.get() {
                o.insert(Pending::Replace { body, read_version });
            }
        }
        (E::Occupied(mut o), p) => {
            o.insert(p);
        }
    }
}

/// No posted balance and nothing pending: an account that may close.
fn is_empty(b: &Balances) -> bool {
    b.debits_posted == b.credits_posted && b.debits_pending == 0 && b.credits_pending == 0
}

fn check_open(account: &Account) -> Result<(), Rejection> {
    match account.status {
        AccountStatus::Open => Ok(()),
        AccountStatus::Frozen => Err(Rejection::AccountFrozen {
            account: account.id,
        }),
        AccountStatus::Closed => Err(Rejection::AccountClosed {
            account: account.id,
        }),
    }
}
