"""datacarto.torch: IndexedDataset and Recorder with real torch on CPU."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import datacarto as dc  # noqa: E402
from datacarto import reference  # noqa: E402
from datacarto.torch import IndexedDataset, Recorder, with_indices  # noqa: E402
from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

N, D, K = 96, 6, 3


def softmax64(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid64(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def make_data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    w = torch.randn(D, K, generator=g)
    y = (x @ w + 0.8 * torch.randn(N, K, generator=g)).argmax(dim=1)  # noisy: some examples stay hard
    return x, y


def make_mlp(dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(D, 16), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(16, K)
    )


class DictDataset(Dataset):
    """Items are dicts, as Hugging Face style datasets return. Module level: picklable for workers."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "labels": self.y[i]}


# -- import hygiene --------------------------------------------------------------------------


def test_import_datacarto_does_not_import_torch() -> None:
    # (that dc.torch then loads lazily is exercised by every test here)
    code = (
        "import sys, datacarto as dc\n"
        "assert 'torch' not in sys.modules, 'torch imported by import datacarto'\n"
        "assert 'transformers' not in sys.modules, 'transformers imported by import datacarto'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -- IndexedDataset ----------------------------------------------------------------------------


def test_indexed_dataset_tuple_and_dict_items() -> None:
    x, y = make_data()
    ds = IndexedDataset(TensorDataset(x, y))
    assert len(ds) == N
    i, (xi, yi) = ds[5]
    assert i == 5 and torch.equal(xi, x[5]) and yi == y[5]

    dds = with_indices(DictDataset(x, y))
    item = dds[7]
    assert item["index"] == 7 and torch.equal(item["x"], x[7])
    batch = next(iter(DataLoader(dds, batch_size=N, shuffle=True)))
    assert batch["index"].dtype == torch.int64
    assert sorted(batch["index"].tolist()) == list(range(N))
    assert torch.equal(batch["x"], x[batch["index"]])

    # picklable (what DataLoader workers under spawn need)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[3][0] == 3 and torch.equal(clone[3][1][0], x[3])


def test_indexed_dataset_errors() -> None:
    with pytest.raises(dc.DatacartoError, match="map-style"):
        IndexedDataset(iter(range(3)))
    with pytest.raises(dc.DatacartoError, match="'index'"):
        IndexedDataset([{"index": 1}])[0]
    assert IndexedDataset([{"index": 1}], key="row")[0] == {"row": 0, "index": 1}


def test_shuffled_loader_with_workers_yields_matching_indices() -> None:
    x, y = make_data()
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=16, shuffle=True, num_workers=2)
    seen = []
    for index, (xb, yb) in loader:
        assert torch.equal(xb, x[index]) and torch.equal(yb, y[index])
        seen.extend(index.tolist())
    assert sorted(seen) == list(range(N)) and seen != list(range(N))


# -- Recorder: training forward pass ------------------------------------------------------------


