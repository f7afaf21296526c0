//! `xen/include/public/io/ring.h`. Work in progress.
