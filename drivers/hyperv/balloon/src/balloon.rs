//! The guest's end of the Dynamic Memory protocol, with no I/O of its own.
//!
//! [`Balloon`] is fed every message the host sends ([`Balloon::handle`]) and queues what the
//! guest sends back; the caller moves queued messages into the channel's ring
//! ([`Balloon::next_message`], then [`Balloon::message_sent`] once the ring took it). Memory
//! comes from and goes back to the kernel through [`Pages`].
//!
//! ```text
//!  Idle --start--> Negotiating(2.0) --VERSION_RESPONSE accepted--> Reporting --accepted--> Ready
//!                    |  rejected: 1.0, then 0.3 (last attempt)          '-- refused --> Stopped
//!                    '-- 0.3 rejected --> Stopped
//!
//!  Ready: BALLOON_REQUEST(n)      -> BALLOON_RESPONSE x k (pages taken per message as it is
//!                                    sent; more_pages on all but the last)
//!         UNBALLOON_REQUEST x k   -> pages given back per message; UNBALLOON_RESPONSE after the
//!                                    one without more_pages
//!         MEM_HOT_ADD_REQUEST     -> MEM_HOT_ADD_RESPONSE: 0 pages, "success" (never again)
//!         INFO_MESSAGE            -> recorded (maximum page count)
//!         status_report(now)      -> STATUS_REPORT, unless the host suppressed them
//! ```
//!
//! # Transactions
//!
//! The guest manufactures every `trans_id` it sends, from one counter (as Linux does). A
//! version or capabilities response must echo the id of the request it answers (QEMU does):
//! anything else is a stale or forged answer and is rejected. The host runs one request at a
//! time (QEMU waits for each answer); a balloon, unballoon or hot-add request that arrives
//! while the guest is still answering the previous one is rejected as [`Error::Busy`].
//!
//! # Trust
//!
//! Every message is parsed from a copy ([`message`](crate::message)). A balloon request is
//! honoured only with pages the kernel chooses to give; an unballoon request is honoured only
//! if every range it names is wholly held by the host (never ballooned, already returned, or
//! named twice in the message: the whole message is refused and nothing is returned). A
//! refused final unballoon message is still answered, so the host's transaction ends. Whatever
//! the host does wrong is an [`Error`], logged, and changes nothing else.
//!
//! # Pages in flight
//!
//! Pages for a balloon response are taken when the response is built, one message at a time,
//! and recorded as the host's at once. A ring that is full holds the built message, so the
//! balloon never runs ahead of what the host has been told by more than one message.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use log::{debug, info, warn};
use ringbolt_time::Instant;

use crate::message::{
    Capabilities, CapabilitiesReport, CapabilitiesResponse, GuestBody, GuestMessage,
    HOT_ADD_SUCCESS, HostBody, HostMessage, Info, MAX_RESPONSE_RANGES, MemoryStatus, MessageType,
    ParseError, Ranges, Version,
};
use crate::pages::{PageRange, PageSet, Pages};

/// What the guest reports, as Linux's `hv_balloon` does on x86 without memory hotplug:
/// ballooning, no hot add (alignment 2^7 MiB = 128 MiB, which only matters with hot add),
/// and the minimum and maximum the host ignores ("set to what is done in the Windows driver").
pub const GUEST_CAPABILITIES: CapabilitiesReport = CapabilitiesReport {
    caps: Capabilities {
        balloon: true,
        hot_add: false,
        hot_add_alignment: 7,
        hot_remove: false,
    },
    min_page_count: 0,
    max_page_number: u64::MAX,
};

/// How often the host expects a status report ("at 1 second intervals", Linux): the period of
/// the kernel's timer for [`Balloon::status_report`].
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The least time between two status reports: a timer that fires a little late and then on
/// time never loses a report, and a caller in a loop cannot flood the host.
pub const MIN_STATUS_REPORT_GAP: Duration = Duration::from_millis(500);

/// Why the driver stopped; the kernel should close the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The host rejected every version offered.
    NoCommonVersion,
    /// The host refused the guest's capabilities.
    CapabilitiesRejected,
}

/// What a host message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The host accepted `version`; capabilities are reported.
    Negotiated {
        version: Version,
    },
    /// The host accepted the capabilities: balloon requests may come. `status_reports`: the
    /// host wants them (QEMU does only with `status-report=on`).
    Ready {
        status_reports: bool,
    },
    /// The host asked for `pages`; responses are queued.
    BalloonRequested {
        pages: u32,
    },
    /// `pages` went back to the kernel; `last`: the host's transaction is over.
    Unballooned {
        pages: u64,
        last: bool,
    },
    /// The host asked to hot-add `pages`; the guest answered that it never will.
    HotAddRefused {
        pages: u64,
    },
    /// The host told the most pages the VM may have.
    MaxPageCount(u64),
    Stopped(Stop),
}

