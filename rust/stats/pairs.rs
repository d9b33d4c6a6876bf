//! Two-column float16 rows in AVX-512: sixteen units a tile, the per-epoch step of
//! [`super::state::UnitState`] spelled out in vectors.
//!
//! The generic tile ([`super::kernels`]) widens a tile's 32 values, splits every row into its
//! gold and other value by a per-unit select and leaves the rest to the compiler; on Zen 4 that
//! loop took about a hundred instructions per tile and epoch. Here a tile's gold classes become
//! one word permute, made once for all epochs, that puts the sixteen gold values in the low half
//! of a register and the sixteen others in the high half; the verdicts are one comparison and
//! one mask for all sixteen units, and the step is [`super::lanes`]'.
//!
//! Each unit sees the same IEEE operations, in the same order, as on every other path (the
//! widening is exact, so comparing in float32 is comparing in float64), so the results are the
//! same bits. A tile holding any value outside [+0, 1] is declined and goes to the generic tile,
//! which clamps within float16's tolerance or refuses, as for any file.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use half::f16;

use super::kernels::{self, F16_ONE_BITS};
use super::lanes::Lanes8;
use super::output::{OutBlock, TileOut};
use super::state::{Rule, Stream, TileAcc};

/// Units per tile: one 512-bit load of two-column float16 rows per epoch.
pub(super) const UNITS: usize = 16;

/// Whether [`tile`] takes tiles under `rule`: every rule but the first-index one, whose tie
/// test reads the columns' order (left to the generic tile).
pub(super) fn takes(rule: Rule) -> bool {
    !rule.first_index
}

/// Units `start..start + 16` (of the file; `classes` are theirs) walk every epoch of `stream`,
/// then their outputs go to `into` (16 units long); `prefetch` bytes ahead of each epoch's
/// rows are asked of the cache. False, with nothing written, when a value of the tile is
/// outside [+0, 1].
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW, AVX-512VL and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile(data: &[f16], stream: &Stream, start: usize, classes: &[i64], rule: Rule, n: f64, divisor: f64, prefetch: usize, into: &mut OutBlock<'_>) -> bool {
    assert!(classes.len() == UNITS && into.len() == UNITS && takes(rule));
    // word j of the split: unit j's gold value (j < 16), unit j - 16's other value (j >= 16)
    let mut split = [0u16; 2 * UNITS];
    for (j, &class) in classes.iter().enumerate() {
        let gold = (class != 0) as u16;
        split[j] = 2 * j as u16 + gold;
        split[UNITS + j] = 2 * j as u16 + (1 - gold);
    }
    let split = _mm512_loadu_si512(split.as_ptr().cast());
    let threshold = _mm512_set1_pd(rule.threshold);
    // the largest bits seen: every value is in [+0, 1] when they are at most 1.0's
    let mut highest = _mm512_setzero_si512();
    let mut state = [Lanes8::new(); 2];
    for (k, e) in stream.epochs.clone().enumerate() {
        let at = e * stream.epoch_len + 2 * start;
        let rows = &data[at..at + 2 * UNITS];
        _mm_prefetch::<_MM_HINT_T0>(rows.as_ptr().cast::<i8>().wrapping_add(prefetch));
        let bits = _mm512_loadu_si512(rows.as_ptr().cast());
        highest = _mm512_max_epu16(highest, bits);
        let halves = _mm512_permutexvar_epi16(split, bits);
        let gold = _mm512_cvtph_ps(_mm512_castsi512_si256(halves));
        let other = _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(halves));
        let widen = |x: __m512, h: usize| {
            let half = if h == 0 { _mm512_castps512_ps256(x) } else { _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x))) };
            _mm512_cvtps_pd(half)
        };
        let (p, q) = ([widen(gold, 0), widen(gold, 1)], [widen(other, 0), widen(other, 1)]);
        let verdicts: __mmask16 = if rule.argmax {
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(gold, other)
        } else {
            _mm512_cmp_pd_mask::<_CMP_GE_OQ>(p[0], threshold) as u16 | (_mm512_cmp_pd_mask::<_CMP_GE_OQ>(p[1], threshold) as u16) << 8
        };
        for h in 0..2 {
            // the others' sum of squares is the one other value's square, in float64
            state[h].fold(k, p[h], q[h], _mm512_mul_pd(q[h], q[h]), (verdicts >> (8 * h)) as __mmask8);
        }
    }
    if _mm512_cmpgt_epu16_mask(highest, _mm512_set1_epi16(F16_ONE_BITS as i16)) != 0 {
        return false;
    }
    let mut acc = TileAcc::<UNITS>::new();
    for (h, half) in state.iter().enumerate() {
        half.store(&mut acc, 8 * h);
    }
    let mut local = TileOut::<UNITS>::new();
    kernels::finish(&acc.slices(), &mut local.block(), n, divisor, true);
    // SAFETY: AVX-512F is present (this function's features), and `finish` wrote all units
    local.stream_to(into, true);
    true
}
