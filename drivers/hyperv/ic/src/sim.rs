//! A simulated Hyper-V host for the integration services, for tests of this crate, of the
//! kernel and for the fuzz target.
//!
//! [`IcHost`] plays the host of one service over `ringbolt_vmbus::sim::VmbusHost`: it offers
//! the service's channel (a message-mode pipe, like Hyper-V), lets a guest VMBus connection
//! open it on [`Rings`], then sends requests into the guest's inbound ring and reads the
//! guest's answers from its outbound ring. Every answer is checked against its request: an
//! in-band packet with the request's transaction id, ICMSG headers that parse, the request's
//! IC transaction id and message type, `icflags` transaction and response, and for
//! negotiation answers either no version or one of each from the lists offered. What breaks
//! a rule is recorded in [`IcHost::errors`].
//!
//! The builders ([`negotiate`], [`shutdown()`], [`timesync()`], [`heartbeat`], [`kvp_get`], ...)
//! encode requests as Hyper-V does, with the version lists it offers ([`Kind::host_versions`]).
//! [`Hostile`] builds each way a host can break the protocol, with the error the guest must
//! report and the answer it must give.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use ringbolt_shmem::SharedMemory;
use ringbolt_shmem::fake::FakeSharedMemory;
use ringbolt_vmbus::guid::{Guid, class};
use ringbolt_vmbus::message::{Offer, OfferFlags, UserDefined};
use ringbolt_vmbus::packet::{OutgoingPacket, PacketType};
use ringbolt_vmbus::ring::Write;
use ringbolt_vmbus::sim::{ChannelMode, HostConfig, VmbusHost, ring_memory};
use ringbolt_vmbus::{Channel, Config, Connection, Event, OpenParams};

use crate::error::{Error, Field, KvpError, NegotiationError};
use crate::icmsg::{
    FLAG_REQUEST, FLAG_RESPONSE, FLAG_TRANSACTION, Frame, Header, ICMSG_HDR, MessageType,
    Negotiated, PIPE_HEADER_SIZE, Status, Version, versions,
};
use crate::kvp::ip::IP_MESSAGE_SIZE;
use crate::kvp::wire::{self as kvp_wire, Exchange, op, value_type};
use crate::kvp::{IpSettings, Pool, Value};
use crate::timesync::{MESSAGE_SIZE, REF_MESSAGE_SIZE, WLTIMEDELTA};
use crate::{shutdown, timesync};

/// The relid the simulated host offers its one service on.
pub const RELID: u32 = 1;
/// `VMBUS_PIPE_TYPE_MESSAGE`: the pipe mode of every IC offer.
pub const PIPE_MODE_MESSAGE: u32 = 4;
/// The framework versions Hyper-V offers, oldest first.
pub const HOST_FRAMEWORK_VERSIONS: &[Version] = &[Version::new(1, 0), Version::new(3, 0)];

/// The four services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Shutdown,
    Timesync,
    Heartbeat,
    Kvp,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Shutdown, Kind::Timesync, Kind::Heartbeat, Kind::Kvp];

    /// The offer's device class.
    pub fn class(self) -> Guid {
        match self {
            Kind::Shutdown => class::SHUTDOWN,
            Kind::Timesync => class::TIMESYNC,
            Kind::Heartbeat => class::HEARTBEAT,
            Kind::Kvp => class::KVP,
        }
    }

    pub fn message_type(self) -> MessageType {
        match self {
            Kind::Shutdown => MessageType::SHUTDOWN,
            Kind::Timesync => MessageType::TIMESYNC,
            Kind::Heartbeat => MessageType::HEARTBEAT,
            Kind::Kvp => MessageType::KVP_EXCHANGE,
        }
    }

    /// The service versions a current Hyper-V offers, oldest first (as OpenVMM's host lists
    /// them; KVP 5.0 is the binary IP format, which the guest does not speak).
    pub fn host_versions(self) -> &'static [Version] {
        const fn v(major: u16, minor: u16) -> Version {
            Version::new(major, minor)
        }
        const SHUTDOWN: &[Version] = &[v(1, 0), v(3, 0), v(3, 1), v(3, 2)];
        const TIMESYNC: &[Version] = &[v(1, 0), v(3, 0), v(4, 0)];
        const HEARTBEAT: &[Version] = &[v(1, 0), v(3, 0)];
        const KVP: &[Version] = &[v(3, 0), v(4, 0), v(5, 0)];
        match self {
            Kind::Shutdown => SHUTDOWN,
            Kind::Timesync => TIMESYNC,
            Kind::Heartbeat => HEARTBEAT,
            Kind::Kvp => KVP,
        }
    }

    /// A well-formed request the service grants: power off, a time sync with reference time
    /// 0 (version 4), heartbeat 41, setting `External` key `k` to `v`.
    pub fn valid_request(self) -> Vec<u8> {
        match self {
            Kind::Shutdown => shutdown(shutdown::flags::SHUTDOWN),
            Kind::Timesync => timesync_ref(WLTIMEDELTA, 0, timesync::flags::SYNC),
            Kind::Heartbeat => heartbeat(41),
            Kind::Kvp => kvp_set(Pool::External as u8, "k", &Value::String("v".into())),
        }
    }
}

