"""What ``import datacarto`` costs and shows: the lean import, the lazily loaded API, ``dir()``,
one clear error per missing optional dependency, and :class:`datacarto.Statistics` as a value
(``==`` by contents and settings, read-only arrays)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import textwrap
from typing import List

import numpy as np
import pytest

import datacarto as dc
from datacarto import reference

# Heavy or optional packages a caller of dc.compute must not pay for.
HEAVY = ("polars", "matplotlib", "plotly", "sklearn", "torch", "transformers", "pandas", "pyarrow", "tqdm")


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports datacarto the way this test run does."""
    env = dict(os.environ)
    # the child must find the same datacarto (source checkout or installed build) as this process
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(dc.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env=env, timeout=300
    )


def loaded_after(code: str) -> List[str]:
    """The HEAVY modules and datacarto submodules present in ``sys.modules`` after ``code``."""
    result = run_python(
        textwrap.dedent(code)
        + textwrap.dedent(
            """
            import sys
            print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in HEAVY or name.startswith("datacarto."))))
            """
        ).replace("HEAVY", repr(HEAVY))
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


# ------------------------------------------------------------------------------ the lean import


def test_import_and_compute_load_no_heavy_package(tmp_path):
    path = tmp_path / "dynamics.npy"
    np.save(path, np.random.default_rng(0).dirichlet(np.ones(3), size=(4, 20)).astype(np.float32))
    loaded = loaded_after(
        f"""
        import numpy as np
        import datacarto as dc
        labels = np.arange(20) % 3
        from_file = dc.compute({str(path)!r}, labels, epochs=1)
        in_memory = dc.compute(np.load({str(path)!r}), labels, task="multiclass", correctness="threshold")
        assert dc.read_header({str(path)!r})["shape"] == (4, 20, 3)
        assert from_file.confidence.shape == in_memory.confidence.shape == (20,)
        """
    )
    heavy = [name for name in loaded if name.split(".")[0] in HEAVY]
    assert heavy == [], f"import datacarto + compute loaded {heavy}"
    # the test oracle and the polars-backed map stay out too
    assert "datacarto.reference" not in loaded
    assert "datacarto.datamap" not in loaded


def test_datamap_loads_on_first_use():
    loaded = loaded_after(
        """
        import numpy as np
        import datacarto as dc
        import datacarto.datamap
        assert dc.DataMap is datacarto.datamap.DataMap
        dm = dc.DataMap.from_dynamics(np.full((2, 3, 2), 0.5, dtype=np.float32), [0, 1, 0])
        assert len(dm) == 3
        """
    )
    assert "polars" in loaded and "datacarto.datamap" in loaded
    # a map's trajectories use the private per-epoch helper, not the test oracle
    assert "datacarto.reference" not in loaded
    assert "matplotlib" not in loaded and "torch" not in loaded


def test_no_production_module_imports_the_reference():
    # every module except the CLI's optional front ends, imported together: the oracle stays out
    loaded = loaded_after(
        """
        import datacarto as dc
        from datacarto import datamap, writer, importers, plots, html, demo, cli, sklearn
        """
    )
    assert "datacarto.reference" not in loaded
    assert "datacarto.plots" in loaded  # sanity: the imports above did happen


def test_lazy_names_resolve_to_their_modules():
    from datacarto import datamap, writer

    assert dc.DataMap is datamap.DataMap
    assert dc.DynamicsWriter is writer.DynamicsWriter
    assert dc.to_probabilities is writer.to_probabilities
    assert dc.plots.__name__ == "datacarto.plots"
    with pytest.raises(AttributeError, match="module 'datacarto' has no attribute 'no_such_name'"):
        dc.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------ dir() and __all__


def test_dir_shows_the_public_api_and_the_submodules():
    names = dir(dc)
    for name in dc.__all__:
        assert name in names, name
    for module in ("plots", "html", "sklearn", "importers", "reference", "cli", "demo", "datamap", "writer"):
        assert module in names, module
    # the recorders that need an optional dependency are listed when it is installed
    has_torch = importlib.util.find_spec("torch") is not None
    assert ("torch" in names) == has_torch
    assert ("transformers" in names) == (has_torch and importlib.util.find_spec("transformers") is not None)
    for implementation_detail in ("Any", "importlib", "annotations", "TYPE_CHECKING", "_LAZY_SUBMODULES", "_core", "_stats"):
        assert implementation_detail not in names, implementation_detail
    assert names == sorted(names)


def test_help_works_without_the_optional_dependencies():
    # help() imports every name dir() lists: a missing extra must not break it
    result = run_python(
        """
        import sys
        sys.modules["torch"] = None
        sys.modules["transformers"] = None
        sys.modules["sklearn"] = None
        import pydoc, datacarto
        assert "torch" not in dir(datacarto) and "transformers" not in dir(datacarto)
        assert "sklearn" in dir(datacarto)   # importable without scikit-learn; record() needs it
        text = pydoc.render_doc(datacarto)
        print("compute(" in text and "DataMap" in text)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_all_is_explicit_and_every_name_resolves():
    assert len(set(dc.__all__)) == len(dc.__all__)
    assert {"compute", "read_header", "Statistics", "STATISTICS", "DataMap", "DynamicsWriter", "to_probabilities",
            "DatacartoError", "MissingDependencyError", "__version__", "State", "partial"} == set(dc.__all__)
    for name in dc.__all__:
        assert getattr(dc, name) is not None, name
    assert issubclass(dc.MissingDependencyError, ImportError)


def test_star_import_gives_all_without_optional_dependencies():
    result = run_python(
        """
        import sys
        sys.modules["torch"] = None          # would fail loudly if `*` reached datacarto.torch
        sys.modules["sklearn"] = None
        namespace = {}
        exec("from datacarto import *", namespace)
        import datacarto
        print(sorted(name for name in namespace if name != "__builtins__") == sorted(datacarto.__all__))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


# ------------------------------------------------------------------------------ missing optional dependencies

MISSING_CASES = [
    pytest.param("torch", "import datacarto as dc; dc.torch", "datacarto.torch needs torch", "torch", id="torch"),
    pytest.param("torch", "import datacarto.transformers", "datacarto.transformers needs torch", "transformers", id="transformers-without-torch"),
    pytest.param(
        "transformers", "import datacarto.transformers", "datacarto.transformers needs transformers", "transformers", id="transformers",
        # torch is checked first: with torch missing too, the error names torch (the case above)
        marks=pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed"),
    ),
    pytest.param(
        "sklearn",
        "import numpy as np, datacarto as dc\n"
        "class Estimator:\n"
        "    def partial_fit(self, X, y, classes=None): return self\n"
        "    def predict_proba(self, X): return np.full((len(X), 2), 0.5)\n"
        "dc.sklearn.record(Estimator(), np.zeros((4, 2)), [0, 1, 0, 1], epochs=2)",
        "datacarto.sklearn.record needs sklearn",
        "sklearn",
        id="sklearn-record",
    ),
]


@pytest.mark.parametrize("blocked, code, needs, extra", MISSING_CASES)
def test_a_missing_optional_dependency_names_the_extra(blocked, code, needs, extra):
    result = run_python(
        f"""
        import sys
        sys.modules[{blocked!r}] = None   # as if it were not installed
        from datacarto import MissingDependencyError
        try:
{textwrap.indent(code, " " * 12)}
        except MissingDependencyError as exc:
            print("MissingDependencyError:", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert message == f'MissingDependencyError: {needs}, which is not installed: pip install "datacarto[{extra}]"'


def test_the_demo_without_sklearn_names_the_extra_and_writes_nothing(tmp_path):
    out = tmp_path / "demo"
    result = run_python(
        """
        import sys
        sys.modules["sklearn"] = None
        from datacarto.demo import run_demo
        run_demo(sys.argv[1])
        """,
        str(out),
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == 'datacarto._optional.MissingDependencyError: the demo needs sklearn, which is not installed: pip install "datacarto[sklearn]"'
    assert not out.exists()


# ------------------------------------------------------------------------------ Statistics as a value


@pytest.fixture
def probs():
    return np.random.default_rng(3).dirichlet(np.ones(3), size=(5, 30)).astype(np.float32)


@pytest.fixture
def labels():
    return np.arange(30) % 3


def test_equal_results_compare_equal(probs, labels):
    first, second = dc.compute(probs, labels), dc.compute(probs, labels, threads=1)
    assert first == second
    assert not (first != second)
    assert first is not second


@pytest.mark.parametrize(
    "options",
    [
        {"epochs": 1},
        {"ddof": 1},
        {"correctness": "threshold"},
        {"correctness": "threshold", "threshold": 0.3},
    ],
)
def test_other_settings_compare_unequal(probs, labels, options):
    assert dc.compute(probs, labels) != dc.compute(probs, labels, **options)


def test_settings_alone_make_a_difference(probs, labels):
    stats = dc.compute(probs, labels)
    for change in ({"source": "dynamics.npy"}, {"threshold": 0.25}, {"epochs": (0, 4)}, {"task": "binary"}, {"ddof": 1}):
        assert dataclasses.replace(stats, **change) != stats, change
    # `extra` is bookkeeping, not content
    assert dataclasses.replace(stats, extra={"note": 1}) == stats


def test_different_values_compare_unequal(probs, labels):
    stats = dc.compute(probs, labels)
    nudged = stats.confidence.copy()
    nudged[7] += 1e-12
    assert dataclasses.replace(stats, confidence=nudged) != stats
    other_labels = stats.labels.copy()
    other_labels[0] = (other_labels[0] + 1) % 3
    assert dataclasses.replace(stats, labels=other_labels) != stats
    assert dataclasses.replace(stats, forgetting=stats.forgetting[:-1]) != stats  # shape differs


def test_nan_equals_nan(probs, labels):
    stats = dc.compute(probs, labels)
    with_nan = stats.margin.copy()
    with_nan[[2, 5]] = np.nan
    assert dataclasses.replace(stats, margin=with_nan) == dataclasses.replace(stats, margin=with_nan.copy())
    assert dataclasses.replace(stats, margin=with_nan) != stats


def test_comparing_with_another_type_is_false_not_an_error(probs, labels):
    stats = dc.compute(probs, labels)
    assert stats != 3
    assert stats != stats.as_dict()
    assert (stats == None) is False  # noqa: E711


def test_statistics_are_unhashable_like_their_arrays(probs, labels):
    with pytest.raises(TypeError, match="unhashable"):
        hash(dc.compute(probs, labels))


def test_multilabel_results_compare_by_contents():
    rng = np.random.default_rng(1)
    probs = rng.random((4, 12, 3)).astype(np.float32)
    targets = (rng.random((12, 3)) > 0.5).astype(np.uint8)
    assert dc.compute(probs, targets) == dc.compute(probs.copy(), targets.copy())
    assert dc.compute(probs, targets) != dc.compute(probs, 1 - targets)


@pytest.mark.parametrize("make", [dc.compute, reference.compute], ids=["compute", "reference"])
def test_arrays_are_read_only(probs, labels, make):
    stats = make(probs, labels)
    for name, values in {**stats.as_dict(), "labels": stats.labels}.items():
        assert not values.flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            values[0] = values[0]


def test_the_callers_labels_stay_theirs(probs):
    labels = np.arange(30, dtype=np.int64) % 3
    stats = dc.compute(probs, labels)
    assert labels.flags.writeable
    labels[0] = 2  # the caller's array is still theirs to change...
    assert stats.labels[0] == 0  # ...without changing the result
    assert not stats.labels.flags.writeable
    # a result rebuilt from another keeps sharing its read-only labels (no copy per replace)
    assert dataclasses.replace(stats, source="x").labels is stats.labels


def test_a_map_keeps_its_statistics_read_only(probs, labels, tmp_path):
    stats = dc.compute(probs, labels)
    dm = dc.DataMap(stats)
    assert dm.statistics is stats
    rebuilt = dc.DataMap.read_parquet(dm.write_parquet(tmp_path / "map.parquet")).statistics
    assert not rebuilt.confidence.flags.writeable
    np.testing.assert_array_equal(rebuilt.confidence, stats.confidence)
