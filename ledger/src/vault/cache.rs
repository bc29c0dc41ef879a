//! The data-key cache: bounded maps of single-flight slots.
//!
//! A [`Slots`] map holds at most `capacity` slots, evicting the oldest inserted when full.
//! Each slot is an async mutex around an optional value: the first task to find a slot empty or
//! stale fills it while holding the lock (one key-service call), and the tasks that arrive
//! meanwhile wait for that call instead of making their own. That is what makes 10,000
//! concurrent seals on a cold cache cost one `GenerateDataKey`.
//!
//! Plaintext keys live in [`Secret`]s behind `Arc`s: a value taken out of a slot (evicted,
//! expired, replaced) drops its `Arc` at once, and the key is zeroized when the last seal or
//! open using it finishes (at once, unless one is in flight).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::types::{KeyContext, Secret, WrappedKey};
use crate::time::Timestamp;

/// The key of an unwrapped data key in the open cache and of the rewrap memo: the context it is
/// bound to and the whole wrapped key. A key unwrapped for one tenant is never found for
/// another: the context is part of the key.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct BlobKey {
    context: KeyContext,
    key_id: String,
    key_version: u32,
    blob: Vec<u8>,
}

impl BlobKey {
    pub(crate) fn new(context: &KeyContext, wrapped: &WrappedKey) -> BlobKey {
        BlobKey {
            context: context.clone(),
            key_id: wrapped.key_id.clone(),
            key_version: wrapped.key_version,
            blob: wrapped.blob.clone(),
        }
    }
}

/// The data key a context seals with now.
pub(crate) struct SealKey {
    pub(crate) secret: Arc<Secret>,
    pub(crate) wrapped: WrappedKey,
    pub(crate) created: Timestamp,
    /// Values sealed under it so far.
    pub(crate) uses: u64,
}

/// An unwrapped data key, for opening.
pub(crate) struct OpenKey {
    pub(crate) secret: Arc<Secret>,
    pub(crate) created: Timestamp,
}

/// Whether a key cached at `created` is too old at `now`. A clock that went back counts as too
/// old: the key's age is then unknown.
pub(crate) fn expired(created: Timestamp, now: Timestamp, age_max: Duration) -> bool {
    now < created || created.plus(age_max) <= now
}

/// One cache entry: a value, filled by one task at a time.
pub(crate) struct Slot<V> {
    pub(crate) value: tokio::sync::Mutex<Option<V>>,
}

struct Entry<V> {
    seq: u64,
    slot: Arc<Slot<V>>,
}

struct SlotMap<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Insertion order: the first is evicted first.
    order: BTreeMap<u64, K>,
    next_seq: u64,
}

/// A bounded map of slots.
pub(crate) struct Slots<K, V> {
    state: Mutex<SlotMap<K, V>>,
    capacity: usize,
}

