//! A simulated blkback for host tests: the backend end of the ring, a disk in a `Vec<u8>`,
//! and Xen's grant checks, so the real frontend can be driven end to end.
//!
//! [`Blkback`] shares the ring page with the frontend, reads the frontend's grant table
//! through [`ringbolt_xen_grant::sim`] (so a grant with the wrong domain or permission fails
//! the request as Xen would fail the mapping, and a mapping sets `GTF_reading`/`GTF_writing`
//! as Xen does), and reaches guest pages through a table of frame numbers the test fills in.
//! It honours reads, writes, flushes and indirect requests, checks what blkback checks
//! (segment bounds, sector alignment, the disk's end), and can misbehave in the ways a
//! hostile backend would ([`Hostile`]).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use ringbolt_shmem::SharedMemory;
use ringbolt_xen_abi::DomId;
use ringbolt_xen_abi::grant_table::GrantRef;
use ringbolt_xen_abi::io::blkif::{
    BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ,
    BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BLKIF_SRING_ENTRY_SIZE,
    SECTOR_SIZE, SEGS_PER_INDIRECT_FRAME, blkif_request, blkif_request_indirect,
    blkif_request_segment,
};
use ringbolt_xen_grant::sim::{map, unmap};
use ringbolt_xen_ring::RingError;
use ringbolt_xen_ring::sim::BackRing;

use crate::wire::{Response, SegmentDesc, array, u32_at};

/// Ways the backend misbehaves, applied to every response while set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// Responses carry ids the frontend never issued (the real id, bitwise inverted).
    UnissuedIds,
    /// Every second response repeats the one before instead of answering its own request.
    Duplicates,
    /// After publishing responses, `rsp_prod` jumps past the ring.
    RspProdPastRing,
    /// Responses carry the wrong operation code.
    WrongOperation,
    /// Responses carry a status outside `BLKIF_RSP_*`.
    BadStatus,
    /// Data pages stay mapped after the response, until [`Blkback::unmap_all`].
    KeepMapped,
}

/// The status [`Hostile::BadStatus`] answers with.
pub const BAD_STATUS: i16 = 7;

/// A blkback over a `Vec<u8>` disk. See the module documentation.
#[derive(Debug)]
pub struct Blkback<M> {
    ring: BackRing<M>,
    /// The frontend's grant table.
    grants: M,
    /// Our own domain id, the grantee of every grant.
    domid: DomId,
    /// Guest frames we can reach once granted.
    memory: BTreeMap<u64, M>,
    disk: Vec<u8>,
    sector_size: u32,
    flush_cache: bool,
    max_indirect_segments: u32,
    hostile: Option<Hostile>,
    /// Grants left mapped by [`Hostile::KeepMapped`].
    mapped: Vec<GrantRef>,
    last_response: Option<Response>,
    responses: u64,
    requests: usize,
    indirect_requests: usize,
    flushes: usize,
    failures: Vec<String>,
}

impl<M: SharedMemory> Blkback<M> {
    /// Attaches to the ring in `ring` as domain `domid`, serving `disk` (a multiple of the
    /// sector size) with 512-byte sectors, flush, and no indirect requests.
    pub fn new(ring: M, grants: M, domid: DomId, disk: Vec<u8>) -> Result<Self, RingError> {
        Ok(Blkback {
            ring: BackRing::attach(ring, BLKIF_SRING_ENTRY_SIZE)?,
            grants,
            domid,
            memory: BTreeMap::new(),
            disk,
            sector_size: SECTOR_SIZE as u32,
            flush_cache: true,
            max_indirect_segments: 0,
            hostile: None,
            mapped: Vec::new(),
            last_response: None,
            responses: 0,
            requests: 0,
            indirect_requests: 0,
            flushes: 0,
            failures: Vec::new(),
        })
    }

    /// Logical sector size to publish and enforce.
    pub fn with_sector_size(mut self, bytes: u32) -> Self {
        self.sector_size = bytes;
        self
    }

    /// Whether flushes are offered and honoured (answered `EOPNOTSUPP` if not).
    pub fn with_flush(mut self, flush: bool) -> Self {
        self.flush_cache = flush;
        self
    }

    /// Offers indirect requests of up to `segments` segments (0: none).
    pub fn with_indirect(mut self, segments: u32) -> Self {
        self.max_indirect_segments = segments;
        self
    }

    /// Makes guest frame `frame` reachable as `page`.
    pub fn add_page(&mut self, frame: u64, page: M) {
        self.memory.insert(frame, page);
    }

