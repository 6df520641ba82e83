//! Server-side TLS for the gRPC port (`[security]`, docs/operations.md "Security").
//!
//! tonic's own server TLS loads its certificate once; ctxstore must take rotated files
//! without a restart, so the node does the handshake itself (tokio-rustls) and hands
//! tonic finished TLS streams. Every accepted connection checks whether the three
//! files changed on disk (their modification time and size) and, if so, builds a new
//! rustls configuration from them; a set that does not load (a half-written or
//! mismatched pair, an empty CA file) is logged once and the previous configuration
//! stays in use, so a botched rotation never takes the port down.
//!
//! Peers are told from clients by their certificate: the `Raft` service and the
//! node-only `Cluster` calls (heartbeats, shard-id allocation) need a certificate the
//! CA signed and, when `peer-cert-allowed-cn` is set, one of those common names
//! ([`PeerAuthLayer`]).

use crate::config::{ClientCertAuth, SecurityConfig};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, TlsReload};
use ctxstore_api::tls::FilesStamp;
use parking_lot::Mutex;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// A handshake that has not finished by then is dropped, so idle sockets cannot pile
/// up half-open.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long calls still open on a connection past `max-connection-age` may run
/// before it is closed under them.
pub(crate) const CONNECTION_AGE_GRACE: Duration = Duration::from_secs(30);

/// gRPC paths only nodes may call.
const PEER_ONLY: &[&str] = &[
    "/ctxstore.internal.v1.Raft/",
    "/ctxstore.v1.Cluster/Heartbeat",
    "/ctxstore.v1.Cluster/AllocShard",
];

/// The files and client-certificate mode a configuration is built from.
struct Files {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    mode: ClientCertAuth,
}

/// The node's TLS configuration, reloaded when its files change.
pub(crate) struct ServerTls {
    files: Files,
    allowed_cn: Vec<String>,
    state: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<rustls::ServerConfig>,
    stamp: FilesStamp,
    /// The stamp of the last set that failed to load, so it is reported once.
    failed: Option<FilesStamp>,
}

impl ServerTls {
    /// Loads the files named by `sec`; `None` without TLS. At startup a file that does
    /// not load is a configuration error naming it.
    pub(crate) fn load(sec: &SecurityConfig) -> Result<Option<Arc<Self>>> {
        let (Some(ca), Some(cert), Some(key)) = (&sec.ca_path, &sec.cert_path, &sec.key_path)
        else {
            return Ok(None);
        };
        let files = Files {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
            mode: sec.client_cert_auth,
        };
        let stamp = files.stamp();
        let config = files.build()?;
        Ok(Some(Arc::new(Self {
            files,
            allowed_cn: sec.peer_cert_allowed_cn.clone(),
            state: Mutex::new(Loaded {
                config,
                stamp,
                failed: None,
            }),
        })))
    }

    /// The configuration for a new connection: the files' current contents if they
    /// changed and load, else the last one that loaded. With a reload, also whether
    /// it loaded.
    fn current(&self) -> (Arc<rustls::ServerConfig>, Option<bool>) {
        let stamp = self.files.stamp();
        let mut st = self.state.lock();
        let mut reloaded = None;
        if stamp != st.stamp && st.failed.as_ref() != Some(&stamp) {
            match self.files.build() {
                Ok(config) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS files changed: new connections use them");
                    st.config = config;
                    st.stamp = stamp;
                    st.failed = None;
                    reloaded = Some(true);
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS files changed but do not load; the previous ones stay in use");
                    st.failed = Some(stamp);
                    reloaded = Some(false);
                }
            }
        }
        (st.config.clone(), reloaded)
    }

    /// Whether a verified certificate with common name `cn` is a node's when auth is
    /// on: only names listed in `peer-cert-allowed-cn` are (an empty list names none).
    pub(crate) fn is_named_peer(&self, cn: &str) -> bool {
        self.allowed_cn.iter().any(|a| a == cn)
    }

    /// Whether the connection's certificate makes it a peer. Without client
    /// certificates (`client-cert-auth = none`) nothing tells a peer from a client,
    /// so every connection is one (docs/operations.md says so).
    fn is_peer(&self, certs: Option<&[CertificateDer<'static>]>) -> bool {
        if self.files.mode == ClientCertAuth::None {
            return true;
        }
        // rustls verified the chain against the CA during the handshake.
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            return false;
        };
        if self.allowed_cn.is_empty() {
            return true;
        }
        common_name(leaf).is_some_and(|cn| self.allowed_cn.contains(&cn))
    }
}

