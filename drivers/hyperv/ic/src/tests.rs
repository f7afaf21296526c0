//! Every service against the simulated host: negotiation, each request, and every hostile
//! message, both through [`Ic::handle`] directly and over a VMBus channel ([`IcChannel`]).

extern crate std;

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

use ringbolt_shmem::fake::FakeSharedMemory;
use ringbolt_vmbus::Channel;

use crate::icmsg::{
    FLAG_RESPONSE, FLAG_TRANSACTION, Frame, Header, ICMSG_HDR, MessageType, Negotiated,
    PIPE_TYPE_DATA,
};
use crate::kvp::ip::address_family;
use crate::kvp::wire::{GET_SET_SIZE, KEY_SIZE};
use crate::kvp::{Adapter, Address, IpSettings, POOL_CAPACITY, Pool, Value, intrinsic};
use crate::shutdown::flags as sd;
use crate::sim::{self, Answer, Expect, HOST_FRAMEWORK_VERSIONS, Hostile, IcHost, Kind, Rings};
use crate::timesync::{WLTIMEDELTA, flags as ts};
use crate::{
    Action, Error, Field, Heartbeat, Ic, IcChannel, Kvp, KvpError, NegotiationError, Rejected,
    Reply, Service, Shutdown, Status, Timesync, Version,
};

const fn v(major: u16, minor: u16) -> Version {
    Version::new(major, minor)
}

/// The answer in `buf` to a request handled by `ic`, checked the way the host checks it.
fn answer_of(request: &[u8], buf: &[u8], len: usize) -> (Header, Vec<u8>) {
    let frame = Frame::parse(&buf[..len]).unwrap();
    let request = Frame::parse(request).unwrap().header;
    let h = frame.header;
    assert_eq!(h.flags, FLAG_TRANSACTION | FLAG_RESPONSE);
    assert_eq!(
        (h.framework, h.message_type, h.message_version),
        (
            request.framework,
            request.message_type,
            request.message_version
        )
    );
    assert_eq!(
        (h.transaction_id, h.reserved),
        (request.transaction_id, request.reserved)
    );
    (h, frame.payload().unwrap().to_vec())
}

/// Runs `request` through `ic`; the answer's header and payload, with the outcome.
fn call<S: Service>(ic: &mut Ic<S>, request: &[u8]) -> (Result<Reply, Rejected>, Header, Vec<u8>) {
    let mut buf = vec![0; 16384];
    let result = ic.handle(request, &mut buf);
    let len = match &result {
        Ok(reply) => reply.len,
        Err(rejected) => rejected.reply.expect("an answer"),
    };
    let (header, payload) = answer_of(request, &buf, len);
    (result, header, payload)
}

/// A service that has negotiated with the host's usual version lists.
fn negotiated<S: Service>(kind: Kind, service: S) -> Ic<S> {
    let mut ic = Ic::new(service);
    let (result, _, _) = call(
        &mut ic,
        &sim::negotiate(HOST_FRAMEWORK_VERSIONS, kind.host_versions()),
    );
    assert!(result.is_ok());
    ic
}

fn action<S: Service>(ic: &mut Ic<S>, request: &[u8]) -> Option<Action> {
    let (result, header, _) = call(ic, request);
    assert_eq!(header.status, Status::OK);
    result.unwrap().action
}

fn refusal<S: Service>(ic: &mut Ic<S>, request: &[u8]) -> (Error, Header, Vec<u8>) {
    let (result, header, payload) = call(ic, request);
    (result.unwrap_err().error, header, payload)
}

/// The answer to `request` as the host reads it.
fn answer<S: Service>(ic: &mut Ic<S>, request: &[u8]) -> Answer {
    let (_, header, payload) = call(ic, request);
    Answer {
        transaction_id: 0,
        header,
        payload,
    }
}

fn clock(now: u64) -> impl Fn() -> u64 {
    move || now
}

fn negotiation_payload(counts: u16, first: Version, second: Version) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(counts.to_le_bytes());
    p.extend(counts.to_le_bytes());
    p.extend([0; 4]);
    for x in [first, second] {
        p.extend(x.major.to_le_bytes());
        p.extend(x.minor.to_le_bytes());
    }
    p
}

// ---- The framework ----

#[test]
fn negotiates_the_newest_versions_both_sides_speak() {
    fn newest<S: Service>(kind: Kind, service: S, expected: Version) {
        let mut ic = Ic::new(service);
        let request = sim::negotiate(HOST_FRAMEWORK_VERSIONS, kind.host_versions());
        let (result, header, payload) = call(&mut ic, &request);
        assert_eq!(result.unwrap().action, None);
        assert_eq!(header.size, 16);
        assert_eq!(payload, negotiation_payload(1, v(3, 0), expected));
        let n = Negotiated {
            framework: v(3, 0),
            service: expected,
        };
        assert_eq!(ic.negotiated(), Some(n));
    }
    newest(Kind::Shutdown, Shutdown, v(3, 2));
    newest(Kind::Timesync, Timesync::new(clock(0)), v(4, 0));
    newest(Kind::Heartbeat, Heartbeat, v(3, 0));
    // The host's 5.0 (binary IP info) is not ours.
    newest(Kind::Kvp, Kvp::new(), v(4, 0));
}

