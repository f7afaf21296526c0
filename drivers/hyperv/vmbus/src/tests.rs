//! The whole guest side against [`sim::VmbusHost`]: negotiation, offers, GPADLs, open and close,
//! ring traffic, unload, and every hostile case.

extern crate std;

use std::vec;
use std::vec::Vec;

use ringbolt_shmem::SharedMemory;
use ringbolt_shmem::fake::FakeSharedMemory;

use crate::connection::{MESSAGE_CONNECTION_ID, MESSAGE_CONNECTION_ID_4};
use crate::guid::class;
use crate::message::{GuestMessage, InterruptTarget, MessageType, ParseError, message_type};
use crate::packet::{GpaRange, OutgoingPacket, PacketType, PfnList};
use crate::ring::{Index, RingError, header};
use crate::sim::{
    self, ChannelMode, HostConfig, HostileMessage, HostileRing, STATUS_UNSUCCESSFUL, VmbusHost,
};
use crate::{
    Channel, ChannelError, Config, Connection, Error, Event, GpadlHandle, HvStatus, Incoming,
    OpenParams, PAGE_SIZE, Version,
};

type Conn = Connection<8, 8>;

fn config(max_version: Version) -> Config {
    Config {
        max_version,
        target_vcpu: 0,
        vtl: 0,
        interrupt_page: 0x7000,
        monitor_pages: [0x8000, 0x9000],
    }
}

/// Hands every queued host message to the connection, collecting events and errors.
fn pump(host: &VmbusHost<'_>, conn: &mut Conn) -> Vec<Result<Option<Event>, Error>> {
    let mut out = Vec::new();
    while let Some(message) = host.next_message() {
        out.push(conn.handle_message(host, &message));
    }
    out
}

/// Events of a pump that must not fail.
fn events(host: &VmbusHost<'_>, conn: &mut Conn) -> Vec<Event> {
    pump(host, conn)
        .into_iter()
        .filter_map(Result::unwrap)
        .collect()
}

/// A connection that has negotiated with `host` and received its offers.
fn connected(host: &VmbusHost<'_>) -> Conn {
    let mut conn = Conn::new(config(Version::V5_3));
    conn.connect(host).unwrap();
    events(host, &mut conn);
    assert!(conn.is_ready());
    conn
}

/// (connection id, message type) of everything the guest posted.
fn posted_types(host: &VmbusHost<'_>) -> Vec<(u32, MessageType)> {
    host.posted()
        .iter()
        .map(|(id, b)| (*id, message_type(b).unwrap()))
        .collect()
}

#[test]
fn negotiates_4_0_with_qemu_after_5_x_finds_no_connection_4() {
    let host = VmbusHost::new(HostConfig::qemu());
    let mut conn = Conn::new(config(Version::V5_3));
    conn.connect(&host).unwrap();
    let got = events(&host, &mut conn);
    assert_eq!(
        got,
        [
            Event::Connected {
                version: Version::V4_0
            },
            Event::Offer { relid: 1 },
            Event::AllOffersDelivered
        ]
    );
    assert_eq!(conn.version(), Some(Version::V4_0));
    assert_eq!(conn.message_connection_id(), MESSAGE_CONNECTION_ID);
    // 5.3 down to 5.0 bounce off connection 4; 4.1 is posted and rejected; 4.0 is accepted.
    let versions: Vec<_> = host
        .posted()
        .iter()
        .filter_map(|(id, b)| match GuestMessage::parse(b) {
            Ok(GuestMessage::InitiateContact(c)) => Some((*id, c.version)),
            _ => None,
        })
        .collect();
    assert_eq!(
        versions,
        [
            (4, Version::V5_3),
            (4, Version::V5_2),
            (4, Version::V5_1),
            (4, Version::V5_0),
            (1, Version::V4_1),
            (1, Version::V4_0)
        ]
    );
    assert_eq!(
        posted_types(&host).last(),
        Some(&(1, MessageType::RequestOffers))
    );
    assert_eq!(host.errors(), Vec::<std::string::String>::new());
}

#[test]
fn sends_the_interrupt_page_before_5_0_and_the_sint_from_5_0() {
    let host = VmbusHost::new(HostConfig::hyperv(Version::V5_2));
    let mut conn = Conn::new(Config {
        vtl: 0,
        ..config(Version::V5_3)
    });
    conn.connect(&host).unwrap();
    let (_, first) = &host.posted()[0];
    let Ok(GuestMessage::InitiateContact(contact)) = GuestMessage::parse(first) else {
        panic!("not a contact");
    };
    assert_eq!(
        contact.interrupt,
        InterruptTarget::Sint {
            sint: 2,
            vtl: 0,
            feature_flags: 0
        }
    );
    assert_eq!(contact.monitor_pages, [0x8000, 0x9000]);

    let old = VmbusHost::new(HostConfig::qemu());
    let mut conn = Conn::new(config(Version::V4_0));
    conn.connect(&old).unwrap();
    let Ok(GuestMessage::InitiateContact(contact)) = GuestMessage::parse(&old.posted()[0].1) else {
        panic!("not a contact");
    };
    assert_eq!(contact.version, Version::V4_0);
    assert_eq!(contact.interrupt, InterruptTarget::InterruptPage(0x7000));
}

