//! Simulated peers for host tests: the backend's half of a ring, and a log capture.
//!
//! [`NotifyCounter`] counts a frontend's notifications. [`BackRing`] is `ring.h`'s back end over the same [`SharedMemory`] a [`FrontRing`] uses,
//! sharing its index and slot code, so a test (or another crate's `sim` backend) can play
//! blkback or netback against the real frontend. It also lets a test misbehave on purpose
//! ([`BackRing::force_rsp_prod`]). [`capture_logs`] records this thread's `log` output, so a
//! test can assert that a hostile peer was reported and not just survived.
//!
//! This module needs `std` (thread-local log records); it is compiled for this crate's tests and
//! with the `sim` feature, which nothing in the kernel enables.
//!
//! [`FrontRing`]: crate::FrontRing

extern crate std;

use std::cell::RefCell;
use std::string::{String, ToString};
use std::vec::Vec;

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use ringbolt_xen_abi::io::ring::{RingIdx, sring};

use crate::{Consumer, Layout, Producer, REQUESTS, RESPONSES, RingError};

/// A [`Notify`](crate::Notify) that counts what a frontend sends; clones share the count.
#[derive(Clone, Debug, Default)]
pub struct NotifyCounter(std::rc::Rc<core::cell::Cell<u32>>);

impl crate::Notify for NotifyCounter {
    fn notify(&self) {
        self.0.set(self.0.get() + 1);
    }
}

impl NotifyCounter {
    /// Notifications since the last call.
    pub fn take(&self) -> u32 {
        self.0.replace(0)
    }
}

/// The backend's half of a ring: consumes requests, pushes responses.
#[derive(Debug)]
pub struct BackRing<M> {
    mem: M,
    layout: Layout,
    pub(crate) requests: Consumer,
    pub(crate) responses: Producer,
}

impl<M: SharedMemory> BackRing<M> {
    /// Attaches to a ring the frontend initialised (`BACK_RING_INIT`).
    pub fn attach(mem: M, slot_size: usize) -> Result<Self, RingError> {
        Ok(BackRing {
            layout: Layout::new(mem.len(), slot_size)?,
            mem,
            requests: Consumer::new(REQUESTS),
            responses: Producer::new(RESPONSES),
        })
    }

    /// Slots in the ring.
    pub fn size(&self) -> RingIdx {
        self.layout.size
    }

    /// Requests taken that have no response pushed yet.
    pub fn unanswered(&self) -> RingIdx {
        self.requests.cons.wrapping_sub(self.responses.pvt)
    }

    /// Copies the next request into `dst`; `false` if none. A frontend that published more
    /// requests than there are free slots (`RING_REQUEST_PROD_OVERFLOW`) is an error.
    pub fn take_request(&mut self, dst: &mut [u8]) -> Result<bool, RingError> {
        let limit = self.layout.size - self.unanswered();
        self.requests.take(&self.mem, &self.layout, dst, limit)
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        let limit = self.layout.size - self.unanswered();
        self.requests.final_check(&self.mem, limit)
    }

    /// Copies `response` into the slot of the oldest unanswered request.
    pub fn push_response(&mut self, response: &[u8]) -> Result<(), RingError> {
        if self.unanswered() == 0 {
            return Err(RingError::Full);
        }
        self.responses.push(&self.mem, &self.layout, response)
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: whether the frontend must be notified.
    pub fn publish(&mut self) -> Result<bool, RingError> {
        self.responses.publish(&self.mem)
    }

    /// Hostile: stores `rsp_prod` as given, after a write barrier, without touching a slot.
    pub fn force_rsp_prod(&self, value: RingIdx) -> Result<(), OutOfBounds> {
        self.mem.write_barrier();
        self.mem.write_u32(sring::RSP_PROD, value)
    }

    /// The response producer index as published.
    pub fn rsp_prod(&self) -> RingIdx {
        self.responses.published
    }
}

/// One captured `log` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub level: log::Level,
    pub message: String,
}

std::thread_local! {
    static RECORDS: RefCell<Vec<LogRecord>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string();
        RECORDS.with(|r| {
            r.borrow_mut().push(LogRecord {
                level: record.level(),
                message,
            })
        });
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Routes `log` output to per-thread buffers (once per process) and clears this thread's.
/// Each test runs on its own thread, so tests see only their own records.
pub fn capture_logs() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Fails only if another logger was installed first; then nothing is captured and the
        // test's assertions on records say so.
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Trace);
    });
    RECORDS.with(|r| r.borrow_mut().clear());
}

/// This thread's records since [`capture_logs`], oldest first, clearing them.
pub fn take_logs() -> Vec<LogRecord> {
    RECORDS.with(|r| core::mem::take(&mut *r.borrow_mut()))
}
