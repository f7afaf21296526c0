//! The timer queue, and the futures built on it: [`Sleep`] and [`Timeout`].

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use ringbolt_time::{Clock, Instant};

/// A timer's key: its deadline, then a sequence number so that equal deadlines coexist and
/// fire in the order they were set.
type TimerKey = (Instant, u64);

/// Pending timers, earliest first, and the clock they are measured on.
///
/// Shared (`Rc`) between the executor, which fires expired entries and reads the earliest
/// deadline to hand to `idle`, and every [`Sleep`], which owns exactly one entry at a time and
/// removes it when dropped. A sorted map rather than a heap because a `Sleep` dropped early
/// (the losing side of a timeout, mostly) must remove its entry, and a heap cannot remove
/// from the middle.
pub(crate) struct Timers {
    clock: Rc<dyn Clock>,
    entries: RefCell<BTreeMap<TimerKey, Waker>>,
    next_seq: Cell<u64>,
}

impl Timers {
    pub(crate) fn new(clock: Rc<dyn Clock>) -> Self {
        Timers {
            clock,
            entries: RefCell::new(BTreeMap::new()),
            next_seq: Cell::new(0),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Number of pending timers.
    pub(crate) fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// The earliest pending deadline, `None` if no timer is pending.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .borrow()
            .first_key_value()
            .map(|(&(deadline, _), _)| deadline)
    }

    /// Reads the clock and wakes every timer whose deadline has come, earliest first.
    pub(crate) fn fire_expired(&self) {
        let now = self.now();
        loop {
            // Remove one entry per borrow and wake outside it: a waker is arbitrary code.
            let waker = match self.entries.borrow_mut().first_entry() {
                Some(entry) if entry.key().0 <= now => entry.remove(),
                _ => break,
            };
            waker.wake();
        }
    }

    fn insert(&self, deadline: Instant, waker: &Waker) -> TimerKey {
        let key = (deadline, self.next_seq.get());
        // 2^64 timers would take centuries to set; wrapping only to stay total.
        self.next_seq.set(key.1.wrapping_add(1));
        self.entries.borrow_mut().insert(key, waker.clone());
        key
    }

    /// Points an entry at the waker of the latest poll: a future may move between tasks (or
    /// into a combinator), and the old waker would wake the wrong one.
    fn refresh(&self, key: TimerKey, waker: &Waker) {
        let mut entries = self.entries.borrow_mut();
        match entries.get_mut(&key) {
            Some(old) if old.will_wake(waker) => {}
            Some(old) => old.clone_from(waker),
            // Only fire_expired removes others' entries, and only once the deadline has passed,
            // which the caller has ruled out; re-insert rather than sleep forever regardless.
            None => {
                entries.insert(key, waker.clone());
            }
        }
    }

    fn remove(&self, key: TimerKey) {
        self.entries.borrow_mut().remove(&key);
    }
}

/// Completes at a deadline; from [`Handle::sleep`](crate::Handle::sleep) and
/// [`Handle::sleep_until`](crate::Handle::sleep_until).
///
/// Ready exactly when the clock reads the deadline or later, never before. The timer entry is
/// set on the first pending poll and removed on completion or drop, so a `Sleep` that is never
/// polled or is abandoned early leaves nothing behind to wake anyone.
pub struct Sleep {
    timers: Rc<Timers>,
    deadline: Instant,
    state: SleepState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SleepState {
    Unarmed,
    Armed(TimerKey),
    Done,
}

impl Sleep {
    pub(crate) fn new(timers: Rc<Timers>, deadline: Instant) -> Self {
        Sleep {
            timers,
            deadline,
            state: SleepState::Unarmed,
        }
    }

