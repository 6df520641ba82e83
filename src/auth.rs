//! Authentication and authorization (`ctxctl auth`, `proto/ctxstore/v1/auth.proto`):
//! what a change does to the replicated [`AuthStore`], bearer tokens, and the node's
//! compiled copy that answers "who is this" and "may they".
//!
//! - The store lives in the meta shard ([`apply`] runs in its state machine: pure and
//!   deterministic; the proposer runs it first on a copy so a refused change is never
//!   proposed). Every node learns new revisions through its heartbeat and installs them
//!   in its [`AuthHub`], which also keeps them in the data dir so a restarted node
//!   enforces them before it hears from the meta shard.
//! - Tokens are `ctx_<id>_<secret>`: a 64-bit public id to find the record and a
//!   256-bit secret. Only SHA-256 of the whole token is stored (a fast hash is enough
//!   for random secrets, as Redis does for ACL passwords), compared in constant time;
//!   an unknown id and a wrong secret take the same path to the same error.
//! - A permission grants `read`, `write` or both on names of one kind starting with a
//!   prefix. A scan, list or prefix watch needs a grant whose prefix is a prefix of the
//!   one asked for: a request is allowed or refused whole, never filtered.

use crate::error::{Error, Result};
use crate::proto::{
    auth_change::Op, Access, AppliedChange, AuthChange, AuthStore, Permission, ResourceKind, Role,
    TokenRecord, User,
};
use parking_lot::RwLock;
use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub use crate::proto::AuthCommand;

/// The built-in role that may do everything.
pub const ROOT_ROLE: &str = "root";

/// Longest user or role name, in bytes.
const MAX_NAME: usize = 128;

/// Longest permission prefix, in bytes.
const MAX_PREFIX: usize = 1024;

/// Most tokens one user may hold at once.
const MAX_TOKENS_PER_USER: usize = 64;

/// What every failed authentication says, whatever the reason.
const BAD_TOKEN: &str = "invalid or unknown token";

/// Makes a token: the string handed to the user once, and the record the store keeps.
pub fn new_token(now_ms: u64) -> (String, TokenRecord) {
    let mut rng = rand::rng();
    let id = format!("{:016x}", rng.next_u64());
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("ctx_{id}_{secret}");
    let record = TokenRecord {
        id,
        sha256: Sha256::digest(token.as_bytes()).to_vec().into(),
        created_ms: now_ms,
    };
    (token, record)
}

/// The public id of a well-formed token.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("ctx_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && !secret.is_empty()).then_some(id)
}

fn check_name(what: &str, name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "{what} name must be 1 to {MAX_NAME} bytes without control characters"
        ));
    }
    Ok(())
}

fn has_root(store: &AuthStore) -> bool {
    store
        .users
        .iter()
        .any(|u| u.roles.iter().any(|r| r == ROOT_ROLE))
}

fn user_mut<'a>(store: &'a mut AuthStore, name: &str) -> std::result::Result<&'a mut User, String> {
    store
        .users
        .iter_mut()
        .find(|u| u.name == name)
        .ok_or_else(|| format!("no user {name:?}"))
}

fn role_mut<'a>(store: &'a mut AuthStore, name: &str) -> std::result::Result<&'a mut Role, String> {
    if name == ROOT_ROLE {
        return Err("the role root is built in and cannot be changed".into());
    }
    store
        .roles
        .iter_mut()
        .find(|r| r.name == name)
        .ok_or_else(|| format!("no role {name:?}"))
}

fn check_permission(p: &Permission) -> std::result::Result<(), String> {
    if !matches!(
        ResourceKind::try_from(p.kind),
        Ok(ResourceKind::Kv
            | ResourceKind::Conversation
            | ResourceKind::Thread
            | ResourceKind::Model)
    ) {
        return Err(format!("unknown resource kind {}", p.kind));
    }
    if !matches!(
        Access::try_from(p.access),
        Ok(Access::Read | Access::Write | Access::Readwrite)
    ) {
        return Err(format!("unknown access {}", p.access));
    }
    if p.prefix.len() > MAX_PREFIX {
        return Err(format!("a permission prefix is at most {MAX_PREFIX} bytes"));
    }
    Ok(())
}

