//! Event channels, kernel side: which task waits on which port.
//!
//! Xen marks ports pending in `shared_info`; both Xen platforms scan them when their idle wait
//! ends ([`dispatch`], in thread context with events masked) and every port that fired is
//! recorded and wakes the task registered on it. Events are edge-triggered: a driver woken by
//! one looks at its ring, where the real state is.

use ringbolt_shmem::SharedMemory;
use ringbolt_xen_evtchn::{take_pending, vcpu_info_offset};

use crate::signal::{Fired, Signals};

static PORTS: Signals = Signals::new();

/// Consumes vCPU 0's pending events in `shared_info` and wakes the tasks waiting on them. A
/// port nobody waits on is remembered as fired, for whoever waits on it next.
pub(crate) fn dispatch(shared_info: &impl SharedMemory) {
    let vcpu_info = vcpu_info_offset(0).expect("vCPU 0 has a vcpu_info");
    let mut ports = alloc::vec::Vec::new();
    if let Err(e) = take_pending(shared_info, vcpu_info, |port| ports.push(port)) {
        log::error!("xen: event channels unreadable: {e}");
    }
    PORTS.raise(ports);
}

/// Completes once `port` has fired since the previous completion (or since boot).
pub(crate) fn fired(port: u32) -> Fired {
    PORTS.fired(port)
}

/// Our end of an event channel, which signals the other end (`EVTCHNOP_send`): how the store
/// client and the device rings tell their backend to look.
#[derive(Debug)]
pub(crate) struct Notifier {
    pub(crate) port: u32,
}

impl Notifier {
    fn send(&self) {
        if let Err(e) = super::evtchn_send(self.port) {
            log::error!("xen: cannot notify port {}: {e:?}", self.port);
        }
    }
}

impl ringbolt_xen_xenstore::Notify for Notifier {
    fn notify(&self) {
        self.send();
    }
}

impl ringbolt_xen_ring::Notify for Notifier {
    fn notify(&self) {
        self.send();
    }
}
