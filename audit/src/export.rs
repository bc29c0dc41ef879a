//! The export of audit streams for an auditor, and its verification.
//!
//! # Format (`strongroom-audit-export/1`)
//!
//! An export is a directory of plain files, readable with any JSON tool:
//!
//! - `manifest.json`: `{"format":"strongroom-audit-export/1","exported_at":"<RFC 3339>",
//!   "streams":["<stream>",...]}`, the streams it holds.
//! - `<stream>.records.jsonl`: the stream's records in sequence order, one line each:
//!   `{"leaf":"<64 lowercase hex>","record":<the record's exact stored JSON>}` and a line break
//!   (`\n`). `leaf` is the RFC 9162 leaf hash of the record's bytes as they appear in the line
//!   ([`crate::merkle::leaf_hash`]); line `n + 1` holds the record whose `seq` is `n`.
//! - `<stream>.checkpoints.jsonl`: the stream's signed checkpoints, one
//!   [`SignedCheckpoint`] JSON per line, in any order.
//!
//! Stream names are 1 to 128 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`
//! ([`valid_stream_name`]), so that they are file names on every system and never a path.
//! Files the manifest does not name are not read.
//!
//! To verify an export by hand: check each checkpoint's signature over its message
//! ([`crate::checkpoint::message`]) with the writer's public key; hash each record's bytes
//! (`SHA-256(0x00 || record)`); compute the Merkle tree's root of the first `size` leaves
//! (RFC 9162 section 2.1.1) for each checkpoint's size and compare.
//!
//! # Proofs
//!
//! [`prove`] answers an auditor's question about one record with the export alone: the
//! inclusion proof (RFC 9162) of record `seq` in the tree of one of its stream's signed
//! checkpoints (the latest by default), checked before it is returned, as
//! `strongroom audit proof --export` prints it. It reads the records file once, up to the
//! tree's size, and keeps a few hashes per level of the tree
//! ([`crate::merkle::InclusionProver`]), so a stream of any length is proven; a tampered
//! record or checkpoint on the way is an error, as [`verify_export`] would report it.
//!
//! # Verification
//!
//! [`verify_export`] checks every stream with a [`StreamVerifier`], one bad stream not
//! stopping the others. It reads each records file in blocks of [`BLOCK_LEN`] bytes, never the
//! whole file, and splits the lines on several threads, which hash the records and read their
//! `seq`; the calling thread takes the results in order into the stream's Merkle tree. A
//! record line's outer shape is fixed, so the record is sliced out of it without a JSON parser.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    CHECKPOINT_JSON_LEN_MAX, PublicKeys, RecordProof, SignedCheckpoint, parse_hash_bytes,
};
use crate::merkle::{Hash, InclusionProver, ProofError};
use crate::record::{RESOURCES_MAX, format_time, record_bytes_max};
use crate::verify::{Failure, Place, Prepared, StreamSummary, StreamVerifier};

/// The format this build writes and reads (`"format"` in the manifest).
pub const FORMAT: &str = "strongroom-audit-export/1";
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// Longest manifest read, in bytes.
pub const MANIFEST_LEN_MAX: usize = 4 << 20;
/// Most streams in one export.
pub const STREAMS_MAX: usize = 10_000;
/// Longest stream name, in bytes.
pub const STREAM_NAME_LEN_MAX: usize = 128;
/// Longest record written or read, in bytes: the bound of an encoded record.
pub const RECORD_LEN_MAX: usize = record_bytes_max(RESOURCES_MAX);
/// Longest records line, in bytes, without its line break.
pub const LINE_LEN_MAX: usize = LINE_HEAD.len() + 64 + LINE_MID.len() + RECORD_LEN_MAX + 1;
/// Bytes of a records file read at a time.
pub const BLOCK_LEN: usize = 4 << 20;
/// Records between two calls of the progress callback, at least.
pub const PROGRESS_EVERY: u64 = 65_536;
/// Most threads hashing records.
pub const WORKERS_MAX: usize = 8;
/// Blocks read ahead per worker: read, hashed or waiting to be taken in order.
const BLOCKS_PER_WORKER: usize = 2;
/// Buffer of each file written.
const WRITE_BUFFER_LEN: usize = 1 << 20;
/// The start of a records line, up to the leaf's hex.
const LINE_HEAD: &[u8] = b"{\"leaf\":\"";
/// Between the leaf's hex and the record.
const LINE_MID: &[u8] = b"\",\"record\":";

/// Whether `name` may name a stream in an export: 1 to [`STREAM_NAME_LEN_MAX`] characters of
/// `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn valid_stream_name(name: &str) -> bool {
    (1..=STREAM_NAME_LEN_MAX).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn records_file(name: &str) -> String {
    format!("{name}.records.jsonl")
}

fn checkpoints_file(name: &str) -> String {
    format!("{name}.checkpoints.jsonl")
}

