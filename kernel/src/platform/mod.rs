//! The platform boundary: everything that differs between the hypervisors Ringbolt boots on.
//!
//! One implementation is chosen at boot ([`install`]) and every other module reaches the machine
//! through [`platform()`]. Adding Xen PV, Xen PVH or Hyper-V means adding a module here that
//! implements [`Platform`]; nothing outside `platform/` changes.

use ringbolt_mm::PageSize;
use ringbolt_time::Instant;
use x86_64::PhysAddr;

use hermit_sync::OnceCell;

pub(crate) mod hvm;
pub(crate) mod pvh_vmm;
pub(crate) mod xen;
pub(crate) mod xen_pv;
pub(crate) mod xen_pvh;

/// How the VM ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// The app's `main` returned this code (0..=125).
    Code(u8),
    /// The kernel or the app panicked.
    Panic,
    /// The VM's owner asked for a reboot (Xen: `xl reboot`); the app was stopped cleanly.
    Reboot,
}

impl ExitStatus {
    /// The byte reported to the VMM: the app's code, or 127 for a panic. 126 and above are never
    /// app codes, so a harness can tell a panic from any exit.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Code(code) => code.min(125),
            ExitStatus::Reboot => 0,
            ExitStatus::Panic => 127,
        }
    }
}

/// Operations whose implementation depends on the hypervisor.
pub(crate) trait Platform: Sync {
    /// Short name printed by apps (`qemu-pvh`, `xen-pv`, ...).
    fn name(&self) -> &'static str;

    /// Writes console output; blocks until the bytes are accepted.
    fn console_write(&self, bytes: &[u8]);

    /// Monotonic time since boot.
    fn now(&self) -> Instant;

    /// Wall-clock time as nanoseconds since the Unix epoch, if the platform has a source.
    fn wall_clock_unix_nanos(&self) -> Option<u64>;

    /// Steps the wall clock to `unix_nanos` (a hypervisor's time service). Default: ignored,
    /// for platforms whose wall clock is the hypervisor's own (Xen's `shared_info`).
    fn set_wall_clock(&self, _unix_nanos: u64) {}

    /// Idles until an event arrives or `deadline` passes (`None`: only an event wakes).
    /// Called and returns with events masked; unmasks only for the wait itself, atomically.
    fn wait_for_event(&self, deadline: Option<Instant>);

    /// The loader's page tables, if the kernel must extend them in place instead of building
    /// its own and switching (Xen PV, where a new root would have to be validated and pinned
    /// whole). `None`: build new tables; the boot tables map the low 4 GiB meanwhile.
    fn boot_page_tables(&self) -> Option<BootPageTables>;

    /// The largest page the platform lets the kernel map (Xen PV: 4 KiB only).
    fn largest_page(&self) -> PageSize;

    /// Reads one page-table entry, with the frame address in the kernel's physical terms
    /// (Xen PV: translated from a machine frame through the M2P).
    fn read_pte(&self, table: PhysAddr, index: usize) -> u64;

    /// Writes one page-table entry given in the kernel's physical terms. Plain VMM and HVM: a
    /// store. Xen PV: `HYPERVISOR_mmu_update`, with the frame translated through the P2M.
    fn write_pte(&self, table: PhysAddr, index: usize, value: u64);

    /// Runs `writes`, letting the platform queue the page-table writes it makes and apply them
    /// together at the end (Xen PV: one `mmu_update` per few hundred entries instead of one
    /// each). Reads of a queued entry still see the new value. Default: no batching.
    fn batch_pte_writes(&self, writes: &mut dyn FnMut()) {
        writes();
    }

    /// Readies a zeroed, identity-mapped frame to become a page table (Xen PV: maps it
    /// read-only, as Xen requires of every page-table page).
    fn prepare_page_table(&self, frame: PhysAddr);

    /// Makes `root` the active top-level page table, and flushes the TLB.
    fn activate_page_table(&self, root: PhysAddr);

    /// The address of the last page fault (CR2; Xen PV: `vcpu_info.arch.cr2`).
    fn fault_address(&self) -> u64;

    /// Pages the platform shares with the hypervisor (console ring, ...) that the kernel's
    /// page tables must keep identity-mapped.
    fn shared_pages(&self) -> &[PhysAddr];

    /// Starts the platform's own tasks on the executor, before the app: the xenstore connection
    /// on Xen, the VMBus connection on Hyper-V. Default: none.
    fn start_services(&self, _executor: &ringbolt_executor::Handle) {}

    /// Xen: the frame number a backend is granted for our frame at `frame` (PV: its machine
    /// frame, through the P2M). Default: the guest frame itself, as Xen PVH translates it.
    fn grant_frame(&self, frame: PhysAddr) -> u64 {
        frame.as_u64() >> 12
    }

    /// Xen: sets our grant table up with `frames` frames and maps them, writable, over the
    /// identity-mapped pages from `at`, which are reserved for them (PV: `GNTTABOP_setup_table`,
    /// then each machine frame over its page; PVH: `XENMAPSPACE_grant_table` at the pages'
    /// guest frames). Default: there is no grant table.
    fn map_grant_table(
        &self,
        _at: PhysAddr,
        _frames: usize,
    ) -> Result<(), crate::xen::grant::SetupError> {
        Err(crate::xen::grant::SetupError::Unsupported)
    }

    /// Bring-up that needs the kernel's page tables and frame allocator: clock calibration,
    /// timers, pages the hypervisor shares. `facts` is what the entry read from boot memory
    /// before the boot page tables went away.
    fn init_after_memory(&self, facts: &BootFacts);

    /// Ends the VM; never returns.
    fn shutdown(&self, status: ExitStatus) -> !;
}

/// Page tables a loader left for the kernel to extend ([`Platform::boot_page_tables`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BootPageTables {
    /// The active top-level table.
    pub(crate) root: PhysAddr,
    /// Everything below this physical address is identity-mapped, writable, by them.
    pub(crate) mapped_end: u64,
}

/// What the entry gathers from loader memory for the platform's second stage.
#[derive(Debug, Default)]
pub(crate) struct BootFacts {
    /// How ACPI says to power off, if the VMM provides ACPI tables.
    pub(crate) acpi: Option<ringbolt_acpi::PowerControl>,
}

static PLATFORM: OnceCell<&'static dyn Platform> = OnceCell::new();

/// Selects the platform for the rest of the VM's life. Later calls are ignored.
pub(crate) fn install(platform: &'static dyn Platform) {
    let _ = PLATFORM.set(platform);
}

/// The platform, once [`install`]ed; `None` only in the first instructions after boot.
pub(crate) fn try_platform() -> Option<&'static dyn Platform> {
    PLATFORM.get().copied()
}

/// The installed platform.
///
/// # Panics
/// If called before [`install`]: a bug in the boot sequence.
pub(crate) fn platform() -> &'static dyn Platform {
    try_platform().expect("platform used before it was installed")
}
