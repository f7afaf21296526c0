//! Physical frame allocator: a sorted, fixed-capacity list of free ranges.
//!
//! Invariant of the list: ranges are frame-aligned, non-empty, sorted, and neither overlap nor
//! touch (touching ranges are merged), so one binary search finds where any address falls.
//!
//! ```text
//!   ranges[0]        ranges[1]               ranges[len-1]
//!   [s0, e0)  gap    [s1, e1)   gap   ...    [sk, ek)      <- allocate() takes ek - 4096
//! ```

use core::fmt;

use x86_64::PhysAddr;

/// Size of a frame, the allocator's unit.
pub const FRAME_SIZE: u64 = 4096;

/// First byte past the physical address space: MAXPHYADDR is at most 52
/// (Intel SDM Vol. 3A §4.1.4), and [`PhysAddr`] refuses anything above.
pub const PHYS_LIMIT: u64 = 1 << 52;

/// Why the allocator refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The address is not on a frame boundary.
    Misaligned,
    /// Part of the freed range is already free.
    DoubleFree,
    /// The change needs more free-range slots than the allocator has; nothing was changed.
    TooFragmented,
    /// The range wraps around or runs past the physical address space.
    Overflow,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Misaligned => "address is not 4 KiB aligned",
            Self::DoubleFree => "range is already free",
            Self::TooFragmented => "free list is full",
            Self::Overflow => "range runs past the physical address space",
        })
    }
}

/// Hands out 4 KiB physical frames from at most `N` disjoint free ranges.
///
/// Policy: every allocation takes the highest fitting frames, so low memory stays free for
/// whoever needs it later: [`allocate_below`](Self::allocate_below) for 32-bit DMA, and the
/// boot-time structures that must sit under 4 GiB.
///
/// Build it with [`add_usable`](Self::add_usable) for every usable region and then
/// [`reserve`](Self::reserve) for every region in use (or both at once with
/// [`from_regions`](Self::from_regions)). `add_usable` does not know what was reserved or
/// allocated before, so it belongs to construction only.
#[derive(Clone)]
pub struct FrameAllocator<const N: usize = 256> {
    ranges: [(u64, u64); N],
    len: usize,
}

impl<const N: usize> FrameAllocator<N> {
    /// An allocator with no free memory.
    pub const fn new() -> Self {
        Self {
            ranges: [(0, 0); N],
            len: 0,
        }
    }

    /// Builds an allocator from all `usable` ranges minus all `reserved` ones, in that order, so
    /// a reservation is never undone by a usable range listed after it.
    pub fn from_regions(
        usable: &[(u64, u64)],
        reserved: &[(u64, u64)],
    ) -> Result<Self, FrameError> {
        let mut allocator = Self::new();
        for &(start, end) in usable {
            allocator.add_usable(start, end)?;
        }
        for &(start, end) in reserved {
            allocator.reserve(start, end)?;
        }
        Ok(allocator)
    }

    /// Adds the whole frames inside `[start, end)` to the free memory.
    ///
    /// Firmware maps are not trusted: the range is clipped to [`PHYS_LIMIT`], trimmed inward to
    /// frame boundaries, ignored if that leaves nothing (including `end < start`), and merged with
    /// any free range it overlaps or touches.
    pub fn add_usable(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        let start = start.min(PHYS_LIMIT).next_multiple_of(FRAME_SIZE);
        let end = align_down(end.min(PHYS_LIMIT), FRAME_SIZE);
        if start >= end {
            return Ok(());
        }
        self.insert_merged(start, end)
    }

    /// Removes `[start, end)`, rounded outward to frame boundaries, from the free memory.
    ///
    /// Parts that are not free are skipped, so a reservation may span holes and several ranges.
    /// Fails with [`FrameError::TooFragmented`] (and changes nothing) only when it would split a
    /// range while the list is full. The region is then still free, so boot must not go on.
    pub fn reserve(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        let start = align_down(start.min(PHYS_LIMIT), FRAME_SIZE);
        let end = end.min(PHYS_LIMIT).next_multiple_of(FRAME_SIZE);
        if start >= end {
            return Ok(());
        }
        let first = self.live().partition_point(|&(_, e)| e <= start);
        let past = self.live().partition_point(|&(s, _)| s < end);
        if first == past {
            return Ok(());
        }
        let mut pieces = [(0, 0); 2];
        let mut count = 0;
        let (first_start, _) = self.ranges[first];
        if first_start < start {
            pieces[count] = (first_start, start);
            count += 1;
        }
        let (_, last_end) = self.ranges[past - 1];
        if last_end > end {
            pieces[count] = (end, last_end);
            count += 1;
        }
        self.splice(first, past, &pieces[..count])
    }