/// The two rings of an IC channel: a header page and 3 data pages each, the size Linux
/// gives its util channels.
#[derive(Debug)]
pub struct Rings {
    pub outbound: FakeSharedMemory,
    pub inbound: FakeSharedMemory,
}

impl Rings {
    pub fn new() -> Self {
        Rings {
            outbound: ring_memory(4),
            inbound: ring_memory(4),
        }
    }
}

impl Default for Rings {
    fn default() -> Self {
        Rings::new()
    }
}

/// An IC offer as Hyper-V makes it: a message-mode pipe, instance id the class.
pub fn offer(class: Guid, relid: u32) -> Offer {
    Offer {
        interface_type: class,
        interface_instance: class,
        flags: OfferFlags(OfferFlags::NAMED_PIPE_MODE),
        mmio_megabytes: 0,
        user_defined: UserDefined::Pipe {
            mode: PIPE_MODE_MESSAGE,
            data: [0; 116],
        },
        sub_channel_index: 0,
        mmio_megabytes_optional: 0,
        child_relid: relid,
        monitor_id: 0,
        monitor_allocated: false,
        is_dedicated_interrupt: true,
        connection_id: 16 + relid,
    }
}

/// A request the host is waiting on.
#[derive(Clone, Debug)]
struct Outstanding {
    ic_transaction_id: u8,
    message_type: MessageType,
    /// For a negotiation, the framework and service versions offered, if the lists are sane.
    offered: Option<(Vec<Version>, Vec<Version>)>,
}

#[derive(Debug, Default)]
struct State {
    next_request: u64,
    next_ic_transaction: u8,
    outstanding: BTreeMap<u64, Outstanding>,
    negotiated: Option<Negotiated>,
    errors: Vec<String>,
}

/// An answer from the guest, checked against its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The VMBus transaction id, the request's.
    pub transaction_id: u64,
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Answer {
    pub fn status(&self) -> Status {
        self.header.status
    }

    /// The versions of a negotiation answer, `None` for "no common version".
    pub fn negotiated(&self) -> Option<Negotiated> {
        if self.payload.get(..4)? != [1, 0, 1, 0] {
            return None;
        }
        let mut chosen = versions(self.payload.get(8..16)?);
        Some(Negotiated {
            framework: chosen.next()?,
            service: chosen.next()?,
        })
    }

    /// The sequence number of a heartbeat answer.
    pub fn heartbeat(&self) -> Option<u64> {
        Some(u64::from_le_bytes(self.payload.get(..8)?.try_into().ok()?))
    }

    /// The value of a KVP GET answer.
    pub fn kvp_value(&self) -> Result<Value, Error> {
        Exchange::GET_SET.read_value(&self.payload)
    }

    /// The entry of a KVP ENUMERATE answer.
    pub fn kvp_entry(&self) -> Result<(String, Value), Error> {
        let e = Exchange::ENUMERATE;
        Ok((e.read_key(&self.payload)?, e.read_value(&self.payload)?))
    }

    /// The settings of a KVP GET_IP_INFO answer.
    pub fn ip_settings(&self) -> Result<IpSettings, Error> {
        IpSettings::read(&self.payload)
    }
}

/// The host of one integration service; see the module documentation.
#[derive(Debug)]
pub struct IcHost<'a> {
    vmbus: VmbusHost<'a>,
    kind: Kind,
    state: RefCell<State>,
}

