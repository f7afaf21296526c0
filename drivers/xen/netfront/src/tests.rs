extern crate std;

mod stack;

use std::vec;
use std::vec::Vec;

use ringbolt_shmem::fake::FakeSharedMemory;
use ringbolt_xen_abi::grant_table::{GTF_PERMIT_ACCESS, GTF_READONLY, grant_entry_v1};
use ringbolt_xen_abi::io::netif::{
    NET_RX_RING_SIZE, NETIF_RSP_NULL, NETRXF_CSUM_BLANK, NETTXF_MORE_DATA, netif_rx_request,
    netif_tx_request,
};
use ringbolt_xen_abi::io::ring::sring;
use ringbolt_xen_ring::sim::{LogRecord, capture_logs, take_logs};
use smoltcp::phy::Device;

use super::*;
use crate::sim::{GARBAGE_RX_STATUS, GARBAGE_TX_STATUS, Hostile, Netback};
use crate::wire::{RxResponse, TxRequest, TxResponse};

const BACKEND: DomId = 0;
const TX_RING_FRAME: u64 = 0x100;
const RX_RING_FRAME: u64 = 0x101;
const TX_FRAME: u64 = 0x1000;
const RX_FRAME: u64 = 0x2000;

/// Counts notifications.
type Events = ringbolt_xen_ring::sim::NotifyCounter;

/// The guest memory a test uses: two ring pages, the grant table, buffer pages.
struct Memory {
    tx_ring: FakeSharedMemory,
    rx_ring: FakeSharedMemory,
    table: FakeSharedMemory,
    tx: Vec<FakeSharedMemory>,
    rx: Vec<FakeSharedMemory>,
}

impl Memory {
    fn new(tx: usize, rx: usize) -> Self {
        Self::with_table(tx, rx, 2 * XEN_PAGE_SIZE)
    }

    fn with_table(tx: usize, rx: usize, table: usize) -> Self {
        Memory {
            tx_ring: FakeSharedMemory::page(),
            rx_ring: FakeSharedMemory::page(),
            table: FakeSharedMemory::new(table),
            tx: (0..tx).map(|_| FakeSharedMemory::page()).collect(),
            rx: (0..rx).map(|_| FakeSharedMemory::page()).collect(),
        }
    }

    fn pages(pages: &[FakeSharedMemory], base: u64) -> Vec<Page<&FakeSharedMemory>> {
        pages
            .iter()
            .enumerate()
            .map(|(i, mem)| Page {
                mem,
                frame: base + i as u64,
            })
            .collect()
    }
}

type Front<'a> = Netfront<&'a FakeSharedMemory, Events>;

/// A frontend connected to a simulated backend over `mem`.
struct Rig<'a> {
    mem: &'a Memory,
    grants: GrantTable<&'a FakeSharedMemory>,
    front: Front<'a>,
    back: Netback<&'a FakeSharedMemory>,
    events: Events,
}

fn rig(mem: &Memory) -> Rig<'_> {
    rig_with(mem, |b| b)
}

fn rig_with<'a>(
    mem: &'a Memory,
    configure: impl FnOnce(Netback<&'a FakeSharedMemory>) -> Netback<&'a FakeSharedMemory>,
) -> Rig<'a> {
    let mut grants = GrantTable::new(&mem.table).unwrap();
    let tx_ring = Page {
        mem: &mem.tx_ring,
        frame: TX_RING_FRAME,
    };
    let rx_ring = Page {
        mem: &mem.rx_ring,
        frame: RX_RING_FRAME,
    };
    let setup = Setup::new(&mut grants, tx_ring, rx_ring, BACKEND).unwrap();
    let mut back =
        configure(Netback::new(&mem.tx_ring, &mem.rx_ring, &mem.table, BACKEND).unwrap());
    for (i, page) in mem.tx.iter().enumerate() {
        back.add_page(TX_FRAME + i as u64, page);
    }
    for (i, page) in mem.rx.iter().enumerate() {
        back.add_page(RX_FRAME + i as u64, page);
    }
    let nodes = back.xenstore();
    let features = BackendFeatures::parse(|key| {
        nodes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    })
    .unwrap();
    let events = Events::default();
    let front = setup.connect(
        &mut grants,
        &features,
        events.clone(),
        Memory::pages(&mem.tx, TX_FRAME),
        Memory::pages(&mem.rx, RX_FRAME),
    );
    Rig {
        mem,
        grants,
        front,
        back,
        events,
    }
}

