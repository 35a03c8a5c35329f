//! Proxy mode: a forward HTTP proxy for programs whose Microsoft host names cannot be changed.
//! A client with `HTTPS_PROXY` pointing here sends `CONNECT login.microsoftonline.com:443`; the
//! proxy answers `200`, terminates TLS with a leaf for that host issued by the emulator's CA
//! (see [`leaf`]), and serves the tunnel with the same router as the other listeners, with the
//! client's real `Host`. So discovery documents, `contentUri`, `NextPageUri` and the journal
//! show the real host names. A `CONNECT` to any other host or port is refused with a 403 and
//! journaled (see [`hosts`]); nothing is ever forwarded to the network. Plain-HTTP proxy
//! requests (absolute form) are served only for IMDS (`http://169.254.169.254/metadata/…`);
//! requests in origin form (`GET /_emulator/ca.pem`) are served as on the plain-HTTP listener.

pub mod hosts;
pub mod leaf;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::listener::{
    router_service, serve_connection, ConnectionAborted, DRAIN_TIMEOUT, HANDSHAKE_TIMEOUT,
};
use crate::http::{ConnInfo, Scheme};
use crate::journal::{JournalEntry, RecordedHeaders};
use crate::ready::ReadyInfo;
use crate::state::Core;

/// The error code a refused proxy request carries in the journal.
pub const REFUSED_CODE: &str = "HostNotServed";

/// What every connection of the proxy listener shares.
struct Proxy {
    core: Arc<Core>,
    router: Router,
    allowed: hosts::AllowList,
    leaves: leaf::LeafCache,
}

/// Serves the proxy on `listener` until `shutdown` turns true, then drains connections
/// (tunnels included).
pub async fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    let allowed = hosts::AllowList::new(
        core.initial_directory()
            .world
            .acs
            .iter()
            .map(|a| a.host.clone()),
    );
    let proxy = Arc::new(Proxy {
        core,
        router,
        allowed,
        leaves: leaf::LeafCache::default(),
    });
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!("proxy accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let socket = socket2::SockRef::from(&stream)
            .try_clone()
            .ok()
            .map(Arc::new);
        let plain = ConnInfo {
            scheme: Scheme::Http,
            local,
            peer,
        };
        let tunnel = Tunnel {
            proxy: proxy.clone(),
            info: ConnInfo {
                scheme: Scheme::Https,
                ..plain
            },
            socket: socket.clone(),
            // A CONNECT hands the connection over to its tunnel, so one watcher suffices.
            watcher: Arc::new(Mutex::new(Some(graceful.watcher()))),
        };
        let direct = router_service(proxy.router.clone(), plain, socket);
        let proxy = proxy.clone();
        let front = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (proxy, direct, tunnel) = (proxy.clone(), direct.clone(), tunnel.clone());
            async move { front(&proxy, direct, tunnel, req).await }
        });
        let watcher = graceful.watcher();
        tokio::spawn(serve_connection(stream, front, watcher, peer));
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("some proxy connections did not finish within {DRAIN_TIMEOUT:?}");
    }
}

/// What a `CONNECT` needs to serve its tunnel.
#[derive(Clone)]
struct Tunnel {
    proxy: Arc<Proxy>,
    info: ConnInfo,
    socket: Option<Arc<socket2::Socket>>,
    watcher: Arc<Mutex<Option<Watcher>>>,
}

/// One request to the proxy itself: `CONNECT`, a plain-HTTP proxy request, or a request for
/// the emulator (origin form).
async fn front<S>(
    proxy: &Proxy,
    direct: S,
    tunnel: Tunnel,
    mut req: Request<Incoming>,
) -> Result<Response, ConnectionAborted>
where
    S: Service<Request<Incoming>, Response = Response, Error = ConnectionAborted>,
{
    if req.method() == Method::CONNECT {
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        let target = match proxy.allowed.check_connect(authority.as_deref()) {
            Ok(target) => target,
            Err(refusal) => {
                let shown = authority.unwrap_or_else(|| hosts::printable(&req.uri().to_string()));
                return Ok(refuse(
                    proxy,
                    &req,
                    &shown,
                    "proxy.connect",
                    &refusal.message,
                ));
            }
        };
        let config = match proxy.leaves.server_config(&proxy.core.pki, &target.host) {
            Ok(config) => config,
            Err(e) => {
                tracing::warn!("cannot issue a TLS leaf for {}: {e}", target.host);
                let message = format!("cannot issue a certificate for {}: {e}", target.host);
                return Ok(text(StatusCode::BAD_GATEWAY, message));
            }
        };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let upgraded = match upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::debug!(host = %target.host, "CONNECT upgrade failed: {e}");
                    return;
                }
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let handshake = acceptor.accept(TokioIo::new(upgraded));
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(host = %target.host, "TLS handshake in tunnel failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let taken = tunnel
                .watcher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let Some(watcher) = taken else { return };
            let service = router_service(tunnel.proxy.router.clone(), tunnel.info, tunnel.socket);
            serve_connection(tls, service, watcher, tunnel.info.peer).await;
        });
        return Ok(StatusCode::OK.into_response());
    }
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        // Absolute form: a plain-HTTP proxy request. Only IMDS is served.
        let host = req.uri().host().unwrap_or_default().to_ascii_lowercase();
        let is_http = req.uri().scheme_str() == Some("http");
        let port_ok = req.uri().port_u16().is_none_or(|p| p == 80);
        if is_http && port_ok && host == hosts::IMDS_HOST {
            return direct.call(req).await;
        }
        let shown = req
            .uri()
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_string());
        let message = if host == hosts::IMDS_HOST {
            format!("{} is served over http on port 80 only", hosts::IMDS_HOST)
        } else {
            format!(
                "plain-HTTP proxy requests are served only for IMDS (http://{}/metadata/…); \
                 {} is not forwarded: the emulator never connects to the network",
                hosts::IMDS_HOST,
                hosts::printable(&shown)
            )
        };
        return Ok(refuse(proxy, &req, &shown, "proxy.forward", &message));
    }
    direct.call(req).await
}

