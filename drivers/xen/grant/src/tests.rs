extern crate std;

use std::vec::Vec;

use ringbolt_shmem::fake::{Event, FakeSharedMemory};
use ringbolt_xen_abi::grant_table::{GNTTAB_RESERVED_XENSTORE, GREFS_PER_GRANT_FRAME_V1, GTF_PWT};

use super::*;
use crate::sim::{MapError, map, unmap};

const BACKEND: DomId = 0;

fn entry(mem: &FakeSharedMemory, gref: GrantRef) -> (u16, u16, u32) {
    let bytes = mem.peer_read(entry_offset(gref), 8);
    (
        u16::from_le_bytes([bytes[0], bytes[1]]),
        u16::from_le_bytes([bytes[2], bytes[3]]),
        u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    )
}

#[test]
fn grants_from_the_first_unreserved_reference() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    assert_eq!(table.capacity(), GREFS_PER_GRANT_FRAME_V1);
    assert_eq!(table.free_count(), 512 - 8);
    assert_eq!(table.grant_access(BACKEND, 0x1234, false), Ok(8));
    assert_eq!(table.grant_access(7, 0xABCD, true), Ok(9));
    assert_eq!(entry(&mem, 8), (GTF_PERMIT_ACCESS, BACKEND, 0x1234));
    assert_eq!(
        entry(&mem, 9),
        (GTF_PERMIT_ACCESS | GTF_READONLY, 7, 0xABCD)
    );
    assert!(table.is_granted(8) && table.is_granted(9) && !table.is_granted(10));
    assert_eq!(table.free_count(), 512 - 10);
}

#[test]
fn stores_domid_and_frame_before_the_flags() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    table.grant_access(3, 77, false).unwrap();
    assert_eq!(
        mem.events(),
        [
            Event::Store {
                offset: 64 + grant_entry_v1::DOMID,
                width: 2
            },
            Event::Store {
                offset: 64 + grant_entry_v1::FRAME,
                width: 4
            },
            Event::WriteBarrier,
            Event::Store {
                offset: 64 + grant_entry_v1::FLAGS,
                width: 2
            },
        ]
    );
}

#[test]
fn never_touches_the_reserved_entries() {
    let mem = FakeSharedMemory::page();
    // The toolstack granted the xenstore ring.
    mem.peer_write(
        entry_offset(GNTTAB_RESERVED_XENSTORE),
        &[1, 0, 0, 0, 0x11, 0, 0, 0],
    );
    let mut table = GrantTable::new(&mem).unwrap();
    let refs: Vec<_> = core::iter::from_fn(|| table.grant_access(BACKEND, 1, true).ok()).collect();
    assert_eq!(refs.len(), 504);
    assert!(refs.iter().all(|&r| r >= GNTTAB_NR_RESERVED_ENTRIES));
    assert_eq!(mem.peer_read(0, 64)[8..12], [1, 0, 0, 0]);
    for reserved in 0..GNTTAB_NR_RESERVED_ENTRIES {
        assert_eq!(
            table.end_access(reserved),
            Err(GrantError::NotGranted(reserved))
        );
    }
}

#[test]
fn exhaustion_is_an_error() {
    let mem = FakeSharedMemory::new(10 * grant_entry_v1::SIZE);
    let mut table = GrantTable::new(&mem).unwrap();
    assert_eq!(table.grant_access(BACKEND, 1, false), Ok(8));
    assert_eq!(table.grant_access(BACKEND, 2, false), Ok(9));
    assert_eq!(
        table.grant_access(BACKEND, 3, false),
        Err(GrantError::Exhausted)
    );
    assert_eq!(table.free_count(), 0);
    table.end_access(8).unwrap();
    assert_eq!(table.grant_access(BACKEND, 3, false), Ok(8));
}

#[test]
fn rejects_frames_a_v1_entry_cannot_hold() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    assert_eq!(
        table.grant_access(BACKEND, 1 << 32, false),
        Err(GrantError::FrameTooLarge(1 << 32))
    );
    // Nothing allocated, nothing written.
    assert_eq!(table.free_count(), 504);
    assert_eq!(mem.events(), []);
    assert_eq!(
        table.grant_access(BACKEND, u64::from(u32::MAX), false),
        Ok(8)
    );
}

