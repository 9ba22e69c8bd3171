//! Real handshakes over loopback TCP: tokio-rustls on both ends, and `openssl s_client`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore,
    ServerConfig, SignatureScheme,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::TestCert;
use crate::tls::{Alpn, CertResolver, server_config};

/// What the server sends once the handshake is done, so the client sees data flow.
const GREETING: &[u8] = b"hello over tls";

/// What the server saw of one accepted connection.
#[derive(Debug)]
struct ServerSide {
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
}

/// What the client saw.
#[derive(Debug)]
struct ClientSide {
    leaf: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
    version: Option<ProtocolVersion>,
}

/// The three certificates of the SNI tests: `a` (the default, first), `b` and `*.wild.test`.
struct Certs {
    a: TestCert,
    b: TestCert,
    wild: TestCert,
}

impl Certs {
    fn new() -> Self {
        Self {
            a: TestCert::new("a.test", &["a.test"]),
            b: TestCert::new("b.test", &["b.test"]),
            wild: TestCert::new("wild.test", &["*.wild.test"]),
        }
    }

    fn server_config(&self, alpn: Alpn) -> Arc<ServerConfig> {
        let loaded = [&self.a, &self.b, &self.wild].map(TestCert::load).to_vec();
        server_config(Arc::new(CertResolver::new(loaded).unwrap()), alpn)
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        for cert in [&self.a, &self.b, &self.wild] {
            roots.add(cert.der.clone()).unwrap();
        }
        Arc::new(roots)
    }
}

/// Accepts one connection on an OS-chosen loopback port, completes the handshake and greets.
async fn serve_one(config: Arc<ServerConfig>) -> (SocketAddr, JoinHandle<io::Result<ServerSide>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(config).accept(tcp).await?;
        let (_, connection) = tls.get_ref();
        let side = ServerSide {
            sni: connection.server_name().map(str::to_owned),
            alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
        };
        tls.write_all(GREETING).await?;
        tls.shutdown().await?;
        Ok(side)
    });
    (addr, task)
}

/// Verifies the chain against the test roots like any client, but accepts a certificate that
/// does not name the server: the fallback cases must see *which* certificate they got.
#[derive(Debug)]
struct NameTolerantVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for NameTolerantVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// How the test client verifies and what it offers.
struct Client {
    roots: Arc<RootCertStore>,
    alpn: Vec<Vec<u8>>,
    tolerate_name_mismatch: bool,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
}

impl Client {
    fn new(roots: Arc<RootCertStore>) -> Self {
        Self {
            roots,
            alpn: Vec::new(),
            tolerate_name_mismatch: false,
            versions: rustls::DEFAULT_VERSIONS,
        }
    }

    fn config(&self) -> ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.versions)
            .unwrap();
        let mut config = if self.tolerate_name_mismatch {
            let webpki = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider)
                .build()
                .unwrap();
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NameTolerantVerifier(webpki)))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth()
        };
        config.alpn_protocols = self.alpn.clone();
        config
    }

    /// Handshakes with `addr` for `server_name` (an IP address sends no SNI) and reads the
    /// greeting.
    async fn connect(&self, addr: SocketAddr, server_name: &str) -> io::Result<ClientSide> {
        let server_name = ServerName::try_from(server_name.to_owned()).unwrap();
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = TlsConnector::from(Arc::new(self.config()))
            .connect(server_name, tcp)
            .await?;
        let mut greeting = Vec::new();
        tls.read_to_end(&mut greeting).await?;
        assert_eq!(greeting, GREETING);
        let (_, connection) = tls.get_ref();
        Ok(ClientSide {
            leaf: connection.peer_certificates().unwrap()[0].clone(),
            alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
            version: connection.protocol_version(),
        })
    }
}

/// One handshake against a fresh server: what each side saw.
async fn handshake(
    config: Arc<ServerConfig>,
    client: &Client,
    name: &str,
) -> (ServerSide, ClientSide) {
    let (addr, server) = serve_one(config).await;
    let client_side = client.connect(addr, name).await.unwrap();
    let server_side = server.await.unwrap().unwrap();
    (server_side, client_side)
}

