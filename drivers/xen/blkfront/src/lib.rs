//! Xen block frontend protocol (io/blkif.h). Work in progress.
#![no_std]
#![forbid(unsafe_code)]
