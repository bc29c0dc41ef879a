//! What the vault counts: calls to the key service by operation, and the data-key cache's hits,
//! misses and evictions; served as metrics (`crate::metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::Metric;

/// The vault's counters so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VaultStats {
    /// `generate_data_key` calls to the key service.
    pub generate_calls: u64,
    /// `decrypt_data_key` calls.
    pub decrypt_calls: u64,
    /// `rewrap_data_key` calls.
    pub rewrap_calls: u64,
    /// Calls of the three above that failed.
    pub failed_calls: u64,
    /// Seals that found a usable data key cached.
    pub seal_hits: u64,
    /// Seals that needed a new data key.
    pub seal_misses: u64,
    /// Opens that found the data key unwrapped in the cache.
    pub open_hits: u64,
    /// Opens that unwrapped the data key.
    pub open_misses: u64,
    /// Rewraps answered from the memo (another record with the same wrapped key was rewrapped).
    pub rewrap_memo_hits: u64,
    /// Cached data keys dropped for their age.
    pub evicted_age: u64,
    /// Sealing keys retired after their number of uses.
    pub evicted_uses: u64,
    /// Cached data keys dropped to stay within the number of entries.
    pub evicted_entries: u64,
}

/// A key-service operation the vault counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Generate,
    Decrypt,
    Rewrap,
}

/// Why a cached key went.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Eviction {
    Age,
    Uses,
    Entries,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    generate: AtomicU64,
    decrypt: AtomicU64,
    rewrap: AtomicU64,
    generate_failed: AtomicU64,
    decrypt_failed: AtomicU64,
    rewrap_failed: AtomicU64,
    pub(crate) seal_hits: AtomicU64,
    pub(crate) seal_misses: AtomicU64,
    pub(crate) open_hits: AtomicU64,
    pub(crate) open_misses: AtomicU64,
    pub(crate) rewrap_memo_hits: AtomicU64,
    evicted_age: AtomicU64,
    evicted_uses: AtomicU64,
    evicted_entries: AtomicU64,
}

impl Counters {
    pub(crate) fn call(&self, op: Op, ok: bool) {
        let (calls, failed) = match op {
            Op::Generate => (&self.generate, &self.generate_failed),
            Op::Decrypt => (&self.decrypt, &self.decrypt_failed),
            Op::Rewrap => (&self.rewrap, &self.rewrap_failed),
        };
        calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn evicted(&self, why: Eviction, count: u64) {
        let counter = match why {
            Eviction::Age => &self.evicted_age,
            Eviction::Uses => &self.evicted_uses,
            Eviction::Entries => &self.evicted_entries,
        };
        counter.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> VaultStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        VaultStats {
            generate_calls: load(&self.generate),
            decrypt_calls: load(&self.decrypt),
            rewrap_calls: load(&self.rewrap),
            failed_calls: load(&self.generate_failed)
                + load(&self.decrypt_failed)
                + load(&self.rewrap_failed),
            seal_hits: load(&self.seal_hits),
            seal_misses: load(&self.seal_misses),
            open_hits: load(&self.open_hits),
            open_misses: load(&self.open_misses),
            rewrap_memo_hits: load(&self.rewrap_memo_hits),
            evicted_age: load(&self.evicted_age),
            evicted_uses: load(&self.evicted_uses),
            evicted_entries: load(&self.evicted_entries),
        }
    }

    /// The counters as metrics, for a key service named `service`.
    pub(crate) fn metrics(&self, service: &'static str, remote_requests: u64) -> Vec<Metric> {
        let s = ServiceLabels::of(service);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        const REQUESTS: &str = "strongroom_key_service_requests_total";
        const REQUESTS_HELP: &str = "Calls the vault made to the key service, by operation.";
        const FAILURES: &str = "strongroom_key_service_failures_total";
        const FAILURES_HELP: &str = "Key-service calls that failed, by operation.";
        const HITS: &str = "strongroom_vault_data_key_cache_hits_total";
        const HITS_HELP: &str = "Seals and opens that found their data key cached.";
        const MISSES: &str = "strongroom_vault_data_key_cache_misses_total";
        const MISSES_HELP: &str = "Seals and opens that called the key service for a data key.";
        const EVICTIONS: &str = "strongroom_vault_data_key_cache_evictions_total";
        const EVICTIONS_HELP: &str = "Cached data keys dropped (and zeroized), by reason.";
        vec![
            Metric::labelled(REQUESTS, REQUESTS_HELP, s.generate, load(&self.generate)),
            Metric::labelled(REQUESTS, REQUESTS_HELP, s.decrypt, load(&self.decrypt)),
            Metric::labelled(REQUESTS, REQUESTS_HELP, s.rewrap, load(&self.rewrap)),
            Metric::labelled(
                FAILURES,
                FAILURES_HELP,
                s.generate,
                load(&self.generate_failed),
            ),
            Metric::labelled(
                FAILURES,
                FAILURES_HELP,
                s.decrypt,
                load(&self.decrypt_failed),
            ),
            Metric::labelled(FAILURES, FAILURES_HELP, s.rewrap, load(&self.rewrap_failed)),
            Metric::labelled(
                "strongroom_key_service_remote_requests_total",
                "Requests sent to a remote key service (KMS), retries and status included.",
                s.service,
                remote_requests,
            ),
            Metric::labelled(HITS, HITS_HELP, &[("cache", "seal")], load(&self.seal_hits)),
            Metric::labelled(HITS, HITS_HELP, &[("cache", "open")], load(&self.open_hits)),
            Metric::labelled(
                MISSES,
                MISSES_HELP,
                &[("cache", "seal")],
                load(&self.seal_misses),
            ),
            Metric::labelled(
                MISSES,
                MISSES_HELP,
                &[("cache", "open")],
                load(&self.open_misses),
            ),
            Metric::labelled(
                EVICTIONS,
                EVICTIONS_HELP,
                &[("reason", "age")],
                load(&self.evicted_age),
            ),
            Metric::labelled(
                EVICTIONS,
                EVICTIONS_HELP,
                &[("reason", "uses")],
                load(&self.evicted_uses),
            ),
            Metric::labelled(
                EVICTIONS,
                EVICTIONS_HELP,
                &[("reason", "entries")],
                load(&self.evicted_entries),
            ),
        ]
    }
}

type Labels = &'static [(&'static str, &'static str)];

/// The label sets of one key service. Metric labels are `'static`, so each known service has
/// its own table; a service of another name (a test double) is labelled `other`.
struct ServiceLabels {
    service: Labels,
    generate: Labels,
    decrypt: Labels,
    rewrap: Labels,
}

macro_rules! service_labels {
    ($name:literal) => {
        ServiceLabels {
            service: &[("service", $name)],
            generate: &[("service", $name), ("op", "generate_data_key")],
            decrypt: &[("service", $name), ("op", "decrypt_data_key")],
            rewrap: &[("service", $name), ("op", "rewrap_data_key")],
        }
    };
}

impl ServiceLabels {
    fn of(service: &str) -> ServiceLabels {
        match service {
            "local" => service_labels!("local"),
            "kms" => service_labels!("kms"),
            _ => service_labels!("other"),
        }
    }
}
