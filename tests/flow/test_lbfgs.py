"""Per-sample L-BFGS, judged against the gradient flow's endpoint."""

import numpy as np
import pytest
import torch

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.flow import encode
from gfe_sklearn.flow._lbfgs import LBFGS

from .problems import binary_targets, least_squares_codes, linear_decoder, mlp_decoder


def _flow_endpoint(decoder, target, n_components):
    """The gradient flow run far enough that its codes no longer move (AMD, tight rule)."""
    return encode(
        decoder, target, n_components, solver="amd", tau=1e8, stop_tol=1e-9, row_chunk=None
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reaches_the_flow_endpoint_in_a_fraction_of_the_evaluations(seed):
    decoder = mlp_decoder(3, 20, hidden=16, seed=seed)
    target = binary_targets(12, 20, seed=seed + 10)
    flow = _flow_endpoint(decoder, target, 3)
    quasi_newton = encode(decoder, target, 3, solver="lbfgs", stop_tol=1e-7)
    distance = (quasi_newton.z - flow.z).norm(dim=1) / flow.z.norm(dim=1).clamp_min(1)
    assert distance.max() < 1e-5
    assert torch.all(quasi_newton.loss <= flow.loss + 1e-12)
    assert quasi_newton.converged.all()
    assert quasi_newton.n_evals.sum() < flow.n_evals.sum() / 3


@pytest.mark.parametrize("stop_tol", [1e-3, 1e-6])
def test_codes_are_within_stop_tol_of_least_squares(stop_tol):
    # An ill-conditioned linear decoder (condition 100): the flow's slow direction is where
    # a step-size rule would stop early.
    decoder = linear_decoder(4, 30, eigenvalues=[1.0, 0.3, 0.1, 0.01], seed=3)
    target = torch.randn(6, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    res = encode(decoder, target, 4, solver="lbfgs", loss="mse", stop_tol=stop_tol)
    expected = torch.as_tensor(least_squares_codes(decoder, target))
    error = (res.z - expected).norm(dim=1) / expected.norm(dim=1).clamp_min(1)
    assert error.max() <= stop_tol


def test_float32_codes_get_as_close_to_least_squares_as_float64_ones():
    # The residual dominates the loss, so near the minimum a step changes the float32 loss by
    # less than its rounding: the Armijo test alone stopped these codes at up to 1.2e-3 (the
    # estimator's linear test) where float64 reached 1e-4; the slope test goes on.
    decoder64 = linear_decoder(5, 64, eigenvalues=[1.0, 0.8, 0.6, 0.4, 0.2], seed=5)
    target = torch.rand(200, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    expected = torch.as_tensor(least_squares_codes(decoder64, target))
    errors = {}
    for dtype in (torch.float64, torch.float32):
        decoder = linear_decoder(5, 64, eigenvalues=[1.0, 0.8, 0.6, 0.4, 0.2], seed=5, dtype=dtype)
        res = encode(decoder, target.to(dtype), 5, solver="lbfgs", loss="mse", stop_tol=1e-4)
        assert res.converged.all()
        error = (res.z.double() - expected).norm(dim=1) / expected.norm(dim=1).clamp_min(1)
        errors[dtype] = error.max().item()
    assert errors[torch.float64] <= 1e-4
    assert errors[torch.float32] <= 2e-4


@pytest.mark.portability
def test_rows_alone_give_bitwise_the_codes_of_the_batch():
    decoder = mlp_decoder(3, 12, hidden=20, seed=11)
    target = binary_targets(24, 12, seed=12)
    whole = encode(decoder, target, 3, solver="lbfgs", stop_tol=1e-4)
    for rows in (torch.tensor([17, 3, 3, 9]), torch.tensor([5])):
        part = encode(decoder, target[rows], 3, solver="lbfgs", stop_tol=1e-4)
        assert torch.equal(part.z, whole.z[rows])
        assert torch.equal(part.n_evals, whole.n_evals[rows])


@pytest.mark.portability
def test_rows_alone_give_bitwise_the_codes_of_a_batch_of_several_chunks():
    # 300 rows: two full 128-row chunks and a padded remainder, thinning as rows finish.
    decoder = mlp_decoder(3, 12, hidden=20, seed=11, dtype=torch.float32)
    target = binary_targets(300, 12, seed=13).float()
    whole = encode(decoder, target, 3, solver="lbfgs", stop_tol=1e-4)
    rows = torch.tensor([299, 0, 130, 257, 64])
    part = encode(decoder, target[rows], 3, solver="lbfgs", stop_tol=1e-4)
    assert torch.equal(part.z, whole.z[rows])
    assert torch.equal(part.n_evals, whole.n_evals[rows])


def test_step_cap_stops_unconverged():
    decoder = mlp_decoder(3, 12, seed=1)
    res = encode(
        decoder,
        binary_targets(4, 12, seed=2),
        3,
        solver="lbfgs",
        stop_tol=1e-12,
        options={"max_steps": 2},
    )
    assert torch.all(res.n_steps <= 2) and not res.converged.any()
    assert torch.isfinite(res.z).all()


def test_a_capped_run_takes_the_first_steps_of_the_uncapped_one():
    # Fewer steps than pairs kept: the pair matrices shrink to the cap, the steps do not.
    decoder = mlp_decoder(3, 12, seed=1)
    target = binary_targets(6, 12, seed=2)
    full = encode(decoder, target, 3, solver="lbfgs", stop_tol=1e-12, record_history=True)
    for cap in (1, 3, 6):
        capped = encode(
            decoder, target, 3, solver="lbfgs", stop_tol=1e-12, options={"max_steps": cap}
        )
        assert torch.equal(capped.loss, full.loss_history[cap])
    # A cap on evaluations (the start's included) too, wherever it cuts a line search.
    for cap in (2, 4, 7):
        capped = encode(
            decoder, target, 3, solver="lbfgs", stop_tol=1e-12, options={"max_evals": cap}
        )
        assert int(capped.n_evals.max()) == cap
        steps = capped.n_steps.long()
        assert torch.equal(capped.loss, full.loss_history[steps, torch.arange(len(steps))])


def test_the_evaluation_cap_ends_every_row_at_its_last_call_without_a_next_step(monkeypatch):
    decoder = mlp_decoder(3, 12, seed=1)
    target = binary_targets(6, 12, seed=2)
    planned = []
    plan = LBFGS._new_directions
    monkeypatch.setattr(
        LBFGS, "_new_directions", lambda self, run, rows: planned.append(1) or plan(self, run, rows)
    )
    res = encode(decoder, target, 3, solver="lbfgs", stop_tol=1e-12, options={"max_evals": 4})
    assert len(planned) == 2  # after the second and third evaluations, not the fourth
    assert torch.all(res.n_evals == 4) and not res.converged.any()
    # A row that the decrease rule stops at the last call is reported as stopped by it.
    res = encode(
        decoder,
        target,
        3,
        solver="lbfgs",
        stop_tol=1e-12,
        options={"max_evals": 3, "min_decrease": 1.0},
    )
    assert res.converged.any()
    assert torch.equal(res.converged, res.n_steps == 2)


@pytest.mark.parametrize(
    "setting",
    [
        {"flow": "nesterov"},
        {"adjoint": "full"},
        {"adjoint": "unrolled"},
        {"alpha": "exp"},
        {"stop_rule": "loss"},
        {"tau": 100.0},
    ],
)
def test_settings_without_meaning_for_it_are_refused(setting):
    ((name, value),) = setting.items()
    with pytest.raises(
        ValueError,
        match=f"{name}={value!r} cannot be used with solver='lbfgs'.*straight to the gradient flow",
    ):
        encode(mlp_decoder(2, 4), binary_targets(2, 4), 2, solver="lbfgs", **setting)


def test_estimator_with_lbfgs_encodes_like_the_flow(X, small):
    # The papers' flow, without a prior on the codes.
    est = GradientFlowEncoder(**{**small, "solver": "lbfgs", "max_iter": 3, "code_prior": 0.0})
    codes = est.fit(X).transform(X)
    target = torch.as_tensor(X, dtype=next(est.decoder_.parameters()).dtype)
    flow = _flow_endpoint(est.decoder_, target, est.n_components)
    np.testing.assert_allclose(codes, flow.z.numpy(), rtol=0, atol=1e-3 * np.abs(codes).max())
    with pytest.raises(ValueError, match="tau=10.0 cannot be used with solver='lbfgs'"):
        GradientFlowEncoder(**{**small, "solver": "lbfgs", "tau": 10.0}).fit(X)


def test_float32_codes_stop_at_rounding_instead_of_looping():
    # In float32 the Armijo bound rounds to the loss itself near a minimum: steps that
    # change nothing must not count as progress (they once ran every sample to max_steps).
    decoder = mlp_decoder(3, 20, hidden=16, seed=5, dtype=torch.float32)
    target = binary_targets(32, 20, seed=6, dtype=torch.float32)
    res = encode(decoder, target, 3, solver="lbfgs", stop_tol=1e-6)
    assert res.converged.all()
    assert res.n_evals.max() < 200


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_code_where_the_gradient_vanishes_is_retired_at_once(dtype):
    # A decoder that ignores its code has a zero gradient everywhere: the first step has
    # nowhere to go. It once accepted null steps to max_steps (float64) or, with the first
    # step's scale overflowing float32, tried NaN codes to max_backtracks.
    decoder = torch.nn.Linear(3, 8).to(dtype)
    torch.nn.init.zeros_(decoder.weight)
    target = binary_targets(4, 8, seed=1).to(dtype)
    res = encode(decoder, target, 3, solver="lbfgs")
    assert res.n_evals.max() <= 2
    assert res.converged.all() and torch.equal(res.z, torch.zeros_like(res.z))


def test_inverse_triangle_kept_per_pair_inverts_the_history_triangle():
    # More pairs than the history holds: the oldest leave as new ones come, and some rows
    # skip a pair (no positive curvature, or a rejected step), so the histories differ.
    from gfe_sklearn.flow._lbfgs import LBFGS

    generator = torch.Generator().manual_seed(0)
    n, k, history = 5, 6, 4
    run = {
        "S": torch.zeros(n, history, k, dtype=torch.float64),
        "Y": torch.zeros(n, history, k, dtype=torch.float64),
        "sy": torch.zeros(n, history, dtype=torch.float64),
        "YY": torch.zeros(n, history, history, dtype=torch.float64),
        "R_inv": torch.eye(history, dtype=torch.float64).repeat(n, 1, 1),
    }
    for step in range(7):
        s = torch.randn(n, k, dtype=torch.float64, generator=generator)
        y = s + 0.3 * torch.randn(n, k, dtype=torch.float64, generator=generator)
        accepted = torch.arange(n) != step % n
        LBFGS(history=history)._remember(run, accepted, s, y)
    R = torch.triu(run["S"] @ run["Y"].transpose(1, 2))
    R = R + torch.diag_embed((run["sy"] == 0).to(R.dtype))
    identity = torch.eye(history, dtype=torch.float64).expand(n, -1, -1)
    torch.testing.assert_close(run["R_inv"] @ R, identity, atol=1e-12, rtol=0)
    assert (run["sy"] > 0).all()


def test_a_first_step_far_too_long_is_cut_to_the_distance_in_a_few_trials():
    # A start 1e-4 from the minimum: halving the first step (length 1) would take 13 rejected
    # trials to get there; the line's quadratic takes a step a tenth as long at worst.
    decoder = linear_decoder(3, 20, eigenvalues=[1.0, 0.5, 0.2], seed=3)
    target = torch.randn(8, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    exact = torch.as_tensor(least_squares_codes(decoder, target))
    noise = torch.randn(
        exact.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5)
    )
    res = encode(
        decoder, target, 3, solver="lbfgs", loss="mse", z0=exact + 1e-4 * noise, stop_tol=1e-8
    )
    rejected = res.n_evals - res.n_steps - 1
    assert rejected.max() <= 5, rejected
    assert ((res.z - exact).norm(dim=1) / exact.norm(dim=1)).max() < 1e-7


def _inverse_square_root(decoder, n_features):
    """``P`` with ``P P^T`` the inverse of the mse Hessian ``2 W^T W / n_features``."""
    weight = decoder.weight.detach()
    values, vectors = torch.linalg.eigh(2 * weight.T @ weight / n_features)
    return (vectors * values.rsqrt()) @ vectors.T


def test_a_metric_of_the_inverse_hessian_reaches_least_squares_in_two_steps():
    # Condition 100: without a metric L-BFGS needs a step per direction and more.
    decoder = linear_decoder(4, 30, eigenvalues=[1.0, 0.3, 0.1, 0.01], seed=3)
    target = torch.randn(6, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    expected = torch.as_tensor(least_squares_codes(decoder, target))
    metric = _inverse_square_root(decoder, 30)
    plain = encode(decoder, target, 4, solver="lbfgs", loss="mse", stop_tol=1e-6)
    fast = encode(decoder, target, 4, solver="lbfgs", loss="mse", stop_tol=1e-6, metric=metric)
    # Half the Newton step, then the exact one from the pair it learned.
    assert int(fast.n_steps.max()) <= 3 and fast.n_evals.sum() < plain.n_evals.sum() / 2
    torch.testing.assert_close(fast.z, expected, rtol=0, atol=1e-6)
    # The step cap and the stop rule count in code space as without it.
    capped = encode(
        decoder, target, 4, solver="lbfgs", loss="mse", metric=metric, options={"max_steps": 1}
    )
    assert int(capped.n_steps.max()) == 1


@pytest.mark.portability
def test_with_a_metric_rows_alone_give_bitwise_the_codes_of_the_batch():
    decoder = mlp_decoder(5, 20, hidden=16, seed=2, dtype=torch.float32)
    target = binary_targets(150, 20, seed=7, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    metric = torch.randn(5, 5, generator=generator, dtype=torch.float64) * 0.3 + torch.eye(
        5, dtype=torch.float64
    )
    whole = encode(decoder, target, 5, solver="lbfgs", metric=metric)
    rows = torch.tensor([149, 3, 77, 128, 0])
    part = encode(decoder, target[rows], 5, solver="lbfgs", metric=metric)
    assert torch.equal(part.z, whole.z[rows])


@pytest.mark.parametrize("solver", ["amd", "rk4"])
def test_a_metric_is_refused_by_the_flow_solvers(solver):
    decoder = mlp_decoder(3, 12, hidden=8)
    with pytest.raises(ValueError, match="metric is read by solver='lbfgs' only"):
        encode(decoder, binary_targets(2, 12), 3, solver=solver, metric=torch.eye(3))


@pytest.mark.parametrize("first_step", [1.0, 0.6])
def test_with_a_metric_the_first_step_is_first_step_halves_of_its_newton_step(first_step):
    decoder = linear_decoder(4, 30, eigenvalues=[1.0, 0.3, 0.1, 0.01], seed=3)
    target = torch.randn(6, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    expected = torch.as_tensor(least_squares_codes(decoder, target))
    options = {"max_steps": 1, "first_step": first_step}
    metric = _inverse_square_root(decoder, 30)
    one = encode(decoder, target, 4, solver="lbfgs", loss="mse", metric=metric, options=options)
    # From z = 0 on a quadratic whose Hessian the metric inverts exactly.
    torch.testing.assert_close(one.z, first_step / 2 * expected, rtol=0, atol=1e-10)
