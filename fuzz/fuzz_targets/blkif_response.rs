//! The block frontend against an arbitrary backend: whatever the response slots and `rsp_prod`
//! say, and whichever grants the backend keeps mapped, the frontend never panics, completes an
//! I/O at most once and with all its pages, never hands back a page whose grant is still
//! mapped, and keeps its grant accounting exact.
//!
//! Input layout:
//!
//! ```text
//! 0       bit 0 -> the backend offers indirect requests (64 segments, one indirect page)
//!         bits 1..6 -> I/Os submitted before the first round (0..=31)
//! 1       seed for the I/O sizes: I/O i has 1 + (seed * (i + 1)) % 24 segments, or is a
//!         flush when that is 24
//! then rounds, until the input runs out (at most 64):
//! 0       k, responses written this round (modulo 40)
//! 1       bit 0 -> submit one more I/O first
//!         bit 1 -> the backend maps grant entry 8 + (byte 2) (GTF_reading|writing)
//!         bit 2 -> the backend unmaps every entry
//! 2       entry for bit 1
//! 3       rsp_prod = responses written so far + this signed byte (so it can jump past the
//!         ring or go backwards)
//! then k responses, each written to the next slot the backend would answer in:
//! 0       kind % 4: 0 -> echo the id and operation of the request in the slot, status next 2
//!                   1 -> echo the id, operation next byte, status next 2
//!                   2 -> id next 8 bytes, operation next byte, status next 2
//!                   3 -> the next 16 bytes, raw
//! ```
//!
//! Echoing the request's own id is what lets the fuzzer complete real requests (and then
//! repeat, corrupt or misnumber them) instead of only ever guessing 64-bit ids.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use ringbolt_shmem::fake::FakeSharedMemory;
use ringbolt_xen_abi::grant_table::{GTF_PERMIT_ACCESS, grant_entry_v1};
use ringbolt_xen_abi::io::blkif::{
    BLKIF_OP_INDIRECT, BLKIF_RING_SIZE, BLKIF_SRING_ENTRY_SIZE, blkif_request,
    blkif_request_indirect, blkif_response,
};
use ringbolt_xen_abi::io::ring::sring;
use ringbolt_xen_blkfront::{
    BackendInfo, Blkfront, IndirectPage, IoId, Operation, Page, Segment, Setup,
};
use ringbolt_xen_grant::GrantTable;
use ringbolt_xen_grant::sim as grant_sim;
use ringbolt_xen_ring::Notify;

const ROUNDS: usize = 64;
/// One grant frame: 504 usable references, fewer than 32 I/Os of 23 pages need.
const TABLE_ENTRIES: usize = 512;
/// `GTF_reading | GTF_writing`, in the low byte of the flags.

#[derive(Debug)]
struct TestPage(u64);

impl Page for TestPage {
    fn frame(&self) -> u64 {
        self.0
    }
}

#[derive(Debug)]
struct NoEvent;

impl Notify for NoEvent {
    fn notify(&self) {}
}

type Front<'a> = Blkfront<&'a FakeSharedMemory, TestPage, NoEvent>;

/// Takes `N` bytes off the front of `input`, or `None` if it ran out.
fn take<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = input.split_first_chunk::<N>()?;
    *input = rest;
    Some(*head)
}

struct Harness<'a> {
    ring: &'a FakeSharedMemory,
    table: &'a FakeSharedMemory,
    grants: GrantTable<&'a FakeSharedMemory>,
    front: Front<'a>,
    /// Free references with no I/O in flight.
    base_free: usize,
    /// I/O submitted and not completed, with their segment counts.
    pending: BTreeMap<IoId, usize>,
    submitted: u64,
    seed: u64,
    /// Responses the backend has written.
    written: u32,
}

