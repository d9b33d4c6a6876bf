"""The demo: digits with flipped labels, trained with the sklearn recorder, mapped, and the
flipped labels found again."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List

import numpy as np
import pytest

pytest.importorskip("sklearn")

import datacarto as dc  # noqa: E402
from datacarto.cli import main  # noqa: E402
from datacarto.demo import DEFAULT_EPOCHS, run_demo  # noqa: E402

N_DIGITS = 1797
REPO = Path(os.environ.get("DATACARTO_REPO") or Path(__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, seed=0), out


def readme_demo_files() -> List[str]:
    """The files the README says the demo writes: the list after its ``ci:demo-files`` marker."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("<!-- ci:demo-files"))
    names: List[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("- "):
            names.append(re.match(r"- `([^`]+)`", line).group(1))  # type: ignore[union-attr]
        elif names and not line.startswith("  "):
            break
    return names


@pytest.mark.slow
def test_demo_writes_every_file_the_readme_lists(demo):
    result, out = demo
    listed = readme_demo_files()
    assert sorted(p.name for p in out.iterdir()) == sorted(listed)
    assert sorted(p.name for p in result.files.values()) == sorted(listed)
    for name in listed:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "map.png").read_bytes().startswith(b"\x89PNG")
    assert "<html" in (out / "map.html").read_text().lower()
    assert dc.read_header(out / "dynamics.npy")["shape"] == (DEFAULT_EPOCHS, N_DIGITS, 10)


@pytest.mark.slow
def test_demo_flips_five_percent_of_labels(demo):
    from sklearn.datasets import load_digits

    result, out = demo
    clean = load_digits().target
    noisy = np.load(out / "labels.npy")
    flipped = np.load(out / "flipped.npy")
    assert result.k == len(flipped) == round(0.05 * N_DIGITS)
    np.testing.assert_array_equal(np.flatnonzero(noisy != clean), flipped)
    np.testing.assert_array_equal(result.flipped, flipped)


@pytest.mark.slow
def test_demo_finds_the_flipped_labels(demo, capsys):
    from sklearn.metrics import roc_auc_score

    result, out = demo
    # recompute the reported numbers from the written files
    dm = dc.DataMap.read_parquet(out / "statistics.parquet")
    flipped = np.load(out / "flipped.npy")
    is_flipped = np.isin(np.arange(N_DIGITS), flipped)
    assert dm.frame["flipped"].to_list() == is_flipped.tolist()
    top = dm.suspects(len(flipped))["example"].to_numpy()
    assert result.precision_at_k == pytest.approx(is_flipped[top].mean())
    assert result.auroc == pytest.approx(roc_auc_score(is_flipped, 1 - dm.frame["confidence"].to_numpy()))
    # observed over seeds 0-2: precision at k 0.92-0.96, AUROC 0.998-0.9996
    assert result.precision_at_k >= 0.85
    assert result.auroc >= 0.98
    assert result.region_counts == dm.region_counts()
    assert result.region_counts["hard"] >= 0.8 * len(flipped)  # the flipped labels sit in the hard corner


def test_cli_demo_runs_and_reruns_into_the_same_folder(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["demo", "-o", str(out), "--epochs", "3", "--flip-fraction", "0.1", "--seed", "4", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "precision at k" in printed and "AUROC" in printed
    for name in ("easy", "ambiguous", "hard"):
        assert name in printed
    assert dc.read_header(out / "dynamics.npy")["shape"] == (3, N_DIGITS, 10)
    assert len(np.load(out / "flipped.npy")) == round(0.1 * N_DIGITS)
    # a second run replaces the first one's files
    assert main(["demo", "-o", str(out), "--epochs", "2", "-q"]) == 0
    assert dc.read_header(out / "dynamics.npy")["shape"] == (2, N_DIGITS, 10)


def test_demo_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(dc.DatacartoError, match="flip_fraction: expected a fraction in \\[0, 1\\)"):
        run_demo(tmp_path, flip_fraction=1.5)
    with pytest.raises(dc.DatacartoError, match="epochs: expected an int >= 2"):
        run_demo(tmp_path, epochs=1)
    assert main(["demo", "-o", str(tmp_path), "--flip-fraction", "-0.2"]) == 2
    assert capsys.readouterr().err.strip() == "datacarto: error: --flip-fraction: expected a fraction in [0, 1), found -0.2"
