//! The ledger's side of the audit log: each process writes its own stream of records into the
//! store, in the same transactions as the changes they record, and signs checkpoints of it.
//!
//! - [`scope`]: who is acting (the request's audit context).
//! - [`stream`](self::stream): sequence numbers and the Merkle tree's right edge, kept by the
//!   committer; records of a batch go into its transaction as [`block`]s.
//! - [`signer`] and the checkpointer: signed tree heads on an interval and a record count.
//! - [`read`]: listing records with filters, checkpoints, inclusion and consistency proofs,
//!   export, and verification straight from the store.
//!
//! Invariants: a command's record commits in the command's transaction (no posted transfer
//! without its record, no record of a transfer that did not post); records of a stream are
//! numbered from 0 without gaps; the code writes audit items only with puts conditioned on
//! absence (there is no update or delete of them anywhere, and the store refuses one).

pub mod block;
pub(crate) mod checkpointer;
pub mod read;
pub mod scope;
pub mod signer;
pub(crate) mod stream;

use std::time::Duration;

use audit::{Actor, Draft, Origin};

pub(crate) use self::checkpointer::checkpoint_loop;
pub use self::scope::{AuditScope, current, scoped};
pub use self::signer::{CheckpointSigner, KmsSigner, LocalCheckpointSigner};
pub use self::stream::{Head, StreamInfo};
use crate::command::{Command, Op, Outcome};
use crate::commit::Reply;

/// Default of [`AuditConfig::checkpoint_interval`].
pub const CHECKPOINT_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);
/// Shortest checkpoint interval.
pub const CHECKPOINT_INTERVAL_MIN: Duration = Duration::from_secs(1);
/// Longest checkpoint interval.
pub const CHECKPOINT_INTERVAL_MAX: Duration = Duration::from_secs(3600);
/// Default of [`AuditConfig::checkpoint_records`].
pub const CHECKPOINT_RECORDS_DEFAULT: u64 = 10_000;
/// Most records between checkpoints.
pub const CHECKPOINT_RECORDS_MAX: u64 = 1_000_000;
/// Longest writer name kept in a stream's name.
pub const WRITER_LEN_MAX: usize = 64;

/// How the ledger keeps its audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// Records are written. Off only for measuring what they cost (`bench/`): a deployment
    /// refuses to start without them (`gateway::config`).
    pub enabled: bool,
    /// This writer's name; its streams are named `{writer}-{start ULID}`.
    pub writer: String,
    /// A checkpoint is signed at least this often while records arrive.
    pub checkpoint_interval: Duration,
    /// ... and as soon as this many records wait for one.
    pub checkpoint_records: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            writer: "strongroom".to_owned(),
            checkpoint_interval: CHECKPOINT_INTERVAL_DEFAULT,
            checkpoint_records: CHECKPOINT_RECORDS_DEFAULT,
        }
    }
}

/// A new stream's name: the writer's name (characters other than letters, digits, `.`, `_`
/// and `-` replaced, cut to [`WRITER_LEN_MAX`]), a dash, and a ULID of its start, so that a
/// writer that restarts begins a new stream and streams sort by start.
pub fn stream_name(writer: &str) -> String {
    let mut name: String = writer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(WRITER_LEN_MAX)
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, 'w');
    }
    format!("{name}-{}", ulid::Ulid::generate())
}

/// The action a command's record names.
pub(crate) fn action(op: &Op) -> &'static str {
    match op {
        Op::CreateAccount(_) => "account.create",
        Op::SetStatus { action, .. } => match action {
            crate::account::StatusAction::Freeze => "account.freeze",
            crate::account::StatusAction::Unfreeze => "account.unfreeze",
            crate::account::StatusAction::Close => "account.close",
        },
        Op::Transfer(_) => "transfer.create",
        Op::Batch { .. } => "transfer.batch",
        Op::Post { .. } => "transfer.post",
        Op::Void { .. } => "transfer.void",
        Op::Reverse { .. } => "transfer.reverse",
        Op::ExpireHold { .. } => "hold.expire",
        Op::CreateCard { .. } => "card.create",
        Op::DeleteCard { .. } => "card.delete",
    }
}

/// The most resource ids a command's record names (for the item budget): see
/// [`command_draft`].
pub(crate) fn resources_max(op: &Op) -> usize {
    // The idempotency key, and the "…more" marker.
    2 + match op {
        Op::Transfer(t) => 1 + t.legs().len(),
        Op::Batch { transfers, .. } => transfers.len(),
        Op::Reverse { .. } => 2,
        _ => 1,
    }
}

