//! Timestamps as the receipt, the claim, the lock and the metrics write them: RFC 3339, UTC, whole
//! seconds; and unix seconds for the decision's age arithmetic.

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
}
