//! Running a kernel on QEMU: the command line, the serial console, and how the run ended.
//!
//! The console is COM1 on QEMU's stdout (`-serial stdio`), read line by line on a thread so
//! lines can be echoed live while the main thread enforces the deadline. The guest reports its
//! exit code through isa-debug-exit, which makes QEMU exit with `(code << 1) | 1`; when that
//! device is absent the kernel falls back to an ACPI power-off (QEMU status 0) and its last
//! console line, `ringbolt: exit status N`, is the only record of the code.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

pub const QEMU: &str = "qemu-system-x86_64";

/// The guest's exit code for a panic; QEMU then exits with 255.
const PANIC_CODE: i32 = 127;
/// How the kernel announces its exit code on the console.
pub const EXIT_LINE: &str = "ringbolt: exit status ";
/// How many stderr lines a failure keeps: enough for QEMU's one-line errors plus warnings.
const STDERR_TAIL_LINES: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    Pc,
    Microvm,
}

impl Machine {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "pc" => Ok(Self::Pc),
            "microvm" => Ok(Self::Microvm),
            _ => Err(format!("unknown machine {name:?} (expected pc or microvm)")),
        }
    }

    /// The `-M` argument. microvm has no legacy devices by default; Ringbolt needs the UART, the
    /// CMOS clock and the PIT. `auto-kernel-cmdline=off` keeps QEMU from appending virtio-mmio
    /// device lists to the command line the guest reports.
    fn arg(self) -> &'static str {
        match self {
            Self::Pc => "pc",
            Self::Microvm => "microvm,isa-serial=on,rtc=on,pit=on,auto-kernel-cmdline=off",
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pc => "pc",
            Self::Microvm => "microvm",
        })
    }
}

/// One VM: which kernel, with what memory, command line and machine.
#[derive(Debug)]
pub struct Vm<'a> {
    pub kernel: &'a Path,
    pub mem_mib: u32,
    pub append: &'a str,
    pub machine: Machine,
    pub kvm: bool,
}

impl Vm<'_> {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(QEMU);
        cmd.args(["-M", self.machine.arg()]);
        if self.kvm {
            cmd.args(["-accel", "kvm", "-cpu", "host"]);
        } else {
            cmd.args(["-accel", "tcg", "-cpu", "max"]);
        }
        cmd.arg("-m").arg(self.mem_mib.to_string());
        cmd.arg("-kernel").arg(self.kernel);
        cmd.args(["-append", self.append]);
        cmd.args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
        cmd.args(["-nic", "none", "-no-reboot"]);
        cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        cmd
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The app returned this code.
    Exited(u8),
    Panicked,
    /// Killed by xtask after this long.
    Timeout(Duration),
    /// Killed by xtask because the caller's line watcher had seen enough (see [`watch`]).
    Stopped,
    /// QEMU ended without a guest exit code: its status (None if killed by a signal) and the
    /// tail of its stderr.
    QemuFailed(Option<i32>, String),
}

impl Outcome {
    /// The process exit code xtask passes on: the app's own, or 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Exited(code) => *code,
            _ => 1,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exited with status {code}"),
            Self::Panicked => f.write_str("panicked"),
            Self::Timeout(after) => write!(f, "timed out after {} s", after.as_secs()),
            Self::Stopped => f.write_str("stopped by xtask"),
            Self::QemuFailed(status, stderr) => {
                match status {
                    Some(status) => write!(f, "failed: qemu exited with status {status}")?,
                    None => f.write_str("failed: qemu was killed by a signal")?,
                }
                if !stderr.is_empty() {
                    write!(f, ": {}", stderr.trim_end().replace('\n', " | "))?;
                }
                Ok(())
            }
        }
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Run {
    pub outcome: Outcome,
    /// QEMU's exit status, None if it was killed.
    pub status: Option<i32>,
    /// Console lines, without line endings.
    pub console: Vec<String>,
    /// From spawning QEMU to the first console line, if there was one.
    pub first_line: Option<Duration>,
    /// From spawning QEMU to its exit.
    pub elapsed: Duration,
}

/// What a [`watch`] callback wants after seeing a console line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Kill QEMU now: the run has said all it will (e.g. Xen halted without powering off).
    Stop,
}