/// Most changes one command may carry (`AuthChangeRequest.more`).
pub const MAX_CHANGES: usize = 64;

/// The changes a command carries, in order (`change`, then `more`).
pub fn changes(cmd: &AuthCommand) -> impl Iterator<Item = &AuthChange> {
    cmd.change.iter().chain(&cmd.more)
}

/// Applies a command's changes to `store` (the meta shard's state machine), all or
/// none, bumping its revision once; `Err` says why it was refused, and then nothing
/// changed.
pub fn apply(store: &mut AuthStore, cmd: &AuthCommand) -> std::result::Result<(), String> {
    if applied_as(store, &cmd.request_id).is_some() {
        return Ok(());
    }
    let n = changes(cmd).count();
    if n > MAX_CHANGES {
        return Err(format!("at most {MAX_CHANGES} changes at once, got {n}"));
    }
    let tokens = changes(cmd)
        .filter(|c| matches!(c.op, Some(Op::CreateToken(_))))
        .count();
    if tokens > 1 {
        return Err("at most one create_token in one change".into());
    }
    if n == 0 {
        return Err("empty auth change".into());
    }
    let mut next = store.clone();
    for change in changes(cmd) {
        let op = change.op.as_ref().ok_or("empty auth change")?;
        apply_op(&mut next, op, cmd.new_token.as_ref())?;
    }
    if next.enabled && !has_root(&next) {
        return Err("this would leave no user with the role root while auth is enabled".into());
    }
    next.revision = store.revision + 1;
    if !cmd.request_id.is_empty() {
        next.applied.push(AppliedChange {
            request_id: cmd.request_id.clone(),
            revision: next.revision,
            token_id: cmd
                .new_token
                .as_ref()
                .filter(|_| tokens == 1)
                .map(|t| t.id.clone())
                .unwrap_or_default(),
        });
        let over = next.applied.len().saturating_sub(MAX_APPLIED);
        next.applied.drain(..over);
    }
    *store = next;
    Ok(())
}

