//! `hvm_start_info` and the tables it points to, as checked views.
//!
//! Spec: `xen/include/public/arch-x86/hvm/start_info.h` (the PVH boot ABI, also what QEMU's
//! `-kernel` PVH loader writes). All fields are little-endian. Layout of the header:
//!
//! ```text
//!  0 magic            XEN_HVM_START_MAGIC_VALUE
//!  4 version          "New versions are guaranteed to be backwards-compatible."
//!  8 flags            SIF_xxx
//! 12 nr_modules
//! 16 modlist_paddr    array of hvm_modlist_entry
//! 24 cmdline_paddr    NUL-terminated; 0 = none
//! 32 rsdp_paddr       ACPI RSDP; 0 = none
//! 40 memmap_paddr     array of hvm_memmap_table_entry     (version >= 1)
//! 48 memmap_entries   0 = no memory map provided          (version >= 1)
//! 52 reserved                                              (version >= 1)
//! 56
//! ```
//!
//! Versions above 1 are accepted and read as version 1: the header promises backwards
//! compatibility, and later versions only give meaning to `reserved` or append fields.
//!
//! The views read whatever buffer they are given; put them over a copy of guest memory so that
//! reading a field twice cannot see two values.

use core::fmt;

use crate::le::{Field, read_u32, read_u64, write_u32, write_u64};

/// `XEN_HVM_START_MAGIC_VALUE`: "xEn3" with the 0x80 bit of the "E" set.
pub const MAGIC: u32 = 0x336e_c578;
/// Size of a version 0 header, which ends after `rsdp_paddr`.
pub const HEADER_LEN_V0: usize = field::RSDP_PADDR.end;
/// Size of a version 1 header, the most this crate reads.
pub const HEADER_LEN_V1: usize = field::RESERVED.end;
/// Size of one `hvm_modlist_entry`.
pub const MODLIST_ENTRY_LEN: usize = modlist_field::RESERVED.end;
/// Size of one `hvm_memmap_table_entry`.
pub const MEMMAP_ENTRY_LEN: usize = memmap_field::RESERVED.end;

mod field {
    use super::Field;

    pub const MAGIC: Field = 0..4;
    pub const VERSION: Field = 4..8;
    pub const FLAGS: Field = 8..12;
    pub const NR_MODULES: Field = 12..16;
    pub const MODLIST_PADDR: Field = 16..24;
    pub const CMDLINE_PADDR: Field = 24..32;
    pub const RSDP_PADDR: Field = 32..40;
    pub const MEMMAP_PADDR: Field = 40..48;
    pub const MEMMAP_ENTRIES: Field = 48..52;
    pub const RESERVED: Field = 52..56;
}

mod modlist_field {
    use super::Field;

    pub const PADDR: Field = 0..8;
    pub const SIZE: Field = 8..16;
    pub const CMDLINE_PADDR: Field = 16..24;
    pub const RESERVED: Field = 24..32;
}

mod memmap_field {
    use super::Field;

    pub const ADDR: Field = 0..8;
    pub const SIZE: Field = 8..16;
    pub const TYPE: Field = 16..20;
    pub const RESERVED: Field = 20..24;
}

/// Why a buffer is not a usable `hvm_start_info` (or table entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The buffer is shorter than its version's layout.
    Truncated { need: usize, have: usize },
    /// `magic` is not [`MAGIC`]: whatever `%ebx` pointed at, it is not a start-of-day structure.
    BadMagic { found: u32 },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HeaderError::Truncated { need, have } => {
                write!(f, "truncated (need {need} bytes, have {have})")
            }
            HeaderError::BadMagic { found } => {
                write!(f, "bad magic {found:#010x} (expected {MAGIC:#010x})")
            }
        }
    }
}

impl core::error::Error for HeaderError {}

fn check_len(have: usize, need: usize) -> Result<(), HeaderError> {
    if have < need {
        return Err(HeaderError::Truncated { need, have });
    }
    Ok(())
}

