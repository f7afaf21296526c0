//! Ringbolt's one entry point: `cargo xtask build | run | test | bench`.
//!
//! Everything a developer or CI does goes through here, so the QEMU command line, the boot
//! checks and the lints are written down once. Plain std, no dependencies: xtask must build
//! before anything else does, and quickly.

#![forbid(unsafe_code)]

mod bench;
mod boot_tests;
mod debian;
mod floor;
mod fuzz;
mod harness;
mod hyperv;
mod install;
mod pattern;
mod qemu;
mod report;
mod xen;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use qemu::{Machine, Vm};

/// The bare-metal target every kernel image is built for.
pub const TARGET: &str = "x86_64-unknown-none";

const USAGE_HEAD: &str = "\
usage: cargo xtask <verb> [options]

  build --app NAME [--release]
      Build an app image; the ELF's path is the last line printed.
  run --app NAME [--release] [--mem MIB] [--append ARGS] [--machine pc|microvm] [--kvm]
      [--timeout SECS]
      Build, boot on QEMU (TCG unless --kvm), stream the console, exit with the app's code.
      Defaults: --mem 128 --machine pc --timeout 60.
  test [host] [lint] [boot] [xen] [hyperv]
      Host unit tests, fmt and clippy, boot tests on QEMU, then the harnesses; all stages
      unless some are named. xen: hello on real Xen (see below) as PV dom0, then in one dom0
      boot its report and its panic, blk-check's disk round trip (its hash of the disk
      against dom0's), and httpd on a vif answering dom0's ping and curl (then xl shutdown),
      as a PVH and as a PV domU. hyperv: hello's report
      (platform hyperv, command line, sleep, exit status 0) as a Hyper-V guest (see below).
  bench boot [--runs N] [--machine pc|microvm] [--kvm]
      Boot time of hello against the floor image (release build, default 5 runs).
  bench xen-boot [--runs N] [--mode pv|pvh]
      In one Xen harness boot (see xen below), xl create to first console line and to
      shutdown, by dom0's clock, of hello (release, --mode, default pv) against a Linux PV
      domU that prints a line and powers off; medians of N runs each (default 5).
  fuzz [--seconds N] [TARGET...]
      Run the cargo-fuzz targets (all unless named) for N seconds each (default 60); needs
      nightly and cargo-fuzz.
";

fn usage() -> String {
    format!("{USAGE_HEAD}{}{}", xen::USAGE, hyperv::USAGE)
}

fn main() -> ExitCode {
    match dispatch(Args::new(std::env::args().skip(1).collect())) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(mut args: Args) -> Result<ExitCode, String> {
    match args.positional().as_deref() {
        Some("build") => build_verb(args),
        Some("run") => run_verb(args),
        Some("test") => test_verb(args),
        Some("bench") => bench_verb(args),
        Some("fuzz") => fuzz_verb(args),
        Some("xen") => xen::xen_verb(args),
        Some("xen-smoke") => xen::smoke_verb(args),
        Some("xen-selftest") => xen::selftest_verb(args),
        Some("hyperv") => hyperv::verb(args),
        Some("help") => help(),
        None if args.flag("--help") || args.flag("-h") => help(),
        None => Err(format!("no verb given\n{}", usage())),
        Some(other) => Err(format!("unknown verb {other:?}\n{}", usage())),
    }
}

fn help() -> Result<ExitCode, String> {
    print!("{}", usage());
    Ok(ExitCode::SUCCESS)
}

fn build_verb(mut args: Args) -> Result<ExitCode, String> {
    let app = args.required("--app")?;
    let release = args.flag("--release");
    args.finish()?;
    install::ensure_target()?;
    let elf = build(&app, release)?;
    report_stripped(&elf);
    println!("{}", elf.display());
    Ok(ExitCode::SUCCESS)
}

fn run_verb(mut args: Args) -> Result<ExitCode, String> {
    // Values before flags, so that `--append --kvm` passes "--kvm" to the guest.
    let app = args.required("--app")?;
    let mem_mib = args.parsed("--mem", 128)?;
    let append = args.value("--append")?.unwrap_or_default();
    let machine = Machine::parse(&args.value("--machine")?.unwrap_or_else(|| "pc".into()))?;
    let timeout = Duration::from_secs(args.parsed("--timeout", 60)?);
    let release = args.flag("--release");
    let kvm = args.flag("--kvm");
    args.finish()?;

    install::ensure_target()?;
    install::ensure_qemu()?;
    let elf = build(&app, release)?;
    let vm = Vm {
        kernel: &elf,
        mem_mib,
        append: &append,
        machine,
        kvm,
    };
    let run = qemu::run(vm.command(), timeout, true)?;
    println!("xtask: {app} {}", run.outcome);
    Ok(ExitCode::from(run.outcome.exit_code()))
}

/// One `cargo` invocation of the host stages of `xtask test`.
struct Step {
    stage: &'static str,
    name: &'static str,
    args: &'static [&'static str],
}

