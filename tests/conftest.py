import os

import pytest
import torch

# Tests are small; one thread keeps them fast and deterministic on a 2-core CI machine.
torch.set_num_threads(int(os.environ.get("LOSSATLAS_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
