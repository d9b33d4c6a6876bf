"""A multilabel data map of all 28 GoEmotions labels, one-vs-rest, with datacarto.

    python examples/goemotions_multilabel.py ../shared/data/goemotions [--epochs 10] [--out emotions.npy]

DATA_DIR holds GoEmotions' ``train.tsv`` and ``emotions.txt`` (28 names, one per line).

Model: TF-IDF over word 1-3 grams and ``OneVsRestClassifier(SGDClassifier(loss="log_loss",
penalty="l2", class_weight="balanced", random_state=1234))`` trained for 10 epochs of
``partial_fit``; after each epoch the 28 per-label probabilities of every training comment
are recorded (:func:`datacarto.sklearn.record`; each label gets its own balanced weights).
Every statistic is then per (comment, label), each label its own binary problem.

Printed: a per-label summary over the comments annotated with the label (how many are easy,
confidence > 0.6; hard, < 0.4; in between), how many comments *not* annotated with it the
model confidently assigns it (``hard_neg``: candidates for a missing label), and the
hardest annotated (comment, label) pairs with their text. Regions are computed with polars
from ``stats.to_polars()``.

Needs scikit-learn: ``pip install "datacarto[sklearn]"``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import polars as pl
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.multiclass import OneVsRestClassifier

import datacarto as dc

# the corpus reader is shared with the binary example beside this file
sys.path.insert(0, str(Path(__file__).resolve().parent))
from goemotions_gratitude import load_split  # noqa: E402

EASY_ABOVE, HARD_BELOW = 0.6, 0.4


def emotion_names(data_dir: Path) -> List[str]:
    return (Path(data_dir) / "emotions.txt").read_text(encoding="utf-8").split()


def label_summary(frame: pl.DataFrame, names: Sequence[str]) -> pl.DataFrame:
    """One row per label: annotated comments by region, and confident unannotated ones."""
    conf = pl.col("confidence")
    positive, negative = pl.col("gold") == 1, pl.col("gold") == 0
    return (
        frame.group_by("label")
        .agg(
            annotated=positive.sum(),
            easy=(positive & (conf > EASY_ABOVE)).sum(),
            between=(positive & (conf >= HARD_BELOW) & (conf <= EASY_ABOVE)).sum(),
            hard=(positive & (conf < HARD_BELOW)).sum(),
            mean_conf=conf.filter(positive).mean(),
            mean_var=pl.col("variability").filter(positive).mean(),
            # gold 0, yet the model gives the label P > 0.6 (confidence in "absent" < 0.4)
            hard_neg=(negative & (conf < HARD_BELOW)).sum(),
        )
        .sort("label")
        .with_columns(pl.Series("name", list(names)))
        .select("label", "name", "annotated", "easy", "between", "hard", "hard_neg", "mean_conf", "mean_var")
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder holding GoEmotions' train.tsv and emotions.txt")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs recorded (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="keep the dynamics file at this path (default: a temporary file, deleted at the end)")
    parser.add_argument("--show", type=int, default=12, help="hardest annotated (comment, label) pairs to print (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel jobs of OneVsRestClassifier, one label per job; -1 uses every core (default: %(default)s, one job)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    texts, label_lists = load_split(args.data_dir)
    names = emotion_names(args.data_dir)
    targets = np.zeros((len(texts), len(names)), dtype=np.uint8)
    for row, ids in enumerate(label_lists):
        targets[row, ids] = 1
    loaded = time.perf_counter()
    features = TfidfVectorizer(ngram_range=(1, 3)).fit_transform(texts)
    vectorized = time.perf_counter()
    model = OneVsRestClassifier(
        SGDClassifier(loss="log_loss", penalty="l2", class_weight="balanced", random_state=1234), n_jobs=args.jobs
    )
    stats = dc.sklearn.record(model, features, targets, epochs=args.epochs, path=args.out, overwrite=True, progress=True)
    recorded = time.perf_counter()

    frame = stats.to_polars()
    print(f"GoEmotions train: {stats.n_examples} comments x {stats.n_labels} labels, {int(targets.sum())} annotations; "
          f"{stats.n_epochs} epochs, task {stats.task}" + (f", dynamics in {args.out}" if args.out else ""))
    print(f"time: load {loaded - start:.1f} s, tf-idf {vectorized - loaded:.1f} s, "
          f"train + record + statistics {recorded - vectorized:.1f} s")

    summary = label_summary(frame, names)
    with pl.Config(tbl_rows=len(names) + 2, tbl_cols=12, float_precision=3, tbl_hide_dataframe_shape=True):
        print(summary)
    totals = summary.select("annotated", "easy", "between", "hard", "hard_neg").sum().row(0, named=True)
    print("annotated (comment, label) pairs: " + ", ".join(f"{k} {v}" for k, v in totals.items()))

    hardest = (
        frame.filter(pl.col("gold") == 1)
        .sort("confidence")
        .head(args.show)
        .with_columns(pl.col("label").map_elements(lambda k: names[k], return_dtype=pl.String).alias("name"))
    )
    print(f"\nhardest {args.show} annotated pairs (the model never believed the annotation):")
    for row in hardest.iter_rows(named=True):
        others = [names[k] for k in label_lists[row["example"]] if k != row["label"]]
        text = texts[row["example"]].replace("\n", " ")
        text = text if len(text) <= 90 else text[:87] + "..."
        extra = f" (also {', '.join(others)})" if others else ""
        print(f"  conf {row['confidence']:.2f}  {row['name']:<14} {text}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
