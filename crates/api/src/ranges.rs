//! Which shard owns each part of the 64-bit hash space (DESIGN §1, §5).
//!
//! Every data shard's descriptor lists its *arcs*: inclusive hash ranges `[lo, hi]`,
//! changed only by entries in that shard's own log (a split hands some of them to a
//! new shard and bumps the shard's `ring_ver`; the child starts at the parent's new
//! `ring_ver`). A [`RangeMap`] is built from descriptors: a key whose partition key
//! hashes to `h` belongs to the shard whose arc contains `h`.
//!
//! A router may know descriptors of different ages. Where two of them claim the same
//! hash, the one with the higher `ring_ver` wins: along one line of splits `ring_ver`
//! only grows (a child starts at its parent's new `ring_ver`), so the newer claim is
//! the current one, and a stale claim is corrected by the shard's `StaleEpoch` answer.

use crate::proto::{HashRange, ShardDescriptor};
use crate::types::{ShardId, META_SHARD};
use std::collections::BTreeMap;

/// An inclusive hash range `[lo, hi]`.
pub type Arc = (u64, u64);

/// The owner of one stretch of the hash space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stretch {
    /// Last hash of the stretch (inclusive).
    hi: u64,
    /// Owning shard.
    shard: ShardId,
    /// The owner's `ring_ver` when it claimed the stretch.
    ring_ver: u64,
}

/// Hash → shard, from the arcs of the descriptors it was told about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeMap {
    /// Each known shard's newest `(ring_ver, arcs)`.
    shards: BTreeMap<ShardId, (u64, Vec<Arc>)>,
    /// The resolved owners, keyed by the first hash of each stretch; stretches do
    /// not overlap.
    stretches: BTreeMap<u64, Stretch>,
}

impl RangeMap {
    /// An empty map (no hash has an owner).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a shard's descriptor (its arcs and `ring_ver`); the meta shard is
    /// ignored. Returns whether anything changed.
    pub fn insert_descriptor(&mut self, desc: &ShardDescriptor) -> bool {
        if desc.shard_id == META_SHARD.0 {
            return false;
        }
        self.insert(ShardId(desc.shard_id), desc.ring_ver, &arcs_of(desc))
    }

    /// Records `shard`'s arcs as of `ring_ver`. An older `ring_ver` than the one known
    /// for the shard is ignored; returns whether anything changed.
    pub fn insert(&mut self, shard: ShardId, ring_ver: u64, arcs: &[Arc]) -> bool {
        let mut arcs = arcs.to_vec();
        arcs.sort_unstable();
        match self.shards.get(&shard) {
            Some((v, a)) if *v > ring_ver || (*v == ring_ver && *a == arcs) => return false,
            _ => {}
        }
        self.shards.insert(shard, (ring_ver, arcs));
        self.rebuild();
        true
    }

    /// Forgets a shard.
    pub fn remove(&mut self, shard: ShardId) {
        if self.shards.remove(&shard).is_some() {
            self.rebuild();
        }
    }

    /// The `ring_ver` known for `shard`.
    pub fn ring_ver(&self, shard: ShardId) -> Option<u64> {
        self.shards.get(&shard).map(|(v, _)| *v)
    }

    /// Repaints the stretches: shards in ascending `ring_ver` (then id), each
    /// overwriting what older claims said about its arcs.
    fn rebuild(&mut self) {
        let mut order: Vec<(u64, ShardId)> =
            self.shards.iter().map(|(s, (v, _))| (*v, *s)).collect();
        order.sort_unstable();
        let mut stretches = BTreeMap::new();
        for (ring_ver, shard) in order {
            for &(lo, hi) in &self.shards[&shard].1 {
                paint(
                    &mut stretches,
                    lo,
                    hi,
                    Stretch {
                        hi,
                        shard,
                        ring_ver,
                    },
                );
            }
        }
        self.stretches = stretches;
    }

    /// The shard owning hash `h`, if any known shard claims it.
    pub fn shard_for_hash(&self, h: u64) -> Option<ShardId> {
        let (_, s) = self.stretches.range(..=h).next_back()?;
        (s.hi >= h).then_some(s.shard)
    }

