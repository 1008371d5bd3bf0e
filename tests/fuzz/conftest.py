"""Hypothesis profiles for the fuzz tests.

- "fuzz-default" (`make test`): 300 examples per entry point, derandomized: the examples are a
  function of the test alone, so CI runs the same inputs every time and a red run reproduces
  on any machine. No example database either, so nothing outside the repo steers CI.
- "fuzz-full" (CALICO_FUZZ=full, what scripts/fuzz_report.py runs): 10,000 examples per entry point,
  randomized, so each full run explores new inputs; a failure prints the blob that replays it
  (@reproduce_failure), which then becomes a plain regression test.

The profiles are applied per test (`@fuzz` from _fuzz.py), not loaded globally, so the
other tiers' hypothesis tests keep hypothesis' own defaults. Tests that write to etcd take
`fuzz_examples(full, default)` for their own smaller counts.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,  # no timing in tests: a slow machine must not fail a property
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile(
    "fuzz-default", max_examples=300, derandomize=True, database=None, **_COMMON
)
settings.register_profile("fuzz-full", max_examples=10_000, print_blob=True, **_COMMON)
