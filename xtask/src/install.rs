//! First-run setup: the bare-metal Rust target and QEMU, installed only when missing.
//!
//! QEMU comes from bookworm-backports: Debian 12's own QEMU is 7.2, while Ringbolt's boot paths
//! (PVH on pc and microvm) are developed and tested on QEMU 10. Every privileged step is printed
//! before it runs.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::TARGET;
use crate::qemu::QEMU;

const SOURCES_DIR: &str = "/etc/apt/sources.list.d";
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/backports.list";
const BACKPORTS_LINE: &str = "deb http://deb.debian.org/debian bookworm-backports main\n";
const BACKPORTS: &str = "bookworm-backports";

/// Adds the `x86_64-unknown-none` target through rustup unless it is installed.
pub fn ensure_target() -> Result<(), String> {
    let list = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to add the {TARGET} target: {e}"))?;
    if target_installed(&String::from_utf8_lossy(&list.stdout)) {
        return Ok(());
    }
    run_step(Command::new("rustup").args(["target", "add", TARGET]))
}

/// Installs QEMU from bookworm-backports unless `qemu-system-x86_64` already runs.
pub fn ensure_qemu() -> Result<(), String> {
    let found = Command::new(QEMU).arg("--version").output();
    if found.is_ok_and(|out| out.status.success()) {
        return Ok(());
    }
    eprintln!("xtask: {QEMU} not found; installing QEMU from {BACKPORTS}");
    install_qemu()
}

/// Like [`ensure_qemu`], and installs QEMU from bookworm-backports too when the QEMU found has
/// no `device` (Debian 12's own QEMU 7.2 lacks `hv-balloon`, for one).
pub fn ensure_qemu_device(device: &str) -> Result<(), String> {
    ensure_qemu()?;
    let has_device = || {
        Command::new(QEMU)
            .args(["-device", "help"])
            .output()
            .is_ok_and(|out| lists_device(&String::from_utf8_lossy(&out.stdout), device))
    };
    if has_device() {
        return Ok(());
    }
    eprintln!("xtask: {QEMU} has no {device} device; installing QEMU from {BACKPORTS}");
    install_qemu()?;
    if has_device() {
        Ok(())
    } else {
        Err(format!(
            "{QEMU} has no {device} device even after the install"
        ))
    }
}

/// Whether `qemu -device help` output names `device` (lines like `name "hv-balloon", bus vmbus`).
fn lists_device(help: &str, device: &str) -> bool {
    let name = format!("name \"{device}\"");
    help.lines()
        .any(|line| line.trim_start().starts_with(&name))
}

/// QEMU from bookworm-backports, enabling the suite first if apt does not know it.
fn install_qemu() -> Result<(), String> {
    if !backports_configured(Path::new(SOURCES_DIR)) {
        eprintln!("xtask: writing {BACKPORTS_LIST}");
        let mut tee = as_root("tee", &[BACKPORTS_LIST])?;
        let mut child = tee
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("running tee: {e}"))?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(BACKPORTS_LINE.as_bytes())
            .map_err(|e| format!("writing {BACKPORTS_LIST}: {e}"))?;
        let status = child.wait().map_err(|e| format!("running tee: {e}"))?;
        if !status.success() {
            return Err(format!("writing {BACKPORTS_LIST} failed ({status})"));
        }
    }
    run_step(&mut as_root("apt-get", &["update"])?)?;
    run_step(&mut as_root(
        "apt-get",
        &["install", "-y", "-t", BACKPORTS, "qemu-system-x86"],
    )?)
}

/// Installs the Debian packages that provide `tools` (`(program, package)` pairs) unless every
/// program is already on the PATH.
pub fn ensure_tools(tools: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|&(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run_step(&mut as_root("apt-get", &["update"])?)?;
    let mut args = vec!["install", "-y"];
    args.extend(missing);
    run_step(&mut as_root("apt-get", &args)?)
}

/// Whether `program` is an executable file in one of the PATH's directories.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether `rustup target list --installed` output names the kernel target.
fn target_installed(list: &str) -> bool {
    list.lines().any(|line| line.trim() == TARGET)
}

/// Whether any apt source file apt would read (`*.list`, `*.sources`) in `dir` enables backports.
fn backports_configured(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        let read_by_apt = path
            .extension()
            .is_some_and(|ext| ext == "list" || ext == "sources");
        read_by_apt && fs::read_to_string(&path).is_ok_and(|text| mentions_backports(&text))
    })
}