/// Why a host message was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Parse(ParseError),
    /// A message that makes no sense in the driver's state.
    Unexpected(MessageType),
    /// A response whose `trans_id` is not the request's.
    WrongTransaction {
        msg_type: MessageType,
        expected: u32,
        got: u32,
    },
    /// A request while the previous one is still being answered.
    Busy(MessageType),
    /// An unballoon range that is empty or not wholly held by the host; the message returned
    /// nothing.
    NotBallooned(PageRange),
    /// An info message the driver does not understand.
    Info {
        info_type: u32,
        data_size: usize,
    },
    /// A packet that is not in-band data (from [`BalloonChannel`](crate::BalloonChannel)).
    NotInBand {
        packet_type: u16,
    },
}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Self {
        Error::Parse(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Parse(e) => write!(f, "malformed message: {e}"),
            Error::Unexpected(t) => write!(f, "unexpected {t:?}"),
            Error::WrongTransaction {
                msg_type,
                expected,
                got,
            } => write!(f, "{msg_type:?} for transaction {got}, expected {expected}"),
            Error::Busy(t) => write!(f, "{t:?} while the previous request is being answered"),
            Error::NotBallooned(r) => write!(f, "unballoon of {r}, which the host does not hold"),
            Error::Info {
                info_type,
                data_size,
            } => write!(f, "info type {info_type} with {data_size} bytes"),
            Error::NotInBand { packet_type } => {
                write!(f, "packet type {packet_type:#x} is not in-band data")
            }
        }
    }
}

impl core::error::Error for Error {}

/// Where the driver is, as [`Balloon::phase`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Negotiating,
    Reporting,
    Ready,
    Stopped(Stop),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    /// `VERSION_REQUEST` for `crate::message::NEGOTIABLE[index]` is out as `trans_id`.
    Negotiating {
        index: usize,
        trans_id: u32,
    },
    /// `CAPABILITIES_REPORT` is out as `trans_id`.
    Reporting {
        version: Version,
        trans_id: u32,
    },
    Ready {
        version: Version,
        status_reports: bool,
    },
    Stopped(Stop),
}

#[derive(Debug)]
enum Outgoing {
    Message(Vec<u8>),
    /// A balloon request still to answer with up to `remaining` pages.
    Inflate {
        remaining: u64,
    },
}

/// The guest's end of the protocol; see the module documentation.
#[derive(Debug)]
pub struct Balloon {
    state: State,
    /// The last `trans_id` used.
    trans_id: u32,
    /// Frames the host holds.
    ballooned: PageSet,
    /// Messages for the host, oldest first.
    outbox: VecDeque<Outgoing>,
    /// An unballoon transaction is between messages (the last one had `more_pages`).
    deflating: bool,
    last_report: Option<Instant>,
    max_page_count: Option<u64>,
}

impl Default for Balloon {
    fn default() -> Self {
        Balloon::new()
    }
}

impl Balloon {
    pub fn new() -> Self {
        Balloon {
            state: State::Idle,
            trans_id: 0,
            ballooned: PageSet::new(),
            outbox: VecDeque::new(),
            deflating: false,
            last_report: None,
            max_page_count: None,
        }
    }

