//! A simulated Hyper-V VMBus host, for tests of this crate and of VMBus device drivers.
//!
//! [`VmbusHost`] implements [`Host`] the way QEMU's `hw/hyperv/vmbus.c` and Hyper-V behave
//! towards a guest: it answers `INITIATE_CONTACT` for versions up to the one configured (and,
//! like every host before 5.0, has no connection id 4), delivers its configured offers, builds
//! GPADLs from header and body messages, opens channels on them and runs the host end of their
//! rings: echoing packets and completing requests, or playing packets a test injects. Its
//! messages to the guest queue up until the test hands them to
//! [`Connection::handle_message`](crate::Connection::handle_message).
//!
//! Memory shared with it is [`FakeSharedMemory`] the test owns and registers with
//! [`VmbusHost::share`], which assigns its pages guest page numbers.
//!
//! Hostile modes: [`HostileMessage`] builds channel messages that break each rule the
//! connection checks, and [`VmbusHost::corrupt`] breaks each rule of an open channel's rings.
//!
//! Anything the guest does wrong (a malformed message, a bad connection id, a GPADL that does
//! not map its rings) is recorded in [`VmbusHost::errors`] as well as refused, so tests can
//! assert that a well-behaved guest caused none.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use ringbolt_shmem::SharedMemory;
use ringbolt_shmem::fake::FakeSharedMemory;

use crate::connection::{MESSAGE_CONNECTION_ID, MESSAGE_CONNECTION_ID_4};
use crate::guid::{Guid, class};
use crate::message::{
    GpadlCreated, GpadlTorndown, GuestMessage, HostMessage, Message, MessageType, Offer,
    OfferFlags, OpenChannel, OpenResult, Rescind, UserDefined, Version, VersionResponse,
};
use crate::packet::{Descriptor, OutgoingPacket, PacketType};
use crate::ring::{self, RingReader, RingWriter, Write};
use crate::{Host, HvStatus, PAGE_SIZE, VMBUS_MESSAGE_TYPE};

/// The status a failed open or GPADL gets (`STATUS_UNSUCCESSFUL`).
pub const STATUS_UNSUCCESSFUL: u32 = 0xc000_0001;

/// `HV_STATUS_INVALID_HYPERCALL_INPUT`: what QEMU answers a message it cannot take.
const INVALID_HYPERCALL_INPUT: HvStatus = HvStatus(0x3);

/// A balloon offer as QEMU's `hv-balloon` makes it: dedicated interrupt, no monitor, connection
/// id 16 + relid (`VMBUS_CHAN_CONNECTION_OFFSET`).
pub fn balloon_offer(relid: u32) -> Offer {
    Offer {
        interface_type: class::BALLOON,
        interface_instance: Guid::from_fields(
            0x1234_5678,
            0x9abc,
            0xdef0,
            [1, 2, 3, 4, 5, 6, 7, 8],
        ),
        flags: OfferFlags(0),
        mmio_megabytes: 0,
        user_defined: UserDefined::Standard([0; 120]),
        sub_channel_index: 0,
        mmio_megabytes_optional: 0,
        child_relid: relid,
        monitor_id: 0,
        monitor_allocated: false,
        is_dedicated_interrupt: true,
        connection_id: 16 + relid,
    }
}

/// How the host end of an open channel answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelMode {
    /// Each packet is answered when the guest signals: a request with a completion carrying the
    /// first 64 bytes of the request's data, other packets with an in-band copy of as much.
    Echo,
    /// Packets stay in the guest's ring until [`VmbusHost::take_from_guest`]; the host sends
    /// only what the test injects.
    Scripted,
}

/// What the simulated host is.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The newest version accepted; 5.0 and newer also open connection id 4.
    pub max_version: Version,
    /// The message connection id returned from 5.0 on.
    pub msg_conn_id: u32,
    /// Offered in order on `REQUESTOFFERS`.
    pub offers: Vec<Offer>,
    pub mode: ChannelMode,
    /// `creation_status` for every GPADL (0 succeeds).
    pub gpadl_status: u32,
    /// `status` for every open of a well-formed ring GPADL (0 succeeds).
    pub open_status: u32,
}

