//! `xen/include/public/io/blkif.h`. Work in progress.
