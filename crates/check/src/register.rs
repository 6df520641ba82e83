//! The linearizability checker for per-key compare-and-swap registers.
//!
//! See the [module documentation](super) for the model and the algorithm.

use super::history::{History, Key, Op, OpKind, Outcome, Output, ShowState, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Limits on the search, so that a pathological history yields
/// [`Verdict::Unknown`] instead of running (nearly) forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Give up on a key after memoising this many distinct search states. Each
    /// state costs a few dozen bytes of memory (more when many operations are
    /// pending at once), so the default of 10 million bounds memory to well
    /// under a gigabyte for realistic histories.
    pub max_states_per_key: u64,
    /// Give up on a key after searching for this long. `None`: no time limit.
    pub max_time_per_key: Option<Duration>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            max_states_per_key: 10_000_000,
            max_time_per_key: None,
        }
    }
}

/// The overall verdict of a [`CheckResult`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Every key is linearizable.
    Linearizable,
    /// No key is known to violate linearizability, but the search gave up on at
    /// least one.
    Unknown,
    /// At least one key is not linearizable.
    NotLinearizable,
    /// At least one key's operations are malformed (for example, a get that
    /// returned a CAS result), so its history is meaningless.
    Malformed,
}

/// The result of [`check_history`]: a verdict for every key, plus totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// One result per key present in the history, ordered by key.
    pub keys: Vec<KeyResult>,
    /// Operations that took part in the check, over all keys: all but failed ones
    /// and gets with an unknown outcome.
    pub ops_checked: usize,
    /// Operations ignored because they cannot constrain the result: failed ones
    /// and gets with an unknown outcome.
    pub ops_skipped: usize,
}

/// The verdict for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyResult {
    /// The key.
    pub key: Key,
    /// Operations on this key that took part in the check.
    pub ops_checked: usize,
    /// Operations on this key that were ignored (see [`CheckResult::ops_skipped`]).
    pub ops_skipped: usize,
    /// Number of distinct search states explored (memoised).
    pub states_explored: u64,
    /// The verdict.
    pub verdict: Verdict,
}

/// Whether one key's operations are linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A valid linearization exists.
    Linearizable,
    /// No valid linearization exists.
    NotLinearizable(Violation),
    /// The search hit a limit of [`CheckOptions`] before reaching a verdict.
    Unknown {
        /// Which limit was hit, and how far the search got.
        reason: String,
    },
    /// An operation is malformed, so the key was not checked.
    Malformed {
        /// Index of the malformed operation in [`History::ops`].
        op: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why a key is not linearizable.
///
/// The search reports the longest sequence of operations it managed to
/// linearize: a valid sequential execution, respecting real-time order, of as
/// many operations as possible. After it, some operation that had already
/// completed could not be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The longest linearizable prefix found, as indices into [`History::ops`],
    /// in linearization order.
    pub linearized: Vec<usize>,
    /// The register's state after [`Violation::linearized`].
    pub state: Option<Value>,
    /// An operation (index into [`History::ops`]) that had completed but could not
    /// be linearized after that prefix.
    pub blocked: Option<usize>,
    /// A one-paragraph human-readable explanation.
    pub explanation: String,
}

impl CheckResult {
    /// Number of keys checked.
    pub fn keys_checked(&self) -> usize {
        self.keys.len()
    }

    /// The overall verdict: the worst verdict of any key.
    pub fn status(&self) -> Status {
        self.keys
            .iter()
            .map(|k| match k.verdict {
                Verdict::Linearizable => Status::Linearizable,
                Verdict::Unknown { .. } => Status::Unknown,
                Verdict::NotLinearizable(_) => Status::NotLinearizable,
                Verdict::Malformed { .. } => Status::Malformed,
            })
            .max()
            .unwrap_or(Status::Linearizable)
    }

    /// Whether every key is linearizable.
    pub fn is_linearizable(&self) -> bool {
        self.status() == Status::Linearizable
    }

    /// The keys that are not linearizable or malformed.
    pub fn violations(&self) -> impl Iterator<Item = &KeyResult> {
        self.keys.iter().filter(|k| {
            matches!(
                k.verdict,
                Verdict::NotLinearizable(_) | Verdict::Malformed { .. }
            )
        })
    }

    /// The result for `key`, if the history has operations on it.
    pub fn key(&self, key: &[u8]) -> Option<&KeyResult> {
        self.keys
            .binary_search_by(|k| k.key.as_slice().cmp(key))
            .ok()
            .and_then(|i| self.keys.get(i))
    }
}

impl fmt::Display for CheckResult {
    /// A summary line, followed by one line per key that is not linearizable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status() {
            Status::Linearizable => "linearizable",
            Status::Unknown => "unknown (search limit reached)",
            Status::NotLinearizable => "NOT linearizable",
            Status::Malformed => "malformed history",
        };
        write!(
            f,
            "{status}: {} keys, {} ops checked, {} ops skipped",
            self.keys_checked(),
            self.ops_checked,
            self.ops_skipped
        )?;
        for k in &self.keys {
            if k.verdict != Verdict::Linearizable {
                write!(f, "\n  key {}: {}", ShowState(Some(&k.key)), k.verdict)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable(v) => write!(f, "not linearizable: {}", v.explanation),
            Verdict::Unknown { reason } => write!(f, "unknown: {reason}"),
            Verdict::Malformed { op, reason } => write!(f, "malformed op #{op}: {reason}"),
        }
    }
}

/// Checks `history` with the default [`CheckOptions`].
pub fn check_history(history: &History) -> CheckResult {
    check_history_with(history, &CheckOptions::default())
}

/// Checks that the operations on every key of `history` are linearizable with
/// respect to a compare-and-swap register that starts out absent. Keys are
/// checked independently (linearizability is compositional).
pub fn check_history_with(history: &History, options: &CheckOptions) -> CheckResult {
    let mut by_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        by_key.entry(op.key.as_slice()).or_default().push(i);
    }
    let keys: Vec<KeyResult> = by_key
        .into_iter()
        .map(|(key, indices)| check_key(history, key, &indices, options))
        .collect();
    CheckResult {
        ops_checked: keys.iter().map(|k| k.ops_checked).sum(),
        ops_skipped: keys.iter().map(|k| k.ops_skipped).sum(),
        keys,
    }
}

/// Register states are interned: `ABSENT` is the absent key, every distinct value
/// gets its own id. This keeps states `Copy` and cheap to hash.
type StateId = u32;
const ABSENT: StateId = 0;
/// Stands, during the search, for every value that no operation still to be
/// linearized observes (see [`Search::canonical`]).
const ANONYMOUS: StateId = StateId::MAX;
/// Marks an unrestricted configuration in a cache key (see [`Search`]).
const UNRESTRICTED: StateId = StateId::MAX - 1;

/// One operation's effect on the interned register, with its output folded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// A get that observed the state.
    Read(StateId),
    /// A put or delete.
    Write(StateId),
    /// A CAS that swapped (or, if its outcome is unknown, may have).
    Swap { expected: StateId, new: StateId },
    /// A CAS that reported it did not swap.
    NoSwap { expected: StateId },
}

impl Step {
    /// The state after applying the operation to `state`, or `None` if the
    /// operation's output is impossible in `state`.
    fn apply(self, state: StateId) -> Option<StateId> {
        match self {
            Step::Read(seen) => (seen == state).then_some(state),
            Step::Write(new) => Some(new),
            Step::Swap { expected, new } => (expected == state).then_some(new),
            Step::NoSwap { expected } => (expected != state).then_some(state),
        }
    }

    /// Whether the operation leaves the state unchanged whenever its output is
    /// possible (a get, or a CAS that did not swap).
    fn is_pure(self) -> bool {
        matches!(self, Step::Read(_) | Step::NoSwap { .. })
    }

    /// The state the operation compares the register with, if any.
    fn observes(self) -> Option<StateId> {
        match self {
            Step::Read(seen) => Some(seen),
            Step::Swap { expected, .. } | Step::NoSwap { expected } => Some(expected),
            Step::Write(_) => None,
        }
    }
}

/// An operation prepared for the search.
#[derive(Clone, Copy, Debug)]
struct SearchOp {
    /// Index into [`History::ops`].
    index: usize,
    step: Step,
    invoke: u64,
    /// `None` for unknown outcomes: the operation returns at +infinity, so nothing
    /// forces it to be linearized.
    complete: Option<u64>,
}

fn check_key(history: &History, key: &[u8], indices: &[usize], opts: &CheckOptions) -> KeyResult {
    let mut result = KeyResult {
        key: key.to_vec(),
        ops_checked: 0,
        ops_skipped: 0,
        states_explored: 0,
        verdict: Verdict::Linearizable,
    };
    let mut interner = Interner::default();
    let mut ops = Vec::with_capacity(indices.len());
    for &index in indices {
        let Some(op) = history.ops.get(index) else {
            continue;
        };
        match prepare(op, &mut interner) {
            Ok(Some(step)) => ops.push(SearchOp {
                index,
                step,
                invoke: op.invoke,
                complete: op.complete_time(),
            }),
            Ok(None) => result.ops_skipped += 1,
            Err(reason) => {
                result.verdict = Verdict::Malformed { op: index, reason };
                return result;
            }
        }
    }
    result.ops_checked = ops.len();
    // The search wants operations with a known outcome first; invocation order
    // within each group keeps the cache's encoding of linearized sets compact.
    ops.sort_by_key(|op| (op.complete.is_none(), op.invoke, op.index));

    let search = Search::new(&ops);
    let (verdict, explored) = search.run(opts, history, &interner);
    result.states_explored = explored;
    result.verdict = verdict;
    result
}