#[test]
fn negotiates_5_2_and_uses_the_hosts_message_connection_id() {
    let host = VmbusHost::new(HostConfig {
        msg_conn_id: 0x2a,
        ..HostConfig::hyperv(Version::V5_2)
    });
    let mut conn = Conn::new(config(Version::V5_3));
    conn.connect(&host).unwrap();
    let got = events(&host, &mut conn);
    assert_eq!(
        got[0],
        Event::Connected {
            version: Version::V5_2
        }
    );
    assert_eq!(conn.message_connection_id(), 0x2a);
    assert_eq!(
        posted_types(&host),
        [
            (MESSAGE_CONNECTION_ID_4, MessageType::InitiateContact),
            (MESSAGE_CONNECTION_ID_4, MessageType::InitiateContact),
            (0x2a, MessageType::RequestOffers)
        ]
    );
    assert!(host.errors().is_empty(), "{:?}", host.errors());
}

#[test]
fn negotiates_5_3_at_once_on_a_5_3_host() {
    let host = VmbusHost::new(HostConfig::hyperv(Version::V5_3));
    let conn = connected(&host);
    assert_eq!(conn.version(), Some(Version::V5_3));
    assert_eq!(host.posted().len(), 2);
}

#[test]
fn offers_no_version_above_the_configured_maximum() {
    let host = VmbusHost::new(HostConfig::hyperv(Version::V5_3));
    let mut conn = Conn::new(config(Version::V4_1));
    conn.connect(&host).unwrap();
    events(&host, &mut conn);
    assert_eq!(conn.version(), Some(Version::V4_1));
    assert_eq!(posted_types(&host)[0], (1, MessageType::InitiateContact));
}

#[test]
fn fails_when_the_host_rejects_every_version() {
    let host = VmbusHost::new(HostConfig {
        max_version: Version::new(2, 0),
        ..HostConfig::qemu()
    });
    let mut conn = Conn::new(config(Version::V5_3));
    conn.connect(&host).unwrap();
    let results = pump(&host, &mut conn);
    assert_eq!(results.last(), Some(&Err(Error::NoCommonVersion)));
    assert_eq!(conn.version(), None);
    // Idle again: a later connect may try again.
    assert!(conn.connect(&host).is_ok());
    assert_eq!(conn.connect(&host), Err(Error::WrongState));
}

#[test]
fn rejects_a_5_x_answer_without_a_usable_connection_id() {
    for bad in [0, 0x0100_0000] {
        let host = VmbusHost::new(HostConfig {
            msg_conn_id: bad,
            ..HostConfig::hyperv(Version::V5_3)
        });
        let mut conn = Conn::new(config(Version::V5_3));
        conn.connect(&host).unwrap();
        assert_eq!(pump(&host, &mut conn), [Err(Error::BadConnectionId(bad))]);
        assert_eq!(conn.version(), None);
    }
}

#[test]
fn a_post_failure_other_than_a_missing_connection_is_returned() {
    struct Refusing;
    impl crate::Host for Refusing {
        type Memory = FakeSharedMemory;
        fn post_message(&self, _: u32, _: u32, _: &[u8]) -> Result<(), HvStatus> {
            Err(HvStatus::INSUFFICIENT_BUFFERS)
        }
        fn signal_event(&self, _: u32) -> Result<(), HvStatus> {
            Ok(())
        }
        fn page_number(&self, _: &FakeSharedMemory, _: usize) -> Option<u64> {
            None
        }
    }
    let mut conn = Conn::new(config(Version::V5_3));
    assert_eq!(
        conn.connect(&Refusing),
        Err(Error::Post(HvStatus::INSUFFICIENT_BUFFERS))
    );
    assert!(conn.connect(&Refusing).is_err());
}

#[test]
fn collects_offers_until_all_are_delivered_and_keeps_every_field() {
    let mut sub = sim::balloon_offer(3);
    sub.sub_channel_index = 1;
    sub.monitor_allocated = true;
    sub.monitor_id = 9;
    let host = VmbusHost::new(HostConfig {
        offers: vec![sim::balloon_offer(1), sim::balloon_offer(2), sub],
        ..HostConfig::qemu()
    });
    let mut conn = Conn::new(config(Version::V5_3));
    conn.connect(&host).unwrap();
    let got = events(&host, &mut conn);
    assert_eq!(
        got[1..],
        [
            Event::Offer { relid: 1 },
            Event::Offer { relid: 2 },
            Event::Offer { relid: 3 },
            Event::AllOffersDelivered
        ]
    );
    assert_eq!(conn.offers().count(), 3);
    assert_eq!(conn.offer(3), Some(&sub));
    assert_eq!(conn.offer(2).unwrap().interface_type, class::BALLOON);
    assert_eq!(conn.offer(2).unwrap().connection_id, 18);
    assert_eq!(conn.offer(4), None);
}