#[test]
fn rejects_a_region_without_usable_entries() {
    assert_eq!(
        GrantTable::new(FakeSharedMemory::new(64)).unwrap_err(),
        GrantError::TooSmall { len: 64 }
    );
    let two_frames = GrantTable::new(FakeSharedMemory::new(8192)).unwrap();
    assert_eq!(
        (two_frames.capacity(), two_frames.free_count()),
        (1024, 1016)
    );
}

#[test]
fn end_access_clears_the_flags_and_reuses_the_most_recent_reference_first() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    let a = table.grant_access(5, 100, false).unwrap();
    let b = table.grant_access(5, 101, false).unwrap();
    mem.take_events();
    table.end_access(a).unwrap();
    assert_eq!(entry(&mem, a), (0, 5, 100));
    assert_eq!(
        mem.events(),
        [
            Event::Load {
                offset: entry_offset(a),
                width: 4
            },
            Event::Update {
                offset: entry_offset(a),
                width: 4
            },
        ]
    );
    assert!(!table.is_granted(a));
    assert_eq!(table.end_access(a), Err(GrantError::NotGranted(a)));
    table.end_access(b).unwrap();
    assert_eq!(table.grant_access(5, 102, false), Ok(b));
    assert_eq!(table.grant_access(5, 103, false), Ok(a));
}

#[test]
fn a_mapped_grant_is_not_ended_nor_freed() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    let gref = table.grant_access(BACKEND, 0x42, false).unwrap();
    assert_eq!(map(&mem, gref, BACKEND, true), Ok(0x42));
    let busy = GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING;
    assert_eq!(
        table.end_access(gref),
        Err(GrantError::StillInUse { gref, flags: busy })
    );
    // The entry still grants, the reference is not handed out again.
    assert_eq!(entry(&mem, gref), (busy, BACKEND, 0x42));
    assert!(table.is_granted(gref));
    let others: Vec<_> =
        core::iter::from_fn(|| table.grant_access(BACKEND, 1, false).ok()).collect();
    assert!(!others.contains(&gref));
    // Once unmapped, access ends.
    unmap(&mem, gref).unwrap();
    assert_eq!(table.end_access(gref), Ok(()));
    assert_eq!(table.grant_access(BACKEND, 2, false), Ok(gref));
}

#[test]
fn a_read_only_mapping_also_holds_the_grant() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    let gref = table.grant_access(BACKEND, 9, true).unwrap();
    assert_eq!(map(&mem, gref, BACKEND, true), Err(MapError::ReadOnly));
    assert_eq!(map(&mem, gref, BACKEND, false), Ok(9));
    assert!(matches!(
        table.end_access(gref),
        Err(GrantError::StillInUse { flags, .. }) if flags & GTF_READING != 0
    ));
    unmap(&mem, gref).unwrap();
    assert_eq!(table.end_access(gref), Ok(()));
}

#[test]
fn a_mapping_that_lands_during_end_access_wins() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    let gref = table.grant_access(BACKEND, 0x42, false).unwrap();
    let offset = entry_offset(gref);
    // Xen maps the entry for writing between our read of the flags and our exchange.
    let mut loads = 0;
    mem.set_read_hook(move |load, bytes| {
        if load.offset == offset {
            loads += 1;
            if loads == 2 {
                bytes[offset] |= (GTF_READING | GTF_WRITING) as u8;
            }
        }
    });
    assert_eq!(
        table.end_access(gref),
        Err(GrantError::StillInUse {
            gref,
            flags: GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
        })
    );
    mem.clear_read_hook();
    // The mapping stands and the reference is still ours.
    assert_eq!(
        entry(&mem, gref).0,
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    assert!(table.is_granted(gref));
    assert_eq!(mem.events().len(), 4 + 2);
}

