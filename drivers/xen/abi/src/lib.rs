//! Xen's guest ABI for x86_64: constants and layouts from `xen/include/public`, no logic.
//!
//! One module per public header, named after it, holding that header's names in Rust case:
//! `__HYPERVISOR_sched_op` is [`xen::HYPERVISOR_SCHED_OP`], `SCHEDOP_block` is
//! [`sched::SCHEDOP_BLOCK`], `struct evtchn_send` is [`event_channel::EvtchnSend`]. A reader
//! holding the header finds every name by a case-insensitive search. Values were checked
//! against xen.git master (`xen/include/public`) and the unit tests pin every number.
//!
//! Two kinds of layout, for two kinds of memory:
//!
//! - **Pages Xen shares with us** (`shared_info`, `vcpu_info`, `vcpu_time_info`, the console
//!   ring) are described by byte offsets in a module named after the C struct
//!   (`xen::shared_info::WC_SEC`). Drivers reach those pages only through
//!   `ringbolt_shmem::SharedMemory`, one explicit load per field, so an offset is all they need;
//!   a Rust struct would invite a reference into memory the peer changes under us.
//! - **Hypercall arguments** live in our own memory and are passed by pointer, so they are
//!   `#[repr(C)]` structs ([`sched::SchedShutdown`], [`hvm::hvm_op::XenHvmParam`]) whose sizes
//!   and field offsets are checked at compile time.
//!
//! Guest handles (`XEN_GUEST_HANDLE(T)`) are a pointer in a struct; on x86_64 we spell them
//! `u64`, the guest virtual address (PV) or guest physical address (PVH) of the buffer.
//!
//! Interface version: the headers' current one (`__XEN_INTERFACE_VERSION__` > 0x00040600),
//! which is what `vcpu_time_info::FLAGS` and `xencons_interface::CONNECTION` need; both read
//! as zero on older hypervisors, which is the benign value of each.
#![no_std]
#![forbid(unsafe_code)]

pub mod arch_x86;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod io;
pub mod memory;
pub mod sched;
pub mod vcpu;
pub mod version;
pub mod xen;

/// Size of every page Xen shares or maps for us (`XEN_PAGE_SIZE`, `io/ring.h`).
pub const XEN_PAGE_SIZE: usize = 4096;

/// `domid_t`.
pub type DomId = u16;
/// `evtchn_port_t`.
pub type EvtchnPort = u32;
