//! Physical memory, the kernel's page tables and the heap.
//!
//! Layout (virtual):
//! ```text
//! 0x0000_0000_0000_0000  guard page: unmapped, so a null dereference faults
//! 0x0000_0000_0000_1000  identity map of physical memory up to max(RAM end, 3 GiB)
//!                        (kernel image, boot structures, every frame the allocator hands out),
//!                        except the guard page below the boot stack
//! 0x0000_0000_fee0_0000  MMIO pages mapped one by one, uncached (local APIC, ...)
//! 0x0000_1000_0000_0000  heap: grows on demand, 4 KiB frames mapped as talc asks for more
//! ```
//! Page tables are read and written through the platform (`Platform::read_pte`/`write_pte`) so
//! the same mapper serves Xen PV, where every entry holds a machine frame and every write is a
//! hypercall. There the kernel also keeps the loader's tables and extends them in place
//! (`Platform::boot_page_tables`), 4 KiB pages only, and the null page is unmapped from them;
//! the identity map grows from the loader's bootstrap area upwards only as identity-mapped
//! frames are handed out (heap frames need no identity mapping).

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use hermit_sync::SpinMutex;
use ringbolt_boot::{BootInfo, PhysMemory};
use ringbolt_mm::{FRAME_SIZE, FrameAllocator, MapError, Mapper, PageTableMemory};
use talc::base::Talc;
use talc::base::binning::Binning;
use talc::source::Source;
use x86_64::structures::paging::PageTableFlags;
use x86_64::{PhysAddr, VirtAddr};

use crate::platform::platform;

/// What the boot page tables (boot/src/entry.s) map: the low 4 GiB, identity.
const BOOT_MAPPED_END: u64 = 1 << 32;
/// Below this the identity map always reaches, RAM or not (firmware tables, boot structures).
const IDENTITY_MIN_END: u64 = 3 << 30;
const HEAP_BASE: u64 = 0x0000_1000_0000_0000;
/// The heap may grow to this size (virtual reservation; frames are mapped on demand).
const HEAP_MAX: u64 = 1 << 40;
/// The heap grows by at least this much at a time, to keep the number of talc extensions low.
const HEAP_GROWTH: u64 = 1 << 20;

static FRAMES: SpinMutex<FrameAllocator> = SpinMutex::new(FrameAllocator::new());
/// New page-table frames come from below this address, which the active tables map: the boot
/// tables' 4 GiB, Xen PV's bootstrap area growing as the identity map is extended, then all
/// of the identity map.
static TABLE_FRAME_LIMIT: AtomicU64 = AtomicU64::new(BOOT_MAPPED_END);
/// The end of the identity map once complete. Xen PV reaches it lazily, a step at a time, as
/// identity-mapped frames are needed ([`ensure_mapped_frames`]): mapping all of RAM up front
/// costs Xen about 10 us of page-table validation per 4 KiB page under TCG.
static IDENTITY_TARGET: AtomicU64 = AtomicU64::new(BOOT_MAPPED_END);
/// The identity map grows in steps of this size on Xen PV, so each step's tables come from
/// memory the previous steps mapped.
const IDENTITY_STEP: u64 = 2 << 20;
/// Identity-mapped free frames kept for the page tables of the next mappings (a step or a heap
/// extension needs at most a leaf table, a directory and a PDPT).
const TABLE_RESERVE: u64 = 4;
static PAGES: SpinMutex<Option<Mapper<PlatformPageTables>>> = SpinMutex::new(None);

/// Usable RAM in the memory map, in bytes, recorded at boot.
static TOTAL_BYTES: hermit_sync::OnceCell<u64> = hermit_sync::OnceCell::new();

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static boot_stack_guard: u8;
}

/// Reads physical memory through the boot identity map, for the boot-info parser. Valid only
/// until [`init`] switches to the kernel's page tables.
pub(crate) struct BootIdentityMap;

impl PhysMemory for BootIdentityMap {
    fn read(&self, paddr: u64, len: usize) -> Option<&[u8]> {
        let end = paddr.checked_add(len as u64)?;
        if paddr == 0 || end > BOOT_MAPPED_END {
            return None;
        }
        // Loaders put structures in page 0 too (QEMU's PVH ROM does), which the kernel's tables
        // leave unmapped: boot info is used only before `init` switches tables, and the entry
        // copies what outlives it.
        // SAFETY: 1. [paddr, end) is inside (0, 4 GiB), identity-mapped by the boot tables:
        // valid and non-null for `len` bytes. 2. Read only, as u8 (no alignment or validity
        // requirement). 3. Nothing in the kernel writes boot structures: no &mut aliases them.
        Some(unsafe { core::slice::from_raw_parts(paddr as *const u8, len) })
    }
}

