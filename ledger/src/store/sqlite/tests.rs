//! Tests of the SQLite backend: the conformance suite in every state of the overlay, recovery
//! from the journal, schema versions, and the one-process lock.

use std::path::Path;
use std::time::Duration;

use super::*;

fn options(materialize_interval: Duration) -> SqliteOptions {
    SqliteOptions {
        materialize_interval,
        ..SqliteOptions::default()
    }
}

fn put(pk: &str, sk: &str, version: u64, condition: Condition) -> WriteOp {
    WriteOp::Put {
        item: Item {
            key: Key::new(pk, sk),
            version,
            body: format!("{pk}/{sk}/{version}").into_bytes(),
        },
        condition,
    }
}

/// The version of an item, or `None` when it does not exist.
async fn version(store: &SqliteStore, pk: &str, sk: &str) -> Option<u64> {
    store
        .get(Key::new(pk, sk))
        .await
        .expect("read")
        .map(|i| i.version)
}

/// Copies the store's files as they are on disk right now: what a crash would leave behind.
fn crash_copy(from: &Path, to_dir: &Path) -> std::path::PathBuf {
    let dir = from.parent().expect("parent");
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".lock") || name.ends_with("-shm") {
            continue;
        }
        if path.is_dir() {
            // The journal's segments.
            let into = to_dir.join(&name);
            std::fs::create_dir(&into).expect("mkdir");
            for entry in std::fs::read_dir(&path).expect("dir") {
                let file = entry.expect("entry").path();
                std::fs::copy(&file, into.join(file.file_name().expect("name"))).expect("copy");
            }
            continue;
        }
        std::fs::copy(&path, to_dir.join(&name)).expect("copy");
    }
    to_dir.join(from.file_name().expect("name"))
}

#[tokio::test]
async fn conformance_with_writes_in_the_overlay() {
    // The materializer never runs during the suite: every write is answered from the overlay
    // merged with the items table.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open_with(
        &dir.path().join("ledger.db"),
        options(Duration::from_secs(3600)),
    )
    .expect("open");
    crate::store::conformance::run_all(&store)
        .await
        .expect("conformance");
}

#[tokio::test]
async fn conformance_with_writes_materialized() {
    // The materializer runs all the time: the same answers from the items table.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open_with(
        &dir.path().join("ledger.db"),
        options(Duration::from_millis(1)),
    )
    .expect("open");
    crate::store::conformance::run_all(&store)
        .await
        .expect("conformance");
}

#[tokio::test]
async fn queries_merge_overlay_and_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open_with(
        &dir.path().join("ledger.db"),
        options(Duration::from_secs(3600)),
    )
    .expect("open");
    let ops = (0..10)
        .map(|i| put("p", &format!("k{i:02}"), 1, Condition::NotExists))
        .collect();
    store.transact_write(ops).await.expect("write");
    store
        .materialize_now(Duration::from_secs(10))
        .expect("materialize");
    // In the overlay now: two deletes, one update, two new keys around and between.
    let ops = vec![
        WriteOp::Delete {
            key: Key::new("p", "k03"),
            condition: Condition::Version(1),
        },
        WriteOp::Delete {
            key: Key::new("p", "k04"),
            condition: Condition::Version(1),
        },
        put("p", "k05", 2, Condition::Version(1)),
        put("p", "k00a", 1, Condition::NotExists),
        put("p", "k99", 1, Condition::NotExists),
    ];
    store.transact_write(ops).await.expect("write");
    let expected = [
        "k00", "k00a", "k01", "k02", "k05", "k06", "k07", "k08", "k09", "k99",
    ];
    for descending in [false, true] {
        for limit in [1, 2, 3, 7, 20] {
            let mut seen = Vec::new();
            let mut query = Query {
                descending,
                ..Query::prefix("p", "k", limit)
            };
            loop {
                let page = store.query(query.clone()).await.expect("query");
                assert!(page.items.len() <= limit);
                seen.extend(page.items.iter().map(|i| (i.key.sk.clone(), i.version)));
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
            let mut want: Vec<(String, u64)> = expected
                .iter()
                .map(|sk| (sk.to_string(), if *sk == "k05" { 2 } else { 1 }))
                .collect();
            if descending {
                want.reverse();
            }
            assert_eq!(seen, want, "limit {limit}, descending {descending}");
        }
    }
}

