//! `ctxstore.v1.Cluster`: node status, membership changes and leader transfer.

use crate::error::{Error, Result};
use crate::node::ctx::NodeCtx;
use crate::proto::cluster_server::Cluster;
use crate::proto::{
    AddMemberRequest, AddMemberResponse, AllocShardRequest, AllocShardResponse, BackupChunk,
    BackupShardRequest, GetConfigRequest, GetConfigResponse, NodeHeartbeat, PdStatusRequest,
    PdStatusResponse, RemoveMemberRequest, RemoveMemberResponse, ReplicaRole, RoutingTable,
    RoutingTableRequest, SetConfigRequest, SetConfigResponse, SetNodeAdminRequest,
    SetNodeAdminResponse, SetPdPausedRequest, SetPdPausedResponse, ShardDescriptor,
    SplitShardRequest, SplitShardResponse, StatusRequest, StatusResponse, TransferLeaderRequest,
    TransferLeaderResponse,
};
use crate::raft::handle::{await_reply, MemberChange, PeerHandle, PeerMsg};
use crate::types::{NodeId, ShardId, DEFAULT_SHARD};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// Most expired records `Status` counts (`StatusResponse.expired_waiting`).
const EXPIRED_COUNT_MAX: usize = 100_000;

/// How long `AddMember` waits for the new learner to catch up and become a voter.
pub(crate) const PROMOTION_WAIT: Duration = Duration::from_secs(60);

pub(crate) struct ClusterService {
    ctx: Arc<NodeCtx>,
}

impl ClusterService {
    pub(crate) fn new(ctx: Arc<NodeCtx>) -> Self {
        Self { ctx }
    }

    /// The local replica of an admin request's shard (absent: shard 1). A shard this
    /// node does not host answers `NotLeader` with the leader the meta shard last
    /// heard of, so the client retries there.
    fn peer(&self, shard_id: Option<u64>) -> Result<PeerHandle> {
        let shard = shard_id.map_or(DEFAULT_SHARD, ShardId);
        if let Some(p) = self.ctx.peer(shard) {
            return Ok(p);
        }
        match self.ctx.meta.route_of(shard) {
            Some(route) => match route.leader {
                Some(l) if l.node_id != self.ctx.node_id.0 => Err(Error::NotLeader {
                    shard,
                    leader: Some(l),
                }),
                _ => Err(Error::ShardUnavailable {
                    shard,
                    reason: "no leader known for this shard".into(),
                    outcome_unknown: false,
                }),
            },
            None => Err(Error::WrongShard { shard }),
        }
    }

    async fn change(&self, shard_id: Option<u64>, change: MemberChange) -> Result<ShardDescriptor> {
        let peer = self.peer(shard_id)?;
        let (tx, rx) = oneshot::channel();
        peer.send(PeerMsg::ChangeMember(change, tx)).await?;
        await_reply(peer.shard, rx).await
    }

    async fn descriptor(&self, peer: &PeerHandle) -> Option<ShardDescriptor> {
        let (tx, rx) = oneshot::channel();
        peer.send(PeerMsg::Status(tx)).await.ok()?;
        rx.await.ok()?.descriptor
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let mut status = self.ctx.status().await;
        let ctx = self.ctx.clone();
        status.expired_waiting = self
            .ctx
            .tracker
            .spawn_blocking(move || {
                crate::fsm::read::View::new(&ctx.engine, crate::util::now_ms())
                    .count_expired(EXPIRED_COUNT_MAX)
            })
            .await
            .map_err(|e| Error::Internal(format!("expired count task: {e}")))??;
        if req.into_inner().with_digests {
            let ctx = self.ctx.clone();
            let shards: Vec<ShardId> = status
                .shards
                .iter()
                .filter_map(|s| s.descriptor.as_ref())
                .map(|d| ShardId(d.shard_id))
                .collect();
            let digests = self
                .ctx
                .tracker
                .spawn_blocking(move || {
                    shards
                        .into_iter()
                        .map(|s| crate::storage::snapshot::data_digest(&ctx.engine, s))
                        .collect::<Result<Vec<_>>>()
                })
                .await
                .map_err(|e| Error::Internal(format!("digest task: {e}")))??;
            for (s, (index, digest)) in status.shards.iter_mut().zip(digests) {
                s.digest = Some(digest);
                s.digest_index = index;
            }
        }
        Ok(Response::new(status))
    }

    async fn add_member(
        &self,
        req: Request<AddMemberRequest>,
    ) -> Result<Response<AddMemberResponse>, Status> {
        let req = req.into_inner();
        if req.node_id == 0 {
            return Err(Error::invalid("node_id", "must be greater than 0").into());
        }
        crate::config::parse_initial_cluster(&format!("{}={}", req.node_id, req.addr))
            .map_err(|_| Error::invalid("addr", format!("`{}` is not host:port", req.addr)))?;
        let node = NodeId(req.node_id);
        let peer = self.peer(req.shard_id)?;
        // A retry of an add that already applied waits for promotion again.
        let existing = self.descriptor(&peer).await.filter(|d| {
            d.replicas
                .iter()
                .any(|r| r.node_id == node.0 && r.addr == req.addr)
        });
        let mut desc = match existing {
            Some(d) => d,
            None => {
                self.change(
                    req.shard_id,
                    MemberChange::Add {
                        node,
                        addr: req.addr.clone(),
                        expect: req.expected_conf_ver,
                    },
                )
                .await?
            }
        };
        // Wait for the learner to catch up and be promoted by the leader (the
        // placement driver's steps do not wait: it watches the descriptor).
        let wait = if req.expected_conf_ver.is_some() {
            Duration::ZERO
        } else {
            PROMOTION_WAIT
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let voter = desc
                .replicas
                .iter()
                .any(|r| r.node_id == node.0 && r.role == ReplicaRole::Voter as i32);
            if voter || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(d) = self.descriptor(&peer).await {
                desc = d;
            }
        }
        let replica = desc.replicas.iter().find(|r| r.node_id == node.0).cloned();
        Ok(Response::new(AddMemberResponse {
            replica,
            descriptor: Some(desc),
        }))
    }

