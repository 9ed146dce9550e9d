"""loss='auto', the default: bce where every observed training entry lies in [0, 1], mse
otherwise, chosen at a model's first fit and recorded in ``loss_``."""

import io
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import get_tags

from gfe_sklearn import (
    AutoEncoderBaseline,
    GradientFlowEncoder,
    GradientFlowImputer,
    trust_legacy_pickles,
)
from gfe_sklearn._model_file import ModelFileError

from .test_persistence import _rewrite

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ESTIMATORS = [GradientFlowEncoder, AutoEncoderBaseline]


def _weights(est):
    return [t.clone() for m in est._modules() for t in m.state_dict().values()]


def _same_weights(first, second):
    return all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


# -- the choice --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_auto_is_the_default_and_chooses_bce_on_data_in_the_unit_interval(cls, X, small):
    assert cls().loss == "auto"
    edges = X.copy()
    edges[0, :2] = [0.0, 1.0]  # the interval is closed
    assert cls(**small).fit(edges).loss_ == "bce"
    # Rounding in scalers (MinMaxScaler gives 1.0000000000000002) is still in range.
    edges[1, 0] = 1.0 + 1e-12
    assert cls(**small).fit(edges).loss_ == "bce"
    assert cls(**small).fit(sp.csr_matrix(X)).loss_ == "bce"


@pytest.mark.parametrize("value", [-0.1, 1.5])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_auto_chooses_mse_where_one_entry_lies_outside(cls, X, small, value):
    X = X.copy()
    X[7, 3] = value
    est = cls(**small).fit(X)
    assert est.loss == "auto" and est.loss_ == "mse"
    assert est._fitted_architecture["loss"] == "mse"  # what the decoder was built for
    assert est.transform(X).shape == (60, 2)
    assert np.isfinite(est.score(X))
    # A sparse X is decided on its stored values.
    assert cls(**small).fit(sp.csr_matrix(X)).loss_ == "mse"


def test_missing_entries_do_not_decide(X, small):
    X = X.copy()
    X[::4, 1] = np.nan
    assert GradientFlowEncoder(**small, allow_nan=True).fit(X).loss_ == "bce"
    X[3, 5] = -0.1  # an observed entry outside decides
    assert GradientFlowEncoder(**small, allow_nan=True).fit(X).loss_ == "mse"


@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_an_explicit_loss_is_loss_(cls, X, small, loss):
    assert cls(**small, loss=loss).fit(X).loss_ == loss


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_auto_trains_as_the_loss_it_chose_bit_for_bit(cls, X, small):
    for data, loss in ((X, "bce"), (X - 0.5, "mse")):
        auto, explicit = cls(**small).fit(data), cls(**small, loss=loss).fit(data)
        assert auto.loss_ == loss
        assert _same_weights(_weights(auto), _weights(explicit))
        assert auto.loss_curve_ == explicit.loss_curve_
        codes = auto.transform(data)
        np.testing.assert_array_equal(codes, explicit.transform(data))
        np.testing.assert_array_equal(
            auto.inverse_transform(codes), explicit.inverse_transform(codes)
        )
        assert auto.score(data) == explicit.score(data)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_inference_reads_loss_not_the_parameter(cls, X, small):
    # A bce model's decoder emits logits: inverse_transform maps them into (0, 1).
    est = cls(**small).fit(X)
    decoded = est.inverse_transform(est.transform(X))
    assert decoded.min() > 0 and decoded.max() < 1
    mse = cls(**small).fit(X * 4 - 2)
    decoded = mse.inverse_transform(mse.transform(X * 4 - 2))
    assert decoded.min() < 0  # identity output: values outside (0, 1) are reconstructed


