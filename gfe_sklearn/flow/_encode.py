"""``encode``: integrate the encoding flow of a batch, per sample, with a gradient mode."""

import inspect

import torch

from ._active import ActiveSet
from ._problem import EncodingProblem
from ._registry import ADJOINTS, ALPHAS, FLOWS, LOSSES, SOLVERS, STOP_RULES


def _lookup(registry, value, parameter):
    if isinstance(value, str) and value in registry:
        return registry[value]
    raise ValueError(f"{parameter}={value!r} is not valid; choose one of {sorted(registry)}.")


def solver_options(solver):
    """Names and defaults of the options a solver accepts."""
    return _options(_lookup(SOLVERS, solver, "solver"))


def horizon(solver, tau):
    """The flow's horizon: ``tau`` itself, or the solver's ``default_tau`` for ``'auto'``."""
    return _horizon(_lookup(SOLVERS, solver, "solver"), tau)


def check_combination(
    solver, alpha, *, flow="gradient", adjoint="approx", stop_rule="code", tau="auto"
):
    """Reject settings that have no meaning together, naming the valid ones."""
    _check_combination(
        _lookup(SOLVERS, solver, "solver"),
        alpha,
        flow=flow,
        adjoint=adjoint,
        stop_rule=stop_rule,
        tau=tau,
    )


# The helpers below take the solver's class, looked up once by their callers.


def _options(solver_cls):
    params = inspect.signature(solver_cls).parameters
    return {name: p.default for name, p in params.items()}


def _horizon(solver_cls, tau):
    if isinstance(tau, str) and tau == "auto":
        return solver_cls.default_tau
    return tau


def _check_combination(solver_cls, alpha, *, flow, adjoint, stop_rule, tau):
    solver = solver_cls.name
    if solver_cls.goes_to_endpoint:
        given = {
            "flow": flow,
            "alpha": alpha,
            "adjoint": adjoint,
            "stop_rule": stop_rule,
            "tau": tau,
        }
        for name, needed in endpoint_conflicts(**given).items():
            raise ValueError(
                f"{name}={given[name]!r} cannot be used with solver={solver!r}, which goes "
                "straight to the gradient flow's endpoint (no flow time, no steps to "
                f"differentiate): use {name}={needed!r}, or a flow solver "
                f"({sorted(n for n, c in SOLVERS.items() if not c.goes_to_endpoint)})."
            )
    if not solver_cls.scales_by_alpha and alpha != "constant":
        takers = sorted(
            n for n, c in SOLVERS.items() if c.scales_by_alpha and not c.goes_to_endpoint
        )
        raise ValueError(
            f"alpha={alpha!r} cannot be used with solver={solver!r}: it picks each step size "
            "by line search, which takes over the role of alpha(t). Use alpha='constant' "
            f"with {solver!r}, or alpha={alpha!r} with one of {takers}."
        )


# What a solver that goes straight to the flow's endpoint needs: the gradient flow, with no
# time scaling, no horizon, no steps to differentiate and no loss curve to stop on.
ENDPOINT_SETTINGS = {
    "flow": "gradient",
    "alpha": "constant",
    "adjoint": "approx",
    "stop_rule": "code",
    "tau": "auto",
}


def endpoint_conflicts(**settings):
    """Those of ``settings`` an endpoint solver cannot take, each with the value it needs."""
    return {
        name: ENDPOINT_SETTINGS[name]
        for name, value in settings.items()
        if not (isinstance(value, str) and value == ENDPOINT_SETTINGS[name])
    }


