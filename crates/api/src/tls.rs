//! Client-side TLS: the files a client trusts and presents (`ctxctl --cacert --cert
//! --key`, the bundled client's `ClientOptions::tls`, and a node dialling its peers),
//! and the one place that turns an address into a gRPC endpoint.
//!
//! The files are read at every [`endpoint`] call, not once: a node reconnecting to a
//! peer, or a client opening a new connection, uses the certificate on disk now, so
//! rotated files take effect without a restart (docs/operations.md, "Security").

use crate::error::{Error, Result};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// What a TLS client trusts and, for mutual TLS, presents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM file of the certificate authorities that sign the servers' certificates.
    pub ca_path: PathBuf,
    /// PEM certificate chain this client presents (mutual TLS); needs `key_path`.
    pub cert_path: Option<PathBuf>,
    /// PEM private key of `cert_path`.
    pub key_path: Option<PathBuf>,
    /// The name the server's certificate must carry; default: the host of the address
    /// dialled (an IP address is matched against the certificate's IP names).
    pub domain: Option<String>,
}

impl ClientTls {
    /// Trusts `ca_path` and presents no certificate.
    pub fn new(ca_path: impl Into<PathBuf>) -> Self {
        Self {
            ca_path: ca_path.into(),
            ..Default::default()
        }
    }

    /// Presents `cert_path` with its key `key_path` (mutual TLS).
    pub fn with_identity(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        self.cert_path = Some(cert_path.into());
        self.key_path = Some(key_path.into());
        self
    }

    /// What identifies the files' current contents: a channel made before a change
    /// should be replaced.
    pub fn stamp(&self) -> FilesStamp {
        FilesStamp::of([
            Some(self.ca_path.as_path()),
            self.cert_path.as_deref(),
            self.key_path.as_deref(),
        ])
    }

    /// Reads the files now and builds tonic's client configuration; the error names
    /// the file that is missing or unreadable.
    pub fn config(&self) -> Result<ClientTlsConfig> {
        let ca = read_pem(&self.ca_path, "cacert")?;
        let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        match (&self.cert_path, &self.key_path) {
            (Some(cert), Some(key)) => {
                let cert = read_pem(cert, "cert")?;
                let key = read_pem(key, "key")?;
                cfg = cfg.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(Error::invalid("key", "a client certificate needs its key"))
            }
            (None, Some(_)) => {
                return Err(Error::invalid("cert", "a client key needs its certificate"))
            }
        }
        if let Some(d) = &self.domain {
            cfg = cfg.domain_name(d.clone());
        }
        Ok(cfg)
    }
}

/// The modification time and size of each of some files (`None`: absent or
/// unreadable), so that a change to any of them is seen without reading them; the
/// default stands for "no files". Clients and the node's TLS acceptor use it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilesStamp(Vec<Option<(std::time::SystemTime, u64)>>);

impl FilesStamp {
    /// The stamp of `paths` now (an absent path counts like an absent file).
    pub fn of<'a>(paths: impl IntoIterator<Item = Option<&'a Path>>) -> FilesStamp {
        let one = |p: &Path| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        };
        FilesStamp(paths.into_iter().map(|p| p.and_then(one)).collect())
    }
}

/// How often a [`Channels`] cache looks at its TLS files again.
pub const RECHECK: Duration = Duration::from_secs(1);

/// One lazily made channel per address, all replaced when the TLS files change
/// (their connections then close as the old channels are dropped). The files are
/// looked at, three `stat` calls, at most once per [`RECHECK`]: the request path
/// pays a clock read, and a rotation is seen within a second.
pub struct Channels<C> {
    tls: Option<ClientTls>,
    recheck: Duration,
    state: Mutex<ChannelsState<C>>,
}

struct ChannelsState<C> {
    checked: Option<Instant>,
    stamp: FilesStamp,
    by_addr: HashMap<String, C>,
}

impl<C: Clone> Default for Channels<C> {
    /// A plaintext cache.
    fn default() -> Self {
        Self::new(None)
    }
}

impl<C: Clone> Channels<C> {
    /// An empty cache dialling with `tls` (None: plaintext).
    pub fn new(tls: Option<ClientTls>) -> Self {
        Self::with_recheck(tls, RECHECK)
    }

    fn with_recheck(tls: Option<ClientTls>, recheck: Duration) -> Self {
        Self {
            tls,
            recheck,
            state: Mutex::new(ChannelsState {
                checked: None,
                stamp: FilesStamp::default(),
                by_addr: HashMap::new(),
            }),
        }
    }