# -- continued training keeps the choice --------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_warm_start_keeps_the_first_fits_choice(cls, X, small):
    est = cls(**small).fit(X - 0.5)
    assert est.loss_ == "mse"
    # Data in [0, 1] would choose bce for a new model; the warm-started one stays mse.
    est.set_params(warm_start=True).fit(X)
    assert est.loss_ == "mse" and est.n_iter_ == 4
    est.set_params(warm_start=False).fit(X)  # a new model chooses again
    assert est.loss_ == "bce" and est.n_iter_ == 2


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_partial_fit_chooses_at_the_first_call_and_keeps_it(cls, X, small):
    est = cls(**small).partial_fit(X - 0.5)
    assert est.loss_ == "mse"
    est.partial_fit(X)
    assert est.loss_ == "mse" and est.n_iter_ == 2
    assert cls(**small).partial_fit(X).partial_fit(X * 0.5).loss_ == "bce"


@pytest.mark.parametrize("continue_with", ["partial_fit", "warm_start"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_bce_choice_refuses_later_training_data_outside_with_the_fix(
    cls, X, small, continue_with
):
    est = cls(**small).fit(X)
    assert est.loss_ == "bce"
    before, n_iter = _weights(est), est.n_iter_
    est.set_params(warm_start=continue_with == "warm_start")
    train = est.partial_fit if continue_with == "partial_fit" else est.fit
    with pytest.raises(
        ValueError,
        match=r"Negative values .*loss='auto' chose 'bce' at this model's first fit.*"
        r"MinMaxScaler\(clip=True\).*warm_start=False.*loss='mse'",
    ):
        train(X - 0.5)
    assert _same_weights(_weights(est), before) and est.n_iter_ == n_iter
    assert est.loss_ == "bce"


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_bce_choice_clips_new_data_outside_with_a_warning(cls, X, small):
    est = cls(**small).fit(X)
    bad = X.copy()
    bad[0, 0] = 1.5
    with pytest.warns(DataConversionWarning, match=r"loss='auto', which chose 'bce'.*clipped"):
        scores = est.score_samples(bad)
    np.testing.assert_array_equal(scores, est.score_samples(np.clip(bad, 0, 1)))
    mse = cls(**small).fit(X - 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConversionWarning)
        mse.score_samples(bad)  # mse takes any data: nothing clipped


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_an_explicit_loss_warm_starts_an_auto_model_of_that_loss(cls, X, small):
    est = cls(**small).fit(X - 0.5)
    est.set_params(warm_start=True, loss="mse").fit(X - 0.5)
    assert est.loss_ == "mse"
    with pytest.raises(ValueError, match=r"loss='bce' differs from the fitted model's loss='mse'"):
        est.set_params(loss="bce").fit(X)


# -- files, pickles, from_autoencoder ---------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_loss_survives_save_load_and_pickling(cls, X, small, tmp_path):
    est = cls(**small).fit(X - 0.5)
    est.save(tmp_path / "model.safetensors")
    copies = [cls.load(tmp_path / "model.safetensors"), pickle.loads(pickle.dumps(est))]
    for copy in copies:
        assert copy.loss == "auto" and copy.loss_ == "mse"
        np.testing.assert_array_equal(copy.transform(X - 0.5), est.transform(X - 0.5))
        # The loaded model continues with its loss: data in [0, 1] do not turn it to bce.
        copy.partial_fit(X)
        assert copy.loss_ == "mse"


def _saved(tmp_path, small, X, **params):
    path = tmp_path / "model.safetensors"
    GradientFlowEncoder(**small, **params).fit(X).save(path)
    return path


def test_a_file_from_before_loss_was_recorded_loads_with_its_architectures_loss(X, small, tmp_path):
    # Fitted with bce, then set_params(loss='mse') before saving: the model is still bce.
    path = tmp_path / "model.safetensors"
    est = GradientFlowEncoder(**small, loss="bce").fit(X).set_params(loss="mse")
    est.save(path)
    _rewrite(path, edit_content=lambda c: c["fitted"].pop("loss_"))
    loaded = GradientFlowEncoder.load(path)
    assert loaded.loss == "mse" and loaded.loss_ == "bce"
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["fitted"].pop("loss_"), r"loss='auto' but not the loss it chose"),
        (lambda c: c["fitted"].update(loss_="auto"), r"fitted attribute loss_ is invalid"),
        (lambda c: c["fitted"].update(loss_="hinge"), r"fitted attribute loss_ is invalid"),
        (lambda c: c["fitted"].update(loss_=None), r"fitted attribute loss_ is invalid"),
        (lambda c: c["fitted"].update(loss_="mse"), r"loss_='mse' differs from the architecture"),
    ],
    ids=["missing", "auto", "unknown", "null", "not the architecture's"],
)
def test_a_file_without_a_valid_loss_for_auto_is_refused(X, small, tmp_path, edit, match):
    path = _saved(tmp_path, small, X)
    GradientFlowEncoder.load(path)  # as saved, it loads
    _rewrite(path, edit_content=edit)
    with pytest.raises(ModelFileError, match=match):
        GradientFlowEncoder.load(path)


