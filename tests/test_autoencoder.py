"""AutoEncoderBaseline: the mirror encoder, user modules, and swapping with GFE."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import DataConversionWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.validation import check_is_fitted

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


def _widths(module):
    return [(m.in_features, m.out_features) for m in module if isinstance(m, torch.nn.Linear)]


def test_encoder_mirrors_the_decoder(X, small):
    ae = AutoEncoderBaseline(**{**small, "hidden_layer_sizes": (4, 8)}).fit(X)
    assert _widths(ae.decoder_) == [(2, 4), (4, 8), (8, 16)]
    assert _widths(ae.encoder_) == [(16, 8), (8, 4), (4, 2)]
    assert isinstance(ae.encoder_[1], torch.nn.ELU)


def test_decoder_starts_like_a_gfe_decoder_with_the_same_seed(small):
    architecture = {
        "n_components": small["n_components"],
        "hidden_layer_sizes": (8,),
        "activation": "elu",
    }
    args = (16, architecture, torch.Generator().manual_seed(0), torch.float64, "cpu")
    gfe = GradientFlowEncoder(**small)._build_modules(*args)["decoder_"]
    args = (16, architecture, torch.Generator().manual_seed(0), torch.float64, "cpu")
    ae = AutoEncoderBaseline(**small)._build_modules(*args)["decoder_"]
    assert all(torch.equal(p, q) for p, q in zip(gfe.parameters(), ae.parameters()))


def test_training_lowers_the_loss(X, small):
    ae = AutoEncoderBaseline(**{**small, "max_iter": 20, "learning_rate": 1e-2}).fit(X)
    assert ae.loss_curve_[-1] < ae.loss_curve_[0]
    assert ae.score(X) == pytest.approx(-ae.loss_curve_[-1], abs=0.05)


class _ImageEncoder(torch.nn.Module):
    """Images (n, 1, 4, 4) to codes (n, 2)."""

    def __init__(self, n_components=2):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, kernel_size=2, stride=2)
        self.fc = torch.nn.Linear(16, n_components)

    def forward(self, x):
        return self.fc(torch.nn.functional.elu(self.conv(x)).flatten(1))


class _ImageDecoder(torch.nn.Module):
    """Codes (n, 2) to images (n, 1, 4, 4)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 16)

    def forward(self, z):
        return self.fc(z).reshape(-1, 1, 4, 4)


def test_user_encoder_and_decoder_for_images(X, small):
    encoder, decoder = _ImageEncoder(), _ImageDecoder()
    ae = AutoEncoderBaseline(**small, encoder=encoder, decoder=decoder).fit(X)
    assert isinstance(ae.encoder_, _ImageEncoder) and ae.encoder_ is not encoder
    assert ae.transform(X).shape == (60, 2)
    assert ae.inverse_transform(ae.transform(X)).shape == (60, 16)


def test_user_decoder_alone_gets_a_mirror_encoder_on_flat_rows(X, small):
    ae = AutoEncoderBaseline(**small, decoder=_ImageDecoder()).fit(X)
    assert _widths(ae.encoder_) == [(16, 8), (8, 2)]
    assert ae.transform(X).shape == (60, 2)


def test_encoder_with_the_wrong_output_is_refused(X, small):
    ae = AutoEncoderBaseline(
        **small, encoder=_ImageEncoder(n_components=3), decoder=_ImageDecoder()
    )
    with pytest.raises(
        ValueError,
        match=r"to shape \(1, 3\); it must return \(n, "
        r"n_components=2\)",
    ):
        ae.fit(X)
    with pytest.raises(ValueError):
        check_is_fitted(ae)
    flat = AutoEncoderBaseline(**small, encoder=torch.nn.Linear(16, 2), decoder=_ImageDecoder())
    with pytest.raises(ValueError, match=r"cannot encode a sample of shape \(1, 1, 4, 4\)"):
        flat.fit(X)


def test_transform_needs_no_range_but_the_loss_does(X, small):
    ae = AutoEncoderBaseline(**small).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConversionWarning)
        # The encoder alone has no target, so nothing is clipped.
        assert not np.allclose(ae.transform(X * 3), ae.transform(np.clip(X * 3, 0, 1)))
    with pytest.warns(DataConversionWarning, match="clipped"):
        ae.score(X * 3)
    with pytest.warns(DataConversionWarning, match="clipped"):
        GradientFlowEncoder(**small).fit(X).transform(X * 3)  # the flow's target is X


@pytest.mark.parametrize("cls", [GradientFlowEncoder, AutoEncoderBaseline])
def test_swapping_the_encoder_is_one_line(cls, Xy, small):
    X, y = Xy
    pipe = Pipeline(
        [("scale", MinMaxScaler(clip=True)), ("enc", cls(**small)), ("clf", LogisticRegression())]
    )
    assert pipe.fit(X, y).predict(X).shape == (60,)
    assert np.isfinite(pipe.named_steps["enc"].score(X))
