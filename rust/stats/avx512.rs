//! The multiclass row summary (pass 1 of [`super::kernels::multiclass`]) in AVX-512, for
//! machines that have it.
//!
//! Each row goes by in 16-column chunks (masked loads, so any row length works and nothing past
//! the row is read); a row's lanes are folded vertically (a masked max, a masked float64
//! fused multiply-add of the squares), and eight rows are then reduced together by an
//! in-register transpose: 21 shuffles and operations for eight rows instead of a horizontal
//! reduction per row, which was most of the time of the portable version on wide rows.
//!
//! Float32 and float64 rows put the same column in the same lane and sum in the same order, so
//! both give the same bits for the same values (float16 is widened to float32 first).
//!
//! Float16 groups of eight rows take a fast path first: a float16 in [+0, 1] is one whose bits
//! are at most 1.0's, and such values are ordered as their bits, so the range check and the max
//! run on the stored 16-bit lanes and only the squares are widened. A group with any value
//! outside [+0, 1] is summarized again by the exact path (tolerance, clamp, refusal); where the
//! fast path answers, it gives the exact path's bits. Rows of up to 16 float16 columns are
//! regrouped there by word permutes into vectors of four columns of the eight rows (rows of 17
//! to 32 columns, on the tiled path, are read one load a row and transposed into the same
//! vectors), so each column is widened and squared once for the group, with no transpose at the
//! end (the sums of squares of
//! float16 values in [0, 1] are exact in float64 in any order: see [`columns_f16`]); the tiled
//! path works out what the permutes and masks need of a group's gold classes once for all its
//! epochs ([`F16Plan`]). Float32
//! rows of up to [`COLUMNS_F32_MAX`] columns take the same road two columns to a vector
//! ([`columns_f32`], its masks planned once a group too: [`F32Plan`]), adding the squares in
//! the exact path's order. Wider float32 rows and
//! float64 rows have a fast path too ([`bits_group`]): the range check and the max on the
//! bits, the squares as the exact path adds them.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
#[cfg(target_arch = "x86_64")]
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
use super::kernels::{self, clamp_f16, f16_to_f32, F16_ONE_BITS, F16_TOLERANCE};
use super::output::OutBlock;
#[cfg(target_arch = "x86_64")]
use super::lanes::Lanes8;
#[cfg(target_arch = "x86_64")]
use super::state::AccSlices;
use super::state::{Accumulators, Rule, Stream};

/// Rows reduced together: one float64 lane each.
const GROUP: usize = 8;
/// How far ahead of the row being read the cache is asked to fetch, on the epoch-major path
/// (one stream: a block's chunk of one epoch); the tiled path asks for
/// [`kernels::PREFETCH_BYTES`] ahead on each of its streams. Measured on Zen 4 against 2 KiB
/// (a process per build, 13-21 interleaved rounds, 1 / 2 threads): float32 `[10, 1M, 28]`
/// 0.93-0.97x / 0.94-1.00x, float64 `[10, 500k, 28]` 0.91-0.95x / 0.97-1.00x, float32
/// `[10, 200k, 100]` 0.98-1.00x / 0.96-0.97x. (2 KiB had been kept because 4 and 8 KiB made
/// thousand-column rows 1.1-1.2x slower; those now ask chunk by chunk, [`prefetch_chunk`].)
const AHEAD: usize = 4096;

/// Eight vectors in, one out whose lane `r` is `$op` over the eight lanes of `$rows[r]`, in the
/// fixed order ((0 1) (2 3)) ((4 5) (6 7)). A macro, not a function taking the operation: a
/// closure would not take on the caller's instruction set.
#[cfg(target_arch = "x86_64")]
macro_rules! transpose_reduce {
    ($rows:expr, $op:ident) => {{
        let rows = $rows;
        // block j of pair(x, y) = [x[2j] op x[2j+1], y[2j] op y[2j+1]] (blocks of 128 bits)
        macro_rules! pair {
            ($x:expr, $y:expr) => {
                $op(_mm512_unpacklo_pd($x, $y), _mm512_unpackhi_pd($x, $y))
            };
        }
        // blocks [x0 op x1, x2 op x3, y0 op y1, y2 op y3]
        macro_rules! quad {
            ($x:expr, $y:expr) => {
                $op(_mm512_shuffle_f64x2::<0b10_00_10_00>($x, $y), _mm512_shuffle_f64x2::<0b11_01_11_01>($x, $y))
            };
        }
        let (r01, r23, r45, r67) = (pair!(rows[0], rows[1]), pair!(rows[2], rows[3]), pair!(rows[4], rows[5]), pair!(rows[6], rows[7]));
        quad!(quad!(r01, r23), quad!(r45, r67))
    }};
}

/// Whether this machine runs the AVX-512 summary (checked once, then a cached load).
#[inline]
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vl") && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Per row of `values` (`classes.len()` rows of `row_len` columns): the gold probability, the
/// others' max and float64 sum of squares. False when a value is outside [0, 1] (NaN included),
/// and the summaries are then meaningless.
///
/// Panics unless [`available`] and the slices agree in length; class indices must lie in
/// `[0, row_len)` (checked by the plan; an index outside is clamped into the row, never read
/// past it).
pub(super) fn summarize_f32(values: &[f32], row_len: usize, classes: &[i64], p_gold: &mut [f64], other: &mut [f64], others_sq: &mut [f64]) -> bool {
    checked(values, row_len, classes, p_gold, other, others_sq)
}

/// [`summarize_f32`] for float64 rows (the same lanes and order: the same results).
pub(super) fn summarize_f64(values: &[f64], row_len: usize, classes: &[i64], p_gold: &mut [f64], other: &mut [f64], others_sq: &mut [f64]) -> bool {
    checked(values, row_len, classes, p_gold, other, others_sq)
}

/// [`summarize_f32`] for float16 rows, widened in registers and clamped within float16's
/// tolerance exactly as [`super::kernels::widen_f16`] does (the same results as the float32
/// summary of the widened rows).
pub(super) fn summarize_f16(values: &[half::f16], row_len: usize, classes: &[i64], p_gold: &mut [f64], other: &mut [f64], others_sq: &mut [f64]) -> bool {
    checked(values, row_len, classes, p_gold, other, others_sq)
}

/// The whole window for one block of multiclass float16 rows of 3 to 32 columns, group by group
/// of eight units, as the one- and two-column tiles walk theirs: each group's eight rows of
/// every epoch are summarized by the column path ([`columns_f16_planned`]) and folded into running
/// state held in registers, then its outputs are written by non-temporal stores. Between
/// epochs nothing goes through memory: the epoch-major path stores each row's summary, then
/// loads and stores every accumulator of the block, once per epoch. A long window may be walked
/// in parts ([`Lanes::tile_part`]), the block's groups through each part in turn, their state
/// kept in `saved` (the block's accumulators) between parts.
///
/// False when the path declines the block (nothing is then promised of its outputs: the
/// caller takes the epoch-major path, which writes them all): a block that is not whole groups,
/// a row width without a column path, or a group holding a value not in [+0, 1]. Where it
/// answers, each unit has seen the epoch-major path's operations in the same order: the same
/// bits. Under the first-index rule, a row whose gold ties the others' max is scanned for an
/// equal column before gold ([`tied_rows_gold_first`]), as the epoch-major path scans it.
///
/// `classes` holds the gold class of each unit of the block (the plan checked them); `out` is the block.
/// Panics unless [`available`].
#[allow(clippy::too_many_arguments)]
pub(super) fn tiled_f16(data: &[half::f16], stream: &Stream, row_len: usize, classes: &[i64], rule: Rule, n: f64, divisor: f64, saved: &mut Accumulators, out: &mut OutBlock<'_>) -> bool {
    tiled_checked(data, stream, row_len, classes, rule, n, divisor, saved, out)
}

/// [`tiled_f16`] for float32 rows of 3 to [`COLUMNS_F32_MAX`] columns ([`columns_f32`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn tiled_f32(data: &[f32], stream: &Stream, row_len: usize, classes: &[i64], rule: Rule, n: f64, divisor: f64, saved: &mut Accumulators, out: &mut OutBlock<'_>) -> bool {
    tiled_checked(data, stream, row_len, classes, rule, n, divisor, saved, out)
}

/// The checks the tiled path's memory safety rests on, then the path.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn tiled_checked<T: Lanes>(data: &[T], stream: &Stream, row_len: usize, classes: &[i64], rule: Rule, n: f64, divisor: f64, saved: &mut Accumulators, out: &mut OutBlock<'_>) -> bool {
    assert!(available() && row_len > 0 && stream.epochs.end * stream.epoch_len <= data.len());
    assert!(classes.len() == out.len() && (out.start + out.len()) * row_len <= stream.epoch_len);
    // SAFETY: AVX-512 is present; every slice is indexed with bounds checks (a group's values
    // and golds are cut from checked slices, the saved state of a group from `saved`'s slices)
    // and every gold index is clamped into its row
    unsafe { tiled::<T>(data, stream, row_len, classes, rule, n, divisor, saved, out) }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
