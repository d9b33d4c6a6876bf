"""DataMap: construction with metadata, regions against hand numpy computations, select,
suspects, trajectories and the parquet / CSV round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datacarto as dc
from datacarto import reference
from datacarto.datamap import REGIONS

N, E, L = 300, 7, 4


def _multiclass_probs(rng: np.random.Generator, labels: np.ndarray, n_epochs: int, n_labels: int) -> np.ndarray:
    """Softmax of noisy logits with a per-example pull towards the gold label, so the map
    has easy, ambiguous and hard examples (uniform random probabilities would not)."""
    n = len(labels)
    logits = rng.normal(0.0, 1.5, size=(n_epochs, n, n_labels))
    logits[:, np.arange(n), labels] += rng.uniform(-3.0, 6.0, size=n)
    z = np.exp(logits - logits.max(axis=2, keepdims=True))
    return (z / z.sum(axis=2, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def multiclass():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, L, N)
    probs = _multiclass_probs(rng, labels, E, L)
    return probs, labels, dc.compute(probs, labels)


@pytest.fixture(scope="module")
def multilabel():
    rng = np.random.default_rng(2)
    n = 80
    labels = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    pull = rng.uniform(-3.0, 5.0, size=(n, 3)) * np.where(labels == 1, 1.0, -1.0)
    probs = 1.0 / (1.0 + np.exp(-(pull + rng.normal(0.0, 1.5, size=(E, n, 3)))))
    return probs.astype(np.float32), labels, dc.compute(probs.astype(np.float32), labels)


# ---------------------------------------------------------------------- construction


def test_frame_has_one_row_per_example_with_statistics(multiclass):
    probs, labels, stats = multiclass
    dm = dc.DataMap(stats)
    assert dm.frame.height == N == len(dm)
    assert dm.frame["example"].to_list() == list(range(N))
    assert dm.frame["gold"].to_list() == labels.tolist()
    for name in dc.STATISTICS:
        np.testing.assert_array_equal(dm.frame[name].to_numpy(), getattr(stats, name))
    assert (dm.task, dm.n_labels, dm.n_examples, dm.epochs) == ("multiclass", L, N, (0, E))
    assert dm.statistics is stats
    np.testing.assert_array_equal(dm.labels, labels)


def test_multilabel_frame_is_per_example_and_label(multilabel):
    probs, labels, stats = multilabel
    n = labels.shape[0]
    dm = dc.DataMap(stats, [f"t{i}" for i in range(n)], label_names=["a", "b", "c"])
    assert dm.frame.height == n * 3
    assert dm.frame["example"].to_list() == np.repeat(np.arange(n), 3).tolist()
    assert dm.frame["label"].to_list() == np.tile(np.arange(3), n).tolist()
    assert dm.frame["gold"].to_list() == labels.reshape(-1).tolist()
    assert dm.frame["label_name"].to_list() == ["a", "b", "c"] * n
    # metadata repeats on every label row of its example
    assert dm.frame["text"].to_list() == [f"t{i}" for i in range(n) for _ in range(3)]
    np.testing.assert_array_equal(dm.frame["confidence"].to_numpy(), stats.confidence.reshape(-1))


def test_from_dynamics_keeps_dynamics_and_window(tmp_path, multiclass):
    probs, labels, _ = multiclass
    path = tmp_path / "d.npy"
    np.save(path, probs)
    dm = dc.DataMap.from_dynamics(path, labels, epochs=2, label_names=list("wxyz"))
    assert dm.dynamics == str(path)
    assert dm.epochs == (2, E)
    expected = reference.compute(probs, labels, epochs=2)
    np.testing.assert_allclose(dm.frame["confidence"].to_numpy(), expected.confidence, rtol=1e-6)
    assert dm.frame["gold_name"].to_list() == [list("wxyz")[i] for i in labels]


@pytest.mark.parametrize("kind", ["polars", "pandas", "dict", "texts", "numpy-texts", "pandas-series"])
def test_metadata_kinds(multiclass, kind):
    _, _, stats = multiclass
    texts = [f"example number {i}, with a comma" for i in range(N)]
    ids = np.arange(N) * 10
    if kind == "polars":
        meta = pl.DataFrame({"text": texts, "id": ids})
    elif kind == "pandas":
        pd = pytest.importorskip("pandas")
        meta = pd.DataFrame({"text": texts, "id": ids}, index=np.arange(N) + 1000)  # the index is ignored
    elif kind == "dict":
        meta = {"text": texts, "id": ids}
    elif kind == "texts":
        meta = texts
    elif kind == "numpy-texts":
        meta = np.array(texts)
    else:
        pd = pytest.importorskip("pandas")
        meta = pd.Series(texts)
    dm = dc.DataMap(stats, meta)
    assert dm.frame["text"].to_list() == texts
    if kind in ("polars", "pandas", "dict"):
        assert dm.frame["id"].to_list() == ids.tolist()
        assert dm.metadata_columns == ["text", "id"]
    else:
        assert dm.metadata_columns == ["text"]


@pytest.mark.parametrize(
    "meta, match",
    [
        (["a", "b"], f"metadata: expected {N} rows"),
        ({"text": ["a"] * (N + 1)}, f"metadata: expected {N} rows"),
        (pl.DataFrame({"x": range(N - 1)}), f"metadata: expected {N} rows.*found {N - 1}"),
        (pl.DataFrame({"confidence": range(N)}), "clashes with a datacarto column"),
        (np.zeros((N, 2)), "1-D sequence"),
    ],
)
def test_metadata_errors(multiclass, meta, match):
    _, _, stats = multiclass
    with pytest.raises(dc.DatacartoError, match=match):
        dc.DataMap(stats, meta)


def test_constructor_type_errors(multiclass):
    _, _, stats = multiclass
    with pytest.raises(TypeError, match="stats: expected a datacarto.Statistics"):
        dc.DataMap({"confidence": [0.5]})
    with pytest.raises(TypeError, match="metadata: .*single string"):
        dc.DataMap(stats, "texts.csv")
    with pytest.raises(TypeError, match="metadata: expected"):
        dc.DataMap(stats, 42)
    with pytest.raises(dc.DatacartoError, match="label_names: expected 4 names"):
        dc.DataMap(stats, label_names=["a", "b"])


def test_binary_label_names_are_the_two_classes():
    rng = np.random.default_rng(3)
    probs = rng.random((4, 10, 1)).astype(np.float32)
    labels = rng.integers(0, 2, 10)
    dm = dc.DataMap.from_dynamics(probs, labels, label_names=["no", "yes"])
    assert dm.task == "binary"
    assert dm.frame["gold_name"].to_list() == [["no", "yes"][i] for i in labels]


# ---------------------------------------------------------------------- regions


def _as_list(region: np.ndarray) -> list:
    return [None if r is None else str(r) for r in region]


@pytest.mark.parametrize("easy, hard", [(None, None), (0.7, 0.2), (0.5, 0.5)])
def test_threshold_regions_match_numpy(multiclass, easy, hard):
    _, _, stats = multiclass
    kwargs = {k: v for k, v in {"easy": easy, "hard": hard}.items() if v is not None}
    dm = dc.DataMap(stats).regions("thresholds", **kwargs)
    conf = stats.confidence
    e, h = easy if easy is not None else 0.6, hard if hard is not None else 0.4
    expected = np.where(conf > e, "easy", np.where(conf < h, "hard", "ambiguous"))
    assert dm.frame["region"].to_list() == expected.tolist()
    counts = dm.region_counts()
    assert counts == {name: int((expected == name).sum()) for name in REGIONS}
    assert sum(counts.values()) == N
    assert dm.region_rule == {"rule": "thresholds", "easy": e, "hard": h}


def test_data_iq_regions_match_numpy(multiclass):
    _, _, stats = multiclass
    dm = dc.DataMap(stats).regions("data-iq")
    conf, ale = stats.confidence, stats.aleatoric
    low = ale <= np.median(ale)
    expected = np.where(low & (conf >= 0.75), "easy", np.where(low & (conf <= 0.25), "hard", "ambiguous"))
    assert dm.frame["region"].to_list() == expected.tolist()
    # All three regions occur on this data, so the test would catch a swapped condition.
    assert min(dm.region_counts().values()) > 0
    custom = dc.DataMap(stats).regions("data_iq", easy=0.6, hard=0.3, aleatoric_quantile=0.8)
    low = ale <= np.quantile(ale, 0.8)
    expected = np.where(low & (conf >= 0.6), "easy", np.where(low & (conf <= 0.3), "hard", "ambiguous"))
    assert custom.frame["region"].to_list() == expected.tolist()


def test_data_iq_median_is_per_label_for_multilabel(multilabel):
    _, labels, stats = multilabel
    dm = dc.DataMap(stats).regions("data-iq", easy=0.6, hard=0.4)
    conf, ale = stats.confidence, stats.aleatoric  # [n, 3]
    low = ale <= np.median(ale, axis=0, keepdims=True)
    expected = np.where(low & (conf >= 0.6), "easy", np.where(low & (conf <= 0.4), "hard", "ambiguous"))
    assert dm.frame["region"].to_list() == expected.reshape(-1).tolist()
    # a global median would give a different answer on this data
    global_low = ale <= np.median(ale)
    assert not np.array_equal(low, global_low)


def _quantile_expected(conf: np.ndarray, var: np.ndarray, fractions: dict) -> np.ndarray:
    n = len(conf)
    idx = np.arange(n)
    expected = np.full(n, None, dtype=object)
    k = {name: math.ceil(round(f * n, 9)) for name, f in fractions.items()}
    hard = sorted(idx, key=lambda i: (conf[i], i))[: k["hard"]]
    easy = sorted(idx, key=lambda i: (-conf[i], i))[: k["easy"]]
    ambiguous = sorted(idx, key=lambda i: (-var[i], i))[: k["ambiguous"]]
    expected[hard] = "hard"
    expected[easy] = "easy"
    expected[ambiguous] = "ambiguous"  # ambiguous wins overlaps
    return expected


@pytest.mark.parametrize("fraction", [0.33, 0.1, {"easy": 0.5, "ambiguous": 0.2, "hard": 0.25}])
def test_quantile_regions_follow_the_paper_selection(multiclass, fraction):
    _, _, stats = multiclass
    dm = dc.DataMap(stats).regions("quantiles", fraction=fraction)
    fractions = fraction if isinstance(fraction, dict) else dict.fromkeys(REGIONS, fraction)
    expected = _quantile_expected(stats.confidence, stats.variability, fractions)
    assert dm.frame["region"].to_list() == _as_list(expected)
    region = np.array(dm.frame["region"].to_list(), dtype=object)
    # the ambiguous selection is exactly the top ceil(f * N) by variability
    k_amb = math.ceil(fractions["ambiguous"] * N)
    assert (region == "ambiguous").sum() == k_amb
    assert np.min(stats.variability[region == "ambiguous"]) >= np.max(stats.variability[region != "ambiguous"])
    # every easy row is more confident than every hard row
    assert np.min(stats.confidence[region == "easy"]) > np.max(stats.confidence[region == "hard"])
    counts = dm.region_counts()
    assert sum(counts.values()) == N
    assert counts.get("unassigned", 0) == int(np.sum(region == None))  # noqa: E711


def test_quantile_ties_go_to_the_lower_example_index():
    # 10 examples, 2 epochs, gold probabilities on a coarse grid: many exact ties
    gold = np.array([0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1], dtype=np.float32)
    probs = np.stack([np.stack([gold, 1 - gold], axis=1)] * 2)
    dm = dc.DataMap.from_dynamics(probs, np.zeros(10, dtype=int)).regions("quantiles", fraction=0.3)
    # 0.3 * 10 is 3.0000000000000004 in floating point: still 3 rows per selection, not 4.
    # Variability is 0 everywhere, so the ambiguous selection is examples 0-2; the easy one is
    # also examples 0-2 (the lowest indices among the four tied at 0.9), and ambiguous wins them.
    # Hard is the first three of the four tied at 0.1.
    assert dm.frame["region"].to_list() == ["ambiguous"] * 3 + [None] * 3 + ["hard"] * 3 + [None]
    assert dm.region_counts() == {"easy": 0, "ambiguous": 3, "hard": 3, "unassigned": 4}


def test_quantile_regions_are_per_label_for_multilabel(multilabel):
    _, _, stats = multilabel
    dm = dc.DataMap(stats).regions("quantiles", fraction=0.25)
    frame = dm.frame
    for j in range(3):
        rows = frame.filter(pl.col("label") == j)
        expected = _quantile_expected(stats.confidence[:, j], stats.variability[:, j], dict.fromkeys(REGIONS, 0.25))
        assert rows["region"].to_list() == _as_list(expected)
    per_label = dm.region_counts(per_label=True)
    assert per_label["label"].to_list() == [0, 1, 2]
    assert per_label["ambiguous"].to_list() == [math.ceil(0.25 * 80)] * 3


def test_region_errors(multiclass):
    dm = dc.DataMap(multiclass[2])
    with pytest.raises(dc.DatacartoError, match="rule: expected one of thresholds, quantiles, data-iq, class-quantiles"):
        dm.regions("kmeans")
    with pytest.raises(dc.DatacartoError, match="fraction: does not apply to rule 'thresholds'"):
        dm.regions("thresholds", fraction=0.2)
    with pytest.raises(dc.DatacartoError, match="easy: expected a number in \\[0, 1\\]"):
        dm.regions("thresholds", easy=1.5)
    with pytest.raises(dc.DatacartoError, match="hard: expected a threshold <= easy"):
        dm.regions("thresholds", easy=0.3, hard=0.6)
    with pytest.raises(dc.DatacartoError, match="easy and hard fractions must add up to at most 1"):
        dm.regions("quantiles", fraction=0.6)
    with pytest.raises(dc.DatacartoError, match="fraction: expected a number or a mapping"):
        dm.regions("quantiles", fraction={"easy": 0.2})
    with pytest.raises(dc.DatacartoError, match="no region column"):
        dm.region_counts()
    with pytest.raises(dc.DatacartoError, match="per_label: only applies to a multilabel map"):
        dm.regions().region_counts(per_label=True)


def test_regions_returns_a_new_map(multiclass):
    dm = dc.DataMap(multiclass[2])
    with_regions = dm.regions("quantiles")
    assert "region" not in dm.frame.columns
    assert dm.region_rule is None
    again = with_regions.regions("thresholds")
    assert again.frame.columns.count("region") == 1
    assert with_regions.region_rule["rule"] == "quantiles"


# ---------------------------------------------------------------------- select and suspects


@pytest.mark.parametrize("region, column, descending", [("easy", "confidence", True), ("hard", "confidence", False), ("ambiguous", "variability", True)])
def test_select_sorts_like_the_paper(multiclass, region, column, descending):
    _, _, stats = multiclass
    dm = dc.DataMap(stats).regions("quantiles")
    mask = np.array(dm.frame["region"].to_list(), dtype=object) == region
    rows = dm.select(region)
    values = getattr(stats, column)[mask]
    expected = np.sort(values)[::-1] if descending else np.sort(values)
    np.testing.assert_array_equal(rows[column].to_numpy(), expected)
    assert set(rows["region"].to_list()) == {region}
    top = dm.select(region, n=5)
    assert top.height == 5
    assert top["example"].to_list() == rows["example"].to_list()[:5]


def test_select_by_overrides_the_order(multiclass):
    dm = dc.DataMap(multiclass[2]).regions()
    rows = dm.select("ambiguous", by="margin")
    assert rows["margin"].to_list() == sorted(rows["margin"].to_list())
    rows = dm.select("ambiguous", by="forgetting", descending=True, n=10)
    assert rows["forgetting"].to_list() == sorted(rows["forgetting"].to_list(), reverse=True)
    assert rows.height == 10
    with pytest.raises(dc.DatacartoError, match="by: expected columns of the map.*'nope'"):
        dm.select("easy", by="nope")
    with pytest.raises(dc.DatacartoError, match="region: expected one of easy, ambiguous, hard"):
        dm.select("medium")
    with pytest.raises(dc.DatacartoError, match="n: expected a non-negative int"):
        dm.select("easy", n=-1)
    with pytest.raises(dc.DatacartoError, match="call .regions"):
        dc.DataMap(multiclass[2]).select("easy")


def test_select_one_label_of_a_multilabel_map(multilabel):
    dm = dc.DataMap(multilabel[2], label_names=["a", "b", "c"]).regions()
    rows = dm.select("hard", label="b")
    assert set(rows["label"].to_list()) <= {1}
    assert rows.height == dm.frame.filter((pl.col("label") == 1) & (pl.col("region") == "hard")).height
    with pytest.raises(dc.DatacartoError, match="label: expected a label index or one of the label names, found 'z'"):
        dm.select("hard", label="z")


def test_suspects_ranking_matches_numpy(multiclass):
    probs, labels, _ = multiclass
    stats = dc.compute(probs, labels)
    dm = dc.DataMap(stats)
    top = dm.suspects(20)
    assert top["rank"].to_list() == list(range(1, 21))
    # the default score: 1 - confidence, highest first; ties by margin, then example index
    order = np.lexsort((np.arange(N), stats.margin, stats.confidence))
    assert top["example"].to_list() == order[:20].tolist()
    np.testing.assert_allclose(top["suspicion"].to_numpy(), 1.0 - stats.confidence[order[:20]])
    everything = dm.suspects(None)
    assert everything.height == N
    assert everything["confidence"].to_list() == sorted(everything["confidence"].to_list())
    assert dm.suspects(0).height == 0


def test_suspects_margin_breaks_confidence_ties():
    # two examples with the same mean gold probability, different runner-up
    probs = np.array([[[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.9, 0.1, 0.0]]] * 3, dtype=np.float32)
    dm = dc.DataMap.from_dynamics(probs, [0, 0, 0])
    assert dm.suspects(3)["example"].to_list()[:2] == [0, 1]  # tie on confidence; example 0 has the smaller margin (0 vs 0.25)
    assert dm.frame["never_learned"].to_list() == [True, False, False]


def test_suspects_over_multilabel_rows(multilabel):
    _, _, stats = multilabel
    dm = dc.DataMap(stats)
    top = dm.suspects(10)
    flat = np.lexsort((np.tile(np.arange(3), 80), np.repeat(np.arange(80), 3), stats.margin.reshape(-1), stats.confidence.reshape(-1)))
    pairs = list(zip(top["example"].to_list(), top["label"].to_list()))
    assert pairs == [(int(i) // 3, int(i) % 3) for i in flat[:10]]
    only = dm.suspects(5, label=2)
    assert set(only["label"].to_list()) == {2}


# ---------------------------------------------------------------------- trajectories


def test_trajectories_match_reference(tmp_path, multiclass):
    probs, labels, _ = multiclass
    path = tmp_path / "d.npy"
    np.save(path, probs)
    dm = dc.DataMap.from_dynamics(path, labels, epochs=(1, 5))
    t = dm.trajectories([3, 0, 9])
    gold = reference.gold_probabilities(probs, labels, "multiclass")
    np.testing.assert_allclose(t.probability, gold[:, [3, 0, 9]].T)
    argmax_right = probs.argmax(axis=2)[:, [3, 0, 9]].T == labels[[3, 0, 9], None]
    np.testing.assert_array_equal(t.correct, argmax_right)
    assert t.in_window.tolist() == [False, True, True, True, True, False, False]
    with pytest.raises(dc.DatacartoError, match="examples: expected indices in \\[0, 300\\)"):
        dm.trajectories([N])
    with pytest.raises(dc.DatacartoError, match="dynamics: this map does not know its dynamics"):
        dc.DataMap(dm.statistics, dynamics=None).with_dynamics(None).trajectories([0])


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_read_examples_returns_each_requested_row_in_order(tmp_path_factory, data):
    """Rows are read in runs (examples close together in one read, the gap included): any
    selection, unsorted, repeated, sparse or dense, gives exactly the rows asked for, in order."""
    from datacarto._stats import read_examples

    n = data.draw(st.sampled_from([1, 7, 5000, 40000]), label="n")
    n_labels = data.draw(st.integers(1, 5), label="n_labels")
    dtype = data.draw(st.sampled_from(["float16", "float32", "float64"]), label="dtype")
    examples = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=60), label="examples"), dtype=np.int64)
    probs = np.random.default_rng(n * n_labels).random((3, n, n_labels)).astype(dtype)
    path = tmp_path_factory.mktemp("rows") / "d.npy"
    np.save(path, probs)
    got = read_examples(str(path), examples, (n, n_labels))
    assert got.shape == (3, examples.size, n_labels) and got.dtype == np.float64
    np.testing.assert_array_equal(got, probs[:, examples].astype(np.float64))


def test_trajectories_multilabel_need_a_label(multilabel):
    probs, labels, stats = multilabel
    dm = dc.DataMap(stats, dynamics=probs, label_names=["a", "b", "c"])
    t = dm.trajectories([0, 1], label="c")
    expected = np.where(labels[[0, 1], 2][:, None] == 1, probs[:, [0, 1], 2].T, 1 - probs[:, [0, 1], 2].T)
    np.testing.assert_allclose(t.probability, expected, rtol=1e-6)
    np.testing.assert_array_equal(t.correct, t.probability >= 0.5)
    with pytest.raises(dc.DatacartoError, match="label: a multilabel map needs a label"):
        dm.trajectories([0])


# ---------------------------------------------------------------------- the map's own recording


def _recording(rng: np.random.Generator, task: str, dtype: str, n_epochs: int, n: int) -> tuple:
    """Probabilities of a random run and its labels, for ``task``."""
    if task == "multiclass":
        labels = rng.integers(0, 3, n)
        return _multiclass_probs(rng, labels, n_epochs, 3).astype(dtype), labels
    columns = 1 if task == "binary" else 3
    labels = rng.integers(0, 2, (n, columns)).astype(np.uint8)
    return rng.random((n_epochs, n, columns)).astype(dtype), (labels[:, 0].astype(np.int64) if task == "binary" else labels)


@settings(max_examples=40, deadline=None)
@given(task=st.sampled_from(["multiclass", "binary", "multilabel"]), dtype=st.sampled_from(["float16", "float32", "float64"]), window=st.sampled_from([None, (0, 3), (1, 4), (2, 3)]), seed=st.integers(0, 2**16))
def test_trajectories_read_the_maps_own_recording_and_refuse_a_changed_one(tmp_path_factory, task, dtype, window, seed):
    """The rows trajectories() reads must give the examples the map's confidence over its
    window: the map's own file always does (float16 values just above 1 included, which the
    core clamps); the same file with one example's gold probability changed at one epoch of
    the window is refused, naming the file; changed outside the window, it is read as it is."""
    rng = np.random.default_rng(seed)
    probs, labels = _recording(rng, task, dtype, 4, 30)
    if dtype == "float16":
        probs[0, 3, 0] = np.float16(1.0009765625)  # within float16's tolerance: clamped to 1
    path = tmp_path_factory.mktemp("own") / "d.npy"
    np.save(path, probs)
    dm = dc.DataMap.from_dynamics(str(path), labels, epochs=window)
    label = 0 if task == "multilabel" else None
    examples = [int(i) for i in rng.choice(30, 5, replace=False)] + [3]
    read = dm.trajectories(examples, label=label)
    assert read.probability.shape == (6, 4)
    start, stop = dm.epochs
    changed = probs.copy()
    unit, epoch = examples[0], int(rng.integers(start, stop))
    column = 0 if task != "multiclass" else int(labels[unit])
    value = float(changed[epoch, unit, column])
    changed[epoch, unit, column] = value - 0.25 if value > 0.5 else value + 0.25
    np.save(path, changed)
    with pytest.raises(dc.DatacartoError, match=rf"d\.npy: dynamics: epochs {start}\.\.{stop - 1} give example {unit}\b.* not the recording this map was computed from"):
        dm.trajectories(examples, label=label)
    outside = probs.copy()
    if start > 0 or stop < 4:
        epoch = 0 if start > 0 else 3
        outside[epoch, unit, column] = changed[start, unit, column]
        np.save(path, outside)
        assert np.array_equal(dm.trajectories(examples, label=label).in_window, [start <= k < stop for k in range(4)])


def test_a_map_refuses_its_path_rewritten_by_another_run_and_reads_its_own_file_moved(tmp_path):
    """A map saved beside its dynamics, and the dynamics then overwritten by another training
    run of the same shape: trajectories and class means read from the file are refused (they
    would be the other run's, silently); the map's own recording, moved elsewhere and given
    with .with_dynamics, is read; epochs appended after the window are read and shown."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 60)
    run1, run2 = _multiclass_probs(rng, labels, 5, 3), _multiclass_probs(rng, labels, 5, 3)
    path, moved = tmp_path / "dynamics.npy", tmp_path / "kept" / "run1.npy"
    moved.parent.mkdir()
    np.save(path, run1)
    np.save(moved, run1)
    dc.DataMap.from_dynamics(path, labels, epochs=(1, 4)).write(tmp_path / "map.parquet")
    dm = dc.DataMap.read(tmp_path / "map.parquet")
    expected = dm.trajectories([7, 2]).probability
    issues = dm.label_issues()
    with dc.DynamicsWriter(path, n_examples=60, n_labels=3, overwrite=True) as writer:
        for epoch in run2:
            writer.write_epoch(epoch)
    for read in (lambda: dm.trajectories([7, 2]), dm.label_issues):
        with pytest.raises(dc.DatacartoError, match=r"dynamics\.npy: dynamics: epochs 1\.\.3 give example \d+ a confidence of .* where the map has .*not the recording this map was computed from"):
            read()
    own = dm.with_dynamics(moved)
    assert np.array_equal(own.trajectories([7, 2]).probability, expected)
    assert np.array_equal(own.label_issues().flags, issues.flags)
    np.save(path, run1[:3])
    with pytest.raises(dc.DatacartoError, match=r"dynamics\.npy: epochs: the map covers epochs 1\.\.3 but the dynamics hold 3 epoch\(s\)"):
        dm.trajectories([7])
    np.save(path, np.concatenate([run1, run2[:2]]))
    longer = dm.trajectories([7])
    assert longer.in_window.tolist() == [False, True, True, True, False, False, False]
    assert np.array_equal(longer.probability[0, :5], expected[0])


def test_a_cross_validated_map_refuses_another_recording_for_its_mixture(tmp_path):
    """A cross-validated map's class means come from its epoch mixture, read from the dynamics
    when the recorder did not keep them: another run's file at the path is refused there too,
    and the map's own file gives the mixture over its window."""
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 3, 50)
    run1, run2 = _multiclass_probs(rng, labels, 4, 3), _multiclass_probs(rng, labels, 4, 3)
    path = tmp_path / "d.npy"
    np.save(path, run1)
    stats = dc.compute(path, labels, epochs=(1, 4))
    stats.extra["epoch_weights"] = np.array([0.5, 0.0, 0.5])
    np.save(path, run2)
    with pytest.raises(dc.DatacartoError, match="not the recording this map was computed from"):
        dc.DataMap(stats).label_issues()
    np.save(path, run1)
    issues = dc.DataMap(stats).label_issues()
    mixture = 0.5 * run1[1].astype(np.float64) + 0.5 * run1[3].astype(np.float64)
    assert np.array_equal(issues.flags, dc.DataMap(stats).label_issues(class_means=mixture).flags)