impl<'a> IcHost<'a> {
    /// Offers `kind`'s channel and has a guest VMBus connection open it on `rings`, as the
    /// kernel would.
    pub fn open(kind: Kind, rings: &'a Rings) -> IcHost<'a> {
        let vmbus = VmbusHost::new(HostConfig {
            mode: ChannelMode::Scripted,
            offers: vec![offer(kind.class(), RELID)],
            ..HostConfig::hyperv(ringbolt_vmbus::Version::V5_3)
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
        let pump = |conn: &mut Connection<4, 4>| {
            let mut events = Vec::new();
            while let Some(message) = vmbus.next_message() {
                let event = conn.handle_message(&vmbus, &message);
                events.push(event.expect("the simulated VMBus host is well-behaved"));
            }
            events
        };
        conn.connect(&vmbus).expect("connect");
        pump(&mut conn);
        let gpadl = conn
            .create_gpadl(&vmbus, RELID, &[&rings.outbound, &rings.inbound])
            .expect("ring GPADL");
        pump(&mut conn);
        let params = OpenParams {
            ring_gpadl: gpadl,
            downstream_page_offset: (rings.outbound.len() / ringbolt_vmbus::PAGE_SIZE) as u32,
            target_vp: 0,
            user_data: &[],
        };
        conn.open_channel(&vmbus, RELID, params).expect("open");
        let opened = pump(&mut conn);
        assert_eq!(opened, [Some(Event::Opened { relid: RELID })]);
        IcHost {
            vmbus,
            kind,
            state: RefCell::new(State::default()),
        }
    }

    /// The VMBus host, which the guest's channel signals.
    pub fn vmbus(&self) -> &VmbusHost<'a> {
        &self.vmbus
    }

    /// The guest's end of the channel.
    pub fn guest_channel(&self, rings: &'a Rings) -> Channel<&'a FakeSharedMemory, 1> {
        Channel::new(
            &rings.outbound,
            &rings.inbound,
            offer(self.kind.class(), RELID).connection_id,
        )
        .expect("rings initialised by ring_memory")
    }

    /// Offers the framework versions and [`Kind::host_versions`].
    pub fn negotiate(&self) -> u64 {
        self.send(&negotiate(
            HOST_FRAMEWORK_VERSIONS,
            self.kind.host_versions(),
        ))
    }

    /// Sends `message` as an in-band packet, with a fresh IC transaction id if it has room for
    /// an IC header; returns its VMBus transaction id.
    pub fn send(&self, message: &[u8]) -> u64 {
        self.send_as(PacketType::DataInBand, message)
    }

    /// Sends `message` as a packet of `packet_type`.
    pub fn send_as(&self, packet_type: PacketType, message: &[u8]) -> u64 {
        let mut state = self.state.borrow_mut();
        state.next_request += 1;
        state.next_ic_transaction = state.next_ic_transaction.wrapping_add(1);
        let (id, xid) = (state.next_request, state.next_ic_transaction);
        let mut message = message.to_vec();
        // ictransaction_id.
        if let Some(slot) = message.get_mut(PIPE_HEADER_SIZE + 16) {
            *slot = xid;
        }
        // A guest answers exactly the in-band requests whose headers it can read.
        if let (PacketType::DataInBand, Ok(frame)) = (packet_type, Frame::parse(&message)) {
            let message_type = frame.header.message_type;
            let offered = match (message_type, frame.payload()) {
                (MessageType::NEGOTIATE, Ok(payload)) => offered(payload),
                _ => None,
            };
            let request = Outstanding {
                ic_transaction_id: xid,
                message_type,
                offered,
            };
            state.outstanding.insert(id, request);
        }
        let packet = OutgoingPacket {
            packet_type,
            transaction_id: id,
            ..OutgoingPacket::in_band(&message)
        };
        match self.vmbus.inject(RELID, &packet) {
            Some(Write::Written { .. }) => {}
            other => state.errors.push(format!("inbound ring: {other:?}")),
        }
        id
    }

    /// Reads and checks the guest's answers.
    pub fn answers(&self) -> Vec<Answer> {
        let mut state = self.state.borrow_mut();
        let mut answers = Vec::new();
        for (descriptor, data) in self.vmbus.take_from_guest(RELID) {
            match check(
                &mut state,
                descriptor.packet_type,
                descriptor.transaction_id,
                &data,
            ) {
                Ok(answer) => answers.push(answer),
                Err(e) => state.errors.push(e),
            }
        }
        answers
    }

    /// The one answer expected now.
    pub fn answer(&self) -> Answer {
        let mut answers = self.answers();
        assert_eq!(answers.len(), 1, "{answers:?} {:?}", self.errors());
        answers.remove(0)
    }

    /// Requests not answered yet.
    pub fn outstanding(&self) -> usize {
        self.state.borrow().outstanding.len()
    }

    /// The versions the last answered negotiation settled on.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.state.borrow().negotiated
    }

    /// Protocol violations by the guest, oldest first.
    pub fn errors(&self) -> Vec<String> {
        self.state.borrow().errors.clone()
    }
}

/// Checks one packet from the guest against the request it answers.
fn check(state: &mut State, packet_type: u16, id: u64, data: &[u8]) -> Result<Answer, String> {
    if packet_type != PacketType::DataInBand as u16 {
        return Err(format!("answer packet type {packet_type:#x}"));
    }
    let request = state
        .outstanding
        .remove(&id)
        .ok_or(format!("answer to transaction {id}, not outstanding"))?;
    let frame = Frame::parse(data).map_err(|e| format!("answer to {id}: {e}"))?;
    let payload = frame
        .payload()
        .map_err(|e| format!("answer to {id}: {e}"))?;
    let header = frame.header;
    if header.flags != FLAG_TRANSACTION | FLAG_RESPONSE
        || header.transaction_id != request.ic_transaction_id
        || header.message_type != request.message_type
    {
        return Err(format!(
            "answer to {id} does not match {request:?}: {header:?}"
        ));
    }
    let answer = Answer {
        transaction_id: id,
        header,
        payload: payload.to_vec(),
    };
    if request.message_type == MessageType::NEGOTIATE {
        let negotiated = answer.negotiated();
        let valid = match (negotiated, &request.offered) {
            (Some(n), Some((framework, service))) => {
                framework.contains(&n.framework) && service.contains(&n.service)
            }
            (Some(_), None) => false,
            (None, _) => answer.payload.get(..4) == Some(&[0; 4][..]),
        };
        if !valid {
            return Err(format!("negotiation answer {:02x?}", answer.payload));
        }
        state.negotiated = negotiated;
    }
    Ok(answer)
}

/// The version lists of a negotiation request, if its counts agree with its size.
fn offered(payload: &[u8]) -> Option<(Vec<Version>, Vec<Version>)> {
    let count = |at: usize| {
        let bytes = payload.get(at..at + 2)?;
        Some(usize::from(u16::from_le_bytes([bytes[0], bytes[1]])))
    };
    let (framework, service) = (count(0)?, count(2)?);
    let list = payload.get(8..8 + 4 * (framework + service))?;
    let (f, s) = list.split_at(4 * framework);
    Some((versions(f).collect(), versions(s).collect()))
}

/// A request of `message_type` carrying `payload`, as Hyper-V frames it (IC transaction id
/// 0; [`IcHost::send`] stamps a fresh one).
pub fn message(message_type: MessageType, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0; ICMSG_HDR + payload.len()];
    out[ICMSG_HDR..].copy_from_slice(payload);
    let header = Header {
        framework: Version::new(3, 0),
        message_type,
        message_version: Version::new(3, 0),
        size: u16::try_from(payload.len()).expect("an IC payload fits icmsgsize"),
        status: Status::OK,
        transaction_id: 0,
        flags: FLAG_TRANSACTION | FLAG_REQUEST,
        reserved: [0; 2],
    };
    header.encode(&mut out);
    out
}

/// `ICMSGTYPE_NEGOTIATE` offering `framework` and `service` versions.
pub fn negotiate(framework: &[Version], service: &[Version]) -> Vec<u8> {
    let count = |list: &[Version]| u16::try_from(list.len()).expect("a short list");
    let mut payload = Vec::new();
    payload.extend(count(framework).to_le_bytes());
    payload.extend(count(service).to_le_bytes());
    payload.extend([0; 4]);
    for v in framework.iter().chain(service) {
        payload.extend(v.major.to_le_bytes());
        payload.extend(v.minor.to_le_bytes());
    }
    message(MessageType::NEGOTIATE, &payload)
}

/// A shutdown request with `flags` ([`shutdown::flags`]), reason "planned", 30 s.
pub fn shutdown(flags: u32) -> Vec<u8> {
    let mut payload = vec![0; shutdown::MESSAGE_SIZE];
    payload[..4].copy_from_slice(&0x8000_0000u32.to_le_bytes());
    payload[4..8].copy_from_slice(&30u32.to_le_bytes());
    payload[8..12].copy_from_slice(&flags.to_le_bytes());
    payload[12..30].copy_from_slice(b"Shutdown requested");
    message(MessageType::SHUTDOWN, &payload)
}

/// A time sample before version 4 (`ictimesync_data`): `parent_time` in 100 ns units since
/// 1601.
pub fn timesync(parent_time: u64, flags: u8) -> Vec<u8> {
    let mut payload = vec![0; MESSAGE_SIZE];
    payload[..8].copy_from_slice(&parent_time.to_le_bytes());
    payload[24] = flags;
    message(MessageType::TIMESYNC, &payload)
}

/// A version 4 time sample (`ictimesync_ref_data`) taken at partition reference time
/// `reference_time`.
pub fn timesync_ref(parent_time: u64, reference_time: u64, flags: u8) -> Vec<u8> {
    let mut payload = vec![0; REF_MESSAGE_SIZE];
    payload[..8].copy_from_slice(&parent_time.to_le_bytes());
    payload[8..16].copy_from_slice(&reference_time.to_le_bytes());
    payload[16] = flags;
    message(MessageType::TIMESYNC, &payload)
}

/// A heartbeat with sequence number `seq` (and its 32 reserved bytes).
pub fn heartbeat(seq: u64) -> Vec<u8> {
    let mut payload = vec![0; 40];
    payload[..8].copy_from_slice(&seq.to_le_bytes());
    message(MessageType::HEARTBEAT, &payload)
}

/// A KVP message of `size` bytes: the operation, the pool, then what `fill` writes.
fn kvp(operation: u8, pool: u8, size: usize, fill: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut payload = vec![0; size];
    payload[0] = operation;
    payload[1] = pool;
    fill(&mut payload);
    message(MessageType::KVP_EXCHANGE, &payload)
}

pub fn kvp_get(pool: u8, key: &str) -> Vec<u8> {
    kvp(op::GET, pool, kvp_wire::GET_SET_SIZE, |p| {
        Exchange::GET_SET
            .write_key(p, key)
            .expect("a key that fits");
    })
}

pub fn kvp_set(pool: u8, key: &str, value: &Value) -> Vec<u8> {
    kvp(op::SET, pool, kvp_wire::GET_SET_SIZE, |p| {
        Exchange::GET_SET
            .write_key(p, key)
            .expect("a key that fits");
        Exchange::GET_SET
            .write_value(p, value)
            .expect("a value that fits");
    })
}

pub fn kvp_delete(pool: u8, key: &str) -> Vec<u8> {
    kvp(op::DELETE, pool, kvp_wire::DELETE_SIZE, |p| {
        let size = kvp_wire::encode(key, &mut p[8..8 + kvp_wire::KEY_SIZE], Field::Key)
            .expect("a key that fits");
        p[4..8].copy_from_slice(&size.to_le_bytes());
    })
}

pub fn kvp_enumerate(pool: u8, index: u32) -> Vec<u8> {
    kvp(op::ENUMERATE, pool, kvp_wire::ENUMERATE_SIZE, |p| {
        p[4..8].copy_from_slice(&index.to_le_bytes());
    })
}

/// GET_IP_INFO for the adapter `adapter_id` (a MAC address), pool `Guest` as Hyper-V sends it.
pub fn kvp_get_ip_info(adapter_id: &str) -> Vec<u8> {
    let settings = IpSettings {
        adapter_id: adapter_id.into(),
        ..IpSettings::default()
    };
    kvp(op::GET_IP_INFO, Pool::Guest as u8, IP_MESSAGE_SIZE, |p| {
        settings.write(p).expect("settings that fit");
    })
}

pub fn kvp_set_ip_info(settings: &IpSettings) -> Vec<u8> {
    kvp(op::SET_IP_INFO, Pool::Guest as u8, IP_MESSAGE_SIZE, |p| {
        settings.write(p).expect("settings that fit");
    })
}

/// Offsets in a KVP GET or SET payload, for breaking one.
mod kvp_offsets {
    pub const VALUE_TYPE: usize = 4;
    pub const KEY_SIZE: usize = 8;
    pub const VALUE_SIZE: usize = 12;
    pub const KEY: usize = 16;
}

/// How the guest must answer a hostile message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Not at all: the headers cannot be read.
    NoAnswer,
    /// With `HV_E_FAIL`.
    Failure,
    /// With a negotiation answer offering no version.
    NoCommonVersion,
}

