//! Identifiers: tenants, accounts, transfers, cards and idempotency keys.
//!
//! Account and transfer ids are a type prefix and a ULID (`acct_01J…`, `xfer_01J…`), so they sort
//! by creation time and say what they name. Every id is validated when parsed; none can contain
//! the `#` that separates the parts of a store key, so no id can reach into another key space.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

use crate::error::Rejection;
use crate::limits::{IDEMPOTENCY_KEY_LEN_MAX, TENANT_LEN_MAX};
use crate::time::Timestamp;

/// A tenant: lowercase letters, digits, `-` and `_`, starting with a letter or digit, at most
/// [`TENANT_LEN_MAX`] bytes. The gateway takes it from a verified token, never from a request.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Validates a tenant id.
    pub fn new(id: &str) -> Option<TenantId> {
        let bytes = id.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_');
        (first_ok && rest_ok && bytes.len() <= TENANT_LEN_MAX).then(|| TenantId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TenantId::new(&s).ok_or_else(|| format!("invalid tenant id {s:?}"))
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Ulid);

        impl $name {
            /// The type prefix, including the underscore.
            pub const PREFIX: &'static str = $prefix;

            /// Length of the id's text: the prefix and a ULID.
            pub const TEXT_LEN: usize = $prefix.len() + ulid::ULID_LEN;

            /// Wraps a ULID.
            pub fn from_ulid(ulid: Ulid) -> Self {
                $name(ulid)
            }

            /// The creation time encoded in the id, in milliseconds since the epoch.
            pub fn timestamp_ms(&self) -> u64 {
                self.0.timestamp_ms()
            }

            /// Appends the id's text (`prefix` and ULID) to `out`, without the formatting
            /// machinery: store keys are built from ids for every record a batch touches.
            pub fn push_to(&self, out: &mut String) {
                let mut buf = [0u8; ulid::ULID_LEN];
                out.push_str($prefix);
                out.push_str(self.0.array_to_str(&mut buf));
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let rest = s
                    .strip_prefix($prefix)
                    .ok_or_else(|| format!("id must start with {:?}", $prefix))?;
                if rest.len() != 26 {
                    return Err("malformed id".to_owned());
                }
                Ulid::from_string(rest).map($name).map_err(|_| "malformed id".to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; ulid::ULID_LEN];
                f.write_str($prefix)?;
                f.write_str(self.0.array_to_str(&mut buf))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        /// Text (`acct_…`) in human-readable formats, the 128-bit ULID in binary ones.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() { s.collect_str(self) } else { s.serialize_u128(self.0.0) }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    u128::deserialize(d).map(|bits| $name(Ulid(bits)))
                }
            }
        }
    };
}

prefixed_id!(
    /// An account: `acct_` and a ULID.
    AccountId,
    "acct_"
);
prefixed_id!(
    /// A transfer or journal entry: `xfer_` and a ULID.
    TransferId,
    "xfer_"
);
prefixed_id!(
    /// A tokenized card in the vault: `card_` and a ULID.
    CardId,
    "card_"
);

impl CardId {
    /// The card's shard of its tenant's card partitions (`layout::card`), from the ULID's
    /// random low bits, so that a tenant's cards spread over [`CARD_SHARDS`] partitions.
    ///
    /// [`CARD_SHARDS`]: crate::limits::CARD_SHARDS
    pub fn shard(&self) -> u32 {
        (self.0.0 % u128::from(crate::limits::CARD_SHARDS)) as u32
    }
}

impl TransferId {
    /// Low bits of a transfer id that number it within its pack (see `transfer_pack.rs`): the
    /// transfers one batch creates for one tenant share the other 108 bits, and so the first
    /// 22 characters of the ULID.
    pub const PACK_INDEX_BITS: u32 = 20;

    /// The id of the pack's first transfer (index 0), which names the pack.
    pub fn pack_base(&self) -> TransferId {
        TransferId(Ulid(self.0.0 & !((1u128 << Self::PACK_INDEX_BITS) - 1)))
    }

    /// Transfer `index` of the pack `base` names.
    pub fn in_pack(base: TransferId, index: u32) -> TransferId {
        let index = u128::from(index) & ((1u128 << Self::PACK_INDEX_BITS) - 1);
        TransferId(Ulid(base.pack_base().0.0 | index))
    }
}

/// A client's `Idempotency-Key`: 1 to [`IDEMPOTENCY_KEY_LEN_MAX`] visible ASCII characters.
/// Scoped by tenant: two tenants may use the same key independently.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates a key; see [`IdempotencyKey::parse`] for why one is refused.
    pub fn new(key: &str) -> Option<IdempotencyKey> {
        IdempotencyKey::parse(key).ok()
    }

    /// Validates a key, or says why not (`InvalidField` on `idempotency_key`). A key holding
    /// a card number is refused, not masked: it is part of a store key, and masking would
    /// make two different keys one.
    pub fn parse(key: &str) -> Result<IdempotencyKey, Rejection> {
        let invalid = |reason: String| Rejection::InvalidField {
            field: "idempotency_key".into(),
            reason,
        };
        let ok = !key.is_empty()
            && key.len() <= IDEMPOTENCY_KEY_LEN_MAX
            && key.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(invalid(format!(
                "1 to {IDEMPOTENCY_KEY_LEN_MAX} visible ASCII characters"
            )));
        }
        if audit::identifier_holds_pan(key) {
            return Err(invalid(crate::account::NO_CARD_NUMBER.into()));
        }
        Ok(IdempotencyKey(key.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.0)
    }
}

