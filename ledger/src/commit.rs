//! Group commit: many requests, one storage transaction.
//!
//! Requests queue on a bounded channel (a full queue sheds load at once rather than building
//! latency). One committer task takes whatever is queued, up to a bounded batch and a bounded
//! wait, reads everything the batch needs, plans it in memory ([`crate::plan`]), and writes the
//! result in one conditional transaction.
//!
//! One batch is in the store at a time: the next is gathered from what queued meanwhile, so the
//! longer a write takes, the more requests the next one carries. (Pipelining batches, each
//! planned on the unconfirmed writes of those before it, with the SQLite journal on a thread of
//! its own, was measured slower on two cores than writing inline on the committer's thread, and
//! is unsafe on a store other processes write: see `bench/README.md`.)
//!
//! Nothing is acknowledged before the transaction that holds it returned. A request whose client
//! went away before its batch was planned is dropped unexecuted. When another writer (another
//! process on the same store) wins a condition, the batch is read and planned again, a bounded
//! number of times with jittered backoff.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::audit_log::stream::Entry;
use crate::command::{Command, Committed, ItemBudget, Outcome};
use crate::error::{Error, Rejection};
use crate::ids::IdGen;
use crate::limits::{
    COMMIT_BATCH_LEN_DEFAULT, COMMIT_QUEUE_LEN_DEFAULT, COMMIT_RETRIES_DEFAULT,
    COMMIT_WAIT_US_DEFAULT,
};
use crate::plan::{Planner, Snapshot, first_reads, second_reads};
use crate::store::{Store, StoreError, WriteOp};
use crate::time::{Clock, Timestamp};

/// Bounds of group commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitConfig {
    /// Requests that may wait for the committer; one more is refused as overload.
    pub queue_len_max: usize,
    /// Most requests in one transaction.
    pub batch_len_max: usize,
    /// How long the committer waits for more requests after the first of a batch. Zero (the
    /// default) takes only what is already queued. Tokio's timer counts in milliseconds, so any
    /// other value waits about a millisecond at least, which costs single transfers most of
    /// their rate (`bench/README.md`).
    pub wait: Duration,
    /// How often a batch is planned again after losing a condition to another writer.
    pub retries_max: u32,
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig {
            queue_len_max: COMMIT_QUEUE_LEN_DEFAULT,
            batch_len_max: COMMIT_BATCH_LEN_DEFAULT,
            wait: Duration::from_micros(COMMIT_WAIT_US_DEFAULT),
            retries_max: COMMIT_RETRIES_DEFAULT,
        }
    }
}

/// What a request gets back.
pub(crate) type Reply = Result<Committed<Outcome>, Error>;

/// What an audit append gets back: the record's sequence in the stream.
pub(crate) type AppendReply = Result<u64, Error>;

/// A message to the committer.
#[derive(Debug)]
pub(crate) enum Message {
    /// Execute a command.
    Execute(Command, oneshot::Sender<Reply>),
    /// Append an audit record of something other than a command (a read, a refusal).
    Append(Box<audit::Draft>, oneshot::Sender<AppendReply>),
    /// Finish the current batch, then pause: send on the first channel and wait until the
    /// second is dropped (or [`BARRIER_PAUSE_MAX`] passes). Readers use it for a snapshot that
    /// no write of this process interleaves with.
    Barrier(oneshot::Sender<()>, oneshot::Receiver<()>),
}

/// Longest pause a barrier can impose on writes.
pub const BARRIER_PAUSE_MAX: Duration = Duration::from_secs(10);

/// Statistics the committer keeps; for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions written.
    pub transactions: u64,
    /// Requests executed (acknowledged or refused).
    pub requests: u64,
    /// Batches planned again after a lost condition.
    pub retries: u64,
}

pub(crate) struct Committer {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<IdGen>,
    pub config: CommitConfig,
    pub rx: mpsc::Receiver<Message>,
    pub shutdown: watch::Receiver<bool>,
    pub stats: watch::Sender<CommitStats>,
    pub last_now: Timestamp,
    pub carry: Option<Message>,
    /// The stream this committer writes; `None` with the audit log off.
    pub audit: Option<crate::audit_log::stream::StreamWriter>,
    /// Set once the last record (the stop) is written: the checkpointer signs the last
    /// checkpoint then.
    pub stopped: watch::Sender<bool>,
}

