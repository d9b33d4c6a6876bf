"""Parity with the original Cartography code (allenai/cartography).

The oracle below re-implements, from a reading of its source, what the original computes:
``selection_utils.read_training_dynamics`` (merge the per-epoch logs by guid, gold label from
epoch 0, a guid absent from epoch 0 is an assertion error) and
``train_dy_filtering.compute_train_dy_metrics`` (per guid: softmax of each epoch's logits,
``np.argmax`` verdicts, the first ``burn_out`` epochs, ``np.mean`` / ``np.std`` or the
``include_ci`` variability, correctness as a count, forgetfulness with 1000 for never-learned).
Logs are written the way its ``log_training_dynamics`` writes them (pandas ``to_json``, records,
lines). Every test compares datacarto's compatibility paths with that oracle: floats to the
rounding of the oracle's softmax, integers exactly.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datacarto as dc
from datacarto import reference
from datacarto.importers import CartographyWarning, cartography_frame, cartography_metrics, import_cartography, write_cartography_metrics

from _helpers import KINDS, make_logits, write_logs  # logs in the original's format, shared with test_cli

# ---------------------------------------------------------------------------------------------
# The oracle: the original's reading and metric logic, re-implemented.


def original_read_training_dynamics(model_dir: Path, strip_last: bool = False, id_field: str = "guid", burn_out: Optional[int] = None) -> Dict[Any, Dict[str, Any]]:
    """Its read_training_dynamics: every file in training_dynamics/ counts as an epoch."""
    dynamics: Dict[Any, Dict[str, Any]] = {}
    folder = model_dir / "training_dynamics"
    n_epochs = len([f for f in os.listdir(folder) if (folder / f).is_file()])
    if burn_out:
        n_epochs = burn_out
    for epoch in range(n_epochs):
        path = folder / f"dynamics_epoch_{epoch}.jsonl"
        assert path.exists()
        with open(path) as f:
            for line in f:
                record = json.loads(line.strip())
                guid = record[id_field] if not strip_last else record[id_field][:-1]
                if guid not in dynamics:
                    assert epoch == 0
                    dynamics[guid] = {"gold": record["gold"], "logits": []}
                dynamics[guid]["logits"].append(record[f"logits_epoch_{epoch}"])
    return dynamics


def softmax_float32(logits: List[float]) -> np.ndarray:
    """torch.nn.functional.softmax(torch.Tensor(logits)): float32 throughout."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max())
    return e / e.sum(dtype=np.float32)


def softmax_float64(logits: List[float]) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def softmax_torch(logits: List[float]) -> np.ndarray:
    import torch

    return torch.nn.functional.softmax(torch.Tensor(logits), dim=-1).numpy()


SOFTMAX: Dict[str, Callable[[List[float]], np.ndarray]] = {"float32": softmax_float32, "float64": softmax_float64}
if importlib.util.find_spec("torch") is not None:
    SOFTMAX["torch"] = softmax_torch
#: how far the oracle's float metrics may sit from datacarto's (float64 softmax) for each softmax
TOLERANCE = {"float32": 2e-7, "torch": 2e-7, "float64": 1e-12}


def original_forgetfulness(trend: List[bool]) -> int:
    if not any(trend):
        return 1000
    learnt, forgotten = False, 0
    for is_correct in trend:
        if learnt and not is_correct:
            learnt, forgotten = False, forgotten + 1
        elif not learnt and is_correct:
            learnt = True
    return forgotten


def original_metrics(dynamics: Dict[Any, Dict[str, Any]], burn_out: int, include_ci: bool, softmax: Callable[[List[float]], np.ndarray]) -> List[Dict[str, Any]]:
    """Its compute_train_dy_metrics (the metrics table; the loss/accuracy table is left out)."""
    total = len(list(dynamics.values())[0]["logits"])
    rows = []
    for index, (guid, record) in enumerate(dynamics.items()):
        probs_trend, correct_trend = [], []
        for epoch_logits in record["logits"]:
            probs_trend.append(float(softmax(epoch_logits)[record["gold"]]))
            correct_trend.append(bool(np.argmax(epoch_logits) == record["gold"]))
        if burn_out < total:
            probs_trend, correct_trend = probs_trend[:burn_out], correct_trend[:burn_out]
        confidence = np.mean(probs_trend)
        if include_ci:
            variability = np.sqrt(np.var(probs_trend) + np.var(probs_trend) * np.var(probs_trend) / (len(probs_trend) - 1))
        else:
            variability = np.std(probs_trend)
        rows.append({
            "guid": guid,
            "index": index,
            "threshold_closeness": confidence * (1 - confidence),
            "confidence": confidence,
            "variability": variability,
            "correctness": sum(correct_trend),
            "forgetfulness": original_forgetfulness(correct_trend),
        })
    return rows


