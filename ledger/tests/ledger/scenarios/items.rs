//! What a transaction writes, item by item: the count every backend's cost follows (DynamoDB
//! bills per item and started KB; SQLite's b-tree works per row).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ledger::layout;
use ledger::store::sqlite::SqliteStore;
use ledger::store::{Item, Key, Page, Query, Store, StoreError, StoreLimits, WriteOp};
use ledger::{BatchMode, CommitConfig};

use ledger::Rejection;

use crate::{Failure, Harness, failure, fresh, pending, plain, tenant, usd};

/// A store that remembers the keys of every transaction it is given and, when `items_max` is
/// set, refuses larger transactions as DynamoDB does; its write unit is `write_unit_bytes`.
#[derive(Debug)]
struct Recording {
    inner: SqliteStore,
    transactions: Arc<Mutex<Vec<Vec<Key>>>>,
    items_max: Option<usize>,
    write_unit_bytes: usize,
    /// Every item written, when kept.
    items: Option<Arc<Mutex<Vec<Item>>>>,
}

/// A harness whose store records its transactions, and those transactions. Its account heads
/// keep no entries: every transaction writes a page per account it touches, the most it can.
fn recorded(items_max: Option<usize>) -> (Harness, Arc<Mutex<Vec<Vec<Key>>>>) {
    recorded_with_unit(items_max, 0)
}

fn recorded_with_unit(
    items_max: Option<usize>,
    write_unit_bytes: usize,
) -> (Harness, Arc<Mutex<Vec<Vec<Key>>>>) {
    let (h, transactions, _) = recorded_items(items_max, write_unit_bytes, false);
    (h, transactions)
}

/// A recording harness that also keeps every item written.
#[allow(clippy::type_complexity)]
fn recorded_items(
    items_max: Option<usize>,
    write_unit_bytes: usize,
    keep: bool,
) -> (Harness, Arc<Mutex<Vec<Vec<Key>>>>, Arc<Mutex<Vec<Item>>>) {
    let transactions = Arc::new(Mutex::new(Vec::new()));
    let items = Arc::new(Mutex::new(Vec::new()));
    let (seen, kept) = (transactions.clone(), items.clone());
    let h = Harness::start_on(CommitConfig::default(), move |inner| {
        Arc::new(Recording {
            inner,
            transactions: seen,
            items_max,
            write_unit_bytes,
            items: keep.then_some(kept),
        })
    });
    (h, transactions, items)
}

#[async_trait]
impl Store for Recording {
    fn limits(&self) -> StoreLimits {
        let mut limits = self.inner.limits();
        if let Some(max) = self.items_max {
            limits.transaction_items_max = max;
        }
        limits.write_unit_bytes = self.write_unit_bytes;
        limits
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        if self.items_max.is_some_and(|max| ops.len() > max) {
            return Err(StoreError::Invalid(format!("{} actions", ops.len())));
        }
        // The ledger's own items: the audit block each transaction also writes is counted
        // against `items_max` above, and checked by the audit log's tests.
        let keys = ops
            .iter()
            .map(|op| op.key().clone())
            .filter(|k| !ledger::layout::is_audit(k))
            .collect();
        self.transactions.lock().unwrap().push(keys);
        if let Some(items) = &self.items {
            let mut items = items.lock().unwrap();
            for op in &ops {
                if let WriteOp::Put { item, .. } = op {
                    items.push(item.clone());
                }
            }
        }
        self.inner.transact_write(ops).await
    }

