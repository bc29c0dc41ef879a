//! Accounts: creation, reads, listing with cursors, external references, status changes.

use ledger::limits::{DESCRIPTION_LEN_MAX, EXTERNAL_REF_LEN_MAX, PAGE_LEN_MAX};
use ledger::{
    Account, AccountId, AccountStatus, BalanceConstraint, Balances, CommitConfig, Currency,
    Metadata, NewAccount, PageRequest, Rejection, Side, StatusAction,
};

use crate::{Failure, Harness, failure, fresh, jpy, metadata, rejection, tenant, usd};

/// Creates an account from `new`, then checks what came back and what `get_account` reads.
async fn check_create(h: &Harness, new: NewAccount, expected: &Expected) {
    let acme = tenant("acme");
    let created = fresh(h.ledger.create_account(&acme, h.key(), new).await);
    assert!(
        created.id.to_string().starts_with("acct_"),
        "{}",
        created.id
    );
    assert_eq!(created.tenant, acme);
    assert_eq!(created.currency, expected.currency);
    assert_eq!(created.normal_side, expected.side);
    assert_eq!(created.constraint, expected.constraint);
    assert_eq!(created.status, AccountStatus::Open);
    assert_eq!(created.name.as_deref(), expected.name);
    assert_eq!(created.external_ref.as_deref(), expected.external_ref);
    assert_eq!(&created.metadata, &expected.metadata);
    assert_eq!(created.balances, Balances::default());
    assert_eq!(created.entry_seq, 0);
    assert_eq!(created.created_at, h.now());
    assert_eq!(created.updated_at, h.now());
    let read = h.ledger.get_account(&acme, &created.id).await.unwrap();
    assert_eq!(read, created);
}

struct Expected {
    currency: Currency,
    side: Side,
    constraint: BalanceConstraint,
    name: Option<&'static str>,
    external_ref: Option<&'static str>,
    metadata: Metadata,
}

#[tokio::test]
async fn create_and_get() {
    let h = Harness::start();
    let wallet = metadata(&[("owner", "alice"), ("tier", "gold")]);
    check_create(
        &h,
        NewAccount::new(
            usd(),
            Side::Credit,
            BalanceConstraint::DebitsMustNotExceedCredits,
            Some("Alice's wallet".into()),
            Some("cust-1".into()),
            wallet.clone(),
        )
        .unwrap(),
        &Expected {
            currency: usd(),
            side: Side::Credit,
            constraint: BalanceConstraint::DebitsMustNotExceedCredits,
            name: Some("Alice's wallet"),
            external_ref: Some("cust-1"),
            metadata: wallet,
        },
    )
    .await;
    check_create(
        &h,
        NewAccount::new(
            jpy(),
            Side::Debit,
            BalanceConstraint::None,
            None,
            None,
            Metadata::default(),
        )
        .unwrap(),
        &Expected {
            currency: jpy(),
            side: Side::Debit,
            constraint: BalanceConstraint::None,
            name: None,
            external_ref: None,
            metadata: Metadata::default(),
        },
    )
    .await;
    check_create(
        &h,
        NewAccount::new(
            usd(),
            Side::Debit,
            BalanceConstraint::CreditsMustNotExceedDebits,
            None,
            Some("loan-7".into()),
            metadata(&[("k", "")]),
        )
        .unwrap(),
        &Expected {
            currency: usd(),
            side: Side::Debit,
            constraint: BalanceConstraint::CreditsMustNotExceedDebits,
            name: None,
            external_ref: Some("loan-7"),
            metadata: metadata(&[("k", "")]),
        },
    )
    .await;
    let missing = h
        .ledger
        .get_account(&tenant("acme"), &crate::unknown_account())
        .await;
    assert_eq!(failure(missing), Failure::NotFound);
}