/// Spawns `cmd` (a QEMU command line) and waits for it, killing it after `timeout`.
/// With `echo`, console lines are copied to stdout as they arrive.
pub fn run(cmd: Command, timeout: Duration, echo: bool) -> Result<Run, String> {
    watch(cmd, timeout, |_, line| {
        if echo {
            let mut out = std::io::stdout().lock();
            // A closed stdout (e.g. `| head`) must not abort the run; QEMU still exits.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
        Flow::Continue
    })
}

/// Like [`run`], but hands every console line to `on_line` with its arrival time since the
/// spawn, and kills QEMU when `on_line` returns [`Flow::Stop`] (the outcome is then
/// [`Outcome::Stopped`]). Callers that judge a run from its console (the Xen harness) use this.
pub fn watch(
    mut cmd: Command,
    timeout: Duration,
    mut on_line: impl FnMut(Duration, &str) -> Flow,
) -> Result<Run, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("spawning {QEMU}: {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");

    let (lines_tx, lines) = mpsc::channel();
    let console_reader = thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut buf = Vec::new();
        // Serial output is raw bytes; a guest bug must not stop the capture, hence lossy UTF-8.
        while matches!(stdout.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            if lines_tx.send((Instant::now(), line)).is_err() {
                break;
            }
            buf.clear();
        }
    });
    let stderr_reader = thread::spawn(move || {
        let mut text = Vec::new();
        // A read error only shortens the diagnostic; the exit status still tells the story.
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });

    let deadline = start + timeout;
    let mut console = Vec::new();
    let mut first_line = None;
    let mut timed_out = false;
    let mut stopped = false;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((at, line)) => {
                first_line.get_or_insert(at - start);
                let flow = on_line(at - start, &line);
                console.push(line);
                if flow == Flow::Stop {
                    stopped = true;
                    child.kill().map_err(|e| format!("killing {QEMU}: {e}"))?;
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                child.kill().map_err(|e| format!("killing {QEMU}: {e}"))?;
                break;
            }
        }
    }
    let exit = child
        .wait()
        .map_err(|e| format!("waiting for {QEMU}: {e}"))?;
    let elapsed = start.elapsed();
    console_reader
        .join()
        .map_err(|_| "console reader panicked".to_owned())?;
    let stderr = stderr_reader
        .join()
        .map_err(|_| "stderr reader panicked".to_owned())?;

    let status = exit.code();
    let outcome = if timed_out {
        Outcome::Timeout(timeout)
    } else if stopped {
        Outcome::Stopped
    } else {
        classify(status, &console, &stderr)
    };
    Ok(Run {
        outcome,
        status,
        console,
        first_line,
        elapsed,
    })
}

/// Decides how a run ended from QEMU's exit status and what the guest printed.
pub fn classify(status: Option<i32>, console: &[String], stderr: &str) -> Outcome {
    match status {
        // Powered off without isa-debug-exit: only the console knows the code.
        Some(0) => console_exit(console).unwrap_or_else(|| {
            Outcome::QemuFailed(
                Some(0),
                "guest powered off without an exit status line".into(),
            )
        }),
        // QEMU's own start-up errors also exit with 1, the status of a guest exiting with 0;
        // a guest that never printed a line cannot have booted far enough to exit cleanly.
        Some(1) if console.is_empty() => Outcome::QemuFailed(Some(1), tail(stderr)),
        Some(status) if status & 1 == 1 => match status >> 1 {
            PANIC_CODE => Outcome::Panicked,
            code => Outcome::Exited(code as u8),
        },
        status => Outcome::QemuFailed(status, tail(stderr)),
    }
}

/// The outcome the kernel announced in its last `ringbolt: exit status` line, if any.
fn console_exit(console: &[String]) -> Option<Outcome> {
    let rest = console
        .iter()
        .rev()
        .find_map(|line| line.trim().strip_prefix(EXIT_LINE))?;
    let (code, note) = rest.split_once(' ').unwrap_or((rest, ""));
    match code.parse::<i32>().ok()? {
        PANIC_CODE if note == "(panic)" => Some(Outcome::Panicked),
        code => Some(Outcome::Exited(u8::try_from(code).ok()?)),
    }
}

