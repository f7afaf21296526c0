//! The client against `sim::Xenstore`, through a real (fake) store page: every operation,
//! both rings wrapping, many requests in flight, watches, transactions, and each hostile case.
//!
//! A tiny executor drives them: poll the future with a no-op waker, let the server run, let
//! the client process, repeat.

extern crate std;

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};
use std::sync::{Arc, Mutex};
use std::task::Wake;

use ringbolt_shmem::fake::{Event, FakeSharedMemory};
use ringbolt_xen_abi::io::xs_wire::{
    XENSTORE_PAYLOAD_MAX, XS_DIRECTORY, XS_READ, XSD_ERRORS, xenstore_domain_interface as xdi,
};

use crate::client::TRANSACTION_ATTEMPTS;
use crate::sim::{self, BadReply, Misbehaviour};
use crate::wire::Header;
use crate::{Broken, Malformed, Permission, TxId, WatchEvent, Xenstore, XsError};

type Client<'p> = Xenstore<&'p FakeSharedMemory, Box<dyn Fn()>>;

const NONE: TxId = TxId::NONE;

/// A client on `page` (whose server must already exist) and its notification count.
fn client(page: &FakeSharedMemory) -> (Client<'_>, Rc<Cell<usize>>) {
    let count = Rc::new(Cell::new(0));
    let seen = count.clone();
    let notify: Box<dyn Fn()> = Box::new(move || seen.set(seen.get() + 1));
    (Xenstore::new(page, notify).unwrap(), count)
}

/// Polls `fut` to completion, running the server and the client between polls.
fn block_on<T>(sim: &mut sim::Xenstore<'_>, xs: &Client<'_>, fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10_000 {
        if let Poll::Ready(value) = fut.as_mut().poll(&mut cx) {
            return value;
        }
        sim.run();
        xs.process();
    }
    panic!("future stalled");
}

fn poll<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// Runs the server and the client until neither has anything left to move.
fn settle(sim: &mut sim::Xenstore<'_>, xs: &Client<'_>) {
    for _ in 0..1000 {
        xs.process();
        if !sim.run() {
            xs.process();
            return;
        }
    }
    panic!("never settled");
}

// Log capture: each test runs on its own thread, so a thread-local buffer is per test.
std::thread_local! {
    static RECORDS: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        RECORDS.with(|r| {
            r.borrow_mut()
                .push((record.level(), format!("{}", record.args())))
        });
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// The records logged on this thread at `level` or worse since the last call.
fn logged(level: log::Level) -> Vec<String> {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
    RECORDS.with(|r| {
        r.borrow_mut()
            .drain(..)
            .filter(|(l, _)| *l <= level)
            .map(|(_, m)| m)
            .collect()
    })
}

fn assert_logged(level: log::Level, needle: &str) {
    let records = logged(level);
    assert!(
        records.iter().any(|m| m.contains(needle)),
        "no {level} record containing {needle:?} in {records:?}"
    );
}

#[test]
fn reads_writes_and_lists() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    block_on(&mut sim, x, x.write(NONE, "data/x", b"1")).unwrap();
    block_on(&mut sim, x, x.write(NONE, "data/y", b"")).unwrap();
    assert_eq!(sim.read("/local/domain/1/data/x"), Some(&b"1"[..]));
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "data/x")),
        Ok(b"1".to_vec())
    );
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "/local/domain/1/domid")),
        Ok(b"1".to_vec())
    );
    assert_eq!(block_on(&mut sim, x, x.read(NONE, "data/y")), Ok(vec![]));
    assert_eq!(
        block_on(&mut sim, x, x.directory(NONE, "data")),
        Ok(vec!["x".into(), "y".into()])
    );
    assert_eq!(
        block_on(&mut sim, x, x.directory(NONE, "data/x")),
        Ok(vec![])
    );
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "data/missing")),
        Err(XsError::NoEnt)
    );
    assert_eq!(
        block_on(&mut sim, x, x.directory(NONE, "nowhere")),
        Err(XsError::NoEnt)
    );
    // Values are bytes, not text.
    block_on(&mut sim, x, x.write(NONE, "data/bin", b"\0\xff\0")).unwrap();
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "data/bin")),
        Ok(b"\0\xff\0".to_vec())
    );
}