const STEPS: &[Step] = &[
    Step {
        stage: "host",
        name: "host unit tests",
        args: &["test"],
    },
    Step {
        stage: "lint",
        name: "rustfmt",
        args: &["fmt", "--all", "--check"],
    },
    Step {
        stage: "lint",
        name: "clippy (host crates)",
        args: &["clippy", "--all-targets", "--", "-D", "warnings"],
    },
    Step {
        stage: "lint",
        name: "clippy (kernel and apps)",
        args: &[
            "clippy",
            "-p",
            "ringbolt-kernel",
            "-p",
            "hello",
            "-p",
            "blk-check",
            "-p",
            "httpd",
            "--target",
            TARGET,
            "--",
            "-D",
            "warnings",
        ],
    },
];

/// Every stage runs by default; naming stages runs only those.
const STAGES: [&str; 5] = ["host", "lint", "boot", "xen", "hyperv"];

fn test_verb(mut args: Args) -> Result<ExitCode, String> {
    let mut stages = Vec::new();
    while let Some(stage) = args.positional() {
        if !STAGES.contains(&stage.as_str()) {
            return Err(format!(
                "unknown test stage {stage:?} (expected one of {STAGES:?})"
            ));
        }
        stages.push(stage);
    }
    args.finish()?;
    let selected = |stage: &str| {
        if stages.is_empty() {
            STAGES.contains(&stage)
        } else {
            stages.iter().any(|s| s == stage)
        }
    };

    install::ensure_target()?;
    let mut failed_steps = Vec::new();
    for step in STEPS.iter().filter(|step| selected(step.stage)) {
        println!("xtask: {}: cargo {}", step.name, step.args.join(" "));
        let status = cargo().args(step.args).status();
        if status.is_ok_and(|status| status.success()) {
            println!("PASS  {}", step.name);
        } else {
            println!("FAIL  {}", step.name);
            failed_steps.push(step.name);
        }
    }

    let mut tally = boot_tests::Tally::default();
    if selected("boot") {
        install::ensure_qemu()?;
        println!("xtask: boot tests (QEMU, TCG)");
        tally = boot_tests::run_all(&build("hello", false));
    }
    if selected("xen") {
        install::ensure_qemu()?;
        install::ensure_tools(debian::HOST_TOOLS)?;
        println!("xtask: Xen tests (QEMU TCG, Xen 4.17, Linux dom0)");
        tally.add(xen::test_stage(
            &build("hello", false),
            &build("blk-check", false),
            &build("httpd", false),
        ));
    }
    if selected("hyperv") {
        install::ensure_qemu_device("hv-balloon")?;
        install::ensure_tools(debian::HOST_TOOLS)?;
        println!("xtask: Hyper-V tests (QEMU TCG, Linux L1 with KVM's Hyper-V emulation)");
        tally.add(hyperv::test_stage(&build("hello", false)));
    }
    if !failed_steps.is_empty() {
        println!("xtask: failed steps: {}", failed_steps.join(", "));
    }
    println!("{} passed, {} failed", tally.passed, tally.failed);
    let ok = failed_steps.is_empty() && tally.failed == 0;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bench_verb(mut args: Args) -> Result<ExitCode, String> {
    match args.positional().as_deref() {
        Some("boot") => boot_bench(args),
        Some("xen-boot") => xen::bench_verb(args),
        Some(other) => Err(format!(
            "unknown benchmark {other:?} (expected boot or xen-boot)"
        )),
        None => Err("which benchmark? (expected: bench boot, bench xen-boot)".into()),
    }
}

fn boot_bench(mut args: Args) -> Result<ExitCode, String> {
    let runs = args.parsed("--runs", 5)?;
    let machine = Machine::parse(&args.value("--machine")?.unwrap_or_else(|| "pc".into()))?;
    let kvm = args.flag("--kvm");
    args.finish()?;

    install::ensure_target()?;
    install::ensure_qemu()?;
    // Boot time is a release figure; debug builds measure the optimiser's absence.
    let hello = build("hello", true)?;
    let floor = floor::write(&target_dir()?)?;
    bench::boot(&hello, &floor, runs, machine, kvm)?;
    Ok(ExitCode::SUCCESS)
}

fn fuzz_verb(mut args: Args) -> Result<ExitCode, String> {
    let seconds = args.parsed("--seconds", 60)?;
    let mut targets = Vec::new();
    while let Some(target) = args.positional() {
        targets.push(target);
    }
    args.finish()?;
    if targets.is_empty() {
        targets = fuzz::targets(workspace_root())?;
    }
    fuzz::run(workspace_root(), &targets, seconds)?;
    Ok(ExitCode::SUCCESS)
}

/// `cargo` at the workspace root, the same cargo that runs xtask.
fn cargo() -> Command {
    let mut cmd =
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    cmd.current_dir(workspace_root());
    cmd
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
}

/// Builds `app` for the kernel target and returns its ELF, as cargo reports it (so a custom
/// target directory is honoured). Diagnostics go to the terminal as usual.
fn build(app: &str, release: bool) -> Result<PathBuf, String> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "-p",
        app,
        "--target",
        TARGET,
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo build -p {app} failed ({})", out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .filter(|line| json_string(line, "reason").as_deref() == Some("compiler-artifact"))
        .find_map(|line| json_string(line, "executable"))
        .map(PathBuf::from)
        .ok_or_else(|| format!("cargo built no executable for {app}"))
}

