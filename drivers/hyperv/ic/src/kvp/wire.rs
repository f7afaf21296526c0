//! The layout of `struct hv_kvp_msg` and its UTF-16 strings (`include/uapi/linux/hyperv.h`).
//!
//! ```text
//!  0 operation (u8)  1 pool (u8)  2 pad (u16)                              hv_kvp_hdr
//!  GET, SET:    4 hv_kvp_exchg_msg_value                                   (2576 bytes)
//!  DELETE:      4 key_size (u32)  8 key[512]                               (520 bytes)
//!  ENUMERATE:   4 index (u32)     8 hv_kvp_exchg_msg_value                 (2580 bytes)
//!
//!  hv_kvp_exchg_msg_value: 0 value_type  4 key_size  8 value_size (u32s)
//!                          12 key[512]  524 value[2048]                    (2572 bytes)
//! ```
//!
//! Keys and string values are UTF-16LE with a terminating NUL, which their sizes (in bytes)
//! include. A size must be even, fit the field, and cover the NUL; the string ends at the first
//! NUL, and must be valid UTF-16.

use alloc::string::String;

use crate::error::{Error, Field, KvpError};
use crate::wire::{Reader, clear, put};

/// `HV_KVP_EXCHANGE_MAX_KEY_SIZE`: bytes of a key field, NUL included.
pub const KEY_SIZE: usize = 512;
/// `HV_KVP_EXCHANGE_MAX_VALUE_SIZE`: bytes of a value field.
pub const VALUE_SIZE: usize = 2048;
/// `struct hv_kvp_hdr`.
const HEADER_SIZE: usize = 4;
/// `sizeof(struct hv_kvp_exchg_msg_value)`.
const EXCHANGE_SIZE: usize = 12 + KEY_SIZE + VALUE_SIZE;

/// Bytes of a GET or SET message.
pub const GET_SET_SIZE: usize = HEADER_SIZE + EXCHANGE_SIZE;
/// Bytes of a DELETE message.
pub const DELETE_SIZE: usize = HEADER_SIZE + 4 + KEY_SIZE;
/// Bytes of an ENUMERATE message.
pub const ENUMERATE_SIZE: usize = HEADER_SIZE + 4 + EXCHANGE_SIZE;
/// Where DELETE's key size and key are.
pub(crate) const DELETE_KEY: (usize, usize) = (HEADER_SIZE, HEADER_SIZE + 4);
/// Where ENUMERATE's index is.
pub(crate) const ENUMERATE_INDEX: usize = HEADER_SIZE;

/// `enum hv_kvp_exchg_op`.
pub mod op {
    pub const GET: u8 = 0;
    pub const SET: u8 = 1;
    pub const DELETE: u8 = 2;
    pub const ENUMERATE: u8 = 3;
    pub const GET_IP_INFO: u8 = 4;
    pub const SET_IP_INFO: u8 = 5;
}

/// Value types (Windows registry types).
pub mod value_type {
    pub const REG_SZ: u32 = 1;
    pub const REG_EXPAND_SZ: u32 = 2;
    pub const REG_U32: u32 = 4;
    pub const REG_U64: u32 = 11;
}

/// A KVP value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `REG_SZ` (or `REG_EXPAND_SZ` from the host): at most 1023 UTF-16 units, no NUL.
    String(String),
    /// `REG_DWORD`.
    U32(u32),
    /// `REG_QWORD`.
    U64(u64),
}

impl Value {
    /// Checks that the value fits the wire's value field.
    pub(crate) fn check(&self) -> Result<(), KvpError> {
        match self {
            Value::String(s) => check(s, VALUE_SIZE, Field::Value).map(|_| ()),
            Value::U32(_) | Value::U64(_) => Ok(()),
        }
    }
}

/// Where a `hv_kvp_exchg_msg_value` sits in a message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exchange(usize);

