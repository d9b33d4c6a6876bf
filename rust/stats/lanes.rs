//! Eight units' running state in AVX-512 registers: the per-epoch step of
//! [`super::state::UnitState`] written in vectors, and the outputs made from it
//! ([`Lanes8::finish`]), for the kernels that hold a group of units in registers across the
//! epochs ([`super::pairs`], [`super::singles`], the tiled multiclass path of
//! [`super::avx512`]).
//!
//! Written out for [`super::pairs`], whose tile the compiler had left with the verdicts and
//! counts in scalar-shaped pieces (masks moved to vectors and back, a select per field); the
//! tiled multiclass path shares it (measured even there against its former arrays of eight).
//! Each unit sees the same IEEE operations in the same order as
//! [`super::state::UnitState`] (and so the same bits); the counts are masked additions.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::output::OutBlock;
use super::state::{AccSlices, Rule};
#[cfg(doc)]
use super::state::TileAcc;

/// The running state of eight units, lane `j` for unit `j`.
#[derive(Clone, Copy)]
pub(super) struct Lanes8 {
    shift: __m512d,
    sum_d: __m512d,
    sum_d2: __m512d,
    margin: __m512d,
    el2n: __m512d,
    /// The last folded epoch's EL2N before its root (whose root `el2n` has not taken yet).
    el2n_next: __m512d,
    right: __m256i,
    forgetting: __m256i,
    last_wrong: __m256i,
    last_right: __mmask8,
}

impl Lanes8 {
    /// The state before the first epoch ([`TileAcc::new`]'s).
    #[inline(always)]
    pub(super) unsafe fn new() -> Self {
        let (zero, none) = (_mm512_setzero_pd(), _mm256_setzero_si256());
        Lanes8 { shift: zero, sum_d: zero, sum_d2: zero, margin: zero, el2n: zero, el2n_next: zero, right: none, forgetting: none, last_wrong: _mm256_set1_epi32(-1), last_right: 0 }
    }

    /// Fold window epoch `k` of a multiclass row per lane: the gold probability `p`, the others'
    /// max `q` and sum of squares `squares`, and the verdicts (bit `j`: unit `j` was right);
    /// as `kernels::fold_verdict` then `UnitState::update`, operation for operation.
    #[inline(always)]
    unsafe fn fold(&mut self, k: usize, p: __m512d, q: __m512d, squares: __m512d, verdicts: __mmask8) {
        self.margin = _mm512_add_pd(self.margin, _mm512_sub_pd(p, q));
        let miss = _mm512_sub_pd(_mm512_set1_pd(1.0), p);
        // the root of the epoch before, whose radicand is long computed, so that the root's
        // latency does not hold up the loop (a first root of +0 adds +0: the same bits). On
        // Zen 4 against the root taken at once: float16 10 columns 0.93-0.96x, 16 columns
        // 0.96-0.97x (1 and 2 threads); float32 10, float16 28 and two columns even.
        self.el2n = self.el2n_sum();
        self.el2n_next = _mm512_fmadd_pd(miss, miss, squares);
        self.update(k, p, verdicts);
    }

    /// The terms every task folds at window epoch `k`: the gold probability `p` and the
    /// verdicts (bit `j`: unit `j` was right); as `UnitState::update`, operation for operation.
    #[inline(always)]
    unsafe fn update(&mut self, k: usize, p: __m512d, verdicts: __mmask8) {
        if k == 0 {
            self.shift = p;
        }
        let d = _mm512_sub_pd(p, self.shift);
        self.sum_d = _mm512_add_pd(self.sum_d, d);
        self.sum_d2 = _mm512_fmadd_pd(d, d, self.sum_d2);
        let count = _mm256_set1_epi32(1);
        self.right = _mm256_mask_add_epi32(self.right, verdicts, self.right, count);
        self.forgetting = _mm256_mask_add_epi32(self.forgetting, self.last_right & !verdicts, self.forgetting, count);
        self.last_wrong = _mm256_mask_mov_epi32(self.last_wrong, !verdicts, _mm256_set1_epi32(k as i32));
        self.last_right = verdicts;
    }

