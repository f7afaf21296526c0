//! The Hyper-V harness: Ringbolt as the guest of KVM's Hyper-V emulation and QEMU's VMBus
//! server, built from Debian packages only and run inside QEMU TCG, so the host needs neither
//! KVM nor Hyper-V emulation of its own, nor root at run time.
//!
//! ```text
//! host: qemu-system-x86_64 -accel tcg -cpu max           L1: TCG emulates SVM
//!  └─ Debian 6.1 vmlinux (PVH entry), kvm_amd           KVM with Hyper-V emulation
//!      busybox /init, host / read-only over 9p, chroot
//!      └─ the host's qemu-system-x86_64 -accel kvm      L2: the kernel under test
//!           -cpu host,hv-relaxed,hv-vpindex,hv-synic,hv-time,hv-stimer,hv-vapic,hv-runtime,kvm=off
//!           -device vmbus-bridge -device hv-balloon -device isa-debug-exit
//!           COM1 -> L1's console -> xtask
//! ```
//!
//! What L2 gets: CPUID 0x40000000 `Microsoft Hv` and 0x40000001 `Hv#1`; the Hyper-V MSRs and
//! hypercalls KVM emulates for these flags (hypercall page, VP index, SynIC with
//! HvPostMessage/HvSignalEvent, synthetic timers, reference TSC page, VP runtime, APIC-access
//! MSRs and the VP assist page); a VMBus server (ACPI node `VMBS`, protocol up to 4.0) whose
//! one device is hv-balloon. QEMU has no netvsc, storvsc or util (heartbeat, shutdown,
//! timesync) device: those drivers are tested against simulated peers. i440FX with SeaBIOS,
//! one vCPU, AMD-flavoured (TCG's `max` seen through L1's KVM), no NIC, no disk.
//!
//! Measured facts this relies on: hv-balloon needs QEMU 8.2 or later (bookworm-backports' 10,
//! see [`install::ensure_qemu_device`]). Three choices took a PVH hello from 22 s to 9 s:
//! booting L1 from the vmlinux inside the bzImage through its PVH note, mounting 9p with
//! `cache=loose,msize=512000`, and `cryptomgr.notests`. Exec'ing QEMU inside L1 costs about
//! 2 s (its 60 MB over 9p), and each L2 port or MSR exit goes through TCG's emulated SVM, so
//! COM1 costs 0.3-1 ms a byte: keep test consoles terse. A debug hello takes 4.6 s from L1's
//! QEMU start to its exit on an idle 2-vCPU host (L1 boot 2.4 s, L2 2.1 s), 7-10 s on a busy
//! one; the first run also fetches and builds L1 (about 15 s, 540 MB in `target/hyperv/`).
//!
//! A run passes when the console's last line is `ringbolt: exit status 0` and L2's QEMU exits
//! with status 1, the isa-debug-exit status of exit code 0 (Ringbolt's plain-VMM platform
//! writes the code to port 0xf4). Status 0 never means a pass: a power-off, a panic that
//! resets and a triple fault all give it.

mod l1;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::boot_tests::Tally;
use crate::harness::{self, KernelChoice, Layout, exit, secs, unmatched};
use crate::pattern::Pattern;
use crate::{Args, debian, install, report};
use l1::L1;
use run::{Guest, Session};

/// The platform hello must report under this harness.
pub const HYPERV_PLATFORM: &str = "hyperv";

// No line-continuation backslash first: it would eat the indentation.
pub const USAGE: &str =
    "  hyperv (--app NAME [--release] | --kernel ELF) [--append ARGS] [--mem MIB] [--timeout SECS]
      [--expect REGEX]... [-v] [-- EXTRA-L2-QEMU-ARGS...]
      Boot the kernel as a Hyper-V guest (L2: KVM's Hyper-V emulation, QEMU's VMBus server)
      inside a Debian Linux L1 under QEMU TCG; pass if its console ends with
      `ringbolt: exit status 0`, L2's QEMU exits with status 1 and every --expect matches.
      Arguments after -- go to L2's QEMU (the last -cpu wins). -v shows L1's kernel log.
      Defaults: --mem 512 --timeout 300. Packages and L1 are cached under target/hyperv/.
";

