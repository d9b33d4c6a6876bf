"""Tests for datacarto.plots: the data map, the per-label grid and trajectories (matplotlib, Agg)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.figure import Figure
from matplotlib.legend import Legend

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
    side = {a.get_xlabel() for a in fig.axes[1:]}
    assert {"confidence", "variability", "correctness"} <= side
    # the correctness bars count every example once
    bars = [a for a in fig.axes if a.get_xlabel() == "correctness"][0]
    assert sum(p.get_height() for p in bars.patches) == dm.frame.height
    assert not plots.plot_map(dm, annotate_regions=False).axes[0].texts


def region_labels(ax):
    """{region: (x, y)} of the region labels drawn on a map."""
    return {t.get_gid().split(":")[1]: tuple(t.xy) for t in ax.texts if (t.get_gid() or "").startswith(plots.REGION_LABEL_GID)}


def boundaries(ax):
    """{region: (x, y)} of the region rule's boundary lines drawn on a map."""
    return {line.get_gid().split(":")[1]: (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
            for line in ax.get_lines() if (line.get_gid() or "").startswith(plots.BOUNDARY_GID)}


def assert_labels_sit_on_their_clouds(ax, view):
    labels = region_labels(ax)
    present = set(view["region"].drop_nulls().unique().to_list())
    assert set(labels) == present
    for region, (x, y) in labels.items():
        rows = view.filter(pl.col("region") == region)
        v, c = rows["variability"].to_numpy(), rows["confidence"].to_numpy()
        # on one of the region's own points, inside the bulk of its cloud
        assert np.any((v == x) & (c == y)), region
        assert np.quantile(v, 0.02) <= x <= np.quantile(v, 0.98) and np.quantile(c, 0.02) <= y <= np.quantile(c, 0.98), region


def test_region_labels_sit_on_each_regions_points(dm):
    for rule in ("thresholds", "quantiles", "data-iq"):
        m = dm.regions(rule)
        assert_labels_sit_on_their_clouds(plots.plot_map(m).axes[0], m.frame)
        assert_labels_sit_on_their_clouds(plots.plot_map(m, density=True).axes[0], m.frame)
    # no region column: no labels and no boundaries, rather than words in fixed corners
    bare = dc.DataMap(dm.statistics)
    ax = plots.plot_map(bare).axes[0]
    assert region_labels(ax) == {} and boundaries(ax) == {}


def test_region_label_of_a_two_lobed_region_sits_on_a_lobe():
    # ambiguous = two clusters far apart (by the thresholds rule: confidence 0.4-0.6); its
    # median lies in the empty gap between them, where a label would point at nothing
    confidence = np.r_[np.full(50, 0.45), np.full(50, 0.55), np.full(100, 0.9), np.full(100, 0.1)]
    variability = np.r_[np.full(50, 0.02), np.full(50, 0.3), np.full(100, 0.02), np.full(100, 0.02)]
    m = dc.DataMap.from_dynamics(*controlled_dynamics(confidence, variability)).regions()
    (x, y) = region_labels(plots.plot_map(m).axes[0])["ambiguous"]
    assert (round(x, 4), round(y, 4)) in {(0.02, 0.45), (0.3, 0.55)}


def test_threshold_rule_boundaries_are_drawn_at_its_thresholds(dm):
    for options in ({}, {"easy": 0.7, "hard": 0.3}):
        m = dm.regions("thresholds", **options)
        easy_t, hard_t = options.get("easy", 0.6), options.get("hard", 0.4)
        for density in (False, True):
            ax = plots.plot_map(m, density=density).axes[0]
            lines = boundaries(ax)
            assert set(lines) == {"easy", "hard"}
            np.testing.assert_array_equal(lines["easy"][1], [easy_t, easy_t])
            np.testing.assert_array_equal(lines["hard"][1], [hard_t, hard_t])
            assert lines["easy"][0][0] == 0 and lines["easy"][0][-1] >= ax.get_xlim()[1]  # across the whole map
            # every point sits on its region's side
            frame = m.frame
            assert (frame.filter(pl.col("region") == "easy")["confidence"] > easy_t).all()
            assert (frame.filter(pl.col("region") == "hard")["confidence"] < hard_t).all()
            amb = frame.filter(pl.col("region") == "ambiguous")["confidence"]
            assert ((amb >= hard_t) & (amb <= easy_t)).all()
            # the legend states the rule
            rule_legend = [a for a in ax.artists if isinstance(a, Legend) and a.get_gid() == plots.RULE_LEGEND_GID]
            assert len(rule_legend) == 1
            entries = [t.get_text() for t in rule_legend[0].get_texts()]
            assert entries == [f"easy: confidence > {easy_t:g}", f"hard: confidence < {hard_t:g}"]
            assert "thresholds" in rule_legend[0].get_title().get_text()


def classify_by_drawn_lines(lines, v, c, rule):
    """The region each point gets from the lines the map drew (None: unassigned)."""
    if rule == "quantiles":
        v_cut = lines["ambiguous"][0][0]
        c_easy, c_hard = lines["easy"][1][0], lines["hard"][1][0]
        # each selection holds its cut-off value (the k-th largest), ambiguous wins overlaps
        return np.where(v >= v_cut, "ambiguous", np.where(c >= c_easy, "easy", np.where(c <= c_hard, "hard", None)))
    # data-iq: from the right edge along the confidence cut, then along the aleatoric curve
    ex, ey = lines["easy"]
    hx, hy = lines["hard"]
    easy_t, hard_t = ey[0], hy[0]
    easy_curve = np.interp(c, ey[1:], ex[1:])                # confidence rises along the easy curve
    hard_curve = np.interp(c, hy[1:][::-1], hx[1:][::-1])    # and falls along the hard one
    return np.where((c >= easy_t) & (v >= easy_curve), "easy", np.where((c <= hard_t) & (v >= hard_curve), "hard", "ambiguous"))


def check_data_driven_boundaries(m, label=None):
    ax = plots.plot_map(m, label=label).axes[0]
    rule = m.region_rule["rule"]
    lines = boundaries(ax)
    view = m.frame if label is None or m.task != "multilabel" else m.frame.filter(pl.col("label") == m.label_names.index(label))
    if label is not None and m.task != "multilabel":
        view = view.filter(pl.col("gold") == label)
    v, c = view["variability"].to_numpy(), view["confidence"].to_numpy()
    drawn = classify_by_drawn_lines(lines, v, c, rule)
    actual = np.array(view["region"].to_list(), dtype=object)
    wrong = np.flatnonzero(drawn != actual)
    # only points on a line may disagree: ties at a cut-off value beyond the selection's count
    # (quantiles), float rounding against the curve (data-iq)
    if rule == "quantiles":
        on_line = np.isin(v[wrong], lines["ambiguous"][0]) | np.isin(c[wrong], np.r_[lines["easy"][1], lines["hard"][1]])
    else:
        curves = [np.interp(c[wrong], lines["easy"][1][1:], lines["easy"][0][1:]), np.interp(c[wrong], lines["hard"][1][1:][::-1], lines["hard"][0][1:][::-1])]
        on_line = (np.abs(v[wrong] - curves[0]) < 1e-4) | (np.abs(v[wrong] - curves[1]) < 1e-4)
    assert on_line.all(), (rule, wrong[~on_line], v[wrong], c[wrong])
    assert len(wrong) <= 2, (rule, len(wrong))
    return lines


def test_quantile_and_data_iq_boundaries_separate_the_regions(dm):
    for rule in ("quantiles", "data-iq"):
        m = dm.regions(rule)
        lines = check_data_driven_boundaries(m)
        assert set(lines) == ({"easy", "ambiguous", "hard"} if rule == "quantiles" else {"easy", "hard"})
    # a view of one gold class keeps the whole map's cut-offs (the rule saw every row)
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(3) * 0.7, size=(6, 500)).astype(np.float32)
    m = dc.DataMap.from_dynamics(probs, rng.integers(0, 3, 500)).regions("quantiles")
    whole = boundaries(plots.plot_map(m).axes[0])
    one_class = boundaries(plots.plot_map(m, label=1).axes[0])
    for region in whole:
        np.testing.assert_array_equal(whole[region][1], one_class[region][1])


