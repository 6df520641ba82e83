//! Read load balancing: which replica serves a read that any replica may serve.
//!
//! The [`Balancer`] keeps, per endpoint address, the requests in flight, a peak-EWMA
//! latency estimate and request/error counts, and picks one of the candidates the
//! caller offers by the configured [`ReadBalance`] policy.
//!
//! The latency estimate is a *peak* EWMA (as in Finagle and tower): a sample slower
//! than the estimate replaces it at once, a faster one pulls it down with weight
//! `1 - exp(-elapsed / TAU)`, so an endpoint that turns slow is avoided immediately
//! and trusted again only gradually. A pick sees the estimate decayed toward zero by
//! the time since its last sample, so an endpoint avoided once is probed again after
//! a few seconds rather than never. A failed request records a penalty sample
//! (`max(ERROR_PENALTY, 4 × estimate)`) instead of its real latency, so an endpoint
//! that fails fast does not look fast (linkerd2-proxy#4537).
//!
//! Locking: one map lock, held only to look endpoints up (or insert a new one). A
//! pick reads the per-endpoint atomics and, to decay the estimate, the time of its
//! last update under the endpoint's own small lock; recording a sample takes that
//! lock too, never the map's.

use parking_lot::Mutex;
use rand::Rng;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The latency estimate of an endpoint not measured yet.
const DEFAULT_RTT: Duration = Duration::from_millis(1);

/// The decay time constant of the peak-EWMA estimate.
const TAU: Duration = Duration::from_secs(1);

/// The least latency sample a failed request records.
const ERROR_PENALTY: Duration = Duration::from_millis(100);

/// Every policy with its canonical name, in declaration order.
const POLICIES: [(ReadBalance, &str); 6] = [
    (ReadBalance::RoundRobin, "round-robin"),
    (ReadBalance::LeastOutstanding, "least-outstanding"),
    (ReadBalance::Weighted, "weighted"),
    (ReadBalance::LowestLatency, "lowest-latency"),
    (ReadBalance::P2cPeakEwma, "p2c-peak-ewma"),
    (ReadBalance::KeyAffinity, "key-affinity"),
];

/// How the client spreads reads that any replica may serve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadBalance {
    /// Each candidate in turn (one counter shared by all reads).
    RoundRobin,
    /// The candidate with the fewest requests in flight (ties: random).
    LeastOutstanding,
    /// Weighted random, proportional to the candidates' weights (0 counts as 1).
    Weighted,
    /// The candidate with the lowest peak-EWMA latency (ties: random).
    LowestLatency,
    /// Power of two choices: of two random candidates, the one with the lower
    /// peak-EWMA latency × (outstanding + 1), as tower and Finagle do.
    #[default]
    P2cPeakEwma,
    /// Rendezvous hashing of (key hash, address): the same key goes to the same
    /// replica while the candidate set stays the same.
    KeyAffinity,
}

impl ReadBalance {
    /// The canonical name (what [`fmt::Display`] prints and [`FromStr`] accepts).
    fn name(self) -> &'static str {
        POLICIES
            .iter()
            .find(|(p, _)| *p == self)
            .map_or("p2c-peak-ewma", |(_, n)| n)
    }
}

impl fmt::Display for ReadBalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReadBalance {
    type Err = String;

    /// Parses a canonical name; `"p2c"` is accepted for `"p2c-peak-ewma"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "p2c" {
            return Ok(ReadBalance::P2cPeakEwma);
        }
        if let Some((p, _)) = POLICIES.iter().find(|(_, n)| *n == s) {
            return Ok(*p);
        }
        let names: Vec<&str> = POLICIES
            .iter()
            .map(|(_, n)| *n)
            .chain(std::iter::once("p2c"))
            .collect();
        Err(format!(
            "unknown read balance policy {s:?}; expected one of: {}",
            names.join(", ")
        ))
    }
}