/// L2's QEMU status when the guest exits with code 0 through isa-debug-exit: (0 << 1) | 1.
const PASS_STATUS: i32 = 1;
const PASS_LINE: &str = "ringbolt: exit status 0";
const DEFAULT_MEM_MIB: u32 = 512;
const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// The test stage's hello run: its arguments, how long it may take (hello takes about 10 s)
/// and what its 100 ms sleep may measure, slowed by TCG under L2's KVM.
/// `linger`: hello stays up after its report while the balloon driver (which runs beside the
/// app) negotiates and then answers the balloon request the harness makes.
const TEST_APPEND: &str = "x=1 y=two linger=75000";
/// The balloon driver's line once the host accepted its capabilities.
const BALLOON_READY: &str = "balloon: ready, reporting status";
/// QEMU's hv-balloon ignores a new target for 50 s after the guest's capabilities.
const BALLOON_DELAY_SECS: u32 = 55;
/// Of the guest's 512 MiB: the host asks for 128 MiB, 32768 pages.
const BALLOON_TARGET_MIB: u32 = 384;
/// Then the target goes back up and the host returns every page.
const DEFLATE_DELAY_SECS: u32 = 10;
const TEST_TIMEOUT: Duration = Duration::from_secs(180);
const TEST_SLEEP_MS: std::ops::RangeInclusive<f64> = 100.0..=300.0;
const TEST_NAME: &str = "hello reports as a Hyper-V guest";

/// `cargo xtask hyperv`.
pub fn verb(mut args: Args) -> Result<ExitCode, String> {
    let extra = args.trailing();
    let append = args.value("--append")?.unwrap_or_default();
    let mem_mib = args.parsed("--mem", DEFAULT_MEM_MIB)?;
    let timeout = Duration::from_secs(args.parsed("--timeout", DEFAULT_TIMEOUT_SECS)?);
    let expect = harness::take_expects(&mut args)?;
    let kernel = KernelChoice::take(&mut args)?;
    let verbose = args.flag("-v") || args.flag("--verbose");
    args.finish()?;
    let guest = Guest {
        kernel: kernel.path()?,
        append,
        mem_mib,
        extra,
        monitor: None,
    };
    install::ensure_qemu_device("hv-balloon")?;
    install::ensure_tools(debian::HOST_TOOLS)?;
    let (layout, l1) = prepare()?;
    let session = run::run(&layout, &l1, &guest, timeout, verbose)?;
    let problems = problems(&session, &expect);
    Ok(exit(judge(&session, &problems)))
}

/// `cargo xtask test hyperv`: hello's report as a Hyper-V guest. The caller has ensured QEMU
/// and the host tools.
pub fn test_stage(hello: &Result<PathBuf, String>) -> Tally {
    let mut tally = Tally::default();
    match stage_run(hello) {
        Ok((passed, total)) => {
            tally.record(&format!("{TEST_NAME} ({})", secs(total, 1)), Ok(passed))
        }
        Err(e) => tally.record(TEST_NAME, Err(e)),
    }
    tally
}

/// Whether hello passed, and how long the whole run took.
fn stage_run(hello: &Result<PathBuf, String>) -> Result<(bool, Duration), String> {
    let hello = hello
        .as_ref()
        .map_err(|e| format!("hello did not build: {e}"))?;
    let guest = Guest {
        kernel: harness::absolute(hello)?,
        append: TEST_APPEND.to_owned(),
        mem_mib: DEFAULT_MEM_MIB,
        extra: Vec::new(),
        monitor: Some(run::MonitorAction {
            trigger: BALLOON_READY.to_owned(),
            steps: vec![
                (BALLOON_DELAY_SECS, format!("balloon {BALLOON_TARGET_MIB}")),
                (DEFLATE_DELAY_SECS, format!("balloon {DEFAULT_MEM_MIB}")),
            ],
        }),
    };
    let (layout, l1) = prepare()?;
    let session = run::run(&layout, &l1, &guest, TEST_TIMEOUT, false)?;
    let passed = judge(&session, &report_problems(&session));
    Ok((passed, session.timings.total))
}

fn prepare() -> Result<(Layout, L1), String> {
    let layout = Layout::new("hyperv")?;
    let l1 = l1::build(&layout)?;
    Ok((layout, l1))
}