#[test]
fn mkdir_and_recursive_rm() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    block_on(&mut sim, x, x.mkdir(NONE, "a/b/c")).unwrap();
    assert_eq!(sim.read("a/b/c"), Some(&b""[..]));
    block_on(&mut sim, x, x.write(NONE, "a/b", b"kept")).unwrap();
    // mkdir leaves an existing node's value alone.
    block_on(&mut sim, x, x.mkdir(NONE, "a/b")).unwrap();
    assert_eq!(sim.read("a/b"), Some(&b"kept"[..]));
    assert_eq!(
        block_on(&mut sim, x, x.directory(NONE, "a")),
        Ok(vec!["b".into()])
    );
    block_on(&mut sim, x, x.rm(NONE, "a")).unwrap();
    assert_eq!(sim.read("a/b/c"), None);
    assert_eq!(sim.read("a"), None);
    // Removing what is not there is fine, if the parent is.
    block_on(&mut sim, x, x.rm(NONE, "gone")).unwrap();
    assert_eq!(
        block_on(&mut sim, x, x.rm(NONE, "gone/child")),
        Err(XsError::NoEnt)
    );
}

#[test]
fn gets_permissions() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    let p = |domid, read, write| Permission { domid, read, write };
    assert_eq!(
        block_on(&mut sim, x, x.get_perms(NONE, "/local/domain/1")),
        Ok(vec![p(0, false, false), p(1, true, false)])
    );
    // A node we create is ours, with our parent's other entries.
    block_on(&mut sim, x, x.write(NONE, "mine", b"")).unwrap();
    assert_eq!(
        block_on(&mut sim, x, x.get_perms(NONE, "mine")),
        Ok(vec![p(1, false, false), p(1, true, false)])
    );
    assert_eq!(
        block_on(&mut sim, x, x.get_perms(NONE, "nope")),
        Err(XsError::NoEnt)
    );
}

#[test]
fn refuses_bad_arguments_locally_and_remotely() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, notified) = client(&page);
    let x = &xs;
    // A NUL would split the field on the server's side: refused before sending.
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "a\0b")),
        Err(XsError::Inval)
    );
    assert_eq!(
        block_on(&mut sim, x, x.watch("a", "t\0")).unwrap_err(),
        XsError::Inval
    );
    // Over the payload limit, xenstored would drop the connection: refused before sending.
    let path = "data/big";
    let too_big = vec![b'v'; XENSTORE_PAYLOAD_MAX - path.len()];
    assert_eq!(
        block_on(&mut sim, x, x.write(NONE, path, &too_big)),
        Err(XsError::TooBig)
    );
    assert_eq!(sim.requests(), 0);
    assert_eq!(notified.get(), 0);
    // Malformed paths are the server's to refuse.
    for bad in ["", "a//b", "a/", "a b", "/x/"] {
        let result = block_on(&mut sim, x, x.write(NONE, bad, b"v"));
        assert_eq!(result, Err(XsError::Inval), "{bad:?}");
    }
}

#[test]
fn requests_and_replies_stream_through_the_ring_at_the_payload_limit() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    let path = "data/big";
    // path, NUL, value: exactly XENSTORE_PAYLOAD_MAX, four trips round the 1 KiB ring.
    let value: Vec<u8> = (0..XENSTORE_PAYLOAD_MAX - path.len() - 1)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    block_on(&mut sim, x, x.write(NONE, path, &value)).unwrap();
    assert_eq!(sim.read(path), Some(value.as_slice()));
    assert_eq!(block_on(&mut sim, x, x.read(NONE, path)), Ok(value.clone()));
    // And again in 7-byte pieces: headers split mid-field, both ways.
    sim.set_chunk(7);
    block_on(&mut sim, x, x.write(NONE, "data/again", &value[..3000])).unwrap();
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "data/again")),
        Ok(value[..3000].to_vec())
    );
    assert_eq!(block_on(&mut sim, x, x.read(NONE, path)), Ok(value.clone()));
}

#[test]
fn both_rings_wrap_around_the_ring_end_and_the_u32_indices() {
    for start in [1000, u32::MAX - 20] {
        let page = FakeSharedMemory::page();
        let mut sim = sim::Xenstore::with_indices(&page, start, start.wrapping_add(7));
        let (xs, _) = client(&page);
        let x = &xs;
        for i in 0..40u32 {
            let path = format!("data/n{i}");
            let value = format!("value {i}").repeat(i as usize + 1);
            block_on(&mut sim, x, x.write(NONE, &path, value.as_bytes())).unwrap();
            assert_eq!(
                block_on(&mut sim, x, x.read(NONE, &path)),
                Ok(value.into_bytes())
            );
        }
        // Both indices went several times round the ring (and past 2^32 for the second
        // start).
        let req_prod = page.peer_read_u32(xdi::REQ_PROD);
        let rsp_cons = page.peer_read_u32(xdi::RSP_CONS);
        assert!(req_prod.wrapping_sub(start) > 4096);
        assert!(rsp_cons.wrapping_sub(start) > 4096);
        if start > u32::MAX / 2 {
            assert!(req_prod < start && rsp_cons < start);
        }
        assert_eq!(page.peer_read_u32(xdi::REQ_CONS), req_prod);
        assert_eq!(page.peer_read_u32(xdi::RSP_PROD), rsp_cons);
    }
}

