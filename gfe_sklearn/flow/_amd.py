"""Adaptive minimise-distance (AMD) solver: section 2.2 of 000, section 3.4 of 002."""

import torch

from ._solver import Solver, settles_within_rounding


class AMD(Solver):
    """Explicit descent steps whose size is picked by backtracking on the loss.

    The first candidate is ``s0``; at step ``n`` it is ``s_n = min(max(kappa * dt_{n-1},
    s_min), s_max)`` where ``dt_{n-1}`` is the previous accepted step, so a step that needed
    backtracking is not forgotten. The papers' floor, ``s_min = s0`` (``s_min=None``),
    restores a usable size after a deep backtrack, but once a trained decoder's stable step
    is below it, every step first tries the floor and backtracks: 5-7x the decoder
    evaluations for the same codes (docs/engine.md). Hence the default ``s_min=0``: each
    candidate grows by ``kappa`` from the last accepted step. The step is
    ``dt_n = beta**m s_n`` for
    the smallest ``m`` whose step lowers the loss, clipped so that ``t`` lands on ``tau``
    exactly. A sample stops early when the stop rule finds it at its endpoint (``_stopping``)
    or when ``max_backtracks`` reductions cannot lower its loss (a stationary point to working
    precision).

    All active samples try their own candidate step in one batched decoder call per
    iteration; a rejected sample retries with ``beta`` times its step in the next call, so
    the batch never waits for one sample's line search and each sample's sequence of
    decisions is exactly the sequential algorithm's.
    """

    name = "amd"
    order = 1
    # The line search keeps every step safe however far the flow goes, so the horizon can
    # be long enough for a young decoder's slowly drifting codes (docs/precision.md).
    default_tau = 1e5
    scales_by_alpha = False

    def __init__(self, beta=0.75, s0=1.0, s_max=1000.0, kappa=1.1, max_backtracks=30, s_min=0.0):
        self.beta = beta
        self.s0 = s0
        self.s_min = s0 if s_min is None else s_min
        self.s_max = s_max
        self.kappa = kappa
        self.max_backtracks = max_backtracks

    def _first_candidate(self, run):
        return torch.minimum(torch.full_like(run["t"], self.s0), run["tau"] - run["t"])

    def start(self, run):
        run["h"] = self._first_candidate(run)
        run["m"] = torch.zeros_like(run["n_steps"])

    def step(self, problem, t, state, h, rows):
        """The accepted-step map, recomputed from ``state`` (for the full adjoint)."""
        _, grad = problem.loss_and_grad(problem.flow.position(state), rows)
        return problem.flow.descent_step(t, state, grad, h)

    def integrate(self, run):
        problem, flow = run.problem, run.problem.flow
        self.start(run)
        while len(run):
            state, loss, t, h = run["state"], run["loss"], run["t"], run["h"]
            trial = flow.descent_step(t, state, run["grad"], h)
            position = flow.position(trial)
            trial_loss, trial_grad = problem.loss_and_grad(position, run.rows)
            run.count_evals()
            moved = position - flow.position(state)
            slope = (run["grad"] * moved).sum(dim=1)
            trial_slope = (trial_grad * moved).sum(dim=1)
            accepted = (trial_loss < loss) | settles_within_rounding(
                loss, trial_loss, slope, trial_slope
            )
            run.record_steps(accepted, t, h, state)

            at_end = accepted & (h >= run["tau"] - t)
            t_new = torch.where(at_end, run["tau"], t + h)
            run.accept(accepted, t_new, trial, trial_loss, grad=trial_grad)

            grown = torch.clamp(self.kappa * h, min=self.s_min, max=self.s_max)
            h_next = torch.where(accepted, grown, self.beta * h)
            run["h"] = torch.minimum(h_next, run["tau"] - run["t"])
            run["m"] = torch.where(accepted, torch.zeros_like(run["m"]), run["m"] + 1)

            stalled = run["m"] > self.max_backtracks
            converged = run.converged()
            run.retire(at_end | stalled | converged, stalled | converged)
