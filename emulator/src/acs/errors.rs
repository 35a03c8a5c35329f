//! ACS's error shape, `CommunicationErrorResponse`:
//! `{"error":{"code":…,"message":…,"target"?:…}}`, and the catalog of codes the emulator
//! uses. The real service's code strings for most cases are unconfirmed (reference §1.3,
//! §3.2); `Denied` for authentication failures is the one widely observed. The others are the
//! emulator's choice, listed in README's fidelity notes.

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};

use crate::http::Outcome;

/// Response header carrying the string to sign the emulator expected (a diagnostic; `\n`
/// written as the two characters `\` `n`).
pub const EXPECTED_STRING_TO_SIGN_HEADER: &str = "x-m365emu-expected-string-to-sign";

/// One catalog entry, for fault rules that name an ACS error.
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    pub code: &'static str,
    pub status: u16,
    pub message: &'static str,
}

/// Every code the ACS emulation produces.
pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        code: "Denied",
        status: 401,
        message: "Denied by the resource provider.",
    },
    CatalogEntry {
        code: "Forbidden",
        status: 403,
        message: "The caller is not allowed to perform this operation on this resource.",
    },
    CatalogEntry {
        code: "ValidationError",
        status: 400,
        message: "The request is invalid.",
    },
    CatalogEntry {
        code: "MissingApiVersionParameter",
        status: 400,
        message: "The api-version query parameter (?api-version=) is required for all requests.",
    },
    CatalogEntry {
        code: "UnsupportedApiVersion",
        status: 400,
        message: "The requested api-version is not supported.",
    },
    CatalogEntry {
        code: "InvalidRequestBody",
        status: 400,
        message: "The request body is not valid JSON.",
    },
    CatalogEntry {
        code: "NotFound",
        status: 404,
        message: "The requested resource was not found.",
    },
    CatalogEntry {
        code: "MethodNotAllowed",
        status: 405,
        message: "The HTTP method is not allowed for this resource.",
    },
    CatalogEntry {
        code: "RequestEntityTooLarge",
        status: 413,
        message: "The request body is too large.",
    },
    CatalogEntry {
        code: "TooManyRequests",
        status: 429,
        message: "Too many requests. Retry after the time given in the Retry-After header.",
    },
    CatalogEntry {
        code: "InternalError",
        status: 500,
        message: "An internal error occurred.",
    },
    CatalogEntry {
        code: "ServiceUnavailable",
        status: 503,
        message: "The service is temporarily unavailable.",
    },
];

/// Finds a code (case-insensitive) in the catalog.
pub fn parse_name(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.code.eq_ignore_ascii_case(name))
}

/// The catalog error a fault rule names, with its default message.
pub fn for_fault(name: &str) -> Option<AcsError> {
    let e = parse_name(name)?;
    Some(AcsError::new(e.code, e.message))
}

/// An ACS error ready to be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub target: Option<String>,
    /// For HMAC failures: the string to sign the emulator computed.
    pub expected_string_to_sign: Option<String>,
}

impl AcsError {
    /// The catalog error `code` (its status from the catalog) with a specific message.
    pub fn new(code: &'static str, message: impl Into<String>) -> AcsError {
        let status = parse_name(code)
            .and_then(|e| StatusCode::from_u16(e.status).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        AcsError {
            status,
            code,
            message: message.into(),
            target: None,
            expected_string_to_sign: None,
        }
    }

    pub fn denied(message: impl Into<String>) -> AcsError {
        AcsError::new("Denied", message)
    }

    pub fn forbidden(message: impl Into<String>) -> AcsError {
        AcsError::new("Forbidden", message)
    }

    /// A 400 about one field or parameter (`target`).
    pub fn invalid(target: &str, message: impl Into<String>) -> AcsError {
        AcsError::new("ValidationError", message).with_target(target)
    }

    pub fn not_found(message: impl Into<String>) -> AcsError {
        AcsError::new("NotFound", message)
    }

    pub fn internal(message: impl Into<String>) -> AcsError {
        AcsError::new("InternalError", message)
    }

    pub fn with_target(mut self, target: &str) -> AcsError {
        self.target = Some(target.to_string());
        self
    }

    pub fn with_string_to_sign(mut self, expected: String) -> AcsError {
        self.expected_string_to_sign = Some(expected);
        self
    }

    /// The `CommunicationErrorResponse` document.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        if let Some(t) = &self.target {
            error.insert("target".into(), json!(t));
        }
        json!({ "error": error })
    }

    /// The response, without a journal record.
    pub fn render(&self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(sts) = &self.expected_string_to_sign {
            if let Ok(v) = HeaderValue::from_str(&sts.replace('\n', "\\n")) {
                resp.headers_mut()
                    .insert(HeaderName::from_static(EXPECTED_STRING_TO_SIGN_HEADER), v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // What the SDKs' challenge handling looks for; harmless for HMAC clients.
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer, HMAC-SHA256"),
            );
        }
        resp
    }

    /// Renders and records the operation and code for the journal.
    pub fn respond(&self, mut outcome: Outcome) -> Response {
        let mut resp = self.render();
        outcome.error_code = Some(self.code.to_string());
        resp.extensions_mut().insert(outcome);
        resp
    }
}

/// The ACS throttling response (the caller adds `Retry-After`).
pub fn throttled() -> (Response, String) {
    let e = for_fault("TooManyRequests").unwrap_or_else(|| AcsError::internal("no 429 entry"));
    (e.render(), e.code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_status_is_an_error_status() {
        for e in CATALOG {
            let status = StatusCode::from_u16(e.status).expect("valid status");
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{}",
                e.code
            );
            assert_eq!(AcsError::new(e.code, "m").status, status);
        }
    }

    #[test]
    fn body_has_target_only_when_set() {
        let e = AcsError::invalid("principalType", "bad");
        assert_eq!(
            e.body(),
            json!({"error": {"code": "ValidationError", "message": "bad", "target": "principalType"}})
        );
        assert_eq!(
            AcsError::denied("no").body(),
            json!({"error": {"code": "Denied", "message": "no"}})
        );
    }

    #[test]
    fn names_are_case_insensitive() {
        assert!(parse_name("denied").is_some());
        assert!(parse_name("AF20022").is_none());
    }
}
