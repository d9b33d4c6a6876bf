//! Partial statistics: a mergeable per-unit state for a piece of a dynamics block.
//!
//! Every statistic is a fold over epochs per unit, so a piece of the data (some epochs, some
//! examples) yields a [`State`] holding each unit's raw sums instead of finished statistics.
//! States merge exactly: [`State::merge`] along epochs (earlier with later, order matters),
//! [`State::concat`] along examples, and [`State::finish`] turns a state into the same
//! [`Statistics`] as [`super::compute`] over the whole. The rules are in `DESIGN.md`
//! ("Partial statistics and merging"). A state never holds probabilities: its size per unit is
//! fixed ([`State::bytes_per_unit`]), whatever the number of epochs or labels.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::plan::Plan;
use super::state::Accumulators;
use super::{Correctness, Labels, Options, Outputs, Progress, Statistics, Task};
use crate::dynamics::{DynamicsFile, DynamicsView};
use crate::error::{Error, Result};

/// Where a piece sits in the whole: the absolute index of its first epoch and first example.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    pub epoch: usize,
    pub example: usize,
}

/// Per-unit raw state, one array per field (units: examples, or example-label pairs).
#[derive(Clone, Debug, Default, PartialEq)]
struct Units {
    /// the gold probability at the state's first epoch: the sums are of d = p - shift
    shift: Vec<f64>,
    sum_d: Vec<f64>,
    sum_d2: Vec<f64>,
    /// multiclass only (one-column margins and EL2N follow from the confidence); else empty
    margin_sum: Vec<f64>,
    el2n_sum: Vec<f64>,
    right: Vec<u32>,
    forgetting: Vec<u32>,
    /// start of the final all-right streak, relative to the state's first epoch; -1 when the
    /// unit is wrong at the last epoch (it is then also the last verdict)
    streak: Vec<i32>,
    /// the verdict at the state's first epoch
    first_right: Vec<bool>,
}

impl Units {
    fn with_capacity(units: usize, multiclass: bool) -> Self {
        let terms = if multiclass { units } else { 0 };
        Units {
            shift: Vec::with_capacity(units),
            sum_d: Vec::with_capacity(units),
            sum_d2: Vec::with_capacity(units),
            margin_sum: Vec::with_capacity(terms),
            el2n_sum: Vec::with_capacity(terms),
            right: Vec::with_capacity(units),
            forgetting: Vec::with_capacity(units),
            streak: Vec::with_capacity(units),
            first_right: Vec::with_capacity(units),
        }
    }

    fn len(&self) -> usize {
        self.shift.len()
    }

    fn append(&mut self, other: &Units) {
        self.shift.extend_from_slice(&other.shift);
        self.sum_d.extend_from_slice(&other.sum_d);
        self.sum_d2.extend_from_slice(&other.sum_d2);
        self.margin_sum.extend_from_slice(&other.margin_sum);
        self.el2n_sum.extend_from_slice(&other.el2n_sum);
        self.right.extend_from_slice(&other.right);
        self.forgetting.extend_from_slice(&other.forgetting);
        self.streak.extend_from_slice(&other.streak);
        self.first_right.extend_from_slice(&other.first_right);
    }

    /// Append the first `len` units of a block's unfinished accumulators.
    fn push_accumulators(&mut self, acc: &Accumulators, len: usize, multiclass: bool) {
        self.shift.extend_from_slice(&acc.shift[..len]);
        self.sum_d.extend_from_slice(&acc.sum_d[..len]);
        self.sum_d2.extend_from_slice(&acc.sum_d2[..len]);
        if multiclass {
            self.margin_sum.extend_from_slice(&acc.margin_sum[..len]);
            self.el2n_sum.extend_from_slice(&acc.el2n_sum[..len]);
        }
        self.right.extend_from_slice(&acc.right[..len]);
        self.forgetting.extend_from_slice(&acc.forgetting[..len]);
        // the same expression as first_learned in `kernels::finish`
        self.streak.extend(acc.last_right[..len].iter().zip(&acc.last_wrong[..len]).map(|(&last, &wrong)| if last != 0 { wrong + 1 } else { -1 }));
    }
}

/// The mergeable statistics of one piece: a range of epochs of a range of examples.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    task: Task,
    correctness: Correctness,
    n_labels: usize,
    /// absolute epochs, half-open
    epochs: Range<usize>,
    /// absolute examples, half-open
    examples: Range<usize>,
    units: Units,
}

