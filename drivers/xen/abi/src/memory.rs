//! `xen/include/public/memory.h`: `HYPERVISOR_memory_op` commands and arguments.

use crate::DomId;

pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// Map a Xen-owned page (shared info, grant table) into our physical address space; argument
/// a [`XenAddToPhysmap`]. How an HVM/PVH guest gets its `shared_info`.
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// The guest's E820-style memory map; argument a [`XenMemoryMap`].
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// Where the read-only M2P table is mapped; argument a [`XenMachphysMapping`].
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;

// `xen_add_to_physmap.space`.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
pub const XENMAPSPACE_GMFN: u32 = 2;
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// ORed into `idx` with `XENMAPSPACE_grant_table` to map a status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `struct xen_add_to_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    /// Usually `DOMID_SELF`.
    pub domid: DomId,
    /// Pages, for `XENMAPSPACE_gmfn_range` only.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space (0 for the shared-info page).
    pub idx: u64,
    /// Guest frame at which the page should appear.
    pub gpfn: u64,
}

/// `struct xen_memory_map`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryMap {
    /// IN: capacity of `buffer` in entries; OUT: entries stored.
    pub nr_entries: u32,
    /// Guest handle of an array of 20-byte E820 entries (`u64` base, `u64` length, `u32` type).
    pub buffer: u64,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<XenAddToPhysmap>() == 24);
    assert!(offset_of!(XenAddToPhysmap, space) == 4);
    assert!(offset_of!(XenAddToPhysmap, idx) == 8 && offset_of!(XenAddToPhysmap, gpfn) == 16);
    assert!(size_of::<XenMemoryMap>() == 16 && offset_of!(XenMemoryMap, buffer) == 8);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_match_the_header() {
        assert_eq!(
            (
                XENMEM_ADD_TO_PHYSMAP,
                XENMEM_MEMORY_MAP,
                XENMAPSPACE_SHARED_INFO
            ),
            (7, 9, 0)
        );
        assert_eq!(XENMAPSPACE_GRANT_TABLE, 1);
    }
}

/// `struct xen_machphys_mapping`: the M2P table's virtual range and the largest machine frame
/// it covers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMachphysMapping {
    pub v_start: u64,
    pub v_end: u64,
    pub max_mfn: u64,
}

const _: () = assert!(core::mem::size_of::<XenMachphysMapping>() == 24);