    /// One frame, the highest free one.
    pub fn allocate(&mut self) -> Option<PhysAddr> {
        self.allocate_contiguous(1, FRAME_SIZE)
    }

    /// `frames` physically contiguous frames starting on an `align`-byte boundary, as high as
    /// possible. `align` must be a power of two; anything below 4096 means 4096.
    ///
    /// Returns `None` when no free range holds such a block, or when the only fits would split a
    /// range while the list is full.
    pub fn allocate_contiguous(&mut self, frames: u64, align: u64) -> Option<PhysAddr> {
        if frames == 0 || !align.is_power_of_two() {
            return None;
        }
        let align = align.max(FRAME_SIZE);
        let size = frames.checked_mul(FRAME_SIZE)?;
        for index in (0..self.len).rev() {
            let (start, end) = self.ranges[index];
            let Some(high) = end.checked_sub(size).map(|top| align_down(top, align)) else {
                continue;
            };
            if high < start {
                continue;
            }
            if self.carve(index, high, high + size).is_ok() {
                return Some(PhysAddr::new_truncate(high));
            }
            // The list is full and the highest fit would split the range. The lowest fit does
            // not split it when it starts the range, so it is worth one more try. It fits: it is
            // aligned and at least `start`, so it is at most `high`.
            if let Some(low) = start.checked_next_multiple_of(align)
                && self.carve(index, low, low + size).is_ok()
            {
                return Some(PhysAddr::new_truncate(low));
            }
        }
        None
    }

    /// The highest free frame that lies wholly below `limit`, e.g. `1 << 32` for a device that
    /// only does 32-bit DMA.
    pub fn allocate_below(&mut self, limit: u64) -> Option<PhysAddr> {
        let limit = align_down(limit.min(PHYS_LIMIT), FRAME_SIZE);
        for index in (0..self.len).rev() {
            let (start, end) = self.ranges[index];
            let top = end.min(limit);
            if top < start + FRAME_SIZE {
                continue;
            }
            if self.carve(index, top - FRAME_SIZE, top).is_ok() {
                return Some(PhysAddr::new_truncate(top - FRAME_SIZE));
            }
            // Full list and a split needed: the range's first frame is below the limit too,
            // and taking it only shrinks the range.
            self.carve(index, start, start + FRAME_SIZE).ok()?;
            return Some(PhysAddr::new_truncate(start));
        }
        None
    }

    /// Free bytes below `limit`.
    pub fn free_bytes_below(&self, limit: u64) -> u64 {
        self.live()
            .iter()
            .map(|&(start, end)| end.min(limit).saturating_sub(start))
            .sum()
    }

    /// Returns one frame.
    pub fn free(&mut self, frame: PhysAddr) -> Result<(), FrameError> {
        self.free_range(frame, 1)
    }

