//! Arbitrary host messages into the Hyper-V Dynamic Memory driver (`ringbolt-hyperv-balloon`).
//!
//! Input layout:
//!
//! ```text
//! 0       setup: bit 0    -> negotiate first, with QEMU's answers (so requests are taken)
//!                bits 1-3 -> the frame pool's largest run: 1 << n pages
//!                bit 4    -> the pool's frames are striped (every other frame), so no runs merge
//!                bits 5-7 -> the pool's floor: n * 64 pages
//! then steps, until the input runs out (at most 256):
//! 0       op % 8:
//!         0 raw message: n (u8), then n bytes
//!         1 framed message: type (u8 % 16), trans_id (u8), n (u8), then n body bytes, behind
//!           a header whose size is right
//!         2 balloon request: num_pages (u16)
//!         3 unballoon of held frames: which run (u8), how many (u8), more_pages (u8 bit 0)
//!         4 unballoon of arbitrary ranges: k (u8 % 4), then k raw u64 ranges, more_pages bit
//!         5 the ring takes up to n (u8) queued messages
//!         6 a status report, dt (u8, tens of ms) after the last one
//!         7 version or capabilities response: which (bit 0), accepted bits (bits 1-3), the
//!           expected trans_id or an arbitrary one (bit 4, then a u8)
//! ```
//!
//! Asserts: no panic; every message the guest sends parses, re-encodes to the same bytes and
//! fits one page; transaction ids go up by one in the order messages leave; a balloon
//! response names only frames the pool just handed out, none twice; the driver and the pool
//! agree on how many frames the host holds after every step, and on exactly which at the end,
//! when everything queued has left; the pool is never given back a frame it did not hand out;
//! a negotiated version is one the guest offers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbolt_hyperv_balloon::message::{
    CapabilitiesResponse, GuestBody, GuestMessage, HostBody, HostMessage, MAX_MESSAGE_SIZE, Ranges,
};
use ringbolt_hyperv_balloon::sim::FramePool;
use ringbolt_hyperv_balloon::{Balloon, Instant, MemoryStatus, PageRange, PageSet, Phase, Version};

/// The guest's frames: 1200 from frame 0x1000 (600 runs when striped: two balloon responses).
const FRAMES: u64 = 1200;

struct Guest {
    balloon: Balloon,
    pool: FramePool,
    /// The last trans_id that left.
    last_trans_id: u32,
    now: Instant,
}

impl Guest {
    /// Lets up to `n` queued messages leave, checking each.
    fn send(&mut self, n: usize) {
        for _ in 0..n {
            let taken_before = self.pool.taken().pages();
            let Some(bytes) = self.balloon.next_message(&mut self.pool) else {
                return;
            };
            let bytes = bytes.to_vec();
            self.check(&bytes, taken_before);
            self.balloon.message_sent();
        }
    }

    /// Checks a message leaving; `taken_before` is the pool's count before it was built.
    fn check(&mut self, bytes: &[u8], taken_before: u64) {
        assert!(bytes.len() <= MAX_MESSAGE_SIZE);
        let message = GuestMessage::parse(bytes).expect("the guest's messages parse");
        assert_eq!(message.encode(), bytes);
        assert_eq!(message.trans_id, self.last_trans_id.wrapping_add(1));
        self.last_trans_id = message.trans_id;
        // A balloon response names frames just taken, each once: all are taken, none twice,
        // and as many as the pool handed out for it.
        let mut named = PageSet::new();
        if let GuestBody::BalloonResponse { ranges, .. } = message.body {
            for range in ranges.iter() {
                assert!(!range.is_empty());
                assert!(named.insert(range.pfns()), "{range} named twice");
                assert!(self.pool.taken().contains(range.pfns()));
            }
        }
        assert_eq!(named.pages(), self.pool.taken().pages() - taken_before);
    }

    fn deliver(&mut self, bytes: &[u8]) {
        let _ = self.balloon.handle(bytes, &mut self.pool);
        self.check_state();
    }

    /// Cheap checks after every step; [`check_final`](Self::check_final) compares the sets.
    fn check_state(&self) {
        let (ballooned, taken) = (self.balloon.ballooned(), self.pool.taken());
        assert_eq!(ballooned.pages(), taken.pages());
        assert!(self.pool.errors().is_empty(), "{:?}", self.pool.errors());
        if let Some(version) = self.balloon.version() {
            assert!(ringbolt_hyperv_balloon::message::NEGOTIABLE.contains(&version));
        }
    }

    fn check_final(&self) {
        self.check_state();
        assert_eq!(self.balloon.ballooned(), self.pool.taken());
    }

