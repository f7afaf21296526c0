//! Xen's side of a grant table, for host tests: what `GNTTABOP_map_grant_ref` and
//! `GNTTABOP_unmap_grant_ref` do to the granting domain's entry when another domain maps one
//! of its references.
//!
//! As Xen's `_set_status_v1`: the entry must permit access to the mapping domain, a writable
//! mapping needs an entry without `GTF_readonly`, and the status bits are set with a
//! compare-and-exchange of the whole `flags`/`domid` word, so a granter ending access at the
//! same moment either sees the bits or makes the map fail. A mapping sets `GTF_reading`, and
//! `GTF_writing` too if writable; unmapping clears them. Xen counts mappings per entry; this
//! simulation allows one at a time, which is all a block or network backend needs.

use core::fmt;

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use ringbolt_xen_abi::DomId;
use ringbolt_xen_abi::grant_table::{
    GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_TYPE_MASK, GTF_WRITING, GrantRef,
    grant_entry_v1,
};

/// Why Xen refused a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The entry does not permit access to this domain (`GNTST_general_error`, "Bad
    /// flags/domid").
    NotPermitted { flags: u16, domid: DomId },
    /// A writable mapping of a read-only grant (`GNTST_permission_denied`).
    ReadOnly,
    /// The entry is already mapped (a limit of this simulation, not of Xen).
    Busy,
    /// The reference is past the end of the table (`GNTST_bad_gntref`).
    BadRef(OutOfBounds),
}

impl From<OutOfBounds> for MapError {
    fn from(e: OutOfBounds) -> Self {
        MapError::BadRef(e)
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::NotPermitted { flags, domid } => {
                write!(
                    f,
                    "entry flags {flags:#x} for domain {domid} permit no access"
                )
            }
            MapError::ReadOnly => write!(f, "writable mapping of a read-only grant"),
            MapError::Busy => write!(f, "entry already mapped"),
            MapError::BadRef(e) => write!(f, "bad grant reference: {e}"),
        }
    }
}

/// Maps `gref` of the table in `table` for domain `grantee`, writable if `write`. Returns the
/// granted frame.
pub fn map(
    table: &impl SharedMemory,
    gref: GrantRef,
    grantee: DomId,
    write: bool,
) -> Result<u32, MapError> {
    let offset = (gref as usize).saturating_mul(grant_entry_v1::SIZE);
    let mut word = table.read_u32(offset)?;
    loop {
        let (flags, domid) = (word as u16, (word >> 16) as u16);
        if flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS || domid != grantee {
            return Err(MapError::NotPermitted { flags, domid });
        }
        if write && flags & GTF_READONLY != 0 {
            return Err(MapError::ReadOnly);
        }
        if flags & (GTF_READING | GTF_WRITING) != 0 {
            return Err(MapError::Busy);
        }
        let status = GTF_READING | if write { GTF_WRITING } else { 0 };
        match table.compare_exchange_u32(offset, word, word | u32::from(status))? {
            Ok(_) => break,
            Err(found) => word = found,
        }
    }
    Ok(table.read_u32(offset + grant_entry_v1::FRAME)?)
}

/// Undoes [`map`]: clears the entry's `GTF_reading` and `GTF_writing`.
pub fn unmap(table: &impl SharedMemory, gref: GrantRef) -> Result<(), MapError> {
    let offset = (gref as usize).saturating_mul(grant_entry_v1::SIZE);
    let mut word = table.read_u32(offset)?;
    let status = u32::from(GTF_READING | GTF_WRITING);
    while let Err(found) = table.compare_exchange_u32(offset, word, word & !status)? {
        word = found;
    }
    Ok(())
}

/// What a backend's live mapping of an entry sets in its flags: Xen's `GTF_reading` and
/// `GTF_writing`.
const IN_USE: u16 = GTF_READING | GTF_WRITING;

/// Marks table entry `entry` in use by the backend, as a live mapping does, if it currently
/// permits access; without the checks of [`map`], for tests and fuzz targets that play a
/// backend holding pages at arbitrary moments.
pub fn hold(table: &impl SharedMemory, entry: usize) -> Result<(), OutOfBounds> {
    let at = entry.saturating_mul(grant_entry_v1::SIZE) + grant_entry_v1::FLAGS;
    let flags = table.read_u16(at)?;
    if flags & GTF_PERMIT_ACCESS != 0 {
        table.write_u16(at, flags | IN_USE)?;
    }
    Ok(())
}

/// Clears every entry's in-use bits, as a backend unmapping everything.
pub fn release_all(table: &impl SharedMemory) -> Result<(), OutOfBounds> {
    for entry in 0..table.len() / grant_entry_v1::SIZE {
        let at = entry * grant_entry_v1::SIZE + grant_entry_v1::FLAGS;
        let flags = table.read_u16(at)?;
        if flags & IN_USE != 0 {
            table.write_u16(at, flags & !IN_USE)?;
        }
    }
    Ok(())
}
