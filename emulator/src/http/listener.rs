//! The accept loop: TLS (rustls) or plain TCP, HTTP/1.1 and HTTP/2 (ALPN or prior knowledge)
//! through hyper-util's auto builder, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::header_case::ExactHeaderCase;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::{ConnInfo, Scheme};
use crate::faults::layer::AbortConnection;
use crate::faults::rules::ConnectionFault;

/// The service error that makes hyper close a connection without answering.
#[derive(Debug)]
pub struct ConnectionAborted;

impl std::fmt::Display for ConnectionAborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by a fault rule")
    }
}

impl std::error::Error for ConnectionAborted {}

/// How long open connections get to finish after shutdown is requested.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that has not finished its TLS handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` turns true, then drains connections.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let scheme = if tls.is_some() {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!("accept failed: {e}");
                    // Out of file descriptors and similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            scheme,
            local,
            peer,
        };
        // A duplicate handle on the socket, so a fault can turn the close into a TCP reset.
        let socket = socket2::SockRef::from(&stream)
            .try_clone()
            .ok()
            .map(Arc::new);
        let service = router_service(router.clone(), info, socket);
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => return,
                    };
                    serve_connection(tls, service, watcher, peer).await;
                }
                None => serve_connection(stream, service, watcher, peer).await,
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("some connections did not finish within {DRAIN_TIMEOUT:?}");
    }
}

/// The hyper service of one connection: `router`, with the connection facts as a request
/// extension, and connection faults (`reset`, `drop`) turned into a closed connection.
/// `socket` is a duplicate handle on the TCP socket, so a reset can set a zero linger.
pub fn router_service(
    router: Router,
    info: ConnInfo,
    socket: Option<Arc<socket2::Socket>>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = ConnectionAborted,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info);
        let router = router.clone();
        let socket = socket.clone();
        async move {
            let resp = match router.oneshot(req.map(axum::body::Body::new)).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            match resp.extensions().get::<AbortConnection>() {
                None => Ok::<_, ConnectionAborted>(resp),
                Some(AbortConnection(kind)) => {
                    if *kind == ConnectionFault::Reset {
                        if let Some(s) = &socket {
                            let _ = s.set_linger(Some(Duration::ZERO));
                        }
                    }
                    Err(ConnectionAborted)
                }
            }
        }
    })
}

/// Serves one connection (plain TCP, TLS, or a TLS tunnel of the proxy) with HTTP/1.1 or
/// HTTP/2, under the listener's graceful-shutdown watch.
pub async fn serve_connection<T, S>(stream: T, service: S, watcher: Watcher, peer: SocketAddr)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = ConnectionAborted,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let io = TokioIo::new(ExactHeaderCase::new(stream));
    let conn = builder.serve_connection_with_upgrades(io, service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%peer, "connection error: {e}");
    }
}
