//! Xen shared rings (`xen/include/public/io/ring.h`), front-end side.
//!
//! Block, network and most other split drivers talk over one ring: a 64-byte header with four
//! indices, then a power-of-two array of fixed-size slots, each holding a request (written by
//! the frontend) or, later, the response to some request (written by the backend). The
//! frontend owns `req_prod` and `rsp_event`; the backend owns `rsp_prod` and `req_event`. The
//! region is one or more pages the frontend allocates and grants; the kernel maps it and hands
//! it over as a [`SharedMemory`]. [`FrontRing`] is our half; what a request or response means
//! is the protocol crate's business, so a slot is just bytes here.
//!
//! # Indices
//!
//! As in the console ring, indices are free-running `u32`s: they only increase (wrapping at
//! 2^32) and are masked by the ring size only to address a slot. A request slot is free once
//! its response has been consumed, so the frontend may have at most `size` requests between
//! `rsp_cons` and `req_prod_pvt`, and the backend can never have published more responses
//! than there are requests outstanding.
//!
//! # Trusting the backend as little as possible
//!
//! `rsp_prod` is the only index we read that the backend writes and that decides which slots
//! we read. It is read once per batch and validated before any slot is touched: the number of
//! unconsumed responses may not exceed the number of published requests without a response
//! (which is itself at most the ring size, so this also rejects `RING_RESPONSE_PROD_OVERFLOW`,
//! an index that went backwards, or one that jumped past the ring). A backend that violates it
//! gets the ring declared broken: the error is logged once, and every later call returns
//! [`RingError::Broken`] rather than reading slots that hold no response, or overwriting slots
//! the backend may still be reading. Linux's `blkif_interrupt` does the same (it marks the
//! device `BLKIF_STATE_ERROR`). Indices we own are kept in [`FrontRing`] and only published,
//! so the backend cannot move our side. Each response is copied out of its slot exactly once
//! ([`SharedMemory::read_bytes`]), so the protocol code validates a private copy.
//!
//! # Ordering and notification hold-off (as the `ring.h` macros)
//!
//! - Publishing requests (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`): slots written, **write
//!   barrier**, `req_prod` stored, **full barrier** (the backend sees the new requests before
//!   we read its `req_event`), then notify only if `req_event` lies in the range just
//!   published. The backend sets `req_event` when it goes idle, so a busy backend is not
//!   interrupted for every request.
//! - Consuming responses: `rsp_prod` read, **read barrier** (slots are at least as new as the
//!   index), slots copied. Before sleeping, [`FrontRing::final_check_for_responses`]
//!   (`RING_FINAL_CHECK_FOR_RESPONSES`) sets `rsp_event = rsp_cons + 1`, **full barrier**, and
//!   looks again, so a response published between our last look and the store of `rsp_event`
//!   is not slept through.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "sim"))]
pub mod sim;

use core::fmt;

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use ringbolt_xen_abi::io::ring::{INITIAL_EVENT, RingIdx, const_ring_size, sring};

/// Sends the peer an event: the kernel implements it with `EVTCHNOP_send` on the channel bound
/// to the ring. Protocol drivers call it when a push says the peer asked to be woken.
pub trait Notify {
    fn notify(&self);
}

/// How a backend broke the ring: it published `prod`, which puts more unconsumed messages
/// after our consumer index `cons` than `limit`, the number it could have produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    pub cons: RingIdx,
    pub prod: RingIdx,
    pub limit: RingIdx,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "producer index {:#x} is {} past consumer index {:#x}, but at most {} can be outstanding",
            self.prod,
            self.prod.wrapping_sub(self.cons),
            self.cons,
            self.limit
        )
    }
}

/// Why a ring operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// Every slot holds a request without a consumed response; nothing was written.
    Full,
    /// A message longer than a slot.
    TooLarge { len: usize, slot_size: usize },
    /// The region cannot hold the header and one slot of this size.
    TooSmall { len: usize, slot_size: usize },
    /// The peer published an impossible index; the ring is unusable until it is set up again.
    Broken(Corruption),
    /// An access the region rejected.
    OutOfBounds(OutOfBounds),
}

impl From<OutOfBounds> for RingError {
    fn from(e: OutOfBounds) -> Self {
        RingError::OutOfBounds(e)
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Full => write!(f, "ring full"),
            RingError::TooLarge { len, slot_size } => {
                write!(f, "{len}-byte message does not fit a {slot_size}-byte slot")
            }
            RingError::TooSmall { len, slot_size } => write!(
                f,
                "a {len}-byte region holds no ring of {slot_size}-byte slots"
            ),
            RingError::Broken(c) => write!(f, "ring broken by its peer: {c}"),
            RingError::OutOfBounds(e) => write!(f, "ring region: {e}"),
        }
    }
}

impl core::error::Error for RingError {}

