//! Dynamic Memory messages: the wire formats, parsed from untrusted copies and encoded.
//!
//! Every message is the data of one in-band VMBus packet and starts with `dm_header`; all
//! fields are little-endian. The layouts (Linux `drivers/hv/hv_balloon.c`, QEMU
//! `include/hw/hyperv/dynmem-proto.h`), as offsets after the 8-byte header:
//!
//! ```text
//! header        0 type (u16)  2 size (u16, header included)  4 trans_id (u32)
//!
//! guest -> host
//!  1 VERSION_REQUEST       0 version (minor u16, major u16)  4 bit 0: is_last_attempt
//!  3 CAPABILITIES_REPORT   0 caps (u64: bit 0 balloon, 1 hot_add, 2-5 hot_add_alignment,
//!                            6 hot_remove)  8 min_page_cnt (u64)  16 max_page_number (u64)
//!  5 STATUS_REPORT         0 num_avail  8 num_committed  16 page_file_size  24 zero_free
//!                            (u64 each)  32 page_file_writes (u32)  36 io_diff (u32)
//!  7 BALLOON_RESPONSE      0 reserved (u32)  4 bit 0: more_pages, bits 1-31: range_count
//!                            8 ranges (u64 each)
//!  9 UNBALLOON_RESPONSE    (header only)
//! 11 MEM_HOT_ADD_RESPONSE  0 page_count (u32)  4 result (u32: 1 success, 0 failure)
//!
//! host -> guest
//!  2 VERSION_RESPONSE      0 bit 0: is_accepted (u64)
//!  4 CAPABILITIES_RESPONSE 0 bit 0: is_accepted, 1: hot_remove, 2: suppress_pressure_reports
//!  6 BALLOON_REQUEST       0 num_pages (u32)  4 reserved (u32)
//!  8 UNBALLOON_REQUEST     0 bit 0: more_pages (u32)  4 range_count (u32)  8 ranges
//! 10 MEM_HOT_ADD_REQUEST   0 range  [8 region: QEMU and Hyper-V may add the region to add]
//! 12 INFO_MESSAGE          0 reserved (u32)  4 info_size (u32)  8 info: type (u32),
//!                            data_size (u32), data
//!
//! range (dm_mem_page_range, u64): bits 0-39 first page frame, bits 40-63 page count
//! ```
//!
//! Note the two range-list headers differ: a balloon response packs `more_pages` and a 31-bit
//! count in one `u32`; an unballoon request has `more_pages` in one `u32` and the count in the
//! next.
//!
//! `DM_ERROR` (0) and the hot-remove pair (13, 14, protocol 2.0) are known but not spoken: they
//! parse as [`ParseError::Unsupported`].
//!
//! # Trust
//!
//! Parsers take a copy of the packet's data (padded to 8 bytes by VMBus, so `size`, not the
//! packet length, ends the message). `size` must cover the header and the type's fixed fields
//! and lie within the copy; a range count must fit inside `size`. Bytes past what the type
//! defines are ignored. Encoders write exactly the type's size.

use alloc::vec::Vec;
use core::fmt;

use crate::pages::PageRange;

/// Size of `dm_header`.
pub const HEADER_SIZE: usize = 8;

/// The largest message the guest sends: one Hyper-V page, as Linux's `hv_balloon` limits its
/// balloon responses (`HV_HYP_PAGE_SIZE`).
pub const MAX_MESSAGE_SIZE: usize = 4096;

/// Bytes of one page range.
pub const RANGE_SIZE: usize = 8;

/// The fixed part of a balloon response or unballoon request, before the ranges.
const RANGE_LIST_HEADER: usize = HEADER_SIZE + 8;

/// The most ranges one balloon response carries: 510, to stay within [`MAX_MESSAGE_SIZE`].
pub const MAX_RESPONSE_RANGES: usize = (MAX_MESSAGE_SIZE - RANGE_LIST_HEADER) / RANGE_SIZE;

/// `MEM_HOT_ADD_RESPONSE.result` for success. With a page count of 0 it tells the host that
/// hot add is permanently impossible, so it stops asking (Linux, when hot add is disabled).
pub const HOT_ADD_SUCCESS: u32 = 1;

/// A protocol version, `dm_version`: major in the high 16 bits, minor in the low, the same
/// encoding as VMBus's own versions.
///
/// Linux names the three versions by generation: `DYNMEM_PROTOCOL_VERSION_1` is 0.3 (Windows
/// 7), `_2` is 1.0 (Windows 8), `_3` is 2.0 (Windows 10, current). The numbers here are the
/// wire's: QEMU's hv-balloon speaks "protocol 2.0" and accepts 0.3 to 2.0.
pub use ringbolt_vmbus::Version;

