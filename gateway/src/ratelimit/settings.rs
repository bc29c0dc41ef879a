//! The rate-limit settings: what `rate_*` and `trusted_proxies` say, parsed and validated.
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `rate_ip` | `off` | per client address, before authentication (`200/1s`) |
//! | `rate_tenant` | `off` | per tenant, for tenants without a tier |
//! | `rate_tenant_tiers` | none | named rates: `gold=1000/1s,silver=100/1s` |
//! | `rate_tenant_tier_of` | none | tenants' tiers: `acme=gold,globex=silver` |
//! | `trusted_proxies` | none | CIDRs or addresses whose `X-Forwarded-For` is believed |
//! | `rate_keys_max` | [`DEFAULT_RATE_KEYS_MAX`] | most keys each limiter tracks |
//! | `quota_tenant_day` | `off` | requests per tenant per UTC day, across all tasks ([`super::quota`]) |
//! | `quota_flush_ms` | [`DEFAULT_QUOTA_FLUSH_MS`] | how often a task adds its counts to the shared ones |
//! | `quota_batch_max` | [`DEFAULT_QUOTA_BATCH_MAX`] | most requests of a tenant a task admits between flushes |
//! | `rate_reveal` | [`DEFAULT_RATE_REVEAL`] | card numbers revealed per tenant; cannot be off |

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;
use ledger::TenantId;

use super::client_ip::TrustedProxies;
use crate::config::{ConfigError, Source, bounded, parse};

/// Largest quota of a rate (requests per window).
pub const RATE_QUOTA_MAX: u32 = 1_000_000_000;
/// Longest window of a rate, in seconds (a day).
pub const RATE_WINDOW_S_MAX: u32 = 86_400;
/// Most tiers `rate_tenant_tiers` may name.
pub const RATE_TIERS_MAX: usize = 64;
/// Most tenants `rate_tenant_tier_of` may list.
pub const RATE_TIER_OF_MAX: usize = 100_000;
/// Longest tier name.
pub const RATE_TIER_NAME_LEN_MAX: usize = 32;
/// Default bound on the keys (addresses, tenants) each limiter tracks: about 100 bytes each.
pub const DEFAULT_RATE_KEYS_MAX: usize = 100_000;
/// Default of `rate_reveal`: card numbers revealed per tenant. On by default and cannot be
/// turned off: a stolen `cards:reveal` token should not empty the vault at API speed.
pub const DEFAULT_RATE_REVEAL: &str = "10/60s";
/// Largest `rate_keys_max`.
pub const RATE_KEYS_MAX_MAX: usize = 10_000_000;

/// Default interval of the daily-quota flush, in milliseconds.
pub const DEFAULT_QUOTA_FLUSH_MS: u64 = 1_000;
/// Default bound on a tenant's requests a task admits between two flushes (the `B` of the
/// error bound in [`super::quota`]).
pub const DEFAULT_QUOTA_BATCH_MAX: u64 = 1_000;

/// A quota of requests refilled evenly over a window: `quota` at once at most, then one per
/// `window / quota`. Written `100/1s`, `100/s`, `6000/10m`, `5000/1h`, `100000/1d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests a full budget holds (the `q` of `RateLimit-Policy`).
    pub quota: NonZeroU32,
    /// Seconds in which an empty budget fills again (the `w`).
    pub window_s: u32,
}

impl Rate {
    /// Time one request's share takes to come back.
    pub fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.window_s)) / self.quota.get()
    }

    /// The same rate as governor's quota.
    pub fn governor_quota(&self) -> Quota {
        // The period is at least a nanosecond (a window of at least 1 s over at most 10^9).
        Quota::with_period(self.period())
            .unwrap_or_else(|| Quota::per_second(self.quota))
            .allow_burst(self.quota)
    }

    /// Parses `quota/window`; `off` (or nothing) is `None`.
    pub fn parse(raw: &str) -> Result<Option<Rate>, String> {
        let raw = raw.trim();
        if raw.is_empty() || raw == "off" {
            return Ok(None);
        }
        let bad = || format!("{raw:?} is not quota/window (100/1s, 5000/1h) or off");
        let (quota, window) = raw.split_once('/').ok_or_else(bad)?;
        let quota: u32 = quota.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        let unit_s = match window.chars().last() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3_600,
            Some('d') => 86_400,
            _ => return Err(bad()),
        };
        let count = &window[..window.len() - 1];
        let count: u32 = if count.is_empty() {
            1
        } else {
            count.parse().map_err(|_| bad())?
        };
        let window_s = count.checked_mul(unit_s).ok_or_else(bad)?;
        if !(1..=RATE_WINDOW_S_MAX).contains(&window_s) {
            return Err(format!(
                "{raw:?}: the window must be 1 s to {RATE_WINDOW_S_MAX} s"
            ));
        }
        let quota = NonZeroU32::new(quota)
            .filter(|q| q.get() <= RATE_QUOTA_MAX)
            .ok_or_else(|| format!("{raw:?}: the quota must be 1 to {RATE_QUOTA_MAX}"))?;
        Ok(Some(Rate { quota, window_s }))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.quota, self.window_s)
    }
}

