//! Xen shared rings (io/ring.h), front-end side. Work in progress.
#![no_std]
#![forbid(unsafe_code)]
