//! The receive ring: granted pages kept posted, frames copied out of them.
//!
//! Every free page of the pool is granted writable and posted as a request, as long as the
//! ring has room ([`Rx::refill`]). The backend copies a frame into as many posted pages as it
//! needs and answers each request **in the slot the request occupied** (`netif.h` obliges it:
//! extra-info slots overlay responses and carry no id, so position is the only match Linux or
//! we can use). A request's id is therefore its slot index, and a response whose id is not
//! its slot's is a backend bug, not a different request.
//!
//! For each response slot, in order: the posted page's grant is ended first, then the slot is
//! checked, and only then, if the page is ours again, is its data copied out. A packet is:
//!
//! ```text
//! fragment 1 [NETRXF_extra_info] [NETRXF_more_data]
//! extra-info slots, while XEN_NETIF_EXTRA_FLAG_MORE   (only after fragment 1 with extra_info)
//! fragment 2.. while the previous fragment has NETRXF_more_data
//! ```
//!
//! Extra-info slots are skipped (we negotiate nothing that gives them meaning), but their type
//! is checked. Anything wrong with a slot (an id that is not its slot's, a negative status, an
//! offset and size past the page, a page the backend still maps, a checksum left blank although
//! we asked for none, a packet past [`MAX_FRAME_LEN`] or [`MAX_FRAGMENTS`]) drops its packet:
//! the remaining slots are still consumed and their pages recycled, but no bytes are delivered.
//! A packet may be published in more than one batch; its state is kept across polls.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use ringbolt_shmem::SharedMemory;
use ringbolt_xen_abi::io::netif::{
    NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETRXF_CSUM_BLANK, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA,
    XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_MAX, XEN_NETIF_EXTRA_TYPE_NONE,
    XEN_NETIF_NR_SLOTS_MIN, netif_rx_response,
};
use ringbolt_xen_abi::io::ring::RingIdx;
use ringbolt_xen_abi::{DomId, XEN_PAGE_SIZE};
use ringbolt_xen_grant::{GrantError, GrantTable};
use ringbolt_xen_ring::{FrontRing, RingError};

use crate::pool::{Grant, Pool};
use crate::wire::{ExtraInfo, RxRequest, RxResponse};
use crate::{MAX_FRAME_LEN, Page, Stats, next_response};

/// Fragments one received packet may span: netif's minimum slot count, plus one for a short
/// first fragment (Linux's bound).
pub const MAX_FRAGMENTS: usize = XEN_NETIF_NR_SLOTS_MIN + 1;
/// Extra-info slots one packet may carry: one of each type.
const MAX_EXTRAS: usize = XEN_NETIF_EXTRA_TYPE_MAX as usize - 1;

/// Received frames waiting for [`crate::Netfront::receive`] at most. Past it the ring is left
/// alone until some are taken, so a stack that falls behind bounds our memory and the backend
/// drops what it cannot queue, as a full NIC would.
pub const RX_QUEUE_FRAMES: usize = 64;

/// The packet whose slots are being consumed.
#[derive(Debug, Default)]
struct Packet {
    /// Fragments and extra-info slots consumed so far; both 0 between packets.
    fragments: usize,
    extras: usize,
    /// The bytes so far; `None` once the packet is dropped.
    data: Option<Vec<u8>>,
    /// Extra-info slots come next.
    in_extras: bool,
    /// A fragment follows (after any extra-info slots).
    more: bool,
}

impl Packet {
    fn started(&self) -> bool {
        self.fragments + self.extras > 0
    }

    fn done(&self) -> bool {
        !self.in_extras && !self.more
    }
}

#[derive(Debug)]
pub(crate) struct Rx<M> {
    pub ring: FrontRing<M>,
    pub pool: Pool<M>,
    /// Posted pages, by slot index (the request's id).
    slots: Vec<Option<Grant>>,
    /// Requests pushed and responses consumed: the ring's `req_prod_pvt` and `rsp_cons`.
    prod: RingIdx,
    cons: RingIdx,
    packet: Packet,
    /// Whether the last refill left fewer pages posted than the largest packet needs (too few
    /// pages given, held by the backend, or no grant references): warned once per shortage.
    starved: bool,
}