/// The record of a command and what it produced.
pub(crate) fn command_draft(cmd: &Command, result: &Reply) -> Draft {
    let (actor, origin) = who(cmd);
    let action = action(&cmd.op);
    let completion = completion(cmd, result);
    let mut resources = named(&cmd.op);
    resources.extend(completion.made);
    resources.extend(trailing(cmd));
    Draft {
        actor,
        action: action.to_owned(),
        resources,
        outcome: completion.outcome,
        reason: completion.reason,
        detail: completion.detail,
        origin,
    }
}

/// The part of a command's record known before it is executed, stamped and encoded on the
/// request's task rather than by the committer (`audit::PreparedRecord`).
pub(crate) fn prepare(cmd: &Command) -> audit::PreparedRecord {
    let (actor, origin) = who(cmd);
    audit::PreparedRecord::new(
        actor,
        action(&cmd.op),
        named(&cmd.op),
        trailing(cmd),
        origin,
    )
}

/// What the committer writes for a command: its prepared record completed, or the whole
/// draft of one that was not prepared.
pub(crate) fn command_entry<'a>(cmd: &'a Command, result: &Reply) -> stream::Entry<'a> {
    match &cmd.prepared {
        Some(prepared) => stream::Entry::Prepared(prepared, completion(cmd, result)),
        None => stream::Entry::Draft(command_draft(cmd, result)),
    }
}

/// Who acted, and through which request. The command's tenant is the one its writes are
/// under, whatever the scope says.
fn who(cmd: &Command) -> (Actor, Origin) {
    let (actor, origin) = match &cmd.scope {
        Some(scope) => (scope.actor(), scope.origin()),
        None => (Actor::default(), Origin::default()),
    };
    let actor = Actor {
        tenant: Some(cmd.tenant.to_string()),
        ..actor
    };
    (actor, origin)
}

/// What the request named, first among the record's resources.
fn named(op: &Op) -> Vec<String> {
    match op {
        Op::SetStatus { account, .. } => vec![format!("account:{account}")],
        Op::Post { transfer, .. }
        | Op::Void { transfer }
        | Op::Reverse { transfer, .. }
        | Op::ExpireHold { transfer } => vec![format!("transfer:{transfer}")],
        Op::DeleteCard { card } => vec![format!("card:{card}")],
        Op::Transfer(t) => t
            .legs()
            .iter()
            .map(|leg| format!("account:{}", leg.account))
            .collect(),
        Op::CreateAccount(_) | Op::Batch { .. } | Op::CreateCard { .. } => Vec::new(),
    }
}

/// The idempotency key, last among the record's resources.
fn trailing(cmd: &Command) -> Vec<String> {
    cmd.key
        .iter()
        .map(|key| format!("idempotency-key:{}", key.as_str()))
        .collect()
}

/// What the command made, its outcome, and a note when it was answered from an earlier
/// request.
fn completion(cmd: &Command, result: &Reply) -> audit::Completion {
    let mut made = Vec::new();
    let committed = match result {
        Ok(committed) => committed,
        Err(e) => {
            return audit::Completion {
                made,
                outcome: audit::Outcome::Failure,
                reason: Some(e.to_string()),
                detail: None,
            };
        }
    };
    match &committed.value {
        Outcome::Account(a) => {
            if matches!(cmd.op, Op::CreateAccount(_)) {
                made.push(format!("account:{}", a.id));
            }
        }
        Outcome::Transfer(t) => {
            if !matches!(
                cmd.op,
                Op::Post { .. } | Op::Void { .. } | Op::ExpireHold { .. }
            ) {
                made.push(format!("transfer:{}", t.id));
            }
        }
        Outcome::Batch(results) => {
            made.extend(
                results
                    .iter()
                    .flatten()
                    .map(|t| format!("transfer:{}", t.id)),
            );
        }
        Outcome::Card(c) => {
            if matches!(cmd.op, Op::CreateCard { .. }) {
                made.push(format!("card:{}", c.id));
            }
        }
        Outcome::Nothing => {}
    }
    audit::Completion {
        made,
        outcome: audit::Outcome::Success,
        reason: None,
        detail: committed.replayed.then(|| {
            "replay: answered from the first request with this Idempotency-Key".to_owned()
        }),
    }
}
