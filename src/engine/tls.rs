//! TLS for the client (`wss://`), with rustls: one configuration per process (roots, ALPN,
//! the session cache that lets a second ramp or a reconnect storm resume instead of paying
//! full handshakes), one session per connection, and the classes a failed handshake is
//! counted under, each with what to do about it.

use super::{Cause, Failure};
use crate::stats::ErrorClass;
use anyhow::{Context, Result, bail};
use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConnection, HandshakeKind, RootCertStore};
use std::io::{self, Read as _, Write as _};
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
}

/// Everything a shard needs to open TLS sessions, shared by the shards of a process.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl Tls {
    pub fn new(spec: &TlsSpec) -> Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
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
        let host = spec.name.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .with_context(|| format!("{host} is not a name TLS can check a certificate for"))?;
        Ok(Tls {
            config: Arc::new(config),
            name,
        })
    }

    pub fn stream(&self, sock: TcpStream) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(io::Error::other)?;
        Ok(TlsStream { sock, conn })
    }
}

/// The system's roots (as rustls-native-certs finds them: SSL_CERT_FILE, SSL_CERT_DIR, the
/// distribution's bundle) and the `--ca` files.
fn roots(extra: &[PathBuf]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for file in extra {
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(file)
            .with_context(|| format!("cannot read --ca {}", file.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("--ca {}: not PEM certificates", file.display()))?;
        if certs.is_empty() {
            bail!("--ca {} holds no certificate (PEM)", file.display());
        }
        for cert in certs {
            roots.add(cert).with_context(|| {
                format!("--ca {}: a certificate rustls refuses", file.display())
            })?;
        }
    }
    Ok(roots)
}

/// One connection's TLS session over its socket.
#[derive(Debug)]
pub struct TlsStream {
    pub(super) sock: TcpStream,
    conn: ClientConnection,
}

impl TlsStream {
    /// Decrypted bytes, reading and decrypting records as needed. `WouldBlock` once the socket
    /// has nothing more.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // WouldBlock included: what the handshake owes the server still goes out.
                    self.flush()?;
                    return Err(e);
                }
            }
            if let Err(e) = self.conn.process_new_packets() {
                // Tell the server why (an alert) before the connection is dropped.
                let _ = self.flush();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            self.flush()?;
        }
    }

    /// Takes `buf` whole into the session (sent once the handshake is done) and sends what
    /// it can. Before the socket has connected it takes nothing and returns that error, so a
    /// caller may retry the same bytes on the next readiness.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flush()?;
        let n = self.conn.writer().write(buf)?;
        match self.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    /// Sends what the session has for the socket, until it would block.
    fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }
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
        NoVerification(Arc::new(rustls::crypto::ring::default_provider()))
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
