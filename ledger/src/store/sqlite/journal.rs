//! The journal: an append-only log with one record per transaction, synced before the
//! transaction is acknowledged.
//!
//! The log is a directory (`<database>-txlog`) of segment files, `{index:016x}.log`, written in
//! index order. A segment is zero-filled to its full size when it is created, so appending to it
//! never changes the file's size or its blocks, and a sync (`fdatasync`) flushes the written data
//! and nothing else. The first block (`JOURNAL_BLOCK_BYTES`) is the segment's header: a magic number, the
//! segment's index and a random salt, with their CRC-32. Records follow; each starts at a block
//! boundary and is written as whole blocks, so the kernel never reads a block back to change
//! part of it:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length, little-endian, never 0 |
//! | 4 | CRC-32 of the segment's salt, the length, the sequence and the payload |
//! | 8 | sequence number, little-endian |
//! | n | payload: the transaction's writes (postcard) |
//!
//! then zeros to the next block. The salt is new each time a segment is (re)used, so a record
//! left from a segment's previous use, or bytes a client chose inside an item body, never pass
//! for a record of this one. Sequence numbers follow one another with no gap, across
//! segments; a record that does not fit in what is left of a segment goes at the start of the
//! next one. Reading stops at the first block that does not hold the next record (zeros, a torn
//! write, a stale record from the segment's previous use): that is where the last sync ended;
//! a segment whose header does not name it holds nothing yet.
//!
//! Records the items table holds (`meta.applied_seq`) are no longer needed. When a segment is
//! full, the segments whose records are all held are released: up to
//! `JOURNAL_FREE_SEGMENTS_MAX` are kept for reuse (renamed `free-{index:016x}.log`), the rest
//! deleted, so the log stops growing. A new or reused segment gets its name and its header, and
//! both are synced, before its first record goes in.
//!
//! Any failure to write or sync poisons the journal: whether the failed write reached the disk
//! is unknown (and after a failed `fsync` the kernel may have dropped the data), so no later
//! write may be acknowledged on top of it. Reopening the store reads the log again.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{Condition, Item, Key, StoreError, WriteOp};

/// Size of a segment file.
pub const JOURNAL_SEGMENT_BYTES: u64 = 16 << 20;
/// Released segments kept for reuse; more are deleted.
pub const JOURNAL_FREE_SEGMENTS_MAX: usize = 4;
/// Records start at multiples of this and are written in whole blocks of it.
pub const JOURNAL_BLOCK_BYTES: u64 = 4096;
/// Length, checksum, sequence.
const HEADER_BYTES: usize = 16;
/// The first bytes of a segment.
const SEGMENT_MAGIC: &[u8; 8] = b"SRJOURN1";
/// Magic, index, salt, CRC-32.
const SEGMENT_HEADER_BYTES: usize = 28;
/// Zeros written at a time when a segment is created.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// One write as the journal stores it.
#[derive(Serialize)]
struct OpRef<'a> {
    pk: &'a str,
    sk: &'a str,
    /// Version and body of a put; `None` for a delete.
    put: Option<(u64, &'a [u8])>,
}

#[derive(Deserialize)]
struct OpOwned {
    pk: String,
    sk: String,
    put: Option<(u64, Vec<u8>)>,
}

fn op_refs(ops: &[WriteOp]) -> Vec<OpRef<'_>> {
    ops.iter()
        .map(|op| match op {
            WriteOp::Put { item, .. } => OpRef {
                pk: &item.key.pk,
                sk: &item.key.sk,
                put: Some((item.version, &item.body)),
            },
            WriteOp::Delete { key, .. } => OpRef {
                pk: &key.pk,
                sk: &key.sk,
                put: None,
            },
        })
        .collect()
}

/// Encodes a transaction's writes: a record's payload.
pub fn encode(ops: &[WriteOp]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(ops, &mut out);
    out
}

/// Appends the encoding of a transaction's writes to `out`.
fn encode_into(ops: &[WriteOp], out: &mut Vec<u8>) {
    let refs = op_refs(ops);
    // Our own plain types into a Vec cannot fail; the empty `Vec<u8>` postcard returns on error
    // would fail to decode, never decode as something else.
    if let Ok(bytes) = postcard::to_extend(&refs, std::mem::take(out)) {
        *out = bytes;
    }
}

