//! The Fixed ACPI Description Table, as a checked view: the fields that say how to sleep and
//! reset.
//!
//! Spec: ACPI 6.0 §5.2.9 (FADT Format), checked against ACPICA's `struct acpi_table_fadt`
//! (`include/acpi/actbl.h`). Byte offsets of the fields read here:
//!
//! ```text
//!   0 header              ("FACP")
//!  40 DSDT                32-bit DSDT address
//!  64 PM1a_CNT_BLK        32-bit I/O port of the PM1a control block
//!  68 PM1b_CNT_BLK        same for PM1b; 0 = none
//! 108 CENTURY             CMOS RTC index of the century; 0 = none
//! 112 Flags               bit 10 RESET_REG_SUP, bit 20 HW_REDUCED_ACPI
//! 116                     end of an ACPI 1.0 FADT (ACPICA "V1 size 0x074")
//! 116 RESET_REG           Generic Address Structure
//! 128 RESET_VALUE
//! 140 X_DSDT              64-bit DSDT address, preferred when non-zero
//! 172 X_PM1a_CNT_BLK      GAS, supersedes PM1a_CNT_BLK when non-zero
//! 184 X_PM1b_CNT_BLK      GAS, supersedes PM1b_CNT_BLK when non-zero
//! 244 SLEEP_CONTROL_REG   GAS (ACPI 5.0+)
//! 256
//! ```
//!
//! Which fields exist is decided by the table's length, never its revision: ACPICA's comment on
//! the FADT sizes notes that "the FADT revision value is unreliable. Only the length can be
//! trusted." A field that ends past `Length` reads as absent, so an ACPI 1.0 FADT's trailing
//! bytes (another table, or garbage) are never taken for a reset register.

use core::fmt;
use core::ops::Range;

use crate::error::{AcpiError, FormatError};
use crate::{read_u32, read_u64};

/// The FADT's signature.
pub const SIGNATURE: &[u8; 4] = b"FACP";
/// The shortest FADT accepted: ACPI 1.0's, which ends after `Flags`.
pub const MIN_LEN: usize = field::FLAGS.end;
/// Fixed Feature Flag: `RESET_REG` is supported (ACPI 6.0 §5.2.9, Fixed Feature Flags).
pub const RESET_REG_SUP: u32 = 1 << 10;
/// Fixed Feature Flag: the platform has no ACPI fixed hardware (ACPI 6.0 §5.2.9, §4.1).
pub const HW_REDUCED_ACPI: u32 = 1 << 20;

mod field {
    use core::ops::Range;

    pub const DSDT: Range<usize> = 40..44;
    pub const PM1A_CNT_BLK: Range<usize> = 64..68;
    pub const PM1B_CNT_BLK: Range<usize> = 68..72;
    pub const CENTURY: usize = 108;
    pub const FLAGS: Range<usize> = 112..116;
    pub const RESET_REG: Range<usize> = 116..128;
    pub const RESET_VALUE: usize = 128;
    pub const X_DSDT: Range<usize> = 140..148;
    pub const X_PM1A_CNT_BLK: Range<usize> = 172..184;
    pub const X_PM1B_CNT_BLK: Range<usize> = 184..196;
    pub const SLEEP_CONTROL_REG: Range<usize> = 244..256;
}

/// Size of a Generic Address Structure.
pub const GAS_LEN: usize = 12;

/// A Generic Address Structure's address space (ACPI 6.0 §5.2.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSpace {
    /// 1: an x86 I/O port.
    SystemIo,
    /// 0: a physical memory address (MMIO).
    SystemMemory,
    /// Anything else (PCI configuration space, embedded controller, ...), by its ID.
    Other(u8),
}

