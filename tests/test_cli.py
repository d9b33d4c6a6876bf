"""The ``datacarto`` command line, end to end through ``main([...])`` (and once through a
subprocess): outputs match the library, bad input gives one ``datacarto: error:`` line and
exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

import datacarto as dc
from datacarto.cli import main
from datacarto.importers import CartographyWarning, cartography_metrics, import_cartography

from _helpers import make_logits, write_logs

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


# ---------------------------------------------------------------------- every option of every subcommand
#
# The list of options comes from the parser itself: a new option without a case here fails
# test_every_option_has_a_case. Each case runs the command with that spelling of the option and
# checks its effect.

OPTION_CASES = {}


def _case(command, *spellings):
    def register(function):
        for spelling in spellings:
            OPTION_CASES[(command, spelling)] = function
        return function

    return register


def _parser_options():
    from datacarto.cli import build_parser

    parser = build_parser()
    found = [("", option) for action in parser._actions for option in action.option_strings]
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        found += [(name, option) for action in sub._actions for option in action.option_strings]
    return sorted(found)


class Env:
    """Input files and a runner that returns (exit code, stdout, stderr)."""

    def __init__(self, files, capsys, monkeypatch):
        self.files, self.capsys, self.monkeypatch = files, capsys, monkeypatch
        self.dir = files["dir"]
        self.dynamics, self.labels = str(files["dynamics"]), str(files["labels"])

    def run(self, *argv):
        self.capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, *argv):
        code, out, err = self.run(*argv)
        assert code == 0, err
        return out, err

    def error(self, *argv):
        code, _, err = self.run(*argv)
        assert code == 2, err
        lines = [line for line in err.splitlines() if line.startswith("datacarto: error:")]
        assert len(lines) == 1 and "Traceback" not in err, err
        return lines[0]

    @property
    def stats(self):
        path = self.dir / "stats.parquet"
        if not path.exists():
            self.ok("compute", self.dynamics, self.labels, "-o", path, "-q")
        return str(path)

    @property
    def multilabel_stats(self):
        path = self.dir / "ml.parquet"
        if not path.exists():
            rng = np.random.default_rng(5)
            np.save(self.dir / "ml.npy", rng.random((4, 60, 3)).astype(np.float32))
            np.save(self.dir / "ml-y.npy", (rng.random((60, 3)) < 0.4).astype(np.uint8))
            self.ok("compute", self.dir / "ml.npy", self.dir / "ml-y.npy", "--label-names", "joy,anger,gratitude", "-o", path)
        return str(path)

    def fake_terminal(self):
        self.monkeypatch.setattr(sys.stderr, "isatty", lambda: True)

    def metadata(self):
        path = self.dir / "meta.csv"
        pl.DataFrame({"sentence": [f"sentence number {i}" for i in range(N)], "source": ["a", "b"] * (N // 2)}).write_csv(path)
        return path

    def cartography_logs(self, id_field="guid"):
        folder = self.dir / f"td-{id_field}"
        if not folder.exists():
            folder.mkdir()
            rng = np.random.default_rng(0)
            for epoch in range(3):
                with open(folder / f"dynamics_epoch_{epoch}.jsonl", "w") as handle:
                    for i in range(5):
                        record = {id_field: 100 + i, f"logits_epoch_{epoch}": rng.normal(size=2).tolist(), "gold": i % 2}
                        handle.write(json.dumps(record) + "\n")
        return folder

    def original_logs(self):
        """A run folder of logs as the original writes them (5 epochs, K = 3), with exact ties,
        near-ties, never-learned and forgotten examples."""
        root = self.dir / "original-run"
        if not root.exists():
            rng = np.random.default_rng(3)
            logits, gold, _ = make_logits(rng, n=60, k=3, epochs=5)
            write_logs(root, logits, gold, [f"train-{i}" for i in range(60)], rng)
        return root

    def lenient_logs(self):
        """The original's lenient cases: QNLI-style guids ('7b', the original strips the last
        character), '7b' absent from epochs 2 and 3, '12a' from epoch 4, and the gold label of
        '30a' changed in epoch 3."""
        root = self.dir / "lenient-run"
        if not root.exists():
            rng = np.random.default_rng(7)
            logits, gold, _ = make_logits(rng, n=60, k=3, epochs=5)
            write_logs(root, logits, gold, [f"{i}{'ab'[i % 2]}" for i in range(60)], rng)
            folder = root / "training_dynamics"
            for epoch, lost in ((2, "7b"), (3, "7b"), (4, "12a")):
                path = folder / f"dynamics_epoch_{epoch}.jsonl"
                path.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if json.loads(line)["guid"] != lost))
            path = folder / "dynamics_epoch_3.jsonl"
            records = [json.loads(line) for line in path.read_text().splitlines()]
            for record in records:
                if record["guid"] == "30a":
                    record["gold"] = (record["gold"] + 1) % 3
            path.write_text("".join(json.dumps(record) + "\n" for record in records))
        return root

    def metrics_rows(self, path):
        return [json.loads(line) for line in open(path, encoding="utf-8").read().splitlines()]


@pytest.fixture()
def env(files, capsys, monkeypatch):
    return Env(files, capsys, monkeypatch)


def _help_case(command):
    def check(env, spelling):
        out, _ = env.ok(*([command] if command else []), spelling)
        assert out.startswith(f"usage: datacarto{' ' + command if command else ''}")
        assert "examples:" in out

    return check


_case("", "-h", "--help")(_help_case(""))
for _command in ("compute", "regions", "select", "suspects", "label-issues", "flip-labels", "noise-report", "plot", "html", "import-cartography", "demo"):
    _case(_command, "-h", "--help")(_help_case(_command))


@_case("", "--version")
def _(env, spelling):
    out, _ = env.ok(spelling)
    assert out.strip() == f"datacarto {dc.__version__}"


# compute


@_case("compute", "-o", "--output")
def _(env, spelling):
    out = env.dir / "out.csv"
    env.ok("compute", env.dynamics, env.labels, spelling, out)
    assert dc.DataMap.read(out).frame.equals(dc.DataMap.from_dynamics(env.dynamics, env.labels).frame)


@_case("compute", "--shards")
def _(env, spelling):
    probs, y = env.files["probs"], env.files["y"]
    folder = env.dir / "shards"
    folder.mkdir(exist_ok=True)
    for k, (a, b) in enumerate(((0, 2), (2, E))):
        np.save(folder / f"epochs-{k}.npy", probs[a:b])
    for k, (a, b) in enumerate(((0, 25), (25, N))):
        np.save(folder / f"rank{k}.npy", probs[:, a:b])
    whole = dc.compute(probs, y, epochs=(1, E))
    for pattern, axis in (("epochs-*.npy", "epochs"), ("rank*.npy", "examples")):
        out = env.dir / f"shards-{axis}.parquet"
        env.ok("compute", folder / pattern, env.labels, spelling, axis, "--burn-in", "1", "-o", out)
        stats = dc.DataMap.read(out).statistics
        assert stats.epochs == (1, E)
        np.testing.assert_array_equal(stats.forgetting, whole.forgetting)
        np.testing.assert_allclose(stats.variability, whole.variability, rtol=1e-12, atol=1e-12)
    assert "rank1.npy: shape: shards by epochs must all hold the same examples" in env.error("compute", folder / "rank*.npy", env.labels, spelling, "epochs", "-o", env.dir / "x.parquet")
    assert "no file matches" in env.error("compute", folder / "none-*.npy", env.labels, spelling, "examples", "-o", env.dir / "x.parquet")


@_case("compute", "--scheduler", "--workers")
def _(env, spelling):
    distributed = pytest.importorskip("distributed")
    probs, y = env.files["probs"], env.files["y"]
    folder = env.dir / "cluster-shards"
    folder.mkdir(exist_ok=True)
    for k, (a, b) in enumerate(((0, 40), (40, 90), (90, N))):
        np.save(folder / f"rank{k}.npy", probs[:, a:b])
    out = env.dir / "cluster.parquet"
    if spelling == "--workers":
        env.ok("compute", folder / "rank*.npy", env.labels, "--shards", "examples", spelling, "2", "-o", out)
    else:
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
            env.ok("compute", folder / "rank*.npy", env.labels, "--shards", "examples", spelling, cluster.scheduler_address, "-o", out)
    stats, whole = dc.DataMap.read(out).statistics, dc.compute(probs, y)
    np.testing.assert_array_equal(stats.first_learned, whole.first_learned)
    np.testing.assert_allclose(stats.confidence, whole.confidence, rtol=1e-12, atol=1e-12)
    if spelling == "--workers":
        # with --compat: the original's np.argmax tie rule on the cluster too (tied rows differ)
        tied = probs.copy()
        tied[:, :40] = 1.0 / L
        for k, (a, b) in enumerate(((0, 40), (40, 90), (90, N))):
            np.save(folder / f"rank{k}.npy", tied[:, a:b])
        env.ok("compute", folder / "rank*.npy", env.labels, "--shards", "examples", spelling, "2", "--compat", "cartography", "-o", out)
        got, want = dc.DataMap.read(out).statistics, dc.compute(tied, y, compat="cartography")
        assert got.correctness_rule == "argmax_first_index"
        np.testing.assert_array_equal(got.correctness, want.correctness)
        assert not np.array_equal(got.correctness, dc.compute(tied, y).correctness)
    value = "2" if spelling == "--workers" else "tcp://127.0.0.1:1"
    assert f"{spelling}: runs shard files on a Dask cluster" in env.error("compute", env.dynamics, env.labels, spelling, value, "-o", env.dir / "x.parquet")


@_case("compute", "--task")
def _(env, spelling):
    one_column = env.dir / "one.npy"
    np.save(one_column, env.files["probs"][:, :, :1].copy())
    y = env.dir / "y01.npy"
    np.save(y, (env.files["y"] > 0).astype(np.int64))
    env.ok("compute", one_column, y, spelling, "binary", "-o", env.dir / "b.parquet")
    assert dc.DataMap.read(env.dir / "b.parquet").task == "binary"
    assert "task 'multiclass' expects at least 2 label columns" in env.error("compute", one_column, y, spelling, "multiclass", "-o", env.dir / "m.parquet")


@_case("compute", "--correctness")
def _(env, spelling):
    env.ok("compute", env.dynamics, env.labels, spelling, "threshold", "-o", env.dir / "c.parquet")
    dm = dc.DataMap.read(env.dir / "c.parquet")
    assert dm.correctness_rule == "threshold"
    np.testing.assert_array_equal(dm.statistics.correctness, dc.compute(env.files["probs"], env.files["y"], correctness="threshold").correctness)
    # np.argmax's rule: on tied rows the first largest column wins, where argmax counts a tie wrong
    tied = env.files["probs"].copy()
    tied[:, :40] = 1.0 / L
    np.save(env.dir / "tied.npy", tied)
    env.ok("compute", env.dir / "tied.npy", env.labels, spelling, "argmax_first_index", "-o", env.dir / "f.parquet")
    dm = dc.DataMap.read(env.dir / "f.parquet")
    assert dm.correctness_rule == "argmax_first_index"
    expected = dc.compute(tied, env.files["y"], correctness="argmax_first_index").correctness
    np.testing.assert_array_equal(dm.statistics.correctness, expected)
    np.testing.assert_array_equal(expected[:40], (env.files["y"][:40] == 0).astype(float))  # class 0 wins every tie
    assert not np.array_equal(expected, dc.compute(tied, env.files["y"], correctness="argmax").correctness)


@_case("compute", "--threshold")
def _(env, spelling):
    env.ok("compute", env.dynamics, env.labels, "--correctness", "threshold", spelling, "0.3", "-o", env.dir / "t.parquet")
    dm = dc.DataMap.read(env.dir / "t.parquet")
    assert dm.threshold == 0.3
    np.testing.assert_array_equal(dm.statistics.correctness, dc.compute(env.files["probs"], env.files["y"], correctness="threshold", threshold=0.3).correctness)
    assert env.error("compute", env.dynamics, env.labels, spelling, "2", "-o", env.dir / "t.parquet").startswith("datacarto: error: --threshold: expected a probability")


@_case("compute", "--epochs")
def _(env, spelling):
    env.ok("compute", env.dynamics, env.labels, spelling, "1:4", "-o", env.dir / "e.parquet")
    dm = dc.DataMap.read(env.dir / "e.parquet")
    assert dm.epochs == (1, 4)
    np.testing.assert_array_equal(dm.statistics.confidence, dc.compute(env.files["probs"], env.files["y"], epochs=(1, 4)).confidence)


@_case("compute", "--burn-in")
def _(env, spelling):
    env.ok("compute", env.dynamics, env.labels, spelling, "2", "-o", env.dir / "b.parquet")
    assert dc.DataMap.read(env.dir / "b.parquet").epochs == (2, E)
    assert "--burn-in: expected a non-empty window" in env.error("compute", env.dynamics, env.labels, spelling, "9", "-o", env.dir / "b.parquet")


@_case("compute", "--ddof")
def _(env, spelling):
    env.ok("compute", env.dynamics, env.labels, spelling, "1", "-o", env.dir / "d.parquet")
    dm = dc.DataMap.read(env.dir / "d.parquet")
    assert dm.ddof == 1
    np.testing.assert_array_equal(dm.statistics.variability, dc.compute(env.files["probs"], env.files["y"], ddof=1).variability)
    assert env.error("compute", env.dynamics, env.labels, spelling, str(E), "-o", env.dir / "d.parquet").startswith("datacarto: error: --ddof: ")


@_case("compute", "--threads")
def _(env, spelling):
    env.ok("compute", env.dynamics, env.labels, spelling, "1", "-o", env.dir / "t1.parquet")
    assert dc.DataMap.read(env.dir / "t1.parquet").frame.equals(dc.DataMap.from_dynamics(env.dynamics, env.labels).frame)
    for bad in ("0", str(2**70), "two"):
        assert "argument --threads: expected a thread count >= 1" in env.error("compute", env.dynamics, env.labels, spelling, bad)


@_case("compute", "--metadata")
def _(env, spelling):
    env.ok("compute", env.dynamics, env.labels, spelling, env.metadata(), "-o", env.dir / "m.parquet")
    assert dc.DataMap.read(env.dir / "m.parquet").frame["source"].to_list() == ["a", "b"] * (N // 2)


@_case("compute", "--text-column")
def _(env, spelling):
    env.ok("compute", env.dynamics, env.labels, "--metadata", env.metadata(), spelling, "sentence", "-o", env.dir / "m.parquet")
    assert dc.DataMap.read(env.dir / "m.parquet").frame["text"][7] == "sentence number 7"
    assert "--text-column: expected a column of" in env.error("compute", env.dynamics, env.labels, "--metadata", env.metadata(), spelling, "nope")


@_case("compute", "--label-names")
def _(env, spelling):
    names = env.dir / "names.txt"
    names.write_text("zero\none\ntwo\n")
    for value in (names, "zero,one,two"):
        env.ok("compute", env.dynamics, env.labels, spelling, value, "-o", env.dir / "n.parquet")
        assert dc.DataMap.read(env.dir / "n.parquet").label_names == ["zero", "one", "two"]


@_case("compute", "--compat")
def _(env, spelling):
    # the port in two commands: import at float64, compute with the original's rules
    env.ok("import-cartography", env.original_logs(), "-o", env.dir / "orig.npy", "--dtype", "float64")
    dynamics, labels = env.dir / "orig.npy", env.dir / "orig-labels.npy"
    env.ok("compute", dynamics, labels, spelling, "cartography", "-o", env.dir / "compat.parquet")
    dm = dc.DataMap.read(env.dir / "compat.parquet")
    assert dm.frame.equals(dc.DataMap.from_dynamics(str(dynamics), str(labels), compat="cartography").frame)
    stats = dc.compute(dynamics, labels, compat="cartography")
    assert dm.correctness_rule == stats.correctness_rule == "argmax_first_index"
    np.testing.assert_array_equal(dm.statistics.correctness, stats.correctness)
    # the original's numbers, and not the default rule's (the logs hold exact ties)
    table = dc.importers.cartography_frame(stats, (env.dir / "orig-guids.txt").read_text().split())
    original = cartography_metrics(env.original_logs())
    assert table.select("guid", "correctness", "forgetfulness").equals(original.select("guid", "correctness", "forgetfulness"))
    assert not np.array_equal(stats.correctness, dc.compute(dynamics, labels).correctness)
    assert env.error("compute", dynamics, labels, spelling, "cartography", "--correctness", "argmax").startswith("datacarto: error: --correctness: --compat cartography uses")
    assert "argument --compat: invalid choice" in env.error("compute", dynamics, labels, spelling, "allenai")


def _progress_cases(command, argv, marker):
    @_case(command, "-q", "--quiet")
    def _(env, spelling):
        env.fake_terminal()
        _, err = env.ok(*argv(env))
        assert marker in err  # a terminal shows the bar by default ...
        _, err = env.ok(*argv(env), spelling)
        assert marker not in err  # ... and -q hides it

    @_case(command, "--progress")
    def _(env, spelling):
        _, err = env.ok(*argv(env))
        assert marker not in err  # not a terminal: no bar by default ...
        _, err = env.ok(*argv(env), spelling)
        assert marker in err  # ... unless forced


_progress_cases("compute", lambda env: ["compute", env.dynamics, env.labels, "-o", env.dir / "p.parquet"], "statistics over")
_progress_cases("import-cartography", lambda env: ["import-cartography", env.cartography_logs(), "-o", env.dir / "imp.npy", "--overwrite"], "epochs:")


# regions


def _regions_case(*spellings, extra, expected_rule, library_kwargs):
    @_case("regions", *spellings)
    def _(env, spelling):
        out = env.dir / "r.parquet"
        before = open(env.stats, "rb").read()
        env.ok("regions", env.stats, *[spelling if a == "OPT" else a for a in extra], "-o", out)
        dm = dc.DataMap.read(out)
        assert dm.region_rule == expected_rule
        assert dm.region_counts() == dc.DataMap.read(env.stats).regions(**library_kwargs).region_counts()
        assert open(env.stats, "rb").read() == before


_regions_case("--rule", extra=["OPT", "quantiles"], expected_rule={"rule": "quantiles", "fraction": {"easy": 0.33, "ambiguous": 0.33, "hard": 0.33}}, library_kwargs={"rule": "quantiles"})
_regions_case("--easy", extra=["OPT", "0.7"], expected_rule={"rule": "thresholds", "easy": 0.7, "hard": 0.4}, library_kwargs={"easy": 0.7})
_regions_case("--hard", extra=["OPT", "0.2"], expected_rule={"rule": "thresholds", "easy": 0.6, "hard": 0.2}, library_kwargs={"hard": 0.2})
_regions_case("--fraction", extra=["--rule", "quantiles", "OPT", "0.2"], expected_rule={"rule": "quantiles", "fraction": {"easy": 0.2, "ambiguous": 0.2, "hard": 0.2}}, library_kwargs={"rule": "quantiles", "fraction": 0.2})
_regions_case(
    "--aleatoric-quantile",
    extra=["--rule", "data-iq", "OPT", "0.3"],
    expected_rule={"rule": "data-iq", "easy": 0.75, "hard": 0.25, "aleatoric_quantile": 0.3},
    library_kwargs={"rule": "data-iq", "aleatoric_quantile": 0.3},
)


@_case("regions", "-o", "--output")
def _(env, spelling):
    before = open(env.stats, "rb").read()
    for out in (env.dir / "r.csv", env.dir / "r.parquet"):
        env.ok("regions", env.stats, spelling, out)
        assert "region" in dc.DataMap.read(out).frame.columns
    assert open(env.stats, "rb").read() == before
    assert "--output: " in env.error("regions", env.stats, spelling, env.dir / "missing" / "r.parquet")


@_case("regions", "--in-place")
def _(env, spelling):
    env.ok("regions", env.stats, spelling)
    assert dc.DataMap.read(env.stats).region_rule == {"rule": "thresholds", "easy": 0.6, "hard": 0.4}
    assert not [p for p in os.listdir(env.dir) if p.endswith(".tmp")]
    assert "argument -o/--output: not allowed with argument --in-place" in env.error("regions", env.stats, spelling, "-o", env.dir / "x.parquet")


# select


def _select_rows(env, *argv):
    out = env.dir / "sel.parquet"
    env.ok("select", env.stats, *argv, "-o", out)
    return pl.read_parquet(out)


@_case("select", "-n")
def _(env, spelling):
    rows = _select_rows(env, "hard", spelling, "4")
    assert rows["example"].to_list() == dc.DataMap.read(env.stats).regions().select("hard", n=4)["example"].to_list()
    assert "argument -n: expected a count >= 0, found '-1'" in env.error("select", env.stats, "hard", spelling, "-1")


@_case("select", "--by")
def _(env, spelling):
    rows = _select_rows(env, "hard", spelling, "margin")
    assert rows["margin"].to_list() == sorted(rows["margin"].to_list())


@_case("select", "--descending")
def _(env, spelling):
    rows = _select_rows(env, "hard", "--by", "margin", spelling)
    assert rows["margin"].to_list() == sorted(rows["margin"].to_list(), reverse=True)


@_case("select", "--label")
def _(env, spelling):
    out = env.dir / "sel.csv"
    env.ok("select", env.multilabel_stats, "ambiguous", spelling, "anger", "-o", out)
    rows = pl.read_csv(out)
    assert set(rows["label_name"].to_list()) == {"anger"}
    assert rows["example"].to_list() == dc.DataMap.read(env.multilabel_stats).regions().select("ambiguous", label=1)["example"].to_list()


def _select_rule_case(spelling_, extra, library_kwargs):
    @_case("select", spelling_)
    def _(env, spelling):
        rows = _select_rows(env, "easy", *[spelling if a == "OPT" else a for a in extra])
        expected = dc.DataMap.read(env.stats).regions(**library_kwargs).select("easy")
        assert rows["example"].to_list() == expected["example"].to_list()


_select_rule_case("--rule", ["OPT", "quantiles"], {"rule": "quantiles"})
_select_rule_case("--easy", ["OPT", "0.5"], {"easy": 0.5})
_select_rule_case("--hard", ["OPT", "0.3"], {"hard": 0.3})
_select_rule_case("--fraction", ["--rule", "quantiles", "OPT", "0.1"], {"rule": "quantiles", "fraction": 0.1})
_select_rule_case("--aleatoric-quantile", ["--rule", "data-iq", "OPT", "0.9"], {"rule": "data-iq", "aleatoric_quantile": 0.9})


def _table_output_cases(command, argv):
    @_case(command, "-o", "--output")
    def _(env, spelling):
        expected = None
        for suffix in ("csv", "tsv", "parquet", "jsonl"):
            out = env.dir / f"rows.{suffix}"
            env.ok(*argv(env), spelling, out)
            rows = pl.read_parquet(out) if suffix == "parquet" else pl.read_ndjson(out) if suffix == "jsonl" else pl.read_csv(out, separator="\t" if suffix == "tsv" else ",")
            expected = rows["example"].to_list() if expected is None else expected
            assert rows["example"].to_list() == expected and rows.height > 0
        assert "--output: " in env.error(*argv(env), spelling, env.dir / "rows.xlsx")

    @_case(command, "--columns")
    def _(env, spelling):
        out, _ = env.ok(*argv(env), spelling, "example,margin")
        assert out.startswith("shape: (") and out.split("\n")[0].endswith(", 2)")  # two columns
        assert "example" in out and "margin" in out and "confidence" not in out
        assert "--columns: unknown column(s) nope" in env.error(*argv(env), spelling, "nope")


_table_output_cases("select", lambda env: ["select", env.stats, "hard"])
_table_output_cases("suspects", lambda env: ["suspects", env.stats])
_table_output_cases("label-issues", lambda env: ["label-issues", env.stats])


# suspects


@_case("suspects", "-n")
def _(env, spelling):
    out = env.dir / "s.csv"
    env.ok("suspects", env.stats, spelling, "6", "-o", out)
    assert pl.read_csv(out)["example"].to_list() == dc.DataMap.read(env.stats).suspects(6)["example"].to_list()


@_case("suspects", "--label")
def _(env, spelling):
    out = env.dir / "s.csv"
    env.ok("suspects", env.multilabel_stats, spelling, "2", "-n", "5", "-o", out)
    assert pl.read_csv(out)["label_name"].to_list() == ["gratitude"] * 5
    assert "--label: expected a label index or one of the label names, found 'fear'" in env.error("suspects", env.multilabel_stats, spelling, "fear")


@_case("suspects", "--score")
def _(env, spelling):
    out = env.dir / "s.csv"
    for name in dc.noise.SCORE_NAMES:
        env.ok("suspects", env.stats, spelling, name, "-n", "7", "-o", out)
        expected = dc.DataMap.read(env.stats).suspects(7, score=name)
        rows = pl.read_csv(out)
        assert rows["example"].to_list() == expected["example"].to_list()
        np.testing.assert_allclose(rows["suspicion"].to_numpy(), expected["suspicion"].to_numpy())
    assert "invalid choice: 'aum'" in env.error("suspects", env.stats, spelling, "aum")


# label-issues, flip-labels, noise-report


def test_label_issues_prints_the_estimate_and_the_flagged_rows(env):
    out, err = env.ok("label-issues", env.stats)
    issues = dc.DataMap.read(env.stats).label_issues()
    assert err.startswith(f"estimated wrong labels: {issues.n_issues} of {N} ")
    assert f"flagged: {issues.n_flagged} " in err
    assert out.startswith(f"shape: ({issues.n_flagged}, ")
    path = env.dir / "issues.csv"
    env.ok("label-issues", env.stats, "-o", path)
    rows = pl.read_csv(path)
    assert sorted(rows["example"].to_list()) == np.flatnonzero(issues.flags).tolist()
    assert rows["suggested"].to_list() == issues.suggested[rows["example"].to_numpy()].tolist()
    assert rows["suspicion"].to_list() == sorted(rows["suspicion"].to_list(), reverse=True)


@_case("label-issues", "--dynamics")
def _(env, spelling):
    moved = env.dir / "moved.npy"
    np.save(moved, np.load(env.dynamics))
    stats = env.dir / "no-dynamics.parquet"
    dc.DataMap.read(env.stats).with_dynamics(str(env.dir / "gone.npy")).write(stats)
    assert "gone.npy" in env.error("label-issues", stats)
    out, _ = env.ok("label-issues", stats, spelling, moved)
    assert out == env.ok("label-issues", env.stats)[0]
    assert "--dynamics" in env.error("label-issues", stats, spelling, env.dir / "missing.npy")


def _flip(env, *extra):
    out = env.dir / "noisy.npy"
    for path in (out, env.dir / "noisy-flipped.npy"):
        if path.exists():
            path.unlink()
    env.ok("flip-labels", env.labels, "-o", out, *extra)
    return np.load(out), np.load(env.dir / "noisy-flipped.npy") if (env.dir / "noisy-flipped.npy").exists() else None


@_case("flip-labels", "-o", "--output")
def _(env, spelling):
    out = env.dir / "n.npy"
    env.ok("flip-labels", env.labels, spelling, out)
    flips = dc.noise.flip_labels(env.files["y"], 0.1, seed=0)
    np.testing.assert_array_equal(np.load(out), flips.labels)
    np.testing.assert_array_equal(np.load(env.dir / "n-flipped.npy"), flips.flipped)
    assert "--output: " in env.error("flip-labels", env.labels, spelling, env.dir / "n.csv")


@_case("flip-labels", "--flipped")
def _(env, spelling):
    where = env.dir / "which.npy"
    env.ok("flip-labels", env.labels, "-o", env.dir / "n2.npy", spelling, where)
    np.testing.assert_array_equal(np.load(where), dc.noise.flip_labels(env.files["y"], 0.1, seed=0).flipped)


@_case("flip-labels", "--fraction")
def _(env, spelling):
    noisy, flipped = _flip(env, spelling, "0.25")
    assert flipped.size == round(0.25 * N) and (noisy[flipped] != env.files["y"][flipped]).all()
    assert "--fraction: expected a fraction in [0, 1), found 1.5" in env.error("flip-labels", env.labels, "-o", env.dir / "x.npy", spelling, "1.5")


@_case("flip-labels", "--kind")
def _(env, spelling):
    noisy, flipped = _flip(env, spelling, "pairs", "--fraction", "0.3")
    y = env.files["y"]
    assert all(len(set(noisy[flipped][y[flipped] == c].tolist())) == 1 for c in range(L))


@_case("flip-labels", "--confusion")
def _(env, spelling):
    weights = env.dir / "confusion.npy"
    np.save(weights, np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    noisy, flipped = _flip(env, "--kind", "confusion", spelling, weights)
    np.testing.assert_array_equal(noisy[flipped], (env.files["y"][flipped] + 1) % 3)
    assert "--confusion: only applies to --kind confusion, found --kind uniform" in env.error("flip-labels", env.labels, "-o", env.dir / "x.npy", spelling, weights)


@_case("flip-labels", "--seed")
def _(env, spelling):
    _, first = _flip(env, spelling, "1")
    _, again = _flip(env, spelling, "1")
    _, other = _flip(env, spelling, "2")
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def _noisy_stats(env):
    """A map recorded on labels flipped by the CLI (the fixture's model follows the clean labels)."""
    stats = env.dir / "noisy.parquet"
    if not stats.exists():
        env.ok("flip-labels", env.labels, "-o", env.dir / "noisy-labels.npy", "--flipped", env.dir / "flipped.npy")
        env.ok("compute", env.dynamics, env.dir / "noisy-labels.npy", "-o", stats, "-q")
    return str(stats), str(env.dir / "flipped.npy")


def test_noise_report_prints_every_score(env):
    stats, flipped = _noisy_stats(env)
    out, _ = env.ok("noise-report", stats, flipped)
    expected = dc.noise.evaluate(dc.DataMap.read(stats), np.load(flipped))
    assert out.strip() == str(expected)
    assert all(name in out for name in dc.noise.SCORE_NAMES) and "label_issues: estimated" in out


@_case("noise-report", "-k")
def _(env, spelling):
    stats, flipped = _noisy_stats(env)
    out, _ = env.ok("noise-report", stats, flipped, spelling, "5")
    assert "precision at k = 5" in out
    assert str(dc.noise.evaluate(dc.DataMap.read(stats), np.load(flipped), k=5)) == out.strip()


@_case("noise-report", "--dynamics")
def _(env, spelling):
    stats, flipped = _noisy_stats(env)
    lost = env.dir / "lost.parquet"
    dc.DataMap.read(stats).with_dynamics(str(env.dir / "gone.npy")).write(lost)
    out, _ = env.ok("noise-report", lost, flipped)
    assert "label_issues" not in out  # no dynamics at hand: the scores only
    out, _ = env.ok("noise-report", lost, flipped, spelling, env.dynamics)
    assert "label_issues: estimated" in out


@_case("noise-report", "-o", "--output")
def _(env, spelling):
    stats, flipped = _noisy_stats(env)
    for suffix in ("csv", "parquet", "jsonl"):
        out = env.dir / f"report.{suffix}"
        env.ok("noise-report", stats, flipped, spelling, out)
        table = pl.read_parquet(out) if suffix == "parquet" else pl.read_ndjson(out) if suffix == "jsonl" else pl.read_csv(out)
        assert table["score"].to_list() == list(dc.noise.SCORE_NAMES)
        assert table.columns == ["score", "auroc", "auprc", "precision_at_k"]
    assert "--output: " in env.error("noise-report", stats, flipped, spelling, env.dir / "r.xlsx")


# plot


def _png_size(path):
    header = open(path, "rb").read(24)
    assert header.startswith(b"\x89PNG")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@_case("plot", "-o", "--output")
def _(env, spelling):
    for suffix, magic in (("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")):
        env.ok("plot", env.stats, spelling, env.dir / f"map.{suffix}")
        assert (env.dir / f"map.{suffix}").read_bytes().startswith(magic)
    assert "--output: " in env.error("plot", env.stats, spelling, env.dir / "map.gif")


@_case("plot", "--label")
def _(env, spelling):
    env.ok("plot", env.multilabel_stats, spelling, "joy", "-o", env.dir / "joy.png")
    _png_size(env.dir / "joy.png")
    assert "--label: " in env.error("plot", env.multilabel_stats, spelling, "fear", "-o", env.dir / "fear.png")


@_case("plot", "--color")
def _(env, spelling):
    env.ok("plot", env.stats, spelling, "forgetting", "-o", env.dir / "f.svg", "--scatter")
    env.ok("plot", env.stats, "-o", env.dir / "c.svg", "--scatter")
    assert (env.dir / "f.svg").read_text() != (env.dir / "c.svg").read_text()
    assert env.error("plot", env.stats, spelling, "nope", "-o", env.dir / "n.png").startswith("datacarto: error: --color: expected a statistic")


@_case("plot", "--density")
def _(env, spelling):
    env.ok("plot", env.stats, spelling, "-o", env.dir / "d.svg")
    assert "<image" in (env.dir / "d.svg").read_text()  # the density is a raster


@_case("plot", "--scatter")
def _(env, spelling):
    env.ok("plot", env.stats, spelling, "-o", env.dir / "s.svg")
    assert "<image" not in (env.dir / "s.svg").read_text()  # every point a vector marker


@_case("plot", "--title")
def _(env, spelling):
    env.ok("plot", env.stats, spelling, "A title of my own", "-o", env.dir / "t.svg")
    assert "A title of my own" in (env.dir / "t.svg").read_text()


@_case("plot", "--trajectories")
def _(env, spelling):
    env.ok("plot", env.stats, spelling, "1,2,3", "-o", env.dir / "traj.svg", "--title", "unused")
    assert (env.dir / "traj.svg").read_text() != ""
    assert "--trajectories: expected comma-separated example indices" in env.error("plot", env.stats, spelling, "1,x", "-o", env.dir / "t.png")


@_case("plot", "--dynamics")
def _(env, spelling):
    stats = env.stats
    moved = env.dir / "moved.npy"
    os.replace(env.dynamics, moved)  # the path stored with the statistics no longer exists
    assert env.run("plot", stats, "--trajectories", "1,2", "-o", env.dir / "t.png")[0] == 2
    env.ok("plot", stats, "--trajectories", "1,2", spelling, moved, "-o", env.dir / "t.png")
    _png_size(env.dir / "t.png")
    # another run's dynamics of the same shape: refused, naming the file and the flag to use
    other = env.dir / "other.npy"
    probs = np.load(moved)
    np.save(other, probs[:, ::-1])
    error = env.error("plot", stats, "--trajectories", "1,2", spelling, other, "-o", env.dir / "u.png")
    assert error.startswith(f"datacarto: error: {other}: --dynamics: epochs ") and "not the recording this map was computed from" in error and error.endswith("give the map its own with --dynamics PATH"), error
    assert not (env.dir / "u.png").exists()


@_case("plot", "--dpi")
def _(env, spelling):
    env.ok("plot", env.stats, spelling, "40", "-o", env.dir / "small.png")
    env.ok("plot", env.stats, spelling, "80", "-o", env.dir / "large.png")
    small, large = _png_size(env.dir / "small.png"), _png_size(env.dir / "large.png")
    assert large[0] == pytest.approx(2 * small[0], abs=2)
    assert "argument --dpi: expected a resolution >= 1" in env.error("plot", env.stats, spelling, "0", "-o", env.dir / "z.png")


# html


@_case("html", "-o", "--output")
def _(env, spelling):
    env.ok("html", env.stats, spelling, env.dir / "page.html")
    assert "<html" in (env.dir / "page.html").read_text().lower()
    assert "--output: " in env.error("html", env.stats, spelling, env.dir / "page.txt")


@_case("html", "--text-column")
def _(env, spelling):
    stats = env.dir / "meta.parquet"
    env.ok("compute", env.dynamics, env.labels, "--metadata", env.metadata(), "-o", stats)
    env.ok("html", stats, spelling, "sentence", "-o", env.dir / "page.html")
    assert "sentence number 17" in (env.dir / "page.html").read_text()
    assert "--text-column: " in env.error("html", stats, spelling, "nope", "-o", env.dir / "page.html")


@_case("html", "--color")
def _(env, spelling):
    env.ok("html", env.stats, spelling, "margin", "-o", env.dir / "a.html")
    env.ok("html", env.stats, "-o", env.dir / "b.html")
    assert (env.dir / "a.html").read_text() != (env.dir / "b.html").read_text()
    assert env.error("html", env.stats, spelling, "nope", "-o", env.dir / "c.html").startswith("datacarto: error: --color: expected one of")


@_case("html", "--title")
def _(env, spelling):
    env.ok("html", env.stats, spelling, "My page", "-o", env.dir / "t.html")
    assert "<title>My page</title>" in (env.dir / "t.html").read_text()


# import-cartography


@_case("import-cartography", "-o", "--output")
def _(env, spelling):
    env.ok("import-cartography", env.cartography_logs(), spelling, env.dir / "imp.npy")
    assert np.load(env.dir / "imp.npy").shape == (3, 5, 2)
    assert np.load(env.dir / "imp-labels.npy").tolist() == [0, 1, 0, 1, 0]
    assert (env.dir / "imp-guids.txt").read_text().split() == ["100", "101", "102", "103", "104"]
    assert "--output: " in env.error("import-cartography", env.cartography_logs(), spelling, env.dir / "imp.txt")


@_case("import-cartography", "--labels")
def _(env, spelling):
    env.ok("import-cartography", env.cartography_logs(), "-o", env.dir / "imp.npy", spelling, env.dir / "gold.npy")
    assert np.load(env.dir / "gold.npy").tolist() == [0, 1, 0, 1, 0]
    assert not (env.dir / "imp-labels.npy").exists()


@_case("import-cartography", "--guids")
def _(env, spelling):
    env.ok("import-cartography", env.cartography_logs(), "-o", env.dir / "imp.npy", spelling, env.dir / "ids.txt")
    assert (env.dir / "ids.txt").read_text() == "100\n101\n102\n103\n104\n"


@_case("import-cartography", "--dtype")
def _(env, spelling):
    env.ok("import-cartography", env.cartography_logs(), "-o", env.dir / "imp.npy", spelling, "float16")
    assert np.load(env.dir / "imp.npy").dtype == np.float16


@_case("import-cartography", "--id-field")
def _(env, spelling):
    env.ok("import-cartography", env.cartography_logs("idx"), "-o", env.dir / "imp.npy", spelling, "idx")
    assert np.load(env.dir / "imp.npy").shape == (3, 5, 2)
    assert "guid" in env.error("import-cartography", env.cartography_logs("idx"), "-o", env.dir / "other.npy")


@_case("import-cartography", "--overwrite")
def _(env, spelling):
    argv = ["import-cartography", env.cartography_logs(), "-o", env.dir / "imp.npy"]
    env.ok(*argv)
    (env.dir / "imp-guids.txt").write_text("old\n")
    line = env.error(*argv)
    assert "pass --overwrite to replace it" in line and "overwrite=True" not in line
    assert (env.dir / "imp-guids.txt").read_text() == "old\n"  # refused before anything was written
    env.ok(*argv, spelling)
    assert (env.dir / "imp-guids.txt").read_text().split()[0] == "100"


@_case("import-cartography", "--metrics")
def _(env, spelling):
    work = env.dir / "work"
    work.mkdir()
    env.monkeypatch.chdir(work)  # where the default dynamics.npy would land
    logs, out = env.original_logs(), work / "td_metrics.jsonl"
    _, err = env.ok("import-cartography", logs, spelling, out)
    expected = cartography_metrics(logs)
    assert env.metrics_rows(out) == expected.to_dicts()
    assert list(env.metrics_rows(out)[0]) == ["guid", "index", "threshold_closeness", "confidence", "variability", "correctness", "forgetfulness"]
    assert f"wrote {out}" in err
    assert os.listdir(work) == ["td_metrics.jsonl"]  # --metrics alone: no dynamics file
    # with -o: both, from the same logs
    env.ok("import-cartography", logs, spelling, env.dir / "both.jsonl", "-o", env.dir / "both.npy")
    assert env.metrics_rows(env.dir / "both.jsonl") == expected.to_dicts()
    imported = import_cartography(logs, env.dir / "lib.npy")
    np.testing.assert_array_equal(np.load(env.dir / "both.npy"), np.load(imported.path))
    # an existing file is refused before any work, and kept
    before = out.read_bytes()
    line = env.error("import-cartography", logs, spelling, out, "--burn-out", "2")
    assert "--metrics: exists (pass --overwrite to replace it)" in line
    assert out.read_bytes() == before
    env.ok("import-cartography", logs, spelling, out, "--burn-out", "2", "--overwrite")
    assert env.metrics_rows(out) == cartography_metrics(logs, burn_out=2).to_dicts()
    assert "--metrics: " in env.error("import-cartography", logs, spelling, env.dir / "m.csv")
    line = env.error("import-cartography", logs, spelling, env.dir / "same.jsonl", "-o", env.dir / "d.npy", "--guids", env.dir / "same.jsonl")
    assert "--output, --labels, --guids, --metrics: expected 4 different files" in line


@_case("import-cartography", "--burn-out")
def _(env, spelling):
    logs = env.original_logs()
    env.ok("import-cartography", logs, "--metrics", env.dir / "b2.jsonl", spelling, "2")
    rows = env.metrics_rows(env.dir / "b2.jsonl")
    assert rows == cartography_metrics(logs, burn_out=2).to_dicts()
    assert rows != cartography_metrics(logs).to_dicts()  # the FIRST 2 of 5 epochs, not all
    assert max(row["correctness"] for row in rows) == 2
    assert "argument --burn-out: expected an epoch count >= 1, found '0'" in env.error("import-cartography", logs, "--metrics", env.dir / "b0.jsonl", spelling, "0")
    assert env.error("import-cartography", logs, spelling, "2").startswith("datacarto: error: --burn-out: applies to the metrics table only")


@_case("import-cartography", "--include-ci")
def _(env, spelling):
    logs = env.original_logs()
    env.ok("import-cartography", logs, "--metrics", env.dir / "ci.jsonl", spelling, "--burn-out", "3")
    rows = env.metrics_rows(env.dir / "ci.jsonl")
    assert rows == cartography_metrics(logs, burn_out=3, include_ci=True).to_dicts()
    plain = cartography_metrics(logs, burn_out=3)["variability"].to_numpy()
    assert (np.array([row["variability"] for row in rows]) > plain).any()
    line = env.error("import-cartography", logs, "--metrics", env.dir / "ci1.jsonl", spelling, "--burn-out", "1")
    assert line == "datacarto: error: --include-ci: expected at least 2 epochs (the term var^2 / (E - 1)), found --burn-out 1"
    assert env.error("import-cartography", logs, spelling).startswith("datacarto: error: --include-ci: applies to the metrics table only")


@_case("import-cartography", "--guid-transform")
def _(env, spelling):
    logs = env.lenient_logs()
    env.ok("import-cartography", logs, "--metrics", env.dir / "q.jsonl", spelling, "strip_last")
    with pytest.warns(CartographyWarning):
        expected = cartography_metrics(logs, guid_transform="strip_last")
    rows = env.metrics_rows(env.dir / "q.jsonl")
    assert rows == expected.to_dicts()
    assert len(rows) == 60 and all(not row["guid"].endswith(("a", "b")) for row in rows)
    env.ok("import-cartography", logs, "-o", env.dir / "q.npy", spelling, "strip_last", "--missing", "drop", "--gold-changes", "first")
    guids = (env.dir / "q-guids.txt").read_text().split()
    with pytest.warns(CartographyWarning):
        imported = import_cartography(logs, env.dir / "lib.npy", guid_transform="strip_last", missing="drop", gold_changes="first")
    assert guids == imported.guids and "7" not in guids and "30" in guids
    # integer guids cannot lose a character: the error names the flag
    assert "--guid-transform strip_last expects non-empty string ids" in env.error("import-cartography", env.cartography_logs(), "-o", env.dir / "i.npy", spelling, "strip_last")


@_case("import-cartography", "--gold-changes")
def _(env, spelling):
    logs = env.lenient_logs()
    base = ["import-cartography", logs, "--guid-transform", "strip_last", "--missing", "drop"]
    line = env.error(*base, "-o", env.dir / "g.npy")  # a changed gold label is refused by default ...
    assert "gold: expected" in line and "pass --gold-changes first to keep epoch 0's" in line
    assert not (env.dir / "g.npy").exists() and not (env.dir / "g-labels.npy").exists()
    _, err = env.ok(*base, "-o", env.dir / "g.npy", spelling, "first")  # ... kept from epoch 0 on request, with a count
    assert "datacarto: warning: " in err and "gold: 1 of 58 example(s) have a different gold label in a later epoch" in err
    with pytest.warns(CartographyWarning):
        imported = import_cartography(logs, env.dir / "lib.npy", guid_transform="strip_last", missing="drop", gold_changes="first")
    assert np.load(env.dir / "g-labels.npy").tolist() == imported.labels.tolist()
    np.testing.assert_array_equal(np.load(env.dir / "g.npy"), np.load(imported.path))
    # the metrics table keeps epoch 0's label by default, as the original does; error refuses
    assert "pass --gold-changes first" in env.error(*base, "--metrics", env.dir / "g.jsonl", spelling, "error")
    assert not (env.dir / "g.jsonl").exists()


@_case("import-cartography", "--missing")
def _(env, spelling):
    logs = env.lenient_logs()
    base = ["import-cartography", logs, "--guid-transform", "strip_last", "--gold-changes", "first"]
    _, err = env.ok(*base, "--metrics", env.dir / "drop.jsonl", spelling, "drop")
    with pytest.warns(CartographyWarning):
        expected = cartography_metrics(logs, guid_transform="strip_last", missing="drop")
    rows = env.metrics_rows(env.dir / "drop.jsonl")
    assert rows == expected.to_dicts() and len(rows) == 58 and not {"7", "12"} & {row["guid"] for row in rows}
    assert "datacarto: warning: " in err and "dropped 2 of 60 example(s) missing from some epoch" in err
    assert "CartographyWarning" not in err and "warnings.warn" not in err  # one line per warning, not Python's two
    # average (the metrics default, the original's) keeps them over the epochs they have
    _, err = env.ok(*base, "--metrics", env.dir / "avg.jsonl", spelling, "average")
    assert len(env.metrics_rows(env.dir / "avg.jsonl")) == 60 and "2 of 60 example(s) are missing from some of the 5 epoch(s)" in err
    env.ok(*base, "--metrics", env.dir / "default.jsonl")
    assert env.metrics_rows(env.dir / "avg.jsonl") == env.metrics_rows(env.dir / "default.jsonl")
    # the dynamics file: refused by default (naming the flag to pass), dropped on request
    assert "pass --missing drop to leave such examples out" in env.error(*base, "-o", env.dir / "m.npy")
    env.ok(*base, "-o", env.dir / "m.npy", spelling, "drop")
    assert np.load(env.dir / "m.npy").shape == (5, 58, 3)
    # a dense file cannot average
    for extra in ([], ["--metrics", env.dir / "x.jsonl"]):
        line = env.error(*base, "-o", env.dir / "a.npy", spelling, "average", *extra)
        assert line.startswith("datacarto: error: --missing: average applies to --metrics only")
    assert not (env.dir / "a.npy").exists() and not (env.dir / "x.jsonl").exists()


# demo (each run trains a small model: runs are shared between the cases)

_DEMO_RUNS = {}


def _demo(env, *argv, terminal=False):
    key = (argv, terminal)
    if key not in _DEMO_RUNS:
        pytest.importorskip("sklearn")
        folder = env.dir / f"demo{len(_DEMO_RUNS)}"
        if terminal:
            env.fake_terminal()
        _, err = env.ok("demo", "-o", folder, "--epochs", "2", *argv)
        _DEMO_RUNS[key] = (folder, err, np.load(folder / "flipped.npy"), dc.read_header(folder / "dynamics.npy")["shape"])
    return _DEMO_RUNS[key]


@_case("demo", "-o", "--output")
def _(env, spelling):
    folder = env.dir / "demo-out"
    env.ok("demo", spelling, folder, "--epochs", "2")
    for name in ("dynamics.npy", "labels.npy", "flipped.npy", "statistics.parquet", "map.png", "map.html"):
        assert (folder / name).is_file(), name


@_case("demo", "--seed")
def _(env, spelling):
    assert not np.array_equal(_demo(env, spelling, "3")[2], _demo(env, spelling, "4")[2])


@_case("demo", "--epochs")
def _(env, spelling):
    assert _demo(env, "--seed", "3")[3][0] == 2


@_case("demo", "--flip-fraction")
def _(env, spelling):
    flipped, shape = _demo(env, spelling, "0.1")[2:]
    assert len(flipped) == round(0.1 * shape[1])


@_case("demo", "-q", "--quiet")
def _(env, spelling):
    assert "epochs:" not in _demo(env, spelling, terminal=True)[1]


@_case("demo", "--progress")
def _(env, spelling):
    assert "epochs:" not in _demo(env, "--seed", "3")[1]  # stderr is not a terminal here
    assert "epochs:" in _demo(env, spelling)[1]


def test_every_option_has_a_case():
    options = _parser_options()
    assert len(options) > 60
    missing = [f"{c} {o}".strip() for c, o in options if (c, o) not in OPTION_CASES]
    assert not missing, f"options without a test case: {missing}"
    stale = [f"{c} {o}".strip() for c, o in OPTION_CASES if (c, o) not in options]
    assert not stale, f"cases for options the parser no longer has: {stale}"


@pytest.mark.parametrize("command, option", _parser_options(), ids=lambda value: value or "datacarto")
def test_option(env, command, option):
    assert (command, option) in OPTION_CASES, f"no test case for {command} {option}"
    OPTION_CASES[(command, option)](env, option)


# ---------------------------------------------------------------------- misuse: one line naming the flag


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["compute", "{dynamics}", "{labels}", "--label-names", "a,b,c,d"], "--label-names"),
        (["compute", "{dynamics}", "{labels}", "--epochs", "5:9"], "--epochs"),
        (["compute", "{dynamics}", "{labels}", "--threshold", "1.5"], "--threshold"),
        (["compute", "{dynamics}", "{labels}", "-o", "{dir}/no/such/folder/s.parquet"], "--output"),
        (["compute", "{dynamics}", "{labels}", "-o", "{dir}/s.xlsx"], "--output"),
        (["plot", "{stats}", "-o", "{dir}/m.png", "--color", "nope"], "--color"),
        (["html", "{stats}", "-o", "{dir}/m.html", "--color", "nope"], "--color"),
        (["select", "{stats}", "easy", "--by", "nope"], "--by"),
        (["regions", "{stats}", "--rule", "quantiles", "--easy", "0.9"], "--easy"),
        (["regions", "{stats}", "--fraction", "1.5", "--rule", "quantiles"], "--fraction"),
        (["compute", "{dynamics}", "{labels}", "--compat", "cartography", "--correctness", "threshold"], "--correctness"),
        (["compute", "{dynamics}", "{labels}", "--compat", "cartography", "--ddof", "1"], "--ddof"),
        (["compute", "{ml_dynamics}", "{ml_labels}", "--compat", "cartography"], "--compat"),
        (["import-cartography", "{logs}", "--missing", "average"], "--missing"),
        (["import-cartography", "{logs}", "--missing", "average", "--metrics", "{dir}/m.jsonl", "-o", "{dir}/d.npy"], "--missing"),
        (["import-cartography", "{logs}", "--burn-out", "3"], "--burn-out"),
        (["import-cartography", "{logs}", "--include-ci", "-o", "{dir}/d.npy"], "--include-ci"),
        (["import-cartography", "{logs}", "--metrics", "{dir}/m.jsonl", "--include-ci", "--burn-out", "1"], "--include-ci"),
        (["import-cartography", "{logs}", "--metrics", "{dir}/m.jsonl", "--dtype", "float64"], "--dtype"),
        (["import-cartography", "{logs}", "--metrics", "{dir}/m.jsonl", "--labels", "{dir}/y.npy"], "--labels"),
        (["import-cartography", "{logs}", "--metrics", "{dir}/m.jsonl", "--guids", "{dir}/g.txt"], "--guids"),
        (["import-cartography", "{logs}", "--metrics", "{dir}/m.parquet"], "--metrics"),
        (["import-cartography", "{logs}", "--metrics", "{dir}/no/such/folder/m.jsonl"], "--metrics"),
    ],
)
def test_misuse_prints_one_line_naming_the_flag(env, argv, flag):
    values = {"dir": env.dir, "dynamics": env.dynamics, "labels": env.labels, "stats": env.stats}
    if any("{logs}" in a for a in argv):
        values["logs"] = env.lenient_logs()
    if any("{ml_" in a for a in argv):
        env.multilabel_stats  # writes ml.npy and ml-y.npy
        values.update(ml_dynamics=env.dir / "ml.npy", ml_labels=env.dir / "ml-y.npy")
    code, out, err = env.run(*[a.format(**values) for a in argv])
    assert code == 2
    assert len(err.splitlines()) == 1, err  # no usage, no traceback, no progress bar: one line
    assert err.startswith(f"datacarto: error: {flag}: ") or f": {flag}: " in err, err
    assert err.count("error:") == 1


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["compute", "{dynamics}", "{labels}", "--threads", "0"], "argument --threads: expected a thread count >= 1"),
        (["compute", "{dynamics}", "{labels}", "--threads", str(2**70)], "argument --threads: expected a thread count >= 1"),
        (["compute", "{dynamics}", "{labels}", "-q", "--progress"], "argument --progress: not allowed with argument -q/--quiet"),
        (["suspects", "{stats}", "-n", "-3"], "argument -n: expected a count >= 0"),
        (["compute", "{dynamics}"], "the following arguments are required: labels"),
    ],
)
def test_usage_errors_show_the_usage_once_then_one_error_line(env, argv, fragment):
    values = {"dir": env.dir, "dynamics": env.dynamics, "labels": env.labels, "stats": env.stats}
    code, _, err = env.run(*[a.format(**values) for a in argv])
    assert code == 2
    assert err.count("usage: datacarto") == 1, err
    last = err.splitlines()[-1]
    assert last.startswith("datacarto: error: ") and not last.startswith("datacarto: error: datacarto")
    assert err.count("error:") == 1
    assert fragment in last, last


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda env: ["--label-names", "a,b"], "--label-names: expected 3 names"),
        (lambda env: ["-o", str(env.dir / "missing" / "s.parquet")], "--output: the folder"),
        (lambda env: ["--metadata", str(env.metadata_with_rows(N - 1))], f"--metadata: expected {N} rows"),
        (lambda env: ["--epochs", "3:2"], "--epochs: expected a non-empty window"),
    ],
)
def test_everything_checkable_is_checked_before_the_progress_bar(env, make, fragment):
    env.metadata_with_rows = lambda rows: _metadata_rows(env.dir, rows)
    code, _, err = env.run("compute", env.dynamics, env.labels, "--progress", *make(env))
    assert code == 2
    assert "statistics over" not in err  # the bar never started
    assert fragment in err and len(err.splitlines()) == 1, err


