"""Speed of the statistics core against baselines run in the same process.

    python benches/make_inputs.py --scaling      # once: ~1.5 GB of inputs in benches/data/
    pytest benches/bench_core.py --benchmark-only -s

Per file, the baseline is one single-threaded numpy pass that sums the whole memory-mapped file
(the memory-read limit); datacarto runs with all threads and with one, and the numpy reference
once. The summary printed at the end gives the ratios; nothing here asserts a time.

On a shared host the speed of both drifts by up to 2x over tens of seconds, so the separate runs
above can catch the baseline in a fast spell and datacarto in a slow one (or the reverse).
`test_interleaved_ratio` therefore also alternates the two round by round, so that both see
the same conditions, and reports the ratio of their best rounds and the median of per-round
ratios.
"""

from __future__ import annotations

import os
import subprocess
import sys
import statistics
import textwrap
import time

import numpy as np
import pytest

import datacarto as dc
from conftest import NOTES
from datacarto import reference
from make_inputs import build, labels_path

HEADLINE = [(10, 1_000_000, 28), (10, 1_000_000, 2)]
# Best of this many rounds, the same for the baseline and datacarto: on a shared, noisy host a
# round can take twice the best, so five rounds were too few to find either's real speed.
ROUNDS = 15
SCALING = [10_000, 100_000, 1_000_000, 10_000_000]


def _inputs(shape):
    path = build(*shape)
    labels = np.load(labels_path(shape[1], shape[2]))
    np.load(path, mmap_mode="r").sum()  # warm the page cache
    return str(path), labels


@pytest.mark.parametrize("shape", HEADLINE, ids=lambda s: "x".join(map(str, s)))
def test_raw_read(benchmark, remember, shape):
    path, _ = _inputs(shape)
    benchmark.pedantic(lambda: np.load(path, mmap_mode="r").sum(), rounds=ROUNDS, warmup_rounds=1)
    remember(benchmark, "x".join(map(str, shape)), "numpy sum (raw read)")


@pytest.mark.parametrize("threads", [None, 1], ids=["all-threads", "1-thread"])
@pytest.mark.parametrize("shape", HEADLINE, ids=lambda s: "x".join(map(str, s)))
def test_compute(benchmark, remember, shape, threads):
    path, labels = _inputs(shape)
    benchmark.pedantic(lambda: dc.compute(path, labels, threads=threads), rounds=ROUNDS, warmup_rounds=1)
    remember(benchmark, "x".join(map(str, shape)), "datacarto (all threads)" if threads is None else "datacarto (1 thread)")


PAIRS = 30


@pytest.mark.parametrize("shape", HEADLINE, ids=lambda s: "x".join(map(str, s)))
def test_interleaved_ratio(benchmark, shape):
    """The raw read and datacarto (all threads) alternately, PAIRS rounds each."""
    path, labels = _inputs(shape)
    raw: list = []
    ours: list = []

    def alternate() -> None:
        for _ in range(PAIRS):
            for run, times in ((lambda: np.load(path, mmap_mode="r").sum(), raw), (lambda: dc.compute(path, labels), ours)):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)

    benchmark.pedantic(alternate, rounds=1, warmup_rounds=0)
    per_round = statistics.median(o / r for o, r in zip(ours, raw))
    NOTES[f"interleaved {'x'.join(map(str, shape))}"] = (
        f"best rounds: datacarto {min(ours) * 1e3:.1f} ms / raw read {min(raw) * 1e3:.1f} ms = {min(ours) / min(raw):.2f}x; "
        f"median of the {PAIRS} per-round ratios {per_round:.2f}x; medians {statistics.median(ours) * 1e3:.1f} / {statistics.median(raw) * 1e3:.1f} ms"
    )


@pytest.mark.parametrize("shape", HEADLINE, ids=lambda s: "x".join(map(str, s)))
def test_numpy_reference(benchmark, remember, shape):
    path, labels = _inputs(shape)
    benchmark.pedantic(lambda: reference.compute(path, labels), rounds=1, warmup_rounds=0)
    remember(benchmark, "x".join(map(str, shape)), "numpy reference")


@pytest.mark.parametrize("n_examples", SCALING)
def test_scaling(benchmark, remember, n_examples):
    shape = (10, n_examples, 2)
    path, labels = _inputs(shape)
    rounds = ROUNDS if n_examples < 10_000_000 else 5
    benchmark.pedantic(lambda: dc.compute(path, labels), rounds=rounds, warmup_rounds=1)
    remember(benchmark, f"scaling L=2 N={n_examples:,}", "datacarto (all threads)")
    seconds = benchmark.stats.stats.min
    size = os.path.getsize(path)
    NOTES[f"scaling N={n_examples:>10,}"] = f"{seconds * 1e3:9.1f} ms, {size / 2**20:8.1f} MiB, {seconds / size * 2**30:6.3f} s/GiB"
    raw = benchmark.pedantic  # keep flake quiet about unused names in some pytest versions
    del raw


def test_peak_anonymous_memory(benchmark):
    """Peak RssAnon while computing the 1M x 28 file, sampled every millisecond in a fresh process."""
    path, _ = _inputs(HEADLINE[0])
    # the `benchmark` fixture only so that --benchmark-only runs this too; its time means nothing
    benchmark.pedantic(lambda: None, rounds=1, warmup_rounds=0)
    script = textwrap.dedent(
        f"""
        import threading, time, numpy as np, datacarto as dc
        def rss_anon():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        labels = np.load({str(labels_path(1_000_000, 28))!r})
        before = rss_anon(); peak = before; done = False
        def sample():
            global peak
            while not done:
                peak = max(peak, rss_anon()); time.sleep(0.001)
        t = threading.Thread(target=sample); t.start()
        stats = dc.compute({path!r}, labels)
        done = True; t.join()
        outputs = sum(a.nbytes for a in stats.as_dict().values())
        print(before, peak, outputs)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    before, peak, outputs = map(int, out)
    NOTES["peak RssAnon 1M x 28"] = (
        f"{(peak - before) / 2**20:.1f} MiB above the {before / 2**20:.1f} MiB baseline; "
        f"outputs are {outputs / 2**20:.1f} MiB, so working memory beyond them is {(peak - before - outputs) / 2**20:.1f} MiB "
        f"(the 1.04 GiB file is mapped, not counted)"
    )
