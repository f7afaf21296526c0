//! The async front: [`Xenstore`], its operations as futures, [`Watch`] and transactions.

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::{Future, poll_fn};

use ringbolt_shmem::SharedMemory;
use ringbolt_xen_abi::io::xs_wire::{
    XENSTORE_RING_SIZE, XS_DIRECTORY, XS_GET_PERMS, XS_MKDIR, XS_READ, XS_RM, XS_TRANSACTION_END,
    XS_TRANSACTION_START, XS_UNWATCH, XS_WATCH, XS_WRITE,
};

use crate::protocol::{Core, EventQueue, ReplySlot};
use crate::ring::StoreRing;
use crate::wire::{self, Payload};
use crate::{Broken, Notify, Permission, TxId, WatchEvent, XsError};

/// Attempts [`Xenstore::transaction`] makes before giving up with [`XsError::Again`]. A
/// conflict means another writer got in first; unbounded retries could starve us forever
/// against a busy toolstack, and the caller is better placed to decide what then.
pub const TRANSACTION_ATTEMPTS: usize = 16;

/// The xenstore client: one per store page.
///
/// Operations are `async` and run concurrently: each queues its request when first polled
/// (and puts as much of it on the ring as fits, notifying xenstored), and completes when
/// [`Xenstore::process`] finds its reply. Dropping an operation's future after its first poll
/// abandons the reply, not the request: xenstored still carries it out.
///
/// Paths are absolute (`/local/domain/0/backend/...`) or relative to the guest's home
/// (`device/vbd`, meaning `/local/domain/<domid>/device/vbd`). Pass [`TxId::NONE`] outside a
/// transaction.
pub struct Xenstore<M, N> {
    state: RefCell<State<M>>,
    notify: N,
}

#[derive(Debug)]
struct State<M> {
    ring: StoreRing<M>,
    core: Core,
}

impl<M: SharedMemory> State<M> {
    /// Moves what it can both ways, breaking the connection on a framing error. Returns
    /// whether the server should be notified.
    fn pump(&mut self) -> bool {
        if self.core.broken().is_some() {
            return false;
        }
        match self.transfer() {
            Ok(moved) => moved,
            Err(why) => {
                self.core.fail(why);
                false
            }
        }
    }

    /// Reads replies, then writes queued requests. Reading first frees room the server may be
    /// waiting for. At most one ring of replies is read per call, so a server producing as
    /// fast as we consume cannot keep us here: it notifies again, and we come back.
    fn transfer(&mut self) -> Result<bool, Broken> {
        self.ring.check_server()?;
        let mut moved = false;
        let mut budget = XENSTORE_RING_SIZE;
        while budget > 0 {
            let space = self.core.decoder.space();
            let limit = space.len().min(budget);
            let n = self.ring.read(&mut space[..limit])?;
            if n == 0 {
                break;
            }
            moved = true;
            budget -= n;
            if let Some(message) = self.core.decoder.advance(n)? {
                self.core.receive(message);
            }
        }
        loop {
            let chunk = self.core.out.as_slices().0;
            if chunk.is_empty() {
                break;
            }
            let n = self.ring.write(chunk)?;
            if n == 0 {
                break;
            }
            self.core.out.drain(..n);
            moved = true;
        }
        Ok(moved)
    }
}

impl<M: SharedMemory, N: Notify> Xenstore<M, N> {
    /// Takes over the store page `mem`; `notify` signals the store's event channel.
    ///
    /// Fails if the page is too small, or if xenstored is resetting the ring
    /// ([`Broken::Reconnecting`]: try again once it has finished).
    pub fn new(mem: M, notify: N) -> Result<Self, Broken> {
        Ok(Xenstore {
            state: RefCell::new(State {
                ring: StoreRing::new(mem)?,
                core: Core::new(),
            }),
            notify,
        })
    }

    /// Moves requests to the ring and replies off it, and wakes the futures whose replies or
    /// events arrived. The kernel calls this when the store's event channel fires; calling it
    /// more often (on every executor poll) is harmless. It never waits, and reads at most one
    /// ring's worth of replies per call: a server that keeps producing notifies again.
    pub fn process(&self) {
        self.with_core(|_| ());
    }

    /// Why the connection broke, if it has: every operation then fails with this.
    pub fn broken(&self) -> Option<Broken> {
        self.state.borrow().core.broken()
    }