def test_record_from_training_pass_with_workers(tmp_path) -> None:
    """Shuffled loader, 2 workers: the file equals softmax of the logits seen in training, row = example."""
    x, y = make_data()
    model = make_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    loader = DataLoader(
        IndexedDataset(TensorDataset(x, y)), batch_size=16, shuffle=True, num_workers=2, persistent_workers=True
    )
    epochs = 4
    manual = np.full((epochs, N, K), np.nan)
    path = tmp_path / "train_pass.npy"
    with Recorder(path, N, K) as rec:
        for e in range(epochs):
            for index, (xb, yb) in loader:
                logits = model(xb)
                loss = torch.nn.functional.cross_entropy(logits, yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                rec.record(index, logits)  # logits still require grad: the recorder detaches
                manual[e, index.numpy()] = logits.detach().double().numpy()
            assert rec.end_epoch() == e + 1
        stats = rec.compute(y)
    assert not np.isnan(manual).any()
    probs = softmax64(manual)
    stored = np.load(path)
    assert stored.shape == (epochs, N, K) and stored.dtype == np.float32
    np.testing.assert_allclose(stored, probs, atol=1e-6)
    expected = reference.compute(probs.astype(np.float32), y.numpy())
    for name in dc.STATISTICS:
        np.testing.assert_allclose(getattr(stats, name), getattr(expected, name), atol=1e-6, err_msg=name)
    # the model learned something, so the statistics are not trivial
    assert stats.correctness.mean() > 0.5 and stats.variability.max() > 0.05


# -- Recorder: evaluation pass ------------------------------------------------------------------


def test_evaluate_pass_matches_eval_mode_outputs(tmp_path) -> None:
    """evaluate() uses eval mode (dropout off) and no grad, restores train mode, records the final model."""
    x, y = make_data(1)
    model = make_mlp(dropout=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=32, shuffle=True)
    path = tmp_path / "eval_pass.npy"
    grad_enabled = []

    def forward(m, batch):
        grad_enabled.append(torch.is_grad_enabled())
        index, (xb, _) = batch
        return index, m(xb)

    with Recorder(path, N, K) as rec:
        for e in range(3):
            model.train()
            for _, (xb, yb) in loader:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
            assert rec.evaluate(model, loader, forward=forward if e == 2 else None) == e + 1
            assert model.training  # restored
            # the default forward gives the same as an explicit eval pass at this point
            model.eval()
            with torch.no_grad():
                want = softmax64(model(x).double().numpy())
            model.train()
            np.testing.assert_allclose(np.load(path)[e], want, atol=1e-6)
    assert grad_enabled and not any(grad_enabled)
    # dropout 0.5 in train mode would give other numbers: eval mode really was used
    with torch.no_grad():
        train_mode = softmax64(model(x).double().numpy())
    assert np.abs(train_mode - np.load(path)[2]).max() > 1e-3


def test_evaluate_dict_batches_and_model_mode_restored_on_error(tmp_path) -> None:
    x, y = make_data(2)

    class DictModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(D, K)

        def forward(self, x):  # a labels kwarg would fail: the default forward must drop it
            return {"logits": self.lin(x)}

    model = DictModel()
    loader = DataLoader(IndexedDataset(DictDataset(x, y)), batch_size=20, shuffle=True)
    with Recorder(tmp_path / "d.npy", N, K) as rec:
        rec.evaluate(model, loader)
        with torch.no_grad():
            np.testing.assert_allclose(np.load(tmp_path / "d.npy")[0], softmax64(model.lin(x).numpy()), atol=1e-6)

    def broken(m, batch):
        raise RuntimeError("boom")

    model.train()
    with Recorder(tmp_path / "e.npy", N, K) as rec:
        with pytest.raises(RuntimeError, match="boom"):
            rec.evaluate(model, loader, forward=broken)
    assert model.training


def test_evaluate_refuses_a_half_recorded_epoch(tmp_path) -> None:
    x, y = make_data()
    model = make_mlp()
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=32)
    with Recorder(tmp_path / "m.npy", N, K) as rec:
        rec.record(torch.arange(4), torch.zeros(4, K))
        with pytest.raises(dc.DatacartoError, match="end_epoch"):
            rec.evaluate(model, loader)


# -- dtypes, tasks, inputs -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_logits(tmp_path, dtype) -> None:
    tdtype = getattr(torch, dtype)
    g = torch.Generator().manual_seed(3)
    logits = (4 * torch.randn(2, N, K, generator=g)).to(tdtype)
    labels = torch.randint(0, K, (N,), generator=g)
    perm = torch.randperm(N, generator=g)
    with Recorder(tmp_path / f"{dtype}.npy", N, K, dtype="float64") as rec:
        for e in range(2):
            for chunk in perm.split(25):
                rec.record(chunk, logits[e, chunk])
            rec.end_epoch()
        stats = rec.compute(labels)
    # half -> float64 is exact, so the stored probabilities are the float64 softmax of those exact values
    want = softmax64(logits.to(torch.float64).numpy())
    np.testing.assert_allclose(np.load(tmp_path / f"{dtype}.npy"), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stats.confidence, reference.compute(want, labels.numpy()).confidence, atol=1e-12)


def test_binary_single_logit_and_multilabel(tmp_path) -> None:
    g = torch.Generator().manual_seed(4)
    one = torch.randn(3, N, generator=g)  # a [B] output per batch
    y = torch.randint(0, 2, (N,), generator=g)
    with Recorder(tmp_path / "b.npy", N, 1, task="binary") as rec:
        for e in range(3):
            for chunk in torch.randperm(N, generator=g).split(40):
                rec.record(chunk, one[e, chunk])
            rec.end_epoch()
        stats = rec.compute(y)
    want = sigmoid64(one.numpy())[:, :, None]
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), want, atol=1e-6)
    np.testing.assert_allclose(
        stats.confidence, reference.compute(want, y.numpy(), task="binary").confidence, atol=1e-6
    )

    multi = torch.randn(2, N, 4, generator=g, dtype=torch.bfloat16)
    ym = torch.randint(0, 2, (N, 4), generator=g)
    with Recorder(tmp_path / "m.npy", N, 4, task="multilabel") as rec:
        for e in range(2):
            rec.record(torch.arange(N), multi[e])
            rec.end_epoch()
        stats = rec.compute(ym)
    want = sigmoid64(multi.double().numpy())
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), want, atol=1e-6)
    assert stats.confidence.shape == (N, 4)


def test_probabilities_inputs(tmp_path) -> None:
    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(torch.randn(N, K, generator=g), dim=1)
    with Recorder(tmp_path / "p.npy", N, K, inputs="probabilities") as rec:
        rec.record(np.arange(N), probs)
        rec.end_epoch()
    np.testing.assert_allclose(np.load(tmp_path / "p.npy")[0], probs.numpy(), atol=1e-7)


