//! A writer for the newc cpio format, the one format Linux accepts as an initramfs.
//!
//! Written here rather than shelling out to `cpio` so the archive is built from a directory
//! and from in-memory files alike, owned by root whatever the host user, and reproducible
//! (inode numbers in write order, mtime 0). Format: the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`: a 110-byte ASCII header
//! (`070701` and 13 eight-digit hex fields), the NUL-terminated name, padding to 4 bytes, the
//! data, padding to 4 bytes; the archive ends with an entry named `TRAILER!!!`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// Appends entries to a newc archive; [`Writer::finish`] writes the trailer.
pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
    /// Bytes written so far, for the 4-byte alignment of names and data.
    offset: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    /// A directory. Parents must be written before their children.
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | perm, 2, &mut io::empty(), 0)
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | perm, 1, &mut &data[..], data.len() as u64)
    }

    /// A regular file copied from `src` without reading it into memory first.
    pub fn file_from(&mut self, path: &str, perm: u32, src: &Path) -> io::Result<()> {
        let mut file = fs::File::open(src)?;
        let size = file.metadata()?.len();
        self.entry(path, S_IFREG | perm, 1, &mut file, size)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let target = target.as_bytes();
        self.entry(
            path,
            S_IFLNK | 0o777,
            1,
            &mut &target[..],
            target.len() as u64,
        )
    }

    /// Everything below `root`, named relative to it, in sorted order (so the archive does not
    /// depend on directory order). Directories, regular files and symlinks only: an initramfs
    /// gets its device nodes from devtmpfs.
    pub fn tree(&mut self, root: &Path) -> io::Result<()> {
        self.tree_below(root, "")
    }

    fn tree_below(&mut self, dir: &Path, prefix: &str) -> io::Result<()> {
        let mut entries = fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| {
                io::Error::other(format!("non-UTF-8 file name in {}", dir.display()))
            })?;
            let path = format!("{prefix}{name}");
            let meta = fs::symlink_metadata(entry.path())?;
            let perm = meta.mode() & 0o7777;
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = fs::read_link(entry.path())?;
                let target = target
                    .to_str()
                    .ok_or_else(|| io::Error::other(format!("non-UTF-8 link target of {path}")))?;
                self.symlink(&path, target)?;
            } else if kind.is_dir() {
                self.dir(&path, perm)?;
                self.tree_below(&entry.path(), &format!("{path}/"))?;
            } else if kind.is_file() {
                self.file_from(&path, perm, &entry.path())?;
            } else {
                return Err(io::Error::other(format!(
                    "{path}: only directories, files and symlinks go into an initramfs"
                )));
            }
        }
        Ok(())
    }

    /// Writes the trailer and hands back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(TRAILER, 0, 0, 1, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        data: &mut dyn io::Read,
        size: u64,
    ) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        if path.is_empty() || path == TRAILER {
            return Err(io::Error::other(format!("bad cpio entry name {path:?}")));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(path, ino, mode, nlink, size)?;
        let copied = io::copy(&mut io::Read::take(data, size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::other(format!(
                "{path}: shrank while archiving ({copied} of {size} bytes)"
            )));
        }
        self.offset += size;
        self.pad()
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, size: u64) -> io::Result<()> {
        let size = u32::try_from(size)
            .map_err(|_| io::Error::other(format!("{name}: too large for newc (4 GiB)")))?;
        let namesize = name.len() + 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            0,
            0,
            namesize as u32,
            0,
        ];
        let mut header = String::with_capacity(110 + namesize);
        header.push_str(MAGIC);
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        header.push_str(name);
        header.push('\0');
        self.out.write_all(header.as_bytes())?;
        self.offset += header.len() as u64;
        self.pad()
    }

    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - self.offset % 4) % 4;
        self.out.write_all(&[0; 3][..padding as usize])?;
        self.offset += padding;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: (name, mode, nlink, data).
    type Entry = (String, u32, u32, Vec<u8>);

    /// An independent newc reader, enough to check what the writer wrote.
    fn parse(mut bytes: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut offset = 0usize;
        loop {
            assert_eq!(&bytes[..6], MAGIC.as_bytes(), "magic at offset {offset}");
            let field = |i: usize| {
                let text = std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).unwrap();
                u32::from_str_radix(text, 16).unwrap()
            };
            let (mode, nlink, size, namesize) = (field(1), field(4), field(6), field(11));
            assert_eq!(field(2), 0, "uid");
            assert_eq!(field(3), 0, "gid");
            let name_end = 110 + namesize as usize;
            assert_eq!(bytes[name_end - 1], 0, "name is NUL-terminated");
            let name = std::str::from_utf8(&bytes[110..name_end - 1])
                .unwrap()
                .to_owned();
            let data_start = name_end.next_multiple_of(4);
            let data_end = data_start + size as usize;
            let data = bytes[data_start..data_end].to_vec();
            let next = data_end.next_multiple_of(4);
            assert!(bytes[name_end..data_start].iter().all(|&b| b == 0));
            assert!(
                bytes[data_end..next.min(bytes.len())]
                    .iter()
                    .all(|&b| b == 0)
            );
            offset += next;
            bytes = &bytes[next.min(bytes.len())..];
            if name == TRAILER {
                assert!(bytes.is_empty(), "nothing after the trailer");
                return entries;
            }
            entries.push((name, mode, nlink, data));
        }
    }

    #[test]
    fn writes_entries_the_kernel_format_describes() {
        let mut writer = Writer::new(Vec::new());
        writer.dir("/harness", 0o755).unwrap();
        writer
            .file("harness/run.sh", 0o755, b"#!/bin/sh\necho hi\n")
            .unwrap();
        writer.file("harness/empty", 0o644, b"").unwrap();
        writer.symlink("bin", "usr/bin").unwrap();
        let bytes = writer.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes);
        assert_eq!(
            entries,
            [
                ("harness".into(), S_IFDIR | 0o755, 2, vec![]),
                (
                    "harness/run.sh".into(),
                    S_IFREG | 0o755,
                    1,
                    b"#!/bin/sh\necho hi\n".to_vec()
                ),
                ("harness/empty".into(), S_IFREG | 0o644, 1, vec![]),
                ("bin".into(), S_IFLNK | 0o777, 1, b"usr/bin".to_vec()),
            ]
        );
    }

    #[test]
    fn every_name_length_pads_to_four_bytes() {
        let mut writer = Writer::new(Vec::new());
        for len in 1..=8 {
            writer
                .file(&"n".repeat(len), 0o600, &vec![b'x'; len])
                .unwrap();
        }
        let entries = parse(&writer.finish().unwrap());
        assert_eq!(entries.len(), 8);
        for (i, (name, _, _, data)) in entries.iter().enumerate() {
            assert_eq!(name.len(), i + 1);
            assert_eq!(data.len(), i + 1);
        }
    }

    #[test]
    fn archives_a_tree_sorted_with_parents_first() {
        let root = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/tool"), b"ELF").unwrap();
        fs::write(root.join("init"), b"#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        let mut writer = Writer::new(Vec::new());
        writer.tree(&root).unwrap();
        let entries = parse(&writer.finish().unwrap());
        fs::remove_dir_all(&root).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["bin", "init", "usr", "usr/bin", "usr/bin/tool"]);
        assert_eq!(entries[0].1 & 0o170_000, S_IFLNK);
        assert_eq!(entries[4].3, b"ELF");
    }

    #[test]
    fn rejects_empty_and_trailer_names() {
        let mut writer = Writer::new(Vec::new());
        assert!(writer.file("/", 0o644, b"").is_err());
        assert!(writer.file(TRAILER, 0o644, b"").is_err());
    }
}
