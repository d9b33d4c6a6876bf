"""Hypothesis profiles shared by the whole suite.

CI must give the same verdict on every run, so the default profile (``ci``) is derandomized:
hypothesis derives its examples from each test's source instead of a random seed, keeps no
example database between runs, and prints the blob that reproduces a failure. A longer
randomized profile explores new inputs on demand::

    DATACARTO_HYPOTHESIS=random python -m pytest tests/test_fuzz_header.py

Tests set ``max_examples`` themselves with ``@settings``; the ``random`` profile multiplies the
examples of every test by ``RANDOM_MULTIPLIER`` (so it never runs fewer than CI).
"""

from __future__ import annotations

import os

from hypothesis import settings

PROFILE_VARIABLE = "DATACARTO_HYPOTHESIS"
RANDOM_MULTIPLIER = 10

settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile("random", derandomize=False, database=None, print_blob=True, deadline=None)

_profile = os.environ.get(PROFILE_VARIABLE, "ci")
if _profile not in ("ci", "random"):
    raise RuntimeError(f"{PROFILE_VARIABLE}={_profile!r}: expected 'ci' (the default, derandomized) or 'random'")
settings.load_profile(_profile)


def pytest_collection_modifyitems(items: list) -> None:
    """Under the random profile, run every hypothesis test with RANDOM_MULTIPLIER times its examples."""
    if _profile != "random":
        return
    for item in items:
        test = getattr(item, "obj", None)
        inner = getattr(getattr(test, "hypothesis", None), "inner_test", None)
        if inner is None:
            continue
        # hypothesis refuses a second @settings; replace the one the test carries (or the default)
        chosen = getattr(test, "_hypothesis_internal_use_settings", settings.default)
        test._hypothesis_internal_use_settings = settings(chosen, max_examples=chosen.max_examples * RANDOM_MULTIPLIER)
