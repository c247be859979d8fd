//! TLS for links and front doors (rustls): the cluster CA and a node's certificate and key read
//! from PEM files; mutual authentication on links (each end presents a certificate the cluster CA
//! signed, the dialing end checks the hub's is for the host it dialed); server-only TLS on the
//! RESP and HTTP doors; reloading when the files change; why a handshake failed, in words an
//! operator can act on; and development certificates ([`DevCa`]).
//!
//! The HMAC handshake of the cluster secret still runs inside the TLS stream: TLS proves a peer
//! holds a certificate of the cluster's CA, the secret that it belongs to this cluster.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::Stream;

/// The PEM files of a node's TLS: the cluster CA that signs every node's certificate, and this
/// node's certificate (chain) and private key.
///
/// ```
/// let files = leafcache::net::TlsFiles::new("certs/ca.pem", "certs/hub.pem", "certs/hub-key.pem");
/// assert_eq!(files.key, std::path::PathBuf::from("certs/hub-key.pem"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA's certificate.
    pub ca: PathBuf,
    /// This node's certificate, then any intermediates.
    pub cert: PathBuf,
    /// This node's private key (PKCS#8, PKCS#1 or SEC1); must not be readable by others.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The three files.
    pub fn new(ca: impl Into<PathBuf>, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsFiles {
            ca: ca.into(),
            cert: cert.into(),
            key: key.into(),
        }
    }

    fn all(&self) -> [&Path; 3] {
        [&self.ca, &self.cert, &self.key]
    }
}

/// Why TLS files could not be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{}: {reason}", path.display())]
pub struct TlsError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

fn file_error(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The configurations made from one reading of the files.
struct Loaded {
    link_server: Arc<ServerConfig>,
    link_client: Arc<ClientConfig>,
    door: Arc<ServerConfig>,
}

/// A node's TLS, reloadable: handshakes started after a [`reload`](Tls::reload) use the new
/// files, links already up keep theirs.
pub struct Tls {
    files: TlsFiles,
    loaded: RwLock<Arc<Loaded>>,
    /// The files' modification times at the last load, to reload when they change.
    stamps: Mutex<[Option<SystemTime>; 3]>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| file_error(path, format!("holds no PEM private key: {e}")))
}

/// Refuses a private key that other users can read, as ssh does.
fn check_key_mode(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| file_error(path, e.to_string()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(file_error(
            path,
            format!(
                "private key is readable by others (mode {:o}); run chmod 600 on it",
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

/// What is wrong with the cluster CA at `ca` — missing, unreadable, or not a CA certificate —
/// if anything: `check` says it once, at the `ca =` line, not once per node that uses it.
pub fn ca_problem(ca: &std::path::Path) -> Option<String> {
    let files = TlsFiles::new(ca, ca, ca);
    roots(&files).err().map(|e| e.to_string())
}

fn roots(files: &TlsFiles) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&files.ca)? {
        roots
            .add(ca)
            .map_err(|e| file_error(&files.ca, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let roots = Arc::new(roots(files)?);
    let certs = read_certs(&files.cert)?;
    check_key_mode(&files.key)?;
    let key = read_key(&files.key)?;
    let p = provider();
    let cert_error = |e: rustls::Error| {
        let reason = match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("does not match the key in {}", files.key.display())
            }
            e => e.to_string(),
        };
        file_error(&files.cert, reason)
    };
    // The node's own certificate must be signed by the CA. One that expired (or is not valid
    // yet) is loaded with a warning: the node serves locally, its peers refuse its links and say
    // why, and `leafcache check` reports it.
    match verify_chain(&roots, &certs) {
        Ok(()) => {}
        Err(e) if is_about_time(&e) => tracing::warn!(
            file = %files.cert.display(),
            "this node's certificate {}; its peers will refuse its links",
            certificate_problem(&e)
        ),
        Err(e) => return Err(file_error(&files.cert, certificate_problem(&e))),
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), p.clone())
        .build()
        .map_err(|e| file_error(&files.ca, e.to_string()))?;
    let versions = |e: rustls::Error| file_error(&files.cert, e.to_string());
    let link_server = ServerConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(cert_error)?;
    let link_client = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(versions)?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(certs.clone(), key.clone_key())
        .map_err(cert_error)?;
    let mut door = ServerConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .map_err(versions)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(cert_error)?;
    door.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        link_server: Arc::new(link_server),
        link_client: Arc::new(link_client),
        door: Arc::new(door),
    })
}

/// Whether the chain's first certificate is signed by a CA of `roots` and valid now.
fn verify_chain(
    roots: &Arc<RootCertStore>,
    chain: &[CertificateDer<'static>],
) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map(|_| ())
}

/// Whether the certificate is only wrong about the time: expired or not valid yet.
fn is_about_time(e: &rustls::Error) -> bool {
    use rustls::CertificateError as C;
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. }
        )
    )
}

