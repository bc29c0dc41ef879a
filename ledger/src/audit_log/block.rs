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
//!
//! A block is stored compressed ([`FORMAT_AUDIT_BLOCK_V2`], LZ4): one commit's records repeat
//! their stream, time, actor, action and JSON keys, so a block of transfers takes about a third
//! of its bytes, in the journal, in SQLite and in DynamoDB's write units alike. Blocks written
//! uncompressed ([`FORMAT_AUDIT_BLOCK_V1`]) are still read. A compressed block states its
//! decoded size, and one that claims more than [`AUDIT_BLOCK_DECODED_MAX`] is corrupt: reading
//! an item never allocates more than that bound.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::layout;
use crate::store::{Condition, Item, WriteOp};

/// Format byte of an audit block stored as it is (postcard), as written before blocks were
/// compressed; still read.
pub const FORMAT_AUDIT_BLOCK_V1: u8 = 10;
/// Format byte of an audit block as written: the postcard block's size (`u32`, little-endian),
/// then the postcard block compressed with LZ4 (its block format, no frame).
pub const FORMAT_AUDIT_BLOCK_V2: u8 = 12;
/// Largest block before compression, in bytes: within DynamoDB's 400 KB items even were LZ4 to
/// gain nothing (it adds at most 0.4 %), with room for the key.
pub const AUDIT_BLOCK_BYTES_MAX: usize = 256 * 1024;
/// Bytes a record adds to a block besides itself: its leaf hash and two length prefixes.
pub const AUDIT_BLOCK_RECORD_OVERHEAD: usize = 32 + 8;
/// Largest decoded size a stored block may state. [`blocks`] writes either records within
/// [`AUDIT_BLOCK_BYTES_MAX`] or one record alone, which stamping keeps within
/// `record_bytes_max(RESOURCES_MAX)`; the rest is room for the block's own header.
pub const AUDIT_BLOCK_DECODED_MAX: usize = AUDIT_BLOCK_BYTES_MAX
    + audit::record::record_bytes_max(audit::record::RESOURCES_MAX)
    + AUDIT_BLOCK_RECORD_OVERHEAD
    + 32;
/// Bytes of a compressed block's header: the format byte and the decoded size.
const V2_HEADER_BYTES: usize = 1 + 4;

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
    /// Reads a stored block, compressed or not.
    pub fn decode(item: &Item) -> Result<Block, Error> {
        let block: Block = match item.body.split_first() {
            Some((&FORMAT_AUDIT_BLOCK_V2, compressed)) => {
                let corrupt =
                    |why: String| Error::Corrupt(format!("audit block {:?}: {why}", item.key));
                let plain = decompress(compressed).map_err(corrupt)?;
                postcard::from_bytes(&plain).map_err(|e| corrupt(e.to_string()))?
            }
            _ => codec::decode_as(FORMAT_AUDIT_BLOCK_V1, item)?,
        };
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
            body: encode(block),
        },
        condition: Condition::NotExists,
    }
}

/// A block's stored body, as written ([`FORMAT_AUDIT_BLOCK_V2`]).
pub fn encode(block: &Block) -> Vec<u8> {
    // Serializing our own plain data into a Vec cannot fail; were it ever to, the empty block
    // decodes as corrupt.
    let plain = postcard::to_allocvec(block).unwrap_or_default();
    // `blocks` keeps a block within AUDIT_BLOCK_DECODED_MAX, far below u32::MAX.
    let size = u32::try_from(plain.len()).unwrap_or(u32::MAX);
    let mut body = vec![0; V2_HEADER_BYTES + lz4_flex::block::get_maximum_output_size(plain.len())];
    body[0] = FORMAT_AUDIT_BLOCK_V2;
    body[1..V2_HEADER_BYTES].copy_from_slice(&size.to_le_bytes());
    // The buffer has the room LZ4 can need, so this cannot fail; were it ever to, the block
    // (a header alone) decodes as corrupt.
    let compressed =
        lz4_flex::block::compress_into(&plain, &mut body[V2_HEADER_BYTES..]).unwrap_or(0);
    body.truncate(V2_HEADER_BYTES + compressed);
    body
}

