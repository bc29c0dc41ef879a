//! The verifier of one stream: given its records and its signed checkpoints, says whether
//! anything was changed, removed, added or reordered, and where.
//!
//! It needs only the records' stored bytes, the checkpoints and the public keys, so that the
//! same code checks an export ([`crate::export::verify_export`]) and records read back from a
//! database by the crate that stores them. It is incremental: records are given one at a time,
//! in the order the source holds them, and memory stays bounded by the checkpoints, not the
//! records.
//!
//! # What is checked, first failure wins
//!
//! - Each checkpoint ([`StreamVerifier::add_checkpoint`]): its signature by a known key, its
//!   stream, and that no two checkpoints of the same size have different roots.
//! - Each record ([`StreamVerifier::add_record`]): that it is a JSON object of this schema
//!   version and stream, whose `seq` is its position; that it hashes to the leaf hash stored
//!   beside it, when the source stores one; and, when the records so far are as many as a
//!   checkpoint's size, that their Merkle root is the signed one.
//! - At the end ([`StreamVerifier::finish`]): that no checkpoint covers more records than
//!   there are.
//!
//! Consistency proofs between successive checkpoints are not needed here: every checkpoint's
//! root is recomputed from the same sequence of leaves, so each signed tree is a prefix of the
//! next one exactly when all of them match. The proofs of [`crate::merkle`] serve a party that
//! holds only roots, not records.
//!
//! A stream with no checkpoint is not a failure: [`StreamSummary::covered`] is then 0, and the
//! caller reports the records no checkpoint covers yet (written since the last one) as a
//! warning. Their content and order are still checked against their stored leaves and
//! sequence numbers, but nothing signed vouches for them.
//!
//! What this cannot see: records after the last checkpoint removed from the end, and a whole
//! stream removed. The first is bounded by how often checkpoints are signed; the second is for
//! whoever holds the list of streams (an export's manifest, the writers' registry).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::checkpoint::{PublicKeys, SignedCheckpoint};
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::record::SCHEMA_VERSION;

/// Most distinct checkpoint sizes one stream's verifier keeps (about 100 bytes each).
pub const CHECKPOINTS_MAX: usize = 1 << 20;
/// Longest piece of a record quoted in a failure, in characters.
const QUOTE_LEN_MAX: usize = 64;

/// Where a failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// The record at this position of the stream: its `seq` when the sequence is intact, and
    /// line `n + 1` of an export's records file.
    Record(u64),
    /// The records at these positions, both included.
    Records {
        /// The first.
        from: u64,
        /// The last.
        to: u64,
    },
    /// The checkpoint of this size.
    Checkpoint(u64),
    /// The stream as a whole.
    Stream,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Record(n) => write!(f, "record {n}"),
            Place::Records { from, to } => write!(f, "records {from}..{to}"),
            Place::Checkpoint(size) => write!(f, "checkpoint at size {size}"),
            Place::Stream => f.write_str("the stream"),
        }
    }
}

/// A stream that failed verification: where, and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The stream.
    pub stream: String,
    /// Where.
    pub place: Place,
    /// What, in words for an auditor.
    pub problem: String,
}

impl fmt::Display for Failure {
    /// `stream S, record 41: <problem>`; `stream S: <problem>` for the stream as a whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.place {
            Place::Stream => write!(f, "stream {}: {}", self.stream, self.problem),
            place => write!(f, "stream {}, {place}: {}", self.stream, self.problem),
        }
    }
}

impl std::error::Error for Failure {}

/// What a verified stream holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSummary {
    /// The stream.
    pub stream: String,
    /// Records verified.
    pub records: u64,
    /// Checkpoints whose signature verified (duplicates counted).
    pub checkpoints: u64,
    /// The size of the largest checkpoint verified: records past it are covered by no
    /// signature yet. 0 without checkpoints.
    pub covered: u64,
    /// The Merkle root of all the records.
    pub root: Hash,
}

