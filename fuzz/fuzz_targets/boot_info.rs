//! `BootInfo::from_pvh` over arbitrary guest memory: never panics, and what it accepts is
//! consistent.
//!
//! Input layout (see README.md):
//!
//! ```text
//! 0       base selector: 0 -> 0, 1 -> 0x1000, 2 -> memory ends at the top of the address
//!         space, 3 -> bytes 1..9 (little-endian)
//! 1..9    base, for selector 3
//! 9..11   offset of hvm_start_info from the base (little-endian u16)
//! 11..    guest memory
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbolt_boot::fake::FakeMemory;
use ringbolt_boot::{BootInfo, Cmdline, MemoryMap, RegionKind};

fuzz_target!(|data: &[u8]| {
    let Some((mem, start_info)) = FakeMemory::from_fuzz_input(data) else {
        return;
    };

    let result = BootInfo::from_pvh(&mem, start_info);
    // Nothing is cached between calls: the same memory gives the same answer.
    assert_eq!(result, BootInfo::from_pvh(&mem, start_info));
    match result {
        Ok(boot) => check(&boot, start_info),
        Err(error) => {
            assert!(!error.to_string().is_empty());
        }
    }
});

fn check(boot: &BootInfo<'_>, start_info: u64) {
    assert_eq!(boot.start_info_paddr, start_info);
    check_memory_map(&boot.memory_map);

    for (start, end) in boot.occupied_ranges() {
        assert!(
            start < end,
            "empty or inverted occupied range {start:#x}-{end:#x}"
        );
    }
    assert!(boot.modules().len() <= 16);
    for module in boot.modules() {
        assert!(module.paddr.checked_add(module.size).is_some());
        check_cmdline(module.cmdline);
    }
    check_cmdline(boot.cmdline);
    let _ = format!("{boot:?}");
}

fn check_cmdline(text: &str) {
    assert!(text.len() < 4096, "command line of {} bytes", text.len());
    assert!(!text.contains('\0'));
    let cmdline = Cmdline::new(text);
    for arg in cmdline.args() {
        let _ = cmdline.get(arg.key);
        let _ = cmdline.flag(arg.key);
        let _ = cmdline.parse::<u64>(arg.key);
    }
}

/// Checks `usable_ranges` against a brute-force oracle: usability only changes at region
/// boundaries, so testing each boundary point covers every address.
fn check_memory_map(map: &MemoryMap) {
    let regions = map.regions();
    assert!(regions.len() <= MemoryMap::CAPACITY);
    for region in regions {
        assert!(region.start < region.end);
    }
    let ranges: Vec<(u64, u64)> = map.usable_ranges().collect();
    for pair in ranges.windows(2) {
        assert!(
            pair[0].1 < pair[1].0,
            "ranges unsorted, overlapping or touching: {pair:x?}"
        );
    }
    let total: u64 = ranges.iter().map(|&(start, end)| end - start).sum();
    assert_eq!(map.usable_bytes(), total);

    let is_usable = |point: u64| {
        let covers = |kind_usable: bool| {
            regions.iter().any(|r| {
                (r.kind == RegionKind::Usable) == kind_usable && r.start <= point && point < r.end
            })
        };
        covers(true) && !covers(false)
    };
    let in_ranges = |point: u64| {
        ranges
            .iter()
            .any(|&(start, end)| start <= point && point < end)
    };
    let boundaries = regions.iter().flat_map(|r| [r.start, r.end]);
    for (start, end) in &ranges {
        assert!(start < end);
        assert!(
            boundaries.clone().any(|b| b == *start),
            "range starts off a boundary"
        );
        assert!(
            boundaries.clone().any(|b| b == *end),
            "range ends off a boundary"
        );
    }
    for point in boundaries {
        assert_eq!(
            is_usable(point),
            in_ranges(point),
            "usability of {point:#x} differs"
        );
    }
}
