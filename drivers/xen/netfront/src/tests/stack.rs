//! Whole stacks over the frontend: a smoltcp interface on netfront, the simulated netback, a
//! lossy wire, and a second smoltcp interface as the peer.

use std::vec;
use std::vec::Vec;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::{icmp, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, Ipv4Address};

use super::*;

const GUEST_MAC: MacAddress = MacAddress([0x00, 0x16, 0x3E, 0x00, 0x00, 0x01]);
const PEER_MAC: MacAddress = MacAddress([0x00, 0x16, 0x3E, 0x00, 0x00, 0x02]);
const GUEST_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const PEER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
const PORT: u16 = 7000;
const MIB: usize = 1 << 20;

/// The guest's and the peer's stacks around a rig, on a virtual clock.
struct Net<'a> {
    rig: Rig<'a>,
    guest: Interface,
    peer: Interface,
    guest_sockets: SocketSet<'static>,
    peer_sockets: SocketSet<'static>,
    now: Instant,
}

impl<'a> Net<'a> {
    fn new(mut rig: Rig<'a>) -> Self {
        let now = Instant::ZERO;
        let guest = interface(GUEST_MAC, GUEST_IP, 1, |config| {
            Interface::new(config, &mut rig.front.device(&mut rig.grants), now)
        });
        let peer = interface(PEER_MAC, PEER_IP, 2, |config| {
            Interface::new(config, &mut rig.back.peer(), now)
        });
        Net {
            rig,
            guest,
            peer,
            guest_sockets: SocketSet::new(vec![]),
            peer_sockets: SocketSet::new(vec![]),
            now,
        }
    }

    /// Both stacks poll, the backend serving in between. Then the clock moves by a
    /// millisecond if frames moved, else to the next timer either stack has.
    fn step(&mut self) {
        let moved = |back: &Netback<_>| back.tx_packets() + back.rx_packets() + back.wire_lost();
        let before = moved(&self.rig.back);
        let device = &mut self.rig.front.device(&mut self.rig.grants);
        self.guest.poll(self.now, device, &mut self.guest_sockets);
        self.rig.back.process().unwrap();
        self.peer
            .poll(self.now, &mut self.rig.back.peer(), &mut self.peer_sockets);
        self.rig.back.process().unwrap();
        let idle = [
            self.guest.poll_delay(self.now, &self.guest_sockets),
            self.peer.poll_delay(self.now, &self.peer_sockets),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Duration::from_secs(1));
        let tick = Duration::from_millis(1);
        self.now += if moved(&self.rig.back) == before {
            idle.max(tick)
        } else {
            tick
        };
    }

    /// Steps until `done`, at most `limit` times; panics past it.
    fn run_until(&mut self, limit: usize, mut done: impl FnMut(&mut Self) -> bool) {
        for _ in 0..limit {
            if done(self) {
                return;
            }
            self.step();
        }
        panic!(
            "not done after {limit} steps ({} ms virtual); frontend {:?}",
            self.now.total_millis(),
            self.rig.front.stats()
        );
    }
}

fn interface(
    mac: MacAddress,
    ip: Ipv4Address,
    seed: u64,
    make: impl FnOnce(Config) -> Interface,
) -> Interface {
    let mut config = Config::new(HardwareAddress::Ethernet(mac.into()));
    config.random_seed = seed;
    let mut iface = make(config);
    iface.update_ip_addrs(|addrs| addrs.push(IpCidr::new(ip.into(), 24)).unwrap());
    iface
}

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64 * 1024]),
        tcp::SocketBuffer::new(vec![0; 64 * 1024]),
    )
}

/// `len` bytes determined by `seed`, to tell the two directions' streams apart.
fn stream(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed.into()) as u8
        })
        .collect()
}

/// One end of a transfer: sends `out`, collects what arrives.
struct End {
    handle: SocketHandle,
    out: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
}

impl End {
    fn new(handle: SocketHandle, out: Vec<u8>) -> Self {
        End {
            handle,
            out,
            sent: 0,
            got: Vec::new(),
        }
    }

    fn pump(&mut self, sockets: &mut SocketSet<'_>) {
        let socket = sockets.get_mut::<tcp::Socket<'_>>(self.handle);
        if socket.can_send() && self.sent < self.out.len() {
            self.sent += socket.send_slice(&self.out[self.sent..]).unwrap();
        }
        while socket.can_recv() {
            socket
                .recv(|data| {
                    self.got.extend_from_slice(data);
                    (data.len(), ())
                })
                .unwrap();
        }
    }
}