    /// Starts version negotiation (on a freshly opened channel; again after the channel was
    /// reopened). Queued messages are dropped; pages the host holds stay held.
    pub fn start(&mut self) {
        self.outbox.clear();
        self.deflating = false;
        self.last_report = None;
        self.request_version(0);
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Idle => Phase::Idle,
            State::Negotiating { .. } => Phase::Negotiating,
            State::Reporting { .. } => Phase::Reporting,
            State::Ready { .. } => Phase::Ready,
            State::Stopped(stop) => Phase::Stopped(stop),
        }
    }

    /// The version the host accepted.
    pub fn version(&self) -> Option<Version> {
        match self.state {
            State::Reporting { version, .. } | State::Ready { version, .. } => Some(version),
            _ => None,
        }
    }

    /// Frames the host holds.
    pub fn ballooned(&self) -> &PageSet {
        &self.ballooned
    }

    /// The host's maximum page count, if it sent one.
    pub fn max_page_count(&self) -> Option<u64> {
        self.max_page_count
    }

    /// Whether messages wait to be sent.
    pub fn has_outgoing(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Handles one message, the data of an in-band packet from the host. Errors are logged
    /// (events only at debug level: the caller reports them); the driver carries on with the
    /// next message.
    pub fn handle(&mut self, bytes: &[u8], pages: &mut impl Pages) -> Result<Option<Event>, Error> {
        let result = HostMessage::parse(bytes)
            .map_err(Error::from)
            .and_then(|message| self.dispatch(message, pages));
        match &result {
            Err(e) => warn!("hv-balloon: {e}"),
            Ok(Some(event)) => debug!("hv-balloon: {event:?}"),
            Ok(None) => {}
        }
        result
    }

    fn dispatch(
        &mut self,
        message: HostMessage<'_>,
        pages: &mut impl Pages,
    ) -> Result<Option<Event>, Error> {
        let msg_type = message.body.msg_type();
        match message.body {
            HostBody::VersionResponse { accepted } => {
                self.on_version_response(message.trans_id, accepted)
            }
            HostBody::CapabilitiesResponse(response) => {
                self.on_capabilities_response(message.trans_id, response)
            }
            HostBody::Info(info) => self.on_info(info).map(Some),
            // Requests: only once running, and one at a time.
            _ if !matches!(self.state, State::Ready { .. }) => Err(Error::Unexpected(msg_type)),
            HostBody::UnballoonRequest { more_pages, ranges } => {
                if self.has_outgoing() {
                    return Err(Error::Busy(msg_type));
                }
                self.on_unballoon(more_pages, ranges, pages).map(Some)
            }
            _ if self.has_outgoing() || self.deflating => Err(Error::Busy(msg_type)),
            HostBody::BalloonRequest { num_pages } => {
                self.outbox.push_back(Outgoing::Inflate {
                    remaining: u64::from(num_pages),
                });
                Ok(Some(Event::BalloonRequested { pages: num_pages }))
            }
            HostBody::HotAddRequest { range, .. } => {
                self.queue(GuestBody::HotAddResponse {
                    page_count: 0,
                    result: HOT_ADD_SUCCESS,
                });
                Ok(Some(Event::HotAddRefused {
                    pages: range.count(),
                }))
            }
        }
    }

    /// Queues `VERSION_REQUEST` for `crate::message::NEGOTIABLE[index]`.
    fn request_version(&mut self, index: usize) {
        let last = crate::message::NEGOTIABLE.len() - 1;
        let version = crate::message::NEGOTIABLE[index.min(last)];
        let trans_id = self.queue(GuestBody::VersionRequest {
            version,
            last_attempt: index >= last,
        });
        self.state = State::Negotiating { index, trans_id };
    }

    fn on_version_response(
        &mut self,
        trans_id: u32,
        accepted: bool,
    ) -> Result<Option<Event>, Error> {
        let State::Negotiating {
            index,
            trans_id: expected,
        } = self.state
        else {
            return Err(Error::Unexpected(MessageType::VersionResponse));
        };
        check_transaction(MessageType::VersionResponse, expected, trans_id)?;
        let Some(&version) = crate::message::NEGOTIABLE.get(index) else {
            return Err(Error::Unexpected(MessageType::VersionResponse));
        };
        if accepted {
            let trans_id = self.queue(GuestBody::CapabilitiesReport(GUEST_CAPABILITIES));
            self.state = State::Reporting { version, trans_id };
            return Ok(Some(Event::Negotiated { version }));
        }
        info!("hv-balloon: host rejected protocol {version}");
        if index + 1 < crate::message::NEGOTIABLE.len() {
            self.request_version(index + 1);
            return Ok(None);
        }
        Ok(Some(self.stop(Stop::NoCommonVersion)))
    }

    fn on_capabilities_response(
        &mut self,
        trans_id: u32,
        response: CapabilitiesResponse,
    ) -> Result<Option<Event>, Error> {
        let State::Reporting {
            version,
            trans_id: expected,
        } = self.state
        else {
            return Err(Error::Unexpected(MessageType::CapabilitiesResponse));
        };
        check_transaction(MessageType::CapabilitiesResponse, expected, trans_id)?;
        if !response.accepted {
            return Ok(Some(self.stop(Stop::CapabilitiesRejected)));
        }
        let status_reports = !response.suppress_pressure_reports;
        self.state = State::Ready {
            version,
            status_reports,
        };
        Ok(Some(Event::Ready { status_reports }))
    }

    fn stop(&mut self, stop: Stop) -> Event {
        self.state = State::Stopped(stop);
        Event::Stopped(stop)
    }

    /// Returns the ranges of one unballoon message to the kernel, all or none, and answers the
    /// transaction's last message whatever its ranges were.
    fn on_unballoon(
        &mut self,
        more_pages: bool,
        ranges: Ranges<'_>,
        pages: &mut impl Pages,
    ) -> Result<Event, Error> {
        self.deflating = more_pages;
        if !more_pages {
            self.queue(GuestBody::UnballoonResponse);
        }
        for (i, range) in ranges.iter().enumerate() {
            if !self.ballooned.remove(range.pfns()) {
                for taken in ranges.iter().take(i) {
                    self.ballooned.insert(taken.pfns());
                }
                return Err(Error::NotBallooned(range));
            }
        }
        for range in ranges.iter() {
            pages.give_back(range);
        }
        Ok(Event::Unballooned {
            pages: ranges.pages(),
            last: !more_pages,
        })
    }

    fn on_info(&mut self, info: Info<'_>) -> Result<Event, Error> {
        let max = info.max_page_count().ok_or(Error::Info {
            info_type: info.info_type,
            data_size: info.data.len(),
        })?;
        self.max_page_count = Some(max);
        Ok(Event::MaxPageCount(max))
    }

    /// Encodes `body` with the next transaction id and queues it; returns the id.
    fn queue(&mut self, body: GuestBody<'_>) -> u32 {
        let (trans_id, message) = self.encode(body);
        self.outbox.push_back(Outgoing::Message(message));
        trans_id
    }

    fn encode(&mut self, body: GuestBody<'_>) -> (u32, Vec<u8>) {
        self.trans_id = self.trans_id.wrapping_add(1);
        let trans_id = self.trans_id;
        (trans_id, GuestMessage { trans_id, body }.encode())
    }

    /// The next message to send, building a balloon response (and taking its pages) if that
    /// is what comes next. Call [`message_sent`](Self::message_sent) once the ring took it;
    /// until then the same message is returned.
    pub fn next_message(&mut self, pages: &mut impl Pages) -> Option<&[u8]> {
        if let Some(&Outgoing::Inflate { remaining }) = self.outbox.front() {
            self.outbox.pop_front();
            let (message, left) = self.balloon_response(remaining, pages);
            if let Some(remaining) = left {
                self.outbox.push_front(Outgoing::Inflate { remaining });
            }
            self.outbox.push_front(Outgoing::Message(message));
        }
        match self.outbox.front() {
            Some(Outgoing::Message(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// The message [`next_message`](Self::next_message) returned is in the ring.
    pub fn message_sent(&mut self) {
        if let Some(Outgoing::Message(_)) = self.outbox.front() {
            self.outbox.pop_front();
        }
    }

    /// One `BALLOON_RESPONSE` with up to [`MAX_RESPONSE_RANGES`] ranges towards `remaining`
    /// pages, and what remains if another message must follow.
    fn balloon_response(
        &mut self,
        remaining: u64,
        pages: &mut impl Pages,
    ) -> (Vec<u8>, Option<u64>) {
        let mut ranges = Vec::new();
        let mut left = remaining;
        let mut exhausted = false;
        while left > 0 && ranges.len() < MAX_RESPONSE_RANGES {
            let max = left.min(PageRange::MAX_COUNT);
            let Some(range) = pages.take(max) else {
                exhausted = true;
                break;
            };
            if range.is_empty() || range.count() > max || !self.ballooned.insert(range.pfns()) {
                warn!("hv-balloon: the kernel gave {range} for at most {max} pages; stopping");
                exhausted = true;
                break;
            }
            left -= range.count();
            ranges.push(range);
        }
        let more = !exhausted && left > 0;
        let (_, message) = self.encode(GuestBody::BalloonResponse {
            more_pages: more,
            ranges: Ranges::Slice(&ranges),
        });
        (message, more.then_some(left))
    }

    /// A `STATUS_REPORT` of `status` (with the pages the host holds added to `committed`),
    /// if the host wants reports and the last one was at least [`MIN_STATUS_REPORT_GAP`] ago.
    /// The kernel calls this every [`STATUS_REPORT_INTERVAL`].
    pub fn status_report(&mut self, now: Instant, status: &MemoryStatus) -> Option<Vec<u8>> {
        let State::Ready {
            status_reports: true,
            ..
        } = self.state
        else {
            return None;
        };
        if self
            .last_report
            .is_some_and(|last| now - last < MIN_STATUS_REPORT_GAP)
        {
            return None;
        }
        self.last_report = Some(now);
        let report = MemoryStatus {
            committed: status.committed.saturating_add(self.ballooned.pages()),
            ..*status
        };
        Some(self.encode(GuestBody::StatusReport(report)).1)
    }
}

fn check_transaction(msg_type: MessageType, expected: u32, got: u32) -> Result<(), Error> {
    if got != expected {
        return Err(Error::WrongTransaction {
            msg_type,
            expected,
            got,
        });
    }
    Ok(())
}
