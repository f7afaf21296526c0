//! The executor, the handle tasks use to reach it, and join handles.

use alloc::boxed::Box;
use alloc::rc::Rc;
use core::cell::RefCell;
use core::convert::Infallible;
use core::fmt;
use core::future::Future;
use core::ops::ControlFlow;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use ringbolt_time::{Clock, Instant};

use crate::task::{ReadyQueue, TaskId, TaskTable, TaskWaker};
use crate::timer::{Sleep, Timeout, Timers};

/// What the executor waits for once the ready tasks have run; see [`Executor::run_ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// Tasks are queued: run another pass without waiting.
    Ready,
    /// Nothing is queued; the earliest timer is due at this instant (always later than the
    /// clock read just before returning).
    Until(Instant),
    /// Nothing is queued and no timer is pending: only an event from outside (an interrupt
    /// the kernel turns into a wake) can make progress.
    Forever,
}

/// State shared by the executor and every [`Handle`].
struct Shared {
    timers: Rc<Timers>,
    tasks: RefCell<TaskTable>,
    ready: ReadyQueue,
}

impl Shared {
    /// Polls one task, if `id` still names one.
    fn run_task(&self, id: TaskId) {
        // The table is borrowed only around `take` and the return, never while the task runs:
        // the task may spawn.
        let Some((mut future, waker)) = self.tasks.borrow_mut().take(id) else {
            return;
        };
        let waker = Waker::from(waker);
        if future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            self.tasks.borrow_mut().remove(id);
            // `future` drops here, outside the borrow: its destructors may use the handle.
        } else {
            self.tasks.borrow_mut().put_back(id, future);
        }
    }
}

/// A cooperative, single-CPU executor with timers. See the crate doc for the design.
pub struct Executor {
    shared: Rc<Shared>,
    /// Counts `block_on` calls, so that a waker kept from an earlier `main` cannot wake
    /// the current one.
    main_generation: u32,
}

impl Executor {
    /// An executor that measures its timers on `clock`.
    pub fn new(clock: Rc<dyn Clock>) -> Self {
        let ready = ReadyQueue::default();
        Executor {
            shared: Rc::new(Shared {
                timers: Rc::new(Timers::new(clock)),
                tasks: RefCell::new(TaskTable::new(ready.clone())),
                ready,
            }),
            main_generation: 0,
        }
    }

