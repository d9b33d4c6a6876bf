"""Data maps on a Dask cluster: a dask array ``[E, N, L]`` chunked any way, or shard files.

Every chunk becomes a :class:`~datacarto.State` on the worker that holds it; the states of one
column of example chunks merge in epoch order (a balanced tree of adjacent merges), each
column is finished where its state lives, and only the statistics come back. The array is
never gathered: between workers travel states (about 53 bytes an example) and outputs, not
probabilities. Needs ``pip install "datacarto[dask]"``.

Example:
    >>> import numpy as np, dask.array as da, datacarto as dc, datacarto.dask
    >>> probs = np.random.default_rng(0).dirichlet([1, 1, 1], size=(6, 40)).astype(np.float32)
    >>> labels = np.arange(40) % 3
    >>> x = da.from_array(probs, chunks=(2, 15, 3))        # 3 epoch chunks x 3 example chunks
    >>> stats = datacarto.dask.compute(x, labels, scheduler="synchronous")
    >>> bool(np.allclose(stats.variability, dc.compute(probs, labels).variability, rtol=0, atol=1e-12))
    True
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from datacarto._args import EpochWindow, LabelsLike, resolve
from datacarto._core import DatacartoError
from datacarto._optional import require
from datacarto._stats import STATISTICS, Statistics, _check_argument_types, _is_pattern, output_mask, output_names

if TYPE_CHECKING:
    from datacarto._partial import State

dask = require("dask", "dask", feature="datacarto.dask")

PathLike = Union[str, "os.PathLike[str]"]
#: The key of the class means among a chunk's outputs (the core's name for them).
CLASS_MEANS = "class_means"


def compute(
    source: Any,
    labels: LabelsLike,
    *,
    shards: Optional[str] = None,
    task: Optional[str] = None,
    correctness: Optional[str] = None,
    threshold: float = 0.5,
    epochs: EpochWindow = None,
    ddof: int = 0,
    threads: Optional[int] = None,
    client: Any = None,
    scheduler: Optional[str] = None,
    statistics: Optional[Sequence[str]] = None,
    class_means: bool = False,
) -> Statistics:
    """Every statistic of a dask array or of shard files, computed on a Dask cluster.

    Args:
        source: a dask array ``[E, N, L]`` (float16/32/64, chunked any way: chunks of the label
            axis are joined first, the only rechunk), or ``.npy`` shard files (a list or a glob
            pattern) with ``shards="examples"`` or ``"epochs"`` as in :func:`datacarto.compute`;
            the workers read the files, so they must see the same paths.
        labels: the gold labels of all ``N`` examples (sent to each task as its slice).
        task, correctness, threshold, epochs, ddof: as :func:`datacarto.compute`; ``epochs`` is
            a window of absolute epochs.
        threads: threads of the core inside each task (default: all cores of the worker).
        client: a ``dask.distributed.Client`` to run on (default: dask's current scheduler).
        scheduler: a dask scheduler name (``"threads"``, ``"synchronous"``) when no client.
        statistics: return only these statistics (names from :data:`datacarto.STATISTICS`), as
            :func:`datacarto.compute` does: the others are ``None``, and neither travel back
            from the workers nor take memory here.
        class_means: also every class's mean probability over the window,
            ``Statistics.class_means`` (float64 ``[N, L]``, what
            :meth:`datacarto.DataMap.label_issues` uses), as :func:`datacarto.compute` gives it.
            Each chunk's class sums are computed by the worker holding it and added in epoch
            order there (a dask array: one more pass over each chunk; epoch shards: one more
            read of each shard, as :func:`datacarto.compute` does); ``N x L`` float64 values
            come back per example chunk.

    Returns the same :class:`~datacarto.Statistics` as :func:`datacarto.compute` over the
    whole (equal within 1e-12, integers exactly); ``source`` is ``None``.

    Raises:
        DatacartoError: as :func:`datacarto.compute`; also a shard replaced at its path while
            the tasks read the shards (checked here once all are read: the statistics would
            join two recordings).
    """
    _check_argument_types(task=task, correctness=correctness, ddof=ddof, threads=threads, progress=False)
    names = output_names(output_mask(statistics))
    # labels go to the workers once, as data, rather than inside every task of the graph; the
    # futures are held until the result is in (a graph does not keep them alive), and unhashed
    # (a later call scattering equal labels must not share, then release, the same key)
    scattered: List[Any] = []

    def put(array: np.ndarray) -> Any:
        if client is None:
            return array
        future = client.scatter(array, hash=False)
        scattered.append(future)
        return future

    tasks, _, args, shape, extra, check = _graph(source, labels, put, shards=shards, task=task, correctness=correctness, threshold=threshold, epochs=epochs, ddof=ddof, threads=threads, names=names, class_means=bool(class_means))
    parts = _run(tasks, client, scheduler)
    scattered.clear()
    check()
    return assemble(list(parts), args, shape, extra, names + ((CLASS_MEANS,) if class_means else ()))


def write_parquet(
    source: Any,
    labels: LabelsLike,
    directory: PathLike,
    *,
    shards: Optional[str] = None,
    task: Optional[str] = None,
    correctness: Optional[str] = None,
    threshold: float = 0.5,
    epochs: EpochWindow = None,
    ddof: int = 0,
    threads: Optional[int] = None,
    client: Any = None,
    scheduler: Optional[str] = None,
    statistics: Optional[Sequence[str]] = None,
) -> List[str]:
    """Like :func:`compute`, but each example chunk's statistics are written by its worker as
    ``directory/part-00000.parquet``, ... (atomically), never gathered: for outputs bigger than
    one machine's memory. Returns the paths in example order; each file has the columns of
    :meth:`datacarto.Statistics.to_polars` (``example`` counts from 0 over the whole), with
    only the statistics named by ``statistics`` when it is given.

    The directory must exist and be visible at the same path to every worker. A shard replaced
    at its path while the tasks read the shards is a :class:`DatacartoError` (as in
    :func:`compute`), and the parts written are removed.
    """
    from datacarto._atomic import check_writable_target

    _check_argument_types(task=task, correctness=correctness, ddof=ddof, threads=threads, progress=False)
    names = output_names(output_mask(statistics))
    directory = os.fspath(directory)
    check_writable_target(os.path.join(directory, "part-00000.parquet"), what="parquet output")
    scattered: List[Any] = []

    def put(array: np.ndarray) -> Any:
        if client is None:
            return array
        future = client.scatter(array, hash=False)
        scattered.append(future)
        return future

    tasks, ranges, args, shape, _, check = _graph(source, labels, put, shards=shards, task=task, correctness=correctness, threshold=threshold, epochs=epochs, ddof=ddof, threads=threads, names=names, class_means=False)
    write_task = dask.delayed(_write_part, pure=False)
    n_labels = int(shape[2])
    writes = [
        write_task(part, os.path.join(directory, f"part-{k:05d}.parquet"), put(args.labels[a:b]), a, args.task, n_labels, names)
        for k, (part, (a, b)) in enumerate(zip(tasks, ranges))
    ]
    paths = list(_run(writes, client, scheduler))
    scattered.clear()
    try:
        check()
    except DatacartoError:
        for path in paths:  # parts that join two recordings: none is kept
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        raise
    return paths


def _graph(source: Any, labels: LabelsLike, put: Callable[[np.ndarray], Any], **options: Any) -> Tuple[List[Any], List[Tuple[int, int]], Any, Tuple[int, int, int], Dict[str, Any], Callable[[], None]]:
    da = require("dask.array", "dask", feature="datacarto.dask")
    shards = options.pop("shards")
    if isinstance(source, da.Array):
        if shards is not None:
            raise DatacartoError("shards: applies to shard files, not to a dask array")
        return _array_graph(source, labels, put, **options)
    if isinstance(source, (str, os.PathLike, list, tuple)):
        return _shard_graph(source, labels, put, shards=shards, **options)
    raise TypeError(f"source: expected a dask array [E, N, L] or .npy shard paths, found {type(source).__name__}")


def _run(tasks: List[Any], client: Any, scheduler: Optional[str]) -> Sequence[Any]:
    if client is not None:
        return client.gather(client.compute(tasks))  # type: ignore[no-any-return]
    return dask.compute(*tasks, scheduler=scheduler)  # type: ignore[no-any-return]


def _options(args: Any, threads: Optional[int]) -> Dict[str, Any]:
    return dict(task=args.task, correctness=args.correctness, threshold=args.threshold, threads=threads)


def _array_graph(x: Any, labels: LabelsLike, put: Callable[[np.ndarray], Any], *, task: Any, correctness: Any, threshold: Any, epochs: EpochWindow, ddof: int, threads: Optional[int], names: Tuple[str, ...], class_means: bool) -> Tuple[List[Any], List[Tuple[int, int]], Any, Tuple[int, int, int], Dict[str, Any], Callable[[], None]]:
    if x.ndim != 3:
        raise DatacartoError(f"x: expected 3 dimensions [epochs, examples, labels], found shape {x.shape}")
    if x.dtype.kind != "f" or x.dtype.itemsize not in (2, 4, 8):
        raise DatacartoError(f"x: dtype: expected float32, float64 or float16, found {x.dtype}")
    if any(np.isnan(size) for size in x.shape):
        raise DatacartoError("x: shape: expected known chunk sizes (call x.compute_chunk_sizes() first)")
    shape = tuple(int(size) for size in x.shape)
    if 0 in shape:
        raise DatacartoError(f"x: expected at least one epoch, example and label, found shape {shape}")
    args = resolve(labels, shape, task=task, correctness=correctness, threshold=threshold, epochs=epochs, ddof=ddof, source_name="x")  # type: ignore[arg-type]
    start, stop = args.epoch_start, args.epoch_stop
    x = x[start:stop]
    if len(x.chunks[2]) > 1:
        x = x.rechunk({2: -1})  # a row's labels must sit in one chunk
    blocks = x.to_delayed()
    epoch_starts = start + np.concatenate([[0], np.cumsum(x.chunks[0])[:-1]]).astype(int)
    example_bounds = np.concatenate([[0], np.cumsum(x.chunks[1])]).astype(int)
    options = _options(args, threads)
    partial_task = dask.delayed(_partial_block, pure=True)
    sums_task = dask.delayed(_class_sums_block, pure=True)
    finish_task = dask.delayed(_finish, pure=True)
    tasks, ranges = [], []
    for j in range(len(x.chunks[1])):
        a, b = int(example_bounds[j]), int(example_bounds[j + 1])
        ranges.append((a, b))
        gold = put(args.labels[a:b])
        states = [partial_task(blocks[i, j, 0], gold, int(epoch_starts[i]), a, options) for i in range(len(x.chunks[0]))]
        sums = _add_in_order([sums_task(blocks[i, j, 0], gold, int(epoch_starts[i]), a, options) for i in range(len(x.chunks[0]))]) if class_means else None
        tasks.append(finish_task(_merge_in_order(states), ddof, names, sums, stop - start))
    return tasks, ranges, args, shape, {"dask_chunks": (len(x.chunks[0]), len(x.chunks[1]))}, lambda: None


def _shard_graph(source: Any, labels: LabelsLike, put: Callable[[np.ndarray], Any], *, shards: Optional[str], task: Any, correctness: Any, threshold: Any, epochs: EpochWindow, ddof: int, threads: Optional[int], names: Tuple[str, ...], class_means: bool) -> Tuple[List[Any], List[Tuple[int, int]], Any, Tuple[int, int, int], Dict[str, Any], Callable[[], None]]:
    from datacarto._shards import check_unchanged, expand, layout

    if not isinstance(source, (list, tuple)) and not _is_pattern(source) and shards is None:
        raise DatacartoError("shards: give shard files as a list or a glob pattern with shards='examples' or 'epochs' (a single file: datacarto.compute)")
    paths = expand(source)
    if shards is None:
        raise DatacartoError(f"shards: {len(paths)} shard file(s) given: say how they split the whole, shards='examples' or shards='epochs'")
    plan = layout(paths, shards)
    args = resolve(labels, plan.shape, task=task, correctness=correctness, threshold=threshold, epochs=epochs, ddof=ddof, source_name=f"{len(paths)} shards by {shards}")  # type: ignore[arg-type]
    start, stop = args.epoch_start, args.epoch_stop
    options = _options(args, threads)
    if plan.axis == "examples":
        compute_task = dask.delayed(_compute_shard, pure=True)
        tasks = [compute_task(path, put(args.labels[a:b]), (start, stop), ddof, options, names, class_means) for path, (a, b) in zip(plan.paths, plan.ranges)]
        ranges = list(plan.ranges)
    else:
        file_task = dask.delayed(_partial_file, pure=True)
        gold = put(args.labels)
        windows = [(path, (max(start, a) - a, min(stop, b) - a), a) for path, (a, b) in zip(plan.paths, plan.ranges) if a < stop and b > start]
        states = [file_task(path, gold, window, offset, options) for path, window, offset in windows]
        sums_task = dask.delayed(_class_sums, pure=True)
        sums = _add_in_order([sums_task(path, gold, window, options) for path, window, _ in windows]) if class_means else None
        tasks = [dask.delayed(_finish, pure=True)(_merge_in_order(states), ddof, names, sums, stop - start)]
        ranges = [(0, plan.shape[1])]
    return tasks, ranges, args, plan.shape, {"shards": list(plan.paths), "shard_axis": plan.axis}, lambda: check_unchanged(plan)


def _merge_in_order(states: List[Any]) -> Any:
    """A balanced tree of adjacent merges: log depth, and epoch order kept at every level."""
    return _tree(states, dask.delayed(_merge, pure=True))


def _add_in_order(sums: List[Any]) -> Any:
    """Class sums of consecutive epoch ranges added as a balanced tree of adjacent pairs."""
    return _tree(sums, dask.delayed(np.add, pure=True))


def _tree(items: List[Any], combine: Any) -> Any:
    while len(items) > 1:
        items = [combine(items[k], items[k + 1]) if k + 1 < len(items) else items[k] for k in range(0, len(items), 2)]
    return items[0]


# --- what runs on the workers (module-level, so tasks pickle by reference) -------------------
def _partial_block(block: np.ndarray, labels: np.ndarray, epoch_offset: int, example_offset: int, options: Dict[str, Any]) -> "State":
    from datacarto._partial import partial

    block = np.asarray(block)
    try:
        return partial(block, labels, epoch_offset=epoch_offset, example_offset=example_offset, **options)
    except DatacartoError as error:
        raise _in_chunk(error, block, epoch_offset, example_offset) from None


def _class_sums_block(block: np.ndarray, labels: np.ndarray, epoch_offset: int, example_offset: int, options: Dict[str, Any]) -> np.ndarray:
    """A chunk's class sums over its epochs, ``[n * L]`` float64, by the core (its checks and
    its clamping of float16, as :func:`datacarto.compute` takes the class means)."""
    block = np.asarray(block)
    try:
        return _class_sums(block, labels, (0, block.shape[0]), options)
    except DatacartoError as error:
        raise _in_chunk(error, block, epoch_offset, example_offset) from None


def _class_sums(source: Any, labels: np.ndarray, window: Tuple[int, int], options: Dict[str, Any]) -> np.ndarray:
    """The class sums of ``source`` (a chunk or a shard file) over ``window``, ``[n * L]`` float64."""
    from datacarto._stats import window_pass

    stats = window_pass(source, labels, window, class_means=True, **options)
    assert stats.class_means is not None
    return stats.class_means.reshape(-1) * (window[1] - window[0])


def _in_chunk(error: DatacartoError, block: np.ndarray, epoch_offset: int, example_offset: int) -> DatacartoError:
    """The core's error about a chunk, saying where the chunk is (the core counts positions
    inside it)."""
    where = f"epochs [{epoch_offset}, {epoch_offset + block.shape[0]}), examples [{example_offset}, {example_offset + block.shape[1]})"
    return DatacartoError(f"x: the chunk at {where}: {error} (positions counted within the chunk)")


def _partial_file(path: str, labels: np.ndarray, window: Tuple[int, int], epoch_offset: int, options: Dict[str, Any]) -> "State":
    from datacarto._partial import partial

    return partial(path, labels, epochs=window, epoch_offset=epoch_offset, **options)


def _merge(earlier: "State", later: "State") -> "State":
    return earlier.merge(later)


def _finish(state: "State", ddof: int, names: Tuple[str, ...], class_sums: Optional[np.ndarray], n_epochs: int) -> Dict[str, np.ndarray]:
    stats = state.finish(ddof)
    out = {name: np.asarray(getattr(stats, name)) for name in names}
    if class_sums is not None:
        out[CLASS_MEANS] = class_sums / n_epochs
    return out


def _compute_shard(path: str, labels: np.ndarray, window: Tuple[int, int], ddof: int, options: Dict[str, Any], names: Tuple[str, ...], class_means: bool) -> Dict[str, np.ndarray]:
    from datacarto._stats import compute as compute_file

    stats = compute_file(path, labels, epochs=window, ddof=ddof, statistics=list(names), class_means=class_means, **options)
    out = {name: np.asarray(getattr(stats, name)) for name in names}
    if class_means:
        assert stats.class_means is not None
        out[CLASS_MEANS] = stats.class_means.reshape(-1)
    return out


def _write_part(stats: Dict[str, np.ndarray], path: str, gold: np.ndarray, start: int, task: str, n_labels: int, names: Tuple[str, ...]) -> str:
    """Write one example chunk's rows as :meth:`Statistics.to_polars` would, atomically."""
    import polars as pl

    from datacarto._atomic import atomic_path

    n = len(gold)
    columns: Dict[str, Any] = {}
    if task == "multilabel":
        columns["example"] = np.repeat(np.arange(start, start + n, dtype=np.int64), n_labels)
        columns["label"] = np.tile(np.arange(n_labels, dtype=np.int64), n)
    else:
        columns["example"] = np.arange(start, start + n, dtype=np.int64)
    columns["gold"] = np.asarray(gold).reshape(-1).astype(np.int64)
    for name in names:
        columns[name] = np.asarray(stats[name]).reshape(-1)
    with atomic_path(path) as tmp:
        pl.DataFrame(columns).write_parquet(tmp)
    return path


def assemble(parts: Sequence[Dict[str, np.ndarray]], args: Any, shape: Tuple[int, int, int], extra: Dict[str, Any], names: Tuple[str, ...] = STATISTICS) -> Statistics:
    """One :class:`~datacarto.Statistics` from the statistics ``names`` of consecutive example
    ranges (the others are ``None``); ``names`` may also hold :data:`CLASS_MEANS`."""
    from datacarto import _core
    from datacarto._stats import _statistics_from_raw

    def flat(array: np.ndarray) -> np.ndarray:
        # arrays off the wire may sit at an odd offset of their buffer; the core wants them aligned
        array = np.ascontiguousarray(array).reshape(-1)
        return array if array.flags.aligned else array.copy()

    # joined by the core's allocator, which reuses freed pages (see datacarto._core.concat)
    raw = {name: _core.concat([flat(part[name]) for part in parts]) for name in names}
    stats = _statistics_from_raw(raw, args, shape, None)
    stats.extra.update(extra)
    return stats
