//! PVH on a plain VMM (QEMU `pc`/`microvm`, Firecracker-style) or on Hyper-V: PC hardware
//! emulated, plus Hyper-V's enlightenments when CPUID shows them (`crate::hyperv`).
//!
//! Console: COM1 (16550). Clock: TSC (Hyper-V: the partition reference time, whose TSC page
//! also gives the TSC frequency). Timer: local APIC one-shot. Wall clock: CMOS RTC (the
//! century register from ACPI's FADT). Shutdown: QEMU's `isa-debug-exit` device at port 0xf4
//! (so a harness sees the exit code), then ACPI S5 as the FADT describes it (PM1 control
//! ports, or the sleep control register on hardware-reduced ACPI such as `microvm`), then halt.

use core::ptr::NonNull;

use hermit_sync::{OnceCell, SpinMutex};
use ringbolt_acpi::{AddressSpace, Pm1Sleep, PowerControl};
use ringbolt_cmos_rtc::{CmosPorts, Rtc};
use ringbolt_time::{Instant, TscScale};
use uart_16550::Uart16550;
use uart_16550::backend::PioBackend;
use x86_64::PhysAddr;

use super::{BootFacts, ExitStatus, Platform, hvm};
use crate::hyperv::HyperV;
use crate::single_cpu::lock_or_take_over;
use crate::tsc::{self, TscClock};
use crate::{apic, cpu, memory, vmbus};

const COM1: u16 = 0x3f8;
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// The 8042's command port, and the command that resets the machine.
const KEYBOARD_CONTROLLER: u16 = 0x64;
const PULSE_RESET: u8 = 0xfe;

/// How to enter S5, resolved at boot so the shutdown path neither parses nor maps anything.
#[derive(Debug)]
enum PowerOff {
    Pm1(Pm1Sleep),
    SleepControlPort { port: u16, value: u8 },
    SleepControlMmio { register: NonNull<u8>, value: u8 },
}

// SAFETY: the MMIO pointer names a device register, not Rust data; one CPU uses it.
unsafe impl Send for PowerOff {}
// SAFETY: as above.
unsafe impl Sync for PowerOff {}

pub(crate) struct PvhVmm {
    uart: SpinMutex<Option<Uart16550<PioBackend>>>,
    clock: TscClock,
    hyperv: Option<HyperV>,
    /// Unix time (ns) read from the RTC and the monotonic instant it was read at.
    wall_base: SpinMutex<Option<(u64, Instant)>>,
    power_off: OnceCell<PowerOff>,
}

static PVH_VMM: OnceCell<PvhVmm> = OnceCell::new();

/// Creates the platform with its console; the clock reads zero until [`PvhVmm::init_time`].
pub(crate) fn init(tsc_at_entry: u64, hyperv: Option<HyperV>) -> &'static PvhVmm {
    if let Some(hyperv) = &hyperv {
        hyperv.identify();
    }
    PVH_VMM.get_or_init(|| {
        // SAFETY: COM1's eight registers at 0x3f8 exist on every PC-compatible VMM and no other
        // code drives them; the UART does no DMA.
        let uart = unsafe { Uart16550::new_port(COM1) }
            .ok()
            .and_then(|mut uart| uart.init(uart_16550::Config::default()).ok().map(|()| uart));
        PvhVmm {
            uart: SpinMutex::new(uart),
            clock: TscClock::new(tsc_at_entry),
            hyperv,
            wall_base: SpinMutex::new(None),
            power_off: OnceCell::new(),
        }
    })
}

impl PvhVmm {
    /// Calibrates the TSC, starts the APIC timer and reads the RTC (`century`: the FADT's
    /// CMOS century register, if any).
    fn init_time(&self, century: Option<u8>) {
        let stated = self
            .hyperv
            .as_ref()
            .and_then(|hyperv| hyperv.start_clock(self.clock.tsc_at_boot()));
        let hz = match stated {
            Some(hz) => hz,
            None => {
                let Some((hz, source)) = tsc::calibrate() else {
                    panic!("time: cannot calibrate the TSC (no CPUID frequency, no PIT)");
                };
                log::info!("tsc: {} kHz ({source:?})", hz / 1000);
                hz
            }
        };
        let scale =
            TscScale::from_hz(hz).unwrap_or_else(|| panic!("time: unusable TSC frequency {hz} Hz"));
        self.clock.set_scale(scale);
        disable_legacy_pics();
        apic::init(hz);
        match Rtc::new(CmosPortIo, century).read_unix() {
            Ok(secs) => {
                *self.wall_base.lock() = Some((secs * 1_000_000_000, self.now()));
            }
            Err(e) => log::warn!("rtc: no wall clock: {e}"),
        }
    }
}

/// Turns the FADT's description into something the shutdown path can execute without help.
fn resolve_power_off(power: &PowerControl) -> Option<PowerOff> {
    if let Some(sleep) = &power.sleep_control {
        let value = sleep.value();
        return match sleep.register.space {
            AddressSpace::SystemIo => u16::try_from(sleep.register.address)
                .ok()
                .map(|port| PowerOff::SleepControlPort { port, value }),
            AddressSpace::SystemMemory => {
                let register = memory::map_mmio(PhysAddr::new(sleep.register.address), 1);
                NonNull::new(register.as_mut_ptr())
                    .map(|register| PowerOff::SleepControlMmio { register, value })
            }
            AddressSpace::Other(space) => {
                log::warn!("acpi: sleep control register in address space {space}: unsupported");
                None
            }
        };
    }
    power.pm1.map(PowerOff::Pm1)
}