#[test]
fn rejects_a_relid_offered_twice_and_a_full_table() {
    let host = VmbusHost::new(HostConfig {
        offers: vec![sim::balloon_offer(1), sim::balloon_offer(1)],
        ..HostConfig::qemu()
    });
    let mut conn = Conn::new(config(Version::V5_3));
    conn.connect(&host).unwrap();
    let results = pump(&host, &mut conn);
    assert!(results.contains(&Err(Error::RelidInUse(1))), "{results:?}");
    assert_eq!(results.last(), Some(&Ok(Some(Event::AllOffersDelivered))));
    assert_eq!(conn.offers().count(), 1);

    let host = VmbusHost::new(HostConfig {
        offers: (1..=3).map(sim::balloon_offer).collect(),
        ..HostConfig::qemu()
    });
    let mut small = Connection::<2, 2>::new(config(Version::V5_3));
    small.connect(&host).unwrap();
    let mut results = Vec::new();
    while let Some(m) = host.next_message() {
        results.push(small.handle_message(&host, &m));
    }
    assert!(
        results.contains(&Err(Error::TooManyChannels)),
        "{results:?}"
    );
    assert_eq!(small.offers().count(), 2);
}

#[test]
fn every_hostile_message_is_rejected_without_changing_state() {
    let host = VmbusHost::new(HostConfig::qemu());
    let mut conn = connected(&host);
    let posted = host.posted().len();
    for hostile in HostileMessage::ALL {
        host.push_to_guest(&hostile.bytes());
        let result = pump(&host, &mut conn).remove(0);
        let expected = match hostile {
            HostileMessage::TruncatedOffer => Error::Parse(ParseError::Truncated {
                msg_type: Some(MessageType::OfferChannel),
                needed: 196,
                len: 195,
            }),
            HostileMessage::UnknownType => Error::Parse(ParseError::UnknownType(1000)),
            HostileMessage::Oversized => Error::Parse(ParseError::TooLong { len: 241 }),
            HostileMessage::RelidZero => Error::InvalidRelid(0),
            HostileMessage::RelidTooLarge => Error::InvalidRelid(2048),
            HostileMessage::BadConnectionId => Error::BadConnectionId(0x0100_0000),
            HostileMessage::GuestOnly => {
                Error::Parse(ParseError::Unexpected(MessageType::RequestOffers))
            }
            HostileMessage::SpuriousUnloadResponse => {
                Error::Unexpected(MessageType::UnloadResponse)
            }
            HostileMessage::SpuriousVersionResponse => {
                Error::Unexpected(MessageType::VersionResponse)
            }
            HostileMessage::UnknownGpadlCreated | HostileMessage::UnknownGpadlTorndown => {
                Error::UnknownGpadl(0xdead)
            }
            HostileMessage::UnknownOpenResult => Error::UnexpectedOpenResult {
                relid: 1,
                open_id: 0xdead,
            },
            HostileMessage::UnknownRescind => Error::UnknownRelid(99),
        };
        assert_eq!(result, Err(expected), "{hostile:?}");
        assert!(conn.is_ready());
        assert_eq!(conn.version(), Some(Version::V4_0));
        assert_eq!(conn.offers().count(), 1);
    }
    // Nothing hostile made the guest post anything.
    assert_eq!(host.posted().len(), posted);
}

#[test]
fn channel_messages_before_connecting_are_unexpected() {
    let host = VmbusHost::new(HostConfig::qemu());
    let mut conn = Conn::new(config(Version::V5_3));
    host.push_to_guest(sim::balloon_offer(1).encode().as_bytes());
    assert_eq!(
        pump(&host, &mut conn),
        [Err(Error::Unexpected(MessageType::OfferChannel))]
    );
    let mem = sim::ring_memory(2);
    assert_eq!(conn.create_gpadl(&host, 1, &[&mem]), Err(Error::WrongState));
}

/// Ring memory shared with `host`: outbound and inbound regions of `pages` pages each.
fn shared_rings<'a>(host: &VmbusHost<'a>, out: &'a FakeSharedMemory, inb: &'a FakeSharedMemory) {
    host.share(out);
    host.share(inb);
}

