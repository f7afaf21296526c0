//! Xen virtual network interfaces: `ringbolt_xen_netfront` over the kernel's grant table,
//! event channels and xenbus, serving [`crate::net`].
//!
//! With the xenstore connection, a task finds the domain's first `device/vif`, runs the
//! xenbus handshake in netfront's order and hands the interface to the stack:
//!
//! 1. at the backend's `InitWait`, its features ([`BackendFeatures`]; one without
//!    `feature-rx-copy` is refused) and our `mac`;
//! 2. both rings granted ([`Setup::new`]) in frames from the frame allocator, an event
//!    channel to the backend, and the rings, channel and our features published with our
//!    state `Initialised`;
//! 3. [`TX_PAGES`] and [`RX_PAGES`] buffer frames given to netfront (the receive ones posted),
//!    then our state `Connected`, which makes netback connect; we wait until it has.
//!
//! The stack's task polls the interface whenever the event channel fires. What the backend
//! writes is checked by netfront; a misbehaving backend fails the setup or disables the
//! interface, never the kernel.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use core::fmt;
use core::future::Future;
use core::pin::Pin;

use ringbolt_executor::Handle;
use ringbolt_xen_abi::io::xenbus::{XENBUS_STATE_CONNECTED, XENBUS_STATE_INIT_WAIT};
use ringbolt_xen_netfront::{
    BackendFeatures, ConfigError, MacAddress, NetError, Netfront, Page, Setup,
};
use smoltcp::iface::{Config, Interface, SocketSet};
use x86_64::PhysAddr;

use super::XenError;
use super::events::{self, Notifier};
use super::grant::{self, SetupError};
use super::store::Client;
use super::xenbus::{self, Frontend, XenbusError};
use crate::memory;
use crate::net::{Driver, Nic, Stats};
use crate::platform::platform;
use crate::shared_page::SharedPage;

/// Transmit buffer frames: frames in flight at once.
const TX_PAGES: usize = 64;
/// Receive buffer frames kept posted.
const RX_PAGES: usize = 128;

/// Starts the task that finds and connects our first virtual network interface.
pub(crate) fn start(client: Rc<Client>, executor: &Handle) {
    // Taken now, before the app runs, so `net::interfaces` waits for this task.
    let probe = crate::net::probe();
    drop(executor.spawn(async move {
        let ids = match xenbus::find(&client, "vif").await {
            Ok(ids) => ids,
            Err(e) => {
                log::error!("netfront: cannot list devices: {e}");
                return;
            }
        };
        let Some(id) = ids.first() else {
            return;
        };
        if ids.len() > 1 {
            log::warn!("netfront: serving vif {id} only, of {}", ids.len());
        }
        match connect(client, id).await {
            Ok(nic) => crate::net::attach(nic, &probe),
            Err(e) => log::error!("netfront: vif {id}: {e}"),
        }
    }));
}

/// Why an interface could not be connected.
#[derive(Debug)]
enum ConnectError {
    Xenbus(XenbusError),
    Config(ConfigError),
    Grant(SetupError),
    EventChannel(XenError),
    Net(NetError),
    NoMemory,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Xenbus(e) => write!(f, "{e}"),
            ConnectError::Config(e) => write!(f, "{e}"),
            ConnectError::Grant(e) => write!(f, "grant table: {e}"),
            ConnectError::EventChannel(e) => write!(f, "EVTCHNOP_alloc_unbound failed: {e:?}"),
            ConnectError::Net(e) => write!(f, "{e}"),
            ConnectError::NoMemory => f.write_str("out of memory"),
        }
    }
}

impl From<XenbusError> for ConnectError {
    fn from(e: XenbusError) -> Self {
        ConnectError::Xenbus(e)
    }
}

/// Runs the xenbus handshake for `device/vif/<id>` and connects netfront.
async fn connect(client: Rc<Client>, id: &str) -> Result<Nic, ConnectError> {
    let frontend = Frontend::open(client, "vif", id).await?;
    let mac = frontend.read_own(MacAddress::KEY).await?;
    let mac = MacAddress::parse(&mac).map_err(ConnectError::Config)?;
    frontend.wait_for_backend(XENBUS_STATE_INIT_WAIT).await?;
    let result = handshake(&frontend).await;
    if result.is_err() {
        frontend.abandon().await;
    }
    let vif = result?;
    let features = vif.front.features();
    log::info!(
        "netfront: vif {id} {mac}: backend domain {}, sg {}, {} queue(s) offered",
        frontend.backend_id(),
        if features.sg { "on" } else { "off" },
        features.max_queues
    );
    Ok(Nic {
        name: format!("vif{id}"),
        mac: mac.0,
        driver: Box::new(vif),
    })
}

/// Steps 2 and 3 of the handshake (see the module doc).
async fn handshake(frontend: &Frontend) -> Result<Vif, ConnectError> {
    let nodes = frontend.read_backend(&BackendFeatures::KEYS).await?;
    let features =
        BackendFeatures::parse(|key| xenbus::node(&nodes, key)).map_err(ConnectError::Config)?;
    let grants = grant::table().map_err(ConnectError::Grant)?;
    let backend = frontend.backend_id();
    let setup = Setup::new(&mut grants.borrow_mut(), page()?, page()?, backend)
        .map_err(ConnectError::Net)?;
    let port = super::evtchn_alloc_unbound(backend).map_err(ConnectError::EventChannel)?;
    frontend
        .publish(&setup.frontend_keys(port).entries())
        .await?;
    let tx_pages = (0..TX_PAGES).map(|_| page()).collect::<Result<_, _>>()?;
    let rx_pages = (0..RX_PAGES).map(|_| page()).collect::<Result<_, _>>()?;
    let front = setup.connect(
        &mut grants.borrow_mut(),
        &features,
        Notifier { port },
        tx_pages,
        rx_pages,
    );
    frontend.switch(XENBUS_STATE_CONNECTED).await?;
    frontend.wait_for_backend(XENBUS_STATE_CONNECTED).await?;
    Ok(Vif {
        front,
        grants,
        port,
    })
}

/// A frame from the allocator, as netfront takes it.
fn page() -> Result<Page<SharedPage>, ConnectError> {
    let frame: PhysAddr = memory::allocate_frame().ok_or(ConnectError::NoMemory)?;
    Ok(Page {
        mem: SharedPage::identity(frame),
        frame: platform().grant_frame(frame),
    })
}

/// One connected interface.
struct Vif {
    front: Netfront<SharedPage, Notifier>,
    grants: grant::Table,
    /// The event channel the backend signals.
    port: u32,
}

impl Driver for Vif {
    fn interface(&mut self, config: Config, now: smoltcp::time::Instant) -> Interface {
        let mut grants = self.grants.borrow_mut();
        Interface::new(config, &mut self.front.device(&mut grants), now)
    }

    fn poll(
        &mut self,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        now: smoltcp::time::Instant,
    ) {
        let mut grants = self.grants.borrow_mut();
        iface.poll(now, &mut self.front.device(&mut grants), sockets);
    }

    fn event(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(events::fired(self.port))
    }

    fn stats(&self) -> Stats {
        let stats = self.front.stats();
        Stats {
            rx_frames: stats.rx_frames,
            rx_bytes: stats.rx_bytes,
            tx_frames: stats.tx_frames,
            tx_bytes: stats.tx_bytes,
            rx_errors: stats.rx_errors + stats.protocol_errors,
            tx_errors: stats.tx_errors + stats.tx_dropped,
            ..Stats::default()
        }
    }
}
