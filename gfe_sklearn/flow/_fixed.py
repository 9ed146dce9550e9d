"""Explicit Runge-Kutta steps and the fixed-grid solvers (appendix A.2 of the papers)."""

import warnings
from dataclasses import dataclass

import torch

from ._fields import linear_grid, log_grid
from ._solver import ROUNDING_RISE, Solver

GRIDS = {"linear": linear_grid, "log": log_grid}


class StiffnessWarning(RuntimeWarning):
    """A solver's steps were too large for the flow: it is stiff where they were taken."""


@dataclass(frozen=True)
class Tableau:
    c: tuple
    a: tuple
    b: tuple
    b_error: tuple | None = None  # b - b_hat of an embedded pair


EULER_TABLEAU = Tableau(c=(0.0,), a=((),), b=(1.0,))

RK4_TABLEAU = Tableau(
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
)


def rk_step(problem, t, state, h, rows, tableau, k1=None):
    """One explicit RK step with per-sample ``t`` and ``h``; returns the new state and stages.

    ``k1`` (the derivative at ``state``) may be passed in when the caller already has it.
    """
    stages = []
    for i, (c, a_row) in enumerate(zip(tableau.c, tableau.a)):
        if i == 0 and k1 is not None:
            k = k1
        else:
            increment = sum(a * k for a, k in zip(a_row, stages) if a != 0.0)
            stage_state = state if isinstance(increment, int) else state + h[:, None] * increment
            k, _ = problem.field(t + c * h, stage_state, rows)
        stages.append(k)
    increment = sum(b * k for b, k in zip(tableau.b, stages) if b != 0.0)
    return state + h[:, None] * increment, stages


class FixedGridSolver(Solver):
    """Fixed-grid explicit Runge-Kutta on ``[0, tau]``; each sample's grid scales with its tau.

    ``grid='log'`` spaces the steps geometrically, finest near ``t = 0`` where the flow
    changes fastest (the papers' logarithmic series); ``grid='linear'`` spaces them evenly.
    """

    tableau = None
    # A grid's steps grow with tau; beyond about 1000 the late steps of the default grid
    # leave the explicit methods' stability region on a trained decoder.
    default_tau = 1e3

    def __init__(self, n_steps=100, grid="log"):
        self.n_steps = n_steps
        self.grid = grid

    def step(self, problem, t, state, h, rows):
        return rk_step(problem, t, state, h, rows, self.tableau)[0]

    def integrate(self, run):
        problem = run.problem
        fractions = GRIDS[self.grid](self.n_steps, run["t"].dtype, run["t"].device)
        run["k1"] = problem.derivative(run["t"], run["state"], run["grad"], run.rows)
        descends = problem.flow.descends
        n_unstable = 0
        for n in range(self.n_steps):
            state, tau, loss = run["state"], run["tau"], run["loss"]
            t, h = tau * fractions[n], tau * (fractions[n + 1] - fractions[n])
            new_state, _ = rk_step(problem, t, state, h, run.rows, self.tableau, k1=run["k1"])
            k1, new_loss = problem.field(t + h, new_state, run.rows)
            run.count_evals(len(self.tableau.c))
            # The gradient flow never raises the loss; a grid step that does has left the
            # method's stability region, and later (larger) steps would only amplify it.
            # Such a sample keeps its last state and stops.
            slack = ROUNDING_RISE * torch.finfo(loss.dtype).eps * loss.detach().abs()
            unstable = (descends & (new_loss.detach() > loss.detach() + slack)) | ~torch.isfinite(
                new_loss.detach()
            )
            accepted = ~unstable
            run.record_steps(accepted, t, h, state)
            run.accept(accepted, tau * fractions[n + 1], new_state, new_loss, k1=k1)
            converged = run.converged() & accepted
            last = torch.full_like(converged, n == self.n_steps - 1)
            n_unstable += int(unstable.sum())
            run.retire(converged | last | unstable, converged)
            if not len(run):
                break
        if n_unstable:
            warnings.warn(
                f"{self.name} stopped {n_unstable} sample(s) where a step of its {self.grid} grid "
                "raised the loss: the steps grew too large for the flow (it is stiff there), and "
                "those codes are short of the flow's endpoint. Raise n_steps, lower tau, or use "
                "solver='amd', whose steps adapt.",
                StiffnessWarning,
                stacklevel=4,
            )


class Euler(FixedGridSolver):
    name = "euler"
    order = 1
    tableau = EULER_TABLEAU


class RK4(FixedGridSolver):
    name = "rk4"
    order = 4
    tableau = RK4_TABLEAU
