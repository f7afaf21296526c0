//! Opening and closing channels: `OPENCHANNEL`, `OPENCHANNEL_RESULT`, `CLOSECHANNEL`.

use super::offer::relid_message;
use super::{Message, MessageType, ParseError, fields_of};

/// Bytes of user data an open request carries (`MAX_USER_DEFINED_BYTES`).
pub const OPEN_USER_DATA_SIZE: usize = 120;

/// `vmbus_channel_open_channel`, 148 bytes: the guest opens a channel on a ring GPADL.
///
/// ```text
///  0 header  8 child_relid  12 openid  16 ringbuffer_gpadlhandle  20 target_vp
/// 24 downstream_ringbuffer_pageoffset  28 userdata[120]
/// ```
///
/// (Protocol 6.0 appends guest-chosen signal parameters; they are not sent before it.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenChannel {
    pub child_relid: u32,
    /// Chosen by the guest; the result echoes it.
    pub open_id: u32,
    /// The GPADL holding both rings: guest-to-host first, host-to-guest from
    /// `downstream_page_offset`.
    pub ring_gpadl: u32,
    /// VP index the host interrupts for this channel.
    pub target_vp: u32,
    /// Where the host-to-guest ring starts in the GPADL, in 4 KiB pages.
    pub downstream_page_offset: u32,
    pub user_data: [u8; OPEN_USER_DATA_SIZE],
}

impl OpenChannel {
    pub const SIZE: usize = 148;

    pub fn parse(bytes: &[u8]) -> Result<OpenChannel, ParseError> {
        let f = fields_of(bytes, MessageType::OpenChannel, Self::SIZE)?;
        Ok(OpenChannel {
            child_relid: f.u32(8)?,
            open_id: f.u32(12)?,
            ring_gpadl: f.u32(16)?,
            target_vp: f.u32(20)?,
            downstream_page_offset: f.u32(24)?,
            user_data: f.array(28)?,
        })
    }

    pub fn encode(&self) -> Message {
        let mut m = Message::new(MessageType::OpenChannel, Self::SIZE);
        m.put_u32(8, self.child_relid);
        m.put_u32(12, self.open_id);
        m.put_u32(16, self.ring_gpadl);
        m.put_u32(20, self.target_vp);
        m.put_u32(24, self.downstream_page_offset);
        m.put(28, &self.user_data);
        m
    }
}

/// `vmbus_channel_open_result`, 20 bytes: `0 header  8 child_relid  12 openid  16 status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenResult {
    pub child_relid: u32,
    pub open_id: u32,
    /// 0 on success, else an NTSTATUS-style failure code.
    pub status: u32,
}

impl OpenResult {
    pub const SIZE: usize = 20;

    pub fn parse(bytes: &[u8]) -> Result<OpenResult, ParseError> {
        let f = fields_of(bytes, MessageType::OpenChannelResult, Self::SIZE)?;
        Ok(OpenResult {
            child_relid: f.u32(8)?,
            open_id: f.u32(12)?,
            status: f.u32(16)?,
        })
    }

    pub fn encode(&self) -> Message {
        let mut m = Message::new(MessageType::OpenChannelResult, Self::SIZE);
        m.put_u32(8, self.child_relid);
        m.put_u32(12, self.open_id);
        m.put_u32(16, self.status);
        m
    }
}

/// `vmbus_channel_close_channel`, 12 bytes: `0 header  8 child_relid`. The host does not
/// answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseChannel {
    pub child_relid: u32,
}

impl CloseChannel {
    pub const SIZE: usize = 12;

    pub fn parse(bytes: &[u8]) -> Result<CloseChannel, ParseError> {
        let f = fields_of(bytes, MessageType::CloseChannel, Self::SIZE)?;
        Ok(CloseChannel {
            child_relid: f.u32(8)?,
        })
    }

    pub fn encode(&self) -> Message {
        relid_message(MessageType::CloseChannel, self.child_relid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_channel_lays_out_every_field() {
        let mut user_data = [0; 120];
        user_data[0] = 0x55;
        user_data[119] = 0x66;
        let open = OpenChannel {
            child_relid: 5,
            open_id: 6,
            ring_gpadl: 0xe1e10,
            target_vp: 1,
            downstream_page_offset: 16,
            user_data,
        };
        let m = open.encode();
        let b = m.as_bytes();
        assert_eq!(b.len(), 148);
        assert_eq!(b[0], 5);
        assert_eq!(b[8..12], 5u32.to_le_bytes());
        assert_eq!(b[12..16], 6u32.to_le_bytes());
        assert_eq!(b[16..20], 0xe1e10u32.to_le_bytes());
        assert_eq!(b[20..24], 1u32.to_le_bytes());
        assert_eq!(b[24..28], 16u32.to_le_bytes());
        assert_eq!((b[28], b[147]), (0x55, 0x66));
        assert_eq!(OpenChannel::parse(b), Ok(open));
        assert!(OpenChannel::parse(&b[..147]).is_err());
    }

    #[test]
    fn open_result_and_close_round_trip() {
        let r = OpenResult {
            child_relid: 1,
            open_id: 2,
            status: 0xc000_0001,
        };
        assert_eq!(r.encode().as_bytes().len(), 20);
        assert_eq!(OpenResult::parse(r.encode().as_bytes()), Ok(r));
        assert!(OpenResult::parse(&r.encode().as_bytes()[..19]).is_err());
        let c = CloseChannel { child_relid: 4 };
        assert_eq!(c.encode().as_bytes(), [7, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(CloseChannel::parse(c.encode().as_bytes()), Ok(c));
    }
}