def test_data_iq_boundaries_with_ddof_one(dm):
    m = dc.DataMap.from_dynamics(np.asarray(dm.dynamics), dm.labels, ddof=1).regions("data-iq")
    check_data_driven_boundaries(m)


def test_multilabel_boundaries_use_each_labels_own_cut_offs(multilabel):
    m, _, _ = multilabel
    for rule in ("quantiles", "data-iq"):
        r = m.regions(rule)
        drawn = [check_data_driven_boundaries(r, label=name) for name in "ac"]
        assert not np.array_equal(np.r_[drawn[0]["easy"]], np.r_[drawn[1]["easy"]])  # per label, not shared
        grid = plots.plot_label_grid(r)
        panels = [a for a in grid.axes if a.get_visible()]
        for j, a in enumerate(panels):
            assert set(boundaries(a)) == set(drawn[0]), rule


def test_correctness_legend_names_the_range_of_each_grouped_level():
    rng = np.random.default_rng(7)
    n_epochs, n = 10, 3000
    p = rng.uniform(0.2, 0.8, size=n)
    probs = (rng.uniform(size=(n_epochs, n)) < p).astype(np.float32) * 0.5 + 0.25  # right or wrong by chance
    two = np.stack([probs, 1 - probs], axis=2)
    m = dc.DataMap.from_dynamics(two, np.zeros(n, dtype=np.int64))
    legend = plots.plot_map(m).axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    names = [t.split(" (")[0] for t in texts]
    assert names == ["0", "0.1–0.2", "0.3–0.4", "0.5–0.6", "0.7–0.8", "0.9", "1"]
    correctness = m.frame["correctness"].to_numpy()
    for text in texts:
        name, count = re.fullmatch(r"(.*) \((.*)\)", text).groups()
        lo, hi = (float(x) for x in (name.split("–") * 2)[:2])
        # the count is exactly the examples whose correctness the range covers
        assert int(count.replace(",", "")) == int(((correctness >= lo - 1e-9) & (correctness <= hi + 1e-9)).sum()), text


