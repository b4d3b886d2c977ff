//! UTC calendar arithmetic for the `date` and `rfc3339` filters (no time-zone database: every
//! timestamp in Hookline is UTC milliseconds).

use std::fmt::Write;

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    milli: i64,
    epoch_s: i64,
}

fn parts(ms: i64) -> Parts {
    let epoch_s = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = epoch_s.div_euclid(86_400);
    let sod = epoch_s.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Parts { year, month, day, hour: sod / 3600, minute: sod % 3600 / 60, second: sod % 60, milli, epoch_s }
}

/// `2024-01-02T03:04:05.678Z`.
pub fn rfc3339(ms: i64) -> String {
    let p = parts(ms);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", p.year, p.month, p.day, p.hour, p.minute, p.second, p.milli)
}

/// Formats `ms` with a strftime subset: `%Y %m %d %H %M %S %L` (milliseconds) `%s` (Unix
/// seconds) `%z` (`+0000`) `%Z` (`UTC`) `%%`.
pub fn format(ms: i64, fmt: &str) -> Result<String, String> {
    let p = parts(ms);
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('Y') => write!(out, "{:04}", p.year),
            Some('m') => write!(out, "{:02}", p.month),
            Some('d') => write!(out, "{:02}", p.day),
            Some('H') => write!(out, "{:02}", p.hour),
            Some('M') => write!(out, "{:02}", p.minute),
            Some('S') => write!(out, "{:02}", p.second),
            Some('L') => write!(out, "{:03}", p.milli),
            Some('s') => write!(out, "{}", p.epoch_s),
            Some('z') => write!(out, "+0000"),
            Some('Z') => write!(out, "UTC"),
            Some('%') => write!(out, "%"),
            Some(other) => {
                return Err(format!("unsupported date format `%{other}`; use %Y %m %d %H %M %S %L %s %z %Z %%"));
            }
            None => return Err("date format ends with a lone `%`".into()),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_614_265_330_123), "2021-02-25T15:02:10.123Z");
        // Leap day, and the last millisecond of a leap year.
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_704_067_199_999), "2023-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format(1_614_265_330_123, "%d/%m/%Y %H:%M:%S.%L %Z %z %s %%").unwrap(),
            "25/02/2021 15:02:10.123 UTC +0000 1614265330 %"
        );
        assert!(format(0, "%Q").unwrap_err().contains("%Q"));
        assert!(format(0, "%").is_err());
        // Extremes do not panic.
        let _ = rfc3339(i64::MAX);
        let _ = rfc3339(i64::MIN);
    }

    /// Day-by-day walk over 1900..2100 agrees with a naive calendar.
    #[test]
    fn walks_the_calendar() {
        let (mut y, mut m, mut d) = (1900i64, 1u32, 1u32);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let dim = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        for days in -25_567..47_482 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            d += 1;
            if d > dim(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
