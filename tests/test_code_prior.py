"""``code_prior``: a Gaussian prior on the codes in every flow, training's included, whose
variance follows the training codes down to the standard normal's."""

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
    # From z = 0 the flows run to the MAP codes; the default's refinement of an encoder's
    # guess stops after 8 steps (tests/test_code_init.py).
    settings = dict(
        n_components=8, hidden_layer_sizes=(32,), max_iter=3, random_state=0, code_init="zeros"
    )
    return GradientFlowEncoder(**{**settings, **params}, device="cpu").fit(train)


@pytest.fixture(scope="module")
def fitted(digits):
    return _fit(digits[0], code_prior=0.1)


def _strength(est):
    """The prior's weight on ``||z||^2 / 2``: ``code_prior`` over ``max(1, code_mean_square_)``."""
    return est.code_prior / max(1.0, est.code_mean_square_)


def _gradients(est, X, codes):
    """The gradient of each sample's mean loss, and of its prior term, at ``codes``."""
    z = torch.tensor(codes, dtype=torch.float32, requires_grad=True)
    target = torch.tensor(X, dtype=torch.float32)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        est.decoder_(z), target, reduction="none"
    ).mean(dim=1)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    prior = _strength(est) * z.detach() / X.shape[1]
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
        code_penalty=gaussian_code_penalty(zeros, zeros + 1, _strength(fitted)),
        stop_tol=fitted.stop_tol,
    ).z
    np.testing.assert_allclose(fitted.transform(digits[1]), expected.numpy(), atol=1e-5)


def test_the_prior_shortens_the_codes(digits, fitted):
    plain = _fit(digits[0], code_prior=0.0)
    norms = [np.linalg.norm(m.transform(digits[1]), axis=1).mean() for m in (plain, fitted)]
    # Sized by the codes, the prior draws them in step by step as the decoder learns: by
    # 0.59 after these 3 epochs (0.5 for the standard prior).
    assert norms[1] < 0.7 * norms[0]


def test_training_flows_see_the_prior_sized_by_the_codes_before_them(digits, monkeypatch):
    from gfe_sklearn import _gradient_flow

    calls = []
    real = _gradient_flow.encode

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((kwargs.get("code_penalty"), result.z.detach().double()))
        return result

    monkeypatch.setattr(_gradient_flow, "encode", spy)
    est = _fit(digits[0][:96], code_prior=0.3, max_iter=1, batch_size=32)
    assert len(calls) == 3
    # The first batch has no codes to size the prior by; each later one is sized by the
    # running mean square of the codes before it.
    assert calls[0][0] is None
    spread = float((calls[0][1] ** 2).mean())
    z = torch.ones(1, est.n_components)
    target = torch.zeros(1, digits[0].shape[1])
    for penalty, codes in calls[1:]:
        expected = 0.3 / max(1.0, spread) * 0.5 * est.n_components / digits[0].shape[1]
        assert penalty(z, target).item() == pytest.approx(expected, rel=1e-6)
        spread += 0.1 * (float((codes**2).mean()) - spread)
    assert est.code_mean_square_ == pytest.approx(spread, rel=1e-9)


def test_a_young_decoder_learns_as_fast_as_without_the_prior(digits, monkeypatch):
    # Codes of a young decoder lie far from 0; a prior of the standard normal's width holds
    # them back, and the decoder learns less from its first epochs.
    X, held_out = digits
    short = dict(n_components=10, hidden_layer_sizes=(32,), max_iter=3)
    plain, sized = (-_fit(X, **short, code_prior=w).score(held_out) for w in (0.0, 0.1))
    from gfe_sklearn._gradient_flow import GradientFlowEncoder as Encoder

    monkeypatch.setattr(Encoder, "_prior_strength", lambda self, training=False: 0.1)
    standard = -_fit(X, **short, code_prior=0.1).score(held_out)
    assert sized < plain * 1.02
    assert standard > plain * 1.1


def test_the_prior_is_the_standard_normal_once_the_codes_are_within_its_scale(digits, fitted):
    X = torch.tensor(digits[1], dtype=torch.float32)
    est = pickle.loads(pickle.dumps(fitted))
    est.code_mean_square_ = 0.5
    zeros = torch.zeros(est.n_components)
    expected = encode(
        est.decoder_,
        X,
        est.n_components,
        solver="lbfgs",
        code_penalty=gaussian_code_penalty(zeros, zeros + 1, est.code_prior),
        stop_tol=est.stop_tol,
    ).z
    np.testing.assert_array_equal(est.transform(digits[1]), expected.numpy())


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
    assert loaded.code_mean_square_ == fitted.code_mean_square_ > 1
    np.testing.assert_array_equal(loaded.transform(digits[1]), fitted.transform(digits[1]))


def test_a_file_without_the_codes_spread_encodes_with_the_standard_prior(digits, fitted, tmp_path):
    path = tmp_path / "model.safetensors"
    fitted.save(path)
    _rewrite(path, edit_content=lambda content: content["fitted"].pop("code_mean_square_"))
    loaded = GradientFlowEncoder.load(path)
    assert loaded.code_mean_square_ is None
    standard = pickle.loads(pickle.dumps(fitted))
    standard.code_mean_square_ = 1.0
    np.testing.assert_array_equal(loaded.transform(digits[1]), standard.transform(digits[1]))


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
    standard = gaussian_code_penalty(zeros, zeros + 1, _strength(fitted))
    expected = extra(z, target) + standard(z, target)
    torch.testing.assert_close(both(z, target), expected)
    assert np.isfinite(imputer.transform(X)).all()