impl<M: SharedMemory> Rx<M> {
    pub fn new(ring: FrontRing<M>, pages: Vec<Page<M>>) -> Self {
        let size = ring.size() as usize;
        Rx {
            ring,
            pool: Pool::new("rx", pages),
            slots: vec![None; size],
            prod: 0,
            cons: 0,
            packet: Packet::default(),
            starved: false,
        }
    }

    /// Pages posted to the backend.
    pub fn posted(&self) -> usize {
        self.prod.wrapping_sub(self.cons) as usize
    }

    fn index(&self, idx: RingIdx) -> usize {
        (idx & (self.ring.size() - 1)) as usize
    }

    /// Grants and posts free pages while the ring has room (unpublished).
    pub fn refill<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        backend: DomId,
    ) -> Result<(), RingError> {
        while self.ring.free_requests() > 0 {
            let index = self.index(self.prod);
            if self.slots[index].is_some() {
                // The ring says the slot's response was consumed, which takes its page: a bug
                // here. Post nothing over it.
                log::error!("netfront: rx slot {index} still holds a page; refill stopped");
                break;
            }
            let grant = match self.pool.grant(grants, backend, false) {
                Some(Ok(grant)) => grant,
                // Reported below, once, as a shortage.
                None | Some(Err(GrantError::Exhausted)) => break,
                Some(Err(e)) => {
                    log::error!("netfront: granting an rx page: {e}");
                    break;
                }
            };
            let request = RxRequest {
                id: index as u16,
                gref: grant.gref,
            };
            if let Err(e) = self.ring.push_request(&request.encode()) {
                self.pool.release(grants, grant);
                return Err(e);
            }
            self.slots[index] = Some(grant);
            self.prod = self.prod.wrapping_add(1);
        }
        let starved = self.posted() < MAX_FRAGMENTS.min(self.ring.size() as usize);
        if starved && !self.starved {
            log::warn!(
                "netfront: only {} rx pages posted, too few for the largest packets ({} free, \
                 {} held, {} grant references free)",
                self.posted(),
                self.pool.free_count(),
                self.pool.held_count(),
                grants.free_count()
            );
        }
        self.starved = starved;
        Ok(())
    }

    /// Consumes responses into `out`, up to [`RX_QUEUE_FRAMES`] queued frames.
    pub fn consume<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        out: &mut VecDeque<Vec<u8>>,
        stats: &mut Stats,
    ) -> Result<(), RingError> {
        self.pool.retry_held(grants);
        let mut bytes = [0; netif_rx_response::SIZE];
        loop {
            if !self.packet.started() && out.len() >= RX_QUEUE_FRAMES {
                return Ok(());
            }
            if !next_response(&mut self.ring, &mut bytes)? {
                return Ok(());
            }
            let index = self.index(self.cons);
            self.cons = self.cons.wrapping_add(1);
            self.slot(grants, index, &bytes, stats);
            if self.packet.done() {
                let packet = core::mem::take(&mut self.packet);
                match packet.data {
                    Some(data) if data.is_empty() => {
                        stats.rx_errors += 1;
                        log::warn!("netfront: empty rx packet dropped");
                    }
                    Some(data) => {
                        stats.rx_frames += 1;
                        stats.rx_bytes += data.len() as u64;
                        out.push_back(data);
                    }
                    None => {}
                }
            }
        }
    }

    /// One response slot, at ring slot `index`.
    fn slot<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        index: usize,
        bytes: &[u8; netif_rx_response::SIZE],
        stats: &mut Stats,
    ) {
        if !self.packet.started() {
            self.packet.data = Some(Vec::new());
        }
        // The ring only lets the backend answer requests we published, each of which has a
        // page: `None` would be a bug here.
        let ours = match self.slots[index].take() {
            Some(grant) => self.pool.release(grants, grant).then_some(grant.page),
            None => {
                log::error!("netfront: rx slot {index} answered but holds no page");
                None
            }
        };
        if self.packet.in_extras {
            self.packet.extras += 1;
            let extra = ExtraInfo::decode(bytes);
            self.packet.in_extras = extra.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0;
            if extra.kind == XEN_NETIF_EXTRA_TYPE_NONE || extra.kind >= XEN_NETIF_EXTRA_TYPE_MAX {
                self.violation(
                    stats,
                    format_args!("extra-info slot of type {}", extra.kind),
                );
            } else if self.packet.extras > MAX_EXTRAS {
                self.violation(
                    stats,
                    format_args!("more than {MAX_EXTRAS} extra-info slots"),
                );
            }
            return;
        }
        let rsp = RxResponse::decode(bytes);
        let first = self.packet.fragments == 0;
        self.packet.fragments += 1;
        if first {
            self.packet.in_extras = rsp.flags & NETRXF_EXTRA_INFO != 0;
        }
        self.packet.more = rsp.flags & NETRXF_MORE_DATA != 0;
        if rsp.id as usize != index {
            return self.violation(
                stats,
                format_args!("response in slot {index} carries id {}", rsp.id),
            );
        }
        if rsp.status < 0 {
            // An error the backend reports is no violation; a status netif.h lacks is.
            let known = rsp.status == NETIF_RSP_ERROR || rsp.status == NETIF_RSP_DROPPED;
            return self.drop_packet(
                stats,
                !known,
                format_args!("backend failed the fragment (status {})", rsp.status),
            );
        }
        let (offset, size) = (rsp.offset as usize, rsp.status as usize);
        if offset + size > XEN_PAGE_SIZE {
            return self.violation(
                stats,
                format_args!("fragment at {offset} of {size} bytes ends past the page"),
            );
        }
        if first && rsp.flags & NETRXF_CSUM_BLANK != 0 {
            return self.violation(
                stats,
                format_args!("checksum left blank although we wrote feature-no-csum-offload"),
            );
        }
        if self.packet.fragments > MAX_FRAGMENTS {
            return self.violation(stats, format_args!("more than {MAX_FRAGMENTS} fragments"));
        }
        let Some(page) = ours else {
            return self.violation(stats, format_args!("backend still maps the page"));
        };
        let Some(data) = self.packet.data.as_mut() else {
            return;
        };
        let start = data.len();
        if start + size > MAX_FRAME_LEN {
            return self.violation(stats, format_args!("packet longer than {MAX_FRAME_LEN}"));
        }
        data.resize(start + size, 0);
        if let Err(e) = self.pool.mem(page).read_bytes(offset, &mut data[start..]) {
            self.drop_packet(stats, false, format_args!("{e}"));
        }
    }

    /// The backend broke the protocol: the packet is dropped, and the violation counted.
    fn violation(&mut self, stats: &mut Stats, why: fmt::Arguments<'_>) {
        self.drop_packet(stats, true, why);
    }

    /// Drops the current packet; its remaining slots are consumed without reading. Counted
    /// and logged once per packet, with the first reason.
    fn drop_packet(&mut self, stats: &mut Stats, protocol_error: bool, why: fmt::Arguments<'_>) {
        if self.packet.data.take().is_some() {
            stats.rx_errors += 1;
            stats.protocol_errors += u64::from(protocol_error);
            log::error!("netfront: rx packet dropped: {why}");
        }
    }

    /// Ends the grants of every posted page: the ring is broken, no response will come.
    pub fn abandon<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>) {
        for slot in &mut self.slots {
            if let Some(grant) = slot.take() {
                self.pool.release(grants, grant);
            }
        }
        self.packet = Packet::default();
        // Nothing is lent any more; the ring itself is never touched again.
        self.cons = self.prod;
    }
}
