import faulthandler
import os
import sys

import pytest
import torch

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
