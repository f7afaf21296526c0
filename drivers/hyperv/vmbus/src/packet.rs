//! VMBus packets: what channel rings carry.
//!
//! Every packet starts with `vmpacket_descriptor` (16 bytes): a type, the offset of the data and
//! the length of the whole packet, both in 8-byte units (`offset8`, `len8`), flags, and a
//! transaction id that pairs a request with its completion. Between the descriptor and the data
//! a packet type may put more header; a GPA-direct packet puts its page ranges there
//! (`vmdata_gpa_direct`). Packets are padded to 8 bytes; in a ring each is followed by an 8-byte
//! trailer (see [`ring`](crate::ring)).
//!
//! ```text
//!  0 type (u16)  2 offset8 (u16)  4 len8 (u16)  6 flags (u16)  8 trans_id (u64)
//! 16 [GPA direct: reserved (u32), range_cnt (u32), ranges: byte_count, byte_offset, pfn[n]...]
//!    offset8*8: data ... padding to len8*8
//! ```

use core::fmt;

use crate::PAGE_SIZE;
use crate::wire::Fields;

/// Size of `vmpacket_descriptor`.
pub const DESCRIPTOR_SIZE: usize = 16;

/// `VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`: the receiver must answer with a completion
/// packet carrying the same transaction id.
pub const FLAG_COMPLETION_REQUESTED: u16 = 1;

/// The largest packet a descriptor can describe: `len8` is a `u16`.
pub const MAX_PACKET_SIZE: usize = u16::MAX as usize * 8;

/// `enum vmbus_packet_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum PacketType {
    Invalid = 0x0,
    Synch = 0x1,
    AddTransferPageSet = 0x2,
    RemoveTransferPageSet = 0x3,
    EstablishGpadl = 0x4,
    TeardownGpadl = 0x5,
    DataInBand = 0x6,
    DataUsingTransferPages = 0x7,
    DataUsingGpadl = 0x8,
    DataUsingGpaDirect = 0x9,
    CancelRequest = 0xa,
    Completion = 0xb,
    DataUsingAdditionalPacket = 0xc,
    AdditionalData = 0xd,
}

impl PacketType {
    pub fn from_u16(value: u16) -> Option<PacketType> {
        use PacketType::*;
        [
            Invalid,
            Synch,
            AddTransferPageSet,
            RemoveTransferPageSet,
            EstablishGpadl,
            TeardownGpadl,
            DataInBand,
            DataUsingTransferPages,
            DataUsingGpadl,
            DataUsingGpaDirect,
            CancelRequest,
            Completion,
            DataUsingAdditionalPacket,
            AdditionalData,
        ]
        .get(usize::from(value))
        .copied()
    }
}

/// Why a packet's own description of itself was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// `len8 * 8` is below the descriptor size.
    LengthBelowHeader { len: usize },
    /// `offset8 * 8` points inside the descriptor or past the end of the packet.
    OffsetOutsidePacket { offset: usize, len: usize },
    /// A GPA-direct header that runs past the data offset, or a range whose page count does not
    /// match its bytes.
    BadRanges,
    /// An outgoing packet longer than a descriptor can describe.
    TooLarge { len: usize },
    /// The descriptor claims more bytes than the buffer holding the packet.
    LengthPastBuffer { len: usize, available: usize },
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::LengthBelowHeader { len } => {
                write!(f, "packet length {len} is below the 16-byte descriptor")
            }
            PacketError::OffsetOutsidePacket { offset, len } => {
                write!(f, "data offset {offset} outside the {len}-byte packet")
            }
            PacketError::BadRanges => write!(f, "malformed GPA ranges"),
            PacketError::TooLarge { len } => write!(f, "{len}-byte packet exceeds len8"),
            PacketError::LengthPastBuffer { len, available } => {
                write!(f, "{len}-byte packet in {available} bytes")
            }
        }
    }
}

/// `vmpacket_descriptor`, decoded but not yet checked against anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The raw type; see [`PacketType::from_u16`].
    pub packet_type: u16,
    pub offset8: u16,
    pub len8: u16,
    pub flags: u16,
    pub transaction_id: u64,
}

