//! Two-column float16 and float32 rows in AVX-512: a tile of units (16 of float16, 8 of
//! float32) walks every epoch in registers, the per-epoch step written in vectors.
//!
//! The generic tile ([`super::kernels`]) widens a tile's values, splits every row into its
//! gold and other value by a per-unit select and leaves the rest to the compiler; on Zen 4 that
//! loop took about a hundred instructions per float16 tile and epoch. Here a tile's gold classes
//! become one permute, made once for all epochs, that puts the gold values in the low half of a
//! register and the others in the high half (one 64-byte load a tile and epoch); the verdicts
//! are one comparison per eight units, and the step is [`super::lanes`]'.
//!
//! Each unit sees the same IEEE operations, in the same order, as on every other path (the
//! widening is exact, so comparing in float64 is comparing the stored values), so the results
//! are the same bits. A tile holding any value outside [+0, 1] is declined and goes to the
//! generic tile, which clamps (float16 within its tolerance) or refuses, as for any file.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use half::f16;

use super::kernels::F16_ONE_BITS;
use super::lanes::Lanes8;
use super::output::OutBlock;
use super::state::{Rule, Stream};

/// A stored two-column value as [`tile`] reads it: one 64-byte load of a tile's rows an epoch.
pub(super) trait Pair: Copy {
    /// Units per tile: the rows one 64-byte load holds (16 of float16, 8 of float32).
    const UNITS: usize;
    /// The tile's rows at `at` split by `index` (made by [`Pair::split_index`]) into the gold
    /// and the other values widened to float64, eight units a vector (`UNITS / 8` of each),
    /// with their bits folded into `highest` (the largest, as unsigned integers).
    unsafe fn split(at: *const Self, index: __m512i, highest: &mut __m512i) -> ([__m512d; 2], [__m512d; 2]);
    /// The permute that puts unit `j`'s gold value in lane `j` and its other value in lane
    /// `UNITS + j` (lanes of the stored width), from the tile's classes.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    unsafe fn split_index(classes: &[i64]) -> __m512i;
    /// Whether every value whose bits were folded into `highest` is in [+0, 1]: such values'
    /// bits are at most 1.0's (a sign bit, a NaN or anything above 1 is larger).
    unsafe fn all_probabilities(highest: __m512i) -> bool;
}

/// Lane `j` of `UNITS` for unit `j`'s gold column, lane `UNITS + j` for its other column.
#[inline(always)]
fn split_lanes<const LANES: usize>(classes: &[i64]) -> [u32; LANES] {
    let units = LANES / 2;
    let mut lanes = [0u32; LANES];
    for (j, &class) in classes.iter().enumerate().take(units) {
        let gold = (class != 0) as u32;
        lanes[j] = 2 * j as u32 + gold;
        lanes[units + j] = 2 * j as u32 + (1 - gold);
    }
    lanes
}

impl Pair for f16 {
    const UNITS: usize = 16;
    #[inline(always)]
    unsafe fn split(at: *const Self, index: __m512i, highest: &mut __m512i) -> ([__m512d; 2], [__m512d; 2]) {
        let bits = _mm512_loadu_si512(at.cast());
        *highest = _mm512_max_epu16(*highest, bits);
        let halves = _mm512_permutexvar_epi16(index, bits);
        let widen = |words: __m256i| {
            let values = _mm512_cvtph_ps(words);
            let upper = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(values)));
            [_mm512_cvtps_pd(_mm512_castps512_ps256(values)), _mm512_cvtps_pd(upper)]
        };
        (widen(_mm512_castsi512_si256(halves)), widen(_mm512_extracti64x4_epi64::<1>(halves)))
    }
    #[inline(always)]
    unsafe fn split_index(classes: &[i64]) -> __m512i {
        let words = split_lanes::<32>(classes).map(|lane| lane as u16);
        _mm512_loadu_si512(words.as_ptr().cast())
    }
    #[inline(always)]
    unsafe fn all_probabilities(highest: __m512i) -> bool {
        _mm512_cmpgt_epu16_mask(highest, _mm512_set1_epi16(F16_ONE_BITS as i16)) == 0
    }
}

impl Pair for f32 {
    const UNITS: usize = 8;
    #[inline(always)]
    unsafe fn split(at: *const Self, index: __m512i, highest: &mut __m512i) -> ([__m512d; 2], [__m512d; 2]) {
        let bits = _mm512_loadu_si512(at.cast());
        *highest = _mm512_max_epu32(*highest, bits);
        let halves = _mm512_castsi512_ps(_mm512_permutexvar_epi32(index, bits));
        let gold = _mm512_cvtps_pd(_mm512_castps512_ps256(halves));
        let other = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(halves))));
        ([gold, gold], [other, other])
    }
    #[inline(always)]
    unsafe fn split_index(classes: &[i64]) -> __m512i {
        let lanes = split_lanes::<16>(classes);
        _mm512_loadu_si512(lanes.as_ptr().cast())
    }
    #[inline(always)]
    unsafe fn all_probabilities(highest: __m512i) -> bool {
        _mm512_cmpgt_epu32_mask(highest, _mm512_set1_epi32(1.0f32.to_bits() as i32)) == 0
    }
}

/// The lanes whose unit's gold is the first column: under the first-index rule, gold is then
/// the first largest column of a tie (as `kernels::two_class_step`).
#[inline(always)]
fn first_column_golds(classes: &[i64]) -> __mmask8 {
    classes.iter().enumerate().fold(0, |mask, (j, &class)| mask | ((class == 0) as __mmask8) << j)
}

/// Units `start..start + W` (of the file; `classes` are theirs) walk every epoch of `stream`
/// under `rule` (`FIRST_INDEX`: whether it is the first-index rule),
/// then their outputs go to `into` (`W` units long); `prefetch` bytes ahead of each epoch's
/// rows are asked of the cache. False, with nothing written, when a value of the tile is
/// outside [+0, 1].
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW, AVX-512VL and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile<S: Pair, const W: usize, const FIRST_INDEX: bool>(data: &[S], stream: &Stream, start: usize, classes: &[i64], rule: Rule, n: f64, divisor: f64, prefetch: usize, into: &mut OutBlock<'_>) -> bool {
    assert!(W == S::UNITS && classes.len() == W && into.len() == W && rule.first_index == FIRST_INDEX);
    // the tie test compiled in only under the first-index rule
    let rule = Rule { first_index: FIRST_INDEX, ..rule };
    let index = S::split_index(classes);
    let mut highest = _mm512_setzero_si512();
    let mut state = [Lanes8::new(); 2];
    for (k, e) in stream.epochs.clone().enumerate() {
        let at = e * stream.epoch_len + 2 * start;
        let rows = &data[at..at + 2 * W];
        _mm_prefetch::<_MM_HINT_T0>(rows.as_ptr().cast::<i8>().wrapping_add(prefetch));
        let (p, q) = S::split(rows.as_ptr(), index, &mut highest);
        for h in 0..W / 8 {
            // as `kernels::two_class_step`: the widening is exact, so comparing the float64
            // values is comparing the stored ones; the others' sum of squares is the one
            // other value's square, in float64
            state[h].fold_multiclass(k, p[h], q[h], _mm512_mul_pd(q[h], q[h]), rule, || first_column_golds(&classes[8 * h..8 * h + 8]));
        }
    }
    if !S::all_probabilities(highest) {
        return false;
    }
    for (h, lanes) in state.iter().take(W / 8).enumerate() {
        lanes.finish(into, 8 * h, n, divisor, true);
    }
    true
}
