//! Writes that are durable in the journal but not yet in the items table.
//!
//! Every read consults the overlay before the items table, so a write is visible the moment its
//! journal row is synced. The overlay has two layers: `active` takes new writes; when the
//! materializer runs, it freezes `active` (readers still see it, under the new `active`) and
//! copies it into the items table, then drops it. Both layers hold the latest value of a key,
//! `None` for a delete.
//!
//! Items that have been replaced at least once (version above 1: account heads, transfers that
//! were posted or voided) are likely to be read and replaced again, so when a layer is dropped
//! they stay in `retained`, a bounded copy of what the items table holds for them. Write-once
//! items (entries, idempotency records) are not kept. Only the materializer changes `retained`,
//! from the layer the table now holds, so a retained item is never older than the table's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::store::{Item, Key, WriteOp};

/// One layer: key to latest value (`None`: deleted).
pub type Layer = BTreeMap<Key, Option<Item>>;

/// The two layers and the journal position they reach.
#[derive(Debug, Default)]
pub struct Overlay {
    active: Layer,
    frozen: Option<Arc<Layer>>,
    /// Journal sequence of the newest write in `active`.
    active_seq: u64,
    /// Journal sequence the frozen layer reaches.
    frozen_seq: u64,
    /// Items the table holds, kept from dropped layers (see the module docs); not counted in
    /// [`Overlay::len`].
    retained: HashMap<Key, Item>,
}

/// Most items [`Overlay`] keeps from dropped layers; half of them go when it is full.
pub const RETAINED_MAX: usize = 65_536;

impl Overlay {
    /// What the overlay knows of a key: `None` if nothing (read the items table), `Some(None)`
    /// if it was deleted, `Some(Some(item))` if written.
    pub fn lookup(&self, key: &Key) -> Option<Option<&Item>> {
        if let Some(value) = self.active.get(key) {
            return Some(value.as_ref());
        }
        if let Some(value) = self.frozen.as_ref().and_then(|f| f.get(key)) {
            return Some(value.as_ref());
        }
        self.retained.get(key).map(Some)
    }

    /// Records a transaction's writes, durable in the journal as `seq`.
    pub fn apply(&mut self, seq: u64, ops: Vec<WriteOp>) {
        for op in ops {
            match op {
                WriteOp::Put { item, .. } => {
                    self.active.insert(item.key.clone(), Some(item));
                }
                WriteOp::Delete { key, .. } => {
                    self.active.insert(key, None);
                }
            }
        }
        self.active_seq = seq;
    }

    /// The overlay's entries of one partition with sort keys in `[low, high)`, ascending; the
    /// active layer wins over the frozen one.
    pub fn range(&self, pk: &str, low: &str, high: &str) -> Vec<(String, Option<Item>)> {
        if low >= high {
            return Vec::new();
        }
        let bounds = Key::new(pk, low)..Key::new(pk, high);
        let mut merged: BTreeMap<String, Option<Item>> = BTreeMap::new();
        if let Some(frozen) = &self.frozen {
            for (key, value) in frozen.range(bounds.clone()) {
                merged.insert(key.sk.clone(), value.clone());
            }
        }
        for (key, value) in self.active.range(bounds) {
            merged.insert(key.sk.clone(), value.clone());
        }
        merged.into_iter().collect()
    }

    /// Items in both layers.
    pub fn len(&self) -> usize {
        self.active.len() + self.frozen.as_ref().map_or(0, |f| f.len())
    }

    /// Whether both layers are empty: the items table holds everything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items waiting in the active layer.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// The layer to materialize and the journal sequence it reaches: the frozen layer again if
    /// an earlier attempt failed, else the active layer, frozen now. `None` if nothing waits.
    pub fn freeze(&mut self) -> Option<(Arc<Layer>, u64)> {
        if let Some(frozen) = &self.frozen {
            return Some((frozen.clone(), self.frozen_seq));
        }
        if self.active.is_empty() {
            return None;
        }
        let layer = Arc::new(std::mem::take(&mut self.active));
        self.frozen = Some(layer.clone());
        self.frozen_seq = self.active_seq;
        Some((layer, self.frozen_seq))
    }