/// Page-table frames come from the frame allocator, below `TABLE_FRAME_LIMIT` so the active
/// tables reach them while the kernel's are being built; entries go through the platform.
pub(crate) struct PlatformPageTables;

impl PageTableMemory for PlatformPageTables {
    fn allocate_table(&mut self) -> Option<PhysAddr> {
        let frame = FRAMES
            .lock()
            .allocate_below(TABLE_FRAME_LIMIT.load(Ordering::Relaxed))?;
        // SAFETY: the frame is fresh from the allocator (no one else holds it, and it is mapped
        // nowhere but the identity map) and lies below TABLE_FRAME_LIMIT, which the active
        // tables identity-map writable.
        unsafe { core::ptr::write_bytes(frame.as_u64() as *mut u8, 0, FRAME_SIZE as usize) };
        platform().prepare_page_table(frame);
        Some(frame)
    }

    fn read_entry(&self, table: PhysAddr, index: usize) -> u64 {
        assert!(index < 512, "page-table index {index} out of range");
        platform().read_pte(table, index)
    }

    fn write_entry(&mut self, table: PhysAddr, index: usize, value: u64) {
        assert!(index < 512, "page-table index {index} out of range");
        platform().write_pte(table, index, value);
    }
}

/// Memory figures for apps and the boot log.
#[derive(Clone, Copy, Debug)]
pub struct MemoryStats {
    /// Usable RAM in the memory map.
    pub total_bytes: u64,
    /// Frames not handed out yet (the heap takes frames as it grows).
    pub free_bytes: u64,
}

pub(crate) fn stats() -> MemoryStats {
    MemoryStats {
        total_bytes: TOTAL_BYTES.get().copied().unwrap_or(0),
        free_bytes: FRAMES.lock().free_bytes(),
    }
}

/// One 4 KiB frame, identity-mapped (for pages shared with the hypervisor, DMA buffers).
pub(crate) fn allocate_frame() -> Option<PhysAddr> {
    if let Some(mapper) = PAGES.lock().as_mut() {
        ensure_mapped_frames(mapper, 1);
    }
    FRAMES
        .lock()
        .allocate_below(TABLE_FRAME_LIMIT.load(Ordering::Relaxed))
}

/// `frames` physically contiguous, identity-mapped frames (VMBus ring buffers), or `None`.
pub(crate) fn allocate_contiguous(frames: u64) -> Option<PhysAddr> {
    let mut allocator = FRAMES.lock();
    let start = allocator.allocate_contiguous(frames, FRAME_SIZE)?;
    let end = start.as_u64() + frames * FRAME_SIZE;
    if end > TABLE_FRAME_LIMIT.load(Ordering::Relaxed) {
        // Beyond the identity map (only possible on Xen PV, which has no VMBus).
        let _ = allocator.free_range(start, frames);
        return None;
    }
    Some(start)
}

/// Returns `frames` frames from `start` (frames the host gave back from the balloon).
pub(crate) fn free_frames(start: u64, frames: u64) -> Result<(), ringbolt_mm::FrameError> {
    FRAMES.lock().free_range(PhysAddr::new(start), frames)
}

