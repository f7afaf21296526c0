//! VMBus channel messages: the control protocol carried in SynIC messages.
//!
//! Every message starts with `vmbus_channel_message_header` (a `u32` type and 4 bytes of
//! padding) and fits one SynIC message payload, [`MAX_MESSAGE_SIZE`] bytes. Layouts follow
//! Linux's `include/linux/hyperv.h` and Microsoft's `ChannelMessages.h` (`#pragma pack(1)`,
//! little-endian); each struct here names its C twin and lists its offsets.
//!
//! Parsers take a copy of the payload as an untrusted byte slice and return a checked value or a
//! [`ParseError`]; they require the full fixed size of their struct, as Linux's
//! `channel_message_table` does with `min_payload_len`, and ignore trailing bytes (a host pads
//! payloads to 8 bytes). Encoders build a [`Message`].
//!
//! - [`connect`]: `INITIATE_CONTACT`, `VERSION_RESPONSE` and the header-only messages.
//! - [`offer`]: `OFFERCHANNEL`, `RESCIND_CHANNELOFFER`, `RELID_RELEASED`.
//! - [`channel`]: `OPENCHANNEL`, `OPENCHANNEL_RESULT`, `CLOSECHANNEL`.
//! - [`gpadl`]: `GPADL_HEADER`/`BODY` (and splitting a page list across them), `GPADL_CREATED`,
//!   `GPADL_TEARDOWN`, `GPADL_TORNDOWN`.

pub mod channel;
pub mod connect;
pub mod gpadl;
pub mod offer;

use core::fmt;

use crate::wire::{self, Fields, Short};

pub use channel::{CloseChannel, OpenChannel, OpenResult};
pub use connect::{InitiateContact, InterruptTarget, Version, VersionResponse};
pub use gpadl::{GpadlBody, GpadlCreated, GpadlHeader, GpadlTeardown, GpadlTorndown, Pfns};
pub use offer::{Offer, OfferFlags, RelidReleased, Rescind, UserDefined};

/// The largest SynIC message payload (`HV_MESSAGE_PAYLOAD_BYTE_COUNT`), header included.
pub const MAX_MESSAGE_SIZE: usize = 240;

/// Size of `vmbus_channel_message_header`.
pub const HEADER_SIZE: usize = 8;

/// Every channel message type, `vmbus_channel_message_type` (Linux `CHANNELMSG_*`, Microsoft
/// `ChannelMessage*`). Linux stops at 24; 25 to 29 belong to protocol 6.0, which this crate does
/// not negotiate, and are listed so that they parse as known but unexpected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MessageType {
    Invalid = 0,
    OfferChannel = 1,
    RescindChannelOffer = 2,
    RequestOffers = 3,
    AllOffersDelivered = 4,
    OpenChannel = 5,
    OpenChannelResult = 6,
    CloseChannel = 7,
    GpadlHeader = 8,
    GpadlBody = 9,
    GpadlCreated = 10,
    GpadlTeardown = 11,
    GpadlTorndown = 12,
    RelidReleased = 13,
    InitiateContact = 14,
    VersionResponse = 15,
    Unload = 16,
    /// Microsoft's `ChannelMessageUnloadComplete`.
    UnloadResponse = 17,
    /// Protocol 4.0 on (Linux's `CHANNELMSG_18`).
    OpenReservedChannel = 18,
    /// Protocol 4.0 on (Linux's `CHANNELMSG_19`).
    CloseReservedChannel = 19,
    /// Protocol 4.0 on (Linux's `CHANNELMSG_20`).
    CloseReservedResponse = 20,
    TlConnectRequest = 21,
    /// Protocol 4.1 on.
    ModifyChannel = 22,
    /// Protocol 4.1 on.
    TlConnectResult = 23,
    /// Protocol 5.3 on.
    ModifyChannelResponse = 24,
    /// Protocol 6.0 on.
    ModifyConnection = 25,
    /// Protocol 6.0 on.
    ModifyConnectionResponse = 26,
    /// Protocol 6.0 on.
    Pause = 27,
    /// Protocol 6.0 on.
    PauseResponse = 28,
    /// Protocol 6.0 on.
    Resume = 29,
}

impl MessageType {
    /// Every type, in numeric order: `ALL[n]` has number `n`.
    pub const ALL: [MessageType; 30] = {
        use MessageType::*;
        [
            Invalid,
            OfferChannel,
            RescindChannelOffer,
            RequestOffers,
            AllOffersDelivered,
            OpenChannel,
            OpenChannelResult,
            CloseChannel,
            GpadlHeader,
            GpadlBody,
            GpadlCreated,
            GpadlTeardown,
            GpadlTorndown,
            RelidReleased,
            InitiateContact,
            VersionResponse,
            Unload,
            UnloadResponse,
            OpenReservedChannel,
            CloseReservedChannel,
            CloseReservedResponse,
            TlConnectRequest,
            ModifyChannel,
            TlConnectResult,
            ModifyChannelResponse,
            ModifyConnection,
            ModifyConnectionResponse,
            Pause,
            PauseResponse,
            Resume,
        ]
    };

