//! Microsoft Graph's error shape and catalog:
//! `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`,
//! with `request-id` / `client-request-id` also as response headers, as Graph sends them.

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::http::Outcome;

/// Which text the missing-access-policy 403 carries (the docs changed it over time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyErrorForm {
    /// `Forbidden` / "No Application Access Policy found for this app" (the current doc).
    #[default]
    Current,
    /// `Unauthorized` / "App <app> is not authorized to Create meeting on behalf of user <user>"
    /// (the older doc, seed 003).
    Legacy,
}

/// A Graph error ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> GraphError {
        GraphError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthenticated(detail: &str) -> GraphError {
        GraphError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            detail.to_string(),
        )
    }

    pub fn missing_token() -> GraphError {
        GraphError::unauthenticated("Access token is empty.")
    }

    pub fn access_denied(permission_hint: &str) -> GraphError {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Insufficient privileges to complete the operation. Requires {permission_hint}."
            ),
        )
    }

    /// The 403 when no application access policy lets the app act for the user.
    pub fn no_access_policy(
        form: PolicyErrorForm,
        app_id: &str,
        user_id: &str,
        action: &str,
    ) -> GraphError {
        match form {
            PolicyErrorForm::Current => GraphError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "No Application Access Policy found for this app",
            ),
            PolicyErrorForm::Legacy => GraphError::new(
                StatusCode::FORBIDDEN,
                "Unauthorized",
                format!("App {app_id} is not authorized to {action} meeting on behalf of user {user_id}"),
            ),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn invalid_request(message: impl Into<String>) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "invalidRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> GraphError {
        GraphError::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn user_not_found(key: &str) -> GraphError {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!("Resource '{key}' does not exist or one of its queried reference-property objects are not present."),
        )
    }

    pub fn too_large(limit: usize) -> GraphError {
        GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("The request body is larger than {limit} bytes."),
        )
    }

    pub fn method_not_allowed(method: &str) -> GraphError {
        GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            format!("The HTTP method '{method}' is not allowed for this resource."),
        )
    }

    pub fn throttled() -> GraphError {
        GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests have been sent. Please try again later.",
        )
    }

    /// The response, with `innerError` stamped from `ctx`.
    pub fn render(&self, ctx: &RequestIds) -> Response {
        let body = json!({"error": {
            "code": self.code,
            "message": self.message,
            "innerError": ctx.inner_error(),
        }});
        let mut resp = (self.status, axum::Json(body)).into_response();
        ctx.stamp(&mut resp);
        resp
    }

    /// [`GraphError::render`] plus the journal record.
    pub fn respond(&self, ctx: &RequestIds, mut outcome: Outcome) -> Response {
        outcome.error_code = Some(self.code.to_string());
        let mut resp = self.render(ctx);
        resp.extensions_mut().insert(outcome);
        resp
    }
}

/// The ids and date Graph stamps on every response.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub client_request_id: String,
    pub date: OffsetDateTime,
}

impl RequestIds {
    /// A fresh `request-id`; `client-request-id` echoes the caller's (SDKs send one), or
    /// repeats the request id as Graph does when none was sent.
    pub fn new(parts: &Parts, now: OffsetDateTime) -> RequestIds {
        let request_id = Uuid::new_v4().to_string();
        let client_request_id = parts
            .headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .map_or_else(|| request_id.clone(), str::to_string);
        RequestIds {
            request_id,
            client_request_id,
            date: now,
        }
    }

    pub fn inner_error(&self) -> serde_json::Value {
        json!({
            "date": self.date_text(),
            "request-id": self.request_id,
            "client-request-id": self.client_request_id,
        })
    }

    /// Seconds precision, no fraction, like Graph's `innerError.date`.
    pub fn date_text(&self) -> String {
        let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
        self.date.format(&f).unwrap_or_default()
    }

    pub fn stamp(&self, resp: &mut Response) {
        for (name, value) in [
            ("request-id", &self.request_id),
            ("client-request-id", &self.client_request_id),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                resp.headers_mut().insert(name, v);
            }
        }
    }
}

/// Error names a fault rule may inject into Graph (`"error": "graph.<name>"`).
pub const FAULT_NAMES: [&str; 6] = [
    "graph.InvalidAuthenticationToken",
    "graph.Forbidden",
    "graph.NoApplicationAccessPolicy",
    "graph.NotFound",
    "graph.TooManyRequests",
    "graph.ServiceUnavailable",
];

pub fn parse_name(name: &str) -> Option<&'static str> {
    FAULT_NAMES
        .iter()
        .copied()
        .find(|n| n.eq_ignore_ascii_case(name))
}

/// The catalog error a fault rule names.
pub fn for_fault(name: &str) -> Option<GraphError> {
    let canonical = parse_name(name)?;
    Some(match canonical {
        "graph.InvalidAuthenticationToken" => {
            GraphError::unauthenticated("Lifetime validation failed, the token is expired.")
        }
        "graph.Forbidden" => GraphError::access_denied("an application permission"),
        "graph.NoApplicationAccessPolicy" => GraphError::no_access_policy(
            PolicyErrorForm::Current,
            "00000000-0000-0000-0000-000000000000",
            "00000000-0000-0000-0000-000000000000",
            "Create",
        ),
        "graph.NotFound" => GraphError::not_found("The requested resource was not found."),
        "graph.TooManyRequests" => GraphError::throttled(),
        _ => GraphError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceNotAvailable",
            "The service is temporarily unavailable. Please try again later.",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_name_renders() {
        for n in FAULT_NAMES {
            assert!(for_fault(n).is_some(), "{n}");
            assert!(for_fault(&n.to_ascii_uppercase()).is_some(), "{n}");
        }
        assert!(for_fault("Forbidden").is_none());
    }
}
