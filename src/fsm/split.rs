//! What a `Split` entry does to a shard (pure logic; `fsm::apply` writes it).
//!
//! The shard keeps its arcs below the cut and hands those at and above it to a new
//! shard with the same replicas; its `ring_ver` goes up by one and the new shard starts
//! at that same `ring_ver` (so a router that knows both resolves their overlap with the
//! parent's old descriptor in the new shard's favour). No data moves: every key already
//! sits under its hash prefix in the node's RocksDB, where the new shard's replica on
//! the same node finds it. The new shard's log starts at the split's index, so every
//! later write to a moved key gets a version above any the parent gave it.

use crate::proto::{ApplyState, RaftLocalState, ShardDescriptor, SplitCommand};
use crate::ranges;
use crate::types::META_SHARD;
use protobuf::Message as _;
use raft::eraftpb::HardState;

/// The state a split gives the new shard's replica on this node.
#[derive(Clone, Debug)]
pub(crate) struct ChildInit {
    /// The new shard's descriptor.
    pub(crate) desc: ShardDescriptor,
    /// Its applied state: the split's index and term, the parent's membership.
    pub(crate) apply: ApplyState,
    /// Its Raft state: an empty log truncated at the split, commit at the split.
    pub(crate) raft: RaftLocalState,
}

/// Applies `split` (committed at `index` in `term`) to the parent's descriptor, with
/// `conf_state` the parent's membership at that index (raft-rs `ConfState` bytes).
/// Returns the new shard's initial state, or why the split does not apply (nothing
/// changes then).
pub(crate) fn apply_split(
    parent: &mut ShardDescriptor,
    split: &SplitCommand,
    index: u64,
    term: u64,
    conf_state: &[u8],
) -> Result<ChildInit, String> {
    if parent.shard_id == META_SHARD.0 {
        return Err("the meta shard owns no keys and is never split".into());
    }
    if split.expected_ring_ver != parent.ring_ver {
        return Err(format!(
            "the shard is at ring_ver {}, the split was proposed at {}",
            parent.ring_ver, split.expected_ring_ver
        ));
    }
    if split.child_shard == 0 || split.child_shard == parent.shard_id {
        return Err(format!("{} is not a new shard id", split.child_shard));
    }
    let arcs = ranges::arcs_of(parent);
    let Some((keep, moved)) = ranges::split_at(&arcs, split.split_hash) else {
        return Err(format!(
            "hash {} is not strictly inside one of the shard's arcs",
            split.split_hash
        ));
    };
    parent.arcs = ranges::to_proto(&keep);
    parent.ring_shards.clear();
    parent.ring_ver += 1;
    // The same replicas, the first one rotated to the end: the new shard's preferred
    // leader is another node than the parent's, so leader balancing spreads them.
    let mut replicas = parent.replicas.clone();
    if !replicas.is_empty() {
        replicas.rotate_left(1);
    }
    let desc = ShardDescriptor {
        shard_id: split.child_shard,
        replicas,
        conf_ver: 1,
        ring_ver: parent.ring_ver,
        next_replica_id: parent.next_replica_id,
        ring_shards: Vec::new(),
        arcs: ranges::to_proto(&moved),
        split_from: parent.shard_id,
        split_index: index,
    };
    let mut hs = HardState::default();
    hs.set_term(term);
    hs.set_commit(index);
    let hard_state = hs
        .write_to_bytes()
        .map_err(|e| format!("encoding a hard state: {e}"))?;
    Ok(ChildInit {
        desc,
        apply: ApplyState {
            applied_index: index,
            applied_term: term,
            conf_state: conf_state.to_vec().into(),
        },
        raft: RaftLocalState {
            hard_state: hard_state.into(),
            truncated_index: index,
            truncated_term: term,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{HashRange, Replica};

    fn parent() -> ShardDescriptor {
        ShardDescriptor {
            shard_id: 3,
            replicas: (1..=3)
                .map(|n| Replica {
                    replica_id: n,
                    node_id: n,
                    ..Default::default()
                })
                .collect(),
            conf_ver: 4,
            ring_ver: 2,
            next_replica_id: 4,
            arcs: vec![
                HashRange { lo: 100, hi: 199 },
                HashRange { lo: 500, hi: 599 },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_split_partitions_the_parent_arcs_and_bumps_ring_ver() {
        let mut p = parent();
        let split = SplitCommand {
            child_shard: 9,
            split_hash: 150,
            expected_ring_ver: 2,
        };
        let child = apply_split(&mut p, &split, 77, 6, b"cs").expect("applies");
        assert_eq!(ranges::arcs_of(&p), vec![(100, 149)]);
        assert_eq!(ranges::arcs_of(&child.desc), vec![(150, 199), (500, 599)]);
        assert_eq!((p.ring_ver, child.desc.ring_ver), (3, 3));
        assert_eq!((child.desc.split_from, child.desc.split_index), (3, 77));
        assert_eq!(
            child.desc.replicas[0].node_id, 2,
            "preferred leader rotated"
        );
        assert_eq!(child.desc.replicas.len(), 3);
        assert_eq!(
            (child.apply.applied_index, child.apply.applied_term),
            (77, 6)
        );
        assert_eq!(
            (child.raft.truncated_index, child.raft.truncated_term),
            (77, 6)
        );
        let hs = HardState::parse_from_bytes(&child.raft.hard_state).expect("hs");
        assert_eq!((hs.term, hs.commit, hs.vote), (6, 77, 0));
    }

    #[test]
    fn a_stale_or_misplaced_split_changes_nothing() {
        for split in [
            SplitCommand {
                child_shard: 9,
                split_hash: 150,
                expected_ring_ver: 1,
            },
            SplitCommand {
                child_shard: 9,
                split_hash: 100,
                expected_ring_ver: 2,
            },
            SplitCommand {
                child_shard: 9,
                split_hash: 300,
                expected_ring_ver: 2,
            },
            SplitCommand {
                child_shard: 3,
                split_hash: 150,
                expected_ring_ver: 2,
            },
            SplitCommand {
                child_shard: 0,
                split_hash: 150,
                expected_ring_ver: 2,
            },
        ] {
            let mut p = parent();
            assert!(
                apply_split(&mut p, &split, 77, 6, b"").is_err(),
                "{split:?}"
            );
            assert_eq!(p, parent(), "{split:?} changed the parent");
        }
        let mut meta = ShardDescriptor::default();
        let split = SplitCommand {
            child_shard: 9,
            split_hash: 1,
            expected_ring_ver: 0,
        };
        assert!(apply_split(&mut meta, &split, 1, 1, b"").is_err());
    }
}