#[test]
fn picks_by_the_guests_order_whatever_the_hosts_order() {
    let mut ic = Ic::new(Shutdown);
    let host = [v(3, 1), v(1, 0), v(3, 2), v(3, 0)];
    let (_, _, payload) = call(&mut ic, &sim::negotiate(&[v(3, 0), v(1, 0)], &host));
    assert_eq!(payload, negotiation_payload(1, v(3, 0), v(3, 2)));
    // An old host: framework 1.0 and shutdown 3.0 only, among versions we do not know.
    let old = [v(2, 7), v(3, 0), v(0, 9)];
    let (_, _, payload) = call(&mut ic, &sim::negotiate(&[v(1, 0), v(2, 0)], &old));
    assert_eq!(payload, negotiation_payload(1, v(1, 0), v(3, 0)));
    assert_eq!(ic.negotiated().unwrap().service, v(3, 0));
}

#[test]
fn answers_no_common_version_with_what_linux_leaves_in_the_slots() {
    let mut ic = Ic::new(Heartbeat);
    // No framework in common: the slots hold the host's counts as major versions.
    let (result, header, payload) = call(&mut ic, &sim::negotiate(&[v(2, 0)], &[v(3, 0), v(1, 0)]));
    assert_eq!(
        result.unwrap_err().error,
        Error::Negotiation(NegotiationError::NoCommonFramework)
    );
    assert_eq!(header.size, 16);
    assert_eq!(payload, negotiation_payload(0, v(1, 0), v(2, 0)));
    // A framework in common but no service version: the framework, then the service count.
    let request = sim::negotiate(&[v(3, 0)], &[v(2, 0), v(4, 0), v(5, 0)]);
    let (error, _, payload) = refusal(&mut ic, &request);
    assert_eq!(
        error,
        Error::Negotiation(NegotiationError::NoCommonServiceVersion)
    );
    assert_eq!(payload, negotiation_payload(0, v(3, 0), v(3, 0)));
    assert_eq!(ic.negotiated(), None);
}

#[test]
fn refuses_version_lists_that_are_too_long_or_past_the_payload() {
    let mut ic = Ic::new(Heartbeat);
    // 100 of each is the limit; the list must then be all there.
    let many: Vec<Version> = (0..100).map(|i| v(i, 0)).collect();
    let (result, _, payload) = call(&mut ic, &sim::negotiate(&many, &many));
    assert!(result.is_ok());
    assert_eq!(payload, negotiation_payload(1, v(3, 0), v(3, 0)));
    let too_many: Vec<Version> = (0..101).map(|i| v(i, 0)).collect();
    let (error, _, payload) = refusal(&mut ic, &sim::negotiate(&too_many, &[v(3, 0)]));
    assert_eq!(
        error,
        Error::Negotiation(NegotiationError::TooManyVersions {
            framework: 101,
            service: 1
        })
    );
    assert_eq!(payload, negotiation_payload(0, v(101, 0), v(1, 0)));
    assert_eq!(ic.negotiated(), None);
    // Counts that promise one version more than the payload holds.
    let mut short = sim::negotiate(&[v(3, 0)], &[v(3, 0)]);
    short[ICMSG_HDR + 2] = 2;
    let (error, _, _) = refusal(&mut ic, &short);
    assert_eq!(
        error,
        Error::Negotiation(NegotiationError::VersionsPastEnd {
            needed: 20,
            len: 16
        })
    );
    // Too short for the counts: answered "no common version" too.
    let (error, header, payload) = refusal(&mut ic, &sim::message(MessageType::NEGOTIATE, &[1]));
    assert_eq!(error, Error::ShortPayload { needed: 4, len: 1 });
    assert_eq!(header.size, 16);
    assert_eq!(payload, [0; 16]);
}

#[test]
fn echoes_the_request_header_and_frames_the_answer() {
    let mut ic = negotiated(Kind::Heartbeat, Heartbeat);
    let mut request = sim::heartbeat(7);
    // Unusual but harmless header fields are echoed: versions, transaction id, reserved.
    request[8..12].copy_from_slice(&[3, 0, 9, 0]);
    request[24..28].copy_from_slice(&[0xab, 0x02, 0x55, 0x66]);
    let mut buf = vec![0xee; 256];
    let reply = ic.handle(&request, &mut buf).unwrap();
    assert_eq!(reply.len, request.len());
    assert_eq!(
        u32::from_le_bytes(buf[0..4].try_into().unwrap()),
        PIPE_TYPE_DATA
    );
    assert_eq!(u32::from_le_bytes(buf[4..8].try_into().unwrap()), 20 + 40);
    assert_eq!(buf[8..12], [3, 0, 9, 0]);
    assert_eq!(buf[24..28], [0xab, 5, 0x55, 0x66]);
    let (header, payload) = answer_of(&request, &buf, reply.len);
    assert_eq!(header.status, Status::OK);
    assert_eq!(payload[..8], 8u64.to_le_bytes());
    assert_eq!(payload[8..], [0; 32]);
}

#[test]
fn ignores_the_padding_after_the_pipe_message() {
    let mut ic = negotiated(Kind::Heartbeat, Heartbeat);
    let mut request = sim::heartbeat(1);
    request.extend([0xff; 7]);
    let (result, header, payload) = call(&mut ic, &request);
    assert!(result.is_ok());
    assert_eq!(header.size, 40);
    assert_eq!(payload.len(), 40);
}

