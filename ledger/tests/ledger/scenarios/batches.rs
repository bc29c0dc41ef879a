//! Batches: atomic (all or nothing) and independent (each item alone), and their size bounds.

use ledger::limits::BATCH_TRANSFERS_MAX;
use ledger::{BatchFailure, BatchMode, Rejection, TransferState};

use crate::{Failure, Harness, bal, failure, fresh, plain, tenant, usd};

#[tokio::test]
async fn atomic_batch_with_an_overdraft_posts_nothing() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 100, usd()).await.unwrap();
    let transfers_before = h.all_transfers(&acme).await;
    let items = vec![
        plain(wallet, shop, 50, usd()),
        plain(wallet, shop, 60, usd()),
        plain(wallet, shop, 30, usd()),
    ];
    let result = h
        .ledger
        .create_batch(&acme, h.key(), BatchMode::Atomic, items)
        .await;
    let expected = vec![BatchFailure {
        index: 1,
        rejection: Rejection::InsufficientFunds { account: wallet },
    }];
    assert_eq!(failure(result), Failure::BatchRejected(expected));
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 100, 0, 0));
    assert_eq!(h.balances(&acme, shop).await, bal(0, 0, 0, 0));
    assert_eq!(h.get(&acme, wallet).await.entry_seq, 1);
    assert_eq!(h.all_transfers(&acme).await, transfers_before);

    // Without the overdraft the same batch posts every item, in order.
    let items = vec![
        plain(wallet, shop, 50, usd()),
        plain(wallet, shop, 30, usd()),
    ];
    let results = fresh(
        h.ledger
            .create_batch(&acme, h.key(), BatchMode::Atomic, items)
            .await,
    );
    let amounts: Vec<u64> = results
        .iter()
        .map(|r| r.as_ref().unwrap().as_plain().unwrap().2.minor())
        .collect();
    assert_eq!(amounts, [50, 30]);
    assert_eq!(h.balances(&acme, wallet).await, bal(80, 100, 0, 0));
    assert_eq!(h.all_transfers(&acme).await.len(), 3);
}

#[tokio::test]
async fn independent_batch_reports_each_item() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 100, usd()).await.unwrap();
    let items = vec![
        plain(wallet, shop, 50, usd()),
        plain(wallet, shop, 60, usd()),
        plain(wallet, shop, 30, usd()),
        plain(wallet, crate::unknown_account(), 1, usd()),
        // Later items see earlier ones: 20 left, so 21 overdraws and 20 fits.
        plain(wallet, shop, 21, usd()),
        plain(wallet, shop, 20, usd()),
    ];
    let k = h.key();
    let results = fresh(
        h.ledger
            .create_batch(&acme, k.clone(), BatchMode::Independent, items.clone())
            .await,
    );
    let short = Rejection::InsufficientFunds { account: wallet };
    let unknown = Rejection::UnknownAccount {
        account: crate::unknown_account(),
    };
    let outcome: Vec<Result<u64, Rejection>> = results
        .iter()
        .map(|r| match r {
            Ok(t) => {
                assert_eq!(t.state, TransferState::Posted);
                Ok(t.as_plain().unwrap().2.minor())
            }
            Err(rejection) => Err(rejection.clone()),
        })
        .collect();
    assert_eq!(
        outcome,
        [
            Ok(50),
            Err(short.clone()),
            Ok(30),
            Err(unknown),
            Err(short),
            Ok(20)
        ]
    );
    assert_eq!(h.balances(&acme, wallet).await, bal(100, 100, 0, 0));
    assert_eq!(h.balances(&acme, shop).await, bal(0, 100, 0, 0));
    for posted in results.iter().flatten() {
        let read = h.ledger.get_transfer(&acme, &posted.id).await.unwrap();
        assert_eq!(&read, posted);
    }
    assert_eq!(h.all_transfers(&acme).await.len(), 1 + 3);
    // A replay returns every item's result as stored, refusals included, and posts nothing.
    let replay = h
        .ledger
        .create_batch(&acme, k, BatchMode::Independent, items)
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.value, results);
    assert_eq!(h.balances(&acme, wallet).await, bal(100, 100, 0, 0));
    assert_eq!(h.all_transfers(&acme).await.len(), 1 + 3);
}

