//! Hyper-V integration services: shutdown, time synchronisation, heartbeat and key-value pair
//! exchange (KVP), the guest half.
//!
//! Each service is a VMBus channel the host offers (Linux's `hv_utils` drives them). The host
//! sends requests as in-band packets in the ICMSG format ([`icmsg`]): a pipe header, an IC
//! header naming the message type, and a payload; the guest answers each one in place. The
//! first request on every channel negotiates the framework and service versions.
//!
//! | service | class | requests | the guest |
//! |---|---|---|---|
//! | [`Shutdown`] | `0e0b6031-…-38d90ced39db` | power off, restart, hibernate | [`Action::PowerOff`], [`Action::Reboot`]; refuses hibernation |
//! | [`Timesync`] | `9527e630-…-e80ab0175caf` | host UTC time, sync or sample | [`Action::SetWallClock`] |
//! | [`Heartbeat`] | `57164f39-…-382f3bd5422d` | a sequence number | answers it plus one |
//! | [`Kvp`] | `a9a0f4e7-…-8a841e8c03e6` | get, set, delete, enumerate keys; IP info | answers from in-memory pools |
//!
//! # Layers
//!
//! - [`Ic`] is sans-I/O: [`Ic::handle`] takes a request packet's data and writes the answer's
//!   bytes into a buffer, returning what the kernel must do ([`Action`]). It runs the framework
//!   (headers, negotiation, failure answers) and hands service messages to a [`Service`].
//! - [`IcChannel`] puts an `Ic` on an open [`ringbolt_vmbus::Channel`]: it drains the channel,
//!   answers, and sends the answers back with the requests' transaction ids.
//!
//! What the kernel supplies: the open channel (found by the offer's class,
//! [`ringbolt_vmbus::guid::class`]), the partition reference time for time sync
//! ([`timesync::ReferenceClock`]), the KVP pools' intrinsic entries (OS name and version,
//! FQDN: [`kvp::intrinsic`]) and its adapters' addresses ([`kvp::Adapter`]), and the policy
//! for each action.
//!
//! # Trust
//!
//! The host is not trusted with the guest's memory safety. Every request is a copied byte
//! slice; every size in it (the pipe size, `icmsgsize`, version counts, KVP key and value
//! sizes) is checked against the bytes that arrived and the field it describes, and every
//! string is checked for its terminator and for valid UTF-16. What fails is an [`Error`],
//! logged where it is found, and answered with a failure status wherever the request's
//! headers could be read; the service keeps working.
//!
//! # Features
//!
//! `sim` adds `sim`, a simulated Hyper-V host for each service (negotiation, requests, checks
//! of every answer, hostile messages), over `ringbolt_vmbus::sim::VmbusHost`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod channel;
mod error;
pub mod heartbeat;
pub mod icmsg;
pub mod kvp;
mod service;
pub mod shutdown;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(test)]
mod tests;
pub mod timesync;
mod wire;

pub use channel::IcChannel;
pub use error::{Error, Field, KvpError, NegotiationError};
pub use heartbeat::Heartbeat;
pub use icmsg::{Status, Version};
pub use kvp::Kvp;
pub use service::{Action, Ic, Rejected, Reply, Service};
pub use shutdown::Shutdown;
pub use timesync::Timesync;
