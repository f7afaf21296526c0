extern crate std;

use std::vec::Vec;

use ringbolt_shmem::fake::{Event, FakeSharedMemory};

use super::*;
use crate::sim::{BackRing, capture_logs, take_logs};

/// blkif's slot size: 32 slots in a page.
const SLOT: usize = 112;

fn slot(i: RingIdx) -> usize {
    sring::RING + (i as usize % 32) * SLOT
}

/// A request whose bytes say which it is.
fn msg(n: u32) -> [u8; 16] {
    let mut m = [0xA5; 16];
    m[..4].copy_from_slice(&n.to_le_bytes());
    m
}

/// A front ring on `mem` with `n` requests pushed and published.
fn front_with(mem: &FakeSharedMemory, n: u32) -> FrontRing<&FakeSharedMemory> {
    let mut ring = FrontRing::new(mem, SLOT).unwrap();
    for i in 0..n {
        ring.push_request(&msg(i)).unwrap();
    }
    ring.publish().unwrap();
    ring
}

/// What a backend does: answers `n` requests (each response echoes the request's first 16
/// bytes) and publishes.
fn answer(back: &mut BackRing<&FakeSharedMemory>, n: u32) {
    for _ in 0..n {
        let mut req = [0; 16];
        assert!(back.take_request(&mut req).unwrap());
        back.push_response(&req).unwrap();
    }
    back.publish().unwrap();
}

fn take_all(ring: &mut FrontRing<&FakeSharedMemory>) -> Vec<u32> {
    let mut got = Vec::new();
    let mut rsp = [0; 16];
    loop {
        while ring.take_response(&mut rsp).unwrap() {
            got.push(u32::from_le_bytes(rsp[..4].try_into().unwrap()));
        }
        if !ring.final_check_for_responses().unwrap() {
            return got;
        }
    }
}

#[test]
fn initialises_the_shared_header() {
    let mem = FakeSharedMemory::page();
    mem.peer_write(0, &[0xFF; 64]);
    let ring = FrontRing::new(&mem, SLOT).unwrap();
    assert_eq!(mem.peer_read_u32(sring::REQ_PROD), 0);
    assert_eq!(mem.peer_read_u32(sring::RSP_PROD), 0);
    assert_eq!(mem.peer_read_u32(sring::REQ_EVENT), 1);
    assert_eq!(mem.peer_read_u32(sring::RSP_EVENT), 1);
    assert_eq!(mem.peer_read(sring::PVT, 48), [0; 48]);
    assert_eq!((ring.size(), ring.slot_size()), (32, SLOT));
    assert_eq!((ring.free_requests(), ring.outstanding()), (32, 0));
    assert_eq!(ring.broken(), None);
}

#[test]
fn sizes_the_ring_from_the_region() {
    assert_eq!(
        FrontRing::new(FakeSharedMemory::new(8192), SLOT)
            .unwrap()
            .size(),
        64
    );
    assert_eq!(
        FrontRing::new(FakeSharedMemory::page(), 16).unwrap().size(),
        128
    );
    assert_eq!(
        FrontRing::new(FakeSharedMemory::new(64 + SLOT - 1), SLOT).unwrap_err(),
        RingError::TooSmall {
            len: 64 + SLOT - 1,
            slot_size: SLOT
        }
    );
    assert!(matches!(
        FrontRing::new(FakeSharedMemory::page(), 0),
        Err(RingError::TooSmall { .. })
    ));
}

#[test]
fn stores_the_slot_before_the_index_and_reads_req_event_after_a_full_barrier() {
    let mem = FakeSharedMemory::page();
    let mut ring = FrontRing::new(&mem, SLOT).unwrap();
    mem.take_events();
    ring.push_request(&msg(7)).unwrap();
    // Not visible yet.
    assert_eq!(mem.peer_read_u32(sring::REQ_PROD), 0);
    assert!(ring.publish().unwrap());
    assert_eq!(
        mem.events(),
        [
            Event::Store {
                offset: slot(0),
                width: 16
            },
            Event::WriteBarrier,
            Event::Store {
                offset: sring::REQ_PROD,
                width: 4
            },
            Event::FullBarrier,
            Event::Load {
                offset: sring::REQ_EVENT,
                width: 4
            },
        ]
    );
    assert_eq!(mem.peer_read_u32(sring::REQ_PROD), 1);
    assert_eq!(mem.peer_read(slot(0), 16), msg(7));
    // Nothing new: no access, no notification.
    mem.take_events();
    assert!(!ring.publish().unwrap());
    assert_eq!(mem.events(), []);
}

