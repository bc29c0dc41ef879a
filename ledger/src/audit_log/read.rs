//! Reading the audit log: records with filters and cursors, checkpoints, inclusion and
//! consistency proofs, export, and verification straight from the store.
//!
//! Every read is bounded: a page of records examines at most [`AUDIT_SCAN_RECORDS_MAX`] records
//! (a page may hold fewer than asked for and still have a next cursor); a proof reads at most
//! [`AUDIT_PROOF_LEAVES_MAX`] leaves; the registry is read at most [`AUDIT_STREAMS_MAX`] streams
//! at a time.

use audit::checkpoint::{PublicKeys, SignedCheckpoint};
use audit::merkle::{self, Hash};
use audit::{Outcome, Record};

use super::block::{Block, Stored};
use super::checkpointer::decode_checkpoint;
use super::stream::StreamInfo;
use crate::codec::decode;
use crate::error::{Error, Result};
use crate::layout;
use crate::service::Ledger;
use crate::store::{Query, Store};

/// Most records one page of [`Ledger::audit_events`] examines.
pub const AUDIT_SCAN_RECORDS_MAX: usize = 10_000;
/// Most records in one page.
pub const AUDIT_PAGE_LEN_MAX: usize = 500;
/// Most leaves a proof is computed from: 128 MiB of hashes.
pub const AUDIT_PROOF_LEAVES_MAX: u64 = 1 << 22;
/// Most streams listed.
pub const AUDIT_STREAMS_MAX: usize = 100_000;
/// Blocks read per store query.
const BLOCKS_PER_QUERY: usize = 16;

/// Which records a listing wants. Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only records of this tenant, and the service's own (which name none). The gateway sets
    /// it to the caller's tenant.
    pub tenant: Option<String>,
    /// At or after, microseconds since the epoch.
    pub from_us: Option<i64>,
    /// Before, microseconds since the epoch.
    pub to_us: Option<i64>,
    /// The actor's subject or client id.
    pub actor: Option<String>,
    /// The action, exactly, or every action of a noun when it ends in `.` (`transfer.`).
    pub action: Option<String>,
    /// A resource id: `kind:id`, or the id alone.
    pub resource: Option<String>,
    /// Success or failure.
    pub outcome: Option<Outcome>,
    /// One stream only.
    pub stream: Option<String>,
}

impl EventFilter {
    /// Whether a record passes.
    pub fn matches(&self, r: &Record) -> bool {
        if let Some(t) = &self.tenant
            && r.actor.tenant.as_ref().is_some_and(|rt| rt != t)
        {
            return false;
        }
        if self.from_us.is_some() || self.to_us.is_some() {
            let Some(at) = r.time_us() else { return false };
            if self.from_us.is_some_and(|f| at < f) || self.to_us.is_some_and(|t| at >= t) {
                return false;
            }
        }
        if let Some(a) = &self.actor
            && r.actor.subject.as_ref() != Some(a)
            && r.actor.client_id.as_ref() != Some(a)
        {
            return false;
        }
        if let Some(a) = &self.action {
            let hit = if a.ends_with('.') {
                r.action.starts_with(a.as_str())
            } else {
                &r.action == a
            };
            if !hit {
                return false;
            }
        }
        if let Some(want) = &self.resource {
            let hit = r
                .resources
                .iter()
                .any(|res| res == want || res.split_once(':').is_some_and(|(_, id)| id == want));
            if !hit {
                return false;
            }
        }
        if self.outcome.is_some_and(|o| o != r.outcome) {
            return false;
        }
        true
    }
}

/// A page of records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPage {
    /// The records, stream by stream (streams in name order), each stream's in sequence order.
    pub records: Vec<Record>,
    /// Where the next page starts, if there may be one.
    pub next_cursor: Option<String>,
}

/// A record, its leaf, the path to a root, and the checkpoint of that tree if one was signed.
pub type InclusionProof = audit::RecordProof;

/// Proof that one tree extends another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The stream.
    pub stream: String,
    /// The older tree's size and root.
    pub old_size: u64,
    /// Its root.
    pub old_root: Hash,
    /// The newer tree's size.
    pub new_size: u64,
    /// Its root.
    pub new_root: Hash,
    /// The proof (RFC 9162 section 2.1.4).
    pub proof: Vec<Hash>,
    /// Signed checkpoints of the two trees, where they exist.
    pub old_checkpoint: Option<SignedCheckpoint>,
    /// The newer tree's.
    pub new_checkpoint: Option<SignedCheckpoint>,
}

