//! `bench boot`: hello's boot time against the floor's; and the median tables every benchmark
//! prints (`bench xen-boot` is in `xen::bench`).
//!
//! Both figures are wall time from spawning QEMU, so they include QEMU's start-up and firmware.
//! The floor runs no kernel code worth the name, so hello/floor is what Ringbolt itself costs.
//! Runs alternate between the two images so that drift in host load hits both alike. hello's
//! exit figure includes the 100 ms sleep it measures; its first-line figure is the boot proper.

use std::path::Path;
use std::time::Duration;

use crate::qemu::{self, Machine, Outcome, Vm};

const MEM_MIB: u32 = 128;
const TIMEOUT: Duration = Duration::from_secs(60);
/// What is measured per image, in the order [`Samples`] holds them.
const FIGURES: [&str; 2] = ["first line", "exit"];

/// Boots each image `runs` times and prints median, min and max per figure.
pub fn boot(
    hello: &Path,
    floor: &Path,
    runs: usize,
    machine: Machine,
    kvm: bool,
) -> Result<(), String> {
    check_runs(runs)?;
    let images = [("floor", floor), ("hello", hello)];
    let mut samples = [Samples::default(), Samples::default()];
    for _ in 0..runs {
        for ((name, kernel), samples) in images.iter().zip(&mut samples) {
            let vm = Vm {
                kernel,
                mem_mib: MEM_MIB,
                append: "",
                machine,
                kvm,
            };
            let run = qemu::run(vm.command(), TIMEOUT, false)?;
            let first_line = run.first_line.filter(|_| run.outcome == Outcome::Exited(0));
            let Some(first_line) = first_line else {
                let console = qemu::tail(&run.console.join("\n"));
                return Err(format!(
                    "{name} {}; the bench needs console output and exit status 0:\n{console}",
                    run.outcome
                ));
            };
            samples.first_line.push(first_line);
            samples.end.push(run.elapsed);
        }
    }

    let accel = if kvm { "kvm" } else { "tcg" };
    println!("boot time over {runs} run(s) each, {machine}, {accel}, {MEM_MIB} MiB");
    compare(FIGURES, [("floor", &samples[0]), ("hello", &samples[1])]);
    Ok(())
}

pub fn check_runs(runs: usize) -> Result<(), String> {
    if runs == 0 {
        return Err("--runs must be at least 1".to_owned());
    }
    Ok(())
}

/// Two figures of one image over several runs.
#[derive(Debug, Default)]
pub struct Samples {
    pub first_line: Vec<Duration>,
    pub end: Vec<Duration>,
}

/// Prints median, min and max of both `figures` for both images (each sample non-empty), then
/// the second image's medians over the first's.
pub fn compare(figures: [&str; 2], images: [(&str, &Samples); 2]) {
    println!(
        "{:<8} {:<11} {:>10} {:>10} {:>10}",
        "image", "figure", "median", "min", "max"
    );
    let stats =
        images.map(|(_, samples)| [Stats::of(&samples.first_line), Stats::of(&samples.end)]);
    for ((name, _), stats) in images.iter().zip(&stats) {
        for (figure, stats) in figures.iter().zip(stats) {
            println!(
                "{name:<8} {figure:<11} {:>10} {:>10} {:>10}",
                ms(stats.median),
                ms(stats.min),
                ms(stats.max)
            );
        }
    }
    let ratio = |figure: usize| {
        stats[1][figure].median.as_secs_f64() / stats[0][figure].median.as_secs_f64()
    };
    println!(
        "{}/{} (medians): {} {:.2}x, {} {:.2}x",
        images[1].0,
        images[0].0,
        figures[0],
        ratio(0),
        figures[1],
        ratio(1)
    );
}

#[derive(Debug, PartialEq, Eq)]
struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

impl Stats {
    /// Order statistics of a non-empty sample; an even count takes the mean of the middle two.
    fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2
        } else {
            sorted[mid]
        };
        Self {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn median_of_odd_count_is_middle_value() {
        let stats = Stats::of(&ms_list(&[30, 10, 20, 50, 40]));
        assert_eq!(
            stats,
            Stats {
                median: Duration::from_millis(30),
                min: Duration::from_millis(10),
                max: Duration::from_millis(50)
            }
        );
    }

    #[test]
    fn median_of_even_count_is_mean_of_middle_two() {
        assert_eq!(
            Stats::of(&ms_list(&[40, 10, 20, 30])).median,
            Duration::from_millis(25)
        );
    }

    #[test]
    fn single_sample_is_its_own_median_min_and_max() {
        let stats = Stats::of(&ms_list(&[7]));
        assert_eq!(
            (stats.median, stats.min, stats.max),
            (stats.min, stats.max, Duration::from_millis(7))
        );
    }

    #[test]
    fn formats_milliseconds_with_one_decimal() {
        assert_eq!(ms(Duration::from_micros(12_345)), "12.3 ms");
    }

    #[test]
    fn rejects_zero_runs() {
        let none = Path::new("/nonexistent");
        assert!(boot(none, none, 0, Machine::Pc, false).is_err());
    }
}
