//! Accounts and their balances.
//!
//! An account holds one currency, has a normal side (the side on which its balance grows), an
//! optional balance constraint, and a status. Its balances are four running totals, posted and
//! pending, on each side; everything else (posted balance, available balance) derives from them.
//!
//! Free text (names, descriptions, metadata values) is masked here, on entry, with
//! [`audit::mask_pans`]: a card number in it is stored as its BIN and last four whoever built
//! the request. Identifiers (metadata keys, external references) are refused instead when
//! they hold one ([`audit::identifier_holds_pan`]): masking would make two different keys one.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Rejection;
use crate::ids::{AccountId, TenantId};
use crate::limits::{
    DESCRIPTION_LEN_MAX, EXTERNAL_REF_LEN_MAX, METADATA_KEY_LEN_MAX, METADATA_KEYS_MAX,
    METADATA_VALUE_LEN_MAX,
};
use crate::money::Currency;
use crate::time::Timestamp;

/// A side of an account: debits on the left, credits on the right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The left side.
    Debit,
    /// The right side.
    Credit,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Debit => Side::Credit,
            Side::Credit => Side::Debit,
        }
    }
}

/// What an account refuses, so that its balance never crosses zero the wrong way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceConstraint {
    /// Anything goes.
    #[default]
    None,
    /// Posted and pending debits never exceed posted credits (a wallet that cannot overdraw).
    DebitsMustNotExceedCredits,
    /// Posted and pending credits never exceed posted debits.
    CreditsMustNotExceedDebits,
}

/// Whether an account takes postings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Takes postings.
    Open,
    /// Refuses postings until unfrozen; pending holds can still be voided.
    Frozen,
    /// Refuses postings forever.
    Closed,
}

/// A change of account status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusAction {
    /// Open to frozen.
    Freeze,
    /// Frozen to open.
    Unfreeze,
    /// Open or frozen to closed; needs zero posted and pending balances.
    Close,
}

/// Bounded string metadata: at most [`METADATA_KEYS_MAX`] keys, keys non-empty and at most
/// [`METADATA_KEY_LEN_MAX`] bytes, values at most [`METADATA_VALUE_LEN_MAX`] bytes. Keys are
/// sorted, so equal metadata always serializes the same way. Card numbers in values are
/// masked; a key holding one is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Checks the bounds, refuses keys that hold a card number, masks card numbers in values.
    pub fn new(mut map: BTreeMap<String, String>) -> Result<Metadata, Rejection> {
        let invalid = |reason: String| Rejection::InvalidField {
            field: "metadata".into(),
            reason,
        };
        if map.len() > METADATA_KEYS_MAX {
            return Err(invalid(format!("at most {METADATA_KEYS_MAX} keys")));
        }
        for (key, value) in &map {
            if key.is_empty() || key.len() > METADATA_KEY_LEN_MAX {
                return Err(invalid(format!(
                    "keys must be 1 to {METADATA_KEY_LEN_MAX} bytes"
                )));
            }
            if value.len() > METADATA_VALUE_LEN_MAX {
                return Err(invalid(format!(
                    "values must be at most {METADATA_VALUE_LEN_MAX} bytes"
                )));
            }
            if audit::identifier_holds_pan(key) {
                return Err(invalid(format!("keys {NO_CARD_NUMBER}")));
            }
        }
        for value in map.values_mut() {
            mask_in_place(value);
        }
        Ok(Metadata(map))
    }

    /// The entries, sorted by key.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// Why an identifier holding a card number is refused (after the field's name).
pub const NO_CARD_NUMBER: &str = "must not contain a card number";

/// Checks an optional free-text field against [`DESCRIPTION_LEN_MAX`] and masks the card
/// numbers in it (masking keeps the length).
pub fn check_text(field: &str, text: Option<String>) -> Result<Option<String>, Rejection> {
    match text {
        Some(t) if t.len() > DESCRIPTION_LEN_MAX => Err(Rejection::InvalidField {
            field: field.into(),
            reason: format!("at most {DESCRIPTION_LEN_MAX} bytes"),
        }),
        Some(mut t) => {
            mask_in_place(&mut t);
            Ok(Some(t))
        }
        None => Ok(None),
    }
}

/// Masks the card numbers in `text`; allocates only when there is one.
fn mask_in_place(text: &mut String) {
    let masked = match audit::mask_pans(text) {
        Cow::Borrowed(_) => return,
        Cow::Owned(masked) => masked,
    };
    *text = masked;
}

/// The four running totals of an account, in minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    /// Sum of posted debits.
    pub debits_posted: u128,
    /// Sum of posted credits.
    pub credits_posted: u128,
    /// Sum of debits held by pending transfers.
    pub debits_pending: u128,
    /// Sum of credits held by pending transfers.
    pub credits_pending: u128,
}

