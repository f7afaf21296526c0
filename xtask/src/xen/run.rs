//! Guest runs: QEMU -> Xen -> Linux dom0 -> `xl create`, judged from the serial console.
//!
//! dom0's boot costs ten seconds of TCG, a hello domain well under one, so one boot (a
//! session) creates any number of domains, one after the other. The host renders an xl config
//! per domain and packs them, the kernels and ramdisks (each file once) and the dom0-side
//! script (`xtask/xen/run-guest.sh`) into a small cpio appended to dom0's initramfs (Linux
//! unpacks concatenated archives in order). dom0 reports through marker lines on its console,
//! which Xen copies to the serial line: `HARNESS-DOM0-READY`, then per domain
//! `HARNESS-CREATE-BEGIN`, `HARNESS-CREATE-DONE`, `guest| <console line>`,
//! `probe| <line>` (what its probe script printed), `HARNESS-SHUTDOWN-SENT`,
//! `HARNESS-DISK-SHA256` (if it had the disk) and `HARNESS-END reason=<why>`, with dom0's own
//! timestamps (the script's header has the format).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::dom0::Dom0;
use super::{Image, Layout, Mode, Reason, XEN_ARGS, check_module_path, xen_panicked};
use crate::debian::cpio;
use crate::harness::{run_dir, secs, stamp};
use crate::qemu::{self, Flow, QEMU};

const RUN_SCRIPT: &str = include_str!("../../xen/run-guest.sh");
const DISK_IMAGE: &str = "/var/lib/harness/disk.img";
/// The disk image's size: a whole write and read by blk-check takes seconds under TCG.
const DISK_MIB: u32 = 64;
/// Where dom0 finds the files the guests boot.
const FILES_DIR: &str = "harness/files";
/// dom0: 512 MiB fixed (its ramfs root holds the guest kernels), both vCPUs.
const DOM0_XEN_ARGS: &str = "dom0_mem=512M,max:512M dom0_max_vcpus=2";
/// `swiotlb=8192`: a 16 MiB bounce buffer instead of 64 MiB boots dom0 faster under TCG;
/// `rootfstype=ramfs`: no tmpfs size cap on the initramfs root.
const DOM0_ARGS: &str = "console=hvc0 earlyprintk=xen swiotlb=8192 rootfstype=ramfs";
/// Time for dom0 to boot and power off.
const DOM0_OVERHEAD: Duration = Duration::from_secs(90);
/// Time per domain besides its own run: `xl create`, a xenctx dump, `xl destroy`.
const GUEST_OVERHEAD: Duration = Duration::from_secs(30);
/// The least time a domain gets to run.
const MIN_WAIT: Duration = Duration::from_secs(30);

/// One domain to create.
#[derive(Clone, Debug)]
pub struct Guest {
    pub mode: Mode,
    pub vif: bool,
    pub disk: bool,
    /// When a console line contains this text, dom0 runs `xl shutdown` on the domain (to test
    /// the guest's `control/shutdown` handling) and stamps when.
    pub shutdown_on: Option<String>,
    /// A bash script dom0 runs when [`shutdown_on`](Self::shutdown_on)'s text appears, before
    /// `xl shutdown`, with the console line that held the text as its argument: its output
    /// comes back as [`Trace::probe`].
    pub probe: Option<String>,
    pub image: Image,
}

/// How one domain went.
#[derive(Debug, PartialEq)]
pub struct Domain {
    pub reason: Reason,
    pub trace: Trace,
}

/// What dom0 saw of one domain: its console and when things happened, by dom0's clock.
#[derive(Debug, Default, PartialEq)]
pub struct Trace {
    pub console: Vec<String>,
    /// The output of the guest's [`Guest::probe`], line by line.
    pub probe: Vec<String>,
    /// The disk image's SHA-256 (hex) after the domain ended, if it had the disk.
    pub disk_sha256: Option<String>,
    /// When dom0 ran `xl shutdown` ([`Guest::shutdown_on`]), microseconds since the epoch.
    shutdown_us: Option<u64>,
    /// Microseconds since the Unix epoch: `xl create` started, returned, the first console
    /// line arrived, xl reported the shutdown.
    begin_us: Option<u64>,
    built_us: Option<u64>,
    first_us: Option<u64>,
    end_us: Option<u64>,
}

