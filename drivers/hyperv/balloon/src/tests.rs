//! The driver against the simulated host ([`sim::DmHost`]) over real VMBus rings, and the
//! protocol core on its own where a test needs message-level control.

extern crate std;

use std::vec::Vec;

use core::iter;
use core::ops::Range;
use core::time::Duration;

use ringbolt_shmem::fake::FakeSharedMemory;
use ringbolt_time::Instant;
use ringbolt_vmbus::Channel;
use ringbolt_vmbus::packet::OutgoingPacket;

use crate::message::{
    CapabilitiesResponse, GuestBody, GuestMessage, HostBody, HostMessage, MAX_RESPONSE_RANGES,
    MessageType, Ranges,
};
use crate::sim::{DmHost, FramePool, HostConfig, HostPhase, Hostile, RELID, Rings};
use crate::{
    Balloon, BalloonChannel, Error, Event, GUEST_CAPABILITIES, MemoryStatus, PageRange, PageSet,
    Pages, Phase, RING_PAGES, RING_SIZE, Stop, Version,
};

type Outcome = Result<Option<Event>, Error>;

/// The kernel's side: the open channel, the driver and the frame allocator.
struct Guest<'a> {
    channel: Channel<&'a FakeSharedMemory, 0>,
    driver: BalloonChannel,
    pool: FramePool,
}

impl Guest<'_> {
    /// Runs guest and host until neither has anything to say; returns the guest's outcomes.
    fn settle(&mut self, host: &DmHost<'_>) -> Vec<Outcome> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let read = self
                .driver
                .poll(&mut self.channel, host.vmbus(), &mut self.pool, |r| {
                    out.push(r)
                })
                .unwrap();
            if read == 0 && host.serve() == 0 {
                return out;
            }
        }
        panic!("guest and host never settle");
    }

    /// The outcomes of a settle that must all succeed, without the `None`s.
    fn events(&mut self, host: &DmHost<'_>) -> Vec<Event> {
        self.settle(host)
            .into_iter()
            .filter_map(|r| r.unwrap())
            .collect()
    }

    fn report(&mut self, host: &DmHost<'_>, at: Duration, status: &MemoryStatus) -> bool {
        let now = Instant::from_nanos(at.as_nanos() as u64);
        self.driver
            .status_report(&mut self.channel, host.vmbus(), now, status)
            .unwrap()
    }

    /// Host, allocator and driver agree on the frames the host holds.
    fn assert_consistent(&self, host: &DmHost<'_>) {
        assert_eq!(&host.held(), self.pool.taken());
        assert_eq!(self.driver.balloon().ballooned(), self.pool.taken());
        assert!(self.pool.errors().is_empty(), "{:?}", self.pool.errors());
        assert!(host.errors().is_empty(), "{:?}", host.errors());
    }
}

/// `count` frames from `start`, each its own run (every other frame), so that every take is
/// one page and no two taken pages merge.
fn striped(start: u64, count: u64) -> Vec<Range<u64>> {
    (0..count)
        .map(|i| start + 2 * i..start + 2 * i + 1)
        .collect()
}

/// A host and a guest whose driver has started negotiating.
fn open<'a>(config: HostConfig, rings: &'a Rings, pool: FramePool) -> (DmHost<'a>, Guest<'a>) {
    let host = DmHost::open(config, rings);
    assert!(host.errors().is_empty(), "{:?}", host.errors());
    let mut guest = Guest {
        channel: host.guest_channel(rings).unwrap(),
        driver: BalloonChannel::new(),
        pool,
    };
    guest
        .driver
        .start(&mut guest.channel, host.vmbus(), &mut guest.pool)
        .unwrap();
    (host, guest)
}

/// A host and a guest that have finished negotiating.
fn ready<'a>(config: HostConfig, rings: &'a Rings, pool: FramePool) -> (DmHost<'a>, Guest<'a>) {
    let (host, mut guest) = open(config, rings, pool);
    let events = guest.events(&host);
    assert!(
        matches!(events.last(), Some(Event::Ready { .. })),
        "{events:?}"
    );
    assert_eq!(host.phase(), HostPhase::Idle);
    (host, guest)
}

fn pool(frames: Range<u64>) -> FramePool {
    FramePool::new(iter::once(frames), 0, 64)
}