/// Ways a host can break the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// A valid request in a completion packet.
    NotInBand,
    /// 24 bytes: less than the pipe and IC headers.
    ShortPacket,
    /// A pipe packet type other than data.
    UnknownPipeType,
    /// A pipe size past the packet.
    PipeSizePastPacket,
    /// An `icmsgsize` one past the payload.
    MessageSizePastData,
    /// `icmsgtype` 6 (RDV), which no service here serves.
    UnknownMessageType,
    /// The service's request cut short (`icmsgsize` agreeing).
    ShortPayload,
    /// A negotiation payload too short for the counts.
    NegotiateTruncated,
    /// A framework version count of 101.
    TooManyVersions,
    /// Counts promising more versions than sent.
    VersionsPastEnd,
    /// Only framework version 2.0.
    NoCommonFramework,
    /// Only service version 9.9.
    NoCommonServiceVersion,
    /// Shutdown: hibernate.
    Hibernate,
    /// Shutdown flags 8.
    UnknownShutdownFlags,
    /// Time sync: a host time in 1600.
    TimeBeforeEpoch,
    /// Time sync: a sample taken at a reference time after now.
    ReferenceTimeAhead,
    /// KVP: a key size covering no NUL.
    KeyUnterminated,
    /// KVP: an odd key size.
    KeyOddSize,
    /// KVP: a key size past the key field.
    KeySizePastField,
    /// KVP: a lone surrogate in the key.
    KeyInvalidUtf16,
    /// KVP: a string value size covering no NUL.
    ValueUnterminated,
    /// KVP: an odd value size.
    ValueOddSize,
    /// KVP: value type 3 (`REG_BINARY`).
    UnknownValueType,
    /// KVP: a `REG_DWORD` of 8 bytes.
    DwordOfWrongSize,
    /// KVP: pool 5.
    PoolOutOfRange,
    /// KVP: operation 9.
    UnknownOperation,
    /// KVP: SET in the guest's read-only intrinsic pool.
    WriteToAutoPool,
    /// KVP: GET_IP_INFO with an adapter id filling its field without a NUL.
    AdapterIdUnterminated,
}