impl HostConfig {
    /// The project's Hyper-V harness: QEMU's VMBus server, protocol 4.0, one balloon.
    pub fn qemu() -> HostConfig {
        HostConfig {
            max_version: Version::V4_0,
            msg_conn_id: 0,
            offers: alloc::vec![balloon_offer(1)],
            mode: ChannelMode::Echo,
            gpadl_status: 0,
            open_status: 0,
        }
    }

    /// A Hyper-V host speaking `max_version` (5.0 or newer), returning message connection 4.
    pub fn hyperv(max_version: Version) -> HostConfig {
        HostConfig {
            max_version,
            msg_conn_id: MESSAGE_CONNECTION_ID_4,
            ..HostConfig::qemu()
        }
    }
}

/// A GPADL as the host assembles it.
#[derive(Debug)]
struct SimGpadl {
    relid: u32,
    page_count: usize,
    pfns: Vec<u64>,
}

/// The host's end of an open channel's rings.
#[derive(Debug)]
struct HostRings<'a> {
    /// The guest's outbound ring.
    from_guest: RingReader<&'a FakeSharedMemory>,
    /// The guest's inbound ring.
    to_guest: RingWriter<&'a FakeSharedMemory>,
    outbound: &'a FakeSharedMemory,
    inbound: &'a FakeSharedMemory,
}

#[derive(Debug, Default)]
struct State<'a> {
    version: Option<Version>,
    msg_conn_id: u32,
    to_guest: VecDeque<Vec<u8>>,
    from_guest: Vec<(u32, Vec<u8>)>,
    errors: Vec<String>,
    regions: Vec<(&'a FakeSharedMemory, u64)>,
    next_page: u64,
    gpadls: BTreeMap<u32, SimGpadl>,
    open: BTreeMap<u32, HostRings<'a>>,
    released: Vec<u32>,
    host_signals: BTreeMap<u32, usize>,
    guest_signals: BTreeMap<u32, usize>,
}

impl State<'_> {
    fn send(&mut self, message: Message) {
        self.to_guest.push_back(message.as_bytes().to_vec());
    }
}

/// A simulated VMBus host; see the module documentation.
#[derive(Debug)]
pub struct VmbusHost<'a> {
    config: HostConfig,
    state: RefCell<State<'a>>,
}

impl<'a> VmbusHost<'a> {
    pub fn new(config: HostConfig) -> Self {
        VmbusHost {
            config,
            state: RefCell::new(State {
                msg_conn_id: MESSAGE_CONNECTION_ID,
                next_page: 0x1000,
                ..State::default()
            }),
        }
    }

    /// Makes `memory` (whole pages) visible to the host at fresh guest page numbers.
    pub fn share(&self, memory: &'a FakeSharedMemory) {
        let mut state = self.state.borrow_mut();
        let base = state.next_page;
        state.next_page += memory.len().div_ceil(PAGE_SIZE) as u64 + 1;
        state.regions.push((memory, base));
    }

    /// The next message for the guest, if any.
    pub fn next_message(&self) -> Option<Vec<u8>> {
        self.state.borrow_mut().to_guest.pop_front()
    }

    /// Queues raw bytes for the guest, as if the host had posted them.
    pub fn push_to_guest(&self, bytes: &[u8]) {
        self.state.borrow_mut().to_guest.push_back(bytes.to_vec());
    }

    /// Every message the guest posted, with its connection id, oldest first.
    pub fn posted(&self) -> Vec<(u32, Vec<u8>)> {
        self.state.borrow().from_guest.clone()
    }

    /// Protocol violations by the guest, oldest first.
    pub fn errors(&self) -> Vec<String> {
        self.state.borrow().errors.clone()
    }

    /// The version the host accepted last.
    pub fn version(&self) -> Option<Version> {
        self.state.borrow().version
    }

    /// Relids the guest released, oldest first.
    pub fn released(&self) -> Vec<u32> {
        self.state.borrow().released.clone()
    }

