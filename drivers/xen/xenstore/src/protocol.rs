//! The protocol state, without I/O: requests waiting for the ring, replies being reassembled,
//! requests in flight by `req_id`, watches by token, and whether the connection is broken.
//!
//! A reply meets the future waiting for it in a [`ReplySlot`], shared by the in-flight table
//! and the future; a watch's events queue up in an [`EventQueue`] shared with its `Watch`.
//! Sharing (rather than looking the request up again when the future is polled) lets a future
//! be dropped at any time: the table keeps the slot, and so the `req_id`, until the reply
//! arrives, then sees it is the only holder and discards the reply.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::task::{Poll, Waker};

use ringbolt_xen_abi::io::xs_wire::{XENSTORE_PAYLOAD_MAX, XS_ERROR, XS_UNWATCH, XS_WATCH_EVENT};

use crate::wire::{self, Decoder, Header, Message};
use crate::{Broken, Malformed, TxId, WatchEvent, XsError};

/// Events a watch holds before further ones are dropped (with a warning): a server flooding a
/// watch nobody drains must not exhaust the heap. Consumers treat an event as "look again", so
/// a full queue already guarantees they will look.
pub(crate) const MAX_QUEUED_EVENTS: usize = 256;

/// A reply, once it arrives, and who to wake for it.
#[derive(Debug, Default)]
pub(crate) struct ReplyState {
    result: Option<Result<Vec<u8>, XsError>>,
    waker: Option<Waker>,
}

impl ReplyState {
    /// The reply's payload (or error) once it has arrived.
    pub(crate) fn poll(&mut self, waker: &Waker) -> Poll<Result<Vec<u8>, XsError>> {
        match self.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                self.waker = Some(waker.clone());
                Poll::Pending
            }
        }
    }
}

pub(crate) type ReplySlot = Rc<RefCell<ReplyState>>;

/// A watch's undelivered events.
#[derive(Debug, Default)]
pub(crate) struct Events {
    queue: VecDeque<WatchEvent>,
    waker: Option<Waker>,
    /// Set when the connection breaks; reported once the queue is drained.
    broken: Option<Broken>,
}

impl Events {
    pub(crate) fn poll_next(&mut self, waker: &Waker) -> Poll<Result<WatchEvent, XsError>> {
        if let Some(event) = self.queue.pop_front() {
            return Poll::Ready(Ok(event));
        }
        if let Some(why) = self.broken {
            return Poll::Ready(Err(why.into()));
        }
        self.waker = Some(waker.clone());
        Poll::Pending
    }
}

pub(crate) type EventQueue = Rc<RefCell<Events>>;

#[derive(Debug)]
struct InFlight {
    /// The request's type, which a successful reply echoes.
    ty: u32,
    reply: ReplySlot,
    /// For `XS_UNWATCH`: the token whose watch entry goes when the reply arrives, whatever it
    /// says (if the server had no such watch, there is nothing left to undo either).
    unwatch: Option<String>,
}

#[derive(Debug)]
struct WatchEntry {
    events: EventQueue,
    /// `XS_UNWATCH` sent: events still arriving are dropped quietly.
    closing: bool,
}

#[derive(Debug)]
pub(crate) struct Core {
    /// Encoded requests not yet on the ring, oldest first.
    pub(crate) out: VecDeque<u8>,
    /// The reply or event being received.
    pub(crate) decoder: Decoder,
    in_flight: BTreeMap<u32, InFlight>,
    watches: BTreeMap<String, WatchEntry>,
    next_req_id: u32,
    broken: Option<Broken>,
    /// Wakers of futures whose state changed, woken by the caller once nothing is borrowed (a
    /// waker may run executor code that polls straight back into the client).
    woken: Vec<Waker>,
}

impl Core {
    pub(crate) fn new() -> Self {
        Core {
            out: VecDeque::new(),
            decoder: Decoder::new(),
            in_flight: BTreeMap::new(),
            watches: BTreeMap::new(),
            // 0 is what watch events carry; never use it for a request.
            next_req_id: 1,
            broken: None,
            woken: Vec::new(),
        }
    }

