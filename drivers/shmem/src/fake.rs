//! A fake shared page for host tests: the test plays the peer.
//!
//! Compiled for this crate's tests and with the `fake` feature. [`FakeSharedMemory`] implements
//! [`SharedMemory`] over a heap buffer and adds what a real page cannot give a test:
//!
//! - a **read hook**, called before every load with the bytes, so a test can change memory
//!   between two loads of the same driver call, as a hypervisor on another CPU would (torn reads,
//!   seqlock retries, an index that moves mid-operation);
//! - an **event log** of every load, store and barrier in program order, so a test can assert
//!   the ordering a protocol requires (ring data stored, then a write barrier, then the index);
//! - **peer accesses** (`peer_*`) that neither log nor fire the hook, for setting up and
//!   inspecting the page. They panic on a bad offset: that is a bug in the test.
//!
//! Driver-side accesses follow the trait's rules exactly ([`OutOfBounds::check`]), so a driver
//! that passes here does not rely on anything the kernel's implementation would reject.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use crate::{OutOfBounds, SharedMemory};

/// One driver-side access, as recorded in the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Load {
        offset: usize,
        width: usize,
    },
    Store {
        offset: usize,
        width: usize,
    },
    /// A locked read-modify-write (`fetch_and_u64`, `compare_exchange_u32`).
    Update {
        offset: usize,
        width: usize,
    },
    ReadBarrier,
    WriteBarrier,
    FullBarrier,
}

/// The load about to happen, as passed to the read hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub offset: usize,
    pub width: usize,
}

type ReadHook = Box<dyn FnMut(Load, &mut [u8])>;

/// A zero-filled region backed by a `Vec<u8>`; see the module documentation.
pub struct FakeSharedMemory {
    bytes: RefCell<Vec<u8>>,
    events: RefCell<Vec<Event>>,
    read_hook: RefCell<Option<ReadHook>>,
}

impl FakeSharedMemory {
    /// A zeroed region of `len` bytes.
    pub fn new(len: usize) -> Self {
        FakeSharedMemory {
            bytes: RefCell::new(vec![0; len]),
            events: RefCell::new(Vec::new()),
            read_hook: RefCell::new(None),
        }
    }

    /// A zeroed 4 KiB page, the size of every Xen shared page.
    pub fn page() -> Self {
        Self::new(4096)
    }

    /// Calls `hook` before every driver-side load (scalar or byte run), with the load and
    /// mutable access to the whole region. Replaces any previous hook.
    ///
    /// The hook runs while the fake is borrowed, so it must not call the fake itself; it
    /// changes memory through the slice it is given.
    pub fn set_read_hook(&self, hook: impl FnMut(Load, &mut [u8]) + 'static) {
        *self.read_hook.borrow_mut() = Some(Box::new(hook));
    }

    pub fn clear_read_hook(&self) {
        *self.read_hook.borrow_mut() = None;
    }

    /// The driver-side accesses so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events.borrow().clone()
    }

    /// The driver-side accesses so far, clearing the log.
    pub fn take_events(&self) -> Vec<Event> {
        core::mem::take(&mut *self.events.borrow_mut())
    }

    /// A copy of the whole region.
    pub fn snapshot(&self) -> Vec<u8> {
        self.bytes.borrow().clone()
    }

    /// Copies `len` bytes at `offset` as the peer would see them.
    pub fn peer_read(&self, offset: usize, len: usize) -> Vec<u8> {
        self.bytes.borrow()[offset..offset + len].to_vec()
    }

    /// Stores `src` at `offset` as the peer would.
    pub fn peer_write(&self, offset: usize, src: &[u8]) {
        self.bytes.borrow_mut()[offset..offset + src.len()].copy_from_slice(src);
    }

    pub fn peer_read_u32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.peer_array(offset))
    }

    pub fn peer_read_u64(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.peer_array(offset))
    }

    pub fn peer_write_u8(&self, offset: usize, value: u8) {
        self.peer_write(offset, &[value]);
    }

    pub fn peer_write_u32(&self, offset: usize, value: u32) {
        self.peer_write(offset, &value.to_le_bytes());
    }

    pub fn peer_write_u64(&self, offset: usize, value: u64) {
        self.peer_write(offset, &value.to_le_bytes());
    }

    fn peer_array<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.bytes.borrow()[offset..offset + N]);
        out
    }

    /// Checks, logs and runs the hook for a load of `N` bytes, then performs it.
    fn load<const N: usize>(&self, offset: usize) -> Result<[u8; N], OutOfBounds> {
        let mut out = [0; N];
        self.load_into(offset, &mut out, N)?;
        Ok(out)
    }

    fn load_into(&self, offset: usize, dst: &mut [u8], align: usize) -> Result<(), OutOfBounds> {
        let mut bytes = self.bytes.borrow_mut();
        OutOfBounds::check(bytes.len(), offset, dst.len(), align)?;
        let width = dst.len();
        self.events.borrow_mut().push(Event::Load { offset, width });
        if let Some(hook) = self.read_hook.borrow_mut().as_mut() {
            hook(Load { offset, width }, &mut bytes);
        }
        dst.copy_from_slice(&bytes[offset..offset + width]);
        Ok(())
    }

    fn store(&self, offset: usize, src: &[u8], align: usize) -> Result<(), OutOfBounds> {
        let mut bytes = self.bytes.borrow_mut();
        OutOfBounds::check(bytes.len(), offset, src.len(), align)?;
        let width = src.len();
        self.events
            .borrow_mut()
            .push(Event::Store { offset, width });
        bytes[offset..offset + width].copy_from_slice(src);
        Ok(())
    }
}

