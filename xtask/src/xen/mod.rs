//! The real-Xen harness: Ringbolt as a guest of Xen 4.17 with a Debian Linux 6.1 dom0, all
//! inside QEMU TCG.
//!
//! Mocks prove the drivers; only a real hypervisor and real backends prove the boot path, the
//! console ring, xenstore and the PV devices as Xen ships them. Everything comes from Debian
//! packages through the host's apt ([`crate::debian`], [`dom0`]) and is cached under
//! `target/xen/`, so a fresh clone needs nothing else. Two ways in:
//!
//! * `xen` ([`run`]): QEMU boots Xen, Xen boots the Linux dom0, dom0's /init starts the
//!   toolstack and runs a per-boot script that creates the guests with `xl` one after the
//!   other, streams their consoles and reports how each domain ended (Xen's shutdown reason)
//!   and when, by dom0's clock. [`cases`] judges each domain from that; `test xen` and
//!   `xen-selftest` run all their domUs in one boot, since dom0's boot is most of the cost.
//!   `bench xen-boot` ([`bench`]) times hello against a Linux domU the same way.
//! * `xen-smoke` ([`smoke`]): no Linux at all; Xen boots the kernel itself as a PV dom0, which
//!   writes through `HYPERVISOR_console_io`. Seconds instead of a minute, no backends.
//!
//! Measured facts this relies on: `spec-ctrl=eager-fpu` is required under TCG (lazy FPU
//! switching corrupts user processes in dom0 and guests); QEMU 7.2 crashes the PV dom0, so
//! QEMU 10 from bookworm-backports; Linux as a PVH guest fails under QEMU's nested SVM (CR2
//! reads 0), so the Linux test guest is proven as PV only.

mod bench;
mod cases;
mod dom0;
mod run;
mod smoke;
mod test_guest;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::boot_tests::Tally;
use crate::harness::{self, KernelChoice, Layout, exit, secs};
use crate::pattern::Pattern;
use crate::{Args, debian, install};
use cases::{Case, Checks};

/// Xen's command line for every run. `bootscrub=0`: scrubbing 2 GiB under TCG costs seconds.
const XEN_ARGS: &str =
    "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all bootscrub=0 spec-ctrl=eager-fpu";
/// How long each domain of the test stage and the selftest may run: hello takes under a
/// second, the Linux test guest under ten, even on a busy host.
const CASE_WAIT: Duration = Duration::from_secs(60);

// No line-continuation backslash first: it would eat the indentation.
pub const USAGE: &str =
    "  xen (--app NAME [--release] | --kernel ELF) [--mode pv|pvh] [--mem MIB] [--append ARGS]
      [--ramdisk FILE] [--vif] [--disk] [--ends poweroff|crash|reboot] [--expect REGEX]...
      [--timeout SECS] [-v]
      Boot the kernel as a domU of real Xen 4.17 with a Debian Linux dom0 (QEMU TCG); pass if
      the domain ends as --ends says. Defaults: --mode pv --mem 64 --ends poweroff
      --timeout 600. dom0 and packages are cached under target/xen/.
  xen-smoke (--app NAME [--release] | --kernel ELF) [--ramdisk FILE] [--append ARGS]
      [--mem MIB] [--ends ...] [--expect REGEX]... [--timeout SECS] [-v]
      Boot the kernel directly as Xen's PV dom0 (no Linux); its console is console_io.
      Defaults: --mem 64 --ends poweroff --timeout 120.
  xen-selftest
      Prove the harness with Debian's Linux as the guest: a PV domU that powers off and one
      that crashes (one dom0 boot), then Linux as PV dom0 (xen-smoke).
";

/// How a domain ended, as Xen reports it (`SHUTDOWN_*` in xen/include/public/sched.h) or as
/// the harness saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Poweroff,
    Reboot,
    Crash,
    Timeout,
    /// Anything else the harness reported (create-failed, dom0-failed, watchdog, ...).
    Other(String),
}

impl Reason {
    fn parse(word: &str) -> Self {
        match word {
            "poweroff" => Self::Poweroff,
            "reboot" => Self::Reboot,
            "crash" => Self::Crash,
            "timeout" => Self::Timeout,
            other => Self::Other(other.to_owned()),
        }
    }

