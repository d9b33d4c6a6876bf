"""dc.sklearn.record with real scikit-learn estimators, and the GoEmotions gratitude experiment."""

from __future__ import annotations

import doctest
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification  # noqa: E402
from sklearn.linear_model import SGDClassifier  # noqa: E402
from sklearn.multiclass import OneVsRestClassifier  # noqa: E402
from sklearn.naive_bayes import MultinomialNB  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.utils.class_weight import compute_class_weight  # noqa: E402

import datacarto as dc  # noqa: E402
from datacarto import reference  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOEMOTIONS = REPO.parent / "shared" / "data" / "goemotions"


def sgd(**kwargs) -> SGDClassifier:
    return SGDClassifier(loss="log_loss", random_state=0, **kwargs)


def assert_matches_reference(stats: dc.Statistics, probs: np.ndarray) -> None:
    ref = reference.compute(probs, stats.labels, task=stats.task)
    for name in ("confidence", "variability", "correctness", "forgetting", "margin", "el2n"):
        np.testing.assert_allclose(getattr(stats, name), getattr(ref, name), atol=1e-6, err_msg=name)


def manual_dynamics(estimator, X, y, epochs, classes, batches=None, **fit_kwargs) -> np.ndarray:
    """The loop record() should run, written out by hand."""
    out = []
    for e in range(epochs):
        for index in (batches(e) if batches else [None]):
            xb, yb = (X, y) if index is None else (X[index], y[index])
            estimator.partial_fit(xb, yb, classes=classes, **fit_kwargs)
        out.append(estimator.predict_proba(X))
    return np.stack(out)


def test_sgd_multiclass_records_predict_proba_after_each_epoch(tmp_path) -> None:
    X, y = make_classification(300, 12, n_informative=6, n_classes=3, random_state=0)
    path = tmp_path / "sgd.npy"
    stats = dc.sklearn.record(sgd(), X, y, epochs=6, path=path)
    probs = np.load(path)
    assert probs.shape == (6, 300, 3) and probs.dtype == np.float32
    want = manual_dynamics(sgd(), X, y, 6, np.array([0, 1, 2]))
    np.testing.assert_allclose(probs, want, rtol=1e-6, atol=1e-7)
    assert stats.task == "multiclass" and stats.n_epochs == 6 and stats.source == str(path)
    assert stats.extra["path"] == str(path) and stats.extra["classes"].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(stats.labels, y)
    assert_matches_reference(stats, probs)
    assert (probs[-1].argmax(axis=1) == y).mean() > 0.6  # the model learns (chance: 1/3)


def test_string_labels_follow_estimator_classes_order(tmp_path) -> None:
    X, y = make_classification(200, 8, n_informative=4, n_classes=3, random_state=1)
    names = np.array(["zebra", "ant", "mole"])[y]  # sorted classes_: ant, mole, zebra
    stats = dc.sklearn.record(sgd(), X, names, epochs=3, path=tmp_path / "s.npy")
    assert stats.extra["classes"].tolist() == ["ant", "mole", "zebra"]
    np.testing.assert_array_equal(stats.extra["classes"][stats.labels], names)
    probs = np.load(tmp_path / "s.npy")
    model = sgd()
    want = manual_dynamics(model, X, names, 3, np.array(["ant", "mole", "zebra"]))
    np.testing.assert_allclose(probs, want, rtol=1e-6, atol=1e-7)
    # the gold column is what the statistics use
    np.testing.assert_allclose(stats.confidence, want[:, np.arange(200), stats.labels].mean(axis=0), atol=1e-6)


def test_binary_balanced_sgd_equals_explicit_weights_and_is_restored() -> None:
    X, y = make_classification(400, 10, weights=[0.85, 0.15], random_state=2)
    model = sgd(class_weight="balanced")
    stats = dc.sklearn.record(model, X, y, epochs=4, random_state=0)
    assert model.get_params()["class_weight"] == "balanced"  # restored after training
    assert stats.source is None and stats.extra["path"] is None  # temporary file, gone
    assert stats.n_labels == 2 and stats.task == "multiclass"  # binary: two columns
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    want = manual_dynamics(sgd(class_weight=dict(enumerate(weights))), X, y, 4, np.array([0, 1]))
    assert_matches_reference(stats, want.astype(np.float32))
    # balancing matters here: the minority class is mostly learned
    unbalanced = dc.sklearn.record(sgd(), X, y, epochs=4)
    minority = y == 1
    assert stats.confidence[minority].mean() > unbalanced.confidence[minority].mean()


