"""import_cartography: the original Cartography code's training_dynamics/ logs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List

import numpy as np
import pytest
import scipy.special

import datacarto as dc
from datacarto import reference
from datacarto.importers import import_cartography

N, K, E = 40, 3, 4


def guid_of(i: int) -> str:
    return f"snli-{i:04d}"


def build_logs(root: Path, n: int = N, k: int = K, epochs: int = E, seed: int = 0, guid=guid_of) -> np.ndarray:
    """Write training_dynamics/dynamics_epoch_{e}.jsonl under ``root``; return logits [E, n, k] in guid order."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(epochs, n, k))
    gold = rng.integers(0, k, n)
    folder = root / "training_dynamics"
    folder.mkdir(parents=True, exist_ok=True)
    for e in range(epochs):
        with open(folder / f"dynamics_epoch_{e}.jsonl", "w") as f:
            for i in rng.permutation(n):  # each epoch in its own shuffled order
                f.write(json.dumps({"guid": guid(int(i)), f"logits_epoch_{e}": logits[e, i].tolist(), "gold": int(gold[i])}) + "\n")
    np.save(root / "gold.npy", gold)
    return logits


def epoch_lines(root: Path, e: int) -> List[str]:
    return (root / "training_dynamics" / f"dynamics_epoch_{e}.jsonl").read_text().splitlines(keepends=True)


def rewrite(root: Path, e: int, lines: List[str]) -> None:
    (root / "training_dynamics" / f"dynamics_epoch_{e}.jsonl").write_text("".join(lines))


def test_import_matches_softmax_of_the_logs_in_epoch0_order(tmp_path) -> None:
    logits = build_logs(tmp_path)
    gold = np.load(tmp_path / "gold.npy")
    result = import_cartography(tmp_path, tmp_path / "out.npy")
    first = [json.loads(line)["guid"] for line in epoch_lines(tmp_path, 0)]
    assert result.guids == first  # rows follow dynamics_epoch_0.jsonl
    rows = np.array([int(g.split("-")[1]) for g in result.guids])
    np.testing.assert_array_equal(result.labels, gold[rows])
    assert (result.n_epochs, result.n_classes, result.path) == (E, K, str(tmp_path / "out.npy"))
    want = scipy.special.softmax(logits[:, rows], axis=2)
    got = np.load(tmp_path / "out.npy")
    assert got.dtype == np.float32 and got.shape == (E, N, K)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    stats, ref = result.compute(), reference.compute(want, result.labels)
    np.testing.assert_allclose(stats.confidence, ref.confidence, atol=1e-6)
    np.testing.assert_allclose(stats.variability, ref.variability, atol=1e-6)
    assert not list(tmp_path.glob(".out.npy.*.tmp"))  # no temporary file left beside the output


def test_accepts_the_training_dynamics_folder_itself_and_float64(tmp_path) -> None:
    logits = build_logs(tmp_path, guid=lambda i: i)  # integer guids, as pandas writes them
    result = import_cartography(tmp_path / "training_dynamics", tmp_path / "o.npy", dtype="float64")
    rows = np.array(result.guids)
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), scipy.special.softmax(logits[:, rows], axis=2), rtol=1e-13)


def test_logs_written_by_pandas_like_the_original_code(tmp_path) -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, size=(3, 25, 4)).astype(np.float32)
    gold = rng.integers(0, 4, 25)
    folder = tmp_path / "training_dynamics"
    folder.mkdir()
    for e in range(3):
        order = rng.permutation(25)
        frame = pd.DataFrame({"guid": order, f"logits_epoch_{e}": logits[e, order].tolist(), "gold": gold[order]})
        frame.to_json(folder / f"dynamics_epoch_{e}.jsonl", lines=True, orient="records")
    (folder / "notes.txt").write_text("other files are ignored")
    result = import_cartography(tmp_path, tmp_path / "o.npy")
    rows = np.array(result.guids)
    np.testing.assert_array_equal(result.labels, gold[rows])
    want = scipy.special.softmax(logits[:, rows].astype(np.float64), axis=2)
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), want, rtol=1e-6)  # pandas prints 10 digits