/// A cursor: `{stream}/{seq}`, the next record to examine.
fn parse_cursor(cursor: &str) -> Result<(String, u64)> {
    let (stream, seq) = cursor.rsplit_once('/').ok_or(Error::InvalidCursor)?;
    if !audit::export::valid_stream_name(stream) {
        return Err(Error::InvalidCursor);
    }
    let seq = seq.parse().map_err(|_| Error::InvalidCursor)?;
    Ok((stream.to_owned(), seq))
}

/// Reads a stream's blocks in order from the one holding `from_seq`, calling `each` with every
/// stored record from `from_seq` on, until it returns false.
async fn scan_stream(
    store: &dyn Store,
    stream: &str,
    from_seq: u64,
    mut each: impl FnMut(u64, Stored) -> Result<bool>,
) -> Result<()> {
    let partition = layout::audit_partition(stream);
    // The block holding `from_seq` starts at or before it.
    let mut back = Query::prefix(partition.clone(), layout::AUDIT_BLOCK_PREFIX, 1);
    back.to = layout::audit_block(stream, from_seq).sk;
    back.descending = true;
    let start = match store.query(back).await?.items.first() {
        Some(item) => item.key.sk.clone(),
        None => layout::audit_block(stream, 0).sk,
    };
    let mut query = Query::prefix(partition, layout::AUDIT_BLOCK_PREFIX, BLOCKS_PER_QUERY);
    query.from = start;
    loop {
        let page = store.query(query.clone()).await?;
        for item in &page.items {
            let block = Block::decode(item)?;
            for (i, stored) in block.records.into_iter().enumerate() {
                let seq = block.first_seq + i as u64;
                if seq < from_seq {
                    continue;
                }
                if !each(seq, stored)? {
                    return Ok(());
                }
            }
        }
        match page.next {
            Some(after) => query.after = Some(after),
            None => return Ok(()),
        }
    }
}

impl Ledger {
    /// Every stream in the registry, in name order, with its writer and start.
    pub async fn audit_streams(&self) -> Result<Vec<(String, StreamInfo)>> {
        let store = self.store()?;
        let mut query = Query::prefix(layout::AUDIT_STREAMS, "", 1000);
        let mut out = Vec::new();
        loop {
            let page = store.query(query.clone()).await?;
            for item in &page.items {
                out.push((item.key.sk.clone(), decode::<StreamInfo>(item)?));
            }
            if out.len() > AUDIT_STREAMS_MAX {
                return Err(Error::Corrupt(format!(
                    "more than {AUDIT_STREAMS_MAX} audit streams"
                )));
            }
            match page.next {
                Some(after) => query.after = Some(after),
                None => return Ok(out),
            }
        }
    }

    /// One page of records that pass `filter`, from `cursor` (or the first stream's start).
    pub async fn audit_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<EventPage> {
        let limit = limit.clamp(1, AUDIT_PAGE_LEN_MAX);
        let store = self.store()?;
        let (start_stream, start_seq) = match cursor {
            Some(c) => {
                let (s, n) = parse_cursor(c)?;
                (Some(s), n)
            }
            None => (None, 0),
        };
        let mut streams: Vec<(String, StreamInfo)> = self.audit_streams().await?;
        if let Some(only) = &filter.stream {
            streams.retain(|(name, _)| name == only);
        }
        if let Some(to) = filter.to_us {
            streams.retain(|(_, info)| info.started_at.micros() < to);
        }
        let mut records = Vec::new();
        let mut scanned = 0usize;
        for (name, _) in streams {
            let from = match &start_stream {
                Some(s) if name.as_str() < s.as_str() => continue,
                Some(s) if name == *s => start_seq,
                _ => 0,
            };
            let mut next: Option<u64> = None;
            let mut corrupt: Option<Error> = None;
            scan_stream(&*store, &name, from, |seq, stored| {
                if records.len() >= limit || scanned >= AUDIT_SCAN_RECORDS_MAX {
                    next = Some(seq);
                    return Ok(false);
                }
                scanned += 1;
                let record = match Record::decode(&stored.record) {
                    Ok(r) => r,
                    Err(e) => {
                        corrupt = Some(Error::Corrupt(format!("audit record {name}/{seq}: {e}")));
                        return Ok(false);
                    }
                };
                if filter
                    .to_us
                    .is_some_and(|to| record.time_us().is_some_and(|t| t >= to))
                {
                    // Records of a stream are in time order: none later in it passes.
                    return Ok(false);
                }
                if filter.matches(&record) {
                    records.push(record);
                }
                Ok(true)
            })
            .await?;
            if let Some(e) = corrupt {
                return Err(e);
            }
            if let Some(seq) = next {
                return Ok(EventPage {
                    records,
                    next_cursor: Some(format!("{name}/{seq}")),
                });
            }
        }
        Ok(EventPage {
            records,
            next_cursor: None,
        })
    }

