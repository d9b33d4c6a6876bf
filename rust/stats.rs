//! The statistics kernels: one streaming pass over a dynamics block.
//!
//! Work is split into fixed blocks of consecutive "units" (examples, or (example, label)
//! pairs for multilabel). Each block walks the epochs of the window, reading one contiguous
//! chunk per epoch and folding it into small per-unit accumulators, then writes its slice of
//! every output. Blocks never depend on each other or on the thread count, so the results are
//! bit-identical for any number of threads, and no `[E, N]` intermediate is ever built: memory
//! beyond the outputs is a few KiB of accumulators per block in flight.
//!
//! Rows of one or two columns (binary, multilabel, two-class; float32 and float64) take the
//! tiled path instead: within a block, tiles of 8 units each walk every epoch with their
//! accumulators in registers, one prefetched stream per epoch, and write their outputs
//! directly. There the per-unit work is a few instructions, and the epoch-major path spent most
//! of its time loading and storing accumulators. Both paths run the same per-unit operations
//! in the same order, so they agree bit for bit (a proptest checks it).

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use crate::dynamics::{DynamicsView, Probs};
use crate::error::{Error, Result};

/// How the rows of the dynamics block are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// each row is a probability vector over `L >= 2` classes; gold is a class index
    Multiclass,
    /// one column holding P(class 1); gold is 0 or 1
    Binary,
    /// `L` independent probabilities; gold is a 0/1 matrix `[N, L]`
    Multilabel,
}

/// When an epoch's prediction counts as right.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Correctness {
    /// the gold label's probability is strictly the largest (ties are wrong)
    Argmax,
    /// the gold label's probability is at least this threshold
    Threshold(f64),
}

/// Gold labels.
#[derive(Clone, Copy, Debug)]
pub enum Labels<'a> {
    /// `[N]` class indices (multiclass, binary)
    Classes(&'a [i64]),
    /// `[N, L]` flattened 0/1 targets (multilabel)
    Multilabel(&'a [u8]),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub task: Task,
    pub correctness: Correctness,
    /// half-open epoch window
    pub epochs: Range<usize>,
    /// delta degrees of freedom of the variability (0: population std, the paper's)
    pub ddof: usize,
    /// worker threads; `None` uses rayon's global pool (all cores)
    pub threads: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options { task: Task::Multiclass, correctness: Correctness::Argmax, epochs: 0..usize::MAX, ddof: 0, threads: None }
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
}

impl Statistics {
    /// Outputs with room for `units` and length 0: [`Plan::run`] writes every element, then
    /// sets the lengths, so the memory is never zeroed first (a memset of the whole output).
    fn with_capacity(units: usize) -> Self {
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
        }
    }

    /// Mark the first `units` elements of every output written.
    ///
    /// # Safety
    /// Every output must have all of its first `units` elements initialized.
    unsafe fn set_len(&mut self, units: usize) {
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

/// Bytes of one epoch's chunk of a block: small enough that a block's accumulators and chunk
/// stay in L1/L2, large enough that per-chunk overhead vanishes.
const CHUNK_BYTES: usize = 32 * 1024;
/// Cap on units per block, so the accumulators (~56 bytes a unit) stay within L2.
const MAX_BLOCK_UNITS: usize = 2048;

/// Called after each block with (examples done, total examples); returning `false` stops the
/// computation with [`Error::Interrupted`]. It may be called from any worker thread.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) -> bool + Sync);

/// Compute every statistic over `view` in one parallel streaming pass.
pub fn compute(view: DynamicsView<'_>, labels: Labels<'_>, options: &Options, progress: Option<Progress<'_>>) -> Result<Statistics> {
    let plan = Plan::new(&view, labels, options)?;
    match options.threads {
        None => plan.run(progress),
        Some(threads) => {
            // More workers than blocks, or far more than cores, only costs thread start-up.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let blocks = plan.units.div_ceil(plan.block_units());
            let threads = threads.min(blocks).min(8 * cores).max(1);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| Error::invalid("threads", "threads", format!("could not start {threads} worker threads: {e}")))?;
            pool.install(|| plan.run(progress))
        }
    }
}

/// Validated inputs of one computation.
struct Plan<'a> {
    view: DynamicsView<'a>,
    labels: Labels<'a>,
    task: Task,
    correctness: Correctness,
    epochs: Range<usize>,
    ddof: usize,
    /// units (examples, or example-label pairs) and the columns each unit reads per epoch
    units: usize,
    row_len: usize,
}

