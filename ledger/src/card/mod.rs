//! Cards in the vault: card numbers (PANs) checked, tokenized, stored sealed, shown masked.
//!
//! A tokenized card is one record (`layout::card`): what may be shown (brand, BIN, last four,
//! length, expiry, fingerprint) in the clear, and the card number with the cardholder's name
//! sealed by the vault ([`crate::vault::Sealed`]: AES-256-GCM under a data key that the key
//! service wraps, bound to the tenant, the purpose and the card's id). Nothing else ever holds a
//! number: requests carry a [`Pan`] that zeroizes its digits when dropped, the record is built
//! before the command reaches the committer, and the idempotency record keeps only the shown
//! part ([`Card`]). Deleting a card drops its sealed part for good; the rest stays as a
//! tombstone, so that its id is never reused and transfers that named it still read.
//!
//! The fingerprint is HMAC-SHA-256 under a deployment-wide key of its own (PCI DSS 3.5.1.1:
//! keyed, never a plain hash), over the tenant and the digits: the same card tokenized twice by
//! one tenant has one fingerprint, and two tenants' fingerprints of one card differ.

pub(crate) mod service;

pub use service::RewrapProgress;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::Rejection;
use crate::ids::{CardId, TenantId};
use crate::limits::{CARDHOLDER_NAME_LEN_MAX, REVEAL_REASON_LEN_MAX, REVEAL_REASON_LEN_MIN};
use crate::time::Timestamp;
use crate::vault::Sealed;

/// Fewest digits of a card number the vault takes (the networks issue 13 to 19).
pub const PAN_LEN_MIN: usize = 13;
/// Most digits of a card number.
pub const PAN_LEN_MAX: usize = 19;
/// How many years ahead an expiry may lie.
pub const EXPIRY_YEARS_AHEAD_MAX: u16 = 20;

/// A card network, from the number's leading digits (its IIN ranges).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Brand {
    /// Visa: 4.
    Visa,
    /// Mastercard: 51–55, 2221–2720.
    Mastercard,
    /// American Express: 34, 37.
    Amex,
    /// Discover: 6011, 644–649, 65.
    Discover,
    /// JCB: 3528–3589.
    Jcb,
    /// Diners Club: 300–305, 36, 38, 39.
    DinersClub,
    /// UnionPay: 62.
    UnionPay,
    /// Maestro: 50, 56–58, 63, 67.
    Maestro,
    /// None of the above.
    Unknown,
}

impl Brand {
    /// The brand of a number, by its first digits.
    pub fn of(digits: &str) -> Brand {
        let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok());
        let in_range =
            |n: usize, lo: u32, hi: u32| prefix(n).is_some_and(|p| (lo..=hi).contains(&p));
        if in_range(1, 4, 4) {
            Brand::Visa
        } else if in_range(2, 51, 55) || in_range(4, 2221, 2720) {
            Brand::Mastercard
        } else if in_range(2, 34, 34) || in_range(2, 37, 37) {
            Brand::Amex
        } else if in_range(4, 6011, 6011) || in_range(3, 644, 649) || in_range(2, 65, 65) {
            Brand::Discover
        } else if in_range(4, 3528, 3589) {
            Brand::Jcb
        } else if in_range(3, 300, 305) || in_range(2, 36, 36) || in_range(2, 38, 39) {
            Brand::DinersClub
        } else if in_range(2, 62, 62) {
            Brand::UnionPay
        } else if in_range(2, 50, 50)
            || in_range(2, 56, 58)
            || in_range(2, 63, 63)
            || in_range(2, 67, 67)
        {
            Brand::Maestro
        } else {
            Brand::Unknown
        }
    }

    /// The lowercase name the API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Brand::Visa => "visa",
            Brand::Mastercard => "mastercard",
            Brand::Amex => "amex",
            Brand::Discover => "discover",
            Brand::Jcb => "jcb",
            Brand::DinersClub => "diners_club",
            Brand::UnionPay => "unionpay",
            Brand::Maestro => "maestro",
            Brand::Unknown => "unknown",
        }
    }
}

/// A checked card number: [`PAN_LEN_MIN`] to [`PAN_LEN_MAX`] digits, Luhn-valid. Its digits are
/// zeroized when it is dropped, and its `Debug` shows only the brand and last four.
pub struct Pan(Zeroizing<String>);