/// Sets up the frame allocator, switches to the kernel's page tables and enables the heap.
pub(crate) fn init(boot: &BootInfo<'_>, shared_pages: &[PhysAddr]) {
    let total = boot.memory_map.usable_bytes();
    let _ = TOTAL_BYTES.set(total);
    {
        let mut frames = FRAMES.lock();
        for (start, end) in boot.memory_map.usable_ranges() {
            if let Err(e) = frames.add_usable(start, end) {
                log::warn!("memory: usable range {start:#x}-{end:#x} dropped: {e}");
            }
        }
        let image = image_range();
        // Shared pages may sit in RAM (Xen PV's console ring): never hand them out.
        let shared = shared_pages
            .iter()
            .map(|page| (page.as_u64(), page.as_u64() + FRAME_SIZE));
        let reserved = [(0, 1 << 20), image]
            .into_iter()
            .chain(boot.occupied_ranges())
            .chain(shared);
        for (start, end) in reserved {
            if let Err(e) = frames.reserve(start, end) {
                panic!("memory: cannot reserve {start:#x}-{end:#x}: {e}");
            }
        }
    }
    let ram_end = boot
        .memory_map
        .usable_ranges()
        .map(|(_, end)| end)
        .max()
        .unwrap_or(0);
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    let (mut mapper, identity_end) = match platform().boot_page_tables() {
        None => {
            let identity_end = ram_end.max(IDENTITY_MIN_END).next_multiple_of(FRAME_SIZE);
            IDENTITY_TARGET.store(identity_end, Ordering::Relaxed);
            let root = PlatformPageTables
                .allocate_table()
                .expect("memory: no frame for the top-level page table");
            let mut mapper = Mapper::new(root, PlatformPageTables);
            mapper
                .map_range(
                    VirtAddr::new(FRAME_SIZE),
                    PhysAddr::new(FRAME_SIZE),
                    identity_end - FRAME_SIZE,
                    flags,
                    platform().largest_page(),
                )
                .unwrap_or_else(|e| {
                    panic!("memory: identity map up to {identity_end:#x} failed: {e:?}")
                });
            (mapper, identity_end)
        }
        Some(tables) => {
            TABLE_FRAME_LIMIT.store(tables.mapped_end, Ordering::Relaxed);
            let identity_end = ram_end.next_multiple_of(FRAME_SIZE);
            IDENTITY_TARGET.store(identity_end, Ordering::Relaxed);
            let mut mapper = Mapper::new(tables.root, PlatformPageTables);
            ensure_mapped_frames(&mut mapper, 0);
            match mapper.unmap(VirtAddr::zero()) {
                Ok(_) | Err(MapError::NotMapped) => {}
                Err(e) => panic!("memory: cannot unmap the null page: {e:?}"),
            }
            (mapper, identity_end)
        }
    };
    let shared_flags =
        PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    for &page in shared_pages {
        let page = page.align_down(FRAME_SIZE);
        match mapper.map(
            VirtAddr::new(page.as_u64()),
            page,
            ringbolt_mm::PageSize::Size4K,
            shared_flags,
        ) {
            // Inside the identity map already (shared pages in RAM).
            Ok(()) | Err(MapError::AlreadyMapped | MapError::HugePageInTheWay) => {}
            Err(e) => panic!("memory: cannot map shared page {page:?}: {e:?}"),
        }
    }
    // Only the address is taken (no unsafe needed): the page below the boot stack.
    let guard = VirtAddr::new(&raw const boot_stack_guard as u64);
    if let Err(e) = mapper.unmap(guard) {
        log::warn!("memory: no stack guard page at {guard:?}: {e:?}");
    }
    platform().activate_page_table(mapper.root());
    if platform().boot_page_tables().is_none() {
        // The new tables map all of RAM: any frame can become a table.
        TABLE_FRAME_LIMIT.store(identity_end, Ordering::Relaxed);
    }
    *PAGES.lock() = Some(mapper);
    log::info!(
        "memory: {} KiB usable, {} KiB free, identity map to {:#x} of {:#x}",
        total / 1024,
        FRAMES.lock().free_bytes() / 1024,
        TABLE_FRAME_LIMIT.load(Ordering::Relaxed),
        identity_end
    );
}

/// Grows the identity map (Xen PV; elsewhere it is complete from the start) until `frames`
/// free frames plus [`TABLE_RESERVE`] lie inside it, or it covers all of RAM. One
/// `IDENTITY_STEP` at a time, raising `TABLE_FRAME_LIMIT` after each step, so each step's tables
/// come from memory already mapped. Pages the loader mapped keep their mapping (Xen PV: its
/// page tables are mapped read-only, as they must stay). Never called from inside a mapper
/// operation: it maps.
fn ensure_mapped_frames(mapper: &mut Mapper<PlatformPageTables>, frames: u64) {
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    let wanted = (frames + TABLE_RESERVE) * FRAME_SIZE;
    loop {
        let start = TABLE_FRAME_LIMIT.load(Ordering::Relaxed).max(FRAME_SIZE);
        let end = IDENTITY_TARGET.load(Ordering::Relaxed);
        if start >= end || FRAMES.lock().free_bytes_below(start) >= wanted {
            return;
        }
        let step_end = (start + 1).next_multiple_of(IDENTITY_STEP).min(end);
        let mut result = Ok(());
        // Batched: the step's pages are not used before it ends, when the batch is applied.
        platform().batch_pte_writes(&mut || {
            result = (start..step_end)
                .step_by(FRAME_SIZE as usize)
                .try_for_each(|page| {
                    let (virt, phys) = (VirtAddr::new(page), PhysAddr::new(page));
                    match mapper.map(virt, phys, ringbolt_mm::PageSize::Size4K, flags) {
                        Ok(()) | Err(MapError::AlreadyMapped) => Ok(()),
                        Err(e) => Err((page, e)),
                    }
                });
        });
        match result {
            Ok(()) => TABLE_FRAME_LIMIT.store(step_end, Ordering::Relaxed),
            // The heap took every frame, even the reserve: what is mapped stays (a later call
            // resumes there), and the allocation that needed more fails as out of memory.
            Err((page, MapError::OutOfFrames)) => {
                log::warn!("memory: no frame for the identity map at {page:#x}");
                return;
            }
            Err((page, e)) => panic!("memory: identity map of {page:#x} failed: {e:?}"),
        }
    }
}

