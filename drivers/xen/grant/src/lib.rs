//! Xen grant tables, version 1, granting side (`xen/include/public/grant_table.h`).
//!
//! A frontend lets its backend reach a page of ours by writing an entry into our grant table
//! and handing over the entry's index, the grant reference. The table lives in frames we share
//! with Xen (set up by the kernel with `GNTTABOP_setup_table` or `XENMAPSPACE_grant_table`),
//! reached here as one [`SharedMemory`] region of one or more pages. [`GrantTable`] allocates
//! references and fills and clears entries; which page to grant, and when, is the caller's.
//!
//! # Granting (the header's "introducing a valid entry")
//!
//! `domid` and `frame` are stored first, then a **write barrier**, then `flags`: Xen validates
//! an entry by its flags, so it must never see `GTF_permit_access` next to a stale domain or
//! frame.
//!
//! # Ending access, and why it can fail
//!
//! While the grantee has the page mapped, Xen keeps `GTF_reading` (and, for a writable mapping,
//! `GTF_writing`) set in the entry's flags. Ending access while a mapping exists is impossible:
//! Xen does not revoke it, so a backend could go on writing a page we had handed back to the
//! allocator. [`GrantTable::end_access`] therefore does what Linux's
//! `gnttab_end_foreign_access_ref_v1` does: read the entry, refuse if either bit is set, and
//! clear the flags with one compare-and-exchange of the 32-bit `flags`/`domid` word that
//! succeeds only if Xen has not changed it in between (Xen updates the same word with a
//! compare-and-exchange when it maps, so one of the two loses and sees the other's value). On
//! refusal the reference stays allocated and the entry granted: the caller keeps the page out
//! of reuse and retries later, or leaks it deliberately. Nothing is ever freed that the peer
//! can still reach.
//!
//! # The allocator
//!
//! References are handed out from a LIFO free list kept in our own memory, never in the shared
//! frames: a recently freed entry is reused first, which the block protocol recommends so a
//! backend's cache of persistently mapped grants stays warm. The first
//! [`GNTTAB_NR_RESERVED_ENTRIES`] are never handed out: the toolstack may have filled them in
//! (0 is the console ring, 1 the xenstore ring). A bitmap of the references handed out lets
//! [`GrantTable::end_access`] reject a reference we never granted, or one already ended,
//! instead of clearing an entry somebody else owns.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use ringbolt_xen_abi::DomId;
use ringbolt_xen_abi::grant_table::{
    GNTTAB_NR_RESERVED_ENTRIES, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING,
    grant_entry_v1,
};

pub use ringbolt_xen_abi::grant_table::GrantRef;

/// Attempts at the compare-and-exchange in [`GrantTable::end_access`] before reporting the
/// entry busy. Each failure means Xen changed the entry between our read and our exchange,
/// that is, it was mapping or unmapping it; a peer that keeps doing so is using the page.
const END_ACCESS_ATTEMPTS: usize = 8;

/// Why a grant operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// Every reference is in use.
    Exhausted,
    /// A version-1 entry holds a 32-bit frame number.
    FrameTooLarge(u64),
    /// The grantee has the page mapped (`flags` as last read); access was not ended and the
    /// reference is still allocated.
    StillInUse { gref: GrantRef, flags: u16 },
    /// The reference is reserved, out of range, or not currently granted by this table.
    NotGranted(GrantRef),
    /// The region holds no entry past the reserved ones.
    TooSmall { len: usize },
    /// An access the region rejected.
    OutOfBounds(OutOfBounds),
}

impl From<OutOfBounds> for GrantError {
    fn from(e: OutOfBounds) -> Self {
        GrantError::OutOfBounds(e)
    }
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantError::Exhausted => write!(f, "no free grant references"),
            GrantError::FrameTooLarge(frame) => {
                write!(f, "frame {frame:#x} does not fit a v1 grant entry")
            }
            GrantError::StillInUse { gref, flags } => write!(
                f,
                "grant {gref} still mapped by its grantee (flags {flags:#x})"
            ),
            GrantError::NotGranted(gref) => write!(f, "grant {gref} is not granted by us"),
            GrantError::TooSmall { len } => {
                write!(f, "a {len}-byte grant table has no usable entries")
            }
            GrantError::OutOfBounds(e) => write!(f, "grant table: {e}"),
        }
    }
}

impl core::error::Error for GrantError {}

