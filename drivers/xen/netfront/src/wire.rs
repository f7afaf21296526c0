//! Requests, responses and extra-info slots as the bytes of a ring slot (`io/netif.h`).
//!
//! Requests are encoded whole into a slot-sized buffer and copied to the ring in one go, so no
//! byte of a slot is left over from an earlier message. Responses are decoded from the one copy
//! the ring made of the slot; every field is then untrusted data for the caller to check.

use ringbolt_xen_abi::grant_table::GrantRef;
use ringbolt_xen_abi::io::netif::{
    netif_extra_info, netif_rx_request, netif_rx_response, netif_tx_request, netif_tx_response,
};

/// `struct netif_tx_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TxRequest {
    pub gref: GrantRef,
    pub offset: u16,
    pub flags: u16,
    pub id: u16,
    /// The whole packet's size in its first request, the fragment's in the others.
    pub size: u16,
}

impl TxRequest {
    pub fn encode(&self) -> [u8; netif_tx_request::SIZE] {
        let mut b = [0; netif_tx_request::SIZE];
        b[netif_tx_request::GREF..][..4].copy_from_slice(&self.gref.to_le_bytes());
        b[netif_tx_request::OFFSET..][..2].copy_from_slice(&self.offset.to_le_bytes());
        b[netif_tx_request::FLAGS..][..2].copy_from_slice(&self.flags.to_le_bytes());
        b[netif_tx_request::ID..][..2].copy_from_slice(&self.id.to_le_bytes());
        b[netif_tx_request::SIZE_FIELD..][..2].copy_from_slice(&self.size.to_le_bytes());
        b
    }

    #[cfg(any(test, feature = "sim"))]
    pub fn decode(b: &[u8; netif_tx_request::SIZE]) -> Self {
        TxRequest {
            gref: u32::from_le_bytes(array(b, netif_tx_request::GREF)),
            offset: u16::from_le_bytes(array(b, netif_tx_request::OFFSET)),
            flags: u16::from_le_bytes(array(b, netif_tx_request::FLAGS)),
            id: u16::from_le_bytes(array(b, netif_tx_request::ID)),
            size: u16::from_le_bytes(array(b, netif_tx_request::SIZE_FIELD)),
        }
    }
}

/// `struct netif_tx_response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TxResponse {
    pub id: u16,
    pub status: i16,
}

impl TxResponse {
    pub fn decode(b: &[u8; netif_tx_response::SIZE]) -> Self {
        TxResponse {
            id: u16::from_le_bytes(array(b, netif_tx_response::ID)),
            status: i16::from_le_bytes(array(b, netif_tx_response::STATUS)),
        }
    }

    #[cfg(any(test, feature = "sim"))]
    pub fn encode(&self) -> [u8; netif_tx_response::SIZE] {
        let mut b = [0; netif_tx_response::SIZE];
        b[netif_tx_response::ID..][..2].copy_from_slice(&self.id.to_le_bytes());
        b[netif_tx_response::STATUS..][..2].copy_from_slice(&self.status.to_le_bytes());
        b
    }
}

/// `struct netif_rx_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxRequest {
    pub id: u16,
    pub gref: GrantRef,
}

impl RxRequest {
    pub fn encode(&self) -> [u8; netif_rx_request::SIZE] {
        let mut b = [0; netif_rx_request::SIZE];
        b[netif_rx_request::ID..][..2].copy_from_slice(&self.id.to_le_bytes());
        b[netif_rx_request::GREF..][..4].copy_from_slice(&self.gref.to_le_bytes());
        b
    }

    #[cfg(any(test, feature = "sim"))]
    pub fn decode(b: &[u8; netif_rx_request::SIZE]) -> Self {
        RxRequest {
            id: u16::from_le_bytes(array(b, netif_rx_request::ID)),
            gref: u32::from_le_bytes(array(b, netif_rx_request::GREF)),
        }
    }
}

/// `struct netif_rx_response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxResponse {
    pub id: u16,
    pub offset: u16,
    pub flags: u16,
    /// The fragment's size, or a negative `NETIF_RSP_*`.
    pub status: i16,
}