#[tokio::test]
async fn a_crash_before_materializing_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.db");
    let store = SqliteStore::open_with(&path, options(Duration::from_secs(3600))).expect("open");
    store
        .transact_write(vec![put("p", "a", 1, Condition::NotExists)])
        .await
        .expect("write");
    store
        .materialize_now(Duration::from_secs(10))
        .expect("materialize");
    store
        .transact_write(vec![
            put("p", "a", 2, Condition::Version(1)),
            put("p", "b", 1, Condition::NotExists),
        ])
        .await
        .expect("write");
    store
        .transact_write(vec![
            WriteOp::Delete {
                key: Key::new("p", "b"),
                condition: Condition::Version(1),
            },
            put("p", "c", 1, Condition::NotExists),
        ])
        .await
        .expect("write");
    // The last two transactions are only in the journal (and the overlay).
    let copy_dir = tempfile::tempdir().expect("tempdir");
    let copy = crash_copy(&path, copy_dir.path());
    let reopened =
        SqliteStore::open_with(&copy, options(Duration::from_secs(3600))).expect("reopen");
    let got = reopened
        .get_many(vec![
            Key::new("p", "a"),
            Key::new("p", "b"),
            Key::new("p", "c"),
        ])
        .await
        .expect("read");
    let versions: Vec<Option<u64>> = got.iter().map(|i| i.as_ref().map(|i| i.version)).collect();
    assert_eq!(versions, vec![Some(2), None, Some(1)]);
    // Replayed into the items table: it holds the journal's last record, and the next write
    // continues the journal. (A copy of the files shows what the open store wrote.)
    let look_dir = tempfile::tempdir().expect("tempdir");
    let look = crash_copy(&copy, look_dir.path());
    let applied = items::applied_seq(&Connection::open(&look).expect("items")).expect("applied");
    assert_eq!(applied, 3);
    let (_, recovered) =
        Journal::open(&sibling(&look, "-txlog"), applied, JOURNAL_SEGMENT_BYTES).expect("journal");
    assert!(recovered.records.is_empty());
    assert_eq!(recovered.last_seq, Some(3));
    reopened
        .transact_write(vec![put("p", "c", 2, Condition::Version(1))])
        .await
        .expect("write after replay");
    drop(reopened);
    let again = SqliteStore::open(&copy).expect("reopen again");
    assert_eq!(version(&again, "p", "c").await, Some(2));
}

