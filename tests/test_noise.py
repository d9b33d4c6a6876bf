"""The noise benchmark: seeded label flips, the ranking metrics against scikit-learn, and the
report on a real (small) recording."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import datacarto as dc
from datacarto.noise import auprc, auroc, evaluate, flip_labels, precision_at_k


def test_uniform_flips_change_exactly_the_chosen_labels():
    labels = np.repeat(np.array(["cat", "dog", "eel"]), 100)
    flips = flip_labels(labels, 0.2, seed=4)
    assert flips.flipped.size == 60 and np.all(np.diff(flips.flipped) > 0)
    changed = np.flatnonzero(flips.labels != labels)
    np.testing.assert_array_equal(changed, flips.flipped)
    assert set(flips.labels.tolist()) <= {"cat", "dog", "eel"} and flips.labels.dtype == labels.dtype
    np.testing.assert_array_equal(flips.clean, labels)
    assert flips.mask.sum() == 60 and flips.mask[flips.flipped].all()
    # seeded: the same flips again, others with another seed
    again = flip_labels(labels, 0.2, seed=4)
    np.testing.assert_array_equal(again.labels, flips.labels)
    assert not np.array_equal(flip_labels(labels, 0.2, seed=5).flipped, flips.flipped)


def test_uniform_flips_reach_every_other_class():
    labels = np.zeros(3000, dtype=np.int64)
    labels[1000:2000], labels[2000:] = 1, 2
    flips = flip_labels(labels, 0.5, seed=0)
    for c in range(3):
        targets = flips.labels[flips.flipped][labels[flips.flipped] == c]
        counts = np.bincount(targets, minlength=3)
        assert counts[c] == 0 and min(counts[(c + 1) % 3], counts[(c + 2) % 3]) > 0.4 * counts.sum()


def test_pair_flips_send_each_class_to_one_partner():
    labels = np.arange(600) % 6
    flips = flip_labels(labels, 0.3, kind="pairs", seed=2)
    partner = {}
    for i in flips.flipped:
        partner.setdefault(labels[i], set()).add(flips.labels[i])
    assert all(len(targets) == 1 for targets in partner.values())
    assert all(c not in targets for c, targets in partner.items())
    # a permutation: no two classes share a partner
    assert len({next(iter(t)) for t in partner.values()}) == len(partner)


def test_confusion_flips_follow_the_weights():
    labels = np.arange(900) % 3
    confusion = np.array([[5.0, 0.0, 1.0], [1.0, 5.0, 0.0], [0.0, 1.0, 5.0]])  # 0->2, 1->0, 2->1 only
    flips = flip_labels(labels, 0.3, kind="confusion", confusion=confusion, seed=0)
    np.testing.assert_array_equal(flips.labels[flips.flipped], np.array([2, 0, 1])[labels[flips.flipped]])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fraction": 1.0}, r"fraction: expected a fraction in \[0, 1\), found 1.0"),
        ({"fraction": 0.1, "kind": "random"}, "kind: expected one of uniform, pairs, confusion, found 'random'"),
        ({"fraction": 0.1, "kind": "confusion"}, "confusion: kind='confusion' needs an"),
        ({"fraction": 0.1, "kind": "confusion", "confusion": np.eye(2)}, r"confusion: expected non-negative finite weights of shape \[3, 3\]"),
        ({"fraction": 0.1, "kind": "confusion", "confusion": np.eye(3)}, "every row needs a positive weight off the diagonal"),
        ({"fraction": 0.1, "confusion": np.ones((3, 3))}, "confusion: only applies to kind='confusion'"),
        ({"fraction": 0.1, "classes": [0, 1]}, r"labels: found 2, which is not among classes \[0, 1\]"),
    ],
)
def test_flip_errors(kwargs, message):
    with pytest.raises(dc.DatacartoError, match=message):
        flip_labels(np.arange(30) % 3, **kwargs)


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(2, 60), elements=st.sampled_from([0.0, 0.1, 0.5, 0.7, 1.0])),
    st.integers(0, 2**32 - 1),
)
def test_metrics_match_scikit_learn(scores, seed):
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(seed)
    positives = rng.random(scores.size) < 0.3
    positives[0], positives[-1] = True, False  # both classes present
    assert auroc(scores, positives) == pytest.approx(roc_auc_score(positives, scores), abs=1e-12)
    assert auprc(scores, positives) == pytest.approx(average_precision_score(positives, scores), abs=1e-12)


def test_precision_at_k_and_degenerate_inputs():
    assert precision_at_k([0.9, 0.8, 0.7, 0.1], [True, False, True, False], 2) == 0.5
    assert precision_at_k([0.5, 0.5, 0.5], [False, False, True], 1) == 0.0  # ties: lower index first
    assert np.isnan(auroc([0.1, 0.2], [True, True]))
    assert np.isnan(auprc([0.1, 0.2], [False, False]))
    with pytest.raises(dc.DatacartoError, match="scores: expected one score per example"):
        auroc([0.1, 0.2, 0.3], [True, False])


def test_evaluate_a_map_reports_every_score_and_label_issues(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 3, 300)
    flips = flip_labels(clean, 0.1, seed=0)
    # a model that keeps predicting the clean class: flipped labels get a low probability
    logits = rng.normal(0, 1, (5, 300, 3))
    logits[:, np.arange(300), clean] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    path = tmp_path / "d.npy"
    np.save(path, probs.astype(np.float32))
    dm = dc.DataMap.from_dynamics(path, flips.labels)
    report = evaluate(dm, flips.flipped)
    assert list(report.scores) == list(dc.noise.SCORE_NAMES) and report.k == report.n_flipped == 30
    for name, values in report.scores.items():
        expected = dm.suspects(None, score=name)
        top = expected["example"].to_numpy()[:30]
        assert values["precision_at_k"] == pytest.approx(flips.mask[top].mean())
        assert values["auprc"] > 0.8 and values["auroc"] > 0.95
    assert report.label_issues["recall"] > 0.8 and abs(report.label_issues["estimated"] - 30) <= 8
    text = str(report)
    assert "confidence" in text and "(default)" in text and "label_issues: estimated" in text
    assert report.to_polars()["score"].to_list() == list(dc.noise.SCORE_NAMES)
    assert report.best in dc.noise.SCORE_NAMES
    # the same from a mask, and from a dict of scores
    assert evaluate(dm, flips.mask).scores == report.scores
    assert evaluate({"mine": flips.mask * 1.0}, flips.flipped).scores["mine"]["auprc"] == 1.0
    with pytest.raises(dc.DatacartoError, match=r"flipped: expected indices in \[0, 300\)"):
        evaluate(dm, [300])


def test_benchmark_runs_a_real_recording():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import SGDClassifier

    X, y = make_classification(500, 20, n_informative=10, n_classes=4, class_sep=2.0, random_state=0)
    report = dc.noise.benchmark(SGDClassifier(loss="log_loss", alpha=1e-2, random_state=0), X, y, fraction=0.1, epochs=6, seed=0)
    assert report.n_flipped == 50 and report.settings["kind"] == "uniform" and report.settings["cv"] is None
    assert report.scores["confidence"]["auroc"] > 0.85
    assert report.label_issues["flagged"] > 0
    cv = dc.noise.benchmark(SGDClassifier(loss="log_loss", alpha=1e-2, random_state=0), X, y, fraction=0.1, kind="pairs", epochs=4, cv=3, seed=1)
    assert cv.settings["cv"] == 3 and cv.scores["confidence"]["auroc"] > 0.8