/// Everything wrong with hello's run for the test stage: its report, then [`problems`].
/// Memory and wall clock are not held to values yet: the Hyper-V platform is new.
fn report_problems(session: &Session) -> Vec<String> {
    let expected = report::Expected {
        platform: HYPERV_PLATFORM,
        cmdline: TEST_APPEND,
        mem_mib: None,
        clock: None,
        sleep_ms: TEST_SLEEP_MS,
    };
    let mut found = report::check(&session.console, &expected);
    // The VMBus connection against QEMU's real VMBus server: version 4.0 and its one device.
    let vmbus = VMBUS_EXPECT.map(|text| Pattern::parse(text).expect("valid built-in pattern"));
    found.extend(problems(session, &vmbus));
    found
}

/// Console lines a Hyper-V boot of hello must show: the negotiated VMBus version, the balloon
/// offer (QEMU's `hv-balloon`, the harness's one VMBus device), and the balloon driver
/// negotiating with it.
const VMBUS_EXPECT: [&str; 7] = [
    r"vmbus: connected: version 4\.0, 1 offers in \d+ ms$",
    r"offer relid \d+: balloon 525074dc-8985-46e2-8057-a307dc18a502 ",
    // The balloon driver on the real host: protocol, capabilities, status reports asked for,
    // then the harness's `balloon 384` honoured with real pages.
    r"INFO  balloon: protocol 2\.0$",
    r"INFO  balloon: ready, reporting status$",
    r"INFO  balloon: BalloonRequested \{ pages: 32768 \}$",
    r"INFO  balloon: the host holds 32768 pages \(128 MiB\)",
    r"INFO  balloon: the host holds 0 pages \(0 MiB\)",
];

/// Everything wrong with a run: L2's status, the console's last line, the `expect` patterns.
fn problems(session: &Session, expect: &[Pattern]) -> Vec<String> {
    let mut found = Vec::new();
    match session.l2_ending() {
        Ok((PASS_STATUS, _)) => {}
        Ok((status, outcome)) => found.push(format!(
            "L2 status: expected {PASS_STATUS} (exit code 0), found {status}: the guest {outcome}"
        )),
        Err(why) => found.push(format!("L2 status: none ({why})")),
    }
    let last = session.console.last().map(String::as_str);
    if last != Some(PASS_LINE) {
        found.push(format!(
            "last console line: expected {PASS_LINE:?}, found {last:?}"
        ));
    }
    found.extend(unmatched(expect, &session.console));
    found
}

