//! Creating replicas: loading the ones found in the data directory, bootstrapping the
//! initial shards of a new cluster, and creating an empty replica when a leader's
//! message arrives for a shard this node was just added to. Also the data
//! directory's node identity.
//!
//! Invariants:
//! - a data directory belongs to one node id forever (recorded at first start);
//! - messages for a shard this node does not host create an empty replica only if they
//!   come from a leader and target a replica id above the shard's tombstone, and never
//!   for a shard whose state is on disk (that would forget its vote and log).

use crate::error::{ErrInto, Error, Result};
use crate::keys;
use crate::node::ctx::NodeCtx;
use crate::proto::{ApplyState, MetaState, ShardDescriptor};
use crate::raft::handle::{PeerMsg, Stamp};
use crate::raft::peer::{Peer, ReplicaInit};
use crate::storage::log_writer::add_to_batch;
use crate::storage::peer_storage::{INIT_INDEX, INIT_TERM};
use crate::storage::{snapshot, Engine, PeerStorage};
use crate::types::{NodeId, ReplicaId, ShardId, META_SHARD};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Message, MessageType};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a shard a message is for came to be: `(split_from, split_index)` for one made
/// by a split, zeros for one made at bootstrap.
pub(crate) type Lineage = (u64, u64);

/// Delivers a raft message from another node, creating an empty replica for a shard
/// this node was just added to.
pub(crate) fn on_raft_message(
    ctx: &Arc<NodeCtx>,
    shard: ShardId,
    lineage: Lineage,
    from: NodeId,
    msg: Message,
    stamp: Stamp,
) {
    if !ctx.transport.allowed_from(from) {
        return;
    }
    if let Some(p) = ctx.peer(shard) {
        // Dropped under overload; Raft retransmits.
        let _ = p.try_send(PeerMsg::Raft {
            msg: Box::new(msg),
            from,
            stamp,
        });
        return;
    }
    let from_leader = matches!(
        msg.get_msg_type(),
        MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
    );
    let tomb = ctx.tombstone(shard);
    if !from_leader
        || !ctx.accepting_new_replicas()
        || msg.to == 0
        || msg.to <= tomb
        || ctx.cancel.is_cancelled()
    {
        return;
    }
    // Raft state on disk means a replica exists here that is not running: never
    // shadow it with an empty one. (A point read, only for the rare message that
    // would create a replica.)
    let on_disk = || {
        !matches!(
            ctx.engine.get(keys::CF_META, &keys::apply_state_key(shard)),
            Ok(None)
        )
    };
    if ctx.failed(shard) || on_disk() {
        tracing::warn!(%shard, "not recreating a replica whose state is on disk; restart the node");
        return;
    }
    // A shard made by a split: while this node's replica of the parent has not applied
    // the split, the message is early (applying the split creates the replica with
    // its state); drop it, Raft resends. If the parent here is past the split (it
    // installed a later snapshot) or gone from this node, the new shard's replica
    // starts empty and takes a snapshot: holding nothing is expected then.
    let (split_from, split_index) = lineage;
    let from_split = split_from != 0 && {
        let parent = ShardId(split_from);
        match ctx.peer(parent) {
            Some(p) if p.epoch.applied() < split_index => return,
            Some(_) => true,
            None => ctx.tombstone(parent) > 0,
        }
    };
    if !from_split && msg.get_msg_type() == MessageType::MsgHeartbeat && msg.commit > 0 {
        // The leader believes this replica holds entries, but this node has none:
        // its data was lost. Recreating it would reuse a Raft identity (DESIGN §1).
        tracing::error!(
            %shard,
            replica = msg.to,
            "the leader expects replica {} here with data, but this node has none; \
             remove it (`ctxctl member remove {}`) and add this node under a new id",
            msg.to,
            ctx.node_id
        );
        return;
    }
    let init = ReplicaInit {
        shard,
        replica_id: ReplicaId(msg.to),
        storage: PeerStorage::new_empty(),
        desc: ShardDescriptor {
            shard_id: shard.0,
            ..Default::default()
        },
        applied: (0, 0),
        from_split,
    };
    match Peer::spawn(ctx.clone(), init) {
        Ok(handle) => {
            tracing::info!(%shard, replica = msg.to, "created replica to receive a snapshot");
            ctx.metrics.replicas_created.inc();
            let _ = handle.try_send(PeerMsg::Raft {
                msg: Box::new(msg),
                from,
                stamp: Stamp {
                    hibernate: false,
                    ..stamp
                },
            });
            ctx.register(handle);
        }
        Err(e) => tracing::error!(%shard, error = %e, "cannot create replica"),
    }
}

