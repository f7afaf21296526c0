//! The network frontend against an arbitrary backend: whatever the transmit and receive
//! response slots and producer indices say, and whichever grants the backend keeps mapped, the
//! frontend never panics, never hands out a frame that is empty or longer than
//! `MAX_FRAME_LEN`, never lends a page twice at once, keeps every grant accounted for
//! (rings, requests in flight, posted pages, held pages), and once broken stays broken.
//!
//! Input layout:
//!
//! ```text
//! 0       bit 0 -> the backend offers feature-sg (frames up to 64 KiB, in fragments)
//!         bits 1..6 -> frames transmitted before the first round (0..=31)
//! 1       seed for frame sizes: frame i is 14 + (seed * (i + 1) * 397) % max bytes
//! then rounds, until the input runs out (at most 64):
//! 0       t, transmit responses written this round (modulo 24)
//! 1       r, receive responses written this round (modulo 40)
//! 2       bit 0 -> transmit one more frame first
//!         bit 1 -> the backend maps grant entry 8 + (byte 3), if it grants access
//!         bit 2 -> the backend unmaps every entry
//!         bit 3 -> take every received frame (else only poll)
//! 3       entry for bit 1
//! 4       tx rsp_prod = tx responses written + this signed byte
//! 5       rx rsp_prod = rx responses written + this signed byte
//! then t transmit responses, each into the next slot the backend would answer in:
//! 0       kind % 3: 0 -> echo the id of the request in the slot, status next 2
//!                   1 -> id next 2, status next 2
//!                   2 -> the next 4 bytes, raw
//! then r receive responses, likewise:
//! 0       kind % 4: 0 -> id = the slot, offset next 2, flags next 2, status next 2
//!                   1 -> id = the slot, offset 0, flags next byte, size next byte
//!                   2 -> the next 8 bytes, raw
//!                   3 -> an extra-info slot: type next byte, flags next byte
//! ```
//!
//! Echoing ids and slot positions is what lets the fuzzer complete real requests and build
//! real packets (then repeat, truncate, chain or corrupt them) instead of guessing.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use ringbolt_shmem::fake::FakeSharedMemory;
use ringbolt_xen_abi::grant_table::{GTF_PERMIT_ACCESS, grant_entry_v1};
use ringbolt_xen_abi::io::netif::{
    NET_RX_RING_SIZE, NET_TX_RING_SIZE, NETIF_RX_SRING_ENTRY_SIZE, NETIF_TX_SRING_ENTRY_SIZE,
    netif_extra_info, netif_rx_response, netif_tx_request, netif_tx_response,
};
use ringbolt_xen_abi::io::ring::sring;
use ringbolt_xen_grant::GrantTable;
use ringbolt_xen_grant::sim as grant_sim;
use ringbolt_xen_netfront::{BackendFeatures, MAX_FRAME_LEN, Netfront, Page, Setup};
use ringbolt_xen_ring::Notify;

const ROUNDS: usize = 64;
/// Two grant frames: room for the rings, 64 rx pages and 24 tx pages with some to spare.
const TABLE_ENTRIES: usize = 1024;
const TX_PAGES: usize = 24;
const RX_PAGES: usize = 64;
const TX_FRAME: u64 = 0x1000;
const RX_FRAME: u64 = 0x2000;
/// `GTF_reading | GTF_writing`, in the low byte of the flags.

#[derive(Debug)]
struct NoEvent;

impl Notify for NoEvent {
    fn notify(&self) {}
}

/// `pages` as buffer pages at frames from `base` on.
fn pages(pages: &[FakeSharedMemory], base: u64) -> Vec<Page<&FakeSharedMemory>> {
    pages
        .iter()
        .zip(base..)
        .map(|(mem, frame)| Page { mem, frame })
        .collect()
}

/// Takes `N` bytes off the front of `input`, or `None` if it ran out.
fn take<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = input.split_first_chunk::<N>()?;
    *input = rest;
    Some(*head)
}

struct Harness<'a> {
    tx_ring: &'a FakeSharedMemory,
    rx_ring: &'a FakeSharedMemory,
    table: &'a FakeSharedMemory,
    grants: GrantTable<&'a FakeSharedMemory>,
    front: Netfront<&'a FakeSharedMemory, NoEvent>,
    sent: u64,
    seed: u64,
    /// Responses the backend has written on each ring.
    tx_written: u32,
    rx_written: u32,
    broken: bool,
}