/// Why an export could not be written or read. What an export's content shows (a changed
/// record, a malformed line, a missing file of a stream) is a [`Failure`] of its stream in the
/// [`Report`] instead.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The directory to export to holds files already.
    #[error("{} is not an empty directory", dir.display())]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// The manifest cannot be read, or names streams that cannot be.
    #[error("{}: {problem}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Not a stream name an export allows ([`valid_stream_name`]).
    #[error("{name:?} is not a stream name an export allows (1 to 128 of A-Z a-z 0-9 . _ -)")]
    StreamName {
        /// The name.
        name: String,
    },
    /// A stream begun twice.
    #[error("stream {name} is in the export already")]
    DuplicateStream {
        /// The name.
        name: String,
    },
    /// A record or checkpoint written before any stream was begun.
    #[error("no stream begun")]
    NoStream,
    /// A checkpoint of another stream than the one being written.
    #[error("a checkpoint of stream {checkpoint} in stream {stream}")]
    WrongStream {
        /// The checkpoint's stream.
        checkpoint: String,
        /// The stream being written.
        stream: String,
    },
    /// A record that cannot be one line of an export.
    #[error("record {index} of stream {stream} {problem}")]
    BadRecord {
        /// The stream.
        stream: String,
        /// Its position in the stream.
        index: u64,
        /// What is wrong.
        problem: &'static str,
    },
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The manifest's content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    exported_at: String,
    streams: Vec<String>,
}

/// Writes an export, one stream after the other: [`ExportWriter::begin_stream`], its records
/// in sequence order and its checkpoints, then the next stream, then
/// [`ExportWriter::finish`], which writes the manifest last, so that an export without one
/// is known to be incomplete.
#[derive(Debug)]
pub struct ExportWriter {
    dir: PathBuf,
    streams: Vec<String>,
    names: BTreeSet<String>,
    current: Option<StreamFiles>,
}

/// The files of the stream being written.
#[derive(Debug)]
struct StreamFiles {
    name: String,
    records: BufWriter<File>,
    records_path: PathBuf,
    /// Records written.
    count: u64,
    checkpoints: BufWriter<File>,
    checkpoints_path: PathBuf,
}

impl StreamFiles {
    /// Flushes both files to the disk.
    fn close(self) -> Result<(), ExportError> {
        for (writer, path) in [
            (self.records, self.records_path),
            (self.checkpoints, self.checkpoints_path),
        ] {
            let file = writer
                .into_inner()
                .map_err(|e| io_error(&path)(e.into_error()))?;
            file.sync_all().map_err(io_error(&path))?;
        }
        Ok(())
    }
}

fn create_new(path: &Path) -> Result<BufWriter<File>, ExportError> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error(path))?;
    Ok(BufWriter::with_capacity(WRITE_BUFFER_LEN, file))
}

impl ExportWriter {
    /// Starts an export in `dir`, which must be empty or not exist (it is then created, with
    /// its parents).
    pub fn create(dir: &Path) -> Result<ExportWriter, ExportError> {
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(ExportError::NotEmpty {
                        dir: dir.to_owned(),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            }
            Err(e) => return Err(io_error(dir)(e)),
        }
        Ok(ExportWriter {
            dir: dir.to_owned(),
            streams: Vec::new(),
            names: BTreeSet::new(),
            current: None,
        })
    }

    /// Ends the stream being written, if any, and begins `name`'s files.
    pub fn begin_stream(&mut self, name: &str) -> Result<(), ExportError> {
        if !valid_stream_name(name) {
            return Err(ExportError::StreamName {
                name: name.to_owned(),
            });
        }
        if self.names.contains(name) {
            return Err(ExportError::DuplicateStream {
                name: name.to_owned(),
            });
        }
        if self.streams.len() >= STREAMS_MAX {
            return Err(ExportError::Manifest {
                path: self.dir.join(MANIFEST),
                problem: format!("more than {STREAMS_MAX} streams"),
            });
        }
        if let Some(files) = self.current.take() {
            files.close()?;
        }
        let records_path = self.dir.join(records_file(name));
        let checkpoints_path = self.dir.join(checkpoints_file(name));
        self.current = Some(StreamFiles {
            name: name.to_owned(),
            records: create_new(&records_path)?,
            records_path,
            count: 0,
            checkpoints: create_new(&checkpoints_path)?,
            checkpoints_path,
        });
        self.streams.push(name.to_owned());
        self.names.insert(name.to_owned());
        Ok(())
    }

