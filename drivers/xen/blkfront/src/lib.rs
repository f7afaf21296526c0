//! Xen block frontend (`xen/include/public/io/blkif.h`), sans-I/O.
//!
//! A Xen virtual disk is served by a backend (blkback in dom0, or QEMU's qdisk) over one
//! `io/ring.h` ring of 112-byte slots and one event channel. The frontend grants the backend
//! each data page of a request, describes the transfer as segments (a grant reference and the
//! first and last 512-byte sector of the page), and gets back a response per request: the
//! request's id, its operation and a status. This crate is that protocol and nothing else: the
//! kernel maps pages, makes hypercalls, runs the xenbus handshake and waits for events, and
//! hands the results in through small traits and plain data:
//!
//! - [`SharedMemory`] for the ring page and the indirect-segment pages (our memory the backend
//!   reads), [`GrantTable`] for granting, [`Notify`] for the event channel;
//! - [`Page`] for the caller's data pages: all the frontend needs of one is its frame number;
//! - [`xenbus`] for the xenstore nodes, parsed from and rendered to strings.
//!
//! # Life of a disk
//!
//! 1. [`Setup::new`] initialises the ring and grants it; [`Setup::frontend_keys`] is what the
//!    kernel writes before switching to `XenbusStateInitialised`.
//! 2. When the backend is `Connected`, [`BackendInfo::parse`] reads its nodes and
//!    [`Setup::connect`] yields the [`Blkfront`].
//! 3. [`Blkfront::submit`] reads, writes or flushes; [`Blkfront::poll`], called when the event
//!    channel fires, consumes responses; [`Blkfront::pop_completion`] hands finished I/O back
//!    with its pages.
//!
//! # Requests
//!
//! An I/O is a start sector and a list of [`Segment`]s, each a byte range of one page. The
//! frontend grants every page (read-only for a write: the backend only reads it), then splits
//! the segments into ring requests: up to 11 per `blkif_request`, or, if the backend offers
//! `feature-max-indirect-segments` and the kernel gave us indirect pages, up to that many per
//! `BLKIF_OP_INDIRECT` request whose segment table sits in granted indirect pages. Indirect
//! pages are granted once, read-only, at connect and reused. Every request an I/O needs is
//! checked for room (ring slots, ids, indirect pages, grant references) before the first is
//! built, so a [`SubmitError::Busy`] I/O leaves nothing behind and hands its pages back.
//!
//! # Request ids and a backend we do not trust
//!
//! A request's id is `generation << 32 | slot`: the slot in our table of requests in flight,
//! and a counter bumped for every request sent. A response is accepted only if its id names an
//! occupied slot with the same generation, so a response with an id we never issued, a second
//! response to a completed request (even once its slot is reused), and an id past the table
//! are all detected; they are logged, counted ([`Blkfront::protocol_errors`]) and dropped, and
//! the request table is untouched. A response that names a request in flight but carries the
//! wrong operation, or a status outside `BLKIF_RSP_*`, is logged and counted too, and fails
//! that request ([`IoError::BadOperation`], [`IoError::BadStatus`]): it is the backend's
//! answer to it, just not one we can believe. A backend that breaks the ring itself (an
//! impossible `rsp_prod`, see `ringbolt_xen_ring`) leaves nothing to parse: every request in
//! flight fails with [`IoError::Disconnected`] and the frontend refuses new ones.
//!
//! # Pages come back only when the backend can no longer reach them
//!
//! When a request is answered, or abandoned, its grants are ended with
//! [`GrantTable::end_access`]. If the backend still has a page mapped (it answered early, or
//! broke the ring mid-transfer), ending fails, and the I/O is held: its completion, with its
//! pages, is only handed out once every grant has ended, retried on each [`Blkfront::poll`].
//! A page the backend can still write is never returned to the caller; a backend that never
//! unmaps leaks it, deliberately (Linux's `gnttab_end_foreign_access` defers the page the
//! same way).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod wire;
pub mod xenbus;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use ringbolt_shmem::SharedMemory;
use ringbolt_xen_abi::io::blkif::{
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_INDIRECT_SEGMENTS,
    BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BLKIF_SRING_ENTRY_SIZE, BlkifVdev,
    SECTOR_SIZE, SEGS_PER_INDIRECT_FRAME, blkif_request_segment, blkif_response,
};
use ringbolt_xen_abi::{DomId, EvtchnPort, XEN_PAGE_SIZE};
use ringbolt_xen_grant::{GrantError, GrantRef, GrantTable};
use ringbolt_xen_ring::{Corruption, FrontRing, Notify, RingError};