    /// How often the guest signalled `connection_id`.
    pub fn host_signals(&self, connection_id: u32) -> usize {
        self.state
            .borrow()
            .host_signals
            .get(&connection_id)
            .copied()
            .unwrap_or(0)
    }

    /// How often the host signalled the guest about channel `relid` (the SynIC event flag).
    pub fn guest_signals(&self, relid: u32) -> usize {
        self.state
            .borrow()
            .guest_signals
            .get(&relid)
            .copied()
            .unwrap_or(0)
    }

    /// Whether the host has channel `relid` open.
    pub fn is_open(&self, relid: u32) -> bool {
        self.state.borrow().open.contains_key(&relid)
    }

    /// Whether GPADL `handle` is created (all its pages seen) and not torn down.
    pub fn has_gpadl(&self, handle: u32) -> bool {
        self.state
            .borrow()
            .gpadls
            .get(&handle)
            .is_some_and(|g| g.pfns.len() == g.page_count)
    }

    /// Writes `packet` into channel `relid`'s inbound ring, signalling the guest if the ring
    /// says so. `None` if the channel is not open.
    pub fn inject(&self, relid: u32, packet: &OutgoingPacket<'_>) -> Option<Write> {
        let mut state = self.state.borrow_mut();
        let rings = state.open.get_mut(&relid)?;
        let written = rings.to_guest.write(packet);
        let signal = matches!(written, Ok(Write::Written { signal: true }));
        if signal {
            *state.guest_signals.entry(relid).or_default() += 1;
        }
        written.ok()
    }

    /// Reads every packet the guest has written to channel `relid` (in scripted mode), as
    /// (descriptor, data) pairs, signalling the guest if it waits for the space.
    pub fn take_from_guest(&self, relid: u32) -> Vec<(Descriptor, Vec<u8>)> {
        let mut state = self.state.borrow_mut();
        let mut packets = Vec::new();
        let drained = state.open.get_mut(&relid).map(|rings| {
            let mut buf = alloc::vec![0; rings.from_guest.memory().len()];
            rings.from_guest.drain(&mut buf, |p| {
                packets.push((*p.descriptor(), p.data().to_vec()));
            })
        });
        match drained {
            Some(Ok(d)) if d.signal => *state.guest_signals.entry(relid).or_default() += 1,
            Some(Err(e)) => state.errors.push(format!("guest ring {relid}: {e}")),
            _ => {}
        }
        packets
    }

    /// Breaks one rule of channel `relid`'s rings, as a hostile host would.
    pub fn corrupt(&self, relid: u32, how: HostileRing) {
        let state = self.state.borrow();
        let Some(rings) = state.open.get(&relid) else {
            return;
        };
        let inbound = rings.inbound;
        let data_size = (inbound.len() - ring::DATA_OFFSET) as u32;
        let write = inbound.peer_read_u32(ring::header::WRITE_INDEX);
        // A descriptor at the write index (of a ring with room after it), published with
        // `published` bytes.
        let plant = |offset8: u16, len8: u16, published: u32| {
            let d = Descriptor {
                packet_type: PacketType::DataInBand as u16,
                offset8,
                len8,
                flags: 0,
                transaction_id: 0,
            };
            inbound.peer_write(ring::DATA_OFFSET + write as usize, &d.encode());
            inbound.peer_write_u32(ring::header::WRITE_INDEX, (write + published) % data_size);
        };
        match how {
            HostileRing::WriteIndexPastEnd => {
                inbound.peer_write_u32(ring::header::WRITE_INDEX, data_size + 8)
            }
            HostileRing::WriteIndexMisaligned => {
                inbound.peer_write_u32(ring::header::WRITE_INDEX, (write + 4) % data_size)
            }
            HostileRing::ReadIndexPastEnd => rings
                .outbound
                .peer_write_u32(ring::header::READ_INDEX, data_size),
            HostileRing::Truncated => plant(2, 2, 8),
            HostileRing::LengthBelowHeader => plant(2, 1, 32),
            HostileRing::LengthPastData => plant(2, 8, 32),
            HostileRing::LengthPastRing => plant(2, u16::MAX, 32),
            HostileRing::OffsetInsideDescriptor => plant(1, 3, 32),
            HostileRing::OffsetPastPacket => plant(4, 3, 32),
        }
    }