def original_run(model_dir: Path, burn_out: int = 100, include_ci: bool = False, softmax: str = "float32", strip_last: bool = False) -> List[Dict[str, Any]]:
    """Its __main__: read (only burn_out files when burn_out < 100), clamp burn_out, compute."""
    dynamics = original_read_training_dynamics(model_dir, strip_last=strip_last, burn_out=burn_out if burn_out < 100 else None)
    total = len(list(dynamics.values())[0]["logits"])
    return original_metrics(dynamics, min(burn_out, total), include_ci, SOFTMAX[softmax])


# ---------------------------------------------------------------------------------------------
# Logs in the original's format (make_logits, write_logs: tests/_helpers.py) and their checks.


def assert_same_table(frame: Any, oracle: List[Dict[str, Any]], atol: float) -> None:
    """Every column equal: ids and integers exactly, floats within ``atol``."""
    assert frame.columns == ["guid", "index", "threshold_closeness", "confidence", "variability", "correctness", "forgetfulness"]
    assert frame.height == len(oracle)
    for name in ("guid", "index", "correctness", "forgetfulness"):
        assert frame[name].to_list() == [row[name] for row in oracle], name
    for name in ("threshold_closeness", "confidence", "variability"):
        np.testing.assert_allclose(frame[name].to_numpy(), [row[name] for row in oracle], rtol=0, atol=atol, err_msg=name)


@pytest.fixture(params=[(2, "int"), (4, "str")], ids=["K2-int-guids", "K4-str-guids"])
def run_dir(request, tmp_path) -> Path:
    k, guid_kind = request.param
    rng = np.random.default_rng(k)
    logits, gold, kind = make_logits(rng, n=250, k=k, epochs=6)
    guids: List[Any] = list(range(1000, 1250)) if guid_kind == "int" else [f"train-{i}" for i in range(250)]
    write_logs(tmp_path, logits, gold, guids, rng)
    np.save(tmp_path / "kind.npy", kind)
    return tmp_path


# ---------------------------------------------------------------------------------------------
# The parity tests.


@pytest.mark.parametrize("softmax", sorted(SOFTMAX))
@pytest.mark.parametrize("burn_out,include_ci", [(100, False), (4, False), (100, True), (3, True)])
def test_cartography_metrics_equals_the_original(run_dir, softmax, burn_out, include_ci) -> None:
    oracle = original_run(run_dir, burn_out, include_ci, softmax)
    frame = cartography_metrics(run_dir, burn_out=burn_out, include_ci=include_ci)
    assert_same_table(frame, oracle, TOLERANCE[softmax])
    # the logs hold every case the conventions disagree on
    correctness = frame["correctness"].to_numpy()
    assert (frame["forgetfulness"].to_numpy() == 1000).sum() == (correctness == 0).sum() > 0
    assert ((frame["forgetfulness"].to_numpy() > 0) & (correctness > 0)).any()


@pytest.mark.parametrize("burn_out,include_ci", [(100, False), (4, False), (100, True), (2, True)])
def test_compute_compat_on_the_imported_file_equals_the_original(run_dir, tmp_path, burn_out, include_ci) -> None:
    oracle = original_run(run_dir, burn_out, include_ci, "float64")
    imported = import_cartography(run_dir, tmp_path / "dynamics.npy", dtype="float64")
    window = (0, min(burn_out, imported.n_epochs))  # burn_out keeps the FIRST epochs
    stats = dc.compute(imported.path, imported.labels, compat="cartography", epochs=window)
    assert stats.correctness_rule == "argmax_first_index"
    assert_same_table(cartography_frame(stats, imported.guids, include_ci=include_ci), oracle, 1e-12)
    # the numpy reference follows the same rule
    slow = reference.compute(imported.path, imported.labels, compat="cartography", epochs=window)
    for name in ("correctness", "forgetting", "never_learned", "first_learned"):
        np.testing.assert_array_equal(getattr(stats, name), getattr(slow, name), err_msg=name)
    np.testing.assert_allclose(stats.confidence, slow.confidence, rtol=0, atol=1e-14)


