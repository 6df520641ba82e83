//! Operation histories: what each client invoked, when, and what it observed.
//!
//! A [`History`] is a flat list of [`Op`]s. Each op records the client that issued
//! it, the key, the operation and its input ([`OpKind`]), the invocation time and an
//! [`Outcome`]. Times are monotonic nanoseconds since the start of the history; only
//! their order matters. Two intervals that touch (one op completes at the very
//! nanosecond the other is invoked) are treated as concurrent.
//!
//! A [`Recorder`] builds a history from concurrently running clients: call
//! [`Recorder::invoke`] just before sending a request and one of
//! [`Recorder::ok`], [`Recorder::failed`] or [`Recorder::unknown`] once its fate is
//! known. Ops that are never completed are reported as [`Outcome::Unknown`].
//!
//! Histories serialize to JSON (byte strings that are valid UTF-8 are written as
//! JSON strings, anything else as arrays of bytes) so that a failing test can leave
//! its history behind for inspection with [`History::to_json_file`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// A key of the store.
pub type Key = Vec<u8>;

/// A value of the store.
pub type Value = Vec<u8>;

/// An operation on one key, with its input.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Read the key. Completes with [`Output::Get`].
    Get,
    /// Write `value` unconditionally. Completes with [`Output::Ack`].
    Put(#[serde(with = "bytes_repr")] Value),
    /// Remove the key unconditionally. Completes with [`Output::Ack`].
    Delete,
    /// Compare-and-swap: if the key currently holds `expected` (`None`: the key
    /// must not exist), replace it with `new` (`None`: delete it). Completes with
    /// [`Output::Cas`], telling whether the swap happened.
    Cas {
        /// The value the key must hold for the swap to happen.
        #[serde(with = "opt_bytes_repr")]
        expected: Option<Value>,
        /// The value the key holds after a successful swap.
        #[serde(with = "opt_bytes_repr")]
        new: Option<Value>,
    },
}

impl OpKind {
    /// Whether `output` is the kind of output this operation produces.
    pub fn accepts(&self, output: &Output) -> bool {
        matches!(
            (self, output),
            (OpKind::Get, Output::Get(_))
                | (OpKind::Put(_) | OpKind::Delete, Output::Ack)
                | (OpKind::Cas { .. }, Output::Cas(_))
        )
    }

    /// Whether the operation may change the register (everything but a get).
    pub fn is_write(&self) -> bool {
        !matches!(self, OpKind::Get)
    }
}

/// What a successfully completed operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// The value a [`OpKind::Get`] observed (`None`: the key did not exist).
    Get(#[serde(with = "opt_bytes_repr")] Option<Value>),
    /// A [`OpKind::Put`] or [`OpKind::Delete`] was acknowledged.
    Ack,
    /// Whether a [`OpKind::Cas`] swapped.
    Cas(bool),
}

/// How an operation ended, as recorded in a [`History`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The operation completed at `complete` (nanoseconds since the start of the
    /// history) and returned `output`.
    Ok {
        /// Completion time.
        complete: u64,
        /// What the operation returned.
        output: Output,
    },
    /// The operation definitely did not take effect (for example, it was rejected
    /// before being proposed). The checker ignores it.
    Failed,
    /// The operation's fate is unknown (timeout, lost connection, never
    /// completed): it may have taken effect at any time after its invocation, or
    /// never.
    Unknown,
}

/// How an operation ended, as reported to a [`Recorder`], which adds the
/// completion time itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Completion {
    /// Completed now with the given output.
    Ok(Output),
    /// Definitely did not take effect.
    Failed,
    /// Indeterminate: may or may not have taken effect.
    Unknown,
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Op {
    /// The client (logical process) that issued the operation.
    pub client: u64,
    /// The key the operation is on.
    #[serde(with = "bytes_repr")]
    pub key: Key,
    /// The operation and its input.
    pub kind: OpKind,
    /// Invocation time, in nanoseconds since the start of the history.
    pub invoke: u64,
    /// How the operation ended.
    pub outcome: Outcome,
}

