//! ACPI tables in, how to power off and reset out.
//!
//! A guest that wants to switch itself off must ask the platform, and on every PC-compatible
//! VMM the ACPI tables say how: QEMU `pc` and `q35` through the PM1 control block (write
//! SLP_TYP for S5 with SLP_EN), `microvm` and other hardware-reduced platforms through the
//! FADT's sleep control register. This crate reads the tables and returns a [`PowerControl`]:
//! which register to write, and the value. The kernel does the port or MMIO write.
//!
//! - **Untrusted input, bounded work.** Every length and address comes from guest memory the
//!   firmware or VMM wrote. Memory is reached only through [`PhysMemory::read`]; every table's
//!   length is checked against what it must hold and capped at [`MAX_TABLE_LEN`], the root
//!   table's entries at [`MAX_ROOT_ENTRIES`]; every checksum is verified. Nothing panics and
//!   every loop is bounded by a table length.
//! - **Checked views and reprs, the smoltcp way**, as in `ringbolt-boot`: [`rsdp`], [`sdt`]
//!   and [`fadt`] are byte-range views whose `check` makes accessors panic-free, and `Repr`s
//!   that hold the validated values. The FADT is read by its length, never its revision.
//! - **No AML interpreter.** `\_S5` is found by pattern ([`aml`]), which covers the named
//!   packages VMMs and firmware emit; a `\_S5` method is an error, [`AcpiError::NoS5`].
//! - **No `alloc`**: this runs at shutdown, when the heap may be in any state.
//!
//! Where the pieces are (ACPI 6.0 §5.2): RSDP -> XSDT (64-bit entries; the RSDT's 32-bit
//! ones only when there is no XSDT) -> FADT (`FACP`) -> DSDT, then the SSDTs if the DSDT has
//! no `\_S5` (older QEMU declared it in an SSDT: `build_ssdt` in `hw/i386/acpi-build.c`).
//! [`find_rsdp`] finds the RSDP the BIOS way when the boot protocol gives none.
//!
//! Not done: switching a legacy chipset into ACPI mode (SMI_CMD / ACPI_ENABLE, SCI_EN) before
//! writing PM1; QEMU's PIIX4 and ICH9 honour SLP_EN regardless (`acpi_pm1_cnt_write` in
//! `hw/acpi/core.c`).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod aml;
pub mod error;
pub mod fadt;
pub mod rsdp;
pub mod sdt;

pub use error::{AcpiError, FormatError, Table};
pub use fadt::{AddressSpace, GenericAddress};

use core::ops::Range;

use ringbolt_boot::PhysMemory;

/// The longest table accepted, 1 MiB. Real DSDTs are tens to a few hundred KiB; QEMU's are
/// under 16 KiB. It bounds both the read and the `\_S5` scan.
pub const MAX_TABLE_LEN: u32 = 1 << 20;
/// The most RSDT or XSDT entries accepted. QEMU lists about ten tables; servers a few dozen.
pub const MAX_ROOT_ENTRIES: usize = 256;

/// PM1 control: SLP_TYPx, bits 10-12 (ACPI 6.0 §4.8.3.2.1, PM1 Control Registers).
const PM1_SLP_TYP_SHIFT: u32 = 10;
/// PM1 control: SLP_EN, bit 13, write-only; setting it enters the sleep state.
const PM1_SLP_EN: u16 = 1 << 13;
/// PM1 control bits a write must keep from the current value: SCI_EN (0), the ignored bit 9
/// and the reserved bits 3-8 and 14-15. ACPICA's `ACPI_PM1_CONTROL_PRESERVED_BITS`.
const PM1_PRESERVED: u16 = 0xc3f9;
/// Sleep control register: SLP_TYP, bits 2-4 (ACPI 6.0 §4.8.3.7).
const SLEEP_SLP_TYP_SHIFT: u32 = 2;
/// Sleep control register: SLP_EN, bit 5.
const SLEEP_SLP_EN: u8 = 1 << 5;

/// How this platform enters S5 (soft-off) and resets, from its ACPI tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerControl {
    /// Fixed-hardware ACPI: the PM1a (and PM1b) control block I/O ports and `\_S5`'s
    /// SLP_TYPa/b.
    pub pm1: Option<Pm1Sleep>,
    /// Hardware-reduced ACPI (FADT flag HW_REDUCED_ACPI): SLEEP_CONTROL_REG and `\_S5`'s
    /// SLP_TYP.
    pub sleep_control: Option<SleepControl>,
    /// The FADT's RESET_REG and RESET_VALUE, if the RESET_REG_SUP flag is set.
    pub reset: Option<(GenericAddress, u8)>,
    /// The FADT's CENTURY: the CMOS register index holding the century; `None` when 0.
    pub rtc_century: Option<u8>,
}

/// Entering S5 through the PM1 control blocks (ACPI 6.0 §4.8.3.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pm1Sleep {
    pub pm1a_control: u16,
    pub pm1b_control: Option<u16>,
    pub slp_typ_a: u8,
    pub slp_typ_b: u8,
}

