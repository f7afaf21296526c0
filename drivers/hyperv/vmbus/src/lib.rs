//! Hyper-V VMBus core: channel messages, connection, GPADLs and ring buffers.
//!
//! VMBus is how a Hyper-V guest finds and talks to its synthetic devices. It has two layers, and
//! this crate is the guest half of both, with no I/O of its own:
//!
//! - **Channel messages** ([`message`]) travel over the SynIC: the guest posts them with the
//!   `HvPostMessage` hypercall, the host delivers its own into the guest's SINT 2 message slot.
//!   They negotiate a protocol version, enumerate devices (offers), describe guest memory to the
//!   host (GPADLs) and open and close channels. [`Connection`] is the state machine that drives
//!   them: it is fed each message the kernel copies out of the message slot and answers through
//!   the [`Host`] trait.
//! - **Ring buffers** ([`ring`]) carry each open channel's traffic: one guest-to-host and one
//!   host-to-guest ring, in guest memory the host maps through a GPADL, with the host signalled by
//!   `HvSignalEvent` and the guest by a SynIC event flag. [`Channel`] pairs the two rings with
//!   request-id tracking ([`Requests`]).
//!
//! # Boundary: the [`Host`] trait
//!
//! The kernel owns the hardware side: SynIC MSRs, the message and event-flag pages, the hypercall
//! page, and the frames behind ring buffers. It implements [`Host`], in the manner of
//! virtio-drivers' `Hal`: post a message, signal an event, and name the guest page numbers of a
//! buffer it shares. The kernel's interrupt path only copies a SynIC message out of its slot
//! (then writes `EOM`) or notes which channel's event flag was set; everything else runs in
//! thread context and calls into this crate.
//!
//! ```text
//!  kernel: SINT 2 message slot --copy--> Connection::handle_message --Host::post_message--> host
//!          SINT 2 event flag [relid] --> Channel::poll (reads the inbound ring)
//!          Channel::send --ring write--> Host::signal_event(offer.connection_id) --> host
//! ```
//!
//! # Trust
//!
//! The host is not trusted with our memory safety. Every channel message is a copied byte slice
//! parsed into a checked struct ([`message::HostMessage`]); every ring index, packet length and
//! offset the host writes is read once, validated, and copied out before use. What fails
//! validation is an error value (and a `log` line), never a panic or an out-of-bounds access.
//! Every shared-memory access goes through [`SharedMemory`].
//!
//! # Protocol versions
//!
//! The guest offers versions newest first, 5.3 down to 2.4 (Linux's `vmbus_versions`: Windows 7
//! and Server 2008's 1.1 and 0.13 are no longer offered), and falls back on each rejection.
//! Versions from 5.0 send the first message to connection id 4 and every later one to the id the
//! host returns in `VERSION_RESPONSE`; older versions use connection id 1 throughout. The host
//! always delivers messages on SINT 2 ([`MESSAGE_SINT`]); from 5.0 the guest says so explicitly.
//! The project's Hyper-V harness (QEMU's VMBus server) speaks up to 4.0.
//!
//! # Features
//!
//! `sim` adds `sim::VmbusHost`, a simulated VMBus host (QEMU-like or Hyper-V-like, with hostile
//! modes) for tests of this crate and of device drivers.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "sim"))]
extern crate alloc;

pub mod channel;
pub mod connection;
pub mod guid;
pub mod message;
pub mod packet;
pub mod request;
pub mod ring;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(test)]
mod tests;
pub mod wire;

use core::fmt;

use ringbolt_shmem::SharedMemory;

pub use channel::{Channel, ChannelError, Incoming};
pub use connection::{Config, Connection, Error, Event, GpadlHandle, OpenParams};
pub use guid::Guid;
pub use message::Version;
pub use request::Requests;

/// The SynIC interrupt source on which the host delivers VMBus channel messages (and, from
/// protocol 2.4, channel event flags): Linux's `VMBUS_MESSAGE_SINT`.
pub const MESSAGE_SINT: u8 = 2;

/// The SynIC message type of every VMBus channel message: what Linux's `vmbus_post_msg` passes
/// to `HvPostMessage` and QEMU calls `HV_MESSAGE_VMBUS`. Passed to [`Host::post_message`]; the
/// kernel also finds it in the message slot's header.
pub const VMBUS_MESSAGE_TYPE: u32 = 1;

/// Hyper-V's page size, the unit of GPADL page numbers and ring offsets, whatever the guest's own
/// page size.
pub const PAGE_SIZE: usize = 4096;

/// A Hyper-V hypercall status code (TLFS "Hypercall Status Codes"); nonzero means failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvStatus(pub u16);

impl HvStatus {
    /// `HV_STATUS_INSUFFICIENT_MEMORY`: transient, worth a retry.
    pub const INSUFFICIENT_MEMORY: HvStatus = HvStatus(0x0b);
    /// `HV_STATUS_INVALID_CONNECTION_ID`: nobody listens on that connection id. A host older
    /// than protocol 5.0 answers this to an `INITIATE_CONTACT` on connection id 4.
    pub const INVALID_CONNECTION_ID: HvStatus = HvStatus(0x12);
    /// `HV_STATUS_INSUFFICIENT_BUFFERS`: the host's message queue is full; transient.
    pub const INSUFFICIENT_BUFFERS: HvStatus = HvStatus(0x13);
}

impl fmt::Display for HvStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hypercall status {:#x}", self.0)
    }
}

/// What the kernel provides to VMBus: the SynIC and hypercall operations, and the page numbers of
/// memory it shares with the host.
///
/// Every method takes `&self`, like [`SharedMemory`]: posting a message and signalling a channel
/// can happen from the same driver through one shared handle.
pub trait Host {
    /// Memory the guest shares with the host by GPADL: ring buffers, and device buffers such as a
    /// network receive area. Its regions are whole 4 KiB pages.
    type Memory: SharedMemory;

    /// `HvPostMessage`: posts `payload` (at most 240 bytes) as a SynIC message of
    /// `message_type` ([`VMBUS_MESSAGE_TYPE`]) on `connection_id`.
    ///
    /// Transient failures (`INSUFFICIENT_BUFFERS`, `INSUFFICIENT_MEMORY`) are the
    /// implementation's to retry with a backoff, as Linux's `vmbus_post_msg` does; it must return
    /// [`HvStatus::INVALID_CONNECTION_ID`] at once, because that is how an old host rejects a new
    /// protocol version.
    fn post_message(
        &self,
        connection_id: u32,
        message_type: u32,
        payload: &[u8],
    ) -> Result<(), HvStatus>;

    /// `HvSignalEvent` on `connection_id` with event flag 0: tells the host a channel's ring
    /// needs attention.
    fn signal_event(&self, connection_id: u32) -> Result<(), HvStatus>;

    /// The guest page number (guest physical address / 4096) of the `index`th 4 KiB page of
    /// `memory`, or `None` past its end. The host maps the memory by these numbers.
    fn page_number(&self, memory: &Self::Memory, index: usize) -> Option<u64>;
}

impl<H: Host + ?Sized> Host for &H {
    type Memory = H::Memory;

    fn post_message(
        &self,
        connection_id: u32,
        message_type: u32,
        payload: &[u8],
    ) -> Result<(), HvStatus> {
        (**self).post_message(connection_id, message_type, payload)
    }

    fn signal_event(&self, connection_id: u32) -> Result<(), HvStatus> {
        (**self).signal_event(connection_id)
    }

    fn page_number(&self, memory: &Self::Memory, index: usize) -> Option<u64> {
        (**self).page_number(memory, index)
    }
}
