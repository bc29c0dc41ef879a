//! The store conformance suite: what every backend must do, checked the same way for each.
//!
//! Each backend's tests call [`run_all`] on a live store. Every check writes under partitions
//! named with a fresh ULID, so the suite can run again and again on one shared table.

use super::{Condition, Item, Key, Query, Store, StoreError, WriteOp};

type Check = Result<(), String>;

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Check {
    if ok { Ok(()) } else { Err(what()) }
}

fn item(pk: &str, sk: &str, version: u64, body: &str) -> Item {
    Item {
        key: Key::new(pk, sk),
        version,
        body: body.as_bytes().to_vec(),
    }
}

fn put(item: Item, condition: Condition) -> WriteOp {
    WriteOp::Put { item, condition }
}

/// Runs every check; the first failure comes back as text.
pub async fn run_all(store: &dyn Store) -> Check {
    let run = ulid::Ulid::generate().to_string();
    conditions(store, &format!("conf#{run}#cond")).await?;
    atomicity(store, &format!("conf#{run}#atom")).await?;
    interface_rules(store, &format!("conf#{run}#rules")).await?;
    reads(store, &format!("conf#{run}#read")).await?;
    queries(store, &format!("conf#{run}#query")).await?;
    store.ping().await.map_err(|e| format!("ping: {e}"))
}

async fn conditions(store: &dyn Store, pk: &str) -> Check {
    let write = |ops| store.transact_write(ops);
    write(vec![put(item(pk, "a", 1, "one"), Condition::NotExists)])
        .await
        .map_err(|e| format!("create: {e}"))?;
    let again = write(vec![put(item(pk, "a", 1, "dup"), Condition::NotExists)]).await;
    ensure(
        again == Err(StoreError::ConditionFailed { index: 0 }),
        || format!("create twice: {again:?}"),
    )?;
    write(vec![put(item(pk, "a", 2, "two"), Condition::Version(1))])
        .await
        .map_err(|e| format!("update: {e}"))?;
    let stale = write(vec![put(item(pk, "a", 2, "stale"), Condition::Version(1))]).await;
    ensure(
        stale == Err(StoreError::ConditionFailed { index: 0 }),
        || format!("stale update: {stale:?}"),
    )?;
    let missing = write(vec![put(item(pk, "nope", 2, "x"), Condition::Version(1))]).await;
    ensure(
        missing == Err(StoreError::ConditionFailed { index: 0 }),
        || format!("update of missing: {missing:?}"),
    )?;
    let got = store
        .get(Key::new(pk, "a"))
        .await
        .map_err(|e| e.to_string())?;
    ensure(got == Some(item(pk, "a", 2, "two")), || {
        format!("after update: {got:?}")
    })?;
    write(vec![put(item(pk, "a", 7, "blind"), Condition::None)])
        .await
        .map_err(|e| format!("blind put: {e}"))?;
    let stale_delete = write(vec![WriteOp::Delete {
        key: Key::new(pk, "a"),
        condition: Condition::Version(6),
    }])
    .await;
    ensure(
        stale_delete == Err(StoreError::ConditionFailed { index: 0 }),
        || format!("stale delete: {stale_delete:?}"),
    )?;
    write(vec![WriteOp::Delete {
        key: Key::new(pk, "a"),
        condition: Condition::Version(7),
    }])
    .await
    .map_err(|e| format!("delete: {e}"))?;
    let gone = store
        .get(Key::new(pk, "a"))
        .await
        .map_err(|e| e.to_string())?;
    ensure(gone.is_none(), || format!("after delete: {gone:?}"))?;
    write(vec![WriteOp::Delete {
        key: Key::new(pk, "a"),
        condition: Condition::None,
    }])
    .await
    .map_err(|e| format!("delete of missing: {e}"))
}

async fn atomicity(store: &dyn Store, pk: &str) -> Check {
    store
        .transact_write(vec![put(item(pk, "taken", 1, "x"), Condition::NotExists)])
        .await
        .map_err(|e| e.to_string())?;
    let ops = vec![
        put(item(pk, "new-1", 1, "x"), Condition::NotExists),
        put(item(pk, "taken", 1, "y"), Condition::NotExists),
        put(item(pk, "new-2", 1, "x"), Condition::NotExists),
    ];
    let result = store.transact_write(ops).await;
    ensure(
        result == Err(StoreError::ConditionFailed { index: 1 }),
        || format!("failing transaction: {result:?}"),
    )?;
    let after = store
        .get_many(vec![
            Key::new(pk, "new-1"),
            Key::new(pk, "taken"),
            Key::new(pk, "new-2"),
        ])
        .await
        .map_err(|e| e.to_string())?;
    ensure(
        after == vec![None, Some(item(pk, "taken", 1, "x")), None],
        || format!("a failed transaction left writes behind: {after:?}"),
    )
}

