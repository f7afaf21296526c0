//! Xen PV: the kernel runs in ring 3 on page tables Xen validates, with no virtual hardware.
//!
//! Memory: pseudo-physical frames (what the kernel calls physical) are backed by machine
//! frames listed in the P2M (`start_info.mfn_list`); page-table entries hold machine frames, so
//! [`Platform::read_pte`] translates back through Xen's read-only M2P and
//! [`Platform::write_pte`] forward through the P2M, and writes with `HYPERVISOR_mmu_update`.
//! The loader's bootstrap tables stay the kernel's tables: they are extended in place, 4 KiB
//! pages only, and every page-table page is mapped read-only first.
//!
//! Console: the PV console ring from `start_info` (a domU); dom0 writes Xen's console with
//! `console_io`. Clock: pvclock in `shared_info`, which Xen gives as a machine address and the
//! kernel maps over a page of its own .bss. Timer: `VCPUOP_set_singleshot_timer`, delivered as
//! `VIRQ_TIMER` on an event channel. Idle: `SCHEDOP_block` (see [`wait_for_event`]). Traps:
//! `set_trap_table` with stubs for Xen's frame (`traps::init_xen_pv`); CR2 from `vcpu_info`.
//!
//! [`wait_for_event`]: Platform::wait_for_event

use hermit_sync::{OnceCell, SpinMutex};
use ringbolt_boot::xen_start_info::{SIF_INITDOMAIN, XenConsole as StartInfoConsole, XenPvInfo};
use ringbolt_mm::PageSize;
use ringbolt_shmem::SharedMemory;
use ringbolt_time::Instant;
use ringbolt_xen_abi::arch_x86::arch_vcpu_info;
use ringbolt_xen_abi::grant_table::GNTST_OKAY;
use ringbolt_xen_abi::xen::{
    MMU_NORMAL_PT_UPDATE, MMUEXT_TLB_FLUSH_LOCAL, MmuUpdate, MmuextOp, UVMF_INVLPG, VIRQ_TIMER,
    vcpu_info,
};
use ringbolt_xen_evtchn::{set_upcall_mask, vcpu_info_offset};
use x86_64::structures::paging::PageTableFlags;
use x86_64::{PhysAddr, VirtAddr};

use super::xen::{SharedPages, XenClock, XenConsole};
use super::{BootFacts, BootPageTables, ExitStatus, Platform, hvm};
use crate::shared_page::SharedPage;
use crate::xen::store::StoreRing;
use crate::xen::{self, events, grant};

/// Bits 12..52 of a page-table entry: the frame.
const FRAME_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE_SHIFT: u32 = 12;

unsafe extern "C" {
    /// The .bss page (boot/src/entry.s) whose virtual address `shared_info` is mapped at.
    static xen_pv_shared_info: [u8; 4096];
}

/// The pseudo-physical to machine frame list the domain builder wrote.
struct P2m {
    mfns: &'static [u64],
}

impl P2m {
    fn mfn(&self, pfn: u64) -> Option<u64> {
        self.mfns.get(usize::try_from(pfn).ok()?).copied()
    }
}

/// Xen's read-only machine-to-pseudo-physical table, mapped into every PV guest.
struct M2p {
    base: u64,
    entries: u64,
}

impl M2p {
    fn find() -> Option<Self> {
        let mapping = xen::machphys_mapping().ok()?;
        let span = mapping.v_end.checked_sub(mapping.v_start)? / 8;
        Some(M2p {
            base: mapping.v_start,
            entries: span.min(mapping.max_mfn.saturating_add(1)),
        })
    }

    /// The M2P entry for `mfn`. Only machine frames of RAM (our own pages, Xen's
    /// `shared_info`) are ever looked up; the table covers all of them.
    fn entry(&self, mfn: u64) -> Option<u64> {
        if mfn >= self.entries {
            return None;
        }
        // SAFETY: XENMEM_machphys_mapping reported the table mapped read-only at
        // [base, base + entries * 8) in our address space; mfn < entries keeps the 8-byte,
        // aligned read inside it. Xen updates entries only for frames changing owner, which
        // ours do not.
        Some(unsafe { core::ptr::read_volatile((self.base + mfn * 8) as *const u64) })
    }
}

/// Page-table writes a batch holds at most before applying them.
const PTE_BATCH: usize = 256;
/// Distinct tables a batch may have writes queued for (an identity-map step writes one leaf
/// table and links it into one directory).
const BATCH_TABLES: usize = 4;

/// Page-table writes queued by [`Platform::batch_pte_writes`].
struct PteBatch {
    open: bool,
    len: usize,
    requests: [MmuUpdate; PTE_BATCH],
    /// Which entries of which tables have queued writes, so that reading one flushes first
    /// (a bit per entry: the check runs on every page-table read).
    tables: [(PhysAddr, [u64; 8]); BATCH_TABLES],
    table_count: usize,
}

