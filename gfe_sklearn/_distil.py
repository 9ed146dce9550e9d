"""The encoder of ``code_init='encoder'``, distilled after ``fit`` on the codes that
``transform`` gives the training rows (at the training flows' tolerance).

During ``fit`` the encoder learns the codes of training flows cut short on a decoder that is
still changing; its guesses then start ``transform``'s flows no nearer their ends than
``z = 0`` does on some data. Trained afterwards on the endpoints of the final decoder, a few
L-BFGS steps from its guess reach the zero start's loss (docs/performance.md).
"""

import math

import numpy as np
import torch

from .flow import SOLVERS, solver_options

# Distillation: at least this many passes over the training rows and this many updates (small
# data sets get more passes), with Adam at this learning rate; measured on MNIST,
# Fashion-MNIST and digits (docs/performance.md).
EPOCHS = 30
MIN_UPDATES = 300
LEARNING_RATE = 1e-3
# The training rows whose Hessians are averaged into the refinement's metric.
METRIC_ROWS = 256
# Rows held out of the distillation, on which fit measures when the refinement of the guess
# may stop (``refinement_rule``): one in CALIBRATION_SHARE, at most CALIBRATION_ROWS,
# none below MIN_CALIBRATION_ROWS (too few to measure a mean by: the refinement then runs to
# the stop rule).
CALIBRATION_ROWS = 512
CALIBRATION_SHARE = 8
MIN_CALIBRATION_ROWS = 32
# The refinement stops a sample once a step lowers its loss by less than the largest
# decrease after which the held-out rows' mean reconstruction loss is within RULE_SHARE *
# REFINE_TOL of their flows' from z = 0 (per entry, in the loss's units), or at the fewest
# decoder evaluations that keep it within REFINE_TOL: a batch waits for its slowest sample,
# which on small decoders costs more than the evaluations saved. REFINE_TOL is half of the
# 0.001 that transform promises: the decoder was trained on the held-out rows, and test
# images ended up to 1.5x as far above their zero start on MNIST, Fashion-MNIST and digits
# (docs/performance.md). Candidates fall by 2**(1/4) from 4 * REFINE_TOL.
REFINE_TOL = 5e-4
RULE_SHARE = 0.75
CANDIDATES = REFINE_TOL * 2.0 ** (2 - np.arange(89) / 4)


