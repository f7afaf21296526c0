//! Messages as bytes: the `xsd_sockmsg` header, reassembly of messages from the ring, and the
//! payload formats of `docs/misc/xenstore.txt`. No I/O, no state beyond one partial message.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use ringbolt_xen_abi::io::xs_wire::{XENSTORE_PAYLOAD_MAX, xsd_sockmsg};

use crate::{Broken, Malformed, Permission, TxId, XsError};

/// Bytes in a header.
pub(crate) const HEADER: usize = xsd_sockmsg::SIZE;

/// `struct xsd_sockmsg`, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    pub(crate) fn to_bytes(self) -> [u8; HEADER] {
        let mut out = [0; HEADER];
        for (offset, value) in [
            (xsd_sockmsg::TYPE, self.ty),
            (xsd_sockmsg::REQ_ID, self.req_id),
            (xsd_sockmsg::TX_ID, self.tx_id),
            (xsd_sockmsg::LEN, self.len),
        ] {
            out[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8; HEADER]) -> Header {
        let field = |offset: usize| {
            let mut word = [0; 4];
            word.copy_from_slice(&bytes[offset..offset + 4]);
            u32::from_le_bytes(word)
        };
        Header {
            ty: field(xsd_sockmsg::TYPE),
            req_id: field(xsd_sockmsg::REQ_ID),
            tx_id: field(xsd_sockmsg::TX_ID),
            len: field(xsd_sockmsg::LEN),
        }
    }
}

/// One whole message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Reassembles messages from a byte stream that arrives in pieces of any size.
///
/// The ring copies straight into [`Decoder::space`], so every byte is copied out of shared
/// memory once, into memory the peer cannot change, and the header is validated from that copy.
/// Asking only for the bytes the current message still needs means a message never swallows
/// the start of the next one.
#[derive(Debug)]
pub(crate) struct Decoder {
    header: [u8; HEADER],
    /// Header bytes received; at `HEADER`, `payload` has the header's `len` and is filling.
    got_header: usize,
    payload: Vec<u8>,
    got_payload: usize,
}

impl Decoder {
    pub(crate) fn new() -> Self {
        Decoder {
            header: [0; HEADER],
            got_header: 0,
            payload: Vec::new(),
            got_payload: 0,
        }
    }

    /// Where the next bytes of the stream go: the rest of the header, or the rest of the
    /// payload. Never empty.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        if self.got_header < HEADER {
            &mut self.header[self.got_header..]
        } else {
            &mut self.payload[self.got_payload..]
        }
    }

    /// Accounts for `n` bytes copied into [`Decoder::space`], returning the message they
    /// completed. A header claiming more than `XENSTORE_PAYLOAD_MAX` bytes is the end of the
    /// stream: nothing after it can be framed.
    pub(crate) fn advance(&mut self, n: usize) -> Result<Option<Message>, Broken> {
        if self.got_header < HEADER {
            self.got_header = (self.got_header + n).min(HEADER);
            if self.got_header < HEADER {
                return Ok(None);
            }
            let header = Header::from_bytes(&self.header);
            if header.len as usize > XENSTORE_PAYLOAD_MAX {
                return Err(Broken::PayloadTooLong { len: header.len });
            }
            self.payload = vec![0; header.len as usize];
            self.got_payload = 0;
        } else {
            self.got_payload = (self.got_payload + n).min(self.payload.len());
        }
        if self.got_payload < self.payload.len() {
            return Ok(None);
        }
        self.got_header = 0;
        Ok(Some(Message {
            header: Header::from_bytes(&self.header),
            payload: core::mem::take(&mut self.payload),
        }))
    }
}

/// Builds a request payload: NUL-terminated strings, then possibly raw bytes.
#[derive(Debug, Default)]
pub(crate) struct Payload(Vec<u8>);

impl Payload {
    /// Appends `s` and its terminating NUL. A NUL inside `s` would split the field on the
    /// server's side, so it is refused with `EINVAL`.
    pub(crate) fn string(mut self, s: &str) -> Result<Self, XsError> {
        if s.as_bytes().contains(&0) {
            return Err(XsError::Inval);
        }
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        Ok(self)
    }

