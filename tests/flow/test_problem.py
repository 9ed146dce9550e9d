"""The decoder-evaluation layout that keeps codes bit-identical across batches."""

import pytest
import torch

from gfe_sklearn.flow._problem import MIN_ROW_CHUNK, padded_rows

from .problems import mlp_decoder


def papers_sized_decoder():
    widths = (20, 150, 300, 600, 784)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ELU()]
    return torch.nn.Sequential(*layers[:-1])


@pytest.mark.parametrize("n, expected", [(1, 16), (16, 16), (17, 32), (33, 64), (64, 64)])
def test_partial_chunks_are_padded_to_a_power_of_two(n, expected):
    assert padded_rows(n, 64) == expected
    assert padded_rows(3, 8) == 8
    assert MIN_ROW_CHUNK == 16


@pytest.mark.parametrize(
    "make", [papers_sized_decoder, lambda: mlp_decoder(3, 12, hidden=20, dtype=torch.float32)]
)
def test_the_padded_row_counts_round_every_row_alike(make):
    """The assumption behind bit-identical codes: on this platform's BLAS, the rows of a
    16-, 32-, 64- and 128-row call come out bit for bit the same, outputs and input gradients."""
    decoder = make()
    z = torch.randn(128, decoder[0].in_features, generator=torch.Generator().manual_seed(0))
    reference = None
    for rows in (16, 32, 64, 128):
        zr = z[:rows].clone().requires_grad_(True)
        out = decoder(zr)
        (grad,) = torch.autograd.grad((out * out).sum(), zr)
        if reference is None:
            reference = out[:16].detach(), grad[:16]
        assert torch.equal(out[:16].detach(), reference[0]), rows
        assert torch.equal(grad[:16], reference[1]), rows