#[test]
fn a_stalled_server_leaves_the_rest_of_a_request_queued() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, notified) = client(&page);
    sim.set_chunk(0);
    let value = vec![b'z'; 3000];
    let mut write = pin!(xs.write(NONE, "data/z", &value));
    let mut read = pin!(xs.read(NONE, "domid"));
    assert!(poll(write.as_mut()).is_pending());
    assert!(poll(read.as_mut()).is_pending());
    sim.run();
    xs.process();
    // One ring's worth went out, published and notified; the rest waits in the client.
    assert_eq!(page.peer_read_u32(xdi::REQ_PROD), 1024);
    assert_eq!(page.peer_read_u32(xdi::REQ_CONS), 0);
    assert_eq!(notified.get(), 1);
    sim.set_chunk(usize::MAX);
    settle(&mut sim, &xs);
    assert_eq!(poll(write.as_mut()), Poll::Ready(Ok(())));
    assert_eq!(poll(read.as_mut()), Poll::Ready(Ok(b"1".to_vec())));
    assert_eq!(sim.read("data/z"), Some(value.as_slice()));
}

#[test]
fn notifies_after_publishing_requests_and_after_consuming_replies() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, notified) = client(&page);
    xs.process();
    assert_eq!(notified.get(), 0, "nothing moved, nothing to say");
    let mut read = pin!(xs.read(NONE, "domid"));
    assert!(poll(read.as_mut()).is_pending());
    assert_eq!(notified.get(), 1, "request published");
    sim.run();
    page.take_events();
    xs.process();
    assert_eq!(notified.get(), 2, "reply consumed");
    // The reply was copied out after reading the producer index, the space handed back after.
    let events = page.take_events();
    let rsp_ring = xdi::RSP..xdi::REQ_CONS;
    let first_copy = events
        .iter()
        .position(|e| matches!(e, Event::Load { offset, .. } if rsp_ring.contains(offset)))
        .unwrap();
    assert_eq!(events[first_copy - 1], Event::ReadBarrier);
    let publish = events
        .iter()
        .position(|e| {
            *e == Event::Store {
                offset: xdi::RSP_CONS,
                width: 4,
            }
        })
        .unwrap();
    assert!(publish > first_copy);
    assert_eq!(events[publish - 1], Event::FullBarrier);
    assert_eq!(poll(read.as_mut()), Poll::Ready(Ok(b"1".to_vec())));
}

/// A waker that records its index when woken.
struct Recorder {
    index: usize,
    order: Arc<Mutex<Vec<usize>>>,
}

impl Wake for Recorder {
    fn wake(self: Arc<Self>) {
        self.order.lock().unwrap().push(self.index);
    }
}

#[test]
fn many_requests_in_flight_complete_out_of_order() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    for i in 0..20 {
        sim.write(&format!("data/k{i}"), format!("v{i}").as_bytes());
    }
    settle(&mut sim, &xs);
    sim.set_reversed(true);
    let paths: Vec<String> = (0..20).map(|i| format!("data/k{i}")).collect();
    type Read<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, XsError>> + 'a>>;
    let mut reads: Vec<Read<'_>> = paths
        .iter()
        .map(|p| Box::pin(xs.read(NONE, p)) as _)
        .collect();
    let order = Arc::new(Mutex::new(Vec::new()));
    let wakers: Vec<Waker> = (0..20)
        .map(|index| {
            Waker::from(Arc::new(Recorder {
                index,
                order: order.clone(),
            }))
        })
        .collect();
    for (read, waker) in reads.iter_mut().zip(&wakers) {
        assert!(
            read.as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
    }
    // All twenty went out together; the server answers them last first.
    sim.run();
    xs.process();
    assert_eq!(*order.lock().unwrap(), (0..20).rev().collect::<Vec<_>>());
    for (i, read) in reads.iter_mut().enumerate() {
        assert_eq!(
            poll(read.as_mut()),
            Poll::Ready(Ok(format!("v{i}").into_bytes()))
        );
    }
}

