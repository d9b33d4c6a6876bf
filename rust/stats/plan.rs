//! One computation: its validated inputs ([`Plan::new`]) and the parallel pass over blocks.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::avx512;
use super::kernels::{self, Float, Stored};
use super::output::{split_outputs, LabelsCopy, OutBlock, OutSlots, Outputs, Scratch, Statistics};
use super::state::{Accumulators, Rule, Stream};
use super::{Correctness, Labels, Options, Progress, Task};
use crate::dynamics::{DynamicsView, Probs};
use crate::error::{Error, Result};

/// Bytes of one epoch's chunk of a block: small enough that a block's accumulators and chunk
/// stay in L1/L2, large enough that per-chunk overhead vanishes.
const CHUNK_BYTES: usize = 32 * 1024;
/// Cap on units per block, so the accumulators (~56 bytes a unit) stay within L2.
const MAX_BLOCK_UNITS: usize = 2048;
/// Floor on units per block: wide rows (hundreds of columns) would otherwise make blocks of a
/// handful of units, each paying a block's fixed costs (its task, its gold labels, a partial
/// row group); a chunk is then more than `CHUNK_BYTES`, still one sequential stream.
const MIN_BLOCK_UNITS: usize = 64;

/// Validated inputs of one computation.
pub(super) struct Plan<'a> {
    view: DynamicsView<'a>,
    labels: Labels<'a>,
    task: Task,
    correctness: Correctness,
    epochs: Range<usize>,
    ddof: usize,
    /// units (examples, or example-label pairs) and the columns each unit reads per epoch
    pub(super) units: usize,
    row_len: usize,
    /// class indices must lie in `[0, n_classes)` (2 for binary and multilabel)
    n_classes: usize,
    class_means: bool,
    outputs: Outputs,
    /// the pass copies the labels block by block and reads only the copy ([`Options::copy_labels`])
    copy_labels: bool,
}

