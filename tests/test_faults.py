"""Failures leave nothing half-broken: a failed fit changes nothing, a broken model refuses."""

import threading

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder

ESTIMATORS = [GradientFlowEncoder, AutoEncoderBaseline]

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def weights(est):
    return [p.detach().clone() for m in est._modules() for p in m.parameters()]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_diverging_first_fit_leaves_the_estimator_unfitted(cls, X, small):
    est = cls(**small, learning_rate=1e30)  # within float32's range, so only training fails
    with pytest.raises(ValueError, match=r"training diverged\. Lower learning_rate \(now 1e\+30"):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(NotFittedError):
        est.transform(X)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_diverging_warm_start_fit_keeps_the_previous_model(cls, X, small):
    est = cls(**small).fit(X)
    before, codes = weights(est), est.transform(X)
    state = (est.n_iter_, est.n_samples_seen_, list(est.loss_curve_))
    est.set_params(learning_rate=1e30, warm_start=True)
    with pytest.raises(ValueError, match=r"after \d+ update\(s\) in this call: training diverged"):
        est.fit(X)
    assert all(torch.equal(a, b) for a, b in zip(weights(est), before))
    assert (est.n_iter_, est.n_samples_seen_, list(est.loss_curve_)) == state
    np.testing.assert_array_equal(est.transform(X), codes)
    est.set_params(learning_rate=5e-4).fit(X)  # the optimizer state still works
    assert np.isfinite(est.transform(X)).all()


class _FailsLater(torch.nn.Module):
    """A decoder whose ``fail_at``-th training forward pass raises (a crash mid-call)."""

    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Sequential(
            torch.nn.Linear(2, 8), torch.nn.ELU(), torch.nn.Linear(8, 16)
        )
        self.fail_at, self.calls = None, 0

    def forward(self, z):
        if self.training and self.fail_at is not None:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("decoder failed")
        return self.inner(z)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_partial_fit_that_fails_mid_call_undoes_its_updates(cls, X, small):
    est = cls(**small, decoder=_FailsLater()).fit(X)
    before, codes = weights(est), est.transform(X)
    est.partial_fit(X)
    before, codes = weights(est), est.transform(X)
    seen = est.n_samples_seen_
    optimizer = [
        t.clone()
        for s in est.optimizer_.state_dict()["state"].values()
        for t in s.values()
        if torch.is_tensor(t)
    ]
    est.decoder_.fail_at = 3  # two of the call's four minibatches update the model first
    with pytest.raises(RuntimeError, match="decoder failed"):
        est.partial_fit(X)
    assert all(torch.equal(a, b) for a, b in zip(weights(est), before))
    after = [
        t
        for s in est.optimizer_.state_dict()["state"].values()
        for t in s.values()
        if torch.is_tensor(t)
    ]
    assert len(after) == len(optimizer) > 0
    assert all(torch.equal(a, b) for a, b in zip(after, optimizer))
    assert est.n_samples_seen_ == seen and not est.decoder_.training
    est.decoder_.fail_at = None
    np.testing.assert_array_equal(est.transform(X), codes)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_float32_overflow_is_named_whatever_the_learning_rate(cls, X, small):
    huge = (X * 1e30).astype(np.float32)
    est = cls(**small, loss="mse", learning_rate=1e-12)
    with pytest.raises(ValueError, match=r"overflow the model's float32 arithmetic.*float64"):
        est.fit(huge)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    cls(**small, loss="mse", compute_dtype="float64").fit(huge)  # the suggested fix works


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_learning_rate_beyond_the_model_dtype_is_refused_by_name(cls, X, small):
    est = cls(**small, learning_rate=1e300)
    with pytest.raises(ValueError, match=r"learning_rate=1e\+300 overflows the model's float32"):
        est.fit(X.astype(np.float32))
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    fitted = cls(**small).fit(X.astype(np.float32))
    before = [p.detach().clone() for m in fitted._modules() for p in m.parameters()]
    with pytest.raises(ValueError, match="overflows the model's float32"):
        fitted.set_params(learning_rate=1e300).partial_fit(X)  # the fitted model's dtype
    after = [p.detach() for m in fitted._modules() for p in m.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(after, before))


