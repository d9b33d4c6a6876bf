use super::*;
use crate::dynamics::{Dims, Probs};
use crate::error::Error;
use half::f16;
use proptest::prelude::*;

/// Two-pass textbook statistics for one unit's gold probabilities and per-epoch verdicts.
fn naive(p: &[f64], right: &[bool], margins: &[f64], el2n: &[f64], ddof: usize) -> (f64, f64, f64, i32, bool, i32, f64, f64, f64) {
    let n = p.len() as f64;
    let mean = p.iter().sum::<f64>() / n;
    let var = p.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - ddof as f64);
    let forgetting = right.windows(2).filter(|w| w[0] && !w[1]).count() as i32;
    let first = if *right.last().unwrap() { right.iter().rposition(|r| !r).map(|i| i as i32 + 1).unwrap_or(0) } else { -1 };
    (
        mean,
        var.sqrt(),
        right.iter().filter(|r| **r).count() as f64 / n,
        forgetting,
        !right.iter().any(|r| *r),
        first,
        margins.iter().sum::<f64>() / n,
        p.iter().map(|x| x * (1.0 - x)).sum::<f64>() / n,
        el2n.iter().sum::<f64>() / n,
    )
}

fn check_unit(stats: &Statistics, u: usize, expected: (f64, f64, f64, i32, bool, i32, f64, f64, f64)) {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 + 1e-9 * b.abs();
    assert!(close(stats.confidence[u], expected.0), "confidence {u}");
    assert!(close(stats.variability[u], expected.1), "variability {u}: {} vs {}", stats.variability[u], expected.1);
    assert_eq!(stats.correctness[u], expected.2, "correctness {u}");
    assert_eq!(stats.forgetting[u], expected.3, "forgetting {u}");
    assert_eq!(stats.never_learned[u], expected.4, "never_learned {u}");
    assert_eq!(stats.first_learned[u], expected.5, "first_learned {u}");
    assert!(close(stats.margin[u], expected.6), "margin {u}");
    assert!(close(stats.aleatoric[u], expected.7), "aleatoric {u}");
    assert!(close(stats.el2n[u], expected.8), "el2n {u}");
    assert!(close(stats.threshold_closeness[u], expected.0 * (1.0 - expected.0)));
}

