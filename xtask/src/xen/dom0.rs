//! The harness dom0: Xen itself, a Debian Linux 6.1 kernel, and an initramfs root filesystem
//! with the Xen toolstack, all from Debian packages.
//!
//! Packages are unpacked with `dpkg-deb` (no chroot, no maintainer scripts) into a merged-/usr
//! tree, then trimmed to what a test dom0 runs. The initramfs is an uncompressed cpio: under
//! TCG, dom0 copies 70 MB faster than it gunzips 25 MB. A stamp of package versions, scripts
//! and module list decides whether anything needs rebuilding.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::BufWriter;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Layout;
use crate::debian::{apt, cpio, merged_usr_tree, module_closure, run, unpack, unpack_kernel};

/// Unpacked into dom0's root file system, with their dependency closures.
const ROOTFS_PACKAGES: &[&str] = &[
    "xen-utils-4.17",
    "xen-utils-common",
    "xenstore-utils",
    "busybox-static",
    "iproute2",
    "bash",
    "coreutils",
    "util-linux",
    "mount",
    "kmod",
    "procps",
    "iputils-ping",
    "curl",
    "wrk",
    // /etc/services: wrk resolves the URL's scheme to a port through it.
    "netbase",
    "sed",
    "grep",
    "gawk",
    "findutils",
];
const HYPERVISOR_PACKAGE: &str = "xen-hypervisor-4.17-amd64";
/// Kernel modules dom0's /init loads; their dependencies come along.
const MODULES: &[&str] = &[
    "xen-evtchn",
    "xen-gntdev",
    "xen-gntalloc",
    "xen-privcmd",
    "xenfs",
    "xen-netback",
    "xen-blkback",
    "bridge",
    "loop",
];
/// Paths (below the root) nothing in a test dom0 reads.
const PRUNED: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/i18n",
    "usr/share/lintian",
    "usr/share/bug",
    "usr/share/zoneinfo",
    "usr/share/common-licenses",
    "usr/share/bash-completion",
    "usr/share/zsh",
    "usr/lib/x86_64-linux-gnu/gconv",
    "usr/lib/xen-4.17/boot",
    "usr/lib/xen-4.17/bin/pygrub",
    "usr/lib/systemd",
    "usr/lib/udev",
    "etc/init.d",
];
const DOM0_INIT: &str = include_str!("../../xen/dom0-init.sh");
/// Changes whenever this file's idea of the rootfs changes without a package or script change.
const LAYOUT_VERSION: u32 = 2;

/// The boot products, all under [`Layout::root`].
#[derive(Debug)]
pub struct Dom0 {
    /// Xen as a multiboot ELF (`qemu -kernel`).
    pub xen: PathBuf,
    /// dom0's kernel (a bzImage; also the test guest's kernel).
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    /// dom0's unpacked root, reused by the test guest for busybox.
    pub rootfs: PathBuf,
}

/// Builds (or reuses) Xen, dom0's kernel and dom0's initramfs.
pub fn build(layout: &Layout) -> Result<Dom0, String> {
    let dom0 = Dom0 {
        xen: layout.root.join("xen"),
        vmlinuz: layout.root.join("dom0-vmlinuz"),
        initrd: layout.root.join("dom0-initrd.cpio"),
        rootfs: layout.root.join("dom0-rootfs"),
    };
    apt::ensure_lists()?;
    let kernel_package = apt::newest_kernel()?;
    let kernel_version = kernel_package
        .strip_prefix("linux-image-")
        .expect("newest_kernel returns linux-image-*")
        .to_owned();
    let state = layout.root.join("apt");
    let rootfs_debs: Vec<apt::Deb> = apt::closure(&state, ROOTFS_PACKAGES)?
        .into_iter()
        .filter(|deb| !skipped(&deb.name))
        .collect();
    // Only the two packages themselves: their dependencies (initramfs-tools, ...) are for an
    // installed system, not for booting the files inside.
    let boot = [kernel_package.as_str(), HYPERVISOR_PACKAGE];
    let boot_debs: Vec<apt::Deb> = apt::closure(&state, &boot)?
        .into_iter()
        .filter(|deb| boot.contains(&deb.name.as_str()))
        .collect();
    if boot_debs.len() != 2 {
        return Err(format!("apt did not resolve both of {boot:?}"));
    }

    let stamp = stamp_text(&rootfs_debs, &boot_debs);
    let stamp_path = layout.root.join("dom0.stamp");
    let outputs = [&dom0.xen, &dom0.vmlinuz, &dom0.initrd];
    if fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp)
        && outputs.iter().all(|path| path.is_file())
    {
        return Ok(dom0);
    }
    eprintln!("xtask: building the Xen dom0 in {}", layout.root.display());
    let _ = fs::remove_file(&stamp_path);
    let rootfs_files = apt::download(&state, &layout.debs, &rootfs_debs)?;
    let boot_files = apt::download(&state, &layout.debs, &boot_debs)?;
    let file_of = |name: &str| {
        boot_debs
            .iter()
            .zip(&boot_files)
            .find(|(deb, _)| deb.name == name)
            .map(|(_, file)| file.clone())
            .expect("both boot packages are present")
    };

    extract_xen(&file_of(HYPERVISOR_PACKAGE), &layout.root, &dom0.xen)?;
    let kernel_root = unpack_kernel(&file_of(&kernel_package), &layout.root, &kernel_version)?;
    copy(
        &kernel_root.join(format!("boot/vmlinuz-{kernel_version}")),
        &dom0.vmlinuz,
    )?;
    assemble_rootfs(&dom0.rootfs, &rootfs_files, &kernel_root, &kernel_version)?;
    write_cpio(&dom0.rootfs, &dom0.initrd)?;
    fs::write(&stamp_path, stamp).map_err(|e| format!("writing {}: {e}", stamp_path.display()))?;
    Ok(dom0)
}

