//! The per-epoch loops, compiled for several instruction sets and picked at run time.

use multiversion::multiversion;

use super::avx512;
#[cfg(target_arch = "x86_64")]
use super::{pairs, singles};
use super::output::{OutBlock, TileOut};
use super::state::{AccSlices, Accumulators, RowSummaries, Rule, Stream, TileAcc, UnitState};

/// What the instruction set of the calling clone of a multiversioned function has, for the
/// inlined code below it that uses intrinsics: each flag is true only where its instructions
/// exist (the caller's clone is compiled for them, and picked at run time only where they do).
#[derive(Clone, Copy)]
struct Isa {
    /// F16C (float16 widening)
    f16c: bool,
    /// AVX-512F (64-byte non-temporal stores, [`crate::stream::line()`])
    avx512: bool,
}

/// The [`Isa`] of the multiversioned function this is written in.
macro_rules! isa {
    () => {
        Isa { f16c: multiversion::target::target_cfg_f!(target_feature = "f16c"), avx512: multiversion::target::target_cfg_f!(target_feature = "avx512f") }
    };
}

/// Units per tile of the tiled kernels ([`Stored::TILE`]): one AVX-512 register of float64 per
/// accumulator, so a tile's whole state lives in registers while it walks the epochs.
const TILE: usize = 8;
/// The widest tile ([`Stored::TILE`]).
const MAX_TILE: usize = 2 * TILE;
/// How far ahead of its read position each epoch's stream is prefetched by a tile (here and
/// in `avx512`'s multiclass tiles): a tile reads one stream per epoch at once, more than the
/// hardware prefetcher follows on its own, and each stream moves on only once its tile has
/// been through every epoch, so a short distance in bytes is a long one in time (the
/// epoch-major path, one stream, asks for 4 KiB ahead: there 512 bytes measured 1.2x slower).
/// Measured on Zen 4 against 2 KiB (`benches/ab.py`, `[10, N, L]`, one and two threads):
/// float64 two columns 0.82-0.89x, float32 two columns 0.89-1.03x, float32 10 columns
/// 0.92-0.95x (256 bytes: 1.10-1.16x; 768 and 1024: 0.94-0.97x; no prefetch: 1.17x), float32
/// 4 and 14 columns 0.88-0.96x, float16 10, 16 and 28 columns 0.89-0.95x with one thread and
/// 0.93-1.01x with two (by the median); one-column and multilabel files even.
pub(super) const PREFETCH_BYTES: usize = 512;
/// How many units ahead of a tile its gold labels are prefetched (2 KiB of class indices,
/// 256 bytes of multilabel targets). A tile's first epoch needs its gold labels, so it waited
/// on their load. Measured on Zen 4 against no prefetch, both builds loaded by path in one
/// process, interleaved: float16 binary and multilabel files 0.57-0.58x with 2 threads, 0.94x
/// and 0.87x with 1; float16 two-column rows 0.93x with 2; float32 and float64 files even.
pub(super) const GOLD_AHEAD: usize = 256;

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
pub(super) fn binary<F: Float>(values: &[F], gold_bits: &[u8], k: u32, rule: Rule, acc: &mut Accumulators) -> bool {
    let n = values.len();
    let (values, gold_bits, mut acc) = (&values[..n], &gold_bits[..n], acc.slices(n));
    let mut valid = true;
    for i in 0..n {
        valid &= binary_step(values[i], gold_bits[i], k, rule, &mut acc, i);
    }
    valid
}

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
pub(super) fn two_class<F: Float>(values: &[F], classes: &[i64], k: u32, rule: Rule, acc: &mut Accumulators) -> bool {
    let n = values.len() / 2;
    let (values, classes, mut acc) = (&values[..2 * n], &classes[..n], acc.slices(n));
    let mut valid = true;
    for i in 0..n {
        valid &= two_class_step(values[2 * i], values[2 * i + 1], classes[i], k, rule, &mut acc, i);
    }
    valid
}

/// Fold one unit's value of a one-column row (binary, multilabel); false when it is not a probability.
#[inline(always)]
fn binary_step<F: Float>(x: F, gold_bit: u8, k: u32, rule: Rule, acc: &mut impl UnitState, i: usize) -> bool {
    let valid = x.is_probability();
    let x = x.to_f64();
    let p = if gold_bit == 1 { x } else { 1.0 - x };
    // columns (1 - x, x): a tie (p = 0.5) goes to class 0 under the first-index rule
    let tie_won = rule.first_index & (gold_bit == 0) & (p == 0.5);
    // the threshold rule predicts class 1 when x >= threshold; right when that is the gold label
    let right = if rule.argmax { (p > 0.5) | tie_won } else { (x >= rule.threshold) == (gold_bit == 1) };
    acc.update(i, k, p, right);
    valid
}

/// Fold one unit's two-column row `(a, b)`; false when either is not a probability.
#[inline(always)]
fn two_class_step<F: Float>(a: F, b: F, gold: i64, k: u32, rule: Rule, acc: &mut impl UnitState, i: usize) -> bool {
    let valid = a.is_probability() & b.is_probability();
    let (p_gold, other) = if gold == 0 { (a, b) } else { (b, a) };
    let tie_won = rule.first_index & (gold == 0) & (p_gold == other);
    let right = if rule.argmax { (p_gold > other) | tie_won } else { p_gold.to_f64() >= rule.threshold };
    let (p, q) = (p_gold.to_f64(), other.to_f64());
    fold_verdict(p, q, q * q, right, k, acc, i);
    valid
}

