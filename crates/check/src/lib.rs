//! Linearizability checking for Jepsen-style fault tests.
//!
//! Fault tests run many concurrent clients against a cluster while injecting
//! faults, record every operation with a [`Recorder`], and then ask
//! [`check_history`] whether the recorded [`History`] is linearizable: whether
//! there is a single total order of the operations that (a) respects real time
//! — an operation that completed before another was invoked comes first — and
//! (b) is a legal sequential execution of the store, i.e. every operation
//! returns what it would have returned had the operations run one at a time in
//! that order.
//!
//! # Model
//!
//! Every key is an independent register holding `Option<Vec<u8>>`; every key
//! starts out absent (`None`). The operations ([`OpKind`]) are
//!
//! - `Get`, which returns the current state;
//! - `Put(v)`, which sets it to `Some(v)`;
//! - `Delete`, which sets it to `None`;
//! - `Cas { expected, new }`, which sets the state to `new` if it equals
//!   `expected` and reports whether it did (`None` means "absent" on both sides).
//!
//! The store's CAS compares versions, not values. If every value written in a
//! history is unique ([`Recorder::unique_value`] helps), a value identifies the
//! write that produced it, so comparing values is equivalent.
//!
//! Each operation has an invocation time and an [`Outcome`]:
//!
//! - [`Outcome::Ok`]: it completed at a known time with a known output;
//! - [`Outcome::Failed`]: it definitely had no effect, so the checker ignores it;
//! - [`Outcome::Unknown`]: a timeout or a lost connection; it may have taken
//!   effect at any moment after its invocation, or never. Its return time is
//!   treated as +infinity, so it is concurrent with everything invoked after it.
//!   A get with an unknown outcome constrains nothing and is ignored; a put,
//!   delete or CAS with an unknown outcome may be linearized anywhere after its
//!   invocation or left out entirely (for a CAS, "linearized" means it swapped;
//!   not swapping is the same as having no effect).
//!
//! # Algorithm
//!
//! Linearizability is *local* (Herlihy & Wing): a history is linearizable iff its
//! restriction to each object is. The checker therefore partitions the history
//! by key and checks each key on its own, which keeps the search small.
//!
//! For one key it runs the Wing–Gong search with Lowe's memoisation (the
//! algorithm popularised by Porcupine):
//!
//! 1. Every operation contributes a call event at its invocation time and, if
//!    its outcome is known, a return event at its completion time (an unknown
//!    outcome returns at +infinity, i.e. never). The events are sorted by time
//!    (calls before returns at equal times, so intervals that only touch count
//!    as concurrent) into doubly linked lists, one for the operations with a
//!    known outcome and one for the others.
//! 2. Every call event before the first return event belongs to an operation
//!    that may be linearized next: nothing still unlinearized completed before
//!    it was invoked. The search tries each in turn: if the operation's output
//!    is possible in the current register state, it is linearized: its events
//!    are unlinked from the list, the previous state is pushed on a stack and
//!    the scan restarts at the head.
//! 3. Reaching a return event means its operation had to be linearized by then
//!    but could not be; the search pops the last linearized operation, relinks
//!    its events, restores the state and tries the next candidate after it.
//! 4. The search succeeds when every operation with a known outcome is
//!    linearized (unknown ones may be left out), and fails when it must backtrack
//!    with an empty stack.
//!
//! Different orders often lead to the same configuration — the same *set* of
//! linearized operations and the same register state — from which the rest of
//! the search is identical. A cache of visited configurations (the set of
//! linearized operations, compactly encoded, plus the interned state) prunes
//! those repeats. A configuration is also pruned when one that *dominates* it
//! was visited: same state and same linearized operations with a known
//! outcome, but fewer of the optional (unknown-outcome) ones linearized.
//!
//! Plain WGL is exponential in the number of overlapping operations, which
//! with 10–20 concurrent clients and timeouts is too slow. The search therefore
//! also applies a few reductions, each justified by an exchange argument (if a
//! linearization exists, one of the restricted form exists too); they are
//! documented on the search itself:
//!
//! - a get or failed CAS whose output matches the current state is linearized
//!   at once, without trying alternatives, which removes the interleavings of
//!   concurrent reads;
//! - states that no remaining operation observes are merged into one;
//! - an operation with an unknown outcome is only linearized right before an
//!   operation that needs the state it produces, and unknown puts/deletes that
//!   write the same state are interchangeable.
//!
//! The search is still exponential in the worst case, so it is bounded by
//! [`CheckOptions`]; a key on which it gives up gets [`Verdict::Unknown`], which
//! is reported distinctly from a violation. For a violation, the longest
//! linearizable prefix found and the operation that could not follow it are
//! reported ([`Violation`]).
//!
//! The checker itself is tested against hand-written histories (stale reads,
//! lost writes, CAS races, unknown outcomes), randomly generated linearizable
//! histories, mutated ones, and an independent brute-force search on small
//! histories.
//!
//! # Example
//!
//! ```
//! use ctxstore_check::{check_history, OpKind, Output, Recorder, Status};
//!
//! let recorder = Recorder::new();
//! let value = recorder.unique_value(1);
//! let put = recorder.invoke(1, b"k".to_vec(), OpKind::Put(value));
//! recorder.ok(put, Output::Ack);
//! let get = recorder.invoke(2, b"k".to_vec(), OpKind::Get);
//! recorder.ok(get, Output::Get(None)); // a stale read
//!
//! let history = recorder.history();
//! let result = check_history(&history);
//! assert_eq!(result.status(), Status::NotLinearizable, "{result}");
//! // A failing test would now save the history for inspection:
//! // history.to_json_file("target/failed-history.json")?;
//! ```

mod history;
pub mod list;
mod register;

pub use history::{Completion, History, Key, Op, OpId, OpKind, Outcome, Output, Recorder, Value};
pub use register::{
    check_history, check_history_with, CheckOptions, CheckResult, KeyResult, Status, Verdict,
    Violation,
};
