//! `xen/include/public/hvm/params.h`: indices for `HVMOP_{set,get}_param`.

/// How event-channel upcalls reach vCPU 0: `value[63:56]` is an `HVM_PARAM_CALLBACK_TYPE_*`,
/// the low bits its argument; 0 disables delivery.
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// Frame of the xenstore ring page.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// Event channel of the xenstore ring.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// Frame of the PV console ring page (`io/console.h`).
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// Event channel of the PV console ring.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;

/// Mask of the delivery type in an `HVM_PARAM_CALLBACK_IRQ` value.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK: u64 = 0xFF00_0000_0000_0000;
/// Shift of the delivery type in an `HVM_PARAM_CALLBACK_IRQ` value.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT: u32 = 56;
/// `value[55:0]` is a GSI (not 0).
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u64 = 0;
/// `value[55:0]` is a PCI INTx line.
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u64 = 1;
/// `value[7:0]` is an IDT vector (x86; needs `XENFEAT_hvm_callback_vector`).
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u64 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_the_header() {
        assert_eq!(
            (
                HVM_PARAM_CALLBACK_IRQ,
                HVM_PARAM_STORE_PFN,
                HVM_PARAM_STORE_EVTCHN,
                HVM_PARAM_CONSOLE_PFN,
                HVM_PARAM_CONSOLE_EVTCHN
            ),
            (0, 1, 2, 17, 18)
        );
    }

    #[test]
    fn callback_type_occupies_the_top_byte() {
        assert_eq!(
            HVM_PARAM_CALLBACK_IRQ_TYPE_MASK,
            0xFF << HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT
        );
        assert_eq!(
            HVM_PARAM_CALLBACK_TYPE_VECTOR << HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT,
            0x0200_0000_0000_0000
        );
    }
}
