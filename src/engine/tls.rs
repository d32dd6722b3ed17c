//! TLS with rustls, for both ends: one configuration per process (the client's roots and
//! session cache, which lets a second ramp or a reconnect storm resume instead of paying full
//! handshakes; the server's certificate and stateless tickets), one session per connection,
//! and the classes a failed client handshake is counted under, each with what to do about it.

use super::tls_stream::{Session, TlsStream};
use super::{Cause, Failure};
use crate::stats::ErrorClass;
use anyhow::{Context, Result, bail};
use mio::net::TcpStream;
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::UnbufferedServerConnection;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// The client's TLS flags, as given (and carried to worker processes as is).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsSpec {
    /// The URL's host: SNI, and the name the certificate must carry.
    pub name: String,
    /// `--ca FILE`: PEM certificates trusted besides the system's roots.
    pub ca: Vec<PathBuf>,
    /// `--insecure`: no verification of the server's certificate at all.
    pub insecure: bool,
    /// `--tls-no-resume`: every handshake a full one.
    #[serde(default)]
    pub no_resume: bool,
}

/// Everything a shard needs to open TLS sessions, shared by the shards of a process.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl Tls {
    /// `conns`: the connections this process opens, which is as many session tickets as a
    /// reconnect of all of them needs (a server may send two per connection; the newest are
    /// kept).
    pub fn new(spec: &TlsSpec, conns: u64) -> Result<Tls> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS versions")?;
        let mut config = match spec.insecure {
            true => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification::new()))
                .with_no_client_auth(),
            false => builder
                .with_root_certificates(roots(&spec.ca)?)
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let keep = usize::try_from(conns)
            .unwrap_or(usize::MAX)
            .clamp(1, TICKETS_KEPT);
        config.resumption = match spec.no_resume {
            true => rustls::client::Resumption::disabled(),
            false => rustls::client::Resumption::store(Arc::new(Tickets::new(keep))),
        };
        let host = spec.name.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .with_context(|| format!("{host} is not a name TLS can check a certificate for"))?;
        Ok(Tls {
            config: Arc::new(config),
            name,
        })
    }

    pub fn stream(&self, sock: TcpStream) -> io::Result<TlsStream> {
        let conn = UnbufferedClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(io::Error::other)?;
        Ok(TlsStream::new(sock, Session::Client(conn)))
    }
}

/// The server's TLS flags: the certificate chain and key it presents (PEM files).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerTlsSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The server's side: its certificate, and stateless session tickets, so resuming clients
/// cost the server no per-session memory.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl ServerTls {
    pub fn new(spec: &ServerTlsSpec) -> Result<ServerTls> {
        let mut config = server_config(spec)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ticketer = rustls::crypto::ring::Ticketer::new().context("session tickets")?;
        // One ticket per handshake (rustls sends two): enough for the next reconnect, which
        // brings a fresh one; a second costs the server an encryption and every client a
        // kilobyte it keeps.
        config.send_tls13_tickets = 1;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    pub fn stream(&self, sock: TcpStream) -> io::Result<TlsStream> {
        let conn =
            UnbufferedServerConnection::new(self.config.clone()).map_err(io::Error::other)?;
        Ok(TlsStream::new(sock, Session::Server(conn)))
    }
}

/// What an agent and its coordinator name their protocol in TLS (ALPN), so that neither takes
/// the other for a web server.
const LINK_ALPN: &[u8] = b"c1m-agent";