/// A checkpoint kept until the records reach its size.
#[derive(Clone, Debug)]
struct Signed {
    root: Hash,
    time: String,
}

/// A record whose `seq` was ahead of its position, judged by the record after it.
#[derive(Clone, Copy, Debug)]
struct Jump {
    /// Its position.
    expected: u64,
    /// Its `seq`.
    seq: u64,
}

/// The verifier of one stream (see the module's documentation).
#[derive(Debug)]
pub struct StreamVerifier {
    stream: String,
    keys: PublicKeys,
    /// Checkpoints by size.
    checkpoints: BTreeMap<u64, Signed>,
    /// The smallest checkpoint size above the records so far.
    next_checkpoint: Option<u64>,
    /// Checkpoints whose signature verified.
    accepted: u64,
    /// The size of the last checkpoint the records matched.
    covered: u64,
    frontier: Frontier,
    jump: Option<Jump>,
    /// The first failure; every later call returns it.
    failed: Option<Failure>,
}

/// What a worker learns of one record before the verifier takes it in order: its leaf hash
/// and its place, computed apart so that export verification can hash on several threads.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    leaf: Hash,
    head: Result<Head, String>,
}

/// A record's `seq`, and whether its content matches the leaf stored with it.
#[derive(Clone, Copy, Debug)]
struct Head {
    seq: u64,
    leaf_matches: bool,
}

/// The fields of a record the verifier reads; the others are skipped (but must be JSON).
#[derive(Deserialize)]
struct RecordHead<'a> {
    v: u64,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    seq: u64,
}

impl Prepared {
    /// Hashes and reads `record` of `stream`.
    pub(crate) fn new(stream: &str, record: &[u8], stored_leaf: Option<&Hash>) -> Prepared {
        let leaf = leaf_hash(record);
        let head = read_head(stream, record).map(|seq| Head {
            seq,
            leaf_matches: stored_leaf.is_none_or(|stored| *stored == leaf),
        });
        Prepared { leaf, head }
    }

    /// The leaf hash of the record's bytes (zeros for a line that holds no record).
    pub(crate) fn leaf(&self) -> Hash {
        self.leaf
    }

    /// A line of the source that holds no record: `problem` says why.
    pub(crate) fn malformed(problem: String) -> Prepared {
        Prepared {
            leaf: [0; 32],
            head: Err(problem),
        }
    }
}

/// The `seq` of a record of `stream` at this schema version, or what is wrong with it.
fn read_head(stream: &str, record: &[u8]) -> Result<u64, String> {
    // serde reads a struct from an array too; a record is an object.
    if !record.trim_ascii_start().starts_with(b"{") {
        return Err(format!(
            "it is not a JSON object: {}",
            quote(&String::from_utf8_lossy(record))
        ));
    }
    let head: RecordHead<'_> = serde_json::from_slice(record)
        .map_err(|e| format!("it is not a JSON audit record: {e}"))?;
    if head.v != u64::from(SCHEMA_VERSION) {
        return Err(format!(
            "its schema version is {}; this build reads {SCHEMA_VERSION}",
            head.v
        ));
    }
    if head.stream != stream {
        return Err(format!("it belongs to stream {}", quote(&head.stream)));
    }
    Ok(head.seq)
}

/// `text` quoted, cut to [`QUOTE_LEN_MAX`] characters.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LEN_MAX) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

impl StreamVerifier {
    /// A verifier of `stream`, checking signatures with `keys`.
    pub fn new(stream: &str, keys: &PublicKeys) -> StreamVerifier {
        StreamVerifier {
            stream: stream.to_owned(),
            keys: keys.clone(),
            checkpoints: BTreeMap::new(),
            next_checkpoint: None,
            accepted: 0,
            covered: 0,
            frontier: Frontier::new(),
            jump: None,
            failed: None,
        }
    }

    /// The stream.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Records taken so far.
    pub fn records(&self) -> u64 {
        self.frontier.size()
    }

