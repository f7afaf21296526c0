//! Xen grant tables v1, granting side. Work in progress.
#![no_std]
#![forbid(unsafe_code)]