impl Pm1Sleep {
    /// The 16-bit value to write to `pm1a_control` to enter S5, given `current`, the value
    /// read from it: SLP_TYPa and SLP_EN set, SCI_EN and reserved bits kept, as ACPICA's
    /// `acpi_hw_legacy_sleep` writes it.
    pub fn pm1a_value(&self, current: u16) -> u16 {
        pm1_value(current, self.slp_typ_a)
    }

    /// Same for `pm1b_control`, with SLP_TYPb. When both blocks exist, write PM1a then PM1b.
    pub fn pm1b_value(&self, current: u16) -> u16 {
        pm1_value(current, self.slp_typ_b)
    }
}

fn pm1_value(current: u16, slp_typ: u8) -> u16 {
    (current & PM1_PRESERVED)
        | (u16::from(slp_typ & aml::MAX_SLP_TYP) << PM1_SLP_TYP_SHIFT)
        | PM1_SLP_EN
}

/// Entering S5 through a hardware-reduced platform's sleep control register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleepControl {
    /// ACPI requires an 8-bit register at bit offset 0, in system I/O, system memory or PCI
    /// configuration space; QEMU `microvm` uses an MMIO byte of its Generic Event Device.
    pub register: GenericAddress,
    pub slp_typ: u8,
}

impl SleepControl {
    /// The byte to write to `register`: SLP_TYP in bits 2-4 and SLP_EN (ACPI 6.0 §4.8.3.7;
    /// ACPICA's `ACPI_X_SLEEP_TYPE_MASK` and `ACPI_X_SLEEP_ENABLE`).
    pub fn value(&self) -> u8 {
        ((self.slp_typ & aml::MAX_SLP_TYP) << SLEEP_SLP_TYP_SHIFT) | SLEEP_SLP_EN
    }
}

/// Reads the ACPI tables from the RSDP at `rsdp_paddr` and says how to power off and reset.
///
/// `\_S5` is looked up only when there is a sleep register to write it to, so a FADT with
/// neither PM1 nor sleep control (or no DSDT) still yields its reset register and century.
pub fn power_control(mem: &impl PhysMemory, rsdp_paddr: u64) -> Result<PowerControl, AcpiError> {
    let rsdp = read_rsdp(mem, rsdp_paddr)?;
    let root = Root::read(mem, &rsdp)?;
    let fadt_paddr = root.find(mem, fadt::SIGNATURE)?.ok_or(AcpiError::NoFadt {
        root: root.table,
        paddr: root.paddr,
    })?;
    let fadt_bytes = read_sdt(mem, fadt_paddr, Table::Fadt, fadt::SIGNATURE)?;
    let fadt = fadt::Fadt::new_checked(fadt_bytes).map_err(|error| AcpiError::Malformed {
        table: Table::Fadt,
        paddr: fadt_paddr,
        error,
    })?;
    let fadt = fadt::Repr::parse(&fadt)?;

    let s5 = if fadt.pm1a_control.is_some() || fadt.sleep_control.is_some() {
        Some(find_s5(mem, &root, fadt.dsdt_paddr)?)
    } else {
        None
    };
    Ok(PowerControl {
        pm1: fadt
            .pm1a_control
            .zip(s5)
            .map(|(pm1a_control, s5)| Pm1Sleep {
                pm1a_control,
                pm1b_control: fadt.pm1b_control,
                slp_typ_a: s5.slp_typ_a,
                slp_typ_b: s5.slp_typ_b,
            }),
        sleep_control: fadt
            .sleep_control
            .zip(s5)
            .map(|(register, s5)| SleepControl {
                register,
                slp_typ: s5.slp_typ_a,
            }),
        reset: fadt.reset,
        rtc_century: fadt.century,
    })
}

/// The BIOS Data Area word holding the EBDA's real-mode segment.
const BDA_EBDA_SEGMENT: u64 = 0x40e;
/// How much of the EBDA holds the RSDP, if it is there.
const EBDA_SEARCH_LEN: u64 = 1024;
/// The BIOS read-only area the RSDP may be in.
const BIOS_AREA: Range<u64> = 0xe_0000..0x10_0000;

/// Finds the RSDP the IA-PC way (ACPI 6.0 §5.2.5.1): on a 16-byte boundary in the first KiB
/// of the Extended BIOS Data Area, then in 0xE0000-0xFFFFF. A candidate counts only if it
/// passes every check [`power_control`] makes of an RSDP, checksums included.
///
/// For boot protocols that pass no RSDP (PVH start info version 0 with `rsdp_paddr` 0). The
/// EBDA segment is taken from the BIOS Data Area only if it points between 0x400 and 0xA0000,
/// as ACPICA's `acpi_find_root_pointer` does; unreadable candidates are skipped.
pub fn find_rsdp(mem: &impl PhysMemory) -> Option<u64> {
    let ebda = mem
        .read(BDA_EBDA_SEGMENT, 2)
        .map(|segment| u64::from(u16::from_le_bytes([segment[0], segment[1]])) << 4)
        .filter(|base| (0x401..0xa_0000).contains(base))
        .map(|base| base..base + EBDA_SEARCH_LEN);
    ebda.into_iter()
        .chain([BIOS_AREA])
        .flat_map(|area| area.step_by(16))
        .find(|&paddr| read_rsdp(mem, paddr).is_ok())
}

