"""``code_init``: the flows of ``transform`` start at 0 or at the guess of an encoder
distilled during ``fit``, refined to the stop rule (``'encoder'``) or, by default
(``'auto'``), for at most the L-BFGS steps (in the coordinates of the training codes' mean
Hessian) that ``fit`` measured on rows held out of the distillation to reach the zero
start's loss."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn import _distil as distil
from gfe_sklearn._distil import code_metric
from gfe_sklearn._model_file import ModelFileError

from .test_persistence import _rewrite

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data / 16.0
    return X[:600], X[-150:]


def _fit(train, **params):
    settings = dict(
        n_components=8,
        hidden_layer_sizes=(32,),
        max_iter=5,
        random_state=0,
        code_init="encoder",
        code_prior=0.0,  # the tests that want the prior set it
    )
    return GradientFlowEncoder(**{**settings, **params}, device="cpu").fit(train)


@pytest.fixture(scope="module")
def fitted(digits):
    return _fit(digits[0])


def test_the_encoder_trains_beside_the_decoder_without_changing_it(digits, fitted):
    # The encoder draws its weights after the decoder's and its term in the training loss
    # has the value 0, so the decoder's training is bit for bit that of a model without one.
    plain = _fit(digits[0], code_init="zeros")
    assert "encoder_" not in plain.__dict__
    assert fitted.loss_curve_ == plain.loss_curve_
    for a, b in zip(fitted.decoder_.state_dict().values(), plain.decoder_.state_dict().values()):
        assert torch.equal(a, b)
    # The encoder learned during the 5 epochs of 5 batches of 128; after fit it is
    # standardised by transform's codes of the training rows (spread of tens, not 1).
    assert int(fitted.encoder_.code_batches) == 5 * 5
    assert bool((fitted.encoder_.code_scale > 1).all())


def _fit_without_distillation(train, monkeypatch, **params):
    with monkeypatch.context() as patch:
        patch.setattr(GradientFlowEncoder, "_end_fit", lambda *args: None)
        return _fit(train, **params)


def _relative_distance_to_endpoints(est, rows):
    """Mean squared distance from the encoder's guesses to the zero start's codes, relative
    to those codes' mean squared norm."""
    with torch.no_grad():
        guess = est._guess(torch.as_tensor(rows, dtype=torch.float32)).numpy()
    codes = est.set_params(code_init="zeros").transform(rows)
    est.set_params(code_init="encoder")
    return ((guess - codes) ** 2).sum(axis=1).mean() / (codes**2).sum(axis=1).mean()


@pytest.mark.parametrize("code_prior", [0.0, 0.1])
def test_fit_distils_the_encoder_on_the_endpoints_of_the_final_decoder(
    digits, fitted, monkeypatch, code_prior
):
    # On this CPU the guesses of held-out rows are 0.049 (0.014 with the prior) from the
    # endpoints, relative to their size, against 0.180 (0.212) for the encoder trained only
    # on the training flows' codes.
    train, test = digits
    distilled = fitted if code_prior == 0 else _fit(train, code_prior=code_prior)
    in_fit_only = _fit_without_distillation(train, monkeypatch, code_prior=code_prior)
    for a, b in zip(distilled.decoder_.parameters(), in_fit_only.decoder_.parameters()):
        assert torch.equal(a, b)
    assert _relative_distance_to_endpoints(distilled, test) < 0.5 * (
        _relative_distance_to_endpoints(in_fit_only, test)
    )


def test_eight_steps_from_the_distilled_guess_reach_the_zero_starts_loss(digits, fitted):
    # On this CPU 0.32722 in 9.5 evaluations against 0.32697 in 21.1 from z = 0.
    test = digits[1]
    zero = fitted.set_params(code_init="zeros").flow_diagnostics(test)
    short = fitted.set_params(code_init="encoder", max_steps=8).flow_diagnostics(test)
    fitted.set_params(max_steps=1000)
    assert short.loss.mean() <= zero.loss.mean() * (1 + 2e-3)
    assert short.n_evals.double().mean() < 0.6 * zero.n_evals.double().mean()


