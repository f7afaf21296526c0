//! Arbitrary messages into each Hyper-V integration service (`ringbolt-hyperv-ic`).
//!
//! Input layout:
//!
//! ```text
//! 0       setup: bits 0-1 -> the service (shutdown, time sync, heartbeat, KVP)
//!                bit 2    -> negotiate first, with the versions Hyper-V offers
//!                bit 3    -> KVP accepts IP injection
//! 1..9    the partition reference time the time sync service reads (little-endian)
//! then messages, until the input runs out (at most 64):
//! 0       flags: bit 0 -> framed: the n bytes are a payload, sent with valid pipe and IC
//!                         headers (bit 1: as a negotiation, else as the service's type; bit
//!                         2: zero-padded to 7428 bytes, the largest structure a service
//!                         reads); else the n bytes are the packet's data as they are
//! 1..3    n (little-endian u16, modulo 8193)
//! ...     n bytes (fewer if the input ends)
//! ```
//!
//! Framing and padding let the fuzzer past the headers into negotiation and the services'
//! payloads (a KVP SET is 2576 bytes, mostly zeros), with raw packets (and their lying sizes)
//! mixed in.
//!
//! Asserts: no panic; a request is answered exactly when its pipe and IC headers parse; every
//! answer parses as an ICMSG response to it (pipe type data, sizes that agree, `icflags`
//! transaction and response, the request's transaction id, type, versions and reserved bytes)
//! with the status the outcome says; a negotiated version is one both sides list; a heartbeat
//! answer carries the request's number plus one; a time is a whole number of 100 ns; KVP pools
//! stay within their capacity and hold only keys and values that fit the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbolt_hyperv_ic::icmsg::{
    FLAG_RESPONSE, FLAG_TRANSACTION, FRAMEWORK_VERSIONS, Frame, Header, ICMSG_HDR, MessageType,
};
use ringbolt_hyperv_ic::kvp::ip::IP_MESSAGE_SIZE;
use ringbolt_hyperv_ic::kvp::{POOL_CAPACITY, Pool};
use ringbolt_hyperv_ic::sim::{self, HOST_FRAMEWORK_VERSIONS, Kind};
use ringbolt_hyperv_ic::{
    Action, Heartbeat, Ic, Kvp, Rejected, Reply, Service, Shutdown, Timesync,
};

