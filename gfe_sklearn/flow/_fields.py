"""Vector fields of the encoding flows and their time scalings.

A flow's state is a ``(batch, state_size)`` tensor. The gradient flow's state is the code
``z``; the Nesterov flow's state is ``[z, v]``. Each flow defines

* ``derivative``: the right-hand side of its ODE, used by the generic ODE solvers;
* ``descent_step``: one explicit step of size ``h`` that the AMD solver accepts only when it
  lowers the loss.
"""

import math

import torch

from ._rows import per_sample


def constant_alpha(t, tau):
    return torch.ones_like(t)


def exponential_alpha(t, tau):
    """``exp(-2 t / tau)``: appendix A.2 of the papers, damps late, stiff parts of the flow."""
    return per_sample(torch.exp, -2.0 * t / tau)


class GradientFlow:
    """``dz/dt = -alpha(t) grad_z l(y, D(z))`` (eq. 1 of the papers)."""

    name = "gradient"
    descends = True  # the exact flow never raises the loss
    has_friction = False  # nesterov_eps is the Nesterov flow's

    def __init__(self, n_components):
        self.n_components = n_components
        self.state_size = n_components

    def initial_state(self, z0):
        return z0

    def position(self, state):
        return state

    def derivative(self, t, state, grad, alpha):
        return -alpha[:, None] * grad

    def descent_step(self, t, state, grad, h):
        return state - h[:, None] * grad


class NesterovFlow:
    """Nesterov's second-order flow (eq. 4), split as a first-order system.

    ``dv/dt = -3 / (t + eps) v - alpha(t) grad_z l``, ``dz/dt = v`` with ``z(0) = v(0) = 0``
    (Su, Boyd & Candes 2016; the papers print the gradient term with a ``+`` sign, a typo).
    """

    name = "nesterov"
    descends = False  # momentum may carry the code uphill for a while
    has_friction = True  # its friction 3 / (t + eps) takes nesterov_eps

    def __init__(self, n_components, eps=1e-2):
        self.n_components = n_components
        self.state_size = 2 * n_components
        self.eps = eps

    def initial_state(self, z0):
        return torch.cat([z0, torch.zeros_like(z0)], dim=1)

    def position(self, state):
        return state[:, : self.n_components]

    def velocity(self, state):
        return state[:, self.n_components :]

    def derivative(self, t, state, grad, alpha):
        v = self.velocity(state)
        dv = -(3.0 / (t + self.eps))[:, None] * v - alpha[:, None] * grad
        return torch.cat([v, dv], dim=1)

    def descent_step(self, t, state, grad, h):
        """Split step: exact friction decay, then the gradient kick, then the drift.

        Solving the friction part ``dv/dt = -3 v / (t + eps)`` exactly keeps the step stable
        for any ``h`` (an explicit Euler factor ``1 - 3h/(t+eps)`` flips sign for large
        steps). A velocity that points uphill is reset to zero first (the gradient restart of
        O'Donoghue & Candes 2015), so that a small enough step always lowers the loss and the
        AMD line search terminates.
        """
        z, v = self.position(state), self.velocity(state)
        uphill = (v * grad).sum(dim=1, keepdim=True) > 0
        v = torch.where(uphill, torch.zeros_like(v), v)
        decay = ((t + self.eps) / (t + h + self.eps)) ** 3
        v = decay[:, None] * v - h[:, None] * grad
        return torch.cat([z + h[:, None] * v, v], dim=1)


def log_grid(n_steps, dtype, device, ratio=100.0):
    """Grid on [0, 1] whose steps grow geometrically, the last ``ratio`` times the first."""
    growth = math.log(ratio)
    u = torch.linspace(0.0, 1.0, n_steps + 1, dtype=dtype, device=device)
    grid = torch.expm1(growth * u) / math.expm1(growth)
    grid[-1] = 1.0  # in float32 the quotient rounds to 1 + 2**-23: past the horizon
    return grid


def linear_grid(n_steps, dtype, device):
    return torch.linspace(0.0, 1.0, n_steps + 1, dtype=dtype, device=device)
