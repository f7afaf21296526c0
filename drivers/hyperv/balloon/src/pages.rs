//! Page ranges, the kernel's page source, and the set of pages the host holds.
//!
//! The protocol names guest memory in runs of 4 KiB page frames (`dm_mem_page_range`: a 40-bit
//! first frame number and a 24-bit count packed in a `u64`). [`Pages`] is how the kernel hands
//! frames to the balloon and takes them back; [`PageSet`] is the driver's record of which frames
//! the host holds, against which every unballoon request is checked.

use alloc::collections::BTreeMap;
use core::fmt;
use core::ops::Range;

/// A run of 4 KiB guest page frames, `dm_mem_page_range`: bits 0-39 the first frame number,
/// bits 40-63 the count.
///
/// Every value of the wire's `u64` is a `PageRange`, so a count may be zero (the driver refuses
/// empty ranges where they matter).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageRange {
    start: u64,
    count: u64,
}

impl PageRange {
    /// Frame numbers are 40 bits (the AMD64 architectural limit the format was sized for).
    pub const PFN_LIMIT: u64 = 1 << 40;
    /// The largest count a range can carry (24 bits).
    pub const MAX_COUNT: u64 = (1 << 24) - 1;

    /// A range of `count` frames from `start`, if the wire can carry it.
    pub const fn new(start: u64, count: u64) -> Option<PageRange> {
        if start >= Self::PFN_LIMIT || count > Self::MAX_COUNT {
            return None;
        }
        Some(PageRange { start, count })
    }

    pub const fn from_wire(value: u64) -> PageRange {
        PageRange {
            start: value & (Self::PFN_LIMIT - 1),
            count: value >> 40,
        }
    }

    pub const fn to_wire(self) -> u64 {
        self.start | self.count << 40
    }

    /// The first frame number.
    pub const fn start(self) -> u64 {
        self.start
    }

    pub const fn count(self) -> u64 {
        self.count
    }

    pub const fn is_empty(self) -> bool {
        self.count == 0
    }

    /// The frame numbers, `start..start + count`.
    pub const fn pfns(self) -> Range<u64> {
        self.start..self.start + self.count
    }
}

impl fmt::Display for PageRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} pages at frame {:#x}", self.count, self.start)
    }
}

impl fmt::Debug for PageRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageRange({:#x}+{})", self.start, self.count)
    }
}

/// The kernel's page allocator, as the balloon sees it. Frames are 4 KiB, Hyper-V's page size
/// (the guest's own page size).
///
/// The kernel owns the policy: how much memory it keeps whatever the host asks (a floor, like
/// Linux's `compute_balloon_floor`), and which frames it parts with. The driver owns the
/// bookkeeping: it asks for at most as many frames as the host wants, records every range it
/// is given as held by the host, and gives back only frames the host holds.
pub trait Pages {
    /// Takes up to `max` (at least 1, at most [`PageRange::MAX_COUNT`]) free frames out of the
    /// allocator for the host, as one run, or `None` when no more can be spared. The frames
    /// must not be touched until [`give_back`](Self::give_back) returns them: the host may
    /// already have unmapped them.
    ///
    /// A run that is empty, larger than `max`, or that overlaps frames already taken is a bug
    /// in the kernel: the driver logs it and stops ballooning for the request (it does not
    /// give such a run back, as it cannot know what it holds).
    fn take(&mut self, max: u64) -> Option<PageRange>;

    /// Returns frames the host gave back: always a run of frames that `take` handed out, but
    /// not necessarily as it handed them out (the host may split and join runs).
    fn give_back(&mut self, range: PageRange);
}

impl<P: Pages + ?Sized> Pages for &mut P {
    fn take(&mut self, max: u64) -> Option<PageRange> {
        (**self).take(max)
    }

    fn give_back(&mut self, range: PageRange) {
        (**self).give_back(range);
    }
}

/// A set of frame numbers, kept as disjoint, non-adjacent runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageSet {
    /// Run start -> run end (exclusive).
    runs: BTreeMap<u64, u64>,
    pages: u64,
}