    /// The shards known, ascending.
    pub fn shards(&self) -> Vec<ShardId> {
        self.shards.keys().copied().collect()
    }

    /// The arcs `shard` currently owns in this map (its own arcs minus what newer
    /// claims took), ascending and merged.
    pub fn owned(&self, shard: ShardId) -> Vec<Arc> {
        let mut out: Vec<Arc> = Vec::new();
        for (&lo, s) in &self.stretches {
            if s.shard != shard {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1.checked_add(1) == Some(lo) => last.1 = s.hi,
                _ => out.push((lo, s.hi)),
            }
        }
        out
    }

    /// Whether every hash has exactly one owner (the map's stretches tile the whole
    /// space).
    pub fn covers_everything(&self) -> bool {
        let mut next: Option<u64> = Some(0);
        for (&lo, s) in &self.stretches {
            if next != Some(lo) {
                return false;
            }
            next = s.hi.checked_add(1);
        }
        next.is_none()
    }

    /// Share of the hash space each shard owns.
    pub fn shares(&self) -> BTreeMap<ShardId, f64> {
        let mut owned: BTreeMap<ShardId, u128> = BTreeMap::new();
        for (&lo, s) in &self.stretches {
            *owned.entry(s.shard).or_default() += u128::from(s.hi - lo) + 1;
        }
        let space = 2f64.powi(64);
        owned
            .into_iter()
            .map(|(s, n)| (s, n as f64 / space))
            .collect()
    }
}

/// The arcs a descriptor owns: its `arcs`, or, for a descriptor written before shards
/// had explicit arcs, the ones its `ring_shards` give it on the consistent-hash ring of
/// that version (the whole space for a single shard). The meta shard owns none.
pub fn arcs_of(desc: &ShardDescriptor) -> Vec<Arc> {
    // The meta shard owns no keys; a replica created empty to receive a snapshot
    // (conf_ver 0) knows no arcs until the snapshot brings its descriptor.
    if desc.shard_id == META_SHARD.0 || (desc.arcs.is_empty() && desc.conf_ver == 0) {
        return Vec::new();
    }
    if !desc.arcs.is_empty() {
        return desc.arcs.iter().map(|r| (r.lo, r.hi)).collect();
    }
    legacy_arcs(&desc.ring_shards, ShardId(desc.shard_id))
}

/// The arcs of `shard` on the consistent-hash ring over `ring_shards` that versions
/// before explicit arcs used (64 points per shard; one shard owns everything).
pub fn legacy_arcs(ring_shards: &[u64], shard: ShardId) -> Vec<Arc> {
    match crate::ring::Ring::from_ring_shards(ring_shards) {
        Some(ring) => ring.arcs(shard),
        None => vec![(0, u64::MAX)],
    }
}

/// Arcs in their protobuf form.
pub fn to_proto(arcs: &[Arc]) -> Vec<HashRange> {
    arcs.iter().map(|&(lo, hi)| HashRange { lo, hi }).collect()
}

/// Makes `[lo, s.hi]` owned by `s`, cutting whatever stretches overlap it.
fn paint(stretches: &mut BTreeMap<u64, Stretch>, lo: u64, hi: u64, s: Stretch) {
    if lo > hi {
        return;
    }
    // A stretch starting before `lo` that reaches into it keeps its head.
    if let Some((&start, &old)) = stretches.range(..lo).next_back() {
        if old.hi >= lo {
            stretches.insert(start, Stretch { hi: lo - 1, ..old });
            if old.hi > hi {
                // It also reaches past `hi`: keep its tail.
                stretches.insert(hi + 1, old);
            }
        }
    }
    // Stretches starting inside `[lo, hi]` go; one reaching past `hi` keeps its tail.
    let inside: Vec<u64> = stretches.range(lo..=hi).map(|(k, _)| *k).collect();
    for start in inside {
        if let Some(old) = stretches.remove(&start) {
            if old.hi > hi {
                stretches.insert(hi + 1, old);
            }
        }
    }
    stretches.insert(lo, s);
}

/// Whether `arcs` contain hash `h`.
pub fn contains(arcs: &[Arc], h: u64) -> bool {
    arcs.iter().any(|&(lo, hi)| lo <= h && h <= hi)
}