impl AddressSpace {
    pub fn from_id(id: u8) -> Self {
        match id {
            0 => AddressSpace::SystemMemory,
            1 => AddressSpace::SystemIo,
            other => AddressSpace::Other(other),
        }
    }
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressSpace::SystemIo => f.write_str("system I/O"),
            AddressSpace::SystemMemory => f.write_str("system memory"),
            AddressSpace::Other(id) => write!(f, "address space {id}"),
        }
    }
}

/// A register, as a Generic Address Structure names it (ACPI 6.0 §5.2.3.2):
///
/// ```text
/// 0 Address Space ID   1 Register Bit Width   2 Register Bit Offset   3 Access Size
/// 4 Address (64-bit)
/// ```
///
/// Bit offset and access size are not kept: the registers this crate reports (sleep control,
/// reset) must have offset 0 and are written whole, `bit_width` bits at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenericAddress {
    pub space: AddressSpace,
    pub bit_width: u8,
    pub address: u64,
}

impl GenericAddress {
    /// Decodes the 12 bytes of a GAS; `bytes` must hold exactly [`GAS_LEN`].
    fn parse(bytes: &[u8]) -> Self {
        GenericAddress {
            space: AddressSpace::from_id(bytes[0]),
            bit_width: bytes[1],
            address: read_u64(bytes, 4..12),
        }
    }
}

/// A view of a FADT: exactly its `Length` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fadt<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Fadt<T> {
    /// Wraps `buffer` without checks; accessors of ACPI 1.0 fields panic if it is shorter than
    /// [`MIN_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Fadt { buffer }
    }

    /// Wraps `buffer` (the table's `Length` bytes) if it holds an ACPI 1.0 FADT at least.
    pub fn new_checked(buffer: T) -> Result<Self, FormatError> {
        let have = buffer.as_ref().len();
        if have < MIN_LEN {
            return Err(FormatError::Truncated {
                need: MIN_LEN,
                have,
            });
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// The bytes of `field`, or `None` if the table ends before it.
    fn field(&self, field: Range<usize>) -> Option<&[u8]> {
        self.buffer.as_ref().get(field)
    }

    /// A GAS field, or `None` if the table ends before it or its address is 0 (absent).
    fn gas(&self, field: Range<usize>) -> Option<GenericAddress> {
        self.field(field)
            .map(GenericAddress::parse)
            .filter(|gas| gas.address != 0)
    }

    pub fn dsdt(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::DSDT)
    }

    pub fn pm1a_cnt_blk(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::PM1A_CNT_BLK)
    }

    pub fn pm1b_cnt_blk(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::PM1B_CNT_BLK)
    }

    pub fn century(&self) -> u8 {
        self.buffer.as_ref()[field::CENTURY]
    }

    pub fn flags(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::FLAGS)
    }

    /// `None` if the table ends before it or it is zero.
    pub fn reset_reg(&self) -> Option<GenericAddress> {
        self.gas(field::RESET_REG)
    }

    /// `None` if the table ends before it.
    pub fn reset_value(&self) -> Option<u8> {
        self.buffer.as_ref().get(field::RESET_VALUE).copied()
    }

    /// `None` if the table ends before it or it is zero.
    pub fn x_dsdt(&self) -> Option<u64> {
        self.field(field::X_DSDT)
            .map(|bytes| read_u64(bytes, 0..8))
            .filter(|&paddr| paddr != 0)
    }

    /// `None` if the table ends before it or its address is zero.
    pub fn x_pm1a_cnt_blk(&self) -> Option<GenericAddress> {
        self.gas(field::X_PM1A_CNT_BLK)
    }

    /// `None` if the table ends before it or its address is zero.
    pub fn x_pm1b_cnt_blk(&self) -> Option<GenericAddress> {
        self.gas(field::X_PM1B_CNT_BLK)
    }

    /// `None` if the table ends before it (FADTs older than ACPI 5.0) or its address is zero.
    pub fn sleep_control_reg(&self) -> Option<GenericAddress> {
        self.gas(field::SLEEP_CONTROL_REG)
    }
}