/// Checks the data dir belongs to `node`; returns whether it is brand new.
pub(crate) fn check_identity(engine: &Engine, node: NodeId) -> Result<bool> {
    match engine.get(keys::CF_META, keys::NODE_IDENT_KEY)? {
        Some(v) => {
            let stored = v
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Storage("corrupt node identity record".into()))?;
            if stored != node.0 {
                return Err(Error::config(
                    "node-id",
                    format!("this data dir belongs to node {stored}, not node {node}"),
                ));
            }
            Ok(false)
        }
        None => Ok(true),
    }
}

/// Records that this data dir belongs to `node` (after bootstrapping or joining).
pub(crate) fn write_identity(engine: &Engine, node: NodeId) -> Result<()> {
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(
        engine.cf(keys::CF_META),
        keys::NODE_IDENT_KEY,
        node.0.to_be_bytes(),
    );
    engine.write_sync(batch)
}

/// Starts every replica found in the data dir; returns how many.
pub(crate) fn load_replicas(ctx: &Arc<NodeCtx>) -> Result<usize> {
    let engine = &ctx.engine;
    let mut shards = Vec::new();
    // Shard records only: the node-wide ones after them (the expiry index above all)
    // can be many.
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_iterate_upper_bound(keys::NODE_WIDE_PREFIX.to_vec());
    for item in
        engine
            .db()
            .iterator_cf_opt(engine.cf(keys::CF_META), opts, rocksdb::IteratorMode::Start)
    {
        let (k, v) = item.err_into()?;
        if let Some(shard) = keys::decode_apply_state_key(&k) {
            shards.push(shard);
        } else if let Some(shard) = keys::decode_tombstone_key(&k) {
            let id = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            ctx.set_tombstone(shard, id);
        }
    }
    for shard in &shards {
        let (storage, apply) = PeerStorage::load(engine, *shard)?;
        let desc: ShardDescriptor = engine
            .get_decoded(keys::CF_META, &keys::desc_key(*shard))?
            .ok_or_else(|| Error::Storage(format!("shard {shard}: no descriptor")))?;
        for r in &desc.replicas {
            ctx.addresses.learn(NodeId(r.node_id), &r.addr);
        }
        let Some(me) = desc
            .replicas
            .iter()
            .find(|r| r.node_id == ctx.node_id.0)
            .map(|r| ReplicaId(r.replica_id))
        else {
            // The replica applied its own removal but the node stopped before the
            // cleanup: finish it (delete its state, leave a tombstone).
            tracing::warn!(%shard, "this node's replica was removed; cleaning up its state");
            let removed = desc.next_replica_id.saturating_sub(1);
            let mut batch = rocksdb::WriteBatch::default();
            add_to_batch(engine, &mut batch, snapshot::removal_ops(&desc, removed));
            engine.write_sync(batch)?;
            ctx.set_tombstone(*shard, removed);
            continue;
        };
        if *shard == META_SHARD {
            let stored = engine.get_decoded::<MetaState>(keys::CF_META, &keys::meta_state_key())?;
            if let Some(mut state) = stored {
                crate::meta::state::upgrade(&mut state);
                ctx.note_routes(&state.shards);
                ctx.meta.set_state(state);
            }
        }
        let init = ReplicaInit {
            shard: *shard,
            replica_id: me,
            storage,
            desc,
            applied: (apply.applied_index, apply.applied_term),
            from_split: false,
        };
        let handle = Peer::spawn(ctx.clone(), init)?;
        ctx.register(handle);
    }
    Ok(ctx.peers().len())
}

