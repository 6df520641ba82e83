//! A shard leader's load statistics, and where load says the shard should split.
//!
//! The leader's actor counts every proposed write (and every linearizable read it
//! serves) in windows of `split.load-window` (10 s by default) and keeps a small
//! uniform sample of the hashes written (a reservoir, as CockroachDB's load-based
//! splitter does). At the end of a window the sample says where to cut so that each
//! side gets about half of the writes — or that one hash takes most of them: one hash
//! tag (one conversation) is never split, so such a shard is reported as having a hot
//! partition key instead.

use rand::Rng;
use std::time::{Duration, Instant};

/// Hashes kept per window (CockroachDB keeps 20 keys; more gives a steadier median).
const RESERVOIR: usize = 64;
/// A split point is accepted only if it leaves at most this imbalance between sides.
const MAX_IMBALANCE: f64 = 0.25;
/// One hash taking at least this share of the sampled writes is a hot partition key.
const HOT_SHARE: f64 = 0.5;

/// The load of one finished window.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Window {
    /// Writes proposed per second.
    pub(crate) writes_per_sec: f64,
    /// Bytes written per second (encoded commands).
    pub(crate) write_bytes_per_sec: f64,
    /// Reads served per second.
    pub(crate) reads_per_sec: f64,
    /// A uniform sample of the hashes written, ascending.
    pub(crate) samples: Vec<u64>,
}

/// What the sampled load says about splitting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LoadSplit {
    /// Cut here: about half of the writes on each side.
    At(u64),
    /// One partition key takes most writes; splitting would not spread them.
    Hot(u64),
    /// Too few samples, or no cut balances the sides well enough.
    None,
}

/// Counts load over fixed windows.
#[derive(Debug)]
pub(crate) struct LoadSampler {
    /// Length of a window.
    window: Duration,
    /// When the current window began.
    started: Instant,
    /// Writes in the current window.
    writes: u64,
    /// Bytes written in the current window.
    bytes: u64,
    /// Reads in the current window.
    reads: u64,
    /// The reservoir of hashes written in the current window.
    samples: Vec<u64>,
    /// The last finished window.
    last: Window,
}

impl LoadSampler {
    /// A sampler with windows of `window`, the first starting now.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            started: Instant::now(),
            writes: 0,
            bytes: 0,
            reads: 0,
            samples: Vec::new(),
            last: Window::default(),
        }
    }

    /// Counts a write of `bytes` to hash `hash` (None: a command without one key).
    pub(crate) fn write(&mut self, hash: Option<u64>, bytes: usize) {
        self.writes += 1;
        self.bytes += bytes as u64;
        let Some(h) = hash else { return };
        // Reservoir sampling: every write of the window is kept with equal odds.
        if self.samples.len() < RESERVOIR {
            self.samples.push(h);
        } else {
            let j = rand::rng().random_range(0..self.writes);
            if let Some(slot) = self.samples.get_mut(j as usize) {
                *slot = h;
            }
        }
    }

    /// Counts a read.
    pub(crate) fn read(&mut self) {
        self.reads += 1;
    }

    /// Closes the window if it has lasted long enough; returns the last finished one.
    pub(crate) fn roll(&mut self, now: Instant) -> &Window {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= self.window {
            let secs = elapsed.as_secs_f64().max(1e-3);
            let mut samples = std::mem::take(&mut self.samples);
            samples.sort_unstable();
            self.last = Window {
                writes_per_sec: self.writes as f64 / secs,
                write_bytes_per_sec: self.bytes as f64 / secs,
                reads_per_sec: self.reads as f64 / secs,
                samples,
            };
            self.started = now;
            self.writes = 0;
            self.bytes = 0;
            self.reads = 0;
        }
        &self.last
    }

    /// The last finished window.
    pub(crate) fn last(&self) -> &Window {
        &self.last
    }
}

/// Where a sorted sample of written hashes says to cut.
pub(crate) fn load_split_point(samples: &[u64]) -> LoadSplit {
    if samples.len() < 8 {
        return LoadSplit::None;
    }
    // The most frequent hash: one partition key taking most writes cannot be split.
    let mut best = (0usize, 0u64);
    let mut run = (0usize, samples[0]);
    for &h in samples {
        if h == run.1 {
            run.0 += 1;
        } else {
            run = (1, h);
        }
        if run.0 > best.0 {
            best = run;
        }
    }
    let n = samples.len() as f64;
    if best.0 as f64 / n >= HOT_SHARE {
        return LoadSplit::Hot(best.1);
    }
    // The median, moved to the first sample of its run so that equal hashes stay on
    // one side; accepted only if the sides are balanced enough.
    let mut i = samples.len() / 2;
    while i > 0 && samples[i - 1] == samples[i] {
        i -= 1;
    }
    if i == 0 {
        return LoadSplit::None;
    }
    // Imbalance |left - right| / all, as CockroachDB's finder measures it.
    let left = i as f64 / n;
    if (2.0 * left - 1.0).abs() > MAX_IMBALANCE {
        return LoadSplit::None;
    }
    LoadSplit::At(samples[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_load_splits_near_the_median() {
        let samples: Vec<u64> = (0..64).map(|i| i * 1000).collect();
        assert_eq!(load_split_point(&samples), LoadSplit::At(32_000));
    }

    #[test]
    fn one_dominant_hash_is_reported_hot_not_split() {
        let mut samples = vec![7u64; 40];
        samples.extend((0..24).map(|i| 100 + i));
        samples.sort_unstable();
        assert_eq!(load_split_point(&samples), LoadSplit::Hot(7));
    }

    #[test]
    fn equal_hashes_stay_on_one_side_or_no_split() {
        // A big run across the median moves the cut to the run's start; if that
        // leaves the sides too unbalanced there is no split.
        let mut samples = vec![1u64; 10];
        samples.extend(vec![5u64; 30]);
        samples.extend((0..24).map(|i| 100 + i));
        samples.sort_unstable();
        assert_eq!(load_split_point(&samples), LoadSplit::None);
        assert_eq!(
            load_split_point(&[1, 2, 3]),
            LoadSplit::None,
            "too few samples"
        );
    }

    #[test]
    fn windows_roll_and_rates_are_per_second() {
        let mut s = LoadSampler::new(Duration::from_millis(0));
        for i in 0..1000u64 {
            s.write(Some(i), 10);
        }
        s.read();
        let w = s.roll(Instant::now() + Duration::from_secs(1)).clone();
        assert!(
            w.writes_per_sec > 500.0 && w.writes_per_sec <= 1000.0,
            "{w:?}"
        );
        assert_eq!(w.samples.len(), RESERVOIR);
        assert!(w.samples.windows(2).all(|p| p[0] <= p[1]), "sorted");
        assert_eq!(s.last(), &w);
    }
}