    /// Adds a checkpoint of the stream. Its signature is checked at once; checkpoints may come
    /// in any order, all before the records (one whose size the records have passed can no
    /// longer be checked, and is a failure).
    pub fn add_checkpoint(&mut self, signed: &SignedCheckpoint) -> Result<(), Failure> {
        if let Some(failure) = &self.failed {
            return Err(failure.clone());
        }
        let result = self.checkpoint(signed);
        if let Err(failure) = &result {
            self.failed = Some(failure.clone());
        }
        result
    }

    fn checkpoint(&mut self, signed: &SignedCheckpoint) -> Result<(), Failure> {
        let cp = &signed.checkpoint;
        let size = cp.size;
        let place = Place::Checkpoint(size);
        self.keys
            .verify(signed)
            .map_err(|e| self.failure(place, e.to_string()))?;
        if cp.stream != self.stream {
            return Err(self.failure(
                place,
                format!("it is signed for stream {}", quote(&cp.stream)),
            ));
        }
        if let Some(known) = self.checkpoints.get(&size) {
            if known.root != cp.root {
                return Err(self.failure(
                    place,
                    format!(
                        "two checkpoints signed at size {size} ({} and {}) have different \
                         roots: the stream was rewritten",
                        known.time, cp.time
                    ),
                ));
            }
            self.accepted += 1;
            return Ok(());
        }
        let records = self.frontier.size();
        if size < records {
            return Err(self.failure(
                place,
                format!(
                    "it was given after record {}: checkpoints come before records",
                    records - 1
                ),
            ));
        }
        if self.checkpoints.len() >= CHECKPOINTS_MAX {
            return Err(self.failure(
                place,
                format!("the stream has more than {CHECKPOINTS_MAX} checkpoints"),
            ));
        }
        self.checkpoints.insert(
            size,
            Signed {
                root: cp.root,
                time: cp.time.clone(),
            },
        );
        self.accepted += 1;
        if size == records {
            self.check_checkpoint(size)?;
        }
        self.next_checkpoint = self
            .checkpoints
            .range(records + 1..)
            .next()
            .map(|(s, _)| *s);
        Ok(())
    }

    /// Adds the stream's next record: its exact stored bytes, and the leaf hash stored beside it
    /// if the source has one.
    ///
    /// A record whose `seq` is ahead of its position is judged with the record after it (were
    /// records deleted, or two swapped?): its failure comes from the next call, or from
    /// [`StreamVerifier::finish`].
    pub fn add_record(&mut self, record: &[u8], stored_leaf: Option<&Hash>) -> Result<(), Failure> {
        let prepared = Prepared::new(&self.stream, record, stored_leaf);
        self.add_prepared(prepared)
    }

    /// [`StreamVerifier::add_record`] of a record hashed and read beforehand.
    pub(crate) fn add_prepared(&mut self, prepared: Prepared) -> Result<(), Failure> {
        if let Some(failure) = &self.failed {
            return Err(failure.clone());
        }
        let result = self.record(prepared);
        if let Err(failure) = &result {
            self.failed = Some(failure.clone());
        }
        result
    }

    fn record(&mut self, prepared: Prepared) -> Result<(), Failure> {
        let expected = self.frontier.size();
        if let Some(jump) = self.jump.take() {
            return Err(match prepared.head {
                Ok(Head { seq, .. }) if (jump.expected..jump.seq).contains(&seq) => self.failure(
                    Place::Record(jump.expected),
                    format!(
                        "record {} is out of order: it stands where record {} belongs, \
                         before record {seq}",
                        jump.seq, jump.expected
                    ),
                ),
                _ => self.missing(jump),
            });
        }
        let Head { seq, leaf_matches } = prepared
            .head
            .map_err(|problem| self.failure(Place::Record(expected), problem))?;
        if seq > expected {
            self.jump = Some(Jump { expected, seq });
            return Ok(());
        }
        if seq < expected {
            return Err(self.failure(
                Place::Record(expected),
                format!(
                    "record {seq} appears again / out of order after record {}",
                    expected - 1
                ),
            ));
        }
        if !leaf_matches {
            return Err(self.failure(
                Place::Record(seq),
                "its content does not match the leaf hash stored with it: a field was changed"
                    .to_owned(),
            ));
        }
        self.frontier.push(prepared.leaf);
        let size = self.frontier.size();
        if self.next_checkpoint == Some(size) {
            self.check_checkpoint(size)?;
            self.next_checkpoint = self.checkpoints.range(size + 1..).next().map(|(s, _)| *s);
        }
        Ok(())
    }