def test_sparse_input_minibatches_and_multinomial_nb(tmp_path) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 500)
    counts = rng.poisson(0.3, size=(500, 60))
    counts[np.arange(500), y * 15 + rng.integers(0, 15, 500)] += 3  # each class owns 15 words
    X = sp.csr_matrix(counts)
    stats = dc.sklearn.record(MultinomialNB(), X.tocoo(), y, epochs=3, batch_size=64, random_state=7, path=tmp_path / "nb.npy")

    orders = [np.random.default_rng(7)]  # record()'s generator, replayed

    def batches(e):
        order = orders[0].permutation(500)
        return [order[i:i + 64] for i in range(0, 500, 64)]

    want = manual_dynamics(MultinomialNB(), X, y, 3, np.arange(4), batches=batches)
    np.testing.assert_allclose(np.load(tmp_path / "nb.npy"), want, rtol=1e-5, atol=1e-7)
    assert_matches_reference(stats, np.load(tmp_path / "nb.npy"))
    assert stats.confidence.mean() > 0.5


def test_mlp_with_chunked_prediction_and_callback(tmp_path) -> None:
    X, y = make_classification(240, 10, n_informative=5, n_classes=3, random_state=4)
    seen = []
    a = dc.sklearn.record(MLPClassifier((16,), random_state=0), X, y, epochs=5, path=tmp_path / "a.npy",
                          callback=lambda epoch, model: seen.append((epoch, model.score(X, y))))
    b = dc.sklearn.record(MLPClassifier((16,), random_state=0), X, y, epochs=5, path=tmp_path / "b.npy", predict_batch_size=50)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    np.testing.assert_array_equal(a.confidence, b.confidence)
    assert [e for e, _ in seen] == [0, 1, 2, 3, 4]
    assert seen[-1][1] > seen[0][1]  # training went on between the recorded epochs
    assert_matches_reference(a, np.load(tmp_path / "a.npy"))


def test_multilabel_one_vs_rest_balanced_sparse(tmp_path) -> None:
    X, Y = make_multilabel_classification(300, 30, n_classes=5, n_labels=2, random_state=5)
    X = sp.csr_matrix(X)
    template = sgd(class_weight="balanced")
    model = OneVsRestClassifier(template)
    stats = dc.sklearn.record(model, X, Y, epochs=4, path=tmp_path / "ml.npy")
    assert stats.task == "multilabel" and stats.confidence.shape == (300, 5)
    np.testing.assert_array_equal(stats.labels, Y)
    probs = np.load(tmp_path / "ml.npy")
    assert probs.shape == (4, 300, 5)
    assert_matches_reference(stats, probs)
    assert template.get_params()["class_weight"] == "balanced"
    # each label's estimator is the balanced binary SGD of that label, trained alone
    for k in range(5):
        weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=Y[:, k])
        alone = manual_dynamics(sgd(class_weight=dict(enumerate(weights))), X, Y[:, k], 4, np.array([0, 1]))[:, :, 1]
        np.testing.assert_allclose(probs[:, :, k], alone, rtol=1e-5, atol=1e-7)
    # the model stays a usable fitted one-vs-rest classifier
    assert model.predict(X).shape == (300, 5)
    # and training continues where it stopped
    more = dc.sklearn.record(model, X, Y, epochs=2)
    assert more.n_epochs == 2


@pytest.mark.parametrize("n_classes", [2, 3])
def test_one_vs_rest_multiclass_with_balanced_estimators(tmp_path, n_classes) -> None:
    X, y = make_classification(300, 10, n_informative=5, n_classes=n_classes, weights=[0.6] + [0.4 / (n_classes - 1)] * (n_classes - 1), random_state=8)
    model = OneVsRestClassifier(sgd(class_weight="balanced"))
    stats = dc.sklearn.record(model, X, y, epochs=3, path=tmp_path / "ovr.npy")
    assert stats.task == "multiclass" and stats.n_labels == n_classes
    columns = [1] if n_classes == 2 else range(n_classes)  # a binary problem has one estimator
    assert len(model.estimators_) == len(columns)
    for estimator, k in zip(model.estimators_, columns):
        counts = np.bincount(y == k, minlength=2)
        assert estimator.class_weight == pytest.approx({0: 300 / (2 * counts[0]), 1: 300 / (2 * counts[1])})
    # the last recorded epoch is the trained model's predict_proba
    np.testing.assert_allclose(np.load(tmp_path / "ovr.npy")[-1], model.predict_proba(X), rtol=1e-6, atol=1e-7)
    assert (model.predict(X) == y).mean() > 0.5


def test_multilabel_mlp_and_window_passthrough() -> None:
    X, Y = make_multilabel_classification(200, 20, n_classes=4, random_state=6)
    stats = dc.sklearn.record(MLPClassifier((8,), random_state=0), X, Y, epochs=4, window=1, ddof=1)
    assert stats.task == "multilabel" and stats.epochs == (1, 4) and stats.ddof == 1


