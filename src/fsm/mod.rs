//! The replicated state machine: what a committed command does to a shard's data,
//! and how that data is read back.
//!
//! - `command`: the `Applier`, pure logic over a [`command::StateReader`] (unit-tested
//!   without RocksDB): checks, puts, deletes, TTL visibility and request dedup; its
//!   context-API feature is `context` (conversations, checkpoints, purge), a second
//!   `impl Applier` block;
//! - `split`: what a `Split` entry does to the shard's descriptor and the state the
//!   new shard starts from;
//! - `apply`: binds the `Applier` to the engine and writes each applied round — data,
//!   dedup records, descriptor, a split's new shard and applied index — in one RocksDB
//!   WriteBatch; on the meta shard it also applies `meta::state`;
//! - `read`: reads of a replica's applied state from one RocksDB snapshot (`View`),
//!   with `budget`, the token-budget selection;
//! - `metadata`: checkpoint metadata filters (exact text, and JSON values);
//! - `watch`: each replica's in-memory log of applied changes, for watches.
//!
//! Invariants: applying is deterministic given the command (times come from the
//! leader's `now_ms` inside it), and a command carrying a request id already applied
//! returns its recorded result and writes nothing (at-most-once).

pub(crate) mod apply;
pub mod budget;
pub(crate) mod command;
pub(crate) mod context;
pub(crate) mod metadata;
pub(crate) mod queue;
pub(crate) mod read;
pub(crate) mod split;
pub(crate) mod watch;
