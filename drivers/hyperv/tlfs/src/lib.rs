//! The Hyper-V Top-Level Functional Specification, guest side: how to recognise Hyper-V, the
//! synthetic MSRs, and the reference TSC page.
//!
//! Sources: Microsoft's "Hypervisor Top Level Functional Specification" (TLFS 6.0), sections
//! "Feature and Interface Discovery" (CPUID leaves 0x40000000-0x4000000A), "Partition Reference
//! Counter" / "Partition Reference Time Enlightenment" (the reference TSC page), and Linux's
//! `include/hyperv/hvgdk_mini.h`, which spells the same numbers.
#![no_std]
#![forbid(unsafe_code)]

use ringbolt_shmem::{OutOfBounds, SharedMemory};

/// CPUID leaf whose EBX, ECX, EDX spell the vendor, and whose EAX is the highest leaf.
pub const CPUID_VENDOR_LEAF: u32 = 0x4000_0000;
/// The vendor signature Hyper-V (and hypervisors emulating it) report at [`CPUID_VENDOR_LEAF`].
pub const VENDOR_SIGNATURE: [u8; 12] = *b"Microsoft Hv";
/// CPUID leaf whose EAX names the interface: [`INTERFACE_SIGNATURE`] for the TLFS one.
pub const CPUID_INTERFACE_LEAF: u32 = 0x4000_0001;
/// "Hv#1" as CPUID returns it in EAX.
pub const INTERFACE_SIGNATURE: u32 = u32::from_le_bytes(*b"Hv#1");
/// CPUID leaf whose EAX holds the partition's privileges ([`privilege`]).
pub const CPUID_FEATURES_LEAF: u32 = 0x4000_0003;

/// Privilege bits in CPUID 0x40000003 EAX (`HV_MSR_*_AVAILABLE` in Linux).
pub mod privilege {
    /// `HV_X64_MSR_TIME_REF_COUNT` can be read.
    pub const TIME_REF_COUNT: u32 = 1 << 1;
    /// The SynIC MSRs exist.
    pub const SYNIC: u32 = 1 << 2;
    /// The synthetic timer MSRs exist.
    pub const SYNTHETIC_TIMERS: u32 = 1 << 3;
    /// `HV_X64_MSR_GUEST_OS_ID` and `HV_X64_MSR_HYPERCALL` exist.
    pub const HYPERCALL: u32 = 1 << 5;
    /// `HV_X64_MSR_REFERENCE_TSC` exists.
    pub const REFERENCE_TSC: u32 = 1 << 9;
    /// `HV_X64_MSR_TSC_FREQUENCY` and `HV_X64_MSR_APIC_FREQUENCY` exist.
    pub const FREQUENCIES: u32 = 1 << 11;
}

/// Synthetic MSRs.
pub mod msr {
    pub const GUEST_OS_ID: u32 = 0x4000_0000;
    pub const HYPERCALL: u32 = 0x4000_0001;
    pub const VP_INDEX: u32 = 0x4000_0002;
    /// The partition reference counter: 100 ns units since the partition was created.
    pub const TIME_REF_COUNT: u32 = 0x4000_0020;
    pub const REFERENCE_TSC: u32 = 0x4000_0021;
    pub const TSC_FREQUENCY: u32 = 0x4000_0022;
    pub const APIC_FREQUENCY: u32 = 0x4000_0023;
    pub const SCONTROL: u32 = 0x4000_0080;
    pub const SVERSION: u32 = 0x4000_0081;
    pub const SIEFP: u32 = 0x4000_0082;
    pub const SIMP: u32 = 0x4000_0083;
    pub const EOM: u32 = 0x4000_0084;
    /// `SINT0`; `SINTn` is `SINT0 + n`, n < 16.
    pub const SINT0: u32 = 0x4000_0090;
}

/// Bit 0 of the hypercall, reference-TSC, SIMP and SIEFP MSRs: enable the overlay page whose
/// guest physical address is in bits 63:12.
pub const MSR_ENABLE: u64 = 1;

/// `HV_X64_MSR_GUEST_OS_ID` for Ringbolt. TLFS "Reporting the Guest OS Identity", open-source
/// encoding: bit 63 set, OS type in bits 62:56 (0 = not one of the types Microsoft lists),
/// OS id in 55:48, version in 47:16, build in 15:0. Hyper-V refuses hypercalls while it is 0.
pub const fn guest_os_id(major: u8, minor: u8) -> u64 {
    1 << 63 | (major as u64) << 40 | (minor as u64) << 32
}

