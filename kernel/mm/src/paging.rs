//! 4-level x86-64 page tables, edited through [`PageTableMemory`].
//!
//! Entry formats: Intel SDM Vol. 3A §4.5 (4-level paging), tables "Format of a PML4 Entry"
//! through "Format of a Page-Table Entry". A virtual address splits as
//!
//! ```text
//!  63    48 47    39 38    30 29    21 20    12 11        0
//! | sign   | PML4   | PDPT   | PD     | PT     | offset    |
//!                   1 GiB leaf (PS=1)    |     |
//!                            2 MiB leaf (PS=1) |
//!                                     4 KiB leaf
//! ```

use core::fmt;

use x86_64::structures::paging::PageTableFlags;
use x86_64::{PhysAddr, VirtAddr};

use crate::frame::PHYS_LIMIT;

/// Entries per table.
const ENTRIES: u64 = 512;

/// Bits 12..51 of an entry: the frame of the next table or of a 4 KiB page. In 2 MiB and 1 GiB
/// leaves bit 12 is PAT and the low address bits below the page size are reserved, so leaf
/// addresses are further masked by the page size.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// First address of the canonical upper half (Intel SDM Vol. 1 §3.3.7.1).
const UPPER_HALF: u64 = 0xffff_8000_0000_0000;
/// First address past the canonical lower half.
const LOWER_HALF_END: u64 = 0x0000_8000_0000_0000;

/// Where page tables live and how their entries are read and written.
///
/// Addresses are those the entries hold: guest-physical under PVH, machine addresses under
/// Xen PV, where `write_entry` becomes an `MMU_NORMAL_PT_UPDATE` in `HYPERVISOR_mmu_update`
/// (xen/include/public/xen.h) because PV guests map their page tables read-only.
pub trait PageTableMemory {
    /// A zeroed 4 KiB frame for a new table, or None when out of memory.
    fn allocate_table(&mut self) -> Option<PhysAddr>;
    /// Entry `index` (0..512) of the table at `table`.
    fn read_entry(&self, table: PhysAddr, index: usize) -> u64;
    /// Sets entry `index` (0..512) of the table at `table`.
    fn write_entry(&mut self, table: PhysAddr, index: usize, value: u64);
}

/// The three page sizes of 4-level paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// A page-table entry.
    Size4K,
    /// A page-directory entry with PS set.
    Size2M,
    /// A PDPT entry with PS set (needs the CPU's 1 GiB page support, CPUID 0x8000_0001 EDX.26).
    Size1G,
}

impl PageSize {
    /// The page's size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => 1 << 12,
            Self::Size2M => 1 << 21,
            Self::Size1G => 1 << 30,
        }
    }

    /// Level of the table holding the leaf: 1 = page table, 2 = page directory, 3 = PDPT.
    const fn level(self) -> u32 {
        match self {
            Self::Size4K => 1,
            Self::Size2M => 2,
            Self::Size1G => 3,
        }
    }
}

/// Why a mapping operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// An address or length is not a multiple of the page size it needs.
    Misaligned,
    /// Something is already mapped there: a page, or a table of smaller pages where a huge page
    /// was asked for.
    AlreadyMapped,
    /// A larger page covers the address, so no table exists to put a smaller page in.
    HugePageInTheWay,
    /// [`PageTableMemory::allocate_table`] returned None.
    OutOfFrames,
    /// Nothing is mapped at the address.
    NotMapped,
    /// The virtual range leaves its canonical half, or the physical range runs past 2^52.
    NonCanonical,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Misaligned => "address not aligned to the page size",
            Self::AlreadyMapped => "address already mapped",
            Self::HugePageInTheWay => "a huge page covers the address",
            Self::OutOfFrames => "no frame for a new page table",
            Self::NotMapped => "address not mapped",
            Self::NonCanonical => "range outside the address space",
        })
    }
}