/// Reads and validates the RSDP at `paddr`.
fn read_rsdp(mem: &impl PhysMemory, paddr: u64) -> Result<rsdp::Repr, AcpiError> {
    let read = |len: usize| {
        mem.read(paddr, len).ok_or(AcpiError::OutsideMemory {
            table: Table::Rsdp,
            paddr,
            len: len as u64,
        })
    };
    let malformed = |error| AcpiError::Malformed {
        table: Table::Rsdp,
        paddr,
        error,
    };
    // The first 20 bytes say whether there are 36; a wrong signature ends it before that.
    let head = rsdp::Rsdp::new_unchecked(read(rsdp::V1_LEN)?);
    if head.signature() != rsdp::SIGNATURE {
        return Err(malformed(FormatError::BadSignature));
    }
    let bytes = read(head.structure_len())?;
    rsdp::Repr::parse(&rsdp::Rsdp::new_unchecked(bytes)).map_err(malformed)
}

/// Reads the table at `paddr` whose signature must be `signature`: its header, then `Length`
/// bytes, then the checksum over them.
fn read_sdt<'m>(
    mem: &'m impl PhysMemory,
    paddr: u64,
    table: Table,
    signature: &[u8; 4],
) -> Result<&'m [u8], AcpiError> {
    let malformed = |error| AcpiError::Malformed {
        table,
        paddr,
        error,
    };
    let outside = |len: usize| AcpiError::OutsideMemory {
        table,
        paddr,
        len: len as u64,
    };
    let header = mem
        .read(paddr, sdt::HEADER_LEN)
        .ok_or(outside(sdt::HEADER_LEN))?;
    let header = sdt::Sdt::new_unchecked(header);
    if header.signature() != *signature {
        return Err(malformed(FormatError::BadSignature));
    }
    // Reject absurd lengths before asking for that much memory.
    let len = header.length();
    if len > MAX_TABLE_LEN {
        return Err(malformed(FormatError::TooLong { len }));
    }
    let len = len as usize;
    if len < sdt::HEADER_LEN {
        return Err(malformed(FormatError::Truncated {
            need: sdt::HEADER_LEN,
            have: len,
        }));
    }
    let table_bytes = mem.read(paddr, len).ok_or(outside(len))?;
    let view = sdt::Sdt::new_checked(table_bytes).map_err(malformed)?;
    view.verify_checksum().map_err(malformed)?;
    // The checksummed bytes, borrowed from memory rather than from the view.
    Ok(&table_bytes[..view.bytes().len()])
}

/// The RSDT or XSDT, validated.
struct Root<'m> {
    table: Table,
    paddr: u64,
    body: &'m [u8],
    entry_len: usize,
}

impl<'m> Root<'m> {
    /// Reads the XSDT if the RSDP gives one, else the RSDT.
    fn read(mem: &'m impl PhysMemory, rsdp: &rsdp::Repr) -> Result<Self, AcpiError> {
        let (table, paddr, signature, entry_len) = match rsdp.xsdt_paddr {
            Some(paddr) => (Table::Xsdt, paddr, b"XSDT", 8),
            None => (Table::Rsdt, u64::from(rsdp.rsdt_paddr), b"RSDT", 4),
        };
        let bytes = read_sdt(mem, paddr, table, signature)?;
        let body = &bytes[sdt::HEADER_LEN..];
        let entries = body.len() / entry_len;
        if entries > MAX_ROOT_ENTRIES {
            return Err(AcpiError::TooManyEntries {
                table,
                paddr,
                entries,
            });
        }
        Ok(Root {
            table,
            paddr,
            body,
            entry_len,
        })
    }

    /// The addresses of the listed tables whose signature is `signature`, in order. Reading
    /// each entry's signature can fail, so the iterator yields results.
    fn tables<'a, M: PhysMemory>(
        &'a self,
        mem: &'a M,
        signature: &'a [u8; 4],
    ) -> impl Iterator<Item = Result<u64, AcpiError>> + 'a {
        sdt::root_entries(self.body, self.entry_len)
            .enumerate()
            .filter_map(
                move |(index, paddr)| match mem.read(paddr, signature.len()) {
                    Some(found) if found == signature => Some(Ok(paddr)),
                    Some(_) => None,
                    None => Some(Err(AcpiError::OutsideMemory {
                        table: Table::RootEntry(index),
                        paddr,
                        len: signature.len() as u64,
                    })),
                },
            )
    }

    /// The first listed table whose signature is `signature`.
    fn find(&self, mem: &impl PhysMemory, signature: &[u8; 4]) -> Result<Option<u64>, AcpiError> {
        self.tables(mem, signature).next().transpose()
    }
}

/// `\_S5` from the DSDT, or failing that from the first SSDT that declares it.
fn find_s5(
    mem: &impl PhysMemory,
    root: &Root<'_>,
    dsdt_paddr: Option<u64>,
) -> Result<aml::S5, AcpiError> {
    let dsdt_paddr = dsdt_paddr.ok_or(AcpiError::NoDsdt)?;
    if let Some(s5) = s5_in(mem, dsdt_paddr, Table::Dsdt, b"DSDT")? {
        return Ok(s5);
    }
    for ssdt_paddr in root.tables(mem, b"SSDT") {
        if let Some(s5) = s5_in(mem, ssdt_paddr?, Table::Ssdt, b"SSDT")? {
            return Ok(s5);
        }
    }
    Err(AcpiError::NoS5)
}

