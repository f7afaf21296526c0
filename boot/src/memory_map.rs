//! The firmware memory map, kept as given, with a sanitized view for the frame allocator.
//!
//! Entries are E820-style (ACPI "System Address Map" types, which `hvm_memmap_table_entry` and
//! Xen's `XENMEM_memory_map` both use). A map from a loader is not trusted to be sorted,
//! disjoint or consistent, so [`MemoryMap`] stores the regions as listed and derives
//! [`usable_ranges`](MemoryMap::usable_ranges) with two rules:
//!
//! - RAM listed twice, or in overlapping or touching regions, is one range (counted once).
//! - Any non-usable region wins over RAM it overlaps: if the firmware says "reserved", using
//!   the memory could corrupt a device or firmware table, whereas not using it only wastes it.

use core::fmt;

use crate::error::BootError;

/// What a region of physical memory may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// RAM, free for the kernel (E820 type 1).
    Usable,
    /// In use by firmware or devices (type 2).
    Reserved,
    /// ACPI tables; reclaimable once parsed (type 3). Treated as reserved here.
    Acpi,
    /// ACPI non-volatile storage, must be preserved (type 4).
    AcpiNvs,
    /// RAM with detected errors (type 5).
    Unusable,
    /// Persistent memory (type 7).
    Persistent,
    /// Any other type, including 6 (disabled) and vendor types. Never one of the types above.
    Other(u32),
}

impl RegionKind {
    /// Decodes an E820 / `XEN_HVM_MEMMAP_TYPE_*` type.
    pub const fn from_e820(kind: u32) -> Self {
        match kind {
            1 => RegionKind::Usable,
            2 => RegionKind::Reserved,
            3 => RegionKind::Acpi,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Unusable,
            7 => RegionKind::Persistent,
            other => RegionKind::Other(other),
        }
    }
}

/// The half-open physical range `[start, end)`, `start < end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: RegionKind,
}

/// Up to `N` items, no heap.
#[derive(Clone, Copy)]
struct FixedVec<T: Copy, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy, const N: usize> FixedVec<T, N> {
    /// `fill` only occupies the unused slots.
    const fn new(fill: T) -> Self {
        FixedVec {
            items: [fill; N],
            len: 0,
        }
    }

    /// Returns `item` back when full.
    fn push(&mut self, item: T) -> Result<(), T> {
        let slot = self.items.get_mut(self.len).ok_or(item)?;
        *slot = item;
        self.len += 1;
        Ok(())
    }

    fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
}

type Spans = FixedVec<(u64, u64), { MemoryMap::CAPACITY }>;

/// A physical memory map of at most [`CAPACITY`](Self::CAPACITY) regions.
#[derive(Clone)]
pub struct MemoryMap {
    regions: FixedVec<Region, { MemoryMap::CAPACITY }>,
}

impl MemoryMap {
    /// The most regions a map holds. QEMU lists about 6, Xen a handful, large hosts a few
    /// dozen; 128 leaves room without making `BootInfo` large on the boot stack.
    pub const CAPACITY: usize = 128;

    pub const fn new() -> Self {
        let fill = Region {
            start: 0,
            end: 0,
            kind: RegionKind::Reserved,
        };
        MemoryMap {
            regions: FixedVec::new(fill),
        }
    }

    /// Adds the entry `[addr, addr + size)`.
    ///
    /// A zero-size entry describes nothing and is skipped. An entry whose end does not fit in
    /// 64 bits is an error rather than being clipped: the map is corrupt and nothing in it can be
    /// trusted. A full map is an error, never a silent truncation.
    pub fn push(&mut self, addr: u64, size: u64, kind: RegionKind) -> Result<(), BootError> {
        if size == 0 {
            return Ok(());
        }
        let end = addr
            .checked_add(size)
            .ok_or(BootError::RegionOverflow { addr, size })?;
        self.regions
            .push(Region {
                start: addr,
                end,
                kind,
            })
            .map_err(|_| BootError::TooManyRegions {
                entries: Self::CAPACITY as u64 + 1,
            })
    }

    /// The regions as listed, without zero-size entries.
    pub fn regions(&self) -> &[Region] {
        self.regions.as_slice()
    }