impl Rig<'_> {
    fn send(&mut self, frame: &[u8]) {
        if let Err(e) = self.front.transmit(&mut self.grants, frame) {
            panic!("transmit refused: {e}");
        }
    }

    fn refuse(&mut self, frame: &[u8]) -> TxError {
        self.front.transmit(&mut self.grants, frame).unwrap_err()
    }

    /// The backend serves everything, then the frontend polls.
    fn round(&mut self) {
        self.back.process().unwrap();
        self.front.poll(&mut self.grants).unwrap();
    }

    /// Every frame the frontend has for the stack.
    fn received(&mut self) -> Vec<Vec<u8>> {
        core::iter::from_fn(|| self.front.receive(&mut self.grants)).collect()
    }

    /// Every frame the peer has from the guest.
    fn at_peer(&mut self) -> Vec<Vec<u8>> {
        core::iter::from_fn(|| self.back.peer_receive()).collect()
    }

    /// Grant references in use: the two rings' plus every page lent to the backend.
    fn grants_in_use(&self) -> usize {
        self.grants.capacity() - 8 - self.grants.free_count()
    }

    /// The tx request in ring slot `i`.
    fn tx_request(&self, i: usize) -> TxRequest {
        let at = sring::RING + i * netif_tx_request::SIZE;
        TxRequest::decode(
            &self
                .mem
                .tx_ring
                .peer_read(at, netif_tx_request::SIZE)
                .try_into()
                .unwrap(),
        )
    }

    /// The flags of grant entry `gref`.
    fn grant_flags(&self, gref: GrantRef) -> u16 {
        let b = self
            .mem
            .table
            .peer_read(gref as usize * grant_entry_v1::SIZE, 2);
        u16::from_le_bytes([b[0], b[1]])
    }
}

/// An Ethernet frame of `len` bytes whose payload `seed` determines.
fn frame(len: usize, seed: u64) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x00, 0x16, 0x3E, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3E, 0, 0, 1]);
    // IEEE 802 local experimental EtherType.
    f[12..14].copy_from_slice(&[0x88, 0xB5]);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in &mut f[14..] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    f
}

fn errors(logs: &[LogRecord]) -> Vec<&str> {
    logs.iter()
        .filter(|r| r.level == log::Level::Error)
        .map(|r| r.message.as_str())
        .collect()
}

#[test]
fn setup_initialises_and_grants_both_rings() {
    let mem = Memory::new(0, 0);
    let mut grants = GrantTable::new(&mem.table).unwrap();
    mem.tx_ring.peer_write(0, &[0xEE; 64]);
    let tx_ring = Page {
        mem: &mem.tx_ring,
        frame: TX_RING_FRAME,
    };
    let rx_ring = Page {
        mem: &mem.rx_ring,
        frame: RX_RING_FRAME,
    };
    let setup = Setup::new(&mut grants, tx_ring, rx_ring, 5).unwrap();
    assert_eq!(
        setup.frontend_keys(23),
        FrontendKeys {
            tx_ring_ref: 8,
            rx_ring_ref: 9,
            event_channel: 23
        }
    );
    // Writable, for domain 5, of each ring's frame.
    assert_eq!(
        mem.table.peer_read(8 * grant_entry_v1::SIZE, 8),
        [1, 0, 5, 0, 0x00, 0x01, 0, 0]
    );
    assert_eq!(
        mem.table.peer_read(9 * grant_entry_v1::SIZE, 8),
        [1, 0, 5, 0, 0x01, 0x01, 0, 0]
    );
    for ring in [&mem.tx_ring, &mem.rx_ring] {
        assert_eq!(ring.peer_read_u32(sring::REQ_PROD), 0);
        assert_eq!(ring.peer_read_u32(sring::REQ_EVENT), 1);
        assert_eq!(ring.peer_read_u32(sring::RSP_EVENT), 1);
    }
}

#[test]
fn setup_wants_one_page_rings() {
    let mut grants = GrantTable::new(FakeSharedMemory::page()).unwrap();
    let page = FakeSharedMemory::page();
    for len in [XEN_PAGE_SIZE - 8, 2 * XEN_PAGE_SIZE] {
        let ring = FakeSharedMemory::new(len);
        let (a, b) = (
            Page {
                mem: &ring,
                frame: 1,
            },
            Page {
                mem: &page,
                frame: 2,
            },
        );
        assert_eq!(
            Setup::new(&mut grants, a, b, BACKEND).unwrap_err(),
            NetError::RingNotOnePage(len)
        );
        assert_eq!(ring.events(), []);
    }
    // Nothing was granted.
    assert_eq!(grants.free_count(), 504);
    // A table with room for one ring's grant only: the first is taken back.
    let mut tiny = GrantTable::new(FakeSharedMemory::new(9 * grant_entry_v1::SIZE)).unwrap();
    let (a, b) = (FakeSharedMemory::page(), FakeSharedMemory::page());
    let rings = (Page { mem: &a, frame: 1 }, Page { mem: &b, frame: 2 });
    assert_eq!(
        Setup::new(&mut tiny, rings.0, rings.1, BACKEND).unwrap_err(),
        NetError::Grant(GrantError::Exhausted)
    );
    assert_eq!(tiny.free_count(), 1);
}