/// Where the slots are: the part of a ring both ends compute the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    slot_size: usize,
    /// Slots, a power of two.
    size: RingIdx,
}

impl Layout {
    fn new(len: usize, slot_size: usize) -> Result<Self, RingError> {
        match const_ring_size(len, slot_size) {
            0 => Err(RingError::TooSmall { len, slot_size }),
            // A region too large for 2^31 slots is not a ring anyone shares; cap rather than
            // wrap the mask.
            size => Ok(Layout {
                slot_size,
                size: size.min(1 << 31) as RingIdx,
            }),
        }
    }

    /// Byte offset of the slot index `idx` addresses.
    fn slot(&self, idx: RingIdx) -> usize {
        sring::RING + (idx & (self.size - 1)) as usize * self.slot_size
    }
}

/// One direction of a ring: its producer index and the event index its consumer sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Direction {
    prod: usize,
    event: usize,
}

const REQUESTS: Direction = Direction {
    prod: sring::REQ_PROD,
    event: sring::REQ_EVENT,
};
const RESPONSES: Direction = Direction {
    prod: sring::RSP_PROD,
    event: sring::RSP_EVENT,
};

/// Our producing end of one direction (requests for a frontend, responses for a backend).
#[derive(Clone, Copy, Debug)]
struct Producer {
    dir: Direction,
    /// Next slot to fill (`req_prod_pvt` / `rsp_prod_pvt`).
    pvt: RingIdx,
    /// The producer index last published.
    published: RingIdx,
}

impl Producer {
    fn new(dir: Direction) -> Self {
        Producer {
            dir,
            pvt: 0,
            published: 0,
        }
    }

