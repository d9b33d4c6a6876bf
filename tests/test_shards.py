"""dc.compute over shards: lists and globs of .npy files split by examples or by epochs give
the statistics of the unsharded file; every shard is checked like a single file."""

from __future__ import annotations

import os

import numpy as np
import pytest

import datacarto as dc
from _helpers import assert_same_statistics as assert_same


def write_shards(tmp_path, probs, axis, bounds, name="shard"):
    paths = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        path = tmp_path / f"{name}-{k:02d}.npy"
        np.save(path, probs[a:b] if axis == "epochs" else probs[:, a:b])
        paths.append(str(path))
    return paths


@pytest.fixture
def block():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(3), size=(7, 40)).astype(np.float32)
    return probs, rng.integers(0, 3, 40)


@pytest.mark.parametrize("axis,bounds", [("examples", [0, 13, 14, 40]), ("epochs", [0, 3, 4, 7])])
@pytest.mark.parametrize("window", [None, 2, (1, 5), (3, 4)])
def test_shards_equal_the_whole(tmp_path, block, axis, bounds, window):
    probs, labels = block
    paths = write_shards(tmp_path, probs, axis, bounds)
    got = dc.compute(paths, labels, shards=axis, epochs=window, ddof=0)
    assert_same(got, dc.compute(probs, labels, epochs=window))
    assert got.source is None and got.extra["shards"] == paths and got.extra["shard_axis"] == axis


@pytest.mark.parametrize("axis,bounds", [("examples", [0, 13, 14, 40]), ("epochs", [0, 3, 4, 7])])
@pytest.mark.parametrize("window", [None, (1, 5), (3, 4)])
def test_shards_give_class_means_and_a_subset_of_statistics(tmp_path, block, axis, bounds, window):
    """class_means=True and statistics=[...] over shards give what they give on the whole file
    (class means within float rounding: epoch shards' means are combined by their epochs)."""
    probs, labels = block
    paths = write_shards(tmp_path, probs, axis, bounds)
    whole = dc.compute(probs, labels, epochs=window, class_means=True)
    got = dc.compute(paths, labels, shards=axis, epochs=window, class_means=True)
    assert_same(got, whole)
    assert got.class_means.shape == (40, 3)
    np.testing.assert_allclose(got.class_means, whole.class_means, rtol=1e-12, atol=1e-15)
    names = ["variability", "margin"]
    part = dc.compute(paths, labels, shards=axis, epochs=window, statistics=names)
    assert part.computed == tuple(names) and part.confidence is None
    for name in names:
        np.testing.assert_allclose(getattr(part, name), getattr(whole, name), rtol=1e-12, atol=1e-15)


def test_class_means_of_multilabel_and_binary_shards(tmp_path):
    rng = np.random.default_rng(7)
    probs = rng.random((5, 30, 3)).astype(np.float32)
    targets = rng.integers(0, 2, (30, 3))
    for axis, bounds in (("examples", [0, 11, 30]), ("epochs", [0, 2, 5])):
        paths = write_shards(tmp_path, probs, axis, bounds, name=f"ml-{axis}")
        got = dc.compute(paths, targets, shards=axis, class_means=True)
        np.testing.assert_allclose(got.class_means, dc.compute(probs, targets, class_means=True).class_means, rtol=1e-12)
        paths = write_shards(tmp_path, probs[:, :, :1], axis, bounds, name=f"bin-{axis}")
        got = dc.compute(paths, targets[:, 0], shards=axis, class_means=True, epochs=(1, 4))
        np.testing.assert_allclose(got.class_means, dc.compute(probs[:, :, :1], targets[:, 0], class_means=True, epochs=(1, 4)).class_means, rtol=1e-12)


def test_a_glob_is_expanded_in_sorted_order(tmp_path, block):
    probs, labels = block
    write_shards(tmp_path, probs, "epochs", [0, 2, 5, 7])
    got = dc.compute(str(tmp_path / "shard-*.npy"), labels, shards="epochs", ddof=1, correctness="threshold", threshold=0.4)
    assert_same(got, dc.compute(probs, labels, ddof=1, correctness="threshold", threshold=0.4))
    with pytest.raises(FileNotFoundError, match="no file matches"):
        dc.compute(str(tmp_path / "nothing-*.npy"), labels, shards="epochs")


def test_multilabel_and_binary_shards(tmp_path):
    rng = np.random.default_rng(6)
    probs = rng.random((4, 30, 3)).astype(np.float16)
    targets = rng.integers(0, 2, (30, 3))
    for axis, bounds in (("examples", [0, 10, 30]), ("epochs", [0, 1, 4])):
        paths = write_shards(tmp_path, probs, axis, bounds, name=axis)
        assert_same(dc.compute(paths, targets, shards=axis), dc.compute(probs, targets))
    binary = probs[:, :, :1].astype(np.float64)
    paths = write_shards(tmp_path, binary, "epochs", [0, 2, 4], name="binary")
    assert_same(dc.compute(paths, targets[:, 0], shards="epochs"), dc.compute(binary, targets[:, 0]))