#[test]
fn connect_posts_every_rx_page_the_ring_holds() {
    let mem = Memory::new(0, NET_RX_RING_SIZE + 44);
    let rig = rig(&mem);
    assert_eq!(rig.front.rx_posted(), NET_RX_RING_SIZE);
    assert_eq!(mem.rx_ring.peer_read_u32(sring::REQ_PROD), 256);
    assert_eq!(rig.grants_in_use(), 2 + NET_RX_RING_SIZE);
    // Slot i asks for id i, with a page granted writable.
    for i in [0usize, 1, 255] {
        let slot = mem
            .rx_ring
            .peer_read(sring::RING + i * netif_rx_request::SIZE, 8);
        assert_eq!(u16::from_le_bytes([slot[0], slot[1]]) as usize, i);
        let gref = u32::from_le_bytes(slot[4..8].try_into().unwrap());
        assert_eq!(rig.grant_flags(gref), GTF_PERMIT_ACCESS);
    }
    assert_eq!(rig.events.take(), 1);
}

#[test]
fn warns_when_too_few_rx_pages_for_a_large_packet() {
    let mem = Memory::new(1, MAX_FRAGMENTS - 1);
    capture_logs();
    let mut rig = rig(&mem);
    assert_eq!(rig.front.rx_posted(), MAX_FRAGMENTS - 1);
    let logs = take_logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].level, log::Level::Warn);
    assert!(logs[0].message.contains("only 18 rx pages posted"));
    // Once per shortage, not once per poll.
    rig.back.peer_send(frame(60, 1));
    rig.round();
    assert_eq!(rig.received().len(), 1);
    assert_eq!(take_logs(), []);
}

#[test]
fn transmits_a_frame_from_a_granted_page() {
    let mem = Memory::new(4, 32);
    let mut rig = rig(&mem);
    rig.events.take();
    let base = rig.grants_in_use();
    let sent = frame(60, 1);
    rig.send(&sent);
    let request = rig.tx_request(0);
    assert_eq!(
        (
            request.offset,
            request.flags,
            request.id,
            request.size as usize
        ),
        (0, 0, 0, 60)
    );
    // Read-only, holding the frame.
    assert_eq!(
        rig.grant_flags(request.gref),
        GTF_PERMIT_ACCESS | GTF_READONLY
    );
    let page = (0..4)
        .find(|&p| mem.tx[p].peer_read(0, 60) == sent)
        .unwrap();
    assert_eq!(
        mem.table
            .peer_read_u32(request.gref as usize * grant_entry_v1::SIZE + 4),
        (TX_FRAME + page as u64) as u32
    );
    assert_eq!(rig.events.take(), 1);
    assert_eq!(rig.front.tx_in_flight(), 1);
    rig.round();
    assert_eq!(rig.at_peer(), [sent]);
    // Answered: the grant is ended, the page back in the pool.
    assert_eq!(rig.front.tx_in_flight(), 0);
    assert_eq!(rig.grants_in_use(), base);
    assert_eq!(rig.grant_flags(request.gref), 0);
    let stats = rig.front.stats();
    assert_eq!(
        (stats.tx_frames, stats.tx_bytes, stats.tx_errors),
        (1, 60, 0)
    );
    assert_eq!(rig.back.guest_sent(0x88B5), 1);
}

