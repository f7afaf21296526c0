//! Xen virtual block devices: `ringbolt_xen_blkfront` over the kernel's grant table, event
//! channels and xenbus, serving [`crate::block`].
//!
//! With the xenstore connection, a task finds every `device/vbd`, runs the xenbus handshake
//! and connects each: one ring page and [`INDIRECT_PAGES`] indirect-segment pages from the
//! frame allocator, one event channel to the backend, and [`POOL_FRAMES`] bounce frames.
//! `block::devices` waits for it. A connected disk has a task that waits on its event channel
//! and polls the ring, handing each completion to the I/O waiting for it.
//!
//! Data moves through the bounce frames: whole identity-mapped frames, granted to the backend
//! for one request and handed back by blkfront only once the backend can no longer reach
//! them. The caller's buffer is copied in (write) or out (read). A transfer is cut into pieces
//! of [`PIECE_PAGES`] frames with up to [`WINDOW`] in flight, so the backend works on some
//! while we copy others.
//!
//! What the backend writes (its xenstore nodes, its ring) is checked by the protocol crates;
//! here a misbehaving backend fails the device's setup or its I/O, never the kernel.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use ringbolt_executor::Handle;
use ringbolt_xen_abi::io::blkif::SECTOR_SIZE;
use ringbolt_xen_abi::io::xenbus::{XENBUS_STATE_CONNECTED, XENBUS_STATE_INIT_WAIT};
use ringbolt_xen_blkfront::{
    BackendInfo, BlkError, Blkfront, Completion, ConfigError, IndirectPage, IoError, IoId,
    Operation, Page, Rejected, Segment, Setup, SubmitError,
};
use x86_64::PhysAddr;

use super::XenError;
use super::events::{self, Notifier};
use super::grant::{self, SetupError};
use super::store::Client;
use super::xenbus::{self, Frontend, XenbusError};
use crate::block::{BlockDevice, BlockError};
use crate::memory;
use crate::platform::platform;
use crate::shared_page::SharedPage;

const FRAME_SIZE: usize = 4096;
/// Frames per piece of a transfer: 512 KiB, one indirect request (blkback takes 256 segments
/// per request), or 12 direct ones.
const PIECE_PAGES: usize = 128;
/// Pieces of one transfer in flight at once.
const WINDOW: usize = 4;
/// Bounce frames per disk: enough for one transfer's window.
const POOL_FRAMES: usize = PIECE_PAGES * WINDOW;
/// Indirect-segment pages per disk: one per piece in flight.
const INDIRECT_PAGES: usize = WINDOW;

/// Starts the task that finds and connects our virtual block devices.
pub(crate) fn start(client: Rc<Client>, executor: &Handle) {
    // Taken now, before the app runs, so `block::devices` waits for this task.
    let probe = crate::block::probe();
    drop(executor.spawn(async move {
        let ids = match xenbus::find(&client, "vbd").await {
            Ok(ids) => ids,
            Err(e) => {
                log::error!("blkfront: cannot list devices: {e}");
                return;
            }
        };
        for id in ids {
            match connect(client.clone(), &id).await {
                Ok(disk) => {
                    drop(crate::task::spawn(serve(disk.clone())));
                    probe.add(BlockDevice::new(disk));
                }
                Err(e) => log::error!("blkfront: vbd {id}: {e}"),
            }
        }
        drop(probe);
    }));
}

/// Why a device could not be connected.
#[derive(Debug)]
enum ConnectError {
    /// The device's id is not a virtual-device number.
    BadId,
    Xenbus(XenbusError),
    Grant(SetupError),
    EventChannel(XenError),
    Blk(BlkError),
    Config(ConfigError),
    /// The backend's logical sector is larger than a page, which whole-page buffers cannot
    /// carry.
    SectorTooLarge(u32),
    NoMemory,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::BadId => f.write_str("id is not a virtual-device number"),
            ConnectError::Xenbus(e) => write!(f, "{e}"),
            ConnectError::Grant(e) => write!(f, "grant table: {e}"),
            ConnectError::EventChannel(e) => write!(f, "EVTCHNOP_alloc_unbound failed: {e:?}"),
            ConnectError::Blk(e) => write!(f, "{e}"),
            ConnectError::Config(e) => write!(f, "{e}"),
            ConnectError::SectorTooLarge(size) => {
                write!(f, "{size}-byte sectors are not supported")
            }
            ConnectError::NoMemory => f.write_str("out of memory"),
        }
    }
}

impl From<XenbusError> for ConnectError {
    fn from(e: XenbusError) -> Self {
        ConnectError::Xenbus(e)
    }
}

