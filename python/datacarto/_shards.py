"""Sharded dynamics: one computation over many ``.npy`` files.

``shards="examples"``: each file holds every epoch of a consecutive range of examples (one per
rank of a distributed run), in order. ``shards="epochs"``: each file holds consecutive epochs
of every example (one per epoch, or per few). Every shard is validated as strictly as a single
file, all shards must agree on the dtype and on the shared axes, and one global labels array
covers every example. Errors name the shard.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union


from datacarto import _core
from datacarto._args import EpochWindow, LabelsLike, resolve
from datacarto._core import DatacartoError
from datacarto._stats import ALL_OUTPUTS, STATISTICS, changed_while_read, output_mask, output_names
from datacarto._stats import _is_pattern as is_pattern

SHARD_AXES = ("examples", "epochs")

PathLike = Union[str, "os.PathLike[str]"]


def expand(source: Union[PathLike, Sequence[PathLike]]) -> List[str]:
    """The shard paths: a list kept in its order, a glob pattern expanded and sorted.

    Example:
        >>> expand(["b.npy", "a.npy"])
        ['b.npy', 'a.npy']
    """
    if isinstance(source, (str, os.PathLike)):
        pattern = os.fspath(source)
        paths = sorted(glob.glob(pattern)) if is_pattern(pattern) else [pattern]
        if not paths:
            raise FileNotFoundError(f"{pattern}: no file matches this pattern")
        return paths
    paths = []
    for k, path in enumerate(source):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"source[{k}]: expected a path to a .npy shard, found {type(path).__name__}")
        paths.append(os.fspath(path))
    if not paths:
        raise DatacartoError("source: expected at least one shard, found an empty list")
    return paths


@dataclass(frozen=True)
class Layout:
    """Where each shard sits: its range along the sharded axis, and the whole's shape."""

    paths: Tuple[str, ...]
    axis: str
    ranges: Tuple[Tuple[int, int], ...]
    shape: Tuple[int, int, int]
    dtype: str
    #: each shard's ``(device, inode)`` taken before its header's read (``None``: not found),
    #: for :func:`check_unchanged`
    identities: Tuple[Optional[Tuple[int, int]], ...] = ()


def layout(paths: Sequence[str], axis: str) -> Layout:
    """Read and check every shard's header (without touching its data)."""
    if not isinstance(axis, str):
        raise TypeError(f"shards: expected 'examples' or 'epochs', found {type(axis).__name__} {axis!r}")
    if axis not in SHARD_AXES:
        raise DatacartoError(f"shards: expected 'examples' or 'epochs', found {axis!r}")
    # before the headers: a shard put at its path after this is seen by check_unchanged
    identities = tuple(_identity(path) for path in paths)
    headers = [_core.read_header(path) for path in paths]  # each names its file in its errors
    first_path, first = paths[0], headers[0]
    e0, n0, l0 = first["shape"]
    shared = ("epochs", 0) if axis == "examples" else ("examples", 1)
    ranges = []
    start = 0
    for path, header in zip(paths, headers):
        shape = tuple(header["shape"])
        if header["dtype"] != first["dtype"]:
            raise DatacartoError(f"{path}: descr: expected {first['dtype']} like the first shard {first_path}, found {header['dtype']}")
        if shape[2] != l0:
            raise DatacartoError(f"{path}: shape: expected {l0} label columns like the first shard {first_path}, found shape {list(shape)}")
        if shape[shared[1]] != first["shape"][shared[1]]:
            raise DatacartoError(
                f"{path}: shape: shards by {axis} must all hold the same {shared[0]}: expected {first['shape'][shared[1]]} like {first_path}, found shape {list(shape)}")
        size = shape[0] if axis == "epochs" else shape[1]
        ranges.append((start, start + size))
        start += size
    whole = (start, n0, l0) if axis == "epochs" else (e0, start, l0)
    return Layout(tuple(paths), axis, tuple(ranges), whole, first["dtype"], identities)


def check_unchanged(plan: Layout) -> None:
    """Raise when a shard's path names another file than when its header was read.

    The shards are read one after another, each opened by its path: another file put at a
    shard's path meanwhile (an overwrite, a rerun saving the same name) would be read whole and
    consistently, but the statistics would then join two recordings. Checked once all are read:
    a shard replaced at any moment in between is refused. Epochs a writer appends to a shard in
    place do not change its identity."""
    for path, identity in zip(plan.paths, plan.identities):
        if _identity(path) != identity:
            raise changed_while_read(path, "another file was put at this shard's path while the shards were read, or it was removed")


def _identity(path: str) -> Optional[Tuple[int, int]]:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino)