/// Translates an operation into a [`Step`]; `Ok(None)` if it cannot constrain the
/// result (failed, or a get whose output is unknown).
fn prepare(op: &Op, interner: &mut Interner) -> Result<Option<Step>, String> {
    let output = match &op.outcome {
        Outcome::Failed => return Ok(None),
        Outcome::Unknown if !op.kind.is_write() => return Ok(None),
        Outcome::Unknown => None,
        Outcome::Ok { complete, output } => {
            if *complete < op.invoke {
                return Err(format!(
                    "completed at {complete}ns, before its invocation at {}ns",
                    op.invoke
                ));
            }
            if !op.kind.accepts(output) {
                return Err(format!(
                    "{} returned a mismatched output {output:?}",
                    op.kind
                ));
            }
            Some(output)
        }
    };
    let step = match (&op.kind, output) {
        (OpKind::Get, Some(Output::Get(seen))) => Step::Read(interner.id(seen.as_deref())),
        (OpKind::Put(value), _) => Step::Write(interner.id(Some(value))),
        (OpKind::Delete, _) => Step::Write(ABSENT),
        (OpKind::Cas { expected, .. }, Some(Output::Cas(false))) => Step::NoSwap {
            expected: interner.id(expected.as_deref()),
        },
        // A successful CAS, or one with an unknown outcome: if the latter is
        // linearized at all, it is as a successful swap, since a CAS that did
        // not swap has no effect and is equivalent to not linearizing it.
        (OpKind::Cas { expected, new }, _) => Step::Swap {
            expected: interner.id(expected.as_deref()),
            new: interner.id(new.as_deref()),
        },
        // `accepts` rules out every other combination.
        (kind, output) => return Err(format!("{kind} returned a mismatched output {output:?}")),
    };
    Ok(Some(step))
}

/// Maps register states to small integers.
#[derive(Default)]
struct Interner {
    ids: HashMap<Value, StateId>,
    values: Vec<Value>,
}

impl Interner {
    fn id(&mut self, value: Option<&[u8]>) -> StateId {
        let Some(value) = value else {
            return ABSENT;
        };
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        self.values.push(value.to_vec());
        // Ids start at 1. There are never more distinct values than operations,
        // so no history that fits in memory reaches the reserved ids.
        let id = StateId::try_from(self.values.len()).unwrap_or(UNRESTRICTED - 1);
        self.ids.insert(value.to_vec(), id);
        id
    }

    fn value(&self, id: StateId) -> Option<&[u8]> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.values.get(index).map(Vec::as_slice)
    }
}

/// Sentinel for "no node".
const NONE: usize = usize::MAX;

/// A doubly linked list of call/return events in time order, supporting the
/// "dancing links" trick: an unlinked node keeps its own links, so undoing
/// unlinks in reverse order restores the list exactly.
///
/// Node `0` is the head sentinel, nodes `1..=events` are the events, and the
/// last node is the tail sentinel.
struct EventList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per node: the operation (index into the search's ops), the event's time
    /// and whether it is a call (as opposed to a return). Meaningless for the
    /// sentinels.
    op: Vec<usize>,
    time: Vec<u64>,
    is_call: Vec<bool>,
}

impl EventList {
    /// Builds the list from `(time, 0 for call / 1 for return, op)` tuples, which
    /// it sorts: at equal times calls come first, so that intervals that merely
    /// touch count as concurrent. Records every event's node in `call_node` or
    /// `ret_node`.
    fn new(
        mut events: Vec<(u64, u8, usize)>,
        call_node: &mut [usize],
        ret_node: &mut [usize],
    ) -> Self {
        events.sort_unstable();
        let nodes = events.len() + 2;
        let mut list = Self {
            next: (1..=nodes).collect(),
            prev: (0..nodes).map(|n| n.wrapping_sub(1)).collect(),
            op: vec![NONE; nodes],
            time: vec![0; nodes],
            is_call: vec![false; nodes],
        };
        for (pos, (time, kind, op)) in events.into_iter().enumerate() {
            let node = pos + 1;
            list.op[node] = op;
            list.time[node] = time;
            list.is_call[node] = kind == 0;
            if kind == 0 {
                call_node[op] = node;
            } else {
                ret_node[op] = node;
            }
        }
        list
    }

    fn first(&self) -> usize {
        self.next[0]
    }

    fn tail(&self) -> usize {
        self.next.len() - 1
    }

    /// The operation of the call event at `node`, if it is one (not a return
    /// event or the tail).
    fn call_at(&self, node: usize) -> Option<usize> {
        (node != self.tail() && self.is_call[node]).then(|| self.op[node])
    }

    fn unlink(&mut self, n: usize) {
        let (p, q) = (self.prev[n], self.next[n]);
        self.next[p] = q;
        self.prev[q] = p;
    }

    fn relink(&mut self, n: usize) {
        let (p, q) = (self.prev[n], self.next[n]);
        self.next[p] = n;
        self.prev[q] = n;
    }

    /// The operations of the call events before the first return event.
    fn leading_calls(&self) -> impl Iterator<Item = usize> + '_ {
        let mut node = self.first();
        std::iter::from_fn(move || {
            let op = self.call_at(node)?;
            node = self.next[node];
            Some(op)
        })
    }

    /// The first return event: `(time, op)`, or `None` if there is none.
    fn first_return(&self) -> Option<(u64, usize)> {
        let tail = self.tail();
        let mut node = self.first();
        while node != tail {
            if !self.is_call[node] {
                return Some((self.time[node], self.op[node]));
            }
            node = self.next[node];
        }
        None
    }
}

/// Why an operation with an unknown outcome is tried (see [`Search::run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// It writes a state that a candidate which fails in the current state
    /// observes.
    Needed,
    /// It writes some other state, and a CAS that reported no swap fails in
    /// the current state.
    Speculative,
}

/// Where the search is in exploring the current configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cursor {
    /// Just arrived at the configuration: look for a forced move first.
    Enter,
    /// Scanning the candidates with a known outcome, at this node of `main`.
    Known(usize),
    /// Scanning the candidates with an unknown outcome, at this node of
    /// `unknown`. Those invoked no later than `limit` (the time of the first
    /// pending return) qualify.
    Unknown { node: usize, limit: u64, pass: Pass },
    /// Every candidate has been tried: backtrack.
    Exhausted,
}

/// A linearized operation on the search stack.
#[derive(Clone, Copy, Debug)]
struct Frame {
    op: usize,
    /// The state before the operation.
    prev_state: StateId,
    /// The id of the set of linearized unknown operations before it.
    prev_unknown: u32,
    /// Where to resume scanning the previous configuration's candidates when
    /// backtracking over this operation.
    resume: Cursor,
}

/// What the candidates that fail in the current state would need instead.
#[derive(Default)]
struct Needs {
    /// States that gets and successful CASes expect.
    states: Vec<StateId>,
    /// Whether a CAS that reported no swap fails: any other state would do.
    any_other: bool,
}

/// Memoised configurations.
///
/// For every cache key, which encodes the state, the restriction and the set of
/// linearized operations with a known outcome (see [`encode_key`]), the sets of
/// linearized operations with an unknown outcome it was visited with, none a
/// subset of another. There is usually just one, so a key maps to a single
/// `u32`: the id of that set in `Search::unknown_sets` or, with [`MANY`] set,
/// the index of a list of ids in `many`. This keeps memory to well under 100
/// bytes per configuration.
#[derive(Default)]
struct Cache {
    visits: HashMap<Box<[u8]>, u32, BuildHasherDefault<FxHasher>>,
    many: Vec<Vec<u32>>,
}

/// Flags a [`Cache`] value as an index into `Cache::many`.
const MANY: u32 = 1 << 31;

/// The Wing–Gong/Lowe search over one key's operations; see the module docs
/// and [`Search::run`].
///
/// Operations are indexed so that those with a known outcome come first
/// (`0..known`), then those with an unknown outcome. The former have call and
/// return events in `main`; the latter only call events, in `unknown`.
///
/// A configuration is the set of linearized operations and the state, plus a
/// restriction right after an operation with an unknown outcome was
/// linearized: the next operation must be one that fails in the state before
/// it.
struct Search<'a> {
    ops: &'a [SearchOp],
    known: usize,
    main: EventList,
    unknown: EventList,
    call_node: Vec<usize>,
    ret_node: Vec<usize>,

    /// The register's state after the linearized operations, canonical.
    state: StateId,
    linearized_known: BitSet,
    linearized_unknown: BitSet,
    /// The id of `linearized_unknown` in `unknown_sets`.
    unknown_id: u32,
    /// Operations with a known outcome not linearized yet. Once there are none,
    /// the remaining (unknown) operations may simply never have taken effect,
    /// and the history is linearizable.
    pending: usize,
    /// For every state, how many operations not linearized yet observe it (see
    /// [`Step::observes`]).
    observers: Vec<u32>,
    stack: Vec<Frame>,
    /// Scan state of the current configuration, see
    /// [`Search::start_unknown_scan`].
    needs: Needs,
    tried_targets: Vec<StateId>,

    cache: Cache,
    /// Interned sets of linearized unknown operations (sorted indices relative
    /// to `known`); id 0 is the empty set.
    unknown_sets: Vec<Rc<[u32]>>,
    unknown_ids: HashMap<Rc<[u32]>, u32, BuildHasherDefault<FxHasher>>,
    key_buf: Vec<u8>,
    members_buf: Vec<u32>,
    explored: u64,

    /// The deepest partial linearization (as operations), for the explanation.
    best: Vec<usize>,
    /// An operation that could not be linearized after `best`.
    blocked: Option<usize>,
}

