"""Row-wise evaluation whose result for a row does not depend on the batch the row is in.

Math libraries pick a product's kernel, blocking and threading from its shape, and some
kernels round a row differently depending on where it sits in the matrix (docs/engine.md
lists the cases measured); the flow, and the adaptive solvers' accept/reject decisions,
amplify a last-bit difference to 1e-3 in the codes. Three measures make a row's result a
function of the row alone, on any math library:

1. Row counts (``rowwise``): full chunks of ``ROW_CHUNK`` rows and the remainder padded with
   zero rows to a power of two from ``MIN_ROW_CHUNK``, so a handful of call shapes occur
   whatever the batch size.
2. Widths (``padded_mlp``): a plain MLP is evaluated with every width padded with zero
   weights to a multiple of ``WIDTH_MULTIPLE``, which keeps its products off the narrow
   kernels that pair rows up, and gives every row of the output the same elementwise loop.
3. A check (``checked_row_layout``): the first time a function is evaluated in a given
   configuration, probe rows are placed at every position of every call size and compared
   with the row alone. Where any bit differs, the CPU tries one call size for every call
   (the last chunk padded to a whole one: some kernels round a row alike at every position
   of one call size but differently from one size to another), then rows one at a time
   (alike by construction, and slowest); other devices warn that codes match only to
   rounding.
"""

import warnings
import weakref
from functools import partial
from typing import NamedTuple

import torch
from torch import nn

# A GPU is latency-bound at these sizes, so there one larger chunk costs less than many
# launches; 128 rows evaluate the papers' decoder 1.23x faster per row than 64 on a CPU.
ROW_CHUNK = {"cpu": 128}
DEFAULT_ROW_CHUNK = 1024
# A plain MLP no wider than NARROW_WIDTH (padded) costs a CPU its calls more than its
# arithmetic: in calls of up to NARROW_ROW_CHUNK rows one loss and input gradient of 397
# digits rows through 10-32-64-64 took 0.58 ms instead of 0.78 (1,024 rows through
# 10-256-256-64: 3.61 ms instead of 4.68), where a 784-pixel or 600-unit decoder is fastest
# at 128 (docs/engine.md).
NARROW_WIDTH = 256
NARROW_ROW_CHUNK = 1024
MIN_ROW_CHUNK = 16
WIDTH_MULTIPLE = 16
PROBE_ROWS = 16
# Where the powers of two do not round rows alike, every call is padded to one size: the
# chunk, then this many rows. MKL's AVX2 kernels (on an AVX-512 CPU held to them, one and two
# torch threads) rounded every row of the papers' decoder and of narrow MLPs alike in calls
# of 96 rows, but not of 128, 112 or 32 for all of them (docs/engine.md).
ONE_SIZE_FALLBACK = 96

# Parameter-free maps applied entry by entry: padding a layer's width with units whose
# outgoing weights are zero leaves the next layer's sums exactly as they were.
ELEMENTWISE = (
    nn.ELU,
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Softplus,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
)


# Elementwise kernels run whole vectors and finish a tensor's last few entries with scalar
# code whose transcendental functions round differently (torch.pow: 4% of float32 entries),
# so a sample's entry at the end of one batch and inside another would differ. Per-sample
# values padded to a multiple of this many entries (any SIMD width up to 2048 bits, two
# vectors per loop turn) take the vector path everywhere.
ELEMENTWISE_BLOCK = 128


class RowLayoutWarning(RuntimeWarning):
    """Rows evaluated together round differently by position on this device."""


class RowLayout(NamedTuple):
    """How ``rowwise`` lays rows out in calls: chunks of ``chunk`` rows, the last one padded
    to the next power of two from ``MIN_ROW_CHUNK``, or with ``one_size`` to a whole chunk
    (every call then has ``chunk`` rows). ``chunk=None`` is one call of all rows."""

    chunk: int | None
    one_size: bool = False


def padded_rows(n, chunk, one_size=False):
    """Rows the decoder is called with for the last, partial chunk of ``n`` rows."""
    if one_size:
        return chunk
    return min(chunk, max(MIN_ROW_CHUNK, 1 << (n - 1).bit_length()))


def call_sizes(chunk, one_size=False):
    """Every row count ``rowwise`` calls ``fn`` with for chunks of ``chunk`` rows."""
    return sorted({padded_rows(n, chunk, one_size) for n in range(1, chunk + 1)})


