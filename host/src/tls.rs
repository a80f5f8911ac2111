//! TLS for control and data connections (RFC 4217), with rustls and the
//! *ring* provider; TLS 1.2 and 1.3 only. The only module that names rustls.
//!
//! - [`SiteTls`]: one site's (or the server's) TLS: certificate, versions and
//!   policy. The certificate sits behind a swappable pointer, so a reload
//!   serves a renewed certificate to the next handshake without rebuilding the
//!   site, while connections already made keep theirs.
//! - [`accept_control`]: the server side of a control connection's handshake
//!   (after `AUTH TLS`, or from the first byte on an implicit listener). The
//!   name the client asks for (SNI) may pick the site.
//! - [`DataTls`]: what one control connection's data connections are checked
//!   against. Each control connection gets its own copy of the site's rustls
//!   config with its own session cache and its own ticket key, so a data
//!   connection can only resume a session of *its* control connection:
//!   requiring resumption then means "this data connection comes from the
//!   client that logged in" (what vsftpd's `require_ssl_reuse` does), which
//!   stops anyone else from stealing a passive port's data.

use std::io;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{HandshakeKind, ServerConfig};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use crate::config::{ConfigError, TlsConfig, TlsVersion};
use crate::ftp::Transport;
use crate::site::{Site, SiteDirectory};

/// Sessions one control connection's cache keeps for its data connections
/// (TLS 1.2 session IDs, TLS 1.3 stateful resumption).
const SESSION_CACHE: usize = 32;

/// What a site's TLS settings demand of its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Logins and data connections only over TLS.
    pub required: bool,
    /// A data connection must resume its control connection's TLS session.
    pub require_session_reuse: bool,
}

impl Default for TlsPolicy {
    /// Without TLS settings: nothing required; reuse required should TLS
    /// ever be used.
    fn default() -> Self {
        TlsPolicy {
            required: false,
            require_session_reuse: true,
        }
    }
}

/// One site's (or the server's) TLS.
pub struct SiteTls {
    policy: TlsPolicy,
    /// The settings this was built from, to tell on reload whether it can
    /// stay (only the certificate files' contents changed) or not.
    settings: TlsConfig,
    /// Shared by every connection of this site; cloned per control
    /// connection with its own session state.
    config: Arc<ServerConfig>,
    certificate: Arc<CurrentCertificate>,
}

impl std::fmt::Debug for SiteTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteTls")
            .field("certificate", &self.settings.certificate)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The certificate served to new handshakes; replaced on reload.
