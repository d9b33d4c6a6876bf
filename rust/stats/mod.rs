//! The statistics: one streaming pass over a dynamics block.
//!
//! Work is split into fixed blocks of consecutive "units" (examples, or (example, label)
//! pairs for multilabel). Each block walks the epochs of the window, reading one contiguous
//! chunk per epoch and folding it into small per-unit accumulators, then writes its slice of
//! every output. Blocks never depend on each other or on the thread count, so the results are
//! bit-identical for any number of threads, and no `[E, N]` intermediate is ever built: memory
//! beyond the outputs is a few KiB of accumulators per block in flight.
//!
//! Rows of one or two columns (binary, multilabel, two-class; float16 widened in registers)
//! take the tiled path instead: within a block, tiles of 8 units (16 for float16) each walk
//! every epoch with their accumulators in registers, one prefetched stream per epoch, and write
//! their outputs directly, the float64 ones by non-temporal stores where AVX-512 is present
//! ([`crate::stream`]: whole lines, not read first). There the per-unit work is a few
//! instructions, and the epoch-major path spent most of its time loading and storing
//! accumulators. Both paths run the same per-unit operations in the same order, so they agree
//! bit for bit (a proptest checks it). Where AVX-512 is present, narrow multiclass rows
//! (float16 of 3-32 columns, float32 of 3-16) are tiled too, eight units to a group summarized
//! by the column path (`avx512::tiled_f16`).
//!
//! The seams:
//! - `plan`: validating a computation's inputs and driving the blocks over the rayon pool;
//! - `state`: the per-unit running state (accumulators, a tile's registers) and the rule
//!   deciding an epoch's verdict;
//! - `kernels`: the per-epoch loops over rows, compiled for several instruction sets;
//! - `avx512`: the multiclass row summary in AVX-512 intrinsics (rows of 3 columns and more,
//!   float16 widened in registers), where the machine has it;
//! - `output`: the result arrays and each block's slices of them;
//! - [`partial`](mod@partial): the mergeable per-unit state of a piece (some epochs, some examples).
//!
//! Values within a rounding tolerance outside [0, 1] (four units in the last place of 1.0 in
//! the stored dtype, [`Float::TOLERANCE`]: float rounding in a softmax) are clamped into
//! [0, 1] before any use; values beyond it are refused.

mod avx512;
mod kernels;
mod lanes;
mod output;
mod pairs;
pub mod partial;
mod plan;
mod singles;
mod state;

use std::ops::Range;

use crate::dynamics::DynamicsView;
use crate::error::Result;

pub use kernels::Float;
pub use output::{LabelsCopy, Outputs, Statistic, Statistics};
pub use partial::{partial, partial_file, Offsets, State};
use plan::Plan;

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
    /// `np.argmax`'s rule, the original Cartography code's: the first largest column wins a
    /// tie, so gold is right when its probability is above every column before it and at least
    /// every column after it (a one-column row reads as the two columns `(1 - p, p)`)
    ArgmaxFirstIndex,
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

impl<'a> Labels<'a> {
    /// The labels of the units in `range` (examples, or flat (example, label) pairs).
    fn slice(self, range: Range<usize>) -> Labels<'a> {
        match self {
            Labels::Classes(classes) => Labels::Classes(&classes[range]),
            Labels::Multilabel(targets) => Labels::Multilabel(&targets[range]),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub task: Task,
    pub correctness: Correctness,
    /// half-open epoch window; an end of `usize::MAX` runs to the last epoch (the default), any
    /// other end past the last epoch is refused (never clamped)
    pub epochs: Range<usize>,
    /// delta degrees of freedom of the variability (0: population std, the paper's)
    pub ddof: usize,
    /// worker threads; `None` uses rayon's global pool (all cores)
    pub threads: Option<usize>,
    /// also compute every column's mean over the window ([`Statistics::class_means`], `units *
    /// row_len` long), in the same pass; off by default (an `[N, L]` output nobody else needs)
    pub class_means: bool,
    /// which statistics to return ([`Outputs::ALL`] by default); the others come back empty
    pub outputs: Outputs,
    /// also return a copy of the gold labels ([`Statistics::labels`]), taken block by block
    /// as the pass reads them: every statistic comes from the copy, never from a second read
    /// of the caller's labels, so a caller whose labels another thread may write during the
    /// pass gets statistics that agree with the copy returned (off by default)
    pub copy_labels: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { task: Task::Multiclass, correctness: Correctness::Argmax, epochs: 0..usize::MAX, ddof: 0, threads: None, class_means: false, outputs: Outputs::ALL, copy_labels: false }
    }
}


/// Called after each block with (examples done, total examples); returning `false` stops the
/// computation with [`Error::Interrupted`](crate::Error::Interrupted). It may be called from any worker thread.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) -> bool + Sync);

/// Compute every statistic over `view` in one parallel streaming pass.
pub fn compute(view: DynamicsView<'_>, labels: Labels<'_>, options: &Options, progress: Option<Progress<'_>>) -> Result<Statistics> {
    let plan = Plan::new(&view, labels, options)?;
    match options.threads {
        None => plan.run(progress),
        Some(threads) => {
            // more workers than blocks would only cost their start
            let blocks = plan.units.div_ceil(plan.block_units());
            crate::pools::install(threads.min(blocks), || plan.run(progress))?
        }
    }
}

#[cfg(test)]
mod tests;