/// Values drawn from a few exact corners (0, 0.5, 1) and arbitrary probabilities.
fn probability() -> impl Strategy<Value = f32> {
    prop_oneof![Just(0.0f32), Just(0.5f32), Just(1.0f32), 0.0f32..=1.0f32]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn multiclass_matches_the_naive_definitions(
        (e, n, l, data, gold) in (1usize..6, 1usize..40, prop_oneof![2usize..7, 7usize..40]).prop_flat_map(|(e, n, l)| (
            Just(e), Just(n), Just(l),
            proptest::collection::vec(probability(), e * n * l),
            proptest::collection::vec(0..l as i64, n),
        )),
        correctness in prop_oneof![Just(Correctness::Argmax), Just(Correctness::ArgmaxFirstIndex), (0.0f64..=1.0).prop_map(Correctness::Threshold)],
        threads in 1usize..4,
    ) {
        let view = DynamicsView::new(Probs::F32(&data), Dims { n_epochs: e, n_examples: n, n_labels: l }, "t").unwrap();
        let options = Options { task: Task::Multiclass, correctness, epochs: 0..e, ddof: 0, threads: Some(threads), class_means: false, outputs: Outputs::ALL, copy_labels: false };
        let stats = compute(view, Labels::Classes(&gold), &options, None).unwrap();
        for i in 0..n {
            let g = gold[i] as usize;
            let (mut p, mut right, mut margins, mut el2n) = (vec![], vec![], vec![], vec![]);
            for ep in 0..e {
                let row: Vec<f64> = data[(ep * n + i) * l..(ep * n + i + 1) * l].iter().map(|&x| x as f64).collect();
                let other = row.iter().enumerate().filter(|(j, _)| *j != g).map(|(_, x)| *x).fold(f64::NEG_INFINITY, f64::max);
                p.push(row[g]);
                // the first-index rule is np.argmax's: the first largest column wins
                let first_largest = row.iter().enumerate().fold(0, |best, (j, &x)| if x > row[best] { j } else { best });
                right.push(match correctness {
                    Correctness::Argmax => row[g] > other,
                    Correctness::ArgmaxFirstIndex => first_largest == g,
                    Correctness::Threshold(t) => row[g] >= t,
                });
                margins.push(row[g] - other);
                el2n.push(row.iter().enumerate().map(|(j, x)| (x - if j == g { 1.0 } else { 0.0 }).powi(2)).sum::<f64>().sqrt());
            }
            check_unit(&stats, i, naive(&p, &right, &margins, &el2n, 0));
        }
    }

    #[test]
    fn multilabel_and_binary_match_the_naive_definitions(
        (e, n, l, data, targets) in (1usize..6, 1usize..30, 1usize..5).prop_flat_map(|(e, n, l)| (
            Just(e), Just(n), Just(l),
            proptest::collection::vec(probability(), e * n * l),
            proptest::collection::vec(0u8..2, n * l),
        )),
        threshold in 0.0f64..=1.0,
        skip in 0usize..3,
    ) {
        let start = skip.min(e - 1);
        let view = DynamicsView::new(Probs::F32(&data), Dims { n_epochs: e, n_examples: n, n_labels: l }, "t").unwrap();
        let options = Options { task: Task::Multilabel, correctness: Correctness::Threshold(threshold), epochs: start..e, ddof: 0, threads: None, class_means: false, outputs: Outputs::ALL, copy_labels: false };
        let stats = compute(view, Labels::Multilabel(&targets), &options, None).unwrap();
        for u in 0..n * l {
            let p: Vec<f64> = (start..e).map(|ep| {
                let x = data[ep * n * l + u] as f64;
                if targets[u] == 1 { x } else { 1.0 - x }
            }).collect();
            // the stored value x = P(label) predicts the label when x >= threshold
            let right: Vec<bool> = (start..e).map(|ep| (data[ep * n * l + u] as f64 >= threshold) == (targets[u] == 1)).collect();
            let margins: Vec<f64> = p.iter().map(|&x| 2.0 * x - 1.0).collect();
            let el2n: Vec<f64> = p.iter().map(|&x| (1.0 - x) * 2f64.sqrt()).collect();
            check_unit(&stats, u, naive(&p, &right, &margins, &el2n, 0));
        }
        if l == 1 {
            // a one-column binary file is the multilabel computation with one label
            let classes: Vec<i64> = targets.iter().map(|&y| y as i64).collect();
            let binary = Options { task: Task::Binary, ..options.clone() };
            prop_assert_eq!(compute(view, Labels::Classes(&classes), &binary, None).unwrap(), stats);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    /// The tiled kernels (float32, float64 and float16, widened in registers) and the
    /// epoch-major ones (a float32 block holding rounding outside [0, 1], repaired there) must
    /// agree bit for bit on values all three types hold exactly, for one- and two-column rows,
    /// tails of fewer than a tile, several blocks, windows, ddof and both rules; float16 within
    /// its tolerance outside [0, 1] is clamped as it is widened.
    #[test]
    fn tiled_and_epoch_major_paths_agree_exactly(
        (e, n, two_columns, eighths, gold) in (1usize..7, prop_oneof![1usize..40, 2040usize..2100], any::<bool>()).prop_flat_map(|(e, n, two)| (
            Just(e), Just(n), Just(two),
            proptest::collection::vec(0u8..=8, e * n),
            proptest::collection::vec(0i64..2, n),
        )),
        threshold in prop_oneof![Just(None), Just(Some(0.5)), (0.0f64..=1.0).prop_map(Some)],
        first_index in any::<bool>(),
        skip in 0usize..3,
        ddof in 0usize..2,
        threads in 1usize..4,
    ) {
        let start = skip.min(e - 1);
        prop_assume!(ddof < e - start);
        // p in eighths: exact in float16; two columns hold (p, 1 - p)
        let narrow: Vec<f32> = if two_columns {
            eighths.iter().flat_map(|&k| [k as f32 / 8.0, 1.0 - k as f32 / 8.0]).collect()
        } else {
            eighths.iter().map(|&k| k as f32 / 8.0).collect()
        };
        let l = if two_columns { 2 } else { 1 };
        let dims = Dims { n_epochs: e, n_examples: n, n_labels: l };
        let argmax = if first_index { Correctness::ArgmaxFirstIndex } else { Correctness::Argmax };
        let (task, correctness) = match (two_columns, threshold) {
            (true, None) => (Task::Multiclass, argmax),
            (true, Some(t)) => (Task::Multiclass, Correctness::Threshold(t)),
            (false, None) => (Task::Binary, argmax),
            (false, Some(t)) => (Task::Binary, Correctness::Threshold(t)),
        };
        let options = Options { task, correctness, epochs: start..e, ddof, threads: Some(threads), class_means: false, outputs: Outputs::ALL, copy_labels: false };
        let wide: Vec<f64> = narrow.iter().map(|&x| x as f64).collect();
        let half: Vec<f16> = narrow.iter().map(|&x| f16::from_f32(x)).collect();
        let run = |probs| compute(DynamicsView::new(probs, dims, "t").unwrap(), Labels::Classes(&gold), &options, None).unwrap();
        let tiled = run(Probs::F32(&narrow));
        // a block with rounding outside [0, 1] (1 + eps for 1, -eps for 0) is folded again epoch by
        // epoch from a clamped copy: the results of every block are the same
        let rounded: Vec<f32> = narrow.iter().map(|&x| if x == 1.0 { 1.0 + f32::EPSILON } else if x == 0.0 { -f32::EPSILON } else { x }).collect();
        let epoch_major = run(Probs::F32(&rounded));
        prop_assert_eq!(&tiled, &epoch_major);
        prop_assert_eq!(&run(Probs::F64(&wide)), &tiled);
        prop_assert_eq!(&run(Probs::F16(&half)), &tiled);
        // float16 one unit in the last place above 1 and the smallest negative: clamped in the tile
        let rounded16: Vec<f16> = half.iter().map(|&x| if x == f16::ONE { f16::from_bits(0x3c01) } else if x == f16::ZERO { f16::from_bits(0x8001) } else { x }).collect();
        prop_assert_eq!(&run(Probs::F16(&rounded16)), &tiled);
    }
}

#[test]
fn worked_example() {
    // one example, three classes, four epochs; gold = 0
    // epoch 0: [0.2, 0.5, 0.3] wrong; 1: [0.6, 0.3, 0.1] right; 2: [0.4, 0.4, 0.2] tie -> wrong; 3: [0.9, 0.05, 0.05] right
    let data = [0.2f32, 0.5, 0.3, 0.6, 0.3, 0.1, 0.4, 0.4, 0.2, 0.9, 0.05, 0.05];
    let view = DynamicsView::new(Probs::F32(&data), Dims { n_epochs: 4, n_examples: 1, n_labels: 3 }, "t").unwrap();
    let stats = compute(view, Labels::Classes(&[0]), &Options { epochs: 0..4, ..Options::default() }, None).unwrap();
    assert!((stats.confidence[0] - 0.525).abs() < 1e-7);
    assert_eq!(stats.correctness[0], 0.5);
    assert_eq!(stats.forgetting[0], 1); // right at 1, wrong at 2
    assert_eq!(stats.first_learned[0], 3);
    assert!(!stats.never_learned[0]);
    // margins: -0.3, 0.3, 0.0, 0.85 -> mean 0.2125
    assert!((stats.margin[0] - 0.2125).abs() < 1e-7);
}

/// A window is never clamped to the file: one that ends past its last epoch is refused naming
/// the file (a window resolved against a header read before the file was replaced by a shorter
/// one), while the default end (`usize::MAX`) runs to the last epoch.
#[test]
fn a_window_past_the_last_epoch_is_refused_and_the_default_runs_to_the_last() {
    let data = [0.2f32, 0.5, 0.3, 0.6, 0.3, 0.1];
    let view = DynamicsView::new(Probs::F32(&data), Dims { n_epochs: 2, n_examples: 1, n_labels: 3 }, "short.npy").unwrap();
    for window in [0..3, 1..3, 2..5] {
        let refused = compute(view, Labels::Classes(&[0]), &Options { epochs: window.clone(), ..Options::default() }, None);
        match refused {
            Err(Error::Invalid { origin, field, message }) => {
                assert_eq!((origin.as_str(), field.as_str()), ("short.npy", "epochs"), "{window:?}: {message}");
                assert!(message.contains("2 epoch(s)"), "{message}");
            }
            other => panic!("{window:?}: expected a refusal, found {:?}", other.map(|stats| stats.confidence)),
        }
    }
    let all = compute(view, Labels::Classes(&[0]), &Options::default(), None).unwrap();
    let explicit = compute(view, Labels::Classes(&[0]), &Options { epochs: 0..2, ..Options::default() }, None).unwrap();
    assert_eq!(all.confidence, explicit.confidence);
    assert!((all.confidence[0] - 0.4).abs() < 1e-7);
}

#[test]
fn first_index_rule_gives_ties_to_the_first_largest_column_on_every_path() {
    // wide rows (epoch-major multiclass): ties at the top, gold before / after / between them
    let rows = [[0.4f32, 0.4, 0.2], [0.2, 0.4, 0.4], [0.3, 0.3, 0.3], [0.0, 0.0, 0.0]];
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    let view = DynamicsView::new(Probs::F32(&data), Dims { n_epochs: 1, n_examples: 4, n_labels: 3 }, "t").unwrap();
    let run = |gold: &[i64], correctness| compute(view, Labels::Classes(gold), &Options { correctness, epochs: 0..1, ..Options::default() }, None).unwrap().correctness;
    // gold = 0 wins each tie it is part of, gold = 1 only where it is the first largest
    assert_eq!(run(&[0, 1, 0, 0], Correctness::ArgmaxFirstIndex), vec![1.0, 1.0, 1.0, 1.0]);
    assert_eq!(run(&[1, 2, 1, 2], Correctness::ArgmaxFirstIndex), vec![0.0, 0.0, 0.0, 0.0]);
    assert_eq!(run(&[0, 1, 0, 0], Correctness::Argmax), vec![0.0; 4]);
    // two columns (tiled) and one column
    for (l, task, values) in [(2usize, Task::Multiclass, vec![0.5f32, 0.5, 0.5, 0.5, 0.25, 0.75]), (1, Task::Binary, vec![0.5, 0.5, 0.75])] {
        let dims = Dims { n_epochs: 1, n_examples: 3, n_labels: l };
        let gold = [0i64, 1, 1];
        let options = Options { task, correctness: Correctness::ArgmaxFirstIndex, epochs: 0..1, ..Options::default() };
        let wide: Vec<f64> = values.iter().map(|&x| x as f64).collect();
        let half: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
        for probs in [Probs::F32(&values), Probs::F64(&wide), Probs::F16(&half)] {
            let stats = compute(DynamicsView::new(probs, dims, "t").unwrap(), Labels::Classes(&gold), &options, None).unwrap();
            assert_eq!(stats.correctness, vec![1.0, 0.0, 1.0], "{task:?} {l} columns");
        }
    }
}

#[test]
fn float16_and_float64_agree_with_float32_on_representable_values() {
    let values = [0.0f32, 0.25, 0.5, 0.75, 1.0, 0.125, 0.375, 0.625];
    let dims = Dims { n_epochs: 2, n_examples: 2, n_labels: 2 };
    let wide: Vec<f64> = values.iter().map(|&x| x as f64).collect();
    let narrow: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
    let options = Options { epochs: 0..2, ..Options::default() };
    let run = |probs| compute(DynamicsView::new(probs, dims, "t").unwrap(), Labels::Classes(&[0, 1]), &options, None).unwrap();
    let reference = run(Probs::F32(&values));
    assert_eq!(run(Probs::F64(&wide)), reference);
    assert_eq!(run(Probs::F16(&narrow)), reference);
}

#[test]
fn rejects_bad_values_and_labels() {
    let dims = Dims { n_epochs: 1, n_examples: 2, n_labels: 2 };
    let options = Options { epochs: 0..1, ..Options::default() };
    for bad in [f32::NAN, f32::INFINITY, -0.1, 1.5] {
        let data = [0.5, 0.5, 0.2, bad];
        let err = compute(DynamicsView::new(Probs::F32(&data), dims, "d.npy").unwrap(), Labels::Classes(&[0, 1]), &options, None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("d.npy") && text.contains("epoch 0, example 1, label 1"), "{text}");
    }
    let data = [0.5f32; 4];
    let view = DynamicsView::new(Probs::F32(&data), dims, "d.npy").unwrap();
    assert!(compute(view, Labels::Classes(&[0, 2]), &options, None).unwrap_err().to_string().contains("found 2 at index 1"));
    assert!(compute(view, Labels::Classes(&[-1, 0]), &options, None).is_err());
    assert!(compute(view, Labels::Classes(&[0]), &options, None).is_err());
    assert!(compute(view, Labels::Multilabel(&[0, 1, 2, 0]), &Options { task: Task::Multilabel, ..options.clone() }, None).is_err());
    assert!(compute(view, Labels::Classes(&[0, 1]), &Options { ddof: 1, ..options.clone() }, None).is_err());
    assert!(compute(view, Labels::Classes(&[0, 1]), &Options { task: Task::Binary, ..options.clone() }, None).is_err());
}

/// Class indices are checked by the blocks that read them, in parallel: whichever block finds a
/// bad one, the error names the first bad index of the whole array, and it is the error
/// reported even when a value of another block is bad too or the caller stops the pass.
#[test]
fn a_bad_class_index_is_reported_first_whichever_block_finds_it() {
    for (l, task) in [(1usize, Task::Binary), (2, Task::Multiclass), (3, Task::Multiclass), (12, Task::Multiclass)] {
        let (e, n) = (2, 9000);
        let data = vec![0.5f32; e * n * l];
        let mut gold: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
        gold[7000] = l.max(2) as i64; // one past the last class
        gold[8500] = -1;
        let dims = Dims { n_epochs: e, n_examples: n, n_labels: l };
        let mut bad_value = data.clone();
        bad_value[l * 3] = f32::NAN; // an earlier block than the bad labels
        for values in [&data, &bad_value] {
            for threads in [1, 2, 4] {
                let options = Options { task, epochs: 0..e, threads: Some(threads), ..Options::default() };
                let view = DynamicsView::new(Probs::F32(values), dims, "d.npy").unwrap();
                let message = compute(view, Labels::Classes(&gold), &options, None).unwrap_err().to_string();
                assert!(message.contains(&format!("found {} at index 7000", l.max(2))), "{l} columns, {threads} threads: {message}");
                let stop = |_: usize, _: usize| false;
                let message = compute(view, Labels::Classes(&gold), &options, Some(&stop)).unwrap_err().to_string();
                assert!(message.contains("at index 7000"), "{l} columns, {threads} threads, stopped: {message}");
            }
        }
    }
}

#[test]
fn identical_for_any_thread_count_and_interruptible() {
    let (e, n, l) = (3, 20_000, 3);
    let data: Vec<f32> = (0..e * n * l).map(|i| ((i * 7919) % 1000) as f32 / 999.0).collect();
    let gold: Vec<i64> = (0..n).map(|i| (i % l) as i64).collect();
    let view = DynamicsView::new(Probs::F32(&data), Dims { n_epochs: e, n_examples: n, n_labels: l }, "t").unwrap();
    let run = |threads| compute(view, Labels::Classes(&gold), &Options { epochs: 0..e, threads: Some(threads), ..Options::default() }, None).unwrap();
    let one = run(1);
    assert_eq!(run(2), one);
    assert_eq!(run(3), one);
    let stop_at_once = |_: usize, _: usize| false;
    assert!(matches!(compute(view, Labels::Classes(&gold), &Options { epochs: 0..e, ..Options::default() }, Some(&stop_at_once)), Err(Error::Interrupted)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, .. ProptestConfig::default() })]

    /// The class means are each column's plain mean over the window, for every task, dtype,
    /// path (tiled one- and two-column rows, epoch-major wider rows) and thread count, and
    /// asking for them changes no other output.
    #[test]
    fn class_means_are_the_column_means_over_the_window(
        (e, n, l, data, start) in (1usize..5, 1usize..60, 1usize..5).prop_flat_map(|(e, n, l)| (
            Just(e), Just(n), Just(l),
            proptest::collection::vec(probability(), e * n * l),
            0..e,
        )),
        threads in 1usize..4,
        multilabel in any::<bool>(),
    ) {
        let dims = Dims { n_epochs: e, n_examples: n, n_labels: l };
        let gold: Vec<i64> = (0..n).map(|i| (i % l.max(2)) as i64 % if l == 1 { 2 } else { l as i64 }).collect();
        let targets: Vec<u8> = (0..n * l).map(|i| (i % 3 == 0) as u8).collect();
        let (task, labels) = match (l, multilabel) {
            (_, true) => (Task::Multilabel, Labels::Multilabel(&targets)),
            (1, false) => (Task::Binary, Labels::Classes(&gold)),
            _ => (Task::Multiclass, Labels::Classes(&gold)),
        };
        let wide: Vec<f64> = data.iter().map(|&x| x as f64).collect();
        let half: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
        let options = Options { task, correctness: Correctness::Threshold(0.5), epochs: start..e, ddof: 0, threads: Some(threads), class_means: true, outputs: Outputs::ALL, copy_labels: false };
        for (probs, values) in [(Probs::F32(&data), wide.clone()), (Probs::F64(&wide), wide.clone()), (Probs::F16(&half), half.iter().map(|x| x.to_f64()).collect())] {
            let view = DynamicsView::new(probs, dims, "t").unwrap();
            let with = compute(view, labels, &options, None).unwrap();
            let without = compute(view, labels, &Options { class_means: false, ..options.clone() }, None).unwrap();
            prop_assert_eq!(with.class_means.len(), n * l);
            prop_assert!(without.class_means.is_empty());
            prop_assert_eq!(Statistics { class_means: Vec::new(), ..with.clone() }, without);
            for u in 0..n * l {
                let sum: f64 = (start..e).map(|k| values[k * n * l + u]).sum();
                let expected = sum / (e - start) as f64;
                prop_assert!((with.class_means[u] - expected).abs() <= 1e-12, "unit {} {} vs {}", u, with.class_means[u], expected);
            }
        }
    }
}

/// Float rounding a hair outside [0, 1] is clamped (the results equal those of the clamped
/// values), within four units in the last place of 1.0 of the stored dtype; beyond, refused.
#[test]
fn rounding_outside_the_unit_interval_is_clamped_within_the_tolerance() {
    let dims = Dims { n_epochs: 2, n_examples: 2, n_labels: 2 };
    let options = Options { epochs: 0..2, class_means: true, ..Options::default() };
    let clean = [1.0f64, 0.0, 0.3, 0.7, 1.0, 0.0, 0.6, 0.4];
    let run = |probs| compute(DynamicsView::new(probs, dims, "d.npy").unwrap(), Labels::Classes(&[0, 1]), &options, None);
    let expected = run(Probs::F64(&clean)).unwrap();
    // within tolerance: a few ulps above 1 and a tiny negative, per dtype
    let f32_eps = f32::EPSILON;
    let noisy32 = [1.0 + 2.0 * f32_eps, -1e-9, 0.3, 0.7, 1.0 + 4.0 * f32_eps, -2.0 * f32_eps, 0.6, 0.4];
    let clamped32 = run(Probs::F32(&noisy32)).unwrap();
    let clean32: Vec<f32> = clean.iter().map(|&x| x as f32).collect();
    assert_eq!(clamped32, run(Probs::F32(&clean32)).unwrap());
    let noisy64 = [1.0 + 2.0 * f64::EPSILON, -1e-17, 0.3, 0.7, 1.0 + 4.0 * f64::EPSILON, -3.0 * f64::EPSILON, 0.6, 0.4];
    assert_eq!(run(Probs::F64(&noisy64)).unwrap(), expected);
    let h = |x: f32| f16::from_f32(x);
    let one_up = f16::from_bits(h(1.0).to_bits() + 1); // 1 + 2^-10, one ulp above 1
    let noisy16 = [one_up, f16::from_bits(0x8001), h(0.3), h(0.7), h(1.0), h(-0.002), h(0.6), h(0.4)];
    let clean16: Vec<f16> = clean.iter().map(|&x| h(x as f32)).collect();
    assert_eq!(run(Probs::F16(&noisy16)).unwrap(), run(Probs::F16(&clean16)).unwrap());
    // beyond tolerance: refused, naming the value
    for (probs, text) in [
        (Probs::F32(&[1.0 + 8.0 * f32_eps, 0.0, 0.3, 0.7, 1.0, 0.0, 0.6, 0.4]), "found 1.00000095"),
        (Probs::F64(&[1.0, 0.0, -1e-9, 0.7, 1.0, 0.0, 0.6, 0.4]), "found -0.000000001"),
        (Probs::F16(&[h(1.0), h(0.0), h(0.3), h(0.7), h(1.0), h(-0.01), h(0.6), h(0.4)]), "epoch 1, example 0, label 1"),
    ] {
        let message = run(probs).unwrap_err().to_string();
        assert!(message.contains("expected probabilities in [0, 1]") && message.contains(text), "{message}");
    }
}

/// A wide row (the epoch-major path) with rounding in a later epoch: the block is folded again
/// from repaired chunks and equals the clamped data's result exactly, thread count aside.
#[test]
fn rounding_in_a_wide_row_is_repaired_on_the_epoch_major_path() {
    let (e, n, l) = (3, 5000, 3);
    let clean: Vec<f32> = (0..e * n * l).map(|i| if i % 3 == 0 { 1.0 } else if i % 7 == 0 { 0.25 } else { 0.0 }).collect();
    let mut noisy = clean.clone();
    noisy[2 * n * l + 4000 * l] = 1.0 + 3.0 * f32::EPSILON;
    noisy[n * l + 17 * l + 1] = -f32::EPSILON;
    let gold: Vec<i64> = (0..n).map(|i| (i % l) as i64).collect();
    let dims = Dims { n_epochs: e, n_examples: n, n_labels: l };
    for threads in [1, 3] {
        let options = Options { epochs: 0..e, threads: Some(threads), class_means: true, ..Options::default() };
        let run = |data: &[f32]| compute(DynamicsView::new(Probs::F32(data), dims, "t").unwrap(), Labels::Classes(&gold), &options, None).unwrap();
        assert_eq!(run(&noisy), run(&clean));
    }
}

/// The ten outputs of `stats` as bit patterns (empty vectors for those left out), by bit.
fn output_bits(stats: &Statistics) -> [Vec<u64>; 10] {
    let f = |v: &Vec<f64>| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
    let i = |v: &Vec<i32>| v.iter().map(|x| *x as u64).collect::<Vec<u64>>();
    [
        f(&stats.confidence),
        f(&stats.variability),
        f(&stats.correctness),
        i(&stats.forgetting),
        stats.never_learned.iter().map(|x| *x as u64).collect(),
        i(&stats.first_learned),
        f(&stats.threshold_closeness),
        f(&stats.margin),
        f(&stats.aleatoric),
        f(&stats.el2n),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, .. ProptestConfig::default() })]

    /// Asking for some outputs returns exactly those, bit for bit as in a full computation,
    /// and the others empty, on every path (tiled one- and two-column rows, wide rows,
    /// multilabel), whatever the thread count and block split.
    #[test]
    fn a_subset_of_outputs_is_the_full_result_cut(
        (task, e, n, l, data) in prop_oneof![Just(Task::Multiclass), Just(Task::Binary), Just(Task::Multilabel)]
            .prop_flat_map(|task| (Just(task), 1usize..5, 1usize..300, match task { Task::Binary => Just(1usize).boxed(), Task::Multiclass => prop_oneof![Just(2usize), 3usize..20].boxed(), Task::Multilabel => (1usize..6).boxed() }))
            .prop_flat_map(|(task, e, n, l)| (Just(task), Just(e), Just(n), Just(l), proptest::collection::vec(probability(), e * n * l))),
        mask in 1u16..1024,
        threads in 1usize..4,
        seed in any::<u64>(),
    ) {
        let k = if task == Task::Multiclass { l } else { 2 };
        let classes: Vec<i64> = (0..n).map(|i| (((seed >> (i % 60)) as usize).wrapping_add(i) % k) as i64).collect();
        let targets: Vec<u8> = (0..n * l).map(|i| ((seed >> (i % 60)) & 1) as u8).collect();
        let labels = if task == Task::Multilabel { Labels::Multilabel(&targets) } else { Labels::Classes(&classes) };
        let view = DynamicsView::new(Probs::F32(&data), Dims { n_epochs: e, n_examples: n, n_labels: l }, "t").unwrap();
        let full = compute(view, labels, &Options { task, epochs: 0..e, threads: Some(threads), ..Options::default() }, None).unwrap();
        let part = compute(view, labels, &Options { task, epochs: 0..e, threads: Some(threads), outputs: Outputs(mask), ..Options::default() }, None).unwrap();
        for (bit, (whole, cut)) in output_bits(&full).into_iter().zip(output_bits(&part)).enumerate() {
            if Outputs(mask).has(Statistic::ALL[bit]) {
                prop_assert_eq!(whole, cut, "output {} differs", bit);
            } else {
                prop_assert!(cut.is_empty(), "output {} was left out but returned", bit);
            }
        }
    }
}

