//! Durability: what one ledger wrote, a ledger started later on the same file reads, replays
//! and builds on.

use std::time::Duration;

use ledger::{Metadata, TransferState};

use crate::{Failure, Harness, bal, failure, key, open, plain, tenant, usd};

#[tokio::test]
async fn data_and_replays_survive_a_restart() {
    let mut h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let paid = h
        .ledger
        .create_transfer(&acme, key("pay"), plain(cash, wallet, 500, usd()))
        .await
        .unwrap();
    let held = h.hold(&acme, wallet, shop, 120, usd(), 3600).await.unwrap();
    let expiring = h.hold(&acme, cash, shop, 9, usd(), 30).await.unwrap();
    let accounts_before = h
        .ledger
        .list_accounts(&acme, Default::default())
        .await
        .unwrap();
    let transfers_before = h.all_transfers(&acme).await;

    h.ledger.shutdown().await;
    let late = h
        .ledger
        .create_transfer(&acme, h.key(), plain(cash, shop, 1, usd()))
        .await;
    assert_eq!(failure(late), Failure::ShuttingDown);
    assert_eq!(failure(h.ledger.ready().await), Failure::ShuttingDown);

    h.clock.advance(Duration::from_secs(10));
    h.ledger = open(&h.path, &h.clock);
    h.ledger.ready().await.unwrap();
    let accounts_after = h
        .ledger
        .list_accounts(&acme, Default::default())
        .await
        .unwrap();
    assert_eq!(accounts_after, accounts_before);
    assert_eq!(h.all_transfers(&acme).await, transfers_before);
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 500, 120, 0));

    let replay = h
        .ledger
        .create_transfer(&acme, key("pay"), plain(cash, wallet, 500, usd()))
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.value, paid.value);
    let reused = h
        .ledger
        .create_transfer(&acme, key("pay"), plain(cash, wallet, 499, usd()))
        .await;
    assert_eq!(failure(reused), Failure::IdempotencyKeyReused);
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 500, 120, 0));

    // The hold index survived too: the new ledger expires the old ledger's hold.
    h.clock.advance(Duration::from_secs(20));
    assert_eq!(h.ledger.sweep_expired_holds().await.unwrap(), 1);
    let expired = h.ledger.get_transfer(&acme, &expiring.id).await.unwrap();
    assert_eq!(expired.state, TransferState::Voided);
    assert_eq!(h.balances(&acme, cash).await, bal(500, 0, 0, 0));

    // The new ledger carries on: the hold posts, new ids sort after the old ones.
    let posted = h
        .ledger
        .post_pending(&acme, h.key(), held.id, None)
        .await
        .unwrap();
    assert_eq!(posted.value.state, TransferState::Posted);
    let refund = h
        .ledger
        .reverse(&acme, h.key(), paid.value.id, None, Metadata::default());
    let refund = refund.await;
    assert_eq!(
        crate::rejection(refund),
        ledger::Rejection::InsufficientFunds { account: wallet }
    );
    let later = h.transfer(&acme, cash, wallet, 5, usd()).await.unwrap();
    let all = h.all_transfers(&acme).await;
    assert_eq!(all.last().map(|t| t.id), Some(later.id));
    assert_eq!(h.balances(&acme, wallet).await, bal(120, 505, 0, 0));
    let entries = h.history(&acme, wallet).await;
    let seqs: Vec<u64> = entries.items.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(h.ledger.trial_balance(&acme).await.unwrap().balanced());
    h.ledger.shutdown().await;
}
