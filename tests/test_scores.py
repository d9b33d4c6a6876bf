"""Suspicion scores (the ``suspicion`` column, ``suspects(score=...)``) and ``label_issues``
(confident learning on the map's mean class probabilities) against plain numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import datacarto as dc
from datacarto import _confident
from datacarto._scores import DEFAULT_SCORE, SCORES, percentile_ranks

N, E, L = 240, 6, 4


def _probs(rng, labels, n_epochs=E, n_labels=L, pull=(-3.0, 6.0)):
    n = labels.size
    logits = rng.normal(0.0, 1.5, size=(n_epochs, n, n_labels))
    logits[:, np.arange(n), labels] += rng.uniform(*pull, size=n)
    z = np.exp(logits - logits.max(axis=2, keepdims=True))
    return (z / z.sum(axis=2, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def multiclass():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, L, N)
    probs = _probs(rng, labels)
    return probs, labels, dc.compute(probs, labels)


def _expected(name, stats):
    c, m, e = stats.confidence, stats.margin, stats.el2n
    if name == "confidence":
        return 1.0 - c
    if name == "margin":
        return -m
    if name == "el2n":
        return e
    if name == "relative_confidence":
        t = np.array([c[stats.labels == j].mean() for j in range(stats.n_labels)])
        return 1.0 - c / t[stats.labels]
    if name == "rank_average":
        from scipy.stats import rankdata

        n = c.size
        return (rankdata(1.0 - c) + rankdata(-m) + rankdata(e)) / (3.0 * n)
    raise AssertionError(name)


def test_every_score_is_tested():
    assert set(SCORES) == {"confidence", "mixture", "margin", "el2n", "relative_confidence", "rank_average"}
    assert DEFAULT_SCORE == next(iter(SCORES)) == "confidence"
    # "mixture" needs a cross-validated map's column (tested below and in test_cv.py)
    assert dc.noise.SCORE_NAMES == tuple(name for name in SCORES if name != "mixture")


@pytest.mark.parametrize("name", list(dc.noise.SCORE_NAMES))
def test_suspects_rank_by_each_score(multiclass, name):
    _, labels, stats = multiclass
    dm = dc.DataMap(stats)
    expected = _expected(name, stats)
    rows = dm.suspects(None, score=name)
    order = np.lexsort((np.arange(N), stats.margin, -expected))
    assert rows["example"].to_list() == order.tolist()
    np.testing.assert_allclose(rows["suspicion"].to_numpy(), expected[order], rtol=1e-12, atol=1e-15)
    assert rows["rank"].to_list() == list(range(1, N + 1))
    # the map's own column always holds the default score
    np.testing.assert_allclose(dm.frame["suspicion"].to_numpy(), 1.0 - stats.confidence)


def test_suspects_default_is_the_suspicion_column(multiclass):
    _, _, stats = multiclass
    dm = dc.DataMap(stats)
    assert dm.suspects(15)["example"].to_list() == dm.suspects(15, score="confidence")["example"].to_list()
    assert dm.frame.columns.index("suspicion") == dm.frame.columns.index("el2n") + 1
    assert dm.regions().frame.columns.index("region") == dm.frame.columns.index("suspicion") + 1


def test_unknown_score_is_refused(multiclass):
    dm = dc.DataMap(multiclass[2])
    with pytest.raises(dc.DatacartoError, match="score: expected one of confidence, mixture, margin, el2n, relative_confidence, rank_average, found 'aum'"):
        dm.suspects(score="aum")


def test_suspicion_survives_files_and_is_rebuilt_for_old_ones(multiclass, tmp_path):
    dm = dc.DataMap(multiclass[2]).regions()
    for name in ("m.parquet", "m.csv"):
        again = dc.DataMap.read(dm.write(tmp_path / name))
        assert again.frame.equals(dm.frame)
    # a file written before the column existed (or by another tool) gets it on reading
    old = tmp_path / "old.parquet"
    dm.frame.drop("suspicion").write_parquet(old)
    back = dc.DataMap.read(old)
    np.testing.assert_allclose(back.frame["suspicion"].to_numpy(), dm.frame["suspicion"].to_numpy())
    assert back.frame.columns == dm.frame.columns


def test_multilabel_scores_per_label():
    rng = np.random.default_rng(3)
    probs = rng.random((4, 50, 3)).astype(np.float32)
    targets = (rng.random((50, 3)) < 0.3).astype(np.uint8)
    stats = dc.compute(probs, targets)
    dm = dc.DataMap(stats)
    rows = dm.suspects(None, score="relative_confidence", label=1)
    c, gold = stats.confidence[:, 1], targets[:, 1]
    t = np.array([c[gold == v].mean() for v in (0, 1)])
    expected = 1.0 - c / t[gold]
    order = np.lexsort((np.arange(50), stats.margin[:, 1], -expected))
    assert rows["example"].to_list() == order.tolist()
    assert set(rows["label"].to_list()) == {1}


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 40), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0, 3.25])))
def test_percentile_ranks_match_scipy(values):
    from scipy.stats import rankdata

    np.testing.assert_allclose(percentile_ranks(values), rankdata(values) / values.size)


# ---------------------------------------------------------------------- label_issues


def test_confident_learning_matches_a_direct_numpy_reading():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 200)
    means = rng.dirichlet(np.ones(3), size=200)
    means[np.arange(200), labels] += 0.5
    means /= means.sum(axis=1, keepdims=True)
    issues = _confident.confident_learning(means, labels)
    t = np.array([means[labels == j, j].mean() for j in range(3)])
    np.testing.assert_allclose(issues.thresholds, t)
    joint = np.zeros((3, 3), dtype=int)
    for i in range(200):
        above = [j for j in range(3) if means[i, j] >= t[j]]
        if above:
            best = max(above, key=lambda j: means[i, j])
            joint[labels[i], best] += 1
            assert issues.suggested[i] == best
        else:
            assert issues.suggested[i] == -1
    np.testing.assert_array_equal(issues.confident_joint, joint)
    calibrated = joint / joint.sum(axis=1, keepdims=True) * np.bincount(labels)[:, None]
    np.testing.assert_allclose(issues.calibrated_joint, calibrated)
    assert issues.n_issues == round(calibrated.sum() - np.trace(calibrated))
    # flags: each off-diagonal cell flags that many examples; rounding may differ by a few
    assert abs(issues.n_flagged - issues.n_issues) <= 3
    # every flagged example's gold class is beaten by some class on average
    flagged = np.flatnonzero(issues.flags)
    assert (means[flagged].max(axis=1) > means[flagged, labels[flagged]]).mean() > 0.9


def test_label_issues_estimate_within_25_percent_of_the_flips(capsys):
    """digits, 10% uniform flips, a regularised linear model: the estimate lands within 25%
    of the true number of flips; the flags' precision and recall are reported."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.linear_model import SGDClassifier
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    X = StandardScaler().fit_transform(digits.data)
    for kind in ("uniform", "pairs"):
        flips = dc.noise.flip_labels(digits.target, 0.1, kind=kind, seed=1)
        stats = dc.sklearn.record(SGDClassifier(loss="log_loss", alpha=1e-2, random_state=0), X, flips.labels, epochs=10, random_state=0, class_means=True)
        issues = dc.DataMap(stats).label_issues()
        n_flipped = flips.flipped.size
        found = int((issues.flags & flips.mask).sum())
        precision, recall = found / issues.n_flagged, found / n_flipped
        with capsys.disabled():
            print(f"\nlabel_issues on digits, {kind} flips: estimated {issues.n_issues} vs {n_flipped} flipped, flagged {issues.n_flagged}, precision {precision:.3f}, recall {recall:.3f}")
        assert abs(issues.n_issues - n_flipped) <= 0.25 * n_flipped
        assert precision > 0.6 and recall > 0.7