/// Both ends send `len` bytes to each other over one TCP connection, `during(step, backend)`
/// before every step; checks every byte.
fn transfer<'a>(
    net: &mut Net<'a>,
    len: usize,
    limit: usize,
    mut during: impl FnMut(usize, &mut Netback<&'a FakeSharedMemory>),
) {
    let server = net.peer_sockets.add(tcp_socket());
    net.peer_sockets
        .get_mut::<tcp::Socket<'_>>(server)
        .listen(PORT)
        .unwrap();
    let client = net.guest_sockets.add(tcp_socket());
    net.guest_sockets
        .get_mut::<tcp::Socket<'_>>(client)
        .connect(net.guest.context(), (IpAddress::from(PEER_IP), PORT), 49152)
        .unwrap();
    let mut guest = End::new(client, stream(len, 3));
    let mut peer = End::new(server, stream(len, 11));
    let mut step = 0;
    net.run_until(limit, |net| {
        during(step, &mut net.rig.back);
        step += 1;
        guest.pump(&mut net.guest_sockets);
        peer.pump(&mut net.peer_sockets);
        guest.got.len() == len && peer.got.len() == len
    });
    assert!(guest.got == peer.out, "guest received corrupted bytes");
    assert!(peer.got == guest.out, "peer received corrupted bytes");
}

#[test]
fn arp_then_icmp_echo_to_the_peer() {
    let mem = Memory::new(32, 64);
    let mut net = Net::new(rig(&mem));
    let icmp = net.guest_sockets.add(icmp::Socket::new(
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
    ));
    net.guest_sockets
        .get_mut::<icmp::Socket<'_>>(icmp)
        .bind(icmp::Endpoint::Ident(0x1234))
        .unwrap();
    let data = b"ringbolt netfront ping";
    let mut replies = Vec::new();
    for seq_no in 0..3u16 {
        let request = Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no,
            data,
        };
        let socket = net.guest_sockets.get_mut::<icmp::Socket<'_>>(icmp);
        let buffer = socket
            .send(request.buffer_len(), IpAddress::from(PEER_IP))
            .unwrap();
        request.emit(
            &mut Icmpv4Packet::new_unchecked(buffer),
            &ChecksumCapabilities::default(),
        );
        net.run_until(100, |net| {
            let socket = net.guest_sockets.get_mut::<icmp::Socket<'_>>(icmp);
            let Ok((payload, from)) = socket.recv() else {
                return false;
            };
            assert_eq!(from, IpAddress::from(PEER_IP));
            let packet = Icmpv4Packet::new_checked(payload).unwrap();
            let reply = Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default()).unwrap();
            if let Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data: echoed,
            } = reply
            {
                assert_eq!((ident, echoed), (0x1234, &data[..]));
                replies.push(seq_no);
            }
            true
        });
    }
    assert_eq!(replies, [0, 1, 2]);
    // One ARP request resolved the peer; the pings went as IPv4.
    assert_eq!(net.rig.back.guest_sent(0x0806), 1);
    assert_eq!(net.rig.back.guest_sent(0x0800), 3);
    assert_eq!(net.rig.front.stats().protocol_errors, 0);
}

#[test]
fn tcp_moves_a_mebibyte_each_way_over_a_lossy_reordering_wire() {
    let mem = Memory::new(64, 256);
    let rig = rig_with(&mem, |b| b.with_wire(0x5EED, 10, 30));
    let mut net = Net::new(rig);
    transfer(&mut net, MIB, 20_000, |_, _| {});
    let back = &net.rig.back;
    assert!(back.wire_lost() > 0 && back.wire_reordered() > 0);
    let stats = net.rig.front.stats();
    assert_eq!(
        (stats.protocol_errors, stats.rx_errors, stats.tx_errors),
        (0, 0, 0)
    );
    assert!(stats.rx_bytes > MIB as u64 && stats.tx_bytes > MIB as u64);
    assert!(back.failures().is_empty(), "{:?}", back.failures());
}

#[test]
fn tcp_over_fragmented_receives_with_extra_info_and_few_pages() {
    let mem = Memory::new(8, 24);
    let rig = rig_with(&mem, |b| {
        b.with_wire(7, 5, 20)
            .with_rx_fragment(600)
            .with_rx_offset(10)
            .with_rx_extras(true)
    });
    let mut net = Net::new(rig);
    transfer(&mut net, MIB, 20_000, |_, _| {});
    let stats = net.rig.front.stats();
    assert_eq!((stats.protocol_errors, stats.rx_errors), (0, 0));
    assert_eq!(net.rig.front.held_pages(), 0);
    assert!(net.rig.back.failures().is_empty());
}

#[test]
fn tcp_survives_a_hostile_burst() {
    let mem = Memory::new(64, 256);
    let mut net = Net::new(rig(&mem));
    capture_logs();
    transfer(&mut net, MIB, 20_000, |step, back| {
        // A few steps in, while both directions are busy.
        back.set_hostile(match step {
            5 => Some(Hostile::GarbageStatus),
            6 => Some(Hostile::LengthPastPage),
            7 => Some(Hostile::BadExtraType),
            8 => Some(Hostile::KeepMapped),
            9 => Some(Hostile::UnissuedIds),
            10 => Some(Hostile::EndlessChain),
            _ => None,
        });
        if step == 20 {
            back.unmap_all();
        }
    });
    let stats = net.rig.front.stats();
    assert!(stats.protocol_errors > 0 && stats.rx_errors > 0 && stats.tx_errors > 0);
    assert_eq!(net.rig.front.broken(), None);
    assert_eq!(net.rig.front.held_pages(), 0);
    assert!(!errors(&take_logs()).is_empty());
}
