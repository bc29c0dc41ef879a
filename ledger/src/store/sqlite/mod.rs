//! The embedded backend: SQLite, WAL, `synchronous=FULL`, with a journal in front.
//!
//! SQLite's WAL logs whole pages: a transaction that touches twenty accounts spread over the
//! table writes and syncs twenty pages. So a write goes first to a journal, an append-only log
//! of its own (`journal`): one record per transaction holding its writes, synced before the
//! transaction is acknowledged. That sync covers the record's few blocks, whatever the
//! transaction touched. A background materializer then copies the journaled writes into the
//! items table (the DynamoDB-shaped table reads are answered from) in large transactions, where
//! a page touched by a thousand transfers is written once.
//!
//! Until then the writes live in an in-memory [`overlay::Overlay`] that every read consults
//! first, so a write is visible as soon as it is durable. A write is checked (against the
//! overlay and the items table), journaled and published under the one writer lock, on the
//! caller's thread: the committer's, which batches many requests into each transaction. On
//! open, journal records the items table does not hold yet (`meta.applied_seq`) are replayed, so
//! a crash at any point loses nothing that was acknowledged.
//!
//! The overlay is process-local, so one process owns the files: an exclusive lock on
//! `<database>.lock` keeps a second one out.

pub mod items;
pub mod journal;
pub mod overlay;
pub mod schema;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};

use self::journal::{JOURNAL_SEGMENT_BYTES, Journal};
use self::overlay::Overlay;
use self::schema::{ITEMS_MIGRATIONS, Role, configure, migrate};
use super::{
    Condition, Item, Key, KeyHasher, Page, Query, Store, StoreError, StoreLimits, WriteOp,
    check_transaction,
};

/// Most actions in one SQLite transaction. Far above DynamoDB's 100: one atomic batch of 1000
/// transfers writes about 5000 items.
pub const SQLITE_TRANSACTION_ITEMS_MAX: usize = 65_536;
/// Largest item body: SQLite's default blob limit is 1 GB; we keep to 8 MiB.
pub const SQLITE_ITEM_BYTES_MAX: usize = 8 << 20;
/// Default of [`SqliteOptions::write_unit_bytes`]. SQLite does not bill by the KB, but an
/// account head that keeps its newest entries spares the journal, the overlay and the
/// materializer an entry page per account and transaction; a head of up to 512 bytes measured
/// best (`bench/README.md`): 1 KB heads cost batch mode more bytes than the pages they spare.
pub const SQLITE_WRITE_UNIT_BYTES: usize = 512;
/// Read-only connections in the pool.
pub const SQLITE_READERS: usize = 4;
/// Keys the committer's table reads are kept for at most (see `TableReads`).
const TABLE_READS_MAX: usize = 1 << 16;
/// How much lower than the thread that opens the store the materializer thread runs, in nice
/// steps, on Linux (19 is the lowest priority there is). The committer's thread is the serial
/// path every acknowledgement waits on; the materializer's copying can wait, and when it falls
/// behind, the overlay's bound (`overlay_items_max`) makes writers wait for it. Where the threads
/// share few cores (the 2-core benchmark machine), a materializer at the committer's priority
/// preempts it mid-batch; 10 steps down, the kernel gives it about a tenth of a normal thread's
/// share of a busy core, and all of an idle one (`bench/README.md`).
pub const MATERIALIZER_NICE_STEPS: i32 = 10;
/// The lowest priority: the largest nice value.
#[cfg(target_os = "linux")]
const NICE_MAX: i32 = 19;

/// Bounds of the journal and the overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How often the materializer copies the overlay into the items table.
    pub materialize_interval: Duration,
    /// Overlay items that wake the materializer before its interval.
    pub materialize_items: usize,
    /// Overlay items beyond which writers wait for the materializer (bounds memory).
    pub overlay_items_max: usize,
    /// Size of a journal segment file.
    pub journal_segment_bytes: u64,
    /// How many bytes an account head may grow to, rounded up, with the newest entries it
    /// keeps ([`StoreLimits::write_unit_bytes`]); zero: heads keep no entries.
    pub write_unit_bytes: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            materialize_interval: Duration::from_millis(500),
            materialize_items: 100_000,
            overlay_items_max: 1_000_000,
            journal_segment_bytes: JOURNAL_SEGMENT_BYTES,
            write_unit_bytes: SQLITE_WRITE_UNIT_BYTES,
        }
    }
}

