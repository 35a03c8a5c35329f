//! The AADSTS error catalog and Entra's error envelope:
//! `{"error","error_description","error_codes","timestamp","trace_id","correlation_id","error_uri"}`
//! with the description's `\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …` tail.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

/// One catalog entry. `{0}`, `{1}`, … in the template are filled from the arguments.
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    pub code: u32,
    pub error: &'static str,
    pub status: u16,
    pub template: &'static str,
}

/// Every AADSTS code the emulator produces. Statuses marked unconfirmed in the reference
/// follow RFC 6749: 401 for `invalid_client`/`unauthorized_client`, 400 otherwise.
pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry { code: 90002, error: "invalid_tenant", status: 400, template: "Tenant '{0}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant." },
    CatalogEntry { code: 900023, error: "invalid_request", status: 400, template: "Specified tenant identifier '{0}' is neither a valid DNS name, nor a valid external domain." },
    CatalogEntry { code: 700016, error: "unauthorized_client", status: 401, template: "Application with identifier '{0}' was not found in the directory '{1}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant." },
    CatalogEntry { code: 50194, error: "invalid_request", status: 400, template: "Application '{0}'({1}) isn't configured as a multitenant application. Usage of the /common endpoint isn't supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint or configure the application to be multitenant." },
    CatalogEntry { code: 9001023, error: "invalid_request", status: 400, template: "The grant type isn't supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint." },
    CatalogEntry { code: 7000215, error: "invalid_client", status: 401, template: "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{0}'." },
    CatalogEntry { code: 7000222, error: "invalid_client", status: 401, template: "The provided client secret keys are expired. Visit the Azure Portal to create new keys for your app, or consider using certificate credentials for added security: https://aka.ms/certCreds" },
    CatalogEntry { code: 7000218, error: "invalid_client", status: 401, template: "The request body must contain the following parameter: 'client_assertion' or 'client_secret'." },
    CatalogEntry { code: 700025, error: "invalid_client", status: 401, template: "Client is public so neither 'client_assertion' nor 'client_secret' should be presented." },
    CatalogEntry { code: 700027, error: "invalid_client", status: 401, template: "{0} [Reason - {1}, Thumbprint of key used by client: '{2}'{3}, Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{4}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments if you are not using a national cloud such as 'https://graph.microsoft.com/beta/applications/{4}'.]" },
    CatalogEntry { code: 1000502, error: "invalid_client", status: 401, template: "The certificate with identifier used to sign the client assertion is outside of its validity window. Thumbprint of key used by client: '{0}'. Valid from {1} to {2}." },
    CatalogEntry { code: 700024, error: "invalid_client", status: 401, template: "Client assertion is not within its valid time range. Current time: {0}, assertion valid from {1}, expiry time of assertion {2}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ." },
    CatalogEntry { code: 700023, error: "invalid_client", status: 401, template: "Client assertion audience claim does not match Realm issuer." },
    CatalogEntry { code: 700021, error: "invalid_client", status: 401, template: "Client assertion application identifier doesn't match 'client_id' parameter." },
    CatalogEntry { code: 50048, error: "invalid_client", status: 401, template: "Subject mismatches Issuer claim in the client assertion." },
    CatalogEntry { code: 50027, error: "invalid_request", status: 400, template: "JWT token is invalid or malformed." },
    CatalogEntry { code: 900144, error: "invalid_request", status: 400, template: "The request body must contain the following parameter: '{0}'." },
    CatalogEntry { code: 70003, error: "unsupported_grant_type", status: 400, template: "The app requested an unsupported grant type '{0}'." },
    CatalogEntry { code: 1002012, error: "invalid_scope", status: 400, template: "The provided value for scope {0} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)." },
    CatalogEntry { code: 70011, error: "invalid_scope", status: 400, template: "The provided value for the input parameter 'scope' is not valid. The scope {0} is not valid." },
    CatalogEntry { code: 500011, error: "invalid_resource", status: 400, template: "The resource principal named {0} was not found in the tenant named {1}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant." },
    CatalogEntry { code: 9002313, error: "invalid_request", status: 400, template: "Invalid request. Request is malformed or invalid. {0}" },
    CatalogEntry { code: 900561, error: "invalid_request", status: 400, template: "The endpoint only accepts POST requests. Received a {0} request." },
    // User flows (authorize, sign-in, consent, code and refresh-token redemption).
    CatalogEntry { code: 50011, error: "invalid_request", status: 400, template: "The redirect URI '{0}' specified in the request does not match the redirect URIs configured for the application '{1}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this." },
    CatalogEntry { code: 50020, error: "invalid_request", status: 400, template: "User account '{0}' from identity provider '{1}' does not exist in tenant '{2}' and cannot access the application in that tenant. The account needs to be added as an external user in the tenant first. Sign out and sign in again with a different Azure Active Directory user account." },
    CatalogEntry { code: 50058, error: "login_required", status: 400, template: "A silent sign-in request was sent but no user is signed in." },
    CatalogEntry { code: 65001, error: "invalid_grant", status: 400, template: "The user or administrator has not consented to use the application with ID '{0}' named '{1}'. Send an interactive authorization request for this user and resource." },
    CatalogEntry { code: 65004, error: "access_denied", status: 400, template: "User declined to consent to access the app." },
    CatalogEntry { code: 90094, error: "access_denied", status: 400, template: "The grant requires admin permission." },
    CatalogEntry { code: 700054, error: "unsupported_response_type", status: 400, template: "response_type '{0}' is not enabled for the application." },
    CatalogEntry { code: 501491, error: "invalid_request", status: 400, template: "Invalid size of Code_Challenge parameter." },
    CatalogEntry { code: 54005, error: "invalid_grant", status: 400, template: "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token." },
    CatalogEntry { code: 70008, error: "invalid_grant", status: 400, template: "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource." },
    CatalogEntry { code: 70000, error: "invalid_grant", status: 400, template: "The provided value for the '{0}' parameter is not valid." },
    CatalogEntry { code: 501481, error: "invalid_grant", status: 400, template: "The Code_Verifier does not match the code_challenge supplied in the authorization request." },
    CatalogEntry { code: 700005, error: "invalid_grant", status: 400, template: "Provided Authorization Code is intended to use against other tenant, thus rejected." },
    CatalogEntry { code: 700082, error: "invalid_grant", status: 400, template: "The refresh token has expired due to inactivity. The token was issued on {0} and was inactive for 90.00:00:00." },
    CatalogEntry { code: 50126, error: "invalid_grant", status: 400, template: "Error validating credentials due to invalid username or password." },
    CatalogEntry { code: 50034, error: "invalid_grant", status: 400, template: "The user account {0} does not exist in the {1} directory. To sign into this application, the account must be added to the directory." },
    CatalogEntry { code: 70016, error: "authorization_pending", status: 400, template: "OAuth 2.0 device flow error. Authorization is pending. Continue polling." },
    CatalogEntry { code: 70020, error: "expired_token", status: 400, template: "The provided value for the input parameter 'device_code' is not valid. This device code has expired." },
    CatalogEntry { code: 50049, error: "invalid_instance", status: 400, template: "Unknown or invalid instance." },
    // Throttling and transient failures: reached through fault injection (status unconfirmed for
    // the body; client-credentials throttling is documented as 429 with `Retry-After: 60`).
    CatalogEntry { code: 90055, error: "temporarily_unavailable", status: 429, template: "There are too many incoming requests. This exception is thrown for blocked tenants." },
    CatalogEntry { code: 90024, error: "temporarily_unavailable", status: 503, template: "A transient error has occurred. Try again." },
];

