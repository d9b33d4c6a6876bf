"""Speed of the statistics core against baselines run in the same process.

    python benches/make_inputs.py --scaling      # once: ~1.5 GB of inputs in benches/data/
    pytest benches/bench_core.py --benchmark-only -s

Per file, the baseline is one single-threaded numpy pass that sums the whole memory-mapped file
(the memory-read limit); datacarto runs with all threads and with one, and the numpy reference
once. The summary printed at the end gives the ratios; nothing here asserts a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

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


@pytest.mark.parametrize("shape", HEADLINE, ids=lambda s: "x".join(map(str, s)))
def test_numpy_reference(benchmark, remember, shape):
    path, labels = _inputs(shape)
    benchmark.pedantic(lambda: reference.compute(path, labels), rounds=1, warmup_rounds=0)
    remember(benchmark, "x".join(map(str, shape)), "numpy reference")


@pytest.mark.parametrize("n_examples", SCALING)
def test_scaling(benchmark, remember, n_examples):
    shape = (10, n_examples, 2)
    path, labels = _inputs(shape)
    rounds = 5 if n_examples < 10_000_000 else 3
    benchmark.pedantic(lambda: dc.compute(path, labels), rounds=rounds, warmup_rounds=1)
    remember(benchmark, f"scaling L=2 N={n_examples:,}", "datacarto (all threads)")
    seconds = benchmark.stats.stats.min
    size = os.path.getsize(path)
    NOTES[f"scaling N={n_examples:>10,}"] = f"{seconds * 1e3:9.1f} ms, {size / 2**20:8.1f} MiB, {seconds / size * 2**30:6.3f} s/GiB"
    raw = benchmark.pedantic  # keep flake quiet about unused names in some pytest versions
    del raw


def test_peak_anonymous_memory():
    """Peak RssAnon while computing the 1M x 28 file, sampled every millisecond in a fresh process."""
    path, _ = _inputs(HEADLINE[0])
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
