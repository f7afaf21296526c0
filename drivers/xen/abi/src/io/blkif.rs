//! `xen/include/public/io/blkif.h`: the block-device split-driver protocol.
//!
//! Requests and responses travel in the slots of an `io/ring.h` ring ([`super::ring`]); both
//! are described here by byte offsets, because the frontend only ever reaches a slot through
//! `ringbolt_shmem::SharedMemory`. Sector numbers and `first_sect`/`last_sect` are always in
//! 512-byte units, whatever the backend's `sector-size` (which they must still be aligned to).
//! Layouts are x86_64's (`XEN_IO_PROTO_ABI_X86_64`): no `__i386__` padding in
//! `blkif_request_indirect`.

use crate::XEN_PAGE_SIZE;

/// `blkif_vdev_t`.
pub type BlkifVdev = u16;
/// `blkif_sector_t`, in 512-byte units.
pub type BlkifSector = u64;

/// The unit of `sector_number`, `first_sect`, `last_sect` and the backend's `sectors` node.
pub const SECTOR_SIZE: usize = 512;

// Request codes (`blkif_request.operation`).
pub const BLKIF_OP_READ: u8 = 0;
pub const BLKIF_OP_WRITE: u8 = 1;
/// Only if the backend offers `feature-barrier`.
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// Only if the backend offers `feature-flush-cache`.
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// Reserved (device-specific command packets in SLES).
pub const BLKIF_OP_RESERVED_1: u8 = 4;
/// Only if the backend offers `feature-discard`; the slot is a `blkif_request_discard`.
pub const BLKIF_OP_DISCARD: u8 = 5;
/// Only if the backend offers `feature-max-indirect-segments`; the slot is a
/// `blkif_request_indirect`.
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// Segments in a direct request, chosen so a one-page ring holds its header and 32 slots.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Grant references in `blkif_request_indirect.indirect_grefs`.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// `blkif_request_segment`s per indirect page (`PAGE_SIZE / sizeof(struct
/// blkif_request_segment)` in the header's description of `BLKIF_OP_INDIRECT`; Linux's
/// `SEGS_PER_INDIRECT_FRAME`).
pub const SEGS_PER_INDIRECT_FRAME: usize = XEN_PAGE_SIZE / blkif_request_segment::SIZE;
/// The most segments one indirect request can describe.
pub const BLKIF_MAX_INDIRECT_SEGMENTS: usize =
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * SEGS_PER_INDIRECT_FRAME;

/// `blkif_request_discard.flag`: the discarded range must be unrecoverable.
pub const BLKIF_DISCARD_SECURE: u8 = 1 << 0;

// Status codes (`blkif_response.status`).
/// The operation is not supported (flush, barrier, discard).
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
/// The operation failed (`-EIO`).
pub const BLKIF_RSP_ERROR: i16 = -1;
pub const BLKIF_RSP_OKAY: i16 = 0;

// The backend's `info` node, a bitmap.
pub const VDISK_CDROM: u32 = 0x1;
pub const VDISK_REMOVABLE: u32 = 0x2;
pub const VDISK_READONLY: u32 = 0x4;

/// `struct blkif_request_segment` (8 bytes): one page-sized piece of a transfer.
pub mod blkif_request_segment {
    /// `grant_ref_t` of the data page.
    pub const GREF: usize = 0;
    /// `u8`, first 512-byte sector of the page to transfer (inclusive).
    pub const FIRST_SECT: usize = 4;
    /// `u8`, last 512-byte sector of the page to transfer (inclusive).
    pub const LAST_SECT: usize = 5;
    pub const SIZE: usize = 8;
}

/// `struct blkif_request` (112 bytes): read, write, barrier and flush.
pub mod blkif_request {
    /// `u8`, `BLKIF_OP_*`.
    pub const OPERATION: usize = 0;
    /// `u8`, at most `BLKIF_MAX_SEGMENTS_PER_REQUEST`.
    pub const NR_SEGMENTS: usize = 1;
    /// `blkif_vdev_t`.
    pub const HANDLE: usize = 2;
    /// `u64`, the frontend's own value, echoed in the response.
    pub const ID: usize = 8;
    /// `blkif_sector_t`.
    pub const SECTOR_NUMBER: usize = 16;
    /// `struct blkif_request_segment seg[11]`.
    pub const SEG: usize = 24;
    pub const SIZE: usize =
        SEG + super::BLKIF_MAX_SEGMENTS_PER_REQUEST * super::blkif_request_segment::SIZE;
}

