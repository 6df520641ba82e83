//! Consistency checking for append-only lists, such as the messages of a
//! conversation, for Jepsen-style fault tests.
//!
//! # Model
//!
//! A list starts out empty and only ever grows at its end. Every element is
//! identified by an id that is unique within the history, and every append
//! that takes effect is assigned the next sequence number: the first element
//! gets seq 1, the second seq 2, and so on, without gaps, in the order in which
//! the appends took effect.
//!
//! A history of one list is a set of [`ListOp`]s, each with real-time bounds
//! (`invoke`, `complete`, in any monotonic unit; only their order matters).
//! Two intervals that touch (one op completes at the very instant the other is
//! invoked) are treated as concurrent. The operations ([`ListOpKind`]) are
//!
//! - `Append { id, outcome }`: appended `id`. [`AppendOutcome::Ok`] carries the
//!   seq the store acknowledged; [`AppendOutcome::Failed`] means the append
//!   definitely did not take effect; [`AppendOutcome::Unknown`] means it may or
//!   may not have taken effect (a timeout, a lost connection). The completion
//!   time of an unknown append is never used.
//! - `Read { items }`: a successful read of the whole list, as `(seq, id)`
//!   pairs in list order. Failed reads observe nothing and are not recorded.
//!
//! # Rules
//!
//! [`check_list`] checks the following rules and names each violation after
//! the rule it breaks ([`ListViolation::rule`]):
//!
//! - [`SEQ_ORDER`]: in every read the element at index `i` has seq `i + 1`, and
//!   no id appears twice.
//! - [`PREFIX`]: every read is a prefix of the longest read (same `(seq, id)` at
//!   every position), i.e. all reads observe one total order.
//! - [`ACK_SEQ`]: an append acknowledged with seq `s` is at seq `s` in every read
//!   that contains it, and is present in every read with at least `s` elements;
//!   no two acknowledged appends share a seq, and no append is acknowledged
//!   with seq 0.
//! - [`FAILED_VISIBLE`]: a failed append's id never appears in a read.
//! - [`UNKNOWN_ID`]: every id in a read was appended by some op of the history.
//! - [`STALE_READ`]: a read invoked after an acknowledged append completed
//!   contains that append.
//! - [`FUTURE_READ`]: a read does not contain an append invoked after the read
//!   completed.
//! - [`LOST_WRITE`]: every acknowledged append that completed before the longest
//!   read (the final read of a test, taken after healing) was invoked is in that
//!   read. This is the final read's case of [`STALE_READ`], which is reported
//!   for that read as well; a lost write says the data is gone for good rather
//!   than not visible yet.
//! - [`APPEND_ORDER`]: if acknowledged append `A` completed before acknowledged
//!   append `B` was invoked, `A`'s seq is smaller than `B`'s.
//! - [`MALFORMED`]: the history itself is broken: an op completes before it is
//!   invoked (such an op is ignored by the real-time rules), or two appends
//!   share an id (only the first of them is used by the other rules).
//!
//! Among reads of the same maximal length, the one invoked last is "the
//! longest read".
//!
//! Read-centric rules ([`SEQ_ORDER`], [`PREFIX`], [`FAILED_VISIBLE`],
//! [`UNKNOWN_ID`], [`STALE_READ`], [`FUTURE_READ`] and the per-read part of
//! [`ACK_SEQ`]) produce at most one violation per read, listing the offending
//! elements; the append-centric ones produce one violation per offending
//! append (or seq, for a seq acknowledged twice). Violations are returned
//! grouped by rule, in the order of [`RULES`], and by op within a rule. Ops are
//! referred to as `op #i`, their index in the slice given to [`check_list`].
//!
//! The checker runs in time roughly proportional to the number of reads times
//! the number of appends, which is also the size of a history whose reads
//! return the whole list.
//!
//! # Example
//!
//! ```
//! use ctxstore_check::list::{check_list, AppendOutcome, ListOp, ListOpKind, STALE_READ};
//!
//! let append = ListOp {
//!     invoke: 0,
//!     complete: 10,
//!     kind: ListOpKind::Append { id: "m1".into(), outcome: AppendOutcome::Ok(1) },
//! };
//! let stale = ListOp { invoke: 20, complete: 30, kind: ListOpKind::Read { items: vec![] } };
//! let fine = ListOp {
//!     invoke: 40,
//!     complete: 50,
//!     kind: ListOpKind::Read { items: vec![(1, "m1".into())] },
//! };
//! let violations = check_list(&[append, stale, fine]);
//! assert_eq!(violations.len(), 1);
//! assert_eq!(violations[0].rule, STALE_READ, "{}", violations[0]);
//! ```

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// Rule: in every read, seqs are exactly 1, 2, 3, ... and no id appears twice.
pub const SEQ_ORDER: &str = "seq-order";
/// Rule: every read is a prefix of the longest read.
pub const PREFIX: &str = "prefix";
/// Rule: acknowledged appends are read at their acknowledged seq, and no two
/// acknowledged appends share a seq.
pub const ACK_SEQ: &str = "ack-seq";
/// Rule: a failed append is never read.
pub const FAILED_VISIBLE: &str = "failed-visible";
/// Rule: every id read was appended by some op of the history.
pub const UNKNOWN_ID: &str = "unknown-id";
/// Rule: a read invoked after an acknowledged append completed contains it.
pub const STALE_READ: &str = "stale-read";
/// Rule: a read does not contain an append invoked after the read completed.
pub const FUTURE_READ: &str = "future-read";
/// Rule: acknowledged appends that completed before the longest (final) read
/// was invoked are in that read.
pub const LOST_WRITE: &str = "lost-write";
/// Rule: an acknowledged append that completed before another acknowledged
/// append was invoked has the smaller seq.
pub const APPEND_ORDER: &str = "append-order";
/// Not a property of the store: the history is malformed (an op completes
/// before it is invoked, or two appends share an id).
pub const MALFORMED: &str = "malformed";