def test_correctness_levels():
    levels = plots.correctness_levels(np.array([0, 1 / 3, 2 / 3, 1, 1]), n_epochs=3)
    assert levels.codes.tolist() == [0, 1, 2, 3, 3] and levels.names == ["0", "0.333", "0.667", "1"]
    # many epochs: 0 and 1 alone, the values between grouped by (0, 0.2], (0.2, 0.4], ...
    levels = plots.correctness_levels(np.arange(21) / 20, n_epochs=20)
    assert levels.names == ["0", "0.05–0.2", "0.25–0.4", "0.45–0.6", "0.65–0.8", "0.85–0.95", "1"]
    assert levels.codes[0] == 0 and levels.codes[-1] == 6 and levels.codes[4] == 1 and levels.codes[5] == 2  # 0.2 | 0.25
    # 3 / 15 is exactly 0.2: it closes the first group, whatever the float rounding
    assert plots.correctness_levels(np.array([3 / 15, 4 / 15]), n_epochs=15).codes.tolist() == [1, 2]
    # no known window: the values present
    assert plots.correctness_levels(np.array([0.5, 0.25, 0.5]), n_epochs=None).names == ["0.25", "0.5"]


def test_density_rendering_above_max_scatter(dm):
    fig = plots.plot_map(dm, max_scatter=100)
    ax = fig.axes[0]
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1 and len(scatter_points(ax)) == 0
    assert int(meshes[0].get_array().sum()) == dm.frame.height  # every example lands in a cell
    assert "density" in ax.get_title()
    forced = plots.plot_map(dm, density=False, max_scatter=100).axes[0]
    assert len(scatter_points(forced)) == dm.frame.height


