"""datacarto.dask on a real LocalCluster of two worker processes: dask arrays chunked any way
and shard files give dc.compute's statistics, and the probabilities never travel between
workers (only states and outputs do)."""

from __future__ import annotations

import numpy as np
import pytest

import datacarto as dc
from _helpers import assert_same_statistics as assert_same


pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
import dask.array as da  # noqa: E402

import datacarto.dask as dcd  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit="1GiB") as cluster:
        with distributed.Client(cluster) as client:
            yield client


def block_of(block_info=None, *, n_labels, seed):
    """A chunk's probabilities, made on the worker from its location (so the client never holds them)."""
    (e0, e1), (x0, x1), (l0, l1) = block_info[None]["array-location"]
    rows = []
    for e in range(e0, e1):
        rng = np.random.default_rng([seed, e])
        rows.append(rng.dirichlet(np.ones(n_labels), size=x1)[x0:x1, l0:l1])
    return np.stack(rows).astype(np.float32)


def generated(shape, chunks, seed=0):
    x = da.map_blocks(block_of, n_labels=shape[2], seed=seed, chunks=da.core.normalize_chunks(chunks, shape), dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    whole = np.stack([np.random.default_rng([seed, e]).dirichlet(np.ones(shape[2]), size=shape[1]) for e in range(shape[0])]).astype(np.float32)
    return x, whole


def transferred(client):
    return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total).values())


@pytest.mark.parametrize("chunks", [(2, 400, 3), (3, 250, 3), (7, 1000, 3), (1, 137, 1)])
def test_a_dask_array_chunked_any_way_equals_compute(client, chunks):
    x, whole = generated((7, 1000, 3), chunks)
    labels = np.random.default_rng(1).integers(0, 3, 1000)
    stats = dcd.compute(x, labels, client=client, epochs=(1, 7), ddof=1)
    assert_same(stats, dc.compute(whole, labels, epochs=(1, 7), ddof=1))
    assert stats.source is None


def test_the_probabilities_never_travel_between_workers(client):
    # 12 epochs x 40k examples x 8 labels float32 = 15 MB born on the workers; a state is 53 B/example
    x, whole = generated((12, 40_000, 8), (3, 10_000, 8), seed=3)
    labels = np.random.default_rng(2).integers(0, 8, 40_000)
    before = transferred(client)
    stats = dcd.compute(x, labels, client=client)
    moved = transferred(client) - before
    assert_same(stats, dc.compute(whole, labels))
    states_and_outputs = 40_000 * (53 * 3 + 8 * 10)  # at most every state moved thrice, plus outputs
    assert moved < states_and_outputs < whole.nbytes


def test_shard_files_on_the_cluster(client, tmp_path):
    rng = np.random.default_rng(4)
    probs = rng.random((6, 300, 2)).astype(np.float32)
    targets = rng.integers(0, 2, (300, 2))
    for axis, bounds in (("examples", (0, 100, 250, 300)), ("epochs", (0, 2, 3, 6))):
        paths = []
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            paths.append(str(tmp_path / f"{axis}-{k}.npy"))
            np.save(paths[-1], probs[a:b] if axis == "epochs" else probs[:, a:b])
        stats = dcd.compute(paths, targets, shards=axis, client=client, epochs=1, correctness="threshold", threshold=0.6)
        assert_same(stats, dc.compute(probs, targets, epochs=1, correctness="threshold", threshold=0.6))
        assert stats.extra["shards"] == paths
        globbed = dcd.compute(str(tmp_path / f"{axis}-*.npy"), targets, shards=axis, client=client)
        assert_same(globbed, dc.compute(probs, targets))