/// Builds and walks one address space rooted at a PML4.
///
/// Intermediate entries are `PRESENT | WRITABLE`, plus `USER_ACCESSIBLE` when a leaf below asks
/// for it (added to existing intermediates too, since the CPU ANDs the bit down the walk); leaf
/// permissions thus come from the leaf alone. NO_EXECUTE never goes on an intermediate.
///
/// The mapper only edits tables: TLB invalidation after `unmap` or a permission change is the
/// caller's, and tables emptied by `unmap` stay linked (the trait has no way to free them).
#[derive(Debug)]
pub struct Mapper<M: PageTableMemory> {
    root: PhysAddr,
    memory: M,
}

/// A present leaf found by a walk.
struct Leaf {
    table: PhysAddr,
    index: usize,
    entry: u64,
    size: PageSize,
}

impl Leaf {
    fn base(&self) -> u64 {
        self.entry & ADDR_MASK & !(self.size.bytes() - 1)
    }
}

impl<M: PageTableMemory> Mapper<M> {
    /// A mapper over the PML4 at `root`, which must be a 4 KiB-aligned table (zeroed, or holding
    /// entries this mapper can follow).
    pub fn new(root: PhysAddr, memory: M) -> Self {
        Self { root, memory }
    }

    /// Maps one page of `size` at `virt` to `phys`.
    ///
    /// Leaf flags are `flags | PRESENT`, with HUGE_PAGE set for 2 MiB and 1 GiB pages and cleared
    /// for 4 KiB ones (in a page-table entry bit 7 is PAT, not a size). An existing mapping, even
    /// an identical one, is [`MapError::AlreadyMapped`]: remapping is an `unmap` away, and a
    /// silent overwrite would hide double-mapping bugs.
    ///
    /// On [`MapError::OutOfFrames`] the tables created before the failure stay linked. They are
    /// empty and valid, so the address space is unchanged as seen by the CPU, and a retry with
    /// more memory reuses them.
    pub fn map(
        &mut self,
        virt: VirtAddr,
        phys: PhysAddr,
        size: PageSize,
        flags: PageTableFlags,
    ) -> Result<(), MapError> {
        self.map_page(virt.as_u64(), phys.as_u64(), size, flags)
    }

    /// Maps `[virt, virt + len)` to `[phys, phys + len)` with the largest pages alignment allows,
    /// up to `largest` (Xen PV guests may only use 4 KiB pages; 1 GiB pages need CPU support):
    /// a 1 GiB or 2 MiB page where both addresses are aligned to it, 4 KiB at the unaligned
    /// edges. `virt`, `phys` and `len` must be 4 KiB multiples.
    ///
    /// All or nothing: on any error the pages this call mapped are unmapped again (tables it
    /// created stay, empty, as with [`map`](Self::map)), so the caller can fix the cause and
    /// retry the same call.
    pub fn map_range(
        &mut self,
        virt: VirtAddr,
        phys: PhysAddr,
        len: u64,
        flags: PageTableFlags,
        largest: PageSize,
    ) -> Result<(), MapError> {
        let (virt, phys) = (virt.as_u64(), phys.as_u64());
        let small = PageSize::Size4K.bytes();
        if !virt.is_multiple_of(small) || !phys.is_multiple_of(small) || !len.is_multiple_of(small)
        {
            return Err(MapError::Misaligned);
        }
        if len == 0 {
            return Ok(());
        }
        let last = virt.checked_add(len - 1).ok_or(MapError::NonCanonical)?;
        let same_half = (virt < LOWER_HALF_END && last < LOWER_HALF_END) || virt >= UPPER_HALF;
        if !same_half || phys.checked_add(len).is_none_or(|end| end > PHYS_LIMIT) {
            return Err(MapError::NonCanonical);
        }

        let mut done = 0;
        while done < len {
            let size = largest_page(virt + done, phys + done, len - done, largest);
            if let Err(error) = self.map_page(virt + done, phys + done, size, flags) {
                self.unmap_prefix(virt, phys, done, largest);
                return Err(error);
            }
            done += size.bytes();
        }
        Ok(())
    }

    /// Removes the page that starts at `virt` and returns what it mapped.
    ///
    /// `virt` inside a huge page but not at its start is [`MapError::Misaligned`]: splitting a
    /// huge page is a decision for the caller.
    pub fn unmap(&mut self, virt: VirtAddr) -> Result<(PhysAddr, PageSize), MapError> {
        self.unmap_page(virt.as_u64())
    }

