//! How a commit's audit records are stored: blocks.
//!
//! The records one transaction appends go into as few items as fit: a block holds records
//! `first_seq..first_seq + n` of one stream, each with its Merkle leaf hash, under the key
//! `AUDIT#{stream}` / `B#{first_seq:020}` (`layout::audit_block`). One item per commit rather
//! than one per record keeps DynamoDB's 100-item transactions for the ledger's own items, and
//! costs SQLite one row. A block is at most [`AUDIT_BLOCK_BYTES_MAX`]; a commit whose records do
//! not fit in one writes several.
//!
//! The leaf hash beside each record lets a verifier name the one record whose content was
//! changed; it proves nothing by itself (whoever changes a record can change its hash too): the
//! signed checkpoints do.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::layout;
use crate::store::{Condition, Item, WriteOp};

/// Format byte of an audit block (postcard).
pub const FORMAT_AUDIT_BLOCK_V1: u8 = 10;
/// Largest block body, in bytes: within DynamoDB's 400 KB items, with room for the key.
pub const AUDIT_BLOCK_BYTES_MAX: usize = 256 * 1024;
/// Bytes a record adds to a block besides itself: its leaf hash and two length prefixes.
pub const AUDIT_BLOCK_RECORD_OVERHEAD: usize = 32 + 8;

/// One stored record and its leaf hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// `audit::merkle::leaf_hash(record)`.
    pub leaf: [u8; 32],
    /// The record's exact bytes (`audit::Record::encode`).
    #[serde(with = "serde_bytes_compat")]
    pub record: Vec<u8>,
}

/// The records of one block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The sequence of the first record.
    pub first_seq: u64,
    /// The records, in sequence order.
    pub records: Vec<Stored>,
}

impl Block {
    /// Reads a stored block.
    pub fn decode(item: &Item) -> Result<Block, Error> {
        let block: Block = codec::decode_as(FORMAT_AUDIT_BLOCK_V1, item)?;
        if layout::audit_sk_number(&item.key.sk) != Some(block.first_seq) {
            return Err(Error::Corrupt(format!(
                "audit block {:?} says it starts at record {}",
                item.key, block.first_seq
            )));
        }
        Ok(block)
    }
}

/// Puts of the blocks holding `records` (which start at `first_seq`), each conditioned on its
/// key being free: the only kind of write the audit log makes.
pub fn blocks(stream: &str, first_seq: u64, records: Vec<Stored>) -> Vec<WriteOp> {
    let mut ops = Vec::new();
    let mut current = Block {
        first_seq,
        records: Vec::new(),
    };
    let mut bytes = 0;
    for (seq, stored) in (first_seq..).zip(records) {
        let size = stored.record.len() + AUDIT_BLOCK_RECORD_OVERHEAD;
        if !current.records.is_empty() && bytes + size > AUDIT_BLOCK_BYTES_MAX {
            ops.push(put(stream, &current));
            current = Block {
                first_seq: seq,
                records: Vec::new(),
            };
            bytes = 0;
        }
        bytes += size;
        current.records.push(stored);
    }
    if !current.records.is_empty() {
        ops.push(put(stream, &current));
    }
    ops
}

fn put(stream: &str, block: &Block) -> WriteOp {
    WriteOp::Put {
        item: Item {
            key: layout::audit_block(stream, block.first_seq),
            version: 1,
            body: codec::encode_as(FORMAT_AUDIT_BLOCK_V1, block),
        },
        condition: Condition::NotExists,
    }
}

/// An upper bound on the blocks that records of `record_bytes` bytes in all, none larger than
/// `largest`, fill: every block but the last is filled past `AUDIT_BLOCK_BYTES_MAX - largest`.
pub fn blocks_needed(record_bytes: usize, records: usize, largest: usize) -> usize {
    if records == 0 {
        return 0;
    }
    let total = record_bytes + records * AUDIT_BLOCK_RECORD_OVERHEAD;
    let floor = AUDIT_BLOCK_BYTES_MAX.saturating_sub(largest + AUDIT_BLOCK_RECORD_OVERHEAD);
    total / floor.max(1) + 1
}

/// Postcard writes `Vec<u8>` as a length and the bytes either way; this keeps the field's
/// serde form explicit (bytes, not a sequence of numbers) for other formats.
mod serde_bytes_compat {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Vec::<u8>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: usize) -> Stored {
        Stored {
            leaf: [n as u8; 32],
            record: vec![b'x'; n],
        }
    }

    #[test]
    fn records_split_into_blocks_within_the_bound_and_in_order() {
        let sizes = [100_000, 100_000, 100_000, 10, 200_000, 5];
        let records: Vec<Stored> = sizes.iter().map(|&n| stored(n)).collect();
        let total: usize = sizes.iter().sum();
        let ops = blocks("w-1", 40, records.clone());
        assert!(ops.len() <= blocks_needed(total, sizes.len(), 200_000));
        let mut seq = 40;
        let mut back = Vec::new();
        for op in &ops {
            let WriteOp::Put { item, condition } = op else {
                panic!("only puts")
            };
            assert_eq!(*condition, Condition::NotExists);
            assert!(item.body.len() <= AUDIT_BLOCK_BYTES_MAX + 64);
            let block = Block::decode(item).expect("decode");
            assert_eq!(block.first_seq, seq);
            seq += block.records.len() as u64;
            back.extend(block.records);
        }
        assert_eq!(back, records);
        assert!(blocks("w-1", 0, Vec::new()).is_empty());
    }

    #[test]
    fn a_block_under_another_key_is_corrupt() {
        let ops = blocks("w-1", 7, vec![stored(3)]);
        let WriteOp::Put { mut item, .. } = ops.into_iter().next().expect("one") else {
            panic!("a put")
        };
        item.key = layout::audit_block("w-1", 8);
        assert!(matches!(Block::decode(&item), Err(Error::Corrupt(_))));
    }
}