    /// [`Self::fold`] with the verdicts of `rule`, as `kernels::multiclass_step`: `p > q` under
    /// argmax, `p` at least the threshold otherwise. Under the first-index rule a tie at the top
    /// (`p == q`) is right where gold is the first largest column: `gold_first` answers the
    /// lanes where it is, and is asked only when some lane ties (rarely).
    #[inline(always)]
    pub(super) unsafe fn fold_multiclass(&mut self, k: usize, p: __m512d, q: __m512d, squares: __m512d, rule: Rule, gold_first: impl FnOnce() -> __mmask8) {
        let verdicts = if rule.argmax {
            let above = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(p, q);
            let ties = if rule.first_index { _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(p, q) } else { 0 };
            if ties != 0 {
                above | (gold_first() & ties)
            } else {
                above
            }
        } else {
            _mm512_cmp_pd_mask::<_CMP_GE_OQ>(p, _mm512_set1_pd(rule.threshold))
        };
        self.fold(k, p, q, squares, verdicts);
    }

    /// Fold window epoch `k` of a one-column row per lane (binary, multilabel), as
    /// `kernels::binary_step` then `UnitState::update`: `x` the stored value (the probability of
    /// class 1, or of the label), `one` and `zero` the lanes whose gold label is 1 and 0. The
    /// margin and EL2N of such rows come from the confidence (`kernels::finish`), so they have
    /// no terms here.
    #[inline(always)]
    pub(super) unsafe fn fold_binary(&mut self, k: usize, x: __m512d, one: __mmask8, zero: __mmask8, rule: Rule) {
        let p = _mm512_mask_blend_pd(one, _mm512_sub_pd(_mm512_set1_pd(1.0), x), x);
        let verdicts = if rule.argmax {
            // columns (1 - x, x): a tie (p = 0.5) goes to class 0 under the first-index rule
            let half = _mm512_set1_pd(0.5);
            let above = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(p, half);
            if rule.first_index {
                above | (zero & _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(p, half))
            } else {
                above
            }
        } else {
            // class 1 predicted where x reaches the threshold: right where that is the gold
            // label (two masked comparisons: a NaN is right in neither, and the caller refuses it)
            let threshold = _mm512_set1_pd(rule.threshold);
            _mm512_mask_cmp_pd_mask::<_CMP_GE_OQ>(one, x, threshold) | _mm512_mask_cmp_pd_mask::<_CMP_LT_OQ>(!one, x, threshold)
        };
        self.update(k, p, verdicts);
    }

    /// The sum of the folded epochs' EL2N.
    #[inline(always)]
    unsafe fn el2n_sum(&self) -> __m512d {
        _mm512_add_pd(self.el2n, _mm512_sqrt_pd(self.el2n_next))
    }

    /// The ten outputs of the eight units into units `at..at + 8` of `out`, straight from the
    /// registers: `kernels::finish`'s operations lane by lane (the same bits), the float64
    /// outputs streamed past the cache where they are whole aligned lines (as
    /// `crate::stream::line` streams them; the worker fences once its block is done).
    ///
    /// The kernels went through a tile's arrays first (`kernels::finish_tile`: the state stored
    /// to them, the outputs made into local arrays, then copied), some 40 stores more for a tile
    /// of 16 units. Stores leave in order, so with two threads writing outputs at the memory's
    /// limit they queued behind the streamed ones: on Zen 4, the float16 binary tile of
    /// [`super::singles`] measured 1.2-1.45x the generic tile's time that way with two threads,
    /// 0.82-0.88x this way.
    #[inline(always)]
    pub(super) unsafe fn finish(&self, out: &mut OutBlock<'_>, at: usize, n: f64, divisor: f64, multiclass: bool) {
        let (inv_n, inv_divisor) = (_mm512_set1_pd(1.0 / n), _mm512_set1_pd(1.0 / divisor));
        let (zero, one) = (_mm512_setzero_pd(), _mm512_set1_pd(1.0));
        let mean_d = _mm512_mul_pd(self.sum_d, inv_n);
        let confidence = _mm512_add_pd(self.shift, mean_d);
        // (no fused operations: `finish` has none; a max with zero second returns zero for zeros)
        let m2 = _mm512_max_pd(_mm512_sub_pd(self.sum_d2, _mm512_mul_pd(self.sum_d, mean_d)), zero);
        let closeness = _mm512_mul_pd(confidence, _mm512_sub_pd(one, confidence));
        stream_lanes(out.confidence, at, confidence);
        stream_lanes(out.variability, at, _mm512_sqrt_pd(_mm512_mul_pd(m2, inv_divisor)));
        stream_lanes(out.threshold_closeness, at, closeness);
        stream_lanes(out.aleatoric, at, _mm512_max_pd(_mm512_sub_pd(closeness, _mm512_mul_pd(m2, inv_n)), zero));
        stream_lanes(out.correctness, at, _mm512_div_pd(_mm512_cvtepu32_pd(self.right), _mm512_set1_pd(n)));
        _mm256_storeu_si256(out.forgetting[at..at + 8].as_mut_ptr().cast(), self.forgetting);
        let never = _mm256_cmpeq_epi32_mask(self.right, _mm256_setzero_si256());
        _mm_storel_epi64(out.never_learned[at..at + 8].as_mut_ptr().cast(), _mm_maskz_set1_epi8(never as u16, 1));
        let first = _mm256_mask_add_epi32(_mm256_set1_epi32(-1), self.last_right, self.last_wrong, _mm256_set1_epi32(1));
        _mm256_storeu_si256(out.first_learned[at..at + 8].as_mut_ptr().cast(), first);
        if multiclass {
            stream_lanes(out.margin, at, _mm512_mul_pd(self.margin, inv_n));
            stream_lanes(out.el2n, at, _mm512_mul_pd(self.el2n_sum(), inv_n));
        } else {
            // p - (1 - p) and |p - y| sqrt 2 = (1 - p) sqrt 2 are linear in p
            stream_lanes(out.margin, at, _mm512_sub_pd(_mm512_mul_pd(_mm512_set1_pd(2.0), confidence), one));
            stream_lanes(out.el2n, at, _mm512_mul_pd(_mm512_sub_pd(one, confidence), _mm512_set1_pd(std::f64::consts::SQRT_2)));
        }
    }