/// `n` contiguous arcs of (nearly) equal size covering the whole space, in order: the
/// arcs of the data shards of a new cluster.
pub fn even_arcs(n: u64) -> Vec<Arc> {
    let n = u128::from(n.max(1));
    let space: u128 = 1 << 64;
    (0..n)
        .map(|i| {
            let lo = (space * i / n) as u64;
            let hi = ((space * (i + 1) / n) - 1) as u64;
            (lo, hi)
        })
        .collect()
}

/// Splits `arcs` at hash `at`: the hashes `>= at` go to the second list. `at` must lie
/// strictly inside one arc (`lo < at <= hi`), so both sides are non-empty; `None`
/// otherwise (outside the arcs, or exactly at an arc's start).
pub fn split_at(arcs: &[Arc], at: u64) -> Option<(Vec<Arc>, Vec<Arc>)> {
    if !arcs.iter().any(|&(lo, hi)| lo < at && at <= hi) {
        return None;
    }
    let mut keep = Vec::new();
    let mut moved = Vec::new();
    for &(lo, hi) in arcs {
        if hi < at {
            keep.push((lo, hi));
        } else if lo >= at {
            moved.push((lo, hi));
        } else {
            keep.push((lo, at - 1));
            moved.push((at, hi));
        }
    }
    Some((keep, moved))
}

/// The hashes in `a` but not in `b`, as sorted disjoint arcs.
pub fn subtract(a: &[Arc], b: &[Arc]) -> Vec<Arc> {
    let mut out = Vec::new();
    let mut b: Vec<Arc> = b.to_vec();
    b.sort_unstable();
    for &(lo, hi) in a {
        let mut cur = Some(lo);
        for &(blo, bhi) in &b {
            let Some(c) = cur else { break };
            if bhi < c || blo > hi {
                continue;
            }
            if blo > c {
                out.push((c, blo - 1));
            }
            cur = bhi.checked_add(1).filter(|n| *n <= hi);
        }
        if let Some(c) = cur {
            out.push((c, hi));
        }
    }
    out.sort_unstable();
    out
}

