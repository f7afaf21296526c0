//! The VMBus connection: version negotiation, offers, GPADLs, channel open and close, unload.
//!
//! [`Connection`] is a sans-I/O state machine. The kernel feeds it every channel message the host
//! delivers ([`Connection::handle_message`]) and it answers through [`Host::post_message`];
//! driver-side operations ([`create_gpadl`](Connection::create_gpadl),
//! [`open_channel`](Connection::open_channel), ...) post their request and return, and the
//! host's answer arrives later as an [`Event`]. Nothing here waits or keeps time: timeouts are
//! the caller's.
//!
//! ```text
//!  Idle --connect--> Contacting(v) --VERSION_RESPONSE ok--> Connected --unload--> Unloading
//!   ^                   |   rejected: next older v                        |
//!   |                   '-- none left: NoCommonVersion                    |
//!   '---------------------------------------- UNLOAD_RESPONSE -----------'
//!
//!  per channel:  offered (Closed) --open_channel--> Opening --OPEN_RESULT ok--> Open
//!                   ^                                   '-- failed --> Closed     |
//!                   '------------------------- close_channel ----------------------'
//!                rescind: Closed channels are released at once (RELID_RELEASED);
//!                Opening/Open ones when the driver closes them
//!
//!  per GPADL:    create_gpadl --> Creating --GPADL_CREATED--> Created
//!                  --teardown_gpadl--> TearingDown --GPADL_TORNDOWN--> gone
//! ```
//!
//! Channels are tracked by relid, GPADLs by handle, opens by open id; a host message that names
//! something not in the state it claims is an [`Error`], logged, and changes nothing.

use core::fmt;

use log::{info, warn};
use ringbolt_shmem::SharedMemory;

use crate::message::channel::OPEN_USER_DATA_SIZE;
use crate::message::gpadl::{self, SplitError};
use crate::message::{
    CloseChannel, GpadlCreated, GpadlTeardown, HostMessage, InitiateContact, InterruptTarget,
    Message, MessageType, Offer, OpenChannel, OpenResult, ParseError, RelidReleased, Version,
    VersionResponse,
};
use crate::{Host, HvStatus, MESSAGE_SINT, PAGE_SIZE, VMBUS_MESSAGE_TYPE};

/// Connection id of the message port before protocol 5.0 (`VMBUS_MESSAGE_CONNECTION_ID`).
pub const MESSAGE_CONNECTION_ID: u32 = 1;
/// Connection id for `INITIATE_CONTACT` from protocol 5.0 (`VMBUS_MESSAGE_CONNECTION_ID_4`).
pub const MESSAGE_CONNECTION_ID_4: u32 = 4;
/// Relids index the 2048 event flags of a SINT (Linux's `MAX_CHANNEL_RELIDS`); 0 is never used.
pub const MAX_RELID: u32 = 2047;
/// Connection ids are 24 bits (`hv_connection_id`).
const CONNECTION_ID_MASK: u32 = 0x00ff_ffff;
/// Linux's and FreeBSD's first GPADL handle; any nonzero value works.
const FIRST_GPADL_HANDLE: u32 = 0xe1e10;

/// What the kernel tells the connection about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The newest version to offer (Linux's `max_version`); [`Version::V5_3`] to offer all.
    pub max_version: Version,
    /// VP index the host sends channel messages to.
    pub target_vcpu: u32,
    /// VTL to deliver messages to (5.1 on); 0 for an ordinary guest.
    pub vtl: u8,
    /// Guest physical address of the interrupt page, sent before 5.0 (hosts from 2.4 on do not
    /// use it, so 0 is accepted in practice).
    pub interrupt_page: u64,
    /// Guest physical addresses of the two zeroed monitor pages (parent-to-child,
    /// child-to-parent), which every guest supplies.
    pub monitor_pages: [u64; 2],
}

/// A GPADL handle, chosen by the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpadlHandle(pub u32);

/// How to open a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenParams<'a> {
    /// A created GPADL of this channel holding both rings, guest-to-host first.
    pub ring_gpadl: GpadlHandle,
    /// Where the host-to-guest ring starts in the GPADL, in pages: the outbound ring's size.
    pub downstream_page_offset: u32,
    /// VP index to interrupt for this channel.
    pub target_vp: u32,
    /// Device-specific open data, at most 120 bytes.
    pub user_data: &'a [u8],
}

