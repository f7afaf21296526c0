extern crate std;

use std::vec;
use std::vec::Vec;

use ringbolt_shmem::fake::FakeSharedMemory;
use ringbolt_xen_abi::grant_table::{GTF_PERMIT_ACCESS, GTF_READONLY, grant_entry_v1};
use ringbolt_xen_abi::io::blkif::{BLKIF_RING_SIZE, blkif_request};
use ringbolt_xen_abi::io::ring::sring;
use ringbolt_xen_ring::sim::{LogRecord, capture_logs, take_logs};

use super::*;
use crate::sim::{BAD_STATUS, Blkback, Hostile};

const BACKEND: DomId = 0;
const HANDLE: BlkifVdev = 0xCA00;
const RING_FRAME: u64 = 0x100;
const DATA_FRAME: u64 = 0x1000;
const INDIRECT_FRAME: u64 = 0x8000;
const MIB: usize = 1 << 20;

#[derive(Debug, PartialEq, Eq)]
struct TestPage(u64);

impl Page for TestPage {
    fn frame(&self) -> u64 {
        self.0
    }
}

/// Counts notifications.
type Events = ringbolt_xen_ring::sim::NotifyCounter;

/// The guest memory a test uses: ring page, grant frames, data pages, indirect pages.
struct Memory {
    ring: FakeSharedMemory,
    table: FakeSharedMemory,
    data: Vec<FakeSharedMemory>,
    indirect: Vec<FakeSharedMemory>,
}

impl Memory {
    fn new(data: usize, indirect: usize) -> Self {
        Self::with_table(data, indirect, 2 * XEN_PAGE_SIZE)
    }

    fn with_table(data: usize, indirect: usize, table: usize) -> Self {
        Memory {
            ring: FakeSharedMemory::page(),
            table: FakeSharedMemory::new(table),
            data: (0..data).map(|_| FakeSharedMemory::page()).collect(),
            indirect: (0..indirect).map(|_| FakeSharedMemory::page()).collect(),
        }
    }
}

type Front<'a> = Blkfront<&'a FakeSharedMemory, TestPage, Events>;

/// A frontend connected to a simulated backend over `mem`.
struct Rig<'a> {
    mem: &'a Memory,
    grants: GrantTable<&'a FakeSharedMemory>,
    front: Front<'a>,
    back: Blkback<&'a FakeSharedMemory>,
    events: Events,
}

fn rig(mem: &Memory, disk: usize) -> Rig<'_> {
    rig_with(mem, disk, |b| b)
}

fn rig_with<'a>(
    mem: &'a Memory,
    disk: usize,
    configure: impl FnOnce(Blkback<&'a FakeSharedMemory>) -> Blkback<&'a FakeSharedMemory>,
) -> Rig<'a> {
    let mut grants = GrantTable::new(&mem.table).unwrap();
    let setup = Setup::new(&mut grants, &mem.ring, RING_FRAME, BACKEND, HANDLE).unwrap();
    let mut back = configure(Blkback::new(&mem.ring, &mem.table, BACKEND, vec![0; disk]).unwrap());
    for (i, page) in mem.data.iter().enumerate() {
        back.add_page(DATA_FRAME + i as u64, page);
    }
    for (i, page) in mem.indirect.iter().enumerate() {
        back.add_page(INDIRECT_FRAME + i as u64, page);
    }
    let nodes = back.xenstore();
    let info = BackendInfo::parse(|key| {
        nodes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    })
    .unwrap();
    let events = Events::default();
    let indirect = mem
        .indirect
        .iter()
        .enumerate()
        .map(|(i, page)| IndirectPage {
            mem: page,
            frame: INDIRECT_FRAME + i as u64,
        })
        .collect();
    let front = setup.connect(&mut grants, info, events.clone(), indirect);
    Rig {
        mem,
        grants,
        front,
        back,
        events,
    }
}

/// Whole-page segments over data pages `pages`.
fn pages(pages: impl IntoIterator<Item = usize>) -> Vec<Segment<TestPage>> {
    pages
        .into_iter()
        .map(|i| Segment::page(TestPage(DATA_FRAME + i as u64)))
        .collect()
}

