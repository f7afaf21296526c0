//! Block devices: the disks the platform gives the VM.
//!
//! ```ignore
//! let disk = ringbolt::block::open(0).await?;
//! let mut first = alloc::vec![0; disk.sector_size()];
//! disk.read(0, &mut first).await?;
//! disk.write(0, &first).await?;
//! disk.flush().await?;
//! ```
//!
//! The platform's drivers find and connect the devices while the app starts (Xen: blkfront,
//! one per `vbd` of the domain); [`devices`] and [`open`] wait until they are done. A platform
//! without block devices (a plain PVH VMM such as QEMU) has none: [`devices`] is empty and
//! [`open`] fails with [`BlockError::NoDevice`].
//!
//! Addresses are in the device's sectors of [`BlockDevice::sector_size`] bytes. A buffer may
//! be anywhere in memory and of any length that is a whole number of sectors: the driver moves
//! the data through pages of its own that the device may reach. Large transfers are cheaper
//! per byte (the driver keeps several pieces of one in flight). Several tasks may use a device
//! at once; [`BlockDevice`] is a cheap handle to it.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::fmt;

use crate::probe::{Probe, Registry};
use crate::xen::blk::Disk;

/// Why a block operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockError {
    /// There is no device with that index (on a platform without block devices, none).
    NoDevice,
    /// The buffer is not a whole number of sectors.
    Misaligned,
    /// The transfer reaches past the device's last sector.
    OutOfRange,
    /// The device reported that the operation failed.
    Failed,
    /// The device broke its protocol or went away; further I/O fails too.
    Disconnected,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockError::NoDevice => "no such block device",
            BlockError::Misaligned => "buffer is not a whole number of sectors",
            BlockError::OutOfRange => "transfer past the end of the device",
            BlockError::Failed => "the device reported an I/O error",
            BlockError::Disconnected => "the device is disconnected",
        })
    }
}

impl core::error::Error for BlockError {}

/// A block device; clones are handles to the same device.
#[derive(Clone)]
pub struct BlockDevice {
    disk: Rc<Disk>,
}

impl fmt::Debug for BlockDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockDevice")
            .field("name", &self.name())
            .field("sector_size", &self.sector_size())
            .field("sectors", &self.sectors())
            .finish()
    }
}

impl BlockDevice {
    pub(crate) fn new(disk: Rc<Disk>) -> Self {
        BlockDevice { disk }
    }

    /// The device's name (Xen: `xvda`, ...).
    pub fn name(&self) -> &str {
        self.disk.name()
    }

    /// Bytes per sector: a power of two, at least 512.
    pub fn sector_size(&self) -> usize {
        self.disk.sector_size()
    }

    /// The device's size in sectors.
    pub fn sectors(&self) -> u64 {
        self.disk.sectors()
    }

    /// Reads `buf.len()` bytes (whole sectors) from sector `sector` on.
    pub async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check(sector, buf.len())?;
        self.disk.read(sector, buf).await
    }

    /// Writes `buf` (whole sectors) from sector `sector` on. The data may sit in the device's
    /// volatile cache until [`flush`](Self::flush).
    pub async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check(sector, buf.len())?;
        self.disk.write(sector, buf).await
    }

    /// Makes every completed write durable. A device without a volatile cache has nothing to
    /// do.
    pub async fn flush(&self) -> Result<(), BlockError> {
        self.disk.flush().await
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), BlockError> {
        if !len.is_multiple_of(self.sector_size()) {
            return Err(BlockError::Misaligned);
        }
        let end = sector.checked_add((len / self.sector_size()) as u64);
        if end.is_none_or(|end| end > self.sectors()) {
            return Err(BlockError::OutOfRange);
        }
        Ok(())
    }
}

/// Every block device, in the order the platform lists them, once the drivers have found and
/// connected them all.
pub async fn devices() -> Vec<BlockDevice> {
    REGISTRY.all().await
}

/// Block device `index` (from 0), once the drivers are done.
pub async fn open(index: usize) -> Result<BlockDevice, BlockError> {
    devices()
        .await
        .into_iter()
        .nth(index)
        .ok_or(BlockError::NoDevice)
}

static REGISTRY: Registry<BlockDevice> = Registry::new();

/// A driver looking for block devices: [`devices`] waits until it is dropped. Take it before
/// the app runs, so the app cannot miss it.
pub(crate) fn probe() -> Probe<BlockDevice> {
    REGISTRY.probe()
}