/// What a host message did, for the driver to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The host accepted `version`; offers were requested.
    Connected {
        version: Version,
    },
    /// A channel was offered; see [`Connection::offer`].
    Offer {
        relid: u32,
    },
    /// The host has sent every offer it had at connect time.
    AllOffersDelivered,
    /// The host withdrew the channel. Its GPADLs are gone and a pending open will not be
    /// answered; if it was opening or open, [`Connection::close_channel`] releases it.
    Rescinded {
        relid: u32,
    },
    GpadlCreated {
        relid: u32,
        handle: GpadlHandle,
    },
    /// The host refused the GPADL; its pages are the guest's again.
    GpadlFailed {
        relid: u32,
        handle: GpadlHandle,
        status: u32,
    },
    /// The host no longer maps the GPADL's pages.
    GpadlTornDown {
        handle: GpadlHandle,
    },
    Opened {
        relid: u32,
    },
    OpenFailed {
        relid: u32,
        status: u32,
    },
    /// The host acknowledged `UNLOAD`; the connection is idle and may connect again.
    Unloaded,
}

/// Why a message or an operation was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The host sent a malformed message.
    Parse(ParseError),
    /// The host sent a message that makes no sense in the connection's state.
    Unexpected(MessageType),
    /// Every version up to [`Config::max_version`] was rejected.
    NoCommonVersion,
    /// `HvPostMessage` failed.
    Post(HvStatus),
    /// The operation needs another connection state (connected for channel operations, idle to
    /// connect).
    WrongState,
    /// A connection id that is zero or wider than 24 bits.
    BadConnectionId(u32),
    /// An offer's relid outside 1..=2047.
    InvalidRelid(u32),
    /// An offer for a relid that is already offered.
    RelidInUse(u32),
    /// No offered channel has this relid.
    UnknownRelid(u32),
    /// The channel table is full; the offer was dropped.
    TooManyChannels,
    /// The GPADL table is full.
    TooManyGpadls,
    /// No GPADL has this handle in the state the message or operation needs.
    UnknownGpadl(u32),
    /// A `GPADL_CREATED` naming another channel than the GPADL's.
    GpadlMismatch { handle: u32, relid: u32 },
    /// The GPADL holds an opening or open channel's rings.
    GpadlInUse(u32),
    /// The channel is not in a state that allows the operation (opening an open channel,
    /// closing a closed one, using a rescinded one).
    ChannelState { relid: u32 },
    /// An `OPENCHANNEL_RESULT` for no pending open.
    UnexpectedOpenResult { relid: u32, open_id: u32 },
    /// A memory region for a GPADL is not whole pages, or the host gave no page number for it.
    BadRegion { region: usize },
    /// More pages than one GPADL can describe.
    TooManyPages(usize),
    /// The ring GPADL cannot hold two rings split at this offset (each needs a header and a data
    /// page).
    BadRingLayout {
        downstream_page_offset: u32,
        pages: usize,
    },
    /// Open data longer than 120 bytes.
    UserDataTooLong(usize),
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
            Error::Unexpected(t) => write!(f, "unexpected {t:?} message"),
            Error::NoCommonVersion => write!(f, "host accepts no protocol version we offer"),
            Error::Post(s) => write!(f, "posting a message: {s}"),
            Error::WrongState => write!(f, "not possible in this connection state"),
            Error::BadConnectionId(id) => write!(f, "invalid connection id {id:#x}"),
            Error::InvalidRelid(r) => write!(f, "invalid relid {r}"),
            Error::RelidInUse(r) => write!(f, "relid {r} offered twice"),
            Error::UnknownRelid(r) => write!(f, "no channel with relid {r}"),
            Error::TooManyChannels => write!(f, "channel table full"),
            Error::TooManyGpadls => write!(f, "GPADL table full"),
            Error::UnknownGpadl(h) => write!(f, "no GPADL {h:#x} in that state"),
            Error::GpadlMismatch { handle, relid } => {
                write!(f, "GPADL {handle:#x} does not belong to relid {relid}")
            }
            Error::GpadlInUse(h) => write!(f, "GPADL {h:#x} holds an open channel's rings"),
            Error::ChannelState { relid } => write!(f, "channel {relid} is in the wrong state"),
            Error::UnexpectedOpenResult { relid, open_id } => {
                write!(
                    f,
                    "open result for relid {relid} open id {open_id} not pending"
                )
            }
            Error::BadRegion { region } => write!(f, "GPADL region {region} is not whole pages"),
            Error::TooManyPages(n) => write!(f, "{n} pages exceed one GPADL"),
            Error::BadRingLayout {
                downstream_page_offset,
                pages,
            } => write!(
                f,
                "{pages}-page ring GPADL cannot split at page {downstream_page_offset}"
            ),
            Error::UserDataTooLong(n) => write!(f, "{n} bytes of open data exceed 120"),
        }
    }
}