    /// Usable RAM: sorted, disjoint, non-adjacent `(start, end)` ranges, with every non-usable
    /// region removed (see the module doc for why reserved wins).
    pub fn usable_ranges(&self) -> UsableRanges {
        let mut usable = Spans::new((0, 0));
        let mut holes = Spans::new((0, 0));
        for region in self.regions() {
            let spans = if region.kind == RegionKind::Usable {
                &mut usable
            } else {
                &mut holes
            };
            // Each list receives a subset of at most CAPACITY regions: never full.
            let _ = spans.push((region.start, region.end));
        }
        let usable = merged(usable);
        let holes = merged(holes);

        // Each output range ends at a usable range's end or at a hole's start, and no two
        // ranges share an end, so there are at most `usable.len + holes.len <= CAPACITY` of them.
        let mut ranges = Spans::new((0, 0));
        for &(start, end) in usable.as_slice() {
            let mut cursor = start;
            // Holes are disjoint and sorted, so their ends are sorted too.
            let first = holes
                .as_slice()
                .partition_point(|&(_, hole_end)| hole_end <= start);
            for &(hole_start, hole_end) in &holes.as_slice()[first..] {
                if hole_start >= end {
                    break;
                }
                if hole_start > cursor {
                    let _ = ranges.push((cursor, hole_start));
                }
                cursor = cursor.max(hole_end);
            }
            if cursor < end {
                let _ = ranges.push((cursor, end));
            }
        }
        UsableRanges { ranges, next: 0 }
    }

    /// Bytes of usable RAM, each byte counted once: the total of [`usable_ranges`].
    ///
    /// [`usable_ranges`]: Self::usable_ranges
    pub fn usable_bytes(&self) -> u64 {
        // Disjoint ranges below 2^64 cannot sum past u64::MAX.
        self.usable_ranges().map(|(start, end)| end - start).sum()
    }
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for MemoryMap {
    fn eq(&self, other: &Self) -> bool {
        self.regions() == other.regions()
    }
}

impl Eq for MemoryMap {}

impl fmt::Debug for MemoryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Entry<'r>(&'r Region);
        impl fmt::Debug for Entry<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}-{:#x} {:?}", self.0.start, self.0.end, self.0.kind)
            }
        }
        f.debug_list()
            .entries(self.regions().iter().map(Entry))
            .finish()
    }
}

/// Sorts `spans` and coalesces overlapping or touching ones.
fn merged(mut spans: Spans) -> Spans {
    spans.as_mut_slice().sort_unstable();
    let mut out = Spans::new((0, 0));
    for &(start, end) in spans.as_slice() {
        match out.as_mut_slice().last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            // Never full: at most as many spans out as in.
            _ => {
                let _ = out.push((start, end));
            }
        }
    }
    out
}

/// Iterator over [`MemoryMap::usable_ranges`].
#[derive(Clone)]
pub struct UsableRanges {
    ranges: Spans,
    next: usize,
}

impl Iterator for UsableRanges {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let range = *self.ranges.as_slice().get(self.next)?;
        self.next += 1;
        Some(range)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.ranges.as_slice().len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for UsableRanges {}

impl fmt::Debug for UsableRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(&self.ranges.as_slice()[self.next..])
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;

    fn map(entries: &[(u64, u64, RegionKind)]) -> MemoryMap {
        let mut map = MemoryMap::new();
        for &(addr, size, kind) in entries {
            map.push(addr, size, kind).unwrap();
        }
        map
    }

    fn usable(map: &MemoryMap) -> Vec<(u64, u64)> {
        map.usable_ranges().collect()
    }

    use RegionKind::{Acpi, Reserved, Usable};

    #[test]
    fn decodes_e820_types() {
        let kinds: Vec<RegionKind> = (1..=8).map(RegionKind::from_e820).collect();
        assert_eq!(
            kinds,
            [
                Usable,
                Reserved,
                Acpi,
                RegionKind::AcpiNvs,
                RegionKind::Unusable,
                RegionKind::Other(6),
                RegionKind::Persistent,
                RegionKind::Other(8),
            ]
        );
    }

    #[test]
    fn qemu_map_yields_its_two_ram_ranges() {
        let map = map(&[
            (0, 0x9_fc00, Usable),
            (0x9_fc00, 0x400, Reserved),
            (0xf_0000, 0x1_0000, Reserved),
            (0x10_0000, 0x4c0_0000, Usable),
            (0xfeff_c000, 0x4000, Reserved),
            (0xfffc_0000, 0x4_0000, Reserved),
        ]);
        assert_eq!(usable(&map), [(0, 0x9_fc00), (0x10_0000, 0x4d0_0000)]);
        assert_eq!(map.usable_bytes(), 0x9_fc00 + 0x4c0_0000);
    }