    /// Copies `msg` into the next slot; the caller has checked there is room.
    fn push(
        &mut self,
        mem: &impl SharedMemory,
        layout: &Layout,
        msg: &[u8],
    ) -> Result<(), RingError> {
        if msg.len() > layout.slot_size {
            return Err(RingError::TooLarge {
                len: msg.len(),
                slot_size: layout.slot_size,
            });
        }
        mem.write_bytes(layout.slot(self.pvt), msg)?;
        self.pvt = self.pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_*_AND_CHECK_NOTIFY`: publishes the filled slots and says whether the
    /// consumer asked to be notified of them.
    fn publish(&mut self, mem: &impl SharedMemory) -> Result<bool, RingError> {
        let (old, new) = (self.published, self.pvt);
        if old == new {
            return Ok(false);
        }
        mem.write_barrier();
        mem.write_u32(self.dir.prod, new)?;
        self.published = new;
        mem.full_barrier();
        let event = mem.read_u32(self.dir.event)?;
        Ok(new.wrapping_sub(event) < new.wrapping_sub(old))
    }
}

/// Our consuming end of one direction (responses for a frontend, requests for a backend).
#[derive(Clone, Copy, Debug)]
struct Consumer {
    dir: Direction,
    /// Next slot to read (`rsp_cons` / `req_cons`).
    cons: RingIdx,
    /// The peer's producer index as last read and validated: slots before it are ours to read.
    prod: RingIdx,
}

impl Consumer {
    fn new(dir: Direction) -> Self {
        Consumer {
            dir,
            cons: 0,
            prod: 0,
        }
    }

    /// Reads the peer's producer index once and validates it against `limit`, the most
    /// unconsumed messages the peer can have produced. Returns how many are unconsumed.
    fn refresh(&mut self, mem: &impl SharedMemory, limit: RingIdx) -> Result<RingIdx, RingError> {
        let prod = mem.read_u32(self.dir.prod)?;
        let unconsumed = prod.wrapping_sub(self.cons);
        if unconsumed > limit {
            let corruption = Corruption {
                cons: self.cons,
                prod,
                limit,
            };
            log::error!("xen ring: peer broke the ring: {corruption}");
            return Err(RingError::Broken(corruption));
        }
        mem.read_barrier();
        self.prod = prod;
        Ok(unconsumed)
    }

    /// Copies the next message into `dst` and consumes its slot; `false` if there is none.
    /// Reads the producer index only when the batch read last time is used up.
    fn take(
        &mut self,
        mem: &impl SharedMemory,
        layout: &Layout,
        dst: &mut [u8],
        limit: RingIdx,
    ) -> Result<bool, RingError> {
        if dst.len() > layout.slot_size {
            return Err(RingError::TooLarge {
                len: dst.len(),
                slot_size: layout.slot_size,
            });
        }
        if self.cons == self.prod && self.refresh(mem, limit)? == 0 {
            return Ok(false);
        }
        mem.read_bytes(layout.slot(self.cons), dst)?;
        self.cons = self.cons.wrapping_add(1);
        Ok(true)
    }

    /// `RING_FINAL_CHECK_FOR_*`: whether messages are waiting; if none, asks the peer to
    /// notify us of the next one and looks once more.
    fn final_check(&mut self, mem: &impl SharedMemory, limit: RingIdx) -> Result<bool, RingError> {
        if self.refresh(mem, limit)? > 0 {
            return Ok(true);
        }
        mem.write_u32(self.dir.event, self.cons.wrapping_add(1))?;
        mem.full_barrier();
        Ok(self.refresh(mem, limit)? > 0)
    }
}

/// The frontend's half of a shared ring over `mem`: pushes requests, consumes responses.
///
/// There must be only one per ring: it owns `req_prod` and `rsp_event`. Slots are
/// `slot_size` bytes (`sizeof(union NAME_sring_entry)`), the larger of the protocol's request
/// and response.
#[derive(Debug)]
pub struct FrontRing<M> {
    mem: M,
    layout: Layout,
    requests: Producer,
    responses: Consumer,
    broken: Option<Corruption>,
}

impl<M: SharedMemory> FrontRing<M> {
    /// Initialises the shared header on `mem` (`SHARED_RING_INIT`: indices zero, both event
    /// indices one, padding zero) and takes the front end (`FRONT_RING_INIT`). Done before the
    /// ring is granted to the backend, which only ever attaches.
    pub fn new(mem: M, slot_size: usize) -> Result<Self, RingError> {
        let layout = Layout::new(mem.len(), slot_size)?;
        mem.write_u32(sring::REQ_PROD, 0)?;
        mem.write_u32(sring::RSP_PROD, 0)?;
        mem.write_u32(sring::REQ_EVENT, INITIAL_EVENT)?;
        mem.write_u32(sring::RSP_EVENT, INITIAL_EVENT)?;
        mem.write_bytes(sring::PVT, &[0; sring::PVT_SIZE + sring::PAD_SIZE])?;
        Ok(FrontRing {
            mem,
            layout,
            requests: Producer::new(REQUESTS),
            responses: Consumer::new(RESPONSES),
            broken: None,
        })
    }

    /// Slots in the ring (`RING_SIZE`).
    pub fn size(&self) -> RingIdx {
        self.layout.size
    }

    /// Slot size in bytes.
    pub fn slot_size(&self) -> usize {
        self.layout.slot_size
    }

    /// Requests pushed (published or not) whose responses we have not consumed.
    pub fn outstanding(&self) -> RingIdx {
        self.requests.pvt.wrapping_sub(self.responses.cons)
    }

    /// Slots free for requests (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> RingIdx {
        self.layout.size - self.outstanding()
    }

    /// How the backend broke the ring, if it did.
    pub fn broken(&self) -> Option<Corruption> {
        self.broken
    }

    /// Copies `request` into the next free slot. Not visible to the backend until
    /// [`publish`](Self::publish). [`RingError::Full`] if every slot is taken.
    pub fn push_request(&mut self, request: &[u8]) -> Result<(), RingError> {
        self.check_usable()?;
        if self.free_requests() == 0 {
            return Err(RingError::Full);
        }
        self.requests.push(&self.mem, &self.layout, request)
    }

    /// Publishes the pushed requests (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`). Returns whether
    /// the backend must be notified; `false` if it is still working and will see them anyway.
    pub fn publish(&mut self) -> Result<bool, RingError> {
        self.check_usable()?;
        self.requests.publish(&self.mem)
    }

    /// Copies the next unconsumed response (its first `dst.len()` bytes) into `dst` and frees
    /// its slot. `Ok(false)` when the backend has published no more.
    pub fn take_response(&mut self, dst: &mut [u8]) -> Result<bool, RingError> {
        self.check_usable()?;
        let limit = self.published_outstanding();
        let result = self.responses.take(&self.mem, &self.layout, dst, limit);
        self.note(result)
    }

    /// Whether responses are waiting (`RING_FINAL_CHECK_FOR_RESPONSES`); if none, sets
    /// `rsp_event` so the backend notifies us of the next one. Call it after
    /// [`take_response`](Self::take_response) returns `false`, before waiting for an event;
    /// `true` means take more instead.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        self.check_usable()?;
        let limit = self.published_outstanding();
        let result = self.responses.final_check(&self.mem, limit);
        self.note(result)
    }

    /// Published requests whose responses we have not consumed: the most responses the
    /// backend can have published that we have not read.
    fn published_outstanding(&self) -> RingIdx {
        self.requests.published.wrapping_sub(self.responses.cons)
    }

    fn check_usable(&self) -> Result<(), RingError> {
        match self.broken {
            Some(c) => Err(RingError::Broken(c)),
            None => Ok(()),
        }
    }

    /// Remembers a corruption, so the ring stays broken.
    fn note<T>(&mut self, result: Result<T, RingError>) -> Result<T, RingError> {
        if let Err(RingError::Broken(c)) = result {
            self.broken = Some(c);
        }
        result
    }
}

#[cfg(test)]
mod tests;