/// `DYNMEM_PROTOCOL_VERSION_WIN7` (Linux's `_VERSION_1`).
pub const WIN7: Version = Version::new(0, 3);
/// `DYNMEM_PROTOCOL_VERSION_WIN8` (Linux's `_VERSION_2`): adds `INFO_MESSAGE`.
pub const WIN8: Version = Version::new(1, 0);
/// `DYNMEM_PROTOCOL_VERSION_WIN10` (Linux's `_VERSION_3`, `_CURRENT`).
pub const WIN10: Version = Version::new(2, 0);

/// What the guest offers, in order, falling back on each rejection as Linux does; the last is
/// sent as the last attempt.
pub const NEGOTIABLE: [Version; 3] = [WIN10, WIN8, WIN7];

/// `enum dm_message_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum MessageType {
    Error = 0,
    VersionRequest = 1,
    VersionResponse = 2,
    CapabilitiesReport = 3,
    CapabilitiesResponse = 4,
    StatusReport = 5,
    BalloonRequest = 6,
    BalloonResponse = 7,
    UnballoonRequest = 8,
    UnballoonResponse = 9,
    HotAddRequest = 10,
    HotAddResponse = 11,
    Info = 12,
    HotRemoveRequest = 13,
    HotRemoveResponse = 14,
}

/// Which way a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    ToHost,
    ToGuest,
    /// Known, not spoken here.
    Unsupported,
}

impl MessageType {
    pub const ALL: [MessageType; 15] = [
        MessageType::Error,
        MessageType::VersionRequest,
        MessageType::VersionResponse,
        MessageType::CapabilitiesReport,
        MessageType::CapabilitiesResponse,
        MessageType::StatusReport,
        MessageType::BalloonRequest,
        MessageType::BalloonResponse,
        MessageType::UnballoonRequest,
        MessageType::UnballoonResponse,
        MessageType::HotAddRequest,
        MessageType::HotAddResponse,
        MessageType::Info,
        MessageType::HotRemoveRequest,
        MessageType::HotRemoveResponse,
    ];

    pub fn from_u16(value: u16) -> Option<MessageType> {
        Self::ALL.get(usize::from(value)).copied()
    }

    fn direction(self) -> Direction {
        use MessageType::*;
        match self {
            VersionRequest | CapabilitiesReport | StatusReport | BalloonResponse
            | UnballoonResponse | HotAddResponse => Direction::ToHost,
            VersionResponse | CapabilitiesResponse | BalloonRequest | UnballoonRequest
            | HotAddRequest | Info => Direction::ToGuest,
            Error | HotRemoveRequest | HotRemoveResponse => Direction::Unsupported,
        }
    }
}

/// Why a message was rejected before its meaning was looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than the 8-byte header.
    ShortHeader {
        len: usize,
    },
    /// A `size` smaller than the header it is part of.
    SizeBelowHeader {
        size: u16,
    },
    /// A `size` larger than the bytes that arrived.
    SizePastData {
        size: u16,
        len: usize,
    },
    UnknownType(u16),
    /// A message that travels the other way.
    WrongDirection(MessageType),
    /// `DM_ERROR` or hot remove: known, not implemented.
    Unsupported(MessageType),
    /// A `size` too small for the type's fixed fields.
    Truncated {
        msg_type: MessageType,
        size: u16,
        needed: usize,
    },
    /// More ranges than `size` has room for.
    RangesPastSize {
        msg_type: MessageType,
        count: u32,
        size: u16,
    },
    /// An info blob past the end of the message, or too short for its own header and data.
    BadInfo {
        info_size: u32,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::ShortHeader { len } => write!(f, "{len} bytes, less than a header"),
            ParseError::SizeBelowHeader { size } => write!(f, "size {size} below the header"),
            ParseError::SizePastData { size, len } => {
                write!(f, "size {size} past the {len} bytes received")
            }
            ParseError::UnknownType(t) => write!(f, "unknown message type {t}"),
            ParseError::WrongDirection(t) => write!(f, "{t:?} travels the other way"),
            ParseError::Unsupported(t) => write!(f, "{t:?} is not supported"),
            ParseError::Truncated {
                msg_type,
                size,
                needed,
            } => write!(f, "{msg_type:?} of {size} bytes, needs {needed}"),
            ParseError::RangesPastSize {
                msg_type,
                count,
                size,
            } => write!(f, "{msg_type:?} of {size} bytes claims {count} ranges"),
            ParseError::BadInfo { info_size } => {
                write!(f, "{info_size}-byte info blob does not fit")
            }
        }
    }
}

impl core::error::Error for ParseError {}

