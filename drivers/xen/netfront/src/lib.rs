//! Xen network frontend (`xen/include/public/io/netif.h`), sans-I/O, and a smoltcp device.
//!
//! A Xen virtual interface is served by a backend (netback in dom0) over two `io/ring.h`
//! rings and one event channel. On the transmit ring we hand the backend frames in granted
//! pages; on the receive ring we post granted pages for the backend to copy incoming frames
//! into. This crate is that protocol and nothing else: the kernel maps pages, makes
//! hypercalls, runs the xenbus handshake and waits for events, and hands the results in
//! through small traits and plain data:
//!
//! - [`SharedMemory`] for the two ring pages and the buffer pages (our memory the backend
//!   reaches), [`GrantTable`] for granting, [`Notify`] for the event channel;
//! - [`Page`] for each of them: the memory and the frame number to grant;
//! - [`xenbus`] for the xenstore nodes, parsed from and rendered to strings.
//!
//! # Life of an interface
//!
//! 1. When the backend is in `InitWait`, [`BackendFeatures::parse`] reads its nodes (a backend
//!    without `feature-rx-copy` is refused here) and [`MacAddress::parse`] the frontend's
//!    `mac`.
//! 2. [`Setup::new`] initialises and grants both rings; [`Setup::frontend_keys`] is what the
//!    kernel writes in the frontend's directory.
//! 3. [`Setup::connect`] takes the buffer pages, posts the receive pages, and yields the
//!    [`Netfront`]; then the kernel switches the frontend to `Connected` (which is what makes
//!    netback connect) and waits for the backend to be `Connected` too.
//! 4. [`Netfront::device`] lends the frontend to smoltcp as a [`smoltcp::phy::Device`];
//!    `Interface::poll` over it sends, receives and collects completions. Call it whenever
//!    the event channel fires, or a socket or timer wants it. [`Netfront::transmit`],
//!    [`Netfront::receive`] and [`Netfront::poll`] are the same operations without smoltcp.
//!
//! One queue, done fully. Multiple queues (`multi-queue-max-queues`, reported in
//! [`BackendFeatures::max_queues`]), split event channels and the control ring are not
//! implemented; netback serves a frontend that asks for none of them with one queue.
//!
//! # Pages, grants and copies
//!
//! Every frame is copied: out of smoltcp's buffer into transmit pages, out of receive pages
//! into a `Vec` for smoltcp. Each page is granted for one request and its access ended when
//! the response comes back; a page the backend still has mapped then is held, never reused
//! or read, until a later poll ends the grant (see `pool`). A frame larger than a page is
//! sent in page-sized fragments only if the backend offers `feature-sg`; received frames are
//! reassembled from as many fragments as the backend used, up to [`MAX_FRAME_LEN`].
//!
//! # Checksums
//!
//! smoltcp computes every checksum it sends and verifies every one it receives, and the
//! device says so (the default [`ChecksumCapabilities`]). Offloading transmit checksums would
//! need the frontend to leave the pseudo-header sum in the field (`NETTXF_csum_blank` with
//! Linux's `CHECKSUM_PARTIAL` meaning), which smoltcp does not produce; offloading receive
//! verification would need a per-frame flag smoltcp cannot take. So we send no checksum
//! flags, and write `feature-no-csum-offload = 1` so the backend fills in checksums before
//! handing us a frame; a frame that arrives with `NETRXF_csum_blank` anyway is dropped.
//!
//! # A backend we do not trust
//!
//! Every value the backend writes is checked before it is used: ring indices by
//! `ringbolt_xen_ring` (an impossible producer index breaks the ring, and with it this
//! frontend: [`Netfront::broken`], every grant in flight ended), transmit response ids
//! against our table of requests in flight, receive responses against the slot they sit in
//! and the page they describe. A response that fails is logged, counted
//! ([`Stats::protocol_errors`]) and dropped with its frame; nothing the backend writes can
//! make us panic, index out of bounds, or hand smoltcp bytes we did not check.
//!
//! [`ChecksumCapabilities`]: smoltcp::phy::ChecksumCapabilities
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod device;
mod pool;
mod rx;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod tx;
mod wire;
pub mod xenbus;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use ringbolt_xen_abi::io::netif::{
    NETIF_RX_SRING_ENTRY_SIZE, NETIF_TX_SRING_ENTRY_SIZE, XEN_NETIF_MAX_TX_SIZE,
};
use ringbolt_xen_abi::{DomId, EvtchnPort, XEN_PAGE_SIZE};
use ringbolt_xen_grant::{GrantError, GrantRef, GrantTable};
use ringbolt_xen_ring::{FrontRing, Notify, RingError};

