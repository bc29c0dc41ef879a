//! The audit log on both stores: records commit with their commands, sequences have no gap,
//! the store refuses to change an audit item, and verification catches each kind of tampering
//! and names the place.

use std::sync::Arc;

use audit::checkpoint::PublicKeys;
use audit::verify::Place;
use ledger::audit_log::block::Block;
use ledger::audit_log::{CheckpointSigner, LocalCheckpointSigner};
use ledger::store::dynamodb::{DynamoConfig, DynamoStore};
use ledger::store::sqlite::SqliteStore;
use ledger::store::{Condition, Item, Key, Query, Store, StoreError, WriteOp};
use ledger::{
    BalanceConstraint, Currency, IdempotencyKey, Ledger, LedgerConfig, NewAccount, Side,
    SystemClock, TenantId,
};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    Dynamo,
}

/// A store of `kind`, and how to open it again.
struct Place_ {
    kind: Kind,
    dir: tempfile::TempDir,
    table: String,
}

impl Place_ {
    fn new(kind: Kind) -> Place_ {
        Place_ {
            kind,
            dir: tempfile::tempdir().unwrap(),
            table: format!(
                "audit-{}",
                ulid::Ulid::generate().to_string().to_lowercase()
            ),
        }
    }

    fn dynamo_config(&self) -> DynamoConfig {
        DynamoConfig {
            table: self.table.clone(),
            region: Some("us-east-1".into()),
            endpoint: Some(std::env::var("STRONGROOM_TEST_DYNAMODB_ENDPOINT").expect(
                "STRONGROOM_TEST_DYNAMODB_ENDPOINT is not set: run the tests with tests/run.sh",
            )),
            ..DynamoConfig::default()
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self.kind {
            Kind::Sqlite => Arc::new(SqliteStore::open(&self.dir.path().join("l.db")).unwrap()),
            Kind::Dynamo => {
                let store = DynamoStore::connect(&self.dynamo_config()).await.unwrap();
                store.create_table().await.unwrap();
                Arc::new(store)
            }
        }
    }
}

fn config() -> LedgerConfig {
    LedgerConfig {
        hold_sweep_interval: None,
        ..LedgerConfig::default()
    }
}

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

/// Writes a log: a stream with accounts, a transfer, a refused transfer and a read; a
/// checkpoint every 3 records and a last one at stop. Returns the signer.
async fn write_log(place: &Place_) -> (Arc<dyn CheckpointSigner>, String) {
    let signer: Arc<dyn CheckpointSigner> = Arc::new(LocalCheckpointSigner::ephemeral().unwrap());
    let mut cfg = config();
    cfg.audit.checkpoint_records = 3;
    let ledger = Ledger::start_with_signer(
        place.open().await,
        Arc::new(SystemClock),
        cfg,
        None,
        Some(signer.clone()),
    );
    let usd = Currency::from_code("USD").unwrap();
    let new = || {
        NewAccount::new(
            usd,
            Side::Debit,
            BalanceConstraint::None,
            None,
            None,
            Default::default(),
        )
        .unwrap()
    };
    let a = ledger
        .create_account(&tenant(), key("a"), new())
        .await
        .unwrap()
        .value;
    let b = ledger
        .create_account(&tenant(), key("b"), new())
        .await
        .unwrap()
        .value;
    ledger
        .create_transfer(&tenant(), key("t"), crate::plain(a.id, b.id, 5, usd))
        .await
        .unwrap();
    let missing = ledger
        .create_transfer(
            &tenant(),
            key("t2"),
            crate::plain(a.id, crate::unknown_account(), 5, usd),
        )
        .await;
    assert!(missing.is_err());
    let draft = audit::Draft::success(
        "account.read",
        audit::Actor::default(),
        audit::Origin::default(),
    )
    .resource("account", a.id);
    ledger.audit_append(draft).await.unwrap();
    for i in 0..10 {
        let draft = audit::Draft::success(
            "account.read",
            audit::Actor::default(),
            audit::Origin::default(),
        )
        .resource("n", i);
        ledger.audit_append(draft).await.unwrap();
    }
    let (stream, _) = ledger.audit_stream().unwrap();
    ledger.shutdown().await;
    (signer, stream)
}

async fn verify(
    place: &Place_,
    signer: &Arc<dyn CheckpointSigner>,
) -> Vec<Result<audit::verify::StreamSummary, audit::verify::Failure>> {
    let keys = {
        let mut k = PublicKeys::new();
        k.add(signer.public_key().await.unwrap()).unwrap();
        k
    };
    // The verifier's own stream is signed by another key: leave it out.
    let mut cfg = config();
    cfg.audit.enabled = false;
    let ledger = Ledger::start(place.open().await, Arc::new(SystemClock), cfg);
    let report = ledger.audit_verify(&keys, &mut |_, _| {}).await.unwrap();
    ledger.shutdown().await;
    report.streams
}

async fn records_commit_with_their_commands(kind: Kind) {
    let place = Place_::new(kind);
    let (signer, stream) = write_log(&place).await;
    let mut cfg = config();
    cfg.audit.enabled = false;
    let ledger = Ledger::start(place.open().await, Arc::new(SystemClock), cfg);
    let filter = ledger::audit_log::read::EventFilter {
        stream: Some(stream.clone()),
        ..Default::default()
    };
    let page = ledger.audit_events(&filter, 500, None).await.unwrap();
    let actions: Vec<&str> = page.records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        &actions[..6],
        [
            "service.start",
            "account.create",
            "account.create",
            "transfer.create",
            "transfer.create",
            "account.read"
        ],
        "{actions:?}"
    );
    assert_eq!(actions.last(), Some(&"service.stop"));
    let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(page.records[3].outcome, audit::Outcome::Success);
    // What each request named, then what it made, then its idempotency key.
    let resources = |i: usize| page.records[i].resources.clone();
    let (a, b) = (resources(1)[0].clone(), resources(2)[0].clone());
    assert!(a.starts_with("account:acct_"), "{a}");
    assert_eq!(resources(1), [a.clone(), "idempotency-key:a".to_owned()]);
    assert_eq!(resources(2), [b.clone(), "idempotency-key:b".to_owned()]);
    let transfer = resources(3);
    assert_eq!(transfer.len(), 4, "{transfer:?}");
    assert_eq!(transfer[..2], [a.clone(), b]);
    assert!(transfer[2].starts_with("transfer:xfer_"), "{transfer:?}");
    assert_eq!(transfer[3], "idempotency-key:t");
    assert_eq!(page.records[4].outcome, audit::Outcome::Failure);
    assert_eq!(
        resources(4),
        [
            a,
            format!("account:{}", crate::unknown_account()),
            "idempotency-key:t2".to_owned()
        ]
    );
    assert!(page.records[4].reason.is_some());
    assert_eq!(page.records[3].reason, None);
    assert_eq!(page.records[1].actor.tenant.as_deref(), Some("acme"));
    ledger.shutdown().await;
    let streams = verify(&place, &signer).await;
    let ours = streams
        .iter()
        .find(|s| matches!(s, Ok(s) if s.stream == stream))
        .expect("verified");
    let ours = ours.as_ref().unwrap();
    assert_eq!(
        ours.covered, ours.records,
        "the last checkpoint covers the stop"
    );
    assert!(ours.checkpoints >= 2);
}

