//! `ctxd restore --from DIR`: one node of a new cluster built offline from a backup
//! (`ctxctl snapshot save`; docs/operations.md, "Backup and restore"). Run it once
//! per member of the new cluster, each with the same backup, the same
//! `--initial-cluster` and the same `--bump-index`; then start every node on its data
//! directory as after any restart.
//!
//! - Nothing is written unless every check passes: the data directory is empty; the
//!   manifest reads; every file has the manifest's size and sha256, and its own
//!   checksum, layout and data digest.
//! - The new cluster keeps the backup's shards (ids, hash arcs, `ring_ver`, data, dedup
//!   records and the meta shard's settings), placed on the new members as a
//!   bootstrap places them: the meta shard on the first three, data shard k (in id
//!   order) on three consecutive members from member k. Each shard's `conf_ver` is one
//!   above the backup's.
//! - Each replica starts as a shard split off at the backup's applied index plus
//!   `bump_index` (an empty log truncated there, committed, the applied state there),
//!   so the versions of new writes are above every version in the backup — and, with
//!   a bump larger than the writes made after the backup, above every version a
//!   client saw from the old cluster.

use crate::config::NodeConfig;
use crate::error::{ErrInto, Error, Result};
use crate::proto::{ApplyState, MetaState, ShardDescriptor};
use crate::storage::snapshot::{self, SnapshotFile};
use crate::storage::{Engine, PeerStorage};
use crate::types::{NodeId, ShardId, META_SHARD};
use ctxstore_api::backup::{Manifest, ShardFile};
use protobuf::Message as _;
use raft::eraftpb::ConfState;
use std::collections::BTreeMap;
use std::path::Path;

/// What a restore wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Shards in the backup, the meta shard included.
    pub shards: usize,
    /// Shards this node hosts now.
    pub hosted: Vec<u64>,
    /// Data records written here.
    pub keys: u64,
}

/// Restores this node (`cfg`: its id, data directory and the new cluster's
/// `initial-cluster`) from the backup in `from`.
pub fn restore(cfg: &NodeConfig, from: &Path, bump_index: u64) -> Result<RestoreReport> {
    cfg.validate()?;
    let me = NodeId(cfg.node_id);
    let members = cfg.initial_members()?;
    if members.is_empty() {
        return Err(Error::config(
            "initial-cluster",
            "a restore needs the new cluster's members",
        ));
    }
    if std::fs::read_dir(&cfg.data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::config(
            "data-dir",
            format!(
                "{} is not empty: a restore builds a new node in an empty directory",
                cfg.data_dir.display()
            ),
        ));
    }
    let manifest = Manifest::read(from)?;
    let bad = manifest.check_files(from);
    if let Some((shard, why)) = bad.first() {
        return Err(Error::invalid(
            "backup",
            format!("shard {shard}: {why}; nothing was restored"),
        ));
    }
    // Every file read through once: its own checksum, layout and data digest.
    let mut files = BTreeMap::new();
    let mut old_meta = None;
    for entry in &manifest.shards {
        let shard = ShardId(entry.shard_id);
        let file = external(from, entry);
        let summary = snapshot::summarize(&file, shard)?;
        if summary.data_digest != entry.data_digest || summary.keys != entry.keys {
            return Err(Error::invalid(
                "backup",
                format!("shard {shard}: its data does not match the manifest's digest; nothing was restored"),
            ));
        }
        let desc = summary.header.descriptor.unwrap_or_default();
        if shard == META_SHARD {
            old_meta = summary.header.meta;
        }
        files.insert(entry.shard_id, (entry.clone(), file, desc));
    }
    let old_meta = old_meta.ok_or_else(|| {
        Error::invalid(
            "backup",
            "the backup has no meta shard (shard 0); nothing was restored",
        )
    })?;
    let descriptors = place(&members, &files);
    let meta = new_meta_state(&members, &descriptors, &old_meta);
    let engine = Engine::open(&cfg.data_dir)?;
    crate::node::replicas::check_identity(&engine, me)?;
    // Marks the directory indexed before the loads, which index what they write (its
    // first start then has nothing to index).
    crate::storage::index::ensure_index(&engine)?;
    let mut report = RestoreReport {
        shards: descriptors.len(),
        ..Default::default()
    };
    for desc in &descriptors {
        if !desc.replicas.iter().any(|r| r.node_id == me.0) {
            continue;
        }
        let shard = ShardId(desc.shard_id);
        let Some((entry, file, _)) = files.get(&desc.shard_id) else {
            continue;
        };
        let loaded = snapshot::load(&engine, file, shard, &[], &|| false)?;
        report.keys += loaded.data;
        let index = entry.applied_index.saturating_add(bump_index);
        let mut cs = ConfState::default();
        cs.set_voters(desc.replicas.iter().map(|r| r.replica_id).collect());
        let storage = PeerStorage::new_split(cs.clone(), index, entry.applied_term);
        let apply = ApplyState {
            applied_index: index,
            applied_term: entry.applied_term,
            conf_state: cs.write_to_bytes().err_into()?.into(),
        };
        let mut batch = rocksdb::WriteBatch::default();
        let meta = (shard == META_SHARD).then_some(&meta);
        crate::node::replicas::put_replica_state(&engine, &mut batch, &storage, &apply, desc, meta);
        engine.write_sync(batch)?;
        report.hosted.push(shard.0);
    }
    crate::node::replicas::write_identity(&engine, me)?;
    Ok(report)
}

/// The backup's file of one shard, checked against the manifest's size and xxh3.
fn external(dir: &Path, e: &ShardFile) -> SnapshotFile {
    SnapshotFile::external(
        dir.join(&e.file),
        ShardId(e.shard_id),
        (e.applied_index, e.applied_term),
        e.bytes,
        e.xxh3,
    )
}

/// The backup's shards on the new members: the meta shard on the first three, data
/// shard k (in id order) on three consecutive members from member k.
fn place(
    members: &BTreeMap<NodeId, String>,
    files: &BTreeMap<u64, (ShardFile, SnapshotFile, ShardDescriptor)>,
) -> Vec<ShardDescriptor> {
    let nodes: Vec<(NodeId, &String)> = members.iter().map(|(n, a)| (*n, a)).collect();
    let per_shard = nodes.len().min(3);
    let mut data_rank = 0usize;
    files
        .values()
        .map(|(entry, _, old)| {
            let shard = ShardId(entry.shard_id);
            let start = if shard == META_SHARD {
                0
            } else {
                data_rank += 1;
                data_rank - 1
            };
            let placed: Vec<(NodeId, &String)> = (0..per_shard)
                .map(|j| nodes[(start + j) % nodes.len()])
                .collect();
            crate::meta::state::bootstrap_descriptor(
                shard,
                &placed,
                (old.conf_ver + 1, old.ring_ver),
                old.arcs.clone(),
            )
        })
        .collect()
}

/// The new meta state: the new members and placement, with the backup's routing
/// version (raised), shard-id counter, settings and auth state.
fn new_meta_state(
    members: &BTreeMap<NodeId, String>,
    descriptors: &[ShardDescriptor],
    old: &MetaState,
) -> MetaState {
    let mut state = crate::meta::state::initial_state(members, descriptors);
    state.routing_version = old.routing_version + 1;
    state.next_shard_id = state.next_shard_id.max(old.next_shard_id);
    state.pd_paused = old.pd_paused;
    state.cluster_config = old.cluster_config.clone();
    state.auth = old.auth.clone();
    state
}
