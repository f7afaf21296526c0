//! One harness run: QEMU TCG boots L1, L1's /init runs L2's QEMU, L2's console comes back on
//! L1's serial line between marker lines (`xtask/hyperv/l1-init.sh` has them).
//!
//! The run folder (`target/hyperv/runs/hyperv-*`) is L1's second 9p share, read-only like the
//! host root: it carries L2's kernel and QEMU command line in; the L2 exit status comes out
//! on the console, so nothing in L1 writes to the host. It keeps L2's command line and the
//! serial log.

use std::fmt;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::l1::L1;
use crate::harness::{Layout, run_dir, secs, stamp};
use crate::qemu::{self, Flow, Outcome, QEMU};

/// KVM's Hyper-V enlightenments for L2. `kvm=off` hides KVM's own CPUID leaves, so
/// 0x40000000 is Hyper-V's (`Microsoft Hv`) and nothing else; VMBus needs `hv-synic` and
/// `hv-vpindex`.
const L2_CPU: &str =
    "host,hv-relaxed,hv-vpindex,hv-synic,hv-time,hv-stimer,hv-vapic,hv-runtime,kvm=off";
/// Where L1's chroot (the host's root) sees the run folder.
const L2_RUN_DIR: &str = "/run/harness";
/// L1's kernel command line. `cryptomgr.notests`: the crypto self-tests cost about 0.7 s of
/// emulated CPU; `panic=-1` with `-no-reboot` ends QEMU at a panic.
const L1_APPEND: &str = "console=ttyS0 panic=-1 cryptomgr.notests";
/// Added unless verbose: L1's kernel log costs console time and hides L2's lines.
const L1_QUIET: &str = "quiet loglevel=3";
/// Both levels: no default devices (no VGA, NIC or disks, so SeaBIOS stays off the serial
/// port), no display, no network, COM1 on stdout, and an exit instead of a reboot.
const ISOLATED: &[&str] = &[
    "-nodefaults",
    "-display",
    "none",
    "-nic",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
];
/// L1 gets L2's memory plus room for its own kernel, page cache and QEMU.
const L1_EXTRA_MIB: u32 = 1024;

const L2_START: &str = "HARNESS-L2-START";
const L2_EXIT: &str = "HARNESS-L2-EXIT status=";
const L1_FAILED: &str = "HARNESS-L1-FAILED ";

/// What L2 boots.
#[derive(Debug)]
pub struct Guest {
    pub kernel: PathBuf,
    pub append: String,
    pub mem_mib: u32,
    /// Appended to L2's QEMU command line (the last `-cpu` wins).
    pub extra: Vec<String>,
    /// A QEMU monitor command L1 types into L2's monitor some time after a console line.
    pub monitor: Option<MonitorAction>,
}

/// When a guest console line contains `trigger`, send each step's command to L2's QEMU
/// monitor (e.g. `balloon 384`), its delay (seconds) after the step before.
#[derive(Clone, Debug)]
pub struct MonitorAction {
    pub trigger: String,
    pub steps: Vec<(u32, String)>,
}

/// Where L2's monitor listens inside L1's view of the host root: QEMU's `pipe` chardev reads
/// `<path>.in` and writes `<path>.out`, two FIFOs l1-init.sh creates.
const MONITOR_PIPE: &str = "/tmp/hv-monitor";

/// QEMU's Dynamic Memory device, asking for the guest's status reports.
const BALLOON_DEVICE: &str = "hv-balloon,status-report=on";