/// Cargo's target directory, from `cargo metadata`.
fn target_dir() -> Result<PathBuf, String> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    json_string(&String::from_utf8_lossy(&out.stdout), "target_directory")
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata did not name a target directory".to_owned())
}

/// Writes `<elf>.stripped` with objcopy, when available, and reports both sizes on stderr.
fn report_stripped(elf: &Path) {
    let stripped = elf.with_extension("stripped");
    let made = Command::new("objcopy")
        .arg("--strip-all")
        .arg(elf)
        .arg(&stripped)
        .status();
    if !made.is_ok_and(|status| status.success()) {
        return; // Optional: the ELF itself is the product.
    }
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
    eprintln!(
        "xtask: {} bytes, stripped {} bytes ({})",
        size(elf),
        size(&stripped),
        stripped.display()
    );
}

/// The string value of the first `"key":"..."` in one line of cargo's JSON output.
///
/// Cargo writes compact JSON, one object per line; its strings use only the escapes below for
/// the paths and names read here.
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = json[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => value.push(other), // \" \\ \/
            },
            other => value.push(other),
        }
    }
}

/// Command-line arguments, consumed by name; whatever is left over is an error.
#[derive(Debug)]
struct Args {
    rest: Vec<String>,
}

impl Args {
    fn new(rest: Vec<String>) -> Self {
        Self { rest }
    }

    /// Takes the first argument if it is not an option: positionals come before options, so
    /// an option's value is never mistaken for one.
    fn positional(&mut self) -> Option<String> {
        if self.rest.first()?.starts_with('-') {
            return None;
        }
        Some(self.rest.remove(0))
    }