@pytest.mark.parametrize("method", ["transform", "score"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_overflowing_data_are_refused_instead_of_zero_codes_or_inf_scores(cls, method, X, small):
    est = cls(**small, loss="mse").fit(X.astype(np.float32))
    huge = (X[:5] * 1e30).astype(np.float32)
    if cls is AutoEncoderBaseline and method == "transform":
        assert np.isfinite(est.transform(huge)).all()  # the encoder's own (finite) answer
        return
    with pytest.raises(ValueError, match=r"overflow the model's float32 arithmetic.*float64"):
        getattr(est, method)(huge)


@pytest.mark.parametrize("method", ["transform", "score", "inverse_transform"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_model_with_non_finite_weights_refuses_to_answer(cls, method, X, small):
    est = cls(**small).fit(X)
    with torch.no_grad():
        next(est.decoder_.parameters())[0, 0] = float("nan")
    data = np.zeros((3, small["n_components"])) if method == "inverse_transform" else X
    with pytest.raises(ValueError, match=r"weights are not all finite.*refit"):
        getattr(est, method)(data)


@pytest.mark.parametrize("method", ["transform", "score", "flow_diagnostics"])
def test_a_parameter_set_out_of_range_after_fit_is_named_before_encoding(method, X, small):
    # The flow reads max_steps at every encoding; None used to fail inside the solver.
    est = GradientFlowEncoder(**small).fit(X).set_params(max_steps=None)
    with pytest.raises(ValueError, match=r"'max_steps' parameter .* must be an int"):
        getattr(est, method)(X)
    assert est.set_params(max_steps=1000).transform(X).shape == (len(X), small["n_components"])


@pytest.mark.parametrize(
    "param, value",
    [("n_components", 3), ("hidden_layer_sizes", (4,)), ("activation", "tanh"), ("loss", "mse")],
)
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_continuing_with_a_changed_architecture_names_the_parameter(cls, param, value, X, small):
    est = cls(**small).fit(X)
    before, codes = weights(est), est.transform(X)
    est.set_params(warm_start=True, **{param: value})
    with pytest.raises(ValueError, match=rf"{param}=.* differs from the fitted model's {param}"):
        est.fit(X)
    with pytest.raises(ValueError, match=r"partial_fit continues training|warm_start"):
        est.partial_fit(X)
    assert all(torch.equal(a, b) for a, b in zip(weights(est), before))
    est.set_params(**{param: small.get(param, cls().get_params()[param])})
    np.testing.assert_array_equal(est.transform(X), codes)
    est.set_params(warm_start=False, **{param: value}).fit(X)  # a new model may change it


# -- fitted means fixed: parameters changed after fit act at the next fit, or are refused ----


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_loss_changed_after_fit_changes_nothing_until_the_next_fit(cls, X, small):
    # A bce decoder emits logits: read as mse data they would be wrong values, not data.
    est = cls(**small, loss="bce").fit(X)
    codes = est.transform(X)
    decoded, score = est.inverse_transform(codes), est.score(X)
    est.set_params(loss="mse")
    np.testing.assert_array_equal(est.transform(X), codes)
    np.testing.assert_array_equal(est.inverse_transform(codes), decoded)
    assert est.score(X) == score
    est.fit(X)  # a new fit takes the new loss
    assert est._fitted_architecture["loss"] == "mse"
    assert not np.array_equal(est.inverse_transform(codes), decoded)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_partial_fit_takes_a_changed_learning_rate(cls, X, small):
    # The divergence message advises lowering learning_rate: partial_fit must heed it.
    est = cls(**small).fit(X)
    est.set_params(learning_rate=1e-7).partial_fit(X)
    assert [group["lr"] for group in est.optimizer_.param_groups] == [1e-7]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_partial_fit_refuses_a_changed_optimizer_by_name(cls, X, small):
    est = cls(**small, optimizer="rmsprop").fit(X)
    before, state = weights(est), est.optimizer_
    with pytest.raises(ValueError, match=r"optimizer='adam' differs .* optimizer='rmsprop'"):
        est.set_params(optimizer="adam").partial_fit(X)
    assert est.optimizer_ is state and all(torch.equal(a, b) for a, b in zip(weights(est), before))
    est.set_params(warm_start=True).fit(X)  # a warm-started fit starts a new optimizer
    assert isinstance(est.optimizer_, torch.optim.Adam)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_early_stopping_may_be_enabled_on_a_warm_start_refit(cls, X, small):
    est = cls(**small).fit(X)
    assert est.validation_scores_ is None
    est.set_params(warm_start=True, early_stopping=True, max_iter=2).fit(X)
    assert len(est.validation_scores_) == est.n_iter_ - 2 and est.n_iter_ > 2


# -- raw errors made clear ------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_bfloat16_tensors_are_read_as_the_float32_values_they_are(cls, X, small):
    # numpy has no bfloat16; each bfloat16 value is exactly a float32 value.
    data = torch.tensor(X, dtype=torch.bfloat16)
    exact = data.float().numpy()
    est = cls(**small).fit(data)
    reference = cls(**small).fit(exact)
    np.testing.assert_array_equal(est.transform(data), reference.transform(exact))
    codes = torch.tensor(reference.transform(exact), dtype=torch.bfloat16)
    np.testing.assert_array_equal(
        est.inverse_transform(codes), reference.inverse_transform(codes.float().numpy())
    )


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_n_threads_beyond_any_machine_is_refused_by_name(cls, X, small):
    with pytest.raises(ValueError, match=r"'n_threads' parameter .* Got 2147483648"):
        cls(**{**small, "n_threads": 2**31}).fit(X)


def test_a_finite_tau_beyond_the_model_dtype_is_named(X, small):
    # 1e308 is inf in float32: the engine would refuse "tau=inf", a value never set.
    est = GradientFlowEncoder(**small, solver="euler", tau=1e308, compute_dtype="float32")
    with pytest.raises(ValueError, match=r"tau=1e\+308 overflows the model's float32"):
        est.fit(X)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_codes_beyond_the_model_dtype_are_refused_instead_of_decoded_to_nan(cls, X, small):
    est = cls(**small, loss="mse", compute_dtype="float32").fit(X.astype(np.float32))
    with pytest.raises(ValueError, match=r"cannot decode the codes X \(largest magnitude 1e\+300"):
        est.inverse_transform(np.full((2, 2), 1e300))
    with torch.no_grad():  # codes that fit float32 but overflow on decoding
        for p in est.decoder_.parameters():
            p.mul_(1e20)
    with pytest.raises(ValueError, match="decoding them overflowed"):
        est.inverse_transform(np.full((2, 2), 1e30, dtype=np.float32))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_fit_started_while_another_runs_is_refused_and_the_first_completes(cls, X, small):
    # Before: both trained one model, which could end "fitted" with n_iter_=0.
    est = cls(**small)
    started, release = threading.Event(), threading.Event()
    original = est._train

    def slow_train(*args):
        started.set()
        assert release.wait(timeout=60)
        return original(*args)

    est._train = slow_train
    first = threading.Thread(target=est.fit, args=(X,))
    first.start()
    assert started.wait(timeout=60)
    try:
        for call in (est.fit, est.partial_fit):
            with pytest.raises(RuntimeError, match="already being fitted by another call"):
                call(X)
    finally:
        release.set()
        first.join(timeout=60)
    assert est.n_iter_ == small["max_iter"] and len(est.loss_curve_) == est.n_iter_
    del est._train
    est.partial_fit(X)  # free again once the first call has returned