/// Fixed part of the serialized form: magic, version, task, rule, threshold, five u64s.
const MAGIC: &[u8; 8] = b"DCSTATE\0";
/// Version of the byte format written by [`State::to_bytes`]; bump it when the layout changes.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 1 + 1 + 2 + 8 + 5 * 8;

impl State {
    pub fn task(&self) -> Task {
        self.task
    }

    pub fn correctness(&self) -> Correctness {
        self.correctness
    }

    pub fn n_labels(&self) -> usize {
        self.n_labels
    }

    pub fn epochs(&self) -> Range<usize> {
        self.epochs.clone()
    }

    pub fn examples(&self) -> Range<usize> {
        self.examples.clone()
    }

    /// Units held: examples, or examples × labels for multilabel.
    pub fn units(&self) -> usize {
        self.units.len()
    }

    fn multiclass(&self) -> bool {
        self.task == Task::Multiclass
    }

    /// Bytes one unit costs in memory and on the wire: 53 multiclass, 37 otherwise.
    pub fn bytes_per_unit(&self) -> usize {
        3 * 8 + if self.multiclass() { 2 * 8 } else { 0 } + 3 * 4 + 1
    }

    /// Bytes of the serialized state ([`Self::to_bytes`]).
    pub fn nbytes(&self) -> usize {
        HEADER_BYTES + self.units() * self.bytes_per_unit()
    }

    fn describe(&self) -> String {
        format!("epochs [{}, {}) of examples [{}, {})", self.epochs.start, self.epochs.end, self.examples.start, self.examples.end)
    }

    /// Refuse to combine states computed under different settings.
    fn check_compatible(&self, other: &State) -> Result<()> {
        let refuse = |field: &str, mine: String, theirs: String| Err(Error::invalid("state", field, format!("cannot combine a state with {field} {mine} ({}) and one with {field} {theirs} ({})", self.describe(), other.describe())));
        if self.task != other.task {
            return refuse("task", format!("{:?}", self.task).to_lowercase(), format!("{:?}", other.task).to_lowercase());
        }
        if self.correctness != other.correctness {
            return refuse("correctness", format!("{:?}", self.correctness), format!("{:?}", other.correctness));
        }
        if self.n_labels != other.n_labels {
            return refuse("n_labels", self.n_labels.to_string(), other.n_labels.to_string());
        }
        Ok(())
    }

    /// The state over this state's epochs followed by `later`'s, for the same examples.
    ///
    /// `later` must start at the epoch where `self` ends: merging is associative, not
    /// commutative (a forgetting event across the seam counts).
    pub fn merge(&self, later: &State) -> Result<State> {
        self.check_compatible(later)?;
        if self.examples != later.examples {
            return Err(Error::invalid(
                "state",
                "examples",
                format!("merge combines the same examples over consecutive epochs, found examples [{}, {}) and [{}, {}); use concat for different examples", self.examples.start, self.examples.end, later.examples.start, later.examples.end),
            ));
        }
        let (a, b) = (&self.epochs, &later.epochs);
        if b.start != a.end {
            let problem = if b.end <= a.start {
                format!("they are reversed: the later state covers epochs [{}, {}), before [{}, {}); merge the earlier state with the later one", b.start, b.end, a.start, a.end)
            } else if b.start > a.end {
                format!("epochs [{}, {}) are missing between [{}, {}) and [{}, {})", a.end, b.start, a.start, a.end, b.start, b.end)
            } else {
                format!("epochs [{}, {}) and [{}, {}) overlap", a.start, a.end, b.start, b.end)
            };
            return Err(Error::invalid("state", "epochs", format!("merge needs consecutive epochs (the later state starting at epoch {}), but {problem}", a.end)));
        }
        if b.end - a.start > i32::MAX as usize {
            return Err(Error::invalid("state", "epochs", format!("a state holds at most {} epochs, the merge would hold {}", i32::MAX, b.end - a.start)));
        }
        let (n_a, n_b) = (a.len(), b.len());
        let (x, y) = (&self.units, &later.units);
        let mut units = Units::with_capacity(x.len(), self.multiclass());
        let nb = n_b as f64;
        for i in 0..x.len() {
            // re-express B's sums around A's shift: d' = d + delta with delta = shift_B - shift_A
            let delta = y.shift[i] - x.shift[i];
            units.shift.push(x.shift[i]);
            units.sum_d.push(x.sum_d[i] + (y.sum_d[i] + nb * delta));
            units.sum_d2.push(x.sum_d2[i] + (y.sum_d2[i] + delta * (2.0 * y.sum_d[i] + nb * delta)));
        }
        units.margin_sum.extend(x.margin_sum.iter().zip(&y.margin_sum).map(|(p, q)| p + q));
        units.el2n_sum.extend(x.el2n_sum.iter().zip(&y.el2n_sum).map(|(p, q)| p + q));
        for i in 0..x.len() {
            units.right.push(x.right[i] + y.right[i]);
            let seam = (x.streak[i] >= 0 && !y.first_right[i]) as u32;
            units.forgetting.push(x.forgetting[i] + y.forgetting[i] + seam);
            let streak = if y.right[i] as usize == n_b {
                // right throughout B: the streak runs on from A's if A ended right
                if x.streak[i] >= 0 { x.streak[i] } else { n_a as i32 }
            } else if y.streak[i] >= 0 {
                n_a as i32 + y.streak[i]
            } else {
                -1
            };
            units.streak.push(streak);
        }
        units.first_right.extend_from_slice(&x.first_right);
        Ok(State { epochs: a.start..b.end, examples: self.examples.clone(), units, ..self.header() })
    }

