//! An open channel: its two rings, request ids, and signalling the host.
//!
//! [`Channel`] is what a device driver holds once [`Connection`](crate::Connection) reports
//! [`Event::Opened`](crate::Event::Opened). It writes packets to the guest-to-host ring,
//! signals the host when [`RingWriter`] says so, drains the host-to-guest ring in batches, and
//! checks every completion against the requests it issued.
//!
//! Signalling is always `HvSignalEvent` on the offer's `connection_id`, as Linux does for
//! channels in low-latency mode; the monitor-page alternative only batches signals.

use core::fmt;

use ringbolt_shmem::SharedMemory;

use crate::packet::{FLAG_COMPLETION_REQUESTED, OutgoingPacket, Packet, PacketType};
use crate::request::Requests;
use crate::ring::{RingError, RingReader, RingWriter, Write};
use crate::{Host, HvStatus};

/// Why a channel operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    Ring(RingError),
    /// `HvSignalEvent` failed; the packet was written.
    Signal(HvStatus),
    /// Every request id is in use.
    TooManyRequests,
}

impl From<RingError> for ChannelError {
    fn from(e: RingError) -> Self {
        ChannelError::Ring(e)
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Ring(e) => write!(f, "{e}"),
            ChannelError::Signal(s) => write!(f, "signalling the host: {s}"),
            ChannelError::TooManyRequests => write!(f, "no free request id"),
        }
    }
}

impl core::error::Error for ChannelError {}

/// A packet the host sent, as [`Channel::poll`] delivers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Anything but a completion: in-band data, transfer-page packets, a host request.
    Packet(Packet<'a>),
    /// The completion of a request this channel issued, with the cookie given to
    /// [`Channel::send_request`].
    Completion { cookie: u64, packet: Packet<'a> },
    /// A completion whose transaction id is not outstanding (never issued, or completed
    /// already). It is consumed and should be ignored; it is logged.
    RejectedCompletion(Packet<'a>),
}

/// The guest's end of an open channel, with up to `REQUESTS` requests in flight.
#[derive(Debug)]
pub struct Channel<M, const REQUESTS: usize> {
    outbound: RingWriter<M>,
    inbound: RingReader<M>,
    /// Where to `HvSignalEvent`: the offer's `connection_id`.
    connection_id: u32,
    requests: Requests<REQUESTS>,
}

impl<M: SharedMemory, const REQUESTS: usize> Channel<M, REQUESTS> {
    /// Takes over the rings of an opened channel: `outbound` (guest-to-host) and `inbound`, both
    /// prepared with [`ring::init`](crate::ring::init) before their GPADL was created.
    pub fn new(outbound: M, inbound: M, connection_id: u32) -> Result<Self, ChannelError> {
        Ok(Channel {
            outbound: RingWriter::new(outbound)?,
            inbound: RingReader::new(inbound)?,
            connection_id,
            requests: Requests::new(),
        })
    }

    pub fn outbound(&self) -> &RingWriter<M> {
        &self.outbound
    }

    pub fn inbound(&self) -> &RingReader<M> {
        &self.inbound
    }

    /// Requests issued and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.requests.outstanding()
    }

    /// Writes `packet` and signals the host if the ring needs it. Returns `false` if the ring
    /// was full: the host will signal once it has drained enough, and the caller retries then.
    pub fn send(
        &mut self,
        host: &impl Host,
        packet: &OutgoingPacket<'_>,
    ) -> Result<bool, ChannelError> {
        match self.outbound.write(packet)? {
            Write::Written { signal } => {
                if signal {
                    host.signal_event(self.connection_id)
                        .map_err(ChannelError::Signal)?;
                }
                Ok(true)
            }
            Write::Full { .. } => Ok(false),
        }
    }

    /// Sends `packet` as a request: with a fresh transaction id and the completion-requested
    /// flag. Returns the id, or `None` if the ring was full (no id stays issued then).
    pub fn send_request(
        &mut self,
        host: &impl Host,
        packet: &OutgoingPacket<'_>,
        cookie: u64,
    ) -> Result<Option<u64>, ChannelError> {
        let id = self
            .requests
            .issue(cookie)
            .map_err(|_| ChannelError::TooManyRequests)?;
        let request = OutgoingPacket {
            flags: packet.flags | FLAG_COMPLETION_REQUESTED,
            transaction_id: id,
            ..*packet
        };
        let sent = self.send(host, &request);
        if !matches!(sent, Ok(true) | Err(ChannelError::Signal(_))) {
            // Not in the ring: the id must not be completable.
            let _ = self.requests.complete(id);
        }
        Ok(sent?.then_some(id))
    }

    /// Drains the host-to-guest ring into `buf` (which must hold the largest packet the device
    /// sends), passing each packet to `on_packet`, and signals the host if it was waiting for
    /// the space. Returns the number of packets.
    pub fn poll(
        &mut self,
        host: &impl Host,
        buf: &mut [u8],
        mut on_packet: impl FnMut(Incoming<'_>),
    ) -> Result<usize, ChannelError> {
        let requests = &mut self.requests;
        let drained = self.inbound.drain(buf, |packet| {
            if packet.packet_type() != Some(PacketType::Completion) {
                return on_packet(Incoming::Packet(packet));
            }
            // `complete` logs what it rejects.
            match requests.complete(packet.transaction_id()) {
                Ok(cookie) => on_packet(Incoming::Completion { cookie, packet }),
                Err(_) => on_packet(Incoming::RejectedCompletion(packet)),
            }
        })?;
        if drained.signal {
            host.signal_event(self.connection_id)
                .map_err(ChannelError::Signal)?;
        }
        Ok(drained.packets)
    }
}
