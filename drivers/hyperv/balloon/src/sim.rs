//! A simulated Dynamic Memory host and a fake frame allocator, for tests of this crate, of the
//! kernel and for the fuzz target.
//!
//! [`DmHost`] plays QEMU's `hv-balloon` (or a Hyper-V-like host) over
//! `ringbolt_vmbus::sim::VmbusHost` in scripted mode: it offers the balloon channel, has a
//! guest VMBus connection open it on [`Rings`] with the crate's open parameters, then reads the
//! guest's messages from its outbound ring and writes its own into the inbound ring, as in-band
//! packets whose VMBus transaction id is the message's (as QEMU sends them). It runs the
//! host's side of every transaction:
//!
//! - answers version requests (accepting [`HostConfig::min_version`] to `max_version`; QEMU:
//!   0.3 to 2.0) and the capabilities report (accepted or not; status reports wanted or
//!   suppressed; optionally each answer preceded by a stale copy with the previous `trans_id`);
//! - on [`balloon`](DmHost::balloon), [`unballoon`](DmHost::unballoon) and
//!   [`hot_add`](DmHost::hot_add), sends the request and checks the answers.
//!
//! Everything the guest does wrong is recorded in [`DmHost::errors`]: a message that does not
//! parse or is not in its canonical encoding (reserved bits, trailing bytes), a message over
//! one page, versions not offered newest first, an answer in the wrong phase, balloon ranges
//! that are empty, outside the guest's RAM or already held (duplicates), more pages than asked
//! for, an empty response that is not the last (QEMU ends the transaction on it), and status
//! reports the host suppressed.
//!
//! [`Hostile`] sends each kind of message a host must not send, and says which [`Error`] the
//! guest must report for it.
//!
//! [`FramePool`] is a kernel frame allocator as [`Pages`] sees it, with a floor and a largest
//! run per take, that records any give-back of frames it did not hand out.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ops::Range;

use ringbolt_shmem::SharedMemory;
use ringbolt_shmem::fake::FakeSharedMemory;
use ringbolt_vmbus::packet::{OutgoingPacket, PacketType};
use ringbolt_vmbus::ring::Write;
use ringbolt_vmbus::sim::{self as vmbus_sim, ChannelMode, VmbusHost, ring_memory};
use ringbolt_vmbus::{Channel, Config, Connection, Event as VmbusEvent, OpenParams};

use crate::balloon::Error;
use crate::message::{
    CapabilitiesReport, CapabilitiesResponse, GuestBody, GuestMessage, HostBody, HostMessage, Info,
    MAX_MESSAGE_SIZE, MemoryStatus, MessageType, ParseError, Ranges, Version,
};
use crate::pages::{PageRange, PageSet, Pages};
use crate::{RING_PAGES, RING_SIZE};

/// The relid of the simulated balloon channel.
pub const RELID: u32 = 1;

/// The two rings of the balloon channel, [`RING_SIZE`] bytes each.
#[derive(Debug)]
pub struct Rings {
    pub outbound: FakeSharedMemory,
    pub inbound: FakeSharedMemory,
}

impl Rings {
    pub fn new() -> Self {
        Rings {
            outbound: ring_memory(RING_PAGES),
            inbound: ring_memory(RING_PAGES),
        }
    }
}

impl Default for Rings {
    fn default() -> Self {
        Rings::new()
    }
}

/// What the simulated host is.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The oldest version accepted.
    pub min_version: Version,
    /// The newest version accepted.
    pub max_version: Version,
    pub accept_capabilities: bool,
    /// Whether the host wants status reports (else it sets `suppress_pressure_reports`).
    pub status_reports: bool,
    /// The guest's RAM as the host knows it, in frames: balloon ranges outside it are errors.
    pub ram: Range<u64>,
    /// Ranges per unballoon message.
    pub unballoon_ranges_per_message: usize,
    /// Precede every version and capabilities response with a copy for the previous
    /// transaction id, which the guest must reject.
    pub stale_responses: bool,
}

