//! Memory shared with a hypervisor or device, reached only by explicit loads and stores.
//!
//! A Xen shared-info page, a console ring or a VMBus ring is written by a peer that runs
//! concurrently and that we do not trust. Rust references into such memory would be wrong twice
//! over: the compiler may assume the bytes behind a `&T` do not change (and merge or repeat
//! loads), and a `&mut T` asserts we are the only writer. So drivers never hold one. Every access
//! goes through [`SharedMemory`], one method call per load or store, which the kernel implements
//! with volatile accesses on a mapped page and tests implement with `fake::FakeSharedMemory`
//! (feature `fake`).
//!
//! # The contract
//!
//! - **Bounds are checked, never assumed.** An offset outside the region, or a multi-byte access
//!   that is not naturally aligned, is a driver bug; the implementation reports it as
//!   [`OutOfBounds`] instead of panicking, because a panic in an interrupt path takes the whole
//!   unikernel down. [`OutOfBounds::check`] is the one rule every implementation applies.
//! - **Naturally aligned scalars are single accesses.** `read_u32` is one 32-bit load, never four
//!   byte loads, so a ring index the peer updates with one store is never seen half-updated.
//!   Multi-byte values are little-endian, the byte order of every ABI we speak (x86).
//! - **Byte runs are copied out once.** [`SharedMemory::read_bytes`] copies into driver memory;
//!   the driver validates the copy, never the shared original (no double fetch).
//! - **Ordering is explicit.** The three barriers order the accesses before them against those
//!   after; drivers call them where the protocol says (a write barrier between filling a ring
//!   slot and publishing the producer index). The implementation picks the instruction: on x86,
//!   whose TSO model already keeps loads and stores in order, read and write barriers need only
//!   stop the compiler, and the full barrier is an `mfence`.
//!
//! Every method takes `&self`: the memory is shared, so mutation through a shared handle is the
//! honest signature, and a ring and the code that notifies its peer can both hold the handle.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "fake"))]
extern crate alloc;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

use core::fmt;

/// Why an access was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Some of the accessed bytes lie past the end of the region (or `offset + width`
    /// overflows).
    PastEnd,
    /// A 2-, 4- or 8-byte access at an offset that is not a multiple of its width.
    Misaligned,
}

/// An access a [`SharedMemory`] region cannot serve: a bug in the driver that asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds {
    /// Offset of the first byte accessed.
    pub offset: usize,
    /// Bytes accessed.
    pub width: usize,
    /// Size of the region.
    pub region_len: usize,
    pub fault: Fault,
}

impl OutOfBounds {
    /// Checks an access of `width` bytes at `offset` into a region of `region_len` bytes,
    /// requiring `offset` to be a multiple of `align` (1 for byte runs, the width for scalars).
    ///
    /// Implementations of [`SharedMemory`] call this before touching memory, so every
    /// implementation rejects exactly the same accesses. Alignment is relative to the region's
    /// start; a region must itself start naturally aligned (a page always does).
    pub fn check(
        region_len: usize,
        offset: usize,
        width: usize,
        align: usize,
    ) -> Result<(), OutOfBounds> {
        let fault = if offset.checked_add(width).is_none_or(|end| end > region_len) {
            Fault::PastEnd
        } else if align > 1 && !offset.is_multiple_of(align) {
            Fault::Misaligned
        } else {
            return Ok(());
        };
        Err(OutOfBounds {
            offset,
            width,
            region_len,
            fault,
        })
    }
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.fault {
            Fault::PastEnd => "past the end of",
            Fault::Misaligned => "misaligned in",
        };
        write!(
            f,
            "{}-byte access at offset {:#x} {what} a {:#x}-byte shared region",
            self.width, self.offset, self.region_len
        )
    }
}

impl core::error::Error for OutOfBounds {}

/// A region of memory that a peer (hypervisor, backend domain, device) reads and writes
/// concurrently with us.
///
/// Offsets are bytes from the start of the region. Scalars are little-endian and must be
/// naturally aligned; see the crate documentation for the full contract. No method may panic.
pub trait SharedMemory {
    /// Size of the region in bytes.
    fn len(&self) -> usize;

    /// Whether the region is empty (a zero-length mapping serves no access).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read_u8(&self, offset: usize) -> Result<u8, OutOfBounds>;
    /// One 16-bit load; `offset` must be 2-aligned.
    fn read_u16(&self, offset: usize) -> Result<u16, OutOfBounds>;
    /// One 32-bit load; `offset` must be 4-aligned.
    fn read_u32(&self, offset: usize) -> Result<u32, OutOfBounds>;
    /// One 64-bit load; `offset` must be 8-aligned.
    fn read_u64(&self, offset: usize) -> Result<u64, OutOfBounds>;

    fn write_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds>;
    /// One 16-bit store; `offset` must be 2-aligned.
    fn write_u16(&self, offset: usize, value: u16) -> Result<(), OutOfBounds>;
    /// One 32-bit store; `offset` must be 4-aligned.
    fn write_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds>;
    /// One 64-bit store; `offset` must be 8-aligned.
    fn write_u64(&self, offset: usize, value: u64) -> Result<(), OutOfBounds>;

