//! Tenancy: one tenant can neither see nor touch another tenant's accounts and transfers.

use ledger::{Metadata, PageRequest, Rejection, StatusAction};

use crate::{Failure, Harness, plain, tenant, usd};

/// A call by the intruding tenant must fail with `expected`.
fn check_denied<T: std::fmt::Debug>(what: &str, result: ledger::Result<T>, expected: Failure) {
    match result {
        Ok(value) => panic!("{what}: expected {expected:?}, got {value:?}"),
        Err(error) => assert_eq!(Failure::from(error), expected, "{what}"),
    }
}

#[tokio::test]
async fn tenants_are_isolated() {
    let h = Harness::start();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let paid = h.transfer(&acme, cash, wallet, 500, usd()).await.unwrap();
    let held = h.hold(&acme, wallet, cash, 100, usd(), 60).await.unwrap();
    let acme_before = (h.get(&acme, cash).await, h.get(&acme, wallet).await);

    // Reads: nothing of acme's exists for globex.
    let l = &h.ledger;
    check_denied(
        "get account",
        l.get_account(&globex, &cash).await,
        Failure::NotFound,
    );
    check_denied(
        "get transfer",
        l.get_transfer(&globex, &paid.id).await,
        Failure::NotFound,
    );
    let page = PageRequest::default();
    check_denied(
        "entries",
        l.entries(&globex, &wallet, page.clone()).await,
        Failure::NotFound,
    );
    let at = h.now();
    check_denied(
        "balance at",
        l.balance_at(&globex, &wallet, at).await,
        Failure::NotFound,
    );
    let accounts = l.list_accounts(&globex, page.clone()).await.unwrap();
    assert_eq!(accounts.items, []);
    assert_eq!(accounts.next_cursor, None);
    let transfers = l.list_transfers(&globex, page.clone()).await.unwrap();
    assert_eq!(transfers.items, []);

    // Writes naming acme's accounts: they do not exist for globex.
    let own = h.merchant(&globex, usd()).await;
    let unknown = |account| Failure::Rejected(Rejection::UnknownAccount { account });
    let k = || h.key();
    let both_acme = l.create_transfer(&globex, k(), plain(cash, wallet, 1, usd()));
    check_denied("transfer between acme's", both_acme.await, unknown(cash));
    let from_own = l.create_transfer(&globex, k(), plain(own, wallet, 1, usd()));
    check_denied("transfer to acme's", from_own.await, unknown(wallet));
    let to_own = l.create_transfer(&globex, k(), plain(wallet, own, 1, usd()));
    check_denied("transfer from acme's", to_own.await, unknown(wallet));
    let batch = l.create_batch(
        &globex,
        k(),
        ledger::BatchMode::Independent,
        vec![plain(own, cash, 1, usd())],
    );
    let batch = batch.await.unwrap().value;
    assert_eq!(
        batch,
        vec![Err(Rejection::UnknownAccount { account: cash })]
    );

    // Writes naming acme's transfers or accounts directly.
    let post = l.post_pending(&globex, k(), held.id, None).await;
    check_denied("post acme's hold", post, Failure::NotFound);
    let void = l.void_pending(&globex, k(), held.id).await;
    check_denied("void acme's hold", void, Failure::NotFound);
    let reverse = l
        .reverse(&globex, k(), paid.id, None, Metadata::default())
        .await;
    check_denied("reverse acme's transfer", reverse, Failure::NotFound);
    let freeze = l
        .set_account_status(&globex, k(), wallet, StatusAction::Freeze)
        .await;
    check_denied("freeze acme's account", freeze, Failure::NotFound);

    // Acme's records are untouched and globex sees only its own account.
    let acme_after = (h.get(&acme, cash).await, h.get(&acme, wallet).await);
    assert_eq!(acme_after, acme_before);
    let pending = l.get_transfer(&acme, &held.id).await.unwrap();
    assert_eq!(pending, held);
    let accounts = l.list_accounts(&globex, page.clone()).await.unwrap();
    assert_eq!(
        accounts.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        [own]
    );
    assert_eq!(l.list_transfers(&globex, page).await.unwrap().items, []);
    let trial = l.trial_balance(&globex).await.unwrap();
    assert_eq!(trial.accounts, 1);
    assert_eq!(trial.currencies.len(), 1);
    assert_eq!(trial.currencies[0].debits_posted, 0);
}