#[test]
fn opens_the_channel_on_linux_sized_rings() {
    assert_eq!(RING_SIZE, 20 * 1024);
    assert_eq!(RING_PAGES, 5);
    let rings = Rings::new();
    let host = DmHost::open(HostConfig::qemu(), &rings);
    assert!(host.errors().is_empty(), "{:?}", host.errors());
    assert!(host.vmbus().is_open(RELID));
}

#[test]
fn negotiates_2_0_at_once_with_qemu_and_reports_linux_capabilities() {
    let rings = Rings::new();
    let (host, mut guest) = open(HostConfig::qemu(), &rings, pool(0x100..0x200));
    assert_eq!(guest.driver.balloon().phase(), Phase::Negotiating);
    assert_eq!(
        guest.events(&host),
        [
            Event::Negotiated {
                version: crate::message::WIN10
            },
            Event::Ready {
                status_reports: false
            }
        ]
    );
    assert_eq!(host.attempts(), [(crate::message::WIN10, false)]);
    assert_eq!(host.capabilities(), Some(GUEST_CAPABILITIES));
    assert_eq!(guest.driver.balloon().phase(), Phase::Ready);
    assert_eq!(
        guest.driver.balloon().version(),
        Some(crate::message::WIN10)
    );
    // QEMU suppresses status reports unless told otherwise: none is sent.
    assert!(!guest.report(&host, Duration::from_secs(5), &MemoryStatus::default()));
    guest.settle(&host);
    assert!(host.status_reports().is_empty());
    guest.assert_consistent(&host);
}

#[test]
fn falls_back_like_linux_to_1_0_and_then_to_0_3_as_the_last_attempt() {
    let rings = Rings::new();
    let win8 = HostConfig {
        max_version: crate::message::WIN8,
        ..HostConfig::hyperv()
    };
    let (host, guest) = ready(win8, &rings, pool(0x100..0x200));
    assert_eq!(
        host.attempts(),
        [
            (crate::message::WIN10, false),
            (crate::message::WIN8, false)
        ]
    );
    assert_eq!(guest.driver.balloon().version(), Some(crate::message::WIN8));

    let rings = Rings::new();
    let win7 = HostConfig {
        max_version: crate::message::WIN7,
        ..HostConfig::hyperv()
    };
    let (host, guest) = ready(win7, &rings, pool(0x100..0x200));
    assert_eq!(
        host.attempts(),
        [
            (crate::message::WIN10, false),
            (crate::message::WIN8, false),
            (crate::message::WIN7, true)
        ]
    );
    assert_eq!(guest.driver.balloon().version(), Some(crate::message::WIN7));
    guest.assert_consistent(&host);
}

#[test]
fn stops_when_no_version_is_accepted_and_takes_no_request_after() {
    let rings = Rings::new();
    let future = HostConfig {
        min_version: Version::new(3, 0),
        max_version: Version::new(3, 0),
        ..HostConfig::qemu()
    };
    let (host, mut guest) = open(future, &rings, pool(0x100..0x200));
    assert_eq!(guest.events(&host), [Event::Stopped(Stop::NoCommonVersion)]);
    assert_eq!(host.attempts().len(), 3);
    assert_eq!(
        guest.driver.balloon().phase(),
        Phase::Stopped(Stop::NoCommonVersion)
    );
    host.send_raw(
        &HostMessage {
            trans_id: 1,
            body: HostBody::BalloonRequest { num_pages: 5 },
        }
        .encode(),
    );
    assert_eq!(
        guest.settle(&host),
        [Err(Error::Unexpected(MessageType::BalloonRequest))]
    );
    assert!(guest.pool.taken().is_empty());
}

#[test]
fn stops_when_the_host_refuses_the_capabilities() {
    let rings = Rings::new();
    let refusing = HostConfig {
        accept_capabilities: false,
        ..HostConfig::qemu()
    };
    let (host, mut guest) = open(refusing, &rings, pool(0x100..0x200));
    assert_eq!(
        guest.events(&host),
        [
            Event::Negotiated {
                version: crate::message::WIN10
            },
            Event::Stopped(Stop::CapabilitiesRejected)
        ]
    );
    assert_eq!(host.phase(), HostPhase::Refused);
    assert!(host.errors().is_empty(), "{:?}", host.errors());
}