impl<'a> Search<'a> {
    /// `ops` must list operations with a known outcome first.
    fn new(ops: &'a [SearchOp]) -> Self {
        let known = ops.iter().take_while(|op| op.complete.is_some()).count();
        let mut call_node = vec![NONE; ops.len()];
        let mut ret_node = vec![NONE; ops.len()];
        let mut main_events = Vec::with_capacity(2 * known);
        let mut unknown_events = Vec::with_capacity(ops.len() - known);
        let mut observers: Vec<u32> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op.complete {
                Some(complete) => {
                    main_events.push((op.invoke, 0, i));
                    main_events.push((complete, 1, i));
                }
                None => unknown_events.push((op.invoke, 0, i)),
            }
            if let Some(i) = op.step.observes().and_then(|s| usize::try_from(s).ok()) {
                if observers.len() <= i {
                    observers.resize(i + 1, 0);
                }
                observers[i] += 1;
            }
        }
        let main = EventList::new(main_events, &mut call_node, &mut ret_node);
        let unknown = EventList::new(unknown_events, &mut call_node, &mut ret_node);
        let empty: Rc<[u32]> = Rc::from(Vec::new());
        let mut search = Self {
            ops,
            known,
            main,
            unknown,
            call_node,
            ret_node,
            state: ABSENT,
            linearized_known: BitSet::new(known),
            linearized_unknown: BitSet::new(ops.len() - known),
            unknown_id: 0,
            pending: known,
            observers,
            stack: Vec::new(),
            needs: Needs::default(),
            tried_targets: Vec::new(),
            cache: Cache::default(),
            unknown_sets: vec![empty.clone()],
            unknown_ids: [(empty, 0)].into_iter().collect(),
            key_buf: Vec::new(),
            members_buf: Vec::new(),
            explored: 0,
            best: Vec::new(),
            blocked: None,
        };
        search.state = search.canonical(ABSENT);
        search
    }

    /// Runs the search; returns the verdict and the number of configurations
    /// explored.
    ///
    /// Besides the memoisation, a few rules cut the search down without losing
    /// any linearization. Each is an exchange argument: if a linearization
    /// exists, one that obeys the rule exists.
    ///
    /// - **Forced reads.** A get or failed CAS whose output matches the current
    ///   state is linearized right away, without trying alternatives (see
    ///   [`Search::forced_move`]).
    /// - **Dead states.** A state that no operation still to be linearized
    ///   observes is replaced by [`ANONYMOUS`] (see [`Search::canonical`]).
    /// - **Unknown operations must be used.** An operation with an unknown
    ///   outcome that is immediately followed by a put or delete, or by nothing,
    ///   can be dropped; one followed by an operation whose output is also
    ///   possible in the state before it can be moved after that operation. So
    ///   an unknown operation is only linearized if the next operation fails in
    ///   the state before it and succeeds after it. The configuration after it
    ///   is *restricted* to such operations, and it is only tried at all if
    ///   some candidate needs the state it writes ([`Pass`]).
    /// - **Interchangeable blind writes.** Puts and deletes with an unknown
    ///   outcome that write the same (canonical) state and are all available
    ///   have the same effect now and later, so only the first is tried; and
    ///   none is tried if a put or delete with a known outcome writing that
    ///   state is a candidate too, since the two could swap places.
    ///
    /// Candidates with a known outcome are tried first, then those with an
    /// unknown outcome that a candidate needs, then the speculative ones. Trying
    /// optional operations last means configurations are usually first visited
    /// with fewer of them linearized, so that the dominance check of
    /// [`remember`] prunes the later visits with more of them.
    fn run(
        mut self,
        opts: &CheckOptions,
        history: &History,
        interner: &Interner,
    ) -> (Verdict, u64) {
        let started = Instant::now();
        let mut cursor = Cursor::Enter;
        loop {
            if self.pending == 0 {
                return (Verdict::Linearizable, self.explored);
            }
            let op = match cursor {
                Cursor::Enter => {
                    if let Some(op) = self.forced_move() {
                        // There is no alternative to a forced move.
                        cursor = Cursor::Exhausted;
                        op
                    } else {
                        cursor = Cursor::Known(self.main.first());
                        continue;
                    }
                }
                Cursor::Known(node) => {
                    let Some(op) = self.main.call_at(node) else {
                        cursor = self.start_unknown_scan(self.unknown.first(), Pass::Needed);
                        continue;
                    };
                    cursor = Cursor::Known(self.main.next[node]);
                    op
                }
                Cursor::Unknown { node, limit, pass } => {
                    let Some(op) = self
                        .unknown
                        .call_at(node)
                        .filter(|_| self.unknown.time[node] <= limit)
                    else {
                        cursor = match pass {
                            Pass::Needed => {
                                self.start_unknown_scan(self.unknown.first(), Pass::Speculative)
                            }
                            Pass::Speculative => Cursor::Exhausted,
                        };
                        continue;
                    };
                    cursor = Cursor::Unknown {
                        node: self.unknown.next[node],
                        limit,
                        pass,
                    };
                    if let Some(target) = self.blind_target(op) {
                        if self.tried_targets.contains(&target) {
                            continue;
                        }
                        self.tried_targets.push(target);
                    }
                    if !self.is_useful(op, pass) {
                        continue;
                    }
                    op
                }
                Cursor::Exhausted => match self.backtrack() {
                    Some(resume) => {
                        cursor = resume;
                        continue;
                    }
                    None => {
                        let violation = self.explain(history, interner);
                        return (Verdict::NotLinearizable(violation), self.explored);
                    }
                },
            };
            if self.linearize(op, cursor) {
                if let Some(reason) = self.over_limit(opts, started) {
                    return (Verdict::Unknown { reason }, self.explored);
                }
                cursor = Cursor::Enter;
            }
        }
    }

    /// `state`, or [`ANONYMOUS`] if no operation still to be linearized observes
    /// it.
    ///
    /// Such states are indistinguishable from here on: every remaining
    /// operation either overwrites the state or compares it with a state it
    /// observes, which none of them equals; and operations only ever leave the
    /// set of remaining ones. So replacing them by one placeholder changes no
    /// verdict, while configurations that differ only in which of them the
    /// register holds coincide, and blind writes of them become
    /// interchangeable.
    fn canonical(&self, state: StateId) -> StateId {
        if count(&self.observers, state) > 0 {
            state
        } else {
            ANONYMOUS
        }
    }

    /// For a put or delete, the (canonical) state it writes.
    fn blind_target(&self, op: usize) -> Option<StateId> {
        match self.ops[op].step {
            Step::Write(new) => Some(self.canonical(new)),
            _ => None,
        }
    }

    /// Updates the observer counts for `op` being linearized or un-linearized.
    fn count_observer(&mut self, op: usize, linearized: bool) {
        let slot = self.ops[op]
            .step
            .observes()
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|i| self.observers.get_mut(i));
        if let Some(n) = slot {
            if linearized {
                *n -= 1;
            } else {
                *n += 1;
            }
        }
    }

    /// The state before the last linearized operation, if that operation had an
    /// unknown outcome: the next operation must fail in that state.
    fn restriction(&self) -> Option<StateId> {
        self.stack
            .last()
            .filter(|frame| frame.op >= self.known)
            .map(|frame| frame.prev_state)
    }

    /// Whether `op` may be linearized next under the current restriction.
    fn allowed(&self, op: usize) -> bool {
        self.restriction()
            .is_none_or(|prev| self.ops[op].step.apply(prev).is_none())
    }

    /// A candidate that can be linearized now without loss of generality: a get
    /// or a CAS that did not swap, whose output matches the current state.
    ///
    /// Such an operation never changes the state, and it is a candidate, so
    /// every operation that must precede it in real time is linearized already.
    /// Any complete linearization from here contains it somewhere later; moving
    /// it to the front keeps real-time order and the output of every operation.
    /// So if linearizing it now leads nowhere, no other choice here leads
    /// anywhere either. This removes the search over the many interleavings of
    /// concurrent reads.
    fn forced_move(&self) -> Option<usize> {
        self.main.leading_calls().find(|&op| {
            let step = self.ops[op].step;
            step.is_pure() && step.apply(self.state).is_some() && self.allowed(op)
        })
    }

    /// Operations with an unknown outcome invoked no later than this may be
    /// linearized next: the time of the first pending return.
    fn unknown_limit(&self) -> u64 {
        self.main.first_return().map_or(u64::MAX, |(time, _)| time)
    }

    /// Prepares a `pass` over the candidates with an unknown outcome in the
    /// current configuration, resuming at `node` of `unknown` (its first node
    /// for a new pass), and returns the cursor for it. The scan state (`needs`
    /// and `tried_targets`) is overwritten by deeper configurations, so it is
    /// rebuilt whenever a pass starts or resumes.
    ///
    /// `tried_targets` starts with the states written by puts and deletes with
    /// a known outcome that are candidates, then gets those written by the puts
    /// and deletes with an unknown outcome before `node`, which were tried
    /// already (see [`Search::run`]).
    fn start_unknown_scan(&mut self, node: usize, pass: Pass) -> Cursor {
        let mut needs = std::mem::take(&mut self.needs);
        let mut tried = std::mem::take(&mut self.tried_targets);
        needs.states.clear();
        needs.any_other = false;
        tried.clear();
        let limit = self.unknown_limit();
        let known = self.main.leading_calls();
        let unknown = self
            .unknown
            .leading_calls()
            .take_while(|&op| self.ops[op].invoke <= limit);
        for op in known.chain(unknown) {
            let step = self.ops[op].step;
            if op < self.known {
                tried.extend(self.blind_target(op));
            }
            if step.apply(self.state).is_none() {
                match step {
                    Step::NoSwap { .. } => needs.any_other = true,
                    _ => needs.states.extend(step.observes()),
                }
            }
        }
        let mut n = self.unknown.first();
        while n != node && n != self.unknown.tail() {
            tried.extend(self.blind_target(self.unknown.op[n]));
            n = self.unknown.next[n];
        }
        self.needs = needs;
        self.tried_targets = tried;
        Cursor::Unknown { node, limit, pass }
    }

    /// Whether linearizing the unknown operation `op` in this `pass` could help:
    /// it is allowed and changes the state to one that some candidate needs.
    fn is_useful(&self, op: usize, pass: Pass) -> bool {
        let new = self.ops[op]
            .step
            .apply(self.state)
            .map(|s| self.canonical(s));
        match new {
            Some(new) if new != self.state && self.allowed(op) => {
                if self.needs.states.contains(&new) {
                    pass == Pass::Needed
                } else {
                    pass == Pass::Speculative && self.needs.any_other
                }
            }
            _ => false,
        }
    }

    /// Tries to linearize `op` next; `resume` is where to continue scanning the
    /// current configuration when backtracking over it. Returns `false`,
    /// changing nothing, if its output is impossible in the current state, it
    /// is not allowed, or the configuration it leads to need not be explored.
    fn linearize(&mut self, op: usize, resume: Cursor) -> bool {
        let Some(new_state) = self.ops[op].step.apply(self.state) else {
            return false;
        };
        if !self.allowed(op) {
            return false;
        }
        self.count_observer(op, true);
        let new_state = self.canonical(new_state);
        let is_known = op < self.known;
        let (restriction, unknown_id) = if is_known {
            self.linearized_known.insert(op);
            (UNRESTRICTED, self.unknown_id)
        } else {
            self.linearized_unknown.insert(op - self.known);
            (self.state, self.intern_unknown())
        };
        encode_key(
            new_state,
            restriction,
            &self.linearized_known,
            &mut self.key_buf,
        );
        if !remember(
            &mut self.cache,
            &self.unknown_sets,
            &self.key_buf,
            unknown_id,
        ) {
            if is_known {
                self.linearized_known.remove(op);
            } else {
                self.linearized_unknown.remove(op - self.known);
            }
            self.count_observer(op, false);
            return false;
        }
        self.explored += 1;
        self.stack.push(Frame {
            op,
            prev_state: self.state,
            prev_unknown: self.unknown_id,
            resume,
        });
        self.state = new_state;
        self.unknown_id = unknown_id;
        if is_known {
            self.main.unlink(self.call_node[op]);
            self.main.unlink(self.ret_node[op]);
            self.pending -= 1;
        } else {
            self.unknown.unlink(self.call_node[op]);
        }
        if self.stack.len() > self.best.len() {
            self.best = self.stack.iter().map(|f| f.op).collect();
            self.blocked = None;
        }
        true
    }

    /// The id of the current `linearized_unknown` set, interning it if new.
    fn intern_unknown(&mut self) -> u32 {
        self.linearized_unknown.members(&mut self.members_buf);
        if let Some(&id) = self.unknown_ids.get(self.members_buf.as_slice()) {
            return id;
        }
        let set: Rc<[u32]> = Rc::from(self.members_buf.as_slice());
        let id = u32::try_from(self.unknown_sets.len()).unwrap_or(u32::MAX);
        self.unknown_sets.push(set.clone());
        self.unknown_ids.insert(set, id);
        id
    }

    /// Undoes the last linearization; returns where to resume scanning, or
    /// `None` if nothing is linearized.
    fn backtrack(&mut self) -> Option<Cursor> {
        if self.blocked.is_none() && self.stack.len() == self.best.len() {
            self.blocked = self.main.first_return().map(|(_, op)| op);
        }
        let frame = self.stack.pop()?;
        let op = frame.op;
        self.state = frame.prev_state;
        self.unknown_id = frame.prev_unknown;
        self.count_observer(op, false);
        // Relink in the reverse order of the unlinks.
        if op < self.known {
            self.main.relink(self.ret_node[op]);
            self.main.relink(self.call_node[op]);
            self.linearized_known.remove(op);
            self.pending += 1;
        } else {
            self.unknown.relink(self.call_node[op]);
            self.linearized_unknown.remove(op - self.known);
        }
        Some(match frame.resume {
            Cursor::Unknown { node, pass, .. } => self.start_unknown_scan(node, pass),
            resume => resume,
        })
    }

    fn over_limit(&self, opts: &CheckOptions, started: Instant) -> Option<String> {
        let progress = || {
            format!(
                "the deepest partial linearization had {} of {} ops",
                self.best.len(),
                self.ops.len()
            )
        };
        if self.explored > opts.max_states_per_key {
            return Some(format!(
                "gave up after exploring {} states; {}",
                opts.max_states_per_key,
                progress()
            ));
        }
        match opts.max_time_per_key {
            Some(limit) if self.explored.is_multiple_of(4096) && started.elapsed() > limit => {
                Some(format!(
                    "gave up after {limit:?} and {} states; {}",
                    self.explored,
                    progress()
                ))
            }
            _ => None,
        }
    }

    fn explain(&self, history: &History, interner: &Interner) -> Violation {
        // Replay the actual values (the search's state may be `ANONYMOUS`).
        let state = self
            .best
            .iter()
            .fold(ABSENT, |s, &op| self.ops[op].step.apply(s).unwrap_or(s));
        let shown = interner.value(state);
        let mut explanation = format!(
            "the longest linearizable prefix has {} of {} ops, after which the register holds {}",
            self.best.len(),
            self.ops.len(),
            ShowState(shown)
        );
        if let Some(&last) = self.best.last() {
            let index = self.ops[last].index;
            if let Some(op) = history.ops.get(index) {
                explanation.push_str(&format!(" (last: #{index} {op})"));
            }
        }
        if let Some(b) = self.blocked {
            let index = self.ops[b].index;
            if let Some(op) = history.ops.get(index) {
                explanation.push_str(&format!("; then #{index} {op} cannot be linearized"));
                let why = match self.ops[b].step {
                    Step::Read(seen) if seen != state => {
                        Some(format!("it read {}", ShowState(interner.value(seen))))
                    }
                    Step::Swap { expected, .. } if expected != state => Some(format!(
                        "it swapped expecting {}",
                        ShowState(interner.value(expected))
                    )),
                    Step::NoSwap { expected } if expected == state => {
                        Some("it did not swap although it expected exactly that".to_string())
                    }
                    _ => None,
                };
                match why {
                    Some(why) => explanation.push_str(&format!(": {why}")),
                    None => explanation
                        .push_str(": every way of continuing with it fails for a later op"),
                }
            }
        }
        Violation {
            linearized: self.best.iter().map(|&op| self.ops[op].index).collect(),
            state: shown.map(<[u8]>::to_vec),
            blocked: self.blocked.map(|op| self.ops[op].index),
            explanation,
        }
    }
}

