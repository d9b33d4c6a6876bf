//! The AVX-512 row summary ([`avx512`]) against the portable ones it replaces on machines that
//! have AVX-512 (row groups, [`summarize_rows`], and one row at a time in lanes,
//! [`summarize_wide_rows`]): there the portable code no longer runs in any other test.
//!
//! Both compute, per row, the gold probability, the others' max and float64 sum of squares,
//! and whether every value is in [0, 1]. The gold probability and the max must agree exactly;
//! the sums are taken in different orders, so they agree within the rounding bound of a sum of
//! non-negative terms (below). Float32 and float64 rows of the same values must give the same
//! bits. On a machine without AVX-512 the comparisons are skipped with a note.

use super::{avx512, summarize_rows, summarize_wide_rows, Float, Stored, Summaries};
use crate::dynamics::{Dims, DynamicsView, Probs};
use crate::stats::{compute, Correctness, Labels, Options, Task};
use half::f16;
use proptest::prelude::*;

/// Row lengths at the edges of the 16-column chunks (one to four unrolled chunks, then any
/// number), of the row groups (up to 10 columns) and of the 8-lane portable path.
const EDGE_LENGTHS: [usize; 14] = [3, 8, 10, 11, 15, 16, 17, 31, 32, 33, 48, 64, 65, 1000];

/// One summary per row, and whether every value was a probability.
#[derive(Debug, Clone)]
struct Summary {
    p_gold: Vec<f64>,
    other: Vec<f64>,
    others_sq: Vec<f64>,
    valid: bool,
}

impl Summary {
    fn new(rows: usize) -> Self {
        Summary { p_gold: vec![f64::NAN; rows], other: vec![f64::NAN; rows], others_sq: vec![f64::NAN; rows], valid: false }
    }
}

fn with_avx512<F: Float>(values: &[F], row_len: usize, classes: &[i64]) -> Summary {
    let mut out = Summary::new(classes.len());
    out.valid = F::summarize_avx512(values, row_len, classes, &mut out.p_gold, &mut out.other, &mut out.others_sq);
    out
}

fn with_avx512_f16(values: &[f16], row_len: usize, classes: &[i64]) -> Summary {
    let mut out = Summary::new(classes.len());
    out.valid = avx512::summarize_f16(values, row_len, classes, &mut out.p_gold, &mut out.other, &mut out.others_sq);
    out
}

/// The float16 summary of `half` gives the float32 summary of the same values widened and
/// clamped within float16's tolerance, bit for bit, and the same validity: its fast path
/// (values in [+0, 1], checked and maxed as 16-bit integers) and its exact path alike.
fn check_f16(half: &[f16], row_len: usize, classes: &[i64], context: &str) -> Result<(), TestCaseError> {
    let widened: Vec<f32> = half.iter().map(|&x| x.value()).collect();
    let (fast16, fast32) = (with_avx512_f16(half, row_len, classes), with_avx512(&widened, row_len, classes));
    let within = half.iter().all(|&x| (-super::F16_TOLERANCE..=1.0 + super::F16_TOLERANCE).contains(&x.to_f32()));
    prop_assert_eq!(fast16.valid, within, "float16 validity, {}", context);
    prop_assert_eq!(fast32.valid, within, "widened float32 validity, {}", context);
    if within {
        for row in 0..classes.len() {
            prop_assert_eq!(fast16.p_gold[row].to_bits(), fast32.p_gold[row].to_bits(), "float16 p_gold of row {}, {}", row, context);
            prop_assert!(fast16.other[row] == fast32.other[row], "float16 max of row {}: {} vs {}, {}", row, fast16.other[row], fast32.other[row], context);
            prop_assert_eq!(fast16.others_sq[row].to_bits(), fast32.others_sq[row].to_bits(), "float16 sum of squares of row {}, {}", row, context);
        }
    }
    Ok(())
}

