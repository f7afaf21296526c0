//! Gregorian date and time in UTC <-> Unix seconds.
//!
//! The day arithmetic is Howard Hinnant's `days_from_civil` / `civil_from_days` from
//! "chrono-Compatible Low-Level Date Algorithms"
//! (<https://howardhinnant.github.io/date_algorithms.html>): exact over the proleptic Gregorian
//! calendar, loop-free and table-free. The year is shifted to start on 1 March so the leap day
//! falls at its end; 400-year eras of 146 097 days then repeat exactly.
//!
//! Years are limited to 1970..=9999: before the epoch a Unix time would be negative, and past
//! 9999 RFC 3339's four-digit year cannot print it. Leap seconds do not exist here, as in Unix
//! time.

use core::fmt;

const SECS_PER_DAY: u64 = 86_400;
/// Days from 0000-03-01 to 1970-01-01 in the shifted calendar (Hinnant's constant).
const EPOCH_SHIFT_DAYS: i64 = 719_468;
const DAYS_PER_ERA: i64 = 146_097;

/// A UTC date and time of day, to the second.
///
/// Build it with [`DateTime::new`], which validates. The fields are public for reading and for
/// literals in tests; a value with fields `new` would reject gives a meaningless (but never
/// panicking) result from [`DateTime::to_unix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: u16,
    /// 1 = January.
    pub month: u8,
    /// 1-based day of the month.
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

/// A field out of range, or a day that its month does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CivilError {
    /// Not in 1970..=9999.
    Year(u16),
    /// Not in 1..=12.
    Month(u8),
    /// Zero, or past the end of the month (2023-02-29, 2024-04-31).
    Day { year: u16, month: u8, day: u8 },
    /// 24 or more.
    Hour(u8),
    /// 60 or more.
    Minute(u8),
    /// 60 or more: there are no leap seconds in Unix time.
    Second(u8),
}

impl fmt::Display for CivilError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CivilError::Year(y) => {
                write!(
                    f,
                    "year {y} outside {}..={}",
                    DateTime::MIN_YEAR,
                    DateTime::MAX_YEAR
                )
            }
            CivilError::Month(m) => write!(f, "month {m} outside 1..=12"),
            CivilError::Day { year, month, day } => {
                write!(f, "day {day} does not exist in {year:04}-{month:02}")
            }
            CivilError::Hour(h) => write!(f, "hour {h} outside 0..=23"),
            CivilError::Minute(m) => write!(f, "minute {m} outside 0..=59"),
            CivilError::Second(s) => write!(f, "second {s} outside 0..=59"),
        }
    }
}

impl core::error::Error for CivilError {}

impl DateTime {
    pub const MIN_YEAR: u16 = 1970;
    pub const MAX_YEAR: u16 = 9999;
    /// 1970-01-01T00:00:00Z, Unix time 0.
    pub const UNIX_EPOCH: DateTime = DateTime {
        year: 1970,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
    };
    /// 9999-12-31T23:59:59Z, where [`DateTime::from_unix`] saturates.
    pub const MAX: DateTime = DateTime {
        year: 9999,
        month: 12,
        day: 31,
        hour: 23,
        minute: 59,
        second: 59,
    };