async fn interface_rules(store: &dyn Store, pk: &str) -> Check {
    let twice = store
        .transact_write(vec![
            put(item(pk, "k", 1, "a"), Condition::NotExists),
            WriteOp::Delete {
                key: Key::new(pk, "k"),
                condition: Condition::None,
            },
        ])
        .await;
    ensure(matches!(twice, Err(StoreError::Invalid(_))), || {
        format!("two actions on one item: {twice:?}")
    })?;
    let limit = store.limits().transaction_items_max;
    let many = (0..=limit)
        .map(|i| put(item(pk, &format!("{i:08}"), 1, "x"), Condition::None))
        .collect();
    let too_many = store.transact_write(many).await;
    ensure(matches!(too_many, Err(StoreError::Invalid(_))), || {
        format!("{} actions: {too_many:?}", limit + 1)
    })?;
    let big = "x".repeat(store.limits().item_bytes_max + 1);
    let too_big = store
        .transact_write(vec![put(item(pk, "big", 1, &big), Condition::None)])
        .await;
    ensure(matches!(too_big, Err(StoreError::Invalid(_))), || {
        "oversized item accepted".to_owned()
    })?;
    let nothing = store
        .get_many(vec![Key::new(pk, "k"), Key::new(pk, "00000000")])
        .await;
    ensure(nothing == Ok(vec![None, None]), || {
        format!("invalid calls wrote: {nothing:?}")
    })?;
    store
        .transact_write(Vec::new())
        .await
        .map_err(|e| format!("empty transaction: {e}"))
}

async fn reads(store: &dyn Store, pk: &str) -> Check {
    let ops = (0..5)
        .map(|i| {
            put(
                item(pk, &format!("k{i}"), 1, &format!("v{i}")),
                Condition::NotExists,
            )
        })
        .collect();
    store.transact_write(ops).await.map_err(|e| e.to_string())?;
    let keys = vec![
        Key::new(pk, "k3"),
        Key::new(pk, "missing"),
        Key::new(pk, "k0"),
        Key::new("other", "k0"),
    ];
    let got = store.get_many(keys).await.map_err(|e| e.to_string())?;
    let expected = vec![
        Some(item(pk, "k3", 1, "v3")),
        None,
        Some(item(pk, "k0", 1, "v0")),
        None,
    ];
    ensure(got == expected, || format!("get_many order: {got:?}"))?;
    let none = store
        .get_many(Vec::new())
        .await
        .map_err(|e| e.to_string())?;
    ensure(none.is_empty(), || "get_many of nothing".to_owned())
}

async fn queries(store: &dyn Store, pk: &str) -> Check {
    let sks: Vec<String> = (0..25)
        .map(|i| format!("E#{i:04}"))
        .chain(["A".to_owned(), "F#1".to_owned()])
        .collect();
    let ops = sks
        .iter()
        .map(|sk| put(item(pk, sk, 1, sk), Condition::NotExists))
        .collect();
    store.transact_write(ops).await.map_err(|e| e.to_string())?;
    let neighbour = format!("{pk}x");
    store
        .transact_write(vec![put(
            item(&neighbour, "E#0001", 1, "n"),
            Condition::NotExists,
        )])
        .await
        .map_err(|e| e.to_string())?;

    for descending in [false, true] {
        let mut seen = Vec::new();
        let mut query = Query {
            descending,
            ..Query::prefix(pk, "E#", 7)
        };
        loop {
            let page = store
                .query(query.clone())
                .await
                .map_err(|e| e.to_string())?;
            ensure(page.items.len() <= 7, || {
                format!("page of {}", page.items.len())
            })?;
            seen.extend(page.items.into_iter().map(|i| i.key.sk));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..25).map(|i| format!("E#{i:04}")).collect();
        if descending {
            expected.reverse();
        }
        ensure(seen == expected, || {
            format!("paged query (descending {descending}): {seen:?}")
        })?;
    }

    let range = Query {
        pk: pk.to_owned(),
        from: "E#0003".into(),
        to: "E#0006".into(),
        descending: true,
        limit: 2,
        after: None,
    };
    let page = store.query(range).await.map_err(|e| e.to_string())?;
    let got: Vec<_> = page.items.iter().map(|i| i.key.sk.as_str()).collect();
    ensure(got == ["E#0006", "E#0005"], || {
        format!("inclusive range, descending: {got:?}")
    })?;
    ensure(page.next.as_deref() == Some("E#0005"), || {
        format!("cursor: {:?}", page.next)
    })?;
    // From the very start of the partition (the ledger's hold sweep asks this way).
    let start = Query {
        pk: pk.to_owned(),
        from: String::new(),
        to: "E#0001".into(),
        descending: false,
        limit: 10,
        after: None,
    };
    let page = store.query(start).await.map_err(|e| e.to_string())?;
    let got: Vec<_> = page.items.iter().map(|i| i.key.sk.as_str()).collect();
    ensure(
        got == ["A", "E#0000", "E#0001"] && page.next.is_none(),
        || format!("range from the empty sort key: {got:?} {:?}", page.next),
    )?;
    let empty = store
        .query(Query::prefix(pk, "Z#", 10))
        .await
        .map_err(|e| e.to_string())?;
    ensure(empty.items.is_empty() && empty.next.is_none(), || {
        format!("empty range: {empty:?}")
    })?;
    let zero = store.query(Query::prefix(pk, "E#", 0)).await;
    ensure(matches!(zero, Err(StoreError::Invalid(_))), || {
        format!("zero limit: {zero:?}")
    })
}
