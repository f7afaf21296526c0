//! From the boot entry's jump to the app: the bring-up sequence the crate doc describes.

use core::fmt::Write;

use ringbolt_boot::{BootError, BootInfo, BootProtocol, Cmdline};

use crate::console::{self, Console};
use crate::memory::{self, BootIdentityMap};
use crate::platform::{self, BootFacts, ExitStatus, Platform, pvh_vmm, xen_pv, xen_pvh};
use crate::{cpu, hyperv, runtime, traps, xen};

/// PVH entry: entered from `boot/src/entry.s` in long mode on the boot stack, interrupts off.
#[unsafe(no_mangle)]
extern "C" fn ringbolt_pvh_start(start_info_paddr: u32) -> ! {
    let tsc_at_entry = cpu::rdtsc();
    let platform: &'static dyn Platform = match xen::detect() {
        Some(xen) => xen_pvh::init(tsc_at_entry, xen),
        None => pvh_vmm::init(tsc_at_entry, hyperv::detect()),
    };
    platform::install(platform);
    console::init_logger(log::LevelFilter::Info);
    traps::init();
    let boot = BootInfo::from_pvh(&BootIdentityMap, u64::from(start_info_paddr));
    let boot = boot.unwrap_or_else(|error| cannot_boot(platform, error));
    let facts = BootFacts {
        acpi: acpi_power_control(boot.rsdp),
    };
    start(platform, &boot, &facts)
}

/// Xen PV entry: entered from `boot/src/entry.s` in ring 3 on the boot stack, events masked,
/// with the virtual (= pseudo-physical) address of `start_info`.
#[unsafe(no_mangle)]
extern "C" fn ringbolt_xen_pv_start(start_info_vaddr: u64) -> ! {
    let tsc_at_entry = cpu::rdtsc();
    // Nothing to print with before start_info is read: the console ring is named there.
    let boot = match BootInfo::from_xen_pv(&BootIdentityMap, start_info_vaddr) {
        Ok(boot) => boot,
        Err(error) => {
            // Xen's console: seen on a dom0 (a domU's ring is what could not be found).
            let _ = writeln!(XenConsoleIo, "ringbolt: cannot boot: {error}");
            let _ = platform::xen::shutdown(ExitStatus::Panic);
            loop {
                core::hint::spin_loop();
            }
        }
    };
    let BootProtocol::XenPv(info) = boot.protocol else {
        unreachable!("from_xen_pv returns a Xen PV BootInfo")
    };
    let platform = xen_pv::init(tsc_at_entry, &info);
    platform::install(platform);
    console::init_logger(log::LevelFilter::Info);
    traps::init_xen_pv();
    // No firmware tables under PV: nothing to read power-off information from.
    start(platform, &boot, &BootFacts::default())
}

/// The bring-up both entries share, from a parsed `BootInfo` to the app.
fn start(platform: &'static dyn Platform, boot: &BootInfo<'_>, facts: &BootFacts) -> ! {
    let cmdline = Cmdline::new(boot.cmdline);
    console::init_logger(console::level_from_cmdline(cmdline.get("log")));
    log::info!("boot: {} via {:?}", platform.name(), boot.protocol);
    log::debug!("boot: memory map: {:?}", boot.memory_map);

    // The boot structures may sit in page 0, which the kernel's tables leave unmapped: keep a
    // copy of the command line; `boot` is not used once `memory::init` switches tables.
    runtime::set_cmdline(boot.cmdline);
    memory::init(boot, platform.shared_pages());
    platform.init_after_memory(facts);
    runtime::run()
}

/// Reports unusable boot information and ends the VM with status 125.
fn cannot_boot(platform: &dyn Platform, error: BootError) -> ! {
    let _ = writeln!(Console, "ringbolt: cannot boot: {error}");
    let _ = writeln!(
        Console,
        "ringbolt: exit status {} (bad boot info)",
        ExitStatus::Code(125).code()
    );
    platform.shutdown(ExitStatus::Code(125))
}

/// Reads how to power off from the ACPI tables (the RSDP from the boot protocol, else the BIOS
/// areas), while the boot identity map still reaches them. Missing or broken tables are logged:
/// the platform then has fewer ways to end the VM, nothing worse.
fn acpi_power_control(rsdp: Option<u64>) -> Option<ringbolt_acpi::PowerControl> {
    let rsdp = rsdp.or_else(|| ringbolt_acpi::find_rsdp(&BootIdentityMap))?;
    match ringbolt_acpi::power_control(&BootIdentityMap, rsdp) {
        Ok(power) => {
            log::debug!("acpi: {power:?}");
            Some(power)
        }
        Err(e) => {
            log::debug!("acpi: no power-off information: {e}");
            None
        }
    }
}

/// `HYPERVISOR_console_io` as a `fmt::Write`, for the one message before a PV console exists.
struct XenConsoleIo;

impl core::fmt::Write for XenConsoleIo {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let _ = xen::console_io_write(text.as_bytes());
        Ok(())
    }
}