/// `counts[state]`, or 0.
fn count(counts: &[u32], state: StateId) -> u32 {
    usize::try_from(state)
        .ok()
        .and_then(|i| counts.get(i))
        .copied()
        .unwrap_or(0)
}

/// Encodes the cache key of a configuration into `out`: the state, the
/// restriction, and the positions where the bits of `known` change value
/// (reading from bit 0, which is preceded by an implicit 0), as deltas, all as
/// LEB128 varints.
///
/// Operations are numbered in invocation order, and the search linearizes
/// roughly in that order, so the set is typically a long run of ones, a short
/// ragged frontier and a run of zeros: a handful of small numbers instead of
/// the whole bit set.
fn encode_key(state: StateId, restriction: StateId, known: &BitSet, out: &mut Vec<u8>) {
    out.clear();
    push_varint(out, state);
    push_varint(out, restriction);
    let mut last = 0;
    known.for_each_change(|position| {
        push_varint(out, position - last);
        last = position;
    });
}

fn push_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Records a visit of the configuration with cache key `key` and set of
/// linearized unknown operations `unknown` (an id into `sets`). Returns `false`
/// if the configuration need not be explored: it, or one that dominates it, was
/// visited before.
///
/// A configuration dominates another with the same key if its set of
/// linearized unknown operations is a subset of the other's: it has every
/// continuation the other has, since the unknown operations it has not
/// linearized may still be linearized later, or never. (Which operations can
/// come next depends on the pending returns, that is on the known operations
/// only.) So if the dominating one leads to no linearization, neither does the
/// other.
fn remember(cache: &mut Cache, sets: &[Rc<[u32]>], key: &[u8], unknown: u32) -> bool {
    let set = |id: u32| {
        usize::try_from(id)
            .ok()
            .and_then(|i| sets.get(i))
            .map_or(&[][..], |s| &s[..])
    };
    let current = set(unknown);
    let Some(value) = cache.visits.get_mut(key) else {
        cache.visits.insert(key.into(), unknown);
        return true;
    };
    let many = (*value & MANY != 0)
        .then(|| usize::try_from(*value & !MANY).ok())
        .flatten();
    let seen: &[u32] = match many.and_then(|i| cache.many.get(i)) {
        Some(ids) => ids,
        None => std::slice::from_ref(value),
    };
    if seen.iter().any(|&s| is_subset(set(s), current)) {
        return false;
    }
    let mut kept: Vec<u32> = seen
        .iter()
        .copied()
        .filter(|&s| !is_subset(current, set(s)))
        .collect();
    if kept.is_empty() {
        // The new set dominates all previous ones. (A list in `many` that is
        // no longer referenced is left behind; this is rare.)
        *value = unknown;
        return true;
    }
    kept.push(unknown);
    match many.and_then(|i| cache.many.get_mut(i)) {
        Some(ids) => *ids = kept,
        None => {
            *value = MANY | u32::try_from(cache.many.len()).unwrap_or(0);
            cache.many.push(kept);
        }
    }
    true
}

