//! Transfer packs: the transfers a batch creates for a tenant share one item, a later change
//! gets an item of its own, and listings and lookups see one transfer per id, in id order,
//! as it is now, including transfers older builds stored one per item.

use std::sync::{Arc, Mutex};

use ledger::codec::encode;
use ledger::ids::IdGen;
use ledger::layout;
use ledger::store::sqlite::SqliteStore;
use ledger::store::{Condition, Item, Store, WriteOp};
use ledger::{
    BalancedLegs, BatchMode, CommitConfig, Metadata, Rejection, Transfer, TransferId, TransferState,
};

use crate::{Harness, amount, fresh, pending, plain, rejection, tenant, usd};

/// A harness, and its store for writing items directly.
fn with_store() -> (Harness, SqliteStore) {
    let slot = Arc::new(Mutex::new(None));
    let keep = slot.clone();
    let h = Harness::start_on(CommitConfig::default(), move |store: SqliteStore| {
        *keep.lock().unwrap() = Some(store.clone());
        Arc::new(store)
    });
    let store = slot.lock().unwrap().take().unwrap();
    (h, store)
}

/// A transfer as the ledger answers for it now.
async fn now(h: &Harness, tenant: &ledger::TenantId, id: TransferId) -> Transfer {
    h.ledger.get_transfer(tenant, &id).await.unwrap()
}

#[tokio::test]
async fn listings_and_lookups_see_every_transfer_once_in_order_as_it_is_now() {
    let h = Harness::start();
    let acme = tenant("acme");
    let accounts = h.cash_accounts(&acme, 4).await;
    let (a, b, c) = (accounts[0], accounts[1], accounts[2]);
    let mut ids: Vec<TransferId> = Vec::new();
    // A batch of seven (one pack), three single transfers, a batch of two holds and three
    // transfers, and a single hold.
    let seven = (1..=7).map(|n| plain(a, b, n, usd())).collect();
    for t in fresh(
        h.ledger
            .create_batch(&acme, h.key(), BatchMode::Atomic, seven)
            .await,
    ) {
        ids.push(t.unwrap().id);
    }
    for n in 0..3 {
        ids.push(
            fresh(
                h.ledger
                    .create_transfer(&acme, h.key(), plain(b, c, 10 + n, usd()))
                    .await,
            )
            .id,
        );
    }
    let mixed = vec![
        pending(a, c, 5, usd(), 600),
        plain(c, a, 1, usd()),
        pending(b, a, 6, usd(), 600),
        plain(a, b, 2, usd()),
        plain(c, b, 3, usd()),
    ];
    let mixed: Vec<TransferId> = fresh(
        h.ledger
            .create_batch(&acme, h.key(), BatchMode::Atomic, mixed)
            .await,
    )
    .into_iter()
    .map(|t| t.unwrap().id)
    .collect();
    assert!(
        mixed
            .iter()
            .all(|id| id.pack_base() == mixed[0].pack_base())
    );
    assert_ne!(mixed[0].pack_base(), ids[0].pack_base());
    ids.extend(&mixed);
    let last = fresh(
        h.ledger
            .create_transfer(&acme, h.key(), pending(a, b, 9, usd(), 600))
            .await,
    )
    .id;
    ids.push(last);
    // Changes after their packs: a hold posted in part, one voided, a transfer reversed.
    fresh(
        h.ledger
            .post_pending(&acme, h.key(), mixed[0], Some(amount(4)))
            .await,
    );
    fresh(h.ledger.void_pending(&acme, h.key(), mixed[2]).await);
    let reversal = fresh(
        h.ledger
            .reverse(&acme, h.key(), ids[3], None, Metadata::default())
            .await,
    );
    ids.push(reversal.id);
    ids.sort();
    assert_eq!(ids.len(), 7 + 3 + 5 + 1 + 1);

    assert_eq!(now(&h, &acme, mixed[0]).await.state, TransferState::Posted);
    assert_eq!(
        now(&h, &acme, mixed[0]).await.hold.unwrap().posted_amount,
        Some(amount(4))
    );
    assert_eq!(now(&h, &acme, mixed[2]).await.state, TransferState::Voided);
    assert_eq!(now(&h, &acme, ids[3]).await.reversed_by, Some(reversal.id));
    assert_eq!(now(&h, &acme, last).await.state, TransferState::Pending);

    for limit in [1, 2, 3, 5, 7, 100] {
        for descending in [false, true] {
            let got = h.transfers_paged(&acme, limit, descending).await;
            let got_ids: Vec<TransferId> = got.iter().map(|t| t.id).collect();
            let mut want = ids.clone();
            if descending {
                want.reverse();
            }
            assert_eq!(got_ids, want, "limit {limit}, descending {descending}");
            for t in &got {
                assert_eq!(*t, now(&h, &acme, t.id).await, "listed as it is now");
            }
        }
    }
}

