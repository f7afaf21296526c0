//! Buffer pages lent to the backend one grant at a time, and taken back only when it can no
//! longer reach them.
//!
//! Each ring has its own pool: transmit pages are granted read-only with a frame copied in,
//! receive pages writable for the backend to copy a frame into. Either way a page is granted
//! for one request and its access ended when the response comes back ([`Pool::release`]).
//! If the backend still has the page mapped then, ending fails, and the page is **held**: it
//! is not reused, and its data is not read, until a later [`Pool::retry_held`] ends the grant.
//! A backend that never unmaps leaks the page, deliberately, as Linux's
//! `gnttab_end_foreign_access` does.

use alloc::vec::Vec;

use ringbolt_shmem::SharedMemory;
use ringbolt_xen_abi::{DomId, XEN_PAGE_SIZE};
use ringbolt_xen_grant::{GrantError, GrantRef, GrantTable};

use crate::Page;

/// A page of the pool and the grant lending it to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Index into the pool's pages.
    pub page: usize,
    pub gref: GrantRef,
}

#[derive(Debug)]
pub(crate) struct Pool<M> {
    /// `"tx"` or `"rx"`, for the log.
    name: &'static str,
    pages: Vec<Page<M>>,
    /// Pages neither granted nor held, the next to use last.
    free: Vec<usize>,
    /// Pages whose grant the backend still maps.
    held: Vec<Grant>,
}

impl<M: SharedMemory> Pool<M> {
    /// A pool of the usable `pages`: at least a page long, with a frame a v1 grant entry can
    /// hold. The others are dropped with a warning.
    pub fn new(name: &'static str, pages: Vec<Page<M>>) -> Self {
        let total = pages.len();
        let pages: Vec<Page<M>> = pages
            .into_iter()
            .filter(|p| p.mem.len() >= XEN_PAGE_SIZE && u32::try_from(p.frame).is_ok())
            .collect();
        if pages.len() < total {
            log::warn!(
                "netfront: {} of {total} {name} pages unused: smaller than a page, or a frame \
                 past 32 bits",
                total - pages.len()
            );
        }
        Pool {
            name,
            free: (0..pages.len()).rev().collect(),
            pages,
            held: Vec::new(),
        }
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    pub fn mem(&self, page: usize) -> &M {
        &self.pages[page].mem
    }

    /// Takes a free page and grants it to `backend`; `None` if no page is free.
    pub fn grant<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        backend: DomId,
        readonly: bool,
    ) -> Option<Result<Grant, GrantError>> {
        let page = self.free.pop()?;
        Some(
            match grants.grant_access(backend, self.pages[page].frame, readonly) {
                Ok(gref) => Ok(Grant { page, gref }),
                Err(e) => {
                    self.free.push(page);
                    Err(e)
                }
            },
        )
    }

    /// Ends the backend's access to `grant`'s page. Returns whether the page is ours again: free
    /// for reuse, and safe to read until it is next granted. Otherwise it is held.
    pub fn release<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>, grant: Grant) -> bool {
        match grants.end_access(grant.gref) {
            Ok(()) => {
                self.free.push(grant.page);
                true
            }
            Err(GrantError::NotGranted(_)) => {
                // Our bookkeeping says granted, the table says not: a bug here, but nothing
                // for the backend to still reach.
                log::error!(
                    "netfront: {} page {:#x}: grant {} was already ended",
                    self.name,
                    self.pages[grant.page].frame,
                    grant.gref
                );
                self.free.push(grant.page);
                true
            }
            Err(e) => {
                log::warn!(
                    "netfront: {} page {:#x}: {e}; holding it until the backend unmaps it",
                    self.name,
                    self.pages[grant.page].frame
                );
                self.held.push(grant);
                false
            }
        }
    }

    /// Retries ending the grants of held pages, freeing those the backend has let go of.
    pub fn retry_held<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>) {
        let mut i = 0;
        while i < self.held.len() {
            let grant = self.held[i];
            match grants.end_access(grant.gref) {
                Ok(()) | Err(GrantError::NotGranted(_)) => {
                    self.held.swap_remove(i);
                    self.free.push(grant.page);
                }
                Err(_) => i += 1,
            }
        }
    }
}