impl HostConfig {
    /// QEMU's hv-balloon as the harness runs it (`-device hv-balloon`): versions 0.3 to 2.0,
    /// capabilities accepted with hot remove offered and status reports suppressed (its
    /// `status-report` property is off), one range per unballoon message, 512 MiB of RAM.
    pub fn qemu() -> HostConfig {
        HostConfig {
            min_version: crate::message::WIN7,
            max_version: crate::message::WIN10,
            accept_capabilities: true,
            status_reports: false,
            ram: 0..512 * 256,
            unballoon_ranges_per_message: 1,
            stale_responses: false,
        }
    }

    /// A Hyper-V-like host: status reports wanted, unballoon messages of up to one page.
    pub fn hyperv() -> HostConfig {
        HostConfig {
            status_reports: true,
            unballoon_ranges_per_message: 510,
            ..HostConfig::qemu()
        }
    }
}

/// Where the host's side of the protocol is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPhase {
    Version,
    Capabilities,
    /// The capabilities were refused; nothing more happens.
    Refused,
    Idle,
    Ballooning {
        requested: u64,
        received: u64,
    },
    Unballooning,
    HotAdding,
}

#[derive(Debug)]
struct State {
    phase: HostPhase,
    /// The host's transaction id, moved on after each transaction (as QEMU does).
    trans_id: u32,
    attempts: Vec<(Version, bool)>,
    capabilities: Option<CapabilitiesReport>,
    held: PageSet,
    /// (ranges, more_pages) of every balloon response.
    balloon_messages: Vec<(usize, bool)>,
    /// Pages received per finished balloon transaction.
    balloon_transactions: Vec<u64>,
    status_reports: Vec<MemoryStatus>,
    hot_add_responses: Vec<(u32, u32)>,
    unballoon_responses: usize,
    /// Messages for the guest that did not fit its ring yet.
    pending: VecDeque<Vec<u8>>,
    errors: Vec<String>,
}

/// A simulated Dynamic Memory host; see the module documentation.
#[derive(Debug)]
pub struct DmHost<'a> {
    vmbus: VmbusHost<'a>,
    config: HostConfig,
    state: RefCell<State>,
}

impl<'a> DmHost<'a> {
    /// Offers the balloon channel and has a guest VMBus connection open it on `rings` with the
    /// crate's parameters, as the kernel would.
    pub fn open(config: HostConfig, rings: &'a Rings) -> DmHost<'a> {
        let vmbus = VmbusHost::new(vmbus_sim::HostConfig {
            mode: ChannelMode::Scripted,
            offers: vec![vmbus_sim::balloon_offer(RELID)],
            ..vmbus_sim::HostConfig::qemu()
        });
        vmbus.share(&rings.outbound);
        vmbus.share(&rings.inbound);
        let mut conn = Connection::<4, 4>::new(Config {
            max_version: ringbolt_vmbus::Version::V5_3,
            target_vcpu: 0,
            vtl: 0,
            interrupt_page: 0,
            monitor_pages: [0x8000, 0x9000],
        });
        let mut last_event = None;
        let mut pump = |conn: &mut Connection<4, 4>| {
            while let Some(message) = vmbus.next_message() {
                last_event = conn.handle_message(&vmbus, &message).ok().flatten();
            }
            last_event
        };
        let _ = conn.connect(&vmbus);
        pump(&mut conn);
        let gpadl = conn.create_gpadl(&vmbus, RELID, &[&rings.outbound, &rings.inbound]);
        pump(&mut conn);
        if let Ok(ring_gpadl) = gpadl {
            let params = OpenParams {
                ring_gpadl,
                downstream_page_offset: RING_PAGES as u32,
                target_vp: 0,
                user_data: &[],
            };
            let _ = conn.open_channel(&vmbus, RELID, params);
        }
        let opened = pump(&mut conn) == Some(VmbusEvent::Opened { relid: RELID });
        let host = DmHost {
            vmbus,
            config,
            state: RefCell::new(State {
                phase: HostPhase::Version,
                trans_id: 1,
                attempts: Vec::new(),
                capabilities: None,
                held: PageSet::new(),
                balloon_messages: Vec::new(),
                balloon_transactions: Vec::new(),
                status_reports: Vec::new(),
                hot_add_responses: Vec::new(),
                unballoon_responses: 0,
                pending: VecDeque::new(),
                errors: Vec::new(),
            }),
        };
        if !opened || rings.outbound.len() != RING_SIZE {
            host.error(format!(
                "the balloon channel did not open on {RING_SIZE}-byte rings"
            ));
        }
        host
    }

    /// The VMBus host, which the guest's channel signals.
    pub fn vmbus(&self) -> &VmbusHost<'a> {
        &self.vmbus
    }

