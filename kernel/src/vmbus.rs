//! VMBus on Hyper-V, kernel side: the SynIC (message page, event-flags page, SINT 2 as a local
//! APIC vector), the `HvPostMessage` and `HvSignalEvent` hypercalls behind
//! [`ringbolt_vmbus::Host`], and the task that connects and lists the offered devices.
//!
//! Interrupt design as everywhere: the SINT's vector only wakes the idle `hlt` (and is
//! acknowledged with an EOI); after each wait the platform calls [`wake_if_message`], and the
//! connection task copies the message out of the slot in thread context.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use hermit_sync::{OnceCell, SpinMutex};
use ringbolt_executor::Handle;
use ringbolt_hyperv_tlfs::{MSR_ENABLE, msr};
use ringbolt_shmem::SharedMemory;
use ringbolt_vmbus::guid::class;
use ringbolt_vmbus::{
    Channel, Config, Connection, Event, HvStatus, MESSAGE_SINT, OpenParams, PAGE_SIZE,
    VMBUS_MESSAGE_TYPE, Version,
};
use x86_64::PhysAddr;

use crate::cpu::{rdmsr, wrmsr};
use crate::hyperv::{HvCallCode, hypercall};
use crate::memory;
use crate::platform::platform;
use crate::shared_page::SharedPage;
use crate::signal::{Fired, Signals};
use crate::single_cpu::SingleCpu;

/// The APIC vector SINT 2 raises.
pub(crate) const VMBUS_VECTOR: u8 = 0x32;

/// SynIC event-flag areas are 256 bytes (2048 flags), one per SINT, in the SIEFP page.
const EVENT_FLAGS_SIZE: usize = 256;
/// SynIC message slots are 256 bytes, one per SINT, in the message page.
const MESSAGE_SLOT_SIZE: usize = 256;
/// In a slot: `message_type` (u32), `payload_size` (u8), `message_flags` (u8), the sender (u64),
/// then up to 240 bytes of payload (TLFS `HV_MESSAGE`).
const SLOT_TYPE: usize = 0;
const SLOT_PAYLOAD_SIZE: usize = 4;
const SLOT_FLAGS: usize = 5;
const SLOT_PAYLOAD: usize = 16;
const MAX_PAYLOAD: usize = 240;
/// `message_flags` bit: another message is queued behind this one; write `EOM` to get it.
const MESSAGE_PENDING: u8 = 1;
/// `HvPostMessage` input: connection id, reserved, message type, payload size, payload.
const POST_CONNECTION_ID: usize = 0;
const POST_MESSAGE_TYPE: usize = 8;
const POST_PAYLOAD_SIZE: usize = 12;
const POST_PAYLOAD: usize = 16;
/// Attempts at a post the host answers with a transient "queue full".
const POST_RETRIES: u32 = 100;

/// The SynIC pages and the hypercall input page.
pub(crate) struct SynIc {
    messages: SharedPage,
    /// SIEFP: SINT 2's 2048 event flags, bit `relid` set when the host signals that channel.
    events: SharedPage,
    /// The page `HvPostMessage` reads its input from, and its guest physical address.
    post_input: SpinMutex<(SharedPage, PhysAddr)>,
}

static SYNIC: OnceCell<SynIc> = OnceCell::new();
static WAITER: SingleCpu<Option<Waker>> = SingleCpu::new(None);
/// Channel event flags, by relid.
static CHANNELS: Signals = Signals::new();
/// Connection events drivers wait for (GPADL created, channel opened), and the waiting task.
static EVENTS: SingleCpu<(VecDeque<Event>, Option<Waker>)> =
    SingleCpu::new((VecDeque::new(), None));

