//! Xen PV `start_info` as a checked view.
//!
//! Spec: `struct start_info` in `xen/include/public/xen.h`, x86_64 layout (`unsigned long` is 8
//! bytes, fields naturally aligned), little-endian:
//!
//! ```text
//!    0 magic[32]        "xen-<version>-<platform>", NUL-padded ("xen-3.0-x86_64")
//!   32 nr_pages         pages allocated to the domain
//!   40 shared_info      MACHINE address of the shared info page
//!   48 flags            SIF_xxx
//!   52 (pad)
//!   56 store_mfn        MACHINE frame of the xenstore ring
//!   64 store_evtchn
//!   68 (pad)
//!   72 console          union: domU { mfn @72, evtchn @80 } | dom0 { info_off @72, info_size @76 }
//!   88 pt_base          VIRTUAL address of the bootstrap page tables
//!   96 nr_pt_frames
//!  104 mfn_list         VIRTUAL address of the P2M list (nr_pages entries of 8 bytes)
//!  112 mod_start        VIRTUAL address of the module (a PFN with SIF_MOD_START_PFN)
//!  120 mod_len
//!  128 cmd_line[1024]   MAX_GUEST_CMDLINE, NUL-terminated
//! 1152
//! ```
//!
//! Newer headers append `first_p2m_pfn` and `nr_p2m_frames` (1152..1168). They are not read:
//! the toolstack fills them only for a kernel that asks for a separately mapped P2M list
//! (`XEN_ELFNOTE_INIT_P2M`), which Ringbolt does not, and the 1152 bytes above are what every
//! Xen since 3.0 writes.
//!
//! [`XenPvInfo`] plays the smoltcp `Repr` role: it holds the fields of a structure that passed
//! every check, with the union decoded by `SIF_INITDOMAIN` and every address range known not
//! to overflow. The command line is the view's payload ([`StartInfo::cmd_line`]), decoded by
//! [`BootInfo::from_xen_pv`](crate::BootInfo::from_xen_pv).

use core::fmt::{self, Write as _};

use crate::le::{Field, read_u32, read_u64, write_u32, write_u64};

/// `SIF_PRIVILEGED`: the domain may access hardware.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `SIF_INITDOMAIN`: the initial control domain (dom0); selects `console.dom0`.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `SIF_MULTIBOOT_MOD`: the module is a package of `xen_multiboot_mod_list` modules. The
/// package is reported as one module; unpacking it is the consumer's business.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `SIF_MOD_START_PFN`: `mod_start` is a pseudo-physical frame number, not a virtual address
/// (the module is then not in the bootstrap mapping).
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// `SIF_VIRT_P2M_4TOOLS`: the toolstack understands a virtually mapped P2M list.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// `SIF_PM_MASK`: power-management flags.
pub const SIF_PM_MASK: u32 = 0xff << 8;

/// Bytes of `magic`, NUL included.
pub const MAGIC_LEN: usize = field::MAGIC.end;
/// `MAX_GUEST_CMDLINE`: bytes of `cmd_line`, NUL included.
pub const MAX_GUEST_CMDLINE: usize = field::CMD_LINE.end - field::CMD_LINE.start;
/// Offset of `cmd_line` in the structure.
pub const CMD_LINE_OFFSET: usize = field::CMD_LINE.start;
/// The bytes of `start_info` this crate reads: through `cmd_line`.
pub const START_INFO_LEN: usize = field::CMD_LINE.end;
/// x86 page size, the unit of `nr_pages` and `nr_pt_frames`.
pub const PAGE_SIZE: u64 = 4096;
/// The slack xen.h's start-of-day layout guarantees after the last bootstrap element ("at
/// least 512kB padding"); it also covers the one-page boot stack, which has no field.
pub const BOOTSTRAP_PADDING: u64 = 512 << 10;

/// The platform this kernel runs on, as the magic names it.
const PLATFORM: &[u8] = b"x86_64";

mod field {
    use super::Field;

    pub const MAGIC: Field = 0..32;
    pub const NR_PAGES: Field = 32..40;
    pub const SHARED_INFO: Field = 40..48;
    pub const FLAGS: Field = 48..52;
    pub const STORE_MFN: Field = 56..64;
    pub const STORE_EVTCHN: Field = 64..68;
    pub const CONSOLE_DOMU_MFN: Field = 72..80;
    pub const CONSOLE_DOMU_EVTCHN: Field = 80..84;
    pub const CONSOLE_DOM0_INFO_OFF: Field = 72..76;
    pub const CONSOLE_DOM0_INFO_SIZE: Field = 76..80;
    /// The whole `console` union, cleared before writing one variant.
    pub const CONSOLE: Field = 72..88;
    pub const PT_BASE: Field = 88..96;
    pub const NR_PT_FRAMES: Field = 96..104;
    pub const MFN_LIST: Field = 104..112;
    pub const MOD_START: Field = 112..120;
    pub const MOD_LEN: Field = 120..128;
    pub const CMD_LINE: Field = 128..1152;
}

