//! The `RateLimit-Policy` and `RateLimit` fields (IETF httpapi draft "RateLimit header fields
//! for HTTP"), in structured-field syntax (RFC 9651): a list with one item per policy, the
//! item a string naming the policy, its parameters
//!
//! - in `RateLimit-Policy`: `q`, the quota (requests a full budget holds), and `w`, the window
//!   in seconds in which an empty budget fills again: `"tenant";q=100;w=1`;
//! - in `RateLimit`: `r`, the requests that may still be sent at once, and `t`, the seconds
//!   until the whole quota is back: `"tenant";r=0;t=1`.
//!
//! Policy names are fixed tokens of ours (`ip`, `tenant`), so no escaping is needed; the
//! numbers are non-negative integers of at most 10 digits, within the 15 structured fields
//! allow.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::Standing;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// One `RateLimit-Policy` item.
pub fn policy_item(s: &Standing) -> String {
    format!("\"{}\";q={};w={}", s.policy, s.rate.quota, s.rate.window_s)
}

/// One `RateLimit` item.
pub fn state_item(s: &Standing) -> String {
    format!("\"{}\";r={};t={}", s.policy, s.remaining, s.reset_s)
}

/// Writes both fields for the policies a request was counted against (none: nothing).
pub fn write(headers: &mut HeaderMap, standings: &[Standing]) {
    if standings.is_empty() {
        return;
    }
    let join =
        |item: fn(&Standing) -> String| standings.iter().map(item).collect::<Vec<_>>().join(", ");
    for (name, value) in [
        (RATELIMIT_POLICY, join(policy_item)),
        (RATELIMIT, join(state_item)),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Rate;

    fn standing(policy: &'static str, rate: &str, remaining: u32, reset_s: u32) -> Standing {
        Standing {
            policy,
            rate: Rate::parse(rate).expect("rate").expect("on"),
            remaining,
            reset_s,
            retry_after_s: None,
        }
    }

    fn written(standings: &[Standing]) -> (Option<String>, Option<String>) {
        let mut headers = HeaderMap::new();
        write(&mut headers, standings);
        let get = |name: &HeaderName| {
            headers
                .get(name)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        (get(&RATELIMIT_POLICY), get(&RATELIMIT))
    }

    #[test]
    fn one_policy() {
        let (policy, state) = written(&[standing("tenant", "100/1s", 0, 1)]);
        assert_eq!(policy.as_deref(), Some(r#""tenant";q=100;w=1"#));
        assert_eq!(state.as_deref(), Some(r#""tenant";r=0;t=1"#));
    }

    #[test]
    fn two_policies_are_one_list() {
        let (policy, state) = written(&[
            standing("ip", "200/1s", 199, 1),
            standing("tenant", "5000/1h", 4_990, 8),
        ]);
        assert_eq!(
            policy.as_deref(),
            Some(r#""ip";q=200;w=1, "tenant";q=5000;w=3600"#)
        );
        assert_eq!(
            state.as_deref(),
            Some(r#""ip";r=199;t=1, "tenant";r=4990;t=8"#)
        );
    }

    #[test]
    fn no_policy_no_fields() {
        assert_eq!(written(&[]), (None, None));
    }
}
