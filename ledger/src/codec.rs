//! How records become item bodies and back.
//!
//! A body is one format byte and the record in that format. The format today is postcard
//! ([`FORMAT_POSTCARD_V1`]): compact (ids are 16 bytes, numbers are varints) and cheap to encode
//! and decode, which matters because every posting writes several records and SQLite's WAL
//! writes whole pages: smaller records touch fewer pages. Postcard has no field names, so a
//! record's shape is fixed per format byte; a change of shape gets a new byte and a conversion
//! on read, never a silent reinterpretation of old items.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::store::Item;

/// Format byte of postcard bodies with the record shapes of this build.
pub const FORMAT_POSTCARD_V1: u8 = 1;

/// Format byte of an account's entry pages (postcard), see `history.rs`.
pub const FORMAT_ENTRY_PAGE_V1: u8 = 2;
/// Format byte of transfer packs (postcard), see `transfer_pack.rs`.
pub const FORMAT_TRANSFER_PACK_V1: u8 = 3;
/// Format byte of an account head that keeps its newest entries (postcard), see `history.rs`.
pub const FORMAT_ACCOUNT_HEAD_V2: u8 = 4;
/// Format byte of an entry page whose entries span instants (postcard), see `history.rs`.
pub const FORMAT_ENTRY_PAGE_V2: u8 = 5;
/// Format byte of a batch's idempotency record that names its transfers in their packs
/// (postcard), see `command::BatchRecord`.
pub const FORMAT_BATCH_RECORD_V1: u8 = 6;
/// Format byte of a transfer's own item whose record may name a card instrument (postcard),
/// see `transfer_pack.rs`; format 1 holds the shape before cards.
pub const FORMAT_TRANSFER_V2: u8 = 7;
/// Format byte of a transfer pack whose transfers may name a card instrument (postcard);
/// format 3 holds the shape before cards.
pub const FORMAT_TRANSFER_PACK_V2: u8 = 8;
/// Format byte of an idempotency record whose outcome may hold a card or transfers that name
/// one (postcard), see `command.rs`; format 1 holds the shape before cards.
pub const FORMAT_RECORD_V2: u8 = 9;

/// Encodes a record.
pub fn encode<T: Serialize + ?Sized>(record: &T) -> Vec<u8> {
    encode_as(FORMAT_POSTCARD_V1, record)
}

/// Encodes a record in a postcard format with its own format byte.
pub fn encode_as<T: Serialize + ?Sized>(format: u8, record: &T) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    body.push(format);
    // Serializing our own plain data types into a Vec cannot fail (no I/O, no unsupported
    // types); were it ever to, the empty body makes `decode` report the item as corrupt.
    postcard::to_extend(record, body).unwrap_or_default()
}

/// Decodes a record, naming the item when it cannot.
pub fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, Error> {
    decode_as(FORMAT_POSTCARD_V1, item)
}

/// Decodes a record of a postcard format with its own format byte; any other byte is corrupt.
pub fn decode_as<T: DeserializeOwned>(format: u8, item: &Item) -> Result<T, Error> {
    match item.body.split_first() {
        Some((&f, bytes)) if f == format => postcard::from_bytes(bytes)
            .map_err(|e| Error::Corrupt(format!("item {:?}: {e}", item.key))),
        Some((format, _)) => Err(Error::Corrupt(format!(
            "item {:?}: unknown format {format}",
            item.key
        ))),
        None => Err(Error::Corrupt(format!("item {:?}: empty body", item.key))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Key;

    /// A format byte names one shape of one kind of item, whatever module writes it.
    #[test]
    fn format_bytes_are_distinct() {
        let all = [
            FORMAT_POSTCARD_V1,
            FORMAT_ENTRY_PAGE_V1,
            FORMAT_TRANSFER_PACK_V1,
            FORMAT_ACCOUNT_HEAD_V2,
            FORMAT_ENTRY_PAGE_V2,
            FORMAT_BATCH_RECORD_V1,
            FORMAT_TRANSFER_V2,
            FORMAT_TRANSFER_PACK_V2,
            FORMAT_RECORD_V2,
            crate::audit_log::block::FORMAT_AUDIT_BLOCK_V1,
            crate::audit_log::block::FORMAT_AUDIT_BLOCK_V2,
            crate::audit_log::checkpointer::FORMAT_AUDIT_CHECKPOINT_V1,
        ];
        let distinct: std::collections::BTreeSet<u8> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
    }

    #[test]
    fn round_trip_and_corruption() {
        let item = |body: Vec<u8>| Item {
            key: Key::new("p", "s"),
            version: 1,
            body,
        };
        let body = encode(&vec![1u128 << 100, 7]);
        assert_eq!(
            decode::<Vec<u128>>(&item(body)).expect("decode"),
            vec![1u128 << 100, 7]
        );
        assert!(decode::<Vec<u128>>(&item(Vec::new())).is_err());
        assert!(decode::<Vec<u128>>(&item(vec![9, 0])).is_err());
        assert!(decode::<Vec<u128>>(&item(vec![FORMAT_POSTCARD_V1, 5])).is_err());
    }
}
