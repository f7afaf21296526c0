//! Hyper-V VMBus: channel messages, GPADL, ring buffers. Work in progress.
#![no_std]
#![forbid(unsafe_code)]
