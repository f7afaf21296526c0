//! GPADLs: describing guest pages to the host.
//!
//! A GPADL (guest physical address descriptor list) names a list of guest pages by number under
//! a 32-bit handle the guest picks; the host maps them and answers `GPADL_CREATED`. A page list
//! rarely fits one 240-byte message, so it is split: a `GPADL_HEADER` with the range description
//! and the first [`HEADER_MAX_PFNS`] page numbers, then as many `GPADL_BODY` messages of up to
//! [`BODY_MAX_PFNS`] as the rest needs (Linux's `create_gpadl_header`; FreeBSD's
//! `VMBUS_CHANMSG_GPADL_CONN_PGMAX` and `_SUBCONN_PGMAX`). Every guest describes one range,
//! page-aligned, and QEMU accepts nothing else, so [`split`] writes exactly that and
//! [`GpadlHeader::parse`] accepts exactly that.

use core::fmt;

use super::{MAX_MESSAGE_SIZE, Message, MessageType, ParseError, fields_of};
use crate::PAGE_SIZE;

/// Fixed part of `GPADL_HEADER` (header, relid, handle, `range_buflen`, `rangecount`) plus one
/// `gpa_range` (`byte_count`, `byte_offset`): where the page numbers start.
const HEADER_PFNS_AT: usize = 28;
/// Fixed part of `GPADL_BODY` (header, `msgnumber`, handle): where its page numbers start.
const BODY_PFNS_AT: usize = 16;

/// Page numbers in a `GPADL_HEADER`: (240 - 28) / 8.
pub const HEADER_MAX_PFNS: usize = (MAX_MESSAGE_SIZE - HEADER_PFNS_AT) / 8;
/// Page numbers in a `GPADL_BODY`: (240 - 16) / 8.
pub const BODY_MAX_PFNS: usize = (MAX_MESSAGE_SIZE - BODY_PFNS_AT) / 8;
/// The most pages one GPADL can describe: `range_buflen` (a `u16`) holds the 8-byte range
/// header plus 8 bytes per page. That is 32 MiB less 8 KiB.
pub const MAX_PAGES: usize = (u16::MAX as usize - 8) / 8;

/// Page numbers carried in one GPADL message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pfns<'a> {
    bytes: &'a [u8],
}

impl<'a> Pfns<'a> {
    /// The first `count` page numbers in `bytes` (fewer if `bytes` ends first).
    fn new(bytes: &'a [u8], count: usize) -> Pfns<'a> {
        let len = (bytes.len() / 8).min(count) * 8;
        Pfns {
            bytes: &bytes[..len],
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / 8
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = u64> + 'a {
        self.bytes.chunks_exact(8).map(|c| {
            let mut pfn = [0; 8];
            pfn.copy_from_slice(c);
            u64::from_le_bytes(pfn)
        })
    }
}

impl fmt::Debug for Pfns<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// `vmbus_channel_gpadl_header` with its one `gpa_range`: the start of a GPADL.
///
/// ```text
///  0 header  8 child_relid  12 gpadl  16 range_buflen (u16)  18 rangecount (u16)
/// 20 range[0].byte_count  24 range[0].byte_offset  28 range[0].pfn_array[...]
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpadlHeader<'a> {
    pub child_relid: u32,
    pub gpadl: u32,
    /// Bytes the range covers.
    pub byte_count: u32,
    /// Offset of the first byte in the first page.
    pub byte_offset: u32,
    /// Pages in the whole GPADL, from `range_buflen`.
    pub page_count: usize,
    /// The page numbers in this message: the first `min(page_count, 26)`.
    pub pfns: Pfns<'a>,
}

impl<'a> GpadlHeader<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<GpadlHeader<'a>, ParseError> {
        let f = fields_of(bytes, MessageType::GpadlHeader, HEADER_PFNS_AT)?;
        let range_buflen = usize::from(f.u16(16)?);
        let range_count = f.u16(18)?;
        let byte_count = f.u32(20)?;
        let byte_offset = f.u32(24)?;
        let page_count = range_buflen.saturating_sub(8) / 8;
        let spanned = (byte_offset as usize)
            .saturating_add(byte_count as usize)
            .div_ceil(PAGE_SIZE);
        if range_count != 1
            || range_buflen < 16
            || range_buflen % 8 != 0
            || byte_count == 0
            || byte_offset as usize >= PAGE_SIZE
            || spanned != page_count
        {
            return Err(ParseError::BadGpadlRange);
        }
        let pfns = f.slice(HEADER_PFNS_AT, f.len() - HEADER_PFNS_AT)?;
        Ok(GpadlHeader {
            child_relid: f.u32(8)?,
            gpadl: f.u32(12)?,
            byte_count,
            byte_offset,
            page_count,
            pfns: Pfns::new(pfns, page_count),
        })
    }
}

