//! The xenstore client against an arbitrary server: whatever the response ring, its producer
//! index, the request ring's consumer index and the error field say, the client never panics,
//! touches only its own fields of the page, never consumes replies that were not published nor
//! overfills the request ring, and once broken stays broken and leaves the page alone.
//!
//! Input layout:
//!
//! ```text
//! 0..4    starting index of both rings (little-endian), so wrapping at 2^32 is reachable
//! then rounds, until the input runs out (at most 64):
//! 0       flags: bit 0     -> raw: the n bytes go in as they are (else framed: the next 2
//!                             bytes give a message type and req_id, and a header with those
//!                             and len = n goes in front)
//!                bit 1     -> the oldest unfinished operation is dropped
//!                bits 5-7  -> 7: rsp_prod is the next 4 bytes (else it advances past the
//!                                bytes written this round)
//!                             6: req_cons is the next 4 bytes (else the server consumed
//!                                every request)
//!                             5: the error field is the next 4 bytes
//! 1..3    n (little-endian u16, modulo 1025)
//! ...     the 4-byte field the flags asked for, the 2 framing bytes, then n bytes written to
//!         the response ring at rsp_prod (fewer if the input ends)
//! ```
//!
//! Framing by default, and one index manipulation at a time, let the fuzzer get past "no such
//! request" into replies that parse, watch events and transaction retries, with raw bytes and
//! hostile indices mixed in.
//!
//! Seven operations are in flight from the start, with request ids 1 upwards: read, write,
//! directory, get_perms, mkdir then rm, a watch taking three events then unwatching, and a
//! transaction (start, read, write, commit, retried on `EAGAIN`).
#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use libfuzzer_sys::fuzz_target;
use ringbolt_shmem::fake::{Event, FakeSharedMemory};
use ringbolt_xen_abi::io::xs_wire::{
    XENSTORE_RING_SIZE, XENSTORE_SERVER_FEATURE_ERROR, xenstore_domain_interface as xdi,
};
use ringbolt_xen_xenstore::{TxId, Xenstore, XsError};

type Op<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

