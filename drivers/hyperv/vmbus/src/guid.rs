//! GUIDs as VMBus carries them, and the device classes Hyper-V offers.
//!
//! An offer names its device class and instance by GUID. On the wire a GUID is Windows' `GUID`
//! struct: `Data1` (u32), `Data2` and `Data3` (u16) little-endian, then eight bytes in order. The
//! usual text form prints the three fields as numbers, so the first eight bytes appear reversed
//! group by group ("mixed-endian"):
//!
//! ```text
//!  wire:  dc 74 50 52 | 85 89 | e2 46 | 80 57 | a3 07 dc 18 a5 02
//!  text:  525074dc    - 8985  - 46e2  - 8057  - a307dc18a502
//! ```

use core::fmt;

/// A GUID in VMBus wire order; [`fmt::Display`] gives the usual text form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid([u8; 16]);

impl Guid {
    /// The GUID whose text form is `d1-d2-d3-d4[0..2]-d4[2..8]`, as `GUID_INIT` builds it.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// The GUID stored as `bytes` in a message.
    pub const fn from_bytes(bytes: [u8; 16]) -> Guid {
        Guid(bytes)
    }

    /// The bytes as a message stores them.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        let d1 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let d2 = u16::from_le_bytes([b[4], b[5]]);
        let d3 = u16::from_le_bytes([b[6], b[7]]);
        write!(f, "{d1:08x}-{d2:04x}-{d3:04x}-{:02x}{:02x}-", b[8], b[9])?;
        b[10..].iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Device classes (an offer's `if_type`), as Linux's `include/linux/hyperv.h` lists them.
pub mod class {
    use super::Guid;

    /// Dynamic Memory (the balloon): `HV_DM_GUID`. The one device the project's Hyper-V harness
    /// (QEMU's `hv-balloon`) offers.
    pub const BALLOON: Guid = Guid::from_fields(
        0x525074dc,
        0x8985,
        0x46e2,
        [0x80, 0x57, 0xa3, 0x07, 0xdc, 0x18, 0xa5, 0x02],
    );
    /// Synthetic network adapter (netvsc): `HV_NIC_GUID`.
    pub const NETWORK: Guid = Guid::from_fields(
        0xf8615163,
        0xdf3e,
        0x46c5,
        [0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e],
    );
    /// Synthetic SCSI controller (storvsc): `HV_SCSI_GUID`.
    pub const SCSI: Guid = Guid::from_fields(
        0xba6163d9,
        0x04a1,
        0x4d29,
        [0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f],
    );
    /// Guest shutdown service: `HV_SHUTDOWN_GUID`.
    pub const SHUTDOWN: Guid = Guid::from_fields(
        0x0e0b6031,
        0x5213,
        0x4934,
        [0x81, 0x8b, 0x38, 0xd9, 0x0c, 0xed, 0x39, 0xdb],
    );
    /// Time synchronisation service: `HV_TS_GUID`.
    pub const TIMESYNC: Guid = Guid::from_fields(
        0x9527e630,
        0xd0ae,
        0x497b,
        [0xad, 0xce, 0xe8, 0x0a, 0xb0, 0x17, 0x5c, 0xaf],
    );
    /// Heartbeat service: `HV_HEART_BEAT_GUID`.
    pub const HEARTBEAT: Guid = Guid::from_fields(
        0x57164f39,
        0x9115,
        0x4e78,
        [0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d],
    );
    /// Key-value pair exchange: `HV_KVP_GUID`.
    pub const KVP: Guid = Guid::from_fields(
        0xa9a0f4e7,
        0x5a45,
        0x4d96,
        [0xb8, 0x27, 0x8a, 0x84, 0x1e, 0x8c, 0x03, 0xe6],
    );
    /// Synthetic keyboard: `HV_KBD_GUID`.
    pub const KEYBOARD: Guid = Guid::from_fields(
        0xf912ad6d,
        0x2b17,
        0x48ea,
        [0xbd, 0x65, 0xf9, 0x27, 0xa6, 0x1c, 0x76, 0x84],
    );

    /// A short name for a known class, for log lines about offers.
    pub fn name(class: Guid) -> Option<&'static str> {
        [
            (BALLOON, "balloon"),
            (NETWORK, "network"),
            (SCSI, "scsi"),
            (SHUTDOWN, "shutdown"),
            (TIMESYNC, "timesync"),
            (HEARTBEAT, "heartbeat"),
            (KVP, "kvp"),
            (KEYBOARD, "keyboard"),
        ]
        .into_iter()
        .find_map(|(guid, name)| (guid == class).then_some(name))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::format;
    use std::string::ToString;

    #[test]
    fn displays_the_mixed_endian_text_form() {
        assert_eq!(
            class::BALLOON.to_string(),
            "525074dc-8985-46e2-8057-a307dc18a502"
        );
        assert_eq!(
            format!("{:?}", class::NETWORK),
            "f8615163-df3e-46c5-913f-f2d2f965ed0e"
        );
    }

    #[test]
    fn stores_the_first_three_fields_little_endian() {
        assert_eq!(
            class::BALLOON.to_bytes(),
            [
                0xdc, 0x74, 0x50, 0x52, 0x85, 0x89, 0xe2, 0x46, 0x80, 0x57, 0xa3, 0x07, 0xdc, 0x18,
                0xa5, 0x02
            ]
        );
        let guid = Guid::from_bytes(class::SCSI.to_bytes());
        assert_eq!(guid, class::SCSI);
        assert_eq!(guid.to_string(), "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f");
    }

    #[test]
    fn names_known_classes_only() {
        assert_eq!(class::name(class::BALLOON), Some("balloon"));
        assert_eq!(class::name(class::KEYBOARD), Some("keyboard"));
        assert_eq!(class::name(Guid::from_bytes([0; 16])), None);
    }
}