/// How a tile reads its rows: a trait rather than a closure, because closures do not take
/// on the kernels' instruction sets and would not inline. `ROW_LEN` is a constant so each
/// row has a length the compiler knows, and the tile's loops unroll and vectorize.
trait Rows<F> {
    const ROW_LEN: usize;
    /// whether margin and EL2N come from per-epoch terms (true) or from the confidence
    const MULTICLASS: bool;
    type Gold: Copy;
    /// the gold label of block unit `t`
    fn gold(&self, t: usize) -> Self::Gold;
    /// where block unit `t`'s gold label is stored (a hint's address: `t` may be past the end)
    fn gold_at(&self, t: usize) -> *const u8;
    /// fold one unit's row at window epoch `k` into slot `j`; false when a value is not a probability
    fn fold(&self, row: &[F], gold: Self::Gold, k: u32, acc: &mut impl UnitState, j: usize) -> bool;
    /// A kernel of its own for the full tile at block offset `t` (`into` is its window): true
    /// when it took the tile (all its values valid, all its outputs written), false to leave
    /// it to [`tile`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn own_tile<S: Stored>(&self, data: &[S], stream: &Stream, start: usize, t: usize, n: f64, divisor: f64, isa: Isa, into: &mut OutBlock<'_>) -> bool {
        let _ = (data, stream, start, t, n, divisor, isa, into);
        false
    }
}

/// A value as the file stores it, read by the tiled kernels as the element type they compute
/// in: float32 and float64 as they are; float16 widened to float32 in registers and clamped
/// within its tolerance exactly as [`widen_f16`] does (so no widened copy of the rows is made;
/// a value beyond the tolerance may come out as another non-probability, NaN).
pub trait Stored: Copy + Send + Sync + 'static {
    type Value: Float;
    /// Units per tile of the tiled kernels: [`TILE`], or [`MAX_TILE`] where two registers per
    /// accumulator (two independent chains of additions per epoch) measured faster.
    const TILE: usize = TILE;
    /// Whether [`Self::widen`]'s answer is the tile's validity, so the folds' own range tests
    /// go unused and compile away (float16: the widening looks at every value's bits anyway).
    const WIDEN_VALIDATES: bool = false;
    fn value(self) -> Self::Value;
    /// The values as float16, when that is what they are (for [`pairs`]).
    #[inline(always)]
    fn as_f16(stored: &[Self]) -> Option<&[half::f16]> {
        let _ = stored;
        None
    }
    /// The values as float32, when that is what they are (for [`pairs`]).
    #[inline(always)]
    fn as_f32(stored: &[Self]) -> Option<&[f32]> {
        let _ = stored;
        None
    }
    /// Every value of `stored` into `values` (the same length, at most `2 * MAX_TILE`: a widest
    /// tile's rows); `f16c`: the caller's instruction set has F16C. Under
    /// [`Self::WIDEN_VALIDATES`], false when a value is not a probability (true otherwise).
    #[inline(always)]
    fn widen(stored: &[Self], values: &mut [Self::Value], f16c: bool) -> bool {
        let _ = f16c;
        for (value, &x) in values.iter_mut().zip(stored) {
            *value = x.value();
        }
        true
    }
}

impl Stored for f32 {
    type Value = f32;
    #[inline(always)]
    fn value(self) -> f32 {
        self
    }
    #[inline(always)]
    fn as_f32(stored: &[Self]) -> Option<&[f32]> {
        Some(stored)
    }
}

impl Stored for f64 {
    type Value = f64;
    #[inline(always)]
    fn value(self) -> f64 {
        self
    }
}

impl Stored for half::f16 {
    type Value = f32;
    /// Measured on Zen 4 against tiles of 8 (one thread): 0.86-0.90x on binary, two-column and
    /// multilabel float16 files; float32 was even (0.95-1.0x) and float64 pairs 1.3x slower.
    const TILE: usize = MAX_TILE;
    /// The folds' two range tests a value were about a tenth of the two-column tile loop's
    /// instructions; without them, measured on Zen 4: 0.96-0.98x (binary, two-column and
    /// multilabel float16 files, one and two threads).
    const WIDEN_VALIDATES: bool = true;
    #[inline(always)]
    fn value(self) -> f32 {
        clamp_f16(f16_to_f32(self.to_bits()))
    }
    #[inline(always)]
    fn as_f16(stored: &[Self]) -> Option<&[half::f16]> {
        Some(stored)
    }
    #[inline(always)]
    fn widen(stored: &[Self], values: &mut [f32], f16c: bool) -> bool {
        assert_eq!(stored.len(), values.len());
        #[cfg(target_arch = "x86_64")]
        if f16c && stored.len().is_multiple_of(8) {
            use std::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_cmpeq_epi16, _mm_loadu_si128, _mm_max_epu16, _mm_movemask_epi8, _mm_set1_epi16};
            // every value in [+0, 1] (see `F16_ONE_BITS`): nothing to clamp, the common case
            let one = F16_ONE_BITS as i16;
            let mut inside = true;
            for (from, into) in stored.chunks_exact(8).zip(values.chunks_exact_mut(8)) {
                // SAFETY: F16C (and so SSE4.1) is present (`f16c`); 8 values each side (whole chunks)
                unsafe {
                    let bits = _mm_loadu_si128(from.as_ptr().cast::<__m128i>());
                    inside &= _mm_movemask_epi8(_mm_cmpeq_epi16(_mm_max_epu16(bits, _mm_set1_epi16(one)), _mm_set1_epi16(one))) == 0xffff;
                    _mm256_storeu_ps(into.as_mut_ptr(), _mm256_cvtph_ps(bits));
                }
            }
            // the common case needs no test of its own: every value is in [+0, 1]
            if !inside {
                for value in values.iter_mut() {
                    *value = clamp_f16_tile(*value);
                }
                return all_probabilities(values);
            }
            return true;
        }
        for (value, &x) in values.iter_mut().zip(stored) {
            *value = x.value();
        }
        all_probabilities(values)
    }
}

/// A one-column row's gold label as stored: a class index (binary, `[0, 2)`, checked by the
/// plan) or a 0/1 target (multilabel), read in place rather than through a per-block copy.
pub(super) trait GoldBit: Copy + Send + Sync + 'static {
    fn bit(self) -> u8;
}

impl GoldBit for u8 {
    #[inline(always)]
    fn bit(self) -> u8 {
        self
    }
}

impl GoldBit for i64 {
    #[inline(always)]
    fn bit(self) -> u8 {
        self as u8
    }
}