/// An agent's side of its link to a coordinator (`c1m agent --tls-cert --tls-key`).
pub fn link_server(spec: &ServerTlsSpec) -> Result<Arc<ServerConfig>> {
    let mut config = server_config(spec)?;
    config.alpn_protocols = vec![LINK_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A coordinator's side (`c1m client --agent-ca`): agents' certificates are checked against
/// these CAs alone (the agents' are the user's own, not the web's).
pub fn link_client(ca: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for file in ca {
        add_pem(&mut roots, file, "--agent-ca")?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![LINK_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A server's configuration with the certificate chain and key of `spec`.
fn server_config(spec: &ServerTlsSpec) -> Result<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&spec.cert)
        .with_context(|| format!("cannot read --tls-cert {}", spec.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--tls-cert {}: not PEM certificates", spec.cert.display()))?;
    if certs.is_empty() {
        bail!(
            "--tls-cert {} holds no certificate (PEM)",
            spec.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&spec.key)
        .with_context(|| format!("--tls-key {}: no PEM private key", spec.key.display()))?;
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("--tls-cert and --tls-key do not make a usable pair")
}

/// `--tls-self-signed`: an ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1, valid at
/// least a year, written as `cert.pem` and `key.pem` in `dir` for clients to `--ca`.
pub fn self_signed(dir: &std::path::Path) -> Result<ServerTlsSpec> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "c1m self-signed");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    // The first of January after next: at least a year.
    params.not_after = rcgen::date_time_ymd(this_year() + 2, 1, 1);
    let key = rcgen::KeyPair::generate().context("a P-256 key")?;
    let cert = params.self_signed(&key).context("self-signing")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let spec = ServerTlsSpec {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&spec.cert, cert.pem())
        .with_context(|| format!("cannot write {}", spec.cert.display()))?;
    std::fs::write(&spec.key, key.serialize_pem())
        .with_context(|| format!("cannot write {}", spec.key.display()))?;
    Ok(spec)
}

/// This year, near enough for a certificate's end (a day off at New Year does not matter).
fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1970 + (secs / 31_556_952) as i32
}

/// ring, with the AES-128/SHA-256 suites first: SHA-384's HKDF runs without hardware help
/// on x86 (SHA-NI has no SHA-512), which cost the server 12 % of its handshake CPU, for no
/// security a load test needs. Both ends prefer it, so whichever chooses, it is chosen.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

/// The client's session cache. rustls' own keeps eight TLS 1.3 tickets per server, and a
/// ticket serves one handshake: a reconnect storm of thousands would resume eight. A load
/// client talks to one server, so it keeps up to `TICKETS_KEPT` of them (a few hundred bytes
/// each), taken once per handshake under a lock.
#[derive(Debug)]
struct Tickets {
    /// Most TLS 1.3 tickets kept: each holds a copy of the server's certificate chain, so
    /// about a kilobyte.
    keep: usize,
    tls13: std::sync::Mutex<std::collections::VecDeque<Tls13Ticket>>,
    tls12: std::sync::Mutex<Option<(ServerName<'static>, rustls::client::Tls12ClientSessionValue)>>,
    kx: std::sync::Mutex<Option<(ServerName<'static>, rustls::NamedGroup)>>,
}

type Tls13Ticket = (ServerName<'static>, rustls::client::Tls13ClientSessionValue);

/// Enough for every connection of a shard-sized reconnect storm; ~200 MiB at most.
const TICKETS_KEPT: usize = 200_000;

impl Tickets {
    fn new(keep: usize) -> Tickets {
        Tickets {
            keep,
            tls13: Default::default(),
            tls12: Default::default(),
            kx: Default::default(),
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl rustls::client::ClientSessionStore for Tickets {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        *lock(&self.kx) = Some((name, group));
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        lock(&self.kx)
            .as_ref()
            .filter(|(n, _)| n == name)
            .map(|(_, g)| *g)
    }

    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        *lock(&self.tls12) = Some((name, value));
    }

    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        let held = lock(&self.tls12);
        held.as_ref()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        let mut held = lock(&self.tls12);
        if held.as_ref().is_some_and(|(n, _)| n == name) {
            *held = None;
        }
    }

    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        let mut tickets = lock(&self.tls13);
        if tickets.len() >= self.keep {
            tickets.pop_front();
        }
        tickets.push_back((name, value));
    }

    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let mut tickets = lock(&self.tls13);
        // Newest first: the likeliest to be within the server's ticket lifetime.
        let at = tickets.iter().rposition(|(n, _)| n == name)?;
        tickets.remove(at).map(|(_, v)| v)
    }
}

/// The system's roots (as rustls-native-certs finds them: SSL_CERT_FILE, SSL_CERT_DIR, the
/// distribution's bundle) and the `--ca` files.
fn roots(extra: &[PathBuf]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for file in extra {
        add_pem(&mut roots, file, "--ca")?;
    }
    Ok(roots)
}

/// The certificates of a PEM file (`flag`'s) added to `roots`.
fn add_pem(roots: &mut RootCertStore, file: &std::path::Path, flag: &str) -> Result<()> {
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(file)
        .with_context(|| format!("cannot read {flag} {}", file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{flag} {}: not PEM certificates", file.display()))?;
    if certs.is_empty() {
        bail!("{flag} {} holds no certificate (PEM)", file.display());
    }
    for cert in certs {
        roots
            .add(cert)
            .with_context(|| format!("{flag} {}: a certificate rustls refuses", file.display()))?;
    }
    Ok(())
}

/// The failure a TLS error stands for, with what to do about it; `None` for an error that is
/// not TLS's.
pub(crate) fn classify(e: &io::Error) -> Option<Failure> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    let (class, hint) = match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => (
                ErrorClass::TlsUnknownIssuer,
                "the server's certificate is not signed by a root this machine trusts: pass \
                 its CA with --ca FILE (PEM), or skip verification with --insecure",
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                (
                    ErrorClass::TlsNameMismatch,
                    "the server's certificate is not valid for the URL's host: put a name the \
                 certificate names in --url (an IP address must be in its subjectAltName)",
                )
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => (
                ErrorClass::TlsExpired,
                "the server's certificate is outside its validity period: renew it, or check \
                 this machine's clock",
            ),
            _ => (
                ErrorClass::TlsHandshake,
                "the server's certificate was refused",
            ),
        },
        rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
        | rustls::Error::PeerIncompatible(_) => (
            ErrorClass::TlsVersion,
            "the server and c1m share no TLS version or cipher suite (c1m speaks TLS 1.2 and \
             1.3 with ECDHE and AEAD suites)",
        ),
        _ => (ErrorClass::TlsHandshake, "the TLS handshake failed"),
    };
    Some(Failure {
        class,
        cause: Cause::Text(format!("{hint} ({tls})")),
    })
}

/// `--insecure`: accepts any certificate, and still checks the handshake's signatures so the
/// session is a working one.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl NoVerification {
    fn new() -> NoVerification {
        NoVerification(provider())
    }
}

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