/// L2's QEMU command line as L1 runs it in the host's root (never run on the host).
fn l2_command(guest: &Guest) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-accel", "kvm", "-machine", "pc", "-smp", "1"]);
    cmd.args(["-m", &guest.mem_mib.to_string()]);
    cmd.args(["-cpu", L2_CPU]);
    // status-report=on: the host asks the guest's balloon driver for its memory figures.
    cmd.args(["-device", "vmbus-bridge", "-device", BALLOON_DEVICE]);
    cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    cmd.args(ISOLATED);
    cmd.args(["-kernel", &format!("{L2_RUN_DIR}/kernel")]);
    cmd.args(["-append", &guest.append]);
    if guest.monitor.is_some() {
        cmd.args(["-chardev", &format!("pipe,id=monitor,path={MONITOR_PIPE}")]);
        cmd.args(["-mon", "chardev=monitor,mode=readline"]);
    }
    cmd.args(&guest.extra);
    cmd
}

/// The `monitor` file l1-init.sh reads: the trigger, then a `DELAY COMMAND` line a step.
fn monitor_file(action: &MonitorAction) -> String {
    let mut file = format!("{}\n", action.trigger);
    for (delay, command) in &action.steps {
        file.push_str(&format!("{delay} {command}\n"));
    }
    file
}

/// The `l2-command` file /init reads: the program, then its arguments, one a line.
fn command_file(cmd: &Command) -> Result<String, String> {
    let mut text = String::new();
    for arg in std::iter::once(cmd.get_program()).chain(cmd.get_args()) {
        let arg = arg.to_string_lossy();
        if arg.contains('\n') {
            return Err(format!(
                "L2 QEMU argument {arg:?}: the harness cannot pass a newline"
            ));
        }
        text.push_str(&arg);
        text.push('\n');
    }
    Ok(text)
}

/// `-virtfs` for a read-only share of `path`: QEMU's option parser reads `,,` as a comma.
fn share(path: &Path, tag: &str) -> Result<String, String> {
    let path = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    Ok(format!(
        "local,path={},mount_tag={tag},security_model=none,readonly=on,multidevs=remap",
        path.replace(',', ",,")
    ))
}

/// L1's QEMU: TCG with `-cpu max` (SVM for KVM), the host's root and the run folder shared.
fn l1_command(l1: &L1, run: &Path, l2_mem_mib: u32, verbose: bool) -> Result<Command, String> {
    let mut append = L1_APPEND.to_owned();
    if !verbose {
        append = format!("{append} {L1_QUIET}");
    }
    let mut cmd = Command::new(QEMU);
    cmd.args(["-accel", "tcg", "-cpu", "max", "-smp", "1"]);
    cmd.args(["-m", &(l2_mem_mib + L1_EXTRA_MIB).to_string()]);
    cmd.args(ISOLATED);
    cmd.arg("-kernel").arg(&l1.vmlinux);
    cmd.arg("-initrd").arg(&l1.initrd);
    cmd.args(["-append", &append]);
    cmd.args(["-virtfs", &share(Path::new("/"), "hostroot")?]);
    cmd.args(["-virtfs", &share(run, "harness")?]);
    Ok(cmd)
}

/// A marker line of L1's /init.
#[derive(Debug, PartialEq, Eq)]
enum Event<'a> {
    L2Start,
    /// L2's QEMU status; `before` is the guest's unended last line, if it left one.
    L2Exit {
        status: i32,
        before: &'a str,
    },
    L1Failed(&'a str),
}

fn event(line: &str) -> Option<Event<'_>> {
    if line == L2_START {
        return Some(Event::L2Start);
    }
    if let Some(at) = line.find(L2_EXIT) {
        let status = line[at + L2_EXIT.len()..].trim().parse().ok()?;
        return Some(Event::L2Exit {
            status,
            before: &line[..at],
        });
    }
    line.strip_prefix(L1_FAILED).map(Event::L1Failed)
}

/// Where a console line came from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    /// L1's kernel and /init, and the markers.
    L1,
    /// L2's QEMU itself (its warnings and errors).
    L2Qemu,
    /// The guest's console.
    Guest,
}

