//! Runs the app's `main` on the executor and turns its exit code into the VM's end.

use alloc::boxed::Box;
use alloc::rc::Rc;
use core::fmt::Write;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use hermit_sync::OnceCell;
use ringbolt_boot::boot_info::CMDLINE_LIMIT;
use ringbolt_executor::{Either, Executor, Handle, select};
use ringbolt_time::{Clock, Instant};

use crate::app::ExitCode;
use crate::console::Console;
use crate::platform::{ExitStatus, platform};
use crate::single_cpu::SingleCpu;

unsafe extern "Rust" {
    /// Defined by the app through [`crate::main!`].
    fn ringbolt_app_main() -> Pin<Box<dyn Future<Output = ExitCode>>>;
}

static HANDLE: SingleCpu<Option<Handle>> = SingleCpu::new(None);
static CMDLINE: OnceCell<CmdlineCopy> = OnceCell::new();

/// The command line, copied out of loader memory before the boot page tables go away (no
/// heap exists yet, and the boot parser bounds it by `CMDLINE_LIMIT`).
struct CmdlineCopy {
    bytes: [u8; CMDLINE_LIMIT],
    len: usize,
}

/// The platform's monotonic clock, for the executor.
struct PlatformClock;

impl Clock for PlatformClock {
    fn now(&self) -> Instant {
        platform().now()
    }
}

/// The executor handle; apps reach it through `ringbolt::task` and `ringbolt::time`.
pub(crate) fn handle() -> Handle {
    HANDLE
        .with(|handle| handle.clone())
        .expect("executor used before the runtime started")
}

/// Keeps a copy of the boot command line (first call wins). Longer than the boot parser's
/// limit cannot happen; it would be cut at a character boundary.
pub(crate) fn set_cmdline(text: &str) {
    let mut len = text.len().min(CMDLINE_LIMIT);
    while !text.is_char_boundary(len) {
        len -= 1;
    }
    let mut bytes = [0; CMDLINE_LIMIT];
    bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
    let _ = CMDLINE.set(CmdlineCopy { bytes, len });
}

pub(crate) fn cmdline() -> &'static str {
    CMDLINE
        .get()
        .map(|copy| core::str::from_utf8(&copy.bytes[..copy.len]).unwrap_or_default())
        .unwrap_or_default()
}

pub(crate) fn run() -> ! {
    let mut executor = Executor::new(Rc::new(PlatformClock));
    HANDLE.with(|handle| *handle = Some(executor.handle()));
    platform().start_services(&executor.handle());
    // SAFETY: `ringbolt_app_main` is defined by the `main!` macro with exactly this signature;
    // an app without `main!` fails to link.
    let main = unsafe { ringbolt_app_main() };
    let ended = executor.block_on(select(main, StopRequested), |deadline| {
        platform().wait_for_event(deadline)
    });
    match ended {
        Either::Left(code) => exit(ExitStatus::Code(code.as_u8())),
        Either::Right(status) => exit(status),
    }
}

/// Ends the VM, printing the exit status as the console's last line.
pub(crate) fn exit(status: ExitStatus) -> ! {
    let _ = writeln!(Console, "ringbolt: exit status {}", status.code());
    platform().shutdown(status)
}

/// A stop the VM's owner asked for, and the task waiting for one.
static STOP: SingleCpu<(Option<ExitStatus>, Option<Waker>)> = SingleCpu::new((None, None));

/// Stops the app and ends the VM with `status` (the app's `main` is dropped at its next
/// await), on behalf of the VM's owner (`xl shutdown`, `xl reboot`).
pub(crate) fn request_stop(status: ExitStatus) {
    let waker = STOP.with(|(stop, waker)| {
        *stop = Some(status);
        waker.take()
    });
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Completes with the status of the first [`request_stop`].
struct StopRequested;

impl Future for StopRequested {
    type Output = ExitStatus;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ExitStatus> {
        STOP.with(|(stop, waker)| match *stop {
            Some(status) => Poll::Ready(status),
            None => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}
