//! Authentication and authorization on a mutual-TLS cluster: auth cannot be turned on
//! without TLS or a root user; once on, calls without credentials or with a bad token
//! are refused alike; a tenant's token reaches its own kv keys, conversations,
//! threads and models and nothing of another tenant's (refused whole, whether the
//! target exists or not); administration needs root; a revoked token is refused by
//! every node as soon as the revoke returns, and a watch it opened ends; the auth
//! state survives a restart of the whole cluster; a node that lost its copy of it
//! serves no one until the meta leader tells it again.

mod common;

use common::*;
use ctxstore::config::{ClientCertAuth, SecurityConfig};
use ctxstore::pki::DevPki;
use ctxstore::{Error, NodeConfig};
use ctxstore_client::proto::{
    auth_change::Op, AuthChange, BatchOp, ChannelBlob, ChatMessage, Checkpoint, ConversationRef,
    GetCheckpointRequest, Model, PutCheckpointRequest, ReadRequest, ThreadRef, UserRole,
};
use ctxstore_client::{Client, ClientOptions, ClientTls};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn client(addrs: &[String], tls: Option<ClientTls>, token: Option<&str>) -> Client {
    Client::connect_with(
        addrs,
        ClientOptions {
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_millis(500),
            tls,
            token: token.map(str::to_string),
            ..Default::default()
        },
    )
    .await
    .expect("connect is lazy")
}

async fn change(c: &Client, op: Op) -> ctxstore::Result<u64> {
    let r = c.auth_change(AuthChange { op: Some(op) }).await?;
    assert!(r.nodes_behind.is_empty(), "every up node confirmed: {r:?}");
    Ok(r.revision)
}

/// User root with the role root.
async fn add_root(c: &Client) {
    change(c, Op::AddUser("root".into()))
        .await
        .expect("root user");
    change(
        c,
        Op::GrantRole(UserRole {
            user: "root".into(),
            role: "root".into(),
        }),
    )
    .await
    .expect("root role");
}

async fn token_for(c: &Client, user: &str) -> String {
    c.auth_change(AuthChange {
        op: Some(Op::CreateToken(user.into())),
    })
    .await
    .expect("token")
    .token
}

/// Tenant `name` (role, user, grants on `name/` of every kind) and its token, made
/// as `ctxctl auth tenant add` makes it.
async fn tenant(c: &Client, name: &str) -> String {
    let r = c.add_tenant(name).await.expect("tenant");
    assert!(r.nodes_behind.is_empty(), "every up node confirmed: {r:?}");
    r.token
}

fn secure(cfg: &mut NodeConfig, pki: &DevPki) {
    cfg.security = SecurityConfig {
        client_cert_auth: ClientCertAuth::Optional,
        ..pki.node_security()
    };
}

struct Setup {
    _dir: tempfile::TempDir,
    pki: DevPki,
    cluster: TestCluster,
    root: String,
    a: String,
}

/// A 3-node mutual-TLS cluster with users root, a and b (tenants), auth on.
async fn auth_cluster() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::write(dir.path()).expect("pki");
    let p = pki.clone();
    let cluster = TestCluster::start_with(3, move |cfg| secure(cfg, &p)).await;
    let addrs = cluster.addrs();
    let anyone = client(&addrs, Some(pki.client()), None).await;
    add_root(&anyone).await;
    let root = token_for(&anyone, "root").await;
    let a = tenant(&anyone, "a").await;
    tenant(&anyone, "b").await;
    change(&anyone, Op::SetEnabled(true)).await.expect("enable");
    Setup {
        _dir: dir,
        pki,
        cluster,
        root,
        a,
    }
}

fn conv(ns: &str, id: &str) -> ConversationRef {
    ConversationRef {
        namespace: ns.into(),
        id: id.into(),
    }
}

fn thread(t: &str) -> ThreadRef {
    thread_in("", t)
}

fn thread_in(namespace: &str, t: &str) -> ThreadRef {
    ThreadRef {
        thread: t.into(),
        ns: String::new(),
        namespace: namespace.into(),
    }
}

async fn append(c: &Client, conversation: ConversationRef) -> ctxstore::Result<()> {
    c.append(ctxstore_client::proto::AppendRequest {
        conversation: Some(conversation),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "hello".into(),
            ..Default::default()
        }],
        ..Default::default()
    })
    .await
    .map(|_| ())
}