    /// A validated date and time.
    pub fn new(
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
    ) -> Result<Self, CivilError> {
        if !(Self::MIN_YEAR..=Self::MAX_YEAR).contains(&year) {
            return Err(CivilError::Year(year));
        }
        if !(1..=12).contains(&month) {
            return Err(CivilError::Month(month));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(CivilError::Day { year, month, day });
        }
        if hour >= 24 {
            return Err(CivilError::Hour(hour));
        }
        if minute >= 60 {
            return Err(CivilError::Minute(minute));
        }
        if second >= 60 {
            return Err(CivilError::Second(second));
        }
        Ok(DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub fn to_unix(self) -> u64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * SECS_PER_DAY as i64
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        // Only reachable from a hand-built value with a year before 1970.
        u64::try_from(secs).unwrap_or(0)
    }

    /// The date and time `secs` seconds after the epoch, saturating at [`DateTime::MAX`].
    pub fn from_unix(secs: u64) -> Self {
        if secs > Self::MAX.to_unix() {
            return Self::MAX;
        }
        let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
        let secs_of_day = secs % SECS_PER_DAY;
        DateTime {
            year,
            month,
            day,
            hour: (secs_of_day / 3600) as u8,
            minute: (secs_of_day / 60 % 60) as u8,
            second: (secs_of_day % 60) as u8,
        }
    }
}

/// RFC 3339 in UTC: `2026-11-25T06:01:02Z`.
impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

fn is_leap_year(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// Days in `month` (1..=12) of `year`.
fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic Gregorian date.
///
/// Signed, as in the original, so that any `u16`/`u8` inputs are safe from overflow.
fn days_from_civil(year: u16, month: u8, day: u8) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    // Count years from March, so February (and its leap day) ends the year.
    let y = i64::from(year) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * DAYS_PER_ERA + doe - EPOCH_SHIFT_DAYS
}

/// Hinnant's `civil_from_days`, for days on or after 1970-01-01 (so unsigned throughout).
fn civil_from_days(days: u64) -> (u16, u8, u8) {
    let z = days + EPOCH_SHIFT_DAYS as u64;
    let era = z / DAYS_PER_ERA as u64;
    let doe = z - era * DAYS_PER_ERA as u64; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year as u16, month as u8, day as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> DateTime {
        DateTime::new(year, month, day, hour, minute, second).unwrap()
    }

    #[test]
    fn epoch_is_zero() {
        assert_eq!(dt(1970, 1, 1, 0, 0, 0), DateTime::UNIX_EPOCH);
        assert_eq!(DateTime::UNIX_EPOCH.to_unix(), 0);
        assert_eq!(DateTime::from_unix(0), DateTime::UNIX_EPOCH);
    }

    #[test]
    fn converts_known_instants() {
        // Reference values from Python's calendar.timegm.
        let cases = [
            (dt(2026, 11, 25, 6, 1, 2), 1_795_586_462),
            (dt(2024, 2, 29, 12, 34, 56), 1_709_210_096),
            (dt(2038, 1, 19, 3, 14, 8), 1 << 31),
            (DateTime::MAX, 253_402_300_799),
        ];
        for (date, secs) in cases {
            assert_eq!(date.to_unix(), secs, "{date}");
            assert_eq!(DateTime::from_unix(secs), date, "{secs}");
        }
    }

    #[test]
    fn leap_days_exist_only_in_leap_years() {
        assert_eq!(dt(2000, 2, 29, 0, 0, 0).to_unix(), 951_782_400);
        assert_eq!(
            DateTime::from_unix(951_782_400 + 86_400),
            dt(2000, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            dt(2024, 2, 29, 0, 0, 0).to_unix() + 86_400,
            dt(2024, 3, 1, 0, 0, 0).to_unix()
        );
        // Divisible by 100 but not 400: no leap day.
        assert_eq!(
            DateTime::new(2100, 2, 29, 0, 0, 0),
            Err(CivilError::Day {
                year: 2100,
                month: 2,
                day: 29
            })
        );
        assert_eq!(
            DateTime::new(2023, 2, 29, 0, 0, 0),
            Err(CivilError::Day {
                year: 2023,
                month: 2,
                day: 29
            })
        );
        assert_eq!(
            DateTime::new(2024, 2, 30, 0, 0, 0),
            Err(CivilError::Day {
                year: 2024,
                month: 2,
                day: 30
            })
        );
    }

    #[test]
    fn last_second_of_a_year_is_followed_by_new_year() {
        let eve = dt(1999, 12, 31, 23, 59, 59);
        assert_eq!(eve.to_unix(), 946_684_799);
        assert_eq!(
            DateTime::from_unix(eve.to_unix() + 1),
            dt(2000, 1, 1, 0, 0, 0)
        );
        assert_eq!(
            DateTime::from_unix(dt(2024, 12, 31, 0, 0, 0).to_unix()).day,
            31
        );
    }

    #[test]
    fn agrees_with_a_naive_calendar_walk_for_every_day() {
        // Step a day at a time through every date in range, counting days by hand; both
        // directions of Hinnant's algorithm must agree with the count.
        let (mut year, mut month, mut day) = (1970u16, 1u8, 1u8);
        let mut days = 0u64;
        loop {
            let midnight = days * 86_400;
            let date = dt(year, month, day, 0, 0, 0);
            assert_eq!(date.to_unix(), midnight, "{date}");
            assert_eq!(DateTime::from_unix(midnight), date);
            assert_eq!(
                DateTime::from_unix(midnight + 86_399),
                dt(year, month, day, 23, 59, 59)
            );
            if date == dt(9999, 12, 31, 0, 0, 0) {
                break;
            }
            days += 1;
            day += 1;
            if day > days_in_month(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
        assert_eq!(days, 2_932_896);
    }

    #[test]
    fn saturates_past_year_9999() {
        let max = DateTime::MAX.to_unix();
        assert_eq!(DateTime::from_unix(max), DateTime::MAX);
        assert_eq!(DateTime::from_unix(max + 1), DateTime::MAX);
        assert_eq!(DateTime::from_unix(u64::MAX), DateTime::MAX);
        assert_eq!(DateTime::from_unix(max - 1), dt(9999, 12, 31, 23, 59, 58));
    }

    #[test]
    fn rejects_out_of_range_fields() {
        assert_eq!(
            DateTime::new(1969, 12, 31, 23, 59, 59),
            Err(CivilError::Year(1969))
        );
        assert_eq!(
            DateTime::new(10_000, 1, 1, 0, 0, 0),
            Err(CivilError::Year(10_000))
        );
        assert_eq!(
            DateTime::new(2026, 0, 1, 0, 0, 0),
            Err(CivilError::Month(0))
        );
        assert_eq!(
            DateTime::new(2026, 13, 1, 0, 0, 0),
            Err(CivilError::Month(13))
        );
        assert_eq!(
            DateTime::new(2026, 1, 0, 0, 0, 0),
            Err(CivilError::Day {
                year: 2026,
                month: 1,
                day: 0
            })
        );
        assert_eq!(
            DateTime::new(2026, 1, 32, 0, 0, 0),
            Err(CivilError::Day {
                year: 2026,
                month: 1,
                day: 32
            })
        );
        assert_eq!(
            DateTime::new(2026, 4, 31, 0, 0, 0),
            Err(CivilError::Day {
                year: 2026,
                month: 4,
                day: 31
            })
        );
        assert_eq!(
            DateTime::new(2026, 1, 1, 24, 0, 0),
            Err(CivilError::Hour(24))
        );
        assert_eq!(
            DateTime::new(2026, 1, 1, 0, 60, 0),
            Err(CivilError::Minute(60))
        );
        assert_eq!(
            DateTime::new(2026, 1, 1, 0, 0, 60),
            Err(CivilError::Second(60))
        );
    }

    #[test]
    fn hand_built_invalid_values_do_not_panic() {
        let zero = DateTime {
            year: 0,
            month: 0,
            day: 0,
            hour: 0,
            minute: 0,
            second: 0,
        };
        assert_eq!(zero.to_unix(), 0);
        let huge = DateTime {
            year: u16::MAX,
            month: 255,
            day: 255,
            hour: 255,
            minute: 255,
            second: 255,
        };
        assert!(huge.to_unix() > DateTime::MAX.to_unix());
    }

    #[test]
    fn displays_rfc3339_utc() {
        extern crate std;
        use std::format;
        assert_eq!(
            format!("{}", dt(2026, 11, 25, 6, 1, 2)),
            "2026-11-25T06:01:02Z"
        );
        assert_eq!(format!("{}", DateTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            format!(
                "{}",
                CivilError::Day {
                    year: 2100,
                    month: 2,
                    day: 29
                }
            ),
            "day 29 does not exist in 2100-02"
        );
    }
}
