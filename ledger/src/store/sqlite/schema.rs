//! The items file: its schema and connection settings.
//!
//! `items` is the DynamoDB-shaped table every read is answered from, and `audit_items` its
//! counterpart for the audit log's partitions (see [`ITEMS_MIGRATIONS`]); the journal, which
//! makes a write durable before it gets here, is a log of its own (`journal`). The file is in WAL mode
//! with `synchronous=FULL`, has a schema version (`PRAGMA user_version`), and a build refuses a
//! file newer than it knows.

use std::time::Duration;

use rusqlite::Connection;

use super::unavailable;
use crate::store::StoreError;

/// How long a connection waits for a lock held by another connection before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache per connection, in KiB.
pub const SQLITE_CACHE_KIB: i64 = 64 * 1024;

/// Migrations of the items file.
///
/// 2: the audit log's items (partition keys starting with `AUDIT`) are append-only in the
/// schema itself: triggers refuse to update or delete them, whoever asks. (`INSERT OR REPLACE`
/// deletes without firing delete triggers unless `recursive_triggers` is on, which `configure`
/// turns on; the materializer writes with an upsert, which fires the update trigger.)
///
/// 3: the audit log's items move to a table of their own, `audit_items`, whose triggers refuse
/// every update and delete. `items` is `WITHOUT ROWID`: each row sits in the primary key's
/// b-tree, interior pages included, and comparing a key with a row that spills to overflow
/// pages reads the whole row. An audit block is kilobytes, so every seek that passed one read
/// it, and finding where the next block goes read several. In `audit_items` (a rowid table) the
/// key's index holds keys only, and a body is read when it is asked for.
pub const ITEMS_MIGRATIONS: &[&str] = &[
    "CREATE TABLE items (
        pk TEXT NOT NULL,
        sk TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version > 0),
        body BLOB NOT NULL,
        PRIMARY KEY (pk, sk)
    ) WITHOUT ROWID;
    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (name, value) VALUES ('applied_seq', 0)",
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON items
        WHEN substr(OLD.pk, 1, 5) = 'AUDIT'
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: no update'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON items
        WHEN substr(OLD.pk, 1, 5) = 'AUDIT'
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: no delete'); END",
    "CREATE TABLE audit_items (
        pk TEXT NOT NULL,
        sk TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version > 0),
        body BLOB NOT NULL,
        UNIQUE (pk, sk)
    );
    INSERT INTO audit_items (pk, sk, version, body)
        SELECT pk, sk, version, body FROM items WHERE substr(pk, 1, 5) = 'AUDIT' ORDER BY pk, sk;
    DROP TRIGGER audit_no_update;
    DROP TRIGGER audit_no_delete;
    DELETE FROM items WHERE substr(pk, 1, 5) = 'AUDIT';
    CREATE TRIGGER audit_items_no_update BEFORE UPDATE ON audit_items
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: no update'); END;
    CREATE TRIGGER audit_items_no_delete BEFORE DELETE ON audit_items
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: no delete'); END",
];

/// The schema version of the items file this build writes.
pub const ITEMS_SCHEMA_VERSION: i64 = ITEMS_MIGRATIONS.len() as i64;

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Read-only access to the items file.
    Reader,
    /// The materializer: the only writer of the items file.
    ItemsWriter,
}

/// Applies the settings of a role.
pub fn configure(conn: &Connection, role: Role) -> Result<(), StoreError> {
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)
        .map_err(unavailable)?;
    conn.pragma_update(None, "cache_size", -SQLITE_CACHE_KIB)
        .map_err(unavailable)?;
    conn.set_prepared_statement_cache_capacity(32);
    // A REPLACE conflict then fires delete triggers: the audit log's refuse it.
    conn.pragma_update(None, "recursive_triggers", "ON")
        .map_err(unavailable)?;
    if role == Role::Reader {
        return Ok(());
    }
    // WAL is a property of the file; FULL syncs the log at every commit.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(unavailable)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "journal_mode is {mode}, not wal"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(unavailable)?;
    // The audit triggers make every write statement on their table keep a statement journal
    // (the pages it changed, to undo it alone if a trigger aborts it); in memory rather than a
    // temporary file, so the materializer's upserts make no extra system calls. It holds one
    // statement's pages at a time.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(unavailable)?;
    Ok(())
}

/// Brings a file's schema up to date.
pub fn migrate(conn: &Connection, migrations: &[&str], what: &str) -> Result<(), StoreError> {
    let latest = migrations.len() as i64;
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(unavailable)?;
    if current > latest {
        return Err(StoreError::Invalid(format!(
            "the {what} file has schema version {current}; this build knows up to {latest}"
        )));
    }
    for (i, sql) in migrations
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .map_err(unavailable)?;
    }
    Ok(())
}