impl Hostile {
    pub const ALL: [Hostile; 28] = [
        Hostile::NotInBand,
        Hostile::ShortPacket,
        Hostile::UnknownPipeType,
        Hostile::PipeSizePastPacket,
        Hostile::MessageSizePastData,
        Hostile::UnknownMessageType,
        Hostile::ShortPayload,
        Hostile::NegotiateTruncated,
        Hostile::TooManyVersions,
        Hostile::VersionsPastEnd,
        Hostile::NoCommonFramework,
        Hostile::NoCommonServiceVersion,
        Hostile::Hibernate,
        Hostile::UnknownShutdownFlags,
        Hostile::TimeBeforeEpoch,
        Hostile::ReferenceTimeAhead,
        Hostile::KeyUnterminated,
        Hostile::KeyOddSize,
        Hostile::KeySizePastField,
        Hostile::KeyInvalidUtf16,
        Hostile::ValueUnterminated,
        Hostile::ValueOddSize,
        Hostile::UnknownValueType,
        Hostile::DwordOfWrongSize,
        Hostile::PoolOutOfRange,
        Hostile::UnknownOperation,
        Hostile::WriteToAutoPool,
        Hostile::AdapterIdUnterminated,
    ];

    /// Whether the case applies to `kind`: the framework's to every service, the others to
    /// their own.
    pub fn applies_to(self, kind: Kind) -> bool {
        use Hostile::*;
        match self {
            Hibernate | UnknownShutdownFlags => kind == Kind::Shutdown,
            TimeBeforeEpoch | ReferenceTimeAhead => kind == Kind::Timesync,
            KeyUnterminated
            | KeyOddSize
            | KeySizePastField
            | KeyInvalidUtf16
            | ValueUnterminated
            | ValueOddSize
            | UnknownValueType
            | DwordOfWrongSize
            | PoolOutOfRange
            | UnknownOperation
            | WriteToAutoPool
            | AdapterIdUnterminated => kind == Kind::Kvp,
            _ => true,
        }
    }

