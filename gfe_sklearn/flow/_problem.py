"""The encoding problem of one batch: decoder, targets, loss, flow and horizon."""

import torch


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
    """

    def __init__(self, decoder, target, loss, flow, alpha, tau, differentiable=False):
        self.decoder = decoder
        self.target = target
        self.loss = loss
        self.flow = flow
        self.alpha = alpha
        self.tau = tau
        self.differentiable = differentiable

    def loss_and_grad(self, z, rows):
        """Per-sample loss and its gradient with respect to ``z`` for the rows ``rows``."""
        with torch.enable_grad():
            if not self.differentiable:
                z = z.detach().requires_grad_(True)
            elif not z.requires_grad:
                z = z.detach().requires_grad_(True)
            loss = self.loss(self.decoder(z), self.target[rows])
            (grad,) = torch.autograd.grad(loss.sum(), z, create_graph=self.differentiable)
        if not self.differentiable:
            loss = loss.detach()
        return loss, grad

    def derivative(self, t, state, grad, rows):
        """The flow's derivative at ``state``, given the loss gradient there."""
        return self.flow.derivative(t, state, grad, self.alpha(t, self.tau[rows]))

    def field(self, t, state, rows):
        """The flow's derivative at ``state`` and the loss there."""
        loss, grad = self.loss_and_grad(self.flow.position(state), rows)
        return self.derivative(t, state, grad, rows), loss