/// `vmbus_channel_gpadl_body`: more page numbers for a GPADL.
///
/// ```text
///  0 header  8 msgnumber  12 gpadl  16 pfn[...]
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpadlBody<'a> {
    /// Left zero by Linux and FreeBSD, and ignored by hosts.
    pub msg_number: u32,
    pub gpadl: u32,
    pub pfns: Pfns<'a>,
}

impl<'a> GpadlBody<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<GpadlBody<'a>, ParseError> {
        let f = fields_of(bytes, MessageType::GpadlBody, BODY_PFNS_AT)?;
        let pfns = f.slice(BODY_PFNS_AT, f.len() - BODY_PFNS_AT)?;
        Ok(GpadlBody {
            msg_number: f.u32(8)?,
            gpadl: f.u32(12)?,
            pfns: Pfns::new(pfns, usize::MAX),
        })
    }
}

/// Why a page list could not be split into GPADL messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitError<E> {
    /// A GPADL needs at least one page.
    NoPages,
    /// More than [`MAX_PAGES`].
    TooManyPages(usize),
    /// The page source had no page number for this index.
    MissingPage(usize),
    /// `emit` failed; the messages before it were emitted.
    Emit(E),
}

/// Splits GPADL `gpadl` of `page_count` pages for channel `child_relid` into a `GPADL_HEADER`
/// and the `GPADL_BODY` messages that follow it, passing each to `emit` in order. `page(i)` is
/// the page number of page `i`. The range is page-aligned: byte offset 0, `page_count * 4096`
/// bytes.
///
/// Nothing is emitted unless the count is valid; a missing page stops the split at the message
/// that needed it.
pub fn split<E>(
    child_relid: u32,
    gpadl: u32,
    page_count: usize,
    mut page: impl FnMut(usize) -> Option<u64>,
    mut emit: impl FnMut(&Message) -> Result<(), E>,
) -> Result<(), SplitError<E>> {
    if page_count == 0 {
        return Err(SplitError::NoPages);
    }
    if page_count > MAX_PAGES {
        return Err(SplitError::TooManyPages(page_count));
    }
    // Both fit: page_count <= MAX_PAGES keeps range_buflen in a u16 and byte_count in a u32.
    let range_buflen = (8 + 8 * page_count) as u16;
    let byte_count = (page_count * PAGE_SIZE) as u32;

    let mut next = 0;
    loop {
        let first = next == 0;
        let (at, max) = if first {
            (HEADER_PFNS_AT, HEADER_MAX_PFNS)
        } else {
            (BODY_PFNS_AT, BODY_MAX_PFNS)
        };
        let n = max.min(page_count - next);
        let mut message = if first {
            let mut m = Message::new(MessageType::GpadlHeader, at + 8 * n);
            m.put_u32(8, child_relid);
            m.put_u32(12, gpadl);
            m.put_u16(16, range_buflen);
            m.put_u16(18, 1);
            m.put_u32(20, byte_count);
            m
        } else {
            // msgnumber stays 0, as Linux and FreeBSD leave it.
            let mut m = Message::new(MessageType::GpadlBody, at + 8 * n);
            m.put_u32(12, gpadl);
            m
        };
        for i in 0..n {
            let pfn = page(next + i).ok_or(SplitError::MissingPage(next + i))?;
            message.put_u64(at + 8 * i, pfn);
        }
        emit(&message).map_err(SplitError::Emit)?;
        next += n;
        if next == page_count {
            return Ok(());
        }
    }
}

/// `vmbus_channel_gpadl_created`, 20 bytes: `0 header  8 child_relid  12 gpadl
/// 16 creation_status` (0 on success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpadlCreated {
    pub child_relid: u32,
    pub gpadl: u32,
    pub status: u32,
}

impl GpadlCreated {
    pub const SIZE: usize = 20;