/// A portable pass 1: `wide` picks the one-row-at-a-time path, else row groups.
fn portable<F: Float>(values: &[F], row_len: usize, classes: &[i64], wide: bool) -> Summary {
    let mut out = Summary::new(classes.len());
    let mut gold_first = vec![false; classes.len()];
    let summaries = Summaries { p_gold: &mut out.p_gold, other: &mut out.other, others_sq: &mut out.others_sq, gold_first: &mut gold_first };
    out.valid = if wide { summarize_wide_rows(values, row_len, classes, false, summaries) } else { summarize_rows::<F, false>(values, row_len, classes, summaries) };
    out
}

/// The AVX-512 summary `fast` against a portable `slow` one of the same rows: the same
/// validity, and for valid rows the same gold probability and max (as numbers: the AVX-512 max
/// may keep a -0.0 where the portable one keeps its initial +0.0, which no statistic can tell
/// apart) and sums of squares within the rounding bound: both are sums of `row_len` non-negative
/// float64 terms, each within `(row_len + 1) * eps / 2` of the exact sum relative to it, so
/// they differ by at most `(row_len + 1) * eps` relative.
fn assert_agree(fast: &Summary, slow: &Summary, row_len: usize, context: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(fast.valid, slow.valid, "validity, {}", context);
    if !fast.valid {
        return Ok(()); // the summaries are documented as meaningless then
    }
    let bound = (row_len + 1) as f64 * f64::EPSILON;
    for row in 0..fast.p_gold.len() {
        prop_assert_eq!(fast.p_gold[row].to_bits(), slow.p_gold[row].to_bits(), "p_gold of row {}, {}", row, context);
        prop_assert!(fast.other[row] == slow.other[row], "max of row {}: {} vs {}, {}", row, fast.other[row], slow.other[row], context);
        let (a, b) = (fast.others_sq[row], slow.others_sq[row]);
        prop_assert!((a - b).abs() <= bound * a.max(b), "sum of squares of row {}: {} vs {} ({:e} relative), {}", row, a, b, (a - b).abs() / a.max(b), context);
    }
    Ok(())
}

/// A cell of a generated row, made concrete once the row's gold value is known.
#[derive(Debug, Clone, Copy)]
enum Cell {
    Value(f32),
    /// exactly the row's gold probability
    TieWithGold,
}

fn cell() -> impl Strategy<Value = Cell> {
    prop_oneof![
        2 => Just(Cell::Value(0.0)),
        1 => Just(Cell::Value(-0.0)),
        2 => Just(Cell::Value(1.0)),
        2 => Just(Cell::Value(0.5)),
        3 => Just(Cell::TieWithGold),
        6 => (0.0f32..=1.0).prop_map(Cell::Value),
        // tiny values: float16 subnormals (below 2^-14) and values float16 rounds to zero, which
        // a widening by bit placement gets wrong (a uniform draw in [0, 1] almost never is one)
        3 => (-30i32..=-1, 0.0f32..1.0).prop_map(|(e, m)| Cell::Value((1.0 + m) * f32::from_bits(((127 + e) as u32) << 23))),
        // float32 subnormals
        1 => (1u32..0x0080_0000).prop_map(|bits| Cell::Value(f32::from_bits(bits))),
    ]
}

/// Values outside [0, 1], each one enough to make a row invalid (all representable in float32).
fn invalid_value() -> impl Strategy<Value = f32> {
    prop::sample::select(vec![f32::NAN, -0.25, 1.5, f32::INFINITY, f32::NEG_INFINITY, 1.0 + f32::EPSILON, -f32::MIN_POSITIVE])
}

#[derive(Debug, Clone)]
struct Rows {
    row_len: usize,
    classes: Vec<i64>,
    values: Vec<f32>,
}

