//! The Linux test guest: Debian's dom0 kernel as an ELF plus a one-script busybox initramfs.
//!
//! It proves the harness with a guest known to work, and is the Linux side of
//! `bench xen-boot`: its /init prints one line and powers off. xl gets the ELF `vmlinux`, not
//! the bzImage: libxenguest would otherwise decompress the kernel inside dom0, which takes
//! four times longer under TCG.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

use super::dom0::Dom0;
use super::{Image, Layout, cpio};

const INIT: &str = include_str!("../../xen/test-guest-init.sh");

/// Compressed payloads a bzImage may carry: magic and the decompressor that reads it.
const PAYLOADS: &[(&[u8], &str)] = &[
    (b"\xfd7zXZ\0", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x1f\x8b\x08", "gzip"),
];

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

/// The ELF kernel inside a bzImage: the first compressed payload that decompresses to an ELF.
/// Decompressors complain about the bytes after the payload; what they wrote is still right.
pub fn extract_vmlinux(image: &[u8]) -> Result<Vec<u8>, String> {
    for (magic, tool) in PAYLOADS {
        for offset in find_all(image, magic) {
            let out = decompress(tool, image[offset..].to_vec())?;
            if out.starts_with(b"\x7fELF") {
                return Ok(out);
            }
        }
    }
    Err("no xz, zstd or gzip payload in the kernel image decompresses to an ELF".to_owned())
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle)
        .map(|(offset, _)| offset)
        .collect()
}

fn decompress(tool: &str, input: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut child = Command::new(tool)
        .args(["-dcq"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("running {tool} (needed to unpack the kernel): {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // The decompressor may stop reading at the payload's end: a write error is expected then.
    let feeder = thread::spawn(move || drop(stdin.write_all(&input)));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut out)
        .map_err(|e| format!("reading {tool}'s output: {e}"))?;
    child
        .wait()
        .map_err(|e| format!("waiting for {tool}: {e}"))?;
    feeder
        .join()
        .map_err(|_| "feeder thread panicked".to_owned())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data).unwrap();
        child.wait_with_output().unwrap().stdout
    }

    #[test]
    fn finds_the_elf_payload_behind_decoys() {
        let elf = b"\x7fELF\x02\x01\x01 rest of a kernel".to_vec();
        let mut image = b"MZ setup code \x1f\x8b\x08 not really gzip ".to_vec();
        image.extend(gzip(b"a gzip stream that is not an ELF"));
        image.extend(gzip(&elf));
        image.extend(b"trailing bytes after the payload");
        assert_eq!(extract_vmlinux(&image).unwrap(), elf);
    }

    #[test]
    fn fails_without_a_payload() {
        assert!(extract_vmlinux(b"MZ no payload here").is_err());
    }

    #[test]
    fn finds_overlapping_matches() {
        assert_eq!(find_all(b"aaab", b"aa"), [0, 1]);
        assert!(find_all(b"ab", b"abc").is_empty());
    }
}
