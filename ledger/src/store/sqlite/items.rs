//! The items table: the DynamoDB-shaped table that reads are answered from (with
//! `audit_items` for the audit log's partitions).

use rusqlite::{CachedStatement, Connection, TransactionBehavior, params};

use super::overlay::Layer;
use super::unavailable;
use crate::store::{Item, Key, Page, Query, StoreError, WriteOp};

fn version_i64(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::Invalid(format!("version {version} too large")))
}

fn read_version(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative version {v}")))
}

/// The journal position the items table holds.
pub fn applied_seq(conn: &Connection) -> Result<u64, StoreError> {
    let seq: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'applied_seq'",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("applied_seq {seq}")))
}

/// The table that holds a partition's items: the audit log's partitions have one of their own,
/// append-only (`schema::ITEMS_MIGRATIONS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Items,
    Audit,
}

/// Statements of one table, each written out so that SQLite caches it prepared.
macro_rules! statement {
    ($table:expr, $items:literal, $audit:literal) => {
        match $table {
            Table::Items => $items,
            Table::Audit => $audit,
        }
    };
}

impl Table {
    fn of(pk: &str) -> Table {
        if pk.starts_with(crate::layout::AUDIT_PREFIX) {
            Table::Audit
        } else {
            Table::Items
        }
    }

    /// Writes an item. An upsert, not `INSERT OR REPLACE`: a replace deletes the old row
    /// without firing delete triggers, which would slip past the audit log's (`schema`).
    /// Writing an item as it already is (a replay) changes nothing and fires nothing.
    fn upsert(self) -> &'static str {
        statement!(
            self,
            "INSERT INTO items (pk, sk, version, body) VALUES (?1, ?2, ?3, ?4) \
            ON CONFLICT (pk, sk) DO UPDATE SET version = excluded.version, body = excluded.body \
            WHERE version IS NOT excluded.version OR body IS NOT excluded.body",
            "INSERT INTO audit_items (pk, sk, version, body) VALUES (?1, ?2, ?3, ?4) \
            ON CONFLICT (pk, sk) DO UPDATE SET version = excluded.version, body = excluded.body \
            WHERE version IS NOT excluded.version OR body IS NOT excluded.body"
        )
    }

    fn delete(self) -> &'static str {
        statement!(
            self,
            "DELETE FROM items WHERE pk = ?1 AND sk = ?2",
            "DELETE FROM audit_items WHERE pk = ?1 AND sk = ?2"
        )
    }

    fn get(self) -> &'static str {
        statement!(
            self,
            "SELECT version, body FROM items WHERE pk = ?1 AND sk = ?2",
            "SELECT version, body FROM audit_items WHERE pk = ?1 AND sk = ?2"
        )
    }

    fn version(self) -> &'static str {
        statement!(
            self,
            "SELECT version FROM items WHERE pk = ?1 AND sk = ?2",
            "SELECT version FROM audit_items WHERE pk = ?1 AND sk = ?2"
        )
    }

    fn scan(self, descending: bool) -> &'static str {
        macro_rules! scan {
            ($table:literal, $order:literal) => {
                concat!(
                    "SELECT sk, version, body FROM ",
                    $table,
                    " WHERE pk = ?1 AND sk >= ?2 AND sk < ?3 ORDER BY sk ",
                    $order,
                    " LIMIT ?4"
                )
            };
        }
        match (self, descending) {
            (Table::Items, false) => scan!("items", "ASC"),
            (Table::Items, true) => scan!("items", "DESC"),
            (Table::Audit, false) => scan!("audit_items", "ASC"),
            (Table::Audit, true) => scan!("audit_items", "DESC"),
        }
    }
}

/// One statement for each table, prepared when first needed.
struct Statements<'c> {
    conn: &'c Connection,
    sql: fn(Table) -> &'static str,
    items: Option<CachedStatement<'c>>,
    audit: Option<CachedStatement<'c>>,
}

impl<'c> Statements<'c> {
    fn new(conn: &'c Connection, sql: fn(Table) -> &'static str) -> Statements<'c> {
        Statements {
            conn,
            sql,
            items: None,
            audit: None,
        }
    }

    /// The statement for the table of partition `pk`.
    fn of(&mut self, pk: &str) -> Result<&mut CachedStatement<'c>, StoreError> {
        let table = Table::of(pk);
        let slot = match table {
            Table::Items => &mut self.items,
            Table::Audit => &mut self.audit,
        };
        if slot.is_none() {
            *slot = Some(
                self.conn
                    .prepare_cached((self.sql)(table))
                    .map_err(unavailable)?,
            );
        }
        slot.as_mut()
            .ok_or_else(|| StoreError::Unavailable("statement not prepared".into()))
    }
}

/// Writes a layer (latest value per key) and the journal position it reaches, in one
/// transaction. Keys come sorted, so the b-tree is walked in order.
pub fn materialize(conn: &mut Connection, layer: &Layer, seq: u64) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    {
        let mut put = Statements::new(&tx, Table::upsert);
        let mut delete = Statements::new(&tx, Table::delete);
        for (pk, sk, value) in layer.sorted() {
            match value {
                Some(item) => {
                    let version = version_i64(item.version)?;
                    put.of(pk)?.execute(params![pk, sk, version, item.body])
                }
                None => delete.of(pk)?.execute(params![pk, sk]),
            }
            .map_err(unavailable)?;
        }
    }
    set_applied(&tx, seq)?;
    tx.commit().map_err(unavailable)
}