    #[test]
    fn keeps_regions_as_listed() {
        let map = map(&[(0x10_0000, 0x1000, Usable), (0, 0x1000, Reserved)]);
        assert_eq!(
            map.regions(),
            [
                Region {
                    start: 0x10_0000,
                    end: 0x10_1000,
                    kind: Usable
                },
                Region {
                    start: 0,
                    end: 0x1000,
                    kind: Reserved
                },
            ]
        );
    }

    #[test]
    fn counts_overlapping_and_duplicate_ram_once() {
        let map = map(&[
            (0x10_0000, 0x10_0000, Usable),
            (0x10_0000, 0x10_0000, Usable),
            (0x18_0000, 0x10_0000, Usable),
            (0x28_0000, 0x1000, Usable), // touches the previous one
        ]);
        assert_eq!(usable(&map), [(0x10_0000, 0x28_1000)]);
        assert_eq!(map.usable_bytes(), 0x18_1000);
    }

    #[test]
    fn reserved_carves_holes_out_of_ram_whatever_the_order() {
        let map = map(&[
            (0x2000, 0x1000, Reserved), // listed before the RAM it splits
            (0, 0x10_0000, Usable),
            (0xf_f000, 0x2000, Acpi), // straddles the end of RAM
            (0x8000, 0x1000, Reserved),
            (0x8800, 0x1000, Reserved), // overlaps the previous hole
        ]);
        assert_eq!(
            usable(&map),
            [(0, 0x2000), (0x3000, 0x8000), (0x9800, 0xf_f000)]
        );
        assert_eq!(map.usable_bytes(), 0x2000 + 0x5000 + 0xf_5800);
    }

    #[test]
    fn ram_entirely_reserved_is_not_usable() {
        let map = map(&[
            (0x1000, 0x1000, Usable),
            (0, 0x10_0000, RegionKind::Unusable),
        ]);
        assert_eq!(usable(&map), []);
        assert_eq!(map.usable_bytes(), 0);
    }

    #[test]
    fn one_hole_may_span_several_ram_ranges() {
        let map = map(&[
            (0, 0x3000, Usable),
            (0x4000, 0x3000, Usable),
            (0x2000, 0x3000, Reserved),
        ]);
        assert_eq!(usable(&map), [(0, 0x2000), (0x5000, 0x7000)]);
    }

    #[test]
    fn skips_zero_size_entries() {
        let mut map = MemoryMap::new();
        map.push(0x1000, 0, Usable).unwrap();
        map.push(u64::MAX, 0, Reserved).unwrap();
        assert_eq!(map.regions(), []);
        assert_eq!(map.usable_bytes(), 0);
    }

    #[test]
    fn rejects_entry_whose_end_overflows() {
        let mut map = MemoryMap::new();
        assert_eq!(
            map.push(u64::MAX - 0xfff, 0x1000, Usable),
            Err(BootError::RegionOverflow {
                addr: u64::MAX - 0xfff,
                size: 0x1000
            })
        );
        // The last representable byte is fine: the end is exclusive.
        map.push(u64::MAX - 0x1000, 0x1000, Usable).unwrap();
        assert_eq!(usable(&map), [(u64::MAX - 0x1000, u64::MAX)]);
    }

    #[test]
    fn rejects_push_beyond_capacity() {
        let mut map = MemoryMap::new();
        for i in 0..MemoryMap::CAPACITY as u64 {
            map.push(i * 0x2000, 0x1000, Usable).unwrap();
        }
        assert_eq!(
            map.push(0x100_0000, 0x1000, Usable),
            Err(BootError::TooManyRegions { entries: 129 })
        );
        assert_eq!(map.regions().len(), MemoryMap::CAPACITY);
    }

    #[test]
    fn full_map_of_holes_in_one_ram_range_splits_into_capacity_ranges() {
        // The worst case for the output count: 1 RAM range cut by 127 holes.
        let mut map = MemoryMap::new();
        map.push(0, 0x100_0000, Usable).unwrap();
        for i in 1..MemoryMap::CAPACITY as u64 {
            map.push(i * 0x2000, 0x1000, Reserved).unwrap();
        }
        let ranges = usable(&map);
        assert_eq!(ranges.len(), MemoryMap::CAPACITY);
        assert_eq!(ranges[0], (0, 0x2000));
        assert_eq!(ranges[127], (0xff000, 0x100_0000));
        assert_eq!(map.usable_bytes(), 0x100_0000 - 127 * 0x1000);
    }

    #[test]
    fn debug_lists_regions_in_hex() {
        let map = map(&[(0x1000, 0x1000, Usable)]);
        assert_eq!(std::format!("{map:?}"), "[0x1000-0x2000 Usable]");
    }
}
