use super::*;
use crate::dynamics::{Dims, Probs};
use crate::stats::compute;
use proptest::prelude::*;

/// A random block: task, `[e, n, l]` float32 data, gold labels (classes, or multilabel bits).
#[derive(Clone, Debug)]
struct Block {
    task: Task,
    e: usize,
    n: usize,
    l: usize,
    data: Vec<f32>,
    classes: Vec<i64>,
    bits: Vec<u8>,
}

impl Block {
    fn labels(&self, examples: Range<usize>) -> Labels<'_> {
        match self.task {
            Task::Multilabel => Labels::Multilabel(&self.bits[examples.start * self.l..examples.end * self.l]),
            _ => Labels::Classes(&self.classes[examples]),
        }
    }

    /// A copy of epochs × examples as its own `[e', n', l]` block.
    fn piece(&self, epochs: Range<usize>, examples: Range<usize>) -> Vec<f32> {
        let mut out = Vec::new();
        for e in epochs {
            let row = |x: usize| (e * self.n + x) * self.l;
            out.extend_from_slice(&self.data[row(examples.start)..row(examples.end)]);
        }
        out
    }

    fn state(&self, epochs: Range<usize>, examples: Range<usize>, correctness: Correctness) -> State {
        let data = self.piece(epochs.clone(), examples.clone());
        let dims = Dims { n_epochs: epochs.len(), n_examples: examples.len(), n_labels: self.l };
        let view = DynamicsView::new(Probs::F32(&data), dims, "piece").unwrap();
        let options = Options { task: self.task, correctness, threads: Some(2), ..Options::default() };
        partial(view, self.labels(examples.clone()), &options, Offsets { epoch: epochs.start, example: examples.start }, None).unwrap()
    }

    fn whole(&self, correctness: Correctness, ddof: usize) -> Statistics {
        let view = DynamicsView::new(Probs::F32(&self.data), Dims { n_epochs: self.e, n_examples: self.n, n_labels: self.l }, "whole").unwrap();
        let options = Options { task: self.task, correctness, ddof, threads: Some(1), ..Options::default() };
        compute(view, self.labels(0..self.n), &options, None).unwrap()
    }
}

fn probability() -> impl Strategy<Value = f32> {
    prop_oneof![Just(0.0f32), Just(0.5f32), Just(1.0f32), 0.0f32..=1.0f32]
}

fn block() -> impl Strategy<Value = Block> {
    (prop_oneof![Just(Task::Multiclass), Just(Task::Binary), Just(Task::Multilabel)], 1usize..7, 1usize..30, 1usize..5).prop_flat_map(|(task, e, n, l)| {
        let l = match task {
            Task::Multiclass => l + 1,
            Task::Binary => 1,
            Task::Multilabel => l,
        };
        (
            Just((task, e, n, l)),
            proptest::collection::vec(probability(), e * n * l),
            proptest::collection::vec(0..(if task == Task::Multiclass { l as i64 } else { 2 }), n),
            proptest::collection::vec(0u8..2, n * l),
        )
            .prop_map(|((task, e, n, l), data, classes, bits)| Block { task, e, n, l, data, classes, bits })
    })
}

fn correctness() -> impl Strategy<Value = Correctness> {
    prop_oneof![Just(Correctness::Argmax), Just(Correctness::ArgmaxFirstIndex), (0.0f64..=1.0).prop_map(Correctness::Threshold)]
}

/// Cut `0..len` at the given points (deduplicated, inside the range) into consecutive pieces.
fn cut(len: usize, points: &[usize]) -> Vec<Range<usize>> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % len).filter(|&p| p > 0).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut bounds = vec![0];
    bounds.extend(cuts);
    bounds.push(len);
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// Merge consecutive-epoch states in the order a random binary tree picks adjacent pairs.
fn merge_tree(mut states: Vec<State>, picks: &mut impl Iterator<Item = usize>) -> State {
    while states.len() > 1 {
        let j = picks.next().unwrap_or(0) % (states.len() - 1);
        let later = states.remove(j + 1);
        states[j] = states[j].merge(&later).unwrap();
    }
    states.pop().unwrap()
}

