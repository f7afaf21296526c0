//! The Xen PV console: our half of the `xencons_interface` byte rings.
//!
//! A Xen guest's console is one shared page (`xen/include/public/io/console.h`) with two byte
//! rings and their indices; the backend (`xenconsoled` in dom0, or Xen itself for a PVH
//! guest's early console) drains `out` and fills `in`. The page frame and event channel come
//! from `start_info.console.domU` (PV) or `HVM_PARAM_CONSOLE_PFN` / `_EVTCHN` (PVH/HVM); the
//! kernel maps the page and hands it over as a [`SharedMemory`]. Newlines, line discipline and
//! the event channel are the caller's: this is a byte stream with a "send a notification now"
//! answer.
//!
//! # Indices
//!
//! Indices are free-running `u32`s: they only ever increase (wrapping at 2^32), and an index is
//! masked by the ring size, a power of two, only to address a byte (`MASK_XENCONS_IDX`). So
//! `prod - cons` (wrapping) is always the number of unread bytes, and a full ring is
//! distinguishable from an empty one:
//!
//! ```text
//!          cons            prod                       cons == prod: empty
//!  out: [ . . | a b c d e f | . . . . . . . . ]       prod - cons == 2048: full
//!             '-- unread ---'-- free, ours --'        (free space wraps past the end)
//! ```
//!
//! # Trusting the backend as little as possible
//!
//! Every index the backend writes (`out_cons`, `in_prod`) is read **once** per call and
//! validated before use: `prod - cons` may not exceed the ring size. A broken or hostile
//! backend that violates it gets [`ConsoleError::Corrupt`], never an overwrite of unread
//! output, a read of stale bytes as input, or an endless loop. The indices we own (`out_prod`,
//! `in_cons`) are kept in [`ConsoleRing`] itself and only published to the page, so the
//! backend cannot move our side of either ring. (Linux's `hvc_xen` reads them back from the
//! page, and `BUG_ON`s where we return an error.)
//!
//! # Ordering (as `hvc_xen`'s `__write_console` and `domU_read_console`)
//!
//! - Writing: read `out_cons`, **full barrier** (the backend finished reading the bytes we are
//!   about to overwrite before it advanced `out_cons`), copy the bytes, **write barrier** (the
//!   data is visible before the index that announces it), publish `out_prod`.
//! - Reading: read `in_prod`, **read barrier** (the data we copy is at least as new as the
//!   index), copy the bytes, **full barrier** (our loads complete before we hand the slots
//!   back), publish `in_cons`.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use ringbolt_xen_abi::io::console::{
    IN, IN_CONS, IN_PROD, IN_SIZE, OUT, OUT_CONS, OUT_PROD, OUT_SIZE, SIZE, XenconsRingIdx,
};

/// Why the console could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// The backend's index puts more than a ring's worth of bytes between consumer and
    /// producer; nothing was copied and no index was published.
    Corrupt {
        cons: XenconsRingIdx,
        prod: XenconsRingIdx,
    },
    /// [`ConsoleRing::write_all`] gave up because `wait` said so; `written` bytes went out.
    Stalled { written: usize },
    /// The shared region is smaller than a `xencons_interface`.
    OutOfBounds(OutOfBounds),
}

impl From<OutOfBounds> for ConsoleError {
    fn from(e: OutOfBounds) -> Self {
        ConsoleError::OutOfBounds(e)
    }
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::Corrupt { cons, prod } => write!(
                f,
                "console ring corrupt: producer {prod:#x} is more than a ring past consumer {cons:#x}"
            ),
            ConsoleError::Stalled { written } => {
                write!(f, "console backend stopped draining after {written} bytes")
            }
            ConsoleError::OutOfBounds(e) => write!(f, "console page: {e}"),
        }
    }
}

impl core::error::Error for ConsoleError {}

/// The guest side of one console page. There must be only one per page: it owns `out_prod`
/// and `in_cons`.
#[derive(Debug)]
pub struct ConsoleRing<M> {
    mem: M,
    /// Our producer index on `out`, the value last published.
    out_prod: XenconsRingIdx,
    /// Our consumer index on `in`, the value last published.
    in_cons: XenconsRingIdx,
}