    /// Finds which registered region holds guest page `pfn`, and which of its pages it is.
    fn locate(state: &State<'a>, pfn: u64) -> Option<(&'a FakeSharedMemory, usize)> {
        state.regions.iter().find_map(|&(memory, base)| {
            let index = usize::try_from(pfn.checked_sub(base)?).ok()?;
            (index < memory.len() / PAGE_SIZE).then_some((memory, index))
        })
    }

    /// The region `pfns` maps whole and in order, if it does.
    fn region_of(state: &State<'a>, pfns: &[u64]) -> Option<&'a FakeSharedMemory> {
        let (memory, first) = Self::locate(state, *pfns.first()?)?;
        let whole = first == 0 && pfns.len() == memory.len() / PAGE_SIZE;
        let in_order = pfns.iter().enumerate().all(|(i, &pfn)| {
            Self::locate(state, pfn).is_some_and(|(m, at)| ptr_eq(m, memory) && at == i)
        });
        (whole && in_order).then_some(memory)
    }

    fn handle(&self, state: &mut State<'a>, message: GuestMessage<'_>) {
        match message {
            GuestMessage::InitiateContact(contact) => {
                let version = contact.version;
                let supported =
                    version <= self.config.max_version && Version::NEGOTIABLE.contains(&version);
                // QEMU resets the bus on every INITIATE_CONTACT.
                state.gpadls.clear();
                state.open.clear();
                state.version = supported.then_some(version);
                let new = version >= Version::V5_0;
                state.msg_conn_id = if supported && new {
                    self.config.msg_conn_id
                } else {
                    MESSAGE_CONNECTION_ID
                };
                let msg_conn_id = if supported && new {
                    state.msg_conn_id
                } else {
                    0
                };
                state.send(
                    VersionResponse {
                        version_supported: supported,
                        connection_state: 0,
                        msg_conn_id,
                    }
                    .encode(),
                );
            }
            GuestMessage::RequestOffers => {
                for offer in &self.config.offers {
                    state.send(offer.encode());
                }
                state.send(HostMessage::AllOffersDelivered.encode());
            }
            GuestMessage::GpadlHeader(header) => {
                if state.gpadls.contains_key(&header.gpadl) {
                    state
                        .errors
                        .push(format!("GPADL {:#x} created twice", header.gpadl));
                    return;
                }
                let gpadl = SimGpadl {
                    relid: header.child_relid,
                    page_count: header.page_count,
                    pfns: header.pfns.iter().collect(),
                };
                state.gpadls.insert(header.gpadl, gpadl);
                self.gpadl_progress(state, header.gpadl);
            }
            GuestMessage::GpadlBody(body) => {
                let Some(gpadl) = state.gpadls.get_mut(&body.gpadl) else {
                    state
                        .errors
                        .push(format!("body for unknown GPADL {:#x}", body.gpadl));
                    return;
                };
                let missing = gpadl.page_count - gpadl.pfns.len();
                if missing == 0 || body.pfns.len() > missing {
                    state
                        .errors
                        .push(format!("GPADL {:#x}: too many pages", body.gpadl));
                    return;
                }
                gpadl.pfns.extend(body.pfns.iter());
                self.gpadl_progress(state, body.gpadl);
            }
            GuestMessage::GpadlTeardown(teardown) => {
                if state.gpadls.remove(&teardown.gpadl).is_none() {
                    state
                        .errors
                        .push(format!("teardown of unknown GPADL {:#x}", teardown.gpadl));
                    return;
                }
                state.send(
                    GpadlTorndown {
                        gpadl: teardown.gpadl,
                    }
                    .encode(),
                );
            }
            GuestMessage::OpenChannel(open) => {
                let status = match self.open_rings(state, &open) {
                    Ok(rings) if self.config.open_status == 0 => {
                        state.open.insert(open.child_relid, rings);
                        0
                    }
                    Ok(_) => self.config.open_status,
                    Err(e) => {
                        state.errors.push(e);
                        STATUS_UNSUCCESSFUL
                    }
                };
                state.send(
                    OpenResult {
                        child_relid: open.child_relid,
                        open_id: open.open_id,
                        status,
                    }
                    .encode(),
                );
            }
            GuestMessage::CloseChannel(close) => {
                state.open.remove(&close.child_relid);
            }
            GuestMessage::RelidReleased(released) => state.released.push(released.child_relid),
            GuestMessage::Unload => {
                state.version = None;
                state.gpadls.clear();
                state.open.clear();
                state.msg_conn_id = MESSAGE_CONNECTION_ID;
                state.send(HostMessage::UnloadResponse.encode());
            }
        }
    }

    /// Answers `GPADL_CREATED` once every page of GPADL `handle` has arrived.
    fn gpadl_progress(&self, state: &mut State<'a>, handle: u32) {
        let Some(gpadl) = state.gpadls.get(&handle) else {
            return;
        };
        if gpadl.pfns.len() < gpadl.page_count {
            return;
        }
        let created = GpadlCreated {
            child_relid: gpadl.relid,
            gpadl: handle,
            status: self.config.gpadl_status,
        };
        if self.config.gpadl_status != 0 {
            state.gpadls.remove(&handle);
        }
        state.send(created.encode());
    }

    /// Maps the rings of an `OPENCHANNEL`: the GPADL must belong to the offered channel and
    /// each half must be one whole shared region.
    fn open_rings(&self, state: &State<'a>, open: &OpenChannel) -> Result<HostRings<'a>, String> {
        let relid = open.child_relid;
        if !self.config.offers.iter().any(|o| o.child_relid == relid) {
            return Err(format!("open of relid {relid}, never offered"));
        }
        if state.open.contains_key(&relid) {
            return Err(format!("relid {relid} opened twice"));
        }
        let gpadl = state
            .gpadls
            .get(&open.ring_gpadl)
            .filter(|g| g.relid == relid && g.pfns.len() == g.page_count)
            .ok_or(format!(
                "open of relid {relid} on bad GPADL {:#x}",
                open.ring_gpadl
            ))?;
        let split = (open.downstream_page_offset as usize).min(gpadl.pfns.len());
        let (out, inb) = gpadl.pfns.split_at(split);
        let outbound = Self::region_of(state, out).ok_or("outbound ring is not one region")?;
        let inbound = Self::region_of(state, inb).ok_or("inbound ring is not one region")?;
        Ok(HostRings {
            from_guest: RingReader::new(outbound).map_err(|e| format!("outbound ring: {e}"))?,
            to_guest: RingWriter::new(inbound).map_err(|e| format!("inbound ring: {e}"))?,
            outbound,
            inbound,
        })
    }

    /// The host end of an echo channel after the guest signalled it.
    fn serve(state: &mut State<'a>, relid: u32) {
        let Some(rings) = state.open.get_mut(&relid) else {
            return;
        };
        let mut buf = alloc::vec![0; rings.from_guest.memory().len()];
        let mut replies = Vec::new();
        let drained = rings.from_guest.drain(&mut buf, |p| {
            let kind = if p.completion_requested() {
                PacketType::Completion
            } else {
                PacketType::DataInBand
            };
            let data = p.data().get(..p.data().len().min(64)).unwrap_or_default();
            replies.push((kind, p.transaction_id(), data.to_vec()));
        });
        let mut signals = usize::from(drained.is_ok_and(|d| d.signal));
        for (kind, id, data) in &replies {
            let packet = OutgoingPacket {
                packet_type: *kind,
                transaction_id: *id,
                ..OutgoingPacket::in_band(data)
            };
            if let Ok(Write::Written { signal: true }) = rings.to_guest.write(&packet) {
                signals += 1;
            }
        }
        *state.guest_signals.entry(relid).or_default() += signals;
    }
}

fn ptr_eq(a: &FakeSharedMemory, b: &FakeSharedMemory) -> bool {
    core::ptr::eq(a, b)
}

impl<'a> Host for VmbusHost<'a> {
    type Memory = FakeSharedMemory;

    fn post_message(
        &self,
        connection_id: u32,
        message_type: u32,
        payload: &[u8],
    ) -> Result<(), HvStatus> {
        let mut state = self.state.borrow_mut();
        state.from_guest.push((connection_id, payload.to_vec()));
        if message_type != VMBUS_MESSAGE_TYPE {
            state
                .errors
                .push(format!("SynIC message type {message_type}"));
            return Err(INVALID_HYPERCALL_INPUT);
        }
        let message = match GuestMessage::parse(payload) {
            Ok(message) => message,
            Err(e) => {
                state.errors.push(format!("guest message: {e}"));
                return Err(INVALID_HYPERCALL_INPUT);
            }
        };
        let expected = match message {
            GuestMessage::InitiateContact(c) if c.version >= Version::V5_0 => {
                if self.config.max_version < Version::V5_0 {
                    // Like QEMU and Hyper-V before 5.0: nothing listens on connection 4.
                    return Err(HvStatus::INVALID_CONNECTION_ID);
                }
                MESSAGE_CONNECTION_ID_4
            }
            GuestMessage::InitiateContact(_) => MESSAGE_CONNECTION_ID,
            _ => state.msg_conn_id,
        };
        if connection_id != expected {
            state.errors.push(format!(
                "{:?} on connection {connection_id}, expected {expected}",
                crate::message::message_type(payload)
            ));
            return Err(HvStatus::INVALID_CONNECTION_ID);
        }
        if state.version.is_none() && !matches!(message, GuestMessage::InitiateContact(_)) {
            state
                .errors
                .push("message before a version was accepted".into());
            return Ok(());
        }
        self.handle(&mut state, message);
        Ok(())
    }

    fn signal_event(&self, connection_id: u32) -> Result<(), HvStatus> {
        let mut state = self.state.borrow_mut();
        *state.host_signals.entry(connection_id).or_default() += 1;
        let relid = self
            .config
            .offers
            .iter()
            .find(|o| o.connection_id == connection_id)
            .map(|o| o.child_relid);
        match relid {
            Some(relid) if self.config.mode == ChannelMode::Echo => {
                Self::serve(&mut state, relid);
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(HvStatus::INVALID_CONNECTION_ID),
        }
    }

    fn page_number(&self, memory: &FakeSharedMemory, index: usize) -> Option<u64> {
        let state = self.state.borrow();
        let &(region, base) = state.regions.iter().find(|(m, _)| ptr_eq(m, memory))?;
        (index < region.len() / PAGE_SIZE).then(|| base + index as u64)
    }
}

/// Ways a host can break the ring rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileRing {
    /// Inbound `write_index` past the data area.
    WriteIndexPastEnd,
    /// Inbound `write_index` not a multiple of 8.
    WriteIndexMisaligned,
    /// Outbound `read_index` (the host's) past the data area.
    ReadIndexPastEnd,
    /// 8 bytes published: less than a descriptor and trailer.
    Truncated,
    /// A descriptor whose `len8 * 8` is below the 16-byte header.
    LengthBelowHeader,
    /// A packet longer than the bytes published.
    LengthPastData,
    /// A packet longer than the whole ring.
    LengthPastRing,
    /// `offset8` pointing into the descriptor.
    OffsetInsideDescriptor,
    /// `offset8` past the end of the packet.
    OffsetPastPacket,
}

impl HostileRing {
    pub const ALL: [HostileRing; 9] = [
        HostileRing::WriteIndexPastEnd,
        HostileRing::WriteIndexMisaligned,
        HostileRing::ReadIndexPastEnd,
        HostileRing::Truncated,
        HostileRing::LengthBelowHeader,
        HostileRing::LengthPastData,
        HostileRing::LengthPastRing,
        HostileRing::OffsetInsideDescriptor,
        HostileRing::OffsetPastPacket,
    ];
}

/// Channel messages that break the rules a guest must check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileMessage {
    /// An offer cut short by one byte.
    TruncatedOffer,
    /// A header whose type number names no message.
    UnknownType,
    /// More than the 240 bytes a SynIC message holds.
    Oversized,
    /// An offer of relid 0.
    RelidZero,
    /// An offer of a relid past the 2048 event flags.
    RelidTooLarge,
    /// An offer whose connection id is wider than 24 bits.
    BadConnectionId,
    /// A message only a guest sends.
    GuestOnly,
    /// `UNLOAD_RESPONSE` when no unload was asked for.
    SpuriousUnloadResponse,
    /// `VERSION_RESPONSE` when no contact is pending.
    SpuriousVersionResponse,
    /// `GPADL_CREATED` for a handle never sent.
    UnknownGpadlCreated,
    /// `GPADL_TORNDOWN` for a handle never torn down.
    UnknownGpadlTorndown,
    /// `OPENCHANNEL_RESULT` for no pending open.
    UnknownOpenResult,
    /// `RESCIND_CHANNELOFFER` for a relid never offered.
    UnknownRescind,
}

impl HostileMessage {
    pub const ALL: [HostileMessage; 13] = [
        HostileMessage::TruncatedOffer,
        HostileMessage::UnknownType,
        HostileMessage::Oversized,
        HostileMessage::RelidZero,
        HostileMessage::RelidTooLarge,
        HostileMessage::BadConnectionId,
        HostileMessage::GuestOnly,
        HostileMessage::SpuriousUnloadResponse,
        HostileMessage::SpuriousVersionResponse,
        HostileMessage::UnknownGpadlCreated,
        HostileMessage::UnknownGpadlTorndown,
        HostileMessage::UnknownOpenResult,
        HostileMessage::UnknownRescind,
    ];

