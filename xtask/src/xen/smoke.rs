//! `xen-smoke`: the kernel as Xen's PV dom0, with no Linux anywhere.
//!
//! Xen builds dom0 from the first multiboot module (`-initrd '<kernel> <cmdline>[,<ramdisk>]'`)
//! and prints dom0's `HYPERVISOR_console_io` writes on its serial console. When dom0 shuts
//! down, Xen says so (`hwdom_shutdown()` in xen/common/shutdown.c): "Hardware Dom0 halted"
//! for a power-off (then it halts the CPUs, QEMU keeps running), "crashed" for a crash,
//! "shutdown: rebooting" for a reboot. xtask stops QEMU at that line. A dom0 that powers off
//! through ACPI (Linux does) makes Xen enter S5 instead, and QEMU exits with status 0.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{Common, Layout, Reason, XEN_ARGS, check_module_path, xen_panicked};
use crate::harness::{run_dir, stamp};
use crate::qemu::{self, Flow, QEMU};

/// How Xen's serial line says dom0 ended, or `None` for any other line.
fn dom0_end(line: &str) -> Option<Reason> {
    let rest = &line[line.find("Hardware Dom0 ")? + "Hardware Dom0 ".len()..];
    Some(if rest.starts_with("halted") {
        Reason::Poweroff
    } else if rest.starts_with("crashed") {
        Reason::Crash
    } else if rest.starts_with("shutdown: rebooting") {
        Reason::Reboot
    } else if rest.starts_with("shutdown: watchdog") {
        Reason::Other("watchdog".to_owned())
    } else {
        Reason::Other(format!("dom0 shutdown ({})", rest.trim()))
    })
}

fn command(xen: &Path, common: &Common) -> Result<Command, String> {
    let mut modules = check_module_path(&common.image.kernel)?.to_owned();
    if !common.image.append.is_empty() {
        modules.push(' ');
        // QEMU's option parser reads ",," as a literal comma inside -initrd.
        modules.push_str(&common.image.append.replace(',', ",,"));
    }
    if let Some(ramdisk) = &common.image.ramdisk {
        modules.push(',');
        modules.push_str(check_module_path(ramdisk)?);
    }
    let mem = common.image.mem_mib;
    let mut cmd = Command::new(QEMU);
    cmd.args([
        "-machine", "pc", "-accel", "tcg", "-cpu", "max", "-smp", "1",
    ]);
    cmd.args(["-m", &(mem + 256).max(512).to_string()]);
    cmd.args([
        "-nic", "none", "-display", "none", "-monitor", "none", "-serial", "stdio",
    ]);
    cmd.arg("-no-reboot");
    cmd.arg("-kernel").arg(xen);
    cmd.args([
        "-append",
        &format!("{XEN_ARGS} dom0_mem={mem}M,max:{mem}M dom0_max_vcpus=1"),
    ]);
    cmd.args(["-initrd", &modules]);
    Ok(cmd)
}

