//! Counter ticks <-> nanoseconds in the 32.32 fixed-point form of Xen's pvclock.
//!
//! `xen/include/public/xen.h` (`struct vcpu_time_info`) defines
//!
//! ```text
//! system_time + ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)
//! CPU frequency (Hz): ((10^9 << 32) / tsc_to_system_mul) >> tsc_shift
//! ```
//!
//! where a negative `tsc_shift` shifts right. Our own TSC clock on plain VMMs uses the same form,
//! so one type serves both: a [`TscScale`] read from a `vcpu_time_info` and one computed by
//! [`TscScale::from_hz`] are interchangeable.
//!
//! The fields of a scale read from shared memory are peer-written, so every method is total:
//! any `mul` and `shift` give a saturated answer, never a panic or a wrapped one.

/// Nanoseconds per second, the "system time" unit of pvclock.
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// `ns = ((ticks << shift) * mul) >> 32`, a negative `shift` shifting right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscScale {
    /// Nanoseconds per (shifted) tick, as a 0.32 fixed-point fraction (`tsc_to_system_mul`).
    pub mul: u32,
    /// Power of two applied to the tick delta before multiplying (`tsc_shift`).
    pub shift: i8,
}

impl TscScale {
    /// Scale for a counter of `hz` ticks per second.
    ///
    /// The algorithm of Xen's `set_time_scale` (`xen/arch/x86/time.c`) and Linux's
    /// `kvm_get_time_scale`: shift the frequency into `(10^9, 2 * 10^9]` so that
    /// `mul = (10^9 << 32) / shifted_hz` lands in `[2^31, 2^32)`, keeping 31 significant bits.
    ///
    /// `None` only for `hz == 0`: every other `u64` maps to a shift in `-34..=30` and a `mul` that
    /// fits, so there is no other unrepresentable frequency. Whether a frequency reported by
    /// CPUID or a hypervisor is plausible is the caller's judgement, not arithmetic's.
    pub fn from_hz(hz: u64) -> Option<Self> {
        if hz == 0 {
            return None;
        }
        let mut shifted = hz;
        let mut shift: i8 = 0;
        while shifted > 2 * NANOS_PER_SEC {
            shifted >>= 1;
            shift -= 1;
        }
        while shifted <= NANOS_PER_SEC {
            shifted <<= 1;
            shift += 1;
        }
        // shifted is in (10^9, 2 * 10^9], so the quotient is in [2^31, 2^32).
        let mul = ((u128::from(NANOS_PER_SEC) << 32) / u128::from(shifted)) as u32;
        Some(TscScale { mul, shift })
    }

