//! Finding `\_S5` in AML bytecode without an interpreter.
//!
//! `\_S5` (ACPI 6.0 §7.4.2, "\_Sx (System States)") is a package whose first two integers are
//! the SLP_TYP values for PM1a and PM1b (on hardware-reduced platforms, the first is the
//! SLP_TYP for the sleep control register). Firmware and VMMs declare it as a named constant,
//! which compiles to (ACPI 6.0 §20.2, AML encoding):
//!
//! ```text
//! 08          NameOp
//! [5C]        RootChar '\' when written Name(\_S5, ...) outside Scope(\)
//! 5F 53 35 5F "_S5_"
//! 12          PackageOp
//! ..          PkgLength (1 to 4 bytes, counting itself and everything up to the package end)
//! nn          NumElements
//! ..          elements: ZeroOp 00, OneOp 01, BytePrefix 0A nn, WordPrefix 0B, DWordPrefix 0C,
//!             QWordPrefix 0E
//! ```
//!
//! QEMU emits exactly this: `Package(4){0, 0, 0, 0}` for `pc` and `q35` (`build_dsdt` in
//! `hw/i386/acpi-build.c`, where S5 is SLP_TYP 0 in `acpi_pm1_cnt_write`) and
//! `Package(4){ACPI_GED_SLP_TYP_S5 = 5, 0, 0, 0}` for `microvm` (`hw/i386/acpi-microvm.c`).
//!
//! This is the well-known minimal approach, and it has limits:
//!
//! - A `\_S5` defined by a `Method` (0x14) is not recognised; answering it needs an AML
//!   interpreter. The search then finds nothing and the caller reports
//!   [`AcpiError::NoS5`](crate::AcpiError::NoS5).
//! - Scopes are not tracked: a `Name(_S5, ...)` inside `Scope(\_SB)` would be taken for the
//!   root one, and bytes that merely look like a declaration (inside a buffer, say) could
//!   match. Real tables put `\_S5` at the root, and the first match wins.
//! - A raw byte 0x02 to 0x07 where an integer belongs is accepted as that value. It is not
//!   valid AML, but the widely copied shutdown code tolerates it, and values past 7 are
//!   rejected anyway: SLP_TYP is a 3-bit field.
//!
//! The scan is a single pass over the table's bytes, which its length bounds.

/// `NameOp`.
const NAME_OP: u8 = 0x08;
/// `RootChar`, `\`.
const ROOT_CHAR: u8 = b'\\';
/// `PackageOp`.
const PACKAGE_OP: u8 = 0x12;
/// The 4-character name segment.
const S5_NAME: &[u8; 4] = b"_S5_";
/// The largest SLP_TYP: a 3-bit field in PM1 control (bits 10-12) and sleep control (2-4).
pub const MAX_SLP_TYP: u8 = 7;

/// The SLP_TYP values `\_S5` gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S5 {
    pub slp_typ_a: u8,
    pub slp_typ_b: u8,
}

/// A `\_S5` package that cannot be decoded; `offset` is where its PackageOp is in the AML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPackage {
    pub offset: usize,
}

/// Finds `Name(\_S5, Package(){a, b, ...})` in `aml` (a definition block without its header).
///
/// `Ok(None)` when there is no such declaration; `Err` when there is one but its package is
/// truncated, has fewer than two elements, or its first two are not integers from 0 to 7.
pub fn find_s5(aml: &[u8]) -> Result<Option<S5>, BadPackage> {
    let mut from = 0;
    while let Some(found) = aml
        .get(from..)
        .and_then(|rest| rest.windows(S5_NAME.len()).position(|w| w == S5_NAME))
    {
        let at = from + found;
        from = at + 1;
        let package = at + S5_NAME.len();
        if is_name_declaration(aml, at) && aml.get(package) == Some(&PACKAGE_OP) {
            return decode_package(aml, package)
                .map(Some)
                .ok_or(BadPackage { offset: package });
        }
    }
    Ok(None)
}

/// Whether the name segment at `at` follows `NameOp`, directly or after a `\`.
fn is_name_declaration(aml: &[u8], at: usize) -> bool {
    let before = |n: usize| at.checked_sub(n).and_then(|i| aml.get(i)).copied();
    before(1) == Some(NAME_OP) || (before(1) == Some(ROOT_CHAR) && before(2) == Some(NAME_OP))
}

