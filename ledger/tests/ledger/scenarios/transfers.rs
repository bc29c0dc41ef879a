//! Transfers and journal entries: what they do to balances, and what the ledger refuses.

use ledger::{
    Account, AccountId, NewTransfer, Rejection, Side, StatusAction, TenantId, TransferState,
};

use crate::{Harness, bal, eur, fresh, journal, jpy, leg, metadata, plain, rejection, tenant, usd};

#[tokio::test]
async fn posted_transfer_moves_balances() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let new = NewTransfer::new(
        ledger::BalancedLegs::transfer(cash, wallet, crate::amount(1000), usd()).unwrap(),
        Some("top-up".into()),
        metadata(&[("order", "42")]),
        None,
    )
    .unwrap();
    let funded = fresh(h.ledger.create_transfer(&acme, h.key(), new).await);
    assert!(funded.id.to_string().starts_with("xfer_"));
    assert_eq!(funded.state, TransferState::Posted);
    assert_eq!(funded.hold, None);
    assert_eq!(funded.reverses, None);
    assert_eq!(funded.reversed_by, None);
    assert_eq!(funded.description.as_deref(), Some("top-up"));
    assert_eq!(funded.metadata, metadata(&[("order", "42")]));
    assert_eq!(
        funded.legs,
        [
            leg(cash, Side::Debit, 1000, usd()),
            leg(wallet, Side::Credit, 1000, usd())
        ]
    );
    assert_eq!(funded.created_at, h.now());
    let read = h.ledger.get_transfer(&acme, &funded.id).await.unwrap();
    assert_eq!(read, funded);

    let spent = h.transfer(&acme, wallet, shop, 300, usd()).await.unwrap();
    assert_eq!(spent.state, TransferState::Posted);
    let check = |account: Account, balances, posted, available, entry_seq| {
        assert_eq!(account.balances, balances, "{}", account.id);
        assert_eq!(account.balances.posted(account.normal_side), posted);
        assert_eq!(account.balances.available(account.normal_side), available);
        assert_eq!(account.entry_seq, entry_seq);
    };
    check(h.get(&acme, cash).await, bal(1000, 0, 0, 0), 1000, 1000, 1);
    check(
        h.get(&acme, wallet).await,
        bal(300, 1000, 0, 0),
        700,
        700,
        2,
    );
    check(h.get(&acme, shop).await, bal(0, 300, 0, 0), 300, 300, 1);
    // Spending the exact balance is allowed; one more unit is not.
    h.transfer(&acme, wallet, shop, 700, usd()).await.unwrap();
    check(h.get(&acme, wallet).await, bal(1000, 1000, 0, 0), 0, 0, 3);
    let over = h.transfer(&acme, wallet, shop, 1, usd()).await;
    let expected = Rejection::InsufficientFunds { account: wallet };
    assert_eq!(rejection(over), expected);
    // Without a constraint an account may go below zero.
    h.transfer(&acme, shop, cash, 1500, usd()).await.unwrap();
    check(
        h.get(&acme, shop).await,
        bal(1500, 1000, 0, 0),
        -500,
        -500,
        3,
    );
}

/// Submits `new`, expects `expected`, and checks that nothing changed: every account of the
/// tenant reads back identical and no transfer was added.
async fn check_refused(h: &Harness, acme: &TenantId, new: NewTransfer, expected: Rejection) {
    let before = accounts(h, acme).await;
    let transfers_before = h.all_transfers(acme).await.len();
    let result = h.ledger.create_transfer(acme, h.key(), new).await;
    assert_eq!(rejection(result), expected);
    assert_eq!(
        accounts(h, acme).await,
        before,
        "refused {expected:?} wrote"
    );
    assert_eq!(h.all_transfers(acme).await.len(), transfers_before);
}

async fn accounts(h: &Harness, acme: &TenantId) -> Vec<Account> {
    let page = ledger::PageRequest::default();
    h.ledger.list_accounts(acme, page).await.unwrap().items
}

#[tokio::test]
async fn refused_transfers_change_nothing() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let shop = h.merchant(&acme, usd()).await;
    let yen = h.merchant(&acme, jpy()).await;
    let frozen = h.merchant(&acme, usd()).await;
    let closed = h.merchant(&acme, usd()).await;
    h.transfer(&acme, cash, wallet, 100, usd()).await.unwrap();
    let status = |id: AccountId, action| h.ledger.set_account_status(&acme, h.key(), id, action);
    status(frozen, StatusAction::Freeze).await.unwrap();
    status(closed, StatusAction::Close).await.unwrap();
    let unknown = crate::unknown_account();

    check_refused(
        &h,
        &acme,
        plain(cash, yen, 100, usd()),
        Rejection::CurrencyMismatch {
            account: yen,
            account_currency: jpy(),
            currency: usd(),
        },
    )
    .await;
    check_refused(
        &h,
        &acme,
        plain(yen, cash, 100, jpy()),
        Rejection::CurrencyMismatch {
            account: cash,
            account_currency: usd(),
            currency: jpy(),
        },
    )
    .await;
    let unknown_account = Rejection::UnknownAccount { account: unknown };
    check_refused(
        &h,
        &acme,
        plain(cash, unknown, 1, usd()),
        unknown_account.clone(),
    )
    .await;
    check_refused(&h, &acme, plain(unknown, cash, 1, usd()), unknown_account).await;
    let is_frozen = Rejection::AccountFrozen { account: frozen };
    check_refused(&h, &acme, plain(cash, frozen, 1, usd()), is_frozen.clone()).await;
    check_refused(&h, &acme, plain(frozen, cash, 1, usd()), is_frozen).await;
    let is_closed = Rejection::AccountClosed { account: closed };
    check_refused(&h, &acme, plain(cash, closed, 1, usd()), is_closed.clone()).await;
    check_refused(&h, &acme, plain(closed, cash, 1, usd()), is_closed).await;
    let short = Rejection::InsufficientFunds { account: wallet };
    check_refused(&h, &acme, plain(wallet, shop, 101, usd()), short.clone()).await;
    // A hold counts against the balance like a debit.
    check_refused(
        &h,
        &acme,
        crate::pending(wallet, shop, 101, usd(), 60),
        short,
    )
    .await;
    assert_eq!(h.get(&acme, wallet).await.entry_seq, 1);
    // Unfrozen, the account takes postings again.
    status(frozen, StatusAction::Unfreeze).await.unwrap();
    h.transfer(&acme, cash, frozen, 7, usd()).await.unwrap();
    assert_eq!(h.balances(&acme, frozen).await, bal(0, 7, 0, 0));
}