    pub fn parse(bytes: &[u8]) -> Result<GpadlCreated, ParseError> {
        let f = fields_of(bytes, MessageType::GpadlCreated, Self::SIZE)?;
        Ok(GpadlCreated {
            child_relid: f.u32(8)?,
            gpadl: f.u32(12)?,
            status: f.u32(16)?,
        })
    }

    pub fn encode(&self) -> Message {
        let mut m = Message::new(MessageType::GpadlCreated, Self::SIZE);
        m.put_u32(8, self.child_relid);
        m.put_u32(12, self.gpadl);
        m.put_u32(16, self.status);
        m
    }
}

/// `vmbus_channel_gpadl_teardown`, 16 bytes: `0 header  8 child_relid  12 gpadl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpadlTeardown {
    pub child_relid: u32,
    pub gpadl: u32,
}

impl GpadlTeardown {
    pub const SIZE: usize = 16;

    pub fn parse(bytes: &[u8]) -> Result<GpadlTeardown, ParseError> {
        let f = fields_of(bytes, MessageType::GpadlTeardown, Self::SIZE)?;
        Ok(GpadlTeardown {
            child_relid: f.u32(8)?,
            gpadl: f.u32(12)?,
        })
    }

    pub fn encode(&self) -> Message {
        let mut m = Message::new(MessageType::GpadlTeardown, Self::SIZE);
        m.put_u32(8, self.child_relid);
        m.put_u32(12, self.gpadl);
        m
    }
}

/// `vmbus_channel_gpadl_torndown`, 12 bytes: `0 header  8 gpadl`. The host no longer maps
/// the pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpadlTorndown {
    pub gpadl: u32,
}

impl GpadlTorndown {
    pub const SIZE: usize = 12;

    pub fn parse(bytes: &[u8]) -> Result<GpadlTorndown, ParseError> {
        let f = fields_of(bytes, MessageType::GpadlTorndown, Self::SIZE)?;
        Ok(GpadlTorndown { gpadl: f.u32(8)? })
    }