impl<'a> Plan<'a> {
    fn new(view: &DynamicsView<'a>, labels: Labels<'a>, options: &Options) -> Result<Self> {
        let dims = view.dims;
        let origin = view.origin;
        let epochs = options.epochs.start..options.epochs.end.min(dims.n_epochs);
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
                // a vectorized max first (as u64, so negatives are huge); the index only on failure
                if kernels::max_as_u64(classes) >= n_classes as u64 {
                    let index = classes.iter().position(|&c| c as u64 >= n_classes as u64).unwrap_or(0);
                    return Err(Error::invalid("labels", "value", format!("expected class indices in [0, {n_classes}), found {} at index {index}", classes[index])));
                }
            }
            (Task::Multilabel, Labels::Multilabel(targets)) => {
                if targets.len() != dims.n_examples * dims.n_labels {
                    return Err(Error::invalid("labels", "shape", format!("expected a 0/1 array [{}, {}] to match {origin}, found {} values", dims.n_examples, dims.n_labels, targets.len())));
                }
                // a vectorized max first (SSE2 pmaxub); the position only on failure
                if targets.iter().fold(0u8, |max, &y| max.max(y)) > 1 {
                    let index = targets.iter().position(|&y| y > 1).unwrap_or(0);
                    return Err(Error::invalid("labels", "value", format!("expected 0 or 1, found {} at ({}, {})", targets[index], index / dims.n_labels, index % dims.n_labels)));
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
        Ok(Plan { view: *view, labels, task: options.task, correctness: options.correctness, epochs, ddof: options.ddof, units, row_len })
    }

    fn block_units(&self) -> usize {
        let element = match self.view.probs {
            Probs::F16(_) => 2,
            Probs::F32(_) => 4,
            Probs::F64(_) => 8,
        };
        (CHUNK_BYTES / (self.row_len * element)).clamp(1, MAX_BLOCK_UNITS)
    }

    fn run(&self, progress: Option<Progress<'_>>) -> Result<Statistics> {
        let mut out = Statistics::with_capacity(self.units);
        let block = self.block_units();
        let done = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let per_example = self.units / self.view.dims.n_examples;
        let blocks: Vec<OutBlock<'_>> = split_outputs(&mut out, self.units, block);
        // each worker reuses one set of accumulators for all its blocks (reset, not reallocated)
        let fresh = || Accumulators::new(block);
        blocks.into_par_iter().try_for_each_init(fresh, |acc, mut out_block| -> Result<()> {
            if stop.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            self.process(&mut out_block, acc)?;
            if let Some(report) = progress {
                let units_done = done.fetch_add(out_block.len(), Ordering::Relaxed) + out_block.len();
                if !report(units_done / per_example, self.view.dims.n_examples) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(Error::Interrupted);
                }
            }
            Ok(())
        })?;
        // SAFETY: the blocks tile 0..units and every block writes all ten outputs of each of
        // its units (`kernels::finish`, reached by both paths) or fails, and we got here only if none failed.
        unsafe { out.set_len(self.units) };
        Ok(out)
    }

    fn process(&self, out: &mut OutBlock<'_>, acc: &mut Accumulators) -> Result<()> {
        let range = out.start..out.start + out.len();
        // Gold targets of the block as 0/1 bytes (binary, multilabel) or class indices, read
        // once into a private copy and checked there: the caller's array may be written while
        // the kernel runs (another Python thread), after `Plan::new` checked it.
        let gold_bits: Vec<u8> = match (self.task, self.labels) {
            (Task::Binary, Labels::Classes(classes)) => classes[range.clone()].iter().map(|&c| if (c as u64) < 2 { c as u8 } else { u8::MAX }).collect(),
            (Task::Multilabel, Labels::Multilabel(targets)) => targets[range.clone()].to_vec(),
            _ => Vec::new(),
        };
        let classes: Vec<i64> = match self.labels {
            Labels::Classes(classes) if self.task == Task::Multiclass => classes[range.clone()].to_vec(),
            _ => Vec::new(),
        };
        let n_classes = if self.task == Task::Multiclass { self.view.dims.n_labels } else { 2 };
        if kernels::max_as_u64(&classes) >= n_classes as u64 || gold_bits.iter().fold(0u8, |max, &y| max.max(y)) > 1 {
            return Err(Error::invalid("labels", "value", format!("changed while being read (another thread wrote to the array); expected class indices in [0, {n_classes}) or 0/1 targets")));
        }
        let classes = &classes[..];
        let rule = Rule::new(self.correctness);
        if self.row_len <= 2 {
            let tiled = match self.view.probs {
                Probs::F32(data) => Some(self.fold_tiled(data, classes, &gold_bits, rule, out)),
                Probs::F64(data) => Some(self.fold_tiled(data, classes, &gold_bits, rule, out)),
                // float16 is widened a whole epoch chunk at a time, on the epoch-major path below
                Probs::F16(_) => None,
            };
            match tiled {
                Some(true) => return Ok(()),
                Some(false) => return Err(self.bad_value(self.epochs.clone(), &range)),
                None => {}
            }
        }
        acc.reset(range.len());
        let mut widened: Vec<f32> = Vec::new();
        for (k, e) in self.epochs.clone().enumerate() {
            let chunk = self.chunk_range(e, &range);
            let valid = match self.view.probs {
                Probs::F32(data) => self.fold_epoch(&data[chunk], classes, &gold_bits, k as u32, rule, acc),
                Probs::F64(data) => self.fold_epoch(&data[chunk], classes, &gold_bits, k as u32, rule, acc),
                Probs::F16(data) => {
                    let source: &[f16] = &data[chunk];
                    widened.resize(source.len(), 0.0);
                    // SIMD-converted when the CPU has F16C
                    source.convert_to_f32_slice(&mut widened);
                    self.fold_epoch(&widened, classes, &gold_bits, k as u32, rule, acc)
                }
            };
            if !valid {
                return Err(self.bad_value(e..e + 1, &range));
            }
        }
        self.finalize(acc, out);
        Ok(())
    }