#[tokio::test]
async fn a_transfer_changes_once_however_many_writers_try() {
    let h = Harness::start();
    let acme = tenant("acme");
    let accounts = h.cash_accounts(&acme, 2).await;
    let hold = fresh(
        h.ledger
            .create_transfer(
                &acme,
                h.key(),
                pending(accounts[0], accounts[1], 5, usd(), 600),
            )
            .await,
    );
    // Post and void the same hold at once, many times over: exactly one wins.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (ledger, key, acme, id) = (h.ledger.clone(), h.key(), acme.clone(), hold.id);
        calls.spawn(async move {
            if i % 2 == 0 {
                ledger.post_pending(&acme, key, id, None).await
            } else {
                ledger.void_pending(&acme, key, id).await
            }
        });
    }
    let mut won = 0;
    while let Some(done) = calls.join_next().await {
        match done.unwrap() {
            Ok(_) => won += 1,
            Err(ledger::Error::Rejected(Rejection::NotPending { .. })) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    let balances = h.balances(&acme, accounts[0]).await;
    assert_eq!(balances.debits_pending, 0);
}

#[tokio::test]
async fn transfers_stored_one_per_item_by_earlier_builds_are_read_listed_and_changed() {
    let (h, store) = with_store();
    let acme = tenant("acme");
    let accounts = h.cash_accounts(&acme, 2).await;
    let (a, b) = (accounts[0], accounts[1]);
    let before = fresh(
        h.ledger
            .create_transfer(&acme, h.key(), plain(a, b, 1, usd()))
            .await,
    );
    // As an earlier build wrote a transfer: its own item, keyed by its id (a plain ULID).
    let id = IdGen::new().transfer(h.now());
    let legacy = Transfer {
        id,
        legs: BalancedLegs::transfer(a, b, amount(3), usd())
            .unwrap()
            .legs()
            .to_vec(),
        description: Some("from an earlier build".into()),
        metadata: Metadata::default(),
        state: TransferState::Posted,
        hold: None,
        reverses: None,
        reversed_by: None,
        created_at: h.now(),
        updated_at: h.now(),
        instrument: None,
    };
    // Their shape had no instrument: postcard writes the absent one as a last zero byte.
    let mut body = encode(&legacy);
    assert_eq!(body.pop(), Some(0));
    store
        .transact_write(vec![WriteOp::Put {
            item: Item {
                key: layout::transfer(&acme, &id),
                version: 1,
                body,
            },
            condition: Condition::NotExists,
        }])
        .await
        .unwrap();
    let after = fresh(
        h.ledger
            .create_transfer(&acme, h.key(), plain(b, a, 2, usd()))
            .await,
    );
    assert_eq!(h.ledger.get_transfer(&acme, &id).await.unwrap(), legacy);
    let ids: Vec<TransferId> = h.all_transfers(&acme).await.iter().map(|t| t.id).collect();
    // In id order (here the clock stands still, so the ids' random bits decide).
    let mut want = vec![before.id, id, after.id];
    want.sort();
    assert_eq!(ids, want);
    // Changed once, where it is, as the build that wrote it would change it: under the
    // item's version, so builds before packs and after contend on the same item.
    let reversal = fresh(
        h.ledger
            .reverse(&acme, h.key(), id, None, Metadata::default())
            .await,
    );
    assert_eq!(reversal.reverses, Some(id));
    assert_eq!(
        h.ledger.get_transfer(&acme, &id).await.unwrap().reversed_by,
        Some(reversal.id)
    );
    assert!(matches!(
        rejection(
            h.ledger
                .reverse(&acme, h.key(), id, None, Metadata::default())
                .await
        ),
        Rejection::AlreadyReversed { .. }
    ));
    let single = store
        .get(layout::transfer(&acme, &id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(single.version, 2);
    assert!(
        store
            .get(layout::transfer_state(&acme, &id))
            .await
            .unwrap()
            .is_none()
    );
    let listed: Vec<Transfer> = h.all_transfers(&acme).await;
    assert_eq!(listed.len(), 4);
    let changed: Vec<&Transfer> = listed.iter().filter(|t| t.id == id).collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].reversed_by, Some(reversal.id));
}
