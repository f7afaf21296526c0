//! A cooperative, single-CPU async executor with timers, for Ringbolt.
//!
//! Ringbolt runs one CPU and never preempts, so the executor need not be `Send`, fair in any
//! strong sense, or interrupt-safe: it is a loop that polls ready tasks, and halts the CPU
//! when there are none. Apps share state between tasks with `Rc` and `RefCell`, so futures
//! are not required to be `Send` either.
//!
//! # Ready queue
//!
//! A FIFO of task ids, the only state a [`core::task::Waker`] touches. Wakers are built
//! safely with [`alloc::task::Wake`] on an `Arc` holding the task id, a "queued" flag and the
//! queue; `Waker` demands `Send + Sync`, so the queue sits behind a `hermit_sync` spin lock
//! rather than a `RefCell`, which costs an uncontended atomic. The flag keeps a task in the
//! queue at most once however often it is woken, so the queue is bounded by the task count.
//!
//! # Task table
//!
//! Futures live in the executor's own slab of tasks, never in a waker, which is why they can
//! be `!Send`: a waker carries only an id. Ids carry the slot's generation, so a waker that
//! outlives its task (stashed in some driver, say) finds a stale id and is ignored, even after
//! its slot is reused. A task's future is taken out of the table while it is polled, so task
//! code may spawn; [`JoinHandle`] shares the output through an `Rc` and may be dropped to
//! detach the task.
//!
//! One pass ([`Executor::run_ready`]) polls the tasks that were ready when it began. A task
//! woken during the pass, such as one calling [`yield_now`], waits for the next pass behind
//! the others, so no task can starve the rest or keep the clock from being read.
//!
//! # Timer queue
//!
//! Time is passed in as a [`Clock`](ringbolt_time::Clock) (tests use `MockClock`), never read
//! from a global. Pending timers sit in a map ordered by `(deadline, sequence)`, shared by the
//! executor and every [`Sleep`]. A `Sleep` sets its entry on its first pending poll and
//! removes it when it completes or is dropped, so a timeout whose future wins leaves nothing
//! behind to wake anyone. Whether a `Sleep` is done is decided by the clock, so it completes
//! exactly at its deadline and never before. Expired entries fire whenever the executor reads
//! the clock: at the start of every pass and before deciding to idle.
//!
//! # The idle contract
//!
//! When nothing is ready, [`Executor::block_on`] calls `idle(next_deadline)`; `None` means no
//! timer is pending. The kernel arms its one-shot timer for the deadline and halts with
//! interrupts enabled (atomically: `sti; hlt`, or Xen's `SCHEDOP_block`), so a wake-up between
//! "nothing to do" and "halt" cannot be lost. When `idle` returns, for the deadline or any
//! interrupt, the executor reads the clock and fires expired timers. It never idles with a
//! task ready or with a deadline already past, so it does not spin.
//!
//! # Why wakers never run in interrupt context
//!
//! Interrupts are masked except inside `idle`, and Ringbolt's handlers only acknowledge and
//! record what happened. Wakers run in thread context, from the executor, from tasks, or from
//! `idle` after the halt, which may wake the tasks an interrupt concerns. So no lock here is
//! ever taken by an interrupted holder's handler, the spin lock never spins, and `RefCell` is
//! enough for everything else. A waker called from a handler would break this: it could
//! interrupt a task holding the ready-queue lock and deadlock.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod combinator;
mod executor;
mod task;
mod timer;

pub use combinator::{Either, Select, YieldNow, select, yield_now};
pub use executor::{Executor, Handle, Idle, JoinHandle};
pub use timer::{Elapsed, Sleep, Timeout};
