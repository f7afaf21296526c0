//! hello's report and the checks over it, shared by the QEMU boot tests and the Xen harness.
//!
//! hello prints `key: value` lines (apps/hello/src/main.rs). The checks read them the way a
//! person would, so a kernel that boots but reports nonsense (wrong memory size, a clock stuck
//! in 1970, a sleep that returns early) fails. Every problem names its check and quotes the
//! line it read.

use std::ops::RangeInclusive;

/// What `hello panic=1` leaves on the console: each entry is a set of strings that must all
/// appear on one line.
pub const PANIC_LINES: &[&[&str]] = &[&["panicked at apps/hello/"], &["hello: panic requested"]];
/// Firmware and the kernel reserve some memory; the reported total may differ by this much.
const MEM_SLACK_KIB: u64 = 1024;

/// What a right report says. The memory and wall-clock lines are checked only where the
/// platform is expected to get them right (`Some`); their lines must be there either way.
#[derive(Debug)]
pub struct Expected<'a> {
    pub platform: &'a str,
    pub cmdline: &'a str,
    pub mem_mib: Option<u32>,
    pub clock: Option<Clock<'a>>,
    /// What the 100 ms sleep may measure, in milliseconds.
    pub sleep_ms: RangeInclusive<f64>,
}

/// The reference the wall clock is held against: Unix seconds, whose clock that is (for
/// messages), and how far apart the two may be.
#[derive(Debug)]
pub struct Clock<'a> {
    pub unix: i64,
    pub name: &'a str,
    pub slack_secs: i64,
}

/// Everything wrong with hello's report lines; empty if they are right.
pub fn check(console: &[String], expected: &Expected<'_>) -> Vec<String> {
    [
        check_line(console, "platform", |found| {
            expect_eq(found, expected.platform)
        }),
        check_line(console, "cmdline", |found| {
            expect_eq(found, expected.cmdline)
        }),
        check_line(console, "memory", |found| match expected.mem_mib {
            Some(mib) => check_memory(found, u64::from(mib) * 1024),
            None => Ok(()),
        }),
        check_line(console, "uptime", |found| {
            parse_number(found, "", " s").map(drop)
        }),
        check_line(console, "wall clock", |found| match &expected.clock {
            Some(clock) => check_clock(found, clock),
            None => Ok(()),
        }),
        check_line(console, "sleep", |found| {
            check_sleep(found, &expected.sleep_ms)
        }),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// One problem per set of `needles` that no single console line carries in full.
pub fn missing_lines(console: &[String], needles: &[&[&str]]) -> Vec<String> {
    needles
        .iter()
        .filter(|set| {
            !console
                .iter()
                .any(|line| set.iter().all(|needle| line.contains(needle)))
        })
        .map(|set| format!("no console line containing {set:?}"))
        .collect()
}

/// What is wrong with the `key: ` line, if anything, quoting the line.
fn check_line(
    console: &[String],
    key: &str,
    check: impl FnOnce(&str) -> Result<(), String>,
) -> Option<String> {
    match find(console, key) {
        None => Some(format!("no `{key}:` line")),
        Some((line, found)) => check(found)
            .err()
            .map(|problem| format!("{key}: {problem}, in line {line:?}")),
    }
}

/// The first line that starts with `key: ` (log lines excluded) and the rest of it.
fn find<'a>(console: &'a [String], key: &str) -> Option<(&'a str, &'a str)> {
    console.iter().find_map(|line| {
        let found = line
            .strip_prefix(key)?
            .strip_prefix(':')?
            .strip_prefix(' ')?;
        Some((line.as_str(), found))
    })
}

fn expect_eq(found: &str, expected: &str) -> Result<(), String> {
    if found == expected {
        Ok(())
    } else {
        Err(format!("expected {expected:?}, found {found:?}"))
    }
}

/// `total <N> KiB, free <M> KiB`
fn check_memory(found: &str, expected_kib: u64) -> Result<(), String> {
    let parse = || -> Option<(u64, u64)> {
        let (total, free) = found.strip_prefix("total ")?.split_once(" KiB, free ")?;
        Some((
            total.parse().ok()?,
            free.strip_suffix(" KiB")?.parse().ok()?,
        ))
    };
    let (total, free) = parse().ok_or("cannot parse it")?;
    if total.abs_diff(expected_kib) > MEM_SLACK_KIB {
        return Err(format!(
            "total {total} KiB is not within {MEM_SLACK_KIB} KiB of {expected_kib} KiB"
        ));
    }
    if free == 0 || free >= total {
        return Err(format!(
            "free {free} KiB is not between 0 and total {total} KiB"
        ));
    }
    Ok(())
}

fn check_clock(found: &str, clock: &Clock<'_>) -> Result<(), String> {
    let guest = parse_utc(found).ok_or("cannot parse it")?;
    let skew = guest - clock.unix;
    if skew.abs() > clock.slack_secs {
        return Err(format!(
            "{skew} s from {}'s clock, more than {} s",
            clock.name, clock.slack_secs
        ));
    }
    Ok(())
}

/// `requested 100 ms, measured <ms> ms`
fn check_sleep(found: &str, range: &RangeInclusive<f64>) -> Result<(), String> {
    let measured = parse_number(found, "requested 100 ms, measured ", " ms")?;
    if !range.contains(&measured) {
        return Err(format!("measured {measured} ms, outside {range:?} ms"));
    }
    Ok(())
}

fn parse_number(found: &str, prefix: &str, suffix: &str) -> Result<f64, String> {
    found
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| "cannot parse it".to_owned())
}

