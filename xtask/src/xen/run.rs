//! One guest run: QEMU -> Xen -> Linux dom0 -> `xl create`, judged from the serial console.
//!
//! The host renders the xl config and packs it, the guest kernel and the dom0-side script
//! (`xtask/xen/run-guest.sh`) into a small cpio appended to dom0's initramfs (Linux unpacks
//! concatenated archives in order). dom0 reports through marker lines on its console, which
//! Xen copies to the serial line: `HARNESS-DOM0-READY`, `HARNESS-CREATE-BEGIN`,
//! `HARNESS-CREATE-DONE`, `guest| <console line>`, `HARNESS-END reason=<why>`.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::dom0::Dom0;
use super::{
    Common, Layout, Mode, Reason, XEN_ARGS, check_module_path, cpio, run_dir, stamp, xen_panicked,
};
use crate::qemu::{self, Flow, QEMU};

const RUN_SCRIPT: &str = include_str!("../../xen/run-guest.sh");
const DOMAIN_NAME: &str = "harness";
const DISK_IMAGE: &str = "/var/lib/harness/disk.img";
/// dom0: 512 MiB fixed (its ramfs root holds the guest kernel), both vCPUs.
const DOM0_XEN_ARGS: &str = "dom0_mem=512M,max:512M dom0_max_vcpus=2";
/// `swiotlb=8192`: a 16 MiB bounce buffer instead of 64 MiB boots dom0 faster under TCG;
/// `rootfstype=ramfs`: no tmpfs size cap on the initramfs root.
const DOM0_ARGS: &str = "console=hvc0 earlyprintk=xen swiotlb=8192 rootfstype=ramfs";
/// Time left for dom0 to boot and power off, out of `--timeout`.
const DOM0_OVERHEAD: Duration = Duration::from_secs(90);

/// What to run as the guest, and how it must end.
pub struct Guest {
    pub mode: Mode,
    pub vif: bool,
    pub disk: bool,
    pub common: Common,
}

/// A marker line dom0 prints (see the module doc).
#[derive(Debug, PartialEq, Eq)]
enum Event<'a> {
    Dom0Ready,
    CreateBegin,
    CreateDone,
    Guest(&'a str),
    End(Reason),
    /// Xen's own line when dom0 stops without ACPI power-off: nothing more will come.
    Dom0Stopped,
}

fn event(line: &str) -> Option<Event<'_>> {
    // Kernel messages may interleave with dom0's output, so markers are found anywhere.
    let after = |marker: &str| line.find(marker).map(|at| &line[at + marker.len()..]);
    if let Some(rest) = after("guest| ") {
        return Some(Event::Guest(rest));
    }
    if let Some(rest) = after("HARNESS-END ") {
        let reason = rest
            .split_whitespace()
            .find_map(|word| word.strip_prefix("reason="))
            .unwrap_or("unknown");
        return Some(Event::End(Reason::parse(reason)));
    }
    if line.contains("HARNESS-DOM0-READY") {
        return Some(Event::Dom0Ready);
    }
    if line.contains("HARNESS-CREATE-BEGIN") {
        return Some(Event::CreateBegin);
    }
    if line.contains("HARNESS-CREATE-DONE") {
        return Some(Event::CreateDone);
    }
    if line.contains("Hardware Dom0 ") && !line.contains("Hardware Dom0 shutdown: watchdog") {
        return Some(Event::Dom0Stopped);
    }
    None
}

