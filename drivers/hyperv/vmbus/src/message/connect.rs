//! Connecting: protocol versions, `INITIATE_CONTACT` and `VERSION_RESPONSE`.

use core::fmt;

use super::{Message, MessageType, ParseError, fields_of};

/// A VMBus protocol version, `major << 16 | minor`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32);

impl Version {
    /// Windows 8 / Server 2012 (`VERSION_WIN8`), the oldest this crate offers.
    pub const V2_4: Version = Version::new(2, 4);
    /// Windows 8.1 / Server 2012 R2 (`VERSION_WIN8_1`): the first that can `UNLOAD` and
    /// reconnect.
    pub const V3_0: Version = Version::new(3, 0);
    /// Windows 10 / Server 2016 (`VERSION_WIN10`); the newest QEMU's VMBus server speaks.
    pub const V4_0: Version = Version::new(4, 0);
    /// Windows 10 RS3 (`VERSION_WIN10_V4_1`).
    pub const V4_1: Version = Version::new(4, 1);
    /// `VERSION_WIN10_V5`: `msg_sint` in `INITIATE_CONTACT`, connection id 4, then the host's
    /// message connection id.
    pub const V5_0: Version = Version::new(5, 0);
    /// Windows 10 RS4 (`VERSION_WIN10_V5_1`): `msg_vtl` in `INITIATE_CONTACT`.
    pub const V5_1: Version = Version::new(5, 1);
    /// Server 2019 (`VERSION_WIN10_V5_2`).
    pub const V5_2: Version = Version::new(5, 2);
    /// Server 2022 (`VERSION_WIN10_V5_3`, Microsoft's "Iron").
    pub const V5_3: Version = Version::new(5, 3);

    /// What the guest offers, newest first: Linux's `vmbus_versions`.
    pub const NEGOTIABLE: [Version; 8] = [
        Version::V5_3,
        Version::V5_2,
        Version::V5_1,
        Version::V5_0,
        Version::V4_1,
        Version::V4_0,
        Version::V3_0,
        Version::V2_4,
    ];

    pub const fn new(major: u16, minor: u16) -> Version {
        Version((major as u32) << 16 | minor as u32)
    }

    pub const fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }

    pub const fn minor(self) -> u16 {
        self.0 as u16
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self})")
    }
}

/// How the host is to interrupt the guest for messages, the union in `INITIATE_CONTACT`; which
/// arm applies follows from the requested version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptTarget {
    /// Before 5.0: the guest physical address of the interrupt page (one half per direction,
    /// a bit per channel). Hosts from protocol 2.4 on ignore it (QEMU's `vmbus.c` notes that
    /// Linux passes it anyway), but it is sent for the hosts that might not.
    InterruptPage(u64),
    /// From 5.0: the SINT for messages, the VTL to deliver to (5.1 on), and feature flags
    /// (defined only from protocol 6.0; zero here).
    Sint {
        sint: u8,
        vtl: u8,
        feature_flags: u32,
    },
}

/// `vmbus_channel_initiate_contact`, 40 bytes: the guest's version proposal.
///
/// ```text
///  0 header   8 version_requested  12 target_vcpu
/// 16 interrupt_page (u64) | msg_sint (u8) 17 msg_vtl (u8) 18 reserved[2] 20 feature_flags
/// 24 monitor_page1 (parent->child)  32 monitor_page2 (child->parent)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitiateContact {
    pub version: Version,
    /// VP index the host sends messages to.
    pub target_vcpu: u32,
    pub interrupt: InterruptTarget,
    /// Guest physical addresses of the two monitor pages.
    pub monitor_pages: [u64; 2],
}

impl InitiateContact {
    pub const SIZE: usize = 40;

    pub fn parse(bytes: &[u8]) -> Result<InitiateContact, ParseError> {
        let f = fields_of(bytes, MessageType::InitiateContact, Self::SIZE)?;
        let version = Version(f.u32(8)?);
        let interrupt = if version >= Version::V5_0 {
            InterruptTarget::Sint {
                sint: f.u8(16)?,
                vtl: f.u8(17)?,
                feature_flags: f.u32(20)?,
            }
        } else {
            InterruptTarget::InterruptPage(f.u64(16)?)
        };
        Ok(InitiateContact {
            version,
            target_vcpu: f.u32(12)?,
            interrupt,
            monitor_pages: [f.u64(24)?, f.u64(32)?],
        })
    }

    pub fn encode(&self) -> Message {
        let mut m = Message::new(MessageType::InitiateContact, Self::SIZE);
        m.put_u32(8, self.version.0);
        m.put_u32(12, self.target_vcpu);
        match self.interrupt {
            InterruptTarget::InterruptPage(gpa) => m.put_u64(16, gpa),
            InterruptTarget::Sint {
                sint,
                vtl,
                feature_flags,
            } => {
                m.put_u8(16, sint);
                m.put_u8(17, vtl);
                m.put_u32(20, feature_flags);
            }
        }
        m.put_u64(24, self.monitor_pages[0]);
        m.put_u64(32, self.monitor_pages[1]);
        m
    }
}

