//! The thin PyO3 layer: convert arguments, run the work without the GIL (the calling thread
//! waits, running Python's signal handlers and the progress callback), map errors.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use half::f16;
use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use rayon::prelude::*;

use crate::dynamics::{Dims, DynamicsFile, DynamicsView, Probs};
use crate::error::Error;
use crate::pools;
use crate::stats::{self, Correctness, Labels, LabelsCopy, Offsets, Options, Outputs, Progress, State, Statistic, Statistics, Task};

/// Large outputs (tens of MiB per call) freed by Python come back to this allocator, which
/// reuses their pages on the next call; the system allocator unmaps them, and the kernel then
/// has to fault in and zero fresh pages every time, which cost as much as the whole
/// computation of a two-column file.
/// mimalloc, with the large blocks (outputs) recycled between calls: see [`crate::recycle`].
#[global_allocator]
static ALLOCATOR: crate::recycle::Recycling<mimalloc::MiMalloc> = crate::recycle::Recycling::new(mimalloc::MiMalloc);

pyo3::create_exception!(
    datacarto,
    DatacartoError,
    PyValueError,
    "Malformed dynamics or labels: the message names the file or argument, the field and what was expected."
);

/// The one place Rust errors become Python exceptions.
fn to_py_err(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Invalid { .. } => DatacartoError::new_err(message),
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
            _ => PyOSError::new_err(message),
        },
        Error::Interrupted => PyKeyboardInterrupt::new_err("datacarto: computation interrupted"),
        Error::Internal(_) => DatacartoError::new_err(message),
    }
}

/// Errors of a computation: the core calls its labels argument "labels", the caller knows
/// what to call them (a file, or the array).
fn compute_error(error: Error, labels_name: &str) -> PyErr {
    match error {
        Error::Invalid { origin, field, message } if origin == "labels" => to_py_err(Error::Invalid { origin: labels_name.to_owned(), field, message }),
        other => to_py_err(other),
    }
}

/// A panic's payload as text (panics carry a `&str` or a `String`).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(|| "a panic without a message".to_owned(), |text| (*text).to_owned()),
    }
}

fn parse_task(task: &str) -> PyResult<Task> {
    match task {
        "multiclass" => Ok(Task::Multiclass),
        "binary" => Ok(Task::Binary),
        "multilabel" => Ok(Task::Multilabel),
        other => Err(DatacartoError::new_err(format!("task: expected 'multiclass', 'binary' or 'multilabel', found '{other}'"))),
    }
}

#[allow(clippy::too_many_arguments)]
fn options(task: &str, argmax: bool, first_index: bool, threshold: f64, epoch_start: usize, epoch_stop: usize, ddof: usize, threads: Option<usize>, class_means: bool, outputs: u16) -> PyResult<Options> {
    if threads == Some(0) {
        return Err(DatacartoError::new_err("threads: expected a positive int or None, found 0"));
    }
    let outputs = Outputs(outputs).check().map_err(|expected| DatacartoError::new_err(format!("statistics: expected {expected}")))?;
    Ok(Options {
        task: parse_task(task)?,
        correctness: match (argmax, first_index) {
            (true, true) => Correctness::ArgmaxFirstIndex,
            (true, false) => Correctness::Argmax,
            (false, _) => Correctness::Threshold(threshold),
        },
        epochs: epoch_start..epoch_stop,
        ddof,
        threads,
        class_means,
        outputs,
        copy_labels: false,
    })
}

/// How often the calling thread wakes up to run Python's signal handlers and the progress
/// callback while the kernel runs: Ctrl-C takes effect within this, plus one block.
const POLL: Duration = Duration::from_millis(50);

/// The kernel's outcome, handed from the worker to the waiting caller.
struct Handoff<T> {
    outcome: Mutex<Option<std::thread::Result<Result<T, Error>>>>,
    ready: Condvar,
}

/// `rayon::in_place_scope` on `pool` (`None`: the global pool).
fn in_place_scope<'scope, R>(pool: Option<&rayon::ThreadPool>, op: impl FnOnce(&rayon::Scope<'scope>) -> R) -> R {
    match pool {
        Some(pool) => pool.in_place_scope(op),
        None => rayon::in_place_scope(op),
    }
}