    /// Compares the root of the records so far, `size` of them, with the checkpoint of that
    /// size.
    fn check_checkpoint(&mut self, size: u64) -> Result<(), Failure> {
        let Some(signed) = self.checkpoints.get(&size) else {
            return Ok(());
        };
        if self.frontier.root() == signed.root {
            self.covered = size;
            return Ok(());
        }
        let problem = format!(
            "records {}..{} do not match the checkpoint signed at size {size} ({}): changed, \
             removed, added or reordered",
            self.covered,
            size.saturating_sub(1),
            signed.time
        );
        Err(match size {
            0 => self.failure(
                Place::Checkpoint(0),
                format!(
                    "the checkpoint of the empty stream ({}) does not have the empty tree's root",
                    signed.time
                ),
            ),
            _ => self.failure(
                Place::Records {
                    from: self.covered,
                    to: size - 1,
                },
                problem,
            ),
        })
    }

    /// Ends the stream: its summary, or its first failure.
    pub fn finish(mut self) -> Result<StreamSummary, Failure> {
        if let Some(failure) = self.failed.take() {
            return Err(failure);
        }
        if let Some(jump) = self.jump.take() {
            return Err(self.missing(jump));
        }
        let records = self.frontier.size();
        if let Some((&size, _)) = self.checkpoints.last_key_value()
            && size > records
        {
            return Err(self.failure(
                Place::Stream,
                format!(
                    "truncated: the checkpoint signed at size {size} covers more records than \
                     the {records} present"
                ),
            ));
        }
        debug_assert!(self.covered <= records);
        Ok(StreamSummary {
            root: self.frontier.root(),
            stream: self.stream,
            records,
            checkpoints: self.accepted,
            covered: self.covered,
        })
    }

    fn missing(&self, jump: Jump) -> Failure {
        self.failure(
            Place::Records {
                from: jump.expected,
                to: jump.seq - 1,
            },
            format!(
                "records {}..{} are missing (deleted?)",
                jump.expected,
                jump.seq - 1
            ),
        )
    }