/// A list of page ranges: the caller's when encoding, the message copy's when parsing.
#[derive(Clone, Copy, Debug)]
pub enum Ranges<'a> {
    Slice(&'a [PageRange]),
    /// Exactly `len * 8` bytes of encoded ranges.
    Wire(&'a [u8]),
}

impl<'a> Ranges<'a> {
    pub fn len(&self) -> usize {
        match self {
            Ranges::Slice(s) => s.len(),
            Ranges::Wire(b) => b.len() / RANGE_SIZE,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = PageRange> + 'a {
        let (slice, wire): (&[PageRange], &[u8]) = match *self {
            Ranges::Slice(s) => (s, &[]),
            Ranges::Wire(b) => (&[], b),
        };
        slice.iter().copied().chain(
            wire.chunks_exact(RANGE_SIZE)
                .map(|chunk| PageRange::from_wire(u64_at(chunk, 0))),
        )
    }

    /// Pages in all the ranges.
    pub fn pages(&self) -> u64 {
        self.iter().map(PageRange::count).sum()
    }
}

impl PartialEq for Ranges<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Ranges<'_> {}

/// `dm_caps`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub balloon: bool,
    pub hot_add: bool,
    /// Hot-add alignment as a power of two of MiB (4 bits).
    pub hot_add_alignment: u8,
    /// Protocol 2.0 (QEMU's header; Linux does not set it).
    pub hot_remove: bool,
}

impl Capabilities {
    fn to_bits(self) -> u64 {
        u64::from(self.balloon)
            | u64::from(self.hot_add) << 1
            | u64::from(self.hot_add_alignment & 0xf) << 2
            | u64::from(self.hot_remove) << 6
    }

    fn from_bits(bits: u64) -> Capabilities {
        Capabilities {
            balloon: bits & 1 != 0,
            hot_add: bits & 2 != 0,
            hot_add_alignment: (bits >> 2 & 0xf) as u8,
            hot_remove: bits & 1 << 6 != 0,
        }
    }
}

/// `dm_capabilities` without its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapabilitiesReport {
    pub caps: Capabilities,
    pub min_page_count: u64,
    pub max_page_number: u64,
}

/// `dm_capabilities_resp_msg` without its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapabilitiesResponse {
    pub accepted: bool,
    /// The host can ask for memory to be hot-removed (QEMU sets it).
    pub hot_remove: bool,
    /// The host wants no `STATUS_REPORT`s (QEMU sets it unless its `status-report` property is
    /// on).
    pub suppress_pressure_reports: bool,
}

/// `dm_status` without its header: the guest's memory figures, in 4 KiB pages. The host's
/// pressure algorithm uses only `committed` (Linux's comment); Linux sends `available` and
/// `committed` and zeroes the rest, which are Windows metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStatus {
    /// Memory available to the guest without paging.
    pub available: u64,
    /// Memory the guest uses or has promised, plus a floor it will not balloon below, plus
    /// (added by the driver) the pages the host holds.
    pub committed: u64,
    pub page_file_size: u64,
    pub zero_free: u64,
    pub page_file_writes: u32,
    pub io_diff: u32,
}

/// `dm_info_header` and its data, from an `INFO_MESSAGE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info<'a> {
    pub info_type: u32,
    pub data: &'a [u8],
}

impl Info<'_> {
    /// `INFO_TYPE_MAX_PAGE_CNT`: the most pages the VM may grow to, as a `u64`.
    pub const MAX_PAGE_COUNT: u32 = 0;

    /// The maximum page count, if that is what this info says (with the 8 bytes it needs).
    pub fn max_page_count(&self) -> Option<u64> {
        (self.info_type == Self::MAX_PAGE_COUNT && self.data.len() == 8)
            .then(|| u64_at(self.data, 0))
    }
}

/// A message the host sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostMessage<'a> {
    pub trans_id: u32,
    pub body: HostBody<'a>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostBody<'a> {
    VersionResponse {
        accepted: bool,
    },
    CapabilitiesResponse(CapabilitiesResponse),
    BalloonRequest {
        num_pages: u32,
    },
    UnballoonRequest {
        more_pages: bool,
        ranges: Ranges<'a>,
    },
    /// `range` to add; `region` is the region to add it in, when the host names one.
    HotAddRequest {
        range: PageRange,
        region: Option<PageRange>,
    },
    Info(Info<'a>),
}

/// A message the guest sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMessage<'a> {
    pub trans_id: u32,
    pub body: GuestBody<'a>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestBody<'a> {
    VersionRequest {
        version: Version,
        last_attempt: bool,
    },
    CapabilitiesReport(CapabilitiesReport),
    StatusReport(MemoryStatus),
    BalloonResponse {
        more_pages: bool,
        ranges: Ranges<'a>,
    },
    UnballoonResponse,
    HotAddResponse {
        page_count: u32,
        result: u32,
    },
}

impl HostBody<'_> {
    pub fn msg_type(&self) -> MessageType {
        match self {
            HostBody::VersionResponse { .. } => MessageType::VersionResponse,
            HostBody::CapabilitiesResponse(_) => MessageType::CapabilitiesResponse,
            HostBody::BalloonRequest { .. } => MessageType::BalloonRequest,
            HostBody::UnballoonRequest { .. } => MessageType::UnballoonRequest,
            HostBody::HotAddRequest { .. } => MessageType::HotAddRequest,
            HostBody::Info(_) => MessageType::Info,
        }
    }
}

