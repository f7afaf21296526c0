//! PVH under Xen: the PVH entry with Xen's paravirtual devices instead of PC hardware.
//!
//! Console: the PV console ring (HVM params `CONSOLE_PFN`/`CONSOLE_EVTCHN`), with Xen's debug
//! port 0xe9 until the ring is found. Clock: pvclock from `shared_info` (mapped with
//! `XENMEM_add_to_physmap`). Timer: the local APIC Xen emulates. Wall clock: `shared_info`'s
//! `wc_*` plus system time. Shutdown: `SCHEDOP_shutdown`.
//!
//! Under the nested QEMU/TCG Xen the project tests on, CR2 reads as 0 and RDTSCP faults in a
//! PVH guest (QEMU bugs): page faults are fatal anyway, and nothing here uses RDTSCP.

use hermit_sync::OnceCell;
use ringbolt_time::Instant;
use ringbolt_xen_abi::hvm::params::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use x86_64::PhysAddr;

use super::xen::{SharedPages, XenClock, XenConsole};
use super::{BootFacts, ExitStatus, Platform, hvm};
use crate::shared_page::SharedPage;
use crate::xen::store::StoreRing;
use crate::xen::{self, Xen, events, grant};
use crate::{apic, cpu, memory};

pub(crate) struct XenPvh {
    xen: Xen,
    console: XenConsole,
    /// The console and store pages (special pages outside RAM), kept identity-mapped.
    shared: SharedPages,
    store: Option<StoreRing>,
    clock: XenClock,
}

static XEN_PVH: OnceCell<XenPvh> = OnceCell::new();

/// Installs the hypercall page and finds the console ring.
pub(crate) fn init(tsc_at_entry: u64, xen: Xen) -> &'static XenPvh {
    XEN_PVH.get_or_init(|| {
        xen.install_hypercall_page();
        let console = ring_param(HVM_PARAM_CONSOLE_PFN, HVM_PARAM_CONSOLE_EVTCHN);
        let store = ring_param(HVM_PARAM_STORE_PFN, HVM_PARAM_STORE_EVTCHN)
            .map(|(page, port)| StoreRing { page, port });
        let mut shared = SharedPages::default();
        console.iter().for_each(|&(page, _)| shared.push(page));
        store.iter().for_each(|ring| shared.push(ring.page));
        XenPvh {
            xen,
            console: XenConsole::new(console, xen::debug_port_write),
            shared,
            store,
            clock: XenClock::new(tsc_at_entry),
        }
    })
}

/// A ring's page and event channel from the HVM params that name them.
fn ring_param(pfn_param: u32, evtchn_param: u32) -> Option<(PhysAddr, u32)> {
    let pfn = xen::hvm_get_param(pfn_param).ok().filter(|&pfn| pfn != 0)?;
    let evtchn = xen::hvm_get_param(evtchn_param).ok()?;
    Some((PhysAddr::new(pfn << 12), u32::try_from(evtchn).ok()?))
}

impl Platform for XenPvh {
    fn name(&self) -> &'static str {
        "xen-pvh"
    }

    super::xen::xen_common_methods!();

    /// `sti; hlt` until the APIC timer or an event upcall (`EVENT_UPCALL_VECTOR`), then the
    /// pending ports are consumed and dispatched.
    fn wait_for_event(&self, deadline: Option<Instant>) {
        hvm::wait_for_event(self.now(), deadline);
        if let Some(shared_info) = self.clock.shared_info() {
            events::dispatch(shared_info);
        }
    }

    hvm::hvm_paging_methods!();

    fn init_after_memory(&self, _facts: &BootFacts) {
        let (major, minor) = self.xen.version();
        log::info!("xen: version {major}.{minor}, PVH");
        let frame = memory::allocate_frame().expect("xen: no frame for shared_info");
        if let Err(e) = xen::map_shared_info(frame.as_u64() >> 12) {
            panic!("xen: XENMEM_add_to_physmap(shared_info) failed: {e:?}");
        }
        let scale = self.clock.start(SharedPage::identity(frame));
        apic::init(scale.hz());
        // Without an upcall vector events would still be recorded, but would not end a `hlt`.
        if let Err(e) = xen::set_evtchn_upcall_vector(apic::EVENT_UPCALL_VECTOR) {
            log::warn!("xen: no event upcall vector ({e:?}): events wait for the next timer");
        }
    }

    fn map_grant_table(&self, at: PhysAddr, frames: usize) -> Result<(), grant::SetupError> {
        for (index, gpfn) in (at.as_u64() >> 12..).take(frames).enumerate() {
            xen::map_grant_frame(index as u64, gpfn)
                .map_err(|e| grant::SetupError::Hypercall("add_to_physmap", e))?;
        }
        Ok(())
    }

    fn shutdown(&self, status: ExitStatus) -> ! {
        let result = super::xen::shutdown(status);
        xen::debug_port_write(b"ringbolt: SCHEDOP_shutdown returned\n");
        let _ = result;
        cpu::halt_forever()
    }
}
