"""Shared benchmark plumbing: build inputs once, and print ratio tables at the end.

Every benchmark records its best time under a (group, name) key; the session-finish hook
prints each group's timings as ratios against that group's baseline (a raw numpy read pass
over the same file), so the figures compare runs made in the same process on the same data.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).parent))

RESULTS: Dict[Tuple[str, str], float] = {}
NOTES: Dict[str, str] = {}
#: rows of bench_speed.py's tables, printed as markdown at the end
TABLES: Dict[str, list] = {}


def record(benchmark, group: str, name: str) -> None:
    """Remember the best round of a finished pytest-benchmark run."""
    RESULTS[(group, name)] = benchmark.stats.stats.min


@pytest.fixture
def remember():
    return record


def pytest_terminal_summary(terminalreporter) -> None:
    write = terminalreporter.write_line
    if TABLES:
        import json

        from bench_speed import render_tables

        write("")
        write(render_tables(TABLES))
        out = Path(__file__).parent / "data" / "speed.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(TABLES, indent=1))
        write(f"(raw rows in {out})")
    if not RESULTS and not NOTES:
        return
    write("")
    write("datacarto benchmark ratios (best round; baseline = numpy sum over the memory-mapped file)")
    groups = sorted({group for group, _ in RESULTS})
    for group in groups:
        rows = {name: t for (g, name), t in RESULTS.items() if g == group}
        baseline = rows.get("numpy sum (raw read)")
        write(f"  [{group}]")
        for name, seconds in sorted(rows.items(), key=lambda item: item[1]):
            ratio = f"{seconds / baseline:6.2f}x raw read" if baseline else ""
            write(f"    {name:<36} {seconds * 1e3:10.1f} ms  {ratio}")
        if "datacarto (1 thread)" in rows and "datacarto (all threads)" in rows:
            write(f"    speed-up of all threads over 1: {rows['datacarto (1 thread)'] / rows['datacarto (all threads)']:.2f}x")
        if "numpy reference" in rows and "datacarto (all threads)" in rows:
            write(f"    datacarto vs numpy reference: {rows['numpy reference'] / rows['datacarto (all threads)']:.1f}x faster")
    for key, note in NOTES.items():
        write(f"  {key}: {note}")