/// `rows` rows (1 to 40: full groups of eight and a partial one) of `row_len` columns (3 to 70,
/// or an edge length), gold first, last or anywhere, and a quarter of the time one value
/// outside [0, 1] at a random cell (the gold column, a chunk's tail lanes, a partial group).
fn rows() -> impl Strategy<Value = Rows> {
    (prop_oneof![3usize..=70, prop::sample::select(EDGE_LENGTHS.to_vec())], 1usize..=40)
        .prop_flat_map(|(row_len, rows)| {
            let gold = prop_oneof![Just(0i64), Just(row_len as i64 - 1), 0..row_len as i64];
            (
                Just(row_len),
                proptest::collection::vec(gold, rows),
                proptest::collection::vec(cell(), rows * row_len),
                prop::option::weighted(0.25, (0..rows * row_len, invalid_value())),
            )
        })
        .prop_map(|(row_len, classes, cells, invalid)| {
            let mut values = Vec::with_capacity(cells.len());
            for (row, &gold) in cells.chunks_exact(row_len).zip(&classes) {
                let gold_value = match row[gold as usize] {
                    Cell::Value(v) => v,
                    Cell::TieWithGold => 0.5,
                };
                values.extend(row.iter().map(|&c| match c {
                    Cell::Value(v) => v,
                    Cell::TieWithGold => gold_value,
                }));
            }
            if let Some((at, bad)) = invalid {
                values[at] = bad;
            }
            Rows { row_len, classes, values }
        })
}

