//! The small part of OData query syntax the emulated Graph routes take: `$filter` as one
//! `<property> eq '<literal>'` comparison (the forms the online-meeting docs use), `$top`
//! and `$skiptoken`. Names are matched case-insensitively, with or without the `$`.

use super::errors::GraphError;

/// A parsed `$filter`: `property eq 'value'` (property as written, value unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EqFilter {
    pub property: String,
    pub value: String,
}

/// The query options of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    pub filter: Option<String>,
    pub top: Option<String>,
    pub skiptoken: Option<String>,
}

impl QueryOptions {
    /// Decodes the query string (the first occurrence of each option wins).
    pub fn parse(query: Option<&str>) -> QueryOptions {
        let mut out = QueryOptions::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let name = k.trim_start_matches('$').to_ascii_lowercase();
            let slot = match name.as_str() {
                "filter" => &mut out.filter,
                "top" => &mut out.top,
                "skiptoken" => &mut out.skiptoken,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        out
    }
}

/// Parses `$top`: an integer in `1..=max`.
pub fn parse_top(text: &str, max: u32) -> Result<u32, GraphError> {
    let trimmed = text.trim();
    let n: u32 = trimmed.parse().map_err(|_| {
        GraphError::bad_request(format!(
            "Invalid page size specified: '{trimmed}'. Must be between 1 and {max} inclusive."
        ))
    })?;
    if n == 0 || n > max {
        return Err(GraphError::bad_request(format!(
            "Invalid page size specified: '{n}'. Must be between 1 and {max} inclusive."
        )));
    }
    Ok(n)
}

/// Parses a single `property eq 'literal'` comparison. Property paths are letters, digits,
/// `_` and `/`; the literal is single-quoted with `''` for a quote.
pub fn parse_eq_filter(text: &str) -> Result<EqFilter, GraphError> {
    let invalid = |why: &str| GraphError::bad_request(format!("Invalid filter clause: {why}"));
    let s = text.trim();
    let prop_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '/'))
        .unwrap_or(s.len());
    let property = &s[..prop_end];
    if property.is_empty() || property.starts_with('/') || property.ends_with('/') {
        return Err(invalid("a property name is expected."));
    }
    let rest = s[prop_end..].trim_start();
    let Some(rest) = rest
        .get(..2)
        .filter(|op| op.eq_ignore_ascii_case("eq"))
        .map(|_| &rest[2..])
    else {
        return Err(invalid("only the 'eq' operator is supported here."));
    };
    if !rest.starts_with(char::is_whitespace) {
        return Err(invalid("whitespace is expected after 'eq'."));
    }
    let rest = rest.trim_start();
    let Some(body) = rest.strip_prefix('\'') else {
        return Err(invalid("a quoted string literal is expected."));
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    let mut end = None;
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if body[i + 1..].starts_with('\'') {
                value.push('\'');
                chars.next();
            } else {
                end = Some(i + 1);
                break;
            }
        } else {
            value.push(c);
        }
    }
    let Some(end) = end else {
        return Err(invalid("the string literal is not terminated."));
    };
    if !body[end..].trim().is_empty() {
        return Err(invalid("unexpected text after the comparison."));
    }
    Ok(EqFilter {
        property: property.to_string(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_filters() {
        let f = parse_eq_filter("JoinWebUrl eq 'https://x/y?a=1'").expect("parses");
        assert_eq!(f.property, "JoinWebUrl");
        assert_eq!(f.value, "https://x/y?a=1");
        let f =
            parse_eq_filter(" joinMeetingIdSettings/joinMeetingId  EQ 'it''s' ").expect("parses");
        assert_eq!(f.property, "joinMeetingIdSettings/joinMeetingId");
        assert_eq!(f.value, "it's");
        for bad in [
            "",
            "eq 'x'",
            "a eq",
            "a eq 'x",
            "a ne 'x'",
            "a eq 'x' and b eq 'y'",
            "a eq x",
            "aeq'x'",
            "/a eq 'x'",
        ] {
            assert!(parse_eq_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn top_bounds() {
        assert_eq!(parse_top("2", 50).ok(), Some(2));
        assert_eq!(parse_top("50", 50).ok(), Some(50));
        for bad in ["0", "51", "-1", "x", "", "99999999999"] {
            assert!(parse_top(bad, 50).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn query_options_first_wins_and_dollar_is_optional() {
        let q = QueryOptions::parse(Some("%24top=2&$top=3&filter=a%20eq%20'b'&$skiptoken=t"));
        assert_eq!(q.top.as_deref(), Some("2"));
        assert_eq!(q.filter.as_deref(), Some("a eq 'b'"));
        assert_eq!(q.skiptoken.as_deref(), Some("t"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn filter_parsing_never_panics(text in ".{0,80}") {
            let _ = parse_eq_filter(&text);
        }

        #[test]
        fn quoted_literals_round_trip(prop in "[A-Za-z][A-Za-z0-9_]{0,10}(/[A-Za-z][A-Za-z0-9_]{0,10})?", value in ".{0,40}") {
            let quoted = value.replace('\'', "''");
            let f = parse_eq_filter(&format!("{prop} eq '{quoted}'")).expect("a well-formed comparison parses");
            prop_assert_eq!(f.property, prop);
            prop_assert_eq!(f.value, value);
        }

        #[test]
        fn top_is_accepted_exactly_in_range(text in "[-+ 0-9a-z]{0,12}") {
            let expected = text.trim().parse::<u32>().ok().filter(|n| (1..=50).contains(n));
            prop_assert_eq!(parse_top(&text, 50).ok(), expected);
        }

        #[test]
        fn query_options_never_panic(query in ".{0,120}") {
            let _ = QueryOptions::parse(Some(&query));
        }
    }
}