#[test]
fn a_dropped_operation_abandons_only_its_reply() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    logged(log::Level::Trace);
    {
        let mut write = pin!(xs.write(NONE, "data/w", b"done anyway"));
        assert!(poll(write.as_mut()).is_pending());
    }
    settle(&mut sim, &xs);
    // The server still carried it out; the reply was dropped quietly.
    assert_eq!(sim.read("data/w"), Some(&b"done anyway"[..]));
    assert_eq!(logged(log::Level::Warn), Vec::<String>::new());
    assert_eq!(
        block_on(&mut sim, &xs, xs.read(NONE, "data/w")),
        Ok(b"done anyway".to_vec())
    );
    assert!(format!("{xs:?}").contains("in_flight: 0"));
}

fn event(path: &str) -> Result<WatchEvent, XsError> {
    Ok(WatchEvent { path: path.into() })
}

#[test]
fn a_watch_fires_once_at_once_then_on_changes_at_or_under_its_path() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    let mut watch = block_on(&mut sim, x, x.watch("device", "dev")).unwrap();
    assert_eq!((watch.path(), watch.token()), ("device", "dev"));
    assert_eq!(block_on(&mut sim, x, watch.next_event()), event("device"));
    // The toolstack adds a disk; the event path is relative, like the watch.
    sim.write("/local/domain/1/device/vbd/768/state", b"1");
    assert_eq!(
        block_on(&mut sim, x, watch.next_event()),
        event("device/vbd/768/state")
    );
    // Our own writes fire it too; writes elsewhere do not.
    block_on(&mut sim, x, x.write(NONE, "data/elsewhere", b"x")).unwrap();
    block_on(&mut sim, x, x.write(NONE, "device/vbd/768/ring-ref", b"8")).unwrap();
    assert_eq!(
        block_on(&mut sim, x, watch.next_event()),
        event("device/vbd/768/ring-ref")
    );
    // Removing a parent of the watched path reports the watched path.
    sim.rm("/local/domain/1");
    assert_eq!(block_on(&mut sim, x, watch.next_event()), event("device"));
    let mut next = pin!(watch.next_event());
    settle(&mut sim, x);
    assert!(poll(next.as_mut()).is_pending());
}

#[test]
fn absolute_watches_see_absolute_paths_and_queue_events() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    let mut backend = block_on(&mut sim, x, x.watch("/local/domain/0/backend", "be")).unwrap();
    let mut other = block_on(&mut sim, x, x.watch("control", "ctl")).unwrap();
    for i in 0..5 {
        sim.write(&format!("/local/domain/0/backend/vbd/1/{i}"), b"x");
    }
    sim.write("control/shutdown", b"poweroff");
    settle(&mut sim, x);
    assert_eq!(
        block_on(&mut sim, x, backend.next_event()),
        event("/local/domain/0/backend")
    );
    for i in 0..5 {
        assert_eq!(
            block_on(&mut sim, x, backend.next_event()),
            event(&format!("/local/domain/0/backend/vbd/1/{i}"))
        );
    }
    assert_eq!(block_on(&mut sim, x, other.next_event()), event("control"));
    assert_eq!(
        block_on(&mut sim, x, other.next_event()),
        event("control/shutdown")
    );
    assert!(format!("{backend:?}").contains("be"));
}

#[test]
fn unwatching_and_dropping_a_watch_both_remove_it_from_the_server() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    logged(log::Level::Trace);
    let watch = block_on(&mut sim, x, x.watch("data", "a")).unwrap();
    let dropped = block_on(&mut sim, x, x.watch("data", "b")).unwrap();
    assert_eq!(sim.watches(), 2);
    // A token is this client's name for one watch.
    assert_eq!(
        block_on(&mut sim, x, x.watch("other", "a")).unwrap_err(),
        XsError::Exist
    );
    block_on(&mut sim, x, watch.unwatch()).unwrap();
    assert_eq!(sim.watches(), 1);
    drop(dropped);
    settle(&mut sim, x);
    assert_eq!(sim.watches(), 0);
    // Events for the dropped watch that were already on their way are dropped quietly, and
    // both tokens are free again.
    sim.write("data/x", b"1");
    settle(&mut sim, x);
    assert_eq!(logged(log::Level::Warn), Vec::<String>::new());
    let mut again = block_on(&mut sim, x, x.watch("data", "a")).unwrap();
    assert_eq!(block_on(&mut sim, x, again.next_event()), event("data"));
}