impl<M: SharedMemory> ConsoleRing<M> {
    /// Takes over the console page `mem`, continuing from the indices on it (the domain
    /// builder or an earlier boot stage may already have used the ring).
    pub fn new(mem: M) -> Result<Self, ConsoleError> {
        OutOfBounds::check(mem.len(), 0, SIZE, 1)?;
        let out_prod = mem.read_u32(OUT_PROD)?;
        let in_cons = mem.read_u32(IN_CONS)?;
        Ok(ConsoleRing {
            mem,
            out_prod,
            in_cons,
        })
    }

    /// The page, e.g. for the code that notifies the backend.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Copies as much of `bytes` as fits into `out` and publishes it.
    ///
    /// Returns the number of bytes written: if nonzero, the caller must notify the backend
    /// (`EVTCHNOP_send` on the console's event channel); zero means the ring is full (or
    /// `bytes` empty), and the caller waits for the backend to drain it.
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, ConsoleError> {
        let cons = self.mem.read_u32(OUT_CONS)?;
        let prod = self.out_prod;
        let free = OUT_SIZE - unread(cons, prod, OUT_SIZE)?;
        let n = free.min(bytes.len());
        if n == 0 {
            return Ok(0);
        }
        self.mem.full_barrier();
        copy_in(&self.mem, OUT, OUT_SIZE, prod, &bytes[..n])?;
        self.mem.write_barrier();
        // n <= OUT_SIZE, so it fits an index.
        self.out_prod = prod.wrapping_add(n as XenconsRingIdx);
        self.mem.write_u32(OUT_PROD, self.out_prod)?;
        Ok(n)
    }

    /// Writes all of `bytes`, calling `notify` after each chunk is published and `wait` while
    /// the ring is full.
    ///
    /// `wait` is the bound: it blocks until the backend may have made room (an event, a short
    /// sleep) and returns `false` to give up, e.g. past a deadline; the result is then
    /// [`ConsoleError::Stalled`] with the count written. Each other iteration publishes at
    /// least one byte, so the loop ends.
    pub fn write_all(
        &mut self,
        bytes: &[u8],
        mut notify: impl FnMut(),
        mut wait: impl FnMut() -> bool,
    ) -> Result<(), ConsoleError> {
        let mut written = 0;
        while written < bytes.len() {
            let n = self.write(&bytes[written..])?;
            if n > 0 {
                written += n;
                notify();
            } else if !wait() {
                return Err(ConsoleError::Stalled { written });
            }
        }
        Ok(())
    }

    /// Copies available input into `buf` and hands the slots back to the backend.
    ///
    /// Returns the number of bytes read: if nonzero, the caller should notify the backend,
    /// which may be waiting for room (as Linux's `domU_read_console` does); zero means no
    /// input (or `buf` empty).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ConsoleError> {
        let prod = self.mem.read_u32(IN_PROD)?;
        let cons = self.in_cons;
        let n = unread(cons, prod, IN_SIZE)?.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.mem.read_barrier();
        copy_out(&self.mem, IN, IN_SIZE, cons, &mut buf[..n])?;
        self.mem.full_barrier();
        // n <= IN_SIZE, so it fits an index.
        self.in_cons = cons.wrapping_add(n as XenconsRingIdx);
        self.mem.write_u32(IN_CONS, self.in_cons)?;
        Ok(n)
    }
}

/// Unread bytes between `cons` and `prod` on a ring of `size`, or `Corrupt` if the indices are
/// further apart than the ring holds.
fn unread(cons: XenconsRingIdx, prod: XenconsRingIdx, size: usize) -> Result<usize, ConsoleError> {
    let unread = prod.wrapping_sub(cons) as usize;
    if unread > size {
        return Err(ConsoleError::Corrupt { cons, prod });
    }
    Ok(unread)
}