struct BinaryRows<'g, G> {
    gold: &'g [G],
    rule: Rule,
}

impl<F: Float, G: GoldBit> Rows<F> for BinaryRows<'_, G> {
    const ROW_LEN: usize = 1;
    const MULTICLASS: bool = false;
    type Gold = u8;
    #[inline(always)]
    fn gold(&self, t: usize) -> u8 {
        self.gold[t].bit()
    }
    #[inline(always)]
    fn gold_at(&self, t: usize) -> *const u8 {
        self.gold.as_ptr().wrapping_add(t).cast()
    }
    #[inline(always)]
    fn fold(&self, row: &[F], gold: u8, k: u32, acc: &mut impl UnitState, j: usize) -> bool {
        binary_step(row[0], gold, k, self.rule, acc, j)
    }
    /// Float16 and float32 tiles go to [`singles::tile`] where the clone has AVX-512 (which it
    /// is only picked for with AVX-512BW, VL and F16C too).
    #[inline(always)]
    fn own_tile<S: Stored>(&self, data: &[S], stream: &Stream, start: usize, t: usize, n: f64, divisor: f64, isa: Isa, into: &mut OutBlock<'_>) -> bool {
        #[cfg(target_arch = "x86_64")]
        if isa.avx512 {
            // SAFETY (both): the calling clone has AVX-512F, BW, VL and F16C (`isa`, above)
            macro_rules! single_tile {
                ($ty:ty, $w:literal, $rows:expr) => {{
                    let gold = &self.gold[t..t + $w];
                    match (self.rule.argmax, self.rule.first_index) {
                        (true, true) => singles::tile::<$ty, G, $w, true, true>($rows, stream, start + t, gold, self.rule, n, divisor, PREFETCH_BYTES, into),
                        (true, false) => singles::tile::<$ty, G, $w, true, false>($rows, stream, start + t, gold, self.rule, n, divisor, PREFETCH_BYTES, into),
                        (false, _) => singles::tile::<$ty, G, $w, false, false>($rows, stream, start + t, gold, self.rule, n, divisor, PREFETCH_BYTES, into),
                    }
                }};
            }
            if let (Some(halves), 16) = (S::as_f16(data), S::TILE) {
                return unsafe { single_tile!(half::f16, 16, halves) };
            }
            if let (Some(floats), 8) = (S::as_f32(data), S::TILE) {
                return unsafe { single_tile!(f32, 8, floats) };
            }
        }
        let _ = (data, stream, start, t, n, divisor, isa, into);
        false
    }
}

struct TwoClassRows<'g> {
    classes: &'g [i64],
    rule: Rule,
}

impl<F: Float> Rows<F> for TwoClassRows<'_> {
    const ROW_LEN: usize = 2;
    const MULTICLASS: bool = true;
    type Gold = i64;
    #[inline(always)]
    fn gold(&self, t: usize) -> i64 {
        self.classes[t]
    }
    #[inline(always)]
    fn gold_at(&self, t: usize) -> *const u8 {
        self.classes.as_ptr().wrapping_add(t).cast()
    }
    #[inline(always)]
    fn fold(&self, row: &[F], gold: i64, k: u32, acc: &mut impl UnitState, j: usize) -> bool {
        two_class_step(row[0], row[1], gold, k, self.rule, acc, j)
    }
    /// Float16 and float32 tiles go to [`pairs::tile`] where the clone has AVX-512 (which it
    /// is only picked for with AVX-512BW, VL and F16C too).
    #[inline(always)]
    fn own_tile<S: Stored>(&self, data: &[S], stream: &Stream, start: usize, t: usize, n: f64, divisor: f64, isa: Isa, into: &mut OutBlock<'_>) -> bool {
        #[cfg(target_arch = "x86_64")]
        if isa.avx512 {
            // SAFETY (both): the calling clone has AVX-512F, BW, VL and F16C (`isa`, above)
            macro_rules! pair_tile {
                ($ty:ty, $w:literal, $rows:expr) => {
                    if self.rule.first_index {
                        pairs::tile::<$ty, $w, true>($rows, stream, start + t, &self.classes[t..t + $w], self.rule, n, divisor, PREFETCH_BYTES, into)
                    } else {
                        pairs::tile::<$ty, $w, false>($rows, stream, start + t, &self.classes[t..t + $w], self.rule, n, divisor, PREFETCH_BYTES, into)
                    }
                };
            }
            if let (Some(halves), 16) = (S::as_f16(data), S::TILE) {
                return unsafe { pair_tile!(half::f16, 16, halves) };
            }
            if let (Some(singles), 8) = (S::as_f32(data), S::TILE) {
                return unsafe { pair_tile!(f32, 8, singles) };
            }
        }
        let _ = (data, stream, start, t, n, divisor, isa, into);
        false
    }
}

/// A whole block of one-column rows, tile by tile (see [`tile`]).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
pub(super) fn tiled_binary<'o, S: Stored, G: GoldBit>(data: &[S], stream: &Stream, gold: &[G], rule: Rule, n: f64, divisor: f64, out: &mut OutBlock<'o>) -> bool {
    tiles(data, stream, &BinaryRows { gold: &gold[..out.len()], rule }, n, divisor, isa!(), out)
}

/// A whole block of two-column rows, tile by tile (see [`tile`]).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
pub(super) fn tiled_two_class<'o, S: Stored>(data: &[S], stream: &Stream, classes: &[i64], rule: Rule, n: f64, divisor: f64, out: &mut OutBlock<'o>) -> bool {
    tiles(data, stream, &TwoClassRows { classes: &classes[..out.len()], rule }, n, divisor, isa!(), out)
}