/// Creates the ring GPADL for channel 1 and opens it; returns the GPADL handle.
fn open(
    host: &VmbusHost<'_>,
    conn: &mut Conn,
    out: &FakeSharedMemory,
    inb: &FakeSharedMemory,
) -> GpadlHandle {
    let handle = conn.create_gpadl(host, 1, &[out, inb]).unwrap();
    assert_eq!(
        events(host, conn),
        [Event::GpadlCreated { relid: 1, handle }]
    );
    let pages = (out.len() / PAGE_SIZE) as u32;
    conn.open_channel(
        host,
        1,
        OpenParams {
            ring_gpadl: handle,
            downstream_page_offset: pages,
            target_vp: 0,
            user_data: &[1, 2, 3],
        },
    )
    .unwrap();
    assert_eq!(events(host, conn), [Event::Opened { relid: 1 }]);
    handle
}

#[test]
fn opens_echoes_a_request_closes_tears_down_and_unloads() {
    let out = sim::ring_memory(4);
    let inb = sim::ring_memory(4);
    let host = VmbusHost::new(HostConfig::qemu());
    shared_rings(&host, &out, &inb);
    let mut conn = connected(&host);
    let handle = open(&host, &mut conn, &out, &inb);
    assert!(conn.is_open(1));
    assert!(host.is_open(1));
    let Some(GuestMessage::OpenChannel(open)) =
        host.posted()
            .iter()
            .find_map(|(_, b)| match GuestMessage::parse(b) {
                Ok(GuestMessage::OpenChannel(o)) => Some(GuestMessage::OpenChannel(o)),
                _ => None,
            })
    else {
        panic!("no open");
    };
    assert_eq!(open.ring_gpadl, handle.0);
    assert_eq!(open.downstream_page_offset, 4);
    assert_eq!(open.user_data[..4], [1, 2, 3, 0]);

    let connection_id = conn.offer(1).unwrap().connection_id;
    let mut channel = Channel::<_, 4>::new(&out, &inb, connection_id).unwrap();
    let id = channel
        .send_request(&host, &OutgoingPacket::in_band(b"ping"), 77)
        .unwrap()
        .unwrap();
    // The empty ring became non-empty: the host was signalled, and answered at once.
    assert_eq!(host.host_signals(connection_id), 1);
    assert_eq!(host.guest_signals(1), 1);
    assert_eq!(channel.outstanding(), 1);
    let mut buf = [0; 256];
    let mut got = Vec::new();
    let n = channel
        .poll(&host, &mut buf, |incoming| match incoming {
            Incoming::Completion { cookie, packet } => {
                got.push((cookie, packet.transaction_id(), packet.data()[..4].to_vec()))
            }
            other => panic!("{other:?}"),
        })
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(got, [(77, id, b"ping".to_vec())]);
    assert_eq!(channel.outstanding(), 0);

    // Closing keeps the GPADL until it is torn down; a GPADL in use cannot be.
    assert_eq!(
        conn.teardown_gpadl(&host, handle),
        Err(Error::GpadlInUse(handle.0))
    );
    conn.close_channel(&host, 1).unwrap();
    assert!(!conn.is_open(1));
    assert!(!host.is_open(1));
    assert_eq!(
        conn.close_channel(&host, 1),
        Err(Error::ChannelState { relid: 1 })
    );
    conn.teardown_gpadl(&host, handle).unwrap();
    assert_eq!(events(&host, &mut conn), [Event::GpadlTornDown { handle }]);
    assert!(!host.has_gpadl(handle.0));
    assert_eq!(
        conn.teardown_gpadl(&host, handle),
        Err(Error::UnknownGpadl(handle.0))
    );

    assert_eq!(conn.unload(&host), Ok(true));
    assert_eq!(events(&host, &mut conn), [Event::Unloaded]);
    assert_eq!(conn.version(), None);
    assert_eq!(conn.offers().count(), 0);
    assert!(host.errors().is_empty(), "{:?}", host.errors());
    // And connects again.
    conn.connect(&host).unwrap();
    assert_eq!(
        events(&host, &mut conn)[0],
        Event::Connected {
            version: Version::V4_0
        }
    );
}

#[test]
fn unload_needs_no_answer_before_3_0() {
    let host = VmbusHost::new(HostConfig {
        max_version: Version::V2_4,
        ..HostConfig::qemu()
    });
    let mut conn = connected(&host);
    assert_eq!(conn.version(), Some(Version::V2_4));
    let posted = host.posted().len();
    assert_eq!(conn.unload(&host), Ok(false));
    assert_eq!(conn.version(), None);
    assert_eq!(host.posted().len(), posted);
    assert_eq!(conn.unload(&host), Err(Error::WrongState));
}

#[test]
fn splits_gpadls_of_1_26_27_and_200_pages_and_the_host_reassembles_them() {
    for (pages, messages) in [(1, 1), (26, 1), (27, 2), (200, 8)] {
        let mem = FakeSharedMemory::new(pages * PAGE_SIZE);
        let host = VmbusHost::new(HostConfig::qemu());
        host.share(&mem);
        let mut conn = connected(&host);
        let before = host.posted().len();
        let handle = conn.create_gpadl(&host, 1, &[&mem]).unwrap();
        let sent = posted_types(&host)[before..].to_vec();
        assert_eq!(sent.len(), messages, "{pages} pages");
        assert_eq!(sent[0], (1, MessageType::GpadlHeader));
        assert!(sent[1..].iter().all(|&m| m == (1, MessageType::GpadlBody)));
        assert_eq!(
            events(&host, &mut conn),
            [Event::GpadlCreated { relid: 1, handle }]
        );
        assert!(host.has_gpadl(handle.0));
        assert!(host.errors().is_empty(), "{:?}", host.errors());
    }
}

