//! Little-endian fields in byte buffers, read and written without panicking: shared by the
//! VMBus device protocols (integration services, ...) built on this crate.
//!
//! Channel messages and packet headers are parsed from copies of untrusted bytes. [`Fields`] reads
//! a field at a fixed offset or reports how many bytes it would have needed; writers go through
//! [`put`], which refuses (and debug-asserts) rather than panics past the end of the buffer.

/// A read past the end of a byte slice: `needed` bytes were required, `len` were there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Short {
    pub needed: usize,
    pub len: usize,
}

/// Checked little-endian reads from `bytes` at byte offsets.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// `bytes.len() >= needed`, as one up-front check before a struct's fields are read.
    pub fn require(&self, needed: usize) -> Result<(), Short> {
        if self.bytes.len() < needed {
            return Err(Short {
                needed,
                len: self.bytes.len(),
            });
        }
        Ok(())
    }

    pub fn slice(&self, offset: usize, len: usize) -> Result<&'a [u8], Short> {
        let end = offset.saturating_add(len);
        self.bytes.get(offset..end).ok_or(Short {
            needed: end,
            len: self.bytes.len(),
        })
    }

    pub fn array<const N: usize>(&self, offset: usize) -> Result<[u8; N], Short> {
        let mut out = [0; N];
        out.copy_from_slice(self.slice(offset, N)?);
        Ok(out)
    }

    pub fn u8(&self, offset: usize) -> Result<u8, Short> {
        self.array::<1>(offset).map(|[b]| b)
    }

    pub fn u16(&self, offset: usize) -> Result<u16, Short> {
        self.array(offset).map(u16::from_le_bytes)
    }

    pub fn u32(&self, offset: usize) -> Result<u32, Short> {
        self.array(offset).map(u32::from_le_bytes)
    }

    pub fn u64(&self, offset: usize) -> Result<u64, Short> {
        self.array(offset).map(u64::from_le_bytes)
    }
}

/// Copies `src` into `bytes` at `offset`. Every caller writes a fixed layout into a buffer sized
/// for it, so a miss is a bug in this crate: debug builds assert, release builds write nothing.
pub fn put(bytes: &mut [u8], offset: usize, src: &[u8]) {
    let dst = offset
        .checked_add(src.len())
        .and_then(|end| bytes.get_mut(offset..end));
    debug_assert!(
        dst.is_some(),
        "field at {offset:#x} past a {}-byte buffer",
        bytes.len()
    );
    if let Some(dst) = dst {
        dst.copy_from_slice(src);
    }
}

/// Zeroes `len` bytes at `offset` (same contract as [`put`]).
pub fn clear(bytes: &mut [u8], offset: usize, len: usize) {
    let dst = offset
        .checked_add(len)
        .and_then(|end| bytes.get_mut(offset..end));
    debug_assert!(
        dst.is_some(),
        "{len} bytes at {offset:#x} past a {}-byte buffer",
        bytes.len()
    );
    if let Some(dst) = dst {
        dst.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_fields() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let f = Fields::new(&bytes);
        assert_eq!(f.u8(8), Ok(9));
        assert_eq!(f.u16(1), Ok(0x0302));
        assert_eq!(f.u32(0), Ok(0x0403_0201));
        assert_eq!(f.u64(1), Ok(0x0908_0706_0504_0302));
    }

    #[test]
    fn reports_how_much_a_short_read_needed() {
        let bytes = [0; 6];
        let f = Fields::new(&bytes);
        assert_eq!(f.u32(4), Err(Short { needed: 8, len: 6 }));
        assert_eq!(f.require(7), Err(Short { needed: 7, len: 6 }));
        assert_eq!(f.require(6), Ok(()));
        assert_eq!(
            f.slice(usize::MAX, 2),
            Err(Short {
                needed: usize::MAX,
                len: 6
            })
        );
    }

    #[test]
    fn puts_fields_in_place() {
        let mut bytes = [0; 8];
        put(&mut bytes, 2, &[7, 8]);
        assert_eq!(bytes, [0, 0, 7, 8, 0, 0, 0, 0]);
    }

    #[test]
    fn puts_and_clears_fields_in_place() {
        let mut bytes = [9; 8];
        put(&mut bytes, 2, &[7, 8]);
        clear(&mut bytes, 5, 3);
        assert_eq!(bytes, [9, 9, 7, 8, 9, 0, 0, 0]);
    }
}