/// The rate limits, as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Per client address, before authentication; off when `None`.
    pub ip: Option<Rate>,
    /// Per tenant without a tier; off when `None`.
    pub tenant: Option<Rate>,
    /// Named rates for tenants.
    pub tiers: BTreeMap<String, Rate>,
    /// Tenants' tiers (every tier named exists in `tiers`).
    pub tier_of: BTreeMap<TenantId, String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Most keys each limiter tracks.
    pub keys_max: usize,
    /// Requests per tenant per UTC day across all tasks; off when `None`.
    pub quota_day: Option<NonZeroU32>,
    /// Card numbers revealed per tenant (`rate_reveal`); always on: `None` (a config built
    /// with `Default`, in tests) is [`DEFAULT_RATE_REVEAL`].
    pub reveal: Option<Rate>,
    /// How often a task adds its counts to the shared counters.
    pub quota_flush: Duration,
    /// Most requests of one tenant a task admits between two flushes.
    pub quota_batch_max: u64,
}

impl RateLimitConfig {
    /// Reads the rate-limit settings.
    pub fn load(source: &dyn Source) -> Result<RateLimitConfig, ConfigError> {
        let rate = |name: &str| {
            Rate::parse(source.get(name).as_deref().unwrap_or(""))
                .map_err(|e| ConfigError(format!("{name}: {e}")))
        };
        let tiers = tiers(source.get("rate_tenant_tiers").as_deref().unwrap_or(""))
            .map_err(|e| ConfigError(format!("rate_tenant_tiers: {e}")))?;
        let tier_of = tier_of(
            source.get("rate_tenant_tier_of").as_deref().unwrap_or(""),
            &tiers,
        )
        .map_err(|e| ConfigError(format!("rate_tenant_tier_of: {e}")))?;
        let trusted_proxies =
            TrustedProxies::parse(source.get("trusted_proxies").as_deref().unwrap_or(""))
                .map_err(|e| ConfigError(format!("trusted_proxies: {e}")))?;
        let reveal = Rate::parse(
            source
                .get("rate_reveal")
                .as_deref()
                .unwrap_or(DEFAULT_RATE_REVEAL),
        )
        .map_err(|e| ConfigError(format!("rate_reveal: {e}")))?
        .ok_or_else(|| ConfigError("rate_reveal cannot be off".into()))?;
        Ok(RateLimitConfig {
            reveal: Some(reveal),
            ip: rate("rate_ip")?,
            tenant: rate("rate_tenant")?,
            tiers,
            tier_of,
            trusted_proxies,
            keys_max: bounded(
                "rate_keys_max",
                parse(source, "rate_keys_max", DEFAULT_RATE_KEYS_MAX)?,
                1,
                RATE_KEYS_MAX_MAX,
            )?,
            quota_day: match source.get("quota_tenant_day").as_deref().map(str::trim) {
                None | Some("" | "off") => None,
                Some(_) => NonZeroU32::new(bounded(
                    "quota_tenant_day",
                    parse(source, "quota_tenant_day", 1u32)?,
                    1,
                    RATE_QUOTA_MAX,
                )?),
            },
            quota_flush: Duration::from_millis(bounded(
                "quota_flush_ms",
                parse(source, "quota_flush_ms", DEFAULT_QUOTA_FLUSH_MS)?,
                10,
                60_000,
            )?),
            quota_batch_max: bounded(
                "quota_batch_max",
                parse(source, "quota_batch_max", DEFAULT_QUOTA_BATCH_MAX)?,
                1,
                super::quota::QUOTA_BATCH_MAX_MAX,
            )?,
        })
    }
}

/// `name=rate` pairs, comma-separated.
fn pairs(raw: &str) -> impl Iterator<Item = Result<(&str, &str), String>> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| format!("{p:?} is not name=value"))
        })
}

