//! Hyper-V Dynamic Memory (the balloon), the guest half.
//!
//! The host offers one VMBus channel of class `525074dc-8985-46e2-8057-a307dc18a502`
//! ([`ringbolt_vmbus::guid::class::BALLOON`]). Over it the guest negotiates a protocol
//! version, reports what it can do, and then answers the host: it gives pages up when asked to
//! balloon ("balloon up"), takes them back when the host unballoons, refuses memory hot add, and
//! reports its memory use every second. This crate follows Linux's `drivers/hv/hv_balloon.c`
//! (the published guest) and QEMU's `hw/hyperv/hv-balloon.c` (the host of the project's
//! Hyper-V harness); it is written from their formats, not their code.
//!
//! # Layers
//!
//! - [`message`]: every message's layout; parsers over untrusted copies, encoders.
//! - [`Balloon`]: the sans-I/O protocol state machine. [`Balloon::handle`] takes one host
//!   message; [`Balloon::next_message`] yields what to send, building balloon responses (and
//!   taking their pages) one message at a time; [`Balloon::status_report`] builds the
//!   once-a-second report.
//! - [`BalloonChannel`]: a `Balloon` on an open [`ringbolt_vmbus::Channel`].
//!
//! # What the kernel supplies
//!
//! - The open channel, with the parameters below.
//! - A [`Pages`] implementation over its frame allocator: [`Pages::take`] gives frames to the
//!   host (the kernel decides how many it can spare), [`Pages::give_back`] returns them.
//! - A timer calling [`BalloonChannel::status_report`] every [`STATUS_REPORT_INTERVAL`] with a
//!   [`MemoryStatus`] snapshot (pages available, pages committed plus the floor the kernel will
//!   not balloon below).
//!
//! # Opening the channel
//!
//! As Linux's `balloon_connect_vsp`: two rings of [`RING_SIZE`] bytes (a header page and
//! 16 KiB of data, `VMBUS_RING_SIZE(16 * 1024)`), both in one GPADL, outbound first, so
//! `downstream_page_offset` is [`RING_PAGES`]; no open data; [`ringbolt_vmbus::Channel`] with
//! no request slots (the balloon sends no VMBus requests). The largest message either side
//! sends is one page, so the rings always hold several.
//!
//! # Versions
//!
//! The guest offers 2.0 (Windows 10), then 1.0 (Windows 8), then 0.3 (Windows 7, marked as the
//! last attempt), as Linux does. Linux's names for these are `DYNMEM_PROTOCOL_VERSION_3`,
//! `_2` and `_1`; the wire carries 0x0002_0000, 0x0001_0000 and 0x0000_0003. QEMU accepts 0.3
//! to 2.0, so the harness settles on 2.0 at once.
//!
//! # Trust
//!
//! The host cannot make the guest give up a page the kernel did not offer, or take back one
//! the host does not hold; see [`balloon`] for the rules. Everything it does wrong is an
//! [`Error`], logged, and the driver keeps serving.
//!
//! # Features
//!
//! `sim` adds `sim`: a simulated Dynamic Memory host (QEMU-like or Hyper-V-like, with hostile
//! modes) over `ringbolt_vmbus::sim::VmbusHost`, and a fake frame allocator.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod balloon;
pub mod channel;
pub mod message;
pub mod pages;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(test)]
mod tests;

use ringbolt_vmbus::PAGE_SIZE;

pub use balloon::{
    Balloon, Error, Event, GUEST_CAPABILITIES, MIN_STATUS_REPORT_GAP, Phase,
    STATUS_REPORT_INTERVAL, Stop,
};
pub use channel::BalloonChannel;
pub use message::{MemoryStatus, Version};
pub use pages::{PageRange, PageSet, Pages};
/// The clock [`Balloon::status_report`] takes: nanoseconds since boot.
pub use ringbolt_time::Instant;

/// Data bytes of each ring: Linux's `dm_ring_size` is `VMBUS_RING_SIZE(16 * 1024)`.
pub const RING_DATA_SIZE: usize = 16 * 1024;

/// Bytes of each ring's region: a header page and the data.
pub const RING_SIZE: usize = PAGE_SIZE + RING_DATA_SIZE;

/// Pages of each ring's region (5), and the `downstream_page_offset` to open the channel with.
pub const RING_PAGES: usize = RING_SIZE / PAGE_SIZE;
