//! A fake physical memory for tests and fuzzing: one byte buffer at a physical base address.
//!
//! Compiled for this crate's tests and with the `fake` feature (the fuzz targets, and tests of
//! crates that consume [`BootInfo`](crate::BootInfo)). The `write_*` helpers lay structures out
//! the way a loader would; they panic when a structure does not fit, which is a bug in the test.

use crate::PhysMemory;
use crate::hvm_start_info::{
    self, MEMMAP_ENTRY_LEN, MODLIST_ENTRY_LEN, MemmapEntry, ModlistEntry, StartInfo,
};
use crate::xen_start_info::{self, START_INFO_LEN, XenPvInfo};

/// Bytes at the front of a fuzz input that say where the rest goes
/// ([`FakeMemory::from_fuzz_input`]).
pub const FUZZ_PREFIX: usize = 11;

/// `bytes` mapped at physical addresses `base..base + bytes.len()`; nothing else is readable.
#[derive(Clone, Debug)]
pub struct FakeMemory<B> {
    base: u64,
    bytes: B,
}

impl<'a> FakeMemory<&'a [u8]> {
    /// Splits a fuzz input into memory and the address of a structure in it: byte 0 picks the
    /// base (0, one page up, flush against the top of the address space, or bytes 1..9), bytes
    /// 9..11 the structure's offset from the base, which may lie outside the memory. `None` for
    /// inputs shorter than [`FUZZ_PREFIX`].
    pub fn from_fuzz_input(data: &'a [u8]) -> Option<(Self, u64)> {
        let (prefix, memory) = data.split_first_chunk::<FUZZ_PREFIX>()?;
        let mut explicit = [0; 8];
        explicit.copy_from_slice(&prefix[1..9]);
        let base = match prefix[0] % 4 {
            0 => 0,
            1 => 0x1000,
            2 => 0u64.wrapping_sub(memory.len() as u64),
            _ => u64::from_le_bytes(explicit),
        };
        let offset = u16::from_le_bytes([prefix[9], prefix[10]]);
        Some((
            FakeMemory::new(base, memory),
            base.wrapping_add(u64::from(offset)),
        ))
    }
}

impl<B: AsRef<[u8]>> FakeMemory<B> {
    pub fn new(base: u64, bytes: B) -> Self {
        FakeMemory { base, bytes }
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    /// One past the last readable address, or `None` if the buffer would reach past 2^64 - 1
    /// (the tail beyond it is then unreadable).
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.bytes.as_ref().len() as u64)
    }
}

impl<B: AsRef<[u8]>> PhysMemory for FakeMemory<B> {
    fn read(&self, paddr: u64, len: usize) -> Option<&[u8]> {
        paddr.checked_add(len as u64)?;
        let offset = usize::try_from(paddr.checked_sub(self.base)?).ok()?;
        self.bytes.as_ref().get(offset..offset.checked_add(len)?)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> FakeMemory<B> {
    /// Copies `data` to `paddr`.
    pub fn write(&mut self, paddr: u64, data: &[u8]) {
        let offset = paddr
            .checked_sub(self.base)
            .and_then(|offset| usize::try_from(offset).ok())
            .expect("FakeMemory::write below the base");
        let bytes = self.bytes.as_mut();
        let Some(target) = offset
            .checked_add(data.len())
            .and_then(|end| bytes.get_mut(offset..end))
        else {
            panic!(
                "FakeMemory::write of {} bytes at {paddr:#x} runs past the end",
                data.len()
            );
        };
        target.copy_from_slice(data);
    }

    /// Writes `text` and its NUL terminator.
    pub fn write_cstr(&mut self, paddr: u64, text: &str) {
        self.write(paddr, text.as_bytes());
        self.write(paddr + text.len() as u64, &[0]);
    }

    /// Writes an `hvm_start_info` header of `repr.header_len()` bytes.
    pub fn write_start_info(&mut self, paddr: u64, repr: &hvm_start_info::Repr) {
        let mut header = [0; hvm_start_info::HEADER_LEN_V1];
        let header = &mut header[..repr.header_len()];
        repr.emit(&mut StartInfo::new_unchecked(&mut *header));
        self.write(paddr, header);
    }

    /// Writes a Xen PV `start_info` of [`START_INFO_LEN`] bytes: `info` and the command line
    /// `cmdline` (shorter than 1024 bytes).
    pub fn write_xen_start_info(&mut self, vaddr: u64, info: &XenPvInfo, cmdline: &str) {
        let mut bytes = [0; START_INFO_LEN];
        let mut view = xen_start_info::StartInfo::new_unchecked(&mut bytes[..]);
        info.emit(&mut view);
        view.set_cmd_line(cmdline.as_bytes());
        self.write(vaddr, &bytes);
    }

    /// Writes an `hvm_modlist_entry` array of `(paddr, size, cmdline_paddr)`.
    pub fn write_modlist(&mut self, paddr: u64, modules: &[(u64, u64, u64)]) {
        for (i, &(module_paddr, size, cmdline_paddr)) in modules.iter().enumerate() {
            let mut bytes = [0; MODLIST_ENTRY_LEN];
            let mut entry = ModlistEntry::new_unchecked(&mut bytes[..]);
            entry.set_paddr(module_paddr);
            entry.set_size(size);
            entry.set_cmdline_paddr(cmdline_paddr);
            entry.clear_reserved();
            self.write(paddr + (i * MODLIST_ENTRY_LEN) as u64, &bytes);
        }
    }

    /// Writes an `hvm_memmap_table_entry` array of `(addr, size, e820_type)`.
    pub fn write_memmap(&mut self, paddr: u64, regions: &[(u64, u64, u32)]) {
        for (i, &(addr, size, kind)) in regions.iter().enumerate() {
            let mut bytes = [0; MEMMAP_ENTRY_LEN];
            let mut entry = MemmapEntry::new_unchecked(&mut bytes[..]);
            entry.set_addr(addr);
            entry.set_size(size);
            entry.set_kind(kind);
            entry.clear_reserved();
            self.write(paddr + (i * MEMMAP_ENTRY_LEN) as u64, &bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_inside_the_buffer() {
        let memory = FakeMemory::new(0x1000, [1u8, 2, 3, 4]);
        assert_eq!(memory.read(0x1001, 2), Some(&[2, 3][..]));
        assert_eq!(memory.read(0x1000, 4), Some(&[1, 2, 3, 4][..]));
        assert_eq!(memory.read(0x1004, 0), Some(&[][..]));
        assert_eq!(memory.read(0x1002, 3), None);
        assert_eq!(memory.read(0xfff, 1), None);
        assert_eq!(memory.read(0x1005, 0), None);
    }

    #[test]
    fn reads_that_overflow_return_none() {
        let memory = FakeMemory::new(u64::MAX - 1, [0u8; 4]);
        assert_eq!(memory.end(), None);
        assert_eq!(memory.read(u64::MAX - 1, 1), Some(&[0][..]));
        assert_eq!(memory.read(u64::MAX - 1, 2), None);
        assert_eq!(memory.read(u64::MAX, usize::MAX), None);
    }

    #[test]
    fn writes_land_at_their_physical_address() {
        let mut memory = FakeMemory::new(0x1000, [0u8; 8]);
        memory.write_cstr(0x1002, "hi");
        assert_eq!(
            memory.read(0x1000, 8),
            Some(&[0, 0, b'h', b'i', 0, 0, 0, 0][..])
        );
    }

    #[test]
    #[should_panic(expected = "runs past the end")]
    fn write_past_the_end_panics() {
        FakeMemory::new(0x1000, [0u8; 8]).write(0x1006, &[1, 2, 3]);
    }
}