impl Op {
    /// The completion time of an [`Outcome::Ok`] operation; `None` for failed and
    /// unknown ones (an unknown operation completes, as far as the checker is
    /// concerned, at +infinity).
    pub fn complete_time(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Ok { complete, .. } => Some(complete),
            Outcome::Failed | Outcome::Unknown => None,
        }
    }
}

/// Identifies an operation within a [`History`] (its index in [`History::ops`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

/// A recorded history: every operation issued by every client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The operations, in invocation order when built by a [`Recorder`] (the
    /// checker does not depend on the order).
    pub ops: Vec<Op>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an operation and returns its id.
    pub fn push(&mut self, op: Op) -> OpId {
        self.ops.push(op);
        OpId(self.ops.len() - 1)
    }

    /// The operation with the given id.
    pub fn get(&self, id: OpId) -> Option<&Op> {
        self.ops.get(id.0)
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the history has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The history as pretty-printed JSON.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// Parses a history written by [`History::to_json`] or
    /// [`History::to_json_file`].
    pub fn from_json(json: &str) -> serde_json::Result<Self> {
        serde_json::from_str(json)
    }

    /// Writes the history as pretty-printed JSON to `path`.
    pub fn to_json_file(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        serde_json::to_writer_pretty(&mut out, self)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Reads a history written by [`History::to_json_file`].
    pub fn from_json_file(path: impl AsRef<Path>) -> io::Result<Self> {
        let reader = BufReader::new(File::open(path)?);
        Ok(serde_json::from_reader(reader)?)
    }
}

/// Records a [`History`] from concurrently running clients.
///
/// Cheap to clone; all clones record into the same history and share one clock
/// (a [`std::time::Instant`] taken by [`Recorder::new`]).
#[derive(Clone, Debug)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

#[derive(Debug)]
struct RecorderInner {
    start: Instant,
    next_value: AtomicU64,
    ops: Mutex<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    ops: Vec<Op>,
    completed: Vec<bool>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(RecorderInner {
                start: Instant::now(),
                next_value: AtomicU64::new(0),
                ops: Mutex::new(Recorded::default()),
            }),
        }
    }

    /// Nanoseconds elapsed since the recorder was created.
    pub fn now(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A value that no other call on this recorder (or its clones) returns, for
    /// use as the input of a put or CAS. Writing only unique values makes the
    /// checker's value-based CAS equivalent to the store's version-based CAS, and
    /// makes every read attributable to exactly one write.
    pub fn unique_value(&self, client: u64) -> Value {
        let n = self.inner.next_value.fetch_add(1, Ordering::Relaxed);
        format!("c{client}-v{n}").into_bytes()
    }

    /// Records the invocation of `kind` on `key` by `client`, timestamped now.
    /// Call it just before sending the request.
    pub fn invoke(&self, client: u64, key: impl Into<Key>, kind: OpKind) -> OpId {
        let key = key.into();
        let mut rec = self.lock();
        let invoke = self.now();
        rec.ops.push(Op {
            client,
            key,
            kind,
            invoke,
            outcome: Outcome::Unknown,
        });
        rec.completed.push(false);
        OpId(rec.ops.len() - 1)
    }

    /// Records how the operation `id` ended, timestamped now. Call it right after
    /// the response (or the error) arrived.
    ///
    /// Returns `false`, recording nothing, if `id` is not an operation of this
    /// recorder or was already completed. An [`Completion::Ok`] output of the
    /// wrong kind for the operation is recorded as is; the checker reports it as
    /// malformed.
    pub fn complete(&self, id: OpId, completion: Completion) -> bool {
        let mut rec = self.lock();
        let now = self.now();
        let Recorded { ops, completed } = &mut *rec;
        match (ops.get_mut(id.0), completed.get_mut(id.0)) {
            (Some(op), Some(done)) if !*done => {
                *done = true;
                op.outcome = match completion {
                    Completion::Ok(output) => Outcome::Ok {
                        complete: now.max(op.invoke),
                        output,
                    },
                    Completion::Failed => Outcome::Failed,
                    Completion::Unknown => Outcome::Unknown,
                };
                true
            }
            _ => false,
        }
    }

    /// Shorthand for `complete(id, Completion::Ok(output))`.
    pub fn ok(&self, id: OpId, output: Output) -> bool {
        self.complete(id, Completion::Ok(output))
    }

    /// Shorthand for `complete(id, Completion::Failed)`.
    pub fn failed(&self, id: OpId) -> bool {
        self.complete(id, Completion::Failed)
    }

    /// Shorthand for `complete(id, Completion::Unknown)`.
    pub fn unknown(&self, id: OpId) -> bool {
        self.complete(id, Completion::Unknown)
    }

    /// A snapshot of the history recorded so far. Operations not completed yet
    /// appear as [`Outcome::Unknown`].
    pub fn history(&self) -> History {
        History {
            ops: self.lock().ops.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // A panicking client thread cannot leave the history inconsistent (every
        // update is a single push or assignment), so a poisoned lock is fine.
        self.inner
            .ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Displays a byte string readably: as a quoted string if it is UTF-8 without
/// control characters, as `0x…` hex otherwise.
pub(crate) struct ShowBytes<'a>(pub &'a [u8]);

impl fmt::Display for ShowBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(s) if !s.chars().any(char::is_control) => write!(f, "{s:?}"),
            _ => {
                f.write_str("0x")?;
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// Displays a register state: a value, or `absent`.
pub(crate) struct ShowState<'a>(pub Option<&'a [u8]>);

impl fmt::Display for ShowState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => ShowBytes(v).fmt(f),
            None => f.write_str("absent"),
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::Get => f.write_str("get"),
            OpKind::Put(v) => write!(f, "put({})", ShowBytes(v)),
            OpKind::Delete => f.write_str("delete"),
            OpKind::Cas { expected, new } => write!(
                f,
                "cas({} -> {})",
                ShowState(expected.as_deref()),
                ShowState(new.as_deref())
            ),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Get(v) => ShowState(v.as_deref()).fmt(f),
            Output::Ack => f.write_str("ack"),
            Output::Cas(true) => f.write_str("swapped"),
            Output::Cas(false) => f.write_str("not swapped"),
        }
    }
}

