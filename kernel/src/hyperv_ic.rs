//! Hyper-V integration services on their VMBus channels: shutdown (clean poweroff or reboot
//! through the runtime's stop request), heartbeat, time sync (steps the wall clock) and KVP
//! (the guest's identity for the host's queries).
//!
//! The protocols are `ringbolt_hyperv_ic`, tested against its simulated host; no IC host runs
//! in the project's Hyper-V harness (QEMU implements none), so this glue runs on real Hyper-V
//! and Azure only.

use ringbolt_executor::Handle;
use ringbolt_hyperv_ic::kvp::{Pool, Value, intrinsic};
use ringbolt_hyperv_ic::{Action, Heartbeat, IcChannel, Kvp, Service, Shutdown, Timesync};
use ringbolt_vmbus::Guid;
use ringbolt_vmbus::guid::class;

use crate::platform::{ExitStatus, platform};
use crate::{hyperv, runtime, vmbus};

/// Ring pages each way for a service channel (one header page and three data pages, Linux's
/// size for the util channels).
const IC_RING_PAGES: usize = 4;

/// Starts the service for an offered channel of class `class`, if it is one.
pub(crate) fn probe(executor: &Handle, relid: u32, class: Guid) {
    let task = match class {
        class::SHUTDOWN => executor.spawn(serve(relid, Shutdown)),
        class::HEARTBEAT => executor.spawn(serve(relid, Heartbeat)),
        class::TIMESYNC => executor.spawn(serve(relid, Timesync::new(hyperv::reference_counter))),
        class::KVP => executor.spawn(serve(relid, guest_identity())),
        _ => return,
    };
    drop(task);
}

/// The KVP pool the host may read: who we are.
fn guest_identity() -> Kvp {
    let mut kvp = Kvp::new();
    let entries = [
        (intrinsic::OS_NAME, "Ringbolt"),
        (intrinsic::OS_VERSION, env!("CARGO_PKG_VERSION")),
        (
            intrinsic::INTEGRATION_SERVICES_VERSION,
            env!("CARGO_PKG_VERSION"),
        ),
    ];
    for (key, value) in entries {
        if let Err(e) = kvp.set(Pool::Auto, key, Value::String(value.into())) {
            log::warn!("hyperv: KVP {key}: {e}");
        }
    }
    kvp
}

/// Opens the service's channel and answers the host for as long as the VM runs.
async fn serve<S: Service>(relid: u32, service: S) {
    let mut open = match vmbus::open(relid, IC_RING_PAGES, &[]).await {
        Ok(open) => open,
        Err(e) => {
            log::error!("hyperv: {} service not opened: {e}", S::NAME);
            return;
        }
    };
    log::info!("hyperv: {} service on relid {relid}", S::NAME);
    let mut channel = IcChannel::new(service);
    loop {
        let polled = channel.poll(&mut open.channel, vmbus::host(), |outcome| {
            if let Ok(action) = outcome {
                act(action);
            }
        });
        if let Err(e) = polled {
            log::error!("hyperv: {} service stopped: {e}", S::NAME);
            return;
        }
        open.signalled().await;
    }
}

/// Does what the host asked for.
fn act(action: Action) {
    match action {
        Action::PowerOff { .. } => {
            log::info!("hyperv: poweroff requested by the host");
            runtime::request_stop(ExitStatus::Code(0));
        }
        Action::Reboot { .. } => {
            log::info!("hyperv: reboot requested by the host");
            runtime::request_stop(ExitStatus::Reboot);
        }
        // Samples every 5 s would only jitter a clock the reference TSC already keeps; the
        // sync after boot and resume sets it.
        Action::SetWallClock { unix_nanos, sync } => {
            if sync {
                platform().set_wall_clock(unix_nanos);
            }
        }
        Action::KvpChanged { pool } => log::debug!("hyperv: KVP pool {pool:?} changed"),
        Action::SetIpInfo(_) => log::warn!("hyperv: host IP injection refused"),
    }
}