/// Full tiles of [`Stored::TILE`] units, then the remainder one unit at a time.
#[inline(always)]
fn tiles<S: Stored, R: Rows<S::Value>>(data: &[S], stream: &Stream, rows: &R, n: f64, divisor: f64, isa: Isa, out: &mut OutBlock<'_>) -> bool {
    const { assert!(S::TILE == TILE || S::TILE == MAX_TILE) };
    let (start, len) = (out.start, out.len());
    let mut valid = true;
    let mut t = 0;
    while t + S::TILE <= len {
        prefetch_gold(rows, t, S::TILE);
        if rows.own_tile(data, stream, start, t, n, divisor, isa, &mut out.window(t, S::TILE)) {
            t += S::TILE;
            continue;
        }
        // (a const generic cannot be `S::TILE` itself: one branch is compiled away)
        valid &= if S::TILE == MAX_TILE {
            tile::<S, MAX_TILE, R>(data, stream, start, t, rows, n, divisor, isa, &mut out.window(t, MAX_TILE))
        } else {
            tile::<S, TILE, R>(data, stream, start, t, rows, n, divisor, isa, &mut out.window(t, TILE))
        };
        t += S::TILE;
    }
    while t < len {
        valid &= tile::<S, 1, R>(data, stream, start, t, rows, n, divisor, isa, &mut out.window(t, 1));
        t += 1;
    }
    valid
}

/// `W` units from block offset `t` walk every epoch of the window, their accumulators in
/// local arrays the compiler keeps in registers, then write their outputs to `into` (`W` units
/// long): the data is read once and no accumulator ever goes to memory. Each unit sees the
/// same operations in the same order as on the epoch-major path, so both give identical
/// results.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<S: Stored, const W: usize, R: Rows<S::Value>>(
    data: &[S],
    stream: &Stream,
    start: usize,
    t: usize,
    rows: &R,
    n: f64,
    divisor: f64,
    isa: Isa,
    into: &mut OutBlock<'_>,
) -> bool {
    let mut acc = TileAcc::<W>::new();
    let gold: [R::Gold; W] = std::array::from_fn(|j| rows.gold(t + j));
    // validity per unit, reduced once after the walk: a single flag and-ed every epoch is a
    // loop-carried trip from mask register to integer register and back, which was the tile
    // loop's critical path
    let mut ok = [1u32; W];
    for (k, e) in stream.epochs.clone().enumerate() {
        let at = e * stream.epoch_len + (start + t) * R::ROW_LEN;
        let tile_rows = &data[at..at + W * R::ROW_LEN];
        // every line of the tile's rows `PREFETCH_BYTES` on (two for float64 pairs)
        prefetch_lines(tile_rows.as_ptr(), std::mem::size_of_val(tile_rows), PREFETCH_BYTES);
        let mut values = [<S::Value as Float>::ZERO; 2 * MAX_TILE];
        let values = &mut values[..tile_rows.len()];
        let widened = S::widen(tile_rows, values, isa.f16c);
        if S::WIDEN_VALIDATES {
            // false only on the rare branch that clamps, so this is no chain through the loop
            ok[0] &= widened as u32;
        }
        for (j, row) in values.chunks_exact(R::ROW_LEN).enumerate() {
            let fine = rows.fold(row, gold[j], k as u32, &mut acc, j);
            if !S::WIDEN_VALIDATES {
                ok[j] &= fine as u32;
            }
        }
    }
    let valid = ok.iter().fold(1, |all, &o| all & o) == 1;
    // SAFETY: `isa` is the calling clone's (`isa!`)
    unsafe { finish_tile(&mut acc, into, n, divisor, R::MULTICLASS, isa.avx512) };
    valid
}

/// Write a tile's outputs from its state to `into` (`W` units): into local arrays first, then
/// 64-byte copies (streamed past the cache with `avx512`, see [`TileOut::stream_to`]): stores
/// through the block's slices may alias anything as far as the compiler knows, which kept
/// `finish` scalar.
///
/// # Safety
/// `avx512` only where the CPU has AVX-512F.
#[inline(always)]
pub(super) unsafe fn finish_tile<const W: usize>(acc: &mut TileAcc<W>, into: &mut OutBlock<'_>, n: f64, divisor: f64, multiclass: bool, avx512: bool) {
    let mut local = TileOut::<W>::new();
    finish(&acc.slices(), &mut local.block(), n, divisor, multiclass);
    // SAFETY: AVX-512F is present with `avx512` (the caller's), and `finish` wrote all `W` units
    unsafe { local.stream_to(into, avx512) };
}

/// Prefetch the gold labels of the `w` units from block offset `t`, [`GOLD_AHEAD`] units on.
#[inline(always)]
fn prefetch_gold<F, R: Rows<F>>(rows: &R, t: usize, w: usize) {
    let from = rows.gold_at(t);
    let bytes_to = |u: usize| rows.gold_at(u) as usize - from as usize;
    prefetch_lines(from, bytes_to(t + w), bytes_to(t + GOLD_AHEAD));
}

/// Hint the cache to fetch every 64-byte line of the `bytes` from `start`, `ahead` bytes on.
#[inline(always)]
pub(super) fn prefetch_lines<T>(start: *const T, bytes: usize, ahead: usize) {
    let mut line = 0;
    while line < bytes {
        prefetch(start.cast::<u8>().wrapping_add(line), ahead);
        line += 64;
    }
}

/// Hint the cache to fetch the line `ahead` bytes past `at` (a hint: it never faults).
#[inline(always)]
pub(super) fn prefetch<T>(at: *const T, ahead: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; any address is allowed, even an unmapped one.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>().wrapping_add(ahead));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, ahead);
}

/// Turn one block's accumulators into its outputs. (Ordinary stores: streaming them a tile at a
/// time, as the tiled path does, measured 2-16% slower on multiclass files of 10 and 28 columns,
/// where the time goes to the rows, not to the outputs.)
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
pub(super) fn finalize<'o>(acc: &mut Accumulators, out: &mut OutBlock<'o>, n: f64, divisor: f64, multiclass: bool) {
    let len = out.len();
    finish(&acc.slices(len), &mut out.slices(len), n, divisor, multiclass);
}