    /// Drops the frozen layer once the items table holds it, keeping its replaced items.
    pub fn thaw(&mut self) {
        let Some(frozen) = self.frozen.take() else {
            return;
        };
        for (key, value) in frozen.iter() {
            match value {
                Some(item) if item.version > 1 => {
                    self.retained.insert(key.clone(), item.clone());
                }
                // Deleted, or created again: the table's value is the one to read.
                _ => {
                    self.retained.remove(key);
                }
            }
        }
        if self.retained.len() > RETAINED_MAX {
            let mut keep = false;
            self.retained.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
    }

    /// Items kept from dropped layers.
    pub fn retained_len(&self) -> usize {
        self.retained.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Condition;

    fn put(pk: &str, sk: &str, v: u64) -> WriteOp {
        WriteOp::Put {
            item: Item {
                key: Key::new(pk, sk),
                version: v,
                body: vec![v as u8],
            },
            condition: Condition::None,
        }
    }

    #[test]
    fn active_wins_over_frozen_and_deletes_hide() {
        let mut o = Overlay::default();
        o.apply(
            1,
            vec![put("p", "a", 1), put("p", "b", 1), put("q", "a", 1)],
        );
        let (frozen, seq) = o.freeze().expect("something to freeze");
        assert_eq!((frozen.len(), seq), (3, 1));
        o.apply(
            2,
            vec![
                put("p", "a", 2),
                WriteOp::Delete {
                    key: Key::new("p", "b"),
                    condition: Condition::None,
                },
            ],
        );
        assert_eq!(
            o.lookup(&Key::new("p", "a")).flatten().map(|i| i.version),
            Some(2)
        );
        assert_eq!(o.lookup(&Key::new("p", "b")), Some(None));
        assert_eq!(
            o.lookup(&Key::new("q", "a")).flatten().map(|i| i.version),
            Some(1)
        );
        assert_eq!(o.lookup(&Key::new("p", "c")), None);
        let range: Vec<_> = o
            .range("p", "", "z")
            .into_iter()
            .map(|(sk, v)| (sk, v.map(|i| i.version)))
            .collect();
        assert_eq!(
            range,
            vec![("a".to_owned(), Some(2)), ("b".to_owned(), None)]
        );
        assert!(o.range("p", "b", "b").is_empty());
        // A failed materialization hands the same frozen layer out again.
        assert_eq!(o.freeze().map(|(l, s)| (l.len(), s)), Some((3, 1)));
        o.thaw();
        assert_eq!(o.lookup(&Key::new("q", "a")), None);
        assert_eq!(o.freeze().map(|(l, s)| (l.len(), s)), Some((2, 2)));
    }

    #[test]
    fn replaced_items_outlive_their_layer_and_deletes_drop_them() {
        let mut o = Overlay::default();
        o.apply(
            1,
            vec![put("p", "a", 1), put("p", "b", 2), put("p", "c", 3)],
        );
        o.freeze().expect("something to freeze");
        o.thaw();
        assert!(o.is_empty(), "retained items are not waiting for the table");
        assert_eq!(o.retained_len(), 2);
        // Written once: read from the table. Replaced: kept.
        assert_eq!(o.lookup(&Key::new("p", "a")), None);
        assert_eq!(
            o.lookup(&Key::new("p", "b")).flatten().map(|i| i.version),
            Some(2)
        );
        // Newer layers win over retained items, and replace or drop them when they go.
        o.apply(
            2,
            vec![
                put("p", "b", 4),
                WriteOp::Delete {
                    key: Key::new("p", "c"),
                    condition: Condition::None,
                },
            ],
        );
        assert_eq!(
            o.lookup(&Key::new("p", "b")).flatten().map(|i| i.version),
            Some(4)
        );
        assert_eq!(o.lookup(&Key::new("p", "c")), Some(None));
        o.freeze().expect("something to freeze");
        o.thaw();
        assert_eq!(
            o.lookup(&Key::new("p", "b")).flatten().map(|i| i.version),
            Some(4)
        );
        assert_eq!(o.lookup(&Key::new("p", "c")), None, "read from the table");
        // Recreated at version 1: the retained copy goes.
        o.apply(3, vec![put("p", "b", 1)]);
        o.freeze().expect("something to freeze");
        o.thaw();
        assert_eq!(o.lookup(&Key::new("p", "b")), None);
    }

    #[test]
    fn retained_items_are_bounded() {
        let mut o = Overlay::default();
        let ops = (0..=RETAINED_MAX)
            .map(|i| put("p", &format!("{i:08}"), 2))
            .collect();
        o.apply(1, ops);
        o.freeze().expect("something to freeze");
        o.thaw();
        assert!(o.retained_len() <= RETAINED_MAX);
        assert!(o.retained_len() >= RETAINED_MAX / 2);
    }
}
