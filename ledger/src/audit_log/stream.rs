//! The committer's side of its stream: sequence numbers, the tree's right edge, and the
//! records of each batch.
//!
//! One committer writes one stream, and writes one batch at a time, so records get their
//! sequence numbers in commit order with no gap: a batch's records take the next numbers when
//! it is planned and keep them only if its transaction commits; a batch planned again (a lost
//! condition) plans its records again with the same numbers. A transaction whose outcome is
//! unknown (the store failed mid-call) leaves the stream *uncertain*: before the next batch the
//! committer reads back whatever blocks exist past its last known record and adopts them
//! ([`StreamWriter::resync`]), so a commit that did land is neither lost nor written twice.

use std::sync::{Arc, Mutex};

use audit::merkle::{Frontier, Hash, leaf_hash};
use audit::{Completion, Draft, PreparedRecord, Stamper};
use serde::{Deserialize, Serialize};

use super::block::{self, Block, Stored};
use crate::codec;
use crate::error::Error;
use crate::layout;
use crate::store::{Condition, Item, Key, Query, Store, WriteOp};
use crate::time::Timestamp;

/// A stream's row in the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The writer's name (`audit_writer`), as configured.
    pub writer: String,
    /// When the stream's first record was written.
    pub started_at: Timestamp,
}

/// What the checkpointer reads: the tree as of the last commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Records committed.
    pub size: u64,
    /// The root of their tree.
    pub root: Hash,
}

/// Shared between the committer (which moves the head) and the checkpointer.
#[derive(Debug)]
pub struct Shared {
    /// The stream's name.
    pub stream: Arc<str>,
    /// The tree as of the last commit; its root is computed when asked for, not at every
    /// commit.
    tree: Mutex<Frontier>,
    /// Wakes the checkpointer when `checkpoint_records` records wait for a checkpoint.
    pub due: tokio::sync::Notify,
    /// Records after the last checkpoint that make one due.
    checkpoint_records: u64,
    /// The size of the last checkpoint written (the checkpointer moves it).
    checkpointed: Mutex<u64>,
}

impl Shared {
    /// The state of a new stream.
    pub fn new(stream: Arc<str>, checkpoint_records: u64) -> Shared {
        Shared {
            stream,
            tree: Mutex::new(Frontier::new()),
            due: tokio::sync::Notify::new(),
            checkpoint_records: checkpoint_records.max(1),
            checkpointed: Mutex::new(0),
        }
    }

    /// The tree as of the last commit.
    pub fn head(&self) -> Head {
        let tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        Head {
            size: tree.size(),
            root: tree.root(),
        }
    }

    /// The size of the last checkpoint written.
    pub fn checkpointed(&self) -> u64 {
        *self.checkpointed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a checkpoint written at `size`.
    pub fn set_checkpointed(&self, size: u64) {
        let mut c = self.checkpointed.lock().unwrap_or_else(|p| p.into_inner());
        *c = (*c).max(size);
    }

    fn moved(&self, tree: &Frontier) {
        self.tree
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone_from(tree);
        if tree.size().saturating_sub(self.checkpointed()) >= self.checkpoint_records {
            self.due.notify_one();
        }
    }
}

/// A record on its way into a batch.
#[derive(Debug)]
pub(crate) enum Entry<'a> {
    /// Stamped and encoded whole by the committer.
    Draft(Draft),
    /// Its known part encoded ahead (`audit::PreparedRecord`), completed by the commit.
    Prepared(&'a PreparedRecord, Completion),
}

/// The records of one batch, made but not yet committed.
#[derive(Debug)]
pub(crate) struct Built {
    /// The block puts (and the registry row, for a stream's first batch).
    pub ops: Vec<WriteOp>,
    /// The records' leaf hashes, for [`StreamWriter::committed`].
    pub leaves: Vec<Hash>,
}

/// The committer's stream.
#[derive(Debug)]
pub(crate) struct StreamWriter {
    stream: Arc<str>,
    writer: String,
    /// The tree of the committed records; its size is the next record's sequence, and a
    /// stream with none has no registry row yet.
    frontier: Frontier,
    /// A transaction's outcome is unknown: read back before the next.
    pub uncertain: bool,
    shared: Arc<Shared>,
}

impl StreamWriter {
    /// A new stream, with no record yet.
    pub fn new(writer: String, shared: Arc<Shared>) -> StreamWriter {
        StreamWriter {
            stream: shared.stream.clone(),
            writer,
            frontier: Frontier::new(),
            uncertain: false,
            shared,
        }
    }