impl RxResponse {
    pub fn decode(b: &[u8; netif_rx_response::SIZE]) -> Self {
        RxResponse {
            id: u16::from_le_bytes(array(b, netif_rx_response::ID)),
            offset: u16::from_le_bytes(array(b, netif_rx_response::OFFSET)),
            flags: u16::from_le_bytes(array(b, netif_rx_response::FLAGS)),
            status: i16::from_le_bytes(array(b, netif_rx_response::STATUS)),
        }
    }

    #[cfg(any(test, feature = "sim"))]
    pub fn encode(&self) -> [u8; netif_rx_response::SIZE] {
        let mut b = [0; netif_rx_response::SIZE];
        b[netif_rx_response::ID..][..2].copy_from_slice(&self.id.to_le_bytes());
        b[netif_rx_response::OFFSET..][..2].copy_from_slice(&self.offset.to_le_bytes());
        b[netif_rx_response::FLAGS..][..2].copy_from_slice(&self.flags.to_le_bytes());
        b[netif_rx_response::STATUS..][..2].copy_from_slice(&self.status.to_le_bytes());
        b
    }
}

/// The header of `struct netif_extra_info`, read from a receive slot. Its type-specific payload
/// is skipped: we negotiate none of the features that would give it a meaning to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExtraInfo {
    pub kind: u8,
    pub flags: u8,
}

impl ExtraInfo {
    pub fn decode(b: &[u8; netif_rx_response::SIZE]) -> Self {
        ExtraInfo {
            kind: b[netif_extra_info::TYPE],
            flags: b[netif_extra_info::FLAGS],
        }
    }

    /// The slot's bytes, with `payload` as the type-specific data.
    #[cfg(any(test, feature = "sim"))]
    pub fn encode(&self, payload: [u8; 6]) -> [u8; netif_extra_info::SIZE] {
        let mut b = [0; netif_extra_info::SIZE];
        b[netif_extra_info::TYPE] = self.kind;
        b[netif_extra_info::FLAGS] = self.flags;
        b[netif_extra_info::GSO_SIZE..].copy_from_slice(&payload);
        b
    }
}

/// `N` bytes at `at`; callers pass offsets of fields inside `b`.
fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_request_bytes() {
        let r = TxRequest {
            gref: 0x0A0B_0C0D,
            offset: 0x0102,
            flags: 4,
            id: 0x00FF,
            size: 1514,
        };
        let b = r.encode();
        assert_eq!(b, [0x0D, 0x0C, 0x0B, 0x0A, 2, 1, 4, 0, 0xFF, 0, 0xEA, 0x05]);
        assert_eq!(TxRequest::decode(&b), r);
    }

    #[test]
    fn tx_response_bytes() {
        let r = TxResponse { id: 7, status: -1 };
        assert_eq!(r.encode(), [7, 0, 0xFF, 0xFF]);
        assert_eq!(TxResponse::decode(&r.encode()), r);
    }

    #[test]
    fn rx_request_bytes() {
        let r = RxRequest {
            id: 0x1234,
            gref: 9,
        };
        assert_eq!(r.encode(), [0x34, 0x12, 0, 0, 9, 0, 0, 0]);
        assert_eq!(RxRequest::decode(&r.encode()), r);
    }

    #[test]
    fn rx_response_bytes() {
        let r = RxResponse {
            id: 3,
            offset: 0x10,
            flags: 0x0C,
            status: 1514,
        };
        assert_eq!(r.encode(), [3, 0, 0x10, 0, 0x0C, 0, 0xEA, 0x05]);
        assert_eq!(RxResponse::decode(&r.encode()), r);
    }

    #[test]
    fn extra_info_overlays_the_response() {
        let e = ExtraInfo { kind: 1, flags: 1 };
        let b = e.encode([0xB4, 0x05, 1, 0, 0, 0]);
        assert_eq!(b, [1, 1, 0xB4, 0x05, 1, 0, 0, 0]);
        assert_eq!(ExtraInfo::decode(&b), e);
        // The same bytes read as a response: the type and flags land in the id.
        assert_eq!(RxResponse::decode(&b).id, 0x0101);
    }
}
