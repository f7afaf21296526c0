//! Devices the drivers find while the app starts, and the app's wait for them.
//!
//! A driver takes a [`Probe`] before the app runs, [`add`](Probe::add)s each device it
//! connects and drops the probe when it is done; [`Registry::all`] waits until every probe of
//! its registry is dropped, so the app sees every device or none is still coming.

use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use crate::single_cpu::SingleCpu;

/// The devices of one kind found so far, and the drivers still looking for more.
pub(crate) struct Registry<T: 'static>(SingleCpu<Found<T>>);

struct Found<T> {
    devices: Vec<T>,
    probing: usize,
    waiters: Vec<Waker>,
}

impl<T: Clone> Registry<T> {
    pub(crate) const fn new() -> Self {
        Registry(SingleCpu::new(Found {
            devices: Vec::new(),
            probing: 0,
            waiters: Vec::new(),
        }))
    }

    /// Every device, in the order the drivers added them, once no driver is looking.
    pub(crate) async fn all(&'static self) -> Vec<T> {
        poll_fn(|cx| {
            self.0.with(|found| {
                if found.probing > 0 {
                    found.waiters.push(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(found.devices.clone())
                }
            })
        })
        .await
    }

    /// A driver starts looking: [`all`](Self::all) waits until the probe is dropped.
    pub(crate) fn probe(&'static self) -> Probe<T> {
        self.0.with(|found| found.probing += 1);
        Probe { registry: self }
    }
}

/// A driver looking for devices (see the module doc).
pub(crate) struct Probe<T: 'static> {
    registry: &'static Registry<T>,
}

impl<T> Probe<T> {
    /// Lists a connected device.
    pub(crate) fn add(&self, device: T) {
        self.registry.0.with(|found| found.devices.push(device));
    }
}

impl<T> Drop for Probe<T> {
    fn drop(&mut self) {
        let waiters = self.registry.0.with(|found| {
            found.probing -= 1;
            if found.probing == 0 {
                core::mem::take(&mut found.waiters)
            } else {
                Vec::new()
            }
        });
        waiters.into_iter().for_each(Waker::wake);
    }
}