impl Exchange {
    /// In GET and SET messages.
    pub(crate) const GET_SET: Exchange = Exchange(HEADER_SIZE);
    /// In ENUMERATE messages, after the index.
    pub(crate) const ENUMERATE: Exchange = Exchange(HEADER_SIZE + 4);

    fn value_type(self) -> usize {
        self.0
    }
    fn key_size(self) -> usize {
        self.0 + 4
    }
    fn value_size(self) -> usize {
        self.0 + 8
    }
    fn key(self) -> usize {
        self.0 + 12
    }
    fn value(self) -> usize {
        self.0 + 12 + KEY_SIZE
    }

    pub(crate) fn read_key(self, payload: &[u8]) -> Result<String, Error> {
        read_string(payload, self.key_size(), self.key(), KEY_SIZE, Field::Key)
    }

    pub(crate) fn read_value(self, payload: &[u8]) -> Result<Value, Error> {
        let r = Reader::new(payload);
        let (kind, size) = (r.u32(self.value_type())?, r.u32(self.value_size())?);
        let fixed = |width: u32| {
            if size == width {
                Ok(())
            } else {
                Err(KvpError::BadValueSize {
                    value_type: kind,
                    size,
                })
            }
        };
        Ok(match kind {
            value_type::REG_SZ | value_type::REG_EXPAND_SZ => Value::String(read_string(
                payload,
                self.value_size(),
                self.value(),
                VALUE_SIZE,
                Field::Value,
            )?),
            value_type::REG_U32 => {
                fixed(4)?;
                Value::U32(r.u32(self.value())?)
            }
            value_type::REG_U64 => {
                fixed(8)?;
                Value::U64(r.u64(self.value())?)
            }
            other => return Err(KvpError::UnknownValueType(other).into()),
        })
    }

    /// Writes `key` and its size. `payload` holds the whole structure (checked by the caller).
    pub(crate) fn write_key(self, payload: &mut [u8], key: &str) -> Result<(), Error> {
        let size = encode(key, field_mut(payload, self.key(), KEY_SIZE)?, Field::Key)?;
        put(payload, self.key_size(), &size.to_le_bytes());
        Ok(())
    }

    /// Writes `value` with its type and size, clearing the rest of the value field.
    pub(crate) fn write_value(self, payload: &mut [u8], value: &Value) -> Result<(), Error> {
        let field = field_mut(payload, self.value(), VALUE_SIZE)?;
        let (kind, size) = match value {
            Value::String(s) => (value_type::REG_SZ, encode(s, field, Field::Value)?),
            Value::U32(v) => {
                field.fill(0);
                put(field, 0, &v.to_le_bytes());
                (value_type::REG_U32, 4)
            }
            Value::U64(v) => {
                field.fill(0);
                put(field, 0, &v.to_le_bytes());
                (value_type::REG_U64, 8)
            }
        };
        put(payload, self.value_type(), &kind.to_le_bytes());
        put(payload, self.value_size(), &size.to_le_bytes());
        Ok(())
    }

    /// Zeroes the whole structure, before an entry is written into an echoed request.
    pub(crate) fn clear(self, payload: &mut [u8]) {
        clear(payload, self.0, EXCHANGE_SIZE);
    }
}

/// Reads the string in the `capacity`-byte field at `at` whose size (u32) is at `size_at`.
pub(crate) fn read_string(
    payload: &[u8],
    size_at: usize,
    at: usize,
    capacity: usize,
    field: Field,
) -> Result<String, Error> {
    let r = Reader::new(payload);
    let size = r.u32(size_at)?;
    Ok(decode(r.slice(at, capacity)?, size, field)?)
}

/// The `capacity`-byte field at `at`.
pub(crate) fn field_mut(
    payload: &mut [u8],
    at: usize,
    capacity: usize,
) -> Result<&mut [u8], Error> {
    let len = payload.len();
    payload
        .get_mut(at..at + capacity)
        .ok_or(Error::ShortPayload {
            needed: at + capacity,
            len,
        })
}