    /// Every checkpoint of a stream, smallest tree first.
    pub async fn audit_checkpoints(&self, stream: &str) -> Result<Vec<SignedCheckpoint>> {
        let store = self.store()?;
        let mut query = Query::prefix(
            layout::audit_partition(stream),
            layout::AUDIT_CHECKPOINT_PREFIX,
            1000,
        );
        let mut out = Vec::new();
        loop {
            let page = store.query(query.clone()).await?;
            for item in &page.items {
                out.push(decode_checkpoint(item)?);
            }
            match page.next {
                Some(after) => query.after = Some(after),
                None => return Ok(out),
            }
        }
    }

    /// The latest checkpoint of a stream, if it has one.
    pub async fn audit_checkpoint_latest(&self, stream: &str) -> Result<Option<SignedCheckpoint>> {
        let store = self.store()?;
        let mut query = Query::prefix(
            layout::audit_partition(stream),
            layout::AUDIT_CHECKPOINT_PREFIX,
            1,
        );
        query.descending = true;
        match store.query(query).await?.items.first() {
            Some(item) => decode_checkpoint(item).map(Some),
            None => Ok(None),
        }
    }

    /// A stream's checkpoint of the tree of `size` records, if one was signed.
    async fn audit_checkpoint_at(
        &self,
        stream: &str,
        size: u64,
    ) -> Result<Option<SignedCheckpoint>> {
        let store = self.store()?;
        match store.get(layout::audit_checkpoint(stream, size)).await? {
            Some(item) => decode_checkpoint(&item).map(Some),
            None => Ok(None),
        }
    }

    /// The leaf hashes of a stream's first `size` records, hashed from the records, and the
    /// stored bytes of record `keep`, if asked for.
    async fn audit_leaves(
        &self,
        stream: &str,
        size: u64,
        keep: Option<u64>,
    ) -> Result<(Vec<Hash>, Option<Vec<u8>>)> {
        if size > AUDIT_PROOF_LEAVES_MAX {
            return Err(Error::AuditQuery(format!(
                "a proof over {size} records; at most {AUDIT_PROOF_LEAVES_MAX} (export the stream and run `strongroom audit proof` on the export)"
            )));
        }
        let store = self.store()?;
        let mut leaves = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut kept = None;
        let mut bad: Option<Error> = None;
        scan_stream(&*store, stream, 0, |seq, stored| {
            if seq >= size {
                return Ok(false);
            }
            if seq != leaves.len() as u64 {
                bad = Some(Error::Corrupt(format!(
                    "audit stream {stream}: record {seq} follows {}",
                    leaves.len()
                )));
                return Ok(false);
            }
            // The stored hash is a locator; a proof is of what is stored.
            leaves.push(merkle::leaf_hash(&stored.record));
            if keep == Some(seq) {
                kept = Some(stored.record);
            }
            Ok(true)
        })
        .await?;
        if let Some(e) = bad {
            return Err(e);
        }
        if (leaves.len() as u64) < size {
            return Err(Error::NotFound);
        }
        Ok((leaves, kept))
    }

    /// The size of the tree proofs default to: the stream's latest checkpoint's.
    async fn default_size(&self, stream: &str) -> Result<u64> {
        match self.audit_checkpoint_latest(stream).await? {
            Some(cp) => Ok(cp.checkpoint.size),
            None => Err(Error::AuditQuery(format!(
                "stream {stream} has no checkpoint yet; name a tree size"
            ))),
        }
    }