/// One request of a batch.
pub(crate) enum Job {
    Command(Command, oneshot::Sender<Reply>),
    Append(Box<audit::Draft>, oneshot::Sender<AppendReply>),
}

/// Where a batch's request is: its command or its draft.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    Command(usize),
    Append(usize),
}

impl Job {
    fn closed(&self) -> bool {
        match self {
            Job::Command(_, r) => r.is_closed(),
            Job::Append(_, r) => r.is_closed(),
        }
    }
}

impl Committer {
    /// Runs until shutdown is signalled and the queue is drained.
    pub async fn run(mut self) {
        let mut closing = false;
        loop {
            let next = match self.carry.take() {
                Some(m) => Some(m),
                None => tokio::select! {
                    biased;
                    _ = self.shutdown.changed(), if !closing => {
                        // No new requests; what is queued still runs.
                        closing = true;
                        self.rx.close();
                        continue;
                    }
                    m = self.rx.recv() => m,
                },
            };
            let Some(message) = next else { break };
            let first = match message {
                Message::Barrier(paused, resume) => {
                    pause(paused, resume).await;
                    continue;
                }
                Message::Execute(cmd, reply) => Job::Command(cmd, reply),
                Message::Append(draft, reply) => Job::Append(draft, reply),
            };
            let batch = self.gather(first).await;
            let jobs: Vec<Job> = batch.into_iter().filter(|j| !j.closed()).collect();
            if jobs.is_empty() {
                continue;
            }
            self.run_jobs(jobs).await;
        }
        self.record_stop().await;
        let _ = self.stopped.send(true);
        tracing::debug!("committer stopped");
    }

    /// Executes a batch and answers each of its requests. Records take their sequence numbers
    /// in the order the requests arrived.
    async fn run_jobs(&mut self, jobs: Vec<Job>) {
        let mut commands = Vec::new();
        let mut replies = Vec::new();
        let mut drafts = Vec::new();
        let mut appended = Vec::new();
        let mut order = Vec::with_capacity(jobs.len());
        for (position, job) in jobs.into_iter().enumerate() {
            match job {
                Job::Command(c, r) => {
                    order.push(Slot::Command(commands.len()));
                    commands.push(c);
                    replies.push(r);
                }
                Job::Append(d, r) => {
                    order.push(Slot::Append(drafts.len()));
                    drafts.push(*d);
                    appended.push((position as u64, r));
                }
            }
        }
        let results = self.execute(&commands, &drafts, &order).await;
        self.stats
            .send_modify(|s| s.requests += commands.len() as u64);
        match results {
            Ok((results, first_seq)) => {
                if self.audit.is_some() {
                    // Each command's record committed with it, success or refusal.
                    for scope in commands.iter().filter_map(|c| c.scope.as_ref()) {
                        scope.mark_recorded();
                    }
                }
                answer(replies, Ok(results), commands.len());
                for (position, reply) in appended {
                    let _ = reply.send(Ok(first_seq + position));
                }
            }
            Err(error) => {
                for (_, reply) in appended {
                    let _ = reply.send(Err(copy_error(&error)));
                }
                answer(replies, Err(error), commands.len());
            }
        }
    }

    /// Writes the stream's last record: the service stopping.
    async fn record_stop(&mut self) {
        if self.audit.is_none() {
            return;
        }
        let draft = audit::Draft::success(
            "service.stop",
            audit::Actor::default(),
            audit::Origin::default(),
        );
        if let Err(e) = self.execute(&[], &[draft], &[Slot::Append(0)]).await {
            tracing::error!(error = %e, "the audit record of the service stopping was not written");
        }
    }

