//! Strongroom's audit crate: the bottom of the workspace's layering.
//!
//! It depends on none of Strongroom's crates, so that an auditor's verifier needs nothing
//! else and every crate above it (`ledger`, `gateway`) can call it.
//!
//! - [`record`]: the audit record (PCI DSS 10.2.2's who, what, when, outcome and origin), in
//!   the exact form that is hashed, stored and exported.
//! - [`merkle`]: each writer's stream is a Merkle tree with RFC 9162 hashing, inclusion and
//!   consistency proofs.
//! - [`checkpoint`]: signed checkpoints (the size and root of a stream, signed with Ed25519 or
//!   ECDSA P-256 as AWS KMS signs), the public keys that verify them, and [`LocalSigner`], an
//!   Ed25519 key in an owner-only file.
//! - [`export`]: the export of streams for an auditor (a directory of JSON lines and a
//!   manifest), [`verify_export`], which verifies one on several threads, and [`prove`], a
//!   record's inclusion proof against a signed checkpoint from an export alone.
//! - [`verify`]: [`StreamVerifier`], which checks one stream's records against their stored
//!   leaves, their sequence and the signed checkpoints, naming the first record or range that
//!   fails; it needs nothing but records, checkpoints and public keys.
//! - [`mask`]: card-number (PAN) detection and masking, applied to every piece of free text
//!   before it is stored, logged or answered; records are masked here even when a caller
//!   forgot.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod export;
pub mod mask;
pub mod merkle;
pub mod record;
pub mod verify;

pub use checkpoint::{
    Algorithm, Checkpoint, CheckpointError, KeyFileError, LocalSigner, PublicKey, PublicKeys,
    RecordProof, SignedCheckpoint,
};
pub use export::{
    ExportError, ExportWriter, Progress, ProveError, Report, prove, valid_stream_name,
    verify_export,
};
pub use mask::{MaskStyle, contains_pan, identifier_holds_pan, luhn_valid, mask_pans, masked_pan};
pub use merkle::{Frontier, Hash, InclusionProver, ProofError};
pub use record::{Actor, Completion, Draft, Origin, Outcome, PreparedRecord, Record, Stamper};
pub use verify::{Failure, Place, StreamSummary, StreamVerifier};