/// Copies `src` (at most `size` bytes) into the ring at `ring` starting at index `idx`,
/// wrapping at the end.
fn copy_in(
    mem: &impl SharedMemory,
    ring: usize,
    size: usize,
    idx: XenconsRingIdx,
    src: &[u8],
) -> Result<(), OutOfBounds> {
    let start = idx as usize & (size - 1);
    let (head, tail) = src.split_at(src.len().min(size - start));
    mem.write_bytes(ring + start, head)?;
    if !tail.is_empty() {
        mem.write_bytes(ring, tail)?;
    }
    Ok(())
}

/// Copies `dst.len()` bytes (at most `size`) out of the ring at `ring` starting at index `idx`,
/// wrapping at the end.
fn copy_out(
    mem: &impl SharedMemory,
    ring: usize,
    size: usize,
    idx: XenconsRingIdx,
    dst: &mut [u8],
) -> Result<(), OutOfBounds> {
    let start = idx as usize & (size - 1);
    let first = dst.len().min(size - start);
    let (head, tail) = dst.split_at_mut(first);
    mem.read_bytes(ring + start, head)?;
    if !tail.is_empty() {
        mem.read_bytes(ring, tail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use ringbolt_shmem::Fault;
    use ringbolt_shmem::fake::{Event, FakeSharedMemory};
    use std::vec::Vec;

    /// A page whose `out` ring has `prod` written and `cons` consumed, with our side at `prod`.
    fn page_with_out(cons: u32, prod: u32) -> FakeSharedMemory {
        let mem = FakeSharedMemory::page();
        mem.peer_write_u32(OUT_CONS, cons);
        mem.peer_write_u32(OUT_PROD, prod);
        mem
    }

    /// What xenconsoled would print: the unread bytes of `out`, consumed.
    fn drain(mem: &FakeSharedMemory) -> Vec<u8> {
        let cons = mem.peer_read_u32(OUT_CONS);
        let prod = mem.peer_read_u32(OUT_PROD);
        let out = (0..prod.wrapping_sub(cons))
            .map(|i| {
                let idx = cons.wrapping_add(i) as usize & (OUT_SIZE - 1);
                mem.peer_read(OUT + idx, 1)[0]
            })
            .collect();
        mem.peer_write_u32(OUT_CONS, prod);
        out
    }

    /// xenconsoled typing `bytes` into `in`.
    fn type_input(mem: &FakeSharedMemory, bytes: &[u8]) {
        let prod = mem.peer_read_u32(IN_PROD);
        for (i, &b) in bytes.iter().enumerate() {
            let idx = prod.wrapping_add(i as u32) as usize & (IN_SIZE - 1);
            mem.peer_write(IN + idx, &[b]);
        }
        mem.peer_write_u32(IN_PROD, prod.wrapping_add(bytes.len() as u32));
    }

    #[test]
    fn writes_and_publishes_output() {
        let mem = FakeSharedMemory::page();
        let mut ring = ConsoleRing::new(&mem).unwrap();
        assert_eq!(ring.write(b"hello\n"), Ok(6));
        assert_eq!(mem.peer_read_u32(OUT_PROD), 6);
        assert_eq!(mem.peer_read(OUT, 6), b"hello\n");
        assert_eq!(drain(&mem), b"hello\n");
        assert_eq!(ring.write(b""), Ok(0));
        assert_eq!(mem.peer_read_u32(OUT_PROD), 6);
    }

    #[test]
    fn stores_data_before_the_producer_index_with_barriers_between() {
        let mem = page_with_out(2040, 2040);
        let mut ring = ConsoleRing::new(&mem).unwrap();
        mem.take_events();
        // Wraps, so the data takes two stores.
        assert_eq!(ring.write(b"0123456789"), Ok(10));
        assert_eq!(
            mem.events(),
            [
                Event::Load {
                    offset: OUT_CONS,
                    width: 4
                },
                Event::FullBarrier,
                Event::Store {
                    offset: OUT + 2040,
                    width: 8
                },
                Event::Store {
                    offset: OUT,
                    width: 2
                },
                Event::WriteBarrier,
                Event::Store {
                    offset: OUT_PROD,
                    width: 4
                },
            ]
        );
    }

    #[test]
    fn output_wraps_around_the_ring_end() {
        let mem = page_with_out(2046, 2046);
        let mut ring = ConsoleRing::new(&mem).unwrap();
        assert_eq!(ring.write(b"wrap!"), Ok(5));
        assert_eq!(mem.peer_read(OUT + 2046, 2), b"wr");
        assert_eq!(mem.peer_read(OUT, 3), b"ap!");
        assert_eq!(mem.peer_read_u32(OUT_PROD), 2051);
        assert_eq!(drain(&mem), b"wrap!");
    }

    #[test]
    fn indices_wrap_at_two_to_the_32() {
        let mem = page_with_out(u32::MAX - 1, u32::MAX - 1);
        let mut ring = ConsoleRing::new(&mem).unwrap();
        assert_eq!(ring.write(b"abcd"), Ok(4));
        assert_eq!(mem.peer_read_u32(OUT_PROD), 2);
        assert_eq!(mem.peer_read(OUT + 2046, 2), b"ab");
        assert_eq!(drain(&mem), b"abcd");
        assert_eq!(ring.write(b"e"), Ok(1));
        assert_eq!(mem.peer_read_u32(OUT_PROD), 3);
    }

    #[test]
    fn full_ring_accepts_nothing_until_the_backend_catches_up() {
        let mem = FakeSharedMemory::page();
        let mut ring = ConsoleRing::new(&mem).unwrap();
        let big = [b'x'; 3000];
        assert_eq!(ring.write(&big), Ok(OUT_SIZE));
        assert_eq!(ring.write(b"more"), Ok(0));
        // Nothing was published for the empty write.
        assert_eq!(mem.peer_read_u32(OUT_PROD), OUT_SIZE as u32);
        // The backend consumes 100 bytes; exactly that much room appears.
        mem.peer_write_u32(OUT_CONS, 100);
        assert_eq!(ring.write(&big), Ok(100));
        assert_eq!(ring.write(&big), Ok(0));
        assert_eq!(drain(&mem).len(), OUT_SIZE);
        assert_eq!(ring.write(b"again"), Ok(5));
    }

    #[test]
    fn rejects_a_consumer_index_more_than_a_ring_behind() {
        let mem = page_with_out(0, 0);
        let mut ring = ConsoleRing::new(&mem).unwrap();
        assert_eq!(ring.write(b"hi"), Ok(2));
        // A backend claiming to have consumed bytes we never wrote: prod - cons wraps huge.
        mem.peer_write_u32(OUT_CONS, 10);
        mem.take_events();
        assert_eq!(
            ring.write(b"data"),
            Err(ConsoleError::Corrupt { cons: 10, prod: 2 })
        );
        // Read the index once, wrote nothing.
        assert_eq!(
            mem.events(),
            [Event::Load {
                offset: OUT_CONS,
                width: 4
            }]
        );
        assert_eq!(mem.peer_read_u32(OUT_PROD), 2);
        // A backend rewriting out_prod cannot move our side either.
        mem.peer_write_u32(OUT_CONS, 2);
        mem.peer_write_u32(OUT_PROD, 1000);
        assert_eq!(ring.write(b"ok"), Ok(2));
        assert_eq!(mem.peer_read_u32(OUT_PROD), 4);
        assert_eq!(mem.peer_read(OUT + 2, 2), b"ok");
    }

    #[test]
    fn rejects_a_page_with_more_than_a_ring_unread_at_takeover() {
        let mem = page_with_out(0, OUT_SIZE as u32 + 1);
        let mut ring = ConsoleRing::new(&mem).unwrap();
        assert_eq!(
            ring.write(b"x"),
            Err(ConsoleError::Corrupt {
                cons: 0,
                prod: 2049
            })
        );
    }

    #[test]
    fn write_all_notifies_per_chunk_and_waits_while_full() {
        let mem = FakeSharedMemory::page();
        let mut ring = ConsoleRing::new(&mem).unwrap();
        let text: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut notifies = 0;
        let mut printed = Vec::new();
        ring.write_all(
            &text,
            || notifies += 1,
            || {
                // The backend drains when woken.
                printed.extend(drain(&mem));
                true
            },
        )
        .unwrap();
        printed.extend(drain(&mem));
        assert_eq!(printed, text);
        // 2048 + 2048 + 904, each chunk notified.
        assert_eq!(notifies, 3);
    }

    #[test]
    fn write_all_stops_when_wait_gives_up() {
        let mem = FakeSharedMemory::page();
        let mut ring = ConsoleRing::new(&mem).unwrap();
        let mut waits = 0;
        let result = ring.write_all(
            &[0; 3000],
            || {},
            || {
                waits += 1;
                waits < 3
            },
        );
        assert_eq!(result, Err(ConsoleError::Stalled { written: OUT_SIZE }));
        assert_eq!(waits, 3);
    }

    #[test]
    fn write_all_reports_corruption_instead_of_looping() {
        let mem = page_with_out(5000, 0);
        let mut ring = ConsoleRing::new(&mem).unwrap();
        let result = ring.write_all(b"x", || {}, || panic!("must not wait"));
        assert_eq!(
            result,
            Err(ConsoleError::Corrupt {
                cons: 5000,
                prod: 0
            })
        );
    }

    #[test]
    fn reads_input_and_returns_the_slots() {
        let mem = FakeSharedMemory::page();
        let mut ring = ConsoleRing::new(&mem).unwrap();
        let mut buf = [0; 16];
        assert_eq!(ring.read(&mut buf), Ok(0));
        type_input(&mem, b"ls\r");
        mem.take_events();
        assert_eq!(ring.read(&mut buf), Ok(3));
        assert_eq!(&buf[..3], b"ls\r");
        assert_eq!(mem.peer_read_u32(IN_CONS), 3);
        assert_eq!(
            mem.events(),
            [
                Event::Load {
                    offset: IN_PROD,
                    width: 4
                },
                Event::ReadBarrier,
                Event::Load {
                    offset: IN,
                    width: 3
                },
                Event::FullBarrier,
                Event::Store {
                    offset: IN_CONS,
                    width: 4
                },
            ]
        );
        assert_eq!(ring.read(&mut buf), Ok(0));
    }

    #[test]
    fn input_is_read_in_pieces_across_the_ring_end() {
        let mem = FakeSharedMemory::page();
        mem.peer_write_u32(IN_CONS, 1020);
        mem.peer_write_u32(IN_PROD, 1020);
        let mut ring = ConsoleRing::new(&mem).unwrap();
        type_input(&mem, b"abcdefghij");
        let mut buf = [0; 4];
        assert_eq!(ring.read(&mut buf), Ok(4));
        assert_eq!(&buf, b"abcd");
        assert_eq!(mem.peer_read_u32(IN_CONS), 1024);
        let mut rest = [0; 32];
        assert_eq!(ring.read(&mut rest), Ok(6));
        assert_eq!(&rest[..6], b"efghij");
        assert_eq!(mem.peer_read_u32(IN_CONS), 1030);
    }

    #[test]
    fn input_wraps_around_the_ring_end() {
        let mem = FakeSharedMemory::page();
        mem.peer_write_u32(IN_CONS, 1022);
        mem.peer_write_u32(IN_PROD, 1022);
        let mut ring = ConsoleRing::new(&mem).unwrap();
        type_input(&mem, b"wxyz");
        mem.take_events();
        let mut buf = [0; 8];
        assert_eq!(ring.read(&mut buf), Ok(4));
        assert_eq!(&buf[..4], b"wxyz");
        assert_eq!(mem.peer_read_u32(IN_CONS), 1026);
        let events = mem.events();
        assert_eq!(
            events[2..4],
            [
                Event::Load {
                    offset: IN + 1022,
                    width: 2
                },
                Event::Load {
                    offset: IN,
                    width: 2
                },
            ]
        );
    }

    #[test]
    fn a_full_input_ring_is_valid() {
        let mem = FakeSharedMemory::page();
        let mut ring = ConsoleRing::new(&mem).unwrap();
        type_input(&mem, &[b'k'; IN_SIZE]);
        let mut buf = [0; 2 * IN_SIZE];
        assert_eq!(ring.read(&mut buf), Ok(IN_SIZE));
        assert!(buf[..IN_SIZE].iter().all(|&b| b == b'k'));
    }

    #[test]
    fn rejects_a_producer_index_more_than_a_ring_ahead() {
        let mem = FakeSharedMemory::page();
        let mut ring = ConsoleRing::new(&mem).unwrap();
        mem.peer_write_u32(IN_PROD, IN_SIZE as u32 + 1);
        mem.take_events();
        let mut buf = [0; 8];
        assert_eq!(
            ring.read(&mut buf),
            Err(ConsoleError::Corrupt {
                cons: 0,
                prod: 1025
            })
        );
        // Nothing copied, nothing published.
        assert_eq!(
            mem.events(),
            [Event::Load {
                offset: IN_PROD,
                width: 4
            }]
        );
        assert_eq!(buf, [0; 8]);
        // A producer index behind ours is just as corrupt.
        mem.peer_write_u32(IN_PROD, u32::MAX);
        assert_eq!(
            ring.read(&mut buf),
            Err(ConsoleError::Corrupt {
                cons: 0,
                prod: u32::MAX
            })
        );
    }

    #[test]
    fn input_index_is_read_once_per_call() {
        let mem = FakeSharedMemory::page();
        let mut ring = ConsoleRing::new(&mem).unwrap();
        type_input(&mem, b"ab");
        // Once we are copying, the backend scribbles over in_prod: the value we validated is
        // the one we must use.
        mem.set_read_hook(|load, bytes| {
            if load.offset == IN {
                bytes[IN_PROD..IN_PROD + 4].copy_from_slice(&5000u32.to_le_bytes());
            }
        });
        mem.take_events();
        let mut buf = [0; 8];
        assert_eq!(ring.read(&mut buf), Ok(2));
        assert_eq!(&buf[..2], b"ab");
        assert_eq!(mem.peer_read_u32(IN_CONS), 2);
        let prod_loads = mem
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Load { offset, .. } if *offset == IN_PROD))
            .count();
        assert_eq!(prod_loads, 1);
        // The scribbled index is caught on the next call.
        mem.clear_read_hook();
        assert_eq!(
            ring.read(&mut buf),
            Err(ConsoleError::Corrupt {
                cons: 2,
                prod: 5000
            })
        );
    }

    #[test]
    fn rejects_a_region_smaller_than_the_interface() {
        let mem = FakeSharedMemory::new(SIZE - 1);
        assert!(matches!(
            ConsoleRing::new(&mem),
            Err(ConsoleError::OutOfBounds(OutOfBounds {
                fault: Fault::PastEnd,
                ..
            }))
        ));
        assert!(ConsoleRing::new(FakeSharedMemory::new(SIZE)).is_ok());
    }

    #[test]
    fn continues_from_the_indices_on_the_page() {
        let mem = page_with_out(300, 310);
        mem.peer_write_u32(IN_CONS, 77);
        mem.peer_write_u32(IN_PROD, 78);
        mem.peer_write(IN + 77, b"q");
        let mut ring = ConsoleRing::new(&mem).unwrap();
        assert_eq!(ring.write(b"z"), Ok(1));
        assert_eq!(mem.peer_read_u32(OUT_PROD), 311);
        assert_eq!(mem.peer_read(OUT + 310, 1), b"z");
        let mut buf = [0; 4];
        assert_eq!(ring.read(&mut buf), Ok(1));
        assert_eq!(buf[0], b'q');
        assert_eq!(ring.memory().peer_read_u32(IN_CONS), 78);
    }
}
