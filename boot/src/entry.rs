//! The PVH entry point (see entry.s): 32-bit protected mode to long mode, then into the kernel's
//! `ringbolt_pvh_start`. Assembled only for the kernel target; host tests link no entry.

core::arch::global_asm!(include_str!("entry.s"));
