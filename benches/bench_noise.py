"""Label-error detection: datacarto's suspicion scores against confident learning (cleanlab).

    pip install ".[bench]"                     # cleanlab 2.9, scikit-learn
    python benches/bench_noise.py              # digits and GoEmotions, ~10 min on 2 cores
    python benches/bench_noise.py --quick      # digits only, ~1 min
    python benches/bench_noise.py --figure docs/images/noise-benchmark.png

For each data set, kind of synthetic noise (10% of the labels flipped, seeded: ``uniform`` to
any other class, ``confusion`` to the classes a model trained on the clean labels confuses) and
model (``regularised`` or ``memorising``), it records:

- datacarto's in-sample map (one model, ``epochs`` passes) and its cross-validated map
  (``cv=5``: five fold models in lockstep, out-of-fold probabilities every epoch);
- cleanlab 2.9 on 5-fold cross-validated probabilities of the same model trained for the same
  epochs (its usual recipe: ``cross_val_predict`` then ``get_label_quality_scores`` for the
  ranking and ``find_label_issues`` for the flags).

and prints the AUPRC (and AUROC, precision at k) of every datacarto score and of cleanlab's
ranking, the label-issue counts against the true number of flips, and the seconds each spent.
Training compute: the in-sample map trains 1 model on all rows; the cross-validated map and
cleanlab each train 5 models on 80% of the rows, for the same epochs. The timings of datacarto
and cleanlab are taken in alternating order, so both see the same load on a shared host.

Data: scikit-learn's bundled digits (no download) and the single-label rows of GoEmotions'
train split (``$GOEMOTIONS_DIR`` or ``../shared/data/goemotions``; skipped when absent) as
TF-IDF 1-2-grams.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

import datacarto as dc  # noqa: E402
from datacarto._scores import all_scores  # noqa: E402

FOLDS = 5
FRACTION = 0.1


def load_digits() -> Tuple[Any, np.ndarray]:
    from sklearn.datasets import load_digits as load
    from sklearn.preprocessing import StandardScaler

    digits = load()
    return StandardScaler().fit_transform(digits.data), digits.target.astype(np.int64)


def load_goemotions() -> Tuple[Any, np.ndarray]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    folder = Path(os.environ.get("GOEMOTIONS_DIR", HERE.parent.parent / "shared" / "data" / "goemotions"))
    texts, labels = [], []
    with open(folder / "train.tsv", encoding="utf-8") as handle:
        for line in handle:
            text, ids, _ = line.rstrip("\n").split("\t")
            if "," not in ids:  # single-label rows only
                texts.append(text)
                labels.append(int(ids))
    features = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    return features, np.asarray(labels, dtype=np.int64)


def models(name: str) -> Dict[str, Callable[[], Any]]:
    from sklearn.linear_model import SGDClassifier
    from sklearn.neural_network import MLPClassifier

    if name == "digits":
        return {
            "regularised": lambda: SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0),
            "memorising": lambda: MLPClassifier((256,), alpha=1e-6, learning_rate_init=3e-3, batch_size=64, random_state=0),
        }
    return {
        "regularised": lambda: SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0),
        "memorising": lambda: SGDClassifier(loss="log_loss", alpha=1e-6, random_state=0),
    }


def clean_confusion(make: Callable[[], Any], X: Any, y: np.ndarray, epochs: int) -> np.ndarray:
    """Mean predicted probabilities per true class of a model trained on the clean labels: the
    weights of the ``confusion`` flips (labels flip to the classes the model confuses)."""
    stats = dc.sklearn.record(make(), X, y, epochs=epochs, random_state=0, class_means=True, warn=False)
    means = np.asarray(stats.class_means)
    return np.stack([means[y == c].mean(axis=0) for c in range(means.shape[1])])


def cleanlab_run(make: Callable[[], Any], X: Any, y: np.ndarray, epochs: int, seed: int) -> Dict[str, Any]:
    """cleanlab's recipe on K-fold out-of-sample probabilities of the same model, same epochs."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold

    classes = np.unique(y)
    started = time.perf_counter()
    pred_probs = np.zeros((y.size, classes.size))
    for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(np.zeros(y.size), y):
        model = make()
        for _ in range(epochs):  # the same passes as the recorders (partial_fit, whole set)
            model.partial_fit(X[train], y[train], classes=classes)
        pred_probs[test] = model.predict_proba(X[test])
    quality = get_label_quality_scores(y, pred_probs)
    flags = find_label_issues(y, pred_probs)
    return {"score": 1.0 - quality, "flags": flags, "seconds": time.perf_counter() - started}


