//! `BootInfo::from_xen_pv` over arbitrary guest memory: never panics, and what it accepts is
//! consistent and survives a round trip through `XenPvInfo::emit`.
//!
//! Input layout (see README.md), the same as `boot_info`'s:
//!
//! ```text
//! 0       base selector: 0 -> 0, 1 -> 0x1000, 2 -> memory ends at the top of the address
//!         space, 3 -> bytes 1..9 (little-endian)
//! 1..9    base, for selector 3
//! 9..11   offset of start_info from the base (little-endian u16)
//! 11..    guest memory
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbolt_boot::fake::FakeMemory;
use ringbolt_boot::xen_start_info::{
    PAGE_SIZE, SIF_INITDOMAIN, START_INFO_LEN, XenConsole, XenPvInfo,
};
use ringbolt_boot::{BootInfo, BootProtocol, Cmdline, Region, RegionKind};

fuzz_target!(|data: &[u8]| {
    let Some((mem, start_info)) = FakeMemory::from_fuzz_input(data) else {
        return;
    };

    let result = BootInfo::from_xen_pv(&mem, start_info);
    // Nothing is cached between calls: the same memory gives the same answer.
    assert_eq!(result, BootInfo::from_xen_pv(&mem, start_info));
    match result {
        Ok(boot) => check(&boot, start_info),
        Err(error) => {
            assert!(!error.to_string().is_empty());
        }
    }
});

fn check(boot: &BootInfo<'_>, start_info: u64) {
    let BootProtocol::XenPv(info) = boot.protocol else {
        panic!("from_xen_pv returned {:?}", boot.protocol);
    };
    assert_eq!(boot.start_info_paddr, start_info);
    assert_eq!(boot.flags, info.flags);
    assert_eq!(boot.rsdp, None);
    check_info(&info, start_info);

    // One usable region covering the domain's pseudo-physical pages.
    let bytes = info.nr_pages.checked_mul(PAGE_SIZE).unwrap();
    assert_eq!(
        boot.memory_map.regions(),
        [Region {
            start: 0,
            end: bytes,
            kind: RegionKind::Usable
        }]
    );
    assert_eq!(boot.memory_map.usable_bytes(), bytes);

    let occupied: Vec<(u64, u64)> = boot.occupied_ranges().collect();
    for &(start, end) in &occupied {
        assert!(
            start < end,
            "empty or inverted occupied range {start:#x}-{end:#x}"
        );
    }
    // The bootstrap span (through the page tables and boot stack) is last and starts at
    // start_info; the P2M list is always there.
    assert_eq!(
        occupied.last(),
        Some(&(start_info, info.bootstrap_in_use_end()))
    );
    assert!(occupied.contains(&info.mfn_list_range()));

    match info.module {
        Some(module) => {
            let [found] = boot.modules() else {
                panic!("one module expected, got {:?}", boot.modules());
            };
            assert_eq!(
                (found.paddr, found.size, found.cmdline),
                (module.addr(), module.len, "")
            );
            let end = found.paddr.checked_add(found.size).unwrap();
            assert_eq!(module.len != 0, occupied.contains(&(found.paddr, end)));
            assert_eq!(occupied.len(), if module.len != 0 { 3 } else { 2 });
        }
        None => {
            assert!(boot.modules().is_empty());
            assert_eq!(occupied.len(), 2);
        }
    }

    assert!(
        boot.cmdline.len() < 1024,
        "command line of {} bytes",
        boot.cmdline.len()
    );
    assert!(!boot.cmdline.contains('\0'));
    let cmdline = Cmdline::new(boot.cmdline);
    for arg in cmdline.args() {
        let _ = cmdline.get(arg.key);
        let _ = cmdline.flag(arg.key);
    }
    let _ = format!("{boot:?}");

    // What was accepted, written back canonically, parses to the same boot information.
    let mut copy = FakeMemory::new(start_info, vec![0; START_INFO_LEN]);
    copy.write_xen_start_info(start_info, &info, boot.cmdline);
    assert_eq!(BootInfo::from_xen_pv(&copy, start_info).as_ref(), Ok(boot));
}

/// The promises of `XenPvInfo`'s documentation.
fn check_info(info: &XenPvInfo, start_info: u64) {
    assert!(info.nr_pages > 0);
    assert!(info.pt_base >= start_info);
    assert!(info.store.is_none_or(|ring| ring.mfn != 0));
    assert!(info.mfn_list.checked_add(info.nr_pages * 8).is_some());
    let pt_end = info
        .pt_base
        .checked_add(info.nr_pt_frames.checked_mul(PAGE_SIZE).unwrap());
    assert!(pt_end.and_then(|end| end.checked_add(512 << 10)).is_some());
    match info.console {
        XenConsole::DomU(ring) => {
            assert_eq!(info.flags & SIF_INITDOMAIN, 0);
            assert!(ring.is_none_or(|ring| ring.mfn != 0));
        }
        XenConsole::Dom0 {
            info_off,
            info_size,
        } => {
            assert_ne!(info.flags & SIF_INITDOMAIN, 0);
            if info_size != 0 {
                assert!(info_off as usize >= START_INFO_LEN);
                assert!(u64::from(info_off) + u64::from(info_size) <= PAGE_SIZE);
            }
        }
    }
}
