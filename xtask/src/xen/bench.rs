//! `bench xen-boot`: hello as a Xen domU against a minimal Linux PV domU.
//!
//! One session (one dom0 boot) creates the two guests in turn, `--runs` times each, so drift
//! in host load hits both alike and dom0's boot is paid once. Both figures are dom0's clock
//! (see `xtask/xen/run-guest.sh`), so neither the serial line nor QEMU's scheduling of it
//! distorts them: from the start of `xl create` (xl's own start-up and the domain build
//! included, alike for both) to the guest's first console line as dom0 reads it, and to xl's
//! report of the shutdown. Both guests are quiet so that the first line is the program's own:
//! hello with `log=warn` (no kernel log lines), Linux with `quiet` (its /init's line). hello's
//! end includes the 100 ms sleep it measures.

use std::path::Path;
use std::time::Duration;

use super::run::{self, Domain, Guest};
use super::{Image, Layout, Mode, Reason, dom0, test_guest};
use crate::bench::{self, Samples};
use crate::harness::secs;

/// Both guests get the same memory: building a domain costs time in proportion to it.
const MEM_MIB: u32 = 128;
const WAIT: Duration = Duration::from_secs(120);
/// The two figures, in the order [`Samples`] holds them.
const FIGURES: [&str; 2] = ["first line", "end"];
/// The guests, in the order they alternate and [`compare`](bench::compare) divides them.
const NAMES: [&str; 2] = ["linux", "ringbolt"];

/// Creates Linux and hello (as a `mode` domU) `runs` times each and prints the medians.
pub fn xen_boot(layout: &Layout, hello: &Path, runs: usize, mode: Mode) -> Result<(), String> {
    let dom0 = dom0::build(layout)?;
    let linux = test_guest::build(layout, &dom0)?;
    let guests = [
        Guest {
            mode: Mode::Pv,
            vif: false,
            disk: false,
            shutdown_on: None,
            probe: None,
            image: linux.image("console=hvc0 quiet", MEM_MIB),
        },
        Guest {
            mode,
            vif: false,
            disk: false,
            shutdown_on: None,
            probe: None,
            image: Image {
                kernel: hello.to_owned(),
                ramdisk: None,
                append: "log=warn".to_owned(),
                mem_mib: MEM_MIB,
            },
        },
    ];
    let order: Vec<&Guest> = (0..runs).flat_map(|_| &guests).collect();
    let session = run::run(layout, &dom0, &order, WAIT, false)?;
    let samples = samples(&session.domains)?;
    println!(
        "xl create to first console line and to shutdown, by dom0's clock, over {runs} run(s) \
         each: linux as pv, ringbolt as {mode}, {MEM_MIB} MiB each; one dom0 boot, QEMU ran {}",
        secs(session.elapsed, 1)
    );
    bench::compare(FIGURES, [(NAMES[0], &samples[0]), (NAMES[1], &samples[1])]);
    Ok(())
}

/// The figures of domains that alternate between the [`NAMES`]; every one must have printed
/// and powered off.
fn samples(domains: &[Domain]) -> Result<[Samples; 2], String> {
    let mut samples = [Samples::default(), Samples::default()];
    for (at, domain) in domains.iter().enumerate() {
        let trace = &domain.trace;
        let figures = trace.first_output().zip(trace.end());
        let Some((first_line, end)) = figures.filter(|_| domain.reason == Reason::Poweroff) else {
            return Err(format!(
                "{} run {}: ended {} ({}); the bench needs console output and a poweroff",
                NAMES[at % 2],
                at / 2 + 1,
                domain.reason,
                trace.summary()
            ));
        };
        samples[at % 2].first_line.push(first_line);
        samples[at % 2].end.push(end);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::run::tests::traced;

    fn domain(reason: Reason, first_us: u64, end_us: &str) -> Domain {
        let end = format!("HARNESS-END n=1 reason={reason} first_us={first_us} end_us={end_us}");
        Domain {
            reason,
            trace: traced(&["HARNESS-CREATE-BEGIN n=1 at_us=1000000", &end]),
        }
    }

    #[test]
    fn samples_alternate_between_linux_and_ringbolt() {
        let domains = [
            domain(Reason::Poweroff, 5_000_000, "7000000"),
            domain(Reason::Poweroff, 1_500_000, "1800000"),
            domain(Reason::Poweroff, 6_000_000, "8000000"),
        ];
        let [linux, ringbolt] = samples(&domains).unwrap();
        let ms = Duration::from_millis;
        assert_eq!(linux.first_line, [ms(4000), ms(5000)]);
        assert_eq!(linux.end, [ms(6000), ms(7000)]);
        assert_eq!(ringbolt.first_line, [ms(500)]);
        assert_eq!(ringbolt.end, [ms(800)]);
    }

    #[test]
    fn samples_need_output_and_a_poweroff() {
        let crashed = [domain(Reason::Crash, 5_000_000, "7000000")];
        assert!(
            samples(&crashed)
                .unwrap_err()
                .starts_with("linux run 1: ended crash")
        );
        let endless = [
            domain(Reason::Poweroff, 5_000_000, "7000000"),
            domain(Reason::Poweroff, 1_500_000, ""),
        ];
        assert!(
            samples(&endless)
                .unwrap_err()
                .starts_with("ringbolt run 1: ended poweroff")
        );
    }
}
