//! The results: ten per-unit arrays, written once each, block by block, never zeroed first.
//!
//! A caller may ask for only some of them ([`Outputs`]): the kernels still write all ten, but
//! those left out go to a per-worker scratch block that stays in cache and is never returned,
//! so the kernels need no per-output branches and the left-out arrays cost neither memory nor
//! memory bandwidth.

use std::mem::MaybeUninit;

/// The ten statistics, in the order of [`Statistics`]' fields and of Python's
/// `datacarto.STATISTICS`: a statistic's value is its bit in [`Outputs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statistic {
    Confidence,
    Variability,
    Correctness,
    Forgetting,
    NeverLearned,
    FirstLearned,
    ThresholdCloseness,
    Margin,
    Aleatoric,
    El2n,
}

impl Statistic {
    /// Every statistic, in bit order.
    pub const ALL: [Statistic; 10] = [
        Statistic::Confidence,
        Statistic::Variability,
        Statistic::Correctness,
        Statistic::Forgetting,
        Statistic::NeverLearned,
        Statistic::FirstLearned,
        Statistic::ThresholdCloseness,
        Statistic::Margin,
        Statistic::Aleatoric,
        Statistic::El2n,
    ];

    /// Its name, as Python spells it (a key of `datacarto.compute`'s results).
    pub fn name(self) -> &'static str {
        match self {
            Statistic::Confidence => "confidence",
            Statistic::Variability => "variability",
            Statistic::Correctness => "correctness",
            Statistic::Forgetting => "forgetting",
            Statistic::NeverLearned => "never_learned",
            Statistic::FirstLearned => "first_learned",
            Statistic::ThresholdCloseness => "threshold_closeness",
            Statistic::Margin => "margin",
            Statistic::Aleatoric => "aleatoric",
            Statistic::El2n => "el2n",
        }
    }
}

/// Which of the ten results a computation returns: bit `i` is [`Statistic::ALL`]`[i]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outputs(pub u16);

impl Outputs {
    pub const ALL: Outputs = Outputs((1 << Statistic::ALL.len()) - 1);

    /// Whether `statistic` is returned.
    #[inline]
    pub fn has(self, statistic: Statistic) -> bool {
        self.0 & (1 << statistic as u32) != 0
    }

    /// Refuse bits past the ten results and an empty set.
    pub fn check(self) -> Result<Self, String> {
        if self.0 & !Self::ALL.0 != 0 || self.0 == 0 {
            return Err(format!("a non-empty bit mask of the ten statistics (1..={}), found {}", Self::ALL.0, self.0));
        }
        Ok(self)
    }
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs::ALL
    }
}

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
    /// the gold labels as the pass read them; `None` unless [`super::Options::copy_labels`]
    pub labels: Option<LabelsCopy>,
}

/// A copy of the gold labels ([`super::Labels`], owned).
#[derive(Clone, Debug, PartialEq)]
pub enum LabelsCopy {
    /// `[N]` class indices
    Classes(Vec<i64>),
    /// `[N * L]` flattened 0/1 targets
    Multilabel(Vec<u8>),
}

impl Statistics {
    /// Outputs with room for `units` (those in `outputs`; the others stay empty) and length
    /// 0: [`Plan::run`] writes every element, then sets the lengths, so the memory is never
    /// zeroed first (a memset of the whole output).
    pub(super) fn with_capacity(units: usize, outputs: Outputs) -> Self {
        let room = |statistic| if outputs.has(statistic) { units } else { 0 };
        Statistics {
            confidence: Vec::with_capacity(room(Statistic::Confidence)),
            variability: Vec::with_capacity(room(Statistic::Variability)),
            correctness: Vec::with_capacity(room(Statistic::Correctness)),
            forgetting: Vec::with_capacity(room(Statistic::Forgetting)),
            never_learned: Vec::with_capacity(room(Statistic::NeverLearned)),
            first_learned: Vec::with_capacity(room(Statistic::FirstLearned)),
            threshold_closeness: Vec::with_capacity(room(Statistic::ThresholdCloseness)),
            margin: Vec::with_capacity(room(Statistic::Margin)),
            aleatoric: Vec::with_capacity(room(Statistic::Aleatoric)),
            el2n: Vec::with_capacity(room(Statistic::El2n)),
            class_means: Vec::new(),
            labels: None,
        }
    }

