//! The journal: one row per transaction, synced before the transaction is acknowledged.
//!
//! A row holds the transaction's writes (conditions were checked before it was written), in a
//! compact binary form. Rows are replayed into the items table on open when the process stopped
//! before the materializer copied them, and deleted once the items table records that it holds
//! them (`meta.applied_seq`).

use rusqlite::{Connection, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::unavailable;
use crate::store::{Condition, Item, Key, StoreError, WriteOp};

/// One write as the journal stores it.
#[derive(Serialize)]
struct OpRef<'a> {
    pk: &'a str,
    sk: &'a str,
    /// Version and body of a put; `None` for a delete.
    put: Option<(u64, &'a [u8])>,
}

#[derive(Deserialize)]
struct OpOwned {
    pk: String,
    sk: String,
    put: Option<(u64, Vec<u8>)>,
}

/// Encodes a transaction's writes.
pub fn encode(ops: &[WriteOp]) -> Vec<u8> {
    let refs: Vec<OpRef<'_>> = ops
        .iter()
        .map(|op| match op {
            WriteOp::Put { item, .. } => OpRef {
                pk: &item.key.pk,
                sk: &item.key.sk,
                put: Some((item.version, &item.body)),
            },
            WriteOp::Delete { key, .. } => OpRef {
                pk: &key.pk,
                sk: &key.sk,
                put: None,
            },
        })
        .collect();
    // Our own plain types into a Vec: cannot fail; an empty record would fail to decode.
    postcard::to_allocvec(&refs).unwrap_or_default()
}

/// Decodes a journal row back into writes (with no conditions: they held when it was written).
pub fn decode(seq: u64, bytes: &[u8]) -> Result<Vec<WriteOp>, StoreError> {
    let ops: Vec<OpOwned> = postcard::from_bytes(bytes)
        .map_err(|e| StoreError::Corrupt(format!("journal row {seq}: {e}")))?;
    Ok(ops
        .into_iter()
        .map(|op| match op.put {
            Some((version, body)) => WriteOp::Put {
                item: Item {
                    key: Key::new(op.pk, op.sk),
                    version,
                    body,
                },
                condition: Condition::None,
            },
            None => WriteOp::Delete {
                key: Key::new(op.pk, op.sk),
                condition: Condition::None,
            },
        })
        .collect())
}

/// Appends rows (one per transaction of the group) and, in the same SQLite transaction, drops
/// rows the items table already holds. Returns when the rows are synced: one sync for the group.
pub fn append(
    conn: &mut Connection,
    rows: &[(u64, &[u8])],
    drop_up_to: Option<u64>,
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO journal (seq, ops) VALUES (?1, ?2)")
            .map_err(unavailable)?;
        for (seq, record) in rows {
            let seq = i64::try_from(*seq)
                .map_err(|_| StoreError::Invalid("journal sequence overflow".into()))?;
            insert.execute(params![seq, record]).map_err(unavailable)?;
        }
    }
    if let Some(upto) = drop_up_to.and_then(|u| i64::try_from(u).ok()) {
        tx.prepare_cached("DELETE FROM journal WHERE seq <= ?1")
            .and_then(|mut s| s.execute(params![upto]))
            .map_err(unavailable)?;
    }
    tx.commit().map_err(unavailable)
}

/// Rows after `after`, in order.
pub fn rows_after(conn: &Connection, after: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare("SELECT seq, ops FROM journal WHERE seq > ?1 ORDER BY seq")
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![after], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(unavailable)?;
    rows.map(|row| {
        let (seq, ops) = row.map_err(unavailable)?;
        let seq = u64::try_from(seq)
            .map_err(|_| StoreError::Corrupt(format!("journal sequence {seq}")))?;
        Ok((seq, ops))
    })
    .collect()
}

/// The highest sequence in the journal, if any.
pub fn last_seq(conn: &Connection) -> Result<Option<u64>, StoreError> {
    let last: Option<i64> = conn
        .query_row("SELECT max(seq) FROM journal", [], |row| row.get(0))
        .map_err(unavailable)?;
    Ok(last.and_then(|s| u64::try_from(s).ok()))
}

/// Deletes the rows the items table holds.
pub fn drop_up_to(conn: &Connection, seq: u64) -> Result<(), StoreError> {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    conn.execute("DELETE FROM journal WHERE seq <= ?1", params![seq])
        .map_err(unavailable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let ops = vec![
            WriteOp::Put {
                item: Item {
                    key: Key::new("p", "s"),
                    version: 3,
                    body: vec![1, 2, 3],
                },
                condition: Condition::Version(2),
            },
            WriteOp::Delete {
                key: Key::new("p", "t"),
                condition: Condition::None,
            },
        ];
        let back = decode(1, &encode(&ops)).expect("decode");
        assert_eq!(back.len(), 2);
        assert!(
            matches!(&back[0], WriteOp::Put { item, condition: Condition::None } if item.version == 3 && item.body == [1, 2, 3])
        );
        assert!(matches!(&back[1], WriteOp::Delete { key, .. } if key.sk == "t"));
        assert!(decode(2, &[0xff, 0xff]).is_err());
    }
}
