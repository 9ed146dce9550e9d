"""Shared fixtures: small data in [0, 1] and small, fast estimator settings."""

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

# A property test draws new examples at every run; a rare example that fails (and that a run
# elsewhere, with its own database, would not replay) must not fail one CI run at random.
# Under CI the examples are the same at every run; elsewhere they keep exploring.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Small networks and few epochs keep every fit well under a second on a CPU.
SMALL = dict(
    n_components=2, hidden_layer_sizes=(8,), max_iter=2, batch_size=16, device="cpu", random_state=0
)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def small():
    """Keyword arguments of a small, fast, seeded estimator on the CPU."""
    return dict(SMALL)


@pytest.fixture
def X():
    """60 samples with 16 features in [0, 1], float64."""
    return np.random.RandomState(0).uniform(size=(60, 16))


@pytest.fixture
def Xy(X):
    """``X`` with two classes that depend on the data."""
    return X, (X[:, :8].mean(axis=1) > X[:, 8:].mean(axis=1)).astype(int)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op torch thread for the whole session, restored afterwards.

    The test networks are tiny, so intra-op threads only add synchronisation; on a machine
    whose cores are busy with other work every parallel region waits for a descheduled
    thread, which made these tests three to six times slower with 2 threads than with 1.
    Set once per session: switching back and forth slowed scikit-learn's OpenMP (t-SNE)
    that shares the process.
    """
    threads = torch.get_num_threads()
    # CI reruns the portability tests with GFE_SKLEARN_TEST_THREADS=2 (other kernel paths).
    torch.set_num_threads(int(os.environ.get("GFE_SKLEARN_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(threads)