/// Where one block of the pass copies its gold labels (its part of [`Statistics::labels`]).
enum LabelSlot<'s> {
    Classes(&'s mut [MaybeUninit<i64>]),
    Multilabel(&'s mut [MaybeUninit<u8>]),
}

impl<'a> Plan<'a> {
    pub(super) fn new(view: &DynamicsView<'a>, labels: Labels<'a>, options: &Options) -> Result<Self> {
        let dims = view.dims;
        let origin = view.origin;
        // An end of `usize::MAX` runs to the last epoch (the default window); any other must lie
        // in the file. Clamped instead, a window resolved against a header read earlier (the
        // Python layer's) silently shrank when the file had since been replaced by a shorter
        // one: a result over two epochs reported as three.
        let end = if options.epochs.end == usize::MAX { dims.n_epochs } else { options.epochs.end };
        if end > dims.n_epochs {
            return Err(Error::invalid(origin, "epochs", format!("expected a window inside the file's {} epoch(s), found {:?} (was the file replaced since its header was read?)", dims.n_epochs, options.epochs)));
        }
        let epochs = options.epochs.start..end;
        if epochs.start >= epochs.end {
            return Err(Error::invalid("epochs", "window", format!("expected a non-empty window inside [0, {}), found {:?}", dims.n_epochs, options.epochs)));
        }
        let window = epochs.end - epochs.start;
        if options.ddof >= window {
            return Err(Error::invalid("ddof", "ddof", format!("{} leaves no degrees of freedom over a window of {window} epoch(s)", options.ddof)));
        }
        if let Correctness::Threshold(t) = options.correctness {
            if !(0.0..=1.0).contains(&t) {
                return Err(Error::invalid("threshold", "threshold", format!("expected a probability in [0, 1], found {t}")));
            }
        }
        let n_classes = match options.task {
            Task::Multiclass if dims.n_labels < 2 => {
                return Err(Error::invalid(origin, "shape", format!("task multiclass expects at least 2 label columns, found {}", dims.n_labels)))
            }
            Task::Binary if dims.n_labels != 1 => {
                return Err(Error::invalid(origin, "shape", format!("task binary expects 1 label column, found {}", dims.n_labels)))
            }
            Task::Multiclass => dims.n_labels,
            Task::Binary | Task::Multilabel => 2,
        };
        match (options.task, labels) {
            (Task::Multiclass | Task::Binary, Labels::Classes(classes)) => {
                if classes.len() != dims.n_examples {
                    return Err(Error::invalid("labels", "shape", format!("expected {} labels to match {origin}, found {}", dims.n_examples, classes.len())));
                }
                // each class index is checked against `n_classes` by the block that reads it,
                // in the parallel pass (`check_block_classes`), or up front (`check_classes`)
            }
            (Task::Multilabel, Labels::Multilabel(targets)) => {
                if targets.len() != dims.n_examples * dims.n_labels {
                    return Err(Error::invalid("labels", "shape", format!("expected a 0/1 array [{}, {}] to match {origin}, found {} values", dims.n_examples, dims.n_labels, targets.len())));
                }
                // checked here, or by each block on its copy when the pass copies them
                if !options.copy_labels && max_target(targets) > 1 {
                    return Err(bad_target(targets, 0, dims.n_labels));
                }
            }
            (Task::Multilabel, Labels::Classes(_)) => return Err(Error::invalid("labels", "shape", "task multilabel expects a 0/1 array [N, L]")),
            (_, Labels::Multilabel(_)) => return Err(Error::invalid("labels", "shape", "a 0/1 array [N, L] needs task multilabel")),
        }
        let (units, row_len) = match options.task {
            Task::Multiclass => (dims.n_examples, dims.n_labels),
            Task::Binary => (dims.n_examples, 1),
            Task::Multilabel => (dims.n_examples * dims.n_labels, 1),
        };
        Ok(Plan { view: *view, labels, task: options.task, correctness: options.correctness, epochs, ddof: options.ddof, units, row_len, n_classes, class_means: options.class_means, outputs: options.outputs, copy_labels: options.copy_labels })
    }

    /// Every class index in `[0, n_classes)`, and every target 0 or 1 when the pass copies the
    /// labels ([`Self::new`] checked them otherwise), in the labels the plan was given: a
    /// vectorized max first (class indices as u64, so negatives are huge), the first bad
    /// index only on failure, for the message.
    pub(super) fn check_labels(&self) -> Result<()> {
        self.check(self.labels, 0)
    }

    /// [`Self::check_labels`] for `labels` that start at unit `offset` (its errors name the
    /// index in the whole array).
    fn check(&self, labels: Labels<'_>, offset: usize) -> Result<()> {
        match labels {
            Labels::Classes(classes) if kernels::max_as_u64(classes) >= self.n_classes as u64 => Err(bad_class(classes, offset, self.n_classes)),
            Labels::Multilabel(targets) if self.copy_labels && max_target(targets) > 1 => Err(bad_target(targets, offset, self.view.dims.n_labels)),
            _ => Ok(()),
        }
    }

    /// The gold labels of the units in `range`, checked before the kernels read them (in the
    /// parallel pass, rather than a serial scan of every label before it). With a `slot` (the
    /// pass copies the labels), they are first copied into it, and only the copy is read from
    /// then on, its check included. Targets are checked here only when copied ([`Self::new`]
    /// checked them otherwise). On failure, [`Self::run`] names the first bad index of the
    /// whole array, whichever block found one.
    fn block_labels<'s>(&'s self, range: &Range<usize>, slot: Option<LabelSlot<'s>>) -> Result<Labels<'s>> {
        let labels = match (self.labels, slot) {
            (Labels::Classes(classes), Some(LabelSlot::Classes(slot))) => Labels::Classes(copy_into(&classes[range.clone()], slot)),
            (Labels::Multilabel(targets), Some(LabelSlot::Multilabel(slot))) => Labels::Multilabel(copy_into(&targets[range.clone()], slot)),
            (labels, _) => labels.slice(range.clone()),
        };
        self.check(labels, range.start)?;
        Ok(labels)
    }

    pub(super) fn block_units(&self) -> usize {
        let element = match self.view.probs {
            Probs::F16(_) => 2,
            Probs::F32(_) => 4,
            Probs::F64(_) => 8,
        };
        // whole groups of eight (the bounds are multiples of 8): only a file's last block may
        // end in a partial group, which the AVX-512 tiled path leaves to the epoch-major one
        (CHUNK_BYTES / (self.row_len * element)).clamp(MIN_BLOCK_UNITS, MAX_BLOCK_UNITS) / 8 * 8
    }

    pub(super) fn run(&self, progress: Option<Progress<'_>>) -> Result<Statistics> {
        let mut out = Statistics::with_capacity(self.units, self.outputs);
        let block = self.block_units();
        let done = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let per_example = self.units / self.view.dims.n_examples;
        // the class means, when asked for: one slice per block, filled by the block's own task
        let mut means = if self.class_means { vec![0.0f64; self.epoch_len()] } else { Vec::new() };
        let mut mean_blocks: Vec<Option<&mut [f64]>> = means.chunks_mut(block * self.row_len).map(Some).collect();
        let blocks: Vec<OutSlots<'_>> = split_outputs(&mut out, self.units, block, self.outputs);
        mean_blocks.resize_with(blocks.len(), || None);
        // the labels' copy, when asked for: one slot per block, filled by the block's own task
        let mut copy = self.copy_labels.then(|| match self.labels {
            Labels::Classes(classes) => LabelsCopy::Classes(Vec::with_capacity(classes.len())),
            Labels::Multilabel(targets) => LabelsCopy::Multilabel(Vec::with_capacity(targets.len())),
        });
        let mut label_blocks: Vec<Option<LabelSlot<'_>>> = match &mut copy {
            Some(LabelsCopy::Classes(copy)) => copy.spare_capacity_mut().chunks_mut(block).map(|slot| Some(LabelSlot::Classes(slot))).collect(),
            Some(LabelsCopy::Multilabel(copy)) => copy.spare_capacity_mut().chunks_mut(block).map(|slot| Some(LabelSlot::Multilabel(slot))).collect(),
            None => Vec::new(),
        };
        label_blocks.resize_with(blocks.len(), || None);
        let work: Vec<_> = blocks.into_iter().zip(mean_blocks).zip(label_blocks).collect();
        // each worker reuses one set of accumulators (reset, not reallocated) and one scratch
        // block for the outputs left out, for all its blocks
        let fresh = || (Accumulators::new(block), Scratch::new(block, self.outputs));
        let pass = work.into_par_iter().try_for_each_init(fresh, |(acc, scratch), ((slots, block_means), label_slot)| -> Result<()> {
            if stop.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let mut out_block: OutBlock<'_> = slots.complete(scratch);
            self.process(&mut out_block, acc, label_slot)?;
            // the block's outputs were streamed: visible to the caller once the pool joins
            crate::stream::fence();
            if let Some(block_means) = block_means {
                // right after the block's statistics, while its chunks are still in cache
                self.mean_columns(out_block.start..out_block.start + out_block.len(), block_means);
            }
            if let Some(report) = progress {
                let units_done = done.fetch_add(out_block.len(), Ordering::Relaxed) + out_block.len();
                if !report(units_done / per_example, self.view.dims.n_examples) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(Error::Interrupted);
                }
            }
            Ok(())
        });
        if let Err(error) = pass {
            // a bad label is the error to report whatever else went wrong first (a value, an
            // interruption), as when the labels were checked before the pass: the first of the
            // whole array (the block's own, should the caller's array have changed since)
            self.check_labels()?;
            return Err(error);
        }
        // SAFETY: the blocks tile 0..units and every block writes all ten outputs of each of
        // its units (`kernels::finish`, reached by both paths) or fails, and we got here only if none failed.
        unsafe { out.set_len(self.units, self.outputs) };
        out.class_means = means;
        // SAFETY: as above, every block copied its slot of the labels (`block_labels`)
        match &mut copy {
            Some(LabelsCopy::Classes(copy)) => unsafe { copy.set_len(copy.capacity()) },
            Some(LabelsCopy::Multilabel(copy)) => unsafe { copy.set_len(copy.capacity()) },
            None => {}
        }
        out.labels = copy;
        Ok(out)
    }

    /// Each column's mean over the window for the units in `range` (values already validated
    /// by the block's statistics; clamped like the kernels clamp them), summed in epoch order.
    fn mean_columns(&self, range: Range<usize>, means: &mut [f64]) {
        means.fill(0.0);
        let mut widened: Vec<f32> = Vec::new();
        for e in self.epochs.clone() {
            let chunk = self.chunk_range(e, &range);
            match self.view.probs {
                Probs::F32(data) => add_clamped(&data[chunk], means),
                Probs::F64(data) => add_clamped(&data[chunk], means),
                Probs::F16(data) => {
                    kernels::widen_f16(&data[chunk], &mut widened);
                    add_clamped(&widened, means);
                }
            }
        }
        let (n, _) = self.counts();
        for m in means.iter_mut() {
            *m /= n;
        }
    }

    /// The gold labels of a block (`labels`, its own units only): 0/1 bytes (binary,
    /// multilabel; empty for multiclass) and class indices (multiclass; empty otherwise).
    fn block_gold<'l>(&self, labels: Labels<'l>) -> (Vec<u8>, &'l [i64]) {
        match (self.task, labels) {
            (Task::Multiclass, Labels::Classes(classes)) => (Vec::new(), classes),
            (_, Labels::Classes(classes)) => (classes.iter().map(|&c| c as u8).collect(), &[]),
            (_, Labels::Multilabel(targets)) => (targets.to_vec(), &[]),
        }
    }

    fn process(&self, out: &mut OutBlock<'_>, acc: &mut Accumulators, label_slot: Option<LabelSlot<'_>>) -> Result<()> {
        let range = out.start..out.start + out.len();
        let labels = self.block_labels(&range, label_slot)?;
        let rule = Rule::new(self.correctness);
        if self.row_len <= 2 {
            let tiled = match self.view.probs {
                Probs::F32(data) => self.fold_tiled(data, labels, rule, out),
                Probs::F64(data) => self.fold_tiled(data, labels, rule, out),
                // widened to float32 (and clamped) in registers as the tiles read it
                Probs::F16(data) => self.fold_tiled(data, labels, rule, out),
            };
            if tiled {
                return Ok(());
            }
            // Some value of the block lies outside [0, 1]: the epoch-major path below clamps
            // rounding and locates anything worse (it rewrites every output of the block, and
            // both paths agree bit for bit).
        }
        if self.fold_tiled_multiclass(labels, rule, acc, out) {
            return Ok(());
        }
        let (gold_bits, classes) = self.block_gold(labels);
        // The kernels see only values in [0, 1] (they check it, nothing more). A chunk that
        // fails the check is folded again from a repaired copy: rounding clamped into [0, 1],
        // anything further out left for the kernel to refuse. Out-of-range values are rare, so
        // the common case pays one check per chunk and no copy. A failed fold has touched the
        // accumulators, so the block starts over in repair mode, every chunk checked first.
        if !self.fold_epochs(classes, &gold_bits, rule, acc, &range, false, None)? {
            self.fold_epochs(classes, &gold_bits, rule, acc, &range, true, None)?;
        }
        self.finalize(acc, out);
        Ok(())
    }

    /// Fold every epoch of the window for the units in `range`. Without `repair`: false as soon
    /// as a chunk holds a value outside [0, 1] (the accumulators are then spoilt). With it:
    /// chunks outside [0, 1] are folded from a clamped copy, and a value beyond the rounding
    /// tolerance is an error naming it.
    #[allow(clippy::too_many_arguments)]
    fn fold_epochs(&self, classes: &[i64], gold_bits: &[u8], rule: Rule, acc: &mut Accumulators, range: &Range<usize>, repair: bool, mut first_right: Option<&mut Vec<bool>>) -> Result<bool> {
        acc.reset(range.len());
        let mut widened: Vec<f32> = Vec::new();
        let mut repaired32: Vec<f32> = Vec::new();
        let mut repaired64: Vec<f64> = Vec::new();
        for (k, e) in self.epochs.clone().enumerate() {
            let chunk = self.chunk_range(e, range);
            let valid = match self.view.probs {
                Probs::F32(data) => {
                    let values = repaired(&data[chunk], repair, &mut repaired32);
                    self.fold_epoch(values, classes, gold_bits, k as u32, rule, acc)
                }
                Probs::F64(data) => {
                    let values = repaired(&data[chunk], repair, &mut repaired64);
                    self.fold_epoch(values, classes, gold_bits, k as u32, rule, acc)
                }
                Probs::F16(data) if self.task == Task::Multiclass && kernels::avx512_rows(self.row_len) => {
                    // read as float16 and widened in registers, clamped as below
                    kernels::multiclass_f16(&data[chunk], self.row_len, classes, k as u32, rule, acc)
                }
                Probs::F16(data) => {
                    // float16 rounding is wider than float32's: clamped while widened, always
                    kernels::widen_f16(&data[chunk], &mut widened);
                    self.fold_epoch(&widened, classes, gold_bits, k as u32, rule, acc)
                }
            };
            if !valid {
                if repair || matches!(self.view.probs, Probs::F16(_)) {
                    return Err(self.bad_value(e..e + 1, range));
                }
                return Ok(false);
            }
            if k == 0 {
                if let Some(first_right) = first_right.as_deref_mut() {
                    first_right.extend(acc.last_right[..range.len()].iter().map(|&r| r != 0));
                }
            }
        }
        Ok(true)
    }

    /// Fold every epoch of the window into `acc` for the units in `range` (the epoch-major
    /// path, for every row length) and append each unit's verdict at the window's first epoch
    /// to `first_right`; the accumulators are left unfinished. The pass behind a partial state
    /// ([`super::partial`]): [`Self::process`] and its speed are untouched by it.
    pub(super) fn fold_raw(&self, range: Range<usize>, acc: &mut Accumulators, first_right: &mut Vec<bool>) -> Result<()> {
        let (gold_bits, classes) = self.block_gold(self.labels.slice(range.clone()));
        let rule = Rule::new(self.correctness);
        // the same folding as `process`, rounding repair included, so a piece's state agrees
        // with `compute` on any input it accepts
        let base = first_right.len();
        if !self.fold_epochs(classes, &gold_bits, rule, acc, &range, false, Some(first_right))? {
            first_right.truncate(base);
            self.fold_epochs(classes, &gold_bits, rule, acc, &range, true, Some(first_right))?;
        }
        Ok(())
    }

    /// The window this plan folds (absolute epochs of its view).
    pub(super) fn window(&self) -> Range<usize> {
        self.epochs.clone()
    }

    pub(super) fn task(&self) -> Task {
        self.task
    }

    /// The whole window for one block of one- or two-column rows, each tile of units walking
    /// every epoch with its accumulators in registers; false when some value is not a probability.
    fn fold_tiled<S: Stored>(&self, data: &[S], labels: Labels<'_>, rule: Rule, out: &mut OutBlock<'_>) -> bool {
        let (stream, n, divisor) = self.tile_walk();
        // the block's gold labels read where they are: class indices, or 0/1 targets
        match labels {
            Labels::Classes(classes) if self.task == Task::Multiclass => kernels::tiled_two_class(data, &stream, classes, rule, n, divisor, out),
            Labels::Classes(classes) => kernels::tiled_binary(data, &stream, classes, rule, n, divisor, out),
            Labels::Multilabel(targets) => kernels::tiled_binary(data, &stream, targets, rule, n, divisor, out),
        }
    }

    /// The whole window for one block of multiclass rows that AVX-512's column path summarizes
    /// (float16 of 3 to 32 columns, float32 of 3 to 16), eight units at a time with their
    /// running state in registers ([`avx512::tiled_f16`]); false when that path declines the
    /// block, whose outputs the epoch-major path then writes.
    fn fold_tiled_multiclass(&self, labels: Labels<'_>, rule: Rule, acc: &mut Accumulators, out: &mut OutBlock<'_>) -> bool {
        let Labels::Classes(classes) = labels else { return false };
        if self.task != Task::Multiclass || !kernels::avx512_rows(self.row_len) {
            return false;
        }
        let (stream, n, divisor) = self.tile_walk();
        match self.view.probs {
            Probs::F16(data) => avx512::tiled_f16(data, &stream, self.row_len, classes, rule, n, divisor, acc, out),
            Probs::F32(data) => avx512::tiled_f32(data, &stream, self.row_len, classes, rule, n, divisor, acc, out),
            Probs::F64(_) => false,
        }
    }

    /// Element range of epoch `e` for the units in `range`.
    fn chunk_range(&self, e: usize, range: &Range<usize>) -> Range<usize> {
        let epoch_len = self.epoch_len();
        e * epoch_len + range.start * self.row_len..e * epoch_len + range.end * self.row_len
    }

    /// Fold one epoch's chunk into the accumulators; false when some value is not a probability.
    fn fold_epoch<F: Float>(&self, values: &[F], classes: &[i64], gold_bits: &[u8], k: u32, rule: Rule, acc: &mut Accumulators) -> bool {
        match self.task {
            Task::Multiclass if self.row_len == 2 => kernels::two_class(values, classes, k, rule, acc),
            Task::Multiclass => kernels::multiclass(values, self.row_len, classes, k, rule, acc),
            Task::Binary | Task::Multilabel => kernels::binary(values, gold_bits, k, rule, acc),
        }
    }

    /// Locate the first bad value (in epoch order) of `epochs` in the block (the slow path, for the message).
    fn bad_value(&self, epochs: Range<usize>, range: &Range<usize>) -> Error {
        let first_bad_in = |epoch: usize| {
            let chunk = self.chunk_range(epoch, range);
            match self.view.probs {
                Probs::F32(data) => first_bad(&data[chunk]),
                Probs::F64(data) => first_bad(&data[chunk]),
                Probs::F16(data) => {
                    let mut widened = Vec::new();
                    kernels::widen_f16(&data[chunk], &mut widened);
                    first_bad(&widened)
                }
            }
            .map(|(offset, value)| (epoch, offset, value))
        };
        let first = epochs.clone().find_map(first_bad_in);
        let (epoch, offset, value) = first.unwrap_or((epochs.start, 0, f64::NAN));
        let unit = range.start + offset / self.row_len;
        let (example, label) = match self.task {
            Task::Multilabel => (unit / self.view.dims.n_labels, unit % self.view.dims.n_labels),
            _ => (unit, offset % self.row_len),
        };
        Error::invalid(
            self.view.origin,
            "values",
            format!("expected probabilities in [0, 1], found {value} at epoch {epoch}, example {example}, label {label}"),
        )
    }

    fn finalize(&self, acc: &mut Accumulators, out: &mut OutBlock<'_>) {
        let (n, divisor) = self.counts();
        kernels::finalize(acc, out, n, divisor, self.task == Task::Multiclass);
    }

    /// The window's epoch count and the variance's divisor (`n - ddof`), as the outputs use them.
    fn counts(&self) -> (f64, f64) {
        let n = (self.epochs.end - self.epochs.start) as f64;
        (n, n - self.ddof as f64)
    }

    /// What a tiled path walks (every epoch of the window, whole epochs apart) and [`Self::counts`].
    fn tile_walk(&self) -> (Stream, f64, f64) {
        let (n, divisor) = self.counts();
        (Stream { epoch_len: self.epoch_len(), epochs: self.epochs.clone() }, n, divisor)
    }

    /// Values in one epoch of the input (every unit's row).
    fn epoch_len(&self) -> usize {
        self.units * self.row_len
    }
}

