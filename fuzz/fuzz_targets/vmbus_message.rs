//! Arbitrary channel messages and guest operations against the VMBus connection state machine.
//!
//! The input is a script. Each step is an opcode byte and its operands: deliver the simulated
//! host's next message, deliver raw fuzzer bytes as a host message, or perform a guest operation
//! (connect, create or tear down a GPADL, open or close a channel, unload). Asserts: no panic;
//! every parser agrees with its encoder (a message that parses re-encodes to bytes that parse to
//! the same value); the connection's view stays sane (a negotiable version, offered relids unique
//! and in 1..=2047).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbolt_vmbus::message::{GuestMessage, HostMessage};
use ringbolt_vmbus::sim::{self, HostConfig, VmbusHost};
use ringbolt_vmbus::{Config, Connection, GpadlHandle, OpenParams, Version};

fuzz_target!(|data: &[u8]| {
    let Some((&setup, mut script)) = data.split_first() else {
        return;
    };
    let host_version = Version::NEGOTIABLE[usize::from(setup & 7)];
    let guest_version = Version::NEGOTIABLE[usize::from(setup >> 3 & 7)];
    let out = sim::ring_memory(2);
    let inb = sim::ring_memory(3);
    let host = VmbusHost::new(HostConfig {
        max_version: host_version,
        offers: vec![sim::balloon_offer(1), sim::balloon_offer(2)],
        ..HostConfig::hyperv(Version::V5_3)
    });
    host.share(&out);
    host.share(&inb);
    let mut conn = Connection::<4, 4>::new(Config {
        max_version: guest_version,
        target_vcpu: 0,
        vtl: 0,
        interrupt_page: 0,
        monitor_pages: [0x1000, 0x2000],
    });
    let _ = conn.connect(&host);
    let mut gpadl = GpadlHandle(0);

    while let Some((&op, rest)) = script.split_first() {
        script = rest;
        let mut operand = || {
            let (&b, rest) = script.split_first().unwrap_or((&0, &[]));
            script = rest;
            b
        };
        match op % 12 {
            0..=3 => {
                if let Some(message) = host.next_message() {
                    let _ = conn.handle_message(&host, &message);
                }
            }
            4 => {
                let len = usize::from(operand()).min(script.len());
                let (raw, rest) = script.split_at(len);
                script = rest;
                check_round_trip(raw);
                let _ = conn.handle_message(&host, raw);
            }
            5 => {
                let relid = u32::from(operand() % 4);
                let regions: &[&_] = if operand() & 1 == 0 {
                    &[&out, &inb]
                } else {
                    &[&out]
                };
                if let Ok(handle) = conn.create_gpadl(&host, relid, regions) {
                    gpadl = handle;
                }
            }
            6 => {
                let relid = u32::from(operand() % 4);
                let offset = u32::from(operand() % 8);
                let user_data = [0u8; 130];
                let len = usize::from(operand()) % user_data.len();
                let _ = conn.open_channel(
                    &host,
                    relid,
                    OpenParams {
                        ring_gpadl: gpadl,
                        downstream_page_offset: offset,
                        target_vp: 0,
                        user_data: &user_data[..len],
                    },
                );
            }
            7 => {
                let _ = conn.close_channel(&host, u32::from(operand() % 4));
            }
            8 => {
                let _ = conn.teardown_gpadl(&host, gpadl);
            }
            9 => {
                let _ = conn.unload(&host);
            }
            10 => {
                let _ = conn.connect(&host);
            }
            _ => {
                let relid = u32::from(operand() % 4);
                let rescind = ringbolt_vmbus::message::Rescind { child_relid: relid };
                let _ = conn.handle_message(&host, rescind.encode().as_bytes());
            }
        }
        if let Some(version) = conn.version() {
            assert!(Version::NEGOTIABLE.contains(&version));
            // The host's acceptance is believed (raw messages may accept anything offered), but
            // nothing newer than the guest allows is ever offered.
            assert!(version <= guest_version);
        }
        let mut relids: Vec<u32> = conn.offers().map(|o| o.child_relid).collect();
        assert!(relids.iter().all(|&r| (1..=2047).contains(&r)));
        relids.sort_unstable();
        relids.dedup();
        assert_eq!(relids.len(), conn.offers().count());
    }
});

/// Whatever parses re-encodes to something that parses to the same value.
fn check_round_trip(raw: &[u8]) {
    if let Ok(message) = HostMessage::parse(raw) {
        let encoded = message.encode();
        assert_eq!(HostMessage::parse(encoded.as_bytes()), Ok(message));
    }
    if let Ok(GuestMessage::GpadlHeader(header)) = GuestMessage::parse(raw) {
        assert!(header.pfns.len() <= header.page_count);
        assert_eq!(header.pfns.iter().count(), header.pfns.len());
    }
}