    /// The physical address `virt` maps to, and the flags of the leaf entry mapping it.
    pub fn translate(&self, virt: VirtAddr) -> Option<(PhysAddr, PageTableFlags)> {
        let virt = virt.as_u64();
        let leaf = self.find_leaf(virt).ok()?;
        let phys = leaf.base() + (virt & (leaf.size.bytes() - 1));
        let flags = PageTableFlags::from_bits_truncate(leaf.entry & !ADDR_MASK);
        Some((PhysAddr::new_truncate(phys), flags))
    }

    /// The PML4's address, for CR3 (or Xen's `MMUEXT_NEW_BASEPTR`).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The table memory, e.g. to hand frames back to its allocator.
    pub fn memory(&mut self) -> &mut M {
        &mut self.memory
    }

    fn map_page(
        &mut self,
        virt: u64,
        phys: u64,
        size: PageSize,
        flags: PageTableFlags,
    ) -> Result<(), MapError> {
        if !virt.is_multiple_of(size.bytes()) || !phys.is_multiple_of(size.bytes()) {
            return Err(MapError::Misaligned);
        }
        let user = flags.contains(PageTableFlags::USER_ACCESSIBLE);
        let mut table = self.root;
        for level in (size.level() + 1..=4).rev() {
            table = self.next_table(table, table_index(virt, level), level, user)?;
        }
        let index = table_index(virt, size.level());
        if self.memory.read_entry(table, index) & PageTableFlags::PRESENT.bits() != 0 {
            return Err(MapError::AlreadyMapped);
        }
        let mut leaf = flags | PageTableFlags::PRESENT;
        leaf.set(PageTableFlags::HUGE_PAGE, size != PageSize::Size4K);
        self.memory
            .write_entry(table, index, phys | (leaf.bits() & !ADDR_MASK));
        Ok(())
    }

    /// The table that entry `index` of `table` (at `level`, 4 = PML4) points to, created if absent.
    fn next_table(
        &mut self,
        table: PhysAddr,
        index: usize,
        level: u32,
        user: bool,
    ) -> Result<PhysAddr, MapError> {
        let entry = self.memory.read_entry(table, index);
        let user_bit = if user {
            PageTableFlags::USER_ACCESSIBLE.bits()
        } else {
            0
        };
        if entry & PageTableFlags::PRESENT.bits() == 0 {
            let next = self.memory.allocate_table().ok_or(MapError::OutOfFrames)?;
            let link = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
            self.memory.write_entry(
                table,
                index,
                (next.as_u64() & ADDR_MASK) | link.bits() | user_bit,
            );
            return Ok(next);
        }
        // Bit 7 is PS in PDPT and PD entries only; in a PML4 entry it is reserved.
        if level < 4 && entry & PageTableFlags::HUGE_PAGE.bits() != 0 {
            return Err(MapError::HugePageInTheWay);
        }
        if entry & user_bit != user_bit {
            self.memory.write_entry(table, index, entry | user_bit);
        }
        Ok(PhysAddr::new_truncate(entry & ADDR_MASK))
    }

    fn unmap_page(&mut self, virt: u64) -> Result<(PhysAddr, PageSize), MapError> {
        let leaf = self.find_leaf(virt)?;
        if !virt.is_multiple_of(leaf.size.bytes()) {
            return Err(MapError::Misaligned);
        }
        self.memory.write_entry(leaf.table, leaf.index, 0);
        Ok((PhysAddr::new_truncate(leaf.base()), leaf.size))
    }

    /// Undoes the first `done` bytes of a `map_range`, replaying its choice of page sizes.
    fn unmap_prefix(&mut self, virt: u64, phys: u64, done: u64, largest: PageSize) {
        let mut offset = 0;
        while offset < done {
            let size = largest_page(virt + offset, phys + offset, done - offset, largest);
            // Cannot fail: `map_range` mapped exactly this page a moment ago.
            let _ = self.unmap_page(virt + offset);
            offset += size.bytes();
        }
    }