impl fmt::Display for Op {
    /// For example `client 3 get -> "v7" on "k" [1200ns, 1500ns]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} {}", self.client, self.kind)?;
        match &self.outcome {
            Outcome::Ok { complete, output } => write!(
                f,
                " -> {output} on {} [{}ns, {complete}ns]",
                ShowBytes(&self.key),
                self.invoke
            ),
            Outcome::Failed => write!(
                f,
                " failed on {} [{}ns, -]",
                ShowBytes(&self.key),
                self.invoke
            ),
            Outcome::Unknown => write!(
                f,
                " -> unknown on {} [{}ns, ∞]",
                ShowBytes(&self.key),
                self.invoke
            ),
        }
    }
}

/// Serde representation of byte strings: a JSON string when the bytes are UTF-8,
/// an array of numbers otherwise. Both forms are accepted when reading.
mod bytes_repr {
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(s) => serializer.serialize_str(s),
            Err(_) => serializer.collect_seq(bytes),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_any(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or an array of bytes")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    /// Owned wrapper so that `Option<Vec<u8>>` can reuse the representation.
    pub(super) struct Bytes(pub Vec<u8>);

    impl<'de> serde::Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize(deserializer).map(Bytes)
        }
    }

    /// Borrowed wrapper so that `Option<Vec<u8>>` can reuse the representation.
    pub(super) struct BytesRef<'a>(pub &'a [u8]);

    impl serde::Serialize for BytesRef<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, serializer)
        }
    }
}

/// Serde representation of optional byte strings: `null` or as [`bytes_repr`].
mod opt_bytes_repr {
    use super::bytes_repr::{Bytes, BytesRef};
    use serde::{Deserialize, Deserializer, Serializer};