pub use device::{NetDevice, RxToken, TxToken};
pub use rx::{MAX_FRAGMENTS, RX_QUEUE_FRAMES};
pub use xenbus::{BackendFeatures, ConfigError, FrontendKeys, MacAddress};

/// The IP MTU the device reports: Ethernet's 1500 bytes, what netback assumes of a frontend.
pub const MTU: usize = 1500;
/// An Ethernet header without VLAN tag. smoltcp's MTU for an Ethernet device includes it.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// The longest frame sent or received: the largest a transmit request's 16-bit size can
/// describe. Transmitting more than a page needs the backend's `feature-sg`.
pub const MAX_FRAME_LEN: usize = XEN_NETIF_MAX_TX_SIZE;

/// A page of our memory the backend reaches through a grant: a ring, or a buffer.
#[derive(Debug)]
pub struct Page<M> {
    /// The page, as we read and write it.
    pub mem: M,
    /// The frame to grant: the GFN for a PVH/HVM guest, the MFN for a PV guest.
    pub frame: u64,
}

/// Why setting up the frontend failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    Ring(RingError),
    Grant(GrantError),
    /// A ring region given to [`Setup::new`] is this many bytes, not one page.
    RingNotOnePage(usize),
}

impl From<RingError> for NetError {
    fn from(e: RingError) -> Self {
        NetError::Ring(e)
    }
}

impl From<GrantError> for NetError {
    fn from(e: GrantError) -> Self {
        NetError::Grant(e)
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Ring(e) => write!(f, "netif ring: {e}"),
            NetError::Grant(e) => write!(f, "{e}"),
            NetError::RingNotOnePage(len) => {
                write!(f, "a netif ring is one page, not {len:#x} bytes")
            }
        }
    }
}

impl core::error::Error for NetError {}

/// Why [`Netfront::transmit`] refused a frame. Nothing of it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// Shorter than an Ethernet header (netback drops such frames).
    TooShort(usize),
    /// Longer than [`Netfront::max_frame_len`].
    TooLong { len: usize, max: usize },
    /// Not enough free ring slots, ids, pages or grant references now; retry after
    /// completions.
    Busy,
    /// A page could not be granted.
    Grant(GrantError),
    /// A buffer page rejected the copy.
    Page(OutOfBounds),
    /// The backend broke a ring; the frontend is unusable.
    Broken(RingError),
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::TooShort(len) => write!(f, "{len}-byte frame shorter than its header"),
            TxError::TooLong { len, max } => {
                write!(
                    f,
                    "{len}-byte frame longer than the {max} bytes we can send"
                )
            }
            TxError::Busy => write!(f, "no room on the transmit ring now"),
            TxError::Grant(e) => write!(f, "{e}"),
            TxError::Page(e) => write!(f, "transmit page: {e}"),
            TxError::Broken(e) => write!(f, "frontend disabled: {e}"),
        }
    }
}

impl core::error::Error for TxError {}

/// Counters since connect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames put on the transmit ring, and their bytes.
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Transmit requests the backend answered with a failure.
    pub tx_errors: u64,
    /// Frames smoltcp built that found no room on the ring (or were refused) and were lost.
    pub tx_dropped: u64,
    /// Frames received, and their bytes.
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Received packets dropped: failed by the backend, or failing our checks.
    pub rx_errors: u64,
    /// Responses the backend got wrong: ids not in flight or not their slot's, statuses
    /// netif.h lacks, fragments past their page, pages still mapped, oversized packets.
    pub protocol_errors: u64,
}

/// The frontend before connecting: both rings initialised and granted.
#[derive(Debug)]
pub struct Setup<M> {
    tx: FrontRing<M>,
    rx: FrontRing<M>,
    tx_ref: GrantRef,
    rx_ref: GrantRef,
    backend: DomId,
}