def test_bad_arguments() -> None:
    X, y = make_classification(50, 5, random_state=0)
    with pytest.raises(TypeError, match="no predict_proba"):
        dc.sklearn.record(SGDClassifier(loss="hinge"), X, y, epochs=2)
    with pytest.raises(dc.DatacartoError, match="epochs"):
        dc.sklearn.record(sgd(), X, y, epochs=0)
    with pytest.raises(dc.DatacartoError, match="y: shape: expected 50 rows"):
        dc.sklearn.record(sgd(), X, y[:40], epochs=2)
    with pytest.raises(dc.DatacartoError, match="at least 2 classes"):
        dc.sklearn.record(sgd(), X, np.zeros(50), epochs=2)
    with pytest.raises(dc.DatacartoError, match=r"labels among classes \[0, 1\], found \[2\]"):
        dc.sklearn.record(sgd(), X, np.r_[y[:-1], 2], epochs=2, classes=[0, 1])
    with pytest.raises(dc.DatacartoError, match="0/1 indicator"):
        dc.sklearn.record(OneVsRestClassifier(sgd()), X, np.full((50, 3), 2), epochs=2)
    with pytest.raises(dc.DatacartoError, match="batch_size"):
        dc.sklearn.record(sgd(), X, y, epochs=2, batch_size=0)
    with pytest.raises(dc.DatacartoError, match="sample_weight"):
        dc.sklearn.record(sgd(), X, y, epochs=2, sample_weight=np.ones(3))


def test_existing_dynamics_file_is_not_overwritten(tmp_path) -> None:
    X, y = make_classification(60, 5, random_state=0)
    path = tmp_path / "d.npy"
    dc.sklearn.record(sgd(), X, y, epochs=2, path=path)
    with pytest.raises(FileExistsError):
        dc.sklearn.record(sgd(), X, y, epochs=3, path=path)
    assert dc.read_header(path)["shape"][0] == 2
    assert dc.sklearn.record(sgd(), X, y, epochs=3, path=path, overwrite=True).n_epochs == 3


def test_record_trains_the_estimator_it_is_given() -> None:
    # record() trains the estimator it is given, like fit(): a clone stays untouched
    X, y = make_classification(80, 5, random_state=0)
    model = sgd()
    copy = clone(model)
    dc.sklearn.record(model, X, y, epochs=2)
    assert hasattr(model, "coef_") and not hasattr(copy, "coef_")


def test_docstring_examples() -> None:
    import datacarto.sklearn

    assert doctest.testmod(datacarto.sklearn).failed == 0


# --- the Data Maps tutorial experiment on the real GoEmotions corpus --------------------------------


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(not (GOEMOTIONS / "train.tsv").exists(), reason=f"GoEmotions not found at {GOEMOTIONS}")
def test_goemotions_gratitude_data_map(tmp_path, capsys) -> None:
    example = load_example("goemotions_gratitude")
    result = example.gratitude_map(GOEMOTIONS, epochs=10, path=tmp_path / "gratitude.npy")
    stats, frame = result.stats, result.frame
    assert dc.read_header(tmp_path / "gratitude.npy")["shape"] == (10, 43410, 2)
    assert stats.n_examples == 43410 and int(result.gold.sum()) == 2662  # SOURCE.md's counts

    thanks = frame.filter((frame["gold"] == 1) & frame["text"].str.to_lowercase().str.contains("thank"))
    assert thanks.height > 1000
    assert (thanks["confidence"] > example.EASY_ABOVE).mean() > 0.95  # "thank" gratitude is easy

    regions = result.regions()
    assert regions["ambiguous"].height == 20
    assert regions["easy"].height > 0.9 * stats.n_examples  # a linear model on 1-3 grams fits most
    hard = regions["hard"]
    assert 0 < hard.height < 0.02 * stats.n_examples
    # hard, not labelled gratitude, yet thanking: the label noise the map is for
    unlabelled_thanks = hard.filter((hard["gold"] == 0) & hard["text"].str.to_lowercase().str.contains("thank"))
    assert unlabelled_thanks.height >= 10
    # the most variable examples sit near the decision boundary, unlike the easy ones
    assert regions["ambiguous"]["variability"].min() > regions["easy"]["variability"].median()

    example.report(result, show=2)
    printed = capsys.readouterr().out
    for region in ("easy", "ambiguous", "hard"):
        count = result.regions()[region].height
        assert f"{region.upper()} (" in printed and f"): {count} comments" in printed