#[tokio::test]
async fn journal_entries_balance_per_currency() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let alice = h.wallet(&acme, usd()).await;
    let bob = h.wallet(&acme, usd()).await;
    let split = journal(vec![
        leg(cash, Side::Debit, 100, usd()),
        leg(alice, Side::Credit, 60, usd()),
        leg(bob, Side::Credit, 40, usd()),
    ]);
    let posted = fresh(h.ledger.create_transfer(&acme, h.key(), split).await);
    assert_eq!(posted.state, TransferState::Posted);
    assert_eq!(posted.legs.len(), 3);
    assert_eq!(posted.as_plain(), None);
    assert_eq!(h.balances(&acme, cash).await, bal(100, 0, 0, 0));
    assert_eq!(h.balances(&acme, alice).await, bal(0, 60, 0, 0));
    assert_eq!(h.balances(&acme, bob).await, bal(0, 40, 0, 0));

    // An exchange: USD out of alice, EUR into her euro wallet, both sides balanced per currency.
    let desk_usd = h.merchant(&acme, usd()).await;
    let desk_eur = h.cash(&acme, eur()).await;
    let alice_eur = h.wallet(&acme, eur()).await;
    let fx = journal(vec![
        leg(alice, Side::Debit, 50, usd()),
        leg(desk_usd, Side::Credit, 50, usd()),
        leg(desk_eur, Side::Debit, 46, eur()),
        leg(alice_eur, Side::Credit, 46, eur()),
    ]);
    h.ledger.create_transfer(&acme, h.key(), fx).await.unwrap();
    assert_eq!(h.balances(&acme, alice).await, bal(50, 60, 0, 0));
    assert_eq!(h.balances(&acme, desk_usd).await, bal(0, 50, 0, 0));
    assert_eq!(h.balances(&acme, desk_eur).await, bal(46, 0, 0, 0));
    assert_eq!(h.balances(&acme, alice_eur).await, bal(0, 46, 0, 0));

    // All or nothing: one frozen leg refuses the whole entry.
    h.ledger
        .set_account_status(&acme, h.key(), bob, StatusAction::Freeze)
        .await
        .unwrap();
    let blocked = journal(vec![
        leg(cash, Side::Debit, 100, usd()),
        leg(alice, Side::Credit, 60, usd()),
        leg(bob, Side::Credit, 40, usd()),
    ]);
    check_refused(
        &h,
        &acme,
        blocked,
        Rejection::AccountFrozen { account: bob },
    )
    .await;
    // And one overdrawing leg refuses it too, even after the other legs were applied.
    let overdraw = journal(vec![
        leg(cash, Side::Credit, 20, usd()),
        leg(desk_usd, Side::Credit, 1, usd()),
        leg(alice, Side::Debit, 21, usd()),
    ]);
    check_refused(
        &h,
        &acme,
        overdraw,
        Rejection::InsufficientFunds { account: alice },
    )
    .await;

    // Legs are checked when built, before the ledger sees them.
    let unbalanced = ledger::BalancedLegs::new(vec![
        leg(cash, Side::Debit, 100, usd()),
        leg(alice, Side::Credit, 60, usd()),
        leg(bob, Side::Credit, 39, usd()),
    ]);
    assert_eq!(unbalanced, Err(Rejection::Unbalanced { currency: usd() }));
}

#[tokio::test]
async fn totals_beyond_u64_round_trip() {
    use ledger::limits::AMOUNT_MAX;
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, jpy()).await;
    let vault = h.merchant(&acme, jpy()).await;
    for _ in 0..3 {
        h.transfer(&acme, cash, vault, AMOUNT_MAX, jpy())
            .await
            .unwrap();
    }
    let total = 3 * u128::from(AMOUNT_MAX);
    assert!(total > u128::from(u64::MAX));
    assert_eq!(h.balances(&acme, vault).await, bal(0, total, 0, 0));
    let entries = h.ledger.entries(&acme, &vault, Default::default()).await;
    let last = entries.unwrap().items.pop().unwrap();
    assert_eq!(last.balances, bal(0, total, 0, 0));
    let trial = h.ledger.trial_balance(&acme).await.unwrap();
    assert_eq!(trial.currencies[0].credits_posted, total);
    assert!(trial.balanced());
}