impl std::fmt::Debug for Pan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pan({} …{})", self.brand().as_str(), self.last4())
    }
}

impl Pan {
    /// Checks a number as a client sends it: digits, with single spaces or dashes between
    /// groups allowed. The refusal never quotes the number.
    pub fn parse(text: &str) -> Result<Pan, Rejection> {
        let invalid = |reason: &str| Rejection::InvalidField {
            field: "pan".into(),
            reason: reason.into(),
        };
        let mut digits = Zeroizing::new(String::with_capacity(PAN_LEN_MAX));
        let mut last_separator = true;
        for c in text.chars() {
            match c {
                '0'..='9' => {
                    if digits.len() == PAN_LEN_MAX {
                        return Err(invalid("a card number has 13 to 19 digits"));
                    }
                    digits.push(c);
                    last_separator = false;
                }
                ' ' | '-' if !last_separator => last_separator = true,
                _ => {
                    return Err(invalid(
                        "a card number holds only digits, with single spaces or dashes between groups",
                    ));
                }
            }
        }
        if last_separator && !digits.is_empty() {
            return Err(invalid("a card number ends with a digit"));
        }
        if digits.len() < PAN_LEN_MIN {
            return Err(invalid("a card number has 13 to 19 digits"));
        }
        if !audit::mask::luhn_valid(digits.as_bytes()) {
            return Err(invalid("the card number fails its check digit (Luhn)"));
        }
        Ok(Pan(digits))
    }

    /// The digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The network.
    pub fn brand(&self) -> Brand {
        Brand::of(&self.0)
    }

    /// The first six digits (the BIN).
    pub fn bin(&self) -> &str {
        self.0.get(..6).unwrap_or_default()
    }

    /// The last four digits.
    pub fn last4(&self) -> &str {
        self.0
            .get(self.0.len().saturating_sub(4)..)
            .unwrap_or_default()
    }

    /// The keyed fingerprint of this number for `tenant` (see the module docs).
    pub fn fingerprint(&self, key: &[u8; 32], tenant: &TenantId) -> Fingerprint {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"strongroom/pan-fingerprint/v1\0");
        mac.update(&(tenant.as_str().len() as u64).to_be_bytes());
        mac.update(tenant.as_str().as_bytes());
        mac.update(self.0.as_bytes());
        Fingerprint(mac.finalize().into_bytes().into())
    }
}

/// A card's expiry: the last day of `month` in `year` (UTC), after which it is expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiry {
    /// 1 to 12.
    pub month: u8,
    /// Four digits.
    pub year: u16,
}

impl Expiry {
    /// Checks an expiry against `now`: a real month, not past, at most
    /// [`EXPIRY_YEARS_AHEAD_MAX`] years ahead.
    pub fn new(month: u8, year: u16, now: Timestamp) -> Result<Expiry, Rejection> {
        let invalid = |field: &str, reason: String| Rejection::InvalidField {
            field: field.into(),
            reason,
        };
        if !(1..=12).contains(&month) {
            return Err(invalid("exp_month", "1 to 12".into()));
        }
        let (this_year, this_month) = year_month(now);
        if year < this_year || (year == this_year && month < this_month) {
            return Err(invalid("exp_year", "the card has expired".into()));
        }
        if year > this_year.saturating_add(EXPIRY_YEARS_AHEAD_MAX) {
            return Err(invalid(
                "exp_year",
                format!("at most {EXPIRY_YEARS_AHEAD_MAX} years ahead"),
            ));
        }
        Ok(Expiry { month, year })
    }

    /// Whether the card has expired at `now` (after the last day of its month).
    pub fn expired_at(&self, now: Timestamp) -> bool {
        let (year, month) = year_month(now);
        (year, month) > (self.year, self.month)
    }
}

/// The UTC year and month of an instant.
fn year_month(now: Timestamp) -> (u16, u8) {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = now.micros().div_euclid(86_400_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        u16::try_from(year).unwrap_or(u16::MAX),
        u8::try_from(month).unwrap_or(1),
    )
}

/// A PAN's keyed fingerprint (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl Fingerprint {
    /// Lowercase hex, as the API shows it.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// What a client asks to tokenize; built only by [`NewCard::new`], so a card that reaches the
/// ledger is checked.
#[derive(Debug)]
pub struct NewCard {
    pub(crate) pan: Pan,
    pub(crate) expiry: Expiry,
    pub(crate) name: Zeroizing<String>,
}