def test_custom_id_field(tmp_path) -> None:
    folder = tmp_path / "training_dynamics"
    folder.mkdir()
    for e in range(2):
        rows = [{"id": name, f"logits_epoch_{e}": [0.0, float(e)], "gold": 1} for name in ("x", "y")]
        (folder / f"dynamics_epoch_{e}.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:: 1 if e else -1]) + "\n\n")
    result = import_cartography(tmp_path, tmp_path / "o.npy", id_field="id")
    assert result.guids == ["y", "x"]
    with pytest.raises(dc.DatacartoError, match="line 1: guid: expected the key"):
        import_cartography(tmp_path, tmp_path / "p.npy")


@pytest.mark.parametrize(
    "case,pattern",
    [
        ("missing", r"dynamics_epoch_2.jsonl: guid: expected all 40 examples of epoch 0, found 1 missing \(first: 'snli-"),
        ("duplicate", r"dynamics_epoch_1.jsonl: line 6: guid: expected each example once per epoch, found 'snli-\d+' again \(first on line 3\)"),
        ("unknown", r"dynamics_epoch_3.jsonl: line 2: guid: expected an example of epoch 0, found 'stranger', absent from dynamics_epoch_0.jsonl"),
        ("gold", r"dynamics_epoch_2.jsonl: line 5: gold: expected \d for 'snli-\d+' \(as on line \d+ of dynamics_epoch_0.jsonl\), found"),
        ("length", r"dynamics_epoch_1.jsonl: line 4: logits_epoch_1: expected 3 logits \(as in the first row of epoch 0\), found 2"),
        ("length0", r"dynamics_epoch_0.jsonl: line 7: logits_epoch_0: expected 3 logits"),
        ("gap", r"epochs: expected consecutive epochs 0..3, found epoch\(s\) \[2\] missing"),
        ("json", r"dynamics_epoch_1.jsonl: line 9: expected a JSON object, found invalid JSON"),
        ("nan", r"dynamics_epoch_3.jsonl: line 8: logits_epoch_3: expected finite logits, found nan \(class 1\)"),
        ("key", r"dynamics_epoch_2.jsonl: line 3: logits_epoch_2: expected the key"),
        ("range", r"dynamics_epoch_0.jsonl: line 2: gold: expected a class index in \[0, 3\), found 3"),
        ("bool", r"dynamics_epoch_1.jsonl: line 1: gold: expected a class index in \[0, 3\), found True"),
        ("one-logit", r"dynamics_epoch_0.jsonl: line 1: logits_epoch_0: expected at least 2 logits"),
    ],
)
def test_malformed_logs_are_rejected_naming_file_and_line(tmp_path, case, pattern) -> None:
    build_logs(tmp_path)

    def edit(e: int, line: int, change) -> None:
        lines = epoch_lines(tmp_path, e)
        record = json.loads(lines[line - 1])
        change(record)
        lines[line - 1] = json.dumps(record) + "\n"
        rewrite(tmp_path, e, lines)

    if case == "missing":
        rewrite(tmp_path, 2, epoch_lines(tmp_path, 2)[:-1])
    elif case == "duplicate":
        lines = epoch_lines(tmp_path, 1)
        lines[5] = lines[2]
        rewrite(tmp_path, 1, lines)
    elif case == "unknown":
        edit(3, 2, lambda r: r.update(guid="stranger"))
    elif case == "gold":
        edit(2, 5, lambda r: r.update(gold=(r["gold"] + 1) % K))
    elif case == "length":
        edit(1, 4, lambda r: r.update(logits_epoch_1=r["logits_epoch_1"][:2]))
    elif case == "length0":
        edit(0, 7, lambda r: r.update(logits_epoch_0=r["logits_epoch_0"] + [1.0]))
    elif case == "gap":
        os.remove(tmp_path / "training_dynamics" / "dynamics_epoch_2.jsonl")
    elif case == "json":
        lines = epoch_lines(tmp_path, 1)
        lines[8] = lines[8][:20] + "\n"
        rewrite(tmp_path, 1, lines)
    elif case == "nan":
        edit(3, 8, lambda r: r["logits_epoch_3"].__setitem__(1, float("nan")))
    elif case == "key":
        edit(2, 3, lambda r: r.pop("logits_epoch_2"))
    elif case == "range":
        edit(0, 2, lambda r: r.update(gold=K))
    elif case == "bool":
        edit(1, 1, lambda r: r.update(gold=True))
    elif case == "one-logit":
        edit(0, 1, lambda r: r.update(logits_epoch_0=[0.5]))
    out = tmp_path / "out.npy"
    with pytest.raises(dc.DatacartoError, match=pattern):
        import_cartography(tmp_path, out)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*.tmp"))  # a failed import leaves nothing


def test_missing_or_empty_folders_and_existing_output(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        import_cartography(tmp_path / "nowhere", tmp_path / "o.npy")
    with pytest.raises(dc.DatacartoError, match="found none"):
        import_cartography(tmp_path, tmp_path / "o.npy")
    (tmp_path / "training_dynamics").mkdir()
    (tmp_path / "training_dynamics" / "dynamics_epoch_0.jsonl").write_text("\n")
    with pytest.raises(dc.DatacartoError, match="empty file"):
        import_cartography(tmp_path, tmp_path / "o.npy")

    build_logs(tmp_path)
    out = tmp_path / "o.npy"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        import_cartography(tmp_path, out)
    assert out.read_bytes() == b"precious"
    assert import_cartography(tmp_path, out, overwrite=True).n_epochs == E


def test_guid_transforms(tmp_path) -> None:
    build_logs(tmp_path, guid=lambda i: f"{i:04d}x")
    result = import_cartography(tmp_path, tmp_path / "a.npy", guid_transform="strip_last")
    assert sorted(result.guids) == [f"{i:04d}" for i in range(N)]
    result = import_cartography(tmp_path, tmp_path / "b.npy", guid_transform=lambda g: int(g[:-1]))
    assert sorted(result.guids) == list(range(N))
    with pytest.raises(dc.DatacartoError, match=r"dynamics_epoch_0.jsonl: line 2: guid: expected each example once per epoch, found 0 again"):
        import_cartography(tmp_path, tmp_path / "c.npy", guid_transform=lambda g: 0)
    with pytest.raises(dc.DatacartoError, match=r"line 1: guid: guid_transform failed on '\d+x' \(ValueError"):
        import_cartography(tmp_path, tmp_path / "c.npy", guid_transform=lambda g: int(g))
    with pytest.raises(dc.DatacartoError, match=r"line 1 \(guid_transform of '\d+x'\): guid: expected a string or an integer, found None"):
        import_cartography(tmp_path, tmp_path / "c.npy", guid_transform=lambda g: None)
    with pytest.raises(TypeError, match="guid_transform: expected None, 'strip_last' or a function"):
        import_cartography(tmp_path, tmp_path / "c.npy", guid_transform="strip_first")
    other = tmp_path / "ints"
    build_logs(other, guid=lambda i: i)
    with pytest.raises(dc.DatacartoError, match=r"line 1: guid: guid_transform='strip_last' expects non-empty string ids, found \d+"):
        import_cartography(other, other / "c.npy", guid_transform="strip_last")
    assert not (tmp_path / "c.npy").exists()


def test_later_gold_kept_from_epoch0_and_missing_examples_dropped_with_counts(tmp_path) -> None:
    logits = build_logs(tmp_path)
    lines = epoch_lines(tmp_path, 2)
    record = json.loads(lines[4])
    record["gold"] = (record["gold"] + 1) % K
    lines[4] = json.dumps(record) + "\n"
    rewrite(tmp_path, 2, lines)
    lost = [json.loads(line)["guid"] for line in epoch_lines(tmp_path, 3)[:3]]
    rewrite(tmp_path, 3, epoch_lines(tmp_path, 3)[3:])
    with pytest.warns(dc.importers.CartographyWarning) as caught:
        result = import_cartography(tmp_path, tmp_path / "o.npy", gold_changes="first", missing="drop")
    messages = [str(w.message) for w in caught]
    assert any(f"dropped 3 of {N} example(s) missing from some epoch" in m and f"{N - 3} kept" in m for m in messages)
    assert sorted(result.dropped) == sorted(lost) and len(result.guids) == N - 3 and not set(lost) & set(result.guids)
    if record["guid"] in lost:
        assert result.gold_changed == []
    else:
        assert result.gold_changed == [record["guid"]]
        assert any(f"gold: 1 of {N - 3} example(s) have a different gold label" in m for m in messages)
        assert result.labels[result.guids.index(record["guid"])] != record["gold"]  # epoch 0's label kept
    rows = np.array([int(g.split("-")[1]) for g in result.guids])
    stored = np.load(tmp_path / "o.npy")
    assert stored.shape == (E, N - 3, K)
    np.testing.assert_allclose(stored, scipy.special.softmax(logits[:, rows], axis=2), rtol=1e-6, atol=1e-7)
    with pytest.raises(dc.DatacartoError, match="missing: expected one of 'error', 'drop'"):
        import_cartography(tmp_path, tmp_path / "p.npy", missing="average")
    with pytest.raises(dc.DatacartoError, match="gold_changes: expected one of"):
        import_cartography(tmp_path, tmp_path / "p.npy", gold_changes="last")


def test_no_example_in_every_epoch_is_an_error(tmp_path) -> None:
    build_logs(tmp_path, n=4)
    rewrite(tmp_path, 1, epoch_lines(tmp_path, 1)[:2])
    kept_in_1 = {json.loads(line)["guid"] for line in epoch_lines(tmp_path, 1)}
    rewrite(tmp_path, 2, [line for line in epoch_lines(tmp_path, 2) if json.loads(line)["guid"] not in kept_in_1])
    with pytest.raises(dc.DatacartoError, match="expected at least one example present in every epoch, found none"):
        import_cartography(tmp_path, tmp_path / "o.npy", missing="drop")


def test_warns_when_the_output_lands_inside_training_dynamics(tmp_path) -> None:
    build_logs(tmp_path)
    with pytest.warns(dc.importers.CartographyWarning, match="counts every file in that folder as an epoch"):
        import_cartography(tmp_path, tmp_path / "training_dynamics" / "d.npy")
    with pytest.warns(dc.importers.CartographyWarning):
        (tmp_path / "training_dynamics" / "sub").mkdir()
        import_cartography(tmp_path, tmp_path / "training_dynamics" / "sub" / "d.npy")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import_cartography(tmp_path, tmp_path / "d.npy")  # beside it: no warning