/// 4 KiB of bytes determined by `seed`.
fn pattern(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..XEN_PAGE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

impl<'a> Rig<'a> {
    fn submit(
        &mut self,
        operation: Operation,
        sector: u64,
        segments: Vec<Segment<TestPage>>,
    ) -> IoId {
        match self
            .front
            .submit(&mut self.grants, operation, sector, segments)
        {
            Ok(id) => id,
            Err(r) => panic!("submit refused: {}", r.error),
        }
    }

    fn refuse(
        &mut self,
        operation: Operation,
        sector: u64,
        segments: Vec<Segment<TestPage>>,
    ) -> SubmitError {
        let frames: Vec<u64> = segments.iter().map(|s| s.page.0).collect();
        let rejected = self
            .front
            .submit(&mut self.grants, operation, sector, segments)
            .unwrap_err();
        // The segments come back as they went in.
        assert_eq!(
            rejected
                .segments
                .iter()
                .map(|s| s.page.0)
                .collect::<Vec<_>>(),
            frames
        );
        rejected.error
    }

    /// The backend serves everything, then the frontend polls; returns the completions.
    fn round(&mut self) -> Vec<Completion<TestPage>> {
        self.back.process().unwrap();
        self.front.poll(&mut self.grants).unwrap();
        self.completions()
    }

    fn completions(&mut self) -> Vec<Completion<TestPage>> {
        core::iter::from_fn(|| self.front.pop_completion()).collect()
    }

    fn data(&self, page: usize) -> &FakeSharedMemory {
        &self.mem.data[page]
    }

    /// Grant references free, relative to a fresh table with the ring (and indirect pages)
    /// granted.
    fn free_refs(&self) -> usize {
        self.grants.free_count()
    }
}

fn errors(logs: &[LogRecord]) -> Vec<&str> {
    logs.iter()
        .filter(|r| r.level == log::Level::Error)
        .map(|r| r.message.as_str())
        .collect()
}

#[test]
fn setup_initialises_and_grants_the_ring() {
    let mem = Memory::new(0, 0);
    let mut grants = GrantTable::new(&mem.table).unwrap();
    mem.ring.peer_write(0, &[0xEE; 64]);
    let setup = Setup::new(&mut grants, &mem.ring, RING_FRAME, 5, HANDLE).unwrap();
    let keys = setup.frontend_keys(23);
    assert_eq!(
        keys,
        FrontendKeys {
            ring_ref: 8,
            event_channel: 23
        }
    );
    // Writable, for domain 5, of the ring's frame.
    assert_eq!(
        mem.table.peer_read(8 * grant_entry_v1::SIZE, 8),
        [1, 0, 5, 0, 0x00, 0x01, 0, 0]
    );
    assert_eq!(mem.ring.peer_read_u32(sring::REQ_EVENT), 1);
    assert_eq!(mem.ring.peer_read_u32(sring::REQ_PROD), 0);
}

#[test]
fn setup_wants_exactly_one_ring_page() {
    let mut grants = GrantTable::new(FakeSharedMemory::page()).unwrap();
    for len in [XEN_PAGE_SIZE - 8, 2 * XEN_PAGE_SIZE] {
        let ring = FakeSharedMemory::new(len);
        assert_eq!(
            Setup::new(&mut grants, &ring, RING_FRAME, BACKEND, HANDLE).unwrap_err(),
            BlkError::RingNotOnePage(len)
        );
        assert_eq!(ring.events(), []);
    }
    // Nothing was granted.
    assert_eq!(grants.free_count(), 504);
}

#[test]
fn write_flush_and_read_back_many_requests_in_flight() {
    let mem = Memory::new(128, 0);
    let mut rig = rig(&mem, 4 * MIB);
    let base_refs = rig.free_refs();
    let mut expected = vec![0u8; 4 * MIB];
    // 16 writes of 1 to 13 pages (those over 11 take two requests), the first segment of each
    // starting part-way into its page; all in flight at once.
    let mut ios = Vec::new();
    let (mut page, mut sector) = (0, 0u64);
    for k in 0..16u64 {
        let n = 1 + (k as usize * 5) % 13;
        let mut segs = pages(page..page + n);
        segs[0].offset = 512 * (k as usize % 4);
        segs[0].len = XEN_PAGE_SIZE - segs[0].offset;
        let mut at = sector as usize * 512;
        let mut sums = Vec::new();
        for seg in &segs {
            let i = (seg.page.0 - DATA_FRAME) as usize;
            let data = pattern(i as u64 + 1);
            mem.data[i].peer_write(0, &data);
            let bytes = &data[seg.offset..seg.offset + seg.len];
            expected[at..at + seg.len].copy_from_slice(bytes);
            sums.push(checksum(bytes));
            at += seg.len;
        }
        let id = rig.submit(Operation::Write, sector, segs);
        ios.push((id, page, n, sector, sums));
        page += n;
        // Leave a gap of 3 sectors between writes.
        sector = (at / 512) as u64 + 3;
    }
    assert_eq!(rig.front.in_flight(), 16);
    assert_eq!(rig.free_refs(), base_refs - page);
    let done = rig.round();
    assert_eq!(done.len(), 16);
    for c in &done {
        assert_eq!((c.operation, c.result), (Operation::Write, Ok(())));
    }
    assert_eq!(rig.back.requests(), 18);
    assert_eq!(checksum(rig.back.disk()), checksum(&expected));
    assert_eq!(rig.free_refs(), base_refs);

    let flush = rig.submit(Operation::Flush, 0, Vec::new());
    let done = rig.round();
    assert_eq!((done[0].id, done[0].result), (flush, Ok(())));
    assert_eq!(rig.back.flushes(), 1);

    // Read everything back into wiped pages, all in flight again.
    for m in &mem.data {
        m.peer_write(0, &[0; XEN_PAGE_SIZE]);
    }
    let mut reads = Vec::new();
    for (_, page, n, sector, sums) in &ios {
        let mut segs = pages(*page..*page + n);
        segs[0].offset = 512 * (reads.len() % 4);
        segs[0].len = XEN_PAGE_SIZE - segs[0].offset;
        reads.push((rig.submit(Operation::Read, *sector, segs), sums.clone()));
    }
    let done = rig.round();
    assert_eq!(done.len(), reads.len());
    for (c, (id, sums)) in done.iter().zip(&reads) {
        assert_eq!(
            (c.id, c.operation, c.result),
            (*id, Operation::Read, Ok(()))
        );
        let got: Vec<u64> = c
            .segments
            .iter()
            .map(|s| {
                let i = (s.page.0 - DATA_FRAME) as usize;
                checksum(&rig.data(i).peer_read(s.offset, s.len))
            })
            .collect();
        assert_eq!(&got, sums);
    }
    assert_eq!(rig.free_refs(), base_refs);
    assert_eq!(rig.front.in_flight(), 0);
    assert_eq!(rig.front.protocol_errors(), 0);
    assert!(rig.back.failures().is_empty(), "{:?}", rig.back.failures());
}

#[test]
fn a_direct_request_on_the_wire() {
    let mem = Memory::new(2, 0);
    let mut rig = rig(&mem, MIB);
    let mut segs = pages([0, 1]);
    segs[1].offset = 1024;
    segs[1].len = 1536;
    rig.submit(Operation::Write, 24, segs);
    let slot = mem.ring.peer_read(sring::RING, blkif_request::SIZE);
    assert_eq!(slot[..4], [1, 2, 0x00, 0xCA]);
    // First request: generation 1, slot 0.
    assert_eq!(u64::from_le_bytes(slot[8..16].try_into().unwrap()), 1 << 32);
    assert_eq!(u64::from_le_bytes(slot[16..24].try_into().unwrap()), 24);
    // Grants 9 and 10 (8 is the ring), sectors 0..=7 and 2..=4.
    assert_eq!(
        slot[24..40],
        [9, 0, 0, 0, 0, 7, 0, 0, 10, 0, 0, 0, 2, 4, 0, 0]
    );
    // A write grants its pages read-only.
    let entry = mem.table.peer_read(9 * grant_entry_v1::SIZE, 8);
    assert_eq!(
        u16::from_le_bytes([entry[0], entry[1]]),
        GTF_PERMIT_ACCESS | GTF_READONLY
    );
    assert_eq!(u32::from_le_bytes(entry[4..8].try_into().unwrap()), 0x1000);
    rig.round();
    // A read grants them writable.
    rig.submit(Operation::Read, 24, pages([0]));
    let entry = mem.table.peer_read(10 * grant_entry_v1::SIZE, 2);
    assert_eq!(u16::from_le_bytes([entry[0], entry[1]]), GTF_PERMIT_ACCESS);
}

#[test]
fn splits_large_transfers_into_direct_requests() {
    let mem = Memory::new(30, 0);
    let mut rig = rig(&mem, 2 * MIB);
    assert_eq!(rig.front.max_segments_per_request(), 11);
    for i in 0..30 {
        mem.data[i].peer_write(0, &pattern(i as u64));
    }
    rig.submit(Operation::Write, 16, pages(0..30));
    let done = rig.round();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].result, Ok(()));
    assert_eq!(done[0].segments.len(), 30);
    // 11 + 11 + 8, at consecutive sectors.
    assert_eq!((rig.back.requests(), rig.back.indirect_requests()), (3, 0));
    for i in 0..30 {
        let at = 16 * 512 + i * XEN_PAGE_SIZE;
        assert_eq!(
            rig.back.disk()[at..at + XEN_PAGE_SIZE],
            pattern(i as u64)[..]
        );
    }
    // 33 requests of 11 segments: never fits a 32-slot ring.
    let huge = (0..32 * 11 + 1)
        .map(|i| Segment::page(TestPage(i)))
        .collect();
    assert_eq!(rig.refuse(Operation::Write, 0, huge), SubmitError::TooLarge);
}

