//! Transfers, journal entries, holds, and the entries they write on accounts.
//!
//! A transfer is a set of legs that balance per currency. A plain transfer has two legs (one
//! debit, one credit, same amount); a journal entry has up to [`LEGS_MAX`]. A transfer is either
//! posted at once or pending (a hold): a hold is later posted (in full or in part) or voided, by
//! the client or, when it expires, by the ledger itself.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::account::{Balances, Metadata, Side, check_text};
use crate::error::Rejection;
use crate::ids::{AccountId, CardId, TransferId};
use crate::limits::{HOLD_TIMEOUT_S_MAX, HOLD_TIMEOUT_S_MIN, LEGS_MAX, LEGS_MIN};
use crate::money::{Amount, Currency};
use crate::time::Timestamp;

/// One line of a transfer: an amount on one side of one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// The account.
    pub account: AccountId,
    /// Debit or credit.
    pub side: Side,
    /// How much.
    pub amount: Amount,
    /// Must be the account's currency.
    pub currency: Currency,
}

/// Legs proven to balance: two to [`LEGS_MAX`] of them, no account twice, and per currency the
/// debits equal the credits. Only [`BalancedLegs::new`] and [`BalancedLegs::transfer`] make one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BalancedLegs(Vec<Leg>);

impl BalancedLegs {
    /// Checks a journal entry's legs.
    pub fn new(legs: Vec<Leg>) -> Result<BalancedLegs, Rejection> {
        if !(LEGS_MIN..=LEGS_MAX).contains(&legs.len()) {
            return Err(Rejection::LegCount {
                min: LEGS_MIN,
                max: LEGS_MAX,
            });
        }
        let mut seen = HashSet::with_capacity(legs.len());
        let mut sums: BTreeMap<Currency, (u128, u128)> = BTreeMap::new();
        for leg in &legs {
            if !seen.insert(leg.account) {
                return Err(Rejection::DuplicateAccount {
                    account: leg.account,
                });
            }
            let sum = sums.entry(leg.currency).or_default();
            let column = match leg.side {
                Side::Debit => &mut sum.0,
                Side::Credit => &mut sum.1,
            };
            // At most LEGS_MAX amounts below 2^63 each: a u128 cannot overflow.
            *column += u128::from(leg.amount.minor());
        }
        if let Some((&currency, _)) = sums.iter().find(|(_, (d, c))| d != c) {
            return Err(Rejection::Unbalanced { currency });
        }
        Ok(BalancedLegs(legs))
    }

    /// The two legs of a plain transfer.
    pub fn transfer(
        debit: AccountId,
        credit: AccountId,
        amount: Amount,
        currency: Currency,
    ) -> Result<BalancedLegs, Rejection> {
        if debit == credit {
            return Err(Rejection::SameAccount { account: debit });
        }
        Ok(BalancedLegs(vec![
            Leg {
                account: debit,
                side: Side::Debit,
                amount,
                currency,
            },
            Leg {
                account: credit,
                side: Side::Credit,
                amount,
                currency,
            },
        ]))
    }

    /// The legs.
    pub fn legs(&self) -> &[Leg] {
        &self.0
    }
}

/// What a client asks for when it creates a transfer; constructed only by [`NewTransfer::new`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewTransfer {
    pub(crate) legs: BalancedLegs,
    pub(crate) description: Option<String>,
    pub(crate) metadata: Metadata,
    pub(crate) hold_timeout_s: Option<u64>,
    /// The card the transfer charges or pays out to, if any. Left out of the request's
    /// encoding when absent, so that an idempotency fingerprint taken by a build before cards
    /// still matches the same request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) instrument: Option<CardId>,
}

impl NewTransfer {
    /// Checks and builds a transfer request. A hold (`hold_timeout_s` set) must be a plain
    /// two-leg transfer and time out within [`HOLD_TIMEOUT_S_MIN`]..=[`HOLD_TIMEOUT_S_MAX`].
    pub fn new(
        legs: BalancedLegs,
        description: Option<String>,
        metadata: Metadata,
        hold_timeout_s: Option<u64>,
    ) -> Result<NewTransfer, Rejection> {
        let description = check_text("description", description)?;
        if let Some(timeout_s) = hold_timeout_s {
            if legs.legs().len() != 2 {
                return Err(Rejection::HoldNeedsTwoLegs);
            }
            if !(HOLD_TIMEOUT_S_MIN..=HOLD_TIMEOUT_S_MAX).contains(&timeout_s) {
                return Err(Rejection::InvalidField {
                    field: "timeout_seconds".into(),
                    reason: format!("between {HOLD_TIMEOUT_S_MIN} and {HOLD_TIMEOUT_S_MAX}"),
                });
            }
        }
        Ok(NewTransfer {
            legs,
            description,
            metadata,
            hold_timeout_s,
            instrument: None,
        })
    }