#[test]
fn notifies_only_when_req_event_is_in_the_published_range() {
    let mem = FakeSharedMemory::page();
    let mut ring = FrontRing::new(&mem, SLOT).unwrap();
    // req_event = 1: the first request is the one the backend waits for.
    ring.push_request(&msg(0)).unwrap();
    assert!(ring.publish().unwrap());
    // The backend is busy and has not asked again: req_event stays 1.
    ring.push_request(&msg(1)).unwrap();
    ring.push_request(&msg(2)).unwrap();
    assert!(!ring.publish().unwrap());
    // It went idle after consuming 3: wants to hear of request index 3 (the 4th).
    mem.peer_write_u32(sring::REQ_EVENT, 4);
    ring.push_request(&msg(3)).unwrap();
    ring.push_request(&msg(4)).unwrap();
    assert!(ring.publish().unwrap());
    // Asks for an index far ahead: no notification for this batch.
    mem.peer_write_u32(sring::REQ_EVENT, 9);
    ring.push_request(&msg(5)).unwrap();
    assert!(!ring.publish().unwrap());
}

#[test]
fn accounts_free_slots_and_refuses_to_overwrite_unanswered_requests() {
    let mem = FakeSharedMemory::page();
    let mut ring = front_with(&mem, 32);
    assert_eq!((ring.free_requests(), ring.outstanding()), (0, 32));
    assert_eq!(ring.push_request(&msg(99)), Err(RingError::Full));
    // Slot 0 still holds request 0.
    assert_eq!(mem.peer_read(slot(0), 16), msg(0));
    let mut back = BackRing::attach(&mem, SLOT).unwrap();
    answer(&mut back, 3);
    // Answered but not consumed: still not free.
    assert_eq!(ring.free_requests(), 0);
    let mut rsp = [0; 16];
    assert!(ring.take_response(&mut rsp).unwrap());
    assert_eq!(ring.free_requests(), 1);
    ring.push_request(&msg(32)).unwrap();
    assert_eq!(mem.peer_read(slot(32), 16), msg(32));
    assert_eq!(ring.push_request(&msg(33)), Err(RingError::Full));
}

#[test]
fn rejects_messages_larger_than_a_slot() {
    let mem = FakeSharedMemory::page();
    let mut ring = FrontRing::new(&mem, SLOT).unwrap();
    let big = [0; SLOT + 1];
    assert_eq!(
        ring.push_request(&big),
        Err(RingError::TooLarge {
            len: SLOT + 1,
            slot_size: SLOT
        })
    );
    assert_eq!(ring.outstanding(), 0);
    let mut dst = [0; SLOT + 1];
    assert!(matches!(
        ring.take_response(&mut dst),
        Err(RingError::TooLarge { .. })
    ));
    // A full slot is fine.
    ring.push_request(&[1; SLOT]).unwrap();
}

#[test]
fn round_trips_many_times_around_the_ring() {
    let mem = FakeSharedMemory::page();
    let mut ring = FrontRing::new(&mem, SLOT).unwrap();
    let mut back = BackRing::attach(&mem, SLOT).unwrap();
    let mut next = 0;
    let mut seen = Vec::new();
    for batch in [1, 31, 32, 5, 17, 32, 32, 3] {
        for _ in 0..batch {
            ring.push_request(&msg(next)).unwrap();
            next += 1;
        }
        ring.publish().unwrap();
        answer(&mut back, batch);
        seen.extend(take_all(&mut ring));
        assert_eq!(ring.outstanding(), 0);
    }
    assert_eq!(seen, (0..next).collect::<Vec<_>>());
    assert_eq!(back.rsp_prod(), next);
}

#[test]
fn reads_rsp_prod_once_per_batch_and_each_response_once() {
    let mem = FakeSharedMemory::page();
    let mut ring = front_with(&mem, 3);
    let mut back = BackRing::attach(&mem, SLOT).unwrap();
    answer(&mut back, 3);
    mem.take_events();
    let mut rsp = [0; 16];
    for n in 0..3 {
        assert!(ring.take_response(&mut rsp).unwrap());
        assert_eq!(rsp, msg(n));
    }
    let events = mem.take_events();
    assert_eq!(
        events,
        [
            Event::Load {
                offset: sring::RSP_PROD,
                width: 4
            },
            Event::ReadBarrier,
            Event::Load {
                offset: slot(0),
                width: 16
            },
            Event::Load {
                offset: slot(1),
                width: 16
            },
            Event::Load {
                offset: slot(2),
                width: 16
            },
        ]
    );
    // Exhausted: the next call looks at rsp_prod again, finds nothing, reads no slot.
    assert!(!ring.take_response(&mut rsp).unwrap());
    assert_eq!(
        mem.take_events(),
        [
            Event::Load {
                offset: sring::RSP_PROD,
                width: 4
            },
            Event::ReadBarrier
        ]
    );
}

