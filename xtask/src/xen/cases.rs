//! Cases: guests of one session, each with the ending and the console it must produce.
//!
//! The checks are pure functions of what dom0 saw ([`Domain`]), so they are tested here
//! against console lines; every problem names its check and quotes the line it read.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::run::{self, Domain, Guest};
use super::{Image, Layout, Mode, Reason, Verdict, dom0::Dom0};
use crate::harness::{secs, unmatched};
use crate::pattern::Pattern;
use crate::{qemu, report};

/// hello's arguments and memory in the Xen cases: odd sizes catch rounding.
const HELLO_APPEND: &str = "x=1 y=two";
const HELLO_MEM_MIB: u32 = 93;
/// How far hello's wall clock may be from dom0's clock when `xl create` started.
const CLOCK_SLACK_SECS: i64 = 60;
/// hello's 100 ms sleep, measured by its own clock. TCG delays timer interrupts, and more so
/// with Xen between, hence the generous upper bound.
const SLEEP_RANGE_MS: std::ops::RangeInclusive<f64> = 100.0..=300.0;
/// The line in which blk-check reports the hash of the disk as it read it back.
const BLK_CHECK_SHA256: &str = "blk-check: sha256 ";

/// One guest and what it must do.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub guest: Guest,
    pub ends: Reason,
    pub checks: Checks,
}

/// What the console must show, beyond how the domain ended.
#[derive(Debug)]
pub enum Checks {
    /// Every pattern matches a console line (`--expect`).
    Expect(Vec<Pattern>),
    /// hello's full report, right for this guest and dom0's clock, then exit status 0.
    HelloReport,
    /// hello's panic message, then exit status 127.
    HelloPanic,
    /// blk-check's hash of the disk as read equals dom0's hash of the image, then exit
    /// status 0.
    BlkCheck,
    /// The guest took `xl shutdown` through xenstore, stopped the app and powered off with
    /// status 0, within [`SHUTDOWN_LIMIT`] of the request.
    ToolstackShutdown,
    /// httpd listened on the address `addressing` gives it, answered dom0's pings there,
    /// served its page and counters over one connection and to four concurrent ones, and took
    /// wrk's load of 64 connections without a socket error or a non-2xx response
    /// ([`HTTPD_PROBE`]), then stopped as for [`ToolstackShutdown`](Checks::ToolstackShutdown).
    Httpd(Addressing),
}

/// How long a guest may take from `xl shutdown` to its shutdown (issue 5: 5 s).
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);
/// hello's line once it waits to be stopped, and the kernel's once it was asked to.
const HELLO_WAITING: &str = "hello: waiting to be stopped";
const POWEROFF_REQUESTED: &str = "xenstore: poweroff requested by the toolstack";

/// Where httpd's address on dom0's bridge (192.0.2.1/24, xtask/xen/dom0-init.sh) comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// [`HTTPD_STATIC_IP`], from the command line.
    Static,
    /// `ip=dhcp`: a lease from dom0's udhcpd, in [`DHCP_RANGE`], logged by the kernel.
    Dhcp,
}

impl Addressing {
    /// httpd's command line.
    fn append(self) -> &'static str {
        match self {
            Addressing::Static => "ip=192.0.2.2/24 gw=192.0.2.1",
            Addressing::Dhcp => "ip=dhcp",
        }
    }

    /// What is wrong with `ip` as httpd's address, given the `console` that announced it.
    fn check(self, ip: Ipv4Addr, console: &[String]) -> Option<String> {
        match self {
            Addressing::Static if ip == HTTPD_STATIC_IP => None,
            Addressing::Static => Some(format!("httpd: listening on {ip}, not {HTTPD_STATIC_IP}")),
            Addressing::Dhcp if !DHCP_RANGE.contains(&ip) => Some(format!(
                "dhcp: httpd listening on {ip}, outside udhcpd's {}-{}",
                DHCP_RANGE.start(),
                DHCP_RANGE.end()
            )),
            Addressing::Dhcp => {
                let lease = format!("net: vif0: {ip}/24 via 192.0.2.1 (dhcp)");
                (!console.iter().any(|line| line.ends_with(&lease)))
                    .then(|| format!("dhcp: no {lease:?} line"))
            }
        }
    }
}

/// httpd's static address, and the addresses dom0's udhcpd leases (xtask/xen/dom0-init.sh).
const HTTPD_STATIC_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const DHCP_RANGE: std::ops::RangeInclusive<Ipv4Addr> =
    Ipv4Addr::new(192, 0, 2, 100)..=Ipv4Addr::new(192, 0, 2, 150);