#[test]
fn gpadl_handles_are_distinct_and_tracked_per_channel() {
    let a = FakeSharedMemory::new(PAGE_SIZE);
    let b = FakeSharedMemory::new(2 * PAGE_SIZE);
    let host = VmbusHost::new(HostConfig {
        offers: vec![sim::balloon_offer(1), sim::balloon_offer(2)],
        ..HostConfig::qemu()
    });
    host.share(&a);
    host.share(&b);
    let mut conn = connected(&host);
    let h1 = conn.create_gpadl(&host, 1, &[&a]).unwrap();
    let h2 = conn.create_gpadl(&host, 2, &[&b]).unwrap();
    assert_ne!(h1, h2);
    assert_ne!(h1.0, 0);
    assert_eq!(
        events(&host, &mut conn),
        [
            Event::GpadlCreated {
                relid: 1,
                handle: h1
            },
            Event::GpadlCreated {
                relid: 2,
                handle: h2
            }
        ]
    );
    // A duplicate GPADL_CREATED is no longer pending; one naming the wrong channel is refused.
    let created = |relid, gpadl| {
        crate::message::GpadlCreated {
            child_relid: relid,
            gpadl,
            status: 0,
        }
        .encode()
    };
    host.push_to_guest(created(1, h1.0).as_bytes());
    assert_eq!(pump(&host, &mut conn), [Err(Error::UnknownGpadl(h1.0))]);
    let h3 = conn.create_gpadl(&host, 1, &[&a]).unwrap();
    while host.next_message().is_some() {}
    host.push_to_guest(created(2, h3.0).as_bytes());
    assert_eq!(
        pump(&host, &mut conn),
        [Err(Error::GpadlMismatch {
            handle: h3.0,
            relid: 2
        })]
    );
    // Opening channel 2 on channel 1's GPADL is refused.
    assert_eq!(
        conn.open_channel(
            &host,
            2,
            OpenParams {
                ring_gpadl: h1,
                downstream_page_offset: 1,
                target_vp: 0,
                user_data: &[]
            }
        ),
        Err(Error::GpadlMismatch {
            handle: h1.0,
            relid: 2
        })
    );
}

#[test]
fn refuses_bad_gpadl_regions_and_ring_layouts() {
    let odd = FakeSharedMemory::new(PAGE_SIZE + 8);
    let unshared = FakeSharedMemory::new(PAGE_SIZE);
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(2);
    let host = VmbusHost::new(HostConfig::qemu());
    host.share(&out);
    host.share(&inb);
    let mut conn = connected(&host);
    assert_eq!(
        conn.create_gpadl(&host, 1, &[&out, &odd]),
        Err(Error::BadRegion { region: 1 })
    );
    assert_eq!(
        conn.create_gpadl(&host, 1, &[&out, &unshared]),
        Err(Error::BadRegion { region: 1 })
    );
    assert_eq!(
        conn.create_gpadl(&host, 1, &[]),
        Err(Error::BadRegion { region: 0 })
    );
    assert_eq!(
        conn.create_gpadl(&host, 9, &[&out]),
        Err(Error::UnknownRelid(9))
    );
    let handle = conn.create_gpadl(&host, 1, &[&out, &inb]).unwrap();
    events(&host, &mut conn);
    let params = |offset, user_data| OpenParams {
        ring_gpadl: handle,
        downstream_page_offset: offset,
        target_vp: 0,
        user_data,
    };
    for offset in [0, 1, 3, 4, 100] {
        assert_eq!(
            conn.open_channel(&host, 1, params(offset, &[])),
            Err(Error::BadRingLayout {
                downstream_page_offset: offset,
                pages: 4
            })
        );
    }
    assert_eq!(
        conn.open_channel(&host, 1, params(2, &[0; 121])),
        Err(Error::UserDataTooLong(121))
    );
    assert_eq!(conn.open_channel(&host, 1, params(2, &[0; 120])), Ok(()));
    // Opening twice, or creating a GPADL for a channel that is opening, is refused.
    assert_eq!(
        conn.open_channel(&host, 1, params(2, &[])),
        Err(Error::ChannelState { relid: 1 })
    );
    assert_eq!(
        conn.create_gpadl(&host, 1, &[&out]),
        Err(Error::ChannelState { relid: 1 })
    );
}