/// One change, applied to `next` (the caller keeps or drops it whole).
fn apply_op(
    next: &mut AuthStore,
    op: &Op,
    new_token: Option<&TokenRecord>,
) -> std::result::Result<(), String> {
    match op {
        Op::SetEnabled(on) => {
            if *on && !has_root(next) {
                return Err("auth cannot be enabled before a user has the role root \
                            (ctxctl auth user add NAME; ctxctl auth user grant NAME root)"
                    .into());
            }
            next.enabled = *on;
        }
        Op::AddUser(name) => {
            check_name("user", name)?;
            if next.users.iter().any(|u| &u.name == name) {
                return Err(format!("user {name:?} exists"));
            }
            next.users.push(User {
                name: name.clone(),
                ..Default::default()
            });
        }
        Op::DeleteUser(name) => {
            user_mut(next, name)?;
            next.users.retain(|u| &u.name != name);
        }
        Op::GrantRole(ur) => {
            if ur.role != ROOT_ROLE && !next.roles.iter().any(|r| r.name == ur.role) {
                return Err(format!("no role {:?}", ur.role));
            }
            let user = user_mut(next, &ur.user)?;
            if !user.roles.contains(&ur.role) {
                user.roles.push(ur.role.clone());
                user.roles.sort();
            }
        }
        Op::RevokeRole(ur) => {
            let user = user_mut(next, &ur.user)?;
            if !user.roles.contains(&ur.role) {
                return Err(format!(
                    "user {:?} does not have role {:?}",
                    ur.user, ur.role
                ));
            }
            user.roles.retain(|r| r != &ur.role);
        }
        Op::AddRole(name) => {
            check_name("role", name)?;
            if name == ROOT_ROLE || next.roles.iter().any(|r| &r.name == name) {
                return Err(format!("role {name:?} exists"));
            }
            next.roles.push(Role {
                name: name.clone(),
                permissions: Vec::new(),
            });
        }
        Op::DeleteRole(name) => {
            role_mut(next, name)?;
            if let Some(u) = next.users.iter().find(|u| u.roles.contains(name)) {
                return Err(format!(
                    "role {name:?} is held by user {:?}: revoke it first",
                    u.name
                ));
            }
            next.roles.retain(|r| &r.name != name);
        }
        Op::GrantPermission(rp) => {
            let p = rp.permission.clone().ok_or("no permission given")?;
            check_permission(&p)?;
            let role = role_mut(next, &rp.role)?;
            if !role.permissions.contains(&p) {
                role.permissions.push(p);
            }
        }
        Op::RevokePermission(rp) => {
            let p = rp.permission.clone().ok_or("no permission given")?;
            let role = role_mut(next, &rp.role)?;
            let before = role.permissions.len();
            role.permissions.retain(|q| q != &p);
            if role.permissions.len() == before {
                return Err(format!("role {:?} has no such permission", rp.role));
            }
        }
        Op::CreateToken(name) => {
            let record = new_token
                .cloned()
                .filter(|r| r.id.len() == 16 && r.sha256.len() == 32)
                .ok_or("the change carries no token record")?;
            if next
                .users
                .iter()
                .flat_map(|u| &u.tokens)
                .any(|t| t.id == record.id)
            {
                return Err("token id collision; try again".into());
            }
            let user = user_mut(next, name)?;
            if user.tokens.len() >= MAX_TOKENS_PER_USER {
                return Err(format!(
                    "user {name:?} has {MAX_TOKENS_PER_USER} tokens: revoke one first"
                ));
            }
            user.tokens.push(record);
        }
        Op::RevokeToken(id) => {
            let user = next
                .users
                .iter_mut()
                .find(|u| u.tokens.iter().any(|t| &t.id == id))
                .ok_or_else(|| format!("no token with id {id:?}"))?;
            user.tokens.retain(|t| &t.id != id);
        }
    }
    Ok(())
}

/// How many changes made with a request id the store remembers.
const MAX_APPLIED: usize = 256;

/// The change made under `request_id`, if the store remembers one (a retry of it
/// applies as nothing).
pub fn applied_as<'a>(store: &'a AuthStore, request_id: &[u8]) -> Option<&'a AppliedChange> {
    if request_id.is_empty() {
        return None;
    }
    store.applied.iter().find(|a| a.request_id == request_id)
}

/// The store without token digests (for `Auth.Get`).
pub fn redacted(store: &AuthStore) -> AuthStore {
    let mut s = store.clone();
    s.applied.clear();
    for u in &mut s.users {
        for t in &mut u.tokens {
            t.sha256 = Default::default();
        }
    }
    s
}

/// One user's effective rights.
#[derive(Debug)]
pub struct Grants {
    /// The user's name.
    pub name: String,
    /// Its roles, sorted.
    pub roles: Vec<String>,
    root: bool,
    permissions: Vec<Permission>,
}

/// Who made a call, once authenticated.
#[derive(Clone, Debug)]
pub enum Principal {
    /// A cluster node (its certificate's common name is in `peer-cert-allowed-cn`).
    Peer,
    /// A user, by token (with its id) or by certificate.
    User {
        /// The user's rights when the call came in.
        grants: Arc<Grants>,
        /// The token id, when the user came with a token.
        token: Option<String>,
    },
}

impl Principal {
    /// Whether the caller may do everything (a peer, or a user with role root).
    pub fn is_root(&self) -> bool {
        match self {
            Principal::Peer => true,
            Principal::User { grants, .. } => grants.root,
        }
    }