fn tiers(raw: &str) -> Result<BTreeMap<String, Rate>, String> {
    let mut tiers = BTreeMap::new();
    for pair in pairs(raw) {
        let (name, rate) = pair?;
        let name_ok = !name.is_empty()
            && name.len() <= RATE_TIER_NAME_LEN_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!(
                "tier {name:?}: 1 to {RATE_TIER_NAME_LEN_MAX} of a-z, 0-9, '-', '_'"
            ));
        }
        let rate = Rate::parse(rate)?
            .ok_or_else(|| format!("tier {name:?} needs a rate (leave the tenant out instead)"))?;
        if tiers.insert(name.to_owned(), rate).is_some() {
            return Err(format!("tier {name:?} is named twice"));
        }
        if tiers.len() > RATE_TIERS_MAX {
            return Err(format!("at most {RATE_TIERS_MAX} tiers"));
        }
    }
    Ok(tiers)
}

fn tier_of(
    raw: &str,
    tiers: &BTreeMap<String, Rate>,
) -> Result<BTreeMap<TenantId, String>, String> {
    let mut of = BTreeMap::new();
    for pair in pairs(raw) {
        let (tenant, tier) = pair?;
        let id = TenantId::new(tenant).ok_or_else(|| format!("{tenant:?} is not a tenant id"))?;
        if !tiers.contains_key(tier) {
            return Err(format!(
                "tenant {tenant:?}: no tier {tier:?} in rate_tenant_tiers"
            ));
        }
        if of.insert(id, tier.to_owned()).is_some() {
            return Err(format!("tenant {tenant:?} is listed twice"));
        }
        if of.len() > RATE_TIER_OF_MAX {
            return Err(format!("at most {RATE_TIER_OF_MAX} tenants"));
        }
    }
    Ok(of)
}