# -- errors and lifetime -------------------------------------------------------------------------


def test_epoch_missing_examples_is_refused(tmp_path) -> None:
    x, y = make_data()
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=40, shuffle=True, drop_last=True)
    model = make_mlp()
    with Recorder(tmp_path / "miss.npy", N, K) as rec:
        for index, (xb, _) in loader:
            rec.record(index, model(xb))
        with pytest.raises(dc.DatacartoError):
            rec.end_epoch()
        assert rec.n_epochs == 0


def test_nan_logits_raise_and_bad_arguments(tmp_path) -> None:
    with Recorder(tmp_path / "nan.npy", 4, 2) as rec:
        with pytest.raises(dc.DatacartoError, match="example 3, label 1"):
            rec.record(torch.tensor([2, 3]), torch.tensor([[1.0, 2.0], [0.0, float("nan")]]))
    with pytest.raises(dc.DatacartoError, match="task"):
        Recorder(tmp_path / "t.npy", 4, 2, task="regression")
    with pytest.raises(dc.DatacartoError, match="inputs"):
        Recorder(tmp_path / "i.npy", 4, 2, inputs="scores")
    rec = Recorder(tmp_path / "c.npy", 4, 2)
    rec.close()
    with pytest.raises(dc.DatacartoError, match="closed"):
        rec.record([0], torch.zeros(1, 2))


def test_resume_continues_after_committed_epochs(tmp_path) -> None:
    path = tmp_path / "r.npy"
    logits = torch.randn(3, 10, 2)
    with Recorder(path, 10, 2) as rec:
        rec.record(torch.arange(10), logits[0])
        rec.end_epoch()
        rec.record(torch.arange(5), logits[1][:5])  # never committed: lost on close
    assert dc.read_header(path)["shape"] == (1, 10, 2)
    with Recorder(path, 10, 2, resume=True) as rec:
        assert rec.n_epochs == 1
        for e in (1, 2):
            rec.record(torch.arange(10), logits[e])
            rec.end_epoch()
    np.testing.assert_allclose(np.load(path), softmax64(logits.numpy()), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_half_precision_tensors(tmp_path) -> None:  # pragma: no cover - no GPU in CI
    logits = torch.randn(N, K, device="cuda", dtype=torch.float16, requires_grad=True)
    index = torch.randperm(N, device="cuda")
    with Recorder(tmp_path / "gpu.npy", N, K) as rec:
        rec.record(index, logits[index])
        rec.end_epoch()
    want = softmax64(logits.detach().double().cpu().numpy())
    np.testing.assert_allclose(np.load(tmp_path / "gpu.npy")[0], want, atol=1e-6)


# -- the caller's floating-point mode ----------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_callers_flush_denormal_mode_changes_no_statistic(tmp_path, dtype) -> None:
    """torch.set_flush_denormal(True) sets the calling thread's FTZ/DAZ bits, under which a
    subnormal input reads as zero. The statistics are the file's: the same bits in that mode as
    without it, with one thread or two, from an array or a file, on the narrow, wide, binary and
    tiny-input paths (subnormal values in the gold column and among the others)."""
    rng = np.random.default_rng(3)
    tiny = np.finfo(dtype).smallest_subnormal * 7
    cases = []
    for n_labels, n in ((28, 403), (10, 403), (1, 403), (10, 5)):
        if n_labels == 1:
            p = rng.random((4, n, 1)).astype(dtype)
            labels = rng.integers(0, 2, n)
        else:
            p = rng.dirichlet(np.ones(n_labels) * 0.3, size=(4, n)).astype(dtype)
            labels = rng.integers(0, n_labels, n)
        p[p < 0.05] = tiny
        p[:, ::3][..., 0] = tiny
        path = tmp_path / f"d{n_labels}_{n}.npy"
        np.save(path, p)
        cases += [(p, labels), (str(path), labels)]

    def run_all() -> list:
        return [dc.compute(source, labels, threads=threads) for source, labels in cases for threads in (1, 2)]

    want = run_all()
    assert torch.set_flush_denormal(True)
    try:
        # the mode is on in this thread: numpy's own arithmetic now flushes the subnormal
        assert (np.array([tiny], dtype=dtype) * dtype(1)).item() == 0.0
        got = run_all()
    finally:
        torch.set_flush_denormal(False)
    for w, g in zip(want, got):
        for name in dc.STATISTICS:
            np.testing.assert_array_equal(getattr(g, name), getattr(w, name), err_msg=name)
    # and the subnormals matter: read as zeros (as the mode would have them), they give other results
    p, labels = cases[0]
    flushed = dc.compute(np.where(p == tiny, dtype(0), p), labels, threads=1)
    assert not np.array_equal(flushed.confidence, want[0].confidence)