/// Every problem of the files, for `leafcache check`: what [`Tls::load`] refuses, and a
/// certificate that expired or is not valid yet (which a node starts with, but peers refuse).
///
/// ```
/// let files = leafcache::net::TlsFiles::new("/nowhere/ca.pem", "/nowhere/n.pem", "/nowhere/k.pem");
/// let problems = leafcache::net::tls_problems(&files);
/// assert!(problems[0].contains("/nowhere/ca.pem"));
/// ```
pub fn tls_problems(files: &TlsFiles) -> Vec<String> {
    if let Err(e) = load(files) {
        return vec![e.to_string()];
    }
    let chain = (roots(files).map(Arc::new)).and_then(|r| read_certs(&files.cert).map(|c| (r, c)));
    match chain {
        Ok((roots, certs)) => match verify_chain(&roots, &certs) {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!(
                "{}: the certificate {}",
                files.cert.display(),
                certificate_problem(&e)
            )],
        },
        Err(e) => vec![e.to_string()],
    }
}

fn stamps(files: &TlsFiles) -> [Option<SystemTime>; 3] {
    files
        .all()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

impl Tls {
    /// Reads and checks the files: every one exists and parses, the key matches the
    /// certificate and is readable by this user only, the certificate is signed by the CA and
    /// not expired.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file at fault.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let loaded = load(&files)?;
        Ok(Tls {
            stamps: Mutex::new(stamps(&files)),
            loaded: RwLock::new(Arc::new(loaded)),
            files,
        })
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again; handshakes from now on use them.
    ///
    /// # Errors
    /// As [`load`](Self::load); the certificates in use are kept.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamped = stamps(&self.files);
        let loaded = load(&self.files)?;
        *self.loaded.write() = Arc::new(loaded);
        *self.stamps.lock() = stamped;
        Ok(())
    }

    /// Reloads if a file changed since the last load: `None` if none did.
    pub(crate) fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now = stamps(&self.files);
        let mut seen = self.stamps.lock();
        if *seen == now {
            return None;
        }
        // Only once per change, even when it does not load (a half-written file is retried
        // when it is written again).
        *seen = now;
        drop(seen);
        Some(self.reload())
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded.read().clone()
    }

    /// The server side of a link's handshake: the peer must present a certificate of the CA.
    pub(crate) async fn accept_link(&self, stream: Stream) -> Result<Stream, String> {
        let acceptor = TlsAcceptor::from(self.current().link_server.clone());
        match acceptor.accept(stream).await {
            Ok(s) => Ok(Box::pin(Explained {
                inner: s,
                dialed: None,
            })),
            Err(e) => Err(explain(&e, None)),
        }
    }

    /// The dialing side of a link's handshake to `address`: the hub's certificate must be of
    /// the CA and for the host of `address` (`localhost` for a Unix socket).
    pub(crate) async fn connect_link(
        &self,
        stream: Stream,
        address: &str,
    ) -> Result<Stream, String> {
        let name = server_name(address)?;
        let connector = TlsConnector::from(self.current().link_client.clone());
        match connector.connect(name.clone(), stream).await {
            Ok(s) => Ok(Box::pin(Explained {
                inner: s,
                dialed: Some(name),
            })),
            Err(e) => Err(explain(&e, Some(&name))),
        }
    }

    /// The server side of a front door's handshake: no client certificate asked for.
    pub(crate) async fn accept_door(&self, stream: Stream) -> Result<Stream, String> {
        let acceptor = TlsAcceptor::from(self.current().door.clone());
        match acceptor.accept(stream).await {
            Ok(s) => Ok(Box::pin(s)),
            Err(e) => Err(explain(&e, None)),
        }
    }
}

