//! `xen/include/public/grant_table.h`: grant tables (version 1) and `HYPERVISOR_grant_table_op`.
//!
//! A domain's grant table is an array of entries in frames it shares with Xen
//! (`GNTTABOP_setup_table`, or `XENMAPSPACE_grant_table` for a translated guest). Entry `ref`
//! says which domain may map or copy which of our frames; the reference is what a frontend
//! hands its backend. The guest writes `domid` and `frame`, then `flags`; Xen sets
//! `GTF_reading`/`GTF_writing` in `flags` while the grantee has the frame mapped, and checks
//! `flags` and `domid` together with one 32-bit compare-and-exchange, which is why the guest
//! must update them the same way.

use crate::{DomId, XEN_PAGE_SIZE};

/// `grant_ref_t`: an index into the granting domain's table.
pub type GrantRef = u32;
/// `grant_handle_t`: a mapping, as returned by `GNTTABOP_map_grant_ref`.
pub type GrantHandle = u32;

/// `struct grant_entry_v1` (8 bytes), in a page shared with Xen.
pub mod grant_entry_v1 {
    /// `u16`, `GTF_*`; written by the guest, `GTF_reading`/`GTF_writing` by Xen.
    pub const FLAGS: usize = 0;
    /// `domid_t`, the domain granted access.
    pub const DOMID: usize = 2;
    /// `u32`, the frame (GFN for a translated guest, MFN for PV) the grantee may access.
    pub const FRAME: usize = 4;
    pub const SIZE: usize = 8;
}

/// Version-1 entries per grant-table frame (Linux's `grefs_per_grant_frame`).
pub const GREFS_PER_GRANT_FRAME_V1: usize = XEN_PAGE_SIZE / grant_entry_v1::SIZE;

/// Entries kept across grant-table version changes and possibly filled in by the toolstack at
/// domain creation; a guest's allocator starts after them.
pub const GNTTAB_NR_RESERVED_ENTRIES: GrantRef = 8;
/// The console ring page, granted to the console backend by the toolstack.
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// The xenstore ring page, granted to xenstored by the toolstack.
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;

// Entry types, `flags & GTF_type_mask`.
/// The entry grants nothing.
pub const GTF_INVALID: u16 = 0;
/// `domid` may map or copy `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `domid` may transfer a frame to us; Xen writes its number to `frame`.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// `domid` may use another domain's grant as if it were ours (v2 entries only).
pub const GTF_TRANSITIVE: u16 = 3;
pub const GTF_TYPE_MASK: u16 = 3;

// Subflags of `GTF_permit_access` (and `GTF_transitive`).
/// The grantee may only map or copy for reading. Set by the guest.
pub const GTF_READONLY: u16 = 1 << 2;
/// The grantee has the frame mapped for reading. Set by Xen.
pub const GTF_READING: u16 = 1 << 3;
/// The grantee has the frame mapped for writing. Set by Xen.
pub const GTF_WRITING: u16 = 1 << 4;
/// x86 cache attributes for the grantee's mappings. Set by the guest.
pub const GTF_PWT: u16 = 1 << 5;
pub const GTF_PCD: u16 = 1 << 6;
pub const GTF_PAT: u16 = 1 << 7;
/// Only a byte range of the page, copy only (v2 entries). Set by the guest.
pub const GTF_SUB_PAGE: u16 = 1 << 8;

// Subflags of `GTF_accept_transfer`.
/// Xen is committed to the transfer; the guest must not touch the entry. Set by Xen.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// The transferred frame's number is in `frame`. Set by Xen.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

// `HYPERVISOR_grant_table_op` commands; the argument is an array of `count` structs.
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// Size our table and list its frames (PV); argument a [`GnttabSetupTable`].
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
pub const GNTTABOP_TRANSFER: u32 = 4;
pub const GNTTABOP_COPY: u32 = 5;
/// Current and maximum size of our table; argument a [`GnttabQuerySize`].
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
pub const GNTTABOP_SET_VERSION: u32 = 8;
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
pub const GNTTABOP_GET_VERSION: u32 = 10;
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

// `enum grant_status`, in the `status` field of each argument.
pub const GNTST_OKAY: i16 = 0;
pub const GNTST_GENERAL_ERROR: i16 = -1;
pub const GNTST_BAD_DOMAIN: i16 = -2;
pub const GNTST_BAD_GNTREF: i16 = -3;
pub const GNTST_BAD_HANDLE: i16 = -4;
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
pub const GNTST_PERMISSION_DENIED: i16 = -8;
pub const GNTST_BAD_PAGE: i16 = -9;
pub const GNTST_BAD_COPY_ARG: i16 = -10;
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
pub const GNTST_EAGAIN: i16 = -12;
pub const GNTST_NO_SPACE: i16 = -13;