def test_density_replaces_points_from_the_default_cut_off_on():
    # Drawing cost must not grow with the example count above max_scatter (100,000 by
    # default): past it the map holds one fixed-size image and no per-point artist.
    rng = np.random.default_rng(0)
    for n, dense in ((100_000, False), (100_001, True)):
        p = np.clip(rng.beta(4, 1.5, size=(4, n)) + 0.05 * rng.standard_normal((4, n)), 0, 1)
        probs = np.stack([p, 1 - p], axis=2).astype(np.float32)
        big = dc.DataMap.from_dynamics(probs, np.zeros(n, dtype=np.int64))
        fig = plots.plot_map(big)
        ax = fig.axes[0]
        meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
        if dense:
            assert len(scatter_points(ax)) == 0 and len(meshes) == 1
            assert meshes[0].get_array().shape == (200, 200)  # independent of n
            assert int(meshes[0].get_array().sum()) == n
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=60)
            assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert len(scatter_points(ax)) == n and not meshes


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
        np.testing.assert_array_equal(line.get_xdata(), np.arange(probs.shape[0]))  # 0-based, as first_learned
    assert ax.get_xlabel() == f"epoch (0-based in the window: file epochs 0..{probs.shape[0] - 1})"
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
    assert [list(line.get_xdata()) for line in crosses] == [[0]]


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
    assert len(shaded.patches) == 2  # the file's epochs 0 and 1 lie outside the window


def final_streak_start(x, right):
    """The first epoch of the final all-right run, or -1 when wrong at the last epoch."""
    order = np.argsort(x)
    x, right = np.asarray(x)[order], np.asarray(right)[order]
    if not right[-1]:
        return -1
    wrong = np.flatnonzero(~right)
    return int(x[wrong[-1] + 1]) if wrong.size else int(x[0])


def test_trajectory_epochs_are_numbered_as_first_learned_counts_them(multilabel):
    m, probs, y = multilabel
    window = (2, 5)
    w = dc.DataMap.from_dynamics(m.dynamics, y, epochs=window)
    label = 1
    rows = w.frame.filter(pl.col("label") == label).sort("example")
    ids = list(range(12))
    ax = plots.plot_trajectories(w, ids, label=label).axes[0]
    assert ax.get_xlabel() == "epoch (0-based in the window: file epochs 2..4)"
    # per example one circles line and one crosses line (either may be empty), in example order
    markers = [line for line in ax.get_lines() if line.get_marker() in ("o", "x") and "at this epoch" not in line.get_label()]
    assert len(markers) == 2 * len(ids)
    trajectories = [line for line in ax.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata())]
    np.testing.assert_array_equal(trajectories[0].get_xdata(), np.arange(probs.shape[0]) - window[0])
    # per example: right/wrong epochs as drawn (circles / crosses), inside the window only
    for j, example in enumerate(ids):
        circles, crosses = markers[2 * j], markers[2 * j + 1]
        x = np.r_[circles.get_xdata(), crosses.get_xdata()]
        right = np.r_[np.ones(len(circles.get_xdata()), bool), np.zeros(len(crosses.get_xdata()), bool)]
        inside = (x >= 0) & (x < window[1] - window[0])
        assert final_streak_start(x[inside], right[inside]) == rows["first_learned"][example], example


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
    assert dm.plot_trajectories([2]).axes[0].get_xlabel().startswith("epoch (0-based in the window")


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
    np.testing.assert_array_equal(circles[0].get_xdata(), np.flatnonzero(p0 >= 0.5))


def test_matplotlib_loads_only_when_a_figure_is_drawn(tmp_path):
    code = (
        "import sys, numpy as np, datacarto as dc, datacarto.plots, datacarto.html\n"
        "assert 'matplotlib' not in sys.modules and 'plotly' not in sys.modules, sorted(m for m in sys.modules if m.startswith(('matplotlib', 'plotly')))\n"
        "dm = dc.DataMap.from_dynamics(np.full((2, 3, 2), 0.5, dtype=np.float32), [0, 1, 0])\n"
        "dm.plot()\n"
        "assert 'matplotlib' in sys.modules and 'plotly' not in sys.modules\n"
    )
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