    /// Writes the stream's next record: its exact stored bytes and the leaf hash stored with
    /// it. A record longer than [`RECORD_LEN_MAX`] or holding a line break is refused (an
    /// encoded record never holds one).
    pub fn record(&mut self, leaf: &Hash, bytes: &[u8]) -> Result<(), ExportError> {
        let files = self.current.as_mut().ok_or(ExportError::NoStream)?;
        let problem = if bytes.len() > RECORD_LEN_MAX {
            Some("is longer than a record can be")
        } else if bytes.contains(&b'\n') {
            Some("holds a line break")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ExportError::BadRecord {
                stream: files.name.clone(),
                index: files.count,
                problem,
            });
        }
        let mut hex = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(leaf, &mut hex);
        let w = &mut files.records;
        w.write_all(LINE_HEAD)
            .and_then(|()| w.write_all(&hex))
            .and_then(|()| w.write_all(LINE_MID))
            .and_then(|()| w.write_all(bytes))
            .and_then(|()| w.write_all(b"}\n"))
            .map_err(io_error(&files.records_path))?;
        files.count += 1;
        Ok(())
    }

    /// Writes a signed checkpoint of the stream.
    pub fn checkpoint(&mut self, signed: &SignedCheckpoint) -> Result<(), ExportError> {
        let files = self.current.as_mut().ok_or(ExportError::NoStream)?;
        if signed.checkpoint.stream != files.name {
            return Err(ExportError::WrongStream {
                checkpoint: signed.checkpoint.stream.clone(),
                stream: files.name.clone(),
            });
        }
        let mut line = signed.encode();
        line.push(b'\n');
        files
            .checkpoints
            .write_all(&line)
            .map_err(io_error(&files.checkpoints_path))
    }

    /// Ends the last stream and writes the manifest.
    pub fn finish(mut self) -> Result<(), ExportError> {
        if let Some(files) = self.current.take() {
            files.close()?;
        }
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            exported_at: format_time(now_us),
            streams: std::mem::take(&mut self.streams),
        };
        let mut content = serde_json::to_vec(&manifest).unwrap_or_default();
        content.push(b'\n');
        let path = self.dir.join(MANIFEST);
        let mut writer = create_new(&path)?;
        writer.write_all(&content).map_err(io_error(&path))?;
        let file = writer
            .into_inner()
            .map_err(|e| io_error(&path)(e.into_error()))?;
        file.sync_all().map_err(io_error(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&self.dir))
    }
}

/// How far [`verify_export`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The stream being verified.
    pub stream: String,
    /// Its records verified so far.
    pub records_done: u64,
    /// Its records, estimated from the size of its file and of the lines read so far; `None`
    /// before the first.
    pub records_total_estimate: Option<u64>,
}

/// The outcome of [`verify_export`]: each stream's summary or first failure, in the
/// manifest's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// One per stream.
    pub streams: Vec<Result<StreamSummary, Failure>>,
}

impl Report {
    /// Whether every stream verified.
    pub fn ok(&self) -> bool {
        self.streams.iter().all(Result::is_ok)
    }
}

