//! Hyper-V Dynamic Memory (balloon) protocol. Work in progress.
#![no_std]
#![forbid(unsafe_code)]
