"""Tests for datacarto.plots: the data map, the per-label grid and trajectories (matplotlib, Agg)."""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import polars as pl
import pytest
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.figure import Figure

import datacarto as dc
from datacarto import plots
from datacarto.reference import gold_probabilities
from _helpers import controlled_dynamics


def three_regions(n=600, seed=0):
    """Confidence / variability in three well-separated clusters (easy, ambiguous, hard)."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])
    confidence = np.select([kind == 0, kind == 1], [rng.uniform(0.8, 0.95, n), rng.uniform(0.4, 0.6, n)], rng.uniform(0.05, 0.2, n))
    variability = np.select([kind == 1], [rng.uniform(0.2, 0.35, n)], rng.uniform(0.0, 0.04, n))
    return confidence, variability


@pytest.fixture(scope="module")
def dm():
    probs, gold = controlled_dynamics(*three_regions())
    texts = [f"sentence {i} with words" for i in range(probs.shape[1])]
    return dc.DataMap.from_dynamics(probs, gold, texts, label_names=["a", "b", "c"]).regions()


def scatter_points(ax):
    points = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    return np.concatenate(points) if points else np.empty((0, 2))


def sorted_rows(a):
    a = np.asarray(a, dtype=np.float64).round(5)
    return a[np.lexsort(a.T[::-1])]


def test_map_draws_every_example_at_its_variability_and_confidence(dm):
    fig = plots.plot_map(dm)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("variability", "confidence")
    expected = dm.frame.select("variability", "confidence").to_numpy()
    np.testing.assert_allclose(sorted_rows(scatter_points(ax)), sorted_rows(expected), atol=1e-5)
    assert not any(isinstance(c, QuadMesh) for c in ax.collections)


def test_map_colours_and_marks_each_correctness_level(dm):
    fig = plots.plot_map(dm)
    ax = fig.axes[0]
    correctness = dm.frame["correctness"].to_numpy()
    n_epochs = dm.epochs[1] - dm.epochs[0]
    levels = np.unique(np.rint(correctness * n_epochs))
    groups = [c for c in ax.collections if isinstance(c, PathCollection)]
    # one scatter per correctness level present, each with its own colour and marker
    assert len(groups) == len(levels)
    colours = {tuple(np.round(c.get_facecolor()[0], 3)) for c in groups}
    markers = {c.get_paths()[0].vertices.tobytes() for c in groups}
    assert len(colours) == len(groups) and len(markers) == len(groups)
    # the legend lists all E + 1 levels with their counts
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "correctness"
    counts = [int(t.get_text().split("(")[1].rstrip(")").replace(",", "")) for t in legend.get_texts()]
    assert len(counts) == n_epochs + 1 and sum(counts) == dm.frame.height


def test_map_annotates_regions_with_counts_and_has_histograms(dm):
    fig = plots.plot_map(dm)
    ax = fig.axes[0]
    texts = {t.get_text().split("\n")[0]: t.get_text() for t in ax.texts}
    assert set(texts) == {"easy-to-learn", "ambiguous", "hard-to-learn"}
    counts = dict(dm.frame["region"].value_counts().iter_rows())
    assert f"{counts['easy']:,}" in texts["easy-to-learn"]
    assert f"{counts['hard']:,}" in texts["hard-to-learn"]
    # positions as in the paper: easy top left, ambiguous right, hard bottom left
    pos = {t.get_text().split("\n")[0]: t.xyann if hasattr(t, "xyann") else t.get_position() for t in ax.texts}
    assert pos["easy-to-learn"][1] > 0.5 > pos["hard-to-learn"][1] and pos["ambiguous"][0] > 0.5
    side = {a.get_xlabel() for a in fig.axes[1:]}
    assert {"confidence", "variability", "correctness"} <= side
    # the correctness bars count every example once
    bars = [a for a in fig.axes if a.get_xlabel() == "correctness"][0]
    assert sum(p.get_height() for p in bars.patches) == dm.frame.height
    assert not plots.plot_map(dm, annotate_regions=False).axes[0].texts


def test_correctness_levels():
    codes, levels = plots.correctness_levels(np.array([0, 1 / 3, 2 / 3, 1, 1]), n_epochs=3)
    assert codes.tolist() == [0, 1, 2, 3, 3] and len(levels) == 4
    # many epochs: nearest of 0.0, 0.2, ..., 1.0
    codes, levels = plots.correctness_levels(np.arange(21) / 20, n_epochs=20)
    np.testing.assert_allclose(levels, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert codes[0] == 0 and codes[-1] == 5 and codes[5] == 1  # 0.25 -> 0.2


def test_density_rendering_above_max_scatter(dm):
    fig = plots.plot_map(dm, max_scatter=100)
    ax = fig.axes[0]
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1 and len(scatter_points(ax)) == 0
    assert int(meshes[0].get_array().sum()) == dm.frame.height  # every example lands in a cell
    assert "density" in ax.get_title()
    forced = plots.plot_map(dm, density=False, max_scatter=100).axes[0]
    assert len(scatter_points(forced)) == dm.frame.height


def test_a_million_points_draw_and_save_fast():
    rng = np.random.default_rng(0)
    n = 1_000_000
    p = np.clip(rng.beta(4, 1.5, size=(4, n)) + 0.05 * rng.standard_normal((4, n)), 0, 1)
    probs = np.stack([p, 1 - p], axis=2).astype(np.float32)
    big = dc.DataMap.from_dynamics(probs, np.zeros(n, dtype=np.int64))
    start = time.perf_counter()
    fig = plots.plot_map(big)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    elapsed = time.perf_counter() - start
    assert any(isinstance(c, QuadMesh) for c in fig.axes[0].collections)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert elapsed < 30, f"1M-point map took {elapsed:.1f} s"  # about 2-3 s on an idle 2-core machine


def test_continuous_and_categorical_colours(dm):
    fig = plots.plot_map(dm, color="margin")
    ax = fig.axes[0]
    (scatter,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(np.sort(scatter.get_array()), np.sort(dm.frame["margin"].to_numpy()), atol=1e-6)
    assert any(a.get_ylabel() == "margin" for a in fig.axes)  # the colour bar
    legend = plots.plot_map(dm, color="region").axes[0].get_legend()
    assert [t.get_text().split(" ")[0] for t in legend.get_texts()] == ["easy", "ambiguous", "hard"]
    gold = plots.plot_map(dm, color="gold").axes[0].get_legend()
    assert gold.get_texts()[0].get_text().startswith("a ")  # class names from label_names


def test_label_filters_a_multiclass_map_by_gold_class():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3), size=(4, 300)).astype(np.float32)
    gold = rng.integers(0, 3, 300)
    m = dc.DataMap.from_dynamics(probs, gold, label_names=["x", "y", "z"])
    for label in (1, "y"):
        ax = plots.plot_map(m, label=label).axes[0]
        assert len(scatter_points(ax)) == int((gold == 1).sum())


def test_bad_arguments_name_the_argument(dm):
    with pytest.raises(dc.DatacartoError, match="color"):
        plots.plot_map(dm, color="no_such_column")
    with pytest.raises(dc.DatacartoError, match="label"):
        plots.plot_map(dm, label="no_such_class")
    with pytest.raises(dc.DatacartoError, match="ncols"):
        plots.plot_label_grid(dm, ncols=0)


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory):
    rng = np.random.default_rng(1)
    n, n_labels = 400, 5
    y = rng.integers(0, 2, size=(n, n_labels))
    probs = np.clip(np.where(y[None] == 1, 0.7, 0.2) + 0.2 * rng.standard_normal((6, n, n_labels)), 0.001, 0.999).astype(np.float32)
    path = tmp_path_factory.mktemp("ml") / "dynamics.npy"
    np.save(path, probs)
    m = dc.DataMap.from_dynamics(path, y, [f"doc {i}" for i in range(n)], label_names=list("abcde"))
    return m, probs, y


def test_multilabel_map_draws_one_label(multilabel):
    m, _, _ = multilabel
    with pytest.raises(dc.DatacartoError, match="label"):
        plots.plot_map(m)
    ax = plots.plot_map(m, label="c").axes[0]
    expected = m.frame.filter(pl.col("label") == 2).select("variability", "confidence").to_numpy()
    np.testing.assert_allclose(sorted_rows(scatter_points(ax)), sorted_rows(expected), atol=1e-5)
    assert "c" in ax.get_title()


def test_label_grid_one_panel_per_label(multilabel):
    m, _, _ = multilabel
    fig = plots.plot_label_grid(m, ncols=2)
    panels = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title().split(" ")[0] for a in panels] == list("abcde")
    for j, a in enumerate(panels):
        assert len(scatter_points(a)) == m.frame.filter(pl.col("label") == j).height
    assert len(fig.axes) == 6  # 3 rows x 2 columns, the spare one hidden
    some = plots.plot_label_grid(m, labels=["e", 0], max_scatter=10)
    shown = [a for a in some.axes if a.get_visible() and a.get_title()]
    assert [a.get_title().split(" ")[0] for a in shown] == ["e", "a"]
    assert all(any(isinstance(c, QuadMesh) for c in a.collections) for a in shown)
    assert any(a.get_ylabel() == "examples per cell (log scale)" for a in some.axes)  # one shared colour bar


def test_trajectories_follow_the_dynamics_and_mark_right_and_wrong(dm):
    probs = np.asarray(dm.dynamics)
    ids = [0, 5, 17]
    fig = plots.plot_trajectories(dm, ids)
    ax = fig.axes[0]
    p = gold_probabilities(probs[:, ids], dm.labels[ids], "multiclass")  # [E, k]
    others = probs[:, ids].astype(np.float64).copy()
    others[:, :, 0] = -np.inf
    right = p > others.max(axis=2)
    lines = [line for line in ax.get_lines() if len(line.get_xdata())]
    trajectories = [line for line in lines if line.get_linestyle() == "-"]
    assert len(trajectories) == len(ids)
    for j, line in enumerate(trajectories):
        np.testing.assert_allclose(line.get_ydata(), p[:, j], atol=1e-6)
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, probs.shape[0] + 1))
    circles = sum(len(line.get_xdata()) for line in lines if line.get_marker() == "o")
    crosses = sum(len(line.get_xdata()) for line in lines if line.get_marker() == "x")
    assert (circles, crosses) == (int(right.sum()), int((~right).sum()))
    legend = " | ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "#5 (gold a): sentence 5 with words" in legend


def test_ties_are_wrong_under_argmax():
    probs = np.array([[[0.5, 0.5, 0.0]], [[0.6, 0.3, 0.1]]], dtype=np.float32)
    m = dc.DataMap.from_dynamics(probs, [0])
    ax = plots.plot_trajectories(m, [0]).axes[0]
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x" and len(line.get_xdata())]
    assert [list(line.get_xdata()) for line in crosses] == [[1]]


def test_trajectories_from_a_file_with_a_label_and_a_burn_in(multilabel, tmp_path):
    m, probs, y = multilabel
    ids = [3, 9]
    ax = plots.plot_trajectories(m, pl.DataFrame({"example": [3, 9, 3]}), label="b").axes[0]
    trajectories = [line for line in ax.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata())]
    expected = np.where(y[ids, 1][None] == 1, probs[:, ids, 1], 1 - probs[:, ids, 1])
    for j, line in enumerate(trajectories):
        np.testing.assert_allclose(line.get_ydata(), expected[:, j], atol=1e-6)
    assert len(trajectories) == 2  # the repeated id is drawn once
    assert "of b" in ax.get_ylabel()
    burned = dc.DataMap.from_dynamics(m.dynamics, y, epochs=2)
    shaded = plots.plot_trajectories(burned, [0], label=0).axes[0]
    assert len(shaded.patches) == 2  # epochs 1 and 2 lie outside the window


def test_trajectories_need_dynamics_and_valid_ids(dm):
    without = dc.DataMap(dc.compute(np.asarray(dm.dynamics), dm.labels))
    with pytest.raises(dc.DatacartoError, match="dynamics"):
        plots.plot_trajectories(without, [0])
    with pytest.raises(dc.DatacartoError, match="examples"):
        plots.plot_trajectories(dm, [dm.frame.height])
    with pytest.raises(dc.DatacartoError, match="examples"):
        plots.plot_trajectories(dm, [])


def test_trajectories_draw_into_a_given_axes(dm):
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.plot_trajectories(dm, [1], ax=ax) is fig
    assert len(ax.get_lines()) > 0


def test_figures_save_as_svg_and_pdf(dm):
    for fig, fmt, magic in ((plots.plot_map(dm), "svg", b"<?xml"), (plots.plot_trajectories(dm, [0, 1]), "pdf", b"%PDF")):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt)
        assert buffer.getvalue().startswith(magic)


def test_no_pyplot_state(dm):
    # plots must work on a headless server and leave no pyplot figures behind
    if "matplotlib.pyplot" in sys.modules:  # another test imported it: no figure may appear
        import matplotlib.pyplot as plt

        before = plt.get_fignums()
        plots.plot_map(dm), plots.plot_label_grid(dm), plots.plot_trajectories(dm, [0])
        assert plt.get_fignums() == before
    else:  # plotting must not even import it
        plots.plot_map(dm), plots.plot_label_grid(dm), plots.plot_trajectories(dm, [0])
        assert "matplotlib.pyplot" not in sys.modules


def test_datamap_methods_call_the_plots(dm):
    assert dm.plot(color="region").axes[0].get_legend() is not None
    assert dm.plot_trajectories([2]).axes[0].get_xlabel() == "epoch"


def test_region_colours_keep_rows_outside_the_three_regions(dm):
    quantiles = dm.regions("quantiles")
    ax = plots.plot_map(quantiles, color="region").axes[0]
    assert len(scatter_points(ax)) == quantiles.frame.height
    names = [t.get_text().split(" ")[0] for t in ax.get_legend().get_texts()]
    assert names[:3] == ["easy", "ambiguous", "hard"] and "unassigned" in names


def test_binary_one_column_map_read_back_from_parquet(tmp_path):
    rng = np.random.default_rng(5)
    probs = rng.uniform(size=(5, 200, 1)).astype(np.float32)
    gold = rng.integers(0, 2, 200)
    m = dc.DataMap.from_dynamics(probs, gold, label_names=["neg", "pos"])
    grid = plots.plot_label_grid(m)
    titles = [a.get_title() for a in grid.axes if a.get_title()]
    assert titles == [f"neg ({int((gold == 0).sum())})", f"pos ({int((gold == 1).sum())})"]
    back = dc.DataMap.read(m.write_parquet(tmp_path / "m.parquet"))
    ax = plots.plot_map(back).axes[0]
    assert len(scatter_points(ax)) == 200
    # threshold rule: right exactly when the gold probability reaches 0.5
    traj = plots.plot_trajectories(m, [0]).axes[0]
    p0 = probs[:, 0, 0] if gold[0] == 1 else 1 - probs[:, 0, 0]
    circles = [line for line in traj.get_lines() if line.get_marker() == "o" and len(line.get_xdata())]
    np.testing.assert_array_equal(circles[0].get_xdata(), np.flatnonzero(p0 >= 0.5) + 1)