/// Whether a one-line-style or deb822 source file names the backports suite outside comments.
fn mentions_backports(text: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .filter(|line| !line.starts_with('#'))
        .any(|line| line.split_whitespace().any(|word| word == BACKPORTS))
}

/// `program args`, through sudo unless we are root.
pub fn as_root(program: &str, args: &[&str]) -> Result<Command, String> {
    if effective_uid() == Some(0) {
        let mut cmd = Command::new(program);
        cmd.args(args);
        return Ok(cmd);
    }
    let sudo = Command::new("sudo")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !sudo.is_ok_and(|status| status.success()) {
        return Err(format!("{program} needs root, and sudo is not available"));
    }
    let mut cmd = Command::new("sudo");
    cmd.arg(program).args(args);
    Ok(cmd)
}

/// The effective uid, from /proc so that no libc binding (and no unsafe) is needed.
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_uid(&status)
}

/// The second field of the `Uid:` line (real, effective, saved, filesystem).
fn parse_effective_uid(status: &str) -> Option<u32> {
    let uids = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// Prints and runs one setup command, failing if it does.
pub fn run_step(cmd: &mut Command) -> Result<(), String> {
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("xtask: running: {shown}");
    let status = cmd.status().map_err(|e| format!("running {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_target_among_installed_ones() {
        assert!(target_installed(
            "x86_64-unknown-linux-gnu\nx86_64-unknown-none\n"
        ));
        assert!(!target_installed("x86_64-unknown-linux-gnu\n"));
        assert!(!target_installed("x86_64-unknown-none-softfloat\n"));
        assert!(!target_installed(""));
    }

    #[test]
    fn recognises_backports_in_both_source_formats() {
        assert!(mentions_backports(
            "deb http://deb.debian.org/debian bookworm-backports main\n"
        ));
        assert!(mentions_backports(
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-backports\n"
        ));
    }

    #[test]
    fn ignores_commented_and_other_suites() {
        assert!(!mentions_backports(
            "# deb http://deb.debian.org/debian bookworm-backports main\n"
        ));
        assert!(!mentions_backports("Suites: bookworm bookworm-updates\n"));
        assert!(!mentions_backports(
            "deb http://deb.debian.org/debian trixie-backports main\n"
        ));
    }

    #[test]
    fn backports_configured_reads_only_files_apt_reads() {
        let dir = std::env::temp_dir().join(format!("xtask-sources-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(!backports_configured(&dir), "empty directory");
        fs::write(dir.join("debian.sources"), "Suites: bookworm\n").unwrap();
        fs::write(dir.join("old.list.disabled"), BACKPORTS_LINE).unwrap();
        assert!(!backports_configured(&dir), "disabled file is ignored");
        fs::write(dir.join("backports.list"), BACKPORTS_LINE).unwrap();
        assert!(backports_configured(&dir));
        fs::remove_dir_all(&dir).unwrap();
        assert!(!backports_configured(&dir), "missing directory");
    }

    #[test]
    fn finds_devices_by_exact_name() {
        let help = "Misc devices:\nname \"hv-balloon\", bus vmbus, desc \"Hyper-V Dynamic Memory\"\n\
                    name \"isa-debug-exit\", bus ISA\n";
        assert!(lists_device(help, "hv-balloon"));
        assert!(lists_device(help, "isa-debug-exit"));
        assert!(!lists_device(help, "hv"));
        assert!(!lists_device(help, "vmbus-bridge"));
    }

    #[test]
    fn parses_effective_uid_not_real_uid() {
        let status = "Name:\txtask\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\txtask\n"), None);
        assert_eq!(parse_effective_uid("Uid:\t1000\n"), None);
    }
}