/// Whether CPUID describes a TLFS hypervisor: the vendor leaf (EBX, ECX, EDX) reads
/// "Microsoft Hv", the interface leaf "Hv#1", and the vendor leaf reaches the features leaf.
/// A KVM that shows "KVMKVMKVM" at 0x40000000 is KVM even if it also emulates Hyper-V above.
pub fn is_hyperv(max_leaf: u32, vendor: [u32; 3], interface: u32) -> bool {
    let mut signature = [0u8; 12];
    for (chunk, register) in signature.chunks_exact_mut(4).zip(vendor) {
        chunk.copy_from_slice(&register.to_le_bytes());
    }
    signature == VENDOR_SIGNATURE
        && interface == INTERFACE_SIGNATURE
        && max_leaf >= CPUID_FEATURES_LEAF
}

/// TSC frequency (Hz) a reference TSC page scale implies: the page converts TSC ticks to
/// 100 ns units as `(tsc * scale) >> 64`, so `hz = 10^7 * 2^64 / scale` (at least 10 MHz for
/// any nonzero scale). `None` for a zero scale.
pub fn tsc_hz_from_scale(scale: u64) -> Option<u64> {
    (scale != 0).then(|| ((10_000_000u128 << 64) / u128::from(scale)) as u64)
}

/// Byte offsets in the reference TSC page (`HV_REFERENCE_TSC_PAGE`).
pub mod reference_tsc_page {
    /// `u32`: 0 means "do not use the page" (fall back to the reference counter MSR);
    /// otherwise changes whenever Hyper-V rewrites scale and offset.
    pub const SEQUENCE: usize = 0;
    /// `u64`: 64.64 fixed-point factor from TSC ticks to 100 ns units.
    pub const SCALE: usize = 8;
    /// `i64`: added after scaling.
    pub const OFFSET: usize = 16;
}

/// Reads of the page that disagree in a row before [`read_reference_time`] gives up.
const REFERENCE_TSC_RETRIES: usize = 64;

/// Why the reference TSC page gave no time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceTscError {
    /// The sequence is 0: Hyper-V says the page is not to be used now (the TLFS asks guests to
    /// read `HV_X64_MSR_TIME_REF_COUNT` instead).
    Invalid,
    /// The sequence kept changing while we read.
    Unstable,
    Access(OutOfBounds),
}

impl From<OutOfBounds> for ReferenceTscError {
    fn from(e: OutOfBounds) -> Self {
        ReferenceTscError::Access(e)
    }
}

