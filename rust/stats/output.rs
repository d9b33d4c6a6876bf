//! The results: ten per-unit arrays, written once each, block by block, never zeroed first.

use std::mem::MaybeUninit;

/// Per-unit results, each `N` long (multiclass, binary) or `N * L` (multilabel, example-major).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statistics {
    pub confidence: Vec<f64>,
    pub variability: Vec<f64>,
    pub correctness: Vec<f64>,
    pub forgetting: Vec<i32>,
    pub never_learned: Vec<bool>,
    pub first_learned: Vec<i32>,
    pub threshold_closeness: Vec<f64>,
    pub margin: Vec<f64>,
    pub aleatoric: Vec<f64>,
    pub el2n: Vec<f64>,
    /// each column's mean (clamped values) over the window, unit-major `[units * row_len]`
    /// (`[N * L]` for every task); empty unless [`super::Options::class_means`]
    pub class_means: Vec<f64>,
}

impl Statistics {
    /// Outputs with room for `units` and length 0: [`Plan::run`] writes every element, then
    /// sets the lengths, so the memory is never zeroed first (a memset of the whole output).
    pub(super) fn with_capacity(units: usize) -> Self {
        Statistics {
            confidence: Vec::with_capacity(units),
            variability: Vec::with_capacity(units),
            correctness: Vec::with_capacity(units),
            forgetting: Vec::with_capacity(units),
            never_learned: Vec::with_capacity(units),
            first_learned: Vec::with_capacity(units),
            threshold_closeness: Vec::with_capacity(units),
            margin: Vec::with_capacity(units),
            aleatoric: Vec::with_capacity(units),
            el2n: Vec::with_capacity(units),
            class_means: Vec::new(),
        }
    }

    /// Mark the first `units` elements of every output written.
    ///
    /// # Safety
    /// Every output must have all of its first `units` elements initialized.
    pub(super) unsafe fn set_len(&mut self, units: usize) {
        self.confidence.set_len(units);
        self.variability.set_len(units);
        self.correctness.set_len(units);
        self.forgetting.set_len(units);
        self.never_learned.set_len(units);
        self.first_learned.set_len(units);
        self.threshold_closeness.set_len(units);
        self.margin.set_len(units);
        self.aleatoric.set_len(units);
        self.el2n.set_len(units);
    }

    pub fn len(&self) -> usize {
        self.confidence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.confidence.is_empty()
    }
}

/// A tile's outputs before they go to the block's slices.
pub(super) struct TileOut<const W: usize> {
    pub(super) confidence: [MaybeUninit<f64>; W],
    pub(super) variability: [MaybeUninit<f64>; W],
    pub(super) correctness: [MaybeUninit<f64>; W],
    pub(super) forgetting: [MaybeUninit<i32>; W],
    pub(super) never_learned: [MaybeUninit<bool>; W],
    pub(super) first_learned: [MaybeUninit<i32>; W],
    pub(super) threshold_closeness: [MaybeUninit<f64>; W],
    pub(super) margin: [MaybeUninit<f64>; W],
    pub(super) aleatoric: [MaybeUninit<f64>; W],
    pub(super) el2n: [MaybeUninit<f64>; W],
}

impl<const W: usize> TileOut<W> {
    #[inline(always)]
    pub(super) fn new() -> Self {
        TileOut {
            confidence: [MaybeUninit::uninit(); W],
            variability: [MaybeUninit::uninit(); W],
            correctness: [MaybeUninit::uninit(); W],
            forgetting: [MaybeUninit::uninit(); W],
            never_learned: [MaybeUninit::uninit(); W],
            first_learned: [MaybeUninit::uninit(); W],
            threshold_closeness: [MaybeUninit::uninit(); W],
            margin: [MaybeUninit::uninit(); W],
            aleatoric: [MaybeUninit::uninit(); W],
            el2n: [MaybeUninit::uninit(); W],
        }
    }

    #[inline(always)]
    pub(super) fn block(&mut self) -> OutBlock<'_> {
        OutBlock {
            start: 0,
            confidence: &mut self.confidence,
            variability: &mut self.variability,
            correctness: &mut self.correctness,
            forgetting: &mut self.forgetting,
            never_learned: &mut self.never_learned,
            first_learned: &mut self.first_learned,
            threshold_closeness: &mut self.threshold_closeness,
            margin: &mut self.margin,
            aleatoric: &mut self.aleatoric,
            el2n: &mut self.el2n,
        }
    }

    /// Copy every output to `out` (cut to `W` units); initialized elements stay initialized.
    #[inline(always)]
    pub(super) fn copy_to(&self, out: &mut OutBlock<'_>) {
        out.confidence.copy_from_slice(&self.confidence);
        out.variability.copy_from_slice(&self.variability);
        out.correctness.copy_from_slice(&self.correctness);
        out.forgetting.copy_from_slice(&self.forgetting);
        out.never_learned.copy_from_slice(&self.never_learned);
        out.first_learned.copy_from_slice(&self.first_learned);
        out.threshold_closeness.copy_from_slice(&self.threshold_closeness);
        out.margin.copy_from_slice(&self.margin);
        out.aleatoric.copy_from_slice(&self.aleatoric);
        out.el2n.copy_from_slice(&self.el2n);
    }
}