    /// The message's bytes.
    pub fn bytes(self) -> Vec<u8> {
        let offer = |f: fn(&mut Offer)| {
            let mut o = balloon_offer(5);
            f(&mut o);
            o.encode().as_bytes().to_vec()
        };
        let message = match self {
            HostileMessage::TruncatedOffer => {
                let mut b = offer(|_| {});
                b.truncate(Offer::SIZE - 1);
                return b;
            }
            HostileMessage::UnknownType => {
                let mut b = offer(|_| {});
                b[0..4].copy_from_slice(&1000u32.to_le_bytes());
                return b;
            }
            HostileMessage::Oversized => {
                let mut b = offer(|_| {});
                b.resize(241, 0);
                return b;
            }
            HostileMessage::RelidZero => return offer(|o| o.child_relid = 0),
            HostileMessage::RelidTooLarge => return offer(|o| o.child_relid = 2048),
            HostileMessage::BadConnectionId => return offer(|o| o.connection_id = 0x0100_0000),
            HostileMessage::GuestOnly => Message::header_only(MessageType::RequestOffers),
            HostileMessage::SpuriousUnloadResponse => HostMessage::UnloadResponse.encode(),
            HostileMessage::SpuriousVersionResponse => VersionResponse {
                version_supported: true,
                connection_state: 0,
                msg_conn_id: 4,
            }
            .encode(),
            HostileMessage::UnknownGpadlCreated => GpadlCreated {
                child_relid: 1,
                gpadl: 0xdead,
                status: 0,
            }
            .encode(),
            HostileMessage::UnknownGpadlTorndown => GpadlTorndown { gpadl: 0xdead }.encode(),
            HostileMessage::UnknownOpenResult => OpenResult {
                child_relid: 1,
                open_id: 0xdead,
                status: 0,
            }
            .encode(),
            HostileMessage::UnknownRescind => Rescind { child_relid: 99 }.encode(),
        };
        message.as_bytes().to_vec()
    }
}

/// A zeroed ring region of `pages` pages, prepared with [`ring::init`].
pub fn ring_memory(pages: usize) -> FakeSharedMemory {
    let memory = FakeSharedMemory::new(pages * PAGE_SIZE);
    // A fresh region of whole pages always initialises.
    let _ = ring::init(&memory);
    memory
}
