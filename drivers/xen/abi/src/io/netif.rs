//! `xen/include/public/io/netif.h`. Work in progress.
