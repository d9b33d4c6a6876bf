"""The demo: a data map of scikit-learn's bundled digits with some labels flipped on purpose.

No download: :func:`sklearn.datasets.load_digits` ships with scikit-learn. The demo flips 5%
of the labels (seeded), trains a small MLP with the sklearn recorder for a few epochs, maps
the training dynamics and checks how well the map finds the flipped labels: precision at k
of the suspects (k = the number of flipped labels) and the AUROC of ``1 - confidence``.

Run it with ``datacarto demo`` or:

Example:
    >>> from datacarto.demo import run_demo
    >>> result = run_demo("datacarto-demo")  # doctest: +SKIP
    >>> result.auroc > 0.9  # doctest: +SKIP
    True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np

from datacarto._atomic import atomic_path, atomic_write
from datacarto._core import DatacartoError
from datacarto._optional import require

#: Training epochs of the default demo: enough for clean examples to settle near confidence 1
#: while flipped ones stay low, before the network starts memorising the flipped labels.
DEFAULT_EPOCHS = 10


@dataclass
class DemoResult:
    """What :func:`run_demo` produced and measured."""

    output_dir: Path
    #: written files: dynamics, labels, flipped, statistics, map_png, map_html
    files: Dict[str, Path]
    n_examples: int
    #: indices of the examples whose label was flipped
    flipped: np.ndarray
    region_counts: Dict[str, int]
    #: precision at k of :meth:`DataMap.suspects` with k = the number of flipped labels
    precision_at_k: float
    k: int
    #: AUROC of ``1 - confidence`` for telling flipped labels from clean ones
    auroc: float
    seconds: float
    datamap: Any = field(repr=False)


def run_demo(
    output_dir: Union[str, Path] = "datacarto-demo",
    *,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    flip_fraction: float = 0.05,
    progress: bool = False,
) -> DemoResult:
    """Train on digits with flipped labels, write the map and report how well it finds them.

    Writes ``dynamics.npy``, ``labels.npy`` (the noisy labels the model saw), ``flipped.npy``
    (indices of the flipped examples), ``statistics.parquet``, ``map.png`` and ``map.html``
    into ``output_dir`` and prints the region counts, the precision at k of the suspects and
    the AUROC of ``1 - confidence``.

    Args:
        output_dir: the folder to write into (created if needed).
        seed: seeds the label flips, the network's initialisation and the shuffling.
        epochs: training epochs.
        flip_fraction: the fraction of labels flipped to another, random class.
        progress: show progress bars while training and computing.

    Raises:
        DatacartoError: ``flip_fraction`` outside [0, 1) or ``epochs`` < 2.
    """
    require("sklearn", "sklearn", feature="the demo")
    from sklearn.datasets import load_digits
    from sklearn.metrics import roc_auc_score
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    import datacarto as dc

    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 2:
        raise DatacartoError(f"epochs: expected an int >= 2 (variability needs several epochs), found {epochs!r}")
    if not isinstance(flip_fraction, (int, float)) or not 0.0 <= float(flip_fraction) < 1.0:
        raise DatacartoError(f"flip_fraction: expected a fraction in [0, 1), found {flip_fraction!r}")
    started = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "dynamics": out / "dynamics.npy",
        "labels": out / "labels.npy",
        "flipped": out / "flipped.npy",
        "statistics": out / "statistics.parquet",
        "map_png": out / "map.png",
        "map_html": out / "map.html",
    }

    digits = load_digits()
    X = StandardScaler().fit_transform(digits.data)
    clean = digits.target.astype(np.int64)
    n, n_classes = len(clean), 10
    rng = np.random.default_rng(seed)
    n_flip = int(round(flip_fraction * n))
    flipped = np.sort(rng.choice(n, size=n_flip, replace=False))
    noisy = clean.copy()
    # shift by 1..9 so that every flipped label really changes
    noisy[flipped] = (clean[flipped] + rng.integers(1, n_classes, size=n_flip)) % n_classes
    for name, array in (("labels", noisy), ("flipped", flipped)):
        with atomic_write(files[name]) as handle:
            np.save(handle, array)

    model = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, batch_size=64, learning_rate_init=3e-3, random_state=seed)
    # overwrite: re-running the demo into the same folder replaces its dynamics
    stats = dc.sklearn.record(model, X, noisy, epochs=int(epochs), path=files["dynamics"], classes=np.arange(n_classes), random_state=seed, overwrite=True, progress=progress)

    is_flipped = np.zeros(n, dtype=bool)
    is_flipped[flipped] = True
    text = [
        f"digit #{i}: labelled {noisy[i]}" + (f" (flipped from {clean[i]})" if is_flipped[i] else "")
        for i in range(n)
    ]
    dm = dc.DataMap(
        stats,
        {"text": text, "true_label": clean, "flipped": is_flipped},
        label_names=[str(d) for d in range(n_classes)],
        dynamics=str(files["dynamics"]),
    ).regions("thresholds")
    dm.write_parquet(files["statistics"])

    # plots build bare matplotlib Figures (no pyplot): nothing to close, any backend works
    figure = dm.plot(title=f"Digits, {n_flip} of {n} labels flipped ({epochs} epochs)")
    with atomic_path(files["map_png"]) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    dm.to_html(files["map_html"], text_column="text")

    k = n_flip
    if k:
        top = dm.suspects(k)["example"].to_numpy()
        precision = float(is_flipped[top].mean())
        auroc = float(roc_auc_score(is_flipped, 1.0 - stats.confidence))
    else:
        precision, auroc = float("nan"), float("nan")
    counts = dm.region_counts()
    seconds = time.perf_counter() - started
    result = DemoResult(out, files, n, flipped, counts, precision, k, auroc, seconds, dm)
    _print_summary(result, epochs)
    return result


def _print_summary(result: DemoResult, epochs: int) -> None:
    total = sum(result.region_counts.values())
    print(f"datacarto demo: digits, {result.n_examples} examples, {result.k} labels flipped, {epochs} epochs ({result.seconds:.1f} s)")
    print("regions (confidence > 0.6 easy, < 0.4 hard):")
    for name, count in result.region_counts.items():
        print(f"  {name:<10} {count:>5}  {count / total:6.1%}")
    if result.k:
        found = int(round(result.precision_at_k * result.k))
        print(f"flipped labels among the top {result.k} suspects: {found} (precision at k = {result.precision_at_k:.3f})")
        print(f"AUROC of 1 - confidence for finding flipped labels: {result.auroc:.4f}")
    print(f"wrote {', '.join(p.name for p in result.files.values())} to {result.output_dir}")
    print(f"open {result.files['map_html']} in a browser, or see {result.files['map_png']}")


__all__ = ["DEFAULT_EPOCHS", "DemoResult", "run_demo"]
