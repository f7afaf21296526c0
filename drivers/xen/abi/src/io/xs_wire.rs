//! `xen/include/public/io/xs_wire.h`: the xenstore wire protocol and its shared ring page.
//!
//! Every message, in either direction, is an [`xsd_sockmsg`] header followed by `len` payload
//! bytes, usually NUL-terminated strings (`docs/misc/xenstore.txt` gives each type's payload).
//! A domain reaches xenstored through one shared page, [`xenstore_domain_interface`]: two 1 KiB
//! byte rings with free-running 32-bit indices masked by [`XENSTORE_RING_SIZE`]
//! (`MASK_XENSTORE_IDX`), as `docs/misc/xenstore-ring.txt` describes. Messages are a byte
//! stream on those rings, not slots: one message may span several trips round a ring.

/// `XENSTORE_RING_IDX`.
pub type XenstoreRingIdx = u32;

// `enum xsd_sockmsg_type`: the `type` field of the header.
/// `XS_CONTROL` (formerly `XS_DEBUG`, still an alias): xenstore-control commands.
pub const XS_CONTROL: u32 = 0;
pub const XS_DEBUG: u32 = XS_CONTROL;
/// `<path>|` -> `<child-leaf-name>|*`.
pub const XS_DIRECTORY: u32 = 1;
/// `<path>|` -> `<value|>` (no terminating NUL).
pub const XS_READ: u32 = 2;
/// `<path>|` -> `<perm-as-string>|+`.
pub const XS_GET_PERMS: u32 = 3;
/// `<wpath>|<token>|` -> `OK|`, then one `XS_WATCH_EVENT` straight away.
pub const XS_WATCH: u32 = 4;
/// `<wpath>|<token>|` -> `OK|`.
pub const XS_UNWATCH: u32 = 5;
/// `|` -> `<transid>|` (unsigned decimal).
pub const XS_TRANSACTION_START: u32 = 6;
/// `T|` (commit) or `F|` (abort) -> `OK|`; a commit that raced other writes gets `EAGAIN`.
pub const XS_TRANSACTION_END: u32 = 7;
pub const XS_INTRODUCE: u32 = 8;
pub const XS_RELEASE: u32 = 9;
/// `<domid>|` -> `<path>|`.
pub const XS_GET_DOMAIN_PATH: u32 = 10;
/// `<path>|<value|>` -> `OK|`.
pub const XS_WRITE: u32 = 11;
/// `<path>|` -> `OK|`.
pub const XS_MKDIR: u32 = 12;
/// `<path>|` -> `OK|`, removing the subtree.
pub const XS_RM: u32 = 13;
pub const XS_SET_PERMS: u32 = 14;
/// Server to client only: `<epath>|<token>|`, with `req_id` and `tx_id` zero.
pub const XS_WATCH_EVENT: u32 = 15;
/// Server to client only: the reply to a failed request, `E<name>|` (see [`XSD_ERRORS`]).
pub const XS_ERROR: u32 = 16;
pub const XS_IS_DOMAIN_INTRODUCED: u32 = 17;
pub const XS_RESUME: u32 = 18;
pub const XS_SET_TARGET: u32 = 19;
// 20 was XS_RESTRICT, removed; the number is invalid.
/// `|`: drops every watch and transaction of the caller.
pub const XS_RESET_WATCHES: u32 = 21;
/// `<path>|<offset>` -> `<gencnt>|<child-leaf-name>|*`, for listings over the payload limit.
pub const XS_DIRECTORY_PART: u32 = 22;
pub const XS_GET_FEATURE: u32 = 23;
pub const XS_SET_FEATURE: u32 = 24;
pub const XS_GET_QUOTA: u32 = 25;
pub const XS_SET_QUOTA: u32 = 26;
/// `XS_TYPE_COUNT`: one past the last valid type.
pub const XS_TYPE_COUNT: u32 = 27;
/// Guaranteed never to be a valid type.
pub const XS_INVALID: u32 = 0xffff;

/// `xsd_errors`: the errno names an `XS_ERROR` reply may carry, as the strings on the wire
/// (errors travel by name, not number, because the two ends need not share errno values). New
/// names are only ever appended.
pub const XSD_ERRORS: [&str; 16] = [
    "EINVAL",
    "EACCES",
    "EEXIST",
    "EISDIR",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "EIO",
    "ENOTEMPTY",
    "ENOSYS",
    "EROFS",
    "EBUSY",
    "EAGAIN",
    "EISCONN",
    "E2BIG",
    "EPERM",
];

/// `struct xsd_sockmsg`, the header in front of every message (all fields `u32`,
/// little-endian on x86).
pub mod xsd_sockmsg {
    /// `XS_*`.
    pub const TYPE: usize = 0;
    /// Chosen by the client, echoed in the reply; zero in watch events.
    pub const REQ_ID: usize = 4;
    /// Transaction id, zero outside a transaction.
    pub const TX_ID: usize = 8;
    /// Payload bytes following the header, at most [`super::XENSTORE_PAYLOAD_MAX`].
    pub const LEN: usize = 12;
    pub const SIZE: usize = 16;
}

