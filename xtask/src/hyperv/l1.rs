//! L1's boot files: a stock Debian 6.1 kernel and a busybox initramfs with KVM for AMD and
//! the 9p client, all from Debian packages.
//!
//! The kernel is the ELF inside the package's bzImage: QEMU boots it through its PVH note, so
//! TCG never runs the bzImage's self-decompression (about 5 s). The initramfs is an
//! uncompressed cpio (under TCG, copying beats gunzip) of busybox, `/init`
//! (`xtask/hyperv/l1-init.sh`) and the modules in load order. Packages are resolved and
//! fetched once: a stamp of the init script, the module list and the packages keeps the
//! products until one of the first two changes (delete `target/hyperv/` for a newer kernel).

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::debian::{self, apt, cpio};
use crate::harness::Layout;

/// KVM for AMD (TCG's `-cpu max` emulates SVM, not VMX) and 9p over virtio-pci for the shares.
const MODULES: &[&str] = &["kvm_amd", "9p", "9pnet_virtio", "virtio_pci"];
/// L1's whole userland.
const BUSYBOX_PACKAGE: &str = "busybox-static";
pub(super) const INIT: &str = include_str!("../../hyperv/l1-init.sh");
/// Changes whenever this file's idea of the initramfs changes without a script change.
const LAYOUT_VERSION: u32 = 1;

/// L1's kernel and initramfs.
#[derive(Debug)]
pub struct L1 {
    pub vmlinux: PathBuf,
    pub initrd: PathBuf,
}

/// Builds (or reuses) L1's kernel and initramfs under `layout.root`.
pub fn build(layout: &Layout) -> Result<L1, String> {
    let l1 = L1 {
        vmlinux: layout.root.join("vmlinux"),
        initrd: layout.root.join("l1-initrd.cpio"),
    };
    let stamp_path = layout.root.join("l1.stamp");
    let inputs = inputs_line();
    let fresh = fs::read_to_string(&stamp_path)
        .is_ok_and(|stamp| stamp.lines().next() == Some(inputs.as_str()));
    if fresh && l1.vmlinux.is_file() && l1.initrd.is_file() {
        return Ok(l1);
    }
    eprintln!(
        "xtask: building the Hyper-V harness's L1 in {}",
        layout.root.display()
    );
    let _ = fs::remove_file(&stamp_path);
    apt::ensure_lists()?;
    let kernel_package = apt::newest_kernel()?;
    let version = kernel_package
        .strip_prefix("linux-image-")
        .expect("newest_kernel returns linux-image-*");
    // Only the two packages themselves: their dependencies are for an installed system.
    let wanted = [kernel_package.as_str(), BUSYBOX_PACKAGE];
    let state = layout.root.join("apt");
    let debs: Vec<apt::Deb> = apt::closure(&state, &wanted)?
        .into_iter()
        .filter(|deb| wanted.contains(&deb.name.as_str()))
        .collect();
    let files = apt::download(&state, &layout.debs, &debs)?;
    let file_of = |name: &str| {
        debs.iter()
            .zip(&files)
            .find(|(deb, _)| deb.name == name)
            .map(|(_, file)| file)
            .ok_or_else(|| format!("apt did not resolve {name}"))
    };

    let kernel_root = debian::unpack_kernel(file_of(&kernel_package)?, &layout.root, version)?;
    let bzimage = kernel_root.join(format!("boot/vmlinuz-{version}"));
    let image = fs::read(&bzimage).map_err(|e| format!("reading {}: {e}", bzimage.display()))?;
    write_atomically(&l1.vmlinux, &debian::extract_vmlinux(&image)?)?;

    let busybox_root = layout.root.join("busybox");
    debian::merged_usr_tree(&busybox_root)?;
    debian::unpack(file_of(BUSYBOX_PACKAGE)?, &busybox_root)?;
    let modules = kernel_root.join("lib/modules").join(version);
    write_initrd(&busybox_root.join("usr/bin/busybox"), &modules, &l1.initrd)?;

    let mut stamp = format!("{inputs}\n");
    for deb in &debs {
        stamp.push_str(&deb.file_name());
        stamp.push('\n');
    }
    fs::write(&stamp_path, stamp).map_err(|e| format!("writing {}: {e}", stamp_path.display()))?;
    Ok(l1)
}

/// The stamp's first line: what the products depend on besides the packages.
fn inputs_line() -> String {
    let mut hasher = DefaultHasher::new();
    (INIT, MODULES, BUSYBOX_PACKAGE, LAYOUT_VERSION).hash(&mut hasher);
    format!("inputs {:016x}", hasher.finish())
}

/// The initramfs: busybox, /init, [`MODULES`] with their dependencies from `modules` (the
/// kernel's `lib/modules/VERSION`) and `lib/modules/order`, the order /init loads them in.
fn write_initrd(busybox: &Path, modules: &Path, out: &Path) -> Result<(), String> {
    let read = |name: &str| {
        let path = modules.join(name);
        fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))
    };
    let paths = debian::module_closure(&read("modules.dep")?, &read("modules.builtin")?, MODULES)?;
    let names: Vec<String> = paths.iter().map(|path| module_file(path)).collect();
    let module_files = paths
        .iter()
        .map(|path| debian::read_module(&modules.join(path)))
        .collect::<Result<Vec<_>, _>>()?;

    let tmp = out.with_extension("tmp");
    let file = fs::File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let mut writer = cpio::Writer::new(BufWriter::with_capacity(1 << 20, file));
    let written: std::io::Result<()> = (|| {
        for dir in ["bin", "dev", "proc", "sys", "host", "lib", "lib/modules"] {
            writer.dir(dir, 0o755)?;
        }
        writer.file_from("bin/busybox", 0o755, busybox)?;
        writer.file("init", 0o755, INIT.as_bytes())?;
        for (name, bytes) in names.iter().zip(&module_files) {
            writer.file(&format!("lib/modules/{name}"), 0o644, bytes)?;
        }
        writer.file("lib/modules/order", 0o644, order_file(&names).as_bytes())?;
        writer.finish().map(drop)
    })();
    written.map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    fs::rename(&tmp, out).map_err(|e| format!("renaming {}: {e}", tmp.display()))
}

/// The plain file name a module gets in the initramfs: `kernel/fs/9p/9p.ko.xz` -> `9p.ko`.
fn module_file(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    format!("{}.ko", file.split(".ko").next().unwrap_or(file))
}

/// `lib/modules/order`: one module file a line.
fn order_file(names: &[String]) -> String {
    names.iter().map(|name| format!("{name}\n")).collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("renaming {}: {e}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_get_plain_names_in_load_order() {
        let paths = [
            "kernel/virt/lib/irqbypass.ko",
            "kernel/arch/x86/kvm/kvm-amd.ko.xz",
            "kernel/net/9p/9pnet_virtio.ko.zst",
        ];
        let names: Vec<String> = paths.iter().map(|path| module_file(path)).collect();
        assert_eq!(names, ["irqbypass.ko", "kvm-amd.ko", "9pnet_virtio.ko"]);
        assert_eq!(
            order_file(&names),
            "irqbypass.ko\nkvm-amd.ko\n9pnet_virtio.ko\n"
        );
    }
}