#[tokio::test]
async fn batch_items_may_be_holds() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 100, usd()).await.unwrap();
    let items = vec![
        crate::pending(wallet, shop, 40, usd(), 60),
        plain(wallet, shop, 60, usd()),
        // The hold reserved 40: nothing is left for this one.
        plain(wallet, shop, 1, usd()),
    ];
    let k = h.key();
    let results = fresh(
        h.ledger
            .create_batch(&acme, k.clone(), BatchMode::Independent, items.clone())
            .await,
    );
    let states: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().map(|t| t.state).map_err(Clone::clone))
        .collect();
    let short = Rejection::InsufficientFunds { account: wallet };
    let expected = [
        Ok(TransferState::Pending),
        Ok(TransferState::Posted),
        Err(short),
    ];
    assert_eq!(states, expected);
    assert_eq!(h.balances(&acme, wallet).await, bal(60, 100, 40, 0));
    assert_eq!(h.balances(&acme, shop).await, bal(0, 60, 0, 40));
    // The batch's hold expires like any other.
    h.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(h.ledger.sweep_expired_holds().await.unwrap(), 1);
    assert_eq!(h.balances(&acme, wallet).await, bal(60, 100, 0, 0));
    let hold = results[0].as_ref().unwrap();
    let now = h.ledger.get_transfer(&acme, &hold.id).await.unwrap();
    assert_eq!(now.state, TransferState::Voided);
    // A replay returns the batch's results as they were, the hold still pending, though the
    // stored record names the transfers in their pack, where later changes do not go.
    let replay = h
        .ledger
        .create_batch(&acme, k, BatchMode::Independent, items)
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.value, results);
    assert_eq!(h.balances(&acme, wallet).await, bal(60, 100, 0, 0));
}

/// A batch of `len` one-unit transfers: `Ok(posted)` or the failure.
async fn check_size(h: &Harness, len: usize, mode: BatchMode, expected: Result<usize, Failure>) {
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let items = vec![plain(cash, shop, 1, usd()); len];
    let result = h.ledger.create_batch(&acme, h.key(), mode, items).await;
    let outcome = result
        .map(|c| c.value.iter().filter(|r| r.is_ok()).count())
        .map_err(Failure::from);
    assert_eq!(outcome, expected, "batch of {len}, {mode:?}");
    let posted = outcome.unwrap_or(0) as u128;
    assert_eq!(h.balances(&acme, cash).await, bal(posted, 0, 0, 0));
    assert_eq!(h.balances(&acme, shop).await, bal(0, posted, 0, 0));
}

#[tokio::test]
async fn batch_size_bounds() {
    let h = Harness::start();
    let size = || {
        Err(Failure::Rejected(Rejection::BatchSize {
            max: BATCH_TRANSFERS_MAX,
        }))
    };
    check_size(&h, 0, BatchMode::Atomic, size()).await;
    check_size(&h, 0, BatchMode::Independent, size()).await;
    check_size(&h, BATCH_TRANSFERS_MAX + 1, BatchMode::Atomic, size()).await;
    check_size(&h, BATCH_TRANSFERS_MAX + 1, BatchMode::Independent, size()).await;
    check_size(&h, 1, BatchMode::Atomic, Ok(1)).await;
    check_size(
        &h,
        BATCH_TRANSFERS_MAX,
        BatchMode::Atomic,
        Ok(BATCH_TRANSFERS_MAX),
    )
    .await;
    let independent = Ok(BATCH_TRANSFERS_MAX);
    check_size(&h, BATCH_TRANSFERS_MAX, BatchMode::Independent, independent).await;
}

#[tokio::test]
async fn full_batch_writes_every_entry() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let items = (1..=BATCH_TRANSFERS_MAX as u64)
        .map(|n| plain(cash, shop, n, usd()))
        .collect();
    let results = fresh(
        h.ledger
            .create_batch(&acme, h.key(), BatchMode::Atomic, items)
            .await,
    );
    assert_eq!(results.len(), BATCH_TRANSFERS_MAX);
    let total = (BATCH_TRANSFERS_MAX * (BATCH_TRANSFERS_MAX + 1) / 2) as u128;
    assert_eq!(h.balances(&acme, shop).await, bal(0, total, 0, 0));
    let shop_head = h.get(&acme, shop).await;
    assert_eq!(shop_head.entry_seq, BATCH_TRANSFERS_MAX as u64);
    // The last entry carries the final running balance; the 500th the sum of 1..=500.
    let page = ledger::PageRequest {
        limit: Some(1),
        cursor: None,
        descending: true,
    };
    let last = h.ledger.entries(&acme, &shop, page).await.unwrap().items;
    assert_eq!(last[0].seq, BATCH_TRANSFERS_MAX as u64);
    assert_eq!(last[0].balances, bal(0, total, 0, 0));
    let page = ledger::PageRequest {
        limit: Some(500),
        cursor: None,
        descending: false,
    };
    let first = h.ledger.entries(&acme, &shop, page).await.unwrap().items;
    assert_eq!(first[499].balances.credits_posted, 500 * 501 / 2);
    assert_eq!(h.all_transfers(&acme).await.len(), BATCH_TRANSFERS_MAX);
}