    /// An `--ends` value: only the endings a guest chooses.
    fn parse_expected(word: &str) -> Result<Self, String> {
        match Self::parse(word) {
            Self::Other(_) | Self::Timeout => Err(format!(
                "--ends {word:?}: expected poweroff, crash or reboot"
            )),
            reason => Ok(reason),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Poweroff => "poweroff",
            Self::Reboot => "reboot",
            Self::Crash => "crash",
            Self::Timeout => "timeout",
            Self::Other(other) => other,
        })
    }
}

/// The guest flavour: PV (paravirtualised MMU) or PVH (HVM container, no device model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pv,
    Pvh,
}

impl Mode {
    fn parse(word: &str) -> Result<Self, String> {
        match word {
            "pv" => Ok(Self::Pv),
            "pvh" => Ok(Self::Pvh),
            _ => Err(format!("--mode {word:?}: expected pv or pvh")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pv => "pv",
            Self::Pvh => "pvh",
        })
    }
}

/// What to boot: a kernel, its ramdisk and command line, and how much memory it gets.
#[derive(Clone, Debug)]
pub struct Image {
    pub kernel: PathBuf,
    pub ramdisk: Option<PathBuf>,
    pub append: String,
    pub mem_mib: u32,
}

/// The options both verbs share, read from the command line.
struct Common {
    image: Image,
    ends: Reason,
    expect: Vec<Pattern>,
    timeout: Duration,
    verbose: bool,
}

impl Common {
    fn parse(args: &mut Args, default_timeout: u64) -> Result<Self, String> {
        let kernel = KernelChoice::take(args)?;
        let ramdisk = args.value("--ramdisk")?.map(PathBuf::from);
        let append = args.value("--append")?.unwrap_or_default();
        let mem_mib = args.parsed("--mem", 64)?;
        let ends = Reason::parse_expected(&args.value("--ends")?.unwrap_or("poweroff".into()))?;
        let expect = harness::take_expects(args)?;
        let timeout = Duration::from_secs(args.parsed("--timeout", default_timeout)?);
        let verbose = args.flag("-v") || args.flag("--verbose");
        Ok(Self {
            image: Image {
                kernel: kernel.path()?,
                ramdisk: ramdisk.as_deref().map(harness::existing_file).transpose()?,
                append,
                mem_mib,
            },
            ends,
            expect,
            timeout,
            verbose,
        })
    }
}

fn layout() -> Result<Layout, String> {
    Layout::new("xen")
}

/// `cargo xtask xen`.
pub fn xen_verb(mut args: Args) -> Result<ExitCode, String> {
    let mode = Mode::parse(&args.value("--mode")?.unwrap_or("pv".into()))?;
    let vif = args.flag("--vif");
    let disk = args.flag("--disk");
    let common = Common::parse(&mut args, 600)?;
    args.finish()?;
    install::ensure_qemu()?;
    install::ensure_tools(debian::HOST_TOOLS)?;
    let layout = layout()?;
    let dom0 = dom0::build(&layout)?;
    let case = Case {
        name: format!("{} as a Xen {mode} domU", common.image.kernel.display()),
        guest: run::Guest {
            mode,
            vif,
            disk,
            shutdown_on: None,
            probe: None,
            image: common.image,
        },
        ends: common.ends,
        checks: Checks::Expect(common.expect),
    };
    let wait = run::wait_within(common.timeout);
    Ok(verb_exit(cases::run(
        &layout,
        &dom0,
        &[case],
        wait,
        common.verbose,
    )))
}

/// `cargo xtask xen-smoke`.
pub fn smoke_verb(mut args: Args) -> Result<ExitCode, String> {
    let common = Common::parse(&mut args, 120)?;
    args.finish()?;
    install::ensure_qemu()?;
    install::ensure_tools(debian::HOST_TOOLS)?;
    let layout = layout()?;
    let dom0 = dom0::build(&layout)?;
    Ok(exit(smoke::run(&layout, &dom0.xen, &common)?))
}

