//! The limiters' state: one GCRA cell per key, in a concurrent map with a hard bound.
//!
//! governor's own keyed store (a `DashMap`) grows with every new key until `retain_recent`
//! runs; keys a client chooses (addresses, with IPv6 plenty of them) could grow it without
//! bound between two sweeps. [`BoundedStore`] counts its keys: once `len_max` of them
//! are tracked, a key it does not know shares one overflow cell with every other such key until
//! the sweep frees room. Known keys keep their own budgets; memory stays bounded (the bound
//! can be overshot only by keys inserted concurrently with the check, at most one per request
//! in flight). The sweep (`retain_recent`, run in the background) drops keys whose state is
//! back to fresh, exactly as governor's own store does.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};

/// A keyed GCRA state store holding at most about `len_max` keys.
#[derive(Debug)]
pub struct BoundedStore<K: Hash + Eq> {
    map: DashMap<K, InMemoryState>,
    len: AtomicUsize,
    len_max: usize,
    /// The cell keys share while the map is full.
    overflow: InMemoryState,
    /// Set when a key was turned to the overflow cell; the sweep reads and clears it.
    overflowed: Arc<AtomicBool>,
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
    /// An empty store for at most `len_max` keys; `overflowed` is set whenever a key has to
    /// share the overflow cell.
    pub fn new(len_max: usize, overflowed: Arc<AtomicBool>) -> BoundedStore<K> {
        BoundedStore {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            len_max,
            overflow: InMemoryState::default(),
            overflowed,
        }
    }
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // The common case: a known key, under a shard's read lock.
        if let Some(cell) = self.map.get(key) {
            return cell.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if self.len.load(Ordering::Relaxed) >= self.len_max {
            self.overflowed.store(true, Ordering::Relaxed);
            return self.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        let cell = match self.map.entry(key.clone()) {
            Entry::Occupied(cell) => cell.into_ref(),
            Entry::Vacant(vacant) => {
                self.len.fetch_add(1, Ordering::Relaxed);
                vacant.insert(InMemoryState::default())
            }
        };
        cell.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

/// The theoretical arrival time a cell holds (governor's GCRA state), read without changing it.
fn arrival(cell: &InMemoryState) -> Option<Nanos> {
    cell.measure_and_replace(&NotKeyed::NonKey, |stored| {
        Err::<((), Nanos), Option<Nanos>>(stored)
    })
    .err()
    .flatten()
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        let mut dropped = 0usize;
        self.map.retain(|_, cell| {
            let keep = arrival(cell).is_some_and(|at| at > drop_below);
            dropped += usize::from(!keep);
            keep
        });
        self.len.fetch_sub(dropped, Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
