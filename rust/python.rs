//! The thin PyO3 layer: convert arguments, release the GIL around the work, map errors.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use half::f16;
use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::dynamics::{Dims, DynamicsFile, DynamicsView, Probs};
use crate::error::Error;
use crate::stats::{self, Correctness, Labels, Options, Statistics, Task};

/// Large outputs (tens of MiB per call) freed by Python come back to this allocator, which
/// reuses their pages on the next call; the system allocator unmaps them, and the kernel then
/// has to fault in and zero fresh pages every time, which cost as much as the whole
/// computation of a two-column file.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
fn options(task: &str, argmax: bool, first_index: bool, threshold: f64, epoch_start: usize, epoch_stop: usize, ddof: usize, threads: Option<usize>) -> PyResult<Options> {
    if threads == Some(0) {
        return Err(DatacartoError::new_err("threads: expected a positive int or None, found 0"));
    }
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
    })
}

/// Runs the kernel without the GIL, polling Python every 100 ms for Ctrl-C and progress.
/// The core calls its labels argument "labels"; errors about them name `labels_name` instead
/// (the caller knows whether they came from a file).
fn run_detached(py: Python<'_>, view: DynamicsView<'_>, labels: Labels<'_>, options: &Options, progress: Option<Py<PyAny>>, labels_name: &str) -> PyResult<Statistics> {
    let last_poll = Mutex::new(Instant::now());
    let callback_error: Mutex<Option<PyErr>> = Mutex::new(None);
    let poll = |done: usize, total: usize| -> bool {
        // the final report always goes through; others at most every 100 ms
        let due = done == total
            || match last_poll.try_lock() {
                Ok(mut last) if last.elapsed() >= Duration::from_millis(100) => {
                    *last = Instant::now();
                    true
                }
                _ => false,
            };
        if !due {
            return true;
        }
        Python::attach(|py| {
            let outcome = py.check_signals().and_then(|_| match &progress {
                Some(callback) => callback.call1(py, (done, total)).map(|_| ()),
                None => Ok(()),
            });
            match outcome {
                Ok(()) => true,
                Err(err) => {
                    *callback_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
                    false
                }
            }
        })
    };
    let result = py.detach(|| stats::compute(view, labels, options, Some(&poll)));
    if let Some(err) = callback_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(err);
    }
    result.map_err(|error| match error {
        Error::Invalid { origin, field, message } if origin == "labels" => to_py_err(Error::Invalid { origin: labels_name.to_owned(), field, message }),
        other => to_py_err(other),
    })
}

fn statistics_dict(py: Python<'_>, stats: Statistics) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("confidence", stats.confidence.into_pyarray(py))?;
    dict.set_item("variability", stats.variability.into_pyarray(py))?;
    dict.set_item("correctness", stats.correctness.into_pyarray(py))?;
    dict.set_item("forgetting", stats.forgetting.into_pyarray(py))?;
    dict.set_item("never_learned", stats.never_learned.into_pyarray(py))?;
    dict.set_item("first_learned", stats.first_learned.into_pyarray(py))?;
    dict.set_item("threshold_closeness", stats.threshold_closeness.into_pyarray(py))?;
    dict.set_item("margin", stats.margin.into_pyarray(py))?;
    dict.set_item("aleatoric", stats.aleatoric.into_pyarray(py))?;
    dict.set_item("el2n", stats.el2n.into_pyarray(py))?;
    Ok(dict)
}

/// Borrowed gold labels; keeps the numpy borrows alive while the kernel runs.
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
#[pyo3(signature = (source, *, class_labels, multilabel_labels, task, argmax, threshold, epoch_start, epoch_stop, ddof, threads=None, progress=None, labels_name="labels", first_index=false))]
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
) -> PyResult<Bound<'py, PyDict>> {
    let options = options(task, argmax, first_index, threshold, epoch_start, epoch_stop, ddof, threads)?;
    let labels = LabelArrays { classes: class_labels, multilabel: multilabel_labels };
    let labels = labels.labels()?;
    let stats = if let Ok(path) = source.extract::<PathBuf>() {
        let file = py.detach(|| DynamicsFile::open(&path)).map_err(to_py_err)?;
        run_detached(py, file.view(), labels, &options, progress, labels_name)?
    } else {
        let not_contiguous = |_| DatacartoError::new_err("probs: expected a C-contiguous array");
        let dims_of = |shape: &[usize]| Dims { n_epochs: shape[0], n_examples: shape[1], n_labels: shape[2] };
        // the typed borrow must outlive the kernel run, so each dtype runs in its own arm
        if let Ok(array) = source.extract::<PyReadonlyArray3<'py, f32>>() {
            let view = DynamicsView::new(Probs::F32(array.as_slice().map_err(not_contiguous)?), dims_of(array.shape()), "probs").map_err(to_py_err)?;
            run_detached(py, view, labels, &options, progress, labels_name)?
        } else if let Ok(array) = source.extract::<PyReadonlyArray3<'py, f64>>() {
            let view = DynamicsView::new(Probs::F64(array.as_slice().map_err(not_contiguous)?), dims_of(array.shape()), "probs").map_err(to_py_err)?;
            run_detached(py, view, labels, &options, progress, labels_name)?
        } else if let Ok(array) = source.extract::<PyReadonlyArray3<'py, f16>>() {
            let view = DynamicsView::new(Probs::F16(array.as_slice().map_err(not_contiguous)?), dims_of(array.shape()), "probs").map_err(to_py_err)?;
            run_detached(py, view, labels, &options, progress, labels_name)?
        } else {
            return Err(DatacartoError::new_err("probs: expected a path to a .npy file or a 3-D float32, float64 or float16 numpy array [epochs, examples, labels]"));
        }
    };
    statistics_dict(py, stats)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DatacartoError", m.py().get_type::<DatacartoError>())?;
    m.add_function(wrap_pyfunction!(read_header, m)?)?;
    m.add_function(wrap_pyfunction!(compute, m)?)?;
    Ok(())
}
