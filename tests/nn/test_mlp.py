import math

import pytest
import torch
from torch import nn

from gfe_sklearn.nn import ACTIVATIONS, make_decoder, make_encoder, make_mlp


def _linears(module):
    return [layer for layer in module if isinstance(layer, nn.Linear)]


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_papers_decoder_and_mirror_encoder():
    decoder = make_decoder(20, (150, 300, 600), 784, generator=_seeded())
    encoder = make_encoder(20, (150, 300, 600), 784, generator=_seeded())
    widths = [(layer.in_features, layer.out_features) for layer in _linears(decoder)]
    assert widths == [(20, 150), (150, 300), (300, 600), (600, 784)]
    mirror = [(layer.in_features, layer.out_features) for layer in _linears(encoder)]
    assert mirror == [(o, i) for i, o in reversed(widths)]
    assert decoder(torch.zeros(3, 20)).shape == (3, 784)
    assert encoder(torch.zeros(3, 784)).shape == (3, 20)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_activation_between_layers_only(activation):
    mlp = make_mlp([2, 5, 7, 3], activation, generator=_seeded())
    kinds = [type(layer) for layer in mlp]
    act = ACTIVATIONS[activation]
    assert kinds == [nn.Linear, act, nn.Linear, act, nn.Linear]


def test_default_activation_is_elu_and_no_hidden_layer_is_one_linear():
    assert isinstance(make_decoder(2, (4,), 3, generator=_seeded())[1], nn.ELU)
    single = make_decoder(2, (), 3, generator=_seeded())
    assert [type(layer) for layer in single] == [nn.Linear]


def test_generator_makes_weights_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = make_decoder(3, (16, 8), 5, generator=_seeded(1))
    b = make_decoder(3, (16, 8), 5, generator=_seeded(1))
    c = make_decoder(3, (16, 8), 5, generator=_seeded(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)


def test_initialisation_follows_torch_linear_bounds():
    mlp = make_mlp([50, 400], generator=_seeded())
    bound = 1 / math.sqrt(50)
    weight, bias = mlp[0].weight, mlp[0].bias
    assert weight.abs().max() <= bound and bias.abs().max() <= bound
    assert weight.abs().max() > 0.9 * bound  # uniform over the whole interval
    assert abs(weight.mean().item()) < 0.05 * bound


def test_dtype_and_device():
    mlp = make_encoder(2, (4,), 6, generator=_seeded(), dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in mlp.parameters())


def test_same_weights_whatever_the_dtype():
    low = make_decoder(2, (4,), 3, generator=_seeded(), dtype=torch.float32)
    high = make_decoder(2, (4,), 3, generator=_seeded(), dtype=torch.float64)
    for p32, p64 in zip(low.parameters(), high.parameters()):
        torch.testing.assert_close(p32.double(), p64, rtol=0, atol=1e-7)


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"activation='swish' is not valid; choose one of"):
        make_mlp([2, 3], "swish")
    with pytest.raises(ValueError, match="positive integers"):
        make_decoder(2, (0,), 3)
    with pytest.raises(ValueError, match="positive integers"):
        make_decoder(2, (2.5,), 3)
    with pytest.raises(ValueError, match="at least an input and an output"):
        make_mlp([4])