fn image_range() -> (u64, u64) {
    // Only the addresses of the linker-script symbols are taken, which needs no unsafe.
    (
        &raw const __image_start as u64,
        &raw const __image_end as u64,
    )
}

/// Maps `len` bytes of device memory at `phys` identity, uncached and not executable.
/// Mapping the same page twice is fine (the second call finds it mapped).
pub(crate) fn map_mmio(phys: PhysAddr, len: u64) -> VirtAddr {
    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH
        | PageTableFlags::NO_EXECUTE;
    let mut pages = PAGES.lock();
    let mapper = pages.as_mut().expect("map_mmio before memory::init");
    let start = phys.align_down(FRAME_SIZE).as_u64();
    let end = (phys.as_u64() + len).next_multiple_of(FRAME_SIZE);
    for page in (start..end).step_by(FRAME_SIZE as usize) {
        let result = mapper.map(
            VirtAddr::new(page),
            PhysAddr::new(page),
            ringbolt_mm::PageSize::Size4K,
            flags,
        );
        match result {
            Ok(()) | Err(MapError::AlreadyMapped) => {}
            Err(e) => panic!("memory: cannot map MMIO page {page:#x}: {e:?}"),
        }
    }
    VirtAddr::new(phys.as_u64())
}

/// talc's memory source: maps fresh frames at the top of the heap when talc runs dry.
#[derive(Debug)]
pub(crate) struct GrowingHeap {
    /// Where talc's heap ends (None before the first claim).
    heap_end: Option<NonNull<u8>>,
    /// End of the mapped heap window.
    mapped_end: u64,
}

// SAFETY: `GrowingHeap` keeps only addresses, and the heap is used from one CPU.
unsafe impl Send for GrowingHeap {}

impl GrowingHeap {
    const fn new() -> Self {
        GrowingHeap {
            heap_end: None,
            mapped_end: HEAP_BASE,
        }
    }

    /// Maps at least `bytes` more heap; returns how much was mapped (may be less when frames
    /// run out).
    fn grow(&mut self, bytes: u64) -> u64 {
        let want = bytes.max(HEAP_GROWTH).next_multiple_of(FRAME_SIZE);
        let limit = (HEAP_BASE + HEAP_MAX).saturating_sub(self.mapped_end);
        let want = want.min(limit);
        let mut pages = PAGES.lock();
        let Some(mapper) = pages.as_mut() else {
            return 0;
        };
        // Page tables for the new pages: one leaf table per 2 MiB, plus what the reserve holds.
        ensure_mapped_frames(mapper, want.div_ceil(IDENTITY_STEP));
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        let mut mapped = 0;
        while mapped < want {
            let Some(frame) = FRAMES.lock().allocate() else {
                break;
            };
            let virt = VirtAddr::new(self.mapped_end + mapped);
            if let Err(e) = mapper.map(virt, frame, ringbolt_mm::PageSize::Size4K, flags) {
                let _ = FRAMES.lock().free(frame);
                log::error!("heap: cannot map {virt:?}: {e:?}");
                break;
            }
            mapped += FRAME_SIZE;
        }
        self.mapped_end += mapped;
        mapped
    }
}

// SAFETY: `acquire` only maps new pages above the current heap end and hands them to `talc`
// through its own `claim`/`extend`; it never touches the global allocator (the frame allocator
// and page-table locks are separate, and logging formats into the console without allocating).
unsafe impl Source for GrowingHeap {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        // Room for the request, its alignment and talc's per-heap metadata.
        let need = (layout.size() + layout.align()) as u64 + 4 * FRAME_SIZE;
        let old_end = talc.source.mapped_end;
        let grown = talc.source.grow(need);
        if grown == 0 {
            log::error!(
                "heap: out of memory: {} bytes requested, heap {} KiB, no free frames",
                layout.size(),
                (old_end - HEAP_BASE) / 1024
            );
            return Err(());
        }
        let new_end = talc.source.mapped_end as *mut u8;
        let heap_end = match talc.source.heap_end {
            // SAFETY: [HEAP_BASE, mapped_end) is freshly mapped, writable memory that nothing
            // else uses; talc owns it from here on.
            None => unsafe {
                talc.claim(
                    HEAP_BASE as *mut u8,
                    (talc.source.mapped_end - HEAP_BASE) as usize,
                )
            },
            // SAFETY: `end` is the end talc returned for this heap, and [end, new_end) was just
            // mapped contiguously above it.
            Some(end) => Some(unsafe { talc.extend(end, new_end) }),
        };
        talc.source.heap_end = heap_end;
        heap_end.map(|_| ()).ok_or(())
    }
}

#[global_allocator]
static ALLOCATOR: talc::TalcLock<hermit_sync::RawSpinMutex, GrowingHeap> =
    talc::TalcLock::new(GrowingHeap::new());