    /// The name `WhoAmI` reports.
    pub fn name(&self) -> &str {
        match self {
            Principal::Peer => "peer",
            Principal::User { grants, .. } => &grants.name,
        }
    }

    /// Whether the caller may do `access` on the `kind` name (or every name under the
    /// prefix) `name`.
    pub fn allows(&self, kind: ResourceKind, name: &[u8], access: Access) -> bool {
        let Principal::User { grants, .. } = self else {
            return true;
        };
        if grants.root {
            return true;
        }
        let covers = |bit: i32| {
            grants.permissions.iter().any(|p| {
                p.kind == kind as i32 && p.access & bit == bit && name.starts_with(&p.prefix)
            })
        };
        let want = access as i32;
        [Access::Read as i32, Access::Write as i32]
            .into_iter()
            .filter(|bit| want & bit == *bit)
            .all(covers)
    }

    /// [`Self::allows`] as a `PermissionDenied` error naming what was asked.
    pub fn check(&self, kind: ResourceKind, name: &[u8], access: Access) -> Result<()> {
        if self.allows(kind, name, access) {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "user {:?} may not {} {} {:?}",
            self.name(),
            match access {
                Access::Read => "read",
                Access::Write => "write",
                _ => "read and write",
            },
            kind_name(kind),
            String::from_utf8_lossy(name)
        )))
    }
}

fn kind_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Kv => "kv",
        ResourceKind::Conversation => "conversation",
        ResourceKind::Thread => "thread",
        ResourceKind::Model => "model",
        ResourceKind::Unspecified => "unspecified",
    }
}

/// How a connection identified itself, for [`AuthState::authenticate`].
#[derive(Default)]
pub struct Credentials<'a> {
    /// The `authorization: Bearer` value.
    pub bearer: Option<&'a str>,
    /// The client certificate is a peer's.
    pub peer_cert: bool,
    /// The client certificate's common name (verified against the CA).
    pub cert_name: Option<String>,
}

/// A node's compiled copy of the auth store.
#[derive(Default)]
pub struct AuthState {
    store: AuthStore,
    /// Token id → (user, digest).
    tokens: HashMap<String, (String, [u8; 32])>,
    users: HashMap<String, Arc<Grants>>,
}

impl AuthState {
    /// Compiles `store`.
    pub fn new(store: AuthStore) -> Self {
        let roles: HashMap<&str, &Role> =
            store.roles.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut tokens = HashMap::new();
        let mut users = HashMap::new();
        for u in &store.users {
            for t in &u.tokens {
                if let Ok(d) = <[u8; 32]>::try_from(t.sha256.as_ref()) {
                    tokens.insert(t.id.clone(), (u.name.clone(), d));
                }
            }
            let permissions = u
                .roles
                .iter()
                .filter_map(|r| roles.get(r.as_str()))
                .flat_map(|r| r.permissions.iter().cloned())
                .collect();
            users.insert(
                u.name.clone(),
                Arc::new(Grants {
                    name: u.name.clone(),
                    roles: u.roles.clone(),
                    root: u.roles.iter().any(|r| r == ROOT_ROLE),
                    permissions,
                }),
            );
        }
        Self {
            store,
            tokens,
            users,
        }
    }

    /// Whether auth is enforced.
    pub fn enabled(&self) -> bool {
        self.store.enabled
    }

    /// The store's revision.
    pub fn revision(&self) -> u64 {
        self.store.revision
    }

    /// The store.
    pub fn store(&self) -> &AuthStore {
        &self.store
    }