/// `struct blkif_request_discard` (32 bytes).
pub mod blkif_request_discard {
    /// `u8`, `BLKIF_OP_DISCARD`.
    pub const OPERATION: usize = 0;
    /// `u8`, `BLKIF_DISCARD_SECURE` or zero.
    pub const FLAG: usize = 1;
    pub const HANDLE: usize = 2;
    pub const ID: usize = 8;
    pub const SECTOR_NUMBER: usize = 16;
    /// `u64`.
    pub const NR_SECTORS: usize = 24;
    pub const SIZE: usize = 32;
}

/// `struct blkif_request_indirect` (64 bytes on x86_64): the segments are in granted pages.
pub mod blkif_request_indirect {
    /// `u8`, `BLKIF_OP_INDIRECT`.
    pub const OPERATION: usize = 0;
    /// `u8`, `BLKIF_OP_READ` or `BLKIF_OP_WRITE`; the response echoes this, not `OPERATION`.
    pub const INDIRECT_OP: usize = 1;
    /// `u16`, at most the backend's `feature-max-indirect-segments`.
    pub const NR_SEGMENTS: usize = 2;
    pub const ID: usize = 8;
    pub const SECTOR_NUMBER: usize = 16;
    /// `blkif_vdev_t`.
    pub const HANDLE: usize = 24;
    /// `grant_ref_t indirect_grefs[8]`, pages of `blkif_request_segment`s.
    pub const INDIRECT_GREFS: usize = 28;
    pub const SIZE: usize = 64;
}

/// `struct blkif_response` (16 bytes).
pub mod blkif_response {
    /// `u64`, copied from the request.
    pub const ID: usize = 0;
    /// `u8`, copied from the request (`indirect_op` for an indirect request).
    pub const OPERATION: usize = 8;
    /// `i16`, `BLKIF_RSP_*`.
    pub const STATUS: usize = 10;
    pub const SIZE: usize = 16;
}

/// `union blkif_sring_entry`: a ring slot holds either a request or a response.
pub const BLKIF_SRING_ENTRY_SIZE: usize = blkif_request::SIZE;
/// Slots in a one-page blkif ring (`__CONST_RING_SIZE(blkif, 4096)`).
pub const BLKIF_RING_SIZE: usize =
    super::ring::const_ring_size(XEN_PAGE_SIZE, BLKIF_SRING_ENTRY_SIZE);

