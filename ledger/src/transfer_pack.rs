//! Transfer packs: the transfers one batch creates for one tenant, stored as one item.
//!
//! A transfer record is small (about 100 bytes) and DynamoDB bills a transactional write by
//! the kilobyte, at least one: one item per transfer costs 2 write units for 100 bytes. So the
//! committer gives the transfers a batch creates for a tenant ids that share all but their
//! last 20 bits (`TransferId::in_pack`), and writes them as one pack, keyed by that common
//! prefix (`layout::transfer_pack`): a transfer's id says where it is, and a pack of forty
//! costs what its bytes cost.
//!
//! A pack is written once. A later change to one of its transfers (a hold posted or voided, a
//! transfer reversed) writes the whole transfer to its own item (`layout::transfer_state`),
//! which supersedes the pack's copy: conditioned on not existing for the first change, on its
//! version after that, so two writers cannot both change a transfer. Transfers stored one per
//! item by earlier builds (`layout::transfer`) are read and changed where they are, under that
//! item's version, as those builds change them.
//!
//! Packs sort among themselves and among older single items by their ids, so a listing reads
//! them in order and expands each.

use serde::{Deserialize, Serialize};

use crate::codec::{
    FORMAT_POSTCARD_V1, FORMAT_TRANSFER_PACK_V1, FORMAT_TRANSFER_PACK_V2, FORMAT_TRANSFER_V2,
    decode, decode_as, encode_as,
};
use crate::error::Error;
use crate::ids::{TenantId, TransferId};
use crate::layout;
use crate::limits::{TRANSFER_PACK_BYTES_MAX, TRANSFER_PACK_LEN_MAX};
use crate::store::{Item, Key};
use crate::transfer::{NewTransfer, Transfer, TransferV1};

/// How a batch fills a tenant's packs, one new transfer after another: the rule the planner
/// assigns ids by and the committer's item budget counts by. A pack takes transfers until it
/// holds `TRANSFER_PACK_LEN_MAX` or the next would take it past `TRANSFER_PACK_BYTES_MAX`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PackFill {
    len: usize,
    bytes: usize,
}

impl PackFill {
    /// Adds a transfer of about `bytes`; returns whether it starts a new pack.
    pub(crate) fn add(&mut self, bytes: usize) -> bool {
        if self.len > 0
            && self.len < TRANSFER_PACK_LEN_MAX
            && self.bytes.saturating_add(bytes) <= TRANSFER_PACK_BYTES_MAX
        {
            self.len += 1;
            self.bytes += bytes;
            false
        } else {
            *self = PackFill { len: 1, bytes };
            true
        }
    }

    /// A fill no transfer can join: the next one starts a new pack.
    pub(crate) fn full() -> PackFill {
        PackFill {
            len: TRANSFER_PACK_LEN_MAX,
            bytes: 0,
        }
    }
}

/// About how many bytes the record of a transfer created from `new` takes in a pack: the
/// request's fields and, at most, its id, state, hold, links and times.
pub(crate) fn record_bytes(new: &NewTransfer) -> usize {
    // Counted, not encoded: no allocation on the commit path, which asks twice per transfer
    // (the item budget, then the planner).
    postcard::experimental::serialized_size(new).unwrap_or(0) + 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_takes_transfers_up_to_its_count_or_its_bytes() {
        let mut fill = PackFill::default();
        assert!(fill.add(100), "the first transfer starts a pack");
        for _ in 1..TRANSFER_PACK_LEN_MAX {
            assert!(!fill.add(100));
        }
        assert!(fill.add(100), "one past the count starts the next");
        // By bytes: exactly at the bound fits, one byte over does not.
        let mut fill = PackFill::default();
        assert!(fill.add(TRANSFER_PACK_BYTES_MAX - 10));
        assert!(!fill.add(10));
        assert!(fill.add(1));
        // A transfer larger than the bound gets a pack of its own, and nothing joins it.
        let mut fill = PackFill::default();
        assert!(fill.add(TRANSFER_PACK_BYTES_MAX + 1));
        assert!(fill.add(1));
        assert!(PackFill::full().add(1));
    }
}

/// The transfers of one pack, in id order.
#[derive(Debug, Serialize, Deserialize)]
struct Pack(Vec<Transfer>);

/// Encodes a pack's transfers (in id order).
pub(crate) fn encode_pack(transfers: &[Transfer]) -> Vec<u8> {
    encode_as(FORMAT_TRANSFER_PACK_V2, transfers)
}

/// The body of a transfer's own item.
pub(crate) fn encode_transfer(transfer: &Transfer) -> Vec<u8> {
    encode_as(FORMAT_TRANSFER_V2, transfer)
}

/// A transfer's own item (or an earlier build's single item), in either shape.
pub(crate) fn decode_transfer(item: &Item) -> Result<Transfer, Error> {
    match item.body.first() {
        Some(&FORMAT_TRANSFER_V2) => decode_as(FORMAT_TRANSFER_V2, item),
        Some(&FORMAT_POSTCARD_V1) => decode::<TransferV1>(item).map(Transfer::from),
        _ => decode_as(FORMAT_TRANSFER_V2, item),
    }
}

/// The keys that may hold a transfer, most recent first: its own item once changed, its pack,
/// the single item of builds before packs.
pub(crate) fn keys(tenant: &TenantId, id: &TransferId) -> [Key; 3] {
    [
        layout::transfer_state(tenant, id),
        layout::transfer_pack(tenant, id),
        layout::transfer(tenant, id),
    ]
}

/// The transfers an item of the transfer listing holds: a pack's, or one single transfer.
pub(crate) fn expand(item: &Item) -> Result<Vec<Transfer>, Error> {
    match item.body.first() {
        Some(&FORMAT_TRANSFER_PACK_V2) => {
            let pack: Pack = decode_as(FORMAT_TRANSFER_PACK_V2, item)?;
            Ok(pack.0)
        }
        Some(&FORMAT_TRANSFER_PACK_V1) => {
            let pack: Vec<TransferV1> = decode_as(FORMAT_TRANSFER_PACK_V1, item)?;
            Ok(pack.into_iter().map(Transfer::from).collect())
        }
        _ => Ok(vec![decode_transfer(item)?]),
    }
}

/// Where a transfer was found, and so where a change to it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Home {
    /// Its own item (`layout::transfer_state`), at this version.
    Own(u64),
    /// Only its pack: a change creates its own item.
    Pack,
    /// The single item of a build before packs (`layout::transfer`), at this version.
    Single(u64),
}

/// A transfer as stored: found by [`keys`] among `items` (each `None` when absent).
pub(crate) fn find(
    id: &TransferId,
    items: [Option<&Item>; 3],
) -> Result<Option<(Transfer, Home)>, Error> {
    let [state, pack, single] = items;
    let check = |transfer: Transfer, item: &Item| {
        if transfer.id == *id {
            Ok(transfer)
        } else {
            Err(Error::Corrupt(format!(
                "item {:?} holds transfer {}, not {id}",
                item.key, transfer.id
            )))
        }
    };
    if let Some(item) = state {
        return Ok(Some((
            check(decode_transfer(item)?, item)?,
            Home::Own(item.version),
        )));
    }
    if let Some(item) = pack {
        let found = expand(item)?.into_iter().find(|t| t.id == *id);
        if let Some(transfer) = found {
            return Ok(Some((transfer, Home::Pack)));
        }
    }
    match single {
        Some(item) => Ok(Some((
            check(decode_transfer(item)?, item)?,
            Home::Single(item.version),
        ))),
        None => Ok(None),
    }
}