const ROUNDS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((start, mut rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let start = u32::from_le_bytes(*start);
    let page = FakeSharedMemory::page();
    for field in [xdi::REQ_CONS, xdi::REQ_PROD, xdi::RSP_CONS, xdi::RSP_PROD] {
        page.peer_write_u32(field, start);
    }
    page.peer_write_u32(xdi::SERVER_FEATURES, XENSTORE_SERVER_FEATURE_ERROR);
    let xs = Xenstore::new(&page, || {}).expect("a whole, connected page");
    // Taking over reads our own indices back from the page; from here on it may not.
    page.take_events();
    let none = TxId::NONE;
    let mut ops: Vec<Op<'_>> = vec![
        Box::pin(async { checked(xs.read(none, "domid").await) }),
        Box::pin(async { checked(xs.write(none, "data/x", b"v").await) }),
        Box::pin(async { checked(xs.directory(none, "device").await) }),
        Box::pin(async { checked(xs.get_perms(none, "data").await) }),
        Box::pin(async {
            checked(xs.mkdir(none, "data/d").await);
            checked(xs.rm(none, "data/d").await);
        }),
        Box::pin(async {
            match xs.watch("device", "tok").await {
                Ok(mut watch) => {
                    for _ in 0..3 {
                        checked(watch.next_event().await);
                    }
                    checked(watch.unwatch().await);
                }
                Err(e) => checked::<()>(Err(e)),
            }
        }),
        Box::pin(async {
            let xs = &xs;
            checked(
                xs.transaction(|tx| async move {
                    let value = xs.read(tx, "a").await?;
                    xs.write(tx, "b", &value).await
                })
                .await,
            );
        }),
    ];
    poll_all(&mut ops);
    check_accesses(&page.take_events());

    let mut prod = start;
    for _ in 0..ROUNDS {
        let Some((&flags, tail)) = rest.split_first() else {
            break;
        };
        let Some((n, tail)) = tail.split_first_chunk::<2>() else {
            break;
        };
        rest = tail;
        let mut field = |wanted: bool| {
            let (value, tail) = rest.split_first_chunk::<4>().filter(|_| wanted)?;
            rest = tail;
            Some(u32::from_le_bytes(*value))
        };
        let explicit_prod = field(flags >> 5 == 7);
        let req_cons = field(flags >> 5 == 6).unwrap_or(page.peer_read_u32(xdi::REQ_PROD));
        let error = field(flags >> 5 == 5);
        let frame = if flags & 1 == 0 {
            rest.split_first_chunk::<2>().map(|(frame, tail)| {
                rest = tail;
                *frame
            })
        } else {
            None
        };
        if flags & 2 != 0 && !ops.is_empty() {
            drop(ops.remove(0));
        }
        let n = (usize::from(u16::from_le_bytes(*n)) % (XENSTORE_RING_SIZE + 1)).min(rest.len());
        let (payload, tail) = rest.split_at(n);
        rest = tail;
        let mut bytes = Vec::new();
        if let Some([ty, req_id]) = frame {
            for word in [ty.into(), req_id.into(), 0, n as u32] {
                bytes.extend_from_slice(&u32::to_le_bytes(word));
            }
        }
        bytes.extend_from_slice(payload);
        for (i, &byte) in bytes.iter().enumerate() {
            let idx = prod.wrapping_add(i as u32) as usize % XENSTORE_RING_SIZE;
            page.peer_write(xdi::RSP + idx, &[byte]);
        }
        prod = explicit_prod.unwrap_or(prod.wrapping_add(bytes.len() as u32));
        page.peer_write_u32(xdi::RSP_PROD, prod);
        page.peer_write_u32(xdi::REQ_CONS, req_cons);
        if let Some(error) = error {
            page.peer_write_u32(xdi::ERROR, error);
        }

        let broken_before = xs.broken();
        let rsp_cons_before = page.peer_read_u32(xdi::RSP_CONS);
        let req_prod_before = page.peer_read_u32(xdi::REQ_PROD);
        page.take_events();
        xs.process();
        poll_all(&mut ops);
        let events = page.take_events();
        check_accesses(&events);

        if let Some(why) = broken_before {
            // Broken is for good: the first cause stays, and the page is left alone.
            assert_eq!(xs.broken(), Some(why));
            assert!(
                events.is_empty(),
                "touched the page while broken: {events:?}"
            );
            continue;
        }
        // Only published replies are consumed.
        let rsp_cons = page.peer_read_u32(xdi::RSP_CONS);
        let consumed = rsp_cons.wrapping_sub(rsp_cons_before) as usize;
        assert!(consumed <= prod.wrapping_sub(rsp_cons_before) as usize);
        // Requests go in only where the server's consumer index left room.
        let req_prod = page.peer_read_u32(xdi::REQ_PROD);
        if req_prod != req_prod_before {
            let req_cons = page.peer_read_u32(xdi::REQ_CONS);
            assert!(req_prod.wrapping_sub(req_cons) as usize <= XENSTORE_RING_SIZE);
            assert!(req_prod.wrapping_sub(req_prod_before) as usize <= XENSTORE_RING_SIZE);
        }
    }

    // Dropping what is left (unwatch and abort on drop) must not upset anything either.
    let broken = xs.broken();
    drop(ops);
    xs.process();
    let events = page.take_events();
    check_accesses(&events);
    if broken.is_some() {
        assert_eq!(xs.broken(), broken);
        assert!(events.is_empty());
    }
    assert!(!format!("{xs:?}").is_empty());
});

/// An operation's result: errors must describe themselves.
fn checked<T>(result: Result<T, XsError>) {
    if let Err(e) = result {
        assert!(!e.to_string().is_empty());
    }
}

fn poll_all(ops: &mut Vec<Op<'_>>) {
    let mut cx = Context::from_waker(Waker::noop());
    ops.retain_mut(|op| op.as_mut().poll(&mut cx).is_pending());
}

/// The client writes only the request ring, `req_prod` and `rsp_cons`, and reads only the
/// response ring, `req_cons`, `rsp_prod`, the feature bits and the error field.
fn check_accesses(events: &[Event]) {
    let in_ring = |ring: usize, offset: usize, width: usize| {
        offset >= ring && offset + width <= ring + XENSTORE_RING_SIZE
    };
    for event in events {
        match *event {
            Event::Store { offset, width } => assert!(
                in_ring(xdi::REQ, offset, width)
                    || (width == 4 && [xdi::REQ_PROD, xdi::RSP_CONS].contains(&offset)),
                "{event:?}"
            ),
            Event::Load { offset, width } => assert!(
                in_ring(xdi::RSP, offset, width)
                    || (width == 4
                        && [
                            xdi::REQ_CONS,
                            xdi::RSP_PROD,
                            xdi::SERVER_FEATURES,
                            xdi::ERROR
                        ]
                        .contains(&offset)),
                "{event:?}"
            ),
            Event::Update { .. } => panic!("no locked updates on the store page: {event:?}"),
            Event::ReadBarrier | Event::WriteBarrier | Event::FullBarrier => {}
        }
    }
}