def test_label_issues_reads_the_dynamics_over_the_window(tmp_path, multiclass):
    probs, labels, _ = multiclass
    path = tmp_path / "d.npy"
    np.save(path, probs)
    dm = dc.DataMap.from_dynamics(path, labels, epochs=(1, 5))
    issues = dm.label_issues()
    direct = _confident.confident_learning(probs[1:5].astype(np.float64).mean(axis=0), labels)
    np.testing.assert_array_equal(issues.flags, direct.flags)
    assert issues.n_issues == direct.n_issues
    # the same from a map read back from disk (no Statistics kept), and from given class means
    again = dc.DataMap.read(dm.write(tmp_path / "m.parquet"))
    np.testing.assert_array_equal(again.label_issues().flags, direct.flags)
    np.testing.assert_array_equal(dc.DataMap(dm.statistics, dynamics=None).with_dynamics(None).label_issues(class_means=probs[1:5].mean(axis=0)).flags, direct.flags)


def test_label_issues_errors(multiclass):
    _, _, stats = multiclass
    dm = dc.DataMap(stats)  # from an array: no dynamics file known
    with pytest.raises(dc.DatacartoError, match="dynamics: label_issues needs each class's mean probability"):
        dm.label_issues()
    with pytest.raises(dc.DatacartoError, match=r"class_means: expected shape \[240, 4\]"):
        dm.label_issues(class_means=np.zeros((240, 3)))