    /// Appends `bytes` as they are (a value, which xenstore stores without a terminator).
    pub(crate) fn bytes(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// `OK|`, the reply to every request that answers nothing else.
pub(crate) fn expect_ok(payload: &[u8]) -> Result<(), XsError> {
    if payload == b"OK\0" {
        Ok(())
    } else {
        Err(Malformed::NotOk.into())
    }
}

/// `<string>|*`: zero or more NUL-terminated UTF-8 strings (a directory listing, a watch
/// event, permissions, an error name).
pub(crate) fn strings(payload: &[u8]) -> Result<Vec<String>, Malformed> {
    let Some(body) = payload.strip_suffix(&[0]) else {
        return if payload.is_empty() {
            Ok(Vec::new())
        } else {
            Err(Malformed::MissingNul)
        };
    };
    body.split(|&b| b == 0)
        .map(|field| {
            core::str::from_utf8(field)
                .map(String::from)
                .map_err(|_| Malformed::NotUtf8)
        })
        .collect()
}

/// `<transid>|`: xenstored's unsigned decimal transaction id. Zero would mean "no
/// transaction", so it is as malformed as a non-number.
pub(crate) fn tx_id(payload: &[u8]) -> Result<TxId, XsError> {
    let fields = strings(payload)?;
    match fields.as_slice() {
        [id] if id.bytes().all(|b| b.is_ascii_digit()) => match id.parse::<u32>() {
            Ok(id) if id != 0 => Ok(TxId(id)),
            _ => Err(Malformed::BadTxId.into()),
        },
        _ => Err(Malformed::BadTxId.into()),
    }
}

/// `E<name>|`, the payload of `XS_ERROR`.
pub(crate) fn error(payload: &[u8]) -> XsError {
    match strings(payload) {
        Ok(fields) => match fields.as_slice() {
            [name] => XsError::from_name(name),
            _ => Malformed::MissingNul.into(),
        },
        Err(m) => m.into(),
    }
}

/// `<epath>|<token>|`, the payload of `XS_WATCH_EVENT`. Fields past the token are reserved
/// and ignored.
pub(crate) fn watch_event(payload: &[u8]) -> Result<(String, String), Malformed> {
    let mut fields = strings(payload)?.into_iter();
    match (fields.next(), fields.next()) {
        (Some(path), Some(token)) => Ok((path, token)),
        _ => Err(Malformed::MissingNul),
    }
}

/// `<perm-as-string>|+`, the reply to `GET_PERMS`: `n`, `r`, `w` or `b` and a decimal domid.
pub(crate) fn permissions(payload: &[u8]) -> Result<Vec<Permission>, XsError> {
    let fields = strings(payload)?;
    if fields.is_empty() {
        return Err(Malformed::BadPermission.into());
    }
    fields
        .iter()
        .map(|field| {
            let (read, write) = match field.as_bytes().first() {
                Some(b'n') => (false, false),
                Some(b'r') => (true, false),
                Some(b'w') => (false, true),
                Some(b'b') => (true, true),
                _ => return Err(Malformed::BadPermission.into()),
            };
            let digits = &field[1..];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Malformed::BadPermission.into());
            }
            let domid = digits.parse().map_err(|_| Malformed::BadPermission)?;
            Ok(Permission { domid, read, write })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn header_round_trips_little_endian() {
        let header = Header {
            ty: 2,
            req_id: 0x0102_0304,
            tx_id: 7,
            len: 4096,
        };
        let bytes = header.to_bytes();
        assert_eq!(&bytes[..8], [2, 0, 0, 0, 4, 3, 2, 1]);
        assert_eq!(&bytes[12..], 4096u32.to_le_bytes());
        assert_eq!(Header::from_bytes(&bytes), header);
    }

    fn message(ty: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Header {
            ty,
            req_id,
            tx_id: 0,
            len: payload.len() as u32,
        }
        .to_bytes()
        .to_vec();
        out.extend_from_slice(payload);
        out
    }

    /// Feeds `stream` to a decoder `piece` bytes at a time.
    fn decode(stream: &[u8], piece: usize) -> Result<Vec<Message>, Broken> {
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let space = decoder.space();
            assert!(!space.is_empty());
            let n = space.len().min(piece).min(rest.len());
            space[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            out.extend(decoder.advance(n)?);
        }
        Ok(out)
    }

    #[test]
    fn reassembles_messages_from_pieces_of_any_size() {
        let mut stream = message(2, 1, b"value");
        stream.extend(message(1, 2, b""));
        stream.extend(message(15, 0, &[b'x'; XENSTORE_PAYLOAD_MAX]));
        for piece in [1, 3, 16, 17, 1000, 5000] {
            let messages = decode(&stream, piece).unwrap();
            assert_eq!(messages.len(), 3, "pieces of {piece}");
            assert_eq!(messages[0].header.req_id, 1);
            assert_eq!(messages[0].payload, b"value");
            assert_eq!(messages[1].header.ty, 1);
            assert!(messages[1].payload.is_empty());
            assert_eq!(messages[2].payload.len(), XENSTORE_PAYLOAD_MAX);
        }
    }

    #[test]
    fn a_header_over_the_payload_limit_breaks_the_stream() {
        let mut stream = Header {
            ty: 2,
            req_id: 1,
            tx_id: 0,
            len: XENSTORE_PAYLOAD_MAX as u32 + 1,
        }
        .to_bytes()
        .to_vec();
        stream.extend([0; 8]);
        assert_eq!(
            decode(&stream, 4),
            Err(Broken::PayloadTooLong { len: 4097 })
        );
        stream[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&stream, 64),
            Err(Broken::PayloadTooLong { len: u32::MAX })
        );
    }

    #[test]
    fn payload_builder_refuses_embedded_nul() {
        let p = Payload::default().string("a/b").unwrap().bytes(b"v\0w");
        assert_eq!(p.finish(), b"a/b\0v\0w");
        assert_eq!(
            Payload::default().string("a\0b").unwrap_err(),
            XsError::Inval
        );
    }

    #[test]
    fn parses_string_lists() {
        assert_eq!(strings(b""), Ok(vec![]));
        assert_eq!(strings(b"a\0bc\0"), Ok(vec!["a".into(), "bc".into()]));
        assert_eq!(strings(b"a\0bc"), Err(Malformed::MissingNul));
        assert_eq!(strings(b"a\0\xff\0"), Err(Malformed::NotUtf8));
    }

    #[test]
    fn parses_acknowledgements() {
        assert_eq!(expect_ok(b"OK\0"), Ok(()));
        for bad in [&b"OK"[..], b"", b"NO\0", b"OK\0\0"] {
            assert_eq!(expect_ok(bad), Err(XsError::Malformed(Malformed::NotOk)));
        }
    }

    #[test]
    fn parses_transaction_ids() {
        assert_eq!(tx_id(b"17\0"), Ok(TxId(17)));
        assert_eq!(tx_id(b"4294967295\0"), Ok(TxId(u32::MAX)));
        for bad in [
            &b"0\0"[..],
            b"4294967296\0",
            b"+5\0",
            b"\0",
            b"1\x002\0",
            b"x\0",
        ] {
            assert_eq!(tx_id(bad), Err(Malformed::BadTxId.into()), "{bad:?}");
        }
        assert_eq!(tx_id(b"17"), Err(Malformed::MissingNul.into()));
    }

    #[test]
    fn parses_error_replies() {
        assert_eq!(error(b"ENOENT\0"), XsError::NoEnt);
        assert_eq!(error(b"EAGAIN\0"), XsError::Again);
        assert_eq!(error(b"ENEWTHING\0"), XsError::Other("ENEWTHING".into()));
        assert_eq!(error(b"ENOENT"), Malformed::MissingNul.into());
        assert_eq!(error(b""), Malformed::MissingNul.into());
        assert_eq!(error(b"\xc3\0"), Malformed::NotUtf8.into());
    }

    #[test]
    fn parses_watch_events() {
        assert_eq!(
            watch_event(b"/a/b\0tok\0"),
            Ok(("/a/b".into(), "tok".into()))
        );
        assert_eq!(
            watch_event(b"/a\0tok\0extra\0"),
            Ok(("/a".into(), "tok".into()))
        );
        assert_eq!(watch_event(b"/a\0"), Err(Malformed::MissingNul));
        assert_eq!(watch_event(b"/a\0tok"), Err(Malformed::MissingNul));
        assert_eq!(watch_event(b"/a\0\xfe\0"), Err(Malformed::NotUtf8));
    }

    #[test]
    fn parses_permissions() {
        assert_eq!(
            permissions(b"n0\0r1\0w2\0b65535\0"),
            Ok(vec![
                Permission {
                    domid: 0,
                    read: false,
                    write: false
                },
                Permission {
                    domid: 1,
                    read: true,
                    write: false
                },
                Permission {
                    domid: 2,
                    read: false,
                    write: true
                },
                Permission {
                    domid: 65535,
                    read: true,
                    write: true
                },
            ])
        );
        for bad in [&b""[..], b"x0\0", b"r\0", b"r65536\0", b"r-1\0", b"b1 \0"] {
            assert_eq!(
                permissions(bad),
                Err(Malformed::BadPermission.into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_xsd_error_maps_to_its_own_variant() {
        use ringbolt_xen_abi::io::xs_wire::XSD_ERRORS;
        for name in XSD_ERRORS {
            let e = XsError::from_name(name);
            assert!(!matches!(e, XsError::Other(_)), "{name}");
            assert_eq!(e.name(), Some(name));
        }
        assert_eq!(XsError::Malformed(Malformed::NotOk).name(), None);
    }
}