#[test]
fn a_watch_the_server_refuses_leaves_nothing_behind() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    // xenstored refuses a malformed path: it holds no watch, and the token stays free.
    assert_eq!(
        block_on(&mut sim, x, x.watch("bad path", "t")).unwrap_err(),
        XsError::Inval
    );
    let _watch = block_on(&mut sim, x, x.watch("data2", "t")).unwrap();
    // A malformed acknowledgement might hide a registration: that one is unwatched.
    sim.bad_reply(BadReply::Payload(b"??\0".to_vec()));
    assert_eq!(
        block_on(&mut sim, x, x.watch("data3", "u")).unwrap_err(),
        XsError::Malformed(Malformed::NotOk)
    );
    settle(&mut sim, x);
    assert_eq!(sim.watches(), 1, "data2 only: data3 was unwatched");
}

#[test]
fn a_transaction_applies_atomically_at_commit() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    let mut watch = block_on(&mut sim, x, x.watch("device", "d")).unwrap();
    block_on(&mut sim, x, watch.next_event()).unwrap();
    let tx = block_on(&mut sim, x, x.transaction_start()).unwrap();
    assert_ne!(tx, TxId::NONE);
    block_on(&mut sim, x, x.write(tx, "device/vif/0/state", b"3")).unwrap();
    block_on(&mut sim, x, x.mkdir(tx, "device/vif/0/queue")).unwrap();
    assert_eq!(
        block_on(&mut sim, x, x.read(tx, "device/vif/0/state")),
        Ok(b"3".to_vec())
    );
    // Not visible outside, and no event, before the commit.
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "device/vif/0/state")),
        Err(XsError::NoEnt)
    );
    let mut next = pin!(watch.next_event());
    assert!(poll(next.as_mut()).is_pending());
    block_on(&mut sim, x, x.transaction_end(tx, true)).unwrap();
    assert_eq!(sim.read("device/vif/0/state"), Some(&b"3"[..]));
    assert_eq!(
        block_on(&mut sim, x, next.as_mut()),
        event("device/vif/0/state")
    );
    assert_eq!(sim.transactions(), 0);
    // The id is gone.
    assert_eq!(
        block_on(&mut sim, x, x.read(tx, "device")),
        Err(XsError::NoEnt)
    );
}

#[test]
fn an_aborted_transaction_leaves_no_trace_and_a_raced_commit_fails_with_eagain() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    let tx = block_on(&mut sim, x, x.transaction_start()).unwrap();
    block_on(&mut sim, x, x.rm(tx, "name")).unwrap();
    block_on(&mut sim, x, x.transaction_end(tx, false)).unwrap();
    assert_eq!(sim.read("name"), Some(&b"guest"[..]));

    let tx = block_on(&mut sim, x, x.transaction_start()).unwrap();
    block_on(&mut sim, x, x.write(tx, "data/a", b"in tx")).unwrap();
    sim.write("data/b", b"someone else");
    assert_eq!(
        block_on(&mut sim, x, x.transaction_end(tx, true)),
        Err(XsError::Again)
    );
    assert_eq!(sim.read("data/a"), None);
    assert_eq!(sim.transactions(), 0);
}

#[test]
fn the_transaction_helper_retries_conflicts() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    let attempts = Cell::new(0);
    let result = block_on(
        &mut sim,
        x,
        x.transaction(|tx| {
            let attempts = &attempts;
            async move {
                attempts.set(attempts.get() + 1);
                let name = x.read(tx, "name").await?;
                x.write(tx, "data/copy", &name).await?;
                if attempts.get() == 1 {
                    // Another writer gets in first.
                    x.write(NONE, "data/race", b"1").await?;
                }
                Ok(name.len())
            }
        }),
    );
    assert_eq!(result, Ok(5));
    assert_eq!(attempts.get(), 2);
    assert_eq!(sim.read("data/copy"), Some(&b"guest"[..]));
    assert_eq!(sim.transactions(), 0);
}

#[test]
fn the_transaction_helper_gives_up_after_its_attempts() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    logged(log::Level::Trace);
    let attempts = Cell::new(0);
    let result = block_on(
        &mut sim,
        x,
        x.transaction(|tx| {
            let attempts = &attempts;
            async move {
                attempts.set(attempts.get() + 1);
                x.write(tx, "data/mine", b"1").await?;
                x.write(NONE, "data/race", b"1").await
            }
        }),
    );
    assert_eq!(result, Err(XsError::Again));
    assert_eq!(attempts.get(), TRANSACTION_ATTEMPTS);
    assert_eq!(sim.read("data/mine"), None);
    assert_eq!(sim.transactions(), 0);
    assert_logged(log::Level::Warn, "still conflicting");
}