impl Harness<'_> {
    fn transmit(&mut self) {
        self.sent += 1;
        let max = self.front.max_frame_len() - 14;
        let len = 14 + (self.seed * self.sent * 397) as usize % max;
        let frame: Vec<u8> = (0..len).map(|i| (i as u64 ^ self.sent) as u8).collect();
        // Busy and broken are answers too.
        let _ = self.front.transmit(&mut self.grants, &frame);
    }

    fn tx_response(&mut self, input: &mut &[u8]) -> Option<()> {
        let [kind] = take(input)?;
        let slot =
            sring::RING + (self.tx_written as usize % NET_TX_RING_SIZE) * NETIF_TX_SRING_ENTRY_SIZE;
        let request = self.tx_ring.peer_read(slot, NETIF_TX_SRING_ENTRY_SIZE);
        let mut response = [0u8; netif_tx_response::SIZE];
        match kind % 3 {
            0 => {
                response[..2].copy_from_slice(&request[netif_tx_request::ID..][..2]);
                response[netif_tx_response::STATUS..].copy_from_slice(&take::<2>(input)?);
            }
            1 => {
                response[..2].copy_from_slice(&take::<2>(input)?);
                response[netif_tx_response::STATUS..].copy_from_slice(&take::<2>(input)?);
            }
            _ => response = take(input)?,
        }
        self.tx_ring.peer_write(slot, &response);
        self.tx_written += 1;
        Some(())
    }

    fn rx_response(&mut self, input: &mut &[u8]) -> Option<()> {
        let [kind] = take(input)?;
        let index = self.rx_written as usize % NET_RX_RING_SIZE;
        let slot = sring::RING + index * NETIF_RX_SRING_ENTRY_SIZE;
        let mut response = [0u8; netif_rx_response::SIZE];
        let id = (index as u16).to_le_bytes();
        match kind % 4 {
            0 => {
                response[..2].copy_from_slice(&id);
                response[2..].copy_from_slice(&take::<6>(input)?);
            }
            1 => {
                let [flags, size] = take(input)?;
                response[..2].copy_from_slice(&id);
                response[netif_rx_response::FLAGS] = flags;
                response[netif_rx_response::STATUS] = size;
            }
            2 => response = take(input)?,
            _ => {
                let [kind, flags] = take(input)?;
                response[netif_extra_info::TYPE] = kind;
                response[netif_extra_info::FLAGS] = flags;
            }
        }
        self.rx_ring.peer_write(slot, &response);
        self.rx_written += 1;
        Some(())
    }

    fn poll_and_check(&mut self, drain: bool) {
        let polled = self.front.poll(&mut self.grants);
        if drain {
            while let Some(frame) = self.front.receive(&mut self.grants) {
                assert!(
                    !frame.is_empty() && frame.len() <= MAX_FRAME_LEN,
                    "{}-byte frame delivered",
                    frame.len()
                );
            }
        }
        if self.broken {
            assert!(polled.is_err() && self.front.broken().is_some(), "unbroken");
        }
        self.broken = self.front.broken().is_some();
        // Every live grant is a ring, a request in flight, a posted page or a held one,
        // and no page is lent twice.
        let mut frames = BTreeSet::new();
        let mut live = 0;
        for e in self
            .table
            .snapshot()
            .chunks_exact(grant_entry_v1::SIZE)
            .skip(8)
        {
            if u16::from_le_bytes([e[0], e[1]]) & GTF_PERMIT_ACCESS != 0 {
                live += 1;
                let frame = u32::from_le_bytes(e[4..8].try_into().unwrap());
                assert!(frames.insert(frame), "frame {frame:#x} granted twice");
            }
        }
        let accounted =
            2 + self.front.tx_in_flight() + self.front.rx_posted() + self.front.held_pages();
        assert_eq!(live, accounted, "grants unaccounted for");
        assert_eq!(self.grants.capacity() - 8 - self.grants.free_count(), live);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let Some([config, seed]) = take::<2>(&mut input) else {
        return;
    };
    let tx_ring = FakeSharedMemory::page();
    let rx_ring = FakeSharedMemory::page();
    let table = FakeSharedMemory::new(TABLE_ENTRIES * grant_entry_v1::SIZE);
    let tx_pages: Vec<FakeSharedMemory> = (0..TX_PAGES).map(|_| FakeSharedMemory::page()).collect();
    let rx_pages: Vec<FakeSharedMemory> = (0..RX_PAGES).map(|_| FakeSharedMemory::page()).collect();
    let mut grants = GrantTable::new(&table).unwrap();
    let rings = (
        Page {
            mem: &tx_ring,
            frame: 0x100,
        },
        Page {
            mem: &rx_ring,
            frame: 0x101,
        },
    );
    let setup = Setup::new(&mut grants, rings.0, rings.1, 0).unwrap();
    let sg = if config & 1 != 0 { "1" } else { "0" };
    let features = BackendFeatures::parse(|key| match key {
        "feature-rx-copy" => Some("1"),
        "feature-sg" => Some(sg),
        _ => None,
    })
    .unwrap();
    let front = setup.connect(
        &mut grants,
        &features,
        NoEvent,
        pages(&tx_pages, TX_FRAME),
        pages(&rx_pages, RX_FRAME),
    );
    let mut h = Harness {
        tx_ring: &tx_ring,
        rx_ring: &rx_ring,
        table: &table,
        grants,
        front,
        sent: 0,
        seed: u64::from(seed),
        tx_written: 0,
        rx_written: 0,
        broken: false,
    };
    for _ in 0..(config >> 1) % 32 {
        h.transmit();
    }
    for _ in 0..ROUNDS {
        let Some([t, r, flags, entry, tx_adjust, rx_adjust]) = take::<6>(&mut input) else {
            break;
        };
        if flags & 1 != 0 {
            h.transmit();
        }
        if flags & 2 != 0 {
            grant_sim::hold(&h.table, 8 + entry as usize).expect("entry inside the table");
        }
        if flags & 4 != 0 {
            grant_sim::release_all(&h.table).expect("whole table");
        }
        for _ in 0..t % 24 {
            if h.tx_response(&mut input).is_none() {
                break;
            }
        }
        for _ in 0..r % 40 {
            if h.rx_response(&mut input).is_none() {
                break;
            }
        }
        let tx_prod = h.tx_written.wrapping_add_signed(i32::from(tx_adjust as i8));
        let rx_prod = h.rx_written.wrapping_add_signed(i32::from(rx_adjust as i8));
        tx_ring.peer_write_u32(sring::RSP_PROD, tx_prod);
        rx_ring.peer_write_u32(sring::RSP_PROD, rx_prod);
        h.poll_and_check(flags & 8 != 0);
    }
    // The backend lets go of everything: what is held comes back.
    grant_sim::release_all(&h.table).expect("whole table");
    h.poll_and_check(true);
    assert_eq!(
        h.front.held_pages(),
        0,
        "pages held after the backend let go"
    );
});