/// Concatenate example pieces in groups picked at random, each group's order shuffled.
fn concat_tree(mut states: Vec<State>, picks: &mut impl Iterator<Item = usize>) -> State {
    while states.len() > 1 {
        let j = picks.next().unwrap_or(0) % (states.len() - 1);
        let (a, b) = (states[j].clone(), states.remove(j + 1));
        // concat places states by their example ranges, so the list order does not matter
        states[j] = if picks.next().unwrap_or(0).is_multiple_of(2) { State::concat(&[&a, &b]) } else { State::concat(&[&b, &a]) }.unwrap();
    }
    states.pop().unwrap()
}

fn assert_close(name: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (u, (a, b)) in got.iter().zip(want).enumerate() {
        let diff = (a - b).abs();
        assert!(diff <= 1e-12 || diff <= 1e-12 * b.abs(), "{name}[{u}]: {a} vs {b} (diff {diff:e})");
    }
}

fn assert_equivalent(got: &Statistics, want: &Statistics) {
    assert_close("confidence", &got.confidence, &want.confidence);
    assert_close("variability", &got.variability, &want.variability);
    assert_close("threshold_closeness", &got.threshold_closeness, &want.threshold_closeness);
    assert_close("margin", &got.margin, &want.margin);
    assert_close("aleatoric", &got.aleatoric, &want.aleatoric);
    assert_close("el2n", &got.el2n, &want.el2n);
    // integers and counts exactly (correctness is count / n, the same division)
    assert_eq!(got.correctness, want.correctness, "correctness");
    assert_eq!(got.forgetting, want.forgetting, "forgetting");
    assert_eq!(got.never_learned, want.never_learned, "never_learned");
    assert_eq!(got.first_learned, want.first_learned, "first_learned");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn any_split_merged_in_any_tree_equals_compute_on_the_whole(
        block in block(),
        correctness in correctness(),
        epoch_cuts in proptest::collection::vec(0usize..100, 0..6),
        example_cuts in proptest::collection::vec(0usize..100, 0..6),
        picks in proptest::collection::vec(0usize..1000, 40),
        epochs_first: bool,
        ddof in 0usize..2,
    ) {
        let ddof = ddof.min(block.e - 1);
        let epoch_pieces = cut(block.e, &epoch_cuts);
        let example_pieces = cut(block.n, &example_cuts);
        let mut picks = picks.into_iter().cycle();
        let whole = if epochs_first {
            let columns: Vec<State> = example_pieces.iter().map(|x| {
                merge_tree(epoch_pieces.iter().map(|e| block.state(e.clone(), x.clone(), correctness)).collect(), &mut picks)
            }).collect();
            concat_tree(columns, &mut picks)
        } else {
            let rows: Vec<State> = epoch_pieces.iter().map(|e| {
                concat_tree(example_pieces.iter().map(|x| block.state(e.clone(), x.clone(), correctness)).collect(), &mut picks)
            }).collect();
            merge_tree(rows, &mut picks)
        };
        prop_assert_eq!(whole.epochs(), 0..block.e);
        prop_assert_eq!(whole.examples(), 0..block.n);
        assert_equivalent(&whole.finish(ddof).unwrap(), &block.whole(correctness, ddof));
        // the byte form carries every field
        prop_assert_eq!(&State::from_bytes(&whole.to_bytes()).unwrap(), &whole);
    }

    #[test]
    fn an_unmerged_state_finishes_bit_for_bit_like_compute(block in block(), correctness in correctness()) {
        let state = block.state(0..block.e, 0..block.n, correctness);
        prop_assert_eq!(state.finish(0).unwrap(), block.whole(correctness, 0));
    }
}

