import os
import zlib

import numpy as np
import pytest
import torch

# Fresh random inputs every run; set PROXYFAST_TEST_SEED to replay a failing run.
BASE_SEED = int(os.environ.get("PROXYFAST_TEST_SEED", np.random.SeedSequence().entropy % (2**32)))
REPLAY = f"PROXYFAST_TEST_SEED={BASE_SEED}"


def pytest_report_header(config):
    return f"proxyfast test seed: {REPLAY}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # The header that names the seed is hidden under -q: every failure names it too.
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(("proxyfast test seed", f"replay with {REPLAY} (test id {item.nodeid})"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        terminalreporter.write_line(f"proxyfast: to replay the failures, run with {REPLAY}", red=True)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """No test leaves another thread count behind (a CLI call with --threads sets it for
    the whole process): the thread-count tests would compare one thread with one."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng(request):
    """A numpy Generator for this test, derived from the run's seed and the test's id."""
    return np.random.default_rng([BASE_SEED, zlib.crc32(request.node.nodeid.encode())])
