//! Task queues (docs/api.md, "Task queues"): each call goes to the leader of the
//! queue's shard with the write retry rules (a retried call carries the same request
//! id, so a lease retried after a lost answer returns the same tasks).

use crate::lease::millis;
use crate::proto::queue_client::QueueClient;
use crate::proto::{
    EnqueueRequest, QueueAckRequest, QueueExtendRequest, QueueLeaseRequest, QueueNackRequest,
    QueueStatsRequest, QueueStatsResponse, QueueTask,
};
use crate::{Client, Result};
use bytes::Bytes;
use ctxstore_api::context::{queue_route_key, validate_queue};
use ctxstore_api::keys::key_hash;
use std::time::Duration;

/// How to enqueue a task ([`Client::enqueue_with`]).
#[derive(Clone, Debug, Default)]
pub struct Enqueue {
    /// 0..=255, higher first.
    pub priority: u8,
    /// Invisible until this long after the enqueue.
    pub delay: Duration,
    /// A repeat within 24 hours enqueues nothing and answers the first task's id.
    pub idempotency_key: String,
    /// Dead-letter after this many leases without an ack (0: 5).
    pub max_attempts: u32,
}

impl Client {
    fn queue_api(ch: crate::trace::Channel) -> QueueClient<crate::trace::Channel> {
        QueueClient::new(ch)
            .max_decoding_message_size(crate::proto::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(crate::proto::MAX_MESSAGE_SIZE)
    }

    /// Enqueues `payload` on queue `queue` with default options; returns its id.
    pub async fn enqueue(&self, queue: &str, payload: impl Into<Bytes>) -> Result<u64> {
        Ok(self
            .enqueue_with(queue, payload, Enqueue::default())
            .await?
            .0)
    }

    /// Enqueues `payload` on queue `queue`: its id, and whether the idempotency key
    /// named a task enqueued before (then nothing was enqueued).
    pub async fn enqueue_with(
        &self,
        queue: &str,
        payload: impl Into<Bytes>,
        opts: Enqueue,
    ) -> Result<(u64, bool)> {
        validate_queue("queue", queue)?;
        let req = EnqueueRequest {
            header: None,
            queue: queue.to_string(),
            payload: payload.into(),
            priority: u32::from(opts.priority),
            delay_ms: millis(opts.delay),
            idempotency_key: opts.idempotency_key,
            max_attempts: opts.max_attempts,
            request_id: self.new_request_id(),
        };
        let r = self
            .write_key(
                key_hash(&queue_route_key(queue)),
                |r: &crate::proto::EnqueueResponse| r.version,
                |ch, header| {
                    let mut req = req.clone();
                    req.header = Some(header);
                    async move { Ok(Self::queue_api(ch).enqueue(req).await?.into_inner()) }
                },
            )
            .await?;
        Ok((r.task_id, r.duplicate))
    }

    /// Leases up to `max` visible tasks of `queue` for `visibility`: highest priority
    /// first, FIFO within one. A task not acked before its lease ends is delivered
    /// again.
    pub async fn lease_tasks(
        &self,
        queue: &str,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<QueueTask>> {
        validate_queue("queue", queue)?;
        let req = QueueLeaseRequest {
            header: None,
            queue: queue.to_string(),
            max_tasks: max,
            visibility_ms: millis(visibility),
            request_id: self.new_request_id(),
        };
        let r = self
            .write_key(
                key_hash(&queue_route_key(queue)),
                |r: &crate::proto::QueueLeaseResponse| r.version,
                |ch, header| {
                    let mut req = req.clone();
                    req.header = Some(header);
                    async move { Ok(Self::queue_api(ch).lease(req).await?.into_inner()) }
                },
            )
            .await?;
        Ok(r.tasks)
    }

    /// Acks a leased task (removes it); false when it is not held under that lease
    /// any more (acked already, or leased again by someone else).
    pub async fn ack(&self, queue: &str, task: &QueueTask) -> Result<bool> {
        validate_queue("queue", queue)?;
        let req = QueueAckRequest {
            header: None,
            queue: queue.to_string(),
            task_id: task.task_id,
            lease_token: task.lease_token,
            request_id: self.new_request_id(),
        };
        let r = self
            .write_key(
                key_hash(&queue_route_key(queue)),
                |r: &crate::proto::QueueAckResponse| r.version,
                |ch, header| {
                    let mut req = req.clone();
                    req.header = Some(header);
                    async move { Ok(Self::queue_api(ch).ack(req).await?.into_inner()) }
                },
            )
            .await?;
        Ok(r.acked)
    }

    /// Gives a leased task back, visible again after `retry_after` (None: the
    /// backoff, 100 ms doubling per attempt up to 60 s): (released, dead-lettered).
    pub async fn nack(
        &self,
        queue: &str,
        task: &QueueTask,
        retry_after: Option<Duration>,
    ) -> Result<(bool, bool)> {
        validate_queue("queue", queue)?;
        let req = QueueNackRequest {
            header: None,
            queue: queue.to_string(),
            task_id: task.task_id,
            lease_token: task.lease_token,
            retry_after_ms: retry_after.map_or(0, |d| millis(d).max(1)),
            request_id: self.new_request_id(),
        };
        let r = self
            .write_key(
                key_hash(&queue_route_key(queue)),
                |r: &crate::proto::QueueNackResponse| r.version,
                |ch, header| {
                    let mut req = req.clone();
                    req.header = Some(header);
                    async move { Ok(Self::queue_api(ch).nack(req).await?.into_inner()) }
                },
            )
            .await?;
        Ok((r.released, r.dead_lettered))
    }

    /// Extends a task's lease to end `visibility` from now; false when it is not held
    /// under that lease any more.
    pub async fn extend(
        &self,
        queue: &str,
        task: &QueueTask,
        visibility: Duration,
    ) -> Result<bool> {
        validate_queue("queue", queue)?;
        let req = QueueExtendRequest {
            header: None,
            queue: queue.to_string(),
            task_id: task.task_id,
            lease_token: task.lease_token,
            visibility_ms: millis(visibility),
            request_id: self.new_request_id(),
        };
        let r = self
            .write_key(
                key_hash(&queue_route_key(queue)),
                |r: &crate::proto::QueueExtendResponse| r.version,
                |ch, header| {
                    let mut req = req.clone();
                    req.header = Some(header);
                    async move { Ok(Self::queue_api(ch).extend(req).await?.into_inner()) }
                },
            )
            .await?;
        Ok(r.extended)
    }

    /// Queue `queue`'s counts (read at the leader).
    pub async fn queue_stats(&self, queue: &str) -> Result<QueueStatsResponse> {
        validate_queue("queue", queue)?;
        let req = QueueStatsRequest {
            header: None,
            queue: queue.to_string(),
        };
        self.read_routed(
            key_hash(&queue_route_key(queue)),
            crate::ReadMode::Leader,
            |ch, header| {
                let mut req = req.clone();
                req.header = Some(header);
                async move { Ok(Self::queue_api(ch).stats(req).await?.into_inner()) }
            },
        )
        .await
    }
}