#[tokio::test]
async fn sni_picks_the_certificate_in_real_handshakes() {
    let certs = Certs::new();
    let config = certs.server_config(Alpn::default());
    let strict = Client::new(certs.roots());
    let tolerant = Client {
        tolerate_name_mismatch: true,
        ..Client::new(certs.roots())
    };

    // Names a certificate serves: the client verifies the name, as any browser would.
    for (name, expected, sni) in [
        ("a.test", &certs.a, "a.test"),
        ("b.test", &certs.b, "b.test"),
        ("B.Test", &certs.b, "b.test"),
        ("x.wild.test", &certs.wild, "x.wild.test"),
    ] {
        let (server, client) = handshake(config.clone(), &strict, name).await;
        assert_eq!(client.leaf, expected.der, "{name}");
        assert_eq!(server.sni.as_deref(), Some(sni), "{name}");
    }

    // Names nothing serves get the default (the first certificate, a.test).
    for name in ["y.x.wild.test", "wild.test", "unknown.test"] {
        let (server, client) = handshake(config.clone(), &tolerant, name).await;
        assert_eq!(client.leaf, certs.a.der, "{name}");
        assert_eq!(server.sni.as_deref(), Some(name));
    }

    // A client connecting by IP address sends no SNI: the default again.
    let (server, client) = handshake(config.clone(), &tolerant, "127.0.0.1").await;
    assert_eq!(client.leaf, certs.a.der);
    assert_eq!(server.sni, None);

    // The strict client refuses the default certificate for a name it does not carry.
    let (addr, server) = serve_one(config).await;
    let err = strict.connect(addr, "unknown.test").await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn alpn_negotiates_h2_or_http11() {
    let certs = Certs::new();
    let both = certs.server_config(Alpn::H2AndHttp11);
    let http11_only = certs.server_config(Alpn::Http11Only);
    let offering = |protocols: &[&[u8]]| Client {
        alpn: protocols.iter().map(|p| p.to_vec()).collect(),
        ..Client::new(certs.roots())
    };

    for (config, offered, expected) in [
        (&both, &[&b"h2"[..], b"http/1.1"][..], Some(&b"h2"[..])),
        // The server's preference wins whatever the client's order.
        (&both, &[b"http/1.1", b"h2"], Some(b"h2")),
        (&both, &[b"http/1.1"], Some(b"http/1.1")),
        (&http11_only, &[b"h2", b"http/1.1"], Some(b"http/1.1")),
        // A client without ALPN still connects (HTTP/1.1 by default).
        (&both, &[], None),
    ] {
        let (server, client) = handshake(config.clone(), &offering(offered), "a.test").await;
        assert_eq!(client.alpn.as_deref(), expected, "offered {offered:?}");
        assert_eq!(server.alpn.as_deref(), expected);
    }

    // h2 alone against an http/1.1-only listener: no common protocol, refused.
    let (addr, server) = serve_one(http11_only).await;
    assert!(offering(&[b"h2"]).connect(addr, "a.test").await.is_err());
    let err = server.await.unwrap().unwrap_err();
    assert_eq!(rustls_error(&err), &rustls::Error::NoApplicationProtocol);
}

/// The rustls error inside a tokio-rustls I/O error.
fn rustls_error(err: &io::Error) -> &rustls::Error {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a rustls error: {err:?}"))
}

#[tokio::test]
async fn tls12_and_tls13_clients_are_both_served() {
    let certs = Certs::new();
    let config = certs.server_config(Alpn::default());
    static TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    for (versions, expected) in [
        (TLS12_ONLY, ProtocolVersion::TLSv1_2),
        (TLS13_ONLY, ProtocolVersion::TLSv1_3),
        (rustls::ALL_VERSIONS, ProtocolVersion::TLSv1_3),
    ] {
        let client = Client {
            versions,
            ..Client::new(certs.roots())
        };
        let (_, client) = handshake(config.clone(), &client, "b.test").await;
        assert_eq!(client.version, Some(expected));
        assert_eq!(client.leaf, certs.b.der);
    }
}

/// Runs `openssl s_client` against `addr` with `args`, stdin closed so it quits after the
/// handshake; returns its stdout and stderr.
async fn s_client(addr: SocketAddr, args: &[&str]) -> String {
    let output = tokio::process::Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("openssl is installed");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[tokio::test]
async fn openssl_s_client_gets_the_certificate_for_its_sni() {
    let certs = Certs::new();
    let (addr, server) = serve_one(certs.server_config(Alpn::default())).await;
    let output = s_client(addr, &["-servername", "b.test", "-alpn", "h2,http/1.1"]).await;
    // OpenSSL 3 prints `subject=CN = b.test`; 1.1 printed `subject=/CN=b.test`.
    assert!(
        output.contains("subject=CN = b.test") || output.contains("subject=CN=b.test"),
        "{output}"
    );
    assert!(output.contains("ALPN protocol: h2"), "{output}");
    let server = server.await.unwrap().unwrap();
    assert_eq!(server.sni.as_deref(), Some("b.test"));
}

#[tokio::test]
async fn a_tls11_client_is_refused() {
    let certs = Certs::new();
    let (addr, server) = serve_one(certs.server_config(Alpn::default())).await;
    // OpenSSL 3 only offers TLS 1.1 at security level 0.
    let args = [
        "-tls1_1",
        "-cipher",
        "DEFAULT@SECLEVEL=0",
        "-servername",
        "a.test",
    ];
    let output = s_client(addr, &args).await;
    assert!(output.contains("Protocol  : TLSv1.1"), "{output}");
    assert!(
        output.contains("Cipher is (NONE)"),
        "a TLS 1.1 session was established: {output}"
    );
    // The ClientHello reached rustls, which refused it as incompatible (today because a TLS
    // 1.1 hello has no signature_algorithms extension; the precise reason is rustls' business).
    let err = server.await.unwrap().unwrap_err();
    assert!(
        matches!(rustls_error(&err), rustls::Error::PeerIncompatible(_)),
        "{err:?}; openssl said: {output}"
    );
}
