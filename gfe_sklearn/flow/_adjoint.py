"""Gradient modes: how the codes ``z*`` depend on the decoder's parameters.

Each mode is a ``GradientMode`` that declares what it needs from the engine, so ``encode``
asks it instead of branching on its name:

* ``approx`` (eqs. 11-12): ``z*`` is a constant; the decoder gets ``d_theta l(y, D(z*))``.
* ``unrolled``: autograd through every accepted step of the solver (the encoding problem
  keeps every gradient's graph).
* ``full`` (eqs. 8-10): the exact adjoint of the discrete scheme. Only the trajectory of
  states is kept; in the backward pass each step is recomputed with its graph, the adjoint
  is pulled back through it, and the graph is freed before the previous step. Memory is
  ``O(steps x batch x state)`` plus one step's graph, where ``unrolled`` holds every step's
  graph at once.

Step sizes chosen by the solver (AMD's line search, dopri5's controller, the early-stopping
horizon) are constants of the backward pass in both exact modes.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GradientMode:
    """How the codes of an encoding depend on the decoder's parameters.

    Attributes
    ----------
    name : str
        Its key in ``ADJOINTS``.
    graph_through_steps : bool
        The encoding problem keeps every gradient's graph (``create_graph``).
    keeps_steps : bool
        The active set records each accepted step (rows, time, step size, state) for a
        backward pass that recomputes them; the solver must provide ``step``.
    """

    name: str
    graph_through_steps: bool = False
    keeps_steps: bool = False

    def parameters(self, decoder):
        """The decoder parameters the backward pass differentiates (only ``keeps_steps``)."""
        if self.keeps_steps and isinstance(decoder, torch.nn.Module):
            return [p for p in decoder.parameters() if p.requires_grad]
        return []

    def codes(self, solver, run, params):
        """Integrate ``run`` with ``solver``; the result's ``z`` carries this mode's graph."""
        solver.integrate(run)
        result = run.result(run.problem.flow)
        if self.keeps_steps:
            result.z = _FullAdjoint.apply(result.z.detach(), solver, run, *params)
        elif not self.graph_through_steps:
            result.z = result.z.detach()
        return result


APPROX = GradientMode("approx")
UNROLLED = GradientMode("unrolled", graph_through_steps=True)
FULL = GradientMode("full", keeps_steps=True)


class _FullAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, solver, run, *params):
        ctx.solver, ctx.run = solver, run
        ctx.n_components = z.shape[1]
        ctx.save_for_backward(*params)
        return z.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_z):
        solver, run = ctx.solver, ctx.run
        problem = run.problem
        params = ctx.saved_tensors
        state_size = problem.flow.state_size
        adjoint = grad_z.new_zeros(grad_z.shape[0], state_size)
        adjoint[:, : ctx.n_components] = grad_z
        param_grads = [torch.zeros_like(p) for p in params]
        problem.differentiable = True
        try:
            for record in reversed(run.records):
                with torch.enable_grad():
                    state = record.state.detach().requires_grad_(True)
                    new_state = solver.step(problem, record.t, state, record.h, record.rows)
                    grads = torch.autograd.grad(
                        new_state,
                        [state, *params],
                        grad_outputs=adjoint[record.rows],
                        allow_unused=True,
                    )
                adjoint[record.rows] = grads[0]
                for acc, g in zip(param_grads, grads[1:]):
                    if g is not None:
                        acc.add_(g)
        finally:
            problem.differentiable = False
        return (None, None, None, *param_grads)
