//! Ringbolt's kernel core: the one crate where the unikernel touches the machine.
//!
//! An app is a `no_std` binary that depends on this crate (as `ringbolt`) and names its async
//! `main` with [`main!`]. The boot entry (crate `ringbolt-boot`) jumps to `entry`, which brings
//! the machine up in this order and then runs the app on the executor:
//!
//! 1. **Platform** — chosen once, from how we were booted and what CPUID says. Everything that
//!    differs between a plain PVH VMM (QEMU, Firecracker), Xen PV, Xen PVH and Hyper-V sits
//!    behind the `platform::Platform` trait: console output, idle/event waiting, the clock,
//!    page-table writes and shutdown. No other module asks which platform it is on.
//! 2. **Boot info** — `hvm_start_info` (or, later, Xen's `start_info`) parsed as a checked view
//!    into one `BootInfo`; a bad structure is reported on the console and the VM stops.
//! 3. **Traps** — GDT with a TSS (double faults run on their own IST stack), an IDT whose
//!    exception handlers print vector, error code, RIP and CR2 and stop the VM.
//! 4. **Memory** — a frame allocator over the memory map, the kernel's own page tables
//!    (identity map of RAM, a guard page at 0) and a talc heap that grows by mapping frames.
//! 5. **Time** — TSC calibrated from CPUID or the PIT, a one-shot timer for idle wake-ups,
//!    the wall clock from the platform's RTC.
//! 6. **Run** — the app's `main` on the cooperative executor; its exit code ends the VM.
//!
//! # Interrupts and events
//!
//! Interrupts (Xen: event upcalls) are **masked everywhere except while idle**. The executor
//! runs with `IF=0`; when no task is ready it calls `Platform::wait_for_event` with
//! the next timer deadline, which arms the one-shot timer and executes `sti; hlt` (Xen PV:
//! `SCHEDOP_block`, which unmasks atomically), so a wake-up can never be lost between "nothing
//! to do" and "halt". Handlers run only there, do the minimum — acknowledge, record what
//! happened — and return; they never run wakers, take locks or allocate. The executor then
//! looks at the clock and at recorded events and wakes tasks in thread context. This is why
//! no lock in Ringbolt needs to disable interrupts, and why `hermit-sync`'s plain spin locks
//! are enough: the only code that could interrupt a lock holder is a handler that takes none.
//!
//! # Where the unsafe code is
//!
//! Here and in `boot/src/entry.s`. Every other crate is `#![forbid(unsafe_code)]`. Each block
//! carries a `// SAFETY:` comment; the hardware access is concentrated in `cpu`, `memory`,
//! `traps` and the platform modules.
#![no_std]

extern crate alloc;

mod apic;
mod cpu;
mod entry;
mod hyperv;
mod hyperv_balloon;
mod hyperv_ic;
mod memory;
mod panic;
mod platform;
mod probe;
mod runtime;
mod shared_page;
mod signal;
mod single_cpu;
mod traps;
mod tsc;
mod vmbus;
mod xen;

pub mod app;
pub mod block;
pub mod console;
pub mod diagnostics;
pub mod env;
pub mod net;
pub mod task;
pub mod time;

#[doc(hidden)]
pub use app::__private;
pub use app::ExitCode;
