//! The per-unit running state the kernels fold each epoch into, and the verdict rule.

use std::ops::Range;

use super::Correctness;

/// The correctness rule in the form the kernels test it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rule {
    pub(super) argmax: bool,
    /// under `argmax`: a tie at the top goes to the first of the tied columns
    pub(super) first_index: bool,
    pub(super) threshold: f64,
}

impl Rule {
    pub(super) fn new(correctness: Correctness) -> Self {
        match correctness {
            Correctness::Argmax => Rule { argmax: true, first_index: false, threshold: 0.5 },
            Correctness::ArgmaxFirstIndex => Rule { argmax: true, first_index: true, threshold: 0.5 },
            Correctness::Threshold(threshold) => Rule { argmax: false, first_index: false, threshold },
        }
    }
}

/// Where a block's rows sit in the flattened `[E, units, row_len]` data.
pub(super) struct Stream {
    /// elements per epoch
    pub(super) epoch_len: usize,
    pub(super) epochs: Range<usize>,
}

/// Running per-unit state across the epochs of the window, one array per field so the
/// update loops vectorize.
pub(super) struct Accumulators {
    /// p at the first epoch: sums are of d = p - shift (the shifted-data variance algorithm)
    pub(super) shift: Vec<f64>,
    pub(super) sum_d: Vec<f64>,
    pub(super) sum_d2: Vec<f64>,
    pub(super) margin_sum: Vec<f64>,
    pub(super) el2n_sum: Vec<f64>,
    pub(super) right: Vec<u32>,
    pub(super) forgetting: Vec<u32>,
    /// 1 when right at the previous epoch
    pub(super) last_right: Vec<u32>,
    /// window index of the last wrong epoch, -1 when none yet
    pub(super) last_wrong: Vec<i32>,
    /// per-epoch scratch of the multiclass kernel's two passes
    pub(super) rows: RowSummaries,
}

/// One epoch's per-row summaries in the multiclass kernel: written by pass 1, read by pass 2.
pub(super) struct RowSummaries {
    pub(super) p_gold: Vec<f64>,
    pub(super) other: Vec<f64>,
    pub(super) others_sq: Vec<f64>,
    /// no column before gold holds gold's value: a tie at the top goes to gold under the
    /// first-index rule (written only under that rule)
    pub(super) gold_first: Vec<bool>,
}

impl Accumulators {
    pub(super) fn new(len: usize) -> Self {
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
            rows: RowSummaries { p_gold: vec![0.0; len], other: vec![0.0; len], others_sq: vec![0.0; len], gold_first: vec![false; len] },
        }
    }

    /// Start a block of `len` units (at most the allocated length) from scratch.
    pub(super) fn reset(&mut self, len: usize) {
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
    pub(super) fn slices(&mut self, n: usize) -> AccSlices<'_> {
        self.slices_and_rows(n).0
    }

    /// [`Self::slices`] plus the multiclass row scratch, borrowed side by side.
    #[inline(always)]
    pub(super) fn slices_and_rows(&mut self, n: usize) -> (AccSlices<'_>, &mut RowSummaries) {
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

pub(super) struct AccSlices<'a> {
    pub(super) shift: &'a mut [f64],
    pub(super) sum_d: &'a mut [f64],
    pub(super) sum_d2: &'a mut [f64],
    pub(super) margin_sum: &'a mut [f64],
    pub(super) el2n_sum: &'a mut [f64],
    pub(super) right: &'a mut [u32],
    pub(super) forgetting: &'a mut [u32],
    pub(super) last_right: &'a mut [u32],
    pub(super) last_wrong: &'a mut [i32],
}

/// Per-unit running state the kernels fold into: a block's arrays ([`AccSlices`]) on the
/// epoch-major path, a tile's registers ([`TileAcc`]) on the tiled one. Both run these exact
/// operations, so both paths give identical results.
pub(super) trait UnitState {
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
                // fused: one rounding, and one operation fewer on the add ports, which bind
                // the narrow kernels (all paths share this step, so all give the same bits;
                // a machine without FMA computes the same fused result, in software)
                self.sum_d2[i] = d.mul_add(d, self.sum_d2[i]);
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

/// A tile's state: fixed-size arrays the compiler keeps in registers.
pub(super) struct TileAcc<const W: usize> {
    pub(super) shift: [f64; W],
    pub(super) sum_d: [f64; W],
    pub(super) sum_d2: [f64; W],
    pub(super) margin_sum: [f64; W],
    pub(super) el2n_sum: [f64; W],
    pub(super) right: [u32; W],
    pub(super) forgetting: [u32; W],
    pub(super) last_right: [u32; W],
    pub(super) last_wrong: [i32; W],
}

impl<const W: usize> TileAcc<W> {
    #[inline(always)]
    pub(super) fn new() -> Self {
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
    pub(super) fn slices(&mut self) -> AccSlices<'_> {
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