fn tiled_checked<T>(_: &[T], _: &Stream, _: usize, _: &[i64], _: Rule, _: f64, _: f64, _: &mut Accumulators, _: &mut OutBlock<'_>) -> bool {
    unreachable!("the AVX-512 tiled path is only called where `available()`")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tiled<T: Lanes>(data: &[T], stream: &Stream, row_len: usize, classes: &[i64], rule: Rule, n: f64, divisor: f64, saved: &mut Accumulators, out: &mut OutBlock<'_>) -> bool {
    let len = out.len();
    // Float32 rows of more than 16 columns are not tiled: through the wide-row path
    // (`group_summary` of two chunks, as float16 rows of 17-32 columns were before their
    // column path), against epoch-major on Zen 4, they
    // measured 0.83-0.94x at 16-24 columns (`[10, 500k, L]`) and 28 (`[10, 1M, 28]`), but
    // 1.2-1.8x at 30-32 columns, at 28 columns with 2^20 examples, and with 50 epochs.
    if !len.is_multiple_of(GROUP) || row_len < 3 || row_len > T::COLUMNS {
        return false;
    }
    // a window of many epochs in parts, the groups' state kept in the block's accumulators
    // between them
    let part_epochs = T::tile_part(row_len, stream.epochs.len());
    let parts = part_epochs < stream.epochs.len();
    let saved = &mut saved.slices(if parts { len } else { 0 });
    macro_rules! widths {
        ($($width:literal)*) => {
            match row_len {
                // the rule's tie test compiled in only where it is asked for (in the loop,
                // a test of the rule at run time measured 1.12x slower on float32 10 columns)
                $($width if parts && rule.first_index => tile_parts::<T, $width, true>(data, stream, part_epochs, classes, rule, n, divisor, saved, out),
                $width if parts => tile_parts::<T, $width, false>(data, stream, part_epochs, classes, rule, n, divisor, saved, out),
                $width if rule.first_index => tile_groups::<T, $width, true, true, true>(data, stream, stream.epochs.clone(), classes, rule, n, divisor, saved, out),
                $width => tile_groups::<T, $width, false, true, true>(data, stream, stream.epochs.clone(), classes, rule, n, divisor, saved, out),)*
                _ => false,
            }
        };
    }
    widths!(3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32)
}

/// [`tiled`] for rows of `WIDTH` columns, under the first-index rule or not (`FIRST_INDEX`, the
/// rule's), over `epochs` (of the input), the window's or a part of it: each group's state
/// starts afresh (`FIRST`: the part starts the window) or from `saved`, and goes back to
/// `saved` or, after the window's `LAST` epoch, to the group's outputs. A function of its own per
/// width, not inlined: inlined, the thirty widths' locals made one stack frame that overflowed
/// a thread's stack in unoptimized builds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_groups<T: Lanes, const WIDTH: usize, const FIRST_INDEX: bool, const FIRST: bool, const LAST: bool>(data: &[T], stream: &Stream, epochs: Range<usize>, classes: &[i64], rule: Rule, n: f64, divisor: f64, saved: &mut AccSlices<'_>, out: &mut OutBlock<'_>) -> bool {
    if WIDTH > T::COLUMNS {
        return false;
    }
    assert_eq!(rule.first_index, FIRST_INDEX, "the tile compiled for the rule it is given");
    let rule = Rule { first_index: FIRST_INDEX, ..rule };
    let (start, len) = (out.start, out.len());
    let last_load: u16 = if WIDTH.is_multiple_of(16) { u16::MAX } else { (1u16 << (WIDTH % 16)) - 1 };
    // the window's index of the part's first epoch
    let k0 = epochs.start - stream.epochs.start;
    for t in (0..len).step_by(GROUP) {
        let mut state = if FIRST { Lanes8::new() } else { Lanes8::load(saved, t) };
        // the gold classes (one line a group) as far ahead as `kernels` prefetches its tiles'
        // gold: a group's plan needs them first (float16 10 columns: 0.97x with 2 threads; 28 even)
        let golds = classes.as_ptr().wrapping_add(t);
        kernels::prefetch_lines(golds, 8 * GROUP, std::mem::size_of::<i64>() * kernels::GOLD_AHEAD);
        let plan = T::tile_plan::<WIDTH>(classes, t);
        for (k, e) in epochs.clone().enumerate() {
            // (a part that starts the window starts at its epoch 0: known at compile time, so
            // that the loop is laid out as for a window in one part)
            let k = if FIRST { k } else { k0 + k };
            // the epoch's rows from the block's first on, so that unit `t` of the block is row `t`
            let epoch = &data[e * stream.epoch_len + start * WIDTH..(e + 1) * stream.epoch_len];
            let Some((gold, max, sum)) = T::tile_summary::<WIDTH>(epoch, t, classes, last_load, &plan) else {
                return false;
            };
            state.fold_multiclass(k, gold, max, sum, rule, || tied_rows_gold_first::<T, WIDTH>(&epoch[t * WIDTH..(t + GROUP) * WIDTH], &classes[t..t + GROUP], gold, max));
        }
        if !LAST {
            state.store(saved, t);
            continue;
        }
        state.finish(out, t, n, divisor, true);
    }
    true
}

/// [`tile_groups`] over a window in parts of at most `part_epochs` epochs (as even as they go; fewer
/// epochs than the window).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_parts<T: Lanes, const WIDTH: usize, const FIRST_INDEX: bool>(data: &[T], stream: &Stream, part_epochs: usize, classes: &[i64], rule: Rule, n: f64, divisor: f64, saved: &mut AccSlices<'_>, out: &mut OutBlock<'_>) -> bool {
    let epochs = stream.epochs.len();
    let part_len = epochs.div_ceil(epochs.div_ceil(part_epochs));
    let mut k0 = 0;
    while k0 < epochs {
        let part = stream.epochs.start + k0..stream.epochs.start + (k0 + part_len).min(epochs);
        // (the first part is never the last: there are two parts at least)
        let answered = match (k0 == 0, part.end == stream.epochs.end) {
            (true, _) => tile_groups::<T, WIDTH, FIRST_INDEX, true, false>(data, stream, part, classes, rule, n, divisor, saved, out),
            (false, false) => tile_groups::<T, WIDTH, FIRST_INDEX, false, false>(data, stream, part, classes, rule, n, divisor, saved, out),
            (false, true) => tile_groups::<T, WIDTH, FIRST_INDEX, false, true>(data, stream, part, classes, rule, n, divisor, saved, out),
        };
        if !answered {
            return false;
        }
        k0 += part_len;
    }
    true
}

/// The most epochs the tiled path walks a group of float32 rows (or of float16 rows of up to 16
/// columns in a long window, [`Lanes::tile_part`]) through before it moves on to the next
/// group: a group reads its rows of each epoch of the part, a stream per epoch, and float32
/// rows of 3-16 columns lost to the epoch-major path with many streams. Measured on
/// Zen 4 against the window in one part (`[E, 1M, 10]` float32, one and two threads): 0.76-0.79x
/// at 20 epochs, 0.63-0.65x at 50 (one part had been 1.35x the epoch-major path's time there);
/// even at 10 epochs (one part either way). Parts of 6 to 13 epochs measured alike at 50 epochs.
const TILE_EPOCHS: usize = 10;

/// The longest window of float16 rows of up to 16 columns that the tiled path walks in one part
/// ([`Lanes::tile_part`]).
const F16_PARTS_FROM: usize = 20;

/// Under the first-index rule, the rows of the group `rows` (its summary's `gold` and `max`)
/// whose gold is the first largest column, so that a tie at the top goes to gold: the
/// epoch-major path's flags ([`kernels::gold_first_flags`], reading the values as
/// [`Lanes::to_f64`] does, float16 clamped within its tolerance), asked only when a row ties.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn tied_rows_gold_first<T: Lanes, const WIDTH: usize>(rows: &[T], classes: &[i64], gold: __m512d, max: __m512d) -> __mmask8 {
    let (mut p_gold, mut other, mut first) = ([0.0; GROUP], [0.0; GROUP], [false; GROUP]);
    // SAFETY: eight float64 lanes each into arrays of eight (AVX-512F: the caller's tile runs only where it is present)
    unsafe {
        _mm512_storeu_pd(p_gold.as_mut_ptr(), gold);
        _mm512_storeu_pd(other.as_mut_ptr(), max);
    }
    kernels::gold_first_flags(rows, WIDTH, classes, &p_gold, &other, &mut first, T::to_f64);
    first.iter().enumerate().fold(0, |mask, (r, &f)| mask | (f as __mmask8) << r)
}

/// The checks the summary's memory safety rests on, then the summary.
#[cfg(target_arch = "x86_64")]
fn checked<T: Lanes>(values: &[T], row_len: usize, classes: &[i64], p_gold: &mut [f64], other: &mut [f64], others_sq: &mut [f64]) -> bool {
    let n = classes.len();
    assert!(available() && row_len > 0 && values.len() == n * row_len && p_gold.len() == n && other.len() == n && others_sq.len() == n);
    // SAFETY: AVX-512 is present and the lengths were asserted above; every gold index is
    // clamped into the row where it is read (`row_vectors`).
    unsafe { summarize::<T>(values, row_len, classes, p_gold, other, others_sq) }
}

#[cfg(not(target_arch = "x86_64"))]
fn checked<T>(_: &[T], _: usize, _: &[i64], _: &mut [f64], _: &mut [f64], _: &mut [f64]) -> bool {
    unreachable!("the AVX-512 summary is only called where `available()`")
}

/// A row's running summary over its chunks: the max of the kept lanes (in the element type)
/// and the float64 squares of columns 0-7 and 8-15 of every chunk.
#[cfg(target_arch = "x86_64")]
struct RowAcc<M> {
    max: M,
    sq_lo: __m512d,
    sq_hi: __m512d,
}

/// A row's element type as the summary reads it: 16 columns at a time.
#[cfg(target_arch = "x86_64")]
trait Lanes: Copy {
    type Max: Copy;
    /// The widest rows the column path summarizes ([`columns_f16`], [`columns_f32`]), and so
    /// the tiled path ([`tiled`]) takes; 0 for none.
    const COLUMNS: usize = 0;
    /// The most epochs the tiled path walks a group of rows of `row_len` columns through before
    /// it moves on to the next, in a window of `window` epochs (the window or more: one part).
    #[inline(always)]
    fn tile_part(row_len: usize, window: usize) -> usize {
        let _ = (row_len, window);
        TILE_EPOCHS
    }
    unsafe fn start() -> RowAcc<Self::Max>;
    /// Fold columns `[at, at + 16)` of which the lanes of `load` exist (the others are not
    /// read), leaving out the lanes of `gold_bit` and any value outside [0, 1]; the lanes
    /// outside [0, 1] (NaN included).
    unsafe fn fold16(acc: &mut RowAcc<Self::Max>, at: *const Self, load: u16, gold_bit: u16) -> u16;
    /// The row's max over 8 float64 lanes, to reduce with the other rows'.
    unsafe fn max8(max: Self::Max) -> __m512d;
    fn to_f64(self) -> f64;
    /// The value at `at` as the lanes see it, in float64 (the gold probability).
    #[inline(always)]
    unsafe fn gold(at: *const Self) -> f64 {
        (*at).to_f64()
    }
    /// The fast path of a full group of rows from row `i`: each row's others' max and sum of
    /// squares reduced across the group as [`summarize_chunks`] reduces them, or None when a
    /// value of the group is not in [+0, 1] (the exact check, clamp and refusal then run on
    /// the group instead). Where it answers, it gives the same bits as the exact path.
    #[inline(always)]
    unsafe fn fast_group<const CHUNKS: usize>(values: &[Self], row_len: usize, i: usize, classes: &[i64], p_gold: &mut [f64], last_load: u16, ahead: usize) -> Option<(__m512d, __m512d)> {
        let _ = (values, row_len, i, classes, p_gold, last_load, ahead);
        None
    }
    /// What the tiled path's summary of the group of rows from row `i` (of `WIDTH` columns)
    /// needs of their gold classes, made once for all epochs.
    type TilePlan<const WIDTH: usize>;
    unsafe fn tile_plan<const WIDTH: usize>(classes: &[i64], i: usize) -> Self::TilePlan<WIDTH>;
    /// [`group_summary`] of one chunk per row, with the group's plan made.
    #[inline(always)]
    unsafe fn tile_summary<const WIDTH: usize>(values: &[Self], i: usize, classes: &[i64], last_load: u16, plan: &Self::TilePlan<WIDTH>) -> Option<Summary> {
        let _ = plan;
        group_summary::<Self, 1>(values, WIDTH, i, classes, last_load, kernels::PREFETCH_BYTES)
    }
}