/// Write the outputs of `a.len()` units from their accumulators (`o` cut to the same length).
#[inline(always)]
pub(super) fn finish(a: &AccSlices<'_>, o: &mut OutBlock<'_>, n: f64, divisor: f64, multiclass: bool) {
    let len = a.shift.len();
    let (inv_n, inv_divisor) = (1.0 / n, 1.0 / divisor);
    // one simple loop per group of outputs, so each vectorizes
    for i in 0..len {
        // shifted sums: d = p - shift, so the mean and variance lose no precision to cancellation
        let mean_d = a.sum_d[i] * inv_n;
        let confidence = a.shift[i] + mean_d;
        let m2 = (a.sum_d2[i] - a.sum_d[i] * mean_d).max(0.0);
        let closeness = confidence * (1.0 - confidence);
        o.confidence[i].write(confidence);
        o.variability[i].write((m2 * inv_divisor).sqrt());
        o.threshold_closeness[i].write(closeness);
        // mean p(1 - p) = mean p - mean p^2 = confidence (1 - confidence) - population variance
        o.aleatoric[i].write((closeness - m2 * inv_n).max(0.0));
    }
    for i in 0..len {
        // a division, not a reciprocal product: count / n must equal the reference exactly
        o.correctness[i].write(a.right[i] as f64 / n);
        o.forgetting[i].write(a.forgetting[i] as i32);
        o.never_learned[i].write(a.right[i] == 0);
        o.first_learned[i].write(if a.last_right[i] != 0 { a.last_wrong[i] + 1 } else { -1 });
    }
    if multiclass {
        for i in 0..len {
            o.margin[i].write(a.margin_sum[i] * inv_n);
            o.el2n[i].write(a.el2n_sum[i] * inv_n);
        }
    } else {
        // p - (1 - p) and |p - y| sqrt 2 = (1 - p) sqrt 2 are linear in p
        for i in 0..len {
            let confidence = a.shift[i] + a.sum_d[i] * inv_n; // as above, bit for bit
            o.margin[i].write(2.0 * confidence - 1.0);
            o.el2n[i].write((1.0 - confidence) * std::f64::consts::SQRT_2);
        }
    }
}

/// The largest value of `values`, each read as u64 (negative numbers become huge).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
pub(super) fn max_as_u64(values: &[i64]) -> u64 {
    values.iter().fold(0u64, |max, &v| max.max(v as u64))
}

/// Rows summarized side by side by the multiclass kernel: one vector lane per row, so the
/// max and the sum of squares of each row are vertical operations, never a horizontal reduction.
const ROW_GROUP: usize = 8;
/// The widest rows summarized in row groups; wider ones go one row at a time. Measured on
/// Zen 4 (AVX-512): row groups win by ~20% at 4-10 columns, are even at 12-14 and lose from
/// 16 up (their loads are strided, a gather per column), 1.4x slower at 28.
const ROW_GROUP_MAX_LEN: usize = 10;
/// The narrowest rows the AVX-512 summary ([`avx512`]) takes, where the machine has it.
const AVX512_MIN_LEN: usize = 3;

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
pub(super) fn multiclass<F: Float>(values: &[F], row_len: usize, classes: &[i64], k: u32, rule: Rule, acc: &mut Accumulators) -> bool {
    let n = values.len() / row_len;
    let classes = &classes[..n];
    // Pass 1, across each row: the gold probability and the others' max and sum of squares,
    // `ROW_GROUP` rows at a time. Pass 2, down the block: verdicts, margins, square roots and
    // accumulator updates, a plain loop over arrays that vectorizes.
    let (mut slices, rows) = acc.slices_and_rows(n);
    let summaries = Summaries { p_gold: &mut rows.p_gold[..n], other: &mut rows.other[..n], others_sq: &mut rows.others_sq[..n], gold_first: &mut rows.gold_first[..n] };
    let valid = if avx512_rows(row_len) {
        let valid = F::summarize_avx512(values, row_len, classes, summaries.p_gold, summaries.other, summaries.others_sq);
        if rule.first_index {
            gold_first_flags(values, row_len, classes, summaries.p_gold, summaries.other, summaries.gold_first, F::to_f64);
        }
        valid
    } else if row_len > ROW_GROUP_MAX_LEN {
        summarize_wide_rows(values, row_len, classes, rule.first_index, summaries)
    } else if rule.first_index { summarize_rows::<F, true>(values, row_len, classes, summaries) } else { summarize_rows::<F, false>(values, row_len, classes, summaries) };
    fold_summaries(&mut slices, rows, n, k, rule);
    valid
}

/// [`multiclass`] for float16 rows, read as they are by the AVX-512 summary (widened and
/// clamped within float16's tolerance in registers, as [`widen_f16`] would): no widened copy.
/// Only where [`avx512::available`] and for rows of at least [`AVX512_MIN_LEN`] columns.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
pub(super) fn multiclass_f16(values: &[half::f16], row_len: usize, classes: &[i64], k: u32, rule: Rule, acc: &mut Accumulators) -> bool {
    let n = values.len() / row_len;
    let classes = &classes[..n];
    let (mut slices, rows) = acc.slices_and_rows(n);
    let valid = avx512::summarize_f16(values, row_len, classes, &mut rows.p_gold[..n], &mut rows.other[..n], &mut rows.others_sq[..n]);
    if rule.first_index {
        gold_first_flags(values, row_len, classes, &rows.p_gold[..n], &rows.other[..n], &mut rows.gold_first[..n], |x| clamp_f16(f16_to_f32(x.to_bits())) as f64);
    }
    fold_summaries(&mut slices, rows, n, k, rule);
    valid
}

/// Under the first-index rule, per row: whether no column before gold holds gold's value
/// (`p_gold`, the summary's; the columns as `value` reads them), so that a tie at the top goes
/// to gold. Only looked at when gold ties the others' max (`other`), so a row is only read then.
#[inline(always)]
pub(super) fn gold_first_flags<T: Copy>(values: &[T], row_len: usize, classes: &[i64], p_gold: &[f64], other: &[f64], gold_first: &mut [bool], value: impl Fn(T) -> f64) {
    for (i, row) in values.chunks_exact(row_len).enumerate() {
        let p = p_gold[i];
        gold_first[i] = p != other[i] || !row[..classes[i] as usize].iter().any(|&x| value(x) == p);
    }
}

