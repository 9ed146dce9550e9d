"""What an encoding returns: the codes and per-sample diagnostics."""

from dataclasses import dataclass

import torch


@dataclass
class FlowResult:
    """Codes and per-sample diagnostics of one encoding.

    Attributes
    ----------
    z : tensor ``(batch, n_components)``
        The codes ``z*``. Wired for the chosen gradient mode: detached for ``approx``, with a
        graph to the decoder's parameters for ``unrolled`` and ``full``.
    state : tensor ``(batch, state_size)``
        Final flow state (``[z, v]`` for the Nesterov flow), detached.
    loss : tensor ``(batch,)``
        Loss at ``z*``.
    n_steps : tensor ``(batch,)``
        Accepted steps.
    n_evals : tensor ``(batch,)``
        Decoder evaluations spent on the sample (forward passes, each with its input
        gradient), rejected trials included.
    t : tensor ``(batch,)``
        Flow time reached.
    converged : tensor ``(batch,)`` of bool
        The loss curve flattened (or no step lowered the loss any more) before the horizon.
    t_history, loss_history : tensor ``(max_steps + 1, batch)`` or None
        Times and losses at the accepted steps when ``record_history=True``, starting at
        ``t = 0``; entries after a sample stopped are NaN.
    """

    z: torch.Tensor
    state: torch.Tensor
    loss: torch.Tensor
    n_steps: torch.Tensor
    n_evals: torch.Tensor
    t: torch.Tensor
    converged: torch.Tensor
    t_history: torch.Tensor | None = None
    loss_history: torch.Tensor | None = None