/// Whether the sorted list `a` is a subset of the sorted list `b`.
fn is_subset(a: &[u32], b: &[u32]) -> bool {
    if a.len() > b.len() {
        return false;
    }
    let mut b = b.iter();
    a.iter().all(|x| b.any(|y| y == x))
}

/// A fixed-size set of operation indices.
struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    fn new(bits: usize) -> Self {
        Self {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    fn insert(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    fn remove(&mut self, i: usize) {
        self.words[i / 64] &= !(1 << (i % 64));
    }

    /// Writes the members, in increasing order, into `out`.
    fn members(&self, out: &mut Vec<u32>) {
        out.clear();
        for (w, &word) in self.words.iter().enumerate() {
            for_each_bit(word, w, &mut |i| out.push(i));
        }
    }

    /// Calls `f` with every position where the bits change value, in
    /// increasing order (bit 0 is preceded by an implicit 0). These positions
    /// determine the set, given its size.
    fn for_each_change(&self, mut f: impl FnMut(u32)) {
        let mut carry = 0;
        for (w, &word) in self.words.iter().enumerate() {
            let changes = word ^ ((word << 1) | carry);
            carry = word >> 63;
            for_each_bit(changes, w, &mut f);
        }
    }
}

/// Calls `f` with the position of every set bit of `word`, the `w`-th word of a
/// bit set, in increasing order.
fn for_each_bit(mut word: u64, w: usize, f: &mut impl FnMut(u32)) {
    while word != 0 {
        let bit = word.trailing_zeros() as usize;
        // Positions fit in u32: a key never has 2^32 operations.
        f(u32::try_from(w * 64 + bit).unwrap_or(u32::MAX));
        word &= word - 1;
    }
}

/// A fast non-cryptographic hasher for the search cache (the keys are not
/// adversarial), in the spirit of the Firefox/rustc "Fx" hash.
#[derive(Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn val(s: &str) -> Value {
        s.as_bytes().to_vec()
    }

    fn opt(s: Option<&str>) -> Option<Value> {
        s.map(val)
    }

    /// Builds hand-written histories. Operations go to the current key ("k"
    /// unless changed with `on`); times are arbitrary nanoseconds.
    struct Builder {
        history: History,
        key: Key,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                history: History::new(),
                key: val("k"),
            }
        }

        fn on(&mut self, key: &str) -> &mut Self {
            self.key = val(key);
            self
        }

        fn op(&mut self, client: u64, kind: OpKind, invoke: u64, outcome: Outcome) -> &mut Self {
            self.history.push(Op {
                client,
                key: self.key.clone(),
                kind,
                invoke,
                outcome,
            });
            self
        }

        fn ok(&mut self, client: u64, kind: OpKind, t: (u64, u64), output: Output) -> &mut Self {
            let outcome = Outcome::Ok {
                complete: t.1,
                output,
            };
            self.op(client, kind, t.0, outcome)
        }

        fn put(&mut self, client: u64, v: &str, t: (u64, u64)) -> &mut Self {
            self.ok(client, OpKind::Put(val(v)), t, Output::Ack)
        }

        fn delete(&mut self, client: u64, t: (u64, u64)) -> &mut Self {
            self.ok(client, OpKind::Delete, t, Output::Ack)
        }

        fn get(&mut self, client: u64, seen: Option<&str>, t: (u64, u64)) -> &mut Self {
            self.ok(client, OpKind::Get, t, Output::Get(opt(seen)))
        }

        fn cas(
            &mut self,
            client: u64,
            expected: Option<&str>,
            new: Option<&str>,
            swapped: bool,
            t: (u64, u64),
        ) -> &mut Self {
            let kind = OpKind::Cas {
                expected: opt(expected),
                new: opt(new),
            };
            self.ok(client, kind, t, Output::Cas(swapped))
        }

        fn put_unknown(&mut self, client: u64, v: &str, invoke: u64) -> &mut Self {
            self.op(client, OpKind::Put(val(v)), invoke, Outcome::Unknown)
        }

        fn cas_unknown(
            &mut self,
            client: u64,
            expected: Option<&str>,
            new: Option<&str>,
            invoke: u64,
        ) -> &mut Self {
            let kind = OpKind::Cas {
                expected: opt(expected),
                new: opt(new),
            };
            self.op(client, kind, invoke, Outcome::Unknown)
        }

        fn check(&self) -> CheckResult {
            check_history(&self.history)
        }

        #[track_caller]
        fn assert_linearizable(&self) -> CheckResult {
            let result = self.check();
            assert_eq!(
                result.status(),
                Status::Linearizable,
                "{result}\n{}",
                self.history.to_json().unwrap_or_default()
            );
            result
        }

        #[track_caller]
        fn assert_violation(&self) -> CheckResult {
            let result = self.check();
            assert_eq!(
                result.status(),
                Status::NotLinearizable,
                "{result}\n{}",
                self.history.to_json().unwrap_or_default()
            );
            result
        }
    }

    fn violation(result: &CheckResult, key: &str) -> Violation {
        match &result.key(key.as_bytes()).unwrap().verdict {
            Verdict::NotLinearizable(v) => v.clone(),
            other => panic!("expected a violation on {key:?}, got {other}"),
        }
    }

    // Sequential histories.

    #[test]
    fn empty_history_is_linearizable() {
        let result = Builder::new().assert_linearizable();
        assert_eq!(result.keys_checked(), 0);
        assert_eq!(result.ops_checked, 0);
    }

    #[test]
    fn sequential_put_then_get() {
        let result = Builder::new()
            .get(1, None, (0, 10))
            .put(1, "a", (20, 30))
            .get(2, Some("a"), (40, 50))
            .delete(2, (60, 70))
            .get(1, None, (80, 90))
            .assert_linearizable();
        assert_eq!(result.keys_checked(), 1);
        assert_eq!(result.ops_checked, 5);
        assert_eq!(result.ops_skipped, 0);
    }

    // Concurrent reads may see either side of a concurrent write.

    #[test]
    fn concurrent_get_sees_old_or_new_value() {
        for seen in [None, Some("1")] {
            Builder::new()
                .put(1, "1", (10, 30))
                .get(2, seen, (15, 25))
                .assert_linearizable();
        }
        // Two concurrent reads may disagree, as long as the old one can be
        // ordered first.
        Builder::new()
            .put(1, "1", (10, 100))
            .get(2, Some("1"), (20, 30))
            .get(3, None, (25, 35))
            .assert_linearizable();
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        Builder::new()
            .put(1, "a", (0, 10))
            .get(2, None, (10, 20))
            .assert_linearizable();
        Builder::new()
            .put(1, "a", (0, 10))
            .get(2, None, (11, 20))
            .assert_violation();
    }

    // Stale reads.

    #[test]
    fn stale_read_after_completed_put() {
        Builder::new()
            .put(1, "a", (0, 10))
            .get(2, None, (20, 30))
            .assert_violation();
        Builder::new()
            .put(1, "a", (0, 10))
            .put(1, "b", (20, 30))
            .get(2, Some("a"), (40, 50))
            .assert_violation();
    }

    #[test]
    fn read_cannot_go_back_in_time() {
        // Both reads overlap the write, but the new value was seen first.
        Builder::new()
            .put(1, "1", (0, 100))
            .get(2, Some("1"), (10, 20))
            .get(3, None, (30, 40))
            .assert_violation();
    }

    #[test]
    fn violation_explains_the_stale_read() {
        let result = Builder::new()
            .put(1, "a", (0, 10))
            .get(2, Some("a"), (20, 30))
            .put(1, "b", (40, 50))
            .get(2, Some("a"), (60, 70))
            .assert_violation();
        let v = violation(&result, "k");
        assert_eq!(v.linearized, vec![0, 1, 2]);
        assert_eq!(v.state, opt(Some("b")));
        assert_eq!(v.blocked, Some(3));
        assert!(v.explanation.contains("#3"), "{}", v.explanation);
        assert!(v.explanation.contains("it read \"a\""), "{}", v.explanation);
        let text = result.to_string();
        assert!(text.starts_with("NOT linearizable"), "{text}");
        assert!(text.contains("key \"k\""), "{text}");
    }

    // Lost writes.

    #[test]
    fn lost_write() {
        Builder::new()
            .put(1, "x1", (0, 10))
            .put(2, "x2", (20, 30))
            .get(1, Some("x1"), (40, 50))
            .get(3, Some("x1"), (60, 70))
            .assert_violation();
        Builder::new()
            .put(1, "x1", (0, 10))
            .delete(2, (20, 30))
            .get(1, Some("x1"), (40, 50))
            .assert_violation();
    }

    #[test]
    fn write_overwritten_by_a_concurrent_write_is_not_lost() {
        Builder::new()
            .put(1, "x1", (0, 30))
            .put(2, "x2", (10, 20))
            .get(1, Some("x1"), (40, 50))
            .get(3, Some("x1"), (60, 70))
            .assert_linearizable();
    }

    // Compare-and-swap.

    #[test]
    fn cas_success_and_failure_sequences() {
        Builder::new()
            .cas(1, None, Some("a"), true, (0, 10))
            .cas(1, None, Some("b"), false, (20, 30))
            .cas(2, Some("a"), Some("c"), true, (40, 50))
            .cas(2, Some("a"), Some("d"), false, (60, 70))
            .get(1, Some("c"), (80, 90))
            .cas(1, Some("c"), None, true, (100, 110))
            .get(2, None, (120, 130))
            .assert_linearizable();
    }

    #[test]
    fn cas_success_with_wrong_expectation() {
        Builder::new()
            .put(1, "a", (0, 10))
            .cas(2, Some("z"), Some("b"), true, (20, 30))
            .assert_violation();
        Builder::new()
            .put(1, "a", (0, 10))
            .cas(2, None, Some("b"), true, (20, 30))
            .assert_violation();
    }

    #[test]
    fn cas_failure_with_right_expectation() {
        Builder::new()
            .put(1, "a", (0, 10))
            .cas(2, Some("a"), Some("b"), false, (20, 30))
            .assert_violation();
        // A concurrent write explains the failure.
        Builder::new()
            .put(1, "a", (0, 10))
            .cas(2, Some("a"), Some("b"), false, (20, 30))
            .put(3, "c", (15, 25))
            .assert_linearizable();
    }

    #[test]
    fn concurrent_cas_with_the_same_expectation() {
        Builder::new()
            .put(1, "a", (0, 10))
            .cas(2, Some("a"), Some("b"), true, (20, 40))
            .cas(3, Some("a"), Some("c"), true, (25, 35))
            .assert_violation();
        Builder::new()
            .put(1, "a", (0, 10))
            .cas(2, Some("a"), Some("b"), true, (20, 40))
            .cas(3, Some("a"), Some("c"), false, (25, 35))
            .get(1, Some("b"), (50, 60))
            .assert_linearizable();
        // ... but the winner's value must be what is read afterwards.
        Builder::new()
            .put(1, "a", (0, 10))
            .cas(2, Some("a"), Some("b"), true, (20, 40))
            .cas(3, Some("a"), Some("c"), false, (25, 35))
            .get(1, Some("c"), (50, 60))
            .assert_violation();
    }

    // Operations with an unknown outcome.

    #[test]
    fn unknown_put_observed_later() {
        Builder::new()
            .put(1, "a", (0, 10))
            .put_unknown(2, "b", 20)
            .get(1, Some("b"), (1_000, 1_010))
            .assert_linearizable();
    }

    #[test]
    fn unknown_put_never_observed() {
        Builder::new()
            .put(1, "a", (0, 10))
            .put_unknown(2, "b", 5)
            .get(1, Some("a"), (20, 30))
            .get(3, Some("a"), (40, 50))
            .assert_linearizable();
    }

    #[test]
    fn unknown_put_cannot_take_effect_before_its_invocation() {
        Builder::new()
            .get(1, Some("b"), (0, 10))
            .put_unknown(2, "b", 20)
            .assert_violation();
    }

    #[test]
    fn unknown_put_observed_then_unobserved() {
        Builder::new()
            .put(1, "a", (0, 10))
            .put_unknown(2, "b", 15)
            .get(1, Some("b"), (20, 30))
            .get(3, Some("a"), (40, 50))
            .assert_violation();
    }

    #[test]
    fn unknown_cas_may_or_may_not_apply() {
        for seen in ["a", "b"] {
            Builder::new()
                .put(1, "a", (0, 10))
                .cas_unknown(2, Some("a"), Some("b"), 15)
                .get(1, Some(seen), (20, 30))
                .get(3, Some(seen), (40, 50))
                .assert_linearizable();
        }
        // It can only swap when its expectation holds.
        Builder::new()
            .put(1, "a", (0, 10))
            .cas_unknown(2, Some("z"), Some("b"), 15)
            .get(1, Some("b"), (20, 30))
            .assert_violation();
        // An unknown CAS that deletes.
        Builder::new()
            .put(1, "a", (0, 10))
            .cas_unknown(2, Some("a"), None, 15)
            .get(1, None, (20, 30))
            .assert_linearizable();
    }

    #[test]
    fn unobserved_unknown_write_can_explain_a_failed_cas() {
        // Nothing reads "b", but overwriting "a" with it is the only explanation
        // for the CAS failing, so it must not be discarded as unobserved.
        Builder::new()
            .put(1, "a", (0, 10))
            .put_unknown(2, "b", 5)
            .cas(3, Some("a"), Some("c"), false, (20, 30))
            .assert_linearizable();
        Builder::new()
            .put(1, "a", (0, 10))
            .op(2, OpKind::Delete, 7, Outcome::Failed)
            .put_unknown(4, "z", 50)
            .cas(3, Some("a"), Some("c"), false, (20, 30))
            .assert_violation();
    }

    #[test]
    fn failed_ops_are_ignored() {
        let result = Builder::new()
            .op(1, OpKind::Put(val("a")), 0, Outcome::Failed)
            .get(2, None, (20, 30))
            .op(3, OpKind::Get, 25, Outcome::Unknown)
            .assert_linearizable();
        assert_eq!(result.ops_checked, 1);
        assert_eq!(result.ops_skipped, 2);
        Builder::new()
            .op(1, OpKind::Put(val("a")), 0, Outcome::Failed)
            .get(2, Some("a"), (20, 30))
            .assert_violation();
    }

    // Reads of values nobody wrote.

    #[test]
    fn read_of_a_value_never_written() {
        Builder::new()
            .get(1, Some("ghost"), (0, 10))
            .assert_violation();
        Builder::new()
            .put(1, "a", (0, 100))
            .get(2, Some("ghost"), (10, 20))
            .assert_violation();
        // Writes that failed do not count.
        Builder::new()
            .op(1, OpKind::Put(val("ghost")), 0, Outcome::Failed)
            .get(2, Some("ghost"), (10, 20))
            .assert_violation();
    }

    // Keys are independent.

    #[test]
    fn violation_is_reported_for_its_key_only() {
        let mut b = Builder::new();
        b.on("a").put(1, "a1", (0, 10)).get(2, Some("a1"), (20, 30));
        b.on("b").put(1, "b1", (0, 10)).get(2, None, (20, 30));
        // The same value on another key does not help.
        b.on("c").put(1, "a1", (0, 10)).get(2, Some("a1"), (20, 30));
        b.on("d").get(2, Some("b1"), (20, 30));
        let result = b.assert_violation();
        assert_eq!(result.keys_checked(), 4);
        assert_eq!(result.ops_checked, 7);
        let bad: Vec<&[u8]> = result.violations().map(|k| k.key.as_slice()).collect();
        assert_eq!(bad, [b"b".as_slice(), b"d".as_slice()]);
        assert_eq!(result.key(b"a").unwrap().verdict, Verdict::Linearizable);
        assert_eq!(result.key(b"c").unwrap().verdict, Verdict::Linearizable);
        assert_eq!(violation(&result, "b").blocked, Some(3));
        assert!(result.key(b"zz").is_none());
    }

    // Malformed histories and limits.

    #[test]
    fn malformed_ops_are_reported() {
        let result = Builder::new()
            .ok(1, OpKind::Get, (0, 10), Output::Cas(true))
            .check();
        assert_eq!(result.status(), Status::Malformed, "{result}");
        assert!(matches!(
            result.key(b"k").unwrap().verdict,
            Verdict::Malformed { op: 0, .. }
        ));
        let result = Builder::new().put(1, "a", (10, 5)).check();
        assert_eq!(result.status(), Status::Malformed, "{result}");
    }

    #[test]
    fn search_limit_gives_unknown_not_a_violation() {
        let mut b = Builder::new();
        for i in 0..20 {
            b.put(i, &format!("v{i}"), (0, 100));
        }
        b.get(0, Some("v7"), (200, 300));
        let opts = CheckOptions {
            max_states_per_key: 5,
            max_time_per_key: None,
        };
        let result = check_history_with(&b.history, &opts);
        assert_eq!(result.status(), Status::Unknown, "{result}");
        assert!(!result.is_linearizable());
        assert_eq!(result.violations().count(), 0);
        assert!(result.to_string().contains("gave up"), "{result}");
        // With the default limits it is fine.
        b.assert_linearizable();
    }

    #[test]
    fn json_round_trip_preserves_the_verdict() {
        let mut b = Builder::new();
        b.put(1, "a", (0, 10)).get(2, None, (20, 30));
        let back = History::from_json(&b.history.to_json().unwrap()).unwrap();
        assert_eq!(check_history(&back), b.check());
    }

    // Randomised tests.

    /// A small deterministic PRNG (SplitMix64), so that simulations are
    /// reproducible from a seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// Applies `kind` to `state` like the store would; returns the output.
    fn apply(kind: &OpKind, state: &mut Option<Value>) -> Output {
        match kind {
            OpKind::Get => Output::Get(state.clone()),
            OpKind::Put(v) => {
                *state = Some(v.clone());
                Output::Ack
            }
            OpKind::Delete => {
                *state = None;
                Output::Ack
            }
            OpKind::Cas { expected, new } => {
                let swapped = state == expected;
                if swapped {
                    state.clone_from(new);
                }
                Output::Cas(swapped)
            }
        }
    }

    struct SimOptions {
        clients: u64,
        ops_per_client: usize,
        keys: u64,
        unknown_percent: u64,
        failed_percent: u64,
    }

    /// Simulates concurrent clients against a linearizable store: every
    /// operation takes effect atomically at some instant between its invocation
    /// and its completion (or, for unknown ones, at some instant after the
    /// invocation, or never), so the history is linearizable by construction.
    fn simulate(seed: u64, o: &SimOptions) -> History {
        struct InFlight {
            op: usize,
            key: usize,
            /// Set once the operation took effect.
            output: Option<Output>,
        }
        let mut rng = Rng(seed);
        let mut history = History::new();
        let mut store: Vec<Option<Value>> = vec![None; o.keys as usize];
        let mut written: Vec<Vec<Value>> = vec![Vec::new(); o.keys as usize];
        let mut in_flight: Vec<Option<InFlight>> = (0..o.clients).map(|_| None).collect();
        let mut remaining = vec![o.ops_per_client; o.clients as usize];
        let mut next_value = 0u64;
        let mut now = 0u64;
        while remaining.iter().any(|&r| r > 0) || in_flight.iter().any(Option::is_some) {
            now += 1 + rng.below(5);
            let client = rng.below(o.clients) as usize;
            match in_flight[client].take() {
                None if remaining[client] == 0 => {}
                None => {
                    remaining[client] -= 1;
                    let key = rng.below(o.keys) as usize;
                    let mut fresh = || {
                        next_value += 1;
                        format!("c{client}-v{next_value}").into_bytes()
                    };
                    let kind = match rng.below(100) {
                        0..=39 => OpKind::Get,
                        40..=64 => OpKind::Put(fresh()),
                        65..=69 => OpKind::Delete,
                        _ => {
                            let expected = match rng.below(10) {
                                0..=5 => store[key].clone(),
                                6 => None,
                                _ if written[key].is_empty() => None,
                                _ => {
                                    let i = rng.below(written[key].len() as u64) as usize;
                                    Some(written[key][i].clone())
                                }
                            };
                            let new = if rng.chance(10) { None } else { Some(fresh()) };
                            OpKind::Cas { expected, new }
                        }
                    };
                    if let OpKind::Put(v) | OpKind::Cas { new: Some(v), .. } = &kind {
                        written[key].push(v.clone());
                    }
                    let op = history.push(Op {
                        client: client as u64,
                        key: format!("key{key}").into_bytes(),
                        kind,
                        invoke: now,
                        outcome: Outcome::Unknown,
                    });
                    in_flight[client] = Some(InFlight {
                        op: op.0,
                        key,
                        output: None,
                    });
                }
                Some(InFlight {
                    op,
                    key,
                    output: None,
                }) => {
                    let roll = rng.below(100);
                    if roll < o.failed_percent {
                        history.ops[op].outcome = Outcome::Failed;
                    } else if roll < o.failed_percent + o.unknown_percent {
                        if rng.chance(50) {
                            apply(&history.ops[op].kind, &mut store[key]);
                        }
                        history.ops[op].outcome = Outcome::Unknown;
                    } else {
                        let output = apply(&history.ops[op].kind, &mut store[key]);
                        in_flight[client] = Some(InFlight {
                            op,
                            key,
                            output: Some(output),
                        });
                    }
                }
                Some(InFlight {
                    op,
                    output: Some(output),
                    ..
                }) => {
                    history.ops[op].outcome = if rng.chance(o.unknown_percent) {
                        Outcome::Unknown
                    } else {
                        Outcome::Ok {
                            complete: now,
                            output,
                        }
                    };
                }
            }
        }
        history
    }

    /// Decides linearizability of a single-key history by trying every order,
    /// remembering only which (set of placed ops, state) pairs failed. Shares no
    /// code or pruning rule with the checker. Exponential: small histories only.
    fn brute_force(history: &History) -> bool {
        type Failed = HashSet<(Vec<bool>, Option<Value>)>;
        fn search(
            ops: &[&Op],
            used: &mut Vec<bool>,
            state: &Option<Value>,
            failed: &mut Failed,
        ) -> bool {
            let all_known_used = ops
                .iter()
                .zip(used.iter())
                .all(|(op, &u)| u || op.complete_time().is_none());
            if all_known_used {
                return true;
            }
            if failed.contains(&(used.clone(), state.clone())) {
                return false;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                let must_wait = (0..ops.len())
                    .any(|j| !used[j] && ops[j].complete_time().is_some_and(|c| c < ops[i].invoke));
                if must_wait {
                    continue;
                }
                let mut next = state.clone();
                let output = apply(&ops[i].kind, &mut next);
                let allowed = match &ops[i].outcome {
                    Outcome::Ok { output: seen, .. } => *seen == output,
                    // Unknown: only a CAS that swaps counts as taking effect.
                    _ => output != Output::Cas(false),
                };
                if allowed {
                    used[i] = true;
                    if search(ops, used, &next, failed) {
                        return true;
                    }
                    used[i] = false;
                }
            }
            failed.insert((used.clone(), state.clone()));
            false
        }
        let ops: Vec<&Op> = history
            .ops
            .iter()
            .filter(|op| match op.outcome {
                Outcome::Failed => false,
                Outcome::Unknown => op.kind.is_write(),
                Outcome::Ok { .. } => true,
            })
            .collect();
        search(&ops, &mut vec![false; ops.len()], &None, &mut Failed::new())
    }

    /// One step of a sequential execution, see `sequential_history`.
    #[derive(Clone, Debug)]
    struct SeqStep {
        /// 0: get, 1: put, 2: delete, 3: CAS.
        kind: u8,
        /// Whether a CAS expects the current value.
        cas_hits: bool,
        /// Which other value a missing CAS expects.
        cas_other: prop::sample::Index,
        /// Whether a CAS deletes.
        cas_deletes: bool,
        /// How long before and after its linearization point the op runs.
        before: u64,
        after: u64,
        /// 0: failed, 1: unknown and applied, 2: unknown and not applied,
        /// otherwise ok.
        fate: u8,
    }

    fn seq_step(max_skew: u64) -> impl Strategy<Value = SeqStep> {
        (
            0..4u8,
            any::<bool>(),
            any::<prop::sample::Index>(),
            prop::bool::weighted(0.2),
            0..=max_skew,
            0..=max_skew,
            0..12u8,
        )
            .prop_map(
                |(kind, cas_hits, cas_other, cas_deletes, before, after, fate)| SeqStep {
                    kind,
                    cas_hits,
                    cas_other,
                    cas_deletes,
                    before,
                    after,
                    fate,
                },
            )
    }

    /// Runs `steps` one at a time against a model register, the i-th at instant
    /// `100 * i + 1000`, and records each op with an interval containing that
    /// instant (so intervals overlap when the skews exceed 100).
    fn sequential_history(steps: &[SeqStep], outcomes: bool) -> History {
        let mut history = History::new();
        let mut state: Option<Value> = None;
        let mut written: Vec<Option<Value>> = vec![None];
        for (i, step) in steps.iter().enumerate() {
            let kind = match step.kind {
                0 => OpKind::Get,
                1 => OpKind::Put(format!("v{i}").into_bytes()),
                2 => OpKind::Delete,
                _ => {
                    let others: Vec<&Option<Value>> =
                        written.iter().filter(|v| **v != state).collect();
                    let expected = if step.cas_hits || others.is_empty() {
                        state.clone()
                    } else {
                        step.cas_other.get(&others).to_owned().clone()
                    };
                    let new = (!step.cas_deletes).then(|| format!("v{i}").into_bytes());
                    OpKind::Cas { expected, new }
                }
            };
            let point = 100 * i as u64 + 1000;
            let fate = if outcomes { step.fate } else { u8::MAX };
            let outcome = match fate {
                0 => Outcome::Failed,
                1 => {
                    apply(&kind, &mut state);
                    Outcome::Unknown
                }
                2 => Outcome::Unknown,
                _ => Outcome::Ok {
                    output: apply(&kind, &mut state),
                    complete: point + step.after,
                },
            };
            if let OpKind::Put(v) | OpKind::Cas { new: Some(v), .. } = &kind {
                written.push(Some(v.clone()));
            }
            history.push(Op {
                client: i as u64 % 7,
                key: b"k".to_vec(),
                kind,
                invoke: point - step.before,
                outcome,
            });
        }
        history
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Sequential executions with overlapping intervals, failed and
        /// unknown ops are linearizable.
        #[test]
        fn sequential_executions_are_linearizable(
            steps in prop::collection::vec(seq_step(400), 0..60),
        ) {
            let history = sequential_history(&steps, true);
            let result = check_history(&history);
            prop_assert_eq!(result.status(), Status::Linearizable, "{}", result);
        }

        /// In a history without concurrency the order is forced, so a get
        /// that returns anything else than the model's state is a violation.
        #[test]
        fn mutated_read_in_a_sequential_history_is_a_violation(
            steps in prop::collection::vec(seq_step(40), 1..60),
            victim in any::<prop::sample::Index>(),
            replacement in 0..3u8,
            pick in any::<prop::sample::Index>(),
        ) {
            let mut history = sequential_history(&steps, false);
            history.push(Op {
                client: 0,
                key: b"k".to_vec(),
                kind: OpKind::Get,
                invoke: 1_000_000,
                outcome: Outcome::Ok { complete: 1_000_001, output: Output::Get(None) },
            });
            let gets: Vec<usize> = (0..history.len())
                .filter(|&i| history.ops[i].kind == OpKind::Get)
                .collect();
            let written: Vec<Value> = history
                .ops
                .iter()
                .filter_map(|op| match &op.kind {
                    OpKind::Put(v) | OpKind::Cas { new: Some(v), .. } => Some(v.clone()),
                    _ => None,
                })
                .collect();
            // Fix the appended get's output, then mutate one get.
            let mut model = None;
            for op in &mut history.ops {
                let output = apply(&op.kind, &mut model);
                if let Outcome::Ok { output: recorded, .. } = &mut op.outcome {
                    *recorded = output;
                }
            }
            let victim = *victim.get(&gets);
            let Outcome::Ok { output: Output::Get(actual), .. } = &history.ops[victim].outcome
            else {
                unreachable!("gets in this history complete")
            };
            let mut wrong = match replacement {
                0 => None,
                1 if !written.is_empty() => Some(pick.get(&written).clone()),
                _ => Some(b"never-written".to_vec()),
            };
            if wrong == *actual {
                wrong = Some(b"never-written".to_vec());
            }
            history.ops[victim].outcome = Outcome::Ok {
                complete: history.ops[victim].invoke + 50,
                output: Output::Get(wrong),
            };
            let result = check_history(&history);
            prop_assert_eq!(result.status(), Status::NotLinearizable, "{}", result);
            let v = match &result.keys[0].verdict {
                Verdict::NotLinearizable(v) => v.clone(),
                other => panic!("{other}"),
            };
            prop_assert!(v.linearized.len() <= victim);
        }

        /// Concurrent simulated executions, with faults, are linearizable.
        #[test]
        fn simulated_concurrent_executions_are_linearizable(
            seed in any::<u64>(),
            clients in 1..8u64,
            keys in 1..3u64,
        ) {
            let o = SimOptions {
                clients,
                ops_per_client: 30,
                keys,
                unknown_percent: 5,
                failed_percent: 5,
            };
            let history = simulate(seed, &o);
            let result = check_history(&history);
            prop_assert_eq!(result.status(), Status::Linearizable, "{}", result);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        /// The checker agrees with exhaustive search on small random histories,
        /// linearizable or not (values are drawn from a tiny set, so duplicate
        /// writes occur too).
        #[test]
        fn agrees_with_brute_force(
            ops in prop::collection::vec(
                (0..4u8, 0..4u8, 0..4u8, 0..20u64, 0..20u64, 0..10u8, any::<bool>()),
                1..9,
            ),
            unknown_share in 1..5u8,
        ) {
            let value = |n: u8| (n > 0).then(|| vec![b'a' + n - 1]);
            let mut history = History::new();
            for (i, &(kind, x, y, invoke, len, fate, flag)) in ops.iter().enumerate() {
                let (kind, output) = match kind {
                    0 => (OpKind::Get, Output::Get(value(x))),
                    1 => (OpKind::Put(vec![b'a' + x % 3]), Output::Ack),
                    2 => (OpKind::Delete, Output::Ack),
                    _ => (OpKind::Cas { expected: value(x), new: value(y) }, Output::Cas(flag)),
                };
                let outcome = match fate {
                    0 => Outcome::Failed,
                    f if f <= unknown_share => Outcome::Unknown,
                    _ => Outcome::Ok { complete: invoke + len, output },
                };
                history.push(Op { client: i as u64, key: b"k".to_vec(), kind, invoke, outcome });
            }
            let expected = brute_force(&history);
            let result = check_history(&history);
            prop_assert_eq!(result.is_linearizable(), expected, "{}", result);
            prop_assert_ne!(result.status(), Status::Unknown);
        }

        /// The checker agrees with exhaustive search on small simulated
        /// histories in which one operation's output may have been corrupted:
        /// the near-linearizable histories where subtle mistakes would show.
        #[test]
        fn agrees_with_brute_force_on_corrupted_simulations(
            seed in any::<u64>(),
            clients in 2..7u64,
            unknown_percent in 0..40u64,
            corrupt in any::<prop::sample::Index>(),
            how in 0..4u8,
        ) {
            let o = SimOptions {
                clients,
                ops_per_client: 4,
                keys: 1,
                unknown_percent,
                failed_percent: 5,
            };
            let mut history = simulate(seed, &o);
            let victim = corrupt.index(history.len());
            let op = &mut history.ops[victim];
            if let Outcome::Ok { output, .. } = &mut op.outcome {
                *output = match (&*output, how) {
                    (Output::Get(_), 0) => Output::Get(None),
                    (Output::Get(_), 1) => Output::Get(Some(b"c0-v1".to_vec())),
                    (Output::Get(_), _) => Output::Get(Some(b"c1-v2".to_vec())),
                    (Output::Cas(swapped), _) => Output::Cas(!swapped),
                    (Output::Ack, _) => Output::Ack,
                };
            } else if how == 0 {
                op.outcome = Outcome::Unknown;
            }
            let expected = brute_force(&history);
            let result = check_history(&history);
            prop_assert_eq!(result.is_linearizable(), expected, "{}\n{}", result, history.to_json().unwrap());
        }
    }

    /// A performance sanity check (no timing assertion): 10 clients × 200 ops
    /// on one key, with faults.
    #[test]
    fn large_concurrent_history_is_checked() {
        let o = SimOptions {
            clients: 10,
            ops_per_client: 200,
            keys: 1,
            unknown_percent: 5,
            failed_percent: 2,
        };
        let history = simulate(7, &o);
        let result = check_history(&history);
        assert_eq!(result.status(), Status::Linearizable, "{result}");
        assert!(result.ops_checked > 1_700, "{result}");
    }

    /// Proving a violation means exhausting every way of linearizing what
    /// precedes it, which operations with an unknown outcome make much harder.
    #[test]
    fn large_history_with_faults_and_a_violation_in_the_middle() {
        let o = SimOptions {
            clients: 10,
            ops_per_client: 200,
            keys: 1,
            unknown_percent: 5,
            failed_percent: 2,
        };
        let mut history = simulate(3, &o);
        let end = history
            .ops
            .iter()
            .filter_map(Op::complete_time)
            .max()
            .unwrap_or(0);
        let ghost = history.push(Op {
            client: 99,
            key: b"key0".to_vec(),
            kind: OpKind::Get,
            invoke: end / 2,
            outcome: Outcome::Ok {
                complete: end / 2 + 1,
                output: Output::Get(Some(b"ghost".to_vec())),
            },
        });
        let result = check_history(&history);
        assert_eq!(result.status(), Status::NotLinearizable, "{result}");
        let v = match &result.keys[0].verdict {
            Verdict::NotLinearizable(v) => v.clone(),
            other => panic!("{other}"),
        };
        assert_eq!(v.blocked, Some(ghost.0), "{result}");
    }

    /// A violation at the very end of a large history forces the search to
    /// exhaust everything before it; memoisation keeps that tractable.
    #[test]
    fn large_history_with_a_late_violation() {
        let o = SimOptions {
            clients: 10,
            ops_per_client: 200,
            keys: 1,
            unknown_percent: 0,
            failed_percent: 0,
        };
        let mut history = simulate(11, &o);
        let end = history
            .ops
            .iter()
            .filter_map(Op::complete_time)
            .max()
            .unwrap_or(0);
        history.push(Op {
            client: 99,
            key: b"key0".to_vec(),
            kind: OpKind::Get,
            invoke: end + 10,
            outcome: Outcome::Ok {
                complete: end + 20,
                output: Output::Get(Some(b"ghost".to_vec())),
            },
        });
        let result = check_history(&history);
        assert_eq!(result.status(), Status::NotLinearizable, "{result}");
        let v = match &result.keys[0].verdict {
            Verdict::NotLinearizable(v) => v.clone(),
            other => panic!("{other}"),
        };
        assert_eq!(v.blocked, Some(history.len() - 1));
        assert_eq!(v.linearized.len(), history.len() - 1);
    }
}