def _legacy_state(est, drop):
    """A pickle of gfe-sklearn 0.2.0's kind (the __dict__, torch objects in a blob), without
    the attributes ``drop`` that it did not have."""
    state = {k: v for k, v in est.__dict__.items() if k not in ("decoder_", "optimizer_", *drop)}
    buffer = io.BytesIO()
    torch.save({"decoder_": est.decoder_, "optimizer_": est.optimizer_}, buffer)
    state["_torch_blob"] = buffer.getvalue()
    return state


@pytest.mark.parametrize(
    "drop", [("loss_",), ("loss_", "_fitted_architecture")], ids=["no loss_", "no architecture"]
)
def test_an_old_pickle_gets_loss_from_its_loss(X, small, drop):
    est = GradientFlowEncoder(**small, loss="mse").fit(X)
    old = GradientFlowEncoder.__new__(GradientFlowEncoder)
    with trust_legacy_pickles():
        old.__setstate__(_legacy_state(est, drop))
    assert old.loss_ == "mse"
    np.testing.assert_array_equal(old.transform(X), est.transform(X))


def test_from_autoencoder_takes_over_the_choice(X, small):
    ae = AutoEncoderBaseline(**small).fit(X - 0.5)
    mixed = GradientFlowEncoder.from_autoencoder(ae)
    assert mixed.loss == "auto" and mixed.loss_ == "mse"
    decoded = mixed.inverse_transform(mixed.transform(X - 0.5))
    np.testing.assert_array_equal(decoded, ae.inverse_transform(mixed.transform(X - 0.5)))
    assert decoded.min() < 0  # read as mse (identity), not as bce logits


# -- tags and the imputer ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_auto_takes_any_data_by_its_tags(cls):
    assert not get_tags(cls()).input_tags.positive_only
    assert get_tags(cls(loss="bce")).input_tags.positive_only
    assert not get_tags(GradientFlowImputer()).input_tags.positive_only


def _holes(X, seed=0):
    X = X.copy()
    X[np.random.RandomState(seed).uniform(size=X.shape) < 0.2] = np.nan
    return X


def test_the_default_imputer_fills_a_table_with_negative_values(X, small):
    table = _holes(X * 10 - 5)
    imputer = GradientFlowImputer(random_state=0)
    imputer.set_params(encoder=GradientFlowEncoder(**small))
    filled = imputer.fit_transform(table)
    assert imputer.encoder_.loss_ == "mse"
    observed = ~np.isnan(table)
    np.testing.assert_array_equal(filled[observed], table[observed])
    assert np.isfinite(filled).all() and filled[~observed].min() < 0


def test_the_default_imputers_encoder_chooses_its_loss_and_hides_entries():
    template = GradientFlowImputer()._encoder_template()
    expected = GradientFlowEncoder(fit_hide_fraction=0.8).get_params()
    assert template.get_params() == expected
    assert template.loss == "auto"
