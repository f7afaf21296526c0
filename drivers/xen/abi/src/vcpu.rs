//! `xen/include/public/vcpu.h`: `HYPERVISOR_vcpu_op` commands and arguments.

pub const VCPUOP_INITIALISE: u32 = 0;
pub const VCPUOP_UP: u32 = 1;
pub const VCPUOP_DOWN: u32 = 2;
pub const VCPUOP_IS_UP: u32 = 3;
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// Xen starts a 100 Hz periodic timer for PV vCPUs; a tickless guest stops it. Argument null.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// Arm the one-shot timer (delivered as `VIRQ_TIMER`); argument a [`VcpuSetSingleshotTimer`].
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// Argument null.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// Move this vCPU's `vcpu_info` out of `shared_info`; argument a [`VcpuRegisterVcpuInfo`].
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
pub const VCPUOP_SEND_NMI: u32 = 11;
pub const VCPUOP_GET_PHYSID: u32 = 12;
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;

/// `vcpu_set_singleshot_timer.flags`: fail with `-ETIME` if the timeout has already passed
/// (the hypervisor may ignore it).
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `struct vcpu_set_singleshot_timer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time (the pvclock's), nanoseconds.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
}

/// `struct vcpu_set_periodic_timer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetPeriodicTimer {
    pub period_ns: u64,
}

/// `struct vcpu_register_vcpu_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// Frame of the page to hold the `vcpu_info`.
    pub mfn: u64,
    /// Offset within that page; the 64-byte record must not cross it.
    pub offset: u32,
    pub rsvd: u32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<VcpuSetSingleshotTimer>() == 16);
    assert!(offset_of!(VcpuSetSingleshotTimer, flags) == 8);
    assert!(size_of::<VcpuSetPeriodicTimer>() == 8);
    assert!(size_of::<VcpuRegisterVcpuInfo>() == 16);
    assert!(offset_of!(VcpuRegisterVcpuInfo, offset) == 8);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_commands_match_the_header() {
        // Not 3 and 4: those are VCPUOP_is_up and VCPUOP_get_runstate_info.
        assert_eq!(
            (VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_SINGLESHOT_TIMER),
            (8, 9)
        );
        assert_eq!(
            (VCPUOP_SET_PERIODIC_TIMER, VCPUOP_STOP_PERIODIC_TIMER),
            (6, 7)
        );
        assert_eq!(VCPUOP_REGISTER_VCPU_INFO, 10);
        assert_eq!(VCPU_SSHOTTMR_FUTURE, 1);
    }
}
