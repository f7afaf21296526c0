//! Offers: `OFFERCHANNEL`, `RESCIND_CHANNELOFFER` and `RELID_RELEASED`.

use core::fmt;

use super::{Message, MessageType, ParseError, fields_of};
use crate::guid::{self, Guid};

/// `chn_flags` of an offer (Linux's `VMBUS_CHANNEL_*` server flags).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OfferFlags(pub u16);

impl OfferFlags {
    pub const ENUMERATE_DEVICE_INTERFACE: u16 = 0x1;
    pub const SERVER_SUPPORTS_TRANSFER_PAGES: u16 = 0x2;
    pub const SERVER_SUPPORTS_GPADLS: u16 = 0x4;
    /// The user-defined area holds a pipe mode first ([`UserDefined::Pipe`]).
    pub const NAMED_PIPE_MODE: u16 = 0x10;
    pub const LOOPBACK_OFFER: u16 = 0x100;
    pub const PARENT_OFFER: u16 = 0x200;
    pub const REQUEST_MONITORED_NOTIFICATION: u16 = 0x400;
    /// A Hyper-V socket endpoint rather than a device.
    pub const TLNPI_PROVIDER_OFFER: u16 = 0x2000;

    pub fn contains(self, flag: u16) -> bool {
        self.0 & flag == flag
    }
}

impl fmt::Debug for OfferFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OfferFlags({:#x})", self.0)
    }
}

/// The offer's 120 user-defined bytes, read as the flags say.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum UserDefined {
    /// Non-pipe offers: 120 bytes for the device protocol (`MAX_USER_DEFINED_BYTES`).
    Standard([u8; 120]),
    /// Pipe offers ([`OfferFlags::NAMED_PIPE_MODE`]): a pipe mode (0 byte, 4 message) and 116
    /// bytes (`MAX_PIPE_USER_DEFINED_BYTES`).
    Pipe { mode: u32, data: [u8; 116] },
}

impl fmt::Debug for UserDefined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, data): (&str, &[u8]) = match self {
            UserDefined::Standard(data) => ("Standard", data),
            UserDefined::Pipe { data, .. } => ("Pipe", data),
        };
        let used = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        write!(f, "{name}({:02x?}", &data[..used])?;
        if let UserDefined::Pipe { mode, .. } = self {
            write!(f, ", mode {mode}")?;
        }
        write!(f, ")")
    }
}

/// `vmbus_channel_offer_channel`, 196 bytes: the host offers a device channel.
///
/// ```text
///   0 header        8 if_type (GUID)   24 if_instance (GUID)   40 reserved1   48 reserved2
///  56 chn_flags    58 mmio_megabytes   60 user_def[120] (pipe: 60 pipe_mode, 64 user_def[116])
/// 180 sub_channel_index  182 mmio_megabytes_optional (Linux: reserved3)  184 child_relid
/// 188 monitorid   189 monitor_allocated:1   190 is_dedicated_interrupt:1 (u16)
/// 192 connection_id
/// ```
///
/// The reserved fields and bits are ignored (they may be nonzero before Windows 8) and encoded as
/// zero. Checks that need the connection's state, such as whether the relid is free, are
/// [`Connection`](crate::Connection)'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The device class (`if_type`), e.g. [`guid::class::BALLOON`].
    pub interface_type: Guid,
    /// This device instance (`if_instance`); sub-channels repeat their primary's.
    pub interface_instance: Guid,
    pub flags: OfferFlags,
    /// MMIO space the device wants, in MiB.
    pub mmio_megabytes: u16,
    pub user_defined: UserDefined,
    /// 0 for a primary channel, nonzero for a sub-channel (Windows 8 on).
    pub sub_channel_index: u16,
    /// MMIO space the device can use beyond `mmio_megabytes`, in MiB.
    pub mmio_megabytes_optional: u16,
    /// The channel's relative id: the handle in every later message and its event flag bit.
    pub child_relid: u32,
    /// The channel's slot in the monitor pages, if `monitor_allocated`.
    pub monitor_id: u8,
    pub monitor_allocated: bool,
    /// The channel's interrupts do not go through the shared interrupt page.
    pub is_dedicated_interrupt: bool,
    /// The connection id to `HvSignalEvent` to signal the host about this channel.
    pub connection_id: u32,
}

impl Offer {
    pub const SIZE: usize = 196;