    /// Nanoseconds for `delta` ticks, saturating at `u64::MAX`.
    ///
    /// A negative shift drops the low bits of `delta` before multiplying, exactly as the
    /// `xen.h` formula and Xen's own `scale_delta` do, so the result agrees bit for bit with the
    /// hypervisor's view of system time. The product is taken in 128 bits: `delta * mul`
    /// overflows 64 bits after a few seconds of a GHz counter.
    pub fn ticks_to_nanos(self, delta: u64) -> u64 {
        let shifted = if self.shift < 0 {
            u128::from(
                delta
                    .checked_shr(u32::from(self.shift.unsigned_abs()))
                    .unwrap_or(0),
            )
        } else {
            shl_saturating(u128::from(delta), self.shift as u32)
        };
        let nanos = shifted.saturating_mul(u128::from(self.mul)) >> 32;
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    /// Ticks per second this scale implies, `((10^9 << 32) / mul) >> shift` as `xen.h` gives it.
    ///
    /// Truncates, so it may be a few ticks per second below the frequency passed to
    /// [`TscScale::from_hz`]. A zero `mul` (a clock that never advances) saturates to `u64::MAX`.
    pub fn hz(self) -> u64 {
        if self.mul == 0 {
            return u64::MAX;
        }
        let base = (u128::from(NANOS_PER_SEC) << 32) / u128::from(self.mul);
        let hz = if self.shift < 0 {
            shl_saturating(base, u32::from(self.shift.unsigned_abs()))
        } else {
            base >> self.shift
        };
        u64::try_from(hz).unwrap_or(u64::MAX)
    }

    /// The fewest ticks after which [`TscScale::ticks_to_nanos`] reports at least `nanos`,
    /// saturating at `u64::MAX`.
    ///
    /// Rounding up is what a TSC-deadline timer needs: it never fires before the deadline, so
    /// the woken executor never finds its timer unexpired. With a zero `mul` no tick count
    /// reaches a nonzero `nanos`, so the answer is `u64::MAX`.
    pub fn nanos_to_ticks(self, nanos: u64) -> u64 {
        if nanos == 0 {
            return 0;
        }
        if self.mul == 0 {
            return u64::MAX;
        }
        // ticks_to_nanos(t) >= n  <=>  (t << shift) * mul >= n << 32  <=>  (t << shift) >= q,
        // with q the least multiplier input that reaches n.
        let q = (u128::from(nanos) << 32).div_ceil(u128::from(self.mul));
        let ticks = if self.shift < 0 {
            // Ticks below a multiple of 2^-shift are dropped, so t must be q whole steps.
            shl_saturating(q, u32::from(self.shift.unsigned_abs()))
        } else {
            // ceil(ceil(a / b) / c) == ceil(a / (b * c)) for positive integers.
            q.div_ceil(1u128 << self.shift)
        };
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }
}

/// `x << n`, or `u128::MAX` if any set bit would be shifted out.
fn shl_saturating(x: u128, n: u32) -> u128 {
    if x == 0 {
        0
    } else if n >= x.leading_zeros() {
        u128::MAX
    } else {
        x << n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(hz: u64) -> TscScale {
        TscScale::from_hz(hz).unwrap()
    }

    #[test]
    fn rejects_zero_frequency() {
        assert_eq!(TscScale::from_hz(0), None);
    }

    #[test]
    fn one_ghz_is_one_nanosecond_per_tick() {
        let s = scale(1_000_000_000);
        assert_eq!(
            s,
            TscScale {
                mul: 0x8000_0000,
                shift: 1
            }
        );
        assert_eq!(s.ticks_to_nanos(1), 1);
        assert_eq!(s.ticks_to_nanos(123_456_789_012), 123_456_789_012);
        assert_eq!(s.hz(), 1_000_000_000);
    }

    #[test]
    fn ghz_counters_shift_right() {
        // 2.5 GHz -> 1.25 GHz, shift -1, mul = floor(2^32 / 1.25).
        let s = scale(2_500_000_000);
        assert_eq!(
            s,
            TscScale {
                mul: 0xCCCC_CCCC,
                shift: -1
            }
        );
        assert_eq!(s.ticks_to_nanos(2_500_000_000), 999_999_999);
        assert_eq!(s.ticks_to_nanos(5), 1);
        assert_eq!(s.hz(), 2_500_000_000);

        // 3 GHz -> 1.5 GHz, shift -1, mul = floor(2^33 / 3).
        let s = scale(3_000_000_000);
        assert_eq!(
            s,
            TscScale {
                mul: 0xAAAA_AAAA,
                shift: -1
            }
        );
        assert_eq!(s.ticks_to_nanos(3_000_000_000), 999_999_999);
        assert_eq!(s.hz(), 3_000_000_000);
    }

    #[test]
    fn slow_counters_shift_left() {
        // 100 MHz -> 1.6 GHz, shift 4, mul = 0.625 * 2^32: exact, 10 ns per tick.
        let s = scale(100_000_000);
        assert_eq!(
            s,
            TscScale {
                mul: 0xA000_0000,
                shift: 4
            }
        );
        assert_eq!(s.ticks_to_nanos(1), 10);
        assert_eq!(s.ticks_to_nanos(100_000_000), 1_000_000_000);
        assert_eq!(s.hz(), 100_000_000);

        // 10 MHz (Hyper-V reference counter) -> 1.28 GHz, shift 7, 100 ns per tick.
        let s = scale(10_000_000);
        assert_eq!(
            s,
            TscScale {
                mul: 0xC800_0000,
                shift: 7
            }
        );
        assert_eq!(s.ticks_to_nanos(1), 100);
        assert_eq!(s.ticks_to_nanos(10_000_000), 1_000_000_000);
        assert_eq!(s.hz(), 10_000_000);

        // 1 kHz -> 1000 << 20, shift 20, mul = 10^6 << 12: exact, 1 ms per tick.
        let s = scale(1000);
        assert_eq!(
            s,
            TscScale {
                mul: 4_096_000_000,
                shift: 20
            }
        );
        assert_eq!(s.ticks_to_nanos(1), 1_000_000);
        assert_eq!(s.ticks_to_nanos(1000), 1_000_000_000);
        assert_eq!(s.hz(), 1000);
    }

    #[test]
    fn extreme_frequencies_still_get_a_scale() {
        let s = scale(1);
        assert_eq!(
            s,
            TscScale {
                mul: 4_000_000_000,
                shift: 30
            }
        );
        assert_eq!(s.ticks_to_nanos(3), 3_000_000_000);
        let s = scale(u64::MAX);
        assert_eq!(s.shift, -34);
        assert!(s.mul >= 1 << 31);
        // 2^34 ticks at ~1.8e19 Hz is about a nanosecond.
        assert_eq!(s.ticks_to_nanos(1 << 34), 0);
        assert_eq!(s.ticks_to_nanos(u64::MAX), 999_999_999);
    }

    #[test]
    fn multiplies_in_128_bits() {
        // Ten seconds at 3 GHz: (1.5e10 * 0xAAAAAAAA) is about 4.3e19, past u64::MAX.
        assert_eq!(
            scale(3_000_000_000).ticks_to_nanos(30_000_000_000),
            9_999_999_997
        );
        // delta << 7 overflows 64 bits although the answer (1.5e19 ns) fits.
        let delta = 150_000_000_000_000_000;
        assert!(delta > u64::MAX >> 7);
        assert_eq!(
            scale(10_000_000).ticks_to_nanos(delta),
            15_000_000_000_000_000_000
        );
        // delta << 20 overflows 64 bits; 1 kHz is exact.
        let delta = (1 << 44) + 12_345;
        assert_eq!(scale(1000).ticks_to_nanos(delta), delta * 1_000_000);
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        assert_eq!(scale(1000).ticks_to_nanos(u64::MAX), u64::MAX);
        assert_eq!(scale(3_000_000_000).nanos_to_ticks(u64::MAX), u64::MAX);
        // Peer-written nonsense: huge shifts either way, zero mul.
        assert_eq!(TscScale { mul: 1, shift: 127 }.ticks_to_nanos(1), u64::MAX);
        assert_eq!(TscScale { mul: 1, shift: 127 }.ticks_to_nanos(0), 0);
        assert_eq!(
            TscScale {
                mul: u32::MAX,
                shift: -128
            }
            .ticks_to_nanos(u64::MAX),
            0
        );
        assert_eq!(
            TscScale {
                mul: u32::MAX,
                shift: -128
            }
            .nanos_to_ticks(1),
            u64::MAX
        );
        assert_eq!(
            TscScale {
                mul: u32::MAX,
                shift: 127
            }
            .nanos_to_ticks(u64::MAX),
            1
        );
        assert_eq!(TscScale { mul: 0, shift: 0 }.ticks_to_nanos(u64::MAX), 0);
        assert_eq!(TscScale { mul: 0, shift: 0 }.nanos_to_ticks(1), u64::MAX);
        assert_eq!(TscScale { mul: 0, shift: 0 }.nanos_to_ticks(0), 0);
        assert_eq!(TscScale { mul: 0, shift: 0 }.hz(), u64::MAX);
        assert_eq!(
            TscScale {
                mul: 1,
                shift: -100
            }
            .hz(),
            u64::MAX
        );
    }

    #[test]
    fn decodes_a_real_xen_vcpu_time_info() {
        // tsc_to_system_mul = 0x9a1d6d0f, tsc_shift = -1, as Xen publishes for a ~3.3 GHz TSC.
        let s = TscScale {
            mul: 0x9a1d_6d0f,
            shift: -1,
        };
        // (10^9 << 32) / 0x9a1d6d0f = 1_661_097_821, then << 1.
        assert_eq!(s.hz(), 3_322_195_642);
        // One second of ticks: (3_322_195_642 >> 1) * 0x9a1d6d0f >> 32 = 999_999_999 ns.
        assert_eq!(s.ticks_to_nanos(3_322_195_642), 999_999_999);
        // The dropped low bit: an odd delta scales like the even one below it.
        assert_eq!(s.ticks_to_nanos(3_322_195_643), 999_999_999);
        assert_eq!(s.ticks_to_nanos(0x1234_5678_9abc), 6_024_930_646_352);
        // Xen's set_time_scale would publish this very scale for the frequency it implies.
        assert_eq!(TscScale::from_hz(s.hz()), Some(s));
    }

    #[test]
    fn nanos_to_ticks_is_the_least_tick_count_reaching_the_deadline() {
        for hz in [
            1000,
            10_000_000,
            100_000_000,
            1_000_000_000,
            2_500_000_000,
            3_322_195_642,
        ] {
            let s = scale(hz);
            for nanos in [1, 7, 999, 1_000_000, 1_234_567_891, 86_400_000_000_000] {
                let ticks = s.nanos_to_ticks(nanos);
                assert!(s.ticks_to_nanos(ticks) >= nanos, "{hz} Hz, {nanos} ns");
                assert!(s.ticks_to_nanos(ticks - 1) < nanos, "{hz} Hz, {nanos} ns");
            }
        }
        assert_eq!(scale(1_000_000_000).nanos_to_ticks(5), 5);
        // A 1 kHz tick is a millisecond: 1 ns needs a whole tick.
        assert_eq!(scale(1000).nanos_to_ticks(1), 1);
        assert_eq!(scale(1000).nanos_to_ticks(1_000_001), 2);
        // Shift -1 drops odd ticks, so the answer is even: one 2-tick step is 0.67 ns, two reach 1.
        assert_eq!(scale(3_000_000_000).nanos_to_ticks(1), 4);
    }

    #[test]
    fn round_trips_within_one_tick_or_one_nanosecond() {
        for hz in [1000, 10_000_000, 100_000_000, 999_999_999, 1_000_000_000] {
            // Ticks no shorter than a nanosecond: ticks -> nanos -> ticks loses at most a tick.
            let s = scale(hz);
            for ticks in [1, 2, 3, 1000, 123_456_789, 10_000_000_000] {
                let back = s.nanos_to_ticks(s.ticks_to_nanos(ticks));
                assert!(
                    back <= ticks && ticks - back <= 1,
                    "{hz} Hz, {ticks} ticks -> {back}"
                );
            }
        }
        for hz in [2_500_000_000, 3_000_000_000, 3_322_195_642] {
            // Sub-nanosecond ticks: a nanosecond is the resolution, so nanos round-trip instead,
            // and ticks come back within one nanosecond's worth of ticks.
            let s = scale(hz);
            let ticks_per_nano = hz.div_ceil(1_000_000_000);
            for nanos in [1, 2, 1000, 123_456_789, 10_000_000_000] {
                let there = s.nanos_to_ticks(nanos);
                let back = s.ticks_to_nanos(there);
                assert!(
                    back >= nanos && back - nanos <= 1,
                    "{hz} Hz, {nanos} ns -> {back}"
                );
            }
            for ticks in [1000, 123_456_789, 30_000_000_000] {
                let back = s.nanos_to_ticks(s.ticks_to_nanos(ticks));
                assert!(
                    back <= ticks && ticks - back <= ticks_per_nano,
                    "{hz} Hz, {ticks}"
                );
            }
        }
    }
}
