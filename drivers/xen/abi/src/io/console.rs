//! `xen/include/public/io/console.h`: the PV console ring page, `struct xencons_interface`.
//!
//! Two byte rings on one page, each with free-running 32-bit indices that the producer and the
//! consumer advance and that are masked by the ring size (a power of two) to index it
//! (`MASK_XENCONS_IDX`). `in` carries input from the backend (xenconsoled) to us; `out` carries
//! our output to it.

/// `XENCONS_RING_IDX`.
pub type XenconsRingIdx = u32;

/// `char in[1024]`, backend to guest.
pub const IN: usize = 0;
pub const IN_SIZE: usize = 1024;
/// `char out[2048]`, guest to backend.
pub const OUT: usize = 1024;
pub const OUT_SIZE: usize = 2048;
/// `XENCONS_RING_IDX`, advanced by us as we read input.
pub const IN_CONS: usize = 3072;
/// `XENCONS_RING_IDX`, advanced by the backend as it writes input.
pub const IN_PROD: usize = 3076;
/// `XENCONS_RING_IDX`, advanced by the backend as it drains output.
pub const OUT_CONS: usize = 3080;
/// `XENCONS_RING_IDX`, advanced by us as we write output.
pub const OUT_PROD: usize = 3084;
/// `uint8_t`, `XENCONSOLE_CONNECTED` or `XENCONSOLE_DISCONNECTED`, set by the backend.
pub const CONNECTION: usize = 3088;
/// `sizeof(struct xencons_interface)`, tail padding included.
pub const SIZE: usize = 3092;

/// The backend services the ring. Zero, so a page from a backend that predates the flag reads
/// as connected.
pub const XENCONSOLE_CONNECTED: u8 = 0;
pub const XENCONSOLE_DISCONNECTED: u8 = 1;

const _: () = {
    assert!(IN_SIZE.is_power_of_two() && OUT_SIZE.is_power_of_two());
    assert!(IN + IN_SIZE == OUT && OUT + OUT_SIZE == IN_CONS);
    assert!(SIZE <= crate::XEN_PAGE_SIZE);
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[allow(dead_code, reason = "layout mirror, never constructed")]
    #[repr(C)]
    struct CXenconsInterface {
        r#in: [u8; 1024],
        out: [u8; 2048],
        in_cons: u32,
        in_prod: u32,
        out_cons: u32,
        out_prod: u32,
        connection: u8,
    }

    #[test]
    fn matches_the_c_layout() {
        assert_eq!(IN, offset_of!(CXenconsInterface, r#in));
        assert_eq!(OUT, offset_of!(CXenconsInterface, out));
        assert_eq!(IN_CONS, offset_of!(CXenconsInterface, in_cons));
        assert_eq!(IN_PROD, offset_of!(CXenconsInterface, in_prod));
        assert_eq!(OUT_CONS, offset_of!(CXenconsInterface, out_cons));
        assert_eq!(OUT_PROD, offset_of!(CXenconsInterface, out_prod));
        assert_eq!(CONNECTION, offset_of!(CXenconsInterface, connection));
        assert_eq!(SIZE, size_of::<CXenconsInterface>());
        assert_eq!(
            (IN_CONS, IN_PROD, OUT_CONS, OUT_PROD),
            (3072, 3076, 3080, 3084)
        );
    }
}
