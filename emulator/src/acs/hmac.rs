//! ACS HMAC-SHA256 request signing (reference §2.2) and connection strings (§2.1).
//!
//! String to sign: `VERB\nPATH_AND_QUERY\nX_MS_DATE;HOST;CONTENT_HASH` (the values in the
//! order `SignedHeaders` lists them), signed with the base64-decoded access key; the header is
//! `HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<base64>`.
//! The server side takes the path and query exactly as they arrived (the SDKs sign the raw,
//! percent-encoded request target).

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// `base64(SHA256(""))`.
pub const EMPTY_BODY_HASH: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
/// The header list the SDKs sign.
pub const SDK_SIGNED_HEADERS: [&str; 3] = ["x-ms-date", "host", "x-ms-content-sha256"];
/// The authentication scheme's name.
pub const SCHEME: &str = "HMAC-SHA256";

/// Why an HMAC `Authorization` header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the Authorization header does not start with 'HMAC-SHA256 '")]
    WrongScheme,
    #[error("the Authorization header has no '{0}=' part")]
    MissingPart(&'static str),
    #[error("the Authorization header names '{0}' twice")]
    DuplicatePart(String),
    #[error("the Authorization header has an unknown part '{0}'")]
    UnknownPart(String),
    #[error(
        "SignedHeaders must list x-ms-date, host and x-ms-content-sha256, each once (got '{0}')"
    )]
    SignedHeaders(String),
    #[error("the Signature is not base64 of a 32-byte HMAC-SHA256")]
    BadSignature,
}

/// A parsed `Authorization: HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacHeader {
    /// Lower-cased header names, in the order they were signed.
    pub signed_headers: Vec<String>,
    pub signature: [u8; 32],
}

/// Parses the header value. Part names are case-insensitive; `SignedHeaders` must name
/// exactly `x-ms-date`, `host` and `x-ms-content-sha256` (any order).
pub fn parse_authorization(value: &str) -> Result<HmacHeader, HeaderError> {
    let value = value.trim();
    let rest = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(SCHEME) => rest.trim(),
        _ => return Err(HeaderError::WrongScheme),
    };
    let mut signed: Option<&str> = None;
    let mut signature: Option<&str> = None;
    for part in rest.split('&') {
        let (name, v) = part.split_once('=').unwrap_or((part, ""));
        let slot = if name.trim().eq_ignore_ascii_case("SignedHeaders") {
            &mut signed
        } else if name.trim().eq_ignore_ascii_case("Signature") {
            &mut signature
        } else {
            return Err(HeaderError::UnknownPart(name.trim().to_string()));
        };
        if slot.replace(v.trim()).is_some() {
            return Err(HeaderError::DuplicatePart(name.trim().to_string()));
        }
    }
    let signed = signed.ok_or(HeaderError::MissingPart("SignedHeaders"))?;
    let signature = signature.ok_or(HeaderError::MissingPart("Signature"))?;
    let names: Vec<String> = signed
        .split(';')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let complete = names.len() == SDK_SIGNED_HEADERS.len()
        && SDK_SIGNED_HEADERS
            .iter()
            .all(|h| names.iter().filter(|n| n == h).count() == 1);
    if !complete {
        return Err(HeaderError::SignedHeaders(signed.to_string()));
    }
    let bytes = STANDARD
        .decode(signature)
        .map_err(|_| HeaderError::BadSignature)?;
    let signature: [u8; 32] = bytes.try_into().map_err(|_| HeaderError::BadSignature)?;
    Ok(HmacHeader {
        signed_headers: names,
        signature,
    })
}

/// `base64(SHA256(body))`.
pub fn content_hash(body: &[u8]) -> String {
    STANDARD.encode(crate::jose::sha256(body))
}

/// The string to sign: `VERB\nPATH_AND_QUERY\nV1;V2;V3`.
pub fn string_to_sign(method: &str, path_and_query: &str, values: &[&str]) -> String {
    format!(
        "{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path_and_query,
        values.join(";")
    )
}