/// Replays journal rows (in order) into the items table, in one transaction.
pub fn replay(conn: &mut Connection, rows: &[(u64, Vec<WriteOp>)]) -> Result<(), StoreError> {
    let Some(last) = rows.last().map(|(seq, _)| *seq) else {
        return Ok(());
    };
    let mut layer = Layer::new();
    for (_, ops) in rows {
        for op in ops {
            match op {
                WriteOp::Put { item, .. } => layer.insert(item.key.clone(), Some(item.clone())),
                WriteOp::Delete { key, .. } => layer.insert(key.clone(), None),
            };
        }
    }
    materialize(conn, &layer, last)
}

fn set_applied(conn: &Connection, seq: u64) -> Result<(), StoreError> {
    let seq =
        i64::try_from(seq).map_err(|_| StoreError::Invalid("journal sequence overflow".into()))?;
    conn.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'applied_seq'")
        .and_then(|mut s| s.execute(params![seq]))
        .map_err(unavailable)?;
    Ok(())
}

/// Reads several keys in one read transaction (one snapshot).
pub fn get_all(conn: &mut Connection, keys: &[&Key]) -> Result<Vec<Option<Item>>, StoreError> {
    let tx = conn.transaction().map_err(unavailable)?;
    let mut out = Vec::with_capacity(keys.len());
    {
        let mut get = Statements::new(&tx, Table::get);
        for key in keys {
            let mut rows = get
                .of(&key.pk)?
                .query(params![key.pk, key.sk])
                .map_err(unavailable)?;
            let item = match rows.next().map_err(unavailable)? {
                Some(row) => Some(Item {
                    key: (*key).clone(),
                    version: read_version(row.get(0).map_err(unavailable)?)?,
                    body: row.get(1).map_err(unavailable)?,
                }),
                None => None,
            };
            out.push(item);
        }
    }
    tx.finish().map_err(unavailable)?;
    Ok(out)
}

/// Versions of several keys (`None`: absent), in one read transaction.
pub fn versions(conn: &mut Connection, keys: &[&Key]) -> Result<Vec<Option<u64>>, StoreError> {
    let tx = conn.transaction().map_err(unavailable)?;
    let mut out = Vec::with_capacity(keys.len());
    {
        let mut version = Statements::new(&tx, Table::version);
        for key in keys {
            let mut rows = version
                .of(&key.pk)?
                .query(params![key.pk, key.sk])
                .map_err(unavailable)?;
            let version = match rows.next().map_err(unavailable)? {
                Some(row) => Some(read_version(row.get(0).map_err(unavailable)?)?),
                None => None,
            };
            out.push(version);
        }
    }
    tx.finish().map_err(unavailable)?;
    Ok(out)
}

/// The sort-key bounds of a query as `[low, high)`: an exclusive lower bound `s` is the
/// inclusive `s\0`, the smallest string after it (sort keys never contain NUL).
pub fn bounds(q: &Query) -> (String, String) {
    let mut low = q.from.clone();
    let mut high = format!("{}\0", q.to);
    match (&q.after, q.descending) {
        (Some(after), false) => low = low.max(format!("{after}\0")),
        (Some(after), true) => high = high.min(after.clone()),
        (None, _) => {}
    }
    (low, high)
}

/// Up to `fetch` items of the items table in `[low, high)`, in the query's order.
pub fn scan(
    conn: &mut Connection,
    q: &Query,
    low: &str,
    high: &str,
    fetch: usize,
) -> Result<Vec<Item>, StoreError> {
    let fetch = i64::try_from(fetch).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(Table::of(&q.pk).scan(q.descending))
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(params![q.pk, low, high, fetch])
        .map_err(unavailable)?;
    let mut items = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        items.push(Item {
            key: Key::new(q.pk.clone(), row.get::<_, String>(0).map_err(unavailable)?),
            version: read_version(row.get(1).map_err(unavailable)?)?,
            body: row.get(2).map_err(unavailable)?,
        });
    }
    Ok(items)
}

/// Merges a scan of the items table with the overlay's entries of the same range into a page.
///
/// `scanned` holds up to `fetched` rows in the query's order; `overlay` the overlay's entries in
/// the range, ascending. When the scan was cut short (`scanned.len() == fetched`), only rows up
/// to its last sort key are known, so overlay entries beyond it wait for a later page. `fetched`
/// is at least `limit + overlay.len() + 1`, so that a full scan always leaves more than `limit`
/// visible rows before its cut (each overlay entry hides at most one scanned row).
pub fn merge_page(
    q: &Query,
    scanned: Vec<Item>,
    fetched: usize,
    overlay: Vec<(String, Option<Item>)>,
) -> Page {
    let cut = (scanned.len() == fetched)
        .then(|| scanned.last().map(|i| i.key.sk.clone()))
        .flatten();
    let mut merged: std::collections::BTreeMap<String, Item> =
        scanned.into_iter().map(|i| (i.key.sk.clone(), i)).collect();
    for (sk, value) in overlay {
        let known = match (&cut, q.descending) {
            (None, _) => true,
            (Some(cut), false) => sk <= *cut,
            (Some(cut), true) => sk >= *cut,
        };
        if !known {
            continue;
        }
        match value {
            Some(item) => merged.insert(sk, item),
            None => merged.remove(&sk),
        };
    }
    let visible = merged.len();
    let mut items: Vec<Item> = if q.descending {
        merged.into_values().rev().take(q.limit).collect()
    } else {
        merged.into_values().take(q.limit).collect()
    };
    items.shrink_to_fit();
    let more = visible > q.limit;
    let next = if more {
        items.last().map(|i| i.key.sk.clone())
    } else {
        None
    };
    Page { items, next }
}
