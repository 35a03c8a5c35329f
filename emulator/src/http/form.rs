//! A strict `application/x-www-form-urlencoded` parser: `+` is a space, `%XX` escapes are
//! decoded, and the decoded bytes must be UTF-8 (a lossy parser would let a corrupted secret
//! through as a different string).

/// Why a form body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// A `%` not followed by two hex digits.
    BadEscape { field: String },
    /// Decoded bytes are not UTF-8.
    NotUtf8 { field: String },
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormError::BadEscape { field } => {
                write!(f, "Malformed percent-escape in form field '{field}'")
            }
            FormError::NotUtf8 { field } => write!(f, "Form field '{field}' is not valid UTF-8"),
        }
    }
}

/// The parsed fields, in order; duplicates are kept and the first one wins on lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub fields: Vec<(String, String)>,
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field that is present and not blank.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }
}

pub fn parse_form(body: &[u8]) -> Result<Form, FormError> {
    let mut fields = Vec::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let key = decode(k).ok_or_else(|| FormError::BadEscape {
            field: String::from_utf8_lossy(k).into_owned(),
        })?;
        let key = String::from_utf8(key).map_err(|_| FormError::NotUtf8 {
            field: String::from_utf8_lossy(k).into_owned(),
        })?;
        let value = decode(v).ok_or_else(|| FormError::BadEscape { field: key.clone() })?;
        let value =
            String::from_utf8(value).map_err(|_| FormError::NotUtf8 { field: key.clone() })?;
        fields.push((key, value));
    }
    Ok(Form { fields })
}

fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_digit(*input.get(i + 1)?)?;
                let lo = hex_digit(*input.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form-encoded value (`+` is a space); `None` for bad escapes or non-UTF-8.
pub fn percent_decode(value: &str) -> Option<String> {
    String::from_utf8(decode(value.as_bytes())?).ok()
}

/// Percent-encodes a value for a form or query string (unreserved characters kept).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_plus_and_escapes() {
        let f = parse_form(b"a=b+c&scope=https%3A%2F%2Fx%2F.default&flag&a=2").expect("form");
        assert_eq!(f.get("a"), Some("b c"));
        assert_eq!(f.get("scope"), Some("https://x/.default"));
        assert_eq!(f.get("flag"), Some(""));
        assert_eq!(f.non_empty("flag"), None);
    }

    #[test]
    fn rejects_bad_escapes_and_invalid_utf8() {
        assert!(matches!(
            parse_form(b"a=%zz"),
            Err(FormError::BadEscape { .. })
        ));
        assert!(matches!(
            parse_form(b"a=%"),
            Err(FormError::BadEscape { .. })
        ));
        assert!(matches!(
            parse_form(b"a=%ff%fe"),
            Err(FormError::NotUtf8 { .. })
        ));
        assert!(matches!(
            parse_form(b"a=\xff"),
            Err(FormError::NotUtf8 { .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_form(&body);
        }

        #[test]
        fn encode_then_parse_round_trips(pairs in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,40}"), 0..6)) {
            let body = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
            let parsed = parse_form(body.as_bytes()).expect("own encoding parses");
            prop_assert_eq!(parsed.fields, pairs);
        }
    }
}