    /// The nodes a blkback writes in its xenstore directory.
    pub fn xenstore(&self) -> Vec<(&'static str, String)> {
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        let mut nodes = vec![
            ("sectors", (self.disk.len() / SECTOR_SIZE).to_string()),
            ("sector-size", self.sector_size.to_string()),
            ("physical-sector-size", self.sector_size.to_string()),
            ("feature-flush-cache", flag(self.flush_cache)),
            ("feature-barrier", flag(false)),
            ("feature-persistent", flag(false)),
        ];
        if self.max_indirect_segments > 0 {
            nodes.push((
                "feature-max-indirect-segments",
                self.max_indirect_segments.to_string(),
            ));
        }
        nodes
    }

    pub fn set_hostile(&mut self, hostile: Option<Hostile>) {
        self.hostile = hostile;
    }

    pub fn disk(&self) -> &[u8] {
        &self.disk
    }

    /// Requests served so far (direct, indirect, flush or unknown).
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// Of which `BLKIF_OP_INDIRECT`.
    pub fn indirect_requests(&self) -> usize {
        self.indirect_requests
    }

    /// Flushes honoured.
    pub fn flushes(&self) -> usize {
        self.flushes
    }

    /// Why requests were answered `BLKIF_RSP_ERROR`, oldest first.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// Unmaps what [`Hostile::KeepMapped`] kept mapped.
    pub fn unmap_all(&mut self) {
        for gref in self.mapped.drain(..) {
            // The entry was mapped by us; unmapping it cannot fail on a table that maps.
            let _ = unmap(&self.grants, gref);
        }
    }

    /// Serves every request published, answers them, publishes the answers. Returns whether
    /// the frontend must be notified.
    pub fn process(&mut self) -> Result<bool, RingError> {
        let mut notify = false;
        loop {
            let mut request = [0; BLKIF_SRING_ENTRY_SIZE];
            while self.ring.take_request(&mut request)? {
                self.requests += 1;
                let response = self.serve(&request);
                self.respond(response)?;
            }
            notify |= self.ring.publish()?;
            if self.hostile == Some(Hostile::RspProdPastRing) {
                let past = self.ring.rsp_prod().wrapping_add(self.ring.size() + 5);
                self.ring
                    .force_rsp_prod(past)
                    .map_err(RingError::OutOfBounds)?;
                notify = true;
            }
            if !self.ring.final_check_for_requests()? {
                return Ok(notify);
            }
        }
    }

    /// Pushes `response`, as the hostile mode bends it.
    fn respond(&mut self, mut response: Response) -> Result<(), RingError> {
        let honest = response;
        match self.hostile {
            Some(Hostile::UnissuedIds) => response.id = !response.id,
            Some(Hostile::Duplicates) if self.responses % 2 == 1 => {
                response = self.last_response.unwrap_or(response);
            }
            Some(Hostile::WrongOperation) => response.operation ^= 1,
            Some(Hostile::BadStatus) => response.status = BAD_STATUS,
            _ => {}
        }
        self.responses += 1;
        self.last_response = Some(honest);
        self.ring.push_response(&response.encode())
    }

    /// One request's response.
    fn serve(&mut self, request: &[u8; BLKIF_SRING_ENTRY_SIZE]) -> Response {
        let operation = request[blkif_request::OPERATION];
        let id = u64::from_le_bytes(array(request, blkif_request::ID));
        let (operation, status) = match operation {
            BLKIF_OP_READ | BLKIF_OP_WRITE => (operation, self.direct(operation, request)),
            BLKIF_OP_INDIRECT => {
                self.indirect_requests += 1;
                let inner = request[blkif_request_indirect::INDIRECT_OP];
                (inner, self.indirect(inner, request))
            }
            BLKIF_OP_FLUSH_DISKCACHE if self.flush_cache => {
                self.flushes += 1;
                (operation, Ok(BLKIF_RSP_OKAY))
            }
            _ => (operation, Ok(BLKIF_RSP_EOPNOTSUPP)),
        };
        let status = status.unwrap_or_else(|why| {
            self.failures.push(why);
            BLKIF_RSP_ERROR
        });
        Response {
            id,
            operation,
            status,
        }
    }

