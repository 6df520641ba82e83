//! The lease keeper: the leader of a shard decides when each of the shard's leases
//! expires, by its own monotonic clock, and revokes it through Raft (which deletes the
//! keys attached to it on every replica, `fsm::command`).
//!
//! Deadlines live in memory only: a keepalive is not replicated. So every new reign
//! of a replica as leader (and every replica that was not leading before) starts by
//! giving each lease of its shard its whole TTL plus an election timeout, as etcd's
//! lessor does on promotion: a holder that kept its lease alive under the old leader
//! renewed it at most an election timeout before the old leader lost its reign, so
//! the new deadline is never earlier than the one the holder was promised. The leases
//! of a shard are found through the node's lease index (`keys::LEASE_INDEX_PREFIX`),
//! once the replica has applied what it had committed when it became leader, and
//! again every `RELOAD` while the replica applies anything (a grant that raced the
//! first load is picked up); a shard that applied nothing since its last load (an
//! idle or sleeping one) is not read again.
//!
//! A keepalive is answered only by the leader after a ReadIndex round (`server::
//! lease`), so a leader that lost its reign without knowing cannot renew a lease that
//! the new leader then expires early. A lease whose deadline has passed is not renewed
//! any more, even before its revoke commits.

use crate::error::{ErrInto, Result};
use crate::keys;
use crate::proto::LeaseRecord;
use crate::raft::handle::PeerHandle;
use crate::storage::Engine;
use crate::types::ShardId;
use parking_lot::Mutex;
use prost::Message as _;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// How often the keeper reads the leases of a shard it leads again.
const RELOAD: Duration = Duration::from_secs(5);

/// The leases of the shards led here, with their deadlines.
#[derive(Default)]
pub(crate) struct LeaseKeeper {
    shards: Mutex<HashMap<ShardId, Tracked>>,
}

/// One shard's leases, as counted in one reign of its local replica.
struct Tracked {
    /// The replica, leading in `reign`.
    peer: PeerHandle,
    reign: u64,
    loaded_at: Instant,
    /// The replica's applied index when the last load began.
    applied: u64,
    /// Lease record user key → deadline.
    leases: HashMap<Vec<u8>, Instant>,
    /// Leases whose revoke is under way.
    revoking: HashSet<Vec<u8>>,
}

/// What renewing a lease found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Renewed for this TTL.
    Renewed(Duration),
    /// No such lease, or its deadline passed (its revoke may not have committed yet).
    Gone,
}

impl LeaseKeeper {
    /// A lease granted through `peer` (leading) with `ttl`: counted from now.
    pub(crate) fn granted(&self, peer: &PeerHandle, key: Vec<u8>, ttl: Duration) {
        let mut shards = self.shards.lock();
        if let Some(t) = shards.get_mut(&peer.shard) {
            if t.reign == peer.epoch.reign() {
                t.leases.insert(key, Instant::now() + ttl);
            }
        }
    }

    /// A lease revoked through this node.
    pub(crate) fn revoked(&self, shard: ShardId, key: &[u8]) {
        if let Some(t) = self.shards.lock().get_mut(&shard) {
            t.leases.remove(key);
        }
    }

    /// Renews lease `key` of `peer`'s shard (the caller has confirmed that `peer`
    /// leads, and read the lease's TTL: None when it does not exist).
    pub(crate) fn renew(&self, peer: &PeerHandle, key: &[u8], ttl: Option<Duration>) -> Renewal {
        let Some(ttl) = ttl else {
            return Renewal::Gone;
        };
        let now = Instant::now();
        let mut shards = self.shards.lock();
        match shards.get_mut(&peer.shard) {
            Some(t) if t.reign == peer.epoch.reign() => {
                if t.revoking.contains(key) {
                    return Renewal::Gone;
                }
                match t.leases.get_mut(key) {
                    Some(at) if *at <= now => Renewal::Gone,
                    Some(at) => {
                        *at = (*at).max(now + ttl);
                        Renewal::Renewed(ttl)
                    }
                    None => {
                        t.leases.insert(key.to_vec(), now + ttl);
                        Renewal::Renewed(ttl)
                    }
                }
            }
            // Not counting yet in this reign: the first count gives more than `ttl`.
            _ => Renewal::Renewed(ttl),
        }
    }