#[test]
fn uses_indirect_requests_when_the_backend_offers_them() {
    let mem = Memory::new(600, 4);
    let mut rig = rig_with(&mem, 4 * MIB, |b| b.with_indirect(1024));
    // Capped by what our 4 indirect pages can describe, then by the backend.
    assert_eq!(rig.front.max_segments_per_request(), 1024);
    // Indirect pages are granted read-only, once.
    for gref in 9..13u32 {
        let entry = mem.table.peer_read(gref as usize * grant_entry_v1::SIZE, 2);
        assert_eq!(
            u16::from_le_bytes([entry[0], entry[1]]),
            GTF_PERMIT_ACCESS | GTF_READONLY
        );
    }
    let base_refs = rig.free_refs();
    for i in 0..600 {
        mem.data[i].peer_write(0, &pattern(1000 + i as u64));
    }
    // 600 segments: one indirect request over two indirect pages.
    rig.submit(Operation::Write, 8, pages(0..600));
    // 40: one indirect request, one page. 5: a direct request.
    rig.submit(Operation::Write, 8 + 600 * 8, pages(0..40));
    rig.submit(Operation::Write, 8 + 640 * 8, pages(40..45));
    let done = rig.round();
    assert_eq!(done.len(), 3);
    assert!(done.iter().all(|c| c.result == Ok(())));
    assert_eq!((rig.back.requests(), rig.back.indirect_requests()), (3, 2));
    assert_eq!(rig.free_refs(), base_refs);

    for m in &mem.data {
        m.peer_write(0, &[0; XEN_PAGE_SIZE]);
    }
    rig.submit(Operation::Read, 8, pages(0..600));
    let done = rig.round();
    assert_eq!(done[0].result, Ok(()));
    assert_eq!(rig.back.indirect_requests(), 3);
    for i in 0..600 {
        assert_eq!(
            checksum(&mem.data[i].peer_read(0, XEN_PAGE_SIZE)),
            checksum(&pattern(1000 + i as u64)),
            "page {i}"
        );
    }
    assert!(rig.back.failures().is_empty(), "{:?}", rig.back.failures());
}

