//! The ledger's typed service interface: what the gateway (or any other caller) uses.
//!
//! Writes go through the group committer; reads go straight to the store, strongly consistent.
//! Every call is scoped by a tenant: there is no call that reads across tenants, except the
//! operator's [`Ledger::trial_balance_all`].

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::account::{Account, Metadata, NewAccount, StatusAction};
use crate::audit_log::stream::{Shared, StreamWriter};
use crate::audit_log::{AuditConfig, CheckpointSigner, LocalCheckpointSigner};
use crate::codec::decode;
use crate::command::{BatchMode, Command, Committed, Op, Outcome};
use crate::commit::{CommitConfig, CommitStats, Committer, Message};
use crate::cursor::CursorKey;
use crate::error::{Error, Rejection, Result};
use crate::history;
use crate::ids::{AccountId, IdGen, IdempotencyKey, TenantId, TransferId};
use crate::layout;
use crate::limits::{
    HISTORY_ITEMS_PER_READ, HOLD_EXPIRY_SHARDS, HOLD_SWEEP_BATCH_MAX, PAGE_LEN_DEFAULT,
    PAGE_LEN_MAX,
};
use crate::metrics::Metric;
use crate::money::Amount;
use crate::store::{Condition, Item, Query, Store, StoreError, WriteOp};
use crate::time::{Clock, Timestamp};
use crate::transfer::{Entry, NewTransfer, Transfer};
use crate::transfer_pack;
use crate::trial::{self, TrialBalance};
use crate::vault::{Secret, Vault};

/// Everything the ledger needs besides a store and a clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Group commit bounds.
    pub commit: CommitConfig,
    /// How often expired holds are looked for; `None` turns the sweeper off (tests drive it).
    pub hold_sweep_interval: Option<Duration>,
    /// The audit log: this process's stream and its checkpoints.
    pub audit: AuditConfig,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            commit: CommitConfig::default(),
            hold_sweep_interval: Some(Duration::from_secs(1)),
            audit: AuditConfig::default(),
        }
    }
}

/// A page request: how many, and where to continue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Items wanted; `None` is [`PAGE_LEN_DEFAULT`]; more than [`PAGE_LEN_MAX`] is refused.
    pub limit: Option<usize>,
    /// A cursor from an earlier page of the same listing.
    pub cursor: Option<String>,
    /// Newest first.
    pub descending: bool,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing<T> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
}

/// An account's balances at an instant.
#[derive(Clone, Debug, PartialEq)]
pub struct BalanceAt {
    /// The account, as it is now.
    pub account: Account,
    /// The instant asked about.
    pub at: Timestamp,
    /// Balances after the last entry at or before `at` (zero before the first).
    pub balances: crate::account::Balances,
    /// Sequence of that entry; 0 if none.
    pub entry_seq: u64,
}

/// The handle to a running ledger. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ledger {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Released on shutdown, so that the store can close (and another can open its files).
    store: RwLock<Option<Arc<dyn Store>>>,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Message>,
    shutdown: watch::Sender<bool>,
    stats: watch::Receiver<CommitStats>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Loaded from the store (or created there) on first use.
    cursor_key: tokio::sync::OnceCell<CursorKey>,
    /// Card ids; the committer has its own generator.
    ids: IdGen,
    /// Seals and opens card numbers; `None` when no key service is configured (cards are
    /// then refused).
    vault: Option<Vault>,
    /// The PAN-fingerprint key: read from the store and unwrapped (or created there) on first
    /// use, like the cursor key.
    fingerprint_key: tokio::sync::OnceCell<Secret>,
    /// This process's audit stream (`None` with the audit log off) and its checkpoint signer.
    audit: Option<(Arc<Shared>, Arc<dyn CheckpointSigner>)>,
}