/// A finished run.
#[derive(Debug)]
pub struct Session {
    /// The guest's console lines.
    pub console: Vec<String>,
    /// L2's QEMU exit status: `(code << 1) | 1` after isa-debug-exit, 0 for a power-off, a
    /// reset or a triple fault, 1 also when QEMU itself failed. Or why L1 never said.
    pub l2_status: Result<i32, String>,
    /// What L2's QEMU said on its own behalf.
    pub l2_qemu: Vec<String>,
    pub timings: Timings,
    pub log: PathBuf,
}

impl Session {
    /// L2's QEMU status and how the guest ended by it (read as `cargo xtask run` reads
    /// QEMU's status), or why there is no status.
    pub fn l2_ending(&self) -> Result<(i32, Outcome), &str> {
        let status = *self.l2_status.as_ref().map_err(String::as_str)?;
        let outcome = qemu::classify(Some(status), &self.console, &self.l2_qemu.join("\n"));
        Ok((status, outcome))
    }
}

/// Where the time went.
#[derive(Debug, Default, PartialEq)]
pub struct Timings {
    /// L1's QEMU start to L2's QEMU start.
    pub l1_boot: Option<Duration>,
    /// L2's QEMU start to the guest's first console line.
    pub l2_boot: Option<Duration>,
    /// L2's QEMU start to its exit.
    pub l2_run: Option<Duration>,
    /// L1's QEMU start to its exit.
    pub total: Duration,
}

impl fmt::Display for Timings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |took: Option<Duration>| took.map_or("-".to_owned(), |took| secs(took, 1));
        write!(
            f,
            "l1_boot={} l2_boot={} l2_run={} total={}",
            show(self.l1_boot),
            show(self.l2_boot),
            show(self.l2_run),
            secs(self.total, 1)
        )
    }
}

/// Follows L1's console: the markers, the guest's lines and when things happened.
#[derive(Debug, Default)]
struct Tracker {
    l2_start: Option<Duration>,
    first_output: Option<Duration>,
    l2_exit: Option<(i32, Duration)>,
    l1_failed: Option<String>,
    console: Vec<String>,
    l2_qemu: Vec<String>,
}

impl Tracker {
    /// Takes one line that arrived `at` after L1's QEMU started, and says whose it was.
    fn on(&mut self, at: Duration, line: &str) -> Source {
        match event(line) {
            Some(Event::L2Start) => self.l2_start = Some(at),
            Some(Event::L2Exit { status, before }) => {
                if !before.is_empty() {
                    self.guest_line(at, before);
                }
                self.l2_exit = Some((status, at));
            }
            Some(Event::L1Failed(why)) => self.l1_failed = Some(why.to_owned()),
            None if self.l2_start.is_none() || self.l2_exit.is_some() => {}
            // QEMU prefixes its own messages with its program name.
            None if line.starts_with(&format!("{QEMU}:")) => {
                self.l2_qemu.push(line.to_owned());
                return Source::L2Qemu;
            }
            None => {
                self.guest_line(at, line);
                return Source::Guest;
            }
        }
        Source::L1
    }

    fn guest_line(&mut self, at: Duration, line: &str) {
        self.first_output.get_or_insert(at);
        self.console.push(line.to_owned());
    }

    /// The session, once L1's QEMU ended after `total` with `outcome`.
    fn finish(self, total: Duration, outcome: &Outcome, log: PathBuf) -> Session {
        let since_start = |at: Option<Duration>| Some(at? - self.l2_start?);
        let timings = Timings {
            l1_boot: self.l2_start,
            l2_boot: since_start(self.first_output),
            l2_run: since_start(self.l2_exit.map(|(_, at)| at)),
            total,
        };
        let l2_status = match (self.l2_exit, &self.l1_failed, outcome) {
            (Some((status, _)), _, _) => Ok(status),
            (None, Some(why), _) => Err(format!("L1 failed: {why}")),
            (None, None, Outcome::Timeout(after)) => Err(format!(
                "timed out after {} s{}",
                after.as_secs(),
                if self.l2_start.is_some() {
                    ", L2 still running"
                } else {
                    " before L2 started"
                }
            )),
            (None, None, Outcome::QemuFailed(..)) => Err(format!("L1's QEMU {outcome}")),
            (None, None, _) => Err("L1 stopped without an L2 status".to_owned()),
        };
        Session {
            console: self.console,
            l2_status,
            l2_qemu: self.l2_qemu,
            timings,
            log,
        }
    }
}

