//! Strongroom's audit crate: the bottom of the workspace's layering.
//!
//! It depends on none of Strongroom's crates, so that an auditor's verifier needs nothing
//! else and every crate above it (`ledger`, `gateway`) can call it.
//!
//! Today it holds [`mask`]: card-number (PAN) detection and masking, applied to every piece
//! of free text before it is stored, logged or answered. The append-only, tamper-evident
//! audit log (Merkle tree, signed checkpoints, proofs) arrives here later; it will mask what
//! it is given with the same functions, even when a caller forgot.

#![warn(missing_docs)]

pub mod mask;

pub use mask::{MaskStyle, contains_pan, identifier_holds_pan, luhn_valid, mask_pans, masked_pan};