/// A SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    writer: Mutex<Writer>,
    shared: Arc<Shared>,
    /// What the committer's last read found in the items table (see [`TableReads`]).
    table_reads: Mutex<TableReads>,
    kick: SyncSender<()>,
    materializer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held for the life of the store: one process owns the files.
    _lock: File,
}

/// What the writer, the readers and the materializer thread share.
#[derive(Debug)]
struct Shared {
    options: SqliteOptions,
    overlay: RwLock<Overlay>,
    /// Journal position the items table holds; records up to it can go.
    applied: AtomicU64,
    /// Signalled after each materialization, for writers waiting for room.
    room: (Mutex<()>, Condvar),
    stop: AtomicBool,
    /// Writes published so far.
    written: AtomicU64,
}

/// The versions (`None`: absent) the committer's last read found in the items table, for keys
/// the overlay did not hold, and how many writes had been published when it began. Until the
/// next write, the table's answer for those keys stands: only a write changes whether a key
/// exists and at which version, and a write goes to the overlay first (the materializer copies
/// it to the table before the overlay lets it go). So the check of a transaction's conditions,
/// right after the committer read its items, need not ask SQLite again: the keys of fresh
/// idempotency records, read as absent, are most of what it would ask.
#[derive(Debug, Default)]
struct TableReads {
    written: u64,
    versions: std::collections::HashMap<Key, Option<u64>, KeyHasher>,
}

impl Shared {
    fn overlay(&self) -> std::sync::RwLockReadGuard<'_, Overlay> {
        self.overlay.read().unwrap_or_else(|p| p.into_inner())
    }

    fn overlay_mut(&self) -> std::sync::RwLockWriteGuard<'_, Overlay> {
        self.overlay.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Everything a write needs, under one lock: a write's conditions are checked, its journal
/// record synced and its items published in the overlay before the next write is checked.
#[derive(Debug)]
struct Writer {
    /// A read connection to the items table, for condition checks.
    items: Connection,
    /// The journal; only this writer appends to it.
    journal: Journal,
    next_seq: u64,
}

pub(crate) fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