/// Which multiclass rows the AVX-512 summary takes on this machine.
pub(super) fn avx512_rows(row_len: usize) -> bool {
    row_len >= AVX512_MIN_LEN && avx512::available()
}

/// Pass 2 of the multiclass kernels, down the block: verdicts, margins, square roots and
/// accumulator updates from pass 1's per-row summaries, a plain loop over arrays that vectorizes.
#[inline(always)]
fn fold_summaries(slices: &mut AccSlices<'_>, rows: &RowSummaries, n: usize, k: u32, rule: Rule) {
    let (p_gold, other, others_sq, gold_first) = (&rows.p_gold[..n], &rows.other[..n], &rows.others_sq[..n], &rows.gold_first[..n]);
    for i in 0..n {
        multiclass_step(p_gold[i], other[i], others_sq[i], gold_first[i], k, rule, slices, i);
    }
}

/// Fold unit `i`'s multiclass row at window epoch `k` from its summary: the gold probability
/// `p`, the others' max `q` and sum of squares; `gold_first` (looked at under the first-index
/// rule only): no column before gold holds gold's value.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn multiclass_step(p: f64, q: f64, others_sq: f64, gold_first: bool, k: u32, rule: Rule, acc: &mut impl UnitState, i: usize) {
    let tie_won = rule.first_index & (p == q) & gold_first;
    let right = if rule.argmax { (p > q) | tie_won } else { p >= rule.threshold };
    fold_verdict(p, q, others_sq, right, k, acc, i);
}

/// Fold unit `i`'s epoch `k` once its verdict is known, for every multiclass row: the gold
/// probability `p`, the others' max `q` and sum of squares. EL2N's squared distance is
/// `others_sq + (1 - p)²`, fused (one rounding).
#[inline(always)]
fn fold_verdict(p: f64, q: f64, others_sq: f64, right: bool, k: u32, acc: &mut impl UnitState, i: usize) {
    let miss = 1.0 - p;
    acc.add_terms(i, p - q, miss.mul_add(miss, others_sq).sqrt());
    acc.update(i, k, p, right);
}

/// Pass 1's outputs, one entry per row.
struct Summaries<'a> {
    p_gold: &'a mut [f64],
    other: &'a mut [f64],
    others_sq: &'a mut [f64],
    gold_first: &'a mut [bool],
}

/// Every row of `values` summarized, in groups of `ROW_GROUP` rows then one at a time.
#[inline(always)]
fn summarize_rows<F: Float, const FIRST_INDEX: bool>(values: &[F], row_len: usize, classes: &[i64], mut out: Summaries<'_>) -> bool {
    let n = classes.len();
    let mut valid = true;
    let mut i = 0;
    while i + ROW_GROUP <= n {
        valid &= row_group::<F, ROW_GROUP, FIRST_INDEX>(&values[i * row_len..(i + ROW_GROUP) * row_len], row_len, &classes[i..i + ROW_GROUP], &mut out, i);
        i += ROW_GROUP;
    }
    while i < n {
        valid &= row_group::<F, 1, FIRST_INDEX>(&values[i * row_len..(i + 1) * row_len], row_len, &classes[i..i + 1], &mut out, i);
        i += 1;
    }
    valid
}

/// Summarize `R` consecutive rows, walking their columns together: the gold probability, the
/// max and float64 sum of squares of the other columns (summed in column order), and, under
/// the first-index rule, whether no column before gold holds gold's value.
///
/// The gold column counts as zero in the max and the sum: every value is in [0, 1] (checked in
/// the same loop, the summaries are thrown away otherwise), so a zero changes neither.
#[inline(always)]
fn row_group<F: Float, const R: usize, const FIRST_INDEX: bool>(group: &[F], row_len: usize, classes: &[i64], out: &mut Summaries<'_>, at: usize) -> bool {
    assert!(group.len() == R * row_len && classes.len() == R);
    // 32-bit lanes throughout (column indices, validity and tie flags as u32 beside the
    // float32 values), so the compares and selects stay in one vector width and never pack.
    // classes were checked to lie in [0, row_len), and row groups take rows of few columns
    let gold: [u32; R] = std::array::from_fn(|r| classes[r] as u32);
    let p: [F; R] = std::array::from_fn(|r| group[r * row_len + gold[r] as usize]);
    let mut max = [F::ZERO; R];
    let mut squares = [0.0f64; R];
    let mut ok = [1u32; R];
    for c in 0..row_len {
        let column = c as u32;
        for r in 0..R {
            // SAFETY: r < R and c < row_len, and `group` holds R rows of row_len (asserted above)
            let x = unsafe { *group.get_unchecked(r * row_len + c) };
            ok[r] &= x.is_probability() as u32;
            let x = if column == gold[r] { F::ZERO } else { x };
            max[r] = if x > max[r] { x } else { max[r] };
            let xf = x.to_f64();
            squares[r] += xf * xf;
        }
    }
    for r in 0..R {
        out.p_gold[at + r] = p[r].to_f64();
        out.other[at + r] = max[r].to_f64();
        out.others_sq[at + r] = squares[r];
        if FIRST_INDEX {
            // read only when gold ties the others' max (rare): then no column before gold may
            // hold gold's value, looked up here rather than tracked in the loop above
            let row = &group[r * row_len..(r + 1) * row_len];
            out.gold_first[at + r] = p[r] != max[r] || !row[..gold[r] as usize].iter().any(|&x| x == p[r]);
        }
    }
    ok.iter().fold(1, |all, &o| all & o) == 1
}

/// Every row of `values` summarized one at a time, across the row in vector-wide chunks
/// (wide rows, where the row-group walk's strided loads cost more than one reduction per row):
/// 16 lanes (one AVX-512 register of float32) from 16 columns up, 8 below. Both element types
/// take the same lanes, so float32 and float64 rows of the same values sum in the same order.
#[inline(always)]
fn summarize_wide_rows<F: Float>(values: &[F], row_len: usize, classes: &[i64], first_index: bool, out: Summaries<'_>) -> bool {
    if row_len >= 16 {
        summarize_rows_in_lanes::<F, 16>(values, row_len, classes, first_index, out)
    } else {
        summarize_rows_in_lanes::<F, 8>(values, row_len, classes, first_index, out)
    }
}