/// The settings as `name = value` lines, for the configuration printed at start.
impl fmt::Display for RateLimitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = |r: Option<Rate>| r.map_or_else(|| "off".to_owned(), |r| r.to_string());
        writeln!(f, "rate_ip = {}", rate(self.ip))?;
        writeln!(f, "rate_tenant = {}", rate(self.tenant))?;
        let tiers: Vec<String> = self.tiers.iter().map(|(n, r)| format!("{n}={r}")).collect();
        writeln!(
            f,
            "rate_tenant_tiers = {}",
            if tiers.is_empty() {
                "(none)".to_owned()
            } else {
                tiers.join(",")
            }
        )?;
        writeln!(f, "rate_tenant_tier_of = ({} tenants)", self.tier_of.len())?;
        writeln!(f, "trusted_proxies = {}", self.trusted_proxies)?;
        writeln!(f, "rate_keys_max = {}", self.keys_max)?;
        match self.quota_day {
            Some(q) => writeln!(f, "quota_tenant_day = {q}")?,
            None => writeln!(f, "quota_tenant_day = off")?,
        }
        writeln!(f, "quota_flush_ms = {}", self.quota_flush.as_millis())?;
        write!(f, "quota_batch_max = {}", self.quota_batch_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapSource;

    fn load(pairs: &[(&str, &str)]) -> Result<RateLimitConfig, ConfigError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RateLimitConfig::load(&MapSource(map))
    }

    #[test]
    fn rates_parse_with_their_units() {
        let check = |raw: &str, expected: Option<(u32, u32)>| {
            let got = Rate::parse(raw)
                .unwrap_or_else(|e| panic!("{raw:?}: {e}"))
                .map(|r| (r.quota.get(), r.window_s));
            assert_eq!(got, expected, "{raw:?}");
        };
        check("off", None);
        check("", None);
        check("100/1s", Some((100, 1)));
        check("100/s", Some((100, 1)));
        check(" 6000 / 10m ", Some((6000, 600)));
        check("5000/1h", Some((5000, 3_600)));
        check("100000/1d", Some((100_000, 86_400)));
        check("1000000000/1s", Some((RATE_QUOTA_MAX, 1)));
        for bad in [
            "100",
            "0/1s",
            "1000000001/1s",
            "100/0s",
            "100/2d",
            "100/1w",
            "-1/1s",
            "a/1s",
            "100/xs",
            "100/4294967295h",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_rate_is_its_quota_per_window() {
        let rate = Rate::parse("3/1h").expect("parse").expect("on");
        assert_eq!(rate.period(), Duration::from_secs(1_200));
        assert_eq!(rate.to_string(), "3/3600s");
        let quota = rate.governor_quota();
        assert_eq!(quota.burst_size().get(), 3);
        assert_eq!(quota.replenish_interval(), Duration::from_secs(1_200));
    }

    #[test]
    fn limits_are_off_unless_configured() {
        let c = load(&[]).expect("defaults");
        assert_eq!(c.ip, None);
        assert_eq!(c.tenant, None);
        assert!(c.tiers.is_empty() && c.tier_of.is_empty() && c.trusted_proxies.is_empty());
        assert_eq!(c.keys_max, DEFAULT_RATE_KEYS_MAX);
        assert_eq!(c.quota_day, None);
        assert_eq!(c.quota_flush, Duration::from_millis(DEFAULT_QUOTA_FLUSH_MS));
        assert_eq!(c.quota_batch_max, DEFAULT_QUOTA_BATCH_MAX);
        let text = c.to_string();
        assert!(text.contains("quota_tenant_day = off"), "{text}");
        assert!(text.contains("rate_ip = off"), "{text}");
        assert!(text.contains("rate_tenant = off"), "{text}");
    }

    #[test]
    fn tiers_and_tenants_are_read() {
        let c = load(&[
            ("rate_ip", "200/1s"),
            ("rate_tenant", "100/1s"),
            ("rate_tenant_tiers", "gold=1000/1s, silver=100/1m"),
            ("rate_tenant_tier_of", "acme=gold,globex=silver"),
            ("trusted_proxies", "10.0.0.0/16"),
            ("rate_keys_max", "5"),
            ("quota_tenant_day", "1000000"),
            ("quota_flush_ms", "250"),
            ("quota_batch_max", "50"),
        ])
        .expect("config");
        assert_eq!(c.tiers.len(), 2);
        let acme = TenantId::new("acme").expect("id");
        assert_eq!(c.tier_of.get(&acme).map(String::as_str), Some("gold"));
        assert_eq!(c.keys_max, 5);
        assert_eq!(c.quota_day.map(NonZeroU32::get), Some(1_000_000));
        assert_eq!(c.quota_flush, Duration::from_millis(250));
        assert_eq!(c.quota_batch_max, 50);
        let text = c.to_string();
        assert!(
            text.contains("rate_tenant_tiers = gold=1000/1s,silver=100/60s"),
            "{text}"
        );
        assert!(text.contains("trusted_proxies = 10.0.0.0/16"), "{text}");
    }

    #[test]
    fn bad_rate_settings_are_refused() {
        let check = |pairs: &[(&str, &str)], fragment: &str| {
            let err = load(pairs).expect_err("must fail").0;
            assert!(
                err.contains(fragment),
                "{err:?} should mention {fragment:?}"
            );
        };
        check(&[("rate_ip", "fast")], "rate_ip");
        check(&[("rate_tenant", "10/1y")], "rate_tenant");
        check(&[("rate_tenant_tiers", "gold")], "rate_tenant_tiers");
        check(&[("rate_tenant_tiers", "Gold=1/1s")], "rate_tenant_tiers");
        check(&[("rate_tenant_tiers", "gold=off")], "rate_tenant_tiers");
        check(&[("rate_tenant_tiers", "a=1/s,a=2/s")], "twice");
        check(&[("rate_tenant_tier_of", "acme=gold")], "no tier");
        check(
            &[
                ("rate_tenant_tiers", "gold=1/s"),
                ("rate_tenant_tier_of", "ACME=gold"),
            ],
            "tenant id",
        );
        check(
            &[
                ("rate_tenant_tiers", "gold=1/s"),
                ("rate_tenant_tier_of", "acme=gold,acme=gold"),
            ],
            "twice",
        );
        check(&[("trusted_proxies", "10.0.0.0/99")], "trusted_proxies");
        check(&[("rate_keys_max", "0")], "rate_keys_max");
        check(&[("quota_tenant_day", "0")], "quota_tenant_day");
        check(&[("quota_tenant_day", "lots")], "quota_tenant_day");
        check(&[("quota_flush_ms", "5")], "quota_flush_ms");
        check(&[("quota_batch_max", "0")], "quota_batch_max");
        let many: Vec<String> = (0..=RATE_TIERS_MAX).map(|i| format!("t{i}=1/s")).collect();
        check(&[("rate_tenant_tiers", &many.join(","))], "at most");
        let most: Vec<String> = (0..RATE_TIERS_MAX).map(|i| format!("t{i}=1/s")).collect();
        assert_eq!(
            load(&[("rate_tenant_tiers", &most.join(","))])
                .expect("at the edge")
                .tiers
                .len(),
            RATE_TIERS_MAX
        );
    }
}
