"""A/B of two builds of datacarto: each side in its own worker process, rounds interleaved.

Each side is a directory that imports as a built datacarto (a checkout's ``python/`` with its
compiled ``_core`` in place, or a venv's ``site-packages``). A worker process per side imports
its own build and times ``datacarto.compute`` on request; this process alternates between them
(old, new, new, old, ...), so both sides see the same host at nearly the same moments. Separate
processes keep the two builds from sharing anything a single process would give to one side
only (the package's own module, its recycled output pages, its mapping cache).

Prints, per file, the median of the per-round new/old ratios and the ratio of the best rounds.

Example (after ``python benches/make_inputs.py --matrix``)::

    python benches/ab.py --old ../old/python --new python --rounds 11 --threads 2 \\
        10x4000000x1:float16:binary 10x1000000x28:float16:multiclass

A file is named ``EPOCHSxEXAMPLESxCOLUMNS:dtype:task`` (task: multiclass, binary or multilabel)
and read from where ``make_inputs.py`` builds it (``$DATACARTO_BENCH_DIR`` or ``benches/data``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from baselines import median_ratio  # noqa: E402  (benches/ is not a package)
from make_inputs import dynamics_path, labels_path  # noqa: E402

# Run inside each worker: reads "path labels task threads" lines, times one compute each.
WORKER = r"""
import sys, time
import numpy as np
import datacarto as dc
labels_cache = {}
for line in sys.stdin:
    path, labels_path, task, threads = line.split()
    if labels_path not in labels_cache:
        labels_cache.clear()
        labels_cache[labels_path] = np.load(labels_path)
    labels = labels_cache[labels_path]
    start = time.perf_counter()
    result = dc.compute(path, labels, task=None if task == "multiclass" else task, threads=int(threads))
    elapsed = time.perf_counter() - start
    del result
    print(elapsed, flush=True)
"""


class Worker:
    """One side: a process that imports datacarto from `root` and times calls on request."""

    def __init__(self, root: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(root), OPENBLAS_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd="/")

    def time(self, request: str) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the worker for {request!r} died (exit code {self.process.wait()})")
        return float(answer)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


def inputs(spec: str) -> tuple[Path, Path, str]:
    """The dynamics file, labels file and task that `spec` names (built by ``make_inputs.py``)."""
    shape, dtype, task = spec.split(":")
    epochs, examples, columns = map(int, shape.split("x"))
    return dynamics_path(epochs, examples, columns, dtype, task), labels_path(examples, columns, task), task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="directory that imports as the old build")
    parser.add_argument("--new", type=Path, required=True, help="directory that imports as the new build")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("files", nargs="+", help="EPOCHSxEXAMPLESxCOLUMNS:dtype:task")
    args = parser.parse_args(argv)
    sides = {"old": Worker(args.old.resolve()), "new": Worker(args.new.resolve())}
    try:
        for spec in args.files:
            path, labels, task = inputs(spec)
            request = f"{path} {labels} {task} {args.threads}"
            times: dict[str, list[float]] = {"old": [], "new": []}
            # round 0 warms both sides up (mapping, output pages) and is not counted
            for r in range(args.rounds + 1):
                for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    elapsed = sides[side].time(request)
                    if r:
                        times[side].append(elapsed)
            new, old = np.array(times["new"]), np.array(times["old"])
            print(
                f"{spec:36s} threads={args.threads} new/old median {median_ratio(new, old):.3f} best {new.min() / old.min():.3f}"
                f"  new {new.min() * 1e3:.1f}/{np.median(new) * 1e3:.1f} ms  old {old.min() * 1e3:.1f}/{np.median(old) * 1e3:.1f} ms (best/median)",
                flush=True,
            )
    finally:
        for worker in sides.values():
            worker.close()


if __name__ == "__main__":
    main()