/// httpd's line once it listens (`httpd: listening on A.B.C.D:80`): dom0 then runs
/// [`HTTPD_PROBE`] with the line, and `xl shutdown`.
const HTTPD_LISTENING: &str = "httpd: listening on ";
/// What dom0 runs against httpd (its header says what it prints).
const HTTPD_PROBE: &str = include_str!("../../xen/httpd-probe.sh");
/// The page at `/`, and the `/stats` lines that show both requests came over one connection.
const HTTPD_PAGE: &str = "curl-body: hello from ringbolt";
const HTTPD_KEEP_ALIVE: [&str; 2] = ["curl-body: requests 2", "curl-body: connections 1"];
/// The page as each of the concurrent fetches got it, and how many there are.
const HTTPD_PARALLEL_PAGE: &str = "parallel-body: hello from ringbolt";
const HTTPD_PARALLEL: usize = 4;
/// The prefix of the probe's lines of wrk's output, and of its exit status line.
const WRK_LINE: &str = "wrk: ";
const WRK_STATUS: &str = "wrk-status ";

/// httpd as a domU in `mode` with a vif on dom0's bridge, its address from `addressing`:
/// pinged, fetched and loaded with wrk from dom0, then stopped with `xl shutdown`.
pub fn httpd(kernel: &Path, mode: Mode, addressing: Addressing) -> Case {
    let how = match addressing {
        Addressing::Static => "",
        Addressing::Dhcp => " with a DHCP lease",
    };
    Case {
        name: format!("httpd{how} answers ping, HTTP and wrk from dom0 as a Xen {mode} domU"),
        guest: Guest {
            mode,
            vif: true,
            disk: false,
            shutdown_on: Some(HTTPD_LISTENING.to_owned()),
            probe: Some(HTTPD_PROBE.to_owned()),
            image: Image {
                kernel: kernel.to_owned(),
                ramdisk: None,
                append: addressing.append().to_owned(),
                mem_mib: 64,
            },
        },
        ends: Reason::Poweroff,
        checks: Checks::Httpd(addressing),
    }
}

/// hello as a domU in `mode` that waits until dom0 runs `xl shutdown` on it.
pub fn hello_shutdown(kernel: &Path, mode: Mode) -> Case {
    Case {
        name: format!("hello wait=1 stops on xl shutdown as a Xen {mode} domU"),
        guest: Guest {
            mode,
            vif: false,
            disk: false,
            shutdown_on: Some(HELLO_WAITING.to_owned()),
            probe: None,
            image: Image {
                kernel: kernel.to_owned(),
                ramdisk: None,
                append: "wait=1".to_owned(),
                mem_mib: HELLO_MEM_MIB,
            },
        },
        ends: Reason::Poweroff,
        checks: Checks::ToolstackShutdown,
    }
}

/// hello as a domU in `mode`: its report, and its panic path.
pub fn hello(kernel: &Path, mode: Mode) -> [Case; 2] {
    let guest = |append: &str| Guest {
        mode,
        vif: false,
        disk: false,
        shutdown_on: None,
        probe: None,
        image: Image {
            kernel: kernel.to_owned(),
            ramdisk: None,
            append: append.to_owned(),
            mem_mib: HELLO_MEM_MIB,
        },
    };
    [
        Case {
            name: format!("hello reports as a Xen {mode} domU"),
            guest: guest(HELLO_APPEND),
            ends: Reason::Poweroff,
            checks: Checks::HelloReport,
        },
        Case {
            name: format!("hello panic=1 crashes a Xen {mode} domU"),
            guest: guest("panic=1"),
            ends: Reason::Crash,
            checks: Checks::HelloPanic,
        },
    ]
}

/// blk-check as a domU in `mode` with the disk: writes the pattern of `seed` over it and
/// reads it back.
pub fn blk_check(kernel: &Path, mode: Mode, seed: u32) -> Case {
    Case {
        name: format!("blk-check seed={seed} writes and reads back the disk as a Xen {mode} domU"),
        guest: Guest {
            mode,
            vif: false,
            disk: true,
            shutdown_on: None,
            probe: None,
            image: Image {
                kernel: kernel.to_owned(),
                ramdisk: None,
                append: format!("seed={seed}"),
                mem_mib: 64,
            },
        },
        ends: Reason::Poweroff,
        checks: Checks::BlkCheck,
    }
}