#[test]
fn reports_failed_gpadls_and_opens() {
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(2);
    let host = VmbusHost::new(HostConfig {
        gpadl_status: STATUS_UNSUCCESSFUL,
        ..HostConfig::qemu()
    });
    shared_rings(&host, &out, &inb);
    let mut conn = connected(&host);
    let handle = conn.create_gpadl(&host, 1, &[&out, &inb]).unwrap();
    assert_eq!(
        events(&host, &mut conn),
        [Event::GpadlFailed {
            relid: 1,
            handle,
            status: STATUS_UNSUCCESSFUL
        }]
    );
    assert_eq!(
        conn.teardown_gpadl(&host, handle),
        Err(Error::UnknownGpadl(handle.0))
    );

    let host = VmbusHost::new(HostConfig {
        open_status: STATUS_UNSUCCESSFUL,
        ..HostConfig::qemu()
    });
    shared_rings(&host, &out, &inb);
    let mut conn = connected(&host);
    let handle = conn.create_gpadl(&host, 1, &[&out, &inb]).unwrap();
    events(&host, &mut conn);
    conn.open_channel(
        &host,
        1,
        OpenParams {
            ring_gpadl: handle,
            downstream_page_offset: 2,
            target_vp: 0,
            user_data: &[],
        },
    )
    .unwrap();
    assert_eq!(
        events(&host, &mut conn),
        [Event::OpenFailed {
            relid: 1,
            status: STATUS_UNSUCCESSFUL
        }]
    );
    assert!(!conn.is_open(1));
    // The GPADL is free to tear down, and the channel to open again.
    conn.teardown_gpadl(&host, handle).unwrap();
}

#[test]
fn an_open_result_must_match_the_pending_open_id() {
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(2);
    let host = VmbusHost::new(HostConfig::qemu());
    shared_rings(&host, &out, &inb);
    let mut conn = connected(&host);
    let handle = conn.create_gpadl(&host, 1, &[&out, &inb]).unwrap();
    events(&host, &mut conn);
    conn.open_channel(
        &host,
        1,
        OpenParams {
            ring_gpadl: handle,
            downstream_page_offset: 2,
            target_vp: 0,
            user_data: &[],
        },
    )
    .unwrap();
    let real = host.next_message().unwrap();
    let mut stale = real.clone();
    stale[12] ^= 0xff;
    let result = conn.handle_message(&host, &stale);
    assert!(matches!(
        result,
        Err(Error::UnexpectedOpenResult { relid: 1, .. })
    ));
    assert_eq!(
        conn.handle_message(&host, &real),
        Ok(Some(Event::Opened { relid: 1 }))
    );
    // A second result for the same open is not pending any more.
    assert!(conn.handle_message(&host, &real).is_err());
}

#[test]
fn a_rescinded_closed_channel_is_released_at_once() {
    let mem = FakeSharedMemory::new(PAGE_SIZE);
    let host = VmbusHost::new(HostConfig::qemu());
    host.share(&mem);
    let mut conn = connected(&host);
    let handle = conn.create_gpadl(&host, 1, &[&mem]).unwrap();
    events(&host, &mut conn);
    host.push_to_guest(
        crate::message::Rescind { child_relid: 1 }
            .encode()
            .as_bytes(),
    );
    assert_eq!(events(&host, &mut conn), [Event::Rescinded { relid: 1 }]);
    assert_eq!(host.released(), [1]);
    assert_eq!(conn.offer(1), None);
    // Its GPADL went with it.
    assert_eq!(
        conn.teardown_gpadl(&host, handle),
        Err(Error::UnknownGpadl(handle.0))
    );
    // The relid may be offered again.
    host.push_to_guest(sim::balloon_offer(1).encode().as_bytes());
    assert_eq!(events(&host, &mut conn), [Event::Offer { relid: 1 }]);
}

#[test]
fn a_rescinded_open_channel_is_released_when_closed() {
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(2);
    let host = VmbusHost::new(HostConfig::qemu());
    shared_rings(&host, &out, &inb);
    let mut conn = connected(&host);
    let handle = open(&host, &mut conn, &out, &inb);
    let rescind = crate::message::Rescind { child_relid: 1 }.encode();
    host.push_to_guest(rescind.as_bytes());
    assert_eq!(events(&host, &mut conn), [Event::Rescinded { relid: 1 }]);
    assert!(!conn.is_open(1));
    assert!(host.released().is_empty());
    // A second rescind of the same channel is refused.
    host.push_to_guest(rescind.as_bytes());
    assert_eq!(
        pump(&host, &mut conn),
        [Err(Error::ChannelState { relid: 1 })]
    );
    // The rescinded channel cannot be used; closing it releases it.
    assert_eq!(
        conn.create_gpadl(&host, 1, &[&out]),
        Err(Error::ChannelState { relid: 1 })
    );
    assert_eq!(
        conn.teardown_gpadl(&host, handle),
        Err(Error::UnknownGpadl(handle.0))
    );
    let before = host.posted().len();
    conn.close_channel(&host, 1).unwrap();
    assert_eq!(
        posted_types(&host)[before..],
        [
            (1, MessageType::CloseChannel),
            (1, MessageType::RelidReleased)
        ]
    );
    assert_eq!(host.released(), [1]);
    assert_eq!(conn.close_channel(&host, 1), Err(Error::UnknownRelid(1)));
}