/// Decodes a record's payload back into writes (with no conditions: they held when it was
/// written).
pub fn decode(seq: u64, bytes: &[u8]) -> Result<Vec<WriteOp>, StoreError> {
    let ops: Vec<OpOwned> = postcard::from_bytes(bytes)
        .map_err(|e| StoreError::Corrupt(format!("journal record {seq}: {e}")))?;
    Ok(ops
        .into_iter()
        .map(|op| match op.put {
            Some((version, body)) => WriteOp::Put {
                item: Item {
                    key: Key::new(op.pk, op.sk),
                    version,
                    body,
                },
                condition: Condition::None,
            },
            None => WriteOp::Delete {
                key: Key::new(op.pk, op.sk),
                condition: Condition::None,
            },
        })
        .collect())
}

fn checksum(salt: u64, len: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(&len.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// A segment's header block.
fn segment_header(index: u64, salt: u64) -> Vec<u8> {
    let mut block = Vec::with_capacity(JOURNAL_BLOCK_BYTES as usize);
    block.extend_from_slice(SEGMENT_MAGIC);
    block.extend_from_slice(&index.to_le_bytes());
    block.extend_from_slice(&salt.to_le_bytes());
    let crc = crc32fast::hash(&block);
    block.extend_from_slice(&crc.to_le_bytes());
    block.resize(JOURNAL_BLOCK_BYTES as usize, 0);
    block
}

/// The salt of a segment whose header names it as `index`; `None` for any other header.
fn read_segment_header(bytes: &[u8], index: u64) -> Option<u64> {
    let header = bytes.get(..SEGMENT_HEADER_BYTES)?;
    let (body, crc) = header.split_at(SEGMENT_HEADER_BYTES - 4);
    if &body[..8] != SEGMENT_MAGIC
        || crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?)
        || u64::from_le_bytes(body[8..16].try_into().ok()?) != index
    {
        return None;
    }
    Some(u64::from_le_bytes(body[16..24].try_into().ok()?))
}

/// The record at `offset` of a segment's bytes: its sequence, payload and where the next one
/// would start; `None` where no whole, intact record of the segment salted `salt` is.
fn read_record(bytes: &[u8], offset: usize, salt: u64) -> Option<(u64, &[u8], usize)> {
    let header = bytes.get(offset..offset.checked_add(HEADER_BYTES)?)?;
    let word = |range: std::ops::Range<usize>| header.get(range);
    let len = u32::from_le_bytes(word(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(word(4..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(word(8..16)?.try_into().ok()?);
    if len == 0 {
        return None;
    }
    let start = offset + HEADER_BYTES;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    let payload = bytes.get(start..end)?;
    if checksum(salt, len, seq, payload) != crc {
        return None;
    }
    let block = usize::try_from(JOURNAL_BLOCK_BYTES).ok()?;
    Some((seq, payload, end.checked_next_multiple_of(block)?))
}

/// A segment of the log.
#[derive(Debug)]
struct Segment {
    index: u64,
    len: u64,
    /// Its last record's sequence; 0 when it holds none of the log's records.
    last_seq: u64,
}

/// The segment being written.
#[derive(Debug)]
struct Current {
    file: File,
    len: u64,
    offset: u64,
    salt: u64,
}

/// The log; see the module docs. One writer: the store's, under its writer lock.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    segment_bytes: u64,
    /// Segments in the log, oldest first; the last is `current`'s when it is set.
    live: Vec<Segment>,
    /// Indexes of released segments kept for reuse (each `segment_bytes` long).
    free: Vec<u64>,
    current: Option<Current>,
    next_index: u64,
    /// The record being written, reused from one append to the next.
    buf: Vec<u8>,
    /// Why the journal takes no more writes.
    failed: Option<String>,
}

/// What [`Journal::open`] found.
#[derive(Debug)]
pub struct Recovered {
    /// Records after the position the items table holds, in order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// The last record in the log, if any.
    pub last_seq: Option<u64>,
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("journal: {what} {}: {error}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync directory", dir, e))
}

impl Journal {
    /// Opens the log in `dir` (creating it), reading every record after `applied`.
    pub fn open(
        dir: &Path,
        applied: u64,
        segment_bytes: u64,
    ) -> Result<(Journal, Recovered), StoreError> {
        let segment_bytes = segment_bytes
            .max(JOURNAL_BLOCK_BYTES)
            .next_multiple_of(JOURNAL_BLOCK_BYTES);
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let mut live = Vec::new();
        let mut free = Vec::new();
        let mut next_index = 0;
        let entries = fs::read_dir(dir).map_err(|e| io_error("list", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let index = |hex: &str| u64::from_str_radix(hex, 16).ok();
            if name.ends_with(".tmp") {
                // A segment whose creation did not finish.
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
            } else if let Some(i) = name
                .strip_prefix("free-")
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(index)
            {
                next_index = next_index.max(i.saturating_add(1));
                let path = entry.path();
                let len = fs::metadata(&path)
                    .map_err(|e| io_error("read", &path, e))?
                    .len();
                if len == segment_bytes {
                    free.push(i);
                } else {
                    // Left by a run with another segment size.
                    fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
                }
            } else if let Some(i) = name.strip_suffix(".log").and_then(index) {
                live.push(i);
                next_index = next_index.max(i.saturating_add(1));
            }
        }
        live.sort_unstable();
        let mut recovered = Recovered {
            records: Vec::new(),
            last_seq: None,
        };
        // The record the log must go on with, once it reached past `applied`. Segments the
        // items table wholly holds constrain nothing: the one before a segment may have been
        // released (its rename may reach the disk before an older one's does).
        let mut expected: Option<u64> = None;
        let mut ended = false;
        let mut segments = Vec::with_capacity(live.len());
        for index in live {
            let path = live_path(dir, index);
            let bytes = fs::read(&path).map_err(|e| io_error("read", &path, e))?;
            let mut last_seq = 0;
            let salt = read_segment_header(&bytes, index);
            if let (false, Some(salt)) = (ended, salt) {
                let mut offset = JOURNAL_BLOCK_BYTES as usize;
                while let Some((seq, payload, next)) = read_record(&bytes, offset, salt) {
                    let follows = match (last_seq, expected) {
                        (0, None) => true,
                        (0, Some(expected)) => seq == expected,
                        (last, _) => seq == last + 1,
                    };
                    if !follows {
                        break;
                    }
                    if seq > applied {
                        recovered.records.push((seq, payload.to_vec()));
                    }
                    last_seq = seq;
                    offset = next;
                }
            }
            if last_seq != 0 {
                recovered.last_seq = Some(last_seq);
                expected = (last_seq > applied).then_some(last_seq + 1);
            } else if expected.is_some() {
                // The log goes on into a segment only at its start.
                ended = true;
            }
            segments.push(Segment {
                index,
                len: bytes.len() as u64,
                last_seq,
            });
        }
        if let Some((first, _)) = recovered.records.first()
            && *first != applied + 1
        {
            return Err(StoreError::Corrupt(format!(
                "the journal resumes at record {first}, but the items table holds only up to {applied}"
            )));
        }
        let journal = Journal {
            dir: dir.to_owned(),
            segment_bytes,
            live: segments,
            free,
            current: None,
            next_index,
            buf: Vec::new(),
            failed: None,
        };
        Ok((journal, recovered))
    }

    /// Appends record `seq` holding `ops` and syncs it. `applied` is the position the items
    /// table holds: segments up to it may be released to make room.
    pub fn append(&mut self, seq: u64, ops: &[WriteOp], applied: u64) -> Result<(), StoreError> {
        if let Some(why) = &self.failed {
            return Err(StoreError::Unavailable(format!(
                "the journal takes no more writes after a failure ({why}); restart the process"
            )));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.resize(HEADER_BYTES, 0);
        encode_into(ops, &mut buf);
        let Ok(len) = u32::try_from(buf.len() - HEADER_BYTES) else {
            return Err(StoreError::Invalid(
                "transaction too large for one journal record".into(),
            ));
        };
        let total = (buf.len() as u64).next_multiple_of(JOURNAL_BLOCK_BYTES);
        let result = self.write(&mut buf, len, seq, total, applied);
        if buf.capacity() as u64 <= self.segment_bytes {
            self.buf = buf;
        }
        result.inspect_err(|error| self.failed = Some(error.to_string()))
    }

    fn write(
        &mut self,
        buf: &mut Vec<u8>,
        len: u32,
        seq: u64,
        total: u64,
        applied: u64,
    ) -> Result<(), StoreError> {
        let fits = |c: &Current| c.offset.saturating_add(total) <= c.len;
        if !self.current.as_ref().is_some_and(fits) {
            self.rotate(total, applied)?;
        }
        let (Some(current), Some(segment)) = (self.current.as_mut(), self.live.last_mut()) else {
            return Err(StoreError::Unavailable(
                "journal: no segment to write".into(),
            ));
        };
        let crc = checksum(current.salt, len, seq, &buf[HEADER_BYTES..]);
        buf[0..4].copy_from_slice(&len.to_le_bytes());
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        buf[8..16].copy_from_slice(&seq.to_le_bytes());
        buf.resize(usize::try_from(total).unwrap_or(usize::MAX), 0);
        // The path only for an error's message: no formatting on the path every commit takes.
        let dir = &self.dir;
        let index = segment.index;
        current
            .file
            .write_all_at(buf, current.offset)
            .map_err(|e| io_error("write", &live_path(dir, index), e))?;
        current
            .file
            .sync_data()
            .map_err(|e| io_error("sync", &live_path(dir, index), e))?;
        current.offset += total;
        segment.last_seq = seq;
        Ok(())
    }

    /// Releases the segments the items table holds and starts a segment with room for a record
    /// of `needed` bytes: a free one when it is big enough, else a new zero-filled one.
    fn rotate(&mut self, needed: u64, applied: u64) -> Result<(), StoreError> {
        self.current = None;
        let mut kept = Vec::with_capacity(self.live.len() + 1);
        for segment in std::mem::take(&mut self.live) {
            if segment.last_seq > applied {
                kept.push(segment);
                continue;
            }
            let path = live_path(&self.dir, segment.index);
            if segment.len == self.segment_bytes && self.free.len() < JOURNAL_FREE_SEGMENTS_MAX {
                let to = free_path(&self.dir, segment.index);
                fs::rename(&path, &to).map_err(|e| io_error("release", &path, e))?;
                self.free.push(segment.index);
            } else {
                fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
            }
        }
        self.live = kept;
        let index = self.next_index;
        self.next_index += 1;
        let path = live_path(&self.dir, index);
        let len = match self.free.pop() {
            Some(free) if needed.saturating_add(JOURNAL_BLOCK_BYTES) <= self.segment_bytes => {
                let from = free_path(&self.dir, free);
                fs::rename(&from, &path).map_err(|e| io_error("reuse", &from, e))?;
                self.segment_bytes
            }
            other => {
                self.free.extend(other);
                let len = needed
                    .saturating_add(JOURNAL_BLOCK_BYTES)
                    .max(self.segment_bytes);
                let tmp = self.dir.join(format!("{index:016x}.tmp"));
                create_zeroed(&tmp, len)?;
                fs::rename(&tmp, &path).map_err(|e| io_error("name", &tmp, e))?;
                len
            }
        };
        // The segment's name and header are durable before a record in it is acknowledged.
        sync_dir(&self.dir)?;
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        let mut salt = [0u8; 8];
        getrandom::fill(&mut salt)
            .map_err(|e| StoreError::Unavailable(format!("journal: no randomness: {e}")))?;
        let salt = u64::from_le_bytes(salt);
        file.write_all_at(&segment_header(index, salt), 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error("write the header of", &path, e))?;
        self.live.push(Segment {
            index,
            len,
            last_seq: 0,
        });
        self.current = Some(Current {
            file,
            len,
            offset: JOURNAL_BLOCK_BYTES,
            salt,
        });
        Ok(())
    }

    /// Segment files in the log and kept for reuse (for tests and operators).
    pub fn segment_counts(&self) -> (usize, usize) {
        (self.live.len(), self.free.len())
    }
}

fn live_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:016x}.log"))
}

fn free_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("free-{index:016x}.log"))
}

/// Creates `path` holding `len` zero bytes, synced.
fn create_zeroed(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_error("create", path, e))?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut offset = 0u64;
    while offset < len {
        let n = usize::try_from(len - offset).map_or(zeros.len(), |left| left.min(zeros.len()));
        file.write_all_at(&zeros[..n], offset)
            .map_err(|e| io_error("fill", path, e))?;
        offset += n as u64;
    }
    file.sync_all().map_err(|e| io_error("sync", path, e))
}

/// The journal of builds before this log: a SQLite file with one row per transaction. Its
/// rows after `after`, so that a store a crash left behind under an older build loses nothing.
pub fn legacy_rows(path: &Path, after: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    use rusqlite::{Connection, params};
    let unavailable = |e: rusqlite::Error| io_error("read", path, std::io::Error::other(e));
    let conn = Connection::open(path).map_err(unavailable)?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'journal'",
            [],
            |row| row.get(0),
        )
        .map_err(unavailable)?;
    if tables == 0 {
        return Ok(Vec::new());
    }
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare("SELECT seq, ops FROM journal WHERE seq > ?1 ORDER BY seq")
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![after], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(unavailable)?;
    rows.map(|row| {
        let (seq, ops) = row.map_err(unavailable)?;
        let seq = u64::try_from(seq)
            .map_err(|_| StoreError::Corrupt(format!("legacy journal sequence {seq}")))?;
        Ok((seq, ops))
    })
    .collect()
}

#[cfg(test)]
mod tests;
