//! [`smoltcp::phy::Device`] over a [`Netfront`].
//!
//! smoltcp asks for a receive token while it has frames to take and for a transmit token per
//! frame it sends. A [`NetDevice`] answers from the frontend's queue of received frames,
//! polling the rings when the queue is empty, and copies each frame smoltcp builds onto the
//! transmit ring, collecting completions first when the ring is full. So one
//! `Interface::poll` drains the receive ring, sends what the sockets have, and leaves the
//! response event armed; the kernel need only call it when the event channel fires or a
//! socket wants it.
//!
//! The device borrows the grant table too: a device is made for one `Interface::poll` call
//! ([`Netfront::device`]), so the kernel keeps the table wherever it likes between calls.

use alloc::vec::Vec;

use ringbolt_shmem::SharedMemory;
use ringbolt_xen_grant::GrantTable;
use ringbolt_xen_ring::Notify;
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::{ETHERNET_HEADER_LEN, MTU, Netfront, TxError};

/// A [`Netfront`] lent to smoltcp with the grant table it grants from.
#[derive(Debug)]
pub struct NetDevice<'a, M, N, G> {
    front: &'a mut Netfront<M, N>,
    grants: &'a mut GrantTable<G>,
}

impl<'a, M, N, G> NetDevice<'a, M, N, G> {
    pub(crate) fn new(front: &'a mut Netfront<M, N>, grants: &'a mut GrantTable<G>) -> Self {
        NetDevice { front, grants }
    }
}

/// A received frame, already copied out of the backend's reach.
#[derive(Debug)]
pub struct RxToken {
    frame: Vec<u8>,
}

impl RxToken {
    pub(crate) fn new(frame: Vec<u8>) -> Self {
        RxToken { frame }
    }
}

impl phy::RxToken for RxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.frame)
    }
}

/// Room for one frame on the transmit ring.
#[derive(Debug)]
pub struct TxToken<'a, M, N, G> {
    front: &'a mut Netfront<M, N>,
    grants: &'a mut GrantTable<G>,
}

impl<M: SharedMemory, N: Notify, G: SharedMemory> phy::TxToken for TxToken<'_, M, N, G> {
    /// smoltcp builds the frame in the frontend's scratch buffer, which is then copied onto
    /// the ring. A frame that no longer fits (a token handed out with a received frame, when
    /// the ring was full) is dropped and counted, as a full NIC queue would drop it; TCP
    /// retransmits.
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buffer = core::mem::take(&mut self.front.scratch);
        buffer.clear();
        buffer.resize(len, 0);
        let result = f(&mut buffer);
        match self.front.transmit(self.grants, &buffer) {
            Ok(()) => {}
            Err(e) => {
                self.front.stats.tx_dropped += 1;
                if e == TxError::Busy {
                    log::debug!("netfront: {len}-byte frame dropped: {e}");
                } else {
                    log::warn!("netfront: {len}-byte frame dropped: {e}");
                }
            }
        }
        self.front.scratch = buffer;
        result
    }
}

impl<M: SharedMemory, N: Notify, G: SharedMemory> phy::Device for NetDevice<'_, M, N, G> {
    type RxToken<'b>
        = RxToken
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b, M, N, G>
    where
        Self: 'b;

    fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.front.receive(self.grants)?;
        Some((
            RxToken::new(frame),
            TxToken {
                front: self.front,
                grants: self.grants,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
        self.front
            .can_transmit(self.grants, MTU + ETHERNET_HEADER_LEN)
            .then_some(TxToken {
                front: self.front,
                grants: self.grants,
            })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities()
    }
}

/// Ethernet, 1500-byte IP MTU (smoltcp counts the 14-byte header in), and every checksum in
/// software: see the crate documentation for why no offload is claimed.
pub(crate) fn capabilities() -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ethernet;
    caps.max_transmission_unit = MTU + ETHERNET_HEADER_LEN;
    caps.checksum = ChecksumCapabilities::default();
    caps
}