#[test]
fn waits_for_indirect_pages_to_come_back() {
    let mem = Memory::new(40, 1);
    let mut rig = rig_with(&mem, MIB, |b| b.with_indirect(32));
    assert_eq!(rig.front.max_segments_per_request(), 32);
    rig.submit(Operation::Write, 0, pages(0..20));
    // The only indirect page is taken; a direct-sized I/O still goes.
    assert_eq!(
        rig.refuse(Operation::Write, 160, pages(20..40)),
        SubmitError::Busy
    );
    rig.submit(Operation::Write, 160, pages(20..25));
    assert_eq!(rig.round().len(), 2);
    rig.submit(Operation::Write, 160, pages(20..40));
    assert_eq!(rig.round()[0].result, Ok(()));
    // More segments than one page describes, in requests of 32: needs more pages than exist.
    assert_eq!(
        rig.refuse(
            Operation::Write,
            0,
            (0..70).map(|i| Segment::page(TestPage(i))).collect()
        ),
        SubmitError::TooLarge
    );
}

#[test]
fn refuses_what_the_disk_or_the_protocol_does_not_allow() {
    let mem = Memory::new(4, 0);
    let mut rig = rig_with(&mem, 64 * 1024, |b| b.with_flush(false));
    let seg = |offset, len| {
        vec![Segment {
            page: TestPage(DATA_FRAME),
            offset,
            len,
        }]
    };
    assert_eq!(
        rig.refuse(Operation::Write, 0, Vec::new()),
        SubmitError::BadSegmentCount
    );
    assert_eq!(
        rig.refuse(Operation::Flush, 0, Vec::new()),
        SubmitError::Unsupported(Operation::Flush)
    );
    for (offset, len) in [(0, 0), (1, 511), (0, 100), (3584, 1024), (usize::MAX, 512)] {
        assert_eq!(
            rig.refuse(Operation::Read, 0, seg(offset, len)),
            SubmitError::BadSegment { index: 0 },
            "{offset}+{len}"
        );
    }
    let mut bad_second = pages(0..2);
    bad_second[1].len = 0;
    assert_eq!(
        rig.refuse(Operation::Read, 0, bad_second),
        SubmitError::BadSegment { index: 1 }
    );
    // 128 sectors: the last page is 120..128.
    assert_eq!(
        rig.refuse(Operation::Read, 121, pages([0])),
        SubmitError::OutOfRange
    );
    assert_eq!(
        rig.refuse(Operation::Read, u64::MAX - 2, pages([0])),
        SubmitError::OutOfRange
    );
    rig.submit(Operation::Read, 120, pages([0]));
    assert_eq!(
        rig.refuse(Operation::Write, 0, vec![Segment::page(TestPage(1 << 32))]),
        SubmitError::FrameTooLarge { index: 0 }
    );
    // Nothing refused left a trace.
    assert_eq!(rig.front.in_flight(), 1);
    assert_eq!(rig.round().len(), 1);
}