#[derive(Debug)]
struct CurrentCertificate(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// A certificate chain and its key, read from PEM files and checked to match.
#[derive(Debug, Clone)]
pub struct LoadedCertificate(Arc<CertifiedKey>);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the certificate chain and key `settings` name. Errors name the
/// config file, the key (`site.main.tls.certificate`) and the PEM file.
pub fn load_certificate(settings: &TlsConfig) -> Result<LoadedCertificate, ConfigError> {
    let origin = &settings.origin;
    let cert_error = |message: String| ConfigError {
        file: origin.file.clone(),
        line: origin.certificate_line,
        key: origin.certificate_key.clone(),
        message,
    };
    let key_error = |message: String| ConfigError {
        file: origin.file.clone(),
        line: origin.key_line,
        key: origin.key_key.clone(),
        message,
    };
    let chain = read_chain(&settings.certificate).map_err(cert_error)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| {
        key_error(format!(
            "{}: {}",
            settings.key.display(),
            pem_problem(e, "private key")
        ))
    })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        key_error(format!(
            "{}: not a usable key for {}: {e}",
            settings.key.display(),
            settings.certificate.display()
        ))
    })?;
    Ok(LoadedCertificate(Arc::new(certified)))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e| format!("{}: {}", path.display(), pem_problem(e, "certificate"));
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(what)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(what)?;
    if chain.is_empty() {
        return Err(what(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(chain)
}

fn pem_problem(err: rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error;
    match err {
        Error::NoItemsFound => format!("no PEM {what} found in the file"),
        Error::Io(e) => format!("cannot read: {e}"),
        other => format!("not valid PEM: {other}"),
    }
}

impl LoadedCertificate {
    fn same_as(&self, other: &CertifiedKey) -> bool {
        self.0.cert == other.cert
    }
}

impl SiteTls {
    pub fn new(settings: &TlsConfig, certificate: LoadedCertificate) -> anyhow::Result<Self> {
        let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let current = Arc::new(CurrentCertificate(ArcSwap::new(certificate.0)));
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        Ok(SiteTls {
            policy: TlsPolicy {
                required: settings.required,
                require_session_reuse: settings.require_session_reuse,
            },
            settings: settings.clone(),
            config: Arc::new(config),
            certificate: current,
        })
    }

    pub fn policy(&self) -> TlsPolicy {
        self.policy
    }

    /// Whether this was built from `settings` (so a reload can keep it and
    /// only swap the certificate).
    pub fn built_from(&self, settings: &TlsConfig) -> bool {
        self.settings == *settings
    }

    /// Serves `certificate` to the next handshakes. Returns whether it differs
    /// from the one served so far.
    pub fn replace_certificate(&self, certificate: LoadedCertificate) -> bool {
        let changed = !certificate.same_as(&self.certificate.0.load());
        self.certificate.0.store(certificate.0);
        changed
    }

    /// The certificate file, for logs.
    pub fn certificate_file(&self) -> &Path {
        &self.settings.certificate
    }

    /// A copy of the config with session state of its own, for one control
    /// connection and its data connections.
    fn connection_config(&self) -> io::Result<Arc<ServerConfig>> {
        let mut config = (*self.config).clone();
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(io::Error::other)?;
        Ok(Arc::new(config))
    }
}

/// What a control connection's TLS handshake settled.
pub struct Secured {
    /// The site the client named (SNI), when that is a site with TLS.
    pub site: Option<Arc<Site>>,
    /// For this connection's data connections.
    pub data: Arc<DataTls>,
    /// Version and cipher suite, for the log.
    pub summary: String,
}

/// Runs the server side of a control connection's TLS handshake. When the
/// client names (SNI) a site that has TLS, that site's certificate and
/// settings are used, and the site is reported; otherwise `fallback`'s.
pub async fn accept_control(
    stream: Box<dyn Transport>,
    fallback: &Arc<SiteTls>,
    sites: &dyn SiteDirectory,
) -> io::Result<(Box<dyn Transport>, Secured)> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
    let named = start
        .client_hello()
        .server_name()
        .and_then(|name| sites.by_host(name))
        .and_then(|site| Some((site.tls.clone()?, site)));
    let (tls, site) = match named {
        Some((tls, site)) => (tls, Some(site)),
        None => (fallback.clone(), None),
    };
    let config = tls.connection_config()?;
    let stream = start.into_stream(config.clone()).await?;
    let (_, connection) = stream.get_ref();
    let summary = format!(
        "{} {}",
        connection
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("TLS"),
        connection
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("")
    );
    // Data connections share the control connection's session cache and
    // ticket key but issue no tickets of their own: a client that closes
    // a data connection without reading them (curl does, after an upload)
    // would make its kernel answer with a reset, and a reset can destroy
    // the upload's last bytes before we read them.
    let mut data_config = (*config).clone();
    data_config.send_tls13_tickets = 0;
    let secured = Secured {
        site,
        data: Arc::new(DataTls {
            config: Arc::new(data_config),
        }),
        summary,
    };
    Ok((Box::new(stream), secured))
}

/// The TLS side of one control connection's data connections.
pub struct DataTls {
    config: Arc<ServerConfig>,
}

/// Why a data connection's TLS was refused.
#[derive(Debug)]
pub enum DataTlsError {
    Handshake(io::Error),
    /// A full handshake where resuming the control connection's session was
    /// required.
    NotResumed,
}

impl std::fmt::Display for DataTlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataTlsError::Handshake(err) => write!(f, "TLS handshake failed: {err}"),
            DataTlsError::NotResumed => write!(
                f,
                "TLS session reuse required (the data connection must resume the control connection's session)"
            ),
        }
    }
}

/// Receive buffer under a TLS data connection.
const DATA_READ_BUFFER: usize = 64 * 1024;

