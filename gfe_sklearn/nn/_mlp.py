"""Fully connected decoders and their mirror-image encoders (plain PyTorch, no scikit-learn).

The papers' MNIST decoder widens from the latent code to the image in four linear layers,
``20 -> 150 -> 300 -> 600 -> 784``, with ELU between them; the autoencoder's encoder is the
exact mirror, ``784 -> 600 -> 300 -> 150 -> 20``. Neither network ends in an activation: for
``loss='bce'`` the decoder emits logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def _check_widths(widths):
    for width in widths:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(
                f"Layer widths must be positive integers; got {width!r} in {tuple(widths)}."
            )


def make_mlp(
    widths: Sequence[int],
    activation: str = "elu",
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> nn.Sequential:
    """A ``nn.Sequential`` of linear layers through ``widths[0]``, ..., ``widths[-1]`` units.

    The activation sits between consecutive linear layers, never after the last one.
    Weights and biases are drawn from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (PyTorch's
    default for ``nn.Linear``) with ``generator``, in float64 on the CPU and then cast, so
    the same generator state gives the same network (up to rounding) in every dtype and on
    every device, and torch's global generator is never used.

    Parameters
    ----------
    widths : sequence of int
        At least two widths: the input, any hidden layers, the output.
    activation : str
        A key of ``ACTIVATIONS``.
    generator : torch.Generator, optional
        A CPU generator; a fresh unseeded one when omitted.
    dtype : torch.dtype
    device : str or torch.device
        ``'meta'`` gives the network's shapes only: no memory, no draws from ``generator``.

    Returns
    -------
    torch.nn.Sequential
    """
    widths = [int(w) if hasattr(w, "__index__") and not isinstance(w, bool) else w for w in widths]
    _check_widths(widths)
    if len(widths) < 2:
        raise ValueError(f"An MLP needs at least an input and an output width; got {widths}.")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation={activation!r} is not valid; choose one of {sorted(ACTIVATIONS)}."
        )
    if torch.device(device).type == "meta":
        return _meta_mlp(widths, activation, dtype)
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i:
            layers.append(ACTIVATIONS[activation]())
        # skip_init: the default initialisation would draw from torch's global generator.
        linear = torch.nn.utils.skip_init(nn.Linear, n_in, n_out, dtype=torch.float64)
        bound = 1.0 / math.sqrt(n_in)
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.uniform_(-bound, bound, generator=generator)
        layers.append(linear)
    return nn.Sequential(*layers).to(device=device, dtype=dtype)


def _meta_mlp(widths, activation, dtype):
    """The network's shapes without its numbers: loading checks a file's tensors against them
    before allocating anything, and the meta device allocates nothing."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(n_in, n_out, device="meta", dtype=dtype))
    return nn.Sequential(*layers)


def make_decoder(
    n_components: int,
    hidden_layer_sizes: Sequence[int],
    n_features: int,
    activation: str = "elu",
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> nn.Sequential:
    """Decoder from ``n_components`` through ``hidden_layer_sizes`` to ``n_features`` units.

    Parameters
    ----------
    n_components : int
        Width of the latent code.
    hidden_layer_sizes : sequence of int
        Hidden widths from the latent side to the data side, e.g. ``(150, 300, 600)``.
    n_features : int
        Width of the output (a flattened sample).
    activation, generator, dtype, device
        See ``make_mlp``.

    Returns
    -------
    torch.nn.Sequential

    Examples
    --------
    >>> import torch
    >>> from gfe_sklearn.nn import make_decoder
    >>> decoder = make_decoder(20, (150, 300, 600), 784, generator=torch.Generator().manual_seed(0))
    >>> [layer.out_features for layer in decoder if isinstance(layer, torch.nn.Linear)]
    [150, 300, 600, 784]
    """
    return make_mlp(
        [n_components, *hidden_layer_sizes, n_features],
        activation,
        generator=generator,
        dtype=dtype,
        device=device,
    )


def make_encoder(
    n_components: int,
    hidden_layer_sizes: Sequence[int],
    n_features: int,
    activation: str = "elu",
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> nn.Sequential:
    """Encoder that mirrors ``make_decoder``: ``n_features -> ...reversed widths -> n_components``.

    Takes the decoder's arguments unchanged, so ``make_encoder(20, (150, 300, 600), 784)`` is
    ``784 -> 600 -> 300 -> 150 -> 20``.

    Examples
    --------
    >>> import torch
    >>> from gfe_sklearn.nn import make_encoder
    >>> encoder = make_encoder(20, (150, 300, 600), 784, generator=torch.Generator().manual_seed(0))
    >>> [layer.out_features for layer in encoder if isinstance(layer, torch.nn.Linear)]
    [600, 300, 150, 20]
    """
    return make_mlp(
        [n_features, *reversed(tuple(hidden_layer_sizes)), n_components],
        activation,
        generator=generator,
        dtype=dtype,
        device=device,
    )
