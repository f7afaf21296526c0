//! What the kernel needs from the boot protocol, whichever protocol it was.

use core::fmt;

use crate::PhysMemory;
use crate::error::{Blob, BootError};
use crate::hvm_start_info::{
    self, HEADER_LEN_V0, HEADER_LEN_V1, MEMMAP_ENTRY_LEN, MODLIST_ENTRY_LEN, MemmapEntry,
    ModlistEntry, StartInfo, Table,
};
use crate::memory_map::{MemoryMap, RegionKind};
use crate::xen_start_info::{
    self, CMD_LINE_OFFSET, MAX_GUEST_CMDLINE, START_INFO_LEN, StartInfoError, XenPvInfo,
};

/// The most modules [`BootInfo`] holds. Ringbolt apps take at most an initrd-like blob or two.
pub const MAX_MODULES: usize = 16;
/// The longest command line (kernel or module) accepted, NUL included. Linux allows 2048 on
/// x86; twice that leaves room for app arguments.
pub const CMDLINE_LIMIT: usize = 4096;

/// Slots of [`BootInfo::occupied`]: one per fixed blob, then a module and its command line for
/// each module. Fixed slots make the capacity follow from the limits instead of being checked.
const OCCUPIED_START_INFO: usize = 0;
const OCCUPIED_CMDLINE: usize = 1;
const OCCUPIED_MODLIST: usize = 2;
const OCCUPIED_MEMMAP: usize = 3;
const fn occupied_module(index: usize) -> usize {
    4 + 2 * index
}
const fn occupied_module_cmdline(index: usize) -> usize {
    occupied_module(index) + 1
}
const OCCUPIED_SLOTS: usize = occupied_module(MAX_MODULES);
/// Xen PV uses the first three slots, in the order of xen.h's start-of-day layout: the module,
/// the P2M list, then the span from start_info through the bootstrap page tables and boot stack.
const OCCUPIED_XEN_MODULE: usize = 0;
const OCCUPIED_XEN_MFN_LIST: usize = 1;
const OCCUPIED_XEN_BOOTSTRAP: usize = 2;

/// How the kernel was booted.
///
/// Everything protocol-specific stays in here and in the parsers, so the rest of [`BootInfo`]
/// means the same for every protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// The PVH entry point (`XEN_ELFNOTE_PHYS32_ENTRY`) with an `hvm_start_info`.
    Pvh { version: u32 },
    /// A Xen PV guest, started with a `start_info`: the machine frames, event channels and
    /// bootstrap layout a PV kernel needs besides the protocol-independent fields.
    XenPv(XenPvInfo),
}

/// A module (initrd, data blob) the loader placed in physical memory. Its contents are not read
/// here; map or read `[paddr, paddr + size)` when needed (the end is known not to overflow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    pub paddr: u64,
    pub size: u64,
    /// `""` when the module has none.
    pub cmdline: &'a str,
}

const NO_MODULE: Module<'static> = Module {
    paddr: 0,
    size: 0,
    cmdline: "",
};

/// Validated boot information. Strings borrow from the loader's memory through the
/// [`PhysMemory`] given to the constructor.
#[derive(Clone)]
pub struct BootInfo<'a> {
    pub protocol: BootProtocol,
    /// Protocol flags as given (PVH and Xen PV: `SIF_*` from `xen/include/public/xen.h`).
    pub flags: u32,
    /// The kernel command line; `""` when there is none.
    pub cmdline: &'a str,
    pub memory_map: MemoryMap,
    /// Physical address of the ACPI RSDP, if the loader passed one (never for Xen PV).
    pub rsdp: Option<u64>,
    /// Where the protocol's start-of-day structure is. For Xen PV, its virtual address, which
    /// is also its pseudo-physical one while the kernel's `VIRT_BASE` is 0.
    pub start_info_paddr: u64,
    modules: [Module<'a>; MAX_MODULES],
    module_count: usize,
    occupied: [Option<(u64, u64)>; OCCUPIED_SLOTS],
}