    fn find_leaf(&self, virt: u64) -> Result<Leaf, MapError> {
        let mut table = self.root;
        for level in (2..=4).rev() {
            let (index, entry) = self.present_entry(table, virt, level)?;
            // Bit 7 is PS in PDPT and PD entries only; in a PML4 entry it is reserved.
            let huge = match level {
                3 => Some(PageSize::Size1G),
                2 => Some(PageSize::Size2M),
                _ => None,
            };
            if let Some(size) = huge.filter(|_| entry & PageTableFlags::HUGE_PAGE.bits() != 0) {
                return Ok(Leaf {
                    table,
                    index,
                    entry,
                    size,
                });
            }
            table = PhysAddr::new_truncate(entry & ADDR_MASK);
        }
        let (index, entry) = self.present_entry(table, virt, 1)?;
        Ok(Leaf {
            table,
            index,
            entry,
            size: PageSize::Size4K,
        })
    }

    fn present_entry(
        &self,
        table: PhysAddr,
        virt: u64,
        level: u32,
    ) -> Result<(usize, u64), MapError> {
        let index = table_index(virt, level);
        let entry = self.memory.read_entry(table, index);
        if entry & PageTableFlags::PRESENT.bits() == 0 {
            return Err(MapError::NotMapped);
        }
        Ok((index, entry))
    }
}

/// Index into the table at `level` (1 = PT .. 4 = PML4) for `virt`.
const fn table_index(virt: u64, level: u32) -> usize {
    ((virt >> (12 + 9 * (level - 1))) % ENTRIES) as usize
}

