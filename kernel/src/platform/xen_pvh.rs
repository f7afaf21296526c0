//! PVH under Xen: the PVH entry with Xen's paravirtual devices instead of PC hardware.
//!
//! Console: the PV console ring (HVM params `CONSOLE_PFN`/`CONSOLE_EVTCHN`), with Xen's debug
//! port 0xe9 until the ring is found. Clock: pvclock from `shared_info` (mapped with
//! `XENMEM_add_to_physmap`). Timer: the local APIC Xen emulates. Wall clock: `shared_info`'s
//! `wc_*` plus system time. Shutdown: `SCHEDOP_shutdown`.
//!
//! Under the nested QEMU/TCG Xen the project tests on, CR2 reads as 0 and RDTSCP faults in a
//! PVH guest (QEMU bugs): page faults are fatal anyway, and nothing here uses RDTSCP.

use hermit_sync::{OnceCell, SpinMutex};
use ringbolt_time::Instant;
use ringbolt_xen_abi::hvm::params::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};
use ringbolt_xen_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF};
use ringbolt_xen_console::ConsoleRing;
use ringbolt_xen_pvclock::{Pvclock, read_vcpu_time, read_wallclock, vcpu_time_offset};
use x86_64::PhysAddr;

use super::{BootFacts, ExitStatus, Platform, hvm};
use crate::shared_page::SharedPage;
use crate::single_cpu::lock_or_take_over;
use crate::xen::{self, Xen};
use crate::{apic, cpu, memory};

/// Spins of "ring full, notify, look again" before console output is dropped: a dead
/// xenconsoled must not hang the guest.
const CONSOLE_FULL_RETRIES: u32 = 1_000_000;

struct Console {
    ring: ConsoleRing<SharedPage>,
    evtchn: u32,
}

pub(crate) struct XenPvh {
    xen: Xen,
    console: SpinMutex<Option<Console>>,
    /// The console page, kept identity-mapped by the kernel's page tables.
    shared: [PhysAddr; 1],
    shared_info: OnceCell<SharedPage>,
    pvclock: Pvclock,
    /// Xen system time (ns) at our entry: `Instant`s count from there.
    boot_system_time: OnceCell<u64>,
    tsc_at_entry: u64,
}

static XEN_PVH: OnceCell<XenPvh> = OnceCell::new();

/// Installs the hypercall page and finds the console ring.
pub(crate) fn init(tsc_at_entry: u64, xen: Xen) -> &'static XenPvh {
    XEN_PVH.get_or_init(|| {
        xen.install_hypercall_page();
        let console = console_ring();
        let shared = [console.as_ref().map_or(PhysAddr::zero(), |(page, _)| *page)];
        let console = console.and_then(|(page, evtchn)| {
            let ring = ConsoleRing::new(SharedPage::identity(page)).ok()?;
            Some(Console { ring, evtchn })
        });
        if console.is_none() {
            xen::debug_port_write(
                b"ringbolt: no PV console ring; output goes to Xen's debug port\n",
            );
        }
        XenPvh {
            xen,
            console: SpinMutex::new(console),
            shared,
            shared_info: OnceCell::new(),
            pvclock: Pvclock::for_vcpu(0).expect("vCPU 0 has a time record"),
            boot_system_time: OnceCell::new(),
            tsc_at_entry,
        }
    })
}

/// The console ring's page and event channel, from the HVM params.
fn console_ring() -> Option<(PhysAddr, u32)> {
    let pfn = xen::hvm_get_param(HVM_PARAM_CONSOLE_PFN)
        .ok()
        .filter(|&pfn| pfn != 0)?;
    let evtchn = xen::hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN).ok()?;
    Some((PhysAddr::new(pfn << 12), u32::try_from(evtchn).ok()?))
}

impl XenPvh {
    /// Xen system time (ns since the host booted), never going backwards.
    fn system_time(&self, tsc: u64) -> Option<u64> {
        let shared_info = self.shared_info.get()?;
        self.pvclock
            .now(shared_info, tsc)
            .ok()
            .map(Instant::as_nanos)
    }
}