/// Packages in the closure that a dom0 which never runs maintainer scripts does not need.
fn skipped(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "perl-base",
        "usrmerge",
        "udev",
        "media-types",
        "debconf",
        "dpkg",
        "ucf",
    ];
    const PREFIXES: &[&str] = &["perl", "libperl", "python3", "libpython3"];
    EXACT.contains(&name)
        || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        || name.starts_with("lib") && name.ends_with("-perl")
}

fn stamp_text(rootfs: &[apt::Deb], boot: &[apt::Deb]) -> String {
    let mut hasher = DefaultHasher::new();
    (DOM0_INIT, MODULES, ROOTFS_PACKAGES, PRUNED, LAYOUT_VERSION).hash(&mut hasher);
    let mut text = format!("scripts {:016x}\n", hasher.finish());
    for deb in rootfs.iter().chain(boot) {
        text.push_str(&deb.file_name());
        text.push('\n');
    }
    text
}

fn extract_xen(deb: &Path, work: &Path, out: &Path) -> Result<(), String> {
    let tmp = work.join("hypervisor");
    merged_usr_tree(&tmp)?;
    unpack(deb, &tmp)?;
    let gz = fs::read_dir(tmp.join("boot"))
        .map_err(|e| format!("{deb:?} has no /boot: {e}"))?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with("-amd64.gz"))
        .ok_or_else(|| format!("no xen-*-amd64.gz in {}", deb.display()))?;
    let plain = Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .output()
        .map_err(|e| format!("running gzip: {e}"))?;
    if !plain.status.success() {
        return Err(format!("gunzip {} failed", gz.display()));
    }
    fs::write(out, plain.stdout).map_err(|e| format!("writing {}: {e}", out.display()))?;
    fs::remove_dir_all(&tmp).map_err(|e| format!("removing {}: {e}", tmp.display()))
}

fn assemble_rootfs(
    root: &Path,
    debs: &[PathBuf],
    kernel_root: &Path,
    kernel_version: &str,
) -> Result<(), String> {
    merged_usr_tree(root)?;
    for deb in debs {
        unpack(deb, root)?;
    }
    for path in PRUNED {
        let path = root.join(path);
        let removed = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(_) => continue,
        };
        removed.map_err(|e| format!("removing {}: {e}", path.display()))?;
    }
    install_modules(root, kernel_root, kernel_version)?;
    busybox_applets(root)?;

    for dir in [
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "root",
        "harness",
        "var/log/xen/console",
    ] {
        let dir = root.join(dir);
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let files: [(&str, String); 6] = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n".into()),
        ("etc/group", "root:x:0:\n".into()),
        ("etc/hostname", "dom0\n".into()),
        ("etc/hosts", "127.0.0.1 localhost\n".into()),
        (
            "etc/xen/xl.conf",
            xl_conf(&read(&root.join("etc/xen/xl.conf"))?),
        ),
        ("init", DOM0_INIT.into()),
    ];
    for (path, text) in files {
        fs::write(root.join(path), text).map_err(|e| format!("writing {path}: {e}"))?;
    }
    set_mode(&root.join("init"), 0o755)?;
    // base-files ships /var/run and /var/lock as directories; libxl's locks live under
    // /var/run/xen and must be the /run that /init mounts.
    for (link, target) in [("var/run", "/run"), ("var/lock", "/run/lock")] {
        let link = root.join(link);
        let _ = fs::remove_dir_all(&link);
        symlink(target, &link).map_err(|e| format!("linking {}: {e}", link.display()))?;
    }
    // Maintainer scripts would have made these alternatives.
    let awk = root.join("usr/bin/awk");
    if !awk.exists() {
        symlink("gawk", &awk).map_err(|e| format!("linking awk: {e}"))?;
    }
    run(Command::new("ldconfig").arg("-r").arg(root))
}

