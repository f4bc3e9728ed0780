//! TLS on the gRPC port, with rustls: the certificate and key are PEM files read again
//! whenever they change (cert-manager and ACME clients rotate them in place), so a
//! renewed certificate is served to new connections without a restart; optionally
//! clients must present a certificate signed by a given CA.
//!
//! tonic's own TLS cannot swap certificates, so the server accepts TCP connections
//! itself, runs each handshake in a task of its own (a slow client cannot hold up the
//! accept loop) and hands tonic the finished TLS streams.
//!
//! `courier-server tls-dev` makes a throwaway CA, a server certificate and a client
//! certificate with [`write_dev_certificates`], for trying TLS out.

use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::error::Error;

/// How often the certificate files are checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// The longest a client may take over its handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Where the server's TLS material is.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs (PEM).
    pub client_ca: Option<PathBuf>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{what} {}: {e}", path.display()))
}

/// Reads the certificate chain and key into a signing key for rustls.
fn load_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_error("reading the certificate", &files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error("reading the certificate", &files.cert, e))?;
    if certs.is_empty() {
        return Err(tls_error(
            "reading the certificate",
            &files.cert,
            "no CERTIFICATE block",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| tls_error("reading the private key", &files.key, e))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| tls_error("loading the private key", &files.key, e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|e| tls_error("matching the key to the certificate", &files.cert, e))?;
    Ok(certified)
}

/// Serves whichever certificate was loaded last.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The modification times of the files, to notice a rotation.
fn stamps(files: &TlsFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(&files.cert), modified(&files.key))
}

/// The TLS side of the gRPC port: the acceptor, and the task that reloads rotated
/// certificates (stopped when this is dropped).
pub struct Tls {
    acceptor: TlsAcceptor,
    reloader: tokio::task::JoinHandle<()>,
}

impl Drop for Tls {
    fn drop(&mut self) {
        self.reloader.abort();
    }
}

impl Tls {
    /// Loads `files` (failing at start on a missing or bad file) and starts watching
    /// them for changes.
    pub fn new(files: TlsFiles) -> Result<Self, Error> {
        let provider = provider();
        let resolver = Arc::new(Reloading {
            current: RwLock::new(Arc::new(load_key(&files, &provider)?)),
        });
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS versions: {e}")))?;
        let builder = match &files.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca)
                    .map_err(|e| tls_error("reading the client CA", ca, e))?
                {
                    let cert = cert.map_err(|e| tls_error("reading the client CA", ca, e))?;
                    roots
                        .add(cert)
                        .map_err(|e| tls_error("reading the client CA", ca, e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| tls_error("using the client CA", ca, e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        // HTTP/2 first (gRPC); HTTP/1.1 for media links fetched by HTTP/1 clients.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let reloader = tokio::spawn(async move {
            let mut seen = stamps(&files);
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                let now = stamps(&files);
                if now == seen {
                    continue;
                }
                // A rotation may write the two files one after the other: a pair that
                // does not match yet is tried again at the next tick.
                match load_key(&files, &provider) {
                    Ok(key) => {
                        *resolver.current.write().unwrap_or_else(|p| p.into_inner()) =
                            Arc::new(key);
                        seen = now;
                        tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded yet; still serving the previous one")
                    }
                }
            }
        });
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            reloader,
        })
    }

    /// Accepts connections on `listener` and yields each once its handshake is done;
    /// failed handshakes (a plaintext client, a bad client certificate) are logged
    /// and dropped.
    pub fn incoming(&self, listener: TcpListener) -> ReceiverStream<io::Result<TlsConnection>> {
        let (tx, rx) = mpsc::channel(64);
        let acceptor = self.acceptor.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let handed = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = handed.send(Ok(TlsConnection(stream))).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

/// A TLS connection as tonic serves it.
pub struct TlsConnection(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Writes a throwaway CA (`ca.pem`), a server certificate for `hosts` signed by it
/// (`server.pem`, `server.key`) and a client certificate (`client.pem`,
/// `client.key`) into `dir`, valid for `days`. For trying TLS out, not for production.
pub fn write_dev_certificates(dir: &Path, hosts: &[String], days: u32) -> Result<(), Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let fail = |e: rcgen::Error| Error::Internal(format!("making certificates: {e}"));
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(i64::from(days));
    let yesterday = now - time::Duration::days(1);

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "courier development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = yesterday;
    ca.not_after = until;
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose, cn: &str| {
        let mut params = CertificateParams::new(names).map_err(fail)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![purpose];
        params.not_before = yesterday;
        params.not_after = until;
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &issuer).map_err(fail)?;
        Ok::<_, Error>((cert.pem(), key.serialize_pem()))
    };
    let (server_pem, server_key) = leaf(
        hosts.to_vec(),
        ExtendedKeyUsagePurpose::ServerAuth,
        hosts.first().map_or("courier", String::as_str),
    )?;
    let (client_pem, client_key) = leaf(
        vec!["courier-client".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "courier-client",
    )?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Internal(format!("creating {}: {e}", dir.display())))?;
    for (name, contents) in [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server_pem),
        ("server.key", server_key),
        ("client.pem", client_pem),
        ("client.key", client_key),
    ] {
        let path = dir.join(name);
        write_private(&path, contents.as_bytes())
            .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Writes `contents` to `path`, readable by its owner only (keys among them).
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