    /// The same request with a card as its instrument: the ledger checks, when it plans the
    /// transfer, that the tenant holds this card, undeleted and unexpired.
    pub fn with_instrument(mut self, card: CardId) -> NewTransfer {
        self.instrument = Some(card);
        self
    }

    /// The card the transfer names, if any.
    pub fn instrument(&self) -> Option<CardId> {
        self.instrument
    }

    /// The legs.
    pub fn legs(&self) -> &[Leg] {
        self.legs.legs()
    }
}

/// Where a transfer is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    /// A hold: its amount is reserved, not moved.
    Pending,
    /// Moved.
    Posted,
    /// A hold that was released without moving anything.
    Voided,
}

/// Why a hold was voided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoidReason {
    /// The client voided it.
    Requested,
    /// Its timeout passed and the ledger voided it.
    Expired,
}

/// The hold part of a pending transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// When the ledger voids it if nobody posted or voided it first.
    pub expires_at: Timestamp,
    /// The amount posted, when posted (at most the held amount).
    pub posted_amount: Option<Amount>,
    /// Why it was voided, when voided.
    pub void_reason: Option<VoidReason>,
    /// When it was posted or voided.
    pub resolved_at: Option<Timestamp>,
}

/// A transfer as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Its id.
    pub id: TransferId,
    /// Its legs, balanced per currency.
    pub legs: Vec<Leg>,
    /// Free text.
    pub description: Option<String>,
    /// Client metadata.
    pub metadata: Metadata,
    /// Pending, posted or voided.
    pub state: TransferState,
    /// Present for holds.
    pub hold: Option<Hold>,
    /// The transfer this one reverses.
    pub reverses: Option<TransferId>,
    /// The transfer that reversed this one.
    pub reversed_by: Option<TransferId>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The card it charges or pays out to (a token of the vault), if any.
    pub instrument: Option<CardId>,
}

/// A transfer as builds before card instruments stored it (formats 1 and 3 of `codec`): the
/// fields of [`Transfer`] without `instrument`. Postcard has no field names, so the old shape is
/// decoded as itself and converted, never read as the new one.
#[derive(Deserialize)]
pub(crate) struct TransferV1 {
    id: TransferId,
    legs: Vec<Leg>,
    description: Option<String>,
    metadata: Metadata,
    state: TransferState,
    hold: Option<Hold>,
    reverses: Option<TransferId>,
    reversed_by: Option<TransferId>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<TransferV1> for Transfer {
    fn from(t: TransferV1) -> Transfer {
        Transfer {
            id: t.id,
            legs: t.legs,
            description: t.description,
            metadata: t.metadata,
            state: t.state,
            hold: t.hold,
            reverses: t.reverses,
            reversed_by: t.reversed_by,
            created_at: t.created_at,
            updated_at: t.updated_at,
            instrument: None,
        }
    }
}

impl Transfer {
    /// For a plain two-leg transfer: debit account, credit account, amount, currency.
    pub fn as_plain(&self) -> Option<(AccountId, AccountId, Amount, Currency)> {
        // Either order: a reversal flips the sides, so its debit leg comes second.
        let (d, c) = match self.legs.as_slice() {
            [a, b] if a.side == Side::Debit && b.side == Side::Credit => (a, b),
            [a, b] if a.side == Side::Credit && b.side == Side::Debit => (b, a),
            _ => return None,
        };
        (d.amount == c.amount && d.currency == c.currency)
            .then_some((d.account, c.account, d.amount, d.currency))
    }

    /// The amount that actually moved for each leg (the posted part of a hold), or `None` for a
    /// leg that moved nothing (pending or voided).
    pub fn moved(&self, leg: &Leg) -> Option<Amount> {
        match (self.state, &self.hold) {
            (TransferState::Posted, Some(hold)) => hold.posted_amount,
            (TransferState::Posted, None) => Some(leg.amount),
            _ => None,
        }
    }

