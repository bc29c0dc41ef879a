//! The storage interface: three operations that map one to one onto DynamoDB.
//!
//! | operation | DynamoDB | SQLite |
//! |---|---|---|
//! | [`Store::transact_write`] | `TransactWriteItems` with condition expressions | one `BEGIN IMMEDIATE` transaction |
//! | [`Store::get_many`] | `BatchGetItem`, `ConsistentRead` | point reads in one read transaction |
//! | [`Store::query`] | `Query` on one partition, `KeyConditionExpression` on the sort key, `ExclusiveStartKey` | range scan of the primary key |
//!
//! Items are a partition key, a sort key, a version and an opaque body. Conditions are about
//! existence and version only, which DynamoDB expresses as `attribute_not_exists(pk)` and
//! `v = :v`. Nothing in the ledger above this module knows which backend runs.

pub mod conformance;
pub mod dynamodb;
pub mod sqlite;

use async_trait::async_trait;

/// Where an item lives: a partition and a position in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Partition key.
    pub pk: String,
    /// Sort key within the partition.
    pub sk: String,
}

impl Key {
    /// Builds a key.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Key {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// A stored item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Where it lives.
    pub key: Key,
    /// Starts at 1; each put that replaces an item writes a higher one.
    pub version: u64,
    /// The encoded record (see `codec`).
    pub body: Vec<u8>,
}

/// What must hold for a write to apply. A failed condition fails the whole transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Unconditional.
    None,
    /// The item must not exist.
    NotExists,
    /// The item must exist at exactly this version.
    Version(u64),
}

/// One action of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Create or replace an item.
    Put {
        /// The new item.
        item: Item,
        /// What must hold first.
        condition: Condition,
    },
    /// Remove an item.
    Delete {
        /// The item.
        key: Key,
        /// What must hold first.
        condition: Condition,
    },
}

impl WriteOp {
    /// The key the op touches.
    pub fn key(&self) -> &Key {
        match self {
            WriteOp::Put { item, .. } => &item.key,
            WriteOp::Delete { key, .. } => key,
        }
    }
}

/// A range query on one partition. Sort keys compare as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The partition.
    pub pk: String,
    /// Lowest sort key, inclusive.
    pub from: String,
    /// Highest sort key, inclusive.
    pub to: String,
    /// Newest (highest sort key) first.
    pub descending: bool,
    /// Most items in the page.
    pub limit: usize,
    /// Continue after this sort key (exclusive), as handed out in [`Page::next`].
    pub after: Option<String>,
}

impl Query {
    /// All items of a partition whose sort key starts with `prefix`, ascending.
    pub fn prefix(pk: impl Into<String>, prefix: &str, limit: usize) -> Query {
        Query {
            pk: pk.into(),
            from: prefix.to_owned(),
            // U+10FFFF encodes as the highest UTF-8 sequence: it sorts after every sort key.
            to: format!("{prefix}\u{10FFFF}"),
            descending: false,
            limit,
            after: None,
        }
    }
}

/// One page of a query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The items, in the order asked for.
    pub items: Vec<Item>,
    /// Where the next page starts, if there may be one.
    pub next: Option<String>,
}

/// The service limits a backend imposes, which the ledger plans around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most actions in one transaction (DynamoDB: 100).
    pub transaction_items_max: usize,
    /// Largest item body in bytes (DynamoDB: 400 KB with attribute names).
    pub item_bytes_max: usize,
    /// The size writes are counted in (DynamoDB bills a transactional write 2 units per
    /// started KB of the item, [`item_bytes`]). An account head keeps its newest entries while
    /// they fit in the units the head takes anyway, so that a transaction touching an account
    /// writes one item for it instead of a head and an entry page (`history.rs`). Zero: heads
    /// keep no entries.
    pub write_unit_bytes: usize,
}

/// An item's size by DynamoDB's rules: the UTF-8 length of each attribute name plus its value
/// (strings: UTF-8 bytes; binary: bytes; numbers: about one byte per two significant digits,
/// plus one), for the attributes every item has: `pk`, `sk`, `v` and `b`.
pub fn item_bytes(key: &Key, version: u64, body_len: usize) -> usize {
    let mut digits = 1;
    let mut v = version;
    while v >= 10 {
        v /= 10;
        digits += 1;
    }
    "pk".len()
        + key.pk.len()
        + "sk".len()
        + key.sk.len()
        + "v".len()
        + usize::div_ceil(digits, 2)
        + 1
        + "b".len()
        + body_len
}