/// Every comparison for one set of rows (float32 and float64).
fn check(rows: &Rows) -> Result<(), TestCaseError> {
    let Rows { row_len, classes, values } = rows;
    let row_len = *row_len;
    let wide: Vec<f64> = values.iter().map(|&x| x as f64).collect();
    let fast32 = with_avx512(values, row_len, classes);
    let fast64 = with_avx512(&wide, row_len, classes);
    let expect_valid = values.iter().all(|&x| (0.0..=1.0).contains(&x));
    prop_assert_eq!(fast32.valid, expect_valid, "float32 validity");
    prop_assert_eq!(fast64.valid, expect_valid, "float64 validity");
    let context = format!("{row_len} columns, {} rows", classes.len());
    // row groups run on any width; the one-row path needs at least its 8 lanes
    assert_agree(&fast32, &portable(values, row_len, classes, false), row_len, &format!("float32 row groups, {context}"))?;
    assert_agree(&fast64, &portable(&wide, row_len, classes, false), row_len, &format!("float64 row groups, {context}"))?;
    if row_len >= 8 {
        assert_agree(&fast32, &portable(values, row_len, classes, true), row_len, &format!("float32 wide rows, {context}"))?;
        assert_agree(&fast64, &portable(&wide, row_len, classes, true), row_len, &format!("float64 wide rows, {context}"))?;
    }
    // float16: the rows rounded to it, and again with 1.0 a unit in the last place above 1
    // and zeros a hair below 0 (within its tolerance: clamped)
    let half: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
    check_f16(&half, row_len, classes, &format!("float16, {context}"))?;
    let nudged: Vec<f16> = half.iter().map(|&x| if x == f16::ONE { f16::from_bits(0x3c01) } else if x == f16::ZERO { f16::from_bits(0x8001) } else { x }).collect();
    check_f16(&nudged, row_len, classes, &format!("float16 nudged outside [0, 1], {context}"))?;
    if expect_valid {
        // the same lanes in the same order: float32 and float64 rows give the same bits
        for row in 0..classes.len() {
            prop_assert_eq!(fast32.p_gold[row].to_bits(), fast64.p_gold[row].to_bits(), "p_gold of row {}", row);
            // the max's sign of zero depends on the reduction tree (16 float32 lanes, 8 float64
            // ones: `max(+0, -0)` keeps its second operand), and nothing depends on it: margins
            // subtract it into a sum that starts at +0, and every comparison treats ±0 alike
            prop_assert!(fast32.other[row] == fast64.other[row], "max of row {}: {} vs {}", row, fast32.other[row], fast64.other[row]);
            prop_assert_eq!(fast32.others_sq[row].to_bits(), fast64.others_sq[row].to_bits(), "sum of squares of row {}", row);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn avx512_summary_matches_the_portable_one(rows in rows()) {
        if !avx512::available() {
            println!("no AVX-512 on this machine: the AVX-512 summary is not compared");
            return Ok(());
        }
        check(&rows)?;
    }
}

/// Every fixed edge length with 1, 7, 8, 9 and 17 rows (partial and full groups of eight),
/// gold on the first and the last column, every value a distinct probability so that a lane
/// read from the wrong column or row shows.
#[test]
fn avx512_summary_matches_the_portable_one_at_the_edges() {
    if !avx512::available() {
        println!("no AVX-512 on this machine: the AVX-512 summary is not compared");
        return;
    }
    for row_len in EDGE_LENGTHS {
        for n in [1usize, 7, 8, 9, 17] {
            let values: Vec<f32> = (0..n * row_len).map(|i| ((i * 7919) % 10007) as f32 / 10007.0).collect();
            for classes in [vec![0i64; n], vec![row_len as i64 - 1; n], (0..n).map(|i| (i * 5 % row_len) as i64).collect()] {
                let rows = Rows { row_len, classes, values: values.clone() };
                check(&rows).unwrap_or_else(|e| panic!("{row_len} columns, {n} rows: {e}"));
            }
            // one value outside [0, 1] in the very last lane read
            let mut bad = values.clone();
            *bad.last_mut().unwrap() = 1.5;
            let rows = Rows { row_len, classes: vec![0; n], values: bad };
            check(&rows).unwrap_or_else(|e| panic!("{row_len} columns, {n} rows, last value bad: {e}"));
            assert!(!with_avx512(&rows.values, row_len, &rows.classes).valid);
        }
    }
}

/// The masked loads read nothing past the last row: rows that end exactly where an
/// inaccessible page begins are summarized without a fault (float32, float64 and float16).
#[cfg(target_os = "linux")]
#[test]
fn avx512_summary_reads_nothing_past_the_last_row() {
    if !avx512::available() {
        println!("no AVX-512 on this machine: the AVX-512 summary is not compared");
        return;
    }
    let page = 4096usize;
    // SAFETY: a fresh private anonymous mapping of two pages, the second made inaccessible; it
    // is only read within the first page and unmapped at the end.
    let base = unsafe {
        let base = libc::mmap(std::ptr::null_mut(), 2 * page, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        assert_ne!(base, libc::MAP_FAILED);
        assert_eq!(libc::mprotect(base.cast::<u8>().add(page).cast(), page, libc::PROT_NONE), 0);
        base.cast::<u8>()
    };
    for row_len in [3usize, 5, 17, 33, 70] {
        for n in [1usize, 3, 7] {
            let classes: Vec<i64> = (0..n).map(|i| (i % row_len) as i64).collect();
            let expected: Vec<f64> = (0..n * row_len).map(|i| (i % 4) as f64 / 4.0).collect();
            let portable_sum = portable(&expected, row_len, &classes, false);
            // SAFETY: each slice lies inside the accessible first page and ends at its end;
            // only one of them is alive at a time.
            let fast64 = unsafe {
                let f64_values = std::slice::from_raw_parts_mut(base.add(page - 8 * n * row_len).cast::<f64>(), n * row_len);
                f64_values.copy_from_slice(&expected);
                with_avx512(f64_values, row_len, &classes)
            };
            assert_agree(&fast64, &portable_sum, row_len, "float64 at a page end").unwrap();
            // SAFETY: as above
            let fast32 = unsafe {
                let f32_values = std::slice::from_raw_parts_mut(base.add(page - 4 * n * row_len).cast::<f32>(), n * row_len);
                for (x, &e) in f32_values.iter_mut().zip(&expected) {
                    *x = e as f32;
                }
                with_avx512(f32_values, row_len, &classes)
            };
            assert_agree(&fast32, &portable_sum, row_len, "float32 at a page end").unwrap();
            // SAFETY: as above
            let fast16 = unsafe {
                let f16_values = std::slice::from_raw_parts_mut(base.add(page - 2 * n * row_len).cast::<f16>(), n * row_len);
                for (x, &e) in f16_values.iter_mut().zip(&expected) {
                    *x = f16::from_f64(e);
                }
                with_avx512_f16(f16_values, row_len, &classes)
            };
            assert_agree(&fast16, &portable_sum, row_len, "float16 at a page end").unwrap();
        }
    }
    // SAFETY: the mapping made above, no longer referenced
    unsafe { libc::munmap(base.cast(), 2 * page) };
}

/// Wide rows (the AVX-512 pass where the machine has it, the portable one elsewhere) with one
/// value beyond the tolerance at a few places (first column, gold, middle, the
/// last lane of the first 16-column chunk, the last column of the last row) are refused naming that exact cell, for every dtype; values within
/// the tolerance are clamped, giving the clean data's results exactly.
#[test]
fn wide_rows_with_a_value_outside_the_unit_interval() {
    let (e, n) = (2usize, 11usize);
    for l in [11usize, 17, 33, 70] {
        let clean: Vec<f32> = (0..e * n * l).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let gold: Vec<i64> = (0..n).map(|i| ((i * 3) % l) as i64).collect();
        let dims = Dims { n_epochs: e, n_examples: n, n_labels: l };
        let options = Options { task: Task::Multiclass, correctness: Correctness::Argmax, epochs: 0..e, threads: Some(2), ..Options::default() };
        let run = |probs: Probs<'_>| compute(DynamicsView::new(probs, dims, "d.npy").unwrap(), Labels::Classes(&gold), &options, None);
        let expected = run(Probs::F32(&clean)).unwrap();
        // (epoch, example, label)
        let places = [(0usize, 0usize, 0usize), (1, 4, gold[4] as usize), (0, 9, l / 2), (0, 2, 15.min(l - 1)), (1, n - 1, l - 1)];
        for (epoch, example, label) in places {
            let at = (epoch * n + example) * l + label;
            for bad in [f32::NAN, -0.25, 1.5, f32::INFINITY] {
                let mut data = clean.clone();
                data[at] = bad;
                let wide: Vec<f64> = data.iter().map(|&x| x as f64).collect();
                let half: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
                for (dtype, probs) in [("float32", Probs::F32(&data)), ("float64", Probs::F64(&wide)), ("float16", Probs::F16(&half))] {
                    let message = run(probs).err().unwrap_or_else(|| panic!("{dtype} {l} columns: {bad} at {at} accepted")).to_string();
                    let cell = format!("epoch {epoch}, example {example}, label {label}");
                    assert!(message.contains("expected probabilities in [0, 1]") && message.contains(&cell), "{dtype} {l} columns, {bad}: {message}");
                }
            }
            // rounding a hair outside [0, 1]: clamped, the clean data's results
            let mut rounded = clean.clone();
            rounded[at] = if clean[at] >= 0.5 { 1.0 + 2.0 * f32::EPSILON } else { -f32::EPSILON };
            let mut clamped = clean.clone();
            clamped[at] = if clean[at] >= 0.5 { 1.0 } else { 0.0 };
            assert_eq!(run(Probs::F32(&rounded)).unwrap(), run(Probs::F32(&clamped)).unwrap(), "{l} columns, rounding at {at}");
        }
        assert_eq!(run(Probs::F32(&clean)).unwrap(), expected);
    }
}

/// The fast paths' integer range checks at their edges: in every row of a full group of eight
/// (and of a partial one) and every seventh cell, a value one unit in the last place outside
/// [0, 1] (or -0.0, which is a probability) takes the exact path and gets its verdict; float16
/// values just inside and just outside its tolerance likewise. Rows of 10 columns (the column
/// paths; float64's bits path), 28 (two chunks) and 70 (any number of chunks).
#[test]
fn fast_path_range_checks_at_their_edges() {
    if !avx512::available() {
        println!("no AVX-512 on this machine: the AVX-512 summary is not compared");
        return;
    }
    for (row_len, n) in [(10, 8usize), (10, 13), (28, 8), (28, 13), (70, 9)] {
        let values: Vec<f32> = (0..n * row_len).map(|i| ((i * 7919) % 10007) as f32 / 10007.0).collect();
        let classes: Vec<i64> = (0..n).map(|i| (i * 3 % row_len) as i64).collect();
        for at in (0..n * row_len).step_by(7) {
            for (bad, valid) in [(1.0 + f32::EPSILON, false), (-f32::MIN_POSITIVE, false), (f32::NAN, false), (-0.0, true), (1.0, true)] {
                let mut data = values.clone();
                data[at] = bad;
                let rows = Rows { row_len, classes: classes.clone(), values: data.clone() };
                check(&rows).unwrap_or_else(|e| panic!("{bad} at {at}: {e}"));
                assert_eq!(with_avx512(&data, row_len, &classes).valid, valid, "float32 {bad} at {at}");
            }
            let half: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
            let tolerance = f16::from_f32(super::F16_TOLERANCE);
            let beyond_high = f16::from_bits(f16::from_f32(1.0 + super::F16_TOLERANCE).to_bits() + 1);
            let beyond_low = f16::from_bits(tolerance.to_bits() + 1 + 0x8000);
            for (bad, valid) in [(f16::from_bits(0x3c01), true), (-tolerance, true), (f16::NEG_ZERO, true), (beyond_high, false), (beyond_low, false), (f16::NAN, false)] {
                let mut data = half.clone();
                data[at] = bad;
                check_f16(&data, row_len, &classes, "edges").unwrap_or_else(|e| panic!("float16 {bad} at {at}: {e}"));
                assert_eq!(with_avx512_f16(&data, row_len, &classes).valid, valid, "float16 {bad} at {at}");
            }
        }
    }
}

/// The float16 wide-row fast path adds a row's squares in another order than the exact path
/// (and the float32 summary): the same bits while a row's sum stays below 2^5, and the exact
/// path's beyond. Rows of 40 to 100 columns holding many 1.0s and a 2^-24 in every eighth
/// column (squares of 2^-48, which a sum past 2^5 keeps only when they are added together
/// before they meet the ones) must still give the float32 summary's bits.
#[test]
fn float16_wide_rows_whose_squares_sum_past_32_give_the_float32_bits() {
    if !avx512::available() {
        println!("no AVX-512 on this machine: the AVX-512 summary is not compared");
        return;
    }
    let tiny = f16::from_bits(1); // 2^-24
    for row_len in [40usize, 48, 64, 65, 100] {
        let n = 16;
        let classes: Vec<i64> = (0..n).map(|r| (r * 5 % row_len) as i64).collect();
        let values: Vec<f16> = (0..n * row_len)
            .map(|i| {
                let (row, column) = (i / row_len, i % row_len);
                if column % 8 == row % 8 { tiny } else { f16::ONE }
            })
            .collect();
        let summary = with_avx512_f16(&values, row_len, &classes);
        assert!(summary.others_sq.iter().any(|&s| s >= 32.0), "{row_len} columns: no row sums past 2^5, so the case is not tested");
        check_f16(&values, row_len, &classes, &format!("{row_len} columns")).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Float16 rows of more than four chunks add gold's square into the row's sum and take it off
/// at the end, so the 2^5 check must see the sum with gold's square. Rows of 65 and 100 columns
/// of 32 ones, gold among them, and one 2^-24 (a square of 2^-48, which 2^5 + 2^-48 loses and
/// 31 + 2^-48 keeps) must give the float32 summary's bits: checked after the subtraction, the
/// sum would be 31.
#[test]
fn float16_wide_rows_whose_squares_reach_32_only_with_gold_give_the_float32_bits() {
    if !avx512::available() {
        println!("no AVX-512 on this machine: the AVX-512 summary is not compared");
        return;
    }
    let tiny = f16::from_bits(1); // 2^-24
    for row_len in [65usize, 100] {
        let n = 16;
        let classes: Vec<i64> = (0..n).map(|r| (r * 2) as i64).collect();
        let values: Vec<f16> = (0..n * row_len)
            .map(|i| {
                let (row, column) = (i / row_len, i % row_len);
                if column < 32 {
                    f16::ONE
                } else if column == 40 + row {
                    tiny
                } else {
                    f16::ZERO
                }
            })
            .collect();
        let summary = with_avx512_f16(&values, row_len, &classes);
        assert!(summary.others_sq.iter().all(|&s| s == 31.0 + 2f64.powi(-48)), "{row_len} columns: {:?}", summary.others_sq);
        check_f16(&values, row_len, &classes, &format!("{row_len} columns")).unwrap_or_else(|e| panic!("{e}"));
    }
}
