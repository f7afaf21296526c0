//! A simulated netback for host tests: the backend end of both rings, Xen's grant checks, and
//! a lossy virtual wire to a second endpoint, so the real frontend can be driven end to end.
//!
//! [`Netback`] shares the ring pages with the frontend, reads the frontend's grant table
//! through [`ringbolt_xen_grant::sim`] (so a grant with the wrong domain or permission fails
//! the copy as Xen would fail `GNTTABOP_copy`, and a mapping sets `GTF_reading`/`GTF_writing`
//! as Xen does), and reaches guest pages through a table of frame numbers the test fills in.
//! Like Linux's netback in copy mode it checks what netback checks (fragment bounds, sizes
//! that add up, `feature-sg` before a multi-slot packet), answers every transmit request with
//! its own id, and answers every receive request in the slot it occupied.
//!
//! Frames the guest sends cross the wire to the peer ([`Netback::peer_receive`]); frames the
//! peer sends ([`Netback::peer_send`]) cross it to the guest. The wire loses and reorders
//! frames at seeded rates ([`Netback::with_wire`]), the same way every run. [`PeerDevice`] is
//! the peer's end as a smoltcp device, so a second interface can stand on the other side.
//!
//! The backend can also misbehave in the ways a hostile one would ([`Hostile`]).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use ringbolt_xen_abi::grant_table::GrantRef;
use ringbolt_xen_abi::io::netif::{
    NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETIF_RX_SRING_ENTRY_SIZE, NETIF_TX_SRING_ENTRY_SIZE,
    NETRXF_EXTRA_INFO, NETRXF_MORE_DATA, NETTXF_MORE_DATA, XEN_NETIF_EXTRA_FLAG_MORE,
    XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_TYPE_NONE,
    XEN_NETIF_GSO_TYPE_TCPV4,
};
use ringbolt_xen_abi::{DomId, XEN_PAGE_SIZE};
use ringbolt_xen_grant::sim::{map, unmap};
use ringbolt_xen_ring::RingError;
use ringbolt_xen_ring::sim::BackRing;
use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;

use crate::wire::{ExtraInfo, RxRequest, RxResponse, TxRequest, TxResponse};
use crate::{ETHERNET_HEADER_LEN, RxToken};

/// Ways the backend misbehaves, applied to every response while set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// Responses carry ids the frontend never issued (the real id with bit 15 flipped).
    UnissuedIds,
    /// Receive responses claim a fragment one byte longer than the rest of the page.
    LengthPastPage,
    /// Receive responses put the fragment at offset 0xfff8: past the page, and past 16 bits
    /// once its size is added.
    OffsetOutOfRange,
    /// Copies use grant references that are not the frontend's (shifted past its table), so
    /// Xen refuses them and the backend answers `NETIF_RSP_ERROR`.
    ForeignGrantRefs,
    /// After publishing responses, `rsp_prod` jumps past the ring.
    ProducerJump,
    /// Transmit responses carry [`GARBAGE_TX_STATUS`], receive responses
    /// [`GARBAGE_RX_STATUS`].
    GarbageStatus,
    /// Pages stay mapped after the copy, until [`Netback::unmap_all`].
    KeepMapped,
    /// Every receive fragment says more follow, so packets never end.
    EndlessChain,
    /// Received frames carry extra-info slots of type `XEN_NETIF_EXTRA_TYPE_NONE`.
    BadExtraType,
}

/// The status [`Hostile::GarbageStatus`] gives transmit responses.
pub const GARBAGE_TX_STATUS: i16 = 0x1234;
/// The status [`Hostile::GarbageStatus`] gives receive responses.
pub const GARBAGE_RX_STATUS: i16 = -77;
/// How far [`Hostile::ForeignGrantRefs`] shifts a reference: past any table a test builds.
const FOREIGN_GREF_OFFSET: GrantRef = 1 << 20;

/// A link that loses and reorders frames at seeded rates.
#[derive(Debug)]
struct Wire {
    /// xorshift64 state; never zero.
    state: u64,
    loss_per_mille: u32,
    reorder_per_mille: u32,
    lost: u64,
    reordered: u64,
}

impl Wire {
    fn new(seed: u64, loss_per_mille: u32, reorder_per_mille: u32) -> Self {
        Wire {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            loss_per_mille,
            reorder_per_mille,
            lost: 0,
            reordered: 0,
        }
    }