/// A TLS stream whose errors say what went wrong: with TLS 1.3 a client learns that the server
/// refused its certificate only on its first read after the handshake, as an alert. Such an
/// error comes out with kind `PermissionDenied` and an explanation starting `TLS: `, which the
/// link reports as a refusal (and dials again at the slow pace).
struct Explained<S> {
    inner: S,
    dialed: Option<ServerName<'static>>,
}

impl<S> Explained<S> {
    fn error(&self, e: io::Error) -> io::Error {
        if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                explain(&e, self.dialed.as_ref()),
            )
        } else {
            e
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Explained<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.error(e))),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Explained<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.error(e))),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.error(e))),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The name a hub's certificate must carry when dialed at `address`: the host of `host:port`, or
/// `localhost` for a Unix socket or an in-memory host.
fn server_name(address: &str) -> Result<ServerName<'static>, String> {
    // A Unix socket or an in-memory host is this host.
    let host = super::host_of(address).unwrap_or("localhost");
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("TLS: {host:?} cannot be checked against a certificate: {e}"))
}

/// What is wrong with a certificate, for the operator.
fn certificate_problem(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "is not signed by the cluster CA".into(),
            C::Expired | C::ExpiredContext { .. } => format!("has expired ({c})"),
            C::NotValidYet | C::NotValidYetContext { .. } => format!("is not valid yet ({c})"),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("is for another name ({c})")
            }
            C::BadSignature => "has a bad signature (not signed by the cluster CA's key)".into(),
            other => format!("is not acceptable: {other}"),
        },
        other => other.to_string(),
    }
}

/// Why a handshake failed, in words an operator can act on. `name` is the hub's name when this
/// node dialed.
fn explain(e: &io::Error, name: Option<&ServerName<'_>>) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let reason = match inner {
        Some(rustls::Error::InvalidCertificate(_)) => {
            let whose = match name {
                Some(n) => format!("the hub's certificate (dialed as {})", n.to_str()),
                None => "the peer's certificate".into(),
            };
            format!("{whose} {}", certificate_problem(inner.expect("matched")))
        }
        Some(rustls::Error::NoCertificatesPresented) => {
            "the peer presented no certificate; every node of the cluster needs one of its CA"
                .into()
        }
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the peer refused this node's certificate or TLS settings (alert: {alert:?}); \
             its log says why"
        ),
        Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. }) => {
            "the peer does not speak TLS; give it the cluster's TLS certificates".into()
        }
        Some(other) => other.to_string(),
        None if e.kind() == io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection in the TLS handshake (does it speak TLS? does it \
             accept this node's certificate?)"
                .into()
        }
        None => e.to_string(),
    };
    format!("TLS: {reason}")
}

/// A development certificate authority: makes the CA of a cluster and certificates for its nodes,
/// so that TLS can be tried in two commands (`leafcache certs FILE`, then `leafcache up FILE`).
/// Its certificates are valid until 4096; a production cluster uses certificates of its own PKI.
///
/// ```
/// use leafcache::net::DevCa;
/// let ca = DevCa::new("demo")?;
/// let hub = ca.issue(&["hub".into(), "127.0.0.1".into()])?;
/// assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(hub.key_pem.contains("PRIVATE KEY"));
/// # Ok::<(), String>(())
/// ```
pub struct DevCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    cert_pem: String,
}

/// A day, as `(year, month, day)`.
pub type Day = (i32, u8, u8);

/// A certificate and its private key, as PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