fuzz_target!(|data: &[u8]| {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let Some((clock, script)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let now = u64::from_le_bytes(*clock);
    let kind = Kind::ALL[usize::from(setup & 3)];
    let negotiate = setup & 4 != 0;
    match kind {
        Kind::Shutdown => run(kind, Shutdown, negotiate, script, |_, _, _| {}),
        Kind::Timesync => run(
            kind,
            Timesync::new(move || now),
            negotiate,
            script,
            |_, _, _| {},
        ),
        Kind::Heartbeat => run(kind, Heartbeat, negotiate, script, check_heartbeat),
        Kind::Kvp => {
            let mut kvp = Kvp::new();
            kvp.accept_ip_injection(setup & 8 != 0);
            run(kind, kvp, negotiate, script, check_kvp)
        }
    }
});

/// Plays the script into `service`, checking every answer, then `check` on each.
fn run<S: Service>(
    kind: Kind,
    service: S,
    negotiate: bool,
    mut script: &[u8],
    check: impl Fn(&Ic<S>, &[u8], &[u8]),
) {
    let mut ic = Ic::new(service);
    let mut response = vec![0u8; 16 * 1024];
    if negotiate {
        let request = sim::negotiate(HOST_FRAMEWORK_VERSIONS, kind.host_versions());
        let reply = ic
            .handle(&request, &mut response)
            .expect("Hyper-V's versions");
        check_answer(&request, &response[..reply.len]);
    }
    for _ in 0..64 {
        let Some((&flags, rest)) = script.split_first() else {
            return;
        };
        let Some((len, rest)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let n = usize::from(u16::from_le_bytes(*len)) % 8193;
        let (bytes, rest) = rest.split_at(n.min(rest.len()));
        script = rest;
        let request = if flags & 1 != 0 {
            let message_type = if flags & 2 != 0 {
                MessageType::NEGOTIATE
            } else {
                kind.message_type()
            };
            let mut payload = bytes.to_vec();
            if flags & 4 != 0 && payload.len() < IP_MESSAGE_SIZE {
                payload.resize(IP_MESSAGE_SIZE, 0);
            }
            sim::message(message_type, &payload)
        } else {
            bytes.to_vec()
        };
        let outcome = ic.handle(&request, &mut response);
        let answered = match &outcome {
            Ok(Reply { len, .. })
            | Err(Rejected {
                reply: Some(len), ..
            }) => Some(*len),
            Err(Rejected { reply: None, .. }) => None,
        };
        assert_eq!(answered.is_some(), Frame::parse(&request).is_ok());
        let Some(len) = answered else {
            continue;
        };
        let answer = &response[..len];
        let (header, payload) = check_answer(&request, answer);
        let request_header = Frame::parse(&request).expect("answered").header;
        if header.message_type == MessageType::NEGOTIATE && payload.len() == 16 {
            // Like Linux, a negotiation answer keeps the host's status; the counts say it all.
            assert_eq!(header.status, request_header.status);
            let counts: &[u8] = if outcome.is_ok() {
                &[1, 0, 1, 0]
            } else {
                &[0; 4]
            };
            assert_eq!(&payload[..4], counts);
        } else {
            match &outcome {
                Ok(reply) => assert_eq!(reply.status, header.status),
                Err(rejected) => assert_eq!(header.status, rejected.error.status()),
            }
            assert!(payload.len() == usize::from(request_header.size) || payload.is_empty());
        }
        if let Ok(Reply {
            action: Some(Action::SetWallClock { unix_nanos, .. }),
            ..
        }) = &outcome
        {
            assert_eq!(unix_nanos % 100, 0);
        }
        if let Some(n) = ic.negotiated() {
            assert!(FRAMEWORK_VERSIONS.contains(&n.framework));
            assert!(S::VERSIONS.contains(&n.service));
        }
        if outcome.is_ok() {
            check(&ic, &request, answer);
        }
    }
}

/// Checks that `answer` is a well-formed ICMSG response to `request`; returns its header and
/// payload.
fn check_answer<'a>(request: &[u8], answer: &'a [u8]) -> (Header, &'a [u8]) {
    let request = Frame::parse(request)
        .expect("answered requests parse")
        .header;
    let frame = Frame::parse(answer).expect("answers parse");
    let payload = frame.payload().expect("answers carry their payload");
    assert_eq!(answer.len(), ICMSG_HDR + payload.len());
    let h = frame.header;
    assert_eq!(h.flags, FLAG_TRANSACTION | FLAG_RESPONSE);
    assert_eq!(
        (
            h.framework,
            h.message_type,
            h.message_version,
            h.transaction_id,
            h.reserved
        ),
        (
            request.framework,
            request.message_type,
            request.message_version,
            request.transaction_id,
            request.reserved
        )
    );
    (h, payload)
}

/// A granted heartbeat answers the request's number plus one.
fn check_heartbeat(_: &Ic<Heartbeat>, request: &[u8], answer: &[u8]) {
    let (request, answer) = (
        Frame::parse(request).unwrap(),
        Frame::parse(answer).unwrap(),
    );
    if request.header.message_type != MessageType::HEARTBEAT {
        return;
    }
    let (request, answer) = (request.payload().unwrap(), answer.payload().unwrap());
    let seq = u64::from_le_bytes(request[..8].try_into().unwrap());
    assert_eq!(answer[..8], seq.wrapping_add(1).to_le_bytes());
    assert_eq!(answer[8..], request[8..]);
}

/// The pools stay bounded, and everything in them would be accepted from the kernel too.
fn check_kvp(ic: &Ic<Kvp>, _: &[u8], _: &[u8]) {
    let mut copy = Kvp::new();
    for pool in Pool::ALL {
        let entries: Vec<_> = ic.service().entries(pool).collect();
        assert!(entries.len() <= POOL_CAPACITY);
        for (key, value) in entries {
            copy.set(pool, key, value.clone())
                .expect("stored entries fit the wire");
        }
    }
}