/// Prints how the run went and whether it passed.
fn judge(session: &Session, problems: &[String]) -> bool {
    match session.l2_ending() {
        Ok((status, outcome)) => {
            println!("xtask: hyperv: L2 exit status {status} (the guest {outcome})")
        }
        Err(why) => println!("xtask: hyperv: no L2 exit status: {why}"),
    }
    println!("xtask: hyperv: timing {}", session.timings);
    println!("xtask: hyperv: serial log {}", session.log.display());
    for problem in problems {
        println!("xtask: hyperv:   check failed: {problem}");
    }
    let passed = problems.is_empty();
    println!("xtask: hyperv: {}", if passed { "PASS" } else { "FAIL" });
    passed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{GOOD_REPORT, lines, with_line};
    use run::Timings;

    fn session(console: Vec<String>, l2_status: Option<i32>) -> Session {
        Session {
            console,
            l2_status: l2_status.ok_or_else(|| "timed out after 9 s".to_owned()),
            l2_qemu: Vec::new(),
            timings: Timings::default(),
            log: PathBuf::new(),
        }
    }

    /// hello's report on Hyper-V, with the VMBus lines before it.
    fn hyperv_report() -> Vec<String> {
        let vmbus = [
            "[    0.69] INFO  ringbolt_vmbus::connection: vmbus: offer relid 1: balloon \
             525074dc-8985-46e2-8057-a307dc18a502 instance 0ad44721-33f4-476f-a882-58173ba7562c \
             sub-channel 0",
            "[    0.88] INFO  vmbus: connected: version 4.0, 1 offers in 579 ms",
            "[    0.93] INFO  balloon: protocol 2.0",
            "[    0.96] INFO  balloon: ready, reporting status",
            "HARNESS-MONITOR balloon 384",
            "[   55.59] INFO  balloon: BalloonRequested { pages: 32768 }",
            "[   55.62] INFO  balloon: the host holds 32768 pages (128 MiB), 389992 KiB free",
            "HARNESS-MONITOR balloon 512",
            "[   65.70] INFO  balloon: the host holds 0 pages (0 MiB), 521060 KiB free",
        ];
        lines(&vmbus)
            .into_iter()
            .chain(with_line("platform", "platform: hyperv"))
            .map(|line| line.replace("measured 100.250 ms", "measured 250.5 ms"))
            .map(|line| line.replace("cmdline: x=1 y=two", &format!("cmdline: {TEST_APPEND}")))
            .collect()
    }

    #[test]
    fn passes_exit_code_zero_through_debug_exit_only() {
        let good = session(lines(&["hello", PASS_LINE]), Some(1));
        assert!(problems(&good, &[]).is_empty());
        let powered_off = session(lines(&["hello", PASS_LINE]), Some(0));
        assert_eq!(
            problems(&powered_off, &[]),
            ["L2 status: expected 1 (exit code 0), found 0: the guest exited with status 0"]
        );
        let panicked = session(lines(&["ringbolt: exit status 127 (panic)"]), Some(255));
        assert_eq!(
            problems(&panicked, &[]),
            [
                "L2 status: expected 1 (exit code 0), found 255: the guest panicked",
                r#"last console line: expected "ringbolt: exit status 0", found Some("ringbolt: exit status 127 (panic)")"#,
            ]
        );
    }

    #[test]
    fn the_exit_line_must_be_the_last_line() {
        let late = session(lines(&[PASS_LINE, "more output"]), Some(1));
        assert_eq!(problems(&late, &[]).len(), 1);
        let silent = session(Vec::new(), None);
        assert_eq!(
            problems(&silent, &[]),
            [
                "L2 status: none (timed out after 9 s)",
                "last console line: expected \"ringbolt: exit status 0\", found None",
            ]
        );
    }

    #[test]
    fn every_expect_must_match() {
        let run = session(lines(&["platform: qemu-pvh", PASS_LINE]), Some(1));
        let expect = [
            Pattern::parse("^platform: ").unwrap(),
            Pattern::parse("^cmdline: ").unwrap(),
        ];
        assert_eq!(
            problems(&run, &expect),
            ["expect /^cmdline: /: no console line matches"]
        );
    }

    #[test]
    fn the_stage_wants_the_hyperv_platform_cmdline_sleep_and_exit() {
        assert!(report_problems(&session(hyperv_report(), Some(1))).is_empty());
        let qemu: Vec<String> = hyperv_report()
            .into_iter()
            .map(|line| line.replace("platform: hyperv", "platform: qemu-pvh"))
            .collect();
        assert_eq!(
            report_problems(&session(qemu, Some(1))),
            [r#"platform: expected "hyperv", found "qemu-pvh", in line "platform: qemu-pvh""#]
        );
        let slow: Vec<String> = hyperv_report()
            .into_iter()
            .map(|line| line.replace("250.5 ms", "300.5 ms"))
            .collect();
        assert_eq!(report_problems(&session(slow, Some(1))).len(), 1);
        let mut bare = lines(GOOD_REPORT);
        bare.retain(|line| !line.starts_with("cmdline"));
        // No cmdline, wrong platform, and none of the VMBus and balloon lines.
        assert_eq!(report_problems(&session(bare, Some(1))).len(), 9);
        let mut no_vmbus = hyperv_report();
        no_vmbus.retain(|line| !line.contains("vmbus") && !line.contains("balloon"));
        let found = report_problems(&session(no_vmbus, Some(1)));
        assert_eq!(found.len(), 7, "{found:?}");
        assert!(
            found
                .iter()
                .all(|p| p.starts_with("expect /") && p.contains("no console line"))
        );
    }

    #[test]
    fn the_stage_does_not_hold_memory_and_clock_to_values_yet() {
        let report: Vec<String> = hyperv_report()
            .into_iter()
            .map(|line| match line.split_once(':') {
                Some(("memory", _)) => "memory: total 1 KiB, free 9 KiB".to_owned(),
                Some(("wall clock", _)) => "wall clock: unavailable".to_owned(),
                _ => line,
            })
            .collect();
        assert!(report_problems(&session(report, Some(1))).is_empty());
    }
}
