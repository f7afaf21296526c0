//! `xen/include/public/io/netif.h`: the network split-driver protocol.
//!
//! A virtual interface is a pair of `io/ring.h` rings ([`super::ring`]) per queue: on the
//! transmit ring the frontend asks the backend to send frames out of granted pages, on the
//! receive ring it posts granted pages for the backend to copy incoming frames into. Requests,
//! responses and the extra-info slots that may follow a packet's first slot are described here
//! by byte offsets, because the frontend only reaches a slot through
//! `ringbolt_shmem::SharedMemory`.
//!
//! Two details of the wire format decide how a frontend parses it:
//!
//! - A transmit packet's first request carries the **whole packet's** size, later ones their
//!   own fragment's; a received packet's size is the **sum** of its fragments' statuses.
//! - Extra-info slots overlay responses and carry no id, so receive responses are matched to
//!   requests by ring position: the backend answers every receive request in the slot the
//!   request occupied. Linux relies on this, and the header obliges backends to keep it.
//!
//! Not covered here: the control ring (`xen_netif_ctrl_*`, hashing and static grant mapping),
//! which a frontend only uses after negotiating `feature-ctrl-ring`.

use crate::XEN_PAGE_SIZE;

/// The fewest slots any backend must accept for one transmitted packet (the old Linux
/// `MAX_SKB_FRAGS`); a frontend that stays within it needs no slot-count negotiation.
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;

/// The largest packet a transmit request's 16-bit `size` can describe.
pub const XEN_NETIF_MAX_TX_SIZE: usize = 0xFFFF;

// `netif_tx_request.flags`.
/// The protocol checksum field is blank (the backend, or the receiver, computes it).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// The packet's data has been validated against its protocol checksum.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// The packet continues in the next request.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// Extra-info slots follow this request.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

// `netif_rx_response.flags`.
/// The packet's data has been validated against its protocol checksum.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// The protocol checksum field is blank (the frontend must compute it).
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// The packet continues in the next response.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// Extra-info slots follow this response.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// The packet has a GSO prefix. Deprecated.
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

// `netif_extra_info.type`.
/// Never used: a slot of this type is invalid.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// `u.gso`.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// `u.mcast`: add a multicast filter (transmit only).
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// `u.mcast`: remove a multicast filter (transmit only).
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// `u.hash`.
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// One past the last valid type.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;

// `netif_extra_info.flags`.
/// Another extra-info slot follows this one.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

// `netif_extra_info.u.gso.type`.
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

// Response statuses (`netif_tx_response.status`; a negative `netif_rx_response.status`).
/// The backend dropped the packet.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// The request failed.
pub const NETIF_RSP_ERROR: i16 = -1;
pub const NETIF_RSP_OKAY: i16 = 0;
/// No response: the slot answers an auxiliary request (an extra-info slot).
pub const NETIF_RSP_NULL: i16 = 1;

/// `struct netif_tx_request` (12 bytes): one fragment of a packet to send.
pub mod netif_tx_request {
    /// `grant_ref_t` of the page holding the fragment.
    pub const GREF: usize = 0;
    /// `u16`, byte offset of the fragment in the page.
    pub const OFFSET: usize = 4;
    /// `u16`, `NETTXF_*`.
    pub const FLAGS: usize = 6;
    /// `u16`, echoed in the response.
    pub const ID: usize = 8;
    /// `u16` `size`: the whole packet's size in the first request, the fragment's in the
    /// others. (`SIZE` is the struct's, as for every struct in this crate.)
    pub const SIZE_FIELD: usize = 10;
    pub const SIZE: usize = 12;
}

/// `struct netif_tx_response` (4 bytes).
pub mod netif_tx_response {
    /// `u16`, the request's id.
    pub const ID: usize = 0;
    /// `i16`, `NETIF_RSP_*`.
    pub const STATUS: usize = 2;
    pub const SIZE: usize = 4;
}