/// Looks a code up in the catalog.
pub fn entry(code: u32) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.code == code)
}

/// Parses `AADSTS<code>` and finds it in the catalog.
pub fn parse_name(name: &str) -> Option<&'static CatalogEntry> {
    let digits = name.strip_prefix("AADSTS")?;
    entry(digits.parse().ok()?)
}

/// The catalog error `name` as a fault rule injects it, its placeholders filled with what is
/// known about the request (client id, tenant) or neutral stand-ins.
pub fn for_fault(name: &str, client_id: Option<&str>, tenant: Option<&str>) -> Option<AadError> {
    let e = parse_name(name)?;
    let client = client_id.unwrap_or("00000000-0000-0000-0000-000000000000");
    let tenant = tenant.unwrap_or("common");
    let now = format_precise(OffsetDateTime::now_utc());
    let args: Vec<&str> = match e.code {
        700027 => vec![
            "Client assertion contains an invalid signature.",
            "The provided signature value did not match the expected signature value.",
            "0000000000000000000000000000000000000000",
            "",
            client,
        ],
        700024 => vec![
            &now,
            "1970-01-01T00:00:00.0000000Z",
            "1970-01-01T00:00:00.0000000Z",
        ],
        700016 => vec![client, tenant],
        50194 => vec![client, "application"],
        500011 => vec!["https://resource.example", tenant],
        900144 => vec!["grant_type"],
        70003 => vec!["unknown"],
        1002012 | 70011 => vec!["scope"],
        9002313 => vec![""],
        _ => vec![client, tenant],
    };
    Some(AadError::new(e.code, &args))
}