def test_the_traps_a_port_falls_into(run_dir, tmp_path) -> None:
    """What differs when the original's conventions are not asked for, and only there."""
    oracle = original_run(run_dir, 4, False, "float64")
    want = np.array([row["correctness"] for row in oracle])
    kind = np.array(KINDS)[np.load(run_dir / "kind.npy")]
    # each row's kind, by the position its guid was made at (guid 1000 + i or "train-i")
    kind = kind[[row["guid"] - 1000 if isinstance(row["guid"], int) else int(row["guid"].split("-")[1]) for row in oracle]]
    wide = import_cartography(run_dir, tmp_path / "wide.npy", dtype="float64")

    # default rule (ties are wrong): differs on exact ties only (near-tie rows hold some too)
    default = dc.compute(wide.path, wide.labels, epochs=(0, 4))
    differs = np.rint(default.correctness * 4).astype(int) != want
    assert "integer_ties" in set(kind[differs]) <= {"integer_ties", "near_tie"}
    # burn_out=4 is epochs=(0, 4), not epochs=4 (which skips the first four)
    skipped = dc.compute(wide.path, wide.labels, compat="cartography", epochs=4)
    assert skipped.n_epochs == 2 and not np.allclose(skipped.confidence, [row["confidence"] for row in oracle])
    # float32 storage ties near-tied logits: verdicts move on near-tie rows only
    narrow = import_cartography(run_dir, tmp_path / "narrow.npy", dtype="float32")
    stats = dc.compute(narrow.path, narrow.labels, compat="cartography", epochs=(0, 4))
    differs = np.rint(stats.correctness * 4).astype(int) != want
    assert differs.any() and set(kind[differs]) == {"near_tie"}
    # ... while the importer's metrics, from the logits, keep them apart
    assert cartography_metrics(run_dir, burn_out=4)["correctness"].to_list() == want.tolist()


def test_lenient_logs_missing_examples_changed_gold_and_strip_last(tmp_path) -> None:
    """QNLI-style guids, an example absent from later epochs, a gold label that changes."""
    rng = np.random.default_rng(7)
    logits, gold, _ = make_logits(rng, n=60, k=3, epochs=5)
    guids = [f"{i}{'ab'[i % 2]}" for i in range(60)]  # the original strips the last character for QNLI
    write_logs(tmp_path, logits, gold, guids, rng)
    folder = tmp_path / "training_dynamics"
    for e, lost in ((2, "7b"), (3, "7b"), (4, "12a")):
        path = folder / f"dynamics_epoch_{e}.jsonl"
        path.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if json.loads(line)["guid"] != lost))
    path = folder / "dynamics_epoch_3.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    changed = next(r for r in records if r["guid"] == "30a")
    changed["gold"] = (changed["gold"] + 1) % 3
    path.write_text("".join(json.dumps(r) + "\n" for r in records))

    for burn_out, include_ci in ((100, False), (4, True)):
        oracle = original_run(tmp_path, burn_out, include_ci, "float64", strip_last=True)
        with pytest.warns(CartographyWarning) as caught:
            frame = cartography_metrics(tmp_path, burn_out=burn_out, include_ci=include_ci, guid_transform="strip_last")
        assert_same_table(frame, oracle, 1e-12)
        text = " | ".join(str(w.message) for w in caught)
        assert "1 of 60 example(s) have a different gold label" in text
        assert f"{2 if burn_out > 4 else 1} of 60 example(s) are missing from some" in text

    with pytest.raises(dc.DatacartoError, match="missing='drop'"):
        import_cartography(tmp_path, tmp_path / "o.npy", guid_transform="strip_last")
    with pytest.raises(dc.DatacartoError, match="gold_changes='first'"), pytest.warns(CartographyWarning, match="dropped 2 of 60"):
        import_cartography(tmp_path, tmp_path / "o.npy", guid_transform="strip_last", missing="drop")
    assert not (tmp_path / "o.npy").exists()
    with pytest.warns(CartographyWarning) as caught:
        imported = import_cartography(tmp_path, tmp_path / "o.npy", guid_transform="strip_last", missing="drop", gold_changes="first", dtype="float64")
    text = " | ".join(str(w.message) for w in caught)
    assert "dropped 2 of 60 example(s) missing from some epoch" in text and "1 of 58 example(s) have a different gold label" in text
    assert sorted(imported.dropped) == ["12", "7"] and imported.gold_changed == ["30"]
    oracle = [row for row in original_run(tmp_path, 100, False, "float64", strip_last=True) if row["guid"] not in ("7", "12")]
    frame = cartography_frame(dc.compute(imported.path, imported.labels, compat="cartography"), imported.guids)
    for row in oracle:
        row["index"] = imported.guids.index(row["guid"])
    assert_same_table(frame, oracle, 1e-12)


