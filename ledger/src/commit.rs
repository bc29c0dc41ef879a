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

/// A message to the committer.
#[derive(Debug)]
pub(crate) enum Message {
    /// Execute a command.
    Execute(Command, oneshot::Sender<Reply>),
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
            match message {
                Message::Barrier(paused, resume) => pause(paused, resume).await,
                Message::Execute(cmd, reply) => {
                    let batch = self.gather(cmd, reply).await;
                    let (commands, replies) = Self::admit(batch);
                    if commands.is_empty() {
                        continue;
                    }
                    let results = self.execute(&commands).await;
                    self.stats
                        .send_modify(|s| s.requests += commands.len() as u64);
                    answer(replies, results, commands.len());
                }
            }
        }
        tracing::debug!("committer stopped");
    }

    /// Collects a batch: everything queued, within the bounds, waiting up to `config.wait`.
    ///
    /// A command that alone needs more items than one transaction holds is refused here, and
    /// only the first of a batch can be: its items within a batch are never fewer than alone,
    /// so one that does not fit alone does not fit after others either, and is carried to lead
    /// the next batch.
    async fn gather(
        &mut self,
        cmd: Command,
        reply: oneshot::Sender<Reply>,
    ) -> Vec<(Command, oneshot::Sender<Reply>)> {
        let items_max = self.store.limits().transaction_items_max;
        let mut budget = ItemBudget::default();
        let cost = budget.cost(&cmd, items_max);
        let items = budget.with(&cost);
        if items > items_max {
            let _ = reply.send(Err(Rejection::TooLarge {
                items,
                max: items_max,
            }
            .into()));
            return Vec::new();
        }
        budget.add(cost);
        let mut batch = vec![(cmd, reply)];
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
                    let cost = budget.cost(&cmd, items_max);
                    if budget.with(&cost) > items_max {
                        self.carry = Some(Message::Execute(cmd, reply));
                        break;
                    }
                    budget.add(cost);
                    batch.push((cmd, reply));
                }
                other => {
                    self.carry = Some(other);
                    break;
                }
            }
        }
        batch
    }

    /// Drops requests whose client left before anything was decided: nothing to acknowledge.
    fn admit(
        batch: Vec<(Command, oneshot::Sender<Reply>)>,
    ) -> (Vec<Command>, Vec<oneshot::Sender<Reply>>) {
        batch
            .into_iter()
            .filter(|(_, reply)| !reply.is_closed())
            .unzip()
    }

    /// Reads and plans a batch: a result per command, and the writes.
    async fn plan(&mut self, commands: &[Command]) -> Result<(Vec<Reply>, Vec<WriteOp>), Error> {
        let reads = self.read(commands).await?;
        let now = self.clock.now().max(self.last_now);
        self.last_now = now;
        let unit = self.store.limits().write_unit_bytes;
        let mut planner = Planner::new(now, &self.ids, &reads, unit);
        let results: Vec<Reply> = commands.iter().map(|c| planner.execute(c)).collect();
        let ops = planner.into_ops()?;
        Ok((results, ops))
    }

    /// Reads, plans and writes a batch, planning again (a bounded number of times, with
    /// jittered backoff) when another writer got in between.
    async fn execute(&mut self, commands: &[Command]) -> Result<Vec<Reply>, Error> {
        let mut attempt = 0;
        loop {
            let (results, ops) = self.plan(commands).await?;
            match self.store.transact_write(ops).await {
                Ok(()) => {
                    self.stats.send_modify(|s| s.transactions += 1);
                    return Ok(results);
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
                Err(e) => return Err(Error::Store(e)),
            }
        }
    }

    /// Reads what a batch needs.
    async fn read(&self, commands: &[Command]) -> Result<Snapshot, Error> {
        let mut reads = Snapshot::default();
        let first = first_reads(commands);
        let items = self.store.get_many(first.clone()).await?;
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
        Error::ShuttingDown => Error::ShuttingDown,
        other => Error::Corrupt(format!("batch failed: {other}")),
    }
}