#[test]
fn flush_with_segments_is_refused() {
    let mem = Memory::new(1, 0);
    let mut rig = rig(&mem, MIB);
    assert_eq!(
        rig.refuse(Operation::Flush, 0, pages([0])),
        SubmitError::BadSegmentCount
    );
}

#[test]
fn honours_a_4096_byte_logical_sector() {
    let mem = Memory::new(2, 0);
    let mut rig = rig_with(&mem, MIB, |b| b.with_sector_size(4096));
    assert_eq!(rig.front.info().sector_size, 4096);
    let mut half = pages([0]);
    half[0].len = 2048;
    assert_eq!(
        rig.refuse(Operation::Write, 0, half),
        SubmitError::BadSegment { index: 0 }
    );
    assert_eq!(
        rig.refuse(Operation::Write, 4, pages([0])),
        SubmitError::Misaligned
    );
    mem.data[0].peer_write(0, &pattern(4));
    rig.submit(Operation::Write, 8, pages([0]));
    rig.submit(Operation::Read, 8, pages([1]));
    let done = rig.round();
    assert!(done.iter().all(|c| c.result == Ok(())));
    assert_eq!(mem.data[1].peer_read(0, XEN_PAGE_SIZE), pattern(4));
    assert!(rig.back.failures().is_empty(), "{:?}", rig.back.failures());
}

