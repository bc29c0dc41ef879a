//! Idempotency keys: a replay returns the stored outcome and writes nothing; a key is bound to
//! its request and scoped by tenant.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ledger::{
    BalanceConstraint, CommitConfig, Metadata, NewAccount, Rejection, Side, StatusAction,
    TransferState,
};

use crate::{Failure, Harness, bal, failure, key, plain, rejection, tenant, usd};

#[tokio::test]
async fn same_key_same_request_replays() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let k = key("pay-1");
    let first = h
        .ledger
        .create_transfer(&acme, k.clone(), plain(cash, wallet, 100, usd()))
        .await
        .unwrap();
    assert!(!first.replayed);
    h.clock.advance(std::time::Duration::from_secs(60));
    let again = h
        .ledger
        .create_transfer(&acme, k.clone(), plain(cash, wallet, 100, usd()))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.value, first.value);
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 100, 0, 0));
    assert_eq!(h.get(&acme, wallet).await.entry_seq, 1);
    assert_eq!(
        h.all_transfers(&acme).await,
        std::slice::from_ref(&first.value)
    );

    // The key is bound to its request: another amount, another kind of call.
    let other = h
        .ledger
        .create_transfer(&acme, k.clone(), plain(cash, wallet, 101, usd()))
        .await;
    assert_eq!(failure(other), Failure::IdempotencyKeyReused);
    let freeze = h
        .ledger
        .set_account_status(&acme, k.clone(), wallet, StatusAction::Freeze)
        .await;
    assert_eq!(failure(freeze), Failure::IdempotencyKeyReused);
    assert_eq!(
        h.get(&acme, wallet).await.status,
        ledger::AccountStatus::Open
    );
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 100, 0, 0));

    // Account creation replays the account as created, whatever happened to it since.
    let new = || {
        NewAccount::new(
            usd(),
            Side::Credit,
            BalanceConstraint::None,
            Some("n".into()),
            Some("ref".into()),
            Metadata::default(),
        )
        .unwrap()
    };
    let made = h
        .ledger
        .create_account(&acme, key("acct-1"), new())
        .await
        .unwrap();
    h.transfer(&acme, cash, made.value.id, 5, usd())
        .await
        .unwrap();
    let remade = h
        .ledger
        .create_account(&acme, key("acct-1"), new())
        .await
        .unwrap();
    assert!(remade.replayed);
    assert_eq!(remade.value, made.value);
    // A fresh key with the same external reference is a new request, and is refused.
    let taken = h.ledger.create_account(&acme, key("acct-2"), new()).await;
    let expected = Rejection::ExternalRefTaken {
        external_ref: "ref".into(),
    };
    assert_eq!(rejection(taken), expected);
}

#[tokio::test]
async fn keys_are_scoped_by_tenant() {
    let h = Harness::start();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let a_cash = h.cash(&acme, usd()).await;
    let a_wallet = h.wallet(&acme, usd()).await;
    let g_cash = h.cash(&globex, usd()).await;
    let g_wallet = h.wallet(&globex, usd()).await;
    let k = key("shared-key");
    let a = h
        .ledger
        .create_transfer(&acme, k.clone(), plain(a_cash, a_wallet, 10, usd()))
        .await
        .unwrap();
    let g = h
        .ledger
        .create_transfer(&globex, k.clone(), plain(g_cash, g_wallet, 20, usd()))
        .await
        .unwrap();
    assert!(!a.replayed && !g.replayed);
    assert_ne!(a.value.id, g.value.id);
    assert_eq!(h.balances(&globex, g_wallet).await, bal(0, 20, 0, 0));
    // Each tenant's replay returns its own outcome.
    let g_again = h
        .ledger
        .create_transfer(&globex, k.clone(), plain(g_cash, g_wallet, 20, usd()))
        .await
        .unwrap();
    assert!(g_again.replayed);
    assert_eq!(g_again.value, g.value);
    let a_again = h
        .ledger
        .create_transfer(&acme, k, plain(a_cash, a_wallet, 10, usd()))
        .await
        .unwrap();
    assert_eq!((a_again.replayed, a_again.value), (true, a.value));
}

