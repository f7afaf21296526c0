//! VMBus ring buffers: `hv_ring_buffer` and the packets in it.
//!
//! A channel has two rings in guest memory, one per direction, each a header page followed by a
//! data area (`include/linux/hyperv.h`, the layout in the project's seed):
//!
//! ```text
//!  0 write_index   4 read_index   8 interrupt_mask   12 pending_send_sz   16 reserved1[12]
//! 64 feature_bits (bit 0: pending_send_sz supported)  ... padding to 4096
//! 4096: data, ring_datasize = region size - 4096 bytes
//! ```
//!
//! Indices are byte offsets into the data area, always below its size and multiples of 8. The
//! writer owns `write_index` and `pending_send_sz`, the reader `read_index` and
//! `interrupt_mask`. Each packet (see [`packet`](crate::packet)) is followed by an 8-byte trailer
//! holding the write index at which it started, shifted left 32 (Linux's `prev_indices`).
//!
//! ```text
//!   read_index            write_index
//!  [ .. free .. | pkt | tr | pkt | tr | .. free .. ]     bytes to read = (write - read) mod size
//!                                                        bytes free    = size - to read
//! ```
//!
//! # Full and empty
//!
//! `read_index == write_index` means empty, so a writer may never fill the ring exactly: a packet
//! of `n` bytes (trailer included) needs strictly more than `n` bytes free (Linux's
//! `hv_ringbuffer_write`: "if there is only room for the packet, assume it is full").
//!
//! # Signalling (Linux `ring_buffer.c`)
//!
//! - The writer signals the reader only when its packet turned the ring from empty to non-empty
//!   (the read index still equals the write index the packet started at), and only if the
//!   reader has not set `interrupt_mask`: Hyper-V throttles a guest that signals needlessly.
//! - A reader draining a batch sets `interrupt_mask` first, clears it when the ring looks empty,
//!   then looks again: a packet that arrived while the mask was set raised no signal.
//! - A writer that finds the ring full sets `pending_send_sz` to what it needs; a reader that
//!   frees space checks it after publishing its read index and signals the writer when free
//!   space crosses from not enough to enough (`hv_pkt_iter_close`). Readers honour this only if
//!   the ring's `feature_bits` says the writer uses it; [`init`] sets it, as Linux does.
//!
//! # Trust
//!
//! The peer's index (`write_index` for a reader, `read_index` for a writer) is read once per
//! step and must be in range and 8-aligned; each index we own is kept here and only published,
//! so the peer cannot move our side. A packet's descriptor is copied out first, its lengths
//! checked against the bytes published, then the rest of the packet copied: each byte of the
//! ring is read once.

use core::fmt;

use log::warn;
use ringbolt_shmem::{OutOfBounds, SharedMemory};

use crate::PAGE_SIZE;
use crate::packet::{DESCRIPTOR_SIZE, Descriptor, OutgoingPacket, Packet, PacketError};

/// Offsets in the ring's header page.
pub mod header {
    pub const WRITE_INDEX: usize = 0;
    pub const READ_INDEX: usize = 4;
    pub const INTERRUPT_MASK: usize = 8;
    pub const PENDING_SEND_SIZE: usize = 12;
    pub const FEATURE_BITS: usize = 64;
}

/// `feat_pending_send_sz`: the ring's writer sets `pending_send_sz` when it waits for space.
pub const FEATURE_PENDING_SEND_SIZE: u32 = 1;

/// Where the data area starts: the header takes one Hyper-V page.
pub const DATA_OFFSET: usize = PAGE_SIZE;

/// The 8 bytes after each packet.
pub const TRAILER_SIZE: usize = 8;

/// Why a ring operation failed. Everything but [`RingError::Region`],
/// [`RingError::BufferTooSmall`] and [`RingError::PacketTooLarge`] means the peer broke the
/// protocol; the ring cannot be trusted after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The region is not whole 4 KiB pages, has no data page, or its data area exceeds 4 GiB.
    Region { len: usize },
    /// The peer's index is past the data area or not a multiple of 8.
    BadIndex {
        which: Index,
        value: u32,
        data_size: u32,
    },
    /// Fewer bytes published than a descriptor and trailer: a packet cannot be partial.
    Truncated { available: u32 },
    /// The descriptor contradicts itself (length below the header, offset outside the packet).
    BadPacket(PacketError),
    /// The descriptor's packet (plus trailer) runs past the bytes the writer published.
    PacketPastData { len: usize, available: u32 },
    /// The caller's buffer cannot hold the next packet; nothing was consumed.
    BufferTooSmall { needed: usize },
    /// The packet can never fit this ring, or its description does not fit a descriptor.
    PacketTooLarge { len: usize },
    /// A shared-memory access failed: a region smaller than it claimed.
    Memory(OutOfBounds),
}

