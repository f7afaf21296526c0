//! Networking: TCP over the platform's network interface.
//!
//! ```ignore
//! use ringbolt::net::TcpListener;
//!
//! let listener = TcpListener::bind(7).await?;
//! loop {
//!     let mut stream = listener.accept().await?;
//!     ringbolt::task::spawn(async move {
//!         let mut buf = [0; 1024];
//!         while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!             if stream.write_all(&buf[..n]).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! ```
//!
//! The platform's drivers find and connect the interface while the app starts (Xen: netfront,
//! the domain's first `vif`); [`interfaces`] and [`TcpListener::bind`] wait until they are
//! done. A platform without one (a plain PVH VMM such as QEMU) has none: [`interfaces`] is
//! empty and `bind` fails with [`NetError::NoInterface`].
//!
//! The interface's IPv4 address comes from the kernel command line: `ip=A.B.C.D/N`, and
//! optionally `gw=A.B.C.D` for a default route; or, without `ip=` (or with `ip=dhcp`), from a
//! DHCPv4 server: the stack's DHCP client takes the lease's address and router (and follows
//! renewals and a lost lease), and [`interfaces`] waits for the first lease, up to
//! [`DHCP_WAIT`] (after which the interface is listed without an address). The stack is
//! smoltcp: it answers ARP and ICMP echo (`ping`) itself, and runs TCP for the sockets the app
//! opens here. One task drives it, whenever the driver has news (Xen: the event channel
//! fired), a socket has something to send, or one of smoltcp's timers (retransmission,
//! delayed ACK, DHCP) is due.
//!
//! A [`TcpListener`] keeps a backlog of sockets listening on its port (8 with
//! [`TcpListener::bind`], as many as the app asks with [`TcpListener::bind_with_backlog`]), so
//! that many connections arriving together are all taken (a SYN finding no listening socket is
//! answered with a reset); [`TcpListener::accept`] hands out each one once its handshake is
//! done, and puts a new listening socket in its place at once. Each [`TcpStream`] has its own
//! 16 KiB receive and send buffers; dropping it closes the connection gracefully (what was
//! written is still sent). Streams and listeners are handles into one stack on one CPU: serve
//! each connection from its own task.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::{Future, poll_fn};
use core::net::Ipv4Addr;
use core::pin::Pin;
use core::task::Poll;
use core::time::Duration;

use smoltcp::iface::{Config, Interface as SmolInterface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};

use crate::probe::{Probe, Registry};
use crate::signal::Signals;
use crate::single_cpu::SingleCpu;
use crate::task::select;

/// Sockets listening per [`TcpListener`] from [`TcpListener::bind`]: connections whose
/// handshakes overlap.
const DEFAULT_BACKLOG: usize = 8;
/// Each connection's receive and send buffer.
const BUFFER: usize = 16 * 1024;
/// A connection whose peer acknowledges nothing for this long is reset.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`interfaces`] waits for a DHCP lease before listing the interface without one.
pub const DHCP_WAIT: Duration = Duration::from_secs(30);

/// Why a network operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetError {
    /// There is no network interface.
    NoInterface,
    /// Port 0, which nothing can listen on.
    InvalidPort,
    /// A backlog of 0 sockets, which would take no connection.
    InvalidBacklog,
    /// Another listener has the port.
    PortInUse,
    /// The connection is closed for sending: we closed it, or the peer reset it.
    Closed,
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetError::NoInterface => "no network interface",
            NetError::InvalidPort => "port 0 cannot be listened on",
            NetError::InvalidBacklog => "a listener needs a backlog of at least 1",
            NetError::PortInUse => "the port is already listened on",
            NetError::Closed => "the connection is closed",
        })
    }
}

impl core::error::Error for NetError {}

/// A network interface, as the app sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// The driver's name for it (Xen: `vif0`).
    pub name: String,
    /// Its Ethernet address.
    pub mac: [u8; 6],
    /// Its IPv4 address and prefix length (`ip=` or the DHCP lease), if it has one.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// The default gateway (`gw=` or the lease's router), if there is one.
    pub gateway: Option<Ipv4Addr>,
}

/// Counters since the interface connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Ethernet frames received and sent, and their bytes.
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames received that were dropped as bad, and frames that could not be sent.
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// TCP connections accepted, and those not yet fully closed.
    pub tcp_accepted: u64,
    pub tcp_open: u64,
}

