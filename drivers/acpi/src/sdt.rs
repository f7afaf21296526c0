//! The header every System Description Table starts with, as a checked view, and the entries of
//! the root tables.
//!
//! Spec: ACPI 6.0 §5.2.6 (System Description Table Header), §5.2.7 (RSDT), §5.2.8 (XSDT).
//! Little-endian:
//!
//! ```text
//!  0 Signature         4 ASCII characters
//!  4 Length            of the whole table, header included
//!  8 Revision
//!  9 Checksum          the whole table sums to 0
//! 10 OEMID, OEM Table ID, OEM Revision, Creator ID, Creator Revision
//! 36 the table's own fields; for the RSDT an array of 32-bit table addresses, for the XSDT
//!    an array of 64-bit ones, as many as fit in Length
//! ```

use crate::error::FormatError;
use crate::{MAX_TABLE_LEN, checksum, read_u32};

/// Size of the header.
pub const HEADER_LEN: usize = 36;

mod field {
    use core::ops::Range;

    pub const SIGNATURE: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..8;
    pub const REVISION: usize = 8;
}

/// A view of a System Description Table: its header and, after [`check`](Self::check),
/// exactly `Length` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdt<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Sdt<T> {
    /// Wraps `buffer` without checks; accessors panic if it is shorter than the header.
    pub const fn new_unchecked(buffer: T) -> Self {
        Sdt { buffer }
    }

    /// Wraps `buffer` after [`check`](Self::check).
    pub fn new_checked(buffer: T) -> Result<Self, FormatError> {
        let sdt = Self::new_unchecked(buffer);
        sdt.check()?;
        Ok(sdt)
    }

    /// Ensures the buffer holds the header, and that `Length` covers the header, stays within
    /// [`MAX_TABLE_LEN`] and fits in the buffer, so [`bytes`](Self::bytes) cannot panic.
    pub fn check(&self) -> Result<(), FormatError> {
        let have = self.buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(FormatError::Truncated {
                need: HEADER_LEN,
                have,
            });
        }
        let len = self.length();
        if len > MAX_TABLE_LEN {
            return Err(FormatError::TooLong { len });
        }
        let len = len as usize;
        if len < HEADER_LEN {
            return Err(FormatError::Truncated {
                need: HEADER_LEN,
                have: len,
            });
        }
        if have < len {
            return Err(FormatError::Truncated { need: len, have });
        }
        Ok(())
    }

    pub fn signature(&self) -> [u8; 4] {
        let mut signature = [0; 4];
        signature.copy_from_slice(&self.buffer.as_ref()[field::SIGNATURE]);
        signature
    }

    pub fn length(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn revision(&self) -> u8 {
        self.buffer.as_ref()[field::REVISION]
    }

    /// The table's `Length` bytes, header included.
    pub fn bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.length() as usize]
    }

    /// What follows the header: the FADT's fields, a DSDT's AML, a root table's entries.
    pub fn body(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..]
    }

    /// Checks that the table, `Length` bytes of it, sums to 0.
    pub fn verify_checksum(&self) -> Result<(), FormatError> {
        match checksum(self.bytes()) {
            0 => Ok(()),
            sum => Err(FormatError::BadChecksum { sum }),
        }
    }
}

/// The table addresses in a root table's body: `entry_len` is 4 for the RSDT, 8 for the XSDT.
/// A partial entry at the end is ignored, and a zero address is skipped (ACPICA does the same).
pub(crate) fn root_entries(body: &[u8], entry_len: usize) -> impl Iterator<Item = u64> + '_ {
    body.chunks_exact(entry_len)
        .map(|entry| {
            let mut bytes = [0; 8];
            bytes[..entry.len()].copy_from_slice(entry);
            u64::from_le_bytes(bytes)
        })
        .filter(|&paddr| paddr != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::sdt;
    use std::vec::Vec;

    #[test]
    fn reads_header_fields_and_verifies_checksum() {
        let bytes = sdt(b"DSDT", 2, &[1, 2, 3]);
        let table = Sdt::new_checked(&bytes[..]).unwrap();
        assert_eq!(table.signature(), *b"DSDT");
        assert_eq!(table.length(), 39);
        assert_eq!(table.revision(), 2);
        assert_eq!(table.body(), [1, 2, 3]);
        assert_eq!(table.verify_checksum(), Ok(()));
    }

    #[test]
    fn checksum_covers_only_length_bytes() {
        let mut bytes = sdt(b"SSDT", 1, &[9; 4]);
        bytes.push(0x55);
        let table = Sdt::new_checked(&bytes[..]).unwrap();
        assert_eq!(table.verify_checksum(), Ok(()));
        bytes[38] ^= 0x10;
        assert_eq!(
            Sdt::new_unchecked(&bytes[..]).verify_checksum(),
            Err(FormatError::BadChecksum { sum: 0x10 })
        );
    }

    #[test]
    fn rejects_lengths_below_the_header_past_the_buffer_or_absurd() {
        let mut bytes = sdt(b"XSDT", 1, &[0; 8]);
        bytes[4..8].copy_from_slice(&35u32.to_le_bytes());
        assert_eq!(
            Sdt::new_checked(&bytes[..]),
            Err(FormatError::Truncated { need: 36, have: 35 })
        );
        bytes[4..8].copy_from_slice(&45u32.to_le_bytes());
        assert_eq!(
            Sdt::new_checked(&bytes[..]),
            Err(FormatError::Truncated { need: 45, have: 44 })
        );
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Sdt::new_checked(&bytes[..]),
            Err(FormatError::TooLong { len: u32::MAX })
        );
        assert_eq!(
            Sdt::new_checked(&bytes[..20]),
            Err(FormatError::Truncated { need: 36, have: 20 })
        );
    }

    #[test]
    fn root_entries_are_little_endian_skip_zero_and_ignore_a_partial_tail() {
        let mut body = Vec::new();
        body.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&0x1000u64.to_le_bytes());
        body.extend_from_slice(&[0xff; 5]);
        let xsdt: Vec<u64> = root_entries(&body, 8).collect();
        assert_eq!(xsdt, [0x1122_3344_5566_7788, 0x1000]);
        let rsdt: Vec<u64> = root_entries(&body[..12], 4).collect();
        assert_eq!(rsdt, [0x5566_7788, 0x1122_3344]);
    }
}