    /// The whole window for one block of one- or two-column rows, each tile of units walking
    /// every epoch with its accumulators in registers; false when some value is not a probability.
    fn fold_tiled<F: Float>(&self, data: &[F], classes: &[i64], gold_bits: &[u8], rule: Rule, out: &mut OutBlock<'_>) -> bool {
        let stream = Stream { epoch_len: self.units * self.row_len, epochs: self.epochs.clone() };
        let n = stream.epochs.len() as f64;
        let divisor = n - self.ddof as f64;
        match self.task {
            Task::Multiclass => kernels::tiled_two_class(data, &stream, classes, rule, n, divisor, out),
            Task::Binary | Task::Multilabel => kernels::tiled_binary(data, &stream, gold_bits, rule, n, divisor, out),
        }
    }

    /// Element range of epoch `e` for the units in `range`.
    fn chunk_range(&self, e: usize, range: &Range<usize>) -> Range<usize> {
        let epoch_len = self.units * self.row_len;
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
                Probs::F16(data) => first_bad(&data[chunk].iter().map(|x| x.to_f32()).collect::<Vec<_>>()),
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
        let n = (self.epochs.end - self.epochs.start) as f64;
        kernels::finalize(acc, out, n, n - self.ddof as f64, self.task == Task::Multiclass);
    }
}

fn first_bad<F: Float>(values: &[F]) -> Option<(usize, f64)> {
    values.iter().position(|x| !x.is_probability()).map(|i| (i, values[i].to_f64()))
}

/// The correctness rule in the form the kernels test it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rule {
    argmax: bool,
    threshold: f64,
}

impl Rule {
    fn new(correctness: Correctness) -> Self {
        match correctness {
            Correctness::Argmax => Rule { argmax: true, threshold: 0.5 },
            Correctness::Threshold(threshold) => Rule { argmax: false, threshold },
        }
    }
}

/// Where a block's rows sit in the flattened `[E, units, row_len]` data.
pub(crate) struct Stream {
    /// elements per epoch
    epoch_len: usize,
    epochs: Range<usize>,
}

/// Units per tile of the tiled kernels: one AVX-512 register of float64 per accumulator, so a
/// tile's whole state lives in registers while it walks the epochs.
const TILE: usize = 8;
/// How far ahead of its read position each epoch's stream is prefetched: a tile reads one
/// stream per epoch at once, more than the hardware prefetcher follows on its own.
const PREFETCH_BYTES: usize = 2048;

/// Running per-unit state across the epochs of the window, one array per field so the
/// update loops vectorize.
pub(crate) struct Accumulators {
    /// p at the first epoch: sums are of d = p - shift (the shifted-data variance algorithm)
    shift: Vec<f64>,
    sum_d: Vec<f64>,
    sum_d2: Vec<f64>,
    margin_sum: Vec<f64>,
    el2n_sum: Vec<f64>,
    right: Vec<u32>,
    forgetting: Vec<u32>,
    /// 1 when right at the previous epoch
    last_right: Vec<u32>,
    /// window index of the last wrong epoch, -1 when none yet
    last_wrong: Vec<i32>,
    /// per-epoch scratch of the multiclass kernel's two passes
    rows: RowSummaries,
}

