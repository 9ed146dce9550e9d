"""Gradient modes: how the codes ``z*`` depend on the decoder's parameters.

All three share one signature, ``mode(solver, run, params) -> FlowResult``, and are chosen by name:

* ``approx`` (eqs. 11-12): ``z*`` is a constant; the decoder gets ``d_theta l(y, D(z*))``.
* ``unrolled``: autograd through every accepted step of the solver.
* ``full`` (eqs. 8-10): the exact adjoint of the discrete scheme. Only the trajectory of
  states is kept; in the backward pass each step is recomputed with its graph, the adjoint
  is pulled back through it, and the graph is freed before the previous step. Memory is
  ``O(steps x batch x state)`` plus one step's graph, where ``unrolled`` holds every step's
  graph at once.

Step sizes chosen by the solver (AMD's line search, dopri5's controller, the early-stopping
horizon) are constants of the backward pass in both exact modes.
"""

import torch


def approx_codes(solver, run, params):
    solver.integrate(run)
    result = run.result(run.problem.flow)
    result.z = result.z.detach()
    return result


def unrolled_codes(solver, run, params):
    solver.integrate(run)
    return run.result(run.problem.flow)


def full_codes(solver, run, params):
    solver.integrate(run)
    result = run.result(run.problem.flow)
    result.z = _FullAdjoint.apply(result.z.detach(), solver, run, *params)
    return result


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