#[test]
fn sends_frames_larger_than_a_page_in_fragments() {
    let mem = Memory::new(20, 32);
    let mut rig = rig(&mem);
    assert!(rig.front.features().sg);
    assert_eq!(rig.front.max_frame_len(), MAX_FRAME_LEN);
    let big = frame(10_000, 2);
    rig.send(&big);
    let requests: Vec<TxRequest> = (0..3).map(|i| rig.tx_request(i)).collect();
    // The first request carries the whole size, the others their own.
    assert_eq!(
        requests
            .iter()
            .map(|r| (r.flags, r.size))
            .collect::<Vec<_>>(),
        [
            (NETTXF_MORE_DATA, 10_000),
            (NETTXF_MORE_DATA, 4096),
            (0, 1808)
        ]
    );
    let largest = frame(MAX_FRAME_LEN, 3);
    rig.send(&largest);
    assert_eq!(rig.front.tx_in_flight(), 3 + 16);
    assert_eq!(
        rig.refuse(&frame(MAX_FRAME_LEN + 1, 4)),
        TxError::TooLong {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        }
    );
    rig.round();
    assert_eq!(rig.at_peer(), [big, largest]);
    assert_eq!(rig.front.tx_in_flight(), 0);
    assert!(rig.back.failures().is_empty(), "{:?}", rig.back.failures());
}

#[test]
fn without_sg_a_frame_is_one_page() {
    let mem = Memory::new(4, 32);
    let mut rig = rig_with(&mem, |b| b.with_sg(false));
    assert!(!rig.front.features().sg);
    assert_eq!(rig.front.max_frame_len(), XEN_PAGE_SIZE);
    assert_eq!(
        rig.refuse(&frame(XEN_PAGE_SIZE + 1, 1)),
        TxError::TooLong {
            len: XEN_PAGE_SIZE + 1,
            max: XEN_PAGE_SIZE
        }
    );
    let page = frame(XEN_PAGE_SIZE, 1);
    rig.send(&page);
    rig.round();
    assert_eq!(rig.at_peer(), [page]);
}

#[test]
fn refuses_frames_shorter_than_a_header() {
    let mem = Memory::new(4, 32);
    let mut rig = rig(&mem);
    assert_eq!(rig.refuse(&[0; 13]), TxError::TooShort(13));
    assert_eq!(rig.refuse(&[]), TxError::TooShort(0));
    assert_eq!(rig.front.tx_in_flight(), 0);
    assert_eq!(rig.front.stats().tx_frames, 0);
}

#[test]
fn busy_until_completions_return_pages() {
    let mem = Memory::new(4, 32);
    let mut big = rig(&mem);
    for i in 0..4 {
        big.send(&frame(100, i));
    }
    assert_eq!(big.refuse(&frame(100, 9)), TxError::Busy);
    // Answered but not yet collected: the next transmit collects, then sends.
    big.back.process().unwrap();
    big.send(&frame(100, 5));
    assert_eq!(big.front.tx_in_flight(), 1);
    // A multi-page frame needs as many free pages.
    big.send(&frame(3 * XEN_PAGE_SIZE, 6));
    assert_eq!(big.refuse(&frame(100, 7)), TxError::Busy);
    big.round();
    assert_eq!(big.at_peer().len(), 6);

    // A grant table with room for the rings, the rx pages and one more.
    let small = Memory::with_table(4, 2, 13 * grant_entry_v1::SIZE);
    let mut tiny = rig(&small);
    assert_eq!(tiny.grants.free_count(), 1);
    assert_eq!(tiny.refuse(&frame(5000, 1)), TxError::Busy);
    tiny.send(&frame(100, 1));
    assert_eq!(tiny.refuse(&frame(100, 2)), TxError::Busy);
    tiny.round();
    tiny.send(&frame(100, 2));
}

#[test]
fn receives_frames_and_reposts_their_pages() {
    let mem = Memory::new(1, 64);
    let mut rig = rig(&mem);
    let base = rig.grants_in_use();
    let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(60 + 300 * i, i as u64)).collect();
    for f in &frames {
        rig.back.peer_send(f.clone());
    }
    rig.round();
    assert_eq!(rig.received(), frames);
    // Every page consumed was granted anew and posted again.
    assert_eq!(rig.front.rx_posted(), 64);
    assert_eq!(rig.grants_in_use(), base);
    assert_eq!(mem.rx_ring.peer_read_u32(sring::REQ_PROD), 64 + 5);
    let stats = rig.front.stats();
    assert_eq!(stats.rx_frames, 5);
    assert_eq!(
        stats.rx_bytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!((stats.rx_errors, stats.protocol_errors), (0, 0));
}

#[test]
fn reassembles_fragments_skipping_extra_info_slots() {
    let mem = Memory::new(1, 64);
    let mut rig = rig_with(&mem, |b| {
        b.with_rx_fragment(1000)
            .with_rx_offset(100)
            .with_rx_extras(true)
    });
    let frames = vec![frame(1514, 1), frame(60, 2), frame(9000, 3), frame(1000, 4)];
    for f in &frames {
        rig.back.peer_send(f.clone());
    }
    rig.round();
    assert_eq!(rig.received(), frames);
    let stats = rig.front.stats();
    assert_eq!((stats.rx_frames, stats.protocol_errors), (4, 0));
    // 2 + 1 + 9 + 1 fragments and 2 extra-info slots each, all posted again.
    assert_eq!(mem.rx_ring.peer_read_u32(sring::REQ_PROD), 64 + 13 + 8);
    assert_eq!(rig.front.rx_posted(), 64);
}

