//! `fuzz`: runs the cargo-fuzz targets in `fuzz/` for a while each.
//!
//! cargo-fuzz needs a nightly toolchain (libFuzzer's sanitizer flags), so this is not part of
//! `xtask test`: CI stays on stable. Seeds in `fuzz/seeds/<target>` start each run; what the
//! fuzzer finds goes to `fuzz/corpus/<target>` and crashes to `fuzz/artifacts/<target>`.

use std::path::Path;
use std::process::Command;

/// Every target `fuzz/Cargo.toml` declares, in its order.
pub fn targets(root: &Path) -> Result<Vec<String>, String> {
    let manifest = root.join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("reading {}: {e}", manifest.display()))?;
    Ok(bin_names(&text))
}

/// The `name` of each `[[bin]]` table in a Cargo manifest.
fn bin_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(value) = line.strip_prefix("name").map(str::trim_start)
            && in_bin
            && let Some(value) = value.strip_prefix('=')
        {
            names.push(value.trim().trim_matches('"').to_owned());
        }
    }
    names
}

/// Runs each of `targets` for `seconds`; stops at the first target that finds a crash.
pub fn run(root: &Path, targets: &[String], seconds: u64) -> Result<(), String> {
    let fuzz_dir = root.join("fuzz");
    let known = self::targets(root)?;
    for target in targets {
        if !known.contains(target) {
            return Err(format!(
                "unknown fuzz target {target:?} (known: {})",
                known.join(", ")
            ));
        }
        // libFuzzer wants both directories to exist; a new target has neither yet.
        for dir in ["corpus", "seeds"] {
            let dir = fuzz_dir.join(dir).join(target);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bin_names_only_from_bin_tables() {
        let manifest = r#"
[package]
name = "ringbolt-fuzz"

[[bin]]
name = "boot_info"
path = "fuzz_targets/boot_info.rs"

[dependencies]
name = "not a bin"

[[bin]]
name="acpi"
"#;
        assert_eq!(bin_names(manifest), ["boot_info", "acpi"]);
    }

    #[test]
    fn the_repository_declares_the_boot_parsers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let names = targets(&root).unwrap();
        for expected in ["boot_info", "cmdline", "acpi", "xen_start_info"] {
            assert!(names.iter().any(|n| n == expected), "{names:?}");
        }
    }
}
