"""A row's code, score and reconstruction do not depend on the batch: every solver, bit for bit.

The measurement of docs/engine.md ("Per-sample independence"), at the default float32 and in
float64. CI runs this module again under other math-kernel paths (MKL_CBWR branches,
ATEN_CPU_CAPABILITY, two threads), where it held before only on some CPUs.
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn.flow import SOLVERS

pytestmark = [
    pytest.mark.portability,
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

SUBSET = np.random.RandomState(0).choice(128, 17, replace=False)


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data / 16.0
    return X[:200], X[200:328]


def _fitted(cls, digits, **params):
    train, _ = digits
    settings = dict(n_components=6, hidden_layer_sizes=(32,), batch_size=32, max_iter=1)
    return cls(**{**settings, **params}, device="cpu", random_state=0).fit(train)


def _assert_rows_alone_as_in_the_batch(est, X):
    codes = est.transform(X)
    np.testing.assert_array_equal(est.transform(X[SUBSET]), codes[SUBSET])
    np.testing.assert_array_equal(est.score_samples(X[SUBSET]), est.score_samples(X)[SUBSET])
    decoded = est.inverse_transform(codes)
    np.testing.assert_array_equal(est.inverse_transform(codes[SUBSET]), decoded[SUBSET])
    return codes


@pytest.mark.parametrize("compute_dtype", ["float32", "float64"])
@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_every_solver_encodes_rows_alone_as_in_the_batch(digits, solver, compute_dtype):
    est = _fitted(GradientFlowEncoder, digits, solver=solver, compute_dtype=compute_dtype)
    codes = _assert_rows_alone_as_in_the_batch(est, digits[1])
    assert np.isfinite(codes).all() and np.abs(codes).max() > 0


@pytest.mark.parametrize("solver", ["amd", "rk4"])
def test_the_nesterov_flow_encodes_rows_alone_as_in_the_batch(digits, solver):
    est = _fitted(GradientFlowEncoder, digits, solver=solver, flow="nesterov")
    _assert_rows_alone_as_in_the_batch(est, digits[1])


def test_the_autoencoder_encodes_rows_alone_as_in_the_batch(digits):
    _assert_rows_alone_as_in_the_batch(_fitted(AutoEncoderBaseline, digits), digits[1])


@pytest.mark.parametrize("n_components", [1, 3, 5, 10])
def test_narrow_codes_encode_rows_alone_as_in_the_batch(digits, n_components):
    # Outputs 5 to 11 wide took kernels that round odd rows differently (MKL, AVX-512).
    est = _fitted(GradientFlowEncoder, digits, n_components=n_components)
    _assert_rows_alone_as_in_the_batch(est, digits[1])


@pytest.mark.parametrize("compute_dtype", ["float32", "float64"])
def test_the_default_start_at_the_encoders_guess_encodes_rows_alone_as_in_the_batch(
    digits, compute_dtype
):
    # code_init='auto': the distilled encoder's guess, refined for at most 10 L-BFGS steps.
    est = _fitted(GradientFlowEncoder, digits, compute_dtype=compute_dtype)
    assert est.code_init == "auto" and est.encoder_distilled_
    _assert_rows_alone_as_in_the_batch(est, digits[1])