/// An Entra error ready to be rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct AadError {
    pub code: u32,
    pub error: &'static str,
    pub status: StatusCode,
    pub message: String,
    /// `suberror`, e.g. `consent_required` with 65001 at the token endpoint.
    pub suberror: Option<&'static str>,
}

impl AadError {
    /// Builds the catalog error `code` with its template filled from `args`.
    pub fn new(code: u32, args: &[&str]) -> AadError {
        let Some(e) = entry(code) else {
            // A missing entry is a programming error; render it as a server error, not a panic.
            return AadError {
                code,
                error: "server_error",
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("Unknown error {code}."),
                suberror: None,
            };
        };
        let message = crate::template::fill(e.template, args);
        AadError {
            code,
            error: e.error,
            status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            message,
            suberror: (e.code == 65001).then_some("consent_required"),
        }
    }

    /// The same code with a message of its own (e.g. 90002's empty-GUID wording).
    pub fn with_message(code: u32, message: impl Into<String>) -> AadError {
        AadError {
            message: message.into(),
            ..AadError::new(code, &[])
        }
    }

    pub fn code_name(&self) -> String {
        format!("AADSTS{}", self.code)
    }

    /// Renders the error for a request and records the operation and code for the journal.
    pub fn respond(
        &self,
        parts: &http::request::Parts,
        now: OffsetDateTime,
        operation: &'static str,
    ) -> Response {
        let mut resp = self.render(&ErrorContext::from_parts(parts, now));
        let mut outcome = crate::http::Outcome::new(operation);
        outcome.error_code = Some(self.code_name());
        resp.extensions_mut().insert(outcome);
        resp
    }

    /// Renders the envelope. `error_uri` uses the host the client called.
    pub fn render(&self, ctx: &ErrorContext) -> Response {
        let ts = format_timestamp(ctx.now);
        let trace_id = Uuid::new_v4().to_string();
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            self.code, self.message, trace_id, ctx.correlation_id, ts
        );
        let mut body = json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": trace_id,
            "correlation_id": ctx.correlation_id,
            "error_uri": format!("{}/error?code={}", ctx.origin, self.code),
        });
        if let Some(sub) = self.suberror {
            body["suberror"] = json!(sub);
        }
        let mut resp = (self.status, body.to_string()).into_response();
        super::token_headers(
            resp.headers_mut(),
            &trace_id,
            ctx.client_request_id.as_deref(),
        );
        resp
    }
}

/// What an error rendering needs from the request.
#[derive(Debug, Clone)]
pub struct ErrorContext {
    pub origin: String,
    pub correlation_id: String,
    pub client_request_id: Option<String>,
    pub now: OffsetDateTime,
}

impl ErrorContext {
    /// The context of a request: the origin it called and its `client-request-id`.
    pub fn from_parts(parts: &http::request::Parts, now: OffsetDateTime) -> ErrorContext {
        let id = super::client_request_id(&parts.headers, parts.uri.query());
        ErrorContext {
            origin: crate::http::origin(parts),
            correlation_id: id.clone().unwrap_or_else(|| Uuid::new_v4().to_string()),
            client_request_id: id,
            now,
        }
    }
}

/// `YYYY-MM-DD HH:MM:SSZ`, as in Entra's `timestamp` field.
pub fn format_timestamp(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    t.format(&f).unwrap_or_default()
}

/// `2025-08-29T05:47:32.1501147Z`, as in AADSTS700024 (seven fractional digits).
pub fn format_precise(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z"
    );
    t.format(&f).unwrap_or_default()
}

pub fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_placeholder_is_filled_by_its_constructor_arity() {
        for e in CATALOG {
            assert!(matches!(e.status, 400 | 401 | 429 | 503), "{}", e.code);
            let filled = AadError::new(e.code, &["a", "b", "c", "d", "e"]);
            assert!(
                !filled.message.contains('{'),
                "{}: {}",
                e.code,
                filled.message
            );
        }
        let codes: std::collections::HashSet<u32> = CATALOG.iter().map(|e| e.code).collect();
        assert_eq!(codes.len(), CATALOG.len(), "duplicate codes");
    }

    #[test]
    fn arguments_are_never_substituted_again() {
        let e = AadError::new(700016, &["{1}", "Contoso"]);
        assert!(
            e.message.starts_with(
                "Application with identifier '{1}' was not found in the directory 'Contoso'"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn timestamps_match_entra_formats() {
        let t = time::macros::datetime!(2025-08-29 05:47:32.150114 UTC);
        assert_eq!(format_timestamp(t), "2025-08-29 05:47:32Z");
        assert_eq!(format_precise(t), "2025-08-29T05:47:32.1501140Z");
    }
}