/// Writes the initial state of every shard this node hosts (the meta shard 0 and the
/// data shards, placed by `meta::state::initial_descriptors`) and starts their
/// replicas. Each shard's first replica campaigns at once, spreading leaders.
/// Adds a new replica's whole state to `batch`: its Raft state, apply state and
/// descriptor, and for the meta shard the meta state (bootstrap and restore).
pub(crate) fn put_replica_state(
    engine: &Engine,
    batch: &mut rocksdb::WriteBatch,
    storage: &PeerStorage,
    apply: &ApplyState,
    desc: &ShardDescriptor,
    meta: Option<&MetaState>,
) {
    let shard = ShardId(desc.shard_id);
    batch.put_cf(
        engine.cf(keys::CF_RAFT),
        keys::raft_state_key(shard),
        storage.local_state().encode_to_vec(),
    );
    batch.put_cf(
        engine.cf(keys::CF_META),
        keys::apply_state_key(shard),
        apply.encode_to_vec(),
    );
    batch.put_cf(
        engine.cf(keys::CF_META),
        keys::desc_key(shard),
        desc.encode_to_vec(),
    );
    if let Some(state) = meta {
        batch.put_cf(
            engine.cf(keys::CF_META),
            keys::meta_state_key(),
            state.encode_to_vec(),
        );
    }
}

pub(crate) fn bootstrap(ctx: &Arc<NodeCtx>, members: &BTreeMap<NodeId, String>) -> Result<()> {
    let shards = ctx.config().initial_shards;
    let descriptors = crate::meta::state::initial_descriptors(members, shards);
    let engine = &ctx.engine;
    let mut batch = rocksdb::WriteBatch::default();
    let mut mine = Vec::new();
    for desc in &descriptors {
        let shard = ShardId(desc.shard_id);
        let Some(me) = desc.replicas.iter().find(|r| r.node_id == ctx.node_id.0) else {
            continue;
        };
        let me = ReplicaId(me.replica_id);
        let voters: Vec<u64> = desc.replicas.iter().map(|r| r.replica_id).collect();
        let storage = PeerStorage::new_bootstrap(voters.clone());
        let mut cs = ConfState::default();
        cs.set_voters(voters);
        let apply = ApplyState {
            applied_index: INIT_INDEX,
            applied_term: INIT_TERM,
            conf_state: cs.write_to_bytes().err_into()?.into(),
        };
        let state =
            (shard == META_SHARD).then(|| crate::meta::state::initial_state(members, &descriptors));
        put_replica_state(engine, &mut batch, &storage, &apply, desc, state.as_ref());
        if let Some(state) = state {
            ctx.meta.set_state(state);
        }
        let preferred = desc.replicas.first().map(|r| r.replica_id) == Some(me.0);
        mine.push((shard, me, storage, desc.clone(), preferred));
    }
    engine.write_sync(batch)?;
    tracing::info!(
        shards,
        hosted = mine.len(),
        members = members.len(),
        "bootstrapped a new cluster"
    );
    ctx.note_routes(
        &descriptors
            .iter()
            .map(|d| crate::proto::ShardRoute {
                descriptor: Some(d.clone()),
                ..Default::default()
            })
            .collect::<Vec<_>>(),
    );
    for (shard, me, storage, desc, preferred) in mine {
        let init = ReplicaInit {
            shard,
            replica_id: me,
            storage,
            desc,
            applied: (INIT_INDEX, INIT_TERM),
            from_split: false,
        };
        let handle = Peer::spawn(ctx.clone(), init)?;
        if preferred {
            let _ = handle.try_send(PeerMsg::Campaign);
        }
        ctx.register(handle);
    }
    Ok(())
}