impl PteBatch {
    const fn new() -> Self {
        PteBatch {
            open: false,
            len: 0,
            requests: [MmuUpdate { ptr: 0, val: 0 }; PTE_BATCH],
            tables: [(PhysAddr::zero(), [0; 8]); BATCH_TABLES],
            table_count: 0,
        }
    }

    fn push(&mut self, table: PhysAddr, index: usize, request: MmuUpdate) {
        let known = self.tables[..self.table_count]
            .iter()
            .any(|&(queued, _)| queued == table);
        if self.len == PTE_BATCH || (!known && self.table_count == BATCH_TABLES) {
            self.flush();
        }
        let slot = match self.tables[..self.table_count]
            .iter()
            .position(|&(queued, _)| queued == table)
        {
            Some(slot) => slot,
            None => {
                self.tables[self.table_count] = (table, [0; 8]);
                self.table_count += 1;
                self.table_count - 1
            }
        };
        self.tables[slot].1[index / 64] |= 1 << (index % 64);
        self.requests[self.len] = request;
        self.len += 1;
    }

    fn flush(&mut self) {
        apply(&self.requests[..self.len]);
        self.len = 0;
        self.table_count = 0;
    }

    fn flush_if_queued(&mut self, table: PhysAddr, index: usize) {
        let queued = self.tables[..self.table_count]
            .iter()
            .any(|&(queued, bits)| queued == table && bits[index / 64] & 1 << (index % 64) != 0);
        if queued {
            self.flush();
        }
    }
}

/// Applies page-table updates with `HYPERVISOR_mmu_update`; a refusal is a kernel bug.
fn apply(requests: &[MmuUpdate]) {
    if requests.is_empty() {
        return;
    }
    // SAFETY: every request writes an entry of one of our page tables (the mapper only passes
    // its own) mapping a frame of ours as the mapper was asked to; Xen validates the rest.
    if let Err(e) = unsafe { xen::mmu_update(requests) } {
        panic!(
            "xen-pv: mmu_update of {} entries refused: {e:?}",
            requests.len()
        );
    }
}

pub(crate) struct XenPv {
    batch: SpinMutex<PteBatch>,
    console: XenConsole,
    /// The console and store rings' pages, for a domU (in RAM; `memory` reserves them).
    shared: SharedPages,
    store: Option<StoreRing>,
    clock: XenClock,
    p2m: P2m,
    m2p: Option<M2p>,
    boot_tables: BootPageTables,
    dom0: bool,
    shared_info_maddr: u64,
}

static XEN_PV: OnceCell<XenPv> = OnceCell::new();

/// Sets up the console and the frame translations from `start_info` (already checked).
pub(crate) fn init(tsc_at_entry: u64, info: &XenPvInfo) -> &'static XenPv {
    XEN_PV.get_or_init(|| {
        let nr_pages = usize::try_from(info.nr_pages).expect("nr_pages fits the address space");
        // SAFETY: the start-of-day layout (xen.h) maps the P2M list read-write at `mfn_list`
        // for `nr_pages` entries (the start_info parser proved the range does not overflow);
        // `memory::init` reserves those frames and keeps them identity-mapped, and nothing
        // writes them (no ballooning), so a shared slice stays valid and unchanging.
        let mfns = unsafe { core::slice::from_raw_parts(info.mfn_list as *const u64, nr_pages) };
        let mut platform = XenPv {
            batch: SpinMutex::new(PteBatch::new()),
            console: XenConsole::new(None, console_io_write),
            shared: SharedPages::default(),
            store: None,
            clock: XenClock::new(tsc_at_entry),
            p2m: P2m { mfns },
            m2p: M2p::find(),
            boot_tables: BootPageTables {
                root: PhysAddr::new(info.pt_base),
                mapped_end: info.bootstrap_end(),
            },
            dom0: info.flags & SIF_INITDOMAIN != 0,
            shared_info_maddr: info.shared_info_maddr,
        };
        if let StartInfoConsole::DomU(Some(ring)) = info.console
            && let Some(page) = platform.ring_page(ring.mfn)
        {
            platform.shared.push(page);
            platform.console = XenConsole::new(Some((page, ring.evtchn)), console_io_write);
        }
        if let Some(ring) = info.store
            && let Some(page) = platform.ring_page(ring.mfn)
        {
            platform.shared.push(page);
            platform.store = Some(StoreRing {
                page,
                port: ring.evtchn,
            });
        }
        platform
    })
}