    /// Returns `frames` frames starting at `start`, merging them with free neighbours.
    ///
    /// Nothing changes on error. Freeing memory that never came from this allocator is allowed
    /// (that is how boot-time memory is handed back), so only overlap with free memory is caught.
    pub fn free_range(&mut self, start: PhysAddr, frames: u64) -> Result<(), FrameError> {
        let start = start.as_u64();
        if !start.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Misaligned);
        }
        if frames == 0 {
            return Ok(());
        }
        let end = frames
            .checked_mul(FRAME_SIZE)
            .and_then(|size| start.checked_add(size))
            .filter(|&end| end <= PHYS_LIMIT)
            .ok_or(FrameError::Overflow)?;
        let next = self.live().partition_point(|&(_, e)| e <= start);
        if next < self.len && self.ranges[next].0 < end {
            return Err(FrameError::DoubleFree);
        }
        self.insert_merged(start, end)
    }

    /// Total free memory in bytes.
    pub fn free_bytes(&self) -> u64 {
        self.live().iter().map(|&(start, end)| end - start).sum()
    }

    /// The free ranges as `[start, end)` byte pairs, ascending.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.live().iter().copied()
    }

    /// How many disjoint free ranges the allocator can track.
    pub const fn capacity(&self) -> usize {
        N
    }

    fn live(&self) -> &[(u64, u64)] {
        &self.ranges[..self.len]
    }

    /// Adds `[start, end)` (aligned, non-empty), merging every range it overlaps or touches.
    fn insert_merged(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        let first = self.live().partition_point(|&(_, e)| e < start);
        let past = self.live().partition_point(|&(s, _)| s <= end);
        let mut merged = (start, end);
        if first < past {
            merged.0 = merged.0.min(self.ranges[first].0);
            merged.1 = merged.1.max(self.ranges[past - 1].1);
        }
        self.splice(first, past, &[merged])
    }

    /// Takes `[start, end)`, which lies inside range `index`, out of the free list.
    fn carve(&mut self, index: usize, start: u64, end: u64) -> Result<(), FrameError> {
        let (range_start, range_end) = self.ranges[index];
        let mut pieces = [(0, 0); 2];
        let mut count = 0;
        if range_start < start {
            pieces[count] = (range_start, start);
            count += 1;
        }
        if end < range_end {
            pieces[count] = (end, range_end);
            count += 1;
        }
        self.splice(index, index + 1, &pieces[..count])
    }

    /// Replaces `ranges[first..past]` with `pieces`, or fails without a change if they don't fit.
    fn splice(
        &mut self,
        first: usize,
        past: usize,
        pieces: &[(u64, u64)],
    ) -> Result<(), FrameError> {
        let new_len = self.len - (past - first) + pieces.len();
        if new_len > N {
            return Err(FrameError::TooFragmented);
        }
        self.ranges
            .copy_within(past..self.len, first + pieces.len());
        self.ranges[first..first + pieces.len()].copy_from_slice(pieces);
        self.len = new_len;
        Ok(())
    }
}

impl<const N: usize> Default for FrameAllocator<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Prints the free ranges as `start..end`; format with `{:x?}` for hex.
impl<const N: usize> fmt::Debug for FrameAllocator<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Ranges<'a>(&'a [(u64, u64)]);
        impl fmt::Debug for Ranges<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|&(start, end)| start..end))
                    .finish()
            }
        }
        f.debug_struct("FrameAllocator")
            .field("free_bytes", &self.free_bytes())
            .field("capacity", &N)
            .field("ranges", &Ranges(self.live()))
            .finish()
    }
}