/// Which index a [`RingError::BadIndex`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Index {
    Read,
    Write,
}

impl From<OutOfBounds> for RingError {
    fn from(e: OutOfBounds) -> Self {
        RingError::Memory(e)
    }
}

impl From<PacketError> for RingError {
    fn from(e: PacketError) -> Self {
        match e {
            PacketError::TooLarge { len } => RingError::PacketTooLarge { len },
            other => RingError::BadPacket(other),
        }
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Region { len } => write!(f, "{len}-byte region is not a ring"),
            RingError::BadIndex {
                which,
                value,
                data_size,
            } => write!(
                f,
                "{which:?} index {value:#x} invalid in a {data_size:#x}-byte ring"
            ),
            RingError::Truncated { available } => {
                write!(f, "{available} bytes published, less than a packet")
            }
            RingError::BadPacket(e) => write!(f, "{e}"),
            RingError::PacketPastData { len, available } => write!(
                f,
                "{len}-byte packet and trailer past the {available} bytes published"
            ),
            RingError::BufferTooSmall { needed } => write!(f, "next packet needs {needed} bytes"),
            RingError::PacketTooLarge { len } => write!(f, "{len}-byte packet cannot fit"),
            RingError::Memory(e) => write!(f, "ring memory: {e}"),
        }
    }
}

impl core::error::Error for RingError {}

/// Prepares a ring region before it is shared: zeroes the header (both indices 0, no mask,
/// nothing pending) and sets [`FEATURE_PENDING_SEND_SIZE`], as Linux's `hv_ringbuffer_init`
/// does for both rings of a channel.
pub fn init(mem: &impl SharedMemory) -> Result<(), RingError> {
    data_size(mem)?;
    mem.write_bytes(0, &[0; PAGE_SIZE])?;
    mem.write_u32(header::FEATURE_BITS, FEATURE_PENDING_SEND_SIZE)?;
    mem.write_barrier();
    Ok(())
}

/// The data area's size for a ring region, checking the region's shape.
fn data_size(mem: &impl SharedMemory) -> Result<u32, RingError> {
    let len = mem.len();
    if !len.is_multiple_of(PAGE_SIZE) || len < 2 * PAGE_SIZE {
        return Err(RingError::Region { len });
    }
    u32::try_from(len - DATA_OFFSET).map_err(|_| RingError::Region { len })
}

/// Reads the peer's index once and checks it.
fn peer_index(mem: &impl SharedMemory, which: Index, data_size: u32) -> Result<u32, RingError> {
    let offset = match which {
        Index::Read => header::READ_INDEX,
        Index::Write => header::WRITE_INDEX,
    };
    let value = mem.read_u32(offset)?;
    if value >= data_size || !value.is_multiple_of(8) {
        warn!("vmbus ring: peer {which:?} index {value:#x} invalid (data size {data_size:#x})");
        return Err(RingError::BadIndex {
            which,
            value,
            data_size,
        });
    }
    Ok(value)
}

/// Bytes published but not yet read, between `read` and `write` on a ring of `size`.
fn unread(read: u32, write: u32, size: u32) -> u32 {
    if write >= read {
        write - read
    } else {
        size - read + write
    }
}

/// `index + n`, wrapped into a ring of `size` (`index < size`, `n <= size`).
fn advance(index: u32, n: u32, size: u32) -> u32 {
    let next = u64::from(index) + u64::from(n);
    (next % u64::from(size)) as u32
}

/// The sending end of a ring: guest-to-host for the guest, host-to-guest for a host.
#[derive(Debug)]
pub struct RingWriter<M> {
    mem: M,
    data_size: u32,
    /// Our write index, the value last published.
    write: u32,
    /// Whether we set `pending_send_sz` and must clear it once a write succeeds.
    pending: bool,
}