impl Descriptor {
    pub fn decode(bytes: [u8; DESCRIPTOR_SIZE]) -> Descriptor {
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let mut id = [0; 8];
        id.copy_from_slice(&bytes[8..]);
        Descriptor {
            packet_type: u16_at(0),
            offset8: u16_at(2),
            len8: u16_at(4),
            flags: u16_at(6),
            transaction_id: u64::from_le_bytes(id),
        }
    }

    pub fn encode(&self) -> [u8; DESCRIPTOR_SIZE] {
        let mut out = [0; DESCRIPTOR_SIZE];
        out[0..2].copy_from_slice(&self.packet_type.to_le_bytes());
        out[2..4].copy_from_slice(&self.offset8.to_le_bytes());
        out[4..6].copy_from_slice(&self.len8.to_le_bytes());
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..16].copy_from_slice(&self.transaction_id.to_le_bytes());
        out
    }

    /// The whole packet's length in bytes.
    pub fn packet_len(&self) -> usize {
        usize::from(self.len8) * 8
    }

    /// Where the data starts, in bytes from the descriptor.
    pub fn data_offset(&self) -> usize {
        usize::from(self.offset8) * 8
    }

    /// Checks the descriptor against itself: the packet holds at least the descriptor, and the
    /// data starts after the descriptor and inside the packet. (Hyper-V's Linux reader clamps
    /// such values; this one rejects them.)
    pub fn check(&self) -> Result<(), PacketError> {
        let (len, offset) = (self.packet_len(), self.data_offset());
        if len < DESCRIPTOR_SIZE {
            return Err(PacketError::LengthBelowHeader { len });
        }
        if offset < DESCRIPTOR_SIZE || offset > len {
            return Err(PacketError::OffsetOutsidePacket { offset, len });
        }
        Ok(())
    }
}

/// A received packet, copied out of the ring and checked: its descriptor agrees with its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    descriptor: Descriptor,
    bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Views the packet at the start of `bytes` (its first `len8 * 8` bytes).
    pub fn parse(bytes: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        let mut raw = [0; DESCRIPTOR_SIZE];
        raw.copy_from_slice(
            bytes
                .get(..DESCRIPTOR_SIZE)
                .ok_or(PacketError::LengthBelowHeader { len: bytes.len() })?,
        );
        let descriptor = Descriptor::decode(raw);
        descriptor.check()?;
        let bytes = bytes
            .get(..descriptor.packet_len())
            .ok_or(PacketError::LengthPastBuffer {
                len: descriptor.packet_len(),
                available: bytes.len(),
            })?;
        Ok(Packet { descriptor, bytes })
    }

    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    pub fn packet_type(&self) -> Option<PacketType> {
        PacketType::from_u16(self.descriptor.packet_type)
    }

    pub fn transaction_id(&self) -> u64 {
        self.descriptor.transaction_id
    }

    pub fn completion_requested(&self) -> bool {
        self.descriptor.flags & FLAG_COMPLETION_REQUESTED != 0
    }

    /// Bytes between the descriptor and the data (GPA ranges, transfer-page headers).
    pub fn extra_header(&self) -> &'a [u8] {
        &self.bytes[DESCRIPTOR_SIZE..self.descriptor.data_offset()]
    }

    /// The data, including the sender's padding to 8 bytes: the device protocol carries its
    /// own lengths.
    pub fn data(&self) -> &'a [u8] {
        &self.bytes[self.descriptor.data_offset()..]
    }

    /// The ranges of a GPA-direct packet, checked against the header they sit in.
    pub fn gpa_ranges(&self) -> Result<GpaRanges<'a>, PacketError> {
        let f = Fields::new(self.extra_header());
        let count = f.u32(4).map_err(|_| PacketError::BadRanges)?;
        let ranges = GpaRanges {
            bytes: f
                .slice(8, f.len().saturating_sub(8))
                .map_err(|_| PacketError::BadRanges)?,
            remaining: count,
        };
        // Walk once so that the iterator cannot meet a bad range later.
        let mut check = ranges;
        for range in &mut check {
            range?;
        }
        Ok(ranges)
    }
}