    /// Whether the case is a failed negotiation, after which the host must negotiate again.
    pub fn fails_negotiation(self) -> bool {
        matches!(
            self,
            Hostile::NegotiateTruncated
                | Hostile::TooManyVersions
                | Hostile::VersionsPastEnd
                | Hostile::NoCommonFramework
                | Hostile::NoCommonServiceVersion
        )
    }

    /// The packet type and message for `kind`'s channel. A time sync case expects the guest's
    /// reference clock to read 1000.
    pub fn message(self, kind: Kind) -> (PacketType, Vec<u8>) {
        let valid = kind.valid_request();
        let in_band = |m| (PacketType::DataInBand, m);
        // `message` with `bytes` written over it at `at`.
        let patch = |mut message: Vec<u8>, at: usize, bytes: &[u8]| {
            message[at..at + bytes.len()].copy_from_slice(bytes);
            in_band(message)
        };
        let with = |at, bytes: &[u8]| patch(kind.valid_request(), at, bytes);
        let kvp_set_with = |at, bytes: &[u8]| {
            let set = kvp_set(Pool::External as u8, "key", &Value::String("value".into()));
            patch(set, ICMSG_HDR + at, bytes)
        };
        let host = HOST_FRAMEWORK_VERSIONS;
        match self {
            Hostile::NotInBand => (PacketType::Completion, valid),
            Hostile::ShortPacket => in_band(valid[..24].to_vec()),
            Hostile::UnknownPipeType => with(0, &2u32.to_le_bytes()),
            Hostile::PipeSizePastPacket => {
                let lie = (valid.len() - PIPE_HEADER_SIZE + 64) as u32;
                with(4, &lie.to_le_bytes())
            }
            Hostile::MessageSizePastData => {
                let lie = (valid.len() - ICMSG_HDR + 1) as u16;
                with(PIPE_HEADER_SIZE + 10, &lie.to_le_bytes())
            }
            Hostile::UnknownMessageType => with(PIPE_HEADER_SIZE + 4, &6u16.to_le_bytes()),
            Hostile::ShortPayload => {
                let frame = Frame::parse(&valid).expect("a valid request");
                let payload = frame.payload().expect("a valid request");
                in_band(message(
                    kind.message_type(),
                    &payload[..short_payload(kind)],
                ))
            }
            Hostile::NegotiateTruncated => in_band(message(MessageType::NEGOTIATE, &[2, 0])),
            Hostile::TooManyVersions => {
                let mut m = negotiate(host, kind.host_versions());
                m[ICMSG_HDR..ICMSG_HDR + 2].copy_from_slice(&101u16.to_le_bytes());
                in_band(m)
            }
            Hostile::VersionsPastEnd => {
                let mut m = negotiate(host, kind.host_versions());
                m[ICMSG_HDR + 2..ICMSG_HDR + 4].copy_from_slice(&20u16.to_le_bytes());
                in_band(m)
            }
            Hostile::NoCommonFramework => {
                in_band(negotiate(&[Version::new(2, 0)], kind.host_versions()))
            }
            Hostile::NoCommonServiceVersion => in_band(negotiate(host, &[Version::new(9, 9)])),
            Hostile::Hibernate => in_band(shutdown(shutdown::flags::HIBERNATE)),
            Hostile::UnknownShutdownFlags => in_band(shutdown(8)),
            Hostile::TimeBeforeEpoch => {
                in_band(timesync_ref(WLTIMEDELTA - 1, 1000, timesync::flags::SYNC))
            }
            Hostile::ReferenceTimeAhead => {
                in_band(timesync_ref(WLTIMEDELTA, 1001, timesync::flags::SAMPLE))
            }
            Hostile::KeyUnterminated => kvp_set_with(kvp_offsets::KEY_SIZE, &6u32.to_le_bytes()),
            Hostile::KeyOddSize => kvp_set_with(kvp_offsets::KEY_SIZE, &7u32.to_le_bytes()),
            Hostile::KeySizePastField => kvp_set_with(kvp_offsets::KEY_SIZE, &514u32.to_le_bytes()),
            Hostile::KeyInvalidUtf16 => kvp_set_with(kvp_offsets::KEY, &0xdc00u16.to_le_bytes()),
            Hostile::ValueUnterminated => {
                kvp_set_with(kvp_offsets::VALUE_SIZE, &10u32.to_le_bytes())
            }
            Hostile::ValueOddSize => kvp_set_with(kvp_offsets::VALUE_SIZE, &9u32.to_le_bytes()),
            Hostile::UnknownValueType => kvp_set_with(kvp_offsets::VALUE_TYPE, &3u32.to_le_bytes()),
            Hostile::DwordOfWrongSize => patch(
                kvp_set(Pool::External as u8, "key", &Value::U64(7)),
                ICMSG_HDR + kvp_offsets::VALUE_TYPE,
                &value_type::REG_U32.to_le_bytes(),
            ),
            Hostile::PoolOutOfRange => in_band(kvp_get(5, "key")),
            Hostile::UnknownOperation => kvp_set_with(0, &[9]),
            Hostile::WriteToAutoPool => in_band(kvp_set(
                Pool::Auto as u8,
                "OSName",
                &Value::String("evil".into()),
            )),
            Hostile::AdapterIdUnterminated => {
                let mut m = kvp_get_ip_info("00:15:5D:00:00:01");
                m[ICMSG_HDR + 2..ICMSG_HDR + 258].fill(b'A');
                in_band(m)
            }
        }
    }