/// The xl domain configuration (xl.cfg(5)). Paths are inside dom0.
fn render_config(guest: &Guest) -> String {
    let quoted = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
    let mut cfg = format!(
        "name = {}\ntype = {}\nkernel = \"/harness/kernel\"\nmemory = {}\nvcpus = 1\n",
        quoted(DOMAIN_NAME),
        quoted(&guest.mode.to_string()),
        guest.common.mem_mib
    );
    if guest.common.ramdisk.is_some() {
        cfg.push_str("ramdisk = \"/harness/ramdisk\"\n");
    }
    if !guest.common.append.is_empty() {
        // `cmdline` is xl's current name for the older `extra`.
        cfg.push_str(&format!("cmdline = {}\n", quoted(&guest.common.append)));
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
fn render_params(guest: &Guest) -> String {
    let wait = guest
        .common
        .timeout
        .saturating_sub(DOM0_OVERHEAD)
        .max(Duration::from_secs(30));
    let disk = if guest.disk { DISK_IMAGE } else { "" };
    format!(
        "NAME={}\nWAIT_SECS={}\nDISK_IMG={}\n",
        shell_quote(DOMAIN_NAME),
        wait.as_secs(),
        shell_quote(disk)
    )
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// dom0's initramfs for this run: the cached base archive, then this run's overlay.
fn write_initrd(dom0: &Dom0, guest: &Guest, out: &Path) -> Result<(), String> {
    fs::copy(&dom0.initrd, out).map_err(|e| format!("copying {}: {e}", dom0.initrd.display()))?;
    let file = fs::OpenOptions::new()
        .append(true)
        .open(out)
        .map_err(|e| format!("opening {}: {e}", out.display()))?;
    let mut overlay = cpio::Writer::new(BufWriter::with_capacity(1 << 20, file));
    let written: std::io::Result<()> = (|| {
        overlay.dir("harness", 0o755)?;
        overlay.file("harness/run.sh", 0o755, RUN_SCRIPT.as_bytes())?;
        overlay.file("harness/params", 0o644, render_params(guest).as_bytes())?;
        overlay.file("harness/guest.cfg", 0o644, render_config(guest).as_bytes())?;
        overlay.file_from("harness/kernel", 0o644, &guest.common.kernel)?;
        if let Some(ramdisk) = &guest.common.ramdisk {
            overlay.file_from("harness/ramdisk", 0o644, ramdisk)?;
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

/// When things happened, since QEMU started.
#[derive(Debug, Default)]
struct Timeline {
    dom0_ready: Option<Duration>,
    create_begin: Option<Duration>,
    create_done: Option<Duration>,
    first_output: Option<Duration>,
    end: Option<Duration>,
}

/// Boots the guest and reports; `Ok(true)` if it ended as `--ends` wants and every `--expect`
/// matched its console.
pub fn run(layout: &Layout, dom0: &Dom0, guest: &Guest) -> Result<bool, String> {
    let dir = run_dir(layout, &format!("xen-{}", guest.mode))?;
    let initrd = dir.join("dom0-initrd.cpio");
    write_initrd(dom0, guest, &initrd)?;
    fs::write(dir.join("guest.cfg"), render_config(guest))
        .map_err(|e| format!("writing guest.cfg: {e}"))?;
    let cmd = command(dom0, &initrd)?;
    println!(
        "xtask: xen: {} as a {} domU ({} MiB) under Xen + Linux dom0, run files in {}",
        guest.common.kernel.display(),
        guest.mode,
        guest.common.mem_mib,
        dir.display()
    );

    let log_path = dir.join("serial.log");
    let mut log = BufWriter::new(
        fs::File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?,
    );
    let mut times = Timeline::default();
    let mut reason = None;
    let mut console = Vec::new();
    let verbose = guest.common.verbose;
    let mut panicked = false;
    let result = qemu::watch(cmd, guest.common.timeout, |at, line| {
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
            Some(Event::Dom0Ready) => times.dom0_ready = Some(at),
            Some(Event::CreateBegin) => times.create_begin = Some(at),
            Some(Event::CreateDone) => times.create_done = Some(at),
            Some(Event::Guest(text)) => {
                times.first_output.get_or_insert(at);
                console.push(text.to_owned());
            }
            Some(Event::End(why)) => {
                times.end = Some(at);
                reason = Some(why);
            }
            Some(Event::Dom0Stopped) => return Flow::Stop,
            None => {}
        }
        Flow::Continue
    });
    let _ = log.flush();
    // The per-run initramfs is a 70 MB copy; the serial log is what is worth keeping.
    let _ = fs::remove_file(&initrd);
    let run = result?;

    let reason = reason.unwrap_or_else(|| match run.outcome {
        _ if panicked => Reason::Other("xen-panic".to_owned()),
        qemu::Outcome::Timeout(_) => Reason::Timeout,
        _ => Reason::Other(format!("no end line ({})", run.outcome)),
    });
    Ok(report(
        guest,
        &reason,
        &times,
        &console,
        run.elapsed,
        &log_path,
    ))
}

fn report(
    guest: &Guest,
    reason: &Reason,
    times: &Timeline,
    console: &[String],
    elapsed: Duration,
    log: &Path,
) -> bool {
    let since = |from: Option<Duration>, to: Option<Duration>| match (from, to) {
        (Some(from), Some(to)) => format!("{:.1} s", (to.saturating_sub(from)).as_secs_f64()),
        _ => "-".to_owned(),
    };
    println!("xtask: xen: guest console ({} lines):", console.len());
    for line in console {
        println!("  | {line}");
    }
    println!(
        "xtask: xen: timings: QEMU start -> dom0 ready {}; xl create -> domain built {}, \
         -> first guest output {}, -> end {}; QEMU ran {:.1} s",
        since(Some(Duration::ZERO), times.dom0_ready),
        since(times.create_begin, times.create_done),
        since(times.create_begin, times.first_output),
        since(times.create_begin, times.end),
        elapsed.as_secs_f64()
    );
    let mut passed = *reason == guest.common.ends;
    println!(
        "xtask: xen: domain ended: {reason} (expected {})",
        guest.common.ends
    );
    for pattern in &guest.common.expect {
        let found = console.iter().any(|line| pattern.is_match(line));
        println!(
            "xtask: xen: expect /{}/: {}",
            pattern.as_str(),
            if found { "found" } else { "NOT found" }
        );
        passed &= found;
    }
    println!("xtask: xen: serial log {}", log.display());
    println!("xtask: xen: {}", if passed { "PASS" } else { "FAIL" });
    passed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::pattern::Pattern;
    use std::path::PathBuf;

    fn guest(mode: Mode, append: &str, ramdisk: bool) -> Guest {
        Guest {
            mode,
            vif: false,
            disk: false,
            common: Common {
                kernel: PathBuf::from("/k"),
                ramdisk: ramdisk.then(|| PathBuf::from("/r")),
                append: append.to_owned(),
                mem_mib: 64,
                ends: Reason::Poweroff,
                expect: vec![Pattern::parse("x").unwrap()],
                timeout: Duration::from_secs(600),
                verbose: false,
            },
        }
    }

    #[test]
    fn parses_marker_lines_even_after_interleaved_output() {
        assert_eq!(
            event("HARNESS-DOM0-READY kernel=6.1.0"),
            Some(Event::Dom0Ready)
        );
        assert_eq!(event("HARNESS-CREATE-BEGIN"), Some(Event::CreateBegin));
        assert_eq!(
            event("HARNESS-CREATE-DONE domid=1"),
            Some(Event::CreateDone)
        );
        assert_eq!(
            event("guest| hello | world"),
            Some(Event::Guest("hello | world"))
        );
        assert_eq!(
            event("[  9.1] xen_netback: x HARNESS-END reason=crash code=3"),
            Some(Event::End(Reason::Crash))
        );
        assert_eq!(
            event("HARNESS-END reason=create-failed"),
            Some(Event::End(Reason::Other("create-failed".into())))
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
    fn renders_a_minimal_pv_config() {
        assert_eq!(
            render_config(&guest(Mode::Pv, "", false)),
            "name = \"harness\"\ntype = \"pv\"\nkernel = \"/harness/kernel\"\nmemory = 64\n\
             vcpus = 1\non_poweroff = \"destroy\"\non_reboot = \"destroy\"\n\
             on_crash = \"preserve\"\n"
        );
    }

    #[test]
    fn renders_ramdisk_cmdline_vif_and_disk_when_asked() {
        let mut g = guest(Mode::Pvh, r#"console=hvc0 msg="a\b""#, true);
        g.vif = true;
        g.disk = true;
        let cfg = render_config(&g);
        assert!(cfg.contains("type = \"pvh\"\n"));
        assert!(cfg.contains("ramdisk = \"/harness/ramdisk\"\n"));
        assert!(
            cfg.contains(r#"cmdline = "console=hvc0 msg=\"a\\b\"""#),
            "{cfg}"
        );
        assert!(cfg.contains("vif = [ 'bridge=xenbr0,mac=00:16:3e:00:00:02' ]\n"));
        assert!(cfg.contains("target=/var/lib/harness/disk.img' ]\n"));
    }

    #[test]
    fn params_leave_dom0_time_and_quote_for_the_shell() {
        let mut g = guest(Mode::Pv, "", false);
        assert_eq!(
            render_params(&g),
            "NAME='harness'\nWAIT_SECS=510\nDISK_IMG=''\n"
        );
        g.disk = true;
        g.common.timeout = Duration::from_secs(60);
        assert_eq!(
            render_params(&g),
            "NAME='harness'\nWAIT_SECS=30\nDISK_IMG='/var/lib/harness/disk.img'\n"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
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