#[test]
fn busy_when_the_ring_or_the_grant_table_is_full() {
    let mem = Memory::new(33, 0);
    let mut rig = rig(&mem, MIB);
    for i in 0..BLKIF_RING_SIZE {
        rig.submit(Operation::Write, i as u64 * 8, pages([i]));
    }
    assert_eq!(
        rig.refuse(Operation::Write, 0, pages([32])),
        SubmitError::Busy
    );
    assert_eq!(rig.round().len(), 32);
    rig.submit(Operation::Write, 0, pages([32]));

    // A table with the ring's grant and two more.
    let small = Memory::with_table(3, 0, 11 * grant_entry_v1::SIZE);
    let mut tiny = rig_with(&small, MIB, |b| b);
    assert_eq!(
        tiny.refuse(Operation::Write, 0, pages(0..3)),
        SubmitError::Busy
    );
    tiny.submit(Operation::Write, 0, pages(0..2));
    assert_eq!(
        tiny.refuse(Operation::Write, 0, pages([2])),
        SubmitError::Busy
    );
    assert_eq!(tiny.round().len(), 1);
    tiny.submit(Operation::Write, 0, pages([2]));
}

#[test]
fn notifies_the_backend_only_when_it_asked() {
    let mem = Memory::new(3, 0);
    let mut rig = rig(&mem, MIB);
    rig.submit(Operation::Write, 0, pages([0]));
    assert_eq!(rig.events.take(), 1);
    // The backend has not looked yet: it will see this one without a kick.
    rig.submit(Operation::Write, 8, pages([1]));
    assert_eq!(rig.events.take(), 0);
    // It serves both, re-arms req_event and answers; our poll re-arms rsp_event.
    assert!(rig.back.process().unwrap());
    rig.front.poll(&mut rig.grants).unwrap();
    assert_eq!(mem.ring.peer_read_u32(sring::RSP_EVENT), 3);
    assert_eq!(rig.completions().len(), 2);
    rig.submit(Operation::Write, 16, pages([2]));
    assert_eq!(rig.events.take(), 1);
}

#[test]
fn a_backend_failure_fails_the_io_and_returns_its_pages() {
    let mem = Memory::new(1, 0);
    let mut rig = rig(&mem, MIB);
    let base_refs = rig.free_refs();
    // A frame the backend cannot find in guest memory.
    rig.submit(Operation::Read, 0, vec![Segment::page(TestPage(0x9999))]);
    let done = rig.round();
    assert_eq!(done[0].result, Err(IoError::Failed));
    assert_eq!(done[0].segments[0].page, TestPage(0x9999));
    assert_eq!(rig.back.failures().len(), 1);
    assert_eq!(rig.free_refs(), base_refs);
    assert_eq!(rig.front.protocol_errors(), 0);
}

#[test]
fn flush_not_supported_after_all_disables_flush() {
    let mem = Memory::new(0, 0);
    // The backend advertises flush but answers EOPNOTSUPP.
    let mut rig = rig(&mem, MIB);
    rig.back = Blkback::new(&mem.ring, &mem.table, BACKEND, vec![0; MIB])
        .unwrap()
        .with_flush(false);
    rig.submit(Operation::Flush, 0, Vec::new());
    capture_logs();
    let done = rig.round();
    assert_eq!(done[0].result, Err(IoError::NotSupported));
    assert!(!rig.front.info().flush_cache);
    assert_eq!(take_logs().len(), 1);
    assert_eq!(
        rig.refuse(Operation::Flush, 0, Vec::new()),
        SubmitError::Unsupported(Operation::Flush)
    );
}

