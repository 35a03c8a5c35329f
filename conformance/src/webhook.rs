//! The HTTPS side of a client's webhook. The contract lets the client serve plain HTTP on
//! `M365_WEBHOOK_LISTEN`; the Management API calls only `https://` receivers, so the runner
//! puts a TLS front, with a certificate issued by the emulator's CA, on another loopback
//! port and gives the client that URL (`M365_WEBHOOK_ADDRESS`) to register.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A TLS front forwarding to the client's plain-HTTP receiver; stops when dropped.
pub struct WebhookFront {
    /// Where the client listens (`127.0.0.1:<port>`).
    pub listen: String,
    /// The URL the client registers (`https://127.0.0.1:<front port>/m365-webhook`).
    pub address: String,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookFront {
    pub async fn start(tls: Arc<ServerConfig>) -> Result<WebhookFront> {
        // A free port for the client: bound and released (the client binds it next).
        let probe = std::net::TcpListener::bind("127.0.0.1:0").context("a port for the client")?;
        let listen = probe.local_addr()?.to_string();
        drop(probe);
        let front = TcpListener::bind("127.0.0.1:0")
            .await
            .context("the webhook's TLS front")?;
        let address = format!("https://{}/m365-webhook", front.local_addr()?);
        let acceptor = TlsAcceptor::from(tls);
        let target = listen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = front.accept().await {
                let (acceptor, target) = (acceptor.clone(), target.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    // Nobody listening: the caller sees the connection close, as it would.
                    let Ok(mut plain) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(WebhookFront {
            listen,
            address,
            task,
        })
    }
}

impl Drop for WebhookFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