/// Our grant table over the shared grant frames `mem`. There must be only one per domain.
#[derive(Debug)]
pub struct GrantTable<M> {
    mem: M,
    /// Free references, the next to hand out last.
    free: Vec<GrantRef>,
    /// One bit per entry: set while the reference is granted.
    granted: Vec<u64>,
}

impl<M: SharedMemory> GrantTable<M> {
    /// Takes over the table in `mem`, every entry past the reserved ones free.
    ///
    /// Assumes no entry past the reserved ones is in use, as after `GNTTABOP_setup_table` on
    /// a fresh domain; it does not clear them.
    pub fn new(mem: M) -> Result<Self, GrantError> {
        let len = mem.len();
        let capacity = GrantRef::try_from(len / grant_entry_v1::SIZE).unwrap_or(GrantRef::MAX);
        if capacity <= GNTTAB_NR_RESERVED_ENTRIES {
            return Err(GrantError::TooSmall { len });
        }
        Ok(GrantTable {
            mem,
            free: (GNTTAB_NR_RESERVED_ENTRIES..capacity).rev().collect(),
            granted: vec![0; (capacity as usize).div_ceil(64)],
        })
    }

    /// Entries in the table, reserved ones included.
    pub fn capacity(&self) -> usize {
        self.mem.len() / grant_entry_v1::SIZE
    }

    /// References available to [`grant_access`](Self::grant_access).
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Whether `gref` is currently granted by this table.
    pub fn is_granted(&self, gref: GrantRef) -> bool {
        let (word, bit) = (gref as usize / 64, gref % 64);
        self.granted.get(word).is_some_and(|w| w & 1 << bit != 0)
    }

    /// Lets domain `domid` access `frame` (a GFN for a translated guest, an MFN for PV), for
    /// reading only if `readonly`. Returns the reference to hand to the grantee.
    pub fn grant_access(
        &mut self,
        domid: DomId,
        frame: u64,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let frame32 = u32::try_from(frame).map_err(|_| GrantError::FrameTooLarge(frame))?;
        let gref = self.free.pop().ok_or(GrantError::Exhausted)?;
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        if let Err(e) = self.write_entry(gref, domid, frame32, flags) {
            self.free.push(gref);
            return Err(e.into());
        }
        self.set_granted(gref, true);
        Ok(gref)
    }

    /// Ends the grantee's access through `gref` and frees the reference, unless the grantee
    /// still has the page mapped: then [`GrantError::StillInUse`], with the entry left as it
    /// is and the reference still allocated. See the crate documentation.
    pub fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantError> {
        if gref < GNTTAB_NR_RESERVED_ENTRIES || !self.is_granted(gref) {
            return Err(GrantError::NotGranted(gref));
        }
        let offset = entry_offset(gref);
        let mut word = self.mem.read_u32(offset)?;
        for _ in 0..END_ACCESS_ATTEMPTS {
            let flags = word as u16;
            if flags & (GTF_READING | GTF_WRITING) != 0 {
                return Err(GrantError::StillInUse { gref, flags });
            }
            // Clear the flags, keep the domid half of the word as it is.
            match self
                .mem
                .compare_exchange_u32(offset, word, word & !0xFFFF)?
            {
                Ok(_) => {
                    self.set_granted(gref, false);
                    self.free.push(gref);
                    return Ok(());
                }
                Err(found) => word = found,
            }
        }
        Err(GrantError::StillInUse {
            gref,
            flags: word as u16,
        })
    }

    fn write_entry(
        &self,
        gref: GrantRef,
        domid: DomId,
        frame: u32,
        flags: u16,
    ) -> Result<(), OutOfBounds> {
        let offset = entry_offset(gref);
        self.mem.write_u16(offset + grant_entry_v1::DOMID, domid)?;
        self.mem.write_u32(offset + grant_entry_v1::FRAME, frame)?;
        self.mem.write_barrier();
        self.mem.write_u16(offset + grant_entry_v1::FLAGS, flags)
    }

    fn set_granted(&mut self, gref: GrantRef, granted: bool) {
        let (word, bit) = (gref as usize / 64, gref % 64);
        if granted {
            self.granted[word] |= 1 << bit;
        } else {
            self.granted[word] &= !(1 << bit);
        }
    }
}

/// Byte offset of entry `gref` in the table.
fn entry_offset(gref: GrantRef) -> usize {
    gref as usize * grant_entry_v1::SIZE
}

#[cfg(test)]
mod tests;