    /// Runs `f` on the protocol state, moves bytes, then notifies the server and wakes futures
    /// once the state is no longer borrowed.
    fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        let (result, notify, woken) = {
            let mut state = self.state.borrow_mut();
            let result = f(&mut state.core);
            let notify = state.pump();
            (result, notify, state.core.take_woken())
        };
        if notify {
            self.notify.notify();
        }
        for waker in woken {
            waker.wake();
        }
        result
    }

    async fn request(&self, ty: u32, tx: TxId, payload: Vec<u8>) -> Result<Vec<u8>, XsError> {
        let reply = self.with_core(|core| core.submit(ty, tx, payload))?;
        wait(&reply).await
    }

    /// The value at `path` (any bytes; xenstore values carry no terminator).
    pub async fn read(&self, tx: TxId, path: &str) -> Result<Vec<u8>, XsError> {
        let payload = Payload::default().string(path)?.finish();
        self.request(XS_READ, tx, payload).await
    }

    /// Stores `value` at `path`, creating missing parents with empty values.
    pub async fn write(&self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsError> {
        let payload = Payload::default().string(path)?.bytes(value).finish();
        let reply = self.request(XS_WRITE, tx, payload).await?;
        logged(XS_WRITE, wire::expect_ok(&reply))
    }

    /// The names of `path`'s children (leaf names, not paths).
    pub async fn directory(&self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        let payload = Payload::default().string(path)?.finish();
        let reply = self.request(XS_DIRECTORY, tx, payload).await?;
        logged(XS_DIRECTORY, wire::strings(&reply).map_err(XsError::from))
    }

    /// Makes sure `path` exists, creating it and missing parents with empty values.
    pub async fn mkdir(&self, tx: TxId, path: &str) -> Result<(), XsError> {
        let payload = Payload::default().string(path)?.finish();
        let reply = self.request(XS_MKDIR, tx, payload).await?;
        logged(XS_MKDIR, wire::expect_ok(&reply))
    }

    /// Removes `path` and everything under it. Not an error if `path` does not exist, but
    /// `ENOENT` if its parent does not either.
    pub async fn rm(&self, tx: TxId, path: &str) -> Result<(), XsError> {
        let payload = Payload::default().string(path)?.finish();
        let reply = self.request(XS_RM, tx, payload).await?;
        logged(XS_RM, wire::expect_ok(&reply))
    }

    /// `path`'s permissions, owner first.
    pub async fn get_perms(&self, tx: TxId, path: &str) -> Result<Vec<Permission>, XsError> {
        let payload = Payload::default().string(path)?.finish();
        let reply = self.request(XS_GET_PERMS, tx, payload).await?;
        logged(XS_GET_PERMS, wire::permissions(&reply))
    }

    /// Starts a transaction: reads and writes carrying its id see a private copy of the
    /// store, applied atomically by a successful commit. Prefer [`Xenstore::transaction`],
    /// which ends it and retries conflicts.
    pub async fn transaction_start(&self) -> Result<TxId, XsError> {
        let payload = Payload::default().string("")?.finish();
        let reply = self
            .request(XS_TRANSACTION_START, TxId::NONE, payload)
            .await?;
        logged(XS_TRANSACTION_START, wire::tx_id(&reply))
    }

    /// Commits (`commit`) or aborts a transaction. A commit that lost a race with another
    /// change fails with [`XsError::Again`], and nothing of it was applied.
    pub async fn transaction_end(&self, tx: TxId, commit: bool) -> Result<(), XsError> {
        let payload = Payload::default()
            .string(if commit { "T" } else { "F" })?
            .finish();
        let reply = self.request(XS_TRANSACTION_END, tx, payload).await?;
        logged(XS_TRANSACTION_END, wire::expect_ok(&reply))
    }

    /// Runs `body` in a transaction and commits it, starting again (up to
    /// [`TRANSACTION_ATTEMPTS`] times) when the commit, or the body, meets
    /// [`XsError::Again`]. Any other error from the body aborts the transaction and is
    /// returned. `body` may run several times, so it must not act on what it read until
    /// this returns `Ok`.
    ///
    /// If this future is dropped while `body` runs, the transaction is aborted.
    pub async fn transaction<T, F, Fut>(&self, mut body: F) -> Result<T, XsError>
    where
        F: FnMut(TxId) -> Fut,
        Fut: Future<Output = Result<T, XsError>>,
    {
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            let tx = self.transaction_start().await?;
            let mut guard = AbortOnDrop {
                xs: self,
                tx: Some(tx),
            };
            let outcome = body(tx).await;
            guard.tx = None;
            let ended = self.transaction_end(tx, outcome.is_ok()).await;
            match (outcome, ended) {
                (Ok(value), Ok(())) => return Ok(value),
                (Ok(_), Err(XsError::Again)) | (Err(XsError::Again), _) => log::debug!(
                    "xenstore: transaction {} conflicted (attempt {attempt}), starting again",
                    tx.get()
                ),
                (Ok(_), Err(e)) => return Err(e),
                (Err(e), ended) => {
                    if let Err(abort) = ended {
                        log::debug!("xenstore: abort of transaction {}: {abort}", tx.get());
                    }
                    return Err(e);
                }
            }
        }
        log::warn!("xenstore: transaction still conflicting after {TRANSACTION_ATTEMPTS} attempts");
        Err(XsError::Again)
    }

    /// Registers a watch on `path` and everything under it, identified by `token` (unique
    /// among this client's watches; reusable once an earlier watch's unwatch completed).
    ///
    /// xenstored fires every watch once as soon as it is registered, so the first event is
    /// the watched path itself: read the state then, and again on each later event.
    pub async fn watch(&self, path: &str, token: &str) -> Result<Watch<'_, M, N>, XsError> {
        let payload = Payload::default().string(path)?.string(token)?.finish();
        let (events, reply) = self.with_core(|core| {
            // Registered before the request goes out: the first event may overtake the reply.
            let events = core.register_watch(token)?;
            match core.submit(XS_WATCH, TxId::NONE, payload.clone()) {
                Ok(reply) => Ok((events, reply)),
                Err(e) => {
                    core.remove_watch(token);
                    Err(e)
                }
            }
        })?;
        // From here on, dropping `watch` (this future dropped, the ack malformed) unwatches.
        let mut watch = Watch {
            xs: self,
            path: path.into(),
            token: token.into(),
            payload,
            events,
            live: true,
        };
        match wait(&reply).await.and_then(|ack| wire::expect_ok(&ack)) {
            Ok(()) => Ok(watch),
            Err(e) => {
                if e.name().is_some() {
                    // xenstored refused it, so there is nothing to unwatch.
                    watch.live = false;
                    self.with_core(|core| core.remove_watch(token));
                }
                logged(XS_WATCH, Err(e))
            }
        }
    }
}