impl<'a> BootInfo<'a> {
    /// Parses and validates the PVH boot information at `start_info_paddr` (the entry's `%ebx`).
    ///
    /// Every structure is fetched once through `mem`, copied or bounded, and checked: header,
    /// command line, module list and module command lines, memory map. Fails on the first
    /// problem, with an error naming the structure and its address.
    pub fn from_pvh(mem: &'a impl PhysMemory, start_info_paddr: u64) -> Result<Self, BootError> {
        let header = read_start_info(mem, start_info_paddr)?;
        let Some(memmap) = header.memmap else {
            return Err(BootError::NoMemoryMap {
                version: header.version,
            });
        };
        let mut occupied = [None; OCCUPIED_SLOTS];
        occupied[OCCUPIED_START_INFO] = Some(range(start_info_paddr, header.header_len()));

        let cmdline = match header.cmdline_paddr {
            Some(paddr) => {
                let (cmdline, span) = read_cstr(mem, Blob::Cmdline, paddr)?;
                occupied[OCCUPIED_CMDLINE] = Some(span);
                cmdline
            }
            None => "",
        };

        let mut modules = [NO_MODULE; MAX_MODULES];
        let mut module_count = 0;
        if let Some(list) = header.modlist {
            if list.entries as usize > MAX_MODULES {
                return Err(BootError::TooManyModules {
                    count: list.entries,
                });
            }
            let (bytes, span) = read_table(mem, Blob::ModuleList, list, MODLIST_ENTRY_LEN)?;
            occupied[OCCUPIED_MODLIST] = Some(span);
            let entries = bytes.chunks_exact(MODLIST_ENTRY_LEN);
            for (index, (slot, bytes)) in modules.iter_mut().zip(entries).enumerate() {
                let entry = ModlistEntry::new_unchecked(bytes);
                let (paddr, size) = (entry.paddr(), entry.size());
                let end = paddr.checked_add(size).ok_or(BootError::Overflow {
                    blob: Blob::Module(index),
                    paddr,
                    len: size,
                })?;
                if size != 0 {
                    occupied[occupied_module(index)] = Some((paddr, end));
                }
                let cmdline = match entry.cmdline_paddr() {
                    0 => "",
                    paddr => {
                        let (cmdline, span) = read_cstr(mem, Blob::ModuleCmdline(index), paddr)?;
                        occupied[occupied_module_cmdline(index)] = Some(span);
                        cmdline
                    }
                };
                *slot = Module {
                    paddr,
                    size,
                    cmdline,
                };
                module_count += 1;
            }
        }

        if memmap.entries as usize > MemoryMap::CAPACITY {
            return Err(BootError::TooManyRegions {
                entries: u64::from(memmap.entries),
            });
        }
        let (bytes, span) = read_table(mem, Blob::MemoryMap, memmap, MEMMAP_ENTRY_LEN)?;
        occupied[OCCUPIED_MEMMAP] = Some(span);
        let mut memory_map = MemoryMap::new();
        for bytes in bytes.chunks_exact(MEMMAP_ENTRY_LEN) {
            let entry = MemmapEntry::new_unchecked(bytes);
            memory_map.push(
                entry.addr(),
                entry.size(),
                RegionKind::from_e820(entry.kind()),
            )?;
        }

        Ok(BootInfo {
            protocol: BootProtocol::Pvh {
                version: header.version,
            },
            flags: header.flags,
            cmdline,
            memory_map,
            rsdp: header.rsdp_paddr,
            start_info_paddr,
            modules,
            module_count,
            occupied,
        })
    }

    /// Parses and validates a Xen PV `start_info` at `start_info_vaddr` (the entry's `%rsi`).
    ///
    /// Xen maps `start_info` at a virtual address. The bootstrap mapping is 1:1 with the start
    /// of pseudo-physical memory (xen.h, "Start-of-day memory layout", point 7), so with the
    /// kernel's `VIRT_BASE` at 0 a virtual address there is its pseudo-physical address: `mem`
    /// reads the bootstrap virtual mapping, and the addresses in the result are both.
    ///
    /// The structure is fetched once, 1152 bytes through `cmd_line`, and checked by
    /// [`XenPvInfo::parse`]; the command line must end in a NUL within its 1024 bytes and be
    /// UTF-8 (never truncated). `pt_base` below `start_info_vaddr` is rejected: the layout puts
    /// the page tables after start_info, and the reservation below depends on it.
    ///
    /// - **Memory map.** `start_info` carries no E820: the map is one usable region
    ///   `[0, nr_pages * 4096)` of pseudo-physical memory. The kernel may replace it with
    ///   `XENMEM_memory_map` later (this crate makes no hypercalls).
    /// - **Modules.** The one module, if `mod_start` is not 0, at its virtual address or, with
    ///   `SIF_MOD_START_PFN`, at `mod_start * 4096`; it has no command line. A
    ///   `SIF_MULTIBOOT_MOD` package is reported whole.
    /// - **Occupied ranges**, in layout order (xen.h points 4 and 9): the module (unless
    ///   empty); the P2M list `[mfn_list, mfn_list + nr_pages * 8)`; and
    ///   `[start_info_vaddr, pt_base + nr_pt_frames * 4096 + 512 KiB)`. That last span holds
    ///   start_info, the xenstore and console pages the toolstack allocates right after it
    ///   (their MFNs are all `start_info` gives), the page tables, and the one-page boot stack
    ///   that follows them, whose address has no field; the 512 KiB the layout guarantees
    ///   after the final element covers the stack. The kernel image is not listed: the kernel
    ///   knows its own extent.
    pub fn from_xen_pv(mem: &'a impl PhysMemory, start_info_vaddr: u64) -> Result<Self, BootError> {
        let bytes = read(mem, Blob::XenStartInfo, start_info_vaddr, START_INFO_LEN)?;
        let view = xen_start_info::StartInfo::new_unchecked(bytes);
        let start_info_error = |error| BootError::XenStartInfo {
            vaddr: start_info_vaddr,
            error,
        };
        let info = XenPvInfo::parse(&view).map_err(start_info_error)?;
        if info.pt_base < start_info_vaddr {
            return Err(start_info_error(
                StartInfoError::PageTablesBeforeStartInfo {
                    pt_base: info.pt_base,
                },
            ));
        }

        // Inside the bytes just read, so the sum does not overflow.
        let cmdline_vaddr = start_info_vaddr + CMD_LINE_OFFSET as u64;
        let raw = view.cmd_line();
        let len = raw
            .iter()
            .position(|&b| b == 0)
            .ok_or(BootError::NotNulTerminated {
                blob: Blob::Cmdline,
                paddr: cmdline_vaddr,
                limit: MAX_GUEST_CMDLINE,
            })?;
        let cmdline = utf8(&raw[..len], Blob::Cmdline, cmdline_vaddr)?;

        let mut memory_map = MemoryMap::new();
        memory_map.push(0, info.memory_bytes(), RegionKind::Usable)?;

        let mut occupied = [None; OCCUPIED_SLOTS];
        let mut modules = [NO_MODULE; MAX_MODULES];
        let mut module_count = 0;
        if let Some(module) = info.module {
            // `parse` checked that the end fits.
            let paddr = module.addr();
            if module.len != 0 {
                occupied[OCCUPIED_XEN_MODULE] = Some((paddr, paddr + module.len));
            }
            modules[0] = Module {
                paddr,
                size: module.len,
                cmdline: "",
            };
            module_count = 1;
        }
        occupied[OCCUPIED_XEN_MFN_LIST] = Some(info.mfn_list_range());
        occupied[OCCUPIED_XEN_BOOTSTRAP] = Some((start_info_vaddr, info.bootstrap_in_use_end()));

        Ok(BootInfo {
            protocol: BootProtocol::XenPv(info),
            flags: info.flags,
            cmdline,
            memory_map,
            rsdp: None,
            start_info_paddr: start_info_vaddr,
            modules,
            module_count,
            occupied,
        })
    }

