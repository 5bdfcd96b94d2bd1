//! Timestamps as the receipt, the claim, the lock and the metrics write them: RFC 3339, UTC, whole
//! seconds; unix seconds for the decision's age arithmetic; and PostgreSQL's `timestamptz` text
//! with its UTC offset, the one form a time recovery target is read in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as RFC 3339 UTC with seconds.
#[must_use]
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

#[must_use]
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The last second RFC 3339 (four-digit years) can write: 9999-12-31T23:59:59Z.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// pgBackRest's unix timestamps as RFC 3339. The value comes from outside (pgBackRest's JSON):
/// one before 1970 or after 9999 is shown as the nearest of the two, never a panic.
#[must_use]
pub fn unix_to_rfc3339(seconds: i64) -> String {
    let seconds = u64::try_from(seconds).unwrap_or(0).min(LAST_RFC3339_SECOND);
    rfc3339(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Seconds since the epoch, now.
#[must_use]
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Parses a time as an instant (unix microseconds), in the one form both PostgreSQL and
/// pgBackRest 2.45 read the same way: `YYYY-MM-DD HH:MM:SS[.ffffff]±HH[[:]MM]`
/// (`2026-01-02 03:04:05+00`, as PostgreSQL prints a `timestamptz` in UTC). The offset is
/// required: without one PostgreSQL reads the time in the server's time zone and pgBackRest in
/// its own, and neither can be checked here. pgBackRest refuses `T`, `Z` and zone names.
///
/// # Errors
/// A sentence saying what is wrong with the text.
pub fn parse_timestamptz(text: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        format!(
            "\"{text}\" is not a time pg-preseed can check ({why}); write it as \
             \"2026-01-02 03:04:05+00\" (date, time with seconds, UTC offset)"
        )
    };
    let number = |s: &str, what: &str| -> Result<i64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(what));
        }
        s.parse::<i64>().map_err(|_| bad(what))
    };
    let (date, clock) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("no space between date and time"))?;
    let mut date_parts = date.split('-');
    let (year, month, day) = match (
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
    ) {
        (Some(y), Some(m), Some(d), None) if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            (number(y, "year")?, number(m, "month")?, number(d, "day")?)
        }
        _ => return Err(bad("no YYYY-MM-DD date")),
    };
    // The clock part ends where the offset's sign begins.
    let zone_at = clock
        .find(['+', '-'])
        .ok_or_else(|| bad("no UTC offset such as +00"))?;
    let (clock, zone) = clock.split_at(zone_at);
    let mut clock_parts = clock.split(':');
    let (hour, minute, seconds) = match (
        clock_parts.next(),
        clock_parts.next(),
        clock_parts.next(),
        clock_parts.next(),
    ) {
        (Some(h), Some(m), Some(s), None) if h.len() == 2 && m.len() == 2 => {
            (number(h, "hour")?, number(m, "minute")?, s)
        }
        _ => return Err(bad("no HH:MM:SS time")),
    };
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    if whole.len() != 2 || fraction.len() > 6 || (seconds.contains('.') && fraction.is_empty()) {
        return Err(bad("seconds"));
    }
    let second = number(whole, "seconds")?;
    let micros = if fraction.is_empty() {
        0
    } else {
        number(&format!("{fraction:0<6}"), "fraction")?
    };
    let offset_minutes =
        parse_offset(zone).ok_or_else(|| bad("the offset is not like +00, -05:30 or +0100"))?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad("out of range"));
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000_000 + micros)
}

/// `+HH`, `+HHMM`, `+HH:MM`, `-…` → minutes east of UTC.
fn parse_offset(zone: &str) -> Option<i64> {
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let (hours, minutes) = match (digits.len(), digits.as_bytes().get(2)) {
        (2, _) => (digits, "0"),
        (4, _) => digits.split_at(2),
        (5, Some(b':')) => (&digits[..2], &digits[3..]),
        _ => return None,
    };
    if !hours
        .bytes()
        .chain(minutes.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (hours, minutes) = (hours.parse::<i64>().ok()?, minutes.parse::<i64>().ok()?);
    (hours <= 15 && minutes < 60).then_some(sign * (hours * 60 + minutes))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(unix_to_rfc3339(1_795_770_112), "2026-11-27T09:01:52Z");
        assert_eq!(unix_to_rfc3339(-5), "1970-01-01T00:00:00Z");
        // Issue 15.5: values from pgBackRest's JSON that are no time do not panic.
        for seconds in [i64::MIN, i64::MAX, 253_402_300_800, 1 << 40] {
            assert!(!unix_to_rfc3339(seconds).is_empty());
        }
    }

    fn time(text: &str) -> i64 {
        parse_timestamptz(text).unwrap()
    }

    #[test]
    fn times_with_offsets() {
        assert_eq!(time("1970-01-01 00:00:00+00"), 0);
        assert_eq!(time("1970-01-01 00:00:01+00"), 1_000_000);
        // PostgreSQL's own output for clock_timestamp() in UTC.
        assert_eq!(time("2026-11-27 18:34:21.296396+00"), 1_795_804_461_296_396);
        assert_eq!(
            time("2026-11-27 19:34:21.296396+01"),
            time("2026-11-27 18:34:21.296396+00")
        );
        assert_eq!(
            time("2026-11-27 18:04:00+05:30"),
            time("2026-11-27 12:34:00+00")
        );
        assert_eq!(
            time("2024-02-29 12:00:00-0800"),
            time("2024-02-29 20:00:00+00")
        );
        assert_eq!(time("2026-11-27 18:34:21.5+00") % 1_000_000, 500_000);
        // The same instant as unix_to_rfc3339 writes it.
        assert_eq!(
            unix_to_rfc3339(time("2026-11-27 09:01:52+00") / 1_000_000),
            "2026-11-27T09:01:52Z"
        );
        for bad in [
            // No offset: PostgreSQL and pgBackRest would each use their own time zone.
            "2026-11-27 18:34:21",
            "2026-11-27",
            // pgBackRest 2.45 refuses these forms (PostgreSQL reads them).
            "2026-11-27T18:34:21Z",
            "2026-11-27 18:34:21 UTC",
            "2026-11-27 18:34+00",
            "2026-11-27 18:34:21 Europe/Berlin",
            "yesterday",
            "2026-13-01 00:00:00+00",
            "2023-02-29 00:00:00+00",
            "2026-11-27 25:00:00+00",
            "2026-11-27 18:34:21.+00",
            "2026-11-27 18:34:21+1",
            "",
        ] {
            let error = parse_timestamptz(bad).unwrap_err();
            assert!(error.contains("2026-01-02 03:04:05+00"), "{bad}: {error}");
        }
    }
}