/// Run `work` (the kernel) on the rayon pool without the GIL while the calling thread waits.
///
/// The calling thread wakes every [`POLL`] to re-attach to Python and run `check_signals`
/// (CPython runs signal handlers only on the main thread, never on rayon workers) and the
/// progress callback with `(examples done, total)`; either one's exception sets a cancel flag
/// that the kernel reads between blocks, and is raised once the kernel has stopped. A panic in
/// the kernel becomes [`Error::Internal`]. `work` gets the kernel's progress hook; errors
/// about the labels name them `labels_name`.
fn run_detached<T: Send, W>(py: Python<'_>, total: usize, progress: Option<&Bound<'_, PyAny>>, labels_name: &str, work: W) -> PyResult<T>
where
    W: FnOnce(Progress<'_>) -> Result<T, Error> + Send,
{
    let cancel = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let handoff = Handoff { outcome: Mutex::new(None), ready: Condvar::new() };
    let mut python_error: Option<PyErr> = None;
    let outcome = in_place_scope(pools::process_default().map_err(to_py_err)?, |scope| {
        let (cancel, done, handoff) = (&cancel, &done, &handoff);
        scope.spawn(move |_| {
            let hook = |examples_done: usize, _total: usize| {
                done.fetch_max(examples_done, Ordering::Relaxed);
                !cancel.load(Ordering::Relaxed)
            };
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| work(&hook)));
            *handoff.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
            handoff.ready.notify_one();
        });
        loop {
            let finished = py.detach(|| {
                let slot = handoff.outcome.lock().unwrap_or_else(|e| e.into_inner());
                let (mut slot, _) = handoff.ready.wait_timeout_while(slot, POLL, |outcome| outcome.is_none()).unwrap_or_else(|e| e.into_inner());
                slot.take()
            });
            if let Some(outcome) = finished {
                break outcome;
            }
            if python_error.is_none() {
                let done = done.load(Ordering::Relaxed);
                let polled = py.check_signals().and_then(|()| match progress {
                    // (total, total) is reported once, when the result is ready
                    Some(callback) if done < total => callback.call1((done, total)).map(drop),
                    _ => Ok(()),
                });
                if let Err(error) = polled {
                    python_error = Some(error);
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        }
    });
    if let Some(error) = python_error {
        return Err(error);
    }
    let statistics = match outcome {
        Ok(result) => result,
        Err(payload) => Err(Error::Internal(panic_message(payload))),
    }
    .map_err(|error| match error {
        // only a Python error (handled above) or a truncated file (reported as such by
        // `DynamicsFile::compute`) stops the kernel
        Error::Interrupted => to_py_err(Error::Internal("the computation stopped without a reason".into())),
        other => compute_error(other, labels_name),
    })?;
    // the final report always goes through
    if let Some(callback) = progress {
        callback.call1((total, total))?;
    }
    Ok(statistics)
}

/// Run a pass over `source` without the GIL (see [`run_detached`]): `on_file` over a path's
/// memory-mapped dynamics file, or `on_view` over a C-contiguous float32 / float64 / float16
/// array `[E, N, L]`.
fn run_on_source<'py, T, F, V>(py: Python<'py>, source: &Bound<'py, PyAny>, progress: Option<&Bound<'_, PyAny>>, labels_name: &str, on_file: F, on_view: V) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&DynamicsFile, Progress<'_>) -> Result<T, Error> + Send,
    V: Fn(DynamicsView<'_>, Progress<'_>) -> Result<T, Error> + Sync,
{
    if let Ok(path) = source.extract::<PathBuf>() {
        let file = py.detach(|| DynamicsFile::open(&path)).map_err(to_py_err)?;
        let total = file.dims().n_examples;
        return run_detached(py, total, progress, labels_name, |hook| on_file(&file, hook));
    }
    let not_contiguous = |_| DatacartoError::new_err("probs: expected a C-contiguous array");
    let dims_of = |shape: &[usize]| Dims { n_epochs: shape[0], n_examples: shape[1], n_labels: shape[2] };
    let run = |view: DynamicsView<'_>| run_detached(py, view.dims.n_examples, progress, labels_name, |hook| on_view(view, hook));
    // the typed borrow must outlive the kernel run, so each dtype runs in its own arm
    if let Ok(array) = source.extract::<PyReadonlyArray3<'py, f32>>() {
        run(DynamicsView::new(Probs::F32(array.as_slice().map_err(not_contiguous)?), dims_of(array.shape()), "probs").map_err(to_py_err)?)
    } else if let Ok(array) = source.extract::<PyReadonlyArray3<'py, f64>>() {
        run(DynamicsView::new(Probs::F64(array.as_slice().map_err(not_contiguous)?), dims_of(array.shape()), "probs").map_err(to_py_err)?)
    } else if let Ok(array) = source.extract::<PyReadonlyArray3<'py, f16>>() {
        run(DynamicsView::new(Probs::F16(array.as_slice().map_err(not_contiguous)?), dims_of(array.shape()), "probs").map_err(to_py_err)?)
    } else {
        Err(DatacartoError::new_err("probs: expected a path to a .npy file or a 3-D float32, float64 or float16 numpy array [epochs, examples, labels]"))
    }
}