/// The 32 `magic` bytes as found, shown up to the first NUL with non-printable bytes escaped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Magic(pub [u8; MAGIC_LEN]);

impl Magic {
    /// The bytes before the first NUL (all 32 if there is none).
    pub fn text(&self) -> &[u8] {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(MAGIC_LEN);
        &self.0[..len]
    }
}

impl fmt::Display for Magic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.text().escape_ascii())
    }
}

impl fmt::Debug for Magic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Magic({self})")
    }
}

/// Why a buffer is not a usable `start_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// The buffer is shorter than [`START_INFO_LEN`].
    Truncated { need: usize, have: usize },
    /// No NUL among the 32 magic bytes.
    MagicNotTerminated { magic: Magic },
    /// Not `xen-<major>.<minor>-<platform>`: whatever the start-of-day pointer points at, it is
    /// not a `start_info`.
    BadMagic { magic: Magic },
    /// A `start_info` for another platform (`x86_32`, `x86_32p`): the domain was built for a
    /// different kernel.
    UnsupportedPlatform { magic: Magic },
    /// `nr_pages` is 0: the domain has no memory, not even the pages this structure is in.
    NoPages,
    /// `nr_pages * 4096` does not fit in 64 bits.
    TooManyPages { nr_pages: u64 },
    /// The P2M list, `mfn_list + nr_pages * 8`, ends past 2^64.
    MfnListOverflow { mfn_list: u64, nr_pages: u64 },
    /// The bootstrap region, `pt_base + nr_pt_frames * 4096` plus the 512 KiB padding, ends
    /// past 2^64.
    PageTablesOverflow { pt_base: u64, nr_pt_frames: u64 },
    /// The module's end (`mod_start`, times 4096 if `pfn`, plus `mod_len`) is past 2^64.
    ModuleOverflow {
        mod_start: u64,
        mod_len: u64,
        pfn: bool,
    },
    /// dom0's `dom0_vga_console_info` is not inside the start_info page after the fields read
    /// here (see [`XenConsole::Dom0`]).
    Dom0ConsoleOutsidePage { info_off: u32, info_size: u32 },
    /// `pt_base` lies below the start_info: the start-of-day layout (page tables after
    /// start_info) is broken, so where the bootstrap elements are cannot be told.
    PageTablesBeforeStartInfo { pt_base: u64 },
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StartInfoError::Truncated { need, have } => {
                write!(f, "truncated (need {need} bytes, have {have})")
            }
            StartInfoError::MagicNotTerminated { magic } => {
                write!(
                    f,
                    "magic {magic} is not NUL-terminated within {MAGIC_LEN} bytes"
                )
            }
            StartInfoError::BadMagic { magic } => write!(
                f,
                "bad magic {magic} (expected \"xen-<major>.<minor>-x86_64\")"
            ),
            StartInfoError::UnsupportedPlatform { magic } => write!(
                f,
                "magic {magic} is for another platform (this kernel is x86_64)"
            ),
            StartInfoError::NoPages => f.write_str("nr_pages is 0"),
            StartInfoError::TooManyPages { nr_pages } => {
                write!(f, "nr_pages {nr_pages:#x} overflows the address space")
            }
            StartInfoError::MfnListOverflow { mfn_list, nr_pages } => write!(
                f,
                "mfn_list at {mfn_list:#x} with {nr_pages:#x} entries overflows the address space"
            ),
            StartInfoError::PageTablesOverflow {
                pt_base,
                nr_pt_frames,
            } => write!(
                f,
                "pt_base {pt_base:#x} with {nr_pt_frames:#x} frames and 512 KiB padding \
                 overflows the address space"
            ),
            StartInfoError::ModuleOverflow {
                mod_start,
                mod_len,
                pfn,
            } => write!(
                f,
                "module at {}{mod_start:#x} of {mod_len:#x} bytes overflows the address space",
                if pfn { "pfn " } else { "" }
            ),
            StartInfoError::Dom0ConsoleOutsidePage {
                info_off,
                info_size,
            } => write!(
                f,
                "dom0 console info at offset {info_off:#x} of {info_size:#x} bytes is not \
                 within bytes {START_INFO_LEN:#x}..{PAGE_SIZE:#x} of the start_info page"
            ),
            StartInfoError::PageTablesBeforeStartInfo { pt_base } => {
                write!(f, "pt_base {pt_base:#x} lies below start_info")
            }
        }
    }
}