#[test]
fn a_packet_published_in_two_batches_is_reassembled() {
    let mem = Memory::new(1, 64);
    let mut rig = rig_with(&mem, |b| b.with_rx_fragment(100));
    let f = frame(250, 1);
    rig.back.peer_send(f.clone());
    rig.back.process().unwrap();
    // Hide the last fragment's response, then show it.
    mem.rx_ring.peer_write_u32(sring::RSP_PROD, 2);
    rig.front.poll(&mut rig.grants).unwrap();
    assert_eq!(rig.front.received.len(), 0);
    mem.rx_ring.peer_write_u32(sring::RSP_PROD, 3);
    assert_eq!(rig.received(), [f]);
}

#[test]
fn stops_taking_frames_while_the_stack_falls_behind() {
    let mem = Memory::new(1, 256);
    let mut rig = rig(&mem);
    for i in 0..100 {
        rig.back.peer_send(frame(60, i));
    }
    rig.round();
    assert_eq!(rig.front.received.len(), RX_QUEUE_FRAMES);
    // The rest waits on the ring, and comes once the queue drains.
    assert_eq!(mem.rx_ring.peer_read_u32(sring::RSP_PROD), 100);
    assert_eq!(
        mem.rx_ring.peer_read_u32(sring::REQ_PROD),
        256 + RX_QUEUE_FRAMES as u32
    );
    let got = rig.received();
    assert_eq!(got.len(), 100);
    assert_eq!(got[99], frame(60, 99));
    assert_eq!(mem.rx_ring.peer_read_u32(sring::REQ_PROD), 256 + 100);
}

#[test]
fn notifies_the_backend_only_when_it_asked() {
    let mem = Memory::new(4, 32);
    let mut rig = rig(&mem);
    assert_eq!(rig.events.take(), 1);
    rig.send(&frame(60, 1));
    assert_eq!(rig.events.take(), 1);
    // The backend has not looked yet: it will see this one without a kick.
    rig.send(&frame(60, 2));
    assert_eq!(rig.events.take(), 0);
    // It serves both and re-arms req_event; our poll re-arms rsp_event on both rings.
    assert!(rig.back.process().unwrap());
    rig.front.poll(&mut rig.grants).unwrap();
    assert_eq!(mem.tx_ring.peer_read_u32(sring::RSP_EVENT), 3);
    assert_eq!(mem.rx_ring.peer_read_u32(sring::RSP_EVENT), 1);
    rig.send(&frame(60, 3));
    assert_eq!(rig.events.take(), 1);
}

#[test]
fn the_device_speaks_ethernet_with_software_checksums() {
    let mem = Memory::new(2, 32);
    let mut rig = rig(&mem);
    let caps = rig.front.device(&mut rig.grants).capabilities();
    assert_eq!(caps.medium, smoltcp::phy::Medium::Ethernet);
    assert_eq!(caps.max_transmission_unit, 1514);
    let both = |c: smoltcp::phy::Checksum| matches!(c, smoltcp::phy::Checksum::Both);
    assert!(both(caps.checksum.ipv4) && both(caps.checksum.tcp) && both(caps.checksum.udp));
    assert!(both(caps.checksum.icmpv4));
}

#[test]
fn the_device_drops_what_no_longer_fits() {
    use smoltcp::phy::{RxToken as _, TxToken as _};
    let mem = Memory::new(1, 32);
    let mut rig = rig(&mem);
    let now = smoltcp::time::Instant::ZERO;
    rig.back.peer_send(frame(60, 1));
    rig.back.peer_send(frame(60, 2));
    rig.back.process().unwrap();
    let mut device = rig.front.device(&mut rig.grants);
    let (rx, tx) = device.receive(now).unwrap();
    assert_eq!(rx.consume(|f| f.to_vec()), frame(60, 1));
    tx.consume(60, |b| b.copy_from_slice(&frame(60, 3)));
    // The one tx page is in flight: no token for a new frame...
    assert!(device.transmit(now).is_none());
    // ...and the reply token that comes with a received frame drops its frame.
    let (rx, tx) = device.receive(now).unwrap();
    assert_eq!(rx.consume(|f| f.to_vec()), frame(60, 2));
    tx.consume(60, |b| b.copy_from_slice(&frame(60, 4)));
    assert_eq!(rig.front.stats().tx_dropped, 1);
    rig.round();
    assert_eq!(rig.at_peer(), [frame(60, 3)]);
    assert!(rig.front.device(&mut rig.grants).transmit(now).is_some());
}