def distil_encoder(estimator, X, parallel=None):
    """Train ``estimator.encoder_`` on the standardised codes ``transform`` gives ``X``,
    stopped at the training flows' tolerance ``fit_stop_tol``.

    Sets the encoder's ``code_mean`` and ``code_scale`` to those codes' mean and spread.
    The ranks of a data-parallel fit (``parallel``) encode a share of the rows each (a
    row's code does not depend on the batch, so they gather the codes one process finds),
    then each trains on all of them alike, and all take rank 0's weights.
    """
    encoder = estimator.encoder_
    # Codes at 1e-2 rather than transform's 1e-4 teach the encoder as well (eight steps from
    # its guess end at the same loss on MNIST) at two thirds of the encoding's cost.
    options = {**estimator._inference_options(), "stop_tol": estimator.fit_stop_tol}

    def encode(rows):
        return estimator._map_batches(
            rows, lambda target: estimator._encode(target, with_loss=False, **options)[0]
        )

    codes = encode(X) if parallel is None else parallel.map_rows(X, encode)
    codes = torch.as_tensor(codes, device=estimator.device_)
    with torch.no_grad():
        mean, spread = codes.mean(dim=0), codes.std(dim=0) if len(codes) > 1 else None
        encoder.code_mean.copy_(mean)
        if spread is not None:
            encoder.code_scale.copy_(torch.where(spread > 0, spread, torch.ones_like(spread)))
        standard = (codes - encoder.code_mean) / encoder.code_scale

    # Its own generator: the model's, which later fits continue, draws as without an encoder.
    rng = np.random.RandomState(estimator.n_samples_seen_ % 2**32)
    n_held = min(CALIBRATION_ROWS, X.shape[0] // CALIBRATION_SHARE)
    held = np.zeros(X.shape[0], dtype=bool)
    if n_held >= MIN_CALIBRATION_ROWS:
        held[rng.choice(X.shape[0], n_held, replace=False)] = True
    learn = np.flatnonzero(~held)
    n_rows, batch_size = len(learn), min(estimator.batch_size, len(learn))
    batches = math.ceil(n_rows / batch_size)
    epochs = max(EPOCHS, math.ceil(MIN_UPDATES / batches))
    optimizer = torch.optim.Adam(encoder.parameters(), lr=LEARNING_RATE)
    encoder.train()
    try:
        for _ in range(epochs):
            order = rng.permutation(learn)
            for start in range(0, n_rows, batch_size):
                rows = np.sort(order[start : start + batch_size])
                guess = estimator._encoder_input(encoder, estimator._tensor(X[rows]))
                loss = ((guess - standard[rows]) ** 2).sum(dim=1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        encoder.eval()
    if parallel is not None:
        parallel.share_weights([encoder])
    rows = slice(0, METRIC_ROWS)
    target = estimator._tensor(X[rows])
    estimator.code_metric_ = code_metric(estimator, target, codes[rows].to(target.dtype))
    # The rule is L-BFGS's; the flow solvers refine the guess to their horizon.
    measured = held.any() and "min_decrease" in solver_options(estimator._resolve_solver())
    rule = refinement_rule(estimator, X[held]) if measured else (0.0, None)
    estimator.refine_min_decrease_, estimator.refine_max_evals_ = rule


def refinement_rule(estimator, X):
    """``(min_decrease, max_evals)`` of the L-BFGS refinement from the encoder's guess (in
    the coordinates of ``code_metric_``), measured on the rows ``X``, which the encoder did
    not learn from: the largest ``min_decrease`` of ``CANDIDATES`` at which their mean
    reconstruction loss ends within ``RULE_SHARE * REFINE_TOL`` of their flows' from
    ``z = 0``, then the fewest decoder evaluations per sample (None: no cap) that keep it
    within ``REFINE_TOL``. ``(0.0, None)``, refine to the stop rule, where no candidate does.

    Both are searched by bisection, running the refinement on ``X``: a larger
    ``min_decrease`` or fewer evaluations stop every sample no later.
    """
    solver = estimator._resolve_solver()
    metric = estimator.code_metric_ if SOLVERS[solver].takes_metric else None
    target = estimator._tensor(X)
    penalty = estimator._with_code_prior(None, target)

    def reconstruction(result):
        # What the promise is about: the flow's loss less the prior's term.
        loss = result.loss.double()
        return loss if penalty is None else loss - penalty(result.z, target).double()

    with torch.no_grad():
        zero = reconstruction(estimator._flow(target, solver, "approx", estimator.stop_tol))
        guess = estimator._guess(target)

        def excess(**limits):
            result = estimator._flow(
                target, solver, "approx", estimator.stop_tol, z0=guess, metric=metric, **limits
            )
            return float((reconstruction(result) - zero).mean()), int(result.n_evals.max())

        taus = [float(torch.tensor(c, dtype=target.dtype)) for c in CANDIDATES]
        above, most = excess(min_decrease=taus[-1])
        if above > RULE_SHARE * REFINE_TOL:
            return 0.0, None
        low, high = 0, len(taus) - 1
        while low < high:
            middle = (low + high) // 2
            above, evals = excess(min_decrease=taus[middle])
            if above <= RULE_SHARE * REFINE_TOL:
                high, most = middle, evals
            else:
                low = middle + 1
        tau = taus[high]
        low, high = 1, most
        while low < high:
            middle = (low + high) // 2
            if excess(min_decrease=tau, max_evals=middle)[0] <= REFINE_TOL:
                high = middle
            else:
                low = middle + 1
    return tau, None if high == most else high


def code_metric(estimator, target, codes):
    """``P`` with ``P P^T`` the inverse of the mean Hessian of the rows' flow loss (the
    reconstruction and the prior) at their ``codes``: the coordinates ``z = z0 + P u`` in
    which that loss is about equally curved in every direction, for L-BFGS's refinement of
    the guess (``flow._lbfgs``). A ``(k, k)`` float64 array, or None where the Hessian has
    no positive curvature to scale by or the decoder no second derivative (a user's module
    with a custom backward, say).
    """
    loss, decoder = estimator._loss(), estimator.decoder_
    penalty = estimator._with_code_prior(None, target)
    hessian = _mean_hessian(lambda z: loss(decoder(z), target), codes)
    if hessian is None:
        return None
    if penalty is not None:
        hessian = hessian + _mean_hessian(lambda z: penalty(z, target), codes)
    hessian = hessian.detach().to("cpu", torch.float64)
    values, vectors = torch.linalg.eigh((hessian + hessian.T) / 2)
    largest = float(values.max())
    if not np.isfinite(largest) or largest <= 0:
        return None
    # Directions of no curvature on average keep a scale a million times the stiffest's.
    values = values.clamp_min(largest * 1e-6)
    return ((vectors * values.rsqrt()) @ vectors.T).numpy()


def _mean_hessian(per_row, codes):
    """The mean over rows of the Hessian of ``per_row(z)`` (one value per row, each row's
    from its own code) at ``codes``; None where some operation has no second derivative."""
    with torch.enable_grad():
        z = codes.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(per_row(z).sum(), z, create_graph=True)
        if not grad.requires_grad:  # e.g. a custom backward marked once_differentiable
            return None
        columns = []
        # A row's value depends on its own code alone: the gradient of column i's sum is
        # each row's Hessian times e_i.
        for i in range(z.shape[1]):
            try:
                (column,) = torch.autograd.grad(
                    grad[:, i].sum(), z, retain_graph=True, allow_unused=True
                )
            except RuntimeError:  # no double backward through some operation
                return None
            if column is None:
                return None
            columns.append(column)
    return torch.stack(columns, dim=2).mean(dim=0)