use wire::{Header, Response, SegmentDesc};
pub use xenbus::{BackendInfo, ConfigError, FrontendKeys};

/// A page of guest memory that a request transfers to or from: the kernel's buffer type.
///
/// The frontend never touches the data; it grants the page by frame number and keeps the
/// value until the backend can no longer reach it, then returns it in a [`Completion`].
pub trait Page {
    /// The frame to grant: the GFN for a PVH/HVM guest, the MFN for a PV guest.
    fn frame(&self) -> u64;
}

/// Bytes `offset..offset + len` of `page`. Both must be multiples of the disk's sector size
/// (so of 512), `len` nonzero, and the range within the page.
#[derive(Debug)]
pub struct Segment<B> {
    pub page: B,
    pub offset: usize,
    pub len: usize,
}

impl<B> Segment<B> {
    /// The whole page.
    pub fn page(page: B) -> Self {
        Segment {
            page,
            offset: 0,
            len: XEN_PAGE_SIZE,
        }
    }
}

/// A page for indirect segment tables: our memory, written through `mem`, granted read-only.
#[derive(Debug)]
pub struct IndirectPage<M> {
    pub mem: M,
    pub frame: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    /// Commit the disk's volatile cache (`BLKIF_OP_FLUSH_DISKCACHE`); no segments.
    Flush,
}

/// Names a submitted I/O in its [`Completion`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IoId(pub u64);

/// How a submitted I/O failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// `BLKIF_RSP_ERROR`.
    Failed,
    /// `BLKIF_RSP_EOPNOTSUPP`. For a flush, later flushes are refused at submit.
    NotSupported,
    /// The backend answered with a status `blkif.h` does not define.
    BadStatus(i16),
    /// The backend answered with an operation other than the request's.
    BadOperation { expected: u8, found: u8 },
    /// The backend broke the ring; the request was abandoned.
    Disconnected,
    /// A page could not be granted; nothing was sent.
    Grant(GrantError),
    /// The request could not be put on the ring (or in its indirect pages).
    NotSent(RingError),
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::Failed => write!(f, "I/O error"),
            IoError::NotSupported => write!(f, "operation not supported by the backend"),
            IoError::BadStatus(s) => write!(f, "backend returned unknown status {s}"),
            IoError::BadOperation { expected, found } => write!(
                f,
                "backend answered operation {found} to a request for operation {expected}"
            ),
            IoError::Disconnected => write!(f, "backend broke the ring"),
            IoError::Grant(e) => write!(f, "{e}"),
            IoError::NotSent(e) => write!(f, "request not sent: {e}"),
        }
    }
}

impl core::error::Error for IoError {}

/// A finished I/O: its result and its pages, which the backend can no longer reach.
#[derive(Debug)]
pub struct Completion<B> {
    pub id: IoId,
    pub operation: Operation,
    pub result: Result<(), IoError>,
    pub segments: Vec<Segment<B>>,
}