/// One epoch's per-row summaries in the multiclass kernel: written by pass 1, read by pass 2.
pub(crate) struct RowSummaries {
    p_gold: Vec<f64>,
    other: Vec<f64>,
    others_sq: Vec<f64>,
}

impl Accumulators {
    fn new(len: usize) -> Self {
        Accumulators {
            shift: vec![0.0; len],
            sum_d: vec![0.0; len],
            sum_d2: vec![0.0; len],
            margin_sum: vec![0.0; len],
            el2n_sum: vec![0.0; len],
            right: vec![0; len],
            forgetting: vec![0; len],
            last_right: vec![0; len],
            last_wrong: vec![-1; len],
            rows: RowSummaries { p_gold: vec![0.0; len], other: vec![0.0; len], others_sq: vec![0.0; len] },
        }
    }

    /// Start a block of `len` units (at most the allocated length) from scratch.
    fn reset(&mut self, len: usize) {
        self.sum_d[..len].fill(0.0);
        self.sum_d2[..len].fill(0.0);
        self.margin_sum[..len].fill(0.0);
        self.el2n_sum[..len].fill(0.0);
        self.right[..len].fill(0);
        self.forgetting[..len].fill(0);
        self.last_right[..len].fill(0);
        self.last_wrong[..len].fill(-1);
        // `shift` is set at the first epoch; the multiclass scratch is written before it is read
    }

    /// Every field cut to exactly `n` units, so the kernels' index loops carry no bounds checks.
    #[inline(always)]
    fn slices(&mut self, n: usize) -> AccSlices<'_> {
        self.slices_and_rows(n).0
    }

    /// [`Self::slices`] plus the multiclass row scratch, borrowed side by side.
    #[inline(always)]
    fn slices_and_rows(&mut self, n: usize) -> (AccSlices<'_>, &mut RowSummaries) {
        let slices = AccSlices {
            shift: &mut self.shift[..n],
            sum_d: &mut self.sum_d[..n],
            sum_d2: &mut self.sum_d2[..n],
            margin_sum: &mut self.margin_sum[..n],
            el2n_sum: &mut self.el2n_sum[..n],
            right: &mut self.right[..n],
            forgetting: &mut self.forgetting[..n],
            last_right: &mut self.last_right[..n],
            last_wrong: &mut self.last_wrong[..n],
        };
        (slices, &mut self.rows)
    }
}

pub(crate) struct AccSlices<'a> {
    shift: &'a mut [f64],
    sum_d: &'a mut [f64],
    sum_d2: &'a mut [f64],
    margin_sum: &'a mut [f64],
    el2n_sum: &'a mut [f64],
    right: &'a mut [u32],
    forgetting: &'a mut [u32],
    last_right: &'a mut [u32],
    last_wrong: &'a mut [i32],
}

/// Per-unit running state the kernels fold into: a block's arrays ([`AccSlices`]) on the
/// epoch-major path, a tile's registers ([`TileAcc`]) on the tiled one. Both run these exact
/// operations, so both paths give identical results.
pub(crate) trait UnitState {
    /// Record unit `i`'s gold probability and verdict at window epoch `k`, branch-free.
    fn update(&mut self, i: usize, k: u32, p: f64, right: bool);
    /// Add unit `i`'s margin and EL2N terms of one epoch (the multiclass kernels).
    fn add_terms(&mut self, i: usize, margin: f64, el2n: f64);
}

/// One body for both implementations: they must stay the same operations in the same order.
macro_rules! unit_state {
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> UnitState for $ty {
            #[inline(always)]
            fn update(&mut self, i: usize, k: u32, p: f64, right: bool) {
                // a select and a plain store, not a conditional store: in the tiled kernels a
                // masked store here defeats store forwarding and halves their speed
                let shift = if k == 0 { p } else { self.shift[i] };
                self.shift[i] = shift;
                let d = p - shift;
                self.sum_d[i] += d;
                self.sum_d2[i] += d * d;
                let r = right as u32;
                self.right[i] += r;
                self.forgetting[i] += self.last_right[i] & (r ^ 1);
                self.last_wrong[i] = if right { self.last_wrong[i] } else { k as i32 };
                self.last_right[i] = r;
            }

            #[inline(always)]
            fn add_terms(&mut self, i: usize, margin: f64, el2n: f64) {
                self.margin_sum[i] += margin;
                self.el2n_sum[i] += el2n;
            }
        }
    };
}