#[tokio::test]
async fn sqlite_records_commit_with_their_commands() {
    records_commit_with_their_commands(Kind::Sqlite).await;
}

#[tokio::test]
async fn dynamodb_records_commit_with_their_commands() {
    records_commit_with_their_commands(Kind::Dynamo).await;
}

async fn the_store_refuses_to_change_audit_items(kind: Kind) {
    let place = Place_::new(kind);
    let store = place.open().await;
    let k = Key::new("AUDIT#s-1", "B#00000000000000000000");
    let item = |v| Item {
        key: k.clone(),
        version: v,
        body: vec![1, 2, 3],
    };
    store
        .transact_write(vec![WriteOp::Put {
            item: item(1),
            condition: Condition::NotExists,
        }])
        .await
        .unwrap();
    for op in [
        WriteOp::Put {
            item: item(2),
            condition: Condition::Version(1),
        },
        WriteOp::Put {
            item: item(2),
            condition: Condition::None,
        },
        WriteOp::Delete {
            key: k.clone(),
            condition: Condition::None,
        },
        WriteOp::Delete {
            key: k.clone(),
            condition: Condition::Version(1),
        },
    ] {
        let got = store.transact_write(vec![op.clone()]).await;
        assert!(
            matches!(got, Err(StoreError::Invalid(ref why)) if why.contains("append-only")),
            "{op:?}: {got:?}"
        );
    }
    // A second put where one is: the condition fails, nothing changes.
    let again = store
        .transact_write(vec![WriteOp::Put {
            item: Item {
                body: vec![9],
                ..item(1)
            },
            condition: Condition::NotExists,
        }])
        .await;
    assert!(
        matches!(again, Err(StoreError::ConditionFailed { .. })),
        "{again:?}"
    );
    assert_eq!(
        store.get(k.clone()).await.unwrap().unwrap().body,
        vec![1, 2, 3]
    );
    drop(store);
    if let Kind::Sqlite = kind {
        // The schema itself refuses, whoever asks.
        let conn = rusqlite::Connection::open(place.dir.path().join("l.db")).unwrap();
        conn.pragma_update(None, "recursive_triggers", "ON")
            .unwrap();
        // The audit log's items are in their own table, and only there.
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT count(*) FROM audit_items WHERE pk = 'AUDIT#s-1'"),
            1
        );
        assert_eq!(
            count("SELECT count(*) FROM items WHERE substr(pk, 1, 5) = 'AUDIT'"),
            0
        );
        for sql in [
            "UPDATE audit_items SET body = x'00' WHERE pk = 'AUDIT#s-1'",
            "UPDATE audit_items SET version = 2 WHERE pk = 'AUDIT#s-1'",
            "DELETE FROM audit_items WHERE pk = 'AUDIT#s-1'",
            "DELETE FROM audit_items",
            "INSERT OR REPLACE INTO audit_items (pk, sk, version, body) VALUES ('AUDIT#s-1', 'B#00000000000000000000', 1, x'00')",
        ] {
            let err = conn.execute(sql, []).expect_err(sql);
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
    }
}

