//! The transmit ring: frames copied into granted pages, one request per page.
//!
//! A frame is cut into page-sized fragments, each copied to the start of a free page of the
//! pool and granted read-only; fragments after the first follow with `NETTXF_more_data` on
//! the one before, and the first request carries the whole frame's size (netback checks the
//! sum, and treats a mismatch as fatal). A request's id is an index into our table of
//! requests in flight; netback answers every request, fragment or not, with its own id.
//!
//! A response is believed only if its id names a request in flight: anything else (an id
//! never issued, one already answered, `NETIF_RSP_NULL` when we send no extra-info slots) is
//! logged, counted and dropped, and the table is untouched. The request such a response was
//! presumably meant for stays in flight, its page lent, for the interface's life: a 16-bit id
//! has no room for a generation, so we cannot tell which request it was, and completing one on
//! a guess would hand its page back early. A request's page comes back through
//! [`Pool::release`], so a page the backend still maps is never refilled.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use ringbolt_shmem::SharedMemory;
use ringbolt_xen_abi::io::netif::{
    NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_MORE_DATA,
    netif_tx_response,
};
use ringbolt_xen_abi::{DomId, XEN_PAGE_SIZE};
use ringbolt_xen_grant::GrantTable;
use ringbolt_xen_ring::{FrontRing, RingError};

use crate::pool::{Grant, Pool};
use crate::wire::{TxRequest, TxResponse};
use crate::{Page, Stats, TxError, next_response};

#[derive(Debug)]
pub(crate) struct Tx<M> {
    pub ring: FrontRing<M>,
    pub pool: Pool<M>,
    /// Requests in flight, indexed by id.
    slots: Vec<Option<Grant>>,
    /// Ids not in flight, oldest first: an id is reused as late as possible, so a stray
    /// response to its last use is more likely to find it idle and be caught.
    free_ids: VecDeque<u16>,
}

impl<M: SharedMemory> Tx<M> {
    pub fn new(ring: FrontRing<M>, pages: Vec<Page<M>>) -> Self {
        // At most 256 slots (one page), so every index fits the 16-bit id.
        let size = ring.size() as usize;
        Tx {
            ring,
            pool: Pool::new("tx", pages),
            slots: (0..size).map(|_| None).collect(),
            free_ids: (0..size as u16).collect(),
        }
    }

    /// Requests whose responses have not come back.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free_ids.len()
    }

    /// Whether `fragments` requests fit now: ring slots, ids, pages and grant references.
    pub fn has_room<G: SharedMemory>(&self, grants: &GrantTable<G>, fragments: usize) -> bool {
        fragments <= self.ring.free_requests() as usize
            && fragments <= self.free_ids.len()
            && fragments <= self.pool.free_count()
            && fragments <= grants.free_count()
    }

    /// Copies `frame` into granted pages and pushes its requests (unpublished). The caller
    /// checked its length and [`has_room`](Self::has_room).
    pub fn push<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        backend: DomId,
        frame: &[u8],
    ) -> Result<(), TxError> {
        // Everything that can fail short of the ring itself happens first, so a frame is
        // either wholly on the ring or not at all.
        let mut fragments: Vec<(Grant, &[u8])> = Vec::new();
        for chunk in frame.chunks(XEN_PAGE_SIZE) {
            let copied = match self.pool.grant(grants, backend, true) {
                None => Err(TxError::Busy),
                Some(Err(e)) => Err(TxError::Grant(e)),
                Some(Ok(grant)) => {
                    fragments.push((grant, chunk));
                    write_page(self.pool.mem(grant.page), chunk).map_err(TxError::Page)
                }
            };
            if let Err(e) = copied {
                for (grant, _) in fragments {
                    self.pool.release(grants, grant);
                }
                return Err(e);
            }
        }
        let count = fragments.len();
        for (i, (grant, chunk)) in fragments.into_iter().enumerate() {
            // Room was checked: an id is free. The slot is recorded before the push, so if
            // the ring fails the frontend's teardown still ends the grant.
            let Some(id) = self.free_ids.pop_front() else {
                self.pool.release(grants, grant);
                return Err(TxError::Busy);
            };
            self.slots[id as usize] = Some(grant);
            let request = TxRequest {
                gref: grant.gref,
                offset: 0,
                flags: if i + 1 < count { NETTXF_MORE_DATA } else { 0 },
                id,
                // At most `XEN_NETIF_MAX_TX_SIZE`, checked by the caller.
                size: if i == 0 { frame.len() } else { chunk.len() } as u16,
            };
            self.ring
                .push_request(&request.encode())
                .map_err(TxError::Broken)?;
        }
        Ok(())
    }

    /// Consumes the backend's responses, ending their grants, and retries held pages.
    pub fn collect<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        stats: &mut Stats,
    ) -> Result<(), RingError> {
        self.pool.retry_held(grants);
        let mut bytes = [0; netif_tx_response::SIZE];
        while next_response(&mut self.ring, &mut bytes)? {
            self.complete(grants, stats, TxResponse::decode(&bytes));
        }
        Ok(())
    }

    fn complete<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        stats: &mut Stats,
        rsp: TxResponse,
    ) {
        if rsp.status == NETIF_RSP_NULL {
            stats.protocol_errors += 1;
            log::error!(
                "netfront: tx response {} is NETIF_RSP_NULL, but we send no extra-info \
                 requests; dropped",
                rsp.id
            );
            return;
        }
        let Some(grant) = self.slots.get_mut(rsp.id as usize).and_then(Option::take) else {
            stats.protocol_errors += 1;
            log::error!(
                "netfront: tx response id {} (status {}) matches no request in flight (never \
                 issued, or already answered); dropped",
                rsp.id,
                rsp.status
            );
            return;
        };
        self.free_ids.push_back(rsp.id);
        self.pool.release(grants, grant);
        match rsp.status {
            NETIF_RSP_OKAY => {}
            NETIF_RSP_ERROR | NETIF_RSP_DROPPED => {
                stats.tx_errors += 1;
                log::warn!(
                    "netfront: backend failed tx request {} (status {})",
                    rsp.id,
                    rsp.status
                );
            }
            status => {
                stats.tx_errors += 1;
                stats.protocol_errors += 1;
                log::error!(
                    "netfront: tx response {} has unknown status {status}; counted as failed",
                    rsp.id
                );
            }
        }
    }

    /// Ends the grants of every request in flight: the ring is broken, no response will come.
    pub fn abandon<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>) {
        for id in 0..self.slots.len() {
            if let Some(grant) = self.slots[id].take() {
                self.free_ids.push_back(id as u16);
                self.pool.release(grants, grant);
            }
        }
    }
}

/// Copies `data` to the start of a page, then a write barrier: the bytes must be visible
/// before the request naming the page is published (the ring's own barrier is on another
/// region; on x86 both are the same compiler barrier, this one states the order).
fn write_page(mem: &impl SharedMemory, data: &[u8]) -> Result<(), ringbolt_shmem::OutOfBounds> {
    mem.write_bytes(0, data)?;
    mem.write_barrier();
    Ok(())
}