impl Platform for XenPvh {
    fn name(&self) -> &'static str {
        "xen-pvh"
    }

    fn console_write(&self, bytes: &[u8]) {
        let mut guard = lock_or_take_over(&self.console);
        let Some(console) = guard.as_mut() else {
            xen::debug_port_write(bytes);
            return;
        };
        let mut rest = bytes;
        let mut retries = 0;
        while !rest.is_empty() {
            match console.ring.write(rest) {
                Ok(0) => {
                    let _ = xen::evtchn_send(console.evtchn);
                    retries += 1;
                    if retries == CONSOLE_FULL_RETRIES {
                        xen::debug_port_write(b"ringbolt: console ring stuck full\n");
                        return;
                    }
                    core::hint::spin_loop();
                }
                Ok(written) => rest = &rest[written..],
                Err(_) => {
                    // A backend that corrupts the ring gets no more output; Xen's own console
                    // still shows ours.
                    xen::debug_port_write(
                        b"ringbolt: console ring corrupt, using the debug port\n",
                    );
                    xen::debug_port_write(rest);
                    *guard = None;
                    return;
                }
            }
        }
        let _ = xen::evtchn_send(console.evtchn);
    }

    fn now(&self) -> Instant {
        let Some(&boot) = self.boot_system_time.get() else {
            return Instant::ZERO;
        };
        let now = self.system_time(cpu::rdtsc()).unwrap_or(boot);
        Instant::from_nanos(now.saturating_sub(boot))
    }

    fn wall_clock_unix_nanos(&self) -> Option<u64> {
        let shared_info = self.shared_info.get()?;
        let wall = read_wallclock(shared_info).ok()?;
        let system = self.system_time(cpu::rdtsc())?;
        u64::try_from(wall.at(Instant::from_nanos(system)).as_unix_nanos()).ok()
    }

    fn wait_for_event(&self, deadline: Option<Instant>) {
        hvm::wait_for_event(self.now(), deadline);
    }

    fn write_pte(&self, table: PhysAddr, index: usize, value: u64) {
        hvm::write_pte(table, index, value);
    }

    fn activate_page_table(&self, root: PhysAddr) {
        hvm::activate_page_table(root);
    }

    fn shared_pages(&self) -> &[PhysAddr] {
        if self.shared[0].is_null() {
            &[]
        } else {
            &self.shared
        }
    }

    fn init_after_memory(&self, _facts: &BootFacts) {
        let (major, minor) = self.xen.version();
        log::info!("xen: version {major}.{minor}, PVH");
        let frame = memory::allocate_frame().expect("xen: no frame for shared_info");
        if let Err(e) = xen::map_shared_info(frame.as_u64() >> 12) {
            panic!("xen: XENMEM_add_to_physmap(shared_info) failed: {e:?}");
        }
        let shared_info = self.shared_info.get_or_init(|| SharedPage::identity(frame));
        let offset = vcpu_time_offset(0).expect("vCPU 0 has a time record");
        let scale = match read_vcpu_time(shared_info, offset) {
            Ok(time) => time.scale,
            Err(e) => panic!("xen: unreadable vcpu_time_info: {e:?}"),
        };
        let entry = self.system_time(self.tsc_at_entry).unwrap_or(0);
        let _ = self.boot_system_time.set(entry);
        let tsc_hz = scale.hz();
        log::info!(
            "pvclock: tsc {} kHz (mul {:#x} shift {})",
            tsc_hz / 1000,
            scale.mul,
            scale.shift
        );
        apic::init(tsc_hz);
    }

    fn shutdown(&self, status: ExitStatus) -> ! {
        let reason = match status {
            ExitStatus::Code(_) => SHUTDOWN_POWEROFF,
            ExitStatus::Panic => SHUTDOWN_CRASH,
        };
        let result = xen::sched_shutdown(reason);
        xen::debug_port_write(b"ringbolt: SCHEDOP_shutdown returned\n");
        let _ = result;
        cpu::halt_forever()
    }
}