    fn failure(&self, place: Place, problem: String) -> Failure {
        Failure {
            stream: self.stream.clone(),
            place,
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, LocalSigner};
    use crate::merkle::root;
    use crate::record::{Actor, Draft, Origin, Record, format_time};
    use aws_lc_rs::signature::Ed25519KeyPair;

    const STREAM: &str = "s1";
    const RECORDS: usize = 50;

    fn record(stream: &str, seq: u64) -> Vec<u8> {
        let draft = Draft::success("transfer.create", Actor::default(), Origin::default())
            .resource("transfer", seq);
        Record::stamp(draft, stream, seq, 1_764_000_000_000_000 + seq as i64).encode()
    }

    fn signed(
        signer: &LocalSigner,
        stream: &str,
        lines: &[Vec<u8>],
        size: usize,
    ) -> SignedCheckpoint {
        let leaves: Vec<Hash> = lines[..size].iter().map(|r| leaf_hash(r)).collect();
        signer.sign(&Checkpoint {
            stream: stream.to_owned(),
            size: size as u64,
            root: root(&leaves),
            time: format_time(1_764_000_000_000_000 + size as i64),
        })
    }

    /// A stream of [`RECORDS`] records with their stored leaves, checkpoints every 10.
    struct Case {
        signer: LocalSigner,
        checkpoints: Vec<SignedCheckpoint>,
        lines: Vec<(Vec<u8>, Option<Hash>)>,
    }

    impl Case {
        fn new() -> Case {
            let signer = LocalSigner::generate().expect("key");
            let records: Vec<Vec<u8>> = (0..RECORDS as u64).map(|i| record(STREAM, i)).collect();
            let checkpoints = (1..=RECORDS / 10)
                .map(|k| signed(&signer, STREAM, &records, k * 10))
                .collect();
            let lines = records
                .into_iter()
                .map(|r| {
                    let leaf = leaf_hash(&r);
                    (r, Some(leaf))
                })
                .collect();
            Case {
                signer,
                checkpoints,
                lines,
            }
        }

        /// Record `seq`'s text with `from` replaced by `to`.
        fn edit(&mut self, seq: usize, from: &str, to: &str) {
            let text = String::from_utf8(self.lines[seq].0.clone()).expect("utf-8");
            assert!(text.contains(from), "{text}");
            self.lines[seq].0 = text.replacen(from, to, 1).into_bytes();
        }

        fn reseal(&mut self, seq: usize) {
            self.lines[seq].1 = Some(leaf_hash(&self.lines[seq].0));
        }

        fn records(&self) -> Vec<Vec<u8>> {
            self.lines.iter().map(|(r, _)| r.clone()).collect()
        }

        fn run(&self, keys: &PublicKeys) -> Result<StreamSummary, Failure> {
            let mut verifier = StreamVerifier::new(STREAM, keys);
            for cp in &self.checkpoints {
                verifier.add_checkpoint(cp)?;
            }
            for (record, leaf) in &self.lines {
                verifier.add_record(record, leaf.as_ref())?;
            }
            verifier.finish()
        }
    }

    enum Expect {
        /// Records, checkpoints, covered.
        Ok(u64, u64, u64),
        /// Where, and a piece of the problem.
        Fails(Place, &'static str),
    }

    fn check(change: impl FnOnce(&mut Case), expected: Expect) {
        let mut case = Case::new();
        change(&mut case);
        let mut keys = PublicKeys::new();
        keys.add(case.signer.public_key()).expect("key");
        let got = case.run(&keys);
        match (got, expected) {
            (Ok(summary), Expect::Ok(records, checkpoints, covered)) => {
                assert_eq!(
                    (summary.records, summary.checkpoints, summary.covered),
                    (records, checkpoints, covered)
                );
                let leaves: Vec<Hash> = case.lines.iter().map(|(r, _)| leaf_hash(r)).collect();
                assert_eq!(summary.root, root(&leaves));
                assert_eq!(summary.stream, STREAM);
            }
            (Err(failure), Expect::Fails(place, problem)) => {
                assert_eq!(failure.place, place, "{failure}");
                assert!(failure.problem.contains(problem), "{failure}");
                assert_eq!(failure.stream, STREAM);
            }
            (Ok(summary), Expect::Fails(place, problem)) => {
                panic!("expected {place} {problem}, verified {summary:?}")
            }
            (Err(failure), Expect::Ok(..)) => panic!("{failure}"),
        }
    }

    use Expect::{Fails, Ok as Verifies};

    #[test]
    fn intact_streams_verify() {
        check(|_| {}, Verifies(50, 5, 50));
        check(|c| c.checkpoints.reverse(), Verifies(50, 5, 50));
        check(|c| c.checkpoints.clear(), Verifies(50, 0, 0));
        // Records written since the last checkpoint are not covered, and not a failure.
        check(|c| c.checkpoints.truncate(2), Verifies(50, 2, 20));
        // Sources without stored leaves.
        check(
            |c| c.lines.iter_mut().for_each(|l| l.1 = None),
            Verifies(50, 5, 50),
        );
        // The same checkpoint twice, and one of the empty stream.
        check(
            |c| c.checkpoints.push(c.checkpoints[0].clone()),
            Verifies(50, 6, 50),
        );
        check(
            |c| c.checkpoints.push(signed(&c.signer, STREAM, &[], 0)),
            Verifies(50, 6, 50),
        );
        check(
            |c| {
                c.lines.clear();
                c.checkpoints = vec![signed(&c.signer, STREAM, &[], 0)];
            },
            Verifies(0, 1, 0),
        );
    }

    #[test]
    fn changed_records_are_found() {
        check(
            |c| c.edit(23, "transfer:23", "transfer:24"),
            Fails(
                Place::Record(23),
                "does not match the leaf hash stored with it",
            ),
        );
        check(
            |c| {
                c.edit(23, "transfer:23", "transfer:24");
                c.reseal(23);
            },
            Fails(
                Place::Records { from: 20, to: 29 },
                "records 20..29 do not match the checkpoint signed at size 30 \
                 (2025-11-24T16:00:00.000030Z)",
            ),
        );
        check(
            |c| {
                c.edit(3, "success", "failure");
                c.lines[3].1 = None;
            },
            Fails(
                Place::Records { from: 0, to: 9 },
                "do not match the checkpoint",
            ),
        );
        // A forged record added with the seq of an existing one.
        check(
            |c| c.lines.insert(23, (record(STREAM, 23), None)),
            Fails(
                Place::Record(24),
                "record 23 appears again / out of order after record 23",
            ),
        );
        check(
            |c| c.edit(23, r#""v":1"#, r#""v":2"#),
            Fails(
                Place::Record(23),
                "its schema version is 2; this build reads 1",
            ),
        );
        check(
            |c| c.lines[23] = (record("s2", 23), None),
            Fails(Place::Record(23), "it belongs to stream \"s2\""),
        );
        check(
            |c| c.lines[23] = (b"{\"v\":1,\"stream\":\"s1\"".to_vec(), None),
            Fails(Place::Record(23), "it is not a JSON audit record"),
        );
        check(
            |c| c.lines[23] = (b"[1,\"s1\",23]".to_vec(), None),
            Fails(Place::Record(23), "it is not a JSON object"),
        );
        check(
            |c| {
                c.lines[23] = (
                    b"{\"v\":1,\"stream\":\"s1\",\"seq\":23,\"seq\":23}".to_vec(),
                    None,
                )
            },
            Fails(Place::Record(23), "duplicate field"),
        );
        check(
            |c| c.lines[23] = (vec![0xff; 100], None),
            Fails(Place::Record(23), "it is not a JSON object"),
        );
    }

    #[test]
    fn missing_and_reordered_records_are_named() {
        check(
            |c| {
                c.lines.remove(23);
            },
            Fails(
                Place::Records { from: 23, to: 23 },
                "records 23..23 are missing (deleted?)",
            ),
        );
        check(
            |c| {
                c.lines.drain(23..26);
            },
            Fails(
                Place::Records { from: 23, to: 25 },
                "records 23..25 are missing",
            ),
        );
        check(
            |c| c.lines.swap(23, 24),
            Fails(
                Place::Record(23),
                "record 24 is out of order: it stands where record 23 belongs, before record 23",
            ),
        );
        check(
            |c| c.lines.swap(23, 37),
            Fails(Place::Record(23), "record 37 is out of order"),
        );
        check(
            |c| c.lines.swap(0, 1),
            Fails(Place::Record(0), "record 1 is out of order"),
        );
        check(
            |c| {
                c.lines.remove(49);
                c.checkpoints.pop();
            },
            Verifies(49, 4, 40),
        );
        check(
            |c| {
                let last = c.lines.pop().expect("a record");
                c.lines.pop();
                c.lines.push(last);
            },
            Fails(
                Place::Records { from: 48, to: 48 },
                "records 48..48 are missing",
            ),
        );
        check(
            |c| {
                c.lines.truncate(45);
            },
            Fails(
                Place::Stream,
                "truncated: the checkpoint signed at size 50 covers more records than the 45 \
                 present",
            ),
        );
        check(
            |c| c.lines.clear(),
            Fails(
                Place::Stream,
                "size 50 covers more records than the 0 present",
            ),
        );
    }

    #[test]
    fn bad_checkpoints_are_named_by_size() {
        check(
            |c| c.checkpoints[2].checkpoint.root[0] ^= 1,
            Fails(Place::Checkpoint(30), "the signature does not verify"),
        );
        check(
            |c| {
                // Another key signs the message naming the writer's key id.
                let forger = Ed25519KeyPair::generate().expect("key");
                let mut forged = c.checkpoints[2].clone();
                forged.checkpoint.root[0] ^= 1;
                forged.signature = forger.sign(&forged.message()).as_ref().to_vec();
                c.checkpoints[2] = forged;
            },
            Fails(Place::Checkpoint(30), "the signature does not verify"),
        );
        check(
            |c| {
                let stranger = LocalSigner::generate().expect("key");
                c.checkpoints[2] = signed(&stranger, STREAM, &c.records(), 30);
            },
            Fails(Place::Checkpoint(30), "signed by an unknown key"),
        );
        check(
            |c| c.checkpoints[2] = signed(&c.signer, "s2", &c.records(), 30),
            Fails(Place::Checkpoint(30), "it is signed for stream \"s2\""),
        );
        // The writer's key signed another root at the same size: a rewritten stream.
        check(
            |c| {
                let mut other = c.records();
                other[29] = record(STREAM, 99);
                c.checkpoints.push(signed(&c.signer, STREAM, &other, 30));
            },
            Fails(Place::Checkpoint(30), "two checkpoints signed at size 30"),
        );
        check(
            |c| {
                let mut other = c.records();
                other[29] = record(STREAM, 99);
                c.checkpoints[2] = signed(&c.signer, STREAM, &other, 30);
            },
            Fails(
                Place::Records { from: 20, to: 29 },
                "do not match the checkpoint",
            ),
        );
        check(
            |c| {
                let mut empty = signed(&c.signer, STREAM, &[], 0);
                empty.checkpoint.root = leaf_hash(b"");
                c.checkpoints.push(c.signer.sign(&empty.checkpoint));
            },
            Fails(Place::Checkpoint(0), "does not have the empty tree's root"),
        );
    }

    #[test]
    fn a_failure_stays_and_reads_as_a_sentence() {
        let case = Case::new();
        let mut keys = PublicKeys::new();
        keys.add(case.signer.public_key()).expect("key");
        let mut verifier = StreamVerifier::new(STREAM, &keys);
        verifier
            .add_record(&case.lines[0].0, None)
            .expect("record 0");
        verifier
            .add_record(&case.lines[1].0, None)
            .expect("record 1");
        // Too late for a checkpoint of size 1; one of size 2 can still be checked.
        let late = verifier.add_checkpoint(&case.checkpoints[0]);
        assert!(late.is_ok(), "size 10 is ahead: {late:?}");
        let too_late = signed(&case.signer, STREAM, &case.records(), 1);
        let failure = verifier.add_checkpoint(&too_late).expect_err("too late");
        assert_eq!(
            failure.to_string(),
            "stream s1, checkpoint at size 1: it was given after record 1: checkpoints come \
             before records"
        );
        assert_eq!(
            verifier.add_record(&case.lines[2].0, None),
            Err(failure.clone())
        );
        assert_eq!(verifier.finish(), Err(failure));

        let show = |place, problem: &str| {
            Failure {
                stream: "s".into(),
                place,
                problem: problem.into(),
            }
            .to_string()
        };
        assert_eq!(show(Place::Record(41), "p"), "stream s, record 41: p");
        assert_eq!(
            show(Place::Records { from: 1, to: 2 }, "p"),
            "stream s, records 1..2: p"
        );
        assert_eq!(
            show(Place::Checkpoint(9), "p"),
            "stream s, checkpoint at size 9: p"
        );
        assert_eq!(show(Place::Stream, "p"), "stream s: p");
    }
}
