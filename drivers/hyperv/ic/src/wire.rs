//! Little-endian fields in byte buffers: the VMBus crate's checked readers and writers, under
//! the names the services use.

pub(crate) use ringbolt_vmbus::wire::{Fields as Reader, Short, clear, put};
