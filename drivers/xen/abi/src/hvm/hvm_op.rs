//! `xen/include/public/hvm/hvm_op.h`: `HYPERVISOR_hvm_op` commands and arguments.

use crate::DomId;

/// Argument a [`XenHvmParam`] with `value` set.
pub const HVMOP_SET_PARAM: u32 = 0;
/// Argument a [`XenHvmParam`]; Xen fills `value`.
pub const HVMOP_GET_PARAM: u32 = 1;

/// Deliver this vCPU's event upcalls as a local-APIC vector (acknowledged with an EOI); argument
/// an [`XenHvmEvtchnUpcallVector`]. Xen 4.6 and later.
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u32 = 23;

/// `struct xen_hvm_evtchn_upcall_vector`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmEvtchnUpcallVector {
    pub vcpu: u32,
    pub vector: u8,
}

/// `struct xen_hvm_param`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmParam {
    /// IN: usually `DOMID_SELF`.
    pub domid: DomId,
    pub pad: u16,
    /// IN: `HVM_PARAM_*`.
    pub index: u32,
    /// IN (set) or OUT (get).
    pub value: u64,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<XenHvmParam>() == 16);
    assert!(size_of::<XenHvmEvtchnUpcallVector>() == 8);
    assert!(offset_of!(XenHvmParam, index) == 4 && offset_of!(XenHvmParam, value) == 8);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_match_the_header() {
        assert_eq!((HVMOP_SET_PARAM, HVMOP_GET_PARAM), (0, 1));
        assert_eq!(HVMOP_SET_EVTCHN_UPCALL_VECTOR, 23);
    }
}