# ---------------------------------------------------------------------- IO


def _assert_same_map(a: dc.DataMap, b: dc.DataMap) -> None:
    assert a.frame.equals(b.frame), (a.frame.schema, b.frame.schema)
    assert a.frame.schema == b.frame.schema
    for attr in ("task", "n_labels", "n_examples", "label_names", "epochs", "correctness_rule", "threshold", "ddof", "dynamics", "region_rule", "metadata_columns"):
        assert getattr(a, attr) == getattr(b, attr), attr
    for name in dc.STATISTICS:
        np.testing.assert_array_equal(getattr(a.statistics, name), getattr(b.statistics, name))
        assert getattr(a.statistics, name).dtype == getattr(b.statistics, name).dtype
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_round_trip_multiclass(tmp_path, multiclass, fmt):
    probs, labels, _ = multiclass
    path = tmp_path / "d.npy"
    np.save(path, probs)
    texts = [f'text {i}, "quoted"\nsecond line' if i % 7 else "" for i in range(N)]
    dm = dc.DataMap.from_dynamics(path, labels, {"text": texts, "score": np.linspace(0, 1, N).astype(np.float32)}, label_names=list("wxyz"), epochs=(1, 6), correctness="threshold", threshold=0.4).regions("quantiles", fraction=0.2)
    out = getattr(dm, f"write_{fmt}")(tmp_path / f"map.{fmt}")
    back = getattr(dc.DataMap, f"read_{fmt}")(out)
    _assert_same_map(dm, back)
    assert back.frame["text"].to_list() == texts
    assert back.frame["region"].null_count() == dm.frame["region"].null_count() > 0
    # the rebuilt statistics keep working: trajectories read the stored dynamics path
    np.testing.assert_array_equal(back.trajectories([1, 2]).probability, dm.trajectories([1, 2]).probability)
    assert dc.DataMap.read(out).frame.equals(dm.frame)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_round_trip_multilabel(tmp_path, multilabel, fmt):
    _, _, stats = multilabel
    dm = dc.DataMap(stats, [f"t{i}" for i in range(80)], label_names=["a", "b", "c"]).regions("data-iq")
    back = getattr(dc.DataMap, f"read_{fmt}")(dm.write(tmp_path / f"map.{fmt}"))
    _assert_same_map(dm, back)
    assert back.statistics.labels.shape == (80, 3)