    /// States of the same epochs over adjacent example ranges, side by side (in any order:
    /// they are placed by their example ranges, which must tile one range without gaps).
    pub fn concat(states: &[&State]) -> Result<State> {
        let Some(first) = states.first() else {
            return Err(Error::invalid("states", "states", "concat needs at least one state"));
        };
        let mut sorted: Vec<&State> = states.to_vec();
        sorted.sort_by_key(|s| s.examples.start);
        let mut units = Units::with_capacity(states.iter().map(|s| s.units()).sum(), first.multiclass());
        let mut end = sorted[0].examples.start;
        for state in &sorted {
            first.check_compatible(state)?;
            if state.epochs != first.epochs {
                return Err(Error::invalid(
                    "state",
                    "epochs",
                    format!("concat combines different examples over the same epochs, found epochs [{}, {}) and [{}, {}); use merge for consecutive epochs", first.epochs.start, first.epochs.end, state.epochs.start, state.epochs.end),
                ));
            }
            if state.examples.start != end {
                let problem = if state.examples.start > end { "are missing" } else { "appear twice" };
                let (lo, hi) = (end.min(state.examples.start), end.max(state.examples.start));
                return Err(Error::invalid("state", "examples", format!("concat needs example ranges that tile without gaps or overlaps: examples [{lo}, {hi}) {problem}")));
            }
            end = state.examples.end;
            units.append(&state.units);
        }
        Ok(State { epochs: first.epochs.clone(), examples: sorted[0].examples.start..end, units, ..first.header() })
    }

    /// A state with this one's settings and nothing else, for struct-update syntax.
    fn header(&self) -> State {
        State { task: self.task, correctness: self.correctness, n_labels: self.n_labels, epochs: 0..0, examples: 0..0, units: Units::default() }
    }

    /// The statistics over the state's epochs, `ddof` the variability's delta degrees of
    /// freedom; identical to [`super::compute`] for an unmerged state, and equal up to
    /// rounding (a few ulps) for merged ones.
    pub fn finish(&self, ddof: usize) -> Result<Statistics> {
        let window = self.epochs.len();
        if ddof >= window {
            return Err(Error::invalid("ddof", "ddof", format!("{ddof} leaves no degrees of freedom over a window of {window} epoch(s)")));
        }
        let u = &self.units;
        let len = u.len();
        let n = window as f64;
        let (inv_n, inv_divisor) = (1.0 / n, 1.0 / (n - ddof as f64));
        let mut out = Statistics::with_capacity(len, Outputs::ALL);
        // the same operations in the same order as `kernels::finish` (a test checks it bit for bit)
        for i in 0..len {
            let mean_d = u.sum_d[i] * inv_n;
            let confidence = u.shift[i] + mean_d;
            let m2 = (u.sum_d2[i] - u.sum_d[i] * mean_d).max(0.0);
            let closeness = confidence * (1.0 - confidence);
            out.confidence.push(confidence);
            out.variability.push((m2 * inv_divisor).sqrt());
            out.threshold_closeness.push(closeness);
            out.aleatoric.push((closeness - m2 * inv_n).max(0.0));
            out.correctness.push(u.right[i] as f64 / n);
            out.forgetting.push(u.forgetting[i] as i32);
            out.never_learned.push(u.right[i] == 0);
            out.first_learned.push(u.streak[i]);
            if self.multiclass() {
                out.margin.push(u.margin_sum[i] * inv_n);
                out.el2n.push(u.el2n_sum[i] * inv_n);
            } else {
                out.margin.push(2.0 * confidence - 1.0);
                out.el2n.push((1.0 - confidence) * std::f64::consts::SQRT_2);
            }
        }
        Ok(out)
    }