    /// The type numbered `value`, if there is one.
    pub fn from_u32(value: u32) -> Option<MessageType> {
        MessageType::ALL.get(usize::try_from(value).ok()?).copied()
    }
}

/// Why a channel message was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The message is shorter than its type's fixed layout (or than the header).
    Truncated {
        msg_type: Option<MessageType>,
        needed: usize,
        len: usize,
    },
    /// More bytes than a SynIC message can carry.
    TooLong { len: usize },
    /// The header's type number names no message.
    UnknownType(u32),
    /// A parser for one type was handed another.
    WrongType {
        expected: MessageType,
        found: MessageType,
    },
    /// A known type that this direction of the protocol never carries (a host sending
    /// `INITIATE_CONTACT`, a guest sending `OFFERCHANNEL`), or one this crate does not speak.
    Unexpected(MessageType),
    /// A GPADL header whose range description is inconsistent or not the single page-aligned
    /// range every host and guest use.
    BadGpadlRange,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated {
                msg_type,
                needed,
                len,
            } => write!(f, "{msg_type:?} message of {len} bytes, needs {needed}"),
            ParseError::TooLong { len } => {
                write!(
                    f,
                    "{len}-byte message exceeds the {MAX_MESSAGE_SIZE}-byte payload"
                )
            }
            ParseError::UnknownType(t) => write!(f, "unknown message type {t}"),
            ParseError::WrongType { expected, found } => {
                write!(f, "expected a {expected:?} message, found {found:?}")
            }
            ParseError::Unexpected(t) => write!(f, "unexpected {t:?} message"),
            ParseError::BadGpadlRange => write!(f, "unsupported or inconsistent GPADL range"),
        }
    }
}

impl core::error::Error for ParseError {}

/// The type of the message in `bytes`, after checking its length against the SynIC limit.
pub fn message_type(bytes: &[u8]) -> Result<MessageType, ParseError> {
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLong { len: bytes.len() });
    }
    let raw = Fields::new(bytes).u32(0).map_err(|s| truncated(None, s))?;
    MessageType::from_u32(raw).ok_or(ParseError::UnknownType(raw))
}

/// Checks that `bytes` is a `expected` message of at least `size` bytes and returns its fields.
pub(crate) fn fields_of(
    bytes: &[u8],
    expected: MessageType,
    size: usize,
) -> Result<MessageFields<'_>, ParseError> {
    let found = message_type(bytes)?;
    if found != expected {
        return Err(ParseError::WrongType { expected, found });
    }
    let fields = Fields::new(bytes);
    fields
        .require(size)
        .map_err(|s| truncated(Some(expected), s))?;
    Ok(MessageFields {
        fields,
        msg_type: expected,
    })
}

/// The fields of one message, whose short reads are that message's [`ParseError::Truncated`].
pub(crate) struct MessageFields<'a> {
    fields: Fields<'a>,
    msg_type: MessageType,
}

impl<'a> MessageFields<'a> {
    fn short(&self) -> impl Fn(Short) -> ParseError {
        let msg_type = self.msg_type;
        move |s| truncated(Some(msg_type), s)
    }

    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    pub(crate) fn slice(&self, offset: usize, len: usize) -> Result<&'a [u8], ParseError> {
        self.fields.slice(offset, len).map_err(self.short())
    }

    pub(crate) fn array<const N: usize>(&self, offset: usize) -> Result<[u8; N], ParseError> {
        self.fields.array(offset).map_err(self.short())
    }

    pub(crate) fn u8(&self, offset: usize) -> Result<u8, ParseError> {
        self.fields.u8(offset).map_err(self.short())
    }

    pub(crate) fn u16(&self, offset: usize) -> Result<u16, ParseError> {
        self.fields.u16(offset).map_err(self.short())
    }

    pub(crate) fn u32(&self, offset: usize) -> Result<u32, ParseError> {
        self.fields.u32(offset).map_err(self.short())
    }

    pub(crate) fn u64(&self, offset: usize) -> Result<u64, ParseError> {
        self.fields.u64(offset).map_err(self.short())
    }
}

/// Maps a short read inside a message of `msg_type` to its [`ParseError`].
pub(crate) fn truncated(msg_type: Option<MessageType>, short: Short) -> ParseError {
    ParseError::Truncated {
        msg_type,
        needed: short.needed,
        len: short.len,
    }
}

