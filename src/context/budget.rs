//! Token-budget selection: the newest messages whose token counts fit a budget,
//! never splitting a unit of linked messages (a tool call and its results share a
//! `tool_call_id`), optionally with the pinned messages first.

use std::collections::{BTreeSet, HashMap};

/// One message as the selection sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    /// Its seq.
    pub seq: u64,
    /// Its token count.
    pub tokens: u64,
    /// Ids linking it to other messages (`tool_call_id`, comma-separated).
    pub links: Vec<String>,
}

impl Candidate {
    /// A candidate from a stored message.
    pub fn of(m: &crate::proto::ChatMessage) -> Self {
        Self {
            seq: m.seq,
            tokens: m.token_count,
            links: m
                .metadata
                .get("tool_call_id")
                .map(|ids| {
                    ids.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Picks seqs (ascending) from `window`, the newest messages newest first.
/// `reaches_start` says whether the window holds the conversation's oldest message;
/// if not, a unit that touches the window's oldest message may have members outside
/// it and is never taken. `pinned` messages are taken first, whatever their size;
/// the rest of the budget goes to whole units, newest first, stopping at the first
/// unit that does not fit (so the result has no holes except around pinned messages).
pub fn select(
    window: &[Candidate],
    reaches_start: bool,
    budget: u64,
    pinned: &[Candidate],
) -> Vec<u64> {
    let mut chosen: BTreeSet<u64> = pinned.iter().map(|p| p.seq).collect();
    let mut remaining = budget.saturating_sub(pinned.iter().map(|p| p.tokens).sum());
    let n = window.len();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut first_with: HashMap<&str, usize> = HashMap::new();
    for (i, c) in window.iter().enumerate() {
        for l in &c.links {
            match first_with.get(l.as_str()) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
                None => {
                    first_with.insert(l, i);
                }
            }
        }
    }
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        let root = find(&mut parent, i);
        members.entry(root).or_default().push(i);
    }
    let mut done = vec![false; n];
    for i in 0..n {
        if done[i] {
            continue;
        }
        let unit = &members[&find(&mut parent, i)];
        if !reaches_start && unit.contains(&(n - 1)) {
            break;
        }
        let cost: u64 = unit
            .iter()
            .filter(|&&j| !chosen.contains(&window[j].seq))
            .map(|&j| window[j].tokens)
            .sum();
        if cost > remaining {
            break;
        }
        remaining -= cost;
        for &j in unit {
            done[j] = true;
            chosen.insert(window[j].seq);
        }
    }
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(seq: u64, tokens: u64, links: &[&str]) -> Candidate {
        Candidate {
            seq,
            tokens,
            links: links.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Messages oldest first; the window handed to `select` is newest first.
    fn pick(
        msgs: &[Candidate],
        reaches_start: bool,
        budget: u64,
        pinned: &[Candidate],
    ) -> Vec<u64> {
        let window: Vec<_> = msgs.iter().rev().cloned().collect();
        select(&window, reaches_start, budget, pinned)
    }

    #[test]
    fn budget_table() {
        let plain = [c(1, 10, &[]), c(2, 10, &[]), c(3, 10, &[]), c(4, 10, &[])];
        // assistant call (a) with two results, then a final answer.
        let tools = [
            c(1, 5, &[]),
            c(2, 20, &["a", "b"]),
            c(3, 5, &["a"]),
            c(4, 5, &["b"]),
            c(5, 10, &[]),
        ];
        let sys = [c(0, 7, &[])];
        type Case<'a> = (
            &'a str,
            &'a [Candidate],
            bool,
            u64,
            &'a [Candidate],
            Vec<u64>,
        );
        let cases: Vec<Case> = vec![
            ("everything fits", &plain, true, 100, &[], vec![1, 2, 3, 4]),
            ("exact fit", &plain, true, 20, &[], vec![3, 4]),
            ("one short", &plain, true, 19, &[], vec![4]),
            ("nothing fits", &plain, true, 9, &[], vec![]),
            ("zero budget", &plain, true, 0, &[], vec![]),
            ("tool unit whole", &tools, true, 40, &[], vec![2, 3, 4, 5]),
            (
                "tool unit does not fit: stop before it",
                &tools,
                true,
                39,
                &[],
                vec![5],
            ),
            (
                "unit cost counts every member",
                &tools,
                true,
                44,
                &[],
                vec![2, 3, 4, 5],
            ),
            (
                "older plain after unit",
                &tools,
                true,
                45,
                &[],
                vec![1, 2, 3, 4, 5],
            ),
            ("pinned first", &plain, true, 27, &sys, vec![0, 3, 4]),
            (
                "pinned over budget still returned",
                &plain,
                true,
                5,
                &sys,
                vec![0],
            ),
            (
                "window cut mid-unit: unit skipped",
                &tools[1..],
                false,
                100,
                &[],
                vec![5],
            ),
            (
                "window cut on a plain message",
                &plain[1..],
                false,
                100,
                &[],
                vec![3, 4],
            ),
        ];
        for (name, msgs, reaches, budget, pinned, want) in cases {
            assert_eq!(pick(msgs, reaches, budget, pinned), want, "case: {name}");
        }
    }

    #[test]
    fn links_parse_from_metadata() {
        let mut m = crate::proto::ChatMessage {
            seq: 3,
            token_count: 4,
            ..Default::default()
        };
        m.metadata.insert("tool_call_id".into(), "x, y,".into());
        assert_eq!(Candidate::of(&m), c(3, 4, &["x", "y"]));
    }

    proptest::proptest! {
        /// Whatever the links, the selection fits the budget, never splits a unit
        /// found in the window, and is a suffix when nothing is linked.
        #[test]
        fn never_over_budget_never_split(
            toks in proptest::collection::vec(0u64..30, 1..30),
            link_of in proptest::collection::vec(proptest::option::of(0u8..4), 1..30),
            budget in 0u64..200,
        ) {
            let msgs: Vec<Candidate> = toks.iter().enumerate().map(|(i, t)| {
                let l = link_of.get(i).copied().flatten();
                Candidate { seq: i as u64 + 1, tokens: *t, links: l.map(|x| vec![x.to_string()]).unwrap_or_default() }
            }).collect();
            let got = pick(&msgs, true, budget, &[]);
            let total: u64 = msgs.iter().filter(|m| got.contains(&m.seq)).map(|m| m.tokens).sum();
            proptest::prop_assert!(total <= budget);
            for l in 0u8..4 {
                let with: Vec<u64> = msgs.iter().filter(|m| m.links == vec![l.to_string()]).map(|m| m.seq).collect();
                let taken = with.iter().filter(|s| got.contains(s)).count();
                proptest::prop_assert!(taken == 0 || taken == with.len());
            }
            if link_of.iter().all(|l| l.is_none()) {
                let n = got.len() as u64;
                let last = msgs.len() as u64;
                proptest::prop_assert_eq!(got, ((last + 1 - n)..=last).collect::<Vec<_>>());
            }
        }
    }
}