/// Total number of hashes in `arcs`.
pub fn width(arcs: &[Arc]) -> u128 {
    arcs.iter().map(|&(lo, hi)| u128::from(hi - lo) + 1).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn even_arcs_tile_the_space() {
        for n in [1, 2, 3, 7, 8, 1000] {
            let mut m = RangeMap::new();
            for (i, a) in even_arcs(n).into_iter().enumerate() {
                m.insert(ShardId(i as u64 + 1), 1, &[a]);
            }
            assert!(m.covers_everything(), "{n} shards");
            assert_eq!(m.shard_for_hash(0), Some(ShardId(1)));
            assert_eq!(m.shard_for_hash(u64::MAX), Some(ShardId(n)));
        }
    }

    #[test]
    fn newer_claims_win_and_stale_ones_are_cut() {
        let mut m = RangeMap::new();
        m.insert(ShardId(1), 1, &[(0, u64::MAX)]);
        // The child is known before the parent's new descriptor.
        m.insert(ShardId(2), 2, &[(100, 199)]);
        assert_eq!(m.shard_for_hash(99), Some(ShardId(1)));
        assert_eq!(m.shard_for_hash(100), Some(ShardId(2)));
        assert_eq!(m.shard_for_hash(199), Some(ShardId(2)));
        assert_eq!(m.shard_for_hash(200), Some(ShardId(1)));
        assert_eq!(m.owned(ShardId(1)), vec![(0, 99), (200, u64::MAX)]);
        assert!(m.covers_everything());
        // An older descriptor of shard 1 changes nothing.
        assert!(!m.insert(ShardId(1), 0, &[(0, 5)]));
        // The parent's new descriptor: no overlap left.
        m.insert(ShardId(1), 2, &[(0, 99), (200, u64::MAX)]);
        assert!(m.covers_everything());
        m.remove(ShardId(2));
        assert_eq!(m.shard_for_hash(150), None);
        assert!(!m.covers_everything());
    }

    #[test]
    fn subtract_cuts_holes() {
        assert_eq!(
            subtract(&[(0, 99)], &[(10, 19), (50, 200)]),
            vec![(0, 9), (20, 49)]
        );
        assert_eq!(subtract(&[(0, u64::MAX)], &[(0, u64::MAX)]), vec![]);
        assert_eq!(subtract(&[(5, 9)], &[(0, 4), (10, 20)]), vec![(5, 9)]);
        assert_eq!(
            subtract(&[(0, u64::MAX)], &[(7, 7)]),
            vec![(0, 6), (8, u64::MAX)]
        );
    }

    #[test]
    fn split_at_needs_a_point_strictly_inside_an_arc() {
        let arcs = vec![(10, 19), (40, 49)];
        assert_eq!(split_at(&arcs, 10), None, "an arc's start is a boundary");
        assert_eq!(split_at(&arcs, 25), None, "outside the arcs");
        assert_eq!(split_at(&arcs, 50), None, "outside the arcs");
        assert_eq!(
            split_at(&arcs, 15),
            Some((vec![(10, 14)], vec![(15, 19), (40, 49)]))
        );
        assert_eq!(
            split_at(&arcs, 49),
            Some((vec![(10, 19), (40, 48)], vec![(49, 49)]))
        );
        assert_eq!(
            split_at(&[(0, u64::MAX)], u64::MAX),
            Some((vec![(0, u64::MAX - 1)], vec![(u64::MAX, u64::MAX)]))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The arc-partition invariant: after any sequence of splits of live shards,
        /// the arcs of all live shards partition the hash space exactly once, and a
        /// router that learns the descriptors in any order resolves every hash to its
        /// one owner.
        #[test]
        fn splits_keep_the_arcs_a_partition(
            initial in 1u64..8,
            cuts in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..40),
            seed in any::<u64>(),
        ) {
            // shard → (ring_ver, arcs)
            let mut live: BTreeMap<u64, (u64, Vec<Arc>)> = even_arcs(initial)
                .into_iter()
                .enumerate()
                .map(|(i, a)| (i as u64 + 1, (1, vec![a])))
                .collect();
            let mut history: Vec<(u64, u64, Vec<Arc>)> = live
                .iter()
                .map(|(s, (v, a))| (*s, *v, a.clone()))
                .collect();
            let mut next = initial + 1;
            for (pick, at) in cuts {
                let ids: Vec<u64> = live.keys().copied().collect();
                let parent = ids[(pick % ids.len() as u64) as usize];
                let (v, arcs) = live[&parent].clone();
                // A cut inside the parent's arcs, derived from `at`.
                let total = width(&arcs);
                let mut off = u128::from(at) % total;
                let mut point = None;
                for &(lo, hi) in &arcs {
                    let w = u128::from(hi - lo) + 1;
                    if off < w {
                        point = Some(lo + off as u64);
                        break;
                    }
                    off -= w;
                }
                let Some(point) = point else { continue };
                let Some((keep, moved)) = split_at(&arcs, point) else { continue };
                live.insert(parent, (v + 1, keep.clone()));
                live.insert(next, (v + 1, moved.clone()));
                history.push((parent, v + 1, keep));
                history.push((next, v + 1, moved));
                next += 1;
                // Exactly once: the live arcs tile the space without overlap.
                let mut all: Vec<Arc> = live.values().flat_map(|(_, a)| a.clone()).collect();
                all.sort_unstable();
                let mut expect: Option<u64> = Some(0);
                for (lo, hi) in &all {
                    prop_assert_eq!(expect, Some(*lo), "gap or overlap at {}", lo);
                    expect = hi.checked_add(1);
                }
                prop_assert_eq!(expect, None, "the space is not covered to its end");
            }
            // Every descriptor ever seen, in a shuffled order: the newest claims win.
            let mut order = history.clone();
            let mut s = seed;
            for i in (1..order.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mut m = RangeMap::new();
            for (shard, v, arcs) in &order {
                m.insert(ShardId(*shard), *v, arcs);
            }
            prop_assert!(m.covers_everything());
            for (shard, (_, arcs)) in &live {
                prop_assert_eq!(&m.owned(ShardId(*shard)), arcs);
            }
        }
    }
}
