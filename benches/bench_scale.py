"""Sharded and Dask statistics against one pass over the unsharded file.

Two inputs (built once by ``make_inputs.build``, then cut into shards beside them):

- ``[10, 20M, 2]`` float32 (1.6 GB) in 8 example shards;
- ``[10, 1M, 28]`` float32 (1.1 GB) in 5 epoch shards.

Each goes through ``dc.compute`` on the unsharded file, ``dc.compute`` on the shards, and
``datacarto.dask.compute`` on the shards with a ``LocalCluster`` of 2 worker processes (one
thread each; the core's own threads do the work). Reported: best-of-``--repeat`` wall times
(files warm in the page cache), the ratios to the unsharded pass, the state's bytes per
example and the bytes the workers sent each other (``transfer_outgoing_bytes_total``).

    python benches/bench_scale.py            # ~6 GB of files in benches/data/
    python benches/bench_scale.py --quick    # 1/20 of the examples, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np

import datacarto as dc
from make_inputs import DATA_DIR, build, labels_path


def shard(path: Path, axis: str, pieces: int) -> List[str]:
    """Cut ``path`` into ``pieces`` shard files along ``axis`` (written once, reused)."""
    source = np.load(path, mmap_mode="r")
    size = source.shape[0] if axis == "epochs" else source.shape[1]
    bounds = [int(b) for b in np.linspace(0, size, pieces + 1)]
    paths = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        out = path.with_name(f"{path.stem}.{axis}-{k:02d}-of-{pieces:02d}.npy")
        if not out.exists():
            tmp = out.with_suffix(".partial")
            piece = np.lib.format.open_memmap(tmp, mode="w+", dtype=source.dtype, shape=(b - a,) + source.shape[1:] if axis == "epochs" else (source.shape[0], b - a, source.shape[2]))
            for e in range(source.shape[0] if axis == "examples" else b - a):
                piece[e] = source[e, a:b] if axis == "examples" else source[a + e]
            piece.flush()
            del piece
            tmp.rename(out)
        paths.append(str(out))
    return paths


def best_of(repeat: int, run: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def moved_bytes(client: Any) -> int:
    return int(sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total).values()))


def measure(name: str, shape: tuple, axis: str, pieces: int, client: Any, repeat: int) -> Dict[str, Any]:
    import datacarto.dask as dcd

    e, n, l = shape
    path = build(e, n, l)
    labels = np.load(labels_path(n, l))
    paths = shard(path, axis, pieces)
    whole = dc.compute(str(path), labels)  # also warms the page cache
    sharded = dc.compute(paths, labels, shards=axis)
    on_dask = dcd.compute(paths, labels, shards=axis, client=client)
    for got in (sharded, on_dask):  # the figures are only worth something if the answers agree
        np.testing.assert_array_equal(got.forgetting, whole.forgetting)
        np.testing.assert_allclose(got.variability, whole.variability, rtol=1e-12, atol=1e-12)
    t_whole = best_of(repeat, lambda: dc.compute(str(path), labels))
    t_shards = best_of(repeat, lambda: dc.compute(paths, labels, shards=axis))
    before = moved_bytes(client)
    t_dask = best_of(repeat, lambda: dcd.compute(paths, labels, shards=axis, client=client))
    moved = (moved_bytes(client) - before) / repeat
    state = dc.partial(np.load(paths[0], mmap_mode="r")[:1, :1000].copy(), labels[:1000])
    data_bytes = e * n * l * 4
    return {
        "input": name,
        "shape": list(shape),
        "shards": f"{pieces} by {axis}",
        "seconds": {"unsharded": round(t_whole, 3), "shards": round(t_shards, 3), "dask_2_workers": round(t_dask, 3)},
        "ratio_to_unsharded": {"shards": round(t_shards / t_whole, 2), "dask_2_workers": round(t_dask / t_whole, 2)},
        "throughput_GB_per_s_unsharded": round(data_bytes / t_whole / 1e9, 2),
        "state_bytes_per_example": state.bytes_per_example,
        "bytes_moved_between_workers": int(moved),
        "bytes_moved_per_example": round(moved / n, 1),
        "input_bytes": data_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1/20 of the examples")
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    from distributed import Client, LocalCluster

    scale = 20 if options.quick else 1
    print(f"data in {DATA_DIR}", flush=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        results = [
            measure("binary-like, example shards", (10, 20_000_000 // scale, 2), "examples", 8, client, options.repeat),
            measure("28 labels, epoch shards", (10, 1_000_000 // scale, 28), "epochs", 5, client, options.repeat),
        ]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
