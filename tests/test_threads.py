"""The n_threads policy: torch's CPU threads as asked during the work, restored after."""

import joblib
import numpy as np
import pytest
import torch

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn._device import thread_count, torch_threads


class ThreadRecordingDecoder(torch.nn.Module):
    """A small decoder that notes torch's thread count whenever it runs."""

    def __init__(self, n_components, n_features):
        super().__init__()
        self.linear = torch.nn.Linear(n_components, n_features)
        self.seen = set()

    def forward(self, z):
        self.seen.add(torch.get_num_threads())
        return self.linear(z)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _fitted(n_threads, estimator=GradientFlowEncoder):
    X = np.random.RandomState(0).uniform(size=(24, 6))
    est = estimator(
        n_components=2,
        decoder=ThreadRecordingDecoder(2, 6),
        max_iter=1,
        batch_size=8,
        n_threads=n_threads,
        device="cpu",
        random_state=0,
    )
    with pytest.warns(Warning):  # one epoch: the ConvergenceWarning
        est.fit(X)
    return est, X


@pytest.mark.parametrize("estimator", [GradientFlowEncoder, AutoEncoderBaseline])
def test_fit_and_transform_use_the_threads_asked_and_restore_torchs_setting(two_threads, estimator):
    est, X = _fitted(1, estimator)
    assert est.decoder_.seen == {1}
    assert torch.get_num_threads() == 2
    est.decoder_.seen.clear()
    est.transform(X)
    est.score(X)
    est.inverse_transform(np.zeros((3, 2)))
    assert est.decoder_.seen == {1}
    assert torch.get_num_threads() == 2


def test_none_leaves_torchs_setting(two_threads):
    est, X = _fitted(None)
    assert est.decoder_.seen == {2}
    assert torch.get_num_threads() == 2


def test_negative_counts_follow_joblib():
    assert thread_count(-1) == joblib.cpu_count()
    assert thread_count(-joblib.cpu_count() - 5) == 1
    assert thread_count(3) == 3


def test_restored_after_an_error(two_threads):
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


def test_zero_threads_is_refused():
    with pytest.raises(ValueError, match="n_threads"):
        GradientFlowEncoder(n_threads=0).fit(np.random.RandomState(0).uniform(size=(4, 3)))