    /// Parses an `OFFERCHANNEL` message.
    pub fn parse(bytes: &[u8]) -> Result<Offer, ParseError> {
        let f = fields_of(bytes, MessageType::OfferChannel, Self::SIZE)?;
        let flags = OfferFlags(f.u16(56)?);
        let user_defined = if flags.contains(OfferFlags::NAMED_PIPE_MODE) {
            UserDefined::Pipe {
                mode: f.u32(60)?,
                data: f.array(64)?,
            }
        } else {
            UserDefined::Standard(f.array(60)?)
        };
        Ok(Offer {
            interface_type: Guid::from_bytes(f.array(8)?),
            interface_instance: Guid::from_bytes(f.array(24)?),
            flags,
            mmio_megabytes: f.u16(58)?,
            user_defined,
            sub_channel_index: f.u16(180)?,
            mmio_megabytes_optional: f.u16(182)?,
            child_relid: f.u32(184)?,
            monitor_id: f.u8(188)?,
            monitor_allocated: f.u8(189)? & 1 != 0,
            is_dedicated_interrupt: f.u16(190)? & 1 != 0,
            connection_id: f.u32(192)?,
        })
    }

    /// The `OFFERCHANNEL` message a host would post.
    pub fn encode(&self) -> Message {
        let mut m = Message::new(MessageType::OfferChannel, Self::SIZE);
        m.put(8, &self.interface_type.to_bytes());
        m.put(24, &self.interface_instance.to_bytes());
        m.put_u16(56, self.flags.0);
        m.put_u16(58, self.mmio_megabytes);
        match &self.user_defined {
            UserDefined::Standard(data) => m.put(60, data),
            UserDefined::Pipe { mode, data } => {
                m.put_u32(60, *mode);
                m.put(64, data);
            }
        }
        m.put_u16(180, self.sub_channel_index);
        m.put_u16(182, self.mmio_megabytes_optional);
        m.put_u32(184, self.child_relid);
        m.put_u8(188, self.monitor_id);
        m.put_u8(189, u8::from(self.monitor_allocated));
        m.put_u16(190, u16::from(self.is_dedicated_interrupt));
        m.put_u32(192, self.connection_id);
        m
    }

    /// The class's short name if it is a known one, for log lines.
    pub fn class_name(&self) -> &'static str {
        guid::class::name(self.interface_type).unwrap_or("unknown class")
    }
}

/// `vmbus_channel_rescind_offer`, 12 bytes: the host withdraws channel `child_relid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rescind {
    pub child_relid: u32,
}

impl Rescind {
    pub const SIZE: usize = 12;

    pub fn parse(bytes: &[u8]) -> Result<Rescind, ParseError> {
        let f = fields_of(bytes, MessageType::RescindChannelOffer, Self::SIZE)?;
        Ok(Rescind {
            child_relid: f.u32(8)?,
        })
    }

    pub fn encode(&self) -> Message {
        relid_message(MessageType::RescindChannelOffer, self.child_relid)
    }
}

/// `vmbus_channel_relid_released`, 12 bytes: the guest is done with a rescinded channel, and
/// the host may reuse its relid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelidReleased {
    pub child_relid: u32,
}

impl RelidReleased {
    pub const SIZE: usize = 12;

    pub fn parse(bytes: &[u8]) -> Result<RelidReleased, ParseError> {
        let f = fields_of(bytes, MessageType::RelidReleased, Self::SIZE)?;
        Ok(RelidReleased {
            child_relid: f.u32(8)?,
        })
    }

    pub fn encode(&self) -> Message {
        relid_message(MessageType::RelidReleased, self.child_relid)
    }
}

