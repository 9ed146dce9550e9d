import numpy as np
import pytest
import torch

from gfe_sklearn.flow import FLOWS, SOLVERS, StiffnessWarning, encode

from .problems import (
    binary_targets,
    goes_to_endpoint,
    gradient_flow_solution,
    least_squares_codes,
    linear_decoder,
    mlp_decoder,
)

pytestmark = pytest.mark.portability

# Per-solver settings that integrate the well-conditioned test problems to convergence.
CONVERGE = {
    "amd": {},
    "euler": {"n_steps": 400, "grid": "linear"},
    "rk4": {"n_steps": 100, "grid": "linear"},
    "dopri5": {"rtol": 1e-9, "atol": 1e-11},
    "lbfgs": {},
}


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_linear_decoder_reaches_least_squares_code(solver):
    decoder = linear_decoder(3, 12, eigenvalues=[1.0, 0.8, 0.6], seed=1)
    target = torch.randn(7, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    tau = "auto" if goes_to_endpoint(solver) else 60.0
    res = encode(
        decoder, target, 3, solver=solver, loss="mse", tau=tau, stop_tol=0, options=CONVERGE[solver]
    )
    expected = least_squares_codes(decoder, target)
    np.testing.assert_allclose(res.z.numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("s_min", [None, 0.0])
@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_amd_reaches_least_squares_code_for_both_flows(flow, s_min):
    decoder = linear_decoder(3, 12, eigenvalues=[1.0, 0.5, 0.2], seed=3)
    target = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    res = encode(
        decoder,
        target,
        3,
        solver="amd",
        flow=flow,
        loss="mse",
        tau=500.0,
        stop_tol=0,
        options={"s_min": s_min},
    )
    np.testing.assert_allclose(res.z.numpy(), least_squares_codes(decoder, target), atol=1e-4)


@pytest.mark.parametrize("solver, order", [("euler", 1), ("rk4", 4)])
def test_fixed_grid_convergence_order(solver, order):
    decoder = linear_decoder(3, 10, eigenvalues=[1.0, 0.5, 0.25], seed=5)
    target = torch.randn(4, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    tau = 4.0
    exact = gradient_flow_solution(decoder, target, tau)
    errors = []
    for n_steps in (16, 32, 64):
        res = encode(
            decoder,
            target,
            3,
            solver=solver,
            loss="mse",
            tau=tau,
            stop_tol=0,
            options={"n_steps": n_steps, "grid": "linear"},
        )
        errors.append(np.abs(res.z.numpy() - exact).max())
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    np.testing.assert_allclose(observed, order, atol=0.15)


def test_nesterov_beats_gradient_flow_on_ill_conditioned_quadratic():
    eigenvalues = np.logspace(-3, 0, 6)
    decoder = linear_decoder(6, 20, eigenvalues=eigenvalues, seed=7)
    target = torch.randn(4, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    optimum = least_squares_codes(decoder, target)
    with torch.no_grad():
        floor = ((decoder(torch.as_tensor(optimum)) - target) ** 2).mean(1)
    excess = {}
    for flow in ("gradient", "nesterov"):
        res = encode(
            decoder,
            target,
            6,
            solver="dopri5",
            flow=flow,
            loss="mse",
            tau=200.0,
            stop_tol=0,
            options={"rtol": 1e-7, "atol": 1e-9, "max_steps": 5000},
        )
        excess[flow] = (res.loss - floor).numpy()
    assert np.all(excess["nesterov"] < 0.5 * excess["gradient"]), excess


def test_dopri5_stops_at_its_cap_with_a_warning_on_a_stiff_flow():
    decoder = linear_decoder(2, 8, eigenvalues=[1e4, 1e-2], seed=9)
    target = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with pytest.warns(StiffnessWarning, match="max_steps=40"):
        res = encode(
            decoder,
            target,
            2,
            solver="dopri5",
            loss="mse",
            tau=1000.0,
            stop_tol=0,
            options={"max_steps": 40},
        )
    assert torch.all(res.t < 1000.0)
    assert not res.converged.any()
    assert torch.isfinite(res.z).all()


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_every_sample_reaches_its_own_tau(solver):
    if goes_to_endpoint(solver):
        pytest.skip(f"{solver} has no horizon")
    decoder = mlp_decoder(2, 6, seed=2)
    target = binary_targets(3, 6, seed=3)
    tau = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)
    res = encode(decoder, target, 2, solver=solver, tau=tau, stop_tol=0)
    torch.testing.assert_close(res.t, tau, rtol=0, atol=1e-12)


def test_amd_step_rule_follows_the_paper():
    """First candidate s0, growth by kappa after acceptance, capped at s_max, clip at tau."""
    decoder = linear_decoder(2, 6, eigenvalues=[0.01, 0.005], seed=4)
    target = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    res = encode(
        decoder, target, 2, solver="amd", loss="mse", tau=60.0, stop_tol=0, record_history=True
    )
    steps = np.diff(res.t_history[:, 0].numpy())
    steps = steps[~np.isnan(steps)]
    # A flat, well-conditioned quadratic accepts every candidate: 1, 1.1, 1.21, ... <= 10.
    expected = np.minimum(1.1 ** np.arange(len(steps)), 10.0)
    np.testing.assert_allclose(steps[:-1], expected[:-1])
    assert steps[-1] <= expected[-1]
    assert res.t.item() == 60.0


def _amd_trial_steps(decoder, target, **options):
    """Accepted step sizes and decoder evaluations of AMD on one sample.

    Only the steps that land where the loss is still resolved (1e-12 above its final value,
    far above float64's rounding): once the loss is flat to rounding, which trial steps
    pass is decided by its last bit, which differs between math libraries' kernels.
    """
    res = encode(
        decoder,
        target,
        2,
        solver="amd",
        loss="mse",
        tau=30.0,
        stop_tol=0,
        options=options,
        record_history=True,
    )
    t = res.t_history[:, 0].numpy()
    loss = res.loss_history[:, 0].numpy()
    finite = ~np.isnan(t)
    t, loss = t[finite], loss[finite]
    resolved = (loss[1:] - loss[-1]) > 1e-12 * loss[-1]
    return res, np.diff(t)[resolved]


def test_amd_floor_s_min_keeps_a_small_stable_step():
    """Steep curvature (stable steps < 1): the papers' floor s0 retries 1 at every step."""
    decoder = linear_decoder(2, 6, eigenvalues=[4.0, 3.0], seed=4)
    target = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    floored, floored_steps = _amd_trial_steps(decoder, target, s_min=None)
    free, free_steps = _amd_trial_steps(decoder, target, s_min=0.0)
    # The papers' floor: every candidate is at least s0 = 1, so every accepted step is a
    # backtrack of 1 by beta: 0.75**m.
    m = np.log(floored_steps[:-1]) / np.log(0.75)
    np.testing.assert_allclose(m, np.round(m), atol=1e-9)
    assert (m >= 1).all()
    # s_min=0: each candidate is kappa times the previous accepted step, then backtracked.
    m = np.log(free_steps[1:-1] / (1.1 * free_steps[:-2])) / np.log(0.75)
    np.testing.assert_allclose(m, np.round(m), atol=1e-9)
    assert (np.round(m) >= 0).all() and (np.round(m) == 0).any()
    assert int(free.n_evals) < int(floored.n_evals)
    expected = least_squares_codes(decoder, target)
    np.testing.assert_allclose(free.z.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(floored.z.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("s_min, same_as", [("default", 0.0), (None, 1.0)])
def test_amd_s_min_defaults_to_0_and_none_is_the_papers_s0(s_min, same_as):
    decoder = linear_decoder(2, 6, eigenvalues=[4.0, 3.0], seed=4)
    target = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    given = {} if s_min == "default" else {"s_min": s_min}
    res, _ = _amd_trial_steps(decoder, target, **given)
    explicit, _ = _amd_trial_steps(decoder, target, s_min=same_as)
    other, _ = _amd_trial_steps(decoder, target, s_min=1.0 - same_as)
    assert torch.equal(res.z, explicit.z)
    assert torch.equal(res.n_evals, explicit.n_evals)
    assert not torch.equal(res.n_evals, other.n_evals)  # the two floors differ here
