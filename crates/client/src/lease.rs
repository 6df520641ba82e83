//! Leases, and the coordination recipes built on them: keepalive tasks, mutexes with
//! fencing tokens (docs/api.md, "Leases" and "Locks and elections").
//!
//! A lease lives in one partition (a hash tag `{...}`, or a key without one): only keys
//! of that partition can be attached to it, so a grant, every attachment and the
//! revoke that deletes the attached keys are each one Raft command of one shard.

use crate::proto::lease_client::LeaseClient;
use crate::proto::watch_event::Kind;
use crate::proto::{
    batch_op, BatchOp, CheckOp, CompareAndSwapRequest, LeaseGrantRequest, LeaseInfoRequest,
    LeaseInfoResponse, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, WatchEvent,
};
use crate::{Client, Error, Result, WriteResult};
use bytes::Bytes;
use ctxstore_api::keys::key_hash;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A lease: its partition (any key of it) and id, and the TTL it was granted with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// A key of the partition the lease lives in (what it was granted with).
    pub key: Bytes,
    pub id: u64,
    pub ttl: Duration,
}

/// What a [`LeaseKeeper`] knows of its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed: the lease lives at least until then (counted from before the renewal
    /// was sent, so never later than the server's deadline).
    Alive(Instant),
    /// Revoked, expired, or not renewed in time: its keys are gone or going.
    Lost,
}

/// Renews a lease in the background, every third of its TTL, until dropped or until
/// the lease is lost.
pub struct LeaseKeeper {
    lease: Lease,
    state: watch::Receiver<LeaseState>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    /// The lease kept alive.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// What the keeper knows now.
    pub fn state(&self) -> LeaseState {
        *self.state.borrow()
    }

    /// Stops renewing: the lease lives out its TTL (what a paused holder looks like).
    pub fn stop(&mut self) {
        self.task.abort();
    }