/// The 12-byte shape shared by the messages that carry only a relid (rescind, relid released,
/// close channel).
pub(crate) fn relid_message(msg_type: MessageType, child_relid: u32) -> Message {
    let mut m = Message::new(msg_type, 12);
    m.put_u32(8, child_relid);
    m
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::guid::class;
    use std::format;
    use std::vec::Vec;

    /// An offer as QEMU's `send_offer` builds it for hv-balloon, byte by byte.
    fn qemu_balloon_offer() -> Vec<u8> {
        let mut b = std::vec![0u8; 200];
        b[0] = 1;
        b[8..24].copy_from_slice(&class::BALLOON.to_bytes());
        b[24..40].copy_from_slice(&[0x11; 16]);
        b[184..188].copy_from_slice(&1u32.to_le_bytes());
        b[190] = 1; // VMBUS_OFFER_INTERRUPT_DEDICATED
        b[192..196].copy_from_slice(&17u32.to_le_bytes()); // 16 + relid
        b
    }

    #[test]
    fn parses_every_field_of_a_standard_offer() {
        let mut b = qemu_balloon_offer();
        b[40..56].copy_from_slice(&[0xee; 16]); // reserved: ignored
        b[56..58].copy_from_slice(&0x0404u16.to_le_bytes());
        b[58..60].copy_from_slice(&64u16.to_le_bytes());
        b[60] = 0xab;
        b[179] = 0xcd;
        b[180..182].copy_from_slice(&2u16.to_le_bytes());
        b[182..184].copy_from_slice(&128u16.to_le_bytes());
        b[188] = 37;
        b[189] = 0xff; // only bit 0 is monitor_allocated
        b[190..192].copy_from_slice(&0xfffeu16.to_le_bytes()); // bit 0 clear: not dedicated
        let offer = Offer::parse(&b).unwrap();
        let mut user = [0; 120];
        user[0] = 0xab;
        user[119] = 0xcd;
        assert_eq!(
            offer,
            Offer {
                interface_type: class::BALLOON,
                interface_instance: Guid::from_bytes([0x11; 16]),
                flags: OfferFlags(0x0404),
                mmio_megabytes: 64,
                user_defined: UserDefined::Standard(user),
                sub_channel_index: 2,
                mmio_megabytes_optional: 128,
                child_relid: 1,
                monitor_id: 37,
                monitor_allocated: true,
                is_dedicated_interrupt: false,
                connection_id: 17,
            }
        );
        assert_eq!(offer.class_name(), "balloon");
        assert!(offer.flags.contains(OfferFlags::SERVER_SUPPORTS_GPADLS));
        assert!(!offer.flags.contains(OfferFlags::NAMED_PIPE_MODE));
    }

    #[test]
    fn reads_pipe_offers_as_mode_plus_116_bytes() {
        let mut b = qemu_balloon_offer();
        b[56..58].copy_from_slice(
            &(OfferFlags::NAMED_PIPE_MODE | OfferFlags::TLNPI_PROVIDER_OFFER).to_le_bytes(),
        );
        b[60..64].copy_from_slice(&4u32.to_le_bytes());
        b[64] = 9;
        b[179] = 8;
        let offer = Offer::parse(&b).unwrap();
        let UserDefined::Pipe { mode, data } = offer.user_defined else {
            panic!("not a pipe: {offer:?}");
        };
        assert_eq!(mode, 4);
        assert_eq!((data[0], data[115]), (9, 8));
        assert_eq!(
            format!("{:?}", offer.user_defined),
            format!("Pipe({:02x?}, mode 4)", &data[..])
        );
    }

    #[test]
    fn qemu_offers_parse_and_round_trip() {
        let b = qemu_balloon_offer();
        let offer = Offer::parse(&b).unwrap();
        assert!(offer.is_dedicated_interrupt);
        assert!(!offer.monitor_allocated);
        assert_eq!(offer.connection_id, 17);
        assert_eq!(offer.encode().as_bytes(), &b[..196]);
        assert_eq!(Offer::parse(offer.encode().as_bytes()), Ok(offer));
    }

    #[test]
    fn rejects_truncated_offers_at_every_length() {
        let b = qemu_balloon_offer();
        for len in 0..196 {
            let err = Offer::parse(&b[..len]).unwrap_err();
            match len {
                0..=3 => assert!(matches!(err, ParseError::Truncated { msg_type: None, .. })),
                _ => assert_eq!(
                    err,
                    ParseError::Truncated {
                        msg_type: Some(MessageType::OfferChannel),
                        needed: 196,
                        len
                    }
                ),
            }
        }
    }

    #[test]
    fn relid_messages_round_trip() {
        let r = Rescind { child_relid: 9 };
        assert_eq!(r.encode().as_bytes(), [2, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(Rescind::parse(r.encode().as_bytes()), Ok(r));
        let rel = RelidReleased { child_relid: 9 };
        assert_eq!(rel.encode().as_bytes()[0], 13);
        assert_eq!(RelidReleased::parse(rel.encode().as_bytes()), Ok(rel));
        assert!(Rescind::parse(&rel.encode().as_bytes()[..11]).is_err());
    }
}
