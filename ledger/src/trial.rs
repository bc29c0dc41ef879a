//! The trial balance: proof, read back from the store, that every currency sums to zero.
//!
//! It reads every account head of a tenant and sums the four running totals per currency;
//! the books balance when posted debits equal posted credits and pending debits equal pending
//! credits. The heads are read twice ("double collect"): if no head changed version between the
//! two reads, the first read is a consistent snapshot even with other writers about. The
//! ledger pauses its own committer around it, so only writers in other processes can force a
//! further collect.

use std::collections::BTreeMap;

use crate::account::Account;
use crate::codec::decode;
use crate::error::{Error, Result};
use crate::ids::{AccountId, TenantId};
use crate::layout;
use crate::limits::{TRIAL_BALANCE_COLLECTS_MAX, TRIAL_BALANCE_PAGE_LEN};
use crate::money::Currency;
use crate::store::{Query, Store};
use crate::time::Timestamp;

/// The totals of one currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrencyTotals {
    /// The currency.
    pub currency: Currency,
    /// Accounts in it.
    pub accounts: u64,
    /// Sum of posted debits.
    pub debits_posted: u128,
    /// Sum of posted credits.
    pub credits_posted: u128,
    /// Sum of pending debits.
    pub debits_pending: u128,
    /// Sum of pending credits.
    pub credits_pending: u128,
}

impl CurrencyTotals {
    /// Debits equal credits, posted and pending.
    pub fn balanced(&self) -> bool {
        self.debits_posted == self.credits_posted && self.debits_pending == self.credits_pending
    }
}

/// A tenant's trial balance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrialBalance {
    /// When it was taken.
    pub as_of: Timestamp,
    /// Accounts read.
    pub accounts: u64,
    /// Totals per currency, by code.
    pub currencies: Vec<CurrencyTotals>,
}

impl TrialBalance {
    /// Every currency balances.
    pub fn balanced(&self) -> bool {
        self.currencies.iter().all(CurrencyTotals::balanced)
    }
}

/// Every tenant that ever created an account.
pub(crate) async fn tenants(store: &dyn Store) -> Result<Vec<TenantId>> {
    let mut out = Vec::new();
    let mut query = Query::prefix(layout::TENANTS, "", TRIAL_BALANCE_PAGE_LEN);
    loop {
        let page = store.query(query.clone()).await?;
        for item in &page.items {
            out.push(decode(item)?);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(out),
        }
    }
}

/// A trial balance from a consistent snapshot of the tenant's heads.
pub(crate) async fn consistent(
    store: &dyn Store,
    tenant: &TenantId,
    now: Timestamp,
) -> Result<TrialBalance> {
    let mut first = collect(store, tenant).await?;
    for _ in 1..TRIAL_BALANCE_COLLECTS_MAX {
        let second = collect(store, tenant).await?;
        let same = first.len() == second.len()
            && first
                .iter()
                .zip(&second)
                .all(|(a, b)| a.0 == b.0 && a.1 == b.1);
        if same {
            return Ok(totals(&first, now));
        }
        first = second;
    }
    Err(Error::Contention)
}

/// Every head of the tenant: id, version, account.
async fn collect(store: &dyn Store, tenant: &TenantId) -> Result<Vec<(AccountId, u64, Account)>> {
    let mut out = Vec::new();
    let mut query = Query::prefix(
        layout::account_list(tenant),
        "acct_",
        TRIAL_BALANCE_PAGE_LEN,
    );
    loop {
        let page = store.query(query.clone()).await?;
        let ids: Vec<AccountId> = page.items.iter().map(decode).collect::<Result<_>>()?;
        let heads = store
            .get_many(ids.iter().map(|id| layout::account(tenant, id)).collect())
            .await?;
        for (id, head) in ids.into_iter().zip(heads) {
            let item =
                head.ok_or_else(|| Error::Corrupt(format!("listed account {id} has no head")))?;
            let account: Account = crate::history::decode_account(&item)?;
            if account.id != id || &account.tenant != tenant {
                return Err(Error::Corrupt(format!(
                    "head of {id} holds account {}",
                    account.id
                )));
            }
            out.push((id, item.version, account));
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(out),
        }
    }
}

fn totals(heads: &[(AccountId, u64, Account)], now: Timestamp) -> TrialBalance {
    let mut by_currency: BTreeMap<&str, CurrencyTotals> = BTreeMap::new();
    for (_, _, account) in heads {
        let t = by_currency
            .entry(account.currency.code())
            .or_insert(CurrencyTotals {
                currency: account.currency,
                accounts: 0,
                debits_posted: 0,
                credits_posted: 0,
                debits_pending: 0,
                credits_pending: 0,
            });
        let b = &account.balances;
        t.accounts += 1;
        // Sums of u128 totals of at most 2^63 per transfer: saturating keeps a broken store
        // from panicking; the comparison then reports it unbalanced.
        t.debits_posted = t.debits_posted.saturating_add(b.debits_posted);
        t.credits_posted = t.credits_posted.saturating_add(b.credits_posted);
        t.debits_pending = t.debits_pending.saturating_add(b.debits_pending);
        t.credits_pending = t.credits_pending.saturating_add(b.credits_pending);
    }
    TrialBalance {
        as_of: now,
        accounts: heads.len() as u64,
        currencies: by_currency.into_values().collect(),
    }
}