/// Seconds since the Unix epoch for `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC only).
fn parse_utc(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'Z'),
    ];
    if bytes.len() != 20 || separators.iter().any(|&(at, byte)| bytes[at] != byte) {
        return None;
    }
    let field = |from: usize, to: usize| -> Option<i64> {
        let digits = text.get(from..to)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let (year, month, day) = (field(0, 4)?, field(5, 7)?, field(8, 10)?);
    let (hour, minute, second) = (field(11, 13)?, field(14, 16)?, field(17, 19)?);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60; // a leap second
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`): years start in March so the leap day is the last day of a year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub const NOW: i64 = 1_795_586_462; // 2026-11-25T06:01:02Z

    /// A report that passes [`expected`]: a QEMU boot of 77 MiB with `x=1 y=two`.
    pub const GOOD_REPORT: &[&str] = &[
        "[    0.012345] INFO  ringbolt: booting",
        "platform: qemu-pvh",
        "cmdline: x=1 y=two",
        "memory: total 78200 KiB, free 70000 KiB",
        "[    0.020000] INFO  mm: ready",
        "uptime: 0.031234 s",
        "wall clock: 2026-11-25T06:01:02Z",
        "sleep: requested 100 ms, measured 100.250 ms",
        "ringbolt: exit status 0",
    ];

    pub fn expected() -> Expected<'static> {
        Expected {
            platform: "qemu-pvh",
            cmdline: "x=1 y=two",
            mem_mib: Some(77),
            clock: Some(Clock {
                unix: NOW,
                name: "the host",
                slack_secs: 120,
            }),
            sleep_ms: 100.0..=110.0,
        }
    }

    pub fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| (*line).to_owned()).collect()
    }

    /// The good report with the line starting with `replaced_key` swapped for `line`.
    pub fn with_line(replaced_key: &str, line: &str) -> Vec<String> {
        GOOD_REPORT
            .iter()
            .map(|&good| {
                if good.starts_with(replaced_key) {
                    line
                } else {
                    good
                }
            })
            .map(str::to_owned)
            .collect()
    }

    fn problems_with(replaced_key: &str, line: &str) -> Vec<String> {
        check(&with_line(replaced_key, line), &expected())
    }

    #[test]
    fn accepts_good_report() {
        assert_eq!(
            check(&lines(GOOD_REPORT), &expected()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn rejects_wrong_cmdline_and_platform_quoting_the_line() {
        assert_eq!(
            problems_with("cmdline", "cmdline: x=1"),
            [r#"cmdline: expected "x=1 y=two", found "x=1", in line "cmdline: x=1""#]
        );
        assert_eq!(problems_with("platform", "platform: xen-pvh").len(), 1);
    }

    #[test]
    fn rejects_missing_line() {
        let problems = problems_with("sleep", "[    0.1] INFO  sleep: requested");
        assert_eq!(problems, ["no `sleep:` line"]);
    }

    #[test]
    fn rejects_memory_total_off_by_more_than_a_mib() {
        assert!(problems_with("memory", "memory: total 77824 KiB, free 1 KiB").is_empty());
        assert_eq!(
            problems_with("memory", "memory: total 76799 KiB, free 1 KiB"),
            [
                "memory: total 76799 KiB is not within 1024 KiB of 78848 KiB, \
              in line \"memory: total 76799 KiB, free 1 KiB\""
            ]
        );
        assert_eq!(
            problems_with("memory", "memory: total 131072 KiB, free 1 KiB").len(),
            1
        );
    }

    #[test]
    fn rejects_free_memory_of_zero_or_total() {
        assert_eq!(
            problems_with("memory", "memory: total 78000 KiB, free 0 KiB").len(),
            1
        );
        assert_eq!(
            problems_with("memory", "memory: total 78000 KiB, free 78000 KiB").len(),
            1
        );
        assert_eq!(problems_with("memory", "memory: total 78000 KiB").len(), 1);
    }

    #[test]
    fn rejects_clock_beyond_the_slack_or_unparsable() {
        assert!(problems_with("wall clock", "wall clock: 2026-11-25T06:03:02Z").is_empty());
        assert_eq!(
            problems_with("wall clock", "wall clock: 2026-11-25T06:03:03Z"),
            ["wall clock: 121 s from the host's clock, more than 120 s, \
              in line \"wall clock: 2026-11-25T06:03:03Z\""]
        );
        assert_eq!(
            problems_with("wall clock", "wall clock: 1970-01-01T00:00:00Z").len(),
            1
        );
        assert_eq!(
            problems_with("wall clock", "wall clock: 2026-11-25 06:01:02").len(),
            1
        );
    }

    #[test]
    fn rejects_sleep_outside_the_range() {
        assert!(problems_with("sleep", "sleep: requested 100 ms, measured 110.000 ms").is_empty());
        assert_eq!(
            problems_with("sleep", "sleep: requested 100 ms, measured 99.999 ms").len(),
            1
        );
        assert_eq!(
            problems_with("sleep", "sleep: requested 100 ms, measured 110.5 ms").len(),
            1
        );
        assert_eq!(
            problems_with("sleep", "sleep: requested 100 ms, measured soon").len(),
            1
        );
        let generous = Expected {
            sleep_ms: 100.0..=300.0,
            ..expected()
        };
        let slow = with_line("sleep", "sleep: requested 100 ms, measured 250.5 ms");
        assert!(check(&slow, &generous).is_empty());
    }

    #[test]
    fn unchecked_memory_and_clock_lines_must_still_be_there() {
        let lenient = Expected {
            mem_mib: None,
            clock: None,
            ..expected()
        };
        let odd = with_line("memory", "memory: total 1 KiB, free 9 KiB");
        let odd = odd
            .into_iter()
            .map(|line| {
                line.replace(
                    "wall clock: 2026-11-25T06:01:02Z",
                    "wall clock: unavailable",
                )
            })
            .collect::<Vec<_>>();
        assert!(check(&odd, &lenient).is_empty());
        let without: Vec<String> = odd
            .into_iter()
            .filter(|line| !line.starts_with("memory"))
            .collect();
        assert_eq!(check(&without, &lenient), ["no `memory:` line"]);
    }

    #[test]
    fn missing_lines_wants_all_needles_on_one_line() {
        let needles: &[&[&str]] = &[&["exception: page fault", "rip=", "cr2="]];
        let split = lines(&["exception: page fault rip=0x1", "cr2=0x0"]);
        assert_eq!(
            missing_lines(&split, needles),
            [r#"no console line containing ["exception: page fault", "rip=", "cr2="]"#]
        );
        let whole = lines(&["exception: page fault rip=0x1 cr2=0x0"]);
        assert!(missing_lines(&whole, needles).is_empty());
    }

    #[test]
    fn parses_utc_timestamps() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_utc("2024-02-29T23:59:59Z"), Some(1_709_251_199));
        assert_eq!(parse_utc("2026-11-25T06:01:02Z"), Some(NOW));
    }

    #[test]
    fn rejects_malformed_timestamps() {
        assert_eq!(parse_utc("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc("2026-11-25T24:00:00Z"), None);
        assert_eq!(parse_utc("2026-11-25T06:01:02"), None);
        assert_eq!(parse_utc("2026-11-25T06:01:02+00:00"), None);
        assert_eq!(parse_utc("2026-1a-25T06:01:02Z"), None);
        assert_eq!(parse_utc("+026-11-25T06:01:02Z"), None);
    }
}
