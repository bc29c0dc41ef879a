//! A lean HTTPS client: one keep-alive HTTP/1.1 connection over rustls, driven by hyper's
//! low-level connection API, with the headers built once.
//!
//! The load generator shares the machine's cores with the server, so every request costs as
//! little as it can: no pool, no redirects, no per-request header parsing; the body is a
//! reference-counted `Bytes` chosen from a pool formatted before the load.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest a request may take before the client gives up; the server's own limit is 10 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The header that makes a POST safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How to reach the server: address, TLS trusting only its certificate, and the token.
#[derive(Clone)]
pub struct Target {
    addr: SocketAddr,
    connector: TlsConnector,
    host: HeaderValue,
    authorization: HeaderValue,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("addr", &self.addr).finish()
    }
}

impl Target {
    /// A target that verifies the server against `cert` (its self-signed certificate).
    pub fn new(addr: SocketAddr, cert: &Path, token: &str) -> Result<Target> {
        let mut roots = RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("read {}", cert.display()))?
        {
            let der = der.with_context(|| format!("parse {}", cert.display()))?;
            roots
                .add(der)
                .with_context(|| format!("trust {}", cert.display()))?;
        }
        // Explicit provider and versions, the same choice the server makes (aws-lc-rs).
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Target {
            addr,
            connector: TlsConnector::from(Arc::new(config)),
            host: HeaderValue::from_str(&addr.to_string()).context("host header")?,
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token is not a valid header value")?,
        })
    }

    /// Opens a connection: TCP, TLS handshake (the certificate names 127.0.0.1), HTTP/1.1.
    pub async fn connect(&self) -> Result<Conn> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect to {}", self.addr))?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; errors surface on send.
            let _ = connection.await;
        });
        Ok(Conn {
            sender,
            host: self.host.clone(),
            authorization: self.authorization.clone(),
        })
    }
}

/// One keep-alive connection; requests go one at a time.
#[derive(Debug)]
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    host: HeaderValue,
    authorization: HeaderValue,
}

/// A response: status and the whole body.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body parsed as JSON of type `T`, failing unless the status is `expected`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, expected: StatusCode) -> Result<T> {
        if self.status != expected {
            bail!(
                "expected {expected}, got {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        serde_json::from_slice(&self.body).context("parse the answer")
    }
}

impl Conn {
    /// POSTs a JSON body with an idempotency key.
    pub async fn post(&mut self, uri: Uri, body: Bytes, idempotency_key: &str) -> Result<Answer> {
        let key = HeaderValue::from_str(idempotency_key).context("idempotency key")?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(IDEMPOTENCY_KEY, key)
            .body(Full::new(body))
            .context("build the request")?;
        self.send(request).await
    }

    /// GETs a path.
    pub async fn get(&mut self, uri: Uri) -> Result<Answer> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .body(Full::new(Bytes::new()))
            .context("build the request")?;
        self.send(request).await
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Answer> {
        let work = async {
            self.sender.ready().await.context("connection lost")?;
            let response = self
                .sender
                .send_request(request)
                .await
                .context("request failed")?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .context("read the answer")?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .with_context(|| format!("no answer within {REQUEST_TIMEOUT:?}"))?
    }
}
