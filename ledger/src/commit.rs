//! Group commit: many requests, one storage transaction.
//!
//! Requests queue on a bounded channel (a full queue sheds load at once rather than building
//! latency). One committer task takes whatever is queued, up to a bounded batch and a bounded
//! wait, reads everything the batch needs, plans it in memory ([`crate::plan`]), and writes the
//! result in one conditional transaction.
//!
//! Batches are pipelined when this process is the store's only writer (`StoreLimits::
//! sole_writer`; otherwise one batch at a time): up to [`PIPELINE_DEPTH`] of them can be in
//! the store at once, each
//! planned on top of the writes of those before it (an overlay), so the committer plans while
//! the store syncs. A store may then make several of them durable with one sync (the SQLite
//! journal does). Answers go out strictly in order: a batch is answered only when it and every
//! batch before it landed. If one fails, the batches behind it are executed again from a fresh
//! read; their idempotency keys make that safe even where their writes did land.
//!
//! Nothing is acknowledged before the transaction that holds it returned. A request whose client
//! went away before its batch was planned is dropped unexecuted. When another writer (another
//! process on the same store) wins a condition, the batch is read and planned again, a bounded
//! number of times with jittered backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

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

/// Most batches in the store at once.
pub const PIPELINE_DEPTH: usize = 4;

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
    /// Runs until shutdown is signalled, the queue is drained and every batch has landed.
    pub async fn run(mut self) {
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut closing = false;
        loop {
            let depth = if self.store.limits().sole_writer {
                PIPELINE_DEPTH
            } else {
                1
            };
            let room = inflight.len() < depth;
            let next = match self.carry.take() {
                Some(m) if room => Some(m),
                carried => {
                    self.carry = carried;
                    tokio::select! {
                        biased;
                        done = front(&mut inflight) => {
                            self.land_front(&mut inflight, done).await;
                            continue;
                        }
                        m = self.rx.recv(), if room && self.carry.is_none() => m,
                        _ = self.shutdown.changed(), if !closing => {
                            // No new requests; what is queued still runs.
                            closing = true;
                            self.rx.close();
                            continue;
                        }
                    }
                }
            };
            let Some(message) = next else { break };
            match message {
                Message::Barrier(paused, resume) => {
                    while let Some(done) = front_now(&mut inflight).await {
                        self.land_front(&mut inflight, done).await;
                    }
                    pause(paused, resume).await;
                }
                Message::Execute(cmd, reply) => {
                    let batch = self.gather(cmd, reply).await;
                    if let Some(flight) = self.launch(batch, &inflight).await {
                        inflight.push_back(flight);
                    }
                }
            }
        }
        while let Some(done) = front_now(&mut inflight).await {
            self.land_front(&mut inflight, done).await;
        }
        tracing::debug!("committer stopped");
    }

    /// Plans a batch on top of the batches in flight and starts writing it.
    async fn launch(
        &mut self,
        batch: Vec<(Command, oneshot::Sender<Reply>)>,
        inflight: &VecDeque<InFlight>,
    ) -> Option<InFlight> {
        let (commands, replies) = self.admit(batch);
        if commands.is_empty() {
            return None;
        }
        let overlays = overlays(inflight);
        match self.plan(&commands, &overlays).await {
            Ok((results, ops, overlay)) => {
                let store = self.store.clone();
                let write = tokio::spawn(async move { store.transact_write(ops).await });
                Some(InFlight {
                    write,
                    commands,
                    replies,
                    results,
                    overlay: Arc::new(overlay),
                })
            }
            Err(error) => {
                fail_all(replies, &error, commands.len());
                None
            }
        }
    }

    /// Answers the oldest batch in flight. If it failed, the batches behind it were planned on
    /// writes that did not happen: they are waited for and executed again from fresh reads.
    async fn land_front(&mut self, inflight: &mut VecDeque<InFlight>, done: WriteResult) {
        let Some(flight) = inflight.pop_front() else {
            return;
        };
        let landed = matches!(done, Ok(Ok(())));
        self.land(flight, done).await;
        if landed {
            return;
        }
        while let Some(mut behind) = inflight.pop_front() {
            let _ = (&mut behind.write).await;
            self.stats.send_modify(|s| s.retries += 1);
            let results = self.execute(&behind.commands).await;
            self.stats
                .send_modify(|s| s.requests += behind.commands.len() as u64);
            answer(behind.replies, results, behind.commands.len());
        }
    }

    /// Collects a batch: everything queued, within the bounds, waiting up to `config.wait`.
    async fn gather(
        &mut self,
        cmd: Command,
        reply: oneshot::Sender<Reply>,
    ) -> Vec<(Command, oneshot::Sender<Reply>)> {
        let items_max = self.store.limits().transaction_items_max;
        let mut budget = ItemBudget::default();
        budget.add(budget.cost(&cmd, items_max));
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

    /// Drops requests whose client left, refuses requests too large for one transaction.
    fn admit(
        &self,
        batch: Vec<(Command, oneshot::Sender<Reply>)>,
    ) -> (Vec<Command>, Vec<oneshot::Sender<Reply>>) {
        let items_max = self.store.limits().transaction_items_max;
        let mut commands = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for (cmd, reply) in batch {
            if reply.is_closed() {
                continue; // the client left before anything was decided: nothing to acknowledge
            }
            let alone = ItemBudget::default();
            let items = alone.with(&alone.cost(&cmd, items_max));
            if items > items_max {
                let _ = reply.send(Err(Rejection::TooLarge {
                    items,
                    max: items_max,
                }
                .into()));
                continue;
            }
            commands.push(cmd);
            replies.push(reply);
        }
        (commands, replies)
    }

    /// Reads and plans a batch; `overlays` hold the writes of the batches still in flight,
    /// oldest first.
    async fn plan(
        &mut self,
        commands: &[Command],
        overlays: &[Arc<Snapshot>],
    ) -> Result<Planned, Error> {
        let reads = self.read(commands, overlays).await?;
        let now = self.clock.now().max(self.last_now);
        self.last_now = now;
        let mut planner = Planner::new(now, &self.ids, &reads);
        let results: Vec<Reply> = commands.iter().map(|c| planner.execute(c)).collect();
        let ops = planner.into_ops()?;
        // What later batches may read of this one's writes: all but entries.
        let overlay = ops
            .iter()
            .filter(|op| !crate::layout::is_entry(op.key()))
            .map(|op| match op {
                WriteOp::Put { item, .. } => (item.key.clone(), Some(item.clone())),
                WriteOp::Delete { key, .. } => (key.clone(), None),
            })
            .collect();
        Ok((results, ops, overlay))
    }

    /// Answers the requests of a batch whose write finished; on a lost condition, runs it again
    /// (unpipelined, with retries).
    async fn land(&mut self, flight: InFlight, done: WriteResult) {
        let InFlight {
            commands,
            replies,
            results,
            ..
        } = flight;
        self.stats
            .send_modify(|s| s.requests += commands.len() as u64);
        let results = match done {
            Ok(Ok(())) => {
                self.stats.send_modify(|s| s.transactions += 1);
                Ok(results)
            }
            Ok(Err(StoreError::ConditionFailed { index })) => {
                self.stats.send_modify(|s| s.retries += 1);
                tracing::info!(index, "another writer won a condition; planning again");
                self.execute(&commands).await
            }
            Ok(Err(e)) => Err(Error::Store(e)),
            Err(join) => Err(Error::Store(StoreError::Unavailable(format!(
                "store task: {join}"
            )))),
        };
        answer(replies, results, commands.len());
    }

    /// Reads, plans and writes a batch on its own, planning again when another writer got in
    /// between.
    async fn execute(&mut self, commands: &[Command]) -> Result<Vec<Reply>, Error> {
        let mut attempt = 0;
        loop {
            let (results, ops, _) = self.plan(commands, &[]).await?;
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

    /// Reads what a batch needs; values written by batches in flight win over the store's.
    async fn read(
        &self,
        commands: &[Command],
        overlays: &[Arc<Snapshot>],
    ) -> Result<Snapshot, Error> {
        let mut reads = Snapshot::default();
        let first = first_reads(commands);
        let items = self.store.get_many(first.clone()).await?;
        reads.extend(first.into_iter().zip(items));
        lay_over(&mut reads, overlays);
        let second = second_reads(commands, &reads)?;
        if !second.is_empty() {
            let items = self.store.get_many(second.clone()).await?;
            reads.extend(second.into_iter().zip(items));
            lay_over(&mut reads, overlays);
        }
        Ok(reads)
    }
}

/// A batch being written.
struct InFlight {
    write: JoinHandle<Result<(), StoreError>>,
    commands: Vec<Command>,
    replies: Vec<oneshot::Sender<Reply>>,
    results: Vec<Reply>,
    /// Its writes, for planning the batches behind it.
    overlay: Arc<Snapshot>,
}

/// A planned batch: results per command, the writes, and the writes as an overlay.
type Planned = (Vec<Reply>, Vec<WriteOp>, Snapshot);

/// How a write task ended.
type WriteResult = Result<Result<(), StoreError>, tokio::task::JoinError>;

/// Resolves when the oldest batch in flight finished writing; never, if there is none.
async fn front(inflight: &mut VecDeque<InFlight>) -> WriteResult {
    match inflight.front_mut() {
        Some(flight) => (&mut flight.write).await,
        None => std::future::pending().await,
    }
}

/// The oldest batch's result, waiting for it; `None` if nothing is in flight.
async fn front_now(inflight: &mut VecDeque<InFlight>) -> Option<WriteResult> {
    match inflight.front_mut() {
        Some(flight) => Some((&mut flight.write).await),
        None => None,
    }
}

/// The writes of the batches in flight, oldest first (shared, not copied).
fn overlays(inflight: &VecDeque<InFlight>) -> Vec<Arc<Snapshot>> {
    inflight
        .iter()
        .map(|flight| flight.overlay.clone())
        .collect()
}

/// Replaces read values by the in-flight batches' writes of the same keys, the newest winning.
fn lay_over(reads: &mut Snapshot, overlays: &[Arc<Snapshot>]) {
    if overlays.is_empty() {
        return;
    }
    for (key, value) in reads.iter_mut() {
        if let Some(written) = overlays.iter().rev().find_map(|o| o.get(key)) {
            value.clone_from(written);
        }
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
