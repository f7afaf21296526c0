//! Xen's 2-level event channels, guest side: consuming what Xen marked pending in `shared_info`.
//!
//! Xen raises an event on port `p` by setting bit `p` of `shared_info.evtchn_pending`, then,
//! unless the port is masked, bit `p / 64` of the vCPU's `evtchn_pending_sel` and finally its
//! `evtchn_upcall_pending` byte (`xen/common/event_2l.c`). It sets a selector or pending bit
//! only if it was clear, so a guest that leaves a bit set never hears of that port again:
//! every bit must be consumed, atomically, because Xen may set the next one at any moment from
//! another physical CPU. [`take_pending`] is Linux's `xen_evtchn_handle_events` scan for one
//! vCPU, without the fairness bookkeeping a single-vCPU guest does not need.
//!
//! Everything here is read from a page Xen writes: offsets are fixed by the ABI and every
//! access goes through [`SharedMemory`], so a page that is too small is an error, never a
//! panic.
#![no_std]
#![forbid(unsafe_code)]

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use ringbolt_xen_abi::arch_x86::XEN_LEGACY_MAX_VCPUS;
use ringbolt_xen_abi::event_channel::EVTCHN_2L_NR_CHANNELS;
use ringbolt_xen_abi::xen::{shared_info, vcpu_info};

/// Bits in one pending, mask or selector word.
const WORD_BITS: usize = 64;

/// Offset of vCPU `vcpu`'s `vcpu_info` in `shared_info`, or `None` past the legacy slots.
pub fn vcpu_info_offset(vcpu: usize) -> Option<usize> {
    (vcpu < XEN_LEGACY_MAX_VCPUS).then(|| shared_info::VCPU_INFO + vcpu * vcpu_info::SIZE)
}

/// Holds off (`true`) or allows (`false`) event upcalls to vCPU `vcpu` (its
/// `evtchn_upcall_mask`). Allowing them does not deliver what is already pending: that takes a
/// hypercall (`SCHEDOP_block`, or any hypercall's return path), as in Linux's
/// `xen_irq_enable`.
pub fn set_upcall_mask(
    shared: &impl SharedMemory,
    vcpu_info: usize,
    masked: bool,
) -> Result<(), OutOfBounds> {
    shared.write_u8(
        vcpu_info.saturating_add(vcpu_info::EVTCHN_UPCALL_MASK),
        u8::from(masked),
    )?;
    shared.full_barrier();
    Ok(())
}

/// Consumes every pending, unmasked event of the vCPU whose `vcpu_info` is at `vcpu_info` and
/// calls `on_event(port)` for each, lowest port of each word first.
///
/// Order matters and follows Linux: `evtchn_upcall_pending` is cleared first, so an event that
/// arrives during the scan sets it again and the next wait does not sleep through it; the
/// selector and each pending word are then taken with one atomic AND, which cannot lose a bit
/// Xen sets concurrently. Masked ports stay pending (unmasking redelivers them).
pub fn take_pending(
    shared: &impl SharedMemory,
    vcpu_info: usize,
    mut on_event: impl FnMut(u32),
) -> Result<(), OutOfBounds> {
    shared.write_u8(
        vcpu_info.saturating_add(vcpu_info::EVTCHN_UPCALL_PENDING),
        0,
    )?;
    let selector =
        shared.fetch_and_u64(vcpu_info.saturating_add(vcpu_info::EVTCHN_PENDING_SEL), 0)?;
    for word in set_bits(selector) {
        let offset = word * 8;
        let mask = shared.read_u64(shared_info::EVTCHN_MASK + offset)?;
        let pending = shared.read_u64(shared_info::EVTCHN_PENDING + offset)?;
        let ready = pending & !mask;
        if ready == 0 {
            continue;
        }
        let taken = shared.fetch_and_u64(shared_info::EVTCHN_PENDING + offset, !ready)? & ready;
        for bit in set_bits(taken) {
            let port = word * WORD_BITS + bit;
            debug_assert!(port < EVTCHN_2L_NR_CHANNELS);
            on_event(port as u32);
        }
    }
    Ok(())
}