/// The statistics in `outputs` as a dict of arrays (moved, not copied); the others are absent.
fn statistics_dict(py: Python<'_>, stats: Statistics, outputs: Outputs) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    let f64s = [
        (Statistic::Confidence, stats.confidence),
        (Statistic::Variability, stats.variability),
        (Statistic::Correctness, stats.correctness),
        (Statistic::ThresholdCloseness, stats.threshold_closeness),
        (Statistic::Margin, stats.margin),
        (Statistic::Aleatoric, stats.aleatoric),
        (Statistic::El2n, stats.el2n),
    ];
    for (statistic, values) in f64s {
        if outputs.has(statistic) {
            dict.set_item(statistic.name(), values.into_pyarray(py))?;
        }
    }
    for (statistic, values) in [(Statistic::Forgetting, stats.forgetting), (Statistic::FirstLearned, stats.first_learned)] {
        if outputs.has(statistic) {
            dict.set_item(statistic.name(), values.into_pyarray(py))?;
        }
    }
    if outputs.has(Statistic::NeverLearned) {
        dict.set_item(Statistic::NeverLearned.name(), stats.never_learned.into_pyarray(py))?;
    }
    if !stats.class_means.is_empty() {
        // flat [N * L]; datacarto.compute reshapes it to [N, L]
        dict.set_item("class_means", stats.class_means.into_pyarray(py))?;
    }
    match stats.labels {
        // in this module's memory, as `_copy_labels` makes them; multilabel flat [N * L]
        Some(LabelsCopy::Classes(classes)) => dict.set_item("labels", classes.into_pyarray(py))?,
        Some(LabelsCopy::Multilabel(targets)) => dict.set_item("labels", targets.into_pyarray(py))?,
        None => {}
    }
    Ok(dict)
}

/// Borrowed gold labels; keeps the numpy borrows alive while the kernel runs without the GIL.
/// Another thread may write to the caller's array meanwhile, so the kernels read the labels
/// only once they are checked and private: either a private, read-only copy the caller took
/// while the GIL was held, or (`copy_labels`) the copy each block of the pass takes of its
/// own labels before it checks them, returned as `labels` (`datacarto.compute` keeps it as
/// `Statistics.labels`, so it costs nothing extra).
struct LabelArrays<'py> {
    classes: Option<PyReadonlyArray1<'py, i64>>,
    multilabel: Option<PyReadonlyArray2<'py, u8>>,
}

impl LabelArrays<'_> {
    fn labels(&self) -> PyResult<Labels<'_>> {
        let not_contiguous = |_| DatacartoError::new_err("labels: expected a C-contiguous array");
        match (&self.classes, &self.multilabel) {
            (Some(classes), None) => Ok(Labels::Classes(classes.as_slice().map_err(not_contiguous)?)),
            (None, Some(targets)) => Ok(Labels::Multilabel(targets.as_slice().map_err(not_contiguous)?)),
            _ => Err(DatacartoError::new_err("labels: expected exactly one of class_labels and multilabel_labels")),
        }
    }
}

