//! The ICMSG framework every integration service speaks (`include/linux/hyperv.h`).
//!
//! Each VMBus in-band packet from the host carries one message: a pipe header
//! (`vmbuspipe_hdr`: the pipe packet type, 1 for data, and the message's size), the IC header
//! (`icmsg_hdr`), and the payload. The guest answers every request in place: the same header
//! with `icflags` set to transaction and response, a status, and the payload with the fields the
//! request asks for filled in, sent back with the request's VMBus transaction id.
//!
//! ```text
//!  0 pipe flags (u32) = 1      4 pipe msgsize (u32): bytes after the pipe header
//!  8 icverframe (major u16, minor u16)   12 icmsgtype (u16)   14 icvermsg (major, minor)
//! 18 icmsgsize (u16): payload bytes      20 status (u32)      24 ictransaction_id (u8)
//! 25 icflags (u8)  26 reserved[2]        28 payload
//! ```
//!
//! The first message on a channel is `ICMSGTYPE_NEGOTIATE` ([`negotiate`]): the host lists the
//! framework and service versions it speaks, the guest picks one of each.
//!
//! # Trust
//!
//! Both sizes are checked against what arrived: a pipe size past the packet or an `icmsgsize`
//! past the pipe message is a lie, not a reason to read further. The payload is the
//! `icmsgsize` bytes after the header; the padding VMBus adds to 8 bytes is ignored.

use core::fmt;

use crate::error::{Error, NegotiationError};
use crate::wire::{Reader, put};

/// `sizeof(struct vmbuspipe_hdr)`.
pub const PIPE_HEADER_SIZE: usize = 8;
/// `sizeof(struct icmsg_hdr)`.
pub const HEADER_SIZE: usize = 20;
/// Linux's `ICMSG_HDR`: where the payload starts in a packet.
pub const ICMSG_HDR: usize = PIPE_HEADER_SIZE + HEADER_SIZE;
/// The pipe packet type of a message (a VMBus pipe's `PIPE_PACKET_TYPE_DATA`).
pub const PIPE_TYPE_DATA: u32 = 1;

/// `icflags`: the sender expects an answer.
pub const FLAG_TRANSACTION: u8 = 1;
/// `icflags`: a request.
pub const FLAG_REQUEST: u8 = 2;
/// `icflags`: an answer.
pub const FLAG_RESPONSE: u8 = 4;

/// `IC_VERSION_NEGOTIATION_MAX_VER_COUNT`: the longest version list a guest reads.
pub const MAX_VERSION_COUNT: u16 = 100;

/// The framework versions the guest speaks, newest first (Linux's `fw_versions`:
/// `UTIL_FW_VERSION`, `UTIL_WS2K8_FW_VERSION`). The message formats do not depend on them.
pub const FRAMEWORK_VERSIONS: &[Version] = &[Version::new(3, 0), Version::new(1, 0)];

/// An IC version (`struct ic_version`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub const fn new(major: u16, minor: u16) -> Version {
        Version { major, minor }
    }

    fn from_bytes(b: [u8; 4]) -> Version {
        Version::new(
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
        )
    }

    fn to_bytes(self) -> [u8; 4] {
        let [a, b] = self.major.to_le_bytes();
        let [c, d] = self.minor.to_le_bytes();
        [a, b, c, d]
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `icmsgtype`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType(pub u16);

impl MessageType {
    pub const NEGOTIATE: MessageType = MessageType(0);
    pub const HEARTBEAT: MessageType = MessageType(1);
    pub const KVP_EXCHANGE: MessageType = MessageType(2);
    pub const SHUTDOWN: MessageType = MessageType(3);
    pub const TIMESYNC: MessageType = MessageType(4);
    pub const VSS: MessageType = MessageType(5);
    pub const FCOPY: MessageType = MessageType(7);

    fn name(self) -> Option<&'static str> {
        Some(match self {
            MessageType::NEGOTIATE => "NEGOTIATE",
            MessageType::HEARTBEAT => "HEARTBEAT",
            MessageType::KVP_EXCHANGE => "KVPEXCHANGE",
            MessageType::SHUTDOWN => "SHUTDOWN",
            MessageType::TIMESYNC => "TIMESYNC",
            MessageType::VSS => "VSS",
            MessageType::FCOPY => "FCOPY",
            _ => return None,
        })
    }
}

impl fmt::Debug for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "MessageType({})", self.0),
        }
    }
}

/// An IC status code (an `HRESULT`), as Linux's `hyperv.h` names them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u32);

