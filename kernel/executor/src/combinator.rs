//! Small futures for writing tasks: [`select`] and [`yield_now`].

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

/// The output of whichever side of a [`select`] finished first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Waits for the first of two futures; the other is dropped unfinished.
///
/// `a` is polled first, so when both are ready on the same poll `a` wins: put the future whose
/// result must not be lost (a received packet, say) first and the timer second.
pub fn select<A: Future, B: Future>(a: A, b: B) -> Select<A, B> {
    Select {
        inner: Some((Box::pin(a), Box::pin(b))),
    }
}

/// Both sides of a [`Select`], boxed so `Select` is `Unpin` and pins them without unsafe
/// projection.
type Sides<A, B> = (Pin<Box<A>>, Pin<Box<B>>);

/// The future of [`select`].
pub struct Select<A, B> {
    /// `None` once finished: the loser has been dropped.
    inner: Option<Sides<A, B>>,
}

impl<A: Future, B: Future> Future for Select<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (a, b) = self.inner.as_mut().expect("Select polled after completion");
        let output = if let Poll::Ready(value) = a.as_mut().poll(cx) {
            Either::Left(value)
        } else if let Poll::Ready(value) = b.as_mut().poll(cx) {
            Either::Right(value)
        } else {
            return Poll::Pending;
        };
        // Drop the loser now: it may hold a timer or a buffer that should not wait for the
        // `Select` itself to be dropped.
        self.inner = None;
        Poll::Ready(output)
    }
}

impl<A, B> fmt::Debug for Select<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("finished", &self.inner.is_none())
            .finish()
    }
}

/// Gives the other ready tasks a turn, then continues.
///
/// A cooperative executor cannot preempt, so a long computation should call this now and then.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // Queue ourselves behind every task already ready; the executor polls those first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::rc::Rc;
    use core::cell::Cell;
    use core::future;
    use core::task::Waker;

    struct DropFlag(Rc<Cell<bool>>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    /// Never completes; sets the flag when dropped.
    fn pending_with_flag() -> (Rc<Cell<bool>>, impl Future<Output = u8>) {
        let dropped = Rc::new(Cell::new(false));
        let flag = DropFlag(dropped.clone());
        let future = async move {
            let _flag = flag;
            future::pending::<u8>().await
        };
        (dropped, future)
    }

    fn poll<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn select_returns_the_ready_side_and_drops_the_other() {
        let (dropped, slow) = pending_with_flag();
        let mut select = select(slow, future::ready("fast"));
        assert_eq!(poll(&mut select), Poll::Ready(Either::Right("fast")));
        assert!(dropped.get());

        let (dropped, slow) = pending_with_flag();
        let mut select = super::select(future::ready(1u32), slow);
        assert_eq!(poll(&mut select), Poll::Ready(Either::Left(1)));
        assert!(dropped.get());
    }

    #[test]
    fn select_prefers_the_first_future_when_both_are_ready() {
        let mut select = select(future::ready(1), future::ready(2));
        assert_eq!(poll(&mut select), Poll::Ready(Either::Left(1)));
    }

    #[test]
    fn select_is_pending_while_neither_side_is_ready() {
        let (a_dropped, a) = pending_with_flag();
        let (b_dropped, b) = pending_with_flag();
        let mut select = select(a, b);
        assert!(poll(&mut select).is_pending());
        assert!(!a_dropped.get() && !b_dropped.get());
        drop(select);
        assert!(a_dropped.get() && b_dropped.get());
    }

    #[test]
    #[should_panic(expected = "Select polled after completion")]
    fn select_polled_after_completion_panics() {
        let mut select = select(future::ready(()), future::ready(()));
        let _ = poll(&mut select);
        let _ = poll(&mut select);
    }

    #[test]
    fn yield_now_is_pending_once_and_wakes_itself() {
        use alloc::sync::Arc;
        use alloc::task::Wake;
        use core::sync::atomic::{AtomicUsize, Ordering};

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut yield_now = yield_now();
        assert!(Pin::new(&mut yield_now).poll(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(Pin::new(&mut yield_now).poll(&mut cx).is_ready());
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
    }
}