    /// The guest's end of the channel.
    pub fn guest_channel(&self, rings: &'a Rings) -> Option<Channel<&'a FakeSharedMemory, 0>> {
        let connection_id = vmbus_sim::balloon_offer(RELID).connection_id;
        Channel::new(&rings.outbound, &rings.inbound, connection_id).ok()
    }

    fn error(&self, error: String) {
        self.state.borrow_mut().errors.push(error);
    }

    /// Reads and checks the guest's messages, answers them, and writes what waits for the
    /// guest into its ring. Returns the messages read plus those written.
    pub fn serve(&self) -> usize {
        let packets = self.vmbus.take_from_guest(RELID);
        let mut state = self.state.borrow_mut();
        for (descriptor, data) in &packets {
            if descriptor.packet_type != PacketType::DataInBand as u16 {
                let t = descriptor.packet_type;
                state.errors.push(format!("packet type {t:#x}"));
                continue;
            }
            if let Err(e) = self.receive(&mut state, data) {
                state.errors.push(e);
            }
        }
        packets.len() + self.flush(&mut state)
    }

    /// Writes pending messages into the guest's inbound ring until it is full.
    fn flush(&self, state: &mut State) -> usize {
        let mut written = 0;
        while let Some(message) = state.pending.front() {
            let trans_id = message.get(4..8).map_or(0, |b| {
                u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            });
            let packet = OutgoingPacket {
                transaction_id: trans_id,
                ..OutgoingPacket::in_band(message)
            };
            match self.vmbus.inject(RELID, &packet) {
                Some(Write::Written { .. }) => written += 1,
                Some(Write::Full { .. }) => break,
                None => state.errors.push("balloon channel not open".into()),
            }
            state.pending.pop_front();
        }
        written
    }

    fn send(state: &mut State, body: HostBody<'_>, trans_id: u32) {
        state
            .pending
            .push_back(HostMessage { trans_id, body }.encode());
    }

    /// Checks and answers one message from the guest.
    fn receive(&self, state: &mut State, data: &[u8]) -> Result<(), String> {
        let message = GuestMessage::parse(data).map_err(|e| format!("guest message: {e}"))?;
        let encoded = message.encode();
        if data.get(..encoded.len()) != Some(&encoded[..]) || data.len() - encoded.len() >= 8 {
            return Err(format!("{message:?} is not in canonical form"));
        }
        if encoded.len() > MAX_MESSAGE_SIZE {
            return Err(format!("{}-byte message", encoded.len()));
        }
        let (phase, trans_id) = (state.phase, message.trans_id);
        let wrong_phase = || format!("{:?} in phase {phase:?}", message.body.msg_type());
        match message.body {
            GuestBody::VersionRequest {
                version,
                last_attempt,
            } => {
                if phase != HostPhase::Version {
                    return Err(wrong_phase());
                }
                if let Some(&(previous, was_last)) = state.attempts.last()
                    && (version >= previous || was_last)
                {
                    return Err(format!("version {version} after {previous}"));
                }
                state.attempts.push((version, last_attempt));
                let accepted =
                    (self.config.min_version..=self.config.max_version).contains(&version);
                self.respond(state, HostBody::VersionResponse { accepted }, trans_id);
                if accepted {
                    state.phase = HostPhase::Capabilities;
                }
            }
            GuestBody::CapabilitiesReport(report) => {
                if phase != HostPhase::Capabilities {
                    return Err(wrong_phase());
                }
                state.capabilities = Some(report);
                let accepted = self.config.accept_capabilities;
                let response = CapabilitiesResponse {
                    accepted,
                    hot_remove: true,
                    suppress_pressure_reports: !self.config.status_reports,
                };
                self.respond(state, HostBody::CapabilitiesResponse(response), trans_id);
                state.phase = if accepted {
                    HostPhase::Idle
                } else {
                    HostPhase::Refused
                };
            }
            GuestBody::StatusReport(status) => {
                if matches!(
                    phase,
                    HostPhase::Version | HostPhase::Capabilities | HostPhase::Refused
                ) {
                    return Err(wrong_phase());
                }
                if !self.config.status_reports {
                    return Err("status report though the host suppressed them".into());
                }
                state.status_reports.push(status);
            }
            GuestBody::BalloonResponse { more_pages, ranges } => {
                let HostPhase::Ballooning {
                    requested,
                    received,
                } = phase
                else {
                    return Err(wrong_phase());
                };
                self.balloon_response(state, requested, received, more_pages, ranges)?;
            }
            GuestBody::UnballoonResponse => {
                if phase != HostPhase::Unballooning {
                    return Err(wrong_phase());
                }
                state.unballoon_responses += 1;
                Self::end_transaction(state);
            }
            GuestBody::HotAddResponse { page_count, result } => {
                if phase != HostPhase::HotAdding {
                    return Err(wrong_phase());
                }
                state.hot_add_responses.push((page_count, result));
                Self::end_transaction(state);
            }
        }
        Ok(())
    }

    /// Answers the guest's request `trans_id`, after a stale answer if so configured.
    fn respond(&self, state: &mut State, body: HostBody<'_>, trans_id: u32) {
        if self.config.stale_responses {
            Self::send(state, body, trans_id.wrapping_sub(1));
        }
        Self::send(state, body, trans_id);
    }

    fn end_transaction(state: &mut State) {
        state.phase = HostPhase::Idle;
        state.trans_id = state.trans_id.wrapping_add(1);
    }

    fn balloon_response(
        &self,
        state: &mut State,
        requested: u64,
        received: u64,
        more_pages: bool,
        ranges: Ranges<'_>,
    ) -> Result<(), String> {
        state.balloon_messages.push((ranges.len(), more_pages));
        let mut received = received;
        for range in ranges.iter() {
            let pfns = range.pfns();
            if range.is_empty()
                || pfns.start < self.config.ram.start
                || pfns.end > self.config.ram.end
            {
                return Err(format!("balloon response with {range}, not guest RAM"));
            }
            if !state.held.insert(pfns) {
                return Err(format!("balloon response with {range}, held already"));
            }
            received += range.count();
        }
        state.phase = HostPhase::Ballooning {
            requested,
            received,
        };
        if ranges.is_empty() && more_pages {
            return Err("an empty balloon response that is not the last".into());
        }
        if !more_pages {
            state.balloon_transactions.push(received);
            Self::end_transaction(state);
        }
        if received > requested {
            return Err(format!("{received} pages ballooned, {requested} asked for"));
        }
        Ok(())
    }

    /// Starts a transaction of `phase` if the host is idle; records an error otherwise.
    fn begin(&self, state: &mut State, phase: HostPhase) -> Option<u32> {
        if state.phase != HostPhase::Idle {
            let error = format!("{phase:?} asked for in phase {:?}", state.phase);
            state.errors.push(error);
            return None;
        }
        state.phase = phase;
        Some(state.trans_id)
    }

    /// Asks the guest to balloon `pages` pages.
    pub fn balloon(&self, pages: u32) {
        let mut state = self.state.borrow_mut();
        let phase = HostPhase::Ballooning {
            requested: u64::from(pages),
            received: 0,
        };
        if let Some(trans_id) = self.begin(&mut state, phase) {
            let body = HostBody::BalloonRequest { num_pages: pages };
            Self::send(&mut state, body, trans_id);
        }
    }

    /// Gives the guest back up to `pages` of the pages the host holds, lowest first, in
    /// messages of [`HostConfig::unballoon_ranges_per_message`] ranges. Returns the pages.
    pub fn unballoon(&self, pages: u64) -> u64 {
        let mut state = self.state.borrow_mut();
        let mut ranges = Vec::new();
        let mut left = pages;
        for run in state.held.runs() {
            let mut start = run.start;
            while start < run.end && left > 0 {
                let count = (run.end - start).min(left).min(PageRange::MAX_COUNT);
                ranges.extend(PageRange::new(start, count));
                start += count;
                left -= count;
            }
        }
        if ranges.is_empty() {
            return 0;
        }
        let Some(trans_id) = self.begin(&mut state, HostPhase::Unballooning) else {
            return 0;
        };
        for range in &ranges {
            state.held.remove(range.pfns());
        }
        let per_message = self.config.unballoon_ranges_per_message.max(1);
        let messages = ranges.chunks(per_message).count();
        for (i, chunk) in ranges.chunks(per_message).enumerate() {
            let body = HostBody::UnballoonRequest {
                more_pages: i + 1 < messages,
                ranges: Ranges::Slice(chunk),
            };
            Self::send(&mut state, body, trans_id);
        }
        pages - left
    }

    /// Asks the guest to hot-add `range` (with the same region, as QEMU does).
    pub fn hot_add(&self, range: PageRange) {
        let mut state = self.state.borrow_mut();
        if let Some(trans_id) = self.begin(&mut state, HostPhase::HotAdding) {
            let body = HostBody::HotAddRequest {
                range,
                region: Some(range),
            };
            Self::send(&mut state, body, trans_id);
        }
    }

    /// Tells the guest the most pages it may have (`INFO_TYPE_MAX_PAGE_CNT`).
    pub fn info_max_page_count(&self, pages: u64) {
        let mut state = self.state.borrow_mut();
        let trans_id = state.trans_id;
        let data = pages.to_le_bytes();
        let body = HostBody::Info(Info {
            info_type: Info::MAX_PAGE_COUNT,
            data: &data,
        });
        Self::send(&mut state, body, trans_id);
    }

    /// Queues raw bytes for the guest, as the data of an in-band packet.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.state.borrow_mut().pending.push_back(bytes.to_vec());
    }

