//! Boot images from Debian packages, shared by the Xen and the Hyper-V harnesses.
//!
//! [`apt`] resolves and downloads packages with the host's apt without installing them; this
//! module unpacks them (`dpkg-deb`, no maintainer scripts), picks kernel modules with their
//! dependencies and takes the ELF kernel out of a bzImage; [`cpio`] writes the initramfs.

pub mod apt;
pub mod cpio;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

/// Host programs the harnesses run, with the Debian package of each: unpacking packages
/// (`dpkg-deb`, `tar`), kernel modules (`depmod`, and `xz`/`zstd` for compressed ones), Xen's
/// dom0 image (`ldconfig`, `gzip`) and the kernel payload of a bzImage (`xz`, `zstd`, `gzip`).
pub const HOST_TOOLS: &[(&str, &str)] = &[
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("tar", "tar"),
    ("gzip", "gzip"),
    ("depmod", "kmod"),
    ("ldconfig", "libc-bin"),
    ("xz", "xz-utils"),
    ("zstd", "zstd"),
];

/// Compressed payloads a bzImage may carry: magic and the decompressor that reads it.
const PAYLOADS: &[(&[u8], &str)] = &[
    (b"\xfd7zXZ\0", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x1f\x8b\x08", "gzip"),
];

/// `dpkg-deb --fsys-tarfile DEB | tar -x`: plain `dpkg-deb -x` would replace the tree's
/// `bin -> usr/bin` links with directories, which `--keep-directory-symlink` prevents.
pub fn unpack(deb: &Path, dest: &Path) -> Result<(), String> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running dpkg-deb: {e}"))?;
    let tar = Command::new("tar")
        .args(["-x", "--keep-directory-symlink", "-C"])
        .arg(dest)
        .stdin(dpkg.stdout.take().expect("stdout is piped"))
        .status()
        .map_err(|e| format!("running tar: {e}"))?;
    let dpkg = dpkg
        .wait()
        .map_err(|e| format!("waiting for dpkg-deb: {e}"))?;
    if dpkg.success() && tar.success() {
        Ok(())
    } else {
        Err(format!(
            "unpacking {} failed (dpkg-deb {dpkg}, tar {tar})",
            deb.display()
        ))
    }
}

/// An empty merged-/usr tree: `bin`, `sbin`, `lib`, `lib64` link into `usr`. Whatever was at
/// `root` before is removed.
pub fn merged_usr_tree(root: &Path) -> Result<(), String> {
    if root.exists() {
        fs::remove_dir_all(root).map_err(|e| format!("removing {}: {e}", root.display()))?;
    }
    for dir in ["bin", "sbin", "lib", "lib64"] {
        let usr = root.join("usr").join(dir);
        fs::create_dir_all(&usr).map_err(|e| format!("creating {}: {e}", usr.display()))?;
        symlink(format!("usr/{dir}"), root.join(dir))
            .map_err(|e| format!("linking {dir} in {}: {e}", root.display()))?;
    }
    Ok(())
}

/// The kernel package unpacked once per version into `work/kernel/VERSION`, with
/// `modules.dep` (which dpkg's postinst would have made).
pub fn unpack_kernel(deb: &Path, work: &Path, version: &str) -> Result<PathBuf, String> {
    let root = work.join("kernel").join(version);
    let done = root.join(".done");
    if done.is_file() {
        return Ok(root);
    }
    merged_usr_tree(&root)?;
    unpack(deb, &root)?;
    run(Command::new("depmod").arg("-b").arg(&root).arg(version))?;
    fs::write(&done, "").map_err(|e| format!("writing {}: {e}", done.display()))?;
    Ok(root)
}

