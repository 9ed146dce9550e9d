import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gfe_sklearn.flow import ALPHAS, FLOWS, LOSSES, SOLVERS, encode, horizon, solver_options
from gfe_sklearn.flow._solver import ROUNDING_RISE

from .problems import binary_targets, goes_to_endpoint, linear_decoder, mlp_decoder

FAST = {"euler": {"n_steps": 30}, "rk4": {"n_steps": 20}, "amd": {}, "dopri5": {}, "lbfgs": {}}


@pytest.mark.portability
@pytest.mark.parametrize("flow", sorted(FLOWS))
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_encoding_rows_alone_matches_encoding_the_batch(solver, flow, dtype):
    if goes_to_endpoint(solver) and flow != "gradient":
        pytest.skip("refused combination (tests/flow/test_lbfgs.py)")
    decoder = mlp_decoder(3, 12, hidden=20, seed=11, dtype=dtype)
    target = binary_targets(24, 12, seed=12, dtype=dtype)
    kwargs = {"solver": solver, "flow": flow, "stop_tol": 1e-3, "options": FAST[solver]}
    if not goes_to_endpoint(solver):
        kwargs["tau"] = 20.0
    whole = encode(decoder, target, 3, **kwargs)
    idx = torch.tensor([17, 3, 3, 9])
    part = encode(decoder, target[idx], 3, **kwargs)
    single = encode(decoder, target[5:6], 3, **kwargs)
    # Bit for bit on every math library: the engine's row layout (flow/_rows.py).
    assert torch.equal(part.z, whole.z[idx])
    assert torch.equal(single.z, whole.z[5:6])
    assert torch.equal(part.n_steps, whole.n_steps[idx])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_components=st.integers(1, 4),
    n_features=st.integers(1, 9),
    hidden=st.integers(1, 12),
    scale=st.floats(0.05, 5.0),
    flow=st.sampled_from(sorted(FLOWS)),
    loss=st.sampled_from(sorted(LOSSES)),
)
def test_amd_never_increases_any_samples_loss(
    seed, n_components, n_features, hidden, scale, flow, loss
):
    gen = torch.Generator().manual_seed(seed)
    decoder = torch.nn.Sequential(
        torch.nn.Linear(n_components, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n_features)
    ).double()
    with torch.no_grad():
        for p in decoder.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    target = torch.rand(6, n_features, generator=gen, dtype=torch.float64)
    res = encode(
        decoder,
        target,
        n_components,
        solver="amd",
        flow=flow,
        loss=loss,
        tau=80.0,
        record_history=True,
    )
    history = res.loss_history.numpy()
    for column in history.T:
        curve = column[~np.isnan(column)]
        # Rounding aside: near the minimum a step that flattens the slope is accepted even
        # where the loss cannot tell it from the last.
        slack = ROUNDING_RISE * np.finfo(curve.dtype).eps * np.abs(curve[:-1])
        assert np.all(np.diff(curve) <= slack), curve
    # Where the decoder's units are saturated at z = 0 (large weights through tanh) the
    # gradient there can be too small to move the loss in float64: only the others must fall.
    z = torch.zeros(6, n_components, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(LOSSES[loss](decoder(z), target).sum(), z)
    movable = (grad.norm(dim=1) > 1e-6).numpy()
    ends = [column[~np.isnan(column)][[0, -1]] for column in history.T]
    assert all(last < first for (first, last), m in zip(ends, movable) if m)
    np.testing.assert_allclose(history[res.n_steps.numpy(), np.arange(6)], res.loss.numpy())


def test_diagnostics_count_steps_and_evaluations():
    decoder = mlp_decoder(2, 6, seed=13)
    target = binary_targets(5, 6, seed=14)
    rk4 = encode(
        decoder,
        target,
        2,
        solver="rk4",
        tau=3.0,
        stop_tol=0,
        options={"n_steps": 7},
        record_history=True,
    )
    assert rk4.n_steps.tolist() == [7] * 5
    assert rk4.n_evals.tolist() == [1 + 4 * 7] * 5
    assert rk4.t_history.shape == (8, 5)
    torch.testing.assert_close(rk4.loss_history[-1], rk4.loss)
    amd = encode(decoder, target, 2, solver="amd", tau=50.0)
    assert torch.all(amd.n_evals >= amd.n_steps + 1)
    assert torch.all(amd.t <= 50.0)
    assert amd.converged.dtype == torch.bool


def test_converged_samples_stop_costing_evaluations():
    decoder = mlp_decoder(2, 6, seed=15)
    target = binary_targets(8, 6, seed=16)
    loose = encode(decoder, target, 2, solver="amd", tau=500.0, stop_tol=1e-2)
    tight = encode(decoder, target, 2, solver="amd", tau=500.0, stop_tol=0)
    assert loose.converged.all()
    assert torch.all(loose.n_evals < tight.n_evals)
    assert torch.all(loose.t < 500.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"solver": "rk5"}, r"solver='rk5' is not valid; choose one of \['amd', 'dopri5'"),
        ({"flow": "heavy"}, r"flow='heavy' is not valid; choose one of \['gradient'"),
        ({"loss": "l1"}, r"loss='l1' is not valid; choose one of \['bce', 'mse'\]"),
        ({"alpha": "cos", "solver": "rk4"}, r"alpha='cos' is not valid"),
        ({"alpha": "exp"}, r"alpha='exp' cannot be used with solver='amd'.*'dopri5', 'euler'"),
        ({"options": {"n_steps": 3}}, r"Unknown option\(s\) \['n_steps'\] for solver='amd'"),
        ({"tau": -1.0}, "tau must be positive"),
        ({"target": torch.zeros(0, 3)}, r"at least one row.*got \(0, 3\)"),
        ({"target": torch.zeros(3)}, r"Reshape a single sample"),
    ],
)
def test_invalid_settings_name_the_problem_and_the_choices(kwargs, match):
    kwargs = {"target": binary_targets(2, 3), **kwargs}
    with pytest.raises(ValueError, match=match):
        encode(mlp_decoder(2, 3), n_components=2, **kwargs)