#[test]
fn hostile_ids_never_issued_are_logged_and_dropped() {
    let mem = Memory::new(8, 32);
    let mut rig = rig(&mem);
    rig.back.set_hostile(Some(Hostile::UnissuedIds));
    capture_logs();
    rig.send(&frame(60, 1));
    rig.back.peer_send(frame(60, 2));
    rig.round();
    let logs = take_logs();
    let errors = errors(&logs);
    assert_eq!(errors.len(), 2, "{logs:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("matches no request in flight"))
    );
    assert!(errors.iter().any(|e| e.contains("carries id")));
    assert_eq!(rig.received().len(), 0);
    let stats = rig.front.stats();
    assert_eq!((stats.protocol_errors, stats.rx_errors), (2, 1));
    // The tx request stays in flight; its page and grant with it.
    assert_eq!(rig.front.tx_in_flight(), 1);
    // Everything else works, the rx page was posted again.
    assert_eq!(rig.front.broken(), None);
    assert_eq!(rig.front.rx_posted(), 32);
    rig.back.set_hostile(None);
    rig.send(&frame(60, 3));
    rig.back.peer_send(frame(60, 4));
    rig.round();
    assert_eq!(rig.received(), [frame(60, 4)]);
    assert_eq!(rig.at_peer().last(), Some(&frame(60, 3)));
    assert_eq!(rig.front.tx_in_flight(), 1);
}

#[test]
fn hostile_lengths_past_the_page_drop_the_frame() {
    let mem = Memory::new(1, 32);
    let mut rig = rig(&mem);
    rig.back.set_hostile(Some(Hostile::LengthPastPage));
    capture_logs();
    rig.back.peer_send(frame(60, 1));
    rig.round();
    assert_eq!(rig.received().len(), 0);
    let logs = take_logs();
    assert_eq!(errors(&logs).len(), 1, "{logs:?}");
    assert!(errors(&logs)[0].contains("of 4097 bytes ends past the page"));
    assert_eq!(rig.front.stats().protocol_errors, 1);
    rig.back.set_hostile(None);
    rig.back.peer_send(frame(60, 2));
    rig.round();
    assert_eq!(rig.received(), [frame(60, 2)]);
}

#[test]
fn hostile_offsets_out_of_range_drop_the_frame() {
    let mem = Memory::new(1, 32);
    let mut rig = rig_with(&mem, |b| b.with_rx_fragment(1000));
    rig.back.set_hostile(Some(Hostile::OffsetOutOfRange));
    capture_logs();
    // 0xfff8 + 1000 wraps 16 bits: checked in full width.
    rig.back.peer_send(frame(2500, 1));
    rig.round();
    assert_eq!(rig.received().len(), 0);
    let logs = take_logs();
    assert_eq!(errors(&logs).len(), 1, "{logs:?}");
    assert!(errors(&logs)[0].contains("fragment at 65528 of 1000 bytes"));
    // One packet, three slots: one protocol error, and every page posted again.
    assert_eq!(rig.front.stats().protocol_errors, 1);
    assert_eq!(rig.front.rx_posted(), 32);
}

#[test]
fn hostile_foreign_grant_refs_fail_the_frames() {
    let mem = Memory::new(2, 32);
    let mut rig = rig(&mem);
    rig.back.set_hostile(Some(Hostile::ForeignGrantRefs));
    capture_logs();
    rig.send(&frame(60, 1));
    rig.back.peer_send(frame(60, 2));
    rig.round();
    assert_eq!(rig.at_peer().len(), 0);
    assert_eq!(rig.received().len(), 0);
    assert_eq!(rig.back.failures().len(), 2);
    assert!(rig.back.failures()[0].contains("bad grant reference"));
    let logs = take_logs();
    assert!(
        logs.iter()
            .any(|r| r.level == log::Level::Warn && r.message.contains("failed tx request")),
        "{logs:?}"
    );
    assert!(errors(&logs)[0].contains("backend failed the fragment (status -1)"));
    // A backend reporting failure is not a protocol violation.
    let stats = rig.front.stats();
    assert_eq!(
        (stats.tx_errors, stats.rx_errors, stats.protocol_errors),
        (1, 1, 0)
    );
    assert_eq!(rig.front.tx_in_flight(), 0);
    assert_eq!(rig.front.held_pages(), 0);
}

