"""The encoding problem of one batch: decoder, targets, loss, flow and horizon."""

import torch

# BLAS kernels (MKL, oneDNN, cuBLAS) pick their blocking, threading and tail handling from
# the shape of a product, so a row's decoder output can change in its last bits with the
# number of rows it is evaluated with; the flow can amplify that (measured: 2.8e-4 in the
# codes), and AMD's accept/reject decisions can flip on it. The decoder therefore sees
# only a few row counts: full chunks of ROW_CHUNK rows, and the remainder padded to the
# next power of two from MIN_ROW_CHUNK up. Rows come out bit-identical whatever batch they
# are in, because on MKL these power-of-two row counts round every row alike (checked for
# the papers' decoder and small ones in tests/flow/test_problem.py, which fails loudly on
# a platform where they do not). Padding to any multiple of 16 was not enough: at 240 or
# 304 rows MKL rounded the papers' decoder differently, and at 256 rows its input gradient
# (float32 and float64, one thread), so full chunks stop at 128. The small remainder sizes
# keep the last few samples of a run from paying for 128 rows each; 128 rows evaluate the
# papers' decoder 1.23x faster per row than 64 (one thread, float32). A GPU is latency-bound
# at these sizes, so there one larger chunk costs less than many launches.
ROW_CHUNK = {"cpu": 128}
DEFAULT_ROW_CHUNK = 1024
MIN_ROW_CHUNK = 16


def padded_rows(n, chunk):
    """Rows the decoder is called with for the last, partial chunk of ``n`` rows."""
    return min(chunk, max(MIN_ROW_CHUNK, 1 << (n - 1).bit_length()))


def rowwise(fn, *tensors, chunk):
    """``fn(*tensors)`` evaluated in calls of the row counts that round every row alike.

    Full chunks of ``chunk`` rows and the remainder padded with zero rows (``padded_rows``),
    so that each row's result is the same bit for bit whatever batch it is in; ``chunk=None``
    is one call. ``fn`` treats rows independently and returns one row per input row.
    """
    if chunk is None:
        return fn(*tensors)
    n = tensors[0].shape[0]
    results = []
    for start in range(0, n, chunk):
        parts = [t[start : start + chunk] for t in tensors]
        rows = parts[0].shape[0]
        pad = padded_rows(rows, chunk) - rows
        if pad:
            parts = [torch.cat([p, p.new_zeros(pad, *p.shape[1:])]) for p in parts]
        results.append(fn(*parts)[:rows])
    return torch.cat(results)


def resolve_row_chunk(row_chunk, device):
    """Rows per decoder call: ``'auto'`` picks by device type, None means one call."""
    if row_chunk == "auto":
        return ROW_CHUNK.get(torch.device(device).type, DEFAULT_ROW_CHUNK)
    if row_chunk is not None and (
        isinstance(row_chunk, bool) or not isinstance(row_chunk, int) or row_chunk < 1
    ):
        raise ValueError(f"row_chunk must be 'auto', None or a positive int; got {row_chunk!r}.")
    return row_chunk


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
        Rows per decoder call (see ``ROW_CHUNK``); None evaluates the whole active set in one
        call: fastest, but codes then match across batches only to rounding.
    code_penalty : callable ``(z, target) -> (n,)`` or None
        A per-sample term added to the loss (e.g. ``gaussian_code_penalty``), so the flow
        minimises loss plus penalty.
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
    ):
        self.decoder = decoder
        self.target = target
        self.loss = loss
        self.flow = flow
        self.alpha = alpha
        self.tau = tau
        self.differentiable = differentiable
        self.row_chunk = resolve_row_chunk(row_chunk, target.device)
        self.code_penalty = code_penalty

    def _loss(self, z, target):
        loss = self.loss(self.decoder(z), target)
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

    def _chunked_loss(self, z, target):
        return rowwise(self._loss, z, target, chunk=self.row_chunk)

    def derivative(self, t, state, grad, rows):
        """The flow's derivative at ``state``, given the loss gradient there."""
        return self.flow.derivative(t, state, grad, self.alpha(t, self.tau[rows]))

    def field(self, t, state, rows):
        """The flow's derivative at ``state`` and the loss there."""
        loss, grad = self.loss_and_grad(self.flow.position(state), rows)
        return self.derivative(t, state, grad, rows), loss
