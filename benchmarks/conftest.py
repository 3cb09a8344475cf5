import pathlib
import sys

import numpy as np
import pytest

# The paper's sampler is written once, in the tests' reference module; the benchmarks time
# it as the baseline (benchmarks/baselines.py imports it from there).
TESTS_DIR = str(pathlib.Path(__file__).resolve().parent.parent / "tests")
if TESTS_DIR not in sys.path:
    sys.path.append(TESTS_DIR)

IMAGENET_N = 1_281_167
IMAGENET_K = 128_116


@pytest.fixture(scope="session")
def imagenet_entropies() -> np.ndarray:
    """ImageNet-sized entropies with a realistic spread over 12 decades (log10 ~ N(-2, 2))."""
    rng = np.random.default_rng(0)
    return 10.0 ** np.clip(rng.normal(-2.0, 2.0, size=IMAGENET_N), -15, 0.8)
