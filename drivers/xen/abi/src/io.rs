//! `xen/include/public/io/`: the split-driver protocols.

pub mod blkif;
pub mod console;
pub mod netif;
pub mod ring;
pub mod xenbus;
pub mod xs_wire;