/// Why [`Blkfront::submit`] refused an I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The backend does not offer the operation (flush without `feature-flush-cache`).
    Unsupported(Operation),
    /// A read or write without segments, or a flush with some.
    BadSegmentCount,
    /// Segment `index` is empty, not aligned to the sector size, or crosses its page's end.
    BadSegment { index: usize },
    /// Segment `index`'s frame does not fit a v1 grant entry.
    FrameTooLarge { index: usize },
    /// The start sector is not aligned to the sector size.
    Misaligned,
    /// The transfer ends past the disk's last sector.
    OutOfRange,
    /// The I/O needs more requests or indirect pages than this frontend ever has.
    TooLarge,
    /// Not enough free ring slots, indirect pages or grant references now; retry after
    /// completions.
    Busy,
    /// The backend broke the ring.
    Broken(Corruption),
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Unsupported(op) => write!(f, "{op:?} not supported by the backend"),
            SubmitError::BadSegmentCount => {
                write!(f, "reads and writes need segments, flushes take none")
            }
            SubmitError::BadSegment { index } => write!(f, "segment {index} is malformed"),
            SubmitError::FrameTooLarge { index } => {
                write!(f, "segment {index}'s frame cannot be granted")
            }
            SubmitError::Misaligned => write!(f, "start sector not aligned to the sector size"),
            SubmitError::OutOfRange => write!(f, "transfer past the end of the disk"),
            SubmitError::TooLarge => write!(f, "transfer larger than the ring can carry"),
            SubmitError::Busy => write!(f, "no room for the transfer now"),
            SubmitError::Broken(c) => write!(f, "ring broken by the backend: {c}"),
        }
    }
}

impl core::error::Error for SubmitError {}

/// A refused I/O, with its segments handed back untouched.
#[derive(Debug)]
pub struct Rejected<B> {
    pub error: SubmitError,
    pub segments: Vec<Segment<B>>,
}

/// Why setting up or polling the frontend failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    Ring(RingError),
    Grant(GrantError),
    /// The ring region given to [`Setup::new`] is this many bytes, not one page.
    RingNotOnePage(usize),
}

impl From<RingError> for BlkError {
    fn from(e: RingError) -> Self {
        BlkError::Ring(e)
    }
}

impl From<GrantError> for BlkError {
    fn from(e: GrantError) -> Self {
        BlkError::Grant(e)
    }
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkError::Ring(e) => write!(f, "blkif ring: {e}"),
            BlkError::Grant(e) => write!(f, "{e}"),
            BlkError::RingNotOnePage(len) => {
                write!(f, "a blkif ring is one page, not {len:#x} bytes")
            }
        }
    }
}

impl core::error::Error for BlkError {}

/// The frontend before the backend has connected: the ring is initialised and granted.
#[derive(Debug)]
pub struct Setup<M> {
    ring: FrontRing<M>,
    ring_ref: GrantRef,
    backend: DomId,
    handle: BlkifVdev,
}

impl<M: SharedMemory> Setup<M> {
    /// Initialises the blkif ring in `ring` (one page, whose frame is `ring_frame`) and grants
    /// it to the `backend` domain. `handle` is the device's `virtual-device` number (its low
    /// 16 bits, as in Linux), which every request carries.
    ///
    /// The region must be exactly one page: the backend sizes the ring from the pages we
    /// announce, and we announce one (`ring-ref`, no `ring-page-order`).
    pub fn new<G: SharedMemory>(
        grants: &mut GrantTable<G>,
        ring: M,
        ring_frame: u64,
        backend: DomId,
        handle: BlkifVdev,
    ) -> Result<Self, BlkError> {
        if ring.len() != XEN_PAGE_SIZE {
            return Err(BlkError::RingNotOnePage(ring.len()));
        }
        let ring = FrontRing::new(ring, BLKIF_SRING_ENTRY_SIZE)?;
        let ring_ref = grants.grant_access(backend, ring_frame, false)?;
        Ok(Setup {
            ring,
            ring_ref,
            backend,
            handle,
        })
    }

    /// The nodes to write in the frontend's xenstore directory; `event_channel` is the port
    /// the kernel allocated for the backend (`EVTCHNOP_alloc_unbound`).
    pub fn frontend_keys(&self, event_channel: EvtchnPort) -> FrontendKeys {
        FrontendKeys {
            ring_ref: self.ring_ref,
            event_channel,
        }
    }

