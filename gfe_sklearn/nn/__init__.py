"""Plain-PyTorch network builders: the papers' MLP decoder and its mirror-image encoder."""

from ._mlp import ACTIVATIONS, make_decoder, make_encoder, make_mlp

__all__ = ["ACTIVATIONS", "make_decoder", "make_encoder", "make_mlp"]
