//! Small utilities shared by clients and servers: the wall clock and retry backoff.

use rand::Rng;
use std::time::Duration;

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Exponential backoff: each pause doubles up to a cap, optionally jittered by a
/// random factor in `[0.5, 1.5)` so that many clients retrying together spread out.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The first pause (and the pause after a `reset`).
    initial: Duration,
    /// The largest pause.
    max: Duration,
    /// The next pause before jitter.
    next: Duration,
    /// Whether pauses are jittered.
    jitter: bool,
}

impl Backoff {
    /// Pauses of `initial`, doubling up to `max`, without jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
            jitter: false,
        }
    }

    /// The same backoff with jittered pauses.
    pub fn jittered(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// The pause to take now; the next one is twice as long (up to the cap).
    pub fn next_pause(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        if self.jitter {
            base.mul_f64(rand::rng().random_range(0.5..1.5))
        } else {
            base
        }
    }

    /// Starts over from the first pause (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// Sleeps for the next pause, but never past `deadline`.
    pub async fn sleep_until_at_most(&mut self, deadline: tokio::time::Instant) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(self.next_pause().min(left)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(20), Duration::from_millis(100));
        let got: Vec<u64> = (0..5).map(|_| b.next_pause().as_millis() as u64).collect();
        assert_eq!(got, vec![20, 40, 80, 100, 100]);
        b.reset();
        assert_eq!(b.next_pause(), Duration::from_millis(20));
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(100)).jittered();
        for _ in 0..200 {
            let p = b.next_pause();
            assert!(
                p >= Duration::from_millis(50) && p < Duration::from_millis(150),
                "{p:?}"
            );
        }
    }
}