fn example_block() -> Block {
    // one two-class example: right, right, wrong, right
    let data = vec![0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.6, 0.4];
    Block { task: Task::Multiclass, e: 4, n: 1, l: 2, data, classes: vec![0], bits: vec![] }
}

#[test]
fn forgetting_across_the_seam_counts() {
    let block = example_block();
    let (a, b) = (block.state(0..2, 0..1, Correctness::Argmax), block.state(2..4, 0..1, Correctness::Argmax));
    let merged = a.merge(&b).unwrap().finish(0).unwrap();
    assert_eq!(merged.forgetting, vec![1]);
    assert_eq!(merged.first_learned, vec![3]);
    assert_eq!(merged.correctness, vec![0.75]);
}

#[test]
fn merging_out_of_order_is_refused_with_the_reason() {
    let block = example_block();
    let state = |e: Range<usize>| block.state(e, 0..1, Correctness::Argmax);
    let message = |a: State, b: State| a.merge(&b).unwrap_err().to_string();
    assert!(message(state(2..4), state(0..2)).contains("reversed"), "{}", message(state(2..4), state(0..2)));
    assert!(message(state(0..1), state(2..4)).contains("epochs [1, 2) are missing"));
    assert!(message(state(0..3), state(2..4)).contains("overlap"));
    let other_rule = block.state(2..4, 0..1, Correctness::Threshold(0.5));
    assert!(state(0..2).merge(&other_rule).unwrap_err().to_string().contains("correctness"));
}

#[test]
fn concat_refuses_gaps_overlaps_and_different_epochs() {
    let block = Block { n: 4, data: [0.9f32, 0.1].repeat(16), classes: vec![0; 4], ..example_block() };
    let state = |e: Range<usize>, x: Range<usize>| block.state(e, x, Correctness::Argmax);
    let gap = State::concat(&[&state(0..4, 0..1), &state(0..4, 2..4)]).unwrap_err().to_string();
    assert!(gap.contains("examples [1, 2) are missing"), "{gap}");
    let overlap = State::concat(&[&state(0..4, 0..2), &state(0..4, 1..4)]).unwrap_err().to_string();
    assert!(overlap.contains("appear twice"), "{overlap}");
    let epochs = State::concat(&[&state(0..4, 0..2), &state(0..2, 2..4)]).unwrap_err().to_string();
    assert!(epochs.contains("same epochs"), "{epochs}");
    assert!(State::concat(&[]).is_err());
    let whole = State::concat(&[&state(0..4, 2..4), &state(0..4, 0..2)]).unwrap();
    assert_eq!(whole.examples(), 0..4);
}

#[test]
fn sizes_are_fixed_per_unit_and_bytes_are_checked() {
    let block = example_block();
    let state = block.state(0..4, 0..1, Correctness::Argmax);
    assert_eq!(state.bytes_per_unit(), 53);
    let bytes = state.to_bytes();
    assert_eq!(bytes.len(), state.nbytes());
    assert!(State::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err().to_string().contains("expected"));
    assert!(State::from_bytes(b"not a state at all, clearly not one at all, no no no no no no no").is_err());
    let mut version = bytes.clone();
    version[8] = 9;
    assert!(State::from_bytes(&version).unwrap_err().to_string().contains("version"));
    // the streak of the only unit is the last 4 bytes before the first verdicts: make it 99
    let mut corrupt = bytes.clone();
    let at = bytes.len() - 1 - 4;
    corrupt[at..at + 4].copy_from_slice(&99i32.to_le_bytes());
    assert!(State::from_bytes(&corrupt).unwrap_err().to_string().contains("impossible"));
    let binary = Block { task: Task::Binary, l: 1, data: vec![0.2, 0.7, 0.9, 0.4], classes: vec![1], ..example_block() };
    assert_eq!(binary.state(0..4, 0..1, Correctness::Threshold(0.5)).bytes_per_unit(), 37);
}