/// Everything wrong with how `domain` went, judged as `case`; empty if it passed.
pub fn problems(case: &Case, domain: &Domain) -> Vec<String> {
    let console = &domain.trace.console;
    let mut problems = Vec::new();
    if domain.reason != case.ends {
        problems.push(format!(
            "ending: expected {}, the domain ended with {}",
            case.ends, domain.reason
        ));
    }
    match &case.checks {
        Checks::Expect(patterns) => problems.extend(unmatched(patterns, console)),
        Checks::HelloReport => {
            match domain.trace.created_unix() {
                Some(clock_unix) => {
                    let platform = format!("xen-{}", case.guest.mode);
                    let expected = report::Expected {
                        platform: &platform,
                        cmdline: &case.guest.image.append,
                        mem_mib: Some(case.guest.image.mem_mib),
                        clock: Some(report::Clock {
                            unix: clock_unix,
                            name: "dom0",
                            slack_secs: CLOCK_SLACK_SECS,
                        }),
                        sleep_ms: SLEEP_RANGE_MS,
                    };
                    problems.extend(report::check(console, &expected));
                }
                None => problems.push("wall clock: dom0 stamped no `xl create`".to_owned()),
            }
            problems.extend(check_exit(console, "0"));
        }
        Checks::HelloPanic => {
            problems.extend(report::missing_lines(console, report::PANIC_LINES));
            problems.extend(check_exit(console, "127 (panic)"));
        }
        Checks::ToolstackShutdown => problems.extend(check_toolstack_shutdown(domain)),
        Checks::Httpd(addressing) => {
            match listening_address(console) {
                Some(ip) => {
                    problems.extend(addressing.check(ip, console));
                    problems.extend(check_probe(&domain.trace.probe, ip));
                }
                None => problems.push(format!("httpd: no \"{HTTPD_LISTENING}A.B.C.D:80\" line")),
            }
            if let Err(problem) = wrk_summary(&domain.trace.probe) {
                problems.push(problem);
            }
            problems.extend(check_toolstack_shutdown(domain));
        }
        Checks::BlkCheck => {
            problems.extend(check_disk_hash(
                console,
                domain.trace.disk_sha256.as_deref(),
            ));
            problems.extend(check_exit(console, "0"));
        }
    }
    problems
}

/// What is wrong with how the guest took `xl shutdown`: the kernel's line, the time from the
/// request to the end, exit status 0.
fn check_toolstack_shutdown(domain: &Domain) -> Vec<String> {
    let console = &domain.trace.console;
    let mut problems = Vec::new();
    if !console.iter().any(|line| line.contains(POWEROFF_REQUESTED)) {
        problems.push(format!("shutdown: no {POWEROFF_REQUESTED:?} line"));
    }
    match domain.trace.shutdown_took() {
        Some(took) if took <= SHUTDOWN_LIMIT => {}
        Some(took) => problems.push(format!(
            "shutdown: took {:.2} s from xl shutdown (limit {} s)",
            took.as_secs_f64(),
            SHUTDOWN_LIMIT.as_secs()
        )),
        None => problems.push("shutdown: dom0 never ran xl shutdown".to_owned()),
    }
    problems.extend(check_exit(console, "0"));
    problems
}

/// The address in httpd's `httpd: listening on A.B.C.D:80` line.
fn listening_address(console: &[String]) -> Option<Ipv4Addr> {
    console.iter().find_map(|line| {
        let (_, rest) = line.split_once(HTTPD_LISTENING)?;
        rest.strip_suffix(":80")?.parse().ok()
    })
}

/// What is wrong with what dom0's probe of httpd at `ip` printed: it must have probed `ip`,
/// ping must have had replies, curl the page and both requests on one connection, and the
/// concurrent fetches the page each.
fn check_probe(probe: &[String], ip: Ipv4Addr) -> Vec<String> {
    let mut problems = Vec::new();
    let probed = format!("probe-address {ip}");
    if !probe.contains(&probed) {
        problems.push(format!("probe: no {probed:?} line"));
    }
    match probe.iter().find_map(|line| ping_replies(line)) {
        Some((_, 0)) | None => problems.push(format!(
            "ping {ip}: no replies ({})",
            probe
                .iter()
                .find(|line| line.contains("packets transmitted") || line.contains("ping-status"))
                .map_or("no summary".to_owned(), |line| format!("{line:?}"))
        )),
        Some(_) => {}
    }
    for expected in [HTTPD_PAGE].iter().chain(&HTTPD_KEEP_ALIVE) {
        if !probe.iter().any(|line| line == expected) {
            problems.push(format!(
                "curl http://{ip}/: no {expected:?} ({})",
                status_line(probe, "curl-status ")
            ));
        }
    }
    let pages = probe
        .iter()
        .filter(|line| *line == HTTPD_PARALLEL_PAGE)
        .count();
    if pages != HTTPD_PARALLEL {
        problems.push(format!(
            "concurrent curl: {pages} of {HTTPD_PARALLEL} fetches got the page ({})",
            status_line(probe, "parallel-status ")
        ));
    }
    problems
}

/// What wrk measured, from its summary.
#[derive(Debug, PartialEq)]
struct WrkSummary {
    requests_per_sec: f64,
    /// The mean latency as wrk prints it (`5.12ms`).
    latency: String,
}

