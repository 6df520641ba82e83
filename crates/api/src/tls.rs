//! Client-side TLS: the files a client trusts and presents (`ctxctl --cacert --cert
//! --key`, the bundled client's `ClientOptions::tls`, and a node dialling its peers),
//! and the one place that turns an address into a gRPC endpoint.
//!
//! The files are read at every [`endpoint`] call, not once: a node reconnecting to a
//! peer, or a client opening a new connection, uses the certificate on disk now, so
//! rotated files take effect without a restart (docs/operations.md, "Security").

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
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

    /// What identifies the files' current contents (modification time and size of
    /// each): a channel made before a change should be replaced.
    pub fn stamp(&self) -> FilesStamp {
        let one = |p: &Path| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        };
        FilesStamp(vec![
            one(&self.ca_path),
            self.cert_path.as_deref().and_then(one),
            self.key_path.as_deref().and_then(one),
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

/// See [`ClientTls::stamp`]; the default stands for "no TLS".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilesStamp(Vec<Option<(std::time::SystemTime, u64)>>);

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