impl Balances {
    /// Posted balance on the normal side: credits minus debits for a credit-normal account.
    pub fn posted(&self, normal: Side) -> i128 {
        signed(self.debits_posted, self.credits_posted, normal)
    }

    /// Pending balance on the normal side.
    pub fn pending(&self, normal: Side) -> i128 {
        signed(self.debits_pending, self.credits_pending, normal)
    }

    /// Available balance: the posted balance less what pending transfers hold against it (pending
    /// debits of a credit-normal account, pending credits of a debit-normal one).
    pub fn available(&self, normal: Side) -> i128 {
        let held = match normal {
            Side::Credit => self.debits_pending,
            Side::Debit => self.credits_pending,
        };
        self.posted(normal)
            .saturating_sub(i128::try_from(held).unwrap_or(i128::MAX))
    }

    /// Whether the constraint holds for these totals.
    pub fn satisfies(&self, constraint: BalanceConstraint) -> bool {
        match constraint {
            BalanceConstraint::None => true,
            BalanceConstraint::DebitsMustNotExceedCredits => self
                .debits_posted
                .checked_add(self.debits_pending)
                .is_some_and(|d| d <= self.credits_posted),
            BalanceConstraint::CreditsMustNotExceedDebits => self
                .credits_posted
                .checked_add(self.credits_pending)
                .is_some_and(|c| c <= self.debits_posted),
        }
    }

    /// Whether all four totals net to nothing (posted balance and pending both zero).
    pub fn is_settled_to_zero(&self) -> bool {
        self.debits_posted == self.credits_posted && self.debits_pending == self.credits_pending
    }

    /// Adds to one posted column, checked.
    pub(crate) fn add_posted(&mut self, side: Side, amount: u64) -> Option<()> {
        let column = match side {
            Side::Debit => &mut self.debits_posted,
            Side::Credit => &mut self.credits_posted,
        };
        *column = column.checked_add(u128::from(amount))?;
        Some(())
    }

    /// Adds to one pending column, checked.
    pub(crate) fn add_pending(&mut self, side: Side, amount: u64) -> Option<()> {
        let column = self.pending_column(side);
        *column = column.checked_add(u128::from(amount))?;
        Some(())
    }

    /// Takes from one pending column; `None` if it holds less (a broken invariant).
    pub(crate) fn release_pending(&mut self, side: Side, amount: u64) -> Option<()> {
        let column = self.pending_column(side);
        *column = column.checked_sub(u128::from(amount))?;
        Some(())
    }

    fn pending_column(&mut self, side: Side) -> &mut u128 {
        match side {
            Side::Debit => &mut self.debits_pending,
            Side::Credit => &mut self.credits_pending,
        }
    }
}

fn signed(debits: u128, credits: u128, normal: Side) -> i128 {
    let (plus, minus) = match normal {
        Side::Debit => (debits, credits),
        Side::Credit => (credits, debits),
    };
    let plus = i128::try_from(plus).unwrap_or(i128::MAX);
    let minus = i128::try_from(minus).unwrap_or(i128::MAX);
    plus.saturating_sub(minus)
}

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// The tenant that owns it.
    pub tenant: TenantId,
    /// The one currency it holds.
    pub currency: Currency,
    /// The side its balance grows on.
    pub normal_side: Side,
    /// What it refuses.
    pub constraint: BalanceConstraint,
    /// Whether it takes postings.
    pub status: AccountStatus,
    /// A name for people.
    pub name: Option<String>,
    /// The client's own reference, unique per tenant.
    pub external_ref: Option<String>,
    /// Client metadata.
    pub metadata: Metadata,
    /// Running totals.
    pub balances: Balances,
    /// Number of entries written; the sequence number of the latest.
    pub entry_seq: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed; never earlier than its latest entry.
    pub updated_at: Timestamp,
}

/// What a client asks for when it creates an account; constructed only by [`NewAccount::new`],
/// which checks every bound.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewAccount {
    pub(crate) currency: Currency,
    pub(crate) normal_side: Side,
    pub(crate) constraint: BalanceConstraint,
    pub(crate) name: Option<String>,
    pub(crate) external_ref: Option<String>,
    pub(crate) metadata: Metadata,
}

