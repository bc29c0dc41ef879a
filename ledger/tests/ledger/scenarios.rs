//! Data-driven scenario tests of the ledger's service interface, one module per area.
//!
//! Each area has a `check`-style helper where many short cases share a shape; every case starts
//! from a fresh [`crate::Harness`] or from accounts of its own, so cases do not see each other.

mod accounts;
mod batches;
mod cards;
mod group_commit;
mod history;
mod holds;
mod idempotency;
mod items;
mod packs;
mod restart;
mod reversals;
mod tenancy;
mod transfers;
mod trial;