impl Trace {
    /// From dom0's `xl shutdown` to xl reporting the domain's shutdown.
    pub fn shutdown_took(&self) -> Option<Duration> {
        let (sent, end) = (self.shutdown_us?, self.end_us?);
        Some(Duration::from_micros(end.checked_sub(sent)?))
    }

    /// dom0's clock when `xl create` started, in Unix seconds.
    pub fn created_unix(&self) -> Option<i64> {
        self.begin_us.map(|us| (us / 1_000_000) as i64)
    }

    pub fn built(&self) -> Option<Duration> {
        self.since_begin(self.built_us)
    }

    pub fn first_output(&self) -> Option<Duration> {
        self.since_begin(self.first_us)
    }

    pub fn end(&self) -> Option<Duration> {
        self.since_begin(self.end_us)
    }

    fn since_begin(&self, stamp: Option<u64>) -> Option<Duration> {
        Some(Duration::from_micros(stamp?.checked_sub(self.begin_us?)?))
    }

    /// The timings, for a report line.
    pub fn summary(&self) -> String {
        let show = |at: Option<Duration>| at.map_or("-".to_owned(), |at| secs(at, 2));
        format!(
            "xl create -> built {}, -> first output {}, -> end {}",
            show(self.built()),
            show(self.first_output()),
            show(self.end())
        )
    }
}

/// A finished session: one [`Domain`] per guest, in order.
#[derive(Debug)]
pub struct Session {
    pub domains: Vec<Domain>,
    /// How long QEMU ran.
    pub elapsed: Duration,
}

/// How long each domain may run when a one-domain session must end within `timeout`.
pub fn wait_within(timeout: Duration) -> Duration {
    timeout
        .saturating_sub(DOM0_OVERHEAD + GUEST_OVERHEAD)
        .max(MIN_WAIT)
}

/// A marker line dom0 prints (see the module doc).
#[derive(Debug, PartialEq, Eq)]
enum Event<'a> {
    Dom0Ready,
    Begin {
        n: usize,
        at_us: Option<u64>,
    },
    Built {
        n: usize,
        at_us: Option<u64>,
    },
    Guest(&'a str),
    Probe(&'a str),
    DiskSha256 {
        n: usize,
        sha256: &'a str,
    },
    ShutdownSent {
        n: usize,
        at_us: Option<u64>,
    },
    /// `n` is absent when dom0 itself failed: that ends every domain not yet ended.
    End {
        n: Option<usize>,
        reason: Reason,
        first_us: Option<u64>,
        end_us: Option<u64>,
    },
    /// Xen's own line when dom0 stops without ACPI power-off: nothing more will come.
    Dom0Stopped,
}

fn event(line: &str) -> Option<Event<'_>> {
    // Kernel messages may interleave with dom0's output, so markers are found anywhere.
    let after = |marker: &str| line.find(marker).map(|at| &line[at + marker.len()..]);
    if let Some(rest) = after("guest| ") {
        return Some(Event::Guest(rest));
    }
    if let Some(rest) = after("probe| ") {
        return Some(Event::Probe(rest));
    }
    if let Some(rest) = after("HARNESS-END ") {
        return Some(Event::End {
            n: field(rest, "n"),
            reason: Reason::parse(
                rest.split_whitespace()
                    .find_map(|word| word.strip_prefix("reason="))
                    .unwrap_or("unknown"),
            ),
            first_us: field(rest, "first_us"),
            end_us: field(rest, "end_us"),
        });
    }
    if let Some(rest) = after("HARNESS-DISK-SHA256 ") {
        return Some(Event::DiskSha256 {
            n: field(rest, "n")?,
            sha256: rest
                .split_whitespace()
                .find_map(|word| word.strip_prefix("sha256="))?,
        });
    }
    if let Some(rest) = after("HARNESS-SHUTDOWN-SENT ") {
        return Some(Event::ShutdownSent {
            n: field(rest, "n")?,
            at_us: field(rest, "at_us"),
        });
    }
    if let Some(rest) = after("HARNESS-CREATE-BEGIN ") {
        return Some(Event::Begin {
            n: field(rest, "n")?,
            at_us: field(rest, "at_us"),
        });
    }
    if let Some(rest) = after("HARNESS-CREATE-DONE ") {
        return Some(Event::Built {
            n: field(rest, "n")?,
            at_us: field(rest, "at_us"),
        });
    }
    if line.contains("HARNESS-DOM0-READY") {
        return Some(Event::Dom0Ready);
    }
    if line.contains("Hardware Dom0 ") && !line.contains("Hardware Dom0 shutdown: watchdog") {
        return Some(Event::Dom0Stopped);
    }
    None
}

