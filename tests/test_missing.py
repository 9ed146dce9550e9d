"""Missing entries: the observed-only loss, GradientFlowEncoder(allow_nan=True), refusals."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn.flow import LOSSES, Loss, encode

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

# The per-sample solvers that transform offers, with short flows for the tests.
SOLVER_SETTINGS = {
    "amd": {},
    "lbfgs": {},
    "rk4": {"n_steps": 10, "tau": 10.0},
    "dopri5": {"max_steps": 50, "tau": 10.0},
}


def _holes(X, fraction=0.3, seed=0):
    """``X`` with a random ``fraction`` of entries NaN, every row keeping its first entry."""
    X = X.copy()
    hide = np.random.RandomState(seed).uniform(size=X.shape) < fraction
    hide[:, 0] = False
    X[hide] = np.nan
    return X


def _two_factor_data():
    """300 samples of 24 features in (0, 1) that two factors explain exactly."""
    rng = np.random.RandomState(0)
    basis = rng.uniform(-3, 3, size=(2, 24))
    return 1 / (1 + np.exp(-rng.normal(size=(300, 2)) @ basis))


def _missing_aware_encoder(**params):
    """An L-BFGS encoder with allow_nan, trained enough to fit ``_two_factor_data``."""
    settings = dict(hidden_layer_sizes=(32,), solver="lbfgs", max_iter=15, learning_rate=5e-3)
    settings.update(allow_nan=True, device="cpu", random_state=0)
    return GradientFlowEncoder(**settings, **params)


# -- the loss --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_observed_only_loss_is_the_mean_over_observed_entries(name):
    rng = np.random.RandomState(0)
    output = torch.tensor(rng.normal(size=(3, 5)))
    target = torch.tensor(rng.uniform(size=(3, 5)))
    target[0, [1, 3]] = np.nan
    target[2, :4] = np.nan
    got = LOSSES[name].observed_only()(output, target)
    for row in range(3):
        kept = ~torch.isnan(target[row])
        expected = LOSSES[name](output[row : row + 1, kept], target[row : row + 1, kept])
        torch.testing.assert_close(got[row : row + 1], expected)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_missing_entries_give_no_gradient_and_no_nan(name):
    output = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 4, dtype=torch.float64)
    target[0, 2] = target[1, 0] = np.nan
    LOSSES[name].observed_only()(output, target).sum().backward()
    assert torch.isfinite(output.grad).all()
    assert output.grad[0, 2] == 0 and output.grad[1, 0] == 0
    assert (output.grad[~torch.isnan(target)] != 0).all()


def test_observed_only_needs_per_entry_terms():
    loss = Loss("custom", lambda output, target: (output - target).abs().mean(1), lambda o: o)
    with pytest.raises(ValueError, match="no per-entry terms"):
        loss.observed_only()


def test_masked_code_is_the_code_of_the_observed_features_alone():
    # The flow of a sample with missing entries is the flow of its observed features under
    # the decoder restricted to them: nothing of the missing entries leaks in.
    gen = torch.Generator().manual_seed(0)
    decoder = torch.nn.Linear(3, 8, dtype=torch.float64)
    with torch.no_grad():
        decoder.weight.copy_(torch.randn(8, 3, generator=gen, dtype=torch.float64))
    target = torch.rand(4, 8, generator=gen, dtype=torch.float64)
    observed = [0, 2, 3, 6]
    masked = target.clone()
    masked[:, [1, 4, 5, 7]] = np.nan
    for solver in ("amd", "lbfgs"):
        full = encode(decoder, masked, 3, solver=solver, loss=LOSSES["bce"].observed_only())
        alone = encode(
            lambda z: decoder(z)[:, observed], target[:, observed], 3, solver=solver, loss="bce"
        )
        torch.testing.assert_close(full.z, alone.z, rtol=1e-6, atol=1e-8)


# -- the estimator ---------------------------------------------------------------------------


def test_nan_is_refused_by_default_with_the_way_to_accept_it(X, small):
    X = _holes(X)
    with pytest.raises(ValueError, match="contains NaN.*allow_nan=True"):
        GradientFlowEncoder(**small).fit(X)
    fitted = GradientFlowEncoder(**small).fit(np.nan_to_num(X))
    for method in (fitted.transform, fitted.score):
        with pytest.raises(ValueError, match="contains NaN.*allow_nan=True"):
            method(X)


def test_autoencoder_refuses_nan_and_points_to_the_gradient_flow_route(X, small):
    with pytest.raises(
        ValueError,
        match=r"encoder network needs every input.*"
        r"GradientFlowEncoder\(allow_nan=True\)",
    ):
        AutoEncoderBaseline(**small).fit(_holes(X))


def test_infinity_is_refused_even_with_allow_nan(X, small):
    X = X.copy()
    X[3, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        GradientFlowEncoder(allow_nan=True, **small).fit(X)


@pytest.mark.parametrize("to_sparse", [False, True], ids=["dense", "sparse"])
def test_rows_without_an_observed_entry_are_refused_by_name(X, small, to_sparse):
    X = _holes(X)
    est = GradientFlowEncoder(allow_nan=True, **small).fit(X)
    X[[4, 9]] = np.nan
    data = sp.csr_matrix(X) if to_sparse else X
    for method in (est.transform, est.score, est.fit):
        with pytest.raises(
            ValueError,
            match=r"2 row\(s\) of X have no observed entry.*"
            r"rows \[4, 9\].*Drop these rows",
        ):
            method(data)


def test_bce_range_check_skips_missing_entries_but_not_bad_values(X, small):
    X = _holes(X)
    GradientFlowEncoder(allow_nan=True, loss="bce", **small).fit(X)
    X[5, 0] = 1.5
    with pytest.raises(ValueError, match=r"needs X in \[0, 1\]"):
        GradientFlowEncoder(allow_nan=True, loss="bce", **small).fit(X)


def test_missing_entries_do_not_train_their_outputs(X, small):
    # A feature that is never observed gives its output unit no gradient: RMSprop leaves its
    # weights exactly where they started, while the observed features' weights move.
    decoder = torch.nn.Linear(2, X.shape[1])
    X = X.copy()
    X[:, 5] = np.nan
    est = GradientFlowEncoder(allow_nan=True, decoder=decoder, **small).fit(X)
    trained = est.decoder_
    torch.testing.assert_close(trained.weight[5], decoder.weight[5], rtol=0, atol=0)
    torch.testing.assert_close(trained.bias[5], decoder.bias[5], rtol=0, atol=0)
    assert not torch.equal(trained.weight[4], decoder.weight[4])


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_score_is_the_mean_loss_over_observed_entries(X, small, loss):
    X = _holes(X)
    est = GradientFlowEncoder(allow_nan=True, loss=loss, **small).fit(X)
    reconstruction = est.inverse_transform(est.transform(X))
    observed = ~np.isnan(X)
    if loss == "mse":
        per_entry = (reconstruction - X) ** 2
    else:
        p = np.clip(reconstruction, 1e-300, 1 - 1e-16)
        per_entry = -(X * np.log(p) + (1 - X) * np.log1p(-p))
    expected = -np.nanmean(np.where(observed, per_entry, np.nan), axis=1)
    np.testing.assert_allclose(est.score_samples(X), expected, rtol=1e-6)
    np.testing.assert_allclose(est.score(X), expected.mean(), rtol=1e-6)


def test_inverse_transform_reconstructs_missing_entries(X, small):
    X = _holes(X, fraction=0.5)
    est = GradientFlowEncoder(allow_nan=True, **small).fit(X)
    reconstruction = est.inverse_transform(est.transform(X))
    assert reconstruction.shape == X.shape
    assert np.isfinite(reconstruction).all()
    assert ((reconstruction >= 0) & (reconstruction <= 1)).all()


@pytest.mark.portability
@pytest.mark.parametrize("solver", sorted(SOLVER_SETTINGS))
def test_masked_rows_encode_alone_as_in_a_batch(X, small, solver):
    X = _holes(X, fraction=0.5)
    est = GradientFlowEncoder(
        allow_nan=True, solver=solver, **SOLVER_SETTINGS[solver], **small
    ).fit(X)
    codes = est.transform(X)
    rows = [0, 17, 59]
    np.testing.assert_array_equal(est.transform(X[rows]), codes[rows])
    np.testing.assert_array_equal(est.transform(X[17:18]), codes[17:18])


def test_complete_data_encode_as_without_allow_nan(X, small):
    plain = GradientFlowEncoder(**small).fit(X)
    aware = GradientFlowEncoder(allow_nan=True, **small).fit(X)
    # The observed-only mean is a sum over a count: the same numbers, rounded differently.
    np.testing.assert_allclose(aware.transform(X), plain.transform(X), rtol=1e-6, atol=1e-8)


def test_more_observed_entries_predict_hidden_ones_better():
    # The missing entries of a sample come from the decoder at the code of its observed
    # entries; a sample seen through fewer entries is predicted worse on the rest.
    X = _two_factor_data()
    est = _missing_aware_encoder(n_components=2).fit(X[:240])
    test, hidden = X[240:], np.arange(12, 24)
    errors = []
    for n_seen in (2, 12):
        masked = test.copy()
        masked[:, n_seen:] = np.nan
        guess = est.inverse_transform(est.transform(masked))
        errors.append(np.sqrt(np.mean((guess[:, hidden] - test[:, hidden]) ** 2)))
    mean_guess = np.sqrt(np.mean((X[:240, hidden].mean(0) - test[:, hidden]) ** 2))
    assert errors[1] < errors[0]
    assert errors[1] < 0.5 * mean_guess


# -- hiding entries from the training flows (fit_hide_fraction) ------------------------------


def _training_flow_targets(est, X):
    """Fit ``est`` on ``X``; return the targets its training flows saw, and their losses."""
    seen = []
    flow = est._flow

    def spy(target, *args, **kwargs):
        if kwargs.get("row_chunk", "auto") is None:  # the training flows' call
            seen.append((target.clone(), kwargs.get("loss")))
        return flow(target, *args, **kwargs)

    est._flow = spy
    est.fit(X)
    del est._flow
    return seen


@pytest.mark.parametrize("allow_nan", [False, True])
def test_training_flows_see_a_random_part_of_each_rows_entries(X, small, allow_nan):
    data = _holes(X) if allow_nan else X
    est = GradientFlowEncoder(fit_hide_fraction=0.8, allow_nan=allow_nan, **small)
    seen = _training_flow_targets(est, data)
    assert seen
    targets = torch.cat([target for target, _ in seen]).numpy()
    hidden = np.isnan(targets).sum() - np.isnan(data).sum() * est.n_iter_
    # Each row hides each observed entry with a rate drawn uniformly from [0, 0.8].
    observed = (~np.isnan(data)).sum() * est.n_iter_
    assert 0.3 < hidden / observed < 0.5
    assert (~np.isnan(targets)).any(axis=1).all()
    # The flow's loss skips what is hidden; the decoder is trained on every observed entry.
    assert all(torch.isfinite(loss(torch.zeros_like(t), t)).all() for t, loss in seen)


def test_a_row_with_one_observed_entry_keeps_it_in_view(X, small):
    X = X.copy()
    X[:, 1:] = np.nan
    est = GradientFlowEncoder(fit_hide_fraction=0.99, allow_nan=True, **small)
    for target, _ in _training_flow_targets(est, X):
        assert not torch.isnan(target[:, 0]).any()
    assert np.isfinite(est.transform(X)).all()


@pytest.mark.parametrize("adjoint", ["approx", "full", "unrolled"])
def test_hiding_trains_through_every_adjoint(X, small, adjoint):
    # The full and unrolled adjoints differentiate the loss on every entry through a flow
    # that saw only some of them.
    settings = dict(solver="rk4", n_steps=5, tau=5.0, adjoint=adjoint, **small)
    plain = GradientFlowEncoder(**settings).fit(X)
    hiding = GradientFlowEncoder(fit_hide_fraction=0.5, **settings).fit(X)
    assert np.isfinite(hiding.loss_curve_).all() and np.isfinite(hiding.transform(X)).all()
    assert hiding.loss_curve_ != plain.loss_curve_


def test_hiding_is_off_by_default_and_reproducible(X, small):
    plain = GradientFlowEncoder(**small).fit(X)
    assert GradientFlowEncoder().fit_hide_fraction == 0
    assert all(loss is None for _, loss in _training_flow_targets(GradientFlowEncoder(**small), X))
    hiding = [GradientFlowEncoder(fit_hide_fraction=0.5, **small).fit(X) for _ in range(2)]
    np.testing.assert_array_equal(hiding[0].transform(X), hiding[1].transform(X))
    assert not np.array_equal(hiding[0].transform(X), plain.transform(X))


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_hide_fraction_outside_0_1_is_refused(X, small, fraction):
    with pytest.raises(ValueError, match="fit_hide_fraction"):
        GradientFlowEncoder(fit_hide_fraction=fraction, **small).fit(X)


def test_hiding_entries_in_training_predicts_hidden_ones_better():
    # With a code larger than the data need (8 components, 2 true factors), a code found from
    # a fifth of a sample's entries fits those alone and misses the rest; a decoder trained
    # to predict entries its codes were not found from halves that error.
    X = _two_factor_data()
    test = X[240:].copy()
    kept = np.random.RandomState(1).uniform(size=test.shape) < 0.2
    test[~kept] = np.nan
    errors = []
    for fraction in (0.0, 0.8):
        # Without a prior on the codes, which also keeps codes from fitting what they see.
        est = _missing_aware_encoder(
            n_components=8, fit_hide_fraction=fraction, code_prior=0.0
        ).fit(X[:240])
        guess = est.inverse_transform(est.transform(test))
        errors.append(np.sqrt(np.mean((guess[~kept] - X[240:][~kept]) ** 2)))
    assert errors[1] < 0.7 * errors[0]


def test_save_and_load_keep_allow_nan(X, small, tmp_path):
    X = _holes(X)
    est = GradientFlowEncoder(allow_nan=True, **small).fit(X)
    est.save(tmp_path / "model.gfe")
    loaded = GradientFlowEncoder.load(tmp_path / "model.gfe")
    assert loaded.allow_nan
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


@parametrize_with_checks(
    [
        GradientFlowEncoder(
            allow_nan=True,
            loss="mse",
            n_components=2,
            hidden_layer_sizes=(8,),
            max_iter=2,
            batch_size=16,
            device="cpu",
        )
    ]
)
def test_sklearn_checks_pass_with_allow_nan(estimator, check):
    check(estimator)