/// The postcard block inside a compressed body (past its format byte): its size checked
/// against the bound before anything is allocated, and against what LZ4 gives back after.
fn decompress(body: &[u8]) -> Result<Vec<u8>, String> {
    let Some((size, compressed)) = body.split_first_chunk::<4>() else {
        return Err("too short to state its size".into());
    };
    let size = u32::from_le_bytes(*size) as usize;
    if size > AUDIT_BLOCK_DECODED_MAX {
        return Err(format!(
            "states a size of {size} bytes, more than a block holds ({AUDIT_BLOCK_DECODED_MAX})"
        ));
    }
    let plain = lz4_flex::block::decompress(compressed, size).map_err(|e| e.to_string())?;
    if plain.len() != size {
        return Err(format!(
            "states a size of {size} bytes but holds {}",
            plain.len()
        ));
    }
    Ok(plain)
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

    /// Records shaped like a commit's transfer records: shared stream, time, actor and keys,
    /// ids that differ.
    fn transfer_records(n: usize) -> Vec<Stored> {
        (0..n)
            .map(|i| {
                let record = format!(
                    r#"{{"v":1,"stream":"strongroom-01M87T7VZ153FRW2EZ9GZQ6ZYD","seq":{i},"time":"2026-11-24T22:18:56.777974Z","actor":{{"tenant":"acme","subject":"dev-user","client_id":null,"source_ip":"127.0.0.1"}},"action":"transfer.create","resources":["account:acct_{a:026}","account:acct_{b:026}","transfer:xfer_{c:026}","idempotency-key:k-{i}"],"outcome":"success","reason":null,"detail":null,"origin":{{"request_id":"{c:026}","trace_id":null}}}}"#,
                    a = i * 7919,
                    b = i * 104_729,
                    c = i * 1_299_709,
                );
                Stored {
                    leaf: audit::merkle::leaf_hash(record.as_bytes()),
                    record: record.into_bytes(),
                }
            })
            .collect()
    }

    fn item_of(op: WriteOp) -> Item {
        let WriteOp::Put { item, .. } = op else {
            panic!("a put")
        };
        item
    }

    #[test]
    fn blocks_are_written_compressed_and_read_back() {
        let records = transfer_records(15);
        let ops = blocks("w-1", 0, records.clone());
        assert_eq!(ops.len(), 1);
        let item = item_of(ops.into_iter().next().expect("one"));
        assert_eq!(item.body[0], FORMAT_AUDIT_BLOCK_V2);
        let plain = codec::encode_as(
            FORMAT_AUDIT_BLOCK_V1,
            &Block {
                first_seq: 0,
                records: records.clone(),
            },
        );
        // What compression is for: a commit's records share most of their bytes.
        assert!(
            item.body.len() * 2 < plain.len(),
            "{} bytes compressed, {} plain",
            item.body.len(),
            plain.len()
        );
        assert_eq!(Block::decode(&item).expect("decode").records, records);
    }

    #[test]
    fn blocks_written_before_compression_are_still_read() {
        let block = Block {
            first_seq: 3,
            records: transfer_records(4),
        };
        let item = Item {
            key: layout::audit_block("w-1", 3),
            version: 1,
            body: codec::encode_as(FORMAT_AUDIT_BLOCK_V1, &block),
        };
        assert_eq!(Block::decode(&item).expect("decode"), block);
    }

    #[test]
    fn a_compressed_block_that_misstates_its_size_is_corrupt() {
        let item = item_of(blocks("w-1", 0, transfer_records(3)).remove(0));
        let stated = |item: &Item| u32::from_le_bytes(item.body[1..5].try_into().expect("4"));
        let with_size = |size: u32| {
            let mut item = item.clone();
            item.body[1..5].copy_from_slice(&size.to_le_bytes());
            Block::decode(&item)
        };
        let size = stated(&item);
        for wrong in [
            0,
            size - 1,
            size + 1,
            AUDIT_BLOCK_DECODED_MAX as u32 + 1,
            u32::MAX,
        ] {
            assert!(
                matches!(with_size(wrong), Err(Error::Corrupt(_))),
                "size {wrong}"
            );
        }
        assert!(with_size(size).is_ok());
        let mut short = item.clone();
        short.body.truncate(3);
        assert!(matches!(Block::decode(&short), Err(Error::Corrupt(_))));
    }

    #[test]
    fn the_largest_blocks_written_state_sizes_within_the_bound() {
        let stated = |item: &Item| u32::from_le_bytes(item.body[1..5].try_into().expect("4"));
        // A block filled to the byte, and a block of the largest record stamping makes.
        let full = stored(AUDIT_BLOCK_BYTES_MAX - AUDIT_BLOCK_RECORD_OVERHEAD);
        let largest = stored(audit::record::record_bytes_max(
            audit::record::RESOURCES_MAX,
        ));
        let ops = blocks("w-1", 0, vec![full.clone(), largest.clone()]);
        assert_eq!(ops.len(), 2);
        for (op, record) in ops.into_iter().zip([full, largest]) {
            let item = item_of(op);
            assert!(stated(&item) as usize <= AUDIT_BLOCK_DECODED_MAX);
            assert_eq!(Block::decode(&item).expect("decode").records, vec![record]);
        }
    }

    proptest::proptest! {
        /// Whatever a compressed block's bytes are, reading it gives a block or an error.
        #[test]
        fn any_compressed_body_decodes_or_is_corrupt(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            flips in proptest::collection::vec((0usize..2048, proptest::prelude::any::<u8>()), 0..8),
        ) {
            let key = layout::audit_block("w-1", 0);
            let mut arbitrary = vec![FORMAT_AUDIT_BLOCK_V2];
            arbitrary.extend_from_slice(&body);
            let _ = Block::decode(&Item { key: key.clone(), version: 1, body: arbitrary });
            // And a real block with some bytes changed.
            let mut item = item_of(blocks("w-1", 0, transfer_records(5)).remove(0));
            for (at, byte) in flips {
                let at = 1 + at % (item.body.len() - 1);
                item.body[at] ^= byte;
            }
            let _ = Block::decode(&item);
        }
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