/// One endpoint's load as the client sees it (observable, e.g. printed by a bench).
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointLoad {
    /// The endpoint's address.
    pub addr: String,
    /// Requests in flight now.
    pub outstanding: u64,
    /// The current peak-EWMA latency estimate, error penalties included.
    pub ewma: Duration,
    /// Requests finished (ok or error).
    pub requests: u64,
    /// Of the finished requests, those that failed.
    pub errors: u64,
}

/// How a request ended, for the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered.
    Ok,
    /// The request failed; it counts as a penalty latency sample.
    Error,
}

/// The peak-EWMA update: the new estimate after a `sample` that arrives `elapsed`
/// after the previous update. A sample above the estimate replaces it; otherwise the
/// estimate moves toward the sample with weight `1 - exp(-elapsed / TAU)`.
fn peak_ewma(estimate: Duration, sample: Duration, elapsed: Duration) -> Duration {
    if sample > estimate {
        return sample;
    }
    let w = (-elapsed.as_secs_f64() / TAU.as_secs_f64()).exp();
    let next = estimate.as_secs_f64() * w + sample.as_secs_f64() * (1.0 - w);
    // A convex combination of two durations: finite and in range; fall back to the
    // sample should rounding ever say otherwise.
    Duration::try_from_secs_f64(next).unwrap_or(sample)
}

/// The latency sample a failed request records, given the current estimate.
fn error_penalty(estimate: Duration) -> Duration {
    ERROR_PENALTY.max(estimate.saturating_mul(4))
}

/// A duration in nanoseconds, saturating at `u64::MAX` (some 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the balancer tracks of one endpoint.
#[derive(Debug)]
struct EndpointState {
    /// Requests in flight.
    outstanding: AtomicU64,
    /// The peak-EWMA estimate in nanoseconds; written only under `updated`'s lock,
    /// read without it.
    estimate: AtomicU64,
    /// When the estimate last changed (creation, at first); its lock serializes
    /// updates.
    updated: Mutex<Instant>,
    /// Requests finished.
    requests: AtomicU64,
    /// Requests failed.
    errors: AtomicU64,
}

