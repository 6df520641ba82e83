//! Throwaway certificates for `ctxd dev --tls` and the tests: a self-signed CA that
//! issues node certificates (server and client use, named for `localhost`,
//! `127.0.0.1` and `::1`) and client certificates (client use only). Production
//! clusters bring their own PKI (docs/operations.md, "Security").

use crate::config::SecurityConfig;
use crate::error::{Error, Result};
use ctxstore_api::tls::ClientTls;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};

fn pki_err(e: rcgen::Error) -> Error {
    Error::Internal(format!("certificate generation: {e}"))
}

fn named(cn: &str, sans: Vec<String>) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(sans).map_err(pki_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    Ok(p)
}

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> Result<Self> {
        let mut p = named(name, Vec::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(pki_err)?;
        let cert = p.self_signed(&key).map_err(pki_err)?;
        Ok(Self {
            issuer: Issuer::new(p, key),
            pem: cert.pem(),
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_file(path, self.pem.as_bytes(), false)
    }

    /// Issues a certificate with common name `cn`: for a node (`node`: server and
    /// client use, names `localhost`, `127.0.0.1`, `::1`) or a client.
    pub fn issue(&self, cn: &str, node: bool) -> Result<Issued> {
        let sans = if node {
            vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
        } else {
            Vec::new()
        };
        let mut p = named(cn, sans)?;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = if node {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(pki_err)?;
        let cert = p.signed_by(&key, &self.issuer).map_err(pki_err)?;
        Ok(Issued { cert, key })
    }
}

/// An issued certificate and its private key.
pub struct Issued {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Issued {
    /// The certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Writes the certificate and its key (mode 0600).
    pub fn write(&self, cert: &Path, key: &Path) -> Result<()> {
        write_file(cert, self.cert_pem().as_bytes(), false)?;
        write_file(key, self.key_pem().as_bytes(), true)
    }
}

/// The files `ctxd dev --tls` writes.
#[derive(Clone, Debug)]
pub struct DevPki {
    /// The CA certificate (`--ca-path`, `ctxctl --cacert`).
    pub ca: PathBuf,
    /// The nodes' certificate and key (CN `ctxstore-node`).
    pub node_cert: PathBuf,
    /// The nodes' key.
    pub node_key: PathBuf,
    /// A client certificate and key (CN `ctxstore-client`) for `ctxctl --cert --key`.
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
}

/// The common name of the dev cluster's node certificate.
pub const DEV_NODE_CN: &str = "ctxstore-node";

impl DevPki {
    /// Makes a CA, a node and a client certificate under `dir`.
    pub fn write(dir: &Path) -> Result<Self> {
        Self::write_with_ca(dir).map(|(files, _)| files)
    }

    /// [`DevPki::write`], and the CA, to issue more certificates with (a rotation).
    pub fn write_with_ca(dir: &Path) -> Result<(Self, Ca)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let files = Self {
            ca: dir.join("ca.crt"),
            node_cert: dir.join("node.crt"),
            node_key: dir.join("node.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        let ca = Ca::new("ctxstore dev CA")?;
        ca.write(&files.ca)?;
        ca.issue(DEV_NODE_CN, true)?
            .write(&files.node_cert, &files.node_key)?;
        ca.issue("ctxstore-client", false)?
            .write(&files.client_cert, &files.client_key)?;
        Ok((files, ca))
    }

    /// A node's `[security]` with these files: the node certificate, and only
    /// [`DEV_NODE_CN`] accepted as a peer; the rest at its defaults.
    pub fn node_security(&self) -> SecurityConfig {
        SecurityConfig {
            ca_path: Some(self.ca.clone()),
            cert_path: Some(self.node_cert.clone()),
            key_path: Some(self.node_key.clone()),
            peer_cert_allowed_cn: vec![DEV_NODE_CN.to_string()],
            ..Default::default()
        }
    }

    /// A client trusting the CA and presenting the client certificate.
    pub fn client(&self) -> ClientTls {
        ClientTls::new(&self.ca).with_identity(&self.client_cert, &self.client_key)
    }
}

fn write_file(path: &Path, data: &[u8], private: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    if private {
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))
}
