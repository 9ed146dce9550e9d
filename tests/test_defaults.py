"""solver='auto': L-BFGS where the settings allow it, the flow's own path where they need it."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from gfe_sklearn import GradientFlowEncoder

SMALL = dict(
    n_components=2, hidden_layer_sizes=(8,), max_iter=2, batch_size=16, device="cpu", random_state=0
)


@pytest.fixture(scope="module")
def X():
    return np.random.RandomState(0).uniform(size=(40, 6))


def _fit(X, **params):
    with pytest.warns(Warning):  # two epochs: the ConvergenceWarning
        return GradientFlowEncoder(**SMALL, **params).fit(X)


def test_auto_is_lbfgs_with_the_default_settings(X):
    auto, lbfgs = _fit(X), _fit(X, solver="lbfgs")
    # 'auto' resolves to 'lbfgs': the same seeded fit twice, identical arithmetic.
    np.testing.assert_array_equal(auto.transform(X), lbfgs.transform(X))
    assert auto.get_params()["solver"] == "auto"


@pytest.mark.parametrize(
    "setting", [{"flow": "nesterov"}, {"tau": 5.0}, {"stop_rule": "loss"}, {"adjoint": "full"}]
)
def test_auto_follows_the_flow_with_amd_where_a_setting_needs_its_path(X, setting):
    auto, amd = _fit(X, **setting), _fit(X, solver="amd", **setting)
    # 'auto' resolves to 'amd': the same seeded fit twice, identical arithmetic.
    np.testing.assert_array_equal(auto.transform(X), amd.transform(X))


def test_explicit_lbfgs_still_refuses_flow_settings(X):
    with pytest.raises(ValueError, match="flow='nesterov' cannot be used with solver='lbfgs'"):
        GradientFlowEncoder(**SMALL, solver="lbfgs", flow="nesterov").fit(X)


def test_the_default_epochs_leave_room_to_end_on_a_plateau(X):
    # A tolerance no epoch can beat: training ends on the plateau rule, before max_iter.
    params = {**SMALL, "max_iter": GradientFlowEncoder().max_iter}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = GradientFlowEncoder(**params, tol=10.0).fit(X)
    assert est.n_iter_ == est.n_iter_no_change + 2 < est.max_iter
