//! `xen/include/public/sched.h`: `HYPERVISOR_sched_op` commands and arguments.

use crate::EvtchnPort;

/// Give up the CPU; argument null.
pub const SCHEDOP_YIELD: u32 = 0;
/// Sleep until an event is pending; atomically re-enables upcalls if they were masked, so no
/// wakeup is lost. Argument null.
pub const SCHEDOP_BLOCK: u32 = 1;
/// Stop the domain; argument a [`SchedShutdown`].
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// Wait for one of a set of ports, with an optional timeout; argument a [`SchedPoll`].
pub const SCHEDOP_POLL: u32 = 3;
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
pub const SCHEDOP_WATCHDOG: u32 = 6;

// `sched_shutdown.reason`.
/// Exited normally: clean up and kill.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Clean up, kill, and restart.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// Clean up, save suspend info, kill.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// Tell the toolstack we crashed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// Restart because the watchdog expired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
pub const SHUTDOWN_SOFT_RESET: u32 = 5;

/// `struct sched_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct sched_poll`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedPoll {
    /// Guest handle of an array of [`EvtchnPort`].
    pub ports: u64,
    pub nr_ports: u32,
    /// Absolute system time in nanoseconds; 0 waits forever.
    pub timeout: u64,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<SchedShutdown>() == 4);
    assert!(size_of::<SchedPoll>() == 24);
    assert!(offset_of!(SchedPoll, nr_ports) == 8 && offset_of!(SchedPoll, timeout) == 16);
    assert!(size_of::<EvtchnPort>() == 4);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_reasons_match_the_header() {
        assert_eq!(
            (SCHEDOP_YIELD, SCHEDOP_BLOCK, SCHEDOP_SHUTDOWN, SCHEDOP_POLL),
            (0, 1, 2, 3)
        );
        assert_eq!(
            (
                SHUTDOWN_POWEROFF,
                SHUTDOWN_REBOOT,
                SHUTDOWN_SUSPEND,
                SHUTDOWN_CRASH,
                SHUTDOWN_WATCHDOG
            ),
            (0, 1, 2, 3, 4)
        );
    }
}
