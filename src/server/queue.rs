//! `ctxstore.v1.Queue`: task queues (docs/api.md, "Task queues"). Each call is checked
//! here, then proposed as one `QueueCommand` to the shard of the queue's partition
//! (`fsm::queue` does the rest), except `Stats`, a read.

use crate::context::{queue_route_key, validate_queue, MAX_QUEUE_NAME};
use crate::error::{Error, Result};
use crate::keys;
use crate::node::ctx::NodeCtx;
use crate::proto::queue_server::Queue;
use crate::proto::{
    command_result, queue_command, raft_command, Access, EnqueueRequest, EnqueueResponse,
    QueueAckRequest, QueueAckResponse, QueueCommand, QueueExtendRequest, QueueExtendResponse,
    QueueLeaseRequest, QueueLeaseResponse, QueueNackRequest, QueueNackResponse, QueueOutcome,
    QueueStatsRequest, QueueStatsResponse, RequestHeader, ResourceKind,
};
use crate::server::auth::{authorize, principal};
use crate::server::path::RequestPath;
use crate::util::now_ms;
use bytes::Bytes;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The most tasks one lease may ask for.
pub(crate) const MAX_LEASE_TASKS: u32 = 1_000;
/// The longest visibility timeout (12 hours); also the longest delay and retry.
pub(crate) const MAX_VISIBILITY_MS: u64 = 12 * 3600 * 1000;

pub(crate) struct QueueService {
    path: RequestPath,
}

impl QueueService {
    pub(crate) fn new(ctx: Arc<NodeCtx>) -> Self {
        Self {
            path: RequestPath::new(ctx),
        }
    }

    /// Checks the queue's name and the caller's `access` to it (a grant on
    /// `{q/NAME}`); the partition hash to route by.
    fn queue(
        &self,
        who: &Option<crate::auth::Principal>,
        name: &str,
        access: Access,
    ) -> Result<u64> {
        validate_queue("queue", name)?;
        let route = queue_route_key(name);
        authorize(who, ResourceKind::Kv, &route, access)?;
        Ok(keys::key_hash(&route))
    }

    /// Proposes `op` on queue `name` and returns its outcome.
    async fn run(
        &self,
        header: &Option<RequestHeader>,
        hash: u64,
        request_id: Bytes,
        name: String,
        op: queue_command::Op,
    ) -> Result<QueueOutcome> {
        let cmd = raft_command::Cmd::Queue(QueueCommand {
            queue: name,
            op: Some(op),
        });
        let r = self
            .path
            .propose_cmd(header, Some(hash), request_id, now_ms(), cmd)
            .await?;
        match r.result {
            Some(command_result::Result::Queue(o)) => Ok(o),
            _ => Err(Error::Internal("unexpected queue command result".into())),
        }
    }
}

fn check_ms(field: &str, v: u64, min: u64) -> Result<()> {
    if v < min || v > MAX_VISIBILITY_MS {
        return Err(Error::invalid(
            field,
            format!("must be {min} ..= {MAX_VISIBILITY_MS}, got {v}"),
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl Queue for QueueService {
    async fn enqueue(
        &self,
        req: Request<EnqueueRequest>,
    ) -> Result<Response<EnqueueResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let hash = self.queue(&who, &req.queue, Access::Write)?;
        if req.priority > 255 {
            return Err(Error::invalid("priority", "must be 0..=255").into());
        }
        check_ms("delay_ms", req.delay_ms, 0)?;
        if req.idempotency_key.len() > MAX_QUEUE_NAME {
            return Err(Error::invalid(
                "idempotency_key",
                format!("at most {MAX_QUEUE_NAME} bytes"),
            )
            .into());
        }
        self.path.check_value_size(req.payload.len())?;
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let name = std::mem::take(&mut req.queue);
        let o = self
            .run(&header, hash, rid, name, queue_command::Op::Enqueue(req))
            .await?;
        Ok(Response::new(EnqueueResponse {
            task_id: o.task_id,
            duplicate: o.flag,
            version: o.version,
        }))
    }

    async fn lease(
        &self,
        req: Request<QueueLeaseRequest>,
    ) -> Result<Response<QueueLeaseResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let hash = self.queue(&who, &req.queue, Access::Write)?;
        if !(1..=MAX_LEASE_TASKS).contains(&req.max_tasks) {
            return Err(
                Error::invalid("max_tasks", format!("must be 1..={MAX_LEASE_TASKS}")).into(),
            );
        }
        check_ms("visibility_ms", req.visibility_ms, 1)?;
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let name = std::mem::take(&mut req.queue);
        let o = self
            .run(&header, hash, rid, name, queue_command::Op::Lease(req))
            .await?;
        Ok(Response::new(QueueLeaseResponse {
            tasks: o.tasks,
            version: o.version,
        }))
    }

    async fn ack(
        &self,
        req: Request<QueueAckRequest>,
    ) -> Result<Response<QueueAckResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let hash = self.queue(&who, &req.queue, Access::Write)?;
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let name = std::mem::take(&mut req.queue);
        let o = self
            .run(&header, hash, rid, name, queue_command::Op::Ack(req))
            .await?;
        Ok(Response::new(QueueAckResponse {
            acked: o.flag,
            version: o.version,
        }))
    }

    async fn nack(
        &self,
        req: Request<QueueNackRequest>,
    ) -> Result<Response<QueueNackResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let hash = self.queue(&who, &req.queue, Access::Write)?;
        check_ms("retry_after_ms", req.retry_after_ms, 0)?;
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let name = std::mem::take(&mut req.queue);
        let o = self
            .run(&header, hash, rid, name, queue_command::Op::Nack(req))
            .await?;
        Ok(Response::new(QueueNackResponse {
            released: o.flag,
            dead_lettered: o.dead_lettered,
            version: o.version,
        }))
    }

    async fn extend(
        &self,
        req: Request<QueueExtendRequest>,
    ) -> Result<Response<QueueExtendResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let hash = self.queue(&who, &req.queue, Access::Write)?;
        check_ms("visibility_ms", req.visibility_ms, 1)?;
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let name = std::mem::take(&mut req.queue);
        let o = self
            .run(&header, hash, rid, name, queue_command::Op::Extend(req))
            .await?;
        Ok(Response::new(QueueExtendResponse {
            extended: o.flag,
            visible_at_ms: o.visible_at_ms,
            version: o.version,
        }))
    }

    async fn stats(
        &self,
        req: Request<QueueStatsRequest>,
    ) -> Result<Response<QueueStatsResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let hash = self.queue(&who, &req.queue, Access::Read)?;
        let peer = self
            .path
            .read_barrier(&req.header, Some(hash), false)
            .await?;
        let name = req.queue;
        let stats = self
            .path
            .read_view(&peer, move |v| v.queue_stats(&name))
            .await?;
        Ok(Response::new(stats))
    }
}