/// Parse and validate a dynamics file's header.
#[pyfunction]
fn read_header(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let file = py.detach(|| DynamicsFile::open(&path)).map_err(to_py_err)?;
    let header = file.header();
    let dict = PyDict::new(py);
    dict.set_item("shape", (header.n_epochs, header.n_examples, header.n_labels))?;
    dict.set_item("dtype", header.dtype.name())?;
    dict.set_item("data_offset", header.data_offset)?;
    dict.set_item("version", header.version)?;
    dict.set_item("file_size", file.file_len())?;
    Ok(dict)
}

/// Compute every statistic over a dynamics file (memory-mapped) or a C-contiguous float32 /
/// float64 / float16 array `[E, N, L]`.
#[pyfunction]
#[pyo3(signature = (source, *, class_labels, multilabel_labels, task, argmax, threshold, epoch_start, epoch_stop, ddof, threads=None, progress=None, labels_name="labels", first_index=false, class_means=false, outputs=Outputs::ALL.0, copy_labels=false))]
#[allow(clippy::too_many_arguments)]
fn compute<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    class_labels: Option<PyReadonlyArray1<'py, i64>>,
    multilabel_labels: Option<PyReadonlyArray2<'py, u8>>,
    task: &str,
    argmax: bool,
    threshold: f64,
    epoch_start: usize,
    epoch_stop: usize,
    ddof: usize,
    threads: Option<usize>,
    progress: Option<Py<PyAny>>,
    labels_name: &str,
    first_index: bool,
    class_means: bool,
    outputs: u16,
    copy_labels: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let options = Options { copy_labels, ..options(task, argmax, first_index, threshold, epoch_start, epoch_stop, ddof, threads, class_means, outputs)? };
    let labels = LabelArrays { classes: class_labels, multilabel: multilabel_labels };
    let labels = labels.labels()?;
    let progress = progress.as_ref().map(|callback| callback.bind(py));
    let stats = run_on_source(
        py,
        source,
        progress,
        labels_name,
        |file, hook| file.compute(labels, &options, Some(hook)),
        |view, hook| stats::compute(view, labels, &options, Some(hook)),
    )?;
    statistics_dict(py, stats, options.outputs)
}

/// The mergeable statistics of a piece of a dynamics block (`stats::State`); the public
/// wrapper is `datacarto.State`, which adds the gold labels.
#[pyclass(name = "PartialState", module = "datacarto._core", frozen)]
struct PartialState {
    inner: State,
}

fn rule_name(correctness: Correctness) -> (&'static str, f64) {
    match correctness {
        Correctness::Argmax => ("argmax", 0.5),
        Correctness::ArgmaxFirstIndex => ("argmax_first_index", 0.5),
        Correctness::Threshold(t) => ("threshold", t),
    }
}

#[pymethods]
impl PartialState {
    /// This state's epochs followed by `later`'s (same examples, `later` starting where this ends).
    fn merge(&self, py: Python<'_>, later: &PartialState) -> PyResult<PartialState> {
        let inner = py.detach(|| self.inner.merge(&later.inner)).map_err(to_py_err)?;
        Ok(PartialState { inner })
    }

    /// States of the same epochs over example ranges that tile one range, side by side.
    #[staticmethod]
    fn concat(py: Python<'_>, states: Vec<PyRef<'_, PartialState>>) -> PyResult<PartialState> {
        let refs: Vec<&State> = states.iter().map(|s| &s.inner).collect();
        let inner = py.detach(|| State::concat(&refs)).map_err(to_py_err)?;
        Ok(PartialState { inner })
    }

