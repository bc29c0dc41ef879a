//! Group commit: concurrent requests share storage transactions, and a refused request fails
//! alone while its neighbours in the same transaction commit.

use std::sync::Arc;
use std::time::Duration;

use ledger::{CommitConfig, Rejection};

use crate::{Harness, bal, plain, rejection, tenant, usd};

/// Requests of each kind; the wallet can pay for exactly half of its requests.
const REQUESTS_PER_KIND: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdrafts_fail_alone_and_batching_happens() {
    // As they come: batches form while the previous transaction syncs.
    check_group_commit(CommitConfig::default()).await;
    // Gathered: every request shares one transaction, refusals beside successes.
    let gather = CommitConfig {
        wait: Duration::from_millis(200),
        ..CommitConfig::default()
    };
    check_group_commit(gather).await;
}

/// Sends the requests of both kinds at once and checks who paid, who was refused, and that
/// fewer transactions than requests were written (exactly one when the committer gathers).
async fn check_group_commit(commit: CommitConfig) {
    let h = Arc::new(Harness::start_with(commit));
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let other = h.merchant(&acme, usd()).await;
    let funds = 10 * REQUESTS_PER_KIND as u64 / 2;
    h.transfer(&acme, cash, wallet, funds, usd()).await.unwrap();
    let before = h.ledger.commit_stats();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2 * REQUESTS_PER_KIND {
        let h = h.clone();
        let acme = acme.clone();
        // Interleaved, so that refusals sit between successes in the same transactions.
        let from_wallet = i % 2 == 0;
        tasks.spawn(async move {
            let new = if from_wallet {
                plain(wallet, shop, 10, usd())
            } else {
                plain(cash, other, 1, usd())
            };
            let result = h.ledger.create_transfer(&acme, h.key(), new).await;
            (from_wallet, result)
        });
    }
    let (mut paid, mut refused, mut unconstrained) = (0, 0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (true, Ok(_)) => paid += 1,
            (true, Err(error)) => {
                let expected = Rejection::InsufficientFunds { account: wallet };
                assert_eq!(rejection::<()>(Err(error)), expected);
                refused += 1;
            }
            (false, result) => {
                result.unwrap();
                unconstrained += 1;
            }
        }
    }
    let half = REQUESTS_PER_KIND / 2;
    assert_eq!(
        (paid, refused, unconstrained),
        (half, half, REQUESTS_PER_KIND)
    );
    let paid_minor = 10 * half as u128;
    assert_eq!(
        h.balances(&acme, wallet).await,
        bal(paid_minor, paid_minor, 0, 0)
    );
    assert_eq!(h.balances(&acme, shop).await, bal(0, paid_minor, 0, 0));
    let to_other = REQUESTS_PER_KIND as u128;
    assert_eq!(h.balances(&acme, other).await, bal(0, to_other, 0, 0));
    assert_eq!(
        h.balances(&acme, cash).await,
        bal(paid_minor + to_other, 0, 0, 0)
    );
    assert_eq!(
        h.all_transfers(&acme).await.len(),
        1 + half + REQUESTS_PER_KIND
    );

    let after = h.ledger.commit_stats();
    let requests = after.requests - before.requests;
    let transactions = after.transactions - before.transactions;
    assert_eq!(requests, 2 * REQUESTS_PER_KIND as u64);
    assert!(
        transactions < requests,
        "{transactions} transactions for {requests} requests: no batching"
    );
    if !commit.wait.is_zero() {
        assert_eq!(transactions, 1);
    }
    assert_eq!(after.retries, 0, "one process never loses a condition");
    assert!(h.ledger.trial_balance(&acme).await.unwrap().balanced());
}