    /// 0..1000.
    fn roll(&mut self) -> u32 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % 1000) as u32
    }

    /// Puts `frame` on the queue to the far end: dropped, ahead of the frame queued before
    /// it, or last.
    fn carry(&mut self, queue: &mut VecDeque<Vec<u8>>, frame: Vec<u8>) {
        if self.roll() < self.loss_per_mille {
            self.lost += 1;
        } else if self.roll() < self.reorder_per_mille && !queue.is_empty() {
            self.reordered += 1;
            queue.insert(queue.len() - 1, frame);
        } else {
            queue.push_back(frame);
        }
    }
}

/// A netback in copy mode. See the module documentation.
#[derive(Debug)]
pub struct Netback<M> {
    tx: BackRing<M>,
    rx: BackRing<M>,
    /// The frontend's grant table.
    grants: M,
    /// Our own domain id, the grantee of every grant.
    domid: DomId,
    /// Guest frames we can reach once granted.
    memory: BTreeMap<u64, M>,
    /// Receive requests taken off the ring and not yet used, oldest first: the backend
    /// answers them in this order, so each response lands in its request's slot.
    rx_requests: VecDeque<RxRequest>,
    to_guest: VecDeque<Vec<u8>>,
    to_peer: VecDeque<Vec<u8>>,
    wire: Wire,
    sg: bool,
    rx_fragment: usize,
    rx_offset: u16,
    rx_extras: bool,
    hostile: Option<Hostile>,
    /// Grants left mapped by [`Hostile::KeepMapped`].
    mapped: Vec<GrantRef>,
    failures: Vec<String>,
    tx_packets: u64,
    rx_packets: u64,
    /// Frames the guest sent, by EtherType.
    ethertypes: BTreeMap<u16, u64>,
}

impl<M: SharedMemory> Netback<M> {
    /// Attaches to the rings the frontend initialised, as domain `domid`: `feature-sg` both
    /// ways, frames delivered at offset 0 in up to a page per fragment, no extra-info slots,
    /// a perfect wire.
    pub fn new(tx_ring: M, rx_ring: M, grants: M, domid: DomId) -> Result<Self, RingError> {
        Ok(Netback {
            tx: BackRing::attach(tx_ring, NETIF_TX_SRING_ENTRY_SIZE)?,
            rx: BackRing::attach(rx_ring, NETIF_RX_SRING_ENTRY_SIZE)?,
            grants,
            domid,
            memory: BTreeMap::new(),
            rx_requests: VecDeque::new(),
            to_guest: VecDeque::new(),
            to_peer: VecDeque::new(),
            wire: Wire::new(1, 0, 0),
            sg: true,
            rx_fragment: XEN_PAGE_SIZE,
            rx_offset: 0,
            rx_extras: false,
            hostile: None,
            mapped: Vec::new(),
            failures: Vec::new(),
            tx_packets: 0,
            rx_packets: 0,
            ethertypes: BTreeMap::new(),
        })
    }

    /// Whether we offer `feature-sg` (and take the frontend's): multi-slot packets both ways.
    pub fn with_sg(mut self, sg: bool) -> Self {
        self.sg = sg;
        self
    }

    /// Bytes per receive fragment at most, so frames smaller than a page arrive in several.
    pub fn with_rx_fragment(mut self, bytes: usize) -> Self {
        self.rx_fragment = bytes.max(1);
        self
    }

    /// Where in each receive page the fragment starts.
    pub fn with_rx_offset(mut self, offset: u16) -> Self {
        self.rx_offset = offset.min(XEN_PAGE_SIZE as u16 - 1);
        self
    }

    /// Whether every received frame carries two extra-info slots (a hash, then GSO).
    pub fn with_rx_extras(mut self, extras: bool) -> Self {
        self.rx_extras = extras;
        self
    }

    /// Loses and reorders frames on the wire, each per mille, from `seed`.
    pub fn with_wire(mut self, seed: u64, loss_per_mille: u32, reorder_per_mille: u32) -> Self {
        self.wire = Wire::new(seed, loss_per_mille, reorder_per_mille);
        self
    }