    /// The trans_id the driver's outstanding request carries: the last one queued.
    fn expected_trans_id(&self) -> u32 {
        let mut probe = self.last_trans_id;
        if self.balloon.has_outgoing() {
            // The request is queued but has not left: it is the next id.
            probe = probe.wrapping_add(1);
        }
        probe
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, mut script)) = data.split_first() else {
        return;
    };
    let chunk = 1u64 << (setup >> 1 & 7);
    let floor = u64::from(setup >> 5) * 64;
    let frames: Vec<_> = if setup & 16 != 0 {
        (0..FRAMES / 2)
            .map(|i| 0x1000 + 2 * i..0x1000 + 2 * i + 1)
            .collect()
    } else {
        vec![0x1000..0x1000 + FRAMES]
    };
    let mut guest = Guest {
        balloon: Balloon::new(),
        pool: FramePool::new(frames, floor, chunk),
        last_trans_id: 0,
        now: Instant::ZERO,
    };
    guest.balloon.start();
    if setup & 1 != 0 {
        let answers = [
            HostBody::VersionResponse { accepted: true },
            HostBody::CapabilitiesResponse(CapabilitiesResponse {
                accepted: true,
                hot_remove: true,
                suppress_pressure_reports: false,
            }),
        ];
        for body in answers {
            guest.send(1);
            let trans_id = guest.last_trans_id;
            guest.deliver(&HostMessage { trans_id, body }.encode());
        }
        assert_eq!(guest.balloon.phase(), Phase::Ready);
    }

    for _ in 0..256 {
        let Some((&op, rest)) = script.split_first() else {
            break;
        };
        script = rest;
        let mut byte = || {
            let (&b, rest) = script.split_first().unwrap_or((&0, &[]));
            script = rest;
            b
        };
        match op % 8 {
            0 => {
                let n = usize::from(byte()).min(script.len());
                let (raw, rest) = script.split_at(n);
                script = rest;
                check_round_trip(raw);
                guest.deliver(raw);
            }
            1 => {
                let msg_type = u16::from(byte() % 16);
                let trans_id = u32::from(byte());
                let n = usize::from(byte()).min(script.len());
                let (body, rest) = script.split_at(n);
                script = rest;
                let mut message = Vec::with_capacity(8 + n);
                message.extend(msg_type.to_le_bytes());
                message.extend(((8 + n) as u16).to_le_bytes());
                message.extend(trans_id.to_le_bytes());
                message.extend(body);
                check_round_trip(&message);
                guest.deliver(&message);
            }
            2 => {
                let num_pages = u32::from(u16::from_le_bytes([byte(), byte()]));
                let body = HostBody::BalloonRequest { num_pages };
                guest.deliver(&HostMessage { trans_id: 7, body }.encode());
            }
            3 => {
                let runs: Vec<_> = guest.balloon.ballooned().runs().collect();
                let (which, count, more) = (byte(), byte(), byte() & 1 != 0);
                let range = (!runs.is_empty())
                    .then(|| runs[usize::from(which) % runs.len()].clone())
                    .and_then(|run| {
                        let count = u64::from(count).clamp(1, run.end - run.start);
                        PageRange::new(run.start, count)
                    });
                let ranges: Vec<_> = range.into_iter().collect();
                unballoon(&mut guest, &ranges, more);
            }
            4 => {
                let k = usize::from(byte() % 4);
                let ranges: Vec<_> = (0..k)
                    .map(|_| {
                        let mut raw = [0; 8];
                        raw.iter_mut().for_each(|b| *b = byte());
                        PageRange::from_wire(u64::from_le_bytes(raw))
                    })
                    .collect();
                let more = byte() & 1 != 0;
                unballoon(&mut guest, &ranges, more);
            }
            5 => guest.send(usize::from(byte())),
            6 => {
                guest.now =
                    Instant::from_millis(guest.now.as_nanos() / 1_000_000 + 10 * u64::from(byte()));
                // As the channel layer: queued messages first, reports only behind them.
                if !guest.balloon.has_outgoing() {
                    let status = MemoryStatus {
                        available: 100,
                        committed: 200,
                        ..MemoryStatus::default()
                    };
                    if let Some(report) = guest.balloon.status_report(guest.now, &status) {
                        let taken = guest.pool.taken().pages();
                        guest.check(&report, taken);
                    }
                }
            }
            _ => {
                let flags = byte();
                let trans_id = if flags & 16 != 0 {
                    u32::from(byte())
                } else {
                    guest.expected_trans_id()
                };
                let body = if flags & 1 == 0 {
                    HostBody::VersionResponse {
                        accepted: flags & 2 != 0,
                    }
                } else {
                    HostBody::CapabilitiesResponse(CapabilitiesResponse {
                        accepted: flags & 2 != 0,
                        hot_remove: flags & 4 != 0,
                        suppress_pressure_reports: flags & 8 != 0,
                    })
                };
                guest.deliver(&HostMessage { trans_id, body }.encode());
            }
        }
        guest.check_state();
    }
    // Whatever is queued can always leave.
    guest.send(usize::MAX);
    assert!(!guest.balloon.has_outgoing());
    guest.check_final();
});

fn unballoon(guest: &mut Guest, ranges: &[PageRange], more_pages: bool) {
    let body = HostBody::UnballoonRequest {
        more_pages,
        ranges: Ranges::Slice(ranges),
    };
    guest.deliver(&HostMessage { trans_id: 8, body }.encode());
}

/// Whatever parses re-encodes to something that parses to the same value.
fn check_round_trip(raw: &[u8]) {
    if let Ok(message) = HostMessage::parse(raw) {
        let encoded = message.encode();
        assert_eq!(HostMessage::parse(&encoded), Ok(message));
    }
}