/// The outcome of [`RingWriter::write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// The packet is published; if `signal`, the reader must be signalled
    /// ([`Host::signal_event`](crate::Host::signal_event) for a guest).
    Written { signal: bool },
    /// Not enough room: nothing was written, and `pending_send_sz` now asks the reader to
    /// signal once `needed` bytes are free. Try again after that signal.
    Full { needed: u32 },
}

impl<M: SharedMemory> RingWriter<M> {
    /// Takes over the writing end of the ring in `mem`, continuing at the write index on it.
    pub fn new(mem: M) -> Result<Self, RingError> {
        let data_size = data_size(&mem)?;
        let write = peer_index(&mem, Index::Write, data_size)?;
        Ok(RingWriter {
            mem,
            data_size,
            write,
            pending: false,
        })
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Bytes free for writing, by the reader's current index.
    pub fn free(&self) -> Result<u32, RingError> {
        let read = peer_index(&self.mem, Index::Read, self.data_size)?;
        Ok(self.data_size - unread(read, self.write, self.data_size))
    }

    /// Writes `packet` and its trailer and publishes them.
    pub fn write(&mut self, packet: &OutgoingPacket<'_>) -> Result<Write, RingError> {
        let descriptor = packet.descriptor()?;
        let total = descriptor.packet_len() + TRAILER_SIZE;
        if total >= self.data_size as usize {
            return Err(RingError::PacketTooLarge { len: total });
        }
        // total < data_size <= u32::MAX.
        let total = total as u32;
        let free = self.free()?;
        if free <= total {
            self.mem.write_u32(header::PENDING_SEND_SIZE, total)?;
            self.mem.full_barrier();
            self.pending = true;
            return Ok(Write::Full { needed: total });
        }
        // The reader finished with the bytes we overwrite before it published its index.
        self.mem.full_barrier();
        let start = self.write;
        let mut at = start;
        let mut put = |bytes: &[u8]| -> Result<(), RingError> {
            copy_in(&self.mem, self.data_size, at, bytes)?;
            // Each piece is shorter than the packet, which is shorter than the ring.
            at = advance(at, bytes.len() as u32, self.data_size);
            Ok(())
        };
        put(&descriptor.encode())?;
        packet.write_body(&descriptor, &mut put)?;
        put(&(u64::from(start) << 32).to_le_bytes())?;
        // Data before the index that publishes it.
        self.mem.full_barrier();
        self.write = at;
        self.mem.write_u32(header::WRITE_INDEX, at)?;
        if self.pending {
            self.mem.write_u32(header::PENDING_SEND_SIZE, 0)?;
            self.pending = false;
        }
        Ok(Write::Written {
            signal: self.reader_needs_signal(start)?,
        })
    }

    /// Linux's `hv_signal_on_write`: signal only if the reader is not masking interrupts and
    /// had caught up to where this packet started, i.e. the ring was empty.
    fn reader_needs_signal(&self, start: u32) -> Result<bool, RingError> {
        self.mem.full_barrier();
        if self.mem.read_u32(header::INTERRUPT_MASK)? != 0 {
            return Ok(false);
        }
        self.mem.read_barrier();
        Ok(self.mem.read_u32(header::READ_INDEX)? == start)
    }
}

/// The receiving end of a ring: host-to-guest for the guest, guest-to-host for a host.
#[derive(Debug)]
pub struct RingReader<M> {
    mem: M,
    data_size: u32,
    /// Where the next packet starts; ahead of `published` while a batch is read.
    read: u32,
    /// The read index last published.
    published: u32,
}

/// The outcome of [`RingReader::drain`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub packets: usize,
    /// The writer was waiting for the space freed: signal it.
    pub signal: bool,
}