#[test]
fn an_output_mask_names_some_of_the_ten_statistics() {
    assert_eq!(Outputs::default(), Outputs::ALL);
    assert!(Outputs(0).check().is_err());
    assert!(Outputs(1024).check().is_err());
    assert_eq!(Outputs(5).check(), Ok(Outputs(5)));
    assert!(Outputs(5).has(Statistic::Confidence) && !Outputs(5).has(Statistic::Variability) && Outputs(5).has(Statistic::Correctness));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, .. ProptestConfig::default() })]

    /// Multiclass rows of 3 to 34 columns: where AVX-512 is present, the tiled path (groups of
    /// eight units walking every epoch: float16 rows of up to 32 columns, float32 ones of up to
    /// 16, whose windows of more than 10 epochs go in parts, as float16 ones of up to 16 columns
    /// do beyond 20 epochs, the groups' state saved between parts) and the epoch-major path (float64 rows, wider float32 ones, a last block ending in a
    /// partial group, and float32 rounding outside [0, 1], which the tiled path declines) agree
    /// bit for bit; float16 rounding within its tolerance is clamped on the tiled path itself
    /// (the group's exact rows). Over several blocks, windows, ddof, thread counts and every
    /// rule (values in eighths tie often: under the first-index rule the tiled path scans a
    /// tied row for an equal column before gold, as the epoch-major path does).
    #[test]
    fn tiled_and_epoch_major_multiclass_agree_exactly(
        (e, n, l, eighths, gold) in (prop_oneof![3 => 1usize..6, 1 => 11usize..28], prop_oneof![1usize..40, 2040usize..2100], 3usize..35).prop_flat_map(|(e, n, l)| (
            Just(e), Just(n), Just(l),
            proptest::collection::vec(0u8..=8, e * n * l),
            proptest::collection::vec(0..l as i64, n),
        )),
        rule in prop_oneof![Just(None), any::<bool>().prop_map(Some)],
        threshold in 0.0f64..=1.0,
        skip in 0usize..3,
        ddof in 0usize..2,
        threads in 1usize..4,
    ) {
        let start = skip.min(e - 1);
        prop_assume!(ddof < e - start);
        // p in eighths: exact in float16, and every sum of squares exact
        let narrow: Vec<f32> = eighths.iter().map(|&k| k as f32 / 8.0).collect();
        let dims = Dims { n_epochs: e, n_examples: n, n_labels: l };
        let correctness = rule_of(rule, threshold);
        let options = Options { task: Task::Multiclass, correctness, epochs: start..e, ddof, threads: Some(threads), class_means: false, outputs: Outputs::ALL, copy_labels: false };
        let run = |probs| compute(DynamicsView::new(probs, dims, "t").unwrap(), Labels::Classes(&gold), &options, None).unwrap();
        let wide: Vec<f64> = narrow.iter().map(|&x| x as f64).collect();
        let epoch_major = run(Probs::F64(&wide));
        prop_assert_eq!(&run(Probs::F32(&narrow)), &epoch_major);
        let half: Vec<f16> = narrow.iter().map(|&x| f16::from_f32(x)).collect();
        prop_assert_eq!(&run(Probs::F16(&half)), &epoch_major);
        // one unit in the last place above 1, clamped back to 1: float32's on the epoch-major path
        let rounded: Vec<f32> = narrow.iter().map(|&x| if x == 1.0 { 1.0 + f32::EPSILON } else { x }).collect();
        prop_assert_eq!(&run(Probs::F32(&rounded)), &epoch_major);
        // every other 1 only: a tie between a 1 and a rounded 1 is a tie once clamped
        let rounded16: Vec<f16> = half.iter().enumerate().map(|(i, &x)| if x == f16::ONE && i % 2 == 0 { f16::from_bits(0x3c01) } else { x }).collect();
        prop_assert_eq!(&run(Probs::F16(&rounded16)), &epoch_major);
    }
}