/// The 403 for a refused target, journaled with the host the client asked for.
fn refuse(
    proxy: &Proxy,
    req: &Request<Incoming>,
    host: &str,
    operation: &str,
    message: &str,
) -> Response {
    let status = StatusCode::FORBIDDEN;
    let headers = RecordedHeaders::redacted(req.headers());
    let path = if req.method() == Method::CONNECT {
        String::new()
    } else {
        req.uri().path().to_string()
    };
    proxy.core.journal.record(JournalEntry {
        id: 0,
        time: proxy.core.clock.now(),
        method: req.method().to_string(),
        host: hosts::printable(host),
        path,
        query: None,
        headers,
        body_size: None,
        service: "proxy".into(),
        operation: operation.into(),
        tenant: None,
        client_id: None,
        user: None,
        token_id: None,
        status: status.as_u16(),
        error_code: Some(REFUSED_CODE.into()),
        fault: None,
        assertion: None,
        duration_ms: 0.0,
    });
    tracing::info!("proxy refused {} {host}: {message}", req.method());
    let mut resp = text(status, format!("m365-emulator proxy: {message}\n"));
    if let Ok(v) = HeaderValue::from_str(REFUSED_CODE) {
        resp.headers_mut().insert("x-m365emu-error", v);
    }
    resp
}

fn text(status: StatusCode, message: String) -> Response {
    let mut resp = (status, message).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `GET /_emulator/ca.pem`: the CA certificate clients must trust (on every listener).
pub fn router() -> Router<Arc<Core>> {
    Router::new().route("/_emulator/ca.pem", get(ca_pem))
}

async fn ca_pem(State(core): State<Arc<Core>>) -> Response {
    let mut resp = core.pki.ca_pem().to_string().into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    resp.headers_mut().insert(
        http::header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"m365-emulator-ca.pem\""),
    );
    resp.extensions_mut()
        .insert(crate::http::Outcome::new("admin.ca"));
    resp
}

/// Shell exports for proxy mode (`m365-emulator env --proxy`): the proxy, loopback kept out of
/// it, the CA for Python, OpenSSL and Node, and the credentials, with no authority override
/// (clients keep their production defaults). `None` when the emulator runs without a proxy.
pub fn env_exports(ready: &ReadyInfo) -> Option<String> {
    let proxy = ready.proxy_url.as_deref()?;
    let ca = ready.ca_cert_path.display().to_string();
    let mut vars: Vec<(&str, String)> = Vec::new();
    for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        vars.push((name, proxy.to_string()));
    }
    for name in ["NO_PROXY", "no_proxy"] {
        vars.push((name, "localhost,127.0.0.1,::1".to_string()));
    }
    vars.push(("REQUESTS_CA_BUNDLE", ca.clone()));
    vars.push(("SSL_CERT_FILE", ca.clone()));
    vars.push(("NODE_EXTRA_CA_CERTS", ca.clone()));
    vars.push(("NODE_USE_ENV_PROXY", "1".to_string()));
    vars.push(("M365EMU_CA_CERT", ca));
    vars.push(("M365EMU_PROXY_URL", proxy.to_string()));
    vars.extend(ready.credential_vars());
    if let Some(acs) = ready.acs.first() {
        let key = acs
            .connection_string
            .split(';')
            .find_map(|part| part.strip_prefix("accesskey="))
            .unwrap_or_default();
        vars.push(("M365EMU_ACS_ENDPOINT", format!("https://{}/", acs.host)));
        vars.push((
            "COMMUNICATION_SERVICES_CONNECTION_STRING",
            format!("endpoint=https://{}/;accesskey={key}", acs.host),
        ));
    }
    let mut out = String::from(
        "# m365-emulator proxy mode: programs keep their real Microsoft host names.\n\
         # HTTPS: CONNECT to the Microsoft hosts the emulator serves; anything else gets a 403.\n\
         # HTTP: only IMDS (http://169.254.169.254/metadata/identity/...) is served.\n\
         # Node.js: global fetch and http/https ignore HTTPS_PROXY unless NODE_USE_ENV_PROXY=1\n\
         # (Node 24.5+ and 22.21+). On older Node (< 24 without it), preload a proxy agent:\n\
         # undici's setGlobalDispatcher(new EnvHttpProxyAgent()) for fetch, or\n\
         # `node -r global-agent/bootstrap` with GLOBAL_AGENT_HTTP_PROXY for http/https.\n",
    );
    out.extend(
        vars.iter()
            .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', "'\\''"))),
    );
    Some(out)
}
