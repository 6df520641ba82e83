//! Task queues (docs/api.md, "Task queues"): what a `QueueCommand` does, as a third
//! `impl Applier` beside `command` and `context`, and the read of a queue's counts.
//!
//! A queue `NAME` is the partition `q/NAME`: its record (`QueueRecord`: the next task
//! id, totals, and per priority the head its order entries start at), one
//! `TaskRecord` per task by id, an order entry per task keyed by (255 - priority, id)
//! so a lease reads tasks highest priority first and FIFO within one (from each
//! priority's head, not over the deleted entries of acked tasks before it), dead letters by id, and the records of enqueue idempotency keys (expiring
//! after 24 hours through the TTL purge). Time is the command's `now_ms` (the
//! proposing leader's clock), so every replica decides the same.

use crate::context::{
    queue_dead_key, queue_dead_prefix, queue_idem_key, queue_key, queue_order_key, queue_order_of,
    queue_task_key, IDEMPOTENCY_WINDOW_MS,
};
use crate::error::Result;
use crate::fsm::command::{Applier, StateReader};
use crate::keys;
use crate::proto::{
    command_result, queue_command, CommandResult, QueueCommand, QueueOutcome, QueueRecord,
    QueueStatsResponse, QueueTask, TaskRecord,
};
use prost::Message as _;

/// Attempts a task gets when its enqueue sets none.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The most order entries one lease looks at (tasks leased by others and delayed ones
/// are skipped over; a lease that finds none in these answers with fewer tasks).
const LEASE_SCAN: usize = 10_000;

/// Order entries a lease reads at a time.
const LEASE_PAGE: usize = 64;

/// A nack's backoff before the task is visible again: 100 ms × 2^(attempts - 1), at
/// most 60 s.
pub(crate) fn backoff_ms(attempts: u32) -> u64 {
    let shift = attempts.saturating_sub(1).min(20);
    (100u64 << shift).min(60_000)
}

fn outcome(index: u64, o: QueueOutcome) -> CommandResult {
    CommandResult {
        result: Some(command_result::Result::Queue(QueueOutcome {
            version: index,
            ..o
        })),
    }
}

fn shown(id: u64, t: &TaskRecord) -> QueueTask {
    QueueTask {
        task_id: id,
        payload: t.payload.clone(),
        priority: t.priority,
        attempts: t.attempts,
        lease_token: t.lease_token,
        visible_at_ms: t.visible_at_ms,
        idempotency_key: t.idempotency_key.clone(),
        enqueued_at_ms: t.enqueued_at_ms,
    }
}

/// The priority of a task as its order key holds it (at most 255).
fn priority_of(t: &TaskRecord) -> u8 {
    u8::try_from(t.priority).unwrap_or(u8::MAX)
}