/// A host with channel 1 open in scripted mode, for ring-level tests through the sim.
fn scripted<'a>(out: &'a FakeSharedMemory, inb: &'a FakeSharedMemory) -> VmbusHost<'a> {
    let host = VmbusHost::new(HostConfig {
        mode: ChannelMode::Scripted,
        ..HostConfig::qemu()
    });
    shared_rings(&host, out, inb);
    let mut conn = connected(&host);
    open(&host, &mut conn, out, inb);
    host
}

#[test]
fn completions_for_ids_never_sent_or_sent_twice_are_rejected() {
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(2);
    let host = scripted(&out, &inb);
    let mut channel = Channel::<_, 4>::new(&out, &inb, 17).unwrap();
    let id = channel
        .send_request(&host, &OutgoingPacket::in_band(b"req"), 5)
        .unwrap()
        .unwrap();
    let sent = host.take_from_guest(1);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.transaction_id, id);
    assert_eq!(sent[0].0.flags & 1, 1);
    for tid in [id + 1, 0, id, id] {
        host.inject(1, &OutgoingPacket::completion(tid, b"ok"))
            .unwrap();
    }
    host.inject(1, &OutgoingPacket::in_band(b"event")).unwrap();
    let mut buf = [0; 128];
    let mut seen = Vec::new();
    channel
        .poll(&host, &mut buf, |incoming| {
            seen.push(match incoming {
                Incoming::Completion { cookie, .. } => ("completion", cookie),
                Incoming::RejectedCompletion(p) => ("rejected", p.transaction_id()),
                Incoming::Packet(p) => {
                    assert_eq!(p.packet_type(), Some(PacketType::DataInBand));
                    ("packet", 0)
                }
            })
        })
        .unwrap();
    assert_eq!(
        seen,
        [
            ("rejected", id + 1),
            ("rejected", 0),
            ("completion", 5),
            ("rejected", id),
            ("packet", 0)
        ]
    );
    assert_eq!(channel.outstanding(), 0);
}

#[test]
fn a_full_outbound_ring_waits_for_the_host_to_free_space() {
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(2);
    let host = scripted(&out, &inb);
    let mut channel = Channel::<_, 64>::new(&out, &inb, 17).unwrap();
    let data = [9u8; 200];
    let mut sent = 0;
    while channel
        .send(&host, &OutgoingPacket::in_band(&data))
        .unwrap()
    {
        sent += 1;
    }
    // One signal for the empty-to-non-empty transition, none for the rest.
    assert_eq!(host.host_signals(17), 1);
    assert_eq!(out.peer_read_u32(header::PENDING_SEND_SIZE), 224);
    // A request that does not fit leaves no id behind.
    assert_eq!(
        channel.send_request(&host, &OutgoingPacket::in_band(&data), 1),
        Ok(None)
    );
    assert_eq!(channel.outstanding(), 0);
    // The host drains and, seeing the pending size satisfied, signals the guest.
    assert_eq!(host.take_from_guest(1).len(), sent);
    assert_eq!(host.guest_signals(1), 1);
    assert!(
        channel
            .send(&host, &OutgoingPacket::in_band(&data))
            .unwrap()
    );
    assert_eq!(out.peer_read_u32(header::PENDING_SEND_SIZE), 0);
}

#[test]
fn the_host_is_not_signalled_while_it_masks_interrupts() {
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(2);
    let host = scripted(&out, &inb);
    let mut channel = Channel::<_, 4>::new(&out, &inb, 17).unwrap();
    out.peer_write_u32(header::INTERRUPT_MASK, 1);
    assert!(channel.send(&host, &OutgoingPacket::in_band(b"a")).unwrap());
    assert_eq!(host.host_signals(17), 0);
    out.peer_write_u32(header::INTERRUPT_MASK, 0);
    host.take_from_guest(1);
    assert!(channel.send(&host, &OutgoingPacket::in_band(b"b")).unwrap());
    assert_eq!(host.host_signals(17), 1);
}

#[test]
fn the_guest_masks_the_host_while_draining_and_is_signalled_only_when_idle() {
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(2);
    let host = scripted(&out, &inb);
    let mut channel = Channel::<_, 4>::new(&out, &inb, 17).unwrap();
    host.inject(1, &OutgoingPacket::in_band(b"1")).unwrap();
    host.inject(1, &OutgoingPacket::in_band(b"2")).unwrap();
    assert_eq!(host.guest_signals(1), 1);
    let mut buf = [0; 64];
    assert_eq!(channel.poll(&host, &mut buf, |_| {}), Ok(2));
    assert_eq!(inb.peer_read_u32(header::INTERRUPT_MASK), 0);
    host.inject(1, &OutgoingPacket::in_band(b"3")).unwrap();
    assert_eq!(host.guest_signals(1), 2);
}