    // Serde's `with` passes `&Option<Vec<u8>>`, hence the clippy allowance.
    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(
        value: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_some(&BytesRef(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Bytes>::deserialize(deserializer)?.map(|b| b.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_bytes_exact() {
        let mut h = History::new();
        h.push(Op {
            client: 1,
            key: b"k".to_vec(),
            kind: OpKind::Put(vec![0xff, 0x00, 0x7f]),
            invoke: 5,
            outcome: Outcome::Ok {
                complete: 9,
                output: Output::Ack,
            },
        });
        h.push(Op {
            client: 2,
            key: vec![0xc3],
            kind: OpKind::Cas {
                expected: None,
                new: Some(b"caf\xc3\xa9".to_vec()),
            },
            invoke: 6,
            outcome: Outcome::Unknown,
        });
        h.push(Op {
            client: 3,
            key: b"k".to_vec(),
            kind: OpKind::Get,
            invoke: 7,
            outcome: Outcome::Ok {
                complete: 8,
                output: Output::Get(Some(b"with \"quotes\"\n".to_vec())),
            },
        });
        h.push(Op {
            client: 3,
            key: b"k".to_vec(),
            kind: OpKind::Delete,
            invoke: 10,
            outcome: Outcome::Failed,
        });
        let json = h.to_json().unwrap();
        assert!(json.contains("\"café\""), "{json}");
        assert_eq!(History::from_json(&json).unwrap(), h);

        let path =
            std::env::temp_dir().join(format!("ctxstore-history-test-{}.json", std::process::id()));
        h.to_json_file(&path).unwrap();
        let back = History::from_json_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn recorder_records_times_and_outcomes() {
        let rec = Recorder::new();
        let a = rec.invoke(1, b"k".to_vec(), OpKind::Put(rec.unique_value(1)));
        let b = rec.clone().invoke(2, b"k".to_vec(), OpKind::Get);
        let c = rec.invoke(3, b"k".to_vec(), OpKind::Delete);
        let d = rec.invoke(4, b"k".to_vec(), OpKind::Delete);
        assert!(rec.ok(a, Output::Ack));
        assert!(!rec.ok(a, Output::Ack), "second completion is ignored");
        assert!(rec.failed(c));
        assert!(rec.unknown(d));
        assert!(!rec.failed(OpId(99)));
        let h = rec.history();
        assert_eq!(h.len(), 4);
        let op_a = h.get(a).unwrap();
        assert!(op_a.complete_time().unwrap() >= op_a.invoke);
        assert_eq!(
            h.get(b).unwrap().outcome,
            Outcome::Unknown,
            "never completed"
        );
        assert_eq!(h.get(c).unwrap().outcome, Outcome::Failed);
        assert_eq!(h.get(d).unwrap().outcome, Outcome::Unknown);
        assert!(h.ops.windows(2).all(|w| w[0].invoke <= w[1].invoke));
        assert_ne!(rec.unique_value(1), rec.unique_value(1));
    }

    #[test]
    fn recorder_is_usable_from_many_threads() {
        let rec = Recorder::new();
        std::thread::scope(|s| {
            for client in 0..4 {
                let rec = rec.clone();
                s.spawn(move || {
                    for _ in 0..50 {
                        let id = rec.invoke(client, b"k".to_vec(), OpKind::Get);
                        rec.ok(id, Output::Get(None));
                    }
                });
            }
        });
        let h = rec.history();
        assert_eq!(h.len(), 200);
        assert!(h
            .ops
            .iter()
            .all(|op| matches!(op.outcome, Outcome::Ok { .. })));
    }

    #[test]
    fn display_is_readable() {
        let op = Op {
            client: 3,
            key: b"k".to_vec(),
            kind: OpKind::Cas {
                expected: None,
                new: Some(vec![0, 1]),
            },
            invoke: 1200,
            outcome: Outcome::Ok {
                complete: 1500,
                output: Output::Cas(true),
            },
        };
        assert_eq!(
            op.to_string(),
            "client 3 cas(absent -> 0x0001) -> swapped on \"k\" [1200ns, 1500ns]"
        );
    }
}