/// Boots L1 and runs `guest` as L2, streaming its console; ends after `timeout` at the most.
pub fn run(
    layout: &Layout,
    l1: &L1,
    guest: &Guest,
    timeout: Duration,
    verbose: bool,
) -> Result<Session, String> {
    let dir = run_dir(&layout.runs, "hyperv")?;
    fs::copy(&guest.kernel, dir.join("kernel"))
        .map_err(|e| format!("copying {}: {e}", guest.kernel.display()))?;
    let command = command_file(&l2_command(guest))?;
    fs::write(dir.join("l2-command"), command).map_err(|e| format!("writing l2-command: {e}"))?;
    if let Some(action) = &guest.monitor {
        fs::write(dir.join("monitor"), monitor_file(action))
            .map_err(|e| format!("writing monitor: {e}"))?;
    }
    let cmd = l1_command(l1, &dir, guest.mem_mib, verbose)?;
    println!(
        "xtask: hyperv: {} as the Hyper-V guest (L2, {} MiB) {:?}, run files in {}",
        guest.kernel.display(),
        guest.mem_mib,
        guest.append,
        dir.display()
    );

    let log_path = dir.join("serial.log");
    let mut log = BufWriter::new(
        fs::File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?,
    );
    let mut tracker = Tracker::default();
    let result = qemu::watch(cmd, timeout, |at, line| {
        // The log is a diagnostic; a full disk must not abort the run.
        let _ = writeln!(log, "{} {line}", stamp(at));
        let prefix = match tracker.on(at, line) {
            Source::Guest => "guest| ",
            Source::L2Qemu => "l2-qemu| ",
            Source::L1 => "",
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) must not abort the run.
        let _ = writeln!(out, "{} {prefix}{line}", stamp(at)).and_then(|()| out.flush());
        Flow::Continue
    });
    let _ = log.flush();
    // The kernel's copy is a build product; the serial log and L2's command line stay.
    let _ = fs::remove_file(dir.join("kernel"));
    let run = result?;
    Ok(tracker.finish(run.elapsed, &run.outcome, log_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::tests::{command_args, has_pair};

    fn guest(extra: &[&str]) -> Guest {
        Guest {
            kernel: PathBuf::from("/t/hello"),
            append: "x=1 y=two".to_owned(),
            mem_mib: 512,
            extra: extra.iter().map(|arg| (*arg).to_owned()).collect(),
            monitor: None,
        }
    }

    #[test]
    fn a_monitor_action_adds_the_pipe_monitor_and_its_file() {
        let mut with_monitor = guest(&[]);
        with_monitor.monitor = Some(MonitorAction {
            trigger: "balloon: ready".to_owned(),
            steps: vec![
                (55, "balloon 384".to_owned()),
                (10, "balloon 512".to_owned()),
            ],
        });
        let args = command_args(&l2_command(&with_monitor));
        assert_pairs(
            &args,
            &[
                ("-chardev", "pipe,id=monitor,path=/tmp/hv-monitor"),
                ("-mon", "chardev=monitor,mode=readline"),
            ],
        );
        assert!(!command_args(&l2_command(&guest(&[]))).contains(&"-mon".to_owned()));
        assert_eq!(
            monitor_file(with_monitor.monitor.as_ref().unwrap()),
            "balloon: ready\n55 balloon 384\n10 balloon 512\n"
        );
    }

    /// Fails naming the first `(flag, value)` that `args` lacks.
    fn assert_pairs(args: &[String], pairs: &[(&str, &str)]) {
        for (flag, value) in pairs {
            assert!(has_pair(args, flag, value), "{flag} {value} in {args:?}");
        }
    }

    #[test]
    fn l2_runs_on_kvm_with_hyperv_vmbus_and_debug_exit_and_no_network() {
        let cmd = l2_command(&guest(&[]));
        assert_eq!(cmd.get_program(), "qemu-system-x86_64");
        let args = command_args(&cmd);
        assert_pairs(
            &args,
            &[
                ("-accel", "kvm"),
                (
                    "-cpu",
                    "host,hv-relaxed,hv-vpindex,hv-synic,hv-time,hv-stimer,hv-vapic,hv-runtime,\
                     kvm=off",
                ),
                ("-device", "vmbus-bridge"),
                ("-device", "hv-balloon,status-report=on"),
                ("-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"),
                ("-nic", "none"),
                ("-serial", "stdio"),
                ("-m", "512"),
                ("-kernel", "/run/harness/kernel"),
                ("-append", "x=1 y=two"),
            ],
        );
        assert!(args.iter().any(|arg| arg == "-nodefaults"));
        assert!(args.iter().any(|arg| arg == "-no-reboot"));
    }

    #[test]
    fn extra_arguments_come_last_so_their_cpu_wins() {
        let args = command_args(&l2_command(&guest(&[
            "-cpu",
            "host,hv-vendor-id=NotHyperV",
        ])));
        assert_eq!(
            args[args.len() - 2..],
            ["-cpu", "host,hv-vendor-id=NotHyperV"]
        );
    }

    #[test]
    fn command_file_has_one_argument_a_line() {
        let mut cmd = Command::new("qemu");
        cmd.args(["-append", "a b  c"]);
        assert_eq!(command_file(&cmd).unwrap(), "qemu\n-append\na b  c\n");
        cmd.arg("a\nb");
        assert!(command_file(&cmd).is_err());
    }

    #[test]
    fn l1_runs_on_tcg_with_read_only_shares_and_no_network() {
        let l1 = L1 {
            vmlinux: PathBuf::from("/t/vmlinux"),
            initrd: PathBuf::from("/t/l1.cpio"),
        };
        let args = command_args(&l1_command(&l1, Path::new("/t/runs/a,b"), 512, false).unwrap());
        assert_pairs(
            &args,
            &[
                ("-accel", "tcg"),
                ("-cpu", "max"),
                ("-m", "1536"),
                ("-nic", "none"),
                ("-kernel", "/t/vmlinux"),
                ("-initrd", "/t/l1.cpio"),
                (
                    "-append",
                    "console=ttyS0 panic=-1 cryptomgr.notests quiet loglevel=3",
                ),
                (
                    "-virtfs",
                    "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,\
                     multidevs=remap",
                ),
                (
                    "-virtfs",
                    "local,path=/t/runs/a,,b,mount_tag=harness,security_model=none,readonly=on,\
                     multidevs=remap",
                ),
            ],
        );
        let args = command_args(&l1_command(&l1, Path::new("/t/r"), 64, true).unwrap());
        assert_pairs(
            &args,
            &[("-append", "console=ttyS0 panic=-1 cryptomgr.notests")],
        );
    }

    #[test]
    fn the_init_script_prints_every_marker() {
        for marker in [L2_START, L2_EXIT, L1_FAILED] {
            assert!(super::super::l1::INIT.contains(marker), "{marker}");
        }
    }

    #[test]
    fn parses_markers() {
        assert_eq!(event("HARNESS-L2-START"), Some(Event::L2Start));
        assert_eq!(
            event("HARNESS-L2-EXIT status=1"),
            Some(Event::L2Exit {
                status: 1,
                before: ""
            })
        );
        assert_eq!(
            event("no newline HARNESS-L2-EXIT status=255"),
            Some(Event::L2Exit {
                status: 255,
                before: "no newline "
            })
        );
        assert_eq!(event("HARNESS-L2-EXIT status="), None);
        assert_eq!(
            event("HARNESS-L1-FAILED why=no-/dev/kvm"),
            Some(Event::L1Failed("why=no-/dev/kvm"))
        );
        assert_eq!(event("guest says HARNESS-L2-START"), None);
        assert_eq!(event("platform: qemu-pvh"), None);
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn tracker_sorts_lines_and_times_the_stages() {
        let mut tracker = Tracker::default();
        let lines = [
            (100, "[    1.0] kvm: some L1 error", Source::L1),
            (5_000, "HARNESS-L2-START", Source::L1),
            (
                6_000,
                "qemu-system-x86_64: warning: host doesn't support requested feature",
                Source::L2Qemu,
            ),
            (8_500, "platform: qemu-pvh", Source::Guest),
            (9_000, "ringbolt: exit status 0", Source::Guest),
            (9_200, "HARNESS-L2-EXIT status=1", Source::L1),
            (9_300, "[   10.0] reboot: Power down", Source::L1),
        ];
        for (at, line, source) in lines {
            assert_eq!(tracker.on(ms(at), line), source, "{line}");
        }
        let session = tracker.finish(ms(9_900), &Outcome::Exited(0), PathBuf::new());
        assert_eq!(
            session.console,
            ["platform: qemu-pvh", "ringbolt: exit status 0"]
        );
        assert_eq!(session.l2_qemu.len(), 1);
        assert_eq!(session.l2_ending(), Ok((1, Outcome::Exited(0))));
        assert_eq!(
            session.timings,
            Timings {
                l1_boot: Some(ms(5_000)),
                l2_boot: Some(ms(3_500)),
                l2_run: Some(ms(4_200)),
                total: ms(9_900),
            }
        );
        assert_eq!(
            session.timings.to_string(),
            "l1_boot=5.0 s l2_boot=3.5 s l2_run=4.2 s total=9.9 s"
        );
    }

    #[test]
    fn tracker_keeps_an_unended_last_guest_line() {
        let mut tracker = Tracker::default();
        tracker.on(ms(1), "HARNESS-L2-START");
        tracker.on(ms(2), "partial HARNESS-L2-EXIT status=0");
        let session = tracker.finish(ms(3), &Outcome::Exited(0), PathBuf::new());
        assert_eq!(session.console, ["partial "]);
        assert_eq!(session.l2_status, Ok(0));
        assert_eq!(session.timings.l2_boot, Some(ms(1)));
    }

    #[test]
    fn says_why_there_is_no_l2_status() {
        let why = |lines: &[&str], outcome: Outcome| {
            let mut tracker = Tracker::default();
            for line in lines {
                tracker.on(ms(1), line);
            }
            let session = tracker.finish(ms(2), &outcome, PathBuf::new());
            assert!(session.l2_ending().is_err());
            session.l2_status.unwrap_err()
        };
        assert_eq!(
            why(&["HARNESS-L1-FAILED why=no-/dev/kvm"], Outcome::Exited(0)),
            "L1 failed: why=no-/dev/kvm"
        );
        assert_eq!(
            why(
                &["HARNESS-L2-START"],
                Outcome::Timeout(Duration::from_secs(9))
            ),
            "timed out after 9 s, L2 still running"
        );
        assert_eq!(
            why(&[], Outcome::Timeout(Duration::from_secs(9))),
            "timed out after 9 s before L2 started"
        );
        assert_eq!(
            why(&[], Outcome::QemuFailed(Some(1), "bad -virtfs".to_owned())),
            "L1's QEMU failed: qemu exited with status 1: bad -virtfs"
        );
        assert_eq!(
            why(&["[ 3.0] Kernel panic"], Outcome::Exited(0)),
            "L1 stopped without an L2 status"
        );
    }
}