impl<R: StateReader> Applier<'_, R> {
    /// Applies one queue command at `index` with the proposer's clock `now`.
    pub(crate) fn apply_queue(
        &mut self,
        index: u64,
        now: u64,
        cmd: &QueueCommand,
    ) -> Result<CommandResult> {
        let name = cmd.queue.as_str();
        if let Some(r) = self.check_owned([keys::key_hash(&queue_key(name))]) {
            return Ok(r);
        }
        match &cmd.op {
            Some(queue_command::Op::Enqueue(e)) => {
                let idem = (!e.idempotency_key.is_empty())
                    .then(|| keys::data_key(&queue_idem_key(name, &e.idempotency_key)));
                if let Some(ik) = &idem {
                    if let Some(r) = self.live_value(ik, now)? {
                        let id = r
                            .value
                            .first_chunk::<8>()
                            .map_or(0, |b| u64::from_be_bytes(*b));
                        return Ok(outcome(
                            index,
                            QueueOutcome {
                                task_id: id,
                                flag: true,
                                ..Default::default()
                            },
                        ));
                    }
                }
                let mut q = self.queue(name, now)?;
                let id = q.next_task.max(1);
                q.next_task = id + 1;
                q.enqueued_total += 1;
                let task = TaskRecord {
                    payload: e.payload.clone(),
                    priority: e.priority.min(255),
                    attempts: 0,
                    visible_at_ms: now.saturating_add(e.delay_ms),
                    lease_token: 0,
                    idempotency_key: e.idempotency_key.clone(),
                    max_attempts: if e.max_attempts == 0 {
                        DEFAULT_MAX_ATTEMPTS
                    } else {
                        e.max_attempts
                    },
                    enqueued_at_ms: now,
                };
                self.put_task(index, now, name, id, &task)?;
                q.heads.entry(task.priority).or_insert(id);
                let order = queue_order_key(name, priority_of(&task), id);
                self.put_user(index, now, &order, bytes::Bytes::new(), 0, None)?;
                if idem.is_some() {
                    let until = now.saturating_add(IDEMPOTENCY_WINDOW_MS);
                    let k = queue_idem_key(name, &e.idempotency_key);
                    self.put_user(
                        index,
                        now,
                        &k,
                        id.to_be_bytes().to_vec().into(),
                        until,
                        None,
                    )?;
                }
                self.put_queue(index, now, name, &q)?;
                Ok(outcome(
                    index,
                    QueueOutcome {
                        task_id: id,
                        ..Default::default()
                    },
                ))
            }
            Some(queue_command::Op::Lease(l)) => {
                let mut q = self.queue(name, now)?;
                let want = usize::try_from(l.max_tasks).unwrap_or(usize::MAX);
                let mut tasks = Vec::new();
                let mut looked = 0;
                let mut heads = q.heads.clone();
                // Highest priority first; within one, from its head on (the entries
                // before it are acked tasks' deleted entries, costly to skip over).
                let priorities: Vec<(u32, u64)> =
                    q.heads.iter().rev().map(|(p, h)| (*p, *h)).collect();
                for (prio, head) in priorities {
                    if tasks.len() >= want || looked >= LEASE_SCAN {
                        break;
                    }
                    let p8 = u8::try_from(prio).unwrap_or(u8::MAX);
                    let mut from = keys::data_key(&queue_order_key(name, p8, head));
                    let end = keys::data_key(&queue_order_key(name, p8, u64::MAX));
                    let mut first = None;
                    'pages: while tasks.len() < want && looked < LEASE_SCAN {
                        let page = self.scan(&from, &end, LEASE_PAGE)?;
                        let Some((last, _)) = page.last() else {
                            break;
                        };
                        from = [last.as_slice(), &[0]].concat();
                        let full = page.len() == LEASE_PAGE;
                        for (dk, _) in page {
                            if tasks.len() >= want {
                                break 'pages;
                            }
                            looked += 1;
                            let Some((_, id)) = keys::decode_data_key(&dk).and_then(queue_order_of)
                            else {
                                continue;
                            };
                            first.get_or_insert(id);
                            let Some(mut task) = self.task(name, id, now)? else {
                                continue;
                            };
                            if task.visible_at_ms > now {
                                continue;
                            }
                            if task.attempts >= task.max_attempts {
                                // Leased its last time and not acked: a dead letter.
                                self.dead_letter(index, now, name, id, &task)?;
                                continue;
                            }
                            task.attempts += 1;
                            task.lease_token = index;
                            task.visible_at_ms = now.saturating_add(l.visibility_ms);
                            self.put_task(index, now, name, id, &task)?;
                            tasks.push(shown(id, &task));
                        }
                        if !full {
                            break;
                        }
                    }
                    match first {
                        Some(id) => heads.insert(prio, id),
                        // Nothing of this priority from its head on, and ids only grow.
                        None if looked < LEASE_SCAN => heads.remove(&prio),
                        None => None,
                    };
                }
                if heads != q.heads {
                    q.heads = heads;
                    self.put_queue(index, now, name, &q)?;
                }
                Ok(outcome(
                    index,
                    QueueOutcome {
                        tasks,
                        ..Default::default()
                    },
                ))
            }
            Some(queue_command::Op::Ack(a)) => {
                let Some(task) = self.held(name, a.task_id, a.lease_token, now)? else {
                    return Ok(outcome(index, QueueOutcome::default()));
                };
                self.drop_task(name, a.task_id, &task)?;
                let mut q = self.queue(name, now)?;
                q.acked_total += 1;
                self.put_queue(index, now, name, &q)?;
                Ok(outcome(
                    index,
                    QueueOutcome {
                        task_id: a.task_id,
                        flag: true,
                        ..Default::default()
                    },
                ))
            }
            Some(queue_command::Op::Nack(n)) => {
                let Some(mut task) = self.held(name, n.task_id, n.lease_token, now)? else {
                    return Ok(outcome(index, QueueOutcome::default()));
                };
                if task.attempts >= task.max_attempts {
                    self.dead_letter(index, now, name, n.task_id, &task)?;
                    return Ok(outcome(
                        index,
                        QueueOutcome {
                            task_id: n.task_id,
                            flag: true,
                            dead_lettered: true,
                            ..Default::default()
                        },
                    ));
                }
                let after = if n.retry_after_ms == 0 {
                    backoff_ms(task.attempts)
                } else {
                    n.retry_after_ms
                };
                task.visible_at_ms = now.saturating_add(after);
                task.lease_token = 0;
                self.put_task(index, now, name, n.task_id, &task)?;
                Ok(outcome(
                    index,
                    QueueOutcome {
                        task_id: n.task_id,
                        flag: true,
                        visible_at_ms: task.visible_at_ms,
                        ..Default::default()
                    },
                ))
            }
            Some(queue_command::Op::Extend(x)) => {
                let Some(mut task) = self.held(name, x.task_id, x.lease_token, now)? else {
                    return Ok(outcome(index, QueueOutcome::default()));
                };
                task.visible_at_ms = now.saturating_add(x.visibility_ms);
                self.put_task(index, now, name, x.task_id, &task)?;
                Ok(outcome(
                    index,
                    QueueOutcome {
                        task_id: x.task_id,
                        flag: true,
                        visible_at_ms: task.visible_at_ms,
                        ..Default::default()
                    },
                ))
            }
            None => Ok(crate::fsm::command::ok(index, vec![])),
        }
    }

    /// The queue's record (a new one when it has none).
    fn queue(&self, name: &str, now: u64) -> Result<QueueRecord> {
        match self.live_value(&keys::data_key(&queue_key(name)), now)? {
            Some(r) => Ok(QueueRecord::decode(r.value.as_ref())?),
            None => Ok(QueueRecord {
                next_task: 1,
                ..Default::default()
            }),
        }
    }

    fn put_queue(&mut self, index: u64, now: u64, name: &str, q: &QueueRecord) -> Result<()> {
        self.put_user(
            index,
            now,
            &queue_key(name),
            q.encode_to_vec().into(),
            0,
            None,
        )
        .map(drop)
    }

    fn task(&self, name: &str, id: u64, now: u64) -> Result<Option<TaskRecord>> {
        match self.live_value(&keys::data_key(&queue_task_key(name, id)), now)? {
            Some(r) => Ok(Some(TaskRecord::decode(r.value.as_ref())?)),
            None => Ok(None),
        }
    }

    fn put_task(
        &mut self,
        index: u64,
        now: u64,
        name: &str,
        id: u64,
        t: &TaskRecord,
    ) -> Result<()> {
        let k = queue_task_key(name, id);
        self.put_user(index, now, &k, t.encode_to_vec().into(), 0, None)
            .map(drop)
    }

    /// Task `id` if it is held under lease `token` (whether or not the lease's time is
    /// up: nobody leased it since, or the token would differ).
    fn held(&self, name: &str, id: u64, token: u64, now: u64) -> Result<Option<TaskRecord>> {
        Ok(self
            .task(name, id, now)?
            .filter(|t| token != 0 && t.lease_token == token))
    }

    /// Removes task `id` and its order entry.
    fn drop_task(&mut self, name: &str, id: u64, t: &TaskRecord) -> Result<()> {
        self.delete_data(keys::data_key(&queue_task_key(name, id)))?;
        self.delete_data(keys::data_key(&queue_order_key(name, priority_of(t), id)))
    }

    /// Moves task `id` to the dead letters.
    fn dead_letter(
        &mut self,
        index: u64,
        now: u64,
        name: &str,
        id: u64,
        t: &TaskRecord,
    ) -> Result<()> {
        self.drop_task(name, id, t)?;
        let dead = TaskRecord {
            lease_token: 0,
            ..t.clone()
        };
        let k = queue_dead_key(name, id);
        self.put_user(index, now, &k, dead.encode_to_vec().into(), 0, None)
            .map(drop)
    }
}