def test_label_issues_binary_and_multilabel(tmp_path):
    rng = np.random.default_rng(9)
    gold = rng.integers(0, 2, 120)
    p1 = np.clip(np.where(gold == 1, 0.8, 0.2)[None, :] + rng.normal(0, 0.05, (5, 120)), 0, 1)
    wrong = np.arange(0, 120, 12)
    p1[:, wrong] = 1.0 - p1[:, wrong]
    probs = p1[:, :, None].astype(np.float32)
    issues = dc.DataMap(dc.compute(probs, gold, class_means=True)).label_issues()
    assert set(np.flatnonzero(issues.flags)) == set(wrong.tolist())
    assert issues.n_issues == wrong.size
    targets = np.stack([gold, 1 - gold], axis=1).astype(np.uint8)
    multi = np.concatenate([probs, 1.0 - probs], axis=2)
    ml = dc.DataMap(dc.compute(multi, targets, class_means=True)).label_issues()
    assert ml.flags.shape == (120, 2) and ml.thresholds.shape == (2, 2)
    assert set(np.flatnonzero(ml.flags[:, 0])) == set(wrong.tolist()) == set(np.flatnonzero(ml.flags[:, 1]))
    assert ml.n_issues == 2 * wrong.size


# ---------------------------------------------------------------------- class-aware regions


def test_class_quantile_regions_select_within_each_class():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(3), [60, 40, 20])
    # class 2's probabilities run low: under global rules it is all "hard"
    probs = _probs(rng, labels, pull=(-1.0, 4.0))
    probs[:, labels == 2] *= 0.5
    probs[:, labels == 2, 0] += 0.5
    stats = dc.compute(probs, labels)
    dm = dc.DataMap(stats).regions("class-quantiles", fraction=0.25)
    region = np.array(dm.frame["region"].to_list(), dtype=object)
    for c, size in ((0, 60), (1, 40), (2, 20)):
        rows = np.flatnonzero(labels == c)
        k = int(np.ceil(0.25 * size))
        conf, var = stats.confidence[rows], stats.variability[rows]
        expected = np.full(size, None, dtype=object)
        expected[np.argsort(conf, kind="stable")[:k]] = "hard"
        expected[np.argsort(-conf, kind="stable")[:k]] = "easy"
        expected[np.argsort(-var, kind="stable")[:k]] = "ambiguous"
        assert region[rows].tolist() == expected.tolist()
    assert dm.region_rule == {"rule": "class-quantiles", "fraction": {"easy": 0.25, "ambiguous": 0.25, "hard": 0.25}}
    assert (region[labels == 2] == "easy").sum() == 5  # every class has easy examples
    with pytest.raises(dc.DatacartoError, match="easy: does not apply to rule 'class-quantiles'"):
        dc.DataMap(stats).regions("class-quantiles", easy=0.5)


# ---------------------------------------------------------------------- the core's class means


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([np.float16, np.float32, np.float64]),
    st.sampled_from(["multiclass", "binary", "multilabel"]),
    st.integers(1, 5),
    st.integers(1, 30),
    st.integers(2, 5),
    st.integers(0, 2**32 - 1),
    st.integers(0, 4),
    st.integers(1, 3),
)
def test_core_class_means_match_numpy(dtype, task, n_epochs, n, n_labels, seed, start, threads):
    rng = np.random.default_rng(seed)
    columns = 1 if task == "binary" else n_labels
    probs = rng.random((n_epochs, n, columns)).astype(dtype)
    if task == "multiclass":
        probs = (probs / probs.sum(axis=2, keepdims=True)).astype(dtype)
    labels = (rng.random((n, columns)) < 0.5).astype(np.uint8) if task == "multilabel" else rng.integers(0, 2 if task == "binary" else columns, n)
    window = (min(start, n_epochs - 1), n_epochs)
    stats = dc.compute(probs, labels, task=task, epochs=window, threads=threads, class_means=True)
    expected = probs[window[0]:window[1]].astype(np.float64).mean(axis=0)
    assert stats.class_means.shape == (n, columns) and stats.class_means.dtype == np.float64
    np.testing.assert_allclose(stats.class_means, expected, rtol=1e-12, atol=1e-15)
    assert not stats.class_means.flags.writeable
    # the same statistics with or without them, and from a file
    assert dc.compute(probs, labels, task=task, epochs=window) == stats
    assert dc.compute(probs, labels, task=task, epochs=window).class_means is None
    from datacarto import reference

    np.testing.assert_allclose(reference.compute(probs, labels, task=task, epochs=window, class_means=True).class_means, expected, rtol=1e-12)