def test_distillation_is_repeatable_and_leaves_the_models_generator_alone(digits, fitted):
    # A refit gives the same encoder, and a warm-started second fit trains the decoder as a
    # model without an encoder does: distillation draws from a generator of its own.
    train = digits[0]
    again = _fit(train)
    for a, b in zip(fitted.encoder_.state_dict().values(), again.encoder_.state_dict().values()):
        assert torch.equal(a, b)
    plain = _fit(train, code_init="zeros")
    for est in (again, plain):
        est.set_params(warm_start=True, max_iter=1).fit(train)
    for a, b in zip(again.decoder_.parameters(), plain.decoder_.parameters()):
        assert torch.equal(a, b)


def test_fit_distils_and_partial_fit_does_not(digits, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "gfe_sklearn._gradient_flow.distil_encoder", lambda est, X, parallel: calls.append(len(X))
    )
    est = GradientFlowEncoder(
        n_components=4, hidden_layer_sizes=(16,), max_iter=1, code_init="encoder", random_state=0
    )
    est.partial_fit(digits[0][:100])
    assert calls == []
    est.fit(digits[0][:100])
    assert calls == [100]


def test_warm_starts_end_no_higher_in_no_more_evaluations(digits, fitted):
    test = digits[1]
    warm = fitted.flow_diagnostics(test)
    zero = fitted.set_params(code_init="zeros").flow_diagnostics(test)
    fitted.set_params(code_init="encoder")
    # Both end where the stop rule finds the loss's minimum, to within its tolerance, and
    # the warm start's is as low or lower: on this CPU 0.3269 against 0.3270, at 15.9
    # against 21.1 evaluations; 1e-3 relative leaves room for another CPU's rounding.
    assert warm.loss.mean() <= zero.loss.mean() * (1 + 1e-3)
    assert warm.n_evals.double().mean() <= zero.n_evals.double().mean()
    # The refinement makes the code: the guess alone is far from the minimum.
    with torch.no_grad():
        guess = fitted._guess(torch.as_tensor(test, dtype=torch.float32))
    assert not torch.equal(guess, warm.z)
    assert np.array_equal(fitted.transform(test), warm.z.numpy())


def test_linear_mse_warm_start_ends_at_least_squares(digits):
    # A warm start changes where the flow starts, not its endpoint: for a linear decoder
    # with the squared error and no prior that is the least-squares code, within the stop
    # rule's 1e-3.
    train = digits[0]
    est = _fit(train, hidden_layer_sizes=(), loss="mse", n_components=5, code_prior=0.0)
    assert "encoder_" in est.__dict__
    w, b = (p.detach().double().numpy() for p in (est.decoder_[0].weight, est.decoder_[0].bias))
    expected = np.linalg.lstsq(w, (train - b).T, rcond=None)[0].T
    error = np.linalg.norm(est.transform(train) - expected, axis=1)
    assert (error / np.linalg.norm(expected, axis=1)).max() < 1e-3


@pytest.mark.portability
def test_rows_alone_get_the_codes_of_the_batch_from_the_encoder(digits, fitted):
    test = digits[1]
    subset = np.random.RandomState(0).choice(len(test), 17, replace=False)
    np.testing.assert_array_equal(fitted.transform(test[subset]), fitted.transform(test)[subset])


def test_the_encoder_survives_save_load_and_pickling(digits, fitted, tmp_path):
    codes = fitted.transform(digits[1])
    fitted.save(tmp_path / "model.safetensors")
    loaded = GradientFlowEncoder.load(tmp_path / "model.safetensors")
    np.testing.assert_array_equal(loaded.transform(digits[1]), codes)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).transform(digits[1]), codes)
    assert int(loaded.encoder_.code_batches) == int(fitted.encoder_.code_batches)


def test_a_file_from_before_code_init_loads_and_encodes_from_zero(digits, tmp_path):
    est = _fit(digits[0], code_init="zeros")
    path = tmp_path / "model.safetensors"
    est.save(path)

    def as_in_0_8(content):
        del content["params"]["code_init"]
        del content["fitted"]["architecture"]["dict"]["code_init"]

    _rewrite(path, edit_content=as_in_0_8)
    loaded = GradientFlowEncoder.load(path)
    assert loaded.code_init == "zeros" and "encoder_" not in loaded.__dict__
    np.testing.assert_array_equal(loaded.transform(digits[1]), est.transform(digits[1]))
    loaded.partial_fit(digits[0][:64])  # continues as the model it was