    pub(crate) fn broken(&self) -> Option<Broken> {
        self.broken
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn take_woken(&mut self) -> Vec<Waker> {
        core::mem::take(&mut self.woken)
    }

    /// Queues a request for the ring and returns where its reply will land.
    pub(crate) fn submit(
        &mut self,
        ty: u32,
        tx: TxId,
        payload: Vec<u8>,
    ) -> Result<ReplySlot, XsError> {
        self.enqueue(ty, tx, payload, None)
    }

    /// Queues `XS_UNWATCH` for the watch `token` (whose payload is the same `<path>|<token>|`
    /// that registered it) and stops queueing its events.
    pub(crate) fn submit_unwatch(
        &mut self,
        payload: Vec<u8>,
        token: &str,
    ) -> Result<ReplySlot, XsError> {
        if let Some(entry) = self.watches.get_mut(token) {
            entry.closing = true;
        }
        let submitted = self.enqueue(XS_UNWATCH, TxId::NONE, payload, Some(token.into()));
        if submitted.is_err() {
            self.watches.remove(token);
        }
        submitted
    }

    fn enqueue(
        &mut self,
        ty: u32,
        tx: TxId,
        payload: Vec<u8>,
        unwatch: Option<String>,
    ) -> Result<ReplySlot, XsError> {
        if let Some(why) = self.broken {
            return Err(why.into());
        }
        // xenstored drops a connection that sends more; refuse before anything is queued.
        if payload.len() > XENSTORE_PAYLOAD_MAX {
            return Err(XsError::TooBig);
        }
        let req_id = self.allocate_req_id();
        let header = Header {
            ty,
            req_id,
            tx_id: tx.0,
            len: payload.len() as u32,
        };
        self.out.extend(header.to_bytes());
        self.out.extend(payload);
        let reply = ReplySlot::default();
        self.in_flight.insert(
            req_id,
            InFlight {
                ty,
                reply: reply.clone(),
                unwatch,
            },
        );
        Ok(reply)
    }

    /// The next `req_id` that is neither 0 nor in flight. Ids wrap after 2^32 requests; one
    /// still in flight by then (its reply never came) is skipped, not reused.
    fn allocate_req_id(&mut self) -> u32 {
        loop {
            let id = self.next_req_id;
            self.next_req_id = id.wrapping_add(1);
            if id != 0 && !self.in_flight.contains_key(&id) {
                return id;
            }
        }
    }

    /// Opens the event queue for a new watch. Tokens are unique per client, so an event's
    /// token names one watch.
    pub(crate) fn register_watch(&mut self, token: &str) -> Result<EventQueue, XsError> {
        if let Some(why) = self.broken {
            return Err(why.into());
        }
        if self.watches.contains_key(token) {
            return Err(XsError::Exist);
        }
        let events = EventQueue::default();
        self.watches.insert(
            token.into(),
            WatchEntry {
                events: events.clone(),
                closing: false,
            },
        );
        Ok(events)
    }

    /// Forgets a watch the server refused (so holds none of).
    pub(crate) fn remove_watch(&mut self, token: &str) {
        self.watches.remove(token);
    }

    /// Delivers one whole message from the server.
    pub(crate) fn receive(&mut self, message: Message) {
        let Header { ty, req_id, .. } = message.header;
        if ty == XS_WATCH_EVENT {
            self.route_event(&message.payload);
            return;
        }
        let Some(request) = self.in_flight.remove(&req_id) else {
            log::warn!(
                "xenstore: dropped a reply of type {ty} to request {req_id}, which is not in flight"
            );
            return;
        };
        let result = if ty == XS_ERROR {
            Err(wire::error(&message.payload))
        } else if ty != request.ty {
            Err(Malformed::UnexpectedType {
                expected: request.ty,
                found: ty,
            }
            .into())
        } else {
            Ok(message.payload)
        };
        if let Err(e @ XsError::Malformed(_)) = &result {
            log::warn!("xenstore: request {req_id} (type {}): {e}", request.ty);
        }
        if let Some(token) = request.unwatch {
            self.watches.remove(&token);
        }
        if Rc::strong_count(&request.reply) == 1 {
            if let Err(e) = result {
                log::debug!("xenstore: request {req_id} (nobody waiting): {e}");
            }
            return;
        }
        let mut reply = request.reply.borrow_mut();
        reply.result = Some(result);
        self.woken.extend(reply.waker.take());
    }

    fn route_event(&mut self, payload: &[u8]) {
        let (path, token) = match wire::watch_event(payload) {
            Ok(fields) => fields,
            Err(e) => {
                log::warn!("xenstore: dropped a malformed watch event: {e}");
                return;
            }
        };
        let Some(entry) = self.watches.get(&token) else {
            log::warn!("xenstore: dropped an event on {path:?} for unknown watch token {token:?}");
            return;
        };
        if entry.closing {
            log::debug!("xenstore: dropped an event on {path:?} for closing watch {token:?}");
            return;
        }
        let mut events = entry.events.borrow_mut();
        if events.queue.len() >= MAX_QUEUED_EVENTS {
            log::warn!(
                "xenstore: watch {token:?} has {MAX_QUEUED_EVENTS} events waiting; dropped one on {path:?}"
            );
            return;
        }
        events.queue.push_back(WatchEvent { path });
        self.woken.extend(events.waker.take());
    }

    /// Marks the connection broken for good: fails every request in flight and every watch
    /// (after its queued events), and refuses new requests. The first cause is kept.
    pub(crate) fn fail(&mut self, why: Broken) {
        if self.broken.is_some() {
            return;
        }
        log::error!(
            "xenstore: connection broken: {why}; failing {} requests in flight",
            self.in_flight.len()
        );
        self.broken = Some(why);
        self.out.clear();
        self.decoder = Decoder::new();
        for request in core::mem::take(&mut self.in_flight).into_values() {
            let mut reply = request.reply.borrow_mut();
            reply.result = Some(Err(why.into()));
            self.woken.extend(reply.waker.take());
        }
        for entry in self.watches.values() {
            let mut events = entry.events.borrow_mut();
            events.broken = Some(why);
            self.woken.extend(events.waker.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use ringbolt_xen_abi::io::xs_wire::{XS_READ, XS_WATCH, XS_WRITE};

    fn message(ty: u32, req_id: u32, payload: &[u8]) -> Message {
        Message {
            header: Header {
                ty,
                req_id,
                tx_id: 0,
                len: payload.len() as u32,
            },
            payload: payload.to_vec(),
        }
    }

    fn poll(slot: &ReplySlot) -> Poll<Result<Vec<u8>, XsError>> {
        slot.borrow_mut().poll(Waker::noop())
    }

    #[test]
    fn encodes_requests_with_fresh_ids_and_the_transaction() {
        let mut core = Core::new();
        let _a = core.submit(XS_READ, TxId::NONE, b"a\0".to_vec()).unwrap();
        let _b = core.submit(XS_WRITE, TxId(9), b"b\0v".to_vec()).unwrap();
        let out: Vec<u8> = core.out.iter().copied().collect();
        assert_eq!(out.len(), 16 + 2 + 16 + 3);
        let first = Header::from_bytes(out[..16].try_into().unwrap());
        assert_eq!(
            first,
            Header {
                ty: XS_READ,
                req_id: 1,
                tx_id: 0,
                len: 2
            }
        );
        let second = Header::from_bytes(out[18..34].try_into().unwrap());
        assert_eq!((second.req_id, second.tx_id), (2, 9));
        assert_eq!(&out[34..], b"b\0v");
    }

    #[test]
    fn request_ids_skip_zero_and_ids_still_in_flight() {
        let mut core = Core::new();
        core.next_req_id = u32::MAX;
        let _a = core.submit(XS_READ, TxId::NONE, vec![]).unwrap();
        let _b = core.submit(XS_READ, TxId::NONE, vec![]).unwrap();
        assert_eq!(
            core.in_flight.keys().copied().collect::<Vec<_>>(),
            [1, u32::MAX]
        );
        core.next_req_id = u32::MAX;
        let _c = core.submit(XS_READ, TxId::NONE, vec![]).unwrap();
        assert!(core.in_flight.contains_key(&2));
    }

    #[test]
    fn refuses_payloads_over_the_limit_without_queueing() {
        let mut core = Core::new();
        assert_eq!(
            core.submit(XS_WRITE, TxId::NONE, vec![b'x'; XENSTORE_PAYLOAD_MAX + 1])
                .unwrap_err(),
            XsError::TooBig
        );
        assert!(core.out.is_empty());
        assert!(
            core.submit(XS_WRITE, TxId::NONE, vec![b'x'; XENSTORE_PAYLOAD_MAX])
                .is_ok()
        );
    }

    #[test]
    fn matches_replies_by_id_in_any_order() {
        let mut core = Core::new();
        let a = core.submit(XS_READ, TxId::NONE, vec![]).unwrap();
        let b = core.submit(XS_READ, TxId::NONE, vec![]).unwrap();
        assert!(poll(&a).is_pending());
        core.receive(message(XS_READ, 2, b"two"));
        core.receive(message(XS_ERROR, 1, b"ENOENT\0"));
        assert_eq!(
            core.take_woken().len(),
            1,
            "only a was polled, so only a has a waker"
        );
        assert_eq!(poll(&b), Poll::Ready(Ok(b"two".to_vec())));
        assert_eq!(poll(&a), Poll::Ready(Err(XsError::NoEnt)));
        assert_eq!(core.in_flight(), 0);
    }

    #[test]
    fn a_reply_of_the_wrong_type_fails_only_its_request() {
        let mut core = Core::new();
        let a = core.submit(XS_READ, TxId::NONE, vec![]).unwrap();
        core.receive(message(XS_WRITE, 1, b"OK\0"));
        assert_eq!(
            poll(&a),
            Poll::Ready(Err(XsError::Malformed(Malformed::UnexpectedType {
                expected: XS_READ,
                found: XS_WRITE
            })))
        );
        assert_eq!(core.broken(), None);
    }

    #[test]
    fn drops_replies_nobody_waits_for_and_unknown_ids() {
        let mut core = Core::new();
        let a = core.submit(XS_READ, TxId::NONE, vec![]).unwrap();
        drop(a);
        // The id stays taken until the reply comes.
        let _b = core.submit(XS_READ, TxId::NONE, vec![]).unwrap();
        assert_eq!(core.in_flight(), 2);
        core.receive(message(XS_READ, 1, b"late"));
        core.receive(message(XS_READ, 77, b"stray"));
        assert_eq!(core.in_flight(), 1);
        assert!(core.take_woken().is_empty());
    }

    #[test]
    fn queues_events_by_token_up_to_the_limit() {
        let mut core = Core::new();
        let events = core.register_watch("tok").unwrap();
        assert_eq!(core.register_watch("tok").unwrap_err(), XsError::Exist);
        assert!(events.borrow_mut().poll_next(Waker::noop()).is_pending());
        for i in 0..MAX_QUEUED_EVENTS + 5 {
            let payload = alloc::format!("/p/{i}\0tok\0");
            core.receive(message(XS_WATCH_EVENT, 0, payload.as_bytes()));
        }
        core.receive(message(XS_WATCH_EVENT, 0, b"/q\0other\0"));
        core.receive(message(XS_WATCH_EVENT, 0, b"/q\0tok"));
        assert_eq!(core.take_woken().len(), 1);
        let mut events = events.borrow_mut();
        assert_eq!(events.queue.len(), MAX_QUEUED_EVENTS);
        assert_eq!(
            events.poll_next(Waker::noop()),
            Poll::Ready(Ok(WatchEvent {
                path: "/p/0".into()
            }))
        );
    }

    #[test]
    fn an_event_may_overtake_its_watchs_acknowledgement() {
        let mut core = Core::new();
        let events = core.register_watch("tok").unwrap();
        let ack = core
            .submit(XS_WATCH, TxId::NONE, b"/p\0tok\0".to_vec())
            .unwrap();
        core.receive(message(XS_WATCH_EVENT, 0, b"/p\0tok\0"));
        core.receive(message(XS_WATCH, 1, b"OK\0"));
        assert_eq!(poll(&ack), Poll::Ready(Ok(b"OK\0".to_vec())));
        assert_eq!(
            events.borrow_mut().poll_next(Waker::noop()),
            Poll::Ready(Ok(WatchEvent { path: "/p".into() }))
        );
    }

    #[test]
    fn unwatch_closes_the_queue_and_its_reply_removes_the_watch() {
        let mut core = Core::new();
        let _events = core.register_watch("tok").unwrap();
        let _w = core.submit(XS_WATCH, TxId::NONE, b"/p\0tok\0".to_vec());
        drop(core.submit_unwatch(b"/p\0tok\0".to_vec(), "tok").unwrap());
        core.receive(message(XS_WATCH_EVENT, 0, b"/p\0tok\0"));
        assert_eq!(core.register_watch("tok").unwrap_err(), XsError::Exist);
        core.receive(message(XS_UNWATCH, 2, b"OK\0"));
        assert!(core.register_watch("tok").is_ok());
    }

    #[test]
    fn failing_completes_everything_and_refuses_more() {
        let mut core = Core::new();
        let a = core.submit(XS_READ, TxId::NONE, vec![]).unwrap();
        assert!(poll(&a).is_pending());
        let events = core.register_watch("tok").unwrap();
        core.receive(message(XS_WATCH_EVENT, 0, b"/p\0tok\0"));
        core.fail(Broken::PayloadTooLong { len: 5000 });
        core.fail(Broken::ServerError(1));
        let why = XsError::Broken(Broken::PayloadTooLong { len: 5000 });
        assert_eq!(poll(&a), Poll::Ready(Err(why.clone())));
        let mut events = events.borrow_mut();
        assert!(matches!(
            events.poll_next(Waker::noop()),
            Poll::Ready(Ok(_))
        ));
        assert_eq!(
            events.poll_next(Waker::noop()),
            Poll::Ready(Err(why.clone()))
        );
        assert_eq!(core.submit(XS_READ, TxId::NONE, vec![]).unwrap_err(), why);
        assert_eq!(core.register_watch("x").unwrap_err(), why);
        assert!(core.out.is_empty());
    }
}