/// Decodes the first two elements of the package whose PackageOp is at `op`.
fn decode_package(aml: &[u8], op: usize) -> Option<S5> {
    let start = op + 1;
    let (len, len_bytes) = pkg_length(aml.get(start..)?)?;
    // PkgLength counts its own bytes: the package runs from `start` to `start + len`, and
    // every element must lie inside it (and inside the table).
    let package = aml.get(start..start.checked_add(len)?)?;
    let (&num_elements, elements) = package.get(len_bytes..)?.split_first()?;
    if num_elements < 2 {
        return None;
    }
    let (slp_typ_a, rest) = integer(elements)?;
    let (slp_typ_b, _) = integer(rest)?;
    let slp_typ = |value: u64| u8::try_from(value).ok().filter(|&v| v <= MAX_SLP_TYP);
    Some(S5 {
        slp_typ_a: slp_typ(slp_typ_a)?,
        slp_typ_b: slp_typ(slp_typ_b)?,
    })
}

/// Decodes a PkgLength (ACPI 6.0 §20.2.4): the length and how many bytes encode it.
///
/// The lead byte's bits 7-6 count the bytes that follow (0-3). With none, bits 5-0 are the
/// length; otherwise bits 5-4 must be 0, bits 3-0 are the low nibble and each following byte
/// adds the next 8 bits.
fn pkg_length(bytes: &[u8]) -> Option<(usize, usize)> {
    let lead = *bytes.first()?;
    let follow = usize::from(lead >> 6);
    if follow == 0 {
        return Some((usize::from(lead & 0x3f), 1));
    }
    if lead & 0x30 != 0 {
        return None;
    }
    let mut len = usize::from(lead & 0x0f);
    for (i, &byte) in bytes.get(1..=follow)?.iter().enumerate() {
        len |= usize::from(byte) << (4 + 8 * i);
    }
    Some((len, 1 + follow))
}

