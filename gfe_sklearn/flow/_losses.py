"""Per-sample reconstruction losses.

Every loss maps a decoder output and a target of the same shape ``(batch, ...)`` to one
value per sample: the mean over all non-batch dimensions. A per-sample mean keeps the scale
of the loss (and so of its gradient and of the solvers' step sizes) independent of the
batch size, which is what makes every sample's encoding independent of its batch.

``Loss.observed_only`` gives the same loss over each sample's observed entries, NaN in the
target marking a missing one: the mean over the observed entries, so that a sample with few
observations is not down-weighted against one with many.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F


def _per_sample_mean(values):
    # flatten, not reshape(n, -1): a batch of no rows has no -1 to infer.
    return values.flatten(start_dim=1).mean(dim=1)


def _bce_terms(output, target):
    # The logits form is the numerically stable one (log-sum-exp inside).
    return F.binary_cross_entropy_with_logits(output, target, reduction="none")


def _squared_terms(output, target):
    return (output - target) ** 2


def bce_with_logits(output, target):
    """Binary cross-entropy, mean over features; the decoder emits logits."""
    return _per_sample_mean(_bce_terms(output, target))


def squared_error(output, target):
    """Squared error, mean over features."""
    return _per_sample_mean(_squared_terms(output, target))


def _observed_mean(terms, output, target):
    """Mean of ``terms(output, target)`` over each sample's non-NaN targets."""
    observed = ~torch.isnan(target)
    # A NaN target would make its term NaN, and a NaN times the zero weight of a missing
    # entry is still NaN (in the value and in the gradient): fill before, select after.
    filled = torch.where(
        observed, target, torch.zeros((), dtype=target.dtype, device=target.device)
    )
    values = torch.where(observed, terms(output, filled), 0.0)
    count = observed.reshape(observed.shape[0], -1).sum(dim=1)
    return values.reshape(values.shape[0], -1).sum(dim=1) / count


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
    terms : callable ``(output, target) -> output's shape`` or None
        The loss of every entry, whose per-sample mean ``per_sample`` is; ``observed_only``
        needs it.
    """

    name: str
    per_sample: Callable
    to_data: Callable
    target_range: tuple | None = None
    terms: Callable | None = None

    def __call__(self, output, target):
        return self.per_sample(output, target)

    def observed_only(self):
        """This loss over each sample's observed entries; NaN in the target marks a missing one.

        Every sample needs at least one observed entry (its loss is otherwise NaN).

        Returns
        -------
        Loss

        Examples
        --------
        >>> import torch
        >>> from gfe_sklearn.flow import LOSSES
        >>> output = torch.tensor([[0.0, 5.0, 1.0]])
        >>> LOSSES["mse"].observed_only()(output, torch.tensor([[1.0, float("nan"), 3.0]]))
        tensor([2.5000])
        """
        if self.terms is None:
            raise ValueError(
                f"Loss {self.name!r} has no per-entry terms, so it cannot skip missing "
                "entries: give it terms=, the loss of every entry."
            )
        return replace(self, per_sample=partial(_observed_mean, self.terms))


def _gaussian_code_penalty(mean, scale, strength, z, target):
    observed = (~torch.isnan(target)).reshape(target.shape[0], -1).sum(dim=1)
    return strength * 0.5 * (((z - mean) / scale) ** 2).sum(dim=1) / observed


def gaussian_code_penalty(mean, scale, strength):
    """A Gaussian prior on the codes, as a per-sample term of a mean-per-entry loss.

    ``strength * ||(z - mean) / scale||^2 / 2``, divided by the sample's number of observed
    (non-NaN) target entries: added to the mean loss over those entries, it makes the flow's
    minimum a MAP code under the prior ``N(mean, diag(scale^2))`` (at ``strength=1``, with
    the loss as the negative log-likelihood per entry). The fewer entries a sample has, the
    more the prior weighs.

    Parameters
    ----------
    mean, scale : tensor ``(n_components,)``
    strength : float

    Returns
    -------
    callable ``(z, target) -> (batch,)``, for ``encode``'s ``code_penalty``.

    Examples
    --------
    >>> import torch
    >>> penalty = gaussian_code_penalty(torch.zeros(2), torch.ones(2), 1.0)
    >>> penalty(torch.tensor([[3.0, 4.0]]), torch.tensor([[0.5, float("nan")]]))
    tensor([12.5000])
    """
    return partial(_gaussian_code_penalty, mean, scale, strength)


def _sum_of_penalties(penalties, z, target):
    return sum(penalty(z, target) for penalty in penalties)


def sum_of_penalties(*penalties):
    """Per-sample code penalties added up, as one ``code_penalty`` for ``encode``."""
    return partial(_sum_of_penalties, penalties)


BCE = Loss("bce", bce_with_logits, torch.sigmoid, (0.0, 1.0), _bce_terms)
MSE = Loss("mse", squared_error, lambda output: output, None, _squared_terms)