/// A group of eight rows summarized: per row (one float64 lane each) the gold probability, the
/// others' max and their sum of squares.
#[cfg(target_arch = "x86_64")]
type Summary = (__m512d, __m512d, __m512d);

/// The group of eight rows from row `i` of `values` summarized as [`summarize_chunks`] does it
/// (the fast path, else the exact rows and their transposes: the same bits), or None when a
/// value of the group is outside [0, 1] (beyond float16's rounding tolerance, which the exact
/// path clamps) and the summary is meaningless. The rows `ahead` bytes on are prefetched.
/// (`summarize_chunks` spells the same steps in its loop: calling this there instead measured
/// 1.2x slower on 28-column float32 rows and 1.2x faster on float64 ones, a matter of how the
/// compiler laid out the loop.)
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn group_summary<T: Lanes, const CHUNKS: usize>(values: &[T], row_len: usize, i: usize, classes: &[i64], last_load: u16, ahead: usize) -> Option<Summary> {
    // the group on its own, so that its rows are 0-7 of the slices and `p_gold` is local
    let (values, classes) = (&values[i * row_len..(i + GROUP) * row_len], &classes[i..i + GROUP]);
    let mut p_gold = [0.0; GROUP];
    let (max, sum) = match T::fast_group::<CHUNKS>(values, row_len, 0, classes, &mut p_gold, last_load, ahead) {
        Some(summary) => summary,
        None => {
            let mut bad = 0;
            macro_rules! row {
                ($r:expr) => {
                    row_vectors::<T, CHUNKS>(values, row_len, $r, classes, &mut p_gold, last_load, ahead, &mut bad)
                };
            }
            let (r0, r1, r2, r3, r4, r5, r6, r7) = (row!(0), row!(1), row!(2), row!(3), row!(4), row!(5), row!(6), row!(7));
            if bad != 0 {
                return None;
            }
            let max = transpose_reduce!([r0.0, r1.0, r2.0, r3.0, r4.0, r5.0, r6.0, r7.0], _mm512_max_pd);
            (max, transpose_reduce!([r0.1, r1.1, r2.1, r3.1, r4.1, r5.1, r6.1, r7.1], _mm512_add_pd))
        }
    };
    Some((_mm512_loadu_pd(p_gold.as_ptr()), max, sum))
}

/// A summary's gold probabilities stored to `p_gold[i..i + 8]`, the rest returned (the row
/// summary's interface, [`Lanes::fast_group`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn stored_gold(summary: Option<Summary>, i: usize, p_gold: &mut [f64]) -> Option<(__m512d, __m512d)> {
    let (gold, max, sum) = summary?;
    _mm512_storeu_pd(p_gold[i..i + GROUP].as_mut_ptr(), gold);
    Some((max, sum))
}

#[cfg(target_arch = "x86_64")]
impl Lanes for f32 {
    type TilePlan<const WIDTH: usize> = F32Plan<WIDTH>;
    #[inline(always)]
    unsafe fn tile_plan<const WIDTH: usize>(classes: &[i64], i: usize) -> F32Plan<WIDTH> {
        F32Plan::new(classes, i)
    }
    #[inline(always)]
    unsafe fn tile_summary<const WIDTH: usize>(values: &[Self], i: usize, classes: &[i64], last_load: u16, plan: &F32Plan<WIDTH>) -> Option<Summary> {
        match columns_f32_planned::<WIDTH>(values, i, plan, kernels::PREFETCH_BYTES) {
            Some(summary) => Some(summary),
            None => group_summary::<Self, 1>(values, WIDTH, i, classes, last_load, kernels::PREFETCH_BYTES),
        }
    }
    type Max = __m512;
    const COLUMNS: usize = COLUMNS_F32_MAX;
    #[inline(always)]
    unsafe fn start() -> RowAcc<__m512> {
        RowAcc { max: _mm512_setzero_ps(), sq_lo: _mm512_setzero_pd(), sq_hi: _mm512_setzero_pd() }
    }
    #[inline(always)]
    unsafe fn fold16(acc: &mut RowAcc<__m512>, at: *const f32, load: u16, gold_bit: u16) -> u16 {
        let v = _mm512_maskz_loadu_ps(load, at);
        let ge = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(load, v, _mm512_setzero_ps());
        let ok = _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(ge, v, _mm512_set1_ps(1.0));
        fold_f32_lanes(acc, v, ok, load, gold_bit)
    }
    #[inline(always)]
    unsafe fn max8(max: __m512) -> __m512d {
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(max)));
        _mm512_cvtps_pd(_mm256_max_ps(_mm512_castps512_ps256(max), high))
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    unsafe fn fast_group<const CHUNKS: usize>(values: &[f32], row_len: usize, i: usize, classes: &[i64], p_gold: &mut [f64], last_load: u16, ahead: usize) -> Option<(__m512d, __m512d)> {
        if CHUNKS == 1 && row_len <= COLUMNS_F32_MAX {
            return stored_gold(columns_f32(values, row_len, i, classes, ahead), i, p_gold);
        }
        bits_group::<f32, CHUNKS>(values, row_len, i, classes, p_gold, last_load, ahead)
    }
}

#[cfg(target_arch = "x86_64")]
impl BitLanes for f32 {
    #[inline(always)]
    unsafe fn fold16_bits(acc: &mut RowAcc<__m512>, at: *const f32, load: u16, keep: u16, highest: &mut __m512i) {
        let bits = _mm512_maskz_loadu_epi32(load, at.cast());
        *highest = _mm512_max_epu32(*highest, bits);
        // the max on the bits (ordered as the values), kept in the float32 lanes
        acc.max = _mm512_castsi512_ps(_mm512_mask_max_epu32(_mm512_castps_si512(acc.max), keep, _mm512_castps_si512(acc.max), bits));
        add_f32_squares(acc, _mm512_castsi512_ps(bits), keep);
    }
    #[inline(always)]
    unsafe fn above_one(highest: __m512i) -> bool {
        _mm512_cmpgt_epu32_mask(highest, _mm512_set1_epi32(1.0f32.to_bits() as i32)) != 0
    }
}

/// `$v`, computed here: the compiler may not move its computation past this point. Without it,
/// the row summaries of [`bits_group`], needed only once the group's check has passed, were
/// moved past the check, and the group's loaded rows (32 registers for float64 rows of two
/// chunks) spilled to the stack while they waited. (A macro: an `#[inline(always)]` function
/// cannot name the instruction set that a 512-bit register needs.)
#[cfg(target_arch = "x86_64")]
macro_rules! computed {
    ($v:expr) => {{
        let mut v: __m512d = $v;
        // an empty asm statement that reads and writes `v` in a register (not `pure`: it stays in place)
        std::arch::asm!("/* {0} */", inout(zmm_reg) v, options(nomem, nostack, preserves_flags));
        v
    }};
}

/// Float32 and float64 rows read as their bits by the fast path ([`bits_group`]).
#[cfg(target_arch = "x86_64")]
trait BitLanes: Lanes {
    /// [`Lanes::fold16`] of a chunk whose values are all in [+0, 1] (`keep`: the loaded lanes
    /// but gold); every loaded lane's bits go into `highest`. The max is taken on the bits
    /// (float32) or in float64 lanes (float64); for values in [+0, 1] they agree.
    unsafe fn fold16_bits(acc: &mut RowAcc<Self::Max>, at: *const Self, load: u16, keep: u16, highest: &mut __m512i);
    /// Whether some lane of `highest` is above 1.0's bits: a value not in [+0, 1].
    unsafe fn above_one(highest: __m512i) -> bool;
}

/// The fast path of a full group of float32 or float64 rows from row `i` ([`Lanes::fast_group`]):
/// a non-negative float is ordered as its bits, and the values in [+0, 1] are those whose bits
/// are at most 1.0's (-0.0 and NaN have larger ones), so the range check is one unsigned max
/// a chunk, compared once for the group, and (float32) the max of the others runs on the bits;
/// no tolerance, no per-lane verdicts. The squares are added as the exact path adds them, and a
/// group with a value not in [+0, 1] goes the exact path's way (None): the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
#[inline]
unsafe fn bits_group<T: BitLanes, const CHUNKS: usize>(values: &[T], row_len: usize, i: usize, classes: &[i64], p_gold: &mut [f64], last_load: u16, ahead: usize) -> Option<(__m512d, __m512d)> {
    let mut highest = _mm512_setzero_si512();
    macro_rules! row {
        ($r:expr) => {{
            let (row, gold) = row_start::<T, CHUNKS>(values, row_len, i + $r, classes, p_gold, ahead);
            let mut acc = T::start();
            for c in 0..chunk_count::<CHUNKS>(row_len) {
                prefetch_chunk::<T, CHUNKS>(row, c, ahead);
                let (load, gold_bit) = chunk_masks::<CHUNKS>(c, row_len, last_load, gold);
                T::fold16_bits(&mut acc, row.add(16 * c), load, load & !gold_bit, &mut highest);
            }
            (computed!(T::max8(acc.max)), computed!(_mm512_add_pd(acc.sq_lo, acc.sq_hi)))
        }};
    }
    let (r0, r1, r2, r3, r4, r5, r6, r7) = (row!(0), row!(1), row!(2), row!(3), row!(4), row!(5), row!(6), row!(7));
    if T::above_one(highest) {
        return None;
    }
    let max = transpose_reduce!([r0.0, r1.0, r2.0, r3.0, r4.0, r5.0, r6.0, r7.0], _mm512_max_pd);
    Some((max, transpose_reduce!([r0.1, r1.1, r2.1, r3.1, r4.1, r5.1, r6.1, r7.1], _mm512_add_pd)))
}