/// Maps machine frame `mfn` (one Xen shares with us) writable, not executable, at `va`.
///
/// # Safety
/// The page at `va` must be reserved for this mapping: whatever it mapped before is no longer
/// reachable there.
unsafe fn map_machine_frame(va: u64, mfn: u64) -> Result<i64, xen::XenError> {
    let entry = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    // SAFETY: the caller gave up the page at `va`; Xen checks that we may map `mfn`.
    unsafe {
        xen::update_va_mapping(
            va,
            (mfn << PAGE_SHIFT) & FRAME_MASK | entry.bits(),
            UVMF_INVLPG,
        )
    }
}

/// Xen's console: a dom0 may write it; Debian's Xen refuses a domU (then nothing shows).
fn console_io_write(bytes: &[u8]) {
    let _ = xen::console_io_write(bytes);
}

impl XenPv {
    fn pfn_to_mfn(&self, pfn: u64) -> u64 {
        self.p2m
            .mfn(pfn)
            .unwrap_or_else(|| panic!("xen-pv: pseudo-physical frame {pfn:#x} past the P2M"))
    }

    /// The pseudo-physical frame of `mfn`, if it is one of ours (the P2M maps it back).
    fn mfn_to_pfn(&self, mfn: u64) -> Option<u64> {
        let pfn = self.m2p.as_ref()?.entry(mfn)?;
        (self.p2m.mfn(pfn) == Some(mfn)).then_some(pfn)
    }

    /// Where a ring page start_info names by machine frame sits in our memory.
    fn ring_page(&self, mfn: u64) -> Option<PhysAddr> {
        let page = self
            .mfn_to_pfn(mfn)
            .map(|pfn| PhysAddr::new(pfn << PAGE_SHIFT));
        if page.is_none() {
            log::warn!("xen-pv: ring page mfn {mfn:#x} is not ours");
        }
        page
    }

    fn vcpu0_info(&self) -> usize {
        vcpu_info_offset(0).expect("vCPU 0 has a vcpu_info")
    }
}