/// `vmbus_channel_version_response`, 16 bytes: the host's answer to `INITIATE_CONTACT`.
///
/// ```text
///  0 header  8 version_supported (u8)  9 connection_state (u8)  10 padding  12 msg_conn_id
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionResponse {
    /// Whether the host accepted the requested version (any nonzero byte, as Linux reads it).
    pub version_supported: bool,
    /// The host's connection status (0 is success); informational.
    pub connection_state: u8,
    /// From 5.0: the connection id for every later guest message. Hosts before 5.0 leave it 0.
    pub msg_conn_id: u32,
}

impl VersionResponse {
    pub const SIZE: usize = 16;

    pub fn parse(bytes: &[u8]) -> Result<VersionResponse, ParseError> {
        let f = fields_of(bytes, MessageType::VersionResponse, Self::SIZE)?;
        Ok(VersionResponse {
            version_supported: f.u8(8)? != 0,
            connection_state: f.u8(9)?,
            msg_conn_id: f.u32(12)?,
        })
    }

    pub fn encode(&self) -> Message {
        let mut m = Message::new(MessageType::VersionResponse, Self::SIZE);
        m.put_u8(8, u8::from(self.version_supported));
        m.put_u8(9, self.connection_state);
        m.put_u32(12, self.msg_conn_id);
        m
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    #[test]
    fn versions_split_and_order() {
        assert_eq!(Version::V5_3.0, 0x0005_0003);
        assert_eq!(Version::V2_4.0, 0x0002_0004);
        assert_eq!(Version::V4_1.major(), 4);
        assert_eq!(Version::V4_1.minor(), 1);
        assert_eq!(Version::V5_2.to_string(), "5.2");
        assert!(Version::NEGOTIABLE.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn encodes_the_interrupt_page_before_5_0() {
        let msg = InitiateContact {
            version: Version::V4_0,
            target_vcpu: 3,
            interrupt: InterruptTarget::InterruptPage(0x1234_5000),
            monitor_pages: [0xa000, 0xb000],
        };
        let m = msg.encode();
        let b = m.as_bytes();
        assert_eq!(b.len(), 40);
        assert_eq!(b[0..4], [14, 0, 0, 0]);
        assert_eq!(b[8..12], [0, 0, 4, 0]);
        assert_eq!(b[12..16], [3, 0, 0, 0]);
        assert_eq!(b[16..24], 0x1234_5000u64.to_le_bytes());
        assert_eq!(b[24..32], 0xa000u64.to_le_bytes());
        assert_eq!(b[32..40], 0xb000u64.to_le_bytes());
        assert_eq!(InitiateContact::parse(b), Ok(msg));
    }

    #[test]
    fn encodes_sint_vtl_and_flags_from_5_0() {
        let msg = InitiateContact {
            version: Version::V5_3,
            target_vcpu: 0,
            interrupt: InterruptTarget::Sint {
                sint: 2,
                vtl: 1,
                feature_flags: 0,
            },
            monitor_pages: [1 << 12, 2 << 12],
        };
        let m = msg.encode();
        assert_eq!(m.as_bytes()[16..24], [2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(InitiateContact::parse(m.as_bytes()), Ok(msg));
    }

    #[test]
    fn parses_every_version_response_field() {
        let mut b = [0u8; 16];
        b[0] = 15;
        b[8] = 1;
        b[9] = 2;
        b[12..16].copy_from_slice(&0x0000_0004u32.to_le_bytes());
        let r = VersionResponse::parse(&b).unwrap();
        assert_eq!(
            r,
            VersionResponse {
                version_supported: true,
                connection_state: 2,
                msg_conn_id: 4
            }
        );
        assert_eq!(r.encode().as_bytes(), b);
        // Any nonzero byte is acceptance.
        b[8] = 0x80;
        assert!(VersionResponse::parse(&b).unwrap().version_supported);
    }

    #[test]
    fn rejects_a_short_version_response() {
        // QEMU's struct is 12 bytes but it posts 16 (payload rounded to 8); 12 is too short for
        // msg_conn_id, as Linux's min_payload_len says.
        let mut b = [0u8; 12];
        b[0] = 15;
        assert_eq!(
            VersionResponse::parse(&b),
            Err(ParseError::Truncated {
                msg_type: Some(MessageType::VersionResponse),
                needed: 16,
                len: 12
            })
        );
        assert!(matches!(
            InitiateContact::parse(&b),
            Err(ParseError::WrongType { .. })
        ));
    }
}
