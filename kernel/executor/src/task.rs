//! The task table, task ids and the wakers that queue them.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};

use hermit_sync::SpinMutex;

/// A task's future, type-erased. Not `Send`: it never leaves the executor's CPU.
pub(crate) type TaskFuture = Pin<Box<dyn Future<Output = ()>>>;

/// Ids of tasks that asked to be polled, oldest first.
///
/// The one piece of executor state a [`core::task::Waker`] touches. A waker must be `Send +
/// Sync`, so this sits behind a lock rather than in a `RefCell`; nothing here runs in interrupt
/// context (see the crate doc), so a plain spin lock never spins.
pub(crate) type ReadyQueue = Arc<SpinMutex<VecDeque<TaskId>>>;

/// A slot in the task table plus the slot's generation when the task was spawned.
///
/// The generation makes ids unique over time: a waker that outlives its task carries the old
/// generation and so cannot wake whatever task reuses the slot. It wraps after 2^32 reuses of
/// one slot, far beyond the life of a waker a task forgot to drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskId {
    index: u32,
    generation: u32,
}

impl TaskId {
    /// The slot index `block_on` uses for its `main` future, which lives on `block_on`'s stack
    /// rather than in the table. The table never grows this large.
    const MAIN_INDEX: u32 = u32::MAX;

    /// An id for the `main` future of the `generation`th call to `block_on`.
    pub(crate) const fn main(generation: u32) -> Self {
        TaskId {
            index: Self::MAIN_INDEX,
            generation,
        }
    }

    pub(crate) const fn is_main(self) -> bool {
        self.index == Self::MAIN_INDEX
    }
}

/// The state behind a task's [`core::task::Waker`]: which task, and whether it is queued.
#[derive(Debug)]
pub(crate) struct TaskWaker {
    id: TaskId,
    /// Set while `id` is in the ready queue, so a task woken many times between polls is
    /// polled once and the queue is bounded by the number of tasks.
    queued: AtomicBool,
    ready: ReadyQueue,
}

impl TaskWaker {
    pub(crate) fn new(id: TaskId, ready: ReadyQueue) -> Arc<Self> {
        Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(false),
            ready,
        })
    }

    /// Called just before polling: a wake from here on must queue the task again, even one
    /// from inside the poll itself (a task that yields).
    pub(crate) fn dequeued(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.lock().push_back(self.id);
        }
    }
}

/// A spawned task: its future, or `None` while the executor is polling it.
///
/// The future is taken out for the poll so that the table is not borrowed while task code
/// runs; task code may spawn, which inserts into the table.
struct Task {
    future: Option<TaskFuture>,
    waker: Arc<TaskWaker>,
}

struct Slot {
    generation: u32,
    task: Option<Task>,
}

/// All live tasks: a slab whose freed slots are reused, so ids stay small and a task costs no
/// allocation beyond its future and waker.
pub(crate) struct TaskTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    ready: ReadyQueue,
}

impl TaskTable {
    pub(crate) fn new(ready: ReadyQueue) -> Self {
        TaskTable {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            ready,
        }
    }