    /// The hold timeout as a duration from creation, for holds.
    pub fn hold_timeout(&self) -> Option<Duration> {
        let hold = self.hold.as_ref()?;
        let micros = hold
            .expires_at
            .micros()
            .saturating_sub(self.created_at.micros());
        Some(Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
    }
}

/// What an entry did to its account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Added `amount` to the posted column of `side`.
    Posted,
    /// Added `amount` to the pending column of `side` (a hold was placed).
    Held,
    /// Released `released` from the pending column and added `amount` to the posted one.
    HoldPosted,
    /// Released `released` from the pending column (a hold was voided or expired).
    HoldVoided,
}

/// One change to one account's balances, with the balances after it: the account's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The account.
    pub account: AccountId,
    /// 1 for the account's first entry, then consecutive.
    pub seq: u64,
    /// The transfer that wrote it.
    pub transfer: TransferId,
    /// What it did.
    pub kind: EntryKind,
    /// The side it touched.
    pub side: Side,
    /// Added to the posted column (`posted`, `hold_posted`) or the pending one (`held`); zero
    /// for `hold_voided`.
    pub amount: u64,
    /// Taken from the pending column (`hold_posted`, `hold_voided`); zero otherwise.
    pub released: u64,
    /// The account's balances after this entry.
    pub balances: Balances,
    /// When it was written; never earlier than the account's previous entry.
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdGen;

    fn leg(account: AccountId, side: Side, amount: u64, currency: &str) -> Leg {
        Leg {
            account,
            side,
            amount: Amount::new(amount).expect("amount"),
            currency: Currency::from_code(currency).expect("currency"),
        }
    }

    #[test]
    fn legs_must_balance_per_currency() {
        let ids = IdGen::new();
        let now = Timestamp::from_micros(1);
        let [a, b, c, d] = [
            ids.account(now),
            ids.account(now),
            ids.account(now),
            ids.account(now),
        ];
        let fx = vec![
            leg(a, Side::Debit, 100, "USD"),
            leg(b, Side::Credit, 100, "USD"),
            leg(c, Side::Debit, 90, "EUR"),
            leg(d, Side::Credit, 90, "EUR"),
        ];
        assert!(BalancedLegs::new(fx).is_ok());
        let split = vec![
            leg(a, Side::Debit, 100, "USD"),
            leg(b, Side::Credit, 60, "USD"),
            leg(c, Side::Credit, 40, "USD"),
        ];
        assert!(BalancedLegs::new(split).is_ok());
        let unbalanced = vec![
            leg(a, Side::Debit, 100, "USD"),
            leg(b, Side::Credit, 99, "USD"),
        ];
        assert!(matches!(
            BalancedLegs::new(unbalanced),
            Err(Rejection::Unbalanced { .. })
        ));
        let cross = vec![
            leg(a, Side::Debit, 100, "USD"),
            leg(b, Side::Credit, 100, "EUR"),
        ];
        assert!(matches!(
            BalancedLegs::new(cross),
            Err(Rejection::Unbalanced { .. })
        ));
        let twice = vec![
            leg(a, Side::Debit, 5, "USD"),
            leg(a, Side::Credit, 5, "USD"),
        ];
        assert!(matches!(
            BalancedLegs::new(twice),
            Err(Rejection::DuplicateAccount { .. })
        ));
        assert!(matches!(
            BalancedLegs::new(vec![leg(a, Side::Debit, 5, "USD")]),
            Err(Rejection::LegCount { .. })
        ));
        let many = (0..=LEGS_MAX)
            .map(|_| leg(ids.account(now), Side::Debit, 1, "USD"))
            .collect();
        assert!(matches!(
            BalancedLegs::new(many),
            Err(Rejection::LegCount { .. })
        ));
        let usd = Currency::from_code("USD").expect("usd");
        let one = Amount::new(1).expect("one");
        assert!(matches!(
            BalancedLegs::transfer(a, a, one, usd),
            Err(Rejection::SameAccount { .. })
        ));
    }

    #[test]
    fn holds_are_plain_and_bounded() {
        let ids = IdGen::new();
        let now = Timestamp::from_micros(1);
        let usd = Currency::from_code("USD").expect("usd");
        let amount = Amount::new(10).expect("amount");
        let legs =
            BalancedLegs::transfer(ids.account(now), ids.account(now), amount, usd).expect("legs");
        let check = |timeout: Option<u64>| {
            NewTransfer::new(legs.clone(), None, Metadata::default(), timeout).is_ok()
        };
        assert!(check(None));
        assert!(check(Some(HOLD_TIMEOUT_S_MIN)));
        assert!(check(Some(HOLD_TIMEOUT_S_MAX)));
        assert!(!check(Some(HOLD_TIMEOUT_S_MIN - 1)));
        assert!(!check(Some(HOLD_TIMEOUT_S_MAX + 1)));
    }
}
