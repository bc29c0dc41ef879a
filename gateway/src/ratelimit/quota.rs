//! Daily quotas per tenant across every task, counted in DynamoDB with batched updates.
//!
//! The per-tenant rate limits are per process: with `n` tasks behind a load balancer a tenant
//! gets `n` budgets. A daily quota (`quota_tenant_day`) is one number for all tasks together,
//! so its count is shared: a counter item per tenant and UTC day in the ledger's DynamoDB
//! table (`QUOTA#{tenant}`, `D#{yyyy-mm-dd}`), updated with `ADD`. Updating it per request
//! would cost a DynamoDB write per request; instead each task counts locally and a flush
//! (every `quota_flush_ms`, or at once when a tenant's unflushed count reaches
//! `quota_batch_max`) adds what it admitted since, one `UpdateItem` per tenant, and learns the
//! total all tasks reached. On SQLite (one process) the counters live in memory and the count
//! is exact.
//!
//! # The error bound
//!
//! Per tenant and day, a task keeps `base` (the total the last completed flush returned),
//! `inflight` (sent by the flush under way) and `pending` (admitted since). It admits a request
//! only while `base + inflight + pending < quota` and `pending < quota_batch_max` (`B`); flushes
//! run one at a time. Let τ be the moment the shared counter first reaches the quota: it holds
//! fewer than `quota + B` then (one flush adds at most `B`). After τ a task admits only until a
//! flush whose `ADD` ran after τ completes (that flush returns at least the quota); what it
//! admitted and had not added before τ is at most its `inflight` and `pending` then, or what
//! fills `pending` before that flush starts and while it runs: at most `2 B` in every case.
//! Hence, with `n` tasks:
//!
//! **admitted per tenant per day < quota + 2 · n · B**
//!
//! With one task the count is exact: its own counts are all there are, so it never admits
//! beyond the quota. `many_tasks_stay_within_the_documented_bound` checks the bound on random
//! interleavings of admissions and flushes of several tasks sharing one counter.
//!
//! A failed flush puts its count back into `pending` (a task then admits nothing more once
//! `pending` reaches `B`), so a DynamoDB outage keeps the bound, at the price of refusals. A
//! retried `ADD` whose first answer was lost can count twice: the error is towards refusing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use ledger::TenantId;
use ledger::store::Key;
use ledger::store::dynamodb::DynamoStore;
use tokio::sync::Notify;

/// Seconds in a day.
pub const DAY_S: u64 = 86_400;
/// Days a counter item is kept in DynamoDB (its `ttl`), counted from the end of its day.
pub const COUNTER_KEEP_DAYS: u64 = 2;
/// Largest `quota_batch_max` (the unflushed count of a tenant lives in 32 bits).
pub const QUOTA_BATCH_MAX_MAX: u64 = 1 << 30;

/// Whole days since the Unix epoch (UTC).
pub fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / DAY_S)
}

/// Seconds until the next UTC midnight (at least 1).
pub fn until_midnight_s() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (DAY_S - now % DAY_S).max(1)
}

/// The counter's key: `QUOTA#{tenant}`, `D#{yyyy-mm-dd}`.
pub fn counter_key(tenant: &TenantId, day: u64) -> Key {
    let date = i64::try_from(day * DAY_S)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map(|t| t.date());
    let date = date.map_or_else(
        || format!("day-{day}"),
        |d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
    );
    Key::new(format!("QUOTA#{}", tenant.as_str()), format!("D#{date}"))
}

/// The two counts a flush moves, packed in one atomic so that a check sees them together:
/// `pending` in the low 32 bits, `inflight` in the high ones.
fn pack(pending: u64, inflight: u64) -> u64 {
    (inflight << 32) | (pending & 0xffff_ffff)
}

fn unpack(packed: u64) -> (u64, u64) {
    (packed & 0xffff_ffff, packed >> 32)
}

