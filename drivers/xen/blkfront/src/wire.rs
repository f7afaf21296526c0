//! Requests and responses as the bytes of a ring slot (`io/blkif.h`, x86_64 layout).
//!
//! Requests are built in a zeroed slot-sized buffer and copied to the ring in one go, so no
//! byte of a slot is left over from an earlier request. Responses are decoded from the one
//! copy the ring made of the slot.

use ringbolt_xen_abi::grant_table::GrantRef;
use ringbolt_xen_abi::io::blkif::{
    BLKIF_SRING_ENTRY_SIZE, BlkifSector, BlkifVdev, blkif_request, blkif_request_indirect,
    blkif_request_segment, blkif_response,
};

/// A ring slot's bytes.
pub(crate) type Slot = [u8; BLKIF_SRING_ENTRY_SIZE];

/// `struct blkif_request_segment`: sectors `first..=last` (512-byte units) of a granted page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentDesc {
    pub gref: GrantRef,
    pub first_sect: u8,
    pub last_sect: u8,
}

impl SegmentDesc {
    pub fn encode(&self) -> [u8; blkif_request_segment::SIZE] {
        let mut b = [0; blkif_request_segment::SIZE];
        b[blkif_request_segment::GREF..][..4].copy_from_slice(&self.gref.to_le_bytes());
        b[blkif_request_segment::FIRST_SECT] = self.first_sect;
        b[blkif_request_segment::LAST_SECT] = self.last_sect;
        b
    }

    #[cfg(any(test, feature = "sim"))]
    pub fn decode(b: &[u8; blkif_request_segment::SIZE]) -> Self {
        SegmentDesc {
            gref: u32_at(b, blkif_request_segment::GREF),
            first_sect: b[blkif_request_segment::FIRST_SECT],
            last_sect: b[blkif_request_segment::LAST_SECT],
        }
    }
}

/// The fields every request starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub handle: BlkifVdev,
    pub id: u64,
    pub sector: BlkifSector,
}

/// `struct blkif_request` with `segments` (at most `BLKIF_MAX_SEGMENTS_PER_REQUEST`; the
/// caller's limit) in the slot.
pub(crate) fn direct(operation: u8, header: Header, segments: &[SegmentDesc]) -> Slot {
    let mut s = [0; BLKIF_SRING_ENTRY_SIZE];
    s[blkif_request::OPERATION] = operation;
    s[blkif_request::NR_SEGMENTS] = segments.len() as u8;
    s[blkif_request::HANDLE..][..2].copy_from_slice(&header.handle.to_le_bytes());
    s[blkif_request::ID..][..8].copy_from_slice(&header.id.to_le_bytes());
    s[blkif_request::SECTOR_NUMBER..][..8].copy_from_slice(&header.sector.to_le_bytes());
    let table = &mut s[blkif_request::SEG..];
    for (seg, out) in segments
        .iter()
        .zip(table.chunks_exact_mut(blkif_request_segment::SIZE))
    {
        out.copy_from_slice(&seg.encode());
    }
    s
}

/// `struct blkif_request_indirect`: `nr_segments` segments in the granted pages `pages` (at
/// most `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`; the caller's limit).
pub(crate) fn indirect(
    indirect_op: u8,
    header: Header,
    nr_segments: u16,
    pages: &[GrantRef],
) -> Slot {
    let mut s = [0; BLKIF_SRING_ENTRY_SIZE];
    s[blkif_request_indirect::OPERATION] = ringbolt_xen_abi::io::blkif::BLKIF_OP_INDIRECT;
    s[blkif_request_indirect::INDIRECT_OP] = indirect_op;
    s[blkif_request_indirect::NR_SEGMENTS..][..2].copy_from_slice(&nr_segments.to_le_bytes());
    s[blkif_request_indirect::ID..][..8].copy_from_slice(&header.id.to_le_bytes());
    s[blkif_request_indirect::SECTOR_NUMBER..][..8].copy_from_slice(&header.sector.to_le_bytes());
    s[blkif_request_indirect::HANDLE..][..2].copy_from_slice(&header.handle.to_le_bytes());
    let grefs = &mut s[blkif_request_indirect::INDIRECT_GREFS..];
    for (gref, out) in pages.iter().zip(grefs.chunks_exact_mut(4)) {
        out.copy_from_slice(&gref.to_le_bytes());
    }
    s
}

/// `struct blkif_response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub id: u64,
    pub operation: u8,
    pub status: i16,
}

impl Response {
    pub fn decode(b: &[u8; blkif_response::SIZE]) -> Self {
        Response {
            id: u64::from_le_bytes(array(b, blkif_response::ID)),
            operation: b[blkif_response::OPERATION],
            status: i16::from_le_bytes(array(b, blkif_response::STATUS)),
        }
    }

    #[cfg(any(test, feature = "sim"))]
    pub fn encode(&self) -> [u8; blkif_response::SIZE] {
        let mut b = [0; blkif_response::SIZE];
        b[blkif_response::ID..][..8].copy_from_slice(&self.id.to_le_bytes());
        b[blkif_response::OPERATION] = self.operation;
        b[blkif_response::STATUS..][..2].copy_from_slice(&self.status.to_le_bytes());
        b
    }
}

/// `N` bytes at `at`; callers pass offsets of fields inside `b`.
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

#[cfg(any(test, feature = "sim"))]
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(b, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbolt_xen_abi::io::blkif::{BLKIF_OP_INDIRECT, BLKIF_OP_WRITE};

    #[test]
    fn direct_request_bytes() {
        let header = Header {
            handle: 0xCA00,
            id: 0x0102_0304_0506_0708,
            sector: 0x1122_3344,
        };
        let segs = [
            SegmentDesc {
                gref: 9,
                first_sect: 0,
                last_sect: 7,
            },
            SegmentDesc {
                gref: 0x0A0B_0C0D,
                first_sect: 2,
                last_sect: 3,
            },
        ];
        let s = direct(BLKIF_OP_WRITE, header, &segs);
        assert_eq!(
            s[..24],
            [
                1, 2, 0x00, 0xCA, 0, 0, 0, 0, //
                8, 7, 6, 5, 4, 3, 2, 1, //
                0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0,
            ]
        );
        assert_eq!(
            s[24..40],
            [9, 0, 0, 0, 0, 7, 0, 0, 0x0D, 0x0C, 0x0B, 0x0A, 2, 3, 0, 0]
        );
        assert!(s[40..].iter().all(|&b| b == 0));
        assert_eq!(SegmentDesc::decode(&array(&s, 32)), segs[1]);
    }

    #[test]
    fn indirect_request_bytes() {
        let header = Header {
            handle: 3,
            id: 42,
            sector: 8,
        };
        let s = indirect(BLKIF_OP_WRITE, header, 600, &[100, 101]);
        assert_eq!(s[..4], [BLKIF_OP_INDIRECT, BLKIF_OP_WRITE, 0x58, 0x02]);
        assert_eq!(u64::from_le_bytes(array(&s, 8)), 42);
        assert_eq!(u64::from_le_bytes(array(&s, 16)), 8);
        assert_eq!(s[24..28], [3, 0, 0, 0]);
        assert_eq!(u32_at(&s, 28), 100);
        assert_eq!(u32_at(&s, 32), 101);
        assert!(s[36..].iter().all(|&b| b == 0));
    }

    #[test]
    fn response_round_trip() {
        let r = Response {
            id: u64::MAX - 5,
            operation: 6,
            status: -2,
        };
        let b = r.encode();
        assert_eq!(b[8..12], [6, 0, 0xFE, 0xFF]);
        assert_eq!(Response::decode(&b), r);
    }
}
