"""Losses of a batch with no rows: what a solver's bookkeeping may hand them."""

import pytest
import torch

from gfe_sklearn.flow import LOSSES


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_batch_of_no_rows_has_no_losses(name):
    empty = torch.zeros(0, 3, 4, dtype=torch.float64)
    assert LOSSES[name](empty, empty).shape == (0,)