#[test]
fn the_transaction_helper_aborts_on_a_body_error() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    let attempts = Cell::new(0);
    let result: Result<(), _> = block_on(
        &mut sim,
        x,
        x.transaction(|tx| {
            let attempts = &attempts;
            async move {
                attempts.set(attempts.get() + 1);
                x.write(tx, "data/partial", b"1").await?;
                x.read(tx, "missing").await?;
                Ok(())
            }
        }),
    );
    assert_eq!(result, Err(XsError::NoEnt));
    assert_eq!(attempts.get(), 1);
    assert_eq!(sim.read("data/partial"), None);
    assert_eq!(sim.transactions(), 0);
}

#[test]
fn a_body_meeting_eagain_starts_again() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    let attempts = Cell::new(0);
    let mut run = pin!(x.transaction(|tx| {
        let attempts = &attempts;
        async move {
            attempts.set(attempts.get() + 1);
            x.read(tx, "domid").await
        }
    }));
    // Let the first transaction start, then spoil the reply to the read inside it.
    assert!(poll(run.as_mut()).is_pending());
    sim.run();
    xs.process();
    sim.bad_reply(BadReply::Error(b"EAGAIN\0".to_vec()));
    assert_eq!(block_on(&mut sim, x, run.as_mut()), Ok(b"1".to_vec()));
    assert_eq!(attempts.get(), 2);
    assert_eq!(sim.transactions(), 0);
}

#[test]
fn dropping_the_transaction_future_aborts_the_transaction() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    {
        let mut pending = pin!(xs.transaction(|tx| {
            let xs = &xs;
            async move {
                xs.write(tx, "data/never", b"1").await?;
                core::future::pending::<Result<(), XsError>>().await
            }
        }));
        for _ in 0..10 {
            assert!(poll(pending.as_mut()).is_pending());
            sim.run();
            xs.process();
        }
        assert_eq!(sim.transactions(), 1);
    }
    settle(&mut sim, &xs);
    assert_eq!(sim.transactions(), 0);
    assert_eq!(sim.read("data/never"), None);
}

#[test]
fn error_replies_become_typed_errors() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    for name in XSD_ERRORS {
        sim.bad_reply(BadReply::Error(format!("{name}\0").into_bytes()));
        let err = block_on(&mut sim, x, x.read(NONE, "domid")).unwrap_err();
        assert_eq!(err.name(), Some(name));
        assert!(!matches!(err, XsError::Other(_)));
    }
    sim.bad_reply(BadReply::Error(b"ESHINY\0".to_vec()));
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "domid")),
        Err(XsError::Other("ESHINY".into()))
    );
    sim.bad_reply(BadReply::Error(b"ENOENT".to_vec()));
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "domid")),
        Err(XsError::Malformed(Malformed::MissingNul))
    );
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "domid")),
        Ok(b"1".to_vec())
    );
}

#[test]
fn malformed_replies_fail_only_their_request() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    logged(log::Level::Trace);

    sim.bad_reply(BadReply::Payload(b"a\0b".to_vec()));
    assert_eq!(
        block_on(&mut sim, x, x.directory(NONE, "/")),
        Err(XsError::Malformed(Malformed::MissingNul))
    );
    sim.bad_reply(BadReply::Payload(b"\xff\xfe\0".to_vec()));
    assert_eq!(
        block_on(&mut sim, x, x.directory(NONE, "/")),
        Err(XsError::Malformed(Malformed::NotUtf8))
    );
    sim.bad_reply(BadReply::Payload(b"KO\0".to_vec()));
    assert_eq!(
        block_on(&mut sim, x, x.write(NONE, "data/a", b"1")),
        Err(XsError::Malformed(Malformed::NotOk))
    );
    sim.bad_reply(BadReply::Payload(b"zero\0".to_vec()));
    assert_eq!(
        block_on(&mut sim, x, x.transaction_start()),
        Err(XsError::Malformed(Malformed::BadTxId))
    );
    sim.bad_reply(BadReply::Payload(b"q7\0".to_vec()));
    assert_eq!(
        block_on(&mut sim, x, x.get_perms(NONE, "domid")),
        Err(XsError::Malformed(Malformed::BadPermission))
    );
    sim.bad_reply(BadReply::Type(XS_DIRECTORY));
    assert_eq!(
        block_on(&mut sim, x, x.read(NONE, "domid")),
        Err(XsError::Malformed(Malformed::UnexpectedType {
            expected: XS_READ,
            found: XS_DIRECTORY
        }))
    );
    assert_logged(log::Level::Warn, "reply of type 1 to a request of type 2");
    // The connection is fine.
    assert_eq!(xs.broken(), None);
    assert_eq!(
        block_on(&mut sim, x, x.directory(NONE, "/local")),
        Ok(vec!["domain".into()])
    );
}

