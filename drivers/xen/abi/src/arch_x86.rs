//! `xen/include/public/arch-x86/xen.h`, `arch-x86/xen-x86_64.h` and `arch-x86/cpuid.h`: the
//! x86_64 pieces of the shared structures, and how to recognise Xen.

/// `XEN_LEGACY_MAX_VCPUS`: `vcpu_info` slots in `shared_info`. vCPUs beyond it must register
/// their own `vcpu_info` (`VCPUOP_register_vcpu_info`).
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// `struct arch_vcpu_info` (x86_64).
pub mod arch_vcpu_info {
    /// `unsigned long`, the faulting address of a PV guest's last page fault.
    pub const CR2: usize = 0;
    /// `unsigned long`, padding to make `sizeof(vcpu_info_t) == 64`.
    pub const PAD: usize = 8;
    pub const SIZE: usize = 16;
}

/// `struct arch_shared_info` (x86_64).
pub mod arch_shared_info {
    /// `unsigned long`, valid entries in the p2m table.
    pub const MAX_PFN: usize = 0;
    /// `xen_pfn_t`, the frame of the p2m's top-level frame list.
    pub const PFN_TO_MFN_FRAME_LIST_LIST: usize = 8;
    pub const NMI_REASON: usize = 16;
    pub const P2M_CR3: usize = 24;
    pub const P2M_VADDR: usize = 32;
    pub const P2M_GENERATION: usize = 40;
    pub const SIZE: usize = 48;
}

/// Start of the hypervisor's hole in a PV guest's address space (`__HYPERVISOR_VIRT_START`).
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End of the hole (`__HYPERVISOR_VIRT_END`).
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;

/// Read-only machine-to-physical table every PV guest sees: `u64` pseudo-physical frame per
/// machine frame (`RO_MPT_VIRT_START` in `xen/include/public/arch-x86/xen-x86_64.h`). Its
/// length comes from `XENMEM_machphys_mapping`.
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;

/// Flat ring-3 selectors Xen gives a 64-bit PV kernel (`FLAT_KERNEL_CS` etc.): the kernel runs
/// in ring 3 in its own address-space mode, with these GDT entries provided by Xen.
pub const FLAT_KERNEL_CS: u16 = 0xe033;
pub const FLAT_KERNEL_DS: u16 = 0xe02b;
pub const FLAT_KERNEL_SS: u16 = 0xe02b;

/// `trap_info.flags` bit 2: deliver with events enabled (an "interrupt gate" clears it).
pub const TI_EVENTS_ENABLED: u8 = 1 << 2;

/// `struct trap_info`: one entry of `HYPERVISOR_set_trap_table`'s array, which ends with an
/// all-zero entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapInfo {
    /// Exception vector.
    pub vector: u8,
    /// Bits 1:0: the privilege level allowed to `int` it; bit 2: [`TI_EVENTS_ENABLED`].
    pub flags: u8,
    /// Code selector of the handler.
    pub cs: u16,
    /// Handler address.
    pub address: u64,
}

const _: () = {
    assert!(core::mem::size_of::<TrapInfo>() == 16);
    assert!(core::mem::offset_of!(TrapInfo, address) == 8);
};

/// The first CPUID leaf Xen may use; with Viridian (Hyper-V) enlightenments enabled its leaves
/// move up by 0x100, so a guest scans `0x4000_0000..0x4001_0000` in steps of 0x100.
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;
/// Leaf 1 (base + 0): EBX, ECX, EDX spell "XenVMMXenVMM".
pub const XEN_CPUID_SIGNATURE_EBX: u32 = 0x566e_6558;
pub const XEN_CPUID_SIGNATURE_ECX: u32 = 0x6558_4d4d;
pub const XEN_CPUID_SIGNATURE_EDX: u32 = 0x4d4d_566e;
/// The same signature as bytes: EBX, ECX, EDX, each little-endian.
pub const XEN_CPUID_SIGNATURE: [u8; 12] = *b"XenVMMXenVMM";

/// The prefix Xen PV guests put before `cpuid` to get the hypervisor's (filtered) answer
/// rather than the raw CPU's: `ud2; .ascii "xen"` (`XEN_EMULATE_PREFIX`).
pub const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, 0x78, 0x65, 0x6e];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_signature_registers_spell_xenvmmxenvmm() {
        let mut bytes = [0; 12];
        bytes[0..4].copy_from_slice(&XEN_CPUID_SIGNATURE_EBX.to_le_bytes());
        bytes[4..8].copy_from_slice(&XEN_CPUID_SIGNATURE_ECX.to_le_bytes());
        bytes[8..12].copy_from_slice(&XEN_CPUID_SIGNATURE_EDX.to_le_bytes());
        assert_eq!(bytes, XEN_CPUID_SIGNATURE);
    }

    #[test]
    fn emulate_prefix_is_ud2_then_xen() {
        assert_eq!(&XEN_EMULATE_PREFIX[..2], [0x0f, 0x0b]);
        assert_eq!(&XEN_EMULATE_PREFIX[2..], b"xen");
    }

    #[test]
    fn arch_structures_fill_their_slots() {
        assert_eq!(arch_vcpu_info::SIZE, 2 * 8);
        assert_eq!(arch_shared_info::SIZE, arch_shared_info::P2M_GENERATION + 8);
    }
}
