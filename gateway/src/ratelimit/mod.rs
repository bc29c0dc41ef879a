//! Rate limits: per client address before authentication, per tenant after it.
//!
//! Two policies, both GCRA limiters from `governor` (the engine under `tower_governor`), keyed
//! and lock-free per check (an atomic compare-and-swap on the key's cell, under a shard's read
//! lock of a concurrent map: no global mutex on the request path):
//!
//! - `ip` ([`RateLimits::check_ip`], called by the edge middleware before anything else looks
//!   at the request): every request but health checks counts against its client address
//!   ([`client_ip`]: the peer, or the rightmost untrusted `X-Forwarded-For` entry when the peer
//!   is a trusted proxy; IPv6 by /64). A flood of bad tokens is refused here, before a
//!   signature is checked.
//! - `tenant` ([`RateLimits::check_tenant`], called once the token verified): the tenant's
//!   tier from configuration (`rate_tenant_tier_of`, `rate_tenant_tiers`), else the default
//!   `rate_tenant`. Tenants are limited independently of each other.
//! - `tenant-day` ([`RateLimits::check_daily`], right after `tenant`): requests per tenant per
//!   UTC day across every task, counted in DynamoDB with batched updates ([`quota`], which
//!   states and argues the error bound). [`RateLimits::admit_tenant`] runs both tenant checks.
//!
//! A [`Rate`] is a quota of requests refilled evenly over a window (`100/1s`, `5000/1h`): a
//! client may spend the whole quota at once, then one request per `window / quota`. Answers
//! carry the IETF fields (draft-ietf-httpapi-ratelimit-headers, [`fields`]): `RateLimit-Policy`
//! (`"tenant";q=100;w=1`) and `RateLimit` (`"tenant";r=42;t=1`); a refusal is 429
//! `rate-limited` with `Retry-After`. Every limit is off unless configured: the right numbers
//! depend on the deployment (behind a load balancer without `trusted_proxies`, every client has
//! the balancer's address), and a limit that appears by surprise throttles production traffic.
//!
//! Memory is bounded: each limiter tracks at most `rate_keys_max` keys ([`store`]); a
//! background sweep ([`sweep`]) drops keys whose budget is full again.
//!
//! Why not `tower_governor`'s `GovernorLayer`: its key map is governor's unbounded default
//! store, it cannot exempt health checks within one router, it writes `x-ratelimit-*` fields
//! rather than the IETF ones, and the tenant is known only inside the handler's extractor. The
//! layer is a thin wrapper over the same `governor` limiter used here directly.

pub mod client_ip;
pub mod fields;
pub mod quota;
pub mod settings;
pub mod store;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::middleware::StateInformationMiddleware;
use ledger::TenantId;

pub use self::client_ip::TrustedProxies;
pub use self::settings::{Rate, RateLimitConfig};
use self::store::BoundedStore;
use crate::api::problem::{ApiError, ProblemKind};

/// The name of the per-address policy in the `RateLimit` fields.
pub const POLICY_IP: &str = "ip";
/// The name of the per-tenant policy in the `RateLimit` fields.
pub const POLICY_TENANT: &str = "tenant";
/// The name of the daily quota per tenant in the `RateLimit` fields.
pub const POLICY_TENANT_DAY: &str = "tenant-day";
/// Name of the per-tenant limit on card reveals.
pub const POLICY_REVEAL: &str = "reveal";
/// How often idle keys are dropped from the limiters.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Where a client stands against one policy after a request was counted (or refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// The policy's name in the fields ([`POLICY_IP`], [`POLICY_TENANT`],
    /// [`POLICY_TENANT_DAY`]).
    pub policy: &'static str,
    /// The policy's rate.
    pub rate: Rate,
    /// Requests the client may still send at once.
    pub remaining: u32,
    /// Seconds until the whole quota is available again (rounded up).
    pub reset_s: u32,
    /// When refused: seconds until one request would pass (rounded up, at least 1).
    pub retry_after_s: Option<u32>,
}

impl Standing {
    /// Whether the request was refused.
    pub fn refused(&self) -> bool {
        self.retry_after_s.is_some()
    }
}

type Limiter<K, C> = RateLimiter<K, BoundedStore<K>, C, StateInformationMiddleware>;