    /// Sends a message breaking one rule; returns the error the guest must report. An
    /// unballoon request among them is a transaction's last message: the guest still answers
    /// it.
    pub fn hostile(&self, hostile: Hostile) -> Error {
        let mut state = self.state.borrow_mut();
        let trans_id = state.trans_id;
        let message = |body: HostBody<'_>| HostMessage { trans_id, body }.encode();
        let with = |mut bytes: Vec<u8>, at: usize, value: u32| {
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            bytes
        };
        let request = message(HostBody::BalloonRequest { num_pages: 1 });
        let parse = Error::Parse;
        let first_held = state
            .held
            .runs()
            .next()
            .map_or(self.config.ram.start, |r| r.start);
        let unballoon = |ranges: &[PageRange]| {
            message(HostBody::UnballoonRequest {
                more_pages: false,
                ranges: Ranges::Slice(ranges),
            })
        };
        let one = |start: u64, count: u64| PageRange::from_wire(start | count << 40);
        let (bytes, error) = match hostile {
            Hostile::Empty => (Vec::new(), parse(ParseError::ShortHeader { len: 0 })),
            Hostile::SizeBelowHeader => (
                with(request, 0, 6 | 4 << 16),
                parse(ParseError::SizeBelowHeader { size: 4 }),
            ),
            Hostile::SizePastData => (
                with(request, 0, 6 | 64 << 16),
                parse(ParseError::SizePastData { size: 64, len: 16 }),
            ),
            Hostile::TruncatedBalloonRequest => (
                with(request, 0, 6 | 12 << 16),
                parse(ParseError::Truncated {
                    msg_type: MessageType::BalloonRequest,
                    size: 12,
                    needed: 16,
                }),
            ),
            Hostile::RangesPastSize => (
                with(unballoon(&[one(first_held, 1)]), 12, 3),
                parse(ParseError::RangesPastSize {
                    msg_type: MessageType::UnballoonRequest,
                    count: 3,
                    size: 24,
                }),
            ),
            Hostile::BadInfo => {
                let info = message(HostBody::Info(Info {
                    info_type: Info::MAX_PAGE_COUNT,
                    data: &[0; 8],
                }));
                (
                    with(info, 12, 100),
                    parse(ParseError::BadInfo { info_size: 100 }),
                )
            }
            Hostile::UnknownInfo => (
                message(HostBody::Info(Info {
                    info_type: 7,
                    data: &[0; 4],
                })),
                Error::Info {
                    info_type: 7,
                    data_size: 4,
                },
            ),
            Hostile::UnknownType => (
                with(request, 0, 0x7777 | 16 << 16),
                parse(ParseError::UnknownType(0x7777)),
            ),
            Hostile::GuestOnly => (
                GuestMessage {
                    trans_id,
                    body: GuestBody::StatusReport(MemoryStatus::default()),
                }
                .encode(),
                parse(ParseError::WrongDirection(MessageType::StatusReport)),
            ),
            Hostile::ErrorMessage => (
                with(request, 0, 8 << 16),
                parse(ParseError::Unsupported(MessageType::Error)),
            ),
            Hostile::HotRemove => {
                let mut bytes = with(request, 0, 13 | 24 << 16);
                bytes.resize(24, 0);
                (
                    bytes,
                    parse(ParseError::Unsupported(MessageType::HotRemoveRequest)),
                )
            }
            Hostile::SpuriousVersionResponse => (
                message(HostBody::VersionResponse { accepted: true }),
                Error::Unexpected(MessageType::VersionResponse),
            ),
            Hostile::SpuriousCapabilitiesResponse => (
                message(HostBody::CapabilitiesResponse(CapabilitiesResponse {
                    accepted: true,
                    ..CapabilitiesResponse::default()
                })),
                Error::Unexpected(MessageType::CapabilitiesResponse),
            ),
            Hostile::UnballoonNeverBallooned => {
                let range = one(self.config.ram.end + 16, 4);
                (unballoon(&[range]), Error::NotBallooned(range))
            }
            Hostile::UnballoonEmptyRange => {
                let range = one(first_held, 0);
                (unballoon(&[range]), Error::NotBallooned(range))
            }
            Hostile::UnballoonTwice => {
                let range = one(first_held, 1);
                (unballoon(&[range, range]), Error::NotBallooned(range))
            }
        };
        if hostile.is_unballoon() && state.phase == HostPhase::Idle {
            state.phase = HostPhase::Unballooning;
        }
        state.pending.push_back(bytes);
        error
    }

