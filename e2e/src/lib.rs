//! Helpers for end-to-end scenarios: drive the `pgreplica` binary, read its status, write with
//! many clients while keeping a ledger of every acknowledged commit.

pub mod bench;
pub mod cluster;
pub mod faults;
pub mod ledger;
pub mod poll;
pub mod report;
pub mod rm;