    async fn remove_member(
        &self,
        req: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberResponse>, Status> {
        let req = req.into_inner();
        let desc = self
            .change(
                req.shard_id,
                MemberChange::Remove {
                    node: NodeId(req.node_id),
                    expect: req.expected_conf_ver,
                },
            )
            .await?;
        Ok(Response::new(RemoveMemberResponse {
            descriptor: Some(desc),
        }))
    }

    async fn get_routing_table(
        &self,
        _req: Request<RoutingTableRequest>,
    ) -> Result<Response<RoutingTable>, Status> {
        Ok(Response::new(
            crate::meta::service::routing_table_any(&self.ctx).await?,
        ))
    }

    async fn heartbeat(
        &self,
        req: Request<NodeHeartbeat>,
    ) -> Result<Response<RoutingTable>, Status> {
        Ok(Response::new(
            crate::meta::service::handle_heartbeat(&self.ctx, req.into_inner()).await?,
        ))
    }

    async fn split_shard(
        &self,
        req: Request<SplitShardRequest>,
    ) -> Result<Response<SplitShardResponse>, Status> {
        let req = req.into_inner();
        let (parent, child) =
            crate::node::split::split_shard(&self.ctx, ShardId(req.shard_id), req.at_hash).await?;
        Ok(Response::new(SplitShardResponse {
            parent: Some(parent),
            child: Some(child),
        }))
    }

    async fn alloc_shard(
        &self,
        req: Request<AllocShardRequest>,
    ) -> Result<Response<AllocShardResponse>, Status> {
        let child_shard =
            crate::meta::service::handle_alloc_shard(&self.ctx, req.into_inner()).await?;
        Ok(Response::new(AllocShardResponse { child_shard }))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let req = req.into_inner();
        let peer = self.peer(req.shard_id)?;
        let (tx, rx) = oneshot::channel();
        peer.send(PeerMsg::TransferLeader(NodeId(req.node_id), tx))
            .await?;
        await_reply(peer.shard, rx).await?;
        Ok(Response::new(TransferLeaderResponse {}))
    }

    async fn set_node_admin(
        &self,
        req: Request<SetNodeAdminRequest>,
    ) -> Result<Response<SetNodeAdminResponse>, Status> {
        let forward = !req.metadata().contains_key(crate::meta::service::FORWARDED);
        let node =
            crate::meta::service::set_node_admin(&self.ctx, req.into_inner(), forward).await?;
        Ok(Response::new(SetNodeAdminResponse { node: Some(node) }))
    }

    async fn pd_status(
        &self,
        req: Request<PdStatusRequest>,
    ) -> Result<Response<PdStatusResponse>, Status> {
        let forward = !req.metadata().contains_key(crate::meta::service::FORWARDED);
        Ok(Response::new(
            crate::meta::pd::pd_status(&self.ctx, forward).await?,
        ))
    }

    async fn set_config(
        &self,
        req: Request<SetConfigRequest>,
    ) -> Result<Response<SetConfigResponse>, Status> {
        let forward = !req.metadata().contains_key(crate::meta::service::FORWARDED);
        let config = crate::meta::service::set_config(&self.ctx, req.into_inner(), forward).await?;
        Ok(Response::new(SetConfigResponse {
            config: Some(config),
        }))
    }

    type BackupShardStream = super::watch::RpcStream<BackupChunk>;

    async fn backup_shard(
        &self,
        req: Request<BackupShardRequest>,
    ) -> Result<Response<Self::BackupShardStream>, Status> {
        let peer = self.peer(Some(req.into_inner().shard_id))?;
        let stream = super::backup::backup_shard(self.ctx.clone(), peer).await?;
        Ok(Response::new(stream))
    }

    async fn get_config(
        &self,
        _req: Request<GetConfigRequest>,
    ) -> Result<Response<GetConfigResponse>, Status> {
        let cluster = self.ctx.cluster_config();
        let effective = crate::cluster_config::describe(&self.ctx.config(), &cluster)?;
        Ok(Response::new(GetConfigResponse {
            node_id: self.ctx.node_id.0,
            cluster: Some(cluster),
            effective,
        }))
    }

    async fn set_pd_paused(
        &self,
        req: Request<SetPdPausedRequest>,
    ) -> Result<Response<SetPdPausedResponse>, Status> {
        let forward = !req.metadata().contains_key(crate::meta::service::FORWARDED);
        crate::meta::service::set_pd_paused(&self.ctx, req.into_inner(), forward).await?;
        Ok(Response::new(SetPdPausedResponse {}))
    }
}