/// Every network interface, once the drivers have found and connected them all.
pub async fn interfaces() -> Vec<Interface> {
    REGISTRY.all().await
}

/// The interface's counters, if there is an interface (checked without waiting for the
/// drivers).
pub fn stats() -> Option<Stats> {
    let stack = STACK.with(|stack| stack.clone())?;
    let mut stats = stack.driver.borrow().stats();
    stats.tcp_accepted = stack.accepted.get();
    stats.tcp_open = stack
        .sockets
        .borrow()
        .iter()
        .filter(|(_, socket)| {
            matches!(socket, smoltcp::socket::Socket::Tcp(socket) if !matches!(
                socket.state(),
                tcp::State::Listen | tcp::State::Closed | tcp::State::TimeWait
            ))
        })
        .count() as u64;
    Some(stats)
}

/// The stack, once the drivers are done.
async fn stack() -> Result<Rc<Stack>, NetError> {
    interfaces().await;
    STACK
        .with(|stack| stack.clone())
        .ok_or(NetError::NoInterface)
}

/// A TCP port we accept connections on. Dropping it stops listening; accepted streams live on.
pub struct TcpListener {
    stack: Rc<Stack>,
    port: u16,
    /// The sockets listening for it.
    backlog: RefCell<Vec<SocketHandle>>,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("port", &self.port)
            .finish()
    }
}

impl TcpListener {
    /// Listens on `port` of every address of the interface, with a backlog of 8 sockets.
    pub async fn bind(port: u16) -> Result<TcpListener, NetError> {
        Self::bind_with_backlog(port, DEFAULT_BACKLOG).await
    }