/// `cargo xtask xen-selftest`: the harness proven with a guest known to work.
pub fn selftest_verb(args: Args) -> Result<ExitCode, String> {
    args.finish()?;
    install::ensure_qemu()?;
    install::ensure_tools(debian::HOST_TOOLS)?;
    let layout = layout()?;
    let dom0 = dom0::build(&layout)?;
    let linux = test_guest::build(&layout, &dom0)?;
    let hello = Pattern::parse("^HARNESS-GUEST: hello from Linux .* as a PV guest")?;
    let cases = [
        ("Linux PV domU powers off", "console=hvc0", Reason::Poweroff),
        (
            "Linux PV domU crashes",
            "console=hvc0 harness_crash=1",
            Reason::Crash,
        ),
    ]
    .map(|(name, append, ends)| Case {
        name: name.to_owned(),
        guest: run::Guest {
            mode: Mode::Pv,
            vif: false,
            disk: false,
            shutdown_on: None,
            probe: None,
            image: linux.image(append, 128),
        },
        ends,
        checks: Checks::Expect(vec![hello.clone()]),
    });
    let mut verdicts = cases::run(&layout, &dom0, &cases, CASE_WAIT, false);
    let smoke = Common {
        image: linux.image("console=hvc0 earlyprintk=xen", 256),
        ends: Reason::Poweroff,
        expect: vec![hello],
        timeout: Duration::from_secs(180),
        verbose: false,
    };
    verdicts.push(timed("Linux as PV dom0 (xen-smoke)", || {
        smoke::run(&layout, &dom0.xen, &smoke)
    }));
    Ok(verb_exit(verdicts))
}

/// `cargo xtask bench xen-boot`.
pub fn bench_verb(mut args: Args) -> Result<ExitCode, String> {
    let runs = args.parsed("--runs", 5)?;
    let mode = Mode::parse(&args.value("--mode")?.unwrap_or("pv".into()))?;
    args.finish()?;
    crate::bench::check_runs(runs)?;
    install::ensure_target()?;
    install::ensure_qemu()?;
    // Boot time is a release figure, as in `bench boot`.
    let hello = harness::absolute(&crate::build("hello", true)?)?;
    bench::xen_boot(&layout()?, &hello, runs, mode)?;
    Ok(ExitCode::SUCCESS)
}

/// One named harness run and whether it passed (an error counts as a failure).
pub type Verdict = (String, Result<bool, String>);

/// `cargo xtask test xen`: hello as Xen's PV dom0, then, in one dom0 boot, hello's report and
/// panic as a PVH and as a PV domU, blk-check's disk round trip as each, httpd answering
/// dom0's ping, HTTP requests and wrk's load over its vif as a PV domU, with a static address
/// and with a DHCP lease.
pub fn test_stage(
    hello: &Result<PathBuf, String>,
    blk_check: &Result<PathBuf, String>,
    httpd: &Result<PathBuf, String>,
) -> Tally {
    let started = Instant::now();
    let verdicts = stage_verdicts(hello, blk_check, httpd)
        .unwrap_or_else(|e| vec![("xen stage".to_owned(), Err(e))]);
    let tally = tally(verdicts);
    println!("xtask: xen stage took {}", secs(started.elapsed(), 1));
    tally
}

fn stage_verdicts(
    hello: &Result<PathBuf, String>,
    blk_check: &Result<PathBuf, String>,
    httpd: &Result<PathBuf, String>,
) -> Result<Vec<Verdict>, String> {
    let built = |app: &str, path: &Result<PathBuf, String>| {
        let path = path
            .as_ref()
            .map_err(|e| format!("{app} did not build: {e}"))?;
        harness::absolute(path)
    };
    let hello = built("hello", hello)?;
    let blk_check = built("blk-check", blk_check)?;
    let httpd = built("httpd", httpd)?;
    let layout = layout()?;
    let dom0 = dom0::build(&layout)?;
    let smoke = Common {
        image: Image {
            kernel: hello.clone(),
            ramdisk: None,
            append: String::new(),
            mem_mib: 64,
        },
        ends: Reason::Poweroff,
        expect: vec![Pattern::parse("^ringbolt: exit status 0$")?],
        timeout: Duration::from_secs(120),
        verbose: false,
    };
    let mut verdicts = vec![timed("hello as Xen PV dom0 (xen-smoke)", || {
        smoke::run(&layout, &dom0.xen, &smoke)
    })];
    // PVH first: a PV kernel that took Xen down would otherwise cost the PVH cases their run.
    // The blk-check domains share the disk image; different seeds make each write it anew.
    let mut cases: Vec<Case> = [Mode::Pvh, Mode::Pv]
        .into_iter()
        .flat_map(|mode| cases::hello(&hello, mode))
        .collect();
    cases.extend([Mode::Pvh, Mode::Pv].map(|mode| cases::hello_shutdown(&hello, mode)));
    cases.push(cases::blk_check(&blk_check, Mode::Pvh, 1));
    cases.push(cases::blk_check(&blk_check, Mode::Pv, 2));
    // httpd as a PVH domU is left out until an intermittent triple fault under load is
    // understood (2 of 7 runs: `(XEN) d9v0 Triple fault` with no guest output, once right after
    // netfront connected, once during wrk); PV never showed it. `cargo xtask xen --app httpd
    // --mode pvh --vif` reproduces it by hand.
    cases.push(cases::httpd(&httpd, Mode::Pv, cases::Addressing::Static));
    cases.push(cases::httpd(&httpd, Mode::Pv, cases::Addressing::Dhcp));
    verdicts.extend(cases::run(&layout, &dom0, &cases, CASE_WAIT, false));
    Ok(verdicts)
}