impl Ledger {
    /// Starts the committer (and the hold sweeper) on the current tokio runtime, without a
    /// vault: card calls fail.
    pub fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: LedgerConfig) -> Ledger {
        Ledger::start_with_vault(store, clock, config, None)
    }

    /// Starts the ledger with a vault for card numbers; checkpoints of its audit stream are
    /// signed with a key of this process's own (see [`Ledger::start_with_signer`]).
    pub fn start_with_vault(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: LedgerConfig,
        vault: Option<Vault>,
    ) -> Ledger {
        let signer: Option<Arc<dyn CheckpointSigner>> = match LocalCheckpointSigner::ephemeral() {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::error!(error = %e, "no checkpoint signing key; checkpoints are not signed");
                None
            }
        };
        Ledger::start_with_signer(store, clock, config, vault, signer)
    }

    /// Starts the ledger with a vault for card numbers and the signer of its audit stream's
    /// checkpoints (`None`: records are written, checkpoints are not).
    pub fn start_with_signer(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: LedgerConfig,
        vault: Option<Vault>,
        signer: Option<Arc<dyn CheckpointSigner>>,
    ) -> Ledger {
        let (tx, rx) = mpsc::channel(config.commit.queue_len_max.max(1));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (stats_tx, stats) = watch::channel(CommitStats::default());
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let audit = config.audit.enabled.then(|| {
            let stream: Arc<str> = crate::audit_log::stream_name(&config.audit.writer).into();
            Arc::new(Shared::new(stream, config.audit.checkpoint_records))
        });
        let committer = Committer {
            store: store.clone(),
            clock: clock.clone(),
            ids: Arc::new(IdGen::new()),
            config: config.commit,
            rx,
            shutdown: shutdown_rx.clone(),
            stats: stats_tx,
            last_now: Timestamp::EPOCH,
            carry: None,
            audit: audit
                .as_ref()
                .map(|shared| StreamWriter::new(config.audit.writer.clone(), shared.clone())),
            stopped: stopped_tx,
        };
        let mut tasks = vec![spawn_committer(committer)];
        if let (Some(shared), Some(signer)) = (&audit, &signer) {
            tasks.push(tokio::spawn(crate::audit_log::checkpoint_loop(
                store.clone(),
                shared.clone(),
                signer.clone(),
                clock.clone(),
                config.audit.checkpoint_interval,
                stopped_rx,
            )));
        }
        let ledger = Ledger {
            inner: Arc::new(Inner {
                store: RwLock::new(Some(store)),
                clock,
                tx,
                shutdown,
                stats,
                tasks: Mutex::new(Vec::new()),
                cursor_key: tokio::sync::OnceCell::new(),
                ids: IdGen::new(),
                vault,
                fingerprint_key: tokio::sync::OnceCell::new(),
                audit: audit.zip(signer),
            }),
        };
        // The stream's first record: the service starting.
        if config.audit.enabled {
            let (reply, answer) = oneshot::channel();
            // Nobody waits for it, but a job whose receiver is gone is dropped unexecuted.
            tokio::spawn(async move {
                if let Ok(Err(e)) = answer.await {
                    tracing::error!(error = %e, "the audit record of the service starting was not written");
                }
            });
            let draft = audit::Draft::success(
                "service.start",
                audit::Actor::default(),
                audit::Origin::default(),
            )
            .detail(format!("writer {}", config.audit.writer));
            let _ = ledger
                .inner
                .tx
                .try_send(Message::Append(Box::new(draft), reply));
        }
        if let Some(interval) = config.hold_sweep_interval {
            tasks.push(tokio::spawn(sweep_loop(
                ledger.clone(),
                interval,
                shutdown_rx,
            )));
        }
        *ledger.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        ledger
    }

    /// Stops taking writes, finishes what is queued, waits for the background tasks, and
    /// releases the store (reads fail with [`Error::ShuttingDown`] from then on).
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        let store = self
            .inner
            .store
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // The last reference may close the store, which can block (SQLite copies its journal
        // into the table): do that off the async threads.
        if let Some(store) = store {
            let _ = tokio::task::spawn_blocking(move || drop(store)).await;
        }
    }

    /// Whether the ledger can serve: the committer runs and the store answers.
    pub async fn ready(&self) -> Result<()> {
        if *self.inner.shutdown.borrow() || self.inner.tx.is_closed() {
            return Err(Error::ShuttingDown);
        }
        self.store()?.ping().await.map_err(Error::Store)
    }

    /// Group commit statistics so far.
    pub fn commit_stats(&self) -> CommitStats {
        *self.inner.stats.borrow()
    }

    /// The vault, if one is configured.
    pub fn vault(&self) -> Result<&Vault> {
        self.inner.vault.as_ref().ok_or_else(|| {
            Error::Vault(crate::vault::VaultError::Invalid(
                "no key service is configured for card numbers".into(),
            ))
        })
    }

    /// The clock.
    pub(crate) fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// A new card id.
    pub(crate) fn new_card_id(&self) -> crate::ids::CardId {
        self.inner.ids.card(self.now())
    }

    /// The PAN-fingerprint key, unwrapped once per process.
    pub(crate) async fn fingerprint_key(&self) -> Result<&Secret> {
        self.inner
            .fingerprint_key
            .get_or_try_init(|| crate::card::service::load_fingerprint_key(self))
            .await
    }

    /// Every counter of the ledger and its store, for a metrics endpoint.
    pub fn metrics(&self) -> Vec<Metric> {
        let stats = self.commit_stats();
        let mut out = vec![
            Metric::counter(
                "strongroom_commit_transactions_total",
                "Store transactions the committer wrote.",
                stats.transactions,
            ),
            Metric::counter(
                "strongroom_commit_requests_total",
                "Write requests the committer executed (acknowledged or refused).",
                stats.requests,
            ),
            Metric::counter(
                "strongroom_commit_retries_total",
                "Batches planned again after another writer won a condition.",
                stats.retries,
            ),
        ];
        if let Ok(store) = self.store() {
            out.extend(store.metrics());
        }
        if let Some(vault) = &self.inner.vault {
            out.extend(vault.metrics());
        }
        out
    }

    /// The key of pagination cursors: read from the store, or created there by the first process
    /// that needs one (a write conditioned on its absence, so that every process ends up with
    /// the same key).
    async fn cursor_key(&self) -> Result<&CursorKey> {
        self.inner
            .cursor_key
            .get_or_try_init(|| async {
                let store = self.store()?;
                let key = layout::cursor_secret();
                for _ in 0..3 {
                    if let Some(item) = store.get(key.clone()).await? {
                        let bytes: [u8; crate::cursor::CURSOR_KEY_BYTES] = decode(&item)?;
                        return Ok(CursorKey::from_bytes(bytes));
                    }
                    let fresh = CursorKey::generate()?;
                    let create = WriteOp::Put {
                        item: Item {
                            key: key.clone(),
                            version: 1,
                            body: crate::codec::encode(fresh.bytes()),
                        },
                        condition: Condition::NotExists,
                    };
                    match store.transact_write(vec![create]).await {
                        Ok(()) => return Ok(fresh),
                        // Another process created it first: read that one.
                        Err(StoreError::ConditionFailed { .. }) => continue,
                        Err(e) => return Err(Error::Store(e)),
                    }
                }
                Err(Error::Contention)
            })
            .await
    }

    /// The store, until shutdown releases it.
    pub(crate) fn store(&self) -> Result<Arc<dyn Store>> {
        let store = self.inner.store.read().unwrap_or_else(|p| p.into_inner());
        store.clone().ok_or(Error::ShuttingDown)
    }

    pub(crate) async fn submit(
        &self,
        tenant: &TenantId,
        key: Option<IdempotencyKey>,
        op: Op,
    ) -> Result<Committed<Outcome>> {
        let (reply, answer) = oneshot::channel();
        let mut cmd = Command {
            tenant: tenant.clone(),
            key,
            op,
            scope: crate::audit_log::current(),
            prepared: None,
        };
        if self.inner.audit.is_some() {
            // Here, on the request's task, rather than on the committer's serial path.
            cmd.prepared = Some(Box::new(crate::audit_log::prepare(&cmd)));
        }
        self.inner
            .tx
            .try_send(Message::Execute(cmd, reply))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Overloaded,
                mpsc::error::TrySendError::Closed(_) => Error::ShuttingDown,
            })?;
        answer.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Appends an audit record of something other than a ledger command (a read, a refusal,
    /// a card reveal, a key operation) and waits until it is committed; marks the current
    /// request's scope recorded. Returns the record's sequence in this process's stream.
    /// With the audit log off, records nothing and returns 0.
    pub async fn audit_append(&self, draft: audit::Draft) -> Result<u64> {
        if self.inner.audit.is_none() {
            return Ok(0);
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .tx
            .try_send(Message::Append(Box::new(draft), reply))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Overloaded,
                mpsc::error::TrySendError::Closed(_) => Error::ShuttingDown,
            })?;
        let seq = answer.await.map_err(|_| Error::ShuttingDown)??;
        if let Some(scope) = crate::audit_log::current() {
            scope.mark_recorded();
        }
        Ok(seq)
    }

    /// This process's audit stream: its name and the tree as of the last commit.
    pub fn audit_stream(&self) -> Option<(String, crate::audit_log::Head)> {
        self.inner
            .audit
            .as_ref()
            .map(|(shared, _)| (shared.stream.to_string(), shared.head()))
    }

    /// The signer of this process's checkpoints.
    pub fn audit_signer(&self) -> Option<Arc<dyn CheckpointSigner>> {
        self.inner.audit.as_ref().map(|(_, signer)| signer.clone())
    }

    /// Signs and stores a checkpoint of this process's stream now, if records arrived since
    /// the last one.
    pub async fn audit_checkpoint_now(
        &self,
    ) -> Result<Option<audit::checkpoint::SignedCheckpoint>> {
        let Some((shared, signer)) = &self.inner.audit else {
            return Ok(None);
        };
        let store = self.store()?;
        crate::audit_log::checkpointer::checkpoint_now(
            &*store,
            shared,
            &**signer,
            &*self.inner.clock,
        )
        .await
    }

    // ---- writes -------------------------------------------------------------------------------

    /// Creates an account.
    pub async fn create_account(
        &self,
        tenant: &TenantId,
        key: IdempotencyKey,
        new: NewAccount,
    ) -> Result<Committed<Account>> {
        let committed = self
            .submit(tenant, Some(key), Op::CreateAccount(new))
            .await?;
        expect_account(committed)
    }

    /// Freezes, unfreezes or closes an account.
    pub async fn set_account_status(
        &self,
        tenant: &TenantId,
        key: IdempotencyKey,
        account: AccountId,
        action: StatusAction,
    ) -> Result<Committed<Account>> {
        let committed = self
            .submit(tenant, Some(key), Op::SetStatus { account, action })
            .await?;
        expect_account(committed)
    }

    /// Posts a transfer or journal entry, or places a hold.
    pub async fn create_transfer(
        &self,
        tenant: &TenantId,
        key: IdempotencyKey,
        new: NewTransfer,
    ) -> Result<Committed<Transfer>> {
        let committed = self.submit(tenant, Some(key), Op::Transfer(new)).await?;
        expect_transfer(committed)
    }

    /// Runs a batch of transfers in one commit. In atomic mode, any failure fails the call with
    /// [`Error::BatchRejected`] and nothing posts; in independent mode each result stands alone.
    pub async fn create_batch(
        &self,
        tenant: &TenantId,
        key: IdempotencyKey,
        mode: BatchMode,
        transfers: Vec<NewTransfer>,
    ) -> Result<Committed<Vec<Result<Transfer, Rejection>>>> {
        let committed = self
            .submit(tenant, Some(key), Op::Batch { mode, transfers })
            .await?;
        match committed.value {
            Outcome::Batch(results) => Ok(Committed {
                value: results,
                replayed: committed.replayed,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Posts a hold, in full (`amount` `None`) or in part.
    pub async fn post_pending(
        &self,
        tenant: &TenantId,
        key: IdempotencyKey,
        transfer: TransferId,
        amount: Option<Amount>,
    ) -> Result<Committed<Transfer>> {
        expect_transfer(
            self.submit(tenant, Some(key), Op::Post { transfer, amount })
                .await?,
        )
    }

    /// Voids a hold.
    pub async fn void_pending(
        &self,
        tenant: &TenantId,
        key: IdempotencyKey,
        transfer: TransferId,
    ) -> Result<Committed<Transfer>> {
        expect_transfer(
            self.submit(tenant, Some(key), Op::Void { transfer })
                .await?,
        )
    }

    /// Reverses a posted transfer with a new, linked transfer.
    pub async fn reverse(
        &self,
        tenant: &TenantId,
        key: IdempotencyKey,
        transfer: TransferId,
        description: Option<String>,
        metadata: Metadata,
    ) -> Result<Committed<Transfer>> {
        let description = crate::account::check_text("description", description)?;
        expect_transfer(
            self.submit(
                tenant,
                Some(key),
                Op::Reverse {
                    transfer,
                    description,
                    metadata,
                },
            )
            .await?,
        )
    }

    /// Voids every hold whose timeout has passed; returns how many it voided.
    pub async fn sweep_expired_holds(&self) -> Result<usize> {
        let now = self.inner.clock.now();
        let mut voided = 0;
        for shard in 0..HOLD_EXPIRY_SHARDS {
            let page = self
                .store()?
                .query(layout::holds_expired_by(shard, now, HOLD_SWEEP_BATCH_MAX))
                .await?;
            // Submitted together, the voids share group commits.
            let mut voids = tokio::task::JoinSet::new();
            for (tenant, transfer) in page
                .items
                .iter()
                .filter_map(|i| layout::parse_hold_expiry(&i.key.sk))
            {
                let ledger = self.clone();
                voids.spawn(async move {
                    ledger
                        .submit(&tenant, None, Op::ExpireHold { transfer })
                        .await
                });
            }
            while let Some(joined) = voids.join_next().await {
                let committed =
                    joined.map_err(|e| Error::Corrupt(format!("hold sweep task: {e}")))??;
                if let Outcome::Transfer(_) = committed.value {
                    voided += 1;
                }
            }
        }
        Ok(voided)
    }

    // ---- reads --------------------------------------------------------------------------------

    /// One account.
    pub async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> Result<Account> {
        history::decode_account(&self.head(tenant, id).await?)
    }

    /// An account's head item (the account and its newest entries, `history.rs`); not found
    /// for an account this tenant does not have.
    async fn head(&self, tenant: &TenantId, id: &AccountId) -> Result<Item> {
        self.store()?
            .get(layout::account(tenant, id))
            .await?
            .ok_or(Error::NotFound)
    }

    /// A tenant's accounts, oldest first.
    pub async fn list_accounts(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> Result<Listing<Account>> {
        let cursors = self.cursor_key().await?;
        let query = list_query(layout::account_list(tenant), "acct_", &page, cursors)?;
        let found = self.store()?.query(query.clone()).await?;
        let ids: Vec<AccountId> = found.items.iter().map(decode).collect::<Result<_>>()?;
        let heads = self
            .store()?
            .get_many(ids.iter().map(|id| layout::account(tenant, id)).collect())
            .await?;
        let items = heads
            .iter()
            .zip(&ids)
            .map(|(head, id)| match head {
                Some(item) => history::decode_account(item),
                None => Err(Error::Corrupt(format!("listed account {id} has no head"))),
            })
            .collect::<Result<_>>()?;
        Ok(Listing {
            items,
            next_cursor: found.next.map(|sk| cursors.encode(&query.pk, &sk)),
        })
    }

    /// One transfer: its own item once changed, else its copy in its pack (`transfer_pack`).
    pub async fn get_transfer(&self, tenant: &TenantId, id: &TransferId) -> Result<Transfer> {
        let items = self
            .store()?
            .get_many(transfer_pack::keys(tenant, id).to_vec())
            .await?;
        let [a, b, c] = [0, 1, 2].map(|i| items.get(i).and_then(Option::as_ref));
        transfer_pack::find(id, [a, b, c])?
            .map(|(transfer, _)| transfer)
            .ok_or(Error::NotFound)
    }

    /// A tenant's transfers, oldest first (or newest first). The listing reads packs (and the
    /// single items of older builds) in key order, which is id order, expands them, and takes
    /// the newer copy of any transfer changed since its pack. The cursor is the last transfer
    /// id handed out.
    pub async fn list_transfers(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> Result<Listing<Transfer>> {
        let cursors = self.cursor_key().await?;
        let listed = list_query(layout::transfers(tenant), "xfer_", &page, cursors)?;
        let limit = listed.limit;
        let descending = listed.descending;
        let after: Option<TransferId> = listed
            .after
            .as_deref()
            .map(|sk| sk.parse().map_err(|_| Error::InvalidCursor))
            .transpose()?;
        let mut query = Query {
            after: None,
            ..listed
        };
        // The cursor's pack may hold transfers on both sides of it: read from (or down to) the
        // pack, and skip what the cursor already passed.
        if let Some(id) = &after {
            if descending {
                query.to = id.to_string();
            } else {
                query.from = layout::transfer_pack(tenant, id).sk;
            }
        }
        let passed =
            |id: &TransferId| after.is_some_and(|a| if descending { *id >= a } else { *id <= a });
        let store = self.store()?;
        let mut items: Vec<Transfer> = Vec::new();
        loop {
            let found = store.query(query.clone()).await?;
            for item in &found.items {
                let mut transfers = transfer_pack::expand(item)?;
                if descending {
                    transfers.reverse();
                }
                items.extend(transfers.into_iter().filter(|t| !passed(&t.id)));
            }
            match found.next {
                Some(sk) if items.len() <= limit => query.after = Some(sk),
                _ => break,
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let states = store
            .get_many(
                items
                    .iter()
                    .map(|t| layout::transfer_state(tenant, &t.id))
                    .collect(),
            )
            .await?;
        for (transfer, state) in items.iter_mut().zip(states) {
            if let Some(item) = state {
                *transfer = transfer_pack::decode_transfer(&item)?;
            }
        }
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => Some(cursors.encode(&query.pk, &last.id.to_string())),
            _ => None,
        };
        Ok(Listing { items, next_cursor })
    }

    /// An account's history: entries with the balances after each.
    pub async fn entries(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        page: PageRequest,
    ) -> Result<Listing<Entry>> {
        Ok(self.history(tenant, account, page).await?.1)
    }

    /// An account as it is now, and a page of its history, consistent with it: the entries up
    /// to the account's `entry_seq`, its newest in its head's tail (`history.rs`).
    pub async fn history(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        page: PageRequest,
    ) -> Result<(Account, Listing<Entry>)> {
        // The account must exist (for this tenant) even when it has no entries.
        let head = self.head(tenant, account).await?;
        let (current, tail) = history::decode_head(&head)?;
        let tail_first = tail.first_seq();
        let mut tail_entries = tail.entries(&current)?;
        let base = layout::entries(tenant, account, 1);
        let cursors = self.cursor_key().await?;
        // Limit and cursor are checked as in every listing; the cursor holds a history position.
        let listed = list_query(base.pk, "E#", &page, cursors)?;
        let limit = listed.limit;
        let position = listed
            .after
            .as_deref()
            .map(|sk| history::Position::parse(sk).ok_or(Error::InvalidCursor))
            .transpose()?;
        let mut query = Query {
            after: None,
            from: base.from,
            to: base.to,
            ..listed
        };
        let past = |seq: u64| match &position {
            None => true,
            Some(p) if page.descending => seq < p.seq,
            Some(p) => seq > p.seq,
        };
        // Where each listed entry came from: a page (its index in `page_keys`) or the tail.
        let mut entries: Vec<(Option<usize>, Entry)> = Vec::new();
        let mut page_keys: Vec<String> = Vec::new();
        // Newest first: the tail, then pages; oldest first: pages, then the tail.
        if page.descending {
            tail_entries.reverse();
            entries.extend(
                tail_entries
                    .drain(..)
                    .filter(|e| past(e.seq))
                    .map(|e| (None, e)),
            );
        }
        // Pages hold every entry before the tail; an entry at or past its start comes from the
        // tail, which is what the head read holds.
        let pages_needed = match (&position, page.descending) {
            (Some(p), false) => p.seq.saturating_add(1) < tail_first,
            (Some(p), true) => tail_first > 1 && p.seq > 1,
            (None, _) => tail_first > 1,
        };
        if pages_needed && entries.len() <= limit {
            // Pages are stored in entry order, so the page holding the position is the first
            // one read, and only its entries up to the position are skipped.
            if let Some(p) = &position {
                if page.descending {
                    query.to = p.page.clone();
                } else if p.in_tail {
                    // The entry was in the tail; a page that holds it now starts at or
                    // before its key.
                    let mut holder = query.clone();
                    holder.to = p.page.clone();
                    holder.descending = true;
                    holder.limit = 1;
                    let found = self.store()?.query(holder).await?;
                    query.from = found
                        .items
                        .first()
                        .map_or_else(|| p.page.clone(), |item| item.key.sk.clone());
                } else {
                    query.from = p.page.clone();
                }
            }
            // One entry more than the page, to know whether another follows; each item read
            // holds at least one entry, the first perhaps none past the position.
            loop {
                query.limit = (limit + 2 - entries.len()).min(HISTORY_ITEMS_PER_READ);
                let found = self.store()?.query(query.clone()).await?;
                for item in &found.items {
                    let mut held = history::decode(item)?;
                    if page.descending {
                        held.reverse();
                    }
                    let at = page_keys.len();
                    page_keys.push(item.key.sk.clone());
                    entries.extend(
                        held.into_iter()
                            .filter(|e| e.seq < tail_first && past(e.seq))
                            .map(|e| (Some(at), e)),
                    );
                }
                match found.next {
                    Some(next) if entries.len() <= limit => query.after = Some(next),
                    _ => break,
                }
            }
        }
        if !page.descending && entries.len() <= limit {
            entries.extend(
                tail_entries
                    .drain(..)
                    .filter(|e| past(e.seq))
                    .map(|e| (None, e)),
            );
        }
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next_cursor = match entries.last() {
            Some((from, e)) if more => {
                let position = match from {
                    Some(at) => history::Position::new(&page_keys[*at], e.seq),
                    None => history::Position::in_tail(tenant, e),
                };
                Some(cursors.encode(&query.pk, &position.to_sort_key()))
            }
            _ => None,
        };
        let listing = Listing {
            items: entries.into_iter().map(|(_, e)| e).collect(),
            next_cursor,
        };
        Ok((current, listing))
    }

    /// An account's balances as of an instant.
    pub async fn balance_at(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        at: Timestamp,
    ) -> Result<BalanceAt> {
        let head = self.head(tenant, account).await?;
        let (current, tail) = history::decode_head(&head)?;
        // The newest entry at or before `at`: in the tail, or else in the last page at or
        // before `at` (keyed by its first entry; the last of its entries at or before `at`).
        let mut last: Option<Entry> = tail.entries(&current)?.into_iter().rfind(|e| e.at <= at);
        if last.is_none() {
            let mut query = layout::entries_until(tenant, account, at, 1);
            query.descending = true;
            let found = self.store()?.query(query).await?;
            if let Some(item) = found.items.first() {
                last = history::decode(item)?.into_iter().rfind(|e| e.at <= at);
            }
        }
        Ok(BalanceAt {
            account: current,
            at,
            balances: last.as_ref().map(|e| e.balances).unwrap_or_default(),
            entry_seq: last.map_or(0, |e| e.seq),
        })
    }

    /// The tenant's trial balance: per currency, debits equal credits.
    pub async fn trial_balance(&self, tenant: &TenantId) -> Result<TrialBalance> {
        let _pause = self.pause_writes().await?;
        trial::consistent(&*self.store()?, tenant, self.inner.clock.now()).await
    }

    /// The trial balance of every tenant, for operators.
    pub async fn trial_balance_all(&self) -> Result<Vec<(TenantId, TrialBalance)>> {
        let tenants = trial::tenants(&*self.store()?).await?;
        let mut out = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let balance = self.trial_balance(&tenant).await?;
            out.push((tenant, balance));
        }
        Ok(out)
    }

    /// Pauses this process's writes until the guard drops (at most the committer's bound).
    async fn pause_writes(&self) -> Result<oneshot::Sender<()>> {
        let (paused_tx, paused) = oneshot::channel();
        let (resume, resume_rx) = oneshot::channel();
        self.inner
            .tx
            .send(Message::Barrier(paused_tx, resume_rx))
            .await
            .map_err(|_| Error::ShuttingDown)?;
        paused.await.map_err(|_| Error::ShuttingDown)?;
        Ok(resume)
    }
}

/// Runs the committer on a thread of its own (with a single-threaded runtime), where the store
/// may do blocking I/O inline: a batch's reads, checks and queueing then cost no thread handoff.
/// The returned task ends when the committer does.
fn spawn_committer(committer: Committer) -> JoinHandle<()> {
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("ledger-committer".into())
        .spawn(move || {
            crate::store::allow_blocking_here();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(committer.run()),
                Err(error) => tracing::error!(%error, "cannot start the committer's runtime"),
            }
            let _ = done_tx.send(());
        });
    if let Err(error) = thread {
        tracing::error!(%error, "cannot start the committer thread");
    }
    tokio::spawn(async move {
        let _ = done_rx.await;
    })
}

async fn sweep_loop(ledger: Ledger, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match ledger.sweep_expired_holds().await {
            Ok(0) => {}
            Ok(voided) => tracing::info!(voided, "voided expired holds"),
            Err(Error::ShuttingDown) => return,
            Err(error) => tracing::warn!(%error, "hold sweep failed; will retry"),
        }
    }
}

fn expect_account(committed: Committed<Outcome>) -> Result<Committed<Account>> {
    match committed.value {
        Outcome::Account(a) => Ok(Committed {
            value: a,
            replayed: committed.replayed,
        }),
        other => Err(unexpected(&other)),
    }
}

fn expect_transfer(committed: Committed<Outcome>) -> Result<Committed<Transfer>> {
    match committed.value {
        Outcome::Transfer(t) => Ok(Committed {
            value: t,
            replayed: committed.replayed,
        }),
        other => Err(unexpected(&other)),
    }
}

pub(crate) fn unexpected(outcome: &Outcome) -> Error {
    let kind = match outcome {
        Outcome::Account(_) => "account",
        Outcome::Transfer(_) => "transfer",
        Outcome::Batch(_) => "batch",
        Outcome::Nothing => "nothing",
        Outcome::Card(_) => "card",
    };
    Error::Corrupt(format!(
        "the committer answered with an unexpected {kind} outcome"
    ))
}

/// A listing's query; its cursor (see [`crate::cursor`]) must have been made for this
/// partition.
fn list_query(pk: String, prefix: &str, page: &PageRequest, cursors: &CursorKey) -> Result<Query> {
    let limit = page.limit.unwrap_or(PAGE_LEN_DEFAULT);
    if limit == 0 || limit > PAGE_LEN_MAX {
        return Err(Rejection::InvalidField {
            field: "limit".into(),
            reason: format!("between 1 and {PAGE_LEN_MAX}"),
        }
        .into());
    }
    let after = page
        .cursor
        .as_deref()
        .map(|c| cursors.decode(c, &pk, prefix))
        .transpose()?;
    let mut query = Query::prefix(pk, prefix, limit);
    query.descending = page.descending;
    query.after = after;
    Ok(query)
}