impl core::error::Error for StartInfoError {}

/// A view of a `start_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartInfo<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> StartInfo<T> {
    /// Wraps `buffer` without checks; accessors panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Self {
        StartInfo { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, StartInfoError> {
        let view = Self::new_unchecked(buffer);
        view.check_len()?;
        Ok(view)
    }

    /// Ensures the buffer holds [`START_INFO_LEN`] bytes, so that no accessor can panic. The
    /// contents are checked by [`XenPvInfo::parse`].
    pub fn check_len(&self) -> Result<(), StartInfoError> {
        let have = self.buffer.as_ref().len();
        if have < START_INFO_LEN {
            return Err(StartInfoError::Truncated {
                need: START_INFO_LEN,
                have,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn magic(&self) -> Magic {
        let mut magic = [0; MAGIC_LEN];
        magic.copy_from_slice(&self.buffer.as_ref()[field::MAGIC]);
        Magic(magic)
    }

    pub fn nr_pages(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::NR_PAGES)
    }

    pub fn shared_info(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::SHARED_INFO)
    }

    pub fn flags(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::FLAGS)
    }

    pub fn store_mfn(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::STORE_MFN)
    }

    pub fn store_evtchn(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::STORE_EVTCHN)
    }

    /// `console.domU.mfn`; meaningful without `SIF_INITDOMAIN`.
    pub fn console_domu_mfn(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::CONSOLE_DOMU_MFN)
    }

    /// `console.domU.evtchn`; meaningful without `SIF_INITDOMAIN`.
    pub fn console_domu_evtchn(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::CONSOLE_DOMU_EVTCHN)
    }

    /// `console.dom0.info_off`; meaningful with `SIF_INITDOMAIN`.
    pub fn console_dom0_info_off(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::CONSOLE_DOM0_INFO_OFF)
    }

    /// `console.dom0.info_size`; meaningful with `SIF_INITDOMAIN`.
    pub fn console_dom0_info_size(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::CONSOLE_DOM0_INFO_SIZE)
    }

    pub fn pt_base(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::PT_BASE)
    }

    pub fn nr_pt_frames(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::NR_PT_FRAMES)
    }

    pub fn mfn_list(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::MFN_LIST)
    }

    pub fn mod_start(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::MOD_START)
    }

    pub fn mod_len(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::MOD_LEN)
    }
}

impl<'a> StartInfo<&'a [u8]> {
    /// The raw `cmd_line` bytes, borrowed for as long as the buffer is.
    pub fn cmd_line(&self) -> &'a [u8] {
        &self.buffer[field::CMD_LINE]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> StartInfo<T> {
    /// Writes `text` NUL-padded; it must be shorter than 32 bytes to leave room for the NUL.
    pub fn set_magic(&mut self, text: &[u8]) {
        set_cstr(&mut self.buffer.as_mut()[field::MAGIC], text);
    }

    pub fn set_nr_pages(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::NR_PAGES, value);
    }

    pub fn set_shared_info(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::SHARED_INFO, value);
    }

    pub fn set_flags(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::FLAGS, value);
    }

    pub fn set_store_mfn(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::STORE_MFN, value);
    }

    pub fn set_store_evtchn(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::STORE_EVTCHN, value);
    }

    /// Zeroes the `console` union (and so the padding of the variant written next).
    pub fn clear_console(&mut self) {
        self.buffer.as_mut()[field::CONSOLE].fill(0);
    }

    pub fn set_console_domu_mfn(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::CONSOLE_DOMU_MFN, value);
    }

    pub fn set_console_domu_evtchn(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::CONSOLE_DOMU_EVTCHN, value);
    }

    pub fn set_console_dom0_info_off(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::CONSOLE_DOM0_INFO_OFF, value);
    }

    pub fn set_console_dom0_info_size(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::CONSOLE_DOM0_INFO_SIZE, value);
    }

    pub fn set_pt_base(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::PT_BASE, value);
    }

    pub fn set_nr_pt_frames(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::NR_PT_FRAMES, value);
    }

    pub fn set_mfn_list(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::MFN_LIST, value);
    }

    pub fn set_mod_start(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::MOD_START, value);
    }

    pub fn set_mod_len(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::MOD_LEN, value);
    }

    /// Writes `text` NUL-padded; it must be shorter than 1024 bytes to leave room for the NUL.
    pub fn set_cmd_line(&mut self, text: &[u8]) {
        set_cstr(&mut self.buffer.as_mut()[field::CMD_LINE], text);
    }

    /// Zeroes the two padding words, as Xen (which clears the page first) leaves them.
    pub fn clear_padding(&mut self) {
        let data = self.buffer.as_mut();
        data[52..56].fill(0);
        data[68..72].fill(0);
    }
}

