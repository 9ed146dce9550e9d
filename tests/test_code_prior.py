"""``code_prior``: a standard Gaussian prior on the codes in every flow, training's included."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder, GradientFlowImputer
from gfe_sklearn.flow import encode
from gfe_sklearn.flow._losses import gaussian_code_penalty

from .test_persistence import _rewrite

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data / 16.0
    return X[:400], X[-100:]


def _fit(train, **params):
    settings = dict(n_components=8, hidden_layer_sizes=(32,), max_iter=3, random_state=0)
    return GradientFlowEncoder(**{**settings, **params}, device="cpu").fit(train)


@pytest.fixture(scope="module")
def fitted(digits):
    return _fit(digits[0], code_prior=0.1)


def _gradients(est, X, codes):
    """The gradient of each sample's mean loss, and of its prior term, at ``codes``."""
    z = torch.tensor(codes, dtype=torch.float32, requires_grad=True)
    target = torch.tensor(X, dtype=torch.float32)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        est.decoder_(z), target, reduction="none"
    ).mean(dim=1)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    prior = est.code_prior * z.detach() / X.shape[1]
    return grad.numpy(), prior.numpy()


def test_transform_finds_the_map_codes(digits, fitted):
    X = digits[1]
    est = pickle.loads(pickle.dumps(fitted)).set_params(solver="lbfgs", stop_tol=1e-7)
    grad, prior = _gradients(est, X, est.transform(X))
    # At a MAP code the loss's pull balances the prior's; at the prior's scale neither is 0.
    scale = np.abs(prior).max()
    assert scale > 1e-4
    assert np.abs(grad + prior).max() < 0.01 * scale
    assert np.abs(grad).max() > 0.5 * scale


def test_transform_equals_the_flow_with_the_prior_as_its_penalty(digits, fitted):
    X = torch.tensor(digits[1], dtype=torch.float32)
    zeros = torch.zeros(fitted.n_components)
    expected = encode(
        fitted.decoder_,
        X,
        fitted.n_components,
        solver="lbfgs",
        code_penalty=gaussian_code_penalty(zeros, zeros + 1, fitted.code_prior),
        stop_tol=fitted.stop_tol,
    ).z
    np.testing.assert_allclose(fitted.transform(digits[1]), expected.numpy(), atol=1e-5)


def test_the_prior_shortens_the_codes(digits, fitted):
    plain = _fit(digits[0], code_prior=0.0)
    norms = [np.linalg.norm(m.transform(digits[1]), axis=1).mean() for m in (plain, fitted)]
    assert norms[1] < 0.5 * norms[0]


def test_training_flows_see_the_prior(digits, monkeypatch):
    from gfe_sklearn import _gradient_flow

    penalties = []
    real = _gradient_flow.encode

    def spy(*args, **kwargs):
        penalties.append(kwargs.get("code_penalty"))
        return real(*args, **kwargs)

    monkeypatch.setattr(_gradient_flow, "encode", spy)
    est = _fit(digits[0][:64], code_prior=0.3, max_iter=1, batch_size=32)
    assert len(penalties) == 2 and all(p is not None for p in penalties)
    z = torch.ones(1, est.n_components)
    target = torch.zeros(1, digits[0].shape[1])
    expected = 0.3 * 0.5 * est.n_components / digits[0].shape[1]
    assert penalties[0](z, target).item() == pytest.approx(expected)


def test_score_reports_the_reconstruction_loss_alone(digits, fitted):
    X = digits[1]
    codes = torch.tensor(fitted.transform(X), dtype=torch.float32)
    with torch.no_grad():
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            fitted.decoder_(codes), torch.tensor(X, dtype=torch.float32)
        )
    assert fitted.score(X) == pytest.approx(-loss.item(), rel=1e-5)


def test_zero_is_the_papers_flow(digits):
    est = _fit(digits[0], code_prior=0.0)
    assert est._with_code_prior(None, torch.zeros(1, 64)) is None


def test_a_model_saved_before_code_prior_loads_without_a_prior(digits, tmp_path):
    est = _fit(digits[0], code_prior=0.0)
    path = tmp_path / "model.safetensors"
    est.save(path)
    _rewrite(path, edit_content=lambda content: content["params"].pop("code_prior"))
    loaded = GradientFlowEncoder.load(path)
    assert loaded.code_prior == 0.0
    np.testing.assert_array_equal(loaded.transform(digits[1]), est.transform(digits[1]))
    del est.code_prior
    assert pickle.loads(pickle.dumps(est)).code_prior == 0.0


def test_the_prior_survives_save_and_load(digits, fitted, tmp_path):
    fitted.save(tmp_path / "model.safetensors")
    loaded = GradientFlowEncoder.load(tmp_path / "model.safetensors")
    assert loaded.code_prior == fitted.code_prior
    np.testing.assert_array_equal(loaded.transform(digits[1]), fitted.transform(digits[1]))


def test_a_negative_weight_is_refused(digits):
    with pytest.raises(ValueError, match="code_prior"):
        _fit(digits[0][:20], code_prior=-1.0)


def test_from_autoencoder_encodes_without_a_prior_unless_asked(digits):
    ae = AutoEncoderBaseline(
        n_components=8, hidden_layer_sizes=(32,), max_iter=1, random_state=0, device="cpu"
    ).fit(digits[0])
    assert GradientFlowEncoder.from_autoencoder(ae).code_prior == 0.0
    assert GradientFlowEncoder.from_autoencoder(ae, code_prior=0.2).code_prior == 0.2


def test_the_imputers_prior_adds_to_the_encoders(digits):
    X = digits[0].copy()
    X[np.random.default_rng(0).random(X.shape) < 0.3] = np.nan
    encoder = GradientFlowEncoder(
        n_components=8, hidden_layer_sizes=(32,), max_iter=2, random_state=0, code_prior=0.1
    )
    imputer = GradientFlowImputer(encoder=encoder, code_prior=0.3, random_state=0).fit(X)
    fitted = imputer.encoder_
    mean, scale = imputer.code_mean_, imputer.code_scale_
    z = torch.tensor(np.random.default_rng(1).normal(size=(2, 8)), dtype=torch.float32)
    target = torch.tensor(X[:2], dtype=torch.float32)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    extra = gaussian_code_penalty(as_tensor(mean), as_tensor(scale), 0.3)
    zeros = torch.zeros(8)
    both = fitted._with_code_prior(extra, target)
    expected = extra(z, target) + gaussian_code_penalty(zeros, zeros + 1, 0.1)(z, target)
    torch.testing.assert_close(both(z, target), expected)
    assert np.isfinite(imputer.transform(X)).all()