impl Harness<'_> {
    fn submit(&mut self) {
        self.submitted += 1;
        let n = 1 + (self.seed * self.submitted % 24) as usize;
        let (operation, segments) = if n == 24 {
            (Operation::Flush, Vec::new())
        } else {
            let base = 0x1000 + self.submitted * 32;
            let operation = if self.submitted % 2 == 0 {
                Operation::Read
            } else {
                Operation::Write
            };
            (
                operation,
                (0..n as u64)
                    .map(|i| Segment::page(TestPage(base + i)))
                    .collect(),
            )
        };
        let count = segments.len();
        if let Ok(id) = self
            .front
            .submit(&mut self.grants, operation, 8 * self.submitted, segments)
        {
            assert!(
                self.pending.insert(id, count).is_none(),
                "I/O id {id:?} reused"
            );
        }
    }

    /// Writes the next response slot as the input says; `None` if the input ran out.
    fn respond(&mut self, input: &mut &[u8]) -> Option<()> {
        let [kind] = take(input)?;
        let slot = sring::RING + (self.written as usize % BLKIF_RING_SIZE) * BLKIF_SRING_ENTRY_SIZE;
        let request = self.ring.peer_read(slot, BLKIF_SRING_ENTRY_SIZE);
        let echo_id: [u8; 8] = request[blkif_request::ID..][..8].try_into().unwrap();
        let echo_op = match request[blkif_request::OPERATION] {
            BLKIF_OP_INDIRECT => request[blkif_request_indirect::INDIRECT_OP],
            op => op,
        };
        let mut response = [0u8; blkif_response::SIZE];
        let (id, op) = match kind % 4 {
            0 => (echo_id, echo_op),
            1 => (echo_id, take::<1>(input)?[0]),
            2 => (take(input)?, take::<1>(input)?[0]),
            _ => {
                response = take(input)?;
                self.ring.peer_write(slot, &response);
                self.written += 1;
                return Some(());
            }
        };
        response[blkif_response::ID..][..8].copy_from_slice(&id);
        response[blkif_response::OPERATION] = op;
        response[blkif_response::STATUS..][..2].copy_from_slice(&take::<2>(input)?);
        self.ring.peer_write(slot, &response);
        self.written += 1;
        Some(())
    }

    /// Polls and checks what came back. `settled`: nothing is mapped, so every I/O not
    /// pending on the ring has been handed back.
    fn poll_and_check(&mut self, settled: bool) {
        // Broken rings are an answer too; the checks below hold either way.
        let _ = self.front.poll(&mut self.grants);
        // Frames some entry still grants access to.
        let granted_frames: BTreeSet<u32> = self
            .table
            .snapshot()
            .chunks_exact(grant_entry_v1::SIZE)
            .skip(8)
            .filter(|e| u16::from_le_bytes([e[0], e[1]]) & GTF_PERMIT_ACCESS != 0)
            .map(|e| u32::from_le_bytes(e[4..8].try_into().unwrap()))
            .collect();
        while let Some(done) = self.front.pop_completion() {
            let Some(count) = self.pending.remove(&done.id) else {
                panic!("I/O {:?} completed twice, or never submitted", done.id);
            };
            assert_eq!(
                done.segments.len(),
                count,
                "pages missing from a completion"
            );
            for seg in &done.segments {
                let frame = seg.page.0 as u32;
                assert!(
                    !granted_frames.contains(&frame),
                    "page {frame:#x} returned while granted"
                );
            }
        }
        assert_eq!(self.front.in_flight(), self.pending.len());
        // Pending I/O holds at most its own grants (all of them, once nothing is mapped).
        let granted: usize = self.pending.values().sum();
        let free = self.grants.free_count();
        assert!(free <= self.base_free && free + granted >= self.base_free);
        if settled {
            assert_eq!(free + granted, self.base_free);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let Some([config, seed]) = take::<2>(&mut input) else {
        return;
    };
    let ring = FakeSharedMemory::page();
    let table = FakeSharedMemory::new(TABLE_ENTRIES * grant_entry_v1::SIZE);
    let indirect = FakeSharedMemory::page();
    let mut grants = GrantTable::new(&table).unwrap();
    let setup = Setup::new(&mut grants, &ring, 0x100, 0, 0xCA00).unwrap();
    let info = BackendInfo {
        sectors: 1 << 30,
        sector_size: 512,
        physical_sector_size: 512,
        flush_cache: true,
        barrier: false,
        persistent: false,
        max_indirect_segments: if config & 1 != 0 { 64 } else { 0 },
    };
    let pages = vec![IndirectPage {
        mem: &indirect,
        frame: 0x200,
    }];
    let front = setup.connect(&mut grants, info, NoEvent, pages);
    let mut h = Harness {
        ring: &ring,
        table: &table,
        base_free: grants.free_count(),
        grants,
        front,
        pending: BTreeMap::new(),
        submitted: 0,
        seed: u64::from(seed),
        written: 0,
    };
    for _ in 0..(config >> 1) % 32 {
        h.submit();
    }
    for _ in 0..ROUNDS {
        let Some([k, flags, entry, adjust]) = take::<4>(&mut input) else {
            break;
        };
        if flags & 1 != 0 {
            h.submit();
        }
        if flags & 2 != 0 {
            grant_sim::hold(&h.table, 8 + entry as usize).expect("entry inside the table");
        }
        if flags & 4 != 0 {
            grant_sim::release_all(&h.table).expect("whole table");
        }
        for _ in 0..k % 40 {
            if h.respond(&mut input).is_none() {
                break;
            }
        }
        let rsp_prod = h.written.wrapping_add_signed(i32::from(adjust as i8));
        ring.peer_write_u32(sring::RSP_PROD, rsp_prod);
        h.poll_and_check(false);
    }
    // The backend lets go of everything: what is held comes back.
    grant_sim::release_all(&h.table).expect("whole table");
    h.poll_and_check(true);
});