/// One policy's limiter.
struct Policy<K: std::hash::Hash + Eq + Clone, C: Clock = DefaultClock> {
    name: &'static str,
    rate: Rate,
    keys_max: usize,
    limiter: Limiter<K, C>,
    /// Set by the store when a new key found it full.
    overflowed: Arc<AtomicBool>,
}

impl<K: std::hash::Hash + Eq + Clone, C: Clock> Policy<K, C> {
    fn new(name: &'static str, rate: Rate, keys_max: usize, clock: C) -> Policy<K, C> {
        let overflowed = Arc::new(AtomicBool::new(false));
        let store = BoundedStore::new(keys_max, overflowed.clone());
        let limiter: Limiter<K, C> =
            RateLimiter::<K, BoundedStore<K>, C, NoOpMiddleware<C::Instant>>::new(
                rate.governor_quota(),
                store,
                clock,
            )
            .with_middleware::<StateInformationMiddleware>();
        Policy {
            name,
            rate,
            keys_max,
            limiter,
            overflowed,
        }
    }

    fn check(&self, key: &K) -> Standing {
        let period = self.rate.period();
        let quota = self.rate.quota.get();
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Standing {
                    policy: self.name,
                    rate: self.rate,
                    remaining,
                    reset_s: ceil_s(period.saturating_mul(quota.saturating_sub(remaining))),
                    retry_after_s: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                let refill = period.saturating_mul(quota.saturating_sub(1));
                Standing {
                    policy: self.name,
                    rate: self.rate,
                    remaining: 0,
                    reset_s: ceil_s(wait.saturating_add(refill)).max(1),
                    retry_after_s: Some(ceil_s(wait).max(1)),
                }
            }
        }
    }

    /// Drops the keys whose budget is full again; says when new keys had to share the
    /// overflow cell since the last sweep.
    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        if self.overflowed.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                policy = self.name,
                keys = self.limiter.len(),
                keys_max = self.keys_max,
                "rate limiter full: new clients shared one budget (rate_keys_max)"
            );
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, C: Clock> std::fmt::Debug for Policy<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("keys", &self.limiter.len())
            .finish()
    }
}

