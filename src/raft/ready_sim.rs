//! A deterministic three-replica simulation of the ready loop (`start_ready` /
//! `finish_ready` over `PeerStorage`) with persistence that completes late and a network
//! that reorders and drops messages. It checks the ordering rules the replica relies on:
//! followers send nothing before their writes are durable, only durable entries are
//! applied, and every replica applies the same entries in the same order.

use super::ready::{finish_ready, start_ready};
use crate::storage::PeerStorage;
use crate::types::ShardId;
use raft::eraftpb::{EntryType, Message};
use raft::{RawNode, StateRole};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

struct SimNode {
    raw: RawNode<PeerStorage>,
    /// Readies handed to "the log writer": (number, messages to send after, last index).
    pending: VecDeque<(u64, Vec<Message>, u64)>,
    /// Last log index made durable.
    durable_last: u64,
    /// Applied normal entries: (index, data).
    applied: Vec<(u64, Vec<u8>)>,
}

fn new_node(id: u64) -> SimNode {
    let cfg = raft::Config {
        id,
        election_tick: 10,
        heartbeat_tick: 2,
        check_quorum: true,
        pre_vote: true,
        applied: crate::storage::peer_storage::INIT_INDEX,
        ..Default::default()
    };
    let storage = PeerStorage::new_bootstrap(vec![1, 2, 3]);
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    SimNode {
        raw: RawNode::new(&cfg, storage, &logger).expect("raw node"),
        pending: VecDeque::new(),
        durable_last: crate::storage::peer_storage::INIT_INDEX,
        applied: Vec::new(),
    }
}

/// Handles every ready of `n`, checking the ordering invariants.
fn drain_readies(n: &mut SimNode, net: &mut Vec<Message>) {
    while n.raw.has_ready() {
        let is_leader = n.raw.raft.state == StateRole::Leader;
        let start = start_ready(&mut n.raw);
        if !is_leader {
            assert!(
                start.send_now.is_empty(),
                "a follower sent {:?} before persisting",
                start
                    .send_now
                    .iter()
                    .map(|m| m.get_msg_type())
                    .collect::<Vec<_>>()
            );
        }
        net.extend(start.send_now);
        let mut last_applied = None;
        for e in &start.committed {
            assert!(
                e.index <= n.durable_last,
                "entry {} applied before it was durable (durable up to {})",
                e.index,
                n.durable_last
            );
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                n.applied.push((e.index, e.data.to_vec()));
            }
            last_applied = Some(e.index);
        }
        let persist = finish_ready(&mut n.raw, ShardId(1), start.ready, vec![]).expect("finish");
        let last = n.raw.store().last();
        if persist.ops.is_empty() && n.pending.is_empty() {
            n.raw.on_persist_ready(persist.number);
            net.extend(persist.after_persist);
        } else {
            n.pending
                .push_back((persist.number, persist.after_persist, last));
        }
        if let Some(i) = last_applied {
            n.raw.advance_apply_to(i);
        }
    }
}

fn persist_one(n: &mut SimNode, net: &mut Vec<Message>) {
    if let Some((number, msgs, last)) = n.pending.pop_front() {
        n.durable_last = last;
        n.raw.on_persist_ready(number);
        net.extend(msgs);
    }
}

fn run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut nodes: Vec<SimNode> = (1..=3).map(new_node).collect();
    let mut net: Vec<Message> = Vec::new();
    let mut proposed = 0u64;
    for step in 0..6_000 {
        let roll: u32 = rng.random_range(0..100);
        if roll < 60 && !net.is_empty() {
            let m = net.swap_remove(rng.random_range(0..net.len()));
            if rng.random_range(0..100) >= 3 {
                let _ = nodes[(m.to - 1) as usize].raw.step(m);
            }
        } else if roll < 85 {
            let i = rng.random_range(0..3);
            persist_one(&mut nodes[i], &mut net);
        } else if roll < 93 {
            for n in nodes.iter_mut() {
                n.raw.tick();
            }
        } else if let Some(l) = nodes
            .iter_mut()
            .find(|n| n.raw.raft.state == StateRole::Leader)
        {
            if l.raw
                .propose(vec![], format!("cmd-{step}").into_bytes())
                .is_ok()
            {
                proposed += 1;
            }
        }
        for n in nodes.iter_mut() {
            drain_readies(n, &mut net);
        }
    }
    // Quiesce: deliver everything, persist everything, keep ticking until replicas agree.
    for _ in 0..2_000 {
        while let Some(m) = net.pop() {
            let _ = nodes[(m.to - 1) as usize].raw.step(m);
            for n in nodes.iter_mut() {
                drain_readies(n, &mut net);
            }
        }
        for n in nodes.iter_mut() {
            while !n.pending.is_empty() {
                persist_one(n, &mut net);
            }
            drain_readies(n, &mut net);
        }
        if net.is_empty() && nodes.windows(2).all(|w| w[0].applied == w[1].applied) {
            break;
        }
        for n in nodes.iter_mut() {
            n.raw.tick();
            drain_readies(n, &mut net);
        }
    }
    assert!(
        proposed > 0,
        "seed {seed}: no leader ever accepted a proposal"
    );
    assert!(
        !nodes[0].applied.is_empty(),
        "seed {seed}: nothing was applied"
    );
    for n in &nodes[1..] {
        assert_eq!(
            n.applied, nodes[0].applied,
            "seed {seed}: replicas applied different entries"
        );
    }
    let indexes: Vec<u64> = nodes[0].applied.iter().map(|(i, _)| *i).collect();
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "seed {seed}: applied out of order"
    );
}

#[test]
fn ready_loop_keeps_raft_ordering_under_late_persistence() {
    for seed in 0..8 {
        run(seed);
    }
}