    /// The modules, in the loader's order.
    pub fn modules(&self) -> &[Module<'a>] {
        &self.modules[..self.module_count]
    }

    /// Physical `(start, end)` ranges the boot information itself occupies (PVH: start-of-day
    /// structure, command lines, module list, modules, memory map; Xen PV: see
    /// [`from_xen_pv`](Self::from_xen_pv)), for the frame allocator to reserve. They may
    /// overlap each other; none is empty.
    pub fn occupied_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.occupied.iter().flatten().copied()
    }
}

impl PartialEq for BootInfo<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.protocol == other.protocol
            && self.flags == other.flags
            && self.cmdline == other.cmdline
            && self.memory_map == other.memory_map
            && self.rsdp == other.rsdp
            && self.start_info_paddr == other.start_info_paddr
            && self.modules() == other.modules()
            && self.occupied == other.occupied
    }
}

impl Eq for BootInfo<'_> {}

impl fmt::Debug for BootInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootInfo")
            .field("protocol", &self.protocol)
            .field("flags", &self.flags)
            .field("cmdline", &self.cmdline)
            .field("memory_map", &self.memory_map)
            .field("rsdp", &self.rsdp)
            .field("start_info_paddr", &self.start_info_paddr)
            .field("modules", &self.modules())
            .finish_non_exhaustive()
    }
}

/// `[paddr, paddr + len)` for a range already read through [`PhysMemory`], whose contract
/// excludes overflow.
fn range(paddr: u64, len: usize) -> (u64, u64) {
    (paddr, paddr.saturating_add(len as u64))
}

/// Reads the header into a local copy (the version decides how much to read, and must not be
/// fetched again) and validates it.
fn read_start_info(mem: &impl PhysMemory, paddr: u64) -> Result<hvm_start_info::Repr, BootError> {
    let mut copy = [0; HEADER_LEN_V1];
    copy[..HEADER_LEN_V0].copy_from_slice(read(mem, Blob::HvmStartInfo, paddr, HEADER_LEN_V0)?);
    let mut len = HEADER_LEN_V0;
    if StartInfo::new_unchecked(&copy[..]).header_len() > HEADER_LEN_V0 {
        // Unreadable version 1 fields are reported by the check below, as a truncated header.
        let tail = (paddr.checked_add(HEADER_LEN_V0 as u64))
            .and_then(|tail| mem.read(tail, HEADER_LEN_V1 - HEADER_LEN_V0));
        if let Some(tail) = tail {
            copy[HEADER_LEN_V0..].copy_from_slice(tail);
            len = HEADER_LEN_V1;
        }
    }
    StartInfo::new_checked(&copy[..len])
        .and_then(|header| hvm_start_info::Repr::parse(&header))
        .map_err(|error| BootError::HvmStartInfo { paddr, error })
}

/// `len` bytes at `paddr`, with overflow told apart from unreadable memory.
fn read(mem: &impl PhysMemory, blob: Blob, paddr: u64, len: usize) -> Result<&[u8], BootError> {
    if paddr.checked_add(len as u64).is_none() {
        return Err(BootError::Overflow {
            blob,
            paddr,
            len: len as u64,
        });
    }
    mem.read(paddr, len).ok_or(BootError::OutsideMemory {
        blob,
        paddr,
        len: len as u64,
    })
}

/// A whole table (callers bound `entries`, so the length fits), and the range it occupies.
fn read_table(
    mem: &impl PhysMemory,
    blob: Blob,
    table: Table,
    entry_len: usize,
) -> Result<(&[u8], (u64, u64)), BootError> {
    let len = table.entries as usize * entry_len;
    let bytes = read(mem, blob, table.paddr, len)?;
    Ok((bytes, range(table.paddr, len)))
}

/// A NUL-terminated UTF-8 string of at most [`CMDLINE_LIMIT`] bytes with its NUL, and the range
/// it occupies (NUL included).
///
/// The string is searched in a single fetch: all of the limit if readable, else the longest
/// readable prefix (found by probing lengths, which reads no contents).
fn read_cstr(
    mem: &impl PhysMemory,
    blob: Blob,
    paddr: u64,
) -> Result<(&str, (u64, u64)), BootError> {
    let bytes = match mem.read(paddr, CMDLINE_LIMIT) {
        Some(bytes) => bytes,
        None => readable_prefix(mem, paddr, CMDLINE_LIMIT),
    };
    let Some(len) = bytes.iter().position(|&b| b == 0) else {
        return Err(if bytes.len() >= CMDLINE_LIMIT {
            BootError::NotNulTerminated {
                blob,
                paddr,
                limit: CMDLINE_LIMIT,
            }
        } else {
            BootError::OutsideMemory {
                blob,
                paddr,
                len: bytes.len() as u64 + 1,
            }
        });
    };
    let text = utf8(&bytes[..len], blob, paddr)?;
    Ok((text, range(paddr, len + 1)))
}

