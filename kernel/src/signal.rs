//! Edge-triggered wake-ups by number: Xen event-channel ports, VMBus channel relids.
//!
//! The idle loop finds what fired (a pending bit in shared memory) and [`Signals::raise`]s it;
//! the task that owns the number awaits [`Signals::fired`]. A number raised while nobody waits
//! is remembered until someone does. Thread context only: interrupt handlers never touch this.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use hermit_sync::SpinMutex;

#[derive(Default)]
struct State {
    fired: bool,
    waker: Option<Waker>,
}

/// A set of numbered signals.
pub(crate) struct Signals {
    states: SpinMutex<BTreeMap<u32, State>>,
}

impl Signals {
    pub(crate) const fn new() -> Self {
        Signals {
            states: SpinMutex::new(BTreeMap::new()),
        }
    }

    /// Marks each of `ids` fired and wakes whoever waits on it.
    pub(crate) fn raise(&self, ids: impl IntoIterator<Item = u32>) {
        let mut wakers = Vec::new();
        {
            let mut states = self.states.lock();
            for id in ids {
                let state = states.entry(id).or_default();
                state.fired = true;
                wakers.extend(state.waker.take());
            }
        }
        // Outside the lock: a woken task may register another signal.
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Completes once `id` has fired since the previous completion (or since boot).
    pub(crate) fn fired(&'static self, id: u32) -> Fired {
        Fired { signals: self, id }
    }
}

/// The future [`Signals::fired`] returns.
pub(crate) struct Fired {
    signals: &'static Signals,
    id: u32,
}

impl Future for Fired {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut states = self.signals.states.lock();
        let state = states.entry(self.id).or_default();
        if core::mem::take(&mut state.fired) {
            Poll::Ready(())
        } else {
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}