    async fn get_many(&self, keys: Vec<Key>) -> Result<Vec<Option<Item>>, StoreError> {
        self.inner.get_many(keys).await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.inner.query(query).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn a_batch_writes_one_entry_page_per_account_it_touches() {
    let (h, transactions) = recorded(None);
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let tip = h.merchant(&acme, usd()).await;
    transactions.lock().unwrap().clear();

    // Ten transfers into `shop` and one into `tip`, in one atomic batch.
    let mut items: Vec<_> = (1..=10).map(|n| plain(cash, shop, n, usd())).collect();
    items.push(plain(cash, tip, 11, usd()));
    let key = h.key();
    let created = fresh(
        h.ledger
            .create_batch(&acme, key.clone(), BatchMode::Atomic, items)
            .await,
    );
    let written = transactions.lock().unwrap().clone();
    assert_eq!(written.len(), 1, "one transaction");
    let keys: BTreeSet<Key> = written[0].iter().cloned().collect();
    assert_eq!(keys.len(), written[0].len(), "no key twice");

    // The eleven transfers: one pack, their ids differing in the last 20 bits only.
    let ids: Vec<_> = created.iter().map(|t| t.as_ref().unwrap().id).collect();
    assert!(ids.iter().all(|id| id.pack_base() == ids[0].pack_base()));
    let mut want = BTreeSet::from([
        layout::idempotency(&acme, &key),
        layout::transfer_pack(&acme, &ids[0]),
    ]);
    // Each touched account: its head, and one page holding this batch's entries on it.
    for (account, first_seq) in [(cash, 1), (shop, 1), (tip, 1)] {
        let head = h.get(&acme, account).await;
        want.insert(layout::account(&acme, &account));
        want.insert(layout::entry(&acme, &account, head.updated_at, first_seq));
    }
    assert_eq!(keys, want);
    assert_eq!(keys.len(), 1 + 1 + 3 + 3);

    // The pages read back as the entries, one by one.
    let history = h.history(&acme, cash).await;
    let amounts: Vec<u64> = history.items.iter().map(|e| e.amount).collect();
    assert_eq!(amounts, (1..=11).collect::<Vec<u64>>());
}

/// DynamoDB's limit: 100 actions in a transaction.
const DYNAMODB_ACTIONS: usize = 100;

#[tokio::test]
async fn a_batch_fits_a_100_item_store_by_the_accounts_it_names_not_its_legs() {
    let (h, transactions) = recorded(Some(DYNAMODB_ACTIONS));
    let acme = tenant("acme");
    let accounts = h.cash_accounts(&acme, 50).await;
    let before = transactions.lock().unwrap().len();
    let batch = |pairs: Vec<(usize, usize)>| {
        pairs
            .into_iter()
            .map(|(d, c)| plain(accounts[d], accounts[c], 1, usd()))
            .collect::<Vec<_>>()
    };

    // 40 transfers among 10 accounts: key 1 + 1 pack of 40 transfers + 10 heads + 10 pages =
    // 22 items, where an item per transfer and a head and an entry per leg would make 201.
    let hot = batch((0..40).map(|i| (i % 10, (i + 1) % 10)).collect());
    let created = fresh(
        h.ledger
            .create_batch(&acme, h.key(), BatchMode::Atomic, hot)
            .await,
    );
    assert_eq!(created.len(), 40);
    // 24 transfers over 48 distinct accounts: 1 + 1 + 96 = 98.
    let spread = batch((0..24).map(|i| (i, i + 24)).collect());
    let created = fresh(
        h.ledger
            .create_batch(&acme, h.key(), BatchMode::Atomic, spread)
            .await,
    );
    assert_eq!(created.len(), 24);
    let sizes: Vec<usize> = transactions.lock().unwrap()[before..]
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, vec![22, 98]);

    // 25 transfers over 50 accounts: 1 + 1 + 100 = 102, with the audit block and the room kept
    // for a stream's registry row 104: refused, nothing written. (24 transfers above: 98 + 2.)
    let too_many = batch((0..25).map(|i| (i, i + 25)).collect());
    let refused = h
        .ledger
        .create_batch(&acme, h.key(), BatchMode::Atomic, too_many)
        .await;
    assert_eq!(
        failure(refused),
        Failure::Rejected(Rejection::TooLarge {
            items: 104,
            max: DYNAMODB_ACTIONS
        })
    );
    assert_eq!(transactions.lock().unwrap().len(), before + 2);

    // The largest batch, 1000 transfers, among 10 accounts: 1 + 4 packs of at most 256 + 10
    // heads + 10 pages = 25 items, in one transaction.
    let largest = batch((0..1000).map(|i| (i % 10, (i + 3) % 10)).collect());
    let created = fresh(
        h.ledger
            .create_batch(&acme, h.key(), BatchMode::Atomic, largest)
            .await,
    );
    assert_eq!(created.len(), 1000);
    let written = transactions.lock().unwrap()[before + 2..].to_vec();
    assert_eq!(written.iter().map(Vec::len).collect::<Vec<_>>(), vec![25]);
}

#[tokio::test]
async fn concurrent_transfers_share_transactions_within_100_items() {
    let (h, transactions) = recorded(Some(DYNAMODB_ACTIONS));
    let acme = tenant("acme");
    let accounts = h.cash_accounts(&acme, 10).await;
    let before = transactions.lock().unwrap().len();
    // Many requests at once, each on two of ten accounts, some of them holds.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..300u64 {
        let (ledger, key, acme) = (h.ledger.clone(), h.key(), acme.clone());
        let (d, c) = (
            accounts[(i % 10) as usize],
            accounts[((i + 3) % 10) as usize],
        );
        let new = if i % 7 == 0 {
            pending(d, c, 1, usd(), 60)
        } else {
            plain(d, c, 1, usd())
        };
        calls.spawn(async move { ledger.create_transfer(&acme, key, new).await });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap().unwrap();
    }
    let written = transactions.lock().unwrap()[before..].to_vec();
    assert!(written.iter().all(|t| t.len() <= DYNAMODB_ACTIONS));
    let items: usize = written.iter().map(Vec::len).sum();
    // Each transfer: its key, a hold its expiry row; per transaction a pack, and the heads and
    // pages of at most ten accounts.
    let floor = 300 + 300_usize.div_ceil(7);
    assert!(
        items >= floor + written.len() && items <= floor + 21 * written.len(),
        "{items} items in {} transactions",
        written.len()
    );
}

