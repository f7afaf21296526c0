//! Console output and the `log` backend.
//!
//! Output goes to the platform's console (COM1, the Xen console ring, ...). Formatting writes
//! straight through, with no allocation, so the heap's out-of-memory path and the panic handler
//! can log.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use log::{LevelFilter, Log, Metadata, Record};

use crate::platform::try_platform;

/// `fmt::Write` onto the platform console.
pub(crate) struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(platform) = try_platform() {
            platform.console_write(s.as_bytes());
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _ = Console.write_fmt(args);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::_print(format_args!($($arg)*)));
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::console::_print(format_args!("{}\n", format_args!($($arg)*))));
}

struct Logger;

static LOGGER: Logger = Logger;
static LOGGER_INSTALLED: AtomicBool = AtomicBool::new(false);

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let nanos = try_platform().map(|p| p.now().as_nanos()).unwrap_or(0);
        let (secs, micros) = (nanos / 1_000_000_000, nanos % 1_000_000_000 / 1000);
        // Kernel messages carry their subsystem ("tsc: ..."); others get their crate's name.
        let target = record.target();
        let _ = if target.starts_with("ringbolt_kernel") {
            writeln!(
                Console,
                "[{secs:>5}.{micros:06}] {:<5} {}",
                record.level(),
                record.args()
            )
        } else {
            writeln!(
                Console,
                "[{secs:>5}.{micros:06}] {:<5} {target}: {}",
                record.level(),
                record.args()
            )
        };
    }

    fn flush(&self) {}
}

/// Installs the console logger at `level`.
pub(crate) fn init_logger(level: LevelFilter) {
    if !LOGGER_INSTALLED.swap(true, Ordering::Relaxed) {
        let _ = log::set_logger(&LOGGER);
    }
    log::set_max_level(level);
}

/// Parses a `log=` value; unknown words are reported and ignored.
pub(crate) fn level_from_cmdline(value: Option<&str>) -> LevelFilter {
    match value {
        None => LevelFilter::Info,
        Some(word) => word.parse().unwrap_or_else(|_| {
            let _ = writeln!(Console, "ringbolt: ignoring unknown log level {word:?}");
            LevelFilter::Info
        }),
    }
}
