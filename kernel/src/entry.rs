//! From the boot entry's jump to the app: the bring-up sequence the crate doc describes.

use core::fmt::Write;

use ringbolt_boot::{BootInfo, Cmdline};

use crate::console::{self, Console};
use crate::memory::{self, BootIdentityMap};
use crate::platform::{self, BootFacts, ExitStatus, Platform, pvh_vmm, xen_pvh};
use crate::{cpu, runtime, traps, xen};

/// Entered from `boot/src/entry.s` in long mode on the boot stack, interrupts off.
#[unsafe(no_mangle)]
extern "C" fn ringbolt_pvh_start(start_info_paddr: u32) -> ! {
    let tsc_at_entry = cpu::rdtsc();
    let platform: &'static dyn Platform = match xen::detect() {
        Some(xen) => xen_pvh::init(tsc_at_entry, xen),
        None => pvh_vmm::init(tsc_at_entry),
    };
    platform::install(platform);
    console::init_logger(log::LevelFilter::Info);
    traps::init();

    let boot = match BootInfo::from_pvh(&BootIdentityMap, u64::from(start_info_paddr)) {
        Ok(boot) => boot,
        Err(error) => {
            let _ = writeln!(Console, "ringbolt: cannot boot: {error}");
            let _ = writeln!(
                Console,
                "ringbolt: exit status {} (bad boot info)",
                ExitStatus::Code(125).code()
            );
            platform.shutdown(ExitStatus::Code(125));
        }
    };
    let cmdline = Cmdline::new(boot.cmdline);
    console::init_logger(console::level_from_cmdline(cmdline.get("log")));
    log::info!("boot: {} via {:?}", platform.name(), boot.protocol);
    log::debug!("boot: memory map: {:?}", boot.memory_map);

    // The boot structures may sit in page 0, which the kernel's tables leave unmapped: keep a
    // copy of the command line; `boot` is not used once `memory::init` switches tables.
    runtime::set_cmdline(boot.cmdline);
    let facts = BootFacts {
        acpi: acpi_power_control(boot.rsdp),
    };
    memory::init(&boot, platform.shared_pages());
    platform.init_after_memory(&facts);
    runtime::run()
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