def test_an_invalid_recorded_code_init_is_refused_naming_the_field(digits, tmp_path):
    path = tmp_path / "model.safetensors"
    _fit(digits[0][:100], max_iter=1).save(path)
    _rewrite(path, edit_content=lambda c: c["fitted"]["architecture"]["dict"].update(code_init=3))
    with pytest.raises(ModelFileError, match="model.safetensors.*code_init"):
        GradientFlowEncoder.load(path)


def test_asking_a_model_without_encoder_for_its_guess_names_the_fix(digits):
    est = _fit(digits[0][:100], max_iter=1, code_init="zeros").set_params(code_init="encoder")
    with pytest.raises(ValueError, match="no encoder.*code_init='zeros'"):
        est.transform(digits[1])
    with pytest.raises(ValueError, match="code_init='encoder' differs from the fitted"):
        est.partial_fit(digits[0][:64])


def test_mixed_models_encode_from_zero_and_refuse_an_encoder(digits):
    ae = AutoEncoderBaseline(
        n_components=8, hidden_layer_sizes=(32,), max_iter=2, random_state=0, device="cpu"
    ).fit(digits[0])
    mixed = GradientFlowEncoder.from_autoencoder(ae)
    assert mixed.code_init == "zeros" and "encoder_" not in mixed.__dict__
    assert np.isfinite(mixed.transform(digits[1])).all()
    mixed.set_params(warm_start=True, max_iter=1).fit(digits[0])  # GFE training continues
    with pytest.raises(ValueError, match="from_autoencoder encodes from z = 0"):
        GradientFlowEncoder.from_autoencoder(ae, code_init="encoder")


def test_incomplete_rows_start_from_the_guess_of_their_observed_entries(digits):
    train, test = (x.copy() for x in digits)
    rng = np.random.RandomState(0)
    train[rng.uniform(size=train.shape) < 0.3] = np.nan
    test[rng.uniform(size=test.shape) < 0.3] = np.nan
    est = _fit(train, allow_nan=True, max_iter=2)
    codes = est.transform(test)
    assert np.isfinite(codes).all()
    np.testing.assert_array_equal(est.transform(test[:7]), codes[:7])


def test_the_default_refines_the_guess_until_a_step_gains_less_than_fit_measured(digits):
    train, test = digits
    est = _fit(train, code_init="auto", code_prior=0.1)
    assert GradientFlowEncoder().get_params()["code_init"] == "auto"
    assert est.encoder_distilled_ is True
    tau, cap = est.refine_min_decrease_, est.refine_max_evals_
    assert tau > 0 and cap >= 2  # on this CPU 0.00071 and 5
    result = est.flow_diagnostics(test)
    np.testing.assert_array_equal(est.transform(test), result.z.numpy())
    assert int(result.n_evals.max()) <= cap
    # The same codes as the encoder's start with that rule set by hand, and the zero start's
    # loss to within 0.001 (on this CPU 0.3302 against 0.3299).
    by_hand = est.set_params(
        code_init="encoder", solver_options={"min_decrease": tau, "max_evals": cap}
    )
    np.testing.assert_array_equal(by_hand.transform(test), result.z.numpy())
    zero = est.set_params(code_init="zeros", max_steps=1000, solver_options=None).flow_diagnostics(
        test
    )
    assert result.loss.mean() <= zero.loss.mean() + 1e-3
    # On this CPU 4.2 evaluations against 16.2.
    assert result.n_evals.double().mean() < 0.6 * zero.n_evals.double().mean()
    # A lower max_steps caps the refinement further, and a user's min_decrease wins.
    est.set_params(code_init="auto", max_steps=1)
    assert int(est.flow_diagnostics(test).n_steps.max()) == 1
    est.set_params(max_steps=1000, solver_options={"min_decrease": 1e9})
    assert int(est.flow_diagnostics(test).n_steps.max()) == 2