fn ca_params(cluster: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("leafcache development CA of {cluster}"),
    );
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl DevCa {
    /// A new CA for cluster `cluster`, with a new key.
    ///
    /// # Errors
    /// If the key cannot be made (never, with the bundled crypto).
    pub fn new(cluster: &str) -> Result<DevCa, String> {
        let params = ca_params(cluster);
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert_pem = params.self_signed(&key).map_err(|e| e.to_string())?.pem();
        Ok(DevCa {
            params,
            key,
            cert_pem,
        })
    }

    /// The CA a previous [`new`](Self::new) made for `cluster`, from its certificate and key.
    ///
    /// # Errors
    /// If the key does not parse, or the certificate is not one this CA issues under (made for
    /// another cluster, or by another tool).
    pub fn open(cluster: &str, cert_pem: &str, key_pem: &str) -> Result<DevCa, String> {
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| format!("the CA key: {e}"))?;
        let ca = DevCa {
            params: ca_params(cluster),
            key,
            cert_pem: cert_pem.to_string(),
        };
        // Issue one and check it against the certificate: a CA of another cluster or tool fails.
        let probe = ca.issue(&["probe".into()])?;
        let roots = Arc::new(roots_of(cert_pem).map_err(|e| format!("the CA certificate: {e}"))?);
        let chain = CertificateDer::pem_slice_iter(probe.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        verify_chain(&roots, &chain).map_err(|_| {
            format!(
                "the CA certificate was not made by `leafcache certs` for cluster {cluster:?}; \
                 issue the node certificates with that CA's own tools"
            )
        })?;
        Ok(ca)
    }

    /// The CA's certificate.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for a node known by `names` (DNS names or IP addresses), usable on both
    /// ends of a link and on front doors; the first name is its common name.
    ///
    /// # Errors
    /// A name that is neither a DNS name nor an IP address.
    pub fn issue(&self, names: &[String]) -> Result<Issued, String> {
        self.issue_valid(names, None)
    }

    /// As [`issue`](Self::issue), valid only between the two dates `(year, month, day)` given
    /// (tests make expired and not-yet-valid certificates with it).
    ///
    /// # Errors
    /// As [`issue`](Self::issue).
    pub fn issue_valid(
        &self,
        names: &[String],
        valid: Option<(Day, Day)>,
    ) -> Result<Issued, String> {
        let mut params =
            rcgen::CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.clone());
        }
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        if let Some(((y0, m0, d0), (y1, m1, d1))) = valid {
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn roots_of(pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(roots)
}

/// Whether a hub's certificate is good for being dialed at `address` (`host:port`, or
/// `unix:` / `mem:`, checked as `localhost`): `Ok` if its leaves will accept it, else why not.
///
/// ```
/// use leafcache::net::{DevCa, TlsFiles, tls_covers};
/// let dir = std::env::temp_dir().join(format!("lc-covers-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let ca = DevCa::new("demo")?;
/// let hub = ca.issue(&["hub.internal".into()])?;
/// std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
/// std::fs::write(dir.join("hub.pem"), &hub.cert_pem).unwrap();
/// let files = TlsFiles::new(dir.join("ca.pem"), dir.join("hub.pem"), dir.join("unused.pem"));
/// assert!(tls_covers(&files, "hub.internal:7400").is_ok());
/// assert!(tls_covers(&files, "10.0.0.9:7400").unwrap_err().contains("is for another name"));
/// # Ok::<(), String>(())
/// ```
///
/// # Errors
/// Why not, naming the certificate file.
pub fn tls_covers(files: &TlsFiles, address: &str) -> Result<(), String> {
    let roots = Arc::new(roots(files).map_err(|e| e.to_string())?);
    let chain = read_certs(&files.cert).map_err(|e| e.to_string())?;
    let name = server_name(address)?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| e.to_string())?;
    match verifier.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now()) {
        Ok(_) => Ok(()),
        // Expiry is reported on its own; here only the name matters.
        Err(e) if is_about_time(&e) => Ok(()),
        Err(e) => Err(format!(
            "{} {} when dialed as {}",
            files.cert.display(),
            certificate_problem(&e),
            name.to_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_come_from_the_address() {
        assert_eq!(server_name("10.0.0.1:7400").unwrap().to_str(), "10.0.0.1");
        assert_eq!(server_name("[::1]:7400").unwrap().to_str(), "::1");
        assert_eq!(
            server_name("eu-1.internal:7400").unwrap().to_str(),
            "eu-1.internal"
        );
        assert_eq!(
            server_name("unix:/run/lc.sock").unwrap().to_str(),
            "localhost"
        );
    }
}
