//! Writes that are durable in the journal but not yet in the items table.
//!
//! Every read consults the overlay before the items table, so a write is visible the moment its
//! journal row is synced. The overlay has two layers: `active` takes new writes; when the
//! materializer runs, it freezes `active` (readers still see it, under the new `active`) and
//! copies it into the items table, then drops it. Both layers hold the latest value of a key,
//! `None` for a delete.

use std::collections::BTreeMap;
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
}

impl Overlay {
    /// What the overlay knows of a key: `None` if nothing (read the items table), `Some(None)`
    /// if it was deleted, `Some(Some(item))` if written.
    pub fn lookup(&self, key: &Key) -> Option<Option<&Item>> {
        if let Some(value) = self.active.get(key) {
            return Some(value.as_ref());
        }
        self.frozen.as_ref()?.get(key).map(Option::as_ref)
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

    /// Drops the frozen layer once the items table holds it.
    pub fn thaw(&mut self) {
        self.frozen = None;
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
}