/// An encoded channel message, ready for [`Host::post_message`](crate::Host::post_message).
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    bytes: [u8; MAX_MESSAGE_SIZE],
    len: usize,
}

impl Message {
    /// A zeroed message of `len` bytes (at most [`MAX_MESSAGE_SIZE`]) with `msg_type` in its
    /// header.
    pub(crate) fn new(msg_type: MessageType, len: usize) -> Message {
        debug_assert!((HEADER_SIZE..=MAX_MESSAGE_SIZE).contains(&len));
        let mut message = Message {
            bytes: [0; MAX_MESSAGE_SIZE],
            len: len.clamp(HEADER_SIZE, MAX_MESSAGE_SIZE),
        };
        message.put_u32(0, msg_type as u32);
        message
    }

    /// A message that is only a header: `REQUESTOFFERS`, `ALLOFFERS_DELIVERED`, `UNLOAD`,
    /// `UNLOAD_RESPONSE`.
    pub fn header_only(msg_type: MessageType) -> Message {
        Message::new(msg_type, HEADER_SIZE)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn msg_type(&self) -> MessageType {
        message_type(self.as_bytes()).unwrap_or(MessageType::Invalid)
    }

    pub(crate) fn put(&mut self, offset: usize, src: &[u8]) {
        wire::put(&mut self.bytes[..self.len], offset, src);
    }

    pub(crate) fn put_u8(&mut self, offset: usize, value: u8) {
        self.put(offset, &[value]);
    }

    pub(crate) fn put_u16(&mut self, offset: usize, value: u16) {
        self.put(offset, &value.to_le_bytes());
    }

    pub(crate) fn put_u32(&mut self, offset: usize, value: u32) {
        self.put(offset, &value.to_le_bytes());
    }

    pub(crate) fn put_u64(&mut self, offset: usize, value: u64) {
        self.put(offset, &value.to_le_bytes());
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("msg_type", &self.msg_type())
            .field("len", &self.len)
            .finish()
    }
}

/// A message the host sends, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMessage {
    Offer(Offer),
    Rescind(Rescind),
    AllOffersDelivered,
    OpenResult(OpenResult),
    GpadlCreated(GpadlCreated),
    GpadlTorndown(GpadlTorndown),
    VersionResponse(VersionResponse),
    UnloadResponse,
}

impl HostMessage {
    /// Parses a message copied out of the SynIC message slot.
    ///
    /// Types only a guest sends, and the ones this crate never asks for (it sends no
    /// `MODIFYCHANNEL` or `TL_CONNECT_REQUEST`, so their answers cannot be due), are
    /// [`ParseError::Unexpected`].
    pub fn parse(bytes: &[u8]) -> Result<HostMessage, ParseError> {
        Ok(match message_type(bytes)? {
            MessageType::OfferChannel => HostMessage::Offer(Offer::parse(bytes)?),
            MessageType::RescindChannelOffer => HostMessage::Rescind(Rescind::parse(bytes)?),
            MessageType::AllOffersDelivered => HostMessage::AllOffersDelivered,
            MessageType::OpenChannelResult => HostMessage::OpenResult(OpenResult::parse(bytes)?),
            MessageType::GpadlCreated => HostMessage::GpadlCreated(GpadlCreated::parse(bytes)?),
            MessageType::GpadlTorndown => HostMessage::GpadlTorndown(GpadlTorndown::parse(bytes)?),
            MessageType::VersionResponse => {
                HostMessage::VersionResponse(VersionResponse::parse(bytes)?)
            }
            MessageType::UnloadResponse => HostMessage::UnloadResponse,
            other => return Err(ParseError::Unexpected(other)),
        })
    }

    pub fn msg_type(&self) -> MessageType {
        match self {
            HostMessage::Offer(_) => MessageType::OfferChannel,
            HostMessage::Rescind(_) => MessageType::RescindChannelOffer,
            HostMessage::AllOffersDelivered => MessageType::AllOffersDelivered,
            HostMessage::OpenResult(_) => MessageType::OpenChannelResult,
            HostMessage::GpadlCreated(_) => MessageType::GpadlCreated,
            HostMessage::GpadlTorndown(_) => MessageType::GpadlTorndown,
            HostMessage::VersionResponse(_) => MessageType::VersionResponse,
            HostMessage::UnloadResponse => MessageType::UnloadResponse,
        }
    }

    /// The message as the host would post it.
    pub fn encode(&self) -> Message {
        match self {
            HostMessage::Offer(m) => m.encode(),
            HostMessage::Rescind(m) => m.encode(),
            HostMessage::AllOffersDelivered => {
                Message::header_only(MessageType::AllOffersDelivered)
            }
            HostMessage::OpenResult(m) => m.encode(),
            HostMessage::GpadlCreated(m) => m.encode(),
            HostMessage::GpadlTorndown(m) => m.encode(),
            HostMessage::VersionResponse(m) => m.encode(),
            HostMessage::UnloadResponse => Message::header_only(MessageType::UnloadResponse),
        }
    }
}