    /// Every statistic over the state's epochs: flat arrays, `units` long.
    fn finish<'py>(&self, py: Python<'py>, ddof: usize) -> PyResult<Bound<'py, PyDict>> {
        let stats = py.detach(|| self.inner.finish(ddof)).map_err(to_py_err)?;
        statistics_dict(py, stats, Outputs::ALL)
    }

    /// The versioned byte form (`State::to_bytes`).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = py.detach(|| self.inner.to_bytes());
        PyBytes::new(py, &bytes)
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<PartialState> {
        let inner = py.detach(|| State::from_bytes(data)).map_err(to_py_err)?;
        Ok(PartialState { inner })
    }

    #[getter]
    fn task(&self) -> &'static str {
        match self.inner.task() {
            Task::Multiclass => "multiclass",
            Task::Binary => "binary",
            Task::Multilabel => "multilabel",
        }
    }

    #[getter]
    fn correctness(&self) -> &'static str {
        rule_name(self.inner.correctness()).0
    }

    #[getter]
    fn threshold(&self) -> f64 {
        rule_name(self.inner.correctness()).1
    }

    #[getter]
    fn n_labels(&self) -> usize {
        self.inner.n_labels()
    }

    #[getter]
    fn epochs(&self) -> (usize, usize) {
        let epochs = self.inner.epochs();
        (epochs.start, epochs.end)
    }

    #[getter]
    fn examples(&self) -> (usize, usize) {
        let examples = self.inner.examples();
        (examples.start, examples.end)
    }

    #[getter]
    fn units(&self) -> usize {
        self.inner.units()
    }

    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }

    #[getter]
    fn bytes_per_unit(&self) -> usize {
        self.inner.bytes_per_unit()
    }
}

/// The mergeable state of a dynamics file (memory-mapped) or array over an epoch window;
/// the arguments are `compute`'s, plus where the piece sits in the whole.
#[pyfunction]
#[pyo3(signature = (source, *, class_labels, multilabel_labels, task, argmax, threshold, epoch_start, epoch_stop, threads=None, progress=None, labels_name="labels", first_index=false, epoch_offset=0, example_offset=0))]
#[allow(clippy::too_many_arguments)]
fn partial<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    class_labels: Option<PyReadonlyArray1<'py, i64>>,
    multilabel_labels: Option<PyReadonlyArray2<'py, u8>>,
    task: &str,
    argmax: bool,
    threshold: f64,
    epoch_start: usize,
    epoch_stop: usize,
    threads: Option<usize>,
    progress: Option<Py<PyAny>>,
    labels_name: &str,
    first_index: bool,
    epoch_offset: usize,
    example_offset: usize,
) -> PyResult<PartialState> {
    let options = options(task, argmax, first_index, threshold, epoch_start, epoch_stop, 0, threads, false, Outputs::ALL.0)?;
    let labels = LabelArrays { classes: class_labels, multilabel: multilabel_labels };
    let labels = labels.labels()?;
    let progress = progress.as_ref().map(|callback| callback.bind(py));
    let offsets = Offsets { epoch: epoch_offset, example: example_offset };
    let inner = run_on_source(
        py,
        source,
        progress,
        labels_name,
        |file, hook| stats::partial_file(file, labels, &options, offsets, Some(hook)),
        |view, hook| stats::partial(view, labels, &options, offsets, Some(hook)),
    )?;
    Ok(PartialState { inner })
}

/// Join 1-D arrays of one dtype (float64, int32 or bool) into a new array.
///
/// For joining per-shard outputs: the result is allocated by this module's allocator, which
/// reuses the pages of freed outputs, where numpy's fresh allocation faults in every page (a
/// join of 1.3 GB of outputs cost five times the computation that made them).
#[pyfunction]
fn concat<'py>(py: Python<'py>, arrays: Vec<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    fn join<'py, T: numpy::Element + Copy + Send + Sync>(py: Python<'py>, arrays: &[Bound<'py, PyAny>]) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(typed) = arrays.iter().map(|a| a.extract::<PyReadonlyArray1<'py, T>>().ok()).collect::<Option<Vec<_>>>() else {
            return Ok(None);
        };
        let slices = typed.iter().map(|a| a.as_slice()).collect::<Result<Vec<_>, _>>().map_err(|_| DatacartoError::new_err("arrays: expected C-contiguous arrays"))?;
        let joined = py.detach(|| {
            let mut out = Vec::with_capacity(slices.iter().map(|s| s.len()).sum());
            slices.iter().for_each(|s| out.extend_from_slice(s));
            out
        });
        Ok(Some(joined.into_pyarray(py).into_any()))
    }
    if let Some(out) = join::<f64>(py, &arrays)? {
        return Ok(out);
    }
    if let Some(out) = join::<i32>(py, &arrays)? {
        return Ok(out);
    }
    if let Some(out) = join::<bool>(py, &arrays)? {
        return Ok(out);
    }
    Err(pyo3::exceptions::PyTypeError::new_err("arrays: expected 1-D arrays of one dtype: float64, int32 or bool"))
}

