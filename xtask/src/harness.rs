//! What the hypervisor harnesses (Xen, Hyper-V) share: the kernel a verb boots, its
//! `--expect` patterns, a folder per run and the stamps on streamed console lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::pattern::Pattern;
use crate::{Args, install};

/// Where a harness keeps its packages, products and runs: `target/NAME/`.
#[derive(Debug)]
pub struct Layout {
    pub root: PathBuf,
    pub debs: PathBuf,
    pub runs: PathBuf,
}

impl Layout {
    pub fn new(name: &str) -> Result<Self, String> {
        let root = crate::target_dir()?.join(name);
        Ok(Self {
            debs: root.join("debs"),
            runs: root.join("runs"),
            root,
        })
    }
}

/// `--app NAME [--release]` or `--kernel ELF`, as given.
#[derive(Debug)]
pub struct KernelChoice {
    app: Option<String>,
    kernel: Option<String>,
    release: bool,
}

impl KernelChoice {
    /// Takes `--app`, `--kernel` and `--release` from `args`.
    pub fn take(args: &mut Args) -> Result<Self, String> {
        Ok(Self {
            app: args.value("--app")?,
            kernel: args.value("--kernel")?,
            release: args.flag("--release"),
        })
    }

    /// The kernel's absolute path; an app is built first.
    pub fn path(self) -> Result<PathBuf, String> {
        let kernel = match (self.app, self.kernel) {
            (Some(app), None) => {
                install::ensure_target()?;
                crate::build(&app, self.release)?
            }
            (None, Some(kernel)) => PathBuf::from(kernel),
            _ => return Err("give exactly one of --app NAME and --kernel ELF".to_owned()),
        };
        existing_file(&kernel)
    }
}

/// Every `--expect REGEX`, in order.
pub fn take_expects(args: &mut Args) -> Result<Vec<Pattern>, String> {
    let mut expect = Vec::new();
    while let Some(text) = args.value("--expect")? {
        expect.push(Pattern::parse(&text)?);
    }
    Ok(expect)
}

/// The absolute path of `path`, which must be a file.
pub fn existing_file(path: &Path) -> Result<PathBuf, String> {
    if !path.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    absolute(path)
}

pub fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The `--expect` patterns no console line matches, each as a problem.
pub fn unmatched(patterns: &[Pattern], console: &[String]) -> Vec<String> {
    patterns
        .iter()
        .filter(|pattern| !console.iter().any(|line| pattern.is_match(line)))
        .map(|pattern| format!("expect /{}/: no console line matches", pattern.as_str()))
        .collect()
}

/// A fresh directory below `runs` for one run's files, named by kind and start time.
pub fn run_dir(runs: &Path, kind: &str) -> Result<PathBuf, String> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let dir = runs.join(format!("{kind}-{secs}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Seconds since QEMU started, as every streamed line is prefixed.
pub fn stamp(at: Duration) -> String {
    format!("[{:8.3}]", at.as_secs_f64())
}

/// `1.23 s`, with `decimals` places.
pub fn secs(duration: Duration, decimals: usize) -> String {
    format!("{:.decimals$} s", duration.as_secs_f64())
}

/// A verb's exit status.
pub fn exit(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::args;

    #[test]
    fn kernel_choice_wants_exactly_one_of_app_and_kernel() {
        let both = KernelChoice::take(&mut args(&["--app", "hello", "--kernel", "/k"])).unwrap();
        assert!(both.path().unwrap_err().contains("exactly one"));
        let neither = KernelChoice::take(&mut args(&["--release"])).unwrap();
        assert!(neither.path().unwrap_err().contains("exactly one"));
        let missing = KernelChoice::take(&mut args(&["--kernel", "/no/such/kernel"])).unwrap();
        assert_eq!(missing.path().unwrap_err(), "/no/such/kernel is not a file");
    }

    #[test]
    fn takes_every_expect_in_order_and_reports_the_unmatched() {
        let mut args = args(&["--expect", "^a", "-v", "--expect=b$"]);
        let patterns = take_expects(&mut args).unwrap();
        assert!(args.flag("-v"));
        assert_eq!(args.finish(), Ok(()));
        let console = vec!["a line".to_owned(), "not b!".to_owned()];
        assert_eq!(
            unmatched(&patterns, &console),
            ["expect /b$/: no console line matches"]
        );
        assert!(take_expects(&mut crate::tests::args(&["--expect", "(x"])).is_err());
    }

    #[test]
    fn stamps_are_fixed_width_seconds() {
        assert_eq!(stamp(Duration::from_millis(1500)), "[   1.500]");
        assert_eq!(stamp(Duration::from_secs(123)), "[ 123.000]");
    }

    #[test]
    fn formats_seconds() {
        assert_eq!(secs(Duration::from_millis(1234), 2), "1.23 s");
        assert_eq!(secs(Duration::from_millis(1260), 1), "1.3 s");
    }
}