#[cfg(target_arch = "x86_64")]
impl Lanes for half::f16 {
    type TilePlan<const WIDTH: usize> = F16Plan<WIDTH>;
    #[inline(always)]
    unsafe fn tile_plan<const WIDTH: usize>(classes: &[i64], i: usize) -> F16Plan<WIDTH> {
        F16Plan::new(classes, i)
    }
    #[inline(always)]
    unsafe fn tile_summary<const WIDTH: usize>(values: &[Self], i: usize, classes: &[i64], last_load: u16, plan: &F16Plan<WIDTH>) -> Option<Summary> {
        match columns_f16_planned::<WIDTH>(values, i, plan, kernels::PREFETCH_BYTES) {
            Some(summary) => Some(summary),
            None if WIDTH <= COLUMNS_F16_RUN => group_summary::<Self, 1>(values, WIDTH, i, classes, last_load, kernels::PREFETCH_BYTES),
            None => group_summary::<Self, 2>(values, WIDTH, i, classes, last_load, kernels::PREFETCH_BYTES),
        }
    }
    type Max = __m512;
    /// Float16 groups walk a window in one part, but for rows of the column path (up to 16
    /// columns) in a window of more than [`F16_PARTS_FROM`] epochs, which go in parts of at
    /// most [`TILE_EPOCHS`]. Measured on Zen 4 against one part (`[E, 1M, L]`, one and two
    /// threads), parts of 10 epochs at 10 columns: 1.00-1.08x at 20 epochs, 0.85x / 0.78x at 24,
    /// 0.72x / 0.74x at 30, 0.65x / 0.66x at 50 (and 16 columns at 50: 0.73x); at 28 columns
    /// and 50 epochs, 1.04-1.11x (the row path's then; parts of 25 were 0.97-1.00x at 10 columns
    /// and 1.08-1.18x at 28). Rows of 17 to 32 columns, read row by row, keep one part too: parts
    /// of 10 measured 0.97-1.09x / 0.99x at 28 columns and 50 epochs, 1.07-1.10x / 1.17-1.18x
    /// at 20 columns and 30 epochs (1 / 2 threads).
    #[inline(always)]
    fn tile_part(row_len: usize, window: usize) -> usize {
        if row_len <= COLUMNS_F16_RUN && window > F16_PARTS_FROM {
            TILE_EPOCHS
        } else {
            usize::MAX
        }
    }
    /// Rows of 17 to 32 columns (two chunks) are tiled too. By the row path they measured on
    /// Zen 4 against epoch-major (`[10, 500k, L]`, one and two threads) 0.82-0.92x and
    /// 0.80-0.92x for L = 17, 20, 24, 28 and 32; by the column path, read row by row
    /// ([`transposed_rows`]), against the row path (Zen 5, one / two threads, 9 interleaved
    /// rounds, median of ratios): 0.59x / 0.61x at 17 columns, 0.72x / 0.92x at 24, 0.84x / 0.85x at
    /// 28 (`[10, 1M, 28]`), 0.93x / 0.95x at 32, 0.74x / 0.80x at 20 columns and 30 epochs.
    const COLUMNS: usize = COLUMNS_F16_MAX;
    #[inline(always)]
    unsafe fn start() -> RowAcc<__m512> {
        f32::start()
    }
    #[inline(always)]
    unsafe fn fold16(acc: &mut RowAcc<__m512>, at: *const half::f16, load: u16, gold_bit: u16) -> u16 {
        let v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(load, at.cast::<i16>()));
        // taken when within float16's rounding tolerance of [0, 1], then clamped into it
        // (`clamp_f16`, lane by lane: `max(0, v)` keeps a -0.0, as the scalar clamp does)
        let tolerance = _mm512_set1_ps(F16_TOLERANCE);
        let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
        let above_low = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(load, v, _mm512_sub_ps(zero, tolerance));
        let ok = _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(above_low, v, _mm512_add_ps(one, tolerance));
        let v = _mm512_min_ps(one, _mm512_max_ps(zero, v));
        fold_f32_lanes(acc, v, ok, load, gold_bit)
    }
    #[inline(always)]
    unsafe fn max8(max: __m512) -> __m512d {
        f32::max8(max)
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        clamp_f16(f16_to_f32(self.to_bits())) as f64
    }
    #[inline(always)]
    unsafe fn gold(at: *const half::f16) -> f64 {
        // F16C, clamped as the lanes are (a value beyond the tolerance fails the row anyway)
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128((*at).to_bits() as i32));
        _mm_cvtss_f32(_mm_min_ss(_mm_set_ss(1.0), _mm_max_ss(_mm_setzero_ps(), v))) as f64
    }
    #[inline(always)]
    unsafe fn fast_group<const CHUNKS: usize>(values: &[half::f16], row_len: usize, i: usize, classes: &[i64], p_gold: &mut [f64], last_load: u16, ahead: usize) -> Option<(__m512d, __m512d)> {
        if CHUNKS == 1 {
            return stored_gold(columns_f16(values, row_len, i, classes, ahead), i, p_gold);
        }
        // Values in [+0, 1] are the ones whose bits are at most 1.0's, ordered as their bits
        // (`F16_ONE_BITS`): the check and the max run on the stored 16-bit lanes (no
        // tolerance, no clamp: the exact path takes the rest), and only the squares are
        // widened. The check is one max over the group's lanes (the lanes past a row are
        // loaded as zeros), compared once at the end.
        let golds: &[i64; GROUP] = classes[i..i + GROUP].try_into().expect("a full group");
        let first = values[i * row_len..(i + GROUP) * row_len].as_ptr();
        let row_bytes = row_len * 2;
        let mut highest = _mm256_setzero_si256();
        // the eight gold values' bits, four to a word, widened together at the end
        let (mut gold_lo, mut gold_hi) = (0u64, 0u64);
        macro_rules! row {
            ($r:expr) => {{
                let row = first.add($r * row_len);
                prefetch_row::<half::f16, CHUNKS>(row, row_bytes, ahead);
                let gold = (golds[$r] as u64).min(row_len as u64 - 1) as usize;
                let gold_bits = (*row.add(gold)).to_bits() as u64;
                if $r < 4 {
                    gold_lo |= gold_bits << (16 * $r);
                } else {
                    gold_hi |= gold_bits << (16 * ($r - 4));
                }
                let mut max = _mm256_setzero_si256();
                let (mut sq_even, mut sq_odd) = (_mm512_setzero_pd(), _mm512_setzero_pd());
                // Rows of more than 4 chunks (a loop, not unrolled) tell gold's lane by one
                // comparison of the chunk's columns, and load every chunk but the last whole
                // (a lane past the row is loaded as a zero, which changes neither the max nor
                // the sum), instead of working out each chunk's masks in scalar code: float16
                // 100 columns 0.94-0.98x / 0.90-0.99x (1 / 2 threads, four A/Bs of 15-21 rounds
                // on a noisy host). Unrolled chunks keep their masks, shifts by constants (the
                // comparison measured 1.05-1.15x slower at 28 columns), and so do float32 and
                // float64 rows (1.03-1.10x slower at 100 and 1000 columns).
                let gold_column = _mm512_set1_epi32(gold as i32);
                let mut columns = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                let chunks = chunk_count::<CHUNKS>(row_len);
                for c in 0..chunks {
                    prefetch_chunk::<half::f16, CHUNKS>(row, c, ahead);
                    let at = row.add(16 * c).cast::<i16>();
                    let (bits, keep) = if CHUNKS > 0 {
                        let (load, gold_bit) = chunk_masks::<CHUNKS>(c, row_len, last_load, gold);
                        (_mm256_maskz_loadu_epi16(load, at), load & !gold_bit)
                    } else {
                        let bits = if c + 1 < chunks { _mm256_loadu_si256(at.cast()) } else { _mm256_maskz_loadu_epi16(last_load, at) };
                        let keep = _mm512_cmpneq_epi32_mask(columns, gold_column);
                        columns = _mm512_add_epi32(columns, _mm512_set1_epi32(16));
                        (bits, keep)
                    };
                    highest = _mm256_max_epu16(highest, bits);
                    max = _mm256_mask_max_epu16(max, keep, max, bits);
                    // float16 -> float32 is exact, and so is the square in float32; its bits then
                    // placed in float64 lanes (scaled by 2^-896: `placed_pair`)
                    let v = _mm512_cvtph_ps(bits);
                    // Rows of more than 4 chunks square gold's column too (no mask to apply) and
                    // take its square off at the end: float16 100 columns 0.96-0.97x with 1 and
                    // 2 threads. Unrolled chunks have their masks at hand (squaring gold there
                    // measured 1.06-1.08x slower at 28 columns).
                    let squares = if CHUNKS == 0 { _mm512_mul_ps(v, v) } else { _mm512_maskz_mul_ps(keep, v, v) };
                    let (even, odd) = placed_pair(squares);
                    sq_even = _mm512_add_pd(sq_even, even);
                    sq_odd = _mm512_add_pd(sq_odd, odd);
                }
                (max, _mm512_add_pd(sq_even, sq_odd))
            }};
        }
        let (r0, r1, r2, r3, r4, r5, r6, r7) = (row!(0), row!(1), row!(2), row!(3), row!(4), row!(5), row!(6), row!(7));
        if _mm256_cmpgt_epu16_mask(highest, _mm256_set1_epi16(F16_ONE_BITS as i16)) != 0 {
            return None;
        }
        // in [+0, 1], so the clamp of the exact path (`Lanes::gold`) would change nothing
        let gold = _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_set_epi64x(gold_hi as i64, gold_lo as i64)));
        _mm512_storeu_pd(p_gold[i..i + GROUP].as_mut_ptr(), gold);
        let max = _mm512_cvtps_pd(_mm256_cvtph_ps(transpose_max_u16([r0.0, r1.0, r2.0, r3.0, r4.0, r5.0, r6.0, r7.0])));
        let sum = unplaced(transpose_reduce!([r0.1, r1.1, r2.1, r3.1, r4.1, r5.1, r6.1, r7.1], _mm512_add_pd));
        // Added in another order than the exact path's: the same bits while a row's sum is
        // below 2^5, as a row whose values sum to about 1 always is (every partial sum is then
        // a multiple of 2^-48 below 2^5, exact in float64, so this sum is the exact one; a row
        // of up to 33 columns cannot reach 2^5). A group with a sum at 2^5 or more goes the
        // exact path's way.
        if _mm512_cmp_pd_mask::<_CMP_GE_OQ>(sum, _mm512_set1_pd(32.0)) != 0 {
            return None;
        }
        // the wide rows' sums with gold's square, checked as such, which is at most 1 and
        // exact, so that the difference is the exact sum of the others' (a multiple of 2^-48
        // below 2^5, as both terms)
        let sum = if CHUNKS == 0 { _mm512_fnmadd_pd(gold, gold, sum) } else { sum };
        Some((max, sum))
    }
}

/// The float16 fast path ([`Lanes::fast_group`]) for rows of 3 to 16 columns, which fit one
/// chunk (None for other widths, or when a value of the group is not in [+0, 1]; the gold
/// probabilities come back as a vector): the group is read as one run of `8 * row_len` words
/// (at most four 64-byte loads) and regrouped by word permutes, four columns of the eight rows
/// to a vector ([`F16Plan`] gives the layout). The max takes one masked operation per four
/// columns, the gold values one permute, and the squares one float32 product per column (a
/// half's even and odd lanes apart), whose bits are then placed in float64 lanes
/// ([`placed_squares`]), with no transpose at the end; the range check is one comparison at the
/// end, on the rows' gold values and others' maxima.
///
/// The sums of squares are exact: a float16 in [+0, 1] is a multiple of 2^-24, so its square is
/// a multiple of 2^-48 of at most 1, and any sum of up to 32 such squares is at most 2^5 and
/// needs at most 53 bits (a row here has at most 15 others); scaled by 2^-896 the same holds,
/// with every non-zero value and sum a normal float64. So the order of the additions cannot
/// change a bit, and these sums equal the exact path's.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn columns_f16(values: &[half::f16], row_len: usize, i: usize, classes: &[i64], ahead: usize) -> Option<Summary> {
    macro_rules! widths {
        ($($width:literal)*) => {
            match row_len {
                $($width => columns_f16_of::<$width>(values, i, classes, ahead),)*
                _ => None,
            }
        };
    }
    // (3 to COLUMNS_F16_RUN: wider rows, two chunks, take the row path here)
    widths!(3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// The widest float16 rows of the column path ([`columns_f16_planned`]): two chunks of 16.
#[cfg(target_arch = "x86_64")]
const COLUMNS_F16_MAX: usize = 4 * BLOCKS_F16_MAX;

/// [`columns_f16`] for rows of `WIDTH` columns.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn columns_f16_of<const WIDTH: usize>(values: &[half::f16], i: usize, classes: &[i64], ahead: usize) -> Option<Summary> {
    columns_f16_planned::<WIDTH>(values, i, &F16Plan::<WIDTH>::new(classes, i), ahead)
}