#[test]
fn rejects_answers_for_another_transaction_and_takes_the_right_one() {
    let rings = Rings::new();
    let stale = HostConfig {
        stale_responses: true,
        ..HostConfig::qemu()
    };
    let (host, mut guest) = open(stale, &rings, pool(0x100..0x200));
    assert_eq!(
        guest.settle(&host),
        [
            Err(Error::WrongTransaction {
                msg_type: MessageType::VersionResponse,
                expected: 1,
                got: 0
            }),
            Ok(Some(Event::Negotiated {
                version: crate::message::WIN10
            })),
            Err(Error::WrongTransaction {
                msg_type: MessageType::CapabilitiesResponse,
                expected: 2,
                got: 1
            }),
            Ok(Some(Event::Ready {
                status_reports: false
            })),
        ]
    );
    assert!(host.errors().is_empty(), "{:?}", host.errors());
}

#[test]
fn balloons_with_real_ranges_and_the_host_holds_exactly_what_the_kernel_gave() {
    let rings = Rings::new();
    let (host, mut guest) = ready(HostConfig::qemu(), &rings, pool(0x1000..0x2000));
    host.balloon(1000);
    assert_eq!(
        guest.events(&host),
        [Event::BalloonRequested { pages: 1000 }]
    );
    assert_eq!(host.balloon_transactions(), [1000]);
    assert_eq!(host.phase(), HostPhase::Idle);
    assert_eq!(guest.pool.taken().pages(), 1000);
    assert_eq!(guest.pool.free().pages(), 4096 - 1000);
    guest.assert_consistent(&host);
    // And a second request takes different pages.
    host.balloon(500);
    guest.settle(&host);
    assert_eq!(host.balloon_transactions(), [1000, 500]);
    guest.assert_consistent(&host);
}

#[test]
fn splits_responses_at_510_ranges_a_message() {
    let rings = Rings::new();
    let frames = FramePool::new(striped(0x1000, 3000), 0, 1);
    let (host, mut guest) = ready(HostConfig::qemu(), &rings, frames);
    host.balloon(2000);
    guest.settle(&host);
    assert_eq!(
        host.balloon_messages(),
        [(510, true), (510, true), (510, true), (470, false)]
    );
    assert_eq!(MAX_RESPONSE_RANGES, 510);
    assert_eq!(host.balloon_transactions(), [2000]);
    guest.assert_consistent(&host);
}

#[test]
fn takes_pages_only_as_fast_as_the_ring_takes_messages() {
    let rings = Rings::new();
    let frames = FramePool::new(striped(0x1000, 60_000), 0, 1);
    let (host, mut guest) = ready(HostConfig::qemu(), &rings, frames);
    host.balloon(50_000);
    host.serve();
    guest
        .driver
        .poll(&mut guest.channel, host.vmbus(), &mut guest.pool, |_| {})
        .unwrap();
    // 16 KiB of ring holds three 4 KiB messages; a fourth is built and waits for room.
    assert_eq!(guest.pool.taken().pages(), 4 * 510);
    assert!(guest.driver.balloon().has_outgoing());
    guest.settle(&host);
    assert_eq!(host.balloon_transactions(), [50_000]);
    assert_eq!(host.balloon_messages().len(), 50_000usize.div_ceil(510));
    guest.assert_consistent(&host);
}

#[test]
fn balloons_what_the_kernel_can_spare_when_asked_for_more_than_exists() {
    let rings = Rings::new();
    let frames = FramePool::new(iter::once(0x1000..0x1000 + 1000), 100, 16);
    let (host, mut guest) = ready(HostConfig::qemu(), &rings, frames);
    host.balloon(5000);
    assert_eq!(
        guest.events(&host),
        [Event::BalloonRequested { pages: 5000 }]
    );
    assert_eq!(host.balloon_transactions(), [900]);
    assert_eq!(guest.pool.free().pages(), 100);
    assert_eq!(host.balloon_messages().last(), Some(&(57, false)));
    guest.assert_consistent(&host);
}

#[test]
fn a_kernel_that_runs_dry_at_a_message_boundary_ends_with_an_empty_response() {
    let rings = Rings::new();
    let frames = FramePool::new(striped(0x1000, 510), 0, 1);
    let (host, mut guest) = ready(HostConfig::qemu(), &rings, frames);
    host.balloon(1000);
    guest.settle(&host);
    assert_eq!(host.balloon_messages(), [(510, true), (0, false)]);
    assert_eq!(host.balloon_transactions(), [510]);
    // A request for nothing is one empty, final response.
    host.balloon(0);
    guest.settle(&host);
    assert_eq!(host.balloon_messages()[2..], [(0, false)]);
    assert_eq!(host.balloon_transactions(), [510, 0]);
    guest.assert_consistent(&host);
}