const _: () = {
    assert!(blkif_request::SIZE == 112);
    assert!(
        blkif_request_indirect::INDIRECT_GREFS + BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * 4
            <= blkif_request_indirect::SIZE
    );
    assert!(blkif_request_indirect::SIZE <= BLKIF_SRING_ENTRY_SIZE);
    assert!(blkif_request_discard::SIZE <= BLKIF_SRING_ENTRY_SIZE);
    assert!(blkif_response::SIZE <= BLKIF_SRING_ENTRY_SIZE);
    // Segment sector numbers are u8s over a page.
    assert!(XEN_PAGE_SIZE / SECTOR_SIZE <= 256);
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    // The C structs of blkif.h for x86_64, so the compiler lays them out as a C compiler does.
    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CSegment {
        gref: u32,
        first_sect: u8,
        last_sect: u8,
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CRequest {
        operation: u8,
        nr_segments: u8,
        handle: u16,
        id: u64,
        sector_number: u64,
        seg: [CSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CRequestDiscard {
        operation: u8,
        flag: u8,
        handle: u16,
        id: u64,
        sector_number: u64,
        nr_sectors: u64,
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CRequestIndirect {
        operation: u8,
        indirect_op: u8,
        nr_segments: u16,
        id: u64,
        sector_number: u64,
        handle: u16,
        indirect_grefs: [u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CResponse {
        id: u64,
        operation: u8,
        status: i16,
    }

    #[test]
    fn segment_matches_the_c_layout() {
        assert_eq!(blkif_request_segment::GREF, offset_of!(CSegment, gref));
        assert_eq!(
            blkif_request_segment::FIRST_SECT,
            offset_of!(CSegment, first_sect)
        );
        assert_eq!(
            blkif_request_segment::LAST_SECT,
            offset_of!(CSegment, last_sect)
        );
        assert_eq!(blkif_request_segment::SIZE, size_of::<CSegment>());
        assert_eq!(blkif_request_segment::SIZE, 8);
    }

    #[test]
    fn request_matches_the_c_layout() {
        assert_eq!(blkif_request::OPERATION, offset_of!(CRequest, operation));
        assert_eq!(
            blkif_request::NR_SEGMENTS,
            offset_of!(CRequest, nr_segments)
        );
        assert_eq!(blkif_request::HANDLE, offset_of!(CRequest, handle));
        assert_eq!(blkif_request::ID, offset_of!(CRequest, id));
        assert_eq!(
            blkif_request::SECTOR_NUMBER,
            offset_of!(CRequest, sector_number)
        );
        assert_eq!(blkif_request::SEG, offset_of!(CRequest, seg));
        assert_eq!(blkif_request::SIZE, size_of::<CRequest>());
        assert_eq!(
            (
                blkif_request::ID,
                blkif_request::SECTOR_NUMBER,
                blkif_request::SEG,
                blkif_request::SIZE
            ),
            (8, 16, 24, 112)
        );
    }

    #[test]
    fn discard_request_matches_the_c_layout() {
        assert_eq!(
            blkif_request_discard::FLAG,
            offset_of!(CRequestDiscard, flag)
        );
        assert_eq!(
            blkif_request_discard::HANDLE,
            offset_of!(CRequestDiscard, handle)
        );
        assert_eq!(blkif_request_discard::ID, offset_of!(CRequestDiscard, id));
        assert_eq!(
            blkif_request_discard::SECTOR_NUMBER,
            offset_of!(CRequestDiscard, sector_number)
        );
        assert_eq!(
            blkif_request_discard::NR_SECTORS,
            offset_of!(CRequestDiscard, nr_sectors)
        );
        assert_eq!(blkif_request_discard::SIZE, size_of::<CRequestDiscard>());
    }

    #[test]
    fn indirect_request_matches_the_c_layout() {
        assert_eq!(
            blkif_request_indirect::OPERATION,
            offset_of!(CRequestIndirect, operation)
        );
        assert_eq!(
            blkif_request_indirect::INDIRECT_OP,
            offset_of!(CRequestIndirect, indirect_op)
        );
        assert_eq!(
            blkif_request_indirect::NR_SEGMENTS,
            offset_of!(CRequestIndirect, nr_segments)
        );
        assert_eq!(blkif_request_indirect::ID, offset_of!(CRequestIndirect, id));
        assert_eq!(
            blkif_request_indirect::SECTOR_NUMBER,
            offset_of!(CRequestIndirect, sector_number)
        );
        assert_eq!(
            blkif_request_indirect::HANDLE,
            offset_of!(CRequestIndirect, handle)
        );
        assert_eq!(
            blkif_request_indirect::INDIRECT_GREFS,
            offset_of!(CRequestIndirect, indirect_grefs)
        );
        assert_eq!(blkif_request_indirect::SIZE, size_of::<CRequestIndirect>());
        assert_eq!(
            (
                blkif_request_indirect::HANDLE,
                blkif_request_indirect::INDIRECT_GREFS,
                blkif_request_indirect::SIZE
            ),
            (24, 28, 64)
        );
    }

    #[test]
    fn response_matches_the_c_layout() {
        assert_eq!(blkif_response::ID, offset_of!(CResponse, id));
        assert_eq!(blkif_response::OPERATION, offset_of!(CResponse, operation));
        assert_eq!(blkif_response::STATUS, offset_of!(CResponse, status));
        assert_eq!(blkif_response::SIZE, size_of::<CResponse>());
        assert_eq!(
            (
                blkif_response::OPERATION,
                blkif_response::STATUS,
                blkif_response::SIZE
            ),
            (8, 10, 16)
        );
    }

    #[test]
    fn numbers_match_the_header() {
        assert_eq!(
            [
                BLKIF_OP_READ,
                BLKIF_OP_WRITE,
                BLKIF_OP_WRITE_BARRIER,
                BLKIF_OP_FLUSH_DISKCACHE,
                BLKIF_OP_RESERVED_1,
                BLKIF_OP_DISCARD,
                BLKIF_OP_INDIRECT
            ],
            [0, 1, 2, 3, 4, 5, 6]
        );
        assert_eq!(
            (BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY),
            (-2, -1, 0)
        );
        assert_eq!(BLKIF_MAX_SEGMENTS_PER_REQUEST, 11);
        assert_eq!(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, 8);
        assert_eq!(SEGS_PER_INDIRECT_FRAME, 512);
        assert_eq!(BLKIF_MAX_INDIRECT_SEGMENTS, 4096);
        assert_eq!((VDISK_CDROM, VDISK_REMOVABLE, VDISK_READONLY), (1, 2, 4));
        assert_eq!(BLKIF_DISCARD_SECURE, 1);
    }

    #[test]
    fn a_one_page_ring_holds_32_slots() {
        assert_eq!(BLKIF_SRING_ENTRY_SIZE, 112);
        assert_eq!(BLKIF_RING_SIZE, 32);
    }
}