    /// Waits until the lease is lost (revoked, expired, or not renewed before its
    /// deadline), or until renewing stopped.
    pub async fn lost(&mut self) {
        // An error means the task ended, which it does only once the lease is lost.
        let _ = self.state.wait_for(|s| *s == LeaseState::Lost).await;
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `d` in whole milliseconds (saturating).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Client {
    fn lease_api(ch: crate::trace::Channel) -> LeaseClient<crate::trace::Channel> {
        LeaseClient::new(ch)
    }

    /// Grants a lease with `ttl` in the partition of `key` (e.g. `{svc/agents}`).
    pub async fn grant_lease(&self, key: impl Into<Bytes>, ttl: Duration) -> Result<Lease> {
        let req = LeaseGrantRequest {
            header: None,
            key: key.into(),
            ttl_ms: millis(ttl),
            request_id: self.new_request_id(),
        };
        let r = self
            .write_key(
                key_hash(&req.key),
                |r: &crate::proto::LeaseGrantResponse| r.version,
                |ch, header| {
                    let mut req = req.clone();
                    req.header = Some(header);
                    async move { Ok(Self::lease_api(ch).grant(req).await?.into_inner()) }
                },
            )
            .await?;
        Ok(Lease {
            key: req.key,
            id: r.id,
            ttl: Duration::from_millis(r.ttl_ms),
        })
    }

    /// Grants a lease with `ttl` in the partition of conversation `c`, to attach it
    /// with `AppendRequest::lease_id`: when the lease ends, the conversation goes with
    /// all its messages.
    pub async fn grant_conversation_lease(
        &self,
        c: &crate::proto::ConversationRef,
        ttl: Duration,
    ) -> Result<Lease> {
        ctxstore_api::context::validate_conversation(Some(c))?;
        self.grant_lease(format!("{{c/{}/{}}}", c.namespace, c.id), ttl)
            .await
    }

    /// Revokes a lease, deleting every key attached to it in the same step; returns
    /// whether it existed and how many keys went with it.
    pub async fn revoke_lease(&self, lease: &Lease) -> Result<(bool, u64)> {
        let req = LeaseRevokeRequest {
            header: None,
            key: lease.key.clone(),
            id: lease.id,
            request_id: self.new_request_id(),
        };
        let r = self
            .write_key(
                key_hash(&req.key),
                |r: &crate::proto::LeaseRevokeResponse| r.version,
                |ch, header| {
                    let mut req = req.clone();
                    req.header = Some(header);
                    async move { Ok(Self::lease_api(ch).revoke(req).await?.into_inner()) }
                },
            )
            .await?;
        Ok((r.revoked, r.keys_deleted))
    }

    /// The lease's TTL, the time its leader gives it, and its keys (None: it does not
    /// exist).
    pub async fn lease_info(&self, lease: &Lease) -> Result<Option<LeaseInfoResponse>> {
        let req = LeaseInfoRequest {
            header: None,
            key: lease.key.clone(),
            id: lease.id,
        };
        let r = self
            .read_routed(key_hash(&req.key), crate::ReadMode::Leader, |ch, header| {
                let mut req = req.clone();
                req.header = Some(header);
                async move { Ok(Self::lease_api(ch).info(req).await?.into_inner()) }
            })
            .await?;
        Ok(r.found.then_some(r))
    }

    /// Renews a lease once, over a `KeepAlive` stream to the leader of its shard:
    /// the TTL it has again, or None when it no longer exists.
    pub async fn keep_alive_once(&self, lease: &Lease) -> Result<Option<Duration>> {
        let req = LeaseKeepAliveRequest {
            header: None,
            key: lease.key.clone(),
            id: lease.id,
        };
        let ttl_ms = self
            .write_key(
                key_hash(&req.key),
                |_: &u64| 0,
                |ch, header| {
                    let mut req = req.clone();
                    req.header = Some(header);
                    async move {
                        let mut answers = Self::lease_api(ch)
                            .keep_alive(futures::stream::iter([req]))
                            .await?
                            .into_inner();
                        match answers.message().await? {
                            Some(a) => Ok(a.ttl_ms),
                            None => Err(tonic::Status::unavailable("keepalive stream ended")),
                        }
                    }
                },
            )
            .await?;
        Ok((ttl_ms != 0).then(|| Duration::from_millis(ttl_ms)))
    }

    /// Keeps `lease` alive in the background until the keeper is dropped (the lease
    /// then lives out its TTL) or the lease is lost.
    pub fn keep_alive(&self, lease: Lease) -> LeaseKeeper {
        // The grant's own time is not known here: only what the first renewal (sent
        // at once) proves counts.
        let start = Instant::now();
        let (tx, rx) = watch::channel(LeaseState::Alive(start));
        let client = self.clone();
        let kept = lease.clone();
        let task = tokio::spawn(async move {
            // The grant answered before this keeper started: the lease lives at least
            // a TTL from before that, which this does not overstate by much.
            let mut until = start + kept.ttl;
            loop {
                let sent = Instant::now();
                // A renewal that has not answered by the deadline is too late anyway.
                let left = until.saturating_duration_since(sent);
                let renewed = match tokio::time::timeout(left, client.keep_alive_once(&kept)).await
                {
                    Ok(r) => r,
                    Err(_) => break,
                };
                match renewed {
                    Ok(Some(ttl)) => {
                        until = sent + ttl;
                        tx.send_replace(LeaseState::Alive(until));
                        tokio::time::sleep(ttl / 3).await;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        if Instant::now() >= until {
                            tracing::debug!(error = %e, "lease not renewed in time");
                            break;
                        }
                        tokio::time::sleep((kept.ttl / 10).max(Duration::from_millis(10))).await;
                    }
                }
                if Instant::now() >= until {
                    break;
                }
            }
            tx.send_replace(LeaseState::Lost);
        });
        LeaseKeeper {
            lease,
            state: rx,
            task,
        }
    }

    /// Writes a key attached to `lease` (the key must be in the lease's partition);
    /// it is deleted when the lease ends.
    pub async fn put_with_lease(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        lease: &Lease,
    ) -> Result<WriteResult> {
        let req = PutRequest {
            header: None,
            key: key.into(),
            value: value.into(),
            ttl_ms: 0,
            request_id: self.new_request_id(),
            lease_id: lease.id,
        };
        self.put_request(req).await
    }

    /// Creates a key attached to `lease` only if it does not exist
    /// ([`Error::VersionMismatch`] otherwise).
    pub async fn create_with_lease(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        lease: &Lease,
    ) -> Result<WriteResult> {
        let req = CompareAndSwapRequest {
            key: key.into(),
            expected_version: 0,
            value: value.into(),
            request_id: self.new_request_id(),
            lease_id: lease.id,
            ..Default::default()
        };
        self.cas_request(req).await
    }

    /// Takes the mutex `name` (etcd's `concurrency.Mutex`): waiters queue in the order
    /// they arrive (by the version that created their key), each holding a lease of
    /// `ttl` kept alive in the background, and the first holds the lock. The guard's
    /// [`LockGuard::fence`] is a fencing token: guarded writes
    /// ([`Client::guarded_batch`]) apply only while the holder's key is still there at
    /// that version, so a holder that paused past its lease cannot write after the
    /// next one took over. Locks live under the hash tag `{lock/NAME}`: the keys a
    /// lock guards must share it.
    pub async fn lock(&self, name: &str, ttl: Duration) -> Result<LockGuard> {
        self.campaign(name, Bytes::new(), ttl).await
    }

    /// Leader election (etcd's `concurrency.Election`) on the same queue as
    /// [`Client::lock`]: waits until this candidate, with `value` (say, its address),
    /// is the first in line, that is, the leader, until its guard is released or its
    /// lease ends. [`Client::leader`] tells anyone who leads.
    pub async fn campaign(
        &self,
        name: &str,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Result<LockGuard> {
        check_tag_name("name", name)?;
        let value = value.into();
        let prefix = lock_prefix(name);
        let lease = self.grant_lease(prefix.clone(), ttl).await?;
        let mut keeper = self.keep_alive(lease.clone());
        let key = Bytes::from([prefix.as_ref(), format!("{:016x}", lease.id).as_bytes()].concat());
        let waited = async {
            let mine = self
                .create_with_lease(key.clone(), value, &lease)
                .await?
                .create_version;
            self.wait_first_in_line(&prefix, &key, mine, &mut keeper)
                .await
                .map(|()| mine)
        };
        match waited.await {
            Ok(fence) => Ok(LockGuard {
                client: self.clone(),
                key,
                fence,
                keeper,
            }),
            Err(e) => {
                // Out of the line at once rather than blocking it for a TTL.
                let _ = self.revoke_lease(&lease).await;
                Err(e)
            }
        }
    }

    /// Waits until waiter `key` (created at version `mine`) is the oldest under
    /// `prefix`, while its lease (`keeper`) lives.
    async fn wait_first_in_line(
        &self,
        prefix: &Bytes,
        key: &Bytes,
        mine: u64,
        keeper: &mut LeaseKeeper,
    ) -> Result<()> {
        let lost = || Error::FailedPrecondition("the lock's lease ended while waiting".into());
        loop {
            if keeper.state() == LeaseState::Lost {
                return Err(lost());
            }
            // Waiters ahead of this one, by the version that created their keys.
            let waiters = self.scan(prefix.clone(), Bytes::new(), MAX_WAITERS).await?;
            if waiters.more {
                return Err(Error::FailedPrecondition(format!(
                    "more than {MAX_WAITERS} waiters for one lock"
                )));
            }
            if !waiters.kvs.iter().any(|kv| kv.key == *key) {
                return Err(lost());
            }
            let before = waiters
                .kvs
                .iter()
                .filter(|kv| kv.create_version < mine)
                .max_by_key(|kv| kv.create_version);
            let Some(prev) = before else {
                return Ok(());
            };
            // Wait for the one just ahead to go (released, or its lease ended).
            let mut w = self
                .watch(prev.key.clone(), false, Some(prev.version))
                .await?;
            loop {
                let event = tokio::select! {
                    e = w.next() => e,
                    () = keeper.lost() => return Err(lost()),
                };
                match event {
                    Some(Ok(WatchEvent { kind, .. })) if kind == Kind::Delete as i32 => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e),
                    None => break,
                }
            }
        }
    }

    /// The holder of lock (or leader of election) `name` now: its key and value (None:
    /// nobody).
    pub async fn leader(&self, name: &str) -> Result<Option<crate::proto::KeyValue>> {
        check_tag_name("name", name)?;
        let waiters = self
            .scan(lock_prefix(name), Bytes::new(), MAX_WAITERS)
            .await?;
        Ok(waiters.kvs.into_iter().min_by_key(|kv| kv.create_version))
    }

    /// Registers instance `instance` of service namespace `service` (an agent pool, a
    /// model server) with `value` (its address and metadata, as the caller encodes
    /// them) under a lease of `ttl` kept alive in the background: the entry goes when
    /// the returned keeper is dropped and its TTL passes, or at once with
    /// [`Client::revoke_lease`]. Entries live under the hash tag `{svc/SERVICE}`.
    pub async fn register(
        &self,
        service: &str,
        instance: &str,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Result<LeaseKeeper> {
        check_tag_name("service", service)?;
        let lease = self.grant_lease(service_prefix(service), ttl).await?;
        let keeper = self.keep_alive(lease.clone());
        let key = [service_prefix(service).as_ref(), instance.as_bytes()].concat();
        self.put_with_lease(key, value, &lease).await?;
        Ok(keeper)
    }

    /// The registered instances of `service` (up to 10,000): key
    /// `{svc/SERVICE}/INSTANCE` and value each.
    pub async fn discover(&self, service: &str) -> Result<Vec<crate::proto::KeyValue>> {
        check_tag_name("service", service)?;
        Ok(self
            .scan(service_prefix(service), Bytes::new(), 10_000)
            .await?
            .kvs)
    }

    /// Streams registrations and departures of `service`'s instances (puts and
    /// deletes of their keys), from `from_version` or from now.
    pub async fn watch_service(
        &self,
        service: &str,
        from_version: Option<u64>,
    ) -> Result<crate::Watcher<WatchEvent>> {
        check_tag_name("service", service)?;
        self.watch(service_prefix(service), true, from_version)
            .await
    }

    /// Applies `ops` atomically only while `guard` still holds its lock: the batch
    /// checks that the holder's key is at the guard's fence. The keys must be in the
    /// lock's partition (`{lock/NAME}...`). A holder that lost the lock gets
    /// [`Error::VersionMismatch`] and nothing is written.
    pub async fn guarded_batch(&self, guard: &LockGuard, mut ops: Vec<BatchOp>) -> Result<u64> {
        ops.insert(
            0,
            BatchOp {
                op: Some(batch_op::Op::Check(CheckOp {
                    key: guard.key.clone(),
                    expected_version: guard.fence,
                })),
            },
        );
        self.batch(ops).await
    }
}

/// A held lock ([`Client::lock`]). Dropping it stops renewing its lease (the lock is
/// released when the lease expires); [`LockGuard::unlock`] releases it at once.
pub struct LockGuard {
    client: Client,
    key: Bytes,
    fence: u64,
    keeper: LeaseKeeper,
}

impl LockGuard {
    /// The fencing token: the version that created the holder's key (strictly
    /// increasing from one holder of the lock to the next).
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// The holder's key.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The lease behind the lock.
    pub fn keeper(&mut self) -> &mut LeaseKeeper {
        &mut self.keeper
    }

    /// Releases the lock (revokes its lease, which deletes the holder's key).
    pub async fn unlock(self) -> Result<()> {
        self.client
            .revoke_lease(self.keeper.lease())
            .await
            .map(drop)
    }
}

/// The most waiters one lock may have (they are read in one scan).
const MAX_WAITERS: u32 = 1_000;

/// A lock or service name goes inside a hash tag: it must not be empty or hold `}`.
fn check_tag_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('}') {
        return Err(Error::invalid(field, "must not be empty or hold `}`"));
    }
    Ok(())
}

/// Where the waiters of lock (or election) `name` are.
fn lock_prefix(name: &str) -> Bytes {
    Bytes::from(format!("{{lock/{name}}}/w/"))
}

/// Where the instances of service `service` are registered.
pub fn service_prefix(service: &str) -> Bytes {
    Bytes::from(format!("{{svc/{service}}}/"))
}