/// `bytes` (a string's contents, without its NUL) as UTF-8.
fn utf8(bytes: &[u8], blob: Blob, paddr: u64) -> Result<&str, BootError> {
    core::str::from_utf8(bytes).map_err(|e| BootError::NotUtf8 {
        blob,
        paddr,
        offset: e.valid_up_to(),
    })
}

/// The longest readable run at `paddr` shorter than `limit`, which is known unreadable.
/// Binary search is valid because readability is prefix-closed ([`PhysMemory::read`]).
fn readable_prefix(mem: &impl PhysMemory, paddr: u64, limit: usize) -> &[u8] {
    let (mut readable, mut unreadable) = (0, limit);
    while unreadable - readable > 1 {
        let mid = readable + (unreadable - readable) / 2;
        if mem.read(paddr, mid).is_some() {
            readable = mid;
        } else {
            unreadable = mid;
        }
    }
    mem.read(paddr, readable).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::fake::FakeMemory;
    use crate::hvm_start_info::{HeaderError, Repr};
    use crate::memory_map::Region;

    const BASE: u64 = 0x1000;
    const START_INFO: u64 = 0x1000;
    const CMDLINE: u64 = 0x1100;
    const MODLIST: u64 = 0x1200;
    const MEMMAP: u64 = 0x1300;
    const MODULE_CMDLINES: u64 = 0x1400;
    const MODULES: u64 = 0x2000;
    const MEMORY_LEN: usize = 0x3000;

    /// QEMU's PVH memory map for `-m 77`, plus its high firmware holes.
    const QEMU_MAP: [(u64, u64, u32); 6] = [
        (0, 0x9_fc00, 1),
        (0x9_fc00, 0x400, 2),
        (0xf_0000, 0x1_0000, 2),
        (0x10_0000, 0x4c0_0000, 1),
        (0xfeff_c000, 0x4000, 2),
        (0xfffc_0000, 0x4_0000, 2),
    ];

    const V1: Repr = Repr {
        version: 1,
        flags: 0,
        modlist: None,
        cmdline_paddr: None,
        rsdp_paddr: None,
        memmap: Some(Table {
            paddr: MEMMAP,
            entries: 6,
        }),
    };

    fn memory() -> FakeMemory<Vec<u8>> {
        FakeMemory::new(BASE, vec![0; MEMORY_LEN])
    }

    /// A minimal valid boot: version 1 header and the QEMU map.
    fn minimal() -> FakeMemory<Vec<u8>> {
        let mut mem = memory();
        mem.write_start_info(START_INFO, &V1);
        mem.write_memmap(MEMMAP, &QEMU_MAP);
        mem
    }

    fn with_header(repr: Repr) -> FakeMemory<Vec<u8>> {
        let mut mem = minimal();
        mem.write_start_info(START_INFO, &repr);
        mem
    }

    #[test]
    fn parses_qemu_like_boot_with_cmdline_modules_and_rsdp() {
        let mut mem = memory();
        mem.write_start_info(
            START_INFO,
            &Repr {
                version: 1,
                flags: 0x5,
                modlist: Some(Table {
                    paddr: MODLIST,
                    entries: 2,
                }),
                cmdline_paddr: Some(CMDLINE),
                rsdp_paddr: Some(0xf_5a40),
                memmap: Some(Table {
                    paddr: MEMMAP,
                    entries: 6,
                }),
            },
        );
        mem.write_cstr(CMDLINE, r#"console=hvc0 msg="hello world""#);
        mem.write_modlist(
            MODLIST,
            &[
                (MODULES, 0x800, MODULE_CMDLINES),
                (MODULES + 0x800, 0x10, 0),
            ],
        );
        mem.write_cstr(MODULE_CMDLINES, "initrd");
        mem.write_memmap(MEMMAP, &QEMU_MAP);

        let boot = BootInfo::from_pvh(&mem, START_INFO).unwrap();

        assert_eq!(boot.protocol, BootProtocol::Pvh { version: 1 });
        assert_eq!(boot.flags, 0x5);
        assert_eq!(boot.cmdline, r#"console=hvc0 msg="hello world""#);
        assert_eq!(boot.rsdp, Some(0xf_5a40));
        assert_eq!(boot.start_info_paddr, START_INFO);
        assert_eq!(
            boot.modules(),
            [
                Module {
                    paddr: MODULES,
                    size: 0x800,
                    cmdline: "initrd"
                },
                Module {
                    paddr: MODULES + 0x800,
                    size: 0x10,
                    cmdline: ""
                },
            ]
        );
        let region = |start, end, kind| Region { start, end, kind };
        assert_eq!(
            boot.memory_map.regions(),
            [
                region(0, 0x9_fc00, RegionKind::Usable),
                region(0x9_fc00, 0xa_0000, RegionKind::Reserved),
                region(0xf_0000, 0x10_0000, RegionKind::Reserved),
                region(0x10_0000, 0x4d0_0000, RegionKind::Usable),
                region(0xfeff_c000, 0xff00_0000, RegionKind::Reserved),
                region(0xfffc_0000, 0x1_0000_0000, RegionKind::Reserved),
            ]
        );
        assert_eq!(boot.memory_map.usable_bytes(), 0x9_fc00 + 0x4c0_0000);
        let cmdline_end = CMDLINE + boot.cmdline.len() as u64 + 1;
        assert_eq!(
            boot.occupied_ranges().collect::<Vec<_>>(),
            [
                (START_INFO, START_INFO + 56),
                (CMDLINE, cmdline_end),
                (MODLIST, MODLIST + 64),
                (MEMMAP, MEMMAP + 6 * 24),
                (MODULES, MODULES + 0x800),
                (MODULE_CMDLINES, MODULE_CMDLINES + 7),
                (MODULES + 0x800, MODULES + 0x810),
            ]
        );
    }

    #[test]
    fn minimal_boot_has_empty_cmdline_no_modules_no_rsdp() {
        let mem = minimal();
        let boot = BootInfo::from_pvh(&mem, START_INFO).unwrap();
        assert_eq!(boot.cmdline, "");
        assert_eq!(boot.modules(), []);
        assert_eq!(boot.rsdp, None);
        assert_eq!(
            boot.occupied_ranges().collect::<Vec<_>>(),
            [(START_INFO, START_INFO + 56), (MEMMAP, MEMMAP + 144)]
        );
    }

    #[test]
    fn parsing_twice_gives_equal_boot_info() {
        let mem = minimal();
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            BootInfo::from_pvh(&mem, START_INFO)
        );
    }

    #[test]
    fn accepts_later_versions_as_version_1() {
        let mem = with_header(Repr { version: 3, ..V1 });
        let boot = BootInfo::from_pvh(&mem, START_INFO).unwrap();
        assert_eq!(boot.protocol, BootProtocol::Pvh { version: 3 });
        assert_eq!(boot.memory_map.regions().len(), 6);
    }

    #[test]
    fn rejects_version_0_for_lack_of_a_memory_map() {
        let mut mem = memory();
        mem.write_start_info(
            START_INFO,
            &Repr {
                version: 0,
                memmap: None,
                ..V1
            },
        );
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::NoMemoryMap { version: 0 })
        );
    }

    #[test]
    fn rejects_version_1_with_zero_memmap_entries() {
        let mem = with_header(Repr { memmap: None, ..V1 });
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::NoMemoryMap { version: 1 })
        );
    }

    #[test]
    fn rejects_bad_magic() {
        let mut mem = minimal();
        mem.write(START_INFO, &0x1234_5678u32.to_le_bytes());
        let error = BootInfo::from_pvh(&mem, START_INFO).unwrap_err();
        assert_eq!(
            error,
            BootError::HvmStartInfo {
                paddr: START_INFO,
                error: HeaderError::BadMagic { found: 0x1234_5678 }
            }
        );
        assert_eq!(
            std::format!("{error}"),
            "hvm_start_info at 0x1000: bad magic 0x12345678 (expected 0x336ec578)"
        );
    }

    #[test]
    fn rejects_version_1_header_cut_off_by_end_of_memory() {
        let mut mem = FakeMemory::new(BASE, vec![0; 40]);
        let mut header = [0; 56];
        V1.emit(&mut StartInfo::new_unchecked(&mut header[..]));
        mem.write(START_INFO, &header[..40]);
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::HvmStartInfo {
                paddr: START_INFO,
                error: HeaderError::Truncated { need: 56, have: 40 }
            })
        );
    }

    #[test]
    fn rejects_start_info_outside_memory_or_at_top_of_address_space() {
        let mem = minimal();
        assert_eq!(
            BootInfo::from_pvh(&mem, 0x10_0000),
            Err(BootError::OutsideMemory {
                blob: Blob::HvmStartInfo,
                paddr: 0x10_0000,
                len: 40
            })
        );
        assert_eq!(
            BootInfo::from_pvh(&mem, u64::MAX - 8),
            Err(BootError::Overflow {
                blob: Blob::HvmStartInfo,
                paddr: u64::MAX - 8,
                len: 40
            })
        );
    }

    #[test]
    fn rejects_cmdline_outside_memory() {
        let mem = with_header(Repr {
            cmdline_paddr: Some(0x10_0000),
            ..V1
        });
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::OutsideMemory {
                blob: Blob::Cmdline,
                paddr: 0x10_0000,
                len: 1
            })
        );
    }

    #[test]
    fn rejects_cmdline_running_off_the_end_of_memory() {
        let end = BASE + MEMORY_LEN as u64;
        let mut mem = with_header(Repr {
            cmdline_paddr: Some(end - 10),
            ..V1
        });
        mem.write(end - 10, b"0123456789");
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::OutsideMemory {
                blob: Blob::Cmdline,
                paddr: end - 10,
                len: 11
            })
        );
    }

    #[test]
    fn accepts_cmdline_ending_at_the_last_byte_of_memory() {
        let end = BASE + MEMORY_LEN as u64;
        let mut mem = with_header(Repr {
            cmdline_paddr: Some(end - 4),
            ..V1
        });
        mem.write_cstr(end - 4, "a=1");
        assert_eq!(BootInfo::from_pvh(&mem, START_INFO).unwrap().cmdline, "a=1");
    }

    #[test]
    fn rejects_cmdline_without_nul_within_limit() {
        let mut mem = with_header(Repr {
            cmdline_paddr: Some(BASE + 0x1000),
            ..V1
        });
        mem.write(BASE + 0x1000, &[b'x'; CMDLINE_LIMIT]);
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::NotNulTerminated {
                blob: Blob::Cmdline,
                paddr: BASE + 0x1000,
                limit: CMDLINE_LIMIT
            })
        );
    }

    #[test]
    fn accepts_cmdline_of_exactly_the_limit_with_its_nul() {
        let text = "x".repeat(CMDLINE_LIMIT - 1);
        let mut mem = with_header(Repr {
            cmdline_paddr: Some(BASE + 0x1000),
            ..V1
        });
        mem.write_cstr(BASE + 0x1000, &text);
        assert_eq!(BootInfo::from_pvh(&mem, START_INFO).unwrap().cmdline, text);
    }

    #[test]
    fn rejects_non_utf8_cmdline() {
        let mut mem = with_header(Repr {
            cmdline_paddr: Some(CMDLINE),
            ..V1
        });
        mem.write(CMDLINE, b"ok \xff\xfe\0");
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::NotUtf8 {
                blob: Blob::Cmdline,
                paddr: CMDLINE,
                offset: 3
            })
        );
    }

    #[test]
    fn rejects_modlist_whose_end_overflows() {
        let paddr = u64::MAX - 0x10;
        let mem = with_header(Repr {
            modlist: Some(Table { paddr, entries: 2 }),
            ..V1
        });
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::Overflow {
                blob: Blob::ModuleList,
                paddr,
                len: 64
            })
        );
    }

    #[test]
    fn rejects_module_whose_end_overflows() {
        let mut mem = with_header(Repr {
            modlist: Some(Table {
                paddr: MODLIST,
                entries: 1,
            }),
            ..V1
        });
        mem.write_modlist(MODLIST, &[(u64::MAX - 0xfff, 0x1000, 0)]);
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::Overflow {
                blob: Blob::Module(0),
                paddr: u64::MAX - 0xfff,
                len: 0x1000
            })
        );
    }

    #[test]
    fn rejects_more_than_max_modules() {
        let mem = with_header(Repr {
            modlist: Some(Table {
                paddr: MODLIST,
                entries: 17,
            }),
            ..V1
        });
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::TooManyModules { count: 17 })
        );
    }

    #[test]
    fn accepts_max_modules() {
        let mut mem = with_header(Repr {
            modlist: Some(Table {
                paddr: MODLIST,
                entries: 16,
            }),
            ..V1
        });
        let modules: Vec<_> = (0..16).map(|i| (MODULES + i * 0x10, 0x10, 0)).collect();
        mem.write_modlist(MODLIST, &modules);
        let boot = BootInfo::from_pvh(&mem, START_INFO).unwrap();
        assert_eq!(boot.modules().len(), 16);
        assert_eq!(boot.modules()[15].paddr, MODULES + 0xf0);
        // Header, module list, memory map and 16 modules.
        assert_eq!(boot.occupied_ranges().count(), 19);
    }

    #[test]
    fn names_the_module_whose_cmdline_is_bad() {
        let mut mem = with_header(Repr {
            modlist: Some(Table {
                paddr: MODLIST,
                entries: 2,
            }),
            ..V1
        });
        mem.write_modlist(MODLIST, &[(MODULES, 1, 0), (MODULES, 1, MODULE_CMDLINES)]);
        mem.write(MODULE_CMDLINES, b"\xc3\0");
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::NotUtf8 {
                blob: Blob::ModuleCmdline(1),
                paddr: MODULE_CMDLINES,
                offset: 0
            })
        );
    }

    #[test]
    fn rejects_modlist_outside_memory() {
        let mem = with_header(Repr {
            modlist: Some(Table {
                paddr: 0x8000,
                entries: 1,
            }),
            ..V1
        });
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::OutsideMemory {
                blob: Blob::ModuleList,
                paddr: 0x8000,
                len: 32
            })
        );
    }

    #[test]
    fn rejects_more_memmap_entries_than_capacity() {
        let mem = with_header(Repr {
            memmap: Some(Table {
                paddr: MEMMAP,
                entries: 300,
            }),
            ..V1
        });
        let error = BootInfo::from_pvh(&mem, START_INFO).unwrap_err();
        assert_eq!(error, BootError::TooManyRegions { entries: 300 });
        assert_eq!(
            std::format!("{error}"),
            "memory map: 300 entries exceed capacity 128"
        );
    }

    #[test]
    fn rejects_memmap_entry_whose_end_overflows() {
        let mut mem = minimal();
        mem.write_memmap(MEMMAP + 5 * 24, &[(u64::MAX, 1, 2)]);
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::RegionOverflow {
                addr: u64::MAX,
                size: 1
            })
        );
    }

    #[test]
    fn rejects_memmap_outside_memory() {
        let mem = with_header(Repr {
            memmap: Some(Table {
                paddr: 0x3fe0,
                entries: 2,
            }),
            ..V1
        });
        assert_eq!(
            BootInfo::from_pvh(&mem, START_INFO),
            Err(BootError::OutsideMemory {
                blob: Blob::MemoryMap,
                paddr: 0x3fe0,
                len: 48
            })
        );
    }

    #[test]
    fn skips_zero_size_memmap_entries() {
        let mut mem = with_header(Repr {
            memmap: Some(Table {
                paddr: MEMMAP,
                entries: 3,
            }),
            ..V1
        });
        mem.write_memmap(
            MEMMAP,
            &[(0, 0x9_fc00, 1), (0x9_fc00, 0, 2), (0x10_0000, 0, 1)],
        );
        let boot = BootInfo::from_pvh(&mem, START_INFO).unwrap();
        assert_eq!(
            boot.memory_map.regions(),
            [Region {
                start: 0,
                end: 0x9_fc00,
                kind: RegionKind::Usable
            }]
        );
    }

    #[test]
    fn overlapping_ram_counts_once_and_reserved_wins() {
        let mut mem = with_header(Repr {
            memmap: Some(Table {
                paddr: MEMMAP,
                entries: 4,
            }),
            ..V1
        });
        mem.write_memmap(
            MEMMAP,
            &[
                (0x10_0000, 0x10_0000, 1),
                (0x18_0000, 0x10_0000, 1),
                (0x10_0000, 0x10_0000, 1),
                (0x1f_0000, 0x2_0000, 2),
            ],
        );
        let boot = BootInfo::from_pvh(&mem, START_INFO).unwrap();
        let ranges: Vec<_> = boot.memory_map.usable_ranges().collect();
        assert_eq!(ranges, [(0x10_0000, 0x1f_0000), (0x21_0000, 0x28_0000)]);
        assert_eq!(boot.memory_map.usable_bytes(), 0xf_0000 + 0x7_0000);
    }

    mod xen_pv {
        use std::vec;
        use std::vec::Vec;

        use super::super::*;
        use crate::fake::FakeMemory;
        use crate::memory_map::Region;
        use crate::xen_start_info::{
            Magic, PvModule, RingPage, SIF_INITDOMAIN, SIF_MOD_START_PFN, SIF_PRIVILEGED,
            XenConsole, XenVersion,
        };

        /// A libxc-built domU with 96 MiB, `VIRT_BASE` 0: kernel, P2M list, start_info,
        /// xenstore and console pages, six page-table frames, boot stack.
        const MFN_LIST: u64 = 0x20_0000;
        const START_INFO: u64 = 0x23_0000;
        const PT_BASE: u64 = 0x23_3000;
        const CMDLINE: u64 = START_INFO + 128;

        const DOMU: XenPvInfo = XenPvInfo {
            version: XenVersion { major: 3, minor: 0 },
            nr_pages: 24576,
            shared_info_maddr: 0x8_7654_3000,
            flags: 0,
            store: Some(RingPage {
                mfn: 0x12_3401,
                evtchn: 1,
            }),
            console: XenConsole::DomU(Some(RingPage {
                mfn: 0x12_3402,
                evtchn: 2,
            })),
            pt_base: PT_BASE,
            nr_pt_frames: 6,
            mfn_list: MFN_LIST,
            module: None,
        };

        /// Readable memory: the start_info page only, as nothing else is read.
        fn memory(info: &XenPvInfo, cmdline: &str) -> FakeMemory<Vec<u8>> {
            let mut mem = FakeMemory::new(START_INFO, vec![0; 0x1000]);
            mem.write_xen_start_info(START_INFO, info, cmdline);
            mem
        }

        fn parse_error(mem: &FakeMemory<Vec<u8>>) -> BootError {
            BootInfo::from_xen_pv(mem, START_INFO).unwrap_err()
        }

        fn start_info_error(error: StartInfoError) -> BootError {
            BootError::XenStartInfo {
                vaddr: START_INFO,
                error,
            }
        }

        #[test]
        fn parses_libxc_domu_start_info() {
            let mem = memory(&DOMU, "x=1 y=two");
            let boot = BootInfo::from_xen_pv(&mem, START_INFO).unwrap();

            assert_eq!(boot.protocol, BootProtocol::XenPv(DOMU));
            assert_eq!(boot.flags, 0);
            assert_eq!(boot.cmdline, "x=1 y=two");
            assert_eq!(boot.rsdp, None);
            assert_eq!(boot.start_info_paddr, START_INFO);
            assert_eq!(boot.modules(), []);
            assert_eq!(
                boot.memory_map.regions(),
                [Region {
                    start: 0,
                    end: 0x600_0000,
                    kind: RegionKind::Usable
                }]
            );
            assert_eq!(boot.memory_map.usable_bytes(), 96 << 20);
            assert_eq!(
                boot.occupied_ranges().collect::<Vec<_>>(),
                [
                    (MFN_LIST, MFN_LIST + 24576 * 8),
                    (START_INFO, PT_BASE + 7 * 0x1000),
                ]
            );
        }

        #[test]
        fn parses_dom0_start_info_with_vga_console_info_and_initrd() {
            let dom0 = XenPvInfo {
                flags: SIF_PRIVILEGED | SIF_INITDOMAIN,
                store: None,
                console: XenConsole::Dom0 {
                    info_off: 1168,
                    info_size: 36,
                },
                module: Some(PvModule {
                    start: 0x100_0000,
                    len: 0x12_3456,
                    is_pfn: false,
                }),
                ..DOMU
            };
            let mem = memory(&dom0, "console=hvc0");
            let boot = BootInfo::from_xen_pv(&mem, START_INFO).unwrap();
            assert_eq!(boot.protocol, BootProtocol::XenPv(dom0));
            assert_eq!(boot.flags, SIF_PRIVILEGED | SIF_INITDOMAIN);
            assert_eq!(boot.cmdline, "console=hvc0");
            assert_eq!(
                boot.modules(),
                [Module {
                    paddr: 0x100_0000,
                    size: 0x12_3456,
                    cmdline: ""
                }]
            );
            assert_eq!(
                boot.occupied_ranges().collect::<Vec<_>>(),
                [
                    (0x100_0000, 0x112_3456),
                    (MFN_LIST, MFN_LIST + 24576 * 8),
                    (START_INFO, PT_BASE + 7 * 0x1000),
                ]
            );
        }

        #[test]
        fn module_with_sif_mod_start_pfn_is_at_pfn_times_page_size() {
            let info = XenPvInfo {
                flags: SIF_MOD_START_PFN,
                module: Some(PvModule {
                    start: 0x4000,
                    len: 0x20_0000,
                    is_pfn: true,
                }),
                ..DOMU
            };
            let mem = memory(&info, "");
            let boot = BootInfo::from_xen_pv(&mem, START_INFO).unwrap();
            assert_eq!(boot.modules()[0].paddr, 0x400_0000);
            assert_eq!(boot.modules()[0].size, 0x20_0000);
            assert_eq!(
                boot.occupied_ranges().next(),
                Some((0x400_0000, 0x420_0000))
            );
        }

        #[test]
        fn empty_module_is_listed_but_not_reserved() {
            let info = XenPvInfo {
                module: Some(PvModule {
                    start: 0x100_0000,
                    len: 0,
                    is_pfn: false,
                }),
                ..DOMU
            };
            let mem = memory(&info, "");
            let boot = BootInfo::from_xen_pv(&mem, START_INFO).unwrap();
            assert_eq!(boot.modules().len(), 1);
            assert_eq!(boot.occupied_ranges().count(), 2);
        }

        #[test]
        fn parsing_twice_gives_equal_boot_info() {
            let mem = memory(&DOMU, "a=b");
            assert_eq!(
                BootInfo::from_xen_pv(&mem, START_INFO),
                BootInfo::from_xen_pv(&mem, START_INFO)
            );
        }

        #[test]
        fn rejects_bad_magic() {
            let with_magic = |text: &[u8]| {
                let mut magic = [0; 32];
                magic[..text.len()].copy_from_slice(text);
                let mut mem = memory(&DOMU, "");
                mem.write(START_INFO, &magic);
                (parse_error(&mem), Magic(magic))
            };
            let (error, magic) = with_magic(b"XEN-3.0-x86_64");
            assert_eq!(error, start_info_error(StartInfoError::BadMagic { magic }));
            let (error, magic) = with_magic(b"xen-3.0-x86_32p");
            assert_eq!(
                error,
                start_info_error(StartInfoError::UnsupportedPlatform { magic })
            );
            let (error, magic) = with_magic(b"xen-3.0-x86_64\xffxxxxxxxxxxxxxxxxx");
            assert_eq!(
                error,
                start_info_error(StartInfoError::MagicNotTerminated { magic })
            );
            let mut mem = memory(&DOMU, "");
            mem.write(START_INFO, b"xen-3.0-x86_32p\0");
            assert_eq!(
                std::format!("{}", parse_error(&mem)),
                "start_info at 0x230000: magic \"xen-3.0-x86_32p\" is for another platform \
                 (this kernel is x86_64)"
            );
        }

        #[test]
        fn rejects_cmdline_without_nul_in_its_1024_bytes() {
            let mut mem = memory(&DOMU, "");
            mem.write(CMDLINE, &[b'x'; 1024]);
            assert_eq!(
                parse_error(&mem),
                BootError::NotNulTerminated {
                    blob: Blob::Cmdline,
                    paddr: CMDLINE,
                    limit: 1024
                }
            );
        }

        #[test]
        fn accepts_cmdline_of_1023_bytes() {
            let text = "y".repeat(1023);
            let mem = memory(&DOMU, &text);
            assert_eq!(
                BootInfo::from_xen_pv(&mem, START_INFO).unwrap().cmdline,
                text
            );
        }

        #[test]
        fn rejects_non_utf8_cmdline() {
            let mut mem = memory(&DOMU, "");
            mem.write(CMDLINE, b"x=1 \xc3\x28\0");
            assert_eq!(
                parse_error(&mem),
                BootError::NotUtf8 {
                    blob: Blob::Cmdline,
                    paddr: CMDLINE,
                    offset: 4
                }
            );
        }

        #[test]
        fn rejects_zero_pages_and_pages_overflowing_the_address_space() {
            let mem = memory(
                &XenPvInfo {
                    nr_pages: 0,
                    ..DOMU
                },
                "",
            );
            assert_eq!(parse_error(&mem), start_info_error(StartInfoError::NoPages));
            let nr_pages = u64::MAX / 4096 + 1;
            let mem = memory(
                &XenPvInfo {
                    nr_pages,
                    mfn_list: 0,
                    ..DOMU
                },
                "",
            );
            assert_eq!(
                parse_error(&mem),
                start_info_error(StartInfoError::TooManyPages { nr_pages })
            );
        }

        #[test]
        fn rejects_dom0_console_info_outside_the_page() {
            let info = XenPvInfo {
                flags: SIF_INITDOMAIN,
                console: XenConsole::Dom0 {
                    info_off: 4000,
                    info_size: 100,
                },
                ..DOMU
            };
            assert_eq!(
                parse_error(&memory(&info, "")),
                start_info_error(StartInfoError::Dom0ConsoleOutsidePage {
                    info_off: 4000,
                    info_size: 100
                })
            );
        }

        #[test]
        fn rejects_page_tables_below_start_info() {
            let info = XenPvInfo {
                pt_base: START_INFO - 0x1000,
                ..DOMU
            };
            assert_eq!(
                parse_error(&memory(&info, "")),
                start_info_error(StartInfoError::PageTablesBeforeStartInfo {
                    pt_base: START_INFO - 0x1000
                })
            );
        }

        #[test]
        fn rejects_start_info_cut_off_by_the_end_of_memory() {
            let mut mem = FakeMemory::new(START_INFO, vec![0; 1151]);
            let mut bytes = [0; 1152];
            DOMU.emit(&mut crate::xen_start_info::StartInfo::new_unchecked(
                &mut bytes[..],
            ));
            mem.write(START_INFO, &bytes[..1151]);
            assert_eq!(
                parse_error(&mem),
                BootError::OutsideMemory {
                    blob: Blob::XenStartInfo,
                    paddr: START_INFO,
                    len: 1152
                }
            );
        }

        #[test]
        fn rejects_start_info_at_the_top_of_the_address_space() {
            let mem = FakeMemory::new(u64::MAX - 0xff, vec![0; 0x100]);
            assert_eq!(
                BootInfo::from_xen_pv(&mem, u64::MAX - 0xff),
                Err(BootError::Overflow {
                    blob: Blob::XenStartInfo,
                    paddr: u64::MAX - 0xff,
                    len: 1152
                })
            );
        }
    }
}