/// ACPI S5 (ACPI 6.x, 7.4.2 and 4.8.3.7): write SLP_TYP | SLP_EN.
fn enter_s5(power_off: &PowerOff) {
    // SAFETY: the ports and the register come from the FADT, which names them as the sleep
    // controls; writing them powers the machine off and touches no memory. The MMIO register
    // was mapped uncached at boot (`resolve_power_off`).
    unsafe {
        match *power_off {
            PowerOff::Pm1(pm1) => {
                let current = cpu::inw(pm1.pm1a_control);
                if let Some(pm1b) = pm1.pm1b_control {
                    let current_b = cpu::inw(pm1b);
                    cpu::outw(pm1b, pm1.pm1b_value(current_b));
                }
                cpu::outw(pm1.pm1a_control, pm1.pm1a_value(current));
            }
            PowerOff::SleepControlPort { port, value } => cpu::outb(port, value),
            PowerOff::SleepControlMmio { register, value } => {
                register.as_ptr().write_volatile(value)
            }
        }
    }
}

/// The CMOS index/data ports.
struct CmosPortIo;

impl CmosPorts for CmosPortIo {
    fn read(&mut self, register: u8) -> u8 {
        // SAFETY: 0x70/0x71 are the CMOS index and data ports; selecting a register (with bit 7
        // set, which keeps NMIs disabled) and reading it has no memory effect.
        unsafe {
            cpu::outb(0x70, 0x80 | register);
            cpu::inb(0x71)
        }
    }
}

impl Platform for PvhVmm {
    fn name(&self) -> &'static str {
        if self.hyperv.is_some() {
            "hyperv"
        } else {
            "qemu-pvh"
        }
    }

    fn console_write(&self, bytes: &[u8]) {
        let mut uart = lock_or_take_over(&self.uart);
        let Some(uart) = uart.as_mut() else { return };
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            match line.split_last() {
                Some((b'\n', text)) => {
                    uart.send_bytes_exact(text);
                    uart.send_bytes_exact(b"\r\n");
                }
                _ => uart.send_bytes_exact(line),
            }
        }
    }

    fn now(&self) -> Instant {
        self.hyperv
            .as_ref()
            .and_then(HyperV::now)
            .unwrap_or_else(|| self.clock.now())
    }

    fn wall_clock_unix_nanos(&self) -> Option<u64> {
        let (base, at) = (*self.wall_base.lock())?;
        Some(base + (self.now() - at).as_nanos() as u64)
    }

    fn set_wall_clock(&self, unix_nanos: u64) {
        *self.wall_base.lock() = Some((unix_nanos, self.now()));
    }

    fn wait_for_event(&self, deadline: Option<Instant>) {
        hvm::wait_for_event(self.now(), deadline);
        if self.hyperv.is_some() {
            vmbus::dispatch();
        }
    }

    fn start_services(&self, executor: &ringbolt_executor::Handle) {
        if self.hyperv.as_ref().is_some_and(HyperV::has_synic) {
            vmbus::start(executor);
        }
    }

    hvm::hvm_paging_methods!();

    fn shared_pages(&self) -> &[PhysAddr] {
        &[]
    }

    fn init_after_memory(&self, facts: &BootFacts) {
        let acpi = facts.acpi.as_ref();
        self.init_time(acpi.and_then(|power| power.rtc_century));
        if let Some(power_off) = acpi.and_then(resolve_power_off) {
            let _ = self.power_off.set(power_off);
        }
    }

    fn shutdown(&self, status: ExitStatus) -> ! {
        if self.hyperv.is_some() && status != ExitStatus::Panic {
            // The exit line is already out and must stay the console's last.
            log::set_max_level(log::LevelFilter::Off);
            vmbus::unload();
        }
        if status == ExitStatus::Reboot {
            // SAFETY: 0xfe to the 8042 keyboard controller's command port pulses the CPU reset
            // line on every PC-compatible VMM; it touches no memory.
            unsafe { cpu::outb(KEYBOARD_CONTROLLER, PULSE_RESET) };
        }
        // SAFETY: writing to the debug-exit port ends the VM (QEMU exits with (code << 1) | 1);
        // without the device the write is ignored. No memory effect.
        unsafe { cpu::outb(DEBUG_EXIT_PORT, status.code()) };
        match self.power_off.get() {
            Some(power_off) => enter_s5(power_off),
            None => log::error!("shutdown: no ACPI power-off method; halting"),
        }
        cpu::halt_forever()
    }
}

/// Remaps both 8259s to vectors 0x20-0x2f and masks every line: firmware may leave the PIT's
/// IRQ 0 routed to vector 8, which would look like a double fault the first time we `sti`.
fn disable_legacy_pics() {
    const PIC1_COMMAND: u16 = 0x20;
    const PIC1_DATA: u16 = 0x21;
    const PIC2_COMMAND: u16 = 0xa0;
    const PIC2_DATA: u16 = 0xa1;
    // SAFETY: the 8259 ports on a PC-compatible VMM; the ICW sequence only changes which vectors
    // the PICs would raise, and the final masks silence them. No memory effect.
    unsafe {
        cpu::outb(PIC1_COMMAND, 0x11); // ICW1: init, ICW4 follows
        cpu::outb(PIC2_COMMAND, 0x11);
        cpu::outb(PIC1_DATA, 0x20); // ICW2: vector base
        cpu::outb(PIC2_DATA, 0x28);
        cpu::outb(PIC1_DATA, 0x04); // ICW3: slave on IRQ 2
        cpu::outb(PIC2_DATA, 0x02);
        cpu::outb(PIC1_DATA, 0x01); // ICW4: 8086 mode
        cpu::outb(PIC2_DATA, 0x01);
        cpu::outb(PIC1_DATA, 0xff);
        cpu::outb(PIC2_DATA, 0xff);
    }
}
