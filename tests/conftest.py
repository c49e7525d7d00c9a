import faulthandler
import os
import sys

import pytest
import torch
from hypothesis import HealthCheck, settings

# Hypothesis profiles (tests/differential): "ci", the default, is 25 derandomized examples per
# test (the same examples on every run, so CI is reproducible); "thorough" is 500 random ones,
# for a local run: pytest --hypothesis-profile=thorough (from the root or any folder).
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]  # float64 references on drawn shapes
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, suppress_health_check=_SLOW_OK)
settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=_SLOW_OK)
if settings.get_current_profile_name() == "default":  # a --hypothesis-profile given is loaded after this
    settings.load_profile("ci")

# Tests are small; one thread keeps them fast and deterministic on a 2-core CI machine.
torch.set_num_threads(int(os.environ.get("LOSSATLAS_TEST_THREADS", "1")))

# No single test should take minutes; one that hangs dumps every thread's stack and ends the
# session with a failure instead of running into CI's wall-clock limit silently.
_HANG_AFTER_S = float(os.environ.get("LOSSATLAS_TEST_HANG_S", "600"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _hang_guard():
    faulthandler.dump_traceback_later(_HANG_AFTER_S, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()