    /// Forgets the shards not in `led` (or led in another reign), and returns those
    /// of `led` to load: new reigns, and loads older than `RELOAD` of replicas that
    /// have applied something since; once their replica has applied its reign's first
    /// entry (so every grant of earlier reigns is in the load).
    pub(crate) fn to_load(&self, led: &[PeerHandle]) -> Vec<PeerHandle> {
        let reigns: HashMap<ShardId, u64> =
            led.iter().map(|p| (p.shard, p.epoch.reign())).collect();
        let mut shards = self.shards.lock();
        shards.retain(|s, t| reigns.get(s) == Some(&t.reign));
        led.iter()
            .filter(|p| {
                let fresh = shards.get(&p.shard).is_some_and(|t| {
                    t.loaded_at.elapsed() < RELOAD || t.applied == p.epoch.applied()
                });
                !fresh && p.epoch.applied() >= p.epoch.reign_start()
            })
            .cloned()
            .collect()
    }

    /// Takes in the leases `loaded` for `peer`'s shard in `reign`, read once the
    /// replica had applied `applied`: a lease counted already keeps its deadline, a
    /// new one gets its TTL plus `grace`, one no longer there is forgotten.
    pub(crate) fn loaded(
        &self,
        peer: &PeerHandle,
        reign: u64,
        applied: u64,
        loaded: Vec<(Vec<u8>, Duration)>,
        grace: Duration,
    ) {
        let now = Instant::now();
        let mut shards = self.shards.lock();
        if peer.epoch.reign() != reign || shards.get(&peer.shard).is_some_and(|t| t.reign != reign)
        {
            // Lost and won again meanwhile: the next round starts over.
            shards.remove(&peer.shard);
            return;
        }
        let t = shards.entry(peer.shard).or_insert_with(|| Tracked {
            peer: peer.clone(),
            reign,
            loaded_at: now,
            applied,
            leases: HashMap::new(),
            revoking: HashSet::new(),
        });
        t.loaded_at = now;
        t.applied = applied;
        let there: HashSet<&Vec<u8>> = loaded.iter().map(|(k, _)| k).collect();
        t.leases.retain(|k, _| there.contains(k));
        for (k, ttl) in loaded {
            t.leases.entry(k).or_insert(now + ttl + grace);
        }
    }

    /// The leases whose deadline has passed and whose revoke is not under way yet
    /// (it is from now on), with their replica and the reign that counted them. Only
    /// of shards still led in the reign they were counted in: the leadership may have
    /// gone elsewhere and come back since.
    pub(crate) fn take_expired(&self) -> Vec<(PeerHandle, u64, Vec<u8>)> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut shards = self.shards.lock();
        for t in shards.values_mut() {
            if t.leases.is_empty() {
                continue;
            }
            let p = &t.peer;
            if t.reign != p.epoch.reign() || !p.epoch.leading() {
                continue;
            }
            for (k, at) in &t.leases {
                if *at <= now && t.revoking.insert(k.clone()) {
                    out.push((p.clone(), t.reign, k.clone()));
                }
            }
        }
        out
    }

    /// The revoke of an expired lease ended (`applied`: it committed, else it is
    /// tried again next round).
    pub(crate) fn revoke_ended(&self, shard: ShardId, key: &[u8], applied: bool) {
        if let Some(t) = self.shards.lock().get_mut(&shard) {
            t.revoking.remove(key);
            if applied {
                t.leases.remove(key);
            }
        }
    }

    /// How long lease `key` of `shard` has left as counted here (None: not counted
    /// here).
    pub(crate) fn remaining(&self, shard: ShardId, key: &[u8]) -> Option<Duration> {
        let shards = self.shards.lock();
        let at = shards.get(&shard)?.leases.get(key)?;
        Some(at.saturating_duration_since(Instant::now()))
    }
}

/// The leases (record user key, TTL) in the `data` CF ranges `ranges`, read through
/// the lease index.
pub(crate) fn load(
    engine: &Engine,
    ranges: &[(Vec<u8>, Vec<u8>)],
) -> Result<Vec<(Vec<u8>, Duration)>> {
    let mut out = Vec::new();
    for (start, end) in ranges {
        let lo = [keys::LEASE_INDEX_PREFIX, start].concat();
        let hi = [keys::LEASE_INDEX_PREFIX, end].concat();
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_lower_bound(lo);
        opts.set_iterate_upper_bound(hi);
        let meta = engine.cf(keys::CF_META);
        for item in engine
            .db()
            .iterator_cf_opt(meta, opts, rocksdb::IteratorMode::Start)
        {
            let (_, dk) = item.err_into()?;
            let Some(rec) = engine.get(keys::CF_DATA, &dk)? else {
                continue;
            };
            let Some(user_key) = keys::decode_data_key(&dk) else {
                continue;
            };
            let v = crate::proto::ValueRecord::decode(rec.as_slice())?;
            let lease = LeaseRecord::decode(v.value.as_ref())?;
            out.push((user_key.to_vec(), Duration::from_millis(lease.ttl_ms)));
        }
    }
    Ok(out)
}