/// One tenant's day, in one task.
#[derive(Debug, Default)]
struct Cell {
    /// The total the last completed flush returned.
    base: AtomicU64,
    /// `pending` and `inflight`, packed.
    counts: AtomicU64,
}

/// What one flush adds: per tenant and day, the requests admitted since the last.
pub type Batch = Vec<(TenantId, u64, u64)>;

/// What a quota check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Admitted; the tenant has about this many left today (as this task sees it).
    Admitted {
        /// Requests left today.
        remaining: u64,
    },
    /// The day's quota is spent.
    Exhausted,
    /// This task admitted `quota_batch_max` requests of the tenant since its last flush; the
    /// next flush (already asked for) tells whether more fit.
    Unflushed,
    /// The task tracks as many tenants as it may (`rate_keys_max`); nothing can be counted.
    Full,
}

/// The local side of the daily quotas: counts, checks and flush batches.
#[derive(Debug)]
pub struct DailyQuota {
    quota: u64,
    batch_max: u64,
    keys_max: usize,
    cells: DashMap<(TenantId, u64), Arc<Cell>>,
    /// Wakes the flush loop early (a tenant reached `batch_max`).
    wake: Notify,
}

impl DailyQuota {
    /// Quotas of `quota` requests per tenant per day, flushed every `batch_max` requests at the
    /// latest, for at most `keys_max` tenant-days.
    pub fn new(quota: u64, batch_max: u64, keys_max: usize) -> DailyQuota {
        DailyQuota {
            quota,
            batch_max: batch_max.clamp(1, QUOTA_BATCH_MAX_MAX),
            keys_max,
            cells: DashMap::new(),
            wake: Notify::new(),
        }
    }

    /// The quota.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Counts a request of `tenant` on `day` if it fits.
    pub fn admit(&self, tenant: &TenantId, day: u64) -> Admission {
        let key = (tenant.clone(), day);
        let cell = match self.cells.get(&key) {
            Some(cell) => cell.clone(),
            None if self.cells.len() >= self.keys_max => return Admission::Full,
            None => self.cells.entry(key).or_default().clone(),
        };
        loop {
            // `counts` first, then `base`: a flush stores `base` before it clears `inflight`,
            // so a cleared `inflight` is seen with its new `base` (and an old `inflight` with
            // a new `base` counts twice, which only refuses early).
            let packed = cell.counts.load(Ordering::Acquire);
            let base = cell.base.load(Ordering::Acquire);
            let (pending, inflight) = unpack(packed);
            let used = base.saturating_add(inflight).saturating_add(pending);
            if used >= self.quota {
                return Admission::Exhausted;
            }
            if pending >= self.batch_max {
                self.wake.notify_one();
                return Admission::Unflushed;
            }
            let next = pack(pending + 1, inflight);
            if cell
                .counts
                .compare_exchange_weak(packed, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                if pending + 1 >= self.batch_max {
                    self.wake.notify_one();
                }
                return Admission::Admitted {
                    remaining: self.quota - used - 1,
                };
            }
        }
    }

    /// Moves every tenant-day's `pending` to `inflight`: what the next flush adds.
    pub fn take_batch(&self) -> Batch {
        let mut batch = Vec::new();
        for entry in &self.cells {
            let cell = entry.value();
            let taken = cell
                .counts
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                    let (pending, inflight) = unpack(c);
                    (pending > 0 && inflight == 0).then(|| pack(0, pending))
                });
            if let Ok(packed) = taken {
                let (tenant, day) = entry.key().clone();
                batch.push((tenant, day, unpack(packed).0));
            }
        }
        batch
    }

    /// Records how a flush of `tenant`'s `day` ended: the shared total, or a failure (its
    /// count goes back to `pending`).
    pub fn settle(&self, tenant: &TenantId, day: u64, total: Option<u64>) {
        let Some(cell) = self.cells.get(&(tenant.clone(), day)).map(|c| c.clone()) else {
            return;
        };
        if let Some(total) = total {
            cell.base.fetch_max(total, Ordering::AcqRel);
        }
        let _ = cell
            .counts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                let (pending, inflight) = unpack(c);
                let pending = if total.is_some() {
                    pending
                } else {
                    pending + inflight
                };
                Some(pack(pending, 0))
            });
    }

    /// Drops the tenant-days before `day` that have nothing left to flush.
    pub fn forget_before(&self, day: u64) {
        self.cells
            .retain(|(_, d), cell| *d >= day || cell.counts.load(Ordering::Acquire) != 0);
    }

    /// Tenant-days tracked.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// Where the shared counts live.