/// The last few lines of `text`.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
pub mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| (*line).to_owned()).collect()
    }

    /// A command's arguments, without the program.
    pub fn command_args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    fn args(vm: &Vm<'_>) -> Vec<String> {
        command_args(&vm.command())
    }

    fn vm(machine: Machine, kvm: bool) -> Vm<'static> {
        Vm {
            kernel: Path::new("/k.elf"),
            mem_mib: 77,
            append: "x=1 y=two",
            machine,
            kvm,
        }
    }

    /// Whether `flag` is directly followed by `value`.
    pub fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
        args.windows(2)
            .any(|pair| pair[0] == flag && pair[1] == value)
    }

    #[test]
    fn odd_status_carries_guest_exit_code() {
        let console = lines(&["hello"]);
        assert_eq!(classify(Some(1), &console, ""), Outcome::Exited(0));
        assert_eq!(classify(Some(7), &console, ""), Outcome::Exited(3));
        assert_eq!(classify(Some(251), &console, ""), Outcome::Exited(125));
    }

    #[test]
    fn status_255_is_panic() {
        assert_eq!(classify(Some(255), &lines(&["x"]), ""), Outcome::Panicked);
    }

    #[test]
    fn status_1_without_console_is_qemu_start_failure() {
        let stderr = "qemu: could not open kernel file '/nope': No such file or directory\n";
        assert_eq!(
            classify(Some(1), &[], stderr),
            Outcome::QemuFailed(Some(1), stderr.trim_end().to_owned())
        );
    }

    #[test]
    fn status_0_trusts_last_console_exit_line() {
        let console = lines(&[
            "ringbolt: exit status 9",
            "[ 0.1] INFO x",
            "ringbolt: exit status 4",
        ]);
        assert_eq!(classify(Some(0), &console, ""), Outcome::Exited(4));
        let panic = lines(&["panicked at a.rs:1:2:", "ringbolt: exit status 127 (panic)"]);
        assert_eq!(classify(Some(0), &panic, ""), Outcome::Panicked);
    }

    #[test]
    fn status_0_without_exit_line_is_failure() {
        assert!(matches!(
            classify(Some(0), &lines(&["booting"]), ""),
            Outcome::QemuFailed(Some(0), _)
        ));
        assert!(matches!(
            classify(Some(0), &lines(&["ringbolt: exit status lots"]), ""),
            Outcome::QemuFailed(Some(0), _)
        ));
    }

    #[test]
    fn even_status_and_signal_are_failures_with_stderr_tail() {
        let stderr = "1\n2\n3\n4\n5\n6\n7\n";
        assert_eq!(
            classify(Some(2), &lines(&["x"]), stderr),
            Outcome::QemuFailed(Some(2), "3\n4\n5\n6\n7".into())
        );
        assert_eq!(
            classify(None, &[], ""),
            Outcome::QemuFailed(None, String::new())
        );
    }

    #[test]
    fn outcome_display_matches_final_xtask_line() {
        assert_eq!(Outcome::Exited(3).to_string(), "exited with status 3");
        assert_eq!(Outcome::Panicked.to_string(), "panicked");
        assert_eq!(
            Outcome::Timeout(Duration::from_secs(60)).to_string(),
            "timed out after 60 s"
        );
        assert_eq!(
            Outcome::QemuFailed(Some(1), "a\nb".into()).to_string(),
            "failed: qemu exited with status 1: a | b"
        );
    }

    #[test]
    fn exit_code_is_guest_code_or_one() {
        assert_eq!(Outcome::Exited(0).exit_code(), 0);
        assert_eq!(Outcome::Exited(42).exit_code(), 42);
        assert_eq!(Outcome::Panicked.exit_code(), 1);
        assert_eq!(Outcome::Timeout(Duration::ZERO).exit_code(), 1);
        assert_eq!(Outcome::Stopped.exit_code(), 1);
    }

    #[test]
    fn command_uses_tcg_by_default_and_never_a_network() {
        let args = args(&vm(Machine::Pc, false));
        assert!(has_pair(&args, "-M", "pc"));
        assert!(has_pair(&args, "-accel", "tcg"));
        assert!(has_pair(&args, "-cpu", "max"));
        assert!(has_pair(&args, "-m", "77"));
        assert!(has_pair(&args, "-kernel", "/k.elf"));
        assert!(has_pair(&args, "-append", "x=1 y=two"));
        assert!(has_pair(&args, "-nic", "none"));
        assert!(has_pair(&args, "-serial", "stdio"));
        assert!(has_pair(
            &args,
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04"
        ));
        assert!(args.iter().any(|arg| arg == "-no-reboot"));
    }

    #[test]
    fn command_for_kvm_microvm_enables_legacy_devices() {
        let args = args(&vm(Machine::Microvm, true));
        assert!(has_pair(&args, "-accel", "kvm"));
        assert!(has_pair(&args, "-cpu", "host"));
        assert!(has_pair(
            &args,
            "-M",
            "microvm,isa-serial=on,rtc=on,pit=on,auto-kernel-cmdline=off"
        ));
    }

    #[test]
    fn machine_parse_rejects_unknown_names() {
        assert_eq!(Machine::parse("pc"), Ok(Machine::Pc));
        assert_eq!(Machine::parse("microvm"), Ok(Machine::Microvm));
        assert!(Machine::parse("q35").is_err());
    }

    #[test]
    fn run_captures_lines_and_status() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "printf 'a\\r\\nb\\nno newline'; echo oops >&2; exit 3",
        ]);
        let run = run(cmd, Duration::from_secs(10), false).unwrap();
        assert_eq!(run.console, ["a", "b", "no newline"]);
        assert_eq!(run.status, Some(3));
        assert_eq!(run.outcome, Outcome::Exited(1));
        assert!(run.first_line.unwrap() <= run.elapsed);
    }

    #[test]
    fn watch_stops_when_the_callback_asks() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; echo halt; exec sleep 30"]);
        let started = Instant::now();
        let mut seen = Vec::new();
        let run = watch(cmd, Duration::from_secs(20), |at, line| {
            seen.push((at, line.to_owned()));
            if line == "halt" {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })
        .unwrap();
        assert_eq!(run.outcome, Outcome::Stopped);
        assert_eq!(run.console, ["one", "halt"]);
        assert!(seen[0].0 <= seen[1].0, "arrival times are monotonic");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn run_kills_on_timeout() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let started = Instant::now();
        let run = run(cmd, Duration::from_millis(300), false).unwrap();
        assert_eq!(run.outcome, Outcome::Timeout(Duration::from_millis(300)));
        assert_eq!(run.console, ["started"]);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
