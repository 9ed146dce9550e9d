"""The contract every solver keeps: what it declares, and the two methods the engine calls.

A new solver is one subclass of ``Solver`` and one line in ``_registry.SOLVERS``; the
estimators' parameter checks and the tests (which parametrise over the registry) pick it up.
Its constructor's keyword arguments are its options (``solver_options``), so each needs a
default.
"""

import torch

# Units in the last place a descending flow's loss may rise by in a step from rounding
# alone: the loss is a mean of many entries, whose rounding errors add up.
ROUNDING_RISE = 64


def settles_within_rounding(loss, trial_loss, slope, trial_slope):
    """Which rows' trial steps to accept although their loss shows no decrease.

    Near a minimum a step changes the loss by less than its rounding, so loss differences
    stop telling good steps from bad ones (in float32 about ten times further from the
    minimum than in float64); slopes keep their precision there. A step along a descent
    direction (``slope``, the loss's derivative along it, below 0) is accepted when the loss
    stays within its rounding and the slope at the trial point (``trial_slope``) is a tenth
    smaller in size: an approximate Wolfe condition, as in Hager and Zhang's CG_DESCENT.
    """
    rounding = ROUNDING_RISE * torch.finfo(loss.dtype).eps
    return (
        (slope < 0)
        & (trial_loss <= loss + rounding * loss.abs())
        & (trial_slope.abs() <= 0.9 * slope.abs())
        & torch.isfinite(trial_loss)
    )


class Solver:
    """Integrates the active rows of an ``ActiveSet`` until each one finishes.

    Attributes
    ----------
    name : str
        Its key in ``SOLVERS``.
    order : int or None
        Order of accuracy of one step along the flow (Euler 1, RK4 4, Dormand-Prince 5, AMD
        1: explicit descent steps); None for a solver that takes no steps along the flow.
    default_tau : float
        The horizon ``tau='auto'`` means.
    goes_to_endpoint : bool
        It goes straight to the flow's endpoint instead of following the flow: it has no
        flow time and no steps to differentiate, refuses the settings of
        ``endpoint_conflicts``, and runs without the stop rules' windows (it tests its own
        convergence).
    scales_by_alpha : bool
        Its steps follow the time scaling ``alpha(t)`` of the flow. False for a solver that
        picks each step size by line search (AMD), which takes over alpha's role: it
        refuses any ``alpha`` but ``'constant'``.
    takes_metric : bool
        It searches in the coordinates of ``encode``'s ``metric`` (L-BFGS); the others
        refuse one.
    """

    name = None
    order = None
    default_tau = None
    goes_to_endpoint = False
    scales_by_alpha = True
    takes_metric = False

    def integrate(self, run):
        """Advance every active row of ``run`` (an ``ActiveSet``) until all are retired.

        Each iteration evaluates the active rows once (``run.problem.loss_and_grad`` or
        ``field``), counts it (``run.count_evals``), moves the rows whose step is accepted
        (``run.accept``; ``run.record_steps`` first, for the full adjoint) and retires the
        finished ones (``run.retire``; ``run.converged`` applies the stop rule).
        """
        raise NotImplementedError

    def step(self, problem, t, state, h, rows):
        """The map of one accepted step, recomputed from ``state`` for the full adjoint."""
        raise NotImplementedError(
            f"solver {self.name!r} takes no steps along the flow, so no gradient mode can "
            "differentiate through them; use adjoint='approx'."
        )