    pub fn phase(&self) -> HostPhase {
        self.state.borrow().phase
    }

    /// The versions the guest asked for, with their last-attempt flags, oldest first.
    pub fn attempts(&self) -> Vec<(Version, bool)> {
        self.state.borrow().attempts.clone()
    }

    pub fn capabilities(&self) -> Option<CapabilitiesReport> {
        self.state.borrow().capabilities
    }

    /// The frames the guest has given the host and not got back.
    pub fn held(&self) -> PageSet {
        self.state.borrow().held.clone()
    }

    /// (ranges, more_pages) of every balloon response, oldest first.
    pub fn balloon_messages(&self) -> Vec<(usize, bool)> {
        self.state.borrow().balloon_messages.clone()
    }

    /// Pages received in each finished balloon transaction.
    pub fn balloon_transactions(&self) -> Vec<u64> {
        self.state.borrow().balloon_transactions.clone()
    }

    pub fn status_reports(&self) -> Vec<MemoryStatus> {
        self.state.borrow().status_reports.clone()
    }

    /// (page_count, result) of every hot-add response.
    pub fn hot_add_responses(&self) -> Vec<(u32, u32)> {
        self.state.borrow().hot_add_responses.clone()
    }

    pub fn unballoon_responses(&self) -> usize {
        self.state.borrow().unballoon_responses
    }