/// A tile's outputs before they go to the block's slices.
pub(crate) struct TileOut<const W: usize> {
    confidence: [MaybeUninit<f64>; W],
    variability: [MaybeUninit<f64>; W],
    correctness: [MaybeUninit<f64>; W],
    forgetting: [MaybeUninit<i32>; W],
    never_learned: [MaybeUninit<bool>; W],
    first_learned: [MaybeUninit<i32>; W],
    threshold_closeness: [MaybeUninit<f64>; W],
    margin: [MaybeUninit<f64>; W],
    aleatoric: [MaybeUninit<f64>; W],
    el2n: [MaybeUninit<f64>; W],
}

impl<const W: usize> TileOut<W> {
    #[inline(always)]
    fn new() -> Self {
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
    fn block(&mut self) -> OutBlock<'_> {
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
    fn copy_to(&self, out: &mut OutBlock<'_>) {
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

/// A tile's state: fixed-size arrays the compiler keeps in registers.
pub(crate) struct TileAcc<const W: usize> {
    shift: [f64; W],
    sum_d: [f64; W],
    sum_d2: [f64; W],
    margin_sum: [f64; W],
    el2n_sum: [f64; W],
    right: [u32; W],
    forgetting: [u32; W],
    last_right: [u32; W],
    last_wrong: [i32; W],
}

impl<const W: usize> TileAcc<W> {
    #[inline(always)]
    fn new() -> Self {
        TileAcc {
            shift: [0.0; W],
            sum_d: [0.0; W],
            sum_d2: [0.0; W],
            margin_sum: [0.0; W],
            el2n_sum: [0.0; W],
            right: [0; W],
            forgetting: [0; W],
            last_right: [0; W],
            last_wrong: [-1; W],
        }
    }

    /// The tile's state as slices, for [`kernels`]' shared output code.
    #[inline(always)]
    fn slices(&mut self) -> AccSlices<'_> {
        AccSlices {
            shift: &mut self.shift,
            sum_d: &mut self.sum_d,
            sum_d2: &mut self.sum_d2,
            margin_sum: &mut self.margin_sum,
            el2n_sum: &mut self.el2n_sum,
            right: &mut self.right,
            forgetting: &mut self.forgetting,
            last_right: &mut self.last_right,
            last_wrong: &mut self.last_wrong,
        }
    }
}

unit_state!([] AccSlices<'_>);
unit_state!([const W: usize] TileAcc<W>);


/// The per-epoch loops, compiled for several instruction sets and picked at run time.
mod kernels {
    use super::{AccSlices, Accumulators, Float, OutBlock, Rule, Stream, TileAcc, TileOut, UnitState, PREFETCH_BYTES, TILE};
    use multiversion::multiversion;

    #[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
    pub(crate) fn binary<F: Float>(values: &[F], gold_bits: &[u8], k: u32, rule: Rule, acc: &mut Accumulators) -> bool {
        let n = values.len();
        let (values, gold_bits, mut acc) = (&values[..n], &gold_bits[..n], acc.slices(n));
        let mut valid = true;
        for i in 0..n {
            valid &= binary_step(values[i], gold_bits[i], k, rule, &mut acc, i);
        }
        valid
    }

    #[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
    pub(crate) fn two_class<F: Float>(values: &[F], classes: &[i64], k: u32, rule: Rule, acc: &mut Accumulators) -> bool {
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
        let right = if rule.argmax { p > 0.5 } else { p >= rule.threshold };
        acc.update(i, k, p, right);
        valid
    }

    /// Fold one unit's two-column row `(a, b)`; false when either is not a probability.
    #[inline(always)]
    fn two_class_step<F: Float>(a: F, b: F, gold: i64, k: u32, rule: Rule, acc: &mut impl UnitState, i: usize) -> bool {
        let valid = a.is_probability() & b.is_probability();
        let (p_gold, other) = if gold == 0 { (a, b) } else { (b, a) };
        let right = if rule.argmax { p_gold > other } else { p_gold.to_f64() >= rule.threshold };
        let (p, q) = (p_gold.to_f64(), other.to_f64());
        let miss = 1.0 - p;
        acc.add_terms(i, p - q, (q * q + miss * miss).sqrt());
        acc.update(i, k, p, right);
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
        /// fold one unit's row at window epoch `k` into slot `j`; false when a value is not a probability
        fn fold(&self, row: &[F], gold: Self::Gold, k: u32, acc: &mut impl UnitState, j: usize) -> bool;
    }

    struct BinaryRows<'g> {
        gold_bits: &'g [u8],
        rule: Rule,
    }

    impl<F: Float> Rows<F> for BinaryRows<'_> {
        const ROW_LEN: usize = 1;
        const MULTICLASS: bool = false;
        type Gold = u8;
        #[inline(always)]
        fn gold(&self, t: usize) -> u8 {
            self.gold_bits[t]
        }
        #[inline(always)]
        fn fold(&self, row: &[F], gold: u8, k: u32, acc: &mut impl UnitState, j: usize) -> bool {
            binary_step(row[0], gold, k, self.rule, acc, j)
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
        fn fold(&self, row: &[F], gold: i64, k: u32, acc: &mut impl UnitState, j: usize) -> bool {
            two_class_step(row[0], row[1], gold, k, self.rule, acc, j)
        }
    }

    /// A whole block of one-column rows, tile by tile (see [`tile`]).
    #[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
    pub(crate) fn tiled_binary<'o, F: Float>(data: &[F], stream: &Stream, gold_bits: &[u8], rule: Rule, n: f64, divisor: f64, out: &mut OutBlock<'o>) -> bool {
        tiles(data, stream, &BinaryRows { gold_bits: &gold_bits[..out.len()], rule }, n, divisor, out)
    }

    /// A whole block of two-column rows, tile by tile (see [`tile`]).
    #[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
    pub(crate) fn tiled_two_class<'o, F: Float>(data: &[F], stream: &Stream, classes: &[i64], rule: Rule, n: f64, divisor: f64, out: &mut OutBlock<'o>) -> bool {
        tiles(data, stream, &TwoClassRows { classes: &classes[..out.len()], rule }, n, divisor, out)
    }