def _metadata_rows(folder, rows):
    path = folder / "short.csv"
    pl.DataFrame({"text": ["x"] * rows}).write_csv(path)
    return path


def test_labels_out_of_range_and_not_npy_are_caught_before_the_bar(env):
    np.save(env.dir / "wide.npy", np.full(N, L, dtype=np.int64))
    code, _, err = env.run("compute", env.dynamics, env.dir / "wide.npy", "--progress")
    assert code == 2 and "statistics over" not in err
    assert f"wide.npy: labels: expected class indices in [0, {L}), found {L} at index 0" in err
    (env.dir / "text.npy").write_text("0 1 2\n")
    code, _, err = env.run("compute", env.dynamics, env.dir / "text.npy", "--progress")
    assert code == 2 and "statistics over" not in err
    assert "text.npy: labels: expected a .npy file" in err and "not a .npy" in err and "pickle" not in err
    np.save(env.dir / "objects.npy", np.array([0, "a"], dtype=object), allow_pickle=True)
    code, _, err = env.run("compute", env.dynamics, env.dir / "objects.npy", "--progress")
    assert code == 2 and "found dtype object" in err and "pickle" not in err


def test_a_fifo_is_refused_at_once(env):
    fifo = env.dir / "fifo.npy"
    os.mkfifo(fifo)
    for argv in (["compute", fifo, env.labels], ["compute", env.dynamics, fifo]):
        line = env.error(*argv)
        assert "fifo.npy" in line and "expected a regular file, found a FIFO" in line