    /// The backend is connected and published `info`: starts serving I/O. `notify` signals the
    /// event channel. If the backend takes indirect requests, `indirect_pages` (each at least
    /// a page) are granted to it read-only and used for segment tables; otherwise they are
    /// dropped. One indirect page serves one request of up to 512 segments (2 MiB) at a time.
    pub fn connect<G: SharedMemory, B: Page, N: Notify>(
        self,
        grants: &mut GrantTable<G>,
        info: BackendInfo,
        notify: N,
        indirect_pages: Vec<IndirectPage<M>>,
    ) -> Blkfront<M, B, N> {
        let mut indirect = Vec::new();
        if info.max_indirect_segments as usize > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            let total = indirect_pages.len();
            for (i, page) in indirect_pages.into_iter().enumerate() {
                if page.mem.len() < XEN_PAGE_SIZE {
                    log::warn!(
                        "blkfront: indirect page {:#x} smaller than a page, unused",
                        page.frame
                    );
                    continue;
                }
                match grants.grant_access(self.backend, page.frame, true) {
                    Ok(gref) => indirect.push(Indirect { page, gref }),
                    Err(e) => {
                        log::warn!(
                            "blkfront: {} of {total} indirect pages unused: {e}",
                            total - i
                        );
                        break;
                    }
                }
            }
        }
        let max_segments = if indirect.is_empty() {
            BLKIF_MAX_SEGMENTS_PER_REQUEST
        } else {
            (info.max_indirect_segments as usize)
                .min(BLKIF_MAX_INDIRECT_SEGMENTS)
                .min(indirect.len() * SEGS_PER_INDIRECT_FRAME)
        };
        let slots = self.ring.size();
        Blkfront {
            ring: self.ring,
            backend: self.backend,
            handle: self.handle,
            info,
            notify,
            free_indirect: (0..indirect.len()).rev().collect(),
            indirect,
            max_segments,
            parts: (0..slots).map(|_| None).collect(),
            free_parts: (0..slots).rev().collect(),
            generation: 0,
            ios: BTreeMap::new(),
            next_io: 0,
            held: BTreeSet::new(),
            ready: VecDeque::new(),
            protocol_errors: 0,
        }
    }
}

/// An indirect page and its read-only grant, held for the frontend's lifetime.
#[derive(Debug)]
struct Indirect<M> {
    page: IndirectPage<M>,
    gref: GrantRef,
}

/// One ring request in flight: a slot of the request table.
#[derive(Debug)]
struct Part {
    io: IoId,
    generation: u32,
    /// The operation the response must echo (`indirect_op` for an indirect request).
    operation: u8,
    /// Indirect pages (indices into `Blkfront::indirect`) holding its segment table.
    indirect: Vec<usize>,
}

/// A submitted I/O not yet handed back.
#[derive(Debug)]
struct Io<B> {
    operation: Operation,
    segments: Vec<Segment<B>>,
    /// The grant of each segment's page, `None` once ended (or never made).
    grants: Vec<Option<GrantRef>>,
    /// Its ring requests still in flight.
    parts: usize,
    /// The first failure of any of its requests.
    result: Result<(), IoError>,
}

/// A connected block frontend. See the crate documentation.
#[derive(Debug)]
pub struct Blkfront<M, B, N> {
    ring: FrontRing<M>,
    backend: DomId,
    handle: BlkifVdev,
    info: BackendInfo,
    notify: N,
    indirect: Vec<Indirect<M>>,
    free_indirect: Vec<usize>,
    /// Segments one ring request carries at most: 11, or the indirect limit.
    max_segments: usize,
    /// Requests in flight, indexed by the slot half of their id.
    parts: Vec<Option<Part>>,
    free_parts: Vec<u32>,
    /// The generation half of the last id issued.
    generation: u32,
    ios: BTreeMap<IoId, Io<B>>,
    next_io: u64,
    /// Answered I/O whose pages the backend still maps.
    held: BTreeSet<IoId>,
    ready: VecDeque<Completion<B>>,
    protocol_errors: u64,
}