/// Verifies the export in `dir` with `keys`: every stream of its manifest, each to its first
/// failure. `progress` is called when a stream begins and then at most every
/// [`PROGRESS_EVERY`] records.
///
/// An error is for what stops the verification as a whole: an unreadable manifest, or a file
/// that exists but cannot be read. Everything the files show, including a stream's missing
/// file and a malformed line, is a failure of that stream in the [`Report`].
pub fn verify_export(
    dir: &Path,
    keys: &PublicKeys,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, ExportError> {
    let manifest = read_manifest(dir)?;
    let mut streams = Vec::with_capacity(manifest.streams.len());
    for name in &manifest.streams {
        streams.push(verify_stream(dir, name, keys, progress)?);
    }
    Ok(Report { streams })
}

fn read_manifest(dir: &Path) -> Result<Manifest, ExportError> {
    let path = dir.join(MANIFEST);
    let refuse = |problem: String| ExportError::Manifest {
        path: path.clone(),
        problem,
    };
    let file = File::open(&path).map_err(|e| refuse(format!("cannot be read: {e}")))?;
    let mut content = Vec::new();
    file.take(MANIFEST_LEN_MAX as u64 + 1)
        .read_to_end(&mut content)
        .map_err(io_error(&path))?;
    if content.len() > MANIFEST_LEN_MAX {
        return Err(refuse(format!("longer than {MANIFEST_LEN_MAX} bytes")));
    }
    let manifest: Manifest = serde_json::from_slice(&content)
        .map_err(|e| refuse(format!("not an export manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(refuse(format!(
            "format {:?}; this build reads {FORMAT}",
            manifest.format
        )));
    }
    if manifest.streams.len() > STREAMS_MAX {
        return Err(refuse(format!("more than {STREAMS_MAX} streams")));
    }
    let mut seen = BTreeSet::new();
    for name in &manifest.streams {
        if !valid_stream_name(name) {
            return Err(refuse(format!(
                "{name:?} is not a stream name an export allows"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(refuse(format!("stream {name} is listed twice")));
        }
    }
    Ok(manifest)
}

/// Opens a stream's file; a missing one is the stream's failure.
fn open_stream_file(
    dir: &Path,
    file_name: &str,
    stream: &str,
) -> Result<Result<File, Failure>, ExportError> {
    let path = dir.join(file_name);
    match File::open(&path) {
        Ok(file) => Ok(Ok(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Err(Failure {
            stream: stream.to_owned(),
            place: Place::Stream,
            problem: format!("its file {file_name} is missing"),
        })),
        Err(e) => Err(io_error(&path)(e)),
    }
}

fn verify_stream(
    dir: &Path,
    name: &str,
    keys: &PublicKeys,
    progress: &mut dyn FnMut(Progress),
) -> Result<Result<StreamSummary, Failure>, ExportError> {
    progress(Progress {
        stream: name.to_owned(),
        records_done: 0,
        records_total_estimate: None,
    });
    let mut verifier = StreamVerifier::new(name, keys);
    let checkpoints_name = checkpoints_file(name);
    if let Err(failure) = for_each_checkpoint(dir, &checkpoints_name, name, &mut |signed| {
        verifier.add_checkpoint(&signed)
    })? {
        return Ok(Err(failure));
    }
    let records_name = records_file(name);
    let file = match open_stream_file(dir, &records_name, name)? {
        Ok(file) => file,
        Err(failure) => return Ok(Err(failure)),
    };
    let path = dir.join(&records_name);
    let file_len = file.metadata().map_err(io_error(&path))?.len();
    read_records(file, file_len, &mut verifier, progress).map_err(io_error(&path))?;
    Ok(verifier.finish())
}

/// A block of whole lines for a worker, numbered in file order.
struct Job {
    index: u64,
    block: Vec<u8>,
    /// The block is a single line longer than [`LINE_LEN_MAX`], cut short.
    too_long: bool,
}

/// A worker's results for a block, with the block's buffer for reuse.
struct Done {
    index: u64,
    block: Vec<u8>,
    prepared: Vec<Prepared>,
}

/// Reads the records file in blocks, has workers hash and read the lines, and gives the
/// results to the verifier in order. Returns at the verifier's first failure (which stays in
/// it) or at the end of the file.
fn read_records(
    mut file: File,
    file_len: u64,
    verifier: &mut StreamVerifier,
    progress: &mut dyn FnMut(Progress),
) -> std::io::Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, WORKERS_MAX);
    let in_flight_max = workers * BLOCKS_PER_WORKER;
    let stream = verifier.stream().to_owned();
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = sync_channel::<Job>(in_flight_max);
        let (done_tx, done_rx) = sync_channel::<Done>(in_flight_max);
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..workers {
            let (jobs, done, stream) = (Arc::clone(&job_rx), done_tx.clone(), stream.as_str());
            // A thread the system cannot start is an error, not a panic.
            std::thread::Builder::new()
                .name("audit-verify".to_owned())
                .spawn_scoped(scope, move || work(stream, &jobs, &done))?;
        }
        drop(done_tx);
        let mut reader = BlockReader {
            carry: Vec::new(),
            eof: false,
            free: Vec::new(),
        };
        let mut order = InOrder {
            next: 0,
            waiting: BTreeMap::new(),
            bytes_done: 0,
            reported: 0,
        };
        let mut sent = 0u64;
        loop {
            while !reader.eof && sent - order.next < in_flight_max as u64 {
                let Some((block, too_long)) = reader.next_block(&mut file)? else {
                    continue;
                };
                let job = Job {
                    index: sent,
                    block,
                    too_long,
                };
                if job_tx.send(job).is_err() {
                    return Err(workers_stopped());
                }
                sent += 1;
            }
            if order.next == sent {
                return Ok(());
            }
            let done = done_rx.recv().map_err(|_| workers_stopped())?;
            if !order.take(done, &mut reader, verifier, file_len, progress) {
                // The verifier failed: the rest of the file cannot change that.
                return Ok(());
            }
        }
    })
}

fn workers_stopped() -> std::io::Error {
    std::io::Error::other("a record hashing thread stopped")
}

/// Cuts a file into blocks of whole lines.
struct BlockReader {
    /// The start of a line that did not fit the last block.
    carry: Vec<u8>,
    eof: bool,
    /// Buffers of blocks done with.
    free: Vec<Vec<u8>>,
}