/// A view of an `hvm_start_info` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartInfo<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> StartInfo<T> {
    /// Wraps `buffer` without checks; accessors panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Self {
        StartInfo { buffer }
    }

    /// Wraps `buffer` after [`check`](Self::check).
    pub fn new_checked(buffer: T) -> Result<Self, HeaderError> {
        let header = Self::new_unchecked(buffer);
        header.check()?;
        Ok(header)
    }

    /// Ensures the magic is right and the buffer holds every field of the header's version, so
    /// that no accessor that version has can panic.
    pub fn check(&self) -> Result<(), HeaderError> {
        check_len(self.buffer.as_ref().len(), HEADER_LEN_V0)?;
        let found = self.magic();
        if found != MAGIC {
            return Err(HeaderError::BadMagic { found });
        }
        check_len(self.buffer.as_ref().len(), self.header_len())
    }

    /// The bytes this header's version occupies (and this crate reads).
    pub fn header_len(&self) -> usize {
        header_len(self.version())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn magic(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::MAGIC)
    }

    pub fn version(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VERSION)
    }

    pub fn flags(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::FLAGS)
    }

    pub fn nr_modules(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::NR_MODULES)
    }

    pub fn modlist_paddr(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::MODLIST_PADDR)
    }

    pub fn cmdline_paddr(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::CMDLINE_PADDR)
    }

    pub fn rsdp_paddr(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::RSDP_PADDR)
    }

    /// Version 1 and later only: panics on a checked version 0 header of 40 bytes.
    pub fn memmap_paddr(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::MEMMAP_PADDR)
    }

    /// Version 1 and later only: panics on a checked version 0 header of 40 bytes.
    pub fn memmap_entries(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::MEMMAP_ENTRIES)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> StartInfo<T> {
    pub fn set_magic(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::MAGIC, value);
    }

    pub fn set_version(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::VERSION, value);
    }

    pub fn set_flags(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::FLAGS, value);
    }

    pub fn set_nr_modules(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::NR_MODULES, value);
    }

    pub fn set_modlist_paddr(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::MODLIST_PADDR, value);
    }

    pub fn set_cmdline_paddr(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::CMDLINE_PADDR, value);
    }

    pub fn set_rsdp_paddr(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::RSDP_PADDR, value);
    }

    pub fn set_memmap_paddr(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::MEMMAP_PADDR, value);
    }

    pub fn set_memmap_entries(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::MEMMAP_ENTRIES, value);
    }

    pub fn clear_reserved(&mut self) {
        write_u32(self.buffer.as_mut(), field::RESERVED, 0);
    }
}

fn header_len(version: u32) -> usize {
    if version == 0 {
        HEADER_LEN_V0
    } else {
        HEADER_LEN_V1
    }
}

/// Where a table of fixed-size entries lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    pub paddr: u64,
    /// Never 0: an empty table is represented by its absence.
    pub entries: u32,
}

/// A validated `hvm_start_info` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub version: u32,
    pub flags: u32,
    /// `None` when `nr_modules` is 0 (the address is then meaningless).
    pub modlist: Option<Table>,
    pub cmdline_paddr: Option<u64>,
    pub rsdp_paddr: Option<u64>,
    /// `None` for version 0 and when the loader provides no map (`memmap_entries == 0`).
    pub memmap: Option<Table>,
}

impl Repr {
    /// Checks `header` and copies its fields out.
    pub fn parse<T: AsRef<[u8]>>(header: &StartInfo<T>) -> Result<Repr, HeaderError> {
        header.check()?;
        let version = header.version();
        let table = |paddr, entries| (entries != 0).then_some(Table { paddr, entries });
        let address = |paddr| (paddr != 0).then_some(paddr);
        Ok(Repr {
            version,
            flags: header.flags(),
            modlist: table(header.modlist_paddr(), header.nr_modules()),
            cmdline_paddr: address(header.cmdline_paddr()),
            rsdp_paddr: address(header.rsdp_paddr()),
            memmap: if version == 0 {
                None
            } else {
                table(header.memmap_paddr(), header.memmap_entries())
            },
        })
    }

    /// The bytes [`emit`](Self::emit) writes and [`parse`](Self::parse) reads.
    pub fn header_len(&self) -> usize {
        header_len(self.version)
    }

    /// Writes the header; `header` must hold at least [`header_len`](Self::header_len) bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut StartInfo<T>) {
        header.set_magic(MAGIC);
        header.set_version(self.version);
        header.set_flags(self.flags);
        header.set_nr_modules(self.modlist.map_or(0, |t| t.entries));
        header.set_modlist_paddr(self.modlist.map_or(0, |t| t.paddr));
        header.set_cmdline_paddr(self.cmdline_paddr.unwrap_or(0));
        header.set_rsdp_paddr(self.rsdp_paddr.unwrap_or(0));
        if self.version != 0 {
            header.set_memmap_paddr(self.memmap.map_or(0, |t| t.paddr));
            header.set_memmap_entries(self.memmap.map_or(0, |t| t.entries));
            header.clear_reserved();
        }
    }
}