async fn put_checkpoint(c: &Client, t: &str) -> ctxstore::Result<u64> {
    put_checkpoint_in(c, thread(t), "0001").await
}

async fn put_checkpoint_in(c: &Client, t: ThreadRef, id: &str) -> ctxstore::Result<u64> {
    c.put_checkpoint(PutCheckpointRequest {
        thread: Some(t),
        checkpoint: Some(Checkpoint {
            checkpoint_id: id.into(),
            channel_versions: [("x".to_string(), "1".to_string())].into(),
            ..Default::default()
        }),
        blobs: vec![ChannelBlob {
            channel: "x".into(),
            version: "1".into(),
            value: b"state".to_vec().into(),
        }],
        ..Default::default()
    })
    .await
}

fn put_op(key: &str) -> BatchOp {
    BatchOp {
        op: Some(ctxstore_client::proto::batch_op::Op::Put(
            ctxstore_client::proto::PutOp {
                key: key.as_bytes().to_vec().into(),
                value: b"v".to_vec().into(),
                ttl_ms: 0,
                lease_id: 0,
            },
        )),
    }
}

fn model(name: &str) -> Model {
    Model {
        name: name.into(),
        provider: "acme".into(),
        context_window: 1000,
        ..Default::default()
    }
}

#[track_caller]
fn denied<T: std::fmt::Debug>(what: &str, r: ctxstore::Result<T>) {
    match r {
        Err(Error::PermissionDenied(_)) => {}
        other => panic!("{what}: expected PERMISSION_DENIED, got {other:?}"),
    }
}