/// `base64(HMAC-SHA256(key, string_to_sign))`.
pub fn signature(key: &[u8], string_to_sign: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    STANDARD.encode(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

/// Constant-time check of `signature` over `string_to_sign` with `key`.
pub fn verify(key: &[u8], string_to_sign: &str, signature: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::verify(&key, string_to_sign.as_bytes(), signature).is_ok()
}

/// The headers a client sends for an SDK-style signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub x_ms_date: String,
    pub x_ms_content_sha256: String,
    pub authorization: String,
}

/// Signs a request the way the SDKs do (client side; used by tests and examples).
pub fn sign_request(
    key: &[u8],
    method: &str,
    path_and_query: &str,
    host: &str,
    date: OffsetDateTime,
    body: &[u8],
) -> SignedRequest {
    let x_ms_date = format_date(date);
    let hash = content_hash(body);
    let sts = string_to_sign(method, path_and_query, &[&x_ms_date, host, &hash]);
    SignedRequest {
        authorization: format!(
            "{SCHEME} SignedHeaders={}&Signature={}",
            SDK_SIGNED_HEADERS.join(";"),
            signature(key, &sts)
        ),
        x_ms_date,
        x_ms_content_sha256: hash,
    }
}

/// RFC 1123 in GMT, as the SDKs write `x-ms-date`: `Sat, 21 Nov 2026 23:36:09 GMT`.
pub fn format_date(t: OffsetDateTime) -> String {
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.format(&fmt).unwrap_or_default()
}

/// Parses an RFC 1123 GMT date (the only form the SDKs send).
pub fn parse_date(text: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    PrimitiveDateTime::parse(text.trim(), &fmt)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// Why a connection string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("the connection string has no '{0}=' part")]
    Missing(&'static str),
    #[error("the endpoint must be an http(s) URL with a host and no path")]
    BadEndpoint,
    #[error("the access key is not base64")]
    BadKey,
}

/// `endpoint=https://host/;accesskey=<base64>` (names case-insensitive, parts in any order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The endpoint without its trailing slash, e.g. `https://127.0.0.1:8443`.
    pub endpoint: String,
    /// The authority (`host[:port]`) that signatures carry.
    pub host: String,
    pub access_key: Vec<u8>,
}

impl ConnectionString {
    pub fn parse(text: &str) -> Result<ConnectionString, ConnectionStringError> {
        let mut endpoint = None;
        let mut key = None;
        for part in text.split(';') {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.trim()),
                "accesskey" => key = Some(value.trim()),
                _ => {}
            }
        }
        let endpoint = endpoint
            .ok_or(ConnectionStringError::Missing("endpoint"))?
            .trim_end_matches('/');
        let key = key.ok_or(ConnectionStringError::Missing("accesskey"))?;
        let host = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .ok_or(ConnectionStringError::BadEndpoint)?;
        let bad_host = host.is_empty()
            || host
                .chars()
                .any(|c| matches!(c, '/' | '?' | '#' | '@') || !c.is_ascii_graphic());
        if bad_host {
            return Err(ConnectionStringError::BadEndpoint);
        }
        let access_key = STANDARD
            .decode(key)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or(ConnectionStringError::BadKey)?;
        Ok(ConnectionString {
            endpoint: endpoint.to_string(),
            host: host.to_string(),
            access_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const HOST: &str = "127.0.0.1:18089";
    const DATE: &str = "Sat, 21 Nov 2026 23:36:09 GMT";

    /// (method, path and query, body, content hash, signature): produced by the real JS SDK
    /// (reference §2.2).
    const VECTORS: [(&str, &str, &str, &str, &str); 3] = [
        (
            "POST",
            "/identities?api-version=2023-10-01",
            "",
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "N5X7hf+ke9Hkr+MyQGgPm+9kbBaDw9LLOTHvSfx7M/k=",
        ),
        (
            "POST",
            "/identities?api-version=2023-10-01",
            r#"{"createTokenWithScopes":["chat"]}"#,
            "WTRvgEjjVd+bvyKw3WgXgDkU81aV8FWq+4/BE+he0+A=",
            "Lu7NqZPDUp8jeBK/Sxm7gmWWibMiC2Hjazo0cnkRat4=",
        ),
        (
            "POST",
            "/identities/8%3Aacs%3Ares_0000/:issueAccessToken?api-version=2023-10-01",
            r#"{"scopes":["voip"],"expiresInMinutes":60}"#,
            "GNtmihW0aWKrZ0DRV1+wUfLysZuegWcqHu8n9mgUyTE=",
            "bpHDuzIg4m+TKvxNfVto1UxSfiozBnI89E5iX2eDkGU=",
        ),
    ];

    fn key() -> Vec<u8> {
        STANDARD.decode(KEY_B64).expect("base64 key")
    }

    /// Full server-side check of one request: body hash, then the signature.
    fn accepts(
        method: &str,
        target: &str,
        host: &str,
        date: &str,
        body: &str,
        hash: &str,
        sig: &str,
    ) -> bool {
        let Ok(sig) = STANDARD.decode(sig) else {
            return false;
        };
        content_hash(body.as_bytes()) == hash
            && verify(
                &key(),
                &string_to_sign(method, target, &[date, host, hash]),
                &sig,
            )
    }

    #[test]
    fn the_sdk_vectors_verify() {
        for (method, target, body, hash, sig) in VECTORS {
            assert_eq!(content_hash(body.as_bytes()), hash, "{target}");
            let sts = string_to_sign(method, target, &[DATE, HOST, hash]);
            assert_eq!(signature(&key(), &sts), sig, "{target}");
            assert!(accepts(method, target, HOST, DATE, body, hash, sig));
            let date = parse_date(DATE).expect("RFC 1123 date");
            let signed = sign_request(&key(), method, target, HOST, date, body.as_bytes());
            assert_eq!(signed.x_ms_date, DATE);
            assert_eq!(
                signed.authorization,
                format!(
                    "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={sig}"
                )
            );
            let parsed = parse_authorization(&signed.authorization).expect("parses");
            assert_eq!(STANDARD.encode(parsed.signature), sig);
        }
    }

    /// Flips one byte of `s` at `i` to another printable character.
    fn mutate(s: &str, i: usize) -> String {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] == b'x' { b'y' } else { b'x' };
        String::from_utf8(b).expect("ascii")
    }

    #[test]
    fn a_one_byte_change_anywhere_fails() {
        for (method, target, body, hash, sig) in VECTORS {
            for i in 0..method.len() {
                assert!(!accepts(
                    &mutate(method, i),
                    target,
                    HOST,
                    DATE,
                    body,
                    hash,
                    sig
                ));
            }
            for i in 0..target.len() {
                assert!(
                    !accepts(method, &mutate(target, i), HOST, DATE, body, hash, sig),
                    "path/query byte {i}"
                );
            }
            for i in 0..HOST.len() {
                assert!(!accepts(
                    method,
                    target,
                    &mutate(HOST, i),
                    DATE,
                    body,
                    hash,
                    sig
                ));
            }
            for i in 0..DATE.len() {
                assert!(!accepts(
                    method,
                    target,
                    HOST,
                    &mutate(DATE, i),
                    body,
                    hash,
                    sig
                ));
            }
            for i in 0..body.len() {
                assert!(
                    !accepts(method, target, HOST, DATE, &mutate(body, i), hash, sig),
                    "body byte {i}"
                );
            }
            // An extra byte on an empty body.
            assert!(!accepts(
                method,
                target,
                HOST,
                DATE,
                &format!("{body} "),
                hash,
                sig
            ));
            let raw = STANDARD.decode(sig).expect("base64");
            for i in 0..raw.len() {
                let mut bad = raw.clone();
                bad[i] ^= 0x01;
                assert!(!accepts(
                    method,
                    target,
                    HOST,
                    DATE,
                    body,
                    hash,
                    &STANDARD.encode(bad)
                ));
            }
        }
    }

    #[test]
    fn header_parser_cases() {
        let ok = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=N5X7hf+ke9Hkr+MyQGgPm+9kbBaDw9LLOTHvSfx7M/k=";
        assert!(parse_authorization(ok).is_ok());
        assert!(parse_authorization(&ok.to_ascii_lowercase().replace(
            "n5x7hf+ke9hkr+myqggpm+9kbbadw9llothvsfx7m/k=",
            "N5X7hf+ke9Hkr+MyQGgPm+9kbBaDw9LLOTHvSfx7M/k="
        ))
        .is_ok());
        assert_eq!(
            parse_authorization("Bearer x"),
            Err(HeaderError::WrongScheme)
        );
        assert_eq!(
            parse_authorization("HMAC-SHA256 Signature=abc"),
            Err(HeaderError::MissingPart("SignedHeaders"))
        );
        assert!(matches!(
            parse_authorization("HMAC-SHA256 SignedHeaders=host&Signature=N5X7hf+ke9Hkr+MyQGgPm+9kbBaDw9LLOTHvSfx7M/k="),
            Err(HeaderError::SignedHeaders(_))
        ));
        assert_eq!(
            parse_authorization(
                "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=!!"
            ),
            Err(HeaderError::BadSignature)
        );
        assert!(matches!(
            parse_authorization(&format!("{ok}&Signature=x")),
            Err(HeaderError::DuplicatePart(_))
        ));
        assert!(matches!(
            parse_authorization(&format!("{ok}&Credential=x")),
            Err(HeaderError::UnknownPart(_))
        ));
    }

    #[test]
    fn dates_round_trip_and_other_formats_fail() {
        let d = parse_date(DATE).expect("parses");
        assert_eq!(format_date(d), DATE);
        assert!(parse_date("2026-11-21T23:36:09Z").is_none());
        assert!(parse_date("Sat, 21 Nov 2026 23:36:09 +0000").is_none());
        assert!(parse_date("Saturday, 21-Nov-26 23:36:09 GMT").is_none());
    }

    #[test]
    fn connection_strings() {
        let c = ConnectionString::parse(&format!(
            "endpoint=https://127.0.0.1:8443/;accesskey={KEY_B64}"
        ))
        .expect("parses");
        assert_eq!(c.endpoint, "https://127.0.0.1:8443");
        assert_eq!(c.host, "127.0.0.1:8443");
        assert_eq!(c.access_key, key());
        let upper = ConnectionString::parse(&format!("AccessKey={KEY_B64};Endpoint=http://h"))
            .expect("any order, any case");
        assert_eq!(upper.host, "h");
        assert_eq!(
            ConnectionString::parse("endpoint=https://h/"),
            Err(ConnectionStringError::Missing("accesskey"))
        );
        assert_eq!(
            ConnectionString::parse("endpoint=https://h/base;accesskey=AAAA"),
            Err(ConnectionStringError::BadEndpoint)
        );
        assert_eq!(
            ConnectionString::parse("endpoint=ftp://h;accesskey=AAAA"),
            Err(ConnectionStringError::BadEndpoint)
        );
        assert_eq!(
            ConnectionString::parse("endpoint=https://h;accesskey=not base64!"),
            Err(ConnectionStringError::BadKey)
        );
    }

    proptest! {
        #[test]
        fn header_parser_never_panics(s in "\\PC{0,200}") {
            let _ = parse_authorization(&s);
        }

        #[test]
        fn header_parser_never_panics_near_valid(
            names in "[a-zA-Z;-]{0,60}",
            sig in "[A-Za-z0-9+/=]{0,60}",
            sep in "[&= ]{0,3}",
        ) {
            let _ = parse_authorization(&format!("HMAC-SHA256 SignedHeaders={names}{sep}Signature={sig}"));
        }

        #[test]
        fn signed_requests_parse_and_verify(body in proptest::collection::vec(any::<u8>(), 0..64), path in "/[a-z0-9%:/?=&-]{0,40}") {
            let date = parse_date(DATE).expect("date");
            let signed = sign_request(&key(), "PUT", &path, HOST, date, &body);
            let parsed = parse_authorization(&signed.authorization).expect("own header parses");
            let sts = string_to_sign("PUT", &path, &[&signed.x_ms_date, HOST, &signed.x_ms_content_sha256]);
            prop_assert!(verify(&key(), &sts, &parsed.signature));
        }

        #[test]
        fn connection_string_parser_never_panics(s in "\\PC{0,200}") {
            let _ = ConnectionString::parse(&s);
        }

        #[test]
        fn connection_strings_round_trip(host in "[a-z0-9.-]{1,30}(:[0-9]{1,5})?", key in proptest::collection::vec(any::<u8>(), 1..48), slash in any::<bool>()) {
            let text = format!("endpoint=https://{host}{};accesskey={}", if slash { "/" } else { "" }, STANDARD.encode(&key));
            let c = ConnectionString::parse(&text).expect("parses");
            prop_assert_eq!(c.host, host);
            prop_assert_eq!(c.access_key, key);
        }
    }
}