/// A view of one `hvm_modlist_entry`: a module (initrd, ...) the loader placed in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModlistEntry<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ModlistEntry<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        ModlistEntry { buffer }
    }

    /// Wraps `buffer` if it holds a whole entry.
    pub fn new_checked(buffer: T) -> Result<Self, HeaderError> {
        check_len(buffer.as_ref().len(), MODLIST_ENTRY_LEN)?;
        Ok(Self::new_unchecked(buffer))
    }

    pub fn paddr(&self) -> u64 {
        read_u64(self.buffer.as_ref(), modlist_field::PADDR)
    }

    pub fn size(&self) -> u64 {
        read_u64(self.buffer.as_ref(), modlist_field::SIZE)
    }

    /// The module's NUL-terminated command line; 0 = none.
    pub fn cmdline_paddr(&self) -> u64 {
        read_u64(self.buffer.as_ref(), modlist_field::CMDLINE_PADDR)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ModlistEntry<T> {
    pub fn set_paddr(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), modlist_field::PADDR, value);
    }

    pub fn set_size(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), modlist_field::SIZE, value);
    }

    pub fn set_cmdline_paddr(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), modlist_field::CMDLINE_PADDR, value);
    }

    pub fn clear_reserved(&mut self) {
        write_u64(self.buffer.as_mut(), modlist_field::RESERVED, 0);
    }
}

