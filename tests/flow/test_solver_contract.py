"""The solvers' and gradient modes' contract: a new solver is one class and one registry line."""

import inspect

import pytest
import torch

from gfe_sklearn.flow import ADJOINTS, LOSSES, SOLVERS, encode
from gfe_sklearn.flow._adjoint import GradientMode
from gfe_sklearn.flow._solver import Solver

from .problems import binary_targets, mlp_decoder


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_registered_solver_keeps_the_contract(name):
    cls = SOLVERS[name]
    assert issubclass(cls, Solver) and cls.name == name
    assert cls.default_tau is not None and cls.default_tau > 0
    # Endpoint solvers take no steps along the flow; flow solvers declare their order.
    assert (cls.order is None) == cls.goes_to_endpoint
    options = inspect.signature(cls).parameters.values()
    assert all(p.default is not inspect.Parameter.empty for p in options)
    if cls.goes_to_endpoint:
        with pytest.raises(NotImplementedError, match="adjoint='approx'"):
            cls().step(None, None, None, None, None)
    else:
        assert cls.step is not Solver.step


@pytest.mark.parametrize("name", sorted(ADJOINTS))
def test_every_registered_gradient_mode_keeps_the_contract(name):
    mode = ADJOINTS[name]
    assert isinstance(mode, GradientMode) and mode.name == name
    assert not (mode.keeps_steps and mode.graph_through_steps)


class PlainDescent(Solver):
    """Explicit descent steps of one fixed size: the least a flow solver has to do."""

    name = "plain"
    order = 1
    default_tau = 2.0

    def __init__(self, h=0.25):
        self.h = h

    def step(self, problem, t, state, h, rows):
        _, grad = problem.loss_and_grad(problem.flow.position(state), rows)
        return problem.flow.descent_step(t, state, grad, h)

    def integrate(self, run):
        problem = run.problem
        while len(run):
            t, state = run["t"], run["state"]
            h = torch.minimum(torch.full_like(t, self.h), run["tau"] - t)
            new = problem.flow.descent_step(t, state, run["grad"], h)
            loss, grad = problem.loss_and_grad(problem.flow.position(new), run.rows)
            run.count_evals()
            accepted = torch.ones_like(t, dtype=torch.bool)
            run.record_steps(accepted, t, h, state)
            run.accept(accepted, t + h, new, loss, grad=grad)
            converged = run.converged()
            run.retire((run["t"] >= run["tau"]) | converged, converged)


def _parameter_gradients(decoder, target, adjoint):
    decoder.zero_grad()
    result = encode(decoder, target, 2, solver="plain", adjoint=adjoint, stop_tol=0)
    LOSSES["bce"](decoder(result.z), target).sum().backward()
    return result, torch.cat([p.grad.flatten() for p in decoder.parameters()])


def test_a_new_solver_is_one_class_and_one_registry_line(monkeypatch):
    monkeypatch.setitem(SOLVERS, "plain", PlainDescent)
    decoder = mlp_decoder(2, 5, hidden=6, seed=1)
    target = binary_targets(4, 5, seed=2)
    approx, g_approx = _parameter_gradients(decoder, target, "approx")
    _, g_unrolled = _parameter_gradients(decoder, target, "unrolled")
    _, g_full = _parameter_gradients(decoder, target, "full")
    assert torch.equal(approx.n_steps, torch.full((4,), 8))  # tau 2 in steps of 0.25
    at_start = LOSSES["bce"](decoder(torch.zeros(4, 2, dtype=target.dtype)), target)
    assert bool((approx.loss < at_start).all())
    torch.testing.assert_close(g_full, g_unrolled, rtol=1e-6, atol=1e-9)
    assert (g_approx - g_unrolled).norm() > 1e-3 * g_unrolled.norm()