/// Indices of the set bits of `word`, lowest first.
fn set_bits(mut word: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if word == 0 {
            return None;
        }
        let bit = word.trailing_zeros() as usize;
        word &= word - 1;
        Some(bit)
    })
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    extern crate std;

    use alloc::vec::Vec;
    use ringbolt_shmem::fake::{Event, FakeSharedMemory};

    use super::*;

    const VCPU0: usize = 0;

    /// What Xen's `evtchn_2l_set_pending` does for `port` on vCPU 0.
    fn raise(mem: &FakeSharedMemory, port: usize) {
        let (word, bit) = (port / 64, port % 64);
        let pending = shared_info::EVTCHN_PENDING + word * 8;
        mem.peer_write_u64(pending, mem.peer_read_u64(pending) | 1 << bit);
        let mask = mem.peer_read_u64(shared_info::EVTCHN_MASK + word * 8);
        if mask & 1 << bit == 0 {
            let sel = VCPU0 + vcpu_info::EVTCHN_PENDING_SEL;
            mem.peer_write_u64(sel, mem.peer_read_u64(sel) | 1 << word);
            mem.peer_write_u8(VCPU0 + vcpu_info::EVTCHN_UPCALL_PENDING, 1);
        }
    }

    fn taken(mem: &FakeSharedMemory) -> Vec<u32> {
        let mut ports = Vec::new();
        take_pending(mem, VCPU0, |port| ports.push(port)).unwrap();
        ports
    }

    #[test]
    fn places_vcpu_info_records_in_shared_info() {
        assert_eq!(vcpu_info_offset(0), Some(0));
        assert_eq!(vcpu_info_offset(3), Some(192));
        assert_eq!(vcpu_info_offset(XEN_LEGACY_MAX_VCPUS), None);
    }

    #[test]
    fn reports_each_pending_port_once_and_clears_everything() {
        let mem = FakeSharedMemory::page();
        for port in [3, 1, 64, 4095] {
            raise(&mem, port);
        }
        assert_eq!(taken(&mem), [1, 3, 64, 4095]);
        assert_eq!(
            mem.peer_read(VCPU0 + vcpu_info::EVTCHN_UPCALL_PENDING, 1),
            [0]
        );
        assert_eq!(mem.peer_read_u64(VCPU0 + vcpu_info::EVTCHN_PENDING_SEL), 0);
        for word in 0..64 {
            assert_eq!(mem.peer_read_u64(shared_info::EVTCHN_PENDING + word * 8), 0);
        }
        assert_eq!(taken(&mem), []);
    }

    #[test]
    fn clears_upcall_pending_before_taking_the_selector() {
        let mem = FakeSharedMemory::page();
        raise(&mem, 7);
        taken(&mem);
        let events = mem.events();
        let cleared = events.iter().position(|e| {
            *e == Event::Store {
                offset: VCPU0 + vcpu_info::EVTCHN_UPCALL_PENDING,
                width: 1,
            }
        });
        let selector = events.iter().position(|e| {
            *e == Event::Update {
                offset: VCPU0 + vcpu_info::EVTCHN_PENDING_SEL,
                width: 8,
            }
        });
        assert!(cleared.unwrap() < selector.unwrap(), "{events:?}");
    }

    #[test]
    fn masked_ports_stay_pending() {
        let mem = FakeSharedMemory::page();
        mem.peer_write_u64(shared_info::EVTCHN_MASK, 1 << 5);
        raise(&mem, 2);
        // Pending but masked, in a word the selector names because of port 2.
        let pending = mem.peer_read_u64(shared_info::EVTCHN_PENDING);
        mem.peer_write_u64(shared_info::EVTCHN_PENDING, pending | 1 << 5);
        assert_eq!(taken(&mem), [2]);
        assert_eq!(mem.peer_read_u64(shared_info::EVTCHN_PENDING), 1 << 5);
    }

    #[test]
    fn keeps_a_bit_xen_sets_during_the_scan() {
        let mem = FakeSharedMemory::page();
        raise(&mem, 1);
        let pending_word = shared_info::EVTCHN_PENDING;
        // Xen sets port 9 between our read of the word and the atomic clear.
        let mut accesses = 0;
        mem.set_read_hook(move |load, bytes| {
            if load.offset == pending_word && load.width == 8 {
                accesses += 1;
                if accesses == 2 {
                    bytes[pending_word + 1] |= 1 << 1;
                }
            }
        });
        let ports = taken(&mem);
        mem.clear_read_hook();
        // Port 9 was not in the word we read, so it is not reported, and its bit survives.
        assert_eq!(ports, [1]);
        assert_eq!(mem.peer_read_u64(pending_word), 1 << 9);
    }

    #[test]
    fn a_region_too_small_for_the_arrays_is_an_error() {
        let mem = FakeSharedMemory::new(64);
        mem.peer_write_u64(vcpu_info::EVTCHN_PENDING_SEL, 1);
        assert!(take_pending(&mem, VCPU0, |_| {}).is_err());
        assert!(take_pending(&mem, usize::MAX, |_| {}).is_err());
        assert!(set_upcall_mask(&mem, usize::MAX, true).is_err());
    }

    #[test]
    fn upcall_mask_is_one_byte() {
        let mem = FakeSharedMemory::page();
        set_upcall_mask(&mem, 64, true).unwrap();
        assert_eq!(mem.peer_read(64 + vcpu_info::EVTCHN_UPCALL_MASK, 1), [1]);
        set_upcall_mask(&mem, 64, false).unwrap();
        assert_eq!(mem.peer_read(64 + vcpu_info::EVTCHN_UPCALL_MASK, 1), [0]);
    }
}
