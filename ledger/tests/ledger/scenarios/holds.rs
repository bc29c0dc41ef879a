//! Holds (pending transfers): placing, posting in full or in part, voiding, expiring.

use std::time::Duration;

use ledger::{Amount, Balances, Rejection, StatusAction, TransferId, TransferState, VoidReason};

use crate::{Harness, amount, bal, rejection, tenant, usd};

#[tokio::test]
async fn hold_reserves_without_moving() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 1000, usd()).await.unwrap();
    let held = h.hold(&acme, wallet, shop, 300, usd(), 60).await.unwrap();
    assert_eq!(held.state, TransferState::Pending);
    let hold = held.hold.clone().unwrap();
    assert_eq!(hold.expires_at, h.now().plus(Duration::from_secs(60)));
    assert_eq!(hold.posted_amount, None);
    assert_eq!(hold.void_reason, None);
    assert_eq!(hold.resolved_at, None);
    assert_eq!(held.hold_timeout(), Some(Duration::from_secs(60)));
    let w = h.get(&acme, wallet).await;
    assert_eq!(w.balances, bal(0, 1000, 300, 0));
    assert_eq!(w.balances.posted(w.normal_side), 1000);
    assert_eq!(w.balances.pending(w.normal_side), -300);
    assert_eq!(w.balances.available(w.normal_side), 700);
    let s = h.get(&acme, shop).await;
    assert_eq!(s.balances, bal(0, 0, 0, 300));
    assert_eq!(s.balances.posted(s.normal_side), 0);
    assert_eq!(s.balances.available(s.normal_side), 0);
    // The reservation counts: 700 more can be held or spent, not 701.
    let over = h.hold(&acme, wallet, shop, 701, usd(), 60).await;
    assert_eq!(
        rejection(over),
        Rejection::InsufficientFunds { account: wallet }
    );
    let over = h.transfer(&acme, wallet, shop, 701, usd()).await;
    assert_eq!(
        rejection(over),
        Rejection::InsufficientFunds { account: wallet }
    );
    h.hold(&acme, wallet, shop, 700, usd(), 60).await.unwrap();
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 1000, 1000, 0));
    assert_eq!(h.balances(&acme, shop).await, bal(0, 0, 0, 1000));
}

/// What to do with a hold.
#[derive(Clone, Copy, Debug)]
enum Resolve {
    Post(Option<u64>),
    Void,
}

/// What a resolved hold must look like: its state, the posted amount, and the wallet's and the
/// shop's balances after it.
struct Resolved {
    state: TransferState,
    posted: Option<u64>,
    wallet: Balances,
    shop: Balances,
}

/// Why a step on the hold must be refused.
#[derive(Clone, Copy, Debug)]
enum Refused {
    Exceeds { requested: u64 },
    NotPending(TransferState),
}

impl Refused {
    fn rejection(self, transfer: TransferId) -> Rejection {
        match self {
            Refused::Exceeds { requested } => Rejection::PostExceedsHold {
                transfer,
                held: 300,
                requested,
            },
            Refused::NotPending(state) => Rejection::NotPending { transfer, state },
        }
    }
}