/// The rule a proptest drew: `None` the threshold rule, else argmax (first index or not).
fn rule_of(rule: Option<bool>, threshold: f64) -> Correctness {
    match rule {
        None => Correctness::Threshold(threshold),
        Some(true) => Correctness::ArgmaxFirstIndex,
        Some(false) => Correctness::Argmax,
    }
}

/// Float16 bits of values in [+0, 1], subnormals, zeros, ones and halves (ties at 0.5) drawn
/// often.
fn probability_bits() -> impl Strategy<Value = u16> {
    prop_oneof![4 => 0u16..=0x3c00, 1 => Just(0x3c00u16), 1 => Just(0u16), 1 => Just(0x3800u16), 1 => 0u16..0x0400]
}

/// `half` (whose float32 values are `narrow`) with the values at `outside` one step outside
/// [0, 1] (1 + 2^-10 for a value of at least 0.5, -2^-24 for one below), and the float32 values
/// that float16 tiles must clamp them to (1 and 0).
fn one_step_outside(half: &[f16], narrow: &[f32], outside: &[prop::sample::Index]) -> (Vec<f16>, Vec<f32>) {
    let mut rounded = half.to_vec();
    for index in outside {
        let i = index.index(rounded.len());
        rounded[i] = if narrow[i] >= 0.5 { f16::from_bits(0x3c01) } else { f16::from_bits(0x8001) };
    }
    let clamped = narrow.iter().zip(&rounded).map(|(&x, r)| if r.to_bits() == 0x3c01 { 1.0 } else if r.to_bits() == 0x8001 { 0.0 } else { x }).collect();
    (rounded, clamped)
}