#[test]
fn hostile_producer_jump_disables_the_frontend() {
    let mem = Memory::new(4, 32);
    let mut rig = rig(&mem);
    rig.send(&frame(60, 1));
    rig.send(&frame(60, 2));
    rig.back.set_hostile(Some(Hostile::ProducerJump));
    capture_logs();
    rig.back.process().unwrap();
    assert!(matches!(
        rig.front.poll(&mut rig.grants),
        Err(RingError::Broken(_))
    ));
    let logs = take_logs();
    assert!(
        errors(&logs)
            .iter()
            .any(|e| e.contains("interface disabled")),
        "{logs:?}"
    );
    assert!(matches!(rig.front.broken(), Some(RingError::Broken(_))));
    // Every page is back: only the rings' grants remain.
    assert_eq!(rig.grants_in_use(), 2);
    assert_eq!((rig.front.tx_in_flight(), rig.front.rx_posted()), (0, 0));
    assert!(matches!(
        rig.refuse(&frame(60, 3)),
        TxError::Broken(RingError::Broken(_))
    ));
    assert_eq!(rig.front.receive(&mut rig.grants), None);
    let now = smoltcp::time::Instant::ZERO;
    let mut device = rig.front.device(&mut rig.grants);
    assert!(device.transmit(now).is_none());
    assert!(device.receive(now).is_none());
}

#[test]
fn hostile_garbage_statuses_are_protocol_errors() {
    let mem = Memory::new(2, 32);
    let mut rig = rig(&mem);
    rig.back.set_hostile(Some(Hostile::GarbageStatus));
    capture_logs();
    rig.send(&frame(60, 1));
    rig.back.peer_send(frame(60, 2));
    rig.round();
    let logs = take_logs();
    let errors = errors(&logs);
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&std::format!("unknown status {GARBAGE_TX_STATUS}")))
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&std::format!("(status {GARBAGE_RX_STATUS})")))
    );
    let stats = rig.front.stats();
    assert_eq!(
        (stats.tx_errors, stats.rx_errors, stats.protocol_errors),
        (1, 1, 2)
    );
    // The tx request was answered, if strangely: its page is back.
    assert_eq!(rig.front.tx_in_flight(), 0);
    assert_eq!(rig.received().len(), 0);
}

#[test]
fn hostile_mappings_hold_pages_until_unmapped() {
    let mem = Memory::new(2, 4);
    let mut rig = rig(&mem);
    let base = rig.grants_in_use();
    rig.back.set_hostile(Some(Hostile::KeepMapped));
    capture_logs();
    rig.send(&frame(60, 1));
    rig.back.peer_send(frame(60, 2));
    rig.round();
    // The tx frame went out, but its page stays out of reuse; the rx frame is not read.
    assert_eq!(rig.at_peer(), [frame(60, 1)]);
    assert_eq!(rig.received().len(), 0);
    assert_eq!(rig.front.held_pages(), 2);
    let logs = take_logs();
    assert!(errors(&logs).iter().any(|e| e.contains("still maps")));
    assert_eq!(
        logs.iter().filter(|r| r.level == log::Level::Warn).count(),
        2,
        "{logs:?}"
    );
    // Three rx pages posted; one tx page left.
    assert_eq!(rig.front.rx_posted(), 3);
    rig.back.set_hostile(None);
    rig.send(&frame(60, 3));
    assert_eq!(rig.refuse(&frame(60, 4)), TxError::Busy);
    rig.round();
    // Polls retry quietly; once unmapped, the pages come back.
    assert_eq!(take_logs(), []);
    rig.back.unmap_all();
    rig.front.poll(&mut rig.grants).unwrap();
    assert_eq!(rig.front.held_pages(), 0);
    assert_eq!(rig.front.rx_posted(), 4);
    assert_eq!(rig.grants_in_use(), base);
    rig.send(&frame(60, 4));
    rig.send(&frame(60, 5));
}

#[test]
fn hostile_endless_chains_are_cut_at_the_limit() {
    let mem = Memory::new(1, 64);
    let mut rig = rig(&mem);
    rig.back.set_hostile(Some(Hostile::EndlessChain));
    capture_logs();
    for i in 0..40 {
        rig.back.peer_send(frame(60, i));
    }
    rig.round();
    assert_eq!(rig.received().len(), 0);
    let logs = take_logs();
    assert_eq!(errors(&logs).len(), 1, "{logs:?}");
    assert!(errors(&logs)[0].contains("more than 19 fragments"));
    assert_eq!(rig.front.stats().protocol_errors, 1);
    assert_eq!(rig.front.rx_posted(), 64);
    // The next honest frame ends the chain (and goes with it); the one after arrives.
    rig.back.set_hostile(None);
    rig.back.peer_send(frame(60, 100));
    rig.back.peer_send(frame(60, 101));
    rig.round();
    assert_eq!(rig.received(), [frame(60, 101)]);
}