#[test]
fn hostile_ids_never_issued_are_logged_and_dropped() {
    let mem = Memory::new(34, 0);
    let mut rig = rig(&mem, MIB);
    rig.submit(Operation::Write, 0, pages([0]));
    rig.back.set_hostile(Some(Hostile::UnissuedIds));
    capture_logs();
    assert_eq!(rig.round().len(), 0);
    let logs = take_logs();
    assert_eq!(errors(&logs).len(), 1);
    assert!(
        errors(&logs)[0].contains("matches no request in flight"),
        "{logs:?}"
    );
    assert_eq!(rig.front.protocol_errors(), 1);
    assert_eq!(rig.front.broken(), None);
    // The request stays in flight, its slot reserved; everything else works.
    assert_eq!(rig.front.in_flight(), 1);
    rig.back.set_hostile(None);
    for i in 1..BLKIF_RING_SIZE {
        rig.submit(Operation::Write, i as u64 * 8, pages([i]));
    }
    assert_eq!(
        rig.refuse(Operation::Write, 0, pages([33])),
        SubmitError::Busy
    );
    let done = rig.round();
    assert_eq!(done.len(), 31);
    assert!(done.iter().all(|c| c.result == Ok(())));
    assert_eq!(rig.front.protocol_errors(), 1);
}

#[test]
fn hostile_duplicates_never_complete_twice_even_after_the_slot_is_reused() {
    let mem = Memory::new(4, 0);
    let mut rig = rig(&mem, MIB);
    let a = rig.submit(Operation::Write, 0, pages([0]));
    assert_eq!(rig.round()[0].id, a);
    // From now on every second response repeats the one before. B reuses A's slot (with a
    // new generation), and the backend answers it with A's response again.
    rig.back.set_hostile(Some(Hostile::Duplicates));
    capture_logs();
    let b = rig.submit(Operation::Write, 8, pages([1]));
    assert_eq!(rig.round().len(), 0);
    assert_eq!(errors(&take_logs()).len(), 1);
    // Within one batch: C is answered, D gets C's answer a second time.
    let c = rig.submit(Operation::Write, 16, pages([2]));
    let d = rig.submit(Operation::Write, 24, pages([3]));
    let done = rig.round();
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].id, done[0].result), (c, Ok(())));
    assert_eq!(errors(&take_logs()).len(), 1);
    assert_eq!(rig.front.protocol_errors(), 2);
    // B and D were never answered: still in flight, never confused with A or C.
    assert_eq!(rig.front.in_flight(), 2);
    assert!(rig.front.ios.contains_key(&b) && rig.front.ios.contains_key(&d));
}

#[test]
fn hostile_wrong_operation_fails_the_request() {
    let mem = Memory::new(2, 0);
    let mut rig = rig(&mem, MIB);
    let base_refs = rig.free_refs();
    rig.back.set_hostile(Some(Hostile::WrongOperation));
    capture_logs();
    rig.submit(Operation::Write, 0, pages([0]));
    let done = rig.round();
    assert_eq!(
        done[0].result,
        Err(IoError::BadOperation {
            expected: BLKIF_OP_WRITE,
            found: BLKIF_OP_READ
        })
    );
    assert_eq!(errors(&take_logs()).len(), 1);
    assert_eq!(rig.front.protocol_errors(), 1);
    // Its grant ended; the frontend carries on.
    assert_eq!(rig.free_refs(), base_refs);
    rig.back.set_hostile(None);
    rig.submit(Operation::Read, 0, pages([1]));
    assert_eq!(rig.round()[0].result, Ok(()));
}

#[test]
fn hostile_status_out_of_range_fails_the_request() {
    let mem = Memory::new(1, 0);
    let mut rig = rig(&mem, MIB);
    rig.back.set_hostile(Some(Hostile::BadStatus));
    capture_logs();
    rig.submit(Operation::Write, 0, pages([0]));
    assert_eq!(rig.round()[0].result, Err(IoError::BadStatus(BAD_STATUS)));
    let logs = take_logs();
    assert!(errors(&logs)[0].contains("unknown status 7"), "{logs:?}");
    assert_eq!(rig.front.protocol_errors(), 1);
}