/// What a FADT says about sleeping, resetting and the RTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub flags: u32,
    /// `X_DSDT` when non-zero, else `DSDT`; `None` when both are 0.
    pub dsdt_paddr: Option<u64>,
    /// The PM1a control block's I/O port; `None` on hardware-reduced platforms (which have no
    /// PM1 block) and when the FADT gives none.
    pub pm1a_control: Option<u16>,
    /// The PM1b control block's I/O port; `None` when `pm1a_control` is.
    pub pm1b_control: Option<u16>,
    /// `SLEEP_CONTROL_REG`, on hardware-reduced platforms only.
    pub sleep_control: Option<GenericAddress>,
    /// `RESET_REG` and `RESET_VALUE`, when `RESET_REG_SUP` is set and the table holds them.
    pub reset: Option<(GenericAddress, u8)>,
    /// `CENTURY`; `None` when 0.
    pub century: Option<u8>,
}

impl Repr {
    /// Copies the fields out of `fadt`, choosing between the 32- and 64-bit forms.
    ///
    /// Fails only on a PM1 control block that is not an I/O port below 0x10000: ACPI allows a
    /// memory-mapped one in `X_PM1a_CNT_BLK`, which no PC-compatible VMM uses and
    /// [`Pm1Sleep`](crate::Pm1Sleep) cannot express.
    pub fn parse<T: AsRef<[u8]>>(fadt: &Fadt<T>) -> Result<Repr, AcpiError> {
        let flags = fadt.flags();
        let hw_reduced = flags & HW_REDUCED_ACPI != 0;
        // ACPI 6.0 §5.2.9: "If the X_DSDT field contains a non-zero value then the DSDT field
        // must be zero"; ACPICA, too, takes the 64-bit address when it is set.
        let dsdt_paddr = fadt
            .x_dsdt()
            .or(Some(u64::from(fadt.dsdt())).filter(|&paddr| paddr != 0));
        // ACPI 6.0 §4.1: on hardware-reduced platforms the fixed-hardware fields, PM1 blocks
        // included, are ignored; sleep goes through SLEEP_CONTROL_REG instead.
        let (pm1a_control, pm1b_control, sleep_control) = if hw_reduced {
            (None, None, fadt.sleep_control_reg())
        } else {
            let pm1a = pm1_port(
                fadt.x_pm1a_cnt_blk(),
                fadt.pm1a_cnt_blk(),
                "X_PM1a_CNT_BLK",
                "PM1a_CNT_BLK",
            )?;
            let pm1b = match pm1a {
                Some(_) => pm1_port(
                    fadt.x_pm1b_cnt_blk(),
                    fadt.pm1b_cnt_blk(),
                    "X_PM1b_CNT_BLK",
                    "PM1b_CNT_BLK",
                )?,
                None => None,
            };
            (pm1a, pm1b, None)
        };
        let reset = if flags & RESET_REG_SUP != 0 {
            fadt.reset_reg().zip(fadt.reset_value())
        } else {
            None
        };
        Ok(Repr {
            flags,
            dsdt_paddr,
            pm1a_control,
            pm1b_control,
            sleep_control,
            reset,
            century: Some(fadt.century()).filter(|&index| index != 0),
        })
    }
}