    /// Proof that record `seq` is in the tree of `size` records (default: the latest
    /// checkpoint's).
    pub async fn audit_inclusion(
        &self,
        stream: &str,
        seq: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof> {
        let size = match size {
            Some(s) => s,
            None => self.default_size(stream).await?,
        };
        if seq >= size {
            return Err(Error::AuditQuery(format!(
                "record {seq} is not in a tree of {size} records"
            )));
        }
        let (leaves, record) = self.audit_leaves(stream, size, Some(seq)).await?;
        let proof = merkle::inclusion_proof(&leaves, seq, size)
            .map_err(|e| Error::AuditQuery(e.to_string()))?;
        let index = usize::try_from(seq).map_err(|_| Error::NotFound)?;
        Ok(InclusionProof {
            stream: stream.to_owned(),
            seq,
            record: record.ok_or(Error::NotFound)?,
            leaf: leaves[index],
            tree_size: size,
            root: merkle::root(&leaves),
            proof,
            checkpoint: self.audit_checkpoint_at(stream, size).await?,
        })
    }

    /// Proof that the tree of `new_size` records (default: the latest checkpoint's) extends
    /// the tree of `old_size`.
    pub async fn audit_consistency(
        &self,
        stream: &str,
        old_size: u64,
        new_size: Option<u64>,
    ) -> Result<ConsistencyProof> {
        let new_size = match new_size {
            Some(s) => s,
            None => self.default_size(stream).await?,
        };
        if old_size == 0 || old_size > new_size {
            return Err(Error::AuditQuery(format!(
                "no consistency proof from {old_size} to {new_size} records: the old tree must be non-empty and no larger"
            )));
        }
        let (leaves, _) = self.audit_leaves(stream, new_size, None).await?;
        let old = usize::try_from(old_size).map_err(|_| Error::NotFound)?;
        let proof = merkle::consistency_proof(&leaves, old_size, new_size)
            .map_err(|e| Error::AuditQuery(e.to_string()))?;
        Ok(ConsistencyProof {
            stream: stream.to_owned(),
            old_size,
            old_root: merkle::root(&leaves[..old]),
            new_size,
            new_root: merkle::root(&leaves),
            proof,
            old_checkpoint: self.audit_checkpoint_at(stream, old_size).await?,
            new_checkpoint: self.audit_checkpoint_at(stream, new_size).await?,
        })
    }

    /// Writes every stream (records and checkpoints) to an export directory
    /// (`audit::export`); `progress` hears of each stream's records as they go.
    pub async fn audit_export(
        &self,
        dir: &std::path::Path,
        progress: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<u64> {
        let store = self.store()?;
        let io = |e: audit::export::ExportError| Error::AuditQuery(format!("export: {e}"));
        let mut writer = audit::export::ExportWriter::create(dir)
            .map_err(|e| Error::AuditQuery(format!("export: {e}")))?;
        let mut total = 0u64;
        for (name, _) in self.audit_streams().await? {
            writer
                .begin_stream(&name)
                .map_err(|e| Error::AuditQuery(format!("export: {e}")))?;
            for cp in self.audit_checkpoints(&name).await? {
                writer
                    .checkpoint(&cp)
                    .map_err(|e| Error::AuditQuery(format!("export: {e}")))?;
            }
            let mut done = 0u64;
            let mut failed: Option<audit::export::ExportError> = None;
            scan_stream(&*store, &name, 0, |_, stored| {
                if let Err(e) = writer.record(&stored.leaf, &stored.record) {
                    failed = Some(e);
                    return Ok(false);
                }
                done += 1;
                if done.is_multiple_of(65_536) {
                    progress(&name, done);
                }
                Ok(true)
            })
            .await?;
            if let Some(e) = failed {
                return Err(io(e));
            }
            progress(&name, done);
            total += done;
        }
        writer
            .finish()
            .map_err(|e| Error::AuditQuery(format!("export: {e}")))?;
        Ok(total)
    }

    /// Verifies every stream in the store, as `strongroom audit verify` does an export.
    pub async fn audit_verify(
        &self,
        keys: &PublicKeys,
        progress: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<audit::export::Report> {
        use audit::verify::{Failure, Place, StreamVerifier};
        let store = self.store()?;
        let mut report = audit::export::Report {
            streams: Vec::new(),
        };
        for (name, _) in self.audit_streams().await? {
            let mut verifier = StreamVerifier::new(&name, keys);
            let mut failure: Option<Failure> = None;
            for cp in self.audit_checkpoints(&name).await? {
                if let Err(f) = verifier.add_checkpoint(&cp) {
                    failure = Some(f);
                    break;
                }
            }
            if failure.is_none() {
                let mut done = 0u64;
                let scanned = scan_stream(&*store, &name, 0, |_, stored| {
                    if let Err(f) = verifier.add_record(&stored.record, Some(&stored.leaf)) {
                        failure = Some(f);
                        return Ok(false);
                    }
                    done += 1;
                    if done.is_multiple_of(65_536) {
                        progress(&name, done);
                    }
                    Ok(true)
                })
                .await;
                if let Err(e) = scanned {
                    failure.get_or_insert(Failure {
                        stream: name.clone(),
                        place: Place::Records {
                            from: done,
                            to: done,
                        },
                        problem: format!("cannot be read: {e}"),
                    });
                }
                progress(&name, done);
            }
            report.streams.push(match failure {
                Some(f) => Err(f),
                None => verifier.finish(),
            });
        }
        Ok(report)
    }
}