    /// Full tiles of `TILE` units, then the remainder one unit at a time.
    #[inline(always)]
    fn tiles<F: Float, R: Rows<F>>(data: &[F], stream: &Stream, rows: &R, n: f64, divisor: f64, out: &mut OutBlock<'_>) -> bool {
        let (start, len) = (out.start, out.len());
        let mut valid = true;
        let mut t = 0;
        while t + TILE <= len {
            valid &= tile::<F, TILE, R>(data, stream, start, t, rows, n, divisor, out);
            t += TILE;
        }
        while t < len {
            valid &= tile::<F, 1, R>(data, stream, start, t, rows, n, divisor, out);
            t += 1;
        }
        valid
    }

    /// `W` units from block offset `t` walk every epoch of the window, their accumulators in
    /// local arrays the compiler keeps in registers, then write their outputs: the data is read
    /// once and no accumulator ever goes to memory. Each unit sees the same operations in the
    /// same order as on the epoch-major path, so both give identical results.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn tile<F: Float, const W: usize, R: Rows<F>>(
        data: &[F],
        stream: &Stream,
        start: usize,
        t: usize,
        rows: &R,
        n: f64,
        divisor: f64,
        out: &mut OutBlock<'_>,
    ) -> bool {
        let mut acc = TileAcc::<W>::new();
        let gold: [R::Gold; W] = std::array::from_fn(|j| rows.gold(t + j));
        let mut valid = true;
        for (k, e) in stream.epochs.clone().enumerate() {
            let at = e * stream.epoch_len + (start + t) * R::ROW_LEN;
            let tile_rows = &data[at..at + W * R::ROW_LEN];
            prefetch(tile_rows.as_ptr(), PREFETCH_BYTES);
            for (j, row) in tile_rows.chunks_exact(R::ROW_LEN).enumerate() {
                valid &= rows.fold(row, gold[j], k as u32, &mut acc, j);
            }
        }
        // outputs into local arrays first, then 64-byte copies: stores through the block's
        // slices may alias anything as far as the compiler knows, which kept `finish` scalar
        let mut local = TileOut::<W>::new();
        finish(&acc.slices(), &mut local.block(), n, divisor, R::MULTICLASS);
        local.copy_to(&mut out.window(t, W));
        valid
    }

    /// Hint the cache to fetch the line `ahead` bytes past `at` (a hint: it never faults).
    #[inline(always)]
    fn prefetch<T>(at: *const T, ahead: usize) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch only hints the cache; any address is allowed, even an unmapped one.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>().wrapping_add(ahead));
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (at, ahead);
    }

    /// Turn one block's accumulators into its outputs.
    #[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
    pub(crate) fn finalize<'o>(acc: &mut Accumulators, out: &mut OutBlock<'o>, n: f64, divisor: f64, multiclass: bool) {
        let len = out.len();
        finish(&acc.slices(len), &mut out.slices(len), n, divisor, multiclass);
    }

    /// Write the outputs of `a.len()` units from their accumulators (`o` cut to the same length).
    #[inline(always)]
    fn finish(a: &AccSlices<'_>, o: &mut OutBlock<'_>, n: f64, divisor: f64, multiclass: bool) {
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
    pub(crate) fn max_as_u64(values: &[i64]) -> u64 {
        values.iter().fold(0u64, |max, &v| max.max(v as u64))
    }

    /// Lanes of the row loop: wide enough for AVX-512 float32, reduced at the end of each row.
    const LANES: usize = 4;

    #[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
    pub(crate) fn multiclass<F: Float>(values: &[F], row_len: usize, classes: &[i64], k: u32, rule: Rule, acc: &mut Accumulators) -> bool {
        let n = values.len() / row_len;
        let classes = &classes[..n];
        // Pass 1, across each row: the gold probability and the others' max and sum of squares.
        // Pass 2, down the block: verdicts, margins, square roots and accumulator updates, a
        // plain loop over arrays that vectorizes (the per-row sqrt no longer serializes pass 1).
        let (mut slices, rows) = acc.slices_and_rows(n);
        let (p_gold, other, others_sq) = (&mut rows.p_gold[..n], &mut rows.other[..n], &mut rows.others_sq[..n]);
        let mut valid = true;
        for (i, row) in values.chunks_exact(row_len).enumerate() {
            let gold = classes[i] as usize;
            let p = row[gold];
            let (max, squares, ok) = masked_summary(row, gold);
            valid &= ok & p.is_probability();
            // float32 -> float64 is exact, so comparing in float64 keeps ties as ties
            p_gold[i] = p.to_f64();
            other[i] = max.to_f64();
            others_sq[i] = squares;
        }
        for i in 0..n {
            let (p, q) = (p_gold[i], other[i]);
            let right = if rule.argmax { p > q } else { p >= rule.threshold };
            let miss = 1.0 - p;
            slices.margin_sum[i] += p - q;
            slices.el2n_sum[i] += (others_sq[i] + miss * miss).sqrt();
            slices.update(i, k, p, right);
        }
        valid
    }

    /// (max and float64 sum of squares over the columns other than `gold`, all values in [0, 1]).
    ///
    /// The gold column is zeroed by a lane-index compare inside the one chunk that holds it:
    /// since every value is in [0, 1] (checked in the same loop), a zero changes neither the
    /// max nor the sum of squares of the others, and the loop has no data-dependent branch.
    #[inline(always)]
    fn masked_summary<F: Float>(row: &[F], gold: usize) -> (F, f64, bool) {
        let (gold_chunk, gold_lane) = (gold / LANES, gold % LANES);
        let mut max = [F::ZERO; LANES];
        let mut squares = [0.0f64; LANES];
        let mut ok = [true; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail = chunks.remainder();
        for (c, chunk) in chunks.enumerate() {
            let masked_lane = if c == gold_chunk { gold_lane } else { LANES };
            for lane in 0..LANES {
                let x = chunk[lane];
                ok[lane] &= x.is_probability();
                let x = if lane == masked_lane { F::ZERO } else { x };
                max[lane] = if x > max[lane] { x } else { max[lane] };
                let xf = x.to_f64();
                squares[lane] += xf * xf;
            }
        }
        let masked_lane = if row.len() / LANES == gold_chunk { gold_lane } else { LANES };
        for (lane, &x) in tail.iter().enumerate() {
            ok[lane] &= x.is_probability();
            let x = if lane == masked_lane { F::ZERO } else { x };
            max[lane] = if x > max[lane] { x } else { max[lane] };
            let xf = x.to_f64();
            squares[lane] += xf * xf;
        }
        let mut best = max[0];
        for &m in &max[1..] {
            best = if m > best { m } else { best };
        }
        (best, squares.iter().sum(), ok.iter().all(|&o| o))
    }
}

/// The element types the kernels run on (float16 is widened to float32 first).
pub trait Float: Copy + PartialOrd + Send + Sync + 'static {
    const ZERO: Self;
    fn to_f64(self) -> f64;
    fn is_probability(self) -> bool;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
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
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    #[allow(clippy::manual_range_contains)]
    fn is_probability(self) -> bool {
        (self >= 0.0) & (self <= 1.0)
    }
}