    /// Number of tasks spawned and not yet finished.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Adds a task and queues it for its first poll.
    pub(crate) fn insert(&mut self, future: TaskFuture) -> TaskId {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|&index| index != TaskId::MAIN_INDEX)
                    .expect("task table full");
                self.slots.push(Slot {
                    generation: 0,
                    task: None,
                });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        let id = TaskId {
            index,
            generation: slot.generation,
        };
        let waker = TaskWaker::new(id, self.ready.clone());
        waker.wake_by_ref();
        slot.task = Some(Task {
            future: Some(future),
            waker,
        });
        self.live += 1;
        id
    }

    /// Takes a task's future out for polling, with its waker marked as no longer queued.
    ///
    /// `None` for a stale id (the task finished, perhaps its slot was reused): a waker that
    /// outlived its task is harmless.
    pub(crate) fn take(&mut self, id: TaskId) -> Option<(TaskFuture, Arc<TaskWaker>)> {
        let task = self.task_mut(id)?;
        let future = task.future.take()?;
        task.waker.dequeued();
        Some((future, task.waker.clone()))
    }

    /// Returns a future that `take` handed out and that is still pending.
    pub(crate) fn put_back(&mut self, id: TaskId, future: TaskFuture) {
        if let Some(task) = self.task_mut(id) {
            task.future = Some(future);
        }
    }

    /// Frees the slot of a finished task; its id goes stale.
    pub(crate) fn remove(&mut self, id: TaskId) {
        if self.task_mut(id).is_none() {
            return;
        }
        let slot = &mut self.slots[id.index as usize];
        slot.task = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
    }

    /// Empties the table, handing back the futures so the caller can drop them outside any
    /// borrow (dropping a future runs arbitrary code, which may use the executor's handle).
    pub(crate) fn drain(&mut self) -> Vec<TaskFuture> {
        let futures = self
            .slots
            .iter_mut()
            .filter_map(|slot| slot.task.take()?.future)
            .collect();
        self.slots.clear();
        self.free.clear();
        self.live = 0;
        futures
    }

    fn task_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.task.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::future;
    use core::task::Waker;

    fn table() -> (TaskTable, ReadyQueue) {
        let ready = ReadyQueue::default();
        (TaskTable::new(ready.clone()), ready)
    }

    fn pending() -> TaskFuture {
        Box::pin(future::pending())
    }

    #[test]
    fn insert_queues_the_new_task_once() {
        let (mut tasks, ready) = table();
        let id = tasks.insert(pending());
        assert_eq!(tasks.len(), 1);
        assert_eq!(ready.lock().iter().copied().collect::<Vec<_>>(), [id]);
    }

    #[test]
    fn waking_a_queued_task_again_does_not_queue_it_twice() {
        let (mut tasks, ready) = table();
        let id = tasks.insert(pending());
        // What the executor does: pop the id, then take the future (which clears `queued`).
        assert_eq!(ready.lock().pop_front(), Some(id));
        let (_future, waker) = tasks.take(id).unwrap();
        let waker = Waker::from(waker);
        waker.wake_by_ref();
        waker.wake_by_ref();
        waker.wake_by_ref();
        assert_eq!(ready.lock().len(), 1);
    }

    #[test]
    fn reused_slot_gets_a_new_generation() {
        let (mut tasks, _ready) = table();
        let old = tasks.insert(pending());
        tasks.remove(old);
        let new = tasks.insert(pending());
        assert_eq!(new.index, old.index);
        assert_ne!(new, old);
        assert!(tasks.take(old).is_none());
        assert!(tasks.take(new).is_some());
    }

    #[test]
    fn stale_id_is_ignored_everywhere() {
        let (mut tasks, _ready) = table();
        let old = tasks.insert(pending());
        tasks.remove(old);
        let new = tasks.insert(pending());
        tasks.remove(old);
        tasks.put_back(old, pending());
        assert_eq!(tasks.len(), 1);
        assert!(tasks.take(new).is_some());
    }

    #[test]
    fn take_hands_out_a_future_only_once() {
        let (mut tasks, _ready) = table();
        let id = tasks.insert(pending());
        let (future, _waker) = tasks.take(id).unwrap();
        assert!(tasks.take(id).is_none());
        tasks.put_back(id, future);
        assert!(tasks.take(id).is_some());
    }

    #[test]
    fn drain_returns_every_future_and_empties_the_table() {
        let (mut tasks, _ready) = table();
        let a = tasks.insert(pending());
        tasks.insert(pending());
        tasks.insert(pending());
        tasks.remove(a);
        assert_eq!(tasks.drain().len(), 2);
        assert_eq!(tasks.len(), 0);
        assert!(tasks.insert(pending()).index == 0);
    }

    #[test]
    fn main_ids_never_name_a_slot() {
        let (mut tasks, _ready) = table();
        let id = tasks.insert(pending());
        assert!(!id.is_main());
        assert!(TaskId::main(0).is_main());
        assert!(tasks.take(TaskId::main(0)).is_none());
    }
}