/// What [`columns_f16_planned`] needs of a group's gold classes, the same at every epoch (the
/// tiled path makes it once per group): per block of four columns, the words that are others
/// (kept) and the words that are gold, of the regrouped layout, and (rows of up to 16 columns,
/// read as one run) each row's gold word's position in the group.
#[cfg(target_arch = "x86_64")]
struct F16Plan<const WIDTH: usize> {
    keep: [u32; BLOCKS_F16_MAX],
    is_gold: [u32; BLOCKS_F16_MAX],
    gold_at: __m512i,
}

/// The most blocks of four columns of a float16 row of the column path (up to 32 columns).
#[cfg(target_arch = "x86_64")]
const BLOCKS_F16_MAX: usize = 8;

#[cfg(target_arch = "x86_64")]
impl<const WIDTH: usize> F16Plan<WIDTH> {
    /// Word 16h + 2r + b of block k holds column 4k + 2h + b of row r, so that each 64-bit lane
    /// of a half's float32 squares holds one row's two columns (see `placed_squares`).
    #[inline(always)]
    unsafe fn new(classes: &[i64], i: usize) -> Self {
        if WIDTH > COLUMNS_F16_MAX {
            // (not used: such rows take the row path)
            return F16Plan { keep: [0; BLOCKS_F16_MAX], is_gold: [0; BLOCKS_F16_MAX], gold_at: _mm512_setzero_si512() };
        }
        let golds = group_golds(classes, i, WIDTH);
        // each row's gold column in the lanes of its words: row r's in 2r, 2r + 1, 16 + 2r and
        // 17 + 2r
        let golds8 = _mm512_cvtepi64_epi32(golds);
        let gold_words = _mm512_broadcast_i64x4(_mm256_or_si256(golds8, _mm256_slli_epi32::<16>(golds8)));
        let first_columns = first_block_columns();
        let (mut keep, mut is_gold) = ([0; BLOCKS_F16_MAX], [0; BLOCKS_F16_MAX]);
        for block in 0..WIDTH.div_ceil(4) {
            let columns = _mm512_add_epi16(first_columns, _mm512_set1_epi16(4 * block as i16));
            let present = _mm512_cmplt_epu16_mask(columns, _mm512_set1_epi16(WIDTH as i16));
            is_gold[block] = present & _mm512_cmpeq_epi16_mask(columns, gold_words);
            keep[block] = present & !is_gold[block];
        }
        // row r's gold word at r * WIDTH + gold (word r of the vector), in a run of up to 128
        let w = WIDTH as i16;
        let row_starts = _mm_set_epi16(7 * w, 6 * w, 5 * w, 4 * w, 3 * w, 2 * w, w, 0);
        F16Plan { keep, is_gold, gold_at: _mm512_zextsi128_si512(_mm_add_epi16(row_starts, _mm512_cvtepi64_epi16(golds))) }
    }
}

/// The column of each word of the first block in [`F16Plan`]'s layout (word 16h + 2r + b:
/// column 2h + b); block k's are these plus 4k.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn first_block_columns() -> __m512i {
    _mm512_set_epi16(3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0)
}

/// [`columns_f16_of`] with the group's plan made: the group's blocks of four columns
/// ([`f16_blocks_of_run`] or [`transposed_rows`]) summarized.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn columns_f16_planned<const WIDTH: usize>(values: &[half::f16], i: usize, plan: &F16Plan<WIDTH>, ahead: usize) -> Option<Summary> {
    let words = GROUP * WIDTH;
    let group = values[i * WIDTH..i * WIDTH + words].as_ptr().cast::<i16>();
    // the run's registers (rows of up to 16 columns), read once for the blocks and the gold words
    let run = if WIDTH <= COLUMNS_F16_RUN { f16_run::<WIDTH>(group) } else { [_mm512_setzero_si512(); 4] };
    let blocks = if WIDTH <= COLUMNS_F16_RUN { f16_blocks_of_run::<WIDTH>(&run) } else { transposed_rows(group.cast(), 2 * WIDTH, WIDTH.div_ceil(4)) };
    let mut max = _mm512_setzero_si512();
    let mut gold_words = _mm512_setzero_si512();
    // added as they come (exact in any order, see above), scaled by 2^-896 (`placed_squares`)
    let mut sum: Option<__m512d> = None;
    for (block, &four) in blocks.iter().enumerate().take(WIDTH.div_ceil(4)) {
        // the group's lines `ahead` on, one a block (a group of `WIDTH` columns is `WIDTH / 4`
        // lines), as the float32 column path spreads them (here 0.97-1.00x with one thread,
        // 0.92-1.00x with two)
        kernels::prefetch(group.add(32 * block), ahead);
        let keep = plan.keep[block];
        max = _mm512_mask_max_epu16(max, keep, max, four);
        if WIDTH > COLUMNS_F16_RUN {
            gold_words = _mm512_mask_mov_epi16(gold_words, plan.is_gold[block], four);
        }
        // float16 -> float32 is exact, and so is the square in float32 (at most 22 significant
        // bits, at least 2^-48); its bits then placed in float64 lanes
        for half in 0..2 {
            if 4 * block + 2 * half >= WIDTH {
                break;
            }
            let two = _mm512_cvtph_ps(if half == 0 { _mm512_castsi512_si256(four) } else { _mm512_extracti64x4_epi64::<1>(four) });
            let (first, second) = placed_squares(two, (keep >> (16 * half)) as u16);
            sum = add_present(sum, Some(first));
            if 4 * block + 2 * half + 1 < WIDTH {
                sum = add_present(sum, Some(second));
            }
        }
    }
    // each row's words folded into word r: the halves, then the two words of a 32-bit lane
    macro_rules! fold_rows {
        ($v:expr) => {{
            let v = $v;
            let v = _mm256_max_epu16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
            _mm256_cvtepi32_epi16(_mm256_max_epu16(v, _mm256_srli_epi32::<16>(v)))
        }};
    }
    let max = fold_rows!(max);
    // a row's gold word, from the run (one permute), or the only gold word of its row kept
    let gold = if WIDTH <= COLUMNS_F16_RUN { _mm512_castsi512_si128(f16_run_words::<WIDTH>(&run, plan.gold_at)) } else { fold_rows!(gold_words) };
    // every value of the group is its row's gold or one of its others, so the group is in
    // [+0, 1] when the rows' golds and others' maxima are (checked at the end: nothing before
    // needs it)
    if _mm_cmpgt_epu16_mask(_mm_max_epu16(gold, max), _mm_set1_epi16(F16_ONE_BITS as i16)) != 0 {
        return None;
    }
    let sum = unplaced(sum.expect("a row has a column"));
    Some((_mm512_cvtps_pd(_mm256_cvtph_ps(gold)), _mm512_cvtps_pd(_mm256_cvtph_ps(max)), sum))
}

/// The widest float16 rows whose group [`columns_f16_planned`] reads as one run of words
/// ([`f16_blocks_of_run`]); wider ones are read row by row ([`transposed_rows`]).
#[cfg(target_arch = "x86_64")]
const COLUMNS_F16_RUN: usize = 16;

/// The group from `group` as one run of `8 * WIDTH` words (rows of up to [`COLUMNS_F16_RUN`]
/// columns: at most 128) in four registers of 32; loads past the group are masked off (they
/// read nothing), so their registers hold zeros.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn f16_run<const WIDTH: usize>(group: *const i16) -> [__m512i; 4] {
    let words = GROUP * WIDTH;
    let mut run = [_mm512_setzero_si512(); 4];
    for (k, register) in run.iter_mut().enumerate().take(words.div_ceil(32)) {
        let left = words - 32 * k;
        *register = _mm512_maskz_loadu_epi16(if left >= 32 { u32::MAX } else { (1u32 << left) - 1 }, group.add(32 * k));
    }
    run
}

/// The words at `at` (positions in the group's run, [`f16_run`]), 32 words: a permute reads the
/// low 6 bits of a position, so one index serves both register pairs, and positions at 64 and
/// on take the second pair's word.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn f16_run_words<const WIDTH: usize>(run: &[__m512i; 4], at: __m512i) -> __m512i {
    let mut words16 = _mm512_permutex2var_epi16(run[0], at, run[1]);
    if GROUP * WIDTH > 64 {
        let second = _mm512_cmpge_epu16_mask(at, _mm512_set1_epi16(64));
        words16 = _mm512_mask_blend_epi16(second, words16, _mm512_permutex2var_epi16(run[2], at, run[3]));
    }
    words16
}

/// The group's blocks of four columns in [`F16Plan`]'s layout, for rows of up to
/// [`COLUMNS_F16_RUN`] columns: regrouped by word permutes from the group's run ([`f16_run`],
/// at most four 64-byte loads). Rows of 17 to 32 columns are read a load a row instead and
/// transposed ([`transposed_rows`]): in a run, the group's rows of a block lie across all seven
/// or eight registers, four permutes and three blends a block where the transpose takes three
/// shuffles.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn f16_blocks_of_run<const WIDTH: usize>(run: &[__m512i; 4]) -> [__m512i; BLOCKS_F16_MAX] {
    #[rustfmt::skip]
    let rows = _mm512_set_epi16(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0, 7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    let first_positions = _mm512_add_epi16(_mm512_mullo_epi16(rows, _mm512_set1_epi16(WIDTH as i16)), first_block_columns());
    let mut blocks = [_mm512_setzero_si512(); BLOCKS_F16_MAX];
    for (block, four) in blocks.iter_mut().enumerate().take(WIDTH.div_ceil(4)) {
        *four = f16_run_words::<WIDTH>(run, _mm512_add_epi16(first_positions, _mm512_set1_epi16(4 * block as i16)));
    }
    blocks
}

