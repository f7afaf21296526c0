//! Tasks on the cooperative executor.

use core::future::Future;

pub use ringbolt_executor::{Either, JoinHandle, select, yield_now};

/// Starts `future` as a new task; it runs whenever the current task awaits.
pub fn spawn<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    crate::runtime::handle().spawn(future)
}
