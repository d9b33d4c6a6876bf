"""The ``datacarto`` command line, end to end through ``main([...])`` (and once through a
subprocess): outputs match the library, bad input gives one ``datacarto: error:`` line and
exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

import datacarto as dc
from datacarto.cli import main

N, E, L = 120, 6, 3


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, L, N)
    logits = rng.normal(0.0, 1.5, size=(E, N, L))
    logits[:, np.arange(N), labels] += rng.uniform(-3.0, 6.0, size=N)
    z = np.exp(logits - logits.max(axis=2, keepdims=True))
    probs = (z / z.sum(axis=2, keepdims=True)).astype(np.float32)
    dynamics, label_path = tmp_path / "dynamics.npy", tmp_path / "labels.npy"
    np.save(dynamics, probs)
    np.save(label_path, labels)
    return {"dir": tmp_path, "dynamics": dynamics, "labels": label_path, "probs": probs, "y": labels}


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("datacarto: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _compute(files, *extra: str, name: str = "stats.parquet") -> str:
    out = str(files["dir"] / name)
    assert main(["compute", str(files["dynamics"]), str(files["labels"]), "-o", out, "-q", *extra]) == 0
    return out


def test_compute_matches_the_library(files):
    out = _compute(files)
    dm = dc.DataMap.read(out)
    expected = dc.DataMap.from_dynamics(files["dynamics"], files["labels"])
    assert dm.frame.equals(expected.frame)
    assert dm.dynamics == str(files["dynamics"])
    assert dm.epochs == (0, E)


@pytest.mark.parametrize("option, window", [(["--burn-in", "2"], (2, E)), (["--epochs", "1:4"], (1, 4)), (["--epochs", ":3"], (0, 3)), (["--epochs", "2:"], (2, E))])
def test_compute_epoch_window(files, option, window):
    dm = dc.DataMap.read(_compute(files, *option, name="w.csv"))
    assert dm.epochs == window
    expected = dc.compute(files["probs"], files["y"], epochs=window)
    np.testing.assert_array_equal(dm.statistics.confidence, expected.confidence)


def test_compute_options_reach_the_computation(files):
    dm = dc.DataMap.read(_compute(files, "--correctness", "threshold", "--threshold", "0.3", "--ddof", "1", "--threads", "1"))
    expected = dc.compute(files["probs"], files["y"], correctness="threshold", threshold=0.3, ddof=1)
    np.testing.assert_array_equal(dm.statistics.correctness, expected.correctness)
    np.testing.assert_array_equal(dm.statistics.variability, expected.variability)
    assert (dm.correctness_rule, dm.threshold, dm.ddof) == ("threshold", 0.3, 1)


@pytest.mark.parametrize("suffix", ["csv", "tsv", "parquet", "jsonl"])
def test_compute_joins_metadata(files, suffix):
    meta = pl.DataFrame({"sentence": [f"sentence {i} with 'quotes'" for i in range(N)], "source": ["a", "b"] * (N // 2)})
    path = files["dir"] / f"meta.{suffix}"
    if suffix == "csv":
        meta.write_csv(path)
    elif suffix == "tsv":
        meta.write_csv(path, separator="\t", quote_style="never")
    elif suffix == "parquet":
        meta.write_parquet(path)
    else:
        meta.write_ndjson(path)
    names = files["dir"] / "names.txt"
    names.write_text("zero\none\ntwo\n")
    dm = dc.DataMap.read(_compute(files, "--metadata", str(path), "--text-column", "sentence", "--label-names", str(names)))
    assert dm.frame["text"].to_list() == meta["sentence"].to_list()
    assert dm.frame["source"].to_list() == meta["source"].to_list()
    assert dm.label_names == ["zero", "one", "two"]
    assert dm.frame["gold_name"].to_list() == [["zero", "one", "two"][i] for i in files["y"]]


def test_compute_progress_only_on_a_terminal_unless_forced(files, capsys, monkeypatch):
    out = str(files["dir"] / "p.parquet")
    base = ["compute", str(files["dynamics"]), str(files["labels"]), "-o", out]
    assert main(base) == 0  # stderr is not a terminal here
    assert "statistics over" not in capsys.readouterr().err
    assert main([*base, "--progress"]) == 0
    assert "statistics over 6 epochs" in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(base) == 0
    assert "statistics over 6 epochs" in capsys.readouterr().err
    assert main([*base, "--quiet"]) == 0
    assert "statistics over" not in capsys.readouterr().err


def test_regions_prints_counts_and_writes_the_column(files, capsys):
    stats = _compute(files)
    capsys.readouterr()
    assert main(["regions", stats, "--rule", "quantiles", "--fraction", "0.25", "--in-place"]) == 0
    out = capsys.readouterr().out
    dm = dc.DataMap.read(stats)  # updated in place
    counts = dc.DataMap.read(stats).region_counts()
    assert counts == dc.DataMap.from_dynamics(files["dynamics"], files["labels"]).regions("quantiles", fraction=0.25).region_counts()
    for name, count in counts.items():
        assert any(line.split()[:2] == [name, str(count)] for line in out.splitlines()), out
    assert dm.region_rule["rule"] == "quantiles"
    other = str(files["dir"] / "other.csv")
    assert main(["regions", stats, "--easy", "0.7", "--hard", "0.2", "-o", other]) == 0
    assert dc.DataMap.read(other).region_rule == {"rule": "thresholds", "easy": 0.7, "hard": 0.2}
    assert dc.DataMap.read(stats).region_rule["rule"] == "quantiles"  # -o leaves the input alone


def test_select_and_suspects_write_the_library_rows(files, capsys):
    stats = _compute(files)
    dm = dc.DataMap.read(stats)
    out = files["dir"] / "hard.csv"
    assert main(["select", stats, "hard", "-n", "7", "--rule", "data-iq", "-o", str(out)]) == 0
    rows = pl.read_csv(out)
    expected = dm.regions("data-iq").select("hard", n=7)
    assert rows["example"].to_list() == expected["example"].to_list()
    out = files["dir"] / "sus.parquet"
    assert main(["suspects", stats, "-n", "9", "-o", str(out)]) == 0
    assert pl.read_parquet(out).equals(dm.suspects(9))
    out = files["dir"] / "by.jsonl"
    assert main(["select", stats, "easy", "--by", "margin", "--descending", "--columns", "example,margin", "-o", str(out)]) == 0
    rows = pl.read_ndjson(out)
    assert rows.columns == ["example", "margin"]
    assert rows["margin"].to_list() == sorted(rows["margin"].to_list(), reverse=True)
    capsys.readouterr()
    assert main(["suspects", stats, "-n", "3"]) == 0
    printed = capsys.readouterr().out
    for example in dm.suspects(3)["example"].to_list():
        assert f"┆ {example} " in printed


def test_multilabel_flow(tmp_path, capsys):
    rng = np.random.default_rng(5)
    n = 60
    labels = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    probs = rng.random((4, n, 3)).astype(np.float32)
    np.save(tmp_path / "d.npy", probs)
    np.save(tmp_path / "y.npy", labels)
    stats = str(tmp_path / "s.parquet")
    assert main(["compute", str(tmp_path / "d.npy"), str(tmp_path / "y.npy"), "--label-names", "joy,anger,gratitude", "-q", "-o", stats]) == 0
    capsys.readouterr()
    assert main(["regions", stats, "--rule", "data-iq", "--in-place"]) == 0
    out = capsys.readouterr().out
    assert "gratitude" in out  # the per-label table
    out_file = tmp_path / "sus.csv"
    assert main(["suspects", stats, "--label", "gratitude", "-n", "5", "-o", str(out_file)]) == 0
    rows = pl.read_csv(out_file)
    assert rows["label_name"].to_list() == ["gratitude"] * 5
    expected = dc.DataMap.read(stats).suspects(5, label=2)
    assert rows["example"].to_list() == expected["example"].to_list()
    assert main(["suspects", stats, "--label", "fear"]) == 2
    assert "--label: expected a label index or one of the label names, found 'fear'" in _error_line(capsys)


def test_plot_writes_each_format(files):
    pytest.importorskip("datacarto.plots")
    stats = _compute(files)
    magic = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}
    for suffix, head in magic.items():
        out = files["dir"] / f"map.{suffix}"
        assert main(["plot", stats, "-o", str(out)]) == 0
        assert out.read_bytes().startswith(head)
    out = files["dir"] / "traj.png"
    assert main(["plot", stats, "-o", str(out), "--trajectories", "1,2,3"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_html_writes_a_page(files):
    pytest.importorskip("datacarto.html")
    stats = _compute(files)
    out = files["dir"] / "map.html"
    assert main(["html", stats, "-o", str(out)]) == 0
    assert "<html" in out.read_text().lower()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["compute", "{dir}/missing.npy", "{labels}", "-o", "{dir}/s.parquet"], "missing.npy"),
        (["compute", "{labels}", "{labels}", "-o", "{dir}/s.parquet"], "labels.npy"),
        (["compute", "{dynamics}", "{dir}/nolabels.npy", "-o", "{dir}/s.parquet"], "nolabels.npy"),
        (["compute", "{dynamics}", "{labels}", "--epochs", "3", "-o", "{dir}/s.parquet"], "--epochs: expected a window A:B"),
        (["compute", "{dynamics}", "{labels}", "--epochs", "4:2", "-o", "{dir}/s.parquet"], "--epochs: expected a non-empty window"),
        (["compute", "{dynamics}", "{labels}", "-o", "{dir}/s.xlsx"], "--output"),
        (["compute", "{dynamics}", "{labels}", "--threads", "0", "-o", "{dir}/s.parquet"], "--threads"),
        (["compute", "{dynamics}", "{labels}", "--label-names", "a,b", "-o", "{dir}/s.parquet"], "--label-names: expected 3 names"),
        (["compute", "{dynamics}", "{labels}", "--text-column", "x", "-o", "{dir}/s.parquet"], "--text-column: needs --metadata"),
        (["suspects", "{dir}/missing.parquet"], "missing.parquet"),
        (["suspects", "{labels}"], "expected a .parquet, .csv or .tsv"),
        (["plot", "{dynamics}", "-o", "{dir}/map.gif"], "--output"),
        (["compute"], "the following arguments are required"),
        (["frobnicate"], "invalid choice"),
        (["select", "{dir}/s.parquet", "medium"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(files, capsys, argv, fragment):
    values = {k: str(v) for k, v in files.items() if k in ("dir", "dynamics", "labels")}
    assert main([a.format(**values) for a in argv]) == 2
    line = _error_line(capsys)
    assert fragment in line, line


def test_bad_metadata_rows_and_corrupt_statistics(files, capsys):
    meta = files["dir"] / "meta.csv"
    pl.DataFrame({"text": ["x"] * (N - 1)}).write_csv(meta)
    assert main(["compute", str(files["dynamics"]), str(files["labels"]), "--metadata", str(meta), "-q", "-o", str(files["dir"] / "s.parquet")]) == 2
    assert f"metadata: expected {N} rows" in _error_line(capsys)
    bad = files["dir"] / "bad.parquet"
    bad.write_text("not parquet")
    assert main(["regions", str(bad), "--in-place"]) == 2
    assert "bad.parquet: expected a parquet file" in _error_line(capsys)
    stats = _compute(files)
    assert main(["select", stats, "easy", "--by", "nope"]) == 2
    assert "--by: expected columns of the map" in _error_line(capsys)
    assert main(["regions", stats, "--rule", "quantiles", "--easy", "0.9"]) == 2
    assert "--easy: does not apply to rule 'quantiles'" in _error_line(capsys)


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("compute", "regions", "select", "suspects", "plot", "html", "import-cartography", "demo"):
        assert command in out
    for command in ("compute", "regions", "select", "suspects", "plot", "html", "import-cartography", "demo"):
        assert main([command, "--help"]) == 0
        assert f"datacarto {command}" in capsys.readouterr().out.split("examples:")[1]
    assert main(["--version"]) == 0
    assert dc.__version__ in capsys.readouterr().out


def test_python_dash_m_runs_the_cli(files):
    result = subprocess.run([sys.executable, "-m", "datacarto", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "import-cartography" in result.stdout
    result = subprocess.run([sys.executable, "-m", "datacarto", "suspects", str(files["dir"] / "nope.parquet")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"datacarto: error: {files['dir'] / 'nope.parquet'}: statistics file not found"


def test_import_cartography(files, capsys):
    importers = pytest.importorskip("datacarto.importers")
    folder = files["dir"] / "training_dynamics"
    folder.mkdir()
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 2))
    gold = [0, 1, 1, 0, 1]
    for epoch in range(3):
        with open(folder / f"dynamics_epoch_{epoch}.jsonl", "w") as handle:
            for i in range(5):
                handle.write(json.dumps({"guid": 100 + i, f"logits_epoch_{epoch}": logits[epoch, i].tolist(), "gold": gold[i]}) + "\n")
    out = files["dir"] / "imported.npy"
    assert main(["import-cartography", str(folder), "-o", str(out), "-q"]) == 0, capsys.readouterr().err
    probs = np.load(out)
    assert probs.shape == (3, 5, 2)
    z = np.exp(logits - logits.max(axis=2, keepdims=True))
    np.testing.assert_allclose(probs, z / z.sum(axis=2, keepdims=True), atol=1e-6)
    assert np.load(files["dir"] / "imported-labels.npy").tolist() == gold
    assert (files["dir"] / "imported-guids.txt").read_text().split() == [str(100 + i) for i in range(5)]
    # the imported file feeds compute directly
    assert main(["compute", str(out), str(files["dir"] / "imported-labels.npy"), "-q", "-o", str(files["dir"] / "imp.parquet")]) == 0
    assert dc.DataMap.read(files["dir"] / "imp.parquet").n_examples == 5
    capsys.readouterr()
    # an existing output is refused without --overwrite
    assert main(["import-cartography", str(folder), "-o", str(out), "-q"]) == 2
    assert "imported.npy" in _error_line(capsys)
    assert main(["import-cartography", str(folder), "-o", str(out), "-q", "--overwrite"]) == 0
    # a broken log names the file
    with open(folder / "dynamics_epoch_1.jsonl", "a") as handle:
        handle.write("{not json\n")
    assert main(["import-cartography", str(folder), "-o", str(files["dir"] / "again.npy"), "-q"]) == 2
    assert "dynamics_epoch_1.jsonl" in _error_line(capsys)
    assert importers is not None