/// The eight rows of `row_bytes` (at most 64) from `group`, one masked load a row (zeros past
/// the row), [`transposed_pairs`]: float16 rows of 17 to 32 columns into blocks of four columns,
/// float32 rows of 10 to 16 columns into pairs of columns.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transposed_rows(group: *const u8, row_bytes: usize, lanes_wanted: usize) -> [__m512i; GROUP] {
    let row_mask = if row_bytes >= 64 { u64::MAX } else { (1u64 << row_bytes) - 1 };
    let mut rows = [_mm512_setzero_si512(); GROUP];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = _mm512_maskz_loadu_epi8(row_mask, group.add(r * row_bytes).cast());
    }
    transposed_pairs(&rows, lanes_wanted)
}

/// Eight rows of eight 64-bit lanes transposed, the first `lanes_wanted` lanes of each: vector
/// k holds lane k of every row, row r's two 32-bit halves in 32-bit lanes r (the low) and 8 + r
/// (the high); the vectors from `lanes_wanted` on are zeros. Three steps of two-register
/// shuffles, the last of which puts the halves in place (float16 blocks of four columns,
/// [`F16Plan`]'s layout; float32 pairs of columns, [`F32Plan`]'s).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transposed_pairs(rows: &[__m512i; GROUP], lanes_wanted: usize) -> [__m512i; GROUP] {
    // rows 2p and 2p + 1 interleaved: 128-bit lane j of `even[p]` their 64-bit lanes 2j, of
    // `odd[p]` their lanes 2j + 1
    let (mut even, mut odd) = ([_mm512_setzero_si512(); 4], [_mm512_setzero_si512(); 4]);
    for p in 0..4 {
        even[p] = _mm512_unpacklo_epi64(rows[2 * p], rows[2 * p + 1]);
        odd[p] = _mm512_unpackhi_epi64(rows[2 * p], rows[2 * p + 1]);
    }
    // four rows (pairs p and p + 1) of two 64-bit lanes: `low[k % 4]` holds lane k (k < 4) of
    // rows 0-3 in its 64-bit lanes 0, 1, 4, 5 and lane k + 4 in 2, 3, 6, 7; `high`, rows 4-7's
    macro_rules! four_rows {
        ($pairs:expr, $p:expr, $imm:literal) => {
            _mm512_shuffle_i64x2::<$imm>($pairs[$p], $pairs[$p + 1])
        };
    }
    let low = [four_rows!(even, 0, 0b10_00_10_00), four_rows!(odd, 0, 0b10_00_10_00), four_rows!(even, 0, 0b11_01_11_01), four_rows!(odd, 0, 0b11_01_11_01)];
    let high = [four_rows!(even, 2, 0b10_00_10_00), four_rows!(odd, 2, 0b10_00_10_00), four_rows!(even, 2, 0b11_01_11_01), four_rows!(odd, 2, 0b11_01_11_01)];
    // vector k from `low[k % 4]` and `high[k % 4]`: 32-bit lane 8h + r its row r's lane 2k + h
    #[rustfmt::skip]
    let (first, second) = (
        _mm512_set_epi32(27, 25, 19, 17, 11, 9, 3, 1, 26, 24, 18, 16, 10, 8, 2, 0),
        _mm512_set_epi32(31, 29, 23, 21, 15, 13, 7, 5, 30, 28, 22, 20, 14, 12, 6, 4),
    );
    let mut lanes = [_mm512_setzero_si512(); GROUP];
    for (k, lane) in lanes.iter_mut().enumerate().take(lanes_wanted) {
        *lane = _mm512_permutex2var_epi32(low[k % 4], if k < 4 { first } else { second }, high[k % 4]);
    }
    lanes
}

/// 2^896: a float64 whose bits are a non-negative float32's moved up by 29 places (its sign and
/// exponent bits then fall in the float64's exponent field, its fraction at the top of the
/// float64's) is that float32 times 2^-896.
#[cfg(target_arch = "x86_64")]
const PLACED_SCALE: f64 = f64::from_bits((1023 + 896) << 52);

/// A sum of [`placed_pair`]'s or [`placed_squares`]'s lanes at its value: times 2^896, exact (a
/// power of two, and the sum a normal float64).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn unplaced(sum: __m512d) -> __m512d {
    _mm512_mul_pd(sum, _mm512_set1_pd(PLACED_SCALE))
}

/// The 16 non-negative float32 lanes of `squares`, even lanes and odd lanes, as two vectors of
/// eight float64 lanes each holding the value times 2^-896 ([`PLACED_SCALE`]): the bits moved
/// into place by a shift and a mask on the integer units instead of the conversion unit, which
/// the other widenings keep busy (on Zen 4, a loop of these steps alone: 5.0 against 7.4
/// cycles per 16 squares for the conversion's). Exact, and never a subnormal float64: a
/// non-zero float32 square of a float16 is at least 2^-48, placed at 2^-944; a zero stays a
/// zero. The wide rows' loop ([`Lanes::fast_group`]) takes this form: there [`placed_squares`]
/// measured 1.23x slower (float16 28 columns, 1 thread).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn placed_pair(squares: __m512) -> (__m512d, __m512d) {
    let bits = _mm512_castps_si512(squares);
    // float64 bits 29-60 (fraction, exponent, sign) from the float32's bits 0-31
    let field = _mm512_set1_epi64(0x1FFF_FFFF_E000_0000);
    let even = _mm512_and_si512(_mm512_slli_epi64::<29>(bits), field);
    let odd = _mm512_and_si512(_mm512_srli_epi64::<3>(bits), field);
    (_mm512_castsi512_pd(even), _mm512_castsi512_pd(odd))
}

/// [`placed_pair`] of the float32 squares of the 16 lanes of `v` kept by `keep` (the others
/// zero), for lanes in [+0, 1] of a float16, with no mask: each half is squared on its own (the
/// other half's lanes zeroed by the multiply's mask), so that one shift places it with nothing
/// of the other half left in the 64-bit lane. The narrow rows' form ([`columns_f16_planned`],
/// whose masks are a group's, made once): 0.965x of [`placed_pair`]'s time there (float16 10
/// columns, 1 and 2 threads).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn placed_squares(v: __m512, keep: u16) -> (__m512d, __m512d) {
    let even = _mm512_castps_si512(_mm512_maskz_mul_ps(keep & 0x5555, v, v));
    let odd = _mm512_castps_si512(_mm512_maskz_mul_ps(keep & 0xAAAA, v, v));
    // float64 bits 29-60 (fraction, exponent, sign) from the float32's bits 0-31 (even lanes)
    // or 32-63 (odd lanes); the zeroed half shifts in only zeros
    (_mm512_castsi512_pd(_mm512_slli_epi64::<29>(even)), _mm512_castsi512_pd(_mm512_srli_epi64::<3>(odd)))
}

/// The fast path of a group of eight float32 rows of up to [`COLUMNS_F32_MAX`] columns: read
/// as one run of `8 * row_len` values and regrouped by permutes (up to [`COLUMNS_F32_RUN`]
/// columns), or a load a row and transposed, two columns of the eight rows to a vector (lane
/// `8c + r`: column c of row r), so that each column is one widening and one product for the
/// eight rows and no transpose is needed at the end. None when a value of the group is not
/// in [+0, 1] (compared as bits: a non-negative float32 is ordered as its bits, and -0.0 and
/// NaN have larger ones), or for wider rows. The squares are added in the exact path's order
/// (lane k holds columns k and k + 8, then ((0 1) (2 3)) ((4 5) (6 7))): the same bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn columns_f32(values: &[f32], row_len: usize, i: usize, classes: &[i64], ahead: usize) -> Option<Summary> {
    macro_rules! widths {
        ($($width:literal)*) => {
            match row_len {
                $($width => columns_f32_of::<$width>(values, i, classes, ahead),)*
                _ => None,
            }
        };
    }
    widths!(3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// The widest float32 rows of [`columns_f32`]: one chunk. Read as one run, measured on Zen 4
/// against the exact path (one thread, `[10, 1M, L]`): 0.56x at 4 columns, 0.61x at 6, 0.88x at
/// 10, 0.90x at 12 and 14, even at 16 (where the permutes read four register pairs per two
/// columns); read row by row ([`COLUMNS_F32_RUN`]), rows of 15 and 16 columns gained the tiled
/// path: 0.70x / 0.79x of the epoch-major path's time at 16 (Zen 5, 1 / 2 threads).
#[cfg(target_arch = "x86_64")]
const COLUMNS_F32_MAX: usize = 16;

/// The widest float32 rows whose group [`columns_f32_planned`] reads as one run of values and
/// regroups by permutes from it; wider ones are read a load a row and transposed
/// ([`transposed_pairs`]: 29 operations a group at 9 columns, where the run takes about 30, and
/// fewer than the run's from there on). Measured on Zen 5 against the run (`[10, 1M, L]` and
/// `[10, 500k, L]`, 9 interleaved rounds, median of ratios, 1 / 2 threads): 1.15x / 1.01x at 6
/// columns, 0.91x / 1.00x at 10, 0.89x / 1.00x at 12, 0.88x / 0.96x at 14.
#[cfg(target_arch = "x86_64")]
const COLUMNS_F32_RUN: usize = 9;

/// [`columns_f32`] for rows of `WIDTH` columns.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn columns_f32_of<const WIDTH: usize>(values: &[f32], i: usize, classes: &[i64], ahead: usize) -> Option<Summary> {
    columns_f32_planned::<WIDTH>(values, i, &F32Plan::<WIDTH>::new(classes, i), ahead)
}

/// What [`columns_f32_planned`] needs of a group's gold classes, the same at every epoch (the
/// tiled path makes it once per group): per pair of columns, the lanes that are others (kept)
/// and the lanes that are gold, in its layout (lane `8c + r`: column `2 * pair + c` of row r).
/// Made at every epoch, it was some 25 of the 150 instructions of a group of 10 columns; once
/// per group measured 0.98x with one thread and 0.975x with two (float32 `[10, 1M, 10]`).
#[cfg(target_arch = "x86_64")]
struct F32Plan<const WIDTH: usize> {
    keep: [u16; COLUMNS_F32_MAX.div_ceil(2)],
    is_gold: [u16; COLUMNS_F32_MAX.div_ceil(2)],
}

#[cfg(target_arch = "x86_64")]
impl<const WIDTH: usize> F32Plan<WIDTH> {
    #[inline(always)]
    unsafe fn new(classes: &[i64], i: usize) -> Self {
        let mut plan = F32Plan { keep: [0; COLUMNS_F32_MAX.div_ceil(2)], is_gold: [0; COLUMNS_F32_MAX.div_ceil(2)] };
        if WIDTH > COLUMNS_F32_MAX {
            // (not used: such rows take the row path)
            return plan;
        }
        // each row's gold column in lanes r and 8 + r
        let golds = _mm512_broadcast_i64x4(_mm512_cvtepi64_epi32(group_golds(classes, i, WIDTH)));
        for pair in 0..WIDTH.div_ceil(2) {
            let columns = _mm512_add_epi32(first_pair_columns(), _mm512_set1_epi32(2 * pair as i32));
            let present = _mm512_cmplt_epu32_mask(columns, _mm512_set1_epi32(WIDTH as i32));
            plan.is_gold[pair] = _mm512_cmpeq_epi32_mask(columns, golds);
            plan.keep[pair] = present & !plan.is_gold[pair];
        }
        plan
    }
}