impl NewAccount {
    /// Checks and builds an account request.
    pub fn new(
        currency: Currency,
        normal_side: Side,
        constraint: BalanceConstraint,
        name: Option<String>,
        external_ref: Option<String>,
        metadata: Metadata,
    ) -> Result<NewAccount, Rejection> {
        let name = check_text("name", name)?;
        if let Some(r) = &external_ref {
            let ok = !r.is_empty()
                && r.len() <= EXTERNAL_REF_LEN_MAX
                && r.chars().all(|c| !c.is_control());
            if !ok {
                return Err(Rejection::InvalidField {
                    field: "external_ref".into(),
                    reason: format!("1 to {EXTERNAL_REF_LEN_MAX} bytes, no control characters"),
                });
            }
            if audit::identifier_holds_pan(r) {
                return Err(Rejection::InvalidField {
                    field: "external_ref".into(),
                    reason: NO_CARD_NUMBER.into(),
                });
            }
        }
        Ok(NewAccount {
            currency,
            normal_side,
            constraint,
            name,
            external_ref,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_balances() {
        let b = Balances {
            debits_posted: 30,
            credits_posted: 100,
            debits_pending: 20,
            credits_pending: 5,
        };
        assert_eq!(b.posted(Side::Credit), 70);
        assert_eq!(b.posted(Side::Debit), -70);
        assert_eq!(b.available(Side::Credit), 50);
        assert_eq!(b.available(Side::Debit), -75);
        assert!(b.satisfies(BalanceConstraint::DebitsMustNotExceedCredits));
        assert!(!b.satisfies(BalanceConstraint::CreditsMustNotExceedDebits));
        let over = Balances {
            debits_posted: 90,
            credits_posted: 100,
            debits_pending: 11,
            credits_pending: 0,
        };
        assert!(!over.satisfies(BalanceConstraint::DebitsMustNotExceedCredits));
        let edge = Balances {
            debits_posted: 90,
            credits_posted: 100,
            debits_pending: 10,
            credits_pending: 0,
        };
        assert!(edge.satisfies(BalanceConstraint::DebitsMustNotExceedCredits));
    }

    #[test]
    fn metadata_bounds() {
        let map = |n: usize, k: usize, v: usize| {
            (0..n)
                .map(|i| (format!("{i:0>k$}"), "v".repeat(v)))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(Metadata::new(map(METADATA_KEYS_MAX, 4, METADATA_VALUE_LEN_MAX)).is_ok());
        assert!(Metadata::new(map(METADATA_KEYS_MAX + 1, 4, 1)).is_err());
        assert!(Metadata::new(map(1, METADATA_KEY_LEN_MAX, 1)).is_ok());
        assert!(Metadata::new(map(1, METADATA_KEY_LEN_MAX + 1, 1)).is_err());
        assert!(Metadata::new(map(1, 4, METADATA_VALUE_LEN_MAX + 1)).is_err());
        assert!(Metadata::new(BTreeMap::from([(String::new(), "v".into())])).is_err());
    }

    /// A PAN in every free-text field of an account request, and in its identifiers.
    #[test]
    fn card_numbers_are_masked_in_text_and_refused_in_identifiers() {
        /// `masked`: what `input` masks to, `None` when it holds no card number.
        fn check(input: &str, masked: Option<&str>) {
            let refused = |field: &str| Rejection::InvalidField {
                field: field.into(),
                reason: match field {
                    "metadata" => format!("keys {NO_CARD_NUMBER}"),
                    _ => NO_CARD_NUMBER.into(),
                },
            };
            // Free text: masked, never refused.
            let name = check_text("name", Some(input.into())).unwrap().unwrap();
            let value = Metadata::new(BTreeMap::from([("k".into(), input.into())])).unwrap();
            assert_eq!(name, masked.unwrap_or(input), "{input:?}");
            assert_eq!(value.entries()["k"], masked.unwrap_or(input), "{input:?}");
            // Identifiers: refused when they hold a card number, else kept as given.
            let key = Metadata::new(BTreeMap::from([(input.into(), "v".into())]));
            let account = NewAccount::new(
                Currency::from_code("USD").unwrap(),
                Side::Debit,
                BalanceConstraint::None,
                Some(input.into()),
                Some(input.into()),
                Metadata::default(),
            );
            match masked {
                Some(_) => {
                    assert_eq!(key.unwrap_err(), refused("metadata"), "{input:?}");
                    assert_eq!(account.unwrap_err(), refused("external_ref"), "{input:?}");
                }
                None => {
                    assert_eq!(key.unwrap().entries().keys().next().unwrap(), input);
                    let account = account.unwrap();
                    assert_eq!(account.external_ref.as_deref(), Some(input));
                    assert_eq!(account.name.as_deref(), Some(input));
                }
            }
        }
        check(
            "refund 4111 1111 1111 1111",
            Some("refund 4111 11** **** 1111"),
        );
        check("5555-5555-5555-4444", Some("5555-55**-****-4444"));
        check("card378282246310005.", Some("card378282*****0005."));
        check("order 12345678", None);
        // Not Luhn-valid, nor any 13-digit window of it.
        check("4111 1111 1111 1113", None);
        // Masking keeps the length: a description at the limit stays within it.
        let long = format!("{}4111111111111111", "x".repeat(DESCRIPTION_LEN_MAX - 16));
        let masked = check_text("description", Some(long)).unwrap().unwrap();
        assert_eq!(masked.len(), DESCRIPTION_LEN_MAX);
        assert!(masked.ends_with("411111******1111"));
    }
}