impl<K, V> fmt::Debug for Slots<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the values: they hold keys.
        f.debug_struct("Slots")
            .field("len", &self.lock().entries.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<K, V> Slots<K, V> {
    fn lock(&self) -> MutexGuard<'_, SlotMap<K, V>> {
        // Nothing here can leave the map half-changed on a panic: every change is a single
        // insert or remove on each of the two maps.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Slots in the map now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl<K: Clone + Eq + Hash, V> Slots<K, V> {
    /// An empty map of at most `capacity` slots (at least one).
    pub(crate) fn new(capacity: usize) -> Slots<K, V> {
        Slots {
            state: Mutex::new(SlotMap {
                entries: HashMap::new(),
                order: BTreeMap::new(),
                next_seq: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    /// The slot of `key`, a new empty one if there was none; and how many slots were evicted
    /// to make room (their values dropped now, unless a task is filling or using them).
    pub(crate) fn slot(&self, key: &K) -> (Arc<Slot<V>>, u64) {
        let mut evicted = Vec::new();
        let slot = {
            let mut map = self.lock();
            if let Some(entry) = map.entries.get(key) {
                return (entry.slot.clone(), 0);
            }
            while map.entries.len() >= self.capacity {
                let Some((_, oldest)) = map.order.pop_first() else {
                    break;
                };
                if let Some(entry) = map.entries.remove(&oldest) {
                    evicted.push(entry.slot);
                }
            }
            let seq = map.next_seq;
            map.next_seq += 1;
            let slot = Arc::new(Slot {
                value: tokio::sync::Mutex::new(None),
            });
            map.order.insert(seq, key.clone());
            map.entries.insert(
                key.clone(),
                Entry {
                    seq,
                    slot: slot.clone(),
                },
            );
            slot
        };
        let count = evicted.len() as u64;
        for slot in evicted {
            clear(&slot);
        }
        (slot, count)
    }

    /// Removes `key`'s slot if it is `slot` and holds nothing (a fill that failed), so that
    /// failed lookups do not push cached keys out. A slot another task has found (and is about
    /// to lock) stays: that task fills it.
    pub(crate) fn remove_if_empty(&self, key: &K, slot: &Arc<Slot<V>>) {
        let mut map = self.lock();
        let empty = match map.entries.get(key) {
            // Two references: the map's and the caller's.
            Some(entry) if Arc::ptr_eq(&entry.slot, slot) && Arc::strong_count(slot) <= 2 => slot
                .value
                .try_lock()
                .map(|value| value.is_none())
                .unwrap_or(false),
            _ => false,
        };
        if empty && let Some(entry) = map.entries.remove(key) {
            map.order.remove(&entry.seq);
        }
    }

    /// Removes every slot whose value `stale` says is stale, or that holds nothing; slots a
    /// task holds (has found, or locked) are left for the next sweep. Returns how many values
    /// were dropped.
    pub(crate) fn sweep(&self, stale: impl Fn(&V) -> bool) -> u64 {
        let mut removed = Vec::new();
        {
            let mut map = self.lock();
            let SlotMap { entries, order, .. } = &mut *map;
            entries.retain(|_, entry| {
                // A task that found an empty slot and has not locked it yet is about to fill
                // it: removing the slot now would let the next task make a second one and a
                // second key-service call, which single flight exists to prevent.
                if Arc::strong_count(&entry.slot) > 1 {
                    return true;
                }
                let Ok(mut value) = entry.slot.value.try_lock() else {
                    return true;
                };
                let keep = value.as_ref().is_some_and(|v| !stale(v));
                if !keep {
                    order.remove(&entry.seq);
                    if let Some(v) = value.take() {
                        removed.push(v);
                    }
                }
                keep
            });
        }
        let count = removed.len() as u64;
        // Dropped outside the map's lock: zeroizing is quick, but nothing needs to wait for it.
        drop(removed);
        count
    }
}

/// Drops a slot's value now if no task holds it.
fn clear<V>(slot: &Slot<V>) {
    if let Ok(mut value) = slot.value.try_lock() {
        value.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_slot_is_evicted_when_full_and_its_value_dropped() {
        let slots: Slots<u32, Arc<()>> = Slots::new(2);
        let value = Arc::new(());
        for key in 0..2 {
            let (slot, evicted) = slots.slot(&key);
            assert_eq!(evicted, 0);
            *slot.value.try_lock().expect("free") = Some(value.clone());
        }
        assert_eq!(Arc::strong_count(&value), 3);
        let (_, evicted) = slots.slot(&0);
        assert_eq!(evicted, 0, "a hit evicts nothing");
        let (_, evicted) = slots.slot(&2);
        assert_eq!(evicted, 1);
        assert_eq!(slots.len(), 2);
        assert_eq!(Arc::strong_count(&value), 2, "the evicted value is dropped");
        // Key 0 was the oldest inserted, so it went; 1 is still there.
        let (slot, _) = slots.slot(&1);
        assert!(slot.value.try_lock().expect("free").is_some());
    }

    #[test]
    fn sweep_drops_stale_and_empty_slots_and_skips_busy_ones() {
        let slots: Slots<u32, u32> = Slots::new(8);
        for key in 0..4 {
            let (slot, _) = slots.slot(&key);
            if key > 0 {
                *slot.value.try_lock().expect("free") = Some(key);
            }
        }
        let (busy, _) = slots.slot(&3);
        let guard = busy.value.try_lock().expect("free");
        // 0 is empty, 1 stale, 2 fresh, 3 stale but busy.
        let removed = slots.sweep(|v| *v != 2);
        assert_eq!(removed, 1);
        assert_eq!(slots.len(), 2);
        drop(guard);
        drop(busy);
        assert_eq!(slots.sweep(|v| *v != 2), 1);
        assert_eq!(slots.len(), 1);
    }

    #[test]
    fn a_failed_fill_leaves_no_slot() {
        let slots: Slots<u32, u32> = Slots::new(8);
        let (slot, _) = slots.slot(&7);
        slots.remove_if_empty(&7, &slot);
        assert_eq!(slots.len(), 0);
        let (slot, _) = slots.slot(&7);
        *slot.value.try_lock().expect("free") = Some(1);
        slots.remove_if_empty(&7, &slot);
        assert_eq!(slots.len(), 1);
    }

    #[test]
    fn a_slot_a_task_has_found_is_neither_swept_nor_removed() {
        let slots: Slots<u32, u32> = Slots::new(8);
        let (found, _) = slots.slot(&1);
        // Another task found it too, and has not locked it yet.
        let (other, _) = slots.slot(&1);
        assert_eq!(slots.sweep(|_| true), 0);
        assert_eq!(
            slots.len(),
            1,
            "an empty slot a task holds survives a sweep"
        );
        slots.remove_if_empty(&1, &found);
        assert_eq!(slots.len(), 1, "the other task still fills it");
        drop(other);
        slots.remove_if_empty(&1, &found);
        assert_eq!(slots.len(), 0);
        let (again, _) = slots.slot(&1);
        assert!(!Arc::ptr_eq(&again, &found));
        drop(again);
        assert_eq!(slots.sweep(|_| true), 0, "nothing held a value");
        assert_eq!(slots.len(), 0, "an empty slot nobody holds is swept");
    }

    #[test]
    fn expiry_counts_a_clock_that_went_back() {
        let at = Timestamp::from_micros(10_000_000);
        let age = Duration::from_secs(5);
        assert!(!expired(at, at, age));
        assert!(!expired(at, at.plus(Duration::from_millis(4999)), age));
        assert!(expired(at, at.plus(age), age));
        assert!(expired(at, Timestamp::from_micros(9_999_999), age));
    }
}
