//! `xen/include/public/io/`: the split-driver protocols.

pub mod console;