/// Copies `text` into `slot` and fills the rest with NULs; panics if no NUL would remain.
fn set_cstr(slot: &mut [u8], text: &[u8]) {
    assert!(
        text.len() < slot.len(),
        "{} bytes do not fit a {}-byte C string",
        text.len(),
        slot.len()
    );
    slot[..text.len()].copy_from_slice(text);
    slot[text.len()..].fill(0);
}

/// The Xen interface version the magic names; every Xen since 3.0 writes "3.0".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenVersion {
    pub major: u16,
    pub minor: u16,
}

impl fmt::Display for XenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A shared ring page the domain is given by machine frame, with its event channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingPage {
    /// MACHINE frame number, never 0. Reach it through the M2P, not the bootstrap mapping.
    pub mfn: u64,
    pub evtchn: u32,
}

/// The `console` union, decoded by `SIF_INITDOMAIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenConsole {
    /// `console.domU`: the console ring, `None` when `mfn` is 0 (no console was set up).
    DomU(Option<RingPage>),
    /// `console.dom0`: a `dom0_vga_console_info` (xen.h) at byte `info_off` of the start_info
    /// page, `info_size` bytes long. dom0 has no console ring.
    ///
    /// `info_size == 0` means there is none (Xen found no VGA or VESA console and leaves both
    /// fields 0); `info_off` is then not checked. Otherwise the info must lie in the page after
    /// the fields this crate reads: `START_INFO_LEN <= info_off` and
    /// `info_off + info_size <= 4096`. Xen places it right after `struct start_info` (offset
    /// 1168 on current Xen), which this accepts.
    Dom0 { info_off: u32, info_size: u32 },
}

/// The pre-loaded module (`mod_start`, `mod_len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PvModule {
    /// A virtual address, or a pseudo-physical frame number if `is_pfn`.
    pub start: u64,
    pub len: u64,
    /// `SIF_MOD_START_PFN`: the module is not in the bootstrap mapping.
    pub is_pfn: bool,
}

impl PvModule {
    /// The module's first byte: a pseudo-physical address if `is_pfn`, else the virtual
    /// address, which is the same number while the kernel's `VIRT_BASE` is 0 (the bootstrap
    /// mapping is 1:1 with pseudo-physical memory). Saturates on a module not from
    /// [`XenPvInfo::parse`], which guarantees `addr() + len` fits.
    pub fn addr(&self) -> u64 {
        if self.is_pfn {
            self.start.saturating_mul(PAGE_SIZE)
        } else {
            self.start
        }
    }
}

/// A validated `start_info`, without its command line: the PV-specific part of
/// [`BootInfo`](crate::BootInfo).
///
/// From [`parse`](Self::parse), every range the helpers compute fits in 64 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenPvInfo {
    /// From the magic, `xen-<major>.<minor>-x86_64`.
    pub version: XenVersion,
    /// Pages allocated to the domain, never 0; pseudo-physical memory is
    /// `[0, nr_pages * 4096)`.
    pub nr_pages: u64,
    /// MACHINE address of the shared info page.
    pub shared_info_maddr: u64,
    /// `SIF_*`, as given.
    pub flags: u32,
    /// The xenstore ring; `None` when `store_mfn` is 0, as for dom0 before xenstored runs.
    pub store: Option<RingPage>,
    pub console: XenConsole,
    /// VIRTUAL address of the bootstrap page tables (mapped read-only).
    pub pt_base: u64,
    pub nr_pt_frames: u64,
    /// VIRTUAL address of the P2M list: `nr_pages` machine frame numbers of 8 bytes.
    pub mfn_list: u64,
    /// `None` when `mod_start` is 0 (Linux's rule for "no initrd").
    pub module: Option<PvModule>,
}