/// Partition reference time in 100 ns units from the reference TSC page `page`, with the TSC
/// read by `rdtsc` between two reads of the sequence (TLFS "Partition Reference Time
/// Enlightenment": retry while the sequence changes under us).
pub fn read_reference_time(
    page: &impl SharedMemory,
    mut rdtsc: impl FnMut() -> u64,
) -> Result<u64, ReferenceTscError> {
    for _ in 0..REFERENCE_TSC_RETRIES {
        let sequence = page.read_u32(reference_tsc_page::SEQUENCE)?;
        if sequence == 0 {
            return Err(ReferenceTscError::Invalid);
        }
        page.read_barrier();
        let scale = page.read_u64(reference_tsc_page::SCALE)?;
        let offset = page.read_u64(reference_tsc_page::OFFSET)? as i64;
        let tsc = rdtsc();
        page.read_barrier();
        if page.read_u32(reference_tsc_page::SEQUENCE)? != sequence {
            continue;
        }
        let scaled = ((u128::from(tsc) * u128::from(scale)) >> 64) as u64;
        return Ok(scaled.wrapping_add_signed(offset));
    }
    Err(ReferenceTscError::Unstable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbolt_shmem::fake::FakeSharedMemory;

    fn cpuid_words(text: &[u8; 12]) -> [u32; 3] {
        let word = |i: usize| u32::from_le_bytes(text[i..i + 4].try_into().unwrap());
        [word(0), word(4), word(8)]
    }

    #[test]
    fn recognises_hyperv_and_not_kvm() {
        let hv = cpuid_words(b"Microsoft Hv");
        assert!(is_hyperv(0x4000_000a, hv, INTERFACE_SIGNATURE));
        assert!(!is_hyperv(0x4000_0001, hv, INTERFACE_SIGNATURE));
        assert!(!is_hyperv(0x4000_000a, hv, u32::from_le_bytes(*b"Hv#0")));
        assert!(!is_hyperv(0x4000_000a, cpuid_words(b"KVMKVMKVM\0\0\0"), 0));
        assert_eq!(INTERFACE_SIGNATURE, 0x3123_7648);
    }

    #[test]
    fn msr_numbers_match_the_tlfs() {
        assert_eq!(
            (msr::GUEST_OS_ID, msr::HYPERCALL),
            (0x4000_0000, 0x4000_0001)
        );
        assert_eq!(
            (msr::TIME_REF_COUNT, msr::REFERENCE_TSC),
            (0x4000_0020, 0x4000_0021)
        );
        assert_eq!(
            (msr::SCONTROL, msr::SIMP, msr::EOM),
            (0x4000_0080, 0x4000_0083, 0x4000_0084)
        );
        assert_eq!(msr::SINT0 + 2, 0x4000_0092);
    }

    #[test]
    fn guest_os_id_is_open_source_and_nonzero() {
        let id = guest_os_id(0, 1);
        assert_ne!(id, 0);
        assert_eq!(id >> 63, 1);
        assert_eq!((id >> 56) & 0x7f, 0);
    }

    /// A TSC frequency whose scale has no rounding error.
    const EXACT_HZ: u64 = 1 << 31;

    /// Scale for a TSC of `hz`: 2^64 * 10^7 / hz.
    fn scale_for(hz: u64) -> u64 {
        ((10_000_000u128 << 64) / u128::from(hz)) as u64
    }

    #[test]
    fn derives_the_tsc_frequency_from_the_scale() {
        for hz in [1_000_000_000, 2_599_998_000, 3_700_000_000] {
            let derived = tsc_hz_from_scale(scale_for(hz)).unwrap();
            assert!(derived.abs_diff(hz) <= 1, "{hz} -> {derived}");
        }
        assert_eq!(tsc_hz_from_scale(0), None);
        assert_eq!(tsc_hz_from_scale(u64::MAX), Some(10_000_000));
    }

    fn publish(page: &FakeSharedMemory, sequence: u32, scale: u64, offset: i64) {
        page.peer_write_u32(reference_tsc_page::SEQUENCE, sequence);
        page.peer_write_u64(reference_tsc_page::SCALE, scale);
        page.peer_write_u64(reference_tsc_page::OFFSET, offset as u64);
    }

    #[test]
    fn converts_ticks_to_100ns_units_with_the_offset() {
        let page = FakeSharedMemory::page();
        // 2^31 Hz, whose scale is exact: 2^31 ticks are one second, 10^7 units.
        publish(&page, 1, scale_for(EXACT_HZ), -5_000);
        assert_eq!(
            read_reference_time(&page, || EXACT_HZ),
            Ok(10_000_000 - 5_000)
        );
        publish(&page, 2, scale_for(EXACT_HZ), 7);
        assert_eq!(read_reference_time(&page, || 0), Ok(7));
    }

    #[test]
    fn a_zero_sequence_means_use_the_msr() {
        let page = FakeSharedMemory::page();
        publish(&page, 0, 1 << 60, 0);
        assert_eq!(
            read_reference_time(&page, || 1),
            Err(ReferenceTscError::Invalid)
        );
    }

    #[test]
    fn retries_when_the_sequence_changes_mid_read() {
        let page = FakeSharedMemory::page();
        publish(&page, 1, scale_for(EXACT_HZ), 0);
        let mut reads = 0;
        // The second TSC read happens after Hyper-V republished with a new offset.
        let result = read_reference_time(&page, || {
            reads += 1;
            if reads == 1 {
                publish(&page, 2, scale_for(EXACT_HZ), 100);
            }
            EXACT_HZ
        });
        assert_eq!(reads, 2);
        assert_eq!(result, Ok(10_000_000 + 100));
    }

    #[test]
    fn gives_up_on_a_page_that_never_holds_still() {
        let page = FakeSharedMemory::page();
        publish(&page, 1, 1, 0);
        let mut sequence = 1;
        let result = read_reference_time(&page, || {
            sequence += 1;
            page.peer_write_u32(reference_tsc_page::SEQUENCE, sequence);
            0
        });
        assert_eq!(result, Err(ReferenceTscError::Unstable));
    }

    #[test]
    fn a_short_region_is_an_access_error() {
        let page = FakeSharedMemory::new(12);
        page.peer_write_u32(0, 1);
        assert!(matches!(
            read_reference_time(&page, || 0),
            Err(ReferenceTscError::Access(_))
        ));
    }
}