def test_progress_covers_every_shard(tmp_path, block):
    probs, labels = block
    paths = write_shards(tmp_path, probs, "examples", [0, 20, 40])
    seen = []
    dc.compute(paths, labels, shards="examples", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (40, 40) and all(total == 40 for _, total in seen)


def test_shards_are_checked_and_named(tmp_path, block):
    probs, labels = block
    paths = write_shards(tmp_path, probs, "examples", [0, 20, 40])
    with pytest.raises(dc.DatacartoError, match="shards='examples' or shards='epochs'"):
        dc.compute(paths, labels)
    with pytest.raises(dc.DatacartoError, match="shards: expected 'examples' or 'epochs'"):
        dc.compute(paths, labels, shards="rows")
    with pytest.raises(dc.DatacartoError, match=r"labels: expected an integer array of shape \(40,\)"):
        dc.compute(paths, labels[:30], shards="examples")
    # the same epochs are required of example shards, the same examples of epoch shards
    short = tmp_path / "short.npy"
    np.save(short, probs[:5, :10])
    with pytest.raises(dc.DatacartoError, match=r"short.npy: shape: shards by epochs must all hold the same examples: expected 20"):
        dc.compute([paths[0], str(short)], labels[:20], shards="epochs")
    with pytest.raises(dc.DatacartoError, match="short.npy: shape: shards by examples must all hold the same epochs"):
        dc.compute([paths[0], str(short)], labels[:30], shards="examples")
    wide = tmp_path / "wide.npy"
    np.save(wide, np.full((7, 20, 4), 0.25, dtype=np.float32))
    with pytest.raises(dc.DatacartoError, match="wide.npy: shape: expected 3 label columns"):
        dc.compute([paths[0], str(wide)], labels, shards="examples")
    double = tmp_path / "double.npy"
    np.save(double, probs[:, 20:].astype(np.float64))
    with pytest.raises(dc.DatacartoError, match="double.npy: descr: expected float32"):
        dc.compute([paths[0], str(double)], labels, shards="examples")
    # a bad value is reported with its shard's file name
    bad = probs[:, 20:].copy()
    bad[3, 2, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(dc.DatacartoError, match=r"bad.npy: values: .*NaN at epoch 3, example 2"):
        dc.compute([paths[0], str(tmp_path / "bad.npy")], labels, shards="examples")
    with pytest.raises(dc.DatacartoError, match=r"bad.npy: values"):
        dc.compute([str(tmp_path / "bad.npy")], labels[20:], shards="epochs")
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "shard-01.npy").read_bytes()[:-7])
    with pytest.raises(dc.DatacartoError, match="trunc.npy: shape: truncated"):
        dc.compute([paths[0], str(tmp_path / "trunc.npy")], labels, shards="examples")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        dc.compute([paths[0], str(tmp_path / "missing.npy")], labels, shards="examples")
    with pytest.raises(TypeError, match=r"source\[1\]"):
        dc.compute([paths[0], 3], labels, shards="examples")
    with pytest.raises(dc.DatacartoError, match="empty list"):
        dc.compute([], labels, shards="examples")
    with pytest.raises(dc.DatacartoError, match="window"):
        dc.compute(paths, labels, shards="examples", epochs=(7, 9))


def test_the_core_joins_outputs_of_each_dtype():
    from datacarto import _core

    for dtype in (np.float64, np.int32, np.bool_):
        parts = [np.arange(3).astype(dtype), np.arange(2, 7).astype(dtype)]
        joined = _core.concat(parts)
        assert joined.dtype == dtype
        np.testing.assert_array_equal(joined, np.concatenate(parts))
    with pytest.raises(TypeError, match="one dtype"):
        _core.concat([np.zeros(2), np.zeros(2, dtype=np.int32)])
    with pytest.raises(TypeError, match="one dtype"):
        _core.concat([np.zeros(2, dtype=np.float32)])


@pytest.mark.parametrize("axis,bounds", [("examples", [0, 20, 40]), ("epochs", [0, 3, 7])])
def test_a_shard_replaced_while_the_shards_are_read_is_refused(tmp_path, monkeypatch, block, axis, bounds):
    """Shards are read one after another, each opened by its path: another recording of the
    same shape renamed over the second shard while the first is read would be read whole and
    consistently, joining two runs in one result. It is refused, naming the shard; the
    shards read afresh give the statistics of the file they make up now."""
    import datacarto._partial
    from datacarto import _shards

    probs, labels = block
    other = np.random.default_rng(6).dirichlet(np.ones(3), size=probs.shape[:2]).astype(np.float32)
    paths = write_shards(tmp_path, probs, axis, bounds)
    replacement = tmp_path / "rerun.npy"
    np.save(replacement, other[bounds[1]:] if axis == "epochs" else other[:, bounds[1]:])

    def replace_after(read):
        def first_then_replaced(*args, **kwargs):
            result = read(*args, **kwargs)
            if replacement.exists():
                os.replace(replacement, paths[1])
            return result
        return first_then_replaced

    if axis == "examples":
        core = _shards._core

        class Core:
            def __getattr__(self, name):
                return getattr(core, name)

            compute = staticmethod(replace_after(core.compute))

        monkeypatch.setattr(_shards, "_core", Core())
    else:
        monkeypatch.setattr(datacarto._partial, "partial", replace_after(datacarto._partial.partial))
    with pytest.raises(dc.DatacartoError, match=rf"{paths[1]}: file: the file changed while being read \(another file was put at this shard's path while the shards were read"):
        dc.compute(paths, labels, shards=axis)
    assert not replacement.exists(), "the shard was not replaced while the shards were read"
    now = np.concatenate([probs[:3], other[3:]]) if axis == "epochs" else np.concatenate([probs[:, :20], other[:, 20:]], axis=1)
    assert_same(dc.compute(paths, labels, shards=axis), dc.compute(now, labels))
