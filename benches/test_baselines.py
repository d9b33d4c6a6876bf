"""The fast numpy baseline computes what datacarto computes (run without --benchmark-only).

    pytest benches/test_baselines.py

It is a benchmark's competitor, so it must do the whole job: every default statistic, equal
to ``datacarto.compute`` within float32 per-epoch arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest

import datacarto as dc
from baselines import cartography_loop, cartography_records, fast_numpy
from make_inputs import build, labels_for


@pytest.fixture(autouse=True)
def small_data_dir(tmp_path, monkeypatch):
    import make_inputs

    monkeypatch.setattr(make_inputs, "DATA_DIR", tmp_path)


CASES = [((6, 5_000, 28), "float32", "multiclass"), ((4, 3_000, 3), "float64", "multiclass"), ((5, 4_000, 10), "float16", "multiclass"),
         ((5, 4_000, 1), "float32", "binary"), ((5, 2_000, 7), "float32", "multilabel"), ((3, 2_000, 2), "float16", "multiclass")]


@pytest.mark.parametrize("shape, dtype, task", CASES, ids=lambda c: str(c))
def test_fast_numpy_matches_datacarto(shape, dtype, task):
    path = str(build(*shape, dtype=dtype, task=task))
    labels = labels_for(shape, task)
    ours = dc.compute(path, labels, task=task).as_dict()
    # a chunk that does not divide N, so the chunk edges are covered
    theirs = fast_numpy(path, labels, task, chunk=1_234)
    assert set(theirs) == set(ours)
    for name, expected in ours.items():
        got = theirs[name]
        assert got.shape == expected.shape, name
        if expected.dtype.kind in "bi":
            np.testing.assert_array_equal(got, expected, err_msg=name)
        else:
            np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5, err_msg=name)


def test_cartography_loop_matches_datacarto():
    shape = (5, 300, 4)
    path = str(build(*shape))
    labels = labels_for(shape)
    ours = dc.compute(path, labels, correctness="argmax_first_index")
    theirs = cartography_loop(cartography_records(path, labels, shape[1]))
    np.testing.assert_allclose(list(theirs["confidence"].values()), ours.confidence, atol=1e-6)
    np.testing.assert_allclose(list(theirs["variability"].values()), ours.variability, atol=1e-6)
    assert list(theirs["correctness"].values()) == (ours.correctness * shape[0]).round().astype(int).tolist()