    /// Who the credentials name; `Ok(None)` when auth is off. A token wins over a
    /// certificate; a peer's certificate with no token is a peer.
    pub fn authenticate(&self, creds: &Credentials<'_>) -> Result<Option<Principal>> {
        if !self.store.enabled {
            return Ok(None);
        }
        if let Some(token) = creds.bearer {
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            // An unknown id is compared against a digest no token has, so both
            // failures take the same path.
            let found = token_id(token).and_then(|id| self.tokens.get(id).map(|r| (id, r)));
            let (stored, user) = match found {
                Some((id, (user, d))) => (*d, Some((id, user))),
                None => ([0u8; 32], None),
            };
            let equal: bool = digest.ct_eq(&stored).into();
            return match user {
                Some((id, user)) if equal => Ok(Some(Principal::User {
                    grants: self.grants(user)?,
                    token: Some(id.to_string()),
                })),
                _ => Err(Error::Unauthenticated(BAD_TOKEN.into())),
            };
        }
        if creds.peer_cert {
            return Ok(Some(Principal::Peer));
        }
        if let Some(name) = &creds.cert_name {
            return match self.users.get(name) {
                Some(g) => Ok(Some(Principal::User {
                    grants: g.clone(),
                    token: None,
                })),
                None => Err(Error::Unauthenticated(format!(
                    "the client certificate's name {name:?} is not a user"
                ))),
            };
        }
        Err(Error::Unauthenticated(
            "auth is enabled: send `authorization: Bearer <token>` or a client certificate \
             naming a user"
                .into(),
        ))
    }

    fn grants(&self, user: &str) -> Result<Arc<Grants>> {
        self.users
            .get(user)
            .cloned()
            .ok_or_else(|| Error::Unauthenticated(BAD_TOKEN.into()))
    }

    /// `principal` as this (newer) state sees it: `None` when its user or token is
    /// gone, or auth was turned off (then `Some(None)` is not possible: it is allowed).
    pub fn refresh(&self, principal: &Principal) -> Option<Principal> {
        match principal {
            Principal::Peer => Some(Principal::Peer),
            Principal::User { grants, token } => {
                if let Some(id) = token {
                    if !self.tokens.contains_key(id) {
                        return None;
                    }
                }
                Some(Principal::User {
                    grants: self.users.get(&grants.name)?.clone(),
                    token: token.clone(),
                })
            }
        }
    }
}

/// The node's auth state: the compiled store, kept in the data dir, with a signal for
/// streams that must re-check their caller when it changes.
pub struct AuthHub {
    state: RwLock<Arc<AuthState>>,
    /// Held while a newer state is written and swapped in (the heartbeat and a meta
    /// replica's apply may both bring one; they must not share the temporary file).
    installing: parking_lot::Mutex<()>,
    file: Option<PathBuf>,
    revision: tokio::sync::watch::Sender<u64>,
    /// The revision last written to `file` (with no file: the one in effect).
    kept: std::sync::atomic::AtomicU64,
    /// Whether the state in effect is the cluster's: read from `file`, or learned
    /// from the meta leader or at the bootstrap of a new cluster. Until then the
    /// node does not know whether auth is on, and serves no client (see
    /// [`AuthHub::learned`]).
    learned: std::sync::atomic::AtomicBool,
}

