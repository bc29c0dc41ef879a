//! The API calls around the load: create the accounts before it, check the books after it.
//!
//! The check is the point of a durable-transfer benchmark: the trial balance must balance, the
//! server must hold exactly as many transfers as it acknowledged, and their amounts must add up
//! to what the clients sent. The transfer count comes from the accounts' entry counts (each
//! plain transfer writes one entry on each of its two accounts), which costs one page of
//! accounts per 500 instead of one page of transfers per 500.

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use hyper::{StatusCode, Uri};
use serde::Deserialize;

use crate::http::Target;

/// Connections used to create the accounts.
pub const SETUP_CONNECTIONS_MAX: usize = 8;
/// Accounts per page when counting (the API's maximum).
pub const ACCOUNT_PAGE_LEN: usize = 500;
/// Entries a plain transfer writes: one per account.
const ENTRIES_PER_TRANSFER: u64 = 2;

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct AccountPage {
    data: Vec<AccountSummary>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct AccountSummary {
    entry_count: u64,
}

#[derive(Deserialize)]
struct TrialBalance {
    balanced: bool,
    accounts: u64,
    currencies: Vec<CurrencyTotals>,
}

#[derive(Deserialize)]
struct CurrencyTotals {
    currency: String,
    debits_posted: u128,
    credits_posted: u128,
}

/// Creates `count` USD accounts (debit-normal, no balance constraint); returns their ids.
pub async fn create_accounts(target: &Target, count: usize) -> Result<Vec<String>> {
    let connections = count.clamp(1, SETUP_CONNECTIONS_MAX);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..connections {
        let target = target.clone();
        // Worker w creates accounts w, w + connections, ...
        let mine = (worker..count).step_by(connections).count();
        tasks.spawn(async move {
            let mut conn = target.connect().await?;
            let body = Bytes::from_static(br#"{"currency":"USD","normal_side":"debit"}"#);
            let mut ids = Vec::with_capacity(mine);
            for n in 0..mine {
                let key = format!("setup-{worker}-{n}");
                let answer = conn
                    .post(Uri::from_static("/v1/accounts"), body.clone(), &key)
                    .await?;
                let created: Created = answer
                    .json(StatusCode::CREATED)
                    .context("create an account")?;
                ids.push(created.id);
            }
            anyhow::Ok(ids)
        });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        ids.extend(done.context("account creation task")??);
    }
    ensure!(
        ids.len() == count,
        "created {} of {count} accounts",
        ids.len()
    );
    Ok(ids)
}

/// What the server holds after the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Books {
    /// Accounts in the trial balance.
    pub accounts: u64,
    /// Transfers the accounts' entries add up to.
    pub transfers: u64,
    /// Posted debits in USD, minor units.
    pub debits_posted: u128,
}

/// Reads the trial balance and the accounts' entry counts; fails if the books do not balance.
pub async fn read_books(target: &Target) -> Result<Books> {
    let mut conn = target.connect().await?;
    let trial: TrialBalance = conn
        .get(Uri::from_static("/v1/trial-balance"))
        .await?
        .json(StatusCode::OK)
        .context("read the trial balance")?;
    if !trial.balanced {
        bail!("the trial balance is NOT balanced");
    }
    let mut debits_posted = 0;
    for c in &trial.currencies {
        ensure!(
            c.debits_posted == c.credits_posted,
            "{}: debits {} != credits {}",
            c.currency,
            c.debits_posted,
            c.credits_posted
        );
        if c.currency == "USD" {
            debits_posted = c.debits_posted;
        }
    }
    let mut entries = 0u64;
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            None => format!("/v1/accounts?limit={ACCOUNT_PAGE_LEN}"),
            Some(c) => format!("/v1/accounts?limit={ACCOUNT_PAGE_LEN}&cursor={c}"),
        };
        let page: AccountPage = conn
            .get(uri.parse().context("accounts page URI")?)
            .await?
            .json(StatusCode::OK)
            .context("list the accounts")?;
        entries += page.data.iter().map(|a| a.entry_count).sum::<u64>();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ensure!(
        entries.is_multiple_of(ENTRIES_PER_TRANSFER),
        "the accounts hold an odd number of entries ({entries})"
    );
    Ok(Books {
        accounts: trial.accounts,
        transfers: entries / ENTRIES_PER_TRANSFER,
        debits_posted,
    })
}