def rowwise(fn, *tensors, chunk, one_size=False):
    """``fn(*tensors)`` evaluated in calls of ``chunk`` rows, the last one padded.

    Full chunks of ``chunk`` rows and the remainder padded with zero rows (``padded_rows``:
    to a power of two, or with ``one_size`` to a whole chunk); ``chunk=None`` is one call.
    ``fn`` treats rows independently and returns one row per input row. With ``chunk=1``
    every row is copied into a tensor of its own, so that no row's memory alignment depends
    on its index.
    """
    if chunk is None:
        return fn(*tensors)
    n = tensors[0].shape[0]
    results = []
    for start in range(0, n, chunk):
        parts = [t[start : start + chunk] for t in tensors]
        rows = parts[0].shape[0]
        pad = padded_rows(rows, chunk, one_size) - rows
        if pad:
            parts = [torch.cat([p, p.new_zeros(pad, *p.shape[1:])]) for p in parts]
        elif chunk == 1:
            parts = [p.clone() for p in parts]
        results.append(fn(*parts)[:rows])
    return torch.cat(results)


def per_sample(fn, *values):
    """``fn`` applied entry by entry to per-sample vectors ``(n,)``, each entry computed alike
    whatever ``n`` is: the vectors are padded with ones to a multiple of ``ELEMENTWISE_BLOCK``.
    """
    n = values[0].shape[0]
    pad = -n % ELEMENTWISE_BLOCK
    if pad:
        values = [torch.cat([v, v.new_ones(pad, *v.shape[1:])]) for v in values]
    return fn(*values)[:n]


def resolve_row_chunk(row_chunk, device, module=None):
    """Rows per call of ``module``: ``'auto'`` picks by device type, and on a CPU by the
    module's width (``NARROW_ROW_CHUNK`` for a narrow plain MLP); None means one call."""
    if row_chunk == "auto":
        kind = torch.device(device).type
        if kind == "cpu" and widest_layer(module) <= NARROW_WIDTH:
            return NARROW_ROW_CHUNK
        return ROW_CHUNK.get(kind, DEFAULT_ROW_CHUNK)
    if row_chunk is not None and (
        isinstance(row_chunk, bool) or not isinstance(row_chunk, int) or row_chunk < 1
    ):
        raise ValueError(f"row_chunk must be 'auto', None or a positive int; got {row_chunk!r}.")
    return row_chunk


