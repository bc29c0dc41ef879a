//! Reversals: a posted transfer is undone by a new, linked transfer with the legs flipped.

use ledger::limits::DESCRIPTION_LEN_MAX;
use ledger::{Metadata, Rejection, Side, TransferState};

use crate::{Failure, Harness, amount, bal, failure, fresh, leg, metadata, rejection, tenant, usd};

#[tokio::test]
async fn reversal_flips_the_legs_and_links_both_ways() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 1000, usd()).await.unwrap();
    let spent = h.transfer(&acme, wallet, shop, 400, usd()).await.unwrap();
    h.clock.advance(std::time::Duration::from_secs(5));
    let reversal = fresh(
        h.ledger
            .reverse(&acme, h.key(), spent.id, None, Metadata::default())
            .await,
    );
    assert_ne!(reversal.id, spent.id);
    assert_eq!(reversal.state, TransferState::Posted);
    assert_eq!(reversal.reverses, Some(spent.id));
    assert_eq!(reversal.reversed_by, None);
    assert_eq!(
        reversal.legs,
        [
            leg(wallet, Side::Credit, 400, usd()),
            leg(shop, Side::Debit, 400, usd())
        ]
    );
    let default_description = format!("reversal of {}", spent.id);
    assert_eq!(reversal.description, Some(default_description));
    assert_eq!(reversal.created_at, h.now());
    let original = h.ledger.get_transfer(&acme, &spent.id).await.unwrap();
    assert_eq!(original.reversed_by, Some(reversal.id));
    assert_eq!(original.state, TransferState::Posted);
    assert_eq!(original.updated_at, h.now());
    assert_eq!(original.legs, spent.legs);
    let w = h.get(&acme, wallet).await;
    assert_eq!(w.balances, bal(400, 1400, 0, 0));
    assert_eq!(w.balances.posted(w.normal_side), 1000);
    let s = h.get(&acme, shop).await;
    assert_eq!(s.balances, bal(400, 400, 0, 0));
    assert_eq!(s.balances.posted(s.normal_side), 0);

    // Only once.
    let again = h
        .ledger
        .reverse(&acme, h.key(), spent.id, None, Metadata::default())
        .await;
    let expected = Rejection::AlreadyReversed {
        transfer: spent.id,
        reversed_by: reversal.id,
    };
    assert_eq!(rejection(again), expected);
    assert_eq!(h.balances(&acme, wallet).await, bal(400, 1400, 0, 0));

    // A reversal is itself a posted transfer and can be reversed, with its own text.
    let text = Some("re-charge".to_owned());
    let undo = h
        .ledger
        .reverse(
            &acme,
            h.key(),
            reversal.id,
            text,
            metadata(&[("case", "9")]),
        )
        .await
        .unwrap()
        .value;
    assert_eq!(undo.reverses, Some(reversal.id));
    assert_eq!(undo.description.as_deref(), Some("re-charge"));
    assert_eq!(undo.metadata, metadata(&[("case", "9")]));
    assert_eq!(h.balances(&acme, wallet).await, bal(800, 1400, 0, 0));
    let long = Some("d".repeat(DESCRIPTION_LEN_MAX + 1));
    let too_long = h
        .ledger
        .reverse(&acme, h.key(), undo.id, long, Metadata::default())
        .await;
    let expected = Rejection::InvalidField {
        field: "description".into(),
        reason: format!("at most {DESCRIPTION_LEN_MAX} bytes"),
    };
    assert_eq!(rejection(too_long), expected);
    let still = h.ledger.get_transfer(&acme, &undo.id).await.unwrap();
    assert_eq!(still.reversed_by, None);

    let unknown = h
        .ledger
        .reverse(
            &acme,
            h.key(),
            crate::unknown_transfer(),
            None,
            Metadata::default(),
        )
        .await;
    assert_eq!(failure(unknown), Failure::NotFound);
}

#[tokio::test]
async fn only_posted_transfers_can_be_reversed() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 1000, usd()).await.unwrap();
    let reverse = |id| {
        h.ledger
            .reverse(&acme, h.key(), id, None, Metadata::default())
    };
    let pending = h.hold(&acme, wallet, shop, 300, usd(), 60).await.unwrap();
    let expected = Rejection::NotPosted {
        transfer: pending.id,
        state: TransferState::Pending,
    };
    assert_eq!(rejection(reverse(pending.id).await), expected);
    assert_eq!(h.balances(&acme, wallet).await, bal(0, 1000, 300, 0));
    h.ledger
        .void_pending(&acme, h.key(), pending.id)
        .await
        .unwrap();
    let expected = Rejection::NotPosted {
        transfer: pending.id,
        state: TransferState::Voided,
    };
    assert_eq!(rejection(reverse(pending.id).await), expected);

    // A hold posted in part is reversed by the part that moved.
    let partial = h.hold(&acme, wallet, shop, 300, usd(), 60).await.unwrap();
    let post = h
        .ledger
        .post_pending(&acme, h.key(), partial.id, Some(amount(120)));
    post.await.unwrap();
    assert_eq!(h.balances(&acme, wallet).await, bal(120, 1000, 0, 0));
    let reversal = reverse(partial.id).await.unwrap().value;
    assert_eq!(
        reversal.legs,
        [
            leg(wallet, Side::Credit, 120, usd()),
            leg(shop, Side::Debit, 120, usd())
        ]
    );
    assert_eq!(reversal.hold, None);
    assert_eq!(h.balances(&acme, wallet).await, bal(120, 1120, 0, 0));
    assert_eq!(h.balances(&acme, shop).await, bal(120, 120, 0, 0));
    let original = h.ledger.get_transfer(&acme, &partial.id).await.unwrap();
    assert_eq!(original.reversed_by, Some(reversal.id));
    let hold = original.hold.unwrap();
    assert_eq!(hold.posted_amount, Some(amount(120)));
}

#[tokio::test]
async fn reversal_obeys_constraints_and_status() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let funding = h.transfer(&acme, cash, wallet, 100, usd()).await.unwrap();
    h.transfer(&acme, wallet, shop, 100, usd()).await.unwrap();
    let reverse = |id| {
        h.ledger
            .reverse(&acme, h.key(), id, None, Metadata::default())
    };
    // Undoing the funding would take the spent money back out of the wallet.
    let overdraw = reverse(funding.id).await;
    let expected = Rejection::InsufficientFunds { account: wallet };
    assert_eq!(rejection(overdraw), expected);
    let unlinked = h.ledger.get_transfer(&acme, &funding.id).await.unwrap();
    assert_eq!(unlinked.reversed_by, None);
    assert_eq!(h.balances(&acme, wallet).await, bal(100, 100, 0, 0));
    // A frozen account refuses the reversal too.
    let freeze = h
        .ledger
        .set_account_status(&acme, h.key(), cash, ledger::StatusAction::Freeze);
    freeze.await.unwrap();
    let frozen = reverse(funding.id).await;
    assert_eq!(
        rejection(frozen),
        Rejection::AccountFrozen { account: cash }
    );
    assert_eq!(h.all_transfers(&acme).await.len(), 2);
}