#[test]
fn refuses_service_requests_before_negotiation_and_keeps_going() {
    let mut ic = Ic::new(Shutdown);
    let (error, header, payload) = refusal(&mut ic, &sim::shutdown(sd::SHUTDOWN));
    assert_eq!(error, Error::NotNegotiated);
    assert_eq!(header.status, Status::FAIL);
    // The request is echoed, untouched.
    assert_eq!(payload, sim::shutdown(sd::SHUTDOWN)[ICMSG_HDR..]);
    let negotiation = sim::negotiate(HOST_FRAMEWORK_VERSIONS, Kind::Shutdown.host_versions());
    call(&mut ic, &negotiation).0.unwrap();
    assert_eq!(
        action(&mut ic, &sim::shutdown(sd::SHUTDOWN)),
        Some(Action::PowerOff { force: false })
    );
}

#[test]
fn renegotiates_at_any_time() {
    let mut ic = negotiated(Kind::Timesync, Timesync::new(clock(0)));
    assert_eq!(ic.negotiated().unwrap().service, v(4, 0));
    call(&mut ic, &sim::negotiate(&[v(3, 0)], &[v(1, 0), v(3, 0)]))
        .0
        .unwrap();
    assert_eq!(ic.negotiated().unwrap().service, v(3, 0));
    // A failed negotiation leaves none.
    refusal(&mut ic, &sim::negotiate(&[v(3, 0)], &[v(2, 0)]));
    assert_eq!(ic.negotiated(), None);
}

#[test]
fn a_short_response_buffer_gets_an_empty_failure_or_nothing() {
    let mut ic = negotiated(Kind::Heartbeat, Heartbeat);
    let request = sim::heartbeat(1);
    let mut small = [0; 40];
    let rejected = ic.handle(&request, &mut small).unwrap_err();
    assert_eq!(
        rejected.error,
        Error::ResponseBufferTooSmall {
            needed: 68,
            len: 40
        }
    );
    let (header, payload) = answer_of(&request, &small, rejected.reply.unwrap());
    assert_eq!(
        (header.status, header.size, payload.len()),
        (Status::FAIL, 0, 0)
    );
    let mut tiny = [0; 27];
    assert_eq!(ic.handle(&request, &mut tiny).unwrap_err().reply, None);
    let mut for_negotiation = [0; 43];
    let request = sim::negotiate(HOST_FRAMEWORK_VERSIONS, Kind::Heartbeat.host_versions());
    let rejected = ic.handle(&request, &mut for_negotiation).unwrap_err();
    assert_eq!(
        rejected.error,
        Error::ResponseBufferTooSmall {
            needed: 44,
            len: 43
        }
    );
}

#[test]
fn names_status_codes_and_message_types() {
    assert_eq!(std::format!("{:?}", Status::CONT), "HV_S_CONT");
    assert_eq!(
        std::format!("{:?}", Status(0x8004_1002)),
        "HV_GUID_NOTFOUND"
    );
    assert_eq!(std::format!("{:?}", Status(1)), "Status(0x00000001)");
    assert_eq!(
        std::format!("{:?}", MessageType::KVP_EXCHANGE),
        "KVPEXCHANGE"
    );
    assert_eq!(std::format!("{:?}", MessageType(6)), "MessageType(6)");
    assert_eq!(
        Error::MessageSizePastData {
            icmsgsize: 50,
            available: 40
        }
        .to_string(),
        "icmsgsize 50 past the 40 bytes of the message"
    );
    assert_eq!(
        Error::Kvp(KvpError::Unterminated(Field::Key)).to_string(),
        "Key without a terminating NUL"
    );
}

// ---- Shutdown ----

#[test]
fn shutdown_powers_off_or_reboots_forced_or_not() {
    let mut ic = negotiated(Kind::Shutdown, Shutdown);
    let cases = [
        (sd::SHUTDOWN, Action::PowerOff { force: false }),
        (sd::SHUTDOWN | sd::FORCE, Action::PowerOff { force: true }),
        (sd::RESTART, Action::Reboot { force: false }),
        (sd::RESTART | sd::FORCE, Action::Reboot { force: true }),
    ];
    for (flags, expected) in cases {
        let request = sim::shutdown(flags);
        let (result, header, payload) = call(&mut ic, &request);
        assert_eq!(result.unwrap().action, Some(expected));
        assert_eq!(header.status, Status::OK);
        assert_eq!(payload, request[ICMSG_HDR..]);
    }
}

#[test]
fn shutdown_refuses_hibernation_and_unknown_flags() {
    let mut ic = negotiated(Kind::Shutdown, Shutdown);
    for (flags, expected) in [
        (sd::HIBERNATE, Error::HibernateRefused),
        (sd::HIBERNATE | sd::FORCE, Error::HibernateRefused),
        (6, Error::UnknownShutdownFlags(6)),
        (0x100, Error::UnknownShutdownFlags(0x100)),
    ] {
        let (error, header, _) = refusal(&mut ic, &sim::shutdown(flags));
        assert_eq!((error, header.status), (expected, Status::FAIL));
    }
    // Like Linux, the display message must be there too.
    let request = sim::shutdown(sd::SHUTDOWN);
    let cut = sim::message(
        MessageType::SHUTDOWN,
        &request[ICMSG_HDR..request.len() - 1],
    );
    let (error, _, _) = refusal(&mut ic, &cut);
    assert_eq!(
        error,
        Error::ShortPayload {
            needed: 2060,
            len: 2059
        }
    );
}