/// Checks the connection is broken for `why`, and stays quiet: requests fail at once,
/// without touching the page.
fn assert_broken(
    sim: &mut sim::Xenstore<'_>,
    xs: &Client<'_>,
    page: &FakeSharedMemory,
    why: Broken,
) {
    assert_eq!(xs.broken(), Some(why));
    assert_logged(log::Level::Error, "connection broken");
    page.take_events();
    assert_eq!(
        block_on(sim, xs, xs.read(NONE, "domid")),
        Err(XsError::Broken(why))
    );
    assert_eq!(
        block_on(sim, xs, xs.watch("a", "b")).unwrap_err(),
        XsError::Broken(why)
    );
    xs.process();
    assert_eq!(page.take_events(), []);
    assert!(format!("{xs:?}").contains("broken: Some"));
}

#[test]
fn a_producer_index_jump_breaks_the_connection() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    logged(log::Level::Trace);
    let mut watch = block_on(&mut sim, x, x.watch("data", "w")).unwrap();
    let mut read = pin!(x.read(NONE, "domid"));
    assert!(poll(read.as_mut()).is_pending());
    sim.set_chunk(0);
    sim.run();
    sim.misbehave(Misbehaviour::JumpProducer);
    sim.run();
    xs.process();
    let why = Broken::ResponseRing {
        cons: page.peer_read_u32(xdi::RSP_CONS),
        prod: page.peer_read_u32(xdi::RSP_PROD),
    };
    // The request in flight fails; the watch delivers what it had, then the failure.
    assert_eq!(poll(read.as_mut()), Poll::Ready(Err(XsError::Broken(why))));
    assert_eq!(block_on(&mut sim, x, watch.next_event()), event("data"));
    assert_eq!(
        block_on(&mut sim, x, watch.next_event()),
        Err(XsError::Broken(why))
    );
    sim.set_chunk(usize::MAX);
    assert_broken(&mut sim, x, &page, why);
}

#[test]
fn a_length_over_the_payload_limit_breaks_the_connection() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    logged(log::Level::Trace);
    sim.bad_reply(BadReply::OversizedLen);
    let why = Broken::PayloadTooLong {
        len: XENSTORE_PAYLOAD_MAX as u32 + 1,
    };
    assert_eq!(
        block_on(&mut sim, &xs, xs.read(NONE, "domid")),
        Err(XsError::Broken(why))
    );
    assert_broken(&mut sim, &xs, &page, why);
}

#[test]
fn garbage_that_cannot_be_framed_breaks_the_connection() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    logged(log::Level::Trace);
    sim.misbehave(Misbehaviour::Garbage(vec![0xff; 20]));
    settle(&mut sim, &xs);
    assert_broken(
        &mut sim,
        &xs,
        &page,
        Broken::PayloadTooLong { len: u32::MAX },
    );
}

#[test]
fn the_servers_error_field_breaks_the_connection() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    logged(log::Level::Trace);
    sim.misbehave(Misbehaviour::ServerError(3));
    xs.process();
    assert_broken(&mut sim, &xs, &page, Broken::ServerError(3));
}

#[test]
fn a_consumer_index_from_nowhere_breaks_the_connection() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    logged(log::Level::Trace);
    block_on(&mut sim, &xs, xs.read(NONE, "domid")).unwrap();
    let prod = page.peer_read_u32(xdi::REQ_PROD);
    page.peer_write_u32(xdi::REQ_CONS, prod + 5);
    let mut read = pin!(xs.read(NONE, "domid"));
    let why = Broken::RequestRing {
        cons: prod + 5,
        prod,
    };
    assert_eq!(poll(read.as_mut()), Poll::Ready(Err(XsError::Broken(why))));
    page.peer_write_u32(xdi::REQ_CONS, prod);
    assert_broken(&mut sim, &xs, &page, why);
}