/// A message a guest sends, parsed and checked: what a simulated host reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestMessage<'a> {
    InitiateContact(InitiateContact),
    RequestOffers,
    OpenChannel(OpenChannel),
    CloseChannel(CloseChannel),
    GpadlHeader(GpadlHeader<'a>),
    GpadlBody(GpadlBody<'a>),
    GpadlTeardown(GpadlTeardown),
    RelidReleased(RelidReleased),
    Unload,
}

impl<'a> GuestMessage<'a> {
    /// Parses a message a guest posted; types only a host sends are [`ParseError::Unexpected`].
    pub fn parse(bytes: &'a [u8]) -> Result<GuestMessage<'a>, ParseError> {
        Ok(match message_type(bytes)? {
            MessageType::InitiateContact => {
                GuestMessage::InitiateContact(InitiateContact::parse(bytes)?)
            }
            MessageType::RequestOffers => GuestMessage::RequestOffers,
            MessageType::OpenChannel => GuestMessage::OpenChannel(OpenChannel::parse(bytes)?),
            MessageType::CloseChannel => GuestMessage::CloseChannel(CloseChannel::parse(bytes)?),
            MessageType::GpadlHeader => GuestMessage::GpadlHeader(GpadlHeader::parse(bytes)?),
            MessageType::GpadlBody => GuestMessage::GpadlBody(GpadlBody::parse(bytes)?),
            MessageType::GpadlTeardown => GuestMessage::GpadlTeardown(GpadlTeardown::parse(bytes)?),
            MessageType::RelidReleased => GuestMessage::RelidReleased(RelidReleased::parse(bytes)?),
            MessageType::Unload => GuestMessage::Unload,
            other => return Err(ParseError::Unexpected(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_every_type_as_linux_and_microsoft_do() {
        for (n, t) in MessageType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, n);
            assert_eq!(MessageType::from_u32(n as u32), Some(*t));
        }
        assert_eq!(MessageType::from_u32(30), None);
        assert_eq!(MessageType::from_u32(u32::MAX), None);
        assert_eq!(MessageType::OfferChannel as u32, 1);
        assert_eq!(MessageType::InitiateContact as u32, 14);
        assert_eq!(MessageType::VersionResponse as u32, 15);
        assert_eq!(MessageType::UnloadResponse as u32, 17);
        assert_eq!(MessageType::ModifyChannelResponse as u32, 24);
    }

    #[test]
    fn rejects_short_long_and_unknown_headers() {
        assert_eq!(
            message_type(&[1, 0, 0]),
            Err(ParseError::Truncated {
                msg_type: None,
                needed: 4,
                len: 3
            })
        );
        assert_eq!(
            message_type(&[0; 241]),
            Err(ParseError::TooLong { len: 241 })
        );
        assert_eq!(
            message_type(&[99, 0, 0, 0, 0, 0, 0, 0]),
            Err(ParseError::UnknownType(99))
        );
        assert_eq!(
            message_type(&[4, 0, 0, 0]),
            Ok(MessageType::AllOffersDelivered)
        );
    }

    #[test]
    fn sorts_messages_by_direction() {
        let unload = Message::header_only(MessageType::Unload);
        assert_eq!(
            HostMessage::parse(unload.as_bytes()),
            Err(ParseError::Unexpected(MessageType::Unload))
        );
        assert_eq!(
            GuestMessage::parse(unload.as_bytes()),
            Ok(GuestMessage::Unload)
        );
        let done = Message::header_only(MessageType::AllOffersDelivered);
        assert_eq!(
            HostMessage::parse(done.as_bytes()),
            Ok(HostMessage::AllOffersDelivered)
        );
        assert_eq!(
            GuestMessage::parse(done.as_bytes()),
            Err(ParseError::Unexpected(MessageType::AllOffersDelivered))
        );
        let modify = Message::header_only(MessageType::ModifyChannelResponse);
        assert_eq!(
            HostMessage::parse(modify.as_bytes()),
            Err(ParseError::Unexpected(MessageType::ModifyChannelResponse))
        );
    }

    #[test]
    fn header_only_messages_are_eight_bytes() {
        let m = Message::header_only(MessageType::RequestOffers);
        assert_eq!(m.as_bytes(), [3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(m.msg_type(), MessageType::RequestOffers);
        assert_eq!(
            HostMessage::UnloadResponse.encode().as_bytes(),
            [17, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
