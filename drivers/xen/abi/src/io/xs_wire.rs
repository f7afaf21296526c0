//! `xen/include/public/io/xs_wire.h`. Work in progress.
