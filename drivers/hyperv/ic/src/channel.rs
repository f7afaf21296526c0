//! An IC service on an open VMBus channel.
//!
//! [`IcChannel::poll`] drains the channel, answers each request through its [`Ic`] and sends
//! the answers back as in-band packets carrying the request's transaction id (Linux's
//! `vmbus_sendpacket(channel, buf, len, requestid, VM_PKT_DATA_INBAND, 0)`). The kernel calls
//! it whenever the channel's event flag fires.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use log::warn;
use ringbolt_shmem::SharedMemory;
use ringbolt_vmbus::packet::{OutgoingPacket, PacketType};
use ringbolt_vmbus::ring::RingError;
use ringbolt_vmbus::{Channel, ChannelError, Host, Incoming};

use crate::error::Error;
use crate::service::{Action, Ic, Rejected, Reply, Service};

/// Answers held while the outbound ring is full. The host sends one request at a time and
/// waits for its answer, so more than a few means it is flooding the channel: the oldest are
/// dropped.
pub const MAX_PENDING_ANSWERS: usize = 8;

/// A service on a channel, with its buffers; see the module documentation.
#[derive(Debug)]
pub struct IcChannel<S> {
    ic: Ic<S>,
    receive: Vec<u8>,
    answer: Vec<u8>,
    /// Answers not yet in the ring: (VMBus transaction id, bytes).
    pending: VecDeque<(u64, Vec<u8>)>,
}

impl<S: Service> IcChannel<S> {
    pub fn new(service: S) -> Self {
        IcChannel {
            ic: Ic::new(service),
            receive: Vec::new(),
            answer: Vec::new(),
            pending: VecDeque::new(),
        }
    }

    pub fn ic(&self) -> &Ic<S> {
        &self.ic
    }

    pub fn ic_mut(&mut self) -> &mut Ic<S> {
        &mut self.ic
    }

    /// Answers not yet sent because the outbound ring was full.
    pub fn pending_answers(&self) -> usize {
        self.pending.len()
    }

    /// Answers every request waiting in `channel`, passing `on_request` each request's
    /// outcome: the action to take, or why it was refused (already logged). Returns the
    /// number of packets read.
    ///
    /// Answers that do not fit the outbound ring wait for the next call (the host signals once
    /// it has drained the ring).
    pub fn poll<M: SharedMemory, const REQUESTS: usize>(
        &mut self,
        channel: &mut Channel<M, REQUESTS>,
        host: &impl Host,
        mut on_request: impl FnMut(Result<Action, Error>),
    ) -> Result<usize, ChannelError> {
        // A packet is never larger than its ring, so neither buffer can be too small.
        let size = channel.inbound().memory().len();
        self.receive.resize(size, 0);
        self.answer.resize(size, 0);
        let (ic, answer, pending) = (&mut self.ic, &mut self.answer, &mut self.pending);
        let read = channel.poll(host, &mut self.receive, |incoming| {
            let packet = match incoming {
                Incoming::Packet(p) if p.packet_type() == Some(PacketType::DataInBand) => p,
                Incoming::Packet(p)
                | Incoming::Completion { packet: p, .. }
                | Incoming::RejectedCompletion(p) => {
                    let error = Error::NotInBand {
                        packet_type: p.descriptor().packet_type,
                    };
                    warn!("{} IC: {error}", S::NAME);
                    return on_request(Err(error));
                }
            };
            let (len, outcome) = match ic.handle(packet.data(), answer) {
                Ok(Reply { len, action, .. }) => (Some(len), action.map(Ok)),
                Err(Rejected { error, reply }) => (reply, Some(Err(error))),
            };
            if let Some(len) = len {
                pending.push_back((packet.transaction_id(), answer[..len].to_vec()));
            }
            if let Some(outcome) = outcome {
                on_request(outcome);
            }
        })?;
        self.flush(channel, host)?;
        if self.pending.len() > MAX_PENDING_ANSWERS {
            let dropped = self.pending.len() - MAX_PENDING_ANSWERS;
            warn!(
                "{} IC: the host floods the channel; {dropped} answers dropped",
                S::NAME
            );
            self.pending.drain(..dropped);
        }
        Ok(read)
    }

    /// Sends pending answers, oldest first, until the ring is full.
    fn flush<M: SharedMemory, const REQUESTS: usize>(
        &mut self,
        channel: &mut Channel<M, REQUESTS>,
        host: &impl Host,
    ) -> Result<(), ChannelError> {
        while let Some((transaction_id, bytes)) = self.pending.front() {
            let packet = OutgoingPacket {
                transaction_id: *transaction_id,
                ..OutgoingPacket::in_band(bytes)
            };
            match channel.send(host, &packet) {
                Ok(true) => {}
                Ok(false) => break,
                // An answer larger than the outbound ring (smaller than the inbound one) can
                // never be sent; holding it would stop every later one.
                Err(ChannelError::Ring(RingError::PacketTooLarge { len })) => {
                    warn!("{} IC: {len}-byte answer cannot fit the ring", S::NAME);
                }
                // Written, but the host was not told; it finds the answer on its next look.
                Err(e @ ChannelError::Signal(_)) => {
                    self.pending.pop_front();
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            self.pending.pop_front();
        }
        Ok(())
    }
}