def test_regions_without_output_writes_nothing(env):
    stats = env.stats
    before = open(stats, "rb").read()
    listing = sorted(os.listdir(env.dir))
    out, err = env.ok("regions", stats, "--rule", "quantiles")
    assert "easy" in out and "nothing written" in err
    assert open(stats, "rb").read() == before
    assert sorted(os.listdir(env.dir)) == listing


def test_regions_in_place_refuses_a_tsv(env):
    tsv = env.dir / "s.tsv"
    dc.DataMap.read(env.stats).frame.write_csv(tsv, separator="\t")
    assert "--in-place: " in env.error("regions", tsv, "--in-place")


def test_progress_bar_shows_on_a_real_terminal_only(files):
    """Through a pseudo-terminal: the bar by default, none with -q, none through a pipe."""
    import fcntl
    import pty
    import struct
    import termios

    def run(*extra, terminal=True):
        argv = [sys.executable, "-m", "datacarto", "compute", str(files["dynamics"]), str(files["labels"]), "-o", str(files["dir"] / "tty.parquet"), *extra]
        if not terminal:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            return result.returncode, result.stderr
        leader, follower = pty.openpty()
        # a fresh pseudo-terminal is 0 columns wide, where tqdm draws nothing: give it a size
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        try:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower)
            os.close(follower)
            chunks = []
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return child.wait(timeout=300), b"".join(chunks).decode("utf-8", "replace")
        finally:
            os.close(leader)

    code, shown = run()
    assert code == 0 and "statistics over 6 epochs" in shown
    code, shown = run("-q")
    assert code == 0 and "statistics over" not in shown and "wrote" in shown
    code, shown = run(terminal=False)
    assert code == 0 and "statistics over" not in shown