/// The statistics `run` computes from `bits` read as float16 equal those of the same values
/// read as float32 and as float64; with the values at `outside` one step outside [0, 1]
/// ([`one_step_outside`]), float16's equal float32's of the values clamped into it.
fn float16_bits_agree_across_dtypes(bits: &[u16], outside: &[prop::sample::Index], run: impl Fn(Probs<'_>) -> Statistics) -> std::result::Result<(), TestCaseError> {
    let half: Vec<f16> = bits.iter().map(|&b| f16::from_bits(b)).collect();
    let narrow: Vec<f32> = half.iter().map(|x| x.to_f32()).collect();
    let wide: Vec<f64> = narrow.iter().map(|&x| x as f64).collect();
    let expected = run(Probs::F64(&wide));
    prop_assert_eq!(&run(Probs::F16(&half)), &expected);
    prop_assert_eq!(&run(Probs::F32(&narrow)), &expected);
    let (rounded, clamped) = one_step_outside(&half, &narrow, outside);
    prop_assert_eq!(&run(Probs::F16(&rounded)), &run(Probs::F32(&clamped)));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, .. ProptestConfig::default() })]

    /// One-column float16 rows of any bits in [+0, 1] (subnormals, zeros, ties at 0.5), binary
    /// and multilabel: the float16 and float32 tiles (where AVX-512 is present, a kernel of their
    /// own, `singles`) give the bits of the same values read as float64 (the generic tiles),
    /// under every rule, window, ddof and thread count; a tile holding a value just above 1 or
    /// just below 0 (within float16's tolerance) is clamped as float32's 1 and 0.
    #[test]
    fn one_column_tiles_give_the_float64_bits(
        (e, n, l, bits, gold) in (1usize..6, prop_oneof![1usize..70, 2040usize..2100], 1usize..4).prop_flat_map(|(e, n, l)| (
            Just(e), Just(n), Just(l),
            proptest::collection::vec(probability_bits(), e * n * l),
            proptest::collection::vec(0u8..2, n * l),
        )),
        multilabel in any::<bool>(),
        rule in prop_oneof![Just(None), any::<bool>().prop_map(Some)],
        threshold in prop_oneof![0.0f64..=1.0, Just(0.5)],
        outside in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
        skip in 0usize..3,
        ddof in 0usize..2,
        threads in 1usize..4,
    ) {
        let start = skip.min(e - 1);
        prop_assume!(ddof < e - start);
        let correctness = rule_of(rule, threshold);
        // a binary file has one column; a multilabel one any number of labels
        let (task, l) = if multilabel { (Task::Multilabel, l) } else { (Task::Binary, 1) };
        let (bits, gold) = (&bits[..e * n * l], &gold[..n * l]);
        let classes: Vec<i64> = gold.iter().map(|&g| g as i64).collect();
        let labels = if multilabel { Labels::Multilabel(gold) } else { Labels::Classes(&classes) };
        let dims = Dims { n_epochs: e, n_examples: n, n_labels: l };
        let options = Options { task, correctness, epochs: start..e, ddof, threads: Some(threads), class_means: false, outputs: Outputs::ALL, copy_labels: false };
        float16_bits_agree_across_dtypes(bits, &outside, |probs: Probs<'_>| compute(DynamicsView::new(probs, dims, "t").unwrap(), labels, &options, None).unwrap())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 80, .. ProptestConfig::default() })]

    /// Multiclass float16 rows of 2 to 34 columns of any bits in [+0, 1] (subnormals, zeros,
    /// ones, rows that are not distributions): the tiles give the bits of the same values read
    /// as float64 (the generic two-column tiles, the epoch-major path beyond): where AVX-512 is
    /// present, two columns by a kernel of their own (`pairs`), 3 to 32 by the tiled path's
    /// column path (rows of up to 16 columns read as one run, 17 to 32 row by row and
    /// transposed) and its row path; under every rule, window, ddof and thread count. A tile or
    /// group holding a value just above 1 or just below 0 (within float16's tolerance) is
    /// clamped as float32's 1 and 0.
    #[test]
    fn multiclass_float16_tiles_give_the_float64_bits(
        (e, n, l, bits, gold) in (1usize..5, prop_oneof![3 => 1usize..70, 1 => 1030usize..1100, 1 => 2040usize..2100], prop_oneof![1 => Just(2usize), 2 => 3usize..35]).prop_flat_map(|(e, n, l)| (
            Just(e), Just(n), Just(l),
            proptest::collection::vec(probability_bits(), e * n * l),
            proptest::collection::vec(0..l as i64, n),
        )),
        rule in prop_oneof![Just(None), any::<bool>().prop_map(Some)],
        threshold in prop_oneof![0.0f64..=1.0, Just(0.5)],
        outside in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
        skip in 0usize..3,
        ddof in 0usize..2,
        threads in 1usize..4,
    ) {
        let start = skip.min(e - 1);
        prop_assume!(ddof < e - start);
        let dims = Dims { n_epochs: e, n_examples: n, n_labels: l };
        let options = Options { task: Task::Multiclass, correctness: rule_of(rule, threshold), epochs: start..e, ddof, threads: Some(threads), class_means: false, outputs: Outputs::ALL, copy_labels: false };
        float16_bits_agree_across_dtypes(&bits, &outside, |probs: Probs<'_>| compute(DynamicsView::new(probs, dims, "t").unwrap(), Labels::Classes(&gold), &options, None).unwrap())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// With `copy_labels`, each block copies its labels and reads only the copy: the statistics
    /// are those of the uncopied pass bit for bit, and the copy is the labels, for every task,
    /// dtype, path and thread count, over files of many blocks. A bad label (a class index out
    /// of range, a target not 0 or 1) is the same error either way: the first of the array.
    #[test]
    fn copied_labels_change_nothing_and_are_the_labels(
        (e, n, l, seed) in (1usize..4, 1usize..6000, prop_oneof![1usize..4, Just(10usize), Just(28usize)], any::<u64>()),
        threads in 1usize..4,
        multilabel in any::<bool>(),
        bad in proptest::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>())),
    ) {
        let mut rng = seed;
        let mut next = move || { rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (rng >> 33) as usize };
        let data: Vec<f32> = (0..e * n * l).map(|_| (next() % 1025) as f32 / 1024.0).collect();
        let dims = Dims { n_epochs: e, n_examples: n, n_labels: l };
        let mut gold: Vec<i64> = (0..n).map(|_| (next() % l.max(2)) as i64).collect();
        let mut targets: Vec<u8> = (0..n * l).map(|_| (next() % 2) as u8).collect();
        let (task, multilabel) = match (l, multilabel) {
            (_, true) => (Task::Multilabel, true),
            (1, false) => (Task::Binary, false),
            _ => (Task::Multiclass, false),
        };
        // the bad labels: one at a random place, and another somewhere after it
        let mut first_bad = None;
        if let Some((at, later)) = bad {
            let len = if multilabel { n * l } else { n };
            let at = at.index(len);
            first_bad = Some(at);
            if multilabel { targets[at] = 2 } else { gold[at] = -1 }
            if at + 1 < len {
                let later = at + 1 + later.index(len - at - 1);
                if multilabel { targets[later] = 3 } else { gold[later] = l.max(2) as i64 }
            }
        }
        let labels = if multilabel { Labels::Multilabel(&targets) } else { Labels::Classes(&gold) };
        let wide: Vec<f64> = data.iter().map(|&x| x as f64).collect();
        let half: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
        let options = Options { task, correctness: Correctness::Argmax, epochs: 0..e, threads: Some(threads), ..Options::default() };
        for probs in [Probs::F32(&data), Probs::F64(&wide), Probs::F16(&half)] {
            let view = DynamicsView::new(probs, dims, "t").unwrap();
            let plain = compute(view, labels, &options, None);
            let copied = compute(view, labels, &Options { copy_labels: true, ..options.clone() }, None);
            match (plain, copied, first_bad) {
                (Ok(plain), Ok(copied), None) => {
                    let expected = if multilabel { LabelsCopy::Multilabel(targets.clone()) } else { LabelsCopy::Classes(gold.clone()) };
                    prop_assert_eq!(copied.labels.as_ref(), Some(&expected));
                    prop_assert!(plain.labels.is_none());
                    prop_assert_eq!(Statistics { labels: None, ..copied }, plain);
                }
                (Err(plain), Err(copied), Some(at)) => {
                    let text = copied.to_string();
                    prop_assert_eq!(&text, &plain.to_string());
                    let place = if multilabel { format!("found 2 at ({}, {})", at / l, at % l) } else { format!("found -1 at index {at}") };
                    prop_assert!(text.contains(&place), "{} lacks {}", text, place);
                }
                (plain, copied, _) => prop_assert!(false, "plain {:?}, copied {:?}, bad at {:?}", plain.map(|_| ()), copied.map(|_| ()), first_bad),
            }
        }
    }
}