impl fmt::Debug for FakeSharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeSharedMemory")
            .field("len", &self.bytes.borrow().len())
            .field("events", &self.events.borrow().len())
            .field("read_hook", &self.read_hook.borrow().is_some())
            .finish()
    }
}

impl SharedMemory for FakeSharedMemory {
    fn len(&self) -> usize {
        self.bytes.borrow().len()
    }

    fn read_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
        self.load(offset).map(u8::from_le_bytes)
    }
    fn read_u16(&self, offset: usize) -> Result<u16, OutOfBounds> {
        self.load(offset).map(u16::from_le_bytes)
    }
    fn read_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        self.load(offset).map(u32::from_le_bytes)
    }
    fn read_u64(&self, offset: usize) -> Result<u64, OutOfBounds> {
        self.load(offset).map(u64::from_le_bytes)
    }

    fn write_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds> {
        self.store(offset, &value.to_le_bytes(), 1)
    }
    fn write_u16(&self, offset: usize, value: u16) -> Result<(), OutOfBounds> {
        self.store(offset, &value.to_le_bytes(), 2)
    }
    fn write_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds> {
        self.store(offset, &value.to_le_bytes(), 4)
    }
    fn write_u64(&self, offset: usize, value: u64) -> Result<(), OutOfBounds> {
        self.store(offset, &value.to_le_bytes(), 8)
    }

    fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        self.load_into(offset, dst, 1)
    }
    fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        self.store(offset, src, 1)
    }

    fn fetch_and_u64(&self, offset: usize, value: u64) -> Result<u64, OutOfBounds> {
        let mut bytes = self.bytes.borrow_mut();
        OutOfBounds::check(bytes.len(), offset, 8, 8)?;
        self.events
            .borrow_mut()
            .push(Event::Update { offset, width: 8 });
        if let Some(hook) = self.read_hook.borrow_mut().as_mut() {
            hook(Load { offset, width: 8 }, &mut bytes);
        }
        let field = &mut bytes[offset..offset + 8];
        let mut current = [0; 8];
        current.copy_from_slice(field);
        let current = u64::from_le_bytes(current);
        field.copy_from_slice(&(current & value).to_le_bytes());
        Ok(current)
    }

    fn compare_exchange_u32(
        &self,
        offset: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, OutOfBounds> {
        let mut bytes = self.bytes.borrow_mut();
        OutOfBounds::check(bytes.len(), offset, 4, 4)?;
        self.events
            .borrow_mut()
            .push(Event::Update { offset, width: 4 });
        if let Some(hook) = self.read_hook.borrow_mut().as_mut() {
            hook(Load { offset, width: 4 }, &mut bytes);
        }
        let field = &mut bytes[offset..offset + 4];
        let mut found = [0; 4];
        found.copy_from_slice(field);
        let found = u32::from_le_bytes(found);
        if found != current {
            return Ok(Err(found));
        }
        field.copy_from_slice(&new.to_le_bytes());
        Ok(Ok(found))
    }

    fn read_barrier(&self) {
        self.events.borrow_mut().push(Event::ReadBarrier);
    }
    fn write_barrier(&self) {
        self.events.borrow_mut().push(Event::WriteBarrier);
    }
    fn full_barrier(&self) {
        self.events.borrow_mut().push(Event::FullBarrier);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fault;
    use alloc::rc::Rc;
    use core::cell::Cell;

    #[test]
    fn fetch_and_clears_bits_and_returns_the_old_word() {
        let mem = FakeSharedMemory::new(16);
        mem.peer_write_u64(8, 0b1011);
        assert_eq!(mem.fetch_and_u64(8, !0b0010), Ok(0b1011));
        assert_eq!(mem.peer_read_u64(8), 0b1001);
        assert_eq!(
            mem.fetch_and_u64(4, 0).unwrap_err().fault,
            Fault::Misaligned
        );
        assert_eq!(mem.fetch_and_u64(16, 0).unwrap_err().fault, Fault::PastEnd);
        assert_eq!(
            mem.events(),
            [Event::Update {
                offset: 8,
                width: 8
            }]
        );
    }

    #[test]
    fn compare_exchange_stores_only_on_a_match() {
        let mem = FakeSharedMemory::new(8);
        mem.peer_write_u32(4, 7);
        assert_eq!(mem.compare_exchange_u32(4, 6, 9), Ok(Err(7)));
        assert_eq!(mem.peer_read_u32(4), 7);
        assert_eq!(mem.compare_exchange_u32(4, 7, 9), Ok(Ok(7)));
        assert_eq!(mem.peer_read_u32(4), 9);
        assert_eq!(
            mem.compare_exchange_u32(2, 0, 0).unwrap_err().fault,
            Fault::Misaligned
        );
        assert_eq!(
            mem.compare_exchange_u32(8, 0, 0).unwrap_err().fault,
            Fault::PastEnd
        );
    }

    #[test]
    fn scalars_are_little_endian() {
        let mem = FakeSharedMemory::new(16);
        mem.write_u32(4, 0x1122_3344).unwrap();
        assert_eq!(mem.peer_read(4, 4), [0x44, 0x33, 0x22, 0x11]);
        mem.peer_write(8, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(mem.read_u64(8).unwrap(), 0x0807_0605_0403_0201);
        assert_eq!(mem.read_u16(8).unwrap(), 0x0201);
        assert_eq!(mem.read_u8(15).unwrap(), 8);
        mem.write_u16(2, 0xBEEF).unwrap();
        mem.write_u8(0, 0x7F).unwrap();
        mem.write_u64(8, u64::MAX - 1).unwrap();
        assert_eq!(mem.peer_read(0, 4), [0x7F, 0, 0xEF, 0xBE]);
        assert_eq!(mem.peer_read_u64(8), u64::MAX - 1);
    }

    #[test]
    fn rejects_out_of_range_and_misaligned_accesses_without_touching_memory() {
        let mem = FakeSharedMemory::new(16);
        assert_eq!(mem.read_u8(16).unwrap_err().fault, Fault::PastEnd);
        assert_eq!(mem.read_u64(12).unwrap_err().fault, Fault::PastEnd);
        assert_eq!(mem.read_u32(2).unwrap_err().fault, Fault::Misaligned);
        assert_eq!(mem.read_u16(usize::MAX).unwrap_err().fault, Fault::PastEnd);
        assert_eq!(
            mem.write_u64(4, u64::MAX).unwrap_err(),
            OutOfBounds {
                offset: 4,
                width: 8,
                region_len: 16,
                fault: Fault::Misaligned
            }
        );
        assert_eq!(mem.write_u16(15, 1).unwrap_err().fault, Fault::PastEnd);
        assert_eq!(
            mem.write_bytes(10, &[0xFF; 7]).unwrap_err().fault,
            Fault::PastEnd
        );
        let mut dst = [0; 2];
        assert_eq!(
            mem.read_bytes(15, &mut dst).unwrap_err().fault,
            Fault::PastEnd
        );
        assert_eq!(mem.snapshot(), [0; 16]);
        // Rejected accesses are not accesses: nothing was logged.
        assert_eq!(mem.events(), []);
    }

    #[test]
    fn byte_runs_may_be_unaligned() {
        let mem = FakeSharedMemory::new(16);
        mem.write_bytes(3, b"hello").unwrap();
        let mut dst = [0; 5];
        mem.read_bytes(3, &mut dst).unwrap();
        assert_eq!(&dst, b"hello");
    }

    #[test]
    fn read_hook_changes_memory_between_two_loads() {
        let mem = FakeSharedMemory::page();
        let loads = Rc::new(Cell::new(0));
        let seen = loads.clone();
        mem.set_read_hook(move |load, bytes| {
            seen.set(seen.get() + 1);
            if load.offset == 0 {
                bytes[0] += 1;
            }
        });
        assert_eq!(mem.read_u8(0).unwrap(), 1);
        assert_eq!(mem.read_u8(0).unwrap(), 2);
        assert_eq!(mem.read_u8(1).unwrap(), 0);
        assert_eq!(loads.get(), 3);
        mem.clear_read_hook();
        assert_eq!(mem.read_u8(0).unwrap(), 2);
        // Peer accesses do not fire the hook.
        assert_eq!(mem.peer_read(0, 1), [2]);
        assert_eq!(loads.get(), 3);
    }

    #[test]
    fn logs_driver_accesses_and_barriers_in_order() {
        let mem = FakeSharedMemory::page();
        mem.write_bytes(0, &[1, 2, 3]).unwrap();
        mem.write_barrier();
        mem.write_u32(8, 3).unwrap();
        mem.full_barrier();
        mem.read_u32(12).unwrap();
        mem.read_barrier();
        mem.peer_write_u32(12, 9);
        assert_eq!(
            mem.take_events(),
            [
                Event::Store {
                    offset: 0,
                    width: 3
                },
                Event::WriteBarrier,
                Event::Store {
                    offset: 8,
                    width: 4
                },
                Event::FullBarrier,
                Event::Load {
                    offset: 12,
                    width: 4
                },
                Event::ReadBarrier,
            ]
        );
        assert_eq!(mem.events(), []);
    }

    #[test]
    fn works_through_a_shared_reference() {
        fn publish(mem: impl SharedMemory) -> usize {
            mem.write_u32(0, 7).unwrap();
            mem.len()
        }
        let mem = FakeSharedMemory::new(8);
        assert_eq!(publish(&mem), 8);
        assert_eq!(mem.peer_read_u32(0), 7);
        assert!(!mem.is_empty());
        assert!(FakeSharedMemory::new(0).is_empty());
    }
}
