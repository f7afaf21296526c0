//! The xenstore connection: the ring page and event channel the toolstack set up, a task that
//! moves bytes whenever the channel fires, the domain's identity in the boot log, and the
//! `control/shutdown` watch through which `xl shutdown` asks for a clean poweroff.

use alloc::rc::Rc;
use alloc::string::String;

use ringbolt_executor::Handle;
use ringbolt_xen_xenstore::{TxId, Xenstore, XsError};
use x86_64::PhysAddr;

use super::events::Notifier;
use crate::platform::ExitStatus;
use crate::runtime;
use crate::shared_page::SharedPage;

/// The store ring and its event channel, as the platform found them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StoreRing {
    /// The ring page, identity-mapped.
    pub(crate) page: PhysAddr,
    pub(crate) port: u32,
}

pub(crate) type Client = Xenstore<SharedPage, Notifier>;

/// Connects to xenstored, starts the tasks that serve the connection, and the device
/// frontends, which find their devices in the store.
pub(crate) fn start(ring: StoreRing, executor: &Handle) {
    let notify = Notifier { port: ring.port };
    let client = match Xenstore::new(SharedPage::identity(ring.page), notify) {
        Ok(client) => Rc::new(client),
        Err(e) => {
            log::error!("xenstore: cannot use the store ring: {e:?}");
            return;
        }
    };
    super::blk::start(client.clone(), executor);
    super::net::start(client.clone(), executor);
    let pump = client.clone();
    drop(executor.spawn(async move {
        loop {
            pump.process();
            super::events::fired(ring.port).await;
        }
    }));
    drop(executor.spawn(async move {
        if let Err(e) = announce(&client).await {
            log::warn!("xenstore: {e}");
        }
        if let Err(e) = serve_control(&client).await {
            log::warn!("xenstore: control/shutdown not watched: {e}");
        }
    }));
}

/// Logs who we are and tells the toolstack which shutdown requests we honour.
async fn announce(client: &Client) -> Result<(), XsError> {
    let name = text(client.read(TxId::NONE, "name").await?);
    let domid = text(client.read(TxId::NONE, "domid").await?);
    log::info!("xenstore: domain '{name}' (domid {domid})");
    for feature in ["control/feature-poweroff", "control/feature-reboot"] {
        client.write(TxId::NONE, feature, b"1").await?;
    }
    Ok(())
}

/// Waits for `control/shutdown` requests: `poweroff` and `halt` stop the app and power off
/// with status 0, `reboot` stops it and ends the domain as rebooted (the toolstack's
/// `on_reboot` decides what follows). The request is acknowledged by clearing the node, as
/// Linux does.
async fn serve_control(client: &Client) -> Result<(), XsError> {
    let mut watch = client
        .watch("control/shutdown", "ringbolt-shutdown")
        .await?;
    loop {
        watch.next_event().await?;
        let request = match client.read(TxId::NONE, "control/shutdown").await {
            Ok(value) => text(value),
            Err(XsError::NoEnt) => continue,
            Err(e) => return Err(e),
        };
        match request.as_str() {
            "" => continue,
            "poweroff" | "halt" | "reboot" => {
                client.write(TxId::NONE, "control/shutdown", b"").await?;
                log::info!("xenstore: {request} requested by the toolstack");
                runtime::request_stop(if request == "reboot" {
                    ExitStatus::Reboot
                } else {
                    ExitStatus::Code(0)
                });
            }
            other => {
                log::warn!("xenstore: unsupported shutdown request {other:?}");
                client.write(TxId::NONE, "control/shutdown", b"").await?;
            }
        }
    }
}

/// A node's value as text (xenstore values are bytes; ours and our backends' are ASCII).
pub(crate) fn text(bytes: alloc::vec::Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}