impl NewCard {
    /// Checks the cardholder's name (1 to [`CARDHOLDER_NAME_LEN_MAX`] bytes, no control
    /// characters) and puts the parts together.
    pub fn new(pan: Pan, expiry: Expiry, name: String) -> Result<NewCard, Rejection> {
        let name = Zeroizing::new(name);
        let trimmed = name.trim();
        if trimmed.is_empty() || name.len() > CARDHOLDER_NAME_LEN_MAX {
            return Err(Rejection::InvalidField {
                field: "cardholder_name".into(),
                reason: format!("1 to {CARDHOLDER_NAME_LEN_MAX} bytes"),
            });
        }
        if name.chars().any(char::is_control) {
            return Err(Rejection::InvalidField {
                field: "cardholder_name".into(),
                reason: "no control characters".into(),
            });
        }
        Ok(NewCard { pan, expiry, name })
    }
}

/// What may be shown of a card: never its number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// The token.
    pub id: CardId,
    /// The network.
    pub brand: Brand,
    /// First six digits.
    pub bin: String,
    /// Last four digits.
    pub last4: String,
    /// How many digits the number has.
    pub pan_len: u8,
    /// Expiry.
    pub expiry: Expiry,
    /// The keyed fingerprint.
    pub fingerprint: Fingerprint,
    /// When it was tokenized.
    pub created_at: Timestamp,
}

/// How much of a number the API shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaskStyle {
    /// The BIN and the last four (PCI DSS 3.4.1's most).
    #[default]
    BinAndLastFour,
    /// The last four only.
    LastFour,
}

impl Card {
    /// The number as shown: `411111******1111`, or `************1111`.
    pub fn masked(&self, style: MaskStyle) -> String {
        let len = usize::from(self.pan_len);
        let (shown, hidden) = match style {
            MaskStyle::BinAndLastFour => (self.bin.as_str(), len.saturating_sub(10)),
            MaskStyle::LastFour => ("", len.saturating_sub(4)),
        };
        let mut out = String::with_capacity(len);
        out.push_str(shown);
        out.extend(std::iter::repeat_n('*', hidden));
        out.push_str(&self.last4);
        out
    }
}

/// A card as stored: the shown part, and the number sealed until the card is deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CardRecord {
    /// The shown part.
    pub card: Card,
    /// The number and name, sealed; `None` once deleted.
    pub sealed: Option<Sealed>,
    /// When it was deleted.
    pub deleted_at: Option<Timestamp>,
}

/// The secret part of a card, as sealed.
#[derive(Serialize, Deserialize)]
pub(crate) struct CardSecret {
    pub pan: String,
    pub name: String,
}

impl Drop for CardSecret {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.pan.zeroize();
        self.name.zeroize();
    }
}

/// A card with its number, for the privileged reveal; zeroized when dropped.
pub struct RevealedCard {
    /// The shown part.
    pub card: Card,
    /// The number.
    pub pan: Zeroizing<String>,
    /// The cardholder's name.
    pub name: Zeroizing<String>,
}

impl std::fmt::Debug for RevealedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedCard")
            .field("card", &self.card)
            .finish_non_exhaustive()
    }
}

/// Why someone reveals a card number: free text, [`REVEAL_REASON_LEN_MIN`] to
/// [`REVEAL_REASON_LEN_MAX`] bytes, kept for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevealReason(String);

impl RevealReason {
    /// Checks a stated reason.
    pub fn new(reason: &str) -> Result<RevealReason, Rejection> {
        let trimmed = reason.trim();
        if trimmed.len() < REVEAL_REASON_LEN_MIN || reason.len() > REVEAL_REASON_LEN_MAX {
            return Err(Rejection::InvalidField {
                field: "reason".into(),
                reason: format!(
                    "state why, in {REVEAL_REASON_LEN_MIN} to {REVEAL_REASON_LEN_MAX} bytes"
                ),
            });
        }
        if reason.chars().any(char::is_control) {
            return Err(Rejection::InvalidField {
                field: "reason".into(),
                reason: "no control characters".into(),
            });
        }
        // Recorded with the access: a card number in it is masked, as in any free text.
        Ok(RevealReason(audit::mask::mask_pans(trimmed).into_owned()))
    }

