//! Boot tests: boot `hello` on QEMU (TCG) and check what it prints.
//!
//! Each case is a row in [`CASES`]: how to launch, which command line, and what to expect. The
//! checks read the console the way a person would, so a kernel that boots but reports nonsense
//! (wrong memory size, a clock stuck in 1970, a sleep that returns early) fails here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::qemu::{self, Machine, Outcome, Run, Vm};

const MEM_MIB: u32 = 77;
const APPEND: &str = "x=1 y=two";
const TIMEOUT: Duration = Duration::from_secs(60);
/// Firmware and the kernel reserve some memory; the reported total may differ by this much.
const MEM_SLACK_KIB: u64 = 1024;
/// How far the guest's wall clock may be from the host's (TCG boots take seconds, not minutes).
const CLOCK_SLACK_SECS: i64 = 120;
/// `sleep 100 ms` must take at least that, and at most this, long.
const SLEEP_RANGE_MS: std::ops::RangeInclusive<f64> = 100.0..=110.0;
/// Console lines shown under a failed case.
const SHOWN_LINES: usize = 20;

struct Case {
    name: &'static str,
    append: &'static str,
    launch: Launch,
    expect: Expect,
}

enum Launch {
    /// Through [`Vm::command`], as `cargo xtask run` does.
    Xtask(Machine),
    /// Through [`by_hand`]: plain QEMU options only, no isa-debug-exit, so the guest must power
    /// off through ACPI (PM1 on `pc`, the hardware-reduced sleep register on `microvm`).
    ByHand(&'static str),
}

enum Expect {
    /// The full hello report, then exit status 0.
    Report,
    /// A panic; each entry is a set of strings that must all appear on one console line.
    Panic(&'static [&'static [&'static str]]),
}

const CASES: &[Case] = &[
    Case {
        name: "hello reports on pc",
        append: APPEND,
        launch: Launch::Xtask(Machine::Pc),
        expect: Expect::Report,
    },
    Case {
        name: "hello reports on microvm",
        append: APPEND,
        launch: Launch::Xtask(Machine::Microvm),
        expect: Expect::Report,
    },
    Case {
        name: "hello reports from a hand-written qemu command, powers off via ACPI (pc)",
        append: APPEND,
        launch: Launch::ByHand("pc"),
        expect: Expect::Report,
    },
    Case {
        name: "hello powers off via ACPI's sleep register on microvm",
        append: APPEND,
        launch: Launch::ByHand("microvm"),
        expect: Expect::Report,
    },
    Case {
        name: "hello panic=1 panics",
        append: "panic=1",
        launch: Launch::Xtask(Machine::Pc),
        expect: Expect::Panic(&[&["panicked at apps/hello/"], &["hello: panic requested"]]),
    },
    Case {
        name: "hello fault=1 reports the page fault",
        append: "fault=1",
        launch: Launch::Xtask(Machine::Pc),
        expect: Expect::Panic(&[
            &["exception: page fault", "rip=", "cr2=0x80000000000"],
            &["panicked at "],
        ]),
    },
    Case {
        name: "hello overflow=1 hits the stack guard and the double-fault stack",
        append: "overflow=1",
        launch: Launch::Xtask(Machine::Pc),
        expect: Expect::Panic(&[
            &["exception: double fault (vector 8)", "rip="],
            &["panicked at "],
        ]),
    },
    Case {
        name: "hello oom=1 grows the heap, then reports out of memory",
        append: "oom=1",
        launch: Launch::Xtask(Machine::Pc),
        expect: Expect::Panic(&[
            &["oom: 48 MiB allocated"],
            &["heap: out of memory"],
            &["memory allocation of 1048576 bytes failed"],
        ]),
    },
];

/// Passed and failed case counts.
#[derive(Debug, Default)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
}

/// Runs every case against the `hello` image (or fails them all with the build error).
///
/// A failed case runs once more before it counts: under TCG a busy host can delay a guest's
/// timer interrupt by tens of milliseconds, which the sleep check would blame on the kernel. A
/// real bug fails both times; the first failure is printed either way.
pub fn run_all(hello: &Result<PathBuf, String>) -> Tally {
    let mut tally = Tally::default();
    for case in CASES {
        let attempt = || match hello {
            Ok(elf) => run_case(case, elf),
            Err(e) => Err(format!("hello did not build: {e}")),
        };
        let result = attempt().or_else(|first| {
            println!("RETRY {}: {first}", case.name);
            attempt()
        });
        match result {
            Ok(took) => {
                tally.passed += 1;
                println!("PASS  {} ({:.2} s)", case.name, took.as_secs_f64());
            }
            Err(reason) => {
                tally.failed += 1;
                println!("FAIL  {}: {reason}", case.name);
            }
        }
    }
    tally
}

fn run_case(case: &Case, elf: &Path) -> Result<Duration, String> {
    let cmd = match case.launch {
        Launch::Xtask(machine) => Vm {
            kernel: elf,
            mem_mib: MEM_MIB,
            append: case.append,
            machine,
            kvm: false,
        }
        .command(),
        Launch::ByHand(machine) => by_hand(elf, machine, case.append),
    };
    let run = qemu::run(cmd, TIMEOUT, false)?;
    let problems = match case.expect {
        Expect::Report => check_report(&run, case.append, unix_now()),
        Expect::Panic(lines) => check_panic(&run, lines),
    };
    if problems.is_empty() {
        return Ok(run.elapsed);
    }
    let shown = &run.console[run.console.len().saturating_sub(SHOWN_LINES)..];
    let console: String = shown
        .iter()
        .map(|line| format!("\n      | {line}"))
        .collect();
    Err(format!("{}{console}", problems.join("; ")))
}

/// The command a user would type, kept free of xtask helpers to prove nothing special is
/// needed: default machine, accelerator and CPU. Without isa-debug-exit the kernel powers off
/// through ACPI, so this also covers that path.
fn by_hand(elf: &Path, machine: &str, append: &str) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-M", machine]);
    cmd.arg("-kernel").arg(elf);
    cmd.args(["-append", append, "-m", "77"]);
    cmd.args([
        "-display",
        "none",
        "-serial",
        "stdio",
        "-nic",
        "none",
        "-no-reboot",
    ]);
    cmd
}

/// Everything wrong with a `hello` report run; empty if it passed.
fn check_report(run: &Run, append: &str, now_unix: i64) -> Vec<String> {
    let console = &run.console;
    let mut problems: Vec<String> = [
        check_line(console, "platform", |found| expect_eq(found, "qemu-pvh")),
        check_line(console, "cmdline", |found| expect_eq(found, append)),
        check_line(console, "memory", |found| {
            check_memory(found, u64::from(MEM_MIB) * 1024)
        }),
        check_line(console, "uptime", |found| {
            parse_number(found, "", " s").map(drop)
        }),
        check_line(console, "wall clock", |found| check_clock(found, now_unix)),
        check_line(console, "sleep", check_sleep),
    ]
    .into_iter()
    .flatten()
    .collect();
    if run.outcome != Outcome::Exited(0) {
        problems.push(format!("expected exit status 0, but hello {}", run.outcome));
    }
    problems
}

/// What is wrong with the `key: ` line, if anything.
fn check_line(
    console: &[String],
    key: &str,
    check: impl FnOnce(&str) -> Result<(), String>,
) -> Option<String> {
    match value(console, key) {
        None => Some(format!("no `{key}:` line")),
        Some(found) => check(found)
            .err()
            .map(|problem| format!("{key}: {problem}")),
    }
}

/// Everything wrong with a run that should have panicked; empty if it passed.
fn check_panic(run: &Run, lines: &[&[&str]]) -> Vec<String> {
    let mut problems = Vec::new();
    if run.outcome != Outcome::Panicked {
        problems.push(format!("expected a panic, but hello {}", run.outcome));
    }
    if run.status == Some(0) {
        problems.push("qemu exited with status 0".to_owned());
    }
    for needles in lines {
        let on_one_line = |line: &String| needles.iter().all(|needle| line.contains(needle));
        if !run.console.iter().any(on_one_line) {
            problems.push(format!("no console line containing {needles:?}"));
        }
    }
    problems
}

/// The rest of the first line that starts with `key: `, log lines excluded.
fn value<'a>(console: &'a [String], key: &str) -> Option<&'a str> {
    console
        .iter()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':')?.strip_prefix(' '))
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
    let (total, free) = parse().ok_or_else(|| format!("cannot parse {found:?}"))?;
    if total.abs_diff(expected_kib) > MEM_SLACK_KIB {
        return Err(format!(
            "total {total} KiB is not within {MEM_SLACK_KIB} KiB of {expected_kib}"
        ));
    }
    if free == 0 || free >= total {
        return Err(format!(
            "free {free} KiB is not between 0 and total {total} KiB"
        ));
    }
    Ok(())
}