/// `struct netif_rx_request` (8 bytes): a granted page for one received fragment.
pub mod netif_rx_request {
    /// `u16`, echoed in the response.
    pub const ID: usize = 0;
    /// `u16`, unused.
    pub const PAD: usize = 2;
    /// `grant_ref_t` of the page to copy into.
    pub const GREF: usize = 4;
    pub const SIZE: usize = 8;
}

/// `struct netif_rx_response` (8 bytes).
pub mod netif_rx_response {
    /// `u16`, the request's id.
    pub const ID: usize = 0;
    /// `u16`, byte offset of the fragment in the page.
    pub const OFFSET: usize = 2;
    /// `u16`, `NETRXF_*`.
    pub const FLAGS: usize = 4;
    /// `i16`: the fragment's size if non-negative, else `NETIF_RSP_*`.
    pub const STATUS: usize = 6;
    pub const SIZE: usize = 8;
}

/// `struct netif_extra_info` (8 bytes): overlays a request or response slot.
pub mod netif_extra_info {
    /// `u8`, `XEN_NETIF_EXTRA_TYPE_*`.
    pub const TYPE: usize = 0;
    /// `u8`, `XEN_NETIF_EXTRA_FLAG_*`.
    pub const FLAGS: usize = 1;
    /// `u.gso.size`, `u16`: maximum payload of each segment (the TCP MSS).
    pub const GSO_SIZE: usize = 2;
    /// `u.gso.type`, `u8`, `XEN_NETIF_GSO_TYPE_*`.
    pub const GSO_TYPE: usize = 4;
    /// `u.gso.pad`, `u8`.
    pub const GSO_PAD: usize = 5;
    /// `u.gso.features`, `u16`.
    pub const GSO_FEATURES: usize = 6;
    /// `u.mcast.addr`, 6 bytes.
    pub const MCAST_ADDR: usize = 2;
    /// `u.hash.type`, `u8`.
    pub const HASH_TYPE: usize = 2;
    /// `u.hash.algorithm`, `u8`.
    pub const HASH_ALGORITHM: usize = 3;
    /// `u.hash.value`, 4 bytes.
    pub const HASH_VALUE: usize = 4;
    pub const SIZE: usize = 8;
}

/// `union netif_tx_sring_entry`: a transmit slot holds a request or its response.
pub const NETIF_TX_SRING_ENTRY_SIZE: usize = netif_tx_request::SIZE;
/// `union netif_rx_sring_entry`: a receive slot holds a request or its response.
pub const NETIF_RX_SRING_ENTRY_SIZE: usize = netif_rx_request::SIZE;
/// Slots in a one-page transmit ring (`__CONST_RING_SIZE(netif_tx, XEN_PAGE_SIZE)`).
pub const NET_TX_RING_SIZE: usize =
    super::ring::const_ring_size(XEN_PAGE_SIZE, NETIF_TX_SRING_ENTRY_SIZE);
/// Slots in a one-page receive ring (`__CONST_RING_SIZE(netif_rx, XEN_PAGE_SIZE)`).
pub const NET_RX_RING_SIZE: usize =
    super::ring::const_ring_size(XEN_PAGE_SIZE, NETIF_RX_SRING_ENTRY_SIZE);