impl BlockReader {
    /// The next block of whole lines (the last one may lack its line break), with whether it
    /// is a line too long, cut at [`LINE_LEN_MAX`]; `None` when the data read so far holds no
    /// line break yet, or at the end.
    fn next_block(&mut self, file: &mut File) -> std::io::Result<Option<(Vec<u8>, bool)>> {
        let mut block = self.free.pop().unwrap_or_default();
        block.clear();
        block.append(&mut self.carry);
        let start = block.len();
        block.resize(start + BLOCK_LEN, 0);
        let mut filled = start;
        while filled < block.len() {
            match file.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.eof = filled < block.len();
        block.truncate(filled);
        if self.eof {
            return Ok((!block.is_empty()).then_some((block, false)));
        }
        match block.iter().rposition(|&b| b == b'\n') {
            Some(end) => {
                self.carry.extend_from_slice(&block[end + 1..]);
                block.truncate(end + 1);
                Ok(Some((block, false)))
            }
            None if block.len() > LINE_LEN_MAX => {
                // Nothing after this line is read: its failure ends the stream.
                self.eof = true;
                block.truncate(LINE_LEN_MAX + 1);
                Ok(Some((block, true)))
            }
            None => {
                self.carry = block;
                Ok(None)
            }
        }
    }
}

/// Takes workers' results in file order.
struct InOrder {
    /// The index of the next block to give the verifier.
    next: u64,
    waiting: BTreeMap<u64, Done>,
    /// Bytes of the blocks given to the verifier.
    bytes_done: u64,
    /// Records at the last progress report.
    reported: u64,
}

impl InOrder {
    /// Takes `done`, and gives the verifier every block now in order. False once the
    /// verifier failed.
    fn take(
        &mut self,
        done: Done,
        reader: &mut BlockReader,
        verifier: &mut StreamVerifier,
        file_len: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> bool {
        self.waiting.insert(done.index, done);
        while let Some(done) = self.waiting.remove(&self.next) {
            self.next += 1;
            self.bytes_done += done.block.len() as u64;
            reader.free.push(done.block);
            for prepared in done.prepared {
                if verifier.add_prepared(prepared).is_err() {
                    return false;
                }
            }
            let records = verifier.records();
            if records - self.reported >= PROGRESS_EVERY {
                self.reported = records;
                let estimate = (self.bytes_done > 0).then(|| {
                    let total =
                        u128::from(file_len) * u128::from(records) / u128::from(self.bytes_done);
                    u64::try_from(total).unwrap_or(u64::MAX)
                });
                progress(Progress {
                    stream: verifier.stream().to_owned(),
                    records_done: records,
                    records_total_estimate: estimate,
                });
            }
        }
        true
    }
}

/// A worker: hashes and reads the lines of each block it receives, until there are no more.
fn work(stream: &str, jobs: &Mutex<Receiver<Job>>, done: &SyncSender<Done>) {
    loop {
        let job = match jobs.lock() {
            Ok(jobs) => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let prepared = if job.too_long {
            vec![Prepared::malformed(format!(
                "its line is longer than {LINE_LEN_MAX} bytes"
            ))]
        } else {
            prepare_lines(stream, &job.block)
        };
        let result = Done {
            index: job.index,
            block: job.block,
            prepared,
        };
        if done.send(result).is_err() {
            return;
        }
    }
}

/// Each line of `block` hashed and read.
fn prepare_lines(stream: &str, block: &[u8]) -> Vec<Prepared> {
    let mut prepared = Vec::with_capacity(block.len() / 256 + 1);
    let mut rest = block;
    while !rest.is_empty() {
        let (line, tail) = match find_newline(rest) {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        prepared.push(prepare_line(stream, line));
        rest = tail;
    }
    prepared
}

/// The first `\n` in `bytes`, eight bytes at a time: a byte-by-byte search was a sixth of the
/// hashing threads' time.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_le_bytes([b'\n'; 8]);
    let mut words = bytes.chunks_exact(8);
    for (i, chunk) in (&mut words).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // Zero bytes where `word` has a line break; the lowest flagged byte is the first zero
        // (a borrow can only flag bytes above a zero one).
        let x = u64::from_le_bytes(word) ^ NEWLINES;
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(i * 8 + (zeros.trailing_zeros() / 8) as usize);
        }
    }
    let done = bytes.len() - words.remainder().len();
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| done + i)
}

/// The stored leaf and the record of a records line, `{"leaf":"<64 hex>","record":<record>}`,
/// if it has that shape.
fn split_line(line: &[u8]) -> Option<(Hash, &[u8])> {
    let rest = line.strip_prefix(LINE_HEAD)?;
    let (hex, rest) = rest.split_at_checked(64)?;
    let leaf = parse_hash_bytes(hex)?;
    let record = rest.strip_prefix(LINE_MID)?.strip_suffix(b"}")?;
    Some((leaf, record))
}

/// One records line, `{"leaf":"<64 hex>","record":<record>}`, hashed and read.
fn prepare_line(stream: &str, line: &[u8]) -> Prepared {
    if line.len() > LINE_LEN_MAX {
        return Prepared::malformed(format!("its line is longer than {LINE_LEN_MAX} bytes"));
    }
    match split_line(line) {
        Some((leaf, record)) => Prepared::new(stream, record, Some(&leaf)),
        None => {
            let start = String::from_utf8_lossy(&line[..line.len().min(100)]);
            Prepared::malformed(format!(
                "its line is not {{\"leaf\":\"<64 lowercase hex>\",\"record\":<record>}}: {start:?}"
            ))
        }
    }
}

