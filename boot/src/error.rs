//! Why a boot structure was rejected, in words a console reader can act on.

use core::fmt;

use crate::hvm_start_info::HeaderError;
use crate::memory_map::MemoryMap;
use crate::xen_start_info::StartInfoError;

/// A boot-info structure, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blob {
    /// The PVH `hvm_start_info` header.
    HvmStartInfo,
    /// The kernel command line.
    Cmdline,
    /// The array of module descriptors.
    ModuleList,
    /// The contents of module `n` (0-based).
    Module(usize),
    /// The command line of module `n` (0-based).
    ModuleCmdline(usize),
    /// The memory-map table.
    MemoryMap,
    /// The Xen PV `start_info`.
    XenStartInfo,
}

impl fmt::Display for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blob::HvmStartInfo => f.write_str("hvm_start_info"),
            Blob::Cmdline => f.write_str("command line"),
            Blob::ModuleList => f.write_str("module list"),
            Blob::Module(n) => write!(f, "module {n}"),
            Blob::ModuleCmdline(n) => write!(f, "module {n} command line"),
            Blob::MemoryMap => f.write_str("memory map"),
            Blob::XenStartInfo => f.write_str("start_info"),
        }
    }
}

/// Boot information the kernel cannot use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The `hvm_start_info` header itself is malformed.
    HvmStartInfo { paddr: u64, error: HeaderError },
    /// The Xen PV `start_info` is malformed. `vaddr` is where Xen mapped it (also its
    /// pseudo-physical address while the kernel's `VIRT_BASE` is 0).
    XenStartInfo { vaddr: u64, error: StartInfoError },
    /// `blob` does not lie in readable memory. `len` is the size needed; for a string, the
    /// readable bytes plus the first one that is not.
    OutsideMemory { blob: Blob, paddr: u64, len: u64 },
    /// `paddr + len` does not fit in 64 bits.
    Overflow { blob: Blob, paddr: u64, len: u64 },
    /// No NUL among the first `limit` bytes of a string.
    NotNulTerminated {
        blob: Blob,
        paddr: u64,
        limit: usize,
    },
    /// A string is not UTF-8; `offset` is where the first invalid sequence starts.
    NotUtf8 {
        blob: Blob,
        paddr: u64,
        offset: usize,
    },
    /// The loader gave no memory map (`hvm_start_info` version 0, or zero entries). The kernel
    /// has to ask the hypervisor instead (XENMEM_memory_map), which this crate does not do.
    NoMemoryMap { version: u32 },
    /// More modules than [`BootInfo`](crate::BootInfo) holds.
    TooManyModules { count: u32 },
    /// More memory-map entries than [`MemoryMap::CAPACITY`]; for [`MemoryMap::push`] on a full
    /// map, `entries` is the count the push would have reached.
    TooManyRegions { entries: u64 },
    /// A memory-map entry whose end, `addr + size`, does not fit in 64 bits.
    RegionOverflow { addr: u64, size: u64 },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BootError::HvmStartInfo { paddr, error } => {
                write!(f, "hvm_start_info at {paddr:#x}: {error}")
            }
            BootError::XenStartInfo { vaddr, error } => {
                write!(f, "start_info at {vaddr:#x}: {error}")
            }
            BootError::OutsideMemory { blob, paddr, len } => {
                write!(
                    f,
                    "{blob} at {paddr:#x}: outside memory (needs {len} bytes)"
                )
            }
            BootError::Overflow { blob, paddr, len } => write!(
                f,
                "{blob} at {paddr:#x}: {len:#x} bytes overflow the address space"
            ),
            BootError::NotNulTerminated { blob, paddr, limit } => write!(
                f,
                "{blob} at {paddr:#x} is not NUL-terminated within {limit} bytes"
            ),
            BootError::NotUtf8 {
                blob,
                paddr,
                offset,
            } => write!(
                f,
                "{blob} at {paddr:#x} is not UTF-8 (invalid byte at offset {offset})"
            ),
            BootError::NoMemoryMap { version: 0 } => {
                f.write_str("no memory map (hvm_start_info v0)")
            }
            BootError::NoMemoryMap { version } => write!(
                f,
                "no memory map (hvm_start_info v{version} lists 0 entries)"
            ),
            BootError::TooManyModules { count } => write!(
                f,
                "{count} modules exceed capacity {}",
                crate::boot_info::MAX_MODULES
            ),
            BootError::TooManyRegions { entries } => write!(
                f,
                "memory map: {entries} entries exceed capacity {}",
                MemoryMap::CAPACITY
            ),
            BootError::RegionOverflow { addr, size } => write!(
                f,
                "memory map: region at {addr:#x} of {size:#x} bytes overflows the address space"
            ),
        }
    }
}

impl core::error::Error for BootError {}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use super::*;

    #[test]
    fn messages_name_structure_address_and_rule() {
        let cases = [
            (
                BootError::HvmStartInfo {
                    paddr: 0x1000,
                    error: HeaderError::BadMagic { found: 0x1234_5678 },
                },
                "hvm_start_info at 0x1000: bad magic 0x12345678 (expected 0x336ec578)",
            ),
            (
                BootError::HvmStartInfo {
                    paddr: 0x1000,
                    error: HeaderError::Truncated { need: 56, have: 40 },
                },
                "hvm_start_info at 0x1000: truncated (need 56 bytes, have 40)",
            ),
            (
                BootError::XenStartInfo {
                    vaddr: 0x43_2000,
                    error: StartInfoError::NoPages,
                },
                "start_info at 0x432000: nr_pages is 0",
            ),
            (
                BootError::Overflow {
                    blob: Blob::XenStartInfo,
                    paddr: u64::MAX - 0xff,
                    len: 1152,
                },
                "start_info at 0xffffffffffffff00: 0x480 bytes overflow the address space",
            ),
            (
                BootError::OutsideMemory {
                    blob: Blob::Cmdline,
                    paddr: 0x9000,
                    len: 1,
                },
                "command line at 0x9000: outside memory (needs 1 bytes)",
            ),
            (
                BootError::NotNulTerminated {
                    blob: Blob::Cmdline,
                    paddr: 0x2000,
                    limit: 4096,
                },
                "command line at 0x2000 is not NUL-terminated within 4096 bytes",
            ),
            (
                BootError::NotUtf8 {
                    blob: Blob::ModuleCmdline(1),
                    paddr: 0x2000,
                    offset: 3,
                },
                "module 1 command line at 0x2000 is not UTF-8 (invalid byte at offset 3)",
            ),
            (
                BootError::Overflow {
                    blob: Blob::ModuleList,
                    paddr: u64::MAX - 8,
                    len: 64,
                },
                "module list at 0xfffffffffffffff7: 0x40 bytes overflow the address space",
            ),
            (
                BootError::NoMemoryMap { version: 0 },
                "no memory map (hvm_start_info v0)",
            ),
            (
                BootError::NoMemoryMap { version: 1 },
                "no memory map (hvm_start_info v1 lists 0 entries)",
            ),
            (
                BootError::TooManyModules { count: 17 },
                "17 modules exceed capacity 16",
            ),
            (
                BootError::TooManyRegions { entries: 300 },
                "memory map: 300 entries exceed capacity 128",
            ),
            (
                BootError::RegionOverflow {
                    addr: u64::MAX,
                    size: 2,
                },
                "memory map: region at 0xffffffffffffffff of 0x2 bytes overflows the address space",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }
}