def encode(
    decoder,
    target,
    n_components,
    *,
    solver="amd",
    flow="gradient",
    adjoint="approx",
    loss="bce",
    tau="auto",
    alpha="constant",
    stop_rule="code",
    stop_tol=1e-4,
    stop_window=5,
    options=None,
    nesterov_eps=1e-2,
    z0=None,
    record_history=False,
    row_chunk="auto",
    code_penalty=None,
    metric=None,
):
    """Encode a batch by integrating the gradient flow of its reconstruction loss.

    Integrates ``dz/dt = -alpha(t) grad_z l(y, D(z))`` (or Nesterov's second-order flow) from
    ``z = z0`` (zeros by default) up to ``t = tau``, separately for every sample: step sizes,
    acceptance, early stopping and ``tau`` are per sample, and a sample that has finished
    stops costing decoder evaluations. Encoding rows alone or inside a larger batch gives
    the same codes.

    Parameters
    ----------
    decoder : callable
        Maps codes ``(n, n_components)`` to outputs shaped like the matching rows of
        ``target``; it must treat rows independently (e.g. a ``torch.nn.Module`` in eval
        mode, or with no batch-statistics layers).
    target : tensor ``(batch, ...)``
    n_components : int
    solver : {'amd', 'euler', 'rk4', 'dopri5', 'lbfgs'}
        ``'lbfgs'`` goes straight to the flow's endpoint (``_lbfgs``): gradient flow,
        ``approx`` gradients, the code stop rule and ``tau='auto'`` only.
    flow : {'gradient', 'nesterov'}
    adjoint : {'approx', 'full', 'unrolled'}
        How the returned codes depend on the decoder's parameters (see ``_adjoint``).
    loss : {'bce', 'mse'}
    tau : 'auto', float or tensor ``(batch,)``
        Horizon of the flow. ``'auto'``: the solver's ``default_tau`` (1e5 for ``'amd'``,
        whose line search keeps long flows safe; 1000 for the others).
    alpha : {'constant', 'exp'}
        Time scaling of the gradient; ``'exp'`` is ``exp(-2t/tau)`` (fixed-grid and
        adaptive solvers only).
    stop_rule : {'code', 'loss'}
        When a sample has reached its endpoint (see ``_stopping``). ``'code'``: once the
        distance its code has left to move, estimated from how fast its speed decays over the
        last ``stop_window`` accepted steps, is below ``stop_tol * max(|z|, 1)``. ``'loss'``:
        once its loss falls by less than ``stop_tol`` (relative) per unit of flow time.
    stop_tol : float
        Tolerance of the stop rule; 0 integrates to ``tau``.
    stop_window : int
    options : dict, optional
        Solver options (see ``solver_options(solver)``), e.g. AMD's ``beta``, ``s0``,
        ``s_max``, ``kappa``; the fixed grids' ``n_steps`` and ``grid``; dopri5's ``rtol``,
        ``atol`` and ``max_steps``.
    nesterov_eps : float
        The ``eps`` of ``3 / (t + eps)`` in the Nesterov flow.
    z0 : tensor ``(batch, n_components)``, optional
    record_history : bool
        Keep every accepted step's time and loss (``FlowResult.t_history``/``loss_history``).
    row_chunk : 'auto', int or None
        The decoder sees this many rows per call (the last chunk padded to a power of two),
        a plain MLP decoder on widths padded to multiples of 16, and the layout is checked
        once per configuration, which makes each sample's codes bit-identical whatever batch
        it is in (``flow/_rows.py``). ``'auto'``: 128 on CPU, 1024 elsewhere. None: one call
        per evaluation, faster for small batches (e.g. training), identical across batches
        only to rounding.
    code_penalty : callable ``(z, target) -> (batch,)`` or None
        A per-sample term added to the loss the flow minimises, such as a prior on the codes
        (``gaussian_code_penalty`` in ``flow/_losses.py``); ``FlowResult.loss`` includes it.
    metric : array ``(n_components, n_components)`` or None
        ``solver='lbfgs'`` only: search in the coordinates ``u`` of ``z = z0 + metric @ u``
        (the same minima, reached in fewer steps where ``metric @ metric.T`` approximates
        the inverse of the loss's Hessian), its first step ``first_step / 2`` Newton steps
        of that Hessian instead of a length.

    Returns
    -------
    FlowResult
    """
    solver_cls = _lookup(SOLVERS, solver, "solver")
    flow_cls = _lookup(FLOWS, flow, "flow")
    mode = _lookup(ADJOINTS, adjoint, "adjoint")
    loss_fn = _lookup(LOSSES, loss, "loss") if isinstance(loss, str) else loss
    alpha_fn = _lookup(ALPHAS, alpha, "alpha")
    _lookup(STOP_RULES, stop_rule, "stop_rule")
    if stop_rule == "code" and stop_window < 2:
        raise ValueError(
            f"stop_window={stop_window!r} is too short for stop_rule='code', which measures how "
            "the code's speed decays between steps: use stop_window >= 2 (default 5)."
        )
    _check_combination(solver_cls, alpha, flow=flow, adjoint=adjoint, stop_rule=stop_rule, tau=tau)
    if metric is not None and not solver_cls.takes_metric:
        raise ValueError(
            f"metric is read by solver='lbfgs' only (a search's coordinates); got "
            f"solver={solver!r}. Pass metric=None."
        )
    options = dict(options or {})
    accepted = _options(solver_cls)
    unknown = set(options) - set(accepted)
    if unknown:
        raise ValueError(
            f"Unknown option(s) {sorted(unknown)} for solver={solver!r}; it accepts "
            f"{sorted(accepted)}."
        )

    if target.dim() < 2 or target.shape[0] == 0:
        raise ValueError(
            f"target must have shape (batch, ...) with at least one row and one feature; got "
            f"{tuple(target.shape)}. Reshape a single sample to (1, n_features)."
        )
    batch = target.shape[0]
    dtype, device = target.dtype, target.device
    tau = _horizon(solver_cls, tau)
    tau = torch.as_tensor(tau, dtype=dtype, device=device).expand(batch).clone()
    endpoint = solver_cls.goes_to_endpoint
    if not bool((tau > 0).all()) or not (bool(torch.isfinite(tau).all()) or endpoint):
        raise ValueError(f"tau must be positive and finite; got {tau.min().item()!r}.")
    if z0 is None:
        z0 = torch.zeros(batch, n_components, dtype=dtype, device=device)

    flow_obj = (
        flow_cls(n_components, eps=nesterov_eps)
        if flow_cls.has_friction
        else flow_cls(n_components)
    )
    problem = EncodingProblem(
        decoder,
        target,
        loss_fn,
        flow_obj,
        alpha_fn,
        tau,
        differentiable=mode.graph_through_steps,
        row_chunk=row_chunk,
        code_penalty=code_penalty,
        metric=metric,
    )
    state0 = flow_obj.initial_state(z0)
    rows = torch.arange(batch, device=device)
    loss0, grad0 = problem.loss_and_grad(flow_obj.position(state0), rows)
    run = ActiveSet(
        problem,
        state0,
        loss0,
        grad0,
        stop_tol=stop_tol,
        stop_window=stop_window,
        stop_rule=stop_rule,
        keep_steps=mode.keeps_steps,
        record_history=record_history,
        windows=not endpoint,
    )
    return mode.codes(solver_cls(**options), run, mode.parameters(decoder))