    /// Mark the first `units` elements of every output in `outputs` written.
    ///
    /// # Safety
    /// Every output in `outputs` must have all of its first `units` elements initialized.
    pub(super) unsafe fn set_len(&mut self, units: usize, outputs: Outputs) {
        let len = |statistic| if outputs.has(statistic) { units } else { 0 };
        self.confidence.set_len(len(Statistic::Confidence));
        self.variability.set_len(len(Statistic::Variability));
        self.correctness.set_len(len(Statistic::Correctness));
        self.forgetting.set_len(len(Statistic::Forgetting));
        self.never_learned.set_len(len(Statistic::NeverLearned));
        self.first_learned.set_len(len(Statistic::FirstLearned));
        self.threshold_closeness.set_len(len(Statistic::ThresholdCloseness));
        self.margin.set_len(len(Statistic::Margin));
        self.aleatoric.set_len(len(Statistic::Aleatoric));
        self.el2n.set_len(len(Statistic::El2n));
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

    /// The first `out.len()` units of every output to `out`. With `avx512`, the float64 outputs
    /// of a full tile (whole 64-byte lines) are streamed past the cache
    /// ([`crate::stream::line()`]; the worker fences once its block is done); the rest is
    /// copied.
    ///
    /// # Safety
    /// `avx512` only where the CPU has AVX-512F; those units of every output were written.
    #[inline(always)]
    pub(super) unsafe fn stream_to(&self, out: &mut OutBlock<'_>, avx512: bool) {
        let n = out.len();
        let line = |into: &mut [MaybeUninit<f64>], from: &[MaybeUninit<f64>]| {
            if avx512 {
                // SAFETY: AVX-512F is present with `avx512`, and `from` is written (the contract)
                unsafe { crate::stream::line(into, from) }
            } else {
                into.copy_from_slice(from)
            }
        };
        line(out.confidence, &self.confidence[..n]);
        line(out.variability, &self.variability[..n]);
        line(out.correctness, &self.correctness[..n]);
        out.forgetting.copy_from_slice(&self.forgetting[..n]);
        out.never_learned.copy_from_slice(&self.never_learned[..n]);
        out.first_learned.copy_from_slice(&self.first_learned[..n]);
        line(out.threshold_closeness, &self.threshold_closeness[..n]);
        line(out.margin, &self.margin[..n]);
        line(out.aleatoric, &self.aleatoric[..n]);
        line(out.el2n, &self.el2n[..n]);
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

/// One block's slices of the returned outputs (`None`: left out, see [`Outputs`]), made whole
/// by [`OutSlots::complete`] with a worker's scratch when the block runs.
pub(super) struct OutSlots<'a> {
    start: usize,
    len: usize,
    confidence: Option<&'a mut [MaybeUninit<f64>]>,
    variability: Option<&'a mut [MaybeUninit<f64>]>,
    correctness: Option<&'a mut [MaybeUninit<f64>]>,
    forgetting: Option<&'a mut [MaybeUninit<i32>]>,
    never_learned: Option<&'a mut [MaybeUninit<bool>]>,
    first_learned: Option<&'a mut [MaybeUninit<i32>]>,
    threshold_closeness: Option<&'a mut [MaybeUninit<f64>]>,
    margin: Option<&'a mut [MaybeUninit<f64>]>,
    aleatoric: Option<&'a mut [MaybeUninit<f64>]>,
    el2n: Option<&'a mut [MaybeUninit<f64>]>,
}

/// A worker's sink for the outputs left out: one block long each (empty for the returned
/// ones), rewritten by every block and never read.
pub(super) struct Scratch {
    confidence: Vec<MaybeUninit<f64>>,
    variability: Vec<MaybeUninit<f64>>,
    correctness: Vec<MaybeUninit<f64>>,
    forgetting: Vec<MaybeUninit<i32>>,
    never_learned: Vec<MaybeUninit<bool>>,
    first_learned: Vec<MaybeUninit<i32>>,
    threshold_closeness: Vec<MaybeUninit<f64>>,
    margin: Vec<MaybeUninit<f64>>,
    aleatoric: Vec<MaybeUninit<f64>>,
    el2n: Vec<MaybeUninit<f64>>,
}

impl Scratch {
    pub(super) fn new(block: usize, outputs: Outputs) -> Self {
        fn sink<T>(len: usize) -> Vec<MaybeUninit<T>> {
            (0..len).map(|_| MaybeUninit::uninit()).collect()
        }
        let room = |statistic| if outputs.has(statistic) { 0 } else { block };
        Scratch {
            confidence: sink(room(Statistic::Confidence)),
            variability: sink(room(Statistic::Variability)),
            correctness: sink(room(Statistic::Correctness)),
            forgetting: sink(room(Statistic::Forgetting)),
            never_learned: sink(room(Statistic::NeverLearned)),
            first_learned: sink(room(Statistic::FirstLearned)),
            threshold_closeness: sink(room(Statistic::ThresholdCloseness)),
            margin: sink(room(Statistic::Margin)),
            aleatoric: sink(room(Statistic::Aleatoric)),
            el2n: sink(room(Statistic::El2n)),
        }
    }
}

impl<'a> OutSlots<'a> {
    /// The block's [`OutBlock`]: its own slices, and `scratch` for the outputs left out.
    pub(super) fn complete<'b>(self, scratch: &'b mut Scratch) -> OutBlock<'b>
    where
        'a: 'b,
    {
        let n = self.len;
        OutBlock {
            start: self.start,
            confidence: self.confidence.unwrap_or_else(|| &mut scratch.confidence[..n]),
            variability: self.variability.unwrap_or_else(|| &mut scratch.variability[..n]),
            correctness: self.correctness.unwrap_or_else(|| &mut scratch.correctness[..n]),
            forgetting: self.forgetting.unwrap_or_else(|| &mut scratch.forgetting[..n]),
            never_learned: self.never_learned.unwrap_or_else(|| &mut scratch.never_learned[..n]),
            first_learned: self.first_learned.unwrap_or_else(|| &mut scratch.first_learned[..n]),
            threshold_closeness: self.threshold_closeness.unwrap_or_else(|| &mut scratch.threshold_closeness[..n]),
            margin: self.margin.unwrap_or_else(|| &mut scratch.margin[..n]),
            aleatoric: self.aleatoric.unwrap_or_else(|| &mut scratch.aleatoric[..n]),
            el2n: self.el2n.unwrap_or_else(|| &mut scratch.el2n[..n]),
        }
    }
}

/// `units` cut into blocks of `block`: each block's slices of the outputs in `outputs` (the
/// others `None`).
pub(super) fn split_outputs(out: &mut Statistics, units: usize, block: usize, outputs: Outputs) -> Vec<OutSlots<'_>> {
    /// One output's blocks, or `None` per block when it is left out.
    fn blocks_of<T>(output: &mut Vec<T>, returned: bool, units: usize, block: usize) -> Box<dyn Iterator<Item = Option<&mut [MaybeUninit<T>]>> + '_> {
        if returned {
            // `with_capacity` may give more room than asked for: cut to exactly `units`
            Box::new(output.spare_capacity_mut()[..units].chunks_mut(block).map(Some))
        } else {
            Box::new(std::iter::repeat_with(|| None))
        }
    }
    let Statistics { confidence, variability, correctness, forgetting, never_learned, first_learned, threshold_closeness, margin, aleatoric, el2n, .. } = out;
    let mut iters = (
        blocks_of(confidence, outputs.has(Statistic::Confidence), units, block),
        blocks_of(variability, outputs.has(Statistic::Variability), units, block),
        blocks_of(correctness, outputs.has(Statistic::Correctness), units, block),
        blocks_of(forgetting, outputs.has(Statistic::Forgetting), units, block),
        blocks_of(never_learned, outputs.has(Statistic::NeverLearned), units, block),
        blocks_of(first_learned, outputs.has(Statistic::FirstLearned), units, block),
        blocks_of(threshold_closeness, outputs.has(Statistic::ThresholdCloseness), units, block),
        blocks_of(margin, outputs.has(Statistic::Margin), units, block),
        blocks_of(aleatoric, outputs.has(Statistic::Aleatoric), units, block),
        blocks_of(el2n, outputs.has(Statistic::El2n), units, block),
    );
    (0..units)
        .step_by(block.max(1))
        .map(|start| OutSlots {
            start,
            len: block.min(units - start),
            confidence: iters.0.next().unwrap(),
            variability: iters.1.next().unwrap(),
            correctness: iters.2.next().unwrap(),
            forgetting: iters.3.next().unwrap(),
            never_learned: iters.4.next().unwrap(),
            first_learned: iters.5.next().unwrap(),
            threshold_closeness: iters.6.next().unwrap(),
            margin: iters.7.next().unwrap(),
            aleatoric: iters.8.next().unwrap(),
            el2n: iters.9.next().unwrap(),
        })
        .collect()
}