/// A view of one `hvm_memmap_table_entry`: an E820-style `(addr, size, type)` range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemmapEntry<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MemmapEntry<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        MemmapEntry { buffer }
    }

    /// Wraps `buffer` if it holds a whole entry.
    pub fn new_checked(buffer: T) -> Result<Self, HeaderError> {
        check_len(buffer.as_ref().len(), MEMMAP_ENTRY_LEN)?;
        Ok(Self::new_unchecked(buffer))
    }

    pub fn addr(&self) -> u64 {
        read_u64(self.buffer.as_ref(), memmap_field::ADDR)
    }

    pub fn size(&self) -> u64 {
        read_u64(self.buffer.as_ref(), memmap_field::SIZE)
    }

    /// `XEN_HVM_MEMMAP_TYPE_*`, which are the E820 / ACPI address-range types.
    pub fn kind(&self) -> u32 {
        read_u32(self.buffer.as_ref(), memmap_field::TYPE)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MemmapEntry<T> {
    pub fn set_addr(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), memmap_field::ADDR, value);
    }

    pub fn set_size(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), memmap_field::SIZE, value);
    }

    pub fn set_kind(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), memmap_field::TYPE, value);
    }

    pub fn clear_reserved(&mut self) {
        write_u32(self.buffer.as_mut(), memmap_field::RESERVED, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's PVH loader: version 1, command line, RSDP, one module, a memory map.
    const QEMU_LIKE: Repr = Repr {
        version: 1,
        flags: 0,
        modlist: Some(Table {
            paddr: 0x6000,
            entries: 1,
        }),
        cmdline_paddr: Some(0x7000),
        rsdp_paddr: Some(0xf_5a40),
        memmap: Some(Table {
            paddr: 0x8000,
            entries: 6,
        }),
    };

    fn emitted(repr: &Repr) -> [u8; HEADER_LEN_V1] {
        let mut bytes = [0xaa; HEADER_LEN_V1];
        repr.emit(&mut StartInfo::new_unchecked(
            &mut bytes[..repr.header_len()],
        ));
        bytes
    }

    #[test]
    fn layout_matches_the_c_structs() {
        assert_eq!(HEADER_LEN_V0, 40);
        assert_eq!(HEADER_LEN_V1, 56);
        assert_eq!(MODLIST_ENTRY_LEN, 32);
        assert_eq!(MEMMAP_ENTRY_LEN, 24);
    }

    #[test]
    fn reads_fields_little_endian_at_spec_offsets() {
        let mut bytes = [0u8; HEADER_LEN_V1];
        bytes[0..4].copy_from_slice(&[0x78, 0xc5, 0x6e, 0x33]);
        bytes[4] = 1;
        bytes[16..24].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        bytes[48] = 6;
        let header = StartInfo::new_checked(&bytes[..]).unwrap();
        assert_eq!(header.magic(), MAGIC);
        assert_eq!(header.version(), 1);
        assert_eq!(header.modlist_paddr(), 0x0102_0304_0506_0708);
        assert_eq!(header.memmap_entries(), 6);
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let bytes = emitted(&QEMU_LIKE);
        let header = StartInfo::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&header), Ok(QEMU_LIKE));
    }

    #[test]
    fn rejects_buffer_shorter_than_version_0() {
        let bytes = emitted(&QEMU_LIKE);
        assert_eq!(
            StartInfo::new_checked(&bytes[..39]),
            Err(HeaderError::Truncated { need: 40, have: 39 })
        );
    }

    #[test]
    fn rejects_version_1_header_without_its_memmap_fields() {
        let bytes = emitted(&QEMU_LIKE);
        assert_eq!(
            StartInfo::new_checked(&bytes[..40]),
            Err(HeaderError::Truncated { need: 56, have: 40 })
        );
    }

    #[test]
    fn rejects_bad_magic_before_length_of_later_versions() {
        let mut bytes = emitted(&QEMU_LIKE);
        bytes[0..4].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        assert_eq!(
            StartInfo::new_checked(&bytes[..40]),
            Err(HeaderError::BadMagic { found: 0x1234_5678 })
        );
    }

    #[test]
    fn parse_checks_an_unchecked_view() {
        let bytes = [0u8; 8];
        assert_eq!(
            Repr::parse(&StartInfo::new_unchecked(&bytes[..])),
            Err(HeaderError::Truncated { need: 40, have: 8 })
        );
    }

    #[test]
    fn version_0_has_no_memmap_and_needs_only_40_bytes() {
        let v0 = Repr {
            version: 0,
            memmap: None,
            ..QEMU_LIKE
        };
        let bytes = emitted(&v0);
        let header = StartInfo::new_checked(&bytes[..40]).unwrap();
        assert_eq!(Repr::parse(&header), Ok(v0));
    }

    #[test]
    fn later_versions_read_as_version_1() {
        let v2 = Repr {
            version: 2,
            ..QEMU_LIKE
        };
        let mut bytes = emitted(&v2);
        // Version 2 gives the reserved word a meaning; version 1 readers must not care.
        bytes[52..56].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        let header = StartInfo::new_checked(&bytes[..]).unwrap();
        assert_eq!(header.header_len(), HEADER_LEN_V1);
        assert_eq!(Repr::parse(&header), Ok(v2));
    }

    #[test]
    fn zero_addresses_and_counts_mean_absent() {
        let empty = Repr {
            version: 1,
            flags: 0,
            modlist: None,
            cmdline_paddr: None,
            rsdp_paddr: None,
            memmap: None,
        };
        let mut bytes = emitted(&empty);
        // A module-list address with no modules is meaningless, not a table.
        bytes[16..24].copy_from_slice(&0x5000u64.to_le_bytes());
        let header = StartInfo::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&header), Ok(empty));
    }

    #[test]
    fn table_entries_round_trip_and_reject_short_buffers() {
        let mut module = [0u8; MODLIST_ENTRY_LEN];
        let mut view = ModlistEntry::new_checked(&mut module[..]).unwrap();
        view.set_paddr(0x10_0000);
        view.set_size(0x2000);
        view.set_cmdline_paddr(0x9000);
        view.clear_reserved();
        let view = ModlistEntry::new_checked(&module[..]).unwrap();
        assert_eq!(
            (view.paddr(), view.size(), view.cmdline_paddr()),
            (0x10_0000, 0x2000, 0x9000)
        );
        assert_eq!(
            ModlistEntry::new_checked(&module[..31]),
            Err(HeaderError::Truncated { need: 32, have: 31 })
        );

        let mut region = [0u8; MEMMAP_ENTRY_LEN];
        let mut view = MemmapEntry::new_checked(&mut region[..]).unwrap();
        view.set_addr(0x10_0000);
        view.set_size(0x4c0_0000);
        view.set_kind(1);
        view.clear_reserved();
        let view = MemmapEntry::new_checked(&region[..]).unwrap();
        assert_eq!(
            (view.addr(), view.size(), view.kind()),
            (0x10_0000, 0x4c0_0000, 1)
        );
        assert_eq!(
            MemmapEntry::new_checked(&region[..23]),
            Err(HeaderError::Truncated { need: 24, have: 23 })
        );
    }
}