# ---------------------------------------------------------------------- failures that are not the user's input


def test_corrupted_parquet_is_one_line_naming_the_file(files, tmp_path, capfd):
    """Footer mutations of a real statistics file: polars raises errors on most and panics (a
    PanicException, with a Rust backtrace on stderr) on some; the CLI prints one line for each."""
    assert main(["compute", str(files["dynamics"]), str(files["labels"]), "-o", str(tmp_path / "good.parquet")]) == 0
    good = (tmp_path / "good.parquet").read_bytes()
    footer = len(good) - 8 - int.from_bytes(good[-8:-4], "little")
    mutations = [("truncated", good[: len(good) // 2])]
    # the column-chunk metadata (where polars 1.x/2.x panics) and the key-value settings
    offsets = [(offset, 0xFF) for offset in range(footer + 200, footer + 360)]
    offsets += [(offset, value) for offset in range(len(good) - 8 - 300, len(good) - 8, 5) for value in (0x00, 0x7F)]
    for offset, value in offsets:
        corrupted = bytearray(good)
        corrupted[offset] = value
        mutations.append((f"byte {offset} = {value:#x}", bytes(corrupted)))
    bad = tmp_path / "corrupted.parquet"
    failures, panics = [], 0
    for what, data in mutations:
        bad.write_bytes(data)
        try:
            pl.read_parquet(bad)
        except BaseException as exc:  # noqa: B036 - counting polars' panics (BaseException)
            panics += not isinstance(exc, Exception)
        capfd.readouterr()
        code = main(["suspects", str(bad), "-n", "3"])
        captured = capfd.readouterr()
        if code == 0:
            continue  # the mutation hit a byte the reader does not need
        failures.append(what)
        assert code == 2, (what, captured.err)
        assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and "panicked" not in captured.err, (what, captured.err)
        assert captured.err.startswith(f"datacarto: error: {bad}: "), (what, captured.err)
    assert len(failures) >= 10
    assert panics > 0, "no mutation made polars panic: the panic path went untested, pick other bytes"


def test_a_polars_panic_while_reading_is_a_datacarto_error(env, monkeypatch):
    import datacarto.datamap as datamap

    panic = pl.exceptions.PanicException

    def crash(*args, **kwargs):
        raise panic("assertion failed: range.end as u64 <= self.size")

    monkeypatch.setattr(datamap.pl, "read_parquet", crash)
    with pytest.raises(dc.DatacartoError, match="stats.parquet: expected a parquet file, could not read it"):
        dc.DataMap.read(env.dir / "stats.parquet" if (env.dir / "stats.parquet").exists() else _stats_file(env))
    assert env.error("suspects", env.dir / "stats.parquet").endswith("the file looks corrupted)")


def _stats_file(env):
    return env.stats


def test_a_missing_optional_dependency_is_one_line(env, monkeypatch):
    from datacarto import demo
    from datacarto._optional import require

    def needs_a_missing_package(*args, **kwargs):
        require("datacarto_absent_package_for_the_test", "sklearn", feature="the demo")

    monkeypatch.setattr(demo, "run_demo", needs_a_missing_package)
    code, _, err = env.run("demo", "-o", env.dir / "demo")
    assert code == 1
    assert err == 'datacarto: error: the demo needs datacarto_absent_package_for_the_test, which is not installed: pip install "datacarto[sklearn]"\n'


def test_a_blocked_import_in_a_child_process_is_one_line(env):
    script = "import sys; sys.modules['matplotlib'] = None\nfrom datacarto.cli import main\nsys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", script, "plot", env.stats, "-o", str(env.dir / "m.png")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "matplotlib" in result.stderr and result.stderr.startswith("datacarto: error: ")


def test_unexpected_errors_are_one_line_unless_debugging(env, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("something inside broke\nsecond line")

    monkeypatch.setattr(dc.DataMap, "suspects", broken)
    code, _, err = env.run("suspects", env.stats)
    assert code == 1
    assert err == "datacarto: error: unexpected RuntimeError: something inside broke (set DATACARTO_DEBUG=1 for the traceback)\n"
    monkeypatch.setenv("DATACARTO_DEBUG", "1")
    code, _, err = env.run("suspects", env.stats)
    assert code == 1 and "Traceback (most recent call last)" in err and err.endswith("datacarto: error: unexpected RuntimeError: something inside broke\n")


def test_outputs_are_written_beside_and_renamed(env, monkeypatch):
    """Every CLI output goes through datacarto._atomic: a failure while writing leaves the old
    file and no temporary file."""
    from datacarto import _atomic

    stats = env.stats
    targets = {
        "compute": (["compute", env.dynamics, env.labels, "-o", stats], stats),
        "regions": (["regions", stats, "--in-place"], stats),
        "select": (["select", stats, "hard", "-o", env.dir / "sel.csv"], env.dir / "sel.csv"),
        "suspects": (["suspects", stats, "-o", env.dir / "sus.parquet"], env.dir / "sus.parquet"),
        "plot": (["plot", stats, "-o", env.dir / "m.png"], env.dir / "m.png"),
        "import labels": (["import-cartography", env.cartography_logs(), "-o", env.dir / "i.npy", "--overwrite"], env.dir / "i-labels.npy"),
        "import guids": (["import-cartography", env.cartography_logs(), "-o", env.dir / "i.npy", "--overwrite"], env.dir / "i-guids.txt"),
        "import metrics": (["import-cartography", env.cartography_logs(), "--metrics", env.dir / "m.jsonl", "--overwrite"], env.dir / "m.jsonl"),
    }
    real_commit = _atomic._commit
    for what, (argv, target) in targets.items():
        env.ok(*argv)
        before = open(target, "rb").read()

        def failing_commit(tmp, final, target=target):
            if os.path.abspath(final) == os.path.abspath(target):
                raise OSError(28, "No space left on device (simulated)", final)
            real_commit(tmp, final)

        monkeypatch.setattr(_atomic, "_commit", failing_commit)
        code, _, err = env.run(*argv)
        monkeypatch.setattr(_atomic, "_commit", real_commit)
        assert code == 2 and "No space left on device" in err, (what, err)
        assert open(target, "rb").read() == before, what
        assert not [p for p in os.listdir(env.dir) if p.endswith(".tmp")], what


# ---------------------------------------------------------------------- killed and interrupted commands

KILL_TRIALS = 10  # per command; two commands: 20 trials


@pytest.fixture(scope="module")
def large_inputs(tmp_path_factory):
    """Dynamics big enough that writing the statistics takes a while (~300k rows)."""
    folder = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(11)
    n = 300_000
    probs = rng.dirichlet(np.ones(2), size=(4, n)).astype(np.float32)
    np.save(folder / "dynamics.npy", probs)
    np.save(folder / "labels.npy", rng.integers(0, 2, n))
    dm = dc.DataMap.from_dynamics(folder / "dynamics.npy", folder / "labels.npy")
    dm.write(folder / "expected.parquet")
    dc.DataMap.from_dynamics(folder / "dynamics.npy", folder / "labels.npy", epochs=2).write(folder / "old.parquet")
    return folder


def _kill_while_writing(argv, target, trial, new_size):
    """Start ``datacarto argv``, SIGKILL it once its temporary file beside ``target`` exists and
    holds about trial/KILL_TRIALS of the new file's bytes; return True when the kill landed
    before the rename (the temporary file is left behind)."""
    import signal

    folder, name = os.path.split(target)
    prefix = f".{name}."
    child = subprocess.Popen([sys.executable, "-m", "datacarto", *map(str, argv)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wanted = new_size * trial // KILL_TRIALS
        while child.poll() is None:
            temporaries = [p for p in os.listdir(folder) if p.startswith(prefix) and p.endswith(".tmp")]
            if temporaries:
                try:
                    size = os.path.getsize(os.path.join(folder, temporaries[0]))
                except FileNotFoundError:
                    continue  # renamed just now
                if size >= wanted:
                    child.send_signal(signal.SIGKILL)
                    break
    finally:
        child.wait(timeout=600)
    leftovers = [p for p in os.listdir(folder) if p.startswith(prefix) and p.endswith(".tmp")]
    for leftover in leftovers:  # what a SIGKILL leaves behind: the old file is untouched
        os.unlink(os.path.join(folder, leftover))
    return bool(leftovers) and child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("command", ["compute", "regions"])
def test_sigkill_mid_write_leaves_the_old_or_the_new_file(large_inputs, tmp_path, command):
    old_bytes = (large_inputs / "old.parquet").read_bytes()
    target = tmp_path / "stats.parquet"
    if command == "compute":
        argv = ["compute", large_inputs / "dynamics.npy", large_inputs / "labels.npy", "-o", target, "-q"]
        new_frame = dc.DataMap.read(large_inputs / "expected.parquet").frame
    else:
        argv = ["regions", target, "--in-place"]
        new_frame = dc.DataMap.read(large_inputs / "old.parquet").regions().frame
    new_size = (large_inputs / "expected.parquet").stat().st_size
    landed = kept_old = got_new = 0
    for trial in range(KILL_TRIALS):
        target.write_bytes(old_bytes)  # every trial starts from an existing output
        landed += _kill_while_writing(argv, str(target), trial, new_size)
        data = target.read_bytes()
        if data == old_bytes:
            kept_old += 1
        else:
            assert dc.DataMap.read(target).frame.equals(new_frame), f"trial {trial}: neither the old nor the new file"
            got_new += 1
    print(f"{command}: {KILL_TRIALS} SIGKILLs, {landed} mid-write, {kept_old} kept the old file, {got_new} the new one, 0 bytes lost")
    assert kept_old + got_new == KILL_TRIALS
    assert landed >= KILL_TRIALS // 2, f"only {landed} of {KILL_TRIALS} kills landed while the new file was being written"
    assert kept_old >= landed  # a kill before the rename always leaves the old file


def test_sigint_during_compute_exits_130_and_keeps_the_old_output(large_inputs, tmp_path):
    import signal

    target = tmp_path / "stats.parquet"
    old_bytes = (large_inputs / "old.parquet").read_bytes()
    target.write_bytes(old_bytes)
    argv = [sys.executable, "-m", "datacarto", "compute", str(large_inputs / "dynamics.npy"), str(large_inputs / "labels.npy"), "-o", str(target), "--progress"]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = b""
    try:
        # The bar is drawn once every check has passed, as the computation starts: interrupt
        # then. Wherever the signal lands afterwards (in the Rust kernel or in Python before
        # the write), the output must not be replaced.
        while b"statistics over" not in seen:
            chunk = os.read(child.stderr.fileno(), 4096)
            assert chunk, f"the command ended before its progress bar: {seen!r}"
            seen += chunk
        child.send_signal(signal.SIGINT)
        rest = child.stderr.read()
    finally:
        child.wait(timeout=600)
        child.stderr.close()
    err = (seen + rest).decode("utf-8", "replace")
    assert child.returncode == 130, err
    assert err.rstrip().endswith("datacarto: interrupted") and "Traceback" not in err, err
    assert target.read_bytes() == old_bytes
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