/// Decodes the NUL-terminated UTF-16LE string in the first `size` bytes of `bytes` (a field).
pub(crate) fn decode(bytes: &[u8], size: u32, field: Field) -> Result<String, KvpError> {
    if !size.is_multiple_of(2) {
        return Err(KvpError::OddSize { field, size });
    }
    let sized = usize::try_from(size)
        .ok()
        .and_then(|n| bytes.get(..n))
        .ok_or(KvpError::SizeTooLarge {
            field,
            size,
            max: bytes.len(),
        })?;
    let units = sized
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    let len = units
        .clone()
        .position(|u| u == 0)
        .ok_or(KvpError::Unterminated(field))?;
    char::decode_utf16(units.take(len))
        .collect::<Result<String, _>>()
        .map_err(|_| KvpError::InvalidUtf16(field))
}

/// Encodes `s` NUL-terminated into `bytes` (a field), zeroing the rest of the field; returns
/// the bytes used, NUL included.
pub(crate) fn encode(s: &str, bytes: &mut [u8], field: Field) -> Result<u32, KvpError> {
    let units = check(s, bytes.len(), field)?;
    bytes.fill(0);
    for (dst, unit) in bytes.chunks_exact_mut(2).zip(s.encode_utf16()) {
        dst.copy_from_slice(&unit.to_le_bytes());
    }
    // A field is at most a few KiB.
    Ok(((units + 1) * 2) as u32)
}

/// The UTF-16 units of `s` if it fits a field of `capacity` bytes with its NUL and holds no
/// NUL itself.
pub(crate) fn check(s: &str, capacity: usize, field: Field) -> Result<usize, KvpError> {
    let units = s.encode_utf16().count();
    if s.contains('\0') || (units + 1) * 2 > capacity {
        return Err(KvpError::BadString(field));
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16z(s: &str, len: usize) -> alloc::vec::Vec<u8> {
        let mut field = alloc::vec![0xaa; len];
        encode(s, &mut field, Field::Key).unwrap();
        field
    }

    #[test]
    fn strings_round_trip_through_their_fields() {
        let field = utf16z("Grüße, 世界 🦀", 64);
        // 12 BMP characters, a surrogate pair and the NUL.
        assert_eq!(decode(&field, 30, Field::Key).unwrap(), "Grüße, 世界 🦀");
        // Trailing zeros within the size are allowed: the string ends at the first NUL.
        assert_eq!(decode(&field, 64, Field::Key).unwrap(), "Grüße, 世界 🦀");
        assert!(field[30..].iter().all(|&b| b == 0));
    }

    #[test]
    fn rejects_bad_sizes_missing_terminators_and_lone_surrogates() {
        let field = utf16z("abc", 16);
        assert_eq!(
            decode(&field, 7, Field::Value),
            Err(KvpError::OddSize {
                field: Field::Value,
                size: 7
            })
        );
        assert_eq!(
            decode(&field, 18, Field::Value),
            Err(KvpError::SizeTooLarge {
                field: Field::Value,
                size: 18,
                max: 16
            })
        );
        assert_eq!(
            decode(&field, 6, Field::Value),
            Err(KvpError::Unterminated(Field::Value))
        );
        assert_eq!(
            decode(&field, 0, Field::Value),
            Err(KvpError::Unterminated(Field::Value))
        );
        let lone = [0x00, 0xd8, 0x41, 0x00, 0, 0];
        assert_eq!(
            decode(&lone, 6, Field::Key),
            Err(KvpError::InvalidUtf16(Field::Key))
        );
    }

    #[test]
    fn refuses_strings_that_do_not_fit_or_hold_a_nul() {
        let mut field = [0u8; 8];
        assert_eq!(encode("abc", &mut field, Field::Key), Ok(8));
        assert_eq!(
            encode("abcd", &mut field, Field::Key),
            Err(KvpError::BadString(Field::Key))
        );
        assert_eq!(
            encode("a\0b", &mut field, Field::Key),
            Err(KvpError::BadString(Field::Key))
        );
        assert_eq!(check("", 2, Field::Key), Ok(0));
    }
}
