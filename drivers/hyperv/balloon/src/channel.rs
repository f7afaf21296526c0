//! The balloon on an open VMBus channel.
//!
//! [`BalloonChannel`] moves messages between a [`Balloon`] and a [`ringbolt_vmbus::Channel`]:
//! every message is the data of an in-band packet with no completion requested and VMBus
//! transaction id 0 (Linux's `vmbus_sendpacket(channel, msg, size, 0, VM_PKT_DATA_INBAND, 0)`).
//! The kernel calls [`start`](BalloonChannel::start) once the channel is open,
//! [`poll`](BalloonChannel::poll) whenever the channel's event flag fires, and
//! [`status_report`](BalloonChannel::status_report) every
//! [`STATUS_REPORT_INTERVAL`](crate::STATUS_REPORT_INTERVAL).
//!
//! When the outbound ring is full, messages wait in the `Balloon` (no pages are taken for a
//! balloon response that cannot be sent yet); the host signals once it has drained the ring,
//! and the next `poll` sends them.

use alloc::vec::Vec;

use log::warn;
use ringbolt_shmem::SharedMemory;
use ringbolt_time::Instant;
use ringbolt_vmbus::packet::{OutgoingPacket, PacketType};
use ringbolt_vmbus::{Channel, ChannelError, Host, Incoming};

use crate::balloon::{Balloon, Error, Event};
use crate::message::MemoryStatus;
use crate::pages::Pages;

/// A [`Balloon`] and its receive buffer.
#[derive(Debug, Default)]
pub struct BalloonChannel {
    balloon: Balloon,
    receive: Vec<u8>,
}

impl BalloonChannel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn balloon(&self) -> &Balloon {
        &self.balloon
    }

    /// Starts version negotiation on a freshly opened channel.
    pub fn start<M: SharedMemory, const R: usize>(
        &mut self,
        channel: &mut Channel<M, R>,
        host: &impl Host,
        pages: &mut impl Pages,
    ) -> Result<(), ChannelError> {
        self.balloon.start();
        self.flush(channel, host, pages)
    }

    /// Handles every message waiting in `channel`, passing `on_message` each outcome (errors
    /// are already logged), then sends what the balloon has to say. Returns the number of
    /// packets read.
    pub fn poll<M: SharedMemory, const R: usize>(
        &mut self,
        channel: &mut Channel<M, R>,
        host: &impl Host,
        pages: &mut impl Pages,
        mut on_message: impl FnMut(Result<Option<Event>, Error>),
    ) -> Result<usize, ChannelError> {
        // A packet is never larger than its ring.
        self.receive.resize(channel.inbound().memory().len(), 0);
        let balloon = &mut self.balloon;
        let read = channel.poll(host, &mut self.receive, |incoming| {
            let result = match incoming {
                Incoming::Packet(p) if p.packet_type() == Some(PacketType::DataInBand) => {
                    balloon.handle(p.data(), pages)
                }
                Incoming::Packet(p)
                | Incoming::Completion { packet: p, .. }
                | Incoming::RejectedCompletion(p) => {
                    let error = Error::NotInBand {
                        packet_type: p.descriptor().packet_type,
                    };
                    warn!("hv-balloon: {error}");
                    Err(error)
                }
            };
            on_message(result);
        })?;
        self.flush(channel, host, pages)?;
        Ok(read)
    }

    /// Sends a status report of `status` if the host wants one now (see
    /// [`Balloon::status_report`]) and the ring has room; returns whether one was sent.
    pub fn status_report<M: SharedMemory, const R: usize>(
        &mut self,
        channel: &mut Channel<M, R>,
        host: &impl Host,
        now: Instant,
        status: &MemoryStatus,
    ) -> Result<bool, ChannelError> {
        // Queued messages go first; they wait only for room in the ring.
        if self.balloon.has_outgoing() {
            return Ok(false);
        }
        match self.balloon.status_report(now, status) {
            Some(report) => channel.send(host, &OutgoingPacket::in_band(&report)),
            None => Ok(false),
        }
    }

    /// Sends queued messages, oldest first, until the ring is full.
    fn flush<M: SharedMemory, const R: usize>(
        &mut self,
        channel: &mut Channel<M, R>,
        host: &impl Host,
        pages: &mut impl Pages,
    ) -> Result<(), ChannelError> {
        while let Some(message) = self.balloon.next_message(pages) {
            match channel.send(host, &OutgoingPacket::in_band(message)) {
                Ok(true) => self.balloon.message_sent(),
                Ok(false) => break,
                // Written, but the host was not told; it finds the message on its next look.
                Err(e @ ChannelError::Signal(_)) => {
                    self.balloon.message_sent();
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
