//! What Xen PV and Xen PVH share: the PV console ring, pvclock time over `shared_info`, and
//! how an exit status becomes a shutdown reason.

use hermit_sync::{OnceCell, SpinMutex};
use ringbolt_time::{Instant, TscScale};
use ringbolt_xen_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};
use ringbolt_xen_console::ConsoleRing;
use ringbolt_xen_pvclock::{Pvclock, read_vcpu_time, read_wallclock, vcpu_time_offset};
use x86_64::PhysAddr;

use super::ExitStatus;
use crate::shared_page::SharedPage;
use crate::single_cpu::lock_or_take_over;
use crate::{cpu, xen};

/// Spins of "ring full, notify, look again" before console output is dropped: a dead
/// xenconsoled must not hang the guest.
const CONSOLE_FULL_RETRIES: u32 = 1_000_000;

struct Ring {
    ring: ConsoleRing<SharedPage>,
    evtchn: u32,
}

/// The PV console ring (`xencons_interface`), with a platform-specific way out when there is
/// no ring or the backend corrupts it (PVH: Xen's debug port; PV dom0: `console_io`).
pub(crate) struct XenConsole {
    ring: SpinMutex<Option<Ring>>,
    fallback: fn(&[u8]),
}

impl XenConsole {
    /// The console over the ring page at `page` (identity-mapped) notified on `evtchn`, or
    /// only `fallback` when `ring` is `None` or its indexes are already corrupt.
    pub(crate) fn new(ring: Option<(PhysAddr, u32)>, fallback: fn(&[u8])) -> Self {
        let ring = ring.and_then(|(page, evtchn)| {
            let ring = ConsoleRing::new(SharedPage::identity(page)).ok()?;
            Some(Ring { ring, evtchn })
        });
        if ring.is_none() {
            fallback(b"ringbolt: no PV console ring; output goes to Xen's console\n");
        }
        XenConsole {
            ring: SpinMutex::new(ring),
            fallback,
        }
    }

    /// Writes all of `bytes`, waiting for xenconsoled to make room when the ring is full.
    pub(crate) fn write(&self, bytes: &[u8]) {
        let mut guard = lock_or_take_over(&self.ring);
        let Some(console) = guard.as_mut() else {
            (self.fallback)(bytes);
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
                        (self.fallback)(b"ringbolt: console ring stuck full\n");
                        return;
                    }
                    core::hint::spin_loop();
                }
                Ok(written) => rest = &rest[written..],
                Err(_) => {
                    // A backend that corrupts the ring gets no more output; Xen's own console
                    // still shows ours.
                    (self.fallback)(b"ringbolt: console ring corrupt, using Xen's console\n");
                    (self.fallback)(rest);
                    *guard = None;
                    return;
                }
            }
        }
        let _ = xen::evtchn_send(console.evtchn);
    }
}

/// Time from vCPU 0's pvclock record in `shared_info`, counted from the kernel's entry.
pub(crate) struct XenClock {
    shared_info: OnceCell<SharedPage>,
    pvclock: Pvclock,
    /// Xen system time (ns) at our entry: `Instant`s count from there.
    boot_system_time: OnceCell<u64>,
    tsc_at_entry: u64,
}

impl XenClock {
    pub(crate) fn new(tsc_at_entry: u64) -> Self {
        XenClock {
            shared_info: OnceCell::new(),
            pvclock: Pvclock::for_vcpu(0).expect("vCPU 0 has a time record"),
            boot_system_time: OnceCell::new(),
            tsc_at_entry,
        }
    }

    /// Starts the clock on the mapped `shared_info` page; returns the TSC's scale.
    pub(crate) fn start(&self, shared_info: SharedPage) -> TscScale {
        let shared_info = self.shared_info.get_or_init(|| shared_info);
        let offset = vcpu_time_offset(0).expect("vCPU 0 has a time record");
        let scale = match read_vcpu_time(shared_info, offset) {
            Ok(time) => time.scale,
            Err(e) => panic!("xen: unreadable vcpu_time_info: {e:?}"),
        };
        let entry = self.system_time(self.tsc_at_entry).unwrap_or(0);
        let _ = self.boot_system_time.set(entry);
        log::info!(
            "pvclock: tsc {} kHz (mul {:#x} shift {})",
            scale.hz() / 1000,
            scale.mul,
            scale.shift
        );
        scale
    }