#[test]
fn hostile_extra_info_types_drop_the_frame() {
    let mem = Memory::new(1, 32);
    let mut rig = rig(&mem);
    rig.back.set_hostile(Some(Hostile::BadExtraType));
    capture_logs();
    rig.back.peer_send(frame(60, 1));
    rig.round();
    assert_eq!(rig.received().len(), 0);
    let logs = take_logs();
    assert_eq!(errors(&logs).len(), 1, "{logs:?}");
    assert!(errors(&logs)[0].contains("extra-info slot of type 0"));
    rig.back.set_hostile(None);
    rig.back.peer_send(frame(60, 2));
    rig.round();
    assert_eq!(rig.received(), [frame(60, 2)]);
}

/// Responses the simulated backend never writes, written into the rings by hand.
#[test]
fn responses_netif_forbids_are_dropped() {
    let mem = Memory::new(2, 32);
    let mut rig = rig(&mem);
    capture_logs();
    rig.send(&frame(60, 1));
    // A NETIF_RSP_NULL answer to a request that had no extra-info slot: ignored.
    let null = TxResponse {
        id: 0,
        status: NETIF_RSP_NULL,
    };
    mem.tx_ring.peer_write(sring::RING, &null.encode());
    mem.tx_ring.peer_write_u32(sring::RSP_PROD, 1);
    // A frame whose checksum the backend left blank, and an empty one.
    let blank = RxResponse {
        id: 0,
        offset: 0,
        flags: NETRXF_CSUM_BLANK,
        status: 60,
    };
    let empty = RxResponse {
        id: 1,
        offset: 0,
        flags: 0,
        status: 0,
    };
    mem.rx_ring.peer_write(sring::RING, &blank.encode());
    mem.rx_ring.peer_write(sring::RING + 8, &empty.encode());
    mem.rx_ring.peer_write_u32(sring::RSP_PROD, 2);
    rig.front.poll(&mut rig.grants).unwrap();
    assert_eq!(rig.received().len(), 0);
    let logs = take_logs();
    let errors = errors(&logs);
    assert_eq!(errors.len(), 2, "{logs:?}");
    assert!(errors[0].contains("NETIF_RSP_NULL"));
    assert!(errors[1].contains("checksum left blank"));
    assert!(logs.iter().any(|r| r.message.contains("empty rx packet")));
    let stats = rig.front.stats();
    assert_eq!((stats.protocol_errors, stats.rx_errors), (2, 2));
    // The request is still in flight; its real answer completes it.
    assert_eq!(rig.front.tx_in_flight(), 1);
    let ok = TxResponse { id: 0, status: 0 };
    mem.tx_ring.peer_write(sring::RING + 12, &ok.encode());
    // The backend answered one request with two responses: the ring catches that.
    mem.tx_ring.peer_write_u32(sring::RSP_PROD, 2);
    assert!(rig.front.poll(&mut rig.grants).is_err());
}

/// Found by the fuzzer: a broken transmit ring must stop the receive ring too, whose posted
/// pages were just taken back.
#[test]
fn a_broken_tx_ring_leaves_the_rx_ring_alone() {
    let mem = Memory::new(2, 8);
    let mut rig = rig(&mem);
    rig.send(&frame(14, 1));
    mem.tx_ring.peer_write_u32(sring::RSP_PROD, 32);
    // A response on the receive ring, in a slot whose page is about to be taken back.
    mem.rx_ring.peer_write_u32(sring::RSP_PROD, 1);
    capture_logs();
    assert!(matches!(
        rig.front.poll(&mut rig.grants),
        Err(RingError::Broken(_))
    ));
    assert_eq!(rig.received().len(), 0);
    assert_eq!((rig.front.tx_in_flight(), rig.front.rx_posted()), (0, 0));
    assert_eq!(rig.grants_in_use(), 2);
    assert_eq!(mem.rx_ring.peer_read_u32(sring::REQ_PROD), 8);
    let logs = take_logs();
    assert!(
        !errors(&logs).iter().any(|e| e.contains("holds no page")),
        "{logs:?}"
    );
}