    /// When this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn finish(&mut self) {
        if let SleepState::Armed(key) = self.state {
            self.timers.remove(key);
        }
        self.state = SleepState::Done;
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The clock, not the timer entry, decides: the entry may not have fired yet when a
        // task is polled for another reason after the deadline.
        match self.state {
            SleepState::Done => Poll::Ready(()),
            _ if self.timers.now() >= self.deadline => {
                self.finish();
                Poll::Ready(())
            }
            SleepState::Armed(key) => {
                self.timers.refresh(key, cx.waker());
                Poll::Pending
            }
            SleepState::Unarmed => {
                let key = self.timers.insert(self.deadline, cx.waker());
                self.state = SleepState::Armed(key);
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.finish();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("state", &self.state)
            .finish()
    }
}

/// The error of a [`Timeout`] whose deadline came first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl core::error::Error for Elapsed {}

/// Runs a future until a deadline; from [`Handle::timeout`](crate::Handle::timeout).
///
/// The future is polled before the timer, so one that is ready at the deadline still wins.
/// Whichever side loses is dropped at once, on the poll that decides: the timer entry goes
/// away when the future wins, and the future's resources (a socket, a buffer) are released
/// when time runs out rather than whenever the `Timeout` itself is dropped.
pub struct Timeout<F> {
    /// Boxed so `Timeout` is `Unpin` and pins its future without unsafe projection.
    inner: Option<(Pin<Box<F>>, Sleep)>,
}

impl<F: Future> Timeout<F> {
    pub(crate) fn new(future: F, sleep: Sleep) -> Self {
        Timeout {
            inner: Some((Box::pin(future), sleep)),
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (future, sleep) = self
            .inner
            .as_mut()
            .expect("Timeout polled after completion");
        let result = if let Poll::Ready(value) = future.as_mut().poll(cx) {
            Ok(value)
        } else if Pin::new(sleep).poll(cx).is_ready() {
            Err(Elapsed)
        } else {
            return Poll::Pending;
        };
        self.inner = None;
        Poll::Ready(result)
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("sleep", &self.inner.as_ref().map(|(_, sleep)| sleep))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::sync::Arc;
    use alloc::task::Wake;
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use core::time::Duration;
    use hermit_sync::SpinMutex;
    use ringbolt_time::MockClock;
    use std::format;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counting_waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    fn setup() -> (Rc<MockClock>, Rc<Timers>) {
        let clock = Rc::new(MockClock::new(Instant::ZERO));
        let timers = Rc::new(Timers::new(clock.clone()));
        (clock, timers)
    }

    fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn sleep_is_pending_until_the_clock_reaches_the_deadline() {
        let (clock, timers) = setup();
        let (_, waker) = counting_waker();
        let mut sleep = Sleep::new(timers.clone(), Instant::from_nanos(100));
        assert!(poll(&mut sleep, &waker).is_pending());
        clock.advance_to(Instant::from_nanos(99));
        assert!(poll(&mut sleep, &waker).is_pending());
        clock.advance_to(Instant::from_nanos(100));
        assert!(poll(&mut sleep, &waker).is_ready());
        assert_eq!(timers.len(), 0, "completion removes the entry");
        assert!(poll(&mut sleep, &waker).is_ready(), "stays complete");
    }

    #[test]
    fn sleep_already_past_its_deadline_completes_without_a_timer() {
        let (clock, timers) = setup();
        clock.advance_to(Instant::from_nanos(50));
        let (count, waker) = counting_waker();
        let mut sleep = Sleep::new(timers.clone(), Instant::from_nanos(50));
        assert!(poll(&mut sleep, &waker).is_ready());
        assert_eq!(timers.len(), 0);
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
    }

    /// A waker that appends its sleep's index to a shared log.
    struct Record(usize, Arc<SpinMutex<Vec<usize>>>);

    impl Wake for Record {
        fn wake(self: Arc<Self>) {
            self.1.lock().push(self.0);
        }
    }

    #[test]
    fn fire_expired_wakes_only_due_timers_in_deadline_order() {
        let (clock, timers) = setup();
        let log = Arc::new(SpinMutex::new(Vec::new()));
        let mut sleeps = Vec::new();
        for (i, deadline) in [30u64, 10, 20, 10, 40].into_iter().enumerate() {
            let waker = Waker::from(Arc::new(Record(i, log.clone())));
            let mut sleep = Sleep::new(timers.clone(), Instant::from_nanos(deadline));
            assert!(poll(&mut sleep, &waker).is_pending());
            sleeps.push(sleep);
        }
        assert_eq!(timers.next_deadline(), Some(Instant::from_nanos(10)));
        clock.advance_to(Instant::from_nanos(30));
        timers.fire_expired();
        // Equal deadlines fire in the order they were set.
        assert_eq!(*log.lock(), [1, 3, 2, 0]);
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.next_deadline(), Some(Instant::from_nanos(40)));
    }

    #[test]
    fn dropped_sleep_removes_its_timer() {
        let (_clock, timers) = setup();
        let (count, waker) = counting_waker();
        let mut sleep = Sleep::new(timers.clone(), Instant::from_nanos(10));
        assert!(poll(&mut sleep, &waker).is_pending());
        assert_eq!(timers.len(), 1);
        drop(sleep);
        assert_eq!(timers.len(), 0);
        assert_eq!(timers.next_deadline(), None);
        timers.fire_expired();
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn unpolled_sleep_sets_no_timer() {
        let (_clock, timers) = setup();
        let sleep = Sleep::new(timers.clone(), Instant::from_nanos(10));
        assert_eq!(timers.len(), 0);
        assert_eq!(sleep.deadline(), Instant::from_nanos(10));
    }

    #[test]
    fn timer_wakes_the_waker_of_the_latest_poll() {
        let (clock, timers) = setup();
        let (first, first_waker) = counting_waker();
        let (second, second_waker) = counting_waker();
        let mut sleep = Sleep::new(timers.clone(), Instant::from_nanos(10));
        assert!(poll(&mut sleep, &first_waker).is_pending());
        assert!(poll(&mut sleep, &second_waker).is_pending());
        assert_eq!(timers.len(), 1, "re-polling does not add entries");
        clock.advance(Duration::from_nanos(10));
        timers.fire_expired();
        assert_eq!(first.0.load(Ordering::Relaxed), 0);
        assert_eq!(second.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn timeout_returns_the_value_of_a_ready_future_and_removes_its_timer() {
        let (_clock, timers) = setup();
        let (_, waker) = counting_waker();
        let mut timeout = Timeout::new(
            core::future::ready(7),
            Sleep::new(timers.clone(), Instant::from_nanos(10)),
        );
        assert_eq!(poll(&mut timeout, &waker), Poll::Ready(Ok(7)));
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn timeout_elapses_and_drops_a_slow_future() {
        let (clock, timers) = setup();
        let (_, waker) = counting_waker();
        let dropped = Rc::new(Cell::new(false));
        struct DropFlag(Rc<Cell<bool>>);
        impl Drop for DropFlag {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let flag = DropFlag(dropped.clone());
        let slow = async move {
            let _flag = flag;
            core::future::pending::<()>().await;
        };
        let mut timeout = Timeout::new(slow, Sleep::new(timers.clone(), Instant::from_nanos(10)));
        assert!(poll(&mut timeout, &waker).is_pending());
        clock.advance_to(Instant::from_nanos(10));
        assert_eq!(poll(&mut timeout, &waker), Poll::Ready(Err(Elapsed)));
        assert!(
            dropped.get(),
            "the losing future is dropped on the deciding poll"
        );
        assert_eq!(timers.len(), 0);
    }

    #[test]
    #[should_panic(expected = "Timeout polled after completion")]
    fn timeout_polled_after_completion_panics() {
        let (_clock, timers) = setup();
        let (_, waker) = counting_waker();
        let mut timeout = Timeout::new(
            core::future::ready(()),
            Sleep::new(timers, Instant::from_nanos(10)),
        );
        let _ = poll(&mut timeout, &waker);
        let _ = poll(&mut timeout, &waker);
    }

    #[test]
    fn elapsed_displays_as_deadline_elapsed() {
        assert_eq!(format!("{Elapsed}"), "deadline elapsed");
        assert_eq!(Elapsed, Elapsed);
    }
}
