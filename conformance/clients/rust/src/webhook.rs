//! A receiver for the Management Activity API's webhook: answers the validation request,
//! trusts only notifications that carry the subscription's `Webhook-AuthID`, and hands the
//! announced blobs to the caller without making the service wait for them to be fetched.

use std::convert::Infallible;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;

/// The largest notification body read (a batch of 100 announcements is about 60 KiB).
const MAX_BODY: usize = 1 << 20;

/// One announced blob.
#[derive(Debug, Clone, PartialEq)]
pub struct Announced {
    pub content_type: String,
    pub content_id: String,
    pub content_uri: String,
}

/// What the receiver saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// The validation request (`Webhook-ValidationCode`), answered 200.
    Validation,
    /// A trusted notification (answered 200 at once; fetching is the caller's job).
    Notification(Vec<Announced>),
    /// A notification without the expected `Webhook-AuthID`: answered 401 and not to be acted
    /// on. `content_ids` are what it claimed to announce.
    Rejected {
        content_ids: Vec<String>,
        reason: String,
    },
}

/// Serves the webhook on `listener` (plain HTTP/1.1) until the task is dropped, sending what
/// arrives to `events`.
pub async fn serve(listener: TcpListener, auth_id: String, events: UnboundedSender<Received>) {
    while let Ok((stream, _)) = listener.accept().await {
        let (auth_id, events) = (auth_id.clone(), events.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (auth_id, events) = (auth_id.clone(), events.clone());
                async move { Ok::<_, Infallible>(answer(req, &auth_id, &events).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

async fn answer(
    req: Request<Incoming>,
    auth_id: &str,
    events: &UnboundedSender<Received>,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED);
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let validation = header("webhook-validationcode").is_some();
    let sent_auth = header("webhook-authid");
    let Ok(body) = Limited::new(req.into_body(), MAX_BODY).collect().await else {
        return reply(StatusCode::PAYLOAD_TOO_LARGE);
    };
    if validation {
        let _ = events.send(Received::Validation);
        return reply(StatusCode::OK);
    }
    let body: Value = serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null);
    let items = body.as_array().cloned().unwrap_or_default();
    if sent_auth.as_deref() != Some(auth_id) {
        let content_ids = items
            .iter()
            .map(|i| i["contentId"].as_str().unwrap_or("-").to_string())
            .collect();
        let reason = match sent_auth {
            None => "no Webhook-AuthID header".to_string(),
            Some(other) => format!("Webhook-AuthID {other:?} is not this subscription's"),
        };
        let _ = events.send(Received::Rejected {
            content_ids,
            reason,
        });
        return reply(StatusCode::UNAUTHORIZED);
    }
    let announced = items
        .iter()
        .filter_map(|i| {
            Some(Announced {
                content_type: i["contentType"].as_str()?.to_string(),
                content_id: i["contentId"].as_str()?.to_string(),
                content_uri: i["contentUri"].as_str()?.to_string(),
            })
        })
        .collect();
    let _ = events.send(Received::Notification(announced));
    reply(StatusCode::OK)
}