/// One block's slices of every output, written once each by [`kernels::finish`].
pub(super) struct OutBlock<'a> {
    pub(super) start: usize,
    pub(super) confidence: &'a mut [MaybeUninit<f64>],
    pub(super) variability: &'a mut [MaybeUninit<f64>],
    pub(super) correctness: &'a mut [MaybeUninit<f64>],
    pub(super) forgetting: &'a mut [MaybeUninit<i32>],
    pub(super) never_learned: &'a mut [MaybeUninit<bool>],
    pub(super) first_learned: &'a mut [MaybeUninit<i32>],
    pub(super) threshold_closeness: &'a mut [MaybeUninit<f64>],
    pub(super) margin: &'a mut [MaybeUninit<f64>],
    pub(super) aleatoric: &'a mut [MaybeUninit<f64>],
    pub(super) el2n: &'a mut [MaybeUninit<f64>],
}

impl OutBlock<'_> {
    pub(super) fn len(&self) -> usize {
        self.confidence.len()
    }

    /// Reborrow every output cut to exactly `n`, so index loops carry no bounds checks.
    #[inline(always)]
    pub(super) fn slices(&mut self, n: usize) -> OutBlock<'_> {
        self.window(0, n)
    }

    /// Reborrow units `offset..offset + n` of every output.
    #[inline(always)]
    pub(super) fn window(&mut self, offset: usize, n: usize) -> OutBlock<'_> {
        let units = offset..offset + n;
        OutBlock {
            start: self.start + offset,
            confidence: &mut self.confidence[units.clone()],
            variability: &mut self.variability[units.clone()],
            correctness: &mut self.correctness[units.clone()],
            forgetting: &mut self.forgetting[units.clone()],
            never_learned: &mut self.never_learned[units.clone()],
            first_learned: &mut self.first_learned[units.clone()],
            threshold_closeness: &mut self.threshold_closeness[units.clone()],
            margin: &mut self.margin[units.clone()],
            aleatoric: &mut self.aleatoric[units.clone()],
            el2n: &mut self.el2n[units],
        }
    }
}

pub(super) fn split_outputs(out: &mut Statistics, units: usize, block: usize) -> Vec<OutBlock<'_>> {
    let Statistics { confidence, variability, correctness, forgetting, never_learned, first_learned, threshold_closeness, margin, aleatoric, el2n, .. } = out;
    let mut blocks = Vec::with_capacity(units.div_ceil(block));
    // `with_capacity` may give more room than asked for: cut every output to exactly `units`
    let mut iters = (
        confidence.spare_capacity_mut()[..units].chunks_mut(block),
        variability.spare_capacity_mut()[..units].chunks_mut(block),
        correctness.spare_capacity_mut()[..units].chunks_mut(block),
        forgetting.spare_capacity_mut()[..units].chunks_mut(block),
        never_learned.spare_capacity_mut()[..units].chunks_mut(block),
        first_learned.spare_capacity_mut()[..units].chunks_mut(block),
        threshold_closeness.spare_capacity_mut()[..units].chunks_mut(block),
        margin.spare_capacity_mut()[..units].chunks_mut(block),
        aleatoric.spare_capacity_mut()[..units].chunks_mut(block),
        el2n.spare_capacity_mut()[..units].chunks_mut(block),
    );
    let mut start = 0;
    for confidence in iters.0.by_ref() {
        let len = confidence.len();
        blocks.push(OutBlock {
            start,
            confidence,
            variability: iters.1.next().unwrap(),
            correctness: iters.2.next().unwrap(),
            forgetting: iters.3.next().unwrap(),
            never_learned: iters.4.next().unwrap(),
            first_learned: iters.5.next().unwrap(),
            threshold_closeness: iters.6.next().unwrap(),
            margin: iters.7.next().unwrap(),
            aleatoric: iters.8.next().unwrap(),
            el2n: iters.9.next().unwrap(),
        });
        start += len;
    }
    blocks
}
