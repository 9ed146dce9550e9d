"""Bookkeeping shared by the solvers: the samples still integrating and what they leave.

Every sample carries its own state, time, step size and counters. Solvers work on the
compact set of *active* rows; a row that finishes (reached its horizon, flattened, or hit a
cap) is retired: its final values are stored and it stops costing decoder evaluations.
"""

from dataclasses import dataclass

import torch

from ._result import FlowResult
from ._stopping import STOP_RULES


@dataclass
class StepRecord:
    """One accepted step of a group of rows, enough to recompute it for the full adjoint."""

    rows: torch.Tensor
    t: torch.Tensor
    h: torch.Tensor
    state: torch.Tensor


class ActiveSet:
    """Per-sample working tensors of the active rows of a batch.

    ``self.data`` maps names to tensors whose first dimension indexes the active rows; the
    entries ``state``, ``loss``, ``grad`` (of the loss at ``state``), ``t``, ``tau``,
    ``n_steps`` and ``n_evals`` always exist; so do, with ``windows``, the stop rules' windows
    over the last accepted steps (``window``, ``t_window``: losses and times after each step;
    ``moved_window``: how far the code moved in each step). Solvers add their own (step
    sizes, stage values). A solver with its own convergence test (``goes_to_endpoint``)
    runs without windows, whose upkeep costs a dozen tensor operations per step.
    """

    def __init__(
        self,
        problem,
        state,
        loss,
        grad,
        *,
        stop_tol,
        stop_window,
        keep_steps,
        record_history,
        stop_rule="code",
        n_evals=1,
        windows=True,
    ):
        batch = state.shape[0]
        device = state.device
        self.problem = problem
        self.batch_size = batch
        self.stop_tol = stop_tol
        self.stop_window = stop_window
        self.stop_rule = STOP_RULES[stop_rule]
        self.keep_steps = keep_steps
        self.records = []
        self._history = [] if record_history else None
        self._finished = []
        self.rows = torch.arange(batch, device=device)
        ldet = loss.detach()
        self.data = {
            "state": state,
            "loss": loss,
            "grad": grad,
            "t": torch.zeros(batch, dtype=state.dtype, device=device),
            "tau": problem.tau,
            "n_steps": torch.zeros(batch, dtype=torch.long, device=device),
            "n_evals": torch.full((batch,), n_evals, dtype=torch.long, device=device),
        }
        self.windows = windows
        if windows:
            self.data.update(
                {
                    "window": ldet[:, None].repeat(1, stop_window + 1),
                    "t_window": torch.zeros(
                        batch, stop_window + 1, dtype=state.dtype, device=device
                    ),
                    "moved_window": torch.zeros(
                        batch, stop_window, dtype=state.dtype, device=device
                    ),
                }
            )
        if self._history is not None:
            self._history.append((self.rows, self.data["n_steps"], self.data["t"], ldet))

    def __len__(self):
        return self.rows.shape[0]

    def __getitem__(self, name):
        return self.data[name]

    def __setitem__(self, name, value):
        self.data[name] = value

    def count_evals(self, n=1):
        self.data["n_evals"] = self.data["n_evals"] + n

    def record_steps(self, accepted, t, h, state):
        """Keep what the full adjoint needs to recompute the accepted steps."""
        # A group in which no row stepped has nothing to recompute.
        if self.keep_steps and bool(accepted.any()):
            self.records.append(
                StepRecord(self.rows[accepted], t[accepted], h[accepted], state[accepted].detach())
            )

    def accept(self, accepted, t_new, state_new, loss_new, **updates):
        """Move the ``accepted`` rows to ``state_new`` at ``t_new``; the others stay.

        ``updates`` are further per-row values (the gradient, a stage) that the accepted rows
        take over. Also advances the step counts, the stop rules' windows and the history.
        """
        d = self.data
        acc = accepted[:, None]
        if self.windows:
            flow = self.problem.flow
            moved = (flow.position(state_new) - flow.position(d["state"])).detach().norm(dim=1)
        d["state"] = torch.where(acc, state_new, d["state"])
        d["loss"] = torch.where(accepted, loss_new, d["loss"])
        for name, new in updates.items():
            d[name] = torch.where(accepted.reshape(-1, *[1] * (new.dim() - 1)), new, d[name])
        d["t"] = torch.where(accepted, t_new, d["t"])
        d["n_steps"] = d["n_steps"] + accepted.long()
        if self.windows:
            for name, new in (
                ("window", loss_new.detach()),
                ("t_window", d["t"]),
                ("moved_window", moved),
            ):
                shifted = torch.cat([d[name][:, 1:], new[:, None]], dim=1)
                d[name] = torch.where(acc, shifted, d[name])
        if self._history is not None and bool(accepted.any()):
            self._history.append(
                (
                    self.rows[accepted],
                    d["n_steps"][accepted],
                    d["t"][accepted],
                    loss_new.detach()[accepted],
                )
            )

    def converged(self):
        """Rows that reached their flow's endpoint by the stop rule (none with ``stop_tol=0``)."""
        if not self.stop_tol:
            return torch.zeros_like(self.rows, dtype=torch.bool)
        return self.stop_rule(self, self.stop_tol)

    def retire(self, done, converged):
        """Store the final values of the rows in ``done`` and drop them from the active set."""
        if not bool(done.any()):
            return
        d = self.data
        self._finished.append(
            {
                "rows": self.rows[done],
                "state": d["state"][done],
                "loss": d["loss"][done].detach(),
                "t": d["t"][done],
                "n_steps": d["n_steps"][done],
                "n_evals": d["n_evals"][done],
                "converged": converged[done] & torch.isfinite(d["loss"][done].detach()),
            }
        )
        keep = ~done
        self.rows = self.rows[keep]
        self.data = {name: value[keep] for name, value in d.items()}

    def result(self, flow):
        """Assemble the per-sample results in the original row order."""
        if len(self):
            self.retire(
                torch.ones_like(self.rows, dtype=torch.bool),
                torch.zeros_like(self.rows, dtype=torch.bool),
            )
        rows = torch.cat([f["rows"] for f in self._finished])
        order = torch.argsort(rows)

        def gather(name):
            return torch.cat([f[name] for f in self._finished])[order]

        state = gather("state")
        t_hist = loss_hist = None
        if self._history is not None:
            t_hist, loss_hist = self._assemble_history(state)
        return FlowResult(
            z=flow.position(state),
            state=state.detach(),
            loss=gather("loss"),
            n_steps=gather("n_steps"),
            n_evals=gather("n_evals"),
            t=gather("t"),
            converged=gather("converged"),
            t_history=t_hist,
            loss_history=loss_hist,
        )

    def _assemble_history(self, state):
        length = int(max(int(steps.max()) for _, steps, _, _ in self._history)) + 1
        shape = (length, self.batch_size)
        t_hist = torch.full(shape, float("nan"), dtype=state.dtype, device=state.device)
        loss_hist = torch.full_like(t_hist, float("nan"))
        for rows, steps, t, loss in self._history:
            t_hist[steps, rows] = t.to(t_hist.dtype)
            loss_hist[steps, rows] = loss.to(loss_hist.dtype)
        return t_hist, loss_hist
