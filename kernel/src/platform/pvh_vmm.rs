//! PVH on a plain VMM (QEMU `pc`/`microvm`, Firecracker-style): PC hardware emulated.
//!
//! Console: COM1 (16550). Clock: TSC. Timer: local APIC one-shot. Wall clock: CMOS RTC.
//! Shutdown: QEMU's `isa-debug-exit` device at port 0xf4, then ACPI power-off via the PM1a
//! control port QEMU's firmware sets up, then halt.

use hermit_sync::{OnceCell, SpinMutex};
use ringbolt_cmos_rtc::{CmosPorts, Rtc};
use ringbolt_time::{Instant, TscScale};
use uart_16550::Uart16550;
use uart_16550::backend::PioBackend;
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

use super::{ExitStatus, Platform};
use crate::tsc::{self, TscClock};
use crate::{apic, cpu};

const COM1: u16 = 0x3f8;
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// PM1a control block QEMU's firmware (SeaBIOS/qboot on `pc`, `q35`) programs: 0x600 + 4.
const ACPI_PM1A_CONTROL: u16 = 0x604;
/// SLP_TYP = S5 (0 on QEMU's PIIX4 and ICH9 DSDTs) | SLP_EN.
const ACPI_SLEEP_S5: u16 = 1 << 13;
/// The IBM PC/AT convention for the RTC century byte, which QEMU's MC146818 follows; on real
/// boards ACPI's FADT names it.
const CMOS_CENTURY_REGISTER: u8 = 0x32;

pub(crate) struct PvhVmm {
    uart: SpinMutex<Option<Uart16550<PioBackend>>>,
    clock: TscClock,
    /// Unix time (ns) read from the RTC and the monotonic instant it was read at.
    wall_base: OnceCell<(u64, Instant)>,
}

static PVH_VMM: OnceCell<PvhVmm> = OnceCell::new();

/// Creates the platform with its console; the clock reads zero until [`PvhVmm::init_time`].
pub(crate) fn init(tsc_at_entry: u64) -> &'static PvhVmm {
    PVH_VMM.get_or_init(|| {
        // SAFETY: COM1's eight registers at 0x3f8 exist on every PC-compatible VMM and no other
        // code drives them; the UART does no DMA.
        let uart = unsafe { Uart16550::new_port(COM1) }
            .ok()
            .and_then(|mut uart| uart.init(uart_16550::Config::default()).ok().map(|()| uart));
        PvhVmm {
            uart: SpinMutex::new(uart),
            clock: TscClock::new(tsc_at_entry),
            wall_base: OnceCell::new(),
        }
    })
}

impl PvhVmm {
    /// Calibrates the TSC, starts the APIC timer and reads the RTC. Needs the heap-free kernel
    /// page tables (the xAPIC page is mapped on demand).
    pub(crate) fn init_time(&self) {
        let Some((hz, source)) = tsc::calibrate() else {
            panic!("time: cannot calibrate the TSC (no CPUID frequency, no PIT)");
        };
        let scale =
            TscScale::from_hz(hz).unwrap_or_else(|| panic!("time: unusable TSC frequency {hz} Hz"));
        self.clock.set_scale(scale);
        log::info!("tsc: {} kHz ({source:?})", hz / 1000);
        apic::init(hz);
        match Rtc::new(CmosPortIo, Some(CMOS_CENTURY_REGISTER)).read_unix() {
            Ok(secs) => {
                let _ = self.wall_base.set((secs * 1_000_000_000, self.clock.now()));
            }
            Err(e) => log::warn!("rtc: no wall clock: {e}"),
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
        "qemu-pvh"
    }

    fn console_write(&self, bytes: &[u8]) {
        let mut uart = match self.uart.try_lock() {
            Some(uart) => uart,
            None => {
                // Only a fault inside a console write can find the lock taken (one CPU, and
                // interrupt handlers never print), and that fault ends in the panic handler
                // which never returns to the holder.
                // SAFETY: the holder is the interrupted writer, which will never run again.
                unsafe { self.uart.force_unlock() };
                self.uart.lock()
            }
        };
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
        self.clock.now()
    }

    fn wall_clock_unix_nanos(&self) -> Option<u64> {
        let &(base, at) = self.wall_base.get()?;
        Some(base + (self.clock.now() - at).as_nanos() as u64)
    }

    fn wait_for_event(&self, deadline: Option<Instant>) {
        match deadline {
            Some(deadline) => {
                let now = self.clock.now();
                if deadline <= now {
                    return;
                }
                apic::arm_oneshot((deadline - now).as_nanos() as u64);
            }
            None => apic::disarm(),
        }
        // `sti; hlt` back to back: an interrupt arriving between the deadline check and the
        // halt is taken right after `sti`'s one-instruction shadow ends, i.e. it wakes the hlt.
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
    }

    fn write_pte(&self, table: PhysAddr, index: usize, value: u64) {
        assert!(index < 512, "page-table index {index} out of range");
        // SAFETY: `table` is a page-table frame from `memory::PlatformPageTables` (identity-mapped,
        // 4 KiB aligned) and index < 512 keeps the store inside it. The mapper only writes entries
        // that map memory it was asked to map, so no live mapping changes under running code.
        unsafe { core::ptr::write_volatile((table.as_u64() as *mut u64).add(index), value) };
    }

    fn activate_page_table(&self, root: PhysAddr) {
        let frame = PhysFrame::from_start_address(root).expect("page-table root not frame-aligned");
        // SAFETY: `root` is a complete PML4 built by `memory::init` that identity-maps the
        // kernel image, its stack and every structure in use, so execution continues unchanged.
        unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    }

    fn shutdown(&self, status: ExitStatus) -> ! {
        // SAFETY: writing to the debug-exit port ends the VM (QEMU exits with (code << 1) | 1);
        // without the device the write is ignored. Then ACPI S5 on the PM1a control block QEMU's
        // firmware programs. Neither touches memory.
        unsafe {
            cpu::outb(DEBUG_EXIT_PORT, status.code());
            cpu::outw(ACPI_PM1A_CONTROL, ACPI_SLEEP_S5);
        }
        cpu::halt_forever()
    }
}