/// The column of each lane of the first pair in [`columns_f32_planned`]'s layout (lane `8c + r`:
/// column c); pair k's are these plus 2k.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn first_pair_columns() -> __m512i {
    _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
}

/// [`columns_f32_of`] with the group's plan made.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn columns_f32_planned<const WIDTH: usize>(values: &[f32], i: usize, plan: &F32Plan<WIDTH>, ahead: usize) -> Option<Summary> {
    if WIDTH > COLUMNS_F32_MAX {
        return None;
    }
    let floats = GROUP * WIDTH;
    let group = values[i * WIDTH..i * WIDTH + floats].as_ptr();
    // the group's values, 16 to a register; the last load is masked to the group
    let mut z = [_mm512_setzero_ps(); 2 * (GROUP * COLUMNS_F32_MAX).div_ceil(32)];
    let mut highest = _mm512_setzero_si512();
    let mut pairs = [_mm512_setzero_si512(); GROUP];
    if WIDTH <= COLUMNS_F32_RUN {
        for (k, register) in z.iter_mut().enumerate().take(floats.div_ceil(16)) {
            let left = floats - 16 * k;
            *register = _mm512_maskz_loadu_ps(if left >= 16 { u16::MAX } else { (1u16 << left) - 1 }, group.add(16 * k));
            highest = _mm512_max_epu32(highest, _mm512_castps_si512(*register));
        }
    } else {
        pairs = transposed_rows(group.cast(), 4 * WIDTH, WIDTH.div_ceil(2));
        // every value of the group lies in one lane of one pair (zeros past the rows)
        for &two in pairs.iter().take(WIDTH.div_ceil(2)) {
            highest = _mm512_max_epu32(highest, two);
        }
    }
    if _mm512_cmpgt_epu32_mask(highest, _mm512_set1_epi32(1.0f32.to_bits() as i32)) != 0 {
        return None;
    }
    let rows = _mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0);
    let first_positions = _mm512_add_epi32(_mm512_mullo_epi32(rows, _mm512_set1_epi32(WIDTH as i32)), first_pair_columns());
    let (mut max, mut gold) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut squares = [None::<__m512d>; 16];
    for pair in 0..WIDTH.div_ceil(2) {
        // the group's lines `ahead` on, one a pair (a group of `WIDTH` columns is `WIDTH / 2`
        // lines), spread through the work rather than asked for at once before it: float32
        // 4, 10 and 14 columns 0.91-0.99x of all at once with one thread, 0.89-0.98x with two
        kernels::prefetch(group.add(16 * pair), ahead);
        let two = if WIDTH <= COLUMNS_F32_RUN {
            let at = _mm512_add_epi32(first_positions, _mm512_set1_epi32(2 * pair as i32));
            // a permute reads two registers (32 values: the low 5 bits of a position); the lanes
            // whose position lies in a later pair of registers take that pair's permute
            let mut two = _mm512_permutex2var_ps(z[0], at, z[1]);
            for source in 1..(7 * WIDTH + 2 * pair + 1).min(floats - 1) / 32 + 1 {
                let later = _mm512_cmpge_epu32_mask(at, _mm512_set1_epi32(32 * source as i32));
                two = _mm512_mask_blend_ps(later, two, _mm512_permutex2var_ps(z[2 * source], at, z[2 * source + 1]));
            }
            two
        } else {
            _mm512_castsi512_ps(pairs[pair])
        };
        let (keep, is_gold) = (plan.keep[pair], plan.is_gold[pair]);
        max = _mm512_mask_max_ps(max, keep, max, two);
        gold = _mm512_mask_mov_ps(gold, is_gold, two);
        // float32 -> float64 is exact, and so is the square of a float32 in float64
        let v = _mm512_cvtps_pd(_mm512_castps512_ps256(two));
        squares[2 * pair] = Some(_mm512_maskz_mul_pd(keep as u8, v, v));
        if 2 * pair + 1 < WIDTH {
            let v = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(two))));
            squares[2 * pair + 1] = Some(_mm512_maskz_mul_pd((keep >> 8) as u8, v, v));
        }
    }
    // the two columns' lanes of each row folded into lanes 0-7 (a gold lane is the only
    // non-zero one of its row, and every value is in [+0, 1], so a max folds it too)
    macro_rules! fold {
        ($v:expr) => {{
            let v = $v;
            _mm512_cvtps_pd(_mm256_max_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)))))
        }};
    }
    Some((fold!(gold), fold!(max), sum_squares(&squares)))
}

/// The gold columns of rows `i..i + 8`, one 64-bit lane each. The plan checked every class
/// index; clamped into the row (`row_len` columns) all the same, as [`row_start`] does.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn group_golds(classes: &[i64], i: usize, row_len: usize) -> __m512i {
    _mm512_min_epu64(_mm512_loadu_si512(classes[i..i + GROUP].as_ptr().cast()), _mm512_set1_epi64(row_len as i64 - 1))
}

/// The sum of a group's squares, column by column (`None`: no such column), in the exact
/// path's order: lane k holds columns k and k + 8, then the lanes pair as ((0 1) (2 3))
/// ((4 5) (6 7)). An absent column is a +0 there, and adding +0 to a non-negative sum changes
/// no bit, so it is left out. A tree, too: a short chain of dependent additions.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sum_squares(squares: &[Option<__m512d>; 16]) -> __m512d {
    macro_rules! lane {
        ($k:literal) => {
            add_present(squares[$k], squares[$k + 8])
        };
    }
    let sum = add_present(add_present(add_present(lane!(0), lane!(1)), add_present(lane!(2), lane!(3))), add_present(add_present(lane!(4), lane!(5)), add_present(lane!(6), lane!(7))));
    sum.expect("a row has a column")
}

/// The sum of the present vectors of two (an absent one stands for a +0 in a sum of
/// non-negative terms, which it would not change).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn add_present(a: Option<__m512d>, b: Option<__m512d>) -> Option<__m512d> {
    match (a, b) {
        (Some(a), Some(b)) => Some(_mm512_add_pd(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Fold 16 float32 lanes (`v`, zero where `load` has no lane; `ok`: the lanes that are
/// probabilities) into a row's summary; the lanes that are not.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fold_f32_lanes(acc: &mut RowAcc<__m512>, v: __m512, ok: u16, load: u16, gold_bit: u16) -> u16 {
    let keep = ok & !gold_bit;
    acc.max = _mm512_mask_max_ps(acc.max, keep, acc.max, v);
    add_f32_squares(acc, v, keep);
    load & !ok
}

/// The float64 squares of the `keep` lanes of 16 float32 lanes added into a row's summary
/// (columns 0-7 and 8-15 apart).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn add_f32_squares(acc: &mut RowAcc<__m512>, v: __m512, keep: u16) {
    // float32 -> float64 is exact, and so is the square of a float32 in float64
    let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))));
    acc.sq_lo = _mm512_mask3_fmadd_pd(lo, lo, acc.sq_lo, keep as u8);
    acc.sq_hi = _mm512_mask3_fmadd_pd(hi, hi, acc.sq_hi, (keep >> 8) as u8);
}

/// The `keep` lanes of 16 float64 lanes (columns 0-7 in `lo`, 8-15 in `hi`) folded into a
/// row's summary: one max over both halves (as the float32 version keeps one 16-lane max),
/// the squares apart.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fold_f64_lanes(acc: &mut RowAcc<__m512d>, lo: __m512d, hi: __m512d, keep: u16) {
    let (keep_lo, keep_hi) = (keep as u8, (keep >> 8) as u8);
    acc.max = _mm512_mask_max_pd(acc.max, keep_lo, acc.max, lo);
    acc.max = _mm512_mask_max_pd(acc.max, keep_hi, acc.max, hi);
    acc.sq_lo = _mm512_mask3_fmadd_pd(lo, lo, acc.sq_lo, keep_lo);
    acc.sq_hi = _mm512_mask3_fmadd_pd(hi, hi, acc.sq_hi, keep_hi);
}

#[cfg(target_arch = "x86_64")]
impl Lanes for f64 {
    type TilePlan<const WIDTH: usize> = ();
    #[inline(always)]
    unsafe fn tile_plan<const WIDTH: usize>(_: &[i64], _: usize) {}
    type Max = __m512d;
    #[inline(always)]
    unsafe fn start() -> RowAcc<__m512d> {
        RowAcc { max: _mm512_setzero_pd(), sq_lo: _mm512_setzero_pd(), sq_hi: _mm512_setzero_pd() }
    }
    #[inline(always)]
    unsafe fn fold16(acc: &mut RowAcc<__m512d>, at: *const f64, load: u16, gold_bit: u16) -> u16 {
        let (load_lo, load_hi) = (load as u8, (load >> 8) as u8);
        let lo = _mm512_maskz_loadu_pd(load_lo, at);
        let hi = _mm512_maskz_loadu_pd(load_hi, at.add(8));
        let (zero, one) = (_mm512_setzero_pd(), _mm512_set1_pd(1.0));
        let ok_lo = _mm512_mask_cmp_pd_mask::<_CMP_LE_OQ>(_mm512_mask_cmp_pd_mask::<_CMP_GE_OQ>(load_lo, lo, zero), lo, one);
        let ok_hi = _mm512_mask_cmp_pd_mask::<_CMP_LE_OQ>(_mm512_mask_cmp_pd_mask::<_CMP_GE_OQ>(load_hi, hi, zero), hi, one);
        let ok = ok_lo as u16 | (ok_hi as u16) << 8;
        fold_f64_lanes(acc, lo, hi, ok & !gold_bit);
        load & !ok
    }
    #[inline(always)]
    unsafe fn max8(max: __m512d) -> __m512d {
        max
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    unsafe fn fast_group<const CHUNKS: usize>(values: &[f64], row_len: usize, i: usize, classes: &[i64], p_gold: &mut [f64], last_load: u16, ahead: usize) -> Option<(__m512d, __m512d)> {
        bits_group::<f64, CHUNKS>(values, row_len, i, classes, p_gold, last_load, ahead)
    }
}

#[cfg(target_arch = "x86_64")]
impl BitLanes for f64 {
    #[inline(always)]
    unsafe fn fold16_bits(acc: &mut RowAcc<__m512d>, at: *const f64, load: u16, keep: u16, highest: &mut __m512i) {
        let lo = _mm512_maskz_loadu_epi64(load as u8, at.cast());
        let hi = _mm512_maskz_loadu_epi64((load >> 8) as u8, at.add(8).cast());
        *highest = _mm512_max_epu64(*highest, _mm512_max_epu64(lo, hi));
        fold_f64_lanes(acc, _mm512_castsi512_pd(lo), _mm512_castsi512_pd(hi), keep);
    }
    #[inline(always)]
    unsafe fn above_one(highest: __m512i) -> bool {
        _mm512_cmpgt_epu64_mask(highest, _mm512_set1_epi64(1.0f64.to_bits() as i64)) != 0
    }
}

/// Eight rows of 16 unsigned 16-bit lanes in, their maxima out: lane `r` is the max of
/// `rows[r]` (an interleaving transpose, 23 operations on 256-bit vectors for eight rows).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose_max_u16(rows: [__m256i; 8]) -> __m128i {
    // within each 128-bit half, pairs of rows interleave 16-bit lanes, then 32-bit ones, then
    // 64-bit ones: [r0 r1 r0 r1 ..], [r0 r1 r2 r3 r0 ..], [r0 r1 .. r7]; the halves last
    macro_rules! level {
        ($lo:ident, $hi:ident, $x:expr, $y:expr) => {
            _mm256_max_epu16($lo($x, $y), $hi($x, $y))
        };
    }
    let r01 = level!(_mm256_unpacklo_epi16, _mm256_unpackhi_epi16, rows[0], rows[1]);
    let r23 = level!(_mm256_unpacklo_epi16, _mm256_unpackhi_epi16, rows[2], rows[3]);
    let r45 = level!(_mm256_unpacklo_epi16, _mm256_unpackhi_epi16, rows[4], rows[5]);
    let r67 = level!(_mm256_unpacklo_epi16, _mm256_unpackhi_epi16, rows[6], rows[7]);
    let r0123 = level!(_mm256_unpacklo_epi32, _mm256_unpackhi_epi32, r01, r23);
    let r4567 = level!(_mm256_unpacklo_epi32, _mm256_unpackhi_epi32, r45, r67);
    let all = level!(_mm256_unpacklo_epi64, _mm256_unpackhi_epi64, r0123, r4567);
    _mm_max_epu16(_mm256_castsi256_si128(all), _mm256_extracti128_si256::<1>(all))
}

