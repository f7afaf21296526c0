//! The heartbeat service (`HV_HEART_BEAT_GUID`, 57164f39-9115-4e78-ab55-382f3bd5422d).
//!
//! Every few seconds the host sends `heartbeat_msg_data` (`seq_num` (u64), then 32 reserved
//! bytes); the guest proves it is alive by answering with `seq_num + 1`. Like Linux, only
//! `seq_num` must be there: hosts do not always fill the reserved area.

use crate::error::Error;
use crate::icmsg::{MessageType, Status, Version};
use crate::service::{Action, Service};
use crate::wire::{Reader, put};

/// The heartbeat service; see the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Heartbeat;

impl Service for Heartbeat {
    const NAME: &'static str = "heartbeat";
    const MESSAGE_TYPE: MessageType = MessageType::HEARTBEAT;
    /// Linux's `hb_versions`.
    const VERSIONS: &'static [Version] = &[Version::new(3, 0), Version::new(1, 0)];

    fn handle(
        &mut self,
        _version: Version,
        payload: &mut [u8],
    ) -> Result<(Status, Option<Action>), Error> {
        let seq = Reader::new(payload).u64(0)?;
        put(payload, 0, &seq.wrapping_add(1).to_le_bytes());
        Ok((Status::OK, None))
    }
}