impl crate::fsm::read::View<'_> {
    /// Queue `name`'s counts, as of the view's time.
    pub(crate) fn queue_stats(&self, name: &str) -> Result<QueueStatsResponse> {
        let now = self.now();
        let mut s = QueueStatsResponse::default();
        if let Some(r) = self.get(&queue_key(name))? {
            let q = QueueRecord::decode(r.value.as_ref())?;
            s.enqueued_total = q.enqueued_total;
            s.acked_total = q.acked_total;
        }
        let tasks = [queue_key(name), b"T".to_vec()].concat();
        self.visit_prefix(&tasks, false, |_, r| {
            let t = TaskRecord::decode(r.value.as_ref())?;
            if t.visible_at_ms <= now {
                s.ready += 1;
            } else if t.lease_token != 0 {
                s.leased += 1;
            } else {
                s.delayed += 1;
            }
            Ok(true)
        })?;
        self.visit_prefix(&queue_dead_prefix(name), false, |_, _| {
            s.dead += 1;
            Ok(true)
        })?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        assert_eq!(backoff_ms(1), 100);
        assert_eq!(backoff_ms(2), 200);
        assert_eq!(backoff_ms(5), 1_600);
        assert_eq!(backoff_ms(30), 60_000);
        assert_eq!(backoff_ms(0), 100);
    }
}