    /// The state as bytes (little-endian, versioned by [`FORMAT_VERSION`]), [`Self::nbytes`] long.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.nbytes());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.push(match self.task {
            Task::Multiclass => 0,
            Task::Binary => 1,
            Task::Multilabel => 2,
        });
        let (rule, threshold) = match self.correctness {
            Correctness::Argmax => (0u8, 0.5),
            Correctness::ArgmaxFirstIndex => (1, 0.5),
            Correctness::Threshold(t) => (2, t),
        };
        bytes.push(rule);
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&threshold.to_le_bytes());
        for value in [self.n_labels, self.epochs.start, self.epochs.end, self.examples.start, self.examples.end] {
            bytes.extend_from_slice(&(value as u64).to_le_bytes());
        }
        let u = &self.units;
        for column in [&u.shift, &u.sum_d, &u.sum_d2, &u.margin_sum, &u.el2n_sum] {
            column.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        }
        for column in [&u.right, &u.forgetting] {
            column.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        }
        u.streak.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        bytes.extend(u.first_right.iter().map(|&r| r as u8));
        bytes
    }

    /// Read a state written by [`Self::to_bytes`], checking every field: a truncated,
    /// corrupted or foreign byte string is an error, never a state holding garbage.
    pub fn from_bytes(bytes: &[u8]) -> Result<State> {
        let bad = |message: String| Error::invalid("state", "bytes", message);
        if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
            return Err(bad(format!("expected a datacarto state (starting with {:?}, at least {HEADER_BYTES} bytes), found {} bytes", String::from_utf8_lossy(&MAGIC[..7]), bytes.len())));
        }
        let mut reader = Reader { bytes, at: 8 };
        let version = u32::from_le_bytes(reader.take::<4>());
        if version != FORMAT_VERSION {
            return Err(bad(format!("expected state format version {FORMAT_VERSION}, found {version} (written by another datacarto version)")));
        }
        let [task, rule] = reader.take::<2>();
        reader.take::<2>();
        let threshold = f64::from_le_bytes(reader.take::<8>());
        let task = match task {
            0 => Task::Multiclass,
            1 => Task::Binary,
            2 => Task::Multilabel,
            other => return Err(bad(format!("expected a task code 0, 1 or 2, found {other}"))),
        };
        let correctness = match rule {
            0 => Correctness::Argmax,
            1 => Correctness::ArgmaxFirstIndex,
            2 if (0.0..=1.0).contains(&threshold) => Correctness::Threshold(threshold),
            2 => return Err(bad(format!("expected a threshold in [0, 1], found {threshold}"))),
            other => return Err(bad(format!("expected a correctness code 0, 1 or 2, found {other}"))),
        };
        let mut header = [0usize; 5];
        for value in &mut header {
            *value = usize::try_from(u64::from_le_bytes(reader.take::<8>())).map_err(|_| bad("a range does not fit this machine's address space".into()))?;
        }
        let [n_labels, e0, e1, x0, x1] = header;
        if n_labels == 0 || e0 >= e1 || x0 >= x1 || e1 - e0 > i32::MAX as usize {
            return Err(bad(format!("expected at least one label, epoch and example, found {n_labels} labels, epochs [{e0}, {e1}), examples [{x0}, {x1})")));
        }
        let per_example = if task == Task::Multilabel { n_labels } else { 1 };
        let multiclass = task == Task::Multiclass;
        let units = (x1 - x0).checked_mul(per_example);
        let state = State { task, correctness, n_labels, epochs: e0..e1, examples: x0..x1, units: Units::default() };
        let expected = units.and_then(|u| u.checked_mul(state.bytes_per_unit())).and_then(|b| b.checked_add(HEADER_BYTES));
        if expected != Some(bytes.len()) {
            return Err(bad(format!("expected {} bytes for {}, found {}", expected.map_or_else(|| "more than addressable".to_owned(), |b| b.to_string()), state.describe(), bytes.len())));
        }
        let units = units.unwrap_or(0);
        let terms = if multiclass { units } else { 0 };
        let mut u = Units::with_capacity(units, multiclass);
        u.shift = reader.column(units, f64::from_le_bytes);
        u.sum_d = reader.column(units, f64::from_le_bytes);
        u.sum_d2 = reader.column(units, f64::from_le_bytes);
        u.margin_sum = reader.column(terms, f64::from_le_bytes);
        u.el2n_sum = reader.column(terms, f64::from_le_bytes);
        u.right = reader.column(units, u32::from_le_bytes);
        u.forgetting = reader.column(units, u32::from_le_bytes);
        u.streak = reader.column(units, i32::from_le_bytes);
        u.first_right = reader.column(units, |[b]: [u8; 1]| b == 1);
        let n = (e1 - e0) as u64;
        let floats_ok = [&u.shift, &u.sum_d, &u.sum_d2, &u.margin_sum, &u.el2n_sum].iter().all(|c| c.iter().all(|x| x.is_finite()));
        let counts_ok = (0..units).all(|i| {
            let (right, forgetting, streak) = (u.right[i] as u64, u.forgetting[i] as u64, u.streak[i] as i64);
            right <= n && forgetting < n.max(1) && (-1..n as i64).contains(&streak) && (0.0..=1.0).contains(&u.shift[i])
        });
        if !floats_ok || !counts_ok || bytes[bytes.len() - units..].iter().any(|&b| b > 1) {
            return Err(bad(format!("the state of {} holds impossible values (corrupted bytes)", state.describe())));
        }
        Ok(State { units: u, ..state })
    }
}