#[inline(always)]
fn summarize_rows_in_lanes<F: Float, const LANES: usize>(values: &[F], row_len: usize, classes: &[i64], first_index: bool, out: Summaries<'_>) -> bool {
    let mut valid = true;
    for (i, row) in values.chunks_exact(row_len).enumerate() {
        let gold = classes[i] as usize;
        let p = row[gold];
        let (max, squares, ok) = masked_summary::<F, LANES>(row, gold);
        valid &= ok & p.is_probability();
        // float32 -> float64 is exact, so comparing in float64 keeps ties as ties
        out.p_gold[i] = p.to_f64();
        out.other[i] = max.to_f64();
        out.others_sq[i] = squares;
        if first_index {
            // only read when gold ties the others' max, so no column before gold is larger
            out.gold_first[i] = !row[..gold].contains(&p);
        }
    }
    valid
}

/// (max and float64 sum of squares over the columns other than `gold`, all values in [0, 1])
/// of a row of at least `LANES` columns.
///
/// The row goes by in whole chunks of `LANES` columns; a last partial chunk is read as the
/// row's last `LANES` columns, its lanes already counted masked out. The gold column is
/// masked the same way, by a lane-index compare: since every value is in [0, 1] (checked in
/// the same loop), a zero changes neither the max nor the sum of squares, and the loop has no
/// data-dependent branch. The lanes are reduced in a fixed tree, so the sum is deterministic.
#[inline(always)]
fn masked_summary<F: Float, const LANES: usize>(row: &[F], gold: usize) -> (F, f64, bool) {
    let len = row.len();
    debug_assert!(len >= LANES);
    let gold = gold as u32;
    let mut max = [F::ZERO; LANES];
    let mut squares = [0.0f64; LANES];
    let mut ok = [1u32; LANES];
    let mut fold = |chunk: &[F; LANES], first: u32, fresh_from: u32| {
        for lane in 0..LANES {
            let x = chunk[lane];
            ok[lane] &= x.is_probability() as u32;
            let column = first + lane as u32;
            let x = if (column >= fresh_from) & (column != gold) { x } else { F::ZERO };
            max[lane] = if x > max[lane] { x } else { max[lane] };
            let xf = x.to_f64();
            squares[lane] += xf * xf;
        }
    };
    let whole = len / LANES;
    for c in 0..whole {
        let chunk: &[F; LANES] = row[c * LANES..(c + 1) * LANES].try_into().expect("a whole chunk");
        fold(chunk, (c * LANES) as u32, 0);
    }
    if !len.is_multiple_of(LANES) {
        let chunk: &[F; LANES] = row[len - LANES..].try_into().expect("the last LANES columns");
        fold(chunk, (len - LANES) as u32, (whole * LANES) as u32);
    }
    let mut width = LANES / 2;
    while width > 0 {
        for lane in 0..width {
            max[lane] = if max[lane + width] > max[lane] { max[lane + width] } else { max[lane] };
            squares[lane] += squares[lane + width];
            ok[lane] &= ok[lane + width];
        }
        width /= 2;
    }
    (max[0], squares[0], ok[0] == 1)
}

/// The element types the kernels run on (float16 is widened to float32 first, and clamped
/// within its own, wider, tolerance while it is widened: see `F16_TOLERANCE`).
pub trait Float: Copy + PartialOrd + Send + Sync + 'static {
    const ZERO: Self;
    /// How far outside [0, 1] a stored value may lie and still be taken (clamped into [0, 1])
    /// as a probability: four units in the last place of 1.0 (4 epsilon): float rounding in a
    /// softmax or a sum. The kernels themselves only see values in [0, 1].
    const TOLERANCE: f64;
    fn to_f64(self) -> f64;
    /// in [0, 1] (false for NaN)
    fn is_probability(self) -> bool;
    /// in [-TOLERANCE, 1 + TOLERANCE] (false for NaN)
    fn within_tolerance(self) -> bool;
    /// the value clamped into [0, 1] (NaN stays NaN)
    fn clamp_unit(self) -> Self;
    /// Pass 1 of the multiclass kernel in AVX-512 (see [`avx512::summarize_f32`]); only
    /// called where [`avx512::available`].
    #[doc(hidden)]
    fn summarize_avx512(values: &[Self], row_len: usize, classes: &[i64], p_gold: &mut [f64], other: &mut [f64], others_sq: &mut [f64]) -> bool;
}

/// float16's tolerance, 4 epsilon = 4 * 2^-10: applied while float16 data is widened.
pub const F16_TOLERANCE: f32 = 4.0 * 0.000_976_562_5;
/// The bits of float16's 1.0. A float16 lies in [+0, 1] exactly when its bits, read as an
/// unsigned integer, are at most these (-0.0, NaN and everything negative or above 1 are
/// larger), and such values are ordered as their bits: the fast paths check and compare
/// stored float16 values as integers, and leave the rest to the exact, clamping path.
pub(super) const F16_ONE_BITS: u16 = 0x3c00;

macro_rules! float_impl {
    ($t:ty, $summarize:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const TOLERANCE: f64 = 4.0 * <$t>::EPSILON as f64;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            #[allow(clippy::manual_range_contains)] // `&`, not `&&`: no branch, so the loops vectorize
            fn is_probability(self) -> bool {
                // false for NaN as well
                (self >= 0.0) & (self <= 1.0)
            }
            #[inline(always)]
            #[allow(clippy::manual_range_contains)]
            fn within_tolerance(self) -> bool {
                (self >= -(4.0 * <$t>::EPSILON)) & (self <= 1.0 + 4.0 * <$t>::EPSILON)
            }
            #[inline(always)]
            fn clamp_unit(self) -> Self {
                // NaN fails both compares and stays NaN
                let low = if self < 0.0 { 0.0 } else { self };
                if low > 1.0 {
                    1.0
                } else {
                    low
                }
            }
            #[inline]
            fn summarize_avx512(values: &[Self], row_len: usize, classes: &[i64], p_gold: &mut [f64], other: &mut [f64], others_sq: &mut [f64]) -> bool {
                $summarize(values, row_len, classes, p_gold, other, others_sq)
            }
        }
    };
}

