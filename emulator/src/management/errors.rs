//! The Management Activity API's error catalog (AF codes) and its three error shapes:
//!
//! - `{"error":{"code":"AF…","message":"…"}}` for every catalog error;
//! - the ASP.NET Web API 401 `{"Message":"Authorization has been denied for this request."}`
//!   for a missing, invalid, expired or wrong-audience token;
//! - the mangled `StartSubscription [...]` error of a tenant whose audit logging is off.
//!
//! Statuses the reference marks unconfirmed are design choices, listed in README's fidelity
//! notes: AF20010 401 (like AF10001), AF20050 404, AF429 403 (Microsoft's only sample).

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::http::Outcome;

/// One catalog entry. `{0}`, `{1}` in the template are filled from the arguments.
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    pub code: &'static str,
    pub status: u16,
    pub template: &'static str,
}

/// Every AF code the emulator knows. Where an observed message differs from the documented
/// one, the observed wording wins (AF10001, AF20023, AF20052); AF20024 is observed only.
pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry { code: "AF10001", status: 401, template: "The permission set ({0}) sent in the request does not include the expected permission." },
    CatalogEntry { code: "AF20001", status: 400, template: "Missing parameter: {0}." },
    CatalogEntry { code: "AF20002", status: 400, template: "Invalid parameter type: {0}. Expected type: {1}" },
    CatalogEntry { code: "AF20003", status: 400, template: "Expiration {0} provided is set to past date and time." },
    CatalogEntry { code: "AF20010", status: 401, template: "The tenant ID passed in the URL ({0}) does not match the tenant ID passed in the access token ({1})." },
    CatalogEntry { code: "AF20011", status: 400, template: "Specified tenant ID ({0}) does not exist in the system or has been deleted." },
    CatalogEntry { code: "AF20012", status: 400, template: "Specified tenant ID ({0}) is incorrectly configured in the system." },
    CatalogEntry { code: "AF20013", status: 400, template: "The tenant ID passed in the URL ({0}) is not a valid GUID." },
    CatalogEntry { code: "AF20020", status: 400, template: "The specified content type is not valid." },
    // The doc's template reads `{{0})`, a typo; every sibling template wraps the value in
    // parentheses, so this one does too.
    CatalogEntry { code: "AF20021", status: 400, template: "The webhook endpoint ({0}) could not be validated. {1}" },
    CatalogEntry { code: "AF20022", status: 400, template: "No subscription found for the specified content type." },
    CatalogEntry { code: "AF20023", status: 400, template: "The subscription was disabled." },
    CatalogEntry { code: "AF20024", status: 400, template: "The subscription is already enabled. No property change." },
    CatalogEntry { code: "AF20030", status: 400, template: "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart, with the start time no more than 7 days in the past." },
    CatalogEntry { code: "AF20031", status: 400, template: "Invalid nextPage Input: {0}." },
    CatalogEntry { code: "AF20050", status: 404, template: "The specified content ({0}) does not exist." },
    CatalogEntry { code: "AF20051", status: 400, template: "Content requested with the key {0} has already expired. Content older than 7 days cannot be retrieved." },
    CatalogEntry { code: "AF20052", status: 400, template: "Blob key {0} in the url is invalid" },
    CatalogEntry { code: "AF20053", status: 400, template: "Only one language may be present in the Accept-Language header." },
    CatalogEntry { code: "AF20054", status: 400, template: "Invalid syntax in Accept-Language header." },
    CatalogEntry { code: "AF20055", status: 400, template: "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart, with the start time prior to end time and start time no more than 7 days in the past." },
    CatalogEntry { code: "AF429", status: 403, template: "Too many requests. Method={0}, PublisherId={1}" },
    CatalogEntry { code: "AF50000", status: 500, template: "An internal error occurred. Retry the request." },
];

/// The second half of AF20021's message.
pub const WEBHOOK_NOT_HTTPS: &str = "The address must begin with HTTPS.";
pub const WEBHOOK_NOT_200: &str = "The endpoint did not return HTTP 200.";

/// The publisher id AF429 shows when the request named none.
pub const NO_PUBLISHER: &str = "00000000-0000-0000-0000-000000000000";

/// Finds a code (`AF20022`, case-insensitive) in the catalog.
pub fn parse_name(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.code.eq_ignore_ascii_case(name))
}

/// A catalog error ready to be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfError {
    pub code: &'static str,
    pub status: StatusCode,
    pub message: String,
}

impl AfError {
    /// The catalog error `code` with its template filled from `args`.
    pub fn new(code: &'static str, args: &[&str]) -> AfError {
        let Some(e) = parse_name(code) else {
            // A missing entry is a programming error: a server error, never a panic.
            return AfError {
                code: "AF50000",
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("Unknown error {code}."),
            };
        };
        AfError {
            message: crate::template::fill(e.template, args),
            code: e.code,
            status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        }
    }

