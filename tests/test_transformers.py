"""datacarto.transformers.DataMapCallback with a real (tiny, randomly initialised) transformers model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # Trainer needs it

import datacarto as dc  # noqa: E402
from datacarto import reference  # noqa: E402
from datacarto.transformers import DataMapCallback, _task_of  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)

N, T, VOCAB = 48, 8, 100


def tiny_bert(num_labels: int = 2, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=T,
        num_labels=num_labels,
        **config,
    )
    return BertForSequenceClassification(cfg)


class Tokens(Dataset):
    """Dict items like a tokenized dataset, plus a string column the model does not accept."""

    def __init__(self, labels: torch.Tensor, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, VOCAB, (N, T), generator=g)
        # make the label visible in the first token so the model can learn it
        first = labels if labels.ndim == 1 else labels[:, 0].long()
        self.ids[:, 0] = 1 + first
        self.mask = torch.ones(N, T, dtype=torch.long)
        self.mask[: N // 4, T // 2 :] = 0
        self.labels = labels

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict:
        return {
            "input_ids": self.ids[i],
            "attention_mask": self.mask[i],
            "labels": self.labels[i],
            "text": f"example {i}",  # removed by remove_unused_columns via the trainer's collator
        }


def args_for(tmp_path, epochs: int, **kw) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=epochs,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=5e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        **kw,
    )


def eval_logits(model: torch.nn.Module, ds: Tokens) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ds.ids, attention_mask=ds.mask).logits.double().numpy()


def test_callback_records_every_epoch_in_dataset_order(tmp_path) -> None:
    labels = torch.randint(0, 2, (N,), generator=torch.Generator().manual_seed(1))
    ds = Tokens(labels)
    model = tiny_bert()
    path = tmp_path / "dynamics.npy"
    callback = DataMapCallback(path, n_examples=N)
    trainer = Trainer(
        model=model,
        args=args_for(tmp_path, 3, gradient_accumulation_steps=2),
        train_dataset=ds,
        callbacks=[callback],
    )
    trainer.train()

    assert dc.read_header(path)["shape"] == (3, N, 2)
    stored = np.load(path)
    # the last epoch is the model's own eval-mode output on example i, in row i
    logits = eval_logits(model, ds)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(stored[-1], z / z.sum(axis=1, keepdims=True), atol=1e-6)
    # training moved the probabilities between epochs
    assert np.abs(stored[0] - stored[-1]).max() > 1e-3
    assert callback.task == "multiclass" and callback.n_epochs == 3
    np.testing.assert_array_equal(callback.labels, labels.numpy())
    stats = callback.compute()
    expected = reference.compute(stored, labels.numpy())
    for name in dc.STATISTICS:
        np.testing.assert_allclose(getattr(stats, name), getattr(expected, name), atol=1e-6, err_msg=name)


def test_callback_multilabel_uses_sigmoid(tmp_path) -> None:
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 2, (N, 3), generator=g).float()
    ds = Tokens(labels, seed=3)
    model = tiny_bert(num_labels=3, problem_type="multi_label_classification")
    path = tmp_path / "multi.npy"
    callback = DataMapCallback(path)
    Trainer(model=model, args=args_for(tmp_path, 2), train_dataset=ds, callbacks=[callback]).train()

    assert dc.read_header(path)["shape"] == (2, N, 3)
    want = 1.0 / (1.0 + np.exp(-eval_logits(model, ds)))
    np.testing.assert_allclose(np.load(path)[-1], want, atol=1e-6)
    assert callback.task == "multilabel"
    assert callback.labels.dtype == np.uint8
    np.testing.assert_array_equal(callback.labels, labels.numpy().astype(np.uint8))
    assert callback.compute().confidence.shape == (N, 3)


def test_callback_with_explicit_dataset_and_second_train_call(tmp_path) -> None:
    """A dataset given to the callback (here: a subset); a second train() continues the same file."""
    labels = torch.randint(0, 2, (N,), generator=torch.Generator().manual_seed(4))
    ds = Tokens(labels, seed=5)
    subset = torch.utils.data.Subset(ds, range(10))
    model = tiny_bert()
    path = tmp_path / "subset.npy"
    callback = DataMapCallback(path, dataset=subset, batch_size=4)
    trainer = Trainer(model=model, args=args_for(tmp_path, 1), train_dataset=ds, callbacks=[callback])
    trainer.train()
    assert dc.read_header(path)["shape"] == (1, 10, 2)
    trainer.train()
    assert dc.read_header(path)["shape"] == (2, 10, 2)
    logits = eval_logits(model, ds)[:10]
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(np.load(path)[-1], z / z.sum(axis=1, keepdims=True), atol=1e-6)


def test_record_epoch_outside_trainer_with_bfloat16_model(tmp_path) -> None:
    """record_epoch is usable without a Trainer; bfloat16 logits are stored as their exact softmax."""
    labels = torch.randint(0, 3, (N,), generator=torch.Generator().manual_seed(6))
    ds = Tokens(labels, seed=7)
    model = tiny_bert(num_labels=3).to(torch.bfloat16)
    loader = torch.utils.data.DataLoader(
        [{k: v for k, v in ds[i].items() if k != "text"} for i in range(N)], batch_size=10
    )
    callback = DataMapCallback(tmp_path / "bf16.npy", dtype="float64")
    model.train()
    assert callback.record_epoch(model, loader) == 1
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ds.ids, attention_mask=ds.mask).logits
    assert logits.dtype == torch.bfloat16
    z = logits.double().numpy()
    z = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(np.load(tmp_path / "bf16.npy")[0], z / z.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(callback.labels, labels.numpy())
    callback.close()


def test_errors(tmp_path) -> None:
    regression = tiny_bert(num_labels=1)
    with pytest.raises(dc.DatacartoError, match="regression"):
        _task_of(regression)
    assert _task_of(tiny_bert(num_labels=3)) == "multiclass"

    ds = Tokens(torch.zeros(N, dtype=torch.long))
    callback = DataMapCallback(tmp_path / "x.npy", n_examples=N + 1)
    trainer = Trainer(model=tiny_bert(), args=args_for(tmp_path, 1), train_dataset=ds, callbacks=[callback])
    with pytest.raises(dc.DatacartoError, match="n_examples"):
        trainer.train()
