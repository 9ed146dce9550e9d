"""GradientFlowEncoder: engine settings, user decoders, from_autoencoder, sklearn tooling."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.validation import check_is_fitted

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder, _gradient_flow
from gfe_sklearn.flow import ADJOINTS, ALPHAS, FLOWS, GRIDS, SOLVERS, solver_options

from .flow.problems import goes_to_endpoint

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

FAST = dict(n_steps=10, max_steps=50)  # keeps the fixed-grid and dopri5 flows short


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_every_solver_and_flow_trains_and_encodes(solver, flow, X, small):
    params = {**small, **FAST, "solver": solver, "flow": flow, "max_iter": 1}
    if goes_to_endpoint(solver) and flow != "gradient":
        with pytest.raises(ValueError, match=f"flow='{flow}' cannot be used with"):
            GradientFlowEncoder(**params).fit(X)
        return
    est = GradientFlowEncoder(**params).fit(X)
    assert np.isfinite(est.loss_curve_).all()
    assert np.isfinite(est.transform(X[:8])).all()


@pytest.mark.parametrize("adjoint", sorted(ADJOINTS))
def test_every_gradient_mode_trains(adjoint, X, small):
    est = GradientFlowEncoder(
        **{**small, **FAST, "solver": "rk4", "adjoint": adjoint, "max_iter": 1}
    )
    before = [p.detach().clone() for p in est.fit(X[:16]).decoder_.parameters()]
    est.set_params(warm_start=True).fit(X[:16])
    after = list(est.decoder_.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_each_solver_receives_exactly_its_own_options(solver, X, small, monkeypatch):
    seen = []
    real = _gradient_flow.encode
    monkeypatch.setattr(
        _gradient_flow, "encode", lambda *a, **kw: seen.append(kw) or real(*a, **kw)
    )
    params = dict(
        beta=0.5,
        s0=0.5,
        s_min=0.1,
        s_max=5.0,
        kappa=1.2,
        max_backtracks=10,
        n_steps=7,
        grid="linear",
        rtol=1e-4,
        atol=1e-5,
        max_steps=40,
    )
    tau = "auto" if goes_to_endpoint(solver) else 10.0
    est = GradientFlowEncoder(
        **{
            **small,
            **params,
            "solver": solver,
            "tau": tau,
            "stop_tol": 1e-3,
            "fit_stop_tol": 1e-5,
            "fit_max_steps": 7,
            "stop_window": 3,
            "max_iter": 1,
            # Training and transform flows only: no distillation, no capped refinement.
            "code_init": "zeros",
        }
    )
    est.fit(X[:16])
    n_fit = len(seen)
    est.transform(X[:4])
    names = set(solver_options(solver)) & set(params)
    assert names, "every solver takes at least one flat option"
    assert 0 < n_fit < len(seen)
    for i, kwargs in enumerate(seen):
        expected = {name: params[name] for name in names}
        if i < n_fit and solver == "lbfgs":  # training flows of L-BFGS stop at fit_max_steps
            expected["max_steps"] = 7
        assert kwargs["options"] == expected
        stop_tol = 1e-5 if i < n_fit else 1e-3  # training flows use fit_stop_tol
        assert (kwargs["solver"], kwargs["tau"], kwargs["stop_tol"]) == (solver, tau, stop_tol)
    assert [kw["adjoint"] for kw in seen][-1] == "approx"  # transform never builds a graph


def test_flat_solver_parameters_cover_every_exposed_option():
    exposed = set(_gradient_flow.SOLVER_PARAMETERS)
    assert exposed <= set(GradientFlowEncoder().get_params())
    for solver in SOLVERS:
        assert exposed & set(solver_options(solver))
    assert set(GRIDS) == {"log", "linear"} and set(ALPHAS) >= {"constant", "exp"}


def test_invalid_combinations_fail_at_fit_and_change_nothing(X, small):
    est = GradientFlowEncoder(**small, alpha="exp")
    with pytest.raises(ValueError, match="alpha='exp' cannot be used with solver='amd'"):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    est.set_params(solver="rk4", **FAST).fit(X)
    with pytest.raises(ValueError, match="s0=20.0 exceeds s_max=10.0"):
        GradientFlowEncoder(**small, s0=20.0, s_max=10.0).fit(X)
    with pytest.raises(ValueError, match="s_min=20.0 exceeds s_max=10.0"):
        GradientFlowEncoder(**small, s_min=20.0, s_max=10.0).fit(X)


@pytest.mark.parametrize("param", ["solver", "flow", "adjoint", "alpha", "grid"])
def test_unknown_engine_names_list_the_registry(param, X, small):
    registry = {
        "solver": SOLVERS,
        "flow": FLOWS,
        "adjoint": ADJOINTS,
        "alpha": ALPHAS,
        "grid": GRIDS,
    }[param]
    with pytest.raises(ValueError, match=f"'{param}' parameter of GradientFlowEncoder") as info:
        GradientFlowEncoder(**small, **{param: "nope"}).fit(X)
    assert all(repr(name) in str(info.value) for name in registry)


@pytest.mark.portability
def test_rows_encode_alone_as_in_a_batch(X, small):
    est = GradientFlowEncoder(**small).fit(X)
    codes = est.transform(X)
    alone = np.vstack([est.transform(X[i : i + 1]) for i in (0, 17, 59)])
    np.testing.assert_array_equal(alone, codes[[0, 17, 59]])
    # fit_transform refits with the same seed: identical arithmetic.
    np.testing.assert_array_equal(est.fit_transform(X), codes)


class _ConvDecoder(torch.nn.Module):
    """Codes (n, 2) to 4x4 single-channel images (n, 1, 4, 4) by a transposed convolution."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 8 * 2 * 2)
        self.up = torch.nn.ConvTranspose2d(8, 1, kernel_size=2, stride=2)

    def forward(self, z):
        return self.up(torch.nn.functional.elu(self.fc(z)).reshape(-1, 8, 2, 2))