    /// The error the guest must report for `kind`'s channel.
    pub fn error(self, kind: Kind) -> Error {
        let valid = kind.valid_request();
        let payload_len = valid.len() - ICMSG_HDR;
        let negotiation = Error::Negotiation;
        let kvp = Error::Kvp;
        match self {
            Hostile::NotInBand => Error::NotInBand {
                packet_type: PacketType::Completion as u16,
            },
            Hostile::ShortPacket => Error::ShortFrame { len: 24 },
            Hostile::UnknownPipeType => Error::UnknownPipeType(2),
            Hostile::PipeSizePastPacket => Error::PipeSizePastPacket {
                msgsize: (valid.len() - PIPE_HEADER_SIZE + 64) as u32,
                // VMBus pads packet data to 8 bytes.
                available: valid.len().next_multiple_of(8) - PIPE_HEADER_SIZE,
            },
            Hostile::MessageSizePastData => Error::MessageSizePastData {
                icmsgsize: (payload_len + 1) as u16,
                available: payload_len,
            },
            Hostile::UnknownMessageType => Error::UnknownMessageType(MessageType(6)),
            Hostile::ShortPayload => Error::ShortPayload {
                needed: match kind {
                    Kind::Shutdown => shutdown::MESSAGE_SIZE,
                    Kind::Timesync => REF_MESSAGE_SIZE,
                    Kind::Heartbeat => 8,
                    Kind::Kvp => kvp_wire::GET_SET_SIZE,
                },
                len: short_payload(kind),
            },
            Hostile::NegotiateTruncated => Error::ShortPayload { needed: 4, len: 2 },
            Hostile::TooManyVersions => negotiation(NegotiationError::TooManyVersions {
                framework: 101,
                service: kind.host_versions().len() as u16,
            }),
            Hostile::VersionsPastEnd => {
                let sent = 8 + 4 * (HOST_FRAMEWORK_VERSIONS.len() + kind.host_versions().len());
                negotiation(NegotiationError::VersionsPastEnd {
                    needed: 8 + 4 * (HOST_FRAMEWORK_VERSIONS.len() + 20),
                    len: sent,
                })
            }
            Hostile::NoCommonFramework => negotiation(NegotiationError::NoCommonFramework),
            Hostile::NoCommonServiceVersion => {
                negotiation(NegotiationError::NoCommonServiceVersion)
            }
            Hostile::Hibernate => Error::HibernateRefused,
            Hostile::UnknownShutdownFlags => Error::UnknownShutdownFlags(8),
            Hostile::TimeBeforeEpoch => Error::HostTimeOutOfRange(WLTIMEDELTA - 1),
            Hostile::ReferenceTimeAhead => Error::ReferenceTimeAhead {
                sample: 1001,
                now: 1000,
            },
            Hostile::KeyUnterminated => kvp(KvpError::Unterminated(Field::Key)),
            Hostile::KeyOddSize => kvp(KvpError::OddSize {
                field: Field::Key,
                size: 7,
            }),
            Hostile::KeySizePastField => kvp(KvpError::SizeTooLarge {
                field: Field::Key,
                size: 514,
                max: kvp_wire::KEY_SIZE,
            }),
            Hostile::KeyInvalidUtf16 => kvp(KvpError::InvalidUtf16(Field::Key)),
            Hostile::ValueUnterminated => kvp(KvpError::Unterminated(Field::Value)),
            Hostile::ValueOddSize => kvp(KvpError::OddSize {
                field: Field::Value,
                size: 9,
            }),
            Hostile::UnknownValueType => kvp(KvpError::UnknownValueType(3)),
            Hostile::DwordOfWrongSize => kvp(KvpError::BadValueSize {
                value_type: value_type::REG_U32,
                size: 8,
            }),
            Hostile::PoolOutOfRange => kvp(KvpError::BadPool(5)),
            Hostile::UnknownOperation => kvp(KvpError::UnknownOperation(9)),
            Hostile::WriteToAutoPool => kvp(KvpError::ReadOnlyPool(Pool::Auto)),
            Hostile::AdapterIdUnterminated => kvp(KvpError::Unterminated(Field::AdapterId)),
        }
    }

    /// How the guest must answer.
    pub fn expect(self) -> Expect {
        match self {
            Hostile::NotInBand
            | Hostile::ShortPacket
            | Hostile::UnknownPipeType
            | Hostile::PipeSizePastPacket => Expect::NoAnswer,
            h if h.fails_negotiation() => Expect::NoCommonVersion,
            _ => Expect::Failure,
        }
    }
}

/// How much of `kind`'s valid payload [`Hostile::ShortPayload`] keeps.
fn short_payload(kind: Kind) -> usize {
    match kind {
        Kind::Shutdown => 12,
        Kind::Timesync => 16,
        Kind::Heartbeat => 4,
        Kind::Kvp => 100,
    }
}
