//! The Root System Description Pointer, as a checked view.
//!
//! Spec: ACPI 6.0 §5.2.5.3 (RSDP Structure). Little-endian:
//!
//! ```text
//!  0 Signature          "RSD PTR "
//!  8 Checksum           bytes 0..20 sum to 0
//!  9 OEMID
//! 15 Revision           0: ACPI 1.0, 20 bytes; 2: ACPI 2.0 and later, 36 bytes
//! 16 RsdtAddress        32-bit physical address of the RSDT
//! 20 Length             (revision >= 2) length of the whole structure
//! 24 XsdtAddress        (revision >= 2) 64-bit physical address of the XSDT
//! 32 Extended Checksum  (revision >= 2) bytes 0..36 sum to 0
//! 33 Reserved
//! 36
//! ```
//!
//! Revision 1 was never defined; like ACPICA (`acpi_tb_parse_root_table`), anything below 2 is
//! read as ACPI 1.0. The extended checksum covers the fixed 36 bytes, not `Length`, as ACPICA's
//! `ACPI_RSDP_XCHECKSUM_LENGTH` does: this parser reads nothing past byte 36.

use core::ops::Range;

use crate::error::FormatError;
use crate::{checksum, read_u32, read_u64};

/// `"RSD PTR "`, note the trailing space.
pub const SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Size of an ACPI 1.0 RSDP, and the span of its checksum.
pub const V1_LEN: usize = field::RSDT_ADDRESS.end;
/// Size of an ACPI 2.0+ RSDP, and the span of its extended checksum.
pub const V2_LEN: usize = field::RESERVED.end;

mod field {
    use core::ops::Range;

    pub const SIGNATURE: Range<usize> = 0..8;
    pub const REVISION: usize = 15;
    pub const RSDT_ADDRESS: Range<usize> = 16..20;
    pub const XSDT_ADDRESS: Range<usize> = 24..32;
    pub const RESERVED: Range<usize> = 33..36;
}

/// A view of an RSDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rsdp<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Rsdp<T> {
    /// Wraps `buffer` without checks; accessors panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Self {
        Rsdp { buffer }
    }

    /// Wraps `buffer` after [`check`](Self::check).
    pub fn new_checked(buffer: T) -> Result<Self, FormatError> {
        let rsdp = Self::new_unchecked(buffer);
        rsdp.check()?;
        Ok(rsdp)
    }

    /// Ensures the signature is right and the buffer holds every field of the revision, so no
    /// accessor that revision has can panic. Checksums are [`Repr::parse`]'s job.
    pub fn check(&self) -> Result<(), FormatError> {
        let have = self.buffer.as_ref().len();
        if have < V1_LEN {
            return Err(FormatError::Truncated { need: V1_LEN, have });
        }
        if self.signature() != SIGNATURE {
            return Err(FormatError::BadSignature);
        }
        let need = self.structure_len();
        if have < need {
            return Err(FormatError::Truncated { need, have });
        }
        Ok(())
    }

    /// The bytes this revision occupies: [`V1_LEN`] or [`V2_LEN`].
    pub fn structure_len(&self) -> usize {
        structure_len(self.revision())
    }

    pub fn signature(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SIGNATURE]
    }

    pub fn revision(&self) -> u8 {
        self.buffer.as_ref()[field::REVISION]
    }

    pub fn rsdt_address(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::RSDT_ADDRESS)
    }

    /// Revision 2 and later only: panics on a checked 20-byte ACPI 1.0 RSDP.
    pub fn xsdt_address(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::XSDT_ADDRESS)
    }

    /// The wrapping sum of the bytes `range` covers, 0 for a valid checksum.
    fn sum(&self, range: Range<usize>) -> u8 {
        checksum(&self.buffer.as_ref()[range])
    }
}

/// The length of an RSDP of `revision`, which is all this parser reads of it.
pub(crate) fn structure_len(revision: u8) -> usize {
    if revision >= 2 { V2_LEN } else { V1_LEN }
}