def test_user_decoder_for_images(X, small):
    module = _ConvDecoder()
    initial = [p.detach().clone() for p in module.parameters()]
    est = GradientFlowEncoder(**small, decoder=module).fit(X)  # X rows are flat 4x4 images
    assert isinstance(est.decoder_, _ConvDecoder) and est.decoder_ is not module
    assert all(torch.equal(p, q) for p, q in zip(module.parameters(), initial))
    assert next(est.decoder_.parameters()).dtype == torch.float32  # compute_dtype's default
    assert est.transform(X).shape == (60, 2)
    assert est.inverse_transform(np.zeros((3, 2))).shape == (3, 16)
    assert np.isfinite(est.score(X))
    with pytest.raises(ValueError, match=r"shape \(1, 1, 4, 4\), but X has 15 features"):
        GradientFlowEncoder(**small, decoder=module).fit(X[:, :15])
    wrong_width = GradientFlowEncoder(**{**small, "n_components": 3}, decoder=module)
    with pytest.raises(ValueError, match=r"cannot decode a code of shape \(1, n_components=3"):
        wrong_width.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(wrong_width)


def test_from_autoencoder_is_the_papers_mixed_model(X, small):
    ae = AutoEncoderBaseline(**{**small, "max_iter": 5}).fit(X)
    mixed = GradientFlowEncoder.from_autoencoder(ae, solver="amd", tau=50.0)
    check_is_fitted(mixed)
    assert (mixed.tau, mixed.n_components, mixed.hidden_layer_sizes) == (50.0, 2, (8,))
    default_epochs = GradientFlowEncoder().max_iter
    assert (mixed.device, mixed.random_state, mixed.max_iter) == ("cpu", 0, default_epochs)
    assert (mixed.n_iter_, mixed.n_samples_seen_, mixed.loss_curve_) == (0, 0, [])
    for p, q in zip(mixed.decoder_.parameters(), ae.decoder_.parameters()):
        assert torch.equal(p, q) and p is not q
    codes = mixed.transform(X)
    assert codes.shape == (60, 2) and mixed.score(X) <= 0
    # Both estimators' inverse_transform is the base class's, on a copy of the weights.
    np.testing.assert_array_equal(mixed.inverse_transform(codes), ae.inverse_transform(codes))
    # Training the copy further (warm start) leaves the autoencoder's decoder alone.
    snapshot = [p.detach().clone() for p in ae.decoder_.parameters()]
    mixed.set_params(warm_start=True, max_iter=1).fit(X)
    assert mixed.n_iter_ == 1
    assert all(torch.equal(p, q) for p, q in zip(ae.decoder_.parameters(), snapshot))


