"""Per-sample L-BFGS: straight to the gradient flow's endpoint in far fewer evaluations."""

import math

import torch

from ._solver import Solver, settles_within_rounding

# The shortest retry, as a fraction of the rejected step: a quadratic fitted far from the
# minimum can land too near the code (the usual safeguard, Nocedal and Wright, 2006).
SHRINK_FLOOR = 0.1
# With a metric, the first step is this fraction of the metric's Newton step (times
# first_step): the whole step overshot often enough to cost 0.4 more evaluations per image
# on MNIST and Fashion-MNIST (8 steps from the distilled guess, scripts outside the
# repository; docs/performance.md).
METRIC_FIRST_STEP = 0.5


class LBFGS(Solver):
    """Limited-memory BFGS on each sample's loss, started where the flow starts.

    The gradient flow from ``z(0)`` ends, as ``t`` grows, at a minimum of the sample's loss;
    a trained decoder's flow creeps towards it through flat directions for a long time
    (hundreds of AMD evaluations per image, docs/performance.md). L-BFGS learns those
    directions' curvature from its last ``history`` steps and takes the remaining distance
    in a few steps. It descends from ``z(0)`` like the flow and, on the decoders measured,
    ends in the flow's minimum (docs/performance.md gives the distances); it is judged
    against the flow's endpoint in the tests.

    Each sample keeps its own history, direction and line search: all active samples try
    their step in one batched decoder call, a rejected sample retries in the next call with
    the step that minimises the quadratic fitted along the line, between 0.1 and ``shrink``
    times its step, so each sample's decisions are the sequential algorithm's. A
    step is accepted when it lowers the loss by the Armijo fraction ``armijo`` of the
    predicted decrease (and lowers it at all), or, where the loss no longer resolves the
    decrease, when ``settles_within_rounding`` accepts it (the slope test AMD uses too). A sample
    stops when its next quasi-Newton step (built from at least one step pair) would move
    its code by at most ``stop_tol / 2 * max(|z|, 1)``: near a minimum that step estimates
    the distance left, as the ``'code'`` stop rule's estimate does for the flow. It also
    stops when ``max_backtracks`` reductions cannot lower its loss (a stationary point to
    working precision), once an accepted step after its first lowers its loss by less than
    ``min_decrease`` (in the loss's units; 0, the default, never: the first step's length is
    set, not learned, and its decrease says little of the distance left), after
    ``max_steps`` accepted steps, or once it has had ``max_evals`` decoder evaluations (its
    start's included; None, the default, no limit).

    ``t`` counts accepted steps: there is no flow time, and no horizon (``tau='auto'``).

    ``encode``'s ``metric``, a ``(k, k)`` matrix ``P``, runs the search in the coordinates
    ``u`` of ``z = z0 + P u``: where ``P P^T`` is the inverse of the loss's typical Hessian
    (the mean over training codes, ``GradientFlowEncoder(code_init='auto')``), the loss is
    about equally curved in every direction there, and the first step is
    ``METRIC_FIRST_STEP * first_step`` times the Newton step of that Hessian instead of a
    length. Steps and the stop rule are measured in code space as without it.
    """

    name = "lbfgs"
    default_tau = math.inf
    goes_to_endpoint = True
    scales_by_alpha = False
    takes_metric = True

    def __init__(
        self,
        history=10,
        first_step=1.0,
        armijo=1e-4,
        shrink=0.5,
        max_backtracks=30,
        max_steps=1000,
        min_decrease=0.0,
        max_evals=None,
    ):
        self.history = history
        self.first_step = first_step
        self.armijo = armijo
        self.shrink = shrink
        self.max_backtracks = max_backtracks
        self.max_steps = max_steps
        self.min_decrease = min_decrease
        self.max_evals = math.inf if max_evals is None else max_evals

    def integrate(self, run):
        problem = run.problem
        n, k = run["state"].shape
        like = run["state"]
        self._coordinates = _Coordinates(problem.metric, like)
        # A run of at most max_steps steps, or max_evals evaluations with its start's, never
        # holds more pairs (a capped refinement): smaller pair matrices, the same directions.
        m = max(1, min(self.history, self.max_steps, self.max_evals - 1))
        run["S"] = like.new_zeros(n, m, k)
        run["Y"] = like.new_zeros(n, m, k)
        run["sy"] = like.new_zeros(n, m)
        run["YY"] = like.new_zeros(n, m, m)
        run["R_inv"] = _identities(n, m, like)
        run["step"] = torch.ones_like(run["t"])
        run["m"] = torch.zeros_like(run["n_steps"])
        self._first_directions(run)
        # Every active row is evaluated at every call, so all reach max_evals together, and
        # after the last call there is no next step to plan.
        calls_left = self.max_evals - int(run["n_evals"].min())
        while len(run):
            state, loss, grad = run["state"], run["loss"], run["grad"]
            step, direction = run["step"], run["direction"]
            trial = state + step[:, None] * direction
            trial_loss, trial_grad = problem.loss_and_grad(trial, run.rows)
            run.count_evals()
            # Strictly lower as well: in float32 near a minimum the Armijo bound rounds to the
            # loss itself, and steps that change nothing would be accepted forever.
            armijo = (trial_loss <= loss + self.armijo * step * run["slope"]) & (trial_loss < loss)
            trial_slope = (trial_grad * direction).sum(dim=1)
            accepted = armijo | settles_within_rounding(loss, trial_loss, run["slope"], trial_slope)
            gained_little = loss - trial_loss < self.min_decrease
            calls_left -= 1
            if calls_left <= 0:
                run.accept(accepted, run["t"] + 1, trial, trial_loss, grad=trial_grad)
                settled = accepted & gained_little & (run["n_steps"] >= 2)
                run.retire(torch.ones_like(settled), settled)
                return
            coordinates = self._coordinates
            s, y = coordinates.step(trial - state), coordinates.gradient(trial_grad - grad)
            self._remember(run, accepted, s, y)
            run.accept(accepted, run["t"] + 1, trial, trial_loss, grad=trial_grad)
            settled = accepted & gained_little & (run["n_steps"] >= 2)

            run["m"] = torch.where(accepted, torch.zeros_like(run["m"]), run["m"] + 1)
            run["step"] = torch.where(
                accepted, torch.ones_like(step), self._shorter(run, step, trial_loss, loss)
            )
            self._new_directions(run, accepted)

            # The next quasi-Newton step estimates the distance left to the minimum; by up to
            # 13% short on an ill-conditioned quadratic (tests), hence half the tolerance.
            tolerance = 0.5 * run.stop_tol * run["state"].norm(dim=1).clamp_min(1.0)
            length = run["step"] * run["direction"].norm(dim=1)
            short = length <= tolerance
            converged = accepted & run["paired"] & short
            # A descent direction lowers the loss for small enough steps; once the trials have
            # shrunk below the tolerance without lowering it, the code is at its minimum to
            # within the tolerance or to working precision, and further trials would only meet
            # rounding (in float32 they cost max_backtracks evaluations per sample).
            unimprovable = ~accepted & short
            stalled = run["m"] > self.max_backtracks
            capped = (run["n_steps"] >= self.max_steps) | (run["n_evals"] >= self.max_evals)
            finished = converged | unimprovable | stalled | settled
            run.retire(finished | capped, finished)

    def _shorter(self, run, step, trial_loss, loss):
        """The next trial step after a rejected one: the minimum of the quadratic through the
        loss and slope at the code and the loss at the trial (Nocedal and Wright, 2006,
        section 3.5), kept between ``SHRINK_FLOOR`` and ``shrink`` times the step. A first
        step far longer than the distance left (a start near its minimum) is cut to that
        distance in one or two trials instead of a dozen halvings, which on a small decoder
        kept the whole batch waiting."""
        slope = run["slope"]
        curvature = trial_loss - loss - slope * step  # > 0 for a rejected step, or not finite
        minimum = -slope * step * step / (2 * curvature)
        floor = min(SHRINK_FLOOR, self.shrink) * step
        shorter = torch.minimum(torch.maximum(minimum, floor), self.shrink * step)
        return torch.where(torch.isfinite(minimum) & (curvature > 0), shorter, self.shrink * step)

    def _remember(self, run, accepted, s, y):
        """Push the accepted rows' step pair (if its curvature is positive) into the history,
        with what the directions need of it, updated one pair per step instead of rebuilt
        (which takes ``history`` times the work): the curvatures ``s . y`` of the pairs,
        ``Y Y^T``, and the inverse of the triangle ``R = triu(S Y^T)``."""
        sy = (s * y).sum(dim=1)
        keep = accepted & (sy > 1e-10 * s.norm(dim=1) * y.norm(dim=1))
        S = torch.cat([run["S"][:, 1:], s[:, None]], dim=1)
        Y = torch.cat([run["Y"][:, 1:], y[:, None]], dim=1)
        S_y = (S * y[:, None]).sum(-1)  # R's new last column, its diagonal entry last
        curvatures = torch.cat([run["sy"][:, 1:], S_y[:, -1:]], dim=1)
        y_Y = (Y * y[:, None]).sum(-1)
        YY = _with_new_pair(run["YY"], y_Y, y_Y)
        R_inv = _inverse_with_new_pair(run["R_inv"], S_y[:, :-1], S_y[:, -1])
        for name, new in (("S", S), ("Y", Y), ("sy", curvatures), ("YY", YY), ("R_inv", R_inv)):
            run[name] = torch.where(keep.reshape(-1, *[1] * (new.dim() - 1)), new, run[name])

    def _first_scale(self, grad):
        """Without a pair yet, the first step has length ``first_step`` in code space, or with
        a metric is a fraction of its Newton step, scaled by ``first_step``."""
        if self._coordinates.metric is None:
            return self.first_step / grad.norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
        return METRIC_FIRST_STEP * self.first_step

    def _first_directions(self, run):
        """The directions of the empty histories at the start: what ``_new_directions``
        gives there (its pair terms are zeros), without the products with them."""
        grad = self._coordinates.gradient(run["grad"])
        gamma = self._first_scale(grad)
        if isinstance(gamma, torch.Tensor):
            gamma = gamma[:, None]
        direction = -(gamma * grad)
        run["slope"] = (grad * direction).sum(dim=1)
        run["direction"] = self._coordinates.direction(direction)
        run["paired"] = torch.zeros_like(run["slope"], dtype=torch.bool)

    def _new_directions(self, run, rows):
        """Quasi-Newton directions for ``rows``; the others keep theirs.

        The inverse-Hessian product in the compact form of Byrd, Nocedal and Schnabel (1994):
        a few batched products with the ``history``-sized pair matrices and the inverse of
        their triangle ``R``, instead of the two-loop recursion's four operations per pair,
        which cost more than the decoder's own evaluation at small batches.
        """
        coordinates = self._coordinates
        grad, S, Y, sy = coordinates.gradient(run["grad"]), run["S"], run["Y"], run["sy"]
        # Empty slots (no pair yet, or none since the history was cleared) hold zeros, and
        # the unit diagonal of R's inverse there makes them drop out of the products below.
        paired = sy[:, -1] > 0
        newest_yy = (Y[:, -1] * Y[:, -1]).sum(dim=1)
        first = self._first_scale(grad)
        gamma = torch.where(paired, sy[:, -1] / torch.where(paired, newest_yy, 1.0), first)
        Sg, Yg = (S * grad[:, None]).sum(-1), (Y * grad[:, None]).sum(-1)
        R_inv = run["R_inv"]
        p = (R_inv * Sg[:, None]).sum(-1)
        c = sy * p + gamma[:, None] * ((run["YY"] * p[:, None]).sum(-1) - Yg)
        top = (R_inv * c[:, :, None]).sum(1)
        r = gamma[:, None] * grad + _combine(top, S) - gamma[:, None] * _combine(p, Y)
        direction = -r
        slope = (grad * direction).sum(dim=1)
        # A direction that does not descend (rounding in an ill-conditioned history) falls
        # back to the gradient, with the history cleared. Rare: checked before it costs.
        uphill = ~(slope < 0)
        if bool(uphill.any()):
            direction = torch.where(uphill[:, None], -gamma[:, None] * grad, direction)
            slope = torch.where(uphill, -gamma * (grad * grad).sum(dim=1), slope)
            clear = rows & uphill
            for name in ("S", "Y", "sy", "YY"):
                run[name] = torch.where(
                    clear.reshape(-1, *[1] * (run[name].dim() - 1)), 0.0, run[name]
                )
            empty = _identities(*R_inv.shape[:2], R_inv)
            run["R_inv"] = torch.where(clear[:, None, None], empty, R_inv)
            paired = paired & ~clear
        direction = coordinates.direction(direction)  # the slope is the same in code space
        run["direction"] = torch.where(rows[:, None], direction, run["direction"])
        run["slope"] = torch.where(rows, slope, run["slope"])
        run["paired"] = torch.where(rows, paired, run["paired"])