#[test]
fn end_access_retries_when_xen_changes_the_word_without_mapping() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    let gref = table.grant_access(BACKEND, 0x42, false).unwrap();
    let offset = entry_offset(gref);
    // A map and unmap complete between our read and our first exchange: the word differs
    // (a cache-attribute bit changed), but nothing maps the page any more.
    let mut loads = 0;
    mem.set_read_hook(move |load, bytes| {
        if load.offset == offset {
            loads += 1;
            if loads == 2 {
                bytes[offset] |= GTF_PWT as u8;
            }
        }
    });
    assert_eq!(table.end_access(gref), Ok(()));
    mem.clear_read_hook();
    assert_eq!(entry(&mem, gref).0, 0);
    assert!(!table.is_granted(gref));
}

#[test]
fn a_word_that_never_settles_is_reported_busy() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    let gref = table.grant_access(BACKEND, 0x42, false).unwrap();
    let offset = entry_offset(gref);
    // Every exchange finds the domid half changed.
    mem.set_read_hook(move |load, bytes| {
        if load.offset == offset {
            bytes[offset + 2] = bytes[offset + 2].wrapping_add(1);
        }
    });
    assert!(matches!(
        table.end_access(gref),
        Err(GrantError::StillInUse { gref: g, .. }) if g == gref
    ));
    mem.clear_read_hook();
    assert!(table.is_granted(gref));
    assert_eq!(entry(&mem, gref).0, GTF_PERMIT_ACCESS);
}

#[test]
fn rejects_references_it_did_not_grant() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    assert_eq!(table.end_access(8), Err(GrantError::NotGranted(8)));
    assert_eq!(table.end_access(512), Err(GrantError::NotGranted(512)));
    assert_eq!(
        table.end_access(GrantRef::MAX),
        Err(GrantError::NotGranted(GrantRef::MAX))
    );
    assert_eq!(mem.events(), []);
}

#[test]
fn xen_refuses_mappings_the_entry_does_not_permit() {
    let mem = FakeSharedMemory::page();
    let mut table = GrantTable::new(&mem).unwrap();
    let gref = table.grant_access(3, 0x42, false).unwrap();
    assert_eq!(
        map(&mem, gref, 4, false),
        Err(MapError::NotPermitted {
            flags: GTF_PERMIT_ACCESS,
            domid: 3
        })
    );
    assert!(matches!(
        map(&mem, gref + 1, 3, false),
        Err(MapError::NotPermitted { flags: 0, .. })
    ));
    assert!(matches!(
        map(&mem, 4096, 3, false),
        Err(MapError::BadRef(_))
    ));
    assert_eq!(map(&mem, gref, 3, false), Ok(0x42));
    assert_eq!(map(&mem, gref, 3, false), Err(MapError::Busy));
    // Ended access: no mapping.
    unmap(&mem, gref).unwrap();
    table.end_access(gref).unwrap();
    assert!(matches!(
        map(&mem, gref, 3, false),
        Err(MapError::NotPermitted { flags: 0, .. })
    ));
}

#[test]
fn sim_hold_marks_only_permitted_entries_and_release_all_clears_them() {
    use ringbolt_xen_abi::grant_table::{GTF_READING, GTF_WRITING};
    let mem = ringbolt_shmem::fake::FakeSharedMemory::page();
    let flags_at = |entry: usize| entry * grant_entry_v1::SIZE + grant_entry_v1::FLAGS;
    mem.peer_write(flags_at(9), &(GTF_PERMIT_ACCESS).to_le_bytes());
    crate::sim::hold(&mem, 9).unwrap();
    crate::sim::hold(&mem, 10).unwrap();
    let flags =
        |entry: usize| u16::from_le_bytes(mem.peer_read(flags_at(entry), 2).try_into().unwrap());
    assert_eq!(flags(9), GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
    assert_eq!(flags(10), 0);
    crate::sim::release_all(&mem).unwrap();
    assert_eq!(flags(9), GTF_PERMIT_ACCESS);
    assert!(crate::sim::hold(&mem, 4096).is_err());
}
