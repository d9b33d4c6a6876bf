"""Cross-validated recording (sklearn ``record(cv=K)``, ``torch.FoldRecorder``) and the
recorders' warnings about memorised and degenerate dynamics."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import datacarto as dc
from datacarto._checks import RecordingWarning

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import SGDClassifier  # noqa: E402


class _Spy(SGDClassifier):
    """An SGDClassifier that remembers which rows (by the id in column 0) it trained on."""

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        self.seen_ = getattr(self, "seen_", set()) | set(np.asarray(X)[:, 0].astype(int).tolist())
        return super().partial_fit(X[:, 1:], y, classes=classes, sample_weight=sample_weight)

    def predict_proba(self, X):
        return super().predict_proba(X[:, 1:])


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(400, 12, n_informative=6, n_classes=3, random_state=0)
    return X, y


def test_every_epoch_holds_out_of_fold_probabilities(data, tmp_path):
    X, y = data
    Xi = np.column_stack([np.arange(len(y)), X])
    per_epoch, shapes = [], []
    path = tmp_path / "cv.npy"

    def snapshot(epoch, models):
        # the epoch is committed before the callback: the file already holds it
        shapes.append(dc.read_header(path)["shape"])
        per_epoch.append([m.predict_proba(Xi) for m in models])

    stats = dc.sklearn.record(_Spy(loss="log_loss", alpha=1e-3, random_state=0), Xi, y, epochs=3, cv=4, random_state=0, path=path, callback=snapshot, batch_size=50)
    folds = stats.extra["folds"]
    models = stats.extra["fold_models"]
    assert shapes == [(1, 400, 3), (2, 400, 3), (3, 400, 3)]
    assert sorted(np.bincount(folds).tolist()) == [100, 100, 100, 100]
    for c in range(3):  # stratified: each class spread evenly over the folds
        assert np.ptp(np.bincount(folds[y == c], minlength=4)) <= 1
    for k, model in enumerate(models):
        held_out = set(np.flatnonzero(folds == k).tolist())
        assert model.seen_ == set(range(400)) - held_out  # never trained on its own fold
    recorded = np.load(path)
    for epoch in range(3):
        for k in range(4):
            rows = folds == k
            np.testing.assert_allclose(recorded[epoch, rows], per_epoch[epoch][k][rows], rtol=1e-6, atol=1e-7)
    # the template estimator is left untrained
    assert not hasattr(stats.extra, "coef_")


def test_cv_is_seeded_and_checked(data):
    X, y = data
    a = dc.sklearn.record(SGDClassifier(loss="log_loss", random_state=0), X, y, epochs=2, cv=3, random_state=5, warn=False)
    b = dc.sklearn.record(SGDClassifier(loss="log_loss", random_state=0), X, y, epochs=2, cv=3, random_state=5, warn=False)
    assert a == b
    np.testing.assert_array_equal(a.extra["folds"], b.extra["folds"])
    for bad in (1, 0, True, 2.5):
        with pytest.raises(dc.DatacartoError, match="cv: expected an int >= 2"):
            dc.sklearn.record(SGDClassifier(loss="log_loss"), X, y, epochs=1, cv=bad)
    lonely = y.copy()
    lonely[0] = 3  # a class with one example cannot be in every fold's training rows
    with pytest.raises(dc.DatacartoError, match="cv: fold .* training rows lack a class"):
        dc.sklearn.record(SGDClassifier(loss="log_loss"), X, lonely, epochs=1, cv=3)


def test_cv_map_finds_flips_a_memorising_model_hides():
    """A memorising model (tiny alpha, more features than examples) fits its flipped labels:
    in-sample it warns and finds them worse than the cross-validated map does."""
    X, y = make_classification(300, 400, n_informative=20, n_classes=3, class_sep=1.5, random_state=1)
    flips = dc.noise.flip_labels(y, 0.1, seed=0)
    model = SGDClassifier(loss="log_loss", alpha=1e-6, random_state=0)
    with pytest.warns(RecordingWarning, match=r"memorised labels: .*cv=5"):
        plain = dc.sklearn.record(model, X, flips.labels, epochs=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordingWarning)
        cv = dc.sklearn.record(model, X, flips.labels, epochs=20, random_state=0, cv=5)
    in_sample = dc.noise.auprc(1 - plain.confidence, flips.mask)
    out_of_fold = dc.noise.auprc(1 - cv.confidence, flips.mask)
    print(f"memorising model, AUPRC of 1 - confidence: in-sample {in_sample:.3f}, 5-fold {out_of_fold:.3f}")
    assert out_of_fold > in_sample + 0.05


def test_degenerate_dynamics_warn():
    from sklearn.datasets import load_digits
    from sklearn.naive_bayes import MultinomialNB

    digits = load_digits()
    with pytest.warns(RecordingWarning, match="degenerate dynamics: the median variability is"):
        dc.sklearn.record(MultinomialNB(), digits.data, digits.target, epochs=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordingWarning)
        dc.sklearn.record(MultinomialNB(), digits.data, digits.target, epochs=4, warn=False)
        X, y = make_classification(300, 10, n_informative=5, n_classes=3, flip_y=0.1, random_state=0)
        dc.sklearn.record(SGDClassifier(loss="log_loss", alpha=1e-2, random_state=0), X, y, epochs=4)


# ---------------------------------------------------------------------- torch


def test_torch_fold_recorder_trains_a_real_model(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, Subset, TensorDataset

    torch.manual_seed(0)
    X, y = make_classification(240, 10, n_informative=6, n_classes=3, class_sep=2.0, random_state=0)
    flips = dc.noise.flip_labels(y, 0.1, seed=0)
    data = dc.torch.IndexedDataset(TensorDataset(torch.tensor(X, dtype=torch.float32), torch.tensor(flips.labels)))
    path = tmp_path / "cv.npy"
    with dc.torch.FoldRecorder(path, 240, 3, n_folds=4, labels=flips.labels, seed=0) as recorder:
        assert recorder.n_folds == 4 and recorder.folds.shape == (240,)
        models = [torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)) for _ in range(4)]
        optimisers = [torch.optim.Adam(m.parameters(), lr=0.02) for m in models]
        for epoch in range(5):
            for k, (model, opt) in enumerate(zip(models, optimisers)):
                assert not set(recorder.train_indices(k)) & set(recorder.held_out_indices(k))
                for _, (xb, yb) in DataLoader(Subset(data, recorder.train_indices(k)), batch_size=32, shuffle=True):
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(model(xb), yb).backward()
                    opt.step()
                recorder.evaluate(k, model, DataLoader(Subset(data, recorder.held_out_indices(k)), batch_size=64))
            assert recorder.end_epoch() == epoch + 1
        # a row from a model that trained on it is refused
        with pytest.raises(dc.DatacartoError, match="fold 0's model trained on example"):
            recorder.record(0, recorder.train_indices(0)[:1], torch.zeros(1, 3))
        # a missing fold is caught at commit
        recorder.evaluate(0, models[0], DataLoader(Subset(data, recorder.held_out_indices(0)), batch_size=64))
        with pytest.raises(dc.DatacartoError, match="never written"):
            recorder.end_epoch()
        recorder.discard_epoch()
        stats = recorder.compute(flips.labels)
    assert stats.n_epochs == 5
    # the recorded rows are the fold models' held-out predictions at the last epoch
    last = np.load(path)[-1]
    for k, model in enumerate(models):
        rows = recorder.held_out_indices(k)
        with torch.no_grad():
            expected = torch.softmax(model(torch.tensor(X[rows], dtype=torch.float32)).double(), dim=1).numpy()
        np.testing.assert_allclose(last[rows], expected, atol=1e-6)
    assert dc.noise.auroc(1 - stats.confidence, flips.mask) > 0.8
    # like record(cv=), the fold recorder's map ranks by the epochs' maximum-likelihood mixture,
    # fitted on the recorded labels' out-of-fold probabilities (read back here independently)
    from datacarto._mixture import checkpoint_weights

    gold = np.load(path)[:, np.arange(240), flips.labels].astype(np.float64)
    weights = stats.extra["epoch_weights"]
    assert weights.shape == (5,) and np.all(weights >= 0) and weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weights, checkpoint_weights(gold), atol=1e-9)
    np.testing.assert_allclose(stats.extra["mixture_confidence"], weights @ gold, atol=1e-9)
    assert dc.DataMap(stats).default_score == "mixture"
    # an epoch window weighs only its own epochs
    window = recorder.compute(flips.labels, epochs=(2, 5))
    np.testing.assert_allclose(window.extra["epoch_weights"], checkpoint_weights(gold[2:5]), atol=1e-9)
    # asked for class means, it also keeps the mixture's (label_issues' input on this map)
    with_means = recorder.compute(flips.labels, epochs=(2, 5), class_means=True)
    expected = np.einsum("e,enl->nl", with_means.extra["epoch_weights"], np.load(path)[2:5].astype(np.float64))
    np.testing.assert_allclose(with_means.extra["mixture_class_means"], expected, atol=1e-9)


def test_torch_fold_recorder_arguments(tmp_path):
    pytest.importorskip("torch")
    with pytest.raises(dc.DatacartoError, match="folds: expected every fold"):
        dc.torch.FoldRecorder(tmp_path / "a.npy", 4, 2, folds=[0, 0, 0, 0])
    recorder = dc.torch.FoldRecorder(tmp_path / "b.npy", 4, 2, folds=[0, 1, 0, 1])
    with pytest.raises(dc.DatacartoError, match=r"fold: expected an int in \[0, 2\), found 2"):
        recorder.held_out_indices(2)
    assert recorder.train_indices(0).tolist() == [1, 3]
    assert "n_folds=2" in repr(recorder)
    recorder.close()


def test_torch_recorder_warns_about_a_memorised_map(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    x = torch.randn(40, 30)
    y = torch.randint(0, 3, (40,))  # random labels: only memorising fits them
    data = dc.torch.IndexedDataset(TensorDataset(x, y))
    model = torch.nn.Sequential(torch.nn.Linear(30, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = DataLoader(data, batch_size=8, shuffle=True)
    with dc.torch.Recorder(tmp_path / "d.npy", 40, 3) as recorder:
        for _ in range(60):
            for _, (xb, yb) in loader:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
        for _ in range(3):
            recorder.evaluate(model, loader)
        with pytest.warns(RecordingWarning, match="memorised labels"):
            recorder.compute(y)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RecordingWarning)
            recorder.compute(y, warn=False)


def test_cv_map_ranks_by_the_epoch_mixture(data, tmp_path):
    """record(cv=) keeps the maximum-likelihood mixture of its epochs' out-of-fold predictions
    (fitted on the recorded labels, read back here from the dynamics file) and the map ranks
    suspects by it; the column and the default survive a round trip through a file."""
    from datacarto._mixture import checkpoint_weights

    X, y = data
    flips = dc.noise.flip_labels(y, 0.1, seed=4)
    path = tmp_path / "cv.npy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordingWarning)
        stats = dc.sklearn.record(SGDClassifier(loss="log_loss", alpha=1e-6, random_state=0), X, flips.labels, epochs=6, random_state=1, cv=4, path=path)
    gold = np.load(path)[:, np.arange(y.size), stats.labels].astype(np.float64)
    weights = stats.extra["epoch_weights"]
    np.testing.assert_allclose(weights, checkpoint_weights(gold), atol=1e-6)
    np.testing.assert_allclose(stats.extra["mixture_confidence"], weights @ gold, atol=1e-6)
    dm = dc.DataMap(stats)
    assert dm.default_score == "mixture"
    np.testing.assert_allclose(dm.frame["suspicion"].to_numpy(), 1.0 - stats.extra["mixture_confidence"])
    order = np.lexsort((np.arange(y.size), stats.margin, -(1.0 - stats.extra["mixture_confidence"])))
    assert dm.suspects(None)["example"].to_list() == order.tolist()
    # the other scores stay selectable; the plain mean is one of them
    np.testing.assert_allclose(dm.suspects(None, score="confidence").sort("example")["suspicion"].to_numpy(), 1.0 - stats.confidence)
    report = dc.noise.evaluate(dm, flips.flipped)
    assert list(report.scores)[0] == "mixture" and report.default == "mixture" and "mixture" in str(report).split("(default)")[0].splitlines()[-1]
    dm.write(tmp_path / "cv.parquet")
    back = dc.DataMap.read(tmp_path / "cv.parquet")
    assert back.default_score == "mixture"
    assert back.suspects(20)["example"].to_list() == dm.suspects(20)["example"].to_list()
    # an in-sample map has no out-of-fold predictions to weigh
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordingWarning)
        plain = dc.sklearn.record(SGDClassifier(loss="log_loss", random_state=0), X, flips.labels, epochs=3, random_state=1)
    assert "epoch_weights" not in plain.extra and dc.DataMap(plain).default_score == "confidence"


def test_cv_map_label_issues_use_the_epoch_mixture(data, tmp_path):
    """On a cross-validated map label_issues runs confident learning on the class means of
    the same epoch mixture as the default score: kept by the recorder with class_means=True,
    computed from the dynamics file otherwise, both equal to Σ_e w_e P[e] read back here."""
    from datacarto._confident import confident_learning

    X, y = data
    flips = dc.noise.flip_labels(y, 0.1, seed=2)
    path = tmp_path / "cv.npy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordingWarning)
        stats = dc.sklearn.record(SGDClassifier(loss="log_loss", alpha=1e-5, random_state=0), X, flips.labels, epochs=6, random_state=3, cv=4, path=path, class_means=True)
    probs = np.load(path).astype(np.float64)
    weights = stats.extra["epoch_weights"]
    assert np.count_nonzero(weights > 1e-3) >= 2, "the test needs a mixture of several epochs"
    expected = np.einsum("e,enl->nl", weights, probs)
    np.testing.assert_allclose(stats.extra["mixture_class_means"], expected, atol=1e-9)
    assert not np.allclose(expected, stats.class_means, atol=1e-3)  # not the plain mean
    issues = dc.DataMap(stats).label_issues()
    direct = confident_learning(expected, stats.labels)
    np.testing.assert_array_equal(issues.flags, direct.flags)
    assert issues.n_issues == direct.n_issues
    # without the kept means (class_means not asked for): one weighted read of the file
    again = dc.sklearn.record(SGDClassifier(loss="log_loss", alpha=1e-5, random_state=0), X, flips.labels, epochs=6, random_state=3, cv=4, path=tmp_path / "again.npy", warn=False)
    assert "mixture_class_means" not in again.extra
    np.testing.assert_array_equal(dc.DataMap(again).label_issues().flags, direct.flags)
    # the weights survive a round trip through a file (parquet, CSV + sidecar): a map read back
    # counts with the same mixture, from its dynamics file
    for suffix in (".parquet", ".csv"):
        back = dc.DataMap.read(dc.DataMap(stats).write(tmp_path / f"cv{suffix}"))
        assert back.dynamics == str(path)
        np.testing.assert_array_equal(back.label_issues().flags, direct.flags)
    # a hand-edited weight list that does not fit the window is refused, naming the field
    import json

    sidecar = tmp_path / "cv.csv.datacarto.json"
    settings = json.loads(sidecar.read_text())
    settings["epoch_weights"] = settings["epoch_weights"][:-1]
    sidecar.write_text(json.dumps(settings))
    with pytest.raises(dc.DatacartoError, match=r"cv\.csv.*epoch_weights: expected 6 non-negative weights summing to 1"):
        dc.DataMap.read(tmp_path / "cv.csv")
    # a window weighs only its own epochs
    window = dc.compute(path, stats.labels, epochs=(2, 6))
    window.extra["epoch_weights"] = weights_window = np.array([0.5, 0.0, 0.25, 0.25])
    mixed = dc.DataMap(window, dynamics=path).label_issues()
    np.testing.assert_array_equal(mixed.flags, confident_learning(np.einsum("e,enl->nl", weights_window, probs[2:6]), stats.labels).flags)


def test_cv_map_label_issues_count_the_flips_of_a_memorising_model(capsys):
    """digits, 10% flips, a memorising MLP: the in-sample map hides most flips (its count is a
    fraction of them), the 5-fold map's estimate lands within 25%; precision and recall are
    reported."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    X = StandardScaler().fit_transform(digits.data)
    flips = dc.noise.flip_labels(digits.target, 0.1, seed=5)
    n_flipped = flips.flipped.size
    make = lambda: MLPClassifier((256,), alpha=1e-6, learning_rate_init=3e-3, batch_size=64, random_state=0)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordingWarning)
        plain = dc.sklearn.record(make(), X, flips.labels, epochs=15, random_state=0, class_means=True)
    cv = dc.sklearn.record(make(), X, flips.labels, epochs=15, random_state=0, cv=5, class_means=True)
    hidden = dc.DataMap(plain).label_issues()
    issues = dc.DataMap(cv).label_issues()
    found = int((issues.flags & flips.mask).sum())
    precision, recall = found / issues.n_flagged, found / n_flipped
    with capsys.disabled():
        print(f"\nlabel_issues, memorising MLP on digits: in-sample estimate {hidden.n_issues}, 5-fold estimate {issues.n_issues} vs {n_flipped} flipped; 5-fold flags precision {precision:.3f}, recall {recall:.3f}")
    assert hidden.n_issues < 0.6 * n_flipped
    assert abs(issues.n_issues - n_flipped) <= 0.25 * n_flipped
    assert precision > 0.7 and recall > 0.7