impl PageSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames in the set.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// The runs, lowest first (a run may be longer than one [`PageRange`] can carry).
    pub fn runs(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.runs.iter().map(|(&start, &end)| start..end)
    }

    /// The run holding frame `pfn`.
    fn run_of(&self, pfn: u64) -> Option<Range<u64>> {
        let (&start, &end) = self.runs.range(..=pfn).next_back()?;
        (pfn < end).then_some(start..end)
    }

    /// Whether every frame of `pfns` is in the set (an empty range is in no set).
    pub fn contains(&self, pfns: Range<u64>) -> bool {
        !pfns.is_empty()
            && self
                .run_of(pfns.start)
                .is_some_and(|run| pfns.end <= run.end)
    }

    /// Whether any frame of `pfns` is in the set.
    pub fn overlaps(&self, pfns: Range<u64>) -> bool {
        !pfns.is_empty()
            && self
                .runs
                .range(..pfns.end)
                .next_back()
                .is_some_and(|(_, &end)| end > pfns.start)
    }

    /// Adds `pfns`, which must be non-empty and disjoint from the set; returns whether it was
    /// added (nothing changes otherwise).
    pub fn insert(&mut self, pfns: Range<u64>) -> bool {
        if pfns.is_empty() || self.overlaps(pfns.clone()) {
            return false;
        }
        let (mut start, mut end) = (pfns.start, pfns.end);
        // Join the run that ends where this starts, and the one that starts where this ends.
        if let Some(before) = start.checked_sub(1).and_then(|pfn| self.run_of(pfn)) {
            self.runs.remove(&before.start);
            start = before.start;
        }
        if let Some(after_end) = self.runs.remove(&end) {
            end = after_end;
        }
        self.runs.insert(start, end);
        self.pages += pfns.end - pfns.start;
        true
    }

    /// Removes `pfns`, which must be non-empty and wholly in the set; returns whether it was
    /// removed (nothing changes otherwise).
    pub fn remove(&mut self, pfns: Range<u64>) -> bool {
        if !self.contains(pfns.clone()) {
            return false;
        }
        let Some(run) = self.run_of(pfns.start) else {
            return false;
        };
        self.runs.remove(&run.start);
        if run.start < pfns.start {
            self.runs.insert(run.start, pfns.start);
        }
        if pfns.end < run.end {
            self.runs.insert(pfns.end, run.end);
        }
        self.pages -= pfns.end - pfns.start;
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    fn runs(set: &PageSet) -> Vec<(u64, u64)> {
        set.runs().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn packs_start_and_count_as_the_wire_does() {
        let r = PageRange::new(0x12_3456_789a, 0x00bc_def0).unwrap();
        assert_eq!(r.to_wire(), 0xbcde_f012_3456_789a);
        assert_eq!(PageRange::from_wire(0xbcde_f012_3456_789a), r);
        assert_eq!(PageRange::from_wire(u64::MAX).count(), PageRange::MAX_COUNT);
        assert_eq!(
            PageRange::from_wire(u64::MAX).start(),
            PageRange::PFN_LIMIT - 1
        );
        assert_eq!(PageRange::new(PageRange::PFN_LIMIT, 1), None);
        assert_eq!(PageRange::new(0, PageRange::MAX_COUNT + 1), None);
        assert!(PageRange::new(5, 0).unwrap().is_empty());
        assert_eq!(PageRange::new(5, 3).unwrap().pfns(), 5..8);
    }

    #[test]
    fn inserts_merge_adjacent_runs_and_refuse_overlaps() {
        let mut set = PageSet::new();
        assert!(set.insert(10..20));
        assert!(set.insert(30..40));
        assert!(set.insert(20..30));
        assert_eq!(runs(&set), [(10, 40)]);
        assert!(set.insert(5..10));
        assert!(set.insert(41..42));
        assert_eq!(runs(&set), [(5, 40), (41, 42)]);
        assert_eq!(set.pages(), 36);
        for bad in [39..41, 0..6, 41..42, 7..8, 8..8] {
            assert!(!set.insert(bad.clone()), "{bad:?}");
        }
        assert_eq!(set.pages(), 36);
    }

    #[test]
    fn removes_only_what_is_wholly_held_and_splits_runs() {
        let mut set = PageSet::new();
        set.insert(10..40);
        set.insert(50..60);
        assert!(!set.remove(35..45));
        assert!(!set.remove(45..50));
        assert!(!set.remove(12..12));
        assert!(!set.remove(0..11));
        assert!(set.remove(20..25));
        assert_eq!(runs(&set), [(10, 20), (25, 40), (50, 60)]);
        assert!(!set.remove(19..26));
        assert!(set.remove(10..20));
        assert!(set.remove(50..60));
        assert_eq!(runs(&set), [(25, 40)]);
        assert_eq!(set.pages(), 15);
        assert!(set.remove(25..40));
        assert!(set.is_empty());
    }

    #[test]
    fn answers_membership_at_the_run_edges() {
        let mut set = PageSet::new();
        set.insert(10..20);
        assert!(set.contains(10..20));
        assert!(set.contains(19..20));
        assert!(!set.contains(9..11));
        assert!(!set.contains(20..21));
        assert!(set.overlaps(0..11));
        assert!(set.overlaps(19..100));
        assert!(!set.overlaps(0..10));
        assert!(!set.overlaps(20..30));
        assert!(!set.overlaps(15..15));
    }
}