/// Whole seconds, rounded up.
fn ceil_s(d: Duration) -> u32 {
    let s = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// The limiters of one process.
#[derive(Debug)]
pub struct RateLimits<C: Clock = DefaultClock> {
    ip: Option<Policy<IpAddr, C>>,
    /// One limiter per tier; `tier_of` and `default_tier` index it.
    tiers: Vec<Policy<TenantId, C>>,
    tier_of: HashMap<TenantId, usize>,
    default_tier: Option<usize>,
    trusted_proxies: TrustedProxies,
    /// The daily quota per tenant, shared by every task; flushed by [`quota::flush_loop`].
    daily: Option<Arc<quota::DailyQuota>>,
    /// Card numbers revealed per tenant (always on).
    reveal: Policy<TenantId, C>,
}

impl RateLimits {
    /// The limiters a configuration asks for, on the system's monotonic clock.
    pub fn new(config: &RateLimitConfig) -> RateLimits {
        RateLimits::with_clock(config, &DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// The limiters a configuration asks for, on `clock` (tests use a fake one).
    pub fn with_clock(config: &RateLimitConfig, clock: &C) -> RateLimits<C> {
        let keys_max = config.keys_max;
        let policy = |rate| Policy::new(POLICY_TENANT, rate, keys_max, C::clone(clock));
        let mut tiers = Vec::new();
        let mut index = HashMap::new();
        for (name, rate) in &config.tiers {
            index.insert(name.as_str(), tiers.len());
            tiers.push(policy(*rate));
        }
        let tier_of = config
            .tier_of
            .iter()
            .filter_map(|(tenant, tier)| Some((tenant.clone(), *index.get(tier.as_str())?)))
            .collect();
        let default_tier = config.tenant.map(|rate| {
            tiers.push(policy(rate));
            tiers.len() - 1
        });
        let reveal = config.reveal.unwrap_or_else(|| {
            settings::Rate::parse(settings::DEFAULT_RATE_REVEAL)
                .ok()
                .flatten()
                .unwrap_or(Rate {
                    quota: std::num::NonZeroU32::MIN,
                    window_s: 60,
                })
        });
        RateLimits {
            reveal: Policy::new(POLICY_REVEAL, reveal, keys_max, C::clone(clock)),
            ip: config
                .ip
                .map(|rate| Policy::new(POLICY_IP, rate, keys_max, C::clone(clock))),
            tiers,
            tier_of,
            default_tier,
            trusted_proxies: config.trusted_proxies.clone(),
            daily: config.quota_day.map(|q| {
                Arc::new(quota::DailyQuota::new(
                    u64::from(q.get()),
                    config.quota_batch_max,
                    keys_max,
                ))
            }),
        }
    }

    /// Counts a verified request of `tenant` against its rate, then (when the rate let it
    /// through) its daily quota; records the standings for the answer's fields ([`scope`]);
    /// refuses with 429 `rate-limited` when over either.
    pub fn admit_tenant(&self, tenant: &TenantId) -> Result<(), ApiError> {
        let checks: [&dyn Fn() -> Option<Standing>; 2] =
            [&|| self.check_tenant(tenant), &|| self.check_daily(tenant)];
        for check in checks {
            if let Some(standing) = check() {
                record_tenant(standing);
                if standing.refused() {
                    return Err(refusal(&standing));
                }
            }
        }
        Ok(())
    }

    /// Counts a card reveal of `tenant`; 429 `rate-limited` when over `rate_reveal`.
    pub fn admit_reveal(&self, tenant: &TenantId) -> Result<(), ApiError> {
        let standing = self.reveal.check(tenant);
        if standing.refused() {
            tracing::warn!(%tenant, "card reveal refused: over rate_reveal");
            return Err(refusal(&standing));
        }
        Ok(())
    }

    /// The daily quota, when one is configured (for its flush loop).
    pub fn daily(&self) -> Option<Arc<quota::DailyQuota>> {
        self.daily.clone()
    }

    /// Counts a request of `tenant` against the daily quota; `None` when there is none.
    pub fn check_daily(&self, tenant: &TenantId) -> Option<Standing> {
        let daily = self.daily.as_ref()?;
        let quota = daily.quota();
        let rate = Rate {
            quota: std::num::NonZeroU32::new(u32::try_from(quota).unwrap_or(u32::MAX))?,
            window_s: u32::try_from(quota::DAY_S).unwrap_or(u32::MAX),
        };
        let midnight_s = u32::try_from(quota::until_midnight_s()).unwrap_or(u32::MAX);
        let refused = |retry_after_s| Standing {
            policy: POLICY_TENANT_DAY,
            rate,
            remaining: 0,
            reset_s: midnight_s,
            retry_after_s: Some(retry_after_s),
        };
        Some(match daily.admit(tenant, quota::today()) {
            quota::Admission::Admitted { remaining } => Standing {
                policy: POLICY_TENANT_DAY,
                rate,
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset_s: midnight_s,
                retry_after_s: None,
            },
            quota::Admission::Exhausted => refused(midnight_s),
            // The next flush is under way: a second is plenty.
            quota::Admission::Unflushed | quota::Admission::Full => refused(1),
        })
    }

    /// Counts a request from `peer` (when known) with these headers against the per-address
    /// policy; `None` when that policy is off.
    pub fn check_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<Standing> {
        let policy = self.ip.as_ref()?;
        // Without a peer (a router driven in-process) every request shares one key.
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let client = self.trusted_proxies.client_ip(peer, headers);
        Some(policy.check(&client_ip::limit_key(client)))
    }

    /// The client's address, as the per-address limit sees it (through trusted proxies).
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> IpAddr {
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.trusted_proxies.client_ip(peer, headers)
    }

    /// Counts a request of `tenant` against its tier; `None` when the tenant has no limit.
    pub fn check_tenant(&self, tenant: &TenantId) -> Option<Standing> {
        let tier = self.tier_of.get(tenant).copied().or(self.default_tier)?;
        Some(self.tiers.get(tier)?.check(tenant))
    }

    /// Drops keys whose budget is full again (they are indistinguishable from new ones), and
    /// logs a limiter that turned new keys to its shared overflow cell since the last sweep.
    pub fn sweep(&self) {
        if let Some(ip) = &self.ip {
            ip.sweep();
        }
        for tier in &self.tiers {
            tier.sweep();
        }
        self.reveal.sweep();
    }

    /// Keys tracked, per-address limiter first, then each tier's.
    pub fn keys(&self) -> Vec<usize> {
        let ip = self.ip.iter().map(|p| p.limiter.len());
        ip.chain(self.tiers.iter().map(|p| p.limiter.len()))
            .collect()
    }
}

/// The problem a refused request gets: 429 `rate-limited` with `Retry-After` (the edge adds the
/// `RateLimit` fields).
pub fn refusal(standing: &Standing) -> ApiError {
    let rate = standing.rate;
    ApiError::new(
        ProblemKind::RateLimited,
        format!(
            "over the {} limit of {} requests per {} s; nothing was done",
            standing.policy, rate.quota, rate.window_s
        ),
    )
    .with("policy", serde_json::Value::String(standing.policy.into()))
    .retry_after(standing.retry_after_s.unwrap_or(1))
}

/// The tenant's standings a request can have: its rate and its daily quota.
pub type TenantStandings = [Option<Standing>; 2];

tokio::task_local! {
    /// The tenant's standings, recorded by the extractor that verified the token, for the edge
    /// to write into the answer's fields.
    static TENANT_STANDING: Cell<TenantStandings>;
}

/// Records one of the tenant's standings for the current request (no-op outside [`scope`];
/// beyond two, the last is replaced).
pub fn record_tenant(standing: Standing) {
    let _ = TENANT_STANDING.try_with(|cell| {
        let mut standings = cell.get();
        let slot = standings.iter().position(Option::is_none).unwrap_or(1);
        standings[slot] = Some(standing);
        cell.set(standings);
    });
}

/// Runs a request's work where [`record_tenant`] can record; returns its output and the
/// tenant's standings recorded.
pub async fn scope<F: Future>(work: F) -> (F::Output, TenantStandings) {
    TENANT_STANDING
        .scope(Cell::new([None, None]), async move {
            let output = work.await;
            (output, TENANT_STANDING.with(Cell::get))
        })
        .await
}

/// Sweeps `limits` every [`SWEEP_INTERVAL`] until `stop` changes.
pub async fn sweep(limits: Arc<RateLimits>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => limits.sweep(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapSource;
    use axum::http::HeaderValue;
    use governor::clock::FakeRelativeClock;

    fn limits(pairs: &[(&str, &str)]) -> (RateLimits<FakeRelativeClock>, FakeRelativeClock) {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = RateLimitConfig::load(&MapSource(map)).expect("config");
        let clock = FakeRelativeClock::default();
        (RateLimits::with_clock(&config, &clock), clock)
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::new(id).expect("tenant id")
    }

    fn peer(ip: &str) -> Option<IpAddr> {
        Some(ip.parse().expect("ip"))
    }

    /// (remaining, reset_s, retry_after_s) of one tenant request.
    fn tenant_request(limits: &RateLimits<FakeRelativeClock>, id: &str) -> (u32, u32, Option<u32>) {
        let s = limits.check_tenant(&tenant(id)).expect("limited");
        (s.remaining, s.reset_s, s.retry_after_s)
    }

    #[test]
    fn a_budget_is_spent_refused_and_refilled() {
        let (limits, clock) = limits(&[("rate_tenant", "3/3s")]);
        assert_eq!(tenant_request(&limits, "acme"), (2, 1, None));
        assert_eq!(tenant_request(&limits, "acme"), (1, 2, None));
        assert_eq!(tenant_request(&limits, "acme"), (0, 3, None));
        // Empty: one request's share (1 s) comes back first, the whole quota in 3 s.
        assert_eq!(tenant_request(&limits, "acme"), (0, 3, Some(1)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(tenant_request(&limits, "acme"), (0, 3, None));
        clock.advance(Duration::from_secs(3));
        assert_eq!(tenant_request(&limits, "acme"), (2, 1, None));
    }

    #[test]
    fn tenants_are_limited_apart_and_by_their_tier() {
        let (limits, _clock) = limits(&[
            ("rate_tenant", "1/1h"),
            ("rate_tenant_tiers", "gold=3/1h"),
            ("rate_tenant_tier_of", "acme=gold"),
        ]);
        // globex has the default: one request an hour.
        assert_eq!(tenant_request(&limits, "globex"), (0, 3_600, None));
        assert_eq!(tenant_request(&limits, "globex"), (0, 3_600, Some(3_600)));
        // initech too, but its own budget.
        assert_eq!(tenant_request(&limits, "initech"), (0, 3_600, None));
        // acme is gold: three.
        let gold = limits.check_tenant(&tenant("acme")).expect("limited");
        assert_eq!((gold.rate.quota.get(), gold.rate.window_s), (3, 3_600));
        assert_eq!(gold.policy, POLICY_TENANT);
        assert_eq!(tenant_request(&limits, "acme"), (1, 2_400, None));
        assert_eq!(tenant_request(&limits, "acme"), (0, 3_600, None));
        assert!(tenant_request(&limits, "acme").2.is_some());
    }

    #[test]
    fn without_a_default_only_tiered_tenants_are_limited() {
        let (limits, _clock) = limits(&[
            ("rate_tenant_tiers", "silver=1/1m"),
            ("rate_tenant_tier_of", "acme=silver"),
        ]);
        assert!(limits.check_tenant(&tenant("globex")).is_none());
        assert!(limits.check_tenant(&tenant("acme")).is_some());
        assert!(
            limits
                .check_ip(peer("192.0.2.1"), &HeaderMap::new())
                .is_none()
        );
    }

    #[test]
    fn addresses_are_limited_apart_and_the_header_does_not_move_them() {
        let (limits, _clock) = limits(&[("rate_ip", "1/1h"), ("trusted_proxies", "10.0.0.0/8")]);
        let none = HeaderMap::new();
        let mut spoofed = HeaderMap::new();
        spoofed.insert(
            client_ip::X_FORWARDED_FOR,
            HeaderValue::from_static("198.51.100.77"),
        );
        let refused = |p: &str, h: &HeaderMap| {
            let s = limits.check_ip(peer(p), h).expect("limited");
            assert_eq!(s.policy, POLICY_IP);
            s.refused()
        };
        assert!(!refused("192.0.2.1", &none));
        // The same untrusted peer claiming another address is still itself.
        assert!(refused("192.0.2.1", &spoofed));
        assert!(!refused("192.0.2.2", &none));
        // Through a trusted proxy, the forwarded address is the key.
        assert!(!refused("10.0.0.1", &spoofed));
        assert!(refused("10.0.0.2", &spoofed));
        assert!(!refused("10.0.0.2", &none));
        // An IPv6 client's /64 is one key.
        assert!(!refused("2001:db8::1", &none));
        assert!(refused("2001:db8::2", &none));
    }

    #[test]
    fn memory_is_bounded_and_swept() {
        let (limits, clock) = limits(&[("rate_ip", "1/1s"), ("rate_keys_max", "3")]);
        let none = HeaderMap::new();
        let refused = |p: &str| limits.check_ip(peer(p), &none).expect("on").refused();
        for p in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            assert!(!refused(p));
        }
        assert_eq!(limits.keys(), vec![3]);
        // Full: new addresses share one budget; known ones keep theirs.
        assert!(!refused("192.0.2.4"));
        assert!(refused("192.0.2.5"));
        assert!(refused("192.0.2.1"));
        assert_eq!(limits.keys(), vec![3]);
        // The sweep keeps keys still paying back ...
        limits.sweep();
        assert_eq!(limits.keys(), vec![3]);
        // ... and drops those whose budget is whole again.
        clock.advance(Duration::from_secs(2));
        limits.sweep();
        assert_eq!(limits.keys(), vec![0]);
        assert!(!refused("192.0.2.5"));
        assert_eq!(limits.keys(), vec![1]);
    }

    #[tokio::test]
    async fn the_scope_carries_the_tenant_standing_out() {
        let (limits, _clock) = limits(&[("rate_tenant", "5/1s")]);
        let standing = limits.check_tenant(&tenant("acme")).expect("limited");
        let (output, recorded) = scope(async move {
            record_tenant(standing);
            7
        })
        .await;
        assert_eq!((output, recorded), (7, [Some(standing), None]));
        assert_eq!(scope(async { 1 }).await, (1, [None, None]));
        // Outside a scope, recording does nothing (and does not panic).
        record_tenant(standing);
    }

    #[test]
    fn a_refusal_is_a_429_problem_with_retry_after() {
        let (limits, _clock) = limits(&[("rate_tenant", "1/1m")]);
        limits.check_tenant(&tenant("acme"));
        let standing = limits.check_tenant(&tenant("acme")).expect("limited");
        let error = refusal(&standing);
        assert_eq!(error.kind, ProblemKind::RateLimited);
        assert_eq!(error.kind.status().as_u16(), 429);
        assert_eq!(error.field("policy"), Some(&serde_json::json!("tenant")));
        let response = axum::response::IntoResponse::into_response(error);
        assert_eq!(
            response.headers().get(axum::http::header::RETRY_AFTER),
            Some(&HeaderValue::from_static("60"))
        );
    }
}
