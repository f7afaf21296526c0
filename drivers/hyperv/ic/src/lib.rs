//! Hyper-V integration services (ICMSG: shutdown, heartbeat, time sync, KVP). Work in progress.
#![no_std]
#![forbid(unsafe_code)]