    /// What the channels trust and present.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// The channel to `addr`; when there is none yet (or the files changed), `make`
    /// builds it from the address's [`endpoint`], with the files read now.
    pub fn get(&self, addr: &str, make: impl FnOnce(Endpoint) -> C) -> Result<C> {
        let mut st = self.state.lock();
        if let Some(tls) = &self.tls {
            let now = Instant::now();
            if st
                .checked
                .is_none_or(|t| now.duration_since(t) >= self.recheck)
            {
                st.checked = Some(now);
                let stamp = tls.stamp();
                if stamp != st.stamp {
                    st.stamp = stamp;
                    st.by_addr.clear();
                }
            }
        }
        if let Some(c) = st.by_addr.get(addr) {
            return Ok(c.clone());
        }
        let c = make(endpoint(addr, self.tls.as_ref())?);
        st.by_addr.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

/// The endpoint for `addr` (`host:port`): `http://` without TLS, `https://` with the
/// files of `tls` read now.
pub fn endpoint(addr: &str, tls: Option<&ClientTls>) -> Result<Endpoint> {
    let addr = addr
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| Error::invalid("endpoint", format!("`{addr}`: {e}")))?;
    match tls {
        None => Ok(ep),
        Some(t) => ep
            .tls_config(t.config()?)
            .map_err(|e| Error::invalid("cacert", format!("TLS configuration: {e}"))),
    }
}

fn read_pem(path: &Path, field: &str) -> Result<Vec<u8>> {
    let data = std::fs::read(path)
        .map_err(|e| Error::invalid(field, format!("cannot read {}: {e}", path.display())))?;
    if !data.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Error::invalid(
            field,
            format!("{} holds no PEM block", path.display()),
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_and_tls_endpoints_differ_in_scheme_only() {
        let ep = endpoint("127.0.0.1:7001", None).expect("plain");
        assert_eq!(ep.uri().scheme_str(), Some("http"));
        let ep = endpoint("http://127.0.0.1:7001", None).expect("plain with scheme");
        assert_eq!(ep.uri().to_string(), "http://127.0.0.1:7001/");
    }

    #[test]
    fn channels_are_reused_until_the_files_change() {
        let dir = std::env::temp_dir().join(format!("ctxstore-chan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.crt");
        let cert = || {
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
                .expect("certificate")
                .cert
                .pem()
        };
        std::fs::write(&ca, cert()).expect("write");
        let made = std::cell::Cell::new(0);
        let make = |_: Endpoint| {
            made.set(made.get() + 1);
            made.get()
        };
        // Checked at every call, as if a second had passed each time.
        let chans = Channels::with_recheck(Some(ClientTls::new(&ca)), Duration::ZERO);
        assert_eq!(chans.get("127.0.0.1:1", make).expect("first"), 1);
        assert_eq!(chans.get("127.0.0.1:1", make).expect("same files"), 1);
        assert_eq!(chans.get("127.0.0.1:2", make).expect("other address"), 2);
        std::fs::write(&ca, format!("{}{}", cert(), cert())).expect("rotate");
        assert_eq!(chans.get("127.0.0.1:1", make).expect("rotated"), 3);
        // Within the recheck interval the files are not looked at.
        let lazy = Channels::with_recheck(Some(ClientTls::new(&ca)), Duration::from_secs(3600));
        assert_eq!(lazy.get("127.0.0.1:1", make).expect("first"), 4);
        std::fs::write(&ca, cert()).expect("rotate back");
        assert_eq!(lazy.get("127.0.0.1:1", make).expect("not rechecked yet"), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_files_are_named() {
        let tls = ClientTls::new("/nonexistent/ca.crt");
        let e = endpoint("127.0.0.1:7001", Some(&tls)).expect_err("no CA file");
        assert!(e.to_string().contains("cacert"), "{e}");
        let dir = std::env::temp_dir().join(format!("ctxstore-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, "not a certificate").expect("write");
        let e = ClientTls::new(&ca).config().expect_err("no PEM");
        assert!(e.to_string().contains("no PEM block"), "{e}");
        let mut half = ClientTls::new(&ca);
        half.cert_path = Some(ca.clone());
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").expect("write");
        let e = half.config().expect_err("cert without key");
        assert!(e.to_string().contains("key"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