    /// The state of units `at..at + 8` of a block's accumulators (as [`Self::store`] leaves them).
    #[inline(always)]
    pub(super) unsafe fn load(acc: &AccSlices<'_>, at: usize) -> Self {
        let units = at..at + 8;
        let last_right = _mm256_loadu_si256(acc.last_right[units.clone()].as_ptr().cast());
        Lanes8 {
            shift: _mm512_loadu_pd(acc.shift[units.clone()].as_ptr()),
            sum_d: _mm512_loadu_pd(acc.sum_d[units.clone()].as_ptr()),
            sum_d2: _mm512_loadu_pd(acc.sum_d2[units.clone()].as_ptr()),
            margin: _mm512_loadu_pd(acc.margin_sum[units.clone()].as_ptr()),
            el2n: _mm512_loadu_pd(acc.el2n_sum[units.clone()].as_ptr()),
            el2n_next: _mm512_setzero_pd(),
            right: _mm256_loadu_si256(acc.right[units.clone()].as_ptr().cast()),
            forgetting: _mm256_loadu_si256(acc.forgetting[units.clone()].as_ptr().cast()),
            last_wrong: _mm256_loadu_si256(acc.last_wrong[units].as_ptr().cast()),
            last_right: _mm256_test_epi32_mask(last_right, last_right),
        }
    }

    /// The state into units `at..at + 8` of a block's accumulators or a tile's
    /// ([`TileAcc::slices`]).
    #[inline(always)]
    pub(super) unsafe fn store(&self, acc: &mut AccSlices<'_>, at: usize) {
        let units = at..at + 8;
        _mm512_storeu_pd(acc.shift[units.clone()].as_mut_ptr(), self.shift);
        _mm512_storeu_pd(acc.sum_d[units.clone()].as_mut_ptr(), self.sum_d);
        _mm512_storeu_pd(acc.sum_d2[units.clone()].as_mut_ptr(), self.sum_d2);
        _mm512_storeu_pd(acc.margin_sum[units.clone()].as_mut_ptr(), self.margin);
        _mm512_storeu_pd(acc.el2n_sum[units.clone()].as_mut_ptr(), self.el2n_sum());
        _mm256_storeu_si256(acc.right[units.clone()].as_mut_ptr().cast(), self.right);
        _mm256_storeu_si256(acc.forgetting[units.clone()].as_mut_ptr().cast(), self.forgetting);
        _mm256_storeu_si256(acc.last_wrong[units.clone()].as_mut_ptr().cast(), self.last_wrong);
        _mm256_storeu_si256(acc.last_right[units].as_mut_ptr().cast(), _mm256_maskz_set1_epi32(self.last_right, 1));
    }
}

/// Eight float64 lanes into `into[at..at + 8]` ([`crate::stream::lanes`]: streamed where that is
/// a whole aligned line).
#[inline(always)]
unsafe fn stream_lanes(into: &mut [MaybeUninit<f64>], at: usize, lanes: __m512d) {
    crate::stream::lanes(&mut into[at..at + 8], lanes);
}