impl<M, N> fmt::Debug for Xenstore<M, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Xenstore");
        // Formatting must not panic, even from inside a call that holds the state.
        if let Ok(state) = self.state.try_borrow() {
            d.field("in_flight", &state.core.in_flight())
                .field("broken", &state.core.broken());
        }
        d.finish_non_exhaustive()
    }
}

/// Waits for the reply in `slot`.
async fn wait(slot: &ReplySlot) -> Result<Vec<u8>, XsError> {
    poll_fn(|cx| slot.borrow_mut().poll(cx.waker())).await
}

/// Logs a reply payload that did not parse (the request fails; the connection is fine).
fn logged<T>(ty: u32, result: Result<T, XsError>) -> Result<T, XsError> {
    if let Err(e @ XsError::Malformed(_)) = &result {
        log::warn!("xenstore: reply to a request of type {ty}: {e}");
    }
    result
}

/// Aborts `tx` unless it is taken first: dropped while set means the transaction future was
/// dropped mid-body, and a transaction left open would hold a slot of xenstored's per-domain
/// quota.
struct AbortOnDrop<'a, M: SharedMemory, N: Notify> {
    xs: &'a Xenstore<M, N>,
    tx: Option<TxId>,
}

impl<M: SharedMemory, N: Notify> Drop for AbortOnDrop<'_, M, N> {
    fn drop(&mut self) {
        let Some(tx) = self.tx else { return };
        // Nobody waits for the reply; the protocol core drops it on arrival.
        let sent = self
            .xs
            .with_core(|core| core.submit(XS_TRANSACTION_END, tx, b"F\0".into()));
        if let Err(e) = sent {
            log::debug!("xenstore: abort of dropped transaction {}: {e}", tx.get());
        }
    }
}

/// A registered watch: [`Watch::next_event`] yields its events in order.
///
/// Dropping it unwatches (the request is sent; nobody waits for the reply).
/// [`Watch::unwatch`] does the same and waits.
pub struct Watch<'a, M: SharedMemory, N: Notify> {
    xs: &'a Xenstore<M, N>,
    path: String,
    token: String,
    /// `<path>|<token>|`, which is also the `XS_UNWATCH` payload.
    payload: Vec<u8>,
    events: EventQueue,
    /// Registered with the server and not yet unwatched.
    live: bool,
}

impl<M: SharedMemory, N: Notify> Watch<'_, M, N> {
    /// The watched path, as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The next event: queued ones first, then the next to arrive. Once the connection is
    /// broken and the queue drained, [`XsError::Broken`].
    pub async fn next_event(&mut self) -> Result<WatchEvent, XsError> {
        poll_fn(|cx| self.events.borrow_mut().poll_next(cx.waker())).await
    }

    /// Removes the watch. Events already queued are dropped.
    pub async fn unwatch(mut self) -> Result<(), XsError> {
        self.live = false;
        let payload = core::mem::take(&mut self.payload);
        let reply = self
            .xs
            .with_core(|core| core.submit_unwatch(payload, &self.token))?;
        let ack = wait(&reply).await?;
        logged(XS_UNWATCH, wire::expect_ok(&ack))
    }
}

impl<M: SharedMemory, N: Notify> Drop for Watch<'_, M, N> {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let payload = core::mem::take(&mut self.payload);
        let sent = self
            .xs
            .with_core(|core| core.submit_unwatch(payload, &self.token));
        if let Err(e) = sent {
            log::debug!("xenstore: unwatch of dropped watch {:?}: {e}", self.token);
        }
    }
}

impl<M: SharedMemory, N: Notify> fmt::Debug for Watch<'_, M, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("path", &self.path)
            .field("token", &self.token)
            .field("queued", &self.events.borrow())
            .finish_non_exhaustive()
    }
}