#[tokio::test]
async fn bad_account_requests_are_refused_before_the_ledger() {
    let check = |external_ref: Option<&str>, name: Option<String>, field: &str| {
        let made = NewAccount::new(
            usd(),
            Side::Credit,
            BalanceConstraint::None,
            name,
            external_ref.map(str::to_owned),
            Metadata::default(),
        );
        match made {
            Err(Rejection::InvalidField { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected an invalid {field}, got {other:?}"),
        }
    };
    check(Some(""), None, "external_ref");
    check(Some("tab\there"), None, "external_ref");
    check(
        Some(&"r".repeat(EXTERNAL_REF_LEN_MAX + 1)),
        None,
        "external_ref",
    );
    check(None, Some("n".repeat(DESCRIPTION_LEN_MAX + 1)), "name");
}

/// Walks a listing with pages of `limit`, returning the ids page by page.
async fn pages(h: &Harness, limit: usize, descending: bool) -> Vec<Vec<AccountId>> {
    let acme = tenant("acme");
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = PageRequest {
            limit: Some(limit),
            cursor,
            descending,
        };
        let listing = h.ledger.list_accounts(&acme, page).await.unwrap();
        out.push(listing.items.iter().map(|a| a.id).collect());
        match listing.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

#[tokio::test]
async fn list_pages_every_account_exactly_once() {
    let h = Harness::start();
    let acme = tenant("acme");
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(h.cash(&acme, usd()).await);
    }
    let ascending = pages(&h, 2, false).await;
    let expected: Vec<Vec<AccountId>> = ids.chunks(2).map(<[_]>::to_vec).collect();
    assert_eq!(ascending, expected);
    let descending = pages(&h, 2, true).await;
    let mut reversed = ids.clone();
    reversed.reverse();
    let expected: Vec<Vec<AccountId>> = reversed.chunks(2).map(<[_]>::to_vec).collect();
    assert_eq!(descending, expected);
    // One page that holds everything has no next page.
    assert_eq!(pages(&h, 5, false).await, vec![ids.clone()]);
    assert_eq!(pages(&h, PAGE_LEN_MAX, false).await, vec![ids.clone()]);
    // The default page (50) holds all five too.
    let listing = h
        .ledger
        .list_accounts(&acme, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(listing.items.iter().map(|a| a.id).collect::<Vec<_>>(), ids);
    assert_eq!(listing.next_cursor, None);
}

/// Lists acme's accounts with `page` and expects `expected`.
async fn check_refused_page(h: &Harness, page: PageRequest, expected: Failure) {
    let listed = h.ledger.list_accounts(&tenant("acme"), page).await;
    assert_eq!(failure(listed), expected);
}

#[tokio::test]
async fn list_refuses_foreign_cursors_and_bad_limits() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    for _ in 0..2 {
        h.transfer(&acme, cash, wallet, 5, usd()).await.unwrap();
    }
    let page_of_one = PageRequest {
        limit: Some(1),
        ..Default::default()
    };
    let transfers = h.ledger.list_transfers(&acme, page_of_one.clone());
    let transfer_cursor = transfers.await.unwrap().next_cursor.unwrap();
    let entries = h.ledger.entries(&acme, &wallet, page_of_one.clone());
    let entry_cursor = entries.await.unwrap().next_cursor.unwrap();
    let accounts = h.ledger.list_accounts(&acme, page_of_one);
    let account_cursor = accounts.await.unwrap().next_cursor.unwrap();
    let with_cursor = |cursor: &str| PageRequest {
        limit: Some(2),
        cursor: Some(cursor.to_owned()),
        descending: false,
    };
    let with_limit = |limit: usize| PageRequest {
        limit: Some(limit),
        ..Default::default()
    };
    let bad_limit = || {
        Failure::Rejected(Rejection::InvalidField {
            field: "limit".into(),
            reason: format!("between 1 and {PAGE_LEN_MAX}"),
        })
    };
    check_refused_page(&h, with_cursor(&transfer_cursor), Failure::InvalidCursor).await;
    check_refused_page(&h, with_cursor(&entry_cursor), Failure::InvalidCursor).await;
    check_refused_page(&h, with_cursor("not base64!"), Failure::InvalidCursor).await;
    check_refused_page(&h, with_cursor(""), Failure::InvalidCursor).await;
    check_refused_page(&h, with_limit(0), bad_limit()).await;
    check_refused_page(&h, with_limit(PAGE_LEN_MAX + 1), bad_limit()).await;
    // The other listings refuse an accounts cursor in turn.
    let transfers = h.ledger.list_transfers(&acme, with_cursor(&account_cursor));
    assert_eq!(failure(transfers.await), Failure::InvalidCursor);
    let entries = h
        .ledger
        .entries(&acme, &wallet, with_cursor(&account_cursor));
    assert_eq!(failure(entries.await), Failure::InvalidCursor);
    // The accounts cursor does continue its own listing.
    let rest = h.ledger.list_accounts(&acme, with_cursor(&account_cursor));
    let rest = rest.await.unwrap();
    assert_eq!(
        rest.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        [wallet]
    );
    assert_eq!(rest.next_cursor, None);
}

async fn create_with_ref(
    h: &Harness,
    tenant_id: &str,
    external_ref: &str,
) -> ledger::Result<Account> {
    let new = NewAccount::new(
        usd(),
        Side::Credit,
        BalanceConstraint::None,
        None,
        Some(external_ref.into()),
        Metadata::default(),
    )
    .unwrap();
    let created = h
        .ledger
        .create_account(&tenant(tenant_id), h.key(), new)
        .await?;
    Ok(created.value)
}

#[tokio::test]
async fn external_ref_is_unique_per_tenant() {
    let h = Harness::start();
    let first = create_with_ref(&h, "acme", "ref-1").await.unwrap();
    let taken = create_with_ref(&h, "acme", "ref-1").await;
    assert_eq!(
        rejection(taken),
        Rejection::ExternalRefTaken {
            external_ref: "ref-1".into()
        }
    );
    let other_tenant = create_with_ref(&h, "globex", "ref-1").await.unwrap();
    assert_ne!(other_tenant.id, first.id);
    assert_eq!(other_tenant.external_ref.as_deref(), Some("ref-1"));
    create_with_ref(&h, "acme", "ref-2").await.unwrap();
    // The refused request created nothing: acme has exactly its two accounts.
    let listed = h
        .ledger
        .list_accounts(&tenant("acme"), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);
    assert_eq!(listed.items[0], first);
}

/// Ten concurrent creates with one external reference: one account, nine refusals.
async fn check_concurrent_creates(commit: CommitConfig) {
    let h = std::sync::Arc::new(Harness::start_with(commit));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let h = h.clone();
        tasks.spawn(async move { create_with_ref(&h, "acme", "same").await });
    }
    let mut created = 0;
    let mut taken = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(account) => {
                created += 1;
                assert_eq!(account.external_ref.as_deref(), Some("same"));
            }
            Err(error) => {
                let expected = Rejection::ExternalRefTaken {
                    external_ref: "same".into(),
                };
                assert_eq!(rejection::<()>(Err(error)), expected);
                taken += 1;
            }
        }
    }
    assert_eq!((created, taken), (1, 9));
    let acme = tenant("acme");
    let listed = h.ledger.list_accounts(&acme, PageRequest::default());
    assert_eq!(listed.await.unwrap().items.len(), 1);
    if !commit.wait.is_zero() {
        assert_eq!(h.ledger.commit_stats().transactions, 1, "one group commit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_with_one_external_ref_create_one_account() {
    // As they come, and all gathered into one transaction (the reference staged, not stored).
    check_concurrent_creates(CommitConfig::default()).await;
    let gather = CommitConfig {
        wait: std::time::Duration::from_millis(200),
        ..CommitConfig::default()
    };
    check_concurrent_creates(gather).await;
}

/// An account of acme brought into `status` (empty, so that it may close).
async fn account_in(h: &Harness, status: AccountStatus) -> AccountId {
    let acme = tenant("acme");
    let id = h.wallet(&acme, usd()).await;
    let steps: &[StatusAction] = match status {
        AccountStatus::Open => &[],
        AccountStatus::Frozen => &[StatusAction::Freeze],
        AccountStatus::Closed => &[StatusAction::Close],
    };
    for &action in steps {
        let changed = h.ledger.set_account_status(&acme, h.key(), id, action);
        assert_eq!(changed.await.unwrap().value.status, status);
    }
    id
}

/// Applies `action` to an account in `start`: `Some(next)` expects that status, `None` expects
/// `InvalidTransition` and the status unchanged.
async fn check_transition(
    h: &Harness,
    start: AccountStatus,
    action: StatusAction,
    expected: Option<AccountStatus>,
) {
    let acme = tenant("acme");
    let id = account_in(h, start).await;
    let before = h.get(&acme, id).await;
    let result = h
        .ledger
        .set_account_status(&acme, h.key(), id, action)
        .await;
    match expected {
        Some(next) => {
            let after = result.unwrap().value;
            assert_eq!(after.status, next, "{start:?} + {action:?}");
            assert_eq!(h.get(&acme, id).await, after);
        }
        None => {
            let expected = Rejection::InvalidTransition {
                account: id,
                status: start,
                action,
            };
            assert_eq!(rejection(result), expected);
            assert_eq!(h.get(&acme, id).await, before);
        }
    }
}

#[tokio::test]
async fn status_transitions() {
    use AccountStatus::{Closed, Frozen, Open};
    use StatusAction::{Close, Freeze, Unfreeze};
    let h = Harness::start();
    check_transition(&h, Open, Freeze, Some(Frozen)).await;
    check_transition(&h, Frozen, Unfreeze, Some(Open)).await;
    check_transition(&h, Open, Close, Some(Closed)).await;
    check_transition(&h, Frozen, Close, Some(Closed)).await;
    check_transition(&h, Open, Unfreeze, None).await;
    check_transition(&h, Frozen, Freeze, None).await;
    check_transition(&h, Closed, Freeze, None).await;
    check_transition(&h, Closed, Unfreeze, None).await;
    check_transition(&h, Closed, Close, None).await;
    let acme = tenant("acme");
    let unknown = h
        .ledger
        .set_account_status(&acme, h.key(), crate::unknown_account(), Freeze);
    assert_eq!(failure(unknown.await), Failure::NotFound);
}

#[tokio::test]
async fn close_needs_an_empty_account() {
    let h = Harness::start();
    let acme = tenant("acme");
    let cash = h.cash(&acme, usd()).await;
    let wallet = h.wallet(&acme, usd()).await;
    let close = |id| {
        h.ledger
            .set_account_status(&acme, h.key(), id, StatusAction::Close)
    };
    h.transfer(&acme, cash, wallet, 100, usd()).await.unwrap();
    let not_empty = |account| Rejection::AccountNotEmpty { account };
    assert_eq!(rejection(close(wallet).await), not_empty(wallet));
    assert_eq!(rejection(close(cash).await), not_empty(cash));
    // Spent down to zero posted, but a hold still pends: not empty either.
    let shop = h.merchant(&acme, usd()).await;
    h.transfer(&acme, wallet, shop, 60, usd()).await.unwrap();
    let held = h.hold(&acme, wallet, shop, 40, usd(), 60).await.unwrap();
    h.transfer(&acme, shop, cash, 60, usd()).await.unwrap();
    assert_eq!(h.balances(&acme, shop).await, crate::bal(60, 60, 0, 40));
    assert_eq!(rejection(close(shop).await), not_empty(shop));
    assert_eq!(rejection(close(wallet).await), not_empty(wallet));
    assert_eq!(h.get(&acme, wallet).await.status, AccountStatus::Open);
    // Once the hold is voided the shop nets to zero and closes; posted columns stay as history.
    let voided = h.ledger.void_pending(&acme, h.key(), held.id).await;
    voided.unwrap();
    let closed = close(shop).await.unwrap().value;
    assert_eq!(closed.status, AccountStatus::Closed);
    assert_eq!(closed.balances, crate::bal(60, 60, 0, 0));
    // A closed account takes no postings, on either side.
    let to_closed = h.transfer(&acme, cash, shop, 1, usd()).await;
    assert_eq!(
        rejection(to_closed),
        Rejection::AccountClosed { account: shop }
    );
}