#[derive(Debug)]
pub enum Counters {
    /// In this process (one task: SQLite, tests).
    Memory(std::sync::Mutex<HashMap<Key, u64>>),
    /// Items in the ledger's DynamoDB table, shared by every task.
    Dynamo(DynamoStore),
}

impl Counters {
    /// Counters in memory.
    pub fn memory() -> Counters {
        Counters::Memory(std::sync::Mutex::new(HashMap::new()))
    }

    /// Adds `delta` to a tenant's day; returns the total.
    pub async fn add(&self, tenant: &TenantId, day: u64, delta: u64) -> Result<u64, String> {
        let key = counter_key(tenant, day);
        match self {
            Counters::Memory(map) => {
                let mut map = map.lock().map_err(|_| "counter map poisoned".to_owned())?;
                let total = map.entry(key).or_default();
                *total += delta;
                Ok(*total)
            }
            Counters::Dynamo(store) => {
                let expires = (day + 1 + COUNTER_KEEP_DAYS) * DAY_S;
                store
                    .add_to_counter(&key, delta, expires)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// One flush: adds every tenant-day's pending count to the shared counters and settles it.
pub async fn flush(quota: &DailyQuota, counters: &Counters) {
    for (tenant, day, delta) in quota.take_batch() {
        let total = match counters.add(&tenant, day, delta).await {
            Ok(total) => Some(total),
            Err(error) => {
                tracing::warn!(%error, tenant = tenant.as_str(), "quota flush failed; kept for the next");
                None
            }
        };
        quota.settle(&tenant, day, total);
    }
    quota.forget_before(today());
}

/// Flushes every `interval`, or earlier when a tenant reaches the batch bound, until `stop`
/// changes; then once more.
pub async fn flush_loop(
    quota: Arc<DailyQuota>,
    counters: Counters,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(interval) => {}
            _ = quota.wake.notified() => {}
        }
        flush(&quota, &counters).await;
    }
    flush(&quota, &counters).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::new(id).expect("tenant")
    }

    #[test]
    fn one_task_never_admits_beyond_the_quota() {
        let quota = DailyQuota::new(10, 3, 100);
        let counters = Counters::memory();
        let acme = tenant("acme");
        // Today: a flush forgets the days before it.
        let day = today();
        let mut admitted = 0;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        for round in 0..20 {
            for _ in 0..5 {
                if let Admission::Admitted { .. } = quota.admit(&acme, day) {
                    admitted += 1;
                }
            }
            if round % 2 == 0 {
                rt.block_on(flush(&quota, &counters));
            }
        }
        assert_eq!(admitted, 10);
        assert_eq!(quota.admit(&acme, day), Admission::Exhausted);
        // Another tenant, another day: budgets of their own.
        let globex = quota.admit(&tenant("globex"), day);
        assert_eq!(globex, Admission::Admitted { remaining: 9 });
        assert_eq!(
            quota.admit(&acme, day + 1),
            Admission::Admitted { remaining: 9 }
        );
    }

    #[test]
    fn the_unflushed_count_is_bounded() {
        let quota = DailyQuota::new(100, 3, 100);
        let acme = tenant("acme");
        for left in [99, 98, 97] {
            assert_eq!(
                quota.admit(&acme, 1),
                Admission::Admitted { remaining: left }
            );
        }
        assert_eq!(quota.admit(&acme, 1), Admission::Unflushed);
        // A failed flush keeps the count: still refused.
        let batch = quota.take_batch();
        assert_eq!(batch, vec![(acme.clone(), 1, 3)]);
        assert_eq!(quota.admit(&acme, 1), Admission::Admitted { remaining: 96 });
        quota.settle(&acme, 1, None);
        assert_eq!(quota.admit(&acme, 1), Admission::Unflushed);
        // A flush that lands: room again, counted against the shared total.
        let batch = quota.take_batch();
        assert_eq!(batch, vec![(acme.clone(), 1, 4)]);
        quota.settle(&acme, 1, Some(50));
        assert_eq!(quota.admit(&acme, 1), Admission::Admitted { remaining: 49 });
    }

    #[test]
    fn tenant_days_are_bounded_and_forgotten() {
        let quota = DailyQuota::new(100, 10, 2);
        assert!(matches!(
            quota.admit(&tenant("a"), 1),
            Admission::Admitted { .. }
        ));
        assert!(matches!(
            quota.admit(&tenant("b"), 1),
            Admission::Admitted { .. }
        ));
        assert_eq!(quota.admit(&tenant("c"), 1), Admission::Full);
        // Days gone by are forgotten once flushed.
        quota.forget_before(2);
        assert_eq!(quota.len(), 2, "unflushed counts are kept");
        for (t, d, _) in quota.take_batch() {
            quota.settle(&t, d, Some(1));
        }
        quota.forget_before(2);
        assert!(quota.is_empty());
        assert!(matches!(
            quota.admit(&tenant("c"), 2),
            Admission::Admitted { .. }
        ));
    }

    /// `n` tasks sharing one counter, interleaved at random (a fixed-seed generator): admissions,
    /// flushes started, flushes whose ADD ran, flushes answered. The total admitted stays
    /// below `quota + 2 n B`, and reaches the quota.
    #[test]
    fn many_tasks_stay_within_the_documented_bound() {
        struct Task {
            quota: DailyQuota,
            /// A flush under way: its batch, and the total its ADD returned (once it ran).
            flight: Option<(Batch, Option<u64>)>,
        }
        let acme = tenant("acme");
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for (n, quota, batch) in [(2u64, 100u64, 5u64), (4, 1_000, 20), (8, 50, 3), (3, 7, 10)] {
            for _ in 0..20 {
                let mut tasks: Vec<Task> = (0..n)
                    .map(|_| Task {
                        quota: DailyQuota::new(quota, batch, 10),
                        flight: None,
                    })
                    .collect();
                let mut shared = 0u64;
                let mut admitted = 0u64;
                for _ in 0..20_000 {
                    let task = &mut tasks[random(n) as usize];
                    match random(4) {
                        0 | 1 => {
                            if let Admission::Admitted { .. } = task.quota.admit(&acme, 1) {
                                admitted += 1;
                            }
                        }
                        2 => match &mut task.flight {
                            None => task.flight = Some((task.quota.take_batch(), None)),
                            Some((batch, total @ None)) => {
                                shared += batch.iter().map(|b| b.2).sum::<u64>();
                                *total = Some(shared);
                            }
                            Some((_, Some(_))) => {}
                        },
                        _ => {
                            if let Some((batch, Some(total))) = &task.flight {
                                for (t, d, _) in batch {
                                    task.quota.settle(t, *d, Some(*total));
                                }
                                task.flight = None;
                            }
                        }
                    }
                }
                let bound = quota + 2 * n * batch;
                assert!(
                    admitted < bound,
                    "{n} tasks, quota {quota}, B {batch}: admitted {admitted}, bound {bound}"
                );
                assert!(admitted >= quota, "{admitted} of {quota}");
            }
        }
    }

    #[test]
    fn counter_keys_name_the_tenant_and_the_date() {
        let key = counter_key(&tenant("acme"), 20_416);
        assert_eq!(key, Key::new("QUOTA#acme", "D#2025-11-24"));
    }
}
