//! The Linux test guest: Debian's dom0 kernel as an ELF plus a one-script busybox initramfs.
//!
//! It proves the harness with a guest known to work, and is the Linux side of
//! `bench xen-boot`: its /init prints one line and powers off. xl gets the ELF `vmlinux`, not
//! the bzImage: libxenguest would otherwise decompress the kernel inside dom0, which takes
//! four times longer under TCG.

use std::fs;
use std::path::{Path, PathBuf};

use super::dom0::Dom0;
use super::{Image, Layout};
use crate::debian::{cpio, extract_vmlinux};

const INIT: &str = include_str!("../../xen/test-guest-init.sh");

pub struct TestGuest {
    pub vmlinux: PathBuf,
    pub initrd: PathBuf,
}

impl TestGuest {
    /// The test guest with kernel command line `append` and `mem_mib` of memory.
    pub fn image(&self, append: &str, mem_mib: u32) -> Image {
        Image {
            kernel: self.vmlinux.clone(),
            ramdisk: Some(self.initrd.clone()),
            append: append.to_owned(),
            mem_mib,
        }
    }
}

/// Builds `test-guest/vmlinux` (when the dom0 kernel changed) and `test-guest/initrd.cpio`.
pub fn build(layout: &Layout, dom0: &Dom0) -> Result<TestGuest, String> {
    let dir = layout.root.join("test-guest");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let guest = TestGuest {
        vmlinux: dir.join("vmlinux"),
        initrd: dir.join("initrd.cpio"),
    };
    let modified = |path: &Path| fs::metadata(path).and_then(|meta| meta.modified()).ok();
    if modified(&guest.vmlinux) < modified(&dom0.vmlinuz) {
        let image = fs::read(&dom0.vmlinuz)
            .map_err(|e| format!("reading {}: {e}", dom0.vmlinuz.display()))?;
        let elf = extract_vmlinux(&image)?;
        fs::write(&guest.vmlinux, elf)
            .map_err(|e| format!("writing {}: {e}", guest.vmlinux.display()))?;
    }
    let busybox = dom0.rootfs.join("usr/bin/busybox");
    let file = fs::File::create(&guest.initrd)
        .map_err(|e| format!("creating {}: {e}", guest.initrd.display()))?;
    let mut writer = cpio::Writer::new(std::io::BufWriter::new(file));
    let written: std::io::Result<()> = (|| {
        for dir in ["bin", "proc", "sys", "dev"] {
            writer.dir(dir, 0o755)?;
        }
        writer.file_from("bin/busybox", 0o755, &busybox)?;
        writer.file("init", 0o755, INIT.as_bytes())?;
        writer.finish().map(drop)
    })();
    written.map_err(|e| format!("writing {}: {e}", guest.initrd.display()))?;
    Ok(guest)
}