/// The number in the `key=value` word of `rest`, if there is one.
fn field<T: std::str::FromStr>(rest: &str, key: &str) -> Option<T> {
    rest.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

/// Follows dom0's markers domain by domain; guest lines belong to the domain created last.
#[derive(Debug)]
struct Tracker {
    domains: Vec<(Trace, Option<Reason>)>,
    current: Option<usize>,
}

impl Tracker {
    fn new(count: usize) -> Self {
        Self {
            domains: (0..count).map(|_| (Trace::default(), None)).collect(),
            current: None,
        }
    }

    /// The domain dom0 numbered `n` (from 1), if there is one.
    fn get(&mut self, n: usize) -> Option<&mut (Trace, Option<Reason>)> {
        self.domains.get_mut(n.checked_sub(1)?)
    }

    fn on(&mut self, event: Event<'_>) {
        match event {
            Event::Begin { n, at_us } => {
                if let Some((trace, _)) = self.get(n) {
                    trace.begin_us = at_us;
                    self.current = Some(n);
                }
            }
            Event::Built { n, at_us } => {
                if let Some((trace, _)) = self.get(n) {
                    trace.built_us = at_us;
                }
            }
            Event::ShutdownSent { n, at_us } => {
                if let Some((trace, _)) = self.get(n) {
                    trace.shutdown_us = at_us;
                }
            }
            Event::DiskSha256 { n, sha256 } => {
                if let Some((trace, _)) = self.get(n) {
                    trace.disk_sha256 = Some(sha256.to_owned());
                }
            }
            Event::Guest(text) => {
                if let Some((trace, _)) = self.current.and_then(|n| self.get(n)) {
                    trace.console.push(text.to_owned());
                }
            }
            Event::Probe(text) => {
                if let Some((trace, _)) = self.current.and_then(|n| self.get(n)) {
                    trace.probe.push(text.to_owned());
                }
            }
            Event::End {
                n: Some(n),
                reason,
                first_us,
                end_us,
            } => {
                if let Some((trace, ended)) = self.get(n) {
                    trace.first_us = first_us;
                    trace.end_us = end_us;
                    *ended = Some(reason);
                }
                self.current = None;
            }
            Event::End {
                n: None, reason, ..
            } => {
                for (_, ended) in &mut self.domains {
                    ended.get_or_insert_with(|| reason.clone());
                }
                self.current = None;
            }
            Event::Dom0Ready | Event::Dom0Stopped => {}
        }
    }

    /// The domains, those dom0 never reported on ended by `fallback`.
    fn finish(self, fallback: &Reason) -> Vec<Domain> {
        self.domains
            .into_iter()
            .map(|(trace, reason)| Domain {
                reason: reason.unwrap_or_else(|| fallback.clone()),
                trace,
            })
            .collect()
    }
}

/// The files the guests boot, each packed once, under [`FILES_DIR`].
#[derive(Debug, Default)]
struct Files {
    paths: Vec<PathBuf>,
}

impl Files {
    /// Where dom0 finds `path`.
    fn add(&mut self, path: &Path) -> String {
        let index = match self.paths.iter().position(|known| known == path) {
            Some(index) => index,
            None => {
                self.paths.push(path.to_owned());
                self.paths.len() - 1
            }
        };
        format!("/{FILES_DIR}/{index}")
    }
}

/// The name of the `n`th domain (from 1): also names its xl config, console and xl logs.
fn domain_name(n: usize) -> String {
    format!("harness-{n}")
}

/// The xl domain configuration (xl.cfg(5)). Paths are inside dom0.
fn render_config(guest: &Guest, name: &str, files: &mut Files) -> String {
    let quoted = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
    let mut cfg = format!(
        "name = {}\ntype = {}\nkernel = {}\nmemory = {}\nvcpus = 1\n",
        quoted(name),
        quoted(&guest.mode.to_string()),
        quoted(&files.add(&guest.image.kernel)),
        guest.image.mem_mib
    );
    if let Some(ramdisk) = &guest.image.ramdisk {
        cfg.push_str(&format!("ramdisk = {}\n", quoted(&files.add(ramdisk))));
    }
    if !guest.image.append.is_empty() {
        // `cmdline` is xl's current name for the older `extra`.
        cfg.push_str(&format!("cmdline = {}\n", quoted(&guest.image.append)));
    }
    cfg.push_str("on_poweroff = \"destroy\"\non_reboot = \"destroy\"\n");
    // Keep a crashed domain so the run script can dump its vCPUs with xenctx.
    cfg.push_str("on_crash = \"preserve\"\n");
    if guest.vif {
        cfg.push_str("vif = [ 'bridge=xenbr0,mac=00:16:3e:00:00:02' ]\n");
    }
    if guest.disk {
        cfg.push_str(&format!(
            "disk = [ 'format=raw,vdev=xvda,access=rw,target={DISK_IMAGE}' ]\n"
        ));
    }
    cfg
}

/// `/harness/params`, sourced by the run script.
fn render_params(guests: &[&Guest], wait: Duration) -> String {
    let names: Vec<String> = (1..=guests.len()).map(domain_name).collect();
    let disk = if guests.iter().any(|guest| guest.disk) {
        DISK_IMAGE
    } else {
        ""
    };
    format!(
        "NAMES={}\nWAIT_SECS={}\nDISK_IMG={}\nDISK_MIB={DISK_MIB}\n",
        shell_quote(&names.join(" ")),
        wait.as_secs(),
        shell_quote(disk)
    )
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Each guest's domain name, xl configuration, `xl shutdown` trigger and probe script.
type DomainFiles = (String, String, Option<String>, Option<String>);

fn render_configs(guests: &[&Guest], files: &mut Files) -> Vec<DomainFiles> {
    guests
        .iter()
        .enumerate()
        .map(|(at, guest)| {
            let name = domain_name(at + 1);
            let cfg = render_config(guest, &name, files);
            (name, cfg, guest.shutdown_on.clone(), guest.probe.clone())
        })
        .collect()
}

/// dom0's initramfs for this session: the cached base archive, then this session's overlay.
fn write_initrd(
    dom0: &Dom0,
    params: &str,
    configs: &[DomainFiles],
    files: &Files,
    out: &Path,
) -> Result<(), String> {
    fs::copy(&dom0.initrd, out).map_err(|e| format!("copying {}: {e}", dom0.initrd.display()))?;
    let file = fs::OpenOptions::new()
        .append(true)
        .open(out)
        .map_err(|e| format!("opening {}: {e}", out.display()))?;
    let mut overlay = cpio::Writer::new(BufWriter::with_capacity(1 << 20, file));
    let written: std::io::Result<()> = (|| {
        overlay.dir("harness", 0o755)?;
        overlay.dir(FILES_DIR, 0o755)?;
        overlay.file("harness/run.sh", 0o755, RUN_SCRIPT.as_bytes())?;
        overlay.file("harness/params", 0o644, params.as_bytes())?;
        for (name, cfg, shutdown_on, probe) in configs {
            overlay.file(&format!("harness/{name}.cfg"), 0o644, cfg.as_bytes())?;
            if let Some(text) = shutdown_on {
                let file = format!("harness/{name}.shutdown-on");
                overlay.file(&file, 0o644, format!("{text}\n").as_bytes())?;
            }
            if let Some(script) = probe {
                let file = format!("harness/{name}.probe");
                overlay.file(&file, 0o755, script.as_bytes())?;
            }
        }
        for (index, path) in files.paths.iter().enumerate() {
            overlay.file_from(&format!("{FILES_DIR}/{index}"), 0o644, path)?;
        }
        overlay.finish()?.flush()
    })();
    written.map_err(|e| format!("writing {}: {e}", out.display()))
}

fn command(dom0: &Dom0, initrd: &Path) -> Result<Command, String> {
    let modules = format!(
        "{} {DOM0_ARGS},{}",
        check_module_path(&dom0.vmlinuz)?,
        check_module_path(initrd)?
    );
    let mut cmd = Command::new(QEMU);
    cmd.args([
        "-machine", "pc", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048",
    ]);
    cmd.args([
        "-nic", "none", "-display", "none", "-monitor", "none", "-serial", "stdio",
    ]);
    // Xen reboots after a panic; without a reboot QEMU exits and the run ends at once.
    cmd.arg("-no-reboot");
    cmd.arg("-kernel").arg(&dom0.xen);
    cmd.args(["-append", &format!("{XEN_ARGS} {DOM0_XEN_ARGS}")]);
    cmd.args(["-initrd", &modules]);
    Ok(cmd)
}

/// Boots Xen and dom0 once and creates every guest in turn, each allowed `wait` to end.
pub fn run(
    layout: &Layout,
    dom0: &Dom0,
    guests: &[&Guest],
    wait: Duration,
    verbose: bool,
) -> Result<Session, String> {
    let wait = wait.max(MIN_WAIT);
    let dir = run_dir(&layout.runs, "xen")?;
    let mut files = Files::default();
    let configs = render_configs(guests, &mut files);
    for (name, cfg, _, _) in &configs {
        let path = dir.join(format!("{name}.cfg"));
        fs::write(&path, cfg).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let initrd = dir.join("dom0-initrd.cpio");
    write_initrd(
        dom0,
        &render_params(guests, wait),
        &configs,
        &files,
        &initrd,
    )?;
    let cmd = command(dom0, &initrd)?;
    println!(
        "xtask: xen: {} domain(s) in turn under Xen + Linux dom0, run files in {}",
        guests.len(),
        dir.display()
    );
    for ((name, _, _, _), guest) in configs.iter().zip(guests) {
        println!(
            "xtask: xen:   {name}: {} as a {} domU ({} MiB) {:?}",
            guest.image.kernel.display(),
            guest.mode,
            guest.image.mem_mib,
            guest.image.append
        );
    }

    let log_path = dir.join("serial.log");
    let mut log = BufWriter::new(
        fs::File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?,
    );
    let mut tracker = Tracker::new(guests.len());
    let mut dom0_ready = None;
    let mut panicked = false;
    let timeout = DOM0_OVERHEAD + (wait + GUEST_OVERHEAD) * guests.len() as u32;
    let result = qemu::watch(cmd, timeout, |at, line| {
        // The log is a diagnostic; a full disk must not abort the run.
        let _ = writeln!(log, "{} {line}", stamp(at));
        let event = event(line);
        panicked |= xen_panicked(line);
        let shown = verbose
            || panicked
            || event.is_some()
            || line.starts_with("xenctx| ")
            || line.starts_with("xl| ");
        if shown {
            println!("{} {line}", stamp(at));
        }
        if panicked && line.contains("(XEN) Reboot in five seconds") {
            return Flow::Stop;
        }
        match event {
            Some(Event::Dom0Ready) => dom0_ready = Some(at),
            Some(Event::Dom0Stopped) => return Flow::Stop,
            Some(event) => tracker.on(event),
            None => {}
        }
        Flow::Continue
    });
    let _ = log.flush();
    // The per-run initramfs is a 70 MB copy; the serial log is what is worth keeping.
    let _ = fs::remove_file(&initrd);
    let run = result?;

    let fallback = match run.outcome {
        _ if panicked => Reason::Other("xen-panic".to_owned()),
        qemu::Outcome::Timeout(_) => Reason::Timeout,
        _ => Reason::Other(format!("no end line ({})", run.outcome)),
    };
    println!(
        "xtask: xen: QEMU start -> dom0 ready {}, QEMU ran {}; serial log {}",
        dom0_ready.map_or("-".to_owned(), |at| secs(at, 1)),
        secs(run.elapsed, 1),
        log_path.display()
    );
    Ok(Session {
        domains: tracker.finish(&fallback),
        elapsed: run.elapsed,
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The trace of the first domain in `lines` of dom0 output.
    pub fn traced(lines: &[&str]) -> Trace {
        let mut tracker = Tracker::new(1);
        feed(&mut tracker, lines);
        tracker.finish(&Reason::Timeout).remove(0).trace
    }

    fn guest(mode: Mode, append: &str, ramdisk: bool) -> Guest {
        Guest {
            mode,
            vif: false,
            disk: false,
            shutdown_on: None,
            probe: None,
            image: Image {
                kernel: PathBuf::from("/k"),
                ramdisk: ramdisk.then(|| PathBuf::from("/r")),
                append: append.to_owned(),
                mem_mib: 64,
            },
        }
    }

    #[test]
    fn parses_marker_lines_even_after_interleaved_output() {
        assert_eq!(
            event("HARNESS-DOM0-READY kernel=6.1.0"),
            Some(Event::Dom0Ready)
        );
        assert_eq!(
            event("HARNESS-CREATE-BEGIN n=2 at_us=1795597438501134"),
            Some(Event::Begin {
                n: 2,
                at_us: Some(1_795_597_438_501_134)
            })
        );
        assert_eq!(
            event("HARNESS-CREATE-DONE n=1 at_us="),
            Some(Event::Built { n: 1, at_us: None })
        );
        assert_eq!(event("HARNESS-CREATE-BEGIN at_us=5"), None, "needs n");
        assert_eq!(
            event("HARNESS-DISK-SHA256 n=2 sha256=a5ef"),
            Some(Event::DiskSha256 {
                n: 2,
                sha256: "a5ef"
            })
        );
        assert_eq!(event("HARNESS-DISK-SHA256 n=2"), None, "needs the hash");
        assert_eq!(
            event("guest| hello | world"),
            Some(Event::Guest("hello | world"))
        );
        assert_eq!(
            event("probe| 3 packets transmitted, 3 received"),
            Some(Event::Probe("3 packets transmitted, 3 received"))
        );
        assert_eq!(
            event("[  9.1] xen_netback: x HARNESS-END n=3 reason=crash code=3 first_us=7 end_us="),
            Some(Event::End {
                n: Some(3),
                reason: Reason::Crash,
                first_us: Some(7),
                end_us: None
            })
        );
        assert_eq!(
            event("HARNESS-END reason=dom0-failed detail=xenstored"),
            Some(Event::End {
                n: None,
                reason: Reason::Other("dom0-failed".into()),
                first_us: None,
                end_us: None
            })
        );
        assert_eq!(event("HARNESS-END"), None, "needs the separator");
        assert_eq!(
            event("(XEN) Hardware Dom0 halted: halting machine"),
            Some(Event::Dom0Stopped)
        );
        assert_eq!(event("(XEN) d1v0 some message"), None);
        assert_eq!(event("HARNESS: note"), None);
    }

    #[test]
    fn fields_are_whole_keys() {
        assert_eq!(field::<u64>("n=1 end_us=9 first_us=", "n"), Some(1));
        assert_eq!(field::<u64>("end_us=9", "us"), None);
        assert_eq!(field::<u64>("first_us=", "first_us"), None);
    }

    fn feed(tracker: &mut Tracker, lines: &[&str]) {
        for line in lines {
            if let Some(event) = event(line) {
                tracker.on(event);
            }
        }
    }

    #[test]
    fn tracker_gives_each_domain_its_lines_stamps_and_ending() {
        let mut tracker = Tracker::new(3);
        feed(
            &mut tracker,
            &[
                "HARNESS-DOM0-READY kernel=6.1.0",
                "guest| stray line before any domain",
                "HARNESS-CREATE-BEGIN n=1 at_us=10000000",
                "guest| one",
                "HARNESS-CREATE-DONE n=1 at_us=10600000",
                "probe| ping-status 0",
                "guest| two",
                "HARNESS-DISK-SHA256 n=1 sha256=a5ef",
                "HARNESS-END n=1 reason=poweroff code=0 first_us=10500000 end_us=10700000",
                "guest| stray line between domains",
                "HARNESS-CREATE-BEGIN n=2 at_us=20000000",
                "xl| libxl: error",
                "HARNESS-END n=2 reason=create-failed code=none first_us= end_us=",
                "HARNESS-CREATE-BEGIN n=3 at_us=30000000",
                "guest| three",
            ],
        );
        let domains = tracker.finish(&Reason::Timeout);
        assert_eq!(domains.len(), 3);
        let first = &domains[0];
        assert_eq!(first.reason, Reason::Poweroff);
        assert_eq!(first.trace.console, ["one", "two"]);
        assert_eq!(first.trace.probe, ["ping-status 0"]);
        assert!(domains[1].trace.probe.is_empty());
        assert_eq!(first.trace.disk_sha256.as_deref(), Some("a5ef"));
        assert_eq!(domains[1].trace.disk_sha256, None);
        assert_eq!(first.trace.created_unix(), Some(10));
        assert_eq!(first.trace.built(), Some(Duration::from_millis(600)));
        assert_eq!(first.trace.first_output(), Some(Duration::from_millis(500)));
        assert_eq!(first.trace.end(), Some(Duration::from_millis(700)));
        assert_eq!(
            first.trace.summary(),
            "xl create -> built 0.60 s, -> first output 0.50 s, -> end 0.70 s"
        );
        assert_eq!(domains[1].reason, Reason::Other("create-failed".into()));
        assert!(domains[1].trace.console.is_empty());
        assert_eq!(domains[1].trace.end(), None);
        assert_eq!(domains[2].reason, Reason::Timeout, "never ended: fallback");
        assert_eq!(domains[2].trace.console, ["three"]);
        assert_eq!(
            domains[2].trace.summary(),
            "xl create -> built -, -> first output -, -> end -"
        );
    }

    #[test]
    fn tracker_ends_every_open_domain_when_dom0_fails() {
        let mut tracker = Tracker::new(2);
        feed(
            &mut tracker,
            &[
                "HARNESS-CREATE-BEGIN n=1 at_us=1",
                "HARNESS-END n=1 reason=crash",
                "HARNESS-END reason=dom0-failed detail=x",
                "HARNESS-END n=9 reason=poweroff",
            ],
        );
        let reasons: Vec<Reason> = tracker
            .finish(&Reason::Timeout)
            .into_iter()
            .map(|domain| domain.reason)
            .collect();
        assert_eq!(
            reasons,
            [Reason::Crash, Reason::Other("dom0-failed".into())]
        );
    }

    #[test]
    fn renders_a_minimal_pv_config() {
        let mut files = Files::default();
        assert_eq!(
            render_config(&guest(Mode::Pv, "", false), "harness-1", &mut files),
            "name = \"harness-1\"\ntype = \"pv\"\nkernel = \"/harness/files/0\"\n\
             memory = 64\nvcpus = 1\non_poweroff = \"destroy\"\non_reboot = \"destroy\"\n\
             on_crash = \"preserve\"\n"
        );
    }

    #[test]
    fn renders_ramdisk_cmdline_vif_and_disk_when_asked() {
        let mut g = guest(Mode::Pvh, r#"console=hvc0 msg="a\b""#, true);
        g.vif = true;
        g.disk = true;
        let cfg = render_config(&g, "harness-1", &mut Files::default());
        assert!(cfg.contains("type = \"pvh\"\n"));
        assert!(cfg.contains("ramdisk = \"/harness/files/1\"\n"));
        assert!(
            cfg.contains(r#"cmdline = "console=hvc0 msg=\"a\\b\"""#),
            "{cfg}"
        );
        assert!(cfg.contains("vif = [ 'bridge=xenbr0,mac=00:16:3e:00:00:02' ]\n"));
        assert!(cfg.contains("target=/var/lib/harness/disk.img' ]\n"));
    }

    #[test]
    fn packs_each_file_once_and_names_domains_in_order() {
        let hello = guest(Mode::Pvh, "x=1", false);
        let linux = guest(Mode::Pv, "console=hvc0", true);
        let mut files = Files::default();
        let configs = render_configs(&[&hello, &linux, &hello], &mut files);
        assert_eq!(files.paths, [PathBuf::from("/k"), PathBuf::from("/r")]);
        let names: Vec<&str> = configs.iter().map(|(name, ..)| name.as_str()).collect();
        assert_eq!(names, ["harness-1", "harness-2", "harness-3"]);
        assert!(configs[2].1.contains("name = \"harness-3\"\n"));
        assert!(configs[2].1.contains("kernel = \"/harness/files/0\"\n"));
    }

    #[test]
    fn params_list_the_domains_and_quote_for_the_shell() {
        let plain = guest(Mode::Pv, "", false);
        let mut disk = guest(Mode::Pv, "", false);
        disk.disk = true;
        assert_eq!(
            render_params(&[&plain], Duration::from_secs(60)),
            "NAMES='harness-1'\nWAIT_SECS=60\nDISK_IMG=''\nDISK_MIB=64\n"
        );
        assert_eq!(
            render_params(&[&plain, &disk], Duration::from_secs(45)),
            "NAMES='harness-1 harness-2'\nWAIT_SECS=45\n\
             DISK_IMG='/var/lib/harness/disk.img'\nDISK_MIB=64\n"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn one_domain_sessions_end_within_the_timeout() {
        let wait = wait_within(Duration::from_secs(600));
        assert_eq!(wait, Duration::from_secs(480));
        assert_eq!(
            DOM0_OVERHEAD + wait + GUEST_OVERHEAD,
            Duration::from_secs(600)
        );
        assert_eq!(wait_within(Duration::from_secs(60)), MIN_WAIT);
    }

    #[test]
    fn command_is_xen_multiboot_without_network() {
        let dom0 = Dom0 {
            xen: PathBuf::from("/t/xen"),
            vmlinuz: PathBuf::from("/t/vmlinuz"),
            initrd: PathBuf::from("/t/base.cpio"),
            rootfs: PathBuf::from("/t/root"),
        };
        let cmd = command(&dom0, Path::new("/t/run/initrd")).unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let pair = |flag: &str| {
            args.windows(2)
                .find(|w| w[0] == flag)
                .map(|w| w[1].clone())
                .unwrap_or_default()
        };
        assert_eq!(pair("-nic"), "none");
        assert_eq!(pair("-kernel"), "/t/xen");
        assert!(pair("-append").contains("spec-ctrl=eager-fpu"));
        assert!(pair("-append").contains("dom0_mem=512M,max:512M"));
        assert_eq!(
            pair("-initrd"),
            format!("/t/vmlinuz {DOM0_ARGS},/t/run/initrd")
        );
        assert!(command(&dom0, Path::new("/t/a,b")).is_err());
    }
}
