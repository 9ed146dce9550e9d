"""Property tests of the estimators: shapes, dtypes, ranges and save/load round trips.

Each test states its property in its name. hypothesis draws small data sets in [0, 1] (its
array strategy also tries repeated values, exact zeros and ones), their dtype, the code
size, the loss and, for ``GradientFlowEncoder``, the solver and flow. Models are tiny and
their flows short so that each test stays within a few seconds on a slow CPU; ``derandomize``
keeps the examples the same on every run.
"""

import os
import pickle
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn.flow import FLOWS, LOSSES, SOLVERS

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)

TINY = dict(hidden_layer_sizes=(4,), batch_size=8, device="cpu", random_state=0)

# Short flows: the defaults (tau=1e5 for AMD) cost ~100x more on an untrained decoder. A
# solver that goes straight to the flow's endpoint has no horizon and takes the gradient flow.
CHEAP_FLOWS = {
    "amd": {"tau": 10.0},
    "euler": {"tau": 5.0, "n_steps": 10},
    "rk4": {"tau": 5.0, "n_steps": 10},
    "dopri5": {"tau": 5.0},
    "lbfgs": {"max_steps": 50},
}
ENDPOINT_SOLVERS = {"lbfgs"}

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    # A fixed grid stops a sample whose step left the stability region, with a warning.
    pytest.mark.filterwarnings("ignore::gfe_sklearn.flow.StiffnessWarning"),
]


def test_cheap_flows_cover_every_solver():
    assert set(SOLVERS) <= set(CHEAP_FLOWS)


@st.composite
def cases(draw):
    """An unfitted tiny estimator and data ``X`` in [0, 1] to fit it on."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n_samples = draw(st.integers(8, 30))
    n_features = draw(st.integers(3, 10))
    X = draw(
        hnp.arrays(
            dtype, (n_samples, n_features), elements=st.floats(0, 1, width=np.finfo(dtype).bits)
        )
    )
    params = dict(
        TINY,
        n_components=draw(st.integers(1, 3)),
        loss=draw(st.sampled_from(sorted(LOSSES))),
        max_iter=draw(st.integers(1, 2)),
    )
    if draw(st.sampled_from(["gfe", "autoencoder"])) == "gfe":
        solver = draw(st.sampled_from(sorted(SOLVERS)))
        flows = ["gradient"] if solver in ENDPOINT_SOLVERS else sorted(FLOWS)
        estimator = GradientFlowEncoder(
            solver=solver, flow=draw(st.sampled_from(flows)), **CHEAP_FLOWS[solver], **params
        )
    else:
        estimator = AutoEncoderBaseline(**params)
    return estimator, X


def _other(dtype):
    return np.float64 if dtype == np.float32 else np.float32


@PROPERTY
@given(case=cases())
def test_codes_are_finite_n_by_n_components_in_the_dtype_of_the_data(case):
    est, X = case
    n_components = est.n_components
    Z = est.fit(X).transform(X)
    assert Z.shape == (X.shape[0], n_components)
    assert Z.dtype == X.dtype
    assert np.isfinite(Z).all()
    # The output dtype follows the data given to transform, not the data fitted on.
    other = est.transform(X.astype(_other(X.dtype)))
    assert other.dtype == _other(X.dtype)
    if est.get_params().get("solver") in ENDPOINT_SOLVERS:
        # No horizon: a row whose loss has no finite minimum (bce on rows the decoder only
        # approaches asymptotically) runs on until max_steps, where rounding decides the code
        # (found here: |z| 478 vs 451). Flow solvers stop at tau, so their codes agree.
        return
    np.testing.assert_allclose(other, Z, rtol=1e-3, atol=1e-4)


@PROPERTY
@given(case=cases())
def test_fit_transform_is_fit_then_transform_bitwise(case):
    est, X = case
    # sklearn's fit_transform is fit(X).transform(X): the same seeded fit twice.
    np.testing.assert_array_equal(est.fit_transform(X), est.fit(X).transform(X))


@PROPERTY
@given(case=cases())
def test_reconstructions_are_finite_n_by_n_features_and_probabilities_for_bce(case):
    est, X = case
    Z = est.fit(X).transform(X)
    R = est.inverse_transform(Z)
    assert R.shape == X.shape
    assert R.dtype == X.dtype
    assert np.isfinite(R).all()
    if est.loss == "bce":
        assert R.min() >= 0 and R.max() <= 1


@PROPERTY
@given(case=cases())
def test_scores_are_finite_and_at_most_zero(case):
    # Both losses are non-negative on data in [0, 1]: BCE is at least the targets' entropy.
    est, X = case
    scores = est.fit(X).score_samples(X)
    assert scores.shape == (X.shape[0],)
    assert scores.dtype == X.dtype
    assert np.isfinite(scores).all() and np.all(scores <= 0)
    score = est.score(X)
    assert np.isfinite(score) and score <= 0
    assert score == pytest.approx(float(np.mean(scores, dtype=np.float64)))


def _assert_same_model(loaded, est, X):
    assert type(loaded) is type(est)
    assert loaded.get_params() == est.get_params()
    Z = est.transform(X)
    np.testing.assert_array_equal(loaded.transform(X), Z)
    np.testing.assert_array_equal(loaded.inverse_transform(Z), est.inverse_transform(Z))
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    assert loaded.n_iter_ == est.n_iter_
    assert loaded.loss_curve_ == est.loss_curve_
    assert loaded.n_features_in_ == est.n_features_in_


@PROPERTY
@given(case=cases())
def test_save_then_load_gives_bitwise_the_same_model(case):
    est, X = case
    est.fit(X)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.safetensors")
        est.save(path)
        loaded = type(est).load(path)
    _assert_same_model(loaded, est, X)


@PROPERTY
@given(case=cases())
def test_pickle_round_trip_gives_bitwise_the_same_model(case):
    est, X = case
    est.fit(X)
    _assert_same_model(pickle.loads(pickle.dumps(est)), est, X)


@PROPERTY
@given(case=cases())
def test_unfitted_estimator_round_trips_its_parameters(case):
    est, _ = case
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.safetensors")
        est.save(path)
        loaded = type(est).load(path)
    assert loaded.get_params() == est.get_params()
    assert pickle.loads(pickle.dumps(est)).get_params() == est.get_params()