impl core::error::Error for Error {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    /// `INITIATE_CONTACT` for `Version::NEGOTIABLE[index]` is out.
    Contacting {
        index: usize,
    },
    Connected {
        version: Version,
        offers_delivered: bool,
    },
    Unloading,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChannelState {
    Closed,
    Opening { open_id: u32, gpadl: u32 },
    Open { gpadl: u32 },
}

#[derive(Clone, Copy, Debug)]
struct ChannelEntry {
    offer: Offer,
    state: ChannelState,
    rescinded: bool,
}

impl ChannelEntry {
    fn ring_gpadl(&self) -> Option<u32> {
        match self.state {
            ChannelState::Opening { gpadl, .. } | ChannelState::Open { gpadl } => Some(gpadl),
            ChannelState::Closed => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GpadlState {
    Creating,
    Created,
    TearingDown,
}

#[derive(Clone, Copy, Debug)]
struct GpadlEntry {
    handle: u32,
    relid: u32,
    pages: usize,
    state: GpadlState,
}

/// The guest's end of the VMBus control protocol, tracking up to `CHANNELS` channels and
/// `GPADLS` GPADLs in fixed tables.
#[derive(Debug)]
pub struct Connection<const CHANNELS: usize = 32, const GPADLS: usize = 64> {
    config: Config,
    state: State,
    /// Where guest messages go: [`MESSAGE_CONNECTION_ID`], or the host's choice from 5.0.
    msg_conn_id: u32,
    channels: [Option<ChannelEntry>; CHANNELS],
    gpadls: [Option<GpadlEntry>; GPADLS],
    next_gpadl: u32,
    next_open_id: u32,
}

impl<const CHANNELS: usize, const GPADLS: usize> Connection<CHANNELS, GPADLS> {
    pub fn new(config: Config) -> Self {
        Connection {
            config,
            state: State::Idle,
            msg_conn_id: MESSAGE_CONNECTION_ID,
            channels: [const { None }; CHANNELS],
            gpadls: [const { None }; GPADLS],
            next_gpadl: FIRST_GPADL_HANDLE,
            next_open_id: 1,
        }
    }

    /// The negotiated version, once connected.
    pub fn version(&self) -> Option<Version> {
        match self.state {
            State::Connected { version, .. } => Some(version),
            _ => None,
        }
    }

    /// The connection id guest messages are posted to.
    pub fn message_connection_id(&self) -> u32 {
        self.msg_conn_id
    }

    /// Connected, and every boot-time offer has arrived.
    pub fn is_ready(&self) -> bool {
        matches!(
            self.state,
            State::Connected {
                offers_delivered: true,
                ..
            }
        )
    }

    /// The offers of channels not rescinded.
    pub fn offers(&self) -> impl Iterator<Item = &Offer> {
        self.channels
            .iter()
            .flatten()
            .filter(|c| !c.rescinded)
            .map(|c| &c.offer)
    }

    /// The offer of channel `relid`, unless rescinded.
    pub fn offer(&self, relid: u32) -> Option<&Offer> {
        self.offers().find(|o| o.child_relid == relid)
    }

    /// Whether channel `relid` is open (its rings may be used).
    pub fn is_open(&self, relid: u32) -> bool {
        self.channel(relid)
            .is_some_and(|c| matches!(c.state, ChannelState::Open { .. }) && !c.rescinded)
    }

    /// Starts version negotiation with the newest version allowed. Only from idle.
    pub fn connect(&mut self, host: &impl Host) -> Result<(), Error> {
        if self.state != State::Idle {
            return Err(Error::WrongState);
        }
        self.contact_from(host, 0)
    }

    /// Handles one message copied out of the SynIC message slot.
    ///
    /// Whatever the host did wrong is logged and returned as an error without changing state,
    /// so the caller may log it again and carry on with the next message.
    pub fn handle_message(
        &mut self,
        host: &impl Host,
        bytes: &[u8],
    ) -> Result<Option<Event>, Error> {
        let result = HostMessage::parse(bytes)
            .map_err(Error::from)
            .and_then(|message| self.dispatch(host, message));
        if let Err(e) = &result {
            warn!("vmbus: {e}");
        }
        result
    }

    fn dispatch(&mut self, host: &impl Host, message: HostMessage) -> Result<Option<Event>, Error> {
        match message {
            HostMessage::VersionResponse(response) => self.on_version_response(host, response),
            HostMessage::UnloadResponse => {
                if self.state != State::Unloading {
                    return Err(Error::Unexpected(MessageType::UnloadResponse));
                }
                self.reset();
                info!("vmbus: unloaded");
                Ok(Some(Event::Unloaded))
            }
            // Everything else is about channels, which exist only while connected.
            other if self.version().is_none() => Err(Error::Unexpected(other.msg_type())),
            HostMessage::Offer(offer) => self.on_offer(offer).map(Some),
            HostMessage::AllOffersDelivered => {
                if let State::Connected {
                    offers_delivered, ..
                } = &mut self.state
                {
                    *offers_delivered = true;
                }
                Ok(Some(Event::AllOffersDelivered))
            }
            HostMessage::Rescind(r) => self.on_rescind(host, r.child_relid).map(Some),
            HostMessage::GpadlCreated(c) => self.on_gpadl_created(c).map(Some),
            HostMessage::GpadlTorndown(t) => {
                let slot = self.gpadl_slot(t.gpadl, GpadlState::TearingDown)?;
                self.gpadls[slot] = None;
                Ok(Some(Event::GpadlTornDown {
                    handle: GpadlHandle(t.gpadl),
                }))
            }
            HostMessage::OpenResult(r) => self.on_open_result(r).map(Some),
        }
    }

    /// Posts `INITIATE_CONTACT` for the newest allowed version from `NEGOTIABLE[index]` on.
    fn contact_from(&mut self, host: &impl Host, mut index: usize) -> Result<(), Error> {
        while let Some(&version) = Version::NEGOTIABLE.get(index) {
            if version > self.config.max_version {
                index += 1;
                continue;
            }
            let (connection_id, interrupt) = if version >= Version::V5_0 {
                let target = InterruptTarget::Sint {
                    sint: MESSAGE_SINT,
                    vtl: self.config.vtl,
                    feature_flags: 0,
                };
                (MESSAGE_CONNECTION_ID_4, target)
            } else {
                let page = InterruptTarget::InterruptPage(self.config.interrupt_page);
                (MESSAGE_CONNECTION_ID, page)
            };
            let message = InitiateContact {
                version,
                target_vcpu: self.config.target_vcpu,
                interrupt,
                monitor_pages: self.config.monitor_pages,
            }
            .encode();
            match host.post_message(connection_id, VMBUS_MESSAGE_TYPE, message.as_bytes()) {
                Ok(()) => {
                    info!("vmbus: offering protocol {version}");
                    self.state = State::Contacting { index };
                    return Ok(());
                }
                // A host older than 5.0 has no connection 4 (Linux's vmbus_post_msg).
                Err(HvStatus::INVALID_CONNECTION_ID) if version >= Version::V5_0 => {
                    info!("vmbus: no connection id 4, so no protocol {version}");
                    index += 1;
                }
                Err(status) => {
                    self.state = State::Idle;
                    return Err(Error::Post(status));
                }
            }
        }
        self.state = State::Idle;
        Err(Error::NoCommonVersion)
    }

    fn on_version_response(
        &mut self,
        host: &impl Host,
        response: VersionResponse,
    ) -> Result<Option<Event>, Error> {
        let State::Contacting { index } = self.state else {
            return Err(Error::Unexpected(MessageType::VersionResponse));
        };
        let version = *Version::NEGOTIABLE.get(index).ok_or(Error::WrongState)?;
        if !response.version_supported {
            info!("vmbus: host rejected protocol {version}");
            self.contact_from(host, index + 1)?;
            return Ok(None);
        }
        self.msg_conn_id = if version >= Version::V5_0 {
            let id = response.msg_conn_id;
            if id == 0 || id & !CONNECTION_ID_MASK != 0 {
                self.state = State::Idle;
                return Err(Error::BadConnectionId(id));
            }
            id
        } else {
            MESSAGE_CONNECTION_ID
        };
        self.state = State::Connected {
            version,
            offers_delivered: false,
        };
        info!(
            "vmbus: protocol {version}, messages on connection {}",
            self.msg_conn_id
        );
        self.post(host, &Message::header_only(MessageType::RequestOffers))?;
        Ok(Some(Event::Connected { version }))
    }

    fn on_offer(&mut self, offer: Offer) -> Result<Event, Error> {
        let relid = offer.child_relid;
        if relid == 0 || relid > MAX_RELID {
            return Err(Error::InvalidRelid(relid));
        }
        if offer.connection_id & !CONNECTION_ID_MASK != 0 {
            return Err(Error::BadConnectionId(offer.connection_id));
        }
        if self.channel(relid).is_some() {
            return Err(Error::RelidInUse(relid));
        }
        let slot = self
            .channels
            .iter_mut()
            .find(|c| c.is_none())
            .ok_or(Error::TooManyChannels)?;
        *slot = Some(ChannelEntry {
            offer,
            state: ChannelState::Closed,
            rescinded: false,
        });
        info!(
            "vmbus: offer relid {relid}: {} {} instance {} sub-channel {}",
            offer.class_name(),
            offer.interface_type,
            offer.interface_instance,
            offer.sub_channel_index
        );
        Ok(Event::Offer { relid })
    }

    fn on_rescind(&mut self, host: &impl Host, relid: u32) -> Result<Event, Error> {
        let slot = self.channel_slot(relid)?;
        let Some(channel) = &mut self.channels[slot] else {
            return Err(Error::UnknownRelid(relid));
        };
        if channel.rescinded {
            return Err(Error::ChannelState { relid });
        }
        info!("vmbus: relid {relid} rescinded");
        channel.rescinded = true;
        let closed = channel.state == ChannelState::Closed;
        // The host dropped the channel's GPADLs with it.
        for gpadl in &mut self.gpadls {
            if gpadl.is_some_and(|g| g.relid == relid) {
                *gpadl = None;
            }
        }
        if closed {
            self.release(host, slot)?;
        }
        Ok(Event::Rescinded { relid })
    }

    fn on_gpadl_created(&mut self, created: GpadlCreated) -> Result<Event, Error> {
        let slot = self.gpadl_slot(created.gpadl, GpadlState::Creating)?;
        let Some(gpadl) = &mut self.gpadls[slot] else {
            return Err(Error::UnknownGpadl(created.gpadl));
        };
        if gpadl.relid != created.child_relid {
            return Err(Error::GpadlMismatch {
                handle: created.gpadl,
                relid: created.child_relid,
            });
        }
        let (relid, handle) = (gpadl.relid, GpadlHandle(gpadl.handle));
        if created.status != 0 {
            self.gpadls[slot] = None;
            return Ok(Event::GpadlFailed {
                relid,
                handle,
                status: created.status,
            });
        }
        gpadl.state = GpadlState::Created;
        Ok(Event::GpadlCreated { relid, handle })
    }

    fn on_open_result(&mut self, result: OpenResult) -> Result<Event, Error> {
        let unexpected = Error::UnexpectedOpenResult {
            relid: result.child_relid,
            open_id: result.open_id,
        };
        let slot = self
            .channel_slot(result.child_relid)
            .map_err(|_| unexpected)?;
        let Some(channel) = &mut self.channels[slot] else {
            return Err(unexpected);
        };
        let ChannelState::Opening { open_id, gpadl } = channel.state else {
            return Err(unexpected);
        };
        if open_id != result.open_id {
            return Err(unexpected);
        }
        let relid = result.child_relid;
        if result.status != 0 {
            channel.state = ChannelState::Closed;
            return Ok(Event::OpenFailed {
                relid,
                status: result.status,
            });
        }
        channel.state = ChannelState::Open { gpadl };
        Ok(Event::Opened { relid })
    }

    /// Describes `regions` (in order, each whole 4 KiB pages) to the host as one GPADL for
    /// channel `relid`. [`Event::GpadlCreated`] follows when the host has mapped them.
    ///
    /// A channel's ring GPADL holds its outbound ring's region, then its inbound ring's.
    pub fn create_gpadl<H: Host>(
        &mut self,
        host: &H,
        relid: u32,
        regions: &[&H::Memory],
    ) -> Result<GpadlHandle, Error> {
        self.connected()?;
        self.usable_channel(relid)?;
        let mut pages = 0;
        for (region, memory) in regions.iter().enumerate() {
            let len = memory.len();
            if len == 0 || !len.is_multiple_of(PAGE_SIZE) {
                return Err(Error::BadRegion { region });
            }
            pages = usize::saturating_add(pages, len / PAGE_SIZE);
        }
        let slot = self
            .gpadls
            .iter()
            .position(Option::is_none)
            .ok_or(Error::TooManyGpadls)?;
        let handle = self.allocate_gpadl_handle();
        let page_number = |mut index: usize| {
            for memory in regions {
                let count = memory.len() / PAGE_SIZE;
                if index < count {
                    return host.page_number(memory, index);
                }
                index -= count;
            }
            None
        };
        let conn_id = self.msg_conn_id;
        gpadl::split(relid, handle, pages, page_number, |message: &Message| {
            host.post_message(conn_id, VMBUS_MESSAGE_TYPE, message.as_bytes())
        })
        .map_err(|e| match e {
            SplitError::NoPages => Error::BadRegion { region: 0 },
            SplitError::TooManyPages(n) => Error::TooManyPages(n),
            SplitError::MissingPage(page) => Error::BadRegion {
                region: region_of(regions, page),
            },
            SplitError::Emit(status) => Error::Post(status),
        })?;
        self.gpadls[slot] = Some(GpadlEntry {
            handle,
            relid,
            pages,
            state: GpadlState::Creating,
        });
        Ok(GpadlHandle(handle))
    }

    /// Asks the host to unmap a created GPADL. [`Event::GpadlTornDown`] follows; only then may
    /// the pages be reused. A GPADL holding an open channel's rings must wait for its close.
    pub fn teardown_gpadl(&mut self, host: &impl Host, handle: GpadlHandle) -> Result<(), Error> {
        self.connected()?;
        let slot = self.gpadl_slot(handle.0, GpadlState::Created)?;
        let Some(gpadl) = self.gpadls[slot] else {
            return Err(Error::UnknownGpadl(handle.0));
        };
        if self
            .channels
            .iter()
            .flatten()
            .any(|c| c.offer.child_relid == gpadl.relid && c.ring_gpadl() == Some(handle.0))
        {
            return Err(Error::GpadlInUse(handle.0));
        }
        let message = GpadlTeardown {
            child_relid: gpadl.relid,
            gpadl: handle.0,
        };
        self.post(host, &message.encode())?;
        if let Some(g) = &mut self.gpadls[slot] {
            g.state = GpadlState::TearingDown;
        }
        Ok(())
    }

    /// Opens channel `relid` on its ring GPADL. [`Event::Opened`] or [`Event::OpenFailed`]
    /// follows.
    pub fn open_channel(
        &mut self,
        host: &impl Host,
        relid: u32,
        params: OpenParams<'_>,
    ) -> Result<(), Error> {
        self.connected()?;
        let slot = self.usable_channel(relid)?;
        let gpadl_slot = self.gpadl_slot(params.ring_gpadl.0, GpadlState::Created)?;
        let Some(gpadl) = self.gpadls[gpadl_slot] else {
            return Err(Error::UnknownGpadl(params.ring_gpadl.0));
        };
        if gpadl.relid != relid {
            return Err(Error::GpadlMismatch {
                handle: gpadl.handle,
                relid,
            });
        }
        let offset = params.downstream_page_offset as usize;
        if offset < 2 || gpadl.pages.saturating_sub(offset) < 2 {
            return Err(Error::BadRingLayout {
                downstream_page_offset: params.downstream_page_offset,
                pages: gpadl.pages,
            });
        }
        let mut user_data = [0; OPEN_USER_DATA_SIZE];
        user_data
            .get_mut(..params.user_data.len())
            .ok_or(Error::UserDataTooLong(params.user_data.len()))?
            .copy_from_slice(params.user_data);
        let open_id = self.next_open_id;
        let message = OpenChannel {
            child_relid: relid,
            open_id,
            ring_gpadl: gpadl.handle,
            target_vp: params.target_vp,
            downstream_page_offset: params.downstream_page_offset,
            user_data,
        };
        self.post(host, &message.encode())?;
        self.next_open_id = open_id.checked_add(1).unwrap_or(1);
        if let Some(channel) = &mut self.channels[slot] {
            channel.state = ChannelState::Opening {
                open_id,
                gpadl: gpadl.handle,
            };
        }
        Ok(())
    }

    /// Closes channel `relid` (the host does not answer). Its ring GPADL stays created for
    /// [`teardown_gpadl`](Self::teardown_gpadl). A rescinded channel is released instead:
    /// after `CLOSECHANNEL` comes `RELID_RELEASED`, and the relid may be offered again.
    pub fn close_channel(&mut self, host: &impl Host, relid: u32) -> Result<(), Error> {
        self.connected()?;
        let slot = self.channel_slot(relid)?;
        let Some(channel) = self.channels[slot] else {
            return Err(Error::UnknownRelid(relid));
        };
        let closable = match channel.state {
            ChannelState::Open { .. } => true,
            ChannelState::Opening { .. } => channel.rescinded,
            ChannelState::Closed => false,
        };
        if !closable {
            return Err(Error::ChannelState { relid });
        }
        self.post(host, &CloseChannel { child_relid: relid }.encode())?;
        if channel.rescinded {
            return self.release(host, slot);
        }
        if let Some(channel) = &mut self.channels[slot] {
            channel.state = ChannelState::Closed;
        }
        Ok(())
    }

    /// Disconnects from the host. Returns whether to wait for [`Event::Unloaded`]: hosts before
    /// protocol 3.0 cannot unload, and the connection is idle at once.
    pub fn unload(&mut self, host: &impl Host) -> Result<bool, Error> {
        let version = self.connected()?;
        if version < Version::V3_0 {
            self.reset();
            return Ok(false);
        }
        self.post(host, &Message::header_only(MessageType::Unload))?;
        self.state = State::Unloading;
        Ok(true)
    }

    fn post(&self, host: &impl Host, message: &Message) -> Result<(), Error> {
        host.post_message(self.msg_conn_id, VMBUS_MESSAGE_TYPE, message.as_bytes())
            .map_err(Error::Post)
    }

    fn connected(&self) -> Result<Version, Error> {
        self.version().ok_or(Error::WrongState)
    }

    fn reset(&mut self) {
        self.state = State::Idle;
        self.msg_conn_id = MESSAGE_CONNECTION_ID;
        self.channels = [const { None }; CHANNELS];
        self.gpadls = [const { None }; GPADLS];
    }

    /// Forgets channel `slot` and tells the host its relid is free.
    fn release(&mut self, host: &impl Host, slot: usize) -> Result<(), Error> {
        let Some(channel) = self.channels[slot].take() else {
            return Ok(());
        };
        let relid = channel.offer.child_relid;
        self.post(host, &RelidReleased { child_relid: relid }.encode())
    }

    fn channel(&self, relid: u32) -> Option<&ChannelEntry> {
        self.channels
            .iter()
            .flatten()
            .find(|c| c.offer.child_relid == relid)
    }

    fn channel_slot(&self, relid: u32) -> Result<usize, Error> {
        self.channels
            .iter()
            .position(|c| c.is_some_and(|c| c.offer.child_relid == relid))
            .ok_or(Error::UnknownRelid(relid))
    }

    /// The slot of channel `relid` if it is closed and not rescinded.
    fn usable_channel(&self, relid: u32) -> Result<usize, Error> {
        let slot = self.channel_slot(relid)?;
        match self.channels[slot] {
            Some(c) if !c.rescinded && c.state == ChannelState::Closed => Ok(slot),
            _ => Err(Error::ChannelState { relid }),
        }
    }

    fn gpadl_slot(&self, handle: u32, state: GpadlState) -> Result<usize, Error> {
        self.gpadls
            .iter()
            .position(|g| g.is_some_and(|g| g.handle == handle && g.state == state))
            .ok_or(Error::UnknownGpadl(handle))
    }

    /// The next handle not in use, never 0.
    fn allocate_gpadl_handle(&mut self) -> u32 {
        loop {
            let handle = self.next_gpadl;
            self.next_gpadl = handle.wrapping_add(1);
            let in_use = self.gpadls.iter().flatten().any(|g| g.handle == handle);
            if handle != 0 && !in_use {
                return handle;
            }
        }
    }
}

/// Which of `regions` holds page `page` of their concatenation.
fn region_of<M: SharedMemory>(regions: &[&M], mut page: usize) -> usize {
    for (region, memory) in regions.iter().enumerate() {
        let count = memory.len() / PAGE_SIZE;
        if page < count {
            return region;
        }
        page -= count;
    }
    regions.len()
}
