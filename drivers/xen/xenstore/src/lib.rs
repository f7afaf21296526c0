//! Xenstore client over the store ring (io/xs_wire.h). Work in progress.
#![no_std]
#![forbid(unsafe_code)]