/// Why [`prove`] gave no proof.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// The manifest, or a file, cannot be read.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The manifest does not list the stream.
    #[error("the export holds no stream {stream:?}")]
    NoStream {
        /// The stream asked for.
        stream: String,
    },
    /// The stream has no checkpoint: nothing signed vouches for any of its records.
    #[error("stream {stream} has no checkpoint in the export: none of its records can be proven")]
    NoCheckpoint {
        /// The stream.
        stream: String,
    },
    /// No checkpoint was signed at the tree size asked for.
    #[error(
        "stream {stream} has no checkpoint at size {size} (its latest is at size {latest}): a \
         proof is against a signed tree, name one of its checkpoints' sizes"
    )]
    NotCheckpointed {
        /// The stream.
        stream: String,
        /// The size asked for.
        size: u64,
        /// The largest checkpoint's size.
        latest: u64,
    },
    /// The record is not in the tree asked for.
    #[error("record {seq} of stream {stream} is not in its tree of {size} records")]
    NotInTree {
        /// The stream.
        stream: String,
        /// The record.
        seq: u64,
        /// The tree's size.
        size: u64,
    },
    /// The record is in the export but after the stream's latest checkpoint.
    #[error(
        "record {seq} of stream {stream} is after its latest checkpoint (size {latest}): no \
         signed tree covers it yet"
    )]
    NotCovered {
        /// The stream.
        stream: String,
        /// The record.
        seq: u64,
        /// The largest checkpoint's size.
        latest: u64,
    },
    /// The export holds fewer records of the stream.
    #[error("stream {stream} has {records} records in the export: there is no record {seq}")]
    NoRecord {
        /// The stream.
        stream: String,
        /// The record asked for.
        seq: u64,
        /// The stream's records in the export.
        records: u64,
    },
    /// What the export holds does not verify (a changed, missing or reordered record, a
    /// malformed line, a checkpoint whose signature does not verify): it was tampered with.
    #[error("the export does not verify: {0}")]
    Tampered(Failure),
    /// The proof does not lead to the checkpoint's root.
    #[error("the proof does not verify: {0}")]
    Proof(#[from] ProofError),
}

