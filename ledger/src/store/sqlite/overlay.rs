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
use std::ops::Bound;
use std::sync::Arc;

use crate::store::{Item, Key, KeyHasher as Hasher, WriteOp};

/// One layer: the latest value of each key (`None`: deleted), by partition and then by sort
/// key. A point lookup hashes the partition and compares sort keys only (store keys share long
/// prefixes, which make comparing whole keys slow); a range query walks one partition.
#[derive(Debug, Default)]
pub struct Layer {
    partitions: HashMap<String, Partition, Hasher>,
    len: usize,
}

/// The values of one partition. Many partitions hold a single item (an idempotency record is
/// alone in its own), and a b-tree's smallest node is the size of eleven, so one item is kept
/// inline.
#[derive(Debug)]
enum Partition {
    One(String, Option<Item>),
    Many(BTreeMap<String, Option<Item>>),
}

impl Partition {
    fn get(&self, sk: &str) -> Option<&Option<Item>> {
        match self {
            Partition::One(only, value) => (only == sk).then_some(value),
            Partition::Many(map) => map.get(sk),
        }
    }

    /// Sets a value; whether the sort key is new to the partition.
    fn insert(&mut self, sk: String, value: Option<Item>) -> bool {
        match self {
            Partition::One(only, old) if *only == sk => {
                *old = value;
                false
            }
            Partition::One(only, old) => {
                let first = (std::mem::take(only), old.take());
                *self = Partition::Many(BTreeMap::from([first, (sk, value)]));
                true
            }
            Partition::Many(map) => map.insert(sk, value).is_none(),
        }
    }

    /// Values with sort keys in `[low, high)` (`low < high`), ascending.
    fn range<'a>(
        &'a self,
        low: &'a str,
        high: &'a str,
    ) -> Box<dyn Iterator<Item = (&'a String, &'a Option<Item>)> + 'a> {
        match self {
            Partition::One(only, value) => {
                let inside = low <= only.as_str() && only.as_str() < high;
                Box::new(inside.then_some((only, value)).into_iter())
            }
            Partition::Many(map) => {
                Box::new(map.range::<str, _>((Bound::Included(low), Bound::Excluded(high))))
            }
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&String, &Option<Item>)> + '_> {
        match self {
            Partition::One(only, value) => Box::new(std::iter::once((only, value))),
            Partition::Many(map) => Box::new(map.iter()),
        }
    }
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Layer {
        Layer::default()
    }

    /// The value of a key, if the layer has one.
    pub fn get(&self, key: &Key) -> Option<&Option<Item>> {
        self.partitions.get(&key.pk)?.get(&key.sk)
    }

    /// Sets the value of a key.
    pub fn insert(&mut self, key: Key, value: Option<Item>) {
        let Key { pk, sk } = key;
        let added = match self.partitions.get_mut(&pk) {
            Some(partition) => partition.insert(sk, value),
            None => {
                self.partitions.insert(pk, Partition::One(sk, value));
                true
            }
        };
        self.len += usize::from(added);
    }

    /// One partition's values with sort keys in `[low, high)`, ascending; nothing if `low` is
    /// not below `high`.
    pub fn range<'a>(
        &'a self,
        pk: &str,
        low: &'a str,
        high: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Option<Item>)> + 'a {
        self.partitions
            .get(pk)
            .filter(|_| low < high)
            .into_iter()
            .flat_map(move |partition| partition.range(low, high))
    }

    /// Every value with its partition and sort key, in key order (partitions sorted, then
    /// sort keys), so that the items table's b-tree is walked in order.
    pub fn sorted(&self) -> Vec<(&str, &str, &Option<Item>)> {
        let mut partitions: Vec<_> = self.partitions.iter().collect();
        partitions.sort_unstable_by(|a, b| a.0.cmp(b.0));
        partitions
            .into_iter()
            .flat_map(|(pk, partition)| {
                partition
                    .iter()
                    .map(move |(sk, value)| (pk.as_str(), sk.as_str(), value))
            })
            .collect()
    }

    /// Keys in the layer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the layer holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

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
    retained: HashMap<Key, Item, Hasher>,
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
        let mut merged: BTreeMap<String, Option<Item>> = BTreeMap::new();
        if let Some(frozen) = &self.frozen {
            for (sk, value) in frozen.range(pk, low, high) {
                merged.insert(sk.clone(), value.clone());
            }
        }
        for (sk, value) in self.active.range(pk, low, high) {
            merged.insert(sk.clone(), value.clone());
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
        for (pk, partition) in &frozen.partitions {
            for (sk, value) in partition.iter() {
                match value {
                    Some(item) if item.version > 1 => {
                        self.retained.insert(item.key.clone(), item.clone());
                    }
                    // Created again, or deleted: the table's value is the one to read.
                    Some(item) => {
                        self.retained.remove(&item.key);
                    }
                    None => {
                        self.retained.remove(&Key::new(pk.as_str(), sk.as_str()));
                    }
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
    fn a_layer_counts_keys_once_and_lists_them_in_key_order() {
        let mut layer = Layer::new();
        for (pk, sk, v) in [("q", "b", 1), ("p", "z", 1), ("q", "a", 1), ("p", "z", 2)] {
            layer.insert(
                Key::new(pk, sk),
                Some(Item {
                    key: Key::new(pk, sk),
                    version: v,
                    body: vec![],
                }),
            );
        }
        layer.insert(Key::new("a", "x"), None);
        assert_eq!(layer.len(), 4);
        let keys: Vec<_> = layer
            .sorted()
            .into_iter()
            .map(|(pk, sk, v)| (pk, sk, v.as_ref().map(|i| i.version)))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("a", "x", None),
                ("p", "z", Some(2)),
                ("q", "a", Some(1)),
                ("q", "b", Some(1))
            ]
        );
        let in_q: Vec<_> = layer
            .range("q", "a", "b")
            .map(|(sk, _)| sk.as_str())
            .collect();
        assert_eq!(in_q, vec!["a"]);
        assert_eq!(layer.range("r", "", "z").count(), 0);
        assert_eq!(
            layer.range("q", "b", "a").count(),
            0,
            "an empty range, not a panic"
        );
        // A partition of one: found, replaced in place, ranged, then grown.
        assert_eq!(layer.get(&Key::new("a", "x")), Some(&None));
        assert_eq!(layer.get(&Key::new("a", "y")), None);
        assert_eq!(layer.range("a", "x", "y").count(), 1);
        assert_eq!(layer.range("a", "a", "x").count(), 0);
        layer.insert(Key::new("a", "x"), None);
        assert_eq!(layer.len(), 4);
        layer.insert(Key::new("a", "w"), None);
        assert_eq!(layer.len(), 5);
        let in_a: Vec<_> = layer
            .range("a", "", "z")
            .map(|(sk, _)| sk.as_str())
            .collect();
        assert_eq!(in_a, vec!["w", "x"]);
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