/// `values` as they are, or, in repair mode when some value lies outside [0, 1], a copy in
/// `scratch` with the rounding within [`Float::TOLERANCE`] clamped into [0, 1].
fn repaired<'v, F: Float>(values: &'v [F], repair: bool, scratch: &'v mut Vec<F>) -> &'v [F] {
    if !repair || kernels::all_probabilities(values) {
        return values;
    }
    scratch.clear();
    scratch.extend(values.iter().map(|&x| if x.within_tolerance() { x.clamp_unit() } else { x }));
    scratch
}

fn add_clamped<F: Float>(values: &[F], sums: &mut [f64]) {
    for (sum, &x) in sums.iter_mut().zip(values) {
        *sum += x.clamp_unit().to_f64();
    }
}

fn first_bad<F: Float>(values: &[F]) -> Option<(usize, f64)> {
    values.iter().position(|x| !x.within_tolerance()).map(|i| (i, values[i].to_f64()))
}

/// The largest of `targets` (a vectorized max: SSE2 pmaxub).
fn max_target(targets: &[u8]) -> u8 {
    targets.iter().fold(0u8, |max, &y| max.max(y))
}

/// The error naming the first class index of `classes` (unit `offset` on) outside
/// `[0, n_classes)`. Cold and out of line, so that the error path stays out of the code every
/// block runs: written inside [`Plan::check`], it made float16 binary 1.3x slower with 2
/// threads (Zen 4).
#[cold]
#[inline(never)]
fn bad_class(classes: &[i64], offset: usize, n_classes: usize) -> Error {
    let index = classes.iter().position(|&c| c as u64 >= n_classes as u64).unwrap_or(0);
    Error::invalid("labels", "value", format!("expected class indices in [0, {n_classes}), found {} at index {}", classes[index], offset + index))
}

/// The error naming the first target of `targets` (flat unit `offset` on) that is not 0 or 1
/// (cold and out of line, as [`bad_class`]).
#[cold]
#[inline(never)]
fn bad_target(targets: &[u8], offset: usize, n_labels: usize) -> Error {
    let index = offset + targets.iter().position(|&y| y > 1).unwrap_or(0);
    Error::invalid("labels", "value", format!("expected 0 or 1, found {} at ({}, {})", targets[index - offset], index / n_labels, index % n_labels))
}

/// `source` copied into `slot` (the same length): the copy, to be read from then on.
fn copy_into<'s, T: Copy>(source: &[T], slot: &'s mut [MaybeUninit<T>]) -> &'s [T] {
    assert_eq!(source.len(), slot.len(), "a block's labels and its slot of the copy");
    // SAFETY: `slot` is `source.len()` writable elements, apart from `source` (the caller's
    // labels, not the copy being made); once written, they are initialized `T`s
    unsafe {
        std::ptr::copy_nonoverlapping(source.as_ptr(), slot.as_mut_ptr().cast::<T>(), source.len());
        std::slice::from_raw_parts(slot.as_ptr().cast::<T>(), slot.len())
    }
}