    /// A cloneable handle for spawning and timers from inside tasks.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Starts `future` as a task; see [`Handle::spawn`].
    pub fn spawn<F: Future + 'static>(&self, future: F) -> JoinHandle<F::Output> {
        self.handle().spawn(future)
    }

    /// Runs tasks until `main` completes, and returns its output.
    ///
    /// Whenever nothing is ready, calls `idle` with the earliest timer deadline (`None` if no
    /// timer is pending). `idle` should wait for that deadline or an interrupt, whichever
    /// comes first, and may return early; it runs in thread context, so it may also wake tasks
    /// for events its interrupt handlers recorded. Then the executor reads the clock, fires
    /// expired timers and goes on. `idle` is never called while a task is ready, nor with a
    /// deadline that had already passed when the executor last read the clock.
    ///
    /// Tasks still pending when `main` completes stay in the table; a later `run_ready` or
    /// `block_on` continues them.
    pub fn block_on<F: Future>(
        &mut self,
        main: F,
        mut idle: impl FnMut(Option<Instant>),
    ) -> F::Output {
        let mut main = pin!(main);
        self.main_generation = self.main_generation.wrapping_add(1);
        let main_id = TaskId::main(self.main_generation);
        let main_waker = TaskWaker::new(main_id, self.shared.ready.clone());
        let waker = Waker::from(main_waker.clone());
        let mut cx = Context::from_waker(&waker);
        waker.wake_by_ref();
        loop {
            let pass = self.pass(|id| {
                if id != main_id {
                    return ControlFlow::Continue(());
                }
                main_waker.dequeued();
                match main.as_mut().poll(&mut cx) {
                    Poll::Ready(output) => ControlFlow::Break(output),
                    Poll::Pending => ControlFlow::Continue(()),
                }
            });
            if let ControlFlow::Break(output) = pass {
                return output;
            }
            match self.next_wait() {
                Idle::Ready => {}
                Idle::Until(deadline) => idle(Some(deadline)),
                Idle::Forever => idle(None),
            }
        }
    }

    /// One scheduling pass: fires expired timers and polls each ready task once. Returns what
    /// the executor waits for next, so the kernel or a test can single-step it.
    pub fn run_ready(&mut self) -> Idle {
        let ControlFlow::Continue(()) = self.pass(|_| ControlFlow::<Infallible>::Continue(()));
        self.next_wait()
    }

    /// Tasks spawned and not yet finished (`block_on`'s `main` is not one).
    pub fn task_count(&self) -> usize {
        self.shared.tasks.borrow().len()
    }

    /// Timers set by pending [`Sleep`]s.
    pub fn timer_count(&self) -> usize {
        self.shared.timers.len()
    }

    /// Fires expired timers, then polls the tasks that are ready now.
    ///
    /// Only those: a task woken during the pass (one that yields, say) waits for the next
    /// pass, behind the others, so it cannot starve them or keep the clock from being read.
    /// Ids of `main` futures go to `poll_main`; the pass stops as soon as it breaks.
    fn pass<B>(&self, mut poll_main: impl FnMut(TaskId) -> ControlFlow<B>) -> ControlFlow<B> {
        self.shared.timers.fire_expired();
        let ready_now = self.shared.ready.lock().len();
        for _ in 0..ready_now {
            // Pop under a short lock: the task we poll may wake others, which takes it again.
            let Some(id) = self.shared.ready.lock().pop_front() else {
                break;
            };
            if id.is_main() {
                poll_main(id)?;
            } else {
                self.shared.run_task(id);
            }
        }
        ControlFlow::Continue(())
    }

    fn next_wait(&self) -> Idle {
        if self.shared.ready.lock().is_empty() {
            // Time passes while tasks run; a timer that came due meanwhile must not send the
            // kernel to sleep until a deadline already past.
            self.shared.timers.fire_expired();
        }
        if !self.shared.ready.lock().is_empty() {
            return Idle::Ready;
        }
        match self.shared.timers.next_deadline() {
            Some(deadline) => Idle::Until(deadline),
            None => Idle::Forever,
        }
    }
}

impl Drop for Executor {
    /// Drops the unfinished tasks. Their futures often hold a [`Handle`], which holds the task
    /// table: without this the two would keep each other alive.
    fn drop(&mut self) {
        let futures = self.shared.tasks.borrow_mut().drain();
        self.shared.ready.lock().clear();
        // Dropped outside the borrow: a future's destructors may use the handle.
        drop(futures);
    }
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("tasks", &self.task_count())
            .field("ready", &self.shared.ready.lock().len())
            .field("timers", &self.timer_count())
            .finish()
    }
}

/// A handle to the executor for code running inside it: spawning, the clock, timers.
///
/// `Rc`-based, so it stays on the executor's CPU, like the tasks themselves.
#[derive(Clone)]
pub struct Handle {
    shared: Rc<Shared>,
}