impl DataTls {
    /// Runs the server side of a data connection's handshake: we are the TLS
    /// server whichever side connected (RFC 4217 section 7).
    pub async fn accept(
        &self,
        tcp: TcpStream,
        require_reuse: bool,
    ) -> Result<Box<dyn Transport>, DataTlsError> {
        // rustls reads the socket in steps of at most one record (4 KiB into
        // an empty buffer); through a buffer most of those steps are copies
        // instead of recv calls. Measured A/B (7 interleaved rounds, 256 MiB
        // STOR): server CPU per GiB 14 % lower with curl, within noise with
        // Python (docs/benchmarks.md, "FTPS").
        let tcp = BufReader::with_capacity(DATA_READ_BUFFER, tcp);
        let mut stream = TlsAcceptor::from(self.config.clone())
            .accept(tcp)
            .await
            .map_err(DataTlsError::Handshake)?;
        if require_reuse && stream.get_ref().1.handshake_kind() != Some(HandshakeKind::Resumed) {
            // A clean TLS close: the client reads an empty transfer and then
            // the refusal on the control connection, instead of failing on a
            // cut connection before it reads that reply.
            let _ = stream.shutdown().await;
            return Err(DataTlsError::NotResumed);
        }
        Ok(Box::new(stream))
    }
}

/// A self-signed certificate for `names` (host names or IP addresses) and its
/// key, both PEM, for a first try (`wasmftpd tls self-signed`); clients must
/// be told to accept it (`curl -k`). ECDSA P-256: small and fast to sign.
pub fn self_signed(names: &[String]) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.clone());
    }
    let certificate = params.self_signed(&key)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::TlsOrigin;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self_signed(&[name.to_string()]).expect("certificate");
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert).expect("write");
        std::fs::write(&key_path, key).expect("write");
        (cert_path, key_path)
    }

    fn settings(cert: PathBuf, key: PathBuf) -> TlsConfig {
        TlsConfig {
            certificate: cert,
            key,
            required: false,
            require_session_reuse: true,
            min_version: TlsVersion::V1_2,
            origin: TlsOrigin {
                file: PathBuf::from("/etc/wasmftpd.toml"),
                certificate_key: "site.main.tls.certificate".into(),
                certificate_line: 7,
                key_key: "site.main.tls.key".into(),
                key_line: 8,
            },
        }
    }

    #[test]
    fn load_errors_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a.test");
        let (_, other_key) = write_pair(dir.path(), "b.test");
        assert!(load_certificate(&settings(cert.clone(), key.clone())).is_ok());

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not PEM at all\n").unwrap();
        let err = load_certificate(&settings(garbage.clone(), key.clone())).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("site.main.tls.certificate", 7)
        );
        assert!(
            err.message.contains(&garbage.display().to_string()),
            "{err}"
        );
        assert!(err.message.contains("no PEM certificate"), "{err}");

        let err = load_certificate(&settings(cert.clone(), cert.clone())).unwrap_err();
        assert_eq!(err.key, "site.main.tls.key");
        assert!(err.message.contains("no PEM private key"), "{err}");

        let err = load_certificate(&settings(cert, other_key)).unwrap_err();
        assert_eq!((err.key.as_str(), err.line), ("site.main.tls.key", 8));
        assert!(err.message.contains("not a usable key"), "{err}");
        assert!(
            err.to_string()
                .starts_with("/etc/wasmftpd.toml:8: key `site.main.tls.key`"),
            "{err}"
        );
    }

    #[test]
    fn a_renewed_certificate_replaces_the_served_one() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a.test");
        let config = settings(cert.clone(), key.clone());
        let tls = SiteTls::new(&config, load_certificate(&config).unwrap()).unwrap();
        assert!(tls.built_from(&config));
        assert!(!tls.replace_certificate(load_certificate(&config).unwrap()));
        let (new_cert, new_key) = write_pair(dir.path(), "renewed.test");
        std::fs::rename(new_cert, &cert).unwrap();
        std::fs::rename(new_key, &key).unwrap();
        let renewed = load_certificate(&config).unwrap();
        assert!(tls.replace_certificate(renewed.clone()));
        assert!(Arc::ptr_eq(&tls.certificate.0.load_full(), &renewed.0));
    }
}