#[test]
fn unballoon_gives_the_kernel_back_exactly_the_named_pages() {
    for config in [HostConfig::qemu(), HostConfig::hyperv()] {
        let per_message = config.unballoon_ranges_per_message;
        let rings = Rings::new();
        let frames = FramePool::new(striped(0x1000, 3000), 0, 1);
        let (host, mut guest) = ready(config, &rings, frames);
        host.balloon(2000);
        guest.settle(&host);
        assert_eq!(host.unballoon(1500), 1500);
        let events = guest.events(&host);
        let messages = 1500usize.div_ceil(per_message);
        assert_eq!(events.len(), messages);
        let returned: u64 = events
            .iter()
            .map(|e| match e {
                Event::Unballooned { pages, .. } => *pages,
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(returned, 1500);
        assert_eq!(
            events.last(),
            Some(&Event::Unballooned {
                pages: (1500 - (messages - 1) * per_message) as u64,
                last: true
            })
        );
        assert_eq!(host.unballoon_responses(), 1);
        assert_eq!(guest.pool.taken().pages(), 500);
        assert_eq!(guest.pool.free().pages(), 2500);
        guest.assert_consistent(&host);
    }
}

#[test]
fn unballoon_of_merged_runs_returns_them_whole() {
    let rings = Rings::new();
    let (host, mut guest) = ready(HostConfig::hyperv(), &rings, pool(0x1000..0x2000));
    host.balloon(4096);
    guest.settle(&host);
    // The host holds one run of 4096 pages; it gives it back as one range.
    assert_eq!(host.held().runs().count(), 1);
    assert_eq!(host.unballoon(u64::MAX), 4096);
    assert_eq!(
        guest.events(&host),
        [Event::Unballooned {
            pages: 4096,
            last: true
        }]
    );
    assert!(guest.pool.taken().is_empty());
    guest.assert_consistent(&host);
}

#[test]
fn reports_status_once_a_second_with_the_held_pages_committed() {
    let rings = Rings::new();
    let (host, mut guest) = open(HostConfig::hyperv(), &rings, pool(0x1000..0x2000));
    let status = MemoryStatus {
        available: 1000,
        committed: 3000,
        page_file_size: 1,
        zero_free: 2,
        page_file_writes: 3,
        io_diff: 4,
    };
    // Not before the host has accepted the capabilities.
    assert!(!guest.report(&host, Duration::ZERO, &status));
    assert_eq!(
        guest.events(&host)[1],
        Event::Ready {
            status_reports: true
        }
    );
    host.balloon(100);
    guest.settle(&host);
    let sent: Vec<bool> = [1000, 1300, 2000, 3010, 3990]
        .into_iter()
        .map(|ms| guest.report(&host, Duration::from_millis(ms), &status))
        .collect();
    assert_eq!(sent, [true, false, true, true, true]);
    guest.settle(&host);
    let reports = host.status_reports();
    assert_eq!(reports.len(), 4);
    assert_eq!(
        reports[0],
        MemoryStatus {
            committed: 3100,
            ..status
        }
    );
    guest.assert_consistent(&host);
}

#[test]
fn refuses_hot_add_for_good_and_records_the_maximum_page_count() {
    let rings = Rings::new();
    let (host, mut guest) = ready(HostConfig::qemu(), &rings, pool(0x1000..0x2000));
    host.hot_add(PageRange::new(0x4_0000, 0x8000).unwrap());
    assert_eq!(
        guest.events(&host),
        [Event::HotAddRefused { pages: 0x8000 }]
    );
    assert_eq!(host.hot_add_responses(), [(0, 1)]);
    host.info_max_page_count(0x4_0000);
    assert_eq!(guest.events(&host), [Event::MaxPageCount(0x4_0000)]);
    assert_eq!(guest.driver.balloon().max_page_count(), Some(0x4_0000));
    guest.assert_consistent(&host);
}

#[test]
fn every_hostile_message_is_an_error_and_the_driver_keeps_serving() {
    let rings = Rings::new();
    let frames = FramePool::new(striped(0x1000, 100), 0, 1);
    let (host, mut guest) = ready(HostConfig::hyperv(), &rings, frames);
    host.balloon(64);
    guest.settle(&host);
    for hostile in Hostile::ALL {
        let answered = host.unballoon_responses();
        let expected = host.hostile(hostile);
        assert_eq!(guest.settle(&host), [Err(expected)], "{hostile:?}");
        assert_eq!(host.phase(), HostPhase::Idle, "{hostile:?}");
        let answers = host.unballoon_responses() - answered;
        assert_eq!(answers, usize::from(hostile.is_unballoon()), "{hostile:?}");
        assert_eq!(guest.pool.taken().pages(), 64, "{hostile:?}");
        guest.assert_consistent(&host);
    }
    // Still serving.
    host.balloon(10);
    guest.settle(&host);
    assert_eq!(host.unballoon(74), 74);
    guest.settle(&host);
    assert!(guest.pool.taken().is_empty());
    guest.assert_consistent(&host);
}

#[test]
fn packets_other_than_in_band_data_are_refused() {
    let rings = Rings::new();
    let (host, mut guest) = ready(HostConfig::qemu(), &rings, pool(0x1000..0x2000));
    let request = HostMessage {
        trans_id: 1,
        body: HostBody::BalloonRequest { num_pages: 5 },
    }
    .encode();
    host.vmbus()
        .inject(RELID, &OutgoingPacket::completion(1, &request))
        .unwrap();
    assert_eq!(
        guest.settle(&host),
        [Err(Error::NotInBand { packet_type: 0xb })]
    );
    assert!(guest.pool.taken().is_empty());
}

/// The protocol core, brought to `Ready` by hand with QEMU's answers.
fn ready_core(pages: &mut impl Pages) -> Balloon {
    let mut balloon = Balloon::new();
    balloon.start();
    let answers = [
        HostBody::VersionResponse { accepted: true },
        HostBody::CapabilitiesResponse(CapabilitiesResponse {
            accepted: true,
            hot_remove: true,
            suppress_pressure_reports: false,
        }),
    ];
    for (trans_id, body) in (1..).zip(answers) {
        drain(&mut balloon, pages);
        let message = HostMessage { trans_id, body }.encode();
        assert!(balloon.handle(&message, pages).unwrap().is_some());
    }
    assert_eq!(balloon.phase(), Phase::Ready);
    balloon
}

/// Everything the core has to send, as the host would read it.
fn drain(balloon: &mut Balloon, pages: &mut impl Pages) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(message) = balloon.next_message(pages) {
        out.push(message.to_vec());
        balloon.message_sent();
    }
    out
}

fn request(trans_id: u32, body: HostBody<'_>) -> Vec<u8> {
    HostMessage { trans_id, body }.encode()
}

#[test]
fn one_host_request_at_a_time() {
    let mut frames = FramePool::new(striped(0x1000, 100), 0, 1);
    let mut balloon = ready_core(&mut frames);
    let up = |n| request(9, HostBody::BalloonRequest { num_pages: n });
    assert_eq!(
        balloon.handle(&up(10), &mut frames),
        Ok(Some(Event::BalloonRequested { pages: 10 }))
    );
    // The answer is not out yet: every other request is refused, and takes nothing.
    let range = PageRange::new(0x1000, 1).unwrap();
    let hot_add = request(
        9,
        HostBody::HotAddRequest {
            range,
            region: None,
        },
    );
    let unballoon = |more_pages| {
        request(
            9,
            HostBody::UnballoonRequest {
                more_pages,
                ranges: Ranges::Slice(&[range]),
            },
        )
    };
    for (message, t) in [
        (up(5), MessageType::BalloonRequest),
        (hot_add.clone(), MessageType::HotAddRequest),
        (unballoon(false), MessageType::UnballoonRequest),
    ] {
        assert_eq!(balloon.handle(&message, &mut frames), Err(Error::Busy(t)));
    }
    assert!(frames.taken().is_empty());
    assert_eq!(drain(&mut balloon, &mut frames).len(), 1);
    assert_eq!(frames.taken().pages(), 10);
    // Between the messages of an unballoon transaction, only its next message is taken.
    assert!(matches!(
        balloon.handle(&unballoon(true), &mut frames),
        Ok(Some(Event::Unballooned {
            pages: 1,
            last: false
        }))
    ));
    assert!(drain(&mut balloon, &mut frames).is_empty());
    assert_eq!(
        balloon.handle(&up(1), &mut frames),
        Err(Error::Busy(MessageType::BalloonRequest))
    );
    assert_eq!(
        balloon.handle(&hot_add, &mut frames),
        Err(Error::Busy(MessageType::HotAddRequest))
    );
    let second = PageRange::new(0x1002, 1).unwrap();
    let last = request(
        9,
        HostBody::UnballoonRequest {
            more_pages: false,
            ranges: Ranges::Slice(&[second]),
        },
    );
    assert!(balloon.handle(&last, &mut frames).is_ok());
    let answers = drain(&mut balloon, &mut frames);
    assert_eq!(answers.len(), 1);
    assert_eq!(
        GuestMessage::parse(&answers[0]).unwrap().body,
        GuestBody::UnballoonResponse
    );
    assert_eq!(frames.taken().pages(), 8);
    assert!(frames.errors().is_empty());
}

#[test]
fn requests_before_the_capabilities_are_accepted_are_unexpected() {
    let mut frames = pool(0x1000..0x2000);
    let mut balloon = Balloon::new();
    assert_eq!(balloon.phase(), Phase::Idle);
    let up = request(1, HostBody::BalloonRequest { num_pages: 5 });
    assert_eq!(
        balloon.handle(&up, &mut frames),
        Err(Error::Unexpected(MessageType::BalloonRequest))
    );
    balloon.start();
    assert_eq!(
        balloon.handle(&up, &mut frames),
        Err(Error::Unexpected(MessageType::BalloonRequest))
    );
    // Version 2.0 is offered first, not as the last attempt.
    let sent = drain(&mut balloon, &mut frames);
    assert_eq!(
        GuestMessage::parse(&sent[0]).unwrap(),
        GuestMessage {
            trans_id: 1,
            body: GuestBody::VersionRequest {
                version: crate::message::WIN10,
                last_attempt: false
            }
        }
    );
    assert!(frames.taken().is_empty());
}

/// A page source that breaks its contract: it hands out the same frame every time.
struct Liar;

impl Pages for Liar {
    fn take(&mut self, _max: u64) -> Option<PageRange> {
        PageRange::new(0x5000, 1)
    }

    fn give_back(&mut self, range: PageRange) {
        panic!("{range} was never the driver's to give back");
    }
}

#[test]
fn a_kernel_that_hands_out_a_frame_twice_ends_the_response() {
    let mut balloon = ready_core(&mut Liar);
    let up = request(9, HostBody::BalloonRequest { num_pages: 10 });
    balloon.handle(&up, &mut Liar).unwrap();
    let sent = drain(&mut balloon, &mut Liar);
    assert_eq!(sent.len(), 1);
    let GuestBody::BalloonResponse { more_pages, ranges } =
        GuestMessage::parse(&sent[0]).unwrap().body
    else {
        panic!("{sent:?}");
    };
    assert!(!more_pages);
    assert_eq!(ranges, Ranges::Slice(&[PageRange::new(0x5000, 1).unwrap()]));
    assert_eq!(balloon.ballooned().pages(), 1);
}

#[test]
fn starting_again_renegotiates_and_keeps_the_held_pages() {
    let mut frames = pool(0x1000..0x2000);
    let mut balloon = ready_core(&mut frames);
    balloon
        .handle(
            &request(9, HostBody::BalloonRequest { num_pages: 20 }),
            &mut frames,
        )
        .unwrap();
    drain(&mut balloon, &mut frames);
    let held: PageSet = balloon.ballooned().clone();
    assert_eq!(held.pages(), 20);
    balloon.start();
    assert_eq!(balloon.phase(), Phase::Negotiating);
    assert_eq!(balloon.ballooned(), &held);
    let sent = drain(&mut balloon, &mut frames);
    assert!(matches!(
        GuestMessage::parse(&sent[0]).unwrap().body,
        GuestBody::VersionRequest {
            version: crate::message::WIN10,
            ..
        }
    ));
}

#[test]
fn status_reports_add_the_held_pages_and_never_overflow() {
    let mut frames = pool(0x1000..0x2000);
    let mut balloon = ready_core(&mut frames);
    balloon
        .handle(
            &request(9, HostBody::BalloonRequest { num_pages: 7 }),
            &mut frames,
        )
        .unwrap();
    drain(&mut balloon, &mut frames);
    let status = MemoryStatus {
        committed: u64::MAX - 3,
        ..MemoryStatus::default()
    };
    let report = balloon.status_report(Instant::ZERO, &status).unwrap();
    let GuestBody::StatusReport(sent) = GuestMessage::parse(&report).unwrap().body else {
        panic!();
    };
    assert_eq!(sent.committed, u64::MAX);
    assert!(
        balloon
            .status_report(Instant::from_millis(499), &status)
            .is_none()
    );
    assert!(
        balloon
            .status_report(Instant::from_millis(500), &status)
            .is_some()
    );
}