def compute_shards(
    source: Union[PathLike, Sequence[PathLike]],
    labels: LabelsLike,
    *,
    shards: Optional[str],
    task: Optional[str],
    correctness: Optional[str],
    threshold: float,
    epochs: EpochWindow,
    ddof: int,
    threads: Optional[int],
    progress: Union[bool, Callable[[int, int], Any]],
    class_means: bool = False,
    outputs: int = ALL_OUTPUTS,
) -> Any:
    """:func:`datacarto.compute` over shards (its arguments, already type-checked; ``outputs``
    the core's output mask of ``statistics=``).

    Class means: example shards return theirs from the same pass, joined; epoch shards each
    give the mean over their part of the window (one more pass of the core per shard, which
    only keeps confidence besides), combined weighted by their epochs."""
    from datacarto._partial import State, partial
    from datacarto._stats import Statistics, _core_arguments, _private_copy, _progress_callback, _statistics_from_raw

    paths = expand(source)
    if shards is None:
        raise DatacartoError(f"shards: {len(paths)} shard file(s) given: say how they split the whole, shards='examples' or shards='epochs'")
    plan = layout(paths, shards)
    description = f"{len(paths)} shards by {shards}"
    args = resolve(labels, plan.shape, task=task, correctness=correctness, threshold=threshold, epochs=epochs, ddof=ddof, source_name=description)  # type: ignore[arg-type]
    start, stop = args.epoch_start, args.epoch_stop
    options: Dict[str, Any] = dict(task=args.task, correctness=args.correctness, threshold=args.threshold, threads=threads)
    gold = args.labels
    if plan.axis == "examples":
        work = list(zip(plan.paths, plan.ranges))
        total = plan.shape[1]
    else:
        work = [(path, r) for path, r in zip(plan.paths, plan.ranges) if r[0] < stop and r[1] > start]
        total = plan.shape[1] * len(work)
    callback, close = _progress_callback(progress, (plan.shape[0], total, plan.shape[2]), stop - start)
    done = 0

    def report(piece_done: int, piece_total: int) -> None:
        if callback is not None:
            callback(done + piece_done, total)

    try:
        if plan.axis == "examples":
            # the core directly, on slices of one private read-only copy of the labels: no
            # per-shard copies, and the outputs joined by the core's allocator (see _core.concat)
            args = replace(args, class_labels=_private_copy(args.class_labels), multilabel_labels=_private_copy(args.multilabel_labels))
            raw_parts = []
            for path, (a, b) in work:
                piece = replace(
                    args,
                    class_labels=None if args.class_labels is None else args.class_labels[a:b],
                    multilabel_labels=None if args.multilabel_labels is None else args.multilabel_labels[a:b],
                )
                raw_parts.append(_core.compute(
                    path,
                    **_core_arguments(piece, threads, report if callback else None),
                    ddof=args.ddof,
                    class_means=class_means,
                    outputs=outputs,
                ))
                done += b - a
            raw = {name: _core.concat([part[name] for part in raw_parts]) for name in raw_parts[0]}
            del raw_parts
            result = _statistics_from_raw(raw, args, plan.shape, None)
        else:
            states: List[State] = []
            for path, (a, b) in work:
                window = (max(start, a) - a, min(stop, b) - a)
                state = partial(path, gold, epochs=window, epoch_offset=a, progress=report if callback else False, **options)
                states.append(state)
                done += plan.shape[1]
            merged = states[0]
            for state in states[1:]:
                merged = merged.merge(state)
            result = merged.finish(ddof)
            result = replace(result, threshold=args.threshold)
            if outputs != ALL_OUTPUTS:  # states finish into every statistic: keep the named ones
                kept = output_names(outputs)
                result = replace(result, **{name: None for name in STATISTICS if name not in kept})
            if class_means:
                result = replace(result, class_means=_epoch_shard_class_means(work, args, start, stop, threads))
        check_unchanged(plan)
    finally:
        close()
    assert isinstance(result, Statistics)
    return replace(result, source=None, extra={"shards": list(plan.paths), "shard_axis": plan.axis})


def _epoch_shard_class_means(work: Sequence[Tuple[str, Tuple[int, int]]], args: Any, start: int, stop: int, threads: Optional[int]) -> Any:
    """Every class's mean over the window ``[start, stop)`` from epoch shards: each shard's
    mean over its part of the window (the core, with its clamping), weighted by that part's
    epochs. ``[N, L]`` float64."""
    from datacarto._stats import _core_arguments

    total = None
    for path, (a, b) in work:
        lo, hi = max(start, a) - a, min(stop, b) - a
        # confidence alone: the least the core can be asked for besides the means
        raw = _core.compute(path, **_core_arguments(replace(args, epoch_start=lo, epoch_stop=hi), threads, None), ddof=0, class_means=True, outputs=output_mask(["confidence"]))
        part = raw["class_means"] * (hi - lo)
        total = part if total is None else total + part
    n_examples = len(args.labels)
    return (total / (stop - start)).reshape(n_examples, -1)