/// Decodes one integer data object (ACPI 6.0 §20.2.3, ComputationalData) and returns it with
/// the bytes after it.
fn integer(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (&op, rest) = bytes.split_first()?;
    let size = match op {
        // ZeroOp, OneOp, and the raw bytes of non-conforming tables (see the module doc).
        0x00..=0x07 => return Some((u64::from(op), rest)),
        0x0a => 1,
        0x0b => 2,
        0x0c => 4,
        0x0e => 8,
        _ => return None,
    };
    let (value, rest) = rest.split_at_checked(size)?;
    let mut le = [0; 8];
    le[..size].copy_from_slice(value);
    Some((u64::from_le_bytes(le), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// `Name(_S5, Package(n){elements})` with a one-byte PkgLength, as QEMU's `aml_package`.
    fn name_s5(root: bool, num_elements: u8, elements: &[u8]) -> Vec<u8> {
        let mut aml = std::vec![NAME_OP];
        if root {
            aml.push(ROOT_CHAR);
        }
        aml.extend_from_slice(S5_NAME);
        aml.push(PACKAGE_OP);
        aml.push(2 + elements.len() as u8);
        aml.push(num_elements);
        aml.extend_from_slice(elements);
        aml
    }

    fn s5(slp_typ_a: u8, slp_typ_b: u8) -> Option<S5> {
        Some(S5 {
            slp_typ_a,
            slp_typ_b,
        })
    }

    #[test]
    fn decodes_qemu_pc_zero_ops() {
        // QEMU pc/q35: Name(_S5, Package(4){0, 0, 0, 0}) inside Scope(\).
        let aml = name_s5(false, 4, &[0, 0, 0, 0]);
        assert_eq!(
            aml,
            [0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0]
        );
        assert_eq!(find_s5(&aml), Ok(s5(0, 0)));
    }

    #[test]
    fn decodes_qemu_microvm_byte_const() {
        // QEMU microvm: Package(4){ACPI_GED_SLP_TYP_S5, 0, 0, 0}; aml_int(5) is BytePrefix 05.
        let aml = name_s5(false, 4, &[0x0a, 0x05, 0, 0, 0]);
        assert_eq!(find_s5(&aml), Ok(s5(5, 0)));
    }

    #[test]
    fn decodes_root_prefixed_name_and_every_integer_width() {
        let aml = name_s5(true, 2, &[0x0b, 0x07, 0x00, 0x0c, 0x06, 0, 0, 0]);
        assert_eq!(find_s5(&aml), Ok(s5(7, 6)));
        let aml = name_s5(true, 2, &[0x01, 0x0e, 3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(find_s5(&aml), Ok(s5(1, 3)));
        // Raw bytes where integers belong, as some tables have.
        let aml = name_s5(false, 2, &[0x05, 0x07]);
        assert_eq!(find_s5(&aml), Ok(s5(5, 7)));
    }

    #[test]
    fn decodes_multi_byte_pkg_length() {
        // PkgLength 0x4f in two bytes: lead 0x4f (one byte follows, nibble 0xf), then 0x04.
        let mut aml = std::vec![0x10, 0x00, NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP];
        aml.extend_from_slice(&[0x4f, 0x04, 0x04, 0x0a, 0x05, 0x0a, 0x05]);
        aml.resize(aml.len() + 0x4f - 7, 0);
        assert_eq!(find_s5(&aml), Ok(s5(5, 5)));
        assert_eq!(pkg_length(&[0x4f, 0x04]), Some((0x4f, 2)));
        assert_eq!(
            pkg_length(&[0xcf, 0xff, 0xff, 0xff]),
            Some(((1 << 28) - 1, 4))
        );
        // Bits 5-4 of a multi-byte lead byte are reserved.
        assert_eq!(pkg_length(&[0x5f, 0x04]), None);
    }

    #[test]
    fn skips_names_that_are_not_package_declarations() {
        // Method(_S5_, 0) {...}: MethodOp 14, PkgLength, name, flags.
        let method = [0x14, 0x08, b'_', b'S', b'5', b'_', 0x00, 0xa4, 0x0a, 0x05];
        assert_eq!(find_s5(&method), Ok(None));
        // A reference to _S5_ (Store(_S5_, Local0)) and Name(_S5_, 5).
        let mut aml = std::vec![0x70, b'_', b'S', b'5', b'_', 0x60];
        aml.extend_from_slice(&[NAME_OP, b'_', b'S', b'5', b'_', 0x0a, 0x05]);
        assert_eq!(find_s5(&aml), Ok(None));
        // A later, real declaration is still found.
        aml.extend_from_slice(&name_s5(true, 4, &[0x0a, 0x07, 0x0a, 0x07, 0, 0]));
        assert_eq!(find_s5(&aml), Ok(s5(7, 7)));
        assert_eq!(find_s5(b""), Ok(None));
        assert_eq!(find_s5(b"_S5"), Ok(None));
    }

    #[test]
    fn rejects_unusable_packages() {
        let bad = |aml: &[u8]| find_s5(aml).map_err(|e| e.offset);
        // One element only.
        assert_eq!(bad(&name_s5(false, 1, &[0x0a, 0x05])), Err(5));
        // SLP_TYP past 3 bits, and OnesOp.
        assert_eq!(bad(&name_s5(false, 2, &[0x0a, 0x08, 0])), Err(5));
        assert_eq!(bad(&name_s5(false, 2, &[0xff, 0])), Err(5));
        // A method call (NameString) as an element.
        assert_eq!(bad(&name_s5(false, 2, b"SLPA\x00")), Err(5));
        // Truncated by the table end, and by its own PkgLength.
        let aml = name_s5(true, 4, &[0x0a, 0x05, 0x0a, 0x05]);
        assert_eq!(bad(&aml[..aml.len() - 1]), Err(6));
        let mut aml = name_s5(false, 2, &[0x0a, 0x05, 0x0a, 0x05]);
        aml[6] = 4;
        assert_eq!(bad(&aml), Err(5));
        // PkgLength too short to hold even itself and NumElements.
        let mut aml = name_s5(false, 2, &[0, 0]);
        aml[6] = 0;
        assert_eq!(bad(&aml), Err(5));
        // PackageOp at the very end.
        assert_eq!(bad(&[NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP]), Err(5));
    }
}