// ---- Time sync ----

#[test]
fn timesync_v4_adds_the_time_since_the_sample() {
    let now = Rc::new(Cell::new(0));
    let reading = now.clone();
    let mut ic = negotiated(Kind::Timesync, Timesync::new(move || reading.get()));
    // The host read 2024-01-01T00:00:00Z at reference time 5000; 2000 ticks (200 µs) later
    // the guest handles the message.
    let host = WLTIMEDELTA + 1_704_067_200 * 10_000_000;
    now.set(7000);
    assert_eq!(
        action(&mut ic, &sim::timesync_ref(host, 5000, ts::SYNC)),
        Some(Action::SetWallClock {
            unix_nanos: 1_704_067_200_000_000_000 + 200_000,
            sync: true
        })
    );
    for flags in [ts::SAMPLE, ts::PROBE] {
        assert_eq!(
            action(&mut ic, &sim::timesync_ref(host, 7000, flags)),
            Some(Action::SetWallClock {
                unix_nanos: 1_704_067_200_000_000_000,
                sync: false
            })
        );
    }
}

#[test]
fn timesync_before_v4_takes_the_time_as_sent_without_reading_the_clock() {
    let reads = Rc::new(Cell::new(0));
    let counter = reads.clone();
    let mut ic = Ic::new(Timesync::new(move || {
        counter.set(counter.get() + 1);
        0
    }));
    call(&mut ic, &sim::negotiate(&[v(3, 0)], &[v(1, 0), v(3, 0)]))
        .0
        .unwrap();
    assert_eq!(ic.negotiated().unwrap().service, v(3, 0));
    assert_eq!(
        action(
            &mut ic,
            &sim::timesync(WLTIMEDELTA + 15, ts::SAMPLE | ts::SYNC)
        ),
        Some(Action::SetWallClock {
            unix_nanos: 1500,
            sync: true
        })
    );
    assert_eq!(reads.get(), 0);
    // The v4 layout is 22 bytes, shorter than v3's 25: a v3 session needs all 25.
    let short = sim::timesync_ref(WLTIMEDELTA, 0, ts::SYNC);
    assert_eq!(
        refusal(&mut ic, &short).0,
        Error::ShortPayload {
            needed: 25,
            len: 22
        }
    );
}

#[test]
fn timesync_refuses_times_outside_unix_nanoseconds() {
    let mut ic = negotiated(Kind::Timesync, Timesync::new(clock(10)));
    assert_eq!(
        action(&mut ic, &sim::timesync_ref(WLTIMEDELTA, 10, ts::SYNC)),
        Some(Action::SetWallClock {
            unix_nanos: 0,
            sync: true
        })
    );
    for (host, error) in [
        (0, Error::HostTimeOutOfRange(0)),
        (u64::MAX - 5, Error::HostTimeOutOfRange(u64::MAX - 5)),
        // 2554: past a u64 of nanoseconds.
        (
            WLTIMEDELTA + u64::MAX / 100 + 1,
            Error::HostTimeOutOfRange(WLTIMEDELTA + u64::MAX / 100 + 1),
        ),
    ] {
        assert_eq!(
            refusal(&mut ic, &sim::timesync_ref(host, 10, ts::SYNC)).0,
            error
        );
    }
    // The adjustment itself overflowing.
    assert_eq!(
        refusal(&mut ic, &sim::timesync_ref(u64::MAX, 0, ts::SYNC)).0,
        Error::HostTimeOutOfRange(u64::MAX)
    );
}

// ---- Heartbeat ----

#[test]
fn heartbeat_answers_the_next_sequence_number() {
    let mut ic = negotiated(Kind::Heartbeat, Heartbeat);
    for (seq, next) in [(0, 1), (41, 42), (u64::MAX, 0)] {
        let (result, _, payload) = call(&mut ic, &sim::heartbeat(seq));
        assert_eq!(result.unwrap().action, None);
        assert_eq!(payload[..8], u64::to_le_bytes(next));
    }
    // The reserved area is optional.
    let bare = sim::message(MessageType::HEARTBEAT, &5u64.to_le_bytes());
    let (_, _, payload) = call(&mut ic, &bare);
    assert_eq!(payload, 6u64.to_le_bytes());
}

// ---- KVP ----

fn string(s: &str) -> Value {
    Value::String(s.into())
}