    /// Copies `dst.len()` bytes starting at `offset` into `dst`. Any alignment.
    ///
    /// The bytes are not read as one atomic unit: if the peer may be writing them, the protocol
    /// must say how a consistent copy is recognised (a seqlock, a producer index read first).
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds>;
    /// Copies `src` to the region starting at `offset`. Any alignment.
    fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds>;

    /// One locked read-modify-write: stores `value & current` and returns `current`, so a bit
    /// the peer sets concurrently is never lost (event-channel pending words and selectors).
    /// `offset` must be 8-aligned. A full barrier on both sides.
    fn fetch_and_u64(&self, offset: usize, value: u64) -> Result<u64, OutOfBounds>;

    /// One locked compare-and-exchange: if the `u32` at `offset` equals `current`, stores `new`
    /// and returns `Ok(current)`; otherwise stores nothing and returns `Err(found)` (grant-table
    /// flags the peer updates concurrently). `offset` must be 4-aligned. A full barrier.
    fn compare_exchange_u32(
        &self,
        offset: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, OutOfBounds>;

    /// Orders loads before the barrier against loads after it.
    fn read_barrier(&self);
    /// Orders stores before the barrier against stores after it.
    fn write_barrier(&self);
    /// Orders every access before the barrier against every access after it.
    fn full_barrier(&self);
}

/// A shared handle is as good as the region: a ring can borrow memory that a test (or the code
/// that owns the mapping) keeps inspecting.
impl<M: SharedMemory + ?Sized> SharedMemory for &M {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn read_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
        (**self).read_u8(offset)
    }
    fn read_u16(&self, offset: usize) -> Result<u16, OutOfBounds> {
        (**self).read_u16(offset)
    }
    fn read_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        (**self).read_u32(offset)
    }
    fn read_u64(&self, offset: usize) -> Result<u64, OutOfBounds> {
        (**self).read_u64(offset)
    }
    fn write_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds> {
        (**self).write_u8(offset, value)
    }
    fn write_u16(&self, offset: usize, value: u16) -> Result<(), OutOfBounds> {
        (**self).write_u16(offset, value)
    }
    fn write_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds> {
        (**self).write_u32(offset, value)
    }
    fn write_u64(&self, offset: usize, value: u64) -> Result<(), OutOfBounds> {
        (**self).write_u64(offset, value)
    }
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        (**self).read_bytes(offset, dst)
    }
    fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        (**self).write_bytes(offset, src)
    }
    fn fetch_and_u64(&self, offset: usize, value: u64) -> Result<u64, OutOfBounds> {
        (**self).fetch_and_u64(offset, value)
    }
    fn compare_exchange_u32(
        &self,
        offset: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, OutOfBounds> {
        (**self).compare_exchange_u32(offset, current, new)
    }
    fn read_barrier(&self) {
        (**self).read_barrier();
    }
    fn write_barrier(&self) {
        (**self).write_barrier();
    }
    fn full_barrier(&self) {
        (**self).full_barrier();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_accesses_that_end_exactly_at_the_region_end() {
        assert_eq!(OutOfBounds::check(4096, 4088, 8, 8), Ok(()));
        assert_eq!(OutOfBounds::check(4096, 4095, 1, 1), Ok(()));
        assert_eq!(OutOfBounds::check(4096, 4096, 0, 1), Ok(()));
    }

    #[test]
    fn rejects_accesses_past_the_end_before_checking_alignment() {
        assert_eq!(
            OutOfBounds::check(4096, 4092, 8, 8),
            Err(OutOfBounds {
                offset: 4092,
                width: 8,
                region_len: 4096,
                fault: Fault::PastEnd
            })
        );
        assert_eq!(
            OutOfBounds::check(16, 17, 0, 1).map_err(|e| e.fault),
            Err(Fault::PastEnd)
        );
    }

    #[test]
    fn rejects_offsets_whose_end_overflows() {
        assert_eq!(
            OutOfBounds::check(usize::MAX, usize::MAX - 3, 8, 8).map_err(|e| e.fault),
            Err(Fault::PastEnd)
        );
    }

    #[test]
    fn rejects_misaligned_scalars_but_not_byte_runs() {
        assert_eq!(
            OutOfBounds::check(4096, 6, 4, 4).map_err(|e| e.fault),
            Err(Fault::Misaligned)
        );
        assert_eq!(
            OutOfBounds::check(4096, 1, 2, 2).map_err(|e| e.fault),
            Err(Fault::Misaligned)
        );
        assert_eq!(OutOfBounds::check(4096, 6, 4, 1), Ok(()));
    }

    #[test]
    fn describes_the_rejected_access() {
        extern crate std;
        use std::string::ToString;
        let err = OutOfBounds::check(0x1000, 0x1004, 4, 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "4-byte access at offset 0x1004 past the end of a 0x1000-byte shared region"
        );
        let err = OutOfBounds::check(0x1000, 0x3, 4, 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "4-byte access at offset 0x3 misaligned in a 0x1000-byte shared region"
        );
    }
}
