//! Arbitrary ring contents under the VMBus ring reader and writer.
//!
//! The input is a ring region: byte 0 picks the data size (1 to 4 pages) and whether a hostile
//! "host" rewrites bytes while the reader works; then come the header fields and the data area.
//! Asserts: no panic or out-of-bounds access; every delivered packet agrees with its descriptor
//! (data offset at least 16 and inside the packet); packets plus trailers never exceed what was
//! published; the published read index stays in range and 8-aligned; a writer on the same
//! region either refuses or writes a packet the reader can read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbolt_shmem::fake::FakeSharedMemory;
use ringbolt_vmbus::packet::{OutgoingPacket, Packet};
use ringbolt_vmbus::ring::{self, RingReader, RingWriter, Write, header};

const PAGE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, body)) = data.split_first() else {
        return;
    };
    let data_pages = 1 + usize::from(setup & 3);
    let mem = FakeSharedMemory::new((1 + data_pages) * PAGE);
    let data_size = (data_pages * PAGE) as u32;
    // The header's first 16 bytes and the feature bits, then the data area.
    let (fields, rest) = body.split_at(body.len().min(20));
    mem.peer_write(0, &fields[..fields.len().min(16)]);
    if fields.len() > 16 {
        mem.peer_write(header::FEATURE_BITS, &fields[16..]);
    }
    mem.peer_write(
        ring::DATA_OFFSET,
        &rest[..rest.len().min(data_pages * PAGE)],
    );
    if setup & 4 != 0 {
        // A host that keeps rewriting the ring while we read it.
        let noise: Vec<u8> = rest.iter().rev().copied().take(64).collect();
        let mut n = 0usize;
        mem.set_read_hook(move |load, bytes| {
            n += 1;
            if noise.is_empty() || n % 3 != 0 {
                return;
            }
            let at = load.offset;
            let b = noise[n % noise.len()];
            if let Some(byte) = bytes.get_mut(at + usize::from(b) % 16) {
                *byte ^= b;
            }
        });
    }

    let (read0, write0) = (
        mem.peer_read_u32(header::READ_INDEX),
        mem.peer_read_u32(header::WRITE_INDEX),
    );
    if let Ok(mut reader) = RingReader::new(&mem) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut consumed = 0usize;
        let result = reader.drain(&mut buf, |p| {
            let d = p.descriptor();
            assert!(d.data_offset() >= 16 && d.data_offset() <= d.packet_len());
            assert_eq!(p.data().len(), d.packet_len() - d.data_offset());
            if let Ok(ranges) = p.gpa_ranges() {
                for range in ranges {
                    let range = range.expect("checked ranges");
                    assert!(!range.pfns.is_empty());
                }
            }
            consumed += d.packet_len() + ring::TRAILER_SIZE;
        });
        // With interference the "host" may scribble on our fields too; without it, a clean
        // drain consumed exactly what was published, and what we published is sane.
        if setup & 4 == 0 {
            if result.is_ok() {
                let published = (write0 + data_size - read0) % data_size;
                assert_eq!(consumed, published as usize);
            }
            let read = mem.peer_read_u32(header::READ_INDEX);
            assert!(read < data_size && read % 8 == 0);
            assert_eq!(mem.peer_read_u32(header::INTERRUPT_MASK), 0);
        }
    }
    mem.clear_read_hook();

    if let Ok(mut writer) = RingWriter::new(&mem) {
        let len = usize::from(setup >> 3) * 37;
        let payload = vec![0xa5u8; len];
        let before = mem.peer_read_u32(header::WRITE_INDEX);
        if let Ok(Write::Written { .. }) = writer.write(&OutgoingPacket::in_band(&payload)) {
            let after = mem.peer_read_u32(header::WRITE_INDEX);
            assert!(after < data_size && after % 8 == 0);
            // Read it back from where it started.
            mem.peer_write_u32(header::READ_INDEX, before);
            let mut reader = RingReader::new(&mem).expect("indices we wrote are valid");
            let mut buf = vec![0u8; 64 * 1024];
            let packet: Packet<'_> = reader
                .read_packet(&mut buf)
                .expect("our own packet parses")
                .expect("our own packet is there");
            assert_eq!(&packet.data()[..len], &payload[..]);
        }
    }
});