@pytest.mark.parametrize("alpha", sorted(ALPHAS))
def test_exponential_alpha_slows_the_flow_late(alpha):
    decoder = mlp_decoder(2, 6, seed=17)
    target = binary_targets(3, 6, seed=18)
    res = encode(
        decoder, target, 2, solver="rk4", alpha=alpha, tau=4.0, stop_tol=0, options={"n_steps": 20}
    )
    assert torch.isfinite(res.z).all()
    if alpha == "exp":
        plain = encode(
            decoder, target, 2, solver="rk4", tau=4.0, stop_tol=0, options={"n_steps": 20}
        )
        # Integral of exp(-2t/tau) over [0, tau] is (1 - e^-2) tau / 2: a shorter effective flow.
        assert torch.all(res.loss > plain.loss)


def test_solver_options_are_each_solvers_constructor_defaults():
    assert solver_options("amd") == {
        "beta": 0.75,
        "s0": 1.0,
        "s_max": 1000.0,
        "kappa": 1.1,
        "max_backtracks": 30,
        "s_min": 0.0,
    }
    assert set(solver_options("rk4")) == {"n_steps", "grid"}
    assert {"rtol", "atol", "max_steps"} <= set(solver_options("dopri5"))


def test_unchunked_evaluation_gives_the_same_codes_up_to_rounding():
    decoder = mlp_decoder(3, 12, hidden=20, seed=19, dtype=torch.float32)
    target = binary_targets(40, 12, seed=20, dtype=torch.float32)
    chunked = encode(decoder, target, 3, solver="rk4", tau=5.0, options={"n_steps": 10})
    whole = encode(
        decoder, target, 3, solver="rk4", tau=5.0, options={"n_steps": 10}, row_chunk=None
    )
    small = encode(decoder, target, 3, solver="rk4", tau=5.0, options={"n_steps": 10}, row_chunk=7)
    torch.testing.assert_close(whole.z, chunked.z, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(small.z, chunked.z, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("row_chunk", [0, -3, 2.5, "big", True])
def test_invalid_row_chunk_is_rejected(row_chunk):
    with pytest.raises(ValueError, match="row_chunk must be 'auto', None or a positive int"):
        encode(mlp_decoder(2, 3), binary_targets(2, 3), 2, row_chunk=row_chunk)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_auto_horizon_is_the_solvers_default_tau(solver):
    # A flow slow enough to be still moving at any horizon.
    decoder = linear_decoder(2, 6, eigenvalues=[1e-7, 1e-7], seed=21)
    target = binary_targets(2, 6, seed=22)
    options = {"n_steps": 5} if solver in ("euler", "rk4") else None
    res = encode(decoder, target, 2, solver=solver, loss="mse", stop_tol=0, options=options)
    tau = horizon(solver, "auto")
    assert tau == SOLVERS[solver].default_tau == {"amd": 1e5, "lbfgs": math.inf}.get(solver, 1e3)
    if goes_to_endpoint(solver):  # no horizon: t counts its steps
        torch.testing.assert_close(res.t, res.n_steps.to(res.t.dtype))
    else:
        torch.testing.assert_close(res.t, torch.full_like(res.t, tau))
