"""Per-sample reconstruction losses.

Every loss maps a decoder output and a target of the same shape ``(batch, ...)`` to one
value per sample: the mean over all non-batch dimensions. A per-sample mean keeps the scale
of the loss (and so of its gradient and of the solvers' step sizes) independent of the
batch size, which is what makes every sample's encoding independent of its batch.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _per_sample_mean(values):
    return values.reshape(values.shape[0], -1).mean(dim=1)


def bce_with_logits(output, target):
    """Binary cross-entropy, mean over features; the decoder emits logits."""
    # The logits form is the numerically stable one (log-sum-exp inside).
    return _per_sample_mean(F.binary_cross_entropy_with_logits(output, target, reduction="none"))


def squared_error(output, target):
    """Squared error, mean over features."""
    return _per_sample_mean((output - target) ** 2)


@dataclass(frozen=True)
class Loss:
    """A per-sample loss with the map from decoder output to data space.

    Attributes
    ----------
    name : str
    per_sample : callable ``(output, target) -> (batch,)``
    to_data : callable mapping decoder output to data space (for reconstructions).
    target_range : tuple or None
        Closed interval the targets must lie in, or None for any finite value.
    """

    name: str
    per_sample: Callable
    to_data: Callable
    target_range: tuple | None = None

    def __call__(self, output, target):
        return self.per_sample(output, target)


BCE = Loss("bce", bce_with_logits, torch.sigmoid, (0.0, 1.0))
MSE = Loss("mse", squared_error, lambda output: output, None)