impl fmt::Debug for Packet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("descriptor", &self.descriptor)
            .field("data_len", &self.data().len())
            .finish()
    }
}

/// One `gpa_range`: `byte_count` bytes from `byte_offset` into the first of its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpaRange<'a> {
    pub byte_count: u32,
    pub byte_offset: u32,
    pub pfns: PfnList<'a>,
}

/// The page numbers of a range: borrowed from the caller when sending, from the packet copy
/// when receiving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfnList<'a> {
    Slice(&'a [u64]),
    Bytes(&'a [u8]),
}

impl PfnList<'_> {
    pub fn len(&self) -> usize {
        match self {
            PfnList::Slice(s) => s.len(),
            PfnList::Bytes(b) => b.len() / 8,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, index: usize) -> Option<u64> {
        match self {
            PfnList::Slice(s) => s.get(index).copied(),
            PfnList::Bytes(b) => Fields::new(b).u64(index.checked_mul(8)?).ok(),
        }
    }
}

impl GpaRange<'_> {
    /// Pages a range of `byte_count` bytes at `byte_offset` touches, or `None` for an offset
    /// past the first page or an empty range.
    pub fn pages_spanned(byte_count: u32, byte_offset: u32) -> Option<usize> {
        if byte_count == 0 || byte_offset as usize >= PAGE_SIZE {
            return None;
        }
        Some((byte_offset as usize + byte_count as usize).div_ceil(PAGE_SIZE))
    }

    fn encoded_len(&self) -> usize {
        8 + 8 * self.pfns.len()
    }
}

/// The ranges of a received GPA-direct packet.
#[derive(Clone, Copy, Debug)]
pub struct GpaRanges<'a> {
    bytes: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for GpaRanges<'a> {
    type Item = Result<GpaRange<'a>, PacketError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let f = Fields::new(self.bytes);
        let parse = || {
            let byte_count = f.u32(0).ok()?;
            let byte_offset = f.u32(4).ok()?;
            let pages = GpaRange::pages_spanned(byte_count, byte_offset)?;
            let pfns = f.slice(8, pages.checked_mul(8)?).ok()?;
            Some((
                GpaRange {
                    byte_count,
                    byte_offset,
                    pfns: PfnList::Bytes(pfns),
                },
                8 + pfns.len(),
            ))
        };
        match parse() {
            Some((range, used)) => {
                self.bytes = self.bytes.get(used..).unwrap_or_default();
                Some(Ok(range))
            }
            None => {
                self.remaining = 0;
                Some(Err(PacketError::BadRanges))
            }
        }
    }
}

/// A packet to send: what [`RingWriter::write`](crate::ring::RingWriter::write) lays out.
#[derive(Clone, Copy, Debug)]
pub struct OutgoingPacket<'a> {
    pub packet_type: PacketType,
    pub flags: u16,
    pub transaction_id: u64,
    /// GPA ranges, for [`PacketType::DataUsingGpaDirect`]; empty otherwise.
    pub ranges: &'a [GpaRange<'a>],
    pub data: &'a [u8],
}

impl<'a> OutgoingPacket<'a> {
    /// An in-band data packet (`VM_PKT_DATA_INBAND`) with no completion requested.
    pub fn in_band(data: &'a [u8]) -> Self {
        OutgoingPacket {
            packet_type: PacketType::DataInBand,
            flags: 0,
            transaction_id: 0,
            ranges: &[],
            data,
        }
    }