impl<M: SharedMemory> Setup<M> {
    /// Initialises the transmit and receive rings (one page each) and grants them to the
    /// `backend` domain.
    ///
    /// Each region must be exactly one page: the backend sizes a ring from the pages we
    /// announce, and we announce one per ring.
    pub fn new<G: SharedMemory>(
        grants: &mut GrantTable<G>,
        tx_ring: Page<M>,
        rx_ring: Page<M>,
        backend: DomId,
    ) -> Result<Self, NetError> {
        for ring in [&tx_ring, &rx_ring] {
            if ring.mem.len() != XEN_PAGE_SIZE {
                return Err(NetError::RingNotOnePage(ring.mem.len()));
            }
        }
        let tx = FrontRing::new(tx_ring.mem, NETIF_TX_SRING_ENTRY_SIZE)?;
        let rx = FrontRing::new(rx_ring.mem, NETIF_RX_SRING_ENTRY_SIZE)?;
        let tx_ref = grants.grant_access(backend, tx_ring.frame, false)?;
        let rx_ref = match grants.grant_access(backend, rx_ring.frame, false) {
            Ok(gref) => gref,
            Err(e) => {
                // Not announced yet, so nothing maps it; a failure would be a bug elsewhere.
                if let Err(end) = grants.end_access(tx_ref) {
                    log::error!("netfront: ending the tx ring's grant: {end}");
                }
                return Err(e.into());
            }
        };
        Ok(Setup {
            tx,
            rx,
            tx_ref,
            rx_ref,
            backend,
        })
    }

    /// The nodes to write in the frontend's xenstore directory; `event_channel` is the port
    /// the kernel allocated for the backend (`EVTCHNOP_alloc_unbound`), serving both rings.
    pub fn frontend_keys(&self, event_channel: EvtchnPort) -> FrontendKeys {
        FrontendKeys {
            tx_ring_ref: self.tx_ref,
            rx_ring_ref: self.rx_ref,
            event_channel,
        }
    }

    /// Takes the buffer pages and posts the receive pages: call it after writing
    /// [`frontend_keys`](Self::frontend_keys), before switching to `Connected`. `notify`
    /// signals the event channel.
    ///
    /// `tx_pages` bound the frames in flight (one page per 4 KiB of frame); `rx_pages` are
    /// kept posted, up to the ring's 256 slots, and must be at least [`MAX_FRAGMENTS`] for the
    /// largest packets. Pages shorter than a page, or whose frame does not fit a v1 grant
    /// entry, are dropped with a warning.
    pub fn connect<G: SharedMemory, N: Notify>(
        self,
        grants: &mut GrantTable<G>,
        features: &BackendFeatures,
        notify: N,
        tx_pages: Vec<Page<M>>,
        rx_pages: Vec<Page<M>>,
    ) -> Netfront<M, N> {
        let mut front = Netfront {
            tx: tx::Tx::new(self.tx, tx_pages),
            rx: rx::Rx::new(self.rx, rx_pages),
            backend: self.backend,
            features: *features,
            notify,
            received: VecDeque::new(),
            stats: Stats::default(),
            broken: None,
            scratch: Vec::new(),
        };
        if let Err(e) = front.refill(grants) {
            front.fail(grants, e);
        }
        front
    }
}

/// A connected network frontend. See the crate documentation.
#[derive(Debug)]
pub struct Netfront<M, N> {
    tx: tx::Tx<M>,
    rx: rx::Rx<M>,
    backend: DomId,
    features: BackendFeatures,
    notify: N,
    /// Received frames not yet taken.
    received: VecDeque<Vec<u8>>,
    stats: Stats,
    broken: Option<RingError>,
    /// The buffer a [`TxToken`] lends smoltcp, kept to avoid an allocation per frame.
    scratch: Vec<u8>,
}

impl<M: SharedMemory, N: Notify> Netfront<M, N> {
    /// What the backend published.
    pub fn features(&self) -> &BackendFeatures {
        &self.features
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How the backend broke a ring, if it did: the frontend then sends and receives nothing.
    pub fn broken(&self) -> Option<RingError> {
        self.broken
    }

    /// The longest frame [`transmit`](Self::transmit) takes: a page without the backend's
    /// `feature-sg`, [`MAX_FRAME_LEN`] with it.
    pub fn max_frame_len(&self) -> usize {
        if self.features.sg {
            MAX_FRAME_LEN
        } else {
            XEN_PAGE_SIZE
        }
    }

    /// Transmit requests whose responses have not come back.
    pub fn tx_in_flight(&self) -> usize {
        self.tx.in_flight()
    }

    /// Receive pages lent to the backend: posted, or filled and not yet consumed.
    pub fn rx_posted(&self) -> usize {
        self.rx.posted()
    }

    /// Pages the backend still maps after answering: neither reused nor read.
    pub fn held_pages(&self) -> usize {
        self.tx.pool.held_count() + self.rx.pool.held_count()
    }

    /// Whether a frame of `len` bytes fits on the transmit ring now, collecting completions
    /// first if it does not.
    pub fn can_transmit<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        len: usize,
    ) -> bool {
        let fragments = len.div_ceil(XEN_PAGE_SIZE).max(1);
        if self.broken.is_some() {
            return false;
        }
        if !self.tx.has_room(grants, fragments) {
            self.collect_tx(grants);
        }
        self.broken.is_none() && self.tx.has_room(grants, fragments)
    }