    /// Protocol violations by the guest, oldest first.
    pub fn errors(&self) -> Vec<String> {
        self.state.borrow().errors.clone()
    }
}

/// Messages a host must not send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// A packet with no data.
    Empty,
    /// `size` 4: less than the header.
    SizeBelowHeader,
    /// `size` 64 in a 16-byte packet.
    SizePastData,
    /// A balloon request whose `size` cuts off `num_pages`' neighbour.
    TruncatedBalloonRequest,
    /// An unballoon request claiming 3 ranges with room for 1.
    RangesPastSize,
    /// An info blob of 100 bytes in a 32-byte message.
    BadInfo,
    /// An info message of a type nobody defined.
    UnknownInfo,
    /// Message type 0x7777.
    UnknownType,
    /// A `STATUS_REPORT`, which only the guest sends.
    GuestOnly,
    /// `DM_ERROR`.
    ErrorMessage,
    /// A hot-remove request, which the guest never offered.
    HotRemove,
    /// A version response with no version request out.
    SpuriousVersionResponse,
    /// A capabilities response with no report out.
    SpuriousCapabilitiesResponse,
    /// An unballoon of frames past the guest's RAM.
    UnballoonNeverBallooned,
    /// An unballoon range of no pages.
    UnballoonEmptyRange,
    /// The same held frame named twice in one unballoon message.
    UnballoonTwice,
}