impl GuestBody<'_> {
    pub fn msg_type(&self) -> MessageType {
        match self {
            GuestBody::VersionRequest { .. } => MessageType::VersionRequest,
            GuestBody::CapabilitiesReport(_) => MessageType::CapabilitiesReport,
            GuestBody::StatusReport(_) => MessageType::StatusReport,
            GuestBody::BalloonResponse { .. } => MessageType::BalloonResponse,
            GuestBody::UnballoonResponse => MessageType::UnballoonResponse,
            GuestBody::HotAddResponse { .. } => MessageType::HotAddResponse,
        }
    }
}

/// A message's header and the bytes after it, up to `size`, checked to travel `direction`.
struct Frame<'a> {
    msg_type: MessageType,
    trans_id: u32,
    size: u16,
    body: &'a [u8],
}

impl<'a> Frame<'a> {
    fn parse(bytes: &'a [u8], direction: Direction) -> Result<Frame<'a>, ParseError> {
        let header = bytes
            .get(..HEADER_SIZE)
            .ok_or(ParseError::ShortHeader { len: bytes.len() })?;
        let raw_type = u16_at(header, 0);
        let size = u16_at(header, 2);
        if usize::from(size) < HEADER_SIZE {
            return Err(ParseError::SizeBelowHeader { size });
        }
        let message = bytes
            .get(..usize::from(size))
            .ok_or(ParseError::SizePastData {
                size,
                len: bytes.len(),
            })?;
        let msg_type = MessageType::from_u16(raw_type).ok_or(ParseError::UnknownType(raw_type))?;
        match msg_type.direction() {
            d if d == direction => {}
            Direction::Unsupported => return Err(ParseError::Unsupported(msg_type)),
            _ => return Err(ParseError::WrongDirection(msg_type)),
        }
        Ok(Frame {
            msg_type,
            trans_id: u32_at(header, 4),
            size,
            body: &message[HEADER_SIZE..],
        })
    }

    /// The body, checked to hold at least `needed` bytes after the header.
    fn fixed(&self, needed: usize) -> Result<&'a [u8], ParseError> {
        if self.body.len() < needed {
            return Err(ParseError::Truncated {
                msg_type: self.msg_type,
                size: self.size,
                needed: HEADER_SIZE + needed,
            });
        }
        Ok(self.body)
    }

    /// `count` ranges from byte 8 of the body.
    fn ranges(&self, count: u32) -> Result<Ranges<'a>, ParseError> {
        let past = ParseError::RangesPastSize {
            msg_type: self.msg_type,
            count,
            size: self.size,
        };
        let len = (count as usize).checked_mul(RANGE_SIZE).ok_or(past)?;
        self.body
            .get(8..)
            .and_then(|rest| rest.get(..len))
            .map(Ranges::Wire)
            .ok_or(past)
    }
}