/// The I/O port of a PM1 control block: the extended GAS form when present (ACPI 6.0 §5.2.9:
/// "This field is superseded by the X_PM1a_CNT_BLK field"), else the 32-bit port; 0 = none.
fn pm1_port(
    extended: Option<GenericAddress>,
    legacy: u32,
    extended_name: &'static str,
    legacy_name: &'static str,
) -> Result<Option<u16>, AcpiError> {
    let (field, space, address) = match extended {
        Some(gas) => (extended_name, gas.space, gas.address),
        None if legacy == 0 => return Ok(None),
        None => (legacy_name, AddressSpace::SystemIo, u64::from(legacy)),
    };
    match u16::try_from(address) {
        Ok(port) if space == AddressSpace::SystemIo => Ok(Some(port)),
        _ => Err(AcpiError::BadRegister {
            field,
            space,
            address,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{FadtBuilder, gas};

    #[test]
    fn layout_matches_acpica_fadt_sizes() {
        // actbl.h: "FADT V1 size: 0x074", V2 0x084, V3/V4 0x0F4, V5 0x10C.
        assert_eq!(MIN_LEN, 0x74);
        // V2 ends after RESET_VALUE, ARM_BOOT_ARCH (2 bytes) and the minor version.
        assert_eq!(field::RESET_VALUE + 4, 0x84);
        assert_eq!(field::X_PM1B_CNT_BLK.end, 196);
        assert_eq!(field::SLEEP_CONTROL_REG.start, 0xf4);
        assert_eq!(field::SLEEP_CONTROL_REG.end + GAS_LEN, 0x10c);
    }

    #[test]
    fn reads_fields_at_spec_offsets() {
        let mut bytes = [0u8; 276];
        bytes[40..44].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        bytes[64..68].copy_from_slice(&0x604u32.to_le_bytes());
        bytes[108] = 0x32;
        bytes[112..116].copy_from_slice(&(RESET_REG_SUP | HW_REDUCED_ACPI).to_le_bytes());
        bytes[116..128].copy_from_slice(&gas(1, 8, 0xcf9));
        bytes[128] = 0x0f;
        bytes[140..148].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        bytes[172..184].copy_from_slice(&gas(1, 16, 0x604));
        bytes[244..256].copy_from_slice(&gas(0, 8, 0xfea0_0200));
        let fadt = Fadt::new_checked(&bytes[..]).unwrap();
        assert_eq!(fadt.dsdt(), 0x1234_5678);
        assert_eq!(fadt.pm1a_cnt_blk(), 0x604);
        assert_eq!(fadt.pm1b_cnt_blk(), 0);
        assert_eq!(fadt.century(), 0x32);
        assert_eq!(fadt.flags(), RESET_REG_SUP | HW_REDUCED_ACPI);
        let io = |bit_width, address| GenericAddress {
            space: AddressSpace::SystemIo,
            bit_width,
            address,
        };
        assert_eq!(fadt.reset_reg(), Some(io(8, 0xcf9)));
        assert_eq!(fadt.reset_value(), Some(0x0f));
        assert_eq!(fadt.x_dsdt(), Some(0x1_0000_0000));
        assert_eq!(fadt.x_pm1a_cnt_blk(), Some(io(16, 0x604)));
        assert_eq!(fadt.x_pm1b_cnt_blk(), None);
        assert_eq!(
            fadt.sleep_control_reg(),
            Some(GenericAddress {
                space: AddressSpace::SystemMemory,
                bit_width: 8,
                address: 0xfea0_0200,
            })
        );
    }

    #[test]
    fn fields_past_the_length_are_absent() {
        let mut bytes = [0xffu8; 276];
        bytes[244..256].copy_from_slice(&gas(0, 8, 0xfea0_0200));
        // A 244-byte (ACPI 3.0/4.0) FADT ends right before SLEEP_CONTROL_REG.
        let fadt = Fadt::new_checked(&bytes[..244]).unwrap();
        assert_eq!(fadt.sleep_control_reg(), None);
        assert!(fadt.x_pm1b_cnt_blk().is_some());
        // An ACPI 1.0 FADT has nothing after Flags.
        let fadt = Fadt::new_checked(&bytes[..116]).unwrap();
        assert_eq!(fadt.reset_reg(), None);
        assert_eq!(fadt.reset_value(), None);
        assert_eq!(fadt.x_dsdt(), None);
        assert_eq!(fadt.x_pm1a_cnt_blk(), None);
        assert_eq!(
            Fadt::new_checked(&bytes[..115]),
            Err(FormatError::Truncated {
                need: 116,
                have: 115
            })
        );
    }

    #[test]
    fn address_space_ids_follow_the_gas_table() {
        assert_eq!(AddressSpace::from_id(0), AddressSpace::SystemMemory);
        assert_eq!(AddressSpace::from_id(1), AddressSpace::SystemIo);
        assert_eq!(AddressSpace::from_id(2), AddressSpace::Other(2));
    }

    #[test]
    fn prefers_x_dsdt_and_x_pm1_blocks() {
        let bytes = FadtBuilder::new(276)
            .dsdt(0x1000)
            .x_dsdt(0x2000)
            .pm1a(0x604)
            .x_pm1a(gas(1, 16, 0xb004))
            .pm1b(0x608)
            .x_pm1b(gas(1, 16, 0xb008))
            .bytes();
        let repr = Repr::parse(&Fadt::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.dsdt_paddr, Some(0x2000));
        assert_eq!(repr.pm1a_control, Some(0xb004));
        assert_eq!(repr.pm1b_control, Some(0xb008));

        // Zero extended fields fall back to the 32-bit ones.
        let bytes = FadtBuilder::new(276).dsdt(0x1000).pm1a(0x604).bytes();
        let repr = Repr::parse(&Fadt::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.dsdt_paddr, Some(0x1000));
        assert_eq!(repr.pm1a_control, Some(0x604));
        assert_eq!(repr.pm1b_control, None);
    }

    #[test]
    fn rejects_pm1_blocks_that_are_not_io_ports() {
        let bytes = FadtBuilder::new(276)
            .x_pm1a(gas(0, 16, 0xfed0_0004))
            .bytes();
        assert_eq!(
            Repr::parse(&Fadt::new_checked(&bytes[..]).unwrap()),
            Err(AcpiError::BadRegister {
                field: "X_PM1a_CNT_BLK",
                space: AddressSpace::SystemMemory,
                address: 0xfed0_0004,
            })
        );
        let bytes = FadtBuilder::new(116).pm1a(0x1_0000).bytes();
        assert_eq!(
            Repr::parse(&Fadt::new_checked(&bytes[..]).unwrap()),
            Err(AcpiError::BadRegister {
                field: "PM1a_CNT_BLK",
                space: AddressSpace::SystemIo,
                address: 0x1_0000,
            })
        );
    }

    #[test]
    fn hardware_reduced_ignores_pm1_and_reads_sleep_control() {
        let bytes = FadtBuilder::new(268)
            .flags(HW_REDUCED_ACPI)
            .pm1a(0x604)
            .sleep_control(gas(0, 8, 0xfea0_0200))
            .bytes();
        let repr = Repr::parse(&Fadt::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.pm1a_control, None);
        assert_eq!(repr.sleep_control.map(|gas| gas.address), Some(0xfea0_0200));
        // Not hardware-reduced: SLEEP_CONTROL_REG is not the way to sleep.
        let bytes = FadtBuilder::new(268)
            .pm1a(0x604)
            .sleep_control(gas(0, 8, 0xfea0_0200))
            .bytes();
        let repr = Repr::parse(&Fadt::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.sleep_control, None);
    }

    #[test]
    fn reset_needs_the_flag_and_the_field() {
        let with = FadtBuilder::new(132)
            .flags(RESET_REG_SUP)
            .reset(gas(1, 8, 0xcf9), 0x06)
            .bytes();
        let repr = Repr::parse(&Fadt::new_checked(&with[..]).unwrap()).unwrap();
        let (register, value) = repr.reset.unwrap();
        assert_eq!((register.address, value), (0xcf9, 0x06));

        let without_flag = FadtBuilder::new(132).reset(gas(1, 8, 0xcf9), 0x06).bytes();
        let repr = Repr::parse(&Fadt::new_checked(&without_flag[..]).unwrap()).unwrap();
        assert_eq!(repr.reset, None);
    }
}