impl AuthHub {
    /// The state kept in `file` (if it exists); else auth off, not yet learned (with
    /// no file at all: auth off, learned).
    pub fn load(file: Option<PathBuf>) -> Result<Self> {
        let (store, learned) = match &file {
            Some(f) => match std::fs::read(f) {
                Ok(bytes) => {
                    let store = AuthStore::decode(bytes.as_slice()).map_err(|e| {
                        Error::Storage(format!("corrupt auth state {}: {e}", f.display()))
                    })?;
                    (store, true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (AuthStore::default(), false),
                Err(e) => return Err(Error::Storage(format!("cannot read {}: {e}", f.display()))),
            },
            None => (AuthStore::default(), true),
        };
        let (revision, _) = tokio::sync::watch::channel(store.revision);
        Ok(Self {
            kept: store.revision.into(),
            state: RwLock::new(Arc::new(AuthState::new(store))),
            installing: parking_lot::Mutex::new(()),
            file,
            revision,
            learned: learned.into(),
        })
    }

    /// Whether the node knows the cluster's auth state: its data dir kept one, or
    /// the meta leader told it, or it bootstrapped a new cluster. A data dir that lost
    /// its copy, or a node joining a cluster, does not know whether auth is on until
    /// then, and must not serve as if it were off.
    pub fn learned(&self) -> bool {
        self.learned.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records the cluster's auth state as learned: `store`, the meta leader's (None:
    /// auth never set up, so off), or the initial state of a new cluster. The state in
    /// effect is written to the data dir even at revision 0, so that a restart knows
    /// it (a failed write is logged; the next start learns it again).
    pub fn learn(&self, store: Option<&AuthStore>) {
        if let Some(store) = store {
            self.install(store);
        }
        if self.learned() {
            return;
        }
        let kept = {
            let _one_at_a_time = self.installing.lock();
            self.keep(&self.current())
        };
        tracing::info!(
            revision = self.current().revision(),
            kept,
            "learned the cluster's auth state"
        );
        self.learned
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Writes `state` to the data dir (atomically: a temporary file renamed); whether
    /// it is there. A failure is logged.
    fn keep(&self, state: &AuthState) -> bool {
        let Some(f) = &self.file else {
            return true;
        };
        let tmp = f.with_extension("tmp");
        let write = std::fs::write(&tmp, state.store().encode_to_vec())
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, f));
        if let Err(e) = write {
            tracing::error!(error = %e, file = %f.display(), "cannot keep the auth state");
            return false;
        }
        true
    }

    /// The state in effect.
    pub fn current(&self) -> Arc<AuthState> {
        self.state.read().clone()
    }

    /// The revision this node reports as in effect: the newest it has both enforced
    /// and written to its data dir, so that a restart cannot take it back to an older
    /// one. A change's fence waits for it.
    pub fn kept_revision(&self) -> u64 {
        self.kept.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether [`AuthHub::install`] has anything to do with `store`.
    pub fn needs(&self, store: &AuthStore) -> bool {
        let current = self.current().revision();
        store.revision > current || self.kept_revision() < current
    }

    /// Enforces `store` if it is newer than the one in effect, then writes the state
    /// in effect to the data dir if it is not there yet (a node that restarts enforces
    /// what it last kept). A failed write is logged, and tried again at the next
    /// install: until it succeeds the node keeps reporting the older revision.
    pub fn install(&self, store: &AuthStore) {
        if !self.needs(store) {
            return;
        }
        let _one_at_a_time = self.installing.lock();
        if store.revision > self.current().revision() {
            *self.state.write() = Arc::new(AuthState::new(store.clone()));
            self.revision.send_replace(store.revision);
            tracing::info!(
                revision = store.revision,
                enabled = store.enabled,
                "auth state installed"
            );
        }
        let current = self.current();
        if self.kept_revision() >= current.revision() {
            return;
        }
        if !self.keep(&current) {
            return;
        }
        self.kept
            .store(current.revision(), std::sync::atomic::Ordering::Release);
    }

    /// Changes whenever a newer state is installed.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{RolePermission, UserRole};

    fn change(op: Op) -> AuthCommand {
        AuthCommand {
            change: Some(AuthChange { op: Some(op) }),
            ..Default::default()
        }
    }

    fn perm(kind: ResourceKind, prefix: &str, access: Access) -> Permission {
        Permission {
            kind: kind as i32,
            prefix: prefix.as_bytes().to_vec().into(),
            access: access as i32,
        }
    }

    /// Users root and a (role tenant-a: readwrite conversations "a/", read kv "a/"),
    /// a token for each, auth on.
    fn store() -> (AuthStore, String, String) {
        let mut s = AuthStore::default();
        for op in [
            Op::AddUser("root".into()),
            Op::GrantRole(UserRole {
                user: "root".into(),
                role: ROOT_ROLE.into(),
            }),
            Op::AddRole("tenant-a".into()),
            Op::GrantPermission(RolePermission {
                role: "tenant-a".into(),
                permission: Some(perm(ResourceKind::Conversation, "a/", Access::Readwrite)),
            }),
            Op::GrantPermission(RolePermission {
                role: "tenant-a".into(),
                permission: Some(perm(ResourceKind::Kv, "a/", Access::Read)),
            }),
            Op::AddUser("a".into()),
            Op::GrantRole(UserRole {
                user: "a".into(),
                role: "tenant-a".into(),
            }),
            Op::SetEnabled(true),
        ] {
            apply(&mut s, &change(op)).expect("applies");
        }
        let mut tokens = Vec::new();
        for user in ["root", "a"] {
            let (token, record) = new_token(1);
            let mut c = change(Op::CreateToken(user.into()));
            c.new_token = Some(record);
            apply(&mut s, &c).expect("token");
            tokens.push(token);
        }
        let a = tokens.pop().expect("a");
        let root = tokens.pop().expect("root");
        (s, root, a)
    }

    fn bearer(token: &str) -> Credentials<'_> {
        Credentials {
            bearer: Some(token),
            ..Default::default()
        }
    }

    #[test]
    fn a_user_may_do_what_its_roles_grant_and_nothing_else() {
        let (s, root, a) = store();
        let state = AuthState::new(s);
        let a = state.authenticate(&bearer(&a)).expect("ok").expect("on");
        assert!(a.allows(ResourceKind::Conversation, b"a/c1", Access::Readwrite));
        assert!(!a.allows(ResourceKind::Conversation, b"b/c1", Access::Read));
        assert!(
            !a.allows(ResourceKind::Conversation, b"a", Access::Read),
            "a scan wider than the grant"
        );
        assert!(a.allows(ResourceKind::Kv, b"a/x", Access::Read));
        assert!(!a.allows(ResourceKind::Kv, b"a/x", Access::Write));
        assert!(!a.allows(ResourceKind::Kv, b"", Access::Read));
        assert!(!a.allows(ResourceKind::Thread, b"a/t", Access::Read));
        assert!(!a.is_root());
        let root = state.authenticate(&bearer(&root)).expect("ok").expect("on");
        assert!(root.is_root() && root.allows(ResourceKind::Model, b"", Access::Readwrite));
    }

    /// A change retried under its request id applies once; the store remembers the
    /// last MAX_APPLIED ids.
    #[test]
    fn a_retried_change_applies_once() {
        let (mut s, _, _) = store();
        let mut add = change(Op::AddUser("b".into()));
        add.request_id = b"req-1".to_vec().into();
        apply(&mut s, &add).expect("first");
        let after = s.clone();
        apply(&mut s, &add).expect("a retry is no error");
        assert_eq!(s, after, "and changes nothing");
        assert_eq!(
            applied_as(&s, b"req-1").map(|a| a.revision),
            Some(s.revision)
        );
        let (_, record) = new_token(1);
        let mut token = change(Op::CreateToken("b".into()));
        token.request_id = b"req-2".to_vec().into();
        token.new_token = Some(record.clone());
        apply(&mut s, &token).expect("token");
        apply(&mut s, &token).expect("retry");
        assert_eq!(
            applied_as(&s, b"req-2").map(|a| a.token_id.as_str()),
            Some(record.id.as_str())
        );
        assert_eq!(
            s.users
                .iter()
                .find(|u| u.name == "b")
                .map(|u| u.tokens.len()),
            Some(1)
        );
        assert!(redacted(&s).applied.is_empty());
        for i in 0..MAX_APPLIED {
            let mut c = change(Op::AddRole(format!("r{i}")));
            c.request_id = format!("bulk-{i}").into_bytes().into();
            apply(&mut s, &c).expect("role");
        }
        assert_eq!(s.applied.len(), MAX_APPLIED);
        assert!(
            applied_as(&s, b"req-1").is_none(),
            "the oldest are forgotten"
        );
    }

    /// A state that could not be written is enforced but not reported as kept, and
    /// is written at the next install; a restart loads what was kept.
    #[test]
    fn a_state_is_reported_only_once_kept_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("not-yet");
        let file = sub.join("auth.pb");
        let hub = AuthHub::load(Some(file.clone())).expect("load");
        let (s, _, _) = store();
        hub.install(&s);
        assert_eq!(hub.current().revision(), s.revision, "enforced at once");
        assert!(
            s.revision > 0 && hub.kept_revision() == 0,
            "not kept: no directory"
        );
        std::fs::create_dir(&sub).expect("mkdir");
        hub.install(&s);
        assert_eq!(hub.kept_revision(), s.revision);
        assert!(!hub.needs(&s));
        let again = AuthHub::load(Some(file)).expect("reload");
        assert_eq!(again.current().store(), &s);
        assert_eq!(again.kept_revision(), s.revision);
    }

    #[test]
    fn an_unknown_token_and_a_wrong_secret_get_the_same_error() {
        let (s, _, a) = store();
        let state = AuthState::new(s);
        let wrong_secret = other_last_digit(&a);
        let unknown_id = format!("ctx_{}_{}", "0".repeat(16), &a[21..]);
        let e1 = state
            .authenticate(&bearer(&wrong_secret))
            .expect_err("refused");
        let e2 = state
            .authenticate(&bearer(&unknown_id))
            .expect_err("refused");
        let e3 = state.authenticate(&bearer("garbage")).expect_err("refused");
        assert_eq!(e1.to_string(), e2.to_string());
        assert_eq!(e1.to_string(), e3.to_string());
        assert!(matches!(e1, Error::Unauthenticated(_)));
        assert!(matches!(
            state.authenticate(&Credentials::default()),
            Err(Error::Unauthenticated(_))
        ));
    }

    #[test]
    fn refused_changes_change_nothing() {
        let (mut s, _, a) = store();
        let before = s.clone();
        for op in [
            Op::AddUser("a".into()),
            Op::DeleteUser("root".into()),
            Op::DeleteRole("tenant-a".into()),
            Op::AddRole(ROOT_ROLE.into()),
            Op::GrantRole(UserRole {
                user: "a".into(),
                role: "nope".into(),
            }),
            Op::AddUser(String::new()),
            Op::RevokeToken("ffffffffffffffff".into()),
            Op::CreateToken("a".into()),
            Op::GrantPermission(RolePermission {
                role: ROOT_ROLE.into(),
                permission: Some(perm(ResourceKind::Kv, "", Access::Read)),
            }),
        ] {
            assert!(
                apply(&mut s, &change(op.clone())).is_err(),
                "{op:?} was refused"
            );
            assert_eq!(s, before);
        }
        let mut off = AuthStore::default();
        assert!(apply(&mut off, &change(Op::SetEnabled(true))).is_err());
        assert_eq!(off, AuthStore::default());
        // Revoking the token: it no longer authenticates, and a principal holding it
        // is gone on refresh.
        let state = AuthState::new(s.clone());
        let p = state.authenticate(&bearer(&a)).expect("ok").expect("on");
        let id = token_id(&a).expect("id").to_string();
        apply(&mut s, &change(Op::RevokeToken(id))).expect("revoked");
        assert_eq!(s.revision, before.revision + 1);
        let state = AuthState::new(s);
        assert!(state.authenticate(&bearer(&a)).is_err());
        assert!(state.refresh(&p).is_none());
    }

    /// `token` with its last hex digit changed: the right id with a wrong secret.
    fn other_last_digit(token: &str) -> String {
        let (head, last) = token.split_at(token.len() - 1);
        format!("{head}{}", if last == "0" { "1" } else { "0" })
    }
}
