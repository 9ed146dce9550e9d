"""Explicit Runge-Kutta steps and the fixed-grid solvers (appendix A.2 of the papers)."""

from dataclasses import dataclass

import torch

from ._fields import linear_grid, log_grid

GRIDS = {"linear": linear_grid, "log": log_grid}


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


class FixedGridSolver:
    """Fixed-grid explicit Runge-Kutta on ``[0, tau]``; each sample's grid scales with its tau.

    ``grid='log'`` spaces the steps geometrically, finest near ``t = 0`` where the flow
    changes fastest (the papers' logarithmic series); ``grid='linear'`` spaces them evenly.
    """

    tableau = None
    name = None
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
        for n in range(self.n_steps):
            state, tau = run["state"], run["tau"]
            t, h = tau * fractions[n], tau * (fractions[n + 1] - fractions[n])
            new_state, _ = rk_step(problem, t, state, h, run.rows, self.tableau, k1=run["k1"])
            k1, new_loss = problem.field(t + h, new_state, run.rows)
            run.count_evals(len(self.tableau.c))
            everyone = torch.ones_like(run.rows, dtype=torch.bool)
            run.record_steps(everyone, t, h, state)
            run.accept(everyone, tau * fractions[n + 1], new_state, new_loss, k1=k1)
            converged = run.converged()
            last = torch.full_like(converged, n == self.n_steps - 1)
            run.retire(converged | last, converged)
            if not len(run):
                break


class Euler(FixedGridSolver):
    name = "euler"
    tableau = EULER_TABLEAU


class RK4(FixedGridSolver):
    name = "rk4"
    tableau = RK4_TABLEAU