impl<'a> HostMessage<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<HostMessage<'a>, ParseError> {
        let frame = Frame::parse(bytes, Direction::ToGuest)?;
        let body = match frame.msg_type {
            MessageType::VersionResponse => HostBody::VersionResponse {
                accepted: u64_at(frame.fixed(8)?, 0) & 1 != 0,
            },
            MessageType::CapabilitiesResponse => {
                let bits = u64_at(frame.fixed(8)?, 0);
                HostBody::CapabilitiesResponse(CapabilitiesResponse {
                    accepted: bits & 1 != 0,
                    hot_remove: bits & 2 != 0,
                    suppress_pressure_reports: bits & 4 != 0,
                })
            }
            MessageType::BalloonRequest => HostBody::BalloonRequest {
                num_pages: u32_at(frame.fixed(8)?, 0),
            },
            MessageType::UnballoonRequest => {
                let fixed = frame.fixed(8)?;
                HostBody::UnballoonRequest {
                    more_pages: u32_at(fixed, 0) & 1 != 0,
                    ranges: frame.ranges(u32_at(fixed, 4))?,
                }
            }
            MessageType::HotAddRequest => {
                let fixed = frame.fixed(RANGE_SIZE)?;
                HostBody::HotAddRequest {
                    range: PageRange::from_wire(u64_at(fixed, 0)),
                    region: (fixed.len() >= 2 * RANGE_SIZE)
                        .then(|| PageRange::from_wire(u64_at(fixed, RANGE_SIZE))),
                }
            }
            MessageType::Info => {
                let fixed = frame.fixed(8)?;
                let info_size = u32_at(fixed, 4);
                let bad = ParseError::BadInfo { info_size };
                let info = fixed
                    .get(8..)
                    .and_then(|rest| rest.get(..info_size as usize))
                    .ok_or(bad)?;
                let header = info.get(..8).ok_or(bad)?;
                let data = info
                    .get(8..)
                    .and_then(|rest| rest.get(..u32_at(header, 4) as usize))
                    .ok_or(bad)?;
                HostBody::Info(Info {
                    info_type: u32_at(header, 0),
                    data,
                })
            }
            other => return Err(ParseError::WrongDirection(other)),
        };
        Ok(HostMessage {
            trans_id: frame.trans_id,
            body,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(self.body.msg_type(), self.trans_id);
        match self.body {
            HostBody::VersionResponse { accepted } => w.u64(u64::from(accepted)),
            HostBody::CapabilitiesResponse(r) => w.u64(
                u64::from(r.accepted)
                    | u64::from(r.hot_remove) << 1
                    | u64::from(r.suppress_pressure_reports) << 2,
            ),
            HostBody::BalloonRequest { num_pages } => {
                w.u32(num_pages);
                w.u32(0);
            }
            HostBody::UnballoonRequest { more_pages, ranges } => {
                w.u32(u32::from(more_pages));
                w.u32(ranges.len() as u32);
                w.ranges(ranges);
            }
            HostBody::HotAddRequest { range, region } => {
                w.u64(range.to_wire());
                if let Some(region) = region {
                    w.u64(region.to_wire());
                }
            }
            HostBody::Info(info) => {
                w.u32(0);
                w.u32((8 + info.data.len()) as u32);
                w.u32(info.info_type);
                w.u32(info.data.len() as u32);
                w.bytes(info.data);
            }
        }
        w.finish()
    }
}

impl<'a> GuestMessage<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<GuestMessage<'a>, ParseError> {
        let frame = Frame::parse(bytes, Direction::ToHost)?;
        let body = match frame.msg_type {
            MessageType::VersionRequest => {
                let fixed = frame.fixed(8)?;
                GuestBody::VersionRequest {
                    version: Version(u32_at(fixed, 0)),
                    last_attempt: u32_at(fixed, 4) & 1 != 0,
                }
            }
            MessageType::CapabilitiesReport => {
                let fixed = frame.fixed(24)?;
                GuestBody::CapabilitiesReport(CapabilitiesReport {
                    caps: Capabilities::from_bits(u64_at(fixed, 0)),
                    min_page_count: u64_at(fixed, 8),
                    max_page_number: u64_at(fixed, 16),
                })
            }
            MessageType::StatusReport => {
                let fixed = frame.fixed(40)?;
                GuestBody::StatusReport(MemoryStatus {
                    available: u64_at(fixed, 0),
                    committed: u64_at(fixed, 8),
                    page_file_size: u64_at(fixed, 16),
                    zero_free: u64_at(fixed, 24),
                    page_file_writes: u32_at(fixed, 32),
                    io_diff: u32_at(fixed, 36),
                })
            }
            MessageType::BalloonResponse => {
                let word = u32_at(frame.fixed(8)?, 4);
                GuestBody::BalloonResponse {
                    more_pages: word & 1 != 0,
                    ranges: frame.ranges(word >> 1)?,
                }
            }
            MessageType::UnballoonResponse => GuestBody::UnballoonResponse,
            MessageType::HotAddResponse => {
                let fixed = frame.fixed(8)?;
                GuestBody::HotAddResponse {
                    page_count: u32_at(fixed, 0),
                    result: u32_at(fixed, 4),
                }
            }
            other => return Err(ParseError::WrongDirection(other)),
        };
        Ok(GuestMessage {
            trans_id: frame.trans_id,
            body,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(self.body.msg_type(), self.trans_id);
        match self.body {
            GuestBody::VersionRequest {
                version,
                last_attempt,
            } => {
                w.u32(version.0);
                w.u32(u32::from(last_attempt));
            }
            GuestBody::CapabilitiesReport(r) => {
                w.u64(r.caps.to_bits());
                w.u64(r.min_page_count);
                w.u64(r.max_page_number);
            }
            GuestBody::StatusReport(s) => {
                for v in [s.available, s.committed, s.page_file_size, s.zero_free] {
                    w.u64(v);
                }
                w.u32(s.page_file_writes);
                w.u32(s.io_diff);
            }
            GuestBody::BalloonResponse { more_pages, ranges } => {
                w.u32(0);
                w.u32(u32::from(more_pages) | (ranges.len() as u32) << 1);
                w.ranges(ranges);
            }
            GuestBody::UnballoonResponse => {}
            GuestBody::HotAddResponse { page_count, result } => {
                w.u32(page_count);
                w.u32(result);
            }
        }
        w.finish()
    }
}

/// Lays out a message; `finish` writes its size into the header.
struct Writer(Vec<u8>);

impl Writer {
    fn new(msg_type: MessageType, trans_id: u32) -> Writer {
        let mut w = Writer(Vec::with_capacity(64));
        w.u16(msg_type as u16);
        w.u16(0);
        w.u32(trans_id);
        w
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    fn ranges(&mut self, ranges: Ranges<'_>) {
        for range in ranges.iter() {
            self.u64(range.to_wire());
        }
    }

    /// The message, its size set. A message over 65535 bytes cannot be described: every
    /// caller sends far less (the driver at most [`MAX_MESSAGE_SIZE`]).
    fn finish(mut self) -> Vec<u8> {
        let size = u16::try_from(self.0.len());
        debug_assert!(size.is_ok(), "{}-byte message", self.0.len());
        self.0[2..4].copy_from_slice(&size.unwrap_or(u16::MAX).to_le_bytes());
        self.0
    }
}

/// The little-endian `N` bytes at `at`; zeros where `bytes` is short (callers check lengths
/// first, so that never happens, and nothing can panic).
fn le<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(src) = bytes.get(at..).and_then(|rest| rest.get(..N)) {
        out.copy_from_slice(src);
    }
    out
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(le(bytes, at))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(le(bytes, at))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(le(bytes, at))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;
    use std::vec;