/// The largest page that fits at `virt -> phys` with `remaining` bytes left to map.
fn largest_page(virt: u64, phys: u64, remaining: u64, largest: PageSize) -> PageSize {
    let fits = |size: PageSize| {
        size.bytes() <= largest.bytes()
            && virt.is_multiple_of(size.bytes())
            && phys.is_multiple_of(size.bytes())
            && remaining >= size.bytes()
    };
    [PageSize::Size1G, PageSize::Size2M]
        .into_iter()
        .find(|&size| fits(size))
        .unwrap_or(PageSize::Size4K)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::collections::HashMap;

    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const RW: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

    /// Page tables in a map, frames handed out from a counter, optionally capped.
    struct FakeMemory {
        tables: HashMap<u64, [u64; 512]>,
        next_frame: u64,
        allocated: usize,
        limit: Option<usize>,
    }

    impl FakeMemory {
        fn new() -> Self {
            Self {
                tables: HashMap::new(),
                next_frame: 0x7000_0000,
                allocated: 0,
                limit: None,
            }
        }
    }

    impl PageTableMemory for FakeMemory {
        fn allocate_table(&mut self) -> Option<PhysAddr> {
            if self.limit.is_some_and(|limit| self.allocated >= limit) {
                return None;
            }
            let frame = self.next_frame;
            self.next_frame += 4096;
            self.allocated += 1;
            self.tables.insert(frame, [0; 512]);
            Some(PhysAddr::new(frame))
        }

        fn read_entry(&self, table: PhysAddr, index: usize) -> u64 {
            self.tables[&table.as_u64()][index]
        }

        fn write_entry(&mut self, table: PhysAddr, index: usize, value: u64) {
            let table = self
                .tables
                .get_mut(&table.as_u64())
                .expect("write to a frame that is not a table");
            table[index] = value;
        }
    }

    /// A mapper with an empty root; the root counts as the first allocated table.
    fn mapper() -> Mapper<FakeMemory> {
        let mut memory = FakeMemory::new();
        let root = memory.allocate_table().unwrap();
        Mapper::new(root, memory)
    }

    /// Present leaves by size: [4 KiB, 2 MiB, 1 GiB].
    fn count_leaves(mapper: &Mapper<FakeMemory>) -> [usize; 3] {
        fn walk(memory: &FakeMemory, table: u64, level: u32, counts: &mut [usize; 3]) {
            for &entry in &memory.tables[&table] {
                if entry & 1 == 0 {
                    continue;
                }
                let huge = entry & PageTableFlags::HUGE_PAGE.bits() != 0;
                match level {
                    1 => counts[0] += 1,
                    2 if huge => counts[1] += 1,
                    3 if huge => counts[2] += 1,
                    _ => walk(memory, entry & ADDR_MASK, level - 1, counts),
                }
            }
        }
        let mut counts = [0; 3];
        walk(&mapper.memory, mapper.root.as_u64(), 4, &mut counts);
        counts
    }

    fn virt(value: u64) -> VirtAddr {
        VirtAddr::new(value)
    }

    fn phys(value: u64) -> PhysAddr {
        PhysAddr::new(value)
    }

    #[test]
    fn maps_and_translates_a_4k_page() {
        let mut m = mapper();
        m.map(virt(0x40_0000), phys(0x1234_5000), PageSize::Size4K, RW)
            .unwrap();
        assert_eq!(m.translate(virt(0x40_0000)), Some((phys(0x1234_5000), RW)));
        assert_eq!(m.translate(virt(0x40_0abc)).unwrap().0, phys(0x1234_5abc));
        assert_eq!(m.translate(virt(0x40_1000)), None);
        // PML4 + PDPT + PD + PT.
        assert_eq!(m.memory.allocated, 4);
    }

    #[test]
    fn maps_and_translates_a_2m_page_with_offset() {
        let mut m = mapper();
        let higher_half = 0xffff_8000_0020_0000;
        m.map(virt(higher_half), phys(0x4000_0000), PageSize::Size2M, RW)
            .unwrap();
        let (addr, flags) = m.translate(virt(higher_half + 0x1_2345)).unwrap();
        assert_eq!(addr, phys(0x4001_2345));
        assert_eq!(flags, RW | PageTableFlags::HUGE_PAGE);
        assert_eq!(m.translate(virt(higher_half + 2 * MIB)), None);
        assert_eq!(m.memory.allocated, 3);
    }

    #[test]
    fn maps_and_translates_a_1g_page_with_offset() {
        let mut m = mapper();
        m.map(virt(GIB), phys(5 * GIB), PageSize::Size1G, RW)
            .unwrap();
        assert_eq!(
            m.translate(virt(GIB + 0x3fff_ffff)).unwrap().0,
            phys(6 * GIB - 1)
        );
        assert_eq!(m.translate(virt(GIB - 1)), None);
        assert_eq!(m.memory.allocated, 2);
    }

    #[test]
    fn leaf_flags_pass_through_and_intermediates_stay_plain() {
        let mut m = mapper();
        let flags = PageTableFlags::WRITABLE
            | PageTableFlags::NO_EXECUTE
            | PageTableFlags::GLOBAL
            | PageTableFlags::NO_CACHE
            | PageTableFlags::HUGE_PAGE;
        m.map(virt(0x1000), phys(0xfee0_0000), PageSize::Size4K, flags)
            .unwrap();
        let expected = (flags - PageTableFlags::HUGE_PAGE) | PageTableFlags::PRESENT;
        assert_eq!(m.translate(virt(0x1000)).unwrap().1, expected);
        let pml4e = m.memory.read_entry(m.root, 0);
        assert_eq!(pml4e & !ADDR_MASK, RW.bits());
    }

    #[test]
    fn user_mapping_marks_existing_intermediates_user() {
        let mut m = mapper();
        m.map(virt(0x1000), phys(0x1000), PageSize::Size4K, RW)
            .unwrap();
        let user = RW | PageTableFlags::USER_ACCESSIBLE;
        m.map(virt(0x2000), phys(0x2000), PageSize::Size4K, user)
            .unwrap();
        let pml4e = m.memory.read_entry(m.root, 0);
        assert_ne!(pml4e & PageTableFlags::USER_ACCESSIBLE.bits(), 0);
        assert_eq!(m.translate(virt(0x1000)).unwrap().1, RW);
        assert_eq!(m.translate(virt(0x2000)).unwrap().1, user);
    }

    #[test]
    fn rejects_misaligned_pages() {
        let mut m = mapper();
        let cases = [
            (0x1800, 0x1000, PageSize::Size4K),
            (0x1000, 0x1800, PageSize::Size4K),
            (0x1000, 0x20_0000, PageSize::Size2M),
            (0x20_0000, 0x1000, PageSize::Size2M),
            (0x20_0000, GIB, PageSize::Size1G),
            (GIB, 0x20_0000, PageSize::Size1G),
        ];
        for (v, p, size) in cases {
            assert_eq!(m.map(virt(v), phys(p), size, RW), Err(MapError::Misaligned));
        }
        assert_eq!(m.memory.allocated, 1, "a refused map must not build tables");
    }

    #[test]
    fn identical_remap_is_already_mapped() {
        let mut m = mapper();
        m.map(virt(0x5000), phys(0x9000), PageSize::Size4K, RW)
            .unwrap();
        assert_eq!(
            m.map(virt(0x5000), phys(0x9000), PageSize::Size4K, RW),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(
            m.map(virt(0x5000), phys(0xa000), PageSize::Size4K, RW),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(m.translate(virt(0x5000)).unwrap().0, phys(0x9000));
    }

    #[test]
    fn huge_page_over_a_table_of_small_pages_is_already_mapped() {
        let mut m = mapper();
        m.map(virt(0x20_1000), phys(0x1000), PageSize::Size4K, RW)
            .unwrap();
        assert_eq!(
            m.map(virt(0x20_0000), phys(0), PageSize::Size2M, RW),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(
            m.map(virt(0), phys(0), PageSize::Size1G, RW),
            Err(MapError::AlreadyMapped)
        );
    }

    #[test]
    fn small_page_under_a_huge_page_is_huge_page_in_the_way() {
        let mut m = mapper();
        m.map(virt(0x20_0000), phys(0x20_0000), PageSize::Size2M, RW)
            .unwrap();
        assert_eq!(
            m.map(virt(0x20_3000), phys(0x1000), PageSize::Size4K, RW),
            Err(MapError::HugePageInTheWay)
        );
        m.map(virt(GIB), phys(GIB), PageSize::Size1G, RW).unwrap();
        assert_eq!(
            m.map(virt(GIB + 2 * MIB), phys(0), PageSize::Size2M, RW),
            Err(MapError::HugePageInTheWay)
        );
        assert_eq!(
            m.map(virt(GIB + 0x1000), phys(0), PageSize::Size4K, RW),
            Err(MapError::HugePageInTheWay)
        );
        assert_eq!(m.translate(virt(0x20_3000)).unwrap().0, phys(0x20_3000));
    }

    #[test]
    fn unmap_then_translate_is_none() {
        let mut m = mapper();
        m.map(virt(0x7000), phys(0x3000), PageSize::Size4K, RW)
            .unwrap();
        m.map(virt(0x40_0000), phys(0x80_0000), PageSize::Size2M, RW)
            .unwrap();
        assert_eq!(m.unmap(virt(0x7000)), Ok((phys(0x3000), PageSize::Size4K)));
        assert_eq!(
            m.unmap(virt(0x40_0000)),
            Ok((phys(0x80_0000), PageSize::Size2M))
        );
        assert_eq!(m.translate(virt(0x7000)), None);
        assert_eq!(m.translate(virt(0x40_0000)), None);
        assert_eq!(m.unmap(virt(0x7000)), Err(MapError::NotMapped));
        // The freed slot can be mapped again.
        m.map(virt(0x7000), phys(0x4000), PageSize::Size4K, RW)
            .unwrap();
        assert_eq!(m.translate(virt(0x7000)).unwrap().0, phys(0x4000));
    }

    #[test]
    fn unmap_inside_a_huge_page_is_misaligned() {
        let mut m = mapper();
        m.map(virt(0), phys(0), PageSize::Size1G, RW).unwrap();
        assert_eq!(m.unmap(virt(0x20_0000)), Err(MapError::Misaligned));
        assert!(m.translate(virt(0x20_0000)).is_some());
        assert_eq!(m.unmap(virt(0)), Ok((phys(0), PageSize::Size1G)));
    }

    #[test]
    fn unmap_of_nothing_is_not_mapped() {
        let mut m = mapper();
        assert_eq!(
            m.unmap(virt(0xffff_ffff_ffff_f000)),
            Err(MapError::NotMapped)
        );
    }

    #[test]
    fn map_range_uses_2m_pages_inside_and_4k_at_the_edges() {
        let mut m = mapper();
        // Two 4 KiB pages below 2 MiB, one 2 MiB page, three 4 KiB pages above 4 MiB.
        let start = 2 * MIB - 0x2000;
        let len = 0x2000 + 2 * MIB + 0x3000;
        m.map_range(virt(start), phys(start), len, RW, PageSize::Size2M)
            .unwrap();
        assert_eq!(count_leaves(&m), [5, 1, 0]);
        // PML4 + PDPT + PD + a PT for each edge.
        assert_eq!(m.memory.allocated, 5);
        let (addr, flags) = m.translate(virt(2 * MIB + 0x1234)).unwrap();
        assert_eq!(addr, phys(2 * MIB + 0x1234));
        assert!(flags.contains(PageTableFlags::HUGE_PAGE));
        assert_eq!(m.translate(virt(start - 1)), None);
        assert_eq!(m.translate(virt(start + len)), None);
        assert_eq!(
            m.translate(virt(start + len - 1)).unwrap().0,
            phys(start + len - 1)
        );
    }

    #[test]
    fn map_range_falls_back_to_4k_when_virt_and_phys_disagree() {
        let mut m = mapper();
        m.map_range(virt(2 * MIB), phys(0x1000), 2 * MIB, RW, PageSize::Size1G)
            .unwrap();
        assert_eq!(count_leaves(&m), [512, 0, 0]);
    }

    #[test]
    fn map_range_uses_1g_pages_only_when_allowed() {
        let mut m = mapper();
        m.map_range(virt(0), phys(0), 2 * GIB + 4 * MIB, RW, PageSize::Size1G)
            .unwrap();
        assert_eq!(count_leaves(&m), [0, 2, 2]);
        assert_eq!(m.memory.allocated, 3);

        let mut m = mapper();
        m.map_range(virt(0), phys(0), 2 * GIB, RW, PageSize::Size2M)
            .unwrap();
        assert_eq!(count_leaves(&m), [0, 1024, 0]);
        // PML4 + PDPT + one PD per GiB.
        assert_eq!(m.memory.allocated, 4);
    }

    #[test]
    fn map_range_uses_only_4k_pages_when_told_so() {
        let mut m = mapper();
        m.map_range(virt(0), phys(0), 4 * MIB, RW, PageSize::Size4K)
            .unwrap();
        assert_eq!(count_leaves(&m), [1024, 0, 0]);
        // PML4 + PDPT + PD + one PT per 2 MiB.
        assert_eq!(m.memory.allocated, 5);
    }

    #[test]
    fn identity_map_of_77_mib_uses_the_expected_tables() {
        let mut m = mapper();
        m.map_range(virt(0), phys(0), 77 * MIB, RW, PageSize::Size2M)
            .unwrap();
        // 38 pages of 2 MiB cover 76 MiB; the last MiB needs 256 pages of 4 KiB in one PT.
        assert_eq!(count_leaves(&m), [256, 38, 0]);
        // PML4 + PDPT + PD + PT.
        assert_eq!(m.memory.allocated, 4);
        assert_eq!(m.memory.tables.len(), 4);
        for addr in [0, 0x1f_ffff, 76 * MIB, 77 * MIB - 1] {
            assert_eq!(m.translate(virt(addr)).unwrap().0, phys(addr));
        }
        assert_eq!(m.translate(virt(77 * MIB)), None);
    }

    #[test]
    fn map_range_rejects_unaligned_arguments() {
        let mut m = mapper();
        assert_eq!(
            m.map_range(virt(0x1001), phys(0), 0x1000, RW, PageSize::Size2M),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            m.map_range(virt(0), phys(0x10), 0x1000, RW, PageSize::Size2M),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            m.map_range(virt(0), phys(0), 0x1001, RW, PageSize::Size2M),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            m.map_range(virt(0), phys(0), 0, RW, PageSize::Size2M),
            Ok(())
        );
        assert_eq!(m.memory.allocated, 1);
    }

    #[test]
    fn rejects_ranges_leaving_the_canonical_half() {
        let mut m = mapper();
        let top_of_lower_half = LOWER_HALF_END - 0x1000;
        assert_eq!(
            m.map_range(
                virt(top_of_lower_half),
                phys(0),
                0x2000,
                RW,
                PageSize::Size2M
            ),
            Err(MapError::NonCanonical)
        );
        assert_eq!(
            m.map_range(
                virt(0xffff_ffff_ffff_f000),
                phys(0),
                0x2000,
                RW,
                PageSize::Size2M
            ),
            Err(MapError::NonCanonical)
        );
        assert_eq!(
            m.map_range(
                virt(0),
                phys(PHYS_LIMIT - 0x1000),
                0x2000,
                RW,
                PageSize::Size2M
            ),
            Err(MapError::NonCanonical)
        );
        assert_eq!(m.memory.allocated, 1);
        // The last page of each half is fine.
        m.map_range(
            virt(top_of_lower_half),
            phys(0),
            0x1000,
            RW,
            PageSize::Size2M,
        )
        .unwrap();
        m.map_range(
            virt(0xffff_ffff_ffff_f000),
            phys(PHYS_LIMIT - 0x1000),
            0x1000,
            RW,
            PageSize::Size2M,
        )
        .unwrap();
        assert_eq!(m.translate(virt(u64::MAX)).unwrap().0, phys(PHYS_LIMIT - 1));
    }

    #[test]
    fn out_of_frames_keeps_tables_usable_for_a_retry() {
        let mut m = mapper();
        // The root plus PDPT and PD; the PT cannot be had.
        m.memory.limit = Some(3);
        assert_eq!(
            m.map(virt(0x1000), phys(0x1000), PageSize::Size4K, RW),
            Err(MapError::OutOfFrames)
        );
        assert_eq!(m.translate(virt(0x1000)), None);
        // A 2 MiB page needs no PT, so the half-built path is already useful.
        m.map(virt(0x20_0000), phys(0x20_0000), PageSize::Size2M, RW)
            .unwrap();

        m.memory.limit = None;
        m.map(virt(0x1000), phys(0x1000), PageSize::Size4K, RW)
            .unwrap();
        assert_eq!(m.translate(virt(0x1000)).unwrap().0, phys(0x1000));
        // The retry reused PDPT and PD: only the PT was new.
        assert_eq!(m.memory.allocated, 4);
    }

    #[test]
    fn failed_map_range_unmaps_what_it_mapped() {
        let mut m = mapper();
        // Enough for the first PT (and the 2 MiB page after it) but not for the PT of the tail.
        m.memory.limit = Some(4);
        let start = 2 * MIB - 0x1000;
        let len = 0x1000 + 2 * MIB + 0x1000;
        assert_eq!(
            m.map_range(virt(start), phys(start), len, RW, PageSize::Size2M),
            Err(MapError::OutOfFrames)
        );
        assert_eq!(count_leaves(&m), [0, 0, 0]);
        assert_eq!(m.translate(virt(start)), None);
        assert_eq!(m.translate(virt(2 * MIB)), None);

        m.memory.limit = None;
        m.map_range(virt(start), phys(start), len, RW, PageSize::Size2M)
            .unwrap();
        assert_eq!(count_leaves(&m), [2, 1, 0]);
        assert_eq!(m.memory.allocated, 5);
    }

    #[test]
    fn map_range_over_an_existing_page_fails_whole() {
        let mut m = mapper();
        m.map(virt(0x5000), phys(0xdead_0000), PageSize::Size4K, RW)
            .unwrap();
        assert_eq!(
            m.map_range(virt(0), phys(0), 0x10000, RW, PageSize::Size2M),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(count_leaves(&m), [1, 0, 0]);
        assert_eq!(m.translate(virt(0x5000)).unwrap().0, phys(0xdead_0000));
    }

    #[test]
    fn root_and_memory_are_exposed() {
        let mut m = mapper();
        let root = m.root();
        assert_eq!(root, phys(0x7000_0000));
        assert_eq!(m.memory().allocated, 1);
    }

    #[test]
    fn errors_have_messages() {
        use std::string::ToString;
        assert_eq!(
            MapError::HugePageInTheWay.to_string(),
            "a huge page covers the address"
        );
        assert_eq!(PageSize::Size2M.bytes(), 2 * MIB);
    }
}