/// A module's name as modprobe matches it: file stem without `.ko*`, `-` as `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The `modules.dep` paths of `wanted` and everything they depend on, each after the modules
/// it needs: the order to load them in. Modules built into the kernel (listed in
/// `modules.builtin`) need no file.
pub fn module_closure(deps: &str, builtin: &str, wanted: &[&str]) -> Result<Vec<String>, String> {
    let table: HashMap<String, (&str, Vec<&str>)> = deps
        .lines()
        .filter_map(|line| {
            let (path, needs) = line.split_once(':')?;
            Some((
                module_name(path),
                (path, needs.split_whitespace().collect()),
            ))
        })
        .collect();
    let builtin: BTreeSet<String> = builtin.lines().map(module_name).collect();
    let by_path: HashMap<&str, &Vec<&str>> =
        table.values().map(|(path, needs)| (*path, needs)).collect();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for name in wanted {
        let name = module_name(name);
        match table.get(&name) {
            Some((path, _)) => load_after_needs(path, &by_path, &mut seen, &mut order)?,
            None if builtin.contains(&name) => {}
            None => {
                return Err(format!(
                    "kernel module {name} is neither a module nor built in"
                ));
            }
        }
    }
    Ok(order)
}

/// Appends what `path` needs, then `path`, to `order` (depth first, each path once).
fn load_after_needs<'a>(
    path: &'a str,
    by_path: &HashMap<&'a str, &Vec<&'a str>>,
    seen: &mut HashSet<&'a str>,
    order: &mut Vec<String>,
) -> Result<(), String> {
    if !seen.insert(path) {
        return Ok(());
    }
    let needs = by_path
        .get(path)
        .ok_or_else(|| format!("modules.dep names {path} but has no line for it"))?;
    for need in needs.iter() {
        load_after_needs(need, by_path, seen, order)?;
    }
    order.push(path.to_owned());
    Ok(())
}

/// A kernel module as plain ELF (busybox's insmod reads no compressed modules).
pub fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("xz") => decompress("xz", bytes),
        Some("zst") => decompress("zstd", bytes),
        _ => Ok(bytes),
    }
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

/// Runs a build step, failing with its stderr.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("running {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPS: &str = "\
kernel/drivers/xen/xen-netback/xen-netback.ko:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/drivers/block/loop.ko.xz:
kernel/drivers/unrelated.ko:
";
    const BUILTIN: &str = "kernel/drivers/xen/xen-evtchn.ko\n";

    #[test]
    fn module_closure_loads_dependencies_first_and_skips_builtins() {
        let closure = module_closure(
            DEPS,
            BUILTIN,
            &["xen-netback", "bridge", "loop", "xen_evtchn", "llc"],
        )
        .unwrap();
        assert_eq!(
            closure,
            [
                "kernel/drivers/xen/xen-netback/xen-netback.ko",
                "kernel/net/llc/llc.ko",
                "kernel/net/802/stp.ko",
                "kernel/net/bridge/bridge.ko",
                "kernel/drivers/block/loop.ko.xz",
            ]
        );
    }

    #[test]
    fn module_closure_rejects_unknown_modules() {
        let err = module_closure(DEPS, BUILTIN, &["xen-netfront"]).unwrap_err();
        assert!(err.contains("xen_netfront"), "{err}");
        let err = module_closure("a.ko: b.ko\n", "", &["a"]).unwrap_err();
        assert!(err.contains("b.ko"), "{err}");
    }

    #[test]
    fn module_names_drop_directories_suffixes_and_dashes() {
        assert_eq!(module_name("kernel/arch/x86/kvm/kvm-amd.ko"), "kvm_amd");
        assert_eq!(
            module_name("kernel/net/9p/9pnet_virtio.ko.zst"),
            "9pnet_virtio"
        );
        assert_eq!(module_name("9p"), "9p");
    }

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
    fn reads_plain_and_compressed_modules_as_plain_elf() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let elf = b"\x7fELF a module".to_vec();
        fs::write(dir.join("plain.ko"), &elf).unwrap();
        let xz = Command::new("xz")
            .args(["-zkq"])
            .arg(dir.join("plain.ko"))
            .status()
            .unwrap();
        assert!(xz.success());
        assert_eq!(read_module(&dir.join("plain.ko")).unwrap(), elf);
        assert_eq!(read_module(&dir.join("plain.ko.xz")).unwrap(), elf);
        assert!(read_module(&dir.join("missing.ko")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_overlapping_matches() {
        assert_eq!(find_all(b"aaab", b"aa"), [0, 1]);
        assert!(find_all(b"ab", b"abc").is_empty());
    }
}
