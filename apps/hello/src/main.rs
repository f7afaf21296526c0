//! hello: the first Ringbolt app. It proves the kernel's basics from the inside: it prints the
//! platform, command line, memory, uptime and wall-clock time, sleeps 100 ms on the executor
//! and reports how long that took by the monotonic clock.
//!
//! Arguments: `panic=1` panics (to prove the panic path), `fault=1` reads an unmapped address
//! (to prove the exception path), `oom=1` allocates 1 MiB blocks until the heap cannot grow
//! (to prove heap growth and the out-of-memory report), `overflow=1` recurses until the stack
//! overflows (to prove the guard page and the double-fault stack), `exit=N` exits with status N,
//! `wait=1` waits after its report until the VM's owner stops it (`xl shutdown`), `linger=MS`
//! stays up MS milliseconds more before exiting (so drivers running beside it finish talking).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

use ringbolt::{ExitCode, println};

const SLEEP: Duration = Duration::from_millis(100);

async fn main() -> ExitCode {
    let args = ringbolt::env::args();
    println!("platform: {}", ringbolt::env::platform());
    println!("cmdline: {}", ringbolt::env::cmdline());
    let memory = ringbolt::env::memory();
    println!(
        "memory: total {} KiB, free {} KiB",
        memory.total_bytes / 1024,
        memory.free_bytes / 1024
    );
    println!("uptime: {} s", ringbolt::time::now());
    match ringbolt::time::wall_clock() {
        Some(now) => println!("wall clock: {now}"),
        None => println!("wall clock: unavailable"),
    }

    if args.flag("panic") {
        panic!("hello: panic requested");
    }
    if args.flag("fault") {
        ringbolt::diagnostics::trigger_page_fault();
    }
    if args.flag("oom") {
        exhaust_heap();
    }
    if args.flag("overflow") {
        println!("overflow: depth {}", recurse(0));
    }

    let before = ringbolt::time::now();
    ringbolt::time::sleep(SLEEP).await;
    let slept = ringbolt::time::now() - before;
    println!(
        "sleep: requested {} ms, measured {}.{:06} ms",
        SLEEP.as_millis(),
        slept.as_nanos() / 1_000_000,
        slept.as_nanos() % 1_000_000
    );

    if args.flag("wait") {
        println!("hello: waiting to be stopped");
        loop {
            ringbolt::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    if let Some(Ok(ms)) = args.parse::<u64>("linger") {
        ringbolt::time::sleep(Duration::from_millis(ms)).await;
    }

    match args.parse::<u8>("exit") {
        Some(Ok(code)) => ExitCode::from(code),
        Some(Err(_)) => {
            log::error!("hello: exit= wants a number from 0 to 125");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

/// Recurses with a 1 KiB frame until the stack runs into the guard page.
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth as u8; 1024]);
    if core::hint::black_box(depth) == u64::MAX {
        return depth; // never: keeps the compiler from proving the recursion endless
    }
    recurse(depth + 1) + u64::from(frame[depth as usize % 1024])
}

/// Keeps 1 MiB blocks alive until allocation fails, which panics with the allocator's message.
fn exhaust_heap() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(alloc::vec![0xa5; 1 << 20]);
        if blocks.len().is_multiple_of(16) {
            println!("oom: {} MiB allocated", blocks.len());
        }
    }
}

ringbolt::main!(main);