/// Runs `passed` and names its verdict `name (seconds)`.
fn timed(name: &str, passed: impl FnOnce() -> Result<bool, String>) -> Verdict {
    let started = Instant::now();
    let passed = passed();
    (format!("{name} ({})", secs(started.elapsed(), 1)), passed)
}

/// Prints each verdict and counts them.
fn tally(verdicts: Vec<Verdict>) -> Tally {
    let mut tally = Tally::default();
    for (name, passed) in verdicts {
        tally.record(&name, passed);
    }
    tally
}

/// A verb's verdicts, their totals and its exit status.
fn verb_exit(verdicts: Vec<Verdict>) -> ExitCode {
    let tally = tally(verdicts);
    println!("{} passed, {} failed", tally.passed, tally.failed);
    exit(tally.failed == 0)
}

/// Xen's panic banner. Xen then reboots five seconds later, which `-no-reboot` turns into QEMU
/// exiting with status 0, the same status as a clean ACPI power-off: only this line tells them
/// apart. The runs stop QEMU at "Reboot in five seconds" rather than wait.
fn xen_panicked(line: &str) -> bool {
    line.contains("(XEN) Panic on CPU")
}

/// QEMU's multiboot module list splits on `,` and each module's command line on ` `.
fn check_module_path(path: &Path) -> Result<&str, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    if text.contains([',', ' ']) {
        return Err(format!(
            "{text}: QEMU's multiboot module list cannot carry commas or spaces in paths"
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_accepts_only_guest_chosen_endings() {
        assert_eq!(Reason::parse_expected("poweroff"), Ok(Reason::Poweroff));
        assert_eq!(Reason::parse_expected("crash"), Ok(Reason::Crash));
        assert_eq!(Reason::parse_expected("reboot"), Ok(Reason::Reboot));
        assert!(Reason::parse_expected("timeout").is_err());
        assert!(Reason::parse_expected("halt").is_err());
    }

    #[test]
    fn reasons_round_trip_through_display() {
        for word in ["poweroff", "reboot", "crash", "timeout", "create-failed"] {
            assert_eq!(Reason::parse(word).to_string(), word);
        }
        assert_eq!(Reason::parse("watchdog"), Reason::Other("watchdog".into()));
    }

    #[test]
    fn mode_parses_pv_and_pvh_only() {
        assert_eq!(Mode::parse("pv"), Ok(Mode::Pv));
        assert_eq!(Mode::parse("pvh"), Ok(Mode::Pvh));
        assert!(Mode::parse("hvm").is_err());
    }

    #[test]
    fn module_paths_reject_qemu_separators() {
        assert_eq!(
            check_module_path(Path::new("/t/xen/vmlinux")),
            Ok("/t/xen/vmlinux")
        );
        assert!(check_module_path(Path::new("/t/a,b")).is_err());
        assert!(check_module_path(Path::new("/t/a b")).is_err());
    }

    #[test]
    fn recognises_only_xens_panic_banner() {
        assert!(xen_panicked("(XEN) Panic on CPU 0:"));
        assert!(!xen_panicked("[    1.0] Kernel panic - not syncing: sysrq"));
    }
}