float_impl!(f32, avx512::summarize_f32);
float_impl!(f64, avx512::summarize_f64);

/// float16 bits to float32, exactly, in branch-free integer steps that vectorize (`half`'s
/// slice conversion dispatched at run time and did not inline into the kernels' instruction sets).
#[inline(always)]
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let magnitude = h & 0x7fff;
    // normal numbers: the exponent rebiased from 15 to 127, the mantissa moved up 13 bits
    let normal = (magnitude << 13) + ((127 - 15) << 23);
    // infinities and NaNs: the exponent all ones, the mantissa (NaN payload) kept
    let special = (magnitude << 13) | 0x7f80_0000;
    // zero and subnormals: magnitude * 2^-24, exact in float32
    let small = (magnitude as f32 * (1.0 / 16_777_216.0)).to_bits();
    let bits = if magnitude < 0x0400 {
        small
    } else if magnitude >= 0x7c00 {
        special
    } else {
        normal
    };
    f32::from_bits(bits | sign)
}

/// One widened float16 value clamped within float16's tolerance (see [`widen_f16`]).
#[inline(always)]
pub(super) fn clamp_f16(v: f32) -> f32 {
    let low = if (-F16_TOLERANCE..0.0).contains(&v) { 0.0 } else { v };
    if low > 1.0 && low <= 1.0 + F16_TOLERANCE {
        1.0
    } else {
        low
    }
}

/// [`clamp_f16`] as the tiles need it, in fewer vector operations: the same value within
/// float16's tolerance of [0, 1] (a -0.0 kept), and NaN beyond it (where [`clamp_f16`] leaves
/// the value as it is): either way not a probability, so the block is refused the same.
#[inline(always)]
#[allow(clippy::manual_range_contains)] // `&`, not `&&`: no branch, so the loops vectorize
fn clamp_f16_tile(v: f32) -> f32 {
    let within = (v >= -F16_TOLERANCE) & (v <= 1.0 + F16_TOLERANCE);
    // `0.0 > v` is false for -0.0, which stays as it is
    let low = if 0.0 > v { 0.0 } else { v };
    let clamped = if low > 1.0 { 1.0 } else { low };
    if within {
        clamped
    } else {
        f32::NAN
    }
}

/// Whether every value is in [0, 1] (one branch-free pass that vectorizes).
pub(super) fn all_probabilities<F: Float>(values: &[F]) -> bool {
    values.iter().fold(true, |ok, x| ok & x.is_probability())
}

/// Widen float16 values into `widened` (resized to fit), clamping those within float16's
/// tolerance into [0, 1] (values beyond it are left as they are, for the kernels to refuse):
/// one fused pass that vectorizes.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
pub(super) fn widen_f16(values: &[half::f16], widened: &mut Vec<f32>) {
    widened.resize(values.len(), 0.0);
    for (wide, x) in widened.iter_mut().zip(values) {
        *wide = x.value();
    }
}

#[cfg(test)]
mod tests {
    use half::f16;

    #[test]
    fn float16_widening_is_exact_for_every_bit_pattern() {
        for bits in 0..=u16::MAX {
            let (ours, theirs) = (super::f16_to_f32(bits), f16::from_bits(bits).to_f32());
            assert!(ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan()), "{bits:#06x}: {ours} vs {theirs}");
        }
    }

    /// The tiles' float16 widening (F16C, eight at a time, where the machine has it) gives
    /// exactly the portable widening and clamping for every bit pattern within float16's
    /// tolerance of [0, 1] (-0.0 included), and, like it, no probability for every other one.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn tile_widening_matches_the_portable_one_for_every_bit_pattern() {
        use super::{Stored, F16_TOLERANCE};
        let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        let f16c = std::arch::is_x86_feature_detected!("f16c");
        let probability = |x: f32| (0.0..=1.0).contains(&x);
        let within = |x: &f16| (-F16_TOLERANCE..=1.0 + F16_TOLERANCE).contains(&x.to_f32());
        // every pattern among its neighbours, and alone among probabilities (so that a chunk's
        // fast path, taken when all of it lies in [+0, 1], meets every pattern at its edge)
        let alone = all.iter().map(|&x| {
            let mut chunk = [f16::from_f32(0.5); 16];
            chunk[x.to_bits() as usize % 16] = x;
            chunk
        });
        for stored in all.chunks(16).map(|c| <[f16; 16]>::try_from(c).expect("whole chunks")).chain(alone) {
            let stored = &stored[..];
            let mut values = [0.0f32; 16];
            let valid = f16::widen(stored, &mut values, f16c);
            assert_eq!(valid, stored.iter().all(within), "{:#06x?}", stored.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            for (&x, &wide) in stored.iter().zip(&values) {
                let portable = x.value();
                if within(&x) {
                    assert_eq!(wide.to_bits(), portable.to_bits(), "{:#06x}: {wide} vs {portable}", x.to_bits());
                    assert!(probability(wide), "{:#06x}: {wide}", x.to_bits());
                } else {
                    assert!(!probability(wide) && !probability(portable), "{:#06x}: {wide} / {portable}", x.to_bits());
                }
            }
        }
        // a remainder tile (a row or two, not whole chunks) takes the portable widening, and
        // its answer must be the same
        for &x in &all {
            let (stored, mut values) = ([x, f16::from_f32(0.5)], [0.0f32; 2]);
            assert_eq!(f16::widen(&stored, &mut values, f16c), within(&x), "{:#06x}", x.to_bits());
        }
        if !f16c {
            eprintln!("note: no F16C on this machine, only the portable widening was checked");
        }
    }
}

#[cfg(test)]
#[path = "avx512_tests.rs"]
mod avx512_tests;