    /// Takes `--name`, reporting whether it was there.
    fn flag(&mut self, name: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|arg| arg != name);
        self.rest.len() != before
    }

    /// Takes `--name VALUE` or `--name=VALUE`.
    fn value(&mut self, name: &str) -> Result<Option<String>, String> {
        let inline = format!("{name}=");
        let Some(at) = self
            .rest
            .iter()
            .position(|arg| arg == name || arg.starts_with(&inline))
        else {
            return Ok(None);
        };
        let arg = self.rest.remove(at);
        if let Some(value) = arg.strip_prefix(&inline) {
            return Ok(Some(value.to_owned()));
        }
        if at < self.rest.len() {
            Ok(Some(self.rest.remove(at)))
        } else {
            Err(format!("{name} needs a value"))
        }
    }

    fn required(&mut self, name: &str) -> Result<String, String> {
        self.value(name)?
            .ok_or_else(|| format!("{name} is required\n{}", usage()))
    }

    fn parsed<T: std::str::FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        match self.value(name)? {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| format!("{name}: cannot parse {text:?}")),
        }
    }

    /// Takes `--` and everything after it, for passing on untouched.
    fn trailing(&mut self) -> Vec<String> {
        match self.rest.iter().position(|arg| arg == "--") {
            Some(at) => self.rest.split_off(at).into_iter().skip(1).collect(),
            None => Vec::new(),
        }
    }

    /// Fails on anything not taken.
    fn finish(self) -> Result<(), String> {
        match self.rest.first() {
            None => Ok(()),
            Some(arg) => Err(format!("unexpected argument {arg:?}\n{}", usage())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn args(list: &[&str]) -> Args {
        Args::new(list.iter().map(|arg| (*arg).to_owned()).collect())
    }

    #[test]
    fn takes_values_flags_and_positionals_in_any_order() {
        let mut args = args(&[
            "run",
            "--mem=77",
            "--kvm",
            "--append",
            "x=1 y=two",
            "--app",
            "hello",
        ]);
        assert_eq!(args.positional().as_deref(), Some("run"));
        assert!(args.flag("--kvm"));
        assert!(!args.flag("--release"));
        assert_eq!(args.parsed("--mem", 128u32), Ok(77));
        assert_eq!(args.value("--append"), Ok(Some("x=1 y=two".to_owned())));
        assert_eq!(args.required("--app"), Ok("hello".to_owned()));
        assert_eq!(args.parsed("--timeout", 60u64), Ok(60));
        assert_eq!(args.finish(), Ok(()));
    }

    #[test]
    fn positionals_end_at_the_first_option() {
        let mut args = args(&["bench", "--runs", "3", "boot"]);
        assert_eq!(args.positional().as_deref(), Some("bench"));
        assert_eq!(args.positional(), None);
        assert_eq!(args.parsed("--runs", 5u32), Ok(3));
        assert!(args.finish().unwrap_err().contains("boot"));
    }

    #[test]
    fn value_may_start_with_a_dash() {
        let mut args = args(&["--append", "-v"]);
        assert_eq!(args.value("--append"), Ok(Some("-v".to_owned())));
    }

    #[test]
    fn rejects_missing_value_and_unparsable_number() {
        assert!(args(&["--mem"]).value("--mem").is_err());
        assert!(args(&["--mem", "lots"]).parsed("--mem", 128u32).is_err());
        assert!(args(&[]).required("--app").is_err());
    }

    #[test]
    fn trailing_takes_everything_after_the_double_dash() {
        let mut args = args(&["--app", "hello", "--", "-cpu", "host", "--app", "x"]);
        assert_eq!(args.trailing(), ["-cpu", "host", "--app", "x"]);
        assert_eq!(args.required("--app"), Ok("hello".to_owned()));
        assert_eq!(args.finish(), Ok(()));
        assert!(super::tests::args(&["--kvm"]).trailing().is_empty());
    }

    #[test]
    fn rejects_leftover_arguments() {
        let mut args = args(&["build", "--app", "hello", "--relase"]);
        args.positional();
        args.required("--app").unwrap();
        assert!(args.finish().unwrap_err().contains("--relase"));
    }

    #[test]
    fn reads_strings_from_cargo_json() {
        let line = r#"{"reason":"compiler-artifact","package_id":"x","executable":"/t/x86_64-unknown-none/debug/hello","fresh":true}"#;
        assert_eq!(
            json_string(line, "reason").as_deref(),
            Some("compiler-artifact")
        );
        assert_eq!(
            json_string(line, "executable").as_deref(),
            Some("/t/x86_64-unknown-none/debug/hello")
        );
        assert_eq!(json_string(line, "missing"), None);
    }

    #[test]
    fn unescapes_json_strings_and_ignores_null() {
        let line = r#"{"a":"q\"b\\s\/\u00e9","executable":null}"#;
        assert_eq!(json_string(line, "a").as_deref(), Some("q\"b\\s/\u{e9}"));
        assert_eq!(json_string(line, "executable"), None);
        assert_eq!(json_string(r#"{"a":"unterminated"#, "a"), None);
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
