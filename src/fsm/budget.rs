//! Token-budget selection: the newest messages whose token counts fit a budget,
//! never splitting a unit of linked messages (a tool call and its results share a
//! `tool_call_id`), optionally with the pinned messages first.

use std::collections::{BTreeSet, HashMap, HashSet};

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

/// Link ids that appear on only one message of `window`: their partners, if any, are
/// older than the window.
pub fn single_links(window: &[Candidate]) -> HashSet<String> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for c in window {
        for l in &c.links {
            *count.entry(l.as_str()).or_default() += 1;
        }
    }
    count
        .into_iter()
        .filter(|(_, n)| *n == 1)
        .map(|(l, _)| l.to_string())
        .collect()
}

/// Picks seqs (ascending) from `window`: the newest messages newest first, then any
/// older partners found for their links. A unit with a member carrying an `open`
/// link id (a partner may exist beyond the window) is never taken. `pinned` messages
/// are taken first, whatever their size; the rest of the budget goes to whole units,
/// newest first, stopping at the first unit that does not fit (so the result has no
/// holes except around pinned messages).
pub fn select(
    window: &[Candidate],
    open: &HashSet<String>,
    budget: u64,
    pinned: &[Candidate],
) -> Vec<u64> {
    let mut chosen: BTreeSet<u64> = pinned.iter().map(|p| p.seq).collect();
    let pinned_tokens = pinned.iter().fold(0u64, |a, p| a.saturating_add(p.tokens));
    let mut remaining = budget.saturating_sub(pinned_tokens);
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
        if unit
            .iter()
            .any(|&j| window[j].links.iter().any(|l| open.contains(l)))
        {
            break;
        }
        let cost = unit
            .iter()
            .filter(|&&j| !chosen.contains(&window[j].seq))
            .fold(0u64, |a, &j| a.saturating_add(window[j].tokens));
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
    fn pick(msgs: &[Candidate], open: &[&str], budget: u64, pinned: &[Candidate]) -> Vec<u64> {
        let window: Vec<_> = msgs.iter().rev().cloned().collect();
        let open: HashSet<String> = open.iter().map(|s| s.to_string()).collect();
        select(&window, &open, budget, pinned)
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
            &'a [&'a str],
            u64,
            &'a [Candidate],
            Vec<u64>,
        );
        let cases: Vec<Case> = vec![
            ("everything fits", &plain, &[], 100, &[], vec![1, 2, 3, 4]),
            ("exact fit", &plain, &[], 20, &[], vec![3, 4]),
            ("one short", &plain, &[], 19, &[], vec![4]),
            ("nothing fits", &plain, &[], 9, &[], vec![]),
            ("zero budget", &plain, &[], 0, &[], vec![]),
            ("tool unit whole", &tools, &[], 40, &[], vec![2, 3, 4, 5]),
            (
                "tool unit does not fit: stop before it",
                &tools,
                &[],
                39,
                &[],
                vec![5],
            ),
            (
                "unit cost counts every member",
                &tools,
                &[],
                44,
                &[],
                vec![2, 3, 4, 5],
            ),
            (
                "older plain after unit",
                &tools,
                &[],
                45,
                &[],
                vec![1, 2, 3, 4, 5],
            ),
            ("pinned first", &plain, &[], 27, &sys, vec![0, 3, 4]),
            (
                "pinned over budget still returned",
                &plain,
                &[],
                5,
                &sys,
                vec![0],
            ),
            (
                "call outside the window: results not taken",
                &tools[2..],
                &["a", "b"],
                100,
                &[],
                vec![5],
            ),
            (
                "one open id blocks only its unit and older ones",
                &tools[1..],
                &["zzz"],
                100,
                &[],
                vec![2, 3, 4, 5],
            ),
            (
                "window without links: no open ids",
                &plain[1..],
                &[],
                100,
                &[],
                vec![2, 3, 4],
            ),
        ];
        for (name, msgs, open, budget, pinned, want) in cases {
            assert_eq!(pick(msgs, open, budget, pinned), want, "case: {name}");
        }
    }

    #[test]
    fn single_links_are_the_unmatched_ids() {
        let window = [c(5, 1, &["a"]), c(4, 1, &["a", "b"]), c(3, 1, &["c"])];
        let mut got: Vec<String> = single_links(&window).into_iter().collect();
        got.sort();
        assert_eq!(got, vec!["b".to_string(), "c".to_string()]);
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
            let got = pick(&msgs, &[], budget, &[]);
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