const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::collections::HashSet;
    use std::vec::Vec;

    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn ranges<const N: usize>(allocator: &FrameAllocator<N>) -> Vec<(u64, u64)> {
        allocator.ranges().collect()
    }

    fn addr(value: u64) -> PhysAddr {
        PhysAddr::new(value)
    }

    #[test]
    fn new_allocator_is_empty() {
        let mut allocator = FrameAllocator::<4>::new();
        assert_eq!(allocator.capacity(), 4);
        assert_eq!(allocator.free_bytes(), 0);
        assert_eq!(allocator.allocate(), None);
        assert_eq!(allocator.allocate_below(u64::MAX), None);
    }

    #[test]
    fn trims_unaligned_usable_edges_inward() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0x1001, 0x5fff).unwrap();
        assert_eq!(ranges(&allocator), [(0x2000, 0x5000)]);
    }

    #[test]
    fn ignores_empty_inverted_and_sub_frame_ranges() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0x5000, 0x5000).unwrap();
        allocator.add_usable(0x9000, 0x1000).unwrap();
        allocator.add_usable(0x1001, 0x1fff).unwrap();
        allocator.add_usable(u64::MAX, u64::MAX).unwrap();
        assert_eq!(allocator.free_bytes(), 0);
    }

    #[test]
    fn clips_ranges_beyond_the_physical_address_space() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(PHYS_LIMIT - 0x2000, u64::MAX).unwrap();
        allocator.add_usable(PHYS_LIMIT + 0x1000, u64::MAX).unwrap();
        assert_eq!(ranges(&allocator), [(PHYS_LIMIT - 0x2000, PHYS_LIMIT)]);
        assert_eq!(allocator.allocate(), Some(addr(PHYS_LIMIT - 0x1000)));
    }

    #[test]
    fn merges_overlapping_unsorted_and_adjacent_ranges() {
        let mut allocator = FrameAllocator::<8>::new();
        allocator.add_usable(0x10_0000, 0x20_0000).unwrap();
        allocator.add_usable(0x1000, 0x3000).unwrap();
        allocator.add_usable(0x18_0000, 0x30_0000).unwrap();
        allocator.add_usable(0x3000, 0x4000).unwrap();
        allocator.add_usable(0x12_0000, 0x13_0000).unwrap();
        allocator.add_usable(0x40_0000, 0x50_0000).unwrap();
        assert_eq!(
            ranges(&allocator),
            [
                (0x1000, 0x4000),
                (0x10_0000, 0x30_0000),
                (0x40_0000, 0x50_0000)
            ]
        );
        // One range swallowing everything collapses the list.
        allocator.add_usable(0, 0x60_0000).unwrap();
        assert_eq!(ranges(&allocator), [(0, 0x60_0000)]);
    }

    #[test]
    fn reserve_rounds_outward_and_carves_a_hole() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0, 0x10_0000).unwrap();
        allocator.reserve(0x4001, 0x6fff).unwrap();
        assert_eq!(ranges(&allocator), [(0, 0x4000), (0x7000, 0x10_0000)]);
    }

    #[test]
    fn reserve_at_range_edges_shrinks_without_splitting() {
        let mut allocator = FrameAllocator::<1>::new();
        allocator.add_usable(0x1000, 0x9000).unwrap();
        allocator.reserve(0, 0x2000).unwrap();
        allocator.reserve(0x8000, 0xa000).unwrap();
        assert_eq!(ranges(&allocator), [(0x2000, 0x8000)]);
    }

    #[test]
    fn reserve_spanning_several_ranges_removes_and_trims_them() {
        let mut allocator = FrameAllocator::<8>::new();
        allocator.add_usable(0x1000, 0x4000).unwrap();
        allocator.add_usable(0x6000, 0x8000).unwrap();
        allocator.add_usable(0xa000, 0xc000).unwrap();
        allocator.add_usable(0xe000, 0x12000).unwrap();
        allocator.reserve(0x3000, 0xf000).unwrap();
        assert_eq!(ranges(&allocator), [(0x1000, 0x3000), (0xf000, 0x12000)]);
    }

    #[test]
    fn reserve_of_memory_that_is_not_free_is_a_no_op() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0x1000, 0x2000).unwrap();
        allocator.reserve(0x5000, 0x9000).unwrap();
        allocator.reserve(0x9000, 0x1000).unwrap();
        allocator.reserve(PHYS_LIMIT, u64::MAX).unwrap();
        assert_eq!(ranges(&allocator), [(0x1000, 0x2000)]);
    }

    #[test]
    fn from_regions_applies_reservations_after_all_usable_ranges() {
        let allocator = FrameAllocator::<8>::from_regions(
            &[(4 * MIB, 8 * MIB), (0, 0x9_f000), (MIB, 4 * MIB)],
            &[(0, MIB), (MIB, 0x20_0000 + 123)],
        )
        .unwrap();
        assert_eq!(ranges(&allocator), [(0x20_1000, 8 * MIB)]);
    }

    #[test]
    fn reserve_that_would_split_a_full_list_fails_without_change() {
        let mut allocator = FrameAllocator::<2>::new();
        allocator.add_usable(0x1000, 0x4000).unwrap();
        allocator.add_usable(0x8000, 0xc000).unwrap();
        assert_eq!(
            allocator.reserve(0x9000, 0xa000),
            Err(FrameError::TooFragmented)
        );
        assert_eq!(ranges(&allocator), [(0x1000, 0x4000), (0x8000, 0xc000)]);
    }

    #[test]
    fn add_usable_beyond_capacity_is_too_fragmented() {
        let mut allocator = FrameAllocator::<2>::new();
        allocator.add_usable(0x1000, 0x2000).unwrap();
        allocator.add_usable(0x5000, 0x6000).unwrap();
        assert_eq!(
            allocator.add_usable(0x9000, 0xa000),
            Err(FrameError::TooFragmented)
        );
        // Merging into an existing range needs no slot and still works.
        allocator.add_usable(0x2000, 0x3000).unwrap();
        assert_eq!(ranges(&allocator), [(0x1000, 0x3000), (0x5000, 0x6000)]);
    }

    #[test]
    fn allocates_from_the_highest_range_first() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(MIB, 2 * MIB).unwrap();
        allocator.add_usable(4 * GIB, 4 * GIB + 0x2000).unwrap();
        assert_eq!(allocator.allocate(), Some(addr(4 * GIB + 0x1000)));
        assert_eq!(allocator.allocate(), Some(addr(4 * GIB)));
        assert_eq!(allocator.allocate(), Some(addr(2 * MIB - 0x1000)));
        assert_eq!(ranges(&allocator), [(MIB, 2 * MIB - 0x1000)]);
    }

    #[test]
    fn contiguous_allocation_honours_alignment() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0x1000, 0x40_3000).unwrap();
        let block = allocator.allocate_contiguous(4, 2 * MIB).unwrap();
        assert_eq!(block, addr(0x20_0000));
        assert_eq!(
            ranges(&allocator),
            [(0x1000, 0x20_0000), (0x20_4000, 0x40_3000)]
        );
        assert_eq!(allocator.free_bytes(), 0x40_2000 - 0x4000);

        let small = allocator.allocate_contiguous(3, 0x4000).unwrap();
        assert_eq!(small.as_u64() % 0x4000, 0);
        assert_eq!(small, addr(0x40_0000));
        assert_eq!(
            ranges(&allocator),
            [(0x1000, 0x20_0000), (0x20_4000, 0x40_0000)]
        );
    }

    #[test]
    fn contiguous_allocation_rejects_bad_requests() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0, 16 * MIB).unwrap();
        assert_eq!(allocator.allocate_contiguous(0, FRAME_SIZE), None);
        assert_eq!(allocator.allocate_contiguous(1, 3 * FRAME_SIZE), None);
        assert_eq!(allocator.allocate_contiguous(1, 0), None);
        assert_eq!(allocator.allocate_contiguous(u64::MAX, FRAME_SIZE), None);
        assert_eq!(allocator.allocate_contiguous(4097, FRAME_SIZE), None);
        assert_eq!(allocator.allocate_contiguous(1, 1 << 63), Some(addr(0)));
        assert_eq!(allocator.free_bytes(), 16 * MIB - FRAME_SIZE);
    }

    #[test]
    fn small_alignment_means_frame_alignment() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0x1000, 0x3000).unwrap();
        assert_eq!(allocator.allocate_contiguous(1, 8), Some(addr(0x2000)));
    }

    #[test]
    fn contiguous_allocation_skips_ranges_too_small() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0x10_0000, 0x11_0000).unwrap();
        allocator.add_usable(0x20_0000, 0x20_3000).unwrap();
        assert_eq!(
            allocator.allocate_contiguous(8, FRAME_SIZE),
            Some(addr(0x10_8000))
        );
        assert_eq!(
            ranges(&allocator),
            [(0x10_0000, 0x10_8000), (0x20_0000, 0x20_3000)]
        );
    }

    #[test]
    fn full_list_falls_back_to_the_low_end_of_a_range() {
        let mut allocator = FrameAllocator::<1>::new();
        allocator.add_usable(0x1000, 0x40_0000).unwrap();
        // The highest 2 MiB-aligned fit (0x20_0000) would split the only range.
        assert_eq!(allocator.allocate_contiguous(1, 2 * MIB), None);
        allocator.reserve(0, 0x20_0000).unwrap();
        assert_eq!(
            allocator.allocate_contiguous(1, 2 * MIB),
            Some(addr(0x20_0000))
        );
        assert_eq!(ranges(&allocator), [(0x20_1000, 0x40_0000)]);
    }

    #[test]
    fn allocate_below_stays_under_the_limit() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(3 * GIB, 5 * GIB).unwrap();
        assert_eq!(
            allocator.allocate_below(1 << 32),
            Some(addr((1 << 32) - FRAME_SIZE))
        );
        assert_eq!(
            ranges(&allocator),
            [(3 * GIB, 4 * GIB - FRAME_SIZE), (4 * GIB, 5 * GIB)]
        );
        // An unaligned limit only admits frames wholly below it.
        assert_eq!(
            allocator.allocate_below(3 * GIB + 0x1fff),
            Some(addr(3 * GIB))
        );
        assert_eq!(allocator.allocate_below(3 * GIB + 0x1fff), None);
        assert_eq!(allocator.allocate_below(0), None);
    }

    #[test]
    fn allocate_below_skips_ranges_above_the_limit() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(MIB, MIB + 0x2000).unwrap();
        allocator.add_usable(8 * GIB, 9 * GIB).unwrap();
        assert_eq!(allocator.allocate_below(4 * GIB), Some(addr(MIB + 0x1000)));
        assert_eq!(allocator.allocate_below(4 * GIB), Some(addr(MIB)));
        assert_eq!(allocator.allocate_below(4 * GIB), None);
        assert_eq!(allocator.free_bytes(), GIB);
    }

    #[test]
    fn allocate_below_with_a_full_list_takes_the_bottom_frame() {
        let mut allocator = FrameAllocator::<1>::new();
        allocator.add_usable(0x1000, 0x10_0000).unwrap();
        assert_eq!(allocator.allocate_below(0x8000), Some(addr(0x1000)));
        assert_eq!(ranges(&allocator), [(0x2000, 0x10_0000)]);
    }

    #[test]
    fn free_merges_with_both_neighbours() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0x1000, 0x4000).unwrap();
        let high = allocator.allocate().unwrap();
        let middle = allocator.allocate().unwrap();
        let low = allocator.allocate().unwrap();
        assert_eq!(allocator.free_bytes(), 0);

        allocator.free(low).unwrap();
        allocator.free(high).unwrap();
        assert_eq!(ranges(&allocator), [(0x1000, 0x2000), (0x3000, 0x4000)]);
        allocator.free(middle).unwrap();
        assert_eq!(ranges(&allocator), [(0x1000, 0x4000)]);
        assert_eq!(allocator.free_bytes(), 3 * FRAME_SIZE);
    }

    #[test]
    fn free_range_returns_a_contiguous_block() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0, MIB).unwrap();
        let block = allocator.allocate_contiguous(16, 64 * 1024).unwrap();
        assert_eq!(allocator.free_bytes(), MIB - 16 * FRAME_SIZE);
        allocator.free_range(block, 16).unwrap();
        assert_eq!(ranges(&allocator), [(0, MIB)]);
        allocator.free_range(block, 0).unwrap();
        assert_eq!(ranges(&allocator), [(0, MIB)]);
    }

    #[test]
    fn double_free_is_an_error() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0x1000, 0x5000).unwrap();
        let frame = allocator.allocate().unwrap();
        allocator.free(frame).unwrap();
        assert_eq!(allocator.free(frame), Err(FrameError::DoubleFree));
        // A range that is only partly free is refused whole.
        allocator.allocate_contiguous(2, FRAME_SIZE).unwrap();
        assert_eq!(
            allocator.free_range(addr(0x2000), 3),
            Err(FrameError::DoubleFree)
        );
        assert_eq!(ranges(&allocator), [(0x1000, 0x3000)]);
    }

    #[test]
    fn misaligned_free_is_an_error() {
        let mut allocator = FrameAllocator::<4>::new();
        assert_eq!(allocator.free(addr(0x1234)), Err(FrameError::Misaligned));
        assert_eq!(
            allocator.free_range(addr(0x1800), 2),
            Err(FrameError::Misaligned)
        );
        assert_eq!(allocator.free_bytes(), 0);
    }

    #[test]
    fn free_past_the_address_space_is_overflow() {
        let mut allocator = FrameAllocator::<4>::new();
        let last = addr(PHYS_LIMIT - FRAME_SIZE);
        assert_eq!(allocator.free_range(last, 2), Err(FrameError::Overflow));
        assert_eq!(
            allocator.free_range(addr(0x1000), u64::MAX),
            Err(FrameError::Overflow)
        );
        allocator.free_range(last, 1).unwrap();
        assert_eq!(ranges(&allocator), [(PHYS_LIMIT - FRAME_SIZE, PHYS_LIMIT)]);
    }

    #[test]
    fn free_needing_a_slot_in_a_full_list_is_too_fragmented() {
        let mut allocator = FrameAllocator::<2>::new();
        allocator.add_usable(0x1000, 0x6000).unwrap();
        let top = allocator.allocate().unwrap();
        let next = allocator.allocate().unwrap();
        let third = allocator.allocate().unwrap();
        allocator.free(top).unwrap();
        assert_eq!(ranges(&allocator), [(0x1000, 0x3000), (0x5000, 0x6000)]);
        assert_eq!(allocator.free(addr(0x8000)), Err(FrameError::TooFragmented));
        assert_eq!(ranges(&allocator), [(0x1000, 0x3000), (0x5000, 0x6000)]);
        // Frees that touch a free range need no slot.
        allocator.free(third).unwrap();
        allocator.free(next).unwrap();
        assert_eq!(ranges(&allocator), [(0x1000, 0x6000)]);
    }

    #[test]
    fn exhaustion_returns_none() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0x1000, 0x3000).unwrap();
        assert!(allocator.allocate().is_some());
        assert!(allocator.allocate().is_some());
        assert_eq!(allocator.allocate(), None);
        assert_eq!(allocator.allocate_contiguous(1, FRAME_SIZE), None);
        assert_eq!(allocator.allocate_below(u64::MAX), None);
        assert_eq!(allocator.free_bytes(), 0);
    }

    #[test]
    fn debug_lists_free_ranges() {
        let mut allocator = FrameAllocator::<4>::new();
        allocator.add_usable(0x1000, 0x3000).unwrap();
        assert_eq!(
            std::format!("{allocator:x?}"),
            "FrameAllocator { free_bytes: 2000, capacity: 4, ranges: [1000..3000] }"
        );
    }

    #[test]
    fn errors_have_messages() {
        use std::string::ToString;
        assert_eq!(FrameError::DoubleFree.to_string(), "range is already free");
        assert_eq!(FrameError::TooFragmented.to_string(), "free list is full");
    }

    /// xorshift64: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    #[test]
    fn random_alloc_free_never_hands_out_a_frame_twice() {
        let usable = [
            (0x1000, 0x9_f000),
            (MIB, 3 * MIB),
            (4 * MIB + 0x123, 5 * MIB),
            (6 * MIB, 6 * MIB + 0x8000),
        ];
        let reserved = [(0, MIB), (2 * MIB, 2 * MIB + 0x5000)];
        let in_usable = |frame: u64| {
            usable
                .iter()
                .any(|&(s, e)| frame >= s && frame + FRAME_SIZE <= e)
                && !reserved
                    .iter()
                    .any(|&(s, e)| frame + FRAME_SIZE > s && frame < e)
        };
        let mut allocator = FrameAllocator::<16>::from_regions(&usable, &reserved).unwrap();
        let total = allocator.free_bytes();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut held: Vec<u64> = Vec::new();
        let mut held_set: HashSet<u64> = HashSet::new();
        let mut fragmented = 0;

        for _ in 0..20_000 {
            let mut taken: Vec<u64> = Vec::new();
            match rng.below(8) {
                0..=2 => taken.extend(allocator.allocate().map(|f| f.as_u64())),
                3 => {
                    let frames = 1 + rng.below(8);
                    let align = FRAME_SIZE << rng.below(5);
                    if let Some(block) = allocator.allocate_contiguous(frames, align) {
                        assert_eq!(block.as_u64() % align, 0);
                        taken.extend((0..frames).map(|i| block.as_u64() + i * FRAME_SIZE));
                    }
                }
                4 => {
                    let limit = rng.below(7 * MIB);
                    if let Some(frame) = allocator.allocate_below(limit) {
                        assert!(frame.as_u64() + FRAME_SIZE <= limit);
                        taken.push(frame.as_u64());
                    }
                }
                _ if !held.is_empty() => {
                    let index = rng.below(held.len() as u64) as usize;
                    let frame = held[index];
                    match allocator.free(addr(frame)) {
                        Ok(()) => {
                            held.swap_remove(index);
                            held_set.remove(&frame);
                            assert_eq!(allocator.free(addr(frame)), Err(FrameError::DoubleFree));
                        }
                        // The frame stays allocated; the test keeps it and may try again later.
                        Err(FrameError::TooFragmented) => fragmented += 1,
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
                _ => {}
            }
            for frame in taken {
                assert!(in_usable(frame), "{frame:#x} was never usable");
                assert!(held_set.insert(frame), "{frame:#x} handed out twice");
                held.push(frame);
            }
            assert_eq!(
                allocator.free_bytes() + held.len() as u64 * FRAME_SIZE,
                total
            );
            let list = ranges(&allocator);
            assert!(
                list.windows(2).all(|w| w[0].1 < w[1].0),
                "list not sorted and merged"
            );
        }
        // The run must have reached the fragmented state the small capacity is there to provoke.
        assert!(fragmented > 0);
    }

    #[test]
    fn counts_free_bytes_below_a_limit() {
        let frames =
            FrameAllocator::<8>::from_regions(&[(0x1000, 0x5000), (0x8000, 0xa000)], &[]).unwrap();
        assert_eq!(frames.free_bytes_below(0), 0);
        assert_eq!(frames.free_bytes_below(0x3000), 0x2000);
        assert_eq!(frames.free_bytes_below(0x9000), 0x5000);
        assert_eq!(frames.free_bytes_below(u64::MAX), frames.free_bytes());
    }
}
