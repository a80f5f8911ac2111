//! The two date formats S3 uses: ISO 8601 in XML listings
//! (`2026-12-02T14:00:01.500Z`) and HTTP dates in headers
//! (`Wed, 02 Dec 2026 14:00:01 GMT`). Both become seconds and nanoseconds
//! since 1970.

use std::time::UNIX_EPOCH;

/// `(seconds, nanoseconds)` since 1970-01-01T00:00:00Z.
pub type Instant = (i64, u32);

/// `Last-Modified: Wed, 02 Dec 2026 14:00:01 GMT`.
pub fn from_http_date(text: &str) -> Option<Instant> {
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    Some((i64::try_from(since.as_secs()).ok()?, 0))
}

/// `2026-12-02T14:00:01.500Z` (UTC only, as S3 writes it; fraction optional).
pub fn from_iso8601(text: &str) -> Option<Instant> {
    let text = text.trim().strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, fraction)) => (clock, fraction),
        None => (time, ""),
    };
    let mut t = clock.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: String = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        digits.parse().ok()?
    };
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// well-known civil-days algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601() {
        assert_eq!(from_iso8601("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            from_iso8601("2026-12-02T14:00:01.500Z"),
            Some((1_796_220_001, 500_000_000))
        );
        assert_eq!(
            from_iso8601("2000-02-29T23:59:59.123456789Z"),
            Some((951_868_799, 123_456_789))
        );
        assert_eq!(from_iso8601("1969-12-31T23:59:59Z"), Some((-1, 0)));
        for bad in [
            "",
            "2026-12-02",
            "2026-13-02T00:00:00Z",
            "2026-12-02T14:00:01+01:00",
            "2026-12-02T14:00:01.x5Z",
        ] {
            assert_eq!(from_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            from_http_date("Wed, 02 Dec 2026 14:00:01 GMT"),
            Some((1_796_220_001, 0))
        );
        assert_eq!(from_http_date("yesterday"), None);
    }
}