// `enum xs_watch_type`: field indices in a watch event's payload.
pub const XS_WATCH_PATH: usize = 0;
pub const XS_WATCH_TOKEN: usize = 1;

/// Bytes in each of the two rings.
pub const XENSTORE_RING_SIZE: usize = 1024;

/// `struct xenstore_domain_interface`, the store page.
pub mod xenstore_domain_interface {
    use super::XENSTORE_RING_SIZE;

    /// `char req[XENSTORE_RING_SIZE]`, requests to xenstored.
    pub const REQ: usize = 0;
    /// `char rsp[XENSTORE_RING_SIZE]`, replies and watch events from xenstored.
    pub const RSP: usize = REQ + XENSTORE_RING_SIZE;
    /// `XENSTORE_RING_IDX`, advanced by xenstored as it reads requests.
    pub const REQ_CONS: usize = 2048;
    /// `XENSTORE_RING_IDX`, advanced by us as we write requests.
    pub const REQ_PROD: usize = 2052;
    /// `XENSTORE_RING_IDX`, advanced by us as we read replies.
    pub const RSP_CONS: usize = 2056;
    /// `XENSTORE_RING_IDX`, advanced by xenstored as it writes replies.
    pub const RSP_PROD: usize = 2060;
    /// `uint32_t`, `XENSTORE_SERVER_FEATURE_*` bits; set by the server, never cleared.
    pub const SERVER_FEATURES: usize = 2064;
    /// `uint32_t`, `XENSTORE_CONNECTED` or `XENSTORE_RECONNECT`; meaningful only with
    /// `XENSTORE_SERVER_FEATURE_RECONNECTION`.
    pub const CONNECTION: usize = 2068;
    /// `uint32_t`, `XENSTORE_ERROR_*`; meaningful only with `XENSTORE_SERVER_FEATURE_ERROR`.
    pub const ERROR: usize = 2072;
    /// `uint32_t`, the event channel for xenstored to signal, filled in by Xen for dom0less
    /// domains; zero means "use the one from `XS_INTRODUCE`".
    pub const EVTCHN_PORT: usize = 2076;
    pub const SIZE: usize = 2080;
}

/// Longest payload in either direction. A client that sends more has its connection killed
/// by xenstored; a reply that claims more is not a reply we can frame.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Longest absolute path xenstored accepts (longer gets an error reply).
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Longest path relative to `/local/domain/<domid>` a client should send.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

// `server_features` bits.
/// The guest may ask for a ring reset through `connection`.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// The `error` field is present.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `XS_WATCH` takes a third, depth, parameter.
pub const XENSTORE_SERVER_FEATURE_WATCHDEPTH: u32 = 4;
/// Node permissions may name `DOMID_ANY`.
pub const XENSTORE_SERVER_FEATURE_DOMID_ANY: u32 = 8;

// `connection` values.
/// The steady state.
pub const XENSTORE_CONNECTED: u32 = 0;
/// A ring reset is in progress: ignore every other field until the server writes
/// `XENSTORE_CONNECTED` back.
pub const XENSTORE_RECONNECT: u32 = 1;

// `error` values: any non-zero value means the server stopped serving the ring; new values may
// appear without a feature bit.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// The event channel does not work.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// Inconsistent producer or consumer index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// Protocol violation (a payload over [`XENSTORE_PAYLOAD_MAX`]).
pub const XENSTORE_ERROR_PROTO: u32 = 3;