/// Every rule [`check_list`] checks, in the order in which it reports them.
pub const RULES: [&str; 10] = [
    MALFORMED,
    SEQ_ORDER,
    PREFIX,
    ACK_SEQ,
    FAILED_VISIBLE,
    UNKNOWN_ID,
    STALE_READ,
    FUTURE_READ,
    LOST_WRITE,
    APPEND_ORDER,
];

/// At most this many offending elements are spelled out in one violation.
const MAX_LISTED: usize = 8;

/// One operation on one list, with real-time bounds in any monotonic unit
/// (for example nanoseconds since the start of the test).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ListOp {
    /// Invocation time: just before the request was sent.
    pub invoke: u64,
    /// Completion time: just after the response arrived. For an append with an
    /// [`AppendOutcome::Unknown`] outcome, `u64::MAX` or the time the client
    /// gave up; it is not used.
    pub complete: u64,
    /// What the operation did and observed.
    pub kind: ListOpKind,
}

/// An operation on a list, with what it observed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListOpKind {
    /// Appended the element `id` (unique within the history).
    Append {
        /// The element's id.
        id: String,
        /// How the append ended.
        outcome: AppendOutcome,
    },
    /// Read the whole list successfully (failed reads are not recorded).
    Read {
        /// The elements in list order, as `(seq, id)` pairs.
        items: Vec<(u64, String)>,
    },
}

/// How an append ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppendOutcome {
    /// The append took effect and was assigned this seq.
    Ok(u64),
    /// The append definitely did not take effect.
    Failed,
    /// The append may or may not have taken effect.
    Unknown,
}

/// A violation of one of the rules of [`check_list`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ListViolation {
    /// The rule violated: one of [`RULES`].
    pub rule: &'static str,
    /// What was observed, referring to ops by their index in the history
    /// (`op #i`).
    pub detail: String,
}

impl fmt::Display for ListViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

/// Checks a history of one list (operations in any order) against the rules
/// listed in the [module documentation](self). Returns every violation found;
/// an empty result means the history is consistent.
pub fn check_list(ops: &[ListOp]) -> Vec<ListViolation> {
    let mut out = Vec::new();
    let history = Indexed::new(ops, &mut out);
    let longest = history.longest_read();
    for read in &history.reads {
        check_seq_order(read, &mut out);
        if let Some(longest) = longest {
            check_prefix(read, longest, &mut out);
        }
        check_read_ack_seqs(&history, read, &mut out);
        check_read_ids(&history, read, &mut out);
        check_stale_read(&history, read, &mut out);
        check_future_read(&history, read, &mut out);
    }
    check_shared_seqs(&history, &mut out);
    if let Some(longest) = longest {
        check_lost_writes(&history, longest, &mut out);
    }
    check_append_order(&history, &mut out);
    // Stable: within a rule, violations stay in the order found (by op).
    out.sort_by_key(|v| RULES.iter().position(|&r| r == v.rule));
    out
}

/// An append of the history (the first one, if several share its id).
struct Append<'a> {
    op: usize,
    invoke: u64,
    complete: u64,
    id: &'a str,
    outcome: &'a AppendOutcome,
    /// Whether `invoke <= complete`; only such ops take part in real-time rules.
    timed: bool,
}

impl Append<'_> {
    /// The acknowledged seq, for an [`AppendOutcome::Ok`] append.
    fn ack(&self) -> Option<u64> {
        match self.outcome {
            AppendOutcome::Ok(seq) => Some(*seq),
            AppendOutcome::Failed | AppendOutcome::Unknown => None,
        }
    }

    fn describe(&self) -> String {
        format!("{:?} (op #{})", self.id, self.op)
    }
}

/// A read of the history, with an index of its contents.
struct Read<'a> {
    op: usize,
    invoke: u64,
    complete: u64,
    items: &'a [(u64, String)],
    /// Whether `invoke <= complete`; only such ops take part in real-time rules.
    timed: bool,
    /// Each id read, with the seq of its first occurrence.
    seq_of: HashMap<&'a str, u64>,
}

impl Read<'_> {
    fn len(&self) -> u64 {
        u64::try_from(self.items.len()).unwrap_or(u64::MAX)
    }

    fn contains(&self, id: &str) -> bool {
        self.seq_of.contains_key(id)
    }

    /// The distinct elements in list order (the first occurrence of each id).
    fn distinct(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        let mut seen = HashSet::new();
        self.items
            .iter()
            .map(|(seq, id)| (*seq, id.as_str()))
            .filter(move |(_, id)| seen.insert(*id))
    }
}

/// The history, split into appends and reads.
struct Indexed<'a> {
    /// Appends with distinct ids, in op order.
    appends: Vec<Append<'a>>,
    /// Index into `appends` by id.
    by_id: HashMap<&'a str, usize>,
    /// Indexes into `appends` of the acknowledged appends, by seq, then op.
    acked: Vec<usize>,
    /// Reads, in op order.
    reads: Vec<Read<'a>>,
}

