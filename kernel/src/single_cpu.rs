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