/// Enables the SynIC with SINT 2 on [`VMBUS_VECTOR`]. `None` when frames run out.
fn enable_synic() -> Option<&'static SynIc> {
    let messages = memory::allocate_frame()?;
    let events = memory::allocate_frame()?;
    let post_input = memory::allocate_frame()?;
    // SAFETY: the caller checked that the SynIC MSRs exist (CPUID privileges). The message and
    // event-flag pages are fresh frames of ours, identity-mapped, which the hypervisor overlays;
    // SINT 2 gets a vector with an IDT entry (`traps`), unmasked, without auto-EOI; enabling the
    // SynIC changes no memory of ours.
    unsafe {
        wrmsr(msr::SIMP, messages.as_u64() | MSR_ENABLE);
        wrmsr(msr::SIEFP, events.as_u64() | MSR_ENABLE);
        wrmsr(
            msr::SINT0 + u32::from(MESSAGE_SINT),
            u64::from(VMBUS_VECTOR),
        );
        wrmsr(msr::SCONTROL, MSR_ENABLE);
    }
    Some(SYNIC.get_or_init(|| SynIc {
        messages: SharedPage::identity(messages),
        events: SharedPage::identity(events),
        post_input: SpinMutex::new((SharedPage::identity(post_input), post_input)),
    }))
}

impl SynIc {
    fn slot() -> usize {
        usize::from(MESSAGE_SINT) * MESSAGE_SLOT_SIZE
    }

    fn has_message(&self) -> bool {
        self.messages
            .read_u32(Self::slot() + SLOT_TYPE)
            .is_ok_and(|kind| kind != 0)
    }

    /// Copies the SINT 2 message out of its slot (once), frees the slot and asks for the next:
    /// `(message_type, payload length)`, or `None` when the slot is empty.
    fn take_message(&self, payload: &mut [u8; MAX_PAYLOAD]) -> Option<(u32, usize)> {
        let slot = Self::slot();
        let kind = self.messages.read_u32(slot + SLOT_TYPE).ok()?;
        if kind == 0 {
            return None;
        }
        self.messages.read_barrier();
        let size = self.messages.read_u8(slot + SLOT_PAYLOAD_SIZE).ok()?;
        let flags = self.messages.read_u8(slot + SLOT_FLAGS).ok()?;
        let len = usize::from(size).min(MAX_PAYLOAD);
        if usize::from(size) > MAX_PAYLOAD {
            log::warn!("vmbus: SynIC message of {size} bytes cut to {MAX_PAYLOAD}");
        }
        let copied = self
            .messages
            .read_bytes(slot + SLOT_PAYLOAD, &mut payload[..len]);
        // HVMSG_NONE frees the slot; the barrier orders it before EOM, which makes the
        // hypervisor deliver the next queued message into it.
        let _ = self.messages.write_u32(slot + SLOT_TYPE, 0);
        self.messages.full_barrier();
        if flags & MESSAGE_PENDING != 0 {
            // SAFETY: EOM exists with the SynIC; writing it only asks for the next message.
            unsafe { wrmsr(msr::EOM, 0) };
        }
        copied.ok().map(|()| (kind, len))
    }

    /// The next SINT 2 message, waiting for one if the slot is empty.
    fn next_message<'a>(&'a self, payload: &'a mut [u8; MAX_PAYLOAD]) -> NextMessage<'a> {
        NextMessage {
            synic: self,
            payload,
        }
    }
}

struct NextMessage<'a> {
    synic: &'a SynIc,
    payload: &'a mut [u8; MAX_PAYLOAD],
}