impl<'a> Indexed<'a> {
    /// Indexes `ops`, reporting malformed ops to `out`.
    fn new(ops: &'a [ListOp], out: &mut Vec<ListViolation>) -> Self {
        let mut history = Indexed {
            appends: Vec::new(),
            by_id: HashMap::new(),
            acked: Vec::new(),
            reads: Vec::new(),
        };
        for (op, o) in ops.iter().enumerate() {
            let timed = o.invoke <= o.complete;
            if !timed {
                out.push(violation(
                    MALFORMED,
                    format!(
                        "op #{op} completes (at {}) before it is invoked (at {})",
                        o.complete, o.invoke
                    ),
                ));
            }
            match &o.kind {
                ListOpKind::Append { id, outcome } => {
                    if let Some(&first) = history.by_id.get(id.as_str()) {
                        let first = history.appends.get(first).map_or(0, |a| a.op);
                        out.push(violation(
                            MALFORMED,
                            format!("append op #{op} reuses the id {id:?} of append op #{first}"),
                        ));
                        continue;
                    }
                    history.by_id.insert(id.as_str(), history.appends.len());
                    history.appends.push(Append {
                        op,
                        invoke: o.invoke,
                        complete: o.complete,
                        id: id.as_str(),
                        outcome,
                        timed,
                    });
                }
                ListOpKind::Read { items } => {
                    let mut seq_of = HashMap::with_capacity(items.len());
                    for (seq, id) in items {
                        seq_of.entry(id.as_str()).or_insert(*seq);
                    }
                    history.reads.push(Read {
                        op,
                        invoke: o.invoke,
                        complete: o.complete,
                        items,
                        timed,
                        seq_of,
                    });
                }
            }
        }
        let mut acked: Vec<(u64, usize)> = history
            .appends
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.ack().map(|seq| (seq, i)))
            .collect();
        acked.sort_unstable();
        history.acked = acked.into_iter().map(|(_, i)| i).collect();
        history
    }

    /// The acknowledged appends with their seqs, by seq.
    fn acked(&self) -> impl Iterator<Item = (&Append<'a>, u64)> + '_ {
        self.acked
            .iter()
            .filter_map(|&i| self.appends.get(i))
            .filter_map(|a| a.ack().map(|seq| (a, seq)))
    }

    fn append(&self, id: &str) -> Option<&Append<'a>> {
        self.by_id.get(id).and_then(|&i| self.appends.get(i))
    }

    /// The longest read; among equally long ones, the one invoked last.
    fn longest_read(&self) -> Option<&Read<'a>> {
        self.reads
            .iter()
            .max_by_key(|r| (r.items.len(), r.invoke, r.op))
    }
}

fn violation(rule: &'static str, detail: String) -> ListViolation {
    ListViolation { rule, detail }
}

