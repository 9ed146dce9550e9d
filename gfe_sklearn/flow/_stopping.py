"""Early-stopping rules: when a sample's flow has reached its endpoint.

Each rule reads the windows that ``ActiveSet`` keeps over a sample's last ``W`` accepted steps
(times, losses, and how far the code moved) and returns which active rows have converged.

``code`` (the default) stops on the code itself. Over the window it measures how fast the
code moves, ``s = |dz| / dt``, and how fast that speed decays, ``r = -d log s / dt``; a flow
that converges linearly has ``r`` pass to the smallest curvature it still has to cross, and the
distance it has left to travel is ``s / r``. A sample stops once that distance is below
``tol * max(|z|, 1)``. The decay rate is the smaller of the window's two halves, so a flow
whose fast directions have just settled (rate dropping) is not mistaken for a finished one,
and a flow that speeds up (rate <= 0) never stops. Unlike a loss-based rule, nothing here
depends on how large the loss is at the optimum, which the data's irreducible error sets.

``loss`` stops once the loss falls by less than ``tol`` (relative to the loss) per unit of
flow time while decelerating: the rule of earlier versions, kept to reproduce their results.
"""

import torch

from ._rows import per_sample

# Units in the last place that a code may move over a window and still count as standing.
ROUNDING_STEPS = 16


def _halves(window, run):
    mid = run.stop_window // 2
    return window[:, 0], window[:, mid], window[:, -1]


def code_converged(run, tol):
    """Rows whose estimated remaining distance to the flow's endpoint is below tolerance.

    Also rows that no longer move beyond rounding (the code changed by less than a few
    units in the last place over the window): there the speed has hit the noise floor and
    stops decaying, and a fixed grid would carry the noise on into its unstable late steps.
    """
    moved, tw = run["moved_window"], run["t_window"]
    dt = tw[:, 1:] - tw[:, :-1]
    tiny = torch.finfo(moved.dtype).tiny
    speed = moved / dt.clamp_min(tiny)
    t_mid = (tw[:, 1:] + tw[:, :-1]) / 2
    s0, s1, s2 = _halves(speed, run)
    t0, t1, t2 = _halves(t_mid, run)
    log0, log1, log2 = (per_sample(torch.log, s.clamp_min(tiny)) for s in (s0, s1, s2))
    early = (log0 - log1) / (t1 - t0).clamp_min(tiny)
    late = (log1 - log2) / (t2 - t1).clamp_min(tiny)
    # A window of two steps has no second half: its one rate is the early one.
    rate = early if run.stop_window < 3 else torch.minimum(early, late)
    remaining = torch.where(rate > 0, s2 / rate.clamp_min(tiny), torch.full_like(s2, torch.inf))
    remaining = torch.where(s2 == 0, torch.zeros_like(s2), remaining)
    size = run.problem.flow.position(run["state"]).detach().norm(dim=1).clamp_min(1.0)
    still = moved.sum(dim=1) <= ROUNDING_STEPS * torch.finfo(moved.dtype).eps * size
    full = run["n_steps"] >= run.stop_window
    return full & ((remaining <= tol * size) | still)


def loss_converged(run, tol):
    """Rows whose loss curve flattened (relative slope below ``tol``) while decelerating.

    The slope is the loss decrease per unit of flow time relative to the loss,
    ``(l[n-W] - l[n]) / ((t[n] - t[n-W]) |l[n-W]|)``: a rate that neither the loss's scale nor
    the step sizes change. The curve must also be decelerating (the window's later half falls
    no faster than its first half): a second-order flow starts at rest and its curve is flat
    while it speeds up, not because it converged.
    """
    w, tw = run["window"], run["t_window"]
    w0, wm, w1 = _halves(w, run)
    t0, tm, t1 = _halves(tw, run)
    full = run["n_steps"] >= run.stop_window
    slow = w0 - w1 <= tol * (t1 - t0) * w0.abs()
    decelerating = (wm - w1) * (tm - t0) <= (w0 - wm) * (t1 - tm)
    return full & slow & decelerating


STOP_RULES = {"code": code_converged, "loss": loss_converged}