    /// `{"error":{"code":…,"message":…}}`, compact, with the service's headers.
    pub fn render(&self, now: OffsetDateTime) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        json_response(self.status, body.to_string(), now)
    }

    /// Renders and records the operation, tenant, client and code for the journal.
    pub fn respond(&self, now: OffsetDateTime, mut outcome: Outcome) -> Response {
        let mut resp = self.render(now);
        outcome.error_code = Some(self.code.to_string());
        resp.extensions_mut().insert(outcome);
        resp
    }
}

/// The catalog error `name` as a fault rule injects it, its placeholders filled with what is
/// known about the request (tenant, publisher, operation) or neutral stand-ins.
pub fn for_fault(
    name: &str,
    operation: &str,
    tenant: Option<&str>,
    query: Option<&str>,
) -> Option<AfError> {
    let e = parse_name(name)?;
    let tenant = tenant.unwrap_or(NO_PUBLISHER);
    let publisher = publisher_for_message(query);
    let args: Vec<String> = match e.code {
        "AF10001" => vec![String::new()],
        "AF20001" => vec!["contentType".into()],
        "AF20002" => vec!["PublisherIdentifier".into(), "guid".into()],
        "AF20003" => vec!["1970-01-01T00:00:00".into()],
        "AF20010" => vec![tenant.into(), NO_PUBLISHER.into()],
        "AF20021" => vec!["https://webhook.invalid/".into(), WEBHOOK_NOT_200.into()],
        "AF20031" => vec![String::new()],
        "AF20050" | "AF20051" | "AF20052" => vec![String::new()],
        "AF429" => vec![throttled_method(operation).into(), publisher],
        _ => vec![tenant.into()],
    };
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Some(AfError::new(e.code, &refs))
}

/// The `Method=` of AF429 for an operation. `GetBlob` is observed; the other names are the
/// emulator's guess in the same style (the mangled start error says `StartSubscription`).
pub fn throttled_method(operation: &str) -> &'static str {
    match operation {
        "management.content.get" => "GetBlob",
        "management.content.list" => "ListContent",
        "management.subscriptions.start" => "StartSubscription",
        "management.subscriptions.stop" => "StopSubscription",
        "management.subscriptions.list" => "ListSubscriptions",
        "management.notifications.list" => "ListNotifications",
        "management.resources.dlpSensitiveTypes" => "GetDlpSensitiveTypes",
        _ => "Unknown",
    }
}

/// The first GUID-shaped `PublisherIdentifier` (any case) of a query, else all zeros.
pub fn publisher_for_message(query: Option<&str>) -> String {
    let Some(q) = query else {
        return NO_PUBLISHER.to_string();
    };
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("publisheridentifier"))
        .and_then(|(_, v)| Uuid::parse_str(v.trim()).ok())
        .map_or_else(|| NO_PUBLISHER.to_string(), |u| u.to_string())
}

/// The throttling answer: AF429 (403, as in Microsoft's only sample).
pub fn throttled(operation: &str, query: Option<&str>, now: OffsetDateTime) -> (Response, String) {
    let e = AfError::new(
        "AF429",
        &[throttled_method(operation), &publisher_for_message(query)],
    );
    (e.render(now), e.code.to_string())
}

/// The body of the ASP.NET Web API authorization failure (61 bytes).
pub const DENIED_BODY: &str = r#"{"Message":"Authorization has been denied for this request."}"#;

/// 401 for a missing, malformed, expired, wrongly signed or wrong-audience token, with the
/// headers of the observed response (`WWW-Authenticate: Bearer`, ASP.NET's headers).
pub fn denied(now: OffsetDateTime, mut outcome: Outcome) -> Response {
    let mut resp = json_response(StatusCode::UNAUTHORIZED, DENIED_BODY.to_string(), now);
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    outcome.error_code = Some("Unauthorized".into());
    resp.extensions_mut().insert(outcome);
    resp
}

/// ASP.NET Web API's answer to a method a route does not take (status 405).
pub fn method_not_allowed(method: &str, now: OffsetDateTime) -> Response {
    let body = json!({
        "Message": format!("The requested resource does not support http method '{method}'.")
    });
    let mut resp = json_response(StatusCode::METHOD_NOT_ALLOWED, body.to_string(), now);
    let mut outcome = Outcome::new("management.unsupported_method");
    outcome.error_code = Some("MethodNotAllowed".into());
    resp.extensions_mut().insert(outcome);
    resp
}

/// The facts the mangled StartSubscription error carries.
#[derive(Debug, Clone)]
pub struct StartFailure<'a> {
    pub tenant: &'a str,
    pub content_type: &'a str,
    pub application_id: &'a str,
    pub publisher_id: &'a str,
}

