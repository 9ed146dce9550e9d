import numpy as np
import pytest
import torch

from gfe_sklearn.flow import FLOWS, SOLVERS, STOP_RULES, StiffnessWarning, encode

from .problems import least_squares_codes, linear_decoder, mlp_decoder


def relative_code_error(res, decoder, target):
    expected = least_squares_codes(decoder, target)
    return np.linalg.norm(res.z.numpy() - expected, axis=1) / np.linalg.norm(expected, axis=1)


def targets(n, n_features, seed):
    return torch.randn(
        n, n_features, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_default_stop_gives_codes_within_1e3_of_least_squares(solver):
    # A residual that dominates the loss (targets far from the decoder's range) is what
    # made a loss-relative stop rule imprecise: the slope is small next to the loss long
    # before the code has arrived.
    decoder = linear_decoder(5, 64, eigenvalues=[0.05, 0.04, 0.035, 0.03, 0.025], seed=1)
    target = targets(20, 64, seed=2)
    res = encode(decoder, target, 5, solver=solver, loss="mse")
    assert res.converged.all()
    assert relative_code_error(res, decoder, target).max() < 1e-3


def test_loss_rule_stops_far_from_the_optimum_where_the_code_rule_does_not():
    decoder = linear_decoder(5, 64, eigenvalues=[0.05, 0.04, 0.035, 0.03, 0.025], seed=1)
    target = targets(20, 64, seed=2)
    by_loss = encode(decoder, target, 5, loss="mse", stop_rule="loss", stop_tol=1e-4)
    by_code = encode(decoder, target, 5, loss="mse", stop_rule="code", stop_tol=1e-4)
    assert relative_code_error(by_loss, decoder, target).max() > 1e-2
    assert relative_code_error(by_code, decoder, target).max() < 1e-4


@pytest.mark.parametrize("stop_tol", [1e-2, 1e-3, 1e-4, 1e-5])
def test_code_tolerance_bounds_the_relative_code_error(stop_tol):
    decoder = linear_decoder(4, 30, eigenvalues=[1.0, 0.3, 0.1, 0.03], seed=3)
    target = targets(10, 30, seed=4)
    res = encode(decoder, target, 4, loss="mse", tau=1e5, stop_tol=stop_tol)
    error = relative_code_error(res, decoder, target)
    assert error.max() < 2 * stop_tol
    assert res.t.max() < 1e5  # stopped by the rule, not the horizon


def test_tighter_code_tolerance_costs_more_evaluations():
    decoder = mlp_decoder(2, 6, seed=5)
    target = torch.rand(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    loose = encode(decoder, target, 2, tau=1e4, stop_tol=1e-2)
    tight = encode(decoder, target, 2, tau=1e4, stop_tol=1e-5)
    assert loose.converged.all() and tight.converged.all()
    assert torch.all(loose.n_evals <= tight.n_evals)
    assert loose.n_evals.sum() < tight.n_evals.sum()


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_code_rule_reaches_least_squares_with_both_flows(flow):
    decoder = linear_decoder(3, 12, eigenvalues=[1.0, 0.5, 0.2], seed=7)
    target = targets(5, 12, seed=8)
    res = encode(decoder, target, 3, flow=flow, loss="mse", tau=1e4, stop_tol=1e-5)
    assert relative_code_error(res, decoder, target).max() < 1e-4


def test_a_flow_that_still_accelerates_is_not_stopped():
    # Nesterov's flow starts at rest: its code speeds up over the first steps, which a rule
    # looking at small early motion alone would take for arrival.
    decoder = linear_decoder(3, 12, eigenvalues=[1e-3, 1e-3, 1e-3], seed=9)
    target = targets(4, 12, seed=10)
    res = encode(
        decoder,
        target,
        3,
        flow="nesterov",
        solver="rk4",
        loss="mse",
        tau=50.0,
        stop_tol=0.5,
        options={"n_steps": 50, "grid": "linear"},
    )
    # Exact: the linear grid's last fraction is linspace's endpoint, 1.0, and tau * 1.0 = tau.
    assert torch.all(res.t == 50.0)


def test_unknown_stop_rule_names_the_choices():
    with pytest.raises(
        ValueError,
        match=r"stop_rule='gradient' is not valid; choose one of "
        + str(sorted(STOP_RULES)).replace("[", r"\[").replace("]", r"\]"),
    ):
        encode(mlp_decoder(2, 3), torch.rand(2, 3, dtype=torch.float64), 2, stop_rule="gradient")


def _nonlinear_endpoint():
    decoder = mlp_decoder(3, 20, hidden=16, seed=11)
    target = torch.rand(12, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    # AMD to a stationary point, with no early stop: the flow's endpoint to working precision.
    reference = encode(decoder, target, 3, tau=1e5, stop_tol=0, options={"max_backtracks": 60})
    return decoder, target, reference.z


@pytest.mark.parametrize("solver", ["amd", "euler", "dopri5"])
def test_default_stop_reaches_a_nonlinear_flows_endpoint(solver):
    decoder, target, endpoint = _nonlinear_endpoint()
    res = encode(decoder, target, 3, solver=solver)
    error = (res.z - endpoint).norm(dim=1) / endpoint.norm(dim=1).clamp_min(1.0)
    assert res.converged.all()
    assert error.max() < 1e-3


def test_a_grid_step_that_raises_the_loss_stops_the_sample_with_a_warning():
    # On this problem one sample converges slowly and the log grid's late RK4 steps
    # (h > 2.8 / curvature) leave the stability region before it arrives: without the check
    # its code ends 10x its size away from the endpoint.
    decoder, target, endpoint = _nonlinear_endpoint()
    with pytest.warns(
        StiffnessWarning,
        match=r"rk4 stopped 1 sample\(s\) where a step of its "
        r"log grid raised the loss.*solver='amd'",
    ):
        res = encode(decoder, target, 3, solver="rk4")
    error = (res.z - endpoint).norm(dim=1) / endpoint.norm(dim=1).clamp_min(1.0)
    assert int((~res.converged).sum()) == 1
    assert error.max() < 1e-3


def test_nesterov_grid_steps_may_raise_the_loss_without_stopping():
    # Momentum carries the code uphill for a while: not a sign of instability.
    decoder = linear_decoder(3, 12, eigenvalues=[1.0, 0.5, 0.2], seed=7)
    target = targets(5, 12, seed=8)
    res = encode(
        decoder,
        target,
        3,
        flow="nesterov",
        solver="rk4",
        loss="mse",
        tau=60.0,
        stop_tol=0,
        options={"n_steps": 200, "grid": "linear"},
        record_history=True,
    )
    assert bool((torch.diff(res.loss_history, dim=0) > 0).any())
    torch.testing.assert_close(res.t, torch.full_like(res.t, 60.0))


def test_code_rule_works_with_a_two_step_window_and_refuses_one():
    decoder = linear_decoder(3, 12, eigenvalues=[1.0, 0.5, 0.2], seed=7)
    target = targets(5, 12, seed=8)
    res = encode(decoder, target, 3, loss="mse", tau=1e4, stop_tol=1e-5, stop_window=2)
    assert res.converged.all() and bool((res.t < 1e4).all())
    assert relative_code_error(res, decoder, target).max() < 1e-4
    with pytest.raises(ValueError, match=r"stop_window=1 is too short for stop_rule='code'"):
        encode(decoder, target, 3, loss="mse", stop_window=1)
    encode(decoder, target, 3, loss="mse", stop_window=1, stop_rule="loss")
