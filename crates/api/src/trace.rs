//! W3C Trace Context's `traceparent` header (<https://www.w3.org/TR/trace-context/>),
//! which ties a client's call to the server's span for it: the client sends one in
//! the request metadata, and the server's span for the call records its trace id and
//! the caller's span id.
//!
//! Only version `00` is read: `00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2
//! hex>`, lowercase, neither id all zeros. Anything else is not a trace context, and a
//! server ignores it (a malformed header never fails a request).

use std::fmt;

/// The metadata key.
pub const TRACEPARENT: &str = "traceparent";

/// The `sampled` trace flag: the caller may record the trace, so its callees should.
pub const SAMPLED: u8 = 0x01;

/// A trace's id: 16 bytes, never all zeros. Displays as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(pub u128);

/// A span's id: 8 bytes, never all zeros. Displays as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId(pub u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A parsed `traceparent` (version 00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace the call belongs to.
    pub trace_id: TraceId,
    /// The caller's span: the parent of the callee's span.
    pub parent_id: SpanId,
    /// Trace flags ([`SAMPLED`] is the only one defined).
    pub flags: u8,
}

impl TraceParent {
    /// The length of a version 00 header.
    const LEN: usize = 55;

    /// Reads a header value; `None` unless it is a valid version 00 `traceparent`.
    pub fn parse(v: &[u8]) -> Option<TraceParent> {
        if v.len() != Self::LEN || &v[..3] != b"00-" || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let trace_id = hex(&v[3..35])?;
        let parent_id = u64::try_from(hex(&v[36..52])?).ok()?;
        let flags = u8::try_from(hex(&v[53..55])?).ok()?;
        if trace_id == 0 || parent_id == 0 {
            return None;
        }
        Some(TraceParent {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            flags,
        })
    }

    /// A new trace with a random id, from a random caller span, sampled.
    pub fn random() -> TraceParent {
        use rand::Rng as _;
        let mut rng = rand::rng();
        TraceParent {
            trace_id: TraceId(rng.random_range(1..=u128::MAX)),
            parent_id: SpanId(rng.random_range(1..=u64::MAX)),
            flags: SAMPLED,
        }
    }

    /// Whether the caller marked the trace as sampled.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

/// The header value.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// Lowercase hex digits (at most 32) as a number; `None` on any other byte.
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_parses_and_prints_back() {
        let t = TraceParent::parse(VALID.as_bytes()).expect("valid");
        assert_eq!(t.trace_id, TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736));
        assert_eq!(t.parent_id, SpanId(0x00f067aa0ba902b7));
        assert!(t.sampled());
        assert_eq!(t.to_string(), VALID);
        assert_eq!(t.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id.to_string(), "00f067aa0ba902b7");
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceParent::parse(unsampled.as_bytes())
            .expect("valid")
            .sampled());
    }

    #[test]
    fn malformed_headers_are_not_trace_contexts() {
        for bad in [
            "",
            "garbage",
            // Another version (01 may add fields; ff is forbidden).
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Uppercase, non-hex, signs.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Wrong lengths and separators.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
        // Multi-byte UTF-8 of the right length never indexes inside a character.
        let odd = "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01";
        assert_eq!(odd.len(), 55);
        assert_eq!(TraceParent::parse(odd.as_bytes()), None);
    }

    #[test]
    fn random_contexts_are_valid_and_distinct() {
        let a = TraceParent::random();
        let b = TraceParent::random();
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(TraceParent::parse(a.to_string().as_bytes()), Some(a));
    }
}