/// A private copy of resolved labels (C-contiguous int64 `[N]` or uint8 `[N, L]`),
/// taken while the GIL is held, in memory from this module's allocator: a recycled block when a
/// previous result's labels were freed, where numpy's own copy faults in fresh pages each call.
#[pyfunction]
fn _copy_labels<'py>(py: Python<'py>, labels: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let copy = if let Ok(classes) = labels.extract::<PyReadonlyArray1<'py, i64>>() {
        let slice = classes.as_slice().map_err(|_| DatacartoError::new_err("labels: expected a C-contiguous array"))?;
        parallel_copy(slice)?.into_pyarray(py).into_any()
    } else if let Ok(targets) = labels.extract::<PyReadonlyArray2<'py, u8>>() {
        let shape = [targets.shape()[0], targets.shape()[1]];
        let slice = targets.as_slice().map_err(|_| DatacartoError::new_err("labels: expected a C-contiguous array"))?;
        numpy::PyArrayMethods::reshape(&parallel_copy(slice)?.into_pyarray(py), shape)?.into_any()
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err("labels: expected int64 [N] or uint8 [N, L]"));
    };
    Ok(copy)
}

/// `source` copied by the pool's threads, 1 MiB a task (one thread copies at well under the
/// memory bandwidth: 32 MiB of labels took 2 ms, a tenth of a pass over a 4M-example binary
/// file). Run with the GIL held: the caller's array cannot change meanwhile, and the workers
/// touch only its memory.
fn parallel_copy<T: Copy + Send + Sync>(source: &[T]) -> PyResult<Vec<T>> {
    const CHUNK_BYTES: usize = 1 << 20;
    let chunk = (CHUNK_BYTES / std::mem::size_of::<T>().max(1)).max(1);
    if source.len() <= chunk {
        return Ok(source.to_vec());
    }
    let mut copy: Vec<T> = Vec::with_capacity(source.len());
    let copy_all = |copy: &mut Vec<T>| {
        copy.spare_capacity_mut()[..source.len()].par_chunks_mut(chunk).zip(source.par_chunks(chunk)).for_each(|(into, from)| {
            for (slot, value) in into.iter_mut().zip(from) {
                slot.write(*value);
            }
        })
    };
    match pools::process_default().map_err(to_py_err)? {
        Some(pool) => pool.install(|| copy_all(&mut copy)),
        None => copy_all(&mut copy),
    }
    // SAFETY: the chunks tile the first `source.len()` elements, each written once above
    unsafe { copy.set_len(source.len()) };
    Ok(copy)
}

/// (blocks kept for reuse, large allocations served from them, large allocations passed on
/// to mimalloc) since the module was loaded: for tests of [`crate::recycle`].
#[pyfunction]
fn _recycled_blocks() -> (usize, u64, u64) {
    let (hits, misses) = ALLOCATOR.counts();
    (ALLOCATOR.kept(), hits, misses)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // rust-numpy loads numpy's C API on first use, by running Python code (an import). Done
    // lazily inside `compute`'s argument checks, a Ctrl-C landing there became a panic (it
    // unwraps the import's KeyboardInterrupt); done here, it happens with `import datacarto`.
    numpy::PyArray1::<u8>::zeros(m.py(), 0, false);
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DatacartoError", m.py().get_type::<DatacartoError>())?;
    m.add_function(wrap_pyfunction!(read_header, m)?)?;
    m.add_function(wrap_pyfunction!(compute, m)?)?;
    m.add_function(wrap_pyfunction!(partial, m)?)?;
    m.add_function(wrap_pyfunction!(concat, m)?)?;
    m.add_function(wrap_pyfunction!(_recycled_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(_copy_labels, m)?)?;
    m.add_class::<PartialState>()?;
    Ok(())
}
