//! The shutdown service (`HV_SHUTDOWN_GUID`, 0e0b6031-5213-4934-818b-38d90ced39db).
//!
//! The host asks the guest to power off, restart or hibernate with `shutdown_msg_data`:
//!
//! ```text
//!  0 reason_code (u32)   4 timeout_seconds (u32)   8 flags (u32)   12 display_message[2048]
//! ```
//!
//! `flags` is 0 (power off), 2 (restart, version 3.1 on) or 4 (hibernate, 3.2 on), each
//! optionally ORed with 1 (forced). Like Linux, the whole structure must be there; a valid
//! request is answered `HV_S_OK` before the kernel acts on it, anything else `HV_E_FAIL`.
//! Hibernation is refused: the kernel has no way to save itself to disk.

use log::info;

use crate::error::Error;
use crate::icmsg::{MessageType, Status, Version};
use crate::service::{Action, Service};
use crate::wire::Reader;

/// `sizeof(struct shutdown_msg_data)`.
pub const MESSAGE_SIZE: usize = 12 + 2048;

/// The shutdown flags.
pub mod flags {
    /// Power off.
    pub const SHUTDOWN: u32 = 0;
    /// Do it even if applications object.
    pub const FORCE: u32 = 1;
    pub const RESTART: u32 = 2;
    pub const HIBERNATE: u32 = 4;
}

/// The shutdown service; see the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shutdown;

impl Service for Shutdown {
    const NAME: &'static str = "shutdown";
    const MESSAGE_TYPE: MessageType = MessageType::SHUTDOWN;
    /// Linux's `sd_versions`.
    const VERSIONS: &'static [Version] = &[
        Version::new(3, 2),
        Version::new(3, 1),
        Version::new(3, 0),
        Version::new(1, 0),
    ];

    fn handle(
        &mut self,
        _version: Version,
        payload: &mut [u8],
    ) -> Result<(Status, Option<Action>), Error> {
        let r = Reader::new(payload);
        r.require(MESSAGE_SIZE)?;
        let (reason, timeout, request) = (r.u32(0)?, r.u32(4)?, r.u32(8)?);
        let force = request & flags::FORCE != 0;
        let action = match request & !flags::FORCE {
            flags::SHUTDOWN => Action::PowerOff { force },
            flags::RESTART => Action::Reboot { force },
            flags::HIBERNATE => return Err(Error::HibernateRefused),
            _ => return Err(Error::UnknownShutdownFlags(request)),
        };
        info!("shutdown IC: host requests {action:?} (reason {reason:#x}, within {timeout} s)");
        Ok((Status::OK, Some(action)))
    }
}