impl<M: SharedMemory, B: Page, N: Notify> Blkfront<M, B, N> {
    /// What the backend published at connect (minus `flush_cache` if a flush came back
    /// `EOPNOTSUPP`).
    pub fn info(&self) -> &BackendInfo {
        &self.info
    }

    /// Segments one ring request carries at most: 11 without indirect requests.
    pub fn max_segments_per_request(&self) -> usize {
        self.max_segments
    }

    /// Submitted I/O not yet returned by [`pop_completion`](Self::pop_completion), whether in
    /// flight, held, or ready.
    pub fn in_flight(&self) -> usize {
        self.ios.len() + self.ready.len()
    }

    /// Responses the backend got wrong so far: ids not in flight, wrong operations, unknown
    /// statuses.
    pub fn protocol_errors(&self) -> u64 {
        self.protocol_errors
    }

    /// How the backend broke the ring, if it did.
    pub fn broken(&self) -> Option<Corruption> {
        self.ring.broken()
    }

    /// The next finished I/O, in the order they finished.
    pub fn pop_completion(&mut self) -> Option<Completion<B>> {
        self.ready.pop_front()
    }

    /// Starts `operation` at `sector` (512-byte units) over `segments`, in order, and
    /// notifies the backend if it asked to be. A flush ignores `sector`.
    ///
    /// Once accepted, the I/O always completes: with the backend's answer, or with an error if
    /// a page could not be granted or the ring broke. Refused I/O gets its segments back.
    pub fn submit<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        operation: Operation,
        sector: u64,
        segments: Vec<Segment<B>>,
    ) -> Result<IoId, Rejected<B>> {
        if let Err(error) = self.check(grants, operation, sector, &segments) {
            return Err(Rejected { error, segments });
        }
        let id = IoId(self.next_io);
        self.next_io += 1;
        let mut io = Io {
            operation,
            grants: vec![None; segments.len()],
            segments,
            parts: 0,
            result: Ok(()),
        };
        for (seg, gref) in io.segments.iter().zip(&mut io.grants) {
            let readonly = operation == Operation::Write;
            match grants.grant_access(self.backend, seg.page.frame(), readonly) {
                Ok(g) => *gref = Some(g),
                Err(e) => {
                    io.result = Err(IoError::Grant(e));
                    break;
                }
            }
        }
        if io.result.is_ok() {
            self.send(id, &mut io, sector);
        }
        let sent = io.parts > 0;
        self.ios.insert(id, io);
        if sent {
            self.publish();
        } else {
            self.finish_io(grants, id);
        }
        Ok(id)
    }

    /// Consumes the backend's responses, completing I/O, and retries ending the grants of
    /// held I/O. Call it when the event channel fires; it leaves `rsp_event` armed, so the
    /// backend notifies us of the next response.
    ///
    /// An error means the ring is unusable: for a broken ring, every request in flight has
    /// been failed with [`IoError::Disconnected`].
    pub fn poll<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>) -> Result<(), BlkError> {
        let held: Vec<IoId> = self.held.iter().copied().collect();
        for id in held {
            self.finish_io(grants, id);
        }
        let mut bytes = [0; blkif_response::SIZE];
        let result = loop {
            match self.ring.take_response(&mut bytes) {
                Ok(true) => self.handle(grants, Response::decode(&bytes)),
                Ok(false) => match self.ring.final_check_for_responses() {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                },
                Err(e) => break Err(e),
            }
        };
        if let Err(RingError::Broken(_)) = result {
            self.abandon_all(grants);
        }
        result.map_err(BlkError::Ring)
    }

    /// Everything that can refuse an I/O, checked before anything is granted or sent.
    fn check<G: SharedMemory>(
        &self,
        grants: &GrantTable<G>,
        operation: Operation,
        sector: u64,
        segments: &[Segment<B>],
    ) -> Result<(), SubmitError> {
        if let Some(c) = self.ring.broken() {
            return Err(SubmitError::Broken(c));
        }
        if operation == Operation::Flush {
            if !self.info.flush_cache {
                return Err(SubmitError::Unsupported(operation));
            }
            if !segments.is_empty() {
                return Err(SubmitError::BadSegmentCount);
            }
            return self.check_room(grants, 1, 0, 0);
        }
        if segments.is_empty() {
            return Err(SubmitError::BadSegmentCount);
        }
        let sector_size = self.info.sector_size as usize;
        let mut bytes: u64 = 0;
        for (index, seg) in segments.iter().enumerate() {
            let end = seg.offset.checked_add(seg.len);
            if seg.len == 0
                || !seg.offset.is_multiple_of(sector_size)
                || !seg.len.is_multiple_of(sector_size)
                || end.is_none_or(|end| end > XEN_PAGE_SIZE)
            {
                return Err(SubmitError::BadSegment { index });
            }
            if u32::try_from(seg.page.frame()).is_err() {
                return Err(SubmitError::FrameTooLarge { index });
            }
            bytes += seg.len as u64;
        }
        if !sector.is_multiple_of((sector_size / SECTOR_SIZE) as u64) {
            return Err(SubmitError::Misaligned);
        }
        let end = sector.checked_add(bytes / SECTOR_SIZE as u64);
        if end.is_none_or(|end| end > self.info.sectors) {
            return Err(SubmitError::OutOfRange);
        }
        let pages = chunks(segments.len(), self.max_segments)
            .map(|c| indirect_pages_for(c.len()))
            .sum();
        let parts = segments.len().div_ceil(self.max_segments);
        self.check_room(grants, parts, pages, segments.len())
    }

    /// Whether `parts` requests using `pages` indirect pages and `refs` grants fit now.
    fn check_room<G: SharedMemory>(
        &self,
        grants: &GrantTable<G>,
        parts: usize,
        pages: usize,
        refs: usize,
    ) -> Result<(), SubmitError> {
        if parts > self.parts.len() || pages > self.indirect.len() {
            return Err(SubmitError::TooLarge);
        }
        if parts > self.free_parts.len()
            || parts > self.ring.free_requests() as usize
            || pages > self.free_indirect.len()
            || refs > grants.free_count()
        {
            return Err(SubmitError::Busy);
        }
        Ok(())
    }

    /// Puts `io`'s requests on the ring (unpublished). Room was checked; a failure can only be
    /// a memory fault, which fails the I/O after the requests already pushed.
    fn send(&mut self, id: IoId, io: &mut Io<B>, sector: u64) {
        if io.operation == Operation::Flush {
            let request = |header| wire::direct(BLKIF_OP_FLUSH_DISKCACHE, header, &[]);
            match self.push(id, BLKIF_OP_FLUSH_DISKCACHE, 0, Vec::new(), request) {
                Ok(()) => io.parts += 1,
                Err(e) => io.result = Err(IoError::NotSent(e)),
            }
            return;
        }
        let operation = match io.operation {
            Operation::Read => BLKIF_OP_READ,
            _ => BLKIF_OP_WRITE,
        };
        let mut sector = sector;
        for chunk in chunks(io.segments.len(), self.max_segments) {
            let descs: Vec<SegmentDesc> = chunk
                .clone()
                .map(|i| {
                    let seg = &io.segments[i];
                    SegmentDesc {
                        // Granted just before, every one: `submit` only sends if all were.
                        gref: io.grants[i].unwrap_or_default(),
                        first_sect: (seg.offset / SECTOR_SIZE) as u8,
                        last_sect: ((seg.offset + seg.len) / SECTOR_SIZE - 1) as u8,
                    }
                })
                .collect();
            let result = if descs.len() <= BLKIF_MAX_SEGMENTS_PER_REQUEST {
                self.push(id, operation, sector, Vec::new(), |header| {
                    wire::direct(operation, header, &descs)
                })
            } else {
                self.push_indirect(id, operation, sector, &descs)
            };
            if let Err(e) = result {
                io.result = Err(IoError::NotSent(e));
                return;
            }
            io.parts += 1;
            let bytes: usize = chunk.map(|i| io.segments[i].len).sum();
            sector += (bytes / SECTOR_SIZE) as u64;
        }
    }

    /// Writes `descs` into free indirect pages and pushes the indirect request naming them.
    fn push_indirect(
        &mut self,
        id: IoId,
        operation: u8,
        sector: u64,
        descs: &[SegmentDesc],
    ) -> Result<(), RingError> {
        let mut pages = Vec::new();
        for table in descs.chunks(SEGS_PER_INDIRECT_FRAME) {
            // Room was checked.
            let Some(page) = self.free_indirect.pop() else {
                break;
            };
            pages.push(page);
            if let Err(e) = write_segment_table(&self.indirect[page].page.mem, table) {
                self.free_indirect.extend(pages);
                return Err(e.into());
            }
        }
        let grefs: Vec<GrantRef> = pages.iter().map(|&p| self.indirect[p].gref).collect();
        debug_assert!(grefs.len() <= BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
        // At most 4096 segments: `max_segments` is capped by BLKIF_MAX_INDIRECT_SEGMENTS.
        let nr_segments = descs.len() as u16;
        self.push(id, operation, sector, pages, |header| {
            wire::indirect(operation, header, nr_segments, &grefs)
        })
    }

    /// Takes a request slot, builds the request for `sector` with the slot's new id and pushes
    /// it as part of I/O `io`; the response must echo `operation`. On failure the slot and the
    /// `indirect` pages are free again.
    fn push(
        &mut self,
        io: IoId,
        operation: u8,
        sector: u64,
        indirect: Vec<usize>,
        build: impl FnOnce(Header) -> wire::Slot,
    ) -> Result<(), RingError> {
        // Room was checked: a slot is free.
        let Some(slot) = self.free_parts.pop() else {
            self.free_indirect.extend(indirect);
            return Err(RingError::Full);
        };
        self.generation = self.generation.wrapping_add(1);
        let header = Header {
            handle: self.handle,
            id: u64::from(self.generation) << 32 | u64::from(slot),
            sector,
        };
        if let Err(e) = self.ring.push_request(&build(header)) {
            self.free_parts.push(slot);
            self.free_indirect.extend(indirect);
            return Err(e);
        }
        self.parts[slot as usize] = Some(Part {
            io,
            generation: self.generation,
            operation,
            indirect,
        });
        Ok(())
    }

    fn publish(&mut self) {
        match self.ring.publish() {
            Ok(true) => self.notify.notify(),
            Ok(false) => {}
            // Only a memory fault; the requests stay pushed and go out with the next publish.
            Err(e) => log::error!("blkfront: publishing requests: {e}"),
        }
    }

    /// One response: matched against the request table, then completes its request.
    fn handle<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>, rsp: Response) {
        let slot = rsp.id as u32 as usize;
        let generation = (rsp.id >> 32) as u32;
        let Some(Some(part)) = self.parts.get(slot) else {
            return self.unknown_id(rsp);
        };
        if part.generation != generation {
            return self.unknown_id(rsp);
        }
        let result = if rsp.operation != part.operation {
            self.protocol_errors += 1;
            log::error!(
                "blkfront: response to request {:#x} has operation {}, expected {}; request failed",
                rsp.id,
                rsp.operation,
                part.operation
            );
            Err(IoError::BadOperation {
                expected: part.operation,
                found: rsp.operation,
            })
        } else {
            match rsp.status {
                BLKIF_RSP_OKAY => Ok(()),
                BLKIF_RSP_ERROR => Err(IoError::Failed),
                BLKIF_RSP_EOPNOTSUPP => {
                    if part.operation == BLKIF_OP_FLUSH_DISKCACHE && self.info.flush_cache {
                        log::warn!("blkfront: backend does not support flush after all; disabled");
                        self.info.flush_cache = false;
                    }
                    Err(IoError::NotSupported)
                }
                status => {
                    self.protocol_errors += 1;
                    log::error!(
                        "blkfront: response to request {:#x} has unknown status {status}; request failed",
                        rsp.id
                    );
                    Err(IoError::BadStatus(status))
                }
            }
        };
        self.finish_part(grants, slot, result);
    }

    fn unknown_id(&mut self, rsp: Response) {
        self.protocol_errors += 1;
        log::error!(
            "blkfront: response id {:#x} (operation {}, status {}) matches no request in flight \
             (never issued, or already completed); dropped",
            rsp.id,
            rsp.operation,
            rsp.status
        );
    }

    /// Retires request `slot` with `result`, finishing its I/O if it was the last request.
    fn finish_part<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        slot: usize,
        result: Result<(), IoError>,
    ) {
        let Some(part) = self.parts.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.free_parts.push(slot as u32);
        self.free_indirect.extend(part.indirect);
        let Some(io) = self.ios.get_mut(&part.io) else {
            return;
        };
        if io.result.is_ok() {
            io.result = result;
        }
        io.parts -= 1;
        if io.parts == 0 {
            self.finish_io(grants, part.io);
        }
    }

    /// Ends the grants of I/O `id`, whose requests are all answered or abandoned, and hands it
    /// out if they all ended; otherwise holds it for the next poll.
    fn finish_io<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>, id: IoId) {
        let Some(io) = self.ios.get_mut(&id) else {
            return;
        };
        let mut still_mapped = 0;
        for slot in &mut io.grants {
            let Some(gref) = *slot else { continue };
            match grants.end_access(gref) {
                Ok(()) => *slot = None,
                Err(GrantError::StillInUse { .. }) => still_mapped += 1,
                Err(e) => {
                    // Not ours to end (a bug elsewhere): nothing to wait for.
                    log::error!("blkfront: ending grant {gref}: {e}");
                    *slot = None;
                }
            }
        }
        if still_mapped > 0 {
            if self.held.insert(id) {
                log::warn!(
                    "blkfront: backend still maps {still_mapped} pages of answered I/O {}; \
                     holding them until it unmaps",
                    id.0
                );
            }
            return;
        }
        self.held.remove(&id);
        if let Some(io) = self.ios.remove(&id) {
            self.ready.push_back(Completion {
                id,
                operation: io.operation,
                result: io.result,
                segments: io.segments,
            });
        }
    }

    /// Fails every request in flight: the ring is broken, no response will come.
    fn abandon_all<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>) {
        let in_flight: Vec<usize> = (0..self.parts.len())
            .filter(|&slot| self.parts[slot].is_some())
            .collect();
        if !in_flight.is_empty() {
            log::warn!(
                "blkfront: ring broken, failing {} requests in flight",
                in_flight.len()
            );
        }
        for slot in in_flight {
            self.finish_part(grants, slot, Err(IoError::Disconnected));
        }
    }
}

/// The segment ranges of an I/O's ring requests, at most `max` segments each.
fn chunks(segments: usize, max: usize) -> impl Iterator<Item = Range<usize>> {
    (0..segments.div_ceil(max)).map(move |i| i * max..((i + 1) * max).min(segments))
}

/// Indirect pages a request of `segments` segments needs (none for a direct request).
fn indirect_pages_for(segments: usize) -> usize {
    if segments <= BLKIF_MAX_SEGMENTS_PER_REQUEST {
        0
    } else {
        segments.div_ceil(SEGS_PER_INDIRECT_FRAME)
    }
}

/// Writes a segment table into an indirect page, then a write barrier: the table must be
/// visible before the request naming it is published (the ring's own barrier is on another
/// region; on x86 both are the same compiler barrier, this one states the order).
fn write_segment_table(
    mem: &impl SharedMemory,
    table: &[SegmentDesc],
) -> Result<(), ringbolt_shmem::OutOfBounds> {
    for (i, desc) in table.iter().enumerate() {
        mem.write_bytes(i * blkif_request_segment::SIZE, &desc.encode())?;
    }
    mem.write_barrier();
    Ok(())
}

#[cfg(test)]
mod tests;
