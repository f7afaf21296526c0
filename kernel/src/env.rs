//! What an app can learn about its environment: command line, platform, memory.

use ringbolt_boot::Cmdline;

pub use crate::memory::MemoryStats;

/// The kernel command line, as given by the VMM (`-append`, xl's `extra`).
pub fn cmdline() -> &'static str {
    crate::runtime::cmdline()
}

/// The command line parsed into `key=value` arguments.
pub fn args() -> Cmdline<'static> {
    Cmdline::new(cmdline())
}

/// The platform's short name: `qemu-pvh`, `xen-pv`, `xen-pvh`, `hyperv`.
pub fn platform() -> &'static str {
    crate::platform::platform().name()
}

/// Usable and free memory now.
pub fn memory() -> MemoryStats {
    crate::memory::stats()
}