/// `struct gnttab_setup_table`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetupTable {
    /// IN: usually `DOMID_SELF`.
    pub dom: DomId,
    /// IN: frames wanted (grows the table to at least this many).
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// IN: guest handle of an array of `nr_frames` `xen_pfn_t`, which Xen fills with the
    /// table's frames.
    pub frame_list: u64,
}

/// `struct gnttab_query_size`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabQuerySize {
    /// IN: usually `DOMID_SELF`.
    pub dom: DomId,
    /// OUT: frames the table has now.
    pub nr_frames: u32,
    /// OUT: frames it may grow to.
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<GnttabSetupTable>() == 24);
    assert!(offset_of!(GnttabSetupTable, nr_frames) == 4);
    assert!(offset_of!(GnttabSetupTable, status) == 8);
    assert!(offset_of!(GnttabSetupTable, frame_list) == 16);
    assert!(size_of::<GnttabQuerySize>() == 16);
    assert!(offset_of!(GnttabQuerySize, nr_frames) == 4);
    assert!(offset_of!(GnttabQuerySize, max_nr_frames) == 8);
    assert!(offset_of!(GnttabQuerySize, status) == 12);
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[allow(dead_code, reason = "layout mirror, never constructed")]
    #[repr(C)]
    struct CGrantEntryV1 {
        flags: u16,
        domid: u16,
        frame: u32,
    }

    #[test]
    fn entry_matches_the_c_layout() {
        assert_eq!(grant_entry_v1::FLAGS, offset_of!(CGrantEntryV1, flags));
        assert_eq!(grant_entry_v1::DOMID, offset_of!(CGrantEntryV1, domid));
        assert_eq!(grant_entry_v1::FRAME, offset_of!(CGrantEntryV1, frame));
        assert_eq!(grant_entry_v1::SIZE, size_of::<CGrantEntryV1>());
        assert_eq!(grant_entry_v1::SIZE, 8);
        assert_eq!(GREFS_PER_GRANT_FRAME_V1, 512);
        // Flags and domid share the 32-bit word Xen compares and exchanges.
        assert_eq!(grant_entry_v1::DOMID, grant_entry_v1::FLAGS + 2);
    }

    #[test]
    fn flags_match_the_header() {
        assert_eq!(
            (
                GTF_INVALID,
                GTF_PERMIT_ACCESS,
                GTF_ACCEPT_TRANSFER,
                GTF_TRANSITIVE,
                GTF_TYPE_MASK
            ),
            (0, 1, 2, 3, 3)
        );
        assert_eq!(
            (GTF_READONLY, GTF_READING, GTF_WRITING),
            (1 << 2, 1 << 3, 1 << 4)
        );
        assert_eq!(
            (GTF_PWT, GTF_PCD, GTF_PAT, GTF_SUB_PAGE),
            (32, 64, 128, 256)
        );
        assert_eq!((GTF_TRANSFER_COMMITTED, GTF_TRANSFER_COMPLETED), (4, 8));
        assert_eq!(GNTTAB_NR_RESERVED_ENTRIES, 8);
        assert_eq!((GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE), (0, 1));
    }

    #[test]
    fn commands_and_statuses_match_the_header() {
        assert_eq!(
            [
                GNTTABOP_MAP_GRANT_REF,
                GNTTABOP_UNMAP_GRANT_REF,
                GNTTABOP_SETUP_TABLE,
                GNTTABOP_DUMP_TABLE,
                GNTTABOP_TRANSFER,
                GNTTABOP_COPY,
                GNTTABOP_QUERY_SIZE,
                GNTTABOP_UNMAP_AND_REPLACE,
                GNTTABOP_SET_VERSION,
                GNTTABOP_GET_STATUS_FRAMES,
                GNTTABOP_GET_VERSION,
                GNTTABOP_SWAP_GRANT_REF,
                GNTTABOP_CACHE_FLUSH
            ],
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
        assert_eq!(
            (
                GNTST_OKAY,
                GNTST_GENERAL_ERROR,
                GNTST_PERMISSION_DENIED,
                GNTST_EAGAIN,
                GNTST_NO_SPACE
            ),
            (0, -1, -8, -12, -13)
        );
    }
}