/// Joins `parts` with "; ", spelling out at most [`MAX_LISTED`] of them.
fn join_limited(parts: &[String]) -> String {
    let mut s = parts
        .iter()
        .take(MAX_LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if parts.len() > MAX_LISTED {
        s.push_str(&format!("; and {} more", parts.len() - MAX_LISTED));
    }
    s
}

/// Reports `parts` (if any) as one violation of `rule`: "`what`: part, part, …".
fn push_listed(out: &mut Vec<ListViolation>, rule: &'static str, what: String, parts: &[String]) {
    if !parts.is_empty() {
        out.push(violation(rule, format!("{what}: {}", join_limited(parts))));
    }
}

/// Rule [`SEQ_ORDER`].
fn check_seq_order(read: &Read<'_>, out: &mut Vec<ListViolation>) {
    let mut parts = Vec::new();
    let misplaced = read
        .items
        .iter()
        .zip(1u64..)
        .find(|((seq, _), expected)| seq != expected);
    if let Some(((seq, id), expected)) = misplaced {
        parts.push(format!(
            "position {expected} holds seq {seq} ({id:?}) instead of seq {expected}"
        ));
    }
    if read.seq_of.len() < read.items.len() {
        let mut seqs: HashMap<&str, Vec<u64>> = HashMap::new();
        for (seq, id) in read.items {
            seqs.entry(id.as_str()).or_default().push(*seq);
        }
        for (_, id) in read.distinct() {
            match seqs.get(id) {
                Some(at) if at.len() > 1 => {
                    let at: Vec<String> = at.iter().map(u64::to_string).collect();
                    parts.push(format!(
                        "{id:?} appears {} times (at seqs {})",
                        at.len(),
                        at.join(", ")
                    ));
                }
                _ => {}
            }
        }
    }
    let what = format!("read op #{} ({} items)", read.op, read.items.len());
    push_listed(out, SEQ_ORDER, what, &parts);
}

/// Rule [`PREFIX`].
fn check_prefix(read: &Read<'_>, longest: &Read<'_>, out: &mut Vec<ListViolation>) {
    if read.op == longest.op {
        return;
    }
    let divergence = read
        .items
        .iter()
        .zip(longest.items)
        .zip(1u64..)
        .find(|((ours, theirs), _)| ours != theirs);
    if let Some((((seq, id), (lseq, lid)), position)) = divergence {
        out.push(violation(
            PREFIX,
            format!(
                "read op #{} ({} items) is not a prefix of the longest read op #{} ({} items): \
                 at position {position} it has seq {seq} {id:?}, the longest read has seq {lseq} \
                 {lid:?}",
                read.op,
                read.items.len(),
                longest.op,
                longest.items.len()
            ),
        ));
    }
}

/// Rule [`ACK_SEQ`], for one read: acknowledged appends are at their seq, and
/// present if the read is long enough.
fn check_read_ack_seqs(history: &Indexed<'_>, read: &Read<'_>, out: &mut Vec<ListViolation>) {
    let len = read.len();
    let mut parts = Vec::new();
    for (append, ack) in history.acked() {
        match read.seq_of.get(append.id) {
            Some(&seq) if seq != ack => parts.push(format!(
                "{} acknowledged with seq {ack} is at seq {seq}",
                append.describe()
            )),
            Some(_) => {}
            None if (1..=len).contains(&ack) => {
                let holder = usize::try_from(ack - 1)
                    .ok()
                    .and_then(|i| read.items.get(i))
                    .map(|(seq, id)| format!(" (position {ack} holds seq {seq} {id:?})"))
                    .unwrap_or_default();
                parts.push(format!(
                    "{} acknowledged with seq {ack} is missing{holder}",
                    append.describe()
                ));
            }
            None => {}
        }
    }
    let what = format!(
        "read op #{} ({} items) disagrees with acknowledged seqs",
        read.op,
        read.items.len()
    );
    push_listed(out, ACK_SEQ, what, &parts);
}

/// Rules [`FAILED_VISIBLE`] and [`UNKNOWN_ID`].
fn check_read_ids(history: &Indexed<'_>, read: &Read<'_>, out: &mut Vec<ListViolation>) {
    let mut failed = Vec::new();
    let mut unknown = Vec::new();
    for (seq, id) in read.distinct() {
        match history.append(id) {
            Some(append) if *append.outcome == AppendOutcome::Failed => {
                failed.push(format!("{} at seq {seq}", append.describe()));
            }
            Some(_) => {}
            None => unknown.push(format!("{id:?} at seq {seq}")),
        }
    }
    let what = format!("read op #{} contains appends that failed", read.op);
    push_listed(out, FAILED_VISIBLE, what, &failed);
    let what = format!(
        "read op #{} contains ids that no append of the history wrote",
        read.op
    );
    push_listed(out, UNKNOWN_ID, what, &unknown);
}

/// The acknowledged appends that completed before `read` was invoked but are
/// missing from it.
fn missed_appends<'h, 'a>(history: &'h Indexed<'a>, read: &Read<'_>) -> Vec<(&'h Append<'a>, u64)> {
    if !read.timed {
        return Vec::new();
    }
    history
        .acked()
        .filter(|(a, _)| a.timed && a.complete < read.invoke && !read.contains(a.id))
        .collect()
}

/// Rule [`STALE_READ`].
fn check_stale_read(history: &Indexed<'_>, read: &Read<'_>, out: &mut Vec<ListViolation>) {
    let missed: Vec<String> = missed_appends(history, read)
        .into_iter()
        .map(|(a, seq)| {
            format!(
                "{} with seq {seq}, completed at {}",
                a.describe(),
                a.complete
            )
        })
        .collect();
    if !missed.is_empty() {
        out.push(violation(
            STALE_READ,
            format!(
                "read op #{} (invoked at {}, {} items) misses appends acknowledged before it was \
                 invoked: {}",
                read.op,
                read.invoke,
                read.items.len(),
                join_limited(&missed)
            ),
        ));
    }
}

/// Rule [`FUTURE_READ`].
fn check_future_read(history: &Indexed<'_>, read: &Read<'_>, out: &mut Vec<ListViolation>) {
    if !read.timed {
        return;
    }
    let future: Vec<String> = read
        .distinct()
        .filter_map(|(seq, id)| history.append(id).map(|a| (seq, a)))
        .filter(|(_, a)| a.timed && a.invoke > read.complete)
        .map(|(seq, a)| format!("{} at seq {seq}, invoked at {}", a.describe(), a.invoke))
        .collect();
    if !future.is_empty() {
        out.push(violation(
            FUTURE_READ,
            format!(
                "read op #{} (completed at {}) contains appends invoked after it completed: {}",
                read.op,
                read.complete,
                join_limited(&future)
            ),
        ));
    }
}

/// Rule [`ACK_SEQ`], across appends: no seq 0, no seq acknowledged twice.
fn check_shared_seqs(history: &Indexed<'_>, out: &mut Vec<ListViolation>) {
    let mut by_seq: BTreeMap<u64, Vec<&Append<'_>>> = BTreeMap::new();
    for (append, seq) in history.acked() {
        by_seq.entry(seq).or_default().push(append);
    }
    if let Some(zero) = by_seq.get(&0) {
        for append in zero {
            out.push(violation(
                ACK_SEQ,
                format!(
                    "append {} was acknowledged with seq 0; seqs start at 1",
                    append.describe()
                ),
            ));
        }
    }
    for (seq, appends) in by_seq {
        if appends.len() > 1 {
            let names: Vec<String> = appends.iter().map(|a| a.describe()).collect();
            out.push(violation(
                ACK_SEQ,
                format!(
                    "seq {seq} was acknowledged to {} appends: {}",
                    appends.len(),
                    join_limited(&names)
                ),
            ));
        }
    }
}

/// Rule [`LOST_WRITE`].
fn check_lost_writes(history: &Indexed<'_>, longest: &Read<'_>, out: &mut Vec<ListViolation>) {
    for (append, seq) in missed_appends(history, longest) {
        out.push(violation(
            LOST_WRITE,
            format!(
                "append {} with seq {seq}, completed at {}, is missing from the longest read op \
                 #{} (invoked at {}, {} items)",
                append.describe(),
                append.complete,
                longest.op,
                longest.invoke,
                longest.items.len()
            ),
        ));
    }
}

/// Rule [`APPEND_ORDER`]: sweeps the acknowledged appends by invocation time,
/// keeping the one with the highest seq among those that completed earlier.
fn check_append_order(history: &Indexed<'_>, out: &mut Vec<ListViolation>) {
    let timed: Vec<(&Append<'_>, u64)> = history.acked().filter(|(a, _)| a.timed).collect();
    let mut by_complete = timed.clone();
    by_complete.sort_by_key(|(a, _)| (a.complete, a.op));
    let mut by_invoke = timed;
    by_invoke.sort_by_key(|(a, _)| (a.invoke, a.op));
    let mut done = by_complete.iter().peekable();
    let mut highest: Option<(&Append<'_>, u64)> = None;
    for (b, b_seq) in by_invoke {
        while let Some(&(a, a_seq)) = done.next_if(|(a, _)| a.complete < b.invoke) {
            if highest.is_none_or(|(_, h)| a_seq > h) {
                highest = Some((a, a_seq));
            }
        }
        if let Some((a, a_seq)) = highest {
            if a_seq >= b_seq {
                out.push(violation(
                    APPEND_ORDER,
                    format!(
                        "append {} (invoked at {}) got seq {b_seq}, but append {} with seq \
                         {a_seq} had completed before, at {}",
                        b.describe(),
                        b.invoke,
                        a.describe(),
                        a.complete
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds hand-written histories; times are arbitrary.
    #[derive(Default)]
    struct Builder {
        ops: Vec<ListOp>,
    }

    impl Builder {
        fn new() -> Self {
            Self::default()
        }

        fn append(&mut self, id: &str, outcome: AppendOutcome, t: (u64, u64)) -> &mut Self {
            self.ops.push(ListOp {
                invoke: t.0,
                complete: t.1,
                kind: ListOpKind::Append {
                    id: id.to_string(),
                    outcome,
                },
            });
            self
        }

        fn ok(&mut self, id: &str, seq: u64, t: (u64, u64)) -> &mut Self {
            self.append(id, AppendOutcome::Ok(seq), t)
        }

        fn failed(&mut self, id: &str, t: (u64, u64)) -> &mut Self {
            self.append(id, AppendOutcome::Failed, t)
        }

        fn unknown(&mut self, id: &str, invoke: u64) -> &mut Self {
            self.append(id, AppendOutcome::Unknown, (invoke, u64::MAX))
        }

        /// A read of `ids`, numbered 1, 2, 3, ...
        fn read(&mut self, ids: &[&str], t: (u64, u64)) -> &mut Self {
            let items: Vec<(u64, &str)> = (1u64..).zip(ids.iter().copied()).collect();
            self.raw_read(&items, t)
        }

        fn raw_read(&mut self, items: &[(u64, &str)], t: (u64, u64)) -> &mut Self {
            self.ops.push(ListOp {
                invoke: t.0,
                complete: t.1,
                kind: ListOpKind::Read {
                    items: items.iter().map(|&(s, id)| (s, id.to_string())).collect(),
                },
            });
            self
        }

        /// The distinct rules violated, in [`RULES`] order.
        fn rules(&self) -> Vec<&'static str> {
            rules_of(&check_list(&self.ops))
        }

        #[track_caller]
        fn assert_consistent(&self) {
            let violations = check_list(&self.ops);
            assert!(violations.is_empty(), "{}", show(&violations));
            let mut reversed = self.ops.clone();
            reversed.reverse();
            let violations = check_list(&reversed);
            assert!(violations.is_empty(), "reversed: {}", show(&violations));
        }

        /// Asserts that exactly `expected` rules are violated, whatever the
        /// order of the ops.
        #[track_caller]
        fn assert_rules(&self, expected: &[&str]) -> Vec<ListViolation> {
            let violations = check_list(&self.ops);
            assert_eq!(rules_of(&violations), expected, "{}", show(&violations));
            let mut reversed = self.ops.clone();
            reversed.reverse();
            let rev = check_list(&reversed);
            assert_eq!(rules_of(&rev), expected, "reversed: {}", show(&rev));
            violations
        }
    }

    fn rules_of(violations: &[ListViolation]) -> Vec<&'static str> {
        RULES
            .iter()
            .copied()
            .filter(|r| violations.iter().any(|v| v.rule == *r))
            .collect()
    }

    fn show(violations: &[ListViolation]) -> String {
        violations
            .iter()
            .map(|v| format!("\n  {v}"))
            .collect::<String>()
    }

    // Consistent histories.

    #[test]
    fn empty_history_is_consistent() {
        Builder::new().assert_consistent();
        Builder::new().read(&[], (0, 1)).assert_consistent();
    }

    #[test]
    fn sequential_history_is_consistent() {
        Builder::new()
            .read(&[], (0, 5))
            .ok("a", 1, (10, 20))
            .read(&["a"], (30, 40))
            .ok("b", 2, (50, 60))
            .ok("c", 3, (70, 80))
            .read(&["a", "b", "c"], (90, 100))
            .assert_consistent();
    }

    #[test]
    fn concurrent_history_is_consistent() {
        // b and c overlap; c took effect first. Reads concurrent with the
        // appends see any consistent prefix.
        Builder::new()
            .ok("a", 1, (0, 10))
            .ok("b", 3, (20, 60))
            .ok("c", 2, (25, 50))
            .read(&["a"], (15, 30))
            .read(&["a", "c"], (22, 58))
            .read(&["a", "c", "b"], (40, 70))
            .failed("d", (30, 45))
            .unknown("e", 65)
            .ok("f", 5, (70, 90))
            .read(&["a", "c", "b"], (71, 80))
            .read(&["a", "c", "b", "e", "f"], (100, 110))
            .assert_consistent();
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The read is invoked at the instant the append completes, so it may
        // miss it; the append is invoked at the instant the read completes,
        // so the read may contain it.
        Builder::new()
            .ok("a", 1, (0, 10))
            .read(&[], (10, 20))
            .ok("b", 2, (30, 40))
            .read(&["a", "b"], (25, 30))
            .assert_consistent();
    }

    #[test]
    fn unknown_append_that_took_effect_is_consistent() {
        Builder::new()
            .unknown("a", 0)
            .ok("b", 2, (10, 20))
            .read(&["a"], (5, 15))
            .read(&["a", "b"], (30, 40))
            .assert_consistent();
    }

    #[test]
    fn unknown_append_that_never_took_effect_is_consistent() {
        Builder::new()
            .unknown("a", 0)
            .ok("b", 1, (10, 20))
            .read(&[], (5, 15))
            .read(&["b"], (30, 40))
            .assert_consistent();
    }

    #[test]
    fn unknown_append_with_give_up_time_is_consistent() {
        // The give-up time says nothing: the append took effect later.
        Builder::new()
            .append("a", AppendOutcome::Unknown, (0, 10))
            .read(&[], (20, 30))
            .read(&["a"], (40, 50))
            .assert_consistent();
    }

    #[test]
    fn failed_append_that_is_not_read_is_consistent() {
        Builder::new()
            .failed("a", (0, 10))
            .ok("b", 1, (20, 30))
            .read(&["b"], (40, 50))
            .assert_consistent();
    }

    #[test]
    fn lost_write_needs_the_longest_read_to_follow_the_append() {
        // The only read is concurrent with the append: it may precede it.
        Builder::new()
            .ok("a", 1, (0, 100))
            .read(&[], (20, 30))
            .assert_consistent();
    }

    // One violation per rule.

    #[test]
    fn seq_gap_violates_seq_order() {
        let v = Builder::new()
            .unknown("a", 0)
            .unknown("b", 0)
            .raw_read(&[(1, "a"), (3, "b")], (10, 20))
            .assert_rules(&[SEQ_ORDER]);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("position 2 holds seq 3"), "{}", v[0]);
    }

    #[test]
    fn seq_starting_at_zero_violates_seq_order() {
        Builder::new()
            .unknown("a", 0)
            .raw_read(&[(0, "a")], (10, 20))
            .assert_rules(&[SEQ_ORDER]);
    }

    #[test]
    fn duplicate_id_in_a_read_violates_seq_order() {
        let v = Builder::new()
            .unknown("a", 0)
            .raw_read(&[(1, "a"), (2, "a")], (10, 20))
            .assert_rules(&[SEQ_ORDER]);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("appears 2 times"), "{}", v[0]);
    }

    #[test]
    fn diverging_reads_violate_prefix() {
        let v = Builder::new()
            .unknown("a", 0)
            .unknown("b", 0)
            .read(&["b"], (10, 20))
            .read(&["a", "b"], (10, 20))
            .assert_rules(&[PREFIX]);
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn equally_long_diverging_reads_violate_prefix() {
        Builder::new()
            .unknown("a", 0)
            .unknown("b", 0)
            .read(&["a"], (10, 20))
            .read(&["b"], (10, 20))
            .assert_rules(&[PREFIX]);
    }

    #[test]
    fn read_at_another_seq_violates_ack_seq() {
        Builder::new()
            .ok("a", 2, (0, 10))
            .read(&["a"], (5, 15))
            .assert_rules(&[ACK_SEQ]);
    }

    #[test]
    fn acked_append_missing_from_a_long_read_violates_ack_seq() {
        Builder::new()
            .ok("a", 1, (0, 10))
            .unknown("b", 0)
            .read(&["b"], (5, 15))
            .assert_rules(&[ACK_SEQ]);
    }

    #[test]
    fn swapped_acked_appends_violate_ack_seq() {
        let v = Builder::new()
            .ok("a", 1, (0, 10))
            .ok("b", 2, (0, 10))
            .read(&["b", "a"], (5, 15))
            .assert_rules(&[ACK_SEQ]);
        assert_eq!(v.len(), 1, "one violation per read");
        assert!(v[0].detail.contains("\"a\" (op #0)"), "{}", v[0]);
        assert!(v[0].detail.contains("\"b\" (op #1)"), "{}", v[0]);
    }

    #[test]
    fn shared_seq_violates_ack_seq() {
        let v = Builder::new()
            .ok("a", 1, (0, 10))
            .ok("b", 1, (0, 10))
            .assert_rules(&[ACK_SEQ]);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].detail.starts_with("seq 1 was acknowledged to 2"),
            "{}",
            v[0]
        );
    }

    #[test]
    fn seq_zero_violates_ack_seq() {
        Builder::new().ok("a", 0, (0, 10)).assert_rules(&[ACK_SEQ]);
    }

    #[test]
    fn visible_failed_append_violates_failed_visible() {
        Builder::new()
            .failed("a", (0, 10))
            .read(&["a"], (20, 30))
            .assert_rules(&[FAILED_VISIBLE]);
    }

    #[test]
    fn id_never_appended_violates_unknown_id() {
        Builder::new()
            .read(&["x"], (0, 10))
            .assert_rules(&[UNKNOWN_ID]);
    }

    #[test]
    fn read_missing_an_earlier_append_violates_stale_read() {
        let v = Builder::new()
            .ok("a", 1, (0, 10))
            .read(&[], (20, 30))
            .read(&["a"], (40, 50))
            .assert_rules(&[STALE_READ]);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.starts_with("read op #1"), "{}", v[0]);
    }

    #[test]
    fn read_containing_a_later_append_violates_future_read() {
        Builder::new()
            .read(&["a"], (0, 10))
            .ok("a", 1, (20, 30))
            .assert_rules(&[FUTURE_READ]);
        Builder::new()
            .read(&["a"], (0, 10))
            .unknown("a", 20)
            .assert_rules(&[FUTURE_READ]);
    }

    #[test]
    fn final_read_missing_an_append_violates_lost_write() {
        let v = Builder::new()
            .ok("a", 1, (0, 10))
            .ok("b", 2, (0, 10))
            .read(&["a", "b"], (20, 30))
            .ok("c", 3, (40, 50))
            .read(&["a", "b"], (60, 70))
            .assert_rules(&[STALE_READ, LOST_WRITE]);
        let lost: Vec<_> = v.iter().filter(|v| v.rule == LOST_WRITE).collect();
        assert_eq!(lost.len(), 1);
        assert!(lost[0].detail.contains("\"c\" (op #3)"), "{}", lost[0]);
        assert!(lost[0].detail.contains("longest read op #4"), "{}", lost[0]);
    }

    #[test]
    fn overtaken_append_violates_append_order() {
        let v = Builder::new()
            .ok("a", 2, (0, 10))
            .ok("b", 1, (20, 30))
            .assert_rules(&[APPEND_ORDER]);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.starts_with("append \"b\" (op #1)"), "{}", v[0]);
    }

    #[test]
    fn append_order_compares_with_the_highest_earlier_seq() {
        // c follows both a and b; only b's seq is above c's.
        Builder::new()
            .ok("a", 1, (0, 10))
            .ok("b", 3, (0, 12))
            .ok("c", 2, (20, 30))
            .assert_rules(&[APPEND_ORDER]);
    }

    #[test]
    fn malformed_histories_are_reported() {
        Builder::new()
            .ok("a", 1, (10, 5))
            .assert_rules(&[MALFORMED]);
        Builder::new()
            .raw_read(&[], (10, 5))
            .assert_rules(&[MALFORMED]);
        let v = Builder::new()
            .ok("a", 1, (0, 10))
            .unknown("a", 20)
            .read(&["a"], (30, 40))
            .assert_rules(&[MALFORMED]);
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn several_violations_are_all_reported_in_rule_order() {
        let b = {
            let mut b = Builder::new();
            b.ok("a", 2, (0, 10))
                .ok("b", 1, (20, 30))
                .failed("c", (0, 10))
                .read(&["x", "c"], (40, 50));
            b
        };
        let v = check_list(&b.ops);
        let rules: Vec<_> = v.iter().map(|v| v.rule).collect();
        assert_eq!(
            rules,
            [
                ACK_SEQ,
                FAILED_VISIBLE,
                UNKNOWN_ID,
                STALE_READ,
                LOST_WRITE,
                LOST_WRITE,
                APPEND_ORDER
            ],
            "{}",
            show(&v)
        );
        assert_eq!(
            b.rules(),
            [
                ACK_SEQ,
                FAILED_VISIBLE,
                UNKNOWN_ID,
                STALE_READ,
                LOST_WRITE,
                APPEND_ORDER
            ]
        );
    }

    #[test]
    fn long_lists_are_truncated_in_details() {
        let mut b = Builder::new();
        let ids: Vec<String> = (0..20).map(|i| format!("x{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        b.read(&ids, (0, 10));
        let v = b.assert_rules(&[UNKNOWN_ID]);
        assert!(v[0].detail.ends_with("; and 12 more"), "{}", v[0]);
    }

    #[test]
    fn violations_display_their_rule() {
        let v = violation(PREFIX, "details".to_string());
        assert_eq!(v.to_string(), "prefix: details");
    }

    #[test]
    fn ops_round_trip_through_json() {
        let mut b = Builder::new();
        b.ok("a", 1, (0, 10))
            .failed("b", (0, 10))
            .unknown("c", 5)
            .read(&["a"], (20, 30));
        let json = serde_json::to_string(&b.ops).expect("serialize");
        assert!(
            json.contains(r#""append":{"id":"a","outcome":{"ok":1}}"#),
            "{json}"
        );
        let back: Vec<ListOp> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, b.ops);
    }

    // Simulated histories.

    /// One step of a simulated execution: `(kind, fate, before, after)`. Reads
    /// (kind < 4) and appends take effect at their linearization point; the
    /// op is invoked `before` and completes `after` around it.
    type Step = (u8, u8, u64, u64);

    fn step() -> impl Strategy<Value = Step> {
        (0..10u8, 0..20u8, 0..400u64, 0..400u64)
    }

    /// Simulates a correct list: op `i` takes effect at `1000 + 100 * i`, its
    /// interval spanning up to 4 neighbours on each side, so up to 8 ops are
    /// concurrent. Appends fail (not applied), end unknown (applied or not,
    /// with or without a give-up time) or succeed. Ends with a final read
    /// after everything if `final_read`, and shuffles the ops with `seed`.
    fn simulate(steps: &[Step], final_read: bool, seed: u64) -> Vec<ListOp> {
        let mut list: Vec<(u64, String)> = Vec::new();
        let mut ops = Vec::new();
        for (i, &(kind, fate, before, after)) in (0u64..).zip(steps) {
            let point = 1000 + 100 * i;
            let (invoke, mut complete) = (point - before, point + after);
            let kind = if kind < 4 {
                ListOpKind::Read {
                    items: list.clone(),
                }
            } else {
                let id = format!("e{i}");
                let next = list.len() as u64 + 1;
                let (applied, outcome) = match fate {
                    0 | 1 => (false, AppendOutcome::Failed),
                    2 => (true, AppendOutcome::Unknown),
                    3 => (false, AppendOutcome::Unknown),
                    _ => (true, AppendOutcome::Ok(next)),
                };
                if applied {
                    list.push((next, id.clone()));
                }
                if outcome == AppendOutcome::Unknown && after % 2 == 0 {
                    complete = u64::MAX;
                }
                ListOpKind::Append { id, outcome }
            };
            ops.push(ListOp {
                invoke,
                complete,
                kind,
            });
        }
        if final_read {
            // After every op has completed.
            let invoke = 2000 + 100 * steps.len() as u64;
            ops.push(ListOp {
                invoke,
                complete: invoke + 10,
                kind: ListOpKind::Read { items: list },
            });
        }
        shuffle(&mut ops, seed);
        ops
    }

    /// Fisher–Yates with splitmix64.
    fn shuffle<T>(v: &mut [T], mut seed: u64) {
        let mut next = move || {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for i in (1..v.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }

    fn items_mut(op: &mut ListOp) -> Option<&mut Vec<(u64, String)>> {
        match &mut op.kind {
            ListOpKind::Read { items } => Some(items),
            ListOpKind::Append { .. } => None,
        }
    }

    fn acked_ids(ops: &[ListOp]) -> HashSet<String> {
        ops.iter()
            .filter_map(|op| match &op.kind {
                ListOpKind::Append {
                    id,
                    outcome: AppendOutcome::Ok(_),
                } => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn simulation_produces_concurrency_and_all_outcomes() {
        let steps: Vec<Step> = (0..200u64)
            .map(|i| {
                (
                    (i * 7 % 10) as u8,
                    (i * 13 % 20) as u8,
                    i * 37 % 400,
                    i * 53 % 400,
                )
            })
            .collect();
        let ops = simulate(&steps, true, 1);
        let violations = check_list(&ops);
        assert!(violations.is_empty(), "{}", show(&violations));
        let count = |f: &dyn Fn(&ListOp) -> bool| ops.iter().filter(|op| f(op)).count();
        assert!(count(&|op| matches!(op.kind, ListOpKind::Read { .. })) > 20);
        for outcome in [
            AppendOutcome::Failed,
            AppendOutcome::Unknown,
            AppendOutcome::Ok(1),
        ] {
            let n = count(&|op| match &op.kind {
                ListOpKind::Append { outcome: o, .. } => {
                    std::mem::discriminant(o) == std::mem::discriminant(&outcome)
                }
                ListOpKind::Read { .. } => false,
            });
            assert!(n > 5, "{outcome:?}: {n}");
        }
        // Some pairs of ops overlap.
        let overlapping = ops
            .iter()
            .flat_map(|a| ops.iter().map(move |b| (a, b)))
            .filter(|(a, b)| a.invoke < b.invoke && b.invoke < a.complete)
            .count();
        assert!(overlapping > 100, "{overlapping}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Histories of a correct list, with concurrency and faults, are
        /// consistent, in any op order.
        #[test]
        fn simulated_histories_are_consistent(
            steps in prop::collection::vec(step(), 0..80),
            final_read in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let ops = simulate(&steps, final_read, seed);
            let violations = check_list(&ops);
            prop_assert!(violations.is_empty(), "{}", show(&violations));
        }

        /// Corrupting one read of a correct history is caught: dropping an
        /// element in the middle or swapping two elements breaks the seqs;
        /// swapping two ids but not their seqs, or dropping an element and
        /// renumbering the rest, misplaces an acknowledged append.
        #[test]
        fn corrupted_read_is_caught(
            steps in prop::collection::vec(step(), 10..80),
            seed in any::<u64>(),
            mode in 0..4u8,
            victim in any::<prop::sample::Index>(),
            first in any::<prop::sample::Index>(),
            second in any::<prop::sample::Index>(),
        ) {
            let mut ops = simulate(&steps, true, seed);
            let acked = acked_ids(&ops);
            let candidates: Vec<usize> = (0..ops.len())
                .filter(|&i| matches!(&ops[i].kind, ListOpKind::Read { items } if items.len() >= 2))
                .collect();
            prop_assume!(!candidates.is_empty());
            let victim = *victim.get(&candidates);
            let items = items_mut(&mut ops[victim]).expect("a read");
            let len = items.len();
            // Positions holding acknowledged appends, except the last one.
            let acked_inner: Vec<usize> =
                (0..len - 1).filter(|&i| acked.contains(&items[i].1)).collect();
            let expected = match mode {
                0 => {
                    items.remove(first.index(len - 1));
                    SEQ_ORDER
                }
                1 => {
                    let i = first.index(len);
                    let mut j = second.index(len - 1);
                    if j >= i {
                        j += 1;
                    }
                    items.swap(i, j);
                    SEQ_ORDER
                }
                2 => {
                    prop_assume!(!acked_inner.is_empty());
                    let i = *first.get(&acked_inner);
                    let mut j = second.index(len - 1);
                    if j >= i {
                        j += 1;
                    }
                    let id_i = std::mem::take(&mut items[i].1);
                    let id_j = std::mem::replace(&mut items[j].1, id_i);
                    items[i].1 = id_j;
                    ACK_SEQ
                }
                _ => {
                    prop_assume!(!acked_inner.is_empty());
                    items.remove(*first.get(&acked_inner));
                    for (seq, item) in (1u64..).zip(items.iter_mut()) {
                        item.0 = seq;
                    }
                    ACK_SEQ
                }
            };
            let violations = check_list(&ops);
            prop_assert!(
                violations.iter().any(|v| v.rule == expected),
                "expected {}, got:{}",
                expected,
                show(&violations)
            );
        }
    }
}
