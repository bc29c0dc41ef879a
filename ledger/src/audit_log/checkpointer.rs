//! The checkpointer: signs the stream's tree head on an interval and a record count, and once
//! more when the committer has written its last record.

use std::sync::Arc;
use std::time::Duration;

use audit::checkpoint::{Checkpoint, SignedCheckpoint};
use tokio::sync::watch;

use super::signer::CheckpointSigner;
use super::stream::Shared;
use crate::error::Error;
use crate::layout;
use crate::store::{Condition, Item, Store, StoreError, WriteOp};
use crate::time::Clock;

/// Format byte of a stored checkpoint: the byte, then the checkpoint's JSON
/// (`audit::checkpoint::SignedCheckpoint::encode`).
pub const FORMAT_AUDIT_CHECKPOINT_V1: u8 = 11;

/// Signs and stores a checkpoint of the current head, if records arrived since the last one.
pub(crate) async fn checkpoint_now(
    store: &dyn Store,
    shared: &Shared,
    signer: &dyn CheckpointSigner,
    clock: &dyn Clock,
) -> Result<Option<SignedCheckpoint>, Error> {
    let head = shared.head();
    if head.size == 0 || head.size <= shared.checkpointed() {
        return Ok(None);
    }
    let checkpoint = Checkpoint {
        stream: shared.stream.to_string(),
        size: head.size,
        root: head.root,
        time: audit::record::format_time(clock.now().micros()),
    };
    let signed = signer.sign(&checkpoint).await?;
    let mut body = vec![FORMAT_AUDIT_CHECKPOINT_V1];
    body.extend(signed.encode());
    let put = WriteOp::Put {
        item: Item {
            key: layout::audit_checkpoint(&shared.stream, head.size),
            version: 1,
            body,
        },
        condition: Condition::NotExists,
    };
    match store.transact_write(vec![put]).await {
        // Already there: an earlier attempt landed although its call failed.
        Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
        Err(e) => return Err(Error::Store(e)),
    }
    shared.set_checkpointed(head.size);
    Ok(Some(signed))
}

/// Reads a stored checkpoint.
pub fn decode_checkpoint(item: &Item) -> Result<SignedCheckpoint, Error> {
    match item.body.split_first() {
        Some((&FORMAT_AUDIT_CHECKPOINT_V1, json)) => SignedCheckpoint::decode(json)
            .map_err(|e| Error::Corrupt(format!("checkpoint {:?}: {e}", item.key))),
        _ => Err(Error::Corrupt(format!(
            "checkpoint {:?}: unknown format",
            item.key
        ))),
    }
}

/// Runs until the committer has stopped, then signs the last checkpoint.
pub(crate) async fn checkpoint_loop(
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    signer: Arc<dyn CheckpointSigner>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    mut committer_stopped: watch::Receiver<bool>,
) {
    let mut last_error: Option<String> = None;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = shared.due.notified() => false,
            changed = committer_stopped.changed() => changed.is_err() || *committer_stopped.borrow(),
        };
        match checkpoint_now(&*store, &shared, &*signer, &*clock).await {
            Ok(Some(cp)) => {
                last_error = None;
                tracing::debug!(stream = %cp.checkpoint.stream, size = cp.checkpoint.size, "audit checkpoint signed");
            }
            Ok(None) => {}
            Err(e) => {
                let text = e.to_string();
                // Once per distinct failure, not every round.
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(error = %text, "audit checkpoint failed; retrying");
                }
                last_error = Some(text);
            }
        }
        if stopping {
            // Once more: a retry if the round above failed, nothing if it signed.
            if let Err(e) = checkpoint_now(&*store, &shared, &*signer, &*clock).await {
                tracing::error!(error = %e, "the last audit checkpoint failed");
            }
            break;
        }
    }
}