impl Hostile {
    pub const ALL: [Hostile; 16] = [
        Hostile::Empty,
        Hostile::SizeBelowHeader,
        Hostile::SizePastData,
        Hostile::TruncatedBalloonRequest,
        Hostile::RangesPastSize,
        Hostile::BadInfo,
        Hostile::UnknownInfo,
        Hostile::UnknownType,
        Hostile::GuestOnly,
        Hostile::ErrorMessage,
        Hostile::HotRemove,
        Hostile::SpuriousVersionResponse,
        Hostile::SpuriousCapabilitiesResponse,
        Hostile::UnballoonNeverBallooned,
        Hostile::UnballoonEmptyRange,
        Hostile::UnballoonTwice,
    ];

    /// Whether the guest answers it with an `UNBALLOON_RESPONSE`.
    pub fn is_unballoon(self) -> bool {
        matches!(
            self,
            Hostile::UnballoonNeverBallooned
                | Hostile::UnballoonEmptyRange
                | Hostile::UnballoonTwice
        )
    }
}

/// A kernel frame allocator as the balloon sees it; see the module documentation.
#[derive(Debug)]
pub struct FramePool {
    free: PageSet,
    taken: PageSet,
    floor: u64,
    chunk: u64,
    errors: Vec<String>,
}

impl FramePool {
    /// `frames` are free; the pool keeps at least `floor` of them, and hands out runs of at
    /// most `chunk` frames (at least 1).
    pub fn new(frames: impl IntoIterator<Item = Range<u64>>, floor: u64, chunk: u64) -> FramePool {
        let mut free = PageSet::new();
        for run in frames {
            free.insert(run);
        }
        FramePool {
            free,
            taken: PageSet::new(),
            floor,
            chunk: chunk.max(1),
            errors: Vec::new(),
        }
    }

    pub fn free(&self) -> &PageSet {
        &self.free
    }

    /// Frames handed out and not given back.
    pub fn taken(&self) -> &PageSet {
        &self.taken
    }

    /// Give-backs of frames the pool did not hand out.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }
}

impl Pages for FramePool {
    fn take(&mut self, max: u64) -> Option<PageRange> {
        let spare = self.free.pages().saturating_sub(self.floor);
        let run = self.free.runs().next()?;
        let count = max.min(self.chunk).min(spare).min(run.end - run.start);
        let range = PageRange::new(run.start, count).filter(|r| !r.is_empty())?;
        self.free.remove(range.pfns());
        self.taken.insert(range.pfns());
        Some(range)
    }

    fn give_back(&mut self, range: PageRange) {
        if self.taken.remove(range.pfns()) {
            self.free.insert(range.pfns());
        } else {
            self.errors.push(format!("{range} given back, not taken"));
        }
    }
}
