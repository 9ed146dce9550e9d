"""The encoding problem of one batch: decoder, targets, loss, flow and horizon."""

import torch

from ._rows import (
    callable_key,
    checked_row_layout,
    padded_mlp,
    probe_codes,
    probe_rows,
    resolve_row_chunk,
    rowwise,
)


class EncodingProblem:
    """Evaluates losses, input gradients and flow derivatives for subsets of a batch.

    Parameters
    ----------
    decoder : callable
        Maps codes ``(n, n_components)`` to outputs shaped like ``target[rows]``. It must treat
        rows independently (no batch statistics), which every feed-forward network does in
        evaluation mode.
    target : tensor ``(batch, ...)``
    loss : Loss
    flow : GradientFlow or NesterovFlow
    alpha : callable ``(t, tau) -> (n,)``
    tau : tensor ``(batch,)``
    differentiable : bool
        Keep the graph of every gradient (``create_graph``) so that results can be
        differentiated with respect to the decoder's parameters.
    row_chunk : 'auto', int or None
        Rows per decoder call (see ``_rows``): every row then gets the same bits whatever
        batch it is in. None evaluates the whole active set in one call: fastest, but codes
        then match across batches only to rounding.
    code_penalty : callable ``(z, target) -> (n,)`` or None
        A per-sample term added to the loss (e.g. ``gaussian_code_penalty``), so the flow
        minimises loss plus penalty.
    metric : array ``(k, k)`` or None
        The coordinates of L-BFGS's search (``encode``).
    """

    def __init__(
        self,
        decoder,
        target,
        loss,
        flow,
        alpha,
        tau,
        differentiable=False,
        row_chunk="auto",
        code_penalty=None,
        metric=None,
    ):
        self.decoder = decoder
        self.target = target
        self.loss = loss
        self.flow = flow
        self.alpha = alpha
        self.tau = tau
        self.differentiable = differentiable
        self.code_penalty = code_penalty
        self.metric = metric
        chunk = resolve_row_chunk(row_chunk, target.device, decoder)
        self._evaluate = decoder if chunk is None else padded_mlp(decoder)
        probe = (probe_codes(flow.n_components, target), probe_rows(target))
        key = (callable_key(getattr(loss, "per_sample", loss)), callable_key(code_penalty))
        self.row_layout = checked_row_layout(self._rows_loss_and_grad, probe, chunk, decoder, key)

    def _loss(self, z, target):
        loss = self.loss(self._evaluate(z), target)
        if self.code_penalty is not None:
            loss = loss + self.code_penalty(z, target)
        return loss

    def loss_and_grad(self, z, rows):
        """Per-sample loss and its gradient with respect to ``z`` for the rows ``rows``."""
        with torch.enable_grad():
            if not self.differentiable:
                z = z.detach().requires_grad_(True)
            elif not z.requires_grad:
                z = z.detach().requires_grad_(True)
            loss = self._chunked_loss(z, self.target[rows])
            (grad,) = torch.autograd.grad(loss.sum(), z, create_graph=self.differentiable)
        if not self.differentiable:
            loss = loss.detach()
        return loss, grad

    def _rows_loss_and_grad(self, z, target):
        """Loss and code gradient of rows evaluated in one call, as a chunk of them is."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            loss = self._loss(z, target)
            (grad,) = torch.autograd.grad(loss.sum(), z)
        return loss.detach(), grad

    def _chunked_loss(self, z, target):
        chunk, one_size = self.row_layout
        return rowwise(self._loss, z, target, chunk=chunk, one_size=one_size)

    def derivative(self, t, state, grad, rows):
        """The flow's derivative at ``state``, given the loss gradient there."""
        return self.flow.derivative(t, state, grad, self.alpha(t, self.tau[rows]))

    def field(self, t, state, rows):
        """The flow's derivative at ``state`` and the loss there."""
        loss, grad = self.loss_and_grad(self.flow.position(state), rows)
        return self.derivative(t, state, grad, rows), loss
