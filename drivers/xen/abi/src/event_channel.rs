//! `xen/include/public/event_channel.h`: `HYPERVISOR_event_channel_op` commands and
//! arguments.

use crate::{DomId, EvtchnPort};

pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// Bind a `VIRQ_*` to a new local port; argument an [`EvtchnBindVirq`].
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// Argument an [`EvtchnClose`].
pub const EVTCHNOP_CLOSE: u32 = 3;
/// Notify the remote end of a port; argument an [`EvtchnSend`].
pub const EVTCHNOP_SEND: u32 = 4;
pub const EVTCHNOP_STATUS: u32 = 5;
/// Argument an [`EvtchnAllocUnbound`].
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
pub const EVTCHNOP_BIND_IPI: u32 = 7;
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// Clear a port's mask bit and redeliver a pending event; argument an [`EvtchnUnmask`].
pub const EVTCHNOP_UNMASK: u32 = 9;
pub const EVTCHNOP_RESET: u32 = 10;
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;

/// Ports of the 2-level ABI on x86_64: 64 selector bits, each over a 64-bit word.
pub const EVTCHN_2L_NR_CHANNELS: usize = 64 * 64;

/// `struct evtchn_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// IN: `VIRQ_*`.
    pub virq: u32,
    /// IN: the vCPU to deliver to (0 for global VIRQs).
    pub vcpu: u32,
    /// OUT.
    pub port: EvtchnPort,
}

/// `struct evtchn_alloc_unbound`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    /// IN: usually `DOMID_SELF`.
    pub dom: DomId,
    /// IN: the domain allowed to bind the other end.
    pub remote_dom: DomId,
    /// OUT.
    pub port: EvtchnPort,
}

/// `struct evtchn_send`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSend {
    pub port: EvtchnPort,
}

/// `struct evtchn_close`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnClose {
    pub port: EvtchnPort,
}

/// `struct evtchn_unmask`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnUnmask {
    pub port: EvtchnPort,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<EvtchnBindVirq>() == 12 && offset_of!(EvtchnBindVirq, port) == 8);
    assert!(size_of::<EvtchnAllocUnbound>() == 8 && offset_of!(EvtchnAllocUnbound, port) == 4);
    assert!(size_of::<EvtchnSend>() == 4);
    assert!(size_of::<EvtchnClose>() == 4);
    assert!(size_of::<EvtchnUnmask>() == 4);
    // One pending and one mask bit per port fill shared_info's two 64-word arrays exactly.
    assert!(
        EVTCHN_2L_NR_CHANNELS / 8
            == crate::xen::shared_info::EVTCHN_MASK - crate::xen::shared_info::EVTCHN_PENDING
    );
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_match_the_header() {
        assert_eq!(
            (
                EVTCHNOP_BIND_VIRQ,
                EVTCHNOP_CLOSE,
                EVTCHNOP_SEND,
                EVTCHNOP_ALLOC_UNBOUND,
                EVTCHNOP_UNMASK
            ),
            (1, 3, 4, 6, 9)
        );
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);
    }
}