@pytest.mark.parametrize("axis", ["examples", "epochs"])
def test_a_shard_replaced_while_the_tasks_read_them_is_refused(tmp_path, monkeypatch, axis):
    """The tasks read the shards by path, one after another: another recording renamed over the
    second shard after the first is read (here on the synchronous scheduler, so that the
    replacement lands between the two reads for sure) is refused, naming the shard, instead of
    statistics joining two runs; write_parquet then keeps none of the parts it wrote."""
    import os

    rng = np.random.default_rng(10)
    probs = rng.dirichlet(np.ones(3), size=(4, 60)).astype(np.float32)
    other = rng.dirichlet(np.ones(3), size=(4, 60)).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    cut = (slice(0, 2), slice(2, 4)) if axis == "epochs" else ((slice(None), slice(0, 30)), (slice(None), slice(30, 60)))
    paths = [str(tmp_path / f"{axis}-{k}.npy") for k in range(2)]
    replacement = tmp_path / "rerun.npy"
    read = "_compute_shard" if axis == "examples" else "_partial_file"
    original = getattr(dcd, read)

    def first_then_replaced(*args, **kwargs):
        result = original(*args, **kwargs)
        if replacement.exists():
            os.replace(replacement, paths[1])
        return result

    monkeypatch.setattr(dcd, read, first_then_replaced)
    for run in (lambda: dcd.compute(paths, labels, shards=axis, scheduler="synchronous"), lambda: dcd.write_parquet(paths, labels, tmp_path / "out", shards=axis, scheduler="synchronous")):
        (tmp_path / "out").mkdir(exist_ok=True)
        for path, part in zip(paths, cut):
            np.save(path, probs[part])
        np.save(replacement, other[cut[1]])
        with pytest.raises(dc.DatacartoError, match=rf"{paths[1]}: file: the file changed while being read \(another file was put at this shard's path while the shards were read"):
            run()
        assert not replacement.exists(), "the shard was not replaced while the tasks read them"
        assert os.listdir(tmp_path / "out") == []
    assert_same(dcd.compute(paths, labels, shards=axis, scheduler="synchronous"), dc.compute(np.concatenate([probs[cut[0]], other[cut[1]]], axis=0 if axis == "epochs" else 1), labels))


def test_bad_input_is_named(client, tmp_path):
    x = da.from_array(np.full((2, 10, 3), 0.5, dtype=np.float32), chunks=(1, 5, 3))
    with pytest.raises(dc.DatacartoError, match=r"labels: expected an integer array of shape \(10,\)"):
        dcd.compute(x, np.zeros(9, dtype=int), client=client)
    with pytest.raises(dc.DatacartoError, match="x: expected 3 dimensions"):
        dcd.compute(x[0], np.zeros(10, dtype=int), client=client)
    bad = x.copy()
    bad[1, 7, 2] = 2.0
    with pytest.raises(dc.DatacartoError, match=r"chunk at epochs \[1, 2\), examples \[5, 10\): probs: values: expected probabilities in \[0, 1\], found 2 at epoch 0, example 2, label 2"):
        dcd.compute(bad, np.zeros(10, dtype=int), client=client)
    with pytest.raises(TypeError, match="source"):
        dcd.compute(np.zeros((2, 10, 3)), np.zeros(10, dtype=int), client=client)
    with pytest.raises(dc.DatacartoError, match="shards="):
        dcd.compute([str(tmp_path / "a.npy")], np.zeros(10, dtype=int), client=client)


