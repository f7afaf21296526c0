//! VMBus on Hyper-V, kernel side: the SynIC (message page, event-flags page, SINT 2 as a local
//! APIC vector), the `HvPostMessage` and `HvSignalEvent` hypercalls behind
//! [`ringbolt_vmbus::Host`], and the task that connects and lists the offered devices.
//!
//! Interrupt design as everywhere: the SINT's vector only wakes the idle `hlt` (and is
//! acknowledged with an EOI); after each wait the platform calls [`wake_if_message`], and the
//! connection task copies the message out of the slot in thread context.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use hermit_sync::{OnceCell, SpinMutex};
use ringbolt_executor::Handle;
use ringbolt_hyperv_tlfs::{MSR_ENABLE, msr};
use ringbolt_shmem::SharedMemory;
use ringbolt_vmbus::{
    Config, Connection, Event, HvStatus, MESSAGE_SINT, VMBUS_MESSAGE_TYPE, Version,
};
use x86_64::PhysAddr;

use crate::cpu::{rdmsr, wrmsr};
use crate::hyperv::{HvCallCode, hypercall};
use crate::memory;
use crate::platform::platform;
use crate::shared_page::SharedPage;
use crate::single_cpu::SingleCpu;

/// The APIC vector SINT 2 raises.
pub(crate) const VMBUS_VECTOR: u8 = 0x32;

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
    /// The page `HvPostMessage` reads its input from, and its guest physical address.
    post_input: SpinMutex<(SharedPage, PhysAddr)>,
}

static SYNIC: OnceCell<SynIc> = OnceCell::new();
static WAITER: SingleCpu<Option<Waker>> = SingleCpu::new(None);

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

/// Wakes the connection task if a message waits in the SINT 2 slot (called after each idle
/// wait, in thread context).
pub(crate) fn wake_if_message() {
    if SYNIC.get().is_some_and(SynIc::has_message)
        && let Some(waker) = WAITER.with(Option::take)
    {
        waker.wake();
    }
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

    fn page_number(&self, memory: &SharedPage, index: usize) -> Option<u64> {
        (index == 0).then(|| memory.address().as_u64() >> 12)
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
    drop(executor.spawn(serve(synic, config)));
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
async fn serve(synic: &'static SynIc, config: Config) {
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
            Some(event) => log::debug!("vmbus: {event:?}"),
            None => {}
        }
    }
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