#[tokio::test]
async fn sqlite_refuses_to_change_audit_items() {
    the_store_refuses_to_change_audit_items(Kind::Sqlite).await;
}

#[tokio::test]
async fn dynamodb_refuses_to_change_audit_items() {
    the_store_refuses_to_change_audit_items(Kind::Dynamo).await;
}

/// Ways to tamper with a written log.
#[derive(Clone, Copy, Debug)]
enum Tamper {
    ChangeField,
    DeleteRecord,
    SwapRecords,
    TruncateTail,
    ForgeCheckpoint,
}

/// Every item of a partition, read straight from the store.
async fn partition(store: &dyn Store, pk: &str) -> Vec<Item> {
    store
        .query(Query::prefix(pk, "", 1000))
        .await
        .unwrap()
        .items
}

/// Replaces an item behind the store's back: as someone with raw access to the database would.
async fn overwrite(place: &Place_, item: Option<Item>, key: &Key) {
    match place.kind {
        Kind::Sqlite => {
            let conn = rusqlite::Connection::open(place.dir.path().join("l.db")).unwrap();
            conn.execute_batch(
                "DROP TRIGGER IF EXISTS audit_items_no_update; \
                 DROP TRIGGER IF EXISTS audit_items_no_delete;",
            )
            .unwrap();
            let changed = match item {
                Some(item) => conn
                    .execute(
                        "UPDATE audit_items SET body = ?3 WHERE pk = ?1 AND sk = ?2",
                        rusqlite::params![key.pk, key.sk, item.body],
                    )
                    .unwrap(),
                None => conn
                    .execute(
                        "DELETE FROM audit_items WHERE pk = ?1 AND sk = ?2",
                        rusqlite::params![key.pk, key.sk],
                    )
                    .unwrap(),
            };
            assert_eq!(changed, 1, "{key:?} is not in the file");
        }
        Kind::Dynamo => {
            use aws_sdk_dynamodb::types::AttributeValue;
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(place.dynamo_config().endpoint.unwrap())
                .load()
                .await;
            let client = aws_sdk_dynamodb::Client::new(&config);
            match item {
                Some(item) => {
                    client
                        .put_item()
                        .table_name(&place.table)
                        .item("pk", AttributeValue::S(key.pk.clone()))
                        .item("sk", AttributeValue::S(key.sk.clone()))
                        .item("v", AttributeValue::N(item.version.to_string()))
                        .item(
                            "b",
                            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(item.body)),
                        )
                        .send()
                        .await
                        .unwrap();
                }
                None => {
                    client
                        .delete_item()
                        .table_name(&place.table)
                        .key("pk", AttributeValue::S(key.pk.clone()))
                        .key("sk", AttributeValue::S(key.sk.clone()))
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
    }
}

fn encode_block(block: &Block) -> Vec<u8> {
    ledger::audit_log::block::encode(block)
}

async fn tamper_is_caught(kind: Kind, tamper: Tamper) {
    let place = Place_::new(kind);
    let (signer, stream) = write_log(&place).await;
    let store = place.open().await;
    let items = partition(&*store, &format!("AUDIT#{stream}")).await;
    drop(store);
    let blocks: Vec<(Item, Block)> = items
        .iter()
        .filter(|i| i.key.sk.starts_with("B#"))
        .map(|i| (i.clone(), Block::decode(i).unwrap()))
        .collect();
    // The block holding record 5 (the read), which a checkpoint covers.
    let (item, block) = blocks
        .iter()
        .find(|(_, b)| b.first_seq <= 5 && 5 < b.first_seq + b.records.len() as u64)
        .unwrap()
        .clone();
    let at = (5 - block.first_seq) as usize;
    let expected: Box<dyn Fn(&Place) -> bool> = match tamper {
        Tamper::ChangeField => {
            let mut block = block.clone();
            let text = String::from_utf8(block.records[at].record.clone()).unwrap();
            block.records[at].record = text
                .replacen("account.read", "account.list", 1)
                .into_bytes();
            overwrite(
                &place,
                Some(Item {
                    body: encode_block(&block),
                    ..item.clone()
                }),
                &item.key,
            )
            .await;
            Box::new(|p| *p == Place::Record(5))
        }
        Tamper::DeleteRecord => {
            let mut block = block.clone();
            block.records.remove(at);
            overwrite(
                &place,
                Some(Item {
                    body: encode_block(&block),
                    ..item.clone()
                }),
                &item.key,
            )
            .await;
            Box::new(|p| matches!(p, Place::Records { from: 5, .. }))
        }
        Tamper::SwapRecords => {
            // Records 5 and 6 (appends are one per batch, so they may sit in two blocks).
            let (item6, block6) = blocks
                .iter()
                .find(|(_, b)| b.first_seq <= 6 && 6 < b.first_seq + b.records.len() as u64)
                .unwrap()
                .clone();
            if item6.key == item.key {
                let mut block = block.clone();
                block.records.swap(at, at + 1);
                overwrite(
                    &place,
                    Some(Item {
                        body: encode_block(&block),
                        ..item.clone()
                    }),
                    &item.key,
                )
                .await;
            } else {
                let (mut b5, mut b6) = (block.clone(), block6.clone());
                let i6 = (6 - b6.first_seq) as usize;
                std::mem::swap(&mut b5.records[at], &mut b6.records[i6]);
                overwrite(
                    &place,
                    Some(Item {
                        body: encode_block(&b5),
                        ..item.clone()
                    }),
                    &item.key,
                )
                .await;
                overwrite(
                    &place,
                    Some(Item {
                        body: encode_block(&b6),
                        ..item6.clone()
                    }),
                    &item6.key,
                )
                .await;
            }
            Box::new(|p| {
                matches!(
                    p,
                    Place::Records { from: 5, .. } | Place::Record(5) | Place::Record(6)
                )
            })
        }
        Tamper::TruncateTail => {
            let (last, _) = blocks.last().unwrap().clone();
            overwrite(&place, None, &last.key).await;
            Box::new(|p| *p == Place::Stream)
        }
        Tamper::ForgeCheckpoint => {
            let cp = items
                .iter()
                .find(|i| i.key.sk.starts_with("C#"))
                .unwrap()
                .clone();
            let mut signed = audit::checkpoint::SignedCheckpoint::decode(&cp.body[1..]).unwrap();
            signed.checkpoint.root[0] ^= 1;
            let mut body = vec![cp.body[0]];
            body.extend(signed.encode());
            overwrite(&place, Some(Item { body, ..cp.clone() }), &cp.key).await;
            let size = signed.checkpoint.size;
            Box::new(move |p| *p == Place::Checkpoint(size))
        }
    };
    let streams = verify(&place, &signer).await;
    let failure = streams
        .iter()
        .find_map(|s| s.as_ref().err().filter(|f| f.stream == stream))
        .unwrap_or_else(|| panic!("{tamper:?} on {kind:?} was not caught: {streams:?}"));
    assert!(
        expected(&failure.place),
        "{tamper:?} on {kind:?}: {failure}"
    );
}

#[tokio::test]
async fn sqlite_tampering_is_caught_and_placed() {
    for tamper in [
        Tamper::ChangeField,
        Tamper::DeleteRecord,
        Tamper::SwapRecords,
        Tamper::TruncateTail,
        Tamper::ForgeCheckpoint,
    ] {
        tamper_is_caught(Kind::Sqlite, tamper).await;
    }
}

#[tokio::test]
async fn dynamodb_tampering_is_caught_and_placed() {
    for tamper in [
        Tamper::ChangeField,
        Tamper::DeleteRecord,
        Tamper::SwapRecords,
        Tamper::TruncateTail,
        Tamper::ForgeCheckpoint,
    ] {
        tamper_is_caught(Kind::Dynamo, tamper).await;
    }
}