#[test]
fn framed_garbage_unknown_ids_and_unknown_tokens_are_dropped() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    let x = &xs;
    let mut watch = block_on(&mut sim, x, x.watch("name", "n")).unwrap();
    block_on(&mut sim, x, watch.next_event()).unwrap();
    logged(log::Level::Trace);

    sim.misbehave(Misbehaviour::UnknownReqId);
    settle(&mut sim, x);
    assert_logged(
        log::Level::Warn,
        "request 3735928559, which is not in flight",
    );

    sim.misbehave(Misbehaviour::UnknownToken);
    settle(&mut sim, x);
    assert_logged(log::Level::Warn, "unknown watch token \"no-such-token\"");

    // A message of an unknown type whose length frames it correctly.
    let mut framed = Header {
        ty: 999,
        req_id: 12345,
        tx_id: 0,
        len: 3,
    }
    .to_bytes()
    .to_vec();
    framed.extend_from_slice(b"abc");
    sim.misbehave(Misbehaviour::Garbage(framed));
    // An event whose payload does not parse.
    let mut bad_event = Header {
        ty: ringbolt_xen_abi::io::xs_wire::XS_WATCH_EVENT,
        req_id: 0,
        tx_id: 0,
        len: 4,
    }
    .to_bytes()
    .to_vec();
    bad_event.extend_from_slice(b"name");
    sim.misbehave(Misbehaviour::Garbage(bad_event));
    settle(&mut sim, x);
    let warnings = logged(log::Level::Warn);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("request 12345"));
    assert!(warnings[1].contains("malformed watch event"));

    // Nothing reached the watch, and everything still works.
    let mut next = pin!(watch.next_event());
    assert!(poll(next.as_mut()).is_pending());
    assert_eq!(xs.broken(), None);
    block_on(&mut sim, x, x.write(NONE, "name", b"renamed")).unwrap();
    assert_eq!(block_on(&mut sim, x, next.as_mut()), event("name"));
}

#[test]
fn a_length_that_lies_swallows_the_next_reply_and_no_more() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::new(&page);
    let (xs, _) = client(&page);
    logged(log::Level::Trace);
    // The reply to `write` claims 17 more bytes than it has: exactly the size of the reply to
    // the `read` after it (16-byte header, value "1").
    sim.bad_reply(BadReply::ShortPayload { extra: 17 });
    let mut write = pin!(xs.write(NONE, "data/a", b"1"));
    assert!(poll(write.as_mut()).is_pending());
    settle(&mut sim, &xs);
    // We cannot tell a lie from a slow server: the write waits, having consumed exactly what
    // was there.
    assert!(poll(write.as_mut()).is_pending());
    assert_eq!(
        page.peer_read_u32(xdi::RSP_CONS),
        page.peer_read_u32(xdi::RSP_PROD)
    );
    let mut swallowed = pin!(xs.read(NONE, "domid"));
    assert!(poll(swallowed.as_mut()).is_pending());
    settle(&mut sim, &xs);
    // The write got "OK\0" and the read's reply as its payload: not an acknowledgement.
    assert_eq!(
        poll(write.as_mut()),
        Poll::Ready(Err(XsError::Malformed(Malformed::NotOk)))
    );
    assert_logged(log::Level::Warn, "acknowledgement is not OK");
    // The read's reply is gone; it waits for its caller's timeout. The stream is framed again.
    assert!(poll(swallowed.as_mut()).is_pending());
    assert_eq!(
        block_on(&mut sim, &xs, xs.read(NONE, "name")),
        Ok(b"guest".to_vec())
    );
    assert_eq!(xs.broken(), None);
}

#[test]
fn takes_over_a_page_with_stale_replies_and_refuses_a_small_one() {
    let page = FakeSharedMemory::page();
    let mut sim = sim::Xenstore::with_indices(&page, 50, 60);
    // A previous stage left a reply it never read.
    page.peer_write_u32(xdi::RSP_PROD, 70);
    sim.run();
    logged(log::Level::Trace);
    let (xs, _) = client(&page);
    assert_logged(log::Level::Warn, "skipping replies");
    let mut sim = sim::Xenstore::new(&page);
    assert_eq!(
        block_on(&mut sim, &xs, xs.read(NONE, "domid")),
        Ok(b"1".to_vec())
    );

    let small = FakeSharedMemory::new(xdi::SIZE - 4);
    let notify: Box<dyn Fn()> = Box::new(|| {});
    assert!(matches!(
        Xenstore::new(&small, notify),
        Err(Broken::OutOfBounds(_))
    ));
}

#[test]
fn errors_describe_themselves() {
    let cases: [(XsError, &str); 5] = [
        (XsError::NoEnt, "xenstore error ENOENT"),
        (XsError::Other("EWHAT".into()), "xenstore error EWHAT"),
        (
            XsError::Other("E\x1b[2J\n".into()),
            "xenstore error E\\u{1b}[2J\\n",
        ),
        (
            XsError::Malformed(Malformed::MissingNul),
            "xenstore reply malformed: string not NUL-terminated",
        ),
        (
            XsError::Broken(Broken::ResponseRing {
                cons: 0,
                prod: 0x401,
            }),
            "xenstore connection broken: response ring indices corrupt (rsp_cons 0x0, rsp_prod 0x401)",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(format!("{error}"), text);
    }
}