impl Status {
    /// `HV_S_OK`.
    pub const OK: Status = Status(0);
    /// `HV_E_FAIL`: the request was not carried out.
    pub const FAIL: Status = Status(0x8000_4005);
    /// `HV_S_CONT`: no more items (the end of a KVP enumeration, a key not found).
    pub const CONT: Status = Status(0x8007_0103);
    /// `HV_ERROR_NOT_SUPPORTED`.
    pub const NOT_SUPPORTED: Status = Status(0x8007_0032);
    /// `HV_ERROR_MACHINE_LOCKED`.
    pub const MACHINE_LOCKED: Status = Status(0x8007_04f7);
    /// `HV_ERROR_DEVICE_NOT_CONNECTED`.
    pub const DEVICE_NOT_CONNECTED: Status = Status(0x8007_048f);
    /// `HV_INVALIDARG`.
    pub const INVALID_ARG: Status = Status(0x8007_0057);
    /// `HV_GUID_NOTFOUND`.
    pub const GUID_NOT_FOUND: Status = Status(0x8004_1002);
    /// `HV_ERROR_ALREADY_EXISTS`.
    pub const ALREADY_EXISTS: Status = Status(0x8007_0050);
    /// `HV_ERROR_DISK_FULL`.
    pub const DISK_FULL: Status = Status(0x8007_0070);

    fn name(self) -> Option<&'static str> {
        Some(match self {
            Status::OK => "HV_S_OK",
            Status::FAIL => "HV_E_FAIL",
            Status::CONT => "HV_S_CONT",
            Status::NOT_SUPPORTED => "HV_ERROR_NOT_SUPPORTED",
            Status::MACHINE_LOCKED => "HV_ERROR_MACHINE_LOCKED",
            Status::DEVICE_NOT_CONNECTED => "HV_ERROR_DEVICE_NOT_CONNECTED",
            Status::INVALID_ARG => "HV_INVALIDARG",
            Status::GUID_NOT_FOUND => "HV_GUID_NOTFOUND",
            Status::ALREADY_EXISTS => "HV_ERROR_ALREADY_EXISTS",
            Status::DISK_FULL => "HV_ERROR_DISK_FULL",
            _ => return None,
        })
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "Status({:#010x})", self.0),
        }
    }
}

/// `struct icmsg_hdr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `icverframe`.
    pub framework: Version,
    pub message_type: MessageType,
    /// `icvermsg`.
    pub message_version: Version,
    /// `icmsgsize`: payload bytes.
    pub size: u16,
    pub status: Status,
    /// `ictransaction_id`: the host's, echoed in the answer.
    pub transaction_id: u8,
    pub flags: u8,
    pub reserved: [u8; 2],
}

impl Header {
    /// The answer to a request with this header: the same fields, `size` payload bytes,
    /// `status`, and flagged as a transaction's response (what Linux and FreeBSD send).
    pub fn response(&self, size: u16, status: Status) -> Header {
        Header {
            size,
            status,
            flags: FLAG_TRANSACTION | FLAG_RESPONSE,
            ..*self
        }
    }

    fn parse(r: &Reader<'_>) -> Result<Header, crate::wire::Short> {
        let at = PIPE_HEADER_SIZE;
        Ok(Header {
            framework: Version::new(r.u16(at)?, r.u16(at + 2)?),
            message_type: MessageType(r.u16(at + 4)?),
            message_version: Version::new(r.u16(at + 6)?, r.u16(at + 8)?),
            size: r.u16(at + 10)?,
            status: Status(r.u32(at + 12)?),
            transaction_id: r.u8(at + 16)?,
            flags: r.u8(at + 17)?,
            reserved: [r.u8(at + 18)?, r.u8(at + 19)?],
        })
    }

    /// Writes the pipe header and this header to the start of `out`, for a message whose
    /// `self.size` payload bytes follow at [`ICMSG_HDR`]; returns the message's length. The
    /// caller checks that `out` holds the whole message (debug builds assert it).
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let at = PIPE_HEADER_SIZE;
        let message_size = HEADER_SIZE as u32 + u32::from(self.size);
        put(out, 0, &PIPE_TYPE_DATA.to_le_bytes());
        put(out, 4, &message_size.to_le_bytes());
        put(out, at, &self.framework.to_bytes());
        put(out, at + 4, &self.message_type.0.to_le_bytes());
        put(out, at + 6, &self.message_version.to_bytes());
        put(out, at + 10, &self.size.to_le_bytes());
        put(out, at + 12, &self.status.0.to_le_bytes());
        put(out, at + 16, &[self.transaction_id, self.flags]);
        put(out, at + 18, &self.reserved);
        ICMSG_HDR + usize::from(self.size)
    }
}