def test_lbfgs_stops_a_sample_at_its_first_step_after_one_that_gains_less_than_min_decrease(
    digits,
):
    train, test = digits
    est = _fit(train, code_init="encoder", code_prior=0.1)
    full = est.flow_diagnostics(test, record_history=True)
    history = full.loss_history.numpy()
    tau = float(np.float32(np.nanmedian(history[2] - history[3])))
    est.set_params(solver_options={"min_decrease": tau})
    stopped = est.flow_diagnostics(test)
    for row in range(len(test)):
        curve = history[:, row][~np.isnan(history[:, row])]
        small = curve[:-1] - curve[1:] < tau
        small[0] = False  # the first step's decrease does not count
        step = int(np.argmax(small)) + 1 if small.any() else len(small)
        assert int(stopped.n_steps[row]) == step
        assert float(stopped.loss[row]) == curve[step]
    assert bool(stopped.converged.all())


def _held_out_rows(monkeypatch):
    """Patches the calibration to record the rows it measures on."""
    seen = []

    def spy(estimator, X):
        seen.append(X)
        return measure(estimator, X)

    measure = distil.refinement_rule
    monkeypatch.setattr(distil, "refinement_rule", spy)
    return seen


def test_fit_measures_the_rule_that_keeps_held_out_rows_at_the_zero_starts_loss(
    digits, monkeypatch
):
    train, _ = digits
    seen = _held_out_rows(monkeypatch)
    est = _fit(train, code_init="auto", code_prior=0.1)
    (held,) = seen
    # One training row in 8, drawn from all of them (digits are not sorted by class).
    assert held.shape == (600 // 8, 64)
    rows = [np.flatnonzero((train == row).all(axis=1))[0] for row in held]
    assert len(set(rows)) == 75 and max(rows) - min(rows) > 300

    def excess(tau, cap=None):
        options = {"min_decrease": tau} if cap is None else {"min_decrease": tau, "max_evals": cap}
        return zero - est.set_params(code_init="encoder", solver_options=options).score(held)

    zero = est.set_params(code_init="zeros").score(held)  # minus the reconstruction loss
    tau, cap = est.refine_min_decrease_, est.refine_max_evals_
    tol = distil.REFINE_TOL
    # The largest candidate within three quarters of the tolerance without a cap...
    assert tau in {float(np.float32(c)) for c in distil.CANDIDATES}
    assert excess(tau) <= distil.RULE_SHARE * tol
    larger = distil.CANDIDATES[distil.CANDIDATES > tau * 1.01]
    if len(larger):
        assert excess(float(np.float32(larger[-1]))) > distil.RULE_SHARE * tol
    # ...then the fewest evaluations per sample within the tolerance.
    assert excess(tau, cap) <= tol < excess(tau, cap - 1)


def test_the_encoder_learns_from_every_row_but_the_held_out_ones(digits, monkeypatch):
    train, _ = digits
    seen = _held_out_rows(monkeypatch)
    learned = []
    original = GradientFlowEncoder._encoder_input

    def record(encoder, rows):
        if torch.is_grad_enabled():
            learned.append(rows.detach().numpy().copy())
        return original(encoder, rows)

    monkeypatch.setattr(GradientFlowEncoder, "_encoder_input", staticmethod(record))
    est = _fit(train, code_init="auto", code_prior=0.1, max_iter=1)
    assert est.encoder_distilled_
    # The last epoch of the distillation: 525 rows in batches of 128.
    distilled = np.concatenate(learned[-5:])
    assert distilled.shape == (525, 64)
    held = {row.astype(np.float32).tobytes() for row in seen[0]}
    rest = {row.tobytes() for row in train.astype(np.float32)} - held
    assert {row.tobytes() for row in distilled} == rest


@pytest.mark.parametrize("solver", ["amd", "rk4", "dopri5"])
def test_a_flow_solver_distils_its_encoder_without_a_stopping_rule(digits, solver):
    train, test = digits
    est = _fit(train[:400], solver=solver, max_iter=1, code_prior=0.1)
    assert est.encoder_distilled_ is True
    assert est.refine_min_decrease_ == 0.0 and est.refine_max_evals_ is None
    assert np.isfinite(est.transform(test[:5])).all()


def test_the_refinement_runs_to_the_stop_rule_where_no_rule_was_measured(digits, monkeypatch):
    train, test = digits
    small = _fit(train[: 8 * distil.MIN_CALIBRATION_ROWS - 8], code_init="auto", code_prior=0.1)
    assert small.encoder_distilled_ is True
    assert small.refine_min_decrease_ == 0.0 and small.refine_max_evals_ is None
    monkeypatch.setattr(distil, "REFINE_TOL", -1.0)  # no candidate reaches it
    est = _fit(train, code_init="auto", code_prior=0.1)
    assert est.refine_min_decrease_ == 0.0 and est.refine_max_evals_ is None
    result = est.flow_diagnostics(test)
    np.testing.assert_array_equal(
        result.z.numpy(), est.set_params(code_init="encoder").transform(test)
    )


@pytest.mark.parametrize(
    "how", ["partial_fit", "code_prior=0", "solver='amd'", "code_prior=0 after fit"]
)
def test_auto_starts_at_zero_where_no_distilled_guess_serves(digits, monkeypatch, how):
    train, test = digits[0][:200], digits[1]
    calls = []
    monkeypatch.setattr(
        "gfe_sklearn._gradient_flow.distil_encoder", lambda est, X, parallel: calls.append(1)
    )
    params = {"code_init": "auto", "code_prior": 0.1, "max_iter": 2}
    if how == "code_prior=0":
        params["code_prior"] = 0.0
    if how == "solver='amd'":
        params.update(solver="amd", max_iter=1)
    est = GradientFlowEncoder(**{**dict(n_components=4, hidden_layer_sizes=(16,)), **params})
    est.set_params(random_state=0, device="cpu")
    if how == "partial_fit":
        est.partial_fit(train)
    else:
        est.fit(train)
    if how == "code_prior=0 after fit":
        assert calls == [1]
        est.set_params(code_prior=0.0)
    else:
        # fit distils only an encoder whose guess transform will use.
        assert calls == [] and est.encoder_distilled_ is False
    codes = est.transform(test)
    np.testing.assert_array_equal(codes, est.set_params(code_init="zeros").transform(test))


def test_partial_fit_after_fit_returns_auto_to_the_zero_start(digits):
    train, test = digits
    est = _fit(train, code_init="auto", code_prior=0.1, max_iter=2)
    assert est.encoder_distilled_ is True
    # The decoder moves on from the codes the encoder was distilled on.
    est.partial_fit(train[:128])
    assert est.encoder_distilled_ is False
    codes = est.transform(test)
    np.testing.assert_array_equal(codes, est.set_params(code_init="zeros").transform(test))


def test_the_distilled_flag_survives_save_and_load_and_older_files_start_at_zero(digits, tmp_path):
    train, test = digits
    est = _fit(train, code_init="auto", code_prior=0.1, max_iter=2)
    codes = est.transform(test)
    path = tmp_path / "model.safetensors"
    est.save(path)
    loaded = GradientFlowEncoder.load(path)
    assert loaded.encoder_distilled_ is True
    np.testing.assert_array_equal(loaded.code_metric_, est.code_metric_)
    assert loaded.refine_min_decrease_ == est.refine_min_decrease_ > 0
    assert loaded.refine_max_evals_ == est.refine_max_evals_
    np.testing.assert_array_equal(loaded.transform(test), codes)

    def as_before_0_10(content):
        content["fitted"].pop("encoder_distilled")
        content["fitted"].pop("code_metric")
        content["fitted"].pop("refine_min_decrease")
        content["fitted"].pop("refine_max_evals")

    def negative_rule(content):
        content["fitted"]["refine_min_decrease"] = -1.0

    def no_evals(content):
        content["fitted"]["refine_max_evals"] = 0

    def smaller_metric(content):
        metric = content["fitted"]["code_metric"]
        content["fitted"]["code_metric"] = [row[:-1] for row in metric[:-1]]

    saved = path.read_bytes()
    _rewrite(path, edit_content=smaller_metric)
    with pytest.raises(ModelFileError, match="code_metric is 7 x 7, but the model's codes have 8"):
        GradientFlowEncoder.load(path)
    path.write_bytes(saved)
    for edit, field in [(negative_rule, "refine_min_decrease"), (no_evals, "refine_max_evals")]:
        _rewrite(path, edit_content=edit)
        with pytest.raises(ModelFileError, match=field):
            GradientFlowEncoder.load(path)
        path.write_bytes(saved)
    _rewrite(path, edit_content=as_before_0_10)
    older = GradientFlowEncoder.load(path)
    assert older.encoder_distilled_ is False and older.code_metric_ is None
    assert older.refine_min_decrease_ is None and older.refine_max_evals_ is None
    zeros = est.set_params(code_init="zeros").transform(test)
    np.testing.assert_array_equal(older.transform(test), zeros)


def test_a_user_decoder_of_images_gets_an_encoder_of_flat_rows(X, small, tmp_path):
    from .test_autoencoder import _ImageDecoder

    est = GradientFlowEncoder(**small, decoder=_ImageDecoder(), code_init="encoder").fit(X)
    assert est.encoder_[0].in_features == 16  # the (1, 4, 4) images, flattened
    codes = est.transform(X)
    np.testing.assert_array_equal(est.transform(X[:5]), codes[:5])
    est.save(tmp_path / "model.safetensors")
    loaded = GradientFlowEncoder.load(tmp_path / "model.safetensors", decoder=_ImageDecoder())
    np.testing.assert_array_equal(loaded.transform(X), codes)


def test_the_imputer_starts_its_own_flows_and_distils_no_encoder(digits, monkeypatch):
    from gfe_sklearn import GradientFlowImputer

    calls = []
    monkeypatch.setattr(
        "gfe_sklearn._gradient_flow.distil_encoder", lambda est, X, parallel: calls.append(1)
    )
    train = digits[0][:100].copy()
    train[np.random.RandomState(0).uniform(size=train.shape) < 0.3] = np.nan
    encoder = GradientFlowEncoder(n_components=4, hidden_layer_sizes=(16,), max_iter=1)
    imputer = GradientFlowImputer(encoder=encoder, code_prior=0.0, random_state=0).fit(train)
    assert encoder.code_init == "auto"  # the user's instance is left as it was
    assert imputer.encoder_.code_init == "zeros" and calls == []


def test_the_metric_is_the_inverse_square_root_of_the_mean_hessian(digits):
    train, _ = digits
    est = _fit(train[:100], loss="mse", code_prior=0.1, compute_dtype="float64", max_iter=1)
    # A linear decoder and mse: every row's Hessian is 2 W^T W / d plus the prior's.
    k, d = est.n_components, train.shape[1]
    est.decoder_ = torch.nn.Linear(k, d, dtype=torch.float64)
    target = torch.as_tensor(train[:50])
    codes = torch.randn(50, k, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    metric = code_metric(est, target, codes)
    weight = est.decoder_.weight.detach()
    hessian = 2 * weight.T @ weight / d + est._prior_strength() / d * torch.eye(k).double()
    np.testing.assert_allclose(metric @ metric.T, torch.linalg.inv(hessian).numpy(), rtol=1e-8)
    np.testing.assert_allclose(metric, metric.T)


def test_the_default_fit_keeps_a_metric_only_where_its_guess_serves(digits):
    train, _ = digits
    est = _fit(train[:200], code_init="auto", code_prior=0.1, max_iter=1)
    assert est.code_metric_.shape == (8, 8) and np.isfinite(est.code_metric_).all()
    assert _fit(train[:200], code_init="auto", max_iter=1).code_metric_ is None  # no prior
    est.partial_fit(train[:64])
    assert est.code_metric_ is None


class _FirstOrderTanh(torch.autograd.Function):
    """tanh with a backward that cannot itself be differentiated."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tanh(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (1 - torch.tanh(x) ** 2)


class _FirstOrderDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden, self.out = torch.nn.Linear(8, 32), torch.nn.Linear(32, 64)

    def forward(self, z):
        return self.out(_FirstOrderTanh.apply(self.hidden(z)))


def test_a_decoder_without_second_derivatives_refines_in_code_coordinates(digits):
    train, test = digits
    est = _fit(train[:300], decoder=_FirstOrderDecoder(), code_init="auto", code_prior=0.1)
    assert est.encoder_distilled_ is True and est.code_metric_ is None
    result = est.flow_diagnostics(test)
    options = {"min_decrease": est.refine_min_decrease_}
    if est.refine_max_evals_ is not None:
        options["max_evals"] = est.refine_max_evals_
    plain = est.set_params(code_init="encoder", solver_options=options).transform(test)
    np.testing.assert_array_equal(plain, result.z.numpy())
