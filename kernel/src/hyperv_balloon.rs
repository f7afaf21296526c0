//! The Hyper-V Dynamic Memory (balloon) driver on its VMBus channel: the protocol is
//! `ringbolt_hyperv_balloon`; this file gives it frames from the kernel's allocator, a
//! once-a-second status report, and the log lines the Hyper-V test looks for.

use ringbolt_executor::select;
use ringbolt_hyperv_balloon::{
    BalloonChannel, Event, MemoryStatus, PageRange, Pages, RING_PAGES, STATUS_REPORT_INTERVAL,
};

use crate::platform::platform;
use crate::{memory, vmbus};

/// Memory the balloon never gives the host: the heap and drivers need room to breathe.
const FLOOR_BYTES: u64 = 32 << 20;
const PAGE: u64 = 4096;

/// Frames for the host from the kernel's allocator, above [`FLOOR_BYTES`] of free memory.
struct KernelPages;

impl Pages for KernelPages {
    fn take(&mut self, max: u64) -> Option<PageRange> {
        let spare = memory::stats().free_bytes.saturating_sub(FLOOR_BYTES) / PAGE;
        let mut count = max.min(spare);
        // One run, as long as fragmentation allows.
        while count > 0 {
            if let Some(start) = memory::allocate_contiguous(count) {
                return PageRange::new(start.as_u64() / PAGE, count);
            }
            count /= 2;
        }
        None
    }

    fn give_back(&mut self, range: PageRange) {
        if let Err(e) = memory::free_frames(range.start() * PAGE, range.count()) {
            log::error!("balloon: host returned frames we cannot take back: {e}");
        }
    }
}

/// What the host is told every second.
fn memory_status() -> MemoryStatus {
    let stats = memory::stats();
    let used = stats.total_bytes.saturating_sub(stats.free_bytes);
    MemoryStatus {
        available: stats.free_bytes / PAGE,
        committed: (used + FLOOR_BYTES) / PAGE,
        page_file_size: 0,
        zero_free: 0,
        page_file_writes: 0,
        io_diff: 0,
    }
}

/// Opens the balloon channel `relid` and serves it for as long as the VM runs.
pub(crate) async fn serve(relid: u32) {
    let mut open = match vmbus::open(relid, RING_PAGES, &[]).await {
        Ok(open) => open,
        Err(e) => {
            log::error!("balloon: channel not opened: {e}");
            return;
        }
    };
    let host = vmbus::host();
    let mut balloon = BalloonChannel::new();
    if let Err(e) = balloon.start(&mut open.channel, host, &mut KernelPages) {
        log::error!("balloon: cannot start: {e:?}");
        return;
    }
    let mut next_report = platform().now();
    let mut held = 0;
    loop {
        let polled = balloon.poll(&mut open.channel, host, &mut KernelPages, |outcome| {
            match outcome {
                Ok(Some(Event::Negotiated { version })) => {
                    log::info!("balloon: protocol {version}")
                }
                Ok(Some(Event::Ready { status_reports })) => log::info!(
                    "balloon: ready{}",
                    if status_reports {
                        ", reporting status"
                    } else {
                        ""
                    }
                ),
                Ok(Some(event)) => log::info!("balloon: {event:?}"),
                // Errors are logged by the driver; it keeps serving.
                Ok(None) | Err(_) => {}
            }
        });
        if let Err(e) = polled {
            log::error!("balloon: channel broken: {e:?}");
            return;
        }
        let now_held = balloon.balloon().ballooned().pages();
        if now_held != held {
            held = now_held;
            log::info!(
                "balloon: the host holds {held} pages ({} MiB), {} KiB free",
                (held * PAGE) >> 20,
                memory::stats().free_bytes / 1024
            );
        }
        let now = platform().now();
        if now >= next_report {
            if let Err(e) = balloon.status_report(&mut open.channel, host, now, &memory_status()) {
                log::error!("balloon: status report failed: {e:?}");
            }
            next_report = now + STATUS_REPORT_INTERVAL;
        }
        // Whichever comes first: the host's signal or the next report.
        let _ = select(open.signalled(), crate::time::sleep(next_report - now)).await;
    }
}