def test_write_cartography_metrics_writes_its_jsonl_and_warns_inside_training_dynamics(run_dir) -> None:
    target = run_dir / "td_metrics.jsonl"
    frame = write_cartography_metrics(run_dir, target, burn_out=3)
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert rows == frame.to_dicts() and list(rows[0]) == list(frame.columns)
    with pytest.raises(FileExistsError):
        write_cartography_metrics(run_dir, target)
    with pytest.warns(CartographyWarning, match="counts every file in that folder as an epoch"):
        write_cartography_metrics(run_dir, run_dir / "training_dynamics" / "m.jsonl")


def test_compat_refuses_what_the_original_cannot_mean(run_dir, tmp_path) -> None:
    imported = import_cartography(run_dir, tmp_path / "d.npy")
    with pytest.raises(dc.DatacartoError, match="correctness: compat='cartography'"):
        dc.compute(imported.path, imported.labels, compat="cartography", correctness="argmax")
    with pytest.raises(dc.DatacartoError, match="ddof: compat='cartography'"):
        dc.compute(imported.path, imported.labels, compat="cartography", ddof=1)
    with pytest.raises(dc.DatacartoError, match="compat: expected None or 'cartography'"):
        dc.compute(imported.path, imported.labels, compat="allenai")
    with pytest.raises(dc.DatacartoError, match="found task 'multilabel'"):
        dc.compute(np.full((2, 3, 2), 0.5, np.float32), np.zeros((3, 2), np.uint8), compat="cartography")
    with pytest.raises(dc.DatacartoError, match="burn_out: expected at least 1"):
        cartography_metrics(run_dir, burn_out=0)
    with pytest.raises(TypeError, match="burn_out"):
        cartography_metrics(run_dir, burn_out=2.5)  # type: ignore[arg-type]
    with pytest.raises(dc.DatacartoError, match="include_ci: expected at least 2 epochs"):
        cartography_metrics(run_dir, burn_out=1, include_ci=True)
    with pytest.raises(dc.DatacartoError, match="missing: expected one of"):
        cartography_metrics(run_dir, missing="fill")


# ---------------------------------------------------------------------------------------------
# The first-index rule on stored probabilities: every kernel path against np.argmax.

#: values exact in float16, so ties stay ties in every dtype
TIE_VALUES = [0.0, 0.25, 0.5, 0.75, 1.0]


@st.composite
def tied_dynamics(draw) -> tuple:
    n_epochs = draw(st.integers(1, 4))
    # with AVX-512, rows of 3 to 32 columns are tiled too (float16 past 16 by the row path)
    n_labels = draw(st.sampled_from([1, 2, 3, 4, 7, 10, 20]))
    # past 8 units the tiled kernels run full tiles (the multiclass ones only a whole number of
    # groups of 8); past a block, several blocks
    n = draw(st.sampled_from([1, 5, 9, 16, 17, 40, 2100]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    probs = rng.choice(TIE_VALUES, size=(n_epochs, n, n_labels))
    n_classes = 2 if n_labels == 1 else n_labels
    labels = rng.integers(0, n_classes, n)
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    return probs.astype(dtype), labels


def first_index_verdicts(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """np.argmax == gold per epoch; a one-column value x is the two columns (1 - x, x)."""
    probs = probs.astype(np.float64)
    if probs.shape[2] == 1:
        probs = np.concatenate([1.0 - probs, probs], axis=2)
    return np.argmax(probs, axis=2) == labels[None, :]


@settings(max_examples=60, deadline=None)
@given(tied_dynamics())
def test_first_index_rule_matches_np_argmax_on_every_kernel_path(case) -> None:
    probs, labels = case
    right = first_index_verdicts(probs, labels)
    stats = dc.compute(probs, labels, correctness="argmax_first_index")
    np.testing.assert_array_equal(stats.correctness, right.mean(axis=0))
    np.testing.assert_array_equal(stats.never_learned, ~right.any(axis=0))
    np.testing.assert_array_equal(stats.forgetting, (right[:-1] & ~right[1:]).sum(axis=0))
    compat = dc.compute(probs, labels, compat="cartography")
    np.testing.assert_array_equal(compat.correctness, stats.correctness)
    slow = reference.compute(probs, labels, correctness="argmax_first_index")
    for name in ("correctness", "forgetting", "never_learned", "first_learned"):
        np.testing.assert_array_equal(getattr(stats, name), getattr(slow, name), err_msg=name)
    # the documented default is unchanged: a tie is wrong
    if probs.shape[2] >= 2:
        p = np.take_along_axis(probs.astype(np.float64), labels[None, :, None], axis=2)[..., 0]
        others = probs.astype(np.float64).copy()
        np.put_along_axis(others, labels[None, :, None], -np.inf, axis=2)
        np.testing.assert_array_equal(dc.compute(probs, labels, correctness="argmax").correctness, (p > others.max(axis=2)).mean(axis=0))