def test_from_autoencoder_needs_a_fitted_autoencoder(X, small):
    with pytest.raises(NotFittedError):
        GradientFlowEncoder.from_autoencoder(AutoEncoderBaseline(**small))
    with pytest.raises(TypeError, match="needs a fitted AutoEncoderBaseline"):
        GradientFlowEncoder.from_autoencoder(GradientFlowEncoder(**small).fit(X))
    ae = AutoEncoderBaseline(**small).fit(X)
    with pytest.raises(ValueError, match="'solver' parameter"):
        GradientFlowEncoder.from_autoencoder(ae, solver="nope")
    with pytest.raises(ValueError, match=r"cannot change \['loss', 'n_components'\]"):
        GradientFlowEncoder.from_autoencoder(ae, n_components=3, loss="mse")


def test_pipeline_from_the_issue(Xy, small):
    X, y = Xy
    pipe = Pipeline(
        [
            ("scale", MinMaxScaler()),
            ("gfe", GradientFlowEncoder(**small)),
            ("clf", LogisticRegression()),
        ]
    )
    assert pipe.fit(X * 16, y).predict(X * 16).shape == (60,)
    assert 0 <= pipe.score(X * 16, y) <= 1


def test_the_natural_pipeline_cross_validates_on_digits():
    # MinMaxScaler without clip, fitted on the training folds, maps test pixels outside
    # [0, 1]; transform and score clip them with a warning instead of failing the folds.
    X, y = load_digits(return_X_y=True)
    X, y = X[:300].astype(np.float32), y[:300]
    gfe = GradientFlowEncoder(
        n_components=4,
        hidden_layer_sizes=(16,),
        max_iter=1,
        solver="lbfgs",
        max_steps=50,
        device="cpu",
        random_state=0,
    )
    pipe = make_pipeline(MinMaxScaler(), gfe, LogisticRegression())
    with pytest.warns(DataConversionWarning, match="were clipped"):
        scores = cross_val_score(pipe, X, y, cv=5, error_score="raise")
    assert scores.shape == (5,) and (scores > 0.1).all()  # above chance for ten classes
    grid = {"gradientflowencoder__stop_tol": [1e-2, 1e-4]}
    with pytest.warns(DataConversionWarning, match="were clipped"):
        search = GridSearchCV(pipe, grid, cv=3, error_score="raise").fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_grid_search_over_solver_settings_in_two_processes(Xy, small):
    X, y = Xy
    pipe = Pipeline(
        [
            ("scale", MinMaxScaler(clip=True)),
            ("gfe", GradientFlowEncoder(**small)),
            ("clf", LogisticRegression()),
        ]
    )
    grid = {"gfe__solver": ["amd", "rk4"], "gfe__tau": [10.0, 100.0], "gfe__n_steps": [10]}
    search = GridSearchCV(pipe, grid, cv=2, n_jobs=2, error_score="raise").fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.named_steps["gfe"].solver in ("amd", "rk4")
    # On its own the encoder is scored by minus its reconstruction loss.
    alone = GridSearchCV(
        GradientFlowEncoder(**small), {"tau": [1.0, 100.0]}, cv=2, error_score="raise"
    ).fit(X)
    assert alone.best_params_ == {"tau": 100.0}  # a longer flow reconstructs better


def test_clone_and_cross_val_score(Xy, small):
    X, y = Xy
    est = GradientFlowEncoder(**small, decoder=_ConvDecoder()).fit(X)
    copy = clone(est)
    assert copy.get_params()["tau"] == est.tau and not hasattr(copy, "decoder_")
    assert copy.decoder is not est.decoder  # clone deep-copies the user module
    pipe = Pipeline(
        [
            ("scale", MinMaxScaler(clip=True)),
            ("gfe", GradientFlowEncoder(**small)),
            ("clf", LogisticRegression()),
        ]
    )
    scores = cross_val_score(pipe, X, y, cv=3, error_score="raise")
    assert scores.shape == (3,) and np.isfinite(scores).all()


