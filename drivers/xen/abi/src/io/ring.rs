//! `xen/include/public/io/ring.h`: the shared request/response ring every split driver but the
//! console uses.
//!
//! One or more pages hold a 64-byte header (`struct NAME_sring` up to `ring`) followed by an
//! array of fixed-size entries, each a union of the protocol's request and response. The
//! frontend produces requests and consumes responses in the same slots; the four indices are
//! free-running [`RingIdx`]s, masked by the ring size (a power of two) only to address a slot.
//! The header's `pvt` union (netif's `smartpoll_active`, tapif's `msg`) is protocol-private
//! padding for every protocol this crate serves.

/// `RING_IDX`.
pub type RingIdx = u32;

/// The header of `struct NAME_sring` (`DEFINE_RING_TYPES`), as byte offsets.
pub mod sring {
    /// `RING_IDX`, advanced by the frontend as it publishes requests.
    pub const REQ_PROD: usize = 0;
    /// `RING_IDX`, set by the backend: notify it when `req_prod` passes this value.
    pub const REQ_EVENT: usize = 4;
    /// `RING_IDX`, advanced by the backend as it publishes responses.
    pub const RSP_PROD: usize = 8;
    /// `RING_IDX`, set by the frontend: notify it when `rsp_prod` passes this value.
    pub const RSP_EVENT: usize = 12;
    /// `union { ... } pvt`, 4 bytes, zeroed by `SHARED_RING_INIT`.
    pub const PVT: usize = 16;
    pub const PVT_SIZE: usize = 4;
    /// `uint8_t __pad[44]`, zeroed by `SHARED_RING_INIT`.
    pub const PAD: usize = 20;
    pub const PAD_SIZE: usize = 44;
    /// `union NAME_sring_entry ring[]`: entry `i` is at `RING + i * entry size`.
    pub const RING: usize = 64;
}

/// `__CONST_RING_SIZE`: the number of `entry_size`-byte entries a ring occupying `space` bytes
/// (header included) holds, rounded down to a power of two so an index can be masked. Zero if
/// not even one entry fits (or `entry_size` is zero).
pub const fn const_ring_size(space: usize, entry_size: usize) -> usize {
    if entry_size == 0 || space <= sring::RING {
        return 0;
    }
    let fits = (space - sring::RING) / entry_size;
    if fits == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - fits.leading_zeros())
    }
}

/// `SHARED_RING_INIT` sets both event indices to this: notify on the very first message.
pub const INITIAL_EVENT: RingIdx = 1;

const _: () = {
    assert!(sring::PVT + sring::PVT_SIZE == sring::PAD);
    assert!(sring::PAD + sring::PAD_SIZE == sring::RING);
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    // `DEFINE_RING_TYPES` for an 8-byte-aligned entry, as a C compiler lays it out.
    #[allow(dead_code, reason = "layout mirror, never constructed")]
    #[repr(C)]
    struct CSring {
        req_prod: u32,
        req_event: u32,
        rsp_prod: u32,
        rsp_event: u32,
        pvt: [u8; 4],
        pad: [u8; 44],
        ring: [u64; 1],
    }

    #[test]
    fn header_matches_the_c_layout() {
        assert_eq!(sring::REQ_PROD, offset_of!(CSring, req_prod));
        assert_eq!(sring::REQ_EVENT, offset_of!(CSring, req_event));
        assert_eq!(sring::RSP_PROD, offset_of!(CSring, rsp_prod));
        assert_eq!(sring::RSP_EVENT, offset_of!(CSring, rsp_event));
        assert_eq!(sring::PVT, offset_of!(CSring, pvt));
        assert_eq!(sring::PAD, offset_of!(CSring, pad));
        assert_eq!(sring::RING, offset_of!(CSring, ring));
        assert_eq!(size_of::<CSring>(), 72);
        assert_eq!(
            (
                sring::REQ_PROD,
                sring::REQ_EVENT,
                sring::RSP_PROD,
                sring::RSP_EVENT
            ),
            (0, 4, 8, 12)
        );
        assert_eq!(size_of::<RingIdx>(), 4);
    }

    #[test]
    fn ring_size_rounds_the_entries_that_fit_down_to_a_power_of_two() {
        // blkif: 112-byte entries, (4096 - 64) / 112 = 36 fit, 32 used.
        assert_eq!(const_ring_size(4096, 112), 32);
        // netif tx: 12-byte entries, 336 fit, 256 used.
        assert_eq!(const_ring_size(4096, 12), 256);
        // Two pages of blkif entries: 72 fit, 64 used.
        assert_eq!(const_ring_size(8192, 112), 64);
        // Exactly a power of two that fits.
        assert_eq!(const_ring_size(64 + 4 * 16, 16), 4);
        assert_eq!(const_ring_size(64 + 4 * 16 - 1, 16), 2);
        assert_eq!(const_ring_size(65, 1), 1);
        // Nothing fits.
        assert_eq!(const_ring_size(64, 1), 0);
        assert_eq!(const_ring_size(100, 40), 0);
        assert_eq!(const_ring_size(0, 8), 0);
        assert_eq!(const_ring_size(4096, 0), 0);
    }
}
