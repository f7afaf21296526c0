//! Our grant table, shared by every Xen frontend: set up on first use, then one
//! `ringbolt_xen_grant::GrantTable` behind an `Rc`.
//!
//! The frames live in pages of the kernel image reserved for them (`xen_grant_table` in
//! boot/src/entry.s): Xen PV gets the frames' machine numbers from `GNTTABOP_setup_table` and
//! maps them over those pages; Xen PVH has Xen put the frames at the pages' guest frames with
//! `XENMAPSPACE_grant_table` (the RAM that was there goes back to Xen). Either way the table is
//! one run of pages at a fixed address, which the platform sets up
//! (`Platform::map_grant_table`).

use alloc::rc::Rc;
use core::cell::RefCell;

use ringbolt_xen_abi::grant_table::GNTST_OKAY;
use ringbolt_xen_grant::{GrantError, GrantTable};
use x86_64::{PhysAddr, VirtAddr};

use super::XenError;
use crate::platform::platform;
use crate::shared_page::SharedPage;
use crate::single_cpu::SingleCpu;

/// Frames the table has: 2040 references past the reserved ones. The pages in entry.s must
/// match.
const FRAMES: usize = 4;

unsafe extern "C" {
    /// The .bss pages (boot/src/entry.s) replaced by the grant table's frames.
    static xen_grant_table: [u8; FRAMES * 4096];
}

pub(crate) type Table = Rc<RefCell<GrantTable<SharedPage>>>;

static TABLE: SingleCpu<Option<Table>> = SingleCpu::new(None);

/// Why the grant table could not be set up.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SetupError {
    /// The platform has no grant table (not Xen).
    Unsupported,
    /// A hypercall (`GNTTABOP_*` or its mapping) failed.
    Hypercall(&'static str, XenError),
    /// A `GNTTABOP_*` operation returned this `GNTST_*` status.
    Status(&'static str, i16),
    /// The mapped frames are unusable as a table.
    Table(GrantError),
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetupError::Unsupported => f.write_str("no grant table on this platform"),
            SetupError::Hypercall(op, e) => write!(f, "{op} failed: {e:?}"),
            SetupError::Status(op, status) => write!(f, "{op}: status {status}"),
            SetupError::Table(e) => write!(f, "{e}"),
        }
    }
}

/// The grant table, set up on the first call.
pub(crate) fn table() -> Result<Table, SetupError> {
    if let Some(table) = TABLE.with(|table| table.clone()) {
        return Ok(table);
    }
    let size = match super::gnttab_query_size() {
        Ok(size) if size.status == GNTST_OKAY => size,
        Ok(size) => return Err(SetupError::Status("query_size", size.status)),
        Err(e) => return Err(SetupError::Hypercall("query_size", e)),
    };
    let frames = FRAMES.min(size.max_nr_frames as usize);
    // Only the address is taken: the pages are never accessed as Rust data.
    let at = PhysAddr::new(&raw const xen_grant_table as u64);
    platform().map_grant_table(at, frames)?;
    let pages = SharedPage::mapped_pages(VirtAddr::new(at.as_u64()), frames);
    let table = GrantTable::new(pages).map_err(SetupError::Table)?;
    log::info!(
        "xen: grant table of {frames} frames ({} references free; Xen allows {} frames)",
        table.free_count(),
        size.max_nr_frames
    );
    let table = Rc::new(RefCell::new(table));
    TABLE.with(|slot| *slot = Some(table.clone()));
    Ok(table)
}