impl<M: SharedMemory> RingReader<M> {
    /// Takes over the reading end of the ring in `mem`, continuing at the read index on it.
    pub fn new(mem: M) -> Result<Self, RingError> {
        let data_size = data_size(&mem)?;
        let read = peer_index(&mem, Index::Read, data_size)?;
        Ok(RingReader {
            mem,
            data_size,
            read,
            published: read,
        })
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Bytes published and not yet read by this reader.
    pub fn available(&self) -> Result<u32, RingError> {
        let write = peer_index(&self.mem, Index::Write, self.data_size)?;
        Ok(unread(self.read, write, self.data_size))
    }

    /// Copies the next packet into `buf` and returns it, or `None` if the ring is empty.
    ///
    /// The read index is advanced here but published only by [`commit`](Self::commit). On an
    /// error nothing is consumed.
    pub fn read_packet<'b>(&mut self, buf: &'b mut [u8]) -> Result<Option<Packet<'b>>, RingError> {
        let available = self.available()?;
        if available == 0 {
            return Ok(None);
        }
        if (available as usize) < DESCRIPTOR_SIZE + TRAILER_SIZE {
            warn!("vmbus ring: {available} bytes published, less than a packet");
            return Err(RingError::Truncated { available });
        }
        // The packet bytes are at least as new as the index we read.
        self.mem.read_barrier();
        let mut raw = [0; DESCRIPTOR_SIZE];
        copy_out(&self.mem, self.data_size, self.read, &mut raw)?;
        let descriptor = Descriptor::decode(raw);
        if let Err(e) = descriptor.check() {
            warn!("vmbus ring: {e}");
            return Err(e.into());
        }
        let len = descriptor.packet_len();
        if len + TRAILER_SIZE > available as usize {
            warn!("vmbus ring: {len}-byte packet past the {available} bytes published");
            return Err(RingError::PacketPastData { len, available });
        }
        let Some(out) = buf.get_mut(..len) else {
            return Err(RingError::BufferTooSmall { needed: len });
        };
        let (head, rest) = out.split_at_mut(DESCRIPTOR_SIZE);
        head.copy_from_slice(&raw);
        copy_out(
            &self.mem,
            self.data_size,
            advance(self.read, DESCRIPTOR_SIZE as u32, self.data_size),
            rest,
        )?;
        // len + trailer <= available < data_size.
        self.read = advance(self.read, (len + TRAILER_SIZE) as u32, self.data_size);
        Ok(Some(Packet::parse(out)?))
    }

    /// Publishes the read index past every packet read so far, and says whether the writer
    /// must be signalled because it waits for the space just freed (`hv_pkt_iter_close`).
    pub fn commit(&mut self) -> Result<bool, RingError> {
        if self.read == self.published {
            return Ok(false);
        }
        // Our copies are complete before the writer may reuse the space.
        self.mem.full_barrier();
        let start = self.published;
        self.mem.write_u32(header::READ_INDEX, self.read)?;
        self.published = self.read;
        if self.mem.read_u32(header::FEATURE_BITS)? & FEATURE_PENDING_SEND_SIZE == 0 {
            return Ok(false);
        }
        // The read index is visible before pending_send_sz is sampled, or a writer that sets
        // it in between would never be signalled.
        self.mem.full_barrier();
        let pending = self.mem.read_u32(header::PENDING_SEND_SIZE)?;
        if pending == 0 {
            return Ok(false);
        }
        self.mem.read_barrier();
        let write = peer_index(&self.mem, Index::Write, self.data_size)?;
        let free = self.data_size - unread(self.read, write, self.data_size);
        let freed = unread(start, self.read, self.data_size);
        // Signal only on the transition from "not enough" to "enough"; exactly full is not
        // enough, as one byte must stay free.
        Ok(free.saturating_sub(freed) <= pending && free > pending)
    }

    /// Sets or clears `interrupt_mask`, asking the writer not to signal while we read anyway.
    pub fn set_interrupt_mask(&self, masked: bool) -> Result<(), RingError> {
        self.mem
            .write_u32(header::INTERRUPT_MASK, u32::from(masked))?;
        self.mem.full_barrier();
        Ok(())
    }

    /// Reads every packet, in batches, passing each to `on_packet` (Linux's `HV_CALL_BATCHED`
    /// mode): mask interrupts, read until empty, publish the read index, unmask, and look again
    /// for packets that arrived while masked.
    ///
    /// On an error the packets already delivered stay consumed and the mask is cleared.
    pub fn drain(
        &mut self,
        buf: &mut [u8],
        mut on_packet: impl FnMut(Packet<'_>),
    ) -> Result<Drained, RingError> {
        let mut drained = Drained::default();
        loop {
            self.set_interrupt_mask(true)?;
            let batch = loop {
                match self.read_packet(buf) {
                    Ok(Some(packet)) => {
                        drained.packets += 1;
                        on_packet(packet);
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            let committed = self.commit();
            let unmasked = self.set_interrupt_mask(false);
            drained.signal |= committed?;
            unmasked?;
            batch?;
            if self.available()? == 0 {
                return Ok(drained);
            }
        }
    }
}

/// Copies `src` into the data area at `index`, wrapping at the end.
fn copy_in(
    mem: &impl SharedMemory,
    data_size: u32,
    index: u32,
    src: &[u8],
) -> Result<(), OutOfBounds> {
    let start = index as usize;
    let first = src.len().min(data_size as usize - start);
    let (head, tail) = src.split_at(first);
    mem.write_bytes(DATA_OFFSET + start, head)?;
    if !tail.is_empty() {
        mem.write_bytes(DATA_OFFSET, tail)?;
    }
    Ok(())
}

/// Copies `dst.len()` bytes out of the data area from `index`, wrapping at the end.
fn copy_out(
    mem: &impl SharedMemory,
    data_size: u32,
    index: u32,
    dst: &mut [u8],
) -> Result<(), OutOfBounds> {
    let start = index as usize;
    let first = dst.len().min(data_size as usize - start);
    let (head, tail) = dst.split_at_mut(first);
    mem.read_bytes(DATA_OFFSET + start, head)?;
    if !tail.is_empty() {
        mem.read_bytes(DATA_OFFSET, tail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::packet::{FLAG_COMPLETION_REQUESTED, PacketType};
    use ringbolt_shmem::fake::{Event, FakeSharedMemory};
    use std::vec::Vec;

    /// A prepared ring of one header page and `data_pages` data pages.
    fn ring(data_pages: usize) -> FakeSharedMemory {
        let mem = FakeSharedMemory::new((1 + data_pages) * PAGE_SIZE);
        init(&mem).unwrap();
        mem
    }

    /// A ring whose indices both start at `at`, as if `at` bytes had gone through it.
    fn ring_at(data_pages: usize, at: u32) -> FakeSharedMemory {
        let mem = ring(data_pages);
        mem.peer_write_u32(header::WRITE_INDEX, at);
        mem.peer_write_u32(header::READ_INDEX, at);
        mem
    }

    fn read_all(reader: &mut RingReader<&FakeSharedMemory>) -> Vec<Vec<u8>> {
        let mut buf = [0; 4096];
        let mut out = Vec::new();
        while let Some(p) = reader.read_packet(&mut buf).unwrap() {
            out.push(p.data().to_vec());
        }
        out
    }

    #[test]
    fn init_zeroes_the_header_and_sets_the_feature_bit() {
        let mem = FakeSharedMemory::new(2 * PAGE_SIZE);
        mem.peer_write(0, &[0xff; 64]);
        init(&mem).unwrap();
        assert_eq!(mem.peer_read(0, 64), [0; 64]);
        assert_eq!(mem.peer_read_u32(header::FEATURE_BITS), 1);
        for len in [0, PAGE_SIZE, PAGE_SIZE + 8, 3 * PAGE_SIZE - 1] {
            let bad = FakeSharedMemory::new(len);
            assert_eq!(init(&bad), Err(RingError::Region { len }));
            assert!(RingWriter::new(&bad).is_err());
            assert!(RingReader::new(&bad).is_err());
        }
    }

    #[test]
    fn writes_a_packet_with_its_trailer_and_reads_it_back() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        let mut packet = OutgoingPacket::in_band(b"hello ring");
        packet.flags = FLAG_COMPLETION_REQUESTED;
        packet.transaction_id = 0x1234;
        assert_eq!(writer.write(&packet), Ok(Write::Written { signal: true }));
        // 16 + 10 data -> 32, plus the 8-byte trailer holding the start index.
        assert_eq!(mem.peer_read_u32(header::WRITE_INDEX), 40);
        assert_eq!(mem.peer_read_u64(DATA_OFFSET + 32), 0);
        let mut buf = [0; 64];
        let p = reader.read_packet(&mut buf).unwrap().unwrap();
        assert_eq!(p.packet_type(), Some(PacketType::DataInBand));
        assert_eq!(p.transaction_id(), 0x1234);
        assert!(p.completion_requested());
        assert_eq!(&p.data()[..10], b"hello ring");
        assert_eq!(reader.read_packet(&mut buf), Ok(None));
        // Not published until commit.
        assert_eq!(mem.peer_read_u32(header::READ_INDEX), 0);
        assert_eq!(reader.commit(), Ok(false));
        assert_eq!(mem.peer_read_u32(header::READ_INDEX), 40);
    }

    #[test]
    fn packets_wrap_around_the_end_of_the_data_area() {
        let mem = ring_at(1, 4096 - 24);
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        let data: Vec<u8> = (0..100).collect();
        for _ in 0..3 {
            writer.write(&OutgoingPacket::in_band(&data)).unwrap();
            let got = read_all(&mut reader);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0][..100], data[..]);
            reader.commit().unwrap();
        }
        // 3 * (16 + 104 + 8) bytes past 4072, modulo 4096.
        assert_eq!(
            mem.peer_read_u32(header::WRITE_INDEX),
            (4072 + 3 * 128) % 4096
        );
        // The first packet's trailer records where it started.
        let trailer_at = (4072 + 120) % 4096;
        assert_eq!(mem.peer_read_u64(DATA_OFFSET + trailer_at), 4072u64 << 32);
    }

    #[test]
    fn never_fills_the_ring_exactly() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        // 4096 data bytes: packets of 64 + 8 = 72 bytes. 56 of them take 4032 bytes, leaving
        // 64, which is not more than 72.
        let data = [0u8; 48];
        for _ in 0..56 {
            assert!(matches!(
                writer.write(&OutgoingPacket::in_band(&data)),
                Ok(Write::Written { .. })
            ));
        }
        assert_eq!(writer.free(), Ok(64));
        assert_eq!(
            writer.write(&OutgoingPacket::in_band(&data)),
            Ok(Write::Full { needed: 72 })
        );
        // A packet of exactly the free space would make full look empty: refused too.
        let exact = [0u8; 40]; // 16 + 40 + 8 = 64
        assert_eq!(
            writer.write(&OutgoingPacket::in_band(&exact)),
            Ok(Write::Full { needed: 64 })
        );
        let smaller = [0u8; 32]; // 56 < 64
        assert!(matches!(
            writer.write(&OutgoingPacket::in_band(&smaller)),
            Ok(Write::Written { .. })
        ));
        assert_eq!(writer.free(), Ok(8));
        let huge = [0u8; 4096];
        assert_eq!(
            writer.write(&OutgoingPacket::in_band(&huge)),
            Err(RingError::PacketTooLarge { len: 4096 + 16 + 8 })
        );
    }

    #[test]
    fn signals_only_on_empty_to_non_empty_and_only_unmasked() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        let p = OutgoingPacket::in_band(b"x");
        assert_eq!(writer.write(&p), Ok(Write::Written { signal: true }));
        // Not empty any more: the reader has not caught up.
        assert_eq!(writer.write(&p), Ok(Write::Written { signal: false }));
        read_all(&mut reader);
        reader.commit().unwrap();
        assert_eq!(writer.write(&p), Ok(Write::Written { signal: true }));
        read_all(&mut reader);
        reader.commit().unwrap();
        // Empty again, but the reader masked interrupts: it is reading anyway.
        reader.set_interrupt_mask(true).unwrap();
        assert_eq!(writer.write(&p), Ok(Write::Written { signal: false }));
    }

    #[test]
    fn publishes_data_then_the_write_index_with_a_barrier_between() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        mem.take_events();
        writer.write(&OutgoingPacket::in_band(b"ab")).unwrap();
        let events = mem.events();
        let index_store = events
            .iter()
            .position(|e| {
                *e == Event::Store {
                    offset: header::WRITE_INDEX,
                    width: 4,
                }
            })
            .unwrap();
        let last_data = events
            .iter()
            .rposition(|e| matches!(e, Event::Store { offset, .. } if *offset >= DATA_OFFSET))
            .unwrap();
        assert!(last_data < index_store);
        assert!(events[last_data..index_store].contains(&Event::FullBarrier));
    }

    #[test]
    fn a_full_writer_asks_for_space_and_the_reader_signals_when_it_frees_enough() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        let data = [7u8; 48]; // 72 bytes per packet
        while let Ok(Write::Written { .. }) = writer.write(&OutgoingPacket::in_band(&data)) {}
        assert_eq!(mem.peer_read_u32(header::PENDING_SEND_SIZE), 72);
        let mut buf = [0; 128];
        // Freeing one packet: 64 + 72 = 136 free > 72, and before it 64 <= 72: signal.
        reader.read_packet(&mut buf).unwrap().unwrap();
        assert_eq!(reader.commit(), Ok(true));
        // Freeing more is no new transition.
        reader.read_packet(&mut buf).unwrap().unwrap();
        assert_eq!(reader.commit(), Ok(false));
        // The next successful write withdraws the request.
        assert!(matches!(
            writer.write(&OutgoingPacket::in_band(&data)),
            Ok(Write::Written { .. })
        ));
        assert_eq!(mem.peer_read_u32(header::PENDING_SEND_SIZE), 0);
        reader.read_packet(&mut buf).unwrap().unwrap();
        assert_eq!(reader.commit(), Ok(false));
    }

    #[test]
    fn pending_send_size_needs_the_feature_bit_and_a_real_transition() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        let data = [7u8; 48];
        while let Ok(Write::Written { .. }) = writer.write(&OutgoingPacket::in_band(&data)) {}
        mem.peer_write_u32(header::FEATURE_BITS, 0);
        let mut buf = [0; 128];
        reader.read_packet(&mut buf).unwrap().unwrap();
        assert_eq!(reader.commit(), Ok(false));
        // With the bit, a pending size bigger than what freeing one packet gives: no signal.
        mem.peer_write_u32(header::FEATURE_BITS, 1);
        mem.peer_write_u32(header::PENDING_SEND_SIZE, 1000);
        reader.read_packet(&mut buf).unwrap().unwrap();
        assert_eq!(reader.commit(), Ok(false));
    }

    #[test]
    fn drain_masks_while_reading_and_catches_packets_that_race_the_unmask() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        writer.write(&OutgoingPacket::in_band(b"one")).unwrap();
        // A second packet lands just as the reader clears the mask: exactly when the writer
        // would not have signalled (the mask was still set when it looked).
        // The second packet as a writer lays it out at index 32: descriptor, "two" padded to
        // 8, trailer.
        let mut second = Descriptor {
            packet_type: PacketType::DataInBand as u16,
            offset8: 2,
            len8: 3,
            flags: 0,
            transaction_id: 0,
        }
        .encode()
        .to_vec();
        second.extend(b"two\0\0\0\0\0");
        second.extend((32u64 << 32).to_le_bytes());
        let mut fired = false;
        mem.set_read_hook(move |load, bytes| {
            let mask = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
            if !fired && load.offset == header::WRITE_INDEX && mask == 0 {
                fired = true;
                bytes[DATA_OFFSET + 32..DATA_OFFSET + 64].copy_from_slice(&second);
                bytes[0..4].copy_from_slice(&64u32.to_le_bytes());
            }
        });
        let mut buf = [0; 64];
        let mut got = Vec::new();
        let drained = reader
            .drain(&mut buf, |p| got.push(p.data()[..3].to_vec()))
            .unwrap();
        mem.clear_read_hook();
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(drained.packets, 2);
        assert_eq!(mem.peer_read_u32(header::INTERRUPT_MASK), 0);
        assert_eq!(mem.peer_read_u32(header::READ_INDEX), 64);
    }

    #[test]
    fn reads_each_ring_byte_once() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        writer.write(&OutgoingPacket::in_band(&[1; 40])).unwrap();
        mem.take_events();
        let mut buf = [0; 64];
        reader.read_packet(&mut buf).unwrap().unwrap();
        let data_loads: Vec<_> = mem
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Load { offset, width } if offset >= DATA_OFFSET => Some((offset, width)),
                _ => None,
            })
            .collect();
        assert_eq!(data_loads, [(DATA_OFFSET, 16), (DATA_OFFSET + 16, 40)]);
    }

    #[test]
    fn a_descriptor_changed_after_it_was_checked_is_not_reread() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        writer.write(&OutgoingPacket::in_band(&[1; 40])).unwrap();
        // After the descriptor is copied, the host rewrites len8 to something huge.
        mem.set_read_hook(|load, bytes| {
            if load.offset == DATA_OFFSET + 16 {
                bytes[DATA_OFFSET + 4..DATA_OFFSET + 6].copy_from_slice(&0xffffu16.to_le_bytes());
            }
        });
        let mut buf = [0; 64];
        let p = reader.read_packet(&mut buf).unwrap().unwrap();
        assert_eq!(p.descriptor().len8, 7);
        assert_eq!(p.data(), [1; 40]);
    }

    #[test]
    fn a_small_buffer_consumes_nothing() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        writer.write(&OutgoingPacket::in_band(&[3; 100])).unwrap();
        let mut small = [0; 64];
        assert_eq!(
            reader.read_packet(&mut small),
            Err(RingError::BufferTooSmall { needed: 120 })
        );
        let mut big = [0; 128];
        assert_eq!(
            reader.read_packet(&mut big).unwrap().unwrap().data()[..100],
            [3; 100]
        );
    }

    /// A ring with a hostile descriptor published at index 0 with `published` bytes.
    fn hostile(offset8: u16, len8: u16, published: u32) -> FakeSharedMemory {
        let mem = ring(1);
        let d = Descriptor {
            packet_type: 6,
            offset8,
            len8,
            flags: 0,
            transaction_id: 0,
        };
        mem.peer_write(DATA_OFFSET, &d.encode());
        mem.peer_write_u32(header::WRITE_INDEX, published);
        mem
    }

    #[test]
    fn rejects_every_malformed_packet_without_consuming_it() {
        let cases = [
            (hostile(2, 2, 8), RingError::Truncated { available: 8 }),
            (
                hostile(2, 1, 32),
                RingError::BadPacket(PacketError::LengthBelowHeader { len: 8 }),
            ),
            (
                hostile(2, 8, 32),
                RingError::PacketPastData {
                    len: 64,
                    available: 32,
                },
            ),
            (
                hostile(2, u16::MAX, 32),
                RingError::PacketPastData {
                    len: MAX_PACKET,
                    available: 32,
                },
            ),
            (
                hostile(1, 3, 32),
                RingError::BadPacket(PacketError::OffsetOutsidePacket { offset: 8, len: 24 }),
            ),
            (
                hostile(4, 3, 32),
                RingError::BadPacket(PacketError::OffsetOutsidePacket {
                    offset: 32,
                    len: 24,
                }),
            ),
        ];
        for (mem, expected) in cases {
            let mut reader = RingReader::new(&mem).unwrap();
            let mut buf = [0; 128];
            assert_eq!(reader.read_packet(&mut buf), Err(expected));
            assert_eq!(reader.commit(), Ok(false));
            assert_eq!(mem.peer_read_u32(header::READ_INDEX), 0);
            // Draining reports it too, and leaves the mask clear.
            assert_eq!(reader.drain(&mut buf, |_| {}), Err(expected));
            assert_eq!(mem.peer_read_u32(header::INTERRUPT_MASK), 0);
        }
    }

    const MAX_PACKET: usize = u16::MAX as usize * 8;

    #[test]
    fn rejects_peer_indices_past_the_end_or_misaligned() {
        let mem = ring(1);
        let mut reader = RingReader::new(&mem).unwrap();
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut buf = [0; 64];
        for bad in [4096, 4100, u32::MAX, 4] {
            mem.peer_write_u32(header::WRITE_INDEX, bad);
            assert_eq!(
                reader.read_packet(&mut buf),
                Err(RingError::BadIndex {
                    which: Index::Write,
                    value: bad,
                    data_size: 4096
                })
            );
            mem.peer_write_u32(header::READ_INDEX, bad);
            assert_eq!(
                writer.write(&OutgoingPacket::in_band(b"x")),
                Err(RingError::BadIndex {
                    which: Index::Read,
                    value: bad,
                    data_size: 4096
                })
            );
            // Taking over a ring with such an index fails too.
            assert!(RingReader::new(&mem).is_err());
        }
    }

    #[test]
    fn the_peer_cannot_move_our_index() {
        let mem = ring(1);
        let mut writer = RingWriter::new(&mem).unwrap();
        writer.write(&OutgoingPacket::in_band(b"a")).unwrap();
        // The host scribbles on write_index (ours); we keep writing from our own copy.
        mem.peer_write_u32(header::WRITE_INDEX, 1024);
        writer.write(&OutgoingPacket::in_band(b"b")).unwrap();
        assert_eq!(mem.peer_read_u32(header::WRITE_INDEX), 64);
        assert_eq!(mem.peer_read(DATA_OFFSET + 32 + 16, 1), b"b");
    }

    #[test]
    fn unread_and_advance_wrap() {
        assert_eq!(unread(0, 0, 4096), 0);
        assert_eq!(unread(8, 0, 4096), 4088);
        assert_eq!(unread(4088, 8, 4096), 16);
        assert_eq!(advance(4088, 16, 4096), 8);
        assert_eq!(advance(u32::MAX - 8, 8, u32::MAX), 0);
    }
}