/// One message, as carried in the data of a VMBus in-band packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: Header,
    /// The pipe message's bytes after the IC header: the payload and anything the pipe size
    /// counts beyond `icmsgsize`.
    body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Checks the pipe header and reads the IC header from a packet's data.
    pub fn parse(data: &'a [u8]) -> Result<Frame<'a>, Error> {
        let r = Reader::new(data);
        r.require(ICMSG_HDR)
            .map_err(|_| Error::ShortFrame { len: data.len() })?;
        let pipe_type = r.u32(0)?;
        if pipe_type != PIPE_TYPE_DATA {
            return Err(Error::UnknownPipeType(pipe_type));
        }
        let msgsize = r.u32(4)?;
        let available = data.len() - PIPE_HEADER_SIZE;
        let message = usize::try_from(msgsize)
            .ok()
            .and_then(|size| data.get(PIPE_HEADER_SIZE..PIPE_HEADER_SIZE.checked_add(size)?))
            .ok_or(Error::PipeSizePastPacket { msgsize, available })?;
        let body = message.get(HEADER_SIZE..).ok_or(Error::ShortFrame {
            len: PIPE_HEADER_SIZE + message.len(),
        })?;
        Ok(Frame {
            header: Header::parse(&r)?,
            body,
        })
    }

    /// The `icmsgsize` bytes of payload, or why the header lies about them.
    pub fn payload(&self) -> Result<&'a [u8], Error> {
        self.body
            .get(..usize::from(self.header.size))
            .ok_or(Error::MessageSizePastData {
                icmsgsize: self.header.size,
                available: self.body.len(),
            })
    }
}

/// The versions a negotiation settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub framework: Version,
    pub service: Version,
}

/// `struct icmsg_negotiate` up to its version array: two counts and a reserved word.
const NEGOTIATE_SIZE: usize = 8;
/// The answer's payload: the counts, then one framework and one service version.
pub const NEGOTIATE_RESPONSE_SIZE: usize = NEGOTIATE_SIZE + 8;

/// Answers a negotiation request's `payload` as Linux's `vmbus_prep_negotiate_resp` does:
/// for each of our `framework` versions in order (newest first) the first the host lists
/// wins, then the same for `service`; so the result is the newest version both speak.
///
/// Returns the answer's payload ([`NEGOTIATE_RESPONSE_SIZE`] bytes) and the outcome. On
/// success the answer holds counts 1 and 1 and the two versions. On failure the counts are 0
/// ("no common version"), and the version slots hold what Linux leaves there: the host's
/// counts as major versions (framework count, service count), or the chosen framework and the
/// service count if only the service versions failed. The host reads only the counts.
///
/// Linux answers a payload too short for the counts by echoing it untouched, which is no
/// answer; here it gets "no common version" like every other failure.
pub fn negotiate(
    payload: &[u8],
    framework: &[Version],
    service: &[Version],
) -> ([u8; NEGOTIATE_RESPONSE_SIZE], Result<Negotiated, Error>) {
    let mut answer = [0; NEGOTIATE_RESPONSE_SIZE];
    let r = Reader::new(payload);
    let (framework_count, service_count) = match (r.u16(0), r.u16(2)) {
        (Ok(f), Ok(s)) => (f, s),
        _ => {
            let error = Error::ShortPayload {
                needed: 4,
                len: payload.len(),
            };
            return (answer, Err(error));
        }
    };
    let mut slots = [
        Version::new(framework_count, 0),
        Version::new(service_count, 0),
    ];
    let outcome = select(
        &r,
        framework_count,
        service_count,
        framework,
        service,
        &mut slots,
    );
    let counts: u16 = if outcome.is_ok() { 1 } else { 0 };
    put(&mut answer, 0, &counts.to_le_bytes());
    put(&mut answer, 2, &counts.to_le_bytes());
    put(&mut answer, NEGOTIATE_SIZE, &slots[0].to_bytes());
    put(&mut answer, NEGOTIATE_SIZE + 4, &slots[1].to_bytes());
    (answer, outcome.map_err(Error::Negotiation))
}

/// The selection half of [`negotiate`]: checks the lists, then picks into `slots`.
fn select(
    r: &Reader<'_>,
    framework_count: u16,
    service_count: u16,
    framework: &[Version],
    service: &[Version],
    slots: &mut [Version; 2],
) -> Result<Negotiated, NegotiationError> {
    if framework_count > MAX_VERSION_COUNT || service_count > MAX_VERSION_COUNT {
        return Err(NegotiationError::TooManyVersions {
            framework: framework_count,
            service: service_count,
        });
    }
    let (framework_count, service_count) =
        (usize::from(framework_count), usize::from(service_count));
    let needed = NEGOTIATE_SIZE + 4 * (framework_count + service_count);
    let list = r
        .slice(NEGOTIATE_SIZE, needed - NEGOTIATE_SIZE)
        .map_err(|s| NegotiationError::VersionsPastEnd { needed, len: s.len })?;
    let (host_framework, host_service) = list.split_at(4 * framework_count);
    let first_common = |ours: &[Version], theirs: &[u8]| {
        ours.iter()
            .copied()
            .find(|v| versions(theirs).any(|theirs| theirs == *v))
    };
    let framework =
        first_common(framework, host_framework).ok_or(NegotiationError::NoCommonFramework)?;
    slots[0] = framework;
    let service =
        first_common(service, host_service).ok_or(NegotiationError::NoCommonServiceVersion)?;
    slots[1] = service;
    Ok(Negotiated { framework, service })
}

/// The versions in a list of `struct ic_version`.
pub(crate) fn versions(list: &[u8]) -> impl Iterator<Item = Version> + '_ {
    list.chunks_exact(4)
        .map(|c| Version::from_bytes([c[0], c[1], c[2], c[3]]))
}