#[tokio::test]
async fn with_a_write_unit_a_transaction_writes_one_item_per_account_until_its_head_is_full() {
    // DynamoDB's unit: a head keeps its account's newest entries within its first KB.
    let (h, transactions) = recorded_with_unit(None, 1024);
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    transactions.lock().unwrap().clear();
    let n = 100;
    for amount in 1..=n {
        h.transfer(&acme, cash, shop, amount, usd()).await.unwrap();
    }
    let written = transactions.lock().unwrap().clone();
    assert_eq!(written.len(), n as usize, "one transaction each");
    let is_page = |k: &Key| k.sk.starts_with("E#");
    let mut moves = 0;
    for keys in &written {
        // Its idempotency record, its pack, the two heads; and a page for each account whose
        // head's entries moved out.
        let pages = keys.iter().filter(|k| is_page(k)).count();
        assert_eq!(keys.len(), 4 + pages, "{keys:?}");
        assert!(keys.contains(&layout::account(&acme, &cash)));
        assert!(keys.contains(&layout::account(&acme, &shop)));
        moves += pages;
    }
    // Tens of bytes an entry: a head keeps more than ten before they move.
    assert!(moves >= 2 && moves <= 2 * n as usize / 10, "{moves} pages");
    let page = ledger::PageRequest {
        limit: Some(n as usize),
        cursor: None,
        descending: false,
    };
    let listed = h.ledger.entries(&acme, &shop, page).await.unwrap();
    let amounts: Vec<u64> = listed.items.iter().map(|e| e.amount).collect();
    assert_eq!(amounts, (1..=n).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_batchs_idempotency_record_names_its_transfers_in_their_pack() {
    let (h, _, items) = recorded_items(None, 1024, true);
    let acme = tenant("acme");
    let accounts = h.cash_accounts(&acme, 4).await;
    let batch: Vec<_> = (0..40)
        .map(|i| plain(accounts[i % 4], accounts[(i + 1) % 4], 1 + i as u64, usd()))
        .collect();
    let key = h.key();
    fresh(
        h.ledger
            .create_batch(&acme, key.clone(), BatchMode::Atomic, batch)
            .await,
    );
    let written = items.lock().unwrap().clone();
    let find = |k: &Key| written.iter().find(|i| &i.key == k).cloned().unwrap();
    let record = find(&layout::idempotency(&acme, &key));
    let pack = written
        .iter()
        .find(|i| i.key.pk == layout::transfers(&acme))
        .cloned()
        .unwrap();
    // The record names forty ids (16 bytes each); the pack holds the forty transfers.
    assert_eq!(record.body[0], ledger::codec::FORMAT_BATCH_RECORD_V1);
    assert!(
        record.body.len() < 40 * 20 + 100,
        "{} bytes",
        record.body.len()
    );
    assert!(pack.body.len() > 40 * 60, "{} bytes", pack.body.len());
    // A single transfer's record holds its outcome whole: there is no pack to name.
    let single = h.key();
    h.ledger
        .create_transfer(
            &acme,
            single.clone(),
            plain(accounts[0], accounts[1], 5, usd()),
        )
        .await
        .unwrap();
    let written = items.lock().unwrap().clone();
    let record = written
        .iter()
        .find(|i| i.key == layout::idempotency(&acme, &single))
        .unwrap();
    assert_eq!(record.body[0], ledger::codec::FORMAT_RECORD_V2);
}