const _: () = {
    use xenstore_domain_interface as xdi;
    assert!(XENSTORE_RING_SIZE.is_power_of_two());
    assert!(xdi::RSP + XENSTORE_RING_SIZE == xdi::REQ_CONS);
    assert!(xdi::SIZE <= crate::XEN_PAGE_SIZE);
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    // The C structs, transcribed from xs_wire.h, so the compiler lays them out as a C compiler
    // does.
    #[allow(dead_code, reason = "layout mirror, never constructed")]
    #[repr(C)]
    struct CXsdSockmsg {
        r#type: u32,
        req_id: u32,
        tx_id: u32,
        len: u32,
    }

    #[allow(dead_code, reason = "layout mirror, never constructed")]
    #[repr(C)]
    struct CXenstoreDomainInterface {
        req: [u8; XENSTORE_RING_SIZE],
        rsp: [u8; XENSTORE_RING_SIZE],
        req_cons: u32,
        req_prod: u32,
        rsp_cons: u32,
        rsp_prod: u32,
        server_features: u32,
        connection: u32,
        error: u32,
        evtchn_port: u32,
    }

    #[test]
    fn header_matches_the_c_layout() {
        assert_eq!(xsd_sockmsg::TYPE, offset_of!(CXsdSockmsg, r#type));
        assert_eq!(xsd_sockmsg::REQ_ID, offset_of!(CXsdSockmsg, req_id));
        assert_eq!(xsd_sockmsg::TX_ID, offset_of!(CXsdSockmsg, tx_id));
        assert_eq!(xsd_sockmsg::LEN, offset_of!(CXsdSockmsg, len));
        assert_eq!(xsd_sockmsg::SIZE, size_of::<CXsdSockmsg>());
        assert_eq!(xsd_sockmsg::SIZE, 16);
    }

    #[test]
    fn page_matches_the_c_layout() {
        use xenstore_domain_interface as xdi;
        type C = CXenstoreDomainInterface;
        assert_eq!(xdi::REQ, offset_of!(C, req));
        assert_eq!(xdi::RSP, offset_of!(C, rsp));
        assert_eq!(xdi::REQ_CONS, offset_of!(C, req_cons));
        assert_eq!(xdi::REQ_PROD, offset_of!(C, req_prod));
        assert_eq!(xdi::RSP_CONS, offset_of!(C, rsp_cons));
        assert_eq!(xdi::RSP_PROD, offset_of!(C, rsp_prod));
        assert_eq!(xdi::SERVER_FEATURES, offset_of!(C, server_features));
        assert_eq!(xdi::CONNECTION, offset_of!(C, connection));
        assert_eq!(xdi::ERROR, offset_of!(C, error));
        assert_eq!(xdi::EVTCHN_PORT, offset_of!(C, evtchn_port));
        assert_eq!(xdi::SIZE, size_of::<C>());
        // docs/misc/xenstore-ring.txt's table.
        assert_eq!(
            (
                xdi::REQ,
                xdi::RSP,
                xdi::REQ_CONS,
                xdi::REQ_PROD,
                xdi::RSP_CONS,
                xdi::RSP_PROD,
                xdi::SERVER_FEATURES,
                xdi::CONNECTION,
                xdi::ERROR
            ),
            (0, 1024, 2048, 2052, 2056, 2060, 2064, 2068, 2072)
        );
    }

    #[test]
    fn message_types_are_the_headers_numbers() {
        assert_eq!((XS_CONTROL, XS_DEBUG), (0, 0));
        assert_eq!(
            [
                XS_DIRECTORY,
                XS_READ,
                XS_GET_PERMS,
                XS_WATCH,
                XS_UNWATCH,
                XS_TRANSACTION_START,
                XS_TRANSACTION_END,
                XS_INTRODUCE,
                XS_RELEASE,
                XS_GET_DOMAIN_PATH,
                XS_WRITE,
                XS_MKDIR,
                XS_RM,
                XS_SET_PERMS,
                XS_WATCH_EVENT,
                XS_ERROR,
                XS_IS_DOMAIN_INTRODUCED,
                XS_RESUME,
                XS_SET_TARGET,
            ],
            [
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19
            ]
        );
        // 20 (XS_RESTRICT) is gone; the numbering resumes at XS_SET_TARGET + 2.
        assert_eq!(XS_RESET_WATCHES, XS_SET_TARGET + 2);
        assert_eq!(
            [
                XS_RESET_WATCHES,
                XS_DIRECTORY_PART,
                XS_GET_FEATURE,
                XS_SET_FEATURE,
                XS_GET_QUOTA,
                XS_SET_QUOTA,
                XS_TYPE_COUNT,
            ],
            [21, 22, 23, 24, 25, 26, 27]
        );
        assert_eq!(XS_INVALID, 0xffff);
        assert_eq!((XS_WATCH_PATH, XS_WATCH_TOKEN), (0, 1));
    }

    #[test]
    fn error_table_is_the_headers_in_order() {
        assert_eq!(XSD_ERRORS[0], "EINVAL");
        assert_eq!(XSD_ERRORS[4], "ENOENT");
        assert_eq!(XSD_ERRORS[12], "EAGAIN");
        assert_eq!(XSD_ERRORS[14], "E2BIG");
        assert_eq!(XSD_ERRORS[15], "EPERM");
        for (i, name) in XSD_ERRORS.iter().enumerate() {
            assert!(name.starts_with('E') && name.is_ascii(), "{name}");
            assert!(!XSD_ERRORS[..i].contains(name), "{name} twice");
        }
    }

    #[test]
    fn limits_and_flags_are_the_headers_numbers() {
        assert_eq!(XENSTORE_RING_SIZE, 1024);
        assert_eq!(XENSTORE_PAYLOAD_MAX, 4096);
        assert_eq!(XENSTORE_ABS_PATH_MAX, 3072);
        assert_eq!(XENSTORE_REL_PATH_MAX, 2048);
        assert_eq!(
            [
                XENSTORE_SERVER_FEATURE_RECONNECTION,
                XENSTORE_SERVER_FEATURE_ERROR,
                XENSTORE_SERVER_FEATURE_WATCHDEPTH,
                XENSTORE_SERVER_FEATURE_DOMID_ANY
            ],
            [1, 2, 4, 8]
        );
        assert_eq!((XENSTORE_CONNECTED, XENSTORE_RECONNECT), (0, 1));
        assert_eq!(
            [
                XENSTORE_ERROR_NONE,
                XENSTORE_ERROR_COMM,
                XENSTORE_ERROR_RINGIDX,
                XENSTORE_ERROR_PROTO
            ],
            [0, 1, 2, 3]
        );
    }
}