impl XenPvInfo {
    /// Checks the magic, page counts, console and address ranges of `view`, reading each field
    /// once.
    pub fn parse<T: AsRef<[u8]>>(view: &StartInfo<T>) -> Result<XenPvInfo, StartInfoError> {
        view.check_len()?;
        let version = parse_magic(view.magic())?;
        let nr_pages = view.nr_pages();
        if nr_pages == 0 {
            return Err(StartInfoError::NoPages);
        }
        if nr_pages.checked_mul(PAGE_SIZE).is_none() {
            return Err(StartInfoError::TooManyPages { nr_pages });
        }
        let flags = view.flags();
        let ring = |mfn, evtchn| (mfn != 0).then_some(RingPage { mfn, evtchn });

        let console = if flags & SIF_INITDOMAIN != 0 {
            let (info_off, info_size) =
                (view.console_dom0_info_off(), view.console_dom0_info_size());
            let end = u64::from(info_off) + u64::from(info_size);
            if info_size != 0 && (info_off < START_INFO_LEN as u32 || end > PAGE_SIZE) {
                return Err(StartInfoError::Dom0ConsoleOutsidePage {
                    info_off,
                    info_size,
                });
            }
            XenConsole::Dom0 {
                info_off,
                info_size,
            }
        } else {
            XenConsole::DomU(ring(view.console_domu_mfn(), view.console_domu_evtchn()))
        };

        let mfn_list = view.mfn_list();
        // Cannot overflow: nr_pages * 4096 does not.
        if mfn_list.checked_add(nr_pages * 8).is_none() {
            return Err(StartInfoError::MfnListOverflow { mfn_list, nr_pages });
        }
        let (pt_base, nr_pt_frames) = (view.pt_base(), view.nr_pt_frames());
        let pt_end = nr_pt_frames
            .checked_mul(PAGE_SIZE)
            .and_then(|len| pt_base.checked_add(len))
            .and_then(|end| end.checked_add(BOOTSTRAP_PADDING));
        if pt_end.is_none() {
            return Err(StartInfoError::PageTablesOverflow {
                pt_base,
                nr_pt_frames,
            });
        }
        let (mod_start, mod_len) = (view.mod_start(), view.mod_len());
        let module = if mod_start == 0 {
            None
        } else {
            let pfn = flags & SIF_MOD_START_PFN != 0;
            let addr = if pfn {
                mod_start.checked_mul(PAGE_SIZE)
            } else {
                Some(mod_start)
            };
            if addr.and_then(|addr| addr.checked_add(mod_len)).is_none() {
                return Err(StartInfoError::ModuleOverflow {
                    mod_start,
                    mod_len,
                    pfn,
                });
            }
            Some(PvModule {
                start: mod_start,
                len: mod_len,
                is_pfn: pfn,
            })
        };

        Ok(XenPvInfo {
            version,
            nr_pages,
            shared_info_maddr: view.shared_info(),
            flags,
            store: ring(view.store_mfn(), view.store_evtchn()),
            console,
            pt_base,
            nr_pt_frames,
            mfn_list,
            module,
        })
    }

    /// Writes every field but `cmd_line`, with the magic `xen-<version>-x86_64`; `view` must
    /// hold [`START_INFO_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, view: &mut StartInfo<T>) {
        let mut magic = MagicWriter::default();
        // Two u16s and the fixed parts take at most 22 bytes, so this cannot fail.
        let _ = write!(magic, "xen-{}-x86_64", self.version);
        view.set_magic(&magic.bytes[..magic.len]);
        view.set_nr_pages(self.nr_pages);
        view.set_shared_info(self.shared_info_maddr);
        view.set_flags(self.flags);
        view.clear_padding();
        view.set_store_mfn(self.store.map_or(0, |ring| ring.mfn));
        view.set_store_evtchn(self.store.map_or(0, |ring| ring.evtchn));
        view.clear_console();
        match self.console {
            XenConsole::DomU(ring) => {
                view.set_console_domu_mfn(ring.map_or(0, |ring| ring.mfn));
                view.set_console_domu_evtchn(ring.map_or(0, |ring| ring.evtchn));
            }
            XenConsole::Dom0 {
                info_off,
                info_size,
            } => {
                view.set_console_dom0_info_off(info_off);
                view.set_console_dom0_info_size(info_size);
            }
        }
        view.set_pt_base(self.pt_base);
        view.set_nr_pt_frames(self.nr_pt_frames);
        view.set_mfn_list(self.mfn_list);
        view.set_mod_start(self.module.map_or(0, |module| module.start));
        view.set_mod_len(self.module.map_or(0, |module| module.len));
    }

    /// Bytes of pseudo-physical memory, `nr_pages * 4096` (saturating for an info not from
    /// [`parse`](Self::parse)).
    pub fn memory_bytes(&self) -> u64 {
        self.nr_pages.saturating_mul(PAGE_SIZE)
    }

    /// `[mfn_list, mfn_list + nr_pages * 8)`: the P2M list.
    pub fn mfn_list_range(&self) -> (u64, u64) {
        let len = self.nr_pages.saturating_mul(8);
        (self.mfn_list, self.mfn_list.saturating_add(len))
    }

    /// One past the bootstrap page tables plus the guaranteed 512 KiB padding: everything below
    /// is mapped by the bootstrap page tables (the builder rounds the mapping up to 4 MiB, but
    /// only this much is promised).
    pub fn bootstrap_end(&self) -> u64 {
        self.page_tables_end().saturating_add(BOOTSTRAP_PADDING)
    }

    /// One past what Xen's start-of-day layout occupies: the bootstrap page tables and the one
    /// boot-stack page above them (libxenguest allocates it next). The rest of the padding is
    /// free, mapped memory: where a PV kernel takes its first page-table frames from.
    pub fn bootstrap_in_use_end(&self) -> u64 {
        self.page_tables_end().saturating_add(PAGE_SIZE)
    }

    fn page_tables_end(&self) -> u64 {
        self.pt_base
            .saturating_add(self.nr_pt_frames.saturating_mul(PAGE_SIZE))
    }
}