/// The non-AF error of `/start` for a tenant whose audit logging is off (or that the audit
/// service does not know). As observed (power-platform#184, coe-starter-kit#6583), the
/// service split one log line in two: `code` ends with `[AppId` and `message` starts with the
/// application id minus its first character (the `=` and that character are lost). The
/// first two stack frames are the observed ones; the `StartController` frame is from the
/// 2019 variant (MicrosoftDocs#89); the rest of the real trace is not public.
pub fn start_subscription_failed(
    f: &StartFailure<'_>,
    now: OffsetDateTime,
    mut outcome: Outcome,
) -> Response {
    let corr = Uuid::new_v4();
    let code = format!(
        "StartSubscription [CorrId={corr}][TenantId={},ContentType={},ApplicationId={},PublisherId={}][AppId",
        f.tenant, f.content_type, f.application_id, f.publisher_id
    );
    let app_rest: String = f.application_id.chars().skip(1).collect();
    let src = r"d:\dbs\sh\nibr\0906_164315_0\cmd\t\sources\dev\auditing\src\auditapiservice\common\AzureManager.cs";
    let message = format!(
        "{app_rest}] failed. Exception: Microsoft.Office.Compliance.Audit.DataServiceException: Tenant {tenant} does not exist.\r\n   at Microsoft.Office.Compliance.Audit.API.AzureManager.<GetSubscriptionTableClientForTenantAsync>d__52.MoveNext() in {src}:line 2113\r\n--- End of stack trace from previous location where exception was thrown ---\r\n   at System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw()\r\n   at System.Runtime.CompilerServices.TaskAwaiter.HandleNonSuccessAndDebuggerNotification(Task task)\r\n   at Microsoft.Office.Compliance.Audit.API.AzureManager.<GetAPISubscriptionAsync>d__22.MoveNext() in {src}:line 1071\r\n--- End of stack trace from previous location where exception was thrown ---\r\n   at System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw()\r\n   at System.Runtime.CompilerServices.TaskAwaiter.HandleNonSuccessAndDebuggerNotification(Task task)\r\n   at Microsoft.Office.Compliance.Audit.API.StartController.<StartSubscription>d__0.MoveNext()",
        tenant = f.tenant,
    );
    let body = json!({"error": {"code": code, "message": message}});
    let mut resp = json_response(StatusCode::BAD_REQUEST, body.to_string(), now);
    outcome.error_code = Some("StartSubscription".into());
    resp.extensions_mut().insert(outcome);
    resp
}

/// A compact JSON response with the service's headers.
pub fn json_response(status: StatusCode, body: String, now: OffsetDateTime) -> Response {
    let mut resp = (status, body).into_response();
    service_headers(resp.headers_mut(), now);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// The headers every Management API response carries (observed on the real service), with a
/// `Date` on the emulator's clock: clients such as Filebeat estimate clock skew from it.
pub fn service_headers(h: &mut HeaderMap, now: OffsetDateTime) {
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    h.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(http::header::EXPIRES, HeaderValue::from_static("-1"));
    h.insert("x-aspnet-version", HeaderValue::from_static("4.0.30319"));
    h.insert("x-powered-by", HeaderValue::from_static("ASP.NET"));
    if let Ok(v) = HeaderValue::from_str(&http_date(now)) {
        h.insert(http::header::DATE, v);
    }
}

/// RFC 9110 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_and_codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for e in CATALOG {
            assert!(seen.insert(e.code), "duplicate {}", e.code);
            let filled = AfError::new(e.code, &["a", "b"]);
            assert!(!filled.message.contains('{'), "{}", filled.message);
            assert_eq!(filled.status.as_u16(), e.status);
        }
        assert!(parse_name("af20022").is_some());
        assert!(parse_name("AADSTS50027").is_none());
    }

    #[test]
    fn arguments_are_never_substituted_again() {
        let e = AfError::new("AF20021", &["https://x/{1}", WEBHOOK_NOT_200]);
        assert_eq!(
            e.message,
            "The webhook endpoint (https://x/{1}) could not be validated. The endpoint did not return HTTP 200."
        );
        assert_eq!(
            crate::template::fill("a {0} {9} {x", &["{0}"]),
            "a {0} {9} {x"
        );
    }

    #[test]
    fn af20024_body_is_the_observed_97_bytes() {
        let e = AfError::new("AF20024", &[]);
        let body = json!({"error": {"code": e.code, "message": e.message}}).to_string();
        assert_eq!(body.len(), 97, "{body}");
        assert_eq!(DENIED_BODY.len(), 61);
    }

    #[test]
    fn http_date_is_imf_fixdate() {
        let t = time::macros::datetime!(1994-11-06 08:49:37 UTC);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn publisher_in_messages() {
        assert_eq!(publisher_for_message(None), NO_PUBLISHER);
        assert_eq!(
            publisher_for_message(Some(
                "a=1&publisheridentifier=CA62B0EB-5136-43D1-8C4A-815E98E86782"
            )),
            "ca62b0eb-5136-43d1-8c4a-815e98e86782"
        );
        assert_eq!(
            publisher_for_message(Some("PublisherIdentifier=TEST")),
            NO_PUBLISHER
        );
    }
}