/// wrk's summary from the probe's `wrk: ` lines: it must have run to the end (its
/// `Requests/sec:` line and exit status 0) with no socket error (a `Socket errors: connect N,
/// read N, write N, timeout N` line, printed only if there were any) and every response 2xx or
/// 3xx (a `Non-2xx or 3xx responses: N` line, likewise); `Err` says what went wrong.
fn wrk_summary(probe: &[String]) -> Result<WrkSummary, String> {
    let output: Vec<&str> = probe
        .iter()
        .filter_map(|line| Some(line.strip_prefix(WRK_LINE)?.trim()))
        .collect();
    let value = |label: &str| output.iter().find_map(|line| line.strip_prefix(label));
    let status = probe
        .iter()
        .find_map(|line| line.strip_prefix(WRK_STATUS))
        .unwrap_or("none");
    let requests_per_sec = value("Requests/sec:").and_then(|rate| rate.trim().parse().ok());
    let (Some(requests_per_sec), "0") = (requests_per_sec, status) else {
        return Err(format!(
            "wrk: did not complete (exit status {status}){}",
            output
                .last()
                .map_or(String::new(), |line| format!(", last line {line:?}"))
        ));
    };
    if let Some(errors) = value("Socket errors:") {
        let counts = errors.split(',').map(|count| {
            count
                .split_whitespace()
                .last()
                .and_then(|n| n.parse::<u64>().ok())
        });
        // An unreadable count is taken as an error too.
        if counts.clone().any(|n| n != Some(0)) || counts.count() == 0 {
            return Err(format!("wrk: socket errors:{errors}"));
        }
    }
    if let Some(responses) = value("Non-2xx or 3xx responses:")
        && responses.trim() != "0"
    {
        return Err(format!(
            "wrk: {} responses not 2xx or 3xx",
            responses.trim()
        ));
    }
    let latency = value("Latency")
        .and_then(|stats| stats.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    Ok(WrkSummary {
        requests_per_sec,
        latency,
    })
}

/// A figure worth reporting from how `domain` went (not a check): wrk's rate against httpd.
fn detail(case: &Case, domain: &Domain) -> Option<String> {
    match case.checks {
        Checks::Httpd(_) => wrk_summary(&domain.trace.probe).ok().map(|wrk| {
            format!(
                "wrk {:.1} requests/s, mean latency {}",
                wrk.requests_per_sec, wrk.latency
            )
        }),
        _ => None,
    }
}

/// The probe's line starting with `prefix` (a command's exit status), for a message.
fn status_line<'a>(probe: &'a [String], prefix: &str) -> &'a str {
    probe
        .iter()
        .find(|line| line.starts_with(prefix))
        .map_or("no status line", String::as_str)
}

/// Packets sent and received, from ping's summary line
/// (`3 packets transmitted, 3 received, 0% packet loss, time 2003ms`).
fn ping_replies(line: &str) -> Option<(u32, u32)> {
    let (sent, rest) = line.split_once(" packets transmitted, ")?;
    let received = rest.split_once(" received")?.0;
    Some((sent.trim().parse().ok()?, received.parse().ok()?))
}

/// What is wrong with blk-check's hash of the disk, compared with dom0's (`image`).
fn check_disk_hash(console: &[String], image: Option<&str>) -> Option<String> {
    let guest = console
        .iter()
        .find_map(|line| line.strip_prefix(BLK_CHECK_SHA256));
    match (guest, image) {
        (Some(guest), Some(image)) if guest == image => None,
        (Some(guest), Some(image)) => Some(format!(
            "disk: blk-check read sha256 {guest}, dom0 hashed the image as {image}"
        )),
        (None, _) => Some(format!("disk: no {:?} line", BLK_CHECK_SHA256.trim_end())),
        (Some(_), None) => Some("disk: dom0 reported no hash of the image".to_owned()),
    }
}

/// What is wrong with the console's last exit line, if it does not say `status`.
fn check_exit(console: &[String], status: &str) -> Option<String> {
    let expected = format!("{}{status}", qemu::EXIT_LINE);
    match console
        .iter()
        .rev()
        .find(|line| line.starts_with(qemu::EXIT_LINE))
    {
        Some(line) if *line == expected => None,
        Some(line) => Some(format!("exit: expected {expected:?}, in line {line:?}")),
        None => Some(format!("exit: no {:?} line", qemu::EXIT_LINE.trim_end())),
    }
}

