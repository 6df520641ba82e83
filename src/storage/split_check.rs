//! How big a shard's data is and where it divides in two halves, read from the
//! node's RocksDB (a shard's data is the `data` CF ranges of its arcs).
//!
//! Sizes are RocksDB's approximations of flushed data (memtables are not counted);
//! while a shard's data is mostly in memtables, the midpoint is found by walking its
//! keys instead (bounded).

use crate::error::{ErrInto, Result};
use crate::keys;
use crate::ranges::Arc;
use crate::storage::Engine;

/// Below this many flushed bytes, the midpoint comes from the keys themselves.
const SMALL: u64 = 4 << 20;
/// Most keys read to find a midpoint by counting.
const MAX_KEYS_WALKED: usize = 1_000_000;

/// Approximate flushed bytes of the data in `[lo, hi]`.
fn size_of(engine: &Engine, lo: u64, hi: u64) -> u64 {
    let (start, end) = keys::data_range(lo, hi);
    let range = rocksdb::Range::new(&start, &end);
    engine
        .db()
        .get_approximate_sizes_cf(&engine.cf(keys::CF_DATA), &[range])
        .first()
        .copied()
        .unwrap_or(0)
}

/// Approximate bytes the data of `arcs` takes on disk (flushed data only).
pub(crate) fn approximate_size(engine: &Engine, arcs: &[Arc]) -> u64 {
    arcs.iter().map(|&(lo, hi)| size_of(engine, lo, hi)).sum()
}

/// Approximate number of keys in `arcs`: the `data` CF's estimated key count scaled
/// by the share of its flushed bytes the arcs hold (the keys are counted when most
/// of the data is still in memtables).
pub(crate) fn approximate_keys(engine: &Engine, arcs: &[Arc]) -> Result<u64> {
    let size = approximate_size(engine, arcs);
    let total = size_of(engine, 0, u64::MAX);
    if total < SMALL || size == 0 {
        return count_keys(engine, arcs, MAX_KEYS_WALKED);
    }
    let estimate = engine
        .db()
        .property_int_value_cf(&engine.cf(keys::CF_DATA), "rocksdb.estimate-num-keys")
        .err_into()?
        .unwrap_or(0);
    Ok((u128::from(estimate) * u128::from(size) / u128::from(total)) as u64)
}

/// Counts the keys in `arcs`, stopping at `max`.
fn count_keys(engine: &Engine, arcs: &[Arc], max: usize) -> Result<u64> {
    let mut n = 0;
    walk_hashes(engine, arcs, max, |_| n += 1)?;
    Ok(n)
}

/// Calls `f` with the partition hash of every key in `arcs`, in order, at most `max`.
fn walk_hashes(engine: &Engine, arcs: &[Arc], max: usize, mut f: impl FnMut(u64)) -> Result<()> {
    let mut seen = 0;
    for &(lo, hi) in arcs {
        let (start, end) = keys::data_range(lo, hi);
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(end);
        let iter = engine.db().iterator_cf_opt(
            &engine.cf(keys::CF_DATA),
            opts,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, _) = item.err_into()?;
            let Some(h) = k
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            f(h);
            seen += 1;
            if seen >= max {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A hash that divides the data of `arcs` into two halves of about equal size, valid
/// as a split point (strictly inside one arc). `None` when the data cannot be cut:
/// no data, or all of it under one partition hash (one hash tag is never split).
pub(crate) fn size_midpoint(engine: &Engine, arcs: &[Arc]) -> Result<Option<u64>> {
    let total = approximate_size(engine, arcs);
    if total < SMALL {
        return key_midpoint(engine, arcs);
    }
    let half = total / 2;
    let mut before = 0u64;
    for &(lo, hi) in arcs {
        let size = size_of(engine, lo, hi);
        if before + size < half {
            before += size;
            continue;
        }
        // Bisect this arc: the smallest h with size([lo, h-1]) >= half - before.
        let want = half - before;
        let (mut a, mut b) = (lo, hi);
        while a < b {
            let mid = a + (b - a) / 2;
            if size_of(engine, lo, mid) >= want {
                b = mid;
            } else {
                a = mid + 1;
            }
        }
        let at = a.max(lo.saturating_add(1)).min(hi);
        return Ok((lo < at).then_some(at));
    }
    key_midpoint(engine, arcs)
}

/// The median partition hash of the keys in `arcs` (counting keys, not bytes), moved
/// to the first key of its hash so one partition stays whole.
fn key_midpoint(engine: &Engine, arcs: &[Arc]) -> Result<Option<u64>> {
    let mut hashes = Vec::new();
    walk_hashes(engine, arcs, MAX_KEYS_WALKED, |h| hashes.push(h))?;
    let mut i = hashes.len() / 2;
    if hashes.is_empty() {
        return Ok(None);
    }
    while i > 0 && hashes[i - 1] == hashes[i] {
        i -= 1;
    }
    if i == 0 {
        // The first half is one partition: cut after it instead, if anything follows.
        let first = hashes[0];
        return Ok(hashes
            .iter()
            .find(|&&h| h != first)
            .copied()
            .filter(|&h| crate::ranges::split_at(arcs, h).is_some()));
    }
    let at = hashes[i];
    Ok(crate::ranges::split_at(arcs, at).is_some().then_some(at))
}
