//! Read modes (docs/api.md, "Read modes"): which replica may serve a read, and with
//! what guarantee; and the client's session versions that bounded-staleness reads
//! send as their floor.

use crate::proto::ReadMode as WireMode;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

/// Which replica may serve a read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// Linearizable, served by the shard's leader after a ReadIndex round.
    #[default]
    Leader,
    /// Linearizable, served by any replica: a follower asks the leader for its commit
    /// index and answers once it has applied it (follower ReadIndex). The leader's
    /// CPU and disk are spared the read; it still answers the index request.
    Follower,
    /// Any replica that heard from its leader within the bound and has applied every
    /// version this client has seen in the shard (read-your-writes and monotonic
    /// reads within the client); others answer `ReplicaTooStale` and the client tries
    /// another replica. A leader that does not qualify answers after a ReadIndex
    /// round instead.
    Bounded(Duration),
    /// Any replica's local state, without a bound.
    Stale,
}

impl ReadMode {
    /// The wire mode, bound in milliseconds (at least 1).
    pub(crate) fn wire(self) -> (WireMode, u64) {
        match self {
            ReadMode::Leader => (WireMode::Leader, 0),
            ReadMode::Follower => (WireMode::Follower, 0),
            ReadMode::Bounded(max) => (
                WireMode::Bounded,
                u64::try_from(max.as_millis()).unwrap_or(u64::MAX).max(1),
            ),
            ReadMode::Stale => (WireMode::Stale, 0),
        }
    }
}

impl std::str::FromStr for ReadMode {
    type Err = String;

    /// `leader`, `follower`, `stale`, or `bounded:<duration>` (`bounded:500ms`,
    /// `bounded:2s`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "leader" | "linearizable" => Ok(ReadMode::Leader),
            "follower" => Ok(ReadMode::Follower),
            "stale" => Ok(ReadMode::Stale),
            _ => {
                let Some(bound) = s.strip_prefix("bounded:") else {
                    return Err(format!(
                        "unknown read mode `{s}`: expected leader, follower, bounded:<duration> (e.g. bounded:500ms) or stale"
                    ));
                };
                let ms = parse_duration_ms(bound).ok_or_else(|| {
                    format!("bad bound `{bound}` in `{s}`: expected e.g. 500ms or 2s")
                })?;
                if ms == 0 {
                    return Err(format!("the bound in `{s}` must be above 0"));
                }
                Ok(ReadMode::Bounded(Duration::from_millis(ms)))
            }
        }
    }
}

impl std::fmt::Display for ReadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadMode::Leader => f.write_str("leader"),
            ReadMode::Follower => f.write_str("follower"),
            ReadMode::Bounded(d) => write!(f, "bounded:{}ms", d.as_millis()),
            ReadMode::Stale => f.write_str("stale"),
        }
    }
}

/// `250ms`, `2s` or `1m` in milliseconds.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let (digits, scale) = if let Some(d) = s.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = s.strip_suffix('s') {
        (d, 1_000)
    } else if let Some(d) = s.strip_suffix('m') {
        (d, 60_000)
    } else {
        return None;
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// The highest version this client has seen in each shard (written or read): the
/// floor a bounded-staleness read asks a follower to have applied.
#[derive(Default)]
pub(crate) struct Session {
    seen: Mutex<HashMap<u64, u64>>,
}

impl Session {
    /// Notes version `v` seen in `shard`.
    pub(crate) fn saw(&self, shard: u64, v: u64) {
        if shard == 0 || v == 0 {
            return;
        }
        let mut seen = self.seen.lock();
        let e = seen.entry(shard).or_default();
        *e = (*e).max(v);
    }

    /// The floor for reads of `shard`.
    pub(crate) fn floor(&self, shard: u64) -> u64 {
        self.seen.lock().get(&shard).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_modes_parse_and_print() {
        for (text, mode) in [
            ("leader", ReadMode::Leader),
            ("follower", ReadMode::Follower),
            ("stale", ReadMode::Stale),
            (
                "bounded:500ms",
                ReadMode::Bounded(Duration::from_millis(500)),
            ),
            ("bounded:2s", ReadMode::Bounded(Duration::from_secs(2))),
        ] {
            assert_eq!(text.parse::<ReadMode>(), Ok(mode));
        }
        assert_eq!(
            ReadMode::Bounded(Duration::from_secs(2)).to_string(),
            "bounded:2000ms"
        );
        for bad in [
            "",
            "fast",
            "bounded:",
            "bounded:0ms",
            "bounded:5x",
            "bounded:-1s",
        ] {
            let e = bad.parse::<ReadMode>().expect_err(bad);
            assert!(!e.is_empty());
        }
    }

    #[test]
    fn the_session_keeps_the_highest_version_per_shard() {
        let s = Session::default();
        s.saw(3, 10);
        s.saw(3, 7);
        s.saw(4, 2);
        s.saw(0, 99);
        assert_eq!(
            (s.floor(3), s.floor(4), s.floor(0), s.floor(9)),
            (10, 2, 0, 0)
        );
    }
}
