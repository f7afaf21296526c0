//! Debian packages for the harnesses, fetched with the host's apt without changing the host.
//!
//! apt resolves the dependency closure against an empty dpkg status file (as if nothing were
//! installed), so the closure is complete whatever the host has; `apt-get download` then
//! fetches exactly those versions into our cache. No package is installed, no lock is taken,
//! no maintainer script runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::install;

/// The kernel flavour Xen's dom0 (and the Linux test guest) and the Hyper-V harness's L1 run.
const KERNEL_PREFIX: &str = "linux-image-6.1.0-";
const KERNEL_SUFFIX: &str = "-amd64";

/// One package version apt chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deb {
    pub name: String,
    pub version: String,
    pub arch: String,
}

impl Deb {
    /// The file name apt gives the downloaded archive (`:` of an epoch is URL-escaped).
    pub fn file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }
}

/// apt options that resolve as if nothing were installed, with state under `state_dir`.
fn apt_get(state_dir: &Path) -> Result<Command, String> {
    fs::create_dir_all(state_dir).map_err(|e| format!("creating {}: {e}", state_dir.display()))?;
    let status = state_dir.join("status");
    fs::write(&status, "").map_err(|e| format!("writing {}: {e}", status.display()))?;
    let mut cmd = Command::new("apt-get");
    cmd.arg("-o")
        .arg(format!("Dir::State::status={}", status.display()))
        .arg("-o")
        .arg(format!(
            "Dir::State::extended_states={}",
            state_dir.join("extended_states").display()
        ))
        .args([
            "-o",
            "APT::Install-Recommends=0",
            "-o",
            "APT::Install-Suggests=0",
        ])
        .args(["-o", "Debug::NoLocking=1", "-q"]);
    Ok(cmd)
}

/// Makes sure apt has package lists (a fresh container has none).
pub fn ensure_lists() -> Result<(), String> {
    let probe = Command::new("apt-cache")
        .args(["show", "busybox-static"])
        .output()
        .map_err(|e| format!("running apt-cache (the harnesses need apt): {e}"))?;
    if probe.status.success() {
        return Ok(());
    }
    eprintln!("xtask: no apt package lists yet: running apt-get update");
    install::run_step(&mut install::as_root("apt-get", &["update"])?)
}

/// The newest `linux-image-6.1.0-N-amd64` apt knows (highest N).
pub fn newest_kernel() -> Result<String, String> {
    let out = Command::new("apt-cache")
        .args(["pkgnames", KERNEL_PREFIX])
        .output()
        .map_err(|e| format!("running apt-cache pkgnames: {e}"))?;
    newest_kernel_in(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| format!("apt knows no {KERNEL_PREFIX}N{KERNEL_SUFFIX} package"))
}

fn newest_kernel_in(pkgnames: &str) -> Option<String> {
    pkgnames
        .lines()
        .filter_map(|name| {
            let abi = name
                .trim()
                .strip_prefix(KERNEL_PREFIX)?
                .strip_suffix(KERNEL_SUFFIX)?;
            Some((abi.parse::<u32>().ok()?, name.trim()))
        })
        .max()
        .map(|(_, name)| name.to_owned())
}

/// The dependency closure of `packages`, as apt would install it on an empty system.
pub fn closure(state_dir: &Path, packages: &[&str]) -> Result<Vec<Deb>, String> {
    let out = apt_get(state_dir)?
        .args(["-s", "install"])
        .args(packages)
        .output()
        .map_err(|e| format!("running apt-get: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "apt cannot resolve {}:\n{}{}",
            packages.join(" "),
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let debs = parse_simulation(&text);
    if debs.is_empty() {
        return Err(format!("apt-get -s install chose no packages:\n{text}"));
    }
    Ok(debs)
}

/// The `Inst` lines of `apt-get -s install`, e.g.
/// `Inst libc6 (2.36-9+deb12u10 Debian:12.11/stable [amd64])` or, for a package apt would
/// upgrade, `Inst bash [5.2.15-2] (5.2.15-2+b2 Debian:12.11/stable [amd64])`.
fn parse_simulation(text: &str) -> Vec<Deb> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            let (_, rest) = rest.split_once('(')?;
            let (inside, _) = rest.split_once(')')?;
            let version = inside.split_whitespace().next()?;
            let arch = inside.rsplit_once('[')?.1.split_once(']')?.0;
            Some(Deb {
                name: name.to_owned(),
                version: version.to_owned(),
                arch: arch.to_owned(),
            })
        })
        .collect()
}

/// Downloads whichever of `debs` are not in `cache` yet; returns every archive's path.
pub fn download(state_dir: &Path, cache: &Path, debs: &[Deb]) -> Result<Vec<PathBuf>, String> {
    fs::create_dir_all(cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    let missing: Vec<String> = debs
        .iter()
        .filter(|deb| !cache.join(deb.file_name()).is_file())
        .map(|deb| format!("{}={}", deb.name, deb.version))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "xtask: downloading {} Debian packages into {}",
            missing.len(),
            cache.display()
        );
        let out = apt_get(state_dir)?
            .arg("download")
            .args(&missing)
            .current_dir(cache)
            .output()
            .map_err(|e| format!("running apt-get download: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "apt-get download failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    debs.iter()
        .map(|deb| {
            let path = cache.join(deb.file_name());
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("apt-get download did not leave {}", path.display()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_install_lines_and_ignores_the_rest() {
        let text = "\
NOTE: This is only a simulation!
Reading package lists...
Inst gcc-12-base (12.2.0-14+deb12u1 Debian:12.11/stable [amd64])
Inst libc6 (2.36-9+deb12u10 Debian:12.11/stable, Debian-Security:12/stable-security [amd64])
Inst bash [5.2.15-2] (5.2.15-2+b2 Debian:12.11/stable [amd64])
Inst tzdata (2025b-0+deb12u1 Debian:12.11/stable [all])
Inst python3 (3.11.2-1+b1 Debian:12.11/stable [amd64]) []
Conf libc6 (2.36-9+deb12u10 Debian:12.11/stable [amd64])
";
        let debs = parse_simulation(text);
        let names: Vec<(&str, &str, &str)> = debs
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str(), d.arch.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("gcc-12-base", "12.2.0-14+deb12u1", "amd64"),
                ("libc6", "2.36-9+deb12u10", "amd64"),
                ("bash", "5.2.15-2+b2", "amd64"),
                ("tzdata", "2025b-0+deb12u1", "all"),
                ("python3", "3.11.2-1+b1", "amd64"),
            ]
        );
    }

    #[test]
    fn file_name_escapes_the_epoch() {
        let deb = Deb {
            name: "xen-utils-4.17".into(),
            version: "1:4.17.5+23-ga4e5191dc0-1".into(),
            arch: "amd64".into(),
        };
        assert_eq!(
            deb.file_name(),
            "xen-utils-4.17_1%3a4.17.5+23-ga4e5191dc0-1_amd64.deb"
        );
    }

    #[test]
    fn picks_the_highest_kernel_abi_not_the_last_listed() {
        let names = "linux-image-6.1.0-9-amd64\nlinux-image-6.1.0-56-amd64\n\
                     linux-image-6.1.0-7-amd64\nlinux-image-6.1.0-56-amd64-dbg\n\
                     linux-image-6.1.0-60-cloud-amd64\nlinux-image-6.1.0-56-amd64-unsigned\n";
        assert_eq!(
            newest_kernel_in(names).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(newest_kernel_in("linux-image-6.1.0-rt-amd64\n"), None);
        assert_eq!(newest_kernel_in(""), None);
    }
}