    /// A GPA-direct data packet: the host reads or writes the guest pages in `ranges` directly.
    pub fn gpa_direct(ranges: &'a [GpaRange<'a>], data: &'a [u8]) -> Self {
        OutgoingPacket {
            packet_type: PacketType::DataUsingGpaDirect,
            ranges,
            ..OutgoingPacket::in_band(data)
        }
    }

    /// A completion of the request `transaction_id` (`VM_PKT_COMP`), as a host sends it.
    pub fn completion(transaction_id: u64, data: &'a [u8]) -> Self {
        OutgoingPacket {
            packet_type: PacketType::Completion,
            transaction_id,
            ..OutgoingPacket::in_band(data)
        }
    }

    /// Bytes from the descriptor to the data: the descriptor, plus the range header of a
    /// GPA-direct packet.
    fn header_len(&self) -> usize {
        if self.ranges.is_empty() {
            return DESCRIPTOR_SIZE;
        }
        DESCRIPTOR_SIZE + 8 + self.ranges.iter().map(GpaRange::encoded_len).sum::<usize>()
    }

    /// The descriptor for this packet, after checking that its ranges are well-formed and that
    /// it fits `offset8` and `len8`.
    pub fn descriptor(&self) -> Result<Descriptor, PacketError> {
        let ranges_ok =
            self.ranges.iter().all(|r| {
                GpaRange::pages_spanned(r.byte_count, r.byte_offset) == Some(r.pfns.len())
            }) && u32::try_from(self.ranges.len()).is_ok();
        if !ranges_ok {
            return Err(PacketError::BadRanges);
        }
        let header = self.header_len();
        let len = header.saturating_add(self.data.len()).next_multiple_of(8);
        if len > MAX_PACKET_SIZE {
            return Err(PacketError::TooLarge { len });
        }
        // Both fit a u16 once len does, as header <= len.
        Ok(Descriptor {
            packet_type: self.packet_type as u16,
            offset8: (header / 8) as u16,
            len8: (len / 8) as u16,
            flags: self.flags,
            transaction_id: self.transaction_id,
        })
    }

    /// Passes the packet's bytes after `descriptor` to `put`, in order: range header, ranges,
    /// data, padding. Stops at the first error.
    pub(crate) fn write_body<E>(
        &self,
        descriptor: &Descriptor,
        mut put: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.ranges.is_empty() {
            put(&0u32.to_le_bytes())?;
            put(&(self.ranges.len() as u32).to_le_bytes())?;
            for range in self.ranges {
                put(&range.byte_count.to_le_bytes())?;
                put(&range.byte_offset.to_le_bytes())?;
                for i in 0..range.pfns.len() {
                    put(&range.pfns.get(i).unwrap_or_default().to_le_bytes())?;
                }
            }
        }
        put(self.data)?;
        let padding = descriptor
            .packet_len()
            .saturating_sub(self.header_len() + self.data.len());
        put(&[0; 8][..padding.min(8)])
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    fn encode(packet: &OutgoingPacket<'_>) -> Vec<u8> {
        let d = packet.descriptor().unwrap();
        let mut out = d.encode().to_vec();
        packet
            .write_body(&d, |b| {
                out.extend_from_slice(b);
                Ok::<(), ()>(())
            })
            .unwrap();
        out
    }

    #[test]
    fn in_band_packets_are_padded_to_eight_bytes() {
        let bytes = encode(&OutgoingPacket::in_band(b"hello"));
        assert_eq!(bytes.len(), 24);
        assert_eq!(bytes[0..8], [6, 0, 2, 0, 3, 0, 0, 0]);
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.packet_type(), Some(PacketType::DataInBand));
        assert_eq!(p.data(), b"hello\0\0\0");
        assert!(p.extra_header().is_empty());
        assert!(!p.completion_requested());
    }

    #[test]
    fn gpa_direct_packets_carry_their_ranges_before_the_data() {
        let pfns = [0x111, 0x222];
        let ranges = [GpaRange {
            byte_count: 5000,
            byte_offset: 100,
            pfns: PfnList::Slice(&pfns),
        }];
        let mut packet = OutgoingPacket::gpa_direct(&ranges, b"rq");
        packet.flags = FLAG_COMPLETION_REQUESTED;
        packet.transaction_id = 77;
        let bytes = encode(&packet);
        // descriptor 16 + reserved/count 8 + range 8 + 2 pfns 16 = 48, data 2 -> 56.
        assert_eq!(bytes.len(), 56);
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.descriptor().offset8, 6);
        assert_eq!(p.descriptor().len8, 7);
        assert_eq!(p.transaction_id(), 77);
        assert!(p.completion_requested());
        assert_eq!(&p.data()[..2], b"rq");
        let got: Vec<_> = p.gpa_ranges().unwrap().map(Result::unwrap).collect();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].byte_count, got[0].byte_offset), (5000, 100));
        assert_eq!(got[0].pfns.len(), 2);
        assert_eq!(got[0].pfns.get(1), Some(0x222));
    }

    #[test]
    fn refuses_ranges_whose_pages_do_not_match_their_bytes() {
        let pfns = [1];
        let ranges = [GpaRange {
            byte_count: 4097,
            byte_offset: 0,
            pfns: PfnList::Slice(&pfns),
        }];
        assert_eq!(
            OutgoingPacket::gpa_direct(&ranges, &[]).descriptor(),
            Err(PacketError::BadRanges)
        );
        assert_eq!(GpaRange::pages_spanned(0, 0), None);
        assert_eq!(GpaRange::pages_spanned(1, 4096), None);
        assert_eq!(GpaRange::pages_spanned(1, 4095), Some(1));
        assert_eq!(GpaRange::pages_spanned(2, 4095), Some(2));
    }

    #[test]
    fn rejects_received_ranges_that_overrun_the_header() {
        let pfns = [1, 2];
        let ranges = [GpaRange {
            byte_count: 8192,
            byte_offset: 0,
            pfns: PfnList::Slice(&pfns),
        }];
        let mut bytes = encode(&OutgoingPacket::gpa_direct(&ranges, &[]));
        // Claim two ranges where one fits.
        bytes[20] = 2;
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.gpa_ranges().unwrap_err(), PacketError::BadRanges);
        // A range claiming three pages where two are present.
        bytes[20] = 1;
        bytes[24..28].copy_from_slice(&9000u32.to_le_bytes());
        assert_eq!(
            Packet::parse(&bytes).unwrap().gpa_ranges().unwrap_err(),
            PacketError::BadRanges
        );
        // An in-band packet has no range header at all.
        let plain = encode(&OutgoingPacket::in_band(&[1]));
        assert_eq!(
            Packet::parse(&plain).unwrap().gpa_ranges().unwrap_err(),
            PacketError::BadRanges
        );
    }

    #[test]
    fn rejects_descriptors_that_disagree_with_themselves() {
        let mut bytes = encode(&OutgoingPacket::in_band(&[0; 16]));
        bytes[4] = 1; // len8 = 1: below the header
        assert_eq!(
            Packet::parse(&bytes),
            Err(PacketError::LengthBelowHeader { len: 8 })
        );
        bytes[4] = 4;
        bytes[2] = 1; // offset inside the descriptor
        assert_eq!(
            Packet::parse(&bytes),
            Err(PacketError::OffsetOutsidePacket { offset: 8, len: 32 })
        );
        bytes[2] = 5; // offset past the end
        assert_eq!(
            Packet::parse(&bytes),
            Err(PacketError::OffsetOutsidePacket {
                offset: 40,
                len: 32
            })
        );
        bytes[2] = 4; // offset exactly at the end: no data, fine
        assert_eq!(Packet::parse(&bytes).unwrap().data(), &[] as &[u8]);
        assert!(Packet::parse(&bytes[..8]).is_err());
        assert_eq!(
            Packet::parse(&bytes[..24]),
            Err(PacketError::LengthPastBuffer {
                len: 32,
                available: 24
            })
        );
    }

    #[test]
    fn refuses_packets_longer_than_len8() {
        let big = std::vec![0u8; MAX_PACKET_SIZE];
        assert!(matches!(
            OutgoingPacket::in_band(&big).descriptor(),
            Err(PacketError::TooLarge { .. })
        ));
        let fits = &big[..MAX_PACKET_SIZE - DESCRIPTOR_SIZE];
        assert_eq!(
            OutgoingPacket::in_band(fits).descriptor().unwrap().len8,
            u16::MAX
        );
    }

    #[test]
    fn knows_every_packet_type() {
        for n in 0..=0xd {
            assert_eq!(PacketType::from_u16(n).map(|t| t as u16), Some(n));
        }
        assert_eq!(PacketType::from_u16(0xe), None);
    }
}
