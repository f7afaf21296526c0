//! Pages shared with a hypervisor, accessed only through volatile loads and stores.
//!
//! The peer can change any byte at any moment, so no Rust reference into the page ever exists:
//! `ringbolt_shmem::SharedMemory` is implemented here with volatile accesses through raw
//! pointers, and the drivers above it copy out what they read once.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, compiler_fence, fence};

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use x86_64::{PhysAddr, VirtAddr};

const PAGE_SIZE: usize = 4096;

/// A 4 KiB page shared with the hypervisor (or a run of them, mapped consecutively).
pub(crate) struct SharedPage {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: `SharedPage` is an address; all accesses are volatile and the kernel runs one CPU.
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// The page at `phys`, which the kernel's page tables map identity, writable, for as long
    /// as the kernel runs (boot identity map, `Platform::shared_pages`, or a RAM frame).
    pub(crate) fn identity(phys: PhysAddr) -> Self {
        let base = NonNull::new(phys.align_down(PAGE_SIZE as u64).as_u64() as *mut u8)
            .expect("shared page at address 0");
        SharedPage {
            base,
            len: PAGE_SIZE,
        }
    }

    /// The `pages` identity-mapped pages from `phys` (physically contiguous RAM).
    pub(crate) fn identity_pages(phys: PhysAddr, pages: usize) -> Self {
        Self::mapped_pages(VirtAddr::new(phys.as_u64()), pages)
    }

    /// The page mapped at `virt` (a mapping of a frame that is not identity-mapped, such as Xen
    /// PV's `shared_info`), which stays mapped writable for as long as the kernel runs.
    pub(crate) fn mapped_at(virt: VirtAddr) -> Self {
        Self::mapped_pages(virt, 1)
    }

    /// The `pages` pages mapped consecutively from `virt` (Xen's grant-table frames), which
    /// stay mapped writable for as long as the kernel runs.
    pub(crate) fn mapped_pages(virt: VirtAddr, pages: usize) -> Self {
        let base = NonNull::new(virt.align_down(PAGE_SIZE as u64).as_mut_ptr::<u8>())
            .expect("shared page at address 0");
        SharedPage {
            base,
            len: pages * PAGE_SIZE,
        }
    }

    /// The page's (virtual) address; for an identity-mapped page also its physical one.
    pub(crate) fn address(&self) -> PhysAddr {
        PhysAddr::new(self.base.as_ptr() as u64)
    }

    /// A pointer to `len` bytes at `offset` (aligned to `align`), if they lie inside the pages.
    fn checked(&self, offset: usize, len: usize, align: usize) -> Result<*mut u8, OutOfBounds> {
        OutOfBounds::check(self.len, offset, len, align)?;
        // SAFETY: `check` proved offset + len <= self.len, so the result stays in the pages.
        Ok(unsafe { self.base.as_ptr().add(offset) })
    }
}

macro_rules! volatile_access {
    ($read:ident, $write:ident, $ty:ty) => {
        fn $read(&self, offset: usize) -> Result<$ty, OutOfBounds> {
            let pointer = self
                .checked(offset, size_of::<$ty>(), size_of::<$ty>())?
                .cast::<$ty>();
            // SAFETY: `pointer` is inside the mapped page and aligned for the type (checked by
            // `checked`); a volatile read of plain integer bytes is valid whatever the peer wrote.
            Ok(<$ty>::from_le(unsafe { pointer.read_volatile() }))
        }

        fn $write(&self, offset: usize, value: $ty) -> Result<(), OutOfBounds> {
            let pointer = self
                .checked(offset, size_of::<$ty>(), size_of::<$ty>())?
                .cast::<$ty>();
            // SAFETY: as for the read; the page is mapped writable.
            unsafe { pointer.write_volatile(value.to_le()) };
            Ok(())
        }
    };
}

impl SharedMemory for SharedPage {
    fn len(&self) -> usize {
        self.len
    }

    volatile_access!(read_u8, write_u8, u8);
    volatile_access!(read_u16, write_u16, u16);
    volatile_access!(read_u32, write_u32, u32);
    volatile_access!(read_u64, write_u64, u64);

    fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        let source = self.checked(offset, dst.len(), 1)?;
        for (index, byte) in dst.iter_mut().enumerate() {
            // SAFETY: `checked` proved that [offset, offset + dst.len()) is inside the page.
            *byte = unsafe { source.add(index).read_volatile() };
        }
        Ok(())
    }

    fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        let target = self.checked(offset, src.len(), 1)?;
        for (index, &byte) in src.iter().enumerate() {
            // SAFETY: as in `read_bytes`; the page is writable.
            unsafe { target.add(index).write_volatile(byte) };
        }
        Ok(())
    }

    fn fetch_and_u64(&self, offset: usize, value: u64) -> Result<u64, OutOfBounds> {
        let pointer = self.checked(offset, 8, 8)?.cast::<u64>();
        // SAFETY: `pointer` is inside the mapped, writable page and 8-aligned (checked); the
        // peer accesses the word only atomically or with plain aligned stores, which x86 makes
        // single-copy atomic, so a transient `AtomicU64` view of it is sound.
        let word = unsafe { AtomicU64::from_ptr(pointer) };
        Ok(u64::from_le(
            word.fetch_and(value.to_le(), Ordering::SeqCst),
        ))
    }

    fn compare_exchange_u32(
        &self,
        offset: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, OutOfBounds> {
        let pointer = self.checked(offset, 4, 4)?.cast::<u32>();
        // SAFETY: as in `fetch_and_u64`: inside the page, 4-aligned, and the peer's accesses to
        // the word are atomic or single aligned stores.
        let word = unsafe { AtomicU32::from_ptr(pointer) };
        Ok(word
            .compare_exchange(
                current.to_le(),
                new.to_le(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .map(u32::from_le)
            .map_err(u32::from_le))
    }

    // x86 is TSO: loads are not reordered with loads, nor stores with stores, so the read and
    // write barriers only have to stop the compiler. Store->load ordering needs mfence.
    fn read_barrier(&self) {
        compiler_fence(Ordering::SeqCst);
    }

    fn write_barrier(&self) {
        compiler_fence(Ordering::SeqCst);
    }

    fn full_barrier(&self) {
        fence(Ordering::SeqCst);
    }
}
