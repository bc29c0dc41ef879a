//! The trial balance: per currency, debits equal credits, read back from every account head.

use ledger::{CurrencyTotals, Metadata};

use crate::{Harness, amount, eur, jpy, tenant, usd};

fn totals(
    currency: ledger::Currency,
    accounts: u64,
    posted: u128,
    pending: u128,
) -> CurrencyTotals {
    CurrencyTotals {
        currency,
        accounts,
        debits_posted: posted,
        credits_posted: posted,
        debits_pending: pending,
        credits_pending: pending,
    }
}

#[tokio::test]
async fn trial_balance_per_currency() {
    let h = Harness::start();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let usd_cash = h.cash(&acme, usd()).await;
    let usd_wallet = h.wallet(&acme, usd()).await;
    let usd_shop = h.merchant(&acme, usd()).await;
    let eur_cash = h.cash(&acme, eur()).await;
    let eur_wallet = h.wallet(&acme, eur()).await;
    let eur_shop = h.merchant(&acme, eur()).await;
    h.merchant(&acme, jpy()).await;
    h.transfer(&acme, usd_cash, usd_wallet, 1000, usd())
        .await
        .unwrap();
    let spent = h
        .transfer(&acme, usd_wallet, usd_shop, 200, usd())
        .await
        .unwrap();
    let reverse = h
        .ledger
        .reverse(&acme, h.key(), spent.id, None, Metadata::default());
    reverse.await.unwrap();
    h.transfer(&acme, eur_cash, eur_wallet, 500, eur())
        .await
        .unwrap();
    h.hold(&acme, eur_wallet, eur_shop, 50, eur(), 60)
        .await
        .unwrap();
    let partial = h
        .hold(&acme, eur_wallet, eur_shop, 80, eur(), 60)
        .await
        .unwrap();
    let post = h
        .ledger
        .post_pending(&acme, h.key(), partial.id, Some(amount(30)));
    post.await.unwrap();
    let refused = h.transfer(&acme, eur_wallet, eur_shop, 1000, eur()).await;
    assert!(refused.is_err());
    let g_cash = h.cash(&globex, usd()).await;
    let g_shop = h.merchant(&globex, usd()).await;
    h.transfer(&globex, g_cash, g_shop, 7, usd()).await.unwrap();

    let trial = h.ledger.trial_balance(&acme).await.unwrap();
    assert!(trial.balanced(), "{trial:?}");
    assert_eq!(trial.accounts, 7);
    assert_eq!(trial.as_of, h.now());
    // By code: EUR, JPY, USD. USD: 1000 + 200 + the reversal's 200 on each side.
    let expected = vec![
        totals(eur(), 3, 500 + 30, 50),
        totals(jpy(), 1, 0, 0),
        totals(usd(), 3, 1400, 0),
    ];
    assert_eq!(trial.currencies, expected);

    let all = h.ledger.trial_balance_all().await.unwrap();
    let tenants: Vec<_> = all.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(tenants, [acme.clone(), globex.clone()]);
    assert_eq!(all[0].1.currencies, expected);
    assert_eq!(all[1].1.accounts, 2);
    assert_eq!(all[1].1.currencies, vec![totals(usd(), 2, 7, 0)]);
    assert!(all.iter().all(|(_, t)| t.balanced()));

    // A tenant without accounts has an empty, balanced trial balance.
    let nobody = h.ledger.trial_balance(&tenant("initech")).await.unwrap();
    assert_eq!((nobody.accounts, nobody.currencies.len()), (0, 0));
    assert!(nobody.balanced());
}