impl Files {
    /// What identifies the three files on disk; a change means "reload".
    fn stamp(&self) -> FilesStamp {
        FilesStamp::of([
            Some(self.ca.as_path()),
            Some(self.cert.as_path()),
            Some(self.key.as_path()),
        ])
    }

    fn build(&self) -> Result<Arc<rustls::ServerConfig>> {
        let provider = crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&self.ca, "security.ca-path")? {
            roots.add(c).map_err(|e| {
                Error::config("security.ca-path", format!("{}: {e}", self.ca.display()))
            })?;
        }
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS versions: {e}")))?;
        let builder = match self.mode {
            ClientCertAuth::None => builder.with_no_client_auth(),
            mode => {
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                let v = if mode == ClientCertAuth::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(v.build().map_err(|e| {
                    Error::config("security.ca-path", format!("{}: {e}", self.ca.display()))
                })?)
            }
        };
        let chain = certs(&self.cert, "security.cert-path")?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            Error::config(
                "security.key-path",
                format!("{}: no private key: {e}", self.key.display()),
            )
        })?;
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            Error::config(
                "security.key-path",
                format!(
                    "{} does not go with {}: {e}",
                    self.key.display(),
                    self.cert.display()
                ),
            )
        })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// rustls's *ring* provider, as tonic's `tls-ring` client side uses. rustls 0.23.48
/// deprecates it because it offers no post-quantum key exchange; the aws-lc-rs provider
/// that does would add a second large C library to every build (RocksDB is the
/// first). Moving to it is a one-line change here and a feature in Cargo.toml.
#[allow(deprecated)]
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |e: &dyn std::fmt::Display| Error::config(field, format!("{}: {e}", path.display()));
    let v = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if v.is_empty() {
        return Err(bad(&"holds no PEM certificate"));
    }
    Ok(v)
}

/// The subject common name of a DER certificate.
pub(crate) fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = c
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