/// The proof that record `seq` of `stream` is in the tree of one of the stream's signed
/// checkpoints, from the export in `dir` alone and the public `keys`: the tree of
/// `tree_size` records, which must be a checkpoint's size, or by default the stream's latest
/// checkpoint (which covers the record, or no checkpoint does).
///
/// The checkpoints file is read twice (to choose the checkpoint, then to check every one
/// signed at its size) and the records file once, up to the tree's size, in memory of the
/// tree's height. On the way, the records are checked as [`verify_export`] checks them (a
/// record changed, missing or out of order, a malformed line, a checkpoint that does not
/// verify is [`ProveError::Tampered`]); the proof is checked before it is returned:
/// [`crate::merkle::verify_inclusion`] from the record's leaf to the root, the root against
/// the checkpoint's, the checkpoint's signature with `keys`.
pub fn prove(
    dir: &Path,
    stream: &str,
    seq: u64,
    tree_size: Option<u64>,
    keys: &PublicKeys,
) -> Result<RecordProof, ProveError> {
    let manifest = read_manifest(dir)?;
    if !manifest.streams.iter().any(|s| s == stream) {
        return Err(ProveError::NoStream {
            stream: stream.to_owned(),
        });
    }
    let tampered = ProveError::Tampered;
    let checkpoints_name = checkpoints_file(stream);
    let records_name = records_file(stream);

    // Which tree.
    let mut latest: Option<u64> = None;
    let mut asked_for_found = false;
    for_each_checkpoint(dir, &checkpoints_name, stream, &mut |signed| {
        let size = signed.checkpoint.size;
        latest = latest.max(Some(size));
        asked_for_found |= tree_size == Some(size);
        Ok(())
    })?
    .map_err(tampered)?;
    let Some(latest) = latest else {
        return Err(ProveError::NoCheckpoint {
            stream: stream.to_owned(),
        });
    };
    let size = match tree_size {
        Some(size) if !asked_for_found => {
            return Err(ProveError::NotCheckpointed {
                stream: stream.to_owned(),
                size,
                latest,
            });
        }
        Some(size) if seq >= size => {
            return Err(ProveError::NotInTree {
                stream: stream.to_owned(),
                seq,
                size,
            });
        }
        Some(size) => size,
        None if seq >= latest => {
            let records = count_lines(dir, &records_name, stream)?;
            return Err(if seq >= records {
                ProveError::NoRecord {
                    stream: stream.to_owned(),
                    seq,
                    records,
                }
            } else {
                ProveError::NotCovered {
                    stream: stream.to_owned(),
                    seq,
                    latest,
                }
            });
        }
        None => latest,
    };

    // Every checkpoint of that size: its signature, and no two roots.
    let mut verifier = StreamVerifier::new(stream, keys);
    let mut checkpoint: Option<SignedCheckpoint> = None;
    for_each_checkpoint(dir, &checkpoints_name, stream, &mut |signed| {
        if signed.checkpoint.size == size {
            verifier.add_checkpoint(&signed)?;
            checkpoint.get_or_insert(signed);
        }
        Ok(())
    })?
    .map_err(tampered)?;
    let checkpoint = checkpoint.ok_or_else(|| ProveError::NotCheckpointed {
        stream: stream.to_owned(),
        size,
        latest,
    })?;

    // The records of the tree, checked and hashed into the proof.
    let mut prover = InclusionProver::new(seq, size)?;
    let file = open_stream_file(dir, &records_name, stream)?.map_err(tampered)?;
    let path = dir.join(&records_name);
    let mut reader = BufReader::with_capacity(WRITE_BUFFER_LEN, file);
    let mut line = Vec::new();
    let mut record = None;
    while prover.leaves() < size {
        line.clear();
        let read = (&mut reader)
            .take(LINE_LEN_MAX as u64 + 2)
            .read_until(b'\n', &mut line)
            .map_err(io_error(&path))?;
        if read == 0 {
            // The verifier names the truncation.
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let prepared = prepare_line(stream, text);
        let leaf = prepared.leaf();
        verifier.add_prepared(prepared).map_err(tampered)?;
        if prover.leaves() == seq {
            record = split_line(text).map(|(_, bytes)| bytes.to_vec());
        }
        prover.push(leaf)?;
    }
    let summary = verifier.finish().map_err(tampered)?;
    let (proof, root) = prover.finish()?;

    // Checked as an auditor would, from the record's bytes up.
    let record = record.ok_or_else(|| {
        tampered(Failure {
            stream: stream.to_owned(),
            place: Place::Record(seq),
            problem: "its line holds no record".to_owned(),
        })
    })?;
    let leaf = crate::merkle::leaf_hash(&record);
    crate::merkle::verify_inclusion(&leaf, seq, size, &proof, &root)?;
    if root != checkpoint.checkpoint.root || summary.covered != size {
        return Err(ProveError::Proof(ProofError::RootMismatch));
    }
    keys.verify(&checkpoint).map_err(|e| {
        tampered(Failure {
            stream: stream.to_owned(),
            place: Place::Checkpoint(size),
            problem: e.to_string(),
        })
    })?;
    Ok(RecordProof {
        stream: stream.to_owned(),
        seq,
        record,
        leaf,
        tree_size: size,
        root,
        proof,
        checkpoint: Some(checkpoint),
    })
}

/// Calls `each` with every checkpoint of a stream's checkpoints file, in file order. A
/// missing file, a line that is not a signed checkpoint, or `each`'s failure is the stream's
/// failure; an unreadable file an error.
fn for_each_checkpoint(
    dir: &Path,
    file_name: &str,
    stream: &str,
    each: &mut dyn FnMut(SignedCheckpoint) -> Result<(), Failure>,
) -> Result<Result<(), Failure>, ExportError> {
    let file = match open_stream_file(dir, file_name, stream)? {
        Ok(file) => file,
        Err(failure) => return Ok(Err(failure)),
    };
    let path = dir.join(file_name);
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let line_max = CHECKPOINT_JSON_LEN_MAX + 1;
    for number in 1u64.. {
        line.clear();
        let read = (&mut reader)
            .take(line_max as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(io_error(&path))?;
        if read == 0 {
            break;
        }
        let failure = |problem: String| Failure {
            stream: stream.to_owned(),
            place: Place::Stream,
            problem: format!("line {number} of {file_name}: {problem}"),
        };
        if line.len() > line_max {
            return Ok(Err(failure(format!("longer than {line_max} bytes"))));
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match SignedCheckpoint::decode(text) {
            Ok(signed) => {
                if let Err(failure) = each(signed) {
                    return Ok(Err(failure));
                }
            }
            Err(e) => return Ok(Err(failure(e.to_string()))),
        }
    }
    Ok(Ok(()))
}

/// The lines of a stream's file; a missing one is the stream's failure.
fn count_lines(dir: &Path, file_name: &str, stream: &str) -> Result<u64, ProveError> {
    let mut file = open_stream_file(dir, file_name, stream)?.map_err(ProveError::Tampered)?;
    let path = dir.join(file_name);
    let mut buffer = vec![0u8; WRITE_BUFFER_LEN];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(&path)(e).into()),
        };
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buffer[n - 1];
    }
    // The last line may lack its line break.
    Ok(lines + u64::from(last != b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn find_newline_finds_the_first_line_break() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                // Bytes whose search words borrow: 0x0b is one above the line break.
                if len > 0 {
                    bytes[len - 1] = 0x0b;
                }
                let expected = (at < len).then_some(at);
                if at < len {
                    bytes[at] = b'\n';
                    if at + 1 < len {
                        bytes[at + 1] = b'\n';
                    }
                }
                assert_eq!(find_newline(&bytes), expected, "{bytes:?}");
                let reference = bytes.iter().position(|&b| b == b'\n');
                assert_eq!(find_newline(&bytes), reference, "{bytes:?}");
            }
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(find_newline(&all), Some(10));
        assert_eq!(find_newline(&all[11..]), None);
    }

    #[test]
    fn stream_names() {
        let check = |name: &str, expected: bool| {
            assert_eq!(valid_stream_name(name), expected, "{name:?}");
        };
        check("gateway-1", true);
        check("ledger.eu_west_1", true);
        check("a", true);
        check(&"a".repeat(128), true);
        check(&"a".repeat(129), false);
        check("", false);
        check(".hidden", false);
        check("..", false);
        check("a/b", false);
        check("a\\b", false);
        check("a b", false);
        check("é", false);
        check("a\n", false);
        check("manifest.json", true);
    }

    #[test]
    fn record_lines_are_sliced_without_a_json_parser() {
        let record = br#"{"v":1,"stream":"s","seq":0,"action":"a"}"#;
        let leaf = leaf_hash(record);
        let good = format!(
            r#"{{"leaf":"{}","record":{}}}"#,
            hex::encode(leaf),
            std::str::from_utf8(record).expect("utf-8")
        );
        let check = |line: &str, expected: Result<(), &str>| {
            let mut verifier = StreamVerifier::new("s", &PublicKeys::new());
            let got = verifier.add_prepared(prepare_line("s", line.as_bytes()));
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(failure), Err(problem)) => {
                    assert_eq!(failure.place, Place::Record(0));
                    assert!(failure.problem.contains(problem), "{failure}");
                }
                (got, _) => panic!("{line}: {got:?}"),
            }
        };
        check(&good, Ok(()));
        check(&format!("{good} "), Err("its line is not"));
        check(&format!(" {good}"), Err("its line is not"));
        check(&format!("{good}\r"), Err("its line is not"));
        check(
            &good.replace("\"leaf\"", "\"Leaf\""),
            Err("its line is not"),
        );
        check(
            &good.replace(&hex::encode(leaf), &hex::encode(leaf).to_uppercase()),
            Err("its line is not"),
        );
        check(
            &good.replace(&hex::encode(leaf), &hex::encode(leaf)[1..]),
            Err("its line is not"),
        );
        check(
            &good.replace("\"record\":", "\"record\" :"),
            Err("its line is not"),
        );
        check(
            &good.replace("\"seq\":0", "\"seq\":00"),
            Err("not a JSON audit record"),
        );
        check(
            &good.replace("\"a\"}", "\"a\"},\"x\":1"),
            Err("not a JSON audit record"),
        );
        check(
            &good.replace("\"a\"", "\"b\""),
            Err("does not match the leaf hash"),
        );
        check("", Err("its line is not"));
        check("}", Err("its line is not"));
    }

    #[test]
    fn lines_are_split_at_every_line_break() {
        let line = |seq: u64| {
            let record = format!(r#"{{"v":1,"stream":"s","seq":{seq}}}"#);
            format!(
                "{{\"leaf\":\"{}\",\"record\":{record}}}\n",
                hex::encode(leaf_hash(record.as_bytes()))
            )
        };
        let block: String = (0..5).map(line).collect();
        let mut verifier = StreamVerifier::new("s", &PublicKeys::new());
        for prepared in prepare_lines("s", block.as_bytes()) {
            verifier.add_prepared(prepared).expect("record");
        }
        // The last line of a file may lack its line break.
        let last = line(5);
        for prepared in prepare_lines("s", last.trim_end().as_bytes()) {
            verifier.add_prepared(prepared).expect("record");
        }
        assert_eq!(verifier.finish().expect("verified").records, 6);
        assert_eq!(prepare_lines("s", b"").len(), 0);
        assert_eq!(prepare_lines("s", b"\n").len(), 1);
        assert_eq!(prepare_lines("s", b"\n\n").len(), 2);
    }

    #[test]
    fn the_writer_refuses_what_an_export_cannot_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("x"), b"x").expect("write");
        assert!(matches!(
            ExportWriter::create(dir.path()),
            Err(ExportError::NotEmpty { .. })
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = ExportWriter::create(&dir.path().join("new/export")).expect("create");
        let leaf = leaf_hash(b"{}");
        assert!(matches!(
            writer.record(&leaf, b"{}"),
            Err(ExportError::NoStream)
        ));
        for name in ["", ".x", "a/b", "../a", &"a".repeat(129)] {
            assert!(
                matches!(
                    writer.begin_stream(name),
                    Err(ExportError::StreamName { .. })
                ),
                "{name:?}"
            );
        }
        writer.begin_stream("s1").expect("stream");
        assert!(matches!(
            writer.begin_stream("s1"),
            Err(ExportError::DuplicateStream { .. })
        ));
        let refused = writer.record(&leaf, b"{\n}").expect_err("line break");
        assert_eq!(
            refused.to_string(),
            "record 0 of stream s1 holds a line break"
        );
        let long = vec![b' '; RECORD_LEN_MAX + 1];
        assert!(matches!(
            writer.record(&leaf, &long),
            Err(ExportError::BadRecord { .. })
        ));
        let signer = crate::checkpoint::LocalSigner::generate().expect("key");
        let other = signer.sign(&crate::checkpoint::Checkpoint {
            stream: "s2".into(),
            size: 0,
            root: crate::merkle::empty_root(),
            time: format_time(0),
        });
        assert!(matches!(
            writer.checkpoint(&other),
            Err(ExportError::WrongStream { .. })
        ));
        writer.finish().expect("finish");
    }
}