# ---------------------------------------------------------------- the cross-validated map's mixture


def _gold_probs(rng, flipped, n_epochs, informative):
    """[E, N] out-of-fold probabilities of the recorded label: a flipped example's is lower on
    the epochs in ``informative``; the other epochs are noise (an unconverged model)."""
    n = flipped.size
    gold = rng.uniform(0.05, 0.95, size=(n_epochs, n))
    for e in informative:
        gold[e] = np.where(flipped, rng.beta(2, 5, n), rng.beta(5, 2, n))
    return gold


def test_checkpoint_weights_maximise_the_held_out_likelihood():
    from datacarto._mixture import checkpoint_weights

    rng = np.random.default_rng(3)
    gold = rng.uniform(0.01, 1.0, size=(5, 400)) ** np.array([[3.0], [1.0], [0.5], [0.7], [2.0]])
    w = checkpoint_weights(gold)
    assert w.shape == (5,) and np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    # the optimality (KKT) conditions of max mean log(w @ p) on the simplex: the gradient
    # mean_i p[e, i] / mix_i is 1 where w_e > 0 and at most 1 where w_e = 0
    gradient = (gold / (w @ gold)).mean(axis=1)
    assert np.all(gradient <= 1.0 + 1e-4)
    np.testing.assert_allclose(gradient[w > 1e-3], 1.0, atol=1e-4)
    # and no random point of the simplex does better
    best = np.log(w @ gold).mean()
    for other in rng.dirichlet(np.ones(5), size=200):
        assert np.log(other @ gold).mean() <= best + 1e-9
    # identical epochs: equal weights; a zero probability does not make an epoch -inf
    np.testing.assert_allclose(checkpoint_weights(np.tile(gold[1], (4, 1))), 0.25)
    zeroed = gold[:2].copy()
    zeroed[0, 0] = 0.0
    assert np.isfinite(checkpoint_weights(zeroed)).all()


def test_checkpoint_weights_refuse_bad_input():
    from datacarto._mixture import checkpoint_weights

    with pytest.raises(dc.DatacartoError, match=r"gold_probs: expected \[epochs, examples\]"):
        checkpoint_weights(np.ones(3))
    with pytest.raises(dc.DatacartoError, match="gold_probs: found NaN"):
        checkpoint_weights(np.array([[0.5, np.nan]]))


def test_mixture_ranks_flips_above_the_plain_mean_when_early_epochs_are_noise():
    """The GoEmotions case: a model far from converged in its first epochs. The mixture puts
    (almost) no weight on them and finds the flips better than the equal-weight mean; when
    every epoch is informative it keeps them all and is as good as the mean."""
    from datacarto._mixture import checkpoint_weights
    from datacarto.noise import auprc

    rng = np.random.default_rng(5)
    flipped = rng.random(2000) < 0.1
    gold = _gold_probs(rng, flipped, 8, informative=range(4, 8))
    w = checkpoint_weights(gold)
    assert w[:4].sum() < 0.05
    mixture, mean = auprc(1.0 - w @ gold, flipped), auprc(1.0 - gold.mean(axis=0), flipped)
    assert mixture > mean + 0.1
    every = _gold_probs(rng, flipped, 8, informative=range(8))
    w = checkpoint_weights(every)
    assert w.max() < 0.5  # spread over the epochs, not one picked
    assert auprc(1.0 - w @ every, flipped) >= auprc(1.0 - every.mean(axis=0), flipped) - 0.01


def test_mixture_needs_a_cross_validated_map(multiclass):
    _, _, stats = multiclass
    dm = dc.DataMap(stats)
    assert dm.default_score == "confidence" and "mixture_confidence" not in dm.frame.columns
    with pytest.raises(dc.DatacartoError, match="needs the column.*mixture_confidence"):
        dm.suspects(5, score="mixture")