    /// The reason.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        // 2026-11-24T00:00:00Z
        Timestamp::from_micros(1_795_478_400_000_000)
    }

    #[test]
    fn numbers_are_checked_and_never_quoted() {
        let check = |text: &str, ok: bool| {
            let got = Pan::parse(text);
            assert_eq!(got.is_ok(), ok, "{text}");
            if let Err(e) = got {
                let digits: String = text.chars().filter(char::is_ascii_digit).collect();
                assert!(digits.is_empty() || !e.to_string().contains(&digits), "{e}");
            }
        };
        check("4111111111111111", true);
        check("4111 1111 1111 1111", true);
        check("4111-1111-1111-1111", true);
        check("378282246310005", true);
        check("4111111111111112", false); // check digit
        check("411111111111", false); // 12 digits
        check("41111111111111111111", false); // 20 digits
        check("4111  1111 1111 1111", false); // double separator
        check(" 4111111111111111", false);
        check("4111111111111111-", false);
        check("4111x111111111111", false);
        check("", false);
    }

    #[test]
    fn brands_by_prefix() {
        let check = |pan: &str, brand: Brand| assert_eq!(Brand::of(pan), brand, "{pan}");
        check("4111111111111111", Brand::Visa);
        check("5555555555554444", Brand::Mastercard);
        check("2223003122003222", Brand::Mastercard);
        check("378282246310005", Brand::Amex);
        check("6011111111111117", Brand::Discover);
        check("3530111333300000", Brand::Jcb);
        check("30569309025904", Brand::DinersClub);
        check("6200000000000005", Brand::UnionPay);
        check("9999999999999995", Brand::Unknown);
    }

    #[test]
    fn expiry_is_checked_against_now() {
        assert!(Expiry::new(11, 2026, now()).is_ok());
        assert!(Expiry::new(10, 2026, now()).is_err());
        assert!(Expiry::new(13, 2027, now()).is_err());
        assert!(Expiry::new(0, 2027, now()).is_err());
        assert!(Expiry::new(1, 2046, now()).is_ok());
        assert!(Expiry::new(12, 2047, now()).is_err());
        let exp = Expiry::new(11, 2026, now()).expect("expiry");
        assert!(!exp.expired_at(now()));
        // 2026-12-01
        assert!(exp.expired_at(Timestamp::from_micros(1_796_083_200_000_000)));
        assert_eq!(year_month(Timestamp::from_micros(0)), (1970, 1));
    }

    #[test]
    fn masks_and_fingerprints() {
        let pan = Pan::parse("4111 1111 1111 1111").expect("pan");
        assert_eq!(format!("{pan:?}"), "Pan(visa …1111)");
        let card = Card {
            id: crate::ids::IdGen::new().card(now()),
            brand: pan.brand(),
            bin: pan.bin().into(),
            last4: pan.last4().into(),
            pan_len: 16,
            expiry: Expiry::new(12, 2030, now()).expect("expiry"),
            fingerprint: Fingerprint([0; 32]),
            created_at: now(),
        };
        assert_eq!(card.masked(MaskStyle::BinAndLastFour), "411111******1111");
        assert_eq!(card.masked(MaskStyle::LastFour), "************1111");
        let acme = TenantId::new("acme").expect("tenant");
        let other = TenantId::new("other").expect("tenant");
        let key = [7u8; 32];
        let again = Pan::parse("4111111111111111").expect("pan");
        assert_eq!(pan.fingerprint(&key, &acme), again.fingerprint(&key, &acme));
        assert_ne!(pan.fingerprint(&key, &acme), pan.fingerprint(&key, &other));
        assert_ne!(
            pan.fingerprint(&key, &acme),
            pan.fingerprint(&[8; 32], &acme)
        );
        assert_eq!(pan.fingerprint(&key, &acme).to_hex().len(), 64);
    }

    #[test]
    fn reasons_are_bounded() {
        assert!(RevealReason::new("chargeback dispute #123").is_ok());
        assert!(RevealReason::new("short").is_err());
        assert!(RevealReason::new(&"x".repeat(REVEAL_REASON_LEN_MAX + 1)).is_err());
        assert!(RevealReason::new("dispute\nline two").is_err());
        // A card number in the reason is masked before it is kept or logged.
        let reason = RevealReason::new("dispute on 4111 1111 1111 1111").unwrap();
        assert_eq!(reason.as_str(), "dispute on 4111 11** **** 1111");
    }
}