@pytest.mark.parametrize("code_prior", [0.0, 1.0])
@pytest.mark.parametrize("compute_dtype", [None, "float32"])
@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_linear_mse_model_at_default_settings_encodes_to_the_map_code(
    solver, compute_dtype, code_prior
):
    # The precision promise of the default stop rule, through the estimator: a linear
    # decoder (no hidden layer) with the squared error has the ridge code as the flow's
    # endpoint, minimising mean((W z + b - x)^2) + code_prior * ||z||^2 / (2 n): the
    # least-squares code without the prior. It holds in float32 arithmetic too, where the
    # line searches of AMD and L-BFGS once stopped at 1.1e-3 and 1.2e-3 (the loss's rounding
    # hid the last steps).
    from sklearn.datasets import load_digits

    X = MinMaxScaler().fit_transform(load_digits().data[:300])
    est = GradientFlowEncoder(
        n_components=5,
        hidden_layer_sizes=(),
        loss="mse",
        solver=solver,
        max_iter=2,
        device="cpu",
        random_state=0,
        compute_dtype=compute_dtype,
        code_prior=code_prior,
    ).fit(X)
    layer = est.decoder_[0]
    w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    strength = code_prior / max(1.0, est.code_mean_square_ or 1.0)
    normal = w.T @ w + strength / 2 * np.eye(5)
    expected = np.linalg.solve(normal, w.T @ (X - b).T).T
    codes = est.transform(X)
    error = np.linalg.norm(codes - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert error.max() < 1e-3
    if code_prior:  # the prior moved the endpoint by more than the promise's tolerance
        least_squares = np.linalg.lstsq(w, (X - b).T, rcond=None)[0].T
        assert (
            np.linalg.norm(least_squares - expected, axis=1).max() > 1e-2 * np.abs(expected).max()
        )


def test_model_pickled_before_the_code_stop_rule_keeps_its_loss_rule(X, small):
    import pickle

    est = GradientFlowEncoder(**small, stop_rule="loss").fit(X)
    codes = est.transform(X)
    del est.stop_rule
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.stop_rule == "loss"
    np.testing.assert_array_equal(loaded.transform(X), codes)


def test_model_pickled_before_fit_max_steps_trains_on_without_a_cap(X, small):
    import pickle

    est = GradientFlowEncoder(**small).fit(X)
    del est.fit_max_steps
    assert pickle.loads(pickle.dumps(est)).fit_max_steps is None


def test_lbfgs_training_flows_stop_at_fit_max_steps_and_transform_does_not(X, small, monkeypatch):
    results = []
    real = _gradient_flow.encode
    monkeypatch.setattr(
        _gradient_flow, "encode", lambda *a, **kw: results.append(real(*a, **kw)) or results[-1]
    )
    est = GradientFlowEncoder(
        **{**small, "max_iter": 2},
        solver="lbfgs",
        fit_max_steps=2,
        stop_tol=1e-8,
        code_init="zeros",
    )
    est.fit(X)
    n_fit = len(results)
    est.transform(X)
    assert max(int(r.n_steps.max()) for r in results[:n_fit]) == 2
    assert int(results[-1].n_steps.max()) > 2


def test_code_rule_with_a_one_step_window_is_refused_at_fit(X, small):
    est = GradientFlowEncoder(**small, stop_window=1)
    with pytest.raises(ValueError, match=r"stop_window=1 is too short for stop_rule='code'"):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    est.set_params(stop_rule="loss").fit(X)


@pytest.mark.parametrize("solver", ["amd", "lbfgs"])
def test_flow_diagnostics_are_those_of_transform(solver, small):
    X = np.random.RandomState(1).uniform(size=(100, 16))  # more rows than one decoder call
    est = GradientFlowEncoder(**{**small, "solver": solver}).fit(X)
    result = est.flow_diagnostics(X, record_history=True)
    # The same flow as transform's and score_samples' (one batch here): identical arithmetic.
    np.testing.assert_array_equal(result.z.numpy(), est.transform(X))
    # The diagnostics report the loss the flow minimised, score_samples the reconstruction:
    # they differ by the prior's term.
    z = result.z.double().numpy()
    prior = est._prior_strength() * 0.5 * (z**2).sum(axis=1) / X.shape[1]
    np.testing.assert_allclose(-result.loss.numpy() + prior, est.score_samples(X), rtol=1e-5)
    assert result.z.device.type == "cpu" and not result.z.requires_grad
    steps = result.n_steps.numpy()
    assert result.loss_history.shape == (steps.max() + 1, 100)
    losses = result.loss_history.numpy()
    # The history records the accepted loss itself: rel=1e-12 is exact for float32 values.
    for i in range(100):  # each history ends at the sample's returned loss, then NaN
        assert losses[steps[i], i] == pytest.approx(float(result.loss[i]), rel=1e-12)
        assert np.isnan(losses[steps[i] + 1 :, i]).all()
    assert est.flow_diagnostics(X[:3]).t_history is None
