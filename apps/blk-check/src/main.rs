//! blk-check: proves block device 0 end to end and measures it.
//!
//! It writes a pattern derived from `seed=N` (default 1) over the whole disk in large chunks,
//! flushes, reads the disk back and prints `blk-check: sha256 <hex>` of the contents as read,
//! which must equal the hash of what was written (checked here) and of the backing file (the
//! Xen harness compares). `mode=read` only reads and hashes. It also prints the write and read
//! throughput, in MB/s of time spent waiting for the disk. Any error, or no disk at all, is a
//! message and exit status 1.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use core::fmt::Write;
use core::time::Duration;

use ringbolt::block::{BlockDevice, BlockError};
use ringbolt::{ExitCode, println};
use sha2::{Digest, Sha256};

/// Bytes per read or write: large, so the driver keeps several pieces in flight.
const CHUNK: u64 = 2 << 20;

async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            println!("blk-check: error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args = ringbolt::env::args();
    let seed: u64 = match args.parse("seed") {
        None => 1,
        Some(Ok(seed)) => seed,
        Some(Err(_)) => return Err("seed= wants a number".into()),
    };
    let write = match args.get("mode") {
        None | Some("write") => true,
        Some("read") => false,
        Some(other) => return Err(format!("mode={other}: expected write or read")),
    };
    let disk = match ringbolt::block::open(0).await {
        Ok(disk) => disk,
        Err(BlockError::NoDevice) => return Err("no block device".into()),
        Err(e) => return Err(format!("opening the disk: {e}")),
    };
    let sector_size = disk.sector_size() as u64;
    let size = disk.sectors() * sector_size;
    println!(
        "blk-check: {}: {} sectors of {sector_size} bytes ({} MiB)",
        disk.name(),
        disk.sectors(),
        size >> 20
    );
    let written = if write {
        Some(pass(&disk, size, Some(seed)).await?)
    } else {
        None
    };
    let read = pass(&disk, size, None).await?;
    println!("blk-check: sha256 {}", hex(&read));
    match written {
        Some(written) if written != read => Err(format!(
            "the disk reads back differently from what was written (sha256 {})",
            hex(&written)
        )),
        _ => Ok(()),
    }
}

/// One pass over the whole disk in chunks: writes the pattern of `seed` (then flushes), or,
/// without one, reads. Returns the hash of the data written or read.
async fn pass(disk: &BlockDevice, size: u64, seed: Option<u64>) -> Result<[u8; 32], String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK.min(size) as usize];
    let mut io = Duration::ZERO;
    for offset in (0..size).step_by(CHUNK as usize) {
        let chunk = &mut buf[..(size - offset).min(CHUNK) as usize];
        let sector = offset / disk.sector_size() as u64;
        if let Some(seed) = seed {
            fill(chunk, seed, offset);
            hasher.update(&*chunk);
        }
        let started = ringbolt::time::now();
        let result = match seed {
            Some(_) => disk.write(sector, chunk).await,
            None => disk.read(sector, chunk).await,
        };
        io += ringbolt::time::now() - started;
        result.map_err(|e| format!("at byte {offset}: {e}"))?;
        if seed.is_none() {
            hasher.update(&*chunk);
        }
    }
    if seed.is_some() {
        let started = ringbolt::time::now();
        disk.flush().await.map_err(|e| format!("flushing: {e}"))?;
        io += ringbolt::time::now() - started;
    }
    report(if seed.is_some() { "write" } else { "read" }, size, io);
    Ok(hasher.finalize().into())
}

/// The pattern: each 8-byte word a hash of the seed and the word's place on the disk, so
/// every seed gives different contents and no two words repeat in a useful way.
fn fill(chunk: &mut [u8], seed: u64, offset: u64) {
    for (i, word) in chunk.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&splitmix64(seed, offset / 8 + i as u64).to_le_bytes());
    }
}

fn splitmix64(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `blk-check: write 64 MiB, 3.210 s of I/O, 20.9 MB/s`.
fn report(what: &str, bytes: u64, io: Duration) {
    let micros = io.as_micros().max(1) as u64;
    let tenths = bytes * 10 / micros;
    println!(
        "blk-check: {what} {} MiB, {}.{:03} s of I/O, {}.{} MB/s",
        bytes >> 20,
        io.as_secs(),
        io.subsec_millis(),
        tenths / 10,
        tenths % 10
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

ringbolt::main!(main);
