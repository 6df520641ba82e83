//! Entry points for `benches/` into internal layers. Not a stable API.

use crate::error::Result;
use crate::storage::{Engine, PeerStorage};
use crate::types::ShardId;
use raft::eraftpb::Entry;
use raft::{GetEntriesContext, Storage as _};

/// The in-memory Raft log mirror of one replica.
pub struct LogMirror(PeerStorage);

impl Default for LogMirror {
    fn default() -> Self {
        Self(PeerStorage::new_bootstrap(vec![1, 2, 3]))
    }
}

impl LogMirror {
    /// Appends entries as a ready would.
    pub fn append(&mut self, entries: &[Entry]) {
        self.0.append(entries);
    }

    /// Reads `[lo, hi)` as raft-rs does when sending appends.
    pub fn read(&self, lo: u64, hi: u64) -> usize {
        self.0
            .entries(lo, hi, None, GetEntriesContext::empty(false))
            .map_or(0, |e| e.len())
    }

    /// Index of the last entry.
    pub fn last(&self) -> u64 {
        self.0.last()
    }

    /// Drops entries up to `index` (log GC).
    pub fn compact(&mut self, index: u64) {
        let _ = self.0.compact(index);
    }
}

/// A node's RocksDB with the apply path on top.
pub struct ApplyPath {
    engine: Engine,
    next_index: u64,
}

impl ApplyPath {
    /// Opens RocksDB under `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        Ok(Self {
            engine: Engine::open(dir)?,
            next_index: 10,
        })
    }

    /// Applies one round of `n` committed single-put commands.
    pub fn apply_puts(&mut self, n: usize, value: &[u8]) -> Result<()> {
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                let index = self.next_index + i as u64;
                crate::fsm::apply::single_put_entry(
                    index,
                    6,
                    1,
                    &[],
                    format!("bench-{}", index % 10_000).into_bytes(),
                    value.to_vec(),
                )
            })
            .collect();
        self.apply(entries)
    }

    /// Applies one round of `n` committed appends of two messages (an agent step's
    /// question and answer, the answer of `value`'s length), each to its own
    /// conversation among 64.
    pub fn apply_appends(&mut self, n: usize, value: &[u8]) -> Result<()> {
        use crate::proto::{context_command, raft_command, ContextCommand, RaftCommand};
        use ctxstore_api::proto::{AppendRequest, ChatMessage, ConversationRef};
        use prost::Message as _;
        let answer = String::from_utf8_lossy(value).into_owned();
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                let index = self.next_index + i as u64;
                let message = |role: &str, content: String| ChatMessage {
                    role: role.into(),
                    content,
                    token_count: 256,
                    ..Default::default()
                };
                let cmd = RaftCommand {
                    request_id: Default::default(),
                    now_ms: 1,
                    cmd: Some(raft_command::Cmd::Context(ContextCommand {
                        op: Some(context_command::Op::Append(AppendRequest {
                            conversation: Some(ConversationRef {
                                namespace: "bench".into(),
                                id: format!("agent-{}", index % 64),
                            }),
                            messages: vec![
                                message("user", format!("step {index}: what next?")),
                                message("assistant", answer.clone()),
                            ],
                            ..Default::default()
                        })),
                    })),
                };
                Entry {
                    index,
                    term: 6,
                    data: cmd.encode_to_vec().into(),
                    ..Default::default()
                }
            })
            .collect();
        self.apply(entries)
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        self.next_index += entries.len() as u64;
        let applied = crate::fsm::apply::apply_round(
            &self.engine,
            ShardId(1),
            &entries,
            // Owning the whole hash space: with no arcs every command is refused as
            // not owned.
            crate::meta::state::whole_ring_descriptor(ShardId(1)),
            Vec::new(),
            &Default::default(),
        )?;
        // A bench that measured refusals would measure nothing.
        use crate::proto::command_result::Result as R;
        for (index, _, r) in &applied.results {
            if !matches!(r.result, Some(R::Ok(_) | R::Context(_))) {
                return Err(crate::error::Error::Internal(format!(
                    "entry {index} did not apply: {:?}",
                    r.result
                )));
            }
        }
        Ok(())
    }
}