/// One block's slices of every output, written once each by [`kernels::finish`].
pub(crate) struct OutBlock<'a> {
    start: usize,
    confidence: &'a mut [MaybeUninit<f64>],
    variability: &'a mut [MaybeUninit<f64>],
    correctness: &'a mut [MaybeUninit<f64>],
    forgetting: &'a mut [MaybeUninit<i32>],
    never_learned: &'a mut [MaybeUninit<bool>],
    first_learned: &'a mut [MaybeUninit<i32>],
    threshold_closeness: &'a mut [MaybeUninit<f64>],
    margin: &'a mut [MaybeUninit<f64>],
    aleatoric: &'a mut [MaybeUninit<f64>],
    el2n: &'a mut [MaybeUninit<f64>],
}

impl OutBlock<'_> {
    fn len(&self) -> usize {
        self.confidence.len()
    }

    /// Reborrow every output cut to exactly `n`, so index loops carry no bounds checks.
    #[inline(always)]
    fn slices(&mut self, n: usize) -> OutBlock<'_> {
        self.window(0, n)
    }

    /// Reborrow units `offset..offset + n` of every output.
    #[inline(always)]
    fn window(&mut self, offset: usize, n: usize) -> OutBlock<'_> {
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

fn split_outputs(out: &mut Statistics, units: usize, block: usize) -> Vec<OutBlock<'_>> {
    let Statistics { confidence, variability, correctness, forgetting, never_learned, first_learned, threshold_closeness, margin, aleatoric, el2n } = out;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamics::Dims;
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
            (e, n, l, data, gold) in (1usize..6, 1usize..40, 2usize..7).prop_flat_map(|(e, n, l)| (
                Just(e), Just(n), Just(l),
                proptest::collection::vec(probability(), e * n * l),
                proptest::collection::vec(0..l as i64, n),
            )),
            threshold in prop_oneof![Just(None), (0.0f64..=1.0).prop_map(Some)],
            threads in 1usize..4,
        ) {
            let view = DynamicsView::new(Probs::F32(&data), Dims { n_epochs: e, n_examples: n, n_labels: l }, "t").unwrap();
            let correctness = threshold.map_or(Correctness::Argmax, Correctness::Threshold);
            let options = Options { task: Task::Multiclass, correctness, epochs: 0..e, ddof: 0, threads: Some(threads) };
            let stats = compute(view, Labels::Classes(&gold), &options, None).unwrap();
            for i in 0..n {
                let g = gold[i] as usize;
                let (mut p, mut right, mut margins, mut el2n) = (vec![], vec![], vec![], vec![]);
                for ep in 0..e {
                    let row: Vec<f64> = data[(ep * n + i) * l..(ep * n + i + 1) * l].iter().map(|&x| x as f64).collect();
                    let other = row.iter().enumerate().filter(|(j, _)| *j != g).map(|(_, x)| *x).fold(f64::NEG_INFINITY, f64::max);
                    p.push(row[g]);
                    right.push(match threshold { None => row[g] > other, Some(t) => row[g] >= t });
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
            let options = Options { task: Task::Multilabel, correctness: Correctness::Threshold(threshold), epochs: start..e, ddof: 0, threads: None };
            let stats = compute(view, Labels::Multilabel(&targets), &options, None).unwrap();
            for u in 0..n * l {
                let p: Vec<f64> = (start..e).map(|ep| {
                    let x = data[ep * n * l + u] as f64;
                    if targets[u] == 1 { x } else { 1.0 - x }
                }).collect();
                let right: Vec<bool> = p.iter().map(|&x| x >= threshold).collect();
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

        /// The tiled kernels (float32, float64) and the epoch-major ones (float16) must agree
        /// bit for bit on values all three types hold exactly, for one- and two-column rows,
        /// tails of fewer than a tile, several blocks, windows, ddof and both rules.
        #[test]
        fn tiled_and_epoch_major_paths_agree_exactly(
            (e, n, two_columns, eighths, gold) in (1usize..7, prop_oneof![1usize..40, 2040usize..2100], any::<bool>()).prop_flat_map(|(e, n, two)| (
                Just(e), Just(n), Just(two),
                proptest::collection::vec(0u8..=8, e * n),
                proptest::collection::vec(0i64..2, n),
            )),
            threshold in prop_oneof![Just(None), Just(Some(0.5)), (0.0f64..=1.0).prop_map(Some)],
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
            let (task, correctness) = match (two_columns, threshold) {
                (true, None) => (Task::Multiclass, Correctness::Argmax),
                (true, Some(t)) => (Task::Multiclass, Correctness::Threshold(t)),
                (false, t) => (Task::Binary, Correctness::Threshold(t.unwrap_or(0.5))),
            };
            let options = Options { task, correctness, epochs: start..e, ddof, threads: Some(threads) };
            let wide: Vec<f64> = narrow.iter().map(|&x| x as f64).collect();
            let half: Vec<f16> = narrow.iter().map(|&x| f16::from_f32(x)).collect();
            let run = |probs| compute(DynamicsView::new(probs, dims, "t").unwrap(), Labels::Classes(&gold), &options, None).unwrap();
            let epoch_major = run(Probs::F16(&half));
            prop_assert_eq!(&run(Probs::F32(&narrow)), &epoch_major);
            prop_assert_eq!(&run(Probs::F64(&wide)), &epoch_major);
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
}