#[test]
fn kvp_sets_gets_enumerates_and_deletes_in_every_writable_pool() {
    let mut ic = negotiated(Kind::Kvp, Kvp::new());
    for pool in [
        Pool::External,
        Pool::Guest,
        Pool::AutoExternal,
        Pool::AutoInternal,
    ] {
        let p = pool as u8;
        for (key, value) in [
            ("VirtualMachineName", string("ringbolt-1")),
            ("Count", Value::U32(7)),
            ("Big", Value::U64(1 << 40)),
            ("Ünïcødé 🦀", string("値")),
        ] {
            assert_eq!(
                action(&mut ic, &sim::kvp_set(p, key, &value)),
                Some(Action::KvpChanged { pool })
            );
        }
        // Replacing keeps the position.
        action(&mut ic, &sim::kvp_set(p, "Count", &Value::U32(8)));
        assert_eq!(ic.service().get(pool, "Count"), Some(&Value::U32(8)));
        let got = answer(&mut ic, &sim::kvp_get(p, "Big"));
        assert_eq!(got.status(), Status::OK);
        assert_eq!(got.kvp_value(), Ok(Value::U64(1 << 40)));
        let mut entries = Vec::new();
        for index in 0.. {
            let got = answer(&mut ic, &sim::kvp_enumerate(p, index));
            if got.status() == Status::CONT {
                break;
            }
            entries.push(got.kvp_entry().unwrap());
        }
        assert_eq!(
            entries,
            [
                ("VirtualMachineName".to_string(), string("ringbolt-1")),
                ("Count".to_string(), Value::U32(8)),
                ("Big".to_string(), Value::U64(1 << 40)),
                ("Ünïcødé 🦀".to_string(), string("値")),
            ]
        );
        assert_eq!(
            action(&mut ic, &sim::kvp_delete(p, "Count")),
            Some(Action::KvpChanged { pool })
        );
        assert_eq!(ic.service().get(pool, "Count"), None);
        assert_eq!(ic.service().entries(pool).count(), 3);
    }
    // Pools are separate.
    assert_eq!(ic.service().entries(Pool::Auto).count(), 0);
}

#[test]
fn kvp_takes_expandable_strings_as_strings() {
    let mut ic = negotiated(Kind::Kvp, Kvp::new());
    let mut set = sim::kvp_set(0, "Path", &string("%SystemRoot%"));
    // value_type REG_EXPAND_SZ.
    set[ICMSG_HDR + 4] = 2;
    action(&mut ic, &set);
    assert_eq!(
        answer(&mut ic, &sim::kvp_get(0, "Path")).kvp_value(),
        Ok(string("%SystemRoot%"))
    );
}

#[test]
fn kvp_answers_hv_s_cont_for_absent_keys_and_the_end_of_a_pool() {
    let mut ic = negotiated(Kind::Kvp, Kvp::new());
    for request in [
        sim::kvp_get(0, "absent"),
        sim::kvp_delete(1, "absent"),
        sim::kvp_enumerate(2, 0),
        sim::kvp_enumerate(0, u32::MAX),
    ] {
        let (result, header, _) = call(&mut ic, &request);
        assert_eq!(result.unwrap().action, None);
        assert_eq!(header.status, Status::CONT);
    }
}

#[test]
fn kvp_enumerates_the_intrinsic_pool_the_kernel_fills() {
    let mut kvp = Kvp::new();
    kvp.set(
        Pool::Auto,
        intrinsic::FULLY_QUALIFIED_DOMAIN_NAME,
        string("vm.example"),
    )
    .unwrap();
    kvp.set(Pool::Auto, intrinsic::OS_NAME, string("Ringbolt"))
        .unwrap();
    kvp.set(Pool::Auto, intrinsic::OS_VERSION, string("0.1.0"))
        .unwrap();
    let mut ic = negotiated(Kind::Kvp, kvp);
    let got = answer(&mut ic, &sim::kvp_enumerate(Pool::Auto as u8, 1));
    assert_eq!(
        got.kvp_entry().unwrap(),
        ("OSName".into(), string("Ringbolt"))
    );
    let payload = got.payload;
    // key_size and value_size count the NUL; the rest of the fields is zero.
    assert_eq!(payload[12..16], 14u32.to_le_bytes());
    assert_eq!(payload[16..20], 18u32.to_le_bytes());
    assert!(payload[20 + 14..532].iter().all(|&b| b == 0));
    // GET works on it too; SET and DELETE are the kernel's alone.
    assert_eq!(
        answer(&mut ic, &sim::kvp_get(2, "OSVersion")).kvp_value(),
        Ok(string("0.1.0"))
    );
    for request in [
        sim::kvp_set(2, "OSName", &string("x")),
        sim::kvp_delete(2, "OSName"),
    ] {
        assert_eq!(
            refusal(&mut ic, &request).0,
            Error::Kvp(KvpError::ReadOnlyPool(Pool::Auto))
        );
    }
    assert_eq!(
        ic.service().get(Pool::Auto, "OSName"),
        Some(&string("Ringbolt"))
    );
}

#[test]
fn kvp_pools_are_bounded() {
    let mut ic = negotiated(Kind::Kvp, Kvp::new());
    for i in 0..POOL_CAPACITY {
        action(
            &mut ic,
            &sim::kvp_set(0, &std::format!("k{i}"), &Value::U32(0)),
        );
    }
    let (error, header, _) = refusal(&mut ic, &sim::kvp_set(0, "one more", &Value::U32(0)));
    assert_eq!(
        (error, header.status),
        (Error::Kvp(KvpError::PoolFull(Pool::External)), Status::FAIL)
    );
    // Replacing a key still works, and other pools are not affected.
    action(&mut ic, &sim::kvp_set(0, "k3", &Value::U32(3)));
    action(&mut ic, &sim::kvp_set(1, "k3", &Value::U32(3)));
    assert_eq!(
        ic.service_mut()
            .set(Pool::External, "another", Value::U32(1)),
        Err(KvpError::PoolFull(Pool::External))
    );
}

