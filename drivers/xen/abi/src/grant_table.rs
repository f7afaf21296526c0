//! `xen/include/public/grant_table.h`. Work in progress.
