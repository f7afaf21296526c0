//! `fuzz`: runs the cargo-fuzz targets in `fuzz/` for a while each.
//!
//! cargo-fuzz needs a nightly toolchain (libFuzzer's sanitizer flags), so this is not part of
//! `xtask test`: CI stays on stable. Seeds in `fuzz/seeds/<target>` start each run; what the
//! fuzzer finds goes to `fuzz/corpus/<target>` and crashes to `fuzz/artifacts/<target>`.

use std::path::Path;
use std::process::Command;

/// Every target in `fuzz/Cargo.toml`.
pub const TARGETS: &[&str] = &["boot_info", "cmdline", "acpi"];

/// Runs each of `targets` for `seconds`; stops at the first target that finds a crash.
pub fn run(root: &Path, targets: &[String], seconds: u64) -> Result<(), String> {
    let fuzz_dir = root.join("fuzz");
    for target in targets {
        if !TARGETS.contains(&target.as_str()) {
            return Err(format!(
                "unknown fuzz target {target:?} (known: {})",
                TARGETS.join(", ")
            ));
        }
        println!("xtask: fuzzing {target} for {seconds} s");
        let status = Command::new("cargo")
            .current_dir(&fuzz_dir)
            .args(["+nightly", "fuzz", "run", target])
            .arg(format!("corpus/{target}"))
            .arg(format!("seeds/{target}"))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .status()
            .map_err(|e| format!("cannot run cargo +nightly fuzz (install cargo-fuzz and a nightly toolchain): {e}"))?;
        if !status.success() {
            return Err(format!(
                "fuzz target {target} failed ({status}); see fuzz/artifacts/{target}"
            ));
        }
    }
    Ok(())
}