    /// The `shared_info` page, once [`start`](Self::start)ed.
    pub(crate) fn shared_info(&self) -> Option<&SharedPage> {
        self.shared_info.get()
    }

    /// Xen system time (ns since the host booted) when the TSC read `tsc`, never going
    /// backwards.
    fn system_time(&self, tsc: u64) -> Option<u64> {
        let shared_info = self.shared_info.get()?;
        self.pvclock
            .now(shared_info, tsc)
            .ok()
            .map(Instant::as_nanos)
    }

    /// Time since entry; zero until started.
    pub(crate) fn now(&self) -> Instant {
        let Some(&boot) = self.boot_system_time.get() else {
            return Instant::ZERO;
        };
        let now = self.system_time(cpu::rdtsc()).unwrap_or(boot);
        Instant::from_nanos(now.saturating_sub(boot))
    }

    /// Xen system time of `instant`, for timers Xen keeps in its own time.
    pub(crate) fn system_time_of(&self, instant: Instant) -> Option<u64> {
        let boot = *self.boot_system_time.get()?;
        Some(boot.saturating_add(instant.as_nanos()))
    }

    pub(crate) fn wall_clock_unix_nanos(&self) -> Option<u64> {
        let shared_info = self.shared_info.get()?;
        let wall = read_wallclock(shared_info).ok()?;
        let system = self.system_time(cpu::rdtsc())?;
        u64::try_from(wall.at(Instant::from_nanos(system)).as_unix_nanos()).ok()
    }
}

/// Ends the domain with the reason Xen's toolstack reports: poweroff for any exit code, reboot
/// when asked for one, crash for a panic (so `on_crash` applies). Returns only if Xen refuses.
pub(crate) fn shutdown(status: ExitStatus) -> Result<i64, xen::XenError> {
    let reason = match status {
        ExitStatus::Code(_) => SHUTDOWN_POWEROFF,
        ExitStatus::Reboot => SHUTDOWN_REBOOT,
        ExitStatus::Panic => SHUTDOWN_CRASH,
    };
    xen::sched_shutdown(reason)
}

/// The pages a Xen platform shares with dom0's daemons (console ring, store ring), which the
/// kernel keeps identity-mapped and out of the frame allocator.
#[derive(Debug)]
pub(crate) struct SharedPages {
    pages: [PhysAddr; 2],
    len: usize,
}

impl Default for SharedPages {
    fn default() -> Self {
        SharedPages {
            pages: [PhysAddr::zero(); 2],
            len: 0,
        }
    }
}

impl SharedPages {
    pub(crate) fn push(&mut self, page: PhysAddr) {
        self.pages[self.len] = page;
        self.len += 1;
    }

    pub(crate) fn as_slice(&self) -> &[PhysAddr] {
        &self.pages[..self.len]
    }
}

/// The [`Platform`](super::Platform) methods Xen PV and PVH implement alike, over the fields
/// `console: XenConsole`, `clock: XenClock`, `shared: SharedPages` and
/// `store: Option<StoreRing>`.
macro_rules! xen_common_methods {
    () => {
        fn console_write(&self, bytes: &[u8]) {
            self.console.write(bytes);
        }

        fn now(&self) -> ringbolt_time::Instant {
            self.clock.now()
        }

        fn wall_clock_unix_nanos(&self) -> Option<u64> {
            self.clock.wall_clock_unix_nanos()
        }

        fn shared_pages(&self) -> &[x86_64::PhysAddr] {
            self.shared.as_slice()
        }

        fn start_services(&self, executor: &ringbolt_executor::Handle) {
            if let Some(ring) = self.store {
                $crate::xen::store::start(ring, executor);
            }
        }
    };
}
pub(crate) use xen_common_methods;
