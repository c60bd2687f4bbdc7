//! Timestamps as the platforms write them, to Unix seconds; and the clock.

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Unix milliseconds now.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, mo: i64, d: i64) -> i64 {
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn in_range(mo: i64, d: i64, h: i64, mi: i64, s: i64) -> bool {
    (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..=60).contains(&s)
}

/// `+hh:mm`, `+hhmm`, `Z` or nothing (UTC), as seconds east of UTC.
fn offset(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() || s == "Z" || s == "GMT" || s == "UT" || s == "UTC" {
        return Some(0);
    }
    let sign = match s.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = s[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    Some(sign * (h * 3600 + m * 60))
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Hinnant's inverse).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix seconds as RFC 3339 in UTC: `2026-11-21T10:00:00Z`.
pub fn format_rfc3339(t: i64) -> String {
    let (y, mo, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// RFC 3339, as Shopify writes it: `2024-01-31T10:00:00-05:00`, fractions allowed.
/// A time given as Unix milliseconds or as RFC 3339, in Unix milliseconds.
pub fn parse_time_ms(raw: &str) -> Option<i64> {
    if let Ok(ms) = raw.parse::<i64>() {
        return (ms >= 0).then_some(ms);
    }
    parse_rfc3339(raw)?.checked_mul(1000)
}

pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !in_range(mo, d, h, mi, se) {
        return None;
    }
    let rest = s.get(19..)?;
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset(rest)?)
}

/// RFC 2822, as BigCommerce's v2 API writes it: `Tue, 20 Nov 2012 00:00:00 +0000`.
pub fn parse_rfc2822(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let s = s.split_once(',').map_or(s, |(_, rest)| rest);
    let mut parts = s.split_whitespace();
    let d: i64 = parts.next()?.parse().ok()?;
    let month = parts.next()?.to_ascii_lowercase();
    let mo = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let y: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi) = (clock.next()??, clock.next()??);
    let se = clock.next().flatten().unwrap_or(0);
    if !in_range(mo, d, h, mi, se) {
        return None;
    }
    let off = offset(parts.next().unwrap_or(""))?;
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_round_trips_through_parsing() {
        for t in [0, 951_782_400, 1_700_000_000, 1_795_000_000, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t), "{t}");
        }
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn rfc3339_timestamps_parse_with_their_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-01-31T10:00:00-05:00"),
            Some(1_706_713_200)
        );
        assert_eq!(
            parse_rfc3339("2024-01-31T15:00:00+00:00"),
            Some(1_706_713_200)
        );
        assert_eq!(
            parse_rfc3339("2024-01-31T15:00:00.123Z"),
            Some(1_706_713_200)
        );
        assert_eq!(parse_rfc3339("2024-01-31 15:00:00"), Some(1_706_713_200));
        assert_eq!(parse_rfc3339("2024-13-31T15:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn rfc2822_timestamps_parse_with_their_offsets() {
        assert_eq!(
            parse_rfc2822("Wed, 31 Jan 2024 15:00:00 +0000"),
            Some(1_706_713_200)
        );
        assert_eq!(
            parse_rfc2822("Wed, 31 Jan 2024 10:00:00 -0500"),
            Some(1_706_713_200)
        );
        assert_eq!(parse_rfc2822("31 Jan 2024 15:00 GMT"), Some(1_706_713_200));
        assert_eq!(parse_rfc2822("Wed, 31 Foo 2024 15:00:00 +0000"), None);
        assert_eq!(parse_rfc2822(""), None);
    }
}
