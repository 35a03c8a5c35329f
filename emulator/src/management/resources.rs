//! `GET resources/dlpSensitiveTypes` (reference §4.7): friendly names of DLP sensitive
//! information types, the only resource the API offers.
//!
//! `Accept-Language` takes one language tag (default `en-US`): two or more → AF20053, a
//! malformed tag → AF20054. The list holds the entries the documentation shows; their names
//! are served in English whatever the language (localised names are not documented).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::Request;
use serde_json::json;

use super::errors::AfError;
use super::{authorize, ok_json, OP_DLP_TYPES};
use crate::state::Core;

/// (id, name) of the documented sensitive information types.
pub const DLP_SENSITIVE_TYPES: &[(&str, &str)] = &[
    ("50842eb7-edc8-4019-85dd-5a5c1f2bb085", "CreditCardNumber"),
    ("0e9b3178-9678-47dd-a509-37222ca96b42", "EUDebitCardNumber"),
];

pub async fn dlp_sensitive_types(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _body) = req.into_parts();
    let call = match authorize(&core, &parts, OP_DLP_TYPES) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let languages: Vec<&str> = parts
        .headers
        .get_all(http::header::ACCEPT_LANGUAGE)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    if let Err(e) = check_accept_language(&languages) {
        return call.fail(e);
    }
    let list: Vec<_> = DLP_SENSITIVE_TYPES
        .iter()
        .map(|(id, name)| json!({"id": id, "name": name}))
        .collect();
    ok_json(&call, serde_json::Value::Array(list).to_string())
}

/// One well-formed language (or none) → Ok; several → AF20053; malformed → AF20054.
pub fn check_accept_language(values: &[&str]) -> Result<(), AfError> {
    let tags: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    for tag in &tags {
        let (lang, params) = tag.split_once(';').unwrap_or((tag, ""));
        if !is_language_tag(lang.trim()) || !is_quality(params.trim()) {
            return Err(AfError::new("AF20054", &[]));
        }
    }
    if tags.len() > 1 {
        return Err(AfError::new("AF20053", &[]));
    }
    Ok(())
}

/// `*` or `alpha{1,8}(-alphanum{1,8})*` (RFC 4647 language range).
fn is_language_tag(tag: &str) -> bool {
    if tag == "*" {
        return true;
    }
    let mut parts = tag.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    first_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Empty, or `q=` with a weight between 0 and 1.
fn is_quality(params: &str) -> bool {
    if params.is_empty() {
        return true;
    }
    params
        .strip_prefix("q=")
        .and_then(|w| w.parse::<f32>().ok())
        .is_some_and(|w| (0.0..=1.0).contains(&w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language() {
        for ok in [
            &[][..],
            &["en-US"],
            &["es"],
            &["de-DE;q=0.8"],
            &["*"],
            &[" fr "],
        ] {
            assert!(check_accept_language(ok).is_ok(), "{ok:?}");
        }
        for (bad, code) in [
            (&["en-US,es"][..], "AF20053"),
            (&["en", "de"], "AF20053"),
            (&["en_US"], "AF20054"),
            (&["en-US;q=2"], "AF20054"),
            (&["toolonglanguage"], "AF20054"),
            (&["\u{0}"], "AF20054"),
            (&["en-US, 12"], "AF20054"),
        ] {
            assert_eq!(
                check_accept_language(bad).unwrap_err().code,
                code,
                "{bad:?}"
            );
        }
    }
}
