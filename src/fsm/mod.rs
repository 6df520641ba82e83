//! The replicated state machine: what a committed command does to a shard's data.
//!
//! `command` is pure logic over a [`command::StateReader`] (unit-tested without
//! RocksDB); `apply` binds it to the engine and writes each applied round — data,
//! dedup records, descriptor and applied index — in one RocksDB WriteBatch.
//!
//! Invariants: applying is deterministic given the command (times come from the
//! leader's `now_ms` inside it), and a command carrying a request id already applied
//! returns its recorded result and writes nothing (at-most-once).

pub(crate) mod apply;
pub(crate) mod command;