    /// The sequence number the next record takes.
    pub fn next_seq(&self) -> u64 {
        self.frontier.size()
    }

    /// The keys the next batch's records are put under first, each on the condition that
    /// nothing is there: its first block, and the stream's registry row before its first
    /// record.
    pub fn next_keys(&self) -> Vec<Key> {
        let mut keys = vec![layout::audit_block(&self.stream, self.next_seq())];
        if self.next_seq() == 0 {
            keys.push(layout::audit_stream(&self.stream));
        }
        keys
    }

    /// The records of `entries`, numbered from the next sequence, made at `now`.
    pub fn build<'a>(&self, entries: impl Iterator<Item = Entry<'a>>, now: Timestamp) -> Built {
        let mut stored = Vec::new();
        let mut leaves = Vec::new();
        let stamper = Stamper::new(&self.stream, now.micros());
        for (i, entry) in entries.enumerate() {
            let seq = self.next_seq() + i as u64;
            let bytes = match entry {
                Entry::Draft(draft) => stamper.stamp(draft, seq).encode(),
                Entry::Prepared(prepared, completion) => {
                    stamper.encode_prepared(prepared, completion, seq)
                }
            };
            let leaf = leaf_hash(&bytes);
            leaves.push(leaf);
            stored.push(Stored {
                leaf,
                record: bytes,
            });
        }
        let mut ops = block::blocks(&self.stream, self.next_seq(), stored);
        if self.next_seq() == 0 && !ops.is_empty() {
            let info = StreamInfo {
                writer: self.writer.clone(),
                started_at: now,
            };
            ops.push(WriteOp::Put {
                item: Item {
                    key: layout::audit_stream(&self.stream),
                    version: 1,
                    body: codec::encode(&info),
                },
                condition: Condition::NotExists,
            });
        }
        Built { ops, leaves }
    }

    /// The batch whose records have `leaves` committed.
    pub fn committed(&mut self, leaves: Vec<Hash>) {
        if leaves.is_empty() {
            return;
        }
        for leaf in leaves {
            self.frontier.push(leaf);
        }
        self.shared.moved(&self.frontier);
    }

    /// Adopts whatever blocks the store holds past the last known record: those of a
    /// transaction that committed although its call failed.
    pub async fn resync(&mut self, store: &dyn Store) -> Result<(), Error> {
        let partition = layout::audit_partition(&self.stream);
        let mut query = Query::prefix(partition, layout::AUDIT_BLOCK_PREFIX, 64);
        query.from = layout::audit_block(&self.stream, self.next_seq()).sk;
        loop {
            let page = store.query(query.clone()).await?;
            for item in &page.items {
                let block = Block::decode(item)?;
                if block.first_seq != self.next_seq() {
                    return Err(Error::Corrupt(format!(
                        "audit stream {}: a block starts at record {}, expected {}",
                        self.stream,
                        block.first_seq,
                        self.next_seq()
                    )));
                }
                for stored in block.records {
                    self.frontier.push(stored.leaf);
                }
            }
            match page.next {
                Some(after) => query.after = Some(after),
                None => break,
            }
        }
        if self.next_seq() > 0 {
            self.shared.moved(&self.frontier);
        }
        self.uncertain = false;
        Ok(())
    }
}