/// Makes ids that sort in creation order within this process (a monotonic ULID generator).
#[derive(Debug, Default)]
pub struct IdGen {
    inner: Mutex<ulid::Generator>,
    /// The last pack base handed out.
    last_pack: Mutex<u128>,
}

impl IdGen {
    /// A new generator.
    pub fn new() -> IdGen {
        IdGen::default()
    }

    fn next(&self, now: Timestamp) -> Ulid {
        let mut generator = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match generator.generate_from_datetime(now.to_system_time()) {
            Ok(ulid) => ulid,
            // 2^80 ids in one millisecond: carry into the next millisecond instead of failing.
            Err(overflow) => overflow.commit_overflow_increment(),
        }
    }

    /// A new account id.
    pub fn account(&self, now: Timestamp) -> AccountId {
        AccountId(self.next(now))
    }

    /// A new card id.
    pub fn card(&self, now: Timestamp) -> CardId {
        CardId(self.next(now))
    }

    /// A new transfer id.
    pub fn transfer(&self, now: Timestamp) -> TransferId {
        TransferId(self.next(now))
    }

    /// A new transfer pack: the id of its transfer 0 (see [`TransferId::in_pack`]). Bases sort
    /// in creation order within this process and never repeat; across processes their 60
    /// random bits keep them apart.
    pub fn transfer_pack(&self, now: Timestamp) -> TransferId {
        let step = 1u128 << TransferId::PACK_INDEX_BITS;
        let mut base = self.next(now).0 & !(step - 1);
        let mut last = self
            .last_pack
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if base <= *last {
            base = last.saturating_add(step);
        }
        *last = base;
        TransferId(Ulid(base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_tenant(id: &str, ok: bool) {
        assert_eq!(TenantId::new(id).is_some(), ok, "{id:?}");
    }

    #[test]
    fn tenants() {
        check_tenant("acme", true);
        check_tenant("acme-2_x", true);
        check_tenant("9lives", true);
        check_tenant("", false);
        check_tenant("Acme", false);
        check_tenant("-acme", false);
        check_tenant("ac#me", false);
        check_tenant("ac me", false);
        check_tenant(&"a".repeat(TENANT_LEN_MAX), true);
        check_tenant(&"a".repeat(TENANT_LEN_MAX + 1), false);
    }

    #[test]
    fn prefixed_ids_round_trip() {
        let ids = IdGen::new();
        let now = Timestamp::from_micros(1_700_000_000_000_000);
        let a = ids.account(now);
        let text = a.to_string();
        assert!(text.starts_with("acct_"));
        assert_eq!(text.parse::<AccountId>(), Ok(a));
        assert!(text.parse::<TransferId>().is_err());
        assert!("acct_".parse::<AccountId>().is_err());
        assert!(
            "acct_01HZZZZZZZZZZZZZZZZZZZZZZZ#"
                .parse::<AccountId>()
                .is_err()
        );
        let b = ids.account(now);
        assert!(b > a, "ids from one generator sort in creation order");
    }

    #[test]
    fn pack_ids_share_all_but_their_index_and_packs_never_repeat() {
        let ids = IdGen::new();
        let now = Timestamp::from_micros(1_700_000_000_000_000);
        // Many packs in one millisecond: each new, each after the last.
        let bases: Vec<TransferId> = (0..1000).map(|_| ids.transfer_pack(now)).collect();
        assert!(bases.windows(2).all(|w| w[0] < w[1]));
        let base = bases[0];
        assert_eq!(base.pack_base(), base);
        let members: Vec<TransferId> = (0..300).map(|i| TransferId::in_pack(base, i)).collect();
        assert_eq!(members[0], base);
        assert!(
            members
                .windows(2)
                .all(|w| w[0] < w[1] && w[1].pack_base() == base)
        );
        // They share the text of the id but for its last four characters, and no other pack's
        // members fall between them.
        let text = members[299].to_string();
        assert_eq!(text[..text.len() - 4], base.to_string()[..text.len() - 4]);
        assert!(bases[1] > members[299]);
        assert_eq!(text.parse::<TransferId>(), Ok(members[299]));
    }

    #[test]
    fn idempotency_keys() {
        assert!(IdempotencyKey::new("k-1").is_some());
        assert!(IdempotencyKey::new("").is_none());
        assert!(IdempotencyKey::new("has space").is_none());
        assert!(IdempotencyKey::new("naïve").is_none());
        assert!(IdempotencyKey::new(&"k".repeat(IDEMPOTENCY_KEY_LEN_MAX)).is_some());
        assert!(IdempotencyKey::new(&"k".repeat(IDEMPOTENCY_KEY_LEN_MAX + 1)).is_none());
    }

    #[test]
    fn idempotency_keys_with_card_numbers_are_refused() {
        fn check(key: &str, refused: bool) {
            let parsed = IdempotencyKey::parse(key);
            assert_eq!(parsed.is_err(), refused, "{key:?}");
            if refused {
                assert_eq!(
                    parsed.unwrap_err(),
                    Rejection::InvalidField {
                        field: "idempotency_key".into(),
                        reason: crate::account::NO_CARD_NUMBER.into()
                    }
                );
                assert!(IdempotencyKey::new(key).is_none());
            }
        }
        check("order-4111111111111111", true);
        check("4111-1111-1111-1111", true);
        check("pay_5555555555554444_1", true);
        check("order-411111111111", false);
        check("01J9Z8Q6N3B7K2M4P5R6S7T8V9", false);
        // Hex ids and UUIDs whose digits happen to form a Luhn-valid run are keys, not cards.
        check("vl-3a4111111111111111bc", false);
        check("12345678-1234-4234-a456-426614174000", false);
    }
}