impl Platform for XenPv {
    fn name(&self) -> &'static str {
        "xen-pv"
    }

    super::xen::xen_common_methods!();

    /// Arms the one-shot timer (or stops it), then `SCHEDOP_block`, which unmasks event upcalls
    /// and sleeps unless an event is already pending. An upcall delivered on the way back only
    /// masks events again (`traps::init_xen_pv`); here events are masked (in case none was
    /// delivered) and every pending port is consumed and dispatched, so the next block sleeps.
    fn wait_for_event(&self, deadline: Option<Instant>) {
        let Some(shared_info) = self.clock.shared_info() else {
            return;
        };
        let armed = match deadline {
            Some(deadline) if deadline <= self.now() => return,
            Some(deadline) => self
                .clock
                .system_time_of(deadline)
                .map(xen::set_singleshot_timer),
            None => Some(xen::stop_timer(false)),
        };
        if let Some(Err(e)) = armed {
            log::error!("xen-pv: timer hypercall failed: {e:?}");
        }
        let _ = xen::sched_block();
        if let Err(e) = set_upcall_mask(shared_info, self.vcpu0_info(), true) {
            log::error!("xen-pv: vcpu_info unwritable: {e}");
        }
        events::dispatch(shared_info);
    }

    fn boot_page_tables(&self) -> Option<BootPageTables> {
        Some(self.boot_tables)
    }

    fn largest_page(&self) -> PageSize {
        PageSize::Size4K
    }

    fn read_pte(&self, table: PhysAddr, index: usize) -> u64 {
        self.batch.lock().flush_if_queued(table, index);
        let entry = hvm::read_pte(table, index);
        if entry & PageTableFlags::PRESENT.bits() == 0 {
            return entry;
        }
        // A frame that is not ours (a foreign mapping such as shared_info) keeps its machine
        // address: the mapper only follows table entries, which are always ours.
        match self.mfn_to_pfn((entry & FRAME_MASK) >> PAGE_SHIFT) {
            Some(pfn) => (entry & !FRAME_MASK) | pfn << PAGE_SHIFT,
            None => entry,
        }
    }

    fn write_pte(&self, table: PhysAddr, index: usize, value: u64) {
        assert!(index < 512, "page-table index {index} out of range");
        let table_mfn = self.pfn_to_mfn(table.as_u64() >> PAGE_SHIFT);
        let machine_value = if value & PageTableFlags::PRESENT.bits() == 0 {
            value
        } else {
            let mfn = self.pfn_to_mfn((value & FRAME_MASK) >> PAGE_SHIFT);
            (value & !FRAME_MASK) | mfn << PAGE_SHIFT
        };
        let request = MmuUpdate {
            ptr: ((table_mfn << PAGE_SHIFT) + index as u64 * 8) | MMU_NORMAL_PT_UPDATE,
            val: machine_value,
        };
        let mut batch = self.batch.lock();
        if batch.open {
            batch.push(table, index, request);
        } else {
            apply(&[request]);
        }
    }

    fn batch_pte_writes(&self, writes: &mut dyn FnMut()) {
        self.batch.lock().open = true;
        writes();
        let mut batch = self.batch.lock();
        batch.flush();
        batch.open = false;
    }

    fn prepare_page_table(&self, frame: PhysAddr) {
        let mfn = self.pfn_to_mfn(frame.as_u64() >> PAGE_SHIFT);
        let read_only = PageTableFlags::PRESENT | PageTableFlags::NO_EXECUTE;
        // SAFETY: `frame` is a fresh page-table frame mapped only by the identity map; mapping
        // it read-only there takes nothing away from code that uses it.
        let result = unsafe {
            xen::update_va_mapping(
                frame.as_u64(),
                mfn << PAGE_SHIFT | read_only.bits(),
                UVMF_INVLPG,
            )
        };
        if let Err(e) = result {
            panic!("xen-pv: cannot map page table {frame:?} read-only: {e:?}");
        }
    }

    fn activate_page_table(&self, root: PhysAddr) {
        assert_eq!(
            root, self.boot_tables.root,
            "xen-pv keeps the bootstrap page tables"
        );
        // The tables are live already; only entries the kernel removed may linger in the TLB.
        let flush = MmuextOp {
            cmd: MMUEXT_TLB_FLUSH_LOCAL,
            ..MmuextOp::default()
        };
        // SAFETY: a TLB flush changes no mapping.
        if let Err(e) = unsafe { xen::mmuext_op(flush) } {
            panic!("xen-pv: TLB flush refused: {e:?}");
        }
    }

    fn fault_address(&self) -> u64 {
        let offset = self.vcpu0_info() + vcpu_info::ARCH + arch_vcpu_info::CR2;
        self.clock
            .shared_info()
            .and_then(|page| page.read_u64(offset).ok())
            .unwrap_or(0)
    }

    fn init_after_memory(&self, _facts: &BootFacts) {
        log::info!(
            "xen: PV {}, P2M of {} frames",
            if self.dom0 { "dom0" } else { "domU" },
            self.p2m.mfns.len()
        );
        // Only the address is taken: the page is never accessed as Rust data.
        let va = &raw const xen_pv_shared_info as u64;
        // SAFETY: the .bss page exists only to be replaced by this mapping; nothing else
        // refers to it.
        let mapped = unsafe { map_machine_frame(va, self.shared_info_maddr >> PAGE_SHIFT) };
        if let Err(e) = mapped {
            panic!("xen-pv: cannot map shared_info: {e:?}");
        }
        let shared_info = SharedPage::mapped_at(VirtAddr::new(va));
        if let Err(e) = set_upcall_mask(&shared_info, self.vcpu0_info(), true) {
            panic!("xen-pv: vcpu_info unwritable: {e}");
        }
        self.clock.start(shared_info);
        // Tickless: only the one-shot timer wakes the idle loop.
        if let Err(e) = xen::stop_timer(true) {
            log::warn!("xen-pv: periodic timer still running: {e:?}");
        }
        match xen::bind_virq(VIRQ_TIMER) {
            Ok(port) => log::debug!("xen-pv: VIRQ_TIMER on port {port}"),
            Err(e) => panic!("xen-pv: cannot bind VIRQ_TIMER: {e:?}"),
        }
    }

    fn grant_frame(&self, frame: PhysAddr) -> u64 {
        self.pfn_to_mfn(frame.as_u64() >> PAGE_SHIFT)
    }

    fn map_grant_table(&self, at: PhysAddr, frames: usize) -> Result<(), grant::SetupError> {
        let mut mfns = alloc::vec![0; frames];
        match xen::gnttab_setup_table(&mut mfns) {
            Ok(GNTST_OKAY) => {}
            Ok(status) => return Err(grant::SetupError::Status("setup_table", status)),
            Err(e) => return Err(grant::SetupError::Hypercall("setup_table", e)),
        }
        for (page, mfn) in (at.as_u64()..).step_by(1 << PAGE_SHIFT).zip(mfns) {
            // SAFETY: the caller reserved the pages from `at` for the grant table; nothing else
            // uses them.
            unsafe { map_machine_frame(page, mfn) }
                .map_err(|e| grant::SetupError::Hypercall("update_va_mapping", e))?;
        }
        Ok(())
    }

    fn shutdown(&self, status: ExitStatus) -> ! {
        let result = super::xen::shutdown(status);
        let _ = xen::console_io_write(b"ringbolt: SCHEDOP_shutdown returned\n");
        let _ = result;
        loop {
            core::hint::spin_loop();
        }
    }
}