#[test]
fn kvp_checks_what_the_kernel_stores() {
    let mut kvp = Kvp::new();
    let longest_key = "k".repeat(KEY_SIZE / 2 - 1);
    assert_eq!(kvp.set(Pool::Guest, &longest_key, Value::U32(1)), Ok(()));
    let too_long = "k".repeat(KEY_SIZE / 2);
    assert_eq!(
        kvp.set(Pool::Guest, &too_long, Value::U32(1)),
        Err(KvpError::BadString(Field::Key))
    );
    assert_eq!(
        kvp.set(Pool::Guest, "a\0b", Value::U32(1)),
        Err(KvpError::BadString(Field::Key))
    );
    assert_eq!(
        kvp.set(Pool::Guest, "v", string(&"v".repeat(1024))),
        Err(KvpError::BadString(Field::Value))
    );
    assert_eq!(kvp.set(Pool::Guest, "v", string(&"v".repeat(1023))), Ok(()));
    assert_eq!(
        kvp.remove(Pool::Guest, "v"),
        Some(string(&"v".repeat(1023)))
    );
    assert_eq!(kvp.remove(Pool::Guest, "v"), None);
    // A maximal value round-trips through GET.
    kvp.set(Pool::Guest, "max", string(&"é".repeat(1023)))
        .unwrap();
    let mut ic = negotiated(Kind::Kvp, kvp);
    let got = answer(&mut ic, &sim::kvp_get(1, "max"));
    assert_eq!(got.payload.len(), GET_SET_SIZE);
    assert_eq!(got.kvp_value(), Ok(string(&"é".repeat(1023))));
}

fn adapter() -> Adapter {
    Adapter {
        mac: [0x00, 0x15, 0x5d, 0x01, 0x02, 0x03],
        dhcp_enabled: true,
        addresses: vec![
            Address {
                ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 4)),
                prefix_len: 24,
            },
            Address {
                ip: IpAddr::V6("fe80::215:5dff:fe01:203".parse::<Ipv6Addr>().unwrap()),
                prefix_len: 64,
            },
        ],
        gateways: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
        dns_servers: vec![
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
        ],
    }
}

#[test]
fn kvp_reports_an_adapters_addresses_by_mac() {
    let mut kvp = Kvp::new();
    kvp.set_adapters(vec![adapter()]);
    let mut ic = negotiated(Kind::Kvp, kvp);
    for id in ["00:15:5D:01:02:03", "00-15-5d-01-02-03"] {
        assert_eq!(action(&mut ic, &sim::kvp_get_ip_info(id)), None);
        assert_eq!(
            answer(&mut ic, &sim::kvp_get_ip_info(id))
                .ip_settings()
                .unwrap(),
            IpSettings {
                adapter_id: id.into(),
                address_family: address_family::IPV4 | address_family::IPV6,
                dhcp_enabled: true,
                addresses: "10.0.0.4;fe80::215:5dff:fe01:203".into(),
                subnets: "255.255.255.0;/64".into(),
                gateways: "10.0.0.1".into(),
                dns_servers: "10.0.0.2;1.1.1.1".into(),
            }
        );
    }
    for id in ["00:15:5D:01:02:04", "not a mac", ""] {
        assert_eq!(
            refusal(&mut ic, &sim::kvp_get_ip_info(id)).0,
            Error::Kvp(KvpError::UnknownAdapter)
        );
    }
}

#[test]
fn kvp_passes_ip_injection_to_the_kernel_only_if_it_accepts_it() {
    let settings = IpSettings {
        adapter_id: "{4d2d3ad3-7d4d-4a1b-9b2c-8f0f4b2d8e11}".into(),
        address_family: address_family::IPV4,
        dhcp_enabled: false,
        addresses: "192.168.1.10".into(),
        subnets: "255.255.255.0".into(),
        gateways: "192.168.1.1".into(),
        dns_servers: "192.168.1.1".into(),
    };
    let mut ic = negotiated(Kind::Kvp, Kvp::new());
    let (error, header, _) = refusal(&mut ic, &sim::kvp_set_ip_info(&settings));
    assert_eq!(
        (error, header.status),
        (
            Error::Kvp(KvpError::IpInjectionRefused),
            Status::NOT_SUPPORTED
        )
    );
    ic.service_mut().accept_ip_injection(true);
    assert_eq!(
        action(&mut ic, &sim::kvp_set_ip_info(&settings)),
        Some(Action::SetIpInfo(alloc::boxed::Box::new(settings.clone())))
    );
    // Every string must be terminated, refused or not.
    let mut bad = sim::kvp_set_ip_info(&settings);
    bad[ICMSG_HDR + 4356..ICMSG_HDR + 5380].fill(0x20);
    assert_eq!(
        refusal(&mut ic, &bad).0,
        Error::Kvp(KvpError::Unterminated(Field::Gateways))
    );
}