#[tokio::test]
async fn schema_is_versioned_and_the_files_have_one_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.db");
    let store = SqliteStore::open(&path).expect("open");
    assert!(
        matches!(SqliteStore::open(&path), Err(StoreError::Unavailable(m)) if m.contains("in use"))
    );
    let item = Item {
        key: Key::new("p", "s"),
        version: 1,
        body: b"x".to_vec(),
    };
    store
        .transact_write(vec![WriteOp::Put {
            item: item.clone(),
            condition: Condition::NotExists,
        }])
        .await
        .expect("write");
    drop(store);
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        store.get(Key::new("p", "s")).await.expect("get"),
        Some(item)
    );
    drop(store);
    let conn = Connection::open(&path).expect("raw");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(version, schema::ITEMS_SCHEMA_VERSION);
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .expect("pragma");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    // A fresh connection's synchronous is the default; the store sets FULL (2) on its own.
    assert!(sync >= 1);
    conn.execute_batch(&format!(
        "PRAGMA user_version = {}",
        schema::ITEMS_SCHEMA_VERSION + 1
    ))
    .expect("bump");
    drop(conn);
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_file_of_schema_2_moves_its_audit_items_to_their_own_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.db");
    {
        // A file as schema version 2 left it: audit items in `items`, guarded by triggers.
        let conn = Connection::open(&path).expect("raw");
        migrate(&conn, &ITEMS_MIGRATIONS[..2], "items").expect("schema 2");
        for (pk, sk) in [("AUDIT#w-1", "B#1"), ("AUDIT#w-1", "C#1"), ("AUDIT", "w-1")] {
            conn.execute(
                "INSERT INTO items (pk, sk, version, body) VALUES (?1, ?2, 1, ?3)",
                rusqlite::params![pk, sk, format!("{pk}/{sk}").into_bytes()],
            )
            .expect("audit row");
        }
        conn.execute(
            "INSERT INTO items (pk, sk, version, body) VALUES ('ACCT#1', 'H', 3, x'01')",
            [],
        )
        .expect("ledger row");
    }
    let store = SqliteStore::open(&path).expect("open migrates");
    for (pk, sk) in [("AUDIT#w-1", "B#1"), ("AUDIT#w-1", "C#1"), ("AUDIT", "w-1")] {
        let item = store.get(Key::new(pk, sk)).await.expect("get");
        assert_eq!(
            item.map(|i| i.body),
            Some(format!("{pk}/{sk}").into_bytes())
        );
    }
    let page = store
        .query(Query::prefix("AUDIT#w-1", "", 10))
        .await
        .expect("query");
    let sks: Vec<&str> = page.items.iter().map(|i| i.key.sk.as_str()).collect();
    assert_eq!(sks, ["B#1", "C#1"]);
    assert_eq!(version(&store, "ACCT#1", "H").await, Some(3));
    // A new audit item after the move lands beside the moved ones, and conditions see both.
    let taken = store
        .transact_write(vec![put("AUDIT#w-1", "B#1", 1, Condition::NotExists)])
        .await;
    assert!(
        matches!(taken, Err(StoreError::ConditionFailed { index: 0 })),
        "{taken:?}"
    );
    store
        .transact_write(vec![put("AUDIT#w-1", "B#2", 1, Condition::NotExists)])
        .await
        .expect("next block");
    drop(store);
    let conn = Connection::open(&path).expect("raw");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(count("SELECT count(*) FROM audit_items"), 4);
    assert_eq!(
        count("SELECT count(*) FROM items WHERE substr(pk, 1, 5) = 'AUDIT'"),
        0
    );
    assert_eq!(count("SELECT count(*) FROM items"), 1);
    // The old triggers are gone; the new table's refuse any change.
    assert_eq!(
        count("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'items'"),
        0
    );
    let err = conn
        .execute("UPDATE audit_items SET version = 2", [])
        .expect_err("append-only");
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[test]
fn writers_set_full_synchronous_and_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = Connection::open(dir.path().join("x.db")).expect("open");
    configure(&conn, Role::ItemsWriter).expect("configure");
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(sync, 2, "synchronous=FULL");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_journal_left_by_an_earlier_build_is_replayed_then_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.db");
    drop(SqliteStore::open(&path).expect("create"));
    // What a crash under a build with the SQLite journal left: a row the items table lacks.
    let legacy = sibling(&path, "-journal.db");
    {
        let conn = Connection::open(&legacy).expect("legacy journal");
        conn.execute_batch("CREATE TABLE journal (seq INTEGER PRIMARY KEY, ops BLOB NOT NULL)")
            .expect("schema");
        let ops = journal::encode(&[put("p", "a", 1, Condition::NotExists)]);
        conn.execute(
            "INSERT INTO journal (seq, ops) VALUES (1, ?1)",
            rusqlite::params![ops],
        )
        .expect("row");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(version(&store, "p", "a").await, Some(1));
    assert!(!legacy.exists());
    store
        .transact_write(vec![put("p", "a", 2, Condition::Version(1))])
        .await
        .expect("write after replay");
    drop(store);
    let store = SqliteStore::open(&path).expect("reopen again");
    assert_eq!(version(&store, "p", "a").await, Some(2));
}