fn read_only(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(unavailable)?;
    configure(&conn, Role::Reader)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` with default options.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Opens the store: takes the lock, migrates both files, replays the journal, starts the
    /// materializer.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let lock_path = sibling(path, ".lock");
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|_| {
            StoreError::Unavailable(format!("{} is in use by another process", path.display()))
        })?;
        let mut items_writer = Connection::open(path).map_err(unavailable)?;
        configure(&items_writer, Role::ItemsWriter)?;
        migrate(&items_writer, ITEMS_MIGRATIONS, "items")?;
        let (journal, applied, next_seq) = recover(path, &mut items_writer, &options)?;
        let readers = (0..SQLITE_READERS)
            .map(|_| read_only(path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (kick, kicked) = sync_channel(1);
        let shared = Arc::new(Shared {
            options,
            overlay: RwLock::new(Overlay::default()),
            applied: AtomicU64::new(applied),
            room: (Mutex::new(()), Condvar::new()),
            stop: AtomicBool::new(false),
            written: AtomicU64::new(0),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sqlite-materializer".into())
                .spawn(move || materializer(&shared, items_writer, kicked))
                .map_err(|e| StoreError::Unavailable(format!("materializer thread: {e}")))?
        };
        let writer = Mutex::new(Writer {
            items: read_only(path)?,
            journal,
            next_seq,
        });
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                readers,
                next_reader: AtomicUsize::new(0),
                writer,
                shared,
                table_reads: Mutex::new(TableReads::default()),
                kick,
                materializer: Mutex::new(Some(thread)),
                _lock: lock,
            }),
        })
    }

    /// The items file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Waits until the materializer copied everything journaled so far into the items table
    /// (at most `timeout`); for tests and operators.
    pub fn materialize_now(&self, timeout: Duration) -> Result<(), StoreError> {
        let deadline = std::time::Instant::now() + timeout;
        let shared = &self.inner.shared;
        let mut guard = shared.room.0.lock().unwrap_or_else(|p| p.into_inner());
        while !shared.overlay().is_empty() {
            if std::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(
                    "the materializer did not catch up in time".into(),
                ));
            }
            let _ = self.inner.kick.try_send(());
            let (g, _) = shared
                .room
                .1
                .wait_timeout(guard, Duration::from_millis(20))
                .unwrap_or_else(|p| p.into_inner());
            guard = g;
        }
        Ok(())
    }

    async fn with_reader<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let n = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let mut conn = inner.readers[n].lock().unwrap_or_else(|p| p.into_inner());
            f(&inner, &mut conn)
        })
        .await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Every write returned before the last handle went; the materializer copies everything
        // into the items table.
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.kick.try_send(());
        let thread = self
            .materializer
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// Opens the journal and replays the records the items table does not hold; returns the
/// journal, the position the items table now holds and the next record's sequence.
///
/// A SQLite journal (`<db>-journal.db`) left by an earlier build is replayed first, then
/// removed.
fn recover(
    path: &Path,
    items_conn: &mut Connection,
    options: &SqliteOptions,
) -> Result<(Journal, u64, u64), StoreError> {
    let legacy = sibling(path, "-journal.db");
    if legacy.exists() {
        let applied = items::applied_seq(items_conn)?;
        replay(items_conn, journal::legacy_rows(&legacy, applied)?)?;
        for suffix in ["", "-wal", "-shm"] {
            let file = sibling(&legacy, suffix);
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::Unavailable(format!(
                        "remove {}: {e}",
                        file.display()
                    )));
                }
                _ => {}
            }
        }
    }
    let applied = items::applied_seq(items_conn)?;
    let (journal, recovered) = Journal::open(
        &sibling(path, "-txlog"),
        applied,
        options.journal_segment_bytes,
    )?;
    replay(items_conn, recovered.records)?;
    let applied = items::applied_seq(items_conn)?;
    let next_seq = recovered.last_seq.unwrap_or(0).max(applied) + 1;
    Ok((journal, applied, next_seq))
}

/// Copies journal records into the items table, in one transaction.
fn replay(items_conn: &mut Connection, records: Vec<(u64, Vec<u8>)>) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let decoded = records
        .iter()
        .map(|(seq, bytes)| journal::decode(*seq, bytes).map(|ops| (*seq, ops)))
        .collect::<Result<Vec<_>, _>>()?;
    items::replay(items_conn, &decoded)?;
    tracing::info!(
        records = decoded.len(),
        applied = items::applied_seq(items_conn)?,
        "replayed the journal into the items table"
    );
    Ok(())
}

/// Copies the overlay into the items table; returns whether there was anything to copy.
fn materialize(shared: &Shared, conn: &mut Connection) -> Result<bool, StoreError> {
    let frozen = shared.overlay_mut().freeze();
    let Some((layer, seq)) = frozen else {
        return Ok(false);
    };
    items::materialize(conn, &layer, seq)?;
    shared.applied.store(seq, Ordering::SeqCst);
    shared.overlay_mut().thaw();
    let _guard = shared.room.0.lock().unwrap_or_else(|p| p.into_inner());
    shared.room.1.notify_all();
    Ok(true)
}

/// The materializer thread: every interval, or when woken, copies the overlay into the items
/// table. On stop it copies everything left, so after a clean stop the items table holds every
/// journal record.
fn materializer(shared: &Shared, mut conn: Connection, kicked: Receiver<()>) {
    lower_priority(MATERIALIZER_NICE_STEPS);
    loop {
        let stopping = match kicked.recv_timeout(shared.options.materialize_interval) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => shared.stop.load(Ordering::SeqCst),
            Err(RecvTimeoutError::Disconnected) => true,
        };
        loop {
            match materialize(shared, &mut conn) {
                Ok(true) if stopping => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "materializing the journal failed; will retry");
                    break;
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// Lowers the calling thread's priority by `steps` nice steps (to the lowest at most): on
/// Linux each thread has its own nice value, and raising it needs no privilege. Elsewhere the
/// call would apply to the whole process, so it is not made.
fn lower_priority(steps: i32) {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let lowered = getpriority_process(me)
            .and_then(|nice| setpriority_process(me, nice.saturating_add(steps).min(NICE_MAX)));
        if let Err(error) = lowered {
            tracing::warn!(%error, "could not lower the materializer thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = steps;
}

/// Writes a transaction: checks its conditions, appends it to the journal as one synced record,
/// and publishes its items in the overlay, all under the writer lock, on the calling
/// thread. The committer calls it on its own thread, so a write costs no hand-off to another
/// thread and back; group commit (one transaction for many requests) is what shares a sync.
fn write(inner: &Inner, ops: Vec<WriteOp>) -> Result<(), StoreError> {
    wait_for_room(inner);
    let mut writer = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
    let writer = &mut *writer;
    check_conditions(inner, writer, &ops)?;
    // A failed append poisons the journal (see `journal`): a record that might have reached the
    // disk is never followed by another.
    let seq = writer.next_seq;
    let shared = &inner.shared;
    let applied = shared.applied.load(Ordering::SeqCst);
    writer.journal.append(seq, &ops, applied)?;
    writer.next_seq += 1;
    let mut overlay = shared.overlay_mut();
    overlay.apply(seq, ops);
    shared.written.fetch_add(1, Ordering::SeqCst);
    if overlay.active_len() >= shared.options.materialize_items {
        let _ = inner.kick.try_send(());
    }
    Ok(())
}

fn wait_for_room(inner: &Inner) {
    let shared = &inner.shared;
    let full = || shared.overlay().len() >= shared.options.overlay_items_max;
    if !full() {
        return;
    }
    let _ = inner.kick.try_send(());
    let mut guard = shared.room.0.lock().unwrap_or_else(|p| p.into_inner());
    while full() {
        let (g, _) = shared
            .room
            .1
            .wait_timeout(guard, Duration::from_millis(10))
            .unwrap_or_else(|p| p.into_inner());
        guard = g;
    }
}

fn check_conditions(inner: &Inner, writer: &mut Writer, ops: &[WriteOp]) -> Result<(), StoreError> {
    let mut unknown: Vec<(usize, &Key)> = Vec::new();
    let mut failed: Option<usize> = None;
    {
        let overlay = inner.shared.overlay();
        for (index, op) in ops.iter().enumerate() {
            let condition = condition_of(op);
            if condition == Condition::None {
                continue;
            }
            // Newest first: the overlay, then the table.
            let current = overlay.lookup(op.key()).map(|v| v.map(|i| i.version));
            match current {
                Some(version) => {
                    if !holds(condition, version) {
                        failed = Some(failed.map_or(index, |f| f.min(index)));
                    }
                }
                None => unknown.push((index, op.key())),
            }
        }
    }
    if !unknown.is_empty() {
        // What the committer just read from the table, if nothing was written since.
        let reads = inner.table_reads.lock().unwrap_or_else(|p| p.into_inner());
        if reads.written == inner.shared.written.load(Ordering::SeqCst) {
            unknown.retain(|(index, key)| match reads.versions.get(*key) {
                Some(version) => {
                    if !holds(condition_of(&ops[*index]), *version) {
                        failed = Some(failed.map_or(*index, |f| f.min(*index)));
                    }
                    false
                }
                None => true,
            });
        }
    }
    if !unknown.is_empty() {
        // Not in the overlay: the items table has the latest value (the materializer writes
        // it there before it drops it from the overlay).
        let keys: Vec<&Key> = unknown.iter().map(|(_, k)| *k).collect();
        let versions = items::versions(&mut writer.items, &keys)?;
        for ((index, _), version) in unknown.iter().zip(versions) {
            if !holds(condition_of(&ops[*index]), version) {
                failed = Some(failed.map_or(*index, |f| f.min(*index)));
            }
        }
    }
    match failed {
        Some(index) => Err(StoreError::ConditionFailed { index }),
        None => Ok(()),
    }
}

fn condition_of(op: &WriteOp) -> Condition {
    match op {
        WriteOp::Put { condition, .. } | WriteOp::Delete { condition, .. } => *condition,
    }
}

fn holds(condition: Condition, version: Option<u64>) -> bool {
    match condition {
        Condition::None => true,
        Condition::NotExists => version.is_none(),
        Condition::Version(expected) => version == Some(expected),
    }
}

/// Runs SQLite work: inline on a thread that may block (the committer's), else on tokio's
/// blocking pool.
async fn run_blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    if super::blocking_allowed() {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
}

fn get_many(
    inner: &Inner,
    conn: &mut Connection,
    keys: Vec<Key>,
) -> Result<Vec<Option<Item>>, StoreError> {
    let mut out: Vec<Option<Item>> = vec![None; keys.len()];
    let mut unknown: Vec<usize> = Vec::new();
    // The committer's reads are kept for its condition checks (see `TableReads`).
    let committer = super::blocking_allowed();
    let written = inner.shared.written.load(Ordering::SeqCst);
    {
        let overlay = inner.shared.overlay();
        for (i, key) in keys.iter().enumerate() {
            match overlay.lookup(key) {
                Some(value) => out[i] = value.cloned(),
                None => unknown.push(i),
            }
        }
    }
    if !unknown.is_empty() {
        let wanted: Vec<&Key> = unknown.iter().map(|&i| &keys[i]).collect();
        for (i, item) in unknown.iter().zip(items::get_all(conn, &wanted)?) {
            out[*i] = item;
        }
    }
    if committer {
        let mut reads = inner.table_reads.lock().unwrap_or_else(|p| p.into_inner());
        // A batch reads in more than one call; a write in between makes the earlier stale.
        if reads.written != written || reads.versions.len() > TABLE_READS_MAX {
            reads.written = written;
            reads.versions.clear();
        }
        reads.versions.extend(
            unknown
                .iter()
                .map(|&i| (keys[i].clone(), out[i].as_ref().map(|item| item.version))),
        );
    }
    Ok(out)
}

fn query(inner: &Inner, conn: &mut Connection, q: &Query) -> Result<Page, StoreError> {
    let (low, high) = items::bounds(q);
    let overlay = inner.shared.overlay().range(&q.pk, &low, &high);
    if low >= high {
        return Ok(Page::default());
    }
    let fetch = q.limit.saturating_add(overlay.len()).saturating_add(1);
    let scanned = items::scan(conn, q, &low, &high, fetch)?;
    Ok(items::merge_page(q, scanned, fetch, overlay))
}

#[async_trait]
impl Store for SqliteStore {
    fn limits(&self) -> StoreLimits {
        StoreLimits {
            transaction_items_max: SQLITE_TRANSACTION_ITEMS_MAX,
            item_bytes_max: SQLITE_ITEM_BYTES_MAX,
            write_unit_bytes: self.inner.shared.options.write_unit_bytes,
        }
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        check_transaction(&ops, self.limits())?;
        if ops.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        run_blocking(move || write(&inner, ops)).await
    }

    async fn get_many(&self, keys: Vec<Key>) -> Result<Vec<Option<Item>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.with_reader(move |inner, conn| get_many(inner, conn, keys))
            .await
    }

    async fn query(&self, q: Query) -> Result<Page, StoreError> {
        if q.limit == 0 {
            return Err(StoreError::Invalid("query limit must be positive".into()));
        }
        self.with_reader(move |inner, conn| query(inner, conn, &q))
            .await
    }

    fn conditions_use_reads(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_reader(|_, conn| {
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
                .map_err(unavailable)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
