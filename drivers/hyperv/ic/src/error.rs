//! Why a message from the host was refused.

use core::fmt;

use crate::icmsg::{MessageType, Status};
use crate::kvp::Pool;
use crate::wire::Short;

/// Why a request was refused. Every variant but [`Error::ResponseBufferTooSmall`] (a kernel
/// bug) and the policy refusals ([`Error::HibernateRefused`], [`KvpError::PoolFull`],
/// [`KvpError::ReadOnlyPool`], [`KvpError::UnknownAdapter`], [`KvpError::IpInjectionRefused`])
/// means the host broke the protocol. The service keeps working either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The VMBus packet was not in-band data, the only kind IC hosts send.
    NotInBand {
        packet_type: u16,
    },
    /// Fewer bytes than a pipe header and an IC header.
    ShortFrame {
        len: usize,
    },
    /// `vmbuspipe_hdr.flags` is not a data message.
    UnknownPipeType(u32),
    /// `vmbuspipe_hdr.msgsize` claims more bytes than the packet carries.
    PipeSizePastPacket {
        msgsize: u32,
        available: usize,
    },
    /// `icmsgsize` claims more bytes than the pipe message carries.
    MessageSizePastData {
        icmsgsize: u16,
        available: usize,
    },
    /// An `icmsgtype` this service does not serve.
    UnknownMessageType(MessageType),
    /// A service request before a version was negotiated.
    NotNegotiated,
    /// The version negotiation failed; the host was told so (no versions in the answer).
    Negotiation(NegotiationError),
    /// The payload is shorter than the message's structure.
    ShortPayload {
        needed: usize,
        len: usize,
    },
    /// The caller's response buffer cannot hold the answer.
    ResponseBufferTooSmall {
        needed: usize,
        len: usize,
    },
    /// A shutdown request to hibernate: not supported.
    HibernateRefused,
    /// Shutdown flags other than power-off, reboot or hibernate (each optionally forced).
    UnknownShutdownFlags(u32),
    /// A host time before 1970 or after 2554 (beyond a `u64` of Unix nanoseconds), in 100 ns
    /// units since 1601.
    HostTimeOutOfRange(u64),
    /// A time sample taken at a partition reference time later than now.
    ReferenceTimeAhead {
        sample: u64,
        now: u64,
    },
    Kvp(KvpError),
}

impl Error {
    /// The status a failure response carries.
    pub fn status(&self) -> Status {
        match self {
            Error::Kvp(KvpError::IpInjectionRefused) => Status::NOT_SUPPORTED,
            _ => Status::FAIL,
        }
    }
}

impl From<Short> for Error {
    fn from(s: Short) -> Self {
        Error::ShortPayload {
            needed: s.needed,
            len: s.len,
        }
    }
}

impl From<KvpError> for Error {
    fn from(e: KvpError) -> Self {
        Error::Kvp(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotInBand { packet_type } => {
                write!(f, "VMBus packet type {packet_type:#x}, not in-band data")
            }
            Error::ShortFrame { len } => {
                write!(f, "{len}-byte packet, shorter than the ICMSG headers")
            }
            Error::UnknownPipeType(t) => write!(f, "pipe packet type {t:#x}, not data"),
            Error::PipeSizePastPacket { msgsize, available } => write!(
                f,
                "pipe header claims {msgsize} bytes, the packet has {available}"
            ),
            Error::MessageSizePastData {
                icmsgsize,
                available,
            } => write!(
                f,
                "icmsgsize {icmsgsize} past the {available} bytes of the message"
            ),
            Error::UnknownMessageType(t) => write!(f, "unexpected message type {t:?}"),
            Error::NotNegotiated => write!(f, "request before version negotiation"),
            Error::Negotiation(e) => write!(f, "version negotiation: {e}"),
            Error::ShortPayload { needed, len } => {
                write!(f, "{len}-byte payload, the message needs {needed}")
            }
            Error::ResponseBufferTooSmall { needed, len } => {
                write!(f, "response needs {needed} bytes, the buffer has {len}")
            }
            Error::HibernateRefused => write!(f, "hibernation is not supported"),
            Error::UnknownShutdownFlags(flags) => write!(f, "shutdown flags {flags:#x}"),
            Error::HostTimeOutOfRange(t) => {
                write!(
                    f,
                    "host time {t} (100 ns since 1601) outside Unix nanoseconds"
                )
            }
            Error::ReferenceTimeAhead { sample, now } => write!(
                f,
                "time sample at reference time {sample}, after now ({now})"
            ),
            Error::Kvp(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for Error {}

/// Why the version lists of a negotiation were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegotiationError {
    /// More than `IC_VERSION_NEGOTIATION_MAX_VER_COUNT` (100) versions in a list.
    TooManyVersions { framework: u16, service: u16 },
    /// The counts promise more versions than the payload holds.
    VersionsPastEnd { needed: usize, len: usize },
    /// No framework version in common.
    NoCommonFramework,
    /// A framework version in common but no service version.
    NoCommonServiceVersion,
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegotiationError::TooManyVersions { framework, service } => write!(
                f,
                "{framework} framework and {service} service versions, more than 100"
            ),
            NegotiationError::VersionsPastEnd { needed, len } => {
                write!(
                    f,
                    "version lists need {needed} bytes, the payload has {len}"
                )
            }
            NegotiationError::NoCommonFramework => write!(f, "no framework version in common"),
            NegotiationError::NoCommonServiceVersion => {
                write!(f, "no service version in common")
            }
        }
    }
}

/// A KVP string field, for errors about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Key,
    Value,
    AdapterId,
    Addresses,
    Subnets,
    Gateways,
    DnsServers,
}

