//! Boot tests: boot `hello` on QEMU (TCG) and check what it prints.
//!
//! Each case is a row in [`CASES`]: how to launch, which command line, and what to expect. The
//! checks over hello's report are in [`report`], shared with the Xen harness.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::qemu::{self, Machine, Outcome, Run, Vm};
use crate::report;

const MEM_MIB: u32 = 77;
const APPEND: &str = "x=1 y=two";
const TIMEOUT: Duration = Duration::from_secs(60);
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
        expect: Expect::Panic(report::PANIC_LINES),
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

impl Tally {
    /// Counts a named run that passed, failed, or could not run (an error is a failure), and
    /// prints its verdict line.
    pub fn record(&mut self, name: &str, passed: Result<bool, String>) {
        match passed {
            Ok(true) => {
                self.passed += 1;
                println!("PASS  {name}");
            }
            Ok(false) => {
                self.failed += 1;
                println!("FAIL  {name}");
            }
            Err(e) => {
                self.failed += 1;
                println!("FAIL  {name}: {e}");
            }
        }
    }

    pub fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
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
            Ok(took) => tally.record(
                &format!("{} ({:.2} s)", case.name, took.as_secs_f64()),
                Ok(true),
            ),
            Err(reason) => tally.record(case.name, Err(reason)),
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
    let expected = report::Expected {
        platform: "qemu-pvh",
        cmdline: append,
        mem_mib: Some(MEM_MIB),
        clock: Some(report::Clock {
            unix: now_unix,
            name: "the host",
            slack_secs: CLOCK_SLACK_SECS,
        }),
        sleep_ms: SLEEP_RANGE_MS,
    };
    let mut problems = report::check(&run.console, &expected);
    if run.outcome != Outcome::Exited(0) {
        problems.push(format!("expected exit status 0, but hello {}", run.outcome));
    }
    problems
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
    problems.extend(report::missing_lines(&run.console, lines));
    problems
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
    use crate::report::tests::{GOOD_REPORT, NOW, lines, with_line};

    fn report_run(console: Vec<String>, outcome: Outcome) -> Run {
        Run {
            outcome,
            status: Some(1),
            console,
            first_line: None,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn accepts_good_report() {
        let run = report_run(lines(GOOD_REPORT), Outcome::Exited(0));
        assert_eq!(check_report(&run, APPEND, NOW), Vec::<String>::new());
    }

    #[test]
    fn holds_the_report_to_qemu_and_the_sleep_to_ten_percent() {
        let xen = report_run(
            with_line("platform", "platform: xen-pvh"),
            Outcome::Exited(0),
        );
        assert_eq!(check_report(&xen, APPEND, NOW).len(), 1);
        let slow = with_line("sleep", "sleep: requested 100 ms, measured 110.5 ms");
        let slow = report_run(slow, Outcome::Exited(0));
        assert_eq!(check_report(&slow, APPEND, NOW).len(), 1);
        assert_eq!(check_report(&slow, "x=1", NOW).len(), 2);
    }

    #[test]
    fn rejects_nonzero_exit() {
        let run = report_run(lines(GOOD_REPORT), Outcome::Exited(3));
        assert_eq!(
            check_report(&run, APPEND, NOW),
            ["expected exit status 0, but hello exited with status 3"]
        );
    }

    #[test]
    fn panic_check_wants_the_panic_lines() {
        let run = report_run(
            lines(&[
                "panicked at apps/hello/src/main.rs:1:1:",
                "hello: panic requested",
            ]),
            Outcome::Panicked,
        );
        assert!(check_panic(&run, report::PANIC_LINES).is_empty());
        let run = report_run(lines(&["hello: panic requested"]), Outcome::Panicked);
        assert_eq!(check_panic(&run, report::PANIC_LINES).len(), 1);
    }

    #[test]
    fn panic_check_rejects_clean_exit_and_status_zero() {
        let mut run = report_run(
            lines(&["panicked at apps/hello/src/main.rs:1:1:"]),
            Outcome::Exited(0),
        );
        run.status = Some(0);
        assert_eq!(check_panic(&run, &[&["panicked at apps/hello/"]]).len(), 2);
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