#[test]
fn hostile_rsp_prod_past_the_ring_fails_everything_in_flight() {
    let mem = Memory::new(4, 0);
    let mut rig = rig(&mem, MIB);
    let base_refs = rig.free_refs();
    let ids: Vec<IoId> = (0..3)
        .map(|i| rig.submit(Operation::Write, i * 8, pages([i as usize])))
        .collect();
    rig.back.set_hostile(Some(Hostile::RspProdPastRing));
    capture_logs();
    rig.back.process().unwrap();
    assert!(matches!(
        rig.front.poll(&mut rig.grants),
        Err(BlkError::Ring(RingError::Broken(_)))
    ));
    let logs = take_logs();
    assert_eq!(errors(&logs).len(), 1, "{logs:?}");
    let done = rig.completions();
    assert_eq!(done.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
    assert!(done.iter().all(|c| c.result == Err(IoError::Disconnected)));
    // The backend had unmapped: every page is back, every grant ended.
    assert_eq!(rig.free_refs(), base_refs);
    assert!(rig.front.broken().is_some());
    assert!(matches!(
        rig.refuse(Operation::Write, 0, pages([3])),
        SubmitError::Broken(_)
    ));
    assert!(rig.front.poll(&mut rig.grants).is_err());
}

#[test]
fn pages_the_backend_still_maps_are_held_until_it_unmaps() {
    let mem = Memory::new(3, 0);
    let mut rig = rig(&mem, MIB);
    let base_refs = rig.free_refs();
    rig.back.set_hostile(Some(Hostile::KeepMapped));
    capture_logs();
    let a = rig.submit(Operation::Read, 0, pages([0, 1]));
    // Answered, but the pages are still mapped: no completion, grants stay.
    assert_eq!(rig.round().len(), 0);
    let logs = take_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, log::Level::Warn);
    assert_eq!(rig.front.in_flight(), 1);
    assert_eq!(rig.free_refs(), base_refs - 2);
    assert!(rig.grants.is_granted(9) && rig.grants.is_granted(10));
    // A new I/O gets other references.
    rig.back.set_hostile(None);
    rig.submit(Operation::Read, 0, pages([2]));
    let slot = mem
        .ring
        .peer_read(sring::RING + blkif_request::SIZE, blkif_request::SIZE);
    assert_eq!(slot[24..28], [11, 0, 0, 0]);
    assert_eq!(rig.round().len(), 1);
    // Still held, polls later retry quietly.
    rig.front.poll(&mut rig.grants).unwrap();
    assert_eq!(rig.completions().len(), 0);
    assert_eq!(take_logs(), []);
    // Unmapped: handed back with the backend's answer.
    rig.back.unmap_all();
    rig.front.poll(&mut rig.grants).unwrap();
    let done = rig.completions();
    assert_eq!((done[0].id, done[0].result), (a, Ok(())));
    assert_eq!(done[0].segments.len(), 2);
    assert_eq!(rig.free_refs(), base_refs);
}

#[test]
fn a_broken_ring_still_holds_pages_the_backend_maps() {
    let mem = Memory::new(2, 0);
    let mut rig = rig(&mem, MIB);
    let base_refs = rig.free_refs();
    rig.back.set_hostile(Some(Hostile::KeepMapped));
    capture_logs();
    let a = rig.submit(Operation::Write, 0, pages([0]));
    // Answered, held: its page is still mapped.
    assert_eq!(rig.round().len(), 0);
    rig.back.set_hostile(Some(Hostile::RspProdPastRing));
    let b = rig.submit(Operation::Write, 8, pages([1]));
    rig.back.process().unwrap();
    // B's response is hidden behind the broken index: B is abandoned (its page is not
    // mapped, so it comes back at once); A stays held.
    assert!(rig.front.poll(&mut rig.grants).is_err());
    let done = rig.completions();
    assert_eq!(
        (done.len(), done[0].id, done[0].result),
        (1, b, Err(IoError::Disconnected))
    );
    assert_eq!(rig.free_refs(), base_refs - 1);
    rig.back.unmap_all();
    assert!(rig.front.poll(&mut rig.grants).is_err());
    let done = rig.completions();
    assert_eq!((done[0].id, done[0].result), (a, Ok(())));
    assert_eq!(rig.free_refs(), base_refs);
    assert_eq!(rig.front.in_flight(), 0);
    let _ = take_logs();
}