#[test]
fn ring_traffic_wraps_around_many_times() {
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(2);
    let host = VmbusHost::new(HostConfig::qemu());
    shared_rings(&host, &out, &inb);
    let mut conn = connected(&host);
    open(&host, &mut conn, &out, &inb);
    let mut channel = Channel::<_, 8>::new(&out, &inb, 17).unwrap();
    let mut buf = [0; 256];
    for round in 0..200u32 {
        let data = round.to_le_bytes().repeat(10);
        let id = channel
            .send_request(&host, &OutgoingPacket::in_band(&data), u64::from(round))
            .unwrap()
            .unwrap();
        let mut answers = 0;
        channel
            .poll(&host, &mut buf, |incoming| {
                let Incoming::Completion { cookie, packet } = incoming else {
                    panic!("{incoming:?}");
                };
                assert_eq!((cookie, packet.transaction_id()), (u64::from(round), id));
                assert_eq!(packet.data()[..40], data[..]);
                answers += 1;
            })
            .unwrap();
        assert_eq!(answers, 1);
    }
    // 200 packets of 64 bytes went through each 4096-byte ring: three times round.
    assert_eq!(out.peer_read_u32(header::WRITE_INDEX), 200 * 64 % 4096);
    assert!(host.errors().is_empty());
}

#[test]
fn gpa_direct_packets_reach_the_host_with_their_ranges() {
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(2);
    let host = scripted(&out, &inb);
    let mut channel = Channel::<_, 4>::new(&out, &inb, 17).unwrap();
    let pfns = [0x500, 0x501];
    let ranges = [GpaRange {
        byte_count: 6000,
        byte_offset: 16,
        pfns: PfnList::Slice(&pfns),
    }];
    channel
        .send_request(&host, &OutgoingPacket::gpa_direct(&ranges, b"io"), 1)
        .unwrap()
        .unwrap();
    let got = host.take_from_guest(1);
    assert_eq!(got[0].0.packet_type, PacketType::DataUsingGpaDirect as u16);
    assert_eq!(got[0].0.offset8, 6);
}

#[test]
fn every_hostile_ring_is_an_error_never_a_panic() {
    for how in HostileRing::ALL {
        let out = sim::ring_memory(2);
        let inb = sim::ring_memory(2);
        let host = scripted(&out, &inb);
        let mut channel = Channel::<_, 4>::new(&out, &inb, 17).unwrap();
        host.corrupt(1, how);
        let mut buf = [0; 1024];
        let result = if how == HostileRing::ReadIndexPastEnd {
            channel
                .send(&host, &OutgoingPacket::in_band(b"x"))
                .map(|_| 0)
        } else {
            channel.poll(&host, &mut buf, |p| panic!("{how:?} delivered {p:?}"))
        };
        let Err(ChannelError::Ring(error)) = result else {
            panic!("{how:?}: {result:?}");
        };
        let expected = match how {
            HostileRing::WriteIndexPastEnd | HostileRing::WriteIndexMisaligned => {
                matches!(
                    error,
                    RingError::BadIndex {
                        which: Index::Write,
                        ..
                    }
                )
            }
            HostileRing::ReadIndexPastEnd => {
                matches!(
                    error,
                    RingError::BadIndex {
                        which: Index::Read,
                        ..
                    }
                )
            }
            HostileRing::Truncated => matches!(error, RingError::Truncated { .. }),
            HostileRing::LengthPastData | HostileRing::LengthPastRing => {
                matches!(error, RingError::PacketPastData { .. })
            }
            HostileRing::LengthBelowHeader
            | HostileRing::OffsetInsideDescriptor
            | HostileRing::OffsetPastPacket => matches!(error, RingError::BadPacket(_)),
        };
        assert!(expected, "{how:?}: {error:?}");
        // The interrupt mask is left clear, so a fixed ring would be signalled again.
        assert_eq!(inb.peer_read_u32(header::INTERRUPT_MASK), 0);
    }
}

#[test]
fn a_hostile_open_result_names_the_relid_it_claims() {
    // A host that answers an open for a channel that never asked is refused.
    let host = VmbusHost::new(HostConfig::qemu());
    let mut conn = connected(&host);
    host.push_to_guest(
        crate::message::OpenResult {
            child_relid: 1,
            open_id: 1,
            status: 0,
        }
        .encode()
        .as_bytes(),
    );
    assert_eq!(
        pump(&host, &mut conn),
        [Err(Error::UnexpectedOpenResult {
            relid: 1,
            open_id: 1
        })]
    );
    assert!(!conn.is_open(1));
}