/// A storage failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The condition of the op at `index` did not hold; nothing was written.
    #[error("condition failed at action {index}")]
    ConditionFailed {
        /// Position of the failing op in the transaction.
        index: usize,
    },
    /// The backend could not be reached or failed; nothing is known to be written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The call broke a rule of the interface (two actions on one item, too many actions).
    #[error("invalid store call: {0}")]
    Invalid(String),
    /// Stored data that cannot be read back.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
}

/// A storage backend.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// The limits this backend imposes.
    fn limits(&self) -> StoreLimits;

    /// Applies all ops or none. Fails with [`StoreError::ConditionFailed`] when a condition does
    /// not hold, and with [`StoreError::Invalid`] when two ops touch one key or there are more
    /// than [`StoreLimits::transaction_items_max`] ops.
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;

    /// Strongly consistent reads of several keys; the answer is in the order of `keys`.
    async fn get_many(&self, keys: Vec<Key>) -> Result<Vec<Option<Item>>, StoreError>;

    /// One page of one partition.
    async fn query(&self, query: Query) -> Result<Page, StoreError>;

    /// A strongly consistent read of one key.
    async fn get(&self, key: Key) -> Result<Option<Item>, StoreError> {
        Ok(self.get_many(vec![key]).await?.pop().flatten())
    }

    /// Whether the backend answers; for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether a key the writer reads just before it writes the key under a condition spares
    /// the write a lookup of its own. SQLite checks conditions against what the committer last
    /// read, in the same snapshot; DynamoDB checks them in the transaction, so there a read
    /// would only cost. False by default.
    fn conditions_use_reads(&self) -> bool {
        false
    }

    /// The backend's own counters (calls, retries, capacity); none by default.
    fn metrics(&self) -> Vec<crate::metrics::Metric> {
        Vec::new()
    }
}

thread_local! {
    static BLOCKING_ALLOWED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the current thread as one that may block on storage I/O: the committer's own thread,
/// which does nothing else. Backends whose I/O blocks (SQLite) then run it inline there instead
/// of handing it to a thread pool and back, which on a busy machine costs more than the I/O.
pub fn allow_blocking_here() {
    BLOCKING_ALLOWED.with(|b| b.set(true));
}

/// Whether the current thread may block on storage I/O (see [`allow_blocking_here`]).
pub fn blocking_allowed() -> bool {
    BLOCKING_ALLOWED.with(|b| b.get())
}

/// The hasher of the commit path's maps and sets of store keys: foldhash, several times faster
/// than SipHash on these short strings, and seeded per process (the keys are partly
/// client-chosen).
pub(crate) type KeyHasher = foldhash::fast::RandomState;

/// Checks the rules every backend shares, before it talks to storage.
pub fn check_transaction(ops: &[WriteOp], limits: StoreLimits) -> Result<(), StoreError> {
    if ops.len() > limits.transaction_items_max {
        return Err(StoreError::Invalid(format!(
            "{} actions; at most {}",
            ops.len(),
            limits.transaction_items_max
        )));
    }
    let mut keys: std::collections::HashSet<&Key, KeyHasher> =
        std::collections::HashSet::with_capacity_and_hasher(ops.len(), Default::default());
    for op in ops {
        if crate::layout::is_audit(op.key())
            && !matches!(
                op,
                WriteOp::Put {
                    condition: Condition::NotExists,
                    ..
                }
            )
        {
            return Err(StoreError::Invalid(format!(
                "the audit log is append-only: {:?} may only be put where nothing is",
                op.key()
            )));
        }
        if !keys.insert(op.key()) {
            return Err(StoreError::Invalid(format!(
                "two actions on {:?}",
                op.key()
            )));
        }
        if let WriteOp::Put { item, .. } = op
            && item.body.len() > limits.item_bytes_max
        {
            return Err(StoreError::Invalid(format!(
                "item {:?} has {} bytes; at most {}",
                item.key,
                item.body.len(),
                limits.item_bytes_max
            )));
        }
    }
    Ok(())
}
