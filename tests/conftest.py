import os
import zlib

import numpy as np
import pytest

# Fresh random inputs every run; set PROXYFAST_TEST_SEED to replay a failing run.
BASE_SEED = int(os.environ.get("PROXYFAST_TEST_SEED", np.random.SeedSequence().entropy % (2**32)))


def pytest_report_header(config):
    return f"proxyfast test seed: PROXYFAST_TEST_SEED={BASE_SEED}"


@pytest.fixture
def rng(request):
    """A numpy Generator for this test, derived from the run's seed and the test's id."""
    return np.random.default_rng([BASE_SEED, zlib.crc32(request.node.nodeid.encode())])