#[test]
fn kvp_messages_must_be_whole() {
    let mut ic = negotiated(Kind::Kvp, Kvp::new());
    let cut = |m: Vec<u8>, keep: usize| {
        sim::message(MessageType::KVP_EXCHANGE, &m[ICMSG_HDR..ICMSG_HDR + keep])
    };
    for (request, needed) in [
        (sim::kvp_get(0, "k"), 2576),
        (sim::kvp_set(0, "k", &Value::U32(1)), 2576),
        (sim::kvp_delete(0, "k"), 520),
        (sim::kvp_enumerate(0, 0), 2580),
        (sim::kvp_get_ip_info("00:15:5D:01:02:03"), 7428),
        (sim::kvp_set_ip_info(&IpSettings::default()), 7428),
    ] {
        let len = needed - 1;
        assert_eq!(
            refusal(&mut ic, &cut(request, len)).0,
            Error::ShortPayload { needed, len }
        );
    }
    // The operation decides the size.
    assert_eq!(
        refusal(&mut ic, &sim::message(MessageType::KVP_EXCHANGE, &[0])).0,
        Error::ShortPayload {
            needed: 2576,
            len: 1
        }
    );
    assert_eq!(
        refusal(&mut ic, &sim::message(MessageType::KVP_EXCHANGE, &[])).0,
        Error::ShortPayload { needed: 1, len: 0 }
    );
}

// ---- Over VMBus, with the simulated host ----

/// A guest serving one IC channel against the simulated host.
struct Bench<'a, S> {
    host: IcHost<'a>,
    channel: Channel<&'a FakeSharedMemory, 1>,
    ic: IcChannel<S>,
}

impl<'a, S: Service> Bench<'a, S> {
    fn new(kind: Kind, rings: &'a Rings, service: S) -> Self {
        let host = IcHost::open(kind, rings);
        let channel = host.guest_channel(rings);
        Bench {
            host,
            channel,
            ic: IcChannel::new(service),
        }
    }

    /// Lets the guest serve what is in its ring; what it reported.
    fn guest(&mut self) -> Vec<Result<Action, Error>> {
        let mut outcomes = Vec::new();
        self.ic
            .poll(&mut self.channel, self.host.vmbus(), |o| outcomes.push(o))
            .unwrap();
        outcomes
    }

    fn negotiate(&mut self) -> Negotiated {
        self.host.negotiate();
        assert_eq!(self.guest(), []);
        self.host.answer().negotiated().unwrap()
    }

    /// Sends `request`, lets the guest answer; the guest's report and the host's answer.
    fn request(&mut self, request: &[u8]) -> (Vec<Result<Action, Error>>, Answer) {
        self.host.send(request);
        let outcomes = self.guest();
        (outcomes, self.host.answer())
    }

    fn assert_clean(&self) {
        assert_eq!(self.host.errors(), Vec::<String>::new());
        assert_eq!(self.host.outstanding(), 0);
        assert_eq!(self.ic.pending_answers(), 0);
    }
}

#[test]
fn every_service_negotiates_and_serves_over_vmbus() {
    let rings = Rings::new();
    let mut b = Bench::new(Kind::Shutdown, &rings, Shutdown);
    assert_eq!(b.negotiate().service, v(3, 2));
    let (outcomes, answer) = b.request(&sim::shutdown(sd::RESTART));
    assert_eq!(outcomes, [Ok(Action::Reboot { force: false })]);
    assert_eq!(answer.status(), Status::OK);
    b.assert_clean();

    let rings = Rings::new();
    let mut b = Bench::new(Kind::Timesync, &rings, Timesync::new(clock(100)));
    assert_eq!(b.negotiate().service, v(4, 0));
    let (outcomes, _) = b.request(&sim::timesync_ref(WLTIMEDELTA + 1, 0, ts::SAMPLE));
    assert_eq!(
        outcomes,
        [Ok(Action::SetWallClock {
            unix_nanos: 10_100,
            sync: false
        })]
    );
    b.assert_clean();

    let rings = Rings::new();
    let mut b = Bench::new(Kind::Heartbeat, &rings, Heartbeat);
    assert_eq!(b.negotiate().service, v(3, 0));
    for seq in 100..110 {
        let (outcomes, answer) = b.request(&sim::heartbeat(seq));
        assert_eq!(outcomes, []);
        assert_eq!(answer.heartbeat(), Some(seq + 1));
    }
    b.assert_clean();

    let rings = Rings::new();
    let mut kvp = Kvp::new();
    kvp.set_adapters(vec![adapter()]);
    let mut b = Bench::new(Kind::Kvp, &rings, kvp);
    assert_eq!(b.negotiate().service, v(4, 0));
    let (outcomes, _) = b.request(&sim::kvp_set(0, "HostName", &string("hv-01")));
    assert_eq!(
        outcomes,
        [Ok(Action::KvpChanged {
            pool: Pool::External
        })]
    );
    let (_, answer) = b.request(&sim::kvp_get(0, "HostName"));
    assert_eq!(answer.kvp_value(), Ok(string("hv-01")));
    // The largest message, GET_IP_INFO, fits the rings.
    let (_, answer) = b.request(&sim::kvp_get_ip_info("00:15:5D:01:02:03"));
    assert_eq!(answer.ip_settings().unwrap().gateways, "10.0.0.1");
    b.assert_clean();
    assert_eq!(b.host.negotiated().unwrap().service, v(4, 0));
}