def test_csv_sidecar_holds_settings(tmp_path, multiclass):
    dm = dc.DataMap(multiclass[2], label_names=list("wxyz"))
    path = dm.write_csv(tmp_path / "m.csv")
    sidecar = json.loads((tmp_path / "m.csv.datacarto.json").read_text())
    assert sidecar["task"] == "multiclass"
    assert sidecar["label_names"] == list("wxyz")
    assert sidecar["epochs"] == [0, E]
    assert sidecar["schema"]["forgetting"] == "Int32"
    # without the sidecar the settings are inferred and the statistic types still restored
    (tmp_path / "m.csv.datacarto.json").unlink()
    back = dc.DataMap.read_csv(path)
    assert back.task == "multiclass" and back.n_labels == L and back.epochs is None
    assert back.frame.schema["forgetting"] == pl.Int32
    np.testing.assert_array_equal(back.statistics.confidence, dm.statistics.confidence)


def test_read_errors(tmp_path, multiclass):
    with pytest.raises(FileNotFoundError, match="missing.parquet: statistics file not found"):
        dc.DataMap.read_parquet(tmp_path / "missing.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(dc.DatacartoError, match="bad.parquet: expected a parquet file"):
        dc.DataMap.read_parquet(bad)
    partial = tmp_path / "partial.parquet"
    pl.DataFrame({"example": [0, 1], "gold": [0, 1], "confidence": [0.5, 0.5]}).write_parquet(partial)
    with pytest.raises(dc.DatacartoError, match="partial.parquet: columns: expected example, gold and every statistic, missing variability"):
        dc.DataMap.read_parquet(partial)
    dm = dc.DataMap(multiclass[2])
    holes = tmp_path / "holes.parquet"
    dm.frame.filter(pl.col("example") != 3).write_parquet(holes)
    with pytest.raises(dc.DatacartoError, match="holes.parquet: rows: expected one row per example"):
        dc.DataMap.read_parquet(holes)
    with pytest.raises(dc.DatacartoError, match="expected a .parquet, .csv or .tsv statistics file"):
        dc.DataMap.read(tmp_path / "x.json")
    with pytest.raises(dc.DatacartoError, match="expected a .parquet or .csv output file"):
        dm.write(tmp_path / "x.xlsx")
