"""Dormand-Prince 5(4): an adaptive solver that controls integration error per sample."""

import warnings

import torch

from ._fixed import StiffnessWarning, Tableau, rk_step
from ._rows import per_sample
from ._solver import Solver

DOPRI5_TABLEAU = Tableau(
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    ),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
    b_error=(
        35 / 384 - 5179 / 57600,
        0.0,
        500 / 1113 - 7571 / 16695,
        125 / 192 - 393 / 640,
        -2187 / 6784 + 92097 / 339200,
        11 / 84 - 187 / 2100,
        -1 / 40,
    ),
)

# The last stage is evaluated at the new state (first-same-as-last), so a step is the first
# six stages and the seventh doubles as the next step's first.
_STEP_TABLEAU = Tableau(DOPRI5_TABLEAU.c[:6], DOPRI5_TABLEAU.a[:6], DOPRI5_TABLEAU.b[:6])


def _rms(x):
    return x.pow(2).mean(dim=1).sqrt()


class Dopri5(Solver):
    """Adaptive Dormand-Prince 5(4) with a per-sample step-size controller.

    Each sample has its own step size and accepts or rejects its own steps, so one stiff
    sample never shrinks another's steps. ``max_steps`` caps the attempted steps per sample:
    a gradient flow that turns stiff during training (section 2.2 of the papers) then ends
    with a ``StiffnessWarning`` instead of hanging.
    """

    name = "dopri5"
    order = 5
    # Error control makes every step cost six evaluations: a long horizon spends them on
    # the flow's slow tail and reaches max_steps.
    default_tau = 1e3

    def __init__(
        self, rtol=1e-5, atol=1e-6, max_steps=1000, safety=0.9, min_factor=0.2, max_factor=10.0
    ):
        self.rtol = rtol
        self.atol = atol
        self.max_steps = max_steps
        self.safety = safety
        self.min_factor = min_factor
        self.max_factor = max_factor

    def step(self, problem, t, state, h, rows):
        return rk_step(problem, t, state, h, rows, _STEP_TABLEAU)[0]

    def _scale(self, *states):
        size = torch.stack([s.abs() for s in states]).amax(dim=0)
        return self.atol + self.rtol * size

    def _initial_step(self, run):
        """Hairer, Norsett & Wanner's starting step (Solving ODEs I, II.4), per sample."""
        problem, state, t, k1 = run.problem, run["state"], run["t"], run["k1"]
        scale = self._scale(state)
        d0, d1 = _rms(state / scale), _rms(k1 / scale)
        tiny = torch.full_like(d0, 1e-6)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), tiny, 0.01 * d0 / d1.clamp_min(1e-30))
        k_probe, _ = problem.field(t + h0, state + h0[:, None] * k1, run.rows)
        run.count_evals()
        d2 = _rms((k_probe - k1) / scale) / h0
        d_max = torch.maximum(d1, d2)
        h1 = torch.where(
            d_max <= 1e-15,
            torch.maximum(tiny, h0 * 1e-3),
            per_sample(lambda d: (0.01 / d.clamp_min(1e-30)) ** (1 / 5), d_max),
        )
        return torch.minimum(torch.minimum(100 * h0, h1), run["tau"] - t).detach()

    def integrate(self, run):
        problem = run.problem
        run["k1"] = problem.derivative(run["t"], run["state"], run["grad"], run.rows)
        run["h"] = self._initial_step(run)
        run["attempts"] = torch.zeros_like(run["n_steps"])
        n_capped = 0
        while len(run):
            state, t, h = run["state"], run["t"], run["h"]
            new_state, stages = rk_step(problem, t, state, h, run.rows, _STEP_TABLEAU, k1=run["k1"])
            k_new, new_loss = problem.field(t + h, new_state, run.rows)
            run.count_evals(6)
            stages.append(k_new)
            error = h[:, None] * sum(e * k for e, k in zip(DOPRI5_TABLEAU.b_error, stages))
            ratio = _rms(error.detach() / self._scale(state.detach(), new_state.detach()))
            accepted = (ratio <= 1.0) & torch.isfinite(ratio) & torch.isfinite(new_loss)
            run.record_steps(accepted, t, h, state)

            at_end = accepted & (h >= run["tau"] - t)
            t_new = torch.where(at_end, run["tau"], t + h)
            run.accept(accepted, t_new, new_state, new_loss, k1=k_new)
            safe_ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, 1e10))
            factor = self.safety * per_sample(lambda r: r.clamp_min(1e-10) ** (-1 / 5), safe_ratio)
            factor = factor.clamp(self.min_factor, self.max_factor)
            run["h"] = torch.minimum(h * factor, run["tau"] - run["t"]).detach()
            run["attempts"] = run["attempts"] + 1

            capped = ~at_end & (run["attempts"] >= self.max_steps)
            n_capped += int(capped.sum())
            converged = run.converged() & ~at_end
            run.retire(at_end | capped | converged, converged)
        if n_capped:
            warnings.warn(
                f"dopri5 stopped {n_capped} sample(s) at its cap of max_steps={self.max_steps} "
                "attempted steps before the horizon tau: the gradient flow is stiff. Use "
                "solver='amd' (made for stiff flows), a fixed-grid solver ('rk4'), or raise "
                "max_steps / rtol / atol.",
                StiffnessWarning,
                stacklevel=4,
            )
