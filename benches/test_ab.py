"""``ab.py`` (the A/B of two builds) runs end to end on a tiny input (no timing is asserted).

    pytest benches/test_ab.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import datacarto as dc
import make_inputs

AB = Path(__file__).parent / "ab.py"


def test_ab_times_two_builds_in_interleaved_rounds(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(make_inputs, "DATA_DIR", tmp_path)
    shape = (3, 2_000, 5)
    make_inputs.build(*shape, dtype="float16")
    # both sides: the build this test imports (its package's parent directory)
    root = str(Path(dc.__file__).resolve().parent.parent)
    spec = "3x2000x5:float16:multiclass"
    env = dict(os.environ, DATACARTO_BENCH_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, str(AB), "--old", root, "--new", root, "--rounds", "3", "--threads", "1", spec], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    match = re.match(rf"{re.escape(spec)}\s+threads=1 new/old median ([0-9.]+) best ([0-9.]+)\s+new ([0-9.]+)/([0-9.]+) ms\s+old ([0-9.]+)/([0-9.]+) ms", line)
    assert match, line
    assert all(float(x) > 0 for x in match.groups())