def _weighted_map(path: Path, labels: np.ndarray) -> "dc.DataMap":
    stats = dc.compute(path, labels, epochs=(1, 4))
    stats.extra["epoch_weights"] = np.array([0.5, 0.0, 0.5])
    return dc.DataMap(stats, dynamics=path)


def test_cv_map_label_issues_refuse_a_dynamics_file_changed_after_recording(tmp_path):
    """The mixture's class means are read by the core, epoch by epoch: a file truncated, or
    rewritten with a NaN at a weighted epoch, after the map was computed is a DatacartoError
    naming the file and the field, never a crash (a memory map of a truncated file) or class
    means computed from garbage. An epoch with weight 0 does not enter the mixture, but it is
    read to check the file is the map's recording: a NaN there is refused too (the map's
    statistics, computed over the whole window, could not have come from that file)."""
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3), size=(4, 60)).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    path = tmp_path / "d.npy"
    np.save(path, probs)
    from datacarto._confident import confident_learning

    expected = 0.5 * probs[1].astype(np.float64) + 0.5 * probs[3].astype(np.float64)
    np.testing.assert_array_equal(_weighted_map(path, labels).label_issues().flags, confident_learning(expected, labels).flags)
    # the same from the dynamics held as an array
    in_memory = dc.compute(probs, labels, epochs=(1, 4))
    in_memory.extra["epoch_weights"] = np.array([0.5, 0.0, 0.5])
    np.testing.assert_array_equal(dc.DataMap(in_memory, dynamics=probs).label_issues().flags, confident_learning(expected, labels).flags)
    dm = _weighted_map(path, labels)
    bad = probs.copy()
    bad[3, 7, 1] = np.nan
    np.save(path, bad)
    with pytest.raises(dc.DatacartoError, match=r"d\.npy.*NaN"):
        dm.label_issues()
    # a NaN at the epoch of weight 0: not in the mixture, but not the map's file either
    np.save(path, probs)
    dm = _weighted_map(path, labels)
    unweighted = probs.copy()
    unweighted[2, 7, 1] = np.nan
    np.save(path, unweighted)
    with pytest.raises(dc.DatacartoError, match=r"d\.npy.*NaN"):
        dm.label_issues()
    np.save(path, probs)
    dm = _weighted_map(path, labels)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    with pytest.raises(dc.DatacartoError, match=r"d\.npy.*(truncated|shorter)"):
        dm.label_issues()
