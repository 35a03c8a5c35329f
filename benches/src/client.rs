//! One keep-alive HTTP/1.1 connection over TLS (rustls, ALPN `http/1.1`) or plain TCP, the way
//! a token client talks to its authority. hyper's connection-level client: no pool, no
//! redirects, nothing between the driver and the socket.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where connections go: scheme, socket address, the authority for `Host`, TLS settings.
#[derive(Clone)]
pub struct Endpoint {
    pub base_url: String,
    /// `host:port` as written in the base URL (the `Host` header).
    pub authority: String,
    pub addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The answer to one request, body read to the end.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Endpoint {
    /// `https://127.0.0.1:8443` (trusting the CA certificates in `ca_pem`) or
    /// `http://127.0.0.1:8080`. The host must be an IP address or `localhost`: the driver
    /// only ever talks to this machine.
    pub fn new(base_url: &str, ca_pem: Option<&str>) -> anyhow::Result<Endpoint> {
        let base_url = base_url.trim_end_matches('/').to_string();
        let (https, authority) = if let Some(rest) = base_url.strip_prefix("https://") {
            (true, rest.to_string())
        } else if let Some(rest) = base_url.strip_prefix("http://") {
            (false, rest.to_string())
        } else {
            bail!("target '{base_url}' is neither http:// nor https://");
        };
        if authority.contains('/') {
            bail!("target '{base_url}' must have no path");
        }
        let (host, port) = split_authority(&authority, if https { 443 } else { 80 })?;
        let ip: std::net::IpAddr = if host.eq_ignore_ascii_case("localhost") {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            host.parse()
                .map_err(|_| anyhow!("target host '{host}' is not an IP address or localhost"))?
        };
        let tls = if https {
            let pem = ca_pem.ok_or_else(|| anyhow!("an https target needs a CA (--ca)"))?;
            let mut roots = rustls::RootCertStore::empty();
            for der in pem_blocks(pem, "CERTIFICATE") {
                roots
                    .add(der.into())
                    .context("a CA certificate rustls refuses")?;
            }
            if roots.is_empty() {
                bail!("the CA file holds no CERTIFICATE block");
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.to_string())
                .map_err(|_| anyhow!("'{host}' is not a TLS server name"))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Endpoint {
            base_url,
            authority,
            addr: SocketAddr::new(ip, port),
            tls,
        })
    }

    pub fn with_ca_file(base_url: &str, ca: Option<&Path>) -> anyhow::Result<Endpoint> {
        let pem = match ca {
            Some(p) => Some(
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            ),
            None => None,
        };
        Endpoint::new(base_url, pem.as_deref())
    }

    /// Opens a connection (TCP, TLS handshake, HTTP/1.1).
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let sender = match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?;
                handshake(TokioIo::new(tls)).await?
            }
            None => handshake(TokioIo::new(tcp)).await?,
        };
        Ok(Connection { sender })
    }
}

async fn handshake<T>(io: T) -> anyhow::Result<http1::SendRequest<Full<Bytes>>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await.context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        // Ends when the server closes or the sender is dropped.
        let _ = conn.await;
    });
    Ok(sender)
}

/// One open connection; one request at a time.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Answer> {
        self.sender.ready().await.context("connection closed")?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// False once the server closed the connection.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

fn split_authority(authority: &str, default_port: u16) -> anyhow::Result<(&str, u16)> {
    // [::1]:8443
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("bad authority '{authority}'"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p
                .parse()
                .map_err(|_| anyhow!("bad port in '{authority}'"))?,
            None => default_port,
        };
        return Ok((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((
            host,
            port.parse()
                .map_err(|_| anyhow!("bad port in '{authority}'"))?,
        )),
        None => Ok((authority, default_port)),
    }
}

/// The DER bodies of every `-----BEGIN {label}-----` block in a PEM text.
pub fn pem_blocks(pem: &str, label: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let Some(stop) = after.find(&end) else { break };
        let b64: String = after[..stop]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(der);
        }
        rest = &after[stop + end.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_loopback_urls() {
        let e = Endpoint::new("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(e.authority, "127.0.0.1:8080");
        assert_eq!(e.base_url, "http://127.0.0.1:8080");
        assert_eq!(e.addr, "127.0.0.1:8080".parse().unwrap());
        let e = Endpoint::new("http://[::1]:81", None).unwrap();
        assert_eq!(e.addr, "[::1]:81".parse().unwrap());
        let e = Endpoint::new("http://localhost", None).unwrap();
        assert_eq!(e.addr.port(), 80);
        assert!(Endpoint::new("ftp://127.0.0.1", None).is_err());
        assert!(Endpoint::new("http://example.com:80", None).is_err());
        assert!(Endpoint::new("http://127.0.0.1:80/path", None).is_err());
        assert!(
            Endpoint::new("https://127.0.0.1:443", None).is_err(),
            "https needs a CA"
        );
        assert!(Endpoint::new("https://127.0.0.1:443", Some("no pem")).is_err());
    }

    #[test]
    fn pem_blocks_are_all_found() {
        let pem = "x\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nAw==\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_blocks(pem, "CERTIFICATE"), vec![vec![0, 1, 2], vec![3]]);
        assert!(pem_blocks(pem, "PRIVATE KEY").is_empty());
    }
}