/// A validated RSDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub revision: u8,
    pub rsdt_paddr: u32,
    /// `None` for ACPI 1.0 and when the XSDT address is 0.
    pub xsdt_paddr: Option<u64>,
}

impl Repr {
    /// Checks `rsdp`, both checksums included, and copies its fields out.
    pub fn parse<T: AsRef<[u8]>>(rsdp: &Rsdp<T>) -> Result<Repr, FormatError> {
        rsdp.check()?;
        let sum = rsdp.sum(0..V1_LEN);
        if sum != 0 {
            return Err(FormatError::BadChecksum { sum });
        }
        let revision = rsdp.revision();
        let xsdt_paddr = if revision >= 2 {
            let sum = rsdp.sum(0..V2_LEN);
            if sum != 0 {
                return Err(FormatError::BadExtendedChecksum { sum });
            }
            Some(rsdp.xsdt_address()).filter(|&paddr| paddr != 0)
        } else {
            None
        };
        Ok(Repr {
            revision,
            rsdt_paddr: rsdp.rsdt_address(),
            xsdt_paddr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{rsdp_v1, rsdp_v2};

    #[test]
    fn layout_matches_the_spec() {
        assert_eq!(V1_LEN, 20);
        assert_eq!(V2_LEN, 36);
    }

    #[test]
    fn parses_acpi_1_rsdp_without_xsdt() {
        let bytes = rsdp_v1(0x7fe_1000);
        let rsdp = Rsdp::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            Repr::parse(&rsdp),
            Ok(Repr {
                revision: 0,
                rsdt_paddr: 0x7fe_1000,
                xsdt_paddr: None,
            })
        );
    }

    #[test]
    fn parses_acpi_2_rsdp_with_both_roots() {
        let bytes = rsdp_v2(0x7fe_1000, 0x1_2345_6789);
        let rsdp = Rsdp::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            Repr::parse(&rsdp),
            Ok(Repr {
                revision: 2,
                rsdt_paddr: 0x7fe_1000,
                xsdt_paddr: Some(0x1_2345_6789),
            })
        );
    }

    #[test]
    fn rejects_bad_checksum_and_bad_extended_checksum() {
        let mut bytes = rsdp_v2(0x1000, 0x2000);
        bytes[17] ^= 1;
        assert!(matches!(
            Repr::parse(&Rsdp::new_unchecked(&bytes[..])),
            Err(FormatError::BadChecksum { .. })
        ));

        // The first 20 bytes are fine; only the extended part is off.
        let mut bytes = rsdp_v2(0x1000, 0x2000);
        bytes[25] ^= 1;
        assert!(matches!(
            Repr::parse(&Rsdp::new_unchecked(&bytes[..])),
            Err(FormatError::BadExtendedChecksum { .. })
        ));
    }

    #[test]
    fn rejects_wrong_signature_and_short_buffers() {
        let mut bytes = rsdp_v1(0x1000);
        bytes[7] = 0;
        assert_eq!(
            Rsdp::new_checked(&bytes[..]),
            Err(FormatError::BadSignature)
        );
        assert_eq!(
            Rsdp::new_checked(&rsdp_v1(0x1000)[..19]),
            Err(FormatError::Truncated { need: 20, have: 19 })
        );
        // A revision 2 header promises 36 bytes.
        assert_eq!(
            Rsdp::new_checked(&rsdp_v2(0x1000, 0x2000)[..20]),
            Err(FormatError::Truncated { need: 36, have: 20 })
        );
    }

    #[test]
    fn zero_xsdt_address_means_no_xsdt() {
        let bytes = rsdp_v2(0x1000, 0);
        let repr = Repr::parse(&Rsdp::new_unchecked(&bytes[..])).unwrap();
        assert_eq!(repr.xsdt_paddr, None);
    }
}