/// Runs the xenbus handshake for `device/vbd/<id>` and connects blkfront.
async fn connect(client: Rc<Client>, id: &str) -> Result<Rc<Disk>, ConnectError> {
    // The id is the virtual-device number; requests carry its low 16 bits (as Linux's do).
    let vdev: u32 = id.parse().map_err(|_| ConnectError::BadId)?;
    let frontend = Frontend::open(client, "vbd", id).await?;
    frontend.wait_for_backend(XENBUS_STATE_INIT_WAIT).await?;
    let result = handshake(&frontend, vdev).await;
    if result.is_err() {
        frontend.abandon().await;
    }
    result.map(Rc::new)
}

type Front = Blkfront<SharedPage, Frame, Notifier>;

/// Steps 2 and 3 of the handshake (see `xenbus`): ring and channel published, backend
/// connected, blkfront serving.
async fn handshake(frontend: &Frontend, vdev: u32) -> Result<Disk, ConnectError> {
    let grants = grant::table().map_err(ConnectError::Grant)?;
    let pool = (0..POOL_FRAMES)
        .map(|_| allocate().map(Frame))
        .collect::<Result<Vec<_>, _>>()?;
    let ring = allocate()?;
    let backend = frontend.backend_id();
    let setup = Setup::new(
        &mut grants.borrow_mut(),
        SharedPage::identity(ring),
        platform().grant_frame(ring),
        backend,
        vdev as u16,
    )
    .map_err(ConnectError::Blk)?;
    let port = super::evtchn_alloc_unbound(backend).map_err(ConnectError::EventChannel)?;
    frontend
        .publish(&setup.frontend_keys(port).entries())
        .await?;
    frontend.wait_for_backend(XENBUS_STATE_CONNECTED).await?;
    let nodes = frontend.read_backend(&BackendInfo::KEYS).await?;
    let info = BackendInfo::parse(|key| xenbus::node(&nodes, key)).map_err(ConnectError::Config)?;
    if info.sector_size as usize > FRAME_SIZE {
        return Err(ConnectError::SectorTooLarge(info.sector_size));
    }
    let indirect = (0..INDIRECT_PAGES)
        .map(|_| {
            allocate().map(|frame| IndirectPage {
                mem: SharedPage::identity(frame),
                frame: platform().grant_frame(frame),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let front = setup.connect(&mut grants.borrow_mut(), info, Notifier { port }, indirect);
    frontend.switch(XENBUS_STATE_CONNECTED).await?;
    let name = disk_name(vdev);
    log::info!(
        "blkfront: {name} (vbd {vdev}): {} MiB in {}-byte sectors, backend domain {backend}, \
         {} segments per request, flush {}",
        info.sectors >> 11,
        info.sector_size,
        front.max_segments_per_request(),
        if info.flush_cache { "on" } else { "off" }
    );
    Ok(Disk {
        name,
        sector_size: info.sector_size as usize,
        sectors_512: info.sectors,
        port,
        grants,
        state: RefCell::new(State {
            front,
            done: BTreeMap::new(),
            waiting: BTreeMap::new(),
            abandoned: BTreeSet::new(),
            room: Vec::new(),
            pool,
        }),
    })
}

fn allocate() -> Result<PhysAddr, ConnectError> {
    memory::allocate_frame().ok_or(ConnectError::NoMemory)
}

/// Linux's name for a Xen virtual-device number: `xvd<letters>` for the `xvd` majors (202,
/// and the extended scheme), else `vbd<number>`.
fn disk_name(vdev: u32) -> String {
    let index = if vdev >> 28 == 1 {
        Some((vdev >> 8) & 0xf_ffff)
    } else if vdev >> 8 == 202 {
        Some((vdev & 0xff) >> 4)
    } else {
        None
    };
    let Some(mut index) = index else {
        return format!("vbd{vdev}");
    };
    // Bijective base 26: a..z, aa..zz, ...
    let mut letters = Vec::new();
    loop {
        letters.push(b'a' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    letters.reverse();
    format!("xvd{}", String::from_utf8_lossy(&letters))
}

/// An identity-mapped frame of ours that a request transfers to or from.
///
/// Owned, never copied: while blkfront holds it the backend may reach it, and blkfront hands
/// it back only once the backend no longer can, so whoever holds a `Frame` has it to itself.
#[derive(Debug)]
pub(crate) struct Frame(PhysAddr);

impl Frame {
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the frame came from `memory::allocate_frame`, identity-mapped and writable,
        // and belongs to this `Frame` alone (see the type's doc): no other reference to it
        // exists and the backend cannot write it now.
        unsafe { core::slice::from_raw_parts_mut(self.0.as_u64() as *mut u8, FRAME_SIZE) }
    }
}

impl Page for Frame {
    fn frame(&self) -> u64 {
        platform().grant_frame(self.0)
    }
}

/// One connected virtual block device.
pub(crate) struct Disk {
    name: String,
    /// The backend's logical sector, in bytes.
    sector_size: usize,
    /// The disk's size in 512-byte units.
    sectors_512: u64,
    /// The event channel the backend signals.
    port: u32,
    grants: grant::Table,
    state: RefCell<State>,
}

struct State {
    front: Front,
    /// Finished I/O nobody has collected yet.
    done: BTreeMap<IoId, Completion<Frame>>,
    /// Who waits for which I/O.
    waiting: BTreeMap<IoId, Waker>,
    /// I/O whose waiter went away: its frames go back to the pool when it finishes.
    abandoned: BTreeSet<IoId>,
    /// Tasks waiting for ring slots, grants or frames to come free.
    room: Vec<Waker>,
    pool: Vec<Frame>,
}

impl State {
    /// Returns `segments`' frames to the pool; the wakers of those waiting for room are
    /// added to `wake`.
    fn recycle(&mut self, segments: Vec<Segment<Frame>>, wake: &mut Vec<Waker>) {
        self.pool
            .extend(segments.into_iter().map(|segment| segment.page));
        wake.append(&mut self.room);
    }
}

/// What a transfer moves: into the caller's buffer, or out of it.
enum Data<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Data::Read(buf) => buf.len(),
            Data::Write(buf) => buf.len(),
        }
    }
}

impl Disk {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn sector_size(&self) -> usize {
        self.sector_size
    }

    pub(crate) fn sectors(&self) -> u64 {
        self.sectors_512 * SECTOR_SIZE as u64 / self.sector_size as u64
    }

    /// Reads whole sectors from logical sector `sector` (checked by `block`).
    pub(crate) async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.transfer(sector, Data::Read(buf)).await
    }

    /// Writes whole sectors from logical sector `sector` (checked by `block`).
    pub(crate) async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.transfer(sector, Data::Write(buf)).await
    }

    /// `BLKIF_OP_FLUSH_DISKCACHE`; nothing to do if the backend has no cache to flush (it
    /// offers no flush, or refused one).
    pub(crate) async fn flush(&self) -> Result<(), BlockError> {
        loop {
            match self.submit(Operation::Flush, 0, Vec::new()) {
                Ok(mut io) => {
                    return match io.finish().await.result {
                        Ok(()) | Err(IoError::NotSupported) => Ok(()),
                        Err(e) => Err(io_error(e)),
                    };
                }
                Err(Rejected {
                    error: SubmitError::Unsupported(_),
                    ..
                }) => return Ok(()),
                Err(Rejected {
                    error: SubmitError::Busy,
                    ..
                }) => self.room().await,
                Err(rejected) => return Err(submit_error(rejected.error)),
            }
        }
    }

    /// Moves `data` to or from the disk from logical sector `sector` on, in pieces with up to
    /// [`WINDOW`] in flight. The first failure stops further pieces; those in flight are
    /// waited for, so their frames come back.
    async fn transfer(&self, sector: u64, mut data: Data<'_>) -> Result<(), BlockError> {
        let operation = match data {
            Data::Read(_) => Operation::Read,
            Data::Write(_) => Operation::Write,
        };
        let first = sector * (self.sector_size / SECTOR_SIZE) as u64;
        let total = data.len();
        let mut flight: VecDeque<(InFlight<'_>, usize, usize)> = VecDeque::new();
        let mut next = 0;
        let mut result = Ok(());
        loop {
            if result.is_ok() && next < total && flight.len() < WINDOW {
                let len = (total - next).min(PIECE_PAGES * FRAME_SIZE);
                if let Some(mut frames) = self.take_frames(len.div_ceil(FRAME_SIZE)) {
                    if let Data::Write(src) = &data {
                        for (frame, chunk) in
                            frames.iter_mut().zip(src[next..][..len].chunks(FRAME_SIZE))
                        {
                            frame.bytes()[..chunk.len()].copy_from_slice(chunk);
                        }
                    }
                    let segments = segments(frames, len);
                    let at = first + (next / SECTOR_SIZE) as u64;
                    match self.submit(operation, at, segments) {
                        Ok(io) => {
                            flight.push_back((io, next, len));
                            next += len;
                            continue;
                        }
                        Err(Rejected { error, segments }) => {
                            self.give_back(segments);
                            if error != SubmitError::Busy {
                                result = Err(submit_error(error));
                            }
                        }
                    }
                }
                if result.is_ok() && flight.is_empty() {
                    // Others hold the room this piece needs: wait for them.
                    self.room().await;
                    continue;
                }
            }
            let Some((mut io, offset, len)) = flight.pop_front() else {
                return result;
            };
            let completion = io.finish().await;
            match (completion.result, &mut data) {
                (Ok(()), Data::Read(dst)) => {
                    let mut segments = completion.segments;
                    for (segment, chunk) in segments
                        .iter_mut()
                        .zip(dst[offset..][..len].chunks_mut(FRAME_SIZE))
                    {
                        chunk.copy_from_slice(&segment.page.bytes()[..chunk.len()]);
                    }
                    self.give_back(segments);
                }
                (Ok(()), Data::Write(_)) => self.give_back(completion.segments),
                (Err(e), _) => {
                    self.give_back(completion.segments);
                    if result.is_ok() {
                        result = Err(io_error(e));
                    }
                }
            }
        }
    }

    /// `count` frames from the pool, if it has them.
    fn take_frames(&self, count: usize) -> Option<Vec<Frame>> {
        let mut state = self.state.borrow_mut();
        let available = state.pool.len();
        (available >= count).then(|| state.pool.split_off(available - count))
    }

    fn give_back(&self, segments: Vec<Segment<Frame>>) {
        let mut wake = Vec::new();
        self.state.borrow_mut().recycle(segments, &mut wake);
        wake.into_iter().for_each(Waker::wake);
    }

    /// Hands an I/O to blkfront; refused I/O comes back with its segments.
    fn submit(
        &self,
        operation: Operation,
        sector: u64,
        segments: Vec<Segment<Frame>>,
    ) -> Result<InFlight<'_>, Rejected<Frame>> {
        let mut state = self.state.borrow_mut();
        let id = state
            .front
            .submit(&mut self.grants.borrow_mut(), operation, sector, segments)?;
        Ok(InFlight {
            disk: self,
            id,
            finished: false,
        })
    }

    /// Completes once some I/O has finished or frames came back (or spuriously: callers look
    /// again).
    async fn room(&self) {
        let mut waited = false;
        poll_fn(|cx| {
            if waited {
                return Poll::Ready(());
            }
            waited = true;
            self.state.borrow_mut().room.push(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    /// Takes the backend's responses and hands each finished I/O to its waiter.
    fn poll(&self) {
        let mut wake = Vec::new();
        {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let was_broken = state.front.broken().is_some();
            if let Err(e) = state.front.poll(&mut self.grants.borrow_mut())
                && !was_broken
            {
                log::error!("blkfront: {}: {e}", self.name);
            }
            while let Some(completion) = state.front.pop_completion() {
                if state.abandoned.remove(&completion.id) {
                    state.recycle(completion.segments, &mut wake);
                    continue;
                }
                wake.extend(state.waiting.remove(&completion.id));
                wake.append(&mut state.room);
                state.done.insert(completion.id, completion);
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }
}

/// Polls the disk's ring whenever its event channel fires.
async fn serve(disk: Rc<Disk>) {
    loop {
        disk.poll();
        events::fired(disk.port).await;
    }
}

/// An I/O blkfront accepted. Dropped before it finishes, its frames return to the pool when it
/// does.
struct InFlight<'a> {
    disk: &'a Disk,
    id: IoId,
    finished: bool,
}

impl InFlight<'_> {
    async fn finish(&mut self) -> Completion<Frame> {
        poll_fn(|cx| {
            let mut state = self.disk.state.borrow_mut();
            match state.done.remove(&self.id) {
                Some(completion) => {
                    self.finished = true;
                    Poll::Ready(completion)
                }
                None => {
                    state.waiting.insert(self.id, cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut wake = Vec::new();
        {
            let mut state = self.disk.state.borrow_mut();
            state.waiting.remove(&self.id);
            match state.done.remove(&self.id) {
                Some(completion) => state.recycle(completion.segments, &mut wake),
                None => {
                    state.abandoned.insert(self.id);
                }
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }
}

/// Whole-page segments over `frames` carrying `len` bytes: all full but maybe the last.
fn segments(frames: Vec<Frame>, len: usize) -> Vec<Segment<Frame>> {
    let mut rest = len;
    frames
        .into_iter()
        .map(|page| {
            let len = rest.min(FRAME_SIZE);
            rest -= len;
            Segment {
                page,
                offset: 0,
                len,
            }
        })
        .collect()
}

fn io_error(e: IoError) -> BlockError {
    match e {
        IoError::Disconnected => BlockError::Disconnected,
        _ => BlockError::Failed,
    }
}

fn submit_error(e: SubmitError) -> BlockError {
    match e {
        SubmitError::Broken(_) => BlockError::Disconnected,
        SubmitError::OutOfRange => BlockError::OutOfRange,
        SubmitError::Misaligned | SubmitError::BadSegment { .. } => BlockError::Misaligned,
        _ => BlockError::Failed,
    }
}
