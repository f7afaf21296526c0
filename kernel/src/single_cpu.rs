//! A cell for state that only thread context on the one CPU touches.

use core::cell::RefCell;

/// Interior mutability for kernel globals that are neither `Send` nor `Sync` (an `Rc`-based
/// executor handle, say). Sound because Ringbolt runs on one CPU and interrupt handlers never
/// touch these globals (see the crate doc), so there is never a second accessor.
pub(crate) struct SingleCpu<T>(RefCell<T>);

// SAFETY: 1. Ringbolt runs one CPU, so there is no other thread to share with. 2. Interrupt
// handlers do not access any `SingleCpu` (they only acknowledge and record), so access is never
// reentrant from an interrupt. 3. The RefCell still catches reentrancy within thread context.
unsafe impl<T> Sync for SingleCpu<T> {}

impl<T> SingleCpu<T> {
    pub(crate) const fn new(value: T) -> Self {
        SingleCpu(RefCell::new(value))
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

/// Locks `mutex`, or takes it over if it is already held.
///
/// Only for the console: on one CPU, with interrupt handlers that never print, the console lock
/// can be found taken only when a fault hit inside a console write, and that fault ends in the
/// panic handler, which never returns to the interrupted writer.
pub(crate) fn lock_or_take_over<T>(
    mutex: &hermit_sync::SpinMutex<T>,
) -> hermit_sync::SpinMutexGuard<'_, T> {
    if let Some(guard) = mutex.try_lock() {
        return guard;
    }
    // SAFETY: per the function's doc, the holder is a writer that will never run again, so no
    // two guards are ever used at once.
    unsafe { mutex.force_unlock() };
    mutex.lock()
}
