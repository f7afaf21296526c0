//! The panic path: print the message and location, report a panic status, end the VM.

use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::console::Console;
use crate::cpu;
use crate::platform::{ExitStatus, try_platform};

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    // Interrupts are already masked: thread context runs masked and trap handlers enter through
    // interrupt gates (see the crate doc), so there is nothing to disable here, which also
    // keeps this path free of privileged instructions a Xen PV guest may not execute.
    if PANICKING.swap(true, Ordering::Relaxed) {
        // A panic while panicking (in the console, say): stop without touching anything else.
        match try_platform() {
            Some(platform) => platform.shutdown(ExitStatus::Panic),
            None => cpu::halt_forever(),
        }
    }
    // PanicInfo's Display is "panicked at FILE:LINE:COL:\nMESSAGE".
    let _ = writeln!(Console, "{info}");
    let status = ExitStatus::Panic;
    let _ = writeln!(Console, "ringbolt: exit status {} (panic)", status.code());
    match try_platform() {
        Some(platform) => platform.shutdown(status),
        None => cpu::halt_forever(),
    }
}