const _: () = {
    assert!(netif_tx_response::SIZE <= NETIF_TX_SRING_ENTRY_SIZE);
    assert!(netif_rx_response::SIZE <= NETIF_RX_SRING_ENTRY_SIZE);
    // Extra-info slots fit either ring.
    assert!(netif_extra_info::SIZE <= NETIF_TX_SRING_ENTRY_SIZE);
    assert!(netif_extra_info::SIZE <= NETIF_RX_SRING_ENTRY_SIZE);
    // Request ids are `u16`s naming a slot.
    assert!(NET_TX_RING_SIZE <= 1 << 16 && NET_RX_RING_SIZE <= 1 << 16);
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    // The C structs of netif.h, so the compiler lays them out as a C compiler does.
    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CTxRequest {
        gref: u32,
        offset: u16,
        flags: u16,
        id: u16,
        size: u16,
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CTxResponse {
        id: u16,
        status: i16,
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CRxRequest {
        id: u16,
        pad: u16,
        gref: u32,
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CRxResponse {
        id: u16,
        offset: u16,
        flags: u16,
        status: i16,
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[derive(Clone, Copy)]
    #[repr(C)]
    struct CGso {
        size: u16,
        kind: u8,
        pad: u8,
        features: u16,
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[derive(Clone, Copy)]
    #[repr(C)]
    struct CHash {
        kind: u8,
        algorithm: u8,
        value: [u8; 4],
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    union CExtraUnion {
        gso: CGso,
        mcast: [u8; 6],
        hash: CHash,
        pad: [u16; 3],
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CExtraInfo {
        kind: u8,
        flags: u8,
        u: CExtraUnion,
    }

    #[test]
    fn tx_request_matches_the_c_layout() {
        assert_eq!(netif_tx_request::GREF, offset_of!(CTxRequest, gref));
        assert_eq!(netif_tx_request::OFFSET, offset_of!(CTxRequest, offset));
        assert_eq!(netif_tx_request::FLAGS, offset_of!(CTxRequest, flags));
        assert_eq!(netif_tx_request::ID, offset_of!(CTxRequest, id));
        assert_eq!(netif_tx_request::SIZE_FIELD, offset_of!(CTxRequest, size));
        assert_eq!(netif_tx_request::SIZE, size_of::<CTxRequest>());
        assert_eq!(
            (
                netif_tx_request::GREF,
                netif_tx_request::OFFSET,
                netif_tx_request::FLAGS,
                netif_tx_request::ID,
                netif_tx_request::SIZE_FIELD,
                netif_tx_request::SIZE
            ),
            (0, 4, 6, 8, 10, 12)
        );
    }

    #[test]
    fn tx_response_matches_the_c_layout() {
        assert_eq!(netif_tx_response::ID, offset_of!(CTxResponse, id));
        assert_eq!(netif_tx_response::STATUS, offset_of!(CTxResponse, status));
        assert_eq!(netif_tx_response::SIZE, size_of::<CTxResponse>());
        assert_eq!(
            (
                netif_tx_response::ID,
                netif_tx_response::STATUS,
                netif_tx_response::SIZE
            ),
            (0, 2, 4)
        );
    }

    #[test]
    fn rx_request_matches_the_c_layout() {
        assert_eq!(netif_rx_request::ID, offset_of!(CRxRequest, id));
        assert_eq!(netif_rx_request::PAD, offset_of!(CRxRequest, pad));
        assert_eq!(netif_rx_request::GREF, offset_of!(CRxRequest, gref));
        assert_eq!(netif_rx_request::SIZE, size_of::<CRxRequest>());
        assert_eq!(
            (
                netif_rx_request::ID,
                netif_rx_request::PAD,
                netif_rx_request::GREF,
                netif_rx_request::SIZE
            ),
            (0, 2, 4, 8)
        );
    }

    #[test]
    fn rx_response_matches_the_c_layout() {
        assert_eq!(netif_rx_response::ID, offset_of!(CRxResponse, id));
        assert_eq!(netif_rx_response::OFFSET, offset_of!(CRxResponse, offset));
        assert_eq!(netif_rx_response::FLAGS, offset_of!(CRxResponse, flags));
        assert_eq!(netif_rx_response::STATUS, offset_of!(CRxResponse, status));
        assert_eq!(netif_rx_response::SIZE, size_of::<CRxResponse>());
        assert_eq!(
            (
                netif_rx_response::ID,
                netif_rx_response::OFFSET,
                netif_rx_response::FLAGS,
                netif_rx_response::STATUS,
                netif_rx_response::SIZE
            ),
            (0, 2, 4, 6, 8)
        );
    }

    #[test]
    fn extra_info_matches_the_c_layout() {
        let u = offset_of!(CExtraInfo, u);
        assert_eq!(netif_extra_info::TYPE, offset_of!(CExtraInfo, kind));
        assert_eq!(netif_extra_info::FLAGS, offset_of!(CExtraInfo, flags));
        assert_eq!(netif_extra_info::GSO_SIZE, u + offset_of!(CGso, size));
        assert_eq!(netif_extra_info::GSO_TYPE, u + offset_of!(CGso, kind));
        assert_eq!(netif_extra_info::GSO_PAD, u + offset_of!(CGso, pad));
        assert_eq!(
            netif_extra_info::GSO_FEATURES,
            u + offset_of!(CGso, features)
        );
        assert_eq!(netif_extra_info::MCAST_ADDR, u);
        assert_eq!(netif_extra_info::HASH_TYPE, u + offset_of!(CHash, kind));
        assert_eq!(
            netif_extra_info::HASH_ALGORITHM,
            u + offset_of!(CHash, algorithm)
        );
        assert_eq!(netif_extra_info::HASH_VALUE, u + offset_of!(CHash, value));
        assert_eq!(netif_extra_info::SIZE, size_of::<CExtraInfo>());
        assert_eq!(
            (
                netif_extra_info::GSO_SIZE,
                netif_extra_info::GSO_TYPE,
                netif_extra_info::GSO_FEATURES,
                netif_extra_info::SIZE
            ),
            (2, 4, 6, 8)
        );
    }

    #[test]
    fn flags_match_the_header() {
        assert_eq!(
            [
                NETTXF_CSUM_BLANK,
                NETTXF_DATA_VALIDATED,
                NETTXF_MORE_DATA,
                NETTXF_EXTRA_INFO
            ],
            [1, 2, 4, 8]
        );
        assert_eq!(
            [
                NETRXF_DATA_VALIDATED,
                NETRXF_CSUM_BLANK,
                NETRXF_MORE_DATA,
                NETRXF_EXTRA_INFO,
                NETRXF_GSO_PREFIX
            ],
            [1, 2, 4, 8, 16]
        );
        assert_eq!(XEN_NETIF_EXTRA_FLAG_MORE, 1);
    }

    #[test]
    fn numbers_match_the_header() {
        assert_eq!(
            [
                XEN_NETIF_EXTRA_TYPE_NONE,
                XEN_NETIF_EXTRA_TYPE_GSO,
                XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
                XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
                XEN_NETIF_EXTRA_TYPE_HASH,
                XEN_NETIF_EXTRA_TYPE_MAX
            ],
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            [
                XEN_NETIF_GSO_TYPE_NONE,
                XEN_NETIF_GSO_TYPE_TCPV4,
                XEN_NETIF_GSO_TYPE_TCPV6
            ],
            [0, 1, 2]
        );
        assert_eq!(
            [
                NETIF_RSP_DROPPED,
                NETIF_RSP_ERROR,
                NETIF_RSP_OKAY,
                NETIF_RSP_NULL
            ],
            [-2, -1, 0, 1]
        );
        assert_eq!(XEN_NETIF_NR_SLOTS_MIN, 18);
        assert_eq!(XEN_NETIF_MAX_TX_SIZE, 65535);
    }

    #[test]
    fn one_page_rings_hold_256_slots() {
        assert_eq!(NETIF_TX_SRING_ENTRY_SIZE, 12);
        assert_eq!(NETIF_RX_SRING_ENTRY_SIZE, 8);
        // (4096 - 64) / 12 = 336 and (4096 - 64) / 8 = 504 fit; both round down to 256.
        assert_eq!(NET_TX_RING_SIZE, 256);
        assert_eq!(NET_RX_RING_SIZE, 256);
    }
}