    /// Listens on `port` of every address of the interface with `backlog` sockets: as many
    /// connections as may arrive at once (each costs its buffers while it listens).
    pub async fn bind_with_backlog(port: u16, backlog: usize) -> Result<TcpListener, NetError> {
        if port == 0 {
            return Err(NetError::InvalidPort);
        }
        if backlog == 0 {
            return Err(NetError::InvalidBacklog);
        }
        let stack = stack().await?;
        if stack.ports.borrow().contains(&port) {
            return Err(NetError::PortInUse);
        }
        stack.ports.borrow_mut().push(port);
        let backlog = (0..backlog).map(|_| stack.listen(port)).collect();
        stack.wake();
        Ok(TcpListener {
            stack,
            port,
            backlog: RefCell::new(backlog),
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next connection whose handshake is done.
    pub async fn accept(&self) -> Result<TcpStream, NetError> {
        poll_fn(|cx| {
            let mut backlog = self.backlog.borrow_mut();
            let mut sockets = self.stack.sockets.borrow_mut();
            for slot in backlog.iter_mut() {
                let socket = sockets.get_mut::<tcp::Socket<'static>>(*slot);
                match socket.state() {
                    tcp::State::Listen | tcp::State::SynReceived => {
                        socket.register_recv_waker(cx.waker());
                    }
                    tcp::State::Established | tcp::State::CloseWait => {
                        drop(sockets);
                        let handle = core::mem::replace(slot, self.stack.listen(self.port));
                        self.stack.accepted.set(self.stack.accepted.get() + 1);
                        self.stack.wake();
                        return Poll::Ready(Ok(TcpStream {
                            stack: self.stack.clone(),
                            handle,
                        }));
                    }
                    // The handshake failed: listen again.
                    _ => {
                        socket.abort();
                        // Cannot fail: the socket is closed and the port is not 0.
                        let _ = socket.listen(self.port);
                        socket.register_recv_waker(cx.waker());
                        self.stack.wake();
                    }
                }
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut sockets = self.stack.sockets.borrow_mut();
        for handle in self.backlog.borrow_mut().drain(..) {
            // A listening socket has no peer; one mid-handshake is reset.
            sockets.get_mut::<tcp::Socket<'static>>(handle).abort();
            self.stack.orphans.borrow_mut().push(handle);
        }
        self.stack
            .ports
            .borrow_mut()
            .retain(|&port| port != self.port);
        self.stack.wake();
    }
}

/// An accepted TCP connection. Dropping it closes it (see the module doc).
pub struct TcpStream {
    stack: Rc<Stack>,
    handle: SocketHandle,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer", &self.peer())
            .finish()
    }
}

impl TcpStream {
    fn with<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        f(self
            .stack
            .sockets
            .borrow_mut()
            .get_mut::<tcp::Socket<'static>>(self.handle))
    }

    /// The peer's IPv4 address and port.
    pub fn peer(&self) -> Option<(Ipv4Addr, u16)> {
        self.with(|socket| {
            let endpoint = socket.remote_endpoint()?;
            let smoltcp::wire::IpAddress::Ipv4(addr) = endpoint.addr;
            Some((addr, endpoint.port))
        })
    }

    /// Reads what has arrived into `buf`, waiting until something has; 0 once the peer has
    /// closed its side (or reset the connection) and everything it sent has been read.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let read = poll_fn(|cx| {
            self.with(|socket| {
                if socket.can_recv() {
                    // Cannot fail: the socket may receive and has data.
                    Poll::Ready(socket.recv_slice(buf).unwrap_or(0))
                } else if !socket.may_recv() {
                    Poll::Ready(0)
                } else {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await;
        // The window opened: let the stack tell the peer.
        self.stack.wake();
        Ok(read)
    }

    /// Queues as much of `buf` as there is room for, waiting until there is some.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let written = poll_fn(|cx| {
            self.with(|socket| {
                if !socket.may_send() {
                    Poll::Ready(Err(NetError::Closed))
                } else if socket.can_send() {
                    Poll::Ready(socket.send_slice(buf).map_err(|_| NetError::Closed))
                } else {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await?;
        self.stack.wake();
        Ok(written)
    }

    /// Queues all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), NetError> {
        while !buf.is_empty() {
            let written = self.write(buf).await?;
            buf = &buf[written..];
        }
        Ok(())
    }

    /// Closes our side: what was written is still sent, then FIN. Reading goes on until the
    /// peer closes too.
    pub fn close(&mut self) {
        self.with(tcp::Socket::close);
        self.stack.wake();
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.close();
        self.stack.orphans.borrow_mut().push(self.handle);
    }
}

/// What the platform's network driver does for the stack. A driver that finds an interface
/// hands it to [`attach`].
pub(crate) trait Driver {
    /// The smoltcp interface over this device, from `config`.
    fn interface(&mut self, config: Config, now: smoltcp::time::Instant) -> SmolInterface;
    /// Runs `iface.poll` over the device: receives, sends, collects completions.
    fn poll(
        &mut self,
        iface: &mut SmolInterface,
        sockets: &mut SocketSet<'static>,
        now: smoltcp::time::Instant,
    );
    /// Completes when the device has news (a frame arrived, room came free).
    fn event(&self) -> Pin<Box<dyn Future<Output = ()>>>;
    /// The device's frame counters (the TCP ones are the stack's).
    fn stats(&self) -> Stats;
}

/// A connected network device.
pub(crate) struct Nic {
    /// The driver's name for it (`vif0`).
    pub(crate) name: String,
    pub(crate) mac: [u8; 6],
    pub(crate) driver: Box<dyn Driver>,
}

/// One interface with its sockets, driven by [`drive`].
struct Stack {
    /// The driver's name for the interface, for the log.
    name: String,
    /// The DHCP client's socket, if the address comes from DHCP.
    dhcp: Option<SocketHandle>,
    /// The DHCP lease's address and router, while there is one.
    lease: Cell<Option<Ipv4Config>>,
    iface: RefCell<SmolInterface>,
    sockets: RefCell<SocketSet<'static>>,
    driver: RefCell<Box<dyn Driver>>,
    /// Ports with a listener.
    ports: RefCell<Vec<u16>>,
    /// Sockets nobody holds any more: removed once closed.
    orphans: RefCell<Vec<SocketHandle>>,
    accepted: Cell<u64>,
}

static REGISTRY: Registry<Interface> = Registry::new();
static STACK: SingleCpu<Option<Rc<Stack>>> = SingleCpu::new(None);
/// Raised (as signal 0) when a socket has something for the stack to do.
static WAKE: Signals = Signals::new();

/// A network driver looking for interfaces: [`interfaces`] waits until it is dropped. Take it
/// before the app runs.
pub(crate) fn probe() -> Probe<Interface> {
    REGISTRY.probe()
}

/// Puts `nic` under the stack with the command line's address, lists it on `probe` and starts
/// the task that drives it. The stack serves one interface: a second is refused.
pub(crate) fn attach(mut nic: Nic, probe: &Probe<Interface>) {
    if STACK.with(|stack| stack.is_some()) {
        log::warn!("net: {}: only one interface is supported", nic.name);
        return;
    }
    let args = crate::env::args();
    let addressing = parse_ipv4(args.get("ip"), args.get("gw"))
        .inspect_err(|e| log::error!("net: {}: {e}; the interface has no address", nic.name))
        .ok();
    let now = smoltcp_now();
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(nic.mac)));
    // TCP's initial sequence numbers: different on every boot, as the clock never quite repeats.
    config.random_seed = crate::time::now().since_boot().as_nanos() as u64;
    let mut iface = nic.driver.interface(config, now);
    let mut sockets = SocketSet::new(Vec::new());
    let mut interface = Interface {
        name: nic.name.clone(),
        mac: nic.mac,
        ipv4: None,
        gateway: None,
    };
    let mut dhcp = None;
    match addressing {
        Some(Addressing::Static(config)) => {
            configure(&nic.name, &mut iface, Some(config), "");
            (interface.ipv4, interface.gateway) = (Some(config.0), config.1);
        }
        Some(Addressing::Dhcp) => dhcp = Some(sockets.add(dhcpv4::Socket::new())),
        None => {}
    }
    let stack = Rc::new(Stack {
        name: nic.name,
        dhcp,
        lease: Cell::new(None),
        iface: RefCell::new(iface),
        sockets: RefCell::new(sockets),
        driver: RefCell::new(nic.driver),
        ports: RefCell::new(Vec::new()),
        orphans: RefCell::new(Vec::new()),
        accepted: Cell::new(0),
    });
    STACK.with(|slot| *slot = Some(stack.clone()));
    let unlisted = if dhcp.is_some() {
        // A probe of its own keeps `interfaces` waiting for the lease after `probe` is gone.
        Some(Unlisted {
            probe: self::probe(),
            interface,
            deadline: crate::time::uptime() + DHCP_WAIT,
        })
    } else {
        probe.add(interface);
        None
    };
    drop(crate::task::spawn(drive(stack, unlisted)));
}

/// An interface waiting for its DHCP lease to be listed.
struct Unlisted {
    probe: Probe<Interface>,
    interface: Interface,
    /// Uptime by which it is listed, leased or not.
    deadline: Duration,
}

/// An address with its prefix length, and a gateway.
type Ipv4Config = ((Ipv4Addr, u8), Option<Ipv4Addr>);

/// Where the interface's address comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Addressing {
    /// `ip=A.B.C.D/N`, and `gw=A.B.C.D` if given.
    Static(Ipv4Config),
    /// A DHCP lease: no `ip=`, or `ip=dhcp`.
    Dhcp,
}

/// Gives `iface` the address and default route of `config` (none: takes them away) and logs
/// them, `source` appended (` (dhcp)`).
fn configure(name: &str, iface: &mut SmolInterface, config: Option<Ipv4Config>, source: &str) {
    iface.update_ip_addrs(|addrs| {
        addrs.clear();
        if let Some(((addr, prefix), _)) = config {
            // Cannot fail: the list is empty and holds at least one.
            let _ = addrs.push(IpCidr::Ipv4(Ipv4Cidr::new(addr, prefix)));
        }
    });
    iface.routes_mut().remove_default_ipv4_route();
    let Some(((addr, prefix), gateway)) = config else {
        log::warn!("net: {name}: no address{source}");
        return;
    };
    if let Some(gateway) = gateway
        && let Err(e) = iface.routes_mut().add_default_ipv4_route(gateway)
    {
        log::error!("net: {name}: default route via {gateway}: {e:?}");
    }
    log::info!(
        "net: {name}: {addr}/{prefix}{}{source}",
        gateway.map_or(String::new(), |gw| alloc::format!(" via {gw}"))
    );
}

/// `ip=A.B.C.D/N` (or `ip=dhcp`, or none: DHCP) and `gw=A.B.C.D` from the command line. A
/// gateway needs a static address.
fn parse_ipv4(ip: Option<&str>, gw: Option<&str>) -> Result<Addressing, String> {
    let address = ip
        .filter(|&ip| ip != "dhcp")
        .map(|ip| {
            let (addr, prefix) = ip
                .split_once('/')
                .ok_or_else(|| alloc::format!("ip={ip}: expected A.B.C.D/N"))?;
            let addr: Ipv4Addr = addr
                .parse()
                .map_err(|_| alloc::format!("ip={ip}: {addr:?} is not an IPv4 address"))?;
            match prefix.parse::<u8>() {
                Ok(prefix @ 1..=32) => Ok((addr, prefix)),
                _ => Err(alloc::format!(
                    "ip={ip}: prefix length {prefix:?} is not 1 to 32"
                )),
            }
        })
        .transpose()?;
    let gateway = gw
        .map(|gw| {
            gw.parse::<Ipv4Addr>()
                .map_err(|_| alloc::format!("gw={gw}: not an IPv4 address"))
        })
        .transpose()?;
    match (address, gateway) {
        (Some(address), gateway) => Ok(Addressing::Static((address, gateway))),
        (None, None) => Ok(Addressing::Dhcp),
        (None, Some(_)) => Err("gw= without a static ip=".into()),
    }
}

impl Stack {
    /// A new socket listening on `port`.
    fn listen(&self, port: u16) -> SocketHandle {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; BUFFER]),
            tcp::SocketBuffer::new(vec![0; BUFFER]),
        );
        socket.set_timeout(Some(smoltcp::time::Duration::from_secs(
            ACK_TIMEOUT.as_secs(),
        )));
        // Cannot fail: the socket is new and the port is not 0 (`bind` checked).
        let _ = socket.listen(port);
        self.sockets.borrow_mut().add(socket)
    }

    /// Asks the task driving the stack to poll it.
    fn wake(&self) {
        WAKE.raise([0]);
    }

    /// Polls the interface, removes closed orphans and says when to poll again.
    fn poll(&self) -> Option<Duration> {
        let now = smoltcp_now();
        let mut iface = self.iface.borrow_mut();
        let mut sockets = self.sockets.borrow_mut();
        self.driver.borrow_mut().poll(&mut iface, &mut sockets, now);
        if let Some(handle) = self.dhcp {
            let lease = match sockets.get_mut::<dhcpv4::Socket<'static>>(handle).poll() {
                Some(dhcpv4::Event::Configured(lease)) => Some(Some((
                    (lease.address.address(), lease.address.prefix_len()),
                    lease.router,
                ))),
                Some(dhcpv4::Event::Deconfigured) => Some(None),
                None => None,
            };
            // The client starts by reporting no lease, and renewals the same one.
            if let Some(lease) = lease
                && lease != self.lease.get()
            {
                configure(&self.name, &mut iface, lease, " (dhcp)");
                self.lease.set(lease);
            }
        }
        self.orphans.borrow_mut().retain(|&handle| {
            let state = sockets.get_mut::<tcp::Socket<'static>>(handle).state();
            let closed = matches!(state, tcp::State::Closed | tcp::State::TimeWait);
            if closed {
                sockets.remove(handle);
            }
            !closed
        });
        iface
            .poll_delay(now, &sockets)
            .map(|delay| Duration::from_micros(delay.total_micros()))
    }
}

/// Polls the stack whenever the device has news, a socket wants it, or a timer is due; lists
/// an interface `unlisted` for its lease once it has one, or at its deadline.
async fn drive(stack: Rc<Stack>, mut unlisted: Option<Unlisted>) {
    loop {
        let mut delay = stack.poll();
        let lease = stack.lease.get();
        let now = crate::time::uptime();
        if let Some(Unlisted {
            probe,
            mut interface,
            ..
        }) = unlisted.take_if(|waiting| lease.is_some() || now >= waiting.deadline)
        {
            match lease {
                Some((address, gateway)) => {
                    (interface.ipv4, interface.gateway) = (Some(address), gateway)
                }
                None => log::warn!(
                    "net: {}: no DHCP lease within {} s; listed without an address",
                    interface.name,
                    DHCP_WAIT.as_secs()
                ),
            }
            probe.add(interface);
        }
        if let Some(waiting) = &unlisted {
            let left = waiting.deadline - now;
            delay = Some(delay.map_or(left, |delay| delay.min(left)));
        }
        let news = select(stack.driver.borrow().event(), WAKE.fired(0));
        match delay {
            Some(delay) => {
                select(news, crate::time::sleep(delay)).await;
            }
            None => {
                news.await;
            }
        }
    }
}

/// smoltcp's clock: the monotonic clock since boot.
fn smoltcp_now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(crate::time::uptime().as_micros() as i64)
}