class _Coordinates:
    """The map between code space and the search's coordinates ``u`` (``z = z0 + P u``):
    steps ``P^{-1} s``, gradients ``P^T g`` and directions ``P d``; the identity without a
    metric. Row by row, as elementwise products and sums (below)."""

    def __init__(self, metric, like):
        if metric is None:
            self.metric = None
            return
        metric = torch.as_tensor(metric, dtype=torch.float64)
        self.metric = metric.to(dtype=like.dtype, device=like.device)
        self.inverse = torch.linalg.inv(metric).to(dtype=like.dtype, device=like.device)

    def step(self, s):
        return s if self.metric is None else _times(s, self.inverse.T)

    def gradient(self, g):
        return g if self.metric is None else _times(g, self.metric)

    def direction(self, d):
        return d if self.metric is None else _times(d, self.metric.T)


def _times(rows, matrix):
    """``rows @ matrix`` for ``(n, k)`` rows, row by row."""
    return (rows[:, :, None] * matrix).sum(dim=1)


# The per-sample products below are elementwise products and sums over each
# sample's own entries, not batched BLAS/LAPACK calls: batched kernels process samples in
# groups and rounded a sample's 10 x 5 products differently by its position in the batch
# (MKL, AVX-512), which changed its codes with the batch.


def _with_new_pair(products, row, column):
    """The pair matrix ``(n, m, m)`` after its oldest pair left and a new one came: the
    others' products shift up and left, the new pair's ``row`` and ``column`` fill the last."""
    shifted = torch.zeros_like(products)
    shifted[:, :-1, :-1] = products[:, 1:, 1:]
    shifted[:, -1] = row
    shifted[:, :, -1] = column
    return shifted


