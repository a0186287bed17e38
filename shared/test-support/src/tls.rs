//! TLS for the services' integration tests: a development PKI written to a temporary
//! directory, and clients that trust its CA.

use dev_pki::{DevCa, Leaf};
use grpc_edge::tls::TlsArgs;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::{net::SocketAddr, path::PathBuf, sync::Arc};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A development CA, a server certificate and a client certificate, as files in a fresh
/// temporary directory (removed on drop): `ca.pem`, `server.pem`, `server-key.pem`,
/// `client.pem`, `client-key.pem`.
pub struct TlsFiles {
    /// The directory.
    pub dir: PathBuf,
    /// The CA that issued the certificates.
    pub ca: DevCa,
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// The server certificate (for `localhost`, `127.0.0.1` and `::1`).
    pub server: Leaf,
    /// A client certificate (named `task-service`).
    pub client: Leaf,
}

impl TlsFiles {
    /// A new PKI, written out.
    pub fn new() -> Self {
        let dir = std::env::temp_dir()
            .join("todo-grpc-tests")
            .join(format!("tls-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let ca = DevCa::new().expect("a CA");
        let files = Self {
            dir,
            ca_pem: ca.cert_pem(),
            server: ca.server(&[]).expect("a server certificate"),
            client: ca.client("task-service").expect("a client certificate"),
            ca,
        };
        files.write("ca.pem", &files.ca_pem);
        files.write("server.pem", &files.server.cert_pem);
        files.write("server-key.pem", &files.server.key_pem);
        files.write("client.pem", &files.client.cert_pem);
        files.write("client-key.pem", &files.client.key_pem);
        files
    }

    /// The path of file `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `contents` to file `name`, atomically (a rename).
    pub fn write(&self, name: &str, contents: &str) {
        let partial = self.dir.join(format!(".{name}.partial"));
        std::fs::write(&partial, contents).expect("write a PEM file");
        std::fs::rename(&partial, self.path(name)).expect("rename a PEM file");
    }

    /// Serves `server.pem` / `server-key.pem`.
    pub fn serve_with(&self, args: &mut TlsArgs) {
        args.tls_cert_file = Some(self.path("server.pem"));
        args.tls_key_file = Some(self.path("server-key.pem"));
    }

    /// Issues a new server certificate and writes it over `server.pem` / `server-key.pem`
    /// (the certificate first, as a careless rotation would); returns it.
    pub fn rotate_server(&self) -> Leaf {
        let leaf = self.ca.server(&[]).expect("a server certificate");
        self.write("server.pem", &leaf.cert_pem);
        self.write("server-key.pem", &leaf.key_pem);
        leaf
    }

    /// A tonic client TLS configuration trusting this CA, with the client certificate if
    /// `with_client_cert`.
    pub fn client_config(&self, with_client_cert: bool) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if with_client_cert {
            config.identity(Identity::from_pem(
                &self.client.cert_pem,
                &self.client.key_pem,
            ))
        } else {
            config
        }
    }

    /// A connected channel to `https://addr` trusting this CA.
    pub async fn channel(
        &self,
        addr: SocketAddr,
        with_client_cert: bool,
    ) -> Result<Channel, tonic::transport::Error> {
        Endpoint::from_shared(format!("https://{addr}"))?
            .tls_config(self.client_config(with_client_cert))?
            .connect()
            .await
    }

    /// A raw TLS connection to `addr` trusting this CA, offering `alpn` (e.g. `http/1.1`).
    pub async fn connect_raw(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(std::io::Error::other)?)
                .map_err(std::io::Error::other)?;
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(grpc_edge::tls::crypto_provider())
                .with_safe_default_protocol_versions()
                .map_err(std::io::Error::other)?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::IpAddress(addr.ip().into());
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }
}

impl Default for TlsFiles {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The leaf certificate a TLS connection's server presented.
pub fn peer_leaf(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
}
