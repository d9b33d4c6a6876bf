//! One-column float16 and float32 rows (binary, multilabel) in AVX-512: a tile of units (16 of
//! float16, 8 of float32) walks every epoch in registers, the per-epoch step written in vectors.
//!
//! The generic tile ([`super::kernels`]) widens a tile's values into a local array and leaves
//! each unit's step to the compiler, which kept the verdicts and counts in scalar-shaped
//! pieces (as it did for two-column rows, see [`super::pairs`]). Here a tile's gold labels
//! become two lane masks, made once for all epochs; an epoch is one load, a widening, and
//! [`Lanes8::fold_binary`] per eight units; the outputs are made and stored from the registers
//! ([`Lanes8::finish`]).
//!
//! Measured on Zen 4 against the generic tile (`benches/ab.py`, 15-21 rounds interleaved, one
//! and two threads): float16 binary `[10, 4M, 1]` 0.85-0.87x and 0.82-0.88x, float16
//! multilabel `[10, 500k, 10]` 0.88-0.91x and 0.82-0.84x, float32 binary 0.89x and 0.94x.
//!
//! Each unit sees the same IEEE operations, in the same order, as on every other path (the
//! widening is exact), so the results are the same bits. A tile holding any value outside
//! [+0, 1] is declined and goes to the generic tile, which clamps (float16 within its
//! tolerance) or refuses, as for any file.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use half::f16;

use super::kernels::{GoldBit, F16_ONE_BITS};
use super::lanes::Lanes8;
use super::output::OutBlock;
use super::state::{Rule, Stream};

/// A stored one-column value as [`tile`] reads it: one 32-byte load of a tile's rows an epoch.
pub(super) trait Single: Copy {
    /// Units per tile: the values one 32-byte load holds (16 of float16, 8 of float32).
    const UNITS: usize;
    /// The tile's values at `at` widened to float64, eight units a vector (`UNITS / 8` of
    /// them), with their bits folded into `highest` (the largest, as unsigned integers).
    unsafe fn widen(at: *const Self, highest: &mut __m256i) -> [__m512d; 2];
    /// Whether every value whose bits were folded into `highest` is in [+0, 1]: such values'
    /// bits are at most 1.0's (a sign bit, a NaN or anything above 1 is larger).
    unsafe fn all_probabilities(highest: __m256i) -> bool;
}

impl Single for f16 {
    const UNITS: usize = 16;
    #[inline(always)]
    unsafe fn widen(at: *const Self, highest: &mut __m256i) -> [__m512d; 2] {
        let bits = _mm256_loadu_si256(at.cast());
        *highest = _mm256_max_epu16(*highest, bits);
        let values = _mm512_cvtph_ps(bits);
        let upper = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(values)));
        [_mm512_cvtps_pd(_mm512_castps512_ps256(values)), _mm512_cvtps_pd(upper)]
    }
    #[inline(always)]
    unsafe fn all_probabilities(highest: __m256i) -> bool {
        _mm256_cmpgt_epu16_mask(highest, _mm256_set1_epi16(F16_ONE_BITS as i16)) == 0
    }
}

impl Single for f32 {
    const UNITS: usize = 8;
    #[inline(always)]
    unsafe fn widen(at: *const Self, highest: &mut __m256i) -> [__m512d; 2] {
        let bits = _mm256_loadu_si256(at.cast());
        *highest = _mm256_max_epu32(*highest, bits);
        let values = _mm512_cvtps_pd(_mm256_castsi256_ps(bits));
        [values, values]
    }
    #[inline(always)]
    unsafe fn all_probabilities(highest: __m256i) -> bool {
        _mm256_cmpgt_epu32_mask(highest, _mm256_set1_epi32(1.0f32.to_bits() as i32)) == 0
    }
}

/// The lanes of eight units whose gold label (as `kernels::binary_step` reads it) is `bit`.
#[inline(always)]
fn gold_lanes<G: GoldBit>(gold: &[G], bit: u8) -> __mmask8 {
    gold.iter().take(8).enumerate().fold(0, |mask, (j, &g)| mask | ((g.bit() == bit) as __mmask8) << j)
}

/// Units `start..start + W` (of the file; `gold` are their labels) walk every epoch of
/// `stream` under `rule` (`ARGMAX`, `FIRST_INDEX`: the rule's kind), then their
/// outputs go to `into` (`W` units long); `prefetch` bytes ahead of each epoch's rows are asked
/// of the cache. False, with nothing written, when a value of the tile is outside [+0, 1].
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW, AVX-512VL and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile<S: Single, G: GoldBit, const W: usize, const ARGMAX: bool, const FIRST_INDEX: bool>(data: &[S], stream: &Stream, start: usize, gold: &[G], rule: Rule, n: f64, divisor: f64, prefetch: usize, into: &mut OutBlock<'_>) -> bool {
    assert!(W == S::UNITS && gold.len() == W && into.len() == W && rule.argmax == ARGMAX && rule.first_index == FIRST_INDEX);
    // the rule's verdict compiled in, not tested in the loop
    let rule = Rule { argmax: ARGMAX, first_index: FIRST_INDEX, ..rule };
    let ones: [__mmask8; 2] = std::array::from_fn(|h| if 8 * h < W { gold_lanes(&gold[8 * h..], 1) } else { 0 });
    let zeros: [__mmask8; 2] = std::array::from_fn(|h| if 8 * h < W { gold_lanes(&gold[8 * h..], 0) } else { 0 });
    let mut highest = _mm256_setzero_si256();
    let mut state = [Lanes8::new(); 2];
    for (k, e) in stream.epochs.clone().enumerate() {
        let at = e * stream.epoch_len + start;
        let rows = &data[at..at + W];
        _mm_prefetch::<_MM_HINT_T0>(rows.as_ptr().cast::<i8>().wrapping_add(prefetch));
        let x = S::widen(rows.as_ptr(), &mut highest);
        for h in 0..W / 8 {
            // the first epoch apart, so that the loop has no test of `k == 0` (the shift's)
            if k == 0 {
                state[h].fold_binary(0, x[h], ones[h], zeros[h], rule);
            } else {
                state[h].fold_binary(k, x[h], ones[h], zeros[h], rule);
            }
        }
    }
    if !S::all_probabilities(highest) {
        return false;
    }
    for (h, lanes) in state.iter().take(W / 8).enumerate() {
        lanes.finish(into, 8 * h, n, divisor, false);
    }
    true
}