impl Future for NextMessage<'_> {
    type Output = (u32, usize);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(u32, usize)> {
        let this = self.get_mut();
        match this.synic.take_message(this.payload) {
            Some(message) => Poll::Ready(message),
            None => {
                WAITER.with(|waiter| *waiter = Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

/// The SynIC, for drivers' [`ringbolt_vmbus::Host`] calls once VMBus runs.
pub(crate) fn host() -> &'static SynIc {
    SYNIC
        .get()
        .expect("VMBus drivers run only after the SynIC is enabled")
}

/// Relids whose event flag the host set since the last scan; the flags are cleared with one
/// atomic AND per word, so a flag the host sets meanwhile is not lost.
fn take_event_flags(synic: &SynIc) -> Vec<u32> {
    let area = usize::from(MESSAGE_SINT) * EVENT_FLAGS_SIZE;
    let mut relids = Vec::new();
    for word in 0..EVENT_FLAGS_SIZE / 8 {
        let offset = area + word * 8;
        let pending = match synic.events.read_u64(offset) {
            Ok(0) => continue,
            Ok(_) => synic.events.fetch_and_u64(offset, 0),
            Err(e) => Err(e),
        };
        match pending {
            Ok(bits) => relids.extend(
                (0..64)
                    .filter(|bit| bits & (1 << bit) != 0)
                    .map(|bit| (word * 64 + bit) as u32),
            ),
            Err(e) => log::error!("vmbus: event flags unreadable: {e}"),
        }
    }
    relids
}

/// After each idle wait (thread context): wakes the connection task if a message waits in
/// the SINT 2 slot, and each channel whose event flag is set.
pub(crate) fn dispatch() {
    let Some(synic) = SYNIC.get() else { return };
    if synic.has_message()
        && let Some(waker) = WAITER.with(Option::take)
    {
        waker.wake();
    }
    CHANNELS.raise(take_event_flags(synic));
}

impl ringbolt_vmbus::Host for SynIc {
    type Memory = SharedPage;

    fn post_message(
        &self,
        connection_id: u32,
        message_type: u32,
        payload: &[u8],
    ) -> Result<(), HvStatus> {
        if payload.len() > MAX_PAYLOAD {
            return Err(HvStatus(HvCallCode::INVALID_PARAMETER));
        }
        let input = self.post_input.lock();
        let (page, address) = &*input;
        let written = page
            .write_u32(POST_CONNECTION_ID, connection_id)
            .and_then(|()| page.write_u32(POST_MESSAGE_TYPE, message_type))
            .and_then(|()| page.write_u32(POST_PAYLOAD_SIZE, payload.len() as u32))
            .and_then(|()| page.write_bytes(POST_PAYLOAD, payload));
        if written.is_err() {
            return Err(HvStatus(HvCallCode::INVALID_PARAMETER));
        }
        for _ in 0..POST_RETRIES {
            match hypercall(HvCallCode::POST_MESSAGE, address.as_u64(), false) {
                0 => return Ok(()),
                status => {
                    let status = HvStatus(status);
                    if status != HvStatus::INSUFFICIENT_BUFFERS
                        && status != HvStatus::INSUFFICIENT_MEMORY
                    {
                        return Err(status);
                    }
                    core::hint::spin_loop();
                }
            }
        }
        Err(HvStatus::INSUFFICIENT_BUFFERS)
    }

    fn signal_event(&self, connection_id: u32) -> Result<(), HvStatus> {
        match hypercall(HvCallCode::SIGNAL_EVENT, u64::from(connection_id), true) {
            0 => Ok(()),
            status => Err(HvStatus(status)),
        }
    }

    /// The regions VMBus shares are identity-mapped and physically contiguous
    /// ([`memory::allocate_contiguous`]), so page `index` is simply the next frame.
    fn page_number(&self, memory: &SharedPage, index: usize) -> Option<u64> {
        (index < memory.len() / PAGE_SIZE).then(|| (memory.address().as_u64() >> 12) + index as u64)
    }
}

/// Enables the SynIC and starts the task that connects to the VMBus host and reports the
/// negotiated version and the offers.
pub(crate) fn start(executor: &Handle) {
    let Some(synic) = enable_synic() else {
        log::error!("vmbus: no frames for the SynIC pages");
        return;
    };
    let frames = [(); 3].map(|()| memory::allocate_frame());
    let [Some(interrupt), Some(monitor_in), Some(monitor_out)] = frames else {
        log::error!("vmbus: no frames for the interrupt and monitor pages");
        return;
    };
    // SAFETY: VP_INDEX exists with the SynIC (same CPUID privilege); reading it has no effect.
    let vp_index = unsafe { rdmsr(msr::VP_INDEX) } as u32;
    let config = Config {
        max_version: Version::V5_3,
        target_vcpu: vp_index,
        vtl: 0,
        interrupt_page: interrupt.as_u64(),
        monitor_pages: [monitor_in.as_u64(), monitor_out.as_u64()],
    };
    drop(executor.spawn(serve(synic, config, executor.clone())));
}

/// The VMBus connection, shared by the serving task and the shutdown path. Never borrowed
/// across an await.
static CONNECTION: SingleCpu<Option<Connection>> = SingleCpu::new(None);

/// Hands one host message to the connection.
fn handle(synic: &SynIc, kind: u32, payload: &[u8]) -> Option<Event> {
    if kind != VMBUS_MESSAGE_TYPE {
        log::warn!("vmbus: SynIC message of type {kind:#x} ignored");
        return None;
    }
    // Errors are already logged by the connection; the next message may be fine.
    CONNECTION.with(|connection| connection.as_mut()?.handle_message(synic, payload).ok()?)
}

/// Connects and then handles host messages for as long as the VM runs.
async fn serve(synic: &'static SynIc, config: Config, executor: Handle) {
    let started = platform().now();
    let connected = CONNECTION.with(|slot| slot.insert(Connection::new(config)).connect(synic));
    if let Err(e) = connected {
        log::error!("vmbus: cannot start the connection: {e}");
        return;
    }
    let mut payload = [0; MAX_PAYLOAD];
    loop {
        let (kind, len) = synic.next_message(&mut payload).await;
        match handle(synic, kind, &payload[..len]) {
            // The connection logs the version and each offer as it goes.
            Some(Event::AllOffersDelivered) => CONNECTION.with(|connection| {
                if let Some(connection) = connection {
                    log::info!(
                        "vmbus: connected: version {}, {} offers in {} ms",
                        connection
                            .version()
                            .map_or_else(|| "?".into(), |v| alloc::format!("{v}")),
                        connection.offers().count(),
                        (platform().now() - started).as_nanos() / 1_000_000
                    );
                }
            }),
            Some(Event::Offer { relid }) => {
                let class = CONNECTION
                    .with(|connection| Some(connection.as_ref()?.offer(relid)?.interface_type));
                match class {
                    Some(class::BALLOON) => {
                        drop(executor.spawn(crate::hyperv_balloon::serve(relid)));
                    }
                    Some(class) => crate::hyperv_ic::probe(&executor, relid, class),
                    None => {}
                }
            }
            Some(
                event @ (Event::GpadlCreated { .. }
                | Event::GpadlFailed { .. }
                | Event::Opened { .. }
                | Event::OpenFailed { .. }),
            ) => {
                let waker = EVENTS.with(|(events, waker)| {
                    events.push_back(event);
                    waker.take()
                });
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Some(event) => log::debug!("vmbus: {event:?}"),
            None => {}
        }
    }
}

/// Completes with the first connection event `matches` accepts (taking it from the mailbox).
fn connection_event(matches: impl Fn(&Event) -> bool) -> impl Future<Output = Event> {
    core::future::poll_fn(move |cx| {
        EVENTS.with(|(events, waker)| match events.iter().position(&matches) {
            Some(at) => Poll::Ready(events.remove(at).expect("position is in range")),
            None => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    })
}

/// Requests in flight per channel.
const CHANNEL_REQUESTS: usize = 16;

/// A channel opened for a driver: its rings, and the wake-up its event flag raises.
pub(crate) struct OpenChannel {
    pub(crate) channel: Channel<SharedPage, CHANNEL_REQUESTS>,
    relid: u32,
}

impl OpenChannel {
    /// Completes once the host has signalled the channel since the last completion.
    pub(crate) fn signalled(&self) -> Fired {
        CHANNELS.fired(self.relid)
    }
}

/// Why a channel could not be opened.
pub(crate) enum OpenError {
    NoMemory,
    Vmbus(ringbolt_vmbus::Error),
    Ring(ringbolt_vmbus::ring::RingError),
    Channel(ringbolt_vmbus::ChannelError),
    /// The host refused the GPADL or the open, with its status.
    Refused(u32),
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::NoMemory => f.write_str("no memory for the rings"),
            OpenError::Vmbus(e) => write!(f, "{e}"),
            OpenError::Ring(e) => write!(f, "ring: {e:?}"),
            OpenError::Channel(e) => write!(f, "channel: {e:?}"),
            OpenError::Refused(status) => write!(f, "refused by the host (status {status:#x})"),
        }
    }
}

/// Opens offered channel `relid` with rings of `ring_pages` pages each way (header page
/// included) and the device's `user_data`: rings in contiguous frames, one GPADL for both,
/// `OPENCHANNEL`, then the guest's end of the channel.
pub(crate) async fn open(
    relid: u32,
    ring_pages: usize,
    user_data: &[u8],
) -> Result<OpenChannel, OpenError> {
    let synic = SYNIC.get().ok_or(OpenError::NoMemory)?;
    let base = memory::allocate_contiguous(2 * ring_pages as u64).ok_or(OpenError::NoMemory)?;
    let outbound = SharedPage::identity_pages(base, ring_pages);
    let inbound = SharedPage::identity_pages(base + (ring_pages * PAGE_SIZE) as u64, ring_pages);
    ringbolt_vmbus::ring::init(&outbound).map_err(OpenError::Ring)?;
    ringbolt_vmbus::ring::init(&inbound).map_err(OpenError::Ring)?;
    let connection_id = CONNECTION
        .with(|connection| {
            let connection = connection.as_mut()?;
            let offer = connection.offer(relid)?.connection_id;
            Some(
                connection
                    .create_gpadl(synic, relid, &[&outbound, &inbound])
                    .map(|handle| (handle, offer)),
            )
        })
        .ok_or(OpenError::Vmbus(ringbolt_vmbus::Error::UnknownRelid(relid)))?
        .map_err(OpenError::Vmbus);
    let (gpadl, connection_id) = connection_id?;
    let created = connection_event(|event| {
        matches!(event, Event::GpadlCreated { handle, .. } | Event::GpadlFailed { handle, .. }
            if *handle == gpadl)
    })
    .await;
    if let Event::GpadlFailed { status, .. } = created {
        return Err(OpenError::Refused(status));
    }
    // SAFETY: VP_INDEX exists with the SynIC; reading it has no effect.
    let target_vp = unsafe { rdmsr(msr::VP_INDEX) } as u32;
    let params = OpenParams {
        ring_gpadl: gpadl,
        downstream_page_offset: ring_pages as u32,
        target_vp,
        user_data,
    };
    CONNECTION
        .with(|connection| {
            connection
                .as_mut()
                .map(|connection| connection.open_channel(synic, relid, params))
        })
        .ok_or(OpenError::Vmbus(ringbolt_vmbus::Error::UnknownRelid(relid)))?
        .map_err(OpenError::Vmbus)?;
    let opened = connection_event(|event| {
        matches!(event, Event::Opened { relid: r } | Event::OpenFailed { relid: r, .. }
            if *r == relid)
    })
    .await;
    if let Event::OpenFailed { status, .. } = opened {
        return Err(OpenError::Refused(status));
    }
    let channel = Channel::new(outbound, inbound, connection_id).map_err(OpenError::Channel)?;
    Ok(OpenChannel { channel, relid })
}

/// How long shutdown waits for the host to acknowledge `UNLOAD`.
const UNLOAD_TIMEOUT: Duration = Duration::from_millis(200);

/// Tells the host the guest is leaving VMBus (`UNLOAD`) and waits briefly for its answer, so
/// the host releases the channels before the VM goes. For a clean shutdown only: a panic may
/// have interrupted the connection mid-message.
pub(crate) fn unload() {
    let Some(synic) = SYNIC.get() else { return };
    let sent = CONNECTION.with(|connection| connection.as_mut().map(|c| c.unload(synic)));
    match sent {
        Some(Ok(true)) => {}
        Some(Ok(false)) | None => return,
        Some(Err(e)) => {
            log::warn!("vmbus: unload failed: {e}");
            return;
        }
    }
    let deadline = platform().now() + UNLOAD_TIMEOUT;
    let mut payload = [0; MAX_PAYLOAD];
    while platform().now() < deadline {
        if let Some((kind, len)) = synic.take_message(&mut payload)
            && handle(synic, kind, &payload[..len]) == Some(Event::Unloaded)
        {
            log::debug!("vmbus: unloaded");
            return;
        }
        core::hint::spin_loop();
    }
    log::warn!("vmbus: no answer to UNLOAD");
}