#[test]
fn uses_the_validated_rsp_prod_even_if_the_backend_moves_it_mid_batch() {
    let mem = FakeSharedMemory::page();
    let mut ring = front_with(&mem, 4);
    let mut back = BackRing::attach(&mem, SLOT).unwrap();
    answer(&mut back, 2);
    // As soon as we read a slot, the backend claims a huge number of responses.
    mem.set_read_hook(|load, bytes| {
        if load.offset >= sring::RING {
            bytes[sring::RSP_PROD..sring::RSP_PROD + 4].copy_from_slice(&1000u32.to_le_bytes());
        }
    });
    let mut rsp = [0; 16];
    assert!(ring.take_response(&mut rsp).unwrap());
    assert!(ring.take_response(&mut rsp).unwrap());
    mem.clear_read_hook();
    // The batch was the two validated responses; the scribble is caught on the next read.
    capture_logs();
    assert!(matches!(
        ring.take_response(&mut rsp),
        Err(RingError::Broken(Corruption {
            cons: 2,
            prod: 1000,
            limit: 2
        }))
    ));
    assert_eq!(take_logs().len(), 1);
}

#[test]
fn rsp_prod_past_the_ring_breaks_it_without_reading_a_slot() {
    capture_logs();
    let mem = FakeSharedMemory::page();
    let mut ring = front_with(&mem, 2);
    mem.peer_write_u32(sring::RSP_PROD, 32 + 5);
    mem.take_events();
    let mut rsp = [0; 16];
    let expected = Corruption {
        cons: 0,
        prod: 37,
        limit: 2,
    };
    assert_eq!(
        ring.take_response(&mut rsp),
        Err(RingError::Broken(expected))
    );
    assert_eq!(
        mem.take_events(),
        [Event::Load {
            offset: sring::RSP_PROD,
            width: 4
        }]
    );
    assert_eq!(rsp, [0; 16]);
    let logs = take_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, log::Level::Error);
    assert!(logs[0].message.contains("0x25"), "{}", logs[0].message);
    // Broken for good, with no further access to the page and no further log line.
    assert_eq!(ring.broken(), Some(expected));
    mem.peer_write_u32(sring::RSP_PROD, 0);
    assert_eq!(
        ring.take_response(&mut rsp),
        Err(RingError::Broken(expected))
    );
    assert_eq!(ring.push_request(&msg(1)), Err(RingError::Broken(expected)));
    assert_eq!(ring.publish(), Err(RingError::Broken(expected)));
    assert_eq!(
        ring.final_check_for_responses(),
        Err(RingError::Broken(expected))
    );
    assert_eq!(mem.take_events(), []);
    assert_eq!(take_logs(), []);
}

#[test]
fn more_responses_than_requests_outstanding_breaks_the_ring() {
    capture_logs();
    let mem = FakeSharedMemory::page();
    let mut ring = front_with(&mem, 3);
    // Pushed but unpublished requests cannot have responses either.
    ring.push_request(&msg(3)).unwrap();
    mem.peer_write_u32(sring::RSP_PROD, 4);
    let mut rsp = [0; 16];
    assert_eq!(
        ring.take_response(&mut rsp),
        Err(RingError::Broken(Corruption {
            cons: 0,
            prod: 4,
            limit: 3
        }))
    );
    assert_eq!(take_logs().len(), 1);
}

#[test]
fn rsp_prod_going_backwards_breaks_the_ring() {
    let mem = FakeSharedMemory::page();
    let mut ring = front_with(&mem, 2);
    let mut back = BackRing::attach(&mem, SLOT).unwrap();
    answer(&mut back, 2);
    assert_eq!(take_all(&mut ring), [0, 1]);
    back.force_rsp_prod(1).unwrap();
    capture_logs();
    let mut rsp = [0; 16];
    assert!(matches!(
        ring.take_response(&mut rsp),
        Err(RingError::Broken(Corruption {
            cons: 2,
            prod: 1,
            limit: 0
        }))
    ));
    assert_eq!(take_logs().len(), 1);
}