/// xl.conf with autoballooning off: dom0 has its fixed `dom0_mem` and must not shrink.
fn xl_conf(original: &str) -> String {
    let mut text: String = original
        .lines()
        .filter(|line| {
            !line
                .trim_start_matches('#')
                .trim_start()
                .starts_with("autoballoon")
        })
        .map(|line| format!("{line}\n"))
        .collect();
    text.push_str("autoballoon=\"off\"\n");
    text
}

/// Copies [`MODULES`] and their dependencies from the kernel package and runs depmod.
fn install_modules(root: &Path, kernel_root: &Path, version: &str) -> Result<(), String> {
    let src = kernel_root.join("lib/modules").join(version);
    let dest = root.join("lib/modules").join(version);
    let deps = read(&src.join("modules.dep"))?;
    let builtin = read(&src.join("modules.builtin"))?;
    for file in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        fs::create_dir_all(&dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
        copy(&src.join(file), &dest.join(file))?;
    }
    for module in module_closure(&deps, &builtin, MODULES)? {
        let to = dest.join(&module);
        fs::create_dir_all(to.parent().expect("module paths have directories"))
            .map_err(|e| format!("creating the directory of {module}: {e}"))?;
        copy(&src.join(&module), &to)?;
    }
    run(Command::new("depmod").arg("-b").arg(root).arg(version))
}

/// Links every busybox applet that no Debian package provides into /usr/local/bin.
fn busybox_applets(root: &Path) -> Result<(), String> {
    let busybox = root.join("usr/bin/busybox");
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(|e| format!("running {}: {e}", busybox.display()))?;
    let local = root.join("usr/local/bin");
    fs::create_dir_all(&local).map_err(|e| format!("creating {}: {e}", local.display()))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let provided = ["usr/bin", "usr/sbin"]
            .iter()
            .any(|dir| root.join(dir).join(applet).exists());
        if !provided {
            symlink("/usr/bin/busybox", local.join(applet))
                .map_err(|e| format!("linking busybox applet {applet}: {e}"))?;
        }
    }
    Ok(())
}

/// Writes `root` as a newc archive at `out` (through a temporary file, so a failed build
/// never leaves a truncated initramfs behind).
pub fn write_cpio(root: &Path, out: &Path) -> Result<(), String> {
    let tmp = out.with_extension("tmp");
    let file = fs::File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let mut writer = cpio::Writer::new(BufWriter::with_capacity(1 << 20, file));
    writer
        .tree(root)
        .and_then(|()| writer.finish().map(drop))
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    fs::rename(&tmp, out).map_err(|e| format!("renaming {}: {e}", tmp.display()))
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_interpreters_and_packaging_tools_only() {
        for name in [
            "perl-base",
            "perl-modules-5.36",
            "libperl5.36",
            "liblocale-gettext-perl",
            "python3.11-minimal",
            "libpython3.11-stdlib",
            "udev",
            "dpkg",
            "debconf",
        ] {
            assert!(skipped(name), "{name}");
        }
        for name in [
            "libc6",
            "xen-utils-4.17",
            "bash",
            "libudev1",
            "dpkg-dev-el",
            "libpcre2-8-0",
        ] {
            assert!(!skipped(name), "{name}");
        }
    }

    #[test]
    fn xl_conf_turns_autoballoon_off_once() {
        let conf = "# comment\n#autoballoon=\"auto\"\nlockfile=\"/run/lock/xl\"\nautoballoon=1\n";
        assert_eq!(
            xl_conf(conf),
            "# comment\nlockfile=\"/run/lock/xl\"\nautoballoon=\"off\"\n"
        );
    }

    #[test]
    fn stamp_changes_with_any_package_version() {
        let deb = |version: &str| apt::Deb {
            name: "bash".into(),
            version: version.into(),
            arch: "amd64".into(),
        };
        let a = stamp_text(&[deb("5.2-1")], &[]);
        assert_eq!(a, stamp_text(&[deb("5.2-1")], &[]));
        assert_ne!(a, stamp_text(&[deb("5.2-2")], &[]));
        assert!(a.contains("bash_5.2-1_amd64.deb"));
    }
}
