"""Hypothesis profiles of the differential tests.

* ``ci`` (the default): 25 examples per test, no deadline, derandomized (the same examples
  on every run, so CI is reproducible); the directory runs in well under a minute.
* ``thorough``: 500 random examples per test (a few minutes), for a local run before a release
  or after touching a loss's kernel::

      pytest tests/differential --hypothesis-profile=thorough

Hypothesis' pytest plugin loads ``--hypothesis-profile`` when pytest configures, so the
profiles must be registered by then: pass ``tests/differential`` (or a file in it) on the
command line, which makes this conftest one that pytest imports first.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]  # float64 references on drawn shapes

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, suppress_health_check=_SLOW_OK)
settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=_SLOW_OK)
if settings.get_current_profile_name() == "default":  # a --hypothesis-profile given is loaded after this
    settings.load_profile("ci")