    fn range(start: u64, count: u64) -> PageRange {
        PageRange::new(start, count).unwrap()
    }

    #[test]
    fn encodes_a_version_request_as_linux_lays_it_out() {
        let m = GuestMessage {
            trans_id: 0x0102_0304,
            body: GuestBody::VersionRequest {
                version: WIN10,
                last_attempt: false,
            },
        };
        assert_eq!(
            m.encode(),
            [1, 0, 16, 0, 4, 3, 2, 1, 0, 0, 2, 0, 0, 0, 0, 0]
        );
        let last = GuestMessage {
            trans_id: 9,
            body: GuestBody::VersionRequest {
                version: WIN7,
                last_attempt: true,
            },
        };
        assert_eq!(last.encode()[8..], [3, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(WIN8.0, 0x0001_0000);
        assert_eq!(WIN10.to_string(), "2.0");
        assert_eq!(WIN7.to_string(), "0.3");
    }

    #[test]
    fn encodes_capabilities_status_and_hot_add_answers_at_their_sizes() {
        let caps = GuestMessage {
            trans_id: 2,
            body: GuestBody::CapabilitiesReport(CapabilitiesReport {
                caps: Capabilities {
                    balloon: true,
                    hot_add: false,
                    hot_add_alignment: 7,
                    hot_remove: false,
                },
                min_page_count: 0,
                max_page_number: u64::MAX,
            }),
        }
        .encode();
        assert_eq!(caps.len(), 32);
        assert_eq!(caps[..4], [3, 0, 32, 0]);
        assert_eq!(caps[8..16], [0b0001_1101, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(caps[24..], [0xff; 8]);
        let status = GuestMessage {
            trans_id: 3,
            body: GuestBody::StatusReport(MemoryStatus {
                available: 1,
                committed: 2,
                page_file_writes: 5,
                io_diff: 6,
                ..MemoryStatus::default()
            }),
        }
        .encode();
        assert_eq!(status.len(), 48);
        assert_eq!(status[16], 2);
        assert_eq!(status[40..], [5, 0, 0, 0, 6, 0, 0, 0]);
        let hot_add = GuestMessage {
            trans_id: 4,
            body: GuestBody::HotAddResponse {
                page_count: 0,
                result: HOT_ADD_SUCCESS,
            },
        }
        .encode();
        assert_eq!(hot_add, [11, 0, 16, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        let unballoon = GuestMessage {
            trans_id: 5,
            body: GuestBody::UnballoonResponse,
        }
        .encode();
        assert_eq!(unballoon, [9, 0, 8, 0, 5, 0, 0, 0]);
    }

    #[test]
    fn packs_more_pages_and_the_count_of_a_balloon_response_in_one_word() {
        let ranges = [range(0x1000, 1), range(0x2000, 512)];
        let bytes = GuestMessage {
            trans_id: 1,
            body: GuestBody::BalloonResponse {
                more_pages: true,
                ranges: Ranges::Slice(&ranges),
            },
        }
        .encode();
        assert_eq!(bytes.len(), 32);
        assert_eq!(bytes[8..16], [0, 0, 0, 0, 0b101, 0, 0, 0]);
        assert_eq!(bytes[16..24], range(0x1000, 1).to_wire().to_le_bytes());
        let parsed = GuestMessage::parse(&bytes).unwrap();
        assert_eq!(
            parsed.body,
            GuestBody::BalloonResponse {
                more_pages: true,
                ranges: Ranges::Slice(&ranges)
            }
        );
        assert_eq!(MAX_RESPONSE_RANGES, 510);
    }

    #[test]
    fn parses_an_unballoon_request_with_its_count_in_a_word_of_its_own() {
        let mut bytes = vec![8, 0, 32, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0];
        bytes.extend(range(0x10, 3).to_wire().to_le_bytes());
        bytes.extend(range(0x40, 1).to_wire().to_le_bytes());
        let m = HostMessage::parse(&bytes).unwrap();
        assert_eq!(m.trans_id, 7);
        let HostBody::UnballoonRequest { more_pages, ranges } = m.body else {
            panic!("{m:?}");
        };
        assert!(more_pages);
        assert_eq!(
            ranges.iter().collect::<std::vec::Vec<_>>(),
            [range(0x10, 3), range(0x40, 1)]
        );
        assert_eq!(ranges.pages(), 4);
        assert_eq!(m.encode(), bytes);
    }

    #[test]
    fn parses_hot_add_with_and_without_a_region_and_info_messages() {
        let with_region = HostMessage {
            trans_id: 1,
            body: HostBody::HotAddRequest {
                range: range(0x4_0000, 0x8000),
                region: Some(range(0x4_0000, 0x8000)),
            },
        };
        let bytes = with_region.encode();
        assert_eq!(bytes.len(), 24);
        assert_eq!(HostMessage::parse(&bytes), Ok(with_region));
        let plain = HostMessage::parse(&bytes[..16]);
        assert!(plain.is_err(), "size still says 24");
        let mut short = bytes[..16].to_vec();
        short[2] = 16;
        assert_eq!(
            HostMessage::parse(&short).unwrap().body,
            HostBody::HotAddRequest {
                range: range(0x4_0000, 0x8000),
                region: None
            }
        );
        let info = HostMessage {
            trans_id: 2,
            body: HostBody::Info(Info {
                info_type: Info::MAX_PAGE_COUNT,
                data: &0x4_0000u64.to_le_bytes(),
            }),
        };
        let bytes = info.encode();
        assert_eq!(bytes.len(), 32);
        let parsed = HostMessage::parse(&bytes).unwrap();
        assert_eq!(parsed, info);
        let HostBody::Info(i) = parsed.body else {
            panic!()
        };
        assert_eq!(i.max_page_count(), Some(0x4_0000));
    }

    #[test]
    fn parses_the_capabilities_response_bits_qemu_sets() {
        let bytes = [4, 0, 16, 0, 1, 0, 0, 0, 0b111, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            HostMessage::parse(&bytes).unwrap().body,
            HostBody::CapabilitiesResponse(CapabilitiesResponse {
                accepted: true,
                hot_remove: true,
                suppress_pressure_reports: true
            })
        );
    }

    #[test]
    fn rejects_lying_sizes_and_types() {
        let request = HostMessage {
            trans_id: 1,
            body: HostBody::BalloonRequest { num_pages: 5 },
        }
        .encode();
        let with_size = |size: u16| {
            let mut b = request.clone();
            b[2..4].copy_from_slice(&size.to_le_bytes());
            b
        };
        assert_eq!(
            HostMessage::parse(&request[..7]),
            Err(ParseError::ShortHeader { len: 7 })
        );
        assert_eq!(
            HostMessage::parse(&with_size(7)),
            Err(ParseError::SizeBelowHeader { size: 7 })
        );
        assert_eq!(
            HostMessage::parse(&with_size(17)),
            Err(ParseError::SizePastData { size: 17, len: 16 })
        );
        assert_eq!(
            HostMessage::parse(&with_size(15)),
            Err(ParseError::Truncated {
                msg_type: MessageType::BalloonRequest,
                size: 15,
                needed: 16
            })
        );
        let mut unknown = request.clone();
        unknown[0] = 15;
        assert_eq!(
            HostMessage::parse(&unknown),
            Err(ParseError::UnknownType(15))
        );
        for (t, e) in [
            (5, ParseError::WrongDirection(MessageType::StatusReport)),
            (0, ParseError::Unsupported(MessageType::Error)),
            (13, ParseError::Unsupported(MessageType::HotRemoveRequest)),
        ] {
            let mut b = request.clone();
            b[0] = t;
            assert_eq!(HostMessage::parse(&b), Err(e));
        }
        assert_eq!(
            GuestMessage::parse(&request),
            Err(ParseError::WrongDirection(MessageType::BalloonRequest))
        );
        // Trailing bytes past `size` (VMBus padding) are not part of the message.
        let mut padded = with_size(16);
        padded.extend([0xff; 8]);
        assert!(HostMessage::parse(&padded).is_ok());
    }

    #[test]
    fn rejects_range_counts_past_the_size() {
        let mut bytes = vec![8, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0];
        bytes.extend([0; 8]);
        assert_eq!(
            HostMessage::parse(&bytes),
            Err(ParseError::RangesPastSize {
                msg_type: MessageType::UnballoonRequest,
                count: 2,
                size: 24
            })
        );
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            HostMessage::parse(&bytes),
            Err(ParseError::RangesPastSize { .. })
        ));
        let mut response = vec![7, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            GuestMessage::parse(&response),
            Err(ParseError::RangesPastSize {
                count: 0x7fff_ffff,
                ..
            })
        ));
        response[12..16].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            GuestMessage::parse(&response).unwrap().body,
            GuestBody::BalloonResponse {
                more_pages: true,
                ranges: Ranges::Slice(&[])
            }
        );
    }

    #[test]
    fn rejects_info_blobs_that_do_not_fit() {
        let info = |info_size: u32, data_size: u32| {
            let mut b = vec![12, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            b.extend(info_size.to_le_bytes());
            b.extend(0u32.to_le_bytes());
            b.extend(data_size.to_le_bytes());
            b.extend([0; 8]);
            HostMessage::parse(&b).map(|_| ())
        };
        assert!(info(16, 8).is_ok());
        assert!(info(16, 0).is_ok());
        assert_eq!(info(17, 8), Err(ParseError::BadInfo { info_size: 17 }));
        assert_eq!(info(16, 9), Err(ParseError::BadInfo { info_size: 16 }));
        assert_eq!(info(4, 0), Err(ParseError::BadInfo { info_size: 4 }));
        assert_eq!(
            info(u32::MAX, 0),
            Err(ParseError::BadInfo {
                info_size: u32::MAX
            })
        );
    }

    #[test]
    fn every_message_round_trips() {
        let ranges = [range(1, 2), range(0xff_ffff_ffff, PageRange::MAX_COUNT)];
        let guest = [
            GuestBody::VersionRequest {
                version: WIN8,
                last_attempt: true,
            },
            GuestBody::CapabilitiesReport(CapabilitiesReport {
                caps: Capabilities {
                    balloon: true,
                    hot_add: true,
                    hot_add_alignment: 15,
                    hot_remove: true,
                },
                min_page_count: 3,
                max_page_number: 4,
            }),
            GuestBody::StatusReport(MemoryStatus {
                available: 1,
                committed: 2,
                page_file_size: 3,
                zero_free: 4,
                page_file_writes: 5,
                io_diff: 6,
            }),
            GuestBody::BalloonResponse {
                more_pages: false,
                ranges: Ranges::Slice(&ranges),
            },
            GuestBody::UnballoonResponse,
            GuestBody::HotAddResponse {
                page_count: 7,
                result: 0,
            },
        ];
        for body in guest {
            let m = GuestMessage { trans_id: 42, body };
            let bytes = m.encode();
            assert_eq!(GuestMessage::parse(&bytes), Ok(m), "{body:?}");
        }
        let host = [
            HostBody::VersionResponse { accepted: true },
            HostBody::CapabilitiesResponse(CapabilitiesResponse {
                accepted: true,
                hot_remove: false,
                suppress_pressure_reports: true,
            }),
            HostBody::BalloonRequest { num_pages: 9 },
            HostBody::UnballoonRequest {
                more_pages: false,
                ranges: Ranges::Slice(&ranges),
            },
            HostBody::HotAddRequest {
                range: range(5, 6),
                region: None,
            },
            HostBody::Info(Info {
                info_type: 3,
                data: b"abc",
            }),
        ];
        for body in host {
            let m = HostMessage { trans_id: 43, body };
            let bytes = m.encode();
            assert_eq!(HostMessage::parse(&bytes), Ok(m), "{body:?}");
        }
    }
}