    /// Makes guest frame `frame` reachable as `page`.
    pub fn add_page(&mut self, frame: u64, page: M) {
        self.memory.insert(frame, page);
    }

    /// The nodes a netback writes in its xenstore directory.
    pub fn xenstore(&self) -> Vec<(&'static str, String)> {
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        vec![
            ("feature-rx-copy", flag(true)),
            ("feature-rx-flip", flag(false)),
            ("feature-sg", flag(self.sg)),
            ("feature-gso-tcpv4", flag(false)),
            ("multi-queue-max-queues", "1".to_string()),
        ]
    }

    pub fn set_hostile(&mut self, hostile: Option<Hostile>) {
        self.hostile = hostile;
    }

    /// Sends `frame` from the peer toward the guest, across the wire.
    pub fn peer_send(&mut self, frame: Vec<u8>) {
        self.wire.carry(&mut self.to_guest, frame);
    }

    /// The next frame from the guest that made it across the wire.
    pub fn peer_receive(&mut self) -> Option<Vec<u8>> {
        self.to_peer.pop_front()
    }

    /// The peer's end of the wire as a smoltcp device.
    pub fn peer(&mut self) -> PeerDevice<'_, M> {
        PeerDevice { back: self }
    }

    /// Packets taken off the transmit ring and put on the wire.
    pub fn tx_packets(&self) -> u64 {
        self.tx_packets
    }

    /// Packets copied into receive pages.
    pub fn rx_packets(&self) -> u64 {
        self.rx_packets
    }

    /// Frames of `ethertype` the guest sent.
    pub fn guest_sent(&self, ethertype: u16) -> u64 {
        self.ethertypes.get(&ethertype).copied().unwrap_or(0)
    }

    /// Frames the wire lost and reordered so far.
    pub fn wire_lost(&self) -> u64 {
        self.wire.lost
    }

    pub fn wire_reordered(&self) -> u64 {
        self.wire.reordered
    }

    /// Why packets were answered `NETIF_RSP_ERROR` or dropped, oldest first.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// Unmaps what [`Hostile::KeepMapped`] kept mapped.
    pub fn unmap_all(&mut self) {
        for gref in self.mapped.drain(..) {
            // The entry was mapped by us; unmapping it cannot fail on a table that maps.
            let _ = unmap(&self.grants, gref);
        }
    }

    /// Serves every transmit request published, delivers what frames fit in the receive
    /// pages posted, and publishes the responses. Returns whether the frontend must be
    /// notified.
    pub fn process(&mut self) -> Result<bool, RingError> {
        let tx = self.serve_tx()?;
        let rx = self.serve_rx()?;
        Ok(tx || rx)
    }

    fn serve_tx(&mut self) -> Result<bool, RingError> {
        let mut notify = false;
        loop {
            let mut slot = [0; NETIF_TX_SRING_ENTRY_SIZE];
            while self.tx.take_request(&mut slot)? {
                let mut fragments = vec![TxRequest::decode(&slot)];
                while fragments
                    .last()
                    .is_some_and(|f| f.flags & NETTXF_MORE_DATA != 0)
                    && self.tx.take_request(&mut slot)?
                {
                    fragments.push(TxRequest::decode(&slot));
                }
                let status = match self.take_packet(&fragments) {
                    Ok(frame) => {
                        if let Some(kind) = frame.get(12..14) {
                            *self
                                .ethertypes
                                .entry(u16::from_be_bytes([kind[0], kind[1]]))
                                .or_default() += 1;
                        }
                        self.tx_packets += 1;
                        self.wire.carry(&mut self.to_peer, frame);
                        NETIF_RSP_OKAY
                    }
                    Err(why) => {
                        self.failures.push(why);
                        NETIF_RSP_ERROR
                    }
                };
                for fragment in &fragments {
                    self.respond_tx(fragment.id, status)?;
                }
            }
            notify |= self.tx.publish()?;
            notify |= self.jump(true)?;
            if !self.tx.final_check_for_requests()? {
                return Ok(notify);
            }
        }
    }

    /// Copies a packet out of its granted pages, checking what netback checks.
    fn take_packet(&mut self, fragments: &[TxRequest]) -> Result<Vec<u8>, String> {
        let (first, rest) = fragments.split_first().ok_or("no fragments")?;
        if fragments
            .last()
            .is_some_and(|f| f.flags & NETTXF_MORE_DATA != 0)
        {
            return Err("packet continues past the published requests".to_string());
        }
        if !rest.is_empty() && !self.sg {
            return Err(format!(
                "{}-slot packet without feature-sg",
                fragments.len()
            ));
        }
        let total = first.size as usize;
        let rest_len: usize = rest.iter().map(|f| f.size as usize).sum();
        let first_len = total
            .checked_sub(rest_len)
            .ok_or("fragments longer than the packet")?;
        if total < ETHERNET_HEADER_LEN {
            return Err(format!("{total}-byte packet"));
        }
        let mut frame = Vec::with_capacity(total);
        for (i, f) in fragments.iter().enumerate() {
            let len = if i == 0 { first_len } else { f.size as usize };
            let offset = f.offset as usize;
            if offset + len > XEN_PAGE_SIZE {
                return Err(format!(
                    "fragment {i} at {offset} of {len} bytes crosses the page"
                ));
            }
            let start = frame.len();
            frame.resize(start + len, 0);
            self.with_page(f.gref, false, |mem| {
                mem.read_bytes(offset, &mut frame[start..])
            })?;
        }
        Ok(frame)
    }

    fn respond_tx(&mut self, id: u16, status: i16) -> Result<(), RingError> {
        let mut rsp = TxResponse { id, status };
        match self.hostile {
            Some(Hostile::UnissuedIds) => rsp.id ^= 0x8000,
            Some(Hostile::GarbageStatus) => rsp.status = GARBAGE_TX_STATUS,
            _ => {}
        }
        self.tx.push_response(&rsp.encode())
    }

    fn serve_rx(&mut self) -> Result<bool, RingError> {
        let mut notify = false;
        loop {
            let mut slot = [0; NETIF_RX_SRING_ENTRY_SIZE];
            while self.rx.take_request(&mut slot)? {
                self.rx_requests.push_back(RxRequest::decode(&slot));
            }
            while let Some(frame) = self.to_guest.pop_front() {
                let fragments = frame.len().div_ceil(self.fragment_len()).max(1);
                if fragments > 1 && !self.sg {
                    self.failures
                        .push(format!("{}-byte frame needs feature-sg", frame.len()));
                    continue;
                }
                if self.rx_requests.len() < fragments + self.extras() {
                    self.to_guest.push_front(frame);
                    break;
                }
                self.deliver(&frame)?;
            }
            notify |= self.rx.publish()?;
            notify |= self.jump(false)?;
            if !self.rx.final_check_for_requests()? {
                return Ok(notify);
            }
        }
    }

    /// Bytes one receive fragment carries at most.
    fn fragment_len(&self) -> usize {
        self.rx_fragment
            .min(XEN_PAGE_SIZE - self.rx_offset as usize)
    }

    /// Extra-info slots each received frame carries.
    fn extras(&self) -> usize {
        if self.rx_extras || self.hostile == Some(Hostile::BadExtraType) {
            2
        } else {
            0
        }
    }

    /// Copies `frame` into the oldest posted pages and answers their requests; the caller
    /// checked there are enough.
    fn deliver(&mut self, frame: &[u8]) -> Result<(), RingError> {
        let chunks: Vec<&[u8]> = if frame.is_empty() {
            vec![frame]
        } else {
            frame.chunks(self.fragment_len()).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let Some(request) = self.rx_requests.pop_front() else {
                return Ok(());
            };
            let offset = self.rx_offset;
            let status = match self.with_page(request.gref, true, |mem| {
                mem.write_bytes(offset.into(), chunk)
            }) {
                Ok(()) => chunk.len() as i16,
                Err(why) => {
                    self.failures.push(why);
                    NETIF_RSP_ERROR
                }
            };
            let mut flags = if i < last { NETRXF_MORE_DATA } else { 0 };
            if i == 0 && self.extras() > 0 {
                flags |= NETRXF_EXTRA_INFO;
            }
            self.respond_rx(RxResponse {
                id: request.id,
                offset,
                flags,
                status,
            })?;
            if i == 0 {
                self.push_extras()?;
            }
        }
        self.rx_packets += 1;
        Ok(())
    }

    /// The extra-info slots after a packet's first fragment: a hash, then GSO (the frontend
    /// negotiated neither, so it must skip both), each in the slot of a request it consumes.
    fn push_extras(&mut self) -> Result<(), RingError> {
        let count = self.extras();
        for i in 0..count {
            self.rx_requests.pop_front();
            let flags = if i + 1 < count {
                XEN_NETIF_EXTRA_FLAG_MORE
            } else {
                0
            };
            let (kind, payload) = match (self.hostile, i) {
                (Some(Hostile::BadExtraType), _) => (XEN_NETIF_EXTRA_TYPE_NONE, [0; 6]),
                (_, 0) => (XEN_NETIF_EXTRA_TYPE_HASH, [1, 1, 0xDE, 0xAD, 0xBE, 0xEF]),
                _ => (
                    XEN_NETIF_EXTRA_TYPE_GSO,
                    [0xA8, 0x05, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0, 0],
                ),
            };
            self.rx
                .push_response(&ExtraInfo { kind, flags }.encode(payload))?;
        }
        Ok(())
    }

    fn respond_rx(&mut self, mut rsp: RxResponse) -> Result<(), RingError> {
        match self.hostile {
            Some(Hostile::UnissuedIds) => rsp.id ^= 0x8000,
            Some(Hostile::LengthPastPage) if rsp.status >= 0 => {
                rsp.status = (XEN_PAGE_SIZE + 1 - rsp.offset as usize) as i16;
            }
            Some(Hostile::OffsetOutOfRange) => rsp.offset = 0xFFF8,
            Some(Hostile::GarbageStatus) => rsp.status = GARBAGE_RX_STATUS,
            Some(Hostile::EndlessChain) => rsp.flags |= NETRXF_MORE_DATA,
            _ => {}
        }
        self.rx.push_response(&rsp.encode())
    }

    /// [`Hostile::ProducerJump`]: stores a response producer index past the ring.
    fn jump(&mut self, tx: bool) -> Result<bool, RingError> {
        if self.hostile != Some(Hostile::ProducerJump) {
            return Ok(false);
        }
        let ring = if tx { &self.tx } else { &self.rx };
        let past = ring.rsp_prod().wrapping_add(ring.size() + 5);
        ring.force_rsp_prod(past).map_err(RingError::OutOfBounds)?;
        Ok(true)
    }

    /// Maps `gref` as Xen would for a grant copy, runs `access` on the page, and unmaps.
    fn with_page<T>(
        &mut self,
        gref: GrantRef,
        write: bool,
        access: impl FnOnce(&M) -> Result<T, OutOfBounds>,
    ) -> Result<T, String> {
        let gref = match self.hostile {
            Some(Hostile::ForeignGrantRefs) => gref.wrapping_add(FOREIGN_GREF_OFFSET),
            _ => gref,
        };
        let frame =
            map(&self.grants, gref, self.domid, write).map_err(|e| format!("grant {gref}: {e}"))?;
        let result = match self.memory.get(&u64::from(frame)) {
            Some(mem) => access(mem).map_err(|e| e.to_string()),
            None => Err(format!("frame {frame:#x} is not guest memory")),
        };
        if self.hostile == Some(Hostile::KeepMapped) {
            self.mapped.push(gref);
        } else {
            // The entry was mapped by us just now; unmapping it cannot fail.
            let _ = unmap(&self.grants, gref);
        }
        result
    }
}

/// The peer's end of the wire, as a smoltcp device with the guest's capabilities.
#[derive(Debug)]
pub struct PeerDevice<'a, M> {
    back: &'a mut Netback<M>,
}

/// Sends one frame from the peer.
#[derive(Debug)]
pub struct PeerTxToken<'a, M> {
    back: &'a mut Netback<M>,
}

impl<M: SharedMemory> phy::TxToken for PeerTxToken<'_, M> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        self.back.peer_send(frame);
        result
    }
}

impl<M: SharedMemory> phy::Device for PeerDevice<'_, M> {
    type RxToken<'b>
        = RxToken
    where
        Self: 'b;
    type TxToken<'b>
        = PeerTxToken<'b, M>
    where
        Self: 'b;

    fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.back.peer_receive()?;
        Some((RxToken::new(frame), PeerTxToken { back: self.back }))
    }

    fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
        Some(PeerTxToken { back: self.back })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        crate::device::capabilities()
    }
}