#[test]
fn final_check_arms_rsp_event_then_looks_again() {
    let mem = FakeSharedMemory::page();
    let mut ring = front_with(&mem, 2);
    let mut back = BackRing::attach(&mem, SLOT).unwrap();
    answer(&mut back, 1);
    assert_eq!(take_all(&mut ring), [0]);
    // Nothing waiting: rsp_event asks for the response after the one consumed.
    assert_eq!(mem.peer_read_u32(sring::RSP_EVENT), 2);
    mem.take_events();
    assert!(!ring.final_check_for_responses().unwrap());
    assert_eq!(
        mem.events(),
        [
            Event::Load {
                offset: sring::RSP_PROD,
                width: 4
            },
            Event::ReadBarrier,
            Event::Store {
                offset: sring::RSP_EVENT,
                width: 4
            },
            Event::FullBarrier,
            Event::Load {
                offset: sring::RSP_PROD,
                width: 4
            },
            Event::ReadBarrier,
        ]
    );
    // The backend responds between our first look and the store of rsp_event: the second
    // look catches it.
    let mut loads = 0;
    mem.set_read_hook(move |load, bytes| {
        if load.offset == sring::RSP_PROD {
            loads += 1;
            if loads == 1 {
                bytes[sring::RSP_PROD..sring::RSP_PROD + 4].copy_from_slice(&1u32.to_le_bytes());
            } else {
                bytes[sring::RSP_PROD..sring::RSP_PROD + 4].copy_from_slice(&2u32.to_le_bytes());
            }
        }
    });
    mem.peer_write(slot(1), &msg(1));
    assert!(ring.final_check_for_responses().unwrap());
    mem.clear_read_hook();
    let mut rsp = [0; 16];
    assert!(ring.take_response(&mut rsp).unwrap());
    assert_eq!(rsp, msg(1));
}

#[test]
fn back_ring_respects_rsp_event() {
    let mem = FakeSharedMemory::page();
    let mut ring = front_with(&mem, 3);
    let mut back = BackRing::attach(&mem, SLOT).unwrap();
    // rsp_event starts at 1: the first response is notified.
    let mut req = [0; 16];
    assert!(back.take_request(&mut req).unwrap());
    back.push_response(&req).unwrap();
    assert!(back.publish().unwrap());
    // We have not consumed it nor re-armed: no notification for the second.
    assert!(back.take_request(&mut req).unwrap());
    back.push_response(&req).unwrap();
    assert!(!back.publish().unwrap());
    assert_eq!(take_all(&mut ring), [0, 1]);
    // Re-armed by the final check: the third is notified.
    assert!(back.take_request(&mut req).unwrap());
    back.push_response(&req).unwrap();
    assert!(back.publish().unwrap());
    // The back ring will not answer requests it has not taken.
    assert_eq!(back.push_response(&req), Err(RingError::Full));
    assert!(!back.final_check_for_requests().unwrap());
    assert_eq!(mem.peer_read_u32(sring::REQ_EVENT), 4);
}

#[test]
fn back_ring_rejects_a_frontend_that_overfills_the_ring() {
    let mem = FakeSharedMemory::page();
    let _ring = front_with(&mem, 2);
    let mut back = BackRing::attach(&mem, SLOT).unwrap();
    mem.peer_write_u32(sring::REQ_PROD, 33);
    let mut req = [0; 16];
    assert!(matches!(
        back.take_request(&mut req),
        Err(RingError::Broken(Corruption { limit: 32, .. }))
    ));
}

#[test]
fn indices_wrap_at_two_to_the_32() {
    let mem = FakeSharedMemory::page();
    let mut ring = FrontRing::new(&mem, SLOT).unwrap();
    let mut back = BackRing::attach(&mem, SLOT).unwrap();
    // Both ends as if 2^32 - 2 requests had already gone round.
    let start = u32::MAX - 1;
    ring.requests.pvt = start;
    ring.requests.published = start;
    ring.responses.cons = start;
    ring.responses.prod = start;
    back.requests.cons = start;
    back.requests.prod = start;
    back.responses.pvt = start;
    back.responses.published = start;
    mem.peer_write_u32(sring::REQ_PROD, start);
    mem.peer_write_u32(sring::RSP_PROD, start);
    for n in 0..5 {
        ring.push_request(&msg(n)).unwrap();
    }
    ring.publish().unwrap();
    assert_eq!(mem.peer_read_u32(sring::REQ_PROD), 3);
    // Slot of index 2^32 - 2 is 30.
    assert_eq!(mem.peer_read(slot(30), 16), msg(0));
    assert_eq!(mem.peer_read(slot(0), 16), msg(2));
    answer(&mut back, 5);
    assert_eq!(take_all(&mut ring), [0, 1, 2, 3, 4]);
    assert_eq!((ring.outstanding(), ring.free_requests()), (0, 32));
}