def _round_up(width):
    return -(-width // WIDTH_MULTIPLE) * WIDTH_MULTIPLE


class PaddedMLP:
    """A ``Sequential`` of linear layers and elementwise activations, evaluated on widths
    padded with zeros to multiples of ``WIDTH_MULTIPLE``; equal to the module up to rounding.

    The padded weights are built once, in the caller's grad mode, so gradients reach the
    module's own parameters through them.
    """

    def __init__(self, module):
        self.module = module
        layers = [module] if type(module) is nn.Linear else list(module)
        self.layers = []
        for layer in layers:
            if type(layer) is nn.Linear:
                n_out, n_in = layer.weight.shape
                pad = (0, _round_up(n_in) - n_in, 0, _round_up(n_out) - n_out)
                weight = nn.functional.pad(layer.weight, pad)
                bias = None if layer.bias is None else nn.functional.pad(layer.bias, pad[2:])
                layer = partial(nn.functional.linear, weight=weight, bias=bias)
            self.layers.append(layer)
        linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
        self.n_in, self.n_out = linears[0].in_features, linears[-1].out_features

    def __call__(self, x):
        if x.dim() != 2:
            return self.module(x)
        width = _round_up(self.n_in)
        if width > self.n_in:
            x = torch.cat([x, x.new_zeros(x.shape[0], width - self.n_in)], dim=1)
        for layer in self.layers:
            x = layer(x)
        return x[:, : self.n_out]


def widest_layer(module):
    """The largest padded width of a plain MLP (``padded_mlp``); infinite for any other
    module, whose cost per row is unknown."""
    if module is None or not isinstance(padded_mlp(module), PaddedMLP):
        return float("inf")
    layers = [module] if type(module) is nn.Linear else list(module)
    linears = [layer for layer in layers if type(layer) is nn.Linear]
    return max(_round_up(max(layer.in_features, layer.out_features)) for layer in linears)


def padded_mlp(module):
    """``PaddedMLP(module)`` where ``module`` is a plain MLP (or one linear layer), else
    ``module`` itself. Exact types only: a subclass may compute something else."""
    if type(module) is nn.Linear:
        return PaddedMLP(module)
    if type(module) is not nn.Sequential or len(module) == 0:
        return module
    if not all(type(layer) in (nn.Linear, *ELEMENTWISE) for layer in module):
        return module
    if type(module[0]) is not nn.Linear or type(module[-1]) is not nn.Linear:
        return module
    return PaddedMLP(module)


def probe_codes(n_components, like):
    """``PROBE_ROWS`` codes drawn from a fixed local generator (zeros would hide rounding)."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(PROBE_ROWS, n_components, generator=generator, dtype=torch.float64)
    return codes.to(dtype=like.dtype, device=like.device)


def probe_rows(tensor):
    """``PROBE_ROWS`` rows of ``tensor``, repeated where it has fewer."""
    index = torch.arange(PROBE_ROWS, device=tensor.device) % tensor.shape[0]
    return tensor[index]


def _outputs(fn, tensors):
    out = fn(*tensors)
    return out if isinstance(out, tuple) else (out,)


def _same(a, b):
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def rows_round_alike(fn, probe, chunk, one_size=False):
    """Whether every probe row gets the same bits from ``fn`` at every position of every
    call size of chunks of ``chunk`` rows (``one_size``: see ``RowLayout``) as it gets alone
    at position 0 of the smallest."""
    sizes = call_sizes(chunk, one_size)
    n = probe[0].shape[0]
    alone = []
    for j in range(n):
        row = [torch.cat([t[j : j + 1], t.new_zeros(sizes[0] - 1, *t.shape[1:])]) for t in probe]
        alone.append([out[0] for out in _outputs(fn, row)])
    alone = [torch.stack(outs) for outs in zip(*alone)]  # each output's rows, as computed alone
    for size in sizes:
        for shift in (0, 1):  # each position meets two different rows
            index = (torch.arange(size, device=probe[0].device) + shift) % n
            outputs = _outputs(fn, [t[index] for t in probe])
            if not all(_same(out, ref[index]) for out, ref in zip(outputs, alone)):
                return False
    return True


def candidate_layouts(chunk, device_type="cpu"):
    """The layouts the check tries for chunks of ``chunk`` rows on ``device_type``, fastest
    first: whole chunks, then (for a narrow MLP's larger chunk) the device's usual chunk,
    then one call size for every call, from the smaller of them."""
    plain = sorted({chunk, min(chunk, ROW_CHUNK.get(device_type, chunk))}, reverse=True)
    sizes = [plain[-1]] + [ONE_SIZE_FALLBACK] * (plain[-1] > ONE_SIZE_FALLBACK)
    return [RowLayout(size) for size in plain] + [RowLayout(size, one_size=True) for size in sizes]


_VERDICTS = weakref.WeakKeyDictionary()


def callable_key(fn):
    """A key that names what ``fn`` computes: partials of one function share it."""
    return fn.func if isinstance(fn, partial) else fn


def checked_row_layout(fn, probe, chunk, owner, key=()):
    """The first of ``candidate_layouts(chunk)`` in which ``fn`` rounds rows alike; where
    none does, rows one at a time on the CPU.

    The verdict is kept per ``owner`` (the module whose kernels are in question) and
    configuration: ``key``, the probe's row shapes, dtype and device, torch's thread count
    and the chunk. Elsewhere than on the CPU, where no candidate passes, it warns and keeps
    the first: there rows one at a time would cost a kernel launch each.
    """
    if chunk is None or chunk == 1:
        return RowLayout(chunk)
    device = probe[0].device
    config = (
        key,
        tuple((tuple(t.shape[1:]), t.dtype) for t in probe),
        str(device),
        torch.get_num_threads(),
        chunk,
    )
    try:
        verdicts = _VERDICTS.setdefault(owner, {})
    except TypeError:  # not weakly referable: checked at every call
        verdicts = {}
    if config not in verdicts:
        with torch.no_grad():
            layouts = candidate_layouts(chunk, device.type)
            alike = next((lay for lay in layouts if rows_round_alike(fn, probe, *lay)), None)
        if alike is not None:
            verdicts[config] = alike
        elif device.type == "cpu":
            verdicts[config] = RowLayout(1)
        else:
            warnings.warn(
                f"On {device} this decoder rounds a row differently depending on its "
                "position in the batch, so codes match across batches only to rounding; "
                "encode on device='cpu' for bit-identical codes.",
                RowLayoutWarning,
                stacklevel=3,
            )
            verdicts[config] = RowLayout(chunk)
    return verdicts[config]


def invariant_rowwise(fn, *tensors, chunk, owner, probe, key=()):
    """``rowwise`` in the checked layout: each row's result is the row's alone."""
    layout = checked_row_layout(fn, probe, chunk, owner, key)
    return rowwise(fn, *tensors, chunk=layout.chunk, one_size=layout.one_size)