/// A cursor over bytes whose total length was checked beforehand.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const K: usize>(&mut self) -> [u8; K] {
        let value: [u8; K] = self.bytes[self.at..self.at + K].try_into().expect("length checked");
        self.at += K;
        value
    }

    fn column<T, const K: usize>(&mut self, len: usize, decode: impl Fn([u8; K]) -> T) -> Vec<T> {
        (0..len).map(|_| decode(self.take::<K>())).collect()
    }
}

/// The state of a whole view (its epoch window, every example) in one parallel pass.
///
/// `offsets` place the view in the whole: the state covers absolute epochs
/// `offsets.epoch + window` and examples `offsets.example + 0..N`. `options.ddof` is ignored
/// (it is chosen at [`State::finish`]).
pub fn partial(view: DynamicsView<'_>, labels: Labels<'_>, options: &Options, offsets: Offsets, progress: Option<Progress<'_>>) -> Result<State> {
    let plan = Plan::new(&view, labels, &Options { ddof: 0, ..options.clone() })?;
    plan.check_labels()?;
    let n_examples = view.dims.n_examples;
    let block = plan.block_units();
    let blocks = plan.units.div_ceil(block);
    let multiclass = plan.task() == Task::Multiclass;
    let pass = || -> Result<Units> {
        let done = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let per_example = plan.units / n_examples;
        let pieces: Vec<Units> = (0..blocks)
            .into_par_iter()
            .map_init(
                || Accumulators::new(block),
                |acc, b| -> Result<Units> {
                    if stop.load(Ordering::Relaxed) {
                        return Err(Error::Interrupted);
                    }
                    let range = b * block..((b + 1) * block).min(plan.units);
                    let mut piece = Units::with_capacity(range.len(), multiclass);
                    plan.fold_raw(range.clone(), acc, &mut piece.first_right)?;
                    piece.push_accumulators(acc, range.len(), multiclass);
                    if let Some(report) = progress {
                        let units_done = done.fetch_add(range.len(), Ordering::Relaxed) + range.len();
                        if !report(units_done / per_example, n_examples) {
                            stop.store(true, Ordering::Relaxed);
                            return Err(Error::Interrupted);
                        }
                    }
                    Ok(piece)
                },
            )
            .collect::<Result<_>>()?;
        let mut units = Units::with_capacity(plan.units, multiclass);
        pieces.iter().for_each(|piece| units.append(piece));
        Ok(units)
    };
    let units = match options.threads {
        None => pass()?,
        Some(threads) => crate::pools::install(threads.min(blocks), pass)??,
    };
    let window = plan.window();
    let epochs = offsets.epoch + window.start..offsets.epoch + window.end;
    if window.len() > i32::MAX as usize {
        return Err(Error::invalid("epochs", "window", format!("a state holds at most {} epochs", i32::MAX)));
    }
    Ok(State { task: plan.task(), correctness: options.correctness, n_labels: view.dims.n_labels, epochs, examples: offsets.example..offsets.example + n_examples, units })
}

/// [`partial`] over a memory-mapped file, failing if the file changed while it was read
/// (as [`DynamicsFile::compute`] does).
pub fn partial_file(file: &DynamicsFile, labels: Labels<'_>, options: &Options, offsets: Offsets, progress: Option<Progress<'_>>) -> Result<State> {
    let report = |done: usize, total: usize| !file.shrank() && progress.is_none_or(|report| report(done, total));
    let result = partial(file.view(), labels, options, offsets, Some(&report));
    file.check_unchanged()?;
    result
}

#[cfg(test)]
#[path = "partial_tests.rs"]
mod tests;