/// Why a KVP request (or a kernel-side pool update) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvpError {
    /// An operation other than GET, SET, DELETE, ENUMERATE, GET_IP_INFO and SET_IP_INFO.
    UnknownOperation(u8),
    /// A pool index past `KVP_POOL_AUTO_INTERNAL` (4).
    BadPool(u8),
    /// The host may not change the pool the kernel supplies ([`Pool::Auto`]).
    ReadOnlyPool(Pool),
    /// A UTF-16 size that is not a whole number of code units.
    OddSize { field: Field, size: u32 },
    /// A size larger than the field (`HV_KVP_EXCHANGE_MAX_KEY_SIZE` or `_VALUE_SIZE`).
    SizeTooLarge { field: Field, size: u32, max: usize },
    /// No NUL within the string's size.
    Unterminated(Field),
    /// An unpaired surrogate.
    InvalidUtf16(Field),
    /// A string with a NUL inside it, or too long for its field (kernel-side updates).
    BadString(Field),
    /// A value type other than `REG_SZ`, `REG_EXPAND_SZ`, `REG_DWORD` and `REG_QWORD`.
    UnknownValueType(u32),
    /// A `REG_DWORD` that is not 4 bytes or a `REG_QWORD` that is not 8.
    BadValueSize { value_type: u32, size: u32 },
    /// The pool holds [`POOL_CAPACITY`](crate::kvp::POOL_CAPACITY) keys already.
    PoolFull(Pool),
    /// GET_IP_INFO for a MAC address the kernel did not supply.
    UnknownAdapter,
    /// SET_IP_INFO while the kernel does not accept IP configuration from the host.
    IpInjectionRefused,
}

impl fmt::Display for KvpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvpError::UnknownOperation(op) => write!(f, "KVP operation {op}"),
            KvpError::BadPool(pool) => write!(f, "KVP pool {pool}"),
            KvpError::ReadOnlyPool(pool) => write!(f, "KVP pool {pool:?} is read-only"),
            KvpError::OddSize { field, size } => {
                write!(f, "{field:?} of {size} bytes, not whole UTF-16 units")
            }
            KvpError::SizeTooLarge { field, size, max } => {
                write!(f, "{field:?} of {size} bytes, the field holds {max}")
            }
            KvpError::Unterminated(field) => write!(f, "{field:?} without a terminating NUL"),
            KvpError::InvalidUtf16(field) => write!(f, "{field:?} is not valid UTF-16"),
            KvpError::BadString(field) => write!(f, "{field:?} too long or holding a NUL"),
            KvpError::UnknownValueType(t) => write!(f, "KVP value type {t}"),
            KvpError::BadValueSize { value_type, size } => {
                write!(f, "{size}-byte value of type {value_type}")
            }
            KvpError::PoolFull(pool) => write!(f, "KVP pool {pool:?} is full"),
            KvpError::UnknownAdapter => write!(f, "no adapter with that MAC address"),
            KvpError::IpInjectionRefused => write!(f, "IP configuration from the host refused"),
        }
    }
}

impl core::error::Error for KvpError {}