#[test]
fn the_committer_s_table_reads_answer_its_conditions_only_until_a_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open_with(
        &dir.path().join("ledger.db"),
        options(Duration::from_secs(3600)),
    )
    .expect("open");
    let other = store.clone();
    // The committer's thread: its reads are kept for its own condition checks.
    std::thread::spawn(move || {
        crate::store::allow_blocking_here();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let fresh = |sk: &str| put("p", sk, 1, Condition::NotExists);
            // Read as absent, then created: the kept read answers the check.
            assert_eq!(store.get(Key::new("p", "a")).await.expect("read"), None);
            store.transact_write(vec![fresh("a")]).await.expect("write");
            // Read as absent, then created by another writer: that write makes the kept read
            // stale, so the check asks the table and refuses.
            assert_eq!(store.get(Key::new("p", "b")).await.expect("read"), None);
            let writer = other.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime")
                    .block_on(writer.transact_write(vec![fresh("b")]))
            })
            .join()
            .expect("other writer")
            .expect("other write");
            // Out of the overlay too, so only the table knows it.
            store
                .materialize_now(Duration::from_secs(10))
                .expect("materialize");
            assert!(matches!(
                store.transact_write(vec![fresh("b")]).await,
                Err(StoreError::ConditionFailed { index: 0 })
            ));
            // Materialized, then read: present in the table, at its version.
            store
                .materialize_now(Duration::from_secs(10))
                .expect("materialize");
            let read = store.get(Key::new("p", "b")).await.expect("read");
            assert_eq!(read.map(|i| i.version), Some(1));
            assert!(matches!(
                store.transact_write(vec![fresh("b")]).await,
                Err(StoreError::ConditionFailed { index: 0 })
            ));
            store
                .transact_write(vec![put("p", "b", 2, Condition::Version(1))])
                .await
                .expect("write at the version read");
        });
    })
    .join()
    .expect("committer thread");
}

/// The nice values of this process's materializer threads (Linux names threads in `comm`,
/// cut to 15 bytes).
#[cfg(target_os = "linux")]
fn materializer_nice_values() -> Vec<i32> {
    let mut values = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("tasks") {
        let dir = task.expect("task").path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended
        };
        if comm.trim_end() != "sqlite-material" {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Fields after the command's closing parenthesis start at the third (state); nice is
        // the nineteenth.
        let after = stat.rsplit_once(')').expect("stat").1;
        let nice = after.split_whitespace().nth(19 - 3).expect("nice field");
        values.push(nice.parse().expect("a number"));
    }
    values
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_materializer_runs_below_the_committers_priority() {
    let me = Some(rustix::thread::gettid());
    let mine = rustix::process::getpriority_process(me).expect("nice");
    let expected = (mine + MATERIALIZER_NICE_STEPS).min(NICE_MAX);
    let dir = tempfile::tempdir().expect("tempdir");
    // Opened on this thread, as the service opens it on the thread the committer will use.
    let store = SqliteStore::open(&dir.path().join("db")).expect("open");
    // The thread lowers its own priority as it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !materializer_nice_values().contains(&expected) {
        assert!(
            std::time::Instant::now() < deadline,
            "no materializer thread at nice {expected}: {:?}",
            materializer_nice_values()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The opening thread keeps the priority it had.
    assert_eq!(
        rustix::process::getpriority_process(me).expect("nice"),
        mine
    );
    drop(store);
}

#[cfg(target_os = "linux")]
#[test]
fn a_materializer_below_a_low_priority_opener_runs_at_the_lowest_priority() {
    // Opened on a thread of its own at nice 15: 10 steps down is past 19, the lowest.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let store = std::thread::spawn(move || {
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), 15).expect("nice");
        SqliteStore::open(&path).expect("open")
    })
    .join()
    .expect("opener");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !materializer_nice_values().contains(&NICE_MAX) {
        assert!(
            std::time::Instant::now() < deadline,
            "no materializer thread at nice {NICE_MAX}: {:?}",
            materializer_nice_values()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(store);
}