    fn direct(&mut self, operation: u8, request: &[u8]) -> Result<i16, String> {
        let nr = request[blkif_request::NR_SEGMENTS] as usize;
        if nr == 0 || nr > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            return Err(format!("{nr} segments in a direct request"));
        }
        let segments: Vec<SegmentDesc> = request[blkif_request::SEG..]
            .chunks_exact(blkif_request_segment::SIZE)
            .take(nr)
            .map(|b| SegmentDesc::decode(&array(b, 0)))
            .collect();
        let sector = u64::from_le_bytes(array(request, blkif_request::SECTOR_NUMBER));
        self.transfer(operation, sector, &segments)
    }

    fn indirect(&mut self, operation: u8, request: &[u8]) -> Result<i16, String> {
        let nr = u16::from_le_bytes(array(request, blkif_request_indirect::NR_SEGMENTS)) as usize;
        if self.max_indirect_segments == 0 {
            return Ok(BLKIF_RSP_EOPNOTSUPP);
        }
        if nr == 0 || nr > self.max_indirect_segments as usize {
            return Err(format!("{nr} segments in an indirect request"));
        }
        if operation != BLKIF_OP_READ && operation != BLKIF_OP_WRITE {
            return Err(format!("indirect operation {operation}"));
        }
        let mut segments = Vec::with_capacity(nr);
        for index in 0..nr.div_ceil(SEGS_PER_INDIRECT_FRAME) {
            let gref = u32_at(request, blkif_request_indirect::INDIRECT_GREFS + 4 * index);
            let frame = map(&self.grants, gref, self.domid, false)
                .map_err(|e| format!("indirect grant {gref}: {e}"))?;
            let count = (nr - index * SEGS_PER_INDIRECT_FRAME).min(SEGS_PER_INDIRECT_FRAME);
            let mut table = vec![0; count * blkif_request_segment::SIZE];
            let read = page(&self.memory, u64::from(frame))
                .and_then(|mem| mem.read_bytes(0, &mut table).map_err(|e| e.to_string()));
            let _ = unmap(&self.grants, gref);
            read?;
            segments.extend(
                table
                    .chunks_exact(blkif_request_segment::SIZE)
                    .map(|b| SegmentDesc::decode(&array(b, 0))),
            );
        }
        let sector = u64::from_le_bytes(array(request, blkif_request_indirect::SECTOR_NUMBER));
        self.transfer(operation, sector, &segments)
    }

    /// Copies between the disk at `sector` and the granted pages of `segments`, in order.
    fn transfer(
        &mut self,
        operation: u8,
        sector: u64,
        segments: &[SegmentDesc],
    ) -> Result<i16, String> {
        let sector_size = self.sector_size as usize;
        let mut at = usize::try_from(sector)
            .ok()
            .and_then(|s| s.checked_mul(SECTOR_SIZE))
            .ok_or("sector number overflows")?;
        if !at.is_multiple_of(sector_size) {
            return Err(format!("sector {sector} not aligned to {sector_size}"));
        }
        let to_guest = operation == BLKIF_OP_READ;
        for seg in segments {
            if seg.first_sect > seg.last_sect || seg.last_sect as usize >= 4096 / SECTOR_SIZE {
                return Err(format!(
                    "segment sectors {}..={}",
                    seg.first_sect, seg.last_sect
                ));
            }
            let offset = seg.first_sect as usize * SECTOR_SIZE;
            let len = (seg.last_sect - seg.first_sect + 1) as usize * SECTOR_SIZE;
            if !offset.is_multiple_of(sector_size) || !len.is_multiple_of(sector_size) {
                return Err(format!(
                    "segment {offset}+{len} not aligned to {sector_size}"
                ));
            }
            let end = at + len;
            if end > self.disk.len() {
                return Err(format!("transfer to byte {end} past the disk's end"));
            }
            let frame = map(&self.grants, seg.gref, self.domid, to_guest)
                .map_err(|e| format!("grant {}: {e}", seg.gref))?;
            let copied = page(&self.memory, u64::from(frame)).and_then(|mem| {
                let result = if to_guest {
                    mem.write_bytes(offset, &self.disk[at..end])
                } else {
                    mem.read_bytes(offset, &mut self.disk[at..end])
                };
                result.map_err(|e| e.to_string())
            });
            if self.hostile == Some(Hostile::KeepMapped) {
                self.mapped.push(seg.gref);
            } else {
                let _ = unmap(&self.grants, seg.gref);
            }
            copied?;
            at = end;
        }
        Ok(BLKIF_RSP_OKAY)
    }
}

/// Guest frame `frame`, if the test made it reachable.
fn page<M>(memory: &BTreeMap<u64, M>, frame: u64) -> Result<&M, String> {
    memory
        .get(&frame)
        .ok_or_else(|| format!("frame {frame:#x} is not guest memory"))
}