impl EndpointState {
    fn new(now: Instant) -> Self {
        EndpointState {
            outstanding: AtomicU64::new(0),
            estimate: AtomicU64::new(nanos(DEFAULT_RTT)),
            updated: Mutex::new(now),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    fn estimate(&self) -> Duration {
        Duration::from_nanos(self.estimate.load(Ordering::Relaxed))
    }

    /// The estimate as a pick sees it at `now`: decayed toward zero since its last
    /// update (as tower's peak-EWMA does), so an endpoint that was slow once and got
    /// no traffic since is tried again after a few `TAU`s instead of never.
    fn estimate_at(&self, now: Instant) -> u64 {
        let idle = now.saturating_duration_since(*self.updated.lock());
        let w = (-idle.as_secs_f64() / TAU.as_secs_f64()).exp();
        // w is in (0, 1]: the product stays in range.
        (self.estimate.load(Ordering::Relaxed) as f64 * w) as u64
    }

    /// Records a finished request that took `latency`, observed at `now`.
    fn record(&self, latency: Duration, outcome: Outcome, now: Instant) {
        let mut updated = self.updated.lock();
        let estimate = self.estimate();
        let sample = match outcome {
            Outcome::Ok => latency,
            Outcome::Error => error_penalty(estimate),
        };
        let next = peak_ewma(estimate, sample, now.saturating_duration_since(*updated));
        self.estimate.store(nanos(next), Ordering::Relaxed);
        *updated = (*updated).max(now);
        drop(updated);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn load(&self, addr: &str) -> EndpointLoad {
        EndpointLoad {
            addr: addr.to_owned(),
            outstanding: self.outstanding.load(Ordering::Relaxed),
            ewma: self.estimate(),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Picks the replica for each balanced read and keeps the per-endpoint figures the
/// policies need. Shared by all requests of a client.
#[derive(Debug)]
pub(crate) struct Balancer {
    policy: ReadBalance,
    /// The round-robin counter.
    next: AtomicU64,
    endpoints: Mutex<HashMap<String, Arc<EndpointState>>>,
}

impl Balancer {
    /// A balancer using `policy`, knowing no endpoint yet.
    pub(crate) fn new(policy: ReadBalance) -> Self {
        Balancer {
            policy,
            next: AtomicU64::new(0),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// Picks one of `candidates` (address, weight ≥ 0; weight 0 counts as 1). `key`
    /// is the ring hash of the key read (KeyAffinity uses it; others ignore it).
    /// Panics never; an empty slice returns None.
    pub(crate) fn pick(&self, candidates: &[(String, u32)], key: u64) -> Option<String> {
        let i = match candidates.len() {
            0 => return None,
            1 => 0,
            _ => self.pick_index(candidates, key),
        };
        candidates.get(i).map(|(addr, _)| addr.clone())
    }

    /// The index of the pick among at least two candidates.
    fn pick_index(&self, candidates: &[(String, u32)], key: u64) -> usize {
        let n = candidates.len();
        match self.policy {
            ReadBalance::RoundRobin => {
                let turn = self.next.fetch_add(1, Ordering::Relaxed);
                // `n` fits in u64 and the remainder is below `n`: both casts are exact.
                (turn % n as u64) as usize
            }
            ReadBalance::Weighted => {
                let weight = |w: u32| u64::from(w.max(1));
                let total: u64 = candidates.iter().map(|(_, w)| weight(*w)).sum();
                let mut r = rand::rng().random_range(0..total);
                for (i, (_, w)) in candidates.iter().enumerate() {
                    if r < weight(*w) {
                        return i;
                    }
                    r -= weight(*w);
                }
                n - 1
            }
            ReadBalance::KeyAffinity => candidates
                .iter()
                .enumerate()
                .max_by_key(|(_, (addr, _))| {
                    xxhash_rust::xxh3::xxh3_64_with_seed(addr.as_bytes(), key)
                })
                .map_or(0, |(i, _)| i),
            ReadBalance::P2cPeakEwma => {
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let endpoints = self.endpoints.lock();
                let cost = |i: usize| {
                    let (estimate, outstanding) = figures(&endpoints, &candidates[i].0);
                    u128::from(estimate) * (u128::from(outstanding) + 1)
                };
                let (ca, cb) = (cost(a), cost(b));
                drop(endpoints);
                match ca.cmp(&cb) {
                    std::cmp::Ordering::Less => a,
                    std::cmp::Ordering::Greater => b,
                    std::cmp::Ordering::Equal => {
                        if rng.random_bool(0.5) {
                            a
                        } else {
                            b
                        }
                    }
                }
            }
            ReadBalance::LowestLatency => self.lowest(candidates, |(estimate, _)| estimate),
            ReadBalance::LeastOutstanding => {
                self.lowest(candidates, |(_, outstanding)| outstanding)
            }
        }
    }

    /// The candidate with the lowest `measure` of (estimate ns, outstanding); ties
    /// are broken uniformly at random (reservoir sampling, no allocation).
    fn lowest(&self, candidates: &[(String, u32)], measure: impl Fn((u64, u64)) -> u64) -> usize {
        let mut rng = rand::rng();
        let endpoints = self.endpoints.lock();
        let mut best = 0;
        let mut best_value = u64::MAX;
        let mut ties = 0u32;
        for (i, (addr, _)) in candidates.iter().enumerate() {
            let value = measure(figures(&endpoints, addr));
            if value < best_value || ties == 0 {
                best = i;
                best_value = value;
                ties = 1;
            } else if value == best_value {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = i;
                }
            }
        }
        best
    }

    /// The state of `addr`, created on first sight.
    fn state(&self, addr: &str) -> Arc<EndpointState> {
        let mut endpoints = self.endpoints.lock();
        if let Some(s) = endpoints.get(addr) {
            return Arc::clone(s);
        }
        let s = Arc::new(EndpointState::new(Instant::now()));
        endpoints.insert(addr.to_owned(), Arc::clone(&s));
        s
    }

    /// A request to `addr` starts: counts it outstanding until the guard is finished
    /// or dropped.
    pub(crate) fn start(&self, addr: &str) -> Pending {
        let state = self.state(addr);
        state.outstanding.fetch_add(1, Ordering::Relaxed);
        Pending {
            state,
            started: Instant::now(),
        }
    }

    /// Records a finished request to `addr` that took `latency`, as
    /// [`Pending::finish`] does (without touching the outstanding count).
    #[cfg(test)]
    fn observe(&self, addr: &str, latency: Duration, outcome: Outcome) {
        self.observe_at(addr, latency, outcome, Instant::now());
    }

    /// [`Balancer::observe`] at a given instant, to test the decay without sleeping.
    #[cfg(test)]
    fn observe_at(&self, addr: &str, latency: Duration, outcome: Outcome, now: Instant) {
        self.state(addr).record(latency, outcome, now);
    }

    /// Every endpoint seen, sorted by addr.
    pub(crate) fn loads(&self) -> Vec<EndpointLoad> {
        let mut loads: Vec<EndpointLoad> = self
            .endpoints
            .lock()
            .iter()
            .map(|(addr, s)| s.load(addr))
            .collect();
        loads.sort_by(|a, b| a.addr.cmp(&b.addr));
        loads
    }
}

/// (estimate ns decayed to now, outstanding) of `addr`; an endpoint never seen has
/// the default estimate and nothing in flight.
fn figures(endpoints: &HashMap<String, Arc<EndpointState>>, addr: &str) -> (u64, u64) {
    endpoints.get(addr).map_or((nanos(DEFAULT_RTT), 0), |s| {
        (
            s.estimate_at(Instant::now()),
            s.outstanding.load(Ordering::Relaxed),
        )
    })
}

/// A request in flight. `finish` records its latency (time since `start`) and
/// outcome; dropping it unfinished (the request was cancelled) only decrements
/// outstanding.
#[derive(Debug)]
pub(crate) struct Pending {
    state: Arc<EndpointState>,
    started: Instant,
}

impl Pending {
    /// The request ended with `outcome`: records its latency and stops counting it
    /// outstanding.
    pub(crate) fn finish(self, outcome: Outcome) {
        let now = Instant::now();
        self.state
            .record(now.saturating_duration_since(self.started), outcome, now);
        // Dropping `self` decrements the outstanding count.
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.state.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cands(addrs: &[&str]) -> Vec<(String, u32)> {
        addrs.iter().map(|a| ((*a).to_owned(), 1)).collect()
    }

    /// How often each candidate is picked over `n` picks with key `i`.
    fn tally(b: &Balancer, c: &[(String, u32)], n: usize) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for i in 0..n {
            let addr = b.pick(c, i as u64).expect("non-empty candidates");
            *counts.entry(addr).or_insert(0) += 1;
        }
        counts
    }

    fn count(t: &HashMap<String, usize>, addr: &str) -> usize {
        t.get(addr).copied().unwrap_or(0)
    }

    fn load(b: &Balancer, addr: &str) -> EndpointLoad {
        b.loads()
            .into_iter()
            .find(|l| l.addr == addr)
            .expect("endpoint seen")
    }

    #[test]
    fn balancer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Balancer>();
        check::<Pending>();
    }

    #[test]
    fn p2c_avoids_a_slow_endpoint() {
        let c = cands(&["a", "b", "c"]);
        let p2c = Balancer::new(ReadBalance::P2cPeakEwma);
        for _ in 0..5 {
            p2c.observe("a", 20 * MS, Outcome::Ok);
            p2c.observe("b", MS, Outcome::Ok);
            p2c.observe("c", MS, Outcome::Ok);
        }
        let t = tally(&p2c, &c, 10_000);
        assert!(count(&t, "a") < 500, "slow endpoint picked {t:?}");
        // Each fast endpoint wins every pair it forms with the slow one (about a third
        // of the picks); between the two, the one whose estimate decayed a few
        // nanoseconds more wins, so their split is not even.
        assert!(count(&t, "b") > 2_500 && count(&t, "c") > 2_500, "{t:?}");

        let rr = Balancer::new(ReadBalance::RoundRobin);
        for _ in 0..5 {
            rr.observe("a", 20 * MS, Outcome::Ok);
        }
        let t = tally(&rr, &c, 10_000);
        for addr in ["a", "b", "c"] {
            let n = count(&t, addr);
            assert!((3_333..=3_334).contains(&n), "{addr}: {t:?}");
        }
    }

    #[test]
    fn p2c_weighs_outstanding_requests() {
        let c = cands(&["a", "b"]);
        let b = Balancer::new(ReadBalance::P2cPeakEwma);
        let _busy: Vec<Pending> = (0..3).map(|_| b.start("a")).collect();
        let t = tally(&b, &c, 1_000);
        assert_eq!(count(&t, "b"), 1_000, "{t:?}");
    }

    #[test]
    fn errors_do_not_attract() {
        let c = cands(&["a", "b"]);
        let b = Balancer::new(ReadBalance::P2cPeakEwma);
        for _ in 0..10 {
            b.observe("a", Duration::ZERO, Outcome::Error);
            b.observe("b", 2 * MS, Outcome::Ok);
        }
        let t = tally(&b, &c, 10_000);
        assert!(count(&t, "b") > 9_000, "{t:?}");

        let a = load(&b, "a");
        assert_eq!((a.requests, a.errors), (10, 10));
        assert!(a.ewma >= ERROR_PENALTY, "{a:?}");
        let bl = load(&b, "b");
        assert_eq!((bl.requests, bl.errors, bl.outstanding), (10, 0, 0));
        assert_eq!(bl.ewma, 2 * MS);

        let low = Balancer::new(ReadBalance::LowestLatency);
        low.observe("a", Duration::ZERO, Outcome::Error);
        low.observe("b", 2 * MS, Outcome::Ok);
        assert_eq!(count(&tally(&low, &c, 1_000), "b"), 1_000);
    }

    #[test]
    fn error_penalty_scales_with_the_estimate() {
        assert_eq!(error_penalty(MS), ERROR_PENALTY);
        assert_eq!(error_penalty(50 * MS), 200 * MS);
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        // Peaks are taken at once, whatever the elapsed time.
        assert_eq!(peak_ewma(MS, 20 * MS, Duration::ZERO), 20 * MS);
        // No time elapsed: a lower sample does not move the estimate.
        assert_eq!(peak_ewma(20 * MS, MS, Duration::ZERO), 20 * MS);
        // One TAU: the estimate keeps e^-1 of its distance to the sample.
        let got = peak_ewma(101 * MS, MS, TAU).as_secs_f64();
        let want = 0.001 + 0.1 * (-1.0f64).exp();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        // Long after: the estimate is the sample.
        let got = peak_ewma(100 * MS, MS, 100 * TAU);
        assert!(got < MS + Duration::from_micros(1), "{got:?}");
    }

    #[test]
    fn an_idle_estimate_decays_so_a_slow_endpoint_is_probed_again() {
        let s = EndpointState::new(Instant::now());
        s.record(20 * MS, Outcome::Ok, Instant::now());
        let now = Instant::now();
        assert!(s.estimate_at(now) > nanos(19 * MS));
        assert!(s.estimate_at(now + 5 * TAU) < nanos(20 * MS) / 100);
    }

    #[test]
    fn penalty_decays() {
        let good = 2 * MS;
        // The pure update: an error, then good samples 100 ms apart.
        let mut est = peak_ewma(good, error_penalty(good), Duration::ZERO);
        assert_eq!(est, ERROR_PENALTY);
        let mut steps = 0;
        while est >= 2 * good {
            est = peak_ewma(est, good, 100 * MS);
            steps += 1;
            assert!(steps < 100, "no decay: {est:?}");
        }
        // ln(100 ms - 2 ms) - ln(2 ms) ≈ 3.9 TAU: some 39 steps of 0.1 TAU.
        assert!((35..=45).contains(&steps), "{steps} steps");

        // The same through the balancer's state, with synthetic instants.
        let b = Balancer::new(ReadBalance::P2cPeakEwma);
        let t0 = Instant::now();
        b.observe_at("a", Duration::ZERO, Outcome::Error, t0);
        assert!(load(&b, "a").ewma >= ERROR_PENALTY);
        for i in 1..=60u32 {
            b.observe_at("a", good, Outcome::Ok, t0 + i * 100 * MS);
        }
        let a = load(&b, "a");
        assert!(a.ewma < 2 * good, "{a:?}");
        assert!(a.ewma >= good, "{a:?}");
        assert_eq!((a.requests, a.errors), (61, 1));
    }

    #[test]
    fn least_outstanding_prefers_fewer_in_flight() {
        let c = cands(&["a", "b", "c"]);
        let b = Balancer::new(ReadBalance::LeastOutstanding);
        let a1 = b.start("a");
        let b1 = b.start("b");
        let b2 = b.start("b");
        // c: nothing in flight (and never seen).
        assert_eq!(count(&tally(&b, &c, 200), "c"), 200);
        let c1 = b.start("c");
        let c2 = b.start("c");
        // a 1, b 2, c 2.
        assert_eq!(count(&tally(&b, &c, 200), "a"), 200);
        assert_eq!(load(&b, "b").outstanding, 2);
        drop(b1);
        drop(b2);
        assert_eq!(load(&b, "b").outstanding, 0);
        assert_eq!(count(&tally(&b, &c, 200), "b"), 200);
        // Cancelled requests record nothing; finished ones do.
        assert_eq!(load(&b, "b").requests, 0);
        a1.finish(Outcome::Ok);
        c1.finish(Outcome::Error);
        let a = load(&b, "a");
        assert_eq!((a.outstanding, a.requests, a.errors), (0, 1, 0));
        let cl = load(&b, "c");
        assert_eq!((cl.outstanding, cl.requests, cl.errors), (1, 1, 1));
        // a and b tie at 0: both are picked.
        let t = tally(&b, &c, 1_000);
        assert!(count(&t, "a") > 350 && count(&t, "b") > 350, "{t:?}");
        drop(c2);
        assert_eq!(load(&b, "c").outstanding, 0);
    }

    #[test]
    fn lowest_latency_spreads_ties() {
        let c = cands(&["a", "b", "c"]);
        let b = Balancer::new(ReadBalance::LowestLatency);
        let t = tally(&b, &c, 3_000);
        for addr in ["a", "b", "c"] {
            assert!(count(&t, addr) > 800, "{t:?}");
        }
        b.observe("a", 5 * MS, Outcome::Ok);
        b.observe("c", 5 * MS, Outcome::Ok);
        assert_eq!(count(&tally(&b, &c, 500), "b"), 500);
    }

    #[test]
    fn key_affinity_is_deterministic_and_stable() {
        let all = cands(&["n1:7000", "n2:7000", "n3:7000", "n4:7000", "n5:7000"]);
        let b = Balancer::new(ReadBalance::KeyAffinity);
        let key = |i: u64| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
        let before: Vec<String> = (0..1_000)
            .map(|i| b.pick(&all, key(i)).expect("picked"))
            .collect();
        // Deterministic, and every candidate gets a share.
        for (i, addr) in before.iter().enumerate() {
            assert_eq!(b.pick(&all, key(i as u64)).as_ref(), Some(addr));
        }
        for (addr, _) in &all {
            let n = before.iter().filter(|a| *a == addr).count();
            assert!(n > 100, "{addr}: {n}");
        }
        // The candidates' order does not matter.
        let reversed: Vec<_> = all.iter().rev().cloned().collect();
        for (i, addr) in before.iter().enumerate() {
            assert_eq!(b.pick(&reversed, key(i as u64)).as_ref(), Some(addr));
        }
        // Removing n3 moves only the keys that were on n3.
        let removed = "n3:7000";
        let rest: Vec<_> = all.iter().filter(|(a, _)| a != removed).cloned().collect();
        let mut moved = 0;
        for (i, addr) in before.iter().enumerate() {
            let after = b.pick(&rest, key(i as u64)).expect("picked");
            if addr == removed {
                assert_ne!(after, removed);
                moved += 1;
            } else {
                assert_eq!(&after, addr, "key {i} moved");
            }
        }
        assert!(moved > 100, "{moved}");
    }

    #[test]
    fn weighted_follows_the_weights() {
        let c = vec![
            ("a".to_owned(), 1),
            ("b".to_owned(), 1),
            ("c".to_owned(), 2),
        ];
        let b = Balancer::new(ReadBalance::Weighted);
        let t = tally(&b, &c, 20_000);
        let share = count(&t, "c") as f64 / 20_000.0;
        assert!((0.45..=0.55).contains(&share), "{t:?}");
        assert!(count(&t, "a") > 4_000 && count(&t, "b") > 4_000, "{t:?}");

        // Weight 0 counts as 1.
        let c = vec![("a".to_owned(), 0), ("b".to_owned(), 1)];
        let t = tally(&b, &c, 10_000);
        assert!((4_500..=5_500).contains(&count(&t, "a")), "{t:?}");
        // Large weights do not overflow.
        let c = vec![("a".to_owned(), u32::MAX), ("b".to_owned(), u32::MAX)];
        assert!(b.pick(&c, 0).is_some());
    }

    #[test]
    fn names_round_trip() {
        for (p, name) in POLICIES {
            assert_eq!(p.to_string(), name);
            assert_eq!(name.parse::<ReadBalance>(), Ok(p));
        }
        assert_eq!("p2c".parse::<ReadBalance>(), Ok(ReadBalance::P2cPeakEwma));
        assert_eq!(ReadBalance::default().to_string(), "p2c-peak-ewma");
        let err = "fastest".parse::<ReadBalance>().expect_err("unknown name");
        assert!(err.contains("fastest"), "{err}");
        for (_, name) in POLICIES {
            assert!(err.contains(name), "{err}");
        }
        assert!("".parse::<ReadBalance>().is_err());
    }

    #[test]
    fn empty_and_single_candidates() {
        let one = cands(&["only"]);
        for (p, _) in POLICIES {
            let b = Balancer::new(p);
            assert_eq!(b.pick(&[], 7), None, "{p}");
            for key in 0..100 {
                assert_eq!(b.pick(&one, key).as_deref(), Some("only"), "{p}");
            }
        }
    }

    #[test]
    fn loads_are_sorted_by_addr() {
        let b = Balancer::new(ReadBalance::RoundRobin);
        assert!(b.loads().is_empty());
        let _p = b.start("c");
        b.observe("a", 3 * MS, Outcome::Ok);
        let _q = b.start("b");
        let loads = b.loads();
        let addrs: Vec<&str> = loads.iter().map(|l| l.addr.as_str()).collect();
        assert_eq!(addrs, ["a", "b", "c"]);
        assert_eq!(
            loads[0],
            EndpointLoad {
                addr: "a".to_owned(),
                outstanding: 0,
                ewma: 3 * MS,
                requests: 1,
                errors: 0,
            }
        );
        assert_eq!(loads[1].ewma, DEFAULT_RTT);
        assert_eq!(loads[2].outstanding, 1);
    }
}
