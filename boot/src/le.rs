//! Little-endian fields of a byte buffer, named by their byte range. The structure views
//! ([`hvm_start_info`](crate::hvm_start_info), [`xen_start_info`](crate::xen_start_info)) check
//! the buffer's length once, so the ranges are always in bounds when these run.

use core::ops::Range;

/// A field: its byte range in the structure.
pub(crate) type Field = Range<usize>;

pub(crate) fn read_u32(data: &[u8], field: Field) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&data[field]);
    u32::from_le_bytes(bytes)
}

pub(crate) fn read_u64(data: &[u8], field: Field) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&data[field]);
    u64::from_le_bytes(bytes)
}

pub(crate) fn write_u32(data: &mut [u8], field: Field, value: u32) {
    data[field].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn write_u64(data: &mut [u8], field: Field, value: u64) {
    data[field].copy_from_slice(&value.to_le_bytes());
}