fn check_clock(found: &str, now_unix: i64) -> Result<(), String> {
    let guest = parse_utc(found).ok_or_else(|| format!("cannot parse {found:?}"))?;
    let skew = guest - now_unix;
    if skew.abs() > CLOCK_SLACK_SECS {
        return Err(format!("{found} is {skew} s from the host's clock"));
    }
    Ok(())
}

/// `requested 100 ms, measured <ms> ms`
fn check_sleep(found: &str) -> Result<(), String> {
    let measured = parse_number(found, "requested 100 ms, measured ", " ms")?;
    if !SLEEP_RANGE_MS.contains(&measured) {
        return Err(format!(
            "measured {measured} ms, outside {SLEEP_RANGE_MS:?} ms"
        ));
    }
    Ok(())
}

fn parse_number(found: &str, prefix: &str, suffix: &str) -> Result<f64, String> {
    found
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| format!("cannot parse {found:?}"))
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

fn unix_now() -> i64 {
    // A host clock before 1970 only makes the clock check fail, with the skew shown.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_586_462; // 2026-11-25T06:01:02Z

    fn report_run(lines: &[impl AsRef<str>], outcome: Outcome) -> Run {
        Run {
            outcome,
            status: Some(1),
            console: lines.iter().map(|line| line.as_ref().to_owned()).collect(),
            first_line: None,
            elapsed: Duration::ZERO,
        }
    }

    const GOOD_REPORT: &[&str] = &[
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

    /// The good report with the line starting with `replaced_key` swapped for `line`.
    fn with_line<'a>(replaced_key: &str, line: &'a str) -> Vec<&'a str> {
        GOOD_REPORT
            .iter()
            .map(|&good| {
                if good.starts_with(replaced_key) {
                    line
                } else {
                    good
                }
            })
            .collect()
    }

    fn problems_with(replaced_key: &str, line: &str) -> Vec<String> {
        let run = report_run(&with_line(replaced_key, line), Outcome::Exited(0));
        check_report(&run, APPEND, NOW)
    }

    #[test]
    fn accepts_good_report() {
        let run = report_run(GOOD_REPORT, Outcome::Exited(0));
        assert_eq!(check_report(&run, APPEND, NOW), Vec::<String>::new());
    }

    #[test]
    fn rejects_wrong_cmdline_and_platform() {
        assert_eq!(problems_with("cmdline", "cmdline: x=1").len(), 1);
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
            problems_with("memory", "memory: total 76799 KiB, free 1 KiB").len(),
            1
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
    fn rejects_clock_two_minutes_off_or_unparsable() {
        assert!(problems_with("wall clock", "wall clock: 2026-11-25T06:03:02Z").is_empty());
        assert_eq!(
            problems_with("wall clock", "wall clock: 2026-11-25T06:03:03Z").len(),
            1
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
    fn rejects_sleep_shorter_than_requested_or_too_long() {
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
    }

    #[test]
    fn rejects_nonzero_exit() {
        let run = report_run(GOOD_REPORT, Outcome::Exited(3));
        assert_eq!(
            check_report(&run, APPEND, NOW),
            ["expected exit status 0, but hello exited with status 3"]
        );
    }

    #[test]
    fn panic_check_wants_all_needles_on_one_line() {
        let lines: &[&[&str]] = &[&["exception: page fault", "rip=", "cr2="]];
        let split = report_run(
            &["exception: page fault rip=0x1", "cr2=0x0"],
            Outcome::Panicked,
        );
        assert_eq!(check_panic(&split, lines).len(), 1);
        let whole = report_run(
            &["exception: page fault rip=0x1 cr2=0x0"],
            Outcome::Panicked,
        );
        assert!(check_panic(&whole, lines).is_empty());
    }

    #[test]
    fn panic_check_rejects_clean_exit_and_status_zero() {
        let mut run = report_run(
            &["panicked at apps/hello/src/main.rs:1:1:"],
            Outcome::Exited(0),
        );
        run.status = Some(0);
        assert_eq!(check_panic(&run, &[&["panicked at apps/hello/"]]).len(), 2);
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

    #[test]
    fn by_hand_command_has_no_debug_exit_device() {
        let cmd = by_hand(Path::new("/hello"), "pc", APPEND);
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(cmd.get_program(), "qemu-system-x86_64");
        assert!(!args.iter().any(|arg| arg.contains("isa-debug-exit")));
        assert!(args.windows(2).any(|pair| pair == ["-append", APPEND]));
    }
}