/// Runs every case in one session and judges each; an error ends all of them.
pub fn run(
    layout: &Layout,
    dom0: &Dom0,
    cases: &[Case],
    wait: Duration,
    verbose: bool,
) -> Vec<Verdict> {
    let guests: Vec<&Guest> = cases.iter().map(|case| &case.guest).collect();
    let session = match run::run(layout, dom0, &guests, wait, verbose) {
        Ok(session) => session,
        Err(e) => {
            return cases
                .iter()
                .map(|case| (case.name.clone(), Err(e.clone())))
                .collect();
        }
    };
    cases
        .iter()
        .zip(&session.domains)
        .enumerate()
        .map(|(at, (case, domain))| {
            let problems = problems(case, domain);
            println!(
                "xtask: xen: [{}/{}] {}: ended {} (expected {}); {}",
                at + 1,
                cases.len(),
                case.name,
                domain.reason,
                case.ends,
                domain.trace.summary()
            );
            for problem in &problems {
                println!("xtask: xen:   check failed: {problem}");
            }
            let took = domain.trace.end().map_or(String::new(), |end| {
                format!(" (xl create -> end {})", secs(end, 2))
            });
            let detail = detail(case, domain).map_or(String::new(), |detail| {
                println!("xtask: xen:   {detail}");
                format!("; {detail}")
            });
            (
                format!("{}{took}{detail}", case.name),
                Ok(problems.is_empty()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{GOOD_REPORT, lines};
    use crate::xen::run::Trace;

    /// 2026-11-25T06:01:02Z, as dom0 stamps `xl create`.
    const CREATED: &str = "HARNESS-CREATE-BEGIN n=1 at_us=1795586462000000";

    /// hello's good QEMU report, as a PVH domU of 93 MiB would print it.
    fn pvh_report() -> Vec<String> {
        let mut console = lines(GOOD_REPORT);
        for line in &mut console {
            if line.starts_with("platform: ") {
                *line = "platform: xen-pvh".to_owned();
            } else if line.starts_with("memory: ") {
                *line = "memory: total 95232 KiB, free 92820 KiB".to_owned();
            } else if line.starts_with("sleep: ") {
                *line = "sleep: requested 100 ms, measured 204.035301 ms".to_owned();
            }
        }
        console
    }

    fn domain(reason: Reason, console: Vec<String>, created: bool) -> Domain {
        let mut trace = Trace::default();
        if created {
            trace = run::tests::traced(&[CREATED]);
        }
        trace.console = console;
        Domain { reason, trace }
    }

    fn cases() -> [Case; 2] {
        hello(Path::new("/hello"), Mode::Pvh)
    }

    #[test]
    fn hello_cases_boot_93_mib_with_two_arguments_and_a_panic() {
        let [report, panic] = cases();
        assert_eq!(report.guest.image.append, "x=1 y=two");
        assert_eq!(report.guest.image.mem_mib, 93);
        assert_eq!(report.ends, Reason::Poweroff);
        assert_eq!(panic.guest.image.append, "panic=1");
        assert_eq!(panic.ends, Reason::Crash);
        assert_eq!(report.name, "hello reports as a Xen pvh domU");
    }

    #[test]
    fn accepts_a_good_pvh_report() {
        let [report, _] = cases();
        let good = domain(Reason::Poweroff, pvh_report(), true);
        assert_eq!(problems(&report, &good), Vec::<String>::new());
    }

    #[test]
    fn holds_the_report_to_the_mode_memory_ending_and_exit() {
        let [report, _] = cases();
        let mut console = pvh_report();
        console.pop();
        console.push("ringbolt: exit status 3".to_owned());
        let pv = Case {
            guest: Guest {
                mode: Mode::Pv,
                ..report.guest.clone()
            },
            ..report
        };
        assert_eq!(
            problems(&pv, &domain(Reason::Crash, console, true)),
            [
                "ending: expected poweroff, the domain ended with crash",
                r#"platform: expected "xen-pv", found "xen-pvh", in line "platform: xen-pvh""#,
                r#"exit: expected "ringbolt: exit status 0", in line "ringbolt: exit status 3""#,
            ]
        );
    }

    #[test]
    fn judges_the_wall_clock_against_dom0_and_the_sleep_generously() {
        let [report, _] = cases();
        let mut console = pvh_report();
        for line in &mut console {
            if line.starts_with("wall clock: ") {
                *line = "wall clock: 2026-11-25T06:02:03Z".to_owned();
            } else if line.starts_with("sleep: ") {
                *line = "sleep: requested 100 ms, measured 300.5 ms".to_owned();
            }
        }
        assert_eq!(
            problems(&report, &domain(Reason::Poweroff, console, true)),
            [
                "wall clock: 61 s from dom0's clock, more than 60 s, \
                 in line \"wall clock: 2026-11-25T06:02:03Z\"",
                "sleep: measured 300.5 ms, outside 100.0..=300.0 ms, \
                 in line \"sleep: requested 100 ms, measured 300.5 ms\"",
            ]
        );
        let unstamped = domain(Reason::Poweroff, pvh_report(), false);
        assert_eq!(
            problems(&report, &unstamped),
            ["wall clock: dom0 stamped no `xl create`"]
        );
    }

    #[test]
    fn a_panic_needs_its_message_exit_line_and_a_crash() {
        let [_, panic] = cases();
        let console = lines(&[
            "platform: xen-pvh",
            "panicked at apps/hello/src/main.rs:38:9:",
            "hello: panic requested",
            "ringbolt: exit status 127 (panic)",
        ]);
        assert!(problems(&panic, &domain(Reason::Crash, console.clone(), true)).is_empty());
        assert_eq!(
            problems(
                &panic,
                &domain(Reason::Poweroff, console[..2].to_vec(), true)
            ),
            [
                "ending: expected crash, the domain ended with poweroff",
                r#"no console line containing ["hello: panic requested"]"#,
                r#"exit: no "ringbolt: exit status" line"#,
            ]
        );
    }

    #[test]
    fn toolstack_shutdown_needs_the_request_line_the_exit_and_a_quick_end() {
        let case = hello_shutdown(Path::new("/hello"), Mode::Pv);
        assert_eq!(case.guest.shutdown_on.as_deref(), Some(HELLO_WAITING));
        let console = [
            "hello: waiting to be stopped",
            "[    1.2] INFO  xenstore: poweroff requested by the toolstack",
            "ringbolt: exit status 0",
        ];
        let ended = |sent_us: u64, end_us: u64, console: &[&str]| {
            let mut trace = run::tests::traced(&[
                CREATED,
                &format!("HARNESS-SHUTDOWN-SENT n=1 at_us={sent_us}"),
                &format!("HARNESS-END n=1 reason=poweroff code=0 first_us= end_us={end_us}"),
            ]);
            trace.console = lines(console);
            Domain {
                reason: Reason::Poweroff,
                trace,
            }
        };
        assert!(problems(&case, &ended(1_000_000, 1_400_000, &console)).is_empty());
        assert_eq!(
            problems(&case, &ended(1_000_000, 7_000_000, &console)),
            ["shutdown: took 6.00 s from xl shutdown (limit 5 s)"]
        );
        assert_eq!(
            problems(&case, &ended(1_000_000, 1_400_000, &console[..1])),
            [
                format!("shutdown: no {POWEROFF_REQUESTED:?} line"),
                r#"exit: no "ringbolt: exit status" line"#.to_owned(),
            ]
        );
        let never = domain(Reason::Poweroff, lines(&console), true);
        assert_eq!(
            problems(&case, &never),
            ["shutdown: dom0 never ran xl shutdown"]
        );
    }

    #[test]
    fn blk_check_needs_its_hash_to_match_dom0s_and_exit_0() {
        let case = blk_check(Path::new("/blk-check"), Mode::Pv, 7);
        assert_eq!(case.guest.image.append, "seed=7");
        assert!(case.guest.disk);
        let console = lines(&[
            "blk-check: xvda: 131072 sectors of 512 bytes (64 MiB)",
            "blk-check: sha256 a5ef",
            "ringbolt: exit status 0",
        ]);
        let mut good = domain(Reason::Poweroff, console.clone(), true);
        good.trace.disk_sha256 = Some("a5ef".to_owned());
        assert!(problems(&case, &good).is_empty());
        let mut differs = domain(Reason::Poweroff, console.clone(), true);
        differs.trace.disk_sha256 = Some("0000".to_owned());
        assert_eq!(
            problems(&case, &differs),
            ["disk: blk-check read sha256 a5ef, dom0 hashed the image as 0000"]
        );
        assert_eq!(
            problems(&case, &domain(Reason::Poweroff, console, true)),
            ["disk: dom0 reported no hash of the image"]
        );
        let failed = lines(&[
            "blk-check: error: no block device",
            "ringbolt: exit status 1",
        ]);
        assert_eq!(
            problems(&case, &domain(Reason::Poweroff, failed, true)),
            [
                r#"disk: no "blk-check: sha256" line"#,
                r#"exit: expected "ringbolt: exit status 0", in line "ringbolt: exit status 1""#,
            ]
        );
    }

    #[test]
    fn reads_pings_summary() {
        assert_eq!(
            ping_replies("3 packets transmitted, 3 received, 0% packet loss, time 2003ms"),
            Some((3, 3))
        );
        assert_eq!(
            ping_replies("3 packets transmitted, 0 received, +3 errors, 100% packet loss"),
            Some((3, 0))
        );
        assert_eq!(
            ping_replies("PING 192.0.2.2 (192.0.2.2) 56(84) bytes of data."),
            None
        );
        assert_eq!(ping_replies("x packets transmitted, 3 received"), None);
    }

    /// What the probe of a healthy httpd at `ip` prints.
    fn good_probe(ip: &str) -> Vec<String> {
        let mut probe = lines(&[
            &format!("probe-address {ip}"),
            &format!("PING {ip} ({ip}) 56(84) bytes of data."),
            "3 packets transmitted, 3 received, 0% packet loss, time 2003ms",
            "ping-status 0",
            "curl-body: hello from ringbolt",
            "curl-body: requests 2",
            "curl-body: connections 1",
            "curl-status 0",
            "parallel-body: hello from ringbolt",
            "parallel-body: hello from ringbolt",
            "parallel-body: hello from ringbolt",
            "parallel-body: hello from ringbolt",
            "parallel-status 0",
        ]);
        probe.extend(lines(&WRK_GOOD));
        probe
    }

    /// An httpd domain stopped by `xl shutdown`, with this console and probe output.
    fn httpd_ended(console: &[&str], probe: &[String]) -> Domain {
        let mut trace = run::tests::traced(&[
            CREATED,
            "HARNESS-SHUTDOWN-SENT n=1 at_us=1795586470000000",
            "HARNESS-END n=1 reason=poweroff code=0 first_us= end_us=1795586471000000",
        ]);
        trace.console = lines(console);
        trace.probe = probe.to_vec();
        Domain {
            reason: Reason::Poweroff,
            trace,
        }
    }

    #[test]
    fn httpd_with_dhcp_needs_a_lease_in_range_logged_by_the_kernel_and_probed() {
        let case = httpd(Path::new("/httpd"), Mode::Pv, Addressing::Dhcp);
        assert_eq!(case.guest.image.append, "ip=dhcp");
        let console = |ip: &str| {
            [
                format!("[    0.9] INFO  net: vif0: {ip}/24 via 192.0.2.1 (dhcp)"),
                format!("httpd: listening on {ip}:80"),
                "[    9.2] INFO  xenstore: poweroff requested by the toolstack".to_owned(),
                "ringbolt: exit status 0".to_owned(),
            ]
        };
        let ended = |console: &[String], probe: &[String]| {
            let console: Vec<&str> = console.iter().map(String::as_str).collect();
            problems(&case, &httpd_ended(&console, probe))
        };
        let leased = console("192.0.2.100");
        assert_eq!(
            ended(&leased, &good_probe("192.0.2.100")),
            Vec::<String>::new()
        );
        assert_eq!(
            ended(&leased[1..], &good_probe("192.0.2.100")),
            [r#"dhcp: no "net: vif0: 192.0.2.100/24 via 192.0.2.1 (dhcp)" line"#]
        );
        assert_eq!(
            ended(&console("192.0.2.151"), &good_probe("192.0.2.151")),
            ["dhcp: httpd listening on 192.0.2.151, outside udhcpd's 192.0.2.100-192.0.2.150"]
        );
        assert_eq!(
            ended(&leased, &good_probe("192.0.2.2")),
            [r#"probe: no "probe-address 192.0.2.100" line"#]
        );
        assert_eq!(
            listening_address(&lines(&["httpd: listening on 192.0.2.7:80"])),
            Some(Ipv4Addr::new(192, 0, 2, 7))
        );
        assert_eq!(
            listening_address(&lines(&["httpd: listening on 192.0.2:80"])),
            None
        );
    }

    #[test]
    fn httpd_needs_its_line_pings_the_page_keep_alive_and_a_clean_shutdown() {
        let case = httpd(Path::new("/httpd"), Mode::Pv, Addressing::Static);
        assert!(case.guest.vif);
        assert_eq!(case.guest.image.append, "ip=192.0.2.2/24 gw=192.0.2.1");
        assert_eq!(case.guest.shutdown_on.as_deref(), Some(HTTPD_LISTENING));
        assert!(
            case.guest
                .probe
                .as_deref()
                .unwrap()
                .starts_with("#!/bin/bash\n")
        );
        let console = [
            "[    0.9] INFO  net: vif0 00:16:3e:00:00:02: 192.0.2.2/24 via 192.0.2.1",
            "httpd: listening on 192.0.2.2:80",
            "httpd: GET / 200",
            "[    9.2] INFO  xenstore: poweroff requested by the toolstack",
            "ringbolt: exit status 0",
        ];
        let probe = good_probe("192.0.2.2");
        let ended = httpd_ended;
        assert!(problems(&case, &ended(&console, &probe)).is_empty());
        let unreachable = lines(&[
            "probe-address 192.0.2.2",
            "3 packets transmitted, 0 received, 100% packet loss, time 2041ms",
            "ping-status 1",
            "curl-status 28",
            "parallel-body: hello from ringbolt",
            "parallel-status 7",
        ]);
        assert_eq!(
            problems(&case, &ended(&console[1..], &unreachable)),
            [
                "ping 192.0.2.2: no replies (\"3 packets transmitted, 0 received, 100% packet \
                 loss, time 2041ms\")",
                "curl http://192.0.2.2/: no \"curl-body: hello from ringbolt\" (curl-status 28)",
                "curl http://192.0.2.2/: no \"curl-body: requests 2\" (curl-status 28)",
                "curl http://192.0.2.2/: no \"curl-body: connections 1\" (curl-status 28)",
                "concurrent curl: 1 of 4 fetches got the page (parallel-status 7)",
                "wrk: did not complete (exit status none)",
            ]
        );
        assert_eq!(
            problems(&case, &ended(&console[..2], &probe)),
            [
                format!("shutdown: no {POWEROFF_REQUESTED:?} line"),
                r#"exit: no "ringbolt: exit status" line"#.to_owned(),
            ]
        );
        assert_eq!(
            problems(&case, &ended(&console[2..], &[])),
            [
                r#"httpd: no "httpd: listening on A.B.C.D:80" line"#,
                "wrk: did not complete (exit status none)",
            ]
        );
        assert_eq!(
            detail(&case, &ended(&console, &probe)).as_deref(),
            Some("wrk 1788.2 requests/s, mean latency 35.50ms")
        );
    }

    /// wrk 4.1's summary of a clean run, as the probe prints it.
    const WRK_GOOD: [&str; 10] = [
        "wrk: Running 10s test @ http://192.0.2.2/",
        "wrk:   2 threads and 64 connections",
        "wrk:   Thread Stats   Avg      Stdev     Max   +/- Stdev",
        "wrk:     Latency    35.50ms   10.20ms 200.00ms   80.00%",
        "wrk:     Req/Sec   900.00    100.00     1.10k    70.00%",
        "wrk:   17900 requests in 10.01s, 2.90MB read",
        "wrk: Requests/sec:   1788.21",
        "wrk: Transfer/sec:    296.86KB",
        "wrk-status 0",
        "ping-status 0",
    ];

    fn wrk(output: &[&str]) -> Result<WrkSummary, String> {
        wrk_summary(&lines(output))
    }

    #[test]
    fn reads_wrks_rate_and_latency_from_a_clean_run() {
        assert_eq!(
            wrk(&WRK_GOOD),
            Ok(WrkSummary {
                requests_per_sec: 1788.21,
                latency: "35.50ms".to_owned()
            })
        );
        // A "Socket errors" line of zeros is no error.
        let mut zeros = WRK_GOOD.to_vec();
        zeros.insert(
            6,
            "wrk:   Socket errors: connect 0, read 0, write 0, timeout 0",
        );
        zeros.insert(7, "wrk:   Non-2xx or 3xx responses: 0");
        assert!(wrk(&zeros).is_ok());
    }

    #[test]
    fn wrk_fails_on_socket_errors_bad_responses_or_an_unfinished_run() {
        let with = |extra: &str| {
            let mut lines = WRK_GOOD.to_vec();
            lines.insert(6, extra);
            wrk(&lines)
        };
        assert_eq!(
            with("wrk:   Socket errors: connect 12, read 0, write 0, timeout 3"),
            Err("wrk: socket errors: connect 12, read 0, write 0, timeout 3".to_owned())
        );
        assert_eq!(
            with("wrk:   Socket errors: connect x"),
            Err("wrk: socket errors: connect x".to_owned())
        );
        assert_eq!(
            with("wrk:   Non-2xx or 3xx responses: 5"),
            Err("wrk: 5 responses not 2xx or 3xx".to_owned())
        );
        let mut failed = WRK_GOOD[..2].to_vec();
        failed.push("wrk-status 1");
        assert_eq!(
            wrk(&failed),
            Err(
                "wrk: did not complete (exit status 1), last line \"2 threads and 64 \
                 connections\""
                    .to_owned()
            )
        );
        let mut killed = WRK_GOOD.to_vec();
        killed[8] = "wrk-status 137";
        assert_eq!(
            wrk(&killed),
            Err(
                "wrk: did not complete (exit status 137), last line \"Transfer/sec:    \
                 296.86KB\""
                    .to_owned()
            )
        );
    }

    #[test]
    fn expect_patterns_must_each_match_a_line() {
        let case = Case {
            checks: Checks::Expect(vec![
                Pattern::parse("^HARNESS-GUEST: hello").unwrap(),
                Pattern::parse("powering off$").unwrap(),
            ]),
            ..cases().into_iter().next().unwrap()
        };
        let console = lines(&["HARNESS-GUEST: hello from Linux"]);
        assert_eq!(
            problems(&case, &domain(Reason::Poweroff, console, false)),
            ["expect /powering off$/: no console line matches"]
        );
    }
}
