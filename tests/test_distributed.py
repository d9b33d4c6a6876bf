"""datacarto.distributed under torch.distributed: two CPU processes (gloo), a DistributedSampler
reshuffling every epoch and padding an odd N with repeated examples, give the statistics of a
single-process run over the same probabilities."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import datacarto as dc
from _helpers import child_env

torch = pytest.importorskip("torch")

E, N, L = 4, 37, 3  # odd N: the sampler pads each epoch with a repeated example

RANK = textwrap.dedent(
    """
    import sys
    import numpy as np, torch, torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler
    from datacarto.distributed import DistributedRecorder
    rank, world, address, path, keep = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world)
    rng = np.random.default_rng(11)
    logits = torch.tensor(rng.normal(size=({E}, {N}, {L})) * 2)
    labels = rng.integers(0, {L}, {N})
    sampler = DistributedSampler(range({N}), num_replicas=world, rank=rank, shuffle=True, seed=5)
    recorder = DistributedRecorder(path, {N}, {L}, keep=keep, labels=labels if keep == "state" else None)
    seen = []
    for epoch in range({E}):
        sampler.set_epoch(epoch)
        for index in DataLoader(list(sampler), batch_size=4):
            recorder.record(index, logits[epoch, index])
            seen.extend(index.tolist())
        recorder.end_epoch()
    stats = recorder.compute(labels)
    recorder.close()
    if rank == 0:
        np.savez(path + ".result.npz", **stats.as_dict())
    # the sampler really did pad: ranks together saw more rows than examples
    print(len(seen))
    dist.destroy_process_group()
    """
).format(E=E, N=N, L=L)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("keep", ["dynamics", "state"])
def test_two_gloo_ranks_equal_one_process(tmp_path, keep):
    path = str(tmp_path / ("dynamics.npy" if keep == "dynamics" else "run.state"))
    address = f"tcp://127.0.0.1:{free_port()}"
    env = child_env(OMP_NUM_THREADS="1")
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(rank), "2", address, path, keep], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outputs = [rank.communicate(timeout=180) for rank in ranks]
    for rank, (out, err) in zip(ranks, outputs):
        assert rank.returncode == 0, err
    assert sum(int(out.strip()) for out, _ in outputs) == E * (N + 1)  # 38 rows an epoch for 37 examples
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(E, N, L)) * 2
    labels = rng.integers(0, L, N)
    want = dc.compute(dc.to_probabilities(logits), labels)
    got = np.load(path + ".result.npz")
    for name in ("correctness", "forgetting", "never_learned", "first_learned"):
        np.testing.assert_array_equal(got[name], getattr(want, name), err_msg=name)
    for name in ("confidence", "variability", "margin", "aleatoric", "el2n"):
        # the dynamics file stores float32; the state folds the float64 probabilities
        tolerance = 1e-6 if keep == "dynamics" else 1e-12
        np.testing.assert_allclose(got[name], getattr(want, name), rtol=tolerance, atol=tolerance, err_msg=name)
    if keep == "dynamics":
        assert dc.read_header(path)["shape"] == (E, N, L)
