import torch

from gfe_sklearn.flow import LOSSES


def test_bce_is_the_mean_binary_cross_entropy_per_sample():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 1.0], [0.5, 0.25]], dtype=torch.float64)
    p = torch.sigmoid(logits)
    expected = -(target * p.log() + (1 - target) * (1 - p).log()).mean(1)
    torch.testing.assert_close(LOSSES["bce"](logits, target), expected)


def test_bce_is_finite_for_extreme_logits():
    logits = torch.tensor([[-1e4, 1e4, 80.0, -80.0]])
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    value = LOSSES["bce"](logits, target)
    assert torch.isfinite(value).all()
    torch.testing.assert_close(value, torch.tensor([(1e4 + 1e4) / 4]), rtol=1e-5, atol=1e-3)


def test_losses_average_over_all_non_batch_dimensions():
    out = torch.randn(3, 2, 4, 4)
    target = torch.rand(3, 2, 4, 4)
    for loss in LOSSES.values():
        flat = loss(out.reshape(3, -1), target.reshape(3, -1))
        torch.testing.assert_close(loss(out, target), flat)
        assert loss(out, target).shape == (3,)


def test_to_data_maps_outputs_into_the_data_space():
    out = torch.tensor([[-50.0, 0.0, 50.0]])
    torch.testing.assert_close(LOSSES["bce"].to_data(out), torch.sigmoid(out))
    torch.testing.assert_close(LOSSES["mse"].to_data(out), out)