    /// Collects a batch: everything queued, within the bounds, waiting up to `config.wait`.
    ///
    /// A command that alone needs more items than one transaction holds is refused here, and
    /// only the first of a batch can be: its items within a batch are never fewer than alone,
    /// so one that does not fit alone does not fit after others either, and is carried to lead
    /// the next batch.
    async fn gather(&mut self, first: Job) -> Vec<Job> {
        let items_max = self.store.limits().transaction_items_max;
        let audit = self.audit.is_some();
        let mut budget = ItemBudget::default();
        let cost = match &first {
            Job::Command(cmd, _) => budget.cost(cmd, items_max, audit),
            Job::Append(draft, _) => ItemBudget::cost_append(draft),
        };
        let items = budget.with(&cost);
        if items > items_max {
            match first {
                Job::Command(_, reply) => {
                    let _ = reply.send(Err(Rejection::TooLarge {
                        items,
                        max: items_max,
                    }
                    .into()));
                }
                Job::Append(_, reply) => {
                    let _ = reply.send(Err(Error::Corrupt(format!(
                        "an audit record of {items} store items; at most {items_max}"
                    ))));
                }
            }
            return Vec::new();
        }
        budget.add(cost);
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.config.wait;
        while batch.len() < self.config.batch_len_max {
            let next = match self.rx.try_recv() {
                Ok(m) => m,
                Err(mpsc::error::TryRecvError::Empty) if !self.config.wait.is_zero() => {
                    match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                        Ok(Some(m)) => m,
                        _ => break,
                    }
                }
                Err(_) => break,
            };
            match next {
                Message::Execute(cmd, reply) => {
                    let cost = budget.cost(&cmd, items_max, audit);
                    if budget.with(&cost) > items_max {
                        self.carry = Some(Message::Execute(cmd, reply));
                        break;
                    }
                    budget.add(cost);
                    batch.push(Job::Command(cmd, reply));
                }
                Message::Append(draft, reply) => {
                    let cost = ItemBudget::cost_append(&draft);
                    if budget.with(&cost) > items_max {
                        self.carry = Some(Message::Append(draft, reply));
                        break;
                    }
                    budget.add(cost);
                    batch.push(Job::Append(draft, reply));
                }
                other => {
                    self.carry = Some(other);
                    break;
                }
            }
        }
        batch
    }

    /// Reads and plans a batch: a result per command, the writes, and the batch's instant.
    async fn plan(
        &mut self,
        commands: &[Command],
    ) -> Result<(Vec<Reply>, Vec<WriteOp>, Timestamp), Error> {
        let reads = if commands.is_empty() {
            Snapshot::default()
        } else {
            self.read(commands).await?
        };
        let now = self.clock.now().max(self.last_now);
        self.last_now = now;
        let unit = self.store.limits().write_unit_bytes;
        let mut planner = Planner::new(now, &self.ids, &reads, unit);
        let results: Vec<Reply> = commands.iter().map(|c| planner.execute(c)).collect();
        let ops = planner.into_ops()?;
        Ok((results, ops, now))
    }

    /// Reads, plans and writes a batch with the audit records of its commands and of
    /// `drafts`, planning again (a bounded number of times, with jittered backoff) when another
    /// writer got in between. Returns the results and the sequence of the batch's first record.
    /// The stream's head includes the batch's records before any of its requests is answered,
    /// so a checkpoint signed once a write is acknowledged covers the write's record.
    async fn execute(
        &mut self,
        commands: &[Command],
        drafts: &[audit::Draft],
        order: &[Slot],
    ) -> Result<(Vec<Reply>, u64), Error> {
        let mut attempt = 0;
        loop {
            if let Some(stream) = &mut self.audit
                && stream.uncertain
            {
                stream.resync(&*self.store).await?;
            }
            let (results, mut ops, now) = self.plan(commands).await?;
            let ledger_ops = ops.len();
            let mut built = self.audit.as_ref().map(|stream| {
                let records = order.iter().map(|slot| match *slot {
                    Slot::Command(i) => crate::audit_log::command_entry(&commands[i], &results[i]),
                    Slot::Append(i) => Entry::Draft(drafts[i].clone()),
                });
                stream.build(records, now)
            });
            let first_seq = self.audit.as_ref().map_or(0, |s| s.next_seq());
            if let Some(built) = &mut built {
                ops.append(&mut built.ops);
            }
            let leaves = built.map(|b| b.leaves).unwrap_or_default();
            if ops.is_empty() {
                return Ok((results, first_seq));
            }
            match self.store.transact_write(ops).await {
                Ok(()) => {
                    self.stats.send_modify(|s| s.transactions += 1);
                    if let Some(stream) = &mut self.audit {
                        stream.committed(leaves);
                    }
                    return Ok((results, first_seq));
                }
                Err(StoreError::ConditionFailed { index })
                    if index >= ledger_ops && attempt < self.config.retries_max =>
                {
                    // The stream's next block is taken: read what is there, then number again.
                    attempt += 1;
                    tracing::warn!(
                        index,
                        "an audit block was already written; reading the stream back"
                    );
                    if let Some(stream) = &mut self.audit {
                        stream.uncertain = true;
                    }
                }
                Err(StoreError::ConditionFailed { index }) if attempt < self.config.retries_max => {
                    attempt += 1;
                    self.stats.send_modify(|s| s.retries += 1);
                    tracing::info!(
                        attempt,
                        index,
                        "another writer won a condition; planning again"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(StoreError::ConditionFailed { .. }) => return Err(Error::Contention),
                Err(e) => {
                    // Whether it landed is unknown: read the stream back before the next.
                    if let Some(stream) = &mut self.audit {
                        stream.uncertain = true;
                    }
                    return Err(Error::Store(e));
                }
            }
        }
    }

    /// Reads what a batch needs. Where the store checks conditions against what was just read
    /// ([`Store::conditions_use_reads`]), the keys of the batch's audit records come along in
    /// the same call: their answer is not used here, but it spares the write a lookup.
    async fn read(&self, commands: &[Command]) -> Result<Snapshot, Error> {
        let mut reads = Snapshot::default();
        let first = first_reads(commands);
        let mut keys = first.clone();
        if let Some(stream) = &self.audit
            && self.store.conditions_use_reads()
        {
            keys.extend(stream.next_keys());
        }
        let items = self.store.get_many(keys).await?;
        reads.extend(first.into_iter().zip(items));
        let second = second_reads(commands, &reads)?;
        if !second.is_empty() {
            let items = self.store.get_many(second.clone()).await?;
            reads.extend(second.into_iter().zip(items));
        }
        Ok(reads)
    }
}

fn answer(
    replies: Vec<oneshot::Sender<Reply>>,
    results: Result<Vec<Reply>, Error>,
    requests: usize,
) {
    match results {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(error) => fail_all(replies, &error, requests),
    }
}

fn fail_all(replies: Vec<oneshot::Sender<Reply>>, error: &Error, requests: usize) {
    tracing::error!(%error, requests, "batch failed; nothing acknowledged");
    for reply in replies {
        let _ = reply.send(Err(copy_error(error)));
    }
}

async fn pause(paused: oneshot::Sender<()>, resume: oneshot::Receiver<()>) {
    if paused.send(()).is_ok() {
        // Either the reader is done (drops its sender) or the pause bound passes.
        let _ = tokio::time::timeout(BARRIER_PAUSE_MAX, resume).await;
    }
}

/// Full-jitter exponential backoff: uniform in [0, 1 ms × 2^attempt], at most 64 ms.
fn backoff(attempt: u32) -> Duration {
    crate::time::full_jitter(Duration::from_micros(1_000u64 << attempt.min(6)))
}

/// Errors are not `Clone` (store errors carry sources); a whole-batch failure is reported to
/// every request of the batch.
fn copy_error(error: &Error) -> Error {
    match error {
        Error::Store(e) => Error::Store(e.clone()),
        Error::Corrupt(why) => Error::Corrupt(why.clone()),
        Error::Contention => Error::Contention,
        Error::Overloaded => Error::Overloaded,
        Error::ShuttingDown => Error::ShuttingDown,
        other => Error::Corrupt(format!("batch failed: {other}")),
    }
}