/// Every hostile case for `kind`: refused with the error it names, answered as it says, and
/// the service still works afterwards.
fn survives_every_hostile_message<S: Service>(kind: Kind, service: impl Fn() -> S) {
    for hostile in Hostile::ALL.into_iter().filter(|h| h.applies_to(kind)) {
        let rings = Rings::new();
        let mut b = Bench::new(kind, &rings, service());
        b.negotiate();
        let (packet_type, message) = hostile.message(kind);
        b.host.send_as(packet_type, &message);
        let outcomes = b.guest();
        assert_eq!(outcomes, [Err(hostile.error(kind))], "{kind:?} {hostile:?}");
        let answers = b.host.answers();
        match hostile.expect() {
            Expect::NoAnswer => assert_eq!(answers, [], "{kind:?} {hostile:?}"),
            Expect::Failure => {
                assert_eq!(answers.len(), 1, "{kind:?} {hostile:?}");
                assert_eq!(answers[0].status(), Status::FAIL, "{kind:?} {hostile:?}");
            }
            Expect::NoCommonVersion => {
                assert_eq!(answers.len(), 1, "{kind:?} {hostile:?}");
                assert_eq!(answers[0].negotiated(), None, "{kind:?} {hostile:?}");
                assert_eq!(answers[0].payload.len(), 16, "{kind:?} {hostile:?}");
                b.negotiate();
            }
        }
        let (outcomes, answer) = b.request(&kind.valid_request());
        assert_eq!(answer.status(), Status::OK, "{kind:?} after {hostile:?}");
        assert!(
            outcomes.iter().all(Result::is_ok),
            "{kind:?} after {hostile:?}"
        );
        b.assert_clean();
    }
}

#[test]
fn shutdown_survives_every_hostile_message() {
    survives_every_hostile_message(Kind::Shutdown, || Shutdown);
}

#[test]
fn timesync_survives_every_hostile_message() {
    survives_every_hostile_message(Kind::Timesync, || Timesync::new(clock(1000)));
}

#[test]
fn heartbeat_survives_every_hostile_message() {
    survives_every_hostile_message(Kind::Heartbeat, || Heartbeat);
}

#[test]
fn kvp_survives_every_hostile_message() {
    survives_every_hostile_message(Kind::Kvp, Kvp::new);
}

#[test]
fn every_hostile_case_applies_somewhere_and_the_framework_ones_everywhere() {
    for hostile in Hostile::ALL {
        let kinds = Kind::ALL.iter().filter(|k| hostile.applies_to(**k)).count();
        assert!(kinds == 1 || kinds == 4, "{hostile:?}");
    }
}

#[test]
fn answers_wait_while_the_outbound_ring_is_full() {
    let rings = Rings::new();
    let mut b = Bench::new(Kind::Heartbeat, &rings, Heartbeat);
    b.negotiate();
    // Each answer takes 16 + 72 + 8 bytes of the 12 KiB ring; the host reads none of them.
    let mut sent = 0;
    while b.ic.pending_answers() < 4 {
        b.host.send(&sim::heartbeat(sent));
        sent += 1;
        b.guest();
    }
    assert!(sent > 100, "{sent}");
    let pending = b.ic.pending_answers();
    // The host drains the ring, which signals the guest; its next poll sends the rest.
    let first = b.host.answers();
    b.guest();
    let rest = b.host.answers();
    assert_eq!(rest.len(), pending);
    let seqs: Vec<u64> = first
        .iter()
        .chain(&rest)
        .filter_map(Answer::heartbeat)
        .collect();
    assert_eq!(seqs, (1..=sent).collect::<Vec<_>>());
    b.assert_clean();
}

#[test]
fn a_flooding_host_loses_answers_beyond_the_limit() {
    let rings = Rings::new();
    let mut b = Bench::new(Kind::Heartbeat, &rings, Heartbeat);
    b.negotiate();
    let mut sent = 0u64;
    // Fill the outbound ring and the pending queue, never draining.
    for _ in 0..20 {
        for _ in 0..20 {
            b.host.send(&sim::heartbeat(sent));
            sent += 1;
        }
        b.guest();
    }
    assert_eq!(b.ic.pending_answers(), crate::channel::MAX_PENDING_ANSWERS);
    let answered = b.host.answers().len();
    b.guest();
    let answered = answered + b.host.answers().len();
    assert!(answered < sent as usize);
    assert_eq!(b.host.outstanding(), sent as usize - answered);
    // The service still answers.
    let (_, answer) = b.request(&sim::heartbeat(7));
    assert_eq!(answer.heartbeat(), Some(8));
}

#[test]
fn an_answer_too_large_for_the_outbound_ring_is_dropped_not_stuck() {
    // One data page out, three in: a GET_IP_INFO answer (7.3 KiB) cannot go back.
    let rings = Rings {
        outbound: ringbolt_vmbus::sim::ring_memory(2),
        inbound: ringbolt_vmbus::sim::ring_memory(4),
    };
    let mut kvp = Kvp::new();
    kvp.set_adapters(vec![adapter()]);
    let mut b = Bench::new(Kind::Kvp, &rings, kvp);
    b.negotiate();
    b.host.send(&sim::kvp_get_ip_info("00:15:5D:01:02:03"));
    assert_eq!(b.guest(), []);
    assert_eq!(b.host.answers(), []);
    assert_eq!(b.ic.pending_answers(), 0);
    let (_, answer) = b.request(&sim::kvp_get(0, "absent"));
    assert_eq!(answer.status(), Status::CONT);
}