    pub fn encode(&self) -> Message {
        let mut m = Message::new(MessageType::GpadlTorndown, Self::SIZE);
        m.put_u32(8, self.gpadl);
        m
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::message::{GuestMessage, message_type};
    use std::vec::Vec;

    fn split_all(pages: usize) -> Vec<Message> {
        let mut out = Vec::new();
        split::<()>(
            7,
            0xe1e10,
            pages,
            |i| Some(0x10_0000 + i as u64),
            |m| {
                out.push(m.clone());
                Ok(())
            },
        )
        .unwrap();
        out
    }

    /// Reassembles split messages the way a host does, checking each on the way.
    fn reassemble(messages: &[Message]) -> (usize, Vec<u64>) {
        let GuestMessage::GpadlHeader(header) =
            GuestMessage::parse(messages[0].as_bytes()).unwrap()
        else {
            panic!("first message is not a header");
        };
        assert_eq!((header.child_relid, header.gpadl), (7, 0xe1e10));
        assert_eq!(header.byte_offset, 0);
        assert_eq!(header.byte_count as usize, header.page_count * PAGE_SIZE);
        let mut pfns: Vec<u64> = header.pfns.iter().collect();
        for m in &messages[1..] {
            let body = GpadlBody::parse(m.as_bytes()).unwrap();
            assert_eq!((body.gpadl, body.msg_number), (0xe1e10, 0));
            pfns.extend(body.pfns.iter());
        }
        (header.page_count, pfns)
    }

    #[test]
    fn splits_page_lists_at_26_and_28() {
        for (pages, messages, last_len) in [
            (1, 1, 28 + 8),
            (26, 1, 240 - 4),
            (27, 2, 16 + 8),
            (54, 2, 240),
            (55, 3, 16 + 8),
            (200, 8, 16 + 8 * 6),
        ] {
            let out = split_all(pages);
            assert_eq!(out.len(), messages, "{pages} pages");
            assert!(out.iter().all(|m| m.as_bytes().len() <= MAX_MESSAGE_SIZE));
            assert_eq!(
                out.last().unwrap().as_bytes().len(),
                last_len,
                "{pages} pages"
            );
            assert_eq!(
                message_type(out[0].as_bytes()),
                Ok(MessageType::GpadlHeader)
            );
            let (count, pfns) = reassemble(&out);
            assert_eq!(count, pages);
            assert_eq!(
                pfns,
                (0..pages as u64).map(|i| 0x10_0000 + i).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn header_encodes_range_buflen_and_byte_count() {
        let out = split_all(27);
        let b = out[0].as_bytes();
        assert_eq!(b[16..18], (8u16 + 27 * 8).to_le_bytes());
        assert_eq!(b[18..20], 1u16.to_le_bytes());
        assert_eq!(b[20..24], (27u32 * 4096).to_le_bytes());
        assert_eq!(b[24..28], [0; 4]);
        assert_eq!(b[28..36], 0x10_0000u64.to_le_bytes());
    }

    #[test]
    fn refuses_empty_oversized_and_holey_page_lists() {
        let emit = |_: &Message| Ok::<(), ()>(());
        assert_eq!(split(1, 1, 0, |_| Some(1), emit), Err(SplitError::NoPages));
        assert_eq!(
            split(1, 1, MAX_PAGES + 1, |_| Some(1), emit),
            Err(SplitError::TooManyPages(MAX_PAGES + 1))
        );
        let mut emitted = 0;
        assert_eq!(
            split(
                1,
                1,
                60,
                |i| (i != 58).then_some(5),
                |_| {
                    emitted += 1;
                    Ok::<(), ()>(())
                }
            ),
            Err(SplitError::MissingPage(58))
        );
        // The header and the first body went out; the body holding page 58 did not.
        assert_eq!(emitted, 2);
        assert_eq!(
            split(1, 1, 1, |_| Some(1), |_| Err::<(), u8>(9)),
            Err(SplitError::Emit(9))
        );
        // The largest GPADL still fits the u16 and u32 fields.
        let mut n = 0;
        split::<()>(
            1,
            1,
            MAX_PAGES,
            |_| Some(1),
            |_| {
                n += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(n, 1 + (MAX_PAGES - 26).div_ceil(28));
    }

    #[test]
    fn rejects_ranges_hosts_do_not_accept() {
        let good = split_all(2).remove(0);
        let mut b = good.as_bytes().to_vec();
        assert_eq!(GpadlHeader::parse(&b).unwrap().pfns.len(), 2);
        for (at, value) in [
            (18usize, &[2u8, 0][..]),   // two ranges
            (16, &[9, 0][..]),          // range_buflen not a multiple of 8
            (16, &[8, 0][..]),          // no pages
            (20, &[0, 0, 0, 0][..]),    // zero bytes
            (24, &[0, 0x10, 0, 0][..]), // offset past the first page
            (20, &[1, 0x30, 0, 0][..]), // byte_count spans 4 pages, buflen says 2
        ] {
            let saved = b.clone();
            b[at..at + value.len()].copy_from_slice(value);
            assert_eq!(
                GpadlHeader::parse(&b),
                Err(ParseError::BadGpadlRange),
                "{at}"
            );
            b = saved;
        }
        // An unaligned range is fine while its page count matches.
        b[24..28].copy_from_slice(&0x800u32.to_le_bytes());
        b[20..24].copy_from_slice(&0x1000u32.to_le_bytes());
        assert_eq!(GpadlHeader::parse(&b).unwrap().byte_offset, 0x800);
        assert!(GpadlHeader::parse(&b[..27]).is_err());
        // A header cut short carries only the page numbers that fit.
        assert_eq!(GpadlHeader::parse(&b[..36]).unwrap().pfns.len(), 1);
    }

    #[test]
    fn response_messages_round_trip() {
        let c = GpadlCreated {
            child_relid: 1,
            gpadl: 2,
            status: 3,
        };
        assert_eq!(GpadlCreated::parse(c.encode().as_bytes()), Ok(c));
        assert!(GpadlCreated::parse(&c.encode().as_bytes()[..19]).is_err());
        let t = GpadlTeardown {
            child_relid: 1,
            gpadl: 2,
        };
        assert_eq!(t.encode().as_bytes().len(), 16);
        assert_eq!(GpadlTeardown::parse(t.encode().as_bytes()), Ok(t));
        let d = GpadlTorndown { gpadl: 2 };
        assert_eq!(d.encode().as_bytes(), [12, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(GpadlTorndown::parse(d.encode().as_bytes()), Ok(d));
    }
}