/// [`summarize_f32`] for either element type: rows of `CHUNKS` 16-column chunks (a constant,
/// so the common widths unroll), or any number when `CHUNKS` is 0.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn summarize<T: Lanes>(values: &[T], row_len: usize, classes: &[i64], p_gold: &mut [f64], other: &mut [f64], others_sq: &mut [f64]) -> bool {
    match row_len.div_ceil(16) {
        1 => summarize_chunks::<T, 1>(values, row_len, classes, p_gold, other, others_sq),
        2 => summarize_chunks::<T, 2>(values, row_len, classes, p_gold, other, others_sq),
        3 => summarize_chunks::<T, 3>(values, row_len, classes, p_gold, other, others_sq),
        4 => summarize_chunks::<T, 4>(values, row_len, classes, p_gold, other, others_sq),
        _ => summarize_chunks::<T, 0>(values, row_len, classes, p_gold, other, others_sq),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn summarize_chunks<T: Lanes, const CHUNKS: usize>(values: &[T], row_len: usize, classes: &[i64], p_gold: &mut [f64], other: &mut [f64], others_sq: &mut [f64]) -> bool {
    let n = classes.len();
    let last_load: u16 = if row_len.is_multiple_of(16) { u16::MAX } else { (1u16 << (row_len % 16)) - 1 };
    // lanes that ever held a value outside [0, 1]
    let mut bad: u16 = 0;
    let mut i = 0;
    // full groups, each row's vectors in named locals (an array indexed in a loop went through
    // the stack), then the rest of the rows
    while i + GROUP <= n {
        if let Some((max, sum)) = T::fast_group::<CHUNKS>(values, row_len, i, classes, p_gold, last_load, AHEAD) {
            _mm512_storeu_pd(other.as_mut_ptr().add(i), max);
            _mm512_storeu_pd(others_sq.as_mut_ptr().add(i), sum);
            i += GROUP;
            continue;
        }
        macro_rules! row {
            ($r:expr) => {
                row_vectors::<T, CHUNKS>(values, row_len, i + $r, classes, p_gold, last_load, AHEAD, &mut bad)
            };
        }
        let (r0, r1, r2, r3, r4, r5, r6, r7) = (row!(0), row!(1), row!(2), row!(3), row!(4), row!(5), row!(6), row!(7));
        let max = transpose_reduce!([r0.0, r1.0, r2.0, r3.0, r4.0, r5.0, r6.0, r7.0], _mm512_max_pd);
        let sum = transpose_reduce!([r0.1, r1.1, r2.1, r3.1, r4.1, r5.1, r6.1, r7.1], _mm512_add_pd);
        _mm512_storeu_pd(other.as_mut_ptr().add(i), max);
        _mm512_storeu_pd(others_sq.as_mut_ptr().add(i), sum);
        i += GROUP;
    }
    if i < n {
        let rows = n - i;
        let mut maxima = [_mm512_setzero_pd(); GROUP];
        let mut squares = [_mm512_setzero_pd(); GROUP];
        for r in 0..rows {
            (maxima[r], squares[r]) = row_vectors::<T, CHUNKS>(values, row_len, i + r, classes, p_gold, last_load, AHEAD, &mut bad);
        }
        let store: u8 = (1u8 << rows) - 1;
        _mm512_mask_storeu_pd(other.as_mut_ptr().add(i), store, transpose_reduce!(maxima, _mm512_max_pd));
        _mm512_mask_storeu_pd(others_sq.as_mut_ptr().add(i), store, transpose_reduce!(squares, _mm512_add_pd));
    }
    bad == 0
}

/// Row `i`'s max (over 8 float64 lanes) and float64 squares (8 lanes) of the columns other
/// than gold; its gold probability goes to `p_gold[i]`, its lanes outside [0, 1] into `bad`;
/// the row `ahead` bytes on is prefetched ([`prefetch_row`], or chunk by chunk:
/// [`prefetch_chunk`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn row_vectors<T: Lanes, const CHUNKS: usize>(values: &[T], row_len: usize, i: usize, classes: &[i64], p_gold: &mut [f64], last_load: u16, ahead: usize, bad: &mut u16) -> (__m512d, __m512d) {
    let (row, gold) = row_start::<T, CHUNKS>(values, row_len, i, classes, p_gold, ahead);
    let mut acc = T::start();
    for c in 0..chunk_count::<CHUNKS>(row_len) {
        prefetch_chunk::<T, CHUNKS>(row, c, ahead);
        let (load, gold_bit) = chunk_masks::<CHUNKS>(c, row_len, last_load, gold);
        // the gold column and any value outside [0, 1] take no part (all others are >= 0)
        *bad |= T::fold16(&mut acc, row.add(16 * c), load, gold_bit);
    }
    (T::max8(acc.max), _mm512_add_pd(acc.sq_lo, acc.sq_hi))
}

/// Rows of any number of chunks (`CHUNKS` 0, more than 64 columns): chunk `c` of `row` asked
/// for `ahead` bytes on, a line at a time as the chunks reach it, instead of the whole row's
/// lines at its start ([`prefetch_row`]). A thousand-column float32 row is 63 lines: asked for
/// in one burst, the prefetches waited on each other at every row's start, and so did the
/// row's first loads. Measured on Zen 4 against the burst 2 KiB ahead (a process per build,
/// 13-15 interleaved rounds, 1 / 2 threads), 4 KiB ahead: float32 `[5, 40k, 1000]` 0.83-0.84x /
/// 0.87-0.91x, float64 `[10, 100k, 100]` 0.92-0.93x / 0.93-0.94x, float16 `[10, 200k, 100]`
/// 0.97-0.98x / 0.93-0.96x, float32 `[10, 200k, 100]` even (0.98-1.00x); 2 KiB ahead: float32
/// 1000 columns 0.92x / 0.94x; 1 KiB: even with the burst; 6 and 8 KiB: as 4.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_chunk<T, const CHUNKS: usize>(row: *const T, c: usize, ahead: usize) {
    if CHUNKS != 0 {
        return;
    }
    let bytes = 16 * std::mem::size_of::<T>();
    if bytes >= 64 {
        kernels::prefetch_lines(row.add(16 * c), bytes, ahead);
    } else if (c * bytes).is_multiple_of(64) {
        // (float16: a line every other chunk)
        kernels::prefetch(row.add(16 * c), ahead);
    }
}

/// The 16-column chunks of a row: `CHUNKS`, or any number when it is 0.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn chunk_count<const CHUNKS: usize>(row_len: usize) -> usize {
    if CHUNKS > 0 {
        CHUNKS
    } else {
        row_len.div_ceil(16)
    }
}

/// Row `i`'s first value and gold column, the row prefetched ([`prefetch_row`]: rows of up to
/// four chunks); its gold probability goes to `p_gold[i]`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn row_start<T: Lanes, const CHUNKS: usize>(values: &[T], row_len: usize, i: usize, classes: &[i64], p_gold: &mut [f64], ahead: usize) -> (*const T, usize) {
    let row = values.as_ptr().add(i * row_len);
    prefetch_row::<T, CHUNKS>(row, row_len * std::mem::size_of::<T>(), ahead);
    // the plan checked every class index against the row length; clamped all the same (one
    // instruction), so that no index can read outside the row
    let gold = (classes[i] as u64).min(row_len as u64 - 1) as usize;
    p_gold[i] = T::gold(row.add(gold));
    (row, gold)
}

/// Ask for the row `ahead` bytes on from `row` (`row_bytes` long): a block's chunk is a few
/// pages of one epoch, and the hardware prefetcher stops at every page boundary. Rows of up to
/// 128 bytes: their first and last lines; wider rows of up to four chunks: line by line; rows
/// of more chunks are asked for chunk by chunk instead ([`prefetch_chunk`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_row<T, const CHUNKS: usize>(row: *const T, row_bytes: usize, ahead: usize) {
    if CHUNKS == 0 {
        // (asked for chunk by chunk instead: `prefetch_chunk`)
        return;
    }
    if CHUNKS * 16 * std::mem::size_of::<T>() <= 128 {
        kernels::prefetch(row, ahead);
        kernels::prefetch(row.cast::<u8>().wrapping_add(row_bytes - 1), ahead);
    } else {
        kernels::prefetch_lines(row, row_bytes, ahead);
    }
}

/// Chunk `c` of a row: the lanes the row has, and the gold column's bit among them.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn chunk_masks<const CHUNKS: usize>(c: usize, row_len: usize, last_load: u16, gold: usize) -> (u16, u16) {
    let load = if c + 1 == chunk_count::<CHUNKS>(row_len) { last_load } else { u16::MAX };
    // up to 4 unrolled chunks: the gold column's bit in a 64-bit mask, shifted per chunk
    let gold_bit = if CHUNKS > 0 {
        ((1u64 << gold) >> (16 * c)) as u16
    } else {
        let offset = gold.wrapping_sub(16 * c);
        if offset < 16 {
            1 << offset
        } else {
            0
        }
    };
    (load, gold_bit)
}
