//! What a transaction writes, item by item: the count every backend's cost follows (DynamoDB
//! bills per item and started KB; SQLite's b-tree works per row).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ledger::layout;
use ledger::store::sqlite::SqliteStore;
use ledger::store::{Item, Key, Page, Query, Store, StoreError, StoreLimits, WriteOp};
use ledger::{BatchMode, CommitConfig};

use crate::{Harness, fresh, plain, tenant, usd};

/// A store that remembers the keys of every transaction it is given.
#[derive(Debug)]
struct Recording {
    inner: SqliteStore,
    transactions: Arc<Mutex<Vec<Vec<Key>>>>,
}

#[async_trait]
impl Store for Recording {
    fn limits(&self) -> StoreLimits {
        self.inner.limits()
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let keys = ops.iter().map(|op| op.key().clone()).collect();
        self.transactions.lock().unwrap().push(keys);
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
    let transactions = Arc::new(Mutex::new(Vec::new()));
    let seen = transactions.clone();
    let h = Harness::start_on(CommitConfig::default(), move |inner| {
        Arc::new(Recording {
            inner,
            transactions: seen,
        })
    });
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

    let mut want = BTreeSet::from([layout::idempotency(&acme, &key)]);
    for t in &created {
        want.insert(layout::transfer(&acme, &t.as_ref().unwrap().id));
    }
    // Each touched account: its head, and one page holding this batch's entries on it.
    for (account, first_seq) in [(cash, 1), (shop, 1), (tip, 1)] {
        let head = h.get(&acme, account).await;
        want.insert(layout::account(&acme, &account));
        want.insert(layout::entry(&acme, &account, head.updated_at, first_seq));
    }
    assert_eq!(keys, want);
    assert_eq!(keys.len(), 1 + 11 + 3 + 3);

    // The pages read back as the entries, one by one.
    let history = h
        .ledger
        .entries(&acme, &cash, Default::default())
        .await
        .unwrap();
    let amounts: Vec<u64> = history.items.iter().map(|e| e.amount).collect();
    assert_eq!(amounts, (1..=11).collect::<Vec<u64>>());
}