def test_outputs_written_per_chunk_by_the_workers(client, tmp_path):
    pl = pytest.importorskip("polars")
    rng = np.random.default_rng(8)
    probs = rng.random((4, 90, 3)).astype(np.float32)
    targets = rng.integers(0, 2, (90, 3))
    x = da.from_array(probs, chunks=(2, 40, 3))
    paths = dcd.write_parquet(x, targets, tmp_path, client=client, epochs=1)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    frame = pl.concat([pl.read_parquet(p) for p in paths])
    want = dc.compute(probs, targets, epochs=1).to_polars()
    assert frame.columns == want.columns
    assert frame.select("example", "label", "gold", "forgetting", "first_learned").equals(want.select("example", "label", "gold", "forgetting", "first_learned"))
    np.testing.assert_allclose(frame["variability"].to_numpy(), want["variability"].to_numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(FileNotFoundError):
        dcd.write_parquet(x, targets, tmp_path / "missing", client=client)


def test_a_subset_of_statistics_on_the_cluster(client, tmp_path):
    """statistics=[...] returns those arrays, equal to the full computation's, and None for the
    rest, from a dask array and from shard files of either axis; write_parquet writes only
    their columns; bad names are refused before any task runs."""
    pl = pytest.importorskip("polars")
    names = ["el2n", "confidence", "forgetting"]
    in_order = [name for name in dc.STATISTICS if name in names]
    rng = np.random.default_rng(9)
    probs = rng.dirichlet(np.ones(4), size=(5, 200)).astype(np.float32)
    labels = rng.integers(0, 4, 200)
    full = dc.compute(probs, labels, ddof=1)

    def check(stats):
        assert stats.computed == tuple(in_order)
        for name in dc.STATISTICS:
            if name in names:
                np.testing.assert_allclose(getattr(stats, name), getattr(full, name), rtol=1e-12, atol=1e-12, err_msg=name)
            else:
                assert getattr(stats, name) is None, name

    x = da.from_array(probs, chunks=(2, 70, 4))
    check(dcd.compute(x, labels, client=client, ddof=1, statistics=names))
    for axis, bounds in (("examples", (0, 120, 200)), ("epochs", (0, 3, 5))):
        paths = []
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            paths.append(str(tmp_path / f"{axis}-{k}.npy"))
            np.save(paths[-1], probs[a:b] if axis == "epochs" else probs[:, a:b])
        check(dcd.compute(paths, labels, shards=axis, client=client, ddof=1, statistics=names))
    out = tmp_path / "parts"
    out.mkdir()
    frame = pl.concat([pl.read_parquet(p) for p in dcd.write_parquet(x, labels, out, client=client, statistics=names)])
    assert frame.columns == ["example", "gold", *in_order]
    np.testing.assert_array_equal(frame["forgetting"].to_numpy(), dc.compute(probs, labels).forgetting)
    with pytest.raises(dc.DatacartoError, match="statistics: expected names from"):
        dcd.compute(x, labels, client=client, statistics=["confidance"])
    with pytest.raises(TypeError, match="statistics"):
        dcd.write_parquet(x, labels, out, client=client, statistics="confidence")


def test_class_means_on_the_cluster(client, tmp_path):
    """class_means=True gives dc.compute's class means (float16 clamped as the core clamps it)
    from a dask array chunked along both axes and from shard files of either axis, over an
    epoch window; label_issues then flags what it flags on the local result."""
    rng = np.random.default_rng(11)
    probs = rng.dirichlet(np.ones(4), size=(7, 300)).astype(np.float16)
    probs[2, 5, 1] = np.float16(1.0004)  # within float16's rounding tolerance: clamped to 1
    labels = rng.integers(0, 4, 300)
    local = dc.compute(probs, labels, epochs=(1, 6), class_means=True)
    x = da.from_array(probs, chunks=(2, 120, 4))
    stats = dcd.compute(x, labels, client=client, epochs=(1, 6), class_means=True)
    np.testing.assert_allclose(stats.class_means, local.class_means, rtol=1e-12, atol=1e-15)
    assert stats.class_means.shape == (300, 4) and stats.class_means[5, 1] > 0
    assert_same(stats, local)
    issues, want = dc.DataMap(stats).label_issues(), dc.DataMap(local).label_issues()
    assert issues.flags.tolist() == want.flags.tolist() and issues.suggested.tolist() == want.suggested.tolist()
    assert dcd.compute(x, labels, client=client).class_means is None
    wide = probs.astype(np.float32)
    for axis, bounds in (("examples", (0, 100, 300)), ("epochs", (0, 2, 3, 7))):
        paths = []
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            paths.append(str(tmp_path / f"means-{axis}-{k}.npy"))
            np.save(paths[-1], wide[a:b] if axis == "epochs" else wide[:, a:b])
        sharded = dcd.compute(paths, labels, shards=axis, client=client, epochs=(1, 6), class_means=True, statistics=["confidence"])
        np.testing.assert_allclose(sharded.class_means, local.class_means, rtol=1e-12, atol=1e-15, err_msg=axis)
        np.testing.assert_allclose(sharded.confidence, local.confidence, rtol=1e-12, atol=1e-15, err_msg=axis)


def test_class_means_refuse_bad_chunks_by_place(client):
    x = da.from_array(np.full((2, 10, 3), 0.5, dtype=np.float32), chunks=(1, 5, 3))
    bad = x.copy()
    bad[1, 7, 2] = -1.0
    with pytest.raises(dc.DatacartoError, match=r"chunk at epochs \[1, 2\), examples \[5, 10\): probs: values: expected probabilities in \[0, 1\], found -1 at epoch 0, example 2, label 2"):
        dcd.compute(bad, np.zeros(10, dtype=int), client=client, class_means=True)
