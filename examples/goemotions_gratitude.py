"""A data map of "gratitude" on GoEmotions: the Data Maps tutorial experiment, with datacarto.

    python examples/goemotions_gratitude.py ../shared/data/goemotions [--epochs 10] [--out gratitude.npy]

DATA_DIR holds GoEmotions' ``train.tsv`` (text <TAB> comma-separated label ids <TAB> comment
id, no header) as released by Google Research. Gratitude is label id 15.

The experiment: binary labels (does the comment express gratitude?), TF-IDF over word 1-3
grams, ``SGDClassifier(loss="log_loss", penalty="l2", class_weight="balanced",
random_state=1234)`` trained for 10 epochs of ``partial_fit`` with ``predict_proba`` over the
training set after each epoch (:func:`datacarto.sklearn.record`). Then the regions of the
tutorial: easy (confidence > 0.6), ambiguous (the 20 most variable) and hard (confidence <
0.4), computed with polars from ``stats.to_polars()`` and printed with their text.

``class_weight="balanced"`` cannot be given to ``partial_fit`` directly; ``record`` applies
the same weights (computed once over the whole training set) for the duration of training.

Needs scikit-learn: ``pip install "datacarto[sklearn]"``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import polars as pl
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier

import datacarto as dc

GRATITUDE = 15
EASY_ABOVE, HARD_BELOW, N_AMBIGUOUS = 0.6, 0.4, 20


def load_split(data_dir: Path, split: str = "train") -> Tuple[List[str], List[List[int]]]:
    """Texts and label-id lists of one GoEmotions split (csv quoting in the text is undone)."""
    texts, labels = [], []
    with open(Path(data_dir) / f"{split}.tsv", newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if len(row) != 3:
                raise ValueError(f"{split}.tsv: line {line}: expected 3 tab-separated fields, found {len(row)}")
            texts.append(row[0])
            labels.append([int(k) for k in row[1].split(",")])
    return texts, labels


@dataclass
class GratitudeMap:
    texts: List[str]
    gold: np.ndarray  # 1 = gratitude
    stats: dc.Statistics
    frame: pl.DataFrame  # stats.to_polars() plus the text
    seconds: Dict[str, float] = field(default_factory=dict)

    def regions(self) -> Dict[str, pl.DataFrame]:
        """The tutorial's regions: easy, ambiguous (top 20 by variability) and hard."""
        return {
            "easy": self.frame.filter(pl.col("confidence") > EASY_ABOVE).sort("confidence", descending=True),
            "ambiguous": self.frame.sort("variability", descending=True).head(N_AMBIGUOUS),
            "hard": self.frame.filter(pl.col("confidence") < HARD_BELOW).sort("confidence"),
        }


def gratitude_map(data_dir: Path, *, epochs: int = 10, path: Optional[Path] = None, progress: bool = False) -> GratitudeMap:
    """Train the tutorial's model on the training split and return its data map."""
    seconds = {}
    start = time.perf_counter()
    texts, label_lists = load_split(data_dir, "train")
    gold = np.array([GRATITUDE in ids for ids in label_lists], dtype=np.int64)
    seconds["load"] = time.perf_counter() - start

    start = time.perf_counter()
    features = TfidfVectorizer(ngram_range=(1, 3)).fit_transform(texts)
    seconds["tf-idf"] = time.perf_counter() - start

    start = time.perf_counter()
    model = SGDClassifier(loss="log_loss", penalty="l2", class_weight="balanced", random_state=1234)
    stats = dc.sklearn.record(model, features, gold, epochs=epochs, path=path, overwrite=True, progress=progress)
    seconds["train + record + statistics"] = time.perf_counter() - start

    frame = stats.to_polars().with_columns(pl.Series("text", texts))
    return GratitudeMap(texts, gold, stats, frame, seconds)


def _show(frame: pl.DataFrame, limit: int) -> None:
    for row in frame.head(limit).iter_rows(named=True):
        text = row["text"].replace("\n", " ")
        text = text if len(text) <= 110 else text[:107] + "..."
        tag = "gratitude" if row["gold"] == 1 else "other    "
        print(f"    conf {row['confidence']:.2f}  var {row['variability']:.2f}  {tag}  {text}")


def report(result: GratitudeMap, *, show: int = 5, out: Optional[Path] = None) -> None:
    """Print the map's summary and each region's counts and first examples."""
    stats, frame = result.stats, result.frame
    print(f"GoEmotions train: {stats.n_examples} comments, {int(result.gold.sum())} labelled gratitude; "
          f"{stats.n_epochs} epochs recorded" + (f" in {out}" if out else ""))
    print("time: " + ", ".join(f"{name} {s:.1f} s" for name, s in result.seconds.items()))
    always_right = float((frame["correctness"] == 1.0).mean())
    print(f"right at every epoch: {always_right:.1%} of the comments")

    for name, region in result.regions().items():
        positives = int(region["gold"].sum())
        rule = {"easy": f"confidence > {EASY_ABOVE}", "hard": f"confidence < {HARD_BELOW}", "ambiguous": f"top {N_AMBIGUOUS} by variability"}[name]
        print(f"\n{name.upper()} ({rule}): {region.height} comments ({positives} gratitude, {region.height - positives} other)")
        if name == "ambiguous":
            _show(region, min(show, N_AMBIGUOUS))
        else:
            print("  gratitude:")
            _show(region.filter(pl.col("gold") == 1), show)
            print("  other:")
            _show(region.filter(pl.col("gold") == 0), show)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder holding GoEmotions' train.tsv")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs recorded (default: %(default)s, the tutorial's)")
    parser.add_argument("--out", type=Path, default=None, help="keep the dynamics file at this path (default: a temporary file, deleted at the end)")
    parser.add_argument("--show", type=int, default=5, help="examples printed per region and gold label (default: %(default)s)")
    args = parser.parse_args(argv)

    result = gratitude_map(args.data_dir, epochs=args.epochs, path=args.out, progress=True)
    report(result, show=args.show, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
