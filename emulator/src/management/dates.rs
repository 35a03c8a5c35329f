//! Datetimes in requests (`startTime`, `endTime`, a webhook's `expiration`).
//!
//! Documented: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM`, `YYYY-MM-DDTHH:MM:SS`, read as UTC.
//! Production clients also send a `Z`, fractions (`.sssZ`, Python's microseconds) and
//! percent-encoded offsets (`%2B00:00`); all are accepted and converted to UTC. An offset
//! whose `+` arrived unencoded reaches the server as a space (`…T10:00:00 00:00`): that is
//! refused (AF20002), the behaviour the reference suspects; not configurable yet.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Parses a request datetime; `None` when it is not one of the accepted forms.
pub fn parse_request_time(text: &str) -> Option<OffsetDateTime> {
    let b = text.as_bytes();
    let date = parse_date(b.get(..10)?)?;
    let rest = b.get(10..)?;
    if rest.is_empty() {
        return Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc());
    }
    if !matches!(rest.first(), Some(b'T' | b't')) {
        return None;
    }
    let rest = rest.get(1..)?;
    let hour = two_digits(rest.get(0..2)?)?;
    if *rest.get(2)? != b':' {
        return None;
    }
    let minute = two_digits(rest.get(3..5)?)?;
    let mut rest = rest.get(5..)?;
    let mut second = 0;
    let mut nanos = 0u32;
    if rest.first() == Some(&b':') {
        second = two_digits(rest.get(1..3)?)?;
        rest = rest.get(3..)?;
        if rest.first() == Some(&b'.') {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if !(1..=9).contains(&digits) {
                return None;
            }
            let mut n: u32 = 0;
            for d in &rest[1..=digits] {
                n = n * 10 + u32::from(d - b'0');
            }
            nanos = n * 10u32.pow(9 - digits as u32);
            rest = rest.get(1 + digits..)?;
        }
    }
    let offset = match rest {
        [] | [b'Z' | b'z'] => UtcOffset::UTC,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let h = two_digits(&[*h1, *h2])?;
            let m = two_digits(&[*m1, *m2])?;
            if h > 14 || m > 59 {
                return None;
            }
            let (h, m) = (h as i8, m as i8);
            if *sign == b'-' {
                UtcOffset::from_hms(-h, -m, 0).ok()?
            } else {
                UtcOffset::from_hms(h, m, 0).ok()?
            }
        }
        _ => return None,
    };
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_offset(offset)
            .to_offset(UtcOffset::UTC),
    )
}

fn parse_date(b: &[u8]) -> Option<Date> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = b[..4].iter().try_fold(0i32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i32::from(c - b'0'))
    })?;
    let month = Month::try_from(two_digits(&b[5..7])?).ok()?;
    let day = two_digits(&b[8..10])?;
    Date::from_calendar_date(year, month, day).ok()
}

fn two_digits(b: &[u8]) -> Option<u8> {
    match b {
        [a, c] if a.is_ascii_digit() && c.is_ascii_digit() => Some((a - b'0') * 10 + (c - b'0')),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn documented_and_client_formats() {
        let cases = [
            ("2015-10-01", datetime!(2015-10-01 00:00 UTC)),
            ("2015-10-01T13:45", datetime!(2015-10-01 13:45 UTC)),
            ("2015-10-01T13:45:07", datetime!(2015-10-01 13:45:07 UTC)),
            ("2015-10-01T13:45:07Z", datetime!(2015-10-01 13:45:07 UTC)),
            (
                "2015-10-01T13:45:07.123Z",
                datetime!(2015-10-01 13:45:07.123 UTC),
            ),
            (
                "2015-10-01T13:45:07.123456",
                datetime!(2015-10-01 13:45:07.123456 UTC),
            ),
            (
                "2015-10-01T13:45:07+02:00",
                datetime!(2015-10-01 11:45:07 UTC),
            ),
            (
                "2015-10-01T13:45:07-0130",
                datetime!(2015-10-01 15:15:07 UTC),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_request_time(text), Some(want), "{text}");
        }
    }

    #[test]
    fn refused_forms() {
        for text in [
            "",
            "2015-10-01T13:45:07 00:00",
            "2015-13-01",
            "2015-02-30",
            "2015-10-01T24:00",
            "2015-10-01 13:45",
            "2015-10-01T13",
            "2015-10-01T13:45:07.",
            "2015-10-01T13:45:07.1234567890Z",
            "2015-10-01T13:45:07Zjunk",
            "10/01/2015",
            "2015-10-01T13:45:07+99:00",
            "２０１５-10-01",
        ] {
            assert_eq!(parse_request_time(text), None, "{text:?}");
        }
    }
}