    /// Copies `frame` (a whole Ethernet frame, without FCS) onto the transmit ring and
    /// notifies the backend if it asked to be.
    pub fn transmit<G: SharedMemory>(
        &mut self,
        grants: &mut GrantTable<G>,
        frame: &[u8],
    ) -> Result<(), TxError> {
        let len = frame.len();
        if len < ETHERNET_HEADER_LEN {
            return Err(TxError::TooShort(len));
        }
        let max = self.max_frame_len();
        if len > max {
            return Err(TxError::TooLong { len, max });
        }
        if !self.can_transmit(grants, len) {
            return Err(match self.broken {
                Some(e) => TxError::Broken(e),
                None => TxError::Busy,
            });
        }
        let pushed = self
            .tx
            .push(grants, self.backend, frame)
            .and_then(|()| self.tx.ring.publish().map_err(TxError::Broken));
        match pushed {
            Ok(notify) => {
                if notify {
                    self.notify.notify();
                }
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += len as u64;
                Ok(())
            }
            Err(TxError::Broken(e)) => {
                self.fail(grants, e);
                Err(TxError::Broken(e))
            }
            Err(e) => Err(e),
        }
    }

    /// The next received frame, polling the rings if none is waiting.
    pub fn receive<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>) -> Option<Vec<u8>> {
        if self.received.is_empty() {
            // Errors break the frontend and are logged; there is nothing more to say here.
            let _ = self.poll(grants);
        }
        self.received.pop_front()
    }

    /// Collects transmit completions, consumes received frames (up to [`RX_QUEUE_FRAMES`]
    /// waiting), reposts receive pages and retries held pages. Call it when the event channel
    /// fires (smoltcp's `Interface::poll` over [`device`](Self::device) calls it as needed).
    ///
    /// An error means the backend broke a ring: every grant in flight has been ended (or its
    /// page held) and the frontend is disabled.
    pub fn poll<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>) -> Result<(), RingError> {
        if let Some(e) = self.broken {
            // Pages held when it broke still come back once the backend unmaps them.
            self.tx.pool.retry_held(grants);
            self.rx.pool.retry_held(grants);
            return Err(e);
        }
        let serviced = self
            .tx
            .collect(grants, &mut self.stats)
            .and_then(|()| self.rx.consume(grants, &mut self.received, &mut self.stats))
            .and_then(|()| self.refill(grants));
        if let Err(e) = serviced {
            // Neither ring is touched again: the other may still look sane, but its
            // requests' pages were just taken back.
            self.fail(grants, e);
        }
        self.broken.map_or(Ok(()), Err)
    }

    /// The frontend as a smoltcp device, borrowing the grant table for as long as smoltcp
    /// polls it.
    pub fn device<'a, G: SharedMemory>(
        &'a mut self,
        grants: &'a mut GrantTable<G>,
    ) -> NetDevice<'a, M, N, G> {
        NetDevice::new(self, grants)
    }

    fn collect_tx<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>) {
        if let Err(e) = self.tx.collect(grants, &mut self.stats) {
            self.fail(grants, e);
        }
    }

    /// Posts free receive pages and publishes them.
    fn refill<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>) -> Result<(), RingError> {
        self.rx.refill(grants, self.backend)?;
        if self.rx.ring.publish()? {
            self.notify.notify();
        }
        Ok(())
    }

    /// Disables the frontend: the backend broke a ring (or a ring's memory failed), so no
    /// response will come; every grant in flight is ended or its page held.
    fn fail<G: SharedMemory>(&mut self, grants: &mut GrantTable<G>, error: RingError) {
        if self.broken.is_some() {
            return;
        }
        log::error!("netfront: {error}; interface disabled");
        self.broken = Some(error);
        self.tx.abandon(grants);
        self.rx.abandon(grants);
    }
}

/// Copies the next response of `ring` into `bytes`. When none is left, arms the response
/// event and looks once more (`RING_FINAL_CHECK_FOR_RESPONSES`), so a response published in
/// between is not slept through; `false` only then.
fn next_response<M: SharedMemory>(
    ring: &mut FrontRing<M>,
    bytes: &mut [u8],
) -> Result<bool, RingError> {
    loop {
        if ring.take_response(bytes)? {
            return Ok(true);
        }
        if !ring.final_check_for_responses()? {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests;