#[track_caller]
fn unauthenticated<T: std::fmt::Debug>(what: &str, r: ctxstore::Result<T>) -> String {
    match r {
        Err(Error::Unauthenticated(m)) => m,
        other => panic!("{what}: expected UNAUTHENTICATED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_needs_tls_and_a_root_user() {
    // Plaintext: refused, even with a root user.
    let cluster = TestCluster::start(3).await;
    let c = cluster.client().await;
    add_root(&c).await;
    let e = change(&c, Op::SetEnabled(true)).await.expect_err("no TLS");
    assert!(
        matches!(&e, Error::FailedPrecondition(m) if m.contains("TLS")),
        "{e:?}"
    );
    assert!(!c.who_am_i().await.expect("whoami").auth_enabled);
    // Refused changes change nothing: a duplicate user, an unknown role.
    let before = c.auth_get().await.expect("get");
    change(&c, Op::AddUser("root".into()))
        .await
        .expect_err("duplicate");
    change(
        &c,
        Op::GrantRole(UserRole {
            user: "root".into(),
            role: "nope".into(),
        }),
    )
    .await
    .expect_err("unknown role");
    assert_eq!(c.auth_get().await.expect("get"), before);
    // `Auth.Get` lists a token but never its digest.
    token_for(&c, "root").await;
    let tokens: Vec<_> = (c.auth_get().await.expect("get").users.into_iter())
        .flat_map(|u| u.tokens)
        .collect();
    assert_eq!(tokens.len(), 1);
    assert!(tokens
        .iter()
        .all(|t| t.sha256.is_empty() && !t.id.is_empty()));
    cluster.shutdown().await;

    // TLS but no root user: refused.
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::write(dir.path()).expect("pki");
    let p = pki.clone();
    let cluster = TestCluster::start_with(3, move |cfg| secure(cfg, &p)).await;
    let c = client(&cluster.addrs(), Some(pki.client()), None).await;
    change(&c, Op::AddUser("alice".into())).await.expect("user");
    let e = change(&c, Op::SetEnabled(true))
        .await
        .expect_err("no root user");
    assert!(
        matches!(&e, Error::FailedPrecondition(m) if m.contains("root")),
        "{e:?}"
    );
    c.put("still-open", "v").await.expect("auth is still off");
    cluster.shutdown().await;

    // TLS everywhere, but node 3 checks no peer certificate names: refused, whichever
    // node leads the meta shard (once every node has reported to it).
    let p = pki.clone();
    let cluster = TestCluster::start_with(3, move |cfg| {
        secure(cfg, &p);
        if cfg.node_id == 3 {
            cfg.security.peer_cert_allowed_cn.clear();
        }
    })
    .await;
    let c = client(&cluster.addrs(), Some(pki.client()), None).await;
    add_root(&c).await;
    let refusal = wait_for("enabling to be refused for node 3", WAIT, || async {
        match change(&c, Op::SetEnabled(true)).await {
            Err(Error::FailedPrecondition(m)) if m.contains("not reported") => None,
            Err(Error::FailedPrecondition(m)) => Some(m),
            other => panic!("expected a refusal, got {other:?}"),
        }
    })
    .await;
    assert!(
        refusal.contains("node 3") || refusal.contains("peer certificates"),
        "{refusal}"
    );
    assert!(!c.who_am_i().await.expect("whoami").auth_enabled);
    cluster.shutdown().await;
}

/// A change sent again under its request id (a retry after a lost answer) applies
/// once and answers as the first did; `create_token` answers the same token from
/// the same meta leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_auth_change_applies_once() {
    use ctxstore_client::proto::{auth_client::AuthClient, AuthChangeRequest};
    let cluster = TestCluster::start_with(3, |_| {}).await;
    cluster.wait_all_leaders().await;
    // Any node: it forwards to the meta leader, which makes the token.
    let mut raw = AuthClient::connect(format!("http://{}", cluster.addrs()[0]))
        .await
        .expect("connect");
    let send = |op: Op, id: &'static [u8]| AuthChangeRequest {
        change: Some(AuthChange { op: Some(op) }),
        request_id: id.into(),
        ..Default::default()
    };
    let first = raw
        .change(send(Op::AddUser("bob".into()), b"add-bob"))
        .await
        .expect("add")
        .into_inner();
    let again = raw
        .change(send(Op::AddUser("bob".into()), b"add-bob"))
        .await
        .expect("a retry is not 'exists'")
        .into_inner();
    assert_eq!(again.revision, first.revision);
    let e = raw
        .change(send(Op::AddUser("bob".into()), b"another"))
        .await
        .expect_err("a new request for the same user");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let t1 = raw
        .change(send(Op::CreateToken("bob".into()), b"token-bob"))
        .await
        .expect("token")
        .into_inner();
    let t2 = raw
        .change(send(Op::CreateToken("bob".into()), b"token-bob"))
        .await
        .expect("retried token")
        .into_inner();
    assert!(!t1.token.is_empty());
    assert_eq!((t2.token, t2.revision), (t1.token, t1.revision));
    let c = cluster.client().await;
    let bob = c.auth_get().await.expect("get");
    let bob = bob.users.iter().find(|u| u.name == "bob").expect("bob");
    assert_eq!(bob.tokens.len(), 1, "one token, not two");
    // Several changes apply as one: a refused last change leaves nothing of the rest.
    let before = c.auth_get().await.expect("get");
    let e = c
        .auth_changes(vec![
            AuthChange {
                op: Some(Op::AddRole("carol".into())),
            },
            AuthChange {
                op: Some(Op::AddUser("carol".into())),
            },
            AuthChange {
                op: Some(Op::GrantRole(UserRole {
                    user: "carol".into(),
                    role: "nope".into(),
                })),
            },
        ])
        .await
        .expect_err("an unknown role");
    assert!(matches!(e, Error::FailedPrecondition(_)), "{e:?}");
    assert_eq!(
        c.auth_get().await.expect("get"),
        before,
        "nothing of it applied"
    );
    let two_tokens = vec![
        AuthChange {
            op: Some(Op::CreateToken("bob".into())),
        };
        2
    ];
    c.auth_changes(two_tokens)
        .await
        .expect_err("one create_token at most");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_see_only_their_own_data() {
    let s = auth_cluster().await;
    let addrs = s.cluster.addrs();
    let tls = || Some(s.pki.client());
    let root = client(&addrs, tls(), Some(&s.root)).await;
    let a = client(&addrs, tls(), Some(&s.a)).await;

    // No credentials (a client certificate that names no user, or none at all) and
    // bad tokens: refused alike.
    let cert_only = client(&addrs, tls(), None).await;
    unauthenticated(
        "certificate naming no user",
        cert_only.put("a/x", "v").await,
    );
    let ca_only = client(&addrs, Some(ClientTls::new(&s.pki.ca)), None).await;
    unauthenticated("no credentials", ca_only.get("a/x").await);
    // Once a user of the certificate's name exists, the certificate alone is that
    // user (with its roles, here tenant a's).
    change(&root, Op::AddUser("ctxstore-client".into()))
        .await
        .expect("user");
    change(
        &root,
        Op::GrantRole(UserRole {
            user: "ctxstore-client".into(),
            role: "a".into(),
        }),
    )
    .await
    .expect("role");
    let by_cert = client(&addrs, tls(), None).await;
    assert_eq!(
        by_cert.who_am_i().await.expect("whoami").method,
        "certificate"
    );
    by_cert
        .put("a/by-cert", "v")
        .await
        .expect("tenant a by certificate");
    denied("b by certificate", by_cert.get("b/secret").await);
    let wrong_secret = other_last_digit(&s.a);
    let unknown_id = format!("ctx_{}{}", "0".repeat(16), &s.a[20..]);
    let m1 = unauthenticated(
        "wrong secret",
        client(&addrs, tls(), Some(&wrong_secret))
            .await
            .get("a/x")
            .await,
    );
    let m2 = unauthenticated(
        "unknown id",
        client(&addrs, tls(), Some(&unknown_id))
            .await
            .get("a/x")
            .await,
    );
    assert_eq!(m1, m2, "an unknown token and a wrong secret look the same");

    // Health checks stay open.
    let ch = ctxstore_api::tls::endpoint(&addrs[0], Some(&ClientTls::new(&s.pki.ca)))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without credentials");

    // Root writes tenant b's data.
    root.put("b/secret", "b's").await.expect("root put");
    append(&root, conv("b", "c1")).await.expect("root append");
    put_checkpoint(&root, "b/t1")
        .await
        .expect("root checkpoint");
    root.put_model(model("b/m"), None)
        .await
        .expect("root model");

    // Tenant a: its own data works.
    assert_eq!(a.who_am_i().await.expect("whoami").name, "a");
    a.put("a/x", "mine").await.expect("own key");
    assert!(a.get("a/x").await.expect("own get").is_some());
    assert_eq!(
        a.scan("a/", "", 10).await.expect("own scan").kvs.len(),
        2,
        "a/x and a/by-cert"
    );
    append(&a, conv("a", "c1")).await.expect("own conversation");
    a.list_conversations("a", "", 10).await.expect("own list");
    put_checkpoint(&a, "a/t1").await.expect("own thread");
    a.put_model(model("a/m"), None).await.expect("own model");

    // Tenant b's: refused whole, whether the target exists or not.
    denied("get b/secret", a.get("b/secret").await);
    denied("get b/missing", a.get("b/missing").await);
    denied("put b/x", a.put("b/x", "v").await);
    denied("delete b/secret", a.delete("b/secret").await);
    denied("scan everything", a.scan("", "", 10).await);
    denied("scan b/", a.scan("b/", "", 10).await);
    denied(
        "batch with one foreign op",
        // One hash tag: one shard, so only auth can refuse it.
        a.batch(vec![put_op("a/{t}batch"), put_op("b/{t}batch")])
            .await,
    );
    assert!(
        root.get("a/{t}batch").await.expect("get").is_none(),
        "a refused batch wrote nothing"
    );
    denied(
        "read b's conversation",
        a.read(ReadRequest {
            conversation: Some(conv("b", "c1")),
            ..Default::default()
        })
        .await,
    );
    denied("append to b's", append(&a, conv("b", "c1")).await);
    denied(
        "get b's conversation",
        a.conversation(conv("b", "c1")).await,
    );
    denied("list b's", a.list_conversations("b", "", 10).await);
    denied(
        "watch b's conversation",
        a.watch_conversation(conv("b", "c1"), None)
            .await
            .map(|_| ()),
    );
    denied(
        "b's checkpoint",
        a.get_checkpoint(GetCheckpointRequest {
            thread: Some(thread("b/t1")),
            ..Default::default()
        })
        .await,
    );
    denied(
        "a checkpoint into b's thread",
        put_checkpoint(&a, "b/t2").await,
    );
    denied("b's model", a.get_model("b/m", true).await);
    denied("every model", a.list_models(true).await);
    denied("watch every model", a.watch_models(None).await.map(|_| ()));
    // Tenant namespaces: the same thread id and model name in namespaces a and b
    // are different records, and a reaches only its own.
    put_checkpoint_in(&a, thread_in("a", "t9"), "from-a")
        .await
        .expect("a's namespaced thread");
    put_checkpoint_in(&root, thread_in("b", "t9"), "from-b")
        .await
        .expect("b's namespaced thread");
    let latest = |t: ThreadRef| GetCheckpointRequest {
        thread: Some(t),
        ..Default::default()
    };
    let mine = a
        .get_checkpoint(latest(thread_in("a", "t9")))
        .await
        .expect("own thread")
        .expect("there");
    let t = mine.thread.clone().expect("thread");
    assert_eq!((t.namespace.as_str(), t.thread.as_str()), ("a", "t9"));
    assert_eq!(
        mine.checkpoint.expect("checkpoint").checkpoint_id,
        "from-a",
        "namespace b's thread t9 is another thread"
    );
    denied(
        "b's namespaced thread",
        a.get_checkpoint(latest(thread_in("b", "t9"))).await,
    );
    denied(
        "a checkpoint into b's namespace",
        put_checkpoint_in(&a, thread_in("b", "t9"), "x").await,
    );
    denied(
        "delete b's namespaced thread",
        a.delete_thread_in("b", "t9").await,
    );
    // A copy needs read on the source and write on the target; the nodes then write
    // the target as peers, so the check is the caller's, made first.
    denied(
        "copy b's thread into a's namespace",
        a.copy_thread_in("b", "t9", "a", "stolen").await,
    );
    denied(
        "copy a's thread into b's namespace",
        a.copy_thread_in("a", "t9", "b", "planted").await,
    );
    let copied = a
        .copy_thread_in("a", "t9", "a", "t9-copy")
        .await
        .expect("a copy within a's namespace");
    assert_eq!(copied.copied_checkpoints, 1);
    assert!(root
        .checkpoint_namespaces("a", "stolen")
        .await
        .expect("list")
        .is_empty());
    assert!(root
        .checkpoint_namespaces("b", "planted")
        .await
        .expect("list")
        .is_empty());
    denied(
        "delete runs on every thread",
        a.delete_for_runs(&["r".to_string()]).await,
    );
    a.put_model_in("a", model("m"), None)
        .await
        .expect("own registry");
    root.put_model_in("b", model("m"), None)
        .await
        .expect("b's registry");
    let own = a.list_models_in("a", true).await.expect("own registry");
    assert_eq!(own.len(), 1, "a's registry holds only a's model: {own:?}");
    assert!(a.get_model_in("a", "m", true).await.expect("get").is_some());
    denied("b's registry", a.list_models_in("b", true).await);
    denied("b's model", a.get_model_in("b", "m", true).await);
    denied(
        "watch b's registry",
        a.watch_models_in("b", None).await.map(|_| ()),
    );
    assert_eq!(root.list_models_in("b", true).await.expect("b").len(), 1);
    assert!(
        root.list_models(true)
            .await
            .expect("default registry")
            .iter()
            .all(|m| m.name != "m"),
        "namespaced models are not in the default registry"
    );

    // Administration needs root.
    denied("config", a.node_config(&addrs[0]).await);
    denied(
        "auth change",
        a.auth_change(AuthChange {
            op: Some(Op::AddUser("mallory".into())),
        })
        .await,
    );
    denied("auth list", a.auth_get().await);
    root.node_config(&addrs[0]).await.expect("root may");
    // Nothing of b's changed.
    let kv = root.get("b/secret").await.expect("get").expect("there");
    assert_eq!(&kv.value[..], b"b's");
    assert!(root.get("b/x").await.expect("get").is_none());
    s.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_token_is_refused_everywhere_and_its_watch_ends() {
    let mut s = auth_cluster().await;
    let addrs = s.cluster.addrs();
    let tls = || Some(s.pki.client());
    let root = client(&addrs, tls(), Some(&s.root)).await;
    let a = client(&addrs, tls(), Some(&s.a)).await;
    append(&a, conv("a", "c1")).await.expect("append");
    let mut watch = a
        .watch_conversation(conv("a", "c1"), None)
        .await
        .expect("watch");
    append(&a, conv("a", "c1")).await.expect("append");
    tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("an event")
        .expect("open")
        .expect("ok");

    // The auth state survives a restart of every node.
    s.cluster.restart_all().await;
    let a = client(&addrs, tls(), Some(&s.a)).await;
    wait_for("tenant a served after the restart", WAIT, || async {
        a.put("a/after-restart", "v").await.ok()
    })
    .await;
    for (i, addr) in addrs.iter().enumerate() {
        let one = client(std::slice::from_ref(addr), tls(), None).await;
        unauthenticated(
            &format!("node {} after the restart, no token", i + 1),
            one.who_am_i().await,
        );
    }
    let mut watch = a
        .watch_conversation(conv("a", "c1"), None)
        .await
        .expect("watch again");

    let id = s.a[4..20].to_string();
    change(&root, Op::RevokeToken(id)).await.expect("revoke");
    // As soon as the revoke returned, every node refuses the token.
    for (i, addr) in addrs.iter().enumerate() {
        let one = client(std::slice::from_ref(addr), tls(), Some(&s.a)).await;
        unauthenticated(&format!("node {}", i + 1), one.who_am_i().await);
    }
    // The tenant's client has batch streams open since the token was good: their
    // calls are refused too.
    unauthenticated(
        "a put on an open batch stream",
        a.put("a/after-revoke", "v").await,
    );
    unauthenticated(
        "a get on an open batch stream",
        a.get("a/after-restart").await,
    );
    unauthenticated(
        "an append on an open batch stream",
        append(&a, conv("a", "c1")).await,
    );
    // And the open watch ended with PERMISSION_DENIED.
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await
    .expect("the watch ended");
    assert!(
        matches!(ended, Some(Error::PermissionDenied(_))),
        "{ended:?}"
    );
    // Root still works, and can turn auth off again.
    change(&root, Op::SetEnabled(false)).await.expect("disable");
    client(&addrs, tls(), None)
        .await
        .put("open-again", "v")
        .await
        .expect("auth off");
    s.cluster.shutdown().await;
}

/// `token` with its last hex digit changed: the right id with a wrong secret.
fn other_last_digit(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

/// A node whose data dir lost its copy of the auth state (`auth.pb`) does not serve as
/// if auth were off.
///
/// 1. Auth on; root writes a key; every node stops; node 3's `auth.pb` is deleted.
/// 2. Node 3 restarts alone: no meta leader can tell it the auth state. A stale read
///    without credentials (which its replica could answer on its own) is refused
///    with `NodeNotReady`, not served.
/// 3. The other nodes restart: node 3 learns the state from the meta leader, refuses
///    the call without credentials as unauthenticated, and serves root's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_lost_its_auth_state_serves_no_one_until_it_learns_it() {
    let mut s = auth_cluster().await;
    let addrs = s.cluster.addrs();
    let tls = || Some(s.pki.client());
    let root = client(&addrs, tls(), Some(&s.root)).await;
    root.put("secret", "v").await.expect("put");
    s.cluster.wait_converged().await;
    for i in 0..3 {
        s.cluster.stop(i).await;
    }
    let kept = s.cluster.dir.path().join("node3").join("auth.pb");
    std::fs::remove_file(&kept).expect("node 3 kept the auth state");
    s.cluster.restart(2).await;
    let impatient = |token: Option<String>| {
        Client::connect_with(
            std::slice::from_ref(&addrs[2]),
            ClientOptions {
                timeout: Duration::from_secs(2),
                connect_timeout: Duration::from_millis(500),
                tls: tls(),
                token,
                ..Default::default()
            },
        )
    };
    let anyone = impatient(None).await.expect("connect is lazy");
    let refused = anyone.get_stale("secret").await;
    assert!(
        refused.is_err(),
        "node 3 alone served a stale read without a token: {refused:?}"
    );
    let why = format!("{:?}", anyone.who_am_i().await);
    assert!(
        why.contains("not yet learned the cluster's auth settings"),
        "node 3 alone, no token: {why}"
    );
    s.cluster.restart(0).await;
    s.cluster.restart(1).await;
    wait_for_explained("node 3 to learn the auth state", WAIT, || async {
        match anyone.who_am_i().await {
            Err(Error::Unauthenticated(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let root3 = impatient(Some(s.root.clone()))
        .await
        .expect("connect is lazy");
    let got = wait_for("root served by node 3", WAIT, || async {
        root3.get_stale("secret").await.ok().flatten()
    })
    .await;
    assert_eq!(got.value.as_ref(), b"v");
    s.cluster.shutdown().await;
}