#[tokio::test]
async fn refused_requests_do_not_bind_the_key() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let k = key("retry-me");
    let spend = || plain(wallet, shop, 70, usd());
    let refused = h.ledger.create_transfer(&acme, k.clone(), spend()).await;
    let short = Rejection::InsufficientFunds { account: wallet };
    assert_eq!(rejection(refused), short);
    // A refusal writes nothing, not even the key: once funded, the retry goes through.
    h.transfer(&acme, cash, wallet, 100, usd()).await.unwrap();
    let retried = h
        .ledger
        .create_transfer(&acme, k.clone(), spend())
        .await
        .unwrap();
    assert!(!retried.replayed);
    assert_eq!(retried.value.state, TransferState::Posted);
    let replayed = h.ledger.create_transfer(&acme, k, spend()).await.unwrap();
    assert!(replayed.replayed);
    assert_eq!(replayed.value, retried.value);
    assert_eq!(h.balances(&acme, wallet).await, bal(70, 100, 0, 0));
}

/// Sends 20 copies of one keyed transfer at once: exactly one posts, all get its id.
async fn check_concurrent_duplicates(commit: CommitConfig) {
    let h = Arc::new(Harness::start_with(commit));
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let before = h.ledger.commit_stats();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let h = h.clone();
        let acme = acme.clone();
        tasks.spawn(async move {
            let new = plain(cash, wallet, 25, usd());
            h.ledger.create_transfer(&acme, key("dup"), new).await
        });
    }
    let mut ids = HashSet::new();
    let mut first = 0;
    let mut answers = 0;
    while let Some(joined) = tasks.join_next().await {
        let committed = joined.unwrap().unwrap();
        ids.insert(committed.value.id);
        first += usize::from(!committed.replayed);
        answers += 1;
    }
    assert_eq!(answers, 20);
    assert_eq!(ids.len(), 1, "every duplicate got the same transfer");
    assert_eq!(first, 1, "exactly one request was not a replay");
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 25, 0, 0));
    assert_eq!(h.balances(&acme, cash).await, bal(25, 0, 0, 0));
    assert_eq!(h.all_transfers(&acme).await.len(), 1);
    let transactions = h.ledger.commit_stats().transactions - before.transactions;
    if !commit.wait.is_zero() {
        // The wait gathered every copy into one group commit: deduplicated within the batch.
        assert_eq!(transactions, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_post_once() {
    // As they come: later copies find the key stored by an earlier transaction.
    check_concurrent_duplicates(CommitConfig::default()).await;
    // All in one transaction: later copies find the key staged by the first.
    let gather = CommitConfig {
        wait: Duration::from_millis(200),
        ..CommitConfig::default()
    };
    check_concurrent_duplicates(gather).await;
}

#[tokio::test]
async fn hold_replay_returns_the_pending_outcome() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 100, usd()).await.unwrap();
    let place = || crate::pending(wallet, shop, 40, usd(), 60);
    let held = h
        .ledger
        .create_transfer(&acme, key("hold"), place())
        .await
        .unwrap();
    assert_eq!(held.value.state, TransferState::Pending);
    let posted = h
        .ledger
        .post_pending(&acme, key("post"), held.value.id, None)
        .await
        .unwrap();
    assert_eq!(posted.value.state, TransferState::Posted);
    let replay = h
        .ledger
        .create_transfer(&acme, key("hold"), place())
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.value, held.value);
    assert_eq!(replay.value.state, TransferState::Pending);
    // Replaying the post returns the post; neither replay moved anything.
    let post_again = h
        .ledger
        .post_pending(&acme, key("post"), held.value.id, None);
    let post_again = post_again.await.unwrap();
    assert_eq!(
        (post_again.replayed, &post_again.value),
        (true, &posted.value)
    );
    assert_eq!(h.balances(&acme, wallet).await, bal(40, 100, 0, 0));
    assert_eq!(h.balances(&acme, shop).await, bal(0, 40, 0, 0));
    let stored = h.ledger.get_transfer(&acme, &held.value.id).await.unwrap();
    assert_eq!(stored, posted.value);
}
