//! Who is calling an ACS resource: HMAC-SHA256 with one of the resource's access keys, or an
//! Entra bearer token the emulator issued for `https://communication.azure.com` (client
//! credentials, managed identity). Azure RBAC is not in tokens; the emulator stands in for it
//! with the `Communication.Manage` app role of the world's ACS resource application, and
//! requires the token's tenant to own the ACS resource.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::errors::AcsError;
use super::hmac::{self, HmacHeader};
use super::Call;
use crate::state::Core;
use crate::tokens::{self, ValidToken};

/// Audiences of Entra tokens ACS accepts: the App ID URI, the Teams extension identifier URI
/// and the ACS first-party app id.
pub const AUDIENCES: [&str; 3] = [
    "https://communication.azure.com",
    "https://auth.msft.communication.azure.com",
    "1fd5118e-2576-4263-8130-9503064c837a",
];
/// The app role that stands in for Azure RBAC on the resource.
pub const MANAGE_ROLE: &str = "Communication.Manage";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Signed with the primary (`true`) or secondary access key.
    Hmac {
        primary: bool,
    },
    Entra(ValidToken),
}

/// The single value of header `name`: `Ok(None)` when absent, an error when repeated or not
/// visible ASCII.
fn single_header<'p>(call: &'p Call, name: &str) -> Result<Option<&'p str>, AcsError> {
    let mut values = call.parts.headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AcsError::denied(format!(
            "The request carries more than one '{name}' header."
        )));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| AcsError::denied(format!("The '{name}' header is not printable ASCII.")))
}

/// Authenticates a management call (identities, assignments, the Teams-user exchange).
pub fn authenticate(core: &Core, call: &mut Call) -> Result<Caller, AcsError> {
    let Some(auth) = single_header(call, "authorization")? else {
        return Err(AcsError::denied(
            "The request carries no Authorization header: sign it with HMAC-SHA256 (an access key) or send an Entra bearer token for https://communication.azure.com.",
        ));
    };
    let scheme = auth.split(' ').next().unwrap_or_default();
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = entra_token(core, auth)?;
        call.outcome.tenant = token.tenant().map(str::to_string);
        call.outcome.client_id = token.client_id().map(str::to_string);
        call.outcome.token_id = token.str("uti").map(str::to_string);
        if token.tenant() != Some(call.resource_tenant.to_string().as_str()) {
            return Err(AcsError::forbidden(format!(
                "The token's tenant '{}' does not own the ACS resource '{}'.",
                token.tenant().unwrap_or_default(),
                call.resource.name
            )));
        }
        if !token.roles().contains(&MANAGE_ROLE) {
            return Err(AcsError::forbidden(format!(
                "The caller (appid '{}') has no '{MANAGE_ROLE}' role on the ACS resource '{}' (the emulator's stand-in for an Azure RBAC role assignment).",
                token.client_id().unwrap_or_default(),
                call.resource.name
            )));
        }
        return Ok(Caller::Entra(token));
    }
    let auth = auth.to_string();
    verify_hmac(core, call, &auth)
}

/// Validates an `Authorization: Bearer …` value as an emulator-issued token for ACS.
pub fn entra_token(core: &Core, authorization: &str) -> Result<ValidToken, AcsError> {
    tokens::bearer(Some(authorization))
        .and_then(|t| tokens::validate(core, t, &AUDIENCES))
        .map_err(|e| AcsError::denied(format!("The bearer token was refused: {e}.")))
}

/// Verifies the HMAC signature as reference §2.2 describes.
fn verify_hmac(core: &Core, call: &Call, authorization: &str) -> Result<Caller, AcsError> {
    let (skew, diagnose) = super::hmac_settings(core);
    let header: HmacHeader = hmac::parse_authorization(authorization).map_err(|e| {
        AcsError::denied(format!(
            "Given value does not match HMAC header structure: {e}. Expected 'HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<base64>'."
        ))
    })?;
    let authority = crate::http::authority(&call.parts);
    let mut values = Vec::with_capacity(header.signed_headers.len());
    for name in &header.signed_headers {
        if name == "host" {
            values.push(authority.clone());
            continue;
        }
        let v = single_header(call, name)?.ok_or_else(|| {
            AcsError::denied(format!(
                "The signed header '{name}' is missing from the request."
            ))
        })?;
        values.push(v.to_string());
    }
    let value_of = |name: &str| {
        header
            .signed_headers
            .iter()
            .position(|n| n == name)
            .map(|i| values[i].as_str())
            .unwrap_or_default()
    };
    let target = call
        .parts
        .uri
        .path_and_query()
        .map_or_else(|| call.parts.uri.path(), |pq| pq.as_str());
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let expected = hmac::string_to_sign(call.parts.method.as_str(), target, &refs);
    let with_diagnostic = |e: AcsError| {
        if diagnose {
            e.with_string_to_sign(expected.clone())
        } else {
            e
        }
    };
    let date_text = value_of("x-ms-date");
    let Some(date) = hmac::parse_date(date_text) else {
        return Err(with_diagnostic(AcsError::denied(format!(
            "The x-ms-date header '{date_text}' is not an RFC 1123 date in GMT such as 'Sat, 21 Nov 2026 23:36:09 GMT'."
        ))));
    };
    let drift = (call.now - date).whole_seconds().unsigned_abs();
    if drift > skew {
        return Err(with_diagnostic(AcsError::denied(format!(
            "The x-ms-date header '{date_text}' is {drift} seconds away from the server's time '{}'; at most {skew} seconds are allowed.",
            hmac::format_date(call.now)
        ))));
    }
    let actual_hash = hmac::content_hash(&call.body);
    if value_of("x-ms-content-sha256") != actual_hash {
        return Err(with_diagnostic(AcsError::denied(format!(
            "Request 'x-ms-content-sha256' differs from generated content hash: the body's SHA-256 is '{actual_hash}'."
        ))));
    }
    let key = |b64: &str| STANDARD.decode(b64).unwrap_or_default();
    if hmac::verify(
        &key(&call.resource.primary_key),
        &expected,
        &header.signature,
    ) {
        return Ok(Caller::Hmac { primary: true });
    }
    if hmac::verify(
        &key(&call.resource.secondary_key),
        &expected,
        &header.signature,
    ) {
        return Ok(Caller::Hmac { primary: false });
    }
    Err(with_diagnostic(AcsError::denied(format!(
        "The HMAC-SHA256 signature matches neither access key of ACS resource '{}' over the string to sign the server computed from the request (method, path and query as sent, x-ms-date, Host '{authority}', content hash).",
        call.resource.name
    ))))
}