def datacarto_run(make: Callable[[], Any], X: Any, y: np.ndarray, epochs: int, seed: int, cv: Any) -> Dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "dynamics.npy")
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dc.sklearn.RecordingWarning)
            stats = dc.sklearn.record(make(), X, y, epochs=epochs, random_state=seed, cv=cv, class_means=True, path=path)
        dm = dc.DataMap(stats)
        scores = all_scores({c: dm.frame[c].to_numpy() for c in ("confidence", "margin", "el2n", "gold", "mixture_confidence") if c in dm.frame.columns})
        scores["default"] = dm.frame["suspicion"].to_numpy()  # the map's default score (dm.default_score)
        issues = dm.label_issues()
        seconds = time.perf_counter() - started
        # the same recording read over its later half only (epochs E/2..E): no extra training
        late = dc.DataMap(dc.compute(path, stats.labels, epochs=(epochs // 2, epochs), class_means=True))
        late_scores = all_scores({c: late.frame[c].to_numpy() for c in ("confidence", "margin", "el2n", "gold")})
        late_scores["mixture"] = late_scores["default"] = late_scores["confidence"]  # no epoch weights on a re-read window
        late_issues = late.label_issues()
    return {"scores": scores, "flags": issues.flags, "estimate": issues.n_issues, "seconds": seconds, "late_scores": late_scores, "late_flags": late_issues.flags, "late_estimate": late_issues.n_issues}


def metrics(score: np.ndarray, mask: np.ndarray) -> Dict[str, float]:
    k = int(mask.sum())
    return {"auprc": dc.noise.auprc(score, mask), "auroc": dc.noise.auroc(score, mask), "p_at_k": dc.noise.precision_at_k(score, mask, k)}


def flag_quality(flags: np.ndarray, mask: np.ndarray) -> Dict[str, float]:
    found = int((flags & mask).sum())
    return {"flagged": int(flags.sum()), "precision": found / max(int(flags.sum()), 1), "recall": found / max(int(mask.sum()), 1)}


def run_setting(data: str, X: Any, y: np.ndarray, model: str, make: Callable[[], Any], kind: str, confusion: Any, epochs: int, seed: int) -> Dict[str, Any]:
    flips = dc.noise.flip_labels(y, FRACTION, kind=kind, confusion=confusion if kind == "confusion" else None, seed=seed)
    mask = flips.mask
    # alternate the order of the competitors from setting to setting: both see the same load
    runs: Dict[str, Dict[str, Any]] = {}
    order = ["plain", "cv", "cleanlab"] if seed % 2 == 0 else ["cleanlab", "cv", "plain"]
    for name in order:
        if name == "cleanlab":
            runs[name] = cleanlab_run(make, X, flips.labels, epochs, seed)
        else:
            runs[name] = datacarto_run(make, X, flips.labels, epochs, seed, FOLDS if name == "cv" else None)
    row: Dict[str, Any] = {"data": data, "model": model, "kind": kind, "n": int(y.size), "flipped": int(mask.sum()), "epochs": epochs}
    for name in ("plain", "cv"):
        run = runs[name]
        row[name] = {score: metrics(values, mask) for score, values in run["scores"].items()}
        row[name + "_issues"] = {"estimate": run["estimate"], **flag_quality(run["flags"], mask)}
        row[name + "_seconds"] = run["seconds"]
        row[name + "_late"] = {score: metrics(values, mask) for score, values in run["late_scores"].items()}
        row[name + "_late_issues"] = {"estimate": run["late_estimate"], **flag_quality(run["late_flags"], mask)}
    row["cleanlab"] = metrics(runs["cleanlab"]["score"], mask)
    row["cleanlab_issues"] = flag_quality(runs["cleanlab"]["flags"], mask)
    row["cleanlab_seconds"] = runs["cleanlab"]["seconds"]
    return row


def print_row(row: Dict[str, Any]) -> None:
    head = f"{row['data']} / {row['model']} / {row['kind']} flips ({row['flipped']} of {row['n']}, {row['epochs']} epochs)"
    print(f"\n{head}\n" + "-" * len(head))
    print(f"  {'AUPRC':<22}{'in-sample':>10}{'5-fold':>10}   over the later half: {'in-sample':>9}{'5-fold':>8}")
    for score in row["cv"]:
        plain = row["plain"][score]["auprc"] if score in row["plain"] else float("nan")
        print(f"  {score:<22}{plain:10.3f}{row['cv'][score]['auprc']:10.3f}   {'':>20}{row['plain_late'][score]['auprc']:9.3f}{row['cv_late'][score]['auprc']:8.3f}")
    print(f"  {'cleanlab 2.9, 5-fold':<22}{'':>10}{row['cleanlab']['auprc']:10.3f}")
    for name in ("plain", "cv"):
        i = row[name + "_issues"]
        print(f"  label_issues {name:<6}: estimate {i['estimate']}, flagged {i['flagged']}, precision {i['precision']:.3f}, recall {i['recall']:.3f}   ({row[name + '_seconds']:.1f} s)")
        i = row[name + "_late_issues"]
        print(f"    later half   {'':<6}: estimate {i['estimate']}, flagged {i['flagged']}, precision {i['precision']:.3f}, recall {i['recall']:.3f}")
    c = row["cleanlab_issues"]
    print(f"  cleanlab find_label_issues: flagged {c['flagged']}, precision {c['precision']:.3f}, recall {c['recall']:.3f}   ({row['cleanlab_seconds']:.1f} s)")


def print_summary(rows: List[Dict[str, Any]]) -> None:
    """Per setting, over its seeds: the mean AUPRC of the default scores and of cleanlab, and in
    how many seeds the default was at least cleanlab's (one seed's difference is mostly the
    fold split's noise; the mean over seeds is the comparison)."""
    print("\nSummary (AUPRC, mean over seeds; wins: seeds where the default >= cleanlab)")
    print(f"  {'setting':<36}{'seeds':>6}{'in-sample':>11}{'5-fold':>9}{'cleanlab':>10}   wins in-sample / 5-fold")
    settings: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for row in rows:
        settings.setdefault((row["data"], row["model"], row["kind"]), []).append(row)
    for (data, model, kind), group in settings.items():
        plain = np.array([r["plain"]["default"]["auprc"] for r in group])
        cv = np.array([r["cv"]["default"]["auprc"] for r in group])
        clean = np.array([r["cleanlab"]["auprc"] for r in group])
        print(f"  {data + ' / ' + model + ' / ' + kind:<36}{len(group):>6}{plain.mean():11.3f}{cv.mean():9.3f}{clean.mean():10.3f}   {int((plain >= clean).sum())} / {int((cv >= clean).sum())}")


def figure(rows: List[Dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    settings: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for row in rows:  # one bar group per setting: the mean over its seeds
        settings.setdefault((row["data"], row["model"], row["kind"]), []).append(row)
    labels = [f"{data}\n{model}\n{kind}" for data, model, kind in settings]

    def mean_of(get: Callable[[Dict[str, Any]], float]) -> List[float]:
        return [float(np.mean([get(r) for r in group])) for group in settings.values()]

    series = [
        ("datacarto default, in-sample", mean_of(lambda r: r["plain"]["default"]["auprc"]), "#4c72b0"),
        ("datacarto default, 5-fold map", mean_of(lambda r: r["cv"]["default"]["auprc"]), "#55a868"),
        ("cleanlab 2.9, 5-fold", mean_of(lambda r: r["cleanlab"]["auprc"]), "#c44e52"),
    ]
    fig = Figure(figsize=(max(6, 1.6 * len(labels)), 3.8))
    ax = fig.add_subplot()
    width = 0.27
    x = np.arange(len(labels))
    for i, (name, values, color) in enumerate(series):
        bars = ax.bar(x + (i - 1) * width, values, width, label=name, color=color)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("AUPRC (flipped labels)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Finding {int(FRACTION * 100)}% flipped labels: datacarto's default score vs confident learning")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits only")
    parser.add_argument("--figure", type=Path, default=None, help="write the AUPRC bar chart here (.png)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="seeds per setting (the summary gives means and wins)")
    args = parser.parse_args(argv)
    sets = [("digits", load_digits, 15)]
    if not args.quick:
        sets.append(("goemotions", load_goemotions, 10))
    rows: List[Dict[str, Any]] = []
    seed = args.seed
    for data, load, epochs in sets:
        try:
            X, y = load()
        except FileNotFoundError as exc:
            print(f"skipping {data}: {exc}")
            continue
        for model, make in models(data).items():
            confusion = clean_confusion(models(data)["regularised"], X, y, 5)
            for kind in ("uniform", "confusion"):
                for _ in range(args.repeats):
                    row = run_setting(data, X, y, model, make, kind, confusion, epochs, seed)
                    seed += 1
                    print_row(row)
                    rows.append(row)
    print_summary(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.figure:
        figure(rows, args.figure)
        print(f"\nwrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
