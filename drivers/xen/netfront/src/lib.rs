//! Xen network frontend protocol (io/netif.h) and a smoltcp device. Work in progress.
#![no_std]
#![forbid(unsafe_code)]