/// `\_S5` in the definition block at `paddr`, if it declares one.
fn s5_in(
    mem: &impl PhysMemory,
    paddr: u64,
    table: Table,
    signature: &[u8; 4],
) -> Result<Option<aml::S5>, AcpiError> {
    let bytes = read_sdt(mem, paddr, table, signature)?;
    aml::find_s5(&bytes[sdt::HEADER_LEN..]).map_err(|bad| AcpiError::BadS5 {
        table,
        paddr: paddr.saturating_add((sdt::HEADER_LEN + bad.offset) as u64),
    })
}

/// The wrapping byte sum ACPI checksums are defined by: 0 for a valid structure.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |sum, &byte| sum.wrapping_add(byte))
}

fn read_u32(data: &[u8], field: Range<usize>) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&data[field]);
    u32::from_le_bytes(bytes)
}

fn read_u64(data: &[u8], field: Range<usize>) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&data[field]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ringbolt_boot::fake::FakeMemory;
    use std::string::ToString;
    use std::vec::Vec;

    /// A table with a QEMU-like header around `body`, checksum filled in.
    pub(crate) fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
        let mut table = std::vec![0; sdt::HEADER_LEN];
        table[0..4].copy_from_slice(signature);
        table[4..8].copy_from_slice(&((sdt::HEADER_LEN + body.len()) as u32).to_le_bytes());
        table[8] = revision;
        table[10..16].copy_from_slice(b"BOCHS ");
        table[16..24].copy_from_slice(b"BXPC    ");
        table.extend_from_slice(body);
        fix_checksum(&mut table, 9);
        table
    }

    /// Makes `bytes` sum to 0 by adjusting the checksum byte at `at`.
    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        bytes[at] = 0u8.wrapping_sub(checksum(bytes));
    }

    pub(crate) fn rsdp_v1(rsdt: u32) -> Vec<u8> {
        let mut rsdp = std::vec![0; rsdp::V1_LEN];
        rsdp[0..8].copy_from_slice(rsdp::SIGNATURE);
        rsdp[9..15].copy_from_slice(b"BOCHS ");
        rsdp[16..20].copy_from_slice(&rsdt.to_le_bytes());
        fix_checksum(&mut rsdp, 8);
        rsdp
    }

    pub(crate) fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut rsdp = rsdp_v1(rsdt);
        rsdp[15] = 2;
        fix_checksum(&mut rsdp, 8);
        rsdp.extend_from_slice(&(rsdp::V2_LEN as u32).to_le_bytes());
        rsdp.extend_from_slice(&xsdt.to_le_bytes());
        rsdp.extend_from_slice(&[0; 4]);
        fix_checksum(&mut rsdp, 32);
        rsdp
    }

    pub(crate) fn gas(space: u8, bit_width: u8, address: u64) -> [u8; fadt::GAS_LEN] {
        let mut gas = [0; fadt::GAS_LEN];
        gas[0] = space;
        gas[1] = bit_width;
        gas[3] = if bit_width == 8 { 1 } else { 2 };
        gas[4..].copy_from_slice(&address.to_le_bytes());
        gas
    }

    /// A FADT of `len` bytes, header included; fields default to 0.
    pub(crate) struct FadtBuilder {
        bytes: Vec<u8>,
    }

    impl FadtBuilder {
        pub(crate) fn new(len: usize) -> Self {
            let mut bytes = std::vec![0; len];
            bytes[8] = 6;
            FadtBuilder { bytes }
        }

        fn put(mut self, offset: usize, value: &[u8]) -> Self {
            self.bytes[offset..offset + value.len()].copy_from_slice(value);
            self
        }

        pub(crate) fn revision(self, revision: u8) -> Self {
            self.put(8, &[revision])
        }

        pub(crate) fn dsdt(self, paddr: u32) -> Self {
            self.put(40, &paddr.to_le_bytes())
        }

        pub(crate) fn pm1a(self, port: u32) -> Self {
            self.put(64, &port.to_le_bytes())
        }

        pub(crate) fn pm1b(self, port: u32) -> Self {
            self.put(68, &port.to_le_bytes())
        }

        pub(crate) fn century(self, index: u8) -> Self {
            self.put(108, &[index])
        }

        pub(crate) fn flags(self, flags: u32) -> Self {
            self.put(112, &flags.to_le_bytes())
        }

        pub(crate) fn reset(self, register: [u8; 12], value: u8) -> Self {
            self.put(116, &register).put(128, &[value])
        }

        pub(crate) fn x_dsdt(self, paddr: u64) -> Self {
            self.put(140, &paddr.to_le_bytes())
        }

        pub(crate) fn x_pm1a(self, register: [u8; 12]) -> Self {
            self.put(172, &register)
        }

        pub(crate) fn x_pm1b(self, register: [u8; 12]) -> Self {
            self.put(184, &register)
        }

        pub(crate) fn sleep_control(self, register: [u8; 12]) -> Self {
            self.put(244, &register)
        }

        /// The table: signature, length and checksum filled in.
        pub(crate) fn bytes(mut self) -> Vec<u8> {
            let len = self.bytes.len() as u32;
            self.bytes[0..4].copy_from_slice(fadt::SIGNATURE);
            self.bytes[4..8].copy_from_slice(&len.to_le_bytes());
            fix_checksum(&mut self.bytes, 9);
            self.bytes
        }
    }

    fn root(signature: &[u8; 4], entry_len: usize, entries: &[u64]) -> Vec<u8> {
        let body: Vec<u8> = entries
            .iter()
            .flat_map(|paddr| paddr.to_le_bytes()[..entry_len].to_vec())
            .collect();
        sdt(signature, 1, &body)
    }

    /// `Scope(\) { Name(_S5, Package(n){elements}) }` after some unrelated AML.
    fn dsdt_with_s5(num_elements: u8, elements: &[u8]) -> Vec<u8> {
        // Name(PICF, Zero), and a reference to _S5_ that is not a declaration.
        let mut aml = std::vec![
            0x08, b'P', b'I', b'C', b'F', 0x00, 0x70, b'_', b'S', b'5', b'_'
        ];
        aml.push(0x60);
        let package_len = 2 + elements.len() as u8;
        aml.extend_from_slice(&[0x10, 9 + package_len, b'\\', 0x08, b'_', b'S', b'5', b'_']);
        aml.extend_from_slice(&[0x12, package_len, num_elements]);
        aml.extend_from_slice(elements);
        sdt(b"DSDT", 1, &aml)
    }

    const MEMORY_LEN: usize = 0x10_0000;
    const RSDP: u64 = 0xf_5a40;
    const XSDT: u64 = 0x8_0000;
    const RSDT: u64 = 0x8_0800;
    const FADT: u64 = 0x8_1000;
    const DSDT: u64 = 0x8_2000;
    const SSDT: u64 = 0x8_3000;
    const MADT: u64 = 0x8_4000;

    /// QEMU pc FADT: PM1 at 0x604 (PIIX4/ICH9 PM base 0x600 + 4), reset via 0xcf9.
    fn pc_fadt() -> FadtBuilder {
        FadtBuilder::new(276)
            .dsdt(DSDT as u32)
            .x_dsdt(DSDT)
            .pm1a(0x604)
            .x_pm1a(gas(1, 16, 0x604))
            .century(0x32)
            .flags(fadt::RESET_REG_SUP | 1)
            .reset(gas(1, 8, 0xcf9), 0x0f)
    }

    /// Empty memory with a QEMU-like table set: RSDP v2 -> XSDT (and RSDT) -> MADT, FADT ->
    /// DSDT with `Name(_S5, Package(4){0, 0, 0, 0})`.
    fn qemu_pc() -> FakeMemory<Vec<u8>> {
        let mut mem = FakeMemory::new(0, std::vec![0; MEMORY_LEN]);
        mem.write(RSDP, &rsdp_v2(RSDT as u32, XSDT));
        mem.write(XSDT, &root(b"XSDT", 8, &[MADT, FADT, SSDT]));
        mem.write(RSDT, &root(b"RSDT", 4, &[MADT, FADT, SSDT]));
        mem.write(MADT, &sdt(b"APIC", 1, &[0; 8]));
        mem.write(FADT, &pc_fadt().bytes());
        mem.write(DSDT, &dsdt_with_s5(4, &[0, 0, 0, 0]));
        mem.write(
            SSDT,
            &sdt(b"SSDT", 1, &[0x08, b'C', b'P', b'U', b'S', 0x01]),
        );
        mem
    }

    fn io(bit_width: u8, address: u64) -> GenericAddress {
        GenericAddress {
            space: AddressSpace::SystemIo,
            bit_width,
            address,
        }
    }

    #[test]
    fn qemu_pc_gives_pm1_sleep_reset_and_century() {
        assert_eq!(
            power_control(&qemu_pc(), RSDP),
            Ok(PowerControl {
                pm1: Some(Pm1Sleep {
                    pm1a_control: 0x604,
                    pm1b_control: None,
                    slp_typ_a: 0,
                    slp_typ_b: 0,
                }),
                sleep_control: None,
                reset: Some((io(8, 0xcf9), 0x0f)),
                rtc_century: Some(0x32),
            })
        );
    }

    #[test]
    fn decodes_byte_const_sleep_types_from_the_dsdt() {
        let mut mem = qemu_pc();
        mem.write(DSDT, &dsdt_with_s5(4, &[0x0a, 0x05, 0x0a, 0x07, 0, 0]));
        let pm1 = power_control(&mem, RSDP).unwrap().pm1.unwrap();
        assert_eq!((pm1.slp_typ_a, pm1.slp_typ_b), (5, 7));
    }

    #[test]
    fn prefers_the_xsdt_over_the_rsdt() {
        let mut mem = qemu_pc();
        mem.write(RSDT + 9, &[0xee]);
        assert!(power_control(&mem, RSDP).is_ok());
        // Without an XSDT address the (now corrupt) RSDT is what gets read.
        mem.write(RSDP, &rsdp_v2(RSDT as u32, 0));
        assert!(matches!(
            power_control(&mem, RSDP),
            Err(AcpiError::Malformed {
                table: Table::Rsdt,
                paddr: RSDT,
                error: FormatError::BadChecksum { .. },
            })
        ));
    }

    #[test]
    fn microvm_gives_the_sleep_control_register() {
        // QEMU hw/i386/acpi-microvm.c: hardware-reduced FADT revision 5 with the GED's
        // registers at GED_MMIO_BASE_REGS = 0xfea00200: SLEEP_CTL +0, RESET +2 (value 0x42);
        // DSDT `Package(4){ACPI_GED_SLP_TYP_S5, 0, 0, 0}`; an XSDT and no RSDT.
        let mut mem = FakeMemory::new(0, std::vec![0; MEMORY_LEN]);
        mem.write(RSDP, &rsdp_v2(0, XSDT));
        mem.write(XSDT, &root(b"XSDT", 8, &[FADT]));
        let fadt = FadtBuilder::new(268)
            .revision(5)
            .flags(fadt::HW_REDUCED_ACPI | fadt::RESET_REG_SUP)
            .x_dsdt(DSDT)
            .sleep_control(gas(0, 8, 0xfea0_0200))
            .reset(gas(0, 8, 0xfea0_0202), 0x42)
            .century(0x32);
        mem.write(FADT, &fadt.bytes());
        mem.write(DSDT, &dsdt_with_s5(4, &[0x0a, 0x05, 0, 0, 0]));

        let mmio = |address| GenericAddress {
            space: AddressSpace::SystemMemory,
            bit_width: 8,
            address,
        };
        let control = power_control(&mem, RSDP).unwrap();
        assert_eq!(
            control,
            PowerControl {
                pm1: None,
                sleep_control: Some(SleepControl {
                    register: mmio(0xfea0_0200),
                    slp_typ: 5,
                }),
                reset: Some((mmio(0xfea0_0202), 0x42)),
                rtc_century: Some(0x32),
            }
        );
        // generic_event_device.c: slp_typ = (data >> 2) & 7 must be 5, slp_en = bit 5.
        assert_eq!(control.sleep_control.unwrap().value(), 0x34);
    }

    #[test]
    fn acpi_1_rsdp_walks_the_rsdt_and_reads_no_field_past_a_short_fadt() {
        let mut mem = qemu_pc();
        mem.write(RSDP, &rsdp_v1(RSDT as u32));
        // An ACPI 1.0 FADT (116 bytes) claiming RESET_REG_SUP; the bytes after it look like
        // a reset register, but they are not part of the table.
        let fadt = FadtBuilder::new(116)
            .revision(1)
            .dsdt(DSDT as u32)
            .pm1a(0x604)
            .flags(fadt::RESET_REG_SUP);
        mem.write(FADT, &fadt.bytes());
        mem.write(FADT + 116, &gas(1, 8, 0xcf9));
        mem.write(RSDT, &root(b"RSDT", 4, &[MADT, FADT]));
        mem.write(XSDT + 9, &[0xee]);
        let control = power_control(&mem, RSDP).unwrap();
        assert_eq!(control.reset, None);
        assert_eq!(control.rtc_century, None);
        assert_eq!(control.pm1.map(|pm1| pm1.pm1a_control), Some(0x604));
    }

    #[test]
    fn fadt_shorter_than_sleep_control_has_none() {
        let mut mem = qemu_pc();
        // A 244-byte hardware-reduced FADT; a sleep control GAS sits right after it.
        let fadt = FadtBuilder::new(244)
            .revision(4)
            .flags(fadt::HW_REDUCED_ACPI)
            .x_dsdt(DSDT);
        mem.write(FADT, &fadt.bytes());
        mem.write(FADT + 244, &gas(0, 8, 0xfea0_0200));
        let control = power_control(&mem, RSDP).unwrap();
        assert_eq!(control.sleep_control, None);
        assert_eq!(control.pm1, None);
    }

    #[test]
    fn rejects_rsdp_with_bad_checksums() {
        let mut mem = qemu_pc();
        mem.write(RSDP + 9, b"QEMU  ");
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::Malformed {
                table: Table::Rsdp,
                paddr: RSDP,
                error: FormatError::BadChecksum { sum: 0xe9 },
            })
        );
        let mut mem = qemu_pc();
        mem.write(RSDP + 24, &(XSDT + 1).to_le_bytes());
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::Malformed {
                table: Table::Rsdp,
                paddr: RSDP,
                error: FormatError::BadExtendedChecksum { sum: 1 },
            })
        );
        assert_eq!(
            power_control(&mem, RSDP + 16),
            Err(AcpiError::Malformed {
                table: Table::Rsdp,
                paddr: RSDP + 16,
                error: FormatError::BadSignature,
            })
        );
    }

    #[test]
    fn rejects_fadt_with_bad_checksum_naming_table_and_address() {
        let mut mem = qemu_pc();
        mem.write(FADT + 108, &[0x33]);
        let error = power_control(&mem, RSDP).unwrap_err();
        assert_eq!(
            error,
            AcpiError::Malformed {
                table: Table::Fadt,
                paddr: FADT,
                error: FormatError::BadChecksum { sum: 1 },
            }
        );
        assert_eq!(
            error.to_string(),
            "FADT at 0x81000: bad checksum (bytes sum to 0x01, not 0)"
        );
    }

    #[test]
    fn rejects_tables_past_the_end_of_memory() {
        let mut mem = qemu_pc();
        // Length 0xf0000 is plausible, but the table would run past the 1 MiB of memory.
        mem.write(XSDT + 4, &0xf_0000u32.to_le_bytes());
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::OutsideMemory {
                table: Table::Xsdt,
                paddr: XSDT,
                len: 0xf_0000,
            })
        );
        // A DSDT whose header straddles the end.
        let mut mem = qemu_pc();
        let near_end = MEMORY_LEN as u64 - 20;
        mem.write(FADT, &pc_fadt().x_dsdt(near_end).bytes());
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::OutsideMemory {
                table: Table::Dsdt,
                paddr: near_end,
                len: 36,
            })
        );
        // An RSDP pointer at the top of the address space does not overflow.
        assert!(matches!(
            power_control(&mem, u64::MAX - 4),
            Err(AcpiError::OutsideMemory {
                table: Table::Rsdp,
                ..
            })
        ));
    }

    #[test]
    fn rejects_root_entry_outside_memory() {
        let mut mem = qemu_pc();
        mem.write(XSDT, &root(b"XSDT", 8, &[MADT, 0x1_0000_0000, FADT]));
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::OutsideMemory {
                table: Table::RootEntry(1),
                paddr: 0x1_0000_0000,
                len: 4,
            })
        );
    }

    #[test]
    fn rejects_xsdt_with_absurd_entry_count_or_length() {
        let mut mem = qemu_pc();
        let entries = std::vec![MADT; MAX_ROOT_ENTRIES + 1];
        mem.write(XSDT, &root(b"XSDT", 8, &entries));
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::TooManyEntries {
                table: Table::Xsdt,
                paddr: XSDT,
                entries: MAX_ROOT_ENTRIES + 1,
            })
        );
        mem.write(XSDT + 4, &u32::MAX.to_le_bytes());
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::Malformed {
                table: Table::Xsdt,
                paddr: XSDT,
                error: FormatError::TooLong { len: u32::MAX },
            })
        );
        mem.write(XSDT + 4, &35u32.to_le_bytes());
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::Malformed {
                table: Table::Xsdt,
                paddr: XSDT,
                error: FormatError::Truncated { need: 36, have: 35 },
            })
        );
    }

    #[test]
    fn rejects_fadt_shorter_than_acpi_1() {
        let mut mem = qemu_pc();
        mem.write(FADT, &FadtBuilder::new(100).bytes());
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::Malformed {
                table: Table::Fadt,
                paddr: FADT,
                error: FormatError::Truncated {
                    need: 116,
                    have: 100
                },
            })
        );
    }

    #[test]
    fn dsdt_without_s5_package_is_no_s5() {
        let mut mem = qemu_pc();
        mem.write(
            DSDT,
            &sdt(b"DSDT", 1, &[0x08, b'P', b'I', b'C', b'F', 0x00]),
        );
        assert_eq!(power_control(&mem, RSDP), Err(AcpiError::NoS5));
        // Method(_S5) { Return(Package(){5, 5}) } needs an interpreter.
        let method = [
            0x14, 0x0d, b'_', b'S', b'5', b'_', 0x00, 0xa4, 0x12, 0x06, 0x02, 0x0a, 0x05, 0x0a,
            0x05,
        ];
        mem.write(DSDT, &sdt(b"DSDT", 1, &method));
        assert_eq!(power_control(&mem, RSDP), Err(AcpiError::NoS5));
        assert_eq!(
            AcpiError::NoS5.to_string(),
            "no \\_S5 package in the DSDT or SSDTs (a \\_S5 method is not supported)"
        );
    }

    #[test]
    fn finds_s5_in_an_ssdt_when_the_dsdt_has_none() {
        // QEMU before 2.6 declared \_S5 in an SSDT.
        let mut mem = qemu_pc();
        mem.write(
            DSDT,
            &sdt(b"DSDT", 1, &[0x08, b'P', b'I', b'C', b'F', 0x00]),
        );
        let aml = [
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x01, 0x01, 0, 0,
        ];
        mem.write(SSDT, &sdt(b"SSDT", 1, &aml));
        let pm1 = power_control(&mem, RSDP).unwrap().pm1.unwrap();
        assert_eq!((pm1.slp_typ_a, pm1.slp_typ_b), (1, 1));
    }

    #[test]
    fn bad_s5_package_names_table_and_address() {
        let mut mem = qemu_pc();
        let dsdt = dsdt_with_s5(4, &[0x0a, 0x09, 0, 0, 0]);
        let package = dsdt.windows(5).position(|w| w == b"_S5_\x12").unwrap() + 4;
        mem.write(DSDT, &dsdt);
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::BadS5 {
                table: Table::Dsdt,
                paddr: DSDT + package as u64,
            })
        );
    }

    #[test]
    fn without_a_sleep_register_no_dsdt_is_needed() {
        let mut mem = qemu_pc();
        let fadt = FadtBuilder::new(276)
            .flags(fadt::RESET_REG_SUP)
            .reset(gas(1, 8, 0xcf9), 0x06);
        mem.write(FADT, &fadt.bytes());
        let control = power_control(&mem, RSDP).unwrap();
        assert_eq!(control.pm1, None);
        assert_eq!(control.reset, Some((io(8, 0xcf9), 0x06)));

        // With PM1 but no DSDT, \_S5 cannot be looked up.
        mem.write(FADT, &FadtBuilder::new(276).pm1a(0x604).bytes());
        assert_eq!(power_control(&mem, RSDP), Err(AcpiError::NoDsdt));
    }

    #[test]
    fn rejects_root_table_without_fadt() {
        let mut mem = qemu_pc();
        mem.write(XSDT, &root(b"XSDT", 8, &[MADT, SSDT]));
        assert_eq!(
            power_control(&mem, RSDP),
            Err(AcpiError::NoFadt {
                root: Table::Xsdt,
                paddr: XSDT,
            })
        );
    }

    #[test]
    fn pm1_value_sets_slp_typ_and_slp_en_and_keeps_preserved_bits() {
        let pm1 = Pm1Sleep {
            pm1a_control: 0x604,
            pm1b_control: Some(0x608),
            slp_typ_a: 5,
            slp_typ_b: 7,
        };
        // From 0: SLP_TYP 5 << 10 | SLP_EN.
        assert_eq!(pm1.pm1a_value(0), 0x3400);
        // SCI_EN (bit 0) and reserved bits stay; BM_RLD, GBL_RLS and an old SLP_TYP go.
        assert_eq!(pm1.pm1a_value(0xffff), 0xc3f9 | 0x3400);
        assert_eq!(pm1.pm1b_value(0x0001), 0x3c01);
        // The old blind write: 0x2000 to port 0x604 is SLP_TYP 0 with SLP_EN.
        let qemu = Pm1Sleep {
            slp_typ_a: 0,
            ..pm1
        };
        assert_eq!(qemu.pm1a_value(0), 0x2000);
    }

    #[test]
    fn sleep_control_value_is_slp_typ_in_bits_2_to_4_with_slp_en() {
        let control = |slp_typ| SleepControl {
            register: io(8, 0x600),
            slp_typ,
        };
        assert_eq!(control(0).value(), 0x20);
        assert_eq!(control(7).value(), 0x3c);
    }

    #[test]
    fn find_rsdp_scans_the_bios_area_on_16_byte_boundaries() {
        let mut mem = FakeMemory::new(0, std::vec![0; MEMORY_LEN]);
        assert_eq!(find_rsdp(&mem), None);
        // Not on a boundary, and on one but with a bad checksum: both skipped.
        mem.write(0xe_0008, &rsdp_v1(RSDT as u32));
        let mut corrupt = rsdp_v2(RSDT as u32, XSDT);
        corrupt[30] ^= 1;
        mem.write(0xe_1000, &corrupt);
        assert_eq!(find_rsdp(&mem), None);
        mem.write(RSDP, &rsdp_v2(RSDT as u32, XSDT));
        assert_eq!(find_rsdp(&mem), Some(RSDP));
        // The last slot of the area counts too.
        let mut mem = FakeMemory::new(0, std::vec![0; MEMORY_LEN]);
        mem.write(0xf_fff0, &rsdp_v1(RSDT as u32)[..16]);
        assert_eq!(find_rsdp(&mem), None, "a v1 RSDP needs 20 bytes");
    }

    #[test]
    fn find_rsdp_searches_the_ebda_first() {
        let mut mem = FakeMemory::new(0, std::vec![0; MEMORY_LEN]);
        mem.write(RSDP, &rsdp_v2(RSDT as u32, XSDT));
        // BDA 40:0E holds the EBDA segment 0x9fc0, i.e. 0x9fc00.
        mem.write(0x40e, &0x9fc0u16.to_le_bytes());
        mem.write(0x9_fd00, &rsdp_v1(RSDT as u32));
        assert_eq!(find_rsdp(&mem), Some(0x9_fd00));
        // Only the EBDA's first KiB is searched.
        mem.write(0x9_fd00, &[0; 20]);
        mem.write(0xa_0000, &rsdp_v1(RSDT as u32));
        assert_eq!(find_rsdp(&mem), Some(RSDP));
        // An implausible EBDA pointer is ignored.
        mem.write(0x40e, &0x0010u16.to_le_bytes());
        mem.write(0x100, &rsdp_v1(RSDT as u32));
        assert_eq!(find_rsdp(&mem), Some(RSDP));
    }

    #[test]
    fn find_rsdp_skips_unreadable_memory() {
        // Memory covering only part of the BIOS area, and not the BDA.
        let mut mem = FakeMemory::new(0xf_0000, std::vec![0; 0x8000]);
        mem.write(0xf_7ff0, &rsdp_v1(RSDT as u32)[..16]);
        assert_eq!(find_rsdp(&mem), None);
        mem.write(0xf_5a40, &rsdp_v1(RSDT as u32));
        assert_eq!(find_rsdp(&mem), Some(0xf_5a40));
    }
}