/// The TLS connections accepted on `listener`, handshakes done, until `cancel`.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tx.closed() => return,
                r = listener.accept() => r,
            };
            let (tcp, remote) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of
                    // spinning on the same error.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let (config, reloaded) = tls.current();
            if let Some(ok) = reloaded {
                let result = if ok { "ok" } else { "failed" };
                metrics
                    .tls_reloads
                    .get_or_create(&TlsReload { result })
                    .inc();
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let tx = tx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        metrics.tls_handshake_failures.inc();
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        metrics.tls_handshake_failures.inc();
                        tracing::debug!(%remote, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Refuses the node-only calls ([`PEER_ONLY`]) to connections whose certificate does
/// not make them a peer, with `PERMISSION_DENIED`. Without TLS it passes everything.
#[derive(Clone)]
pub(crate) struct PeerAuthLayer {
    tls: Option<Arc<ServerTls>>,
}

impl PeerAuthLayer {
    pub(crate) fn new(tls: Option<Arc<ServerTls>>) -> Self {
        Self { tls }
    }
}

impl<S> tower_layer::Layer<S> for PeerAuthLayer {
    type Service = PeerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerAuth {
            inner,
            tls: self.tls.clone(),
        }
    }
}

/// The service [`PeerAuthLayer`] makes.
#[derive(Clone)]
pub(crate) struct PeerAuth<S> {
    inner: S,
    tls: Option<Arc<ServerTls>>,
}

impl<S, B, RB> Service<http::Request<B>> for PeerAuth<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(tls) = &self.tls {
            let path = req.uri().path();
            if PEER_ONLY.iter().any(|p| path.starts_with(p)) {
                let certs = req
                    .extensions()
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|i| i.peer_certs());
                if !tls.is_peer(certs.as_deref().map(|v| v.as_slice())) {
                    let status = tonic::Status::permission_denied(format!(
                        "{path} is for cluster nodes: present a node certificate{}",
                        if tls.allowed_cn.is_empty() {
                            String::new()
                        } else {
                            format!(" with a common name in {:?}", tls.allowed_cn)
                        }
                    ));
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            }
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    fn sec(p: &Pki, mode: ClientCertAuth, cn: &[&str]) -> SecurityConfig {
        SecurityConfig {
            ca_path: Some(p.path("ca.crt")),
            cert_path: Some(p.path("node.crt")),
            key_path: Some(p.path("node.key")),
            client_cert_auth: mode,
            peer_cert_allowed_cn: cn.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn loads_reloads_and_keeps_the_old_set_when_the_new_one_is_broken() {
        let p = Pki::new();
        let ca = crate::pki::Ca::new("test CA").expect("ca");
        ca.write(&p.path("ca.crt")).expect("write ca");
        ca.issue("ctxstore-node", true)
            .expect("node cert")
            .write(&p.path("node.crt"), &p.path("node.key"))
            .expect("write node");
        let tls = ServerTls::load(&sec(&p, ClientCertAuth::Optional, &[]))
            .expect("loads")
            .expect("TLS on");
        let (first, reloaded) = tls.current();
        assert_eq!(reloaded, None);
        assert!(
            Arc::ptr_eq(&first, &tls.current().0),
            "unchanged files are not reloaded"
        );

        // A key that does not go with the certificate: refused, the old set stays.
        let other = ca.issue("other", true).expect("other cert");
        std::fs::write(p.path("node.key"), other.key_pem()).expect("write key");
        let (after, reloaded) = tls.current();
        assert_eq!(
            reloaded,
            Some(false),
            "a mismatched pair is a failed reload"
        );
        assert!(
            Arc::ptr_eq(&first, &after),
            "a mismatched pair must not replace the loaded one"
        );
        assert_eq!(tls.current().1, None, "a failed set is reported once");
        let e = tls.files.build().expect_err("mismatched pair");
        assert!(e.to_string().contains("security.key-path"), "{e}");

        // The full new pair loads.
        other
            .write(&p.path("node.crt"), &p.path("node.key"))
            .expect("write pair");
        let (reloaded, ok) = tls.current();
        assert_eq!(ok, Some(true));
        assert!(
            !Arc::ptr_eq(&first, &reloaded),
            "a good new pair is picked up"
        );

        // Startup with a broken file is an error naming it.
        std::fs::write(p.path("ca.crt"), "garbage").expect("write");
        let e = ServerTls::load(&sec(&p, ClientCertAuth::Optional, &[]))
            .err()
            .expect("no CA");
        assert!(e.to_string().contains("security.ca-path"), "{e}");
    }

    #[test]
    fn peers_are_told_by_certificate_and_common_name() {
        let p = Pki::new();
        let ca = crate::pki::Ca::new("test CA").expect("ca");
        ca.write(&p.path("ca.crt")).expect("write ca");
        let node = ca.issue("ctxstore-node", true).expect("node");
        node.write(&p.path("node.crt"), &p.path("node.key"))
            .expect("write");
        let agent = ca.issue("agent-7", false).expect("agent");
        let node_der = vec![node.der()];
        let agent_der = vec![agent.der()];

        let any = ServerTls::load(&sec(&p, ClientCertAuth::Optional, &[]))
            .expect("load")
            .expect("on");
        assert!(any.is_peer(Some(&node_der)));
        assert!(
            any.is_peer(Some(&agent_der)),
            "any CA-signed cert when no CN list"
        );
        assert!(!any.is_peer(None), "no certificate, no peer");

        let named = ServerTls::load(&sec(&p, ClientCertAuth::Require, &["ctxstore-node"]))
            .expect("load")
            .expect("on");
        assert!(named.is_peer(Some(&node_der)));
        assert!(!named.is_peer(Some(&agent_der)), "CN not in the list");
        assert_eq!(common_name(&agent.der()).as_deref(), Some("agent-7"));

        let open = ServerTls::load(&sec(&p, ClientCertAuth::None, &[]))
            .expect("load")
            .expect("on");
        assert!(
            open.is_peer(None),
            "without client certificates everyone is a peer"
        );
    }
}