impl Handle {
    /// Starts `future` as a new task, to run whenever the current task awaits.
    ///
    /// Dropping the returned [`JoinHandle`] detaches the task; it runs on regardless. A task
    /// spawned after the [`Executor`] is dropped never runs.
    pub fn spawn<F: Future + 'static>(&self, future: F) -> JoinHandle<F::Output> {
        let state = Rc::new(RefCell::new(JoinState::Running(None)));
        let result = state.clone();
        let task = async move {
            let output = future.await;
            let waiting =
                core::mem::replace(&mut *result.borrow_mut(), JoinState::Finished(output));
            if let JoinState::Running(Some(waker)) = waiting {
                waker.wake();
            }
        };
        self.shared.tasks.borrow_mut().insert(Box::pin(task));
        JoinHandle { state }
    }

    /// Now, on the executor's clock.
    pub fn now(&self) -> Instant {
        self.shared.timers.now()
    }

    /// Completes `duration` from now.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(self.now() + duration)
    }

    /// Completes when the clock reaches `deadline` (at once if it has).
    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep::new(self.shared.timers.clone(), deadline)
    }

    /// Runs `future` for at most `duration` from now.
    pub fn timeout<F: Future>(&self, duration: Duration, future: F) -> Timeout<F> {
        Timeout::new(future, self.sleep(duration))
    }

    /// Runs `future` until at most `deadline`.
    pub fn timeout_at<F: Future>(&self, deadline: Instant, future: F) -> Timeout<F> {
        Timeout::new(future, self.sleep_until(deadline))
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

enum JoinState<T> {
    /// The task runs; the waker is that of whoever awaits the `JoinHandle`.
    Running(Option<Waker>),
    Finished(T),
    /// The output was handed to the `JoinHandle`'s awaiter.
    Taken,
}

/// Awaits a spawned task's output. Dropping it detaches the task.
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished (and its output not yet been taken by awaiting this).
    pub fn is_finished(&self) -> bool {
        matches!(*self.state.borrow(), JoinState::Finished(_))
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.borrow_mut();
        match core::mem::replace(&mut *state, JoinState::Taken) {
            JoinState::Finished(output) => Poll::Ready(output),
            JoinState::Running(waker) => {
                let waker = match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => waker,
                    _ => cx.waker().clone(),
                };
                *state = JoinState::Running(Some(waker));
                Poll::Pending
            }
            JoinState::Taken => panic!("JoinHandle polled after completion"),
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Either, Elapsed, select, yield_now};
    use alloc::vec::Vec;
    use core::cell::Cell;
    use core::future;
    use ringbolt_time::MockClock;

    const MS: Duration = Duration::from_millis(1);

    fn setup() -> (Rc<MockClock>, Executor) {
        let clock = Rc::new(MockClock::new(Instant::from_millis(1)));
        let executor = Executor::new(clock.clone());
        (clock, executor)
    }

    /// The `idle` of a test: jumps the clock to the deadline, as a halt until the timer
    /// interrupt would. Tests have no other event source, so `idle(None)` means a lost wake-up
    /// and a deadline not in the future means a busy spin: both fail the test.
    fn advance_clock(clock: &MockClock) -> impl FnMut(Option<Instant>) + '_ {
        move |deadline| {
            let deadline = deadline.expect("idle without a deadline while work is pending");
            assert!(
                deadline > clock.now(),
                "idle with a past deadline: busy spin"
            );
            clock.advance_to(deadline);
        }
    }

    fn never_idle(_: Option<Instant>) {
        panic!("idle while work was ready");
    }

    struct DropFlag(Rc<Cell<bool>>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    #[test]
    fn sleep_completes_exactly_at_its_deadline_not_before() {
        let (clock, mut executor) = setup();
        let handle = executor.handle();
        let deadline = clock.now() + 100 * MS;
        let done = Rc::new(Cell::new(false));
        let task_done = done.clone();
        executor.spawn(async move {
            handle.sleep(100 * MS).await;
            task_done.set(true);
        });
        assert_eq!(executor.run_ready(), Idle::Until(deadline));
        clock.advance_to(Instant::from_nanos(deadline.as_nanos() - 1));
        assert_eq!(executor.run_ready(), Idle::Until(deadline));
        assert!(!done.get());
        assert_eq!(executor.task_count(), 1);
        clock.advance_to(deadline);
        assert_eq!(executor.run_ready(), Idle::Forever);
        assert!(done.get());
        assert_eq!(executor.task_count(), 0);
        assert_eq!(executor.timer_count(), 0);
    }

    #[test]
    fn sleepers_wake_in_deadline_order_at_their_deadlines() {
        let (clock, mut executor) = setup();
        let handle = executor.handle();
        let start = handle.now();
        let woken = Rc::new(RefCell::new(Vec::new()));
        let joins: Vec<_> = [30, 10, 20]
            .into_iter()
            .map(|ms| {
                let handle = handle.clone();
                let woken = woken.clone();
                executor.spawn(async move {
                    handle.sleep(ms * MS).await;
                    woken.borrow_mut().push((ms, handle.now() - start));
                })
            })
            .collect();
        executor.block_on(
            async {
                for join in joins {
                    join.await;
                }
            },
            advance_clock(&clock),
        );
        assert_eq!(
            *woken.borrow(),
            [(10, 10 * MS), (20, 20 * MS), (30, 30 * MS)]
        );
    }

    #[test]
    fn timeout_elapses_when_the_future_is_slower() {
        let (clock, mut executor) = setup();
        let handle = executor.handle();
        let start = handle.now();
        let result = executor.block_on(
            handle.timeout(10 * MS, handle.sleep(20 * MS)),
            advance_clock(&clock),
        );
        assert_eq!(result, Err(Elapsed));
        assert_eq!(clock.now() - start, 10 * MS);
        assert_eq!(executor.timer_count(), 0, "the slow sleep's timer is gone");
        assert_eq!(executor.run_ready(), Idle::Forever);
    }

    #[test]
    fn timeout_returns_the_value_when_the_future_is_faster() {
        let (clock, mut executor) = setup();
        let handle = executor.handle();
        let start = handle.now();
        let fast = {
            let handle = handle.clone();
            async move {
                handle.sleep(10 * MS).await;
                5
            }
        };
        let result = executor.block_on(handle.timeout(20 * MS, fast), advance_clock(&clock));
        assert_eq!(result, Ok(5));
        assert_eq!(clock.now() - start, 10 * MS);
        assert_eq!(executor.timer_count(), 0, "the timeout's own timer is gone");
        assert_eq!(executor.run_ready(), Idle::Forever);
    }

    #[test]
    fn timeout_at_uses_an_absolute_deadline() {
        let (clock, mut executor) = setup();
        let handle = executor.handle();
        let deadline = handle.now() + 3 * MS;
        let result = executor.block_on(
            handle.timeout_at(deadline, future::pending::<()>()),
            advance_clock(&clock),
        );
        assert_eq!(result, Err(Elapsed));
        assert_eq!(clock.now(), deadline);
    }

    #[test]
    fn select_picks_the_first_ready_and_drops_the_other() {
        let (clock, mut executor) = setup();
        let handle = executor.handle();
        let dropped = Rc::new(Cell::new(false));
        let slow = {
            let handle = handle.clone();
            let flag = DropFlag(dropped.clone());
            async move {
                let _flag = flag;
                handle.sleep(20 * MS).await;
                "slow"
            }
        };
        let fast = {
            let handle = handle.clone();
            async move {
                handle.sleep(10 * MS).await;
                "fast"
            }
        };
        let winner = executor.block_on(select(slow, fast), advance_clock(&clock));
        assert_eq!(winner, Either::Right("fast"));
        assert!(dropped.get());
        assert_eq!(executor.timer_count(), 0);
    }

    #[test]
    fn spawned_tasks_run_to_completion_and_join_handles_yield_their_values() {
        let (clock, mut executor) = setup();
        let handle = executor.handle();
        let outer = {
            let handle = handle.clone();
            executor.spawn(async move {
                // A task spawning a task, and awaiting it.
                let inner_handle = handle.clone();
                let inner = handle.spawn(async move {
                    inner_handle.sleep(5 * MS).await;
                    2
                });
                inner.await * 10
            })
        };
        let plain = executor.spawn(async { 3 });
        let sum = executor.block_on(async { outer.await + plain.await }, advance_clock(&clock));
        assert_eq!(sum, 23);
        assert_eq!(executor.task_count(), 0);
    }

    #[test]
    fn join_handle_reports_finished_before_it_is_awaited() {
        let (_clock, mut executor) = setup();
        let join = executor.spawn(async { 9 });
        assert!(!join.is_finished());
        assert_eq!(executor.run_ready(), Idle::Forever);
        assert!(join.is_finished());
        assert_eq!(executor.block_on(join, never_idle), 9);
    }

    #[test]
    fn dropped_join_handle_detaches_a_task_that_runs_on() {
        let (clock, mut executor) = setup();
        let handle = executor.handle();
        let done = Rc::new(Cell::new(false));
        let task_done = done.clone();
        let task_handle = handle.clone();
        drop(executor.spawn(async move {
            task_handle.sleep(5 * MS).await;
            task_done.set(true);
        }));
        executor.block_on(handle.sleep(10 * MS), advance_clock(&clock));
        assert!(done.get());
    }

    #[test]
    fn dropped_sleep_leaves_no_timer_behind() {
        let (_clock, mut executor) = setup();
        let handle = executor.handle();
        let join = executor.spawn(async move {
            // The sleep is polled (and sets its timer) once, then loses to the yield.
            select(yield_now(), handle.sleep(1000 * MS)).await
        });
        assert_eq!(executor.run_ready(), Idle::Ready);
        assert_eq!(executor.timer_count(), 1);
        assert_eq!(executor.run_ready(), Idle::Forever);
        assert_eq!(executor.timer_count(), 0);
        assert!(join.is_finished());
    }

    #[test]
    fn yield_now_lets_another_task_run_in_between() {
        let (_clock, mut executor) = setup();
        let log = Rc::new(RefCell::new(Vec::new()));
        for name in ["a", "b"] {
            let log = log.clone();
            executor.spawn(async move {
                log.borrow_mut().push((name, 1));
                yield_now().await;
                log.borrow_mut().push((name, 2));
            });
        }
        assert_eq!(executor.run_ready(), Idle::Ready);
        assert_eq!(*log.borrow(), [("a", 1), ("b", 1)]);
        assert_eq!(executor.run_ready(), Idle::Forever);
        assert_eq!(*log.borrow(), [("a", 1), ("b", 1), ("a", 2), ("b", 2)]);
    }

    /// Pending until woken through its stashed waker; counts its polls.
    fn wait_for_wake(
        waker: Rc<RefCell<Option<Waker>>>,
        polls: Rc<Cell<u32>>,
    ) -> impl Future<Output = ()> {
        future::poll_fn(move |cx| {
            polls.set(polls.get() + 1);
            *waker.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        })
    }

    #[test]
    fn stale_waker_after_task_completion_is_ignored() {
        let (_clock, mut executor) = setup();
        let stale = Rc::new(RefCell::new(None::<Waker>));
        let stash = stale.clone();
        executor.spawn(future::poll_fn(move |cx| {
            *stash.borrow_mut() = Some(cx.waker().clone());
            Poll::Ready(())
        }));
        assert_eq!(executor.run_ready(), Idle::Forever);
        let stale = stale.borrow_mut().take().unwrap();
        stale.wake_by_ref();
        assert_eq!(executor.run_ready(), Idle::Forever);

        // A new task takes the finished task's slot; the old waker must not reach it.
        let polls = Rc::new(Cell::new(0));
        executor.spawn(wait_for_wake(Rc::default(), polls.clone()));
        assert_eq!(executor.run_ready(), Idle::Forever);
        assert_eq!(polls.get(), 1);
        stale.wake();
        assert_eq!(executor.run_ready(), Idle::Forever);
        assert_eq!(polls.get(), 1);
        assert_eq!(executor.task_count(), 1);
    }

    #[test]
    fn task_woken_many_times_between_polls_is_polled_once() {
        let (_clock, mut executor) = setup();
        let waker = Rc::new(RefCell::new(None));
        let polls = Rc::new(Cell::new(0));
        executor.spawn(wait_for_wake(waker.clone(), polls.clone()));
        assert_eq!(executor.run_ready(), Idle::Forever);
        let waker = waker.borrow_mut().take().unwrap();
        waker.wake_by_ref();
        waker.wake_by_ref();
        waker.wake();
        assert_eq!(executor.run_ready(), Idle::Forever);
        assert_eq!(polls.get(), 2);
    }

    #[test]
    fn block_on_returns_main_output_with_background_tasks_pending() {
        let (_clock, mut executor) = setup();
        let handle = executor.handle();
        executor.spawn(async move { handle.sleep(3_600_000 * MS).await });
        let output = executor.block_on(
            async {
                yield_now().await;
                42
            },
            never_idle,
        );
        assert_eq!(output, 42);
        assert_eq!(executor.task_count(), 1);
        assert_eq!(executor.timer_count(), 1);
    }

    #[test]
    fn block_on_idles_forever_without_timers_until_idle_wakes_main() {
        let (_clock, mut executor) = setup();
        let waker = Rc::new(RefCell::new(None::<Waker>));
        let stash = waker.clone();
        let mut woken = false;
        let main = future::poll_fn(move |cx| {
            if woken {
                return Poll::Ready("woken");
            }
            woken = true;
            *stash.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        });
        let mut idles = Vec::new();
        // As the kernel's idle does: wait, then wake whoever the recorded event concerns.
        let output = executor.block_on(main, |deadline| {
            idles.push(deadline);
            waker.borrow_mut().take().unwrap().wake();
        });
        assert_eq!(output, "woken");
        assert_eq!(idles, [None]);
    }

    #[test]
    fn waker_of_an_earlier_main_does_not_wake_the_current_one() {
        let (_clock, mut executor) = setup();
        let stale = Rc::new(RefCell::new(None::<Waker>));
        let stash = stale.clone();
        executor.block_on(
            future::poll_fn(|cx| {
                *stash.borrow_mut() = Some(cx.waker().clone());
                Poll::Ready(())
            }),
            never_idle,
        );
        let stale = stale.borrow_mut().take().unwrap();

        let current = Rc::new(RefCell::new(None::<Waker>));
        let polls = Rc::new(Cell::new(0));
        let main = {
            let current = current.clone();
            let polls = polls.clone();
            future::poll_fn(move |cx| {
                polls.set(polls.get() + 1);
                if polls.get() == 2 {
                    return Poll::Ready(());
                }
                *current.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            })
        };
        let mut idles = 0;
        executor.block_on(main, |deadline| {
            assert_eq!(deadline, None);
            idles += 1;
            if idles == 1 {
                stale.wake_by_ref();
            } else {
                assert_eq!(polls.get(), 1, "the stale wake polled main");
                current.borrow_mut().take().unwrap().wake();
            }
        });
        assert_eq!(polls.get(), 2);
        assert_eq!(idles, 2);
    }

    #[test]
    fn dropping_the_executor_drops_unfinished_tasks() {
        let (_clock, mut executor) = setup();
        let handle = executor.handle();
        let dropped = Rc::new(Cell::new(false));
        let flag = DropFlag(dropped.clone());
        executor.spawn(async move {
            let _flag = flag;
            handle.sleep(MS).await;
        });
        assert!(matches!(executor.run_ready(), Idle::Until(_)));
        drop(executor);
        assert!(dropped.get());
    }

    #[test]
    fn thousand_sleepers_with_scattered_deadlines_complete_in_order() {
        let (clock, mut executor) = setup();
        let handle = executor.handle();
        let start = handle.now();
        let woken = Rc::new(RefCell::new(Vec::new()));
        let mut seed = 0x2545_f491_u64;
        let mut joins = Vec::new();
        for i in 0..1000u32 {
            // Numerical Recipes LCG; 500 distinct deadlines for 1000 tasks, so ties happen.
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let deadline = start + Duration::from_micros((seed >> 33) % 500 + 1);
            let handle = handle.clone();
            let woken = woken.clone();
            joins.push(executor.spawn(async move {
                handle.sleep_until(deadline).await;
                assert_eq!(handle.now(), deadline, "woken exactly at the deadline");
                woken.borrow_mut().push((deadline, i));
            }));
        }
        let mut idles = 0;
        let mut idle = advance_clock(&clock);
        executor.block_on(
            async {
                for join in joins {
                    join.await;
                }
            },
            |deadline| {
                idles += 1;
                idle(deadline);
            },
        );
        let woken = woken.borrow();
        assert_eq!(woken.len(), 1000);
        // Deadline order; spawn order among equal deadlines.
        assert!(woken.is_sorted());
        let distinct = woken
            .iter()
            .map(|&(deadline, _)| deadline)
            .collect::<alloc::collections::BTreeSet<_>>();
        assert_eq!(idles, distinct.len(), "one halt per distinct deadline");
        assert_eq!(executor.task_count(), 0);
        assert_eq!(executor.timer_count(), 0);
    }
}