/// A wallet with 1000 holds 300 for a shop; `steps` run in order on that hold, each with its
/// expectation. A refused step must leave the balances as they were.
async fn check_resolve(h: &Harness, steps: &[(Resolve, Result<Resolved, Refused>)]) {
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 1000, usd()).await.unwrap();
    let held = h.hold(&acme, wallet, shop, 300, usd(), 60).await.unwrap();
    for (resolve, expected) in steps {
        h.clock.advance(Duration::from_secs(1));
        let before = (
            h.balances(&acme, wallet).await,
            h.balances(&acme, shop).await,
        );
        let result = match *resolve {
            Resolve::Post(minor) => {
                let minor = minor.map(amount);
                h.ledger.post_pending(&acme, h.key(), held.id, minor).await
            }
            Resolve::Void => h.ledger.void_pending(&acme, h.key(), held.id).await,
        };
        match expected {
            Ok(resolved) => {
                let t = result.unwrap().value;
                assert_eq!(t.id, held.id);
                assert_eq!(t.state, resolved.state, "{resolve:?}");
                let hold = t.hold.clone().unwrap();
                assert_eq!(hold.posted_amount.map(Amount::minor), resolved.posted);
                let voided = resolved.state == TransferState::Voided;
                assert_eq!(hold.void_reason, voided.then_some(VoidReason::Requested));
                assert_eq!(hold.resolved_at, Some(h.now()));
                assert_eq!(hold.expires_at, held.hold.as_ref().unwrap().expires_at);
                assert_eq!((t.created_at, t.updated_at), (held.created_at, h.now()));
                assert_eq!(h.get(&acme, wallet).await.updated_at, h.now());
                assert_eq!(h.ledger.get_transfer(&acme, &held.id).await.unwrap(), t);
                let after = (
                    h.balances(&acme, wallet).await,
                    h.balances(&acme, shop).await,
                );
                assert_eq!(after, (resolved.wallet, resolved.shop), "{resolve:?}");
            }
            Err(refused) => {
                assert_eq!(rejection(result), refused.rejection(held.id), "{resolve:?}");
                let after = (
                    h.balances(&acme, wallet).await,
                    h.balances(&acme, shop).await,
                );
                assert_eq!(after, before, "a refused {resolve:?} changed balances");
            }
        }
    }
}

#[tokio::test]
async fn post_and_void() {
    use Refused::{Exceeds, NotPending};
    use Resolve::{Post, Void};
    let h = Harness::start();
    let posted = |minor| Resolved {
        state: TransferState::Posted,
        posted: Some(minor),
        wallet: bal(u128::from(minor), 1000, 0, 0),
        shop: bal(0, u128::from(minor), 0, 0),
    };
    let voided = || Resolved {
        state: TransferState::Voided,
        posted: None,
        wallet: bal(0, 1000, 0, 0),
        shop: bal(0, 0, 0, 0),
    };
    check_resolve(&h, &[(Post(None), Ok(posted(300)))]).await;
    check_resolve(&h, &[(Post(Some(300)), Ok(posted(300)))]).await;
    check_resolve(&h, &[(Post(Some(120)), Ok(posted(120)))]).await;
    check_resolve(&h, &[(Post(Some(1)), Ok(posted(1)))]).await;
    check_resolve(&h, &[(Void, Ok(voided()))]).await;
    check_resolve(
        &h,
        &[
            (Post(Some(301)), Err(Exceeds { requested: 301 })),
            (Post(Some(1000)), Err(Exceeds { requested: 1000 })),
            (Post(Some(299)), Ok(posted(299))),
        ],
    )
    .await;
    let voided_state = NotPending(TransferState::Voided);
    check_resolve(
        &h,
        &[
            (Void, Ok(voided())),
            (Post(None), Err(voided_state)),
            (Post(Some(1)), Err(voided_state)),
            (Void, Err(voided_state)),
        ],
    )
    .await;
    let posted_state = NotPending(TransferState::Posted);
    check_resolve(
        &h,
        &[
            (Post(Some(100)), Ok(posted(100))),
            (Post(Some(100)), Err(posted_state)),
            (Void, Err(posted_state)),
        ],
    )
    .await;
}