def _combine(weights, vectors):
    """``sum_i weights[:, i] * vectors[:, i]``: ``(n, m), (n, m, k) -> (n, k)``."""
    return (weights[:, None] * vectors.transpose(1, 2)).sum(-1)


def _identities(n, m, like):
    """``n`` identity matrices ``(n, m, m)``: the inverse triangle of an empty history."""
    return torch.eye(m, dtype=like.dtype, device=like.device).expand(n, m, m).clone()


def _inverse_with_new_pair(R_inv, column, curvature):
    """The inverse of the triangle ``R = triu(S Y^T)`` after its oldest pair left and a new
    one came, from the inverse before: dropping the first row and column of an upper
    triangular matrix drops them from its inverse, and a new last column ``column`` above
    the diagonal entry ``curvature`` (``s . y``) adds ``-R^{-1} column / curvature`` above
    ``1 / curvature``: ``O(history^2)`` per sample and step instead of two triangular
    solves at every direction."""
    kept = R_inv[:, 1:, 1:]
    inverse = torch.zeros_like(R_inv)
    inverse[:, :-1, :-1] = kept
    inverse[:, :-1, -1] = -(kept * column[:, None]).sum(-1) / curvature[:, None]
    inverse[:, -1, -1] = 1.0 / curvature
    return inverse