/// Boots the kernel as dom0; `Ok(true)` if it ended as `--ends` wants and every `--expect`
/// matched a serial line.
pub fn run(layout: &Layout, xen: &Path, common: &Common) -> Result<bool, String> {
    let dir = run_dir(&layout.runs, "smoke")?;
    let log_path = dir.join("serial.log");
    let mut log = BufWriter::new(
        fs::File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?,
    );
    println!(
        "xtask: xen-smoke: {} as Xen's PV dom0 ({} MiB), run files in {}",
        common.image.kernel.display(),
        common.image.mem_mib,
        dir.display()
    );
    let mut end = None;
    let mut panicked = false;
    let mut matched: Vec<Option<Duration>> = vec![None; common.expect.len()];
    let result = qemu::watch(command(xen, common)?, common.timeout, |at, line| {
        let _ = writeln!(log, "{} {line}", stamp(at));
        // Without -v: dom0's own output and what Xen says about dom0.
        let about_dom0 = !line.starts_with("(XEN)")
            || ["d0", "Dom0", "crash", "Panic", "FATAL"]
                .iter()
                .any(|word| line.contains(word));
        panicked |= xen_panicked(line);
        if common.verbose || about_dom0 || panicked {
            println!("{} {line}", stamp(at));
        }
        for (pattern, seen) in common.expect.iter().zip(&mut matched) {
            if seen.is_none() && pattern.is_match(line) {
                *seen = Some(at);
            }
        }
        if panicked && line.contains("(XEN) Reboot in five seconds") {
            return Flow::Stop;
        }
        match dom0_end(line) {
            Some(reason) => {
                end = Some((reason, at));
                Flow::Stop
            }
            None => Flow::Continue,
        }
    });
    let _ = log.flush();
    let run = result?;
    let (reason, ended_at) = match end {
        Some((reason, at)) => (reason, Some(at)),
        None if panicked => (Reason::Other("xen-panic".to_owned()), None),
        None => match run.outcome {
            qemu::Outcome::Timeout(_) => (Reason::Timeout, None),
            // A dom0 with ACPI (Linux) powers off through Xen's S5 entry: QEMU exits with 0.
            _ if run.status == Some(0) => (Reason::Poweroff, None),
            // Xen itself rebooted (a panic, with -no-reboot) or QEMU failed.
            ref other => (
                Reason::Other(format!("Xen ended without a dom0 verdict ({other})")),
                None,
            ),
        },
    };
    let mut passed = reason == common.ends;
    println!(
        "xtask: xen-smoke: dom0 ended: {reason} (expected {}){}; QEMU ran {:.1} s",
        common.ends,
        ended_at.map_or(String::new(), |at| format!(" at {:.1} s", at.as_secs_f64())),
        run.elapsed.as_secs_f64()
    );
    for (pattern, seen) in common.expect.iter().zip(&matched) {
        match seen {
            Some(at) => println!(
                "xtask: xen-smoke: expect /{}/: found at {:.1} s",
                pattern.as_str(),
                at.as_secs_f64()
            ),
            None => println!("xtask: xen-smoke: expect /{}/: NOT found", pattern.as_str()),
        }
        passed &= seen.is_some();
    }
    println!("xtask: xen-smoke: serial log {}", log_path.display());
    println!("xtask: xen-smoke: {}", if passed { "PASS" } else { "FAIL" });
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::Image;
    use std::path::PathBuf;

    #[test]
    fn reads_how_xen_says_dom0_ended() {
        let end = |line| dom0_end(line);
        assert_eq!(
            end("(XEN) Hardware Dom0 halted: halting machine"),
            Some(Reason::Poweroff)
        );
        assert_eq!(
            end("(XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds."),
            Some(Reason::Crash)
        );
        assert_eq!(
            end("(XEN) Hardware Dom0 shutdown: rebooting machine"),
            Some(Reason::Reboot)
        );
        assert_eq!(
            end("(XEN) Hardware Dom0 shutdown: watchdog rebooting machine"),
            Some(Reason::Other("watchdog".into()))
        );
        assert_eq!(end("(XEN) Dom0 has maximum 1 VCPUs"), None);
        assert_eq!(end("ringbolt: exit status 0"), None);
    }

    #[test]
    fn command_puts_kernel_cmdline_and_ramdisk_in_the_module_list() {
        let common = Common {
            image: Image {
                kernel: PathBuf::from("/t/k"),
                ramdisk: Some(PathBuf::from("/t/r")),
                append: "console=hvc0 a=1,2".into(),
                mem_mib: 64,
            },
            ends: Reason::Poweroff,
            expect: Vec::new(),
            timeout: Duration::from_secs(1),
            verbose: false,
        };
        let cmd = command(Path::new("/t/xen"), &common).unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = args.iter().position(|a| a == "-initrd").unwrap();
        assert_eq!(args[at + 1], "/t/k console=hvc0 a=1,,2,/t/r");
        let append = &args[args.iter().position(|a| a == "-append").unwrap() + 1];
        assert!(append.contains("dom0_mem=64M,max:64M"));
        assert!(append.contains("spec-ctrl=eager-fpu"));
        assert!(args.windows(2).any(|w| w == ["-nic", "none"]));
    }
}