#[tokio::test]
async fn frozen_account_blocks_posting_not_voiding() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 100, usd()).await.unwrap();
    let first = h.hold(&acme, wallet, shop, 40, usd(), 60).await.unwrap();
    let second = h.hold(&acme, wallet, shop, 50, usd(), 60).await.unwrap();
    let freeze = h
        .ledger
        .set_account_status(&acme, h.key(), shop, StatusAction::Freeze);
    freeze.await.unwrap();
    let post = h.ledger.post_pending(&acme, h.key(), first.id, None).await;
    assert_eq!(rejection(post), Rejection::AccountFrozen { account: shop });
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 100, 90, 0));
    let void = h
        .ledger
        .void_pending(&acme, h.key(), first.id)
        .await
        .unwrap();
    assert_eq!(void.value.state, TransferState::Voided);
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 100, 50, 0));
    assert_eq!(h.balances(&acme, shop).await, bal(0, 0, 0, 50));
    let unfreeze = h
        .ledger
        .set_account_status(&acme, h.key(), shop, StatusAction::Unfreeze);
    unfreeze.await.unwrap();
    let post = h.ledger.post_pending(&acme, h.key(), second.id, None).await;
    assert_eq!(post.unwrap().value.state, TransferState::Posted);
    assert_eq!(h.balances(&acme, wallet).await, bal(50, 100, 0, 0));
    let unknown = h
        .ledger
        .post_pending(&acme, h.key(), crate::unknown_transfer(), None);
    assert_eq!(crate::failure(unknown.await), crate::Failure::NotFound);
}

#[tokio::test]
async fn expired_holds_are_refused_then_swept() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 1000, usd()).await.unwrap();
    let short = h.hold(&acme, wallet, shop, 300, usd(), 60).await.unwrap();
    let long = h.hold(&acme, wallet, shop, 200, usd(), 3600).await.unwrap();
    let other = tenant("globex");
    let g_cash = h.cash(&other, usd()).await;
    let g_shop = h.merchant(&other, usd()).await;
    let g_hold = h.hold(&other, g_cash, g_shop, 5, usd(), 30).await.unwrap();

    // Not yet due: a sweep leaves everything alone.
    h.clock.advance(Duration::from_secs(29));
    assert_eq!(h.ledger.sweep_expired_holds().await.unwrap(), 0);

    // At its expiry instant a hold can no longer be posted, even before a sweep.
    h.clock.advance(Duration::from_secs(31));
    let post = h.ledger.post_pending(&acme, h.key(), short.id, None).await;
    assert_eq!(
        rejection(post),
        Rejection::HoldExpired { transfer: short.id }
    );
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 1000, 500, 0));

    assert_eq!(h.ledger.sweep_expired_holds().await.unwrap(), 2);
    let swept_at = h.now();
    for (t, id) in [(&acme, short.id), (&other, g_hold.id)] {
        let expired = h.ledger.get_transfer(t, &id).await.unwrap();
        assert_eq!(expired.state, TransferState::Voided);
        let hold = expired.hold.unwrap();
        assert_eq!(hold.void_reason, Some(VoidReason::Expired));
        assert_eq!(hold.posted_amount, None);
        assert_eq!(hold.resolved_at, Some(swept_at));
    }
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 1000, 200, 0));
    assert_eq!(h.balances(&acme, shop).await, bal(0, 0, 0, 200));
    assert_eq!(h.balances(&other, g_cash).await, bal(0, 0, 0, 0));
    assert_eq!(h.balances(&other, g_shop).await, bal(0, 0, 0, 0));
    let still = h.ledger.get_transfer(&acme, &long.id).await.unwrap();
    assert_eq!(still.state, TransferState::Pending);
    // Swept holds are gone from the index: a second sweep finds nothing.
    assert_eq!(h.ledger.sweep_expired_holds().await.unwrap(), 0);

    // Posting the swept hold now says it is voided.
    let post = h.ledger.post_pending(&acme, h.key(), short.id, None).await;
    let expected = Rejection::NotPending {
        transfer: short.id,
        state: TransferState::Voided,
    };
    assert_eq!(rejection(post), expected);

    // A hold posted before its expiry is not touched by a later sweep.
    let posted = h
        .ledger
        .post_pending(&acme, h.key(), long.id, Some(amount(150)));
    posted.await.unwrap();
    h.clock.advance(Duration::from_secs(3600));
    assert_eq!(h.ledger.sweep_expired_holds().await.unwrap(), 0);
    assert_eq!(h.balances(&acme, wallet).await, bal(150, 1000, 0, 0));
    assert_eq!(h.balances(&acme, shop).await, bal(0, 150, 0, 0));
    let trial = h.ledger.trial_balance(&acme).await.unwrap();
    assert!(trial.balanced(), "{trial:?}");
}
