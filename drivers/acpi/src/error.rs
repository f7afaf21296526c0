//! Why the tables could not answer, naming the table and its address.

use core::fmt;

use crate::fadt::AddressSpace;

/// An ACPI structure, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// The Root System Description Pointer.
    Rsdp,
    /// The Root System Description Table (32-bit entries).
    Rsdt,
    /// The Extended System Description Table (64-bit entries).
    Xsdt,
    /// Entry `n` (0-based) of the RSDT or XSDT, before its signature is known.
    RootEntry(usize),
    /// The Fixed ACPI Description Table (signature "FACP").
    Fadt,
    /// The Differentiated System Description Table.
    Dsdt,
    /// A Secondary System Description Table.
    Ssdt,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Table::Rsdp => f.write_str("RSDP"),
            Table::Rsdt => f.write_str("RSDT"),
            Table::Xsdt => f.write_str("XSDT"),
            Table::RootEntry(n) => write!(f, "root table entry {n}"),
            Table::Fadt => f.write_str("FADT"),
            Table::Dsdt => f.write_str("DSDT"),
            Table::Ssdt => f.write_str("SSDT"),
        }
    }
}

/// How a table's bytes break its format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than the structure (or its revision) needs.
    Truncated { need: usize, have: usize },
    /// The length field exceeds [`MAX_TABLE_LEN`](crate::MAX_TABLE_LEN).
    TooLong { len: u32 },
    /// Not the signature the pointer to it promised.
    BadSignature,
    /// The covered bytes sum to `sum`, not 0 (mod 256).
    BadChecksum { sum: u8 },
    /// The RSDP's 36-byte extended checksum sums to `sum`, not 0.
    BadExtendedChecksum { sum: u8 },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FormatError::Truncated { need, have } => {
                write!(f, "truncated (need {need} bytes, have {have})")
            }
            FormatError::TooLong { len } => write!(
                f,
                "length {len} exceeds the {} this parser accepts",
                crate::MAX_TABLE_LEN
            ),
            FormatError::BadSignature => f.write_str("wrong signature"),
            FormatError::BadChecksum { sum } => {
                write!(f, "bad checksum (bytes sum to {sum:#04x}, not 0)")
            }
            FormatError::BadExtendedChecksum { sum } => {
                write!(f, "bad extended checksum (bytes sum to {sum:#04x}, not 0)")
            }
        }
    }
}

impl core::error::Error for FormatError {}

/// The ACPI tables cannot say how to power off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// `len` bytes of `table` at `paddr` are not in readable memory, or `paddr + len` overflows.
    OutsideMemory { table: Table, paddr: u64, len: u64 },
    /// `table` at `paddr` is malformed.
    Malformed {
        table: Table,
        paddr: u64,
        error: FormatError,
    },
    /// The root table lists more than [`MAX_ROOT_ENTRIES`](crate::MAX_ROOT_ENTRIES) tables.
    TooManyEntries {
        table: Table,
        paddr: u64,
        entries: usize,
    },
    /// The root table at `paddr` lists no FADT.
    NoFadt { root: Table, paddr: u64 },
    /// The FADT gives neither `DSDT` nor `X_DSDT`, but a sleep register needs `\_S5`.
    NoDsdt,
    /// A PM1 control block the parser cannot express as an I/O port.
    BadRegister {
        field: &'static str,
        space: AddressSpace,
        address: u64,
    },
    /// No `Name(\_S5, Package(){...})` in the DSDT or any SSDT. A `\_S5` computed by a
    /// method needs an AML interpreter and is not supported.
    NoS5,
    /// The `\_S5` package at `paddr` in `table` is truncated, has fewer than two elements, or
    /// holds something other than integers from 0 to 7.
    BadS5 { table: Table, paddr: u64 },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiError::OutsideMemory { table, paddr, len } => write!(
                f,
                "{table} at {paddr:#x}: {len} bytes are outside readable memory"
            ),
            AcpiError::Malformed {
                table,
                paddr,
                error,
            } => write!(f, "{table} at {paddr:#x}: {error}"),
            AcpiError::TooManyEntries {
                table,
                paddr,
                entries,
            } => write!(
                f,
                "{table} at {paddr:#x}: {entries} entries, more than the {} accepted",
                crate::MAX_ROOT_ENTRIES
            ),
            AcpiError::NoFadt { root, paddr } => {
                write!(f, "{root} at {paddr:#x} lists no FADT")
            }
            AcpiError::NoDsdt => f.write_str("FADT has neither DSDT nor X_DSDT"),
            AcpiError::BadRegister {
                field,
                space,
                address,
            } => write!(
                f,
                "FADT {field} ({space} {address:#x}) is not a 16-bit I/O port"
            ),
            AcpiError::NoS5 => f.write_str(
                "no \\_S5 package in the DSDT or SSDTs (a \\_S5 method is not supported)",
            ),
            AcpiError::BadS5 { table, paddr } => {
                write!(f, "{table}: unusable \\_S5 package at {paddr:#x}")
            }
        }
    }
}

impl core::error::Error for AcpiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn messages_name_the_table_and_address() {
        let error = AcpiError::Malformed {
            table: Table::Fadt,
            paddr: 0x7ffe_0000,
            error: FormatError::BadChecksum { sum: 0x12 },
        };
        assert_eq!(
            error.to_string(),
            "FADT at 0x7ffe0000: bad checksum (bytes sum to 0x12, not 0)"
        );
        let error = AcpiError::OutsideMemory {
            table: Table::RootEntry(3),
            paddr: 0x1000,
            len: 36,
        };
        assert_eq!(
            error.to_string(),
            "root table entry 3 at 0x1000: 36 bytes are outside readable memory"
        );
    }
}