/// Room for the longest magic `emit` writes, without `alloc`.
#[derive(Default)]
struct MagicWriter {
    bytes: [u8; MAGIC_LEN - 1],
    len: usize,
}

impl fmt::Write for MagicWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Splits `xen-<major>.<minor>-<platform>` and accepts only the x86_64 platform.
fn parse_magic(magic: Magic) -> Result<XenVersion, StartInfoError> {
    if !magic.0.contains(&0) {
        return Err(StartInfoError::MagicNotTerminated { magic });
    }
    let bad = StartInfoError::BadMagic { magic };
    let rest = magic.text().strip_prefix(b"xen-").ok_or(bad)?;
    let dash = rest.iter().position(|&b| b == b'-').ok_or(bad)?;
    let (version, platform) = (&rest[..dash], &rest[dash + 1..]);
    let dot = version.iter().position(|&b| b == b'.').ok_or(bad)?;
    let (Some(major), Some(minor)) = (parse_u16(&version[..dot]), parse_u16(&version[dot + 1..]))
    else {
        return Err(bad);
    };
    if platform != PLATFORM {
        return Err(StartInfoError::UnsupportedPlatform { magic });
    }
    Ok(XenVersion { major, minor })
}

/// Decimal digits only (no sign, no spaces), at least one, fitting in a u16.
fn parse_u16(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u16, |value, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u16::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use super::*;

    const DOMU: XenPvInfo = XenPvInfo {
        version: XenVersion { major: 3, minor: 0 },
        nr_pages: 24576,
        shared_info_maddr: 0x1_2345_6000,
        flags: 0,
        store: Some(RingPage {
            mfn: 0x10_0001,
            evtchn: 1,
        }),
        console: XenConsole::DomU(Some(RingPage {
            mfn: 0x10_0002,
            evtchn: 2,
        })),
        pt_base: 0x43_0000,
        nr_pt_frames: 6,
        mfn_list: 0x40_0000,
        module: None,
    };

    fn emitted(info: &XenPvInfo) -> [u8; START_INFO_LEN] {
        let mut bytes = [0xaa; START_INFO_LEN];
        let mut view = StartInfo::new_unchecked(&mut bytes[..]);
        info.emit(&mut view);
        view.set_cmd_line(b"");
        bytes
    }

    fn parse(bytes: &[u8]) -> Result<XenPvInfo, StartInfoError> {
        XenPvInfo::parse(&StartInfo::new_unchecked(bytes))
    }

    fn with_magic(magic: &[u8]) -> [u8; START_INFO_LEN] {
        let mut bytes = emitted(&DOMU);
        bytes[..MAGIC_LEN].fill(0);
        bytes[..magic.len()].copy_from_slice(magic);
        bytes
    }

    fn magic(text: &[u8]) -> Magic {
        let mut bytes = [0; MAGIC_LEN];
        bytes[..text.len()].copy_from_slice(text);
        Magic(bytes)
    }

    #[test]
    fn layout_matches_the_c_struct() {
        assert_eq!(START_INFO_LEN, 1152);
        assert_eq!(MAX_GUEST_CMDLINE, 1024);
        assert_eq!(CMD_LINE_OFFSET, 128);
    }

    #[test]
    fn reads_fields_little_endian_at_x86_64_offsets() {
        let mut bytes = [0u8; START_INFO_LEN];
        bytes[..15].copy_from_slice(b"xen-3.0-x86_64\0");
        bytes[32..40].copy_from_slice(&0x6000u64.to_le_bytes());
        bytes[48] = 0x02;
        bytes[56..64].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        bytes[64] = 7;
        bytes[72..76].copy_from_slice(&1168u32.to_le_bytes());
        bytes[76..80].copy_from_slice(&36u32.to_le_bytes());
        bytes[88] = 0x11;
        bytes[104] = 0x22;
        bytes[112] = 0x33;
        bytes[120] = 0x44;
        bytes[128] = b'x';
        let view = StartInfo::new_checked(&bytes[..]).unwrap();
        assert_eq!(view.nr_pages(), 0x6000);
        assert_eq!(view.flags(), SIF_INITDOMAIN);
        assert_eq!(view.store_mfn(), 0x0102_0304_0506_0708);
        assert_eq!(view.store_evtchn(), 7);
        assert_eq!(view.console_dom0_info_off(), 1168);
        assert_eq!(view.console_dom0_info_size(), 36);
        assert_eq!(view.console_domu_mfn(), 36 << 32 | 1168);
        assert_eq!(
            (
                view.pt_base(),
                view.mfn_list(),
                view.mod_start(),
                view.mod_len()
            ),
            (0x11, 0x22, 0x33, 0x44)
        );
        assert_eq!(view.cmd_line()[..2], *b"x\0");
        assert_eq!(view.magic().text(), b"xen-3.0-x86_64");
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let bytes = emitted(&DOMU);
        assert_eq!(&bytes[..15], b"xen-3.0-x86_64\0");
        assert!(bytes[15..32].iter().all(|&b| b == 0));
        assert_eq!(parse(&bytes), Ok(DOMU));

        let dom0 = XenPvInfo {
            version: XenVersion {
                major: 65535,
                minor: 65535,
            },
            flags: SIF_PRIVILEGED | SIF_INITDOMAIN | SIF_MOD_START_PFN,
            store: None,
            console: XenConsole::Dom0 {
                info_off: 1168,
                info_size: 36,
            },
            module: Some(PvModule {
                start: 0x800,
                len: 0x1234,
                is_pfn: true,
            }),
            ..DOMU
        };
        let bytes = emitted(&dom0);
        assert_eq!(&bytes[..23], b"xen-65535.65535-x86_64\0");
        assert_eq!(parse(&bytes), Ok(dom0));
    }

    #[test]
    fn rejects_buffer_shorter_than_the_struct() {
        let bytes = emitted(&DOMU);
        assert_eq!(
            StartInfo::new_checked(&bytes[..1151]),
            Err(StartInfoError::Truncated {
                need: 1152,
                have: 1151
            })
        );
        assert_eq!(
            parse(&bytes[..40]),
            Err(StartInfoError::Truncated {
                need: 1152,
                have: 40
            })
        );
    }

    #[test]
    fn rejects_magic_without_xen_prefix() {
        assert_eq!(
            parse(&with_magic(b"linux-3.0-x86_64")),
            Err(StartInfoError::BadMagic {
                magic: magic(b"linux-3.0-x86_64")
            })
        );
        // Zeroed memory: the pointer is not at a start_info at all.
        assert_eq!(
            parse(&[0; START_INFO_LEN]),
            Err(StartInfoError::BadMagic { magic: magic(b"") })
        );
    }

    #[test]
    fn rejects_malformed_versions() {
        for text in [
            &b"xen-3.0"[..],
            b"xen-3-x86_64",
            b"xen-.0-x86_64",
            b"xen-3.-x86_64",
            b"xen-+3.0-x86_64",
            b"xen-3.0.1-x86_64",
            b"xen-65536.0-x86_64",
            b"xen--x86_64",
        ] {
            assert_eq!(
                parse(&with_magic(text)),
                Err(StartInfoError::BadMagic { magic: magic(text) }),
                "{}",
                text.escape_ascii()
            );
        }
    }

    #[test]
    fn rejects_other_platforms() {
        for text in [
            &b"xen-3.0-x86_32p"[..],
            b"xen-3.0-x86_32",
            b"xen-3.0-x86_64 ",
        ] {
            assert_eq!(
                parse(&with_magic(text)),
                Err(StartInfoError::UnsupportedPlatform { magic: magic(text) })
            );
        }
        let error = parse(&with_magic(b"xen-3.0-x86_32p")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "magic \"xen-3.0-x86_32p\" is for another platform (this kernel is x86_64)"
        );
    }

    #[test]
    fn rejects_magic_without_nul_in_its_32_bytes() {
        let text = b"xen-3.0-x86_64-and-more-bytes-xx";
        assert_eq!(text.len(), 32);
        let error = parse(&with_magic(text)).unwrap_err();
        assert_eq!(
            error,
            StartInfoError::MagicNotTerminated {
                magic: Magic(*text)
            }
        );
        assert_eq!(
            error.to_string(),
            "magic \"xen-3.0-x86_64-and-more-bytes-xx\" is not NUL-terminated within 32 bytes"
        );
    }

    #[test]
    fn ignores_bytes_after_the_magic_nul() {
        let mut bytes = emitted(&DOMU);
        bytes[20..32].fill(0xff);
        assert_eq!(parse(&bytes), Ok(DOMU));
    }

    #[test]
    fn magic_display_escapes_non_printable_bytes() {
        assert_eq!(magic(b"xen\xff\n").to_string(), "\"xen\\xff\\n\"");
    }

    #[test]
    fn rejects_zero_pages_and_pages_overflowing_the_address_space() {
        let bytes = emitted(&XenPvInfo {
            nr_pages: 0,
            ..DOMU
        });
        assert_eq!(parse(&bytes), Err(StartInfoError::NoPages));
        let bytes = emitted(&XenPvInfo {
            nr_pages: 1 << 52,
            mfn_list: 0,
            ..DOMU
        });
        assert_eq!(
            parse(&bytes),
            Err(StartInfoError::TooManyPages { nr_pages: 1 << 52 })
        );
        // The largest count whose bytes still fit.
        let bytes = emitted(&XenPvInfo {
            nr_pages: (1 << 52) - 1,
            mfn_list: 0,
            ..DOMU
        });
        assert_eq!(parse(&bytes).unwrap().memory_bytes(), u64::MAX - 0xfff);
    }

    #[test]
    fn domu_console_and_store_with_mfn_0_are_absent() {
        let info = XenPvInfo {
            store: None,
            console: XenConsole::DomU(None),
            ..DOMU
        };
        let mut bytes = emitted(&info);
        // Event channels beside a 0 frame mean nothing.
        bytes[64] = 5;
        bytes[80] = 6;
        assert_eq!(parse(&bytes), Ok(info));
    }

    #[test]
    fn dom0_console_info_must_lie_in_the_page_after_the_fields() {
        let dom0 = |info_off, info_size| XenPvInfo {
            flags: SIF_INITDOMAIN,
            console: XenConsole::Dom0 {
                info_off,
                info_size,
            },
            ..DOMU
        };
        for (off, size) in [(1152, 2944), (1168, 36), (4095, 1), (0, 0), (9999, 0)] {
            assert_eq!(parse(&emitted(&dom0(off, size))), Ok(dom0(off, size)));
        }
        for (off, size) in [
            (1151, 1),
            (0, 36),
            (1168, 2929),
            (4096, 1),
            (u32::MAX, u32::MAX),
        ] {
            assert_eq!(
                parse(&emitted(&dom0(off, size))),
                Err(StartInfoError::Dom0ConsoleOutsidePage {
                    info_off: off,
                    info_size: size
                }),
                "{off} {size}"
            );
        }
    }

    #[test]
    fn rejects_ranges_ending_past_the_address_space() {
        let bytes = emitted(&XenPvInfo {
            mfn_list: u64::MAX - 8 * 24576 + 1,
            ..DOMU
        });
        assert_eq!(
            parse(&bytes),
            Err(StartInfoError::MfnListOverflow {
                mfn_list: u64::MAX - 8 * 24576 + 1,
                nr_pages: 24576
            })
        );
        for (pt_base, nr_pt_frames) in [(u64::MAX - 0x8_0000 - 0x5fff, 6), (0x1000, 1 << 52)] {
            let bytes = emitted(&XenPvInfo {
                pt_base,
                nr_pt_frames,
                ..DOMU
            });
            assert_eq!(
                parse(&bytes),
                Err(StartInfoError::PageTablesOverflow {
                    pt_base,
                    nr_pt_frames
                })
            );
        }
        for (start, len, is_pfn) in [
            (u64::MAX, 1, false),
            (1 << 52, 0, true),
            (0xf_ffff_ffff_ffff, 0x1000, true),
        ] {
            let bytes = emitted(&XenPvInfo {
                module: Some(PvModule { start, len, is_pfn }),
                flags: if is_pfn { SIF_MOD_START_PFN } else { 0 },
                ..DOMU
            });
            assert_eq!(
                parse(&bytes),
                Err(StartInfoError::ModuleOverflow {
                    mod_start: start,
                    mod_len: len,
                    pfn: is_pfn
                })
            );
        }
    }

    #[test]
    fn module_start_0_means_no_module() {
        let mut bytes = emitted(&DOMU);
        bytes[120..128].copy_from_slice(&0x1000u64.to_le_bytes());
        assert_eq!(parse(&bytes).unwrap().module, None);
    }

    #[test]
    fn module_address_is_the_pfn_times_the_page_size_with_sif_mod_start_pfn() {
        let module = |start, is_pfn| PvModule {
            start,
            len: 0x10,
            is_pfn,
        };
        assert_eq!(module(0x80_0000, false).addr(), 0x80_0000);
        assert_eq!(module(0x800, true).addr(), 0x80_0000);
    }

    #[test]
    fn derived_ranges_follow_the_counts() {
        assert_eq!(DOMU.memory_bytes(), 24576 * 4096);
        assert_eq!(DOMU.mfn_list_range(), (0x40_0000, 0x40_0000 + 24576 * 8));
        assert_eq!(DOMU.bootstrap_end(), 0x43_0000 + 6 * 4096 + 0x8_0000);
        assert_eq!(DOMU.bootstrap_in_use_end(), 0x43_0000 + 7 * 4096);
    }
}
