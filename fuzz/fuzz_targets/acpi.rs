//! `power_control` and `find_rsdp` over arbitrary guest memory: never panic, and what they
//! accept is consistent.
//!
//! Input layout (see README.md):
//!
//! ```text
//! 0       base selector: even -> 0xe0000 (the BIOS area `find_rsdp` scans), odd -> memory
//!         ends at the top of the address space
//! 1..3    offset of the RSDP from the base (little-endian u16)
//! 3..     guest memory
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbolt_acpi::{AcpiError, PowerControl, Table, find_rsdp, power_control};
use ringbolt_boot::fake::FakeMemory;

const PREFIX: usize = 3;

fuzz_target!(|data: &[u8]| {
    let Some((prefix, memory)) = data.split_first_chunk::<PREFIX>() else {
        return;
    };
    let base = if prefix[0] % 2 == 0 {
        0xe_0000
    } else {
        0u64.wrapping_sub(memory.len() as u64)
    };
    let mem = FakeMemory::new(base, memory);
    let rsdp = base.wrapping_add(u64::from(u16::from_le_bytes([prefix[1], prefix[2]])));

    let result = power_control(&mem, rsdp);
    // Nothing is cached between calls: the same memory gives the same answer.
    assert_eq!(result, power_control(&mem, rsdp));
    match result {
        Ok(control) => check(&control),
        Err(error) => assert!(!error.to_string().is_empty()),
    }

    if let Some(found) = find_rsdp(&mem) {
        assert_eq!(found % 16, 0);
        assert!(
            (0xe_0000..0x10_0000).contains(&found) || (0x401..0xa_0400).contains(&found),
            "RSDP found outside the areas searched: {found:#x}"
        );
        // What find_rsdp accepts, power_control accepts as an RSDP.
        let rsdp_rejected = matches!(
            power_control(&mem, found),
            Err(AcpiError::OutsideMemory {
                table: Table::Rsdp,
                ..
            } | AcpiError::Malformed {
                table: Table::Rsdp,
                ..
            })
        );
        assert!(!rsdp_rejected, "find_rsdp returned an invalid RSDP");
    }
});

fn check(control: &PowerControl) {
    // Fixed hardware and hardware-reduced exclude each other.
    assert!(control.pm1.is_none() || control.sleep_control.is_none());
    if let Some(pm1) = control.pm1 {
        assert!(pm1.slp_typ_a <= 7 && pm1.slp_typ_b <= 7);
        for current in [0, 0xffff] {
            let a = pm1.pm1a_value(current);
            assert_eq!(a & 0x2000, 0x2000, "SLP_EN not set");
            assert_eq!((a >> 10) & 7, u16::from(pm1.slp_typ_a));
            assert_eq!(a & 0b110, 0, "BM_RLD or GBL_RLS written");
            assert_eq!(
                (pm1.pm1b_value(current) >> 10) & 7,
                u16::from(pm1.slp_typ_b)
            );
        }
    }
    if let Some(sleep) = control.sleep_control {
        assert!(sleep.slp_typ <= 7);
        assert_ne!(sleep.register.address, 0);
        assert_eq!(sleep.value(), (sleep.slp_typ << 2) | 0x20);
    }
    if let Some((register, _)) = control.reset {
        assert_ne!(register.address, 0);
    }
    assert_ne!(control.rtc_century, Some(0));
    let _ = format!("{control:?}");
}
